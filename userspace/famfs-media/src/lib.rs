//! Access to famfs media: a devdax character device, a regular file used as a device image, or the
//! meta files (`.meta/.superblock`, `.meta/.log`) of a mounted famfs.
//!
//! Everything is addressed by *device offset*. The memory is mapped shared and accessed only by
//! copying into and out of private buffers ([`Media::read_at`], [`Media::write_at`]): the mapping may be
//! changed by other processes or hosts at any time, so no Rust reference into it is ever handed out.
//! Writes are followed by a publish, metadata reads are preceded by an acquire, and the copies
//! are volatile (see [`cache`] and Documentation/sharing.md).
//!
//! A devdax device bound to `device_dax` is mapped directly. One bound to `fsdev_dax` has no mmap
//! of its own: it is reached through `famfs.ko` (`/dev/famfs`), which is asked for one DAX file
//! covering the whole device; that file is mapped instead (see [`DaxDriver`]).

pub mod cache;
pub mod dax;
pub mod lock;
pub mod mounts;

pub use dax::{dax_device_size, dax_driver, dax_sysfs_dir, DaxDriver};

use famfs_format::{
    FormatError, LogEntry, LogHeader, Superblock, LOG_ENTRY_SIZE, LOG_HEADER_SIZE, LOG_OFFSET,
    SB_REGION_LEN, SB_SIZE,
};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Errors of device access.
#[derive(Debug, Error)]
pub enum MediaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a devdax device, image file or famfs mount point")]
    Unsupported(PathBuf),
    #[error("{path}: only {size} bytes, too small to hold a famfs superblock")]
    TooSmall { path: PathBuf, size: u64 },
    #[error("{path}: cannot find the size of devdax device (tried {tried})")]
    NoDaxSize { path: PathBuf, tried: String },
    #[error("range [{offset:#x}, +{len:#x}) is outside the mapped media ({what})")]
    OutOfRange {
        offset: u64,
        len: u64,
        what: &'static str,
    },
    #[error("cannot write {name} to {}: {source}", path.display())]
    Bind {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("media opened read-only; writes need read-write access")]
    ReadOnly,
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{0}: the device is in use (mounted?): famfs.ko refused to attach it (EBUSY)")]
    DeviceInUse(PathBuf),
    #[error(
        "{path} is mounted at {mount} (famfs.ko holds it for that mount): give paths under {mount} \
         instead of --device, or unmount it first"
    )]
    MountedInUse { path: PathBuf, mount: PathBuf },
    #[error(
        "{0}: the device is bound to fsdev_dax, which has no mmap of its own, and famfs.ko is not loaded \
         (no /dev/famfs): load famfs.ko or rebind with scripts/daxmode {0} device_dax"
    )]
    NeedsModule(PathBuf),
    #[error("{path}: the device is bound to {driver}, which famfs cannot use (want device_dax or fsdev_dax)")]
    UnknownDriver { path: PathBuf, driver: String },
    #[error("{path}: famfs.ko: {what}: {source}")]
    Module {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "{path} is mounted at {mount}: appending with --device next to the mount would race its appenders; \
         give paths under {mount} instead (without --device), or unmount it first"
    )]
    Mounted { path: PathBuf, mount: PathBuf },
    #[error("cannot take the append lock {path}: {source} (FAMFS_LOCK_DIR names another directory for it)")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl MediaError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        MediaError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What kind of media is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A devdax character device.
    DaxDevice,
    /// A regular file used as a device image.
    Image,
    /// The meta files of a mounted famfs: only the superblock and log are reachable.
    MetaFiles,
    /// Anonymous memory of this process ([`Media::memory`]): tests and fuzzing.
    Memory,
}

/// Read-only or read-write access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Module access to a device bound to `fsdev_dax`: the control device (its open owns the
/// module's daxdev table) and the DAX file covering the whole device, kept open for as long as
/// the media lives. Declared after the regions in [`Media`], so the mapping goes first.
struct ModuleAccess {
    _file: famfs_kmod::DaxFile,
    _control: famfs_kmod::Control,
}

