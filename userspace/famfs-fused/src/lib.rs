//! famfs-fused: the famfs FUSE server (Documentation/fuse-server.md).
//!
//! It plays the famfs log into a namespace (famfs-meta) and serves it through FUSE. File data
//! takes one of two paths:
//!
//! - **module mode** (`/dev/famfs` present): on the first open of an inode the server asks
//!   `famfs.ko` for a DAX file built from the file's fmap, registers it once as a FUSE backing
//!   file and answers every open with `FOPEN_PASSTHROUGH`; read, write and mmap never reach us;
//! - **fallback mode** (no module, an image file, or `--fallback`): the server reads and writes
//!   the memory-mapped device or image itself.
//!
//! Library use (what `famfs mount` does through the binary):
//!
//! ```no_run
//! use famfs_fused::{Server, ServerOptions};
//! let opts = ServerOptions::new("/dev/dax0.0".into(), "/mnt/famfs".into());
//! famfs_fused::check_mountable(&opts.device, &opts.mountpoint)?;
//! let server = Server::open(&opts)?;          // validates, plays the log, picks the mode
//! println!("{} {}", server.role(), server.mode());
//! let session = server.mount(&opts)?;         // mounted and INIT done when this returns
//! session.run()?;                             // serves until unmounted
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cli;
mod devcheck;
mod fixed_size;
mod fs;
pub mod heartbeat;
pub mod mounts;
pub mod stats;
pub mod wire;

pub use famfs_meta::Role;
pub use fs::{FamfsFs, META_DIR_INO, META_LOG_INO, META_SB_INO};
pub use stats::{parse_stats, Op, Stats};

use famfs_format::SB_SIZE;
use famfs_kmod::{abi, Control, DaxFile};
use famfs_media::{Access, Media, MediaError, MediaKind};
use famfs_meta::{Famfs, MetaError};
use std::fmt;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

/// The xattr of the mount's root whose read re-plays the log tail (`famfs logplay MPT`); its value
/// is a one-line summary of what the play did.
pub const XATTR_LOGPLAY: &str = "user.famfs.logplay";
/// The xattr of the mount's root holding the request counters ([`Stats::render`]).
pub const XATTR_STATS: &str = "user.famfs.stats";
/// The xattr of the mount's root naming the mode and role, e.g. `module master`.
pub const XATTR_MODE: &str = "user.famfs.mode";

/// Errors of the server library.
#[derive(Debug, Error)]
pub enum FusedError {
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Media(#[from] MediaError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{device} is already mounted as famfs on {mountpoint}")]
    AlreadyMounted {
        device: PathBuf,
        mountpoint: PathBuf,
    },
    #[error("{0}: something is already mounted there")]
    MountPointBusy(PathBuf),
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("famfs.ko: {what}: {source}")]
    Module {
        what: String,
        source: std::io::Error,
    },
    #[error("the fmap of {0} cannot be sent to the module: {1}")]
    Wire(String, wire::WireError),
    #[error("host slot: {0}")]
    Hosts(String),
    #[error("mount on {path} failed: {source} (is /dev/fuse present and fusermount3 installed? apt-get install fuse3)")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path, source: std::io::Error) -> FusedError {
    FusedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How file data is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// famfs.ko DAX files behind FUSE passthrough.
    Module,
    /// The server copies data to and from the mapped device or image.
    Fallback,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Module => "module",
            Mode::Fallback => "fallback",
        })
    }
}

/// Options of a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The devdax device or image file.
    pub device: PathBuf,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Never use the module, even when `/dev/famfs` exists.
    pub force_fallback: bool,
    /// How long the kernel may cache attributes.
    pub attr_ttl: Duration,
    /// How long the kernel may cache name lookups (positive ones: misses are never cached).
    pub entry_ttl: Duration,
    /// The module's control device.
    pub control_path: PathBuf,
    /// Extra `-o` options passed to the mount as they are.
    pub extra_options: Vec<String>,
    /// Request-serving threads.
    pub threads: usize,
    /// Only the mounting user and root may use the mount: `allow_root`, not `allow_other`.
    pub owner_only: bool,
    /// How often this host heartbeats in its slot.
    pub heartbeat_interval: Duration,
    /// This host's lease: it fences itself when it has not heartbeaten for this long.
    pub lease: Duration,
}

