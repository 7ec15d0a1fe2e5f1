//! What several verbs share: the global options, owner and interleaving options, opening the
//! file system a verb works on, reading a file's content, a thread pool, notes about accepted C
//! options, finding a helper program, and how maps and devices are printed.

use crate::target::Target;
use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgAction, Args};
use famfs_alloc::InterleaveParams;
use famfs_format::{format_uuid, Fmap, RelPath};
use famfs_meta::{Access, Ino, Layout};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The options of `famfs` that every verb takes.
#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Work on this unmounted devdax device or image file; paths are then inside the file system
    /// (e.g. /dir/file). Without it, paths are host paths inside a mounted famfs.
    #[arg(long, global = true, value_name = "DEV")]
    pub device: Option<PathBuf>,
    /// More detail.
    #[arg(short = 'v', long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
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
    pub(crate) fn layout(&self, device_size: u64) -> Result<Layout> {
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
    pub(crate) fn ids(&self) -> (u32, u32) {
        let (u, g) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        (self.uid.unwrap_or(u), self.gid.unwrap_or(g))
    }
}

pub(crate) fn need_dev_or_mount(cli: &GlobalArgs, hint: &Path, access: Access) -> Result<Target> {
    Target::open(cli.device.as_deref(), hint, access)
}

/// The inode and size of the regular file `rel` in the target's namespace.
pub(crate) fn resolve_file(t: &Target, rel: &RelPath) -> Result<(Ino, u64)> {
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
    Ok((ino, size))
}

/// The file `rel` opened through the mount, when the target is a mount.
pub(crate) fn open_in_mount(t: &Target, rel: &RelPath) -> Result<Option<File>> {
    t.host_path(rel)
        .map(|p| File::open(&p).with_context(|| format!("cannot open {}", p.display())))
        .transpose()
}

/// Reads the `size` bytes of file `ino` in chunks of up to 4 MiB, from `host` (the file opened
/// through the mount) when given, else through the file's map on the device, and hands each
/// chunk with its offset to `each`.
pub(crate) fn read_chunks(
    t: &Target,
    ino: Ino,
    size: u64,
    mut host: Option<File>,
    mut each: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; (4 << 20).min(size as usize)];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        match &mut host {
            Some(f) => f.read_exact(&mut buf[..n])?,
            None => t.fs.read_data(ino, off, &mut buf[..n])?,
        }
        each(off, &buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

/// Runs `f` over `items` with up to `threads` threads; returns the errors, in item order.
pub(crate) fn parallel<T: Sync>(
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

/// Says on stderr why an option of the C famfs is accepted and does nothing here.
pub(crate) fn note(verb: &str, given: bool, opt: &str, why: &str) {
    if given {
        eprintln!("famfs {verb}: note: {opt} accepted and not needed: {why}");
    }
}

/// Finds an executable next to ours or on PATH.
pub(crate) fn find_helper(name: &str) -> Option<PathBuf> {
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)));
    let path = std::env::var_os("PATH").unwrap_or_default();
    here.into_iter()
        .chain(std::env::split_paths(&path).map(|d| d.join(name)))
        .find(|p| p.is_file())
}

pub(crate) fn daxdev_json(d: &famfs_format::DaxdevEntry) -> serde_json::Value {
    serde_json::json!({"index": d.index, "size": d.size, "uuid": format_uuid(&d.uuid), "name": d.name})
}

pub(crate) fn daxdev_line(d: &famfs_format::DaxdevEntry) -> String {
    format!(
        "daxdev index {} size {} uuid {} name {:?}",
        d.index,
        d.size,
        format_uuid(&d.uuid),
        d.name
    )
}

pub(crate) fn fmap_json(f: &Fmap) -> serde_json::Value {
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

pub(crate) fn print_fmap(f: &Fmap, indent: &str) {
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
