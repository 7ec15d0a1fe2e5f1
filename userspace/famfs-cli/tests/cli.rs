//! End-to-end tests of the `famfs` and `mkfs-famfs` binaries on image files.

use std::path::Path;

mod common;
use common::*;

fn read_head(img: &Path, entries: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(img).unwrap();
    let mut out = vec![0u8; 200];
    f.read_exact(&mut out).unwrap();
    let mut log = vec![0u8; 48 + 544 * entries];
    f.seek(SeekFrom::Start(2 << 20)).unwrap();
    f.read_exact(&mut log).unwrap();
    out.extend_from_slice(&log);
    out
}

fn hexdump(b: &[u8]) -> String {
    b.chunks(16)
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{:06x}: {}\n",
                i * 16,
                c.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect()
}

/// The golden image: mkfs + mkdir + creat with fixed uuids must reproduce the stored bytes of the
/// superblock, log header and first entries, and reading the image back gives the stored namespace.
/// Regenerate (after a deliberate format change only) with FAMFS_BLESS=1.
#[test]
fn golden_image() {
    let e = Env::new();
    e.image("golden.img", 4 * G);
    e.ok_bin(
        MKFS,
        &[
            "--fs-uuid",
            "11111111-2222-3333-4444-555555555555",
            "--dev-uuid",
            "66666666-7777-8888-9999-aaaaaaaaaaaa",
            "golden.img",
        ],
    );
    e.ok(&[
        "mkdir",
        "--device",
        "golden.img",
        "-m",
        "0755",
        "-u",
        "0",
        "-g",
        "0",
        "/dir",
    ]);
    e.ok(&[
        "creat",
        "--device",
        "golden.img",
        "-s",
        "3M",
        "-m",
        "0644",
        "-u",
        "1000",
        "-g",
        "100",
        "/dir/file",
    ]);
    e.ok(&[
        "creat",
        "--device",
        "golden.img",
        "-s",
        "5000",
        "-m",
        "0600",
        "-u",
        "0",
        "-g",
        "0",
        "/top",
    ]);
    let head = read_head(&e.path("golden.img"), 3);
    let ns = e.ok(&["logplay", "--device", "golden.img", "-v"]);
    let fsck = e.ok(&["fsck", "--json", "-v", "golden.img"]);
    let v: serde_json::Value = serde_json::from_str(&fsck).unwrap();
    let namespace = format!(
        "{ns}{}\n",
        serde_json::to_string_pretty(&v["file_list"]).unwrap()
    );
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    if std::env::var_os("FAMFS_BLESS").is_some() {
        std::fs::write(data.join("golden-head.bin"), &head).unwrap();
        std::fs::write(data.join("golden-namespace.txt"), &namespace).unwrap();
    }
    let want = std::fs::read(data.join("golden-head.bin")).unwrap();
    assert_eq!(want.len(), 200 + 48 + 3 * 544);
    if want != head {
        panic!(
            "golden bytes differ\nwant:\n{}\ngot:\n{}",
            hexdump(&want),
            hexdump(&head)
        );
    }
    assert_eq!(
        std::fs::read_to_string(data.join("golden-namespace.txt")).unwrap(),
        namespace
    );
    // Independent spot checks of the stored bytes (so a bad bless cannot hide a format change).
    assert_eq!(&want[0..8], &0x87b282ffu64.to_le_bytes());
    assert_eq!(&want[48..52], &[0x11, 0x11, 0x11, 0x11]);
    assert_eq!(&want[80..84], &[0x0f, 0x1e, 0x2d, 0x3c]);
    assert_eq!(&want[136..147], b"golden.img\0");
    let log = &want[200..];
    assert_eq!(&log[0..8], &0x0badcafef00du64.to_le_bytes());
    assert_eq!(&log[40..48], &3u64.to_le_bytes());
    let e1 = &log[48 + 544..48 + 1088];
    assert_eq!(&e1[0..8], &1u64.to_le_bytes()); // seqnum
    assert_eq!(&e1[16..24], &(3u64 << 20).to_le_bytes()); // size
    assert_eq!(&e1[16 + 24..16 + 33], b"dir/file\0");
    assert_eq!(
        &e1[16 + 104 + 16 + 8..16 + 104 + 16 + 16],
        &(10u64 << 20).to_le_bytes()
    ); // first data unit
    assert_eq!(
        &e1[16 + 104 + 16 + 16..16 + 104 + 16 + 24],
        &(4u64 << 20).to_le_bytes()
    ); // 3M rounded
}

