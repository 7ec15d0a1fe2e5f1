//! `famfs reclaim`, and the gate it uses on a single host.

use super::common::*;
use anyhow::Result;
use clap::Args;
use famfs_format::Superblock;
use famfs_meta::{Access, ReclaimGate};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Give the memory of deleted files back to the allocator, for every deleted file no holder
/// keeps (on this host: no process has it open or mapped through a mount of this file system).
/// What is still held stays pending: run it again later.
#[derive(Args, Debug)]
pub struct ReclaimArgs {
    /// Output as JSON.
    #[arg(long)]
    pub json: bool,
    /// A path inside the mounted file system (without --device); default: the current directory.
    pub path: Option<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &ReclaimArgs) -> Result<bool> {
    let hint = a.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut t = need_dev_or_mount(cli, &hint, Access::ReadWrite)?;
    let gate = LocalHolders::scan(&t.fs);
    let r = t.fs.reclaim(&gate)?;
    if a.json {
        let v = serde_json::json!({
            "reclaimed": r.reclaimed,
            "freed_bytes": r.freed_bytes,
            "held": r.held,
            "undecided": r.undecided.iter().map(|(d, why)| serde_json::json!({"delete": d, "why": why})).collect::<Vec<_>>(),
            "entries": r.entries,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "reclaimed {} deleted file(s), {} bytes; {} still held, {} undecided",
            r.reclaimed.len(),
            r.freed_bytes,
            r.held.len(),
            r.undecided.len()
        );
        for (d, why) in &r.undecided {
            println!("  delete {d}: kept: {why}");
        }
    }
    Ok(true)
}

/// The fs uuid of a famfs mount (its `.meta/.superblock`), if readable.
fn mount_fs_uuid(mpt: &Path) -> Option<[u8; 16]> {
    let b = std::fs::read(mpt.join(".meta/.superblock")).ok()?;
    Superblock::decode(&b).ok().map(|s| s.fs_uuid)
}

/// The mount points of the file system with uuid `fs_uuid` on this host.
pub(crate) fn local_mounts(fs_uuid: &[u8; 16]) -> Vec<PathBuf> {
    famfs_media::mounts::current()
        .into_iter()
        .filter(|m| m.fstype == famfs_media::mounts::FAMFS_FSTYPE)
        .map(|m| m.mount_point)
        .filter(|p| mount_fs_uuid(p).as_ref() == Some(fs_uuid))
        .collect()
}

/// The reclaim gate for one host (until the host slots decide across hosts): a deleted file is
/// held when a process of this host has a descriptor or a mapping of its path under a mount of
/// this file system (`/proc/PID/fd`, `/proc/PID/maps`; the kernel marks such a path
/// " (deleted)"). Without a mount of the file system on this host nothing here can hold it.
/// When another process's files cannot be read (not root), nothing is reclaimed while a mount
/// exists: the answer would be a guess.
pub(crate) struct LocalHolders {
    mounted: bool,
    /// Host paths of each pending delete, under every mount of the file system.
    paths: BTreeMap<u64, Vec<PathBuf>>,
    held: BTreeSet<PathBuf>,
    unreadable: Option<String>,
}

impl LocalHolders {
    pub(crate) fn scan(fs: &famfs_meta::Famfs) -> LocalHolders {
        let mounts = local_mounts(&fs.superblock().fs_uuid);
        let paths = fs
            .pending_deletes()
            .map(|p| (p.index, mounts.iter().map(|m| m.join(&p.path)).collect()))
            .collect();
        let mut g = LocalHolders {
            mounted: !mounts.is_empty(),
            paths,
            held: BTreeSet::new(),
            unreadable: None,
        };
        if g.mounted {
            g.scan_proc();
        }
        g
    }

    fn scan_proc(&mut self) {
        let me = std::process::id().to_string();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            self.unreadable = Some("/proc is not readable".into());
            return;
        };
        for e in rd.flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|c| c.is_ascii_digit()) || pid == me {
                continue;
            }
            let base = e.path();
            match std::fs::read_dir(base.join("fd")) {
                Ok(fds) => {
                    for fd in fds.flatten() {
                        if let Ok(t) = std::fs::read_link(fd.path()) {
                            self.held.insert(strip_deleted(&t));
                        }
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    self.unreadable.get_or_insert(format!(
                        "the open files of process {pid} are not readable here (run `famfs reclaim` as root)"
                    ));
                }
                Err(_) => continue, // exited meanwhile
            }
            if let Ok(maps) = std::fs::read_to_string(base.join("maps")) {
                for line in maps.lines() {
                    // address perms offset dev inode path
                    if let Some(p) = line.splitn(6, ' ').nth(5).map(str::trim_start) {
                        if p.starts_with('/') {
                            self.held.insert(strip_deleted(Path::new(p)));
                        }
                    }
                }
            }
        }
    }
}

fn strip_deleted(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s))
}

impl ReclaimGate for LocalHolders {
    fn may_reclaim(&self, delete_index: u64) -> std::result::Result<bool, String> {
        if !self.mounted {
            return Ok(true);
        }
        let Some(paths) = self.paths.get(&delete_index) else {
            return Err("deleted after this reclaim looked at the holders; run it again".into());
        };
        if paths.iter().any(|p| self.held.contains(p)) {
            return Ok(false);
        }
        match &self.unreadable {
            Some(why) => Err(why.clone()),
            None => Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(paths: &[(u64, &Path)]) -> LocalHolders {
        LocalHolders {
            mounted: true,
            paths: paths
                .iter()
                .map(|(d, p)| (*d, vec![p.to_path_buf()]))
                .collect(),
            held: BTreeSet::new(),
            unreadable: None,
        }
    }

    /// A process of this host holding a file (open, then unlinked: the kernel shows the path
    /// with " (deleted)") keeps its delete pending; once it exits, the delete may be reclaimed.
    #[test]
    fn a_process_holding_the_file_keeps_it_pending() {
        let d = tempfile::tempdir().unwrap();
        let held = d.path().join("held");
        let free = d.path().join("free");
        std::fs::write(&held, b"x").unwrap();
        std::fs::write(&free, b"x").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::fs::File::open(&held).unwrap())
            .spawn()
            .unwrap();
        std::fs::remove_file(&held).unwrap();
        let mut g = gate(&[(7, &held), (8, &free)]);
        g.scan_proc();
        // Other users' processes are not this test's business (when not run as root).
        g.unreadable = None;
        let seen = g.may_reclaim(7);
        child.kill().unwrap();
        child.wait().unwrap();
        let mine: Vec<_> = g.held.iter().filter(|p| p.starts_with(d.path())).collect();
        assert_eq!(seen, Ok(false), "held by the child: {mine:?}");
        assert_eq!(g.may_reclaim(8), Ok(true));
        let mut g = gate(&[(7, &held)]);
        g.scan_proc();
        g.unreadable = None;
        assert_eq!(g.may_reclaim(7), Ok(true), "the holder exited");
        // A delete the scan did not know, and a host whose processes cannot all be seen.
        assert!(g.may_reclaim(9).is_err());
        g.unreadable = Some("not root".into());
        assert!(g.may_reclaim(7).is_err());
        // Without a mount on this host nothing here can hold a file.
        g.mounted = false;
        assert_eq!(g.may_reclaim(9), Ok(true));
    }
}
