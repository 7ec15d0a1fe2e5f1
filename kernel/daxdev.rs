// SPDX-License-Identifier: GPL-2.0

//! Devdax devices held by the module: exclusive fs-dax ownership of a `/dev/daxN.M` bound to
//! `fsdev_dax`, with memory-failure notification.
//!
//! This is the thin FFI layer over `drivers/dax/super.c`; the rest of the module sees only
//! [`Daxdev`] and its safe methods.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use kernel::bindings;
use kernel::fs::LocalFile;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::new_mutex;

use crate::ffi;

/// A devdax device this module holds through `fs_dax_get`.
///
/// # Invariants
///
/// When `held` is true, `dax` is a valid `dax_device` on which this object is the fs-dax holder,
/// with `holder_key()` as the holder pointer, and exactly one reference to its inode is owned by
/// this object and released (together with the holder role) in [`Drop`]. `held` is only ever
/// set once, right after a successful `fs_dax_get`, before the object is shared.
#[pin_data(PinnedDrop)]
pub(crate) struct Daxdev {
    dax: NonNull<ffi::dax_device>,
    /// Addresses of the live inodes with extents on this device, so that removal can unmap
    /// them. An inode is added before its file is published and removed when it is evicted.
    #[pin]
    inodes: Mutex<KVec<usize>>,
    held: AtomicBool,
    /// `USABLE`, `REMOVED` or `POISONED`. The holder pointer given to `fs_dax_get` is the
    /// address of this field: stable for the object's whole life (it lives in an `Arc`).
    state: AtomicU8,
    size: AtomicU64,
    devt: u32,
}

// SAFETY: `dax_device` is reference-counted and internally synchronised; the pointer is only
// passed to the dax API, which may be called from any thread.
unsafe impl Send for Daxdev {}
// SAFETY: As above; the only mutable state is an atomic.
unsafe impl Sync for Daxdev {}

const USABLE: u8 = 0;
/// The device is going away (unbind, hot-removal): accesses fail with `ENXIO`.
const REMOVED: u8 = 1;
/// A memory failure was reported: accesses fail with `EHWPOISON` (fmap-wire.md).
const POISONED: u8 = 2;

/// Holder operations: a memory failure or the removal of the device makes every later access
/// to a file on it fail.
static HOLDER_OPS: ffi::dax_holder_operations = ffi::dax_holder_operations {
    notify_failure: Some(notify_failure),
};