/// One shared mapping of part of the device.
struct Region {
    map: MmapRaw,
    /// Device offset of the mapping's first byte.
    base: u64,
    /// Mapped writable (the superblock meta file never is).
    writable: bool,
}

impl Region {
    fn contains(&self, off: u64, len: u64) -> bool {
        off >= self.base
            && off
                .checked_add(len)
                .is_some_and(|end| end <= self.base + self.map.len() as u64)
    }
}

/// Open famfs media. See the crate documentation.
pub struct Media {
    kind: MediaKind,
    path: PathBuf,
    access: Access,
    regions: Vec<Region>,
    /// The open device, image or `.meta/.log` (kept for the mapping's life); `None` for process
    /// memory. Appends lock the file system's lock file instead ([`Media::lock_log`]).
    _file: Option<File>,
    /// Size of the device as far as this media shows it (for meta files: what the superblock says).
    size: u64,
    /// Set when the device is reached through famfs.ko (bound to `fsdev_dax`).
    module: Option<ModuleAccess>,
    /// When set, every store, cache flush and sync is recorded here ([`Media::record`]).
    trace: Option<Trace>,
}

/// One operation on the medium, as a recording ([`Media::record`]) captures it: what a crash may
/// leave depends on which stores a later flush or sync covered (tests enumerate the states).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOp {
    /// Bytes copied into the mapping at a device offset: visible to this host at once, durable
    /// (and visible to other hosts) only once a flush or sync of the medium covers them.
    Store { off: u64, data: Vec<u8> },
    /// CPU cache write-back (or write-back and drop) of a range, then a fence
    /// ([`cache::publish`], [`cache::acquire`]): what makes stores to DAX memory durable.
    CpuFlush { off: u64, len: u64 },
    /// `msync(MS_SYNC)` of a range of a file mapping: what makes stores to a page-cache mapping
    /// (an image file, a fallback mount's `.meta/.log`) reach the file, or the FUSE server.
    Sync { off: u64, len: u64 },
}

/// A recording of the operations on a medium (shared with the media that fills it).
pub type Trace = Arc<Mutex<Vec<MediaOp>>>;

/// Where stores to a mapping become durable (see Documentation/reliability.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// DAX memory (a devdax device, a famfs.ko file, process memory): a cache-line flush.
    CacheLines,
    /// A page-cache mapping (an image file; the meta files of a mount, which are FUSE page cache in
    /// fallback mode and DAX in module mode): an `msync` of the pages.
    PageCache,
}

/// Holds the exclusive log lock until dropped. It owns a duplicate of the lock file descriptor
/// (same open file description, so the same flock), which lets callers keep mutating their own
/// state while holding it.
pub struct LogLock {
    file: Option<File>,
}

impl Drop for LogLock {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = rustix::fs::flock(file, rustix::fs::FlockOperation::Unlock);
        }
    }
}

fn open_file(path: &Path, access: Access) -> Result<File, MediaError> {
    OpenOptions::new()
        .read(true)
        .write(access == Access::ReadWrite)
        .open(path)
        .map_err(|e| MediaError::io(path, e))
}

fn map(file: &File, path: &Path, len: u64, access: Access) -> Result<MmapRaw, MediaError> {
    let len = usize::try_from(len).map_err(|_| MediaError::TooSmall {
        path: path.into(),
        size: len,
    })?;
    let mut opts = MmapOptions::new();
    opts.len(len);
    let r = match access {
        Access::ReadWrite => opts.map_raw(file),
        Access::ReadOnly => opts.map_raw_read_only(file),
    };
    r.map_err(|e| MediaError::io(path, e))
}

