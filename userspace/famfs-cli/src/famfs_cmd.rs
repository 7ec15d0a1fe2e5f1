//! The `famfs` verbs.

use crate::pattern;
use crate::size::human;
use crate::target::Target;
use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgAction, Args, Parser, Subcommand};
use famfs_alloc::InterleaveParams;
use famfs_format::{format_uuid, Fmap, RelPath};
use famfs_media::DaxDriver;
use famfs_meta::{Access, Appender, Famfs, Ino, Layout, MetaError};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// famfs: create and inspect files in fabric-attached (CXL) shared memory.
#[derive(Parser, Debug)]
#[command(name = "famfs", version, about, propagate_version = true)]
pub struct Cli {
    /// Work on this unmounted devdax device or image file; paths are then inside the file system
    /// (e.g. /dir/file). Without it, paths are host paths inside a mounted famfs.
    #[arg(long, global = true, value_name = "DEV")]
    pub device: Option<PathBuf>,
    /// More detail.
    #[arg(short = 'v', long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Owner and permissions of created files and directories.
#[derive(Args, Debug, Clone)]
pub struct Owner {
    /// Mode (octal).
    #[arg(short = 'm', long, value_parser = crate::parse_mode)]
    pub mode: Option<u32>,
    /// Owner uid (default: the caller's).
    #[arg(short = 'u', long, value_parser = crate::parse_c_u32)]
    pub uid: Option<u32>,
    /// Owner gid (default: the caller's).
    #[arg(short = 'g', long, value_parser = crate::parse_c_u32)]
    pub gid: Option<u32>,
}

impl Owner {
    fn ids(&self) -> (u32, u32) {
        let (u, g) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        (self.uid.unwrap_or(u), self.gid.unwrap_or(g))
    }
}

/// Interleaving options; giving any of them makes an interleaved (striped) file.
#[derive(Args, Debug, Clone)]
pub struct Stripe {
    /// Number of strips (default: nbuckets).
    #[arg(short = 'N', long, value_parser = crate::parse_c_ulong)]
    pub nstrips: Option<u64>,
    /// Number of buckets the device is split into (default: nstrips).
    #[arg(short = 'B', long, value_parser = crate::parse_c_ulong)]
    pub nbuckets: Option<u64>,
    /// Chunk size (power of two, multiple of 2M; default 2M).
    #[arg(short = 'C', long, value_parser = crate::parse_size_arg)]
    pub chunksize: Option<u64>,
}

impl Stripe {
    fn layout(&self, device_size: u64) -> Result<Layout> {
        let (n, b) = match (self.nstrips, self.nbuckets) {
            (None, None) if self.chunksize.is_none() => return Ok(Layout::Contiguous),
            (None, None) => bail!("-C needs -N (strips) and/or -B (buckets)"),
            (Some(n), None) => (n, n),
            (None, Some(b)) => (b, b),
            (Some(n), Some(b)) => (n, b),
        };
        let p = InterleaveParams::new(b, n, self.chunksize.unwrap_or(2 << 20), device_size)?;
        Ok(Layout::Interleaved(p))
    }
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create directories.
    Mkdir {
        /// Create missing parents; existing directories are fine.
        #[arg(short = 'p', long)]
        parents: bool,
        #[command(flatten)]
        owner: Owner,
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Create files (allocating their memory).
    Creat {
        /// File size (e.g. 4096, 4k, 2M, 1G).
        #[arg(short = 's', long, value_parser = crate::parse_size_arg)]
        size: Option<u64>,
        /// Fill the file with the pseudo-random pattern of the seed (-S; random seed if absent).
        #[arg(short = 'r', long)]
        randomize: bool,
        /// Seed of the pattern (implies -r). On an existing file without -s: re-fill it at its
        /// size.
        #[arg(short = 'S', long, value_parser = crate::parse_c_ulong)]
        seed: Option<u64>,
        #[command(flatten)]
        owner: Owner,
        #[command(flatten)]
        stripe: Stripe,
        /// Create several files: name,size[,seed] (repeatable; seed fills it like -r -S; size 0
        /// with a seed re-fills an existing file at its size).
        #[arg(short = 'M', long = "multi", value_name = "NAME,SIZE[,SEED]")]
        multi: Vec<String>,
        /// Fill files with this many threads (one file per thread at a time; 1 to 256).
        #[arg(short = 't', long = "threadct", value_name = "N", default_value_t = 1, value_parser = crate::parse_threadct)]
        threads: usize,
        /// The file to create.
        file: Option<PathBuf>,
    },
    /// Copy files into famfs.
    Cp {
        /// Copy directories recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Copy data with this many threads (1 to 256).
        #[arg(short = 't', long = "threadct", visible_alias = "threads", default_value_t = 1, value_parser = crate::parse_threadct)]
        threads: usize,
        /// Compare each copy with its source afterwards (exit 1 on a difference).
        #[arg(short = 'c', long)]
        compare: bool,
        /// With -r: copy a source directory's contents into an existing DEST directory instead
        /// of into DEST/NAME (what the C famfs's `cp -r SRC DEST/` does).
        #[arg(long)]
        contents: bool,
        /// Apply this process's umask to -m MODE (as the C famfs does).
        #[arg(long)]
        umask: bool,
        #[command(flatten)]
        owner: Owner,
        #[command(flatten)]
        stripe: Stripe,
        /// Sources (host paths) then the destination (in famfs).
        #[arg(required = true, num_args = 2..)]
        paths: Vec<PathBuf>,
    },
    /// Check that a file holds the pattern of a seed.
    Verify {
        /// Seed of the pattern of every -f FILE.
        #[arg(short = 'S', long, value_parser = crate::parse_c_ulong)]
        seed: Option<u64>,
        /// A file to check (repeatable; files may also follow the options).
        #[arg(short = 'f', long)]
        file: Vec<PathBuf>,
        /// NAME,SEED: a file and its own seed (repeatable).
        #[arg(short = 'm', long = "multi", value_name = "NAME,SEED")]
        multi: Vec<String>,
        /// Check with this many threads (one file per thread at a time; 1 to 256, as C).
        #[arg(short = 't', long = "threadct", value_name = "N", default_value_t = 1, value_parser = crate::parse_threadct)]
        threads: usize,
        /// Print nothing; the exit code says whether every file matched.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// More files to check against -S SEED.
        files: Vec<PathBuf>,
    },
    /// Play the log and report what it holds.
    Logplay {
        /// Dry run (report only).
        #[arg(short = 'n', long, visible_alias = "dryrun")]
        dry_run: bool,
        /// C famfs: play as a client. Accepted: our log play never writes, on any host.
        #[arg(short = 'c', long)]
        client: bool,
        /// With --shadow: read the superblock and log from this device or image (only with
        /// --shadow, as in C; otherwise use --device DEV).
        #[arg(short = 'd', long = "daxdev", value_name = "DEV")]
        daxdev: Option<PathBuf>,
        /// C famfs: read the log through mmap. Accepted: the only way here.
        #[arg(short = 'm', long)]
        mmap: bool,
        /// C famfs: read the log with read(2). Accepted: the log is always mapped here. Not with
        /// -m (as in C).
        #[arg(short = 'r', long, conflicts_with = "mmap")]
        read: bool,
        /// Play the log into the C famfs's shadow tree under PATH (an existing directory; the
        /// tree goes to PATH/root): a directory per logged directory and a YAML file per file.
        #[arg(short = 'S', long, value_name = "PATH")]
        shadow: Option<PathBuf>,
        /// With --shadow: read every shadow YAML file back and check it describes the logged
        /// file (always on with -d/--daxdev, as in C).
        #[arg(short = 's', long, requires = "shadow")]
        shadowtest: bool,
        /// Leave the devdax device bound to fsdev_dax afterwards (as the C famfs does; `famfs
        /// mount` in module mode needs it). The log is read in either mode.
        #[arg(long)]
        set_daxmode: bool,
        /// Mount point (not needed with --device).
        mpt: Option<PathBuf>,
    },
    /// Check a file system: superblock, log, namespace and allocation.
    #[command(disable_help_flag = true)]
    Fsck {
        /// Human-readable sizes.
        #[arg(short = 'h', long)]
        human: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Also report used and free space in N equal buckets of the device (as interleaving
        /// sees them).
        #[arg(short = 'B', long, value_name = "N", value_parser = crate::parse_c_ulong)]
        nbuckets: Option<u64>,
        /// C famfs: check even if mounted. Accepted: fsck only reads, mounted or not.
        #[arg(short = 'f', long)]
        force: bool,
        /// C famfs: do not use dax. Accepted: images and devices are read alike.
        #[arg(short = 'D', long)]
        nodax: bool,
        /// C famfs: read through mmap. Accepted: the only way here.
        #[arg(short = 'm', long)]
        mmap: bool,
        /// C famfs: read with read(2). Accepted: the metadata is always mapped here. Not with -m
        /// (as in C).
        #[arg(short = 'r', long, conflicts_with = "mmap")]
        read: bool,
        /// Leave the devdax device bound to fsdev_dax afterwards (as the C famfs does; `famfs
        /// mount` in module mode needs it). The device is read in either mode.
        #[arg(long)]
        set_daxmode: bool,
        /// Print help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
        /// Device, image or a path in a mounted famfs (default: --device).
        path: Option<PathBuf>,
    },
    /// Print a file's map.
    Getmap {
        /// No output; the exit code says whether FILE is a famfs file.
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long)]
        json: bool,
        file: PathBuf,
    },
    /// Write a famfs file's content to standard output (handy with --device).
    Cat {
        file: PathBuf,
    },
    /// Flush the CPU caches of files' memory (every file under a directory; the meta files too
    /// for the root).
    Flush {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check every file of a mounted famfs against the log: each regular file must be a logged
    /// file of the same size, and each logged path must be there.
    Check {
        /// The mount point (or a path inside it).
        mpt: PathBuf,
    },
    /// Read a meta file (.meta/.superblock or .meta/.log, or a copy of one) and check it.
    Chkread {
        /// FILE must be a superblock (C famfs -s); its fields are printed as C prints them.
        #[arg(short = 's', long, conflicts_with = "log")]
        superblock: bool,
        /// FILE must be a log (C famfs -l); its header is printed as C prints it.
        #[arg(short = 'l', long)]
        log: bool,
        /// The file.
        file: PathBuf,
    },
    /// Log a new file DEST sharing SRC's memory (a cross-linked file, for testing fsck).
    Clone {
        /// The existing famfs file.
        src: PathBuf,
        /// The new file.
        dest: PathBuf,
    },
    /// C famfs: create the meta files of a standalone mount. Nothing to do here: famfs-fused
    /// serves .meta/.superblock and .meta/.log itself; says whether DEV is mounted.
    Mkmeta {
        /// The device.
        device: PathBuf,
    },
    /// Mount a famfs through the FUSE server famfs-fused (root only).
    Mount {
        /// Attribute and entry cache time of the mount, in seconds.
        #[arg(short = 't', long, value_name = "SECS")]
        timeout: Option<f64>,
        /// Debug logging in the server.
        #[arg(short = 'd', long)]
        debug: bool,
        /// Rebind the devdax device to the driver the mode needs (fsdev_dax for famfs.ko,
        /// device_dax for --fallback).
        #[arg(long)]
        set_daxmode: bool,
        /// Serve data from the server itself instead of famfs.ko (slow; needs device_dax).
        #[arg(long)]
        fallback: bool,
        /// Remount: if MPT is a famfs mount, unmount it first, then mount DEV there.
        #[arg(short = 'R', long)]
        remount: bool,
        /// Cache time by name: always (one year), normal (1 s) or never (0); like -t.
        #[arg(
            short = 'c',
            long,
            value_name = "always|normal|never",
            conflicts_with = "timeout"
        )]
        cache: Option<String>,
        /// C famfs: use FUSE. Accepted: famfs-rs mounts are always FUSE mounts.
        #[arg(short = 'f', long)]
        fuse: bool,
        /// C famfs: use the standalone v1 kernel module. Refused: famfs-rs has none.
        #[arg(short = 'F', long)]
        nofuse: bool,
        /// C famfs: disable and re-enable the device first. Accepted: --set-daxmode rebinds here.
        #[arg(short = 'b', long)]
        bouncedax: bool,
        /// C famfs: mmap (default) or read(2) access to the meta files. Accepted: always mmap.
        #[arg(short = 'm', long)]
        mmap: bool,
        /// C famfs: see -m. Accepted.
        #[arg(short = 'r', long)]
        read: bool,
        /// Only the user who mounts may use the mount (no allow_other), as the C famfs -u
        #[arg(short = 'u', long)]
        nouseraccess: bool,
        /// C famfs: no default_permissions. Refused: the kernel's mode checks are what keeps
        /// other users out of files (famfs-fused relies on them, fuse-server.md).
        #[arg(short = 'p', long)]
        nodefaultperm: bool,
        /// C famfs: shadow YAML tree. Refused: no shadow trees here.
        #[arg(short = 'S', long, value_name = "PATH")]
        shadow: Option<PathBuf>,
        /// C famfs: dummy mount of a device. Refused: not implemented here.
        #[arg(short = 'D', long)]
        dummy: bool,
        /// The devdax device or image file.
        device: PathBuf,
        /// The directory to mount on.
        mpt: Option<PathBuf>,
        /// Extra arguments for famfs-fused.
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Unmount a famfs.
    Umount {
        mpt: PathBuf,
    },
    /// Add a memory device to a file system (a secondary: its own superblock, no log).
    Devadd {
        /// Overwrite a famfs (primary or secondary) already on DEVICE.
        #[arg(short = 'f', long)]
        force: bool,
        /// The file system: its mount point (online, under the log lock) or its primary device
        /// or image (offline).
        target: PathBuf,
        /// The devdax device or image file to add.
        device: PathBuf,
    },
    /// Find famfs devices on this host by uuid (names differ between hosts).
    Daxdev {
        /// JSON output.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: crate::devices::DaxdevAction,
    },
    Hosts(crate::hosts_cmd::HostsArgs),
    /// Write the man pages of famfs, its verbs and mkfs.famfs into DIR (used by make install).
    #[command(hide = true)]
    GenMan {
        dir: PathBuf,
    },
}

fn need_dev_or_mount(cli: &Cli, hint: &Path, access: Access) -> Result<Target> {
    Target::open(cli.device.as_deref(), hint, access)
}

/// Writes the pattern of `seed` over the whole file.
fn fill_file(t: &Target, ino: Ino, rel: &RelPath, size: u64, seed: u64) -> Result<()> {
    let mut buf = vec![0u8; (4 << 20).min(size as usize)];
    let mut host = match t.host_path(rel) {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => None,
    };
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        pattern::fill(seed, off, &mut buf[..n]);
        match &mut host {
            Some(f) => f.write_all(&buf[..n])?,
            None => t.fs.write_data(ino, off, &buf[..n])?,
        }
        off += n as u64;
    }
    Ok(())
}

