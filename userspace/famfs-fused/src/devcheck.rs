//! What the devices of the mounted file system hold, read in ways that can neither hang nor kill
//! the server (it serves the whole mount from one process):
//!
//! - superblocks are read with pread(2) on descriptors (module mode: read-only famfs.ko files
//!   over each device's superblock region). A device whose files famfs.ko revoked, or that is
//!   being removed, then gives an errno (`ESTALE`, `ENXIO`); a read through a mapping of it
//!   would get SIGBUS, which kills the server;
//! - a candidate path for a secondary device (named in the log, by the host cache, or a
//!   `/dev/dax*`) is opened with `O_PATH`, which opens nothing (a FIFO would block an open for
//!   reading until a writer comes, and a device's own open may have side effects), checked
//!   with fstat(2) on that descriptor (a character device of the dax class), and only then
//!   opened for use, through that descriptor (`/proc/self/fd`), never again by path.

use famfs_format::{format_uuid, AnySuperblock, Superblock, UuidBytes, SB_SIZE};
use famfs_kmod::{abi, Control};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// How a stale reason starts when the primary superblock could not be read as valid.
pub(crate) const SB_INVALID: &str = "the superblock is no longer valid";

/// The environment variable of the probe delay test hook ([`test_probe_delay`]).
pub(crate) const TEST_PROBE_DELAY_ENV: &str = "FAMFS_FUSED_TEST_PROBE_DELAY_MS";

/// Test hook, off by default: with `FAMFS_FUSED_TEST_PROBE_DELAY_MS=N` in the server's
/// environment every superblock probe (each stale check, and each secondary device candidate
/// read in module mode) first sleeps N milliseconds, so that tests can show that a slow probe
/// holds up no lookup (tests/mount.rs). Unset, it costs one look at the environment, at the
/// first probe.
pub(crate) fn test_probe_delay() {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let d = DELAY.get_or_init(|| {
        let ms: u64 = std::env::var(TEST_PROBE_DELAY_ENV).ok()?.parse().ok()?;
        log::warn!("test hook {TEST_PROBE_DELAY_ENV}: every superblock probe sleeps {ms} ms");
        Some(std::time::Duration::from_millis(ms))
    });
    if let Some(d) = d {
        std::thread::sleep(*d);
    }
}

/// The first [`SB_SIZE`] bytes of `f` (a file over a superblock region), by pread(2).
pub(crate) fn pread_superblock(f: &File) -> std::io::Result<[u8; SB_SIZE]> {
    let mut b = [0u8; SB_SIZE];
    f.read_exact_at(&mut b, 0)?;
    Ok(b)
}

/// The primary superblock read through `f`, or why it could not be.
pub(crate) fn read_primary(f: &File) -> Result<Superblock, String> {
    let b = pread_superblock(f).map_err(|e| format!("cannot read it: {e}"))?;
    Superblock::decode(&b).map_err(|e| e.to_string())
}

/// Any superblock read through `f`, or why it could not be.
pub(crate) fn read_any(f: &File) -> Result<AnySuperblock, String> {
    let b = pread_superblock(f).map_err(|e| format!("cannot read it: {e}"))?;
    AnySuperblock::decode(&b).map_err(|e| e.to_string())
}

/// Why the primary superblock, as read, is not the one this mount was made from (`mounted`:
/// its fs uuid and system uuid), if it is not.
pub(crate) fn primary_change(
    read: Result<Superblock, String>,
    mounted: &(UuidBytes, UuidBytes),
) -> Option<String> {
    match read {
        Err(e) => Some(format!("{SB_INVALID} ({e}): the file system was killed, or is being re-formatted")),
        Ok(sb) if sb.fs_uuid != mounted.0 => Some(format!(
            "the device now holds another file system (fs uuid {} instead of {}): it was re-formatted",
            format_uuid(&sb.fs_uuid),
            format_uuid(&mounted.0)
        )),
        Ok(sb) if sb.system_uuid != mounted.1 => Some(format!(
            "the superblock's master changed (system uuid {} instead of {}): it was re-formatted",
            format_uuid(&sb.system_uuid),
            format_uuid(&mounted.1)
        )),
        Ok(_) => None,
    }
}

