//! Mount table checks (refuse a device that is already mounted and a mount point in use): the
//! one mountinfo reader of famfs-media, re-exported.

pub use famfs_media::mounts::*;

/// The famfs FUSE mount type as mountinfo shows it.
pub const FSTYPE: &str = FAMFS_FSTYPE;
