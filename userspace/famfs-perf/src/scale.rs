//! Metadata at scale: a file system of N files in one directory (log made big enough), then log
//! play, mount, `ls -l`, `find`, the first open (+ read + mmap) of every file through the mount,
//! umount, and the server's and the kernel's memory per file. On an image (host, fallback mode)
//! or a devdax device (VM, module or fallback mode).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use famfs_format::{RelPath, DEFAULT_LOG_LEN, LOG_ENTRY_SIZE, LOG_HEADER_SIZE};
use famfs_media::{Access, Media};
use famfs_meta::{mkfs, Famfs, Layout, MkfsOptions};

use crate::data::{Map, PMD};
use crate::report::Record;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// famfs.ko serves the data (module-mode mount; the device must be bound to fsdev_dax).
    Module,
    /// The server serves the data (device_dax or an image).
    Fallback,
}

pub struct ScaleParams {
    pub n: usize,
    pub mode: Mode,
    /// A devdax device; None: a sparse image in `workdir`.
    pub device: Option<PathBuf>,
    pub workdir: PathBuf,
    pub bin_dir: PathBuf,
    pub label: String,
    pub env: String,
    pub reps: usize,
    /// Skip the first open of every file (the walks' figures only).
    pub no_opens: bool,
}

/// The smallest power-of-two log (>= the default) with room for `entries` entries.
pub fn log_len_for(entries: u64) -> u64 {
    (LOG_HEADER_SIZE as u64 + entries * LOG_ENTRY_SIZE as u64)
        .next_power_of_two()
        .max(DEFAULT_LOG_LEN)
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn meminfo_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix(" kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// Kernel slab memory (whole system).
fn slab_kb() -> Option<u64> {
    meminfo_kb("Slab")
}

/// Bytes in every slab cache (`/proc/slabinfo`: active objects x object size), by cache name.
fn slabinfo() -> Option<std::collections::BTreeMap<String, u64>> {
    let s = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let mut m = std::collections::BTreeMap::new();
    for l in s.lines().skip(2) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let (Some(name), Some(Ok(active)), Some(Ok(size))) = (
            f.first(),
            f.get(1).map(|x| x.parse::<u64>()),
            f.get(3).map(|x| x.parse::<u64>()),
        ) {
            m.insert(name.to_string(), active * size);
        }
    }
    Some(m)
}

/// Total growth between two slabinfo snapshots, and the caches that grew most (name, bytes).
fn slab_growth(
    a: &std::collections::BTreeMap<String, u64>,
    b: &std::collections::BTreeMap<String, u64>,
) -> (i64, Vec<(String, i64)>) {
    let mut v: Vec<(String, i64)> = b
        .iter()
        .map(|(k, y)| (k.clone(), *y as i64 - a.get(k).copied().unwrap_or(0) as i64))
        .collect();
    let total = v.iter().map(|(_, d)| d).sum();
    v.sort_by_key(|(_, d)| -d);
    v.truncate(6);
    (total, v)
}

/// The server's request counters (the `user.famfs.stats` xattr of the mount's root: one
/// `name count` line per FUSE opcode).
fn server_stats(mpt: &Path) -> Option<std::collections::BTreeMap<String, u64>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(mpt.as_os_str().as_bytes()).ok()?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: Both names are NUL-terminated C strings; buf is writable for buf.len() bytes.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"user.famfs.stats".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    Some(
        text.lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .and_then(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            })
            .collect(),
    )
}

/// Requests the server received between two snapshots, per `per` operations: the total (less
/// the one getxattr that reads the second snapshot) and the opcodes that grew, as text.
fn requests_per(
    a: &Option<std::collections::BTreeMap<String, u64>>,
    b: &Option<std::collections::BTreeMap<String, u64>>,
    per: usize,
) -> Result<(f64, String)> {
    let (Some(a), Some(b)) = (a, b) else {
        bail!("no server stats (user.famfs.stats)")
    };
    let events = ["passthrough_opens", "dax_files_created", "log_plays"];
    let mut total = 0u64;
    let mut parts = Vec::new();
    for (k, y) in b {
        let mut d = y.saturating_sub(a.get(k).copied().unwrap_or(0));
        if k == "getxattr" {
            d = d.saturating_sub(1);
        }
        if d > 0 {
            if !events.contains(&k.as_str()) {
                total += d;
            }
            parts.push(format!("{k} {:.2}", d as f64 / per as f64));
        }
    }
    Ok((total as f64 / per as f64, parts.join(", ")))
}

