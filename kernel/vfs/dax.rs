// SPDX-License-Identifier: GPL-2.0

//! `struct dax_device`: looking a devdax device up from an open descriptor, the exclusive fs-dax
//! holder role with its failure callback, the write-cache flag, and direct-access probing.
//!
//! C headers: [`include/linux/dax.h`](srctree/include/linux/dax.h),
//! [`include/linux/mm.h`](srctree/include/linux/mm.h) (`MF_MEM_PRE_REMOVE`)

use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};

use kernel::bindings;
use kernel::device::Device;
use kernel::fs::LocalFile;
use kernel::prelude::*;
use kernel::types::Opaque;

use crate::local_bindings as lb;

/// `mf_flags` bit of a notification: the device is about to be removed (unbind, hot-removal).
pub(crate) const MF_MEM_PRE_REMOVE: u32 = bindings::mf_flags_MF_MEM_PRE_REMOVE;

/// A dax device. Only reached through a [`DaxHandle`] (which holds a reference) or inside a
/// holder callback (during which the dax core keeps it alive).
#[repr(transparent)]
pub(crate) struct DaxDevice(Opaque<lb::dax_device>);

impl DaxDevice {
    /// # Safety
    ///
    /// `ptr` is a live dax device for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut lb::dax_device) -> &'a DaxDevice {
        // SAFETY: Transparent wrapper; the caller guarantees liveness.
        unsafe { &*ptr.cast() }
    }

    pub(crate) fn as_raw(&self) -> *mut lb::dax_device {
        self.0.get()
    }

    /// Whether the device flushes CPU caches on `dax_flush` (its write-cache flag).
    pub(crate) fn write_cache_enabled(&self) -> bool {
        // SAFETY: The device is alive (see the type's documentation).
        unsafe { lb::dax_write_cache_enabled(self.as_raw()) }
    }

    /// Sets or clears the write-cache flag.
    pub(crate) fn set_write_cache(&self, on: bool) {
        // SAFETY: As above.
        unsafe { lb::dax_write_cache(self.as_raw(), on) };
    }

    /// Whether `pages` pages from page `pgoff` are directly accessible in one physical range
    /// (`dax_direct_access` with no address wanted, under the dax read lock).
    pub(crate) fn range_fits(&self, pgoff: u64, pages: u64) -> bool {
        let (Ok(at), Ok(n)) = (usize::try_from(pgoff), isize::try_from(pages)) else {
            return false;
        };
        // SAFETY: The read lock makes the device's liveness stable for the call; NULL
        // kaddr/pfn ask only for the available length.
        unsafe {
            let id = lb::dax_read_lock();
            let avail = lb::dax_direct_access(
                self.as_raw(),
                at,
                n,
                lb::dax_access_mode_DAX_ACCESS,
                ptr::null_mut(),
                ptr::null_mut(),
            );
            lb::dax_read_unlock(id);
            avail >= n
        }
    }
}

/// What the module does when the dax core notifies the holder of a device.
pub(crate) trait DaxHolderOps: 'static {
    /// A memory failure of `[offset, offset + len)` of `dax`, or (`mf_flags` has
    /// [`MF_MEM_PRE_REMOVE`]) its coming removal. Runs in process context with the module
    /// pinned. `Err(EOPNOTSUPP)` lets the core's generic handling act.
    fn notify_failure(dax: &DaxDevice, offset: u64, len: u64, mf_flags: u32) -> Result;
}

struct HolderVTable<H: DaxHolderOps>(PhantomData<H>);

impl<H: DaxHolderOps> HolderVTable<H> {
    const OPS: lb::dax_holder_operations = lb::dax_holder_operations {
        notify_failure: Some(Self::notify_failure),
    };

    /// Called by `dax_holder_notify_failure` under the dax read lock while we are (or were) the
    /// holder: the core's SRCU read section keeps `dax_dev` alive. This code is module text
    /// reached only through `OPS`, which `fs_put_dax` unpublishes before the last holder goes;
    /// a module reference is taken first thing so that what the callback does (an inode's
    /// eviction can end the internal mount) cannot let the module go under it.
    ///
    /// # Safety
    ///
    /// Called by the dax core only (through `OPS`, registered by [`DaxHandle::hold`]), in
    /// process context, with `dax_dev` alive for the call; the holder pointer is not passed
    /// and nothing of ours is trusted to be alive (see above).
    unsafe extern "C" fn notify_failure(
        dax_dev: *mut lb::dax_device,
        offset: u64,
        len: u64,
        mf_flags: kernel::ffi::c_int,
    ) -> kernel::ffi::c_int {
        if !super::module_get() {
            return EOPNOTSUPP.to_errno();
        }
        // SAFETY: The dax core passes a device alive for the call (above).
        let dax = unsafe { DaxDevice::from_raw(dax_dev) };
        let rc = kernel::error::from_result(|| {
            H::notify_failure(dax, offset, len, mf_flags as u32)?;
            Ok(0)
        });
        // Nothing of the module runs after this but the return.
        super::module_put();
        rc
    }
}

