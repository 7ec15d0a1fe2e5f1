// SPDX-License-Identifier: GPL-2.0

//! `struct inode`: a reference-counted wrapper, its locks and the operations on its mapping the
//! module needs.
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/pagemap.h`](srctree/include/linux/pagemap.h),
//! [`include/linux/dax.h`](srctree/include/linux/dax.h)

use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::aref::{ARef, AlwaysRefCounted};
use kernel::types::Opaque;

use crate::local_bindings as lb;

/// A VFS inode.
///
/// # Invariants
///
/// The wrapped inode is alive for as long as the `&Inode` (the caller of [`Inode::from_raw`]
/// guarantees it), or holds a reference (`ARef<Inode>`).
#[repr(transparent)]
pub(crate) struct Inode(Opaque<bindings::inode>);

// SAFETY: An inode's reference count is atomic and `iput` may be called from any thread.
unsafe impl AlwaysRefCounted for Inode {
    fn inc_ref(&self) {
        // SAFETY: The inode is alive (type invariant), so it has a reference already.
        unsafe { bindings::ihold(self.as_raw()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller gives back a reference it owns.
        unsafe { bindings::iput(obj.as_ptr().cast()) };
    }
}

// SAFETY: The inode is internally synchronised (its fields are changed under its own locks).
unsafe impl Send for Inode {}
// SAFETY: As above.
unsafe impl Sync for Inode {}

impl Inode {
    /// # Safety
    ///
    /// `ptr` is a live inode for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::inode) -> &'a Inode {
        // SAFETY: `Inode` is a transparent wrapper; the caller guarantees liveness.
        unsafe { &*ptr.cast() }
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::inode {
        self.0.get()
    }

    /// A new reference unless the inode is being freed (`igrab`).
    pub(crate) fn try_get(&self) -> Option<ARef<Inode>> {
        // SAFETY: The inode is alive (type invariant); `igrab` refuses one being freed.
        let p = unsafe { bindings::igrab(self.as_raw()) };
        // SAFETY: `igrab` returned a new reference, now owned by the `ARef`.
        NonNull::new(p).map(|p| unsafe { ARef::from_raw(p.cast()) })
    }

    /// Takes the inode lock exclusively (writers).
    pub(crate) fn lock(&self) -> InodeGuard<'_, Exclusive> {
        // SAFETY: The inode is alive; released by the guard.
        unsafe { lb::famfs_glue_inode_lock(self.as_raw()) };
        // INVARIANT: Taken exclusively just above.
        InodeGuard::new(self)
    }

    /// Takes the inode lock exclusively, unless a fatal signal comes first (`EINTR`).
    pub(crate) fn lock_killable(&self) -> Result<InodeGuard<'_, Exclusive>> {
        // SAFETY: The inode is alive; on success the lock is released by the guard.
        let ret = unsafe { lb::famfs_glue_inode_lock_killable(self.as_raw()) };
        if ret != 0 {
            return Err(EINTR);
        }
        // INVARIANT: Taken exclusively just above.
        Ok(InodeGuard::new(self))
    }

    /// Takes the inode lock shared (readers).
    pub(crate) fn lock_shared(&self) -> InodeGuard<'_, Shared> {
        // SAFETY: The inode is alive; released by the guard.
        unsafe { lb::famfs_glue_inode_lock_shared(self.as_raw()) };
        // INVARIANT: Taken shared just above.
        InodeGuard::new(self)
    }

    /// The inode number.
    pub(crate) fn ino(&self) -> u64 {
        // SAFETY: `i_ino` is set before the inode is published and never changes after.
        unsafe { (*self.as_raw()).i_ino as u64 }
    }

    /// Whether any mapping (VMA) of the file exists (`mapping_mapped`: its `i_mmap` tree is not
    /// empty). A snapshot: a mapping may come or go right after.
    pub(crate) fn mapping_mapped(&self) -> bool {
        // SAFETY: The mapping lives with the inode; the call only reads whether its tree is
        // empty.
        unsafe { lb::famfs_glue_mapping_mapped(self.mapping()) }
    }

    fn mapping(&self) -> *mut bindings::address_space {
        // SAFETY: `i_mapping` is set at creation and lives as long as the inode.
        unsafe { (*self.as_raw()).i_mapping }
    }

    /// Takes the mapping's invalidate lock exclusively (what truncate, hole punch and here
    /// removal and revoke take around unmapping).
    pub(crate) fn invalidate_lock(&self) -> InvalidateGuard<'_, Exclusive> {
        // SAFETY: The mapping lives with the inode; released by the guard.
        unsafe { lb::famfs_glue_invalidate_lock(self.mapping()) };
        // INVARIANT: Taken exclusively just above.
        InvalidateGuard::new(self)
    }

    /// Takes the mapping's invalidate lock shared (what page faults take).
    pub(crate) fn invalidate_lock_shared(&self) -> InvalidateGuard<'_, Shared> {
        // SAFETY: As above.
        unsafe { lb::famfs_glue_invalidate_lock_shared(self.mapping()) };
        // INVARIANT: Taken shared just above.
        InvalidateGuard::new(self)
    }

    /// Waits until no page of the file's DAX mapping is referenced any more (pins included),
    /// then drops its DAX entries (`dax_break_layout_final`). May sleep for as long as a pin
    /// is held.
    pub(crate) fn dax_break_layout_final(&self) {
        // SAFETY: The inode is alive; the call only sleeps on its pages.
        unsafe { lb::dax_break_layout_final(self.as_raw()) };
    }

    /// As [`Self::dax_break_layout_final`], but a signal ends the wait (`ERESTARTSYS`; the DAX
    /// entries then stay): for waits a process asked for, which a pin held by another process
    /// could make last for ever.
    pub(crate) fn dax_break_layout_interruptible(&self) -> Result {
        // SAFETY: The inode is alive; the call only sleeps on its pages.
        let ret = unsafe { lb::famfs_glue_dax_break_layout_interruptible(self.as_raw()) };
        kernel::error::to_result(ret)
    }

    /// The super block's active reference (`s_active`), unless it is being shut down.
    pub(crate) fn super_get_active(&self) -> Option<ActiveSuper> {
        // SAFETY: A live inode's super block is live.
        let sb = unsafe { (*self.as_raw()).i_sb };
        // SAFETY: `sb` is live (above).
        if unsafe { lb::famfs_glue_sb_get_active(sb) } {
            Some(ActiveSuper(sb))
        } else {
            None
        }
    }
}

/// The mode a guard holds its lock in: [`Exclusive`] or [`Shared`], two types, so that what
/// only the exclusive holder may do (e.g. [`InvalidateGuard::unmap_all`]) does not exist on a
/// shared guard (as `kernel::sync::lock::Guard` is typed by its backend).
pub(crate) trait LockMode: private::Sealed {
    /// Whether the lock is held shared.
    const SHARED: bool;
}

/// A lock held exclusively (writers).
pub(crate) struct Exclusive;
/// A lock held shared (readers).
pub(crate) struct Shared;

impl LockMode for Exclusive {
    const SHARED: bool = false;
}
impl LockMode for Shared {
    const SHARED: bool = true;
}

mod private {
    pub(crate) trait Sealed {}
    impl Sealed for super::Exclusive {}
    impl Sealed for super::Shared {}
}

/// The inode lock (`i_rwsem`), held in mode `M` until drop.
///
/// # Invariants
///
/// The lock of `inode` is held in mode `M` by this guard.
pub(crate) struct InodeGuard<'a, M: LockMode> {
    inode: &'a Inode,
    _mode: PhantomData<M>,
}

impl<'a, M: LockMode> InodeGuard<'a, M> {
    fn new(inode: &'a Inode) -> Self {
        Self {
            inode,
            _mode: PhantomData,
        }
    }
}

impl<M: LockMode> Drop for InodeGuard<'_, M> {
    fn drop(&mut self) {
        // SAFETY: Held in mode `M` (type invariant), released in the same mode.
        unsafe {
            if M::SHARED {
                lb::famfs_glue_inode_unlock_shared(self.inode.as_raw());
            } else {
                lb::famfs_glue_inode_unlock(self.inode.as_raw());
            }
        }
    }
}

/// The mapping's invalidate lock, held in mode `M` until drop.
///
/// # Invariants
///
/// The invalidate lock of `inode`'s mapping is held in mode `M` by this guard.
pub(crate) struct InvalidateGuard<'a, M: LockMode> {
    inode: &'a Inode,
    _mode: PhantomData<M>,
}

impl<'a, M: LockMode> InvalidateGuard<'a, M> {
    fn new(inode: &'a Inode) -> Self {
        Self {
            inode,
            _mode: PhantomData,
        }
    }
}

impl InvalidateGuard<'_, Exclusive> {
    /// Zaps every user mapping of the whole file, private copies included
    /// (`unmap_mapping_range(mapping, 0, 0, 1)`). Only under the exclusive lock: a shared
    /// guard has no such method.
    pub(crate) fn unmap_all(&self) {
        // SAFETY: The mapping lives with the inode; we hold its invalidate lock exclusively
        // (type invariant with `M = Exclusive`).
        unsafe { bindings::unmap_mapping_range(self.inode.mapping(), 0, 0, 1) };
    }
}

impl<M: LockMode> Drop for InvalidateGuard<'_, M> {
    fn drop(&mut self) {
        // SAFETY: Held in mode `M` (type invariant), released in the same mode.
        unsafe {
            if M::SHARED {
                lb::famfs_glue_invalidate_unlock_shared(self.inode.mapping());
            } else {
                lb::famfs_glue_invalidate_unlock(self.inode.mapping());
            }
        }
    }
}

/// An active reference to a super block (`s_active`), dropped with `deactivate_super`: never
/// under a lock the super block's shutdown may need (it can evict inodes).
pub(crate) struct ActiveSuper(*mut bindings::super_block);

impl Drop for ActiveSuper {
    fn drop(&mut self) {
        // SAFETY: The active reference taken by `Inode::super_get_active`.
        unsafe { bindings::deactivate_super(self.0) };
    }
}
