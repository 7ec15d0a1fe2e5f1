//! The FUSE file system: namespace requests, refusals, and the two data paths.
//!
//! # Locking
//!
//! The server answers requests on several threads (`--threads`), and a slow request must not
//! stall the others, so its state is split by what needs to be serialised ([`Core`]):
//!
//! - `famfs` (a read-write lock): the played log (namespace, device table, media). Lookups,
//!   getattr, readdir(plus), opens and fallback reads and writes take it for reading, briefly;
//!   only a log play takes it for writing, and only while holding `play`;
//! - `play` (a mutex): serialises the stale checks (superblock reads, which may be slow) and the
//!   log plays. Since every writer of `famfs` holds it, a stale check that reads through the
//!   played media (fallback mode) under a read lock of `famfs` never has a writer queued behind
//!   it, so lookups never wait for it (module mode reads the superblock probes with no lock of
//!   `famfs` at all);
//! - `backing`: the backing ids (module mode); making a famfs.ko file and its backing id for an
//!   inode is serialised here, and a stale mark is set under it too, so that no file is made
//!   after the revoke was asked for;
//! - `books` (lookup counts, FUSE opens, the famfs.ko file made for each inode) and `dirs` (the
//!   listings snapshotted at opendir): small maps, each lock held only to look up or update;
//! - `stale`, `master` (the appender and the host observer of the master's unlink(2), rmdir(2)
//!   and idle reclaim: appending waits for the file system's append lock);
//! - the module's device table (lib.rs `ModuleCtx`): a device search (opens and superblock
//!   reads of candidates) runs with no lock; the attach is made under the table's lock, and
//!   when two requests found one device, the one that comes second drops what it found.
//!
//! The famfs.ko revoke of a stale mount runs on a thread of its own, with no lock. Order, for
//! the locks one thread holds at once: `master`, `play`, `famfs`, `backing`, `books`, then any
//! other (`stale`, `dirs`, the module's device table, the heartbeat's `HostInfo`). `famfs` is
//! never read-locked twice by one thread (a writer queued between would deadlock it).

use crate::heartbeat::{HeartbeatHandle, HostInfo};
use crate::stats::{Op, Stats};
use crate::{
    wire, Mode, ModuleCtx, ServerOptions, WantedDevice, XATTR_LOGPLAY, XATTR_MODE, XATTR_STATS,
};
use famfs_fmap::FileType as WireType;
use famfs_format::{FileFlags, LOG_OFFSET, MAX_RELPATH, SB_REGION_LEN};
use famfs_kmod::abi;
use famfs_media::{Access, MediaError};
use famfs_meta::{Famfs, MetaError, Node, NodeKind, PlayStats, Problem, Role, ROOT_INO};
use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

/// Inode of the `.meta` directory. Namespace inodes are dense from 1 (famfs-meta), so the meta
/// nodes take numbers far above anything a log (at most a few million entries) can produce.
pub const META_DIR_INO: u64 = 1 << 48;
/// Inode of `.meta/.superblock`.
pub const META_SB_INO: u64 = META_DIR_INO + 1;
/// Inode of `.meta/.log`.
pub const META_LOG_INO: u64 = META_DIR_INO + 2;
const META_DIR: &str = ".meta";

/// A registered backing file: the FUSE backing id of the module's DAX file of an inode. The id
/// holds its own reference to the DAX file (the kernel's), so the server keeps no descriptor per
/// file; the id lives as long as the kernel knows the inode (until `forget`), so that every open of
/// the inode reuses it (the kernel refuses a second backing file for an inode that is open), and
/// is made again on the next open after that (design.md).
struct Backing {
    id: BackingId,
}

/// One directory entry of a snapshot taken at opendir.
#[derive(Clone)]
struct DirEnt {
    ino: u64,
    kind: FileType,
    name: String,
}

/// Per-inode bookkeeping (its lock is held only to look up or update these maps).
#[derive(Default)]
struct Books {
    /// The kernel's lookup count of each inode it was handed (entry replies), less its forgets:
    /// at zero the kernel has dropped the inode, and its backing id is closed.
    lookups: HashMap<u64, u64>,
    /// FUSE opens of each inode not yet released (a deleted file with one is held).
    opens: HashMap<u64, u32>,
    /// The famfs.ko file made for each inode on this host (device and inode numbers, what a
    /// mapping of it shows in /proc/PID/maps): a deleted file mapped after its close is held.
    made: HashMap<u64, (u64, u64)>,
    /// Inodes deleted with `--revoke` whose famfs.ko file a revoke thread was started for (or,
    /// in fallback mode, whose bytes the server no longer serves).
    revoking: std::collections::HashSet<u64>,
}

/// The master's append path (module mode).
#[derive(Default)]
struct Master {
    /// The appender, made at the first unlink(2)/rmdir(2) or reclaim.
    appender: Option<Famfs>,
    /// The observer of the host slots (idle reclaim), kept across ticks.
    observer: Option<famfs_meta::hosts::HostObserver>,
}

/// The server's state, shared by the request threads, the idle thread and the fence thread
/// (see "Locking" above).
struct Core {
    /// The played log; written only by a log play, under `play`.
    famfs: RwLock<Famfs>,
    /// Held by every stale check and log play.
    play: Mutex<()>,
    module: Option<ModuleCtx>,
    backing: Mutex<HashMap<u64, Arc<Backing>>>,
    books: Mutex<Books>,
    /// Directory listings snapshotted at opendir, by handle: the namespace only grows, but a
    /// listing that changed between two readdir calls of one stream would skip or repeat names.
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEnt>>>>,
    next_fh: AtomicU64,
    /// The fs uuid and system uuid of the superblock this mount was made from.
    mounted: ([u8; 16], [u8; 16]),
    /// Set (for good) once the superblock no longer holds those uuids: the file system was
    /// replaced (mkfs -f) or killed (mkfs -k) under the mount, or this host's lease ran out.
    /// Every file of the mounted namespace then fails with ESTALE. Set under `backing`.
    stale: Mutex<Option<String>>,
    /// What this host publishes in its slot (applied count, held deleted files); unset until
    /// the slot is claimed (at mount), or when this host has none.
    host: OnceLock<Arc<HostInfo>>,
    /// The device number of this mount (what a mapping through it shows in /proc/PID/maps),
    /// looked up in /proc/self/mountinfo once needed.
    fuse_dev: OnceLock<u64>,
    mountpoint: std::path::PathBuf,
    master: Mutex<Master>,
}

/// Locks `m`; a panic in another request must not take the whole mount down with poisoned locks.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

use crate::devcheck::{self, SB_INVALID};

/// How often an idle server checks that the superblock is still the one it mounted.
const SB_CHECK_INTERVAL: Duration = Duration::from_secs(5);

