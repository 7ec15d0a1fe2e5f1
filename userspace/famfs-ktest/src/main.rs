//! In-VM checks of famfs.ko, run by scripts/vm-tests. Each check prints `ok - NAME` or
//! `not ok - NAME: WHY`; the exit status is 1 when any check failed.
//!
//!   famfs-ktest checks [NAME...]        run the named checks (default: all)
//!   famfs-ktest list                    list the checks
//!   famfs-ktest poke DEV OFFSET HEX     write bytes at OFFSET of a device_dax device via mmap
//!   famfs-ktest hold-map SECONDS        map a famfs.ko file, hold it, then read and touch it
//!   famfs-ktest poison                  inject a memory failure; only the failed range fails
//!   famfs-ktest hold-mapping-only       map a file, close every descriptor, wait for EOF on stdin
//!   famfs-ktest fault-race              remove the device while a thread faults pages
//!   famfs-ktest pin-remove              remove the device while a page is pinned
//!   famfs-ktest unload-race ROUNDS KO   rmmod racing the last close of a killed mapper
//!   famfs-ktest unload-during-eviction KO  rmmod while the last close evicts (blocked on a pin)
//!   famfs-ktest hostile [SECONDS [SEED]] random and adversarial input against the module
//!   famfs-ktest revoke-inflight-write SRC SERVER_PID  IOC_REVOKE across a write(2) in flight
//!   famfs-ktest pin-page PATH           pin a page of PATH in a pipe until EOF on stdin
//!   famfs-ktest lease-unload ROUNDS KO  rmmod while the lease revoke of a closed open is queued
//!
//! The device under test is $FAMFS_DAXDEV (bound to fsdev_dax, set by scripts/vm-guest-init).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use famfs_kmod::{abi, errno_of, Control};

pub(crate) type CheckResult = Result<(), String>;

struct Check {
    name: &'static str,
    run: fn(&Env) -> CheckResult,
}

pub(crate) struct Env {
    pub(crate) daxdev: String,
}

const CHECKS: &[Check] = &[
    Check {
        name: "version",
        run: check_version,
    },
    Check {
        name: "attach",
        run: check_attach,
    },
    Check {
        name: "attach-exclusive",
        run: check_attach_exclusive,
    },
    Check {
        name: "attach-bad-input",
        run: check_attach_bad_input,
    },
    Check {
        name: "unprivileged",
        run: check_unprivileged,
    },
    Check {
        name: "file-rw-paths",
        run: datapath::check_rw_paths,
    },
    Check {
        name: "file-exact-offsets",
        run: datapath::check_exact_offsets,
    },
    Check {
        name: "file-interleaved",
        run: datapath::check_interleaved,
    },
    Check {
        name: "file-pmd-faults",
        run: datapath::check_pmd_faults,
    },
    Check {
        name: "file-eof-isolation",
        run: datapath::check_eof_isolation,
    },
    Check {
        name: "file-read-only",
        run: datapath::check_read_only,
    },
    Check {
        name: "file-size-fixed",
        run: datapath::check_size_fixed,
    },
    Check {
        name: "file-malformed-maps",
        run: datapath::check_malformed_maps,
    },
    Check {
        name: "file-get-fmap",
        run: datapath::check_get_fmap,
    },
    Check {
        name: "file-holds-device",
        run: datapath::check_file_holds_device,
    },
    Check {
        name: "file-splice",
        run: robust::check_splice,
    },
    Check {
        name: "file-odirect-nowait",
        run: robust::check_odirect_nowait,
    },
    Check {
        name: "file-write-privs",
        run: robust::check_write_privs,
    },
    Check {
        name: "attach-copyout-fault",
        run: robust::check_attach_copyout,
    },
    Check {
        name: "file-msync-writes-back",
        run: robust::check_msync_writes_back,
    },
    Check {
        name: "file-revoke",
        run: robust::check_revoke,
    },
    Check {
        name: "file-revoke-killable",
        run: revoke::check_revoke_killable,
    },
    Check {
        name: "lease-renewed-keeps-files",
        run: lease::check_lease_renewed,
    },
    Check {
        name: "lease-expiry-revokes",
        run: lease::check_lease_expiry,
    },
    Check {
        name: "lease-stopped-renewer-revokes",
        run: lease::check_lease_stopped_renewer,
    },
    Check {
        name: "lease-closed-armed-revokes",
        run: lease::check_lease_closed_armed,
    },
    Check {
        name: "revoke-file-not-sibling",
        run: lease::check_revoke_file,
    },
    Check {
        name: "revoke-ino-not-sibling",
        run: lease::check_revoke_ino,
    },
    Check {
        name: "file-state-mapped",
        run: lease::check_file_state_mapped,
    },
    Check {
        name: "lease-bad-args",
        run: lease::check_lease_bad_args,
    },
    Check {
        name: "lease-unprivileged",
        run: lease::check_lease_unprivileged,
    },
];

