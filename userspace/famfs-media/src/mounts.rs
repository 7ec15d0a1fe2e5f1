//! The one reader of `/proc/self/mountinfo` (server, CLI, mkfs, perf all use it), and what makes
//! a directory a famfs mount: the kernel says so (the mount's fs type is `fuse.famfs` and
//! `statfs` reports a FUSE file system), not the presence of `.meta/.log`, which any directory
//! can hold.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// The famfs FUSE mount type as mountinfo shows it.
pub const FAMFS_FSTYPE: &str = "fuse.famfs";

/// One line of `/proc/self/mountinfo` (proc(5)); paths unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `major:minor` of the file system.
    pub dev: String,
    /// The root of the mount within its file system.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub options: String,
    /// The file system type, with its subtype (`fuse.famfs`).
    pub fstype: String,
    /// The mount source (for famfs: the device).
    pub source: PathBuf,
    pub super_options: String,
}

/// Undoes the octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash) that the
/// kernel writes in mount tables; any other byte sequence is kept as it is.
pub fn unescape(s: &str) -> OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = |c: &u8| (b'0'..=b'7').contains(c);
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(oct) {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

/// Parses one mountinfo line; `None` when it is malformed.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let mut f = line.split(' ');
    let mount_id = f.next()?.parse().ok()?;
    let parent_id = f.next()?.parse().ok()?;
    let dev = f.next()?.to_string();
    let root = PathBuf::from(unescape(f.next()?));
    let mount_point = PathBuf::from(unescape(f.next()?));
    let options = f.next()?.to_string();
    // Optional fields, up to the "-" separator.
    for opt in f.by_ref() {
        if opt == "-" {
            break;
        }
    }
    let fstype = f.next()?.to_string();
    let source = PathBuf::from(unescape(f.next()?));
    let super_options = f.next().unwrap_or("").to_string();
    Some(MountInfo {
        mount_id,
        parent_id,
        dev,
        root,
        mount_point,
        options,
        fstype,
        source,
        super_options,
    })
}

/// Parses the text of a mountinfo file (malformed lines are skipped).
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

/// This process's mounts, in mount order (empty when mountinfo cannot be read).
pub fn current() -> Vec<MountInfo> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The mount whose mount point is exactly `path` (compared canonicalised); the topmost when several
/// are stacked there.
pub fn mount_at_in(mounts: &[MountInfo], path: &Path) -> Option<MountInfo> {
    let p = canonical(path);
    mounts.iter().rev().find(|m| m.mount_point == p).cloned()
}

/// [`mount_at_in`] over the current mounts.
pub fn mount_at(path: &Path) -> Option<MountInfo> {
    mount_at_in(&current(), path)
}

/// True when something is mounted exactly at `path`.
pub fn is_mount_point(path: &Path) -> bool {
    mount_at(path).is_some()
}

/// The mount points whose source is `device` (compared canonicalised), of any type.
pub fn mount_points_of(device: &Path) -> Vec<PathBuf> {
    let dev = canonical(device);
    current()
        .into_iter()
        .filter(|m| m.source == device || m.source == dev || canonical(&m.source) == dev)
        .map(|m| m.mount_point)
        .collect()
}

/// Where `device` is mounted as famfs, if it is.
pub fn famfs_mount_of(device: &Path) -> Option<PathBuf> {
    let dev = canonical(device);
    current()
        .into_iter()
        .find(|m| m.fstype == FAMFS_FSTYPE && (m.source == dev || canonical(&m.source) == dev))
        .map(|m| m.mount_point)
}

/// Where the device or image file `path` is mounted as famfs, if it is: the mount sources of
/// `fuse.famfs` mounts compared by the file they name (device number for a character device,
/// inode for an image), so another name of the same file (a symlink, a hard link, a relative
/// path) is found too.
pub fn famfs_mount_of_file(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let me = std::fs::metadata(path).ok()?;
    let same = |m: &std::fs::Metadata| {
        if me.file_type().is_char_device() {
            m.file_type().is_char_device() && m.rdev() == me.rdev()
        } else {
            m.dev() == me.dev() && m.ino() == me.ino()
        }
    };
    current()
        .into_iter()
        .filter(|m| m.fstype == FAMFS_FSTYPE)
        .find(|m| std::fs::metadata(&m.source).is_ok_and(|md| same(&md)))
        .map(|m| m.mount_point)
}

