// SPDX-License-Identifier: GPL-2.0

//! The data path of a famfs file: file, inode, address-space and vm operations, and the iomap
//! callback that turns a file offset into device memory through the file's fmap.
//!
//! Everything here runs on the hot path of reads, writes and faults, so it only resolves
//! offsets (`Fmap::from_trusted`, validated once at creation) and calls the fs-dax core.

use core::ptr;

use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::Arc;

use crate::abi;
use crate::daxdev::{Daxdev, Link};
use crate::ffi;
use crate::fmap::Fmap;
use crate::stats;

/// What the module knows of one famfs file: its validated fmap message and the devices it
/// maps. Owned by the inode (`i_private`) and freed when the inode is evicted.
pub(crate) struct FileData {
    fmap: KVec<u8>,
    /// Indexed by fmap devindex; `Some` exactly for the indexes the fmap names.
    devs: KVec<Option<Arc<Daxdev>>>,
    /// The inode's place in each device's inode list, indexed as `devs`. The vector is never
    /// resized, so the links stay where the lists point.
    links: KVec<Link>,
    read_only: bool,
    size: u64,
}

impl FileData {
    /// `fmap` must have passed `Fmap::parse` and `Fmap::check_devices` against `devs`.
    pub(crate) fn new(
        fmap: KVec<u8>,
        devs: KVec<Option<Arc<Daxdev>>>,
        read_only: bool,
        size: u64,
    ) -> Result<Self> {
        let mut links = KVec::with_capacity(devs.len(), GFP_KERNEL)?;
        for _ in 0..devs.len() {
            links.push(Link::new(), GFP_KERNEL)?;
        }
        Ok(Self {
            fmap,
            devs,
            links,
            read_only,
            size,
        })
    }

    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Registers the inode with every device it maps, for removal handling.
    ///
    /// # Safety
    ///
    /// `self` is boxed in `inode`'s `i_private` (its address is stable until the inode is
    /// evicted), and [`Self::untrack`] is called at eviction before it is dropped.
    pub(crate) unsafe fn track(&self, inode: *mut bindings::inode) {
        for (dev, link) in self.devs.iter().zip(self.links.iter()) {
            if let Some(dev) = dev {
                // SAFETY: `link` lives in this file data, which stays put and is untracked
                // before it goes (the caller's guarantee).
                unsafe { dev.track(link, inode) };
            }
        }
    }

    /// Takes the inode out of every device's list.
    pub(crate) fn untrack(&self) {
        for (dev, link) in self.devs.iter().zip(self.links.iter()) {
            if let Some(dev) = dev {
                dev.untrack(link);
            }
        }
    }

    pub(crate) fn fmap_bytes(&self) -> &[u8] {
        &self.fmap
    }

    fn dev(&self, index: u32) -> Result<&Arc<Daxdev>> {
        let index = usize::try_from(index).map_err(|_| EIO)?;
        self.devs.get(index).and_then(Option::as_ref).ok_or(EIO)
    }

    /// `ENXIO` when a device of this file is being removed, `EHWPOISON` when one has failed
    /// as a whole.
    fn check_usable(&self) -> Result {
        for dev in self.devs.iter().flatten() {
            dev.check_usable()?;
        }
        Ok(())
    }

    /// Whether any byte of the file range `[pos, pos + len)` lies in a failed device range.
    fn poisoned(&self, pos: u64, len: u64) -> bool {
        if !self.devs.iter().flatten().any(|d| d.has_failures()) {
            return false;
        }
        let fmap = Fmap::from_trusted(&self.fmap);
        let end = pos.saturating_add(len);
        let mut at = pos;
        while at < end {
            let Some(r) = fmap.resolve(at) else {
                return false;
            };
            let Ok(dev) = self.dev(r.devindex) else {
                return false;
            };
            let want = r.len.min(end - at);
            match dev.usable_len(r.dev_offset, want) {
                Ok(n) if n == want => at += want,
                _ => return true,
            }
        }
        false
    }
}

/// The file data of one of our inodes.
///
/// # Safety
///
/// `inode` must be one of this module's DAX inodes (made by `InternalMount::create_file`),
/// alive for `'a`.
unsafe fn file_data<'a>(inode: *const bindings::inode) -> &'a FileData {
    // SAFETY: Our inodes carry a `KBox<FileData>` in `i_private` from creation to eviction.
    unsafe { &*((*inode).i_private as *const FileData) }
}

