// SPDX-License-Identifier: GPL-2.0

//! The module's internal file system: one inode per famfs file, on a kernel-internal mount (see
//! [`crate::vfs::pseudo`] for the mount's lifetime). Files are reached only through descriptors
//! the module hands out, and FUSE passthrough's re-opens of them by path.
//!
//! C headers: none directly (`crate::vfs::pseudo`)

use kernel::fs::File;
use kernel::prelude::*;
use kernel::sync::aref::ARef;

use crate::file::FileData;
use crate::vfs::pseudo::{self, NewFile};

/// The registered `famfs_dax` file system type, for famfs files: pinned in the module object
/// (registered by its initialiser, unregistered when dropped).
pub(crate) type FsType = pseudo::FsRegistration<FileData>;

/// Makes a new DAX file holding `data` on the internal mount and returns it opened
/// (read-write, or read-only for read-only files), with its inode number. The inode is on its
/// devices' lists (for removal and revoke) before the file is published.
pub(crate) fn create_file(
    fs: &FsType,
    data: KBox<FileData>,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(ARef<File>, u64)> {
    let new = NewFile {
        mode,
        uid,
        gid,
        size: data.size(),
        read_only: data.read_only(),
    };
    fs.create_file(data, &new, |data, inode| {
        // SAFETY: `data` is owned by `inode` from now on (it stays at its address until the
        // inode is evicted), and eviction calls `FileData::evict`, which untracks it first.
        unsafe { data.track(inode) }
    })
}
