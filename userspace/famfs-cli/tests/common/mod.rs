//! The one harness of the CLI's end-to-end tests: a temporary directory with a system uuid file,
//! and the `famfs` / `mkfs-famfs` binaries run in it under a known umask. Every run is checked for
//! a panic or a death by signal, whatever the test then expects of its exit code.

// Each test crate uses a different part of the harness.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const FAMFS: &str = env!("CARGO_BIN_EXE_famfs");
pub const MKFS: &str = env!("CARGO_BIN_EXE_mkfs-famfs");
/// The system uuid of the host the tests pretend to be (the master of the images they make).
pub const SYSTEM_UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
pub const M: u64 = 2 << 20;
pub const G: u64 = 1 << 30;

pub struct Env {
    dir: tempfile::TempDir,
    uuid_file: PathBuf,
}

impl Env {
    /// A temporary directory whose `system_uuid` file makes this process the master of the
    /// images it formats.
    pub fn new() -> Env {
        Env::with_system_uuid_file(format!("{SYSTEM_UUID}\n").as_bytes())
    }

    /// As [`Env::new`], with the system uuid file holding exactly `contents` (e.g. the C tools'
    /// form: 36 characters and a NUL).
    pub fn with_system_uuid_file(contents: &[u8]) -> Env {
        let dir = tempfile::tempdir().expect("temporary directory");
        let uuid_file = dir.path().join("system_uuid");
        std::fs::write(&uuid_file, contents).expect("system uuid file");
        Env { dir, uuid_file }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn uuid_file(&self) -> &Path {
        &self.uuid_file
    }

    /// A sparse image file `name` of `size` bytes.
    pub fn image(&self, name: &str, size: u64) {
        std::fs::File::create(self.path(name))
            .and_then(|f| f.set_len(size))
            .expect("image file");
    }

    /// `bin` to be run in the directory, as this host (for tests that spawn processes themselves).
    pub fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.current_dir(self.dir.path())
            .env("FAMFS_SYSTEM_UUID_FILE", &self.uuid_file)
            .env("FAMFS_DAXDEV_CACHE", self.path("cache/daxdevs.json"));
        c
    }

    /// Runs `bin ARGS` in the directory with umask 022; prints the command and its output (shown
    /// when the test fails). A panic or a death by signal fails the test here.
    pub fn run(&self, bin: &str, args: &[&str]) -> Output {
        let o = Command::new("sh")
            .arg("-c")
            .arg("umask 022; exec \"$@\"")
            .arg("sh")
            .arg(bin)
            .args(args)
            .current_dir(self.dir.path())
            .env("FAMFS_SYSTEM_UUID_FILE", &self.uuid_file)
            .env("FAMFS_DAXDEV_CACHE", self.path("cache/daxdevs.json"))
            .output()
            .expect("run the binary");
        let name = Path::new(bin)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stderr = String::from_utf8_lossy(&o.stderr);
        println!(
            "$ {name} {}\n{}{stderr}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(
            o.status.code().is_some(),
            "{name} {args:?} died: {:?}",
            o.status
        );
        assert!(
            o.status.code() != Some(101) && !stderr.contains("panicked"),
            "{name} {args:?} panicked"
        );
        o
    }

    /// `famfs ARGS` succeeds; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_bin(FAMFS, args)
    }

    /// `bin ARGS` succeeds; its stdout.
    pub fn ok_bin(&self, bin: &str, args: &[&str]) -> String {
        let o = self.run(bin, args);
        assert!(
            o.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `famfs ARGS --json` (or any verb printing JSON) succeeds; its output parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }

    /// `famfs ARGS` fails with exit `code` and says `msg` (on stderr or stdout).
    pub fn fails(&self, args: &[&str], code: i32, msg: &str) -> Output {
        self.fails_bin(FAMFS, args, code, msg)
    }

    /// `bin ARGS` fails with exit `code` and says `msg` (on stderr or stdout).
    pub fn fails_bin(&self, bin: &str, args: &[&str], code: i32, msg: &str) -> Output {
        let o = self.run(bin, args);
        assert_eq!(o.status.code(), Some(code), "{args:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(all.contains(msg), "{args:?}: {all:?} lacks {msg:?}");
        o
    }
}
