//! `mkfs.famfs`.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use famfs_cmdline::size::human;
use famfs_format::{format_uuid, parse_uuid, DEFAULT_LOG_LEN, MIN_DEVICE_SIZE, SB_MAGIC};
use famfs_media::{Access, Media};
use famfs_meta::{local_system_uuid, mkfs, system_uuid_path, MkfsOptions};
use std::path::PathBuf;

/// Create a famfs file system on a devdax device or an image file.
#[derive(Parser, Debug)]
#[command(name = "mkfs.famfs", version, about)]
pub struct MkfsArgs {
    /// Overwrite an existing famfs file system.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Kill the existing superblock (zero its magic) and exit; needs -f when it is valid.
    #[arg(short = 'k', long)]
    pub kill: bool,
    /// Log length (power of two, at least 8M; default 8M).
    #[arg(short = 'l', long, value_parser = crate::parse_size_arg)]
    pub loglen: Option<u64>,
    /// More detail (the superblock fields written).
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// C famfs: format without dax access. Accepted: images and devices are written alike.
    #[arg(short = 'D', long)]
    pub nodax: bool,
    /// Leave the devdax device bound to fsdev_dax after a successful mkfs (as the C famfs does;
    /// `famfs mount` in module mode needs it). The device is written in either mode; a failed
    /// mkfs leaves the mode as it was.
    #[arg(long)]
    pub set_daxmode: bool,
    /// Allow deleting files from the start: the superblock gets version 49, which the C famfs
    /// tools refuse (without it, the first `famfs rm` marks it; through a mount it cannot).
    #[arg(long)]
    pub enable_delete: bool,
    /// Fixed file system uuid (for reproducible images).
    #[arg(long, hide = true)]
    pub fs_uuid: Option<String>,
    /// Fixed device uuid (for reproducible images).
    #[arg(long, hide = true)]
    pub dev_uuid: Option<String>,
    /// The devdax device (/dev/daxX.Y) or image file: the primary, which holds the log.
    pub device: PathBuf,
    /// More devices (or image files) of the same file system: each gets a secondary
    /// superblock and an ADD_DAXDEV log entry, as `famfs devadd` does.
    pub secondaries: Vec<PathBuf>,
}

fn uuid_arg(s: &Option<String>) -> Result<[u8; 16]> {
    match s {
        Some(s) => parse_uuid(s).ok_or_else(|| anyhow!("invalid uuid {s:?}")),
        None => Ok(*uuid::Uuid::new_v4().as_bytes()),
    }
}

