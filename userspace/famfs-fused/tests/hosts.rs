//! The server's host slot and lease, end to end in fallback mode on an image file (needs root,
//! /dev/fuse and fusermount3, as tests/mount.rs): the slot is claimed at mount and heartbeats,
//! an observer reading the image sees it alive, a stopped server is seen dead only after its
//! lease and finds itself fenced (ESTALE) when it runs again, a clean unmount releases the slot.
//! The oracle is the image file read directly (famfs-format decodes the slot bytes), never the
//! server's own view.

use famfs_format::slots::{HostSlot, SlotContent, SlotRole, SlotState, SLOT_COUNT, SLOT_SIZE};
use famfs_format::{slots::slot_offset, DEFAULT_LOG_LEN};
use famfs_media::{Access, Media};
use famfs_meta::hosts::{self, Liveness};
use famfs_meta::{Famfs, Layout, MkfsOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_famfs-fused");

fn preflight() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests must run as root"
        );
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("famfs-fused-hosts.system_uuid");
        std::env::set_var(famfs_meta::SYSTEM_UUID_ENV, &p);
        famfs_meta::local_system_uuid(&p).expect("system uuid file");
    });
}

struct Fixture {
    _dir: tempfile::TempDir,
    img: PathBuf,
    mnt: PathBuf,
    fs_uuid: [u8; 16],
    child: Option<Child>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
    }
}

