//! End-to-end tests of famfs-fused in fallback mode on image files (needs root, /dev/fuse and
//! fusermount3; the tests fail, not skip, when those are missing).

mod common;

use common::{format_image, is_mounted, unmount, wait_until, BIN};
use famfs_format::{RelPath, DEFAULT_LOG_LEN};
use famfs_media::{Access, Media};
use famfs_meta::{Famfs, Layout};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const M2: u64 = 2 << 20;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn rp(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// A mount point ([`common::Mount`], not mounted yet) and an image holding `a/small` (1000 bytes) and
/// `a/b/big` (5 x 2 MiB + 17 bytes, mode 0640, owner 12:34), each filled with its [`pattern`].
fn fixture() -> common::Mount {
    let m = common::Mount::new();
    let mut fs = Famfs::open(&m.img, Access::ReadWrite).unwrap();
    fs.mkdir_p(&rp("a/b"), 0o755, 0, 0).unwrap();
    let f1 = fs
        .create_file(&rp("a/small"), 1000, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
    fs.write_data(f1, 0, &pattern(1, 1000)).unwrap();
    let f2 = fs
        .create_file(
            &rp("a/b/big"),
            5 * M2 + 17,
            0o640,
            12,
            34,
            Layout::Contiguous,
        )
        .unwrap();
    fs.write_data(f2, 0, &pattern(2, (5 * M2 + 17) as usize))
        .unwrap();
    m
}

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error")
        .raw_os_error()
        .unwrap_or(0)
}

#[test]
fn serves_tree_data_and_refuses_namespace_changes() {
    let fx = fixture();
    let out = fx.mount_daemon(&[]);
    assert!(
        out.contains("role: master") && out.contains("mode: fallback"),
        "{out}"
    );
    // /proc/mounts: DEVICE MPT fuse.famfs
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == fx.mnt.to_str())
        .unwrap();
    let f: Vec<_> = line.split_whitespace().collect();
    assert_eq!((f[0], f[2]), (fx.img.to_str().unwrap(), "fuse.famfs"));
    assert!(
        f[3].contains("default_permissions") && f[3].contains("allow_other"),
        "{line}"
    );

    // Tree and attributes.
    let mut root: Vec<_> = std::fs::read_dir(&fx.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    root.sort();
    assert_eq!(root, [".meta", "a"]);
    let mut a: Vec<_> = std::fs::read_dir(fx.p("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    a.sort();
    assert_eq!(a, ["b", "small"]);
    let big = std::fs::metadata(fx.p("a/b/big")).unwrap();
    assert_eq!(big.len(), 5 * M2 + 17);
    assert_eq!((big.mode() & 0o7777, big.uid(), big.gid()), (0o640, 12, 34));
    assert!(std::fs::metadata(fx.p("a/b")).unwrap().is_dir());
    let sb = std::fs::metadata(fx.p(".meta/.superblock")).unwrap();
    assert_eq!((sb.len(), sb.permissions().mode() & 0o777), (M2, 0o444));
    let log = std::fs::metadata(fx.p(".meta/.log")).unwrap();
    assert_eq!(
        (log.len(), log.permissions().mode() & 0o777),
        (DEFAULT_LOG_LEN, 0o644)
    );

    // statfs: famfs capacity and free space, not the host's.
    let sv = nix::sys::statvfs::statvfs(&fx.mnt).unwrap();
    let fs = Famfs::open(&fx.img, Access::ReadOnly).unwrap();
    assert_eq!(sv.blocks() * sv.fragment_size(), 8 << 30);
    assert_eq!(
        sv.blocks_free() * sv.fragment_size(),
        fs.bitmap().free_bytes()
    );
    drop(fs);

    // Data reads equal what was written into the image.
    assert_eq!(std::fs::read(fx.p("a/small")).unwrap(), pattern(1, 1000));
    assert_eq!(
        std::fs::read(fx.p("a/b/big")).unwrap(),
        pattern(2, (5 * M2 + 17) as usize)
    );
    let mut sbb = vec![0u8; 8];
    File::open(fx.p(".meta/.superblock"))
        .unwrap()
        .read_exact(&mut sbb)
        .unwrap();
    assert_eq!(
        u64::from_le_bytes(sbb.try_into().unwrap()),
        famfs_format::SB_MAGIC
    );

    // Writes land in the image; they never extend the file.
    {
        let f = OpenOptions::new()
            .write(true)
            .open(fx.p("a/b/big"))
            .unwrap();
        f.write_all_at(b"through the mount", M2 + 3).unwrap();
        assert_eq!(
            f.write_at(b"0123456789", 5 * M2 + 10).unwrap(),
            7,
            "short write at the end"
        );
        assert_eq!(errno(f.write_at(b"x", 5 * M2 + 17)), libc::EFBIG);
        assert_eq!(errno(f.write_at(b"x", 6 * M2)), libc::EFBIG);
    }
    let fs = Famfs::open(&fx.img, Access::ReadOnly).unwrap();
    let ino = fs.namespace().resolve("a/b/big").unwrap();
    let mut buf = vec![0u8; 17];
    fs.read_data(ino, M2 + 3, &mut buf).unwrap();
    assert_eq!(&buf, b"through the mount");
    let mut tail = vec![0u8; 7];
    fs.read_data(ino, 5 * M2 + 10, &mut tail).unwrap();
    assert_eq!(&tail, b"0123456");
    assert_eq!(
        std::fs::metadata(fx.p("a/b/big")).unwrap().len(),
        5 * M2 + 17
    );
    drop(fs);

    // Refusals (documented in Documentation/fuse-server.md): EPERM for namespace and size changes.
    assert_eq!(errno(File::create(fx.p("a/new"))), libc::EPERM);
    assert_eq!(errno(std::fs::create_dir(fx.p("a/newdir"))), libc::EPERM);
    assert_eq!(errno(std::fs::remove_file(fx.p("a/small"))), libc::EPERM);
    assert_eq!(errno(std::fs::remove_dir(fx.p("a/b"))), libc::EPERM);
    assert_eq!(
        errno(std::fs::rename(fx.p("a/small"), fx.p("a/renamed"))),
        libc::EPERM
    );
    assert_eq!(
        errno(std::fs::hard_link(fx.p("a/small"), fx.p("a/link"))),
        libc::EPERM
    );
    assert_eq!(
        errno(std::os::unix::fs::symlink("small", fx.p("a/sym"))),
        libc::EPERM
    );
    let f = OpenOptions::new()
        .write(true)
        .open(fx.p("a/small"))
        .unwrap();
    assert_eq!(errno(f.set_len(10)), libc::EPERM);
    // What would change nothing succeeds (libpmem's pmem_map_file makes these calls): a truncate
    // to the file's own size and an fallocate inside it; past the end is EPERM, and modes that
    // would change the allocation are not offered. The bytes stay as they were.
    f.set_len(1000).unwrap();
    let fallocate =
        |offset, len, mode| nix::fcntl::fallocate(&f, mode, offset, len).map_err(|e| e as i32);
    use nix::fcntl::FallocateFlags as Fl;
    assert_eq!(fallocate(0, 1000, Fl::empty()), Ok(()));
    assert_eq!(fallocate(100, 10, Fl::FALLOC_FL_KEEP_SIZE), Ok(()));
    assert_eq!(fallocate(0, 1001, Fl::empty()), Err(libc::EPERM));
    assert_eq!(
        fallocate(0, 10, Fl::FALLOC_FL_PUNCH_HOLE | Fl::FALLOC_FL_KEEP_SIZE),
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(std::fs::metadata(fx.p("a/small")).unwrap().len(), 1000);
    assert_eq!(std::fs::read(fx.p("a/small")).unwrap(), pattern(1, 1000));
    assert_eq!(
        errno(
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(fx.p("a/small"))
        ),
        libc::EPERM
    );
    assert_eq!(
        errno(std::fs::set_permissions(
            fx.p("a/small"),
            std::fs::Permissions::from_mode(0o600)
        )),
        libc::EPERM
    );
    assert_eq!(
        errno(
            OpenOptions::new()
                .write(true)
                .open(fx.p(".meta/.superblock"))
        ),
        libc::EROFS
    );
    assert_eq!(std::fs::metadata(fx.p("a/small")).unwrap().len(), 1000);

    // A file created while mounted appears without remount (lookup miss re-plays). Appends go
    // through the mount: with the image's own path they are refused, naming the mount point.
    let mut fs = Famfs::open(&fx.mnt, Access::ReadWrite).unwrap();
    fs.create_file(&rp("a/later"), 4096, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
    fs.mkdir(&rp("newdir"), 0o755, 0, 0).unwrap();
    drop(fs);
    let mut dev = Famfs::open(&fx.img, Access::ReadWrite).unwrap();
    let err = dev
        .mkdir(&rp("refused"), 0o755, 0, 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("mounted at {}", fx.mnt.display())),
        "{err}"
    );
    let n = dev.namespace().resolve("a/later").unwrap();
    dev.write_data(n, 0, b"late data").unwrap();
    drop(dev);
    let mut later = vec![0u8; 9];
    File::open(fx.p("a/later"))
        .unwrap()
        .read_exact(&mut later)
        .unwrap();
    assert_eq!(&later, b"late data");
    assert!(
        std::fs::read_dir(&fx.mnt)
            .unwrap()
            .any(|e| e.unwrap().file_name() == "newdir"),
        "readdir re-plays"
    );
    // The explicit trigger `famfs logplay MPT` uses: read the logplay xattr of the root.
    let v = xattr(&fx.mnt, "user.famfs.logplay").unwrap();
    assert!(
        v.contains("played 0 new entries") && v.contains("6 entries in the log"),
        "{v}"
    );
    assert_eq!(
        xattr(&fx.mnt, "user.famfs.mode").unwrap().trim(),
        "fallback master"
    );
    assert!(xattr(&fx.mnt, "user.nope").is_none());

    // flock on .meta/.log through the mount: exclusive among processes of this host.
    let l1 = File::open(fx.p(".meta/.log")).unwrap();
    let l2 = File::open(fx.p(".meta/.log")).unwrap();
    {
        use rustix::fs::{flock, FlockOperation as F};
        assert!(flock(&l1, F::NonBlockingLockExclusive).is_ok());
        assert!(flock(&l2, F::NonBlockingLockExclusive).is_err());
        assert!(flock(&l1, F::Unlock).is_ok());
        assert!(flock(&l2, F::NonBlockingLockExclusive).is_ok());
    }

    // Request counts are exposed; in fallback mode reads do reach the server.
    let stats = famfs_fused::parse_stats(&xattr(&fx.mnt, "user.famfs.stats").unwrap());
    let get = |k: &str| stats.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap();
    assert_eq!(get("init"), 1);
    assert!(get("read") > 0 && get("write") > 0 && get("lookup") > 0);

    // A device already mounted is refused, and so is a mount point in use.
    let again = Command::new(BIN)
        .arg(&fx.img)
        .arg(fx.dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already mounted"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let img2 = fx.dir.path().join("img2");
    File::create(&img2).unwrap().set_len(4096).unwrap();
    let busy = Command::new(BIN).arg(&img2).arg(&fx.mnt).output().unwrap();
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("already mounted there"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );

    // Unmounting makes the daemon exit.
    drop((f, l1, l2));
    assert!(
        unmount(&fx.mnt),
        "fusermount3 -u {} kept failing",
        fx.mnt.display()
    );
    assert!(!is_mounted(&fx.mnt));
}

fn xattr(p: &Path, name: &str) -> Option<String> {
    let mut buf = vec![0u8; 8192];
    let n = rustix::fs::getxattr(p, name, &mut buf[..]).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn kill_9_leaves_no_dead_mount() {
    let mut fx = fixture();
    fx.mount_foreground(&[]);
    assert_eq!(std::fs::read(fx.p("a/small")).unwrap(), pattern(1, 1000));
    let child = fx.child.as_mut().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    wait_until("fusermount3 to unmount after the server died", 10, || {
        !is_mounted(&fx.mnt)
    });
}

#[test]
fn sigterm_unmounts_cleanly_and_writes_stats() {
    let mut fx = fixture();
    let stats = fx.dir.path().join("stats");
    fx.mount_foreground(&["--stats-file", stats.to_str().unwrap()]);
    let mut f = File::open(fx.p("a/small")).unwrap();
    f.seek(SeekFrom::Start(10)).unwrap();
    let mut b = [0u8; 10];
    f.read_exact(&mut b).unwrap();
    assert_eq!(&b[..], &pattern(1, 20)[10..]);
    drop(f);
    let child = fx.child.as_mut().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "server did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(!is_mounted(&fx.mnt));
    let text = std::fs::read_to_string(&stats).unwrap();
    let s = famfs_fused::parse_stats(&text);
    assert!(s.contains(&("init".to_string(), 1)), "{text}");
    assert!(s.iter().any(|(k, v)| k == "read" && *v > 0), "{text}");
    let _ = std::io::stdout().flush();
}

/// The file system replaced under a mounted server (another host's `mkfs.famfs -f` and new files
/// at the same paths): old paths never return the new files' bytes; opens, listings and statfs
/// fail with ESTALE; the mode xattr and the server's log say why.
#[test]
fn replaced_file_system_goes_stale() {
    let mut fx = fixture();
    let log = fx.dir.path().join("server.log");
    fx.mount_foreground(&["--log-file", log.to_str().unwrap()]);
    assert_eq!(std::fs::read(fx.p("a/small")).unwrap(), pattern(1, 1000));
    // Another file system, same paths, other data, as a re-format by the master would leave.
    let other = fx.dir.path().join("other");
    format_image(&other);
    {
        let mut fs = Famfs::open(&other, Access::ReadWrite).unwrap();
        fs.mkdir_p(&rp("a/b"), 0o755, 0, 0).unwrap();
        let f = fs
            .create_file(&rp("a/small"), 1000, 0o644, 0, 0, Layout::Contiguous)
            .unwrap();
        fs.write_data(f, 0, &pattern(9, 1000)).unwrap();
        fs.create_file(&rp("a/new"), 1000, 0o644, 0, 0, Layout::Contiguous)
            .unwrap();
    }
    let mut head = vec![0u8; 64 << 20];
    File::open(&other).unwrap().read_exact(&mut head).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&fx.img)
        .unwrap()
        .write_all_at(&head, 0)
        .unwrap();

    let estale = libc::ESTALE;
    assert_eq!(
        errno(File::open(fx.p("a/small"))),
        estale,
        "open of an old path"
    );
    assert_eq!(
        errno(File::open(fx.p("a/new"))),
        estale,
        "lookup of a new path"
    );
    assert_eq!(errno(std::fs::read_dir(fx.p("a"))), estale, "listing");
    assert_eq!(
        errno(nix::sys::statfs::statfs(&fx.mnt).map_err(std::io::Error::from)),
        estale,
        "statfs"
    );
    let mode = xattr(&fx.mnt, "user.famfs.mode").unwrap_or_default();
    assert!(
        mode.contains("stale: the device now holds another file system"),
        "mode xattr: {mode}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("STALE MOUNT") && text.contains("re-formatted"),
        "server log: {text}"
    );
    // The mount point itself still answers, and unmounts.
    assert!(fx.mnt.is_dir());
    assert!(unmount(&fx.mnt));
}

/// An idle server notices within a few seconds, without any request.
#[test]
fn idle_server_notices_a_killed_superblock() {
    let mut fx = fixture();
    let log = fx.dir.path().join("server.log");
    fx.mount_foreground(&["--log-file", log.to_str().unwrap()]);
    assert_eq!(std::fs::read(fx.p("a/small")).unwrap(), pattern(1, 1000));
    // mkfs.famfs -k: the magic zeroed.
    OpenOptions::new()
        .write(true)
        .open(&fx.img)
        .unwrap()
        .write_all_at(&[0u8; 8], 0)
        .unwrap();
    wait_until("the server to log the stale mount", 15, || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("STALE MOUNT") && t.contains("killed"))
    });
    assert_eq!(errno(File::open(fx.p("a/small"))), libc::ESTALE);
    assert!(unmount(&fx.mnt));
}

/// Several devices in fallback mode: files on device 1 and striped over devices 0 and 1 read
/// through the mount; a write through the mount lands in the backing image of device 1 at the
/// offset the map gives; a device added online (devadd through the mount's meta files) serves a
/// new file; a missing device fails only its files (ENXIO).
#[test]
fn several_devices_fallback() {
    let mut fx = fixture();
    let dir = fx.img.parent().unwrap().to_path_buf();
    let img1 = dir.join("img1");
    let img2 = dir.join("img2");
    // Sizes make the most-free policy pick device 1, then device 2 (the primary is 8 GiB).
    File::create(&img1).unwrap().set_len(8 << 30).unwrap();
    File::create(&img2).unwrap().set_len(16 << 30).unwrap();
    let mut fs = Famfs::open(&fx.img, Access::ReadWrite).unwrap();
    let m1 = Media::open(&img1, Access::ReadWrite).unwrap();
    let name1 = img1.display().to_string();
    fs.with_log_lock(|a| a.add_device(m1, &name1, *uuid::Uuid::new_v4().as_bytes()))
        .unwrap();
    let one = fs
        .create_file(&rp("one"), 3 * M2 + 5, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
    let p = famfs_alloc::InterleaveParams::new(2, 2, M2, 8 << 30).unwrap();
    let st = fs
        .create_file(
            &rp("striped"),
            7 * M2 + 1,
            0o644,
            0,
            0,
            Layout::Interleaved(p),
        )
        .unwrap();
    let d1 = pattern(5, (3 * M2 + 5) as usize);
    let ds = pattern(6, (7 * M2 + 1) as usize);
    fs.write_data(one, 0, &d1).unwrap();
    fs.write_data(st, 0, &ds).unwrap();
    let fmap_one = fs
        .namespace()
        .get(one)
        .unwrap()
        .file()
        .unwrap()
        .fmap
        .clone();
    assert!(
        fmap_one.extents().iter().all(|e| e.devindex == 1),
        "{fmap_one:?}"
    );
    let devs: std::collections::BTreeSet<u64> = fs
        .namespace()
        .get(st)
        .unwrap()
        .file()
        .unwrap()
        .fmap
        .extents()
        .iter()
        .map(|e| e.devindex)
        .collect();
    assert_eq!(devs.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    drop(fs);
    fx.mount_foreground(&["--fallback"]);
    assert_eq!(std::fs::read(fx.p("one")).unwrap(), d1);
    assert_eq!(std::fs::read(fx.p("striped")).unwrap(), ds);
    // A write through the mount, checked in the image of device 1.
    let f = OpenOptions::new().write(true).open(fx.p("one")).unwrap();
    f.write_all_at(b"THROUGH-FUSE", 4096).unwrap();
    drop(f);
    // Where byte 4096 is, from the map's first extent (not famfs-format's resolver, which the
    // server's write path uses).
    let first = fmap_one.extents()[0];
    assert!(first.len > 4096, "{fmap_one:?}");
    let mut got = [0u8; 12];
    File::open(&img1)
        .unwrap()
        .read_exact_at(&mut got, first.offset + 4096)
        .unwrap();
    assert_eq!(&got, b"THROUGH-FUSE");
    // Online devadd through the mount, then a file on the new device.
    let mut online = Famfs::open(&fx.mnt, Access::ReadWrite).unwrap();
    let m2 = Media::open(&img2, Access::ReadWrite).unwrap();
    let name2 = img2.display().to_string();
    let idx = online
        .with_log_lock(|a| a.add_device(m2, &name2, *uuid::Uuid::new_v4().as_bytes()))
        .unwrap();
    assert_eq!(idx, 2);
    online
        .create_file(&rp("two"), M2, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
    let two = online.namespace().resolve("two").unwrap();
    assert_eq!(
        online
            .namespace()
            .get(two)
            .unwrap()
            .file()
            .unwrap()
            .fmap
            .extents()[0]
            .devindex,
        2
    );
    drop(online);
    OpenOptions::new()
        .write(true)
        .open(fx.p("two"))
        .unwrap()
        .write_all_at(&vec![0x5a; M2 as usize], 0)
        .unwrap();
    assert_eq!(std::fs::read(fx.p("two")).unwrap(), vec![0x5a; M2 as usize]);
    unmount(&fx.mnt);
    if let Some(mut c) = fx.child.take() {
        let _ = c.wait();
    }
    // Device 1 missing: its files fail with ENXIO, the rest is served.
    std::fs::rename(&img1, dir.join("gone")).unwrap();
    fx.mount_foreground(&["--fallback"]);
    assert_eq!(errno(std::fs::read(fx.p("one"))), libc::ENXIO);
    assert_eq!(errno(std::fs::read(fx.p("striped"))), libc::ENXIO);
    assert_eq!(std::fs::read(fx.p("two")).unwrap(), vec![0x5a; M2 as usize]);
    assert_eq!(std::fs::read(fx.p("a/small")).unwrap(), pattern(1, 1000));
}

/// A fallback mount over two 8 GiB images (the primary and device 1), with the free space of
/// each known: `df` counts both (issue 22: statfs counted only the primary). Oracle: the image
/// sizes set here, and the 2 MiB units a new file on device 1 takes.
#[test]
fn statfs_counts_every_device() {
    let mut fx = fixture();
    let img1 = fx.img.parent().unwrap().join("img1");
    File::create(&img1).unwrap().set_len(8 << 30).unwrap();
    let mut fs = Famfs::open(&fx.img, Access::ReadWrite).unwrap();
    let m1 = Media::open(&img1, Access::ReadWrite).unwrap();
    let name1 = img1.display().to_string();
    fs.with_log_lock(|a| a.add_device(m1, &name1, *uuid::Uuid::new_v4().as_bytes()))
        .unwrap();
    drop(fs);
    fx.mount_foreground(&["--fallback"]);
    let before = nix::sys::statfs::statfs(&fx.mnt).unwrap();
    assert_eq!(before.block_size() as u64, M2);
    assert_eq!(
        before.blocks(),
        (8 << 30) / M2 + (8 << 30) / M2,
        "total blocks: both 8 GiB devices"
    );
    // A new file on device 1 (the most free: the primary holds the superblock, log and files).
    let mut online = Famfs::open(&fx.mnt, Access::ReadWrite).unwrap();
    online
        .create_file(&rp("on-dev1"), 3 * M2 + 5, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
    let ino = online.namespace().resolve("on-dev1").unwrap();
    assert!(online
        .namespace()
        .get(ino)
        .unwrap()
        .file()
        .unwrap()
        .fmap
        .extents()
        .iter()
        .all(|e| e.devindex == 1));
    drop(online);
    let after = nix::sys::statfs::statfs(&fx.mnt).unwrap();
    assert_eq!(after.blocks(), before.blocks());
    assert_eq!(
        before.blocks_free() - after.blocks_free(),
        4,
        "a 3 x 2 MiB + 5 byte file on device 1 takes 4 units"
    );
    assert!(
        after.blocks_free() > (8 << 30) / M2,
        "free space of both devices: {}",
        after.blocks_free()
    );
}

/// A secondary device re-formatted by another file system under a fallback mount: the server
/// notices at the next open, marks the mount stale and refuses the files (issue 22: only the
/// primary superblock was watched, and files on the secondary kept using the new owner's
/// memory). Oracle: the bytes of another image's superblock, copied over device 1's.
#[test]
fn secondary_taken_by_another_file_system_goes_stale() {
    let mut fx = fixture();
    let dir = fx.img.parent().unwrap().to_path_buf();
    let img1 = dir.join("img1");
    File::create(&img1).unwrap().set_len(8 << 30).unwrap();
    let mut fs = Famfs::open(&fx.img, Access::ReadWrite).unwrap();
    let m1 = Media::open(&img1, Access::ReadWrite).unwrap();
    let name1 = img1.display().to_string();
    fs.with_log_lock(|a| a.add_device(m1, &name1, *uuid::Uuid::new_v4().as_bytes()))
        .unwrap();
    let one = fs
        .create_file(&rp("one"), M2, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
    assert!(fs
        .namespace()
        .get(one)
        .unwrap()
        .file()
        .unwrap()
        .fmap
        .extents()
        .iter()
        .all(|e| e.devindex == 1));
    fs.write_data(one, 0, &pattern(3, M2 as usize)).unwrap();
    drop(fs);
    let log = dir.join("server.log");
    fx.mount_foreground(&["--fallback", "--log-file", log.to_str().unwrap()]);
    assert_eq!(std::fs::read(fx.p("one")).unwrap(), pattern(3, M2 as usize));
    // mkfs.famfs of another file system on device 1's memory.
    let other = dir.join("other");
    format_image(&other);
    let mut head = vec![0u8; 4096];
    File::open(&other).unwrap().read_exact(&mut head).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&img1)
        .unwrap()
        .write_all_at(&head, 0)
        .unwrap();
    assert_eq!(
        errno(File::open(fx.p("one"))),
        libc::ESTALE,
        "open of a file on the taken device"
    );
    assert_eq!(
        errno(File::open(fx.p("a/small"))),
        libc::ESTALE,
        "open of a file on the primary"
    );
    let mode = xattr(&fx.mnt, "user.famfs.mode").unwrap_or_default();
    assert!(
        mode.contains("stale: secondary device 1"),
        "mode xattr: {mode}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("STALE MOUNT") && text.contains("taken by another file system"),
        "server log: {text}"
    );
    assert!(unmount(&fx.mnt));
}

/// Issue 24: a request stuck in a slow superblock probe does not hold up lookups and getattr of
/// other paths. The open of `a/small` runs the stale check, whose superblock probe the test hook
/// `FAMFS_FUSED_TEST_PROBE_DELAY_MS` makes sleep 2 s (so does every idle check); meanwhile stats
/// of `a/b/big` through the mount (entry and attribute caching off: every one reaches the server
/// as lookups and getattr) must each finish in far less than that. With one lock over the whole
/// server state they waited for the probe.
#[test]
fn a_slow_superblock_probe_does_not_block_lookups() {
    const DELAY: Duration = Duration::from_millis(2000);
    let mut fx = fixture();
    fx.mount_foreground_env(
        &["--threads", "4", "-t", "0"],
        &[(
            "FAMFS_FUSED_TEST_PROBE_DELAY_MS",
            &DELAY.as_millis().to_string(),
        )],
    );
    let small = fx.p("a/small");
    let opener = std::thread::spawn(move || {
        let t = Instant::now();
        let r = File::open(&small).map(|_| ());
        (t.elapsed(), r)
    });
    // The open is in its probe by now (or waiting for an idle check's).
    std::thread::sleep(Duration::from_millis(300));
    let (mut worst, mut n) = (Duration::ZERO, 0);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1000) {
        let t = Instant::now();
        let md = std::fs::metadata(fx.p("a/b/big")).unwrap();
        worst = worst.max(t.elapsed());
        assert_eq!(md.len(), 5 * M2 + 17);
        n += 1;
    }
    let (took, r) = opener.join().unwrap();
    r.unwrap();
    eprintln!(
        "{n} stats while the open was in its probe, the slowest {worst:?}; the open took {took:?}"
    );
    assert!(
        took >= DELAY,
        "the probe hook was not in effect: the open took {took:?}"
    );
    assert!(
        worst < DELAY / 4,
        "a stat took {worst:?} while an open was in a {DELAY:?} superblock probe ({n} stats)"
    );
}
