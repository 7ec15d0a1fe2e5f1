//! TEMPORARY (until the CLI split lands on main): the new verbs of issue 23.
mod common;
pub use common::GlobalArgs;
pub mod compact;
pub mod pending;
pub mod reclaim;
pub mod rm;
pub mod rmdir;
