//! famfs-bench: prints creat throughput through the CLI and the library, bitmap build time and log
//! play time for a full log. Not a test: numbers only. Run with
//! `cargo build --release -p famfs-cli && userspace/target/release/famfs-bench [N]`.

use famfs_alloc::Bitmap;
use famfs_format::{RelPath, DEFAULT_LOG_LEN};
use famfs_media::{Access, Media};
use famfs_meta::{mkfs, Famfs, Layout, MkfsOptions, SYSTEM_UUID_ENV};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    let media = Media::open(&p, Access::ReadWrite).unwrap();
    let su = famfs_meta::local_system_uuid(&famfs_meta::system_uuid_path()).unwrap();
    mkfs(
        &media,
        &MkfsOptions {
            log_len: DEFAULT_LOG_LEN,
            fs_uuid: [1; 16],
            dev_uuid: [2; 16],
            system_uuid: su,
            device_name: name.into(),
        },
    )
    .unwrap();
    p
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = std::env::temp_dir().join(format!("famfs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::env::set_var(SYSTEM_UUID_ENV, dir.join("system_uuid"));
    let famfs = std::env::current_exe().unwrap().with_file_name("famfs");

    // 1. `famfs creat` processes into an image.
    let img = image(&dir, "cli.img", 8 << 30);
    if famfs.is_file() {
        // Process start-up alone (fork + exec + dynamic linking), to separate it from creat's work.
        let t = Instant::now();
        for _ in 0..n {
            assert!(Command::new(&famfs)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap()
                .success());
        }
        let base = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        println!("famfs --version (process start-up baseline): {base:.3} ms per run");
        let t = Instant::now();
        for i in 0..n {
            let st = Command::new(&famfs)
                .args(["creat", "--device"])
                .arg(&img)
                .args(["-s", "1M", &format!("/f{i}")])
                .status()
                .unwrap();
            assert!(st.success());
        }
        let d = t.elapsed();
        let per = d.as_secs_f64() * 1e3 / n as f64;
        println!(
            "famfs creat (one process per file): {n} files in {d:.2?}: {per:.3} ms per creat ({:.3} ms above start-up), {:.0} files/s",
            per - base,
            n as f64 / d.as_secs_f64()
        );
        let t = Instant::now();
        let mut args: Vec<String> =
            vec!["creat".into(), "--device".into(), img.display().to_string()];
        for i in 0..n {
            args.push("-M".into());
            args.push(format!("/m{i},1M"));
        }
        assert!(Command::new(&famfs).args(&args).status().unwrap().success());
        let d = t.elapsed();
        println!(
            "famfs creat -M (one process, {n} files):  {d:.2?}: {:.3} ms per file",
            d.as_secs_f64() * 1e3 / n as f64
        );
    } else {
        println!(
            "(skipping CLI timing: {} not built; run `cargo build --release -p famfs-cli`)",
            famfs.display()
        );
    }

    // 2. Library: one lock per file (what a creat does minus process start-up).
    let mut fs = Famfs::open(&img, Access::ReadWrite).unwrap();
    let t = Instant::now();
    for i in 0..n {
        fs.create_file(
            &RelPath::new(&format!("lib{i}")).unwrap(),
            1 << 20,
            0o644,
            0,
            0,
            Layout::Contiguous,
        )
        .unwrap();
    }
    let d = t.elapsed();
    println!(
        "library create_file (lock + catch-up + alloc + append each): {:.1} us per file",
        d.as_secs_f64() * 1e6 / n as f64
    );

    // 3. A full log of FILE entries (15420 files of 2 MiB on a sparse 40 GiB image).
    let full = image(&dir, "full.img", 40 << 30);
    let mut fs = Famfs::open(&full, Access::ReadWrite).unwrap();
    let cap = fs.log_header().unwrap().geometry().capacity();
    let t = Instant::now();
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
    })
    .unwrap();
    println!(
        "filled the log: {cap} FILE entries appended in {:.2?}",
        t.elapsed()
    );
    let t = Instant::now();
    let fs = Famfs::open(&full, Access::ReadOnly).unwrap();
    println!(
        "log play of a full log ({} entries, namespace + bitmap): {:.2?}",
        fs.played(),
        t.elapsed()
    );
    let extents: Vec<_> = fs
        .namespace()
        .nodes()
        .filter_map(|n| n.file())
        .flat_map(|f| f.fmap.extents().to_vec())
        .collect();
    let t = Instant::now();
    let mut bm = Bitmap::new(fs.superblock().device_size, fs.superblock().data_offset());
    for e in &extents {
        bm.mark(e).unwrap();
    }
    println!(
        "bitmap build for a full log ({} extents): {:.2?}",
        extents.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let e = bm.alloc_contiguous(1 << 20).unwrap();
    println!(
        "first-fit allocation on that bitmap: {:.2?} (got offset {:#x})",
        t.elapsed(),
        e.offset
    );
    let _ = std::fs::remove_dir_all(&dir);
}
