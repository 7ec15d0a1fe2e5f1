//! Checks of famfs.ko's DAX files: the data path, its limits and its refusals.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use famfs_fmap::{encode_interleaved, encode_simple, FileType, InterleaveSpec, SimpleExtent};
use famfs_kmod::{abi, errno_of, get_fmap, Control, DaxFile};

use crate::{ctx, expect_errno, open_dev, CheckResult, Env};

pub(crate) const MIB: u64 = 1 << 20;

/// An attached control device and the CXL device held open.
pub(crate) struct Setup {
    ctl: Control,
    _dev: File,
}

impl Setup {
    pub(crate) fn ctl(&self) -> &Control {
        &self.ctl
    }
}

pub(crate) fn setup(env: &Env) -> Result<Setup, String> {
    let ctl = ctx("open /dev/famfs", Control::open())?;
    let dev = open_dev(&env.daxdev)?;
    ctx("attach", ctl.attach_daxdev(&dev, 0))?;
    Ok(Setup { ctl, _dev: dev })
}

pub(crate) fn simple(extents: &[(u64, u64)], size: u64) -> Result<Vec<u8>, String> {
    let ext: Vec<SimpleExtent> = extents
        .iter()
        .map(|&(offset, len)| SimpleExtent {
            devindex: 0,
            offset,
            len,
        })
        .collect();
    let mut buf = vec![0u8; 4096];
    let n = encode_simple(&mut buf, FileType::Regular, size, &ext)
        .map_err(|e| format!("encode: {e}"))?;
    buf.truncate(n);
    Ok(buf)
}

pub(crate) fn create(s: &Setup, msg: &[u8], flags: u32) -> Result<DaxFile, String> {
    ctx("create file", s.ctl.create_file(msg, flags, 0o644, 0, 0))
}

pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) struct Mapping {
    pub(crate) addr: *mut u8,
    pub(crate) len: usize,
}

impl Mapping {
    pub(crate) fn new(file: &File, len: usize, offset: u64, prot: i32) -> io::Result<Self> {
        // SAFETY: A fresh mapping; its memory is only reached through `Mapping`'s methods.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            addr: addr.cast(),
            len,
        })
    }

    /// A read-only mapping of `file` from offset 0 at a virtual address one page past a
    /// 2 MiB boundary (placed with MAP_FIXED inside a reserved anonymous range).
    pub(crate) fn misaligned(file: &File, len: usize) -> io::Result<Self> {
        let reserve = len + 4 * MIB as usize;
        // SAFETY: Reserves address space only (PROT_NONE, anonymous).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let aligned = (base as usize + (2 * MIB as usize) - 1) & !((2 * MIB as usize) - 1);
        let at = aligned + 4096;
        // SAFETY: `at..at+len` lies inside our reservation, which MAP_FIXED replaces.
        let addr = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: Releases the reservation.
            unsafe { libc::munmap(base, reserve) };
            return Err(e);
        }
        Ok(Self {
            addr: addr.cast(),
            len,
        })
    }

    fn slice(&self) -> &[u8] {
        // SAFETY: `addr` maps `len` bytes for the mapping's lifetime.
        unsafe { std::slice::from_raw_parts(self.addr, self.len) }
    }

    pub(crate) fn slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: As above, and the mapping is writable when callers use this.
        unsafe { std::slice::from_raw_parts_mut(self.addr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: Unmaps what `new` mapped.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

pub(crate) fn read_at(f: &File, len: usize, off: u64) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    let n = ctx("pread", f.read_at(&mut buf, off))?;
    buf.truncate(n);
    Ok(buf)
}

pub(crate) fn same(what: &str, got: &[u8], want: &[u8]) -> CheckResult {
    if got == want {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "{what}: differs at byte {first} (got {} bytes, want {})",
        got.len(),
        want.len()
    ))
}

