//! Corrupt media, played from an in-memory device ([`Media::memory`]): every bad log entry is
//! skipped with a problem naming its index, damage that makes the log untrustworthy stops the play
//! with an error naming the entry, every superblock and log header field is checked, and nothing
//! panics.

use famfs_format::*;
use famfs_media::Media;
use famfs_meta::*;

const M: u64 = 2 << 20;
const DEV: u64 = 4 << 30;
const MASTER: UuidBytes = [0x77; 16];

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("famfs-meta-corrupt.system_uuid");
        std::fs::write(&d, format!("{}\n", format_uuid(&MASTER))).unwrap();
        std::env::set_var(SYSTEM_UUID_ENV, &d);
    });
}

fn sb() -> Superblock {
    Superblock::new(DEFAULT_LOG_LEN, DEV, [1; 16], [2; 16], MASTER, "mem").unwrap()
}

/// An in-memory device holding a valid superblock and a log of `entries` (slot i at index i).
fn device(entries: &[[u8; LOG_ENTRY_SIZE]]) -> Media {
    init();
    let m = Media::memory(DEV).unwrap();
    let sb = sb();
    m.write_at(0, &sb.encode()).unwrap();
    let mut h = LogHeader::new(sb.log_geometry());
    for (i, e) in entries.iter().enumerate() {
        m.write_log_entry(&sb, i as u64, e).unwrap();
        h = h.advanced().unwrap();
    }
    m.write_log_header(&h).unwrap();
    m
}

fn file(i: u64, path: &str, offset: u64, len: u64) -> [u8; LOG_ENTRY_SIZE] {
    LogEntry {
        seqnum: i,
        body: LogEntryBody::File(FileEntry {
            size: len,
            flags: FileFlags::READ_WRITE,
            uid: 0,
            gid: 0,
            mode: 0o644,
            path: RelPath::new(path).unwrap(),
            fmap: Fmap::simple(vec![Extent::new(offset, len)]).unwrap(),
        }),
    }
    .encode()
}

fn mkdir(i: u64, path: &str) -> [u8; LOG_ENTRY_SIZE] {
    LogEntry {
        seqnum: i,
        body: LogEntryBody::Mkdir(MkdirEntry {
            uid: 0,
            gid: 0,
            mode: 0o755,
            path: RelPath::new(path).unwrap(),
        }),
    }
    .encode()
}

