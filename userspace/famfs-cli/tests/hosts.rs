//! `famfs hosts` on an image whose slots this test writes itself (the oracle: the values written),
//! one host heartbeating from a thread of this test, one stopped, one slot damaged.

use famfs_format::slots::{HostSlot, SlotRole};
use famfs_media::{Access, Media};
use famfs_meta::hosts::{self, SlotIo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::*;

fn template(fs_uuid: [u8; 16], id: u8, lease_ms: u32, applied: u64) -> hosts::SlotTemplate {
    hosts::SlotTemplate {
        fs_uuid,
        host_id: [id; 16],
        system_uuid: [id; 16],
        role: if id == 1 {
            SlotRole::Master
        } else {
            SlotRole::Client
        },
        module_lease: true,
        lease_ms,
        interval_ms: 50,
        hostname: format!("host{id}"),
        applied,
    }
}

#[test]
fn hosts_shows_alive_stopped_dead_and_damaged_slots() {
    let e = Env::new();
    e.image("h.img", 4 * G);
    e.ok_bin(MKFS, &["h.img"]);
    let img = e.path("h.img");
    let media = Media::open(&img, Access::ReadWrite).unwrap();
    let fs_uuid = media.read_superblock().unwrap().fs_uuid;
    let fast = hosts::ClaimOptions {
        settle: Duration::from_millis(1),
        wait_for_dead: false,
    };
    // Host 1 heartbeats (a thread), host 2 never does after its claim; its lease is 100 ms.
    let c1 = hosts::claim_slot(&media, &template(fs_uuid, 1, 10_000, 7), fast).unwrap();
    let c2 = hosts::claim_slot(&media, &template(fs_uuid, 2, 100, 3), fast).unwrap();
    // A damaged slot: another host's slot with one flipped byte.
    let c3 = hosts::claim_slot(&media, &template(fs_uuid, 3, 10_000, 9), fast).unwrap();
    let mut bad = c3.slot.encode();
    bad[500] ^= 0xff;
    media.write_slot(c3.index, &bad).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let img2 = img.clone();
    let beater = std::thread::spawn(move || {
        let m = Media::open(&img2, Access::ReadWrite).unwrap();
        let mut hb = hosts::Heartbeat::new(c1);
        while !stop2.load(Ordering::Relaxed) {
            hb.beat(&m, 7, &[5]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let v = e.json(&["hosts", "--json", "--watch", "0.3", "h.img"]);
    let hosts = v["hosts"].as_array().unwrap();
    let by_slot = |i: usize| hosts.iter().find(|h| h["slot"] == i).unwrap().clone();
    let h1 = by_slot(c1_index(&v, "host1"));
    assert_eq!(h1["liveness"], "alive", "{h1}");
    assert_eq!(h1["role"], "master");
    assert_eq!(h1["applied"], 7);
    assert_eq!(h1["held"], serde_json::json!([5]));
    let h2 = by_slot(c2.index);
    assert_eq!(h2["liveness"], "stalled", "{h2}");
    assert_eq!(h2["hostname"], "host2");
    let h3 = by_slot(c3.index);
    assert!(h3["corrupt"].as_str().unwrap().contains("crc"), "{h3}");
    assert_eq!(hosts.len(), 3);
    // The gate: host 1 holds delete 5; host 2 has played 3 entries; the damaged slot counts.
    let o = e.run(
        FAMFS,
        &["hosts", "--watch", "0", "--may-reclaim", "5", "h.img"],
    );
    assert_eq!(o.status.code(), Some(1));
    // Watched past host 2's lease (100 ms + 10 % + 0.5 s): dead, and not counted.
    let v = e.json(&["hosts", "--json", "--watch", "0.8", "h.img"]);
    let h2 = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["slot"] == c2.index)
        .unwrap()
        .clone();
    assert_eq!(h2["liveness"], "dead", "{h2}");
    // Repair the damaged slot (released) and stop host 1's hold: then delete 2 may be reclaimed
    // (host 1 applied 7, host 2 dead) but delete 5 is still held by host 1.
    let mut released = c3.slot.clone();
    released.state = famfs_format::slots::SlotState::Released;
    media.write_slot(c3.index, &released.encode()).unwrap();
    let out = e.ok(&["hosts", "--watch", "0.8", "--may-reclaim", "2", "h.img"]);
    assert!(out.contains("may be reclaimed now"), "{out}");
    let o = e.run(
        FAMFS,
        &["hosts", "--watch", "0.8", "--may-reclaim", "5", "h.img"],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("host1") && text.contains("still holds"),
        "{text}"
    );
    stop.store(true, Ordering::Relaxed);
    beater.join().unwrap();
    // A slot's raw bytes are where the layout says (1 MiB + 1 KiB * index).
    let raw = std::fs::read(&img).unwrap();
    let off = (1 << 20) + 1024 * c2.index;
    assert!(matches!(
        HostSlot::decode(&raw[off..off + 1024], &fs_uuid),
        famfs_format::slots::SlotContent::Slot(s) if s.hostname == "host2"
    ));
}

fn c1_index(v: &serde_json::Value, name: &str) -> usize {
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hostname"] == name)
        .unwrap()["slot"]
        .as_u64()
        .unwrap() as usize
}

/// `famfs reclaim` asks the host slots: a delete that a host (a slot written by this test)
/// still holds, or has not played, stays pending with the reason; once that host releases its
/// slot, it is reclaimed.
#[test]
fn reclaim_waits_for_the_hosts_in_the_slots() {
    let e = Env::new();
    e.image("r.img", 4 * G);
    e.ok_bin(MKFS, &["r.img"]);
    e.ok(&["creat", "--device", "r.img", "-s", "2M", "/a"]);
    e.ok(&["creat", "--device", "r.img", "-s", "2M", "/b"]);
    e.ok(&["rm", "--device", "r.img", "/a"]);
    e.ok(&["rm", "--device", "r.img", "/b"]);
    let pending = e.json(&["fsck", "--json", "--device", "r.img"])["pending_deletes"].clone();
    let da = pending[0]["delete"].as_u64().unwrap();
    let db = pending[1]["delete"].as_u64().unwrap();
    let media = Media::open(&e.path("r.img"), Access::ReadWrite).unwrap();
    let fs_uuid = media.read_superblock().unwrap().fs_uuid;
    let fast = hosts::ClaimOptions {
        settle: Duration::from_millis(1),
        wait_for_dead: false,
    };
    // A client that has played the delete of /a and holds it, and not yet the delete of /b.
    let c = hosts::claim_slot(&media, &template(fs_uuid, 2, 10_000, db), fast).unwrap();
    let mut hb = hosts::Heartbeat::new(c);
    hb.beat(&media, db, &[da]).unwrap();
    let r = e.json(&["reclaim", "--json", "--device", "r.img"]);
    assert_eq!(r["reclaimed"], serde_json::json!([]), "{r}");
    let why: Vec<String> = r["held_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["why"].as_str().unwrap().to_string())
        .collect();
    assert!(
        why[0].contains("host2") && why[0].contains("still holds"),
        "{why:?}"
    );
    assert!(why[1].contains("not yet the delete"), "{why:?}");
    // It plays /b and lets /a go: both reclaimed.
    hb.beat(&media, db + 1, &[]).unwrap();
    let r = e.json(&["reclaim", "--json", "--device", "r.img"]);
    assert_eq!(r["reclaimed"].as_array().unwrap().len(), 2, "{r}");
}

/// `famfs compact` is offline: refused while a host slot shows a live host (heartbeating from a
/// thread here, lease 100 ms), allowed once that host is dead (stopped beating for longer than
/// its lease + slack).
#[test]
fn compact_refused_while_a_host_is_alive() {
    let e = Env::new();
    e.image("c.img", 4 * G);
    e.ok_bin(MKFS, &["c.img"]);
    e.ok(&["creat", "--device", "c.img", "-s", "2M", "/a"]);
    e.ok(&["rm", "--device", "c.img", "/a"]);
    let img = e.path("c.img");
    let media = Media::open(&img, Access::ReadWrite).unwrap();
    let fs_uuid = media.read_superblock().unwrap().fs_uuid;
    let fast = hosts::ClaimOptions {
        settle: Duration::from_millis(1),
        wait_for_dead: false,
    };
    let c = hosts::claim_slot(&media, &template(fs_uuid, 2, 100, 5), fast).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let beater = std::thread::spawn(move || {
        let m = Media::open(&img, Access::ReadWrite).unwrap();
        let mut hb = hosts::Heartbeat::new(c);
        while !stop2.load(Ordering::Relaxed) {
            hb.beat(&m, 5, &[]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    e.fails(
        &["compact", "--device", "c.img"],
        1,
        "is mounted on other hosts (host slots)",
    );
    stop.store(true, Ordering::Relaxed);
    beater.join().unwrap();
    e.ok(&["compact", "--device", "c.img"]);
}
