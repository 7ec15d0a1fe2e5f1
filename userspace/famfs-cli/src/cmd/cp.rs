//! `famfs cp`.

use super::common::*;
use crate::target::Target;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use famfs_format::RelPath;
use famfs_meta::{Access, Ino, MetaError};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Copy files into famfs.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Copy directories recursively.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Copy data with this many threads (1 to 256).
    #[arg(short = 't', long = "threadct", visible_alias = "threads", default_value_t = 1, value_parser = crate::parse_threadct)]
    pub threads: usize,
    /// Compare each copy with its source afterwards (exit 1 on a difference).
    #[arg(short = 'c', long)]
    pub compare: bool,
    /// With -r: copy a source directory's contents into an existing DEST directory instead
    /// of into DEST/NAME (what the C famfs's `cp -r SRC DEST/` does).
    #[arg(long)]
    pub contents: bool,
    /// Apply this process's umask to -m MODE (as the C famfs does).
    #[arg(long)]
    pub umask: bool,
    #[command(flatten)]
    pub owner: Owner,
    #[command(flatten)]
    pub stripe: Stripe,
    /// Sources (host paths) then the destination (in famfs).
    #[arg(required = true, num_args = 2..)]
    pub paths: Vec<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &CpArgs) -> Result<bool> {
    let o = CpOpts {
        recursive: a.recursive,
        threads: a.threads.clamp(1, 64),
        compare: a.compare,
        contents: a.contents,
        umask: a.umask,
        owner: &a.owner,
        stripe: &a.stripe,
    };
    cmd_cp(cli, &o, &a.paths).map(|()| true)
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

fn cmd_cp(cli: &GlobalArgs, o: &CpOpts, paths: &[PathBuf]) -> Result<()> {
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
