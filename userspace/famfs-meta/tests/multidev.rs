//! A famfs over several devices, on sparse image files: secondary superblocks, the device table
//! played from ADD_DAXDEV entries, per-device allocation, data on every device checked against
//! the backing files read at the offsets the maps give (an oracle independent of famfs-media's
//! read path), resolution by uuid, and missing or wrong secondaries.

use famfs_format::*;
use famfs_media::{Access, Media};
use famfs_meta::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const G: u64 = 1 << 30;
const M: u64 = 2 << 20;
const MASTER: UuidBytes = [0x55; 16];

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let d = std::env::temp_dir().join(format!("famfs-meta-multidev-{}", std::process::id()));
        std::fs::write(&d, format!("{}\n", format_uuid(&MASTER))).unwrap();
        std::env::set_var(SYSTEM_UUID_ENV, &d);
    });
}

fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// A fresh file system on `primary` with `secondaries` added (offline, as mkfs.famfs does).
fn make(primary: &Path, secondaries: &[&Path], fs_uuid: UuidBytes) -> Famfs {
    init();
    let media = Media::open(primary, Access::ReadWrite).unwrap();
    let o = MkfsOptions {
        log_len: DEFAULT_LOG_LEN,
        fs_uuid,
        dev_uuid: *uuid::Uuid::new_v4().as_bytes(),
        system_uuid: MASTER,
        device_name: primary.display().to_string(),
    };
    mkfs(&media, &o).unwrap();
    let mut fs = Famfs::from_media(media).unwrap();
    for s in secondaries {
        let m = Media::open(s, Access::ReadWrite).unwrap();
        let name = s.display().to_string();
        fs.with_log_lock(|a| a.add_device(m, &name, *uuid::Uuid::new_v4().as_bytes()))
            .unwrap();
    }
    fs
}

