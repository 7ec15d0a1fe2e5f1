// SPDX-License-Identifier: GPL-2.0

//! The [`DaxFile`] vtable: what a DAX file system implements for its regular files, and the
//! adapter that builds the C operation tables from it.
//!
//! `Self` is the per-inode data a file system keeps for each file (owned by the inode, see
//! [`super::pseudo`]); every operation gets it by reference. The adapter does the generic parts
//! in the C way: `generic_file_llseek`, `thp_get_unmapped_area` (2 MiB-aligned mappings),
//! `copy_splice_read`/`iter_file_splice_write`, `file_accessed`, `VM_HUGEPAGE` on mappings,
//! `noop_dirty_folio`, and `setattr` refusing any size change (these files never change size).
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/dax.h`](srctree/include/linux/dax.h),
//! [`include/linux/iomap.h`](srctree/include/linux/iomap.h),
//! [`include/linux/uio.h`](srctree/include/linux/uio.h),
//! [`include/linux/mm.h`](srctree/include/linux/mm.h)

use core::marker::PhantomData;

use kernel::bindings;
use kernel::error::from_result;
use kernel::fs::Kiocb;
use kernel::iov::{IovIterDest, IovIterSource};
use kernel::mm::virt::VmaNew;
use kernel::prelude::*;

use super::dax::DaxDevice;
use super::fault::{Fault, FaultResult};
use super::iomap::{self, Mapped};
use super::Inode;
use crate::local_bindings as lb;

/// The operations of a DAX file system's regular files.
#[vtable]
pub(crate) trait DaxFile: Sized + Send + Sync + 'static {
    /// Every open of the inode, including re-opens by path (FUSE passthrough); `writable` when
    /// opened for writing.
    fn open(&self, writable: bool) -> Result;

    /// `read(2)` and friends: typically [`DaxIo::dax_rw`] under the inode lock (shared), then
    /// [`DaxIo::accessed`].
    fn read_iter(&self, io: &mut DaxRead<'_>) -> Result<usize>;

    /// `write(2)` and friends: typically [`DaxIo::write_checks`] then [`DaxIo::dax_rw`], under
    /// the inode lock (exclusive).
    fn write_iter(&self, io: &mut DaxWrite<'_>) -> Result<usize>;

    /// A new mapping of the file; the adapter then marks it `VM_HUGEPAGE` and installs the
    /// fault handlers.
    fn mmap(&self, vma: &VmaNew) -> Result;

    /// A fault of `order` (0 = one page; [`super::fault::pmd_order`] for 2 MiB; larger for a PUD
    /// fault, which a file system whose extents are 2 MiB aligned answers with
    /// [`FaultResult::FALLBACK`]): typically [`Fault::dax_fault`] under the mapping's invalidate
    /// lock (shared).
    fn fault(&self, fault: &Fault<'_>, order: u32) -> FaultResult;

    /// The device range holding file offset `pos`, at most `len` bytes long.
    fn iomap_begin(&self, pos: u64, len: u64) -> Result<Mapped<'_>>;

    /// The device whose caches `fsync`/`msync` and writeback flush the file's dirty entries
    /// through (`None`: nothing to flush), or the errno they fail with.
    fn writeback_device(&self) -> Result<Option<&DaxDevice>>;

    /// A file ioctl, on the file's inode.
    fn ioctl(&self, _inode: &Inode, _cmd: u32, _arg: usize) -> Result<isize> {
        build_error!(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// Start of the inode's eviction: the data is dropped right after the DAX entries are gone.
    fn evict(&self);
}

/// The iterator of a read ([`IovIterDest`]) or of a write ([`IovIterSource`]), as [`DaxIo`]
/// uses it.
pub(crate) trait IoIter {
    /// Bytes left in the iterator.
    fn count(&self) -> usize;

    /// The `struct iov_iter`, for the C calls that take one.
    fn as_raw(&mut self) -> *mut bindings::iov_iter;
}

impl IoIter for IovIterDest<'_> {
    fn count(&self) -> usize {
        self.len()
    }

    fn as_raw(&mut self) -> *mut bindings::iov_iter {
        IovIterDest::as_raw(self)
    }
}

impl IoIter for IovIterSource<'_> {
    fn count(&self) -> usize {
        self.len()
    }

    fn as_raw(&mut self) -> *mut bindings::iov_iter {
        IovIterSource::as_raw(self)
    }
}

/// One read or write call: its kiocb and iterator (`I`: [`IovIterDest`] for a read,
/// [`IovIterSource`] for a write).
///
/// The kiocb's private-data type is `()`: the file's `private_data` is not ours to interpret
/// here (see [`super::pseudo`]), and the file system's data is the inode's.
///
/// # Invariants
///
/// `kiocb` and `iter` are the live arguments of a `read_iter`/`write_iter` call on one of our
/// files, for `'a`; `inode` is that file's inode.
pub(crate) struct DaxIo<'a, I> {
    kiocb: Kiocb<'a, ()>,
    iter: &'a mut I,
    ops: &'static lb::iomap_ops,
    inode: &'a Inode,
}

