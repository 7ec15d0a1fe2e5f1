//! The verbs of `famfs`, one file each (see famfs_cmd.rs for how a verb is added), and what they
//! share (common.rs).

mod common;

pub use common::GlobalArgs;

pub mod cat;
pub mod check;
pub mod chkread;
pub mod clone;
pub mod compact;
pub mod cp;
pub mod creat;
pub mod daxdev;
pub mod devadd;
pub mod flush;
pub mod fsck;
pub mod gen_man;
pub mod getmap;
pub mod logplay;
pub mod mkdir;
pub mod mkmeta;
pub mod mount;
pub mod pending;
pub mod reclaim;
pub mod rm;
pub mod rmdir;
pub mod umount;
pub mod verify;
