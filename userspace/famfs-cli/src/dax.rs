//! The devdax driver a device is bound to: rebinding (`famfs mount --set-daxmode`) and
//! `--set-daxmode` of mkfs.famfs, fsck and logplay (leave the device on fsdev_dax).

use anyhow::{bail, Context, Result};
use famfs_media::DaxDriver;
use std::path::Path;

/// Rebinds the devdax device whose sysfs directory is `sys` to `want` (as scripts/daxmode does:
/// fsdev_dax only takes a device through its new_id list).
pub fn set_dax_driver(sys: &Path, want: &DaxDriver) -> Result<()> {
    let name = sys
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let drivers = Path::new("/sys/bus/dax/drivers");
    let write = |p: &Path| {
        std::fs::write(p, &name).with_context(|| format!("cannot write {name} to {}", p.display()))
    };
    if sys.join("driver").exists() {
        write(&sys.join("driver/unbind"))?;
    }
    match want {
        DaxDriver::FsdevDax => {
            // EEXIST when the id is listed already: the bind below covers it.
            let _ = write(&drivers.join("fsdev_dax/new_id"));
            if !sys.join("driver").exists() {
                write(&drivers.join("fsdev_dax/bind"))?;
            }
        }
        _ => {
            let _ = write(&drivers.join("fsdev_dax/remove_id"));
            if !sys.join("driver").exists() {
                write(&drivers.join("device_dax/bind"))?;
            }
        }
    }
    Ok(())
}

/// `--set-daxmode` of mkfs.famfs, fsck and logplay: afterwards the devdax device `dev` is bound
/// to fsdev_dax (what the C tools leave it in, and what `famfs mount` in module mode needs).
/// Nothing for an image file or a mount point; refused while `dev` is mounted (a fallback-mode
/// server holds it through device_dax). Run once the command has closed the device.
pub fn set_daxmode_fsdev(prog: &str, dev: &Path) -> Result<()> {
    let Some(sys) = famfs_media::dax_sysfs_dir(dev) else {
        eprintln!(
            "{prog}: note: --set-daxmode: {} is not a devdax device; nothing to rebind",
            dev.display()
        );
        return Ok(());
    };
    let have = famfs_media::dax_driver(dev).unwrap_or(DaxDriver::Unbound);
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
    set_dax_driver(&sys, &DaxDriver::FsdevDax).with_context(|| {
        format!(
            "--set-daxmode: cannot rebind {} to fsdev_dax (is famfs.ko loaded?)",
            dev.display()
        )
    })?;
    let now = famfs_media::dax_driver(dev).unwrap_or(DaxDriver::Unbound);
    if now != DaxDriver::FsdevDax {
        bail!(
            "--set-daxmode: {} is bound to {now} after rebinding, not fsdev_dax",
            dev.display()
        );
    }
    println!("{prog}: {} rebound from {have} to fsdev_dax", dev.display());
    Ok(())
}