mod datapath;
mod hostile;
mod kmodule;
mod lease;
mod revoke;
mod robust;

pub(crate) fn expect_errno<T: std::fmt::Debug>(
    what: &str,
    r: io::Result<T>,
    want: i32,
) -> CheckResult {
    match r {
        Ok(v) => Err(format!("{what}: succeeded ({v:?}), expected errno {want}")),
        Err(e) if errno_of(&e) == want => Ok(()),
        Err(e) => Err(format!("{what}: got {e}, expected errno {want}")),
    }
}

pub(crate) fn ctx<T>(what: &str, r: io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn sysfs_size(dev: &str) -> Result<u64, String> {
    let name = dev.rsplit('/').next().unwrap_or(dev);
    let text = ctx(
        "read dax size",
        std::fs::read_to_string(format!("/sys/bus/dax/devices/{name}/size")),
    )?;
    text.trim()
        .parse()
        .map_err(|e| format!("parse dax size: {e}"))
}

pub(crate) fn open_dev(path: &str) -> Result<File, String> {
    ctx(
        &format!("open {path}"),
        OpenOptions::new().read(true).write(true).open(path),
    )
}

fn check_version(_: &Env) -> CheckResult {
    let ctl = ctx("open /dev/famfs", Control::open())?;
    let v = ctx("IOC_VERSION", ctl.version())?;
    if v.abi_version != abi::ABI_VERSION
        || v.max_daxdevs != abi::MAX_DAXDEVS
        || v.max_fmap_len < 4096
    {
        return Err(format!("unexpected version reply {v:?}"));
    }
    Ok(())
}

fn check_attach(env: &Env) -> CheckResult {
    let want = sysfs_size(&env.daxdev)?;
    for round in 0..3 {
        // Each round re-attaches: closing the control device must release the device.
        let ctl = ctx("open /dev/famfs", Control::open())?;
        let dev = open_dev(&env.daxdev)?;
        let size = ctx(
            &format!("attach (round {round})"),
            ctl.attach_daxdev(&dev, 0),
        )?;
        if size != want {
            return Err(format!("module says {size} bytes, sysfs says {want}"));
        }
    }
    Ok(())
}

fn check_attach_exclusive(env: &Env) -> CheckResult {
    let ctl = ctx("open /dev/famfs", Control::open())?;
    let dev = open_dev(&env.daxdev)?;
    ctx("attach", ctl.attach_daxdev(&dev, 3))?;
    expect_errno("same index again", ctl.attach_daxdev(&dev, 3), libc::EEXIST)?;
    expect_errno(
        "same device, other index",
        ctl.attach_daxdev(&dev, 4),
        libc::EBUSY,
    )?;
    let other = ctx("second open of /dev/famfs", Control::open())?;
    expect_errno(
        "same device from another open",
        other.attach_daxdev(&dev, 0),
        libc::EBUSY,
    )?;
    drop(ctl);
    ctx(
        "attach after the holder closed",
        other.attach_daxdev(&dev, 0),
    )?;
    Ok(())
}

fn check_attach_bad_input(env: &Env) -> CheckResult {
    let ctl = ctx("open /dev/famfs", Control::open())?;
    let dev = open_dev(&env.daxdev)?;
    expect_errno(
        "index 64",
        ctl.attach_daxdev(&dev, abi::MAX_DAXDEVS),
        libc::EINVAL,
    )?;
    expect_errno(
        "index u32::MAX",
        ctl.attach_daxdev(&dev, u32::MAX),
        libc::EINVAL,
    )?;
    expect_errno("fd -1", ctl.attach_raw_fd(-1, 0), libc::EBADF)?;
    expect_errno("closed fd", ctl.attach_raw_fd(999_999, 0), libc::EBADF)?;
    let null = open_dev("/dev/null")?;
    expect_errno("/dev/null", ctl.attach_daxdev(&null, 0), libc::ENODEV)?;
    let regular = ctx("open a regular file", File::open("/proc/self/exe"))?;
    expect_errno(
        "a regular file",
        ctl.attach_daxdev(&regular, 0),
        libc::ENODEV,
    )?;
    // Reserved fields must be zero.
    let mut args = abi::AttachDaxdevArgs {
        fd: dev.as_raw_fd(),
        index: 0,
        size: 0,
        reserved: [0, 1],
    };
    // SAFETY: IOC_ATTACH_DAXDEV takes a `*mut AttachDaxdevArgs`.
    let rc = unsafe {
        libc::ioctl(
            ctl.file().as_raw_fd(),
            abi::IOC_ATTACH_DAXDEV as libc::c_ulong,
            &mut args,
        )
    };
    let r = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    };
    expect_errno("non-zero reserved field", r, libc::EINVAL)?;
    expect_errno(
        "unknown ioctl",
        {
            // SAFETY: An unknown command with a null argument; the module must refuse it.
            let rc =
                unsafe { libc::ioctl(ctl.file().as_raw_fd(), 0xFA7F as libc::c_ulong, 0usize) };
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(rc)
            }
        },
        libc::ENOTTY,
    )?;
    // The device is still usable after all of that.
    ctx("attach after bad input", ctl.attach_daxdev(&dev, 0))?;
    Ok(())
}