/// A reference to a devdax device (`dax_dev_get`), and the exclusive fs-dax holder role once
/// [`DaxHandle::hold`] succeeded. Both are released on drop.
///
/// # Invariants
///
/// `dax` is a live dax device on which this handle owns one reference; when `held` is true it
/// also owns the holder role, with the device's own address as the holder key.
pub(crate) struct DaxHandle {
    dax: NonNull<lb::dax_device>,
    devt: u32,
    held: AtomicBool,
}

// SAFETY: `dax_device` is reference-counted and internally synchronised; the dax API may be
// called from any thread.
unsafe impl Send for DaxHandle {}
// SAFETY: As above; `held` is atomic.
unsafe impl Sync for DaxHandle {}

impl DaxHandle {
    /// The devdax device open as `file`, with a reference of our own.
    ///
    /// `known` is any struct device (the control device's), used to prove that the cdev's
    /// parent is a struct device before looking at its bus. `ENODEV` when `file` is not a
    /// devdax character device, `ENOMEM` when the dax core has no device for it.
    pub(crate) fn open(file: &LocalFile, known: &Device) -> Result<Self> {
        // `Device` wraps a `struct device` transparently.
        let known: *const bindings::device = ptr::from_ref(known).cast();
        // SAFETY: `file` holds a reference for the call; `known` is a live struct device.
        let devt = unsafe { lb::famfs_glue_dax_devt(file.as_ptr(), known) };
        if devt == 0 {
            return Err(ENODEV);
        }
        // SAFETY: `devt` is the number of a live devdax device (checked above, and held alive
        // by the open `file`), so this finds its existing dax_device and takes a reference.
        let dax = NonNull::new(unsafe { lb::dax_dev_get(devt) }).ok_or(ENOMEM)?;
        // INVARIANT: One reference, from `dax_dev_get`; not held yet.
        Ok(Self {
            dax,
            devt,
            held: AtomicBool::new(false),
        })
    }

    /// The device.
    pub(crate) fn dax(&self) -> &DaxDevice {
        // SAFETY: We hold a reference (type invariant).
        unsafe { DaxDevice::from_raw(self.dax.as_ptr()) }
    }

    /// Whether this handle holds the fs-dax holder role.
    pub(crate) fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// The device number of the devdax character device.
    pub(crate) fn devt(&self) -> u32 {
        self.devt
    }

    /// Takes the exclusive fs-dax holder role (`fs_dax_get`), with `H`'s callbacks. `EBUSY`
    /// when anyone holds it (or this handle already does), `EOPNOTSUPP` when the device is not
    /// bound to `fsdev_dax`.
    pub(crate) fn hold<H: DaxHolderOps>(&self) -> Result {
        if self.held.load(Ordering::Acquire) {
            return Err(EBUSY);
        }
        // SAFETY: We hold a reference; the key (the device's address) is unique to it and
        // stays valid while the role is held; the operations table is static.
        let rc = unsafe {
            lb::fs_dax_get(
                self.dax.as_ptr(),
                self.dax.as_ptr().cast(),
                &HolderVTable::<H>::OPS,
            )
        };
        kernel::error::to_result(rc)?;
        // INVARIANT: We now hold the role, which `fs_dax_get` gave a reference of its own.
        self.held.store(true, Ordering::Release);
        Ok(())
    }
}

impl Drop for DaxHandle {
    fn drop(&mut self) {
        // SAFETY: By the type invariant: the role (if held) with its own reference, released
        // by `fs_put_dax` with the same key, and our reference, released by `put_dax`.
        unsafe {
            if self.held.load(Ordering::Acquire) {
                lb::fs_put_dax(self.dax.as_ptr(), self.dax.as_ptr().cast());
            }
            lb::put_dax(self.dax.as_ptr());
        }
    }
}
