//! Data-path measurements: bandwidth through mmap and read(2)/write(2), thread scaling, and the
//! first-touch cost of a 1 GiB mapping, on one "source" (raw device, famfs.ko file, or a file).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use crate::report::{Record, Target};

pub const MIB: u64 = 1 << 20;
pub const PMD: u64 = 2 * MIB;
const PAGE: usize = 4096;

/// Block sizes measured, with their labels.
pub const BLOCKS: &[(usize, &str)] = &[(4096, "4K"), (64 * 1024, "64K"), (2 << 20, "2M")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Mmap,
    Rw,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Mmap => "mmap",
            Api::Rw => "rw",
        }
    }
    fn label(self, write: bool) -> &'static str {
        match (self, write) {
            (Api::Mmap, _) => "mmap",
            (Api::Rw, false) => "read(2)",
            (Api::Rw, true) => "write(2)",
        }
    }
}

/// One bandwidth figure: api, direction, pattern, block size, threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub api: Api,
    pub write: bool,
    pub random: bool,
    pub block: usize,
    pub threads: usize,
}

fn block_label(b: usize) -> String {
    BLOCKS
        .iter()
        .find(|(s, _)| *s == b)
        .map(|(_, l)| l.to_string())
        .unwrap_or_else(|| format!("{b}"))
}

impl Op {
    pub fn key(&self) -> String {
        format!(
            "{}/{}-{}/{}/t{}",
            self.api.name(),
            if self.random { "rand" } else { "seq" },
            if self.write { "write" } else { "read" },
            block_label(self.block),
            self.threads
        )
    }
    pub fn figure(&self) -> String {
        let t = if self.threads > 1 {
            format!(", {} threads", self.threads)
        } else {
            String::new()
        };
        format!(
            "{} {} {} {}{t}",
            self.api.label(self.write),
            if self.random { "random" } else { "sequential" },
            if self.write { "write" } else { "read" },
            block_label(self.block)
        )
    }
    /// The ceiling's figure of the same pattern and kind: an mmap figure against the raw mapping
    /// copied by the same user-space memcpy, a read(2)/write(2) figure against the raw mapping
    /// copied by the instructions the kernel's copy uses ([`kcopy`]): under an emulator (and on
    /// real CPUs) `rep movsb`, non-temporal stores and vector memcpy differ in speed, so a
    /// ceiling copied another way is not a ceiling.
    pub fn ceiling_key(&self) -> String {
        self.key()
    }
}

/// The bandwidth matrix (section `data`).
pub fn data_ops(rw: bool) -> Vec<Op> {
    let mut v = Vec::new();
    for api in [Api::Mmap, Api::Rw] {
        if api == Api::Rw && !rw {
            continue;
        }
        for write in [false, true] {
            for random in [false, true] {
                for &(block, _) in BLOCKS {
                    v.push(Op {
                        api,
                        write,
                        random,
                        block,
                        threads: 1,
                    });
                }
            }
        }
    }
    v
}

/// Thread scaling figures (section `threads`).
pub fn thread_ops(threads: &[usize]) -> Vec<Op> {
    let mut v = Vec::new();
    for &t in threads.iter().filter(|t| **t > 0) {
        for write in [false, true] {
            v.push(Op {
                api: Api::Mmap,
                write,
                random: false,
                block: 2 << 20,
                threads: t,
            });
        }
        v.push(Op {
            api: Api::Mmap,
            write: false,
            random: true,
            block: 4096,
            threads: t,
        });
    }
    v
}

/// Offsets (multiples of `block`, below `size - block`) for `n` operations.
pub fn offsets(n: usize, random: bool, size: u64, block: usize, seed: u64) -> Vec<u64> {
    let slots = (size / block as u64).max(1);
    let mut x = seed | 1;
    (0..n as u64)
        .map(|i| {
            let slot = if random {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % slots
            } else {
                i % slots
            };
            slot * block as u64
        })
        .collect()
}

/// Splits `v` into `k` nearly equal contiguous chunks.
pub fn split<T>(v: &[T], k: usize) -> Vec<&[T]> {
    let k = k.max(1);
    let per = v.len().div_ceil(k);
    if per == 0 {
        return vec![v];
    }
    v.chunks(per).collect()
}

/// A shared mapping of `len` bytes of `file` from `file_off`, placed at a 2 MiB-aligned virtual
/// address, or one page past one (`misalign`), inside a reserved range.
pub struct Map {
    base: *mut libc::c_void,
    reserve: usize,
    pub addr: *mut u8,
    pub len: usize,
}

// SAFETY: The mapping is plain shared memory; threads only copy to/from disjoint or racing bytes
// of a benchmark buffer, which is harmless.
unsafe impl Sync for Map {}
// SAFETY: Map owns its mapping, which stays valid in any thread until Map's drop unmaps it.
unsafe impl Send for Map {}

