//! Unloading and loading famfs.ko, for the checks that race an unload against the module's own
//! work (lease-unload, unload-race, unload-during-eviction).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use famfs_kmod::{errno_of, Control};

use crate::ctx;

/// How long an unload is retried while the module is in use.
const UNLOAD_PATIENCE: Duration = Duration::from_secs(30);

/// One `delete_module("famfs", O_NONBLOCK)`: fails at once (EWOULDBLOCK) while it is in use.
pub(crate) fn try_unload() -> io::Result<()> {
    // SAFETY: delete_module with a NUL-terminated name; O_NONBLOCK fails at once while the
    // module is in use.
    let rc = unsafe { libc::syscall(libc::SYS_delete_module, c"famfs".as_ptr(), libc::O_NONBLOCK) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Why [`unload`] gave up: its last error, and whether that was the module still in use after
/// 30 s of tries (`timed_out`) or another error (not retried).
pub(crate) struct Refused {
    pub(crate) err: io::Error,
    pub(crate) timed_out: bool,
}

/// Unloads the module, trying again while it is in use (EWOULDBLOCK, EBUSY, EAGAIN) for up to
/// 30 s, `pause` apart (zero: at once, racing whatever still holds it).
pub(crate) fn unload(pause: Duration) -> Result<(), Refused> {
    let start = Instant::now();
    loop {
        let err = match try_unload() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if ![libc::EWOULDBLOCK, libc::EBUSY, libc::EAGAIN].contains(&errno_of(&err)) {
            return Err(Refused {
                err,
                timed_out: false,
            });
        }
        if start.elapsed() > UNLOAD_PATIENCE {
            return Err(Refused {
                err,
                timed_out: true,
            });
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// Loads the module from `ko` (no parameters) and waits up to 10 s for udev to make
/// `/dev/famfs`.
pub(crate) fn load(ko: &str) -> Result<(), String> {
    let ko_file = ctx("open famfs.ko", File::open(ko))?;
    // SAFETY: finit_module with an open module file and empty parameters.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, ko_file.as_raw_fd(), c"".as_ptr(), 0) };
    if rc != 0 {
        return Err(format!("finit_module: {}", io::Error::last_os_error()));
    }
    let start = Instant::now();
    while Control::open().is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("/dev/famfs did not appear after reload".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