fn head(p: &Path) -> Vec<u8> {
    let mut b = vec![0u8; SB_SIZE];
    std::fs::File::open(p)
        .unwrap()
        .read_exact_at(&mut b, 0)
        .unwrap();
    b
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// Where byte `off` of a file lives, as Documentation/on-media-format.md defines it, computed here
/// and not by famfs-format's `Fmap::resolve` (which the writer used): (device index, device
/// offset, bytes left in that piece). Simple: the extents concatenated in order. Interleaved:
/// chunk `c = off / chunk` is in strip `c % nstrips`, at `(c / nstrips) * chunk + off % chunk`.
fn spec_resolve(fmap: &Fmap, off: u64) -> (u64, u64, u64) {
    match fmap {
        Fmap::Simple(exts) => {
            let mut start = 0u64;
            for e in exts {
                if off < start + e.len {
                    return (e.devindex, e.offset + (off - start), start + e.len - off);
                }
                start += e.len;
            }
            panic!("offset {off} beyond the extents {exts:?}");
        }
        Fmap::Interleaved(il) => {
            let (chunk, strips) = (il.chunk_size(), il.strips());
            let c = off / chunk;
            let s = &strips[(c % strips.len() as u64) as usize];
            let within = (c / strips.len() as u64) * chunk + off % chunk;
            assert!(within < s.len, "offset {off} beyond strip {s:?}");
            (s.devindex, s.offset + within, chunk - off % chunk)
        }
    }
}

/// The bytes of a file read straight from the backing image files at the offsets the format
/// gives for its map ([`spec_resolve`]: an oracle independent of famfs's resolver and read path).
fn read_backing(files: &[&Path], fmap: &Fmap, size: u64) -> Vec<u8> {
    let handles: Vec<std::fs::File> = files
        .iter()
        .map(|p| std::fs::File::open(p).unwrap())
        .collect();
    let mut out = vec![0u8; size as usize];
    let mut off = 0u64;
    while off < size {
        let (dev, dev_off, left) = spec_resolve(fmap, off);
        let n = left.min(size - off) as usize;
        handles[dev as usize]
            .read_exact_at(&mut out[off as usize..off as usize + n], dev_off)
            .unwrap();
        off += n as u64;
    }
    out
}

fn fmap_of(fs: &Famfs, path: &str) -> (Ino, Fmap, u64) {
    let ino = fs.namespace().resolve(path).unwrap();
    let f = fs.namespace().get(ino).unwrap().file().unwrap().clone();
    (ino, f.fmap, f.size)
}

#[test]
fn two_devices_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let p0 = image(dir.path(), "dev0", 4 * G);
    let p1 = image(dir.path(), "dev1", 4 * G);
    let mut fs = make(&p0, &[], [1; 16]);
    let primary_sb_before = head(&p0);
    // devadd (offline): device 1.
    let m1 = Media::open(&p1, Access::ReadWrite).unwrap();
    let idx = fs
        .with_log_lock(|a| a.add_device(m1, &p1.display().to_string(), [0xd1; 16]))
        .unwrap();
    assert_eq!(idx, 1);
    println!("ok - devadd gives index 1");
    // The secondary superblock on the device itself.
    let raw = head(&p1);
    let sec = SecondarySuperblock::decode(&raw[..SB_SIZE]).unwrap();
    assert_eq!(
        (sec.fs_uuid, sec.dev_uuid, sec.primary_dev_uuid),
        ([1; 16], [0xd1; 16], fs.superblock().dev_uuid)
    );
    assert_eq!(&raw[16..32], &[0; 16], "no log on a secondary");
    assert_eq!(
        u32::from_le_bytes(raw[104..108].try_into().unwrap()),
        SB_FLAG_SECONDARY
    );
    println!("ok - secondary superblock written");
    // The primary is untouched: a reader that ignores secondaries sees the same superblock.
    assert_eq!(head(&p0), primary_sb_before);
    assert_eq!(fs.devices().len(), 2);
    assert_eq!(
        fs.devices()[1],
        Device {
            index: 1,
            uuid: [0xd1; 16],
            size: 4 * G,
            name: p1.display().to_string()
        }
    );

    // A file on one device: the secondary has the most free space.
    let a = RelPath::new("one").unwrap();
    fs.create_file(&a, 5 * M + 7, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
    let (ia, fa, sa) = fmap_of(&fs, "one");
    assert!(fa.extents().iter().all(|e| e.devindex == 1), "{fa:?}");
    // A striped file across both devices.
    let b = RelPath::new("striped").unwrap();
    let p = famfs_alloc::InterleaveParams::new(2, 2, M, 4 * G).unwrap();
    fs.create_file(&b, 9 * M + 3, 0o644, 0, 0, Layout::Interleaved(p))
        .unwrap();
    let (ib, fb, sb) = fmap_of(&fs, "striped");
    let mut devs: Vec<u64> = fb.extents().iter().map(|e| e.devindex).collect();
    devs.sort();
    assert_eq!(devs, vec![0, 1], "{fb:?}");
    println!("ok - allocation: one device for a plain file, distinct devices for strips");
    // -N beyond the number of devices is refused.
    let p3 = famfs_alloc::InterleaveParams::new(3, 3, M, 4 * G).unwrap();
    let err = fs
        .create_file(
            &RelPath::new("three").unwrap(),
            9 * M,
            0o644,
            0,
            0,
            Layout::Interleaved(p3),
        )
        .unwrap_err();
    assert!(err.to_string().contains("at most 2"), "{err}");

    let da = pattern(3, sa as usize);
    let db = pattern(9, sb as usize);
    fs.write_data(ia, 0, &da).unwrap();
    fs.write_data(ib, 0, &db).unwrap();
    assert_eq!(read_backing(&[&p0, &p1], &fa, sa), da);
    assert_eq!(read_backing(&[&p0, &p1], &fb, sb), db);
    println!("ok - bytes in the backing files at the offsets the maps give");
    // A file on device 0 only, then the primary as a single-device reader sees it: a valid
    // primary superblock, an intact log whose every entry is FILE, MKDIR or ADD_DAXDEV (which
    // such a reader skips), and the device-0 file's bytes at its extents in the primary image.
    let z = fs
        .create_file(
            &RelPath::new("zero").unwrap(),
            3 * M,
            0o644,
            0,
            0,
            Layout::Contiguous,
        )
        .unwrap();
    let (_, fz, szz) = fmap_of(&fs, "zero");
    assert!(fz.extents().iter().all(|e| e.devindex == 0), "{fz:?}");
    let dz = pattern(11, szz as usize);
    fs.write_data(z, 0, &dz).unwrap();
    {
        let img = std::fs::File::open(&p0).unwrap();
        let mut sbb = vec![0u8; SB_SIZE];
        img.read_exact_at(&mut sbb, 0).unwrap();
        let psb = Superblock::decode(&sbb).unwrap();
        let mut hb = vec![0u8; LOG_HEADER_SIZE];
        img.read_exact_at(&mut hb, LOG_OFFSET).unwrap();
        let h = LogHeader::decode(&hb, psb.log_len).unwrap();
        let mut zero_map = None;
        for i in 0..h.next_index() {
            let mut eb = vec![0u8; LOG_ENTRY_SIZE];
            img.read_exact_at(
                &mut eb,
                LOG_OFFSET + LOG_HEADER_SIZE as u64 + i * LOG_ENTRY_SIZE as u64,
            )
            .unwrap();
            let raw = LogEntry::check_integrity(&eb, i).unwrap();
            assert!(
                matches!(raw.entry_type, 0 | 1 | 3),
                "entry {i} type {}",
                raw.entry_type
            );
            if let LogEntryBody::File(f) = LogEntry::decode_body(&raw).unwrap().body {
                if f.path.as_str() == "zero" {
                    zero_map = Some(f.fmap);
                }
            }
        }
        assert_eq!(read_backing(&[&p0], &zero_map.unwrap(), szz), dz);
    }
    println!("ok - the extended primary still reads as a single-device famfs (device 0's files)");
    drop(fs);

    // Reopen: the secondary is found by its uuid (from the log's name hint) and reads back.
    let fs = Famfs::open(&p0, Access::ReadOnly).unwrap();
    assert_eq!(fs.device_path(1), Some(p1.as_path()));
    let mut buf = vec![0u8; sb as usize];
    fs.read_data(ib, 0, &mut buf).unwrap();
    assert_eq!(buf, db);
    assert!(fs.problems().is_empty(), "{:?}", fs.problems());
    assert_eq!(fs.bitmaps().len(), 2);
    assert!(fs.bitmaps()[1].used_units() > 1);
    println!("ok - reopened: device 1 resolved by uuid, data reads back");
    drop(fs);

    // Missing secondary: only the files that need it fail.
    let hidden = dir.path().join("hidden");
    std::fs::rename(&p1, &hidden).unwrap();
    let fs = Famfs::open(&p0, Access::ReadOnly).unwrap();
    assert!(fs.device_missing(1).is_some());
    let mut buf = vec![0u8; sa as usize];
    let err = fs.read_data(ia, 0, &mut buf).unwrap_err();
    assert!(matches!(err, MetaError::FileDeviceMissing { .. }), "{err}");
    assert!(err.to_string().contains("/one"), "{err}");
    let mut buf = vec![0u8; sb as usize];
    assert!(
        fs.read_data(ib, 0, &mut buf).is_err(),
        "the striped file needs device 1 too"
    );
    println!("ok - a missing secondary fails the files on it: {err}");
    drop(fs);
    // Given explicitly, it is found again under any name.
    let fs = Famfs::open_with(&p0, Access::ReadOnly, std::slice::from_ref(&hidden)).unwrap();
    assert_eq!(fs.device_path(1), Some(hidden.as_path()));
    let mut buf = vec![0u8; sa as usize];
    fs.read_data(ia, 0, &mut buf).unwrap();
    assert_eq!(buf, da);
    println!("ok - found by uuid under another name");
}

#[test]
fn wrong_and_swapped_secondaries() {
    let dir = tempfile::tempdir().unwrap();
    let p0 = image(dir.path(), "p0", 4 * G);
    let p1 = image(dir.path(), "p1", 4 * G);
    let p2 = image(dir.path(), "p2", 4 * G);
    let mut fs = make(&p0, &[&p1, &p2], [2; 16]);
    assert_eq!(fs.devices().len(), 3);
    // One file on each secondary (most-free order: 1, then 2).
    let mut inos = Vec::new();
    for (i, name) in ["f1", "f2"].iter().enumerate() {
        let ino = fs
            .create_file(
                &RelPath::new(name).unwrap(),
                3 * M,
                0o644,
                0,
                0,
                Layout::Contiguous,
            )
            .unwrap();
        let d = pattern(40 + i as u8, (3 * M) as usize);
        fs.write_data(ino, 0, &d).unwrap();
        inos.push((ino, d));
    }
    let devs: Vec<u64> = ["f1", "f2"]
        .iter()
        .map(|n| fmap_of(&fs, n).1.extents()[0].devindex)
        .collect();
    assert_eq!(devs, vec![1, 2]);
    drop(fs);
    // Swap the two secondaries' names: each name hint now points at the other device.
    let tmp = dir.path().join("tmp");
    std::fs::rename(&p1, &tmp).unwrap();
    std::fs::rename(&p2, &p1).unwrap();
    std::fs::rename(&tmp, &p2).unwrap();
    let fs = Famfs::open(&p0, Access::ReadOnly).unwrap();
    assert_eq!(fs.device_path(1), Some(p2.as_path()));
    assert_eq!(fs.device_path(2), Some(p1.as_path()));
    for (ino, d) in &inos {
        let mut buf = vec![0u8; d.len()];
        fs.read_data(*ino, 0, &mut buf).unwrap();
        assert_eq!(&buf, d);
    }
    println!("ok - swapped device names: each device found by its uuid");
    drop(fs);

    // A secondary of another file system at the hinted path is refused, never used.
    let q0 = image(dir.path(), "q0", 4 * G);
    std::fs::remove_file(&p2).unwrap();
    let q2 = image(dir.path(), "p2", 4 * G);
    let other = make(&q0, &[&q2], [3; 16]);
    drop(other);
    let fs = Famfs::open(&p0, Access::ReadOnly).unwrap();
    assert!(
        fs.device_missing(1).is_some(),
        "device 1 must not be taken from another file system"
    );
    let m = Media::open(&q2, Access::ReadOnly).unwrap();
    let err = fs.check_secondary(1, &m).unwrap_err();
    assert!(err.to_string().contains("another file system"), "{err}");
    // And a primary is never a secondary.
    let m = Media::open(&p0, Access::ReadOnly).unwrap();
    assert!(fs
        .check_secondary(2, &m)
        .unwrap_err()
        .to_string()
        .contains("primary"));
    // Device 2 (now at p1) still serves its file.
    let mut buf = vec![0u8; inos[1].1.len()];
    fs.read_data(inos[1].0, 0, &mut buf).unwrap();
    assert_eq!(buf, inos[1].1);
    println!("ok - a secondary of another file system is detected and not used");
}

#[test]
fn add_device_refusals_and_log_checks() {
    let dir = tempfile::tempdir().unwrap();
    let p0 = image(dir.path(), "d0", 4 * G);
    let p1 = image(dir.path(), "d1", 4 * G);
    let mut fs = make(&p0, &[&p1], [4; 16]);
    // The same device again.
    let m = Media::open(&p1, Access::ReadWrite).unwrap();
    let err = fs
        .with_log_lock(|a| a.add_device(m, "again", [9; 16]))
        .unwrap_err();
    assert!(matches!(err, MetaError::AlreadyMember(_)), "{err}");
    // A uuid already in the table.
    let p2 = image(dir.path(), "d2", 4 * G);
    let m = Media::open(&p2, Access::ReadWrite).unwrap();
    let u1 = fs.devices()[1].uuid;
    assert!(matches!(
        fs.with_log_lock(|a| a.add_device(m, "dup", u1)),
        Err(MetaError::AlreadyMember(_))
    ));
    println!("ok - a device or uuid already in the table is refused");
    // An extent naming a device the log never added is damage, reported for that entry.
    let sb = fs.superblock().clone();
    drop(fs);
    let media = Media::open(&p0, Access::ReadWrite).unwrap();
    let h = media.read_log_header(&sb).unwrap();
    let idx = h.next_index();
    let e = LogEntry {
        seqnum: idx,
        body: LogEntryBody::File(FileEntry {
            size: M,
            flags: FileFlags::READ_WRITE,
            uid: 0,
            gid: 0,
            mode: 0o644,
            path: RelPath::new("ghost").unwrap(),
            fmap: Fmap::simple(vec![Extent {
                devindex: 5,
                offset: 100 * M,
                len: M,
            }])
            .unwrap(),
        }),
    };
    media.write_log_entry(&sb, idx, &e.encode()).unwrap();
    // And an ADD_DAXDEV out of order.
    let x = LogEntry {
        seqnum: idx + 1,
        body: LogEntryBody::AddDaxdev(DaxdevEntry {
            size: 4 * G,
            uuid: [8; 16],
            index: 7,
            name: String::new(),
        }),
    };
    media.write_log_entry(&sb, idx + 1, &x.encode()).unwrap();
    media
        .write_log_header(&h.advanced().unwrap().advanced().unwrap())
        .unwrap();
    let fs = Famfs::from_media(media).unwrap();
    let kinds: Vec<String> = fs.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(
        kinds[0].contains("device 5, which the log has not added"),
        "{kinds:?}"
    );
    assert!(kinds[1].contains("out of order"), "{kinds:?}");
    assert!(fs.problems().iter().all(|p| p.is_damage()));
    assert_eq!(fs.devices().len(), 2);
    println!("ok - extents on unknown devices and out-of-order ADD_DAXDEV are damage");
}
