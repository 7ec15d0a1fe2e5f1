//! `famfs mkmeta`.

use super::common::*;
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

/// C famfs: create the meta files of a standalone mount. Nothing to do here: famfs-fused
/// serves .meta/.superblock and .meta/.log itself; says whether DEV is mounted.
#[derive(Args, Debug)]
pub struct MkmetaArgs {
    /// The device.
    pub device: PathBuf,
}

pub fn run(_: &GlobalArgs, a: &MkmetaArgs) -> Result<bool> {
    cmd_mkmeta(&a.device)
}

/// `famfs mkmeta`: nothing to create here; says whether the device is mounted.
fn cmd_mkmeta(device: &Path) -> Result<bool> {
    let mounts = crate::target::mounted_at(device);
    println!("famfs mkmeta: not needed with famfs-rs: famfs-fused serves .meta/.superblock and .meta/.log of every mount itself");
    match mounts.first() {
        Some(m) => {
            println!(
                "{} is mounted at {m}; its meta files are {m}/.meta/.superblock and {m}/.meta/.log",
                device.display()
            );
            Ok(true)
        }
        None => {
            println!("{} is not mounted (famfs mount DEV MPT)", device.display());
            Ok(false)
        }
    }
}
