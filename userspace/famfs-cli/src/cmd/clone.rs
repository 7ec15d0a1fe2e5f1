//! `famfs clone`.

use super::common::*;
use anyhow::Result;
use clap::Args;
use famfs_meta::Access;
use std::path::{Path, PathBuf};

/// Log a new file DEST sharing SRC's memory (a cross-linked file, for testing fsck).
#[derive(Args, Debug)]
pub struct CloneArgs {
    /// The existing famfs file.
    pub src: PathBuf,
    /// The new file.
    pub dest: PathBuf,
}

pub fn run(cli: &GlobalArgs, a: &CloneArgs) -> Result<bool> {
    cmd_clone(cli, &a.src, &a.dest).map(|()| true)
}

/// `famfs clone`: a new file sharing SRC's memory (cross-linked; fsck reports it).
fn cmd_clone(cli: &GlobalArgs, src: &Path, dest: &Path) -> Result<()> {
    let mut t = need_dev_or_mount(cli, dest, Access::ReadWrite)?;
    let s = t.rel(src)?;
    let d = t.rel(dest)?;
    t.fs.with_log_lock(|a| a.clone_file(&s, &d))?;
    eprintln!("famfs clone: /{d} shares the memory of /{s}: fsck reports the two as cross-linked");
    Ok(())
}
