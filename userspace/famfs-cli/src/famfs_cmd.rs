//! The `famfs` verbs.

use crate::pattern;
use crate::size::human;
use crate::target::Target;
use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgAction, Args, Parser, Subcommand};
use famfs_alloc::InterleaveParams;
use famfs_format::{format_uuid, Fmap, RelPath};
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
    #[arg(short = 'u', long)]
    pub uid: Option<u32>,
    /// Owner gid (default: the caller's).
    #[arg(short = 'g', long)]
    pub gid: Option<u32>,
}

impl Owner {
    fn ids(&self) -> (u32, u32) {
        // SAFETY: trivial getters.
        let (u, g) = unsafe { (libc::geteuid(), libc::getegid()) };
        (self.uid.unwrap_or(u), self.gid.unwrap_or(g))
    }
}

/// Interleaving options; giving any of them makes an interleaved (striped) file.
#[derive(Args, Debug, Clone)]
pub struct Stripe {
    /// Number of strips (default: nbuckets).
    #[arg(short = 'N', long)]
    pub nstrips: Option<u64>,
    /// Number of buckets the device is split into (default: nstrips).
    #[arg(short = 'B', long)]
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
        /// Seed of the pattern (implies -r).
        #[arg(short = 'S', long)]
        seed: Option<u64>,
        #[command(flatten)]
        owner: Owner,
        #[command(flatten)]
        stripe: Stripe,
        /// Create several files: name,size[,seed] (repeatable; seed fills it like -r -S).
        #[arg(short = 'M', long = "multi", value_name = "NAME,SIZE[,SEED]")]
        multi: Vec<String>,
        /// The file to create.
        file: Option<PathBuf>,
    },
    /// Copy files into famfs.
    Cp {
        /// Copy directories recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Copy data with this many threads.
        #[arg(short = 't', long = "threadct", visible_alias = "threads", default_value_t = 1)]
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
        #[arg(short = 'S', long)]
        seed: u64,
        #[arg(short = 'f', long)]
        file: PathBuf,
    },
    /// Play the log and report what it holds.
    Logplay {
        /// Dry run (report only).
        #[arg(short = 'n', long)]
        dry_run: bool,
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
    Cat { file: PathBuf },
    /// Flush the CPU caches of files' memory.
    Flush {
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
        /// The devdax device or image file.
        device: PathBuf,
        /// The directory to mount on.
        mpt: PathBuf,
        /// Extra arguments for famfs-fused.
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Unmount a famfs.
    Umount { mpt: PathBuf },
    /// Write the man pages of famfs, its verbs and mkfs.famfs into DIR (used by make install).
    #[command(hide = true)]
    GenMan { dir: PathBuf },
}

fn need_dev_or_mount(cli: &Cli, hint: &Path, access: Access) -> Result<Target> {
    Target::open(cli.device.as_deref(), hint, access)
}

/// Writes the pattern of `seed` over the whole file.
fn fill_file(t: &Target, ino: Ino, rel: &RelPath, size: u64, seed: u64) -> Result<()> {
    let mut buf = vec![0u8; (4 << 20).min(size as usize)];
    let mut host = match t.host_path(rel) {
        Some(p) => Some(std::fs::OpenOptions::new().write(true).open(&p).with_context(|| format!("cannot open {}", p.display()))?),
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
    u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"))
}

#[allow(clippy::too_many_arguments)] // the verb's options, passed straight from clap
fn cmd_creat(cli: &Cli, size: Option<u64>, randomize: bool, seed: Option<u64>, owner: &Owner, stripe: &Stripe, multi: &[String], file: &Option<PathBuf>) -> Result<()> {
    // (path, size, seed)
    let mut jobs: Vec<(PathBuf, u64, Option<u64>)> = Vec::new();
    if let Some(f) = file {
        let size = size.ok_or_else(|| anyhow!("creat needs -s SIZE"))?;
        let seed = if randomize || seed.is_some() { Some(seed.unwrap_or_else(random_seed)) } else { None };
        jobs.push((f.clone(), size, seed));
    } else if size.is_some() {
        bail!("creat -s needs a FILE");
    }
    for m in multi {
        let parts: Vec<&str> = m.split(',').collect();
        if parts.len() < 2 || parts.len() > 3 {
            bail!("-M {m:?}: expected name,size[,seed]");
        }
        let size = crate::size::parse_size(parts[1]).map_err(|e| anyhow!("-M {m:?}: {e}"))?;
        let seed = parts.get(2).map(|s| s.parse::<u64>().map_err(|_| anyhow!("-M {m:?}: bad seed"))).transpose()?;
        jobs.push((PathBuf::from(parts[0]), size, seed));
    }
    if jobs.is_empty() {
        bail!("nothing to create: give FILE with -s SIZE, or -M name,size[,seed]");
    }
    let mut t = need_dev_or_mount(cli, &jobs[0].0, Access::ReadWrite)?;
    let layout = stripe.layout(t.fs.superblock().device_size.min(t.fs.bitmap().device_size()))?;
    let (uid, gid) = owner.ids();
    let mode = owner.mode.unwrap_or(0o644);
    let rels: Vec<RelPath> = jobs.iter().map(|(p, _, _)| t.rel(p)).collect::<Result<_>>()?;
    let created: Vec<Ino> = t.fs.with_log_lock(|a: &mut Appender<'_>| {
        let mut v = Vec::new();
        for (rel, (_, size, _)) in rels.iter().zip(&jobs) {
            v.push(a.create_file(rel, *size, mode, uid, gid, layout)?);
        }
        Ok(v)
    })?;
    // A seed we picked ourselves is printed: without it the file could not be verified.
    let seed_picked = randomize && seed.is_none();
    for ((ino, rel), (_, size, fill_seed)) in created.iter().zip(&rels).zip(&jobs) {
        if let Some(seed) = fill_seed {
            fill_file(&t, *ino, rel, *size, *seed).with_context(|| format!("cannot fill /{rel}"))?;
            if cli.verbose > 0 || seed_picked {
                eprintln!("/{rel}: filled with seed {seed}");
            }
        }
    }
    Ok(())
}

fn cmd_mkdir(cli: &Cli, parents: bool, owner: &Owner, dirs: &[PathBuf]) -> Result<()> {
    let mut t = need_dev_or_mount(cli, &dirs[0], Access::ReadWrite)?;
    let (uid, gid) = owner.ids();
    let mode = owner.mode.unwrap_or(0o755);
    let rels: Vec<RelPath> = dirs.iter().map(|d| t.rel(d)).collect::<Result<_>>()?;
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
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").and_then(|v| u32::from_str_radix(v.trim(), 8).ok())))
        .unwrap_or(0o022)
}

fn cmd_cp(cli: &Cli, o: &CpOpts, paths: &[PathBuf]) -> Result<()> {
    let (srcs, dest) = paths.split_at(paths.len() - 1);
    let dest = &dest[0];
    let mut t = need_dev_or_mount(cli, dest, Access::ReadWrite)?;
    let layout = o.stripe.layout(t.fs.bitmap().device_size())?;
    let (uid, gid) = o.owner.ids();
    let fmode = o.owner.mode.map(|m| if o.umask { m & !process_umask() } else { m });
    let dest_rel = t.rel_str(dest)?;
    let dest_is_dir = t.fs.namespace().resolve(&dest_rel).and_then(|i| t.fs.namespace().get(i)).is_some_and(|n| n.is_dir());
    if srcs.len() > 1 && !dest_is_dir {
        bail!("copying several sources needs an existing directory as destination; {} is not one", dest.display());
    }
    // Plan: (src, destination rel path, is_dir)
    let mut plan: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let join = |dir: &str, name: &str| if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
    fn walk(src: &Path, dst: String, plan: &mut Vec<(PathBuf, String, bool)>) -> Result<()> {
        let md = std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
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
        let is_dir = std::fs::metadata(s).with_context(|| format!("cannot read {}", s.display()))?.is_dir();
        if is_dir && !o.recursive {
            // As the C tool: the other sources are still copied; the exit code says one was not.
            refused.push(format!("{} is a directory (use -r)", s.display()));
            continue;
        }
        let base = s.file_name().ok_or_else(|| anyhow!("{}: no file name", s.display()))?.to_string_lossy().into_owned();
        if is_dir && o.contents && dest_is_dir {
            let mut entries: Vec<_> = std::fs::read_dir(s)?.collect::<std::io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                walk(&e.path(), join(&dest_rel, &e.file_name().to_string_lossy()), &mut plan)?;
            }
            continue;
        }
        let dst = if dest_is_dir { join(&dest_rel, &base) } else { dest_rel.clone() };
        walk(s, dst, &mut plan)?;
    }
    let mut jobs: Vec<CopyJob> = Vec::new();
    let mut skipped = 0;
    t.fs.with_log_lock(|a| {
        for (src, dst, is_dir) in &plan {
            let rel = RelPath::from_fs_path(dst)?;
            let existing = a.namespace().resolve(rel.as_str()).and_then(|i| a.namespace().get(i)).map(|n| (n.ino, n.is_dir(), n.size()));
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
            let md = std::fs::metadata(src).map_err(|e| MetaError::NotFound(format!("{}: {e}", src.display())))?;
            if md.len() == 0 {
                eprintln!("famfs cp: skipping {}: famfs cannot hold empty files", src.display());
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
                    return Err(MetaError::Exists(format!("{rel} ({size} bytes; the source has {}: a famfs file cannot change size)", md.len())));
                }
                jobs.push(CopyJob { src: src.clone(), rel, size, ino });
                continue;
            }
            use std::os::unix::fs::PermissionsExt;
            let mode = fmode.unwrap_or(md.permissions().mode() & 0o777);
            let ino = a.create_file(&rel, md.len(), mode, uid, gid, layout)?;
            jobs.push(CopyJob { src: src.clone(), rel, size: md.len(), ino });
        }
        Ok(())
    })?;
    let threads = o.threads;
    let compare = o.compare;
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
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
                let r = copy_one(&t, j, &bar).and_then(|()| if compare { compare_one(&t, j) } else { Ok(()) });
                if let Err(e) = r {
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{}: {e:#}", j.src.display()));
                }
            });
        }
    });
    bar.finish_and_clear();
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    for e in errors.iter().chain(&refused) {
        eprintln!("famfs cp: {e}");
    }
    if !errors.is_empty() || skipped > 0 || !refused.is_empty() {
        bail!("{} of {} sources not copied", errors.len() + skipped + refused.len(), jobs.len() + skipped + refused.len());
    }
    Ok(())
}

