//! `famfs gen-man` (hidden; used by make install).

use anyhow::Result;
use clap::{Args, CommandFactory};
use std::path::PathBuf;

/// Write the man pages of famfs, its verbs and mkfs.famfs into DIR (used by make install).
#[derive(Args, Debug)]
#[command(hide = true)]
pub struct GenManArgs {
    pub dir: PathBuf,
}

/// Writes the pages of `famfs` (the clap definition of the whole tool, which lives above the verbs)
/// and of mkfs.famfs.
pub fn run(famfs: clap::Command, a: &GenManArgs) -> Result<bool> {
    crate::man::write_all(&a.dir, famfs, crate::mkfs_cmd::MkfsArgs::command()).map(|()| true)
}