/// Runs mkfs.famfs.
pub fn run(a: &MkfsArgs) -> Result<()> {
    let dev = &a.device;
    if a.nodax {
        eprintln!("mkfs.famfs: note: -D/--nodax accepted and not needed: images and devices are written alike");
    }
    if a.kill && !a.secondaries.is_empty() {
        bail!("-k kills the superblock of one device; give only that device");
    }
    let mounts = crate::target::mounted_at(dev);
    if !mounts.is_empty() {
        bail!(
            "{} is mounted at {}; unmount it first",
            dev.display(),
            mounts.join(", ")
        );
    }
    // Every secondary passes the devadd checks before anything is written.
    let mut secondaries = Vec::new();
    for (i, s) in a.secondaries.iter().enumerate() {
        if a.secondaries[..i]
            .iter()
            .any(|o| crate::devices::same_device(o, s))
        {
            bail!("{} is given twice", s.display());
        }
        secondaries.push((
            s,
            crate::devices::open_new_secondary(s, dev, None, a.force)?,
        ));
    }
    let media = Media::open(dev, Access::ReadWrite)
        .with_context(|| format!("cannot open {}", dev.display()))?;
    if media.kind() == famfs_media::MediaKind::MetaFiles {
        bail!(
            "{} is a directory; give a devdax device or an image file",
            dev.display()
        );
    }
    let existing = media.read_superblock().ok();
    if a.kill {
        if let Some(sb) = &existing {
            if !a.force {
                bail!(
                    "{} holds a valid famfs (fs uuid {}); add -f to kill it",
                    dev.display(),
                    format_uuid(&sb.fs_uuid)
                );
            }
        }
        let mut magic = [0u8; 8];
        media.read_fresh(0, &mut magic)?;
        if u64::from_le_bytes(magic) != SB_MAGIC && existing.is_none() {
            println!("{}: no famfs superblock to kill", dev.display());
            return Ok(());
        }
        media.write_at(0, &[0u8; 8])?;
        println!("{}: famfs superblock killed", dev.display());
        return Ok(());
    }
    if media.size() < MIN_DEVICE_SIZE {
        bail!(
            "{} is {} ({} bytes); famfs needs at least 4 GiB",
            dev.display(),
            human(media.size()),
            media.size()
        );
    }
    if let Some(sb) = &existing {
        if !a.force {
            bail!(
                "{} already holds a famfs file system (fs uuid {}); use -f to overwrite it",
                dev.display(),
                format_uuid(&sb.fs_uuid)
            );
        }
    }
    let log_len = a.loglen.unwrap_or(DEFAULT_LOG_LEN);
    if log_len < DEFAULT_LOG_LEN || !log_len.is_power_of_two() {
        bail!("log length {log_len} must be a power of two of at least 8 MiB");
    }
    if log_len + (4 << 20) > media.size() {
        bail!(
            "a log of {} leaves no data space on {}",
            human(log_len),
            dev.display()
        );
    }
    let sup = system_uuid_path();
    let system_uuid = local_system_uuid(&sup).with_context(|| {
        format!(
            "cannot read or create the system uuid file {}",
            sup.display()
        )
    })?;
    let opts = MkfsOptions {
        log_len,
        fs_uuid: uuid_arg(&a.fs_uuid)?,
        dev_uuid: uuid_arg(&a.dev_uuid)?,
        system_uuid,
        device_name: dev.to_string_lossy().into_owned(),
    };
    // Over an existing file system: wait for its appenders of this host (they take the same lock)
    // and keep them out while the log is rewritten; the next one finds the new superblock.
    let old_lock = match &existing {
        Some(sb) => Some(
            media
                .lock_fs(&sb.fs_uuid)
                .with_context(|| format!("cannot take the append lock of {}", dev.display()))?,
        ),
        None => None,
    };
    let mut sb =
        mkfs(&media, &opts).with_context(|| format!("mkfs on {} failed", dev.display()))?;
    if a.enable_delete {
        sb = famfs_meta::enable_deletes(&media)?;
    }
    drop(old_lock);
    println!("famfs file system created on {}", dev.display());
    if !secondaries.is_empty() {
        let mut fs =
            famfs_meta::Famfs::from_media(media).context("cannot open the new file system")?;
        for (path, m) in secondaries {
            let name = std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string();
            let size = m.size();
            let index = fs
                .with_log_lock(|ap| ap.add_device(m, &name, *uuid::Uuid::new_v4().as_bytes()))
                .with_context(|| format!("cannot add {}", path.display()))?;
            println!(
                "  device {index}:    {} ({}), secondary",
                path.display(),
                human(size)
            );
        }
    }
    println!(
        "  device size: {} ({} bytes)",
        human(sb.device_size),
        sb.device_size
    );
    println!(
        "  log:         {} ({} entries)",
        human(sb.log_len),
        sb.log_geometry().capacity()
    );
    println!("  fs uuid:     {}", format_uuid(&sb.fs_uuid));
    println!(
        "  system uuid: {} (this host is the master)",
        format_uuid(&sb.system_uuid)
    );
    if a.verbose > 0 {
        println!("  device uuid: {}", format_uuid(&sb.dev_uuid));
        println!("  alloc unit:  {} bytes", sb.alloc_unit);
        println!("  log offset:  {:#x}", famfs_format::LOG_OFFSET);
        println!("  data from:   {:#x}", sb.data_offset());
        println!("  device name: {}", sb.device_name_str());
    }
    Ok(())
}

/// Entry point of the binary; returns the exit code.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let a = MkfsArgs::parse_from(crate::help_alias(args));
    // The rebind runs once run() has closed the device (a device held open cannot be rebound).
    let r = run(&a).and_then(|()| {
        if a.set_daxmode {
            crate::dax::set_daxmode_fsdev("mkfs.famfs", &a.device)
        } else {
            Ok(())
        }
    });
    match r {
        Ok(()) => 0,
        Err(e) => crate::report("mkfs.famfs", &e),
    }
}
