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
    refuse_live_hosts(&t.fs, dev)?;
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

/// Refuses while the host slots show another host with the file system mounted. A slot that is
/// neither free nor released is watched until its host is seen alive (refused) or has stayed
/// unchanged for its lease + 10 % + 0.5 s (dead: its host fenced itself; compaction may go on).
fn refuse_live_hosts(fs: &famfs_meta::Famfs, dev: &Path) -> Result<()> {
    use famfs_format::slots::SlotContent;
    use famfs_meta::hosts;
    let fs_uuid = fs.superblock().fs_uuid;
    let media = fs.media();
    let table = hosts::read_table(media, &fs_uuid)?;
    let longest = table
        .iter()
        .filter_map(|c| match c {
            SlotContent::Slot(s) if s.state != famfs_format::slots::SlotState::Released => {
                Some(hosts::dead_after(s.lease_ms))
            }
            SlotContent::Corrupt(_) => Some(hosts::dead_after(hosts::MAX_LEASE_MS)),
            _ => None,
        })
        .max();
    let Some(window) = longest else {
        return Ok(());
    };
    eprintln!(
        "famfs compact: host slots in use: watching them {:.1} s to tell live hosts from dead ones",
        window.as_secs_f64()
    );
    let views = hosts::watch(
        &|| Ok(media),
        &fs_uuid,
        window + std::time::Duration::from_millis(100),
    )?;
    let live: Vec<String> = views
        .iter()
        .filter(|v| v.liveness.counts())
        .map(|v| v.describe())
        .collect();
    if !live.is_empty() {
        bail!(
            "{} is mounted on other hosts (host slots):\n  {}\nunmount it there first; compaction renumbers the log under the hosts that play it",
            dev.display(),
            live.join("\n  ")
        );
    }
    Ok(())
}
