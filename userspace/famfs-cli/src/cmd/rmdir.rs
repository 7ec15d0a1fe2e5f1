//! `famfs rmdir`.

use super::common::*;
use anyhow::{bail, Result};
use clap::Args;
use famfs_meta::Access;
use std::path::PathBuf;

/// Remove empty directories.
#[derive(Args, Debug)]
pub struct RmdirArgs {
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &RmdirArgs) -> Result<bool> {
    let mut t = need_dev_or_mount(cli, &a.dirs[0], Access::ReadWrite)?;
    let mut rels = Vec::new();
    for d in &a.dirs {
        if t.rel_str(d)?.is_empty() {
            bail!(
                "{}: the root of the file system cannot be removed",
                d.display()
            );
        }
        rels.push(t.rel(d)?);
    }
    t.fs.with_log_lock(|ap| {
        for r in &rels {
            ap.rmdir(r)?;
        }
        Ok(())
    })?;
    Ok(true)
}
