//! `--set-daxmode` of mkfs.famfs, fsck and logplay: leave the device on fsdev_dax (the devdax
//! device itself is famfs_media::dax).

use anyhow::{bail, Context, Result};
use famfs_media::DaxDriver;
use std::path::Path;

/// `--set-daxmode` of mkfs.famfs, fsck and logplay: afterwards the devdax device `dev` is bound
/// to fsdev_dax (what the C tools leave it in, and what `famfs mount` in module mode needs).
/// Nothing for an image file or a mount point; refused while `dev` is mounted (a fallback-mode
/// server holds it through device_dax). Run once the command has closed the device.
pub fn set_daxmode_fsdev(prog: &str, dev: &Path) -> Result<()> {
    let Some(sys) = famfs_media::dax::sysfs_dir(dev) else {
        eprintln!(
            "{prog}: note: --set-daxmode: {} is not a devdax device; nothing to rebind",
            dev.display()
        );
        return Ok(());
    };
    let have = famfs_media::dax::driver(dev).unwrap_or(DaxDriver::Unbound);
    if have == DaxDriver::FsdevDax {
        return Ok(());
    }
    let mounts = crate::target::mounted_at(dev);
    if !mounts.is_empty() {
        bail!(
            "--set-daxmode: {} is mounted at {} (bound to {have}); unmount it before rebinding",
            dev.display(),
            mounts.join(", ")
        );
    }
    famfs_media::dax::bind(&sys, &DaxDriver::FsdevDax).with_context(|| {
        format!(
            "--set-daxmode: cannot rebind {} to fsdev_dax (is famfs.ko loaded?)",
            dev.display()
        )
    })?;
    let now = famfs_media::dax::driver(dev).unwrap_or(DaxDriver::Unbound);
    if now != DaxDriver::FsdevDax {
        bail!(
            "--set-daxmode: {} is bound to {now} after rebinding, not fsdev_dax",
            dev.display()
        );
    }
    println!("{prog}: {} rebound from {have} to fsdev_dax", dev.display());
    Ok(())
}
