//! `famfs mkdir`.

use super::common::*;
use anyhow::{bail, Result};
use clap::Args;
use famfs_format::RelPath;
use famfs_meta::Access;
use std::path::PathBuf;

/// Create directories.
#[derive(Args, Debug)]
pub struct MkdirArgs {
    /// Create missing parents; existing directories are fine.
    #[arg(short = 'p', long)]
    pub parents: bool,
    #[command(flatten)]
    pub owner: Owner,
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &MkdirArgs) -> Result<bool> {
    cmd_mkdir(cli, a.parents, &a.owner, &a.dirs).map(|()| true)
}

fn cmd_mkdir(cli: &GlobalArgs, parents: bool, owner: &Owner, dirs: &[PathBuf]) -> Result<()> {
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