#[test]
fn mkfs_policy() {
    let e = Env::new();
    e.image("small.img", 4 * G - (2 << 20));
    e.fails_bin(MKFS, &["small.img"], 1, "at least 4 GiB");
    e.image("img", 4 * G);
    e.ok_bin(MKFS, &["img"]);
    e.fails_bin(MKFS, &["img"], 1, "use -f");
    e.ok_bin(MKFS, &["-f", "img"]);
    e.fails_bin(MKFS, &["-k", "img"], 1, "add -f");
    e.ok_bin(MKFS, &["-f", "-k", "img"]);
    e.fails(&["fsck", "img"], 1, "");
    e.ok_bin(MKFS, &["-l", "16M", "img"]);
    assert!(e.ok(&["fsck", "img"]).contains("of 30840 entries"));
    e.fails_bin(MKFS, &["-l", "12M", "-f", "img"], 1, "power of two");
    e.fails_bin(MKFS, &["nope.img"], 1, "No such file");
    e.fails_bin(MKFS, &[], 2, "Usage");
    let v = e.ok_bin(MKFS, &["--version"]);
    assert!(v.contains("mkfs.famfs"));
}

#[test]
fn verbs_on_an_image() {
    let e = Env::new();
    e.image("img", 8 * G);
    e.ok_bin(MKFS, &["img"]);
    e.ok(&["mkdir", "--device", "img", "-p", "/a/b/c"]);
    e.fails(&["mkdir", "--device", "img", "/a"], 1, "already exists");
    e.fails(&["mkdir", "--device", "img", "/q/r"], 1, "no such file");
    e.ok(&[
        "creat", "--device", "img", "-s", "5M", "-S", "42", "/a/rand",
    ]);
    e.ok(&["verify", "--device", "img", "-S", "42", "-f", "/a/rand"]);
    e.fails(
        &["verify", "--device", "img", "-S", "41", "-f", "/a/rand"],
        1,
        "differs",
    );
    e.ok(&[
        "creat", "--device", "img", "-M", "/m1,1M,1", "-M", "/m2,7M,2", "-M", "/m3,100",
    ]);
    e.ok(&["verify", "--device", "img", "-S", "2", "-f", "/m2"]);
    e.ok(&[
        "creat", "--device", "img", "-s", "100M", "-N", "3", "-B", "4", "-C", "4M", "-S", "9",
        "/striped",
    ]);
    e.ok(&["verify", "--device", "img", "-S", "9", "-f", "/striped"]);
    let m: serde_json::Value =
        serde_json::from_str(&e.ok(&["getmap", "--json", "--device", "img", "/striped"])).unwrap();
    assert_eq!(m["fmap"]["type"], "interleaved");
    assert_eq!(m["fmap"]["nstrips"], 3);
    e.fails(
        &[
            "creat", "--device", "img", "-s", "1M", "-N", "5", "-B", "4", "/bad",
        ],
        1,
        "nstrips",
    );
    e.fails(
        &[
            "creat", "--device", "img", "-s", "1M", "-C", "3M", "-N", "2", "/bad",
        ],
        1,
        "power of two",
    );
    e.fails(
        &["creat", "--device", "img", "-s", "9G", "/huge"],
        1,
        "no space",
    );
    // cp, with data read back.
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 + i / 256) as u8).collect();
    std::fs::write(e.path("local.bin"), &data).unwrap();
    std::fs::create_dir_all(e.path("tree/sub")).unwrap();
    std::fs::write(e.path("tree/sub/x"), b"xx").unwrap();
    std::fs::write(e.path("tree/y"), b"yyy").unwrap();
    e.ok(&["cp", "--device", "img", "local.bin", "/copy.bin"]);
    e.ok(&[
        "cp",
        "--device",
        "img",
        "-r",
        "-t",
        "2",
        "tree",
        "local.bin",
        "/a",
    ]);
    let o = e.run(FAMFS, &["cat", "--device", "img", "/copy.bin"]);
    assert!(o.stdout == data, "cp data differs");
    let o = e.run(FAMFS, &["cat", "--device", "img", "/a/tree/sub/x"]);
    assert_eq!(o.stdout, b"xx");
    e.fails(&["cp", "--device", "img", "tree", "/b"], 1, "use -r");
    e.fails(
        &["cp", "--device", "img", "local.bin", "tree/y", "/copy.bin"],
        1,
        "existing directory",
    );
    // getmap, fsck.
    assert!(e
        .ok(&["getmap", "--device", "img", "/copy.bin"])
        .contains("extent type: simple"));
    e.fails(&["getmap", "-q", "--device", "img", "/a"], 1, "");
    e.ok(&["getmap", "-q", "--device", "img", "/copy.bin"]);
    e.ok(&["flush", "--device", "img", "/copy.bin"]);
    let f: serde_json::Value = serde_json::from_str(&e.ok(&["fsck", "--json", "img"])).unwrap();
    assert_eq!(f["ok"], true);
    assert_eq!(f["files"], 9);
    assert_eq!(f["directories"], 5);
    assert_eq!(f["role"], "master");
    // Paths that must be refused.
    e.fails(
        &["creat", "--device", "img", "-s", "1M", "/../x"],
        1,
        "'..'",
    );
    e.fails(
        &[
            "creat",
            "--device",
            "img",
            "-s",
            "1M",
            &format!("/{}", "n".repeat(80)),
        ],
        1,
        "too long",
    );
    e.fails(&["creat", "--device", "img", "-s", "0", "/z"], 1, "size 0");
    e.fails(&["creat", "--device", "img", "-s", "1X", "/z"], 2, "suffix");
    if nix::unistd::geteuid().is_root() {
        e.fails(
            &["mount", "img", "/nonexistent-mpt"],
            1,
            "mount point /nonexistent-mpt",
        );
        // An image without a famfs is refused before any server starts.
        e.image("blank", 4 * G);
        std::fs::create_dir(e.path("mpt")).unwrap();
        e.fails(
            &["mount", "blank", "mpt"],
            1,
            "holds no valid famfs superblock",
        );
    } else {
        e.fails(
            &["mount", "img", "/nonexistent-mpt"],
            1,
            "must be run as root",
        );
    }
    e.fails(
        &["creat", "-s", "1M", "/definitely/not/famfs"],
        1,
        "--device",
    );
}

