//! Behaviours users of the C famfs CLI rely on (Documentation/cli.md, "Coming from the C famfs").

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FAMFS: &str = env!("CARGO_BIN_EXE_famfs");
const MKFS: &str = env!("CARGO_BIN_EXE_mkfs-famfs");
const G: u64 = 1 << 30;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A temporary directory with a system uuid file and a fresh 8 GiB image `img` (this host
    /// is its master).
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("system_uuid"), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n").unwrap();
        let e = Env { dir };
        std::fs::File::create(e.path("img")).unwrap().set_len(8 * G).unwrap();
        let o = e.run(MKFS, &["img"]);
        assert!(o.status.success());
        e
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    /// Runs under `sh -c 'umask 022; exec ...'` so the umask is known.
    fn run(&self, bin: &str, args: &[&str]) -> Output {
        let o = Command::new("sh")
            .arg("-c")
            .arg("umask 022; exec \"$@\"")
            .arg("sh")
            .arg(bin)
            .args(args)
            .current_dir(self.dir.path())
            .env("FAMFS_SYSTEM_UUID_FILE", self.path("system_uuid"))
            .output()
            .unwrap();
        println!("$ {} {}\n{}{}", Path::new(bin).file_name().unwrap().to_string_lossy(), args.join(" "), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        o
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(FAMFS, args);
        assert!(o.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    /// famfs ARGS fails with exit `code` and says `msg` (stderr or stdout).
    fn fails(&self, args: &[&str], code: i32, msg: &str) -> Output {
        let o = self.run(FAMFS, args);
        assert_eq!(o.status.code(), Some(code), "{args:?}");
        let all = format!("{}{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
        assert!(all.contains(msg), "{args:?}: {all:?} lacks {msg:?}");
        o
    }
    /// path -> (mode, size) of every file and "dir" entries, from fsck --json -v and logplay -v.
    fn files(&self) -> std::collections::BTreeMap<String, (String, u64)> {
        let v: Value = serde_json::from_str(&self.ok(&["fsck", "--json", "-v", "img"])).unwrap();
        v["file_list"].as_array().unwrap().iter().map(|f| (f["path"].as_str().unwrap().to_string(), (f["mode"].as_str().unwrap().to_string(), f["size"].as_u64().unwrap()))).collect()
    }
    fn dirs(&self) -> Vec<String> {
        self.ok(&["logplay", "-v", "--device", "img"]).lines().filter_map(|l| l.trim().strip_prefix("dir ").map(|p| p.trim().to_string())).collect()
    }
    fn cat(&self, p: &str) -> Vec<u8> {
        let o = self.run(FAMFS, &["cat", "--device", "img", p]);
        assert!(o.status.success());
        o.stdout
    }
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
    let e = Env::new();
    let src = src_tree(&e);
    e.ok(&["cp", "--device", "img", "-r", &src, "/cpr"]);
    e.ok(&["mkdir", "--device", "img", "/cprx", "/cpry"]);
    e.ok(&["cp", "--device", "img", "-r", &src, "/cprx/"]);
    e.ok(&["cp", "--device", "img", "-r", "--contents", &src, "/cpry/"]);
    let f = e.files();
    assert_eq!(f["/cpr/one"], ("600".into(), 300_000));
    assert_eq!(f["/cpr/sub/two"], ("644".into(), 4 << 20));
    assert_eq!(f["/cprx/SRCDIR/one"], ("600".into(), 300_000));
    assert_eq!(f["/cprx/SRCDIR/sub/two"], ("644".into(), 4 << 20));
    assert_eq!(f["/cpry/one"], ("600".into(), 300_000));
    assert_eq!(f["/cpry/sub/two"], ("644".into(), 4 << 20));
    assert_eq!(f.len(), 6);
    let d = e.dirs();
    assert_eq!(d, ["/cpr", "/cpr/sub", "/cprx", "/cpry", "/cprx/SRCDIR", "/cprx/SRCDIR/sub", "/cpry/sub"]);
    assert_eq!(e.cat("/cpry/sub/two"), vec![2u8; 4 << 20]);
}

/// cp -m MODE is taken as given; --umask applies the umask (022 here) as the C tool does.
#[test]
fn cp_mode_and_umask() {
    let e = Env::new();
    std::fs::write(e.path("src"), vec![3u8; 5000]).unwrap();
    e.ok(&["cp", "--device", "img", "-m", "0666", "src", "/plain"]);
    e.ok(&["cp", "--device", "img", "-m", "0666", "--umask", "src", "/masked"]);
    let f = e.files();
    assert_eq!(f["/plain"].0, "666");
    assert_eq!(f["/masked"].0, "644");
}

/// cp over an existing famfs file of the same size overwrites it (as C); another size fails; -c
/// compares the copy with its source.
#[test]
fn cp_overwrite_same_size_and_compare() {
    let e = Env::new();
    std::fs::write(e.path("a"), vec![0xaau8; 3 << 20]).unwrap();
    std::fs::write(e.path("b"), vec![0xbbu8; 3 << 20]).unwrap();
    std::fs::write(e.path("c"), vec![0xccu8; 1 << 20]).unwrap();
    e.ok(&["cp", "--device", "img", "a", "/f"]);
    let before = e.ok(&["logplay", "--device", "img"]);
    e.ok(&["cp", "--device", "img", "-c", "b", "/f"]);
    assert_eq!(e.cat("/f"), vec![0xbbu8; 3 << 20]);
    // No new log entry: the same file was rewritten.
    assert_eq!(e.ok(&["logplay", "--device", "img"]), before);
    e.fails(&["cp", "--device", "img", "c", "/f"], 1, "cannot change size");
    assert_eq!(e.cat("/f"), vec![0xbbu8; 3 << 20]);
}

/// cp of several sources where one is a directory (without -r): the files are copied, the
/// directory is reported, the exit code is 1.
#[test]
fn cp_several_sources_with_a_directory() {
    let e = Env::new();
    std::fs::write(e.path("a"), b"aaaa").unwrap();
    std::fs::write(e.path("b"), b"bbbb").unwrap();
    std::fs::create_dir(e.path("adir")).unwrap();
    e.ok(&["mkdir", "--device", "img", "/d"]);
    e.fails(&["cp", "--device", "img", "a", "adir", "b", "/d"], 1, "adir is a directory (use -r)");
    assert_eq!(e.cat("/d/a"), b"aaaa");
    assert_eq!(e.cat("/d/b"), b"bbbb");
}
