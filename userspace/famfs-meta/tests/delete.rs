//! Delete, reclaim and compaction (issue 23), on file systems in process memory.
//!
//! Oracles independent of the code under test: the on-media bytes (superblock version read at
//! offset 8 by hand, as the C `famfs_check_super` compares it), a fresh play of the log by a new
//! opener, and the allocation addresses handed out before and after a reclaim.

use famfs_format::*;
use famfs_media::{Media, MediaOp};
use famfs_meta::*;
use std::cell::RefCell;
use std::collections::BTreeSet;

const M: u64 = 2 << 20;
const DEV: u64 = 4 << 30;

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A fresh file system in memory with this host as its master (the uuid file set per test).
fn with_fs<T>(f: impl FnOnce(Famfs) -> T) -> T {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("system_uuid");
    std::env::set_var(SYSTEM_UUID_ENV, &p);
    std::env::set_var(famfs_media::lock::LOCK_DIR_ENV, d.path().join("locks"));
    let local = local_system_uuid(&p).unwrap();
    let m = Media::memory(DEV).unwrap();
    mkfs(
        &m,
        &MkfsOptions {
            log_len: DEFAULT_LOG_LEN,
            fs_uuid: [1; 16],
            dev_uuid: [2; 16],
            system_uuid: local,
            device_name: "mem".into(),
        },
    )
    .unwrap();
    f(Famfs::from_media(m).unwrap())
}

