//! `famfs creat`.

use super::common::*;
use crate::pattern;
use crate::target::Target;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use famfs_format::RelPath;
use famfs_meta::{Access, Appender, Ino, MetaError};
use std::io::Write;
use std::path::PathBuf;

/// Create files (allocating their memory).
#[derive(Args, Debug)]
pub struct CreatArgs {
    /// File size (e.g. 4096, 4k, 2M, 1G).
    #[arg(short = 's', long, value_parser = crate::parse_size_arg)]
    pub size: Option<u64>,
    /// Fill the file with the pseudo-random pattern of the seed (-S; random seed if absent).
    #[arg(short = 'r', long)]
    pub randomize: bool,
    /// Seed of the pattern (implies -r). On an existing file without -s: re-fill it at its
    /// size.
    #[arg(short = 'S', long, value_parser = crate::parse_c_ulong)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub owner: Owner,
    #[command(flatten)]
    pub stripe: Stripe,
    /// Create several files: name,size[,seed] (repeatable; seed fills it like -r -S; size 0
    /// with a seed re-fills an existing file at its size).
    #[arg(short = 'M', long = "multi", value_name = "NAME,SIZE[,SEED]")]
    pub multi: Vec<String>,
    /// Fill files with this many threads (one file per thread at a time; 1 to 256).
    #[arg(short = 't', long = "threadct", value_name = "N", default_value_t = 1, value_parser = crate::parse_threadct)]
    pub threads: usize,
    /// The file to create.
    pub file: Option<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &CreatArgs) -> Result<bool> {
    cmd_creat(cli, a).map(|()| true)
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

fn cmd_creat(cli: &GlobalArgs, o: &CreatArgs) -> Result<()> {
    // (path, size, seed); no size: an existing file re-filled at its size (C scripts re-randomise
    // files with `creat -S SEED -r FILE` or `-M FILE,0,SEED`).
    let mut jobs: Vec<(PathBuf, Option<u64>, Option<u64>)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    if (o.randomize || o.seed.is_some()) && !o.multi.is_empty() {
        bail!("-r/-S do not combine with -M: give each file's seed in -M NAME,SIZE,SEED");
    }
    if let Some(f) = &o.file {
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
    for m in &o.multi {
        let parts: Vec<&str> = m.split(',').collect();
        if parts.len() < 2 || parts.len() > 3 {
            bail!("-M {m:?}: expected name,size[,seed]");
        }
        let size =
            famfs_cmdline::size::parse_size(parts[1]).map_err(|e| anyhow!("-M {m:?}: {e}"))?;
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
