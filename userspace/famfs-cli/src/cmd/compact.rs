//! `famfs compact`.

use super::common::*;
use super::reclaim::local_mounts;
use anyhow::{bail, Result};
use clap::Args;
use famfs_meta::Access;
use std::path::Path;

/// Rewrite the log with only its live entries (offline: the file system must not be mounted on
/// any host). Deleted files' memory is freed; the log has room again. Crash-safe: a crash
/// leaves the old log or the new one.
#[derive(Args, Debug)]
pub struct CompactArgs {
    /// Output as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &GlobalArgs, a: &CompactArgs) -> Result<bool> {
    let Some(dev) = cli.device.as_deref() else {
        bail!("compact works on an unmounted file system: unmount it on every host, then run `famfs compact --device DEV` on the master");
    };
    let mut t = need_dev_or_mount(cli, Path::new("."), Access::ReadWrite)?;
    let mounts = local_mounts(&t.fs.superblock().fs_uuid);
    if !mounts.is_empty() {
        bail!(
            "{} is mounted on this host at {}: unmount it (on every host) first; compaction renumbers the log under the hosts that play it",
            dev.display(),
            mounts
                .iter()
                .map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let r = t.fs.compact()?;
    if a.json {
        let v = serde_json::json!({
            "entries_before": r.entries_before,
            "entries_after": r.entries_after,
            "dropped_pending": r.dropped_pending,
            "freed_bytes": r.freed_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "log compacted: {} entries -> {}; {} pending delete(s) dropped, {} bytes freed",
            r.entries_before, r.entries_after, r.dropped_pending, r.freed_bytes
        );
    }
    Ok(true)
}
