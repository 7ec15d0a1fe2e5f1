// SPDX-License-Identifier: GPL-2.0

//! The module's internal file system: one inode per famfs file, on a kernel-internal mount.
//!
//! The files must live on a real mount because FUSE passthrough re-opens a backing file by its
//! path for every FUSE open (`backing_file_open(&fb->file->f_path)`). The mount is never
//! visible in any namespace; files are reached only through descriptors the module hands out.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::bindings;
use kernel::fs::File;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::types::Opaque;

use crate::ffi;
use crate::file::{self, FileData};
use crate::stats;

/// `statfs(2)` magic of the internal mount ("famf").
const FAMFS_MAGIC: kernel::ffi::c_ulong = 0x6661_6d66;

/// A static the C side may write to (the fs type's list link), shared across threads.
#[repr(transparent)]
struct CShared<T>(Opaque<T>);

// SAFETY: The wrapped C objects are only mutated by the VFS under its own locks.
unsafe impl<T> Sync for CShared<T> {}

static FS_TYPE: CShared<bindings::file_system_type> = CShared(Opaque::new(bindings::file_system_type {
    name: c"famfs_dax".as_ptr().cast(),
    init_fs_context: Some(init_fs_context),
    kill_sb: Some(bindings::kill_anon_super),
    // No owner: the module's own internal mount must not pin the module. Unload is still safe:
    // every open file pins the module through its file_operations' owner.
    owner: ptr::null_mut(),
    ..pin_init::zeroed()
}));

static SUPER_OPS: bindings::super_operations = bindings::super_operations {
    statfs: Some(bindings::simple_statfs),
    drop_inode: Some(bindings::inode_just_drop),
    evict_inode: Some(evict_inode),
    ..pin_init::zeroed()
};

/// Called by the VFS when the internal mount is made.
unsafe extern "C" fn init_fs_context(fc: *mut bindings::fs_context) -> kernel::ffi::c_int {
    // SAFETY: `fc` is the fresh context the VFS is setting up for our type.
    let ctx = unsafe { ffi::init_pseudo(fc, FAMFS_MAGIC) };
    if ctx.is_null() {
        return ENOMEM.to_errno();
    }
    // SAFETY: `ctx` is the pseudo context just allocated for `fc`; `SUPER_OPS` is static.
    unsafe { (*ctx).ops = &SUPER_OPS };
    0
}

/// Called when the last reference to one of our inodes goes.
unsafe extern "C" fn evict_inode(inode: *mut bindings::inode) {
    // SAFETY: The VFS passes a valid inode being evicted; nothing else uses it any more.
    unsafe {
        // DAX entries go through the dax core (waiting for any page still pinned), then the
        // mapping is empty for the generic truncate. The data goes last: it keeps the devices
        // (and the inode's place in their removal lists) until the mapping is empty.
        ffi::dax_break_layout_final(inode);
        bindings::truncate_inode_pages_final(&mut (*inode).i_data);
        bindings::clear_inode(inode);
        file::drop_file_data(inode);
    }
    stats::FILES.sub(1);
}

/// The internal mount while the module is loaded (set by `InternalMount::new`, cleared by its
/// drop), for the control device's ioctls.
static MOUNT: AtomicPtr<bindings::vfsmount> = AtomicPtr::new(ptr::null_mut());

/// The registered file system type and its internal mount; both undone on drop.
///
/// # Invariants
///
/// `mnt` is the internal mount of `FS_TYPE`, which is registered.
pub(crate) struct InternalMount {
    mnt: *mut bindings::vfsmount,
}

/// Makes a new DAX file on the internal mount (see [`InternalMount::create_file`]).
pub(crate) fn create_file(data: KBox<FileData>, mode: u32, uid: u32, gid: u32) -> Result<(ARef<File>, u64)> {
    let mnt = MOUNT.load(Ordering::Acquire);
    if mnt.is_null() {
        return Err(ENODEV);
    }
    // The mount outlives every caller: callers hold an open control file, which pins the module.
    InternalMount { mnt }.create_file_and_forget(data, mode, uid, gid)
}

// SAFETY: The mount pointer is only used to create files (which the VFS synchronises) and to
// unmount once.
unsafe impl Send for InternalMount {}
// SAFETY: See above.
unsafe impl Sync for InternalMount {}

