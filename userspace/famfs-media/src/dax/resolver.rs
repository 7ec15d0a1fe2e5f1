//! Finding a file system's devices on this host by uuid.
//!
//! Device names differ between hosts (`/dev/dax0.0` here may be `/dev/dax1.0` there); the uuids
//! in the superblocks do not. [`scan`] reads the superblock of every candidate (devdax devices
//! bound to `device_dax` are mapped directly, those bound to `fsdev_dax` are read through
//! famfs.ko, as `Media::open` does) and lists what each holds. The result is kept in a
//! host-local cache, [`CACHE_PATH`] (outside any mount: the mapping is per host), which is only
//! used when it and its directory belong to root and nobody else may write them; every entry
//! taken from it is checked again against the device's superblock before use, so a stale or
//! planted cache can cost a scan, never a wrong device.

use crate::{Access, Media};
use famfs_format::{format_uuid, parse_uuid, AnySuperblock, UuidBytes};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The host-local cache of [`scan`] results.
pub const CACHE_PATH: &str = "/run/famfs/daxdevs.json";
/// Overrides [`CACHE_PATH`] (tests).
pub const CACHE_ENV: &str = "FAMFS_DAXDEV_CACHE";

/// What one device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub fs_uuid: UuidBytes,
    pub dev_uuid: UuidBytes,
    /// A primary (with the log) or a secondary superblock.
    pub primary: bool,
    pub size: u64,
}

impl Found {
    /// The JSON form (also the cache's).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path, "fs_uuid": format_uuid(&self.fs_uuid), "dev_uuid": format_uuid(&self.dev_uuid),
            "kind": if self.primary { "primary" } else { "secondary" }, "size": self.size,
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<Found> {
        Some(Found {
            path: PathBuf::from(v.get("path")?.as_str()?),
            fs_uuid: parse_uuid(v.get("fs_uuid")?.as_str()?)?,
            dev_uuid: parse_uuid(v.get("dev_uuid")?.as_str()?)?,
            primary: v.get("kind")?.as_str()? == "primary",
            size: v.get("size")?.as_u64()?,
        })
    }
}

/// Whether `path` names a character device or a regular file, found without opening it for
/// reading: `O_PATH` opens nothing (an open of a FIFO for reading waits for a writer, for ever
/// when none comes), and fstat(2) looks at that descriptor. Every candidate path (names from the
/// log, the cache, `/dev/dax*`) is checked with it before [`Media::open`], so that a FIFO or a
/// socket named there cannot block whoever plays the log (the FUSE server, under its lock).
pub fn is_device_or_image(path: &Path) -> bool {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path);
    let Ok(f) = opened else { return false };
    f.metadata()
        .is_ok_and(|m| m.file_type().is_char_device() || m.file_type().is_file())
}

/// What the superblock of `path` says, if it holds a valid famfs superblock of either kind.
pub fn probe(path: &Path) -> Option<Found> {
    if !is_device_or_image(path) {
        return None;
    }
    let m = Media::open(path, Access::ReadOnly).ok()?;
    let (fs_uuid, dev_uuid, primary, size) = match m.read_any_superblock().ok()? {
        AnySuperblock::Primary(s) => (s.fs_uuid, s.dev_uuid, true, s.device_size),
        AnySuperblock::Secondary(s) => (s.fs_uuid, s.dev_uuid, false, s.device_size),
    };
    Some(Found {
        path: path.to_path_buf(),
        fs_uuid,
        dev_uuid,
        primary,
        size,
    })
}

/// Reads the superblock of every path in `extra` and every `/dev/dax*` device (devices busy in a
/// mount of this host cannot be read through famfs.ko and are left out).
pub fn scan(extra: &[PathBuf]) -> Vec<Found> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for p in extra.iter().cloned().chain(super::devices()) {
        let canon = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if seen.contains(&canon) {
            continue;
        }
        seen.push(canon);
        if let Some(f) = probe(&p) {
            out.push(f);
        }
    }
    out
}

fn cache_path() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CACHE_PATH))
}

/// Whether `p` is owned by root (or, under [`CACHE_ENV`], by us) and writable by nobody else.
fn trusted(p: &Path) -> bool {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return false;
    };
    let me = nix::unistd::geteuid().as_raw();
    let owner_ok = md.uid() == 0 || (std::env::var_os(CACHE_ENV).is_some() && md.uid() == me);
    owner_ok && !md.file_type().is_symlink() && md.permissions().mode() & 0o022 == 0
}

/// The cached scan results, when the cache is trustworthy (see the module documentation).
pub fn read_cache() -> Vec<Found> {
    let p = cache_path();
    let dir_ok = p.parent().is_some_and(trusted);
    if !dir_ok || !trusted(&p) {
        return Vec::new();
    }
    let Ok(text) = std::fs::read_to_string(&p) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(v)) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    v.iter().filter_map(Found::from_json).collect()
}

/// Writes the cache (root only, or under [`CACHE_ENV`]): the directory is made 0755 and the file
/// 0644, written to a temporary name and renamed into place.
pub fn write_cache(found: &[Found]) -> std::io::Result<PathBuf> {
    let p = cache_path();
    let dir = p.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    if !trusted(dir) {
        return Err(std::io::Error::other(format!(
            "{}: not owned by root or writable by others; not used",
            dir.display()
        )));
    }
    let tmp = dir.join(format!(".daxdevs.{}.tmp", std::process::id()));
    let v = serde_json::Value::Array(found.iter().map(Found::to_json).collect());
    std::fs::write(&tmp, serde_json::to_string_pretty(&v).unwrap_or_default())?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, &p)?;
    Ok(p)
}

/// Scans and writes the cache; returns what was found. A cache that cannot be written (not
/// root) is not an error: the scan result is still returned.
pub fn refresh(extra: &[PathBuf]) -> Vec<Found> {
    let found = scan(extra);
    let _ = write_cache(&found);
    found
}

/// The local path of device `dev_uuid` of file system `fs_uuid`: from the cache when its entry
/// still holds those uuids (read again from the device), else by a fresh scan (which refreshes
/// the cache).
pub fn resolve(fs_uuid: &UuidBytes, dev_uuid: &UuidBytes, extra: &[PathBuf]) -> Option<Found> {
    let want = |f: &Found| f.fs_uuid == *fs_uuid && f.dev_uuid == *dev_uuid;
    for c in read_cache().into_iter().filter(|f| want(f)) {
        if let Some(f) = probe(&c.path).filter(|f| want(f)) {
            return Some(f);
        }
    }
    refresh(extra).into_iter().find(|f| want(f))
}

/// Paths the cache names for `(fs_uuid, dev_uuid)` (unchecked: candidates only).
pub fn cached_paths(fs_uuid: &UuidBytes, dev_uuid: &UuidBytes) -> Vec<PathBuf> {
    read_cache()
        .into_iter()
        .filter(|f| f.fs_uuid == *fs_uuid && f.dev_uuid == *dev_uuid)
        .map(|f| f.path)
        .collect()
}
