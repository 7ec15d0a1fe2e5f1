//! Behaviours users of the C famfs CLI rely on (Documentation/cli.md, "Coming from the C famfs").

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

mod common;
use common::*;

/// A test directory whose `img` is a fresh 8 GiB famfs (this host is its master).
fn formatted() -> Env {
    let e = Env::new();
    e.image("img", 8 * G);
    e.ok_bin(MKFS, &["img"]);
    e
}

/// path -> (mode, size) of every file and "dir" entries, from fsck --json -v and logplay -v.
fn files(e: &Env) -> std::collections::BTreeMap<String, (String, u64)> {
    let v: Value = serde_json::from_str(&e.ok(&["fsck", "--json", "-v", "img"])).unwrap();
    v["file_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                (
                    f["mode"].as_str().unwrap().to_string(),
                    f["size"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}
fn dirs(e: &Env) -> Vec<String> {
    e.ok(&["logplay", "-v", "--device", "img"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("dir ").map(|p| p.trim().to_string()))
        .collect()
}
fn cat(e: &Env, p: &str) -> Vec<u8> {
    let o = e.run(FAMFS, &["cat", "--device", "img", p]);
    assert!(o.status.success());
    o.stdout
}

/// The C test tree of userspace/testdata/c-famfs/README: SRCDIR 0755 holding one (0600) and
/// sub/two (0644).
fn src_tree(e: &Env) -> String {
    let d = e.path("SRCDIR");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("one"), vec![1u8; 300_000]).unwrap();
    std::fs::write(d.join("sub/two"), vec![2u8; 4 << 20]).unwrap();
    std::fs::set_permissions(d.join("one"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(d.join("sub/two"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.to_string_lossy().into_owned()
}

/// cp -r: files keep their own modes (C: the source directory's); into an existing directory the
/// source's name is kept (C: its contents go straight in, here with --contents).
#[test]
fn cp_recursive_layout_and_modes() {
    let e = formatted();
    let src = src_tree(&e);
    e.ok(&["cp", "--device", "img", "-r", &src, "/cpr"]);
    e.ok(&["mkdir", "--device", "img", "/cprx", "/cpry"]);
    e.ok(&["cp", "--device", "img", "-r", &src, "/cprx/"]);
    e.ok(&["cp", "--device", "img", "-r", "--contents", &src, "/cpry/"]);
    let f = files(&e);
    assert_eq!(f["/cpr/one"], ("600".into(), 300_000));
    assert_eq!(f["/cpr/sub/two"], ("644".into(), 4 << 20));
    assert_eq!(f["/cprx/SRCDIR/one"], ("600".into(), 300_000));
    assert_eq!(f["/cprx/SRCDIR/sub/two"], ("644".into(), 4 << 20));
    assert_eq!(f["/cpry/one"], ("600".into(), 300_000));
    assert_eq!(f["/cpry/sub/two"], ("644".into(), 4 << 20));
    assert_eq!(f.len(), 6);
    let d = dirs(&e);
    assert_eq!(
        d,
        [
            "/cpr",
            "/cpr/sub",
            "/cprx",
            "/cpry",
            "/cprx/SRCDIR",
            "/cprx/SRCDIR/sub",
            "/cpry/sub"
        ]
    );
    assert_eq!(cat(&e, "/cpry/sub/two"), vec![2u8; 4 << 20]);
}

/// cp -m MODE is taken as given; --umask applies the umask (022 here) as the C tool does.
#[test]
fn cp_mode_and_umask() {
    let e = formatted();
    std::fs::write(e.path("src"), vec![3u8; 5000]).unwrap();
    e.ok(&["cp", "--device", "img", "-m", "0666", "src", "/plain"]);
    e.ok(&[
        "cp", "--device", "img", "-m", "0666", "--umask", "src", "/masked",
    ]);
    let f = files(&e);
    assert_eq!(f["/plain"].0, "666");
    assert_eq!(f["/masked"].0, "644");
}

/// cp over an existing famfs file of the same size overwrites it (as C); another size fails; -c
/// compares the copy with its source.
#[test]
fn cp_overwrite_same_size_and_compare() {
    let e = formatted();
    std::fs::write(e.path("a"), vec![0xaau8; 3 << 20]).unwrap();
    std::fs::write(e.path("b"), vec![0xbbu8; 3 << 20]).unwrap();
    std::fs::write(e.path("c"), vec![0xccu8; 1 << 20]).unwrap();
    e.ok(&["cp", "--device", "img", "a", "/f"]);
    let before = e.ok(&["logplay", "--device", "img"]);
    e.ok(&["cp", "--device", "img", "-c", "b", "/f"]);
    assert_eq!(cat(&e, "/f"), vec![0xbbu8; 3 << 20]);
    // No new log entry: the same file was rewritten.
    assert_eq!(e.ok(&["logplay", "--device", "img"]), before);
    e.fails(
        &["cp", "--device", "img", "c", "/f"],
        1,
        "cannot change size",
    );
    assert_eq!(cat(&e, "/f"), vec![0xbbu8; 3 << 20]);
}

/// cp of several sources where one is a directory (without -r): the files are copied, the
/// directory is reported, the exit code is 1.
#[test]
fn cp_several_sources_with_a_directory() {
    let e = formatted();
    std::fs::write(e.path("a"), b"aaaa").unwrap();
    std::fs::write(e.path("b"), b"bbbb").unwrap();
    std::fs::create_dir(e.path("adir")).unwrap();
    e.ok(&["mkdir", "--device", "img", "/d"]);
    e.fails(
        &["cp", "--device", "img", "a", "adir", "b", "/d"],
        1,
        "adir is a directory (use -r)",
    );
    assert_eq!(cat(&e, "/d/a"), b"aaaa");
    assert_eq!(cat(&e, "/d/b"), b"bbbb");
}

/// `-?` prints help and exits 0 on every verb and on mkfs.famfs (the C CLI's habit).
#[test]
fn question_mark_is_help() {
    let e = formatted();
    for v in [
        "mkdir", "creat", "cp", "verify", "logplay", "fsck", "getmap", "cat", "flush", "check",
        "chkread", "clone", "mkmeta", "mount", "umount",
    ] {
        let o = e.run(FAMFS, &[v, "-?"]);
        assert_eq!(o.status.code(), Some(0), "{v}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage: famfs"),
            "{v}"
        );
    }
    let o = e.run(MKFS, &["-?"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage:"));
    // After `--` it is an argument like any other.
    assert_eq!(
        famfs_cli::famfs_cmd::help_alias(["famfs", "mount", "-?", "--", "-?"].map(Into::into)),
        ["famfs", "mount", "--help", "--", "-?"].map(std::ffi::OsString::from)
    );
}

/// Sizes in hexadecimal, as the C CLI takes them; mkfs.famfs -v prints more.
#[test]
fn hex_sizes_and_mkfs_verbose() {
    let e = formatted();
    e.ok(&["creat", "--device", "img", "-s", "0x800000", "/hex"]);
    assert_eq!(files(&e)["/hex"].1, 0x800000);
    let o = e.run(MKFS, &["-f", "-v", "img"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("alloc unit:  2097152 bytes") && out.contains("device uuid:"),
        "{out}"
    );
    let o = e.run(MKFS, &["-f", "-D", "--set-daxmode", "img"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("--set-daxmode: img is not a devdax device; nothing to rebind"));
}

/// creat of an existing file of the same size re-initialises it (-S refills it) without a new
/// log entry; another size fails.
#[test]
fn creat_existing_same_size() {
    let e = formatted();
    e.ok(&["creat", "--device", "img", "-s", "3M", "-S", "1", "/f"]);
    let before = e.ok(&["logplay", "--device", "img"]);
    e.ok(&["creat", "--device", "img", "-s", "3M", "-S", "9", "/f"]);
    e.ok(&["verify", "--device", "img", "-S", "9", "-f", "/f"]);
    assert_eq!(e.ok(&["logplay", "--device", "img"]), before);
    e.fails(
        &["creat", "--device", "img", "-s", "4M", "/f"],
        1,
        "cannot change size",
    );
    e.fails(
        &["creat", "--device", "img", "-s", "4M", "-r", "/f"],
        1,
        "cannot change size",
    );
}

/// creat -M: a bad name does not stop the good ones (exit 1); -S/-r with -M is refused.
#[test]
fn creat_multi_partial_success() {
    let e = formatted();
    e.fails(
        &[
            "creat",
            "--device",
            "img",
            "-M",
            "/good1,1M",
            "-M",
            "/nodir/x,1M",
            "-M",
            "/good2,2M,5",
        ],
        1,
        "1 of 3 files not created",
    );
    let f = files(&e);
    assert_eq!(
        (f["/good1"].1, f["/good2"].1, f.len()),
        (1 << 20, 2 << 20, 2)
    );
    e.ok(&["verify", "--device", "img", "-S", "5", "-f", "/good2"]);
    e.fails(
        &["creat", "--device", "img", "-S", "3", "-M", "/m,1M"],
        1,
        "do not combine with -M",
    );
    assert_eq!(files(&e).len(), 2);
}

/// verify: several files, -m NAME,SEED pairs, threads, -q.
#[test]
fn verify_several() {
    let e = formatted();
    e.ok(&[
        "creat", "--device", "img", "-M", "/a,3M,1", "-M", "/b,5M,2", "-M", "/c,1M,1",
    ]);
    e.ok(&[
        "verify", "--device", "img", "-S", "1", "-f", "/a", "-f", "/c",
    ]);
    e.ok(&["verify", "--device", "img", "-S", "1", "/a", "/c"]);
    e.ok(&[
        "verify", "--device", "img", "-t", "3", "-m", "/a,1", "-m", "/b,2", "-m", "/c,1",
    ]);
    e.fails(
        &["verify", "--device", "img", "-m", "/a,1", "-m", "/b,3"],
        1,
        "/b: content differs from the pattern of seed 3",
    );
    let o = e.run(
        FAMFS,
        &[
            "verify", "--device", "img", "-q", "-m", "/a,1", "-m", "/b,3",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
}

/// mkdir -p of the root (a mount point, or / of a device) succeeds; without -p it exists.
#[test]
fn mkdir_p_root() {
    let e = formatted();
    e.ok(&["mkdir", "--device", "img", "-p", "/"]);
    e.ok(&["mkdir", "--device", "img", "-p", "/", "/x/y"]);
    e.fails(&["mkdir", "--device", "img", "/"], 1, "already exists");
    assert_eq!(dirs(&e), ["/x", "/x/y"]);
}

/// fsck: the C tool's capacity lines beside ours; -B N buckets; C options accepted with a note.
#[test]
fn fsck_capacity_lines_and_c_options() {
    let e = formatted();
    e.ok(&["creat", "--device", "img", "-s", "3M", "/f"]);
    let t = e.ok(&["fsck", "img"]);
    assert!(t.contains("  Device capacity:        8589934592\n"), "{t}");
    assert!(
        t.contains(&format!(
            "  Free space:             {}\n",
            8 * G - (10 << 20) - (4 << 20)
        )),
        "{t}"
    );
    assert!(
        t.contains("  Allocated space:        14680064\n")
            && t.contains("  Sum of file sizes:      3145728\n"),
        "{t}"
    );
    let v: Value = serde_json::from_str(&e.ok(&["fsck", "--json", "-B", "4", "img"])).unwrap();
    let b = v["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 4);
    assert_eq!(
        (b[0]["used_bytes"].as_u64(), b[1]["used_bytes"].as_u64()),
        (Some(14 << 20), Some(0))
    );
    assert_eq!(b[3]["offset"].as_u64(), Some(6 * G));
    let o = e.run(FAMFS, &["fsck", "-f", "-D", "-m", "--set-daxmode", "img"]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for opt in ["-f/--force", "-D/--nodax", "-m/--mmap"] {
        assert!(
            err.contains(&format!("{opt} accepted and not needed")),
            "{err}"
        );
    }
    assert!(
        err.contains("--set-daxmode: img is not a devdax device; nothing to rebind"),
        "{err}"
    );
    e.fails(
        &["fsck", "-B", "0", "img"],
        1,
        "-B: between 1 and 64 buckets",
    );
}

/// logplay: -c/-m accepted; -d DEV only with --shadow (as C); -s only with --shadow.
#[test]
fn logplay_c_options() {
    let e = formatted();
    e.ok(&["mkdir", "--device", "img", "/d"]);
    let out = e.ok(&["logplay", "--device", "img", "-c", "-m", "-v"]);
    assert!(
        out.contains("played 1 log entries: 0 files, 1 directories") && out.contains("dir  /d"),
        "{out}"
    );
    e.fails(
        &["logplay", "-d", "img", "-c"],
        1,
        "only used with --shadow",
    );
    e.fails(
        &["logplay", "-d", "img", "-S", "/nonexistent/shadow"],
        1,
        "not an existing directory",
    );
    let o = e.run(FAMFS, &["logplay", "--device", "img", "-s"]);
    assert_eq!(o.status.code(), Some(2));
}

/// clone: a second file sharing the first's memory; fsck reports the cross-link.
#[test]
fn clone_makes_a_cross_linked_file() {
    let e = formatted();
    e.ok(&["creat", "--device", "img", "-s", "3M", "-S", "4", "/a"]);
    e.ok(&["fsck", "img"]);
    e.ok(&["clone", "--device", "img", "/a", "/b"]);
    e.ok(&["verify", "--device", "img", "-S", "4", "-f", "/b"]);
    let v: Value = serde_json::from_str(&String::from_utf8_lossy(
        &e.run(FAMFS, &["fsck", "--json", "img"]).stdout,
    ))
    .unwrap();
    assert_eq!(
        (&v["ok"], &v["collisions"]),
        (&serde_json::json!(false), &serde_json::json!(1))
    );
    assert!(
        v["damage"][0]
            .as_str()
            .unwrap()
            .contains("(/b): allocation collision"),
        "{v:#}"
    );
    e.fails(&["fsck", "img"], 1, "damaged");
}

/// chkread: a superblock or a log, as bytes copied out of the image (as .meta files hold them).
#[test]
fn chkread_superblock_and_log() {
    let e = formatted();
    e.ok(&["creat", "--device", "img", "-M", "/a,1M", "-M", "/b,1M"]);
    let mut f = std::fs::File::open(e.path("img")).unwrap();
    let mut sb = vec![0u8; 2 << 20];
    let mut log = vec![0u8; 8 << 20];
    std::io::Read::read_exact(&mut f, &mut sb).unwrap();
    std::io::Read::read_exact(&mut f, &mut log).unwrap();
    std::fs::write(e.path("sb"), &sb).unwrap();
    std::fs::write(e.path("log"), &log).unwrap();
    assert!(e.ok(&["chkread", "sb"]).contains("valid superblock"));
    assert!(e
        .ok(&["chkread", "log"])
        .contains("log with 2 entries, 0 damaged"));
    log[48 + 544 + 100] ^= 1; // entry 1
    std::fs::write(e.path("log"), &log).unwrap();
    e.fails(&["chkread", "log"], 1, "entry 1: damaged");
    e.fails(
        &["chkread", "system_uuid"],
        1,
        "neither a famfs superblock nor a famfs log",
    );
}

/// flush of a directory flushes every file under it; the root adds the superblock and log.
#[test]
fn flush_directories() {
    let e = formatted();
    e.ok(&["mkdir", "--device", "img", "-p", "/d/e"]);
    e.ok(&[
        "creat",
        "--device",
        "img",
        "-M",
        "/d/a,1M",
        "-M",
        "/d/e/b,1M",
        "-M",
        "/c,1M",
    ]);
    assert!(e
        .ok(&["flush", "--device", "img", "-v", "/d"])
        .contains("flushed 2 files"));
    assert!(e
        .ok(&["flush", "--device", "img", "-v", "/"])
        .contains("flushed 5 files"));
    assert!(e
        .ok(&["flush", "--device", "img", "-v", "/c"])
        .contains("flushed 1 files"));
}

/// mkmeta is not needed (the server serves the meta files); mount's C-only options are refused
/// with the reason, before anything else happens.
#[test]
fn mkmeta_and_mount_c_options() {
    let e = formatted();
    e.fails(&["mkmeta", "img"], 1, "img is not mounted");
    assert!(e
        .run(FAMFS, &["mkmeta", "img"])
        .stdout
        .starts_with(b"famfs mkmeta: not needed"));
    for opt in [
        &["-D", "img"][..],
        &["-S", "/tmp/sh", "img", "/mnt"][..],
        &["-F", "img", "/mnt"][..],
        &["-p", "img", "/mnt"][..],
    ] {
        let mut a = vec!["mount"];
        a.extend_from_slice(opt);
        e.fails(&a, 1, "of the C famfs not supported");
    }
    e.fails(
        &["mount", "-c", "sometimes", "img", "/mnt"],
        1,
        "use always, normal or never",
    );
    let o = e.run(FAMFS, &["mount", "-c", "never", "-t", "1", "img", "/mnt"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Issue 25: cp -c compares after every copy is done: two sources of the same name copied into
/// one directory leave the destination holding the second, which differs from the first; the
/// C tool's compare fails there, and so must ours.
#[test]
fn cp_compare_sees_a_destination_written_twice() {
    let e = formatted();
    std::fs::create_dir_all(e.path("x")).unwrap();
    std::fs::create_dir_all(e.path("y")).unwrap();
    std::fs::write(e.path("x/f"), vec![0x11u8; 3 << 20]).unwrap();
    std::fs::write(e.path("y/f"), vec![0x22u8; 3 << 20]).unwrap();
    e.ok(&["mkdir", "--device", "img", "/d"]);
    e.fails(
        &["cp", "--device", "img", "-c", "x/f", "y/f", "/d"],
        1,
        "differs from its source",
    );
    // Without a double write, -c passes.
    e.ok(&["cp", "--device", "img", "-c", "x/f", "/one"]);
}

/// Issue 25: `creat -S SEED -r FILE` without -s, and `creat -M FILE,0,SEED`, on an existing
/// file re-fill it with SEED's pattern at its size (C scripts re-randomise files this way); on
/// a missing file they say why.
#[test]
fn creat_refills_an_existing_file() {
    let e = formatted();
    e.ok(&["creat", "--device", "img", "-s", "3M", "-S", "1", "/a"]);
    e.ok(&["creat", "--device", "img", "-s", "5M", "-S", "2", "/b"]);
    e.ok(&["creat", "--device", "img", "-S", "7", "-r", "/a"]);
    e.ok(&["verify", "--device", "img", "-S", "7", "-f", "/a"]);
    e.ok(&["creat", "--device", "img", "-M", "/b,0,8"]);
    e.ok(&["verify", "--device", "img", "-S", "8", "-f", "/b"]);
    assert_eq!(files(&e)["/b"].1, 5 << 20);
    e.fails(
        &["creat", "--device", "img", "-S", "7", "-r", "/nope"],
        1,
        "only an existing file is re-filled",
    );
    e.fails(
        &["creat", "--device", "img", "-M", "/nope,0"],
        1,
        "needs a seed",
    );
}

/// Issue 25: numbers as C's strtoul reads them: leading blanks (shell arithmetic), hexadecimal.
#[test]
fn numbers_read_as_strtoul() {
    let e = formatted();
    e.ok(&[
        "creat",
        "--device",
        "img",
        "-N",
        " 2",
        "--nbuckets",
        " 4",
        "-s",
        "8M",
        "-S",
        " 0x10",
        "/il",
    ]);
    e.ok(&["verify", "--device", "img", "-S", "16", "-f", "/il"]);
    e.ok(&[
        "verify",
        "--device",
        "img",
        "--threadct",
        " 2",
        "-S",
        "16",
        "-f",
        "/il",
    ]);
    let o = e.run(
        FAMFS,
        &["creat", "--device", "img", "-N", "2x", "-s", "8M", "/bad"],
    );
    assert_eq!(o.status.code(), Some(2));
}

/// Issue 25: verify --threadct takes 1 to 256, as C.
#[test]
fn verify_threadct_range() {
    let e = formatted();
    e.ok(&["creat", "--device", "img", "-s", "2M", "-S", "3", "/a"]);
    e.ok(&[
        "verify",
        "--device",
        "img",
        "--threadct",
        "256",
        "-S",
        "3",
        "-f",
        "/a",
    ]);
    for bad in ["0", "257"] {
        let o = e.run(
            FAMFS,
            &[
                "verify",
                "--device",
                "img",
                "--threadct",
                bad,
                "-S",
                "3",
                "-f",
                "/a",
            ],
        );
        assert_eq!(o.status.code(), Some(2), "--threadct {bad}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("1 to 256"),
            "--threadct {bad}"
        );
    }
}

/// Issue 25: the meta files named one by one (as `find MPT -type f` lists them) are flushed.
#[test]
fn flush_meta_files_by_name() {
    let e = formatted();
    e.ok(&["creat", "--device", "img", "-s", "2M", "/a"]);
    let out = e.ok(&[
        "-v",
        "flush",
        "--device",
        "img",
        "/.meta/.superblock",
        "/.meta/.log",
        "/a",
    ]);
    assert!(out.contains("flushed 3 files"), "{out}");
}

/// Issue 25: `fsck -v` prints the C fsck's verbose block by the C names; a C script reads the
/// log length with `grep log_len | awk '{print $2}'`.
#[test]
fn fsck_verbose_c_names() {
    let e = Env::new();
    e.image("img", 8 * G);
    e.ok_bin(MKFS, &["-l", "16M", "img"]);
    let out = e.ok(&["fsck", "-v", "img"]);
    let log_len: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("log_len"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(log_len, ["16777216"], "{out}");
    for name in ["log_offset:", "last_log_index:", "sizeof(log_entry)"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(name)),
            "{name}: {out}"
        );
    }
    assert!(out.trim_end().ends_with("clean"), "{out}");
}

/// Issue 25: chkread -s / -l say which meta file FILE must be and print its fields as C does;
/// -? is help.
#[test]
fn chkread_s_and_l() {
    let e = formatted();
    let sb = e.path("sb");
    let log = e.path("log");
    let mut img = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(e.path("img")).unwrap(), 10 << 20),
        &mut img,
    )
    .unwrap();
    std::fs::write(&sb, &img[..2 << 20]).unwrap();
    std::fs::write(&log, &img[2 << 20..]).unwrap();
    let (sbp, logp) = (sb.to_str().unwrap(), log.to_str().unwrap());
    let out = e.ok(&["chkread", "-s", sbp]);
    assert!(
        out.contains("famfs superblock:") && out.contains("\tlog len:     8388608"),
        "{out}"
    );
    let out = e.ok(&["chkread", "-l", logp]);
    assert!(
        out.contains("famfs log:") && out.contains("\tnext index: 0"),
        "{out}"
    );
    e.fails(&["chkread", "-s", logp], 1, "not a famfs superblock");
    e.fails(&["chkread", "-l", sbp], 1, "not a famfs log");
    let o = e.run(FAMFS, &["chkread", "-?"]);
    assert_eq!(o.status.code(), Some(0));
}

/// Issue 25: -r (read(2)) and -m (mmap) together are refused by logplay and fsck, as in C.
#[test]
fn read_and_mmap_conflict() {
    let e = formatted();
    for args in [
        &["logplay", "-r", "-m", "--device", "img"][..],
        &["fsck", "-r", "-m", "img"][..],
    ] {
        let o = e.run(FAMFS, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("cannot be used with"),
            "{args:?}"
        );
    }
    e.ok(&["fsck", "-r", "img"]);
    e.ok(&["logplay", "-m", "--device", "img"]);
}
