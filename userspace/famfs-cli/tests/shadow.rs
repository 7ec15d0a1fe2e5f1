//! `famfs logplay --shadow` (issue 25): the C famfs's shadow tree, its YAML byte-compatible with
//! the C tools' libyaml emitter (goldens written by libyaml itself: tests/data/shadow/gen.py) and
//! read back with an independent YAML library (serde_yaml).

use famfs_cli::shadow::{emit_file_yaml, parse_file_yaml, ShadowFile};
use famfs_format::{Extent, Fmap, Interleave};
use serde_json::Value;
use std::path::Path;

mod common;
use common::*;

fn golden(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/shadow")
            .join(format!("{name}.yaml")),
    )
    .unwrap()
}

fn file(
    path: &str,
    size: u64,
    flags: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    fmap: Fmap,
) -> ShadowFile {
    ShadowFile {
        path: path.into(),
        size,
        flags,
        mode,
        uid,
        gid,
        fmap,
    }
}

fn ext(d: u64, o: u64, l: u64) -> Extent {
    Extent {
        devindex: d,
        offset: o,
        len: l,
    }
}

/// Our emitter writes what libyaml writes for the C event sequence, byte for byte, and our reader
/// reads it back.
#[test]
fn yaml_matches_libyaml_goldens() {
    // Long values with spaces: libyaml folds them past column 80.
    let w = (0..20)
        .map(|i| format!("word{i:02}"))
        .collect::<Vec<_>>()
        .join(" ");
    let one = Fmap::Simple(vec![ext(0, 0xa00000, 0x200000)]);
    let cases = [
        (
            "simple",
            file(
                "dir/file",
                3145728,
                2,
                0o644,
                0,
                0,
                Fmap::Simple(vec![ext(0, 0xa00000, 0x400000)]),
            ),
        ),
        (
            "multi",
            file(
                "a/b/c",
                13 << 20,
                2,
                0o600,
                1000,
                1000,
                Fmap::Simple(vec![
                    ext(0, 0xa00000, 0x400000),
                    ext(1, 0x40000000, 0xa00000),
                ]),
            ),
        ),
        (
            "striped",
            file(
                "il",
                8 << 20,
                2,
                0o640,
                7,
                8,
                Fmap::Interleaved(
                    Interleave::new(
                        0x200000,
                        vec![
                            ext(0, 0x40000000, 0x400000),
                            ext(0, 0x80000000, 0x400000),
                            ext(0, 0xc0000000, 0x400000),
                        ],
                    )
                    .unwrap(),
                ),
            ),
        ),
        (
            "superblock",
            ShadowFile::meta(".meta/.superblock", 0, 0x200000, 0o444),
        ),
        (
            "log",
            ShadowFile::meta(".meta/.log", 0x200000, 0x800000, 0o644),
        ),
        (
            "quoted",
            file(
                "x/a: b",
                4096,
                2,
                0o644,
                0,
                0,
                Fmap::Simple(vec![ext(0, 0xa00000, 0x200000)]),
            ),
        ),
        (
            "hash",
            file(
                "#lead",
                4096,
                2,
                0o644,
                0,
                0,
                Fmap::Simple(vec![ext(0, 0xa00000, 0x200000)]),
            ),
        ),
        (
            "nonascii",
            file(
                "caf\u{e9}",
                4096,
                2,
                0o644,
                0,
                0,
                Fmap::Simple(vec![ext(0, 0xa00000, 0x200000)]),
            ),
        ),
        (
            "long-plain",
            file(
                &format!("dir with spaces/{w}/{w}"),
                4096,
                2,
                0o644,
                0,
                0,
                one.clone(),
            ),
        ),
        (
            "long-single",
            file(
                &format!("x: {w}  two  spaces {w}"),
                4096,
                2,
                0o644,
                0,
                0,
                one.clone(),
            ),
        ),
        (
            "long-double",
            file(
                &format!("caf\u{e9} {w}  {w}"),
                4096,
                2,
                0o644,
                0,
                0,
                one.clone(),
            ),
        ),
    ];
    for (name, f) in cases {
        let g = golden(name);
        assert_eq!(emit_file_yaml(&f), g, "{name}");
        assert_eq!(parse_file_yaml(&g).unwrap(), f, "{name}");
        // The independent reader sees the same values.
        let v: serde_yaml::Value = serde_yaml::from_str(&g).unwrap();
        assert_eq!(v["file"]["path"].as_str(), Some(f.path.as_str()), "{name}");
    }
}

/// A shadow YAML file as serde_yaml reads it: (path, size, mode, uid, gid, [(devindex, offset,
/// len)], striped chunk size).
type Read = (
    String,
    u64,
    u32,
    u64,
    u64,
    Vec<(u64, u64, u64)>,
    Option<u64>,
);

fn read_yaml(p: &Path) -> Read {
    let v: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let f = &v["file"];
    let hex = |x: &serde_yaml::Value| -> u64 {
        match x {
            serde_yaml::Value::Number(n) => n.as_u64().unwrap(),
            serde_yaml::Value::String(s) => {
                u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
            }
            other => panic!("{other:?}"),
        }
    };
    let mode = match &f["mode"] {
        serde_yaml::Value::Number(n) => u32::from_str_radix(&n.to_string(), 8).unwrap(),
        serde_yaml::Value::String(s) => u32::from_str_radix(s, 8).unwrap(),
        other => panic!("{other:?}"),
    };
    let exts_of = |l: &serde_yaml::Value| -> Vec<(u64, u64, u64)> {
        l.as_sequence()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["devindex"].as_u64().unwrap(),
                    hex(&e["offset"]),
                    hex(&e["length"]),
                )
            })
            .collect()
    };
    let (exts, chunk) = match f.get("striped_ext_list") {
        Some(s) => (
            exts_of(&s[0]["simple_ext_list"]),
            Some(hex(&s[0]["chunk_size"])),
        ),
        None => (exts_of(&f["simple_ext_list"]), None),
    };
    (
        f["path"].as_str().unwrap().to_string(),
        f["size"].as_u64().unwrap(),
        mode,
        f["uid"].as_u64().unwrap(),
        f["gid"].as_u64().unwrap(),
        exts,
        chunk,
    )
}

