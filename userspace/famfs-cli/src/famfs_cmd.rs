//! The `famfs` command line: the clap definition of the tool and its verbs, and the dispatch.
//!
//! Each verb lives in its own file, `cmd/<verb>.rs` (the way cargo organises its CLI): a
//! `#[derive(Args)]` struct whose doc comment is the verb's one-line help, and
//! `pub fn run(global: &GlobalArgs, args: &VerbArgs) -> Result<bool>`. Adding a verb is that new
//! file, a `pub mod` line in cmd/mod.rs, a variant in [`Cmd`] and a line in [`run`]. What several
//! verbs share is in cmd/common.rs.

use crate::cmd::GlobalArgs;
use crate::cmd::{
    cat, check, chkread, clone, compact, cp, creat, daxdev, devadd, flush, fsck, gen_man, getmap,
    logplay, mkdir, mkmeta, mount, reclaim, rm, rmdir, umount, verify,
};
use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use famfs_meta::MetaError;

pub use crate::help_alias;

/// famfs: create and inspect files in fabric-attached (CXL) shared memory.
#[derive(Parser, Debug)]
#[command(name = "famfs", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The verbs, in the order `famfs --help` lists them; each one's help is its struct's doc comment.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    Mkdir(mkdir::MkdirArgs),
    Creat(creat::CreatArgs),
    Rm(rm::RmArgs),
    Rmdir(rmdir::RmdirArgs),
    Reclaim(reclaim::ReclaimArgs),
    Compact(compact::CompactArgs),
    Cp(cp::CpArgs),
    Verify(verify::VerifyArgs),
    Logplay(logplay::LogplayArgs),
    Fsck(fsck::FsckArgs),
    Getmap(getmap::GetmapArgs),
    Cat(cat::CatArgs),
    Flush(flush::FlushArgs),
    Check(check::CheckArgs),
    Chkread(chkread::ChkreadArgs),
    Clone(clone::CloneArgs),
    Mkmeta(mkmeta::MkmetaArgs),
    Mount(mount::MountArgs),
    Umount(umount::UmountArgs),
    Devadd(devadd::DevaddArgs),
    Daxdev(daxdev::DaxdevArgs),
    #[command(hide = true)]
    GenMan(gen_man::GenManArgs),
}

/// Runs a parsed command line; `Ok(false)` means "ran, but the answer is no" (exit 1).
pub fn run(cli: &Cli) -> Result<bool> {
    match &cli.cmd {
        Cmd::Mkdir(a) => mkdir::run(&cli.global, a),
        Cmd::Creat(a) => creat::run(&cli.global, a),
        Cmd::Rm(a) => rm::run(&cli.global, a),
        Cmd::Rmdir(a) => rmdir::run(&cli.global, a),
        Cmd::Reclaim(a) => reclaim::run(&cli.global, a),
        Cmd::Compact(a) => compact::run(&cli.global, a),
        Cmd::Cp(a) => cp::run(&cli.global, a),
        Cmd::Verify(a) => verify::run(&cli.global, a),
        Cmd::Logplay(a) => logplay::run(&cli.global, a),
        Cmd::Fsck(a) => fsck::run(&cli.global, a),
        Cmd::Getmap(a) => getmap::run(&cli.global, a),
        Cmd::Cat(a) => cat::run(&cli.global, a),
        Cmd::Flush(a) => flush::run(&cli.global, a),
        Cmd::Check(a) => check::run(&cli.global, a),
        Cmd::Chkread(a) => chkread::run(&cli.global, a),
        Cmd::Clone(a) => clone::run(&cli.global, a),
        Cmd::Mkmeta(a) => mkmeta::run(&cli.global, a),
        Cmd::Mount(a) => mount::run(&cli.global, a),
        Cmd::Umount(a) => umount::run(&cli.global, a),
        Cmd::Devadd(a) => devadd::run(&cli.global, a),
        Cmd::Daxdev(a) => daxdev::run(&cli.global, a),
        Cmd::GenMan(a) => gen_man::run(Cli::command(), a),
    }
}

/// Entry point of the binary; returns the exit code.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = Cli::parse_from(help_alias(args));
    match run(&cli) {
        Ok(true) => 0,
        Ok(false) => crate::EXIT_ERROR,
        Err(e) => {
            let code = crate::report("famfs", &e);
            if let Some(MetaError::NotMaster { .. }) = e.downcast_ref::<MetaError>() {
                eprintln!("famfs: hint: run this on the master host, or use a file system made on this host");
            }
            code
        }
    }
}
