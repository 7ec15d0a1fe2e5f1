//! Host-side figures at real speed: famfs creat/mkdir through the CLI and the library, log play,
//! and a fallback-mode FUSE mount of an image (mount time, open/stat rates, new-file visibility,
//! and its data path against the image itself).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use famfs_format::{RelPath, DEFAULT_LOG_LEN};
use famfs_media::{Access, Media};
use famfs_meta::{mkfs, Famfs, Layout, MkfsOptions, SYSTEM_UUID_ENV};

use crate::data::{self, DataParams, Source};
use crate::report::{Record, Target};

pub struct MetaParams {
    /// Operations per repetition (files per creat run, opens per rate run...).
    pub n: usize,
    pub reps: usize,
    pub depth: usize,
    /// Size of the fallback data-path file, bytes (0: skip the host data path).
    pub data_size: u64,
    pub data_bytes: u64,
    pub data_reps: usize,
    pub bin_dir: PathBuf,
    pub workdir: PathBuf,
}

fn rec(path: &str, key: &str, figure: String, unit: &str, higher: bool) -> Record {
    Record::new(
        "meta".into(),
        path.into(),
        key.into(),
        figure,
        unit,
        higher,
        "host".into(),
    )
}

fn image(dir: &Path, name: &str, size: u64) -> Result<PathBuf> {
    let p = dir.join(name);
    File::create(&p)?.set_len(size)?;
    let media = Media::open(&p, Access::ReadWrite)?;
    let su = famfs_meta::local_system_uuid(&famfs_meta::system_uuid_path())?;
    mkfs(
        &media,
        &MkfsOptions {
            log_len: DEFAULT_LOG_LEN,
            fs_uuid: [1; 16],
            dev_uuid: [2; 16],
            system_uuid: su,
            device_name: name.into(),
        },
    )?;
    Ok(p)
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

pub(crate) fn is_mounted(mpt: &Path) -> bool {
    famfs_media::mounts::is_mount_point(mpt)
}

/// Mounts `img` in fallback mode; returns the time until the mount answered (ms).
fn mount(p: &MetaParams, img: &Path, mpt: &Path, extra: &[&str]) -> Result<f64> {
    std::fs::create_dir_all(mpt)?;
    let t = Instant::now();
    run_ok(
        Command::new(p.bin_dir.join("famfs-fused"))
            .arg("--fallback")
            .args(extra)
            .arg(img)
            .arg(mpt),
    )?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

fn umount(mpt: &Path) -> Result<()> {
    run_ok(Command::new("fusermount3").arg("-u").arg(mpt))?;
    let t = Instant::now();
    while is_mounted(mpt) {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("{} still mounted 10 s after fusermount3 -u", mpt.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Runs `f` `reps` times; each run returns one sample.
fn samples(reps: usize, mut f: impl FnMut(usize) -> Result<f64>) -> Result<Vec<f64>> {
    (0..reps).map(&mut f).collect()
}

fn emit_result(mut r: Record, s: Result<Vec<f64>>, emit: &mut dyn FnMut(Record)) {
    eprintln!("famfs-perf: meta {} {}", r.path, r.key);
    match s {
        Ok(v) => r.samples = v,
        Err(e) => r.not_measured = Some(format!("{e:#}")),
    }
    emit(r);
}

pub fn run(p: &MetaParams, emit: &mut dyn FnMut(Record)) -> Result<()> {
    let dir = p.workdir.join(format!("famfs-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::env::set_var(SYSTEM_UUID_ENV, dir.join("system_uuid"));
    let res = run_in(p, &dir, emit);
    for m in ["mnt", "mnt-full", "mnt-t0"] {
        let mpt = dir.join(m);
        if is_mounted(&mpt) {
            let _ = umount(&mpt);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    res
}

fn run_in(p: &MetaParams, dir: &Path, emit: &mut dyn FnMut(Record)) -> Result<()> {
    let famfs = p.bin_dir.join("famfs");
    if !famfs.is_file() {
        bail!("{} is not built (cargo build --release)", famfs.display());
    }
    let img = image(dir, "meta.img", 8 << 30)?;
    let n = p.n;
    let lib_creat = "meta/library/creat";

    // Process start-up alone, to separate it from creat's own work.
    let r = rec(
        "cli",
        "startup",
        "famfs --version (process start-up)".into(),
        "µs",
        false,
    );
    emit_result(
        r,
        samples(p.reps, |_| {
            let t = Instant::now();
            for _ in 0..n {
                run_ok(Command::new(&famfs).arg("--version"))?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        }),
        emit,
    );

    let mut r = rec(
        "cli",
        "creat",
        "famfs creat, one process per file".into(),
        "µs",
        false,
    );
    r.target = Some(Target::Below(1000.0));
    r.baseline = Some(lib_creat.into());
    emit_result(
        r,
        samples(p.reps, |rep| {
            let t = Instant::now();
            for i in 0..n {
                run_ok(
                    Command::new(&famfs)
                        .args(["creat", "--device"])
                        .arg(&img)
                        .args(["-s", "1M", &format!("/p{rep}_{i}")]),
                )?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        }),
        emit,
    );

    let mut r = rec(
        "cli",
        "creat-M",
        format!("famfs creat -M, {n} files per process, per file"),
        "µs",
        false,
    );
    r.target = Some(Target::Below(1000.0));
    r.baseline = Some(lib_creat.into());
    emit_result(
        r,
        samples(p.reps, |rep| {
            let mut args: Vec<String> =
                vec!["creat".into(), "--device".into(), img.display().to_string()];
            for i in 0..n {
                args.push("-M".into());
                args.push(format!("/m{rep}_{i},1M"));
            }
            let t = Instant::now();
            run_ok(Command::new(&famfs).args(&args))?;
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        }),
        emit,
    );

    let mut r = rec(
        "library",
        "creat",
        "library create_file (lock + catch-up + alloc + append)".into(),
        "µs",
        false,
    );
    r.target = Some(Target::Below(1000.0));
    emit_result(
        r,
        samples(p.reps, |rep| {
            let mut fs = Famfs::open(&img, Access::ReadWrite)?;
            let t = Instant::now();
            for i in 0..n {
                fs.create_file(
                    &RelPath::new(&format!("lib{rep}_{i}"))?,
                    1 << 20,
                    0o644,
                    0,
                    0,
                    Layout::Contiguous,
                )?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        }),
        emit,
    );

    let d = p.depth;
    // Short names: famfs paths are at most 79 bytes.
    let deep = |rep: usize, tag: &str| {
        (0..d)
            .map(|l| {
                if l == 0 {
                    format!("{tag}{rep}")
                } else {
                    format!("{l}")
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut r = rec(
        "cli",
        "mkdir-p",
        format!("famfs mkdir -p, depth {d} (one process)"),
        "µs",
        false,
    );
    r.baseline = Some("meta/library/mkdir-p".into());
    emit_result(
        r,
        samples(p.reps, |rep| {
            let t = Instant::now();
            run_ok(
                Command::new(&famfs)
                    .args(["mkdir", "-p", "--device"])
                    .arg(&img)
                    .arg(format!("/{}", deep(rep, "c"))),
            )?;
            Ok(t.elapsed().as_secs_f64() * 1e6)
        }),
        emit,
    );
    emit_result(
        rec(
            "library",
            "mkdir-p",
            format!("library mkdir_p, depth {d}"),
            "µs",
            false,
        ),
        samples(p.reps, |rep| {
            let mut fs = Famfs::open(&img, Access::ReadWrite)?;
            let t = Instant::now();
            fs.mkdir_p(&RelPath::new(&deep(rep, "l"))?, 0o755, 0, 0)?;
            Ok(t.elapsed().as_secs_f64() * 1e6)
        }),
        emit,
    );

    // Log play: an empty log and a full one (every entry a file).
    let empty = image(dir, "empty.img", 8 << 30)?;
    emit_result(
        rec(
            "library",
            "logplay-empty",
            "log play, empty log (open + play)".into(),
            "ms",
            false,
        ),
        samples(p.reps, |_| {
            let t = Instant::now();
            let fs = Famfs::open(&empty, Access::ReadOnly)?;
            std::hint::black_box(fs.played());
            Ok(t.elapsed().as_secs_f64() * 1e3)
        }),
        emit,
    );
    let full = image(dir, "full.img", 40 << 30)?;
    let cap = {
        let mut fs = Famfs::open(&full, Access::ReadWrite)?;
        let cap = fs.log_header()?.geometry().capacity();
        fs.with_log_lock(|a| {
            for i in 0..cap {
                a.create_file(
                    &RelPath::new(&format!("f{i}")).unwrap(),
                    2 << 20,
                    0o644,
                    0,
                    0,
                    Layout::Contiguous,
                )?;
            }
            Ok(())
        })?;
        cap
    };
    emit_result(
        rec(
            "library",
            "logplay-full",
            format!("log play, full log ({cap} entries)"),
            "ms",
            false,
        ),
        samples(p.reps, |_| {
            let t = Instant::now();
            let fs = Famfs::open(&full, Access::ReadOnly)?;
            if fs.played() != cap {
                bail!("played {} of {cap} entries", fs.played());
            }
            Ok(t.elapsed().as_secs_f64() * 1e3)
        }),
        emit,
    );

    // The allocation bitmap of the full log (what every creat builds after its log play), and
    // one first-fit allocation on it (formerly famfs-cli's famfs-bench).
    let fs = Famfs::open(&full, Access::ReadOnly)?;
    let extents: Vec<_> = fs
        .namespace()
        .nodes()
        .filter_map(|n| n.file())
        .flat_map(|f| f.fmap.extents().to_vec())
        .collect();
    let (dev_size, data_off) = (fs.superblock().device_size, fs.superblock().data_offset());
    drop(fs);
    let build = |extents: &[famfs_format::Extent]| -> Result<famfs_alloc::Bitmap> {
        let mut bm = famfs_alloc::Bitmap::new(dev_size, data_off);
        for e in extents {
            bm.mark(e)
                .map_err(|e| anyhow::anyhow!("bitmap mark: {e}"))?;
        }
        Ok(bm)
    };
    emit_result(
        rec(
            "library",
            "bitmap-full",
            format!(
                "allocation bitmap of the full log ({} extents)",
                extents.len()
            ),
            "ms",
            false,
        ),
        samples(p.reps, |_| {
            let t = Instant::now();
            std::hint::black_box(build(&extents)?);
            Ok(t.elapsed().as_secs_f64() * 1e3)
        }),
        emit,
    );
    emit_result(
        rec(
            "library",
            "alloc-full",
            "one first-fit 1 MiB allocation on that bitmap".into(),
            "µs",
            false,
        ),
        samples(p.reps, |_| {
            let mut bm = build(&extents)?;
            let t = Instant::now();
            std::hint::black_box(
                bm.alloc_contiguous(1 << 20)
                    .map_err(|e| anyhow::anyhow!("alloc: {e}"))?,
            );
            Ok(t.elapsed().as_secs_f64() * 1e6)
        }),
        emit,
    );

    // Fallback-mode FUSE mounts of the images.
    let mpt = dir.join("mnt");
    let mpt_full = dir.join("mnt-full");
    for (key, im, mp, what) in [
        ("mount-empty", &empty, &mpt_full, "empty log".to_string()),
        (
            "mount-full",
            &full,
            &mpt_full,
            format!("full log, {cap} entries"),
        ),
    ] {
        emit_result(
            rec(
                "fallback",
                key,
                format!("famfs-fused --fallback mount, {what} (until it answers)"),
                "ms",
                false,
            ),
            samples(p.reps, |_| {
                let ms = mount(p, im, mp, &[])?;
                umount(mp)?;
                Ok(ms)
            }),
            emit,
        );
    }

    // Rates through a mount of the image holding the creat files (default 1 s attr/entry cache),
    // and with caching off (-t 0).
    let names: Vec<String> = (0..n).map(|i| format!("lib0_{i}")).collect();
    for (tag, mp, extra) in [
        ("", &mpt, vec![]),
        ("-t0", &dir.join("mnt-t0"), vec!["-t", "0"]),
    ] {
        let label = if tag.is_empty() {
            "default 1 s cache"
        } else {
            "no attr/entry cache (-t 0)"
        };
        let up = mount(p, &img, mp, &extra);
        let reason = up.as_ref().err().map(|e| format!("{e:#}"));
        let with_mount = |f: &dyn Fn() -> Result<f64>| -> Result<Vec<f64>> {
            if let Some(r) = &reason {
                return Err(anyhow!("{r}"));
            }
            samples(p.reps, |_| f())
        };
        let mut r = rec(
            "fallback",
            &format!("open-close{tag}"),
            format!("open + close through the mount, {label}"),
            "ops/s",
            true,
        );
        r.baseline = None;
        emit_result(
            r,
            with_mount(&|| {
                let t = Instant::now();
                for nm in &names {
                    drop(File::open(mp.join(nm))?);
                }
                Ok(n as f64 / t.elapsed().as_secs_f64())
            }),
            emit,
        );
        emit_result(
            rec(
                "fallback",
                &format!("stat{tag}"),
                format!("stat through the mount, {label}"),
                "ops/s",
                true,
            ),
            with_mount(&|| {
                let t = Instant::now();
                for nm in &names {
                    std::fs::metadata(mp.join(nm))?;
                }
                Ok(n as f64 / t.elapsed().as_secs_f64())
            }),
            emit,
        );
        if tag.is_empty() {
            let counter = std::cell::Cell::new(0usize);
            emit_result(
                rec(
                    "fallback",
                    "new-file-visible",
                    "new file created in the image: until stat through the mount sees it".into(),
                    "µs",
                    false,
                ),
                with_mount(&|| {
                    let i = counter.get();
                    counter.set(i + 1);
                    let name = format!("vis{i}");
                    let mut fs = Famfs::open(&img, Access::ReadWrite)?;
                    fs.create_file(
                        &RelPath::new(&name)?,
                        1 << 20,
                        0o644,
                        0,
                        0,
                        Layout::Contiguous,
                    )?;
                    let t = Instant::now();
                    while std::fs::metadata(mp.join(&name)).is_err() {
                        if t.elapsed() > Duration::from_secs(10) {
                            bail!("{name} not visible after 10 s");
                        }
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    Ok(t.elapsed().as_secs_f64() * 1e6)
                }),
                emit,
            );
        }
        if up.is_ok() {
            umount(mp)?;
        }
    }

    if p.data_size > 0 {
        host_data(p, &img, &mpt, emit)?;
    }
    Ok(())
}

/// The fallback data path at real speed: a file in a fallback mount against the same bytes of
/// the image file read directly (its page cache: the ceiling on the host).
fn host_data(p: &MetaParams, img: &Path, mpt: &Path, emit: &mut dyn FnMut(Record)) -> Result<()> {
    let size = p.data_size.div_ceil(data::PMD) * data::PMD;
    let offset = {
        let mut fs = Famfs::open(img, Access::ReadWrite)?;
        let ino = fs.create_file(
            &RelPath::new("bench-data")?,
            size,
            0o644,
            0,
            0,
            Layout::Contiguous,
        )?;
        let node = fs
            .namespace()
            .get(ino)
            .ok_or_else(|| anyhow!("new file not in namespace"))?;
        let ext = node
            .file()
            .ok_or_else(|| anyhow!("not a file"))?
            .fmap
            .extents()
            .to_vec();
        if ext.len() != 1 {
            bail!("expected one extent, got {}", ext.len());
        }
        ext[0].offset
    };
    let base = DataParams {
        label: "image".into(),
        env: "host".into(),
        window: size,
        touch_size: size,
        bytes: p.data_bytes,
        reps: p.data_reps,
        touch_reps: p.data_reps.min(3),
        threads: vec![2],
        famfs: false,
        prefix: "host-".into(),
        ceiling: "image".into(),
        round: None,
    };
    let img_src = Source::Device {
        path: img.to_path_buf(),
        offset,
        rw: true,
    };
    data::run(&img_src, &base, emit);
    let fb = DataParams {
        label: "fallback".into(),
        ..base
    };
    match mount(p, img, mpt, &[]) {
        Ok(_) => {
            data::run(
                &Source::File {
                    path: mpt.join("bench-data"),
                },
                &fb,
                emit,
            );
            umount(mpt)?;
        }
        Err(e) => {
            for (mut r, _, _) in data::data_records(&fb, true) {
                r.not_measured = Some(format!("mount failed: {e:#}"));
                emit(r);
            }
        }
    }
    Ok(())
}
