//! `famfs cat`.

use super::common::*;
use anyhow::Result;
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
    let mut out = std::io::stdout().lock();
    // Through the mount, the file as it is there (whatever the log says of it).
    if let Some(mut f) = open_in_mount(&t, &rel)? {
        std::io::copy(&mut f, &mut out)?;
        return Ok(());
    }
    let (ino, size) = resolve_file(&t, &rel)?;
    read_chunks(&t, ino, size, None, |_, chunk| Ok(out.write_all(chunk)?))
}
