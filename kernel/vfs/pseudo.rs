// SPDX-License-Identifier: GPL-2.0

//! The module's internal pseudo file system: a `file_system_type` whose super block exists
//! only while files of it exist (`simple_pin_fs`), DAX inodes owning a file system's per-file
//! data, and the files handed out for them.
//!
//! The files must live on a real mount because FUSE passthrough re-opens a backing file by its
//! path for every FUSE open (`backing_file_open(&fb->file->f_path)`). The mount is never
//! visible in any namespace.
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/pseudo_fs.h`](srctree/include/linux/pseudo_fs.h),
//! [`include/linux/mount.h`](srctree/include/linux/mount.h)

use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use kernel::bindings;
use kernel::fs::File;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::types::Opaque;

use super::file::{data, DaxFile, DaxFileVTable};
use crate::local_bindings as lb;

/// `statfs(2)` magic of the internal mount ("famf").
const MAGIC: kernel::ffi::c_ulong = 0x6661_6d66;

/// `private_data` of the files [`create_file`] makes (each holds one mount pin); any other open
/// of our inodes (FUSE passthrough's re-open by path) has none.
static PINNED_FILE: u8 = 0;

fn pinned_file_marker() -> *mut kernel::ffi::c_void {
    ptr::from_ref(&PINNED_FILE).cast_mut().cast()
}

/// Inode numbers: never reused while the module is loaded (64 bits do not wrap).
static NEXT_INO: AtomicU64 = AtomicU64::new(1);

struct SuperVTable<T: DaxFile>(PhantomData<T>);

impl<T: DaxFile> SuperVTable<T> {
    const SUPER_OPS: bindings::super_operations = bindings::super_operations {
        statfs: Some(bindings::simple_statfs),
        drop_inode: Some(bindings::inode_just_drop),
        evict_inode: Some(Self::evict_inode),
        ..pin_init::zeroed()
    };

    /// `file_system_type.init_fs_context`: called by the VFS when the internal mount is made.
    ///
    /// # Safety
    ///
    /// Called by the VFS only (through the registered type): `fc` is a fresh context for our
    /// type, valid for the call.
    unsafe extern "C" fn init_fs_context(fc: *mut bindings::fs_context) -> kernel::ffi::c_int {
        // SAFETY: `fc` is the fresh context the VFS is setting up for our type.
        let ctx = unsafe { lb::init_pseudo(fc, MAGIC) };
        if ctx.is_null() {
            return ENOMEM.to_errno();
        }
        // SAFETY: `ctx` is the pseudo context just allocated for `fc`; the table is static.
        unsafe { (*ctx).ops = &Self::SUPER_OPS };
        0
    }

    /// Called when the last reference to one of our inodes goes (also the pseudo file system's
    /// root, which has no data, at unmount). The module is pinned meanwhile by the super block
    /// (the type's `owner`).
    ///
    /// # Safety
    ///
    /// Called by the VFS only (`super_operations.evict_inode`): `inode` is an inode of our super
    /// block being evicted, used by nothing else any more; its `i_private` is null (the root)
    /// or owns a `T` (every inode [`create_file`] made).
    unsafe extern "C" fn evict_inode(inode: *mut bindings::inode) {
        // SAFETY: The VFS passes a valid inode being evicted; nothing else uses it any more.
        let private = unsafe { (*inode).i_private };
        if !private.is_null() {
            // First the file system's own teardown (out of any list that can reach the inode),
            // with the data still in place.
            // SAFETY: Our inodes own a `T` in `i_private` until below.
            unsafe { data::<T>(inode) }.evict();
        }
        // DAX entries go through the dax core (waiting for any page still pinned), then the
        // mapping is empty for the generic truncate.
        // SAFETY: As above: the inode is being evicted by us alone.
        unsafe {
            lb::dax_break_layout_final(inode);
            bindings::truncate_inode_pages_final(&mut (*inode).i_data);
            bindings::clear_inode(inode);
            (*inode).i_private = ptr::null_mut();
        }
        if !private.is_null() {
            // SAFETY: `i_private` came from `KBox::into_raw` in `create_file`, and nothing
            // reaches it any more (cleared above, and the inode is cleared).
            drop(unsafe { KBox::from_raw(private.cast::<T>()) });
        }
    }
}

/// The `famfs_dax` file system type for files whose data is `T`, registered in place, with the
/// pin state of its internal mount (`simple_pin_fs`): an object pinned in the module object (as
/// `MiscDeviceRegistration`), registered by its initialiser and unregistered when dropped.
///
/// # Invariants
///
/// Once initialised, `fs_type` is a registered file system type made for `T`, until the drop;
/// `mnt` and `count` are the `simple_pin_fs` state of its internal mount.
#[pin_data(PinnedDrop)]
pub(crate) struct FsRegistration<T: DaxFile> {
    /// The internal mount while any file made by [`Self::create_file`] is open.
    #[pin]
    mnt: Opaque<*mut bindings::vfsmount>,
    /// Its pin count.
    #[pin]
    count: Opaque<kernel::ffi::c_int>,
    /// Registered last: the registration is only ever dropped whole.
    #[pin]
    fs_type: Opaque<bindings::file_system_type>,
    _t: PhantomData<T>,
}

// SAFETY: The C objects are only changed by the VFS under its own locks (`file_systems_lock`,
// `pin_fs_lock`), and by the initialiser before the type is published.
unsafe impl<T: DaxFile> Sync for FsRegistration<T> {}
// SAFETY: As above; unregistering may happen on any thread.
unsafe impl<T: DaxFile> Send for FsRegistration<T> {}

impl<T: DaxFile> FsRegistration<T> {
    /// Registers the type in place. Once per module load.
    pub(crate) fn register() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            mnt: Opaque::new(ptr::null_mut()),
            count: Opaque::new(0),
            fs_type <- Opaque::try_ffi_init(move |slot: *mut bindings::file_system_type| {
                let fs = bindings::file_system_type {
                    name: c"famfs_dax".as_ptr().cast(),
                    init_fs_context: Some(SuperVTable::<T>::init_fs_context),
                    kill_sb: Some(bindings::kill_anon_super),
                    // Every super block pins the module (`get_filesystem` in `sget_fc`, dropped
                    // by `put_filesystem` after `kill_sb` returned): the module stays for as
                    // long as a file, a mapping or an inode of ours can run its code, up to the
                    // end of unmount.
                    owner: kernel::module::this_module::<T::OwnerModule>().as_ptr(),
                    ..pin_init::zeroed()
                };
                // INVARIANT: Registered here, for `T`.
                // SAFETY: `slot` is ours to write and pinned: it stays where it is until the
                // registration is dropped, which unregisters it first.
                unsafe {
                    slot.write(fs);
                    kernel::error::to_result(bindings::register_filesystem(slot))
                }
            }),
            _t: PhantomData,
        })
    }

    /// The registration whose type `sb` is of.
    ///
    /// # Safety
    ///
    /// `sb` is a live super block of a type registered by a `FsRegistration<T>`.
    unsafe fn of_super<'a>(sb: *const bindings::super_block) -> &'a Self {
        // SAFETY: As the caller guarantees, `s_type` is the `fs_type` field of a live
        // registration (`Opaque` is transparent), which outlives its super blocks.
        unsafe {
            let field = (*sb).s_type.cast::<Opaque<bindings::file_system_type>>();
            &*kernel::container_of!(field, Self, fs_type)
        }
    }

    /// Takes one pin of the internal mount, making it if there is none; returns it.
    fn pin_mount(&self) -> Result<*mut bindings::vfsmount> {
        // SAFETY: The type is registered (type invariant); `simple_pin_fs` serialises on
        // `pin_fs_lock` its uses of `mnt` and `count`.
        let ret = unsafe {
            bindings::simple_pin_fs(self.fs_type.get(), self.mnt.get(), self.count.get())
        };
        kernel::error::to_result(ret)?;
        // SAFETY: We hold a pin: the pointer is set and only changes once the count is zero.
        Ok(unsafe { *self.mnt.get() })
    }

    /// Drops one pin taken by [`Self::pin_mount`]. Never the mount's last reference when a
    /// file or inode of the mount is still in use by the caller (each file holds its own).
    fn unpin_mount(&self) {
        // SAFETY: Balances a successful `pin_mount`.
        unsafe { bindings::simple_release_fs(self.mnt.get(), self.count.get()) };
    }
}

#[pinned_drop]
impl<T: DaxFile> PinnedDrop for FsRegistration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Registered (type invariant). No super block of the type is left: each would
        // pin the module, which is being unloaded.
        unsafe { bindings::unregister_filesystem(self.fs_type.get()) };
    }
}

/// `release` of our files: the files [`FsRegistration::create_file`] made give back their pin
/// of the mount. The file still holds its own mount reference (dropped after its dentry, at the
/// end of `__fput`), so this never ends the mount.
///
/// # Safety
///
/// Called by the VFS only (`file_operations.release` of `T`'s files): `inode` and `file` are
/// one of those files being released and its inode, valid for the call.
pub(super) unsafe extern "C" fn release<T: DaxFile>(
    inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS passes the file being released and its live inode, whose super block is
    // of our registered type.
    unsafe {
        if (*file).private_data == pinned_file_marker() {
            FsRegistration::<T>::of_super((*inode).i_sb).unpin_mount();
        }
    }
    0
}

/// What a new file looks like.
pub(crate) struct NewFile {
    /// Permission bits (`& 0o7777`).
    pub(crate) mode: u32,
    /// Owner and group in the initial user namespace.
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Fixed size in bytes.
    pub(crate) size: u64,
    /// Opened read-only (else read-write).
    pub(crate) read_only: bool,
}

impl<T: DaxFile> FsRegistration<T> {
    /// Makes a new DAX inode owning `data` on the internal mount and returns a file open on
    /// it, with the inode number. `track` runs on the data once it is in place, before the
    /// file is published (so that the data may register the inode where others find it; the
    /// data's [`DaxFile::evict`] undoes that, also when an error below drops the inode).
    pub(crate) fn create_file(
        &self,
        data: KBox<T>,
        new: &NewFile,
        track: impl FnOnce(&T, &super::Inode),
    ) -> Result<(ARef<File>, u64)> {
        // The file's pin; a second one for the call, so that dropping the inode on an error
        // path (which evicts it) never ends the mount from inside the eviction.
        let mnt = self.pin_mount()?;
        if let Err(e) = self.pin_mount() {
            self.unpin_mount();
            return Err(e);
        }
        let ret = create_pinned(mnt, data, new, track);
        if ret.is_err() {
            self.unpin_mount();
        }
        self.unpin_mount();
        ret
    }
}

/// [`create_file`] with the mount `mnt` pinned twice; on success one pin belongs to the file.
fn create_pinned<T: DaxFile>(
    mnt: *mut bindings::vfsmount,
    data: KBox<T>,
    new: &NewFile,
    track: impl FnOnce(&T, &super::Inode),
) -> Result<(ARef<File>, u64)> {
    let size = i64::try_from(new.size).map_err(|_| EFBIG)?;
    // SAFETY: `mnt` is our pinned mount.
    let inode = unsafe { bindings::new_inode((*mnt).mnt_sb) };
    if inode.is_null() {
        return Err(ENOMEM);
    }
    let ino = NEXT_INO.fetch_add(1, Ordering::Relaxed);
    // INVARIANT: `i_private` owns `data` from here on; `evict_inode` frees it (also when an
    // error below drops the inode through `iput`). The operation tables are statics that
    // outlive every inode (each pins the module through its super block).
    // SAFETY: `inode` is new and ours alone until the file below publishes it.
    unsafe {
        (*inode).i_ino = ino as _;
        lb::famfs_glue_inode_init(
            inode,
            (bindings::S_IFREG | (new.mode & 0o7777)) as u16,
            new.uid,
            new.gid,
            size,
        );
        (*inode).i_op = &DaxFileVTable::<T>::INODE_OPS;
        // `i_fop` is in an anonymous union of `struct inode`: only used here.
        (*inode).__bindgen_anon_3.i_fop = &DaxFileVTable::<T>::FILE_OPS;
        (*inode).i_data.a_ops = &DaxFileVTable::<T>::ADDRESS_SPACE_OPS;
        let data = KBox::into_raw(data);
        (*inode).i_private = data.cast();
        track(&*data, super::Inode::from_raw(inode));
    }
    let flags = if new.read_only {
        bindings::O_RDONLY
    } else {
        bindings::O_RDWR
    };
    // The file's last fput drops a module reference for `FILE_OPS.owner`.
    if !super::module_get() {
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
            &DaxFileVTable::<T>::FILE_OPS,
        )
    };
    match kernel::error::from_err_ptr(raw) {
        Ok(raw) => {
            // SAFETY: The file is new and not yet visible to anyone else; its release gives
            // back the pin the caller took for it.
            unsafe {
                lb::famfs_glue_file_set_seekable(raw);
                (*raw).private_data = pinned_file_marker();
            }
            // SAFETY: `alloc_file_pseudo` returned a file with one reference, now ours.
            let file = unsafe { ARef::from_raw(ptr::NonNull::new_unchecked(raw.cast::<File>())) };
            Ok((file, ino))
        }
        Err(e) => {
            // SAFETY: The inode reference is still ours on failure; dropping the inode evicts
            // it and frees its data.
            unsafe { bindings::iput(inode) };
            super::module_put();
            Err(e)
        }
    }
}