fn is_mounted(mnt: &Path) -> bool {
    let t = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    t.lines()
        .any(|l| l.split_whitespace().nth(1) == Some(mnt.to_str().unwrap()))
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Fixture {
    fn new() -> Fixture {
        preflight();
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        File::create(&img).unwrap().set_len(8 << 30).unwrap();
        let media = Media::open(&img, Access::ReadWrite).unwrap();
        let fs_uuid = *uuid::Uuid::new_v4().as_bytes();
        let opts = MkfsOptions {
            log_len: DEFAULT_LOG_LEN,
            fs_uuid,
            dev_uuid: *uuid::Uuid::new_v4().as_bytes(),
            system_uuid: famfs_meta::local_system_uuid(&famfs_meta::system_uuid_path()).unwrap(),
            device_name: img.display().to_string(),
        };
        famfs_meta::mkfs(&media, &opts).unwrap();
        famfs_meta::enable_deletes(&media).unwrap();
        drop(media);
        let mut fs = Famfs::open(&img, Access::ReadWrite).unwrap();
        let rp = |s: &str| famfs_format::RelPath::new(s).unwrap();
        let f = fs
            .create_file(&rp("f"), 1 << 20, 0o644, 0, 0, Layout::Contiguous)
            .unwrap();
        fs.write_data(f, 0, &[7u8; 1 << 20]).unwrap();
        Fixture {
            _dir: dir,
            img,
            mnt,
            fs_uuid,
            child: None,
        }
    }

    fn mount(&mut self, extra: &[&str]) {
        let child = Command::new(BIN)
            .arg("-f")
            .args(extra)
            .arg(&self.img)
            .arg(&self.mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let meta = self.mnt.join(".meta/.log");
        wait_until("the mount", 10, || is_mounted(&self.mnt) && meta.exists());
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Every slot of this file system in the image, read from the file (not the server).
    fn slots(&self) -> Vec<(usize, HostSlot)> {
        let f = File::open(&self.img).unwrap();
        (0..SLOT_COUNT)
            .filter_map(|i| {
                let mut b = [0u8; SLOT_SIZE];
                f.read_exact_at(&mut b, slot_offset(i).unwrap()).unwrap();
                match HostSlot::decode(&b, &self.fs_uuid) {
                    SlotContent::Slot(s) => Some((i, s)),
                    _ => None,
                }
            })
            .collect()
    }

    fn watch(&self, window: Duration) -> Vec<hosts::HostView> {
        let img = self.img.clone();
        hosts::watch(
            &|| Ok(Media::open(&img, Access::ReadOnly)?),
            &self.fs_uuid,
            window,
        )
        .unwrap()
    }
}

#[test]
fn slot_claimed_heartbeats_and_is_released_at_unmount() {
    let mut fx = Fixture::new();
    assert!(fx.slots().is_empty(), "mkfs leaves no slot");
    fx.mount(&["--heartbeat-ms", "50", "--lease-ms", "600"]);
    let slots = fx.slots();
    assert_eq!(slots.len(), 1, "{slots:?}");
    let (index, s) = &slots[0];
    assert_eq!(s.state, SlotState::Live);
    assert_eq!(s.role, SlotRole::Master);
    assert_eq!((s.lease_ms, s.interval_ms), (600, 50));
    assert_eq!(s.pid, fx.child.as_ref().unwrap().id());
    // One FILE entry played.
    assert_eq!(s.applied, 1);
    let views = fx.watch(Duration::from_millis(300));
    assert_eq!(views[*index].liveness, Liveness::Alive);
    let hb = fx.slots()[0].1.heartbeat;
    assert!(
        hb > s.heartbeat,
        "heartbeat {hb} did not advance from {}",
        s.heartbeat
    );
    // Reads work while the lease is renewed.
    assert_eq!(std::fs::read(fx.mnt.join("f")).unwrap(), vec![7u8; 1 << 20]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(std::fs::read(fx.mnt.join("f")).unwrap(), vec![7u8; 1 << 20]);
    // Clean unmount: released.
    kill(fx.pid(), Signal::SIGTERM).unwrap();
    let st = fx.child.as_mut().unwrap().wait().unwrap();
    assert!(st.success(), "{st:?}");
    let slots = fx.slots();
    assert_eq!(slots[0].1.state, SlotState::Released, "{slots:?}");
    assert_eq!(fx.watch(Duration::ZERO)[*index].liveness, Liveness::Free);
}

#[test]
fn stopped_server_is_dead_after_its_lease_and_fenced_when_it_runs_again() {
    let mut fx = Fixture::new();
    fx.mount(&["--heartbeat-ms", "50", "--lease-ms", "500"]);
    let index = fx.slots()[0].0;
    let f = File::open(fx.mnt.join("f")).unwrap();
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(b, [7u8; 16]);
    kill(fx.pid(), Signal::SIGSTOP).unwrap();
    // Watched for less than the lease + slack (1.05 s): not dead yet.
    let t0 = Instant::now();
    let v = fx.watch(Duration::from_millis(700));
    assert!(v[index].liveness.counts(), "{:?}", v[index].liveness);
    // Watched past it: dead.
    let v = fx.watch(hosts::dead_after(500) + Duration::from_millis(100));
    assert_eq!(v[index].liveness, Liveness::Dead);
    assert!(t0.elapsed() > Duration::from_millis(500));
    kill(fx.pid(), Signal::SIGCONT).unwrap();
    // Running again, the server finds its lease ran out: data is refused, for good. (A page
    // read before stays in this host's page cache: a copy of the old bytes, never memory that
    // may have been reused; so the read is of a page not read before.)
    let r = f.read_exact_at(&mut b, 512 << 10);
    assert_eq!(
        r.as_ref().err().and_then(|e| e.raw_os_error()),
        Some(libc::ESTALE),
        "read after the lease ran out: {r:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        File::open(fx.mnt.join("f"))
            .err()
            .and_then(|e| e.raw_os_error()),
        Some(libc::ESTALE)
    );
    // Its slot is never heartbeaten again.
    let hb = fx.slots()[0].1.heartbeat;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fx.slots()[0].1.heartbeat, hb);
}

/// A file deleted on the master while this host has it open: the slot lists the delete (and shows
/// it applied) until the file is closed, and the reclaim gate built from the slots says so; the
/// deleted path no longer opens.
#[test]
fn a_deleted_file_held_open_is_reported_until_closed() {
    let mut fx = Fixture::new();
    fx.mount(&["--heartbeat-ms", "50", "--lease-ms", "2000"]);
    let index = fx.slots()[0].0;
    let f = File::open(fx.mnt.join("f")).unwrap();
    // Delete through the mount (the master's way), as `famfs rm` does.
    let mut fs = Famfs::open(&fx.mnt, Access::ReadWrite).unwrap();
    let d = fs
        .unlink(&famfs_format::RelPath::new("f").unwrap(), false)
        .unwrap();
    drop(fs);
    // The idle play picks it up within a heartbeat or two.
    wait_until("the slot to list the held delete", 5, || {
        let s = &fx.slots()[0].1;
        s.applied > d && s.held.contains(&d)
    });
    let views = fx.watch(Duration::from_millis(200));
    let gate = hosts::SlotGate { views: &views };
    let why = gate
        .blocker(d)
        .expect("the gate must wait for the open file");
    assert!(why.contains("still holds"), "{why}");
    assert_eq!(views[index].liveness, Liveness::Alive);
    // The open file still reads its bytes; the path no longer opens.
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, 4096).unwrap();
    assert_eq!(b, [7u8; 16]);
    assert_eq!(
        File::open(fx.mnt.join("f"))
            .err()
            .and_then(|e| e.raw_os_error()),
        Some(libc::ENOENT)
    );
    drop(f);
    wait_until("the slot to drop the closed delete", 5, || {
        !fx.slots()[0].1.held.contains(&d)
    });
    let views = fx.watch(Duration::from_millis(200));
    assert_eq!(hosts::SlotGate { views: &views }.blocker(d), None);
}