impl ServerOptions {
    /// Defaults: 1 s attribute and entry TTLs, module mode when available, two threads.
    pub fn new(device: PathBuf, mountpoint: PathBuf) -> Self {
        ServerOptions {
            device,
            mountpoint,
            force_fallback: false,
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            control_path: PathBuf::from(famfs_kmod::CONTROL_PATH),
            extra_options: Vec::new(),
            threads: 2,
            owner_only: false,
            heartbeat_interval: heartbeat::DEFAULT_INTERVAL,
            lease: heartbeat::DEFAULT_LEASE,
        }
    }
}

/// Refuses a device already mounted as famfs and a mount point that is not an unused directory.
pub fn check_mountable(device: &Path, mountpoint: &Path) -> Result<(), FusedError> {
    if let Some(m) = mounts::famfs_mount_of(device) {
        return Err(FusedError::AlreadyMounted {
            device: device.to_path_buf(),
            mountpoint: m,
        });
    }
    let md = std::fs::metadata(mountpoint).map_err(|e| io_err(mountpoint, e))?;
    if !md.is_dir() {
        return Err(FusedError::NotADirectory(mountpoint.to_path_buf()));
    }
    if mounts::is_mount_point(mountpoint) {
        return Err(FusedError::MountPointBusy(mountpoint.to_path_buf()));
    }
    Ok(())
}

/// The module-mode resources: the control device (its open owns the module's daxdev table)
/// and the DAX files of the meta files, made at start to read the metadata through.
///
/// Its locks are small and never held during a device search or a superblock read (fs.rs,
/// "Locking").
pub(crate) struct ModuleCtx {
    pub control: Control,
    pub _device: std::fs::File,
    /// The DAX files of `.meta/.superblock` and `.meta/.log`, until their first open registers
    /// them as backing files.
    pub sb_file: Mutex<Option<DaxFile>>,
    pub log_file: Mutex<Option<DaxFile>>,
    /// The devices attached to the module's table.
    attached: Mutex<Attached>,
    /// The control device's path, for the short-lived opens that read a candidate device.
    pub control_path: PathBuf,
    /// On the master: read-write duplicates of the superblock and log files, from which the
    /// server builds its appender for unlink(2)/rmdir(2) through the mount.
    pub meta_rw: Option<(std::fs::File, std::fs::File)>,
}

/// The devices attached to the module's table (held only to look up or insert).
#[derive(Default)]
struct Attached {
    /// Secondary devices attached to the module's table, by index (the descriptor and where
    /// it was found). Index 0, the primary, is `ModuleCtx::_device`.
    secondaries: std::collections::HashMap<u32, (std::fs::File, PathBuf)>,
    /// Read-only module files over the superblock region of every attached device, by index
    /// (0: the primary): the stale check reads them with pread(2), which fails with an errno
    /// where a read through a mapping of a revoked or removed device would get SIGBUS.
    sb_probes: std::collections::BTreeMap<u32, Arc<std::fs::File>>,
}

/// What the search for secondary device `index` needs of the played log, copied out of it so
/// that the search runs without the namespace lock.
pub(crate) struct WantedDevice {
    index: u32,
    fs_uuid: famfs_format::UuidBytes,
    uuid: famfs_format::UuidBytes,
    name: String,
    size: u64,
    /// The names the log gives the other secondary devices.
    others: Vec<String>,
}

impl WantedDevice {
    pub fn of(famfs: &Famfs, index: u32) -> Result<WantedDevice, String> {
        let dev = famfs
            .devices()
            .get(index as usize)
            .ok_or_else(|| format!("device {index} is not in the log's device table"))?;
        let others = famfs.devices().iter().skip(1).filter(|d| d.index != index);
        Ok(WantedDevice {
            index,
            fs_uuid: famfs.superblock().fs_uuid,
            uuid: dev.uuid,
            name: dev.name.clone(),
            size: dev.size,
            others: others.map(|d| d.name.clone()).collect(),
        })
    }
}

