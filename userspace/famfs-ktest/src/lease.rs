//! The lease of a `/dev/famfs` open (`IOC_LEASE`), the state of one file (`IOC_FILE_STATE`) and
//! the revoke of one file (`IOC_REVOKE_FILE`), issue 23: a server that stops renewing (stopped,
//! killed, or cut off from the memory) fences its host, because the module revokes every file it
//! made once the lease runs out.
//!
//! The oracles are outside the module's own answers: whether the pages of a mapping are still
//! mapped is read from the kernel's page tables (`/proc/self/pagemap`); whether a later access
//! faults is what a child process gets (`SIGBUS` with `BUS_ADRERR`, exit status 102); whether a
//! writer changed the memory after the revoke is read from physical memory through `/dev/mem`
//! (or, where the kernel refuses that, through a new file over the same extent).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use famfs_kmod::{
    abi, errno_of, file_state, file_state_raw, revoke_file, revoke_file_raw, Control, DaxFile,
};

use crate::datapath::{create, pattern, read_at, same, setup, simple, Mapping, Setup, MIB};
use crate::revoke::{devmem, phys_base};
use crate::robust::{fork_child, present_pages, report_sigbus_code, wait_child};
use crate::{ctx, expect_errno, kmodule, open_dev, CheckResult, Env};

const LEN: usize = (2 * MIB) as usize;

/// A file of `LEN` bytes at `dev_off`, filled with `pattern(seed)`, mapped read-write, every
/// page touched.
fn mapped_file(s: &Setup, dev_off: u64, seed: u64) -> Result<(DaxFile, Mapping, Vec<u8>), String> {
    let f = create(s, &simple(&[(dev_off, 2 * MIB)], 2 * MIB)?, 0)?;
    let data = pattern(seed, LEN);
    ctx("pwrite", f.file.write_all_at(&data, 0))?;
    let map = ctx(
        "mmap",
        Mapping::new(&f.file, LEN, 0, libc::PROT_READ | libc::PROT_WRITE),
    )?;
    let mut seen = vec![0u8; LEN];
    for (i, b) in seen.iter_mut().enumerate().step_by(4096) {
        // SAFETY: `i < LEN`, inside the mapping.
        *b = unsafe { std::ptr::read_volatile(map.addr.add(i)) };
    }
    let want: Vec<u8> = data.iter().step_by(4096).copied().collect();
    let got: Vec<u8> = seen.iter().step_by(4096).copied().collect();
    same("the mapping before the lease test", &got, &want)?;
    Ok((f, map, data))
}

/// What a child gets when it reads (or, with `write`, writes) the first byte of `map`: the
/// wait status. A revoked mapping ends it with status 102 (SIGBUS, BUS_ADRERR).
fn child_access(map: &Mapping, write: bool) -> Result<i32, String> {
    let addr = map.addr as usize;
    let pid = fork_child(move || {
        report_sigbus_code();
        if write {
            // SAFETY: The shared mapping inherited from the parent, writable.
            unsafe { std::ptr::write_volatile(addr as *mut u8, 0x5a) };
            0
        } else {
            // SAFETY: As above, readable.
            let b = unsafe { std::ptr::read_volatile(addr as *const u8) };
            i32::from(b) % 50
        }
    })?;
    Ok(wait_child(pid))
}

fn is_bus_adrerr(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 102
}