fn random_seed() -> u64 {
    u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
}

/// Runs `f` over `items` with up to `threads` threads; returns the errors, in item order.
fn parallel<T: Sync>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Vec<(usize, anyhow::Error)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, 64).min(items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(it) = items.get(i) else { break };
                if let Err(e) = f(it) {
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, e));
                }
            });
        }
    });
    let mut v = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    v.sort_by_key(|(i, _)| *i);
    v
}

/// Options of `famfs creat`.
struct CreatOpts<'a> {
    size: Option<u64>,
    randomize: bool,
    seed: Option<u64>,
    owner: &'a Owner,
    stripe: &'a Stripe,
    multi: &'a [String],
    file: &'a Option<PathBuf>,
    threads: usize,
}

fn cmd_creat(cli: &Cli, o: &CreatOpts) -> Result<()> {
    // (path, size, seed); no size: an existing file re-filled at its size (C scripts re-randomise
    // files with `creat -S SEED -r FILE` or `-M FILE,0,SEED`).
    let mut jobs: Vec<(PathBuf, Option<u64>, Option<u64>)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    if (o.randomize || o.seed.is_some()) && !o.multi.is_empty() {
        bail!("-r/-S do not combine with -M: give each file's seed in -M NAME,SIZE,SEED");
    }
    if let Some(f) = o.file {
        let seed = if o.randomize || o.seed.is_some() {
            Some(o.seed.unwrap_or_else(random_seed))
        } else {
            None
        };
        if o.size.is_none() && seed.is_none() {
            bail!("creat needs -s SIZE (or -r/-S SEED to re-fill an existing file)");
        }
        jobs.push((f.clone(), o.size, seed));
    } else if o.size.is_some() {
        bail!("creat -s needs a FILE");
    }
    for m in o.multi {
        let parts: Vec<&str> = m.split(',').collect();
        if parts.len() < 2 || parts.len() > 3 {
            bail!("-M {m:?}: expected name,size[,seed]");
        }
        let size = crate::size::parse_size(parts[1]).map_err(|e| anyhow!("-M {m:?}: {e}"))?;
        let seed = parts
            .get(2)
            .map(|s| crate::parse_c_ulong(s).map_err(|e| anyhow!("-M {m:?}: bad seed: {e}")))
            .transpose()?;
        if size == 0 && seed.is_none() {
            bail!("-M {m:?}: size 0 re-fills an existing file and needs a seed (NAME,0,SEED)");
        }
        jobs.push((PathBuf::from(parts[0]), (size != 0).then_some(size), seed));
    }
    if jobs.is_empty() {
        bail!("nothing to create: give FILE with -s SIZE, or -M name,size[,seed]");
    }
    let mut t = need_dev_or_mount(cli, &jobs[0].0, Access::ReadWrite)?;
    let layout = o.stripe.layout(
        t.fs.superblock()
            .device_size
            .min(t.fs.bitmap().device_size()),
    )?;
    let (uid, gid) = o.owner.ids();
    let mode = o.owner.mode.unwrap_or(0o644);
    // A bad name in one -M does not stop the others (as the C tool); the exit code says.
    let single = jobs.len() == 1;
    let mut good: Vec<(RelPath, Option<u64>, Option<u64>)> = Vec::new();
    for (p, size, seed) in &jobs {
        match t.rel(p) {
            Ok(r) => good.push((r, *size, *seed)),
            Err(e) if single => return Err(e),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    let mut created: Vec<(Ino, RelPath, u64, Option<u64>)> = Vec::new();
    t.fs.with_log_lock(|a: &mut Appender<'_>| {
        for (rel, size, seed) in &good {
            // An existing file of the same size is re-initialised (refilled with -r/-S), as the C
            // tool does; a famfs file cannot change size.
            let existing = a.namespace().resolve(rel.as_str()).and_then(|i| a.namespace().get(i)).map(|n| (n.ino, n.file().map(|f| f.size)));
            let r = match (existing, *size) {
                (Some((ino, Some(sz))), None) => Ok((ino, sz)),
                (Some((ino, Some(sz))), Some(size)) if sz == size => Ok((ino, sz)),
                (Some((_, Some(sz))), Some(size)) => Err(MetaError::Exists(format!("{rel} ({sz} bytes, not {size}: a famfs file cannot change size)"))),
                (Some((_, None)), _) => Err(MetaError::IsADirectory(rel.to_string())),
                (None, Some(size)) => a.create_file(rel, size, mode, uid, gid, layout).map(|ino| (ino, size)),
                (None, None) => Err(MetaError::NotFound(format!("{rel} (without -s SIZE, or with size 0 in -M, only an existing file is re-filled)"))),
            };
            match r {
                Ok((ino, size)) => created.push((ino, rel.clone(), size, *seed)),
                Err(e) if single => return Err(e),
                // Out of space or a full log ends the session (as in C); other errors skip one file.
                Err(e @ (MetaError::Alloc(_) | MetaError::LogFull { .. })) => {
                    failed.push(e.to_string());
                    break;
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
        Ok(())
    })?;
    // A seed we picked ourselves is printed: without it the file could not be verified.
    let seed_picked = o.randomize && o.seed.is_none();
    let fills: Vec<_> = created.iter().filter(|c| c.3.is_some()).collect();
    let errors = parallel(&fills, o.threads, |(ino, rel, size, seed)| {
        let seed = seed.unwrap_or_default();
        fill_file(&t, *ino, rel, *size, seed).with_context(|| format!("cannot fill /{rel}"))?;
        if cli.verbose > 0 || seed_picked {
            eprintln!("/{rel}: filled with seed {seed}");
        }
        Ok(())
    });
    failed.extend(errors.into_iter().map(|(_, e)| format!("{e:#}")));
    if !failed.is_empty() {
        for f in &failed {
            eprintln!("famfs creat: {f}");
        }
        bail!("{} of {} files not created", failed.len(), jobs.len());
    }
    Ok(())
}

fn cmd_mkdir(cli: &Cli, parents: bool, owner: &Owner, dirs: &[PathBuf]) -> Result<()> {
    let mut t = need_dev_or_mount(cli, &dirs[0], Access::ReadWrite)?;
    let (uid, gid) = owner.ids();
    let mode = owner.mode.unwrap_or(0o755);
    let mut rels: Vec<RelPath> = Vec::new();
    for d in dirs {
        // The root (the mount point itself) exists: fine with -p, as for any directory.
        if t.rel_str(d)?.is_empty() {
            if !parents {
                bail!("{}: already exists (the root)", d.display());
            }
            continue;
        }
        rels.push(t.rel(d)?);
    }
    if rels.is_empty() {
        return Ok(());
    }
    t.fs.with_log_lock(|a| {
        for r in &rels {
            if parents {
                a.mkdir_p(r, mode, uid, gid)?;
            } else {
                a.mkdir(r, mode, uid, gid)?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// One planned copy.
struct CopyJob {
    src: PathBuf,
    rel: RelPath,
    size: u64,
    ino: Ino,
}

/// Options of `famfs cp`.
struct CpOpts<'a> {
    recursive: bool,
    threads: usize,
    compare: bool,
    contents: bool,
    umask: bool,
    owner: &'a Owner,
    stripe: &'a Stripe,
}

/// This process's umask (from /proc/self/status; 022 when it cannot be read).
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Umask:")
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
        })
        .unwrap_or(0o022)
}

fn cmd_cp(cli: &Cli, o: &CpOpts, paths: &[PathBuf]) -> Result<()> {
    let (srcs, dest) = paths.split_at(paths.len() - 1);
    let dest = &dest[0];
    let mut t = need_dev_or_mount(cli, dest, Access::ReadWrite)?;
    let layout = o.stripe.layout(t.fs.bitmap().device_size())?;
    let (uid, gid) = o.owner.ids();
    let fmode = o
        .owner
        .mode
        .map(|m| if o.umask { m & !process_umask() } else { m });
    let dest_rel = t.rel_str(dest)?;
    let dest_is_dir =
        t.fs.namespace()
            .resolve(&dest_rel)
            .and_then(|i| t.fs.namespace().get(i))
            .is_some_and(|n| n.is_dir());
    if srcs.len() > 1 && !dest_is_dir {
        bail!(
            "copying several sources needs an existing directory as destination; {} is not one",
            dest.display()
        );
    }
    // Plan: (src, destination rel path, is_dir)
    let mut plan: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let join = |dir: &str, name: &str| {
        if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        }
    };
    fn walk(src: &Path, dst: String, plan: &mut Vec<(PathBuf, String, bool)>) -> Result<()> {
        let md =
            std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
        if md.is_dir() {
            plan.push((src.to_path_buf(), dst.clone(), true));
            let mut entries: Vec<_> = std::fs::read_dir(src)?.collect::<std::io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                walk(&e.path(), format!("{dst}/{name}"), plan)?;
            }
        } else if md.is_file() {
            plan.push((src.to_path_buf(), dst, false));
        } else {
            bail!("{}: not a regular file or directory", src.display());
        }
        Ok(())
    }
    for s in srcs {
        let is_dir = std::fs::metadata(s)
            .with_context(|| format!("cannot read {}", s.display()))?
            .is_dir();
        if is_dir && !o.recursive {
            // As the C tool: the other sources are still copied; the exit code says one was not.
            refused.push(format!("{} is a directory (use -r)", s.display()));
            continue;
        }
        let base = s
            .file_name()
            .ok_or_else(|| anyhow!("{}: no file name", s.display()))?
            .to_string_lossy()
            .into_owned();
        if is_dir && o.contents && dest_is_dir {
            let mut entries: Vec<_> = std::fs::read_dir(s)?.collect::<std::io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                walk(
                    &e.path(),
                    join(&dest_rel, &e.file_name().to_string_lossy()),
                    &mut plan,
                )?;
            }
            continue;
        }
        let dst = if dest_is_dir {
            join(&dest_rel, &base)
        } else {
            dest_rel.clone()
        };
        walk(s, dst, &mut plan)?;
    }
    let mut jobs: Vec<CopyJob> = Vec::new();
    let mut skipped = 0;
    t.fs.with_log_lock(|a| {
        for (src, dst, is_dir) in &plan {
            let rel = RelPath::from_fs_path(dst)?;
            let existing = a
                .namespace()
                .resolve(rel.as_str())
                .and_then(|i| a.namespace().get(i))
                .map(|n| (n.ino, n.is_dir(), n.size()));
            if *is_dir {
                match existing {
                    Some((_, true, _)) => {}
                    Some((_, false, _)) => return Err(MetaError::NotADirectory(rel.to_string())),
                    None => {
                        a.mkdir(&rel, fmode.unwrap_or(0o755), uid, gid)?;
                    }
                }
                continue;
            }
            let md = std::fs::metadata(src)
                .map_err(|e| MetaError::NotFound(format!("{}: {e}", src.display())))?;
            if md.len() == 0 {
                eprintln!(
                    "famfs cp: skipping {}: famfs cannot hold empty files",
                    src.display()
                );
                skipped += 1;
                continue;
            }
            // An existing file of the same size is overwritten in place (as the C tool does); a
            // famfs file cannot change size.
            if let Some((ino, is_dir, size)) = existing {
                if is_dir {
                    return Err(MetaError::IsADirectory(rel.to_string()));
                }
                if size != md.len() {
                    return Err(MetaError::Exists(format!(
                        "{rel} ({size} bytes; the source has {}: a famfs file cannot change size)",
                        md.len()
                    )));
                }
                jobs.push(CopyJob {
                    src: src.clone(),
                    rel,
                    size,
                    ino,
                });
                continue;
            }
            use std::os::unix::fs::PermissionsExt;
            let mode = fmode.unwrap_or(md.permissions().mode() & 0o777);
            let ino = a.create_file(&rel, md.len(), mode, uid, gid, layout)?;
            jobs.push(CopyJob {
                src: src.clone(),
                rel,
                size: md.len(),
                ino,
            });
        }
        Ok(())
    })?;
    let threads = o.threads;
    let compare = o.compare;
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(j) = jobs.get(i) else { break };
                if let Err(e) = copy_one(&t, j, &bar) {
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{}: {e:#}", j.src.display()));
                }
            });
        }
    });
    bar.finish_and_clear();
    // -c compares once every copy is done: a destination written twice in one
    // run (two sources with the same name into one directory) or a source changed meanwhile
    // shows up as a difference.
    if compare {
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads.min(jobs.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(j) = jobs.get(i) else { break };
                    if let Err(e) = compare_one(&t, j) {
                        errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{}: {e:#}", j.src.display()));
                    }
                });
            }
        });
    }
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    for e in errors.iter().chain(&refused) {
        eprintln!("famfs cp: {e}");
    }
    if !errors.is_empty() || skipped > 0 || !refused.is_empty() {
        bail!(
            "{} of {} sources not copied",
            errors.len() + skipped + refused.len(),
            jobs.len() + skipped + refused.len()
        );
    }
    Ok(())
}

