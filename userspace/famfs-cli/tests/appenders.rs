//! Concurrent appenders over every path at once (issue 22): `famfs creat`/`famfs mkdir` through a
//! fallback mount, `famfs --device IMAGE` on the mounted image, and mkdir(2)/open(O_CREAT) on the
//! mount from this program; then, unmounted, `--device` appenders by three names of the image (its
//! path, a symlink, a hard link) and appenders in this process. Oracle: every operation that
//! reported success is in the log as played from the image afterwards, every one that failed said
//! why (the `--device` ones name the mount point, the FUSE ones get EPERM), and `famfs fsck` of the
//! image is clean. Last, two masters: a second "host" (another lock directory) appends while this
//! one holds its lock, and this one's append must fail saying another writer appended; and
//! `mkfs.famfs -f` waits for an appender of this host before rewriting the log. `famfs devadd`
//! offline on the mounted image is refused naming the mount, online through the mount it works.
//!
//! Needs root, /dev/fuse and fusermount3 (as famfs-fused/tests/mount.rs).

use famfs_meta::{Access, Famfs};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

const FAMFS: &str = env!("CARGO_BIN_EXE_famfs");
const MKFS: &str = env!("CARGO_BIN_EXE_mkfs-famfs");
/// Operations per worker.
const OPS: usize = 40;

/// One operation and how it ended.
#[derive(Debug, Clone)]
struct Outcome {
    /// The path in the file system ("" for none).
    path: String,
    ok: bool,
    /// Why it failed (stderr, errno).
    why: String,
    /// What a failure must say.
    want: Option<String>,
}

type Log = Arc<Mutex<Vec<Outcome>>>;

