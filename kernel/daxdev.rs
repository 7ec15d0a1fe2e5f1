// SPDX-License-Identifier: GPL-2.0

//! Devdax devices held by the module: exclusive fs-dax ownership of a `/dev/daxN.M` bound to
//! `fsdev_dax`, with memory-failure and removal notification.
//!
//! Two objects per device:
//!
//! - [`Holder`] owns the fs-dax holder role (`fs_dax_get` .. `fs_put_dax`). While it is the
//!   holder, it is also in [`REGISTRY`], and the holder callback finds it there (under the
//!   registry lock, taking a reference) rather than trusting the holder pointer: `fs_put_dax`
//!   does not wait for callbacks already running, so a callback may arrive for a holder whose
//!   last user has gone. A callback either finds the holder and keeps it alive with its own
//!   reference, or does not find it.
//! - [`Daxdev`] is what control opens and files hold (`Arc<Daxdev>`). Its drop takes the holder
//!   out of the registry; the holder (and the holder role) goes when the last reference, the
//!   registry's or a callback's, is dropped.

use core::cell::Cell;
use core::ffi::c_void;
use core::ops::Deref;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use kernel::bindings;
use kernel::fs::LocalFile;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

use crate::ffi;

kernel::sync::global_lock! {
    // SAFETY: Initialised by `init_registry` in the module initialiser, before any device can
    // be attached (the control device is registered after it).
    unsafe(uninit) static REGISTRY: Mutex<KVec<Arc<Holder>>> = KVec::new();
}

/// Initialises the registry of holders. Called once, from the module initialiser.
pub(crate) fn init_registry() {
    // SAFETY: Called exactly once, before any other use of `REGISTRY`.
    unsafe { REGISTRY.init() };
}

/// Frees the registry's memory. Called once, from the module's exit, when no device can be
/// held any more (every holder pins the module through the files or control opens holding it).
pub(crate) fn free_registry() {
    let all = core::mem::take(&mut *REGISTRY.lock());
    drop(all);
}

