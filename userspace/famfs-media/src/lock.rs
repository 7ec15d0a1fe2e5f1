//! The one append lock of a file system on this host (Documentation/sharing.md).
//!
//! Every way of appending to a log (the CLI through a mount, the CLI with `--device`, `devadd`,
//! `mkfs` over an existing file system, `famfs clone`, any program using famfs-meta) takes the same
//! exclusive `flock` first: the lock file named after the file system's uuid in the lock
//! directory. The lock does not depend on the path the file system was reached by (a mount
//! point, the device, a symlink or another name of an image), so two appenders of one host can
//! never interleave. Only the master host appends; nothing locks across hosts (see sharing.md for
//! how two masters are detected).

use std::fs::File;
use std::path::{Path, PathBuf};

/// Environment variable naming the lock directory (tests, unusual setups).
pub const LOCK_DIR_ENV: &str = "FAMFS_LOCK_DIR";

/// Where root's lock files live.
pub const ROOT_LOCK_DIR: &str = "/run/famfs";

/// The lock directory: `$FAMFS_LOCK_DIR`, else `/run/famfs` for root, else (a user appending to
/// image files of their own) `$XDG_RUNTIME_DIR/famfs` or `/tmp/famfs-locks-UID`.
pub fn lock_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(LOCK_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from(ROOT_LOCK_DIR);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => Path::new(&d).join("famfs"),
        None => PathBuf::from(format!("/tmp/famfs-locks-{}", uid.as_raw())),
    }
}

/// The lock file of the file system with uuid `fs_uuid`.
pub fn lock_path(fs_uuid: &[u8; 16]) -> PathBuf {
    let hex: String = fs_uuid.iter().map(|b| format!("{b:02x}")).collect();
    lock_dir().join(format!("{hex}.lock"))
}

/// Opens (creating it and its directory when missing) the lock file at `path` and takes its
/// exclusive flock, waiting for the holder. Never follows a symlink at the file's path.
pub fn lock_exclusive(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/x.lock");
        let a = lock_exclusive(&p).unwrap();
        // A second open file description of the same file cannot take it while `a` holds it.
        let b = std::fs::File::open(&p).unwrap();
        assert_eq!(
            rustix::fs::flock(&b, rustix::fs::FlockOperation::NonBlockingLockExclusive),
            Err(rustix::io::Errno::WOULDBLOCK)
        );
        drop(a);
        rustix::fs::flock(&b, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        std::os::unix::fs::symlink(&p, d.path().join("link")).unwrap();
        assert!(
            lock_exclusive(&d.path().join("link")).is_err(),
            "a symlink at the lock path is refused"
        );
    }

    #[test]
    fn path_is_per_uuid() {
        let u = [0xab; 16];
        assert!(lock_path(&u).ends_with("abababababababababababababababab.lock"));
        assert_ne!(lock_path(&u), lock_path(&[0; 16]));
    }
}