/// Reads a copy back and compares it with its source (`cp -c`).
fn compare_one(t: &Target, j: &CopyJob) -> Result<()> {
    let mut src = std::fs::File::open(&j.src)?;
    let now = src.metadata()?.len();
    if now != j.size {
        bail!(
            "/{}: the copy differs from its source: {} bytes copied, the source now has {now}",
            j.rel,
            j.size
        );
    }
    let mut host = match t.host_path(&j.rel) {
        Some(p) => {
            Some(std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?)
        }
        None => None,
    };
    let n = (4 << 20).min(j.size as usize);
    let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
    let mut off = 0u64;
    while off < j.size {
        let len = (j.size - off).min(n as u64) as usize;
        src.read_exact(&mut a[..len])?;
        match &mut host {
            Some(f) => f.read_exact(&mut b[..len])?,
            None => t.fs.read_data(j.ino, off, &mut b[..len])?,
        }
        if let Some(i) = a[..len].iter().zip(&b[..len]).position(|(x, y)| x != y) {
            bail!(
                "/{}: the copy differs from its source at offset {}",
                j.rel,
                off + i as u64
            );
        }
        off += len as u64;
    }
    Ok(())
}

fn copy_one(t: &Target, j: &CopyJob, bar: &indicatif::ProgressBar) -> Result<()> {
    let mut src = std::fs::File::open(&j.src)?;
    let mut dst = match t.host_path(&j.rel) {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => None,
    };
    let mut buf = vec![0u8; (4 << 20).min(j.size as usize)];
    let mut off = 0u64;
    while off < j.size {
        let want = (j.size - off).min(buf.len() as u64) as usize;
        let n = src.read(&mut buf[..want])?;
        if n == 0 {
            bail!("source shrank while copying (at {off} of {} bytes)", j.size);
        }
        match &mut dst {
            Some(f) => f.write_all(&buf[..n])?,
            None => t.fs.write_data(j.ino, off, &buf[..n])?,
        }
        off += n as u64;
        bar.inc(n as u64);
    }
    Ok(())
}

