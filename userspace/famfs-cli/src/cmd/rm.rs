//! `famfs rm`.

use super::common::*;
use anyhow::{bail, Result};
use clap::Args;
use famfs_meta::{Access, MetaError};
use std::path::PathBuf;

/// Remove files (with -r, directories and everything under them). The paths disappear on every
/// host that plays the log; the memory stays allocated until `famfs reclaim` finds no holder.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove directories and their contents, recursively.
    #[arg(short = 'r', short_alias = 'R', long)]
    pub recursive: bool,
    /// Ignore paths that do not exist.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Revoke the files on every host (mappings SIGBUS, descriptors ESTALE) instead of letting
    /// processes that hold them keep them until they let go.
    #[arg(long)]
    pub revoke: bool,
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &RmArgs) -> Result<bool> {
    let mut t = need_dev_or_mount(cli, &a.paths[0], Access::ReadWrite)?;
    let mut rels = Vec::new();
    for p in &a.paths {
        if t.rel_str(p)?.is_empty() {
            bail!(
                "{}: the root of the file system cannot be removed",
                p.display()
            );
        }
        rels.push((p, t.rel(p)?));
    }
    let mut failed = false;
    let verbose = cli.verbose > 0;
    t.fs.with_log_lock(|ap| {
        for (p, r) in &rels {
            let ns = ap.namespace();
            let Some(ino) = ns.resolve(r.as_str()) else {
                if !a.force {
                    eprintln!("famfs rm: {}: no such file or directory", p.display());
                    failed = true;
                }
                continue;
            };
            let is_dir = ns.get(ino).is_some_and(|n| n.is_dir());
            let done = match (is_dir, a.recursive) {
                (true, false) => {
                    eprintln!(
                        "famfs rm: {}: is a directory (use -r, or `famfs rmdir` when it is empty)",
                        p.display()
                    );
                    failed = true;
                    continue;
                }
                (true, true) => ap.remove_all(r, a.revoke)?,
                (false, _) => vec![ap.unlink(r, a.revoke)?],
            };
            if verbose {
                println!(
                    "removed {} ({} entr{}; memory pending until `famfs reclaim`)",
                    p.display(),
                    done.len(),
                    if done.len() == 1 { "y" } else { "ies" }
                );
            }
        }
        Ok::<(), MetaError>(())
    })?;
    Ok(!failed)
}