/// write(2) then read back through read(2), mmap, and a second file over the same extent.
pub(crate) fn check_rw_paths(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let size = 3 * MIB + 123;
    let msg = simple(&[(64 * MIB, 4 * MIB)], size)?;
    let a = create(&s, &msg, 0)?;
    let meta = ctx("fstat", a.file.metadata())?;
    if meta.len() != size {
        return Err(format!("i_size {} != map size {size}", meta.len()));
    }
    let data = pattern(1, size as usize);
    ctx("write", a.file.write_all_at(&data, 0))?;
    same(
        "read(2) after write(2)",
        &read_at(&a.file, size as usize, 0)?,
        &data,
    )?;
    let map = ctx(
        "mmap",
        Mapping::new(
            &a.file,
            size as usize,
            0,
            libc::PROT_READ | libc::PROT_WRITE,
        ),
    )?;
    same("mmap after write(2)", map.slice(), &data)?;

    let mut map = map;
    let data2 = pattern(2, size as usize);
    map.slice_mut().copy_from_slice(&data2);
    same(
        "read(2) after mmap write",
        &read_at(&a.file, size as usize, 0)?,
        &data2,
    )?;
    let b = create(&s, &msg, 0)?;
    same(
        "second file over the same extent",
        &read_at(&b.file, size as usize, 0)?,
        &data2,
    )?;
    ctx("fsync", a.file.sync_all())?;
    Ok(())
}

/// Bytes land at exactly the device offsets the map says: a file whose extents are out of
/// device order, read back through a file that covers the whole device range.
pub(crate) fn check_exact_offsets(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let a = create(
        &s,
        &simple(&[(100 * MIB, 2 * MIB), (50 * MIB, 2 * MIB)], 4 * MIB)?,
        0,
    )?;
    let data = pattern(3, (4 * MIB) as usize);
    ctx("write", a.file.write_all_at(&data, 0))?;
    let cover = create(&s, &simple(&[(50 * MIB, 52 * MIB)], 52 * MIB)?, 0)?;
    let half = (2 * MIB) as usize;
    same(
        "first extent at device 100 MiB",
        &read_at(&cover.file, half, 50 * MIB)?,
        &data[..half],
    )?;
    same(
        "second extent at device 50 MiB",
        &read_at(&cover.file, half, 0)?,
        &data[half..],
    )?;
    Ok(())
}

/// Interleaved: chunk k of the file lives in strip k % nstrips, at stripe k / nstrips.
pub(crate) fn check_interleaved(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let chunk = 2 * MIB;
    let strips = [
        SimpleExtent {
            devindex: 0,
            offset: 200 * MIB,
            len: 4 * MIB,
        },
        SimpleExtent {
            devindex: 0,
            offset: 300 * MIB,
            len: 4 * MIB,
        },
    ];
    let spec = InterleaveSpec {
        chunk_size: chunk as u32,
        nbytes: 8 * MIB,
        strips: &strips,
    };
    let mut buf = vec![0u8; 4096];
    let n = encode_interleaved(&mut buf, FileType::Regular, 8 * MIB, &[spec])
        .map_err(|e| format!("encode: {e}"))?;
    let f = create(&s, &buf[..n], 0)?;
    let data = pattern(4, (8 * MIB) as usize);
    ctx("write", f.file.write_all_at(&data, 0))?;
    let map = ctx(
        "mmap",
        Mapping::new(&f.file, (8 * MIB) as usize, 0, libc::PROT_READ),
    )?;
    same("mmap of interleaved file", map.slice(), &data)?;
    let cover = create(&s, &simple(&[(200 * MIB, 104 * MIB)], 104 * MIB)?, 0)?;
    for k in 0..4u64 {
        let strip = &strips[(k % 2) as usize];
        let dev_off = strip.offset + (k / 2) * chunk - 200 * MIB;
        let c = chunk as usize;
        let want = &data[(k * chunk) as usize..(k * chunk) as usize + c];
        same(
            &format!("chunk {k}"),
            &read_at(&cover.file, c, dev_off)?,
            want,
        )?;
    }
    Ok(())
}

fn counter(name: &str) -> Result<u64, String> {
    let text = ctx(
        &format!("read debugfs famfs/{name}"),
        std::fs::read_to_string(format!("/sys/kernel/debug/famfs/{name}")),
    )?;
    text.trim()
        .parse()
        .map_err(|e| format!("parse {name}: {e}"))
}

fn touch_pages(map: &Mapping) -> u64 {
    let mut sum = 0u64;
    for off in (0..map.len).step_by(4096) {
        // SAFETY: `off < len`; volatile so every page is really touched.
        sum = sum.wrapping_add(unsafe { std::ptr::read_volatile(map.addr.add(off)) } as u64);
    }
    sum
}

