//! What the famfs command-line programs (famfs, mkfs.famfs, famfs-perf) share, so that each
//! convention has one home: size arguments and byte counts for people ([`size`]), and a quiet
//! end when the reader of standard output goes away ([`pipe`]).

pub mod pipe;
pub mod size;
