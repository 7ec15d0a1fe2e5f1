//! famfs metadata: playing the log into a [`Namespace`], appending to it (master only), and
//! formatting a device.
//!
//! The entry point is [`Famfs`]. A FUSE server would:
//!
//! ```no_run
//! use famfs_meta::{Famfs, Access, ROOT_INO};
//! let mut fs = Famfs::open("/dev/dax0.0".as_ref(), Access::ReadOnly)?;   // plays the whole log
//! let ino = fs.namespace().lookup(ROOT_INO, "file").unwrap();            // lookup
//! let node = fs.namespace().get(ino).unwrap();                           // getattr
//! let fmap = &node.file().unwrap().fmap;                                 // the file's map
//! let stats = fs.refresh()?;                                             // cheap: plays only new entries
//! # Ok::<(), famfs_meta::MetaError>(())
//! ```

mod compact;
mod fs;
mod namespace;
mod role;

/// Every devdax device of this host ([`famfs_media::dax::devices`]).
pub use famfs_media::dax::devices as dax_devices;
/// Finding a file system's devices by uuid: it lives with the rest of the devdax device in
/// [`famfs_media::dax`].
pub use famfs_media::dax::resolver;

pub use compact::{CompactRecord, CompactReport, COMPACT_RECORD_OFFSET, COMPACT_RECORD_SIZE};
pub use famfs_media::{Access, MediaKind};
pub use fs::{
    enable_deletes, mkfs, Appender, Device, Famfs, Layout, MkfsOptions, OfflineGate, PendingDelete,
    PlayStats, Problem, ProblemKind, ReclaimGate, ReclaimReport, MAX_DEVICES, MAX_DEVICE_SIZE,
};
pub use namespace::{
    ApplyConflict, FileInfo, Ino, Namespace, Node, NodeKind, RemoveConflict, ROOT_INO,
};
pub use role::{
    local_system_uuid, parse_uuid_file, system_uuid_path, Role, SYSTEM_UUID_ENV, SYSTEM_UUID_PATH,
};

use famfs_alloc::AllocError;
use famfs_format::FormatError;
use famfs_media::MediaError;
use std::path::PathBuf;
use thiserror::Error;

/// Errors of metadata operations.
#[derive(Debug, Error)]
pub enum MetaError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error("log entry {index} is damaged: {source} (the log stops there; run `famfs fsck`)")]
    LogDamaged { index: u64, source: FormatError },
    #[error(
        "the log shrank from {played} to {now} entries: the device was reformatted; reopen it"
    )]
    LogWentBackwards { played: u64, now: u64 },
    #[error("the superblock changed under us (reformatted?); reopen the file system")]
    SuperblockChanged,
    #[error("this host is a client of this file system (master system uuid {master}, ours {ours}): only the master may create files or directories")]
    NotMaster { master: String, ours: String },
    #[error("the file system was opened read-only; open it read-write to modify it")]
    ReadOnly,
    #[error("the log is full ({capacity} entries): run `famfs compact` on the master (with the file system unmounted on every host) to rewrite it with only the live entries, or make a new file system with a bigger --loglen")]
    LogFull { capacity: u64 },
    #[error("/{0}: directory not empty (remove its contents first, or use `famfs rm -r`)")]
    NotEmpty(String),
    #[error("the first delete on a file system marks its superblock (version 49, so that the C famfs tools refuse it from then on), and through a mount the superblock is read-only: unmount it and run this `famfs rm` once with --device DEV on the master (or make file systems with `mkfs.famfs --enable-delete`)")]
    DeletesNotEnabled,
    #[error("the root directory cannot be removed")]
    RemoveRoot,
    #[error("a log compaction of this file system was interrupted (the new log is at {scratch:#x}): open it read-write on the master (e.g. `famfs compact` or `famfs fsck` there) to finish it")]
    CompactionInterrupted { scratch: u64 },
    #[error("cannot compact: {0}")]
    CannotCompact(String),
    #[error("/{0}: already exists")]
    Exists(String),
    #[error("/{0}: no such file or directory")]
    NotFound(String),
    #[error("/{0}: not a directory")]
    NotADirectory(String),
    #[error("/{0}: is a directory")]
    IsADirectory(String),
    #[error("file data is not reachable through {0:?} media (only the superblock and log are); use the device or the mounted files")]
    NoData(MediaKind),
    #[error("access [{offset}, +{len}) beyond the end of /{path} ({size} bytes)")]
    BeyondEof {
        path: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("the superblock's device size {size} is implausible (more than {max} bytes): damaged superblock")]
    ImplausibleDeviceSize { size: u64, max: u64 },
    #[error("device {0} is not in this file system's device table")]
    NoSuchDevice(u64),
    #[error("{path} is not device {index} of this file system: {why}")]
    WrongDevice {
        index: u32,
        path: PathBuf,
        why: String,
    },
    #[error("{0}")]
    DeviceMissing(String),
    #[error("/{path}: its memory is on a device this host does not have: {why}")]
    FileDeviceMissing { path: String, why: String },
    #[error("{0} is already a device of this file system")]
    AlreadyMember(PathBuf),
    #[error("a file system has at most {0} devices")]
    TooManyDevices(usize),
    #[error(
        "log entry {index}: {what}: another writer appended to this log without this host's append \
         lock: a second master (another host with this host's system uuid, or a tool that does not \
         take the lock, such as the C famfs). Only one host may be the master of a file system: \
         stop the other writer, then check the log with `famfs fsck`"
    )]
    TwoWriters { index: u64, what: String },
    #[error("system uuid file {path}: {source}")]
    SystemUuid {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;
