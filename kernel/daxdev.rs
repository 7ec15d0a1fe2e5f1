// SPDX-License-Identifier: GPL-2.0

//! Devdax devices held by the module: exclusive fs-dax ownership of a `/dev/daxN.M` bound to
//! `fsdev_dax`, with memory-failure and removal notification.
//!
//! Two objects per device:
//!
//! - [`Holder`] owns the fs-dax holder role (a [`DaxHandle`]: `fs_dax_get` .. `fs_put_dax`).
//!   While it is the holder, it is also in [`REGISTRY`], and the holder callback finds it there
//!   by its dax device (under the registry lock, taking a reference) rather than trusting the
//!   holder pointer: `fs_put_dax` does not wait for callbacks already running, so a callback may
//!   arrive for a holder whose last user has gone. A callback either finds the holder and keeps
//!   it alive with its own reference, or does not find it.
//! - [`Daxdev`] is what control opens and files hold (`Arc<Daxdev>`). Its drop takes the holder
//!   out of the registry; the holder (and the holder role) goes when the last reference, the
//!   registry's or a callback's, is dropped.
//!
//! C headers: none directly: the dax core through `crate::vfs::dax`, inodes through
//! `crate::vfs::inode`

use core::ops::Deref;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering};

use kernel::fs::LocalFile;
use kernel::list::{AtomicTracker, List, ListArc, ListLinks, TryNewListArc};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::{Arc, Mutex};
use kernel::time::delay::fsleep;
use kernel::time::Delta;

use crate::vfs::dax::{DaxDevice, DaxHandle, DaxHolderOps, MF_MEM_PRE_REMOVE};
use crate::vfs::inode::ActiveSuper;
use crate::vfs::{Inode, PAGE_SIZE};

kernel::sync::global_lock! {
    // SAFETY: Initialised by `init_registry` in the module initialiser, before any device can
    // be attached (the control device is registered after it).
    unsafe(uninit) static REGISTRY: Mutex<KVec<Arc<Holder>>> = KVec::new();
}

/// The module's ownership of the holder registry: initialises it, and frees its memory when
/// dropped (a field of the module object, dropped at unload when no device can be held any
/// more: every holder is reached from a file or a control open, each pinning the module, or
/// from a lease revoke still queued, which the module's queue waited for before this).
pub(crate) struct Registry(());

impl Registry {
    /// Called once, from the module initialiser, before the control device exists.
    pub(crate) fn init() -> Self {
        // SAFETY: Called exactly once, before any other use of `REGISTRY`.
        unsafe { REGISTRY.init() };
        Self(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The registry is a static: its buffer would outlive the module.
        let all = core::mem::take(&mut *REGISTRY.lock());
        drop(all);
    }
}

/// The holder registered for `dax`, with a reference of its own.
fn lookup(dax: &DaxDevice) -> Option<Arc<Holder>> {
    REGISTRY
        .lock()
        .iter()
        .find(|h| h.dax.dax().as_raw() == dax.as_raw())
        .cloned()
}

/// A devdax device as control opens and files see it: a holder registered for callbacks.
pub(crate) struct Daxdev {
    holder: Arc<Holder>,
}

impl Deref for Daxdev {
    type Target = Holder;