/// The holder registered for `dax`, with a reference of its own.
fn lookup(dax: *mut ffi::dax_device) -> Option<Arc<Holder>> {
    REGISTRY
        .lock()
        .iter()
        .find(|h| h.dax.as_ptr() == dax)
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

/// One famfs inode's place in one device's inode list. Lives in the inode's file data, which
/// outlives its membership: the inode is taken out of every list first thing at eviction.
///
/// Every field is only read or written under the owning device's `inodes` mutex.
pub(crate) struct Link {
    prev: Cell<*mut Link>,
    next: Cell<*mut Link>,
    inode: Cell<*mut bindings::inode>,
    linked: Cell<bool>,
}

impl Link {
    pub(crate) const fn new() -> Self {
        Self {
            prev: Cell::new(ptr::null_mut()),
            next: Cell::new(ptr::null_mut()),
            inode: Cell::new(ptr::null_mut()),
            linked: Cell::new(false),
        }
    }

    fn as_ptr(&self) -> *mut Link {
        ptr::from_ref(self).cast_mut()
    }
}

/// The head of a device's intrusive list of inodes: insertion and removal are O(1).
///
/// # Invariants
///
/// `first` and every `next`/`prev` reached from it point to live [`Link`]s that are `linked`,
/// each of which belongs to a live inode (not yet past the start of its eviction).
struct InodeList {
    first: *mut Link,
}

// SAFETY: The pointers are only followed under the mutex that wraps the list.
unsafe impl Send for InodeList {}

/// An inode of a device list held by [`Holder::unmap_all`]: a reference to it and an active
/// reference to its super block.
struct Pinned {
    link: *mut Link,
    inode: *mut bindings::inode,
    sb: *mut bindings::super_block,
}

impl Pinned {
    /// Drops both references; no lock of ours may be held (the inode may be evicted, the super
    /// block shut down).
    fn release(self) {
        // SAFETY: The references taken in `unmap_all`.
        unsafe {
            bindings::iput(self.inode);
            bindings::deactivate_super(self.sb);
        }
    }
}

enum Step {
    Next(Pinned),
    Retry(*mut bindings::super_block),
    Done,
}

/// Recorded memory failures: device byte ranges `[start, end)`, sorted and disjoint.
struct Poison {
    ranges: KVec<(u64, u64)>,
}

/// Beyond this many separate failed ranges the whole device is treated as failed.
const MAX_POISON_RANGES: usize = 1024;

/// A devdax device this module holds through `fs_dax_get`.
///
/// # Invariants
///
/// When `held` is true, `dax` is a valid `dax_device` on which this object is the fs-dax holder,
/// with `holder_key()` as the holder pointer, and exactly one reference to its inode is owned by
/// this object and released (together with the holder role) in [`Drop`]. `held` is only ever
/// set once, right after a successful `fs_dax_get`, before the object is shared.
#[pin_data(PinnedDrop)]
pub(crate) struct Holder {
    dax: NonNull<ffi::dax_device>,
    /// The live inodes with extents on this device, so that removal can unmap them.
    #[pin]
    inodes: Mutex<InodeList>,
    #[pin]
    poison: Mutex<Poison>,
    /// Set once `poison` is not empty: the hot paths look at the ranges only then.
    has_poison: AtomicBool,
    held: AtomicBool,
    /// Whether the device had its write-cache flag before we set it (restored on drop).
    had_write_cache: AtomicBool,
    /// `USABLE`, `REMOVED` or `POISONED`.
    state: AtomicU8,
    /// Set for good by [`Holder::revoke`]: the file system on the device was replaced, every
    /// access to a file on it fails with `ESTALE` (checked before `state`).
    revoked: AtomicBool,
    size: AtomicU64,
    devt: u32,
}

// SAFETY: `dax_device` is reference-counted and internally synchronised; the pointer is only
// passed to the dax API, which may be called from any thread. The lists are behind mutexes.
unsafe impl Send for Holder {}
// SAFETY: As above; the other mutable state is atomic.
unsafe impl Sync for Holder {}

const USABLE: u8 = 0;
/// The device is going away (unbind, hot-removal): accesses fail with `ENXIO`.
const REMOVED: u8 = 1;
/// Too many memory failures to track one by one: every access fails with `EHWPOISON`.
const POISONED: u8 = 2;

/// Holder operations: a memory failure makes the failed range fail; the removal of the
/// device makes every later access to a file on it fail.
static HOLDER_OPS: ffi::dax_holder_operations = ffi::dax_holder_operations {
    notify_failure: Some(notify_failure),
};

/// Called by `dax_holder_notify_failure` under the dax read lock while we are (or were) the
/// holder. The module stays loaded for the call: the code that calls here is module text
/// only reached through `HOLDER_OPS`, which `fs_put_dax` unpublishes before the last holder
/// goes; a module reference is taken first thing so that what the callback does (an inode's
/// eviction can end the internal mount) cannot let the module go under it.
unsafe extern "C" fn notify_failure(
    dax_dev: *mut ffi::dax_device,
    offset: u64,
    len: u64,
    mf_flags: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // SAFETY: Plain module reference counting on ourselves.
    if !unsafe { ffi::famfs_glue_module_get() } {
        return EOPNOTSUPP.to_errno();
    }
    let rc = match lookup(dax_dev) {
        None => EOPNOTSUPP.to_errno(),
        Some(dev) => {
            let rc = dev.failure(offset, len, mf_flags as u32);
            drop(dev);
            rc
        }
    };
    // SAFETY: Drops the reference taken above; nothing of the module runs after it but the
    // return.
    unsafe { ffi::famfs_glue_module_put() };
    rc
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
        // `Device` wraps a `struct device` transparently.
        let known: *const bindings::device = ptr::from_ref(known).cast();
        // SAFETY: `file` holds a reference for the call; `known` is a live struct device.
        let devt = unsafe { ffi::famfs_glue_dax_devt(file.as_ptr(), known) };
        if devt == 0 {
            return Err(ENODEV);
        }

        // SAFETY: `devt` is the number of a live devdax device (checked above, and held alive by
        // the open `file`), so this finds its existing dax_device and takes a reference.
        let dax = NonNull::new(unsafe { ffi::dax_dev_get(devt) }).ok_or(ENOMEM)?;

        let holder = Arc::pin_init(
            pin_init!(Holder {
                dax,
                inodes <- new_mutex!(InodeList { first: ptr::null_mut() }),
                poison <- new_mutex!(Poison { ranges: KVec::new() }),
                has_poison: AtomicBool::new(false),
                held: AtomicBool::new(false),
                had_write_cache: AtomicBool::new(false),
                state: AtomicU8::new(USABLE),
                revoked: AtomicBool::new(false),
                size: AtomicU64::new(0),
                devt,
            }),
            GFP_KERNEL,
        );
        let holder = match holder {
            Ok(holder) => holder,
            Err(e) => {
                // SAFETY: Drops the reference `dax_dev_get` gave us.
                unsafe { ffi::put_dax(dax.as_ptr()) };
                return Err(e);
            }
        };
        // Registered before it becomes the holder: a callback that comes as soon as it is
        // finds it.
        let this = Arc::new(
            Daxdev {
                holder: holder.clone(),
            },
            GFP_KERNEL,
        );
        let this = match this {
            Ok(this) => this,
            Err(e) => {
                // SAFETY: As above; `held` is false so dropping `holder` releases nothing more.
                unsafe { ffi::put_dax(dax.as_ptr()) };
                return Err(e.into());
            }
        };
        let pushed = REGISTRY.lock().push(holder.clone(), GFP_KERNEL);
        if let Err(e) = pushed {
            // SAFETY: As above.
            unsafe { ffi::put_dax(dax.as_ptr()) };
            return Err(e.into());
        }
        let key = holder.holder_key();
        // SAFETY: `dax` is referenced; `key` stays valid until `Holder::drop` calls
        // `fs_put_dax`, and `HOLDER_OPS` is static.
        let rc = unsafe { ffi::fs_dax_get(dax.as_ptr(), key, &HOLDER_OPS) };
        // `fs_dax_get` takes its own inode reference on success: drop the lookup reference
        // either way, so the holder role owns exactly one.
        // SAFETY: Drops the reference `dax_dev_get` gave us.
        unsafe { ffi::put_dax(dax.as_ptr()) };
        if rc != 0 {
            // `held` stays false: dropping `this` unregisters, and releases nothing more.
            return Err(Error::from_errno(rc));
        }
        // INVARIANT: We are now the holder and own one reference.
        holder.held.store(true, Ordering::Release);
        crate::stats::DAXDEVS.add(1);
        // `fsync`/`msync` must write CPU caches back to the device memory (other hosts read
        // it): the dax core flushes dirty entries only on devices flagged as write-caching,
        // which `fsdev_dax` does not set. We hold the device exclusively; the flag goes back
        // to what it was when we let it go.
        // SAFETY: `dax` is live and held by us.
        unsafe {
            holder.had_write_cache.store(
                ffi::dax_write_cache_enabled(dax.as_ptr()),
                Ordering::Relaxed,
            );
            ffi::dax_write_cache(dax.as_ptr(), true);
        }
        let size = holder.probe_size();
        if size == 0 {
            return Err(ENODEV);
        }
        holder.size.store(size, Ordering::Release);
        Ok(this)
    }
}