/// Options of `famfs verify`.
struct VerifyOpts<'a> {
    seed: Option<u64>,
    files: Vec<PathBuf>,
    multi: &'a [String],
    threads: usize,
    quiet: bool,
}

fn cmd_verify(cli: &Cli, o: &VerifyOpts) -> Result<bool> {
    let mut jobs: Vec<(PathBuf, u64)> = Vec::new();
    if !o.files.is_empty() {
        let seed = o
            .seed
            .ok_or_else(|| anyhow!("verify -f FILE needs -S SEED"))?;
        jobs.extend(o.files.iter().map(|f| (f.clone(), seed)));
    }
    for m in o.multi {
        let (name, seed) = m
            .rsplit_once(',')
            .ok_or_else(|| anyhow!("-m {m:?}: expected NAME,SEED"))?;
        let seed = crate::parse_c_ulong(seed).map_err(|e| anyhow!("-m {m:?}: bad seed: {e}"))?;
        jobs.push((PathBuf::from(name), seed));
    }
    if jobs.is_empty() {
        bail!("nothing to verify: give -S SEED -f FILE, or -m NAME,SEED");
    }
    let t = need_dev_or_mount(cli, &jobs[0].0, Access::ReadOnly)?;
    let errors = parallel(&jobs, o.threads, |(file, seed)| {
        verify_one(&t, file, *seed)?;
        if cli.verbose > 0 && !o.quiet {
            println!("{}: matches seed {seed}", file.display());
        }
        Ok(())
    });
    if !o.quiet {
        for (_, e) in &errors {
            eprintln!("famfs verify: {e:#}");
        }
    }
    Ok(errors.is_empty())
}

fn verify_one(t: &Target, file: &Path, seed: u64) -> Result<()> {
    let rel = t.rel(file)?;
    let ino =
        t.fs.namespace()
            .resolve(rel.as_str())
            .ok_or_else(|| anyhow!("/{rel}: no such file"))?;
    let size =
        t.fs.namespace()
            .get(ino)
            .and_then(|n| n.file())
            .ok_or_else(|| anyhow!("/{rel}: not a file"))?
            .size;
    let mut host = match t.host_path(&rel) {
        Some(p) => {
            Some(std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?)
        }
        None => None,
    };
    let mut buf = vec![0u8; (4 << 20).min(size as usize)];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        match &mut host {
            Some(f) => f.read_exact(&mut buf[..n])?,
            None => t.fs.read_data(ino, off, &mut buf[..n])?,
        }
        if let Some(i) = pattern::first_mismatch(seed, off, &buf[..n]) {
            bail!(
                "/{rel}: content differs from the pattern of seed {seed} at offset {}",
                off + i as u64
            );
        }
        off += n as u64;
    }
    Ok(())
}

/// Reads an xattr of `path` (a famfs mount's root answers `user.famfs.*`).
pub fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 64 << 10];
    let n = rustix::fs::getxattr(path, name, &mut buf[..])?;
    buf.truncate(n);
    Ok(buf)
}

/// Options of `famfs logplay`.
struct LogplayOpts<'a> {
    dry_run: bool,
    client: bool,
    daxdev: &'a Option<PathBuf>,
    mmap: bool,
    read: bool,
    shadow: &'a Option<PathBuf>,
    shadowtest: bool,
    mpt: &'a Option<PathBuf>,
}

/// Says on stderr why an option of the C famfs is accepted and does nothing here.
fn note(verb: &str, given: bool, opt: &str, why: &str) {
    if given {
        eprintln!("famfs {verb}: note: {opt} accepted and not needed: {why}");
    }
}

fn cmd_logplay(cli: &Cli, o: &LogplayOpts) -> Result<()> {
    if o.daxdev.is_some() && o.shadow.is_none() {
        bail!("logplay -d/--daxdev DEV is only used with --shadow (as in the C famfs); to play the log of a device or image, use --device DEV");
    }
    if let Some(dir) = o.shadow {
        return shadow_logplay(cli, o, dir);
    }
    note(
        "logplay",
        o.client,
        "-c/--client",
        "this log play never writes, on any host",
    );
    note("logplay", o.mmap, "-m/--mmap", "the log is always mapped");
    note(
        "logplay",
        o.read,
        "-r/--read",
        "the log is always mapped (and cache lines invalidated first)",
    );
    let device = cli.device.clone();
    let dry_run = o.dry_run;
    let mpt = o.mpt;
    let hint = mpt.clone().unwrap_or_else(|| PathBuf::from("."));
    if device.is_none() && !dry_run {
        // On a mount the server owns the namespace: ask it to play the log tail now.
        if let Some(m) = crate::target::find_mount(&hint) {
            let v = get_xattr(&m, "user.famfs.logplay").with_context(|| {
                format!(
                    "{}: cannot make the famfs server play the log (xattr user.famfs.logplay)",
                    m.display()
                )
            })?;
            println!(
                "{}: server {}",
                m.display(),
                String::from_utf8_lossy(&v).trim_end()
            );
        }
    }
    let t = Target::open(device.as_deref(), &hint, Access::ReadOnly)?;
    let ns = t.fs.namespace();
    println!(
        "{}played {} log entries: {} files, {} directories{}{}",
        if dry_run { "(dry run) " } else { "" },
        t.fs.played(),
        ns.file_count(),
        ns.dir_count(),
        match t.fs.daxdevs().len() {
            0 => String::new(),
            n => format!(", {n} ADD_DAXDEV"),
        },
        if t.mpt.is_some() {
            " (the FUSE server plays the log itself; nothing to instantiate)"
        } else {
            ""
        }
    );
    if cli.verbose > 0 {
        for n in ns.nodes().skip(1) {
            println!(
                "  {} /{}",
                if n.is_dir() { "dir " } else { "file" },
                ns.path_of(n.ino).unwrap_or_default()
            );
        }
        for d in t.fs.daxdevs() {
            println!("  {}", daxdev_line(d));
        }
    }
    for p in t.fs.problems() {
        println!("  warning: {p}");
    }
    Ok(())
}

