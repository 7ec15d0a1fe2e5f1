//! `famfs devadd`.

use super::common::*;
use crate::devices::open_new_secondary;
use anyhow::{anyhow, Context, Result};
use clap::Args;
use famfs_cmdline::size::human;
use famfs_format::format_uuid;
use famfs_meta::{Access, Famfs};
use std::path::{Path, PathBuf};

/// Add a memory device to a file system (a secondary: its own superblock, no log).
#[derive(Args, Debug)]
pub struct DevaddArgs {
    /// Overwrite a famfs (primary or secondary) already on DEVICE.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The file system: its mount point (online, under the log lock) or its primary device
    /// or image (offline).
    pub target: PathBuf,
    /// The devdax device or image file to add.
    pub device: PathBuf,
}

pub fn run(_: &GlobalArgs, a: &DevaddArgs) -> Result<bool> {
    cmd_devadd(a.force, &a.target, &a.device).map(|()| true)
}

/// `famfs devadd [-f] TARGET DEVICE`.
pub fn cmd_devadd(force: bool, target: &Path, device: &Path) -> Result<()> {
    let online = target.is_dir();
    let mut fs = Famfs::open(target, Access::ReadWrite)
        .with_context(|| format!("cannot open famfs on {}", target.display()))?;
    let primary: PathBuf = if online {
        // The primary's path is the mount's source.
        famfs_media::mounts::mount_at(target)
            .map(|m| m.source)
            .unwrap_or_default()
    } else {
        target.to_path_buf()
    };
    let media = open_new_secondary(device, &primary, Some(&fs), force)?;
    let name = std::fs::canonicalize(device)
        .unwrap_or_else(|_| device.to_path_buf())
        .display()
        .to_string();
    let size = media.size();
    let index = fs
        .with_log_lock(|a| a.add_device(media, &name, *uuid::Uuid::new_v4().as_bytes()))
        .with_context(|| {
            format!(
                "cannot add {} to the file system on {}",
                device.display(),
                target.display()
            )
        })?;
    let d = fs
        .devices()
        .get(index as usize)
        .ok_or_else(|| anyhow!("device {index} missing after the append"))?;
    println!(
        "{}: added as device {index} ({}, device uuid {}){}",
        device.display(),
        human(size),
        format_uuid(&d.uuid),
        if online {
            " to the mounted file system; the server attaches it when a file needs it"
        } else {
            ""
        }
    );
    Ok(())
}
