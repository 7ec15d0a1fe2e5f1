// SPDX-License-Identifier: GPL-2.0

//! famfs.ko's local abstraction layer over the VFS, the page-fault path, iomap and the dax core.
//!
//! Upstream has no Rust abstractions for VFS inodes, iomap or dax devices yet, so the raw FFI the
//! module needs lives here, and only here: the famfs logic (`file.rs`, `fs.rs`, `daxdev.rs`,
//! `control.rs`) is written against these types and contains no `bindings::`. The style follows
//! `rust/kernel/miscdevice.rs`: a `#[vtable]` trait ([`file::DaxFile`]) whose adapter builds the
//! C operation tables (`file_operations`, `vm_operations_struct`, `iomap_ops`,
//! `address_space_operations`, `inode_operations`, `super_operations`) as statics, each entry
//! converting its result with `from_result`; and typed wrappers for the C objects ([`Inode`],
//! [`dax::DaxDevice`], [`fault::Fault`], [`iomap::IomapOut`]).
//!
//! - [`inode`]: `struct inode` (refcounted: `ARef<Inode>` = `ihold`/`iput`), its locks, its
//!   mapping;
//! - [`file`]: the [`file::DaxFile`] vtable and its adapter (file, address-space, inode ops),
//!   kiocb and iov_iter;
//! - [`fault`]: `struct vm_fault`, fault results, the `vm_operations_struct`;
//! - [`iomap`]: `struct iomap`, `iomap_ops`, `dax_iomap_rw`, `dax_iomap_fault`;
//! - [`dax`]: `struct dax_device`: lookup by devt, the fs-dax holder role and its callbacks,
//!   direct access;
//! - [`pseudo`]: the internal pseudo file system: type, pinned mount, inode and file creation,
//!   eviction;
//! - [`workqueue`]: the module's own workqueue, drained at unload.
//!
//! Every `unsafe` block of the module that touches C is in this directory, with a `// SAFETY:`
//! comment; bindgen's anonymous-union field names (`__bindgen_anon_N`) are used in one place each.
//!
//! C headers: [`include/linux/capability.h`](srctree/include/linux/capability.h),
//! [`include/linux/module.h`](srctree/include/linux/module.h) (through `famfs_glue.c`); the
//! submodules name their own

pub(crate) mod dax;
pub(crate) mod fault;
pub(crate) mod file;
pub(crate) mod inode;
pub(crate) mod iomap;
pub(crate) mod pseudo;
pub(crate) mod workqueue;

pub(crate) use inode::Inode;

use kernel::bindings;

/// The page size, in bytes.
pub(crate) const PAGE_SIZE: u64 = bindings::PAGE_SIZE as u64;

/// Whether the current task has `CAP_SYS_ADMIN`.
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: `capable` only reads the current task's credentials.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) }
}

/// `O_CLOEXEC`, for descriptor reservations.
pub(crate) const O_CLOEXEC: u32 = bindings::O_CLOEXEC;

/// Takes a reference to this module; `false` when it is being unloaded.
pub(crate) fn module_get() -> bool {
    // SAFETY: Plain module reference counting on ourselves.
    unsafe { crate::local_bindings::famfs_glue_module_get() }
}

/// Drops a reference taken by [`module_get`].
pub(crate) fn module_put() {
    // SAFETY: Balances a successful `module_get`.
    unsafe { crate::local_bindings::famfs_glue_module_put() };
}