impl Map {
    pub fn new(
        file: &File,
        len: usize,
        file_off: u64,
        prot: i32,
        misalign: bool,
    ) -> io::Result<Map> {
        let reserve = len + 4 * PMD as usize;
        // SAFETY: Reserves address space only.
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
        let aligned = (base as usize + PMD as usize - 1) & !(PMD as usize - 1);
        let at = aligned + if misalign { PAGE } else { 0 };
        // SAFETY: `at..at+len` lies inside the reservation, which MAP_FIXED replaces.
        let addr = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                file_off as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: Releases the reservation.
            unsafe { libc::munmap(base, reserve) };
            return Err(e);
        }
        Ok(Map {
            base,
            reserve,
            addr: addr.cast(),
            len,
        })
    }

    /// Touches one byte per page: a read, or a write of the byte read.
    pub fn touch(&self, write: bool) -> u64 {
        let mut sum = 0u64;
        for off in (0..self.len).step_by(PAGE) {
            // SAFETY: `off < len`; volatile so every page is really touched.
            unsafe {
                let p = self.addr.add(off);
                let v = std::ptr::read_volatile(p);
                if write {
                    std::ptr::write_volatile(p, v);
                }
                sum = sum.wrapping_add(v as u64);
            }
        }
        sum
    }

    pub fn msync(&self) -> io::Result<()> {
        // SAFETY: Syncs our own mapping.
        if unsafe { libc::msync(self.addr.cast(), self.len, libc::MS_SYNC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: Unmaps the reservation, which contains the file mapping.
        unsafe { libc::munmap(self.base, self.reserve) };
    }
}

/// The copies the kernel makes for read(2)/write(2) of a DAX file on x86-64, done from user
/// space on the raw mapping: the ceiling of the read(2)/write(2) figures.
///
/// fsdev_dax devices are DAXDEV_NOMC and DAXDEV_NOCACHE (drivers/dax/bus.c), so `dax_iomap_rw`
/// reads with `_copy_mc_to_iter` (x86: `copy_mc_to_user` -> `rep movsb` when the CPU has ERMS,
/// else `copy_user_generic`: `rep movsq` for 64 bytes and more) and writes with
/// `_copy_from_iter_flushcache` (`__copy_user_nocache`: 64-byte blocks of 8-byte `movnti`
/// non-temporal stores, the tail with plain stores).
pub mod kcopy {
    /// Whether the CPU has ERMS (the kernel then reads with `rep movsb`).
    pub fn erms() -> bool {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| {
                s.lines()
                    .find(|l| l.starts_with("flags"))
                    .is_some_and(|l| l.split_whitespace().any(|f| f == "erms"))
            })
            .unwrap_or(false)
    }

    /// What the read ceiling copies with, for the table.
    pub fn read_kind(erms: bool) -> &'static str {
        if !cfg!(target_arch = "x86_64") {
            "memcpy (not x86-64: the kernel's copy is not reproduced)"
        } else if erms {
            "rep movsb, as copy_mc_to_user with ERMS"
        } else {
            "rep movsq, as copy_user_generic without ERMS"
        }
    }

    /// What the write ceiling copies with, for the table.
    pub fn write_kind() -> &'static str {
        if cfg!(target_arch = "x86_64") {
            "movnti non-temporal stores, as __copy_user_nocache"
        } else {
            "memcpy (not x86-64: the kernel's copy is not reproduced)"
        }
    }

    /// Copies `len` bytes from `src` (device memory) to `dst` as the kernel's read(2) copy does.
    ///
    /// # Safety
    /// `src..src+len` and `dst..dst+len` are valid, non-overlapping.
    pub unsafe fn read(dst: *mut u8, src: *const u8, len: usize, erms: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            if erms {
                // SAFETY: The caller guarantees both ranges; rep movsb copies exactly rcx bytes
                // forward (DF is clear per the ABI) and touches nothing else.
                unsafe {
                    core::arch::asm!("rep movsb", inout("rcx") len => _, inout("rdi") dst => _, inout("rsi") src => _, options(nostack, preserves_flags));
                }
            } else {
                let q = len / 8;
                // SAFETY: As above, q quadwords then the remaining bytes, within the ranges.
                unsafe {
                    core::arch::asm!("rep movsq", "mov rcx, {rest}", "rep movsb", rest = in(reg) len % 8, inout("rcx") q => _, inout("rdi") dst => _, inout("rsi") src => _, options(nostack, preserves_flags));
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = erms;
            // SAFETY: The caller guarantees both ranges.
            unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        }
    }

    /// Copies `len` bytes from `src` to `dst` (device memory) as the kernel's write(2) copy does.
    ///
    /// # Safety
    /// `src..src+len` and `dst..dst+len` are valid, non-overlapping; `dst` is 8-byte aligned.
    pub unsafe fn write(dst: *mut u8, src: *const u8, len: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            // The unrolled loop of the kernel's copy_to_nontemporal
            // (arch/x86/lib/copy_user_uncached_64.S), instruction for instruction: under QEMU's
            // icount, where the figures count instructions, the ceiling must execute the same ones.
            let blocks = len / 64;
            if blocks > 0 {
                // SAFETY: The loop reads and writes `blocks * 64 <= len` bytes from src and dst,
                // inside both ranges (caller); it clobbers only the named registers and flags.
                unsafe {
                    core::arch::asm!(
                        "2:",
                        "mov r8, [rsi]", "mov r9, [rsi + 8]", "mov r10, [rsi + 16]", "mov r11, [rsi + 24]",
                        "movnti [rdi], r8", "movnti [rdi + 8], r9", "movnti [rdi + 16], r10", "movnti [rdi + 24], r11",
                        "mov r8, [rsi + 32]", "mov r9, [rsi + 40]", "mov r10, [rsi + 48]", "mov r11, [rsi + 56]",
                        "movnti [rdi + 32], r8", "movnti [rdi + 40], r9", "movnti [rdi + 48], r10", "movnti [rdi + 56], r11",
                        "add rsi, 64", "add rdi, 64", "sub rdx, 64", "cmp rdx, 64", "jae 2b",
                        inout("rsi") src => _, inout("rdi") dst => _, inout("rdx") blocks * 64 => _,
                        out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                        options(nostack),
                    );
                }
            }
            let done = blocks * 64;
            // SAFETY: The tail lies inside both ranges.
            unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), len - done) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // SAFETY: The caller guarantees both ranges.
            unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        }
    }

    /// Orders the non-temporal stores (once per repetition, as a sync would).
    pub fn fence() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: sfence has no operands and no memory effects beyond ordering.
        unsafe {
            core::arch::x86_64::_mm_sfence()
        };
    }
}