/// Waits (at most `limit`) until a read of `f` fails with ESTALE; how long it took.
fn wait_estale(f: &File, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut buf = [0u8; 16];
    loop {
        match f.read_at(&mut buf, 0) {
            Err(e) if errno_of(&e) == libc::ESTALE => return Ok(start.elapsed()),
            Err(e) => return Err(format!("read while waiting for the revoke: {e}")),
            Ok(_) if start.elapsed() > limit => {
                return Err(format!(
                    "reads still succeed {} ms later: nothing was revoked",
                    limit.as_millis()
                ))
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Everything a revoked file must show: its touched pages are gone from the page tables, a
/// read or a write through the mapping gets SIGBUS, read/write get ESTALE, the state says
/// revoked, and the memory keeps the bytes it had (the writer changed nothing).
fn assert_revoked(what: &str, f: &DaxFile, map: &Mapping) -> CheckResult {
    let present = present_pages(map.addr as usize, LEN)?;
    if present != 0 {
        return Err(format!(
            "{what}: {present} pages still mapped after the revoke"
        ));
    }
    let st = child_access(map, false)?;
    if !is_bus_adrerr(st) {
        return Err(format!(
            "{what}: a read through the mapping did not get SIGBUS (BUS_ADRERR): wait status {st:#x}"
        ));
    }
    let st = child_access(map, true)?;
    if !is_bus_adrerr(st) {
        return Err(format!(
            "{what}: a write through the mapping did not get SIGBUS (BUS_ADRERR): wait status {st:#x}"
        ));
    }
    let mut buf = vec![0u8; 4096];
    expect_errno(
        &format!("{what}: read"),
        f.file.read_at(&mut buf, 0),
        libc::ESTALE,
    )?;
    expect_errno(
        &format!("{what}: write"),
        f.file.write_at(&buf, 0),
        libc::ESTALE,
    )?;
    let reopen = format!("/proc/self/fd/{}", f.file.as_raw_fd());
    expect_errno(
        &format!("{what}: re-open by path"),
        File::open(&reopen),
        libc::ESTALE,
    )?;
    let st = ctx("IOC_FILE_STATE", file_state(&f.file))?;
    if st.revoked != 1 {
        return Err(format!(
            "{what}: IOC_FILE_STATE says revoked {}",
            st.revoked
        ));
    }
    Ok(())
}

/// The first page of device memory at `dev_off`, read apart from
/// the revoked file: through /dev/mem, or, where the kernel refuses that for memory a driver
/// claimed (CONFIG_IO_STRICT_DEVMEM, as Debian's), through a new file over the same extent made
/// by `live` (an open that was not revoked) or, without one, by a new open once the device is
/// free again.
fn memory_oracle(env: &Env, dev_off: u64, live: Option<&Setup>) -> Result<Vec<u8>, String> {
    let why = match phys_base(&dax_name(env)).and_then(|p| devmem(p + dev_off, 4096)) {
        Ok(b) => return Ok(b),
        Err(e) => e,
    };
    println!("# /dev/mem refused ({why}): reading through a new famfs.ko file over the extent");
    let msg = simple(&[(dev_off, 2 * MIB)], 2 * MIB)?;
    if let Some(s) = live {
        return read_at(&create(s, &msg, 0)?.file, 4096, 0);
    }
    let start = Instant::now();
    let s = loop {
        match setup(env) {
            Ok(s) => break s,
            Err(e) if start.elapsed() > Duration::from_secs(10) => {
                return Err(format!("a new open could not attach the device: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    read_at(&create(&s, &msg, 0)?.file, 4096, 0)
}

fn dax_name(env: &Env) -> String {
    env.daxdev
        .rsplit('/')
        .next()
        .unwrap_or(&env.daxdev)
        .to_string()
}

/// A lease renewed in time keeps every file alive, for several lease periods; a disarmed lease
/// lets the open close without revoking anything.
pub(crate) fn check_lease_renewed(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let (f, map, data) = mapped_file(&s, 1500 * MIB, 90)?;
    let lease = Duration::from_millis(1000);
    ctx("arm the lease", s.ctl().set_lease(lease))?;
    let start = Instant::now();
    while start.elapsed() < 3 * lease {
        std::thread::sleep(Duration::from_millis(100));
        ctx("renew the lease", s.ctl().set_lease(lease))?;
    }
    let present = present_pages(map.addr as usize, LEN)?;
    if present != LEN / 4096 {
        return Err(format!(
            "{present} of {} pages mapped after 3 renewed lease periods",
            LEN / 4096
        ));
    }
    same(
        "read(2) after 3 renewed lease periods",
        &read_at(&f.file, LEN, 0)?,
        &data,
    )?;
    let st = ctx("IOC_FILE_STATE", file_state(&f.file))?;
    if st.revoked != 0 {
        return Err("IOC_FILE_STATE says revoked while the lease was renewed".into());
    }
    ctx("disarm the lease", s.ctl().set_lease(Duration::ZERO))?;
    // Closing the open with the lease disarmed revokes nothing.
    drop(s);
    std::thread::sleep(Duration::from_millis(1500));
    same(
        "read(2) after a disarmed close",
        &read_at(&f.file, 4096, 0)?,
        &data[..4096],
    )?;
    drop(map);
    Ok(())
}

/// A lease not renewed: the module revokes the open's files on its own (the mapping's pages
/// leave the page tables without any call of ours), and IOC_LEASE then fails with ESTALE.
pub(crate) fn check_lease_expiry(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let dev_off = 1510 * MIB;
    let (f, map, data) = mapped_file(&s, dev_off, 91)?;
    ctx(
        "arm a 200 ms lease",
        s.ctl().set_lease(Duration::from_millis(200)),
    )?;
    let took = wait_estale(&f.file, Duration::from_secs(10))?;
    println!(
        "# revoked {} ms after a 200 ms lease was armed",
        took.as_millis()
    );
    // The revoke runs to its end in the work item: give it the moment it needs after the flag.
    std::thread::sleep(Duration::from_millis(300));
    assert_revoked("after the lease expired", &f, &map)?;
    expect_errno(
        "IOC_LEASE after the expiry",
        s.ctl().set_lease(Duration::from_millis(200)),
        libc::ESTALE,
    )?;
    expect_errno(
        "CREATE_FILE after the expiry",
        s.ctl()
            .create_file(&simple(&[(1520 * MIB, 2 * MIB)], 2 * MIB)?, 0, 0o644, 0, 0),
        libc::ESTALE,
    )?;
    drop(map);
    drop(f);
    drop(s);
    same(
        "device memory after writers tried through the revoked file",
        &memory_oracle(env, dev_off, None)?,
        &data[..4096],
    )
}

/// The server stopped (SIGSTOP) while it renews: its lease runs out and its files are revoked
/// although the process and its open still exist.
pub(crate) fn check_lease_stopped_renewer(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let (f, map, _data) = mapped_file(&s, 1524 * MIB, 92)?;
    let lease = Duration::from_millis(500);
    ctx("arm the lease", s.ctl().set_lease(lease))?;
    let ctl = s.ctl();
    // The renewer shares this open (fork): it renews every 50 ms until it is stopped or killed.
    let renewer = fork_child(|| loop {
        if ctl.set_lease(lease).is_err() {
            return 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    })?;
    let stop = |sig| {
        // SAFETY: Signals our own child.
        unsafe { libc::kill(renewer, sig) };
    };
    let result = (|| -> CheckResult {
        std::thread::sleep(Duration::from_millis(1500));
        let mut buf = [0u8; 16];
        ctx(
            "read while the renewer runs",
            f.file.read_at(&mut buf, 0).map(|_| ()),
        )?;
        if present_pages(map.addr as usize, LEN)? == 0 {
            return Err("the mapping went while the renewer ran".into());
        }
        stop(libc::SIGSTOP);
        let took = wait_estale(&f.file, Duration::from_secs(10))?;
        println!(
            "# revoked {} ms after the renewer was stopped",
            took.as_millis()
        );
        std::thread::sleep(Duration::from_millis(300));
        let present = present_pages(map.addr as usize, LEN)?;
        if present != 0 {
            return Err(format!(
                "{present} pages still mapped after the lease expired"
            ));
        }
        let st = child_access(&map, false)?;
        if !is_bus_adrerr(st) {
            return Err(format!(
                "a read through the mapping did not get SIGBUS: wait status {st:#x}"
            ));
        }
        Ok(())
    })();
    stop(libc::SIGKILL);
    wait_child(renewer);
    result
}

/// The open closed (its server exited or was killed) with the lease armed: that is an expiry,
/// the files made through it are revoked at once, long before the lease would have run out.
pub(crate) fn check_lease_closed_armed(env: &Env) -> CheckResult {
    let ctl = ctx("open /dev/famfs", Control::open())?;
    let dev = open_dev(&env.daxdev)?;
    ctx("attach", ctl.attach_daxdev(&dev, 0))?;
    let f = ctx(
        "create",
        ctl.create_file(&simple(&[(1526 * MIB, 2 * MIB)], 2 * MIB)?, 0, 0o644, 0, 0),
    )?;
    let map = ctx("mmap", Mapping::new(&f.file, LEN, 0, libc::PROT_READ))?;
    // SAFETY: Inside the mapping.
    unsafe { std::ptr::read_volatile(map.addr) };
    ctx("arm a 60 s lease", ctl.set_lease(Duration::from_secs(60)))?;
    drop(ctl);
    let took = wait_estale(&f.file, Duration::from_secs(10))?;
    println!("# revoked {} ms after the open closed", took.as_millis());
    std::thread::sleep(Duration::from_millis(300));
    let present = present_pages(map.addr as usize, LEN)?;
    if present != 0 {
        return Err(format!("{present} pages still mapped after the close"));
    }
    drop(dev);
    Ok(())
}

/// IOC_REVOKE_FILE revokes that file, and not its sibling on the same device and open.
pub(crate) fn check_revoke_file(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let a_off = 1530 * MIB;
    let (a, amap, adata) = mapped_file(&s, a_off, 93)?;
    let (b, bmap, bdata) = mapped_file(&s, 1532 * MIB, 94)?;
    ctx("IOC_REVOKE_FILE", revoke_file(&a.file))?;
    assert_revoked("the revoked file", &a, &amap)?;
    same(
        "device memory after writers tried through the revoked file",
        &memory_oracle(env, a_off, Some(&s))?,
        &adata[..4096],
    )?;
    ctx("IOC_REVOKE_FILE again", revoke_file(&a.file))?;
    // The sibling: still mapped, still readable and writable, not revoked.
    let present = present_pages(bmap.addr as usize, LEN)?;
    if present != LEN / 4096 {
        return Err(format!(
            "the sibling has {present} of {} pages mapped after the other file's revoke",
            LEN / 4096
        ));
    }
    same("the sibling's read(2)", &read_at(&b.file, LEN, 0)?, &bdata)?;
    let st = child_access(&bmap, false)?;
    if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != i32::from(bdata[0]) % 50 {
        return Err(format!(
            "the sibling's mapping did not read its byte in a child: wait status {st:#x}"
        ));
    }
    let st = ctx("IOC_FILE_STATE of the sibling", file_state(&b.file))?;
    if st.revoked != 0 {
        return Err("IOC_FILE_STATE says the sibling is revoked".into());
    }
    ctx(
        "the sibling's write(2)",
        b.file.write_all_at(&bdata[..4096], 0),
    )?;
    Ok(())
}

/// IOC_REVOKE_INO, as a FUSE server uses it: the file is reached by its inode number through
/// the control open it was made through, with no descriptor of it left to the caller. It
/// revokes that file (also one whose descriptor was closed and that lives only in a mapping)
/// and not its sibling; once the file is gone it answers ENOENT, as it does for a file of
/// another open.
pub(crate) fn check_revoke_ino(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let a_off = 1600 * MIB;
    let (a, amap, adata) = mapped_file(&s, a_off, 95)?;
    let (b, bmap, bdata) = mapped_file(&s, 1602 * MIB, 96)?;
    let (c, cmap, _) = mapped_file(&s, 1604 * MIB, 97)?;
    let c_ino = c.ino;
    // Only the mapping holds the third file now.
    drop(c);
    let other = ctx("a second open of /dev/famfs", Control::open())?;
    expect_errno(
        "IOC_REVOKE_INO of a file made through another open",
        other.revoke_ino(a.ino),
        libc::ENOENT,
    )?;
    let was_mapped = ctx("IOC_REVOKE_INO", s.ctl().revoke_ino(a.ino))?;
    if !was_mapped {
        return Err("IOC_REVOKE_INO says the mapped file was not mapped".into());
    }
    assert_revoked("the file revoked by inode number", &a, &amap)?;
    same(
        "device memory after writers tried through the file revoked by inode number",
        &memory_oracle(env, a_off, Some(&s))?,
        &adata[..4096],
    )?;
    ctx("IOC_REVOKE_INO again", s.ctl().revoke_ino(a.ino))?;
    ctx(
        "IOC_REVOKE_INO of the closed file",
        s.ctl().revoke_ino(c_ino),
    )?;
    let present = present_pages(cmap.addr as usize, LEN)?;
    if present != 0 {
        return Err(format!(
            "the closed file: {present} pages still mapped after IOC_REVOKE_INO"
        ));
    }
    let st = child_access(&cmap, false)?;
    if !is_bus_adrerr(st) {
        return Err(format!(
            "the closed file: a read through its mapping did not get SIGBUS: wait status {st:#x}"
        ));
    }
    // The sibling is untouched.
    let present = present_pages(bmap.addr as usize, LEN)?;
    if present != LEN / 4096 {
        return Err(format!(
            "the sibling has {present} of {} pages mapped after IOC_REVOKE_INO of another file",
            LEN / 4096
        ));
    }
    same("the sibling's read(2)", &read_at(&b.file, LEN, 0)?, &bdata)?;
    // Gone (unmapped and closed, so evicted): nothing left to revoke.
    drop(cmap);
    expect_errno(
        "IOC_REVOKE_INO of a file no longer mapped or open",
        s.ctl().revoke_ino(c_ino),
        libc::ENOENT,
    )?;
    expect_errno(
        "IOC_REVOKE_INO of an inode number never made",
        s.ctl().revoke_ino(u64::MAX),
        libc::ENOENT,
    )?;
    Ok(())
}

/// IOC_FILE_STATE's `mapped`: 0 before any mmap, 1 while a mapping exists, 0 after the last
/// munmap.
pub(crate) fn check_file_state_mapped(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let f = create(&s, &simple(&[(1534 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    let state = |what: &str| ctx(&format!("IOC_FILE_STATE {what}"), file_state(&f.file));
    let want = |what: &str, mapped: u32| -> CheckResult {
        let st = state(what)?;
        if st.mapped != mapped || st.revoked != 0 {
            return Err(format!(
                "{what}: mapped {} revoked {}, want mapped {mapped} revoked 0",
                st.mapped, st.revoked
            ));
        }
        Ok(())
    };
    want("before mmap", 0)?;
    let m1 = ctx("mmap", Mapping::new(&f.file, LEN, 0, libc::PROT_READ))?;
    want("while mapped", 1)?;
    let m2 = ctx(
        "second mmap",
        Mapping::new(&f.file, 4096, 0, libc::PROT_READ),
    )?;
    drop(m1);
    want("with one of two mappings left", 1)?;
    drop(m2);
    want("after the last munmap", 0)?;
    Ok(())
}

/// Refusals: bad flags, reserved fields, timeouts out of range (EINVAL); the file ioctls on
/// the control device and the control ioctls on a file (ENOTTY). Nothing is revoked by them.
pub(crate) fn check_lease_bad_args(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let f = create(&s, &simple(&[(1536 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    let ctl = s.ctl();
    let lease = |timeout_ms, flags, reserved| {
        ctl.lease_raw(abi::LeaseArgs {
            timeout_ms,
            flags,
            reserved,
        })
    };
    expect_errno("IOC_LEASE flags 1", lease(1000, 1, [0, 0]), libc::EINVAL)?;
    expect_errno("IOC_LEASE reserved", lease(1000, 0, [0, 1]), libc::EINVAL)?;
    expect_errno(
        "IOC_LEASE below the minimum",
        lease(abi::LEASE_MIN_MS - 1, 0, [0, 0]),
        libc::EINVAL,
    )?;
    expect_errno(
        "IOC_LEASE above the maximum",
        lease(abi::LEASE_MAX_MS + 1, 0, [0, 0]),
        libc::EINVAL,
    )?;
    expect_errno(
        "IOC_FILE_STATE reserved",
        file_state_raw(
            &f.file,
            abi::FileStateArgs {
                reserved: [1, 0],
                ..Default::default()
            },
        ),
        libc::EINVAL,
    )?;
    expect_errno(
        "IOC_REVOKE_FILE flags 1",
        revoke_file_raw(
            &f.file,
            abi::RevokeFileArgs {
                flags: 1,
                ..Default::default()
            },
        ),
        libc::EINVAL,
    )?;
    expect_errno(
        "IOC_REVOKE_FILE reserved0",
        revoke_file_raw(
            &f.file,
            abi::RevokeFileArgs {
                reserved0: 1,
                ..Default::default()
            },
        ),
        libc::EINVAL,
    )?;
    for (what, args) in [
        (
            "IOC_REVOKE_INO flags 1",
            abi::RevokeInoArgs {
                ino: f.ino,
                flags: 1,
                ..Default::default()
            },
        ),
        (
            "IOC_REVOKE_INO was_mapped set on input",
            abi::RevokeInoArgs {
                ino: f.ino,
                was_mapped: 1,
                ..Default::default()
            },
        ),
        (
            "IOC_REVOKE_INO reserved",
            abi::RevokeInoArgs {
                ino: f.ino,
                reserved: [0, 1],
                ..Default::default()
            },
        ),
    ] {
        expect_errno(what, ctl.revoke_ino_raw(args), libc::EINVAL)?;
    }
    expect_errno(
        "IOC_FILE_STATE on /dev/famfs",
        file_state(ctl.file()),
        libc::ENOTTY,
    )?;
    let mut args = abi::LeaseArgs {
        timeout_ms: 1000,
        ..Default::default()
    };
    // SAFETY: IOC_LEASE takes a `*mut LeaseArgs`; the file must refuse it.
    let rc = unsafe {
        libc::ioctl(
            f.file.as_raw_fd(),
            abi::IOC_LEASE as libc::c_ulong,
            &mut args,
        )
    };
    let r = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    };
    expect_errno("IOC_LEASE on a file", r, libc::ENOTTY)?;
    // None of that armed a lease or revoked anything.
    std::thread::sleep(Duration::from_millis(200));
    let st = ctx("IOC_FILE_STATE", file_state(&f.file))?;
    if st.revoked != 0 {
        return Err("a refused call revoked the file".into());
    }
    read_at(&f.file, 16, 0)?;
    Ok(())
}

/// Without CAP_SYS_ADMIN: IOC_LEASE and IOC_REVOKE_FILE fail with EPERM (the state query is
/// allowed), and nothing is revoked.
pub(crate) fn check_lease_unprivileged(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let f = create(&s, &simple(&[(1538 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    let ctl = s.ctl();
    let pid = fork_child(|| {
        // SAFETY: Plain syscalls dropping every privilege of the child.
        let dropped = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setresgid(65534, 65534, 65534) == 0
                && libc::setresuid(65534, 65534, 65534) == 0
        };
        if !dropped {
            return 3;
        }
        let l = ctl.set_lease(Duration::from_millis(100));
        let r = revoke_file(&f.file);
        let ri = ctl.revoke_ino(f.ino);
        let st = file_state(&f.file);
        let eperm = |r: &io::Error| errno_of(r) == libc::EPERM;
        match (l, r, ri, st) {
            (Err(le), Err(re), Err(rie), Ok(_)) if eperm(&le) && eperm(&re) && eperm(&rie) => 0,
            _ => 1,
        }
    })?;
    let status = wait_child(pid);
    match libc::WEXITSTATUS(status) {
        0 => {}
        3 => return Err("could not drop privileges in the child".into()),
        _ => {
            return Err(
                "an unprivileged caller's IOC_LEASE, IOC_REVOKE_FILE or IOC_REVOKE_INO was not refused with EPERM"
                    .into(),
            )
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let st = ctx("IOC_FILE_STATE", file_state(&f.file))?;
    if st.revoked != 0 {
        return Err("the unprivileged calls revoked the file".into());
    }
    Ok(())
}

/// Unloads the module (retrying while it is in use, up to 30 s), then loads `ko` again and
/// waits for `/dev/famfs`.
fn reload(ko: &str, round: u32) -> CheckResult {
    kmodule::unload(Duration::from_millis(1)).map_err(|r| match r.timed_out {
        false => format!("round {round}: delete_module: {}", r.err),
        true => format!("round {round}: the module stayed in use for 30 s"),
    })?;
    kmodule::load(ko).map_err(|e| format!("round {round}: {e}"))
}

/// `lease-unload ROUNDS KO`: the revoke of a lease outlives its open (closed armed), and the
/// module is unloaded at once, while that revoke is queued or running: the unload must wait
/// for it (the module's queue is drained at exit), never run module code after the module
/// went (the VM suite judges the kernel log). Odd rounds close the mapped file first, even
/// rounds the control open first (the revoke then finds the file still mapped).
pub(crate) fn lease_unload(rounds: u32, ko: &str) -> CheckResult {
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    for round in 0..rounds {
        let ctl = ctx("open /dev/famfs", Control::open())?;
        let dev = open_dev(&daxdev)?;
        ctx("attach", ctl.attach_daxdev(&dev, 0))?;
        let f = ctx(
            "create",
            ctl.create_file(&simple(&[(1540 * MIB, 2 * MIB)], 2 * MIB)?, 0, 0o644, 0, 0),
        )?;
        let map = ctx("mmap", Mapping::new(&f.file, 4096, 0, libc::PROT_READ))?;
        // SAFETY: Inside the mapping.
        unsafe { std::ptr::read_volatile(map.addr) };
        ctx("arm a 60 s lease", ctl.set_lease(Duration::from_secs(60)))?;
        if round % 2 == 1 {
            drop(map);
            drop(f);
            drop(ctl);
        } else {
            drop(ctl);
            drop(map);
            drop(f);
        }
        drop(dev);
        reload(ko, round)?;
    }
    Ok(())
}
