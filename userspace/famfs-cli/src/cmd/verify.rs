//! `famfs verify`.

use super::common::*;
use crate::pattern;
use crate::target::Target;
use anyhow::{anyhow, bail, Result};
use clap::Args;
use famfs_meta::Access;
use std::path::{Path, PathBuf};

/// Check that a file holds the pattern of a seed.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Seed of the pattern of every -f FILE.
    #[arg(short = 'S', long, value_parser = crate::parse_c_ulong)]
    pub seed: Option<u64>,
    /// A file to check (repeatable; files may also follow the options).
    #[arg(short = 'f', long)]
    pub file: Vec<PathBuf>,
    /// NAME,SEED: a file and its own seed (repeatable).
    #[arg(short = 'm', long = "multi", value_name = "NAME,SEED")]
    pub multi: Vec<String>,
    /// Check with this many threads (one file per thread at a time; 1 to 256, as C).
    #[arg(short = 't', long = "threadct", value_name = "N", default_value_t = 1, value_parser = crate::parse_threadct)]
    pub threads: usize,
    /// Print nothing; the exit code says whether every file matched.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// More files to check against -S SEED.
    pub files: Vec<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &VerifyArgs) -> Result<bool> {
    let o = VerifyOpts {
        seed: a.seed,
        files: a.file.iter().chain(&a.files).cloned().collect(),
        multi: &a.multi,
        threads: a.threads,
        quiet: a.quiet,
    };
    cmd_verify(cli, &o)
}

/// Options of `famfs verify`.
struct VerifyOpts<'a> {
    seed: Option<u64>,
    files: Vec<PathBuf>,
    multi: &'a [String],
    threads: usize,
    quiet: bool,
}

fn cmd_verify(cli: &GlobalArgs, o: &VerifyOpts) -> Result<bool> {
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
    let (ino, size) = resolve_file(t, &rel)?;
    let host = open_in_mount(t, &rel)?;
    read_chunks(t, ino, size, host, |off, chunk| {
        if let Some(i) = pattern::first_mismatch(seed, off, chunk) {
            bail!(
                "/{rel}: content differs from the pattern of seed {seed} at offset {}",
                off + i as u64
            );
        }
        Ok(())
    })
}