/// Where the data lives.
pub enum Source {
    /// A devdax device in device_dax mode (no read/write), or an image file (`rw`), used from
    /// `offset`.
    Device {
        path: PathBuf,
        offset: u64,
        rw: bool,
    },
    /// A famfs.ko DAX file over the device at `offset` (held: control, device, file).
    Module {
        _ctl: famfs_kmod::Control,
        _dev: File,
        file: File,
    },
    /// A file by path (famfs mount, fallback mount, tmpfs).
    File { path: PathBuf },
}

impl Source {
    pub fn module(dev: &str, offset: u64, size: u64) -> Result<Source> {
        let ctl = famfs_kmod::Control::open().context("open /dev/famfs (is famfs.ko loaded?)")?;
        let devf = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev)
            .with_context(|| format!("open {dev}"))?;
        ctl.attach_daxdev(&devf, 0)
            .context("attach daxdev (is the device bound to fsdev_dax?)")?;
        let mut buf = vec![0u8; 4096];
        let ext = [famfs_fmap::SimpleExtent {
            devindex: 0,
            offset,
            len: size.div_ceil(PMD) * PMD,
        }];
        let n = famfs_fmap::encode_simple(&mut buf, famfs_fmap::FileType::Regular, size, &ext)
            .map_err(|e| anyhow!("encode fmap: {e:?}"))?;
        let f = ctl
            .create_file(&buf[..n], 0, 0o644, 0, 0)
            .context("create famfs.ko file")?;
        Ok(Source::Module {
            _ctl: ctl,
            _dev: devf,
            file: f.file,
        })
    }

    pub fn open(&self) -> io::Result<File> {
        match self {
            Source::Device { path, .. } | Source::File { path } => {
                OpenOptions::new().read(true).write(true).open(path)
            }
            Source::Module { file, .. } => file.try_clone(),
        }
    }

    fn base(&self) -> u64 {
        match self {
            Source::Device { offset, .. } => *offset,
            _ => 0,
        }
    }

    /// msync of a mapping after writes; device_dax maps plain memory and refuses msync.
    fn sync(&self, map: &Map) -> Result<()> {
        if matches!(self, Source::Device { rw: false, .. }) {
            return Ok(());
        }
        map.msync().context("msync")
    }

    pub fn has_rw(&self) -> bool {
        !matches!(self, Source::Device { rw: false, .. })
    }

    /// Whether writes through a mapping are followed by msync (not on device_dax).
    pub fn has_msync(&self) -> bool {
        self.has_rw()
    }
}

/// Maps the first `window` bytes of the source read-write and faults every page in (write),
/// so that bandwidth figures exclude faults; shared by every mmap figure of a run.
pub fn bench_map(src: &Source, window: u64) -> Result<Map> {
    let file = src.open().context("open")?;
    let map = Map::new(
        &file,
        window as usize,
        src.base(),
        libc::PROT_READ | libc::PROT_WRITE,
        false,
    )
    .context("mmap")?;
    map.touch(true);
    src.sync(&map)?;
    Ok(map)
}

/// A page-aligned buffer. The copy routines (glibc's memcpy, the kernel's copies) take paths
/// and loop counts that depend on the buffers' alignment; a heap buffer's alignment differs from
/// process to process, which under icount shows as 1-2% between runs of the same path.
pub struct Buf {
    pages: Vec<Page>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

impl Buf {
    /// `len` bytes of the benchmark's pattern.
    pub fn pattern(len: usize) -> Buf {
        let mut b = Buf {
            pages: vec![Page([0; PAGE]); len.div_ceil(PAGE)],
            len,
        };
        for (i, x) in b.as_mut_slice().iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        b
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `pages` holds `len.div_ceil(PAGE) * PAGE >= len` initialised bytes, contiguous
        // (Page is a plain byte array), borrowed mutably through self.
        unsafe { std::slice::from_raw_parts_mut(self.pages.as_mut_ptr().cast::<u8>(), self.len) }
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: As in as_mut_slice, borrowed shared.
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr().cast::<u8>(), self.len) }
    }
    pub fn as_ptr(&self) -> *const u8 {
        self.pages.as_ptr().cast()
    }
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pages.as_mut_ptr().cast()
    }
}

