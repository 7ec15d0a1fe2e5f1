//! The devdax device, in one place: identifying one ([`sysfs_dir`], [`is_device_or_image`]), its
//! size, the driver it is bound to and rebinding it ([`driver`], [`bind`]), every devdax device
//! of this host ([`devices`]), and finding a file system's devices by uuid ([`resolver`],
//! [`candidates`]). Used by the CLI (`famfs mount --set-daxmode`, `--set-daxmode`, `famfs daxdev`,
//! which scripts/daxmode calls), the FUSE server and the log play (secondary devices).

pub mod resolver;

use crate::MediaError;
use famfs_format::UuidBytes;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The dax driver a devdax device is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaxDriver {
    /// `device_dax`: the character device can be mapped.
    DeviceDax,
    /// `fsdev_dax`: fs-dax use only, reached through famfs.ko.
    FsdevDax,
    /// Not bound to any driver.
    Unbound,
    /// Another driver (named).
    Other(String),
}

impl std::fmt::Display for DaxDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaxDriver::DeviceDax => f.write_str("device_dax"),
            DaxDriver::FsdevDax => f.write_str("fsdev_dax"),
            DaxDriver::Unbound => f.write_str("no driver"),
            DaxDriver::Other(s) => f.write_str(s),
        }
    }
}

/// The sysfs directory of a devdax character device (`/sys/bus/dax/devices/NAME`), found from its
/// device number (so symlinks to the node work) and, failing that, from its name.
pub fn dax_sysfs_dir(path: &Path) -> Option<PathBuf> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_char_device() {
        return None;
    }
    let rdev = meta.rdev();
    let by_devt = PathBuf::from(format!(
        "/sys/dev/char/{}:{}",
        libc::major(rdev),
        libc::minor(rdev)
    ));
    if let Ok(dir) = std::fs::canonicalize(&by_devt) {
        if let Some(name) = dir.file_name() {
            let bus = Path::new("/sys/bus/dax/devices").join(name);
            if bus.exists() {
                return Some(bus);
            }
        }
    }
    let name = std::fs::canonicalize(path).ok()?.file_name()?.to_owned();
    let bus = Path::new("/sys/bus/dax/devices").join(name);
    bus.exists().then_some(bus)
}

/// The driver a devdax device is bound to; `None` when `path` is not a devdax device.
pub fn dax_driver(path: &Path) -> Option<DaxDriver> {
    let dir = dax_sysfs_dir(path)?;
    let Ok(target) = std::fs::read_link(dir.join("driver")) else {
        return Some(DaxDriver::Unbound);
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(match name.as_str() {
        "device_dax" => DaxDriver::DeviceDax,
        "fsdev_dax" => DaxDriver::FsdevDax,
        _ => DaxDriver::Other(name),
    })
}

/// Size of a devdax character device from sysfs.
pub fn dax_device_size(path: &Path, meta: &std::fs::Metadata) -> Result<u64, MediaError> {
    let rdev = meta.rdev();
    let (maj, min) = (libc::major(rdev), libc::minor(rdev));
    let mut candidates = vec![PathBuf::from(format!("/sys/dev/char/{maj}:{min}/size"))];
    if let Some(name) = path.file_name() {
        candidates.push(Path::new("/sys/class/dax").join(name).join("size"));
    }
    for c in &candidates {
        if let Ok(s) = std::fs::read_to_string(c) {
            if let Ok(v) = s.trim().parse::<u64>() {
                return Ok(v);
            }
        }
    }
    let tried = candidates
        .iter()
        .map(|c| c.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(MediaError::NoDaxSize {
        path: path.into(),
        tried,
    })
}

/// Aliases by what they are, for code that says `dax::`.
pub use dax_device_size as size;
pub use dax_driver as driver;
pub use dax_sysfs_dir as sysfs_dir;

/// Where the dax drivers live in sysfs.
const DRIVERS: &str = "/sys/bus/dax/drivers";

/// Rebinds the devdax device whose sysfs directory is `sys` ([`sysfs_dir`]) to `want`
/// (`fsdev_dax` or `device_dax`). fsdev_dax never matches a device by type: it takes one only
/// through its `new_id` list, so the name is added there to bind and removed again to give the
/// device back to device_dax. The caller checks the result with [`driver`].
pub fn bind(sys: &Path, want: &DaxDriver) -> Result<(), MediaError> {
    let name = sys
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let drivers = Path::new(DRIVERS);
    let write = |p: &Path| {
        std::fs::write(p, &name).map_err(|source| MediaError::Bind {
            name: name.clone(),
            path: p.to_path_buf(),
            source,
        })
    };
    if sys.join("driver").exists() {
        write(&sys.join("driver/unbind"))?;
    }
    match want {
        DaxDriver::FsdevDax => {
            // EEXIST when the id is listed already: the bind below covers it.
            let _ = write(&drivers.join("fsdev_dax/new_id"));
            if !sys.join("driver").exists() {
                write(&drivers.join("fsdev_dax/bind"))?;
            }
        }
        _ => {
            let _ = write(&drivers.join("fsdev_dax/remove_id"));
            if !sys.join("driver").exists() {
                write(&drivers.join("device_dax/bind"))?;
            }
        }
    }
    Ok(())
}

/// Every devdax character device of this host (`/dev/daxN.M`), in name order.
pub fn devices() -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("dax") && n.contains('.'))
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

pub use resolver::is_device_or_image;

/// Where to look for device `dev_uuid` of file system `fs_uuid`, in order: the paths the host's
/// cache ([`resolver`]) names for it, the name the log recorded for it (`name`), the names of the
/// file system's other devices (`others`: names may be swapped between hosts), then every devdax
/// device of this host. Unchecked and possibly repeated: a caller opens each only after
/// [`is_device_or_image`] and uses it only once its superblock shows both uuids.
pub fn candidates<'a>(
    fs_uuid: &UuidBytes,
    dev_uuid: &UuidBytes,
    name: &'a str,
    others: impl IntoIterator<Item = &'a str>,
) -> Vec<PathBuf> {
    let mut v = resolver::cached_paths(fs_uuid, dev_uuid);
    v.extend(
        std::iter::once(name)
            .chain(others)
            .filter(|n| !n.is_empty())
            .map(PathBuf::from),
    );
    v.extend(devices());
    v
}