/// `famfs logplay --shadow DIR`: the C famfs's shadow tree (crate::shadow), from --daxdev DEV,
/// --device DEV or the mount MPT. Existing files and directories are kept (a second run over the
/// same tree adds what the log gained). Errors are counted, reported, and make the exit code 1.
fn shadow_logplay(cli: &Cli, o: &LogplayOpts, dir: &Path) -> Result<()> {
    use crate::shadow::{shadow_file, shadow_root, ShadowFile, ShadowStats};
    use famfs_format::LogEntryBody;
    println!("Logplay: running in shadow test mode");
    let device = o.daxdev.clone().or_else(|| cli.device.clone());
    let test = o.shadowtest || o.daxdev.is_some();
    let hint = o.mpt.clone().unwrap_or_else(|| PathBuf::from("."));
    let t = Target::open(device.as_deref(), &hint, Access::ReadOnly)?;
    let root = shadow_root(dir)?;
    let sb = t.fs.superblock().clone();
    let mut st = ShadowStats::default();
    let mut errors: Vec<String> = Vec::new();
    let verbose = cli.verbose > 0;
    if !o.dry_run {
        // The meta files (not counted: the C tool counts them apart).
        let meta = root.join(".meta");
        if !meta.is_dir() {
            std::fs::create_dir(&meta)
                .with_context(|| format!("cannot create {}", meta.display()))?;
        }
        let mut mst = ShadowStats::default();
        let log_mode = if t.fs.role() == famfs_meta::Role::Master {
            0o644
        } else {
            0o444
        };
        let sbf = ShadowFile::meta(".meta/.superblock", 0, famfs_format::LOG_OFFSET, 0o444);
        let logf = ShadowFile::meta(".meta/.log", famfs_format::LOG_OFFSET, sb.log_len, log_mode);
        for (name, f) in [(".superblock", sbf), (".log", logf)] {
            if let Err(e) = shadow_file(&meta.join(name), &f, false, &mut mst, verbose) {
                errors.push(format!("{e:#}"));
            }
        }
    }
    let h = t.fs.log_header()?;
    for i in 0..h.next_index() {
        let entry =
            t.fs.media()
                .read_log_entry(&sb, i)
                .with_context(|| format!("log entry {i}"))?;
        st.entries += 1;
        match entry.body {
            LogEntryBody::File(f) => {
                if o.dry_run {
                    continue;
                }
                let path = root.join(f.path.as_str());
                if let Err(e) =
                    shadow_file(&path, &ShadowFile::of_entry(&f), test, &mut st, verbose)
                {
                    errors.push(format!("{e:#}"));
                }
            }
            LogEntryBody::Mkdir(d) => {
                if o.dry_run {
                    continue;
                }
                let path = root.join(d.path.as_str());
                match std::fs::symlink_metadata(&path) {
                    Ok(md) if md.is_dir() => st.dirs_existed += 1,
                    Ok(_) => {
                        st.dir_errors += 1;
                        errors.push(format!(
                            "{}: something other than a directory where one should be",
                            path.display()
                        ));
                    }
                    Err(_) => {
                        use std::os::unix::fs::DirBuilderExt;
                        let made = std::fs::DirBuilder::new()
                            .mode(d.mode & 0o7777)
                            .create(&path);
                        // As the C tool: the owner is set only when both ids are non-zero.
                        let owned = made.and_then(|()| {
                            if d.uid != 0 && d.gid != 0 {
                                std::os::unix::fs::chown(&path, Some(d.uid), Some(d.gid))
                            } else {
                                Ok(())
                            }
                        });
                        match owned {
                            Ok(()) => st.dirs_created += 1,
                            Err(e) => {
                                st.dir_errors += 1;
                                errors.push(format!(
                                    "cannot create directory {}: {e}",
                                    path.display()
                                ));
                            }
                        }
                    }
                }
            }
            LogEntryBody::AddDaxdev(_) => {}
        }
    }
    println!(
        "famfs_logplay(shadow): {} log entries; {} new files; {} new directories",
        st.entries, st.files_created, st.dirs_created
    );
    if verbose {
        println!(
            "\tCreated:  {} files, {} directories",
            st.files_created, st.dirs_created
        );
        println!(
            "\tExisted: {} files, {} directories",
            st.files_existed, st.dirs_existed
        );
    }
    if st.file_errors > 0 || st.dir_errors > 0 {
        println!(
            "\t{} file errors and {} dir errors",
            st.file_errors, st.dir_errors
        );
    }
    if st.yaml_checked > 0 {
        println!("\tshadow yaml checked for {} files", st.yaml_checked);
        println!("\tthere were {} yaml errors detected", st.yaml_errors);
    }
    for e in &errors {
        eprintln!("famfs logplay: {e}");
    }
    if !errors.is_empty() {
        bail!(
            "{} errors playing the log into the shadow tree {}",
            errors.len(),
            root.display()
        );
    }
    Ok(())
}

fn daxdev_json(d: &famfs_format::DaxdevEntry) -> serde_json::Value {
    serde_json::json!({"index": d.index, "size": d.size, "uuid": format_uuid(&d.uuid), "name": d.name})
}

fn daxdev_line(d: &famfs_format::DaxdevEntry) -> String {
    format!(
        "daxdev index {} size {} uuid {} name {:?}",
        d.index,
        d.size,
        format_uuid(&d.uuid),
        d.name
    )
}

fn fmap_json(f: &Fmap) -> serde_json::Value {
    let ext = |e: &famfs_format::Extent| serde_json::json!({"devindex": e.devindex, "offset": e.offset, "len": e.len});
    match f {
        Fmap::Simple(v) => {
            serde_json::json!({"type": "simple", "extents": v.iter().map(ext).collect::<Vec<_>>()})
        }
        Fmap::Interleaved(i) => serde_json::json!({
            "type": "interleaved", "nstrips": i.nstrips(), "chunk_size": i.chunk_size(),
            "strips": i.strips().iter().map(ext).collect::<Vec<_>>()
        }),
    }
}

fn print_fmap(f: &Fmap, indent: &str) {
    match f {
        Fmap::Simple(v) => {
            println!("{indent}extent type: simple, {} extent(s)", v.len());
            for e in v {
                println!(
                    "{indent}  devindex {} offset {:#x} len {:#x}",
                    e.devindex, e.offset, e.len
                );
            }
        }
        Fmap::Interleaved(i) => {
            println!(
                "{indent}extent type: interleaved, {} strips, chunk size {:#x}",
                i.nstrips(),
                i.chunk_size()
            );
            for e in i.strips() {
                println!(
                    "{indent}  strip devindex {} offset {:#x} len {:#x}",
                    e.devindex, e.offset, e.len
                );
            }
        }
    }
}

/// fsck: returns whether damage was found.
/// Options of `famfs fsck` beyond -h and --json.
struct FsckExtra {
    nbuckets: Option<u64>,
    force: bool,
    nodax: bool,
    mmap: bool,
    read: bool,
}

