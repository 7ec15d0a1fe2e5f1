//! `famfs getmap`.

use super::common::*;
use anyhow::{bail, Result};
use clap::Args;
use famfs_meta::Access;
use std::path::{Path, PathBuf};

/// Print a file's map.
#[derive(Args, Debug)]
pub struct GetmapArgs {
    /// No output; the exit code says whether FILE is a famfs file.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(long)]
    pub json: bool,
    pub file: PathBuf,
}

pub fn run(cli: &GlobalArgs, a: &GetmapArgs) -> Result<bool> {
    cmd_getmap(cli, a.quiet, a.json, &a.file)
}

fn cmd_getmap(cli: &GlobalArgs, quiet: bool, json: bool, file: &Path) -> Result<bool> {
    let t = match need_dev_or_mount(cli, file, Access::ReadOnly) {
        Ok(t) => t,
        Err(e) if quiet => {
            let _ = e;
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let rel = t.rel_str(file)?;
    let node =
        t.fs.namespace()
            .resolve(&rel)
            .and_then(|i| t.fs.namespace().get(i));
    let Some(f) = node.and_then(|n| n.file()) else {
        if quiet {
            return Ok(false);
        }
        bail!("/{rel}: not a famfs file");
    };
    if quiet {
        return Ok(true);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"path": format!("/{rel}"), "size": f.size, "flags": f.flags.0, "fmap": fmap_json(&f.fmap)})
            )?
        );
    } else {
        println!("File: /{rel}");
        println!("  size: {}", f.size);
        print_fmap(&f.fmap, "  ");
    }
    Ok(true)
}