impl InternalMount {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: `FS_TYPE` is a static, fully initialised file system type.
        kernel::error::to_result(unsafe { bindings::register_filesystem(FS_TYPE.0.get()) })?;
        // SAFETY: The type was just registered.
        let mnt = unsafe { bindings::kern_mount(FS_TYPE.0.get()) };
        match kernel::error::from_err_ptr(mnt) {
            // INVARIANT: registered and mounted.
            Ok(mnt) => {
                MOUNT.store(mnt, Ordering::Release);
                Ok(Self { mnt })
            }
            Err(e) => {
                // SAFETY: Registered above, nothing mounted.
                unsafe { bindings::unregister_filesystem(FS_TYPE.0.get()) };
                Err(e)
            }
        }
    }

    /// Runs `create_file` on a borrowed handle without unmounting at the end.
    fn create_file_and_forget(self, data: KBox<FileData>, mode: u32, uid: u32, gid: u32) -> Result<(ARef<File>, u64)> {
        let this = core::mem::ManuallyDrop::new(self);
        this.create_file(data, mode, uid, gid)
    }

    /// Makes a new DAX file holding `data` and returns it opened (read-write, or read-only
    /// for read-only files).
    fn create_file(
        &self,
        data: KBox<FileData>,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(ARef<File>, u64)> {
        let read_only = data.read_only();
        let size = i64::try_from(data.size()).map_err(|_| EFBIG)?;
        // SAFETY: By the type invariant `mnt` is our live mount.
        let inode = unsafe { bindings::new_inode((*self.mnt).mnt_sb) };
        if inode.is_null() {
            return Err(ENOMEM);
        }
        stats::FILES.add(1);
        if let Err(e) = data.track(inode) {
            // SAFETY: Our new inode, no data attached yet: dropping it just frees it.
            unsafe { bindings::iput(inode) };
            return Err(e);
        }
        // INVARIANT: `i_private` owns `data` from here on; `evict_inode` frees it (also when
        // an error below drops the inode through `iput`).
        // SAFETY: `inode` is new and ours alone until the file below publishes it; the
        // operation tables are statics that outlive every inode.
        let ino = unsafe {
            let ino = bindings::get_next_ino();
            (*inode).i_ino = ino.into();
            ffi::famfs_glue_inode_init(inode, (bindings::S_IFREG | (mode & 0o7777)) as u16, uid, gid, size);
            (*inode).i_op = &file::INODE_OPS;
            (*inode).__bindgen_anon_3.i_fop = &file::FILE_OPS.0;
            (*inode).i_data.a_ops = &file::ADDRESS_SPACE_OPS;
            (*inode).i_private = KBox::into_raw(data).cast();
            u64::from(ino)
        };
        let flags = if read_only { bindings::O_RDONLY } else { bindings::O_RDWR };
        // The file's last fput drops a module reference for `FILE_OPS.owner`.
        // SAFETY: Plain module reference counting on ourselves.
        if !unsafe { ffi::famfs_glue_module_get() } {
            // SAFETY: The inode reference is still ours; dropping it frees the data.
            unsafe { bindings::iput(inode) };
            return Err(ENODEV);
        }
        // SAFETY: `inode` and `mnt` are valid; on success the new file owns the inode reference
        // and the module reference.
        let raw = unsafe {
            bindings::alloc_file_pseudo(inode, self.mnt, c"famfs".as_ptr().cast(), flags as i32, &file::FILE_OPS.0)
        };
        match kernel::error::from_err_ptr(raw) {
            Ok(raw) => {
                // SAFETY: The file is new and not yet visible to anyone else.
                unsafe { ffi::famfs_glue_file_set_seekable(raw) };
                // SAFETY: `alloc_file_pseudo` returned a file with one reference, now ours.
                let file = unsafe { ARef::from_raw(ptr::NonNull::new_unchecked(raw.cast::<File>())) };
                Ok((file, ino))
            }
            Err(e) => {
                // SAFETY: The inode and module references are still ours on failure; dropping
                // the inode evicts it and frees its data.
                unsafe {
                    bindings::iput(inode);
                    ffi::famfs_glue_module_put();
                }
                Err(e)
            }
        }
    }
}

impl Drop for InternalMount {
    fn drop(&mut self) {
        MOUNT.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: By the type invariant the mount is live and the type registered; no file
        // remains (each would pin the module, and we are being unloaded).
        unsafe {
            bindings::kern_unmount(self.mnt);
            bindings::unregister_filesystem(FS_TYPE.0.get());
        }
    }
}