/// A `read_iter` call.
pub(crate) type DaxRead<'a> = DaxIo<'a, IovIterDest<'a>>;

/// A `write_iter` call.
pub(crate) type DaxWrite<'a> = DaxIo<'a, IovIterSource<'a>>;

impl<'a, I: IoIter> DaxIo<'a, I> {
    /// The file's inode.
    pub(crate) fn inode(&self) -> &'a Inode {
        self.inode
    }

    /// The file of the call (the kernel crate's `Kiocb` gives only its private data).
    fn file(&self) -> *mut bindings::file {
        // SAFETY: A live kiocb (type invariant), whose file is set for the whole call.
        unsafe { (*self.kiocb.as_raw()).ki_filp }
    }

    /// Reads or writes (as the call is) the part of the iterator that lies before byte
    /// `limit` of the file, through the fs-dax core and this file system's `iomap_begin`.
    /// `None` when nothing does (the position is at or past `limit`, or the iterator is empty).
    pub(crate) fn dax_rw(&mut self, limit: u64) -> Option<Result<usize>> {
        let pos = u64::try_from(self.kiocb.ki_pos()).unwrap_or(u64::MAX);
        let room = limit.saturating_sub(pos);
        let count = self.iter.count() as u64;
        if room == 0 || count == 0 {
            return None;
        }
        let cut = count.saturating_sub(room);
        let iter = self.iter.as_raw();
        if cut > 0 {
            // SAFETY: A live iterator (type invariant), shortened to `room` (< its count) for
            // the call below.
            unsafe { lb::famfs_glue_iov_iter_truncate(iter, room) };
        }
        // SAFETY: A live kiocb and iterator of one of our files (type invariant) under its
        // inode lock (caller); the operations table is static.
        let ret = unsafe { lb::dax_iomap_rw(self.kiocb.as_raw(), iter, self.ops) };
        if cut > 0 {
            let left = self.iter.count() + cut as usize;
            // SAFETY: A live iterator (type invariant); gives back the `cut` bytes hidden above.
            unsafe { lb::famfs_glue_iov_iter_reexpand(self.iter.as_raw(), left) };
        }
        Some(if ret < 0 {
            Err(Error::from_errno(ret as i32))
        } else {
            Ok(ret as usize)
        })
    }
}

impl DaxWrite<'_> {
    /// The usual checks of a write (`generic_write_checks`: limits, `O_APPEND`), then what
    /// every file system writing in place does: setuid/setgid bits go, times move. Returns how
    /// many bytes may be written (0: nothing to do). Under the inode lock.
    pub(crate) fn write_checks(&mut self) -> Result<usize> {
        let iter = self.iter.as_raw();
        // SAFETY: A live kiocb and iterator of our file (type invariant), under the inode lock
        // (caller).
        let n = unsafe { bindings::generic_write_checks(self.kiocb.as_raw(), iter) };
        if n <= 0 {
            return kernel::error::to_result(n as i32).map(|()| 0);
        }
        let file = self.file();
        // SAFETY: A live file being written (type invariant), under its inode lock.
        kernel::error::to_result(unsafe { bindings::file_remove_privs(file) })?;
        // SAFETY: As above.
        kernel::error::to_result(unsafe { bindings::file_update_time(file) })?;
        Ok(n as usize)
    }
}

impl DaxRead<'_> {
    /// Marks the file accessed (atime), as after a read.
    pub(crate) fn accessed(&self) {
        // SAFETY: A live file (type invariant).
        unsafe { lb::famfs_glue_file_accessed(self.file()) };
    }
}

impl Fault<'_> {
    /// Serves the fault from device memory at `order` (`dax_iomap_fault`, with `T`'s
    /// `iomap_begin`).
    pub(crate) fn dax_fault<T: DaxFile>(&self, order: u32) -> FaultResult {
        let mut pfn: kernel::ffi::c_ulong = 0;
        // SAFETY: A live fault of a mapping of one of `T`'s files.
        let ret = unsafe {
            lb::dax_iomap_fault(
                self.as_raw(),
                order,
                &mut pfn,
                core::ptr::null_mut(),
                &DaxFileVTable::<T>::IOMAP_OPS,
            )
        };
        FaultResult::from_raw(ret)
    }
}