impl ModuleCtx {
    fn attached(&self) -> std::sync::MutexGuard<'_, Attached> {
        self.attached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether device `index` is in the module's table (the primary always is).
    pub fn has_device(&self, index: u32) -> bool {
        index == 0 || self.attached().secondaries.contains_key(&index)
    }

    /// The superblock probe of every attached device, by index, with where the device was
    /// found (empty for the primary).
    pub fn sb_probes(&self) -> Vec<(u32, Arc<std::fs::File>, String)> {
        let a = self.attached();
        a.sb_probes
            .iter()
            .map(|(&i, f)| {
                let at = a
                    .secondaries
                    .get(&i)
                    .map(|(_, p)| p.display().to_string())
                    .unwrap_or_default();
                (i, f.clone(), at)
            })
            .collect()
    }

    /// The superblock probe of device `index`.
    pub fn sb_probe_of(&self, index: u32) -> Option<Arc<std::fs::File>> {
        self.attached().sb_probes.get(&index).cloned()
    }

    /// Attaches secondary device `want.index` to the module's table at slot `index`, once: the
    /// device is found by uuid (the candidates of [`famfs_media::dax::candidates`], in the order
    /// the log play uses) and used only after its superblock was read (through a short-lived
    /// module open of its own) and shows this file system's uuid and that device's uuid.
    ///
    /// The search (opens and superblock reads of candidates, which may be slow) holds no lock;
    /// the attach is made under the table's lock, and when another request attached the device
    /// meanwhile, what this one found is dropped.
    pub fn ensure_device(&self, want: &WantedDevice) -> Result<(), String> {
        let index = want.index;
        if self.has_device(index) {
            return Ok(());
        }
        let (f, c) = self.find_device(want)?;
        let mut a = self.attached();
        if a.secondaries.contains_key(&index) {
            log::debug!(
                "device {index}: attached by another request meanwhile; {} not used",
                c.display()
            );
            return Ok(());
        }
        if a.secondaries.values().any(|(_, p)| *p == c) {
            return Err(format!(
                "device {index}: {} was attached at another index meanwhile",
                c.display()
            ));
        }
        let size = self
            .control
            .attach_daxdev(&f, index)
            .map_err(|e| format!("famfs.ko: attach {} at index {index}: {e}", c.display()))?;
        log::info!(
            "attached {} ({size} bytes) at index {index} (device uuid {})",
            c.display(),
            famfs_format::format_uuid(&want.uuid)
        );
        match self.sb_probe(index) {
            Ok(p) => {
                a.sb_probes.insert(index, Arc::new(p));
            }
            Err(e) => log::warn!("device {index}: no superblock file for the stale check: {e}"),
        }
        a.secondaries.insert(index, (f, c));
        Ok(())
    }

    /// The search of [`ModuleCtx::ensure_device`]: the first candidate that holds the wanted
    /// device (opened, not attached yet), with its path.
    fn find_device(&self, want: &WantedDevice) -> Result<(std::fs::File, PathBuf), String> {
        let index = want.index;
        let cands = famfs_media::dax::candidates(
            &want.fs_uuid,
            &want.uuid,
            &want.name,
            want.others.iter().map(String::as_str),
        );
        let taken: Vec<PathBuf> = self
            .attached()
            .secondaries
            .values()
            .map(|(_, p)| p.clone())
            .collect();
        let mut checked = 0;
        let mut last = String::new();
        for c in cands {
            if taken.contains(&c) {
                continue;
            }
            // Opened as nothing but a dax device, checked on the descriptor that is then used
            // (devcheck): a FIFO or another file named in the log cannot block the server.
            let f = match devcheck::open_dax_candidate(&c) {
                Ok(f) => f,
                Err(why) => {
                    log::debug!("device {index}: candidate {why}");
                    continue;
                }
            };
            checked += 1;
            let (sb, size) = match devcheck::read_candidate(&self.control_path, &f) {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{}: {e}", c.display());
                    continue;
                }
            };
            let at = c.display().to_string();
            if let Some(why) =
                devcheck::secondary_change(index, &at, Ok(sb), &want.fs_uuid, &want.uuid)
            {
                last = why;
                continue;
            }
            if size < want.size {
                last = format!("{at}: it is {size} bytes, the log says {}", want.size);
                continue;
            }
            return Ok((f, c));
        }
        Err(format!(
            "device {index} (uuid {}, added as {:?}) was not found on this host ({checked} candidates read{}{last})",
            famfs_format::format_uuid(&want.uuid),
            want.name,
            if last.is_empty() { "" } else { "; last: " }
        ))
    }
}