    fn deref(&self) -> &Holder {
        &self.holder
    }
}

impl Drop for Daxdev {
    fn drop(&mut self) {
        // Out of the registry under its lock, dropped after it: the holder's drop (fs_put_dax)
        // must not run under the registry lock a callback may be waiting for.
        let taken = {
            let mut reg = REGISTRY.lock();
            let at = reg.iter().position(|h| Arc::ptr_eq(h, &self.holder));
            at.and_then(|i| reg.remove(i).ok())
        };
        drop(taken);
    }
}

/// One famfs inode's entry in one device's inode list (a [`kernel::list::List`]). A file's data
/// makes one for each device its map names (an `Arc`); while the inode is on the device's list,
/// the list owns a [`ListArc`] of it too. The inode is taken out of every list first thing at
/// eviction ([`Holder::untrack`]).
#[pin_data]
pub(crate) struct InodeLink {
    #[pin]
    links: ListLinks,
    #[pin]
    tracker: AtomicTracker,
    /// The inode, set by [`Holder::track`]; only read under the device's list lock while the
    /// link is on the list (the inode is then alive: it leaves the list before it goes).
    inode: AtomicPtr<Inode>,
    /// Its inode number: the walk's resume key ([`Holder::unmap_all`]), and how
    /// [`Holder::revoke_ino`] finds it.
    ino: AtomicU64,
    /// The file's revoked flag (shared with its data and its other links), set by
    /// [`Holder::revoke_ino`].
    file_revoked: Arc<AtomicBool>,
}

kernel::list::impl_list_arc_safe! {
    impl ListArcSafe<0> for InodeLink { tracked_by tracker: AtomicTracker; }
}
kernel::list::impl_list_item! {
    impl ListItem<0> for InodeLink { using ListLinks { self.links }; }
}

impl InodeLink {
    /// A new link, on no list, of the file whose revoked flag is `file_revoked`.
    pub(crate) fn new(file_revoked: Arc<AtomicBool>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(InodeLink {
                links <- ListLinks::new(),
                tracker <- AtomicTracker::new(),
                inode: AtomicPtr::new(ptr::null_mut()),
                ino: AtomicU64::new(0),
                file_revoked,
            }),
            GFP_KERNEL,
        )
    }
}

/// An inode of a device list held by [`Holder::unmap_all`]: a reference to it and an active
/// reference to its super block, dropped in that order, with no lock of ours held (the inode
/// may be evicted, the super block shut down).
struct Pinned {
    inode: ARef<Inode>,
    _sb: ActiveSuper,
}

/// Why [`Holder::unmap_all`] runs.
#[derive(Clone, Copy)]
enum Unmap {
    /// The device is going away: wait for every pin, whatever comes.
    Removal,
    /// `IOC_REVOKE`: drain reads and writes first; waits end on a signal.
    Revoke,
}

/// One step of [`Holder::unmap_all`]'s walk: the next inode (by inode number) pinned, or
/// skipped (its super block is shutting down), or being evicted (look again), or none left.
enum Step {
    Next(u64, Pinned),
    Skip(u64),
    Retry(ActiveSuper),
    Done,
}

/// Recorded memory failures: device byte ranges `[start, end)`, sorted and disjoint.
struct Poison {
    ranges: KVec<(u64, u64)>,
}

/// Beyond this many separate failed ranges the whole device is treated as failed.
const MAX_POISON_RANGES: usize = 1024;

/// A devdax device this module holds through `fs_dax_get`.
#[pin_data(PinnedDrop)]
pub(crate) struct Holder {
    /// The device, and the holder role once taken.
    dax: DaxHandle,
    /// The live inodes with extents on this device, so that removal can unmap them.
    #[pin]
    inodes: Mutex<List<InodeLink>>,
    #[pin]
    poison: Mutex<Poison>,
    /// Set once `poison` is not empty: the hot paths look at the ranges only then.
    has_poison: AtomicBool,
    /// Whether the device had its write-cache flag before we set it (restored on drop).
    had_write_cache: AtomicBool,
    /// `USABLE`, `REMOVED` or `POISONED`.
    state: AtomicU8,
    /// Set for good by [`Holder::revoke`]: the file system on the device was replaced, every
    /// access to a file on it fails with `ESTALE` (checked before `state`).
    revoked: AtomicBool,
    size: AtomicU64,
}

const USABLE: u8 = 0;
/// The device is going away (unbind, hot-removal): accesses fail with `ENXIO`.
const REMOVED: u8 = 1;
/// Too many memory failures to track one by one: every access fails with `EHWPOISON`.
const POISONED: u8 = 2;

/// The holder callbacks: a memory failure makes the failed range fail; the removal of the
/// device makes every later access to a file on it fail.
struct Callbacks;

