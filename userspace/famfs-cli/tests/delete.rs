//! `famfs rm`, `rmdir`, `reclaim`, `compact` and the pending deletes of `fsck` (issue 23), on
//! image files; C compatibility of delete on the media the C tools made (userspace/testdata/c-famfs).

use std::io::Write;
use std::path::Path;
use std::process::Command;

mod common;
use common::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/c-famfs");

/// The C tools' superblock check (`famfs_check_super` in the C famfs_lib.c at 5d0919f),
/// transcribed from the C source for this test, independent of our parser: magic, version == 48
/// (FAMFS_CURRENT_VERSION), crc32 (zlib) of the 96 bytes before the crc, alloc unit 4 KiB or
/// 2 MiB. `Err` names the first check that fails, as the C function returns at it.
fn c_check_super(sb: &[u8]) -> Result<(), String> {
    let u64_at = |o: usize| u64::from_le_bytes(sb[o..o + 8].try_into().unwrap());
    if u64_at(0) != 0x87b2_82ff {
        return Err("magic".into());
    }
    if u64_at(8) != 48 {
        return Err(format!("superblock version={} (expected 48)", u64_at(8)));
    }
    if u64_at(96) != zlib_crc32(&sb[..96]) as u64 {
        return Err("crc mismatch in superblock".into());
    }
    if u64_at(32) != 4096 && u64_at(32) != 0x20_0000 {
        return Err("invalid alloc unit".into());
    }
    Ok(())
}