impl ModuleCtx {
    /// A read-only module file over the superblock region of attached device `index`.
    fn sb_probe(&self, index: u32) -> Result<std::fs::File, String> {
        let msg = wire::superblock_wire_on(index).map_err(|e| e.to_string())?;
        let f = self.control.create_file(
            &msg,
            abi::CREATE_READ_ONLY | abi::CREATE_CLOEXEC,
            0o400,
            0,
            0,
        );
        f.map(|d| d.file)
            .map_err(|e| format!("famfs.ko: create the superblock file of device {index}: {e}"))
    }
}

/// An opened famfs, ready to mount.
pub struct Server {
    fs: FamfsFs,
}

impl Server {
    /// Opens the device, validates the superblock, determines the role, plays the log and picks
    /// the mode (module when `/dev/famfs` can be opened, the device is a character device and
    /// `force_fallback` is off).
    pub fn open(opts: &ServerOptions) -> Result<Server, FusedError> {
        raise_nofile_limit();
        let md = std::fs::metadata(&opts.device).map_err(|e| io_err(&opts.device, e))?;
        let want_module = !opts.force_fallback && md.file_type().is_char_device();
        let module = if want_module {
            match Control::open_path(&opts.control_path) {
                Ok(c) => Some(c),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    log::info!(
                        "{} not found (famfs.ko not loaded)",
                        opts.control_path.display()
                    );
                    None
                }
                Err(e) => {
                    return Err(FusedError::Module {
                        what: format!("open {}", opts.control_path.display()),
                        source: e,
                    })
                }
            }
        } else {
            None
        };
        let stats = Arc::new(Stats::default());
        let fs = match module {
            Some(control) => {
                let (famfs, ctx) = open_through_module(control, &opts.control_path, &opts.device)?;
                FamfsFs::new(famfs, Some(ctx), opts, stats)
            }
            None => {
                // The server writes file data in fallback mode, so it wants the media writable;
                // a read-only device still serves reads (writes then fail with EROFS).
                let media = match Media::open(&opts.device, Access::ReadWrite) {
                    Ok(m) => m,
                    Err(MediaError::Io { source, .. })
                        if matches!(
                            source.raw_os_error(),
                            Some(libc::EACCES) | Some(libc::EROFS) | Some(libc::EPERM)
                        ) =>
                    {
                        log::warn!(
                            "{}: no write access; file writes will fail with EROFS",
                            opts.device.display()
                        );
                        Media::open(&opts.device, Access::ReadOnly)?
                    }
                    Err(e) => return Err(e.into()),
                };
                if media.kind() == MediaKind::MetaFiles {
                    return Err(FusedError::NotADirectory(opts.device.clone()));
                }
                let famfs = Famfs::from_media(media)?;
                FamfsFs::new(famfs, None, opts, stats)
            }
        };
        for p in fs.problems() {
            log::warn!("log {p}");
        }
        if fs.mode() == Mode::Fallback {
            log::warn!(
                "*** famfs-fused runs in FALLBACK mode: file data is copied by this server (slow, no DAX mmap) ***"
            );
        }
        Ok(Server { fs })
    }

    /// This host's role.
    pub fn role(&self) -> Role {
        self.fs.role()
    }

    /// The data path in use.
    pub fn mode(&self) -> Mode {
        self.fs.mode()
    }

    /// The request counters (shared with the running file system).
    pub fn stats(&self) -> Arc<Stats> {
        self.fs.stats()
    }

    /// Mounts (fsname = device, type `fuse.famfs`, `default_permissions`, `allow_other`, or
    /// `allow_root` when `owner_only`, `auto_unmount`) and completes the FUSE INIT handshake; serve with `Session::run`.
    pub fn mount(mut self, opts: &ServerOptions) -> Result<fuser::Session<FamfsFs>, FusedError> {
        use fuser::MountOption as O;
        // The slot is claimed here, in the process that serves (the binary forks after open).
        self.fs.start_host()?;
        let mut mo = vec![
            O::FSName(opts.device.display().to_string()),
            O::Subtype("famfs".into()),
            O::DefaultPermissions,
            // fusermount3 stays behind and unmounts when our /dev/fuse descriptor closes, so a
            // killed server never leaves a dead mount.
            O::AutoUnmount,
            O::NoDev,
            O::NoSuid,
        ];
        mo.extend(opts.extra_options.iter().map(|o| O::CUSTOM(o.clone())));
        let mut cfg = fuser::Config::default();
        cfg.mount_options = mo;
        // The kernel checks every request against the files' modes (`default_permissions`), so
        // other users may be let in; `owner_only` shuts them out entirely (EACCES on any access).
        // `allow_root` rather than nothing: auto_unmount needs one of the two, and the mounting
        // user is root anyway (mounting a device takes root).
        cfg.acl = if opts.owner_only {
            fuser::SessionACL::RootAndOwner
        } else {
            fuser::SessionACL::All
        };
        cfg.n_threads = Some(opts.threads.max(1));
        let before = socket_fds();
        let session = fuser::Session::new(self.fs, &opts.mountpoint, &cfg).map_err(|e| {
            FusedError::Mount {
                path: opts.mountpoint.clone(),
                source: e,
            }
        })?;
        pin_helper_sockets(&before);
        Ok(session)
    }
}

