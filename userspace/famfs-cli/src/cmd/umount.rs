//! `famfs umount`.

use super::common::*;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

/// Unmount a famfs.
#[derive(Args, Debug)]
pub struct UmountArgs {
    pub mpt: PathBuf,
}

pub fn run(_: &GlobalArgs, a: &UmountArgs) -> Result<bool> {
    cmd_umount(&a.mpt).map(|()| true)
}

/// Processes of famfs-fused serving `mpt` (found by their command lines).
fn servers_of(mpt: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want = mpt.as_os_str().as_encoded_bytes();
    rd.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let mut args = cmdline.split(|b| *b == 0);
        let argv0 = args.next()?;
        let is_server = argv0.ends_with(b"famfs-fused");
        (is_server && args.any(|a| a == want)).then_some(pid)
    })
    .collect()
}

/// Whether `canon` (a canonical path) is a famfs FUSE mount point, by the mount table only:
/// statfs of a mount whose server died fails (ENOTCONN), and such a mount is exactly one to
/// unmount (or remount).
pub(super) fn is_famfs_mount(canon: &Path) -> bool {
    famfs_media::mounts::mount_at(canon)
        .is_some_and(|m| m.fstype == famfs_media::mounts::FAMFS_FSTYPE)
}

pub(super) fn cmd_umount(mpt: &Path) -> Result<()> {
    let canon =
        std::fs::canonicalize(mpt).with_context(|| format!("cannot resolve {}", mpt.display()))?;
    if !is_famfs_mount(&canon) {
        bail!("{} is not a famfs mount", mpt.display());
    }
    let servers = servers_of(&canon);
    let tool = find_helper("fusermount3")
        .or_else(|| find_helper("fusermount"))
        .ok_or_else(|| anyhow!("fusermount3 not found (install fuse3)"))?;
    let st = std::process::Command::new(tool)
        .arg("-u")
        .arg(&canon)
        .status()?;
    if !st.success() {
        bail!("unmount of {} failed ({st})", canon.display());
    }
    // The server exits when the session ends; wait for it so that the device is released (and
    // can be attached again) when we return.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let alive = |pid: &u32| {
        // A zombie has closed its files already: it counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    while servers.iter().any(alive) {
        if std::time::Instant::now() > deadline {
            eprintln!(
                "famfs: warning: the server of {} has not exited yet",
                canon.display()
            );
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}
