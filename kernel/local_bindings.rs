// SPDX-License-Identifier: GPL-2.0

//! The module's own raw bindings, beside the kernel crate's `kernel::bindings`: `linux/dax.h`,
//! `linux/iomap.h`, `linux/pseudo_fs.h` and the `famfs_glue_*` wrappers of `famfs_glue.c`,
//! generated at build time from `bindings/famfs_ffi.h` (see Kbuild). (Not to be confused with
//! `kernel::ffi`, the C scalar types.) Used only by the abstraction layer, `crate::vfs`, which
//! imports it as `lb`.
//!
//! Only the items the module uses are generated; every other type they mention (inode, file,
//! vm_fault, ...) is the kernel crate's own, so values pass between the two without casts.
//!
//! C headers: [`include/linux/dax.h`](srctree/include/linux/dax.h),
//! [`include/linux/iomap.h`](srctree/include/linux/iomap.h),
//! [`include/linux/pseudo_fs.h`](srctree/include/linux/pseudo_fs.h)

#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    unreachable_pub,
    clippy::all,
    unsafe_op_in_unsafe_fn,
    improper_ctypes
)]

use kernel::bindings::*;

include!("famfs_ffi_generated.rs");