/// Takes an inode being evicted out of its devices' lists; `false` for an inode with no file
/// data (the pseudo file system's root).
///
/// # Safety
///
/// `inode` is one of our inodes, being evicted.
pub(crate) unsafe fn untrack_evicted(inode: *mut bindings::inode) -> bool {
    // SAFETY: The caller guarantees the inode is ours and alive.
    let data = unsafe { (*inode).i_private };
    if data.is_null() {
        return false;
    }
    // SAFETY: `i_private` holds our file data until `drop_file_data`.
    unsafe { &*data.cast::<FileData>() }.untrack();
    true
}

/// Frees the file data of an inode being evicted.
///
/// # Safety
///
/// `inode` is one of our inodes, being evicted, already untracked; its data is not used
/// afterwards.
pub(crate) unsafe fn drop_file_data(inode: *mut bindings::inode) {
    // SAFETY: The caller guarantees exclusive access to the evicted inode.
    let data = unsafe { core::mem::replace(&mut (*inode).i_private, ptr::null_mut()) };
    if !data.is_null() {
        // SAFETY: `i_private` came from `KBox::into_raw` in `create_file`.
        drop(unsafe { KBox::from_raw(data.cast::<FileData>()) });
    }
}

/// An operations table the C side reads through a shared pointer.
#[repr(transparent)]
pub(crate) struct Ops<T>(pub(crate) T);

// SAFETY: The tables are immutable after compilation; the only pointer that is not a function
// is `owner`, our own module, which the VFS only reference-counts.
unsafe impl<T> Sync for Ops<T> {}

fn file_inode(file: *mut bindings::file) -> *mut bindings::inode {
    // SAFETY: Callers pass a file the VFS handed them, which is alive during the call.
    unsafe { (*file).f_inode }
}

pub(crate) static FILE_OPS: Ops<bindings::file_operations> = Ops(bindings::file_operations {
    owner: kernel::module::this_module::<crate::FamfsModule>().as_ptr(),
    open: Some(open),
    release: Some(crate::fs::release),
    llseek: Some(bindings::generic_file_llseek),
    read_iter: Some(read_iter),
    write_iter: Some(write_iter),
    mmap: Some(mmap),
    fsync: Some(fsync),
    get_unmapped_area: Some(bindings::thp_get_unmapped_area),
    unlocked_ioctl: Some(ioctl),
    // sendfile(2)/splice(2) go through read_iter/write_iter.
    splice_read: Some(bindings::copy_splice_read),
    splice_write: Some(bindings::iter_file_splice_write),
    ..pin_init::zeroed()
});

pub(crate) static INODE_OPS: bindings::inode_operations = bindings::inode_operations {
    setattr: Some(setattr),
    ..pin_init::zeroed()
};

pub(crate) static ADDRESS_SPACE_OPS: bindings::address_space_operations =
    bindings::address_space_operations {
        writepages: Some(writepages),
        dirty_folio: Some(ffi::noop_dirty_folio),
        ..pin_init::zeroed()
    };

static VM_OPS: bindings::vm_operations_struct = bindings::vm_operations_struct {
    fault: Some(fault),
    huge_fault: Some(huge_fault),
    page_mkwrite: Some(fault),
    pfn_mkwrite: Some(fault),
    ..pin_init::zeroed()
};

static IOMAP_OPS: ffi::iomap_ops = ffi::iomap_ops {
    iomap_begin: Some(iomap_begin),
    iomap_end: None,
    iomap_next: None,
};