/// Module mode: attach the device, make DAX files for the superblock and the log, and play the
/// log through them. The raw device cannot be mapped when it is bound to `fsdev_dax` (the only
/// binding the module accepts), so all metadata is read through the module's files, which
/// famfs-media maps as the meta files of a mount (from our own descriptors, never by path).
fn open_through_module(
    control: Control,
    control_path: &Path,
    device: &Path,
) -> Result<(Famfs, ModuleCtx), FusedError> {
    let modf = |what: &str| {
        let what = what.to_string();
        move |source| FusedError::Module { what, source }
    };
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| io_err(device, e))?;
    let size = control.attach_daxdev(&dev, 0).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EBUSY) => " (the device is in use: mounted, or held by another famfs.ko user?)",
            Some(libc::EOPNOTSUPP) => " (bound to device_dax: rebind it to fsdev_dax, e.g. famfs mount --set-daxmode, or use --fallback)",
            _ => "",
        };
        FusedError::Module { what: format!("attach {} at index 0{why}", device.display()), source: e }
    })?;
    log::info!("attached {} ({} bytes) at index 0", device.display(), size);
    let ro = abi::CREATE_READ_ONLY | abi::CREATE_CLOEXEC;
    let sb_msg =
        wire::superblock_wire().map_err(|e| FusedError::Wire(".meta/.superblock".into(), e))?;
    let sb_file = control
        .create_file(&sb_msg, ro, 0o444, 0, 0)
        .map_err(modf("create the superblock file"))?;
    let mut sbb = [0u8; SB_SIZE];
    (&sb_file.file)
        .read_exact(&mut sbb)
        .map_err(|e| io_err(Path::new(".meta/.superblock"), e))?;
    let sb = famfs_format::Superblock::decode(&sbb).map_err(MediaError::from)?;
    let role = match famfs_meta::local_system_uuid(&famfs_meta::system_uuid_path()) {
        Ok(u) if u == sb.system_uuid => Role::Master,
        _ => Role::Client,
    };
    let log_msg =
        wire::log_wire(sb.log_len).map_err(|e| FusedError::Wire(".meta/.log".into(), e))?;
    let (flags, mode) = match role {
        Role::Master => (abi::CREATE_CLOEXEC, 0o644),
        Role::Client => (ro, 0o444),
    };
    let log_file = control
        .create_file(&log_msg, flags, mode, 0, 0)
        .map_err(modf("create the log file"))?;
    // The server itself only reads the log; appends come from the CLI through the mount. The
    // media is built from duplicates of the two files just made: nothing goes through a path.
    let dup = |f: &DaxFile, what: &str| f.file.try_clone().map_err(|e| io_err(Path::new(what), e));
    let opened = Media::from_meta_files(
        device,
        dup(&sb_file, ".meta/.superblock")?,
        dup(&log_file, ".meta/.log")?,
        Access::ReadOnly,
    )?;
    let famfs = Famfs::from_media(opened)?;
    debug_assert_eq!(famfs.superblock().log_len, sb.log_len);
    let mut attached = Attached::default();
    attached
        .sb_probes
        .insert(0, Arc::new(dup(&sb_file, ".meta/.superblock")?));
    let meta_rw = match role {
        Role::Master => Some((
            dup(&sb_file, ".meta/.superblock")?,
            dup(&log_file, ".meta/.log")?,
        )),
        Role::Client => None,
    };
    let ctx = ModuleCtx {
        control,
        _device: dev,
        sb_file: Mutex::new(Some(sb_file)),
        log_file: Mutex::new(Some(log_file)),
        attached: Mutex::new(attached),
        control_path: control_path.to_path_buf(),
        meta_rw,
    };
    // Every secondary the log names now, so that the mount log says early what is missing; a
    // device missing here is looked for again when a file needs it.
    for i in 1..famfs.devices().len() as u32 {
        if let Err(why) = WantedDevice::of(&famfs, i).and_then(|w| ctx.ensure_device(&w)) {
            log::warn!("{why}: files with memory on it will fail to open (ENXIO)");
        }
    }
    Ok((famfs, ctx))
}

