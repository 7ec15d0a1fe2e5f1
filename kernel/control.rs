// SPDX-License-Identifier: GPL-2.0

//! `/dev/famfs`: the control device through which a privileged server attaches devdax devices
//! and creates DAX files. Each open has its own daxdev table (fmap `devindex` -> device), and
//! may hold a lease (`IOC_LEASE`): when the lease is not renewed in time, every file made through
//! the open is revoked, as by `IOC_REVOKE`.
//!
//! C headers: none directly: the misc device, user copies, `hrtimer` and work items come from the
//! kernel crate (`kernel::miscdevice`, `kernel::uaccess`, `kernel::time::hrtimer`,
//! `kernel::workqueue`); the rest from `crate::vfs`

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use kernel::device::Device;
use kernel::fs::File;
use kernel::ioctl::_IOC_SIZE;
use kernel::miscdevice::{MiscDevice, MiscDeviceRegistration};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::{Arc, ArcBorrow, Mutex};
use kernel::time::hrtimer::{
    ArcHrTimerHandle, HrTimer, HrTimerCallback, HrTimerCallbackContext, HrTimerPointer,
    HrTimerRestart, RelativeMode,
};
use kernel::time::{Delta, Monotonic};
use kernel::transmute::{AsBytes, FromBytes};
use kernel::uaccess::{UserPtr, UserSlice};
use kernel::workqueue::{self, Work, WorkItem};

use kernel::fs::file::FileDescriptorReservation;

use crate::abi;
use crate::daxdev::Daxdev;
use crate::file::FileData;
use crate::fmap::{Fmap, FmapError, HEADER_LEN, MAX_MSG_LEN};
use crate::fs;
use crate::vfs::workqueue::ModuleQueue;

// SAFETY: The ABI structs are `#[repr(C)]` with only integer fields and no padding (their sizes
// are pinned by the abi tests), so any bit pattern is valid and every byte is initialised.
unsafe impl FromBytes for abi::AttachDaxdevArgs {}
// SAFETY: See above.
unsafe impl AsBytes for abi::AttachDaxdevArgs {}
// SAFETY: See above.
unsafe impl AsBytes for abi::VersionArgs {}
// SAFETY: See above.
unsafe impl FromBytes for abi::CreateFileArgs {}
// SAFETY: See above.
unsafe impl AsBytes for abi::CreateFileArgs {}
// SAFETY: See above.
unsafe impl FromBytes for abi::GetFmapArgs {}
// SAFETY: See above.
unsafe impl AsBytes for abi::GetFmapArgs {}
// SAFETY: See above.
unsafe impl FromBytes for abi::RevokeArgs {}
// SAFETY: See above.
unsafe impl AsBytes for abi::RevokeArgs {}
// SAFETY: See above.
unsafe impl FromBytes for abi::LeaseArgs {}
// SAFETY: See above.
unsafe impl AsBytes for abi::LeaseArgs {}
// SAFETY: See above.
unsafe impl FromBytes for abi::FileStateArgs {}
// SAFETY: See above.
unsafe impl AsBytes for abi::FileStateArgs {}
// SAFETY: See above.
unsafe impl FromBytes for abi::RevokeFileArgs {}
// SAFETY: See above.
unsafe impl AsBytes for abi::RevokeFileArgs {}
// SAFETY: See above.
unsafe impl FromBytes for abi::RevokeInoArgs {}
// SAFETY: See above.
unsafe impl AsBytes for abi::RevokeInoArgs {}

/// The errno for a rejected fmap message (the shared crate names one per rule).
fn fmap_error(e: FmapError) -> Error {
    Error::from_errno(-e.errno())
}

const TABLE_LEN: usize = abi::MAX_DAXDEVS as usize;

/// One open's daxdev table (fmap `devindex` -> device).
struct Table {
    slots: [Option<Arc<Daxdev>>; TABLE_LEN],
    /// Set for good by `IOC_REVOKE` or the lease's expiry.
    revoked: bool,
}

