//! This host's slot in the shared memory and its lease (Documentation/design.md, "Hosts and
//! leases"; famfs-meta `hosts`).
//!
//! At start the server claims a slot, then plays the log again before it serves anything. A
//! thread of its own (never the FUSE request threads, and never under any of the server's locks)
//! then heartbeats every interval:
//!
//! 1. notes the time `t` (monotonic), takes the applied count and the held deleted files from
//!    [`HostInfo`] (its own small lock, which request threads hold only to update them);
//! 2. reads its slot (still ours?), writes it with the heartbeat counter plus one, reads it back;
//! 3. only then renews the lease, up to `t + lease` (not `now + lease`): in module mode the
//!    famfs.ko lease (the kernel revokes every file of this mount when it is not renewed in
//!    time, a timer that also fires when this server is stopped or killed), in fallback mode the
//!    server's own deadline, which the fallback data path checks before every copy.
//!
//! A lease that ran out is never renewed: the mount is then stale for good (ESTALE; unmount and
//! mount again). A clean unmount releases the slot and disarms the famfs.ko lease.

use famfs_meta::hosts::{self, Heartbeat, HostsError, SlotIo};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Default heartbeat interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// Checks a heartbeat interval and lease: the lease at least three intervals (a heartbeat may be
/// late by one), at most [`hosts::MAX_LEASE_MS`]; the interval at least 10 ms.
pub fn check_timing(interval: Duration, lease: Duration) -> Result<(), String> {
    if interval < Duration::from_millis(10) {
        return Err(format!("heartbeat interval {interval:?} is below 10 ms"));
    }
    if lease < interval * 3 {
        return Err(format!(
            "lease {lease:?} is shorter than three heartbeat intervals ({interval:?} each)"
        ));
    }
    if lease > Duration::from_millis(u64::from(hosts::MAX_LEASE_MS)) {
        return Err(format!(
            "lease {lease:?} is longer than the {} s famfs accepts",
            hosts::MAX_LEASE_MS / 1000
        ));
    }
    Ok(())
}

/// A deleted file this host still holds.
#[derive(Debug, Default, Clone)]
pub struct Held {
    /// Its inode in the served namespace.
    pub ino: u64,
    /// FUSE opens not yet released.
    pub opens: u32,
    /// What a mapping of it shows in `/proc/PID/maps` (device number, inode number): the
    /// FUSE mount's and the inode's, and in module mode the famfs.ko file's. Looked for at every
    /// heartbeat once no FUSE open is left.
    pub ids: Vec<(u64, u64)>,
}

#[derive(Debug, Default)]
struct Shared {
    applied: u64,
    held: BTreeMap<u64, Held>,
}