/// Rewrites part of an entry as a buggy or hostile writer would, crc included.
fn patch(mut e: [u8; LOG_ENTRY_SIZE], at: usize, bytes: &[u8]) -> [u8; LOG_ENTRY_SIZE] {
    e[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32(&e[..LOG_ENTRY_CRC_RANGE]) as u64;
    e[LOG_ENTRY_CRC_RANGE..].copy_from_slice(&crc.to_le_bytes());
    e
}

/// Offsets inside an entry.
const FILE_PATH: usize = 16 + 24;
const MKDIR_PATH: usize = 16 + 12;
const EXT0_OFFSET: usize = 16 + 104 + 16 + 8;
const EXT0_LEN: usize = EXT0_OFFSET + 8;

fn with_path(e: [u8; LOG_ENTRY_SIZE], at: usize, raw: &[u8]) -> [u8; LOG_ENTRY_SIZE] {
    let mut field = [0u8; RELPATH_FIELD];
    field[..raw.len()].copy_from_slice(raw);
    patch(e, at, &field)
}

fn open(m: Media) -> Famfs {
    Famfs::from_media(m).unwrap()
}

/// Plays a log whose entry 1 is `bad` between two good ones and returns the problems.
fn one_bad(bad: [u8; LOG_ENTRY_SIZE]) -> (Famfs, Vec<Problem>) {
    let fs = open(device(&[mkdir(0, "ok0"), bad, mkdir(2, "ok2")]));
    assert_eq!(fs.played(), 3, "the play goes on past a bad entry");
    assert!(fs.namespace().resolve("ok0").is_some() && fs.namespace().resolve("ok2").is_some());
    let p = fs.problems().to_vec();
    (fs, p)
}

#[test]
fn paths_that_escape_the_mount_are_skipped_and_named() {
    let long = [b'n'; RELPATH_FIELD];
    let cases: &[(&[u8], FormatError)] = &[
        (b"..", FormatError::PathBadComponent("..".into())),
        (b"../etc/passwd", FormatError::PathBadComponent("..".into())),
        (b"a/../../b", FormatError::PathBadComponent("..".into())),
        (b"/etc/passwd", FormatError::PathAbsolute),
        (b"/", FormatError::PathAbsolute),
        (b".", FormatError::PathBadComponent(".".into())),
        (b"a/./b", FormatError::PathBadComponent(".".into())),
        (b"a//b", FormatError::PathBadComponent("".into())),
        (b"a/", FormatError::PathBadComponent("".into())),
        (b"", FormatError::PathEmpty),
        (&long, FormatError::PathNotTerminated),
        (b"bad\xff\xfe", FormatError::PathNotUtf8),
    ];
    for (raw, want) in cases {
        for (e, at) in [
            (file(1, "x", 10 * M, M), FILE_PATH),
            (mkdir(1, "x"), MKDIR_PATH),
        ] {
            let (fs, p) = one_bad(with_path(e, at, raw));
            assert_eq!(p.len(), 1, "{raw:?}: {p:?}");
            assert_eq!(p[0].index, 1);
            assert_eq!(p[0].kind, ProblemKind::BadEntry(want.clone()), "{raw:?}");
            assert!(p[0].is_damage());
            assert!(
                p[0].to_string().starts_with("entry 1: invalid entry"),
                "{}",
                p[0]
            );
            // Nothing but the two good directories exists.
            assert_eq!(fs.namespace().len(), 3);
            // A bad FILE entry does not own space either.
            assert_eq!(fs.bitmap().used_units(), (LOG_OFFSET + DEFAULT_LOG_LEN) / M);
        }
    }
}

#[test]
fn an_embedded_nul_ends_the_path() {
    // The field is NUL-terminated (as in the C tools): what follows the first NUL is ignored, so
    // "a\0../../x" is the file "a", which cannot escape.
    let (fs, p) = one_bad(with_path(file(1, "x", 10 * M, M), FILE_PATH, b"a\0../../x"));
    assert!(p.is_empty(), "{p:?}");
    assert!(fs.namespace().resolve("a").is_some());
    assert_eq!(fs.namespace().len(), 4);
}

#[test]
fn duplicate_paths() {
    // file vs file at other memory: a warning, the first entry wins.
    let fs = open(device(&[file(0, "f", 10 * M, M), file(1, "f", 20 * M, M)]));
    let p = fs.problems();
    assert_eq!(
        (p.len(), p[0].index, &p[0].kind),
        (1, 1, &ProblemKind::Duplicate)
    );
    assert!(!p[0].is_damage());
    assert_eq!(
        p[0].to_string(),
        "entry 1 (/f): path already exists; entry ignored"
    );
    let ino = fs.namespace().resolve("f").unwrap();
    assert_eq!(fs.namespace().get(ino).unwrap().log_index, Some(0));
    // file vs file at the same memory: a duplicate and a collision.
    let fs = open(device(&[file(0, "f", 10 * M, M), file(1, "f", 10 * M, M)]));
    let kinds: Vec<_> = fs
        .problems()
        .iter()
        .map(|p| (p.index, p.is_damage()))
        .collect();
    assert_eq!(kinds, vec![(1, true), (1, false)]);
    // directory then file: the directory stays.
    let fs = open(device(&[mkdir(0, "d"), file(1, "d", 10 * M, M)]));
    assert_eq!(fs.problems()[0].index, 1);
    assert!(fs
        .namespace()
        .get(fs.namespace().resolve("d").unwrap())
        .unwrap()
        .is_dir());
    // file then directory: damage.
    let fs = open(device(&[file(0, "d", 10 * M, M), mkdir(1, "d")]));
    let p = &fs.problems()[0];
    assert_eq!((p.index, p.is_damage()), (1, true));
    assert_eq!(
        p.to_string(),
        "entry 1 (/d): directory over an existing file"
    );
    // a path under a file: damage.
    let fs = open(device(&[
        file(0, "f", 10 * M, M),
        file(1, "f/g", 20 * M, M),
        mkdir(2, "f/d"),
    ]));
    let p: Vec<_> = fs
        .problems()
        .iter()
        .map(|p| (p.index, p.to_string()))
        .collect();
    assert_eq!(
        p,
        vec![
            (1, "entry 1 (/f/g): a parent is a file".to_string()),
            (2, "entry 2 (/f/d): a parent is a file".to_string())
        ]
    );
    assert_eq!(fs.namespace().len(), 2);
}

#[test]
fn extents_over_the_superblock_the_log_or_each_other() {
    // At 0 (the superblock): refused by the decoder.
    let (_, p) = one_bad(patch(
        file(1, "x", 10 * M, M),
        EXT0_OFFSET,
        &0u64.to_le_bytes(),
    ));
    assert_eq!(p[0].kind, ProblemKind::BadEntry(FormatError::ExtentAtZero));
    // Over the log (its first unit, its middle, straddling its end): collisions.
    for off in [
        LOG_OFFSET,
        LOG_OFFSET + 2 * M,
        LOG_OFFSET + DEFAULT_LOG_LEN - M,
    ] {
        let (fs, p) = one_bad(file(1, "x", off, 2 * M));
        assert_eq!(p.len(), 1, "{off:#x}");
        assert!(
            matches!(
                p[0].kind,
                ProblemKind::Collision(famfs_alloc::AllocError::Collision { .. })
            ),
            "{:?}",
            p[0]
        );
        assert!(
            p[0].to_string()
                .starts_with("entry 1 (/x): allocation collision"),
            "{}",
            p[0]
        );
        // The file is still listed (its data is at risk, fsck says where).
        assert!(fs.namespace().resolve("x").is_some());
    }
    // Two files overlapping each other: the later entry is blamed.
    let fs = open(device(&[
        file(0, "a", 10 * M, 6 * M),
        file(1, "b", 14 * M, 4 * M),
        file(2, "c", 18 * M, 2 * M),
    ]));
    let p: Vec<_> = fs
        .problems()
        .iter()
        .map(|p| (p.index, p.to_string()))
        .collect();
    assert_eq!(p, vec![(1, "entry 1 (/b): allocation collision: [0x1c00000, +0x400000) overlaps space already in use".to_string())]);
    // Beyond the device, and wrapping the address space.
    let (_, p) = one_bad(file(1, "x", DEV - M, 2 * M + M));
    assert!(matches!(
        p[0].kind,
        ProblemKind::Collision(famfs_alloc::AllocError::BeyondDevice { .. })
    ));
    let top = u64::MAX / M * M;
    let (_, p) = one_bad(patch(
        file(1, "x", 10 * M, 2 * M),
        EXT0_OFFSET,
        &top.to_le_bytes(),
    ));
    assert_eq!(
        p[0].kind,
        ProblemKind::BadEntry(FormatError::ExtentOverflow {
            offset: top,
            len: 2 * M
        })
    );
    // Misaligned and empty.
    let (_, p) = one_bad(patch(
        file(1, "x", 10 * M, 2 * M),
        EXT0_OFFSET,
        &(10 * M + 4096).to_le_bytes(),
    ));
    assert!(matches!(
        p[0].kind,
        ProblemKind::BadEntry(FormatError::ExtentMisaligned { .. })
    ));
    let (_, p) = one_bad(patch(
        file(1, "x", 10 * M, 2 * M),
        EXT0_LEN,
        &0u64.to_le_bytes(),
    ));
    assert_eq!(p[0].kind, ProblemKind::BadEntry(FormatError::ExtentEmpty));
}

/// Regression (found while fuzzing log play): an extent ending past 2^64 passed validation and
/// resolving a file offset inside it overflowed (a panic in debug builds).
#[test]
fn wrapping_extent_cannot_reach_file_data() {
    let top = u64::MAX / M * M;
    let fs = open(device(&[patch(
        file(0, "x", 10 * M, 4 * M),
        EXT0_OFFSET,
        &top.to_le_bytes(),
    )]));
    assert!(fs.namespace().resolve("x").is_none());
    let f = Fmap::simple(vec![Extent::new(top, 4 * M)]);
    assert_eq!(
        f,
        Err(FormatError::ExtentOverflow {
            offset: top,
            len: 4 * M
        })
    );
}

#[test]
fn log_counters_past_the_end() {
    let sb = sb();
    let cap = sb.log_geometry().capacity();
    for next in [cap + 1, cap + 1000, u64::MAX / 2, u64::MAX] {
        let m = device(&[mkdir(0, "d")]);
        m.write_at(LOG_OFFSET + 40, &next.to_le_bytes()).unwrap();
        match Famfs::from_media(m) {
            Err(MetaError::Media(famfs_media::MediaError::Format(
                FormatError::CountersPastEnd {
                    next_index,
                    capacity,
                },
            ))) => {
                assert_eq!((next_index, capacity), (next, cap));
            }
            other => panic!("next_index {next}: {:?}", other.map(|f| f.played())),
        }
    }
    // Inside the log but past what was written: the first unwritten slot is named.
    let m = device(&[mkdir(0, "d"), mkdir(1, "e")]);
    m.write_at(LOG_OFFSET + 40, &5u64.to_le_bytes()).unwrap();
    let e = Famfs::from_media(m).err().unwrap();
    assert!(matches!(e, MetaError::LogDamaged { index: 2, .. }), "{e}");
    assert!(e.to_string().starts_with("log entry 2 is damaged"), "{e}");
    // A full log plays.
    let m = device(&[]);
    let mut raw = RawLogHeader::from_bytes(&LogHeader::new(sb.log_geometry()).encode()).unwrap();
    raw.next_index = cap;
    raw.next_seqnum = cap;
    m.write_at(LOG_OFFSET, &raw.to_bytes()).unwrap();
    assert!(matches!(
        Famfs::from_media(m),
        Err(MetaError::LogDamaged { index: 0, .. })
    ));
}

/// Regression: next_seqnum (not covered by the crc) disagreeing with next_index, as a writer
/// killed between the two 8-byte stores leaves it, must neither stop the play nor wedge the log.
#[test]
fn torn_counters_are_repaired_by_the_next_append() {
    for seq in [0u64, 2, 3, 999, u64::MAX] {
        let m = device(&[mkdir(0, "a"), mkdir(1, "b")]);
        m.write_at(LOG_OFFSET + 32, &seq.to_le_bytes()).unwrap();
        let mut fs = open(m);
        assert_eq!(fs.played(), 2);
        fs.mkdir(&RelPath::new("c").unwrap(), 0o755, 0, 0).unwrap();
        let h = fs.log_header().unwrap();
        assert_eq!((h.next_index(), h.next_seqnum()), (3, 3), "seqnum {seq}");
        let again = open(fs.into_media());
        assert_eq!(again.namespace().dir_count(), 3);
    }
}

#[test]
fn every_superblock_field() {
    type Edit = fn(&mut RawSuperblock);
    // (field, edit, crc fixed afterwards, expected error or None when the field is not checked)
    let cases: Vec<(&str, Edit, bool, Option<&str>)> = vec![
        ("magic", |r| r.magic = 0, true, Some("bad superblock magic")),
        (
            "version",
            |r| r.version = 47,
            true,
            Some("unsupported superblock version 47"),
        ),
        (
            "log_offset",
            |r| r.log_offset = 0,
            true,
            Some("bad log offset"),
        ),
        (
            "log_len small",
            |r| r.log_len = 4 << 20,
            true,
            Some("bad log length"),
        ),
        (
            "log_len odd",
            |r| r.log_len = 12 << 20,
            true,
            Some("bad log length"),
        ),
        (
            "log_len huge",
            |r| r.log_len = 1 << 62,
            true,
            Some("bad log length"),
        ),
        (
            "log_len beyond device",
            |r| r.log_len = 8 << 30,
            true,
            Some("too small for a log"),
        ),
        (
            "alloc_unit",
            |r| r.alloc_unit = 12345,
            true,
            Some("bad allocation unit"),
        ),
        ("omf major", |r| r.omf_ver_major = 9, true, None),
        ("omf minor", |r| r.omf_ver_minor = 9, true, None),
        (
            "fs uuid",
            |r| r.fs_uuid[3] ^= 1,
            false,
            Some("superblock crc mismatch"),
        ),
        (
            "dev uuid",
            |r| r.dev_uuid[3] ^= 1,
            false,
            Some("superblock crc mismatch"),
        ),
        (
            "system uuid",
            |r| r.system_uuid[3] ^= 1,
            false,
            Some("superblock crc mismatch"),
        ),
        (
            "crc",
            |r| r.crc ^= 1,
            false,
            Some("superblock crc mismatch"),
        ),
        (
            "crc high half",
            |r| r.crc |= 1 << 40,
            false,
            Some("superblock crc mismatch"),
        ),
        ("flags", |r| r.sb_flags = u32::MAX, false, None),
        ("pad", |r| r.pad = u32::MAX, false, None),
        ("daxdev size 0", |r| r.daxdev_size = 0, false, None),
        (
            "daxdev size huge",
            |r| r.daxdev_size = u64::MAX,
            false,
            None,
        ),
        ("daxdev uuid", |r| r.daxdev_uuid = [0xff; 16], false, None),
        (
            "daxdev name",
            |r| r.daxdev_name = [0xff; DAXDEV_NAME_LEN],
            false,
            None,
        ),
    ];
    for (what, edit, fix_crc, want) in cases {
        let m = device(&[mkdir(0, "d"), file(1, "d/f", 10 * M, M)]);
        let mut r = RawSuperblock::from_bytes(&sb().encode()).unwrap();
        edit(&mut r);
        if fix_crc {
            r.crc = r.compute_crc();
        }
        m.write_at(0, &r.to_bytes()).unwrap();
        match (Famfs::from_media(m), want) {
            (Err(e), Some(msg)) => assert!(e.to_string().contains(msg), "{what}: {e}"),
            (Ok(fs), None) => {
                assert_eq!(fs.namespace().file_count(), 1, "{what}");
                let _ = fs.superblock().device_name_str();
            }
            (Err(e), None) => panic!("{what}: refused: {e}"),
            (Ok(_), Some(msg)) => panic!("{what}: accepted, expected {msg:?}"),
        }
    }
}

#[test]
fn every_log_header_field() {
    type Edit = fn(&mut RawLogHeader);
    let g = sb().log_geometry();
    let cases: Vec<(&str, Edit, bool, Option<&str>)> = vec![
        ("magic", |r| r.magic = 0xbad, true, Some("bad log magic")),
        (
            "len",
            |r| r.len = 16 << 20,
            true,
            Some("differs from the superblock"),
        ),
        (
            "last_index",
            |r| r.last_index = 7,
            true,
            Some("last_index 7 wrong"),
        ),
        (
            "crc",
            |r| r.crc ^= 0x100,
            false,
            Some("log header crc mismatch"),
        ),
        (
            "len without crc",
            |r| r.len ^= 1,
            false,
            Some("log header crc mismatch"),
        ),
        (
            "next_index",
            |r| r.next_index = 1 << 40,
            false,
            Some("past the end of the log"),
        ),
        ("next_seqnum", |r| r.next_seqnum = 1 << 40, false, None),
    ];
    for (what, edit, fix_crc, want) in cases {
        let m = device(&[mkdir(0, "d")]);
        let mut r =
            RawLogHeader::from_bytes(&LogHeader::new(g).advanced().unwrap().encode()).unwrap();
        edit(&mut r);
        if fix_crc {
            r.crc = r.compute_crc();
        }
        m.write_at(LOG_OFFSET, &r.to_bytes()).unwrap();
        match (Famfs::from_media(m), want) {
            (Err(e), Some(msg)) => assert!(e.to_string().contains(msg), "{what}: {e}"),
            (Ok(fs), None) => assert_eq!(fs.namespace().dir_count(), 1, "{what}"),
            (Err(e), None) => panic!("{what}: refused: {e}"),
            (Ok(_), Some(msg)) => panic!("{what}: accepted, expected {msg:?}"),
        }
    }
}

#[test]
fn flipped_bits_in_entries_stop_the_play_at_that_entry() {
    let good = [
        mkdir(0, "d"),
        file(1, "d/f", 10 * M, M),
        file(2, "g", 12 * M, M),
    ];
    for byte in (0..LOG_ENTRY_SIZE).step_by(7) {
        let mut entries = good;
        entries[1][byte] ^= 0x10;
        let e = Famfs::from_media(device(&entries))
            .err()
            .unwrap_or_else(|| panic!("byte {byte}: accepted"));
        assert!(
            matches!(e, MetaError::LogDamaged { index: 1, .. }),
            "byte {byte}: {e}"
        );
    }
}

/// Regression: through meta files (a mount) nothing bounds the superblock's device size, which
/// the crc does not cover; a huge value made the allocation bitmap's size unbounded (abort).
#[test]
fn implausible_device_size_through_meta_files() {
    init();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".meta")).unwrap();
    let mut r = RawSuperblock::from_bytes(&sb().encode()).unwrap();
    r.daxdev_size = u64::MAX;
    let mut sbb = vec![0u8; M as usize];
    sbb[..SB_SIZE].copy_from_slice(&r.to_bytes());
    std::fs::write(dir.path().join(".meta/.superblock"), &sbb).unwrap();
    let mut log = vec![0u8; DEFAULT_LOG_LEN as usize];
    log[..LOG_HEADER_SIZE].copy_from_slice(&LogHeader::new(sb().log_geometry()).encode());
    std::fs::write(dir.path().join(".meta/.log"), &log).unwrap();
    // A directory is not a mount: the meta files are handed in open, as the server does.
    let meta = |d: &std::path::Path| {
        let f = |n: &str| std::fs::File::open(d.join(".meta").join(n)).unwrap();
        Media::from_meta_files(
            d,
            f(".superblock"),
            f(".log"),
            famfs_media::Access::ReadOnly,
        )
        .unwrap()
    };
    let e = Famfs::from_media(meta(dir.path())).err().unwrap();
    assert!(
        matches!(e, MetaError::ImplausibleDeviceSize { size: u64::MAX, .. }),
        "{e}"
    );
    // The largest believable size still opens.
    r.daxdev_size = MAX_DEVICE_SIZE;
    sbb[..SB_SIZE].copy_from_slice(&r.to_bytes());
    std::fs::write(dir.path().join(".meta/.superblock"), &sbb).unwrap();
    assert_eq!(
        Famfs::from_media(meta(dir.path()))
            .unwrap()
            .bitmap()
            .device_size(),
        MAX_DEVICE_SIZE
    );
}