impl Core {
    /// The played log, for reading.
    fn ns(&self) -> RwLockReadGuard<'_, Famfs> {
        self.famfs.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The played log, for a play (the caller holds `play`).
    fn ns_mut(&self) -> RwLockWriteGuard<'_, Famfs> {
        self.famfs.write().unwrap_or_else(|p| p.into_inner())
    }

    fn play_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.play)
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        lock(&self.books)
    }

    fn is_stale(&self) -> bool {
        lock(&self.stale).is_some()
    }

    /// Marks the mount stale (without a revoke: see [`Core::mark_stale`]), under `backing` so
    /// that no famfs.ko file is made from now on.
    fn set_stale(&self, why: String) {
        let _b = lock(&self.backing);
        *lock(&self.stale) = Some(why);
    }

    /// [`Core::check_superblock_locked`] under the play lock.
    fn check_superblock(&self) -> bool {
        let _play = self.play_lock();
        self.check_superblock_locked()
    }

    /// Checks that the superblock still holds the uuids this mount was made from; marks the mount
    /// stale (and says so in the log, once) when not. Returns whether the mount is stale. The
    /// caller holds the play lock (and no lock of `famfs`).
    fn check_superblock_locked(&self) -> bool {
        let was = lock(&self.stale).clone();
        if let Some(was) = was {
            // Found invalid, the superblock may have been caught mid-write by a re-format: say
            // what the device holds once it is valid again (the mount stays stale either way).
            if was.starts_with(SB_INVALID) {
                if let Some(now) = self
                    .superblock_change()
                    .filter(|w| !w.starts_with(SB_INVALID))
                {
                    log::error!("STALE MOUNT, updated: {now}");
                    *lock(&self.stale) = Some(now);
                }
            }
            return true;
        }
        let Some(why) = self.superblock_change() else {
            return false;
        };
        self.mark_stale(why)
    }

    /// Why the devices no longer hold the file system this mount was made from, if they do
    /// not: the primary superblock, then every secondary device in use (a secondary re-formatted
    /// or taken by another file system would hand its new owner's memory to our files). The
    /// caller holds the play lock (and no lock of `famfs`).
    ///
    /// Module mode reads each superblock with pread(2) on a module file of its own: once the
    /// mount's files are revoked (or a device is being removed) that fails with an errno, where
    /// a read through the mapping the metadata is played from would get SIGBUS and kill the
    /// server. It holds no lock of `famfs` while it reads. Fallback mode reads the mapped device
    /// or image, which nothing revokes, under a read lock of `famfs` (no writer can queue behind
    /// it: writers hold the play lock).
    fn superblock_change(&self) -> Option<String> {
        let Some(m) = &self.module else {
            let fs = self.ns();
            devcheck::test_probe_delay();
            let primary = fs.media().read_superblock().map_err(|e| e.to_string());
            if let Some(why) = devcheck::primary_change(primary, &self.mounted) {
                return Some(why);
            }
            let fs_uuid = fs.superblock().fs_uuid;
            for (i, dev) in fs.devices().iter().enumerate().skip(1) {
                let i = i as u32;
                let Some(path) = fs.device_path(i) else {
                    continue;
                };
                let Ok(media) = fs.device_media(u64::from(i)) else {
                    continue;
                };
                let read = media.read_any_superblock().map_err(|e| e.to_string());
                let at = path.display().to_string();
                if let Some(why) = devcheck::secondary_change(i, &at, read, &fs_uuid, &dev.uuid) {
                    return Some(why);
                }
            }
            return None;
        };
        // What the log says the devices are, copied out under a short read lock.
        let (fs_uuid, dev_uuids): (_, Vec<_>) = {
            let fs = self.ns();
            let uuids = fs.devices().iter().map(|d| d.uuid).collect();
            (fs.superblock().fs_uuid, uuids)
        };
        let probes = m.sb_probes();
        devcheck::test_probe_delay();
        let primary = match probes.iter().find(|p| p.0 == 0) {
            Some((_, f, _)) => devcheck::read_primary(f),
            None => Err("no superblock file to read it through".to_string()),
        };
        if let Some(why) = devcheck::primary_change(primary, &self.mounted) {
            return Some(why);
        }
        for (i, f, at) in probes.iter().filter(|p| p.0 >= 1) {
            let Some(dev_uuid) = dev_uuids.get(*i as usize) else {
                continue;
            };
            let read = devcheck::read_any(f);
            if let Some(why) = devcheck::secondary_change(*i, at, read, &fs_uuid, dev_uuid) {
                return Some(why);
            }
        }
        None
    }

    /// Stale-marking continued (split from the check so that the reason can be updated).
    ///
    /// The mount is marked stale first (every request from now on fails with ESTALE, no new
    /// file is handed out), then famfs.ko revokes the mount's files on a thread of its own:
    /// the revoke waits for reads and writes in flight and for pinned pages (a page spliced
    /// into a pipe stays pinned as long as the pipe holds it), and that wait must not hold any
    /// of the server's locks, or one reader would hang the whole mount.
    fn mark_stale(&self, why: String) -> bool {
        self.set_stale(why.clone());
        let revoking = match self.module.as_ref().map(|m| m.control.try_clone()) {
            None => "no famfs.ko files to revoke (fallback mode)".to_string(),
            Some(Ok(control)) => {
                let r = std::thread::Builder::new().name("revoke".into()).spawn(move || revoke(&control));
                match r {
                    Ok(_) => "famfs.ko is revoking the mount's files".to_string(),
                    Err(e) => format!("famfs.ko could not be asked to revoke the mount's files (no thread: {e}): mappings made before may stay"),
                }
            }
            Some(Err(e)) => format!("famfs.ko could not be asked to revoke the mount's files ({e}): mappings made before may stay"),
        };
        log::error!(
            "STALE MOUNT: {why}. Every file of the mounted namespace now fails with ESTALE and new \
             opens are refused; {revoking}. Unmount and mount again."
        );
        true
    }

    /// Plays new log entries (cheap when there are none: one superblock and one header read)
    /// and publishes the play: `None` when the mount is stale. Takes the play lock; the
    /// namespace is write-locked for the play and the publish only.
    fn play(&self) -> Option<Result<PlayStats, MetaError>> {
        let _play = self.play_lock();
        if self.check_superblock_locked() {
            return None;
        }
        let mut fs = self.ns_mut();
        let r = fs.refresh();
        self.publish_play(&fs);
        Some(r)
    }

    /// After a log play (`famfs`: the played log, still write-locked by the caller): the
    /// deleted files this host still holds (a FUSE open, or a famfs.ko file made here that may
    /// be mapped), published with the applied count in one update.
    fn publish_play(&self, famfs: &Famfs) {
        let Some(host) = self.host.get() else {
            return;
        };
        let applied = famfs.played();
        let mut books = self.books();
        let candidates: Vec<u64> = books
            .opens
            .keys()
            .chain(books.made.keys())
            .copied()
            .collect();
        let deleted = deleted_inodes(famfs, &candidates);
        if deleted.is_empty() {
            host.set_applied(applied);
            return;
        }
        let fuse_dev = self.fuse_dev();
        // A delete whose revoke was started is offered no more: its hold stays recorded until
        // the revoke ends and releases it, and must not come back after that.
        let held: Vec<_> = deleted
            .iter()
            .filter(|(ino, _, _)| !books.revoking.contains(ino))
            .map(|&(ino, d, _)| {
                let mut ids: Vec<(u64, u64)> = fuse_dev.map(|dev| (dev, ino)).into_iter().collect();
                ids.extend(books.made.get(&ino).copied());
                let opens = books.opens.get(&ino).copied().unwrap_or(0);
                (d, crate::heartbeat::Held { ino, opens, ids })
            })
            .collect();
        // Held first: a revoke that ends before the hold is recorded would leave it held.
        host.played(applied, held);
        let to_revoke: Vec<(u64, u64, Option<u64>)> = {
            let books = &mut *books;
            deleted
                .into_iter()
                .filter(|&(ino, _, revoke)| revoke && books.revoking.insert(ino))
                .map(|(ino, d, _)| (ino, d, books.made.get(&ino).map(|&(_, kino)| kino)))
                .collect()
        };
        drop(books);
        for (ino, d, kino) in to_revoke {
            self.revoke_deleted(famfs, host, ino, d, kino);
        }
    }

    /// `famfs rm --revoke`: this host lets go of deleted inode `ino` (delete entry `delete`)
    /// at once instead of when its opens and mappings end. In module mode famfs.ko revokes the
    /// file it made for it (`IOC_REVOKE_INO`: mappings zapped, later faults SIGBUS, reads and
    /// writes through open descriptors ESTALE), on a thread of its own (the revoke waits for
    /// I/O in flight and pinned pages, which must not hold the server's lock); only once that is
    /// done is the hold dropped from this host's slot, so the master reclaims only memory no
    /// one here can reach. In fallback mode the server itself is the only path to the memory
    /// and refuses the inode's reads and writes (ESTALE) from now on: the hold goes at once.
    /// `kino`: the famfs.ko file made for it here, if any.
    fn revoke_deleted(
        &self,
        famfs: &Famfs,
        host: &Arc<HostInfo>,
        ino: u64,
        delete: u64,
        kino: Option<u64>,
    ) {
        let path = match famfs.namespace().path_of(ino) {
            Some(p) => format!("/{p}"),
            None => format!("inode {ino}"),
        };
        let (Some(m), Some(kino)) = (self.module.as_ref(), kino) else {
            log::info!("{path}: deleted with --revoke; nothing of it was mapped through famfs.ko here, hold released");
            host.release_delete(delete);
            return;
        };
        let control = match m.control.try_clone() {
            Ok(c) => c,
            Err(e) => {
                log::error!("{path}: deleted with --revoke, but famfs.ko cannot be asked to revoke it ({e}): held until closed and unmapped");
                return;
            }
        };
        let host = host.clone();
        let what = path.clone();
        let spawned = std::thread::Builder::new()
            .name("revoke-file".into())
            .spawn(move || match control.revoke_ino(kino) {
                Ok(was_mapped) => {
                    log::info!("{what}: deleted with --revoke: famfs.ko revoked it (it was {}mapped); hold released", if was_mapped { "" } else { "not " });
                    host.release_delete(delete);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    log::info!("{what}: deleted with --revoke: no longer open or mapped here; hold released");
                    host.release_delete(delete);
                }
                Err(e) => log::error!(
                    "{what}: deleted with --revoke, but famfs.ko could not revoke it ({e}): held until closed and unmapped"
                ),
            });
        if let Err(e) = spawned {
            log::error!("{path}: deleted with --revoke, but no thread to revoke it ({e}): held until closed and unmapped");
        }
    }

    /// Whether `ino` was deleted with `--revoke` (its memory may be reclaimed while it is still
    /// open): the server no longer serves its bytes.
    fn revoked_delete(&self, ino: u64) -> bool {
        self.books().revoking.contains(&ino)
    }

    /// The device number of this mount, looked up in /proc/self/mountinfo until found.
    fn fuse_dev(&self) -> Option<u64> {
        if let Some(d) = self.fuse_dev.get() {
            return Some(*d);
        }
        let found = famfs_media::mounts::current()
            .into_iter()
            .rev()
            .find(|m| {
                m.mount_point == self.mountpoint && m.fstype == famfs_media::mounts::FAMFS_FSTYPE
            })
            .and_then(|m| {
                let (maj, min) = m.dev.split_once(':')?;
                Some(libc::makedev(maj.parse().ok()?, min.parse().ok()?))
            })?;
        Some(*self.fuse_dev.get_or_init(|| found))
    }

    /// The master's appender (module mode): made once from read-write duplicates of the meta
    /// files. A fallback mount has none (EPERM).
    fn ensure_appender(&self, master: &mut Master, what: &str) -> Result<(), Errno> {
        if master.appender.is_some() {
            return Ok(());
        }
        let Some((sbf, logf)) = self.module.as_ref().and_then(|m| m.meta_rw.as_ref()) else {
            log::info!("{what} refused: a fallback mount has no append path; use famfs rm");
            return Err(Errno::EPERM);
        };
        let dup = |f: &std::fs::File| f.try_clone().map_err(|_| Errno::EIO);
        let path = self.ns().media().path().to_path_buf();
        let media =
            famfs_media::Media::from_meta_files(&path, dup(sbf)?, dup(logf)?, Access::ReadWrite)
                .map_err(|e| {
                    log::error!("{what}: cannot open the log for appending: {e}");
                    Errno::EIO
                })?;
        let fs = Famfs::from_media(media).map_err(|e| {
            log::error!("{what}: cannot play the log for appending: {e}");
            Errno::EIO
        })?;
        master.appender = Some(fs);
        Ok(())
    }

    /// The master's idle reclaim (module mode): while deletes are pending, looks at the host
    /// slots (through the superblock probe, `pread`) with an observer kept across ticks, so a
    /// host that stopped is judged dead on this server's clock after its lease, and appends
    /// RECLAIM entries for what the slot gate allows, as `famfs reclaim` does. Called with no
    /// lock held.
    fn auto_reclaim(&self) {
        let fs_uuid = {
            let fs = self.ns();
            if fs.role() != Role::Master || fs.pending_deletes().next().is_none() {
                return;
            }
            fs.superblock().fs_uuid
        };
        let Some(probe) = self.module.as_ref().and_then(|m| m.sb_probe_of(0)) else {
            return;
        };
        let mut master = lock(&self.master);
        let views = {
            let observer = master
                .observer
                .get_or_insert_with(|| famfs_meta::hosts::HostObserver::new(fs_uuid));
            match observer.observe(&*probe) {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("idle reclaim: cannot read the host slots: {e}");
                    return;
                }
            }
        };
        if self.ensure_appender(&mut master, "idle reclaim").is_err() {
            return;
        }
        let Some(appender) = master.appender.as_mut() else {
            return;
        };
        let gate = famfs_meta::hosts::SlotGate { views: &views };
        match appender.reclaim(&gate) {
            Ok(r) if !r.reclaimed.is_empty() => {
                log::info!(
                    "idle reclaim: deletes {:?} reclaimed ({} bytes free again)",
                    r.reclaimed,
                    r.freed_bytes
                );
                drop(master);
                let _play = self.play_lock();
                if let Err(e) = self.ns_mut().refresh() {
                    log::error!("log play after the idle reclaim: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("idle reclaim: {e}"),
        }
    }

    /// The kernel was handed `ino` in an entry reply (one more lookup reference).
    fn looked_up(&self, ino: u64) {
        *self.books().lookups.entry(ino).or_insert(0) += 1;
    }

    /// The kernel dropped `nlookup` references to `ino`: at zero it no longer has the inode, so no
    /// file of it is open, and its backing id (and with it the module's DAX file) is released. The
    /// meta files keep theirs: their DAX files were made once, at start.
    fn forget(&self, ino: u64, nlookup: u64) {
        // Both maps at once (in lock order): a lookup of the inode coming in meanwhile either
        // keeps the backing id alive or finds it gone, never an id on its way out.
        let mut backing = lock(&self.backing);
        let mut books = self.books();
        let left = match books.lookups.get_mut(&ino) {
            Some(n) => {
                *n = n.saturating_sub(nlookup);
                *n
            }
            None => 0,
        };
        if left == 0 {
            books.lookups.remove(&ino);
            if ino != META_SB_INO && ino != META_LOG_INO {
                backing.remove(&ino);
            }
        }
    }
}

/// Which of `candidates` (inodes this host has open or made a famfs.ko file for) were removed
/// by a delete whose memory is not reclaimed yet, with the log index of that delete (a removed
/// node keeps its number and the index of the entry that created it, which the pending delete
/// names as its target).
fn deleted_inodes(famfs: &Famfs, candidates: &[u64]) -> Vec<(u64, u64, bool)> {
    let ns = famfs.namespace();
    let removed: Vec<(u64, u64)> = candidates
        .iter()
        .filter(|&&ino| ns.is_removed(ino))
        .filter_map(|&ino| Some((ino, ns.get(ino)?.log_index?)))
        .collect();
    if removed.is_empty() {
        return Vec::new();
    }
    let pending: HashMap<u64, (u64, bool)> = famfs
        .pending_deletes()
        .map(|p| (p.target, (p.index, p.revoke)))
        .collect();
    removed
        .into_iter()
        .filter_map(|(ino, created)| {
            let &(delete, revoke) = pending.get(&created)?;
            Some((ino, delete, revoke))
        })
        .collect()
}

/// Has famfs.ko revoke every file made through `control` (files opened or mapped before now
/// would read the new occupant's memory: their mappings are zapped, faults get SIGBUS, reads and
/// writes ESTALE) and logs how it went. Runs with none of the server's locks held.
fn revoke(control: &famfs_kmod::Control) {
    match control.revoke() {
        Ok(r) => log::error!(
            "famfs.ko revoked the mount's files ({} file(s) were mapped or open)",
            r.files
        ),
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
            log::error!("famfs.ko is too old to revoke files: mappings made before stay and read the new file system")
        }
        Err(e) => log::error!(
            "famfs.ko could not revoke the mount's files ({e}): mappings made before may stay"
        ),
    }
}