fn cmd_fsck(
    cli: &Cli,
    human_sizes: bool,
    json: bool,
    path: &Option<PathBuf>,
    x: &FsckExtra,
) -> Result<bool> {
    note(
        "fsck",
        x.force,
        "-f/--force",
        "fsck only reads, mounted or not",
    );
    note(
        "fsck",
        x.nodax,
        "-D/--nodax",
        "images and devices are read alike",
    );
    note("fsck", x.mmap, "-m/--mmap", "the metadata is always mapped");
    note(
        "fsck",
        x.read,
        "-r/--read",
        "the metadata is always mapped (and cache lines invalidated first)",
    );
    if x.nbuckets == Some(0) || x.nbuckets.is_some_and(|n| n > famfs_alloc::MAX_BUCKETS) {
        bail!("-B: between 1 and {} buckets", famfs_alloc::MAX_BUCKETS);
    }
    let mut dev = path
        .clone()
        .or_else(|| cli.device.clone())
        .ok_or_else(|| anyhow!("fsck needs a device, image or mount path"))?;
    // A secondary device leads to its primary (the log is there).
    if !dev.is_dir() {
        if let Ok(Some(p)) = crate::devices::primary_of(&dev) {
            if !json {
                println!(
                    "{} is a secondary device; checking the file system on its primary {}",
                    dev.display(),
                    p.display()
                );
            }
            dev = p;
        } else if famfs_media::Media::open(&dev, Access::ReadOnly)
            .ok()
            .is_some_and(|m| {
                matches!(
                    m.read_any_superblock(),
                    Ok(famfs_format::AnySuperblock::Secondary(_))
                )
            })
        {
            let msg = format!(
                "{} is a secondary device and its primary was not found on this host",
                dev.display()
            );
            if json {
                println!(
                    "{}",
                    serde_json::json!({"path": dev, "ok": false, "error": msg})
                );
            } else {
                println!("{msg}");
            }
            return Ok(true);
        }
    }
    let fs = match Famfs::open(&dev, Access::ReadOnly) {
        Ok(fs) => fs,
        Err(e) => {
            // Not a device/image: maybe a path inside a mount.
            if let Some(m) = crate::target::find_mount(&dev).filter(|_| !dev.is_file()) {
                Famfs::open(&m, Access::ReadOnly)?
            } else {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"path": dev, "ok": false, "error": e.to_string()})
                    );
                } else {
                    println!("{}: {e}", dev.display());
                }
                return Ok(true);
            }
        }
    };
    let sb = fs.superblock();
    let h = fs.log_header()?;
    let g = h.geometry();
    let ns = fs.namespace();
    let bm = fs.bitmap();
    let sz = |n: u64| if human_sizes { human(n) } else { n.to_string() };
    let damage: Vec<String> = fs
        .problems()
        .iter()
        .filter(|p| p.is_damage())
        .map(|p| p.to_string())
        .collect();
    let mut warnings: Vec<String> = fs
        .problems()
        .iter()
        .filter(|p| !p.is_damage())
        .map(|p| p.to_string())
        .collect();
    if h.counters_disagree() {
        warnings.push(format!(
            "log header: next_seqnum {} differs from next_index {} (an interrupted append; the next append repairs it)",
            h.next_seqnum(),
            h.next_index()
        ));
    }
    if let Some(e) = fs.system_uuid_error() {
        warnings.push(format!("{e}: this host counts as a client"));
    }
    let collisions = fs
        .problems()
        .iter()
        .filter(|p| matches!(p.kind, famfs_meta::ProblemKind::Collision(_)))
        .count();
    // Per device: used, free, collisions, and where this host found it.
    let per_device: Vec<serde_json::Value> = fs
        .devices()
        .iter()
        .zip(fs.bitmaps())
        .map(|(d, b)| {
            let coll = fs
                .problems()
                .iter()
                .filter(|p| {
                    p.device == d.index as u64
                        && matches!(p.kind, famfs_meta::ProblemKind::Collision(_))
                })
                .count();
            let local = if d.index == 0 {
                Some(dev.display().to_string())
            } else {
                fs.device_path(d.index).map(|p| p.display().to_string())
            };
            serde_json::json!({
                "index": d.index, "uuid": format_uuid(&d.uuid), "size": d.size, "name": d.name,
                "kind": if d.index == 0 { "primary" } else { "secondary" },
                "local_path": local, "missing": fs.device_missing(d.index),
                "allocated_bytes": b.used_units() * famfs_alloc::UNIT, "free_bytes": b.free_bytes(),
                "collisions": coll,
            })
        })
        .collect();
    let used = bm.used_units() * famfs_alloc::UNIT;
    // Used and free units per bucket (-B N): what interleaved allocation will find.
    let buckets: Vec<(u64, u64, u64)> = match x.nbuckets {
        None => Vec::new(),
        Some(n) => {
            let per = bm.total_units() / n;
            (0..n)
                .map(|b| {
                    let used = (b * per..(b + 1) * per).filter(|u| bm.is_set(*u)).count() as u64;
                    (
                        b * per * famfs_alloc::UNIT,
                        used * famfs_alloc::UNIT,
                        (per - used) * famfs_alloc::UNIT,
                    )
                })
                .collect()
        }
    };
    if json {
        let files: Vec<_> = ns
            .nodes()
            .filter_map(|n| {
                n.file().map(|f| {
                    serde_json::json!({
                        "path": format!("/{}", ns.path_of(n.ino).unwrap_or_default()),
                        "size": f.size, "mode": format!("{:o}", n.mode), "uid": n.uid, "gid": n.gid,
                        "fmap": fmap_json(&f.fmap),
                    })
                })
            })
            .collect();
        let v = serde_json::json!({
            "path": dev, "ok": damage.is_empty(),
            "fs_uuid": format_uuid(&sb.fs_uuid), "device_uuid": format_uuid(&sb.dev_uuid),
            "system_uuid": format_uuid(&sb.system_uuid), "role": fs.role().to_string(),
            "device_size": sb.device_size, "device_name": sb.device_name_str(), "alloc_unit": sb.alloc_unit,
            "log": {"len": sb.log_len, "entries": h.next_index(), "capacity": g.capacity()},
            "files": ns.file_count(), "directories": ns.dir_count(),
            "allocated_bytes": used, "free_bytes": bm.free_bytes(),
            "collisions": collisions, "damage": damage, "warnings": warnings,
            "daxdevs": fs.daxdevs().iter().map(daxdev_json).collect::<Vec<_>>(),
            "devices": per_device,
            "buckets": buckets.iter().map(|(o, u, f)| serde_json::json!({"offset": o, "used_bytes": u, "free_bytes": f})).collect::<Vec<_>>(),
            "file_list": if cli.verbose > 0 { serde_json::Value::Array(files) } else { serde_json::Value::Null },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(!damage.is_empty());
    }
    println!("famfs on {}", dev.display());
    println!(
        "  superblock:   valid (version 48, omf 2.2), device name {:?}",
        sb.device_name_str()
    );
    println!("  fs uuid:      {}", format_uuid(&sb.fs_uuid));
    println!("  device uuid:  {}", format_uuid(&sb.dev_uuid));
    println!(
        "  system uuid:  {} (this host is {})",
        format_uuid(&sb.system_uuid),
        fs.role()
    );
    println!("  device size:  {}", sz(sb.device_size));
    println!(
        "  log:          {}, {} of {} entries used ({:.1}%)",
        sz(sb.log_len),
        h.next_index(),
        g.capacity(),
        100.0 * h.next_index() as f64 / g.capacity() as f64
    );
    println!("  files:        {}", ns.file_count());
    println!("  directories:  {}", ns.dir_count());
    println!(
        "  allocated:    {} of {} (free {})",
        sz(used),
        sz(bm.total_units() * famfs_alloc::UNIT),
        sz(bm.free_bytes())
    );
    println!("  collisions:   {collisions}");
    for (i, (o, u, f)) in buckets.iter().enumerate() {
        println!(
            "  bucket {i:2}:    offset {o:#x}: used {}, free {}",
            sz(*u),
            sz(*f)
        );
    }
    println!(
        "  devices:      {} (the primary and {} added by ADD_DAXDEV)",
        fs.devices().len(),
        fs.devices().len() - 1
    );
    for v in &per_device {
        let g = |k: &str| v[k].as_u64().unwrap_or(0);
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        println!(
            "    device {}: {} uuid {} size {}, allocated {}, free {}, collisions {}, {}",
            g("index"),
            s("kind"),
            s("uuid"),
            sz(g("size")),
            sz(g("allocated_bytes")),
            sz(g("free_bytes")),
            g("collisions"),
            match (v["local_path"].as_str(), v["missing"].as_str()) {
                (Some(p), _) => format!("here: {p}"),
                (None, Some(why)) => format!("MISSING: {why}"),
                (None, None) => format!("added as {}", s("name")),
            }
        );
    }
    if cli.verbose > 0 {
        for n in ns.nodes() {
            if let Some(f) = n.file() {
                println!(
                    "  file /{} size {}",
                    ns.path_of(n.ino).unwrap_or_default(),
                    sz(f.size)
                );
                print_fmap(&f.fmap, "      ");
            }
        }
    }
    for w in &warnings {
        println!("  warning: {w}");
    }
    for d in &damage {
        println!("  DAMAGE: {d}");
    }
    // The C famfs fsck's capacity lines, for scripts that parse them (--json is the stable
    // interface).
    let sum_sizes: u64 = ns.nodes().filter_map(|n| n.file().map(|f| f.size)).sum();
    println!("Capacity:");
    println!("  Device capacity:        {}", sz(sb.device_size));
    println!(
        "  Bitmap capacity:        {}",
        sz(bm.total_units() * famfs_alloc::UNIT)
    );
    println!("  Sum of file sizes:      {}", sz(sum_sizes));
    println!("  Allocated space:        {}", sz(used));
    println!("  Free space:             {}", sz(bm.free_bytes()));
    if cli.verbose > 0 {
        // The C fsck's verbose block, by the C tools' names: C scripts read the log length with
        // `grep log_len | awk '{print $2}'`.
        let header = famfs_format::LOG_HEADER_SIZE as u64;
        let entry = famfs_format::LOG_ENTRY_SIZE as u64;
        let full = header + entry * (1 + g.last_index());
        println!("Verbose:");
        println!("  log_offset:        {}", famfs_format::LOG_OFFSET);
        println!("  log_len:           {}", sb.log_len);
        println!("  sizeof(log header) {header}");
        println!("  sizeof(log_entry)  {entry}");
        println!("  last_log_index:    {}", g.last_index());
        println!("  full log size:     {full}");
        println!("  FAMFS_LOG_LEN:     {}", famfs_format::DEFAULT_LOG_LEN);
        println!("  Remainder:         {}", sb.log_len as i128 - full as i128);
    }
    println!(
        "{}",
        if damage.is_empty() {
            "clean"
        } else {
            "damaged"
        }
    );
    Ok(!damage.is_empty())
}

fn cmd_getmap(cli: &Cli, quiet: bool, json: bool, file: &Path) -> Result<bool> {
    let t = match need_dev_or_mount(cli, file, Access::ReadOnly) {
        Ok(t) => t,
        Err(e) if quiet => {
            let _ = e;
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let rel = t.rel_str(file)?;
    let node =
        t.fs.namespace()
            .resolve(&rel)
            .and_then(|i| t.fs.namespace().get(i));
    let Some(f) = node.and_then(|n| n.file()) else {
        if quiet {
            return Ok(false);
        }
        bail!("/{rel}: not a famfs file");
    };
    if quiet {
        return Ok(true);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"path": format!("/{rel}"), "size": f.size, "flags": f.flags.0, "fmap": fmap_json(&f.fmap)})
            )?
        );
    } else {
        println!("File: /{rel}");
        println!("  size: {}", f.size);
        print_fmap(&f.fmap, "  ");
    }
    Ok(true)
}