/// Raises the soft limit of open descriptors to the hard limit. The server keeps no descriptor per
/// file (backing ids hold the module's files), but a burst of opens still passes through one
/// descriptor each while the DAX file is made and registered, and several threads may do so at
/// once.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => log::info!("RLIMIT_NOFILE raised from {soft} to {hard}"),
            Err(e) => log::warn!("cannot raise RLIMIT_NOFILE from {soft} to {hard}: {e}"),
        },
        Ok(_) => {}
        Err(e) => log::warn!("getrlimit(RLIMIT_NOFILE): {e}"),
    }
}

/// The descriptors of this process that are sockets.
fn socket_fds() -> std::collections::HashSet<i32> {
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else {
        return Default::default();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let fd: i32 = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        target.to_str()?.starts_with("socket:").then_some(fd)
    })
    .collect()
}

/// Makes the auto-unmount of a killed server reliable.
///
/// fusermount3 (auto_unmount) waits for its socket to us to close, then unmounts only if the file
/// system is dead (ENOTCONN). At process exit the kernel closes descriptors in ascending order,
/// and the socket (made before the mount) has a lower number than /dev/fuse: fusermount3 could
/// look before our /dev/fuse descriptor is closed, see a live file system and leave it mounted
/// (a dead mount once we are gone). A duplicate of the socket at a high descriptor number closes
/// after /dev/fuse, so by the time fusermount3 sees the end of the socket the connection is
/// aborted. The helper sockets are the sockets that appeared during the mount.
fn pin_helper_sockets(before: &std::collections::HashSet<i32>) {
    use nix::sys::resource::{getrlimit, Resource};
    let high = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => soft.saturating_sub(16).clamp(16, 4000) as i32,
        Err(_) => 512,
    };
    for fd in socket_fds().difference(before) {
        // SAFETY: `fd` was listed in /proc/self/fd just now and nothing in this process closes
        // the helper socket (fuser keeps it for the session), so it is open for this borrow.
        let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        // The duplicate is deliberately kept (never closed) until exit.
        if let Err(e) = nix::fcntl::fcntl(sock, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(high)) {
            log::warn!("cannot duplicate the fusermount3 socket: {e}");
        }
    }
}