/// Every open, including FUSE passthrough's re-open by path: read-only files refuse writers.
unsafe extern "C" fn open(
    inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS passes our live inode and the file being opened.
    let (data, writable) = unsafe { (file_data(inode), ffi::famfs_glue_file_writable(file)) };
    if data.read_only() && writable {
        return EACCES.to_errno();
    }
    // SAFETY: The file being opened is ours to set up.
    unsafe { ffi::famfs_glue_file_set_can_odirect(file) };
    match data.check_usable() {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Reads stop at the file size. They are cut there before the iomap core sees them: it would
/// otherwise ask `iomap_begin` for the offset at the end of a map that ends at the file size.
unsafe extern "C" fn read_iter(iocb: *mut bindings::kiocb, to: *mut bindings::iov_iter) -> isize {
    // SAFETY: The VFS passes a live kiocb of one of our files and an iterator.
    unsafe {
        let file = (*iocb).ki_filp;
        let inode = file_inode(file);
        let data = file_data(inode);
        if let Err(e) = data.check_usable() {
            return e.to_errno() as isize;
        }
        ffi::famfs_glue_inode_lock_shared(inode);
        let ret = rw_within_size(iocb, to, data.size()).unwrap_or(0);
        ffi::famfs_glue_inode_unlock_shared(inode);
        ffi::famfs_glue_file_accessed(file);
        if ret > 0 {
            stats::READ_BYTES.add(ret as u64);
        }
        ret
    }
}

/// Writes never change the size: a write starting at or past the end fails with `EFBIG`, one
/// crossing the end is cut short there.
unsafe extern "C" fn write_iter(
    iocb: *mut bindings::kiocb,
    from: *mut bindings::iov_iter,
) -> isize {
    // SAFETY: The VFS passes a live kiocb of one of our files and an iterator; the inode lock
    // serialises writers as `generic_write_checks` requires.
    unsafe {
        let file = (*iocb).ki_filp;
        let inode = file_inode(file);
        let data = file_data(inode);
        if let Err(e) = data.check_usable() {
            return e.to_errno() as isize;
        }
        ffi::famfs_glue_inode_lock(inode);
        let mut ret = bindings::generic_write_checks(iocb, from);
        if ret > 0 {
            // As every file system that writes in place: setuid/setgid bits go, times move.
            let mut rc = bindings::file_remove_privs(file);
            if rc == 0 {
                rc = bindings::file_update_time(file);
            }
            if rc != 0 {
                ret = rc as isize;
            }
        }
        if ret > 0 {
            ret = rw_within_size(iocb, from, data.size()).unwrap_or(EFBIG.to_errno() as isize);
        }
        ffi::famfs_glue_inode_unlock(inode);
        if ret > 0 {
            stats::WRITE_BYTES.add(ret as u64);
        }
        ret
    }
}

/// Runs `dax_iomap_rw` on the part of `iter` that lies before `size`; `None` when nothing
/// does (the position is at or past the end, or the iterator is empty).
///
/// # Safety
///
/// `iocb` and `iter` are live and belong to one of our files, whose inode lock is held.
unsafe fn rw_within_size(
    iocb: *mut bindings::kiocb,
    iter: *mut bindings::iov_iter,
    size: u64,
) -> Option<isize> {
    // SAFETY: As the caller guarantees.
    unsafe {
        let pos = u64::try_from((*iocb).ki_pos).unwrap_or(u64::MAX);
        let room = size.saturating_sub(pos);
        let count = ffi::famfs_glue_iov_iter_count(iter) as u64;
        if room == 0 || count == 0 {
            return None;
        }
        let cut = count.saturating_sub(room);
        if cut > 0 {
            ffi::famfs_glue_iov_iter_truncate(iter, room);
        }
        let ret = ffi::dax_iomap_rw(iocb, iter, &IOMAP_OPS);
        if cut > 0 {
            ffi::famfs_glue_iov_iter_reexpand(
                iter,
                ffi::famfs_glue_iov_iter_count(iter) + cut as usize,
            );
        }
        Some(ret)
    }
}

unsafe extern "C" fn mmap(
    file: *mut bindings::file,
    vma: *mut bindings::vm_area_struct,
) -> kernel::ffi::c_int {
    // SAFETY: The VFS passes one of our files and the vma being set up for it.
    unsafe {
        let data = file_data(file_inode(file));
        if let Err(e) = data.check_usable() {
            return e.to_errno();
        }
        if data.read_only() && ffi::famfs_glue_vma_shared(vma) {
            if ffi::famfs_glue_vma_writable(vma) {
                return EACCES.to_errno();
            }
            // Nor may mprotect make it writable later.
            ffi::famfs_glue_vma_clear_maywrite(vma);
        }
        ffi::famfs_glue_file_accessed(file);
        ffi::famfs_glue_vma_set_hugepage(vma);
        (*vma).vm_ops = &VM_OPS;
    }
    0
}

unsafe extern "C" fn fsync(
    file: *mut bindings::file,
    start: bindings::loff_t,
    end: bindings::loff_t,
    _datasync: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // Writes the CPU caches back over the dirty DAX entries of the range. Directly, not
    // through `file_write_and_wait_range`: the internal mount's backing device (the pseudo
    // file systems' `noop_backing_dev_info`) cannot write back, so the generic path never
    // calls `writepages`.
    // SAFETY: `file` is one of our open files; its mapping and inode live while it is open.
    unsafe {
        let mapping = (*file).f_mapping;
        let data = file_data((*mapping).host);
        // A revoked or removed device's memory is no longer this file's to write back.
        if let Err(e) = data.check_usable() {
            return e.to_errno();
        }
        let Some(dev) = data.devs.iter().flatten().next() else {
            return 0;
        };
        let mut wbc: bindings::writeback_control = pin_init::zeroed();
        wbc.sync_mode = bindings::writeback_sync_modes_WB_SYNC_ALL;
        wbc.nr_to_write = isize::MAX as _;
        wbc.range_start = start;
        wbc.range_end = end;
        ffi::dax_writeback_mapping_range(mapping, dev.as_raw(), &mut wbc)
    }
}

unsafe extern "C" fn writepages(
    mapping: *mut bindings::address_space,
    wbc: *mut bindings::writeback_control,
) -> kernel::ffi::c_int {
    // SAFETY: The mapping belongs to one of our inodes, alive while it has dirty entries.
    unsafe {
        let data = file_data((*mapping).host);
        if let Err(e) = data.check_usable() {
            return e.to_errno();
        }
        // Any of the file's devices will do: the dax core only asks it whether to flush.
        let Some(dev) = data.devs.iter().flatten().next() else {
            return 0;
        };
        ffi::dax_writeback_mapping_range(mapping, dev.as_raw(), wbc)
    }
}

/// Sizes never change: truncate and any size-changing setattr get `EPERM`.
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

unsafe extern "C" fn ioctl(
    file: *mut bindings::file,
    cmd: kernel::ffi::c_uint,
    arg: kernel::ffi::c_ulong,
) -> kernel::ffi::c_long {
    if cmd != abi::IOC_GET_FMAP {
        return ENOTTY.to_errno() as kernel::ffi::c_long;
    }
    // SAFETY: `file` is one of our open files.
    let data = unsafe { file_data(file_inode(file)) };
    match get_fmap(data, arg as usize) {
        Ok(()) => 0,
        Err(e) => e.to_errno() as kernel::ffi::c_long,
    }
}

fn get_fmap(data: &FileData, arg: usize) -> Result {
    use kernel::uaccess::{UserPtr, UserSlice};
    let user = UserSlice::new(
        UserPtr::from_addr(arg),
        core::mem::size_of::<abi::GetFmapArgs>(),
    );
    let (mut reader, mut writer) = user.reader_writer();
    let mut args: abi::GetFmapArgs = reader.read()?;
    if args.reserved0 != 0 || args.reserved != 0 {
        return Err(EINVAL);
    }
    let msg = data.fmap_bytes();
    args.fmap_len = u32::try_from(msg.len()).map_err(|_| EOVERFLOW)?;
    args.flags = if data.read_only() {
        abi::CREATE_READ_ONLY
    } else {
        0
    };
    if (args.buf_len as usize) < msg.len() {
        writer.write(&args)?;
        return Err(ERANGE);
    }
    let buf = usize::try_from(args.buf_ptr).map_err(|_| EFAULT)?;
    UserSlice::new(UserPtr::from_addr(buf), msg.len())
        .writer()
        .write_slice(msg)?;
    writer.write(&args)
}

/// Resolves `[pos, pos + length)` to the device range holding its start.
unsafe extern "C" fn iomap_begin(
    inode: *mut bindings::inode,
    pos: bindings::loff_t,
    length: bindings::loff_t,
    _flags: kernel::ffi::c_uint,
    iomap: *mut ffi::iomap,
    _srcmap: *mut ffi::iomap,
) -> kernel::ffi::c_int {
    // SAFETY: The iomap core passes our live inode and an iomap to fill.
    let data = unsafe { file_data(inode) };
    match resolve(data, pos, length) {
        Ok((dev, dev_offset, len)) => {
            // SAFETY: `iomap` is valid for writes for the duration of the call.
            unsafe {
                (*iomap).addr = dev_offset;
                (*iomap).offset = pos;
                (*iomap).length = len;
                (*iomap).type_ = ffi::IOMAP_MAPPED as u16;
                (*iomap).flags = 0;
                (*iomap).bdev = ptr::null_mut();
                (*iomap).dax_dev = dev.as_raw();
            }
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// The device, device offset and length of the mapping at `pos`: never beyond the extent (or
/// interleave chunk) holding `pos`, never past the file's mapped length.
fn resolve(data: &FileData, pos: i64, length: i64) -> Result<(&Arc<Daxdev>, u64, u64)> {
    let pos = u64::try_from(pos).map_err(|_| EINVAL)?;
    let length = u64::try_from(length).map_err(|_| EINVAL)?;
    let r = Fmap::from_trusted(&data.fmap).resolve(pos).ok_or(EIO)?;
    let dev = data.dev(r.devindex)?;
    dev.check_usable()?;
    // Stops before a failed range; `EHWPOISON` when `pos` is in one.
    let len = dev.usable_len(r.dev_offset, r.len.min(length))?;
    let end = r.dev_offset.checked_add(len).ok_or(EIO)?;
    if len == 0 || end > dev.size() {
        return Err(EIO);
    }
    Ok((dev, r.dev_offset, len))
}

unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    // SAFETY: The mm passes a live fault of one of our mappings.
    unsafe { dax_fault(vmf, 0) }
}

unsafe extern "C" fn huge_fault(
    vmf: *mut bindings::vm_fault,
    order: kernel::ffi::c_uint,
) -> bindings::vm_fault_t {
    // SAFETY: As above.
    unsafe { dax_fault(vmf, order) }
}

/// Serves a fault of `order` (0 = one page, PMD order = 2 MiB) from device memory. PUD-sized
/// faults fall back to PMDs: extents are only 2 MiB aligned.
///
/// # Safety
///
/// `vmf` is a live fault of one of our mappings.
unsafe fn dax_fault(vmf: *mut bindings::vm_fault, order: u32) -> bindings::vm_fault_t {
    // SAFETY: As the caller guarantees.
    unsafe {
        let pmd_order = ffi::famfs_glue_pmd_order();
        if order > pmd_order {
            stats::FALLBACK_FAULTS.add(1);
            return bindings::vm_fault_reason_VM_FAULT_FALLBACK as bindings::vm_fault_t;
        }
        let file = (*(*vmf).__bindgen_anon_1.vma).vm_file;
        let data = file_data(file_inode(file));
        let mapping = (*file).f_mapping;
        // Removal makes the state unusable and then unmaps under the exclusive lock: checked
        // under the shared lock, a fault either installs its entry before that unmap or sees
        // the new state (the ext4/xfs pattern).
        ffi::famfs_glue_invalidate_lock_shared(mapping);
        let ret = dax_fault_locked(vmf, order, data);
        ffi::famfs_glue_invalidate_unlock_shared(mapping);
        ret
    }
}

/// [`dax_fault`] under the mapping's shared invalidate lock.
///
/// # Safety
///
/// As [`dax_fault`]; `data` is the file data of the faulting file.
unsafe fn dax_fault_locked(
    vmf: *mut bindings::vm_fault,
    order: u32,
    data: &FileData,
) -> bindings::vm_fault_t {
    // SAFETY: As the caller guarantees.
    unsafe {
        match data.check_usable() {
            Ok(()) => {}
            Err(e) if e == EHWPOISON => {
                return bindings::vm_fault_reason_VM_FAULT_HWPOISON as bindings::vm_fault_t
            }
            Err(_) => return bindings::vm_fault_reason_VM_FAULT_SIGBUS as bindings::vm_fault_t,
        }
        // A failed page gets SIGBUS with BUS_MCEERR_AR, as after a machine check; a huge fault
        // over one falls back to pages, so that only the failed pages are refused.
        let pages = 1u64 << order;
        let pos = ((*vmf).__bindgen_anon_1.pgoff as u64 & !(pages - 1))
            .saturating_mul(bindings::PAGE_SIZE as u64);
        if data.poisoned(pos, pages * bindings::PAGE_SIZE as u64) {
            if order == 0 {
                return bindings::vm_fault_reason_VM_FAULT_HWPOISON as bindings::vm_fault_t;
            }
            stats::FALLBACK_FAULTS.add(1);
            return bindings::vm_fault_reason_VM_FAULT_FALLBACK as bindings::vm_fault_t;
        }
        let mut pfn: kernel::ffi::c_ulong = 0;
        let ret = ffi::dax_iomap_fault(vmf, order, &mut pfn, ptr::null_mut(), &IOMAP_OPS);
        if ret & bindings::vm_fault_reason_VM_FAULT_FALLBACK as bindings::vm_fault_t != 0 {
            stats::FALLBACK_FAULTS.add(1);
        } else if ret & bindings::vm_fault_reason_VM_FAULT_NOPAGE as bindings::vm_fault_t != 0 {
            if order == 0 {
                stats::PTE_FAULTS.add(1)
            } else {
                stats::PMD_FAULTS.add(1)
            }
        }
        ret
    }
}