/// What an inode is, resolved in the played namespace.
enum Target {
    Meta(MetaKind),
    Node,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MetaKind {
    Dir,
    Superblock,
    Log,
}

/// The famfs FUSE file system (implements [`fuser::Filesystem`]).
pub struct FamfsFs {
    core: Arc<Core>,
    /// The heartbeat thread (started at mount): dropping it releases this host's slot.
    heartbeat: Option<HeartbeatHandle>,
    /// Heartbeat interval and lease.
    pub(crate) host_timing: (Duration, Duration),
    stats: Arc<Stats>,
    mode: Mode,
    role: Role,
    attr_ttl: Duration,
    entry_ttl: Duration,
    start: SystemTime,
    log_len: u64,
}

fn errno_of_media(e: &MediaError) -> Errno {
    match e {
        MediaError::ReadOnly => Errno::EROFS,
        MediaError::OutOfRange { .. } => Errno::EIO,
        MediaError::Io { source, .. } => {
            Errno::from_i32(source.raw_os_error().unwrap_or(libc::EIO))
        }
        _ => Errno::EIO,
    }
}

impl FamfsFs {
    pub(crate) fn new(
        famfs: Famfs,
        module: Option<ModuleCtx>,
        opts: &ServerOptions,
        stats: Arc<Stats>,
    ) -> Self {
        let sb = famfs.superblock();
        let log_len = sb.log_len;
        let role = famfs.role();
        FamfsFs {
            mode: if module.is_some() {
                Mode::Module
            } else {
                Mode::Fallback
            },
            role,
            attr_ttl: opts.attr_ttl,
            entry_ttl: opts.entry_ttl,
            start: SystemTime::now(),
            log_len,
            stats,
            heartbeat: None,
            host_timing: (opts.heartbeat_interval, opts.lease),
            core: Arc::new(Core {
                mounted: (sb.fs_uuid, sb.system_uuid),
                famfs: RwLock::new(famfs),
                play: Mutex::new(()),
                module,
                backing: Mutex::new(HashMap::new()),
                books: Mutex::new(Books::default()),
                dirs: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
                stale: Mutex::new(None),
                host: OnceLock::new(),
                fuse_dev: OnceLock::new(),
                mountpoint: opts.mountpoint.clone(),
                master: Mutex::new(Master::default()),
            }),
        }
    }