/// Called by `dax_holder_notify_failure` under the dax read lock while we are the holder.
unsafe extern "C" fn notify_failure(
    dax_dev: *mut ffi::dax_device,
    offset: u64,
    len: u64,
    mf_flags: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // SAFETY: The dax core calls this with a live device whose holder is us.
    let holder = unsafe { ffi::dax_holder(dax_dev) };
    if holder.is_null() {
        return -(bindings::EOPNOTSUPP as i32);
    }
    // SAFETY: The holder pointer is the address of a `Daxdev` that is still alive:
    // `Daxdev::drop` clears the holder (with `fs_put_dax`) before the memory goes.
    let dev = unsafe { &*(holder as *const Daxdev) };
    let state = &dev.state;
    if mf_flags as u32 & bindings::mf_flags_MF_MEM_PRE_REMOVE != 0 {
        // Poison outranks removal: keep the more specific error.
        let _ = state.compare_exchange(USABLE, REMOVED, Ordering::AcqRel, Ordering::Acquire);
        pr_warn!("dax device is being removed: files on it now fail with ENXIO\n");
        // The memory and its struct pages are about to go: no user mapping may outlive them.
        dev.unmap_all();
    } else {
        state.store(POISONED, Ordering::Release);
        pr_err!(
            "memory failure on dax device at offset {:#x} len {:#x}: files on it now fail with EHWPOISON\n",
            offset,
            len
        );
    }
    0
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
        let known: *const bindings::device = core::ptr::from_ref(known).cast();
        // SAFETY: `file` holds a reference for the call; `known` is a live struct device.
        let devt = unsafe { ffi::famfs_glue_dax_devt(file.as_ptr(), known) };
        if devt == 0 {
            return Err(ENODEV);
        }
        let rdev = devt;

        // SAFETY: `devt` is the number of a live devdax device (checked above, and held alive by
        // the open `file`), so this finds its existing dax_device and takes a reference.
        let dax = NonNull::new(unsafe { ffi::dax_dev_get(devt) }).ok_or(ENOMEM)?;

        let this = Arc::pin_init(
            pin_init!(Self {
                dax,
                inodes <- new_mutex!(KVec::new()),
                held: AtomicBool::new(false),
                state: AtomicU8::new(USABLE),
                size: AtomicU64::new(0),
                devt: rdev,
            }),
            GFP_KERNEL,
        );
        let this = match this {
            Ok(this) => this,
            Err(e) => {
                // SAFETY: Drops the reference `dax_dev_get` gave us.
                unsafe { ffi::put_dax(dax.as_ptr()) };
                return Err(e);
            }
        };
        let holder = this.holder_key();
        // SAFETY: `dax` is referenced; `holder` stays valid until `Drop` calls `fs_put_dax`,
        // and `HOLDER_OPS` is static.
        let rc = unsafe { ffi::fs_dax_get(dax.as_ptr(), holder, &HOLDER_OPS) };
        // `fs_dax_get` takes its own inode reference on success: drop the lookup reference
        // either way, so the holder role owns exactly one.
        // SAFETY: Drops the reference `dax_dev_get` gave us.
        unsafe { ffi::put_dax(dax.as_ptr()) };
        if rc != 0 {
            // `held` stays false: dropping `this` releases nothing more.
            return Err(Error::from_errno(rc));
        }
        // INVARIANT: We are now the holder and own one reference.
        this.held.store(true, Ordering::Release);
        crate::stats::DAXDEVS.add(1);
        let size = this.probe_size();
        if size == 0 {
            return Err(ENODEV);
        }
        this.size.store(size, Ordering::Release);
        Ok(this)
    }

    fn holder_key(&self) -> *mut c_void {
        core::ptr::from_ref(self).cast_mut().cast()
    }

    /// Records that `inode` has extents on this device (before its file is published).
    pub(crate) fn track(&self, inode: *mut bindings::inode) -> Result {
        self.inodes.lock().push(inode as usize, GFP_KERNEL)?;
        Ok(())
    }

    /// Forgets `inode` (when it is evicted).
    pub(crate) fn untrack(&self, inode: *mut bindings::inode) {
        let mut inodes = self.inodes.lock();
        if let Some(i) = inodes.iter().position(|&p| p == inode as usize) {
            let _ = inodes.remove(i);
        }
    }

    /// Zaps every user mapping of every file on this device and waits until the device pages
    /// are no longer referenced. Faults after this fail (the state is no longer usable).
    fn unmap_all(&self) {
        let inodes = self.inodes.lock();
        for &inode in inodes.iter() {
            let inode = inode as *mut bindings::inode;
            // SAFETY: A tracked inode is alive: eviction untracks it (taking this lock) before
            // its mapping goes. Unmapping and waiting for idle pages need no other lock.
            unsafe {
                bindings::unmap_mapping_range((*inode).i_mapping, 0, 0, 1);
                ffi::dax_break_layout_final(inode);
            }
        }
    }

    /// The device size in bytes, found by asking `dax_direct_access` for ever larger page runs
    /// from offset 0 (it refuses a run that does not fit); the dax core exports no size query.
    fn probe_size(&self) -> u64 {
        let page = bindings::PAGE_SIZE as u64;
        let fits = |pages: u64| -> bool {
            let Ok(n) = isize::try_from(pages) else { return false };
            // SAFETY: The read lock makes the device's liveness stable for the call; we hold
            // the device; NULL kaddr/pfn ask only for the available length.
            unsafe {
                let id = ffi::dax_read_lock();
                let avail = ffi::dax_direct_access(
                    self.dax.as_ptr(),
                    0,
                    n,
                    ffi::dax_access_mode_DAX_ACCESS,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                );
                ffi::dax_read_unlock(id);
                avail >= n
            }
        };
        if !fits(1) {
            return 0;
        }
        // Largest page count that fits: grow, then bisect.
        let mut lo = 1u64;
        let mut hi = 2u64;
        while hi < (1u64 << 40) && fits(hi) {
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo.saturating_mul(page)
    }

    /// Device size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// The device number of the devdax character device.
    #[allow(dead_code)]
    pub(crate) fn devt(&self) -> u32 {
        self.devt
    }

    /// `EHWPOISON` once a memory failure was reported on the device, `ENXIO` once it is being
    /// removed.
    pub(crate) fn check_usable(&self) -> Result {
        match self.state.load(Ordering::Acquire) {
            USABLE => Ok(()),
            REMOVED => Err(ENXIO),
            _ => Err(EHWPOISON),
        }
    }

    /// The raw device, for iomap.
    #[allow(dead_code)]
    pub(crate) fn as_raw(&self) -> *mut ffi::dax_device {
        self.dax.as_ptr()
    }
}

#[pinned_drop]
impl PinnedDrop for Daxdev {
    fn drop(self: Pin<&mut Self>) {
        if !self.held.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: By the type invariant (`held`) we are the holder with key `holder_key()` and
        // own one reference, which `fs_put_dax` releases along with the holder role.
        unsafe { ffi::fs_put_dax(self.dax.as_ptr(), self.holder_key()) };
        crate::stats::DAXDEVS.sub(1);
    }
}
