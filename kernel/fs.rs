// SPDX-License-Identifier: GPL-2.0

//! The module's internal file system: one inode per famfs file, on a kernel-internal mount.
//!
//! The files must live on a real mount because FUSE passthrough re-opens a backing file by its
//! path for every FUSE open (`backing_file_open(&fb->file->f_path)`). The mount is never
//! visible in any namespace; files are reached only through descriptors the module hands out.

use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

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

/// A static the C side may write to (the fs type's list link, the pinned mount and its pin
/// count), shared across threads.
#[repr(transparent)]
struct CShared<T>(Opaque<T>);

// SAFETY: The wrapped C objects are only mutated by the VFS under its own locks
// (`file_systems_lock`, `pin_fs_lock`).
unsafe impl<T> Sync for CShared<T> {}

static FS_TYPE: CShared<bindings::file_system_type> =
    CShared(Opaque::new(bindings::file_system_type {
        name: c"famfs_dax".as_ptr().cast(),
        init_fs_context: Some(init_fs_context),
        kill_sb: Some(bindings::kill_anon_super),
        // Every super block of ours pins the module (`get_filesystem` in `sget_fc`, dropped by
        // `put_filesystem` after `kill_sb` returned): the module stays for as long as a file, a
        // mapping or an inode of ours can run its code, up to the end of the unmount.
        owner: kernel::module::this_module::<crate::FamfsModule>().as_ptr(),
        ..pin_init::zeroed()
    }));

/// The internal mount while any file made by the module is open (`simple_pin_fs`): the
/// mount, and a super block with it, exist only while there are files, so that an idle module
/// holds no mount, and can be unloaded.
static PIN_MNT: CShared<*mut bindings::vfsmount> = CShared(Opaque::new(ptr::null_mut()));
static PIN_COUNT: CShared<kernel::ffi::c_int> = CShared(Opaque::new(0));

/// `private_data` of the files `create_file` makes (each holds one mount pin); any other open
/// of our inodes (FUSE passthrough's re-open by path) has none.
static PINNED_FILE: u8 = 0;

fn pinned_file_marker() -> *mut kernel::ffi::c_void {
    ptr::from_ref(&PINNED_FILE).cast_mut().cast()
}

/// Takes one pin of the internal mount, making it if there is none; returns it.
fn pin_mount() -> Result<*mut bindings::vfsmount> {
    // SAFETY: `FS_TYPE` is registered for the module's life; `simple_pin_fs` serialises on
    // `pin_fs_lock` its uses of the two statics.
    kernel::error::to_result(unsafe {
        bindings::simple_pin_fs(FS_TYPE.0.get(), PIN_MNT.0.get(), PIN_COUNT.0.get())
    })?;
    // SAFETY: We hold a pin: the pointer is set and only changes once the count is zero.
    Ok(unsafe { *PIN_MNT.0.get() })
}

/// Drops one pin taken by [`pin_mount`]. Never the mount's last reference when a file or
/// inode of the mount is still in use by the caller (each file holds its own).
fn unpin_mount() {
    // SAFETY: Balances a successful `pin_mount`.
    unsafe { bindings::simple_release_fs(PIN_MNT.0.get(), PIN_COUNT.0.get()) };
}

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

/// Called when the last reference to one of our inodes goes (also the pseudo file system's
/// root, which has no file data, at unmount). The module is pinned meanwhile by the super
/// block (see `FS_TYPE.owner`).
unsafe extern "C" fn evict_inode(inode: *mut bindings::inode) {
    // SAFETY: The VFS passes a valid inode being evicted; nothing else uses it any more.
    unsafe {
        // First out of the devices' lists: removal handling must not reach an inode whose
        // mapping goes (it skips inodes being freed, and only looks under the list lock).
        let ours = file::untrack_evicted(inode);
        // DAX entries go through the dax core (waiting for any page still pinned), then the
        // mapping is empty for the generic truncate.
        ffi::dax_break_layout_final(inode);
        bindings::truncate_inode_pages_final(&mut (*inode).i_data);
        bindings::clear_inode(inode);
        file::drop_file_data(inode);
        if ours {
            stats::FILES.sub(1);
        }
    }
}

