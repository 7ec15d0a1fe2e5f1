//! Compatibility with the C famfs, checked on media the C tools wrote (userspace/testdata/c-famfs/,
//! see its README): the first 10 MiB of an 8 GiB image formatted and extended by the C
//! `mkfs.famfs` and `famfs`, the namespace it describes (read by an independent parser), and a
//! system uuid file as the C tools write it. These files are the oracle: never regenerate them
//! with famfs-rs.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/c-famfs");
/// The size of the device the C tools formatted (also in the superblock's daxdev_size).
const C_DEVICE_SIZE: u64 = 8 * G;

fn data(name: &str) -> PathBuf {
    Path::new(DATA).join(name)
}

/// The first 10 MiB the C tools wrote, decompressed with the system's gzip.
fn c_head() -> Vec<u8> {
    let o = Command::new("gzip")
        .arg("-dc")
        .arg(data("c-made.head.bin.gz"))
        .output()
        .expect("gzip");
    assert!(o.status.success());
    assert_eq!(o.stdout.len(), 10 << 20);
    o.stdout
}

/// The superblock's system uuid (bytes 80..96), formatted without our code.
fn c_master_uuid(head: &[u8]) -> String {
    let h: String = head[80..96].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// What c-made.namespace.json says, per path.
fn expected() -> BTreeMap<String, Value> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(data("c-made.namespace.json")).unwrap())
            .unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Every extent of the C namespace: (offset, len).
fn c_extents() -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for v in expected().values() {
        let Some(f) = v.get("fmap") else { continue };
        let list = f
            .get("extents")
            .or_else(|| f.get("strips"))
            .unwrap()
            .as_array()
            .unwrap();
        for e in list {
            out.push((e[1].as_u64().unwrap(), e[2].as_u64().unwrap()));
        }
    }
    out
}

/// A test directory holding `c.img`: a sparse 8 GiB image whose first 10 MiB are the C-made ones.
/// `master`: the system uuid file holds the image's master uuid, written the way the C tools write
/// it (36 characters and a NUL); otherwise it is the C-made file of another host.
fn c_env(master: bool) -> Env {
    let head = c_head();
    let e = if master {
        let mut b = c_master_uuid(&head).into_bytes();
        b.push(0);
        Env::with_system_uuid_file(&b)
    } else {
        Env::with_system_uuid_file(&std::fs::read(data("system_uuid.c-made")).unwrap())
    };
    let mut f = std::fs::File::create(e.path("c.img")).unwrap();
    f.set_len(C_DEVICE_SIZE).unwrap();
    f.write_all(&head).unwrap();
    e
}

fn img(e: &Env) -> String {
    e.path("c.img").to_string_lossy().into_owned()
}

/// The image played by our library, as this host.
fn open(e: &Env) -> famfs_meta::Famfs {
    std::env::set_var(famfs_meta::SYSTEM_UUID_ENV, e.uuid_file());
    famfs_meta::Famfs::open(Path::new(&img(e)), famfs_meta::Access::ReadOnly).unwrap()
}

/// Our namespace in the oracle's form (path -> kind, mode, uid, gid[, size, fmap]).
fn our_namespace(fs: &famfs_meta::Famfs) -> BTreeMap<String, Value> {
    use famfs_format::Fmap;
    let ns = fs.namespace();
    let mut out = BTreeMap::new();
    for n in ns.nodes().filter(|n| n.ino != famfs_meta::ROOT_INO) {
        let mut v = Map::new();
        v.insert(
            "kind".into(),
            json!(if n.is_dir() { "dir" } else { "file" }),
        );
        v.insert("mode".into(), json!(format!("0o{:o}", n.mode)));
        v.insert("uid".into(), json!(n.uid));
        v.insert("gid".into(), json!(n.gid));
        if let Some(f) = n.file() {
            v.insert("size".into(), json!(f.size));
            let ext = |e: &famfs_format::Extent| json!([e.devindex, e.offset, e.len]);
            let m = match &f.fmap {
                Fmap::Simple(x) => {
                    json!({"type": "simple", "extents": x.iter().map(ext).collect::<Vec<_>>()})
                }
                Fmap::Interleaved(i) => {
                    json!({"type": "interleaved", "chunk_size": i.chunk_size(), "nstrips": i.nstrips(),
                    "strips": i.strips().iter().map(ext).collect::<Vec<_>>()})
                }
            };
            v.insert("fmap".into(), m);
        }
        out.insert(format!("/{}", ns.path_of(n.ino).unwrap()), Value::Object(v));
    }
    out
}

