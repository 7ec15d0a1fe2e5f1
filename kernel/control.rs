// SPDX-License-Identifier: GPL-2.0

//! `/dev/famfs`: the control device through which a privileged server attaches devdax devices
//! and creates DAX files. Each open has its own daxdev table (fmap `devindex` -> device).

use kernel::device::Device;
use kernel::fs::File;
use kernel::ioctl::_IOC_SIZE;
use kernel::miscdevice::{MiscDevice, MiscDeviceRegistration};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::{Arc, Mutex};
use kernel::transmute::{AsBytes, FromBytes};
use kernel::uaccess::{UserPtr, UserSlice};

use kernel::fs::file::FileDescriptorReservation;

use crate::abi;
use crate::daxdev::Daxdev;
use crate::file::FileData;
use crate::fmap::{Fmap, FmapError, HEADER_LEN, MAX_MSG_LEN};
use crate::fs;

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

/// The errno for a rejected fmap message (the shared crate names one per rule).
fn fmap_error(e: FmapError) -> Error {
    Error::from_errno(-e.errno())
}

const TABLE_LEN: usize = abi::MAX_DAXDEVS as usize;

/// One open's daxdev table (fmap `devindex` -> device).
struct Table {
    slots: [Option<Arc<Daxdev>>; TABLE_LEN],
    /// Set for good by `IOC_REVOKE`.
    revoked: bool,
}

/// The state of one open of `/dev/famfs`.
#[pin_data]
pub(crate) struct Control {
    /// The daxdev table, and whether this open was revoked (`IOC_REVOKE`): from then on it
    /// attaches and creates nothing.
    #[pin]
    daxdevs: Mutex<Table>,
    /// The control device itself: a struct device `Daxdev::attach` compares others with.
    misc: ARef<Device>,
}

#[vtable]
impl MiscDevice for Control {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(Control {
                daxdevs <- new_mutex!(Table {
                    slots: core::array::from_fn(|_| None),
                    revoked: false,
                }),
                misc: ARef::from(misc.device()),
            }),
            GFP_KERNEL,
        )
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
            let table = self.daxdevs.lock();
            if table.revoked {
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
        let (file, ino) = fs::create_file(data, args.mode, args.uid, args.gid)?;
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
        let mut table = self.daxdevs.lock();
        if table.revoked {
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

    /// Revokes every file made through this open: marks every device of the table revoked
    /// (their files' reads, writes, opens and mmaps fail with `ESTALE`, faults with `SIGBUS`),
    /// waits for the reads and writes already inside those files' data path, zaps every mapping
    /// of those files and waits for their pinned pages, and refuses any later `ATTACH_DAXDEV`
    /// and `CREATE_FILE` on this open with `ESTALE`. Idempotent. The waits end on a signal
    /// (`EINTR`, or a restart of the call): everything is revoked already, only the waiting
    /// (and the unmapping of files not reached yet) is cut short, and a second call resumes it.
    ///
    /// The scope is safe by construction: a device is held exclusively by one table at a time
    /// (`fs_dax_get`), and a file maps only devices of the table it was made from, so the files
    /// on this table's devices are exactly the files made through this open.
    fn revoke(
        &self,
        mut args: abi::RevokeArgs,
        writer: &mut kernel::uaccess::UserSliceWriter,
    ) -> Result {
        if args.flags != 0 || args.reserved != [0, 0] {
            return Err(EINVAL);
        }
        let mut devs = KVec::with_capacity(TABLE_LEN, GFP_KERNEL)?;
        {
            let mut table = self.daxdevs.lock();
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
        args.devices = u32::try_from(devs.len()).unwrap_or(u32::MAX);
        args.files = files;
        pr_warn!(
            "revoked {} file(s) on {} device(s): they now fail with ESTALE\n",
            files,
            args.devices
        );
        writer.write(&args)
    }
}
