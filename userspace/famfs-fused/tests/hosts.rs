//! The server's host slot and lease, end to end in fallback mode on an image file (needs root,
//! /dev/fuse and fusermount3, as tests/mount.rs): the slot is claimed at mount and heartbeats,
//! an observer reading the image sees it alive, a stopped server is seen dead only after its
//! lease and finds itself fenced (ESTALE) when it runs again, a clean unmount releases the slot.
//! The oracle is the image file read directly (famfs-format decodes the slot bytes), never the
//! server's own view.

mod common;

use common::wait_until;
use famfs_format::slots::slot_offset;
use famfs_format::slots::{HostSlot, SlotContent, SlotRole, SlotState, SLOT_COUNT, SLOT_SIZE};
use famfs_media::{Access, Media};
use famfs_meta::hosts::{self, Liveness};
use famfs_meta::{Famfs, Layout};
use nix::sys::signal::{kill, Signal};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// A mount ([`common::Mount`]) of an image with deletes enabled and one file, `f`: 1 MiB of 7s.
struct Fixture(common::Mount);

impl std::ops::Deref for Fixture {
    type Target = common::Mount;
    fn deref(&self) -> &common::Mount {
        &self.0
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut common::Mount {
        &mut self.0
    }
}

impl Fixture {
    fn new() -> Fixture {
        let m = common::Mount::new();
        let media = Media::open(&m.img, Access::ReadWrite).unwrap();
        famfs_meta::enable_deletes(&media).unwrap();
        drop(media);
        let mut fs = Famfs::open(&m.img, Access::ReadWrite).unwrap();
        let rp = |s: &str| famfs_format::RelPath::new(s).unwrap();
        let f = fs
            .create_file(&rp("f"), 1 << 20, 0o644, 0, 0, Layout::Contiguous)
            .unwrap();
        fs.write_data(f, 0, &[7u8; 1 << 20]).unwrap();
        Fixture(m)
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
    fx.mount_foreground(&["--heartbeat-ms", "50", "--lease-ms", "600"]);
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
    fx.mount_foreground(&["--heartbeat-ms", "50", "--lease-ms", "500"]);
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
    fx.mount_foreground(&["--heartbeat-ms", "50", "--lease-ms", "2000"]);
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