    /// Starts the idle check of the superblock (every [`SB_CHECK_INTERVAL`]) and, when this host
    /// has a slot, the idle play of the log tail (every heartbeat interval: a host that gets no
    /// lookups must still play deletes, or the master could never reclaim their memory); the
    /// thread ends with the file system.
    fn watch_superblock(&self) {
        let weak = Arc::downgrade(&self.core);
        let tick = self.host_timing.0.min(SB_CHECK_INTERVAL);
        let r = std::thread::Builder::new()
            .name("sb-watch".into())
            .spawn(move || {
                let mut last_check = std::time::Instant::now();
                loop {
                    std::thread::sleep(tick);
                    let Some(core) = weak.upgrade() else { return };
                    let play = core.host.get().is_some();
                    if !play && last_check.elapsed() < SB_CHECK_INTERVAL {
                        continue;
                    }
                    last_check = std::time::Instant::now();
                    if !play {
                        if core.check_superblock() {
                            return;
                        }
                        continue;
                    }
                    match core.play() {
                        None => return,
                        Some(Err(e)) => log::error!("idle log play failed: {e}"),
                        Some(Ok(_)) => {}
                    }
                    core.auto_reclaim();
                }
            });
        if let Err(e) = r {
            log::warn!("cannot start the superblock watch thread: {e}");
        }
    }

    /// Claims this host's slot, arms the lease, plays the log again (a delete appended before
    /// the claim was visible is then in the namespace before anything is served) and starts the
    /// heartbeat (heartbeat.rs). Called once, at mount, in the process that serves.
    pub(crate) fn start_host(&mut self) -> Result<(), crate::FusedError> {
        use crate::heartbeat::{self, Lease};
        use famfs_meta::hosts;
        let (interval, lease) = self.host_timing;
        let core = self.core.clone();
        // At mount, before anything is served: the play lock and the namespace are held
        // throughout.
        let _play = core.play_lock();
        let mut fs = core.ns_mut();
        let sb = fs.superblock().clone();
        let device = fs.media().path().to_path_buf();
        // Where the slot is written, and how the lease is kept.
        let (io, kind): (Box<dyn hosts::SlotIo + Send>, Lease) = match core.module.as_ref() {
            Some(m) => {
                let msg = wire::superblock_wire()
                    .map_err(|e| crate::FusedError::Wire("host slots".into(), e))?;
                let f = m
                    .control
                    .create_file(&msg, abi::CREATE_CLOEXEC, 0o600, 0, 0)
                    .map_err(|e| crate::FusedError::Module {
                        what: "create the host slot file".into(),
                        source: e,
                    })?;
                let control = m
                    .control
                    .try_clone()
                    .map_err(|e| crate::FusedError::Module {
                        what: "duplicate the control open".into(),
                        source: e,
                    })?;
                // An older famfs.ko has no lease: this host then cannot fence itself.
                match heartbeat::set_lease(&control, lease) {
                    Ok(()) => (Box::new(f.file), Lease::Module(control)),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
                        log::warn!(
                            "famfs.ko has no lease (IOC_LEASE): this host does not fence itself \
                             when it stops heartbeating; files deleted on the master are reclaimed \
                             only while this host is seen alive and done with them"
                        );
                        (Box::new(f.file), Lease::Fallback)
                    }
                    Err(e) => {
                        return Err(crate::FusedError::Module {
                            what: format!("arm the lease of {lease:?}"),
                            source: e,
                        })
                    }
                }
            }
            None => {
                if fs.media().access() != Access::ReadWrite {
                    log::error!(
                        "{}: read-only: this host cannot publish a host slot; the master does \
                         not see it and may reclaim deleted files it still reads",
                        device.display()
                    );
                    return Ok(());
                }
                let media = famfs_media::Media::open(&device, Access::ReadWrite)?;
                (Box::new(media), Lease::Fallback)
            }
        };
        let template = hosts::SlotTemplate {
            fs_uuid: sb.fs_uuid,
            host_id: hosts::new_host_id(),
            system_uuid: famfs_meta::local_system_uuid(&famfs_meta::system_uuid_path())
                .unwrap_or([0; 16]),
            role: match self.role {
                Role::Master => famfs_format::slots::SlotRole::Master,
                Role::Client => famfs_format::slots::SlotRole::Client,
            },
            module_lease: matches!(kind, Lease::Module(_)),
            lease_ms: lease.as_millis() as u32,
            interval_ms: interval.as_millis() as u32,
            hostname: hosts::hostname(),
            applied: fs.played(),
        };
        let claimed_at = std::time::Instant::now();
        let claimed = hosts::claim_slot(io.as_ref(), &template, hosts::ClaimOptions::default())
            .map_err(|e| crate::FusedError::Hosts(e.to_string()))?;
        log::info!(
            "host slot {} claimed (host id {}, lease {lease:?}, heartbeat every {interval:?}, {})",
            claimed.index,
            famfs_format::format_uuid(&template.host_id),
            if template.module_lease {
                "famfs.ko lease"
            } else {
                "no kernel lease"
            }
        );
        // Played again now that the claim is visible (hosts::claim_slot explains why).
        if let Err(e) = fs.refresh() {
            log::error!("log play after the host slot claim: {e}");
        }
        let info = HostInfo::new(fs.played());
        if core.host.set(info.clone()).is_err() {
            return Err(crate::FusedError::Hosts(
                "the host slot was claimed twice".into(),
            ));
        }
        core.publish_play(&fs);
        drop(fs);
        drop(_play);
        let weak = Arc::downgrade(&self.core);
        let on_fence: heartbeat::OnFence = Box::new(move |why| {
            let weak = weak.clone();
            let _ = std::thread::Builder::new()
                .name("fence".into())
                .spawn(move || {
                    if let Some(core) = weak.upgrade() {
                        let _play = core.play_lock();
                        // A replaced file system also wipes the slots: say that, when it is so
                        // (a superblock that cannot be read at all is the lease's revoke).
                        if !core.is_stale() {
                            if let Some(sb_why) = core
                                .superblock_change()
                                .filter(|w| !w.contains("cannot read it"))
                            {
                                core.mark_stale(sb_why);
                            }
                        }
                        if !core.is_stale() {
                            log::error!(
                                "STALE MOUNT: {why}. Every file of the mounted namespace now \
                                 fails with ESTALE. Unmount and mount again."
                            );
                            core.set_stale(why);
                        }
                    }
                });
        });
        let h = heartbeat::start(
            info,
            famfs_meta::hosts::Heartbeat::new(claimed),
            io,
            kind,
            (interval, lease),
            claimed_at,
            on_fence,
        )
        .map_err(|e| crate::FusedError::Hosts(e.to_string()))?;
        self.heartbeat = Some(h);
        Ok(())
    }