/// The pid of the famfs-fused serving `mpt`.
fn server_pid(mpt: &Path) -> Option<u32> {
    let want = mpt.display().to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_server = args.first().is_some_and(|a| a.ends_with(b"famfs-fused"));
        if is_server && args.contains(&want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// The server's own memory: anonymous resident pages (RssAnon). Its mapping of the device or
/// image (RssFile, RssShmem) is the data it serves in fallback mode, not per-file state.
fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix("RssAnon:")?
            .trim()
            .strip_suffix(" kB")?
            .trim()
            .parse()
            .ok()
    })
}

fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

pub fn run(p: &ScaleParams, emit: &mut dyn FnMut(Record)) -> Result<()> {
    let dir = p
        .workdir
        .join(format!("famfs-perf-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mpt = dir.join("mnt");
    let res = run_in(p, &dir, &mpt, emit);
    if crate::meta::is_mounted(&mpt) {
        let _ = run_ok(
            Command::new(p.bin_dir.join("famfs"))
                .arg("umount")
                .arg(&mpt),
        );
    }
    if p.device.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        let _ = std::fs::remove_dir(&mpt);
        let _ = std::fs::remove_dir(&dir);
    }
    res
}

fn run_in(p: &ScaleParams, dir: &Path, mpt: &Path, emit: &mut dyn FnMut(Record)) -> Result<()> {
    let n = p.n;
    let label = p.label.as_str();
    let rec = |key: &str, figure: String, unit: &str, higher: bool| {
        Record::new(
            "scale".into(),
            label.into(),
            key.into(),
            figure,
            unit,
            higher,
            p.env.clone(),
        )
    };
    let mut out = |mut r: Record, s: Result<Vec<f64>>| {
        eprintln!("famfs-perf: scale {} {}", r.path, r.key);
        match s {
            Ok(v) => r.samples = v,
            Err(e) => r.not_measured = Some(format!("{e:#}")),
        }
        emit(r);
    };
    let famfs = p.bin_dir.join("famfs");

    // The file system: N files of one allocation unit each, in /big.
    let log_len = log_len_for(n as u64 + 16);
    let target = match &p.device {
        Some(d) => {
            if p.mode == Mode::Module {
                // The library writes through a device_dax mapping; famfs.ko needs fsdev_dax after.
                run_ok(Command::new("daxmode").arg(d).arg("device_dax"))?;
            }
            d.clone()
        }
        None => {
            std::env::set_var(famfs_meta::SYSTEM_UUID_ENV, dir.join("system_uuid"));
            let img = dir.join("scale.img");
            let size = (PMD * (n as u64 + 8) + log_len + (4 << 30)).div_ceil(PMD) * PMD;
            File::create(&img)?.set_len(size)?;
            img
        }
    };
    let media = Media::open(&target, Access::ReadWrite)
        .with_context(|| format!("open {}", target.display()))?;
    let cap = media.size().saturating_sub(log_len + (4 << 20)) / PMD;
    if (cap as usize) < n {
        bail!("{} holds {cap} files of 2 MiB (the allocation unit), not {n}: a larger device is needed", target.display());
    }
    let su = famfs_meta::local_system_uuid(&famfs_meta::system_uuid_path())?;
    mkfs(
        &media,
        &MkfsOptions {
            log_len,
            fs_uuid: [3; 16],
            dev_uuid: [4; 16],
            system_uuid: su,
            device_name: target.display().to_string(),
        },
    )?;
    drop(media);
    let t = Instant::now();
    {
        let mut fs = Famfs::open(&target, Access::ReadWrite)?;
        fs.with_log_lock(|a| {
            a.mkdir(&RelPath::new("big").expect("static path"), 0o755, 0, 0)?;
            for i in 0..n {
                a.create_file(
                    &RelPath::new(&format!("big/f{i:06}")).expect("short path"),
                    4096,
                    0o644,
                    0,
                    0,
                    Layout::Contiguous,
                )?;
            }
            Ok(())
        })?;
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    out(
        rec(
            "creat",
            format!("library create_file, {n} files in one directory (one log lock), per file"),
            "µs",
            false,
        ),
        Ok(vec![per]),
    );

    let want = n as u64 + 1;
    out(
        rec(
            "logplay",
            format!(
                "log play of {want} entries (open + play; log {} MiB)",
                log_len >> 20
            ),
            "ms",
            false,
        ),
        (0..p.reps)
            .map(|_| {
                let t = Instant::now();
                let fs = Famfs::open(&target, Access::ReadOnly)?;
                if fs.played() != want {
                    bail!("played {} of {want} entries", fs.played());
                }
                Ok(t.elapsed().as_secs_f64() * 1e3)
            })
            .collect(),
    );

    std::fs::create_dir_all(mpt)?;
    if let (Some(d), Mode::Module) = (&p.device, p.mode) {
        // Rebinding to fsdev_dax builds the device's struct pages (64 bytes per 4 KiB page):
        // timed apart, so that the mount figures below are the mount alone.
        let t = Instant::now();
        let r = run_ok(Command::new("daxmode").arg(d).arg("fsdev_dax"))
            .map(|_| vec![t.elapsed().as_secs_f64() * 1e3]);
        let gib = Media::open(d, Access::ReadOnly)
            .map(|m| m.size() as f64 / (1u64 << 30) as f64)
            .unwrap_or(0.0);
        out(rec("daxmode", format!("rebind the {gib:.0} GiB device device_dax -> fsdev_dax (its struct pages), before the mounts"), "ms", false), r);
    }
    let mount = || -> Result<f64> {
        let mut c = Command::new(&famfs);
        c.arg("mount");
        if p.mode == Mode::Fallback {
            c.arg("--fallback");
        }
        if p.device.is_some() {
            c.arg("--set-daxmode");
        }
        let t = Instant::now();
        run_ok(c.arg(&target).arg(mpt))?;
        // Until the mount answers for the directory.
        std::fs::metadata(mpt.join("big")).context("stat big after mount")?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let umount = || -> Result<f64> {
        let t = Instant::now();
        run_ok(Command::new(&famfs).arg("umount").arg(mpt))?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let mode = if p.mode == Mode::Module {
        "module mode"
    } else {
        "fallback mode"
    };
    let mut mounts = Vec::new();
    let mut umounts = Vec::new();
    let mut err = None;
    for _ in 0..p.reps {
        match mount().and_then(|m| umount().map(|u| (m, u))) {
            Ok((m, u)) => {
                mounts.push(m);
                umounts.push(u);
            }
            Err(e) => {
                err = Some(format!("{e:#}"));
                break;
            }
        }
    }
    let res = |v: Vec<f64>| match &err {
        Some(e) => Err(anyhow!("{e}")),
        None => Ok(v),
    };
    out(
        rec(
            "mount",
            format!("famfs mount, {mode}, {want}-entry log (until the mount answers)"),
            "ms",
            false,
        ),
        res(mounts),
    );
    out(
        rec(
            "umount",
            format!("famfs umount, {mode}, {n} files, none opened"),
            "ms",
            false,
        ),
        res(umounts),
    );

    // One more mount for the walk and the opens; memory before it and after.
    let _ = std::process::Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
    let slab0 = slab_kb();
    let up = mount();
    let pid = server_pid(mpt);
    let rss_mount = pid.and_then(rss_kb);
    let fds_mount = pid.and_then(fd_count);
    let files0 = crate::data::famfs_counter("files");
    let timed = |what: &str, cmd: &mut Command| -> Result<Vec<f64>> {
        if let Err(e) = &up {
            bail!("mount failed: {e:#}");
        }
        let t = Instant::now();
        let o = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("run {what}"))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !o.status.success() {
            bail!(
                "{what} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        let lines = o.stdout.iter().filter(|b| **b == b'\n').count();
        if lines < n {
            bail!("{what} listed {lines} lines, expected at least {n}");
        }
        Ok(vec![ms])
    };
    let big = mpt.join("big");
    // Each walk with the FUSE requests it sent per entry (the server's counters).
    let mut walk = |key: &str, figure: String, what: &str, cmd: &mut Command| {
        let s0 = server_stats(mpt);
        let r = timed(what, cmd);
        let s1 = server_stats(mpt);
        let ok = r.is_ok();
        out(rec(key, figure.clone(), "ms", false), r);
        if ok {
            let (v, parts) = match requests_per(&s0, &s1, n) {
                Ok((v, parts)) => (Ok(vec![v]), parts),
                Err(e) => (Err(e), String::new()),
            };
            out(
                rec(
                    &format!("{key}-requests"),
                    format!("FUSE requests per entry during: {figure} ({parts})"),
                    "requests",
                    false,
                ),
                v,
            );
        }
    };
    walk(
        "ls-l-cold",
        format!("ls -l of the {n}-entry directory, first after mount"),
        "ls -l",
        Command::new("ls").arg("-l").arg(&big),
    );
    walk(
        "ls-l-warm",
        format!("ls -l of the {n}-entry directory, again"),
        "ls -l",
        Command::new("ls").arg("-l").arg(&big),
    );
    walk(
        "find",
        format!("find over the mount ({} entries)", n + 2),
        "find",
        Command::new("find").arg(mpt),
    );

    // Kernel memory of the walk (a FUSE inode and dentry per entry), then of the opens.
    let si_walk = slabinfo();
    let st_walk = server_stats(mpt);
    // First open of every file: open, read its first 4 KiB, map and touch it, close.
    let mut first1000 = None;
    let mut all = None;
    let opened = (|| -> Result<()> {
        if let Err(e) = &up {
            bail!("mount failed: {e:#}");
        }
        if p.no_opens {
            bail!("not measured (--no-opens)");
        }
        let t = Instant::now();
        let mut buf = [0u8; 4096];
        for i in 0..n {
            let path = big.join(format!("f{i:06}"));
            let r = (|| -> Result<()> {
                let mut f = File::open(&path)?;
                f.read_exact(&mut buf)?;
                let m = Map::new(&f, 4096, 0, libc::PROT_READ, false)?;
                std::hint::black_box(m.touch(false));
                Ok(())
            })();
            r.with_context(|| format!("file {} of {n} ({})", i + 1, path.display()))?;
            if i + 1 == 1000 {
                first1000 = Some(t.elapsed().as_secs_f64() * 1e6 / 1000.0);
            }
        }
        all = Some(t.elapsed().as_secs_f64() * 1e6 / n as f64);
        Ok(())
    })();
    let failed = |e: &anyhow::Error| anyhow!("{e:#}");
    out(
        rec(
            "first-open-1000",
            "first open + read 4K + mmap, per file, over the first 1,000 files".into(),
            "µs",
            false,
        ),
        match (&opened, first1000) {
            (_, Some(v)) => Ok(vec![v]),
            (Err(e), None) => Err(failed(e)),
            (Ok(()), None) => Err(anyhow!("fewer than 1,000 files")),
        },
    );
    out(
        rec(
            "first-open-all",
            format!("first open + read 4K + mmap, per file, over all {n} files"),
            "µs",
            false,
        ),
        opened
            .as_ref()
            .map_err(failed)
            .and_then(|_| all.map(|v| vec![v]).ok_or_else(|| anyhow!("not timed"))),
    );
    let st_open = server_stats(mpt);
    if opened.is_ok() {
        let (v, parts) = match requests_per(&st_walk, &st_open, n) {
            Ok((v, parts)) => (Ok(vec![v]), parts),
            Err(e) => (Err(e), String::new()),
        };
        out(
            rec(
                "first-open-requests",
                format!("FUSE requests per file during the first opens ({parts})"),
                "requests",
                false,
            ),
            v,
        );
    }
    let rss_open = pid.and_then(rss_kb);
    let fds = pid.and_then(fd_count);
    let slab1 = slab_kb();
    let si_open = slabinfo();
    let files1 = crate::data::famfs_counter("files");
    let kib = |v: Option<u64>, what: &str| {
        v.map(|x| vec![x as f64])
            .ok_or_else(|| anyhow!("{what} not found"))
    };
    out(
        rec(
            "server-rss-mount",
            format!("server anonymous RSS after mount ({n} files)"),
            "KiB",
            false,
        ),
        kib(rss_mount, "server process"),
    );
    out(
        rec(
            "server-bytes-per-file",
            "server memory per file in its namespace (anonymous RSS at mount / N)".into(),
            "bytes",
            false,
        ),
        rss_mount
            .map(|a| vec![a as f64 * 1024.0 / n as f64])
            .ok_or_else(|| anyhow!("server process not found")),
    );
    out(
        rec("server-bytes-per-opened-file", "server memory growth per file opened (anonymous RSS after opening every file, less at mount, / N)".into(), "bytes", false),
        opened.as_ref().map_err(failed).and_then(|_| match (rss_mount, rss_open) {
            (Some(a), Some(b)) => Ok(vec![(b as f64 - a as f64) * 1024.0 / n as f64]),
            _ => Err(anyhow!("server process not found")),
        }),
    );
    out(
        rec(
            "server-fds-mount",
            "server descriptors after mount".into(),
            "fds",
            false,
        ),
        kib(fds_mount, "server process"),
    );
    out(
        rec(
            "server-fds",
            format!("server descriptors after opening all {n} files"),
            "fds",
            false,
        ),
        kib(fds, "server process"),
    );
    if p.mode == Mode::Module {
        out(
            rec("famfs-files", format!("famfs.ko files alive after opening all {n} files (debugfs famfs/files, less at mount)"), "files", false),
            match (files0, files1, &opened) {
                (Some(a), Some(b), Ok(())) => Ok(vec![b as f64 - a as f64]),
                (_, _, Err(e)) => Err(failed(e)),
                _ => Err(anyhow!("no famfs debugfs counters")),
            },
        );
    }
    // Slab growth over the opens alone: in module mode the famfs.ko file, its backing file and
    // FUSE's file state per file; the walk before it made the FUSE inodes and dentries.
    match (&si_walk, &si_open, &opened) {
        (Some(a), Some(b), Ok(())) => {
            let (total, top) = slab_growth(a, b);
            let top: Vec<String> = top
                .iter()
                .filter(|(_, d)| *d > 0)
                .map(|(k, d)| format!("{k} {:.0}", *d as f64 / n as f64))
                .collect();
            eprintln!("famfs-perf: scale {label}: slab growth over the opens {total} bytes; per file by cache: {}", top.join(", "));
            out(
                rec(
                    "kernel-bytes-per-opened-file",
                    format!(
                        "kernel slab growth over the first opens / N (/proc/slabinfo; largest: {})",
                        top.join(", ")
                    ),
                    "bytes",
                    false,
                ),
                Ok(vec![total as f64 / n as f64]),
            );
        }
        (_, _, Err(e)) => out(
            rec(
                "kernel-bytes-per-opened-file",
                "kernel slab growth over the first opens / N (/proc/slabinfo)".into(),
                "bytes",
                false,
            ),
            Err(failed(e)),
        ),
        _ => out(
            rec(
                "kernel-bytes-per-opened-file",
                "kernel slab growth over the first opens / N (/proc/slabinfo)".into(),
                "bytes",
                false,
            ),
            Err(anyhow!("no /proc/slabinfo")),
        ),
    }
    out(
        rec(
            "kernel-bytes-per-file",
            "kernel slab growth (mount + walk + opens) / N (whole-system figure)".into(),
            "bytes",
            false,
        ),
        match (slab0, slab1, &opened) {
            (Some(a), Some(b), Ok(())) => Ok(vec![(b as f64 - a as f64) * 1024.0 / n as f64]),
            (_, _, Err(e)) => Err(failed(e)),
            _ => Err(anyhow!("no Slab in /proc/meminfo")),
        },
    );
    if up.is_ok() {
        out(
            rec(
                "umount-opened",
                format!("famfs umount, {mode}, after every file was opened"),
                "ms",
                false,
            ),
            umount().map(|u| vec![u]),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sizes() {
        assert_eq!(log_len_for(10), DEFAULT_LOG_LEN);
        let l = log_len_for(100_016);
        assert!(
            l.is_power_of_two() && (l - LOG_HEADER_SIZE as u64) / LOG_ENTRY_SIZE as u64 >= 100_016
        );
        assert_eq!(l, 64 << 20);
    }
}