impl Holder {
    fn holder_key(&self) -> *mut c_void {
        ptr::from_ref(self).cast_mut().cast()
    }

    /// Handles a notification: the device's removal (`MF_MEM_PRE_REMOVE`) or a memory failure
    /// of `[offset, offset + len)`.
    fn failure(&self, offset: u64, len: u64, mf_flags: u32) -> kernel::ffi::c_int {
        if mf_flags & bindings::mf_flags_MF_MEM_PRE_REMOVE != 0 {
            let _ =
                self.state
                    .compare_exchange(USABLE, REMOVED, Ordering::AcqRel, Ordering::Acquire);
            pr_warn!("dax device is being removed: files on it now fail with ENXIO\n");
            // The memory and its struct pages are about to go: no user mapping may outlive them.
            let _ = self.unmap_all();
            return 0;
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
        EOPNOTSUPP.to_errno()
    }

    fn record_poison(&self, offset: u64, len: u64) {
        let page = bindings::PAGE_SIZE as u64;
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
    /// `link` stays at its address and is not given to any other list until [`Self::untrack`]
    /// with it has returned; `inode` is alive until then.
    pub(crate) unsafe fn track(&self, link: &Link, inode: *mut bindings::inode) {
        let mut list = self.inodes.lock();
        link.inode.set(inode);
        link.prev.set(ptr::null_mut());
        link.next.set(list.first);
        if !list.first.is_null() {
            // SAFETY: By the list invariant `first` is a live linked `Link`.
            unsafe { (*list.first).prev.set(link.as_ptr()) };
        }
        list.first = link.as_ptr();
        link.linked.set(true);
    }

    /// Takes `link` out of this device's list (first thing when its inode is evicted).
    pub(crate) fn untrack(&self, link: &Link) {
        let mut list = self.inodes.lock();
        if !link.linked.get() {
            return;
        }
        let (prev, next) = (link.prev.get(), link.next.get());
        if prev.is_null() {
            list.first = next;
        } else {
            // SAFETY: A linked neighbour is a live `Link` (list invariant).
            unsafe { (*prev).next.set(next) };
        }
        if !next.is_null() {
            // SAFETY: As above.
            unsafe { (*next).prev.set(prev) };
        }
        link.linked.set(false);
        link.prev.set(ptr::null_mut());
        link.next.set(ptr::null_mut());
    }

    /// Zaps every user mapping of every file on this device and waits until the device pages
    /// are no longer referenced. Faults that come after fail: the caller made the state
    /// unusable first, and a fault checks it under the mapping's invalidate lock, which is
    /// taken exclusively here around the unmapping (so a fault that checked before the change
    /// has installed its entry before the unmap, and none can install one after).
    ///
    /// The list lock is held only to step to the next inode, which is then pinned: its super
    /// block with an active reference (unless it is being shut down), the inode with `igrab`
    /// (unless it is being evicted: eviction takes it out of the list first thing, and its
    /// mapping goes with it). The pinned inode keeps its place in the list, so the walk
    /// resumes from it. Unmapping and waiting happen with no lock of ours held.
    ///
    /// Returns how many inodes it unmapped.
    fn unmap_all(&self) -> u64 {
        let mut count = 0u64;
        let mut held: Option<Pinned> = None;
        loop {
            let step = {
                let list = self.inodes.lock();
                let mut l = match &held {
                    None => list.first,
                    // SAFETY: The held inode is not evicted, so its link is still linked and
                    // live (list invariant).
                    Some(h) => unsafe { (*h.link).next.get() },
                };
                let mut step = Step::Done;
                while !l.is_null() {
                    // An inode leaves the list under this lock, at the start of its eviction,
                    // before it or its super block can be freed.
                    // SAFETY: Linked links, their inodes and super blocks live while locked.
                    let (inode, sb) = unsafe { ((*l).inode.get(), (*(*l).inode.get()).i_sb) };
                    // SAFETY: `sb` is live (above).
                    if !unsafe { ffi::famfs_glue_sb_get_active(sb) } {
                        // Being shut down: its inodes are evicted by the shutdown.
                        // SAFETY: As above.
                        l = unsafe { (*l).next.get() };
                        continue;
                    }
                    // SAFETY: `inode` is live (above); `igrab` refuses one being freed.
                    if unsafe { bindings::igrab(inode) }.is_null() {
                        // Being evicted. The super block reference cannot be dropped under
                        // this lock (it may be the last one, and shutting down evicts): drop
                        // it outside and look again, once the eviction has untracked it.
                        step = Step::Retry(sb);
                        break;
                    }
                    step = Step::Next(Pinned { link: l, inode, sb });
                    break;
                }
                step
            };
            match step {
                Step::Retry(sb) => {
                    // SAFETY: The active reference taken above; no lock of ours is held.
                    unsafe { bindings::deactivate_super(sb) };
                    // SAFETY: A plain sleep, in process context with no lock held.
                    unsafe { bindings::msleep(1) };
                    continue;
                }
                Step::Done => {
                    if let Some(h) = held.take() {
                        h.release();
                    }
                    break;
                }
                Step::Next(next) => {
                    if let Some(h) = held.take() {
                        h.release();
                    }
                    // SAFETY: We hold a reference to the inode and its super block.
                    unsafe {
                        let mapping = (*next.inode).i_mapping;
                        ffi::famfs_glue_invalidate_lock(mapping);
                        bindings::unmap_mapping_range(mapping, 0, 0, 1);
                        ffi::famfs_glue_invalidate_unlock(mapping);
                        ffi::dax_break_layout_final(next.inode);
                    }
                    count += 1;
                    held = Some(next);
                }
            }
        }
        count
    }

    /// Revokes every file on this device for good (the file system on it was replaced): later
    /// accesses fail with `ESTALE` (faults with `SIGBUS`), then every existing mapping is zapped
    /// as on removal (see [`Self::unmap_all`] for why no fault can re-install one). Returns how
    /// many live files were unmapped.
    pub(crate) fn revoke(&self) -> u64 {
        self.revoked.store(true, Ordering::Release);
        self.unmap_all()
    }

    /// The device size in bytes, found by asking `dax_direct_access` for ever larger page runs
    /// (it refuses a run that does not fit in one of the device's physical ranges), range
    /// after range; the dax core exports no size query.
    fn probe_size(&self) -> u64 {
        let page = bindings::PAGE_SIZE as u64;
        let fits = |at: u64, pages: u64| -> bool {
            let (Ok(at), Ok(n)) = (usize::try_from(at), isize::try_from(pages)) else {
                return false;
            };
            // SAFETY: The read lock makes the device's liveness stable for the call; we hold
            // the device; NULL kaddr/pfn ask only for the available length.
            unsafe {
                let id = ffi::dax_read_lock();
                let avail = ffi::dax_direct_access(
                    self.dax.as_ptr(),
                    at,
                    n,
                    ffi::dax_access_mode_DAX_ACCESS,
                    ptr::null_mut(),
                    ptr::null_mut(),
                );
                ffi::dax_read_unlock(id);
                avail >= n
            }
        };
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
        self.devt
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

    /// The raw device, for iomap.
    pub(crate) fn as_raw(&self) -> *mut ffi::dax_device {
        self.dax.as_ptr()
    }
}

#[pinned_drop]
impl PinnedDrop for Holder {
    fn drop(self: Pin<&mut Self>) {
        if !self.held.load(Ordering::Acquire) {
            return;
        }
        // A callback that `fs_put_dax` does not wait for finds no holder in the registry (we were
        // taken out before our last reference went) and touches nothing of ours.
        // SAFETY: By the type invariant (`held`) we hold the role and one reference (`holder_key`).
        unsafe {
            ffi::dax_write_cache(
                self.dax.as_ptr(),
                self.had_write_cache.load(Ordering::Relaxed),
            );
            ffi::fs_put_dax(self.dax.as_ptr(), self.holder_key());
        }
        crate::stats::DAXDEVS.sub(1);
    }
}