/// What an open of `/dev/famfs` made: its daxdev table, and what its lease needs (the timer, and
/// the work item that revokes). Shared (`Arc`) by the open, by the lease timer while it runs,
/// and by the revoke work while it is queued or running; the work may outlive the open (a
/// server killed with its lease armed), which is why it runs on the module's own queue, drained
/// at unload (see Documentation/design.md, "The lease").
#[pin_data]
pub(crate) struct Session {
    /// The daxdev table, and whether it was revoked: from then on it attaches and creates
    /// nothing.
    #[pin]
    table: Mutex<Table>,
    /// Armed by `IOC_LEASE`; its expiry queues `work` (a revoke sleeps, a timer callback may not).
    #[pin]
    timer: HrTimer<Session>,
    #[pin]
    work: Work<Session>,
    /// Set once, by the first expiry (of the timer, or the open closed with its lease armed):
    /// the revoke is queued exactly once, and `IOC_LEASE` fails with `ESTALE` from then on.
    expired: AtomicBool,
    /// The last lease armed, in milliseconds (for the log).
    lease_ms: AtomicU32,
}

kernel::impl_has_hr_timer! {
    impl HasHrTimer<Self> for Session {
        mode: RelativeMode<Monotonic>,
        field: self.timer
    }
}

kernel::impl_has_work! {
    impl HasWork<Self> for Session { self.work }
}

impl HrTimerCallback for Session {
    type Pointer<'a> = Arc<Self>;

    /// The lease ran out: queue the revoke. Runs in interrupt context: no lock, no sleep. The
    /// timer's handle (held by the open, which waits for this callback when it cancels the
    /// timer) owns a reference, so the `Arc` made here is never the last one.
    fn run(this: ArcBorrow<'_, Self>, _ctx: HrTimerCallbackContext<'_, Self>) -> HrTimerRestart {
        Session::expire(Arc::from(this));
        HrTimerRestart::NoRestart
    }
}

impl WorkItem for Session {
    type Pointer = Arc<Session>;

    /// The revoke of an expired lease, on the module's queue: no signal can cut its waits short
    /// here, so it runs to the end (every file unmapped, every pin released).
    fn run(this: Arc<Session>) {
        let ms = this.lease_ms.load(Ordering::Relaxed);
        pr_warn!(
            "lease expired (armed for {} ms, not renewed, or its /dev/famfs open was closed \
             armed): revoking every file made through that open\n",
            ms
        );
        match this.revoke() {
            Ok((devices, files)) => pr_warn!(
                "lease expiry revoked {} file(s) on {} device(s): they now fail with ESTALE\n",
                files,
                devices
            ),
            Err(e) => pr_err!("lease expiry: revoke failed ({:?})\n", e),
        }
    }
}

impl Session {
    /// The lease expired (or its open closed armed): queue the revoke, once.
    fn expire(this: Arc<Self>) {
        if this.expired.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(queue) = ModuleQueue::get() else {
            return;
        };
        // Queued once (guarded by `expired`): it cannot be on a queue already; were it, the
        // returned reference would be dropped here, never the last one (see the callers).
        let _ = queue.enqueue(this);
    }

    /// Revokes every file made through this open: marks the table revoked, then every device
    /// of it (their files' reads, writes, opens and mmaps fail with `ESTALE`, faults with
    /// `SIGBUS`), waits for the reads and writes already inside those files' data path, zaps
    /// every mapping of those files and waits for their pinned pages. Idempotent. Returns how
    /// many devices and files (once per device a file maps) it revoked. The waits end on a
    /// signal (`EINTR`, or a restart of the call): everything is revoked already, only the
    /// waiting (and the unmapping of files not reached yet) is cut short, and a second call
    /// resumes it.
    ///
    /// The scope is safe by construction: a device is held exclusively by one table at a time
    /// (`fs_dax_get`), and a file maps only devices of the table it was made from, so the files
    /// on this table's devices are exactly the files made through this open.
    fn revoke(&self) -> Result<(u32, u64)> {
        let mut devs = KVec::with_capacity(TABLE_LEN, GFP_KERNEL)?;
        {
            let mut table = self.table.lock();
            table.revoked = true;
            for dev in table.slots.iter().flatten() {
                devs.push(dev.clone(), GFP_KERNEL)?;
            }
        }
        // Draining and unmapping may wait for I/O and pinned pages: not under the table lock.
        let mut files = 0u64;
        for dev in devs.iter() {
            files = files.saturating_add(dev.revoke()?);
        }
        Ok((u32::try_from(devs.len()).unwrap_or(u32::MAX), files))
    }
}

