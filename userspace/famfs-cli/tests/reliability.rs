//! Corrupt media through the tools: log entries that try to escape the mount, duplicate paths and
//! overlapping extents are skipped or reported by `famfs logplay` and `famfs fsck` with the index
//! of the entry; read-only verbs never write the image (checked with a hash of every written byte
//! of the sparse image plus its mtime).

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

mod common;
use common::*;
const LOG: u64 = 2 << 20;

/// Hash of every byte the sparse image holds (data segments found with SEEK_DATA/SEEK_HOLE,
/// with their offsets), plus the mtime: any write, even into a hole, changes it.
fn fingerprint(img: &Path) -> (u64, i64, i64) {
    use std::hash::Hasher;
    let f = std::fs::File::open(img).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut pos = 0i64;
    let mut buf = vec![0u8; 1 << 20];
    while pos < len {
        use nix::unistd::{lseek, Whence};
        // ENXIO: no data at or after `pos`.
        let Ok(data) = lseek(&f, pos, Whence::SeekData) else {
            break;
        };
        let hole = lseek(&f, data, Whence::SeekHole).unwrap();
        h.write_i64(data);
        let mut off = data;
        while off < hole {
            let n = ((hole - off) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], off as u64).unwrap();
            h.write(&buf[..n]);
            off += n as i64;
        }
        pos = hole;
    }
    let md = f.metadata().unwrap();
    (h.finish(), md.mtime(), md.mtime_nsec())
}

fn entry_off(i: u64) -> u64 {
    LOG + 48 + i * 544
}

fn read_entry(f: &std::fs::File, i: u64) -> Vec<u8> {
    let mut e = vec![0u8; 544];
    f.read_exact_at(&mut e, entry_off(i)).unwrap();
    e
}

/// Writes entry `i` with a fixed crc (and counts it in the header when it is past the end).
fn write_entry(f: &std::fs::File, i: u64, mut e: Vec<u8>) {
    e[0..8].copy_from_slice(&i.to_le_bytes());
    let crc = crc32fast::hash(&e[..536]) as u64;
    e[536..].copy_from_slice(&crc.to_le_bytes());
    f.write_all_at(&e, entry_off(i)).unwrap();
    let mut n = [0u8; 8];
    f.read_exact_at(&mut n, LOG + 40).unwrap();
    if u64::from_le_bytes(n) <= i {
        f.write_all_at(&(i + 1).to_le_bytes(), LOG + 32).unwrap();
        f.write_all_at(&(i + 1).to_le_bytes(), LOG + 40).unwrap();
    }
}

fn set_path(e: &mut [u8], at: usize, p: &[u8]) {
    e[at..at + 80].fill(0);
    e[at..at + p.len()].copy_from_slice(p);
}

const FILE_PATH: usize = 16 + 24;
const MKDIR_PATH: usize = 16 + 12;
const EXT0_OFFSET: usize = 16 + 104 + 16 + 8;

