//! Several devices per file system: the checks before a device is added (mkfs.famfs with
//! secondaries, `famfs devadd`), `famfs devadd`, `famfs daxdev`, and finding a secondary's
//! primary (fsck).

use crate::size::human;
use anyhow::{anyhow, bail, Context, Result};
use famfs_format::{format_uuid, parse_uuid, AnySuperblock, MIN_DEVICE_SIZE};
use famfs_media::{Access, Media, MediaKind};
use famfs_meta::resolver::{self, Found};
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
    let mounts = crate::mkfs_cmd::mounted_at(dev);
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

/// `famfs devadd [-f] TARGET DEVICE`.
pub fn cmd_devadd(force: bool, target: &Path, device: &Path) -> Result<()> {
    let online = target.is_dir();
    let mut fs = Famfs::open(target, Access::ReadWrite)
        .with_context(|| format!("cannot open famfs on {}", target.display()))?;
    let primary: PathBuf = if online {
        // The primary's path is the mount's source.
        famfs_media::mounts::mount_at(target)
            .map(|m| m.source)
            .unwrap_or_default()
    } else {
        target.to_path_buf()
    };
    let media = open_new_secondary(device, &primary, Some(&fs), force)?;
    let name = std::fs::canonicalize(device)
        .unwrap_or_else(|_| device.to_path_buf())
        .display()
        .to_string();
    let size = media.size();
    let index = fs
        .with_log_lock(|a| a.add_device(media, &name, *uuid::Uuid::new_v4().as_bytes()))
        .with_context(|| {
            format!(
                "cannot add {} to the file system on {}",
                device.display(),
                target.display()
            )
        })?;
    let d = fs
        .devices()
        .get(index as usize)
        .ok_or_else(|| anyhow!("device {index} missing after the append"))?;
    println!(
        "{}: added as device {index} ({}, device uuid {}){}",
        device.display(),
        human(size),
        format_uuid(&d.uuid),
        if online {
            " to the mounted file system; the server attaches it when a file needs it"
        } else {
            ""
        }
    );
    Ok(())
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

/// `famfs daxdev list|resolve|refresh`.
pub fn cmd_daxdev(action: &DaxdevAction, json: bool) -> Result<bool> {
    let print = |found: &[Found]| {
        if json {
            println!(
                "{}",
                serde_json::Value::Array(found.iter().map(Found::to_json).collect())
            );
        } else {
            for f in found {
                println!(
                    "{}  {:9}  fs {}  device {}  {}",
                    f.path.display(),
                    if f.primary { "primary" } else { "secondary" },
                    format_uuid(&f.fs_uuid),
                    format_uuid(&f.dev_uuid),
                    human(f.size)
                );
            }
        }
    };
    match action {
        DaxdevAction::List { extra } => {
            let cached = resolver::read_cache();
            let found = if cached.is_empty() || !extra.is_empty() {
                resolver::scan(extra)
            } else {
                cached
            };
            print(&found);
            Ok(true)
        }
        DaxdevAction::Refresh { extra } => {
            let found = resolver::scan(extra);
            match resolver::write_cache(&found) {
                Ok(p) if !json => println!("cache {} written", p.display()),
                Ok(_) => {}
                Err(e) => eprintln!("famfs daxdev: cache not written: {e}"),
            }
            print(&found);
            Ok(true)
        }
        DaxdevAction::Resolve {
            fs_uuid,
            dev_uuid,
            extra,
        } => {
            let fs = parse_uuid(fs_uuid).ok_or_else(|| anyhow!("invalid fs uuid {fs_uuid:?}"))?;
            let dev =
                parse_uuid(dev_uuid).ok_or_else(|| anyhow!("invalid device uuid {dev_uuid:?}"))?;
            match resolver::resolve(&fs, &dev, extra) {
                Some(f) if json => {
                    println!("{}", f.to_json());
                    Ok(true)
                }
                Some(f) => {
                    println!("{}", f.path.display());
                    Ok(true)
                }
                None => {
                    eprintln!("famfs daxdev: no device of this host holds device {dev_uuid} of file system {fs_uuid}");
                    Ok(false)
                }
            }
        }
    }
}

/// The actions of `famfs daxdev`.
#[derive(clap::Subcommand, Debug)]
pub enum DaxdevAction {
    /// List the famfs devices of this host (from the cache, or a scan when it is empty).
    List {
        /// Also read these devices or image files.
        #[arg(long = "also", value_name = "PATH")]
        extra: Vec<PathBuf>,
    },
    /// Print the local path of device DEV_UUID of file system FS_UUID (exit 1 when none).
    Resolve {
        fs_uuid: String,
        dev_uuid: String,
        /// Also read these devices or image files.
        #[arg(long = "also", value_name = "PATH")]
        extra: Vec<PathBuf>,
    },
    /// Read every device's superblock again and rewrite the cache (/run/famfs/daxdevs.json).
    Refresh {
        /// Also read these devices or image files.
        #[arg(long = "also", value_name = "PATH")]
        extra: Vec<PathBuf>,
    },
}