/// The state of one open of `/dev/famfs`.
#[pin_data]
pub(crate) struct Control {
    session: Arc<Session>,
    /// The armed lease: the handle of the running timer (dropping it cancels the timer and
    /// waits for its callback).
    #[pin]
    lease: Mutex<Option<ArcHrTimerHandle<Session>>>,
    /// The control device itself: a struct device `Daxdev::attach` compares others with.
    misc: ARef<Device>,
    /// The module's file system type, on whose internal mount files are made.
    fs_type: &'static fs::FsType,
}

#[vtable]
impl MiscDevice for Control {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        let session = Arc::pin_init(
            pin_init!(Session {
                table <- new_mutex!(Table {
                    slots: core::array::from_fn(|_| None),
                    revoked: false,
                }),
                timer <- HrTimer::new(),
                work <- workqueue::new_work!("famfs::lease"),
                expired: AtomicBool::new(false),
                lease_ms: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )?;
        let fs_type = crate::FamfsModule::fs_type_of(misc);
        KBox::try_pin_init(
            try_pin_init!(Control {
                session,
                lease <- new_mutex!(None),
                misc: ARef::from(misc.device()),
                fs_type,
            }),
            GFP_KERNEL,
        )
    }

    /// The last close of this open. A lease still armed counts as expired: the server that
    /// held it can no longer renew it (it exited or was killed), so its files are revoked now,
    /// by the work item (this may run in a dying task, whose waits a signal would cut short).
    fn release(me: Pin<KBox<Self>>, _file: &File) {
        let armed = me.lease.lock().take();
        if let Some(handle) = armed {
            // Cancels the timer, waiting for its callback if it is running.
            drop(handle);
            Session::expire(me.session.clone());
        }
    }

    fn ioctl(me: Pin<&Control>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // Every famfs ioctl hands out or reaches raw device memory.
        if !crate::vfs::capable_sys_admin() {
            return Err(EPERM);
        }
        let user = UserSlice::new(UserPtr::from_addr(arg), _IOC_SIZE(cmd));
        match cmd {
            abi::IOC_VERSION => {
                let version = abi::VersionArgs {
                    abi_version: abi::ABI_VERSION,
                    max_daxdevs: abi::MAX_DAXDEVS,
                    max_fmap_len: MAX_MSG_LEN as u32,
                    reserved: 0,
                };
                user.writer().write(&version)?;
                Ok(0)
            }
            abi::IOC_ATTACH_DAXDEV => {
                let (mut reader, mut writer) = user.reader_writer();
                let args: abi::AttachDaxdevArgs = reader.read()?;
                me.attach(args, &mut writer)?;
                Ok(0)
            }
            abi::IOC_CREATE_FILE => {
                let (mut reader, mut writer) = user.reader_writer();
                let args: abi::CreateFileArgs = reader.read()?;
                me.create_file(args, &mut writer)?;
                Ok(0)
            }
            abi::IOC_REVOKE => {
                let (mut reader, mut writer) = user.reader_writer();
                let args: abi::RevokeArgs = reader.read()?;
                me.revoke(args, &mut writer)?;
                Ok(0)
            }
            abi::IOC_LEASE => {
                let args: abi::LeaseArgs = user.reader().read()?;
                me.lease(args)?;
                Ok(0)
            }
            abi::IOC_REVOKE_INO => {
                let (mut reader, mut writer) = user.reader_writer();
                let args: abi::RevokeInoArgs = reader.read()?;
                me.revoke_ino(args, &mut writer)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}

impl Control {
    /// Makes a DAX file from the fmap message at `args.fmap_ptr`, installs a descriptor for
    /// it and writes `args` back with `fd` and `ino` set.
    ///
    /// `EINVAL` for unknown flags, mode bits or non-zero reserved fields, `E2BIG` for a message
    /// over a page, the fmap rule's errno for a malformed map (`ENXIO` when it names a device
    /// that is not attached or lies beyond one), `EHWPOISON` when a device had a memory failure.
    fn create_file(
        &self,
        mut args: abi::CreateFileArgs,
        writer: &mut kernel::uaccess::UserSliceWriter,
    ) -> Result {
        if args.reserved != [0, 0]
            || args.flags & !abi::CREATE_FLAGS_ALL != 0
            || args.mode & !0o7777 != 0
        {
            return Err(EINVAL);
        }
        let len = usize::try_from(args.fmap_len).map_err(|_| E2BIG)?;
        if len > MAX_MSG_LEN {
            return Err(E2BIG);
        }
        if len < HEADER_LEN {
            return Err(EINVAL);
        }
        let mut msg = KVec::with_capacity(len, GFP_KERNEL)?;
        let ptr = usize::try_from(args.fmap_ptr).map_err(|_| EFAULT)?;
        UserSlice::new(UserPtr::from_addr(ptr), len).read_all(&mut msg, GFP_KERNEL)?;
        let fmap = Fmap::parse(&msg).map_err(fmap_error)?;
        let size = fmap.file_size();

        // Take references to the devices the map names, checking the extents fit them.
        let devs = {
            let table = self.session.table.lock();
            if table.revoked || self.session.expired.load(Ordering::Acquire) {
                return Err(ESTALE);
            }
            let table = &table.slots;
            fmap.check_devices(|i| {
                let dev = table.get(usize::try_from(i).ok()?)?.as_ref()?;
                Some(dev.size())
            })
            .map_err(fmap_error)?;
            // Only the devices the map names: a file holds (and is listed on) no other.
            let mask = fmap.device_mask();
            let count = usize::try_from(fmap.max_devindex()).map_err(|_| EINVAL)? + 1;
            let mut devs = KVec::with_capacity(count, GFP_KERNEL)?;
            for (i, slot) in table.iter().take(count).enumerate() {
                let named = mask & 1u64.checked_shl(i as u32).unwrap_or(0) != 0;
                let dev = if named { slot.clone() } else { None };
                if let Some(dev) = &dev {
                    dev.check_usable()?;
                }
                devs.push(dev, GFP_KERNEL)?;
            }
            devs
        };

        let read_only = args.flags & abi::CREATE_READ_ONLY != 0;
        let data = KBox::new(FileData::new(msg, devs, read_only, size)?, GFP_KERNEL)?;
        let fd_flags = if args.flags & abi::CREATE_CLOEXEC != 0 {
            crate::vfs::O_CLOEXEC
        } else {
            0
        };
        let reservation = FileDescriptorReservation::get_unused_fd_flags(fd_flags)?;
        let (file, ino) = fs::create_file(self.fs_type, data, args.mode, args.uid, args.gid)?;
        args.fd = i32::try_from(reservation.reserved_fd()).map_err(|_| EMFILE)?;
        args.ino = ino;
        // Report before installing: on a fault nothing is left behind in the caller's table.
        writer.write(&args)?;
        reservation.fd_install(file);
        Ok(())
    }

    /// Attaches the devdax device open as `args.fd` at `args.index` and writes `args` back
    /// with its size. The result is written out before the device takes the slot: when it
    /// cannot be (`EFAULT`), nothing stays attached.
    ///
    /// `EINVAL` for a bad index or non-zero reserved fields, `EEXIST` when the index is taken,
    /// plus the errors of [`Daxdev::attach`].
    fn attach(
        &self,
        mut args: abi::AttachDaxdevArgs,
        writer: &mut kernel::uaccess::UserSliceWriter,
    ) -> Result {
        if args.reserved != [0, 0] {
            return Err(EINVAL);
        }
        let index = usize::try_from(args.index).map_err(|_| EINVAL)?;
        let mut table = self.session.table.lock();
        if table.revoked || self.session.expired.load(Ordering::Acquire) {
            return Err(ESTALE);
        }
        let slot = table.slots.get_mut(index).ok_or(EINVAL)?;
        if slot.is_some() {
            return Err(EEXIST);
        }
        let dev = Daxdev::attach(args.fd, &self.misc)?;
        args.size = dev.size();
        writer.write(&args)?;
        pr_info!(
            "attached dax device {:#x} ({} bytes) at index {}\n",
            dev.devt(),
            args.size,
            index
        );
        *slot = Some(dev);
        Ok(())
    }

    /// `IOC_REVOKE`: [`Session::revoke`], and its counts written back. `EINVAL` for flags or
    /// reserved fields.
    fn revoke(
        &self,
        mut args: abi::RevokeArgs,
        writer: &mut kernel::uaccess::UserSliceWriter,
    ) -> Result {
        if args.flags != 0 || args.reserved != [0, 0] {
            return Err(EINVAL);
        }
        let (devices, files) = self.session.revoke()?;
        args.devices = devices;
        args.files = files;
        pr_warn!(
            "revoked {} file(s) on {} device(s): they now fail with ESTALE\n",
            files,
            args.devices
        );
        writer.write(&args)
    }

    /// `IOC_REVOKE_INO`: revokes the file made through this open whose inode number is
    /// `args.ino` ([`Daxdev::revoke_ino`] on each device of the table: a file is listed on
    /// every device its map names, and a device is held by one table only, so only files made
    /// through this open are reached). `ENOENT` when no device lists it, `EINVAL` for flags or
    /// reserved fields; the waits end on a signal (`EINTR`/`ERESTARTSYS`, the file is revoked
    /// all the same and a second call finishes).
    fn revoke_ino(
        &self,
        mut args: abi::RevokeInoArgs,
        writer: &mut kernel::uaccess::UserSliceWriter,
    ) -> Result {
        if args.flags != 0 || args.was_mapped != 0 || args.reserved != [0, 0] {
            return Err(EINVAL);
        }
        let mut devs = KVec::with_capacity(TABLE_LEN, GFP_KERNEL)?;
        for dev in self.session.table.lock().slots.iter().flatten() {
            devs.push(dev.clone(), GFP_KERNEL)?;
        }
        // Draining and unmapping may wait for I/O and pinned pages: not under the table lock.
        let mut found = None;
        for dev in devs.iter() {
            if let Some(mapped) = dev.revoke_ino(args.ino)? {
                found = Some(found.unwrap_or(false) || mapped);
            }
        }
        args.was_mapped = u32::from(found.ok_or(ENOENT)?);
        writer.write(&args)
    }

    /// `IOC_LEASE`: arms or renews the lease for `timeout_ms` from now, or disarms it (0).
    /// `EINVAL` for a timeout out of range, flags or reserved fields; `ESTALE` once the lease
    /// expired or the open was revoked (the lease is then disarmed).
    fn lease(&self, args: abi::LeaseArgs) -> Result {
        let ms = args.timeout_ms;
        if args.flags != 0
            || args.reserved != [0, 0]
            || (ms != 0 && !(abi::LEASE_MIN_MS..=abi::LEASE_MAX_MS).contains(&ms))
        {
            return Err(EINVAL);
        }
        let mut lease = self.lease.lock();
        // Stop the running timer first (waiting for a callback in progress), so that from here
        // the lease cannot expire behind our back; then look whether it already has.
        drop(lease.take());
        if self.session.expired.load(Ordering::Acquire) || self.session.table.lock().revoked {
            return Err(ESTALE);
        }
        if ms != 0 {
            self.session.lease_ms.store(ms, Ordering::Relaxed);
            *lease = Some(
                self.session
                    .clone()
                    .start(Delta::from_millis(i64::from(ms))),
            );
        }
        Ok(())
    }
}