#[test]
fn bad_entries_are_named_by_index_and_read_only_verbs_never_write() {
    let e = Env::new();
    std::fs::File::create(e.path("img"))
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    e.ok(&["--version"]);
    assert!(e.run(MKFS, &["img"]).status.success());
    e.ok(&["mkdir", "--device", "img", "/d"]); // 0
    e.ok(&["creat", "--device", "img", "-s", "4M", "-S", "7", "/d/f"]); // 1
    e.ok(&["creat", "--device", "img", "-s", "2M", "/g"]); // 2
    e.ok(&["creat", "--device", "img", "-s", "2M", "/h"]); // 3
    e.ok(&["mkdir", "--device", "img", "/e"]); // 4
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(e.path("img"))
        .unwrap();
    // 2: a path escaping the mount.
    let mut x = read_entry(&f, 2);
    set_path(&mut x, FILE_PATH, b"../escape");
    write_entry(&f, 2, x);
    // 3: its memory inside the log.
    let mut x = read_entry(&f, 3);
    x[EXT0_OFFSET..EXT0_OFFSET + 8].copy_from_slice(&(LOG + 2 * M).to_le_bytes());
    write_entry(&f, 3, x);
    // 5: /d/f again, on /d/f's memory (a duplicate and a collision).
    write_entry(&f, 5, read_entry(&f, 1));
    // 6: a directory over the file /d/f.
    let mut x = read_entry(&f, 4);
    set_path(&mut x, MKDIR_PATH, b"d/f");
    write_entry(&f, 6, x);
    // 7: an absolute path; 8: an embedded NUL and '..' after it (the path is "ok").
    let mut x = read_entry(&f, 4);
    set_path(&mut x, MKDIR_PATH, b"/etc");
    write_entry(&f, 7, x);
    let mut x = read_entry(&f, 4);
    set_path(&mut x, MKDIR_PATH, b"ok\0/../../x");
    write_entry(&f, 8, x);
    // 9: a directory whose path has an empty component; 10: a file with an overlong path.
    let mut x = read_entry(&f, 4);
    set_path(&mut x, MKDIR_PATH, b"a//b");
    write_entry(&f, 9, x);
    let mut x = read_entry(&f, 1);
    x[FILE_PATH..FILE_PATH + 80].fill(b'n');
    write_entry(&f, 10, x);
    drop(f);

    let before = fingerprint(&e.path("img"));
    let o = e.run(FAMFS, &["fsck", "img"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "DAMAGE: entry 2: invalid entry: path component \"..\" is not allowed",
        "DAMAGE: entry 3 (/h): allocation collision",
        "DAMAGE: entry 5 (/d/f): allocation collision",
        "warning: entry 5 (/d/f): path already exists; entry ignored",
        "DAMAGE: entry 6 (/d/f): directory over an existing file",
        "DAMAGE: entry 7: invalid entry: path is not relative",
        "DAMAGE: entry 9: invalid entry: path component \"\" is not allowed",
        "DAMAGE: entry 10: invalid entry: path field is not NUL-terminated",
        "damaged",
    ] {
        assert!(out.contains(want), "fsck output lacks {want:?}");
    }
    assert!(!out.contains("entry 8"), "entry 8 is fine");
    let o = e.run(FAMFS, &["fsck", "--json", "img"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let idx = |k: &str| -> Vec<u64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s.as_str()
                    .unwrap()
                    .split([' ', ':'])
                    .nth(1)
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(idx("damage"), vec![2, 3, 5, 6, 7, 9, 10]);
    assert_eq!(idx("warnings"), vec![5]);
    assert_eq!(v["collisions"], 2);
    assert_eq!(v["log"]["entries"], 11);
    // logplay skips the same entries, naming them, and plays the rest.
    let out = e.ok(&["logplay", "--device", "img", "-v"]);
    for i in [2, 3, 5, 6, 7, 9, 10] {
        assert!(
            out.contains(&format!("warning: entry {i}")),
            "logplay does not name entry {i}"
        );
    }
    assert!(out.contains(" /ok\n") && !out.contains("escape") && !out.contains("/etc"));
    // The rest of the file system is usable.
    e.ok(&["verify", "--device", "img", "-S", "7", "-f", "/d/f"]);
    e.ok(&["getmap", "--device", "img", "/d/f"]);
    assert_eq!(
        e.run(FAMFS, &["cat", "--device", "img", "/g"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        e.run(FAMFS, &["cat", "--device", "img", "/d/f"])
            .stdout
            .len(),
        4 << 20
    );
    assert_eq!(
        fingerprint(&e.path("img")),
        before,
        "a read-only verb wrote the image"
    );

    // Damaged superblock and log header: every read-only verb refuses, nothing is written.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(e.path("img"))
        .unwrap();
    for (off, msg) in [
        (0u64, "magic"),
        (30, "crc"),
        (LOG, "log magic"),
        (LOG + 44, "past the end"),
        (entry_off(4) + 100, "log entry 4"),
    ] {
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[b[0] ^ 0x81], off).unwrap();
        let before = fingerprint(&e.path("img"));
        for args in [
            &["fsck", "img"][..],
            &["fsck", "--json", "img"],
            &["logplay", "--device", "img"],
            &["getmap", "--device", "img", "/d/f"],
            &["cat", "--device", "img", "/d/f"],
            &["verify", "--device", "img", "-S", "7", "-f", "/d/f"],
        ] {
            let o = e.run(FAMFS, args);
            assert_eq!(
                o.status.code(),
                Some(1),
                "{args:?} with byte {off:#x} damaged"
            );
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            assert!(
                text.to_lowercase().contains(msg),
                "{args:?}: {text:?} lacks {msg:?}"
            );
        }
        assert_eq!(
            fingerprint(&e.path("img")),
            before,
            "byte {off:#x}: a read-only verb wrote the image"
        );
        f.write_all_at(&b, off).unwrap();
    }
}

/// An append interrupted between the two counter stores leaves next_seqnum != next_index: fsck
/// warns, the log still plays, and the next append repairs the header.
#[test]
fn torn_log_counters_are_repaired() {
    let e = Env::new();
    std::fs::File::create(e.path("img"))
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    assert!(e.run(MKFS, &["img"]).status.success());
    e.ok(&["creat", "--device", "img", "-s", "1M", "-S", "1", "/a"]);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(e.path("img"))
        .unwrap();
    f.write_all_at(&2u64.to_le_bytes(), LOG + 32).unwrap();
    let out = e.ok(&["fsck", "img"]);
    assert!(
        out.contains("warning: log header: next_seqnum 2 differs from next_index 1"),
        "{out}"
    );
    e.ok(&["creat", "--device", "img", "-s", "1M", "-S", "2", "/b"]);
    let out = e.ok(&["fsck", "img"]);
    assert!(!out.contains("warning") && out.contains("clean"));
    e.ok(&["verify", "--device", "img", "-S", "1", "-f", "/a"]);
    e.ok(&["verify", "--device", "img", "-S", "2", "-f", "/b"]);
}
