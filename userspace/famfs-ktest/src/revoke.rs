//! FAMFS_IOC_REVOKE against what is in flight (issue 22): a write(2) already inside a file's
//! data path when the revoke comes, a page pinned in a pipe while a process revokes, and the
//! holder a VM suite uses to pin a page of a file served through a mount.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::datapath::{create, pattern, setup, simple, Mapping, MIB};
use crate::{ctx, CheckResult, Env};

fn pipe() -> Result<(File, File), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) returns.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: Fresh descriptors, owned by us from here on.
    Ok(unsafe {
        (
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    })
}

/// Pins the first page of `map` in the pipe `w` (vmsplice: the pipe takes a page reference,
/// which the device page keeps until the pipe is drained or closed).
fn pin_page(map: &Mapping, w: &File) -> CheckResult {
    let iov = libc::iovec {
        iov_base: map.addr.cast(),
        iov_len: 4096,
    };
    // SAFETY: vmsplice of one page of our own live mapping into our own pipe.
    let n = unsafe { libc::vmsplice(w.as_raw_fd(), &iov, 1, 0) };
    if n != 4096 {
        return Err(format!("vmsplice: {n} ({})", io::Error::last_os_error()));
    }
    Ok(())
}

fn touch(map: &Mapping) -> u8 {
    // SAFETY: `addr` maps at least one readable page for the mapping's lifetime.
    unsafe { std::ptr::read_volatile(map.addr) }
}

/// Whether `pid` (our child) has ended, waiting at most `limit` for it (reaped if so).
fn reaped_within(pid: libc::pid_t, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: Polls our own child without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The state letter of `pid` (`/proc/PID/stat`).
fn proc_state(pid: libc::pid_t) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().chars().take(1).collect())
        })
        .unwrap_or_else(|| "gone".into())
}

