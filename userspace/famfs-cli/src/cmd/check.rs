//! `famfs check`.

use super::common::*;
use crate::target::Target;
use anyhow::{anyhow, Context, Result};
use clap::Args;
use famfs_meta::Access;
use std::path::{Path, PathBuf};

/// Check every file of a mounted famfs against the log: each regular file must be a logged
/// file of the same size, and each logged path must be there.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The mount point (or a path inside it).
    pub mpt: PathBuf,
}

pub fn run(cli: &GlobalArgs, a: &CheckArgs) -> Result<bool> {
    cmd_check(cli, &a.mpt)
}

/// `famfs check`: every regular file of the mount is a logged file of the same size, and every
/// logged path is there.
fn cmd_check(cli: &GlobalArgs, mpt: &Path) -> Result<bool> {
    let t = Target::open(None, mpt, Access::ReadOnly)?;
    let root = t
        .mpt
        .clone()
        .ok_or_else(|| anyhow!("{} is not a famfs mount", mpt.display()))?;
    let ns = t.fs.namespace();
    let (mut files, mut dirs, mut errors) = (0u64, 0u64, Vec::<String>::new());
    let mut stack = vec![root.clone()];
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let e = e?;
            let p = e.path();
            if d == root && e.file_name() == ".meta" {
                continue;
            }
            let rel = t.rel_str(&p)?;
            let md = std::fs::symlink_metadata(&p)?;
            let node = ns.resolve(&rel).and_then(|i| ns.get(i));
            seen.insert(rel.clone());
            if md.is_dir() {
                dirs += 1;
                stack.push(p);
                if !node.is_some_and(|n| n.is_dir()) {
                    errors.push(format!("/{rel}: a directory the log does not hold"));
                }
            } else {
                files += 1;
                match node.and_then(|n| n.file()) {
                    Some(f) if f.size == md.len() => {}
                    Some(f) => errors.push(format!(
                        "/{rel}: size {} but the log says {}",
                        md.len(),
                        f.size
                    )),
                    None => errors.push(format!("/{rel}: a file the log does not hold")),
                }
            }
        }
    }
    for n in ns.nodes().skip(1) {
        let p = ns.path_of(n.ino).unwrap_or_default();
        if !seen.contains(&p) {
            errors.push(format!("/{p}: logged but missing from the mount"));
        }
    }
    for e in &errors {
        println!("  error: {e}");
    }
    if cli.verbose > 0 || !errors.is_empty() {
        println!(
            "{}: {files} files, {dirs} directories, {} errors",
            root.display(),
            errors.len()
        );
    } else {
        println!(
            "{}: {files} files, {dirs} directories, 0 errors",
            root.display()
        );
    }
    Ok(errors.is_empty())
}
