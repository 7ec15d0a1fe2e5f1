//! TEMPORARY shim of the split's cmd/common.rs.
use crate::target::Target;
use anyhow::Result;
use famfs_meta::Access;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct GlobalArgs {
    pub device: Option<PathBuf>,
    pub verbose: u8,
}

pub(crate) fn need_dev_or_mount(cli: &GlobalArgs, hint: &Path, access: Access) -> Result<Target> {
    Target::open(cli.device.as_deref(), hint, access)
}
