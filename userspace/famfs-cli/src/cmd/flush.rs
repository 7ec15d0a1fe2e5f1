//! `famfs flush`.

use super::common::*;
use anyhow::{anyhow, Context, Result};
use clap::Args;
use famfs_format::RelPath;
use famfs_meta::Access;
use std::path::{Path, PathBuf};

/// Flush the CPU caches of files' memory (every file under a directory; the meta files too
/// for the root).
#[derive(Args, Debug)]
pub struct FlushArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &FlushArgs) -> Result<bool> {
    cmd_flush(cli, &a.files).map(|()| true)
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

fn cmd_flush(cli: &GlobalArgs, files: &[PathBuf]) -> Result<()> {
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