/// A revoke that waits for a pinned page can be killed: a child revokes while a page of a file
/// is pinned in a pipe of this process, and SIGKILL must end it within seconds. Before, the
/// wait (`dax_break_layout_final`) was uninterruptible: the revoking process stayed in D state
/// for as long as the pipe held the page, whatever signal it got.
pub(crate) fn check_revoke_killable(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let f = create(&s, &simple(&[(1420 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    ctx("pwrite", f.file.write_all_at(&pattern(80, 4096), 0))?;
    let map = ctx("mmap", Mapping::new(&f.file, 4096, 0, libc::PROT_READ))?;
    touch(&map);
    let (r, w) = pipe()?;
    pin_page(&map, &w)?;
    let ctl = s.ctl();
    // SAFETY: The test program forks from its main thread; the child only makes the ioctl and
    // leaves with `_exit`, without running the parent's destructors.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let code = if ctl.revoke().is_ok() { 0 } else { 1 };
        // SAFETY: Leave the child at once.
        unsafe { libc::_exit(code) };
    }
    std::thread::sleep(Duration::from_secs(1));
    let waiting = proc_state(pid);
    let early = reaped_within(pid, Duration::from_millis(10));
    // SAFETY: Signals our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let killed = early || reaped_within(pid, Duration::from_secs(5));
    let stuck = proc_state(pid);
    // Release the pin: a child that could not be killed now finishes its revoke.
    drop(r);
    drop(w);
    if !killed {
        reaped_within(pid, Duration::from_secs(60));
        return Err(format!(
            "the revoking process was still there 5 s after SIGKILL (state {stuck}, was {waiting}): its wait for the \
             pinned page is not killable"
        ));
    }
    if early {
        return Err("the revoke returned while a page was pinned: it did not wait for it".into());
    }
    drop(map);
    Ok(())
}

/// Physical address of byte 0 of dax device `name` (sysfs `resource`).
pub(crate) fn phys_base(name: &str) -> Result<u64, String> {
    let p = format!("/sys/bus/dax/devices/{name}/resource");
    let t = ctx(&format!("read {p}"), std::fs::read_to_string(&p))?;
    u64::from_str_radix(t.trim().trim_start_matches("0x"), 16).map_err(|e| format!("{p}: {e}"))
}

/// `len` bytes of physical memory at `phys`, read through /dev/mem (not through famfs).
pub(crate) fn devmem(phys: u64, len: usize) -> Result<Vec<u8>, String> {
    let mem = ctx("open /dev/mem", File::open("/dev/mem"))?;
    let map = ctx(
        "mmap /dev/mem",
        Mapping::new(&mem, len, phys, libc::PROT_READ),
    )?;
    let mut out = vec![0u8; len];
    // SAFETY: `map` maps `len` readable bytes; `out` has room for them; they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(map.addr, out.as_mut_ptr(), len) };
    Ok(out)
}

/// `revoke-inflight-write SRC SERVER_PID`: a write(2) into a famfs.ko file, from a buffer that
/// is a mapping of `SRC` (a file of a FUSE mount served by `SERVER_PID`, stopped here with
/// SIGSTOP so that the copy faults and waits inside the data path), across an IOC_REVOKE.
/// The revoke must not return while the write is inside (it waits for it), and the device
/// bytes must not change after it returned (oracle: the physical memory read through /dev/mem).
/// Prints one line per assertion; the server is continued (SIGCONT) whatever happens.
pub(crate) fn revoke_inflight_write(src: &str, server: libc::pid_t) -> CheckResult {
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    let name = daxdev.rsplit('/').next().unwrap_or(&daxdev).to_string();
    let len = 2 * MIB as usize;
    let dev_off = 1440 * MIB;
    let phys = phys_base(&name)? + dev_off;
    let s = setup(&Env {
        daxdev: daxdev.clone(),
    })?;
    let f = create(&s, &simple(&[(dev_off, 2 * MIB)], 2 * MIB)?, 0)?;
    let before = pattern(81, len);
    ctx("pwrite before", f.file.write_all_at(&before, 0))?;
    let srcf = ctx(&format!("open {src}"), File::open(src))?;
    let srcmap = ctx(
        "mmap the source",
        Mapping::new(&srcf, len, 0, libc::PROT_READ),
    )?;
    let cont = || {
        // SAFETY: Continues the server we stopped (a plain signal to a pid we were given).
        unsafe { libc::kill(server, libc::SIGCONT) };
    };
    // SAFETY: Stops the FUSE server whose pid we were given, so that the source faults wait.
    if unsafe { libc::kill(server, libc::SIGSTOP) } != 0 {
        return Err(format!("SIGSTOP {server}: {}", io::Error::last_os_error()));
    }
    let written = AtomicBool::new(false);
    let revoked = AtomicBool::new(false);
    let (addr, fd) = (srcmap.addr as usize, f.file.as_raw_fd());
    let result = std::thread::scope(|sc| -> CheckResult {
        let writer = sc.spawn(|| {
            // SAFETY: A write(2) from `len` bytes of our live mapping into our own descriptor.
            let n = unsafe { libc::pwrite(fd, addr as *const libc::c_void, len, 0) };
            written.store(true, Ordering::SeqCst);
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n)
            }
        });
        std::thread::sleep(Duration::from_millis(1500));
        if written.load(Ordering::SeqCst) {
            cont();
            return Err("the write did not wait for the stopped FUSE server (test set-up)".into());
        }
        let revoker = sc.spawn(|| {
            let r = s.ctl().revoke();
            revoked.store(true, Ordering::SeqCst);
            r
        });
        let start = Instant::now();
        while !revoked.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // What the memory holds as the revoke returns (or, when it is still waiting, now).
        let returned_early = revoked.load(Ordering::SeqCst) && !written.load(Ordering::SeqCst);
        let at_return = if returned_early {
            Some(devmem(phys, len)?)
        } else {
            None
        };
        cont();
        let w = writer.join().map_err(|_| "writer panicked".to_string())?;
        let r = revoker.join().map_err(|_| "revoker panicked".to_string())?;
        let r = ctx("IOC_REVOKE", r)?;
        let at_return = match at_return {
            Some(b) => b,
            None => devmem(phys, len)?,
        };
        let after = devmem(phys, len)?;
        println!("# write returned {w:?}; revoke counted {} file(s)", r.files);
        let mut src_bytes = vec![0u8; len];
        ctx("read the source", srcf.read_exact_at(&mut src_bytes, 0))?;
        let wrote = after == src_bytes;
        let mut failed = Vec::new();
        if returned_early {
            failed.push(
                "IOC_REVOKE returned while a write(2) was still inside the file's data path"
                    .to_string(),
            );
        }
        if at_return != after {
            failed.push(format!(
                "the device memory changed after IOC_REVOKE returned ({} of {len} bytes; the write went on into it{})",
                at_return.iter().zip(&after).filter(|(a, b)| a != b).count(),
                if wrote { ", which now holds the write's bytes" } else { "" }
            ));
        }
        if !wrote && after != before {
            failed.push("the device memory holds neither the bytes before nor the write's".into());
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    });
    cont();
    result
}

/// `pin-page PATH`: maps the first page of PATH, reads it, pins it in a pipe (vmsplice),
/// prints `pinned`, and holds the pin until stdin reaches EOF.
pub(crate) fn hold_pinned_page(path: &str) -> Result<(), String> {
    let f = ctx(&format!("open {path}"), File::open(path))?;
    let map = ctx("mmap", Mapping::new(&f, 4096, 0, libc::PROT_READ))?;
    touch(&map);
    let (r, w) = pipe()?;
    pin_page(&map, &w)?;
    drop(map);
    println!("pinned");
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    drop(r);
    drop(w);
    Ok(())
}
