// SPDX-License-Identifier: GPL-2.0

//! Page faults: `struct vm_fault` and the results a fault handler returns.
//!
//! C headers: [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h)

use core::marker::PhantomData;

use kernel::bindings;

use super::Inode;
use crate::local_bindings as lb;

/// The result of a fault handler (`vm_fault_t`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FaultResult(bindings::vm_fault_t);

impl FaultResult {
    /// The access gets `SIGBUS` (`BUS_ADRERR`).
    pub(crate) const SIGBUS: Self = Self(bindings::vm_fault_reason_VM_FAULT_SIGBUS as _);
    /// The access gets `SIGBUS` with `BUS_MCEERR_AR` (poisoned memory).
    pub(crate) const HWPOISON: Self = Self(bindings::vm_fault_reason_VM_FAULT_HWPOISON as _);
    /// Retry at a smaller size.
    pub(crate) const FALLBACK: Self = Self(bindings::vm_fault_reason_VM_FAULT_FALLBACK as _);

    pub(crate) fn is_fallback(self) -> bool {
        self.0 & (bindings::vm_fault_reason_VM_FAULT_FALLBACK as bindings::vm_fault_t) != 0
    }

    /// A mapping was installed (DAX faults install the entry themselves).
    pub(crate) fn is_nopage(self) -> bool {
        self.0 & (bindings::vm_fault_reason_VM_FAULT_NOPAGE as bindings::vm_fault_t) != 0
    }

    pub(super) fn raw(self) -> bindings::vm_fault_t {
        self.0
    }

    pub(super) fn from_raw(v: bindings::vm_fault_t) -> Self {
        Self(v)
    }
}

/// The order of a PMD-sized (2 MiB on x86) fault.
pub(crate) fn pmd_order() -> u32 {
    // SAFETY: Returns a constant.
    unsafe { lb::famfs_glue_pmd_order() }
}

/// A page fault in progress in a mapping of a file of ours.
///
/// # Invariants
///
/// `vmf` is a live fault, for `'a`, in a vma whose file is alive.
pub(crate) struct Fault<'a> {
    vmf: *mut bindings::vm_fault,
    _p: PhantomData<&'a bindings::vm_fault>,
}

impl<'a> Fault<'a> {
    /// # Safety
    ///
    /// `vmf` is a live fault for `'a`.
    pub(super) unsafe fn from_raw(vmf: *mut bindings::vm_fault) -> Self {
        // INVARIANT: As the caller guarantees; a faulting vma holds its file.
        Self {
            vmf,
            _p: PhantomData,
        }
    }

    pub(super) fn as_raw(&self) -> *mut bindings::vm_fault {
        self.vmf
    }

    /// The faulting page's offset in the file, in pages.
    pub(crate) fn pgoff(&self) -> u64 {
        // SAFETY: `pgoff` is set by the fault core before calling us and not changed during the
        // call. (`__bindgen_anon_1` is `struct vm_fault`'s anonymous struct: only used here.)
        unsafe { (*self.vmf).__bindgen_anon_1.pgoff as u64 }
    }

    /// The inode of the faulting mapping's file.
    pub(crate) fn inode(&self) -> &'a Inode {
        // SAFETY: The vma and its file live for the fault (type invariant); for a backing file
        // (FUSE passthrough) `vm_file` is already our file. `f_inode` lives with the file.
        unsafe {
            let file = (*(*self.vmf).__bindgen_anon_1.vma).vm_file;
            Inode::from_raw((*file).f_inode)
        }
    }
}