/// zlib's crc32, bit by bit (the reflected polynomial 0xedb88320), for the oracle above.
fn zlib_crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn head_of(img: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut b = vec![0u8; 10 << 20];
    std::fs::File::open(img)
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Media the C tools made stay byte for byte what the C tools accept until the first delete;
/// after it the C tools' own superblock check refuses them, while famfs-rs plays them.
#[test]
fn c_media_are_untouched_until_the_first_delete_then_refused_by_the_c_check() {
    let c_head = {
        let o = Command::new("gzip")
            .arg("-dc")
            .arg(Path::new(DATA).join("c-made.head.bin.gz"))
            .output()
            .expect("gzip");
        assert!(o.status.success());
        o.stdout
    };
    assert_eq!(
        c_check_super(&c_head[..200]),
        Ok(()),
        "the oracle accepts C media"
    );
    // This host is the image's master (uuid file in the C form).
    let h: String = c_head[80..96].iter().map(|b| format!("{b:02x}")).collect();
    let mut uuid = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
    .into_bytes();
    uuid.push(0);
    let e = Env::with_system_uuid_file(&uuid);
    let img = e.path("c.img");
    let mut f = std::fs::File::create(&img).unwrap();
    f.set_len(8 * G).unwrap();
    f.write_all(&c_head).unwrap();
    drop(f);
    let dev = img.to_string_lossy().into_owned();
    let log = 2 << 20;
    let c_entries = u64_at(&c_head, log + 40) as usize;
    // Our writers extend it: the superblock and every C entry stay as the C tools wrote them.
    e.ok(&["mkdir", "--device", &dev, "/rs"]);
    e.ok(&["creat", "--device", &dev, "-s", "3M", "/rs/f"]);
    e.ok(&["fsck", "--device", &dev]);
    let now = head_of(&img);
    assert_eq!(
        &now[..log],
        &c_head[..log],
        "superblock region byte-identical"
    );
    assert_eq!(
        &now[log..log + 32],
        &c_head[log..log + 32],
        "log header (crc part)"
    );
    let entries_end = log + 48 + 544 * c_entries;
    assert_eq!(&now[log + 48..entries_end], &c_head[log + 48..entries_end]);
    assert_eq!(u64_at(&now, log + 40), c_entries as u64 + 2);
    assert_eq!(c_check_super(&now[..200]), Ok(()));
    // The first delete: the C check refuses the superblock, at its version.
    e.ok(&["rm", "--device", &dev, "/rs/f"]);
    let now = head_of(&img);
    let why = c_check_super(&now[..200]).unwrap_err();
    assert!(why.contains("version=49"), "{why}");
    assert_eq!(&now[..8], &c_head[..8], "magic unchanged");
    assert_eq!(&now[16..96], &c_head[16..96], "only the version changed");
    // famfs-rs still plays it: clean, the C namespace there, one pending delete.
    let v = e.json(&["fsck", "--json", "--device", &dev]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["pending_deletes"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["pending_deletes"][0]["path"], "/rs/f", "{v}");
    e.ok(&["getmap", "--device", &dev, "/a/f1"]);
}

#[test]
fn rm_rmdir_reclaim_and_fsck() {
    let e = Env::new();
    e.image("img", 4 * G);
    e.ok_bin(MKFS, &["img"]);
    e.ok(&["mkdir", "--device", "img", "-p", "/d/sub"]);
    e.ok(&["creat", "--device", "img", "-s", "4M", "/d/a"]);
    e.ok(&["creat", "--device", "img", "-s", "2M", "/d/sub/b"]);
    e.ok(&["creat", "--device", "img", "-s", "2M", "/top"]);
    let a_off = e.json(&["getmap", "--json", "--device", "img", "/d/a"]);
    e.fails(&["rm", "--device", "img", "/d"], 1, "is a directory");
    e.fails(&["rmdir", "--device", "img", "/d"], 1, "not empty");
    e.fails(&["rm", "--device", "img", "/nope"], 1, "no such file");
    e.ok(&["rm", "--device", "img", "-f", "/nope"]);
    e.ok(&["rm", "--device", "img", "--revoke", "/top"]);
    e.ok(&["rm", "--device", "img", "-r", "/d"]);
    e.fails(&["getmap", "--device", "img", "/d/a"], 1, "");
    let v = e.json(&["fsck", "--json", "--device", "img"]);
    assert_eq!(v["ok"], true, "{v}");
    let p = v["pending_deletes"].as_array().unwrap();
    assert_eq!(p.len(), 3, "{v}");
    assert_eq!(p[0]["path"], "/top");
    assert_eq!(p[0]["revoke"], true);
    let text = e.ok(&["fsck", "--device", "img"]);
    assert!(text.contains("pending deletes: 3"), "{text}");
    // Nothing mounted here: everything is reclaimed; the space comes back.
    let r = e.json(&["reclaim", "--json", "--device", "img"]);
    assert_eq!(r["reclaimed"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(r["freed_bytes"], 8u64 << 20, "{r}");
    let v = e.json(&["fsck", "--json", "--device", "img"]);
    assert_eq!(v["pending_deletes"].as_array().unwrap().len(), 0, "{v}");
    e.ok(&["creat", "--device", "img", "-s", "4M", "/again"]);
    let again = e.json(&["getmap", "--json", "--device", "img", "/again"]);
    assert_eq!(
        again["fmap"]["extents"][0]["offset"], a_off["fmap"]["extents"][0]["offset"],
        "{again} {a_off}"
    );
    assert_eq!(e.json(&["fsck", "--json", "--device", "img"])["ok"], true);
    // A client may not delete.
    let c = Env::with_system_uuid_file(b"00000000-0000-0000-0000-00000000000c\n");
    let img = e.path("img").to_string_lossy().into_owned();
    c.fails(&["rm", "--device", &img, "/again"], 1, "client");
    c.fails(&["reclaim", "--device", &img], 1, "client");
    // Compaction needs --device.
    e.fails(&["compact"], 1, "unmounted");
}

/// Create/delete cycles far past the 15,420 entries of a default log: when the log is full the
/// error names `famfs compact`, which makes room, and the cycles go on; the space is reused
/// (every round's first file gets the same address) and fsck stays clean.
#[test]
fn create_delete_cycles_far_past_a_full_log() {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let e = Env::new();
    let img = dir.path().join("img");
    std::fs::File::create(&img).unwrap().set_len(4 * G).unwrap();
    let dev = img.to_string_lossy().into_owned();
    e.ok_bin(MKFS, &[&dev]);
    let per_round = 1000;
    let mut ops = 0u64;
    let mut compactions = 0;
    let mut first = std::collections::BTreeSet::new();
    let mut round = 0;
    let mut full_seen = false;
    let mut try_run = |args: &[&str]| -> bool {
        let o = e.run(FAMFS, args);
        if o.status.success() {
            return true;
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("the log is full"), "{args:?}: {err}");
        assert!(
            err.contains("famfs compact"),
            "the error names the way out: {err}"
        );
        full_seen = true;
        e.ok(&["compact", "--device", &dev]);
        compactions += 1;
        false
    };
    while ops < 40_000 {
        let names: Vec<String> = (0..per_round).map(|k| format!("/r{round}-{k}")).collect();
        let mut creat = vec!["creat".to_string(), "--device".into(), dev.clone()];
        for n in &names {
            creat.push("-M".into());
            creat.push(format!("{n},2M"));
        }
        let creat: Vec<&str> = creat.iter().map(String::as_str).collect();
        while !try_run(&creat) {}
        let m = e.json(&["getmap", "--json", "--device", &dev, &names[0]]);
        first.insert(m["fmap"]["extents"][0]["offset"].as_u64().unwrap());
        let mut rm = vec![
            "rm".to_string(),
            "-f".into(),
            "--device".into(),
            dev.clone(),
        ];
        rm.extend(names.iter().cloned());
        let rm: Vec<&str> = rm.iter().map(String::as_str).collect();
        while !try_run(&rm) {}
        while !try_run(&["reclaim", "--device", &dev]) {}
        ops += 2 * per_round as u64 + 16;
        round += 1;
    }
    assert!(
        compactions >= 2,
        "{compactions} compactions in {ops} entries"
    );
    assert!(full_seen);
    assert_eq!(first.len(), 1, "space reused: {first:?}");
    let v = e.json(&["fsck", "--json", "--device", &dev]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["collisions"], 0, "{v}");
}
