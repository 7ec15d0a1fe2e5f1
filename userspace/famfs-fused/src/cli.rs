//! The command line of famfs-fused (here rather than in the binary so that the docs test and the
//! man page generator can walk it).

use clap::{CommandFactory, Parser};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "famfs-fused",
    version,
    about = "famfs FUSE server: serves a famfs device or image at a mount point"
)]
pub struct Args {
    /// devdax device (/dev/daxN.M) or famfs image file
    pub device: PathBuf,
    /// Directory to mount on
    pub mountpoint: PathBuf,
    /// Stay in the foreground (do not daemonize); logs go to stderr
    #[arg(short, long)]
    pub foreground: bool,
    /// Debug logging (implies nothing else; RUST_LOG overrides the level)
    #[arg(short, long)]
    pub debug: bool,
    /// More logging (-v info, -vv debug, -vvv trace)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Serve data from user space even when famfs.ko is loaded
    #[arg(long)]
    pub fallback: bool,
    /// Attribute and entry cache time in seconds (both)
    #[arg(short = 't', long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Attribute cache time in seconds
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub attr_timeout: f64,
    /// Entry (positive lookup) cache time in seconds; misses are never cached
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub entry_timeout: f64,
    /// Extra mount options, comma separated, passed to the kernel as they are
    #[arg(short = 'o', value_name = "OPT[,OPT...]")]
    pub options: Vec<String>,
    /// Write the per-opcode request counts here on SIGUSR1 and at exit
    #[arg(long, value_name = "PATH")]
    pub stats_file: Option<PathBuf>,
    /// Daemon log file (default: syslog, ident famfs-fused, once the mount is up; stderr with -f)
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// The module's control device
    #[arg(long, value_name = "PATH", default_value = famfs_kmod::CONTROL_PATH)]
    pub control: PathBuf,
    /// Request-serving threads
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Only the user who mounts (and root) may use the mount: allow_root instead of allow_other (famfs mount -u)
    #[arg(long)]
    pub owner_only: bool,
    /// How often this host heartbeats in its host slot, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// This host's lease in milliseconds: when the server has not heartbeaten for this long,
    /// famfs.ko revokes the mount's files (the host fences itself) and other hosts take it as
    /// gone (at least three heartbeats; at most 120000)
    #[arg(long, value_name = "MS", default_value_t = 10000)]
    pub lease_ms: u64,
}

/// Writes famfs-fused(8) into `dir` (`famfs-fused --gen-man DIR`, run by make install).
pub fn write_man_page(dir: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Args::command().after_long_help(
        "Normally started by `famfs mount` (famfs-mount(8)), or at boot through mount.famfs(8) or \
famfs@.service. See also: famfs(8), mkfs.famfs(8), and the famfs-rs Documentation/ (fuse-server.md, \
user-guide.md, install.md).",
    );
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("famfs-rs")
        .source(format!("famfs-rs {}", env!("CARGO_PKG_VERSION")));
    let mut buf = Vec::new();
    man.render(&mut buf).context("rendering famfs-fused(8)")?;
    let path = dir.join("famfs-fused.8");
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