fn famfs(args: &[&str]) -> (bool, String) {
    let o = Command::new(FAMFS).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn record(log: &Log, path: String, (ok, why): (bool, String), want: Option<String>) {
    log.lock().unwrap().push(Outcome {
        path,
        ok,
        why,
        want,
    });
}

/// What the log holds when played from the image, and whether fsck is clean.
fn check(img: &Path, log: &Log) -> Vec<String> {
    let fs = Famfs::open(img, Access::ReadOnly).unwrap();
    let mut bad = Vec::new();
    let outcomes = log.lock().unwrap();
    let (ok, failed) = (
        outcomes.iter().filter(|o| o.ok).count(),
        outcomes.iter().filter(|o| !o.ok).count(),
    );
    println!(
        "{} operations: {ok} succeeded, {failed} failed; the log holds {} entries",
        outcomes.len(),
        fs.played()
    );
    for o in outcomes.iter() {
        if o.ok && fs.namespace().resolve(&o.path).is_none() {
            bad.push(format!(
                "/{}: reported success, missing from the log",
                o.path
            ));
        }
        if !o.ok {
            let said = o.want.as_ref().is_none_or(|w| o.why.contains(w.as_str()))
                && !o.why.trim().is_empty();
            if !said {
                bad.push(format!(
                    "/{}: failed without saying why (want {:?}): {:?}",
                    o.path, o.want, o.why
                ));
            }
        }
        if o.ok && o.want.is_some() {
            bad.push(format!(
                "/{}: succeeded where it must be refused ({:?})",
                o.path, o.want
            ));
        }
    }
    if let Some(p) = fs.problems().iter().find(|p| p.is_damage()) {
        bad.push(format!("log damage: {p}"));
    }
    let (fsck_ok, err) = famfs(&["--device", img.to_str().unwrap(), "fsck"]);
    if !fsck_ok {
        bad.push(format!("famfs fsck failed: {err}"));
    }
    bad
}

fn is_mounted(mnt: &Path) -> bool {
    famfs_media::mounts::mount_at(mnt)
        .is_some_and(|m| m.fstype == famfs_media::mounts::FAMFS_FSTYPE)
}

#[test]
fn concurrent_appenders_on_every_path_lose_nothing() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: this test needs FUSE (modprobe fuse)"
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a file system and must run as root"
    );
    // On tmpfs when there is one: appends sync their pages, a disk write each elsewhere.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let d = dir.path();
    // Set before any thread starts; the servers and the CLI processes inherit them.
    std::env::set_var("FAMFS_SYSTEM_UUID_FILE", d.join("system_uuid"));
    std::env::set_var("FAMFS_LOCK_DIR", d.join("locks"));
    let img = d.join("img");
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    assert!(Command::new(MKFS)
        .arg(&img)
        .output()
        .unwrap()
        .status
        .success());

    // ---- 1. mounted (fallback mode, server in this process) ----
    let mut opts = famfs_fused::ServerOptions::new(img.clone(), mnt.clone());
    opts.force_fallback = true;
    opts.threads = 2;
    let session = famfs_fused::Server::open(&opts)
        .unwrap()
        .mount(&opts)
        .unwrap();
    let server = std::thread::spawn(move || session.run());
    assert!(is_mounted(&mnt), "the mount is not up");
    let m = mnt.to_str().unwrap().to_string();
    let mut bad = Vec::new();
    // devadd: offline on the mounted primary is refused naming the mount; online through it works.
    let (sec1, sec2) = (d.join("sec1"), d.join("sec2"));
    for s in [&sec1, &sec2] {
        std::fs::File::create(s).unwrap().set_len(4 << 30).unwrap();
    }
    let (ok, err) = famfs(&["devadd", img.to_str().unwrap(), sec1.to_str().unwrap()]);
    if ok || !err.contains(&m) {
        bad.push(format!(
            "devadd on the mounted image: want a refusal naming {m}, got ok={ok}: {err}"
        ));
    }
    let (ok, err) = famfs(&["devadd", &m, sec2.to_str().unwrap()]);
    if !ok {
        bad.push(format!("devadd through the mount failed: {err}"));
    }
    let log: Log = Arc::default();
    let mut workers = Vec::new();
    for w in 0..3 {
        let (log, m) = (log.clone(), m.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0..OPS {
                if i % 4 == 3 {
                    let p = format!("mdir{w}_{i}");
                    record(
                        &log,
                        p.clone(),
                        famfs(&["mkdir", &format!("{m}/{p}")]),
                        None,
                    );
                } else {
                    let p = format!("mfile{w}_{i}");
                    record(
                        &log,
                        p.clone(),
                        famfs(&["creat", "-s", "4k", &format!("{m}/{p}")]),
                        None,
                    );
                }
            }
        }));
    }
    // The image by its own path and by a symlink: both are the mounted device.
    let link = d.join("link");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    for (w, dev) in [img.clone(), link.clone()].into_iter().enumerate() {
        let (log, m) = (log.clone(), m.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0..OPS {
                let p = format!("dfile{w}_{i}");
                let r = famfs(&[
                    "--device",
                    dev.to_str().unwrap(),
                    "creat",
                    "-s",
                    "4k",
                    &format!("/{p}"),
                ]);
                // Refused while mounted, naming the mount point.
                record(&log, p, r, Some(m.clone()));
            }
        }));
    }
    for w in 0..2 {
        let (log, mnt) = (log.clone(), mnt.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0..OPS {
                let p = format!("fuse{w}_{i}");
                let r = if i % 2 == 0 {
                    std::fs::create_dir(mnt.join(&p)).map(drop)
                } else {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(mnt.join(&p))
                        .map(drop)
                };
                // famfs-fused refuses new names: the namespace changes only through the log.
                let r = r.map_err(|e| format!("{e} (errno {:?})", e.raw_os_error()));
                record(
                    &log,
                    p,
                    (r.is_ok(), r.err().unwrap_or_default()),
                    Some(format!("errno Some({})", libc::EPERM)),
                );
            }
        }));
    }
    for t in workers {
        t.join().unwrap();
    }
    assert!(Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    server.join().unwrap().unwrap();
    bad.extend(check(&img, &log));
    if Famfs::open(&img, Access::ReadOnly).unwrap().devices().len() != 2 {
        bad.push("the online devadd is not in the log".into());
    }

    // ---- 2. unmounted: three names of the image, and this process ----
    let hard = d.join("hard");
    std::fs::hard_link(&img, &hard).unwrap();
    let log2: Log = Arc::default();
    let mut workers = Vec::new();
    for (w, dev) in [img.clone(), link, hard].into_iter().enumerate() {
        let log = log2.clone();
        workers.push(std::thread::spawn(move || {
            for i in 0..OPS {
                let p = format!("u{w}_{i}");
                record(
                    &log,
                    p.clone(),
                    famfs(&[
                        "--device",
                        dev.to_str().unwrap(),
                        "creat",
                        "-s",
                        "4k",
                        &format!("/{p}"),
                    ]),
                    None,
                );
            }
        }));
    }
    {
        let (log, img) = (log2.clone(), img.clone());
        workers.push(std::thread::spawn(move || {
            let mut fs = Famfs::open(&img, Access::ReadWrite).unwrap();
            for i in 0..OPS {
                let p = format!("lib{i}");
                let r = fs.mkdir(&famfs_format::RelPath::new(&p).unwrap(), 0o755, 0, 0);
                record(
                    &log,
                    p,
                    (
                        r.is_ok(),
                        r.err().map(|e| e.to_string()).unwrap_or_default(),
                    ),
                    None,
                );
            }
        }));
    }
    for t in workers {
        t.join().unwrap();
    }
    bad.extend(check(&img, &log2));

    // ---- 3. two masters: another "host" (its own lock directory, the same system uuid) appends
    // while this one holds its lock; this host's append must fail saying so, not build on it ----
    let mut fs = Famfs::open(&img, Access::ReadWrite).unwrap();
    let r = fs.with_log_lock(|a| {
        let mut other = Command::new(FAMFS)
            .args(["--device", img.to_str().unwrap(), "mkdir", "/other-host"])
            .env("FAMFS_LOCK_DIR", d.join("locks-of-host-2"))
            .spawn()
            .unwrap();
        // Another host does not share this host's lock: it must not wait for it.
        let t = std::time::Instant::now();
        let st = loop {
            if let Some(st) = other.try_wait().unwrap() {
                break Some(st);
            }
            if t.elapsed() > std::time::Duration::from_secs(10) {
                let _ = other.kill();
                let _ = other.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let other_ok = st.is_some_and(|s| s.success());
        Ok((
            other_ok,
            a.mkdir(
                &famfs_format::RelPath::new("this-host").unwrap(),
                0o755,
                0,
                0,
            ),
        ))
    });
    let r = match r {
        Ok((false, _)) => {
            bad.push(
                "two masters: the second master's append failed or waited for this host's lock"
                    .into(),
            );
            Ok(0)
        }
        Ok((true, r)) => r,
        Err(e) => Err(e),
    };
    match r {
        Err(e)
            if e.to_string()
                .contains("another writer appended to this log") =>
        {
            println!("two masters: {e}")
        }
        Err(e) => bad.push(format!(
            "two masters: the append failed for another reason: {e}"
        )),
        Ok(_) => bad.push(
            "two masters: this host appended after another master's entry without noticing".into(),
        ),
    }
    drop(fs);
    let fs = Famfs::open(&img, Access::ReadOnly).unwrap();
    if fs.namespace().resolve("other-host").is_none()
        || fs.namespace().resolve("this-host").is_some()
    {
        bad.push(
            "two masters: the log should hold the other host's entry and not this host's".into(),
        );
    }
    if !famfs(&["--device", img.to_str().unwrap(), "fsck"]).0 {
        bad.push("two masters: fsck not clean".into());
    }
    // ---- 4. mkfs -f over the file system waits for an appender of this host to finish ----
    let mut fs = Famfs::open(&img, Access::ReadWrite).unwrap();
    let waited = fs.with_log_lock(|a| {
        let mut mkfs = Command::new(MKFS)
            .args(["-f", img.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let waited = mkfs.try_wait().unwrap().is_none();
        a.mkdir(
            &famfs_format::RelPath::new("before-mkfs").unwrap(),
            0o755,
            0,
            0,
        )?;
        Ok((waited, mkfs))
    });
    match waited {
        Ok((waited, mut mkfs)) => {
            assert!(mkfs.wait().unwrap().success(), "mkfs -f failed");
            if !waited {
                bad.push(
                    "mkfs -f rewrote the log while an appender of this host held the append lock"
                        .into(),
                );
            }
            match fs.mkdir(&famfs_format::RelPath::new("after-mkfs").unwrap(), 0o755, 0, 0) {
                Err(famfs_meta::MetaError::SuperblockChanged) => {}
                r => bad.push(format!("an append after mkfs -f over the file system: want SuperblockChanged, got {r:?}")),
            }
        }
        Err(e) => bad.push(format!("the append before mkfs -f failed: {e}")),
    }
    for b in &bad {
        println!("not ok: {b}");
    }
    assert!(
        bad.is_empty(),
        "{} problems:\n{}",
        bad.len(),
        bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}