/// Why secondary device `index` (found at `at`), as read, no longer holds this file system's
/// secondary superblock with its device uuid, if it does not.
pub(crate) fn secondary_change(
    index: u32,
    at: &str,
    read: Result<AnySuperblock, String>,
    fs_uuid: &UuidBytes,
    dev_uuid: &UuidBytes,
) -> Option<String> {
    let what = match read {
        Err(e) => format!("holds no valid famfs superblock any more ({e})"),
        Ok(AnySuperblock::Primary(p)) => {
            format!(
                "now holds the primary superblock of a file system (fs uuid {})",
                format_uuid(&p.fs_uuid)
            )
        }
        Ok(AnySuperblock::Secondary(s)) if s.fs_uuid != *fs_uuid => format!(
            "now belongs to another file system (fs uuid {} instead of {})",
            format_uuid(&s.fs_uuid),
            format_uuid(fs_uuid)
        ),
        Ok(AnySuperblock::Secondary(s)) if s.dev_uuid != *dev_uuid => format!(
            "now holds another device's superblock (device uuid {} instead of {})",
            format_uuid(&s.dev_uuid),
            format_uuid(dev_uuid)
        ),
        Ok(_) => return None,
    };
    Some(format!(
        "secondary device {index} ({at}) {what}: it was re-formatted or taken by another file system, and the \
         files with memory on it would use the new owner's memory"
    ))
}

/// Opens candidate `path` for a secondary device without opening anything that is not a dax
/// character device: `O_PATH` first, fstat(2) on that descriptor, then the read-write open
/// through the descriptor (so the checked file is the one used, whatever the path names by
/// then).
pub(crate) fn open_dax_candidate(path: &Path) -> Result<File, String> {
    let at = path.display();
    let p = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("{at}: {e}"))?;
    let md = p.metadata().map_err(|e| format!("{at}: fstat: {e}"))?;
    if !md.file_type().is_char_device() {
        return Err(format!(
            "{at}: not a character device (a devdax device is one); not opened"
        ));
    }
    let class = format!(
        "/sys/dev/char/{}:{}/subsystem",
        libc::major(md.rdev()),
        libc::minor(md.rdev())
    );
    let is_dax =
        std::fs::read_link(&class).is_ok_and(|l| l.file_name().is_some_and(|n| n == "dax"));
    if !is_dax {
        return Err(format!(
            "{at}: not a dax device (no dax class in {class}); not opened"
        ));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", p.as_raw_fd()))
        .map_err(|e| format!("{at}: {e}"))
}

/// Reads the superblock of dax device `dev` (bound to `fsdev_dax`) through a short-lived open of
/// famfs.ko's control device of its own (the server's table cannot let a device go once
/// attached): attach at index 0, a read-only file over the superblock region, pread(2). Returns
/// the superblock and the device size. Everything is released before it returns.
pub(crate) fn read_candidate(
    control_path: &Path,
    dev: &File,
) -> Result<(AnySuperblock, u64), String> {
    test_probe_delay();
    let ctl = Control::open_path(control_path)
        .map_err(|e| format!("open {}: {e}", control_path.display()))?;
    let size = ctl
        .attach_daxdev(dev, 0)
        .map_err(|e| format!("famfs.ko attach: {e}"))?;
    let msg = crate::wire::superblock_wire().map_err(|e| e.to_string())?;
    let f = ctl
        .create_file(
            &msg,
            abi::CREATE_READ_ONLY | abi::CREATE_CLOEXEC,
            0o400,
            0,
            0,
        )
        .map_err(|e| format!("famfs.ko superblock file: {e}"))?;
    let sb = read_any(&f.file)?;
    Ok((sb, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A FIFO named as a candidate is refused at once, without an open that would wait for a
    /// writer; so are a regular file and a character device that is not a dax device.
    #[test]
    fn candidates_that_are_not_dax_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t0 = Instant::now();
        let paths = [
            fifo.clone(),
            file.clone(),
            Path::new("/dev/null").to_path_buf(),
        ];
        std::thread::spawn(move || {
            let r: Vec<_> = paths
                .iter()
                .map(|p| open_dax_candidate(p).map(|_| ()))
                .collect();
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("open_dax_candidate blocked on a FIFO");
        assert!(t0.elapsed() < Duration::from_secs(10));
        for (e, want) in r.iter().zip([
            "not a character device",
            "not a character device",
            "not a dax device",
        ]) {
            let e = e.as_ref().expect_err("a non-dax candidate was accepted");
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn secondary_change_says_which_device_and_why() {
        let fs = [1u8; 16];
        let dev = [2u8; 16];
        assert!(
            secondary_change(1, "/dev/dax1.0", Err("bad magic".into()), &fs, &dev)
                .is_some_and(|w| w
                    .contains("secondary device 1 (/dev/dax1.0) holds no valid famfs superblock"))
        );
    }
}