/// Samples of one bandwidth figure: MB/s of the copies alone, and (writes) the milliseconds of
/// the msync/fdatasync that follows each repetition, timed apart.
#[derive(Debug, Default, Clone)]
pub struct Bandwidth {
    pub mbs: Vec<f64>,
    pub sync_ms: Vec<f64>,
}

/// MB/s of `op`, moving `bytes` per repetition within the first `window` bytes of the source,
/// `reps` times. mmap figures use `map` (from [`bench_map`]). Writes are followed by
/// msync/fdatasync (where the source has them), timed separately from the copies.
pub fn bandwidth(
    src: &Source,
    map: Option<&Map>,
    window: u64,
    op: Op,
    bytes: u64,
    reps: usize,
) -> Result<Bandwidth> {
    let n = (bytes / op.block as u64).max(op.threads as u64) as usize;
    let offs = offsets(
        n,
        op.random,
        window,
        op.block,
        0x1234_5678 + op.block as u64,
    );
    let total = (n * op.block) as f64;
    let mut out = Bandwidth::default();
    match op.api {
        Api::Mmap => {
            let map = map.ok_or_else(|| anyhow!("no mapping"))?;
            for _ in 0..reps {
                let chunks = split(&offs, op.threads);
                let mut bufs: Vec<Buf> = chunks.iter().map(|_| Buf::pattern(op.block)).collect();
                let t = Instant::now();
                std::thread::scope(|s| {
                    for (chunk, buf) in chunks.iter().zip(bufs.iter_mut()) {
                        let block = op.block;
                        let write = op.write;
                        s.spawn(move || {
                            for &o in chunk.iter() {
                                // SAFETY: `o + block <= window <= len` (offsets stay below window - block).
                                unsafe {
                                    let p = map.addr.add(o as usize);
                                    if write {
                                        std::ptr::copy_nonoverlapping(buf.as_ptr(), p, block);
                                    } else {
                                        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), block);
                                    }
                                }
                                std::hint::black_box(&mut *buf);
                            }
                        });
                    }
                });
                out.mbs.push(total / t.elapsed().as_secs_f64() / 1e6);
                if op.write && src.has_msync() {
                    let t = Instant::now();
                    src.sync(map)?;
                    out.sync_ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        Api::Rw if !src.has_rw() => {
            // device_dax has no read(2)/write(2): the ceiling copies on the mapping the way the
            // kernel's read(2)/write(2) of a DAX file does (see kcopy).
            let map = map.ok_or_else(|| anyhow!("no mapping"))?;
            let erms = kcopy::erms();
            let mut buf = Buf::pattern(op.block);
            for _ in 0..reps {
                let t = Instant::now();
                for &o in &offs {
                    // SAFETY: `o + block <= window <= len`; buf holds `block` bytes; the mapping
                    // and buf do not overlap; offsets are block multiples (8-byte aligned).
                    unsafe {
                        let p = map.addr.add(o as usize);
                        if op.write {
                            kcopy::write(p, buf.as_ptr(), op.block);
                        } else {
                            kcopy::read(buf.as_mut_ptr(), p, op.block, erms);
                        }
                    }
                    std::hint::black_box(&mut buf);
                }
                if op.write {
                    kcopy::fence();
                }
                out.mbs.push(total / t.elapsed().as_secs_f64() / 1e6);
            }
        }
        Api::Rw => {
            let file = src.open().context("open")?;
            let mut buf = Buf::pattern(op.block);
            for _ in 0..reps {
                let t = Instant::now();
                for &o in &offs {
                    let o = o + src.base();
                    if op.write {
                        file.write_all_at(buf.as_slice(), o).context("pwrite")?;
                    } else {
                        file.read_exact_at(buf.as_mut_slice(), o).context("pread")?;
                    }
                    std::hint::black_box(&mut buf);
                }
                out.mbs.push(total / t.elapsed().as_secs_f64() / 1e6);
                if op.write {
                    let t = Instant::now();
                    file.sync_data().context("fdatasync")?;
                    out.sync_ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    Ok(out)
}

/// A famfs.ko debugfs counter, when debugfs and the module are there.
pub fn famfs_counter(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/kernel/debug/famfs/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn minflt() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru.ru_minflt as u64
    }
}

/// Counts one kernel trace event in a tracefs instance of its own (entries + overruns of its
/// buffers, so nothing is lost when the buffer wraps); removed on drop.
pub struct TraceCount {
    dir: PathBuf,
    event: String,
}

impl TraceCount {
    /// `event` is `system/name` (e.g. `fs_dax/dax_pmd_fault_done`), `filter` an ftrace filter.
    pub fn new(tag: &str, event: &str, filter: Option<&str>) -> Result<TraceCount> {
        let root = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("instances").is_dir())
            .ok_or_else(|| anyhow!("no tracefs (mount -t tracefs nodev /sys/kernel/tracing)"))?;
        let dir = root
            .join("instances")
            .join(format!("famfs-perf-{tag}-{}", std::process::id()));
        if !dir.is_dir() {
            std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        }
        let t = TraceCount {
            dir,
            event: event.to_string(),
        };
        let ev = t.dir.join("events").join(event);
        if !ev.is_dir() {
            return Err(anyhow!("no trace event {event} (kernel without it?)"));
        }
        std::fs::write(t.dir.join("buffer_size_kb"), "64").context("buffer_size_kb")?;
        if let Some(f) = filter {
            std::fs::write(ev.join("filter"), f).with_context(|| format!("filter {f}"))?;
        }
        std::fs::write(ev.join("enable"), "1").with_context(|| format!("enable {event}"))?;
        Ok(t)
    }

    /// Empties the buffers (and their counts).
    pub fn reset(&self) -> Result<()> {
        std::fs::write(self.dir.join("trace"), "").context("clear trace")
    }

    /// Events recorded since the last reset (entries plus those overwritten).
    pub fn count(&self) -> Result<u64> {
        let mut n = 0;
        for cpu in std::fs::read_dir(self.dir.join("per_cpu")).context("per_cpu")? {
            let stats = std::fs::read_to_string(cpu?.path().join("stats"))?;
            for l in stats.lines() {
                if let Some(v) = l
                    .strip_prefix("entries: ")
                    .or_else(|| l.strip_prefix("overrun: "))
                {
                    n += v.trim().parse::<u64>().context("stats")?;
                }
            }
        }
        Ok(n)
    }
}

impl Drop for TraceCount {
    fn drop(&mut self) {
        let _ = std::fs::write(
            self.dir.join("events").join(&self.event).join("enable"),
            "0",
        );
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The fs_dax fault events of successful faults: PMD (VM_FAULT_NOPAGE) and PTE.
fn dax_fault_counters() -> Result<(TraceCount, TraceCount)> {
    Ok((
        TraceCount::new("pmd", "fs_dax/dax_pmd_fault_done", Some("result == 256"))?,
        TraceCount::new("pte", "fs_dax/dax_pte_fault_done", None)?,
    ))
}

/// First touch of a fresh mapping of the whole file (opened afresh each time).
#[derive(Debug, Default, Clone)]
pub struct Touch {
    pub ms: Vec<f64>,
    pub pte: Vec<f64>,
    pub pmd: Vec<f64>,
    pub minflt: Vec<f64>,
    /// fs_dax tracepoint counts (successful PMD faults, PTE faults), when tracefs is there.
    pub tp_pmd: Vec<f64>,
    pub tp_pte: Vec<f64>,
    /// Why there are no tracepoint counts.
    pub tp_error: Option<String>,
}

/// First touch of a fresh mapping, `reps` times. With `warmup`, one untimed touch first: the
/// emulator's host side (the backing file's pages, QEMU's own page tables) is populated on the
/// first guest access to each page, whichever path makes it; measured, that cost lands on
/// whichever path happens to touch the memory first (it made "the first repetition 10x slower"
/// for famfs, never for raw, in earlier runs). The guest's own faults happen on every map.
pub fn first_touch(
    src: &Source,
    size: u64,
    misalign: bool,
    reps: usize,
    warmup: bool,
) -> Result<Touch> {
    let mut t = Touch::default();
    if warmup {
        let file = src.open().context("open")?;
        let map = Map::new(&file, size as usize, src.base(), libc::PROT_READ, misalign)
            .context("mmap (warm-up)")?;
        std::hint::black_box(map.touch(false));
    }
    let tp = dax_fault_counters().map_err(|e| format!("{e:#}"));
    if let Err(e) = &tp {
        t.tp_error = Some(e.clone());
    }
    for _ in 0..reps {
        let file = src.open().context("open")?;
        if let Ok((a, b)) = &tp {
            a.reset()?;
            b.reset()?;
        }
        let (pte0, pmd0, mf0) = (
            famfs_counter("pte_faults"),
            famfs_counter("pmd_faults"),
            minflt(),
        );
        let start = Instant::now();
        let map = Map::new(&file, size as usize, src.base(), libc::PROT_READ, misalign).context(
            if misalign {
                "mmap one page off the 2 MiB grid"
            } else {
                "mmap"
            },
        )?;
        std::hint::black_box(map.touch(false));
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let mf1 = minflt();
        if let Ok((a, b)) = &tp {
            t.tp_pmd.push(a.count()? as f64);
            t.tp_pte.push(b.count()? as f64);
        }
        drop(map);
        t.ms.push(ms);
        t.minflt.push((mf1 - mf0) as f64);
        if let (Some(a), Some(b), Some(c), Some(d)) = (
            pte0,
            famfs_counter("pte_faults"),
            pmd0,
            famfs_counter("pmd_faults"),
        ) {
            t.pte.push((b - a) as f64);
            t.pmd.push((d - c) as f64);
        }
    }
    Ok(t)
}

/// An A/A path (label `X-aa`: path X measured a second time) must read 1 within this of X.
pub const AA_TOLERANCE: f64 = 0.01;

impl DataParams {
    /// The path an A/A label repeats (`module-aa` -> `module`).
    pub fn aa_of(&self) -> Option<&str> {
        self.label.strip_suffix("-aa").filter(|a| !a.is_empty())
    }
}

/// Parameters of one data run.
pub struct DataParams {
    pub label: String,
    pub env: String,
    /// Bandwidth figures work within the first `window` bytes.
    pub window: u64,
    pub touch_size: u64,
    pub bytes: u64,
    pub reps: usize,
    pub touch_reps: usize,
    pub threads: Vec<usize>,
    /// Whether figures of this path have the famfs targets (module, fuse).
    pub famfs: bool,
    /// Prefix of the section names (`host-` for runs on the host).
    pub prefix: String,
    /// Path label of the ceiling (`raw`).
    pub ceiling: String,
    /// The interleaving round these figures belong to (scripts/bench measures every path once
    /// per round, alternating their order): recorded with each sample, so that ratios pair a
    /// path's samples with its ceiling's of the same round.
    pub round: Option<u32>,
}

fn record(
    p: &DataParams,
    section: &str,
    key: String,
    figure: String,
    unit: &str,
    higher: bool,
) -> Record {
    Record::new(
        format!("{}{section}", p.prefix),
        p.label.clone(),
        key,
        figure,
        unit,
        higher,
        p.env.clone(),
    )
}

/// Every record a data run makes, without samples (also used to mark a path not measured).
pub fn data_records(p: &DataParams, rw: bool) -> Vec<(Record, Option<Op>, Option<bool>)> {
    let mut v = Vec::new();
    for (section, ops) in [("data", data_ops(rw)), ("threads", thread_ops(&p.threads))] {
        for op in ops {
            let mut r = record(p, section, op.key(), op.figure(), "MB/s", true);
            if let Some(a) = p.aa_of() {
                r.baseline = Some(format!("{}{section}/{a}/{}", p.prefix, op.key()));
                r.target = Some(Target::Same(AA_TOLERANCE));
            } else if p.label != p.ceiling {
                r.baseline = Some(format!(
                    "{}{section}/{}/{}",
                    p.prefix,
                    p.ceiling,
                    op.ceiling_key()
                ));
            }
            if p.famfs {
                r.target = Some(Target::RatioAtLeast(if op.api == Api::Mmap {
                    0.99
                } else {
                    0.90
                }));
            }
            v.push((r, Some(op), None));
        }
    }
    for misalign in [false, true] {
        let a = if misalign { "misaligned" } else { "aligned" };
        let what = if misalign {
            "one page off the 2 MiB grid"
        } else {
            "2 MiB-aligned"
        };
        let gib = p.touch_size as f64 / (1u64 << 30) as f64;
        let mut r = record(
            p,
            "first-touch",
            format!("{a}/time"),
            format!("map + touch {gib} GiB, {what}: time per GiB"),
            "ms/GiB",
            false,
        );
        if let Some(aa) = p.aa_of() {
            r.baseline = Some(format!("{}first-touch/{aa}/{a}/time", p.prefix));
            r.target = Some(Target::Same(AA_TOLERANCE));
        } else if p.label != p.ceiling {
            r.baseline = Some(format!("{}first-touch/{}/{a}/time", p.prefix, p.ceiling));
        }
        v.push((r, None, Some(misalign)));
        v.push((
            record(
                p,
                "first-touch",
                format!("{a}/minflt"),
                format!("{what}: minor faults (rusage)"),
                "faults",
                false,
            ),
            None,
            Some(misalign),
        ));
        if p.famfs {
            let mut pmd = record(
                p,
                "first-touch",
                format!("{a}/pmd"),
                format!("{what}: famfs PMD faults"),
                "faults",
                false,
            );
            let mut pte = record(
                p,
                "first-touch",
                format!("{a}/pte"),
                format!("{what}: famfs PTE faults"),
                "faults",
                false,
            );
            if !misalign {
                pmd.target = Some(Target::Equals((p.touch_size / PMD) as f64));
                pte.target = Some(Target::Equals(0.0));
            }
            // The same faults seen by the kernel's fs_dax tracepoints, independent of famfs.ko.
            let mut tpmd = record(
                p,
                "first-touch",
                format!("{a}/tp-pmd"),
                format!("{what}: fs_dax tracepoint PMD faults (dax_pmd_fault_done, NOPAGE)"),
                "faults",
                false,
            );
            let mut tpte = record(
                p,
                "first-touch",
                format!("{a}/tp-pte"),
                format!("{what}: fs_dax tracepoint PTE faults (dax_pte_fault_done)"),
                "faults",
                false,
            );
            if !misalign {
                tpmd.target = Some(Target::Equals((p.touch_size / PMD) as f64));
                tpte.target = Some(Target::Equals(0.0));
            }
            v.push((pmd, None, Some(misalign)));
            v.push((pte, None, Some(misalign)));
            v.push((tpmd, None, Some(misalign)));
            v.push((tpte, None, Some(misalign)));
        }
    }
    // msync/fdatasync after each repetition of the single-thread write figures, timed apart.
    for op in data_ops(rw).into_iter().filter(|o| o.write) {
        let what = if op.api == Api::Mmap {
            "msync"
        } else {
            "fdatasync"
        };
        let mib = p.bytes as f64 / MIB as f64;
        let mut r = record(
            p,
            "sync",
            op.key(),
            format!("{what} after {} ({mib} MiB written)", op.figure()),
            "ms",
            false,
        );
        if let Some(a) = p.aa_of() {
            r.baseline = Some(format!("{}sync/{a}/{}", p.prefix, op.key()));
            r.target = Some(Target::Same(AA_TOLERANCE));
        }
        v.push((r, Some(op), None));
    }
    v
}

/// Runs every data figure on `src`, handing each record to `emit` as soon as it is measured.
pub fn run(src: &Source, p: &DataParams, emit: &mut dyn FnMut(Record)) {
    let rw = src.has_rw();
    let mut map: Option<std::result::Result<Map, String>> = None;
    let mut touched: Option<(bool, std::result::Result<Touch, String>)> = None;
    let mut syncs: std::collections::HashMap<String, std::result::Result<Vec<f64>, String>> =
        Default::default();
    let sync_section = format!("{}sync", p.prefix);
    for (mut r, op, touch) in data_records(p, true) {
        if let (Some(op), true) = (op, r.section == sync_section) {
            match syncs.remove(&op.key()) {
                Some(Ok(v)) if !v.is_empty() => r.samples = v,
                Some(Ok(_)) => {
                    r.not_measured = Some(if rw {
                        "no sync samples".into()
                    } else {
                        "device_dax: no msync (plain memory)".into()
                    })
                }
                Some(Err(e)) => r.not_measured = Some(e),
                None => {
                    r.not_measured = Some(if rw {
                        "not measured".into()
                    } else {
                        "device_dax: no write(2)".into()
                    })
                }
            }
        } else if let Some(op) = op {
            {
                if op.api == Api::Rw && !rw {
                    let kind = if op.write {
                        kcopy::write_kind()
                    } else {
                        kcopy::read_kind(kcopy::erms())
                    };
                    r.figure = format!("{} [raw: {kind}]", r.figure);
                }
                eprintln!("famfs-perf: {} {} ...", p.label, r.key);
                let m = if op.api == Api::Mmap || !rw {
                    if map.is_none() {
                        map = Some(bench_map(src, p.window).map_err(|e| format!("{e:#}")));
                    }
                    match map.as_ref().unwrap() {
                        Ok(m) => Ok(Some(m)),
                        Err(e) => Err(anyhow!("{e}")),
                    }
                } else {
                    Ok(None)
                };
                match m.and_then(|m| bandwidth(src, m, p.window, op, p.bytes, p.reps)) {
                    Ok(b) => {
                        r.samples = b.mbs;
                        if op.threads == 1 {
                            syncs.insert(op.key(), Ok(b.sync_ms));
                        }
                    }
                    Err(e) => {
                        r.not_measured = Some(format!("{e:#}"));
                        syncs.insert(op.key(), Err(format!("{e:#}")));
                    }
                }
            }
        } else if let Some(mis) = touch {
            if touched.as_ref().map(|(m, _)| *m) != Some(mis) {
                eprintln!(
                    "famfs-perf: {} first touch ({}) ...",
                    p.label,
                    if mis { "misaligned" } else { "aligned" }
                );
                map = None; // release the bandwidth mapping (and a fallback mount's page cache)
                touched = Some((
                    mis,
                    first_touch(src, p.touch_size, mis, p.touch_reps, !mis)
                        .map_err(|e| format!("{e:#}")),
                ));
            }
            match &touched.as_ref().unwrap().1 {
                Err(e) => r.not_measured = Some(e.clone()),
                Ok(t) => {
                    let which = r.key.split('/').nth(1).unwrap_or("");
                    r.samples = match which {
                        "time" => {
                            t.ms.iter()
                                .map(|ms| ms * (1u64 << 30) as f64 / p.touch_size as f64)
                                .collect()
                        }
                        "minflt" => t.minflt.clone(),
                        "pmd" => t.pmd.clone(),
                        "pte" => t.pte.clone(),
                        "tp-pmd" => t.tp_pmd.clone(),
                        "tp-pte" => t.tp_pte.clone(),
                        _ => Vec::new(),
                    };
                    if r.samples.is_empty() {
                        r.not_measured = Some(match (which, &t.tp_error) {
                            ("tp-pmd" | "tp-pte", Some(e)) => e.clone(),
                            _ => "no famfs debugfs counters".into(),
                        });
                    }
                }
            }
        }
        if let Some(k) = p.round {
            r.rounds = vec![k; r.samples.len()];
        }
        emit(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ceilings() {
        let op = Op {
            api: Api::Rw,
            write: false,
            random: true,
            block: 4096,
            threads: 1,
        };
        assert_eq!(op.key(), "rw/rand-read/4K/t1");
        assert_eq!(op.ceiling_key(), "rw/rand-read/4K/t1");
        assert_eq!(op.figure(), "read(2) random read 4K");
        assert_eq!(data_ops(true).len(), 24);
        assert_eq!(data_ops(false).len(), 12);
        assert_eq!(thread_ops(&[1, 2]).len(), 6);
    }

    #[test]
    fn kernel_copies_copy() {
        let src: Vec<u8> = (0..4096 + 77).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 63, 64, 65, 4096, 4096 + 77] {
            for erms in [false, true] {
                let mut dst = vec![0u8; src.len()];
                // SAFETY: Both buffers hold at least `len` bytes and are distinct.
                unsafe { kcopy::read(dst.as_mut_ptr(), src.as_ptr(), len, erms) };
                assert_eq!(&dst[..len], &src[..len]);
                assert!(dst[len..].iter().all(|b| *b == 0), "read copied past {len}");
            }
            let mut dst = vec![0u64; src.len() / 8 + 1]; // 8-byte aligned
            let d = dst.as_mut_ptr().cast::<u8>();
            // SAFETY: `dst` holds more than `len` bytes, 8-byte aligned, distinct from src.
            unsafe { kcopy::write(d, src.as_ptr(), len) };
            kcopy::fence();
            // SAFETY: Reads back the bytes just written, inside dst.
            let got = unsafe { std::slice::from_raw_parts(d, src.len()) };
            assert_eq!(&got[..len], &src[..len]);
            assert!(
                got[len..].iter().all(|b| *b == 0),
                "write copied past {len}"
            );
        }
    }

    #[test]
    fn offsets_stay_in_range() {
        let size = 64 * MIB;
        for &(b, _) in BLOCKS {
            for random in [false, true] {
                let o = offsets(1000, random, size, b, 7);
                assert_eq!(o.len(), 1000);
                assert!(o.iter().all(|&x| x % b as u64 == 0 && x + b as u64 <= size));
            }
        }
        assert_eq!(offsets(3, false, 2 * 4096, 4096, 1), vec![0, 4096, 0]);
        let parts = split(&[1, 2, 3, 4, 5], 2);
        assert_eq!(parts, vec![&[1, 2, 3][..], &[4, 5][..]]);
        assert_eq!(split::<u8>(&[], 2).len(), 1);
    }

    #[test]
    fn record_targets_and_baselines() {
        let p = DataParams {
            label: "module".into(),
            env: "vm-tcg".into(),
            window: 1 << 20,
            touch_size: 1 << 30,
            bytes: 0,
            reps: 1,
            touch_reps: 1,
            threads: vec![1, 2],
            famfs: true,
            prefix: String::new(),
            ceiling: "raw".into(),
            round: None,
        };
        let recs = data_records(&p, true);
        let pmd = recs
            .iter()
            .find(|(r, _, _)| r.key == "aligned/pmd")
            .unwrap();
        assert_eq!(pmd.0.target, Some(Target::Equals(512.0)));
        let rw = recs
            .iter()
            .find(|(r, _, _)| r.key == "rw/seq-read/2M/t1")
            .unwrap();
        assert_eq!(rw.0.baseline.as_deref(), Some("data/raw/rw/seq-read/2M/t1"));
        assert_eq!(rw.0.target, Some(Target::RatioAtLeast(0.90)));
        let raw = DataParams {
            label: "raw".into(),
            famfs: false,
            ..p
        };
        assert!(data_records(&raw, false)
            .iter()
            .all(|(r, _, _)| r.baseline.is_none() && r.target.is_none()));
    }

    #[test]
    fn mmap_and_rw_on_a_tmp_file() {
        let dir = std::env::temp_dir().join(format!("famfs-perf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, vec![1u8; 8 << 20]).unwrap();
        let src = Source::File { path: path.clone() };
        let map = bench_map(&src, 8 << 20).unwrap();
        for op in data_ops(true).into_iter().chain(thread_ops(&[2])) {
            let b = bandwidth(&src, Some(&map), 8 << 20, op, 1 << 20, 2).unwrap();
            assert_eq!(b.mbs.len(), 2);
            assert!(b.mbs.iter().all(|x| *x > 0.0));
            assert_eq!(b.sync_ms.len(), if op.write { 2 } else { 0 });
        }
        // A source without read(2)/write(2) (as device_dax): the kernel-copy ceiling on its mapping.
        let dev = Source::Device {
            path: path.clone(),
            offset: 0,
            rw: false,
        };
        let dmap = bench_map(&dev, 8 << 20).unwrap();
        for op in data_ops(true).into_iter().filter(|o| o.api == Api::Rw) {
            let b = bandwidth(&dev, Some(&dmap), 8 << 20, op, 1 << 20, 2).unwrap();
            assert!(b.mbs.len() == 2 && b.mbs.iter().all(|x| *x > 0.0) && b.sync_ms.is_empty());
        }
        let t = first_touch(&src, 8 << 20, true, 1, true).unwrap();
        assert_eq!(t.ms.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