/// logplay --shadow DIR: the tree under DIR/root holds the meta files, every directory (its mode)
/// and a YAML file per file whose values (read with serde_yaml) are the log's (fsck --json,
/// getmap --json); a second run keeps the tree and adds only what is new; -s checks the files and
/// catches one edited by hand; --daxdev needs --shadow; DIR must exist.
#[test]
fn shadow_tree_from_the_log() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    e.image("img", 8 * G);
    e.ok_bin(MKFS, &["img"]);
    e.ok(&["mkdir", "--device", "img", "-m", "0750", "/d"]);
    e.ok(&["mkdir", "--device", "img", "-p", "/d/e/f"]);
    e.ok(&[
        "creat", "--device", "img", "-s", "3M", "-m", "0600", "/d/plain",
    ]);
    e.ok(&[
        "creat",
        "--device",
        "img",
        "-s",
        "20M",
        "-N",
        "2",
        "-B",
        "4",
        "/d/e/striped",
    ]);
    e.ok(&["creat", "--device", "img", "-s", "1M", "/top"]);
    std::fs::create_dir(e.path("sh")).unwrap();
    let out = e.ok(&["logplay", "--shadow", "sh", "--device", "img"]);
    assert!(
        out.contains("famfs_logplay(shadow): 6 log entries; 3 new files; 3 new directories"),
        "{out}"
    );
    let root = e.path("sh/root");
    let (p, size, mode, ..) = read_yaml(&root.join(".meta/.superblock"));
    assert_eq!(
        (p.as_str(), size, mode),
        (".meta/.superblock", 2 << 20, 0o444)
    );
    let (p, size, mode, _, _, exts, _) = read_yaml(&root.join(".meta/.log"));
    assert_eq!(
        (p.as_str(), size, mode, exts),
        (".meta/.log", 8 << 20, 0o644, vec![(0, 2 << 20, 8 << 20)])
    );
    assert_eq!(
        std::fs::metadata(root.join("d"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o750
    );
    assert!(root.join("d/e/f").is_dir());
    let fsck: Value = serde_json::from_str(&e.ok(&["fsck", "--json", "-v", "img"])).unwrap();
    let listed = fsck["file_list"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for f in listed {
        let path = f["path"].as_str().unwrap();
        let (p, size, mode, _, _, exts, chunk) = read_yaml(&root.join(&path[1..]));
        assert_eq!(p, path[1..]);
        assert_eq!(size, f["size"].as_u64().unwrap());
        assert_eq!(format!("{mode:o}"), f["mode"].as_str().unwrap());
        let m: Value =
            serde_json::from_str(&e.ok(&["getmap", "--device", "img", "--json", path])).unwrap();
        let key = if chunk.is_some() { "strips" } else { "extents" };
        let want: Vec<(u64, u64, u64)> = m["fmap"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["devindex"].as_u64().unwrap(),
                    x["offset"].as_u64().unwrap(),
                    x["len"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(exts, want, "{path}");
        assert_eq!(chunk, m["fmap"]["chunk_size"].as_u64(), "{path}");
    }
    // A second run over the same tree, after one more file: only that one is new.
    e.ok(&["creat", "--device", "img", "-s", "2M", "/d/later"]);
    let out = e.ok(&["logplay", "-S", "sh", "--device", "img", "-v"]);
    assert!(
        out.contains("7 log entries; 1 new files; 0 new directories")
            && out.contains("Existed: 3 files, 3 directories"),
        "{out}"
    );
    // -s reads every file back; a hand-edited one is caught.
    let out = e.ok(&["logplay", "-S", "sh", "-s", "--device", "img"]);
    assert!(
        out.contains("shadow yaml checked for 4 files") && out.contains("there were 0 yaml errors"),
        "{out}"
    );
    let top = root.join("top");
    let t = std::fs::read_to_string(&top)
        .unwrap()
        .replace("size: 1048576", "size: 1048577");
    std::fs::write(&top, t).unwrap();
    e.fails(
        &["logplay", "-S", "sh", "-s", "--device", "img"],
        1,
        "does not read back as the logged file",
    );
    // --daxdev: the device given that way (test mode always on, as in C); only with --shadow.
    std::fs::create_dir(e.path("sh2")).unwrap();
    let out = e.ok(&["logplay", "-S", "sh2", "-d", "img"]);
    assert!(out.contains("shadow yaml checked for 4 files"), "{out}");
    assert_eq!(
        std::fs::read(e.path("sh2/root/d/plain")).unwrap(),
        std::fs::read(root.join("d/plain")).unwrap()
    );
    e.fails(&["logplay", "-d", "img"], 1, "only used with --shadow");
    e.fails(
        &["logplay", "-S", "nosuchdir", "--device", "img"],
        1,
        "not an existing directory",
    );
    // A path ending in /root is the root itself.
    let out = e.ok(&["logplay", "-S", "sh2/root", "-d", "img"]);
    assert!(out.contains("0 new files"), "{out}");
}
