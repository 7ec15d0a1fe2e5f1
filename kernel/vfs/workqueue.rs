// SPDX-License-Identifier: GPL-2.0

//! The module's own workqueue: made at load, destroyed at unload, and destroying it waits for
//! every work item still queued or running (`destroy_workqueue` drains the queue). A work item
//! is module code: one that outlives the object that queued it (the lease revoke of a closed
//! `/dev/famfs` open) can only be queued here, never on a system queue, which the module cannot
//! wait for at unload. The kernel crate wraps the system queues (`kernel::workqueue::Queue`)
//! but has no owned queue yet, so this is the small part it lacks.
//!
//! C headers: [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h)

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::bindings;
use kernel::prelude::*;
use kernel::workqueue::Queue;

/// The queue while a [`ModuleQueue`] lives, else null.
static QUEUE: AtomicPtr<bindings::workqueue_struct> = AtomicPtr::new(ptr::null_mut());

/// Owns the module's workqueue (one per module load): field of the module object, made before
/// the control device is registered and dropped after it is gone.
pub(crate) struct ModuleQueue(());

impl ModuleQueue {
    /// Allocates the queue (unbound: its items sleep for as long as a revoke waits).
    pub(crate) fn create() -> Result<Self> {
        // SAFETY: The format is a NUL-terminated string with no conversion, so the variadic
        // part is empty; the flags are valid `WQ_*` flags, 0 asks for the default concurrency.
        let wq = unsafe {
            bindings::alloc_workqueue_noprof(
                c"famfs_lease".as_ptr().cast(),
                bindings::wq_flags_WQ_UNBOUND,
                0,
            )
        };
        if wq.is_null() {
            return Err(ENOMEM);
        }
        QUEUE.store(wq, Ordering::Release);
        Ok(Self(()))
    }

    /// The module's queue; `None` before load and after unload.
    ///
    /// The `'static` reference is only ever used by module code that runs before the queue is
    /// destroyed: callers hold the module (an open file of it, or run as a timer callback that
    /// the release of such a file cancels and waits for).
    pub(crate) fn get() -> Option<&'static Queue> {
        let wq = QUEUE.load(Ordering::Acquire);
        if wq.is_null() {
            return None;
        }
        // SAFETY: A queue allocated by `create`, destroyed only by `drop` when no caller of
        // ours can still run (see above).
        Some(unsafe { Queue::from_raw(wq) })
    }
}

impl Drop for ModuleQueue {
    fn drop(&mut self) {
        let wq = QUEUE.swap(ptr::null_mut(), Ordering::AcqRel);
        if !wq.is_null() {
            // SAFETY: Allocated by `create` and not destroyed yet (swapped out above); this
            // waits for every item still queued or running on it.
            unsafe { bindings::destroy_workqueue(wq) };
        }
    }
}
