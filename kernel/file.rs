// SPDX-License-Identifier: GPL-2.0

//! The data path of a famfs file: file, inode, address-space and vm operations, and the iomap
//! callback that turns a file offset into device memory through the file's fmap.
//!
//! Everything here runs on the hot path of reads, writes and faults, so it only resolves
//! offsets (`Fmap::from_trusted`, validated once at creation) and calls the fs-dax core.
//!
//! C headers: none directly: the fs-dax data path through `crate::vfs` (`DaxFile`), user copies
//! through `kernel::uaccess`

use core::sync::atomic::{AtomicBool, Ordering};

use kernel::mm::virt::{flags, VmaNew};
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::uaccess::{UserPtr, UserSlice};

use crate::abi;
use crate::daxdev::{Daxdev, InodeLink};
use crate::fmap::Fmap;
use crate::stats;
use crate::vfs::dax::DaxDevice;
use crate::vfs::fault::{pmd_order, Fault, FaultResult};
use crate::vfs::file::{DaxFile, DaxRead, DaxWrite};
use crate::vfs::iomap::Mapped;
use crate::vfs::{Inode, PAGE_SIZE};

/// What the module knows of one famfs file: its validated fmap message and the devices it
/// maps. Owned by the inode (`i_private`) and freed when the inode is evicted.
pub(crate) struct FileData {
    fmap: KVec<u8>,
    /// Indexed by fmap devindex; `Some` exactly for the indexes the fmap names.
    devs: KVec<Option<Arc<Daxdev>>>,
    /// The inode's entry in each device's inode list, indexed as `devs` (`Some` as `devs`).
    links: KVec<Option<Arc<InodeLink>>>,
    read_only: bool,
    size: u64,
    /// Set for good by `IOC_REVOKE_FILE` (or `IOC_REVOKE_INO`, through a device's inode list,
    /// whose links share it): every access fails with `ESTALE` (checked first).
    revoked: Arc<AtomicBool>,
}