/// A caller without CAP_SYS_ADMIN gets EPERM even on an already open /dev/famfs.
fn check_unprivileged(env: &Env) -> CheckResult {
    let ctl = ctx("open /dev/famfs", Control::open())?;
    let dev = open_dev(&env.daxdev)?;
    // SAFETY: fork in a single-threaded test program; the child only makes syscalls and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // Child: become nobody (which clears every capability), then try the ioctls.
        // SAFETY: Plain syscalls.
        let code = unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(65534, 65534, 65534) != 0
                || libc::setresuid(65534, 65534, 65534) != 0
            {
                3
            } else {
                let v = ctl.version();
                let a = ctl.attach_daxdev(&dev, 0);
                match (v, a) {
                    (Err(ve), Err(ae))
                        if errno_of(&ve) == libc::EPERM && errno_of(&ae) == libc::EPERM =>
                    {
                        0
                    }
                    _ => 1,
                }
            }
        };
        // SAFETY: Leave the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: Waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        3 => Err("could not drop privileges in the child".into()),
        _ => Err("an unprivileged caller was not refused with EPERM".into()),
    }
}

fn poke(dev: &str, offset: u64, hex: &str) -> Result<(), String> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or("HEX must be an even number of hex digits")?;
    const ALIGN: u64 = 2 << 20;
    let base = offset - offset % ALIGN;
    let inner = (offset - base) as usize;
    let len = (inner + bytes.len()).div_ceil(ALIGN as usize) * ALIGN as usize;
    let file = open_dev(dev)?;
    // SAFETY: A fresh shared mapping of a device_dax device; we only touch [inner, inner+len).
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            base as libc::off_t,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(format!(
            "mmap {dev} at {base:#x}: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: `addr` maps `len` bytes and `inner + bytes.len() <= len`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (addr as *mut u8).add(inner), bytes.len());
        libc::msync(addr, len, libc::MS_SYNC);
        libc::munmap(addr, len);
    }
    Ok(())
}