fn cmd_cat(cli: &Cli, file: &Path) -> Result<()> {
    let t = need_dev_or_mount(cli, file, Access::ReadOnly)?;
    let rel = t.rel(file)?;
    if let Some(p) = t.host_path(&rel) {
        let mut f =
            std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
        std::io::copy(&mut f, &mut std::io::stdout().lock())?;
        return Ok(());
    }
    let ino =
        t.fs.namespace()
            .resolve(rel.as_str())
            .ok_or_else(|| anyhow!("/{rel}: no such file"))?;
    let size =
        t.fs.namespace()
            .get(ino)
            .and_then(|n| n.file())
            .ok_or_else(|| anyhow!("/{rel}: not a file"))?
            .size;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; (4 << 20).min(size as usize)];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        t.fs.read_data(ino, off, &mut buf[..n])?;
        out.write_all(&buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

fn flush_host_file(p: &Path) -> Result<()> {
    let file = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
    // A raw mapping: its bytes are never touched as Rust data (others may change them).
    let map = memmap2::MmapOptions::new()
        .map_raw_read_only(&file)
        .with_context(|| format!("cannot map {}", p.display()))?;
    // Acquire writes dirty lines back and drops them: right for the writer handing the file
    // over and for the reader taking it (sharing.md).
    // SAFETY: the range is exactly the live mapping `map`.
    unsafe { famfs_media::cache::acquire(map.as_ptr(), map.len()) };
    Ok(())
}

fn cmd_flush(cli: &Cli, files: &[PathBuf]) -> Result<()> {
    let t = need_dev_or_mount(cli, &files[0], Access::ReadOnly)?;
    let ns = t.fs.namespace();
    let mut n = 0;
    for f in files {
        let rel = t.rel_str(f)?;
        // The meta files named one by one (as `find MPT -type f` lists them).
        let meta = match rel.as_str() {
            ".meta/.superblock" => Some((0, famfs_format::LOG_OFFSET)),
            ".meta/.log" => Some((famfs_format::LOG_OFFSET, t.fs.superblock().log_len)),
            _ => None,
        };
        if let Some((off, len)) = meta {
            match &t.mpt {
                Some(m) => flush_host_file(&m.join(&rel))?,
                None => t.fs.media().acquire(off, len)?,
            }
            n += 1;
            continue;
        }
        let ino = ns
            .resolve(&rel)
            .ok_or_else(|| anyhow!("/{rel}: no such file"))?;
        // A directory: every file under it; the root also has the meta files (superblock, log).
        let mut todo = vec![ino];
        if rel.is_empty() {
            match &t.mpt {
                Some(m) => {
                    flush_host_file(&m.join(".meta/.superblock"))?;
                    flush_host_file(&m.join(".meta/.log"))?;
                }
                None => t.fs.media().acquire(0, t.fs.superblock().data_offset())?,
            }
            n += 2;
        }
        while let Some(i) = todo.pop() {
            if let Some(children) = ns.children(i) {
                todo.extend(children.map(|(_, c)| c));
                continue;
            }
            let r = RelPath::from_fs_path(&ns.path_of(i).unwrap_or_default())?;
            match t.host_path(&r) {
                None => t.fs.flush_data(i)?,
                Some(p) => flush_host_file(&p)?,
            }
            n += 1;
        }
    }
    if cli.verbose > 0 {
        println!("flushed {n} files");
    }
    Ok(())
}

/// `famfs check`: every regular file of the mount is a logged file of the same size, and every
/// logged path is there.
fn cmd_check(cli: &Cli, mpt: &Path) -> Result<bool> {
    let t = Target::open(None, mpt, Access::ReadOnly)?;
    let root = t
        .mpt
        .clone()
        .ok_or_else(|| anyhow!("{} is not a famfs mount", mpt.display()))?;
    let ns = t.fs.namespace();
    let (mut files, mut dirs, mut errors) = (0u64, 0u64, Vec::<String>::new());
    let mut stack = vec![root.clone()];
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let e = e?;
            let p = e.path();
            if d == root && e.file_name() == ".meta" {
                continue;
            }
            let rel = t.rel_str(&p)?;
            let md = std::fs::symlink_metadata(&p)?;
            let node = ns.resolve(&rel).and_then(|i| ns.get(i));
            seen.insert(rel.clone());
            if md.is_dir() {
                dirs += 1;
                stack.push(p);
                if !node.is_some_and(|n| n.is_dir()) {
                    errors.push(format!("/{rel}: a directory the log does not hold"));
                }
            } else {
                files += 1;
                match node.and_then(|n| n.file()) {
                    Some(f) if f.size == md.len() => {}
                    Some(f) => errors.push(format!(
                        "/{rel}: size {} but the log says {}",
                        md.len(),
                        f.size
                    )),
                    None => errors.push(format!("/{rel}: a file the log does not hold")),
                }
            }
        }
    }
    for n in ns.nodes().skip(1) {
        let p = ns.path_of(n.ino).unwrap_or_default();
        if !seen.contains(&p) {
            errors.push(format!("/{p}: logged but missing from the mount"));
        }
    }
    for e in &errors {
        println!("  error: {e}");
    }
    if cli.verbose > 0 || !errors.is_empty() {
        println!(
            "{}: {files} files, {dirs} directories, {} errors",
            root.display(),
            errors.len()
        );
    } else {
        println!(
            "{}: {files} files, {dirs} directories, 0 errors",
            root.display()
        );
    }
    Ok(errors.is_empty())
}

/// `famfs chkread`: checks a superblock or log meta file (or a copy of one).
fn cmd_chkread(file: &Path, want_sb: bool, want_log: bool) -> Result<bool> {
    use famfs_format::{
        LogEntry, LogHeader, Superblock, LOG_ENTRY_SIZE, LOG_HEADER_SIZE, LOG_MAGIC, SB_MAGIC,
    };
    let b = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let word = |at: usize| {
        b.get(at..at + 8)
            .map(|m| u64::from_le_bytes(m.try_into().unwrap_or_default()))
            .unwrap_or(0)
    };
    let magic = word(0);
    if want_sb && magic != SB_MAGIC {
        bail!(
            "{}: -s: not a famfs superblock (magic {magic:#x}, want {SB_MAGIC:#x})",
            file.display()
        );
    }
    if want_log && magic != LOG_MAGIC {
        bail!(
            "{}: -l: not a famfs log (magic {magic:#x}, want {LOG_MAGIC:#x})",
            file.display()
        );
    }
    if magic == SB_MAGIC {
        let sb = Superblock::decode(&b)
            .with_context(|| format!("{}: bad superblock", file.display()))?;
        if want_sb {
            println!("famfs superblock:");
            println!("\tmagic:       {magic:x}");
            println!("\tversion:     {}", word(8));
            println!("\tlog offset:  {}", word(16));
            println!("\tlog len:     {}", sb.log_len);
        }
        println!(
            "{}: valid superblock (fs uuid {}, log {} bytes, device {} bytes)",
            file.display(),
            format_uuid(&sb.fs_uuid),
            sb.log_len,
            sb.device_size
        );
        return Ok(true);
    }
    if magic == LOG_MAGIC {
        let len = word(8);
        let h = LogHeader::decode(&b, len)
            .with_context(|| format!("{}: bad log header", file.display()))?;
        let n = h.next_index();
        if want_log {
            println!("famfs log:");
            println!("\tmagic:      {magic:x}");
            println!("\tlen:        {len}");
            println!("\tlast index: {}", word(16));
            println!("\tnext index: {n}");
        }
        let mut bad = 0;
        for i in 0..n {
            let off = LOG_HEADER_SIZE + i as usize * LOG_ENTRY_SIZE;
            let ok = b
                .get(off..off + LOG_ENTRY_SIZE)
                .is_some_and(|e| LogEntry::decode(e, i).is_ok());
            if !ok {
                println!("  entry {i}: damaged");
                bad += 1;
            }
        }
        println!("{}: log with {n} entries, {bad} damaged", file.display());
        return Ok(bad == 0);
    }
    bail!(
        "{}: neither a famfs superblock nor a famfs log (magic {magic:#x})",
        file.display()
    )
}

/// `famfs clone`: a new file sharing SRC's memory (cross-linked; fsck reports it).
fn cmd_clone(cli: &Cli, src: &Path, dest: &Path) -> Result<()> {
    let mut t = need_dev_or_mount(cli, dest, Access::ReadWrite)?;
    let s = t.rel(src)?;
    let d = t.rel(dest)?;
    t.fs.with_log_lock(|a| a.clone_file(&s, &d))?;
    eprintln!("famfs clone: /{d} shares the memory of /{s}: fsck reports the two as cross-linked");
    Ok(())
}

/// `famfs mkmeta`: nothing to create here; says whether the device is mounted.
fn cmd_mkmeta(device: &Path) -> Result<bool> {
    let mounts = crate::mkfs_cmd::mounted_at(device);
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

/// Finds an executable next to ours or on PATH.
fn find_helper(name: &str) -> Option<PathBuf> {
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)));
    let path = std::env::var_os("PATH").unwrap_or_default();
    here.into_iter()
        .chain(std::env::split_paths(&path).map(|d| d.join(name)))
        .find(|p| p.is_file())
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