/// Reads a copy back and compares it with its source (`cp -c`).
fn compare_one(t: &Target, j: &CopyJob) -> Result<()> {
    let mut src = std::fs::File::open(&j.src)?;
    let mut host = match t.host_path(&j.rel) {
        Some(p) => Some(std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?),
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
            bail!("/{}: the copy differs from its source at offset {}", j.rel, off + i as u64);
        }
        off += len as u64;
    }
    Ok(())
}

fn copy_one(t: &Target, j: &CopyJob, bar: &indicatif::ProgressBar) -> Result<()> {
    let mut src = std::fs::File::open(&j.src)?;
    let mut dst = match t.host_path(&j.rel) {
        Some(p) => Some(std::fs::OpenOptions::new().write(true).open(&p).with_context(|| format!("cannot open {}", p.display()))?),
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

fn cmd_verify(cli: &Cli, seed: u64, file: &Path) -> Result<()> {
    let t = need_dev_or_mount(cli, file, Access::ReadOnly)?;
    let rel = t.rel(file)?;
    let ino = t.fs.namespace().resolve(rel.as_str()).ok_or_else(|| anyhow!("/{rel}: no such file"))?;
    let size = t.fs.namespace().get(ino).and_then(|n| n.file()).ok_or_else(|| anyhow!("/{rel}: not a file"))?.size;
    let mut host = match t.host_path(&rel) {
        Some(p) => Some(std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?),
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
            bail!("/{rel}: content differs from the pattern of seed {seed} at offset {}", off + i as u64);
        }
        off += n as u64;
    }
    if cli.verbose > 0 {
        println!("/{rel}: {size} bytes match seed {seed}");
    }
    Ok(())
}

/// Reads an xattr of `path` (a famfs mount's root answers `user.famfs.*`).
pub fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let n = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn cmd_logplay(cli: &Cli, dry_run: bool, mpt: &Option<PathBuf>) -> Result<()> {
    let hint = mpt.clone().unwrap_or_else(|| PathBuf::from("."));
    if cli.device.is_none() && !dry_run {
        // On a mount the server owns the namespace: ask it to play the log tail now.
        if let Some(m) = crate::target::find_mount(&hint) {
            let v = get_xattr(&m, "user.famfs.logplay")
                .with_context(|| format!("{}: cannot make the famfs server play the log (xattr user.famfs.logplay)", m.display()))?;
            println!("{}: server {}", m.display(), String::from_utf8_lossy(&v).trim_end());
        }
    }
    let t = need_dev_or_mount(cli, &hint, Access::ReadOnly)?;
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
        if t.mpt.is_some() { " (the FUSE server plays the log itself; nothing to instantiate)" } else { "" }
    );
    if cli.verbose > 0 {
        for n in ns.nodes().skip(1) {
            println!("  {} /{}", if n.is_dir() { "dir " } else { "file" }, ns.path_of(n.ino).unwrap_or_default());
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

fn daxdev_json(d: &famfs_format::DaxdevEntry) -> serde_json::Value {
    serde_json::json!({"index": d.index, "size": d.size, "uuid": format_uuid(&d.uuid)})
}

fn daxdev_line(d: &famfs_format::DaxdevEntry) -> String {
    format!("daxdev index {} size {} uuid {}", d.index, d.size, format_uuid(&d.uuid))
}

fn fmap_json(f: &Fmap) -> serde_json::Value {
    let ext = |e: &famfs_format::Extent| serde_json::json!({"devindex": e.devindex, "offset": e.offset, "len": e.len});
    match f {
        Fmap::Simple(v) => serde_json::json!({"type": "simple", "extents": v.iter().map(ext).collect::<Vec<_>>()}),
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
                println!("{indent}  devindex {} offset {:#x} len {:#x}", e.devindex, e.offset, e.len);
            }
        }
        Fmap::Interleaved(i) => {
            println!("{indent}extent type: interleaved, {} strips, chunk size {:#x}", i.nstrips(), i.chunk_size());
            for e in i.strips() {
                println!("{indent}  strip devindex {} offset {:#x} len {:#x}", e.devindex, e.offset, e.len);
            }
        }
    }
}

/// fsck: returns whether damage was found.
fn cmd_fsck(cli: &Cli, human_sizes: bool, json: bool, path: &Option<PathBuf>) -> Result<bool> {
    let dev = path.clone().or_else(|| cli.device.clone()).ok_or_else(|| anyhow!("fsck needs a device, image or mount path"))?;
    let fs = match Famfs::open(&dev, Access::ReadOnly) {
        Ok(fs) => fs,
        Err(e) => {
            // Not a device/image: maybe a path inside a mount.
            if let Some(m) = crate::target::find_mount(&dev).filter(|_| !dev.is_file()) {
                Famfs::open(&m, Access::ReadOnly)?
            } else {
                if json {
                    println!("{}", serde_json::json!({"path": dev, "ok": false, "error": e.to_string()}));
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
    let damage: Vec<String> = fs.problems().iter().filter(|p| p.is_damage()).map(|p| p.to_string()).collect();
    let mut warnings: Vec<String> = fs.problems().iter().filter(|p| !p.is_damage()).map(|p| p.to_string()).collect();
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
    let collisions = fs.problems().iter().filter(|p| matches!(p.kind, famfs_meta::ProblemKind::Collision(_))).count();
    let used = bm.used_units() * famfs_alloc::UNIT;
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
            "file_list": if cli.verbose > 0 { serde_json::Value::Array(files) } else { serde_json::Value::Null },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(!damage.is_empty());
    }
    println!("famfs on {}", dev.display());
    println!("  superblock:   valid (version 48, omf 2.2), device name {:?}", sb.device_name_str());
    println!("  fs uuid:      {}", format_uuid(&sb.fs_uuid));
    println!("  device uuid:  {}", format_uuid(&sb.dev_uuid));
    println!("  system uuid:  {} (this host is {})", format_uuid(&sb.system_uuid), fs.role());
    println!("  device size:  {}", sz(sb.device_size));
    println!("  log:          {}, {} of {} entries used ({:.1}%)", sz(sb.log_len), h.next_index(), g.capacity(), 100.0 * h.next_index() as f64 / g.capacity() as f64);
    println!("  files:        {}", ns.file_count());
    println!("  directories:  {}", ns.dir_count());
    println!("  allocated:    {} of {} (free {})", sz(used), sz(bm.total_units() * famfs_alloc::UNIT), sz(bm.free_bytes()));
    println!("  collisions:   {collisions}");
    println!("  daxdevs:      {} ADD_DAXDEV entries{}", fs.daxdevs().len(), if fs.daxdevs().is_empty() { "" } else { " (recorded; only the superblock's device, index 0, is used)" });
    for d in fs.daxdevs() {
        println!("  {}", daxdev_line(d));
    }
    if cli.verbose > 0 {
        for n in ns.nodes() {
            if let Some(f) = n.file() {
                println!("  file /{} size {}", ns.path_of(n.ino).unwrap_or_default(), sz(f.size));
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
    println!("{}", if damage.is_empty() { "clean" } else { "damaged" });
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
    let node = t.fs.namespace().resolve(&rel).and_then(|i| t.fs.namespace().get(i));
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
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"path": format!("/{rel}"), "size": f.size, "flags": f.flags.0, "fmap": fmap_json(&f.fmap)}))?);
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
        let mut f = std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
        std::io::copy(&mut f, &mut std::io::stdout().lock())?;
        return Ok(());
    }
    let ino = t.fs.namespace().resolve(rel.as_str()).ok_or_else(|| anyhow!("/{rel}: no such file"))?;
    let size = t.fs.namespace().get(ino).and_then(|n| n.file()).ok_or_else(|| anyhow!("/{rel}: not a file"))?.size;
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

fn cmd_flush(cli: &Cli, files: &[PathBuf]) -> Result<()> {
    let t = need_dev_or_mount(cli, &files[0], Access::ReadOnly)?;
    for f in files {
        let rel = t.rel(f)?;
        let ino = t.fs.namespace().resolve(rel.as_str()).ok_or_else(|| anyhow!("/{rel}: no such file"))?;
        match t.host_path(&rel) {
            None => t.fs.flush_data(ino)?,
            Some(p) => {
                let file = std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
                // SAFETY: read-only shared mapping of a file we only flush; never dereferenced as
                // Rust data while others may change it (the flush does not read the bytes).
                let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot map {}", p.display()))?;
                famfs_media::cache::flush_slice(&map);
            }
        }
    }
    Ok(())
}

/// Finds an executable next to ours or on PATH.
fn find_helper(name: &str) -> Option<PathBuf> {
    let here = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(name)));
    let path = std::env::var_os("PATH").unwrap_or_default();
    here.into_iter().chain(std::env::split_paths(&path).map(|d| d.join(name))).find(|p| p.is_file())
}

/// What `famfs mount` was asked for.
struct MountReq<'a> {
    timeout: Option<f64>,
    debug: bool,
    set_daxmode: bool,
    fallback: bool,
    device: &'a Path,
    mpt: &'a Path,
    extra: &'a [String],
    verbose: u8,
}