/// What the heartbeat publishes, shared between the request threads (which update it) and the
/// heartbeat thread (which reads it). Its lock is held only to copy or update these fields.
#[derive(Debug)]
pub struct HostInfo {
    shared: Mutex<Shared>,
    start: Instant,
    /// The lease ends at `start + deadline_ns` (0: no lease yet).
    deadline_ns: AtomicU64,
    /// Set for good once the lease ran out (or the slot was lost): this host is fenced.
    fenced: AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl HostInfo {
    pub fn new(applied: u64) -> Arc<Self> {
        Arc::new(HostInfo {
            shared: Mutex::new(Shared {
                applied,
                held: BTreeMap::new(),
            }),
            start: Instant::now(),
            deadline_ns: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server has played `applied` log entries (monotonic: a smaller count is ignored).
    pub fn set_applied(&self, applied: u64) {
        let mut s = self.shared();
        s.applied = s.applied.max(applied);
    }

    /// Records the deleted files this host holds after a log play and the applied count of that
    /// play, in one update (a slot never shows a delete applied without its hold). A delete
    /// already held keeps its entry.
    pub fn played(&self, applied: u64, newly_held: impl IntoIterator<Item = (u64, Held)>) {
        let mut s = self.shared();
        for (d, h) in newly_held {
            s.held.entry(d).or_insert(h);
        }
        s.applied = s.applied.max(applied);
    }

    /// This host let go of the file of delete entry `delete` before its opens and mappings
    /// ended (`rm --revoke`: nothing here can reach its memory any more).
    pub fn release_delete(&self, delete: u64) {
        self.shared().held.remove(&delete);
    }

    /// A FUSE open of inode `ino` was released.
    pub fn released(&self, ino: u64) {
        let mut s = self.shared();
        for h in s.held.values_mut().filter(|h| h.ino == ino) {
            h.opens = h.opens.saturating_sub(1);
        }
    }

    /// Snapshot for one heartbeat: drops the held files that have no open left and are not
    /// mapped (`mapped` lists the (device, inode) pairs mapped anywhere, asked only when
    /// needed), and returns the applied count and the held list.
    fn snapshot(
        &self,
        mapped: &dyn Fn() -> std::collections::HashSet<(u64, u64)>,
    ) -> (u64, Vec<u64>) {
        let mut s = self.shared();
        if s.held.values().any(|h| h.opens == 0) {
            let m = mapped();
            s.held
                .retain(|_, h| h.opens > 0 || h.ids.iter().any(|id| m.contains(id)));
        }
        (s.applied, s.held.keys().copied().collect())
    }

    /// Whether this host may still touch file memory: its lease has not run out. Checked by the
    /// fallback data path before each copy.
    pub fn lease_valid(&self) -> bool {
        if self.fenced.load(Ordering::Acquire) {
            return false;
        }
        let d = self.deadline_ns.load(Ordering::Acquire);
        if d == 0 {
            return true; // no heartbeat (no slot): nothing to fence against
        }
        if (self.start.elapsed().as_nanos() as u64) < d {
            true
        } else {
            self.fenced.store(true, Ordering::Release);
            false
        }
    }

    /// Whether this host fenced itself.
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    fn set_deadline(&self, at: Instant) {
        let ns = at.duration_since(self.start).as_nanos() as u64;
        self.deadline_ns.store(ns.max(1), Ordering::Release);
    }

    fn deadline_passed(&self, now: Instant) -> bool {
        let d = self.deadline_ns.load(Ordering::Acquire);
        d != 0 && (now.duration_since(self.start).as_nanos() as u64) >= d
    }

    fn stopping(&self) -> bool {
        *self.stop.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps up to `d`, or until [`HostInfo::request_stop`]; returns whether to stop.
    fn sleep(&self, d: Duration) -> bool {
        let g = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = self
            .wake
            .wait_timeout_while(g, d, |stop| !*stop)
            .unwrap_or_else(|p| p.into_inner());
        *g
    }

    fn request_stop(&self) {
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }
}

/// How the lease is renewed.
pub enum Lease {
    /// famfs.ko: the kernel revokes every file made through this control open when the lease is
    /// not renewed in time.
    Module(famfs_kmod::Control),
    /// No famfs.ko: the server's own deadline ([`HostInfo::lease_valid`]).
    Fallback,
}

/// Arms, renews (`timeout` > 0) or disarms (0) the famfs.ko lease of `control`'s open
/// (`IOC_LEASE`; `ENOTTY` from a module without it: the host then has no kernel lease, and its
/// slot says so).
pub fn set_lease(control: &famfs_kmod::Control, timeout: Duration) -> std::io::Result<()> {
    control.set_lease(timeout)
}

/// Every (device, inode) pair mapped by any process (`/proc/*/maps`). famfs.ko's
/// `IOC_FILE_STATE` answers the same for one file, but needs a descriptor of it, and the server
/// keeps none per file (the backing id holds the file; tests/32-fuse-scale checks that the
/// server's descriptors do not grow with files).
pub fn mapped_files() -> std::collections::HashSet<(u64, u64)> {
    let mut out = std::collections::HashSet::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path().join("maps")) else {
            continue;
        };
        out.extend(text.lines().filter_map(parse_maps_line));
    }
    out
}

/// (device, inode) of one `/proc/PID/maps` line, for a file mapping.
fn parse_maps_line(l: &str) -> Option<(u64, u64)> {
    let mut f = l.split_whitespace();
    let (_range, _perms, _off, dev, ino) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let ino: u64 = ino.parse().ok()?;
    if ino == 0 {
        return None;
    }
    let (maj, min) = dev.split_once(':')?;
    let maj = u32::from_str_radix(maj, 16).ok()?;
    let min = u32::from_str_radix(min, 16).ok()?;
    Some((libc::makedev(maj, min), ino))
}

/// The running heartbeat: stopped (slot released, famfs.ko lease disarmed) when dropped.
pub struct HeartbeatHandle {
    info: Arc<HostInfo>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HeartbeatHandle {
    fn drop(&mut self) {
        self.info.request_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Called once when the lease ran out or the slot was lost: marks the mount stale (on a thread
/// of its own: it takes the server's locks, which the heartbeat never does).
pub type OnFence = Box<dyn Fn(String) + Send>;

/// Arms the lease right after the claim (up to `claimed_at + lease`) and starts the heartbeat
/// thread, beating every `interval`.
pub fn start(
    info: Arc<HostInfo>,
    mut hb: Heartbeat,
    io: Box<dyn SlotIo + Send>,
    lease_kind: Lease,
    (interval, lease): (Duration, Duration),
    claimed_at: Instant,
    on_fence: OnFence,
) -> std::io::Result<HeartbeatHandle> {
    renew(&info, &lease_kind, claimed_at, lease)
        .map_err(|e| std::io::Error::other(format!("famfs.ko: arm the lease of {lease:?}: {e}")))?;
    let info2 = info.clone();
    let thread = std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            run(
                &info2,
                &mut hb,
                io.as_ref(),
                &lease_kind,
                interval,
                lease,
                &on_fence,
            );
            if info2.fenced() {
                return;
            }
            // Clean stop: release the slot, then disarm the lease.
            match hb.release(io.as_ref()) {
                Ok(()) => log::info!("host slot {} released", hb.index),
                Err(e) => log::warn!("host slot {}: not released: {e}", hb.index),
            }
            if let Lease::Module(c) = &lease_kind {
                if let Err(e) = set_lease(c, Duration::ZERO) {
                    log::warn!("famfs.ko: disarm the lease: {e}");
                }
            }
        })?;
    Ok(HeartbeatHandle {
        info,
        thread: Some(thread),
    })
}

/// Renews the lease up to `since + lease`; refuses when that moment has passed (a late
/// heartbeat never extends a lease that ran out).
fn renew(info: &HostInfo, kind: &Lease, since: Instant, lease: Duration) -> Result<(), String> {
    let now = Instant::now();
    if info.deadline_passed(now) {
        return Err("the lease ran out before this renewal".into());
    }
    let left = (since + lease).saturating_duration_since(now);
    // famfs.ko takes no lease under LEASE_MIN_MS; so close to the end, let it run out.
    if left < Duration::from_millis(u64::from(famfs_kmod::abi::LEASE_MIN_MS)) {
        return Err(format!(
            "the heartbeat took longer than the lease ({:?})",
            now - since
        ));
    }
    if let Lease::Module(c) = kind {
        set_lease(c, left).map_err(|e| match e.raw_os_error() {
            Some(libc::ESTALE) => {
                "famfs.ko: the lease had already expired (the kernel revoked this mount's files)"
                    .to_string()
            }
            _ => format!("famfs.ko: renew the lease: {e}"),
        })?;
    }
    info.set_deadline(since + lease);
    Ok(())
}

fn run(
    info: &HostInfo,
    hb: &mut Heartbeat,
    io: &dyn SlotIo,
    kind: &Lease,
    interval: Duration,
    lease: Duration,
    on_fence: &OnFence,
) {
    let mut failing = false;
    loop {
        if info.sleep(interval) || info.stopping() {
            return;
        }
        let t = Instant::now();
        let (applied, held) = info.snapshot(&mapped_files);
        let r = match hb.beat(io, applied, &held) {
            Ok(()) => renew(info, kind, t, lease).map_err(|why| (why, true)),
            Err(e @ HostsError::SlotLost { .. }) => Err((e.to_string(), true)),
            Err(e) => Err((format!("heartbeat: {e}"), false)),
        };
        match r {
            Ok(()) => {
                if failing {
                    log::warn!("host slot {}: heartbeat works again", hb.index);
                    failing = false;
                }
            }
            Err((why, fatal)) => {
                // A heartbeat that cannot be written is not renewed: if it stays so, the lease
                // runs out (below) and the host fences itself.
                if !fatal && !info.deadline_passed(Instant::now()) {
                    if !failing {
                        log::error!("host slot {}: {why}; the lease is not renewed", hb.index);
                        failing = true;
                    }
                    continue;
                }
                info.fenced.store(true, Ordering::Release);
                let why = format!(
                    "this host's lease ran out ({why}): it fenced itself (its files are revoked) \
                     and the master may reuse the memory of files deleted meanwhile"
                );
                log::error!("host slot {}: {why}", hb.index);
                on_fence(why);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_checks() {
        assert!(check_timing(DEFAULT_INTERVAL, DEFAULT_LEASE).is_ok());
        assert!(check_timing(Duration::from_millis(5), Duration::from_secs(1)).is_err());
        assert!(check_timing(Duration::from_secs(1), Duration::from_secs(2)).is_err());
        assert!(check_timing(Duration::from_secs(1), Duration::from_secs(121)).is_err());
    }

    #[test]
    fn fallback_deadline_and_late_renewal() {
        let info = HostInfo::new(0);
        assert!(info.lease_valid(), "no lease yet: nothing to fence");
        let t = Instant::now();
        renew(&info, &Lease::Fallback, t, Duration::from_millis(50)).unwrap();
        assert!(info.lease_valid());
        std::thread::sleep(Duration::from_millis(60));
        // Ran out: invalid for good, and a later renewal is refused.
        assert!(!info.lease_valid());
        assert!(renew(
            &info,
            &Lease::Fallback,
            Instant::now(),
            Duration::from_secs(5)
        )
        .is_err());
        assert!(!info.lease_valid());
        // A renewal that comes later than its own lease is refused too.
        let info = HostInfo::new(0);
        let old = Instant::now() - Duration::from_millis(100);
        assert!(renew(&info, &Lease::Fallback, old, Duration::from_millis(50)).is_err());
    }

    #[test]
    fn held_files_leave_once_closed_and_unmapped() {
        use std::collections::HashSet;
        let info = HostInfo::new(3);
        let held = |ino, opens| Held {
            ino,
            opens,
            ids: vec![(99, ino)],
        };
        info.played(9, [(7, held(70, 1))]);
        let none = || HashSet::new();
        assert_eq!(info.snapshot(&none), (9, vec![7]));
        // Played again: the hold is kept as it is (its open count too).
        info.played(9, [(7, held(70, 0))]);
        info.released(70);
        assert_eq!(info.snapshot(&none), (9, vec![]));
        info.played(10, [(8, held(80, 0))]);
        let mapped = || HashSet::from([(99, 80)]);
        assert_eq!(info.snapshot(&mapped), (10, vec![8]), "still mapped");
        assert_eq!(info.snapshot(&none), (10, vec![]), "unmapped");
        info.set_applied(4);
        assert_eq!(info.snapshot(&none).0, 10, "applied never goes back");
    }

    #[test]
    fn a_revoked_delete_is_released_while_still_open_and_mapped() {
        use std::collections::HashSet;
        let info = HostInfo::new(3);
        let held = Held {
            ino: 50,
            opens: 2,
            ids: vec![(99, 50)],
        };
        info.played(9, [(5, held.clone())]);
        let mapped = || HashSet::from([(99, 50)]);
        assert_eq!(info.snapshot(&mapped), (9, vec![5]));
        info.release_delete(5);
        assert_eq!(
            info.snapshot(&mapped),
            (9, vec![]),
            "released although open and mapped"
        );
        // (The server offers a delete no more once its revoke was started: fs.rs `revoking`.)
        info.release_delete(6);
        assert_eq!(
            info.snapshot(&mapped),
            (9, vec![]),
            "releasing an unknown delete is a no-op"
        );
    }

    #[test]
    fn proc_maps_lines_and_our_own_mapping() {
        assert_eq!(
            parse_maps_line("7f00-7f10 r--s 00000000 00:2a 1234   /mnt/f"),
            Some((libc::makedev(0, 0x2a), 1234))
        );
        assert_eq!(parse_maps_line("7f00-7f10 rw-p 00000000 00:00 0"), None);
        assert_eq!(parse_maps_line("garbage"), None);
        // A file this process maps is found by its device and inode.
        use std::os::unix::fs::MetadataExt;
        let f = tempfile::tempfile().unwrap();
        f.set_len(4096).unwrap();
        let md = f.metadata().unwrap();
        let id = (md.dev(), md.ino());
        assert!(!mapped_files().contains(&id));
        // SAFETY: a private temporary file nothing else changes while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
        assert!(mapped_files().contains(&id));
        drop(map);
        assert!(!mapped_files().contains(&id));
    }

    struct FileIo(std::fs::File);
    impl SlotIo for FileIo {
        fn read_slot(&self, i: usize) -> Result<[u8; 1024], HostsError> {
            self.0.read_slot(i)
        }
        fn write_slot(&self, i: usize, b: &[u8; 1024]) -> Result<(), HostsError> {
            self.0.write_slot(i, b)
        }
    }

    /// Claim options for the tests: no settling, no waiting for dead slots.
    const CLAIM: hosts::ClaimOptions = hosts::ClaimOptions {
        settle: Duration::from_millis(1),
        wait_for_dead: false,
    };

    /// A slot claimed in a 2 MiB temporary file (fs uuid `[1; 16]`, 20 ms heartbeats) and its
    /// heartbeat started with a fallback lease: what the thread tests share.
    struct Beating {
        f: std::fs::File,
        template: hosts::SlotTemplate,
        index: usize,
        info: Arc<HostInfo>,
        /// What the fence callback was called with.
        fenced: Arc<Mutex<Option<String>>>,
        handle: HeartbeatHandle,
    }

    fn beating(role: famfs_format::slots::SlotRole, host_id: [u8; 16], lease: Duration) -> Beating {
        let f = tempfile::tempfile().unwrap();
        f.set_len(2 << 20).unwrap();
        let template = hosts::SlotTemplate {
            fs_uuid: [1; 16],
            host_id,
            system_uuid: [0; 16],
            role,
            module_lease: false,
            lease_ms: lease.as_millis() as u32,
            interval_ms: 20,
            hostname: "t".into(),
            applied: 0,
        };
        let t0 = Instant::now();
        let c = hosts::claim_slot(&f, &template, CLAIM).unwrap();
        let index = c.index;
        let info = HostInfo::new(0);
        let fenced = Arc::new(Mutex::new(None));
        let fenced2 = fenced.clone();
        let handle = start(
            info.clone(),
            Heartbeat::new(c),
            Box::new(FileIo(f.try_clone().unwrap())),
            Lease::Fallback,
            (Duration::from_millis(20), lease),
            t0,
            Box::new(move |w| *fenced2.lock().unwrap() = Some(w)),
        )
        .unwrap();
        Beating {
            f,
            template,
            index,
            info,
            fenced,
            handle,
        }
    }

    #[test]
    fn heartbeat_thread_beats_and_releases() {
        use famfs_format::slots::{HostSlot, SlotContent, SlotRole, SlotState};
        let b = beating(
            SlotRole::Master,
            hosts::new_host_id(),
            Duration::from_millis(300),
        );
        let (f, index, info) = (&b.f, b.index, b.info.clone());
        info.set_applied(42);
        std::thread::sleep(Duration::from_millis(200));
        let SlotContent::Slot(s) = HostSlot::decode(&f.read_slot(index).unwrap(), &[1; 16]) else {
            panic!()
        };
        assert!(s.heartbeat >= 3, "heartbeat {}", s.heartbeat);
        assert_eq!(s.applied, 42);
        // Past the first lease: renewed by the heartbeats.
        std::thread::sleep(Duration::from_millis(200));
        assert!(info.lease_valid());
        drop(b.handle);
        let SlotContent::Slot(s) = HostSlot::decode(&b.f.read_slot(index).unwrap(), &[1; 16])
        else {
            panic!()
        };
        assert_eq!(s.state, SlotState::Released);
        assert!(b.fenced.lock().unwrap().is_none());
    }

    #[test]
    fn a_lost_slot_fences_the_host() {
        use famfs_format::slots::SlotRole;
        let b = beating(SlotRole::Client, [5; 16], Duration::from_secs(5));
        // Another host overwrites the slot.
        let mut t = b.template.clone();
        t.host_id = [6; 16];
        let other = hosts::claim_slot(&b.f, &t, CLAIM).unwrap();
        b.f.write_slot(b.index, &other.slot.encode()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        assert!(b.info.fenced() && !b.info.lease_valid());
        let why = b.fenced.lock().unwrap().clone().unwrap();
        assert!(why.contains("another host took it"), "{why}");
    }
}
