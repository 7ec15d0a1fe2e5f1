//! `famfs cat`.

use super::common::*;
use anyhow::{anyhow, Context, Result};
use clap::Args;
use famfs_meta::Access;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write a famfs file's content to standard output (handy with --device).
#[derive(Args, Debug)]
pub struct CatArgs {
    pub file: PathBuf,
}

pub fn run(cli: &GlobalArgs, a: &CatArgs) -> Result<bool> {
    cmd_cat(cli, &a.file).map(|()| true)
}

fn cmd_cat(cli: &GlobalArgs, file: &Path) -> Result<()> {
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