#[test]
fn client_gets_clear_errors() {
    let e = Env::new();
    e.image("img", 4 * G);
    e.ok_bin(MKFS, &["img"]);
    // Become another host.
    std::fs::remove_file(e.path("system_uuid")).unwrap();
    std::fs::write(
        e.path("system_uuid"),
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee\n",
    )
    .unwrap();
    e.fails(&["mkdir", "--device", "img", "/d"], 1, "only the master");
    assert!(e.ok(&["fsck", "img"]).contains("this host is client"));
}

#[test]
fn corrupt_images_fail_without_panic() {
    let e = Env::new();
    e.image("img", 4 * G);
    e.ok_bin(MKFS, &["img"]);
    e.ok(&["mkdir", "--device", "img", "/d"]);
    e.ok(&["creat", "--device", "img", "-s", "1M", "/d/f"]);
    let pristine = read_head(&e.path("img"), 2);
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(e.path("img"))
        .unwrap();
    let restore = |f: &std::fs::File| {
        f.write_all_at(&pristine[..200], 0).unwrap();
        f.write_all_at(&pristine[200..], 2 << 20).unwrap();
    };
    // (device offset, expected message)
    let cases: &[(u64, &str)] = &[
        (0, "magic"),
        (8, "version"),
        (16, "crc"),
        (24, "crc"),
        (32, "crc"),
        (40, "crc"),
        (50, "crc"),
        (70, "crc"),
        (90, "crc"),
        (97, "crc"),
        ((2 << 20) + 1, "log magic"),
        ((2 << 20) + 9, "log header crc"),
        ((2 << 20) + 17, "log header crc"),
        ((2 << 20) + 25, "log header crc"),
        ((2 << 20) + 42, "past the end"),
        ((2 << 20) + 48 + 3, "log entry 0"),
        ((2 << 20) + 48 + 544 + 100, "log entry 1"),
        ((2 << 20) + 48 + 544 + 540, "log entry 1"),
    ];
    for &(off, msg) in cases {
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[b[0] ^ 0x5a], off).unwrap();
        let o = e.run(FAMFS, &["fsck", "img"]);
        assert_eq!(o.status.code(), Some(1), "offset {off}");
        let out = String::from_utf8_lossy(&o.stdout).to_lowercase();
        assert!(out.contains(msg), "offset {off}: {out:?} lacks {msg:?}");
        let o = e.run(FAMFS, &["logplay", "--device", "img"]);
        assert_eq!(o.status.code(), Some(1), "offset {off}");
        restore(&f);
    }
    e.ok(&["fsck", "img"]);
    // Truncated images.
    for len in [
        0u64,
        150,
        4096,
        (2 << 20) + 20,
        (2 << 20) + 48 + 600,
        9 << 20,
    ] {
        f.set_len(len).unwrap();
        let o = e.run(FAMFS, &["fsck", "img"]);
        assert_eq!(o.status.code(), Some(1), "len {len}");
        let o = e.run(FAMFS, &["creat", "--device", "img", "-s", "1M", "/x"]);
        assert_eq!(o.status.code(), Some(1), "len {len}");
    }
}