/// Rebinds the devdax device whose sysfs directory is `sys` to `want` (as scripts/daxmode does:
/// fsdev_dax only takes a device through its new_id list).
fn set_dax_driver(sys: &Path, want: &famfs_media::DaxDriver) -> Result<()> {
    use famfs_media::DaxDriver;
    let name = sys.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let drivers = Path::new("/sys/bus/dax/drivers");
    let write = |p: &Path| std::fs::write(p, &name).with_context(|| format!("cannot write {name} to {}", p.display()));
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

fn cmd_mount(r: &MountReq) -> Result<()> {
    use famfs_media::DaxDriver;
    // SAFETY: trivial getter.
    if unsafe { libc::geteuid() } != 0 {
        bail!("famfs mount must be run as root (the server needs CAP_SYS_ADMIN for FUSE passthrough and /dev/famfs)");
    }
    let mpt = std::fs::canonicalize(r.mpt).with_context(|| format!("mount point {}", r.mpt.display()))?;
    if !mpt.is_dir() {
        bail!("mount point {} is not a directory", mpt.display());
    }
    let device = std::fs::canonicalize(r.device).with_context(|| format!("device {}", r.device.display()))?;
    let mounts = crate::mkfs_cmd::mounted_at(&device);
    if !mounts.is_empty() {
        bail!("{} is already mounted at {}", device.display(), mounts.join(", "));
    }
    let module_loaded = Path::new("/dev/famfs").exists();
    let fallback = r.fallback || !module_loaded;
    if !r.fallback && !module_loaded {
        eprintln!("famfs: warning: famfs.ko is not loaded (no /dev/famfs): the server will run in the slow fallback mode");
    }
    if let Some(sys) = famfs_media::dax_sysfs_dir(&device) {
        let want = if fallback { DaxDriver::DeviceDax } else { DaxDriver::FsdevDax };
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
            set_dax_driver(&sys, &want).with_context(|| format!("cannot rebind {} to {want}", device.display()))?;
            let now = famfs_media::dax_driver(&device).unwrap_or(DaxDriver::Unbound);
            if now != want {
                bail!("{} is bound to {now} after rebinding, not {want}", device.display());
            }
            println!("famfs: {} rebound from {have} to {want}", device.display());
        }
    }
    // The superblock must be valid before a server is started on it.
    {
        let media = famfs_media::Media::open(&device, Access::ReadOnly).with_context(|| format!("cannot open {}", device.display()))?;
        media
            .read_superblock()
            .with_context(|| format!("{} holds no valid famfs superblock (make one with mkfs.famfs)", device.display()))?;
    }
    let server = find_helper("famfs-fused")
        .ok_or_else(|| anyhow!("the famfs FUSE server famfs-fused is not installed (not next to famfs nor on PATH)"))?;
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
    cmd.arg(&device).arg(&mpt).args(r.extra);
    // famfs-fused daemonizes and returns once the mount answers, printing role and mode.
    let st = cmd.status().with_context(|| format!("cannot run {}", server.display()))?;
    if !st.success() {
        bail!("the famfs server failed to mount {} on {} ({st})", device.display(), mpt.display());
    }
    Ok(())
}

