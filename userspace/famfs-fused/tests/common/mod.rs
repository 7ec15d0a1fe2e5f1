//! What the end-to-end tests share (tests/mount.rs, tests/hosts.rs): the preflight (root,
//! /dev/fuse, fusermount3: the tests fail, not skip, when those are missing), a fresh famfs image
//! this test process is the master of, and a mount of it served by the famfs-fused binary,
//! unmounted (lazily) and killed on drop even when the test failed.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use famfs_format::DEFAULT_LOG_LEN;
use famfs_media::{Access, Media};
use famfs_meta::MkfsOptions;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_famfs-fused");

pub fn preflight() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: these tests need FUSE (modprobe fuse)"
        );
        let ok = Command::new("fusermount3")
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "fusermount3 is missing: install Debian's fuse3 package (apt-get install fuse3)"
        );
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests mount file systems and must run as root"
        );
        // One system uuid file for the whole test process, so that the images we make are ours
        // (master role) in this process and in the servers it starts.
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "famfs-fused-{}.system_uuid",
            env!("CARGO_CRATE_NAME")
        ));
        std::env::set_var(famfs_meta::SYSTEM_UUID_ENV, &p);
        famfs_meta::local_system_uuid(&p).expect("system uuid file");
    });
}

/// A fresh 8 GiB sparse famfs image at `img`, this test process as its master; returns its fs
/// uuid.
pub fn format_image(img: &Path) -> [u8; 16] {
    File::create(img).unwrap().set_len(8 << 30).unwrap();
    let media = Media::open(img, Access::ReadWrite).unwrap();
    let fs_uuid = *uuid::Uuid::new_v4().as_bytes();
    let opts = MkfsOptions {
        log_len: DEFAULT_LOG_LEN,
        fs_uuid,
        dev_uuid: *uuid::Uuid::new_v4().as_bytes(),
        system_uuid: famfs_meta::local_system_uuid(&famfs_meta::system_uuid_path()).unwrap(),
        device_name: img.display().to_string(),
    };
    famfs_meta::mkfs(&media, &opts).unwrap();
    fs_uuid
}

pub fn is_mounted(mnt: &Path) -> bool {
    let t = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    t.lines()
        .any(|l| l.split_whitespace().nth(1) == Some(mnt.to_str().unwrap()))
}

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `fusermount3 -u`, retried for a while on failure: a process another test thread is spawning
/// holds copies of our descriptors between its fork and exec, which makes the mount briefly busy.
pub fn unmount(mnt: &Path) -> bool {
    (0..100).any(|_| {
        let ok = Command::new("fusermount3")
            .arg("-u")
            .arg(mnt)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !ok {
            std::thread::sleep(Duration::from_millis(20));
        }
        ok
    })
}

/// A temp dir with a famfs image (`img`, formatted with [`format_image`]) and a mount point
/// (`mnt`); the server started by [`Mount::mount_foreground`] is its child.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub img: PathBuf,
    pub mnt: PathBuf,
    pub fs_uuid: [u8; 16],
    pub child: Option<Child>,
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A test may have left it stopped.
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status();
        }
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Mount {
    /// After the preflight: a temp dir, a fresh image and an empty mount point.
    pub fn new() -> Mount {
        preflight();
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let fs_uuid = format_image(&img);
        Mount {
            dir,
            img,
            mnt,
            fs_uuid,
            child: None,
        }
    }

    /// Starts the server in the foreground as a child process and waits for the mount.
    pub fn mount_foreground(&mut self, extra: &[&str]) {
        self.mount_foreground_env(extra, &[]);
    }

    /// [`Mount::mount_foreground`] with environment variables set for the server.
    pub fn mount_foreground_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        let child = Command::new(BIN)
            .arg("-f")
            .args(extra)
            .arg(&self.img)
            .arg(&self.mnt)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let meta = self.mnt.join(".meta/.log");
        wait_until("the mount", 10, || is_mounted(&self.mnt) && meta.exists());
    }

    /// Starts the server in the background (daemon mode) and returns its stdout.
    pub fn mount_daemon(&self, extra: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(extra)
            .arg(&self.img)
            .arg(&self.mnt)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "famfs-fused failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            is_mounted(&self.mnt),
            "famfs-fused returned before the mount was live"
        );
        stdout
    }

    /// The server's pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// `rel` under the mount point.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }
}
