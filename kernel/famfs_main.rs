// SPDX-License-Identifier: GPL-2.0

//! famfs.ko: the data path of famfs, the fabric-attached memory file system.
//!
//! User space (famfs-fused) plays the metadata log and hands this module, through `/dev/famfs`,
//! the devdax devices and each file's map (fmap). The module makes one DAX-backed kernel file per
//! famfs file, whose reads, writes and mmap faults go straight to device memory through
//! fs-dax/iomap. See Documentation/design.md and Documentation/ioctl-abi.md.
//!
//! C headers: none directly (`kernel::miscdevice`, and the module's own objects)

use core::ptr;

use kernel::miscdevice::{MiscDeviceOptions, MiscDeviceRegistration};
use kernel::prelude::*;

mod control;
mod daxdev;
mod file;
mod fs;
mod local_bindings;
mod stats;
mod vfs;

/// The fmap logic, shared with user space (the famfs-fmap crate compiles the same file).
#[path = "fmap/src/fmap.rs"]
#[allow(dead_code, unreachable_pub)]
mod fmap;

/// The ioctl ABI, shared with user space (the same file is compiled into the famfs-fmap crate).
#[path = "fmap/src/abi.rs"]
#[allow(dead_code, unreachable_pub)]
mod abi;

module! {
    type: FamfsModule,
    name: "famfs",
    authors: ["famfs-rs developers"],
    description: "famfs: fmap/DAX data path for fabric-attached memory",
    license: "GPL",
}

// Fields drop in declaration order: no new control opens first; then the module's workqueue,
// which waits for the lease revokes still queued (work items of closed opens); then the file
// system type (no super block of it can exist by then: each pins the module); then the holder
// registry (no device is held any more); then the counters' debugfs files.
#[pin_data(PinnedDrop)]
struct FamfsModule {
    #[pin]
    control: MiscDeviceRegistration<control::Control>,
    _queue: vfs::workqueue::ModuleQueue,
    #[pin]
    fs_type: fs::FsType,
    _registry: daxdev::Registry,
    _debugfs: stats::DebugfsDir,
}

impl kernel::InPlaceModule for FamfsModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!("loading (ioctl ABI {})\n", abi::ABI_VERSION);
        // Initialised in this order: counters, holder registry, file system type, workqueue,
        // and only then the control device.
        try_pin_init!(Self {
            _debugfs: stats::DebugfsDir::create(),
            _registry: daxdev::Registry::init(),
            fs_type <- fs::FsType::register(),
            _queue: vfs::workqueue::ModuleQueue::create()?,
            control <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"famfs" }),
        })
    }
}

impl FamfsModule {
    /// The file system type of the module whose control device is `misc`, for the whole life
    /// of a control open (which pins the module).
    pub(crate) fn fs_type_of(
        misc: &MiscDeviceRegistration<control::Control>,
    ) -> &'static fs::FsType {
        let misc = ptr::from_ref(misc);
        // SAFETY: The only `MiscDeviceRegistration<Control>` is the module's `control` field,
        // pinned in the module's storage until unload; callers are control opens (they pin it).
        unsafe { &(*kernel::container_of!(misc, FamfsModule, control)).fs_type }
    }
}

#[pinned_drop]
impl PinnedDrop for FamfsModule {
    fn drop(self: Pin<&mut Self>) {
        // Runs before the fields are dropped (above).
        pr_info!("unloaded\n");
    }
}
