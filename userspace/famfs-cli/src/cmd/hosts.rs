//! `famfs hosts`: the hosts that have the file system mounted, as their slots in the shared
//! memory show them (famfs-meta `hosts`; Documentation/design.md, "Hosts and leases").

use anyhow::{bail, Context, Result};
use clap::Args;
use famfs_media::{Access, Media, MediaKind};
use famfs_meta::hosts::{self, HostsError, Liveness, ReclaimGate, SlotGate};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Show the hosts that have the file system mounted and whether they are alive.
#[derive(Args, Debug)]
pub struct HostsArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// Watch the slots this many seconds before judging liveness (default: two heartbeats of
    /// the slowest host, at most 5 s). A host is dead only once it has been watched unchanged for
    /// its lease plus 10 % and 0.5 s, so give at least that to see one dead
    #[arg(short, long, value_name = "SECS")]
    pub watch: Option<f64>,
    /// Also list free slots of hosts that unmounted cleanly
    #[arg(short, long)]
    pub all: bool,
    /// Exit 0 when the memory of the file deleted by log entry INDEX could be reclaimed now
    /// (every host that is not dead has played it and does not hold it), 1 with the reason
    /// when not
    #[arg(long, value_name = "INDEX")]
    pub may_reclaim: Option<u64>,
    /// Mount point, devdax device or image file
    pub target: PathBuf,
}

fn open(target: &Path) -> Result<Media, HostsError> {
    Ok(Media::open(target, Access::ReadOnly)?)
}

pub fn run(_: &super::GlobalArgs, a: &HostsArgs) -> Result<bool> {
    let first = open(&a.target).with_context(|| format!("{}", a.target.display()))?;
    if first.kind() == MediaKind::Memory {
        bail!("{}: no host slots in process memory", a.target.display());
    }
    let sb = first
        .read_superblock()
        .with_context(|| format!("{}: no famfs superblock", a.target.display()))?;
    let window = match a.watch {
        Some(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s),
        Some(s) => bail!("--watch {s}: give a number of seconds"),
        None => hosts::default_window(&hosts::read_table(&first, &sb.fs_uuid)?),
    };
    drop(first);
    let target = a.target.clone();
    let views = hosts::watch(&|| open(&target), &sb.fs_uuid, window)
        .with_context(|| format!("{}: reading the host slots", a.target.display()))?;
    let shown: Vec<_> = views
        .iter()
        .filter(|v| {
            a.all || v.slot.is_some() && v.liveness != Liveness::Free || v.corrupt.is_some()
        })
        .filter(|v| v.slot.is_some() || v.corrupt.is_some())
        .collect();
    let gate = SlotGate { views: &views };
    let verdict = a.may_reclaim.map(|d| (d, gate.blocker(d)));
    if a.json {
        let mut out = serde_json::json!({
            "fs_uuid": famfs_format::format_uuid(&sb.fs_uuid),
            "watched_ms": window.as_millis() as u64,
            "hosts": shown.iter().map(|v| v.to_json()).collect::<Vec<_>>(),
        });
        if let Some((d, why)) = &verdict {
            out["may_reclaim"] = serde_json::json!({
                "delete_index": d,
                "may": why.is_none(),
                "why_not": why,
            });
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "file system {} ({} host slot(s) in use; watched {:.1} s)",
            famfs_format::format_uuid(&sb.fs_uuid),
            views.iter().filter(|v| v.liveness.counts()).count(),
            window.as_secs_f64()
        );
        for v in &shown {
            println!("{}", v.describe());
        }
        if let Some((d, why)) = &verdict {
            match why {
                None => println!("the delete at log index {d} may be reclaimed now"),
                Some(w) => println!("the delete at log index {d} may not be reclaimed yet: {w}"),
            }
        }
    }
    Ok(match verdict {
        Some((d, _)) => gate.may_reclaim(d).unwrap_or(false),
        None => true,
    })
}