#[test]
fn fsck_reports_collisions() {
    let e = Env::new();
    e.image("img", 4 * G);
    e.ok_bin(MKFS, &["img"]);
    e.ok(&["creat", "--device", "img", "-s", "4M", "/a"]);
    e.ok(&["creat", "--device", "img", "-s", "4M", "/b"]);
    // Point /b's extent at /a's memory (rewriting its crc like a buggy writer would).
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(e.path("img"))
        .unwrap();
    let off = (2 << 20) + 48 + 544;
    let mut ent = vec![0u8; 544];
    f.read_exact_at(&mut ent, off).unwrap();
    ent[16 + 104 + 16 + 8..16 + 104 + 16 + 16].copy_from_slice(&(10u64 << 20).to_le_bytes());
    let crc = crc32fast::hash(&ent[..536]) as u64;
    ent[536..].copy_from_slice(&crc.to_le_bytes());
    f.write_all_at(&ent, off).unwrap();
    let o = e.run(FAMFS, &["fsck", "--json", "img"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["collisions"], 1);
    assert!(v["damage"][0].as_str().unwrap().contains("collision"));
}

/// Several processes creating files in one image at once: every entry must land.
#[test]
fn concurrent_creators_lose_nothing() {
    let e = Env::new();
    e.image("img", 8 * G);
    e.ok_bin(MKFS, &["img"]);
    let procs = 6;
    let per = 25;
    let children: Vec<_> = (0..procs)
        .map(|p| {
            let mut args = vec!["creat".to_string(), "--device".into(), "img".into()];
            for i in 0..per {
                args.push("-M".into());
                args.push(format!("/p{p}-f{i},{},{}", 1 + i * 4096, p * 1000 + i));
            }
            // One file per invocation too, to interleave lock holders more.
            e.command(FAMFS).args(&args).spawn().unwrap()
        })
        .collect();
    let singles: Vec<_> = (0..procs * 4)
        .map(|i| {
            e.command(FAMFS)
                .args([
                    "creat",
                    "--device",
                    "img",
                    "-s",
                    "3M",
                    "-S",
                    &i.to_string(),
                    &format!("/single{i}"),
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children.into_iter().chain(singles) {
        assert!(c.wait().unwrap().success());
    }
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["fsck", "--json", "img"])).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["files"], (procs * per + procs * 4) as u64);
    assert_eq!(v["log"]["entries"], (procs * per + procs * 4) as u64);
    assert_eq!(v["collisions"], 0);
    for i in 0..procs * 4 {
        e.ok(&[
            "verify",
            "--device",
            "img",
            "-S",
            &i.to_string(),
            "-f",
            &format!("/single{i}"),
        ]);
    }
    e.ok(&["verify", "--device", "img", "-S", "5024", "-f", "/p5-f24"]);
}

/// Several devices through the binaries: mkfs.famfs with a secondary, devadd offline and its
/// refusals, allocation across devices (getmap), data through --device checked in the images at
/// the offsets getmap gives, fsck per device and from a secondary, famfs daxdev with the cache.
#[test]
fn multi_device_cli() {
    use std::os::unix::fs::FileExt;
    let e = Env::new();
    for n in ["p", "s1", "s2", "other"] {
        e.image(n, 4 * G);
    }
    e.image("small", G);
    e.ok_bin(MKFS, &["p", "s1"]);
    e.fails_bin(MKFS, &["-f", "p", "p"], 1, "primary device");
    e.fails(&["devadd", "p", "p"], 1, "primary device");
    e.fails(&["devadd", "p", "s1"], 1, "already device 1");
    e.fails(&["devadd", "p", "small"], 1, "at least 4 GiB");
    e.ok_bin(MKFS, &["other"]);
    e.fails(
        &["devadd", "p", "other"],
        1,
        "already holds a famfs file system",
    );
    let out = e.ok(&["devadd", "p", "s2"]);
    assert!(out.contains("added as device 2"), "{out}");
    // Files: plain on the most-free device (1), striped over 3 devices.
    e.ok(&["--device", "p", "creat", "-s", "3M", "-S", "5", "/a"]);
    e.ok(&[
        "--device", "p", "creat", "-s", "11M", "-N", "3", "-S", "6", "/b",
    ]);
    e.fails(
        &["--device", "p", "creat", "-s", "11M", "-N", "4", "/c"],
        1,
        "-N at most 3",
    );
    let map = |f: &str| -> serde_json::Value {
        serde_json::from_str(&e.ok(&["--device", "p", "getmap", "--json", f])).unwrap()
    };
    let ma = map("/a");
    assert_eq!(
        ma["fmap"]["extents"][0]["devindex"],
        serde_json::json!(1),
        "{ma:#}"
    );
    let mb = map("/b");
    let mut devs: Vec<u64> = mb["fmap"]["strips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["devindex"].as_u64().unwrap())
        .collect();
    devs.sort();
    assert_eq!(devs, vec![0, 1, 2]);
    e.ok(&[
        "--device", "p", "verify", "-S", "5", "-f", "/a", "-m", "/b,6",
    ]);
    // Oracle: the bytes `famfs cat` prints equal the images' bytes at the strips' offsets.
    let content = e.run(FAMFS, &["--device", "p", "cat", "/b"]).stdout;
    assert_eq!(content.len(), 11 << 20);
    let imgs: Vec<std::fs::File> = ["p", "s1", "s2"]
        .iter()
        .map(|n| std::fs::File::open(e.path(n)).unwrap())
        .collect();
    let chunk = mb["fmap"]["chunk_size"].as_u64().unwrap();
    let strips = mb["fmap"]["strips"].as_array().unwrap();
    for (i, piece) in content.chunks(chunk as usize).enumerate() {
        let s = &strips[i % strips.len()];
        let off = s["offset"].as_u64().unwrap() + (i / strips.len()) as u64 * chunk;
        let mut buf = vec![0u8; piece.len()];
        imgs[s["devindex"].as_u64().unwrap() as usize]
            .read_exact_at(&mut buf, off)
            .unwrap();
        assert!(
            buf == piece,
            "chunk {i} differs from the image of device {}",
            s["devindex"]
        );
    }
    // fsck: per device, and a secondary leads to its primary.
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["fsck", "--json", "p"])).unwrap();
    assert_eq!(v["ok"], serde_json::json!(true));
    let d = v["devices"].as_array().unwrap();
    assert_eq!(d.len(), 3);
    assert!(
        d.iter()
            .all(|x| x["collisions"] == serde_json::json!(0) && x["missing"].is_null()),
        "{v:#}"
    );
    assert_eq!(
        d[1]["allocated_bytes"].as_u64(),
        Some((2 + 4 + 4) << 20),
        "{v:#}"
    );
    let t = e.ok(&["fsck", "s2"]);
    assert!(
        t.contains("secondary device; checking the file system on its primary"),
        "{t}"
    );
    assert!(t.trim_end().ends_with("clean"), "{t}");
    // daxdev: resolve by uuid (the images given with --also), the cache, a wrong uuid.
    let fs_uuid = v["fs_uuid"].as_str().unwrap().to_string();
    let u2 = d[2]["uuid"].as_str().unwrap().to_string();
    let s2 = e.path("s2").display().to_string();
    let p = e.ok(&["daxdev", "resolve", &fs_uuid, &u2, "--also", &s2]);
    assert_eq!(p.trim(), s2);
    let cached = std::fs::read_to_string(e.path("cache/daxdevs.json")).unwrap();
    assert!(cached.contains(&u2), "{cached}");
    // From the cache alone (no --also): the entry is checked against the device and used.
    assert_eq!(e.ok(&["daxdev", "resolve", &fs_uuid, &u2]).trim(), s2);
    let o = e.run(
        FAMFS,
        &[
            "daxdev",
            "resolve",
            &fs_uuid,
            "00000000-0000-0000-0000-000000000001",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let l: serde_json::Value =
        serde_json::from_str(&e.ok(&["daxdev", "--json", "list", "--also", &s2])).unwrap();
    assert_eq!(l[0]["kind"], serde_json::json!("secondary"));
}