/// The inode's data.
///
/// # Safety
///
/// `inode` is a live inode made by [`super::pseudo`] for `T` (its `i_private` owns a
/// `KBox<T>` from creation to eviction), alive for `'a`.
pub(super) unsafe fn data<'a, T>(inode: *const bindings::inode) -> &'a T {
    // SAFETY: As the caller guarantees.
    unsafe { &*((*inode).i_private as *const T) }
}

/// Builds the C tables of `T`'s files.
pub(crate) struct DaxFileVTable<T: DaxFile>(PhantomData<T>);

impl<T: DaxFile> DaxFileVTable<T> {
    /// `file_operations` (`owner` is the module implementing `T`, `T::OwnerModule`, which
    /// `#[vtable]` fills in: every open file pins it).
    pub(super) const FILE_OPS: bindings::file_operations = bindings::file_operations {
        owner: kernel::module::this_module::<T::OwnerModule>().as_ptr(),
        open: Some(Self::open),
        release: Some(super::pseudo::release::<T>),
        llseek: Some(bindings::generic_file_llseek),
        read_iter: Some(Self::read_iter),
        write_iter: Some(Self::write_iter),
        mmap: Some(Self::mmap),
        fsync: Some(Self::fsync),
        get_unmapped_area: Some(bindings::thp_get_unmapped_area),
        unlocked_ioctl: if T::HAS_IOCTL {
            Some(Self::ioctl)
        } else {
            None
        },
        // sendfile(2)/splice(2) go through read_iter/write_iter.
        splice_read: Some(bindings::copy_splice_read),
        splice_write: Some(bindings::iter_file_splice_write),
        ..pin_init::zeroed()
    };

    pub(super) const INODE_OPS: bindings::inode_operations = bindings::inode_operations {
        setattr: Some(Self::setattr),
        ..pin_init::zeroed()
    };

    pub(super) const ADDRESS_SPACE_OPS: bindings::address_space_operations =
        bindings::address_space_operations {
            writepages: Some(Self::writepages),
            dirty_folio: Some(lb::noop_dirty_folio),
            ..pin_init::zeroed()
        };

    const VM_OPS: bindings::vm_operations_struct = bindings::vm_operations_struct {
        fault: Some(Self::fault),
        huge_fault: Some(Self::huge_fault),
        page_mkwrite: Some(Self::fault),
        pfn_mkwrite: Some(Self::fault),
        ..pin_init::zeroed()
    };

    const IOMAP_OPS: lb::iomap_ops = lb::iomap_ops {
        iomap_begin: Some(Self::iomap_begin),
        iomap_end: None,
        iomap_next: None,
    };

