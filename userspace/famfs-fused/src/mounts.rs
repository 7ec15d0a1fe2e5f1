//! /proc/mounts checks: refuse a device that is already mounted and a mount point in use.

use std::path::{Path, PathBuf};

/// One line of /proc/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
}

/// Undoes the octal escapes (`\040` for a space, ...) the kernel writes in /proc/mounts.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of /proc/mounts.
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let source = unescape(f.next()?);
            let target = PathBuf::from(unescape(f.next()?));
            let fstype = f.next()?.to_string();
            Some(MountEntry { source, target, fstype })
        })
        .collect()
}

/// The current mounts (empty when /proc/mounts cannot be read).
pub fn current_mounts() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/mounts").map(|t| parse_mounts(&t)).unwrap_or_default()
}

/// The famfs FUSE mount type as /proc/mounts shows it.
pub const FSTYPE: &str = "fuse.famfs";

/// Where `device` (compared canonicalised) is mounted as famfs, if it is.
pub fn famfs_mount_of(device: &Path) -> Option<PathBuf> {
    let dev = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
    current_mounts().into_iter().find_map(|m| {
        let src = std::fs::canonicalize(&m.source).unwrap_or_else(|_| PathBuf::from(&m.source));
        (m.fstype == FSTYPE && src == dev).then_some(m.target)
    })
}

/// True when something is mounted exactly at `path`.
pub fn is_mount_point(path: &Path) -> bool {
    let p = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    current_mounts().iter().any(|m| m.target == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes() {
        let t = "/dev/dax0.0 /mnt/my\\040famfs fuse.famfs rw,nosuid 0 0\nproc /proc proc rw 0 0\nbad\n";
        let m = parse_mounts(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, PathBuf::from("/mnt/my famfs"));
        assert_eq!(m[0].fstype, "fuse.famfs");
        assert_eq!(unescape("a\\"), "a\\");
        assert_eq!(unescape("a\\04"), "a\\04");
    }
}