impl Media {
    /// Opens a devdax device, an image file, or (for a directory) the meta files of the famfs
    /// mounted there.
    pub fn open(path: &Path, access: Access) -> Result<Media, MediaError> {
        let meta = std::fs::metadata(path).map_err(|e| MediaError::io(path, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            return Self::open_mount(path, access);
        }
        if ft.is_char_device() {
            match dax_driver(path) {
                Some(DaxDriver::FsdevDax) => return Self::open_through_module(path, access),
                Some(DaxDriver::DeviceDax) | None => {}
                Some(DaxDriver::Unbound) => {
                    return Err(MediaError::UnknownDriver {
                        path: path.into(),
                        driver: "no driver".into(),
                    })
                }
                Some(DaxDriver::Other(d)) => {
                    return Err(MediaError::UnknownDriver {
                        path: path.into(),
                        driver: d,
                    })
                }
            }
        }
        let file = open_file(path, access)?;
        let (kind, size) = if ft.is_char_device() {
            (MediaKind::DaxDevice, dax_device_size(path, &meta)?)
        } else if ft.is_file() {
            (MediaKind::Image, meta.len())
        } else {
            return Err(MediaError::Unsupported(path.into()));
        };
        if size < SB_SIZE as u64 {
            return Err(MediaError::TooSmall {
                path: path.into(),
                size,
            });
        }
        let map = map(&file, path, size, access)?;
        Ok(Media {
            kind,
            path: path.into(),
            access,
            regions: vec![Region {
                map,
                base: 0,
                writable: access == Access::ReadWrite,
            }],
            _file: Some(file),
            size,
            module: None,
            trace: None,
        })
    }

    /// A devdax device bound to `fsdev_dax`: attach it to famfs.ko at index 0, have the module make
    /// one DAX file covering the whole device, and map that file.
    fn open_through_module(path: &Path, access: Access) -> Result<Media, MediaError> {
        let control = match famfs_kmod::Control::open() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MediaError::NeedsModule(path.into()))
            }
            Err(source) => {
                return Err(MediaError::Module {
                    path: path.into(),
                    what: "open /dev/famfs",
                    source,
                })
            }
        };
        let dev = open_file(path, access)?;
        let size = match control.attach_daxdev(&dev, 0) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                // Mounted here: famfs.ko holds it for the server. Say where.
                return Err(match mounts::famfs_mount_of_file(path) {
                    Some(mount) => MediaError::MountedInUse {
                        path: path.into(),
                        mount,
                    },
                    None => MediaError::DeviceInUse(path.into()),
                });
            }
            Err(source) => {
                return Err(MediaError::Module {
                    path: path.into(),
                    what: "attach the device",
                    source,
                })
            }
        };
        // Whole 2 MiB units only (the module maps in those); a device is always a multiple.
        let len = size & !(SB_REGION_LEN - 1);
        if len < SB_SIZE as u64 {
            return Err(MediaError::TooSmall {
                path: path.into(),
                size,
            });
        }
        let mut msg = vec![0u8; famfs_fmap::MAX_MSG_LEN];
        let ext = famfs_fmap::SimpleExtent {
            devindex: 0,
            offset: 0,
            len,
        };
        let n = famfs_fmap::encode_simple(&mut msg, famfs_fmap::FileType::Regular, len, &[ext])
            .map_err(|e| MediaError::Module {
                path: path.into(),
                what: "encode the device map",
                source: std::io::Error::other(format!("{e:?}")),
            })?;
        msg.truncate(n);
        let mut flags = famfs_kmod::abi::CREATE_CLOEXEC;
        if access == Access::ReadOnly {
            flags |= famfs_kmod::abi::CREATE_READ_ONLY;
        }
        let dax = control
            .create_file(&msg, flags, 0o600, 0, 0)
            .map_err(|source| MediaError::Module {
                path: path.into(),
                what: "create the device file",
                source,
            })?;
        let map = map(&dax.file, path, len, access)?;
        Ok(Media {
            kind: MediaKind::DaxDevice,
            path: path.into(),
            access,
            regions: vec![Region {
                map,
                base: 0,
                writable: access == Access::ReadWrite,
            }],
            _file: Some(dev),
            size: len,
            module: Some(ModuleAccess {
                _file: dax,
                _control: control,
            }),
            trace: None,
        })
    }

    /// Whether the device is reached through famfs.ko (bound to `fsdev_dax`).
    pub fn via_module(&self) -> bool {
        self.module.is_some()
    }

    /// Opens the meta files of a famfs mounted at `mpt`.
    pub fn open_mount(mpt: &Path, access: Access) -> Result<Media, MediaError> {
        let sb_path = mpt.join(".meta/.superblock");
        let log_path = mpt.join(".meta/.log");
        // A famfs mount is what the kernel says is one; any directory can hold .meta/.log.
        if mounts::mount_at(mpt).is_none_or(|m| m.fstype != mounts::FAMFS_FSTYPE) {
            return Err(MediaError::Unsupported(mpt.into()));
        }
        match nix::sys::statfs::statfs(mpt) {
            // A server that found its file system replaced answers ESTALE: say that.
            Err(e) => return Err(MediaError::io(mpt, e.into())),
            Ok(s) if s.filesystem_type() != nix::sys::statfs::FUSE_SUPER_MAGIC => {
                return Err(MediaError::Unsupported(mpt.into()))
            }
            Ok(_) => {}
        }
        // The superblock file is read-only even on the master.
        let sb_file = open_file(&sb_path, Access::ReadOnly)?;
        let log_file = open_file(&log_path, access)?;
        Self::from_meta_files(mpt, sb_file, log_file, access)
    }

    /// Media made of two open meta files: the superblock file (its first 2 MiB mapped read-only)
    /// and the log file (mapped with `access`; its descriptor also serves the log lock). Nothing
    /// is opened by path: the FUSE server hands in the module's DAX files it made itself. `label`
    /// names the media in messages.
    pub fn from_meta_files(
        label: &Path,
        sb_file: File,
        log_file: File,
        access: Access,
    ) -> Result<Media, MediaError> {
        let sb_path = label.join(".meta/.superblock");
        let log_path = label.join(".meta/.log");
        let sb_len = sb_file
            .metadata()
            .map_err(|e| MediaError::io(&sb_path, e))?
            .len()
            .min(SB_REGION_LEN);
        if sb_len < SB_SIZE as u64 {
            return Err(MediaError::TooSmall {
                path: sb_path,
                size: sb_len,
            });
        }
        let sb_map = map(&sb_file, &sb_path, sb_len, Access::ReadOnly)?;
        let log_len = log_file
            .metadata()
            .map_err(|e| MediaError::io(&log_path, e))?
            .len();
        if log_len < LOG_HEADER_SIZE as u64 {
            return Err(MediaError::TooSmall {
                path: log_path,
                size: log_len,
            });
        }
        let log_map = map(&log_file, &log_path, log_len, access)?;
        let mut m = Media {
            kind: MediaKind::MetaFiles,
            path: label.into(),
            access,
            regions: vec![
                Region {
                    map: sb_map,
                    base: 0,
                    writable: false,
                },
                Region {
                    map: log_map,
                    base: LOG_OFFSET,
                    writable: access == Access::ReadWrite,
                },
            ],
            _file: Some(log_file),
            size: 0,
            module: None,
            trace: None,
        };
        // Only the superblock knows the device size here.
        m.size = m.read_superblock().map(|sb| sb.device_size).unwrap_or(0);
        Ok(m)
    }

    /// Zero-filled anonymous memory of `size` bytes standing in for a device (read-write, private
    /// to this process). Pages are only allocated when touched, so a 4 GiB "device" costs what is
    /// used of it. Meant for tests and fuzzing: log play and fsck run on it without any file.
    pub fn memory(size: u64) -> Result<Media, MediaError> {
        let path = PathBuf::from("<memory>");
        if size < SB_SIZE as u64 {
            return Err(MediaError::TooSmall { path, size });
        }
        let len = usize::try_from(size).map_err(|_| MediaError::TooSmall {
            path: path.clone(),
            size,
        })?;
        let map = MmapOptions::new()
            .len(len)
            .map_anon()
            .map_err(|e| MediaError::io(&path, e))?;
        Ok(Media {
            kind: MediaKind::Memory,
            path,
            access: Access::ReadWrite,
            regions: vec![Region {
                map: MmapRaw::from(map),
                base: 0,
                writable: true,
            }],
            _file: None,
            size,
            module: None,
            trace: None,
        })
    }

    /// The kind of media.
    pub fn kind(&self) -> MediaKind {
        self.kind
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The access mode.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Device size in bytes (file length for an image).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether file data (not just metadata) is reachable through this media.
    pub fn has_data(&self) -> bool {
        self.kind != MediaKind::MetaFiles
    }

    fn region(
        &self,
        off: u64,
        len: u64,
        what: &'static str,
    ) -> Result<(&Region, usize), MediaError> {
        self.regions
            .iter()
            .find(|r| r.contains(off, len))
            .map(|r| (r, (off - r.base) as usize))
            .ok_or(MediaError::OutOfRange {
                offset: off,
                len,
                what,
            })
    }

    /// Copies `buf.len()` bytes at device offset `off` into `buf` (no cache invalidation).
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<(), MediaError> {
        let (r, rel) = self.region(off, buf.len() as u64, "read")?;
        // SAFETY: the range was checked to lie inside the mapping, which lives as long as self and
        // cannot overlap a Rust buffer; others may write it meanwhile: the copy is volatile.
        unsafe { cache::copy_from_shared(r.map.as_ptr().add(rel), buf) };
        Ok(())
    }

    /// Acquire ([`cache::acquire`]) of a range: before reading memory another host may have
    /// written (it also writes back lines this host dirtied).
    pub fn acquire(&self, off: u64, len: u64) -> Result<(), MediaError> {
        let (r, rel) = self.region(off, len, "acquire")?;
        // SAFETY: checked range inside the mapping.
        unsafe { cache::acquire(r.map.as_ptr().add(rel), len as usize) };
        self.record_op(|| MediaOp::CpuFlush { off, len });
        Ok(())
    }

    /// Acquires then reads: the way to read shared metadata.
    pub fn read_fresh(&self, off: u64, buf: &mut [u8]) -> Result<(), MediaError> {
        self.acquire(off, buf.len() as u64)?;
        self.read_at(off, buf)
    }

    /// Writes `data` at device offset `off` and flushes the cache lines to memory.
    pub fn write_at(&self, off: u64, data: &[u8]) -> Result<(), MediaError> {
        if self.access != Access::ReadWrite {
            return Err(MediaError::ReadOnly);
        }
        let (r, rel) = self.region(off, data.len() as u64, "write")?;
        if !r.writable {
            return Err(MediaError::ReadOnly);
        }
        // SAFETY: checked range inside a writable shared mapping, which no Rust reference aliases
        // and `data` cannot overlap; the copy is volatile, then the range is published.
        unsafe {
            let dst = r.map.as_mut_ptr().add(rel);
            cache::copy_to_shared(data, dst);
            self.record_op(|| MediaOp::Store {
                off,
                data: data.to_vec(),
            });
            cache::publish(dst, data.len());
        }
        self.record_op(|| MediaOp::CpuFlush {
            off,
            len: data.len() as u64,
        });
        Ok(())
    }

    /// How stores to this media become durable.
    pub fn persistence(&self) -> Persistence {
        match self.kind {
            MediaKind::Image | MediaKind::MetaFiles => Persistence::PageCache,
            MediaKind::DaxDevice | MediaKind::Memory => Persistence::CacheLines,
        }
    }

    /// Makes the stores to a range durable where a cache flush does not: `msync(MS_SYNC)` of a
    /// page-cache mapping (an image file, the meta files of a mount: in fallback mode this sends
    /// the dirty pages to the FUSE server and waits until it has stored them in memory). Nothing
    /// to do for DAX memory, where [`Media::write_at`]'s flush already is the barrier.
    pub fn sync(&self, off: u64, len: u64) -> Result<(), MediaError> {
        if self.persistence() != Persistence::PageCache || len == 0 {
            return Ok(());
        }
        let (r, rel) = self.region(off, len, "sync")?;
        r.map
            .flush_range(rel, len as usize)
            .map_err(|e| MediaError::io(&self.path, e))?;
        self.record_op(|| MediaOp::Sync { off, len });
        Ok(())
    }

    /// [`Media::write_at`], then [`Media::sync`]: the bytes are durable and visible to other
    /// hosts when this returns. The log is written this way, entry before header.
    pub fn write_durable(&self, off: u64, data: &[u8]) -> Result<(), MediaError> {
        self.write_at(off, data)?;
        self.sync(off, data.len() as u64)
    }

    /// Starts recording every store, cache flush and sync of this media (tests: crash-state
    /// enumeration, see famfs-meta/tests/crashpoints.rs). Returns the recording.
    pub fn record(&mut self) -> Trace {
        let t = Trace::default();
        self.trace = Some(t.clone());
        t
    }

    fn record_op(&self, op: impl FnOnce() -> MediaOp) {
        if let Some(t) = &self.trace {
            if let Ok(mut v) = t.lock() {
                v.push(op());
            }
        }
    }

    /// Fills a range with zeroes (and flushes).
    pub fn zero(&self, off: u64, len: u64) -> Result<(), MediaError> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            self.write_at(off + done, &zeros[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// Takes the append lock of this file system on this host (blocking): the lock file named after
    /// the fs uuid ([`lock::lock_path`]), whatever path the media was opened by, so that appends
    /// through a mount, with `--device`, by `devadd` or by `mkfs` serialise on one lock. A device
    /// or image that is mounted as famfs on this host is refused ([`MediaError::Mounted`]): its
    /// appends go through the mount. Process memory takes no lock (nothing else reaches it).
    pub fn lock_log(&self) -> Result<LogLock, MediaError> {
        if self.kind == MediaKind::Memory {
            return Ok(LogLock { file: None });
        }
        let sb = self.read_superblock()?;
        self.lock_fs(&sb.fs_uuid)
    }

    /// [`Media::lock_log`] for the file system with uuid `fs_uuid` (mkfs over an existing file
    /// system takes the old one's lock).
    pub fn lock_fs(&self, fs_uuid: &[u8; 16]) -> Result<LogLock, MediaError> {
        if self.kind == MediaKind::Memory {
            return Ok(LogLock { file: None });
        }
        if matches!(self.kind, MediaKind::DaxDevice | MediaKind::Image) {
            if let Some(mount) = mounts::famfs_mount_of_file(&self.path) {
                return Err(MediaError::Mounted {
                    path: self.path.clone(),
                    mount,
                });
            }
        }
        let path = lock::lock_path(fs_uuid);
        let file =
            lock::lock_exclusive(&path).map_err(|source| MediaError::Lock { path, source })?;
        Ok(LogLock { file: Some(file) })
    }

    /// Reads and validates the superblock (fresh from memory).
    pub fn read_superblock(&self) -> Result<Superblock, MediaError> {
        let mut b = [0u8; SB_SIZE];
        self.read_fresh(0, &mut b)?;
        Ok(Superblock::decode(&b)?)
    }

    /// Reads and validates a primary or a secondary superblock (fresh from memory).
    pub fn read_any_superblock(&self) -> Result<famfs_format::AnySuperblock, MediaError> {
        let mut b = [0u8; SB_SIZE];
        self.read_fresh(0, &mut b)?;
        Ok(famfs_format::AnySuperblock::decode(&b)?)
    }

    /// Reads and validates the log header (fresh from memory).
    pub fn read_log_header(&self, sb: &Superblock) -> Result<LogHeader, MediaError> {
        let mut b = [0u8; LOG_HEADER_SIZE];
        self.read_fresh(LOG_OFFSET, &mut b)?;
        Ok(LogHeader::decode(&b, sb.log_len)?)
    }

    /// Device offset of log entry `index`, checked against the log geometry.
    pub fn entry_offset(sb: &Superblock, index: u64) -> Result<u64, MediaError> {
        sb.log_geometry()
            .entry_offset(index)
            .map(|o| LOG_OFFSET + o)
            .ok_or(MediaError::OutOfRange {
                offset: index,
                len: 1,
                what: "log entry index",
            })
    }

    /// Reads entry `index` raw bytes, fresh from memory. When the entry fails its integrity check
    /// (crc, seqnum), the lines are invalidated and it is read once more before failing: a client may
    /// hold stale lines of an entry the master wrote after our first look.
    pub fn read_log_entry(&self, sb: &Superblock, index: u64) -> Result<LogEntry, MediaError> {
        let off = Self::entry_offset(sb, index)?;
        let mut b = [0u8; LOG_ENTRY_SIZE];
        self.read_at(off, &mut b)?;
        let raw = match LogEntry::check_integrity(&b, index) {
            Ok(raw) => raw,
            Err(_) => {
                self.read_fresh(off, &mut b)?;
                LogEntry::check_integrity(&b, index)?
            }
        };
        Ok(LogEntry::decode_body(&raw)?)
    }

    /// Reads many consecutive entries' raw bytes in one go (after one invalidation). Used by log
    /// play; the per-entry retry is done by the caller through [`Media::read_log_entry`].
    pub fn read_log_range(
        &self,
        sb: &Superblock,
        first: u64,
        count: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), MediaError> {
        if count == 0 {
            buf.clear();
            return Ok(());
        }
        let off = Self::entry_offset(sb, first)?;
        Self::entry_offset(sb, first + count - 1)?;
        buf.resize(count as usize * LOG_ENTRY_SIZE, 0);
        self.read_fresh(off, buf)
    }

    /// Writes a log entry's bytes into slot `index`, durably ([`Media::write_durable`]): the
    /// header that counts it must not reach memory first.
    pub fn write_log_entry(
        &self,
        sb: &Superblock,
        index: u64,
        bytes: &[u8; LOG_ENTRY_SIZE],
    ) -> Result<(), MediaError> {
        self.write_durable(Self::entry_offset(sb, index)?, bytes)
    }

    /// Writes the log header, durably.
    pub fn write_log_header(&self, h: &LogHeader) -> Result<(), MediaError> {
        self.write_durable(LOG_OFFSET, &h.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use famfs_format::DEFAULT_LOG_LEN;

    #[test]
    fn image_read_write_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let f = File::create(&p).unwrap();
        f.set_len(16 << 20).unwrap();
        let m = Media::open(&p, Access::ReadWrite).unwrap();
        assert_eq!(m.kind(), MediaKind::Image);
        assert_eq!(m.size(), 16 << 20);
        m.write_at(4096, b"hello").unwrap();
        let mut b = [0u8; 5];
        m.read_fresh(4096, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert!(matches!(
            m.read_at((16 << 20) - 2, &mut b),
            Err(MediaError::OutOfRange { .. })
        ));
        assert!(matches!(
            m.read_at(u64::MAX - 1, &mut b),
            Err(MediaError::OutOfRange { .. })
        ));
        assert!(matches!(
            m.read_superblock(),
            Err(MediaError::Format(FormatError::BadMagic { .. }))
        ));
        let ro = Media::open(&p, Access::ReadOnly).unwrap();
        assert!(matches!(ro.write_at(0, b"x"), Err(MediaError::ReadOnly)));
        // The append lock is named after the file system: no superblock, no lock.
        assert!(matches!(
            m.lock_log(),
            Err(MediaError::Format(FormatError::BadMagic { .. }))
        ));
    }

    #[test]
    fn dax_driver_of_non_dax_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        File::create(&p).unwrap().set_len(16 << 20).unwrap();
        assert_eq!(dax_driver(&p), None);
        assert_eq!(dax_sysfs_dir(Path::new("/dev/null")), None);
        assert_eq!(dax_driver(&dir.path().join("missing")), None);
        assert!(!Media::open(&p, Access::ReadOnly).unwrap().via_module());
        assert_eq!(DaxDriver::FsdevDax.to_string(), "fsdev_dax");
    }

    #[test]
    fn memory_media() {
        let m = Media::memory(16 << 20).unwrap();
        assert_eq!(
            (m.kind(), m.size(), m.access()),
            (MediaKind::Memory, 16 << 20, Access::ReadWrite)
        );
        assert!(m.has_data());
        let mut b = [9u8; 4];
        m.read_fresh((16 << 20) - 4, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        m.write_at(LOG_OFFSET, b"log!").unwrap();
        m.read_at(LOG_OFFSET, &mut b).unwrap();
        assert_eq!(&b, b"log!");
        assert!(matches!(
            m.write_at(16 << 20, b"x"),
            Err(MediaError::OutOfRange { .. })
        ));
        drop(m.lock_log().unwrap());
        assert!(matches!(
            Media::memory(10),
            Err(MediaError::TooSmall { .. })
        ));
    }

    #[test]
    fn tiny_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        File::create(&p).unwrap().set_len(10).unwrap();
        assert!(matches!(
            Media::open(&p, Access::ReadOnly),
            Err(MediaError::TooSmall { .. })
        ));
        assert!(matches!(
            Media::open(&dir.path().join("nope"), Access::ReadOnly),
            Err(MediaError::Io { .. })
        ));
        assert!(matches!(
            Media::open(dir.path(), Access::ReadOnly),
            Err(MediaError::Unsupported(_))
        ));
    }

    #[test]
    fn meta_files_media() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".meta")).unwrap();
        let sb = Superblock::new(DEFAULT_LOG_LEN, 8 << 30, [1; 16], [2; 16], [3; 16], "x").unwrap();
        let mut sbb = vec![0u8; 2 << 20];
        sbb[..SB_SIZE].copy_from_slice(&sb.encode());
        std::fs::write(dir.path().join(".meta/.superblock"), &sbb).unwrap();
        let mut log = vec![0u8; DEFAULT_LOG_LEN as usize];
        log[..48].copy_from_slice(&LogHeader::new(sb.log_geometry()).encode());
        std::fs::write(dir.path().join(".meta/.log"), &log).unwrap();
        // A directory holding meta files is not a mount.
        assert!(matches!(
            Media::open(dir.path(), Access::ReadWrite),
            Err(MediaError::Unsupported(_))
        ));
        let f = |n: &str, a| open_file(&dir.path().join(".meta").join(n), a).unwrap();
        let m = Media::from_meta_files(
            dir.path(),
            f(".superblock", Access::ReadOnly),
            f(".log", Access::ReadWrite),
            Access::ReadWrite,
        )
        .unwrap();
        assert_eq!(m.kind(), MediaKind::MetaFiles);
        assert_eq!(m.size(), 8 << 30);
        assert!(!m.has_data());
        assert_eq!(m.read_superblock().unwrap(), sb);
        assert_eq!(m.read_log_header(&sb).unwrap().next_index(), 0);
        assert!(matches!(
            m.write_at(LOG_OFFSET + DEFAULT_LOG_LEN, b"x"),
            Err(MediaError::OutOfRange { .. })
        ));
        assert!(matches!(m.write_at(0, b"x"), Err(MediaError::ReadOnly)));
        m.write_at(LOG_OFFSET + 100, b"x").unwrap();
    }
}
