//! Where a verb acts: an unmounted device or image (`--device`), or a mounted famfs found from a
//! path.

use anyhow::{anyhow, bail, Context, Result};
use famfs_format::RelPath;
use famfs_meta::{Access, Famfs, Ino};
use std::path::{Component, Path, PathBuf};

/// An open file system and how paths map into it.
pub struct Target {
    pub fs: Famfs,
    /// Mount point, when working through a mount; `None` for a device or image.
    pub mpt: Option<PathBuf>,
}

/// Finds the famfs mount containing `path`: the nearest mount point above it, if the kernel says
/// it is a famfs (mountinfo type `fuse.famfs`, statfs FUSE). A directory merely holding
/// `.meta/.log` is not one.
pub fn find_mount(path: &Path) -> Option<PathBuf> {
    famfs_media::mounts::famfs_mount_containing(path)
}

/// Mount points whose source is `dev` (from mountinfo, unescaped).
pub fn mounted_at(dev: &Path) -> Vec<String> {
    famfs_media::mounts::mount_points_of(dev)
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

impl Target {
    /// Opens `device` if given, else the mount containing `hint`.
    pub fn open(device: Option<&Path>, hint: &Path, access: Access) -> Result<Target> {
        match device {
            Some(d) => {
                let fs = Famfs::open(d, access)
                    .with_context(|| format!("cannot open famfs on {}", d.display()))?;
                Ok(Target { fs, mpt: None })
            }
            None => {
                let mpt = find_mount(hint).ok_or_else(|| {
                    anyhow!(
                        "{} is not inside a mounted famfs; give the device or image with --device DEV \
                         (paths are then inside the file system, e.g. /dir/file)",
                        hint.display()
                    )
                })?;
                let fs = match Famfs::open(&mpt, access) {
                    Ok(fs) => fs,
                    Err(e) => {
                        // A client's mount shows the log read-only, so opening it for writing
                        // fails with EROFS: name the real reason, the role, instead.
                        if access == Access::ReadWrite {
                            if let Ok(ro) = Famfs::open(&mpt, Access::ReadOnly) {
                                if ro.role() == famfs_meta::Role::Client {
                                    bail!(
                                        "{} is mounted on a client of this file system (master system uuid {}): \
                                         only the master may create files or directories",
                                        mpt.display(),
                                        famfs_format::format_uuid(&ro.superblock().system_uuid)
                                    );
                                }
                            }
                        }
                        return Err(e).with_context(|| {
                            format!("cannot open the famfs mounted at {}", mpt.display())
                        });
                    }
                };
                Ok(Target { fs, mpt: Some(mpt) })
            }
        }
    }

    /// The file system relative path of a user path.
    pub fn rel(&self, p: &Path) -> Result<RelPath> {
        let s = self.rel_str(p)?;
        RelPath::from_fs_path(&s).map_err(|e| anyhow!("{}: {e}", p.display()))
    }

    /// Like [`Target::rel`], but "" (the root) is allowed.
    pub fn rel_str(&self, p: &Path) -> Result<String> {
        let inner = match &self.mpt {
            None => p.to_path_buf(),
            Some(m) => {
                let abs = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    std::env::current_dir()?.join(p)
                };
                let abs = normalize(&abs);
                abs.strip_prefix(m)
                    .map(Path::to_path_buf)
                    .map_err(|_| anyhow!("{} is outside the mount {}", p.display(), m.display()))?
            }
        };
        let s = inner
            .to_str()
            .ok_or_else(|| anyhow!("{}: path is not valid UTF-8", p.display()))?;
        let parts: Vec<&str> = s
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if parts.contains(&"..") {
            bail!("{}: '..' is not allowed in famfs paths", p.display());
        }
        Ok(parts.join("/"))
    }

    /// Looks a user path up.
    pub fn lookup(&self, p: &Path) -> Result<Option<Ino>> {
        Ok(self.fs.namespace().resolve(&self.rel_str(p)?))
    }

    /// The host path of a file in the mount.
    pub fn host_path(&self, rel: &RelPath) -> Option<PathBuf> {
        self.mpt.as_ref().map(|m| m.join(rel.as_str()))
    }
}

/// Lexically normalises an absolute path (".." pops, "." is dropped) without touching the disk.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
