// SPDX-License-Identifier: GPL-2.0

//! Raw bindings for `linux/dax.h` and `linux/iomap.h`, generated at build time (see Kbuild).
//!
//! Only the items the module uses are generated; every other type they mention (inode, file,
//! vm_fault, ...) is the kernel crate's own, so values pass between the two without casts.

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
