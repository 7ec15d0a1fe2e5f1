//! The FUSE file system: namespace requests, refusals, and the two data paths.

use crate::heartbeat::{HeartbeatHandle, HostInfo};
use crate::stats::{Op, Stats};
use crate::{wire, Mode, ModuleCtx, ServerOptions, XATTR_LOGPLAY, XATTR_MODE, XATTR_STATS};
use famfs_fmap::FileType as WireType;
use famfs_format::{FileFlags, LOG_OFFSET, MAX_RELPATH, SB_REGION_LEN};
use famfs_kmod::abi;
use famfs_media::{Access, MediaError};
use famfs_meta::{Famfs, Node, NodeKind, Problem, Role, ROOT_INO};
use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
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

struct State {
    famfs: Famfs,
    module: Option<ModuleCtx>,
    backing: HashMap<u64, Backing>,
    /// The kernel's lookup count of each inode it was handed (entry replies), less its forgets:
    /// at zero the kernel has dropped the inode, and its backing id is closed.
    lookups: HashMap<u64, u64>,
    /// Directory listings snapshotted at opendir: the namespace only grows, but a listing that
    /// changed between two readdir calls of one stream would skip or repeat names.
    dirs: HashMap<u64, Vec<DirEnt>>,
    next_fh: u64,
    /// The fs uuid and system uuid of the superblock this mount was made from.
    mounted: ([u8; 16], [u8; 16]),
    /// Set (for good) once the superblock no longer holds those uuids: the file system was
    /// replaced (mkfs -f) or killed (mkfs -k) under the mount. Every file of the mounted
    /// namespace then fails with ESTALE.
    stale: Option<String>,
    /// What this host publishes in its slot (applied count, held deleted files); `None` until
    /// the slot is claimed (at mount), or when this host has none.
    host: Option<Arc<HostInfo>>,
    /// FUSE opens of each inode not yet released (a deleted file with one is held).
    opens: HashMap<u64, u32>,
    /// The famfs.ko file made for each inode on this host (device and inode numbers, what a
    /// mapping of it shows in /proc/PID/maps): a deleted file mapped after its close is held.
    made: HashMap<u64, (u64, u64)>,
    /// The device number of this mount (what a mapping through it shows in /proc/PID/maps),
    /// looked up in /proc/self/mountinfo once needed.
    fuse_dev: Option<u64>,
    mountpoint: std::path::PathBuf,
    /// The master's appender (module mode), made at the first unlink(2)/rmdir(2) or reclaim.
    appender: Option<Famfs>,
    /// The master's observer of the host slots (idle reclaim), kept across ticks.
    observer: Option<famfs_meta::hosts::HostObserver>,
    /// Inodes deleted with `--revoke` whose famfs.ko file a revoke thread was started for.
    revoking: std::collections::HashSet<u64>,
}

use crate::devcheck::{self, SB_INVALID};

/// How often an idle server checks that the superblock is still the one it mounted.
const SB_CHECK_INTERVAL: Duration = Duration::from_secs(5);