    /// The data path in use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// This host's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The request counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    pub(crate) fn problems(&self) -> Vec<Problem> {
        self.core.ns().problems().to_vec()
    }

    /// Plays new log entries (cheap when there are none: one superblock and one header read).
    /// Takes the play lock and, for the play, the namespace's write lock: the caller holds
    /// neither, nor a read lock of the namespace.
    fn replay(&self) -> Result<PlayStats, MetaError> {
        let r = self
            .core
            .play()
            .unwrap_or(Err(MetaError::SuperblockChanged));
        match &r {
            Ok(s) if s.played > 0 => {
                self.stats.log_plays.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "log play: {} entries ({} files, {} dirs)",
                    s.played,
                    s.files,
                    s.dirs
                );
            }
            Ok(_) => {}
            Err(e) => log::error!("log play failed: {e}"),
        }
        r
    }

    fn target(&self, fs: &Famfs, ino: u64) -> Option<Target> {
        match ino {
            META_DIR_INO => Some(Target::Meta(MetaKind::Dir)),
            META_SB_INO => Some(Target::Meta(MetaKind::Superblock)),
            META_LOG_INO => Some(Target::Meta(MetaKind::Log)),
            _ => fs.namespace().get(ino).map(|_| Target::Node),
        }
    }

    fn meta_attr(&self, m: MetaKind) -> FileAttr {
        let (ino, kind, perm, size) = match m {
            MetaKind::Dir => (META_DIR_INO, FileType::Directory, 0o755, 0),
            MetaKind::Superblock => (META_SB_INO, FileType::RegularFile, 0o444, SB_REGION_LEN),
            MetaKind::Log => {
                let perm = if self.role == Role::Master {
                    0o644
                } else {
                    0o444
                };
                (META_LOG_INO, FileType::RegularFile, perm, self.log_len)
            }
        };
        self.attr(
            ino,
            kind,
            perm,
            0,
            0,
            size,
            if m == MetaKind::Dir { 2 } else { 1 },
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn attr(
        &self,
        ino: u64,
        kind: FileType,
        perm: u32,
        uid: u32,
        gid: u32,
        size: u64,
        nlink: u32,
    ) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            // famfs allocates in 2 MiB units; report the whole allocation.
            blocks: size.div_ceil(SB_REGION_LEN) * (SB_REGION_LEN / 512),
            atime: self.start,
            mtime: self.start,
            ctime: self.start,
            crtime: self.start,
            kind,
            perm: (perm & 0o7777) as u16,
            nlink,
            uid,
            gid,
            rdev: 0,
            blksize: SB_REGION_LEN as u32,
            flags: 0,
        }
    }

    fn node_attr(&self, n: &Node) -> FileAttr {
        match &n.kind {
            NodeKind::Dir { children } => {
                let mut nlink = 2 + children.len() as u32; // generous: subdirectories are not told apart cheaply
                if n.ino == ROOT_INO {
                    nlink += 1; // .meta
                }
                self.attr(n.ino, FileType::Directory, n.mode, n.uid, n.gid, 0, nlink)
            }
            NodeKind::File(f) => {
                let mut perm = n.mode;
                if f.flags == FileFlags::READ_ONLY {
                    perm &= !0o222;
                }
                self.attr(n.ino, FileType::RegularFile, perm, n.uid, n.gid, f.size, 1)
            }
        }
    }

    fn attr_of(&self, fs: &Famfs, ino: u64) -> Option<FileAttr> {
        match self.target(fs, ino)? {
            Target::Meta(m) => Some(self.meta_attr(m)),
            Target::Node => fs.namespace().get(ino).map(|n| self.node_attr(n)),
        }
    }

    fn lookup_in(&self, fs: &Famfs, parent: u64, name: &str) -> Option<FileAttr> {
        match (parent, name) {
            (ROOT_INO, META_DIR) => Some(self.meta_attr(MetaKind::Dir)),
            (META_DIR_INO, ".superblock") => Some(self.meta_attr(MetaKind::Superblock)),
            (META_DIR_INO, ".log") => Some(self.meta_attr(MetaKind::Log)),
            (META_DIR_INO, _) => None,
            _ => {
                let ino = fs.namespace().lookup(parent, name)?;
                self.attr_of(fs, ino)
            }
        }
    }

    fn listing(&self, fs: &Famfs, ino: u64) -> Option<Vec<DirEnt>> {
        let ent = |ino, kind, name: &str| DirEnt {
            ino,
            kind,
            name: name.to_string(),
        };
        if ino == META_DIR_INO {
            return Some(vec![
                ent(META_DIR_INO, FileType::Directory, "."),
                ent(ROOT_INO, FileType::Directory, ".."),
                ent(META_SB_INO, FileType::RegularFile, ".superblock"),
                ent(META_LOG_INO, FileType::RegularFile, ".log"),
            ]);
        }
        let ns = fs.namespace();
        let node = ns.get(ino)?;
        let children = ns.children(ino)?;
        let mut v = vec![
            ent(ino, FileType::Directory, "."),
            ent(node.parent, FileType::Directory, ".."),
        ];
        if ino == ROOT_INO {
            v.push(ent(META_DIR_INO, FileType::Directory, META_DIR));
        }
        for (name, child) in children {
            if ino == ROOT_INO && name == META_DIR {
                continue; // our .meta shadows a log entry of that name
            }
            let kind = if ns.get(child).is_some_and(Node::is_dir) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            v.push(ent(child, kind, name));
        }
        Some(v)
    }

    /// Where a file's bytes live and how long it is, for the fallback data path.
    fn fallback_io(
        &self,
        fs: &Famfs,
        ino: u64,
        off: u64,
        len: usize,
        write: Option<&[u8]>,
    ) -> Result<Vec<u8>, Errno> {
        if ino != META_SB_INO
            && ino != META_LOG_INO
            && self.core.host.get().is_some_and(|h| !h.lease_valid())
        {
            // Fenced: the lease ran out, the master may have reused this file's memory.
            return Err(Errno::ESTALE);
        }
        if self.core.revoked_delete(ino) {
            // Deleted with --revoke: this host let go of it, its memory may be reused.
            return Err(Errno::ESTALE);
        }
        let mut media = fs.media();
        let (size, meta_base) = match ino {
            META_SB_INO => (SB_REGION_LEN, Some(0)),
            META_LOG_INO => (self.log_len, Some(LOG_OFFSET)),
            _ => (
                fs.namespace()
                    .get(ino)
                    .and_then(Node::file)
                    .ok_or(Errno::EIO)?
                    .size,
                None,
            ),
        };
        if write.is_some() && off >= size {
            return Err(Errno::EFBIG); // famfs files never grow
        }
        if off >= size {
            return Ok(Vec::new());
        }
        let len = (len as u64).min(size - off) as usize;
        let mut out = if write.is_none() {
            vec![0u8; len]
        } else {
            Vec::new()
        };
        let mut done = 0usize;
        while done < len {
            let foff = off + done as u64;
            let (dev_off, seg) = match meta_base {
                Some(base) => (base + foff, (len - done) as u64),
                None => {
                    let f = fs
                        .namespace()
                        .get(ino)
                        .and_then(Node::file)
                        .ok_or(Errno::EIO)?;
                    let s = f.fmap.resolve(foff).ok_or(Errno::EIO)?;
                    if s.devindex != 0 {
                        media = fs.device_media(s.devindex).map_err(|e| {
                            let path = fs.namespace().path_of(ino).unwrap_or_default();
                            log::error!("/{path}: {e}");
                            Errno::ENXIO
                        })?;
                    } else {
                        media = fs.media();
                    }
                    (s.offset, s.len)
                }
            };
            let n = seg.min((len - done) as u64) as usize;
            let r = match write {
                // The log's pages come from an appender's msync, entry before header: each must
                // be durable before the reply lets the appender go on to the next.
                Some(data) if ino == META_LOG_INO => {
                    media.write_durable(dev_off, &data[done..done + n])
                }
                Some(data) => media.write_at(dev_off, &data[done..done + n]),
                // The log is written by other processes and hosts: read it fresh.
                None if ino == META_LOG_INO => media.read_fresh(dev_off, &mut out[done..done + n]),
                None => media.read_at(dev_off, &mut out[done..done + n]),
            };
            r.map_err(|e| {
                log::warn!("fallback i/o on inode {ino} at {foff}: {e}");
                errno_of_media(&e)
            })?;
            done += n;
        }
        if write.is_some() {
            out.resize(len, 0); // only the length matters to the caller
        }
        Ok(out)
    }

    /// Whether opening `ino` for writing is refused on this host, and why.
    fn write_refused(&self, fs: &Famfs, ino: u64) -> Option<Errno> {
        match ino {
            META_SB_INO => Some(Errno::EROFS),
            META_LOG_INO if self.role != Role::Master => Some(Errno::EROFS),
            META_LOG_INO => None,
            _ => match fs.namespace().get(ino).and_then(Node::file) {
                Some(f) if f.flags == FileFlags::READ_ONLY => Some(Errno::EROFS),
                Some(_)
                    if self.mode == Mode::Fallback && fs.media().access() != Access::ReadWrite =>
                {
                    Some(Errno::EROFS)
                }
                _ => None,
            },
        }
    }

    /// Why an open of `ino` with `flags` is refused, if it is (`fs`: the played log, read-locked
    /// by the caller).
    fn open_refused(
        &self,
        fs: &Famfs,
        req: &Request,
        ino: u64,
        flags: OpenFlags,
    ) -> Result<(), Errno> {
        let Some(target) = self.target(fs, ino) else {
            return Err(Errno::ENOENT);
        };
        if let Target::Meta(MetaKind::Dir) = target {
            return Err(Errno::EISDIR);
        }
        if fs.namespace().get(ino).is_some_and(Node::is_dir) {
            return Err(Errno::EISDIR);
        }
        // A deleted file is never opened again (a dentry the kernel still caches may ask): only
        // the opens and mappings made before this host played the delete hold its memory, and
        // those are what the host slot reports.
        if fs.namespace().is_removed(ino) {
            return Err(Errno::ENOENT);
        }
        if flags.0 & libc::O_TRUNC != 0 {
            return Err(Errno::EPERM); // truncation is refused like setattr(size)
        }
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            if let Some(e) = self.write_refused(fs, ino) {
                return Err(e);
            }
            // The log is root's alone to append to, whatever the mount options: the kernel's
            // default_permissions check (mode 0644, owner root) is not the only guard.
            if ino == META_LOG_INO && req.uid() != 0 {
                return Err(Errno::EACCES);
            }
        }
        Ok(())
    }

    /// Module mode, before an open of `ino` (`fs`: the played log, read-locked by the caller):
    /// the secondary devices its memory is on that are not in the module's table yet, for
    /// [`FamfsFs::attach_devices`] to look for once the lock is dropped. Nothing when the inode
    /// has its backing id already, or is not a file.
    fn devices_wanted(&self, fs: &Famfs, ino: u64) -> Result<Vec<WantedDevice>, Errno> {
        let Some(module) = &self.core.module else {
            return Ok(Vec::new());
        };
        if ino == META_SB_INO || ino == META_LOG_INO || lock(&self.core.backing).contains_key(&ino)
        {
            return Ok(Vec::new());
        }
        let Some(f) = fs.namespace().get(ino).and_then(Node::file) else {
            return Ok(Vec::new());
        };
        let mut devs: Vec<u64> = f.fmap.extents().iter().map(|e| e.devindex).collect();
        devs.sort_unstable();
        devs.dedup();
        let mut wanted = Vec::new();
        for d in devs {
            let idx = u32::try_from(d).map_err(|_| Errno::ENXIO)?;
            if module.has_device(idx) {
                continue;
            }
            match WantedDevice::of(fs, idx) {
                Ok(w) => wanted.push(w),
                Err(why) => {
                    let path = fs.namespace().path_of(ino).unwrap_or_default();
                    log::error!(
                        "/{path}: its memory is on a device this host does not have: {why}"
                    );
                    return Err(Errno::ENXIO);
                }
            }
        }
        Ok(wanted)
    }

    /// Module mode: attaches the devices [`FamfsFs::devices_wanted`] listed for the file at
    /// `path`, holding none of the server's locks while it looks for them (a device probe may
    /// be slow).
    fn attach_devices(&self, path: &str, wanted: &[WantedDevice]) -> Result<(), Errno> {
        let Some(module) = &self.core.module else {
            return Ok(());
        };
        for w in wanted {
            if let Err(why) = module.ensure_device(w) {
                log::error!("/{path}: its memory is on a device this host does not have: {why}");
                return Err(Errno::ENXIO);
            }
        }
        Ok(())
    }

    /// Module mode: the backing id of `ino`, making the DAX file and registering it on first use
    /// (`fs`: the played log, read-locked by the caller; the devices the file's memory is on
    /// were attached before, by [`FamfsFs::attach_devices`]). Making it is serialised under the
    /// `backing` lock, so that racing opens of one inode share one id; none is made once the
    /// mount is stale (the revoke would not cover it).
    fn backing_for(&self, fs: &Famfs, ino: u64, reply: &ReplyOpen) -> Result<Arc<Backing>, Errno> {
        let mut backing = lock(&self.core.backing);
        if let Some(b) = backing.get(&ino) {
            return Ok(b.clone());
        }
        if self.core.is_stale() {
            return Err(Errno::ESTALE);
        }
        let module = self.core.module.as_ref().ok_or(Errno::EIO)?;
        let file = match ino {
            META_SB_INO => lock(&module.sb_file).take().map(|d| d.file),
            META_LOG_INO => lock(&module.log_file).take().map(|d| d.file),
            _ => None,
        };
        let file = match file {
            Some(f) => f,
            None => {
                let node = fs.namespace().get(ino).ok_or(Errno::ENOENT)?;
                let f = node.file().ok_or(Errno::EISDIR)?;
                // Every device the map uses must be in the module's table.
                for e in f.fmap.extents() {
                    let idx = u32::try_from(e.devindex).map_err(|_| Errno::ENXIO)?;
                    if !module.has_device(idx) {
                        let path = fs.namespace().path_of(ino).unwrap_or_default();
                        log::error!(
                            "/{path}: its memory is on device {idx}, which is not attached"
                        );
                        return Err(Errno::ENXIO);
                    }
                }
                let msg = wire::wire_fmap(WireType::Regular, f.size, &f.fmap).map_err(|e| {
                    log::error!("inode {ino}: {e}");
                    Errno::from_i32(e.errno())
                })?;
                let mut flags = abi::CREATE_CLOEXEC;
                if f.flags == FileFlags::READ_ONLY {
                    flags |= abi::CREATE_READ_ONLY;
                }
                let dax = module
                    .control
                    .create_file(&msg, flags, node.mode & 0o7777, node.uid, node.gid)
                    .map_err(|e| {
                        log::error!("famfs.ko create file for inode {ino}: {e}");
                        Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
                    })?;
                self.stats.dax_files_created.fetch_add(1, Ordering::Relaxed);
                if let Ok(md) = dax.file.metadata() {
                    use std::os::unix::fs::MetadataExt;
                    self.core.books().made.insert(ino, (md.dev(), md.ino()));
                }
                dax.file
            }
        };
        let id = reply.open_backing(&file).map_err(|e| {
            log::error!("FUSE_DEV_IOC_BACKING_OPEN for inode {ino}: {e}");
            Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
        })?;
        // The backing id now holds the file: our descriptor is closed here.
        drop(file);
        let b = Arc::new(Backing { id });
        backing.insert(ino, b.clone());
        Ok(b)
    }

    /// unlink(2) / rmdir(2) through the mount: on the master in module mode, a DELETE entry
    /// appended as `famfs rm` / `famfs rmdir` would (under the file system's append lock), then
    /// played here. A client's log is read-only (EROFS); a fallback mount has no append path of
    /// its own (EPERM: use `famfs rm`); only root appends to the log (EACCES).
    fn remove(&self, req: &Request, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let what = if dir { "rmdir" } else { "unlink" };
        if self.core.is_stale() {
            return Err(Errno::ESTALE);
        }
        if parent == META_DIR_INO || (parent == ROOT_INO && name == META_DIR) {
            return Err(Errno::EPERM);
        }
        if self.role != Role::Master {
            log::info!("{what} refused: this host is a client (only the master deletes)");
            return Err(Errno::EROFS);
        }
        if req.uid() != 0 {
            return Err(Errno::EACCES);
        }
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        let ppath = self
            .core
            .ns()
            .namespace()
            .path_of(parent)
            .ok_or(Errno::ENOENT)?;
        let rel = if ppath.is_empty() {
            name.to_string()
        } else {
            format!("{ppath}/{name}")
        };
        let rel = famfs_format::RelPath::new(&rel).map_err(|_| Errno::EINVAL)?;
        // Appending waits for the file system's append lock: only the master's own lock is held.
        let mut master = lock(&self.core.master);
        self.core.ensure_appender(&mut master, what)?;
        let appender = master.appender.as_mut().ok_or(Errno::EIO)?;
        let r = if dir {
            appender.rmdir(&rel)
        } else {
            appender.unlink(&rel, false)
        };
        use famfs_meta::MetaError as E;
        match r {
            Ok(d) => log::info!("{what} /{rel}: delete entry {d}"),
            Err(e) => {
                let errno = match &e {
                    E::NotFound(_) => Errno::ENOENT,
                    E::IsADirectory(_) => Errno::EISDIR,
                    E::NotADirectory(_) => Errno::ENOTDIR,
                    E::NotEmpty(_) => Errno::ENOTEMPTY,
                    E::DeletesNotEnabled | E::RemoveRoot => Errno::EPERM,
                    E::LogFull { .. } => Errno::ENOSPC,
                    _ => Errno::EIO,
                };
                log::warn!("{what} /{rel}: {e}");
                return Err(errno);
            }
        }
        drop(master);
        // Played here at once: the name is gone from this mount when the call returns.
        if let Err(MetaError::SuperblockChanged) = self.replay() {
            return Err(Errno::ESTALE);
        }
        Ok(())
    }

    fn xattr_value(&self, ino: u64, name: &str) -> Result<Vec<u8>, Errno> {
        // famfs has no security labels and no ACLs: "not supported" (not "no such attribute")
        // for those namespaces. The kernel caches no xattr answer, but the probes' callers do:
        // `ls -l` (coreutils' getfilecon_cache and file_has_acl_cache) stops asking a device
        // once it answers ENOTSUP, where ENODATA cost two GETXATTR requests per entry listed.
        if name.starts_with("security.") || name.starts_with("system.") {
            return Err(Errno::EOPNOTSUPP);
        }
        if ino != ROOT_INO {
            return Err(Errno::NO_XATTR);
        }
        match name {
            XATTR_LOGPLAY => {
                let s = self.replay().map_err(|e| match e {
                    MetaError::SuperblockChanged => Errno::ESTALE,
                    _ => Errno::EIO,
                })?;
                let played = self.core.ns().played();
                Ok(format!(
                    "played {} new entries ({} files, {} dirs, {} problems); {} entries in the log\n",
                    s.played,
                    s.files,
                    s.dirs,
                    s.problems,
                    played
                )
                .into_bytes())
            }
            XATTR_STATS => Ok(self.stats.render().into_bytes()),
            XATTR_MODE => Ok(match &*lock(&self.core.stale) {
                None => format!("{} {}\n", self.mode, self.role),
                Some(why) => format!("{} {} stale: {why}\n", self.mode, self.role),
            }
            .into_bytes()),
            _ => Err(Errno::NO_XATTR),
        }
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if (size as usize) < data.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for FamfsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        self.stats.count(Op::Init);
        self.watch_superblock();
        if config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS)
            .is_err()
        {
            log::debug!("kernel has no readdirplus");
        }
        // Without it the kernel never marks our inodes S_NOSEC, so every write(2) through the
        // mount runs file_remove_privs -> security_inode_need_killpriv, a FUSE GETXATTR of
        // security.capability: a round trip to this server per write, even in passthrough
        // (measured: one getxattr per write(2), 4 KiB writes at 1/50 of the famfs.ko file). With
        // it the superblock gets SB_NOSEC and the first write marks the inode S_NOSEC until its
        // attributes are next refreshed. What the kernel then leaves to us, killing suid/sgid
        // and security.capability on write, truncate and chown, cannot arise: setxattr,
        // chmod/chown and truncation are refused (EPERM) and modes come from the log.
        if config
            .add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
            .is_err()
        {
            log::debug!(
                "kernel has no handle_killpriv_v2: every write(2) will ask for security.capability"
            );
        }
        if self.mode == Mode::Module {
            config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).map_err(|_| {
                std::io::Error::other("the kernel's FUSE has no passthrough support (needs Linux 6.9+); use --fallback")
            })?;
            // The module's files live on an unstacked internal mount (depth 0 < 1).
            config.set_max_stack_depth(1).map_err(|m| {
                std::io::Error::other(format!("max_stack_depth 1 refused (max {m})"))
            })?;
        }
        // Flock and POSIX locks are not requested from the kernel on purpose: it then keeps them
        // itself, per inode of this mount (host-local). Appenders do not lock .meta/.log: they
        // take the file system's append lock (famfs_media::lock), whatever path they came by.
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.stats.count(Op::Lookup);
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        if self.core.is_stale() {
            return reply.error(Errno::ESTALE);
        }
        let mut found = self.lookup_in(&self.core.ns(), parent.0, name);
        if found.is_none() && parent.0 != META_DIR_INO {
            // A miss may be a file the master just created: play the tail and look again.
            // Misses are answered with ENOENT, which the kernel does not cache, so the next
            // lookup of the name comes back here.
            if let Err(MetaError::SuperblockChanged) = self.replay() {
                return reply.error(Errno::ESTALE);
            }
            found = self.lookup_in(&self.core.ns(), parent.0, name);
        }
        match found {
            Some(attr) => {
                self.core.looked_up(attr.ino.0);
                reply.entry(&self.entry_ttl, &attr, Generation(0))
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    // BATCH_FORGET: fuser's default batch_forget calls this once per inode (its ForgetOne type is
    // not public, so it cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.stats.count(Op::Forget);
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.stats.count(Op::Getattr);
        // The root stays: the mount point can still be stat'ed and unmounted.
        if ino.0 != ROOT_INO && self.core.is_stale() {
            return reply.error(Errno::ESTALE);
        }
        match self.attr_of(&self.core.ns(), ino.0) {
            Some(a) => reply.attr(&self.attr_ttl, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.stats.count(Op::Setattr);
        let Some(attr) = self.attr_of(&self.core.ns(), ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        // Size, mode and owner live in the append-only log: famfs files are allocated once and
        // never truncated, extended or re-owned (a truncate to the size a file has changes
        // nothing: fixed_size). Time changes (touch) are accepted and ignored: famfs keeps no
        // timestamps, and failing `touch` on an existing file helps nobody.
        if mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(Errno::EPERM);
        }
        if let Some(Err(e)) = size.map(|s| crate::fixed_size::truncate_verdict(attr.size, s)) {
            return reply.error(e);
        }
        reply.attr(&self.attr_ttl, &attr);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.stats.count(Op::Open);
        // Before any file's memory is handed out: is it still the file system we mounted?
        if self.core.check_superblock() {
            return reply.error(Errno::ESTALE);
        }
        let ino = ino.0;
        if self.mode == Mode::Module {
            // The devices the file's memory is on are attached first, with the namespace
            // unlocked (a device probe may be slow); the checks are made again below.
            let (wanted, path) = {
                let fs = self.core.ns();
                if let Err(e) = self.open_refused(&fs, req, ino, flags) {
                    return reply.error(e);
                }
                match self.devices_wanted(&fs, ino) {
                    Ok(w) if w.is_empty() => (w, String::new()),
                    Ok(w) => (w, fs.namespace().path_of(ino).unwrap_or_default()),
                    Err(e) => return reply.error(e),
                }
            };
            if let Err(e) = self.attach_devices(&path, &wanted) {
                return reply.error(e);
            }
        }
        // Held until the open is counted: a log play (which publishes the deleted files still
        // open) comes before the checks or after the count.
        let fs = self.core.ns();
        if let Err(e) = self.open_refused(&fs, req, ino, flags) {
            return reply.error(e);
        }
        let fh = self.core.next_fh.fetch_add(1, Ordering::Relaxed);
        if self.mode == Mode::Module {
            match self.backing_for(&fs, ino, &reply) {
                Ok(b) => {
                    *self.core.books().opens.entry(ino).or_insert(0) += 1;
                    drop(fs);
                    self.stats.passthrough_opens.fetch_add(1, Ordering::Relaxed);
                    reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &b.id)
                }
                Err(e) => reply.error(e),
            }
        } else {
            *self.core.books().opens.entry(ino).or_insert(0) += 1;
            drop(fs);
            // No FOPEN_KEEP_CACHE: the page cache of the file is dropped at every open, so data
            // written to the memory by another host or process shows on the next open.
            reply.opened(FileHandle(fh), FopenFlags::empty())
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.stats.count(Op::Read);
        if self.core.is_stale() {
            return reply.error(Errno::ESTALE);
        }
        let r = self.fallback_io(&self.core.ns(), ino.0, offset, size as usize, None);
        match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.stats.count(Op::Write);
        if self.core.is_stale() {
            return reply.error(Errno::ESTALE);
        }
        let r = {
            let fs = self.core.ns();
            match self.write_refused(&fs, ino.0) {
                Some(e) => Err(e),
                None => self.fallback_io(&fs, ino.0, offset, data.len(), Some(data)),
            }
        };
        match r {
            Ok(d) => reply.written(d.len() as u32), // short at the end of the file
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Flush);
        reply.ok(); // writes are already in memory (and flushed from the CPU cache)
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The backing id stays registered until the kernel forgets the inode: the next open of
        // the inode reuses it.
        self.stats.count(Op::Release);
        {
            let mut books = self.core.books();
            if let Some(n) = books.opens.get_mut(&ino.0) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    books.opens.remove(&ino.0);
                }
            }
        }
        if let Some(h) = self.core.host.get() {
            h.released(ino.0);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Fsync);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.stats.count(Op::Opendir);
        // A listing shows what the log holds now: play the tail first.
        if let Err(MetaError::SuperblockChanged) = self.replay() {
            return reply.error(Errno::ESTALE);
        }
        let list = {
            let fs = self.core.ns();
            match self.listing(&fs, ino.0) {
                Some(l) => l,
                None => {
                    return reply.error(if self.target(&fs, ino.0).is_some() {
                        Errno::ENOTDIR
                    } else {
                        Errno::ENOENT
                    })
                }
            }
        };
        let fh = self.core.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.core.dirs).insert(fh, Arc::new(list));
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.stats.count(Op::Readdir);
        let Some(list) = lock(&self.core.dirs).get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.stats.count(Op::Readdirplus);
        let Some(list) = lock(&self.core.dirs).get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        let fs = self.core.ns();
        let mut handed = Vec::new();
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            let Some(attr) = self.attr_of(&fs, e.ino) else {
                continue;
            };
            if reply.add(
                INodeNo(e.ino),
                i as u64 + 1,
                &e.name,
                &self.entry_ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
            // The kernel takes a lookup reference on every entry it is handed but "." and "..".
            if e.name != "." && e.name != ".." {
                handed.push(e.ino);
            }
        }
        drop(fs);
        for ino in handed {
            self.core.looked_up(ino);
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Releasedir);
        lock(&self.core.dirs).remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.stats.count(Op::Statfs);
        // df and famfs fsck through the mount then say "Stale file handle".
        if let Err(MetaError::SuperblockChanged) = self.replay() {
            return reply.error(Errno::ESTALE);
        }
        let st = self.core.ns();
        let bs = SB_REGION_LEN;
        // Every device of the file system (the log's device table), not only the primary.
        let total: u64 = st.devices().iter().map(|d| d.size / bs).sum();
        let free: u64 = st.bitmaps().iter().map(|b| b.free_bytes() / bs).sum();
        let cap = st.superblock().log_geometry().capacity();
        let used = st.played().min(cap);
        drop(st);
        reply.statfs(
            total,
            free,
            free,
            cap,
            cap - used,
            bs as u32,
            MAX_RELPATH as u32,
            bs as u32,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.stats.count(Op::Getxattr);
        match self.xattr_value(ino.0, &name.to_string_lossy()) {
            Ok(v) => reply_xattr(reply, size, &v),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.stats.count(Op::Listxattr);
        let names: &[u8] = if ino.0 == ROOT_INO {
            b"user.famfs.logplay\0user.famfs.stats\0user.famfs.mode\0"
        } else {
            b""
        };
        reply_xattr(reply, size, names);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _n: &OsStr,
        _v: &[u8],
        _f: i32,
        _p: u32,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Setxattr);
        reply.error(Errno::EPERM);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.stats.count(Op::Removexattr);
        reply.error(Errno::EPERM);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // With default_permissions the kernel checks modes itself; this is only reached for
        // access(2) and is answered the same way.
        self.stats.count(Op::Access);
        reply.ok();
    }

    // ---- what famfs forbids: the namespace changes only through the log (famfs creat/mkdir) ----

    fn create(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: fuser::ReplyCreate,
    ) {
        self.stats.count(Op::Create);
        reply.error(Errno::EPERM);
    }

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        self.stats.count(Op::Mknod);
        reply.error(Errno::EPERM);
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        self.stats.count(Op::Mkdir);
        reply.error(Errno::EPERM);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.stats.count(Op::Unlink);
        match self.remove(req, parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.stats.count(Op::Rmdir);
        match self.remove(req, parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _t: &Path, reply: ReplyEntry) {
        self.stats.count(Op::Symlink);
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Rename);
        reply.error(Errno::EPERM);
    }

    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        self.stats.count(Op::Link);
        reply.error(Errno::EPERM);
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        self.stats.count(Op::Readlink);
        reply.error(Errno::EINVAL);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Fallocate);
        let Some(attr) = self.attr_of(&self.core.ns(), ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        match crate::fixed_size::fallocate_verdict(attr.size, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