/// Our log play sees exactly the namespace the C tools made, and no problem.
#[test]
fn log_play_sees_the_c_namespace() {
    let e = c_env(true);
    let fs = open(&e);
    assert_eq!(our_namespace(&fs), expected());
    assert!(fs.problems().is_empty(), "{:?}", fs.problems());
    assert_eq!(fs.role(), famfs_meta::Role::Master);
    // The CLI's log play lists the same paths with the same kinds.
    let out = e.ok(&["logplay", "-v", "--device", &img(&e)]);
    let listed: BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (k, p) = l.split_once(' ')?;
            p.trim().starts_with('/').then(|| {
                (
                    p.trim().to_string(),
                    if k == "dir" { "dir" } else { "file" }.to_string(),
                )
            })
        })
        .filter(|(_, k)| k == "dir" || k == "file")
        .collect();
    let want: BTreeMap<String, String> = expected()
        .iter()
        .map(|(p, v)| (p.clone(), v["kind"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(listed, want);
}

/// fsck calls the C-made image clean, counts what the oracle holds, and lists the same maps.
#[test]
fn fsck_clean_with_the_c_maps() {
    let e = c_env(true);
    let want = expected();
    let v = e.json(&["fsck", "--json", "-v", &img(&e)]);
    assert_eq!(v["ok"], json!(true), "{v:#}");
    assert_eq!(v["damage"], json!([]));
    assert_eq!(v["warnings"], json!([]));
    assert_eq!(v["role"], json!("master"));
    assert_eq!(v["device_size"], json!(C_DEVICE_SIZE));
    let nfiles = want.values().filter(|v| v["kind"] == "file").count();
    assert_eq!(v["files"], json!(nfiles));
    let ext = |e: &Value| json!({"devindex": e[0], "offset": e[1], "len": e[2]});
    let ours_fmap = |f: &Value| {
        let list = f
            .get("extents")
            .or_else(|| f.get("strips"))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(ext)
            .collect::<Vec<_>>();
        match f["type"].as_str().unwrap() {
            "simple" => json!({"type": "simple", "extents": list}),
            _ => {
                json!({"type": "interleaved", "nstrips": f["nstrips"], "chunk_size": f["chunk_size"], "strips": list})
            }
        }
    };
    let mut listed = BTreeMap::new();
    for f in v["file_list"].as_array().unwrap() {
        listed.insert(f["path"].as_str().unwrap().to_string(), f.clone());
    }
    for (p, w) in want.iter().filter(|(_, w)| w["kind"] == "file") {
        let f = &listed[p];
        assert_eq!(f["size"], w["size"], "{p}");
        assert_eq!(
            format!("0o{}", f["mode"].as_str().unwrap()),
            w["mode"].as_str().unwrap(),
            "{p}"
        );
        assert_eq!((&f["uid"], &f["gid"]), (&w["uid"], &w["gid"]), "{p}");
        assert_eq!(f["fmap"], ours_fmap(&w["fmap"]), "{p}");
        // getmap agrees, and -q says it is a famfs file.
        let g = e.json(&["getmap", "--json", "--device", &img(&e), p]);
        assert_eq!(g["fmap"], ours_fmap(&w["fmap"]), "{p}");
        assert_eq!(g["size"], w["size"], "{p}");
        e.ok(&["getmap", "-q", "--device", &img(&e), p]);
    }
    assert_eq!(listed.len(), nfiles);
    // Allocated space: the superblock and log (10 MiB) and every extent of the oracle.
    let used: u64 = 10 * (1 << 20) + c_extents().iter().map(|(_, l)| l).sum::<u64>();
    assert_eq!(v["allocated_bytes"], json!(used));
    let text = e.ok(&["fsck", &img(&e)]);
    assert!(text.trim_end().ends_with("clean"), "{text}");
}

/// Our writers extend the C-made file system; the old namespace is unchanged, the new files take
/// only space the C files do not use, and every reader still agrees.
#[test]
fn our_writers_extend_c_media() {
    let e = c_env(true);
    let img = img(&e);
    std::fs::write(e.path("src"), vec![7u8; 3_000_000]).unwrap();
    e.ok(&["mkdir", "--device", &img, "/rs"]);
    e.ok(&["mkdir", "--device", &img, "-p", "/a/b/deep"]);
    e.ok(&["creat", "--device", &img, "-s", "3M", "-S", "5", "/rs/f"]);
    e.ok(&[
        "creat", "--device", &img, "-s", "8M", "-N", "2", "-B", "4", "/rs/il",
    ]);
    e.ok(&["cp", "--device", &img, "src", "/a/b/deep/"]);
    e.ok(&["verify", "--device", &img, "-S", "5", "-f", "/rs/f"]);
    let fs = open(&e);
    assert!(fs.problems().is_empty(), "{:?}", fs.problems());
    let ours = our_namespace(&fs);
    let want = expected();
    for (p, w) in &want {
        assert_eq!(ours.get(p), Some(w), "{p} changed");
    }
    let new: Vec<&String> = ours.keys().filter(|p| !want.contains_key(*p)).collect();
    assert_eq!(
        new,
        ["/a/b/deep", "/a/b/deep/src", "/rs", "/rs/f", "/rs/il"]
    );
    let c = c_extents();
    for p in &new {
        let Some(f) = ours[*p].get("fmap") else {
            continue;
        };
        for x in f
            .get("extents")
            .or_else(|| f.get("strips"))
            .unwrap()
            .as_array()
            .unwrap()
        {
            let (o, l) = (x[1].as_u64().unwrap(), x[2].as_u64().unwrap());
            assert!(
                o >= 10 << 20 && o + l <= C_DEVICE_SIZE,
                "{p}: [{o:#x}, +{l:#x}) outside the data area"
            );
            for (co, cl) in &c {
                assert!(
                    o + l <= *co || co + cl <= o,
                    "{p}: [{o:#x}, +{l:#x}) overlaps a C extent [{co:#x}, +{cl:#x})"
                );
            }
        }
    }
    let v = e.json(&["fsck", "--json", &img]);
    assert_eq!(v["ok"], json!(true), "{v:#}");
    assert_eq!(v["warnings"], json!([]));
}

/// The system uuid file the C tools wrote (36 characters and a NUL) is read: a host with it is a
/// client of the C image (another host's), and becomes the master of what our mkfs.famfs makes.
#[test]
fn c_system_uuid_file_gives_the_roles() {
    let e = c_env(false);
    let c_uuid =
        String::from_utf8(std::fs::read(data("system_uuid.c-made")).unwrap()[..36].to_vec())
            .unwrap();
    let v = e.json(&["fsck", "--json", &img(&e)]);
    assert_eq!(v["role"], json!("client"));
    let o = e.run(FAMFS, &["mkdir", "--device", &img(&e), "/nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("ours {c_uuid}")));
    // mkfs.famfs with that file: the superblock carries its uuid and this host is the master.
    let fresh = e.path("fresh.img");
    std::fs::File::create(&fresh)
        .unwrap()
        .set_len(4 * G)
        .unwrap();
    let o = e.run(MKFS, &[fresh.to_str().unwrap()]);
    assert!(o.status.success());
    let mut sb = vec![0u8; 200];
    let mut f = std::fs::File::open(&fresh).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    std::io::Read::read_exact(&mut f, &mut sb).unwrap();
    assert_eq!(c_master_uuid(&sb), c_uuid);
    let v = e.json(&["fsck", "--json", fresh.to_str().unwrap()]);
    assert_eq!(v["role"], json!("master"));
    e.ok(&["mkdir", "--device", fresh.to_str().unwrap(), "/yes"]);
    // The file is left as the C tools wrote it (nothing rewrites it).
    assert_eq!(
        std::fs::read(e.uuid_file()).unwrap(),
        std::fs::read(data("system_uuid.c-made")).unwrap()
    );
    // An unreadable uuid file is not silently taken for "client": fsck warns.
    std::fs::remove_file(e.uuid_file()).unwrap();
    std::fs::write(e.uuid_file(), "garbage").unwrap();
    let v = e.json(&["fsck", "--json", fresh.to_str().unwrap()]);
    assert_eq!(v["role"], json!("client"));
    assert!(
        v["warnings"].to_string().contains("system uuid file"),
        "{v:#}"
    );
}

/// Appends an ADD_DAXDEV entry (index 1, 16 GiB) to the C-made log, as a C master adding a device
/// would: the entry in the next slot, then the header's counters.
fn append_daxdev(img: &str) {
    use famfs_format::{DaxdevEntry, LogEntryBody};
    append_entry(
        img,
        LogEntryBody::AddDaxdev(DaxdevEntry {
            size: 16 * G,
            uuid: [0xab; 16],
            index: 1,
            name: String::new(),
        }),
    );
}

/// ADD_DAXDEV entries (as a C master writes them: no name hint) are reported by fsck (text, -v,
/// --json) and logplay -v, and do not make the file system damaged: the device joins the device
/// table and, absent from this host, is reported missing.
#[test]
fn add_daxdev_reported() {
    let e = c_env(true);
    let img = img(&e);
    let v = e.json(&["fsck", "--json", &img]);
    assert_eq!(v["daxdevs"], json!([]));
    append_daxdev(&img);
    let line = "daxdev index 1 size 17179869184 uuid abababab-abab-abab-abab-abababababab";
    let v = e.json(&["fsck", "--json", &img]);
    assert_eq!(v["ok"], json!(true), "{v:#}");
    assert_eq!(
        v["daxdevs"],
        json!([{"index": 1, "size": 16 * G, "uuid": "abababab-abab-abab-abab-abababababab", "name": ""}])
    );
    assert_eq!(v["devices"].as_array().map(|a| a.len()), Some(2), "{v:#}");
    assert_eq!(
        v["devices"][1]["uuid"],
        json!("abababab-abab-abab-abab-abababababab")
    );
    assert_eq!(v["devices"][1]["local_path"], json!(null));
    assert!(
        v["devices"][1]["missing"]
            .as_str()
            .is_some_and(|m| m.contains("not found on this host")),
        "{v:#}"
    );
    for args in [&["fsck", &img][..], &["fsck", "-v", &img][..]] {
        let t = e.ok(args);
        assert!(
            t.contains("devices:      2 (the primary and 1 added by ADD_DAXDEV)"),
            "{t}"
        );
        assert!(
            t.contains(
                "device 1: secondary uuid abababab-abab-abab-abab-abababababab size 17179869184"
            ),
            "{t}"
        );
        assert!(t.contains("MISSING"), "{t}");
        assert!(t.trim_end().ends_with("clean"), "{t}");
    }
    let t = e.ok(&["logplay", "--device", &img]);
    assert!(t.contains(", 1 ADD_DAXDEV"), "{t}");
    let t = e.ok(&["logplay", "-v", "--device", &img]);
    assert!(t.contains(line), "{t}");
}

/// Appends a log entry to an image the way a master does (entry, then the header's counters).
fn append_entry(img: &str, body: famfs_format::LogEntryBody) {
    use famfs_format::{LogEntry, LOG_ENTRY_SIZE, LOG_HEADER_SIZE, LOG_OFFSET};
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut h = [0u8; LOG_HEADER_SIZE];
    f.seek(SeekFrom::Start(LOG_OFFSET)).unwrap();
    f.read_exact(&mut h).unwrap();
    let next = u64::from_le_bytes(h[40..48].try_into().unwrap());
    let e = LogEntry { seqnum: next, body };
    f.seek(SeekFrom::Start(
        LOG_OFFSET + LOG_HEADER_SIZE as u64 + next * LOG_ENTRY_SIZE as u64,
    ))
    .unwrap();
    f.write_all(&e.encode()).unwrap();
    f.seek(SeekFrom::Start(LOG_OFFSET + 32)).unwrap();
    f.write_all(&(next + 1).to_le_bytes()).unwrap();
    f.write_all(&(next + 1).to_le_bytes()).unwrap();
}

/// A device whose size is not a multiple of 2 MiB, with a file the C allocator placed in the
/// partial last unit: our readers call it clean with a warning, and we never allocate there.
#[test]
fn partial_last_unit_read_not_allocated() {
    use famfs_format::{Extent, FileEntry, FileFlags, Fmap, LogEntryBody, RelPath};
    let e = c_env(true);
    let img = img(&e);
    let dev = C_DEVICE_SIZE - (1 << 20);
    // The superblock's device size (offset 112, outside the crc) and the device itself.
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(112)).unwrap();
    f.write_all(&dev.to_le_bytes()).unwrap();
    f.set_len(dev).unwrap();
    drop(f);
    let last = dev / (2 << 20) * (2 << 20); // start of the partial unit
    let fmap = Fmap::simple(vec![Extent::new(last, 2 << 20)]).unwrap();
    let body = LogEntryBody::File(FileEntry {
        size: 4096,
        flags: FileFlags::READ_WRITE,
        uid: 0,
        gid: 0,
        mode: 0o644,
        path: RelPath::new("tail").unwrap(),
        fmap,
    });
    append_entry(&img, body);
    let v = e.json(&["fsck", "--json", &img]);
    assert_eq!(v["ok"], json!(true), "{v:#}");
    assert_eq!(v["damage"], json!([]));
    assert!(
        v["warnings"].to_string().contains("partial last unit"),
        "{v:#}"
    );
    let text = e.ok(&["fsck", &img]);
    assert!(text.trim_end().ends_with("clean"), "{text}");
    // Fill every free run below the partial unit in one session (one file per run, in device
    // order: the session's cursor moves forward run by run); then nothing is left, and no extent
    // reaches the partial unit.
    let mut used: Vec<(u64, u64)> = c_extents();
    used.push((0, 10 << 20));
    used.sort();
    let (mut pos, mut runs) = (0u64, Vec::new());
    for (o, l) in used {
        if o > pos {
            runs.push(o - pos);
        }
        pos = pos.max(o + l);
    }
    runs.push(last - pos);
    assert_eq!(runs.iter().sum::<u64>(), v["free_bytes"].as_u64().unwrap());
    let specs: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| format!("fill{i},{r}"))
        .collect();
    let mut args = vec!["creat", "--device", &img];
    for s in &specs {
        args.extend(["-M", s.as_str()]);
    }
    e.ok(&args);
    for i in 0..runs.len() {
        let (_, x) = extents_of(&e, &img, &format!("/fill{i}"));
        assert!(
            x[0].0 + x[0].1 <= last,
            "allocated up to {:#x}, past the last whole unit {last:#x}",
            x[0].0 + x[0].1
        );
    }
    let v = e.json(&["fsck", "--json", &img]);
    assert_eq!((&v["ok"], &v["free_bytes"]), (&json!(true), &json!(0)));
    let o = e.run(FAMFS, &["creat", "--device", &img, "-s", "1", "/more"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no space"));
}

/// A fresh image made by our mkfs, this host the master.
fn fresh(e: &Env, size: u64) -> String {
    let p = e.path("fresh.img");
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    let o = e.run(MKFS, &[p.to_str().unwrap()]);
    assert!(o.status.success());
    p.to_string_lossy().into_owned()
}

fn extents_of(e: &Env, img: &str, path: &str) -> (String, Vec<(u64, u64)>) {
    let g = e.json(&["getmap", "--json", "--device", img, path]);
    let list = g["fmap"]
        .get("extents")
        .or_else(|| g["fmap"].get("strips"))
        .unwrap()
        .as_array()
        .unwrap();
    (
        g["fmap"]["type"].as_str().unwrap().to_string(),
        list.iter()
            .map(|x| (x["offset"].as_u64().unwrap(), x["len"].as_u64().unwrap()))
            .collect(),
    )
}

/// As the C allocator: an interleaved file smaller than one chunk gets one simple extent; one of
/// a chunk or more is striped.
#[test]
fn small_interleaved_file_is_simple() {
    let e = c_env(false);
    let img = fresh(&e, 8 * G);
    e.ok(&[
        "creat", "--device", &img, "-s", "1M", "-N", "4", "-B", "8", "/small",
    ]);
    assert_eq!(
        extents_of(&e, &img, "/small"),
        ("simple".into(), vec![(10 << 20, 2 << 20)])
    );
    e.ok(&[
        "creat", "--device", &img, "-s", "3M", "-N", "2", "-B", "4", "-C", "4M", "/small4",
    ]);
    assert_eq!(
        extents_of(&e, &img, "/small4"),
        ("simple".into(), vec![(12 << 20, 4 << 20)])
    );
    e.ok(&[
        "creat", "--device", &img, "-s", "2M", "-N", "4", "-B", "8", "/chunk",
    ]);
    let (ty, strips) = extents_of(&e, &img, "/chunk");
    assert_eq!((ty.as_str(), strips.len()), ("interleaved", 4));
}

/// As the C allocator: within one locked session (creat -M, cp of several files) contiguous
/// allocations continue from where the previous one ended; a new session starts first fit.
#[test]
fn allocation_cursor_kept_for_a_session() {
    let e = c_env(false);
    let img = fresh(&e, 4 * G);
    const M: u64 = 1 << 20;
    // One 2 MiB strip at the start of each 1 GiB bucket: free runs of 1012M, then 1022M each.
    e.ok(&[
        "creat", "--device", &img, "-s", "8M", "-N", "4", "-B", "4", "/il",
    ]);
    let (_, mut strips) = extents_of(&e, &img, "/il");
    strips.sort();
    assert_eq!(
        strips,
        vec![(10 * M, 2 * M), (G, 2 * M), (2 * G, 2 * M), (3 * G, 2 * M)]
    );
    // 1020M fits only after the second strip; the 2M file of the same session follows it.
    e.ok(&["creat", "--device", &img, "-M", "a,1020M", "-M", "b,2M"]);
    assert_eq!(extents_of(&e, &img, "/a").1, vec![(G + 2 * M, 1020 * M)]);
    assert_eq!(extents_of(&e, &img, "/b").1, vec![(G + 1022 * M, 2 * M)]);
    // A new session starts over: first fit.
    e.ok(&["creat", "--device", &img, "-s", "2M", "/c"]);
    assert_eq!(extents_of(&e, &img, "/c").1, vec![(12 * M, 2 * M)]);
    // cp of several files is one session too.
    std::fs::write(e.path("x1"), vec![1u8; 1500 * M as usize / 1000]).unwrap();
    e.ok(&["mkdir", "--device", &img, "/d"]);
    let big = e.path("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1020 * M)
        .unwrap();
    e.ok(&[
        "cp",
        "--device",
        &img,
        big.to_str().unwrap(),
        e.path("x1").to_str().unwrap(),
        "/d/",
    ]);
    assert_eq!(
        extents_of(&e, &img, "/d/big").1,
        vec![(2 * G + 2 * M, 1020 * M)]
    );
    assert_eq!(
        extents_of(&e, &img, "/d/x1").1,
        vec![(2 * G + 1022 * M, 2 * M)]
    );
}

/// Our mkfs.famfs writes the same superblock bytes as the C one, apart from the uuids, the crc,
/// the device size and name: magic, versions, log offset and length, alloc unit, and sb_flags
/// (offset 104) = 0 with its padding.
#[test]
fn our_superblock_matches_the_c_bytes() {
    let e = c_env(false);
    let img = fresh(&e, 8 * G);
    let mut b = vec![0u8; 200];
    std::io::Read::read_exact(&mut std::fs::File::open(&img).unwrap(), &mut b).unwrap();
    let c = c_head();
    assert_eq!(
        &b[..48],
        &c[..48],
        "magic, version, log offset/len, alloc unit, omf version"
    );
    assert_eq!(&b[104..120], &c[104..120], "sb_flags, padding, device size");
    // The log header of an empty log vs the C one: magic and length (its counters differ).
    let lo = 2 << 20;
    let mut h = vec![0u8; 48];
    let mut f = std::fs::File::open(&img).unwrap();
    f.seek(SeekFrom::Start(lo as u64)).unwrap();
    std::io::Read::read_exact(&mut f, &mut h).unwrap();
    assert_eq!(&h[..24], &c[lo..lo + 24], "log magic, len, last_index");
}