/// A 2 MiB-aligned mapping of a 1 GiB file is served by PMD faults (512 of them), an unaligned
/// one by PTE faults.
pub(crate) fn check_pmd_faults(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let gib = 1024 * MIB;
    let f = create(&s, &simple(&[(gib, gib)], gib)?, 0)?;
    let trace = DaxFaultTrace::start()?;
    let (pmd0, pte0) = (counter("pmd_faults")?, counter("pte_faults")?);
    let map = ctx(
        "mmap 1 GiB",
        Mapping::new(&f.file, gib as usize, 0, libc::PROT_READ),
    )?;
    if !(map.addr as usize).is_multiple_of(2 << 20) {
        return Err(format!(
            "mapping at {:p} is not 2 MiB aligned (thp_get_unmapped_area)",
            map.addr
        ));
    }
    touch_pages(&map);
    let (pmd, pte) = (counter("pmd_faults")? - pmd0, counter("pte_faults")? - pte0);
    let (tpmd, tpte) = trace.take()?;
    println!("# aligned 1 GiB mapping: {pmd} PMD faults, {pte} PTE faults (fs_dax tracepoints: {tpmd} PMD, {tpte} PTE)");
    if pmd != 512 || pte > 16 {
        return Err(format!(
            "aligned 1 GiB mapping took {pmd} PMD and {pte} PTE faults (want 512 PMD)"
        ));
    }
    if (tpmd, tpte) != (pmd, pte) {
        return Err(format!("the fs_dax tracepoints saw {tpmd} PMD and {tpte} PTE faults, the module counted {pmd} and {pte}"));
    }
    drop(map);
    // At an address one page off the file's 2 MiB grid no block can be mapped by a PMD.
    let len = 64 * MIB as usize;
    let trace = DaxFaultTrace::start()?;
    let (pmd0, pte0) = (counter("pmd_faults")?, counter("pte_faults")?);
    let map = ctx("mmap off the 2 MiB grid", Mapping::misaligned(&f.file, len))?;
    touch_pages(&map);
    let (pmd, pte) = (counter("pmd_faults")? - pmd0, counter("pte_faults")? - pte0);
    let (tpmd, tpte) = trace.take()?;
    println!("# misaligned 64 MiB mapping: {pmd} PMD faults, {pte} PTE faults (fs_dax tracepoints: {tpmd} PMD, {tpte} PTE)");
    if pmd != 0 || pte != (len / 4096) as u64 {
        return Err(format!(
            "misaligned mapping took {pmd} PMD and {pte} PTE faults (want 0 and {})",
            len / 4096
        ));
    }
    if (tpmd, tpte) != (pmd, pte) {
        return Err(format!("the fs_dax tracepoints saw {tpmd} PMD and {tpte} PTE faults, the module counted {pmd} and {pte}"));
    }
    Ok(())
}

/// Counts the faults the dax core served (`dax_pmd_fault_done`/`dax_pte_fault_done` with a
/// NOPAGE result) through tracefs: an oracle independent of the module's own counters.
struct DaxFaultTrace {
    dir: String,
}

