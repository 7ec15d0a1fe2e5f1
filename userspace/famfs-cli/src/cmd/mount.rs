//! `famfs mount`.

use super::common::*;
use super::umount::{cmd_umount, is_famfs_mount};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use famfs_media::dax;
use famfs_media::DaxDriver;
use famfs_meta::{Access, Famfs};
use std::path::{Path, PathBuf};

/// Mount a famfs through the FUSE server famfs-fused (root only).
#[derive(Args, Debug)]
pub struct MountArgs {
    /// Attribute and entry cache time of the mount, in seconds.
    #[arg(short = 't', long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Debug logging in the server.
    #[arg(short = 'd', long)]
    pub debug: bool,
    /// Rebind the devdax device to the driver the mode needs (fsdev_dax for famfs.ko,
    /// device_dax for --fallback).
    #[arg(long)]
    pub set_daxmode: bool,
    /// Serve data from the server itself instead of famfs.ko (slow; needs device_dax).
    #[arg(long)]
    pub fallback: bool,
    /// Remount: if MPT is a famfs mount, unmount it first, then mount DEV there.
    #[arg(short = 'R', long)]
    pub remount: bool,
    /// Cache time by name: always (one year), normal (1 s) or never (0); like -t.
    #[arg(
        short = 'c',
        long,
        value_name = "always|normal|never",
        conflicts_with = "timeout"
    )]
    pub cache: Option<String>,
    /// C famfs: use FUSE. Accepted: famfs-rs mounts are always FUSE mounts.
    #[arg(short = 'f', long)]
    pub fuse: bool,
    /// C famfs: use the standalone v1 kernel module. Refused: famfs-rs has none.
    #[arg(short = 'F', long)]
    pub nofuse: bool,
    /// C famfs: disable and re-enable the device first. Accepted: --set-daxmode rebinds here.
    #[arg(short = 'b', long)]
    pub bouncedax: bool,
    /// C famfs: mmap (default) or read(2) access to the meta files. Accepted: always mmap.
    #[arg(short = 'm', long)]
    pub mmap: bool,
    /// C famfs: see -m. Accepted.
    #[arg(short = 'r', long)]
    pub read: bool,
    /// Only the user who mounts may use the mount (no allow_other), as the C famfs -u
    #[arg(short = 'u', long)]
    pub nouseraccess: bool,
    /// C famfs: no default_permissions. Refused: the kernel's mode checks are what keeps
    /// other users out of files (famfs-fused relies on them, fuse-server.md).
    #[arg(short = 'p', long)]
    pub nodefaultperm: bool,
    /// C famfs: shadow YAML tree. Refused: no shadow trees here.
    #[arg(short = 'S', long, value_name = "PATH")]
    pub shadow: Option<PathBuf>,
    /// C famfs: dummy mount of a device. Refused: not implemented here.
    #[arg(short = 'D', long)]
    pub dummy: bool,
    /// The devdax device or image file.
    pub device: PathBuf,
    /// The directory to mount on.
    pub mpt: Option<PathBuf>,
    /// Extra arguments for famfs-fused.
    #[arg(last = true)]
    pub extra: Vec<String>,
}

pub fn run(cli: &GlobalArgs, a: &MountArgs) -> Result<bool> {
    let mut refused = Vec::new();
    for (on, opt) in [
        (a.nofuse, "-F/--nofuse"),
        (a.shadow.is_some(), "-S/--shadow"),
        (a.dummy, "-D/--dummy"),
        (a.nodefaultperm, "-p/--nodefaultperm"),
    ] {
        if on {
            refused.push(opt);
        }
    }
    let mut accepted = Vec::new();
    for (on, opt, why) in [
        (
            a.fuse,
            "-f/--fuse",
            "famfs-rs mounts are always FUSE mounts",
        ),
        (
            a.bouncedax,
            "-b/--bouncedax",
            "the device is rebound only when the mode needs it (--set-daxmode)",
        ),
        (a.mmap, "-m/--mmap", "the meta files are always mapped"),
        (a.read, "-r/--read", "the meta files are always mapped"),
    ] {
        if on {
            accepted.push((opt, why));
        }
    }
    let timeout = match a.cache.as_deref() {
        None => a.timeout,
        Some("always") => Some(3600.0 * 24.0 * 365.0),
        Some("normal") => Some(1.0),
        Some("never") => Some(0.0),
        Some(other) => bail!("-c/--cache {other:?}: use always, normal or never"),
    };
    cmd_mount(&MountReq {
        remount: a.remount,
        refused,
        accepted,
        timeout,
        debug: a.debug,
        set_daxmode: a.set_daxmode,
        fallback: a.fallback,
        owner_only: a.nouseraccess,
        device: &a.device,
        mpt: a.mpt.as_deref(),
        extra: &a.extra,
        verbose: cli.verbose,
    })
    .map(|()| true)
}

/// What `famfs mount` was asked for.
struct MountReq<'a> {
    remount: bool,
    refused: Vec<&'static str>,
    accepted: Vec<(&'static str, &'static str)>,
    timeout: Option<f64>,
    debug: bool,
    set_daxmode: bool,
    fallback: bool,
    owner_only: bool,
    device: &'a Path,
    mpt: Option<&'a Path>,
    extra: &'a [String],
    verbose: u8,
}

