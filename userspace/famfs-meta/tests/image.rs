//! Log play and append on image files.

use famfs_format::*;
use famfs_media::Media;
use famfs_meta::*;
use std::path::{Path, PathBuf};

const M: u64 = 2 << 20;
const G: u64 = 1 << 30;

struct Env {
    _dir: tempfile::TempDir,
    img: PathBuf,
}

/// A fresh 4 GiB sparse image formatted with this host as master. The system uuid file is set
/// per test through the environment (tests in this file run one at a time through a lock).
fn setup(size: u64) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    Env { _dir: dir, img }
}

/// Like [`setup`], on tmpfs when the host has /dev/shm: appends to an image sync its pages (entry
/// before header, Documentation/reliability.md), which on tmpfs costs nothing and on a disk a
/// write each; a test of 15420 appends would spend a minute on the disk.
fn setup_tmpfs(size: u64) -> Env {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let img = dir.path().join("img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    Env { _dir: dir, img }
}

fn format(img: &Path, uuid_file: &Path) -> Superblock {
    let local = local_system_uuid(uuid_file).unwrap();
    let media = Media::open(img, Access::ReadWrite).unwrap();
    mkfs(
        &media,
        &MkfsOptions {
            log_len: DEFAULT_LOG_LEN,
            fs_uuid: [1; 16],
            dev_uuid: [2; 16],
            system_uuid: local,
            device_name: "img".into(),
        },
    )
    .unwrap()
}

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn with_uuid_file<T>(f: impl FnOnce(&Path) -> T) -> T {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("system_uuid");
    std::env::set_var(SYSTEM_UUID_ENV, &p);
    local_system_uuid(&p).unwrap();
    f(&p)
}

fn rp(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

#[test]
fn create_play_and_replay() {
    with_uuid_file(|u| {
        let e = setup(4 * G);
        format(&e.img, u);
        let mut fs = Famfs::open(&e.img, Access::ReadWrite).unwrap();
        assert_eq!(fs.role(), Role::Master);
        fs.mkdir(&rp("d"), 0o755, 1, 2).unwrap();
        let ino = fs
            .create_file(&rp("d/f"), 3 * M + 5, 0o600, 3, 4, Layout::Contiguous)
            .unwrap();
        fs.write_data(ino, 3 * M, b"tail!").unwrap();
        assert!(matches!(
            fs.create_file(&rp("d/f"), 1, 0o600, 0, 0, Layout::Contiguous),
            Err(MetaError::Exists(_))
        ));
        assert!(matches!(
            fs.create_file(&rp("x/f"), 1, 0o600, 0, 0, Layout::Contiguous),
            Err(MetaError::NotFound(_))
        ));
        assert!(matches!(
            fs.mkdir(&rp("d/f/g"), 0o755, 0, 0),
            Err(MetaError::NotADirectory(_))
        ));
        fs.mkdir_p(&rp("p/q/r"), 0o700, 0, 0).unwrap();
        let p = InterleaveParams_new(4 * G);
        let il = fs
            .create_file(
                &rp("p/striped"),
                20 * M,
                0o644,
                0,
                0,
                Layout::Interleaved(p),
            )
            .unwrap();
        assert!(matches!(
            fs.namespace().get(il).unwrap().file().unwrap().fmap,
            Fmap::Interleaved(_)
        ));

        // A second opener sees the same namespace; refresh is idempotent.
        let mut other = Famfs::open(&e.img, Access::ReadOnly).unwrap();
        assert_eq!(other.namespace(), fs.namespace());
        assert_eq!(other.refresh().unwrap().played, 0);
        fs.mkdir(&rp("later"), 0o755, 0, 0).unwrap();
        let s = other.refresh().unwrap();
        assert_eq!((s.played, s.dirs), (1, 1));
        assert_eq!(other.namespace(), fs.namespace());
        let mut buf = [0u8; 5];
        other.read_data(ino, 3 * M, &mut buf).unwrap();
        assert_eq!(&buf, b"tail!");
        assert!(matches!(
            other.read_data(ino, 3 * M + 1, &mut buf),
            Err(MetaError::BeyondEof { .. })
        ));
        assert!(matches!(
            other.mkdir(&rp("nope"), 0o755, 0, 0),
            Err(MetaError::ReadOnly)
        ));
        assert!(other.problems().is_empty());
        let node = other.namespace().get(ino).unwrap();
        assert_eq!(
            (node.mode, node.uid, node.gid, node.size()),
            (0o600, 3, 4, 3 * M + 5)
        );
    });
}

#[allow(non_snake_case)]
fn InterleaveParams_new(dev: u64) -> famfs_alloc::InterleaveParams {
    famfs_alloc::InterleaveParams::new(4, 3, 2 << 20, dev).unwrap()
}

#[test]
fn client_cannot_write() {
    with_uuid_file(|u| {
        let e = setup(4 * G);
        format(&e.img, u);
        // Another host: a different system uuid file.
        let d = tempfile::tempdir().unwrap();
        std::env::set_var(SYSTEM_UUID_ENV, d.path().join("other"));
        let mut fs = Famfs::open(&e.img, Access::ReadWrite).unwrap();
        assert_eq!(fs.role(), Role::Client);
        let err = fs.mkdir(&rp("x"), 0o755, 0, 0).unwrap_err();
        assert!(matches!(err, MetaError::NotMaster { .. }));
        assert!(err.to_string().contains("only the master"));
    });
}

#[test]
fn log_full_is_reported() {
    with_uuid_file(|u| {
        let e = setup_tmpfs(4 * G);
        format(&e.img, u);
        let mut fs = Famfs::open(&e.img, Access::ReadWrite).unwrap();
        let cap = fs.log_header().unwrap().geometry().capacity();
        assert_eq!(cap, 15420);
        let t = std::time::Instant::now();
        fs.with_log_lock(|a| {
            for i in 0..cap {
                a.mkdir(&RelPath::new(&format!("d{i}")).unwrap(), 0o755, 0, 0)?;
            }
            Ok(())
        })
        .unwrap();
        println!("appended {cap} entries in {:?}", t.elapsed());
        assert!(matches!(
            fs.mkdir(&rp("one-more"), 0o755, 0, 0),
            Err(MetaError::LogFull { capacity: 15420 })
        ));
        assert!(matches!(
            fs.create_file(&rp("f"), 1, 0o644, 0, 0, Layout::Contiguous),
            Err(MetaError::LogFull { .. })
        ));
        let t = std::time::Instant::now();
        let again = Famfs::open(&e.img, Access::ReadOnly).unwrap();
        println!("played a full log in {:?}", t.elapsed());
        assert_eq!(again.namespace().dir_count(), cap);
    });
}

#[test]
fn damaged_entry_stops_play_and_bad_content_is_a_problem() {
    with_uuid_file(|u| {
        let e = setup(4 * G);
        let sb = format(&e.img, u);
        let mut fs = Famfs::open(&e.img, Access::ReadWrite).unwrap();
        for i in 0..4 {
            fs.mkdir(&RelPath::new(&format!("d{i}")).unwrap(), 0o755, 0, 0)
                .unwrap();
        }
        let media = Media::open(&e.img, Access::ReadWrite).unwrap();
        // Entry 2: flip a byte -> crc fails -> play stops after entry 1.
        let off = Media::entry_offset(&sb, 2).unwrap();
        let mut b = [0u8; 1];
        media.read_at(off + 20, &mut b).unwrap();
        media.write_at(off + 20, &[b[0] ^ 1]).unwrap();
        match Famfs::open(&e.img, Access::ReadOnly) {
            Err(MetaError::LogDamaged {
                index: 2,
                source: FormatError::BadEntryCrc { .. },
            }) => {}
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("damage not found"),
        }
        media.write_at(off + 20, &b).unwrap();
        // Entry 3: a valid crc around an absolute path -> a problem for that entry only.
        let off3 = Media::entry_offset(&sb, 3).unwrap();
        let mut raw = [0u8; LOG_ENTRY_SIZE];
        media.read_at(off3, &mut raw).unwrap();
        let mut r = RawLogEntry::from_bytes(&raw).unwrap();
        r.body[12] = b'/';
        r.crc = r.compute_crc();
        media.write_at(off3, &r.to_bytes()).unwrap();
        let fs2 = Famfs::open(&e.img, Access::ReadOnly).unwrap();
        assert_eq!(fs2.played(), 4);
        assert_eq!(fs2.problems().len(), 1);
        assert_eq!(
            fs2.problems()[0].kind,
            ProblemKind::BadEntry(FormatError::PathAbsolute)
        );
        // Seqnum mismatch.
        r.seqnum = 9;
        r.body[12] = b'x';
        r.crc = r.compute_crc();
        media.write_at(off3, &r.to_bytes()).unwrap();
        assert!(matches!(
            Famfs::open(&e.img, Access::ReadOnly),
            Err(MetaError::LogDamaged {
                index: 3,
                source: FormatError::SeqnumMismatch { .. }
            })
        ));
    });
}

#[test]
fn truncated_and_garbage_images_fail_cleanly() {
    with_uuid_file(|u| {
        let e = setup(4 * G);
        format(&e.img, u);
        for len in [
            0u64,
            100,
            199,
            200,
            4096,
            2 * M,
            2 * M + 47,
            2 * M + 48,
            2 * M + 600,
            10 * M - 1,
        ] {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&e.img)
                .unwrap();
            f.set_len(len).unwrap();
            let r = Famfs::open(&e.img, Access::ReadOnly);
            assert!(r.is_err(), "truncated to {len} must fail");
            println!("truncated to {len}: {}", r.err().unwrap());
        }
        let e2 = setup(16 << 20);
        std::fs::write(&e2.img, vec![0xa5u8; 16 << 20]).unwrap();
        println!(
            "garbage: {}",
            Famfs::open(&e2.img, Access::ReadOnly).err().unwrap()
        );
    });
}
