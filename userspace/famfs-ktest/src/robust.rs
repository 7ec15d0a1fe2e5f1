//! famfs.ko under faults, removal and unload: memory failure, device removal with pinned
//! pages, unload racing the last close, and the smaller file-operation contracts (splice,
//! O_DIRECT/RWF_NOWAIT, privileges and times on write, ATTACH's copy-out, msync write-back).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::time::{Duration, Instant};

use famfs_kmod::{abi, Control};

use crate::datapath::{create, pattern, read_at, same, setup, simple, Mapping, MIB};
use crate::{ctx, expect_errno, kmodule, open_dev, CheckResult, Env};

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

/// Forks; the child runs `f` and exits with its return value (never returns in the child).
pub(crate) fn fork_child(f: impl FnOnce() -> i32) -> Result<libc::pid_t, String> {
    // SAFETY: The test program forks only from its main thread; the child runs `f` and leaves
    // with `_exit`, without running the parent's destructors.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let code = f();
        // SAFETY: Leave the child at once.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

pub(crate) fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: Waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

extern "C" fn exit_with_bus_code(
    _sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // SAFETY: The kernel passes a valid siginfo to an SA_SIGINFO handler; `_exit` is
    // async-signal-safe.
    unsafe { libc::_exit(100 + (*info).si_code) };
}

/// In a child: SIGBUS ends the process with status 100 + si_code (BUS_MCEERR_AR = 4,
/// BUS_MCEERR_AO = 5, BUS_ADRERR = 2).
pub(crate) fn report_sigbus_code() {
    // SAFETY: A zeroed sigaction with our handler and SA_SIGINFO is a valid argument.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = exit_with_bus_code as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

pub(crate) fn read_volatile(map: &Mapping, off: usize) -> u8 {
    assert!(off < map.len);
    // SAFETY: `off` is inside the mapping (checked above).
    unsafe { std::ptr::read_volatile(map.addr.add(off)) }
}

const BUS_MCEERR_AR: i32 = 4;
const BUS_MCEERR_AO: i32 = 5;

/// Memory failure on one page of a file (MADV_HWPOISON from another process): a process that
/// had the page mapped and touched gets SIGBUS with BUS_MCEERR_*; reads of that page fail with
/// EHWPOISON and a new mapping of it gets BUS_MCEERR_AR; the rest of the file, other files on
/// the device and new files stay usable, byte for byte.
pub(crate) fn poison() -> Result<(), String> {
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    let s = setup(&Env { daxdev })?;
    let base = 3 * 1024 * MIB;
    let victim = create(&s, &simple(&[(base, 4 * MIB)], 4 * MIB)?, 0)?;
    let other = create(&s, &simple(&[(base + 64 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    let vdata = pattern(41, (4 * MIB) as usize);
    let odata = pattern(42, (2 * MIB) as usize);
    ctx("write victim", victim.file.write_all_at(&vdata, 0))?;
    ctx("write other", other.file.write_all_at(&odata, 0))?;

    // The mapper: maps and touches the page, says so, waits, touches it again.
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let vfile = &victim.file;
    let mapper = fork_child(|| {
        report_sigbus_code();
        let Ok(map) = Mapping::new(vfile, (4 * MIB) as usize, 0, libc::PROT_READ) else {
            return 3;
        };
        read_volatile(&map, 0);
        let _ = (&ready_w).write_all(b"r");
        let _ = (&go_r).read(&mut [0u8; 1]);
        read_volatile(&map, 0);
        0
    })?;
    drop(ready_w);
    drop(go_r);
    ctx("mapper ready", (&ready_r).read_exact(&mut [0u8; 1]))?;

    // The injector: MADV_HWPOISON on its own mapping of the page (it may be killed for it).
    let injector = fork_child(|| {
        let Ok(map) = Mapping::new(vfile, 4096, 0, libc::PROT_READ) else {
            return 3;
        };
        read_volatile(&map, 0);
        // SAFETY: Injects a (simulated) memory failure on our own mapped page.
        let rc = unsafe { libc::madvise(map.addr.cast(), 4096, libc::MADV_HWPOISON) };
        if rc == 0 {
            0
        } else {
            1
        }
    })?;
    let status = wait_child(injector);
    println!("# MADV_HWPOISON child wait status {status:#x}");
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0 {
        return Err("MADV_HWPOISON failed".into());
    }
    let _ = (&go_w).write_all(b"g");
    let status = wait_child(mapper);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) - 100
    } else {
        -1
    };
    if code != BUS_MCEERR_AR && code != BUS_MCEERR_AO {
        return Err(format!(
            "the process that mapped the failed page was not signalled (wait status {status:#x}, want SIGBUS with BUS_MCEERR_AR/AO)"
        ));
    }

    expect_errno(
        "read of the failed page",
        victim.file.read_at(&mut [0u8; 16], 0),
        libc::EHWPOISON,
    )?;
    same(
        "rest of the failed extent",
        &read_at(&victim.file, 4096, 4096)?,
        &vdata[4096..8192],
    )?;
    same(
        "second extent of the file",
        &read_at(&victim.file, (2 * MIB) as usize, 2 * MIB)?,
        &vdata[(2 * MIB) as usize..],
    )?;
    same(
        "other file on the device",
        &read_at(&other.file, (2 * MIB) as usize, 0)?,
        &odata,
    )?;
    ctx(
        "write to another file",
        other.file.write_all_at(b"still fine", 0),
    )?;

    // A new mapping: the failed page raises SIGBUS (BUS_MCEERR_AR), its neighbours read.
    let vdata = &vdata;
    let toucher = |off: usize| {
        fork_child(move || {
            report_sigbus_code();
            let Ok(map) = Mapping::new(vfile, (4 * MIB) as usize, 0, libc::PROT_READ) else {
                return 3;
            };
            if read_volatile(&map, off) == vdata[off] {
                0
            } else {
                2
            }
        })
    };
    let status = wait_child(toucher(0)?);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 100 + BUS_MCEERR_AR) {
        return Err(format!("touching the failed page through a new mapping: wait status {status:#x}, want BUS_MCEERR_AR"));
    }
    for off in [4096usize, (2 * MIB + 4096) as usize] {
        let status = wait_child(toucher(off)?);
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(format!(
                "touching offset {off:#x} of the file after the failure: wait status {status:#x}"
            ));
        }
    }
    let fresh = create(&s, &simple(&[(base + 128 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    ctx(
        "write to a new file on the device",
        fresh.file.write_all_at(b"new", 0),
    )?;
    Ok(())
}

/// sendfile(2) out of and splice(2) into a famfs.ko file.
pub(crate) fn check_splice(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let f = create(&s, &simple(&[(1200 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    let data = pattern(50, 100_000);
    ctx("write", f.file.write_all_at(&data, 0))?;
    let (r, w) = pipe()?;
    let mut off: libc::off_t = 0;
    // SAFETY: Plain syscall on our descriptors; `off` is a valid in/out offset.
    let n = unsafe { libc::sendfile(w.as_raw_fd(), f.file.as_raw_fd(), &mut off, 4096) };
    if n != 4096 {
        return Err(format!(
            "sendfile out of the file: {n} ({})",
            io::Error::last_os_error()
        ));
    }
    let mut got = vec![0u8; 4096];
    ctx("read pipe", (&r).read_exact(&mut got))?;
    same("sendfile bytes", &got, &data[..4096])?;
    let payload = pattern(51, 4096);
    ctx("fill pipe", (&w).write_all(&payload))?;
    let mut out_off: libc::loff_t = 8192;
    // SAFETY: As above.
    let n = unsafe {
        libc::splice(
            r.as_raw_fd(),
            std::ptr::null_mut(),
            f.file.as_raw_fd(),
            &mut out_off,
            4096,
            0,
        )
    };
    if n != 4096 {
        return Err(format!(
            "splice into the file: {n} ({})",
            io::Error::last_os_error()
        ));
    }
    same("spliced bytes", &read_at(&f.file, 4096, 8192)?, &payload)
}

/// O_DIRECT is accepted (DAX I/O never goes through a page cache: the same path as without
/// it); RWF_NOWAIT is refused with EOPNOTSUPP (reads and writes may sleep on the inode lock).
pub(crate) fn check_odirect_nowait(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let f = create(&s, &simple(&[(1210 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    let data = pattern(52, 8192);
    ctx("write", f.file.write_all_at(&data, 0))?;
    let direct = ctx(
        "open with O_DIRECT",
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(format!("/proc/self/fd/{}", f.file.as_raw_fd())),
    )?;
    same("O_DIRECT read", &read_at(&direct, 8192, 0)?, &data)?;
    // SAFETY: F_SETFL on our own descriptor.
    if unsafe { libc::fcntl(f.file.as_raw_fd(), libc::F_SETFL, libc::O_DIRECT) } != 0 {
        return Err(format!(
            "fcntl(F_SETFL, O_DIRECT): {}",
            io::Error::last_os_error()
        ));
    }
    let mut buf = [0u8; 16];
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: One valid iovec over `buf`.
    let n = unsafe { libc::preadv2(f.file.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
    let r = if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n)
    };
    expect_errno("preadv2(RWF_NOWAIT)", r, libc::EOPNOTSUPP)
}

/// A write by a caller without CAP_FSETID clears setuid/setgid and moves mtime and ctime.
pub(crate) fn check_write_privs(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let f = create(&s, &simple(&[(1220 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    ctx(
        "chmod 6775",
        f.file
            .set_permissions(std::fs::Permissions::from_mode(0o6775)),
    )?;
    let old = libc::timespec {
        tv_sec: 1_000_000,
        tv_nsec: 0,
    };
    let times = [old, old];
    // SAFETY: Two valid timespecs.
    if unsafe { libc::futimens(f.file.as_raw_fd(), times.as_ptr()) } != 0 {
        return Err(format!("futimens: {}", io::Error::last_os_error()));
    }
    let file = &f.file;
    let child = fork_child(|| {
        // SAFETY: Plain syscalls in the child: become nobody (no capabilities), then write
        // through the descriptor opened before.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(65534, 65534, 65534) != 0
                || libc::setresuid(65534, 65534, 65534) != 0
            {
                return 3;
            }
        }
        match file.write_at(b"x", 0) {
            Ok(1) => 0,
            _ => 1,
        }
    })?;
    let status = wait_child(child);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!(
            "unprivileged write failed (wait status {status:#x})"
        ));
    }
    let meta = ctx("fstat", f.file.metadata())?;
    use std::os::unix::fs::MetadataExt;
    if meta.mode() & 0o6000 != 0 {
        return Err(format!(
            "mode is {:o} after an unprivileged write: setuid/setgid kept",
            meta.mode() & 0o7777
        ));
    }
    if meta.mtime() <= old.tv_sec || meta.ctime() <= old.tv_sec {
        return Err(format!(
            "mtime {} ctime {} did not move on write",
            meta.mtime(),
            meta.ctime()
        ));
    }
    Ok(())
}

/// ATTACH whose result cannot be written back (read-only argument page) fails with EFAULT and
/// leaves nothing attached: the same index then attaches.
pub(crate) fn check_attach_copyout(env: &Env) -> CheckResult {
    let ctl = ctx("open /dev/famfs", Control::open())?;
    let dev = open_dev(&env.daxdev)?;
    // SAFETY: A fresh anonymous page, filled and then made read-only.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(format!("mmap: {}", io::Error::last_os_error()));
    }
    let args = abi::AttachDaxdevArgs {
        fd: dev.as_raw_fd(),
        index: 7,
        size: 0,
        reserved: [0, 0],
    };
    // SAFETY: `page` is a writable page, large enough for the args; then made read-only.
    unsafe {
        std::ptr::write(page.cast::<abi::AttachDaxdevArgs>(), args);
        libc::mprotect(page, 4096, libc::PROT_READ);
    }
    // SAFETY: IOC_ATTACH_DAXDEV with an argument the kernel can read but not write.
    let rc = unsafe {
        libc::ioctl(
            ctl.file().as_raw_fd(),
            abi::IOC_ATTACH_DAXDEV as libc::c_ulong,
            page,
        )
    };
    let r = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    };
    // SAFETY: Unmaps the page mapped above.
    unsafe { libc::munmap(page, 4096) };
    expect_errno("attach with a read-only argument", r, libc::EFAULT)?;
    ctx(
        "attach at the same index afterwards",
        ctl.attach_daxdev(&dev, 7),
    )
    .map(|_| ())
}

fn tracefs() -> Result<String, String> {
    let t = "/sys/kernel/tracing";
    if !std::path::Path::new(&format!("{t}/kprobe_events")).exists() {
        let _ = std::process::Command::new("mount")
            .args(["-t", "tracefs", "tracefs", t])
            .status();
    }
    if std::path::Path::new(&format!("{t}/kprobe_events")).exists() {
        Ok(t.to_string())
    } else {
        Err("no tracefs with kprobe_events".into())
    }
}

fn write_file(path: &str, text: &str) -> Result<(), String> {
    let mut f = ctx(
        &format!("open {path}"),
        OpenOptions::new().append(true).open(path),
    )?;
    ctx(&format!("write {path}"), f.write_all(text.as_bytes()))
}

/// msync(MS_SYNC) of a written shared mapping writes the CPU caches back over the written
/// range: the oracle is a kprobe on the kernel's cache write-back (`arch_wb_cache_pmem`),
/// which `dax_flush` calls only when it will flush.
pub(crate) fn check_msync_writes_back(env: &Env) -> CheckResult {
    let t = tracefs()?;
    let _ = write_file(&format!("{t}/kprobe_events"), "-:famfs_wb\n");
    write_file(
        &format!("{t}/kprobe_events"),
        "p:famfs_wb arch_wb_cache_pmem\n",
    )?;
    let result = (|| {
        let s = setup(env)?;
        let f = create(&s, &simple(&[(1230 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
        let mut map = ctx(
            "mmap",
            Mapping::new(
                &f.file,
                (2 * MIB) as usize,
                0,
                libc::PROT_READ | libc::PROT_WRITE,
            ),
        )?;
        // Truncating the trace file empties the buffer.
        ctx("clear trace", std::fs::write(format!("{t}/trace"), ""))?;
        write_file(&format!("{t}/events/kprobes/famfs_wb/enable"), "1")?;
        map.slice_mut()[..4096].copy_from_slice(&pattern(53, 4096));
        // SAFETY: msync of our own mapping.
        let rc = unsafe { libc::msync(map.addr.cast(), 4096, libc::MS_SYNC) };
        write_file(&format!("{t}/events/kprobes/famfs_wb/enable"), "0")?;
        if rc != 0 {
            return Err(format!("msync: {}", io::Error::last_os_error()));
        }
        let trace = ctx("read trace", std::fs::read_to_string(format!("{t}/trace")))?;
        let hits = trace.lines().filter(|l| l.contains("famfs_wb")).count();
        println!("# msync: {hits} cache write-backs");
        if hits == 0 {
            return Err("msync of a written mapping wrote no CPU cache back".into());
        }
        Ok(())
    })();
    let _ = write_file(&format!("{t}/kprobe_events"), "-:famfs_wb\n");
    result
}

/// Removal of the device while a page of file A is pinned (vmsplice'd into a pipe): removal
/// waits for the pin, but other files on the device can still be closed meanwhile (no lock is
/// held across the wait), and the removal completes once the pin goes.
pub(crate) fn pin_and_remove() -> Result<(), String> {
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    let name = daxdev.rsplit('/').next().unwrap_or(&daxdev).to_string();
    let s = setup(&Env { daxdev })?;
    let a = create(&s, &simple(&[(1300 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    let b = create(&s, &simple(&[(1310 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    drop(s);
    let map = ctx("mmap", Mapping::new(&a.file, 4096, 0, libc::PROT_READ))?;
    read_volatile(&map, 0);
    let (r, w) = pipe()?;
    let iov = libc::iovec {
        iov_base: map.addr.cast(),
        iov_len: 4096,
    };
    // SAFETY: vmsplice of our own mapped page into our pipe: the pipe takes a page reference.
    let n = unsafe { libc::vmsplice(w.as_raw_fd(), &iov, 1, 0) };
    if n != 4096 {
        return Err(format!("vmsplice: {n} ({})", io::Error::last_os_error()));
    }
    drop(map);
    let mark = dmesg_count("dax device is being removed")?;
    let unbind = std::thread::spawn(move || {
        std::fs::write(format!("/sys/bus/dax/devices/{name}/driver/unbind"), &name)
            .map_err(|e| e.to_string())
    });
    // Wait for the state under test: removal has begun (and is waiting for the pinned page).
    let start = Instant::now();
    while dmesg_count("dax device is being removed")? == mark {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("removal never began".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Closing B needs its inode out of the device's list: must not wait for A's pin.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(b);
        let _ = done_tx.send(());
    });
    let closed = done_rx.recv_timeout(Duration::from_secs(30)).is_ok();
    println!(
        "{} - close-other-file-during-pinned-removal{}",
        if closed { "ok" } else { "not ok" },
        if closed {
            ""
        } else {
            ": closing another file on the device blocked behind the pinned page"
        }
    );
    // Release the pin: the removal must now complete.
    drop(r);
    drop(w);
    let unbound = unbind
        .join()
        .map_err(|_| "unbind thread panicked".to_string())?;
    println!(
        "{} - removal-completes-after-pin-released{}",
        if unbound.is_ok() { "ok" } else { "not ok" },
        unbound
            .as_ref()
            .err()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    drop(a);
    if !closed {
        return Err("blocked close".into());
    }
    Ok(())
}

fn dmesg_count(what: &str) -> Result<usize, String> {
    let out = ctx("dmesg", std::process::Command::new("dmesg").output())?;
    Ok(String::from_utf8_lossy(&out.stdout).matches(what).count())
}

/// Unload racing the last close: ROUNDS times, a child maps a famfs.ko file and is killed
/// with SIGKILL (its files are closed by its exit), while this process retries
/// `delete_module` without waiting until it succeeds, then reloads the module from `ko`.
/// The kernel must not oops (run's dmesg check) and every round must end with the module
/// loaded again.
pub(crate) fn unload_race(rounds: u32, ko: &str) -> Result<(), String> {
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    for round in 0..rounds {
        let (ready_r, ready_w) = pipe()?;
        let dev = daxdev.clone();
        let ready = &ready_w;
        let child = fork_child(move || {
            let Ok(s) = setup(&Env { daxdev: dev }) else {
                return 3;
            };
            let Ok(msg) = simple(&[(1400 * MIB, 2 * MIB)], 2 * MIB) else {
                return 3;
            };
            let Ok(f) = create(&s, &msg, 0) else { return 3 };
            let Ok(map) = Mapping::new(&f.file, 4096, 0, libc::PROT_READ) else {
                return 3;
            };
            read_volatile(&map, 0);
            let _ = (&*ready).write_all(b"r");
            loop {
                // SAFETY: Waits for a signal.
                unsafe { libc::pause() };
            }
        })?;
        drop(ready_w);
        if (&ready_r).read_exact(&mut [0u8; 1]).is_err() {
            wait_child(child);
            return Err(format!("round {round}: the child could not map a file"));
        }
        // SAFETY: Kills our own child.
        unsafe { libc::kill(child, libc::SIGKILL) };
        // No pause between tries: the unload races the exit's last close.
        let unloaded = kmodule::unload(Duration::ZERO);
        wait_child(child);
        unloaded.map_err(|r| match r.timed_out {
            false => format!("round {round}: delete_module: {}", r.err),
            true => format!("round {round}: the module stayed in use 30 s after the kill"),
        })?;
        // udev makes /dev/famfs; wait for it before the next round.
        kmodule::load(ko).map_err(|e| format!("round {round}: {e}"))?;
    }
    Ok(())
}

static FAULTER_GOT_SIGBUS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

extern "C" fn park_on_sigbus(_sig: libc::c_int) {
    FAULTER_GOT_SIGBUS.store(true, std::sync::atomic::Ordering::SeqCst);
    loop {
        // SAFETY: pause(2) is async-signal-safe; the faulting thread parks here for good.
        unsafe { libc::pause() };
    }
}

/// Present page-table entries in `[addr, addr + len)` of this process (/proc/self/pagemap,
/// bit 63), independent of the module.
pub(crate) fn present_pages(addr: usize, len: usize) -> Result<usize, String> {
    let pagemap = ctx("open pagemap", File::open("/proc/self/pagemap"))?;
    let mut buf = vec![0u8; len / 4096 * 8];
    ctx(
        "read pagemap",
        pagemap.read_exact_at(&mut buf, (addr / 4096 * 8) as u64),
    )?;
    Ok(buf
        .chunks_exact(8)
        .filter(|e| u64::from_le_bytes((*e).try_into().unwrap_or([0; 8])) >> 63 == 1)
        .count())
}

/// Pins the calling thread to `cpu`; false when there is no such CPU (or it cannot be done).
fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: A zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity on the calling
    // thread (pid 0) with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Removal racing faults: one thread faults the pages of a file one after the other, without
/// pause and without unmapping them, while the device is unbound. Once the faulting thread got
/// SIGBUS (so none of its faults is in flight), no page of the file may be mapped in this
/// process (checked in pagemap): a fault that passed its check before removal must have
/// installed its entry before removal unmapped, never after.
pub(crate) fn fault_race() -> Result<(), String> {
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    let name = daxdev.rsplit('/').next().unwrap_or(&daxdev).to_string();
    let s = setup(&Env { daxdev })?;
    let len = (64 * MIB) as usize;
    let f = create(&s, &simple(&[(1500 * MIB, 64 * MIB)], 64 * MIB)?, 0)?;
    drop(s);
    let map = ctx("mmap", Mapping::misaligned(&f.file, len))?;
    let (addr, pages) = (map.addr as usize, len / 4096);
    // SAFETY: Installs a plain handler for SIGBUS.
    unsafe {
        libc::signal(
            libc::SIGBUS,
            park_on_sigbus as *const () as libc::sighandler_t,
        )
    };
    // The faulting thread runs on CPU 1 and is preempted there over and over, at random points
    // of its faults, by a real-time thread (100 ms of spinning every 110 ms); the removal runs
    // on CPU 0. A fault preempted between its check of the device state and the installation
    // of its entry then stays there for 100 ms, long enough for a removal that does not take
    // the fault's lock to set the state and unmap everything: without the invalidate lock in
    // the fault path, that fault installs a mapping after the unmap, and it stays.
    let two_cpus = pin_to_cpu(0);
    if two_cpus {
        std::thread::spawn(|| {
            pin_to_cpu(1);
            let param = libc::sched_param { sched_priority: 10 };
            // SAFETY: Sets this thread's own scheduling policy.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            loop {
                std::thread::sleep(Duration::from_millis(10));
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(100) {
                    std::hint::spin_loop();
                }
            }
        });
    }
    let started = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = started.clone();
    std::thread::spawn(move || {
        if two_cpus {
            pin_to_cpu(1);
        }
        let mut i = 0usize;
        loop {
            let page = (addr + (i % pages) * 4096) as *mut u8;
            // Each page is faulted once, in order, and left mapped (never zapped here), so that
            // a mapping installed after the removal's unmap stays visible in pagemap.
            // SAFETY: `page` lies in the mapping, which outlives this thread (the process
            // exits with the mapping in place).
            unsafe { std::ptr::read_volatile(page) };
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            i += 1;
        }
    });
    while started.load(std::sync::atomic::Ordering::Relaxed) < 300 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let unbind = std::thread::spawn(move || {
        std::fs::write(format!("/sys/bus/dax/devices/{name}/driver/unbind"), &name)
            .map_err(|e| e.to_string())
    });
    let start = Instant::now();
    while !unbind.is_finished() {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("the unbind did not return in 60 s (a mapping installed after the unmap pins a page?)".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unbind
        .join()
        .map_err(|_| "unbind thread panicked".to_string())??;
    let faults = started.load(std::sync::atomic::Ordering::Relaxed);
    // The faulting thread's next fault after the removal gets SIGBUS (every page was
    // unmapped); only then is it certain that no fault of it is still in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !FAULTER_GOT_SIGBUS.load(std::sync::atomic::Ordering::SeqCst) {
        if Instant::now() > deadline {
            return Err("the faulting thread went on without SIGBUS after the removal".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let present = present_pages(addr, len)?;
    println!("# {faults} faults before the removal; {present} pages still mapped after it");
    if present != 0 {
        return Err(format!(
            "{present} pages of the file are mapped after the removal"
        ));
    }
    std::mem::forget(map);
    std::mem::forget(f);
    Ok(())
}

/// IOC_REVOKE (the file system on the device was replaced): a process that mapped and touched
/// a file made through the revoked open has no page of it mapped afterwards (pagemap) and gets
/// SIGBUS on its next access; reads, writes, fsync, new mmaps and re-opens by path get ESTALE;
/// the open refuses to create or attach; a second revoke is harmless; once the files are closed,
/// a new open attaches the device and its files work (the revoke did not outlive its scope).
pub(crate) fn check_revoke(env: &Env) -> CheckResult {
    let len = (4 * MIB) as usize;
    {
        let s = setup(env)?;
        expect_errno(
            "revoke with unknown flags",
            {
                let mut args = abi::RevokeArgs {
                    flags: 1,
                    ..Default::default()
                };
                // SAFETY: IOC_REVOKE takes a `*mut RevokeArgs`.
                let rc = unsafe {
                    libc::ioctl(
                        s.ctl().file().as_raw_fd(),
                        abi::IOC_REVOKE as libc::c_ulong,
                        &mut args,
                    )
                };
                if rc < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(rc)
                }
            },
            libc::EINVAL,
        )?;
        let f = create(&s, &simple(&[(700 * MIB, 4 * MIB)], 4 * MIB)?, 0)?;
        let old = pattern(71, len);
        ctx("pwrite", f.file.write_all_at(&old, 0))?;
        let map = ctx(
            "mmap",
            Mapping::new(&f.file, len, 0, libc::PROT_READ | libc::PROT_WRITE),
        )?;
        let mut seen = vec![0u8; len];
        for (i, b) in seen.iter_mut().enumerate() {
            *b = read_volatile(&map, i);
        }
        same("mapping before the revoke", &seen, &old)?;
        let before = present_pages(map.addr as usize, len)?;
        if before == 0 {
            return Err("no page mapped after touching every page".into());
        }
        let r = ctx("IOC_REVOKE", s.ctl().revoke())?;
        if r.devices != 1 || r.files < 1 {
            return Err(format!(
                "revoke counted {} devices and {} files, want 1 and >= 1",
                r.devices, r.files
            ));
        }
        let after = present_pages(map.addr as usize, len)?;
        if after != 0 {
            return Err(format!(
                "{after} of {before} touched pages still mapped after the revoke"
            ));
        }
        let addr = map.addr as usize;
        let child = fork_child(|| {
            report_sigbus_code();
            // SAFETY: `addr` is the start of the shared mapping inherited from the parent.
            let b = unsafe { std::ptr::read_volatile(addr as *const u8) };
            i32::from(b) % 50
        })?;
        let status = wait_child(child);
        // BUS_ADRERR: a fault refused with VM_FAULT_SIGBUS.
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 102 {
            return Err(format!("the mapping's next access did not get SIGBUS (BUS_ADRERR): wait status {status:#x}"));
        }
        let mut buf = vec![0u8; 4096];
        expect_errno(
            "read after the revoke",
            f.file.read_at(&mut buf, 0),
            libc::ESTALE,
        )?;
        expect_errno(
            "write after the revoke",
            f.file.write_at(&buf, 0),
            libc::ESTALE,
        )?;
        expect_errno("fsync after the revoke", f.file.sync_all(), libc::ESTALE)?;
        expect_errno(
            "new mmap after the revoke",
            Mapping::new(&f.file, len, 0, libc::PROT_READ).map(|_| ()),
            libc::ESTALE,
        )?;
        let path = format!("/proc/self/fd/{}", f.file.as_raw_fd());
        expect_errno(
            "re-open by path after the revoke",
            File::open(&path),
            libc::ESTALE,
        )?;
        expect_errno(
            "create after the revoke",
            s.ctl()
                .create_file(&simple(&[(710 * MIB, 2 * MIB)], 2 * MIB)?, 0, 0o644, 0, 0),
            libc::ESTALE,
        )?;
        let dev = open_dev(&env.daxdev)?;
        expect_errno(
            "attach after the revoke",
            s.ctl().attach_daxdev(&dev, 5),
            libc::ESTALE,
        )?;
        ctx("second revoke", s.ctl().revoke())?;
        drop(map);
        drop(f);
    }
    // Another open, once the revoked files are gone: the device and its new files work.
    let s = setup(env)?;
    let f = create(&s, &simple(&[(700 * MIB, 4 * MIB)], 4 * MIB)?, 0)?;
    let data = pattern(72, len);
    ctx("pwrite on a new open", f.file.write_all_at(&data, 0))?;
    same("read on a new open", &read_at(&f.file, len, 0)?, &data)
}

/// The state of process `pid` (the letter after the command in /proc/PID/stat), if it exists.
fn proc_state(pid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Unload during the last close's eviction, made deterministic: a child maps a file, pins one
/// of its pages in a pipe this process holds (vmsplice), and exits. Its last close evicts the
/// inode, and eviction (module code: `evict_inode`) waits in `dax_break_layout_final` for the
/// pinned page, so the child stays in D state inside the module's code after `__fput` dropped
/// the file's module reference. `delete_module` must be refused then (the super block pins the
/// module until the unmount is over); once the pin is released the close completes, and the
/// module unloads and loads again. Without the pin (the file system type's `owner`) the unload
/// succeeds while the child is still in module code, and the kernel oopses when it returns.
pub(crate) fn unload_during_eviction(ko: &str) -> Result<(), String> {
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    let (pin_r, pin_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let child = {
        let (pin, ready) = (&pin_w, &ready_w);
        fork_child(move || {
            let Ok(s) = setup(&Env { daxdev }) else {
                return 3;
            };
            let Ok(msg) = simple(&[(1420 * MIB, 2 * MIB)], 2 * MIB) else {
                return 3;
            };
            let Ok(f) = create(&s, &msg, 0) else { return 3 };
            let Ok(map) = Mapping::new(&f.file, 4096, 0, libc::PROT_READ) else {
                return 3;
            };
            read_volatile(&map, 0);
            let iov = libc::iovec {
                iov_base: map.addr.cast(),
                iov_len: 4096,
            };
            // SAFETY: vmsplice of our own mapped page into the pipe: the pipe takes a page
            // reference, held until the parent drops the pipe.
            if unsafe { libc::vmsplice(pin.as_raw_fd(), &iov, 1, 0) } != 4096 {
                return 4;
            }
            // Only the mapping is left to hold the file (and no control open holds the module):
            // its teardown at exit is the last close.
            drop(s);
            drop(f);
            let _ = (&*ready).write_all(b"r");
            std::mem::forget(map);
            // Exit: the last close of the file evicts its inode, which waits for the pin.
            0
        })?
    };
    drop(ready_w);
    if (&ready_r).read_exact(&mut [0u8; 1]).is_err() {
        return Err(format!(
            "the child could not map and pin a page (status {:#x})",
            wait_child(child)
        ));
    }
    // Wait for the state under test: the child blocked in its exit (D), inside the eviction.
    let start = Instant::now();
    while proc_state(child) != Some('D') {
        if start.elapsed() > Duration::from_secs(30) {
            drop((pin_r, pin_w));
            wait_child(child);
            return Err("the exiting child never blocked in the eviction (D state)".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Err(refused) = kmodule::try_unload() else {
        // The module is gone while the child runs its code: releasing the pin would oops.
        // Leave the child blocked for good (the VM run ends with it).
        std::mem::forget((pin_r, pin_w));
        return Err(
            "rmmod succeeded while the last close was still evicting in module code".into(),
        );
    };
    println!("# rmmod during the eviction: {refused}");
    drop((pin_r, pin_w));
    let status = wait_child(child);
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("child status {status:#x}"));
    }
    kmodule::unload(Duration::from_millis(10)).map_err(|r| {
        format!(
            "rmmod still refused{} after the close completed: {}",
            if r.timed_out { " 30 s" } else { "" },
            r.err
        )
    })?;
    kmodule::load(ko)?;
    Ok(())
}