impl FileData {
    /// `fmap` must have passed `Fmap::parse` and `Fmap::check_devices` against `devs`.
    pub(crate) fn new(
        fmap: KVec<u8>,
        devs: KVec<Option<Arc<Daxdev>>>,
        read_only: bool,
        size: u64,
    ) -> Result<Self> {
        let revoked = Arc::new(AtomicBool::new(false), GFP_KERNEL)?;
        let mut links = KVec::with_capacity(devs.len(), GFP_KERNEL)?;
        for dev in devs.iter() {
            let link = match dev {
                Some(_) => Some(InodeLink::new(revoked.clone())?),
                None => None,
            };
            links.push(link, GFP_KERNEL)?;
        }
        // Counted from here to its drop (see `Drop`).
        stats::FILES.add(1);
        Ok(Self {
            fmap,
            devs,
            links,
            read_only,
            size,
            revoked,
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
    /// `self` is owned by `inode`, and [`Self::untrack`] is called at eviction, before the
    /// inode goes.
    pub(crate) unsafe fn track(&self, inode: &Inode) {
        for (dev, link) in self.devs.iter().zip(self.links.iter()) {
            if let (Some(dev), Some(link)) = (dev, link) {
                // SAFETY: The inode lives until `untrack` (the caller's guarantee); each link
                // of this file is made for one device and given to that device only.
                unsafe { dev.track(link, inode) };
            }
        }
    }

    /// Takes the inode out of every device's list.
    pub(crate) fn untrack(&self) {
        for (dev, link) in self.devs.iter().zip(self.links.iter()) {
            if let (Some(dev), Some(link)) = (dev, link) {
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

    /// `ESTALE` once the file or a device of it was revoked, `ENXIO` when a device of this file
    /// is being removed, `EHWPOISON` when one has failed as a whole.
    fn check_usable(&self) -> Result {
        if self.revoked.load(Ordering::Acquire) {
            return Err(ESTALE);
        }
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

impl Drop for FileData {
    fn drop(&mut self) {
        stats::FILES.sub(1);
    }
}

/// Serves a fault of `order` (0 = one page, PMD order = 2 MiB) from device memory, under the
/// mapping's invalidate lock (shared). PUD-sized faults fall back to PMDs: extents are only
/// 2 MiB aligned.
fn dax_fault(data: &FileData, fault: &Fault<'_>, order: u32) -> FaultResult {
    if order > pmd_order() {
        stats::FALLBACK_FAULTS.add(1);
        return FaultResult::FALLBACK;
    }
    // Removal and revoke make the state unusable and then unmap under the exclusive lock:
    // checked under the shared lock, a fault either installs its entry before that unmap or
    // sees the new state (the ext4/xfs pattern).
    let _lock = fault.inode().invalidate_lock_shared();
    match data.check_usable() {
        Ok(()) => {}
        Err(e) if e == EHWPOISON => return FaultResult::HWPOISON,
        Err(_) => return FaultResult::SIGBUS,
    }
    // A failed page gets SIGBUS with BUS_MCEERR_AR, as after a machine check; a huge fault
    // over one falls back to pages, so that only the failed pages are refused.
    let pages = 1u64 << order;
    let pos = (fault.pgoff() & !(pages - 1)).saturating_mul(PAGE_SIZE);
    if data.poisoned(pos, pages * PAGE_SIZE) {
        if order == 0 {
            return FaultResult::HWPOISON;
        }
        stats::FALLBACK_FAULTS.add(1);
        return FaultResult::FALLBACK;
    }
    let ret = fault.dax_fault::<FileData>(order);
    if ret.is_fallback() {
        stats::FALLBACK_FAULTS.add(1);
    } else if ret.is_nopage() {
        if order == 0 {
            stats::PTE_FAULTS.add(1)
        } else {
            stats::PMD_FAULTS.add(1)
        }
    }
    ret
}

#[vtable]
impl DaxFile for FileData {
    /// Every open, including FUSE passthrough's re-open by path: read-only files refuse
    /// writers.
    fn open(&self, writable: bool) -> Result {
        if self.read_only && writable {
            return Err(EACCES);
        }
        self.check_usable()
    }

    /// Reads stop at the file size. They are cut there before the iomap core sees them: it
    /// would otherwise ask `iomap_begin` for the offset at the end of a map that ends at the
    /// file size.
    ///
    /// The state is checked under the inode lock, which is held across the copy: a revoke sets
    /// the state and then takes the lock for a moment, so a read it did not wait for sees the
    /// state (`ESTALE`).
    fn read_iter(&self, io: &mut DaxRead<'_>) -> Result<usize> {
        let ret = {
            let _lock = io.inode().lock_shared();
            self.check_usable()?;
            io.dax_rw(self.size).unwrap_or(Ok(0))
        };
        io.accessed();
        let n = ret?;
        stats::READ_BYTES.add(n as u64);
        Ok(n)
    }

    /// Writes never change the size: a write starting at or past the end fails with `EFBIG`,
    /// one crossing the end is cut short there.
    ///
    /// As reads, the state is checked under the inode lock held across the copy (a revoke
    /// waits for the write, or the write sees the revoke).
    fn write_iter(&self, io: &mut DaxWrite<'_>) -> Result<usize> {
        let n = {
            let _lock = io.inode().lock();
            self.check_usable()?;
            if io.write_checks()? == 0 {
                return Ok(0);
            }
            io.dax_rw(self.size).unwrap_or(Err(EFBIG))?
        };
        stats::WRITE_BYTES.add(n as u64);
        Ok(n)
    }

    fn mmap(&self, vma: &VmaNew) -> Result {
        self.check_usable()?;
        if self.read_only && vma.flags() & flags::SHARED != 0 {
            if vma.writable() {
                return Err(EACCES);
            }
            // Nor may mprotect make it writable later.
            vma.try_clear_maywrite()?;
        }
        Ok(())
    }

    fn fault(&self, fault: &Fault<'_>, order: u32) -> FaultResult {
        dax_fault(self, fault, order)
    }

    /// Resolves `[pos, pos + len)` to the device range holding its start.
    fn iomap_begin(&self, pos: u64, len: u64) -> Result<Mapped<'_>> {
        let (dev, addr, len) = resolve(self, pos, len)?;
        Ok(Mapped {
            dax: dev.dax(),
            addr,
            len,
        })
    }

    /// Any of the file's devices will do: the dax core only asks it whether to flush. A
    /// revoked or removed device's memory is no longer this file's to write back.
    fn writeback_device(&self) -> Result<Option<&DaxDevice>> {
        self.check_usable()?;
        Ok(self.devs.iter().flatten().next().map(|d| d.dax()))
    }

    fn ioctl(&self, inode: &Inode, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            abi::IOC_GET_FMAP => get_fmap(self, arg)?,
            abi::IOC_FILE_STATE => file_state(self, inode, arg)?,
            abi::IOC_REVOKE_FILE => revoke_file(self, inode, arg)?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }

    /// First thing at eviction: out of the devices' lists (removal handling must not reach an
    /// inode whose mapping goes; it skips inodes being freed, and only looks under the list
    /// lock).
    fn evict(&self) {
        self.untrack();
    }
}

fn get_fmap(data: &FileData, arg: usize) -> Result {
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

/// `IOC_FILE_STATE`: whether any mapping of the file exists, whether it is revoked (by
/// `IOC_REVOKE_FILE`, or on a device revoked by `IOC_REVOKE` or a lease expiry). `EINVAL` for
/// non-zero reserved fields.
fn file_state(data: &FileData, inode: &Inode, arg: usize) -> Result {
    let user = UserSlice::new(
        UserPtr::from_addr(arg),
        core::mem::size_of::<abi::FileStateArgs>(),
    );
    let (mut reader, mut writer) = user.reader_writer();
    let mut args: abi::FileStateArgs = reader.read()?;
    if args.reserved != [0, 0] {
        return Err(EINVAL);
    }
    args.mapped = u32::from(inode.mapping_mapped());
    let revoked =
        data.revoked.load(Ordering::Acquire) || data.devs.iter().flatten().any(|d| d.is_revoked());
    args.revoked = u32::from(revoked);
    writer.write(&args)
}

/// `IOC_REVOKE_FILE`: revokes this one file for good, as `IOC_REVOKE` revokes a device's files:
/// the flag first (every access checks it: faults under the invalidate lock, reads and writes
/// under the inode lock), then the I/O in flight is waited for, the mappings zapped and the
/// pinned pages waited for ([`crate::daxdev::drain_and_unmap`]). `EPERM` without
/// `CAP_SYS_ADMIN`, `EINVAL` for flags or reserved fields, `EINTR`/`ERESTARTSYS` when a signal
/// ends the waits (the file is revoked all the same; a second call finishes).
fn revoke_file(data: &FileData, inode: &Inode, arg: usize) -> Result {
    if !crate::vfs::capable_sys_admin() {
        return Err(EPERM);
    }
    let user = UserSlice::new(
        UserPtr::from_addr(arg),
        core::mem::size_of::<abi::RevokeFileArgs>(),
    );
    let args: abi::RevokeFileArgs = user.reader().read()?;
    if args.flags != 0 || args.reserved0 != 0 || args.reserved != [0, 0] {
        return Err(EINVAL);
    }
    if !data.revoked.swap(true, Ordering::AcqRel) {
        pr_info!(
            "revoking file ino {}: it now fails with ESTALE\n",
            inode.ino()
        );
    }
    crate::daxdev::drain_and_unmap(inode)
}

/// The device, device offset and length of the mapping at `pos`: never beyond the extent (or
/// interleave chunk) holding `pos`, never past the file's mapped length.
fn resolve(data: &FileData, pos: u64, length: u64) -> Result<(&Arc<Daxdev>, u64, u64)> {
    if data.revoked.load(Ordering::Acquire) {
        return Err(ESTALE);
    }
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
