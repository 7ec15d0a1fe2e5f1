//! Several devices per file system: the checks before a device is added (mkfs.famfs with
//! secondaries, `famfs devadd`), and finding a secondary's primary (fsck).

use anyhow::{bail, Context, Result};
use famfs_cmdline::size::human;
use famfs_format::{format_uuid, AnySuperblock, MIN_DEVICE_SIZE};
use famfs_media::dax::resolver::{self, Found};
use famfs_media::{Access, Media, MediaKind};
use famfs_meta::Famfs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Whether two paths name the same device or file (same device number for character devices,
/// same inode otherwise).
pub fn same_device(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => {
            if x.rdev() != 0 && x.rdev() == y.rdev() {
                return true;
            }
            x.dev() == y.dev() && x.ino() == y.ino()
        }
        _ => false,
    }
}

/// Opens `dev` read-write to become a secondary of the file system whose primary is `primary`,
/// after the checks: not the primary itself (nor another device already in `fs`), not mounted,
/// at least 4 GiB, and holding no famfs superblock (primary or secondary) unless `force`.
pub fn open_new_secondary(
    dev: &Path,
    primary: &Path,
    fs: Option<&Famfs>,
    force: bool,
) -> Result<Media> {
    if same_device(dev, primary) {
        bail!(
            "{} is the primary device of this file system; a device cannot be added to itself",
            dev.display()
        );
    }
    if let Some(fs) = fs {
        for d in fs.devices().iter().skip(1) {
            if fs.device_path(d.index).is_some_and(|p| same_device(p, dev)) {
                bail!(
                    "{} is already device {} of this file system",
                    dev.display(),
                    d.index
                );
            }
        }
    }
    let mounts = crate::target::mounted_at(dev);
    if !mounts.is_empty() {
        bail!(
            "{} is mounted at {}; it cannot be added",
            dev.display(),
            mounts.join(", ")
        );
    }
    let media = Media::open(dev, Access::ReadWrite)
        .with_context(|| format!("cannot open {}", dev.display()))?;
    if media.kind() == MediaKind::MetaFiles {
        bail!(
            "{} is a directory; give a devdax device or an image file",
            dev.display()
        );
    }
    if media.size() < MIN_DEVICE_SIZE {
        bail!(
            "{} is {} ({} bytes); a famfs device needs at least 4 GiB",
            dev.display(),
            human(media.size()),
            media.size()
        );
    }
    match media.read_any_superblock() {
        Ok(sb) if !force => {
            let what = match &sb {
                AnySuperblock::Primary(_) => "a famfs file system",
                AnySuperblock::Secondary(_) => "a secondary device of a famfs file system",
            };
            bail!(
                "{} already holds {what} (fs uuid {}); use -f to overwrite it",
                dev.display(),
                format_uuid(&sb.fs_uuid())
            );
        }
        _ => {}
    }
    Ok(media)
}

/// Finds the primary device of the file system a secondary belongs to: a device (or, for image
/// files, a file next to the secondary) holding a primary superblock with the secondary's fs
/// uuid and device uuid.
pub fn primary_of(secondary: &Path) -> Result<Option<PathBuf>> {
    let m = Media::open(secondary, Access::ReadOnly)?;
    let Ok(AnySuperblock::Secondary(s)) = m.read_any_superblock() else {
        return Ok(None);
    };
    drop(m);
    let mut extra = Vec::new();
    if secondary.is_file() {
        let dir = secondary
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        {
            if let Ok(rd) = std::fs::read_dir(dir) {
                extra.extend(
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.is_file()),
                );
            }
        }
    }
    let want = |f: &Found| f.primary && f.fs_uuid == s.fs_uuid && f.dev_uuid == s.primary_dev_uuid;
    for c in resolver::read_cache().into_iter().filter(|f| want(f)) {
        if resolver::probe(&c.path).is_some_and(|f| want(&f)) {
            return Ok(Some(c.path));
        }
    }
    Ok(resolver::scan(&extra)
        .into_iter()
        .find(|f| want(f))
        .map(|f| f.path))
}