/// Prints `ok - NAME` or `not ok - NAME: WHY` for a subcommand's result.
fn report(name: &str, r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => {
            println!("ok - {name}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("not ok - {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => {
            for c in CHECKS {
                println!("{}", c.name);
            }
            ExitCode::SUCCESS
        }
        Some("hostile") => {
            let seconds = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
            let seed = args
                .get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| std::process::id() as u64 * 0x9E37_79B9);
            match hostile::run(seconds, seed) {
                Ok(()) => {
                    println!("ok - hostile-callers");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("not ok - hostile-callers (seed {seed}): {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("poison") => report("memory-failure-range", robust::poison()),
        Some("hold-mapping-only") => match datapath::hold_mapping_only() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("famfs-ktest: {e}");
                ExitCode::FAILURE
            }
        },
        Some("fault-race") => {
            let r = robust::fault_race();
            let code = report("removal-racing-faults", r);
            // The faulting thread is parked in its SIGBUS handler: leave without joining it.
            std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 })
        }
        Some("revoke-inflight-write") if args.len() == 3 => match args[2].parse::<libc::pid_t>() {
            Ok(pid) => report(
                "revoke-waits-for-a-write-in-flight",
                revoke::revoke_inflight_write(&args[1], pid),
            ),
            Err(e) => {
                eprintln!("famfs-ktest: bad pid: {e}");
                ExitCode::from(2)
            }
        },
        Some("pin-page") if args.len() == 2 => match revoke::hold_pinned_page(&args[1]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("famfs-ktest: {e}");
                ExitCode::FAILURE
            }
        },
        Some("pin-remove") => report("removal-with-pinned-page", robust::pin_and_remove()),
        Some("unload-race") if args.len() == 3 => {
            let rounds = args[1].parse().unwrap_or(100);
            report(
                &format!("unload-racing-last-close-{rounds}x"),
                robust::unload_race(rounds, &args[2]),
            )
        }
        Some("lease-unload") if args.len() == 3 => {
            let rounds = args[1].parse().unwrap_or(20);
            report(
                &format!("unload-with-lease-revoke-pending-{rounds}x"),
                lease::lease_unload(rounds, &args[2]),
            )
        }
        Some("unload-during-eviction") if args.len() == 2 => report(
            "unload-refused-during-last-close-eviction",
            robust::unload_during_eviction(&args[1]),
        ),
        Some("hold-map") if args.len() == 2 => match datapath::hold_map(&args[1]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("famfs-ktest: {e}");
                ExitCode::FAILURE
            }
        },
        Some("poke") if args.len() == 4 => {
            let offset = match args[2].parse::<u64>() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("famfs-ktest: bad offset: {e}");
                    return ExitCode::from(2);
                }
            };
            match poke(&args[1], offset, &args[3]) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("famfs-ktest: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("checks") => {
            let Ok(daxdev) = std::env::var("FAMFS_DAXDEV") else {
                eprintln!("famfs-ktest: FAMFS_DAXDEV is not set (run inside scripts/vm)");
                return ExitCode::from(2);
            };
            let env = Env { daxdev };
            let wanted = &args[1..];
            let mut failed = 0;
            for c in CHECKS
                .iter()
                .filter(|c| wanted.is_empty() || wanted.iter().any(|w| w == c.name))
            {
                match (c.run)(&env) {
                    Ok(()) => println!("ok - {}", c.name),
                    Err(why) => {
                        failed += 1;
                        println!("not ok - {}: {why}", c.name);
                    }
                }
            }
            if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            eprintln!("usage: famfs-ktest checks [NAME...] | list | poke DEV OFFSET HEX");
            ExitCode::from(2)
        }
    }
}
