//! `famfs daxdev`.

use super::common::*;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use famfs_cmdline::size::human;
use famfs_format::format_uuid;
use famfs_format::parse_uuid;
use famfs_media::dax::resolver::{self, Found};
use famfs_media::{dax, DaxDriver};
use std::path::{Path, PathBuf};

/// Find famfs devices on this host by uuid (names differ between hosts); bind a devdax device to
/// a dax driver.
#[derive(Args, Debug)]
pub struct DaxdevArgs {
    /// JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: DaxdevAction,
}

pub fn run(_: &GlobalArgs, a: &DaxdevArgs) -> Result<bool> {
    cmd_daxdev(&a.action, a.json)
}

/// `famfs daxdev bind DEVICE DRIVER`: what scripts/daxmode does (it calls this).
fn bind(device: &Path, driver: &str, json: bool) -> Result<bool> {
    let want = match driver {
        "fsdev_dax" => DaxDriver::FsdevDax,
        _ => DaxDriver::DeviceDax,
    };
    let sys = dax::sysfs_dir(device)
        .ok_or_else(|| anyhow!("{} is not a devdax device", device.display()))?;
    let have = dax::driver(device).unwrap_or(DaxDriver::Unbound);
    if have != want {
        dax::bind(&sys, &want)
            .with_context(|| format!("cannot rebind {} to {want}", device.display()))?;
    }
    let now = dax::driver(device).unwrap_or(DaxDriver::Unbound);
    if now != want {
        bail!(
            "{} is bound to {now} after rebinding, not {want}",
            device.display()
        );
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"device": device, "driver": now.to_string(), "was": have.to_string()})
        );
    }
    Ok(true)
}

/// `famfs daxdev list|resolve|refresh|bind`.
pub fn cmd_daxdev(action: &DaxdevAction, json: bool) -> Result<bool> {
    let print = |found: &[Found]| {
        if json {
            println!(
                "{}",
                serde_json::Value::Array(found.iter().map(Found::to_json).collect())
            );
        } else {
            for f in found {
                println!(
                    "{}  {:9}  fs {}  device {}  {}",
                    f.path.display(),
                    if f.primary { "primary" } else { "secondary" },
                    format_uuid(&f.fs_uuid),
                    format_uuid(&f.dev_uuid),
                    human(f.size)
                );
            }
        }
    };
    match action {
        DaxdevAction::Bind { device, driver } => bind(device, driver, json),
        DaxdevAction::List { extra } => {
            let cached = resolver::read_cache();
            let found = if cached.is_empty() || !extra.is_empty() {
                resolver::scan(extra)
            } else {
                cached
            };
            print(&found);
            Ok(true)
        }
        DaxdevAction::Refresh { extra } => {
            let found = resolver::scan(extra);
            match resolver::write_cache(&found) {
                Ok(p) if !json => println!("cache {} written", p.display()),
                Ok(_) => {}
                Err(e) => eprintln!("famfs daxdev: cache not written: {e}"),
            }
            print(&found);
            Ok(true)
        }
        DaxdevAction::Resolve {
            fs_uuid,
            dev_uuid,
            extra,
        } => {
            let fs = parse_uuid(fs_uuid).ok_or_else(|| anyhow!("invalid fs uuid {fs_uuid:?}"))?;
            let dev =
                parse_uuid(dev_uuid).ok_or_else(|| anyhow!("invalid device uuid {dev_uuid:?}"))?;
            match resolver::resolve(&fs, &dev, extra) {
                Some(f) if json => {
                    println!("{}", f.to_json());
                    Ok(true)
                }
                Some(f) => {
                    println!("{}", f.path.display());
                    Ok(true)
                }
                None => {
                    eprintln!("famfs daxdev: no device of this host holds device {dev_uuid} of file system {fs_uuid}");
                    Ok(false)
                }
            }
        }
    }
}

/// The actions of `famfs daxdev`.
#[derive(clap::Subcommand, Debug)]
pub enum DaxdevAction {
    /// List the famfs devices of this host (from the cache, or a scan when it is empty).
    List {
        /// Also read these devices or image files.
        #[arg(long = "also", value_name = "PATH")]
        extra: Vec<PathBuf>,
    },
    /// Print the local path of device DEV_UUID of file system FS_UUID (exit 1 when none).
    Resolve {
        fs_uuid: String,
        dev_uuid: String,
        /// Also read these devices or image files.
        #[arg(long = "also", value_name = "PATH")]
        extra: Vec<PathBuf>,
    },
    /// Read every device's superblock again and rewrite the cache (/run/famfs/daxdevs.json).
    Refresh {
        /// Also read these devices or image files.
        #[arg(long = "also", value_name = "PATH")]
        extra: Vec<PathBuf>,
    },
    /// Bind a devdax device to fsdev_dax (famfs.ko) or device_dax (raw mmap); nothing when it is
    /// bound so already (what scripts/daxmode does).
    Bind {
        /// The devdax device (/dev/daxN.M).
        device: PathBuf,
        /// The driver.
        #[arg(value_parser = ["fsdev_dax", "device_dax"])]
        driver: String,
    },
}