impl DaxHolderOps for Callbacks {
    fn notify_failure(dax: &DaxDevice, offset: u64, len: u64, mf_flags: u32) -> Result {
        match lookup(dax) {
            None => Err(EOPNOTSUPP),
            Some(dev) => dev.failure(offset, len, mf_flags),
        }
    }
}

impl Daxdev {
    /// Takes exclusive fs-dax ownership of the devdax device open as `fd`.
    ///
    /// `known` is any struct device (the control device's), used to recognise devdax devices.
    ///
    /// Errors: `EBADF` (not an open fd), `ENODEV` (not a dax device, or gone), `EOPNOTSUPP`
    /// (a dax device bound to a driver other than `fsdev_dax`), `EBUSY` (already held, by us
    /// or by anyone else).
    pub(crate) fn attach(fd: i32, known: &kernel::device::Device) -> Result<Arc<Self>> {
        let fd = u32::try_from(fd).map_err(|_| EBADF)?;
        let file = LocalFile::fget(fd)?;
        let dax = DaxHandle::open(&file, known)?;
        let holder = Arc::pin_init(
            pin_init!(Holder {
                dax,
                inodes <- new_mutex!(List::new()),
                poison <- new_mutex!(Poison { ranges: KVec::new() }),
                has_poison: AtomicBool::new(false),
                had_write_cache: AtomicBool::new(false),
                state: AtomicU8::new(USABLE),
                revoked: AtomicBool::new(false),
                size: AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )?;
        // Registered before it becomes the holder: a callback that comes as soon as it is
        // finds it.
        let this = Arc::new(
            Daxdev {
                holder: holder.clone(),
            },
            GFP_KERNEL,
        )?;
        REGISTRY.lock().push(holder.clone(), GFP_KERNEL)?;
        // On failure dropping `this` unregisters, and releases nothing more.
        holder.dax.hold::<Callbacks>()?;
        crate::stats::DAXDEVS.add(1);
        // `fsync`/`msync` must write CPU caches back to the device memory (other hosts read
        // it): the dax core flushes dirty entries only on devices flagged as write-caching,
        // which `fsdev_dax` does not set. We hold the device exclusively; the flag goes back
        // to what it was when we let it go.
        let dax = holder.dax.dax();
        holder
            .had_write_cache
            .store(dax.write_cache_enabled(), Ordering::Relaxed);
        dax.set_write_cache(true);
        let size = holder.probe_size();
        if size == 0 {
            return Err(ENODEV);
        }
        holder.size.store(size, Ordering::Release);
        Ok(this)
    }
}

impl Holder {
    /// Handles a notification: the device's removal (`MF_MEM_PRE_REMOVE`) or a memory failure
    /// of `[offset, offset + len)`.
    fn failure(&self, offset: u64, len: u64, mf_flags: u32) -> Result {
        if mf_flags & MF_MEM_PRE_REMOVE != 0 {
            let _ =
                self.state
                    .compare_exchange(USABLE, REMOVED, Ordering::AcqRel, Ordering::Acquire);
            pr_warn!("dax device is being removed: files on it now fail with ENXIO\n");
            // The memory and its struct pages are about to go: no user mapping may outlive them.
            let _ = self.unmap_all(Unmap::Removal);
            return Ok(());
        }
        self.record_poison(offset, len);
        pr_err!(
            "memory failure on dax device at offset {:#x} len {:#x}: \
             that range now fails with EHWPOISON\n",
            offset,
            len
        );
        // The core then unmaps the failed page from every process that maps it and sends
        // them SIGBUS (mf_generic_kill_procs, through the page's mapping and index, which
        // fs-dax set when it was faulted in); later faults and reads of the range fail here.
        Err(EOPNOTSUPP)
    }

    fn record_poison(&self, offset: u64, len: u64) {
        let page = PAGE_SIZE;
        let start = offset - offset % page;
        let end = offset.saturating_add(len.max(1)).saturating_add(page - 1) / page * page;
        let mut p = self.poison.lock();
        // Merge with every range it touches, keep the list sorted.
        let (mut s, mut e) = (start, end);
        p.ranges.retain(|r| {
            let (rs, re) = *r;
            if re >= s && rs <= e {
                s = s.min(rs);
                e = e.max(re);
                false
            } else {
                true
            }
        });
        let at = p
            .ranges
            .iter()
            .position(|&(rs, _)| rs > s)
            .unwrap_or(p.ranges.len());
        let room = p.ranges.len() < MAX_POISON_RANGES && p.ranges.reserve(1, GFP_KERNEL).is_ok();
        if !room || p.ranges.insert_within_capacity(at, (s, e)).is_err() {
            // No room to remember it precisely: the whole device counts as failed.
            self.state.store(POISONED, Ordering::Release);
        }
        self.has_poison.store(true, Ordering::Release);
    }

    /// How many bytes from device offset `offset` (up to `len`) are not known to have failed:
    /// `EHWPOISON` when `offset` itself lies in a failed range, else a length that stops
    /// before the next failed range.
    pub(crate) fn usable_len(&self, offset: u64, len: u64) -> Result<u64> {
        if !self.has_poison.load(Ordering::Acquire) {
            return Ok(len);
        }
        let p = self.poison.lock();
        let end = offset.saturating_add(len);
        for &(s, e) in p.ranges.iter() {
            if offset >= s && offset < e {
                return Err(EHWPOISON);
            }
            if s > offset && s < end {
                return Ok(s - offset);
            }
        }
        Ok(len)
    }

    /// Whether a memory failure was recorded on this device.
    pub(crate) fn has_failures(&self) -> bool {
        self.has_poison.load(Ordering::Acquire)
    }

    /// Adds `inode` to this device's list through `link` (before its file is published).
    ///
    /// # Safety
    ///
    /// `inode` stays alive until [`Self::untrack`] with `link` has returned, and `link` is given
    /// to no other device's list.
    pub(crate) unsafe fn track(&self, link: &Arc<InodeLink>, inode: &Inode) {
        let mut list = self.inodes.lock();
        link.inode
            .store(ptr::from_ref(inode).cast_mut(), Ordering::Relaxed);
        link.ino.store(inode.ino(), Ordering::Relaxed);
        // A link is on at most one list (this one), and only `track` puts it there: a second
        // `ListArc` cannot exist, and a link already listed here stays as it is.
        if let Ok(la) = ListArc::try_from_arc(link.clone()) {
            list.push_back(la);
        }
    }

    /// Takes `link` out of this device's list (first thing when its inode is evicted).
    pub(crate) fn untrack(&self, link: &InodeLink) {
        let mut list = self.inodes.lock();
        // SAFETY: `link` is on this device's list or on none: `track` of this device is the only
        // place that lists it (the caller of `track` promised no other device gets it).
        drop(unsafe { list.remove(link) });
    }

    /// Zaps every user mapping of every file on this device and waits until the device pages
    /// are no longer referenced. For a revoke ([`Unmap::Revoke`]) it first waits for the reads
    /// and writes already inside each file's data path (they hold the inode lock across their
    /// copy and check the state under it, so once the lock was ours for a moment none is left
    /// and none can start), and both waits end on a signal (`EINTR`/`ERESTARTSYS`: the walk
    /// stops there; the state stays unusable, so the caller may simply ask again). Faults that
    /// come after fail: the caller made the state unusable first, and a fault checks it under
    /// the mapping's invalidate lock, which is taken exclusively here around the unmapping (so
    /// a fault that checked before the change has installed its entry before the unmap, and
    /// none can install one after).
    ///
    /// The list lock is held only to step to the next inode, which is then pinned: its super
    /// block with an active reference (unless it is being shut down: skipped, its inodes are
    /// evicted by the shutdown), the inode with `igrab` (unless it is being evicted: eviction
    /// takes it out of the list first thing, and its mapping goes with it). The walk goes by
    /// inode number (a cursor of the list cannot outlive the lock): each step takes the listed
    /// inode with the smallest number above the last one visited. An inode listed after the
    /// walk began may be missed, which is harmless: its file was created against the state the
    /// caller already changed, so every open, mmap, read, write and fault of it fails. Each step
    /// scans the list, so a walk is quadratic in the files of the device; it runs only for a
    /// removal or a revoke. Unmapping and waiting happen with no lock of ours held.
    ///
    /// Returns how many inodes it unmapped.
    fn unmap_all(&self, how: Unmap) -> Result<u64> {
        let mut count = 0u64;
        let mut after = 0u64;
        loop {
            let step = {
                let list = self.inodes.lock();
                let next = list
                    .iter()
                    .filter(|l| l.ino.load(Ordering::Relaxed) > after)
                    .min_by_key(|l| l.ino.load(Ordering::Relaxed));
                match next {
                    None => Step::Done,
                    Some(link) => {
                        let ino = link.ino.load(Ordering::Relaxed);
                        // An inode leaves the list under this lock, first thing at eviction,
                        // before it or its super block can be freed (`track`/`untrack`).
                        // SAFETY: So a listed link's inode is alive while the list is locked.
                        let inode = unsafe { &*link.inode.load(Ordering::Relaxed) };
                        match inode.super_get_active() {
                            None => Step::Skip(ino),
                            Some(sb) => match inode.try_get() {
                                Some(inode) => Step::Next(ino, Pinned { inode, _sb: sb }),
                                // Being evicted. The super block reference cannot be dropped
                                // under this lock (it may be the last one, and shutting down
                                // evicts): drop it outside and look again, once the eviction
                                // has untracked it.
                                None => Step::Retry(sb),
                            },
                        }
                    }
                }
            };
            match step {
                Step::Retry(sb) => {
                    // No lock of ours is held here.
                    drop(sb);
                    fsleep(Delta::from_millis(1));
                }
                Step::Skip(ino) => after = ino,
                Step::Done => break,
                Step::Next(ino, next) => {
                    after = ino;
                    match how {
                        Unmap::Removal => {
                            next.inode.invalidate_lock().unmap_all();
                            next.inode.dax_break_layout_final();
                        }
                        Unmap::Revoke => drain_and_unmap(&next.inode)?,
                    }
                    count += 1;
                    // The inode, then its super block, with no lock of ours held.
                    drop(next);
                }
            }
        }
        Ok(count)
    }

    /// Revokes every file on this device for good (the file system on it was replaced): later
    /// accesses fail with `ESTALE` (faults with `SIGBUS`), then the reads and writes in flight
    /// are waited for and every existing mapping is zapped as on removal (see
    /// [`Self::unmap_all`] for why no access can start or fault in after). Returns how many live
    /// files were unmapped; a signal ends the waits (`EINTR`/`ERESTARTSYS`).
    pub(crate) fn revoke(&self) -> Result<u64> {
        self.revoked.store(true, Ordering::Release);
        self.unmap_all(Unmap::Revoke)
    }

    /// Revokes the one live file on this device whose inode number is `ino` (`IOC_REVOKE_INO`):
    /// its flag first (every access fails with `ESTALE`, faults with `SIGBUS`), then, with the
    /// inode pinned as [`Self::unmap_all`] pins one, the reads and writes in flight are waited
    /// for and its mappings zapped ([`drain_and_unmap`]; a signal ends the waits, and a second
    /// call resumes). `None` when no such file is on this device's list (never made here, or
    /// evicted: then nothing of it is open or mapped); else whether it was mapped. An inode
    /// being evicted or on a super block shutting down is flagged and left to its eviction.
    pub(crate) fn revoke_ino(&self, ino: u64) -> Result<Option<bool>> {
        let pinned = {
            let list = self.inodes.lock();
            let Some(link) = list.iter().find(|l| l.ino.load(Ordering::Relaxed) == ino) else {
                return Ok(None);
            };
            let first = !link.file_revoked.swap(true, Ordering::AcqRel);
            if first {
                pr_info!("revoking file ino {}: it now fails with ESTALE\n", ino);
            }
            // SAFETY: As in `unmap_all`: a listed link's inode is alive while the list is
            // locked (it leaves the list under this lock, first thing at its eviction).
            let inode = unsafe { &*link.inode.load(Ordering::Relaxed) };
            match inode.super_get_active() {
                None => return Ok(Some(false)),
                Some(sb) => match inode.try_get() {
                    Some(inode) => Pinned { inode, _sb: sb },
                    // Being evicted: its mappings are gone with it. The super block reference
                    // is dropped outside the list lock (it may be the last one).
                    None => {
                        drop(list);
                        drop(sb);
                        return Ok(Some(false));
                    }
                },
            }
        };
        let was_mapped = pinned.inode.mapping_mapped();
        let r = drain_and_unmap(&pinned.inode);
        // The inode, then its super block, with no lock of ours held.
        drop(pinned);
        r.map(|()| Some(was_mapped))
    }

    /// Whether the device was revoked ([`Self::revoke`]).
    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// The device size in bytes, found by asking `dax_direct_access` for ever larger page runs
    /// (it refuses a run that does not fit in one of the device's physical ranges), range
    /// after range; the dax core exports no size query.
    fn probe_size(&self) -> u64 {
        let page = PAGE_SIZE;
        let dax = self.dax.dax();
        let fits = |at: u64, pages: u64| -> bool { dax.range_fits(at, pages) };
        let limit = 1u64 << 40;
        let mut at = 0u64;
        // One physical range per turn: the largest run from `at` that fits, grown then bisected.
        while at < limit && fits(at, 1) {
            let mut lo = 1u64;
            let mut hi = 2u64;
            while hi < limit && fits(at, hi) {
                lo = hi;
                hi *= 2;
            }
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if fits(at, mid) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            at += lo;
        }
        at.saturating_mul(page)
    }

    /// Device size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// The device number of the devdax character device.
    pub(crate) fn devt(&self) -> u32 {
        self.dax.devt()
    }

    /// `ESTALE` once revoked, `ENXIO` once the device is being removed, `EHWPOISON` when it
    /// has too many failed ranges to track.
    pub(crate) fn check_usable(&self) -> Result {
        if self.revoked.load(Ordering::Acquire) {
            return Err(ESTALE);
        }
        match self.state.load(Ordering::Acquire) {
            USABLE => Ok(()),
            REMOVED => Err(ENXIO),
            _ => Err(EHWPOISON),
        }
    }

    /// The device, for iomap and writeback.
    pub(crate) fn dax(&self) -> &DaxDevice {
        self.dax.dax()
    }
}

/// The revoke of one file whose state already fails every access (`ESTALE`): waits for the
/// reads and writes already inside its data path (they hold the inode lock across their copy
/// and check the state under it, so once the lock was ours for a moment none is left and none
/// can start), zaps every mapping under the exclusive invalidate lock (a fault checks the state
/// under the same lock, shared: it installed its entry before the unmap, or fails), then waits
/// until no page of the file is still referenced. Both waits end on a signal
/// (`EINTR`/`ERESTARTSYS`), and calling it again resumes.
pub(crate) fn drain_and_unmap(inode: &Inode) -> Result {
    drop(inode.lock_killable()?);
    inode.invalidate_lock().unmap_all();
    inode.dax_break_layout_interruptible()
}

#[pinned_drop]
impl PinnedDrop for Holder {
    fn drop(self: Pin<&mut Self>) {
        if !self.dax.is_held() {
            return;
        }
        // The role itself goes with `self.dax` (`fs_put_dax`), right after this. A callback that
        // `fs_put_dax` does not wait for finds no holder in the registry (we were taken out
        // before our last reference went) and touches nothing of ours.
        self.dax
            .dax()
            .set_write_cache(self.had_write_cache.load(Ordering::Relaxed));
        crate::stats::DAXDEVS.sub(1);
    }
}