fn cmd_mount(r: &MountReq) -> Result<()> {
    if !r.refused.is_empty() {
        bail!(
            "famfs mount: {} of the C famfs not supported: {}",
            r.refused.join(", "),
            "famfs-rs has no standalone v1 module (-F), no shadow YAML tree (-S) and no dummy mount (-D); \
             famfs-fused always mounts with allow_other and default_permissions, which its permission \
             checks rely on (-u, -p; fuse-server.md)"
        );
    }
    for (opt, why) in &r.accepted {
        note("mount", true, opt, why);
    }
    let Some(r_mpt) = r.mpt else {
        bail!("famfs mount needs DEV and MPT")
    };
    if !nix::unistd::geteuid().is_root() {
        bail!("famfs mount must be run as root (the server needs CAP_SYS_ADMIN for FUSE passthrough and /dev/famfs)");
    }
    let mpt =
        std::fs::canonicalize(r_mpt).with_context(|| format!("mount point {}", r_mpt.display()))?;
    if !mpt.is_dir() {
        bail!("mount point {} is not a directory", mpt.display());
    }
    let device = std::fs::canonicalize(r.device)
        .with_context(|| format!("device {}", r.device.display()))?;
    if r.remount && is_famfs_mount(&mpt) {
        cmd_umount(&mpt).with_context(|| format!("remount: cannot unmount {}", mpt.display()))?;
    }
    let mounts = crate::target::mounted_at(&device);
    if !mounts.is_empty() {
        bail!(
            "{} is already mounted at {}",
            device.display(),
            mounts.join(", ")
        );
    }
    let module_loaded = Path::new("/dev/famfs").exists();
    let fallback = r.fallback || !module_loaded;
    if !r.fallback && !module_loaded {
        eprintln!("famfs: warning: famfs.ko is not loaded (no /dev/famfs): the server will run in the slow fallback mode");
    }
    if let Some(sys) = famfs_media::dax::sysfs_dir(&device) {
        let want = if fallback {
            DaxDriver::DeviceDax
        } else {
            DaxDriver::FsdevDax
        };
        let have = famfs_media::dax::driver(&device).unwrap_or(DaxDriver::Unbound);
        if have != want {
            if !r.set_daxmode {
                bail!(
                    "{} is bound to {have}, but {} mode needs {want}; add --set-daxmode to rebind it{}",
                    device.display(),
                    if fallback { "fallback" } else { "module" },
                    if fallback { "" } else { " (or use --fallback)" }
                );
            }
            dax::bind(&sys, &want)
                .with_context(|| format!("cannot rebind {} to {want}", device.display()))?;
            let now = famfs_media::dax::driver(&device).unwrap_or(DaxDriver::Unbound);
            if now != want {
                bail!(
                    "{} is bound to {now} after rebinding, not {want}",
                    device.display()
                );
            }
            println!("famfs: {} rebound from {have} to {want}", device.display());
        }
    }
    // The superblock must be valid before a server is started on it.
    {
        let media = famfs_media::Media::open(&device, Access::ReadOnly)
            .with_context(|| format!("cannot open {}", device.display()))?;
        media.read_superblock().with_context(|| {
            format!(
                "{} holds no valid famfs superblock (make one with mkfs.famfs)",
                device.display()
            )
        })?;
    }
    let want = if fallback {
        DaxDriver::DeviceDax
    } else {
        DaxDriver::FsdevDax
    };
    bind_secondaries(&device, &want, r.set_daxmode)?;
    let server = find_helper("famfs-fused").ok_or_else(|| {
        anyhow!(
            "the famfs FUSE server famfs-fused is not installed (not next to famfs nor on PATH)"
        )
    })?;
    let mut cmd = std::process::Command::new(&server);
    if let Some(t) = r.timeout {
        cmd.arg("-t").arg(t.to_string());
    }
    if r.debug {
        cmd.arg("-d");
    }
    for _ in 0..r.verbose {
        cmd.arg("-v");
    }
    if fallback {
        cmd.arg("--fallback");
    }
    if r.owner_only {
        cmd.arg("--owner-only");
    }
    cmd.arg(&device).arg(&mpt).args(r.extra);
    // famfs-fused daemonizes and returns once the mount answers, printing role and mode.
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {}", server.display()))?;
    if !st.success() {
        bail!(
            "the famfs server failed to mount {} on {} ({st})",
            device.display(),
            mpt.display()
        );
    }
    Ok(())
}

/// The secondary devices of the file system on `primary` that this host finds (by uuid), bound to
/// `want` when `rebind`, otherwise a warning for each bound otherwise: the server would fail
/// their files with ENXIO.
fn bind_secondaries(primary: &Path, want: &DaxDriver, rebind: bool) -> Result<()> {
    let found: Vec<(u32, PathBuf)> = {
        let mut fs = Famfs::open(primary, Access::ReadOnly)
            .with_context(|| format!("cannot play the log of {}", primary.display()))?;
        fs.attach_missing();
        fs.devices()
            .iter()
            .skip(1)
            .filter_map(|d| Some((d.index, fs.device_path(d.index)?.to_path_buf())))
            .collect()
        // Dropped here: a device this process holds open cannot be rebound.
    };
    for (index, path) in found {
        let (Some(sys), Some(have)) = (
            famfs_media::dax::sysfs_dir(&path),
            famfs_media::dax::driver(&path),
        ) else {
            continue;
        };
        if have == *want {
            continue;
        }
        if !rebind {
            eprintln!(
                "famfs: warning: device {index} ({}) is bound to {have}, not {want}: its files will fail to open (ENXIO); add --set-daxmode to rebind it",
                path.display()
            );
            continue;
        }
        dax::bind(&sys, want).with_context(|| {
            format!(
                "cannot rebind device {index} ({}) to {want}",
                path.display()
            )
        })?;
        println!(
            "famfs: device {index} ({}) rebound from {have} to {want}",
            path.display()
        );
    }
    Ok(())
}
