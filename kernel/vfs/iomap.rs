// SPDX-License-Identifier: GPL-2.0

//! iomap for DAX: the mapping a file system returns for a file range, and the `iomap_ops` the
//! fs-dax core calls back.
//!
//! C headers: [`include/linux/iomap.h`](srctree/include/linux/iomap.h)

use kernel::bindings;

use super::dax::DaxDevice;
use crate::local_bindings as lb;

/// A file range mapped to device memory: what a [`super::file::DaxFile::iomap_begin`] returns.
pub(crate) struct Mapped<'a> {
    /// The device holding the range.
    pub(crate) dax: &'a DaxDevice,
    /// Byte offset in the device of the range's start.
    pub(crate) addr: u64,
    /// Length of the range in bytes (from the asked position): never past the extent holding
    /// it.
    pub(crate) len: u64,
}

/// Fills the C `iomap` of the range starting at file offset `pos` as `IOMAP_MAPPED`.
///
/// # Safety
///
/// `iomap` is valid for writes for the duration of the call.
pub(super) unsafe fn fill(iomap: *mut lb::iomap, pos: bindings::loff_t, m: &Mapped<'_>) {
    // SAFETY: As the caller guarantees.
    unsafe {
        (*iomap).addr = m.addr;
        (*iomap).offset = pos;
        (*iomap).length = m.len;
        (*iomap).type_ = lb::IOMAP_MAPPED as u16;
        (*iomap).flags = 0;
        (*iomap).bdev = core::ptr::null_mut();
        (*iomap).dax_dev = m.dax.as_raw();
    }
}