/// Whether statfs says `path` is on a FUSE file system.
pub fn statfs_is_fuse(path: &Path) -> bool {
    use nix::sys::statfs::{statfs, FUSE_SUPER_MAGIC};
    statfs(path).is_ok_and(|s| s.filesystem_type() == FUSE_SUPER_MAGIC)
}

/// Whether `path` is the mount point of a famfs: the topmost mount there is `fuse.famfs` and
/// statfs on it reports FUSE.
pub fn is_famfs_mount_in(mounts: &[MountInfo], path: &Path) -> bool {
    mount_at_in(mounts, path).is_some_and(|m| m.fstype == FAMFS_FSTYPE) && statfs_is_fuse(path)
}

/// [`is_famfs_mount_in`] over the current mounts.
pub fn is_famfs_mount(path: &Path) -> bool {
    is_famfs_mount_in(&current(), path)
}

/// The famfs mount containing `path`: the nearest ancestor (lexically, from the absolute form of
/// `path`, which need not exist yet) that is a mount point, if that mount is a famfs. The path is
/// returned as spelled (not canonicalised), so callers can strip it from the user's paths.
pub fn famfs_mount_containing(path: &Path) -> Option<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mounts = current();
    let mut p = abs.as_path();
    loop {
        if p.exists() {
            if let Some(m) = mount_at_in(&mounts, p) {
                return (m.fstype == FAMFS_FSTYPE && statfs_is_fuse(p)).then(|| p.to_path_buf());
            }
        }
        p = p.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes() {
        let t = "36 35 98:0 / /mnt/my\\040famfs rw,nosuid shared:1 master:2 - fuse.famfs /dev/dax0.0 rw,user_id=0\n\
                 22 1 0:21 / /proc rw - proc proc rw\n\
                 bad line\n\
                 40 1 0:50 /sub /mnt/tab\\011and\\134back rw - ext4 /dev/my\\040disk rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/my famfs"));
        assert_eq!(m[0].fstype, FAMFS_FSTYPE);
        assert_eq!(m[0].source, PathBuf::from("/dev/dax0.0"));
        assert_eq!((m[0].mount_id, m[0].parent_id), (36, 35));
        assert_eq!(m[1].fstype, "proc");
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/tab\tand\\back"));
        assert_eq!(m[2].root, PathBuf::from("/sub"));
        assert_eq!(m[2].source, PathBuf::from("/dev/my disk"));
        assert_eq!(unescape("a\\"), OsString::from("a\\"));
        assert_eq!(unescape("a\\04"), OsString::from("a\\04"));
        assert_eq!(unescape("\\777"), OsString::from("\\777"));
        assert_eq!(
            mount_at_in(&m, Path::new("/mnt/my famfs")).map(|m| m.mount_id),
            Some(36)
        );
    }

    #[test]
    fn stacked_mounts_topmost_wins() {
        let t = "1 0 0:1 / /x rw - fuse.famfs /dev/dax0.0 rw\n2 1 0:2 / /x rw - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(mount_at_in(&m, Path::new("/x")).unwrap().fstype, "tmpfs");
        assert!(!is_famfs_mount_in(&m, Path::new("/x")));
    }

    #[test]
    fn a_directory_holding_meta_files_is_not_a_mount() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".meta")).unwrap();
        std::fs::write(d.path().join(".meta/.log"), b"x").unwrap();
        std::fs::write(d.path().join(".meta/.superblock"), b"x").unwrap();
        assert!(!is_famfs_mount(d.path()));
        assert_eq!(famfs_mount_containing(&d.path().join("file")), None);
        assert!(current().iter().any(|m| m.mount_point == Path::new("/")));
    }
}