impl DaxFaultTrace {
    const EVENTS: [&'static str; 2] = ["dax_pmd_fault_done", "dax_pte_fault_done"];

    fn start() -> Result<Self, String> {
        let dir = "/sys/kernel/tracing".to_string();
        if !std::path::Path::new(&format!("{dir}/trace")).exists() {
            let _ = std::process::Command::new("mount")
                .args(["-t", "tracefs", "tracefs", &dir])
                .status();
        }
        let put = |path: &str, text: &str| {
            ctx(
                &format!("write {path}"),
                std::fs::write(format!("{dir}/{path}"), text),
            )
        };
        put("tracing_on", "0")?;
        // Room for 16384 PTE events per CPU.
        put("buffer_size_kb", "8192")?;
        put("trace", "")?;
        for e in Self::EVENTS {
            put(&format!("events/fs_dax/{e}/enable"), "1")?;
        }
        put("tracing_on", "1")?;
        Ok(Self { dir })
    }

    /// Stops tracing and returns the (PMD, PTE) faults served.
    fn take(self) -> Result<(u64, u64), String> {
        let dir = &self.dir;
        let _ = std::fs::write(format!("{dir}/tracing_on"), "0");
        let text = ctx(
            "read trace",
            std::fs::read_to_string(format!("{dir}/trace")),
        )?;
        let served = |event: &str| {
            text.lines()
                .filter(|l| l.contains(&format!("{event}:")) && l.contains("NOPAGE"))
                .count() as u64
        };
        Ok((served("dax_pmd_fault_done"), served("dax_pte_fault_done")))
    }
}

impl Drop for DaxFaultTrace {
    fn drop(&mut self) {
        for e in Self::EVENTS {
            let _ = std::fs::write(format!("{}/events/fs_dax/{e}/enable", self.dir), "0");
        }
        let _ = std::fs::write(format!("{}/trace", self.dir), "");
        let _ = std::fs::write(format!("{}/tracing_on", self.dir), "1");
    }
}

/// Reads stop at the file size and touching a mapped page past it raises SIGBUS, even though
/// the extent goes on: nothing of the extent's slack (maybe another file's data) leaks.
pub(crate) fn check_eof_isolation(env: &Env) -> CheckResult {
    let s = setup(env)?;
    // The neighbour's bytes sit in the same extent, right after the file's end.
    let neighbour = create(&s, &simple(&[(400 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    ctx(
        "write neighbour",
        neighbour.file.write_all_at(&[0xAB; 8192], 0),
    )?;
    let size = 4096 + 10;
    let f = create(&s, &simple(&[(400 * MIB, 2 * MIB)], size)?, 0)?;
    if read_at(&f.file, 100, size - 5)?.len() != 5 {
        return Err("read across EOF was not cut at EOF".into());
    }
    if !read_at(&f.file, 100, size)?.is_empty() || !read_at(&f.file, 100, 1 << 20)?.is_empty() {
        return Err("read at or past EOF returned data".into());
    }
    // A file whose size is its whole map: reading at its end must be EOF, not an error.
    let exact = create(&s, &simple(&[(402 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    if read_at(&exact.file, 100, 2 * MIB - 5)?.len() != 5
        || !read_at(&exact.file, 100, 2 * MIB)?.is_empty()
    {
        return Err("read at the end of a file that fills its map was not EOF".into());
    }
    let whole = read_at(&exact.file, (4 * MIB) as usize, 0)?;
    if whole.len() != (2 * MIB) as usize {
        return Err(format!(
            "reading a whole 2 MiB file returned {} bytes",
            whole.len()
        ));
    }
    let map = ctx(
        "mmap 3 pages",
        Mapping::new(&f.file, 3 * 4096, 0, libc::PROT_READ),
    )?;
    // SAFETY: fork in a single-threaded program; the child only touches memory and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: Page 2 is past EOF (size is one page and 10 bytes): this must SIGBUS.
        let v = unsafe { std::ptr::read_volatile(map.addr.add(2 * 4096)) };
        // SAFETY: Leave without running destructors.
        unsafe { libc::_exit(if v == 0xAB { 2 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: Our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS) {
        return Err(format!(
            "touching a page past EOF did not SIGBUS (wait status {status:#x})"
        ));
    }
    Ok(())
}

fn reopen(f: &File, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

/// Read-only files refuse writable opens (also the re-open by path FUSE passthrough does),
/// writes, and writable shared mappings.
pub(crate) fn check_read_only(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let f = create(
        &s,
        &simple(&[(500 * MIB, 2 * MIB)], 2 * MIB)?,
        abi::CREATE_READ_ONLY,
    )?;
    expect_errno("write(2)", f.file.write_at(b"x", 0), libc::EBADF)?;
    expect_errno("re-open for writing", reopen(&f.file, true), libc::EACCES)?;
    ctx("re-open for reading", reopen(&f.file, false))?;
    expect_errno(
        "writable shared mmap",
        Mapping::new(&f.file, 4096, 0, libc::PROT_READ | libc::PROT_WRITE).map(|_| ()),
        libc::EACCES,
    )?;
    let map = ctx(
        "read-only mmap",
        Mapping::new(&f.file, 4096, 0, libc::PROT_READ),
    )?;
    // SAFETY: Asks for write permission on our own mapping; must be refused.
    let rc = unsafe { libc::mprotect(map.addr.cast(), 4096, libc::PROT_READ | libc::PROT_WRITE) };
    if rc == 0 {
        return Err("mprotect made a read-only file's shared mapping writable".into());
    }
    read_at(&f.file, 4096, 0)?;
    Ok(())
}

/// Sizes never change: truncate and fallocate are refused; writes stop at the end.
pub(crate) fn check_size_fixed(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let size = 2 * MIB - 100;
    let f = create(&s, &simple(&[(600 * MIB, 2 * MIB)], size)?, 0)?;
    expect_errno("ftruncate down", f.file.set_len(1), libc::EPERM)?;
    expect_errno("ftruncate up", f.file.set_len(4 * MIB), libc::EPERM)?;
    // SAFETY: Plain syscall on our descriptor.
    let rc = unsafe { libc::fallocate(f.file.as_raw_fd(), 0, 0, (4 * MIB) as libc::off_t) };
    let r = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    expect_errno("fallocate", r, libc::EOPNOTSUPP)?;
    expect_errno("write at EOF", f.file.write_at(b"abc", size), libc::EFBIG)?;
    let n = ctx("write across EOF", f.file.write_at(&[7u8; 1000], size - 10))?;
    if n != 10 {
        return Err(format!(
            "write across EOF wrote {n} bytes, want 10 (a short write)"
        ));
    }
    let len = ctx("fstat", f.file.metadata())?.len();
    if len != size {
        return Err(format!("size changed to {len}"));
    }
    Ok(())
}

/// Every malformed map gets its documented errno and the module keeps working.
pub(crate) fn check_malformed_maps(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let good = simple(&[(700 * MIB, 2 * MIB)], 2 * MIB)?;
    let mut cases: Vec<(&str, Vec<u8>, u32, i32)> = vec![
        ("empty message", Vec::new(), 0, libc::EINVAL),
        (
            "header only, no extents",
            good[..32].to_vec(),
            0,
            libc::EINVAL,
        ),
        ("over a page", vec![0u8; 8192], 0, libc::E2BIG),
        ("unknown flag", good.clone(), 1 << 7, libc::EINVAL),
    ];
    let mut bad_version = good.clone();
    bad_version[2] = 9;
    cases.push(("bad version", bad_version, 0, libc::EINVAL));
    let mut misaligned = good.clone();
    misaligned[32 + 8] = 1; // extent offset + 1 byte
    cases.push(("misaligned offset", misaligned, 0, libc::EINVAL));
    let mut unattached = good.clone();
    unattached[32] = 5; // devindex 5
    cases.push(("device index not attached", unattached, 0, libc::ENXIO));
    cases.push((
        "extent beyond the device",
        simple(&[(1 << 40, 2 * MIB)], 2 * MIB)?,
        0,
        libc::ENXIO,
    ));
    let mut short = good.clone();
    short[16..24].copy_from_slice(&(3 * MIB).to_le_bytes());
    cases.push(("map shorter than file size", short, 0, libc::EINVAL));
    for (what, msg, flags, errno) in cases {
        expect_errno(
            what,
            s.ctl.create_file(&msg, flags, 0o644, 0, 0).map(|f| f.ino),
            errno,
        )?;
    }
    expect_errno(
        "mode with file-type bits",
        s.ctl.create_file(&good, 0, 0o100644, 0, 0).map(|f| f.ino),
        libc::EINVAL,
    )?;
    let mut args = abi::CreateFileArgs {
        fmap_ptr: 16,
        fmap_len: good.len() as u32,
        ..Default::default()
    };
    // SAFETY: IOC_CREATE_FILE with a bad user pointer: the module must fault cleanly.
    let rc = unsafe {
        libc::ioctl(
            s.ctl.file().as_raw_fd(),
            abi::IOC_CREATE_FILE as libc::c_ulong,
            &mut args,
        )
    };
    let r = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    };
    expect_errno("bad fmap pointer", r, libc::EFAULT)?;
    // A control device with no attached device refuses every map.
    let bare = ctx("open /dev/famfs", Control::open())?;
    expect_errno(
        "no device attached",
        bare.create_file(&good, 0, 0o644, 0, 0).map(|f| f.ino),
        libc::ENXIO,
    )?;
    create(&s, &good, 0).map(|_| ())
}

pub(crate) fn check_get_fmap(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let msg = simple(&[(800 * MIB, 2 * MIB), (900 * MIB, 4 * MIB)], 5 * MIB)?;
    let f = create(&s, &msg, 0)?;
    let (got, flags) = ctx("get_fmap", get_fmap(&f.file))?;
    if got != msg || flags != 0 {
        return Err(format!(
            "get_fmap returned {} bytes flags {flags}, want the {} bytes given",
            got.len(),
            msg.len()
        ));
    }
    let ro = create(&s, &msg, abi::CREATE_READ_ONLY)?;
    let (_, flags) = ctx("get_fmap read-only", get_fmap(&ro.file))?;
    if flags != abi::CREATE_READ_ONLY {
        return Err(format!("read-only file reports flags {flags}"));
    }
    let mut args = abi::GetFmapArgs {
        buf_ptr: 0,
        buf_len: 8,
        ..Default::default()
    };
    // SAFETY: IOC_GET_FMAP with a too-small buffer: ERANGE and the needed length.
    let rc = unsafe {
        libc::ioctl(
            f.file.as_raw_fd(),
            abi::IOC_GET_FMAP as libc::c_ulong,
            &mut args,
        )
    };
    let r = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    };
    expect_errno("small buffer", r, libc::ERANGE)?;
    if args.fmap_len as usize != msg.len() {
        return Err(format!(
            "ERANGE reply says {} bytes, want {}",
            args.fmap_len,
            msg.len()
        ));
    }
    Ok(())
}

/// A file keeps its device held after the control device is closed: the device cannot be
/// attached elsewhere until the file goes, and the file keeps working meanwhile.
pub(crate) fn check_file_holds_device(env: &Env) -> CheckResult {
    let s = setup(env)?;
    let f = create(&s, &simple(&[(1000 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    drop(s);
    ctx(
        "write after control closed",
        f.file.write_all_at(b"still here", 0),
    )?;
    let ctl = ctx("open /dev/famfs", Control::open())?;
    let dev = open_dev(&env.daxdev)?;
    expect_errno(
        "attach while a file holds the device",
        ctl.attach_daxdev(&dev, 0),
        libc::EBUSY,
    )?;
    let map = ctx("mmap", Mapping::new(&f.file, 4096, 0, libc::PROT_READ))?;
    drop(f);
    expect_errno(
        "attach while a mapping holds the device",
        ctl.attach_daxdev(&dev, 0),
        libc::EBUSY,
    )?;
    same(
        "mapping outlives its descriptor",
        &map.slice()[..10],
        b"still here",
    )?;
    drop(map);
    ctx("attach after the file is gone", ctl.attach_daxdev(&dev, 0)).map(|_| ())
}

/// Maps a famfs.ko file and sleeps, so a test can try to unload the module meanwhile.
pub(crate) fn hold_map(seconds: &str) -> Result<(), String> {
    let secs: u64 = seconds.parse().map_err(|e| format!("SECONDS: {e}"))?;
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    let s = setup(&Env { daxdev })?;
    let f = create(&s, &simple(&[(1100 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    let map = ctx("mmap", Mapping::new(&f.file, 4096, 0, libc::PROT_READ))?;
    touch_pages(&map);
    drop(s);
    println!("mapped");
    std::thread::sleep(std::time::Duration::from_secs(secs));
    // Report how the file answers now (a test may have removed the device meanwhile), then
    // touch the mapping again.
    match f.file.read_at(&mut [0u8; 16], 0) {
        Ok(_) => println!("read: ok"),
        Err(e) => println!("read: errno {}", errno_of(&e)),
    }
    touch_pages(&map);
    println!("touched");
    Ok(())
}

/// Maps a famfs.ko file, closes every descriptor (file, control device, devdax device) so
/// that only the mapping remains, says `mapped`, then waits for end of input before touching
/// the mapping again: a test can try to unload the module meanwhile.
pub(crate) fn hold_mapping_only() -> Result<(), String> {
    use std::io::{Read, Write};
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    let s = setup(&Env { daxdev })?;
    let f = create(&s, &simple(&[(1100 * MIB, 2 * MIB)], 2 * MIB)?, 0)?;
    let map = ctx("mmap", Mapping::new(&f.file, 4096, 0, libc::PROT_READ))?;
    touch_pages(&map);
    drop(f);
    drop(s);
    println!("mapped");
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    touch_pages(&map);
    println!("touched");
    Ok(())
}