/// Processes of famfs-fused serving `mpt` (found by their command lines).
fn servers_of(mpt: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
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

fn cmd_umount(mpt: &Path) -> Result<()> {
    let canon = std::fs::canonicalize(mpt).with_context(|| format!("cannot resolve {}", mpt.display()))?;
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let is_famfs = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && Path::new(f[1]) == canon && f[2].starts_with("fuse") && l.contains("famfs")
    });
    if !is_famfs {
        bail!("{} is not a famfs mount", mpt.display());
    }
    let servers = servers_of(&canon);
    let tool = find_helper("fusermount3").or_else(|| find_helper("fusermount")).ok_or_else(|| anyhow!("fusermount3 not found (install fuse3)"))?;
    let st = std::process::Command::new(tool).arg("-u").arg(&canon).status()?;
    if !st.success() {
        bail!("unmount of {} failed ({st})", canon.display());
    }
    // The server exits when the session ends; wait for it so that the device is released (and
    // can be attached again) when we return.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let alive = |pid: &u32| {
        // A zombie has closed its files already: it counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
    };
    while servers.iter().any(alive) {
        if std::time::Instant::now() > deadline {
            eprintln!("famfs: warning: the server of {} has not exited yet", canon.display());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Runs a parsed command line; `Ok(false)` means "ran, but the answer is no" (exit 1).
pub fn run(cli: &Cli) -> Result<bool> {
    match &cli.cmd {
        Cmd::Mkdir { parents, owner, dirs } => cmd_mkdir(cli, *parents, owner, dirs).map(|()| true),
        Cmd::Creat { size, randomize, seed, owner, stripe, multi, file } => {
            cmd_creat(cli, *size, *randomize, *seed, owner, stripe, multi, file).map(|()| true)
        }
        Cmd::Cp { recursive, threads, compare, contents, umask, owner, stripe, paths } => {
            let o = CpOpts { recursive: *recursive, threads: (*threads).clamp(1, 64), compare: *compare, contents: *contents, umask: *umask, owner, stripe };
            cmd_cp(cli, &o, paths).map(|()| true)
        }
        Cmd::Verify { seed, file } => cmd_verify(cli, *seed, file).map(|()| true),
        Cmd::Logplay { dry_run, mpt } => cmd_logplay(cli, *dry_run, mpt).map(|()| true),
        Cmd::Fsck { human, json, path, .. } => cmd_fsck(cli, *human, *json, path).map(|damaged| !damaged),
        Cmd::Getmap { quiet, json, file } => cmd_getmap(cli, *quiet, *json, file),
        Cmd::Cat { file } => cmd_cat(cli, file).map(|()| true),
        Cmd::Flush { files } => cmd_flush(cli, files).map(|()| true),
        Cmd::Mount { timeout, debug, set_daxmode, fallback, device, mpt, extra } => cmd_mount(&MountReq {
            timeout: *timeout,
            debug: *debug,
            set_daxmode: *set_daxmode,
            fallback: *fallback,
            device,
            mpt,
            extra,
            verbose: cli.verbose,
        })
        .map(|()| true),
        Cmd::Umount { mpt } => cmd_umount(mpt).map(|()| true),
        Cmd::GenMan { dir } => crate::man::write_all(dir).map(|()| true),
    }
}

/// Entry point of the binary; returns the exit code.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = Cli::parse_from(args);
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