fn rp(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// Creates the contiguous file `path` of `size` bytes, mode 0644, owned by root.
fn file(fs: &mut Famfs, path: &str, size: u64) {
    fs.create_file(&rp(path), size, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
}

/// The version field of the superblock bytes (offset 8), as the C tools read it.
fn sb_version(fs: &Famfs) -> u64 {
    let mut b = [0u8; 16];
    fs.media().read_fresh(0, &mut b).unwrap();
    u64::from_le_bytes(b[8..16].try_into().unwrap())
}

fn extents_of(fs: &Famfs, path: &str) -> Vec<Extent> {
    let ns = fs.namespace();
    let n = ns.get(ns.resolve(path).unwrap()).unwrap();
    n.file().unwrap().fmap.extents().to_vec()
}

/// Plays the log again from the start on the same memory (what another host, or the next boot,
/// sees).
fn replay(fs: Famfs) -> Famfs {
    Famfs::from_media(fs.into_media()).unwrap()
}

/// Every node of the namespace: path, mode, owner and, for a file, its size and map.
fn nodes_of(fs: &Famfs) -> Vec<(String, u32, u32, u32, Option<FileInfo>)> {
    let ns = fs.namespace();
    ns.nodes()
        .map(|n| {
            (
                ns.path_of(n.ino).unwrap(),
                n.mode,
                n.uid,
                n.gid,
                n.file().cloned(),
            )
        })
        .collect()
}

/// Whether `r` failed on a full log; `fs` is then compacted (counted in `compactions`) for the
/// step to be tried again. Any other error fails the test.
fn compacted_when_full<T>(fs: &mut Famfs, r: Result<T, MetaError>, compactions: &mut u32) -> bool {
    match r {
        Err(MetaError::LogFull { .. }) => {
            fs.compact().unwrap();
            *compactions += 1;
            true
        }
        r => {
            r.unwrap();
            false
        }
    }
}

struct Gate(RefCell<Vec<u64>>, BTreeSet<u64>);
impl ReclaimGate for Gate {
    fn may_reclaim(&self, d: u64) -> Result<bool, String> {
        self.0.borrow_mut().push(d);
        if d == 999 {
            return Err("no answer".into());
        }
        Ok(!self.1.contains(&d))
    }
}

#[test]
fn delete_keeps_memory_pending_until_reclaim_then_reuses_it() {
    with_fs(|mut fs| {
        fs.mkdir(&rp("d"), 0o755, 0, 0).unwrap();
        file(&mut fs, "d/a", 5 * M);
        file(&mut fs, "d/b", M);
        let a = extents_of(&fs, "d/a");
        let used = fs.bitmap().used_units();
        assert_eq!(sb_version(&fs), 48, "no delete yet: the C tools' version");
        let del = fs.unlink(&rp("d/a"), true).unwrap();
        assert_eq!(del, 3);
        assert_eq!(sb_version(&fs), 49, "the first delete marks the superblock");
        // The path is gone; the memory is still allocated, pending.
        let mut fs = replay(fs);
        assert!(fs.problems().is_empty(), "{:?}", fs.problems());
        assert_eq!(fs.namespace().resolve("d/a"), None);
        assert!(fs.namespace().resolve("d/b").is_some());
        let pending: Vec<_> = fs.pending_deletes().cloned().collect();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (
                pending[0].index,
                pending[0].target,
                pending[0].path.as_str()
            ),
            (3, 1, "d/a")
        );
        assert!(pending[0].revoke);
        assert_eq!(pending[0].fmap.extents(), &a[..]);
        assert_eq!(fs.bitmap().used_units(), used);
        // A new file does not get the pending memory.
        file(&mut fs, "c", 5 * M);
        let c = extents_of(&fs, "c");
        assert!(c
            .iter()
            .all(|e| e.offset >= a[0].end() || e.end() <= a[0].offset));
        // The gate decides: kept, then allowed.
        let g = Gate(RefCell::new(Vec::new()), [3].into());
        let r = fs.reclaim(&g).unwrap();
        assert_eq!((r.reclaimed.len(), r.held.clone()), (0, vec![3]));
        assert_eq!(fs.pending_deletes().count(), 1);
        let r = fs.reclaim(&OfflineGate).unwrap();
        assert_eq!(r.reclaimed, vec![3]);
        assert_eq!(r.freed_bytes, 5 * M);
        assert_eq!(r.entries, 1);
        let mut fs = replay(fs);
        assert!(fs.problems().is_empty(), "{:?}", fs.problems());
        assert_eq!(fs.pending_deletes().count(), 0);
        // The freed memory is handed out again: first fit finds it.
        file(&mut fs, "e", 5 * M);
        assert_eq!(extents_of(&fs, "e")[0].offset, a[0].offset);
        let fs = replay(fs);
        assert!(
            fs.problems().is_empty(),
            "reuse is no collision: {:?}",
            fs.problems()
        );
    })
}

#[test]
fn rmdir_recursive_and_errors() {
    with_fs(|mut fs| {
        fs.mkdir_p(&rp("t/u/v"), 0o755, 0, 0).unwrap();
        fs.mkdir(&rp("t/w"), 0o755, 0, 0).unwrap();
        file(&mut fs, "t/w/f", M);
        file(&mut fs, "t/u/g", M);
        assert!(matches!(fs.rmdir(&rp("t/u")), Err(MetaError::NotEmpty(_))));
        assert!(matches!(
            fs.unlink(&rp("t/u"), false),
            Err(MetaError::IsADirectory(_))
        ));
        assert!(matches!(
            fs.rmdir(&rp("t/u/g")),
            Err(MetaError::NotADirectory(_))
        ));
        assert!(matches!(
            fs.unlink(&rp("nope"), false),
            Err(MetaError::NotFound(_))
        ));
        let v = fs.rmdir(&rp("t/u/v")).unwrap();
        let all = fs.remove_all(&rp("t"), false).unwrap();
        assert!(all.iter().all(|&i| i > v));
        // g, u, f, w, t: children before parents.
        assert_eq!(all.len(), 5);
        let fs = replay(fs);
        assert!(fs.problems().is_empty(), "{:?}", fs.problems());
        assert!(fs.namespace().is_empty());
        assert_eq!(fs.pending_deletes().count(), 2, "two files pending");
        assert_eq!(
            (fs.namespace().file_count(), fs.namespace().dir_count()),
            (0, 0)
        );
    })
}

#[test]
fn a_client_cannot_delete_or_reclaim() {
    with_fs(|mut fs| {
        file(&mut fs, "f", M);
        // Another host: a uuid file with another uuid.
        let d = tempfile::tempdir().unwrap();
        let other = d.path().join("uuid");
        std::fs::write(&other, "00000000-0000-0000-0000-000000000001\n").unwrap();
        std::env::set_var(SYSTEM_UUID_ENV, &other);
        let mut client = replay(fs);
        assert_eq!(client.role(), Role::Client);
        assert!(matches!(
            client.unlink(&rp("f"), false),
            Err(MetaError::NotMaster { .. })
        ));
        assert!(matches!(
            client.reclaim(&OfflineGate),
            Err(MetaError::NotMaster { .. })
        ));
        assert_eq!(sb_version(&client), 48);
    })
}

#[test]
fn the_superblock_is_marked_durably_before_the_first_delete_entry() {
    with_fs(|fs| {
        let mut m = fs.into_media();
        let trace = m.record();
        let mut fs = Famfs::from_media(m).unwrap();
        file(&mut fs, "f", M);
        trace.lock().unwrap().clear();
        fs.unlink(&rp("f"), false).unwrap();
        let ops = trace.lock().unwrap().clone();
        let sb_store = ops
            .iter()
            .position(|o| matches!(o, MediaOp::Store { off: 0, .. }))
            .expect("a superblock store");
        let sb_flush = sb_store
            + ops[sb_store..]
                .iter()
                .position(|o| matches!(o, MediaOp::CpuFlush { off: 0, .. }))
                .expect("a superblock flush after the store");
        let first_log = ops
            .iter()
            .position(|o| matches!(o, MediaOp::Store { off, .. } if *off >= LOG_OFFSET))
            .expect("a log store");
        assert!(sb_store < sb_flush && sb_flush < first_log, "{ops:?}");
        // Later deletes leave the superblock alone.
        file(&mut fs, "g", M);
        trace.lock().unwrap().clear();
        fs.unlink(&rp("g"), false).unwrap();
        let ops = trace.lock().unwrap().clone();
        assert!(!ops
            .iter()
            .any(|o| matches!(o, MediaOp::Store { off: 0, .. })));
    })
}

#[test]
fn damaged_deletes_and_reclaims_are_reported_and_change_nothing() {
    with_fs(|mut fs| {
        file(&mut fs, "f", M);
        file(&mut fs, "g", M);
        fs.unlink(&rp("g"), false).unwrap(); // marks the superblock; entry 2
        let used = fs.bitmap().used_units();
        let sb = fs.superblock().clone();
        let m = fs.into_media();
        // Hand-made entries: a DELETE naming the wrong creating entry, a RECLAIM of a delete
        // that is not pending, a RECLAIM of a FILE entry, a DELETE of a missing path.
        let bodies = [
            LogEntryBody::Delete(DeleteEntry {
                target: 0,
                flags: 0,
                path: rp("g"),
            }),
            LogEntryBody::Delete(DeleteEntry {
                target: 1,
                flags: 0,
                path: rp("f"),
            }),
            LogEntryBody::Reclaim(ReclaimEntry { deletes: vec![0] }),
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            let index = 3 + i as u64;
            let b = LogEntry {
                seqnum: index,
                body,
            }
            .encode();
            m.write_log_entry(&sb, index, &b).unwrap();
        }
        let h = LogHeader::with_entries(sb.log_geometry(), 6).unwrap();
        m.write_log_header(&h).unwrap();
        let fs = Famfs::from_media(m).unwrap();
        let kinds: Vec<_> = fs
            .problems()
            .iter()
            .map(|p| (p.index, p.is_damage()))
            .collect();
        assert_eq!(
            kinds,
            vec![(3, true), (4, true), (5, true)],
            "{:?}",
            fs.problems()
        );
        assert!(fs.namespace().resolve("f").is_some());
        assert_eq!(fs.pending_deletes().count(), 1);
        assert_eq!(fs.bitmap().used_units(), used);
    })
}

#[test]
fn compact_keeps_the_namespace_and_frees_the_log() {
    with_fs(|mut fs| {
        fs.mkdir(&rp("d"), 0o750, 5, 6).unwrap();
        fs.create_file(&rp("d/keep"), 3 * M, 0o600, 7, 8, Layout::Contiguous)
            .unwrap();
        fs.mkdir(&rp("x"), 0o755, 0, 0).unwrap();
        file(&mut fs, "x/implied", M);
        for i in 0..20 {
            file(&mut fs, &format!("tmp{i}"), M);
        }
        for i in 0..20 {
            fs.unlink(&rp(&format!("tmp{i}")), false).unwrap();
        }
        fs.reclaim(&OfflineGate).unwrap();
        file(&mut fs, "pend", M);
        fs.unlink(&rp("pend"), false).unwrap();
        let before = nodes_of(&fs);
        let r = fs.compact().unwrap();
        assert_eq!(r.entries_before, 4 + 40 + 1 + 2);
        // d, d/keep, x, x/implied.
        assert_eq!(r.entries_after, 4);
        assert_eq!((r.dropped_pending, r.freed_bytes), (1, M));
        let fs = replay(fs);
        assert!(fs.problems().is_empty(), "{:?}", fs.problems());
        assert_eq!(fs.log_header().unwrap().next_index(), 4);
        let after = nodes_of(&fs);
        assert_eq!(before, after);
        assert_eq!(fs.pending_deletes().count(), 0);
        // Only the live files hold units: superblock and log 5, d/keep 3, x/implied 1.
        assert_eq!(fs.bitmap().used_units(), 5 + 3 + 1);
        // Nothing stale is left past the new end of the log.
        let mut b = vec![0u8; 20 * LOG_ENTRY_SIZE];
        let off = LOG_OFFSET + (LOG_HEADER_SIZE + 4 * LOG_ENTRY_SIZE) as u64;
        fs.media().read_fresh(off, &mut b).unwrap();
        assert!(b.iter().all(|&c| c == 0));
    })
}

#[test]
fn create_delete_cycles_run_far_past_a_full_log_with_compaction() {
    with_fs(|mut fs| {
        let cap = fs.log_header().unwrap().geometry().capacity();
        assert_eq!(cap, 15420);
        let mut ops = 0u64;
        let mut compactions = 0;
        let mut first_offsets = BTreeSet::new();
        let mut i = 0u64;
        while ops < 2 * cap + 1000 {
            // 100 files, deleted, reclaimed: 100 + 100 + 2 entries per round.
            let r = fs.with_log_lock(|a| {
                for k in 0..100 {
                    let p = rp(&format!("f{i}-{k}"));
                    if a.namespace().resolve(p.as_str()).is_none() {
                        a.create_file(&p, M, 0o644, 0, 0, Layout::Contiguous)?;
                    }
                }
                Ok(())
            });
            if compacted_when_full(&mut fs, r, &mut compactions) {
                continue;
            }
            first_offsets.insert(extents_of(&fs, &format!("f{i}-0"))[0].offset);
            let r = fs.with_log_lock(|a| {
                for k in 0..100 {
                    let p = rp(&format!("f{i}-{k}"));
                    if a.namespace().resolve(p.as_str()).is_some() {
                        a.unlink(&p, false)?;
                    }
                }
                a.reclaim(&OfflineGate)
            });
            if compacted_when_full(&mut fs, r, &mut compactions) {
                continue;
            }
            assert_eq!(fs.pending_deletes().count(), 0);
            ops += 200;
            i += 1;
        }
        assert!(compactions >= 2, "{compactions} compactions");
        // Space is reused: the same first address every round.
        assert_eq!(first_offsets.len(), 1, "{first_offsets:?}");
        let fs = replay(fs);
        assert!(fs.problems().is_empty());
        assert_eq!(fs.bitmap().used_units(), 5);
    })
}

/// Through a mount the superblock file is read-only: a first delete cannot mark it and says
/// what to do; on a file system marked at mkfs (`enable_deletes`) deletes work through a mount.
#[test]
fn a_first_delete_through_a_mount_needs_the_mark() {
    with_fs(|mut fs| {
        file(&mut fs, "f", M);
        let m = fs.into_media();
        let through_mount = |m: &Media| {
            let d = tempfile::tempdir().unwrap();
            let mut sb = vec![0u8; SB_REGION_LEN as usize];
            m.read_fresh(0, &mut sb).unwrap();
            let mut log = vec![0u8; DEFAULT_LOG_LEN as usize];
            m.read_fresh(LOG_OFFSET, &mut log).unwrap();
            std::fs::write(d.path().join("sb"), &sb).unwrap();
            std::fs::write(d.path().join("log"), &log).unwrap();
            let open = |n: &str, w: bool| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(w)
                    .open(d.path().join(n))
                    .unwrap()
            };
            let media = Media::from_meta_files(
                d.path(),
                open("sb", false),
                open("log", true),
                famfs_media::Access::ReadWrite,
            )
            .unwrap();
            (d, Famfs::from_media(media).unwrap())
        };
        let (_d, mut mounted) = through_mount(&m);
        let e = mounted.unlink(&rp("f"), false).unwrap_err();
        assert!(matches!(e, MetaError::DeletesNotEnabled), "{e}");
        assert!(e.to_string().contains("--device"), "{e}");
        assert!(
            mounted.namespace().resolve("f").is_some(),
            "nothing was logged"
        );
        enable_deletes(&m).unwrap();
        let (_d, mut mounted) = through_mount(&m);
        mounted.unlink(&rp("f"), false).unwrap();
        assert_eq!(mounted.pending_deletes().count(), 1);
    })
}