impl State {
    /// Checks that the superblock still holds the uuids this mount was made from; marks the mount
    /// stale (and says so in the log, once) when not. Returns whether the mount is stale.
    fn check_superblock(&mut self) -> bool {
        if let Some(was) = &self.stale {
            // Found invalid, the superblock may have been caught mid-write by a re-format: say
            // what the device holds once it is valid again (the mount stays stale either way).
            if was.starts_with(SB_INVALID) {
                if let Some(now) = self
                    .superblock_change()
                    .filter(|w| !w.starts_with(SB_INVALID))
                {
                    log::error!("STALE MOUNT, updated: {now}");
                    self.stale = Some(now);
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
    /// or taken by another file system would hand its new owner's memory to our files).
    ///
    /// Module mode reads each superblock with pread(2) on a module file of its own: once the
    /// mount's files are revoked (or a device is being removed) that fails with an errno, where
    /// a read through the mapping the metadata is played from would get SIGBUS and kill the
    /// server. Fallback mode reads the mapped device or image, which nothing revokes.
    fn superblock_change(&self) -> Option<String> {
        let primary = match self.module.as_ref().and_then(|m| m.sb_probes.get(&0)) {
            Some(f) => devcheck::read_primary(f),
            None if self.module.is_some() => {
                Err("no superblock file to read it through".to_string())
            }
            None => self
                .famfs
                .media()
                .read_superblock()
                .map_err(|e| e.to_string()),
        };
        if let Some(why) = devcheck::primary_change(primary, &self.mounted) {
            return Some(why);
        }
        let fs_uuid = self.famfs.superblock().fs_uuid;
        let devices = self.famfs.devices();
        match &self.module {
            Some(m) => {
                for (&i, f) in m.sb_probes.range(1..) {
                    let Some(dev) = devices.get(i as usize) else {
                        continue;
                    };
                    let at = m
                        .secondaries
                        .get(&i)
                        .map(|(_, p)| p.display().to_string())
                        .unwrap_or_default();
                    if let Some(why) = devcheck::secondary_change(
                        i,
                        &at,
                        devcheck::read_any(f),
                        &fs_uuid,
                        &dev.uuid,
                    ) {
                        return Some(why);
                    }
                }
            }
            None => {
                for (i, dev) in devices.iter().enumerate().skip(1) {
                    let i = i as u32;
                    let Some(path) = self.famfs.device_path(i) else {
                        continue;
                    };
                    let Ok(media) = self.famfs.device_media(u64::from(i)) else {
                        continue;
                    };
                    let read = media.read_any_superblock().map_err(|e| e.to_string());
                    let at = path.display().to_string();
                    if let Some(why) = devcheck::secondary_change(i, &at, read, &fs_uuid, &dev.uuid)
                    {
                        return Some(why);
                    }
                }
            }
        }
        None
    }

    /// Stale-marking continued (split from the check so that the reason can be updated).
    ///
    /// The mount is marked stale first (every request from now on fails with ESTALE, no new
    /// file is handed out), then famfs.ko revokes the mount's files on a thread of its own:
    /// the revoke waits for reads and writes in flight and for pinned pages (a page spliced
    /// into a pipe stays pinned as long as the pipe holds it), and that wait must not hold the
    /// server's lock, or one reader would hang the whole mount.
    fn mark_stale(&mut self, why: String) -> bool {
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
        self.stale = Some(why);
        true
    }

    /// After a log play: the deleted files this host still holds (a FUSE open, or a famfs.ko
    /// file made here that may be mapped), published with the applied count in one update.
    fn publish_play(&mut self) {
        let Some(host) = self.host.clone() else {
            return;
        };
        let applied = self.famfs.played();
        let candidates: Vec<u64> = self.opens.keys().chain(self.made.keys()).copied().collect();
        let deleted = deleted_inodes(&self.famfs, &candidates);
        if deleted.is_empty() {
            host.set_applied(applied);
            return;
        }
        if self.fuse_dev.is_none() {
            // From mountinfo by the mount point as given (canonical already): resolving it here
            // would ask this very server, whose state lock we hold.
            self.fuse_dev = famfs_media::mounts::current()
                .into_iter()
                .rev()
                .find(|m| {
                    m.mount_point == self.mountpoint
                        && m.fstype == famfs_media::mounts::FAMFS_FSTYPE
                })
                .and_then(|m| {
                    let (maj, min) = m.dev.split_once(':')?;
                    Some(libc::makedev(maj.parse().ok()?, min.parse().ok()?))
                });
        }
        // A delete whose revoke was started is offered no more: its hold stays recorded until
        // the revoke ends and releases it, and must not come back after that.
        let held: Vec<_> = deleted
            .iter()
            .filter(|(ino, _, _)| !self.revoking.contains(ino))
            .map(|&(ino, d, _)| {
                let mut ids: Vec<(u64, u64)> =
                    self.fuse_dev.map(|dev| (dev, ino)).into_iter().collect();
                ids.extend(self.made.get(&ino).copied());
                let opens = self.opens.get(&ino).copied().unwrap_or(0);
                (d, crate::heartbeat::Held { ino, opens, ids })
            })
            .collect();
        // Held first: a revoke that ends before the hold is recorded would leave it held.
        host.played(applied, held);
        for (ino, d, revoke) in deleted {
            if revoke && self.revoking.insert(ino) {
                self.revoke_deleted(&host, ino, d);
            }
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
    fn revoke_deleted(&self, host: &Arc<HostInfo>, ino: u64, delete: u64) {
        let path = match self.famfs.namespace().path_of(ino) {
            Some(p) => format!("/{p}"),
            None => format!("inode {ino}"),
        };
        let (Some(m), Some(&(_, kino))) = (self.module.as_ref(), self.made.get(&ino)) else {
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
        self.revoking.contains(&ino)
    }

    /// The master's appender (module mode): made once from read-write duplicates of the meta
    /// files. A fallback mount has none (EPERM).
    fn ensure_appender(&mut self, what: &str) -> Result<(), Errno> {
        if self.appender.is_some() {
            return Ok(());
        }
        let Some((sbf, logf)) = self.module.as_ref().and_then(|m| m.meta_rw.as_ref()) else {
            log::info!("{what} refused: a fallback mount has no append path; use famfs rm");
            return Err(Errno::EPERM);
        };
        let dup = |f: &std::fs::File| f.try_clone().map_err(|_| Errno::EIO);
        let media = famfs_media::Media::from_meta_files(
            self.famfs.media().path(),
            dup(sbf)?,
            dup(logf)?,
            Access::ReadWrite,
        )
        .map_err(|e| {
            log::error!("{what}: cannot open the log for appending: {e}");
            Errno::EIO
        })?;
        let fs = Famfs::from_media(media).map_err(|e| {
            log::error!("{what}: cannot play the log for appending: {e}");
            Errno::EIO
        })?;
        self.appender = Some(fs);
        Ok(())
    }

    /// The master's idle reclaim (module mode): while deletes are pending, looks at the host
    /// slots (through the superblock probe, `pread`) with an observer kept across ticks, so a
    /// host that stopped is judged dead on this server's clock after its lease, and appends
    /// RECLAIM entries for what the slot gate allows, as `famfs reclaim` does.
    fn auto_reclaim(&mut self) {
        if self.famfs.role() != Role::Master || self.famfs.pending_deletes().next().is_none() {
            return;
        }
        let fs_uuid = self.famfs.superblock().fs_uuid;
        let Some(probe) = self.module.as_ref().and_then(|m| m.sb_probes.get(&0)) else {
            return;
        };
        let observer = self
            .observer
            .get_or_insert_with(|| famfs_meta::hosts::HostObserver::new(fs_uuid));
        let views = match observer.observe(probe) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("idle reclaim: cannot read the host slots: {e}");
                return;
            }
        };
        if self.ensure_appender("idle reclaim").is_err() {
            return;
        }
        let Some(appender) = self.appender.as_mut() else {
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
                if let Err(e) = self.famfs.refresh() {
                    log::error!("log play after the idle reclaim: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("idle reclaim: {e}"),
        }
    }

    /// The kernel was handed `ino` in an entry reply (one more lookup reference).
    fn looked_up(&mut self, ino: u64) {
        *self.lookups.entry(ino).or_insert(0) += 1;
    }

    /// The kernel dropped `nlookup` references to `ino`: at zero it no longer has the inode, so no
    /// file of it is open, and its backing id (and with it the module's DAX file) is released. The
    /// meta files keep theirs: their DAX files were made once, at start.
    fn forget(&mut self, ino: u64, nlookup: u64) {
        let left = match self.lookups.get_mut(&ino) {
            Some(n) => {
                *n = n.saturating_sub(nlookup);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.lookups.remove(&ino);
            if ino != META_SB_INO && ino != META_LOG_INO {
                self.backing.remove(&ino);
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
/// writes ESTALE) and logs how it went. Runs without the server's lock.
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

/// What an inode is, resolved under the lock.
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
    state: Arc<Mutex<State>>,
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
            state: Arc::new(Mutex::new(State {
                mounted: (sb.fs_uuid, sb.system_uuid),
                famfs,
                module,
                backing: HashMap::new(),
                lookups: HashMap::new(),
                dirs: HashMap::new(),
                next_fh: 1,
                stale: None,
                host: None,
                opens: HashMap::new(),
                made: HashMap::new(),
                fuse_dev: None,
                mountpoint: opts.mountpoint.clone(),
                appender: None,
                observer: None,
                revoking: std::collections::HashSet::new(),
            })),
        }
    }

    /// Starts the idle check of the superblock (every [`SB_CHECK_INTERVAL`]) and, when this host
    /// has a slot, the idle play of the log tail (every heartbeat interval: a host that gets no
    /// lookups must still play deletes, or the master could never reclaim their memory); the
    /// thread ends with the file system.
    fn watch_superblock(&self) {
        let weak = Arc::downgrade(&self.state);
        let tick = self.host_timing.0.min(SB_CHECK_INTERVAL);
        let r = std::thread::Builder::new()
            .name("sb-watch".into())
            .spawn(move || {
                let mut last_check = std::time::Instant::now();
                loop {
                    std::thread::sleep(tick);
                    let Some(state) = weak.upgrade() else { return };
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    let play = st.host.is_some();
                    if !play && last_check.elapsed() < SB_CHECK_INTERVAL {
                        continue;
                    }
                    last_check = std::time::Instant::now();
                    if st.check_superblock() {
                        return;
                    }
                    if play {
                        if let Err(e) = st.famfs.refresh() {
                            log::error!("idle log play failed: {e}");
                        }
                        st.publish_play();
                        st.auto_reclaim();
                    }
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
        let mut st = self.lock();
        let sb = st.famfs.superblock().clone();
        let device = st.famfs.media().path().to_path_buf();
        // Where the slot is written, and how the lease is kept.
        let (io, kind): (Box<dyn hosts::SlotIo + Send>, Lease) = match st.module.as_ref() {
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
                if st.famfs.media().access() != Access::ReadWrite {
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
            applied: st.famfs.played(),
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
        if let Err(e) = st.famfs.refresh() {
            log::error!("log play after the host slot claim: {e}");
        }
        let info = HostInfo::new(st.famfs.played());
        st.host = Some(info.clone());
        st.publish_play();
        drop(st);
        let weak = Arc::downgrade(&self.state);
        let on_fence: heartbeat::OnFence = Box::new(move |why| {
            let weak = weak.clone();
            let _ = std::thread::Builder::new()
                .name("fence".into())
                .spawn(move || {
                    if let Some(state) = weak.upgrade() {
                        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                        // A replaced file system also wipes the slots: say that, when it is so
                        // (a superblock that cannot be read at all is the lease's revoke).
                        if st.stale.is_none() {
                            if let Some(sb_why) = st
                                .superblock_change()
                                .filter(|w| !w.contains("cannot read it"))
                            {
                                st.mark_stale(sb_why);
                            }
                        }
                        if st.stale.is_none() {
                            log::error!(
                                "STALE MOUNT: {why}. Every file of the mounted namespace now \
                                 fails with ESTALE. Unmount and mount again."
                            );
                            st.stale = Some(why);
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
        self.lock().famfs.problems().to_vec()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another request must not take the whole mount down with poisoned locks.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plays new log entries (cheap when there are none: one superblock and one header read).
    fn replay(&self, st: &mut State) -> Result<famfs_meta::PlayStats, famfs_meta::MetaError> {
        if st.check_superblock() {
            return Err(famfs_meta::MetaError::SuperblockChanged);
        }
        let r = st.famfs.refresh();
        st.publish_play();
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

    fn target(&self, st: &State, ino: u64) -> Option<Target> {
        match ino {
            META_DIR_INO => Some(Target::Meta(MetaKind::Dir)),
            META_SB_INO => Some(Target::Meta(MetaKind::Superblock)),
            META_LOG_INO => Some(Target::Meta(MetaKind::Log)),
            _ => st.famfs.namespace().get(ino).map(|_| Target::Node),
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

    fn attr_of(&self, st: &State, ino: u64) -> Option<FileAttr> {
        match self.target(st, ino)? {
            Target::Meta(m) => Some(self.meta_attr(m)),
            Target::Node => st.famfs.namespace().get(ino).map(|n| self.node_attr(n)),
        }
    }

    fn lookup_in(&self, st: &State, parent: u64, name: &str) -> Option<FileAttr> {
        match (parent, name) {
            (ROOT_INO, META_DIR) => Some(self.meta_attr(MetaKind::Dir)),
            (META_DIR_INO, ".superblock") => Some(self.meta_attr(MetaKind::Superblock)),
            (META_DIR_INO, ".log") => Some(self.meta_attr(MetaKind::Log)),
            (META_DIR_INO, _) => None,
            _ => {
                let ino = st.famfs.namespace().lookup(parent, name)?;
                self.attr_of(st, ino)
            }
        }
    }

    fn listing(&self, st: &State, ino: u64) -> Option<Vec<DirEnt>> {
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
        let ns = st.famfs.namespace();
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
        st: &State,
        ino: u64,
        off: u64,
        len: usize,
        write: Option<&[u8]>,
    ) -> Result<Vec<u8>, Errno> {
        if ino != META_SB_INO
            && ino != META_LOG_INO
            && st.host.as_ref().is_some_and(|h| !h.lease_valid())
        {
            // Fenced: the lease ran out, the master may have reused this file's memory.
            return Err(Errno::ESTALE);
        }
        if st.revoked_delete(ino) {
            // Deleted with --revoke: this host let go of it, its memory may be reused.
            return Err(Errno::ESTALE);
        }
        let mut media = st.famfs.media();
        let (size, meta_base) = match ino {
            META_SB_INO => (SB_REGION_LEN, Some(0)),
            META_LOG_INO => (self.log_len, Some(LOG_OFFSET)),
            _ => (
                st.famfs
                    .namespace()
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
                    let f = st
                        .famfs
                        .namespace()
                        .get(ino)
                        .and_then(Node::file)
                        .ok_or(Errno::EIO)?;
                    let s = f.fmap.resolve(foff).ok_or(Errno::EIO)?;
                    if s.devindex != 0 {
                        media = st.famfs.device_media(s.devindex).map_err(|e| {
                            let path = st.famfs.namespace().path_of(ino).unwrap_or_default();
                            log::error!("/{path}: {e}");
                            Errno::ENXIO
                        })?;
                    } else {
                        media = st.famfs.media();
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
    fn write_refused(&self, st: &State, ino: u64) -> Option<Errno> {
        match ino {
            META_SB_INO => Some(Errno::EROFS),
            META_LOG_INO if self.role != Role::Master => Some(Errno::EROFS),
            META_LOG_INO => None,
            _ => match st.famfs.namespace().get(ino).and_then(Node::file) {
                Some(f) if f.flags == FileFlags::READ_ONLY => Some(Errno::EROFS),
                Some(_)
                    if self.mode == Mode::Fallback
                        && st.famfs.media().access() != Access::ReadWrite =>
                {
                    Some(Errno::EROFS)
                }
                _ => None,
            },
        }
    }

    /// Module mode: the backing id of `ino`, making the DAX file and registering it on first use.
    fn backing_for<'s>(
        &self,
        st: &'s mut State,
        ino: u64,
        reply: &ReplyOpen,
    ) -> Result<&'s BackingId, Errno> {
        if !st.backing.contains_key(&ino) {
            let module = st.module.as_mut().ok_or(Errno::EIO)?;
            let file = match ino {
                META_SB_INO => module.sb_file.take().map(|d| d.file),
                META_LOG_INO => module.log_file.take().map(|d| d.file),
                _ => None,
            };
            let file = match file {
                Some(f) => f,
                None => {
                    let node = st.famfs.namespace().get(ino).ok_or(Errno::ENOENT)?;
                    let f = node.file().ok_or(Errno::EISDIR)?;
                    // Every device the map uses must be in the module's table.
                    let mut devs: Vec<u64> = f.fmap.extents().iter().map(|e| e.devindex).collect();
                    devs.sort_unstable();
                    devs.dedup();
                    for d in devs {
                        let module = st.module.as_mut().ok_or(Errno::EIO)?;
                        let idx = u32::try_from(d).map_err(|_| Errno::ENXIO)?;
                        if let Err(why) = module.ensure_device(&st.famfs, idx) {
                            let path = st.famfs.namespace().path_of(ino).unwrap_or_default();
                            log::error!(
                                "/{path}: its memory is on a device this host does not have: {why}"
                            );
                            return Err(Errno::ENXIO);
                        }
                    }
                    let node = st.famfs.namespace().get(ino).ok_or(Errno::ENOENT)?;
                    let f = node.file().ok_or(Errno::EISDIR)?;
                    let msg = wire::wire_fmap(WireType::Regular, f.size, &f.fmap).map_err(|e| {
                        log::error!("inode {ino}: {e}");
                        Errno::from_i32(e.errno())
                    })?;
                    let mut flags = abi::CREATE_CLOEXEC;
                    if f.flags == FileFlags::READ_ONLY {
                        flags |= abi::CREATE_READ_ONLY;
                    }
                    let module = st.module.as_ref().ok_or(Errno::EIO)?;
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
                        st.made.insert(ino, (md.dev(), md.ino()));
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
            st.backing.insert(ino, Backing { id });
        }
        Ok(&st.backing[&ino].id)
    }

    /// unlink(2) / rmdir(2) through the mount: on the master in module mode, a DELETE entry
    /// appended as `famfs rm` / `famfs rmdir` would (under the file system's append lock), then
    /// played here. A client's log is read-only (EROFS); a fallback mount has no append path of
    /// its own (EPERM: use `famfs rm`); only root appends to the log (EACCES).
    fn remove(&self, req: &Request, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let what = if dir { "rmdir" } else { "unlink" };
        let mut st = self.lock();
        if st.stale.is_some() {
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
        let ppath = st.famfs.namespace().path_of(parent).ok_or(Errno::ENOENT)?;
        let rel = if ppath.is_empty() {
            name.to_string()
        } else {
            format!("{ppath}/{name}")
        };
        let rel = famfs_format::RelPath::new(&rel).map_err(|_| Errno::EINVAL)?;
        st.ensure_appender(what)?;
        let appender = st.appender.as_mut().ok_or(Errno::EIO)?;
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
        // Played here at once: the name is gone from this mount when the call returns.
        if let Err(famfs_meta::MetaError::SuperblockChanged) = self.replay(&mut st) {
            return Err(Errno::ESTALE);
        }
        Ok(())
    }

    fn xattr_value(&self, st: &mut State, ino: u64, name: &str) -> Result<Vec<u8>, Errno> {
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
                let before = st.famfs.played();
                let s = self.replay(st).map_err(|e| match e {
                    famfs_meta::MetaError::SuperblockChanged => Errno::ESTALE,
                    _ => Errno::EIO,
                })?;
                Ok(format!(
                    "played {} new entries ({} files, {} dirs, {} problems); {} entries in the log\n",
                    s.played,
                    s.files,
                    s.dirs,
                    s.problems,
                    before + s.played
                )
                .into_bytes())
            }
            XATTR_STATS => Ok(self.stats.render().into_bytes()),
            XATTR_MODE => Ok(match &st.stale {
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
        let mut st = self.lock();
        if st.stale.is_some() {
            return reply.error(Errno::ESTALE);
        }
        let mut found = self.lookup_in(&st, parent.0, name);
        if found.is_none() && parent.0 != META_DIR_INO {
            // A miss may be a file the master just created: play the tail and look again.
            // Misses are answered with ENOENT, which the kernel does not cache, so the next
            // lookup of the name comes back here.
            if let Err(famfs_meta::MetaError::SuperblockChanged) = self.replay(&mut st) {
                return reply.error(Errno::ESTALE);
            }
            found = self.lookup_in(&st, parent.0, name);
        }
        match found {
            Some(attr) => {
                st.looked_up(attr.ino.0);
                reply.entry(&self.entry_ttl, &attr, Generation(0))
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    // BATCH_FORGET: fuser's default batch_forget calls this once per inode (its ForgetOne type is
    // not public, so it cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.stats.count(Op::Forget);
        self.lock().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.stats.count(Op::Getattr);
        let st = self.lock();
        // The root stays: the mount point can still be stat'ed and unmounted.
        if st.stale.is_some() && ino.0 != ROOT_INO {
            return reply.error(Errno::ESTALE);
        }
        match self.attr_of(&st, ino.0) {
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
        let st = self.lock();
        let Some(attr) = self.attr_of(&st, ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        // Size, mode and owner live in the append-only log: famfs files are allocated once and
        // never truncated, extended or re-owned. Time changes (touch) are accepted and ignored:
        // famfs keeps no timestamps, and failing `touch` on an existing file helps nobody.
        if size.is_some() || mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(Errno::EPERM);
        }
        reply.attr(&self.attr_ttl, &attr);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.stats.count(Op::Open);
        let mut st = self.lock();
        // Before any file's memory is handed out: is it still the file system we mounted?
        if st.check_superblock() {
            return reply.error(Errno::ESTALE);
        }
        let Some(target) = self.target(&st, ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Target::Meta(MetaKind::Dir) = target {
            return reply.error(Errno::EISDIR);
        }
        if st.famfs.namespace().get(ino.0).is_some_and(Node::is_dir) {
            return reply.error(Errno::EISDIR);
        }
        // A deleted file is never opened again (a dentry the kernel still caches may ask): only
        // the opens and mappings made before this host played the delete hold its memory, and
        // those are what the host slot reports.
        if st.famfs.namespace().is_removed(ino.0) {
            return reply.error(Errno::ENOENT);
        }
        if flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EPERM); // truncation is refused like setattr(size)
        }
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            if let Some(e) = self.write_refused(&st, ino.0) {
                return reply.error(e);
            }
            // The log is root's alone to append to, whatever the mount options: the kernel's
            // default_permissions check (mode 0644, owner root) is not the only guard.
            if ino.0 == META_LOG_INO && req.uid() != 0 {
                return reply.error(Errno::EACCES);
            }
        }
        let fh = st.next_fh;
        st.next_fh += 1;
        if self.mode == Mode::Module {
            match self.backing_for(&mut st, ino.0, &reply) {
                Ok(id) => {
                    self.stats.passthrough_opens.fetch_add(1, Ordering::Relaxed);
                    reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), id)
                }
                Err(e) => return reply.error(e),
            }
        } else {
            // No FOPEN_KEEP_CACHE: the page cache of the file is dropped at every open, so data
            // written to the memory by another host or process shows on the next open.
            reply.opened(FileHandle(fh), FopenFlags::empty())
        }
        *st.opens.entry(ino.0).or_insert(0) += 1;
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
        let st = self.lock();
        if st.stale.is_some() {
            return reply.error(Errno::ESTALE);
        }
        match self.fallback_io(&st, ino.0, offset, size as usize, None) {
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
        let st = self.lock();
        if st.stale.is_some() {
            return reply.error(Errno::ESTALE);
        }
        if let Some(e) = self.write_refused(&st, ino.0) {
            return reply.error(e);
        }
        match self.fallback_io(&st, ino.0, offset, data.len(), Some(data)) {
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
        let mut st = self.lock();
        if let Some(n) = st.opens.get_mut(&ino.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.opens.remove(&ino.0);
            }
        }
        if let Some(h) = &st.host {
            h.released(ino.0);
        }
        drop(st);
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
        let mut st = self.lock();
        // A listing shows what the log holds now: play the tail first.
        if let Err(famfs_meta::MetaError::SuperblockChanged) = self.replay(&mut st) {
            return reply.error(Errno::ESTALE);
        }
        let Some(list) = self.listing(&st, ino.0) else {
            return reply.error(if self.target(&st, ino.0).is_some() {
                Errno::ENOTDIR
            } else {
                Errno::ENOENT
            });
        };
        let fh = st.next_fh;
        st.next_fh += 1;
        st.dirs.insert(fh, list);
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
        let st = self.lock();
        let Some(list) = st.dirs.get(&fh.0) else {
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
        let mut st = self.lock();
        let st = &mut *st;
        let Some(list) = st.dirs.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut handed = Vec::new();
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            let Some(attr) = self.attr_of(st, e.ino) else {
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
        for ino in handed {
            st.looked_up(ino);
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
        self.lock().dirs.remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.stats.count(Op::Statfs);
        let mut st = self.lock();
        // df and famfs fsck through the mount then say "Stale file handle".
        if let Err(famfs_meta::MetaError::SuperblockChanged) = self.replay(&mut st) {
            return reply.error(Errno::ESTALE);
        }
        let bs = SB_REGION_LEN;
        // Every device of the file system (the log's device table), not only the primary.
        let total: u64 = st.famfs.devices().iter().map(|d| d.size / bs).sum();
        let free: u64 = st.famfs.bitmaps().iter().map(|b| b.free_bytes() / bs).sum();
        let cap = st.famfs.superblock().log_geometry().capacity();
        let used = st.famfs.played().min(cap);
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
        let mut st = self.lock();
        match self.xattr_value(&mut st, ino.0, &name.to_string_lossy()) {
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
        _i: INodeNo,
        _fh: FileHandle,
        _o: u64,
        _l: u64,
        _m: i32,
        reply: ReplyEmpty,
    ) {
        // Space is allocated once, by `famfs creat`.
        self.stats.count(Op::Fallocate);
        reply.error(Errno::EPERM);
    }
}