/// Called at the last close of a file: the files `create_file` made give back their pin of the
/// mount. The file still holds its own mount reference (dropped after its dentry, at the end
/// of `__fput`), so this never ends the mount.
pub(crate) unsafe extern "C" fn release(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS passes the file being released.
    if unsafe { (*file).private_data } == pinned_file_marker() {
        unpin_mount();
    }
    0
}

/// The registered file system type; unregistered on drop.
pub(crate) struct FsType(());

impl FsType {
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: `FS_TYPE` is a static, fully initialised file system type.
        kernel::error::to_result(unsafe { bindings::register_filesystem(FS_TYPE.0.get()) })?;
        Ok(Self(()))
    }
}

impl Drop for FsType {
    fn drop(&mut self) {
        // SAFETY: Registered in `register`. No super block of the type is left: each would pin
        // the module, which is being unloaded.
        unsafe { bindings::unregister_filesystem(FS_TYPE.0.get()) };
    }
}

/// Makes a new DAX file holding `data` on the internal mount and returns it opened
/// (read-write, or read-only for read-only files), with its inode number.
pub(crate) fn create_file(
    data: KBox<FileData>,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(ARef<File>, u64)> {
    // The file's pin; a second one for the call, so that dropping the inode on an error path
    // (which evicts it) never ends the mount from inside the eviction.
    let mnt = pin_mount()?;
    if let Err(e) = pin_mount() {
        unpin_mount();
        return Err(e);
    }
    let ret = create_pinned(mnt, data, mode, uid, gid);
    if ret.is_err() {
        unpin_mount();
    }
    unpin_mount();
    ret
}

/// [`create_file`] with the mount `mnt` pinned twice; on success one pin belongs to the file.
fn create_pinned(
    mnt: *mut bindings::vfsmount,
    data: KBox<FileData>,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(ARef<File>, u64)> {
    let read_only = data.read_only();
    let size = i64::try_from(data.size()).map_err(|_| EFBIG)?;
    // SAFETY: `mnt` is our pinned mount.
    let inode = unsafe { bindings::new_inode((*mnt).mnt_sb) };
    if inode.is_null() {
        return Err(ENOMEM);
    }
    let ino = NEXT_INO.fetch_add(1, Ordering::Relaxed);
    // INVARIANT: `i_private` owns `data` from here on; `evict_inode` untracks and frees it
    // (also when an error below drops the inode through `iput`).
    // The operation tables are statics that outlive every inode (each pins the module through
    // its super block). The data is boxed, so its links keep their addresses.
    // SAFETY: `inode` is new and ours alone until the file below publishes it.
    unsafe {
        (*inode).i_ino = ino as _;
        ffi::famfs_glue_inode_init(
            inode,
            (bindings::S_IFREG | (mode & 0o7777)) as u16,
            uid,
            gid,
            size,
        );
        (*inode).i_op = &file::INODE_OPS;
        (*inode).__bindgen_anon_3.i_fop = &file::FILE_OPS.0;
        (*inode).i_data.a_ops = &file::ADDRESS_SPACE_OPS;
        let data = KBox::into_raw(data);
        (*inode).i_private = data.cast();
        (*data).track(inode);
    }
    stats::FILES.add(1);
    let flags = if read_only {
        bindings::O_RDONLY
    } else {
        bindings::O_RDWR
    };
    // The file's last fput drops a module reference for `FILE_OPS.owner`.
    // SAFETY: Plain module reference counting on ourselves.
    if !unsafe { ffi::famfs_glue_module_get() } {
        // SAFETY: The inode reference is still ours; dropping it evicts it and frees the data.
        unsafe { bindings::iput(inode) };
        return Err(ENODEV);
    }
    // SAFETY: `inode` and `mnt` are valid; on success the new file owns the inode reference
    // and the module reference.
    let raw = unsafe {
        bindings::alloc_file_pseudo(
            inode,
            mnt,
            c"famfs".as_ptr().cast(),
            flags as i32,
            &file::FILE_OPS.0,
        )
    };
    match kernel::error::from_err_ptr(raw) {
        Ok(raw) => {
            // SAFETY: The file is new and not yet visible to anyone else; its release gives
            // back the pin the caller took for it.
            unsafe {
                ffi::famfs_glue_file_set_seekable(raw);
                (*raw).private_data = pinned_file_marker();
            }
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

/// Inode numbers: never reused while the module is loaded (64 bits do not wrap).
static NEXT_INO: AtomicU64 = AtomicU64::new(1);