/// Rebinds the devdax device whose sysfs directory is `sys` to `want` (as scripts/daxmode does:
/// fsdev_dax only takes a device through its new_id list).
fn set_dax_driver(sys: &Path, want: &DaxDriver) -> Result<()> {
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
    let mounts = crate::mkfs_cmd::mounted_at(dev);
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
    let mounts = crate::mkfs_cmd::mounted_at(&device);
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
    if let Some(sys) = famfs_media::dax_sysfs_dir(&device) {
        let want = if fallback {
            DaxDriver::DeviceDax
        } else {
            DaxDriver::FsdevDax
        };
        let have = famfs_media::dax_driver(&device).unwrap_or(DaxDriver::Unbound);
        if have != want {
            if !r.set_daxmode {
                bail!(
                    "{} is bound to {have}, but {} mode needs {want}; add --set-daxmode to rebind it{}",
                    device.display(),
                    if fallback { "fallback" } else { "module" },
                    if fallback { "" } else { " (or use --fallback)" }
                );
            }
            set_dax_driver(&sys, &want)
                .with_context(|| format!("cannot rebind {} to {want}", device.display()))?;
            let now = famfs_media::dax_driver(&device).unwrap_or(DaxDriver::Unbound);
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
            famfs_media::dax_sysfs_dir(&path),
            famfs_media::dax_driver(&path),
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
        set_dax_driver(&sys, want).with_context(|| {
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

/// Processes of famfs-fused serving `mpt` (found by their command lines).
fn servers_of(mpt: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want = mpt.as_os_str().as_encoded_bytes();
    rd.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let mut args = cmdline.split(|b| *b == 0);
        let argv0 = args.next()?;
        let is_server = argv0.ends_with(b"famfs-fused");
        (is_server && args.any(|a| a == want)).then_some(pid)
    })
    .collect()
}

/// Whether `canon` (a canonical path) is a famfs FUSE mount point, by the mount table only:
/// statfs of a mount whose server died fails (ENOTCONN), and such a mount is exactly one to
/// unmount (or remount).
fn is_famfs_mount(canon: &Path) -> bool {
    famfs_media::mounts::mount_at(canon)
        .is_some_and(|m| m.fstype == famfs_media::mounts::FAMFS_FSTYPE)
}

fn cmd_umount(mpt: &Path) -> Result<()> {
    let canon =
        std::fs::canonicalize(mpt).with_context(|| format!("cannot resolve {}", mpt.display()))?;
    if !is_famfs_mount(&canon) {
        bail!("{} is not a famfs mount", mpt.display());
    }
    let servers = servers_of(&canon);
    let tool = find_helper("fusermount3")
        .or_else(|| find_helper("fusermount"))
        .ok_or_else(|| anyhow!("fusermount3 not found (install fuse3)"))?;
    let st = std::process::Command::new(tool)
        .arg("-u")
        .arg(&canon)
        .status()?;
    if !st.success() {
        bail!("unmount of {} failed ({st})", canon.display());
    }
    // The server exits when the session ends; wait for it so that the device is released (and
    // can be attached again) when we return.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let alive = |pid: &u32| {
        // A zombie has closed its files already: it counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    while servers.iter().any(alive) {
        if std::time::Instant::now() > deadline {
            eprintln!(
                "famfs: warning: the server of {} has not exited yet",
                canon.display()
            );
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Runs a parsed command line; `Ok(false)` means "ran, but the answer is no" (exit 1).
pub fn run(cli: &Cli) -> Result<bool> {
    match &cli.cmd {
        Cmd::Mkdir {
            parents,
            owner,
            dirs,
        } => cmd_mkdir(cli, *parents, owner, dirs).map(|()| true),
        Cmd::Creat {
            size,
            randomize,
            seed,
            owner,
            stripe,
            multi,
            file,
            threads,
        } => {
            let o = CreatOpts {
                size: *size,
                randomize: *randomize,
                seed: *seed,
                owner,
                stripe,
                multi,
                file,
                threads: *threads,
            };
            cmd_creat(cli, &o).map(|()| true)
        }
        Cmd::Cp {
            recursive,
            threads,
            compare,
            contents,
            umask,
            owner,
            stripe,
            paths,
        } => {
            let o = CpOpts {
                recursive: *recursive,
                threads: (*threads).clamp(1, 64),
                compare: *compare,
                contents: *contents,
                umask: *umask,
                owner,
                stripe,
            };
            cmd_cp(cli, &o, paths).map(|()| true)
        }
        Cmd::Verify {
            seed,
            file,
            multi,
            threads,
            quiet,
            files,
        } => {
            let o = VerifyOpts {
                seed: *seed,
                files: file.iter().chain(files).cloned().collect(),
                multi,
                threads: *threads,
                quiet: *quiet,
            };
            cmd_verify(cli, &o)
        }
        Cmd::Logplay {
            dry_run,
            client,
            daxdev,
            mmap,
            read,
            shadow,
            shadowtest,
            set_daxmode,
            mpt,
        } => {
            let o = LogplayOpts {
                dry_run: *dry_run,
                client: *client,
                daxdev,
                mmap: *mmap,
                read: *read,
                shadow,
                shadowtest: *shadowtest,
                mpt,
            };
            cmd_logplay(cli, &o)?;
            if *set_daxmode {
                match daxdev.as_ref().or(cli.device.as_ref()) {
                    Some(d) => set_daxmode_fsdev("famfs logplay", d)?,
                    None => eprintln!("famfs logplay: note: --set-daxmode without a device (-d/--device DEV): nothing to rebind"),
                }
            }
            Ok(true)
        }
        Cmd::Fsck {
            human,
            json,
            path,
            nbuckets,
            force,
            nodax,
            mmap,
            read,
            set_daxmode,
            ..
        } => {
            let x = FsckExtra {
                nbuckets: *nbuckets,
                force: *force,
                nodax: *nodax,
                mmap: *mmap,
                read: *read,
            };
            let damaged = cmd_fsck(cli, *human, *json, path, &x)?;
            if *set_daxmode {
                match path.as_ref().or(cli.device.as_ref()) {
                    Some(d) => set_daxmode_fsdev("famfs fsck", d)?,
                    None => eprintln!(
                        "famfs fsck: note: --set-daxmode without a device: nothing to rebind"
                    ),
                }
            }
            Ok(!damaged)
        }
        Cmd::Getmap { quiet, json, file } => cmd_getmap(cli, *quiet, *json, file),
        Cmd::Cat { file } => cmd_cat(cli, file).map(|()| true),
        Cmd::Flush { files } => cmd_flush(cli, files).map(|()| true),
        Cmd::Check { mpt } => cmd_check(cli, mpt),
        Cmd::Chkread {
            superblock,
            log,
            file,
        } => cmd_chkread(file, *superblock, *log),
        Cmd::Clone { src, dest } => cmd_clone(cli, src, dest).map(|()| true),
        Cmd::Mkmeta { device } => cmd_mkmeta(device),
        Cmd::Mount {
            timeout,
            debug,
            set_daxmode,
            fallback,
            remount,
            cache,
            fuse,
            nofuse,
            bouncedax,
            mmap,
            read,
            nouseraccess,
            nodefaultperm,
            shadow,
            dummy,
            device,
            mpt,
            extra,
        } => {
            let mut refused = Vec::new();
            for (on, opt) in [
                (*nofuse, "-F/--nofuse"),
                (shadow.is_some(), "-S/--shadow"),
                (*dummy, "-D/--dummy"),
                (*nodefaultperm, "-p/--nodefaultperm"),
            ] {
                if on {
                    refused.push(opt);
                }
            }
            let mut accepted = Vec::new();
            for (on, opt, why) in [
                (*fuse, "-f/--fuse", "famfs-rs mounts are always FUSE mounts"),
                (
                    *bouncedax,
                    "-b/--bouncedax",
                    "the device is rebound only when the mode needs it (--set-daxmode)",
                ),
                (*mmap, "-m/--mmap", "the meta files are always mapped"),
                (*read, "-r/--read", "the meta files are always mapped"),
            ] {
                if on {
                    accepted.push((opt, why));
                }
            }
            let timeout = match cache.as_deref() {
                None => *timeout,
                Some("always") => Some(3600.0 * 24.0 * 365.0),
                Some("normal") => Some(1.0),
                Some("never") => Some(0.0),
                Some(other) => bail!("-c/--cache {other:?}: use always, normal or never"),
            };
            cmd_mount(&MountReq {
                remount: *remount,
                refused,
                accepted,
                timeout,
                debug: *debug,
                set_daxmode: *set_daxmode,
                fallback: *fallback,
                owner_only: *nouseraccess,
                device,
                mpt: mpt.as_deref(),
                extra,
                verbose: cli.verbose,
            })
            .map(|()| true)
        }
        Cmd::Umount { mpt } => cmd_umount(mpt).map(|()| true),
        Cmd::Devadd {
            force,
            target,
            device,
        } => crate::devices::cmd_devadd(*force, target, device).map(|()| true),
        Cmd::Daxdev { json, action } => crate::devices::cmd_daxdev(action, *json),
        Cmd::Hosts(a) => crate::hosts_cmd::run(a),
        Cmd::GenMan { dir } => crate::man::write_all(dir).map(|()| true),
    }
}

/// `-?` is help, as in the C tools (until a `--`).
pub fn help_alias(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut seen_dashdash = false;
    args.into_iter()
        .map(|a| {
            if a == "--" {
                seen_dashdash = true;
            }
            if !seen_dashdash && a == "-?" {
                std::ffi::OsString::from("--help")
            } else {
                a
            }
        })
        .collect()
}

/// Entry point of the binary; returns the exit code.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = Cli::parse_from(help_alias(args));
    match run(&cli) {
        Ok(true) => 0,
        Ok(false) => crate::EXIT_ERROR,
        Err(e) => {
            let code = crate::report("famfs", &e);
            if let Some(MetaError::NotMaster { .. }) = e.downcast_ref::<MetaError>() {
                eprintln!("famfs: hint: run this on the master host, or use a file system made on this host");
            }
            code
        }
    }
}