    /// `file_operations.open`: every open of one of `T`'s inodes.
    ///
    /// # Safety
    ///
    /// Called by the VFS only (through `FILE_OPS`): `inode` is a live inode made for `T` by
    /// [`super::pseudo`], `file` the file being opened on it, both valid for the call.
    unsafe extern "C" fn open(
        inode: *mut bindings::inode,
        file: *mut bindings::file,
    ) -> kernel::ffi::c_int {
        from_result(|| {
            // SAFETY: The VFS passes our live inode and the file being opened.
            let (data, writable) =
                unsafe { (data::<T>(inode), lb::famfs_glue_file_writable(file)) };
            data.open(writable)?;
            // O_DIRECT is the only I/O a DAX file has (no page cache): accept the flag.
            // SAFETY: The file being opened is ours to set up.
            unsafe { lb::famfs_glue_file_set_can_odirect(file) };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// `iocb` is the live kiocb of a call on one of `T`'s files, valid for `'a`; `iter` is that
    /// call's iterator.
    unsafe fn io<'a, I>(iocb: *mut bindings::kiocb, iter: &'a mut I) -> DaxIo<'a, I> {
        // The private data is only borrowed as `()`, whose `borrow` ignores the pointer, so any
        // `private_data` (ours: NULL or the pseudo mount's marker) is a valid `()`.
        // SAFETY: A live kiocb for `'a` (caller); its private data as said above.
        let kiocb = unsafe { Kiocb::<'a, ()>::from_raw(iocb) };
        // SAFETY: The kiocb's file is open for the call, so it and its inode are live.
        let inode = unsafe { Inode::from_raw((*(*kiocb.as_raw()).ki_filp).f_inode) };
        // INVARIANT: The live kiocb and iterator of a call on one of our files, and its inode.
        DaxIo {
            kiocb,
            iter,
            ops: &Self::IOMAP_OPS,
            inode,
        }
    }

    /// `file_operations.read_iter`.
    ///
    /// # Safety
    ///
    /// Called by the VFS only: `iocb` is a live kiocb of an open file of one of `T`'s inodes,
    /// `to` a live `ITER_DEST` iterator used by no one else during the call, both valid for the
    /// call.
    unsafe extern "C" fn read_iter(
        iocb: *mut bindings::kiocb,
        to: *mut bindings::iov_iter,
    ) -> isize {
        // SAFETY: The VFS passes a live destination iterator, only used through this reference
        // until the call returns, and writable with the usual C methods for the call.
        let to = unsafe { IovIterDest::from_raw(to) };
        // SAFETY: The VFS passes a live kiocb of one of our files.
        let mut io = unsafe { Self::io(iocb, to) };
        // SAFETY: Our inode, alive while its file is.
        let data = unsafe { data::<T>(io.inode.as_raw()) };
        from_result(|| data.read_iter(&mut io).map(|n| n as isize))
    }

    /// `file_operations.write_iter`.
    ///
    /// # Safety
    ///
    /// As [`Self::read_iter`], with `from` a live `ITER_SOURCE` iterator.
    unsafe extern "C" fn write_iter(
        iocb: *mut bindings::kiocb,
        from: *mut bindings::iov_iter,
    ) -> isize {
        // SAFETY: The VFS passes a live source iterator, only used through this reference until
        // the call returns, and readable with the usual C methods for the call.
        let from = unsafe { IovIterSource::from_raw(from) };
        // SAFETY: As above.
        let mut io = unsafe { Self::io(iocb, from) };
        // SAFETY: As above.
        let data = unsafe { data::<T>(io.inode.as_raw()) };
        from_result(|| data.write_iter(&mut io).map(|n| n as isize))
    }

    /// `file_operations.mmap`.
    ///
    /// # Safety
    ///
    /// Called by the VFS only: `file` is an open file of one of `T`'s inodes, `vma` the new
    /// mapping being set up for it, which this call may change until it returns.
    unsafe extern "C" fn mmap(
        file: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> kernel::ffi::c_int {
        from_result(|| {
            // SAFETY: The VFS passes one of our files and the vma being set up for it, ours to
            // change until this returns.
            let (data, area) = unsafe { (data::<T>((*file).f_inode), VmaNew::from_raw(vma)) };
            data.mmap(area)?;
            // SAFETY: As above; the table is a static.
            unsafe {
                lb::famfs_glue_file_accessed(file);
                lb::famfs_glue_vma_set_hugepage(vma);
                (*vma).vm_ops = &Self::VM_OPS;
            }
            Ok(0)
        })
    }

    /// `file_operations.fsync`: writes the CPU caches back over the dirty DAX entries of
    /// `[start, end]`, directly, not through `file_write_and_wait_range`: the pseudo file
    /// system's backing device cannot write back, so the generic path never calls `writepages`.
    ///
    /// # Safety
    ///
    /// Called by the VFS only: `file` is an open file of one of `T`'s inodes, valid for the
    /// call.
    unsafe extern "C" fn fsync(
        file: *mut bindings::file,
        start: bindings::loff_t,
        end: bindings::loff_t,
        _datasync: kernel::ffi::c_int,
    ) -> kernel::ffi::c_int {
        from_result(|| {
            // SAFETY: `file` is one of our open files; its mapping and inode live while it is.
            let (mapping, data) = unsafe {
                let mapping = (*file).f_mapping;
                (mapping, data::<T>((*mapping).host))
            };
            let Some(dev) = data.writeback_device()? else {
                return Ok(0);
            };
            let mut wbc: bindings::writeback_control = pin_init::zeroed();
            wbc.sync_mode = bindings::writeback_sync_modes_WB_SYNC_ALL;
            wbc.nr_to_write = isize::MAX as _;
            wbc.range_start = start;
            wbc.range_end = end;
            // SAFETY: A live mapping of ours and a device it maps; `wbc` is ours.
            let rc = unsafe { lb::dax_writeback_mapping_range(mapping, dev.as_raw(), &mut wbc) };
            kernel::error::to_result(rc).map(|()| 0)
        })
    }

    /// `address_space_operations.writepages`.
    ///
    /// # Safety
    ///
    /// Called by the writeback core only: `mapping` is the mapping of one of `T`'s live inodes
    /// (it has dirty entries), `wbc` a live writeback control, both valid for the call.
    unsafe extern "C" fn writepages(
        mapping: *mut bindings::address_space,
        wbc: *mut bindings::writeback_control,
    ) -> kernel::ffi::c_int {
        from_result(|| {
            // SAFETY: The mapping belongs to one of our inodes, alive while it has dirty entries.
            let data = unsafe { data::<T>((*mapping).host) };
            let Some(dev) = data.writeback_device()? else {
                return Ok(0);
            };
            // SAFETY: A live mapping and control from the writeback core, a device it maps.
            let rc = unsafe { lb::dax_writeback_mapping_range(mapping, dev.as_raw(), wbc) };
            kernel::error::to_result(rc).map(|()| 0)
        })
    }

    /// `inode_operations.setattr`. Sizes never change: truncate and any size-changing setattr
    /// get `EPERM`.
    ///
    /// # Safety
    ///
    /// Called by the VFS only: `idmap`, `dentry` (of one of `T`'s inodes) and `attr` are live
    /// for the call.
    unsafe extern "C" fn setattr(
        idmap: *mut bindings::mnt_idmap,
        dentry: *mut bindings::dentry,
        attr: *mut bindings::iattr,
    ) -> kernel::ffi::c_int {
        // SAFETY: The VFS passes a live iattr and dentry of our file system.
        unsafe {
            if (*attr).ia_valid & bindings::ATTR_SIZE != 0 {
                return EPERM.to_errno();
            }
            bindings::simple_setattr(idmap, dentry, attr)
        }
    }

    /// `file_operations.unlocked_ioctl`.
    ///
    /// # Safety
    ///
    /// Called by the VFS only: `file` is an open file of one of `T`'s inodes, valid for the
    /// call; `arg` is the caller's untrusted argument (only ever used as a user address).
    unsafe extern "C" fn ioctl(
        file: *mut bindings::file,
        cmd: kernel::ffi::c_uint,
        arg: kernel::ffi::c_ulong,
    ) -> kernel::ffi::c_long {
        // SAFETY: `file` is one of our open files; its inode lives while it is open.
        let (data, inode) =
            unsafe { (data::<T>((*file).f_inode), Inode::from_raw((*file).f_inode)) };
        from_result(|| {
            data.ioctl(inode, cmd, arg as usize)
                .map(|n| n as kernel::ffi::c_long)
        })
    }

    /// `iomap_ops.iomap_begin`, for the fs-dax core's reads, writes and faults.
    ///
    /// # Safety
    ///
    /// Called by the iomap core only (through `IOMAP_OPS`, given by this adapter's own
    /// `dax_iomap_rw`/`dax_iomap_fault` calls): `inode` is one of `T`'s live inodes, `iomap`
    /// valid for writes for the duration of the call.
    unsafe extern "C" fn iomap_begin(
        inode: *mut bindings::inode,
        pos: bindings::loff_t,
        length: bindings::loff_t,
        _flags: kernel::ffi::c_uint,
        iomap: *mut lb::iomap,
        _srcmap: *mut lb::iomap,
    ) -> kernel::ffi::c_int {
        from_result(|| {
            // SAFETY: The iomap core passes our live inode.
            let data = unsafe { data::<T>(inode) };
            let start = u64::try_from(pos).map_err(|_| EINVAL)?;
            let len = u64::try_from(length).map_err(|_| EINVAL)?;
            let m = data.iomap_begin(start, len)?;
            // SAFETY: `iomap` is valid for writes for the duration of the call.
            unsafe { iomap::fill(iomap, pos, &m) };
            Ok(0)
        })
    }

    /// `vm_operations_struct.fault` (also `page_mkwrite` and `pfn_mkwrite`).
    ///
    /// # Safety
    ///
    /// Called by the mm only (through `VM_OPS`, installed by [`Self::mmap`]): `vmf` is a live
    /// fault in a mapping of one of `T`'s files, valid for the call.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: The mm passes a live fault of one of our mappings.
        unsafe { Self::any_fault(vmf, 0) }
    }

    /// `vm_operations_struct.huge_fault`.
    ///
    /// # Safety
    ///
    /// As [`Self::fault`].
    unsafe extern "C" fn huge_fault(
        vmf: *mut bindings::vm_fault,
        order: kernel::ffi::c_uint,
    ) -> bindings::vm_fault_t {
        // SAFETY: As above.
        unsafe { Self::any_fault(vmf, order) }
    }

    /// # Safety
    ///
    /// `vmf` is a live fault of one of `T`'s mappings.
    unsafe fn any_fault(vmf: *mut bindings::vm_fault, order: u32) -> bindings::vm_fault_t {
        // SAFETY: As the caller guarantees.
        let fault = unsafe { Fault::from_raw(vmf) };
        // SAFETY: The faulting file's inode is one of ours, alive for the fault.
        let data = unsafe { data::<T>(fault.inode().as_raw()) };
        data.fault(&fault, order).raw()
    }
}
