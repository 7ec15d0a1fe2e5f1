//! [`Famfs`]: an open file system (media + superblock + played namespace + allocation bitmap).

use crate::compact::CompactReport;
use crate::namespace::{ApplyConflict, FileInfo, Ino, Namespace, NodeKind, RemoveConflict};
use crate::role::{local_system_uuid, system_uuid_path, Role};
use crate::{MetaError, Result};
use famfs_alloc::{AllocError, Bitmap, InterleaveParams};
use famfs_format::*;
use famfs_media::{Access, Media, MediaKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest device size believed from a superblock (1 PiB: a 64 MiB allocation bitmap).
pub const MAX_DEVICE_SIZE: u64 = 1 << 50;

/// How a new file's memory is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One first-fit extent.
    Contiguous,
    /// Striped across buckets.
    Interleaved(InterleaveParams),
}

/// What was wrong with one log entry that did not stop the play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The entry passed its crc but its content is invalid (bad path, bad extent, unknown type).
    BadEntry(FormatError),
    /// Its extents overlap space already used (damage).
    Collision(AllocError),
    /// A MKDIR over a file, or a path under a file (damage).
    Conflict(ApplyConflict),
    /// A FILE entry for a path that already exists: left as it is (a warning).
    Duplicate,
    /// An extent ends in the partial last 2 MiB unit of a device whose size is not a multiple of
    /// 2 MiB, as the C allocator makes them (a warning: famfs-rs never allocates there).
    PartialUnit(AllocError),
    /// An ADD_DAXDEV entry that cannot be the next device (index out of order, a uuid already in
    /// the table, an implausible size), or an extent on a device the log has not added (damage).
    BadDevice(String),
    /// A DELETE that does not name a node of the namespace as it created it, or a RECLAIM
    /// naming a delete that is not pending (damage; nothing is removed or freed).
    BadDelete(String),
}

/// A problem found while playing entry `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub index: u64,
    pub path: Option<String>,
    pub kind: ProblemKind,
    /// The device a collision or partial unit is on (0 otherwise).
    pub device: u64,
}

impl Problem {
    /// Whether this is damage (as opposed to a harmless duplicate).
    pub fn is_damage(&self) -> bool {
        !matches!(
            self.kind,
            ProblemKind::Duplicate | ProblemKind::PartialUnit(_)
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}", self.index)?;
        if let Some(p) = &self.path {
            write!(f, " (/{p})")?;
        }
        if self.device != 0 {
            write!(f, " on device {}", self.device)?;
        }
        match &self.kind {
            ProblemKind::BadEntry(e) => write!(f, ": invalid entry: {e}"),
            ProblemKind::Collision(e) => write!(f, ": {e}"),
            ProblemKind::Conflict(ApplyConflict::Exists { .. }) => {
                write!(f, ": directory over an existing file")
            }
            ProblemKind::Conflict(ApplyConflict::ParentNotDir) => write!(f, ": a parent is a file"),
            ProblemKind::Duplicate => write!(f, ": path already exists; entry ignored"),
            ProblemKind::PartialUnit(e) => write!(f, ": {e}"),
            ProblemKind::BadDevice(why) => write!(f, ": {why}"),
            ProblemKind::BadDelete(why) => write!(f, ": {why}"),
        }
    }
}

/// What one [`Famfs::refresh`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayStats {
    /// Entries played by this call.
    pub played: u64,
    /// Files and directories created by this call.
    pub files: u64,
    pub dirs: u64,
    /// Entries with a problem (see [`Famfs::problems`]).
    pub problems: u64,
}

/// One device of the file system, from the device table the log builds: index 0 is the primary
/// (the superblock's device), every later index comes from an ADD_DAXDEV entry, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub index: u32,
    /// The device uuid its superblock carries.
    pub uuid: UuidBytes,
    /// Size in bytes (the superblock's for the primary, the entry's for a secondary).
    pub size: u64,
    /// The path the master added it by (a hint: names differ between hosts).
    pub name: String,
}

/// A file removed from the namespace whose memory is not reclaimed yet: its extents stay
/// allocated until a RECLAIM entry naming `index` is played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelete {
    /// Log index of the DELETE entry (how hosts and the gate name this delete).
    pub index: u64,
    /// Log index of the FILE entry that created the file.
    pub target: u64,
    /// The path it had.
    pub path: String,
    pub size: u64,
    /// Its memory, still allocated.
    pub fmap: Fmap,
    /// Whether the delete asked for revocation on every host (`famfs rm --revoke`).
    pub revoke: bool,
}

/// Decides which pending deletes may be reclaimed now: `Ok(true)` when no host can still reach
/// the file's memory (every live host has played the delete and let the file go), `Ok(false)`
/// to keep it pending, `Err(why)` when that cannot be known (it stays pending and the reason is
/// reported). The hosts module implements it from the host slots; [`OfflineGate`] is for a file
/// system no host has mounted.
pub trait ReclaimGate {
    fn may_reclaim(&self, delete_index: u64) -> std::result::Result<bool, String>;
}

/// A gate that allows every reclaim. Correct only while no host (this one included) has the
/// file system mounted or a deleted file open: offline tools and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineGate;

impl ReclaimGate for OfflineGate {
    fn may_reclaim(&self, _delete_index: u64) -> std::result::Result<bool, String> {
        Ok(true)
    }
}

/// What [`Famfs::reclaim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Deletes reclaimed (their memory is free now), by DELETE index.
    pub reclaimed: Vec<u64>,
    /// Bytes given back to the allocator.
    pub freed_bytes: u64,
    /// Deletes the gate kept pending.
    pub held: Vec<u64>,
    /// Deletes the gate could not decide, with its reason (kept pending).
    pub undecided: Vec<(u64, String)>,
    /// RECLAIM entries appended.
    pub entries: u64,
}

/// Where a secondary device of this host was found, or why it was not.
enum Attached {
    /// Not looked for yet (the media has no data access, e.g. meta files).
    No,
    /// Open, superblock checked.
    Yes { media: Media, path: PathBuf },
    /// Looked for and not found (or found wrong): why.
    Missing(String),
}

/// An open famfs: the media, its validated superblock, this host's role, and the namespace and
/// allocation bitmaps (one per device) as of the last played entry.
pub struct Famfs {
    media: Media,
    sb: Superblock,
    role: Role,
    local_uuid: Option<UuidBytes>,
    uuid_error: Option<String>,
    ns: Namespace,
    /// The device table (index 0 = primary), one bitmap per device, and for each secondary
    /// (index >= 1) whether this host has it open (`attached[0]` is unused: the primary is `media`).
    devices: Vec<Device>,
    bitmaps: Vec<Bitmap>,
    attached: Vec<Attached>,
    /// Extra paths to try first when looking for secondary devices.
    candidates: Vec<PathBuf>,
    next_index: u64,
    problems: Vec<Problem>,
    daxdevs: Vec<DaxdevEntry>,
    scratch: Vec<u8>,
    /// Deleted files whose memory is not reclaimed yet, by DELETE index.
    pending: BTreeMap<u64, PendingDelete>,
    /// Whether a played FILE entry collided with used space (then a reclaim marks again what
    /// other files still hold of the freed units).
    collided: bool,
}

impl Famfs {
    /// Opens a device, image or mount point (see [`Media::open`]) and plays the whole log.
    /// The role comes from the system uuid file ([`system_uuid_path`]).
    pub fn open(path: &Path, access: Access) -> Result<Famfs> {
        Self::from_media(Media::open(path, access)?)
    }

    /// Like [`Famfs::open`] on already opened media.
    pub fn from_media(media: Media) -> Result<Famfs> {
        let sb = media.read_superblock()?;
        // The device size from the superblock is what the log was allocated against; for an image
        // or devdax device the real size bounds it too (a truncated image must not be trusted).
        let dev_size = match media.kind() {
            MediaKind::MetaFiles => sb.device_size,
            _ => sb.device_size.min(media.size()),
        };
        // The device size field is not covered by the crc; through meta files nothing else bounds
        // it, and the bitmap costs one bit per 2 MiB of it.
        if dev_size > MAX_DEVICE_SIZE {
            return Err(MetaError::ImplausibleDeviceSize {
                size: dev_size,
                max: MAX_DEVICE_SIZE,
            });
        }
        let log_end = sb.data_offset();
        if media.kind() != MediaKind::MetaFiles && media.size() < log_end {
            return Err(FormatError::DeviceTooSmall {
                device_size: media.size(),
                log_end,
            }
            .into());
        }
        let sup = system_uuid_path();
        // A host that cannot create its uuid file (no permission) can still read as a client.
        let (local_uuid, uuid_error) = match local_system_uuid(&sup) {
            Ok(u) => (Some(u), None),
            Err(e) => (
                None,
                Some(format!("system uuid file {}: {e}", sup.display())),
            ),
        };
        let role = if local_uuid == Some(sb.system_uuid) {
            Role::Master
        } else {
            Role::Client
        };
        let primary = Device {
            index: 0,
            uuid: sb.dev_uuid,
            size: dev_size,
            name: sb.device_name_str(),
        };
        let mut fs = Famfs {
            bitmaps: vec![Bitmap::new(dev_size, log_end)],
            devices: vec![primary],
            attached: vec![Attached::No],
            candidates: Vec::new(),
            media,
            sb,
            role,
            local_uuid,
            uuid_error,
            ns: Namespace::default(),
            next_index: 0,
            problems: Vec::new(),
            daxdevs: Vec::new(),
            scratch: Vec::new(),
            pending: BTreeMap::new(),
            collided: false,
        };
        crate::compact::recover(&mut fs)?;
        fs.refresh()?;
        Ok(fs)
    }

    /// Like [`Famfs::open`], trying `candidates` first (before the log's name hints and the
    /// host's `/dev/dax*` devices) when looking for secondary devices.
    pub fn open_with(path: &Path, access: Access, candidates: &[PathBuf]) -> Result<Famfs> {
        let media = Media::open(path, access)?;
        let mut fs = Self::from_media_with(media, candidates)?;
        fs.attach_missing();
        Ok(fs)
    }

    /// Like [`Famfs::from_media`], with candidate paths for secondary devices.
    pub fn from_media_with(media: Media, candidates: &[PathBuf]) -> Result<Famfs> {
        let mut fs = Self::from_media(media)?;
        if !candidates.is_empty() {
            fs.candidates = candidates.to_vec();
            for a in fs.attached.iter_mut().skip(1) {
                if matches!(a, Attached::Missing(_)) {
                    *a = Attached::No;
                }
            }
            fs.attach_missing();
        }
        Ok(fs)
    }

    /// The device table: index 0 is the primary, then every device ADD_DAXDEV entries added.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The allocation bitmap of each device (same indexes as [`Famfs::devices`]).
    pub fn bitmaps(&self) -> &[Bitmap] {
        &self.bitmaps
    }

    /// Where this host found device `index` (`None` for the primary, for a device not looked for
    /// and for one missing).
    pub fn device_path(&self, index: u32) -> Option<&Path> {
        match self.attached.get(index as usize)? {
            Attached::Yes { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Why device `index` is not usable on this host (`None` when it is, or was not looked for).
    pub fn device_missing(&self, index: u32) -> Option<&str> {
        match self.attached.get(index as usize)? {
            Attached::Missing(why) => Some(why),
            _ => None,
        }
    }

    /// Checks that `media` holds secondary device `index` of this file system (a secondary
    /// superblock with our fs uuid and that device's uuid, and at least its size).
    pub fn check_secondary(&self, index: u32, media: &Media) -> Result<SecondarySuperblock> {
        let dev = self
            .devices
            .get(index as usize)
            .filter(|_| index > 0)
            .ok_or(MetaError::NoSuchDevice(index.into()))?;
        let wrong = |why: String| MetaError::WrongDevice {
            index,
            path: media.path().to_path_buf(),
            why,
        };
        let sb = match media.read_any_superblock() {
            Ok(AnySuperblock::Secondary(s)) => s,
            Ok(AnySuperblock::Primary(p)) => {
                return Err(wrong(format!(
                    "it holds a primary superblock (fs uuid {})",
                    format_uuid(&p.fs_uuid)
                )))
            }
            Err(e) => return Err(wrong(format!("no valid famfs superblock: {e}"))),
        };
        if sb.fs_uuid != self.sb.fs_uuid {
            return Err(wrong(format!(
                "it belongs to another file system (fs uuid {}, want {})",
                format_uuid(&sb.fs_uuid),
                format_uuid(&self.sb.fs_uuid)
            )));
        }
        if sb.dev_uuid != dev.uuid {
            return Err(wrong(format!(
                "it is another device of this file system (device uuid {}, want {})",
                format_uuid(&sb.dev_uuid),
                format_uuid(&dev.uuid)
            )));
        }
        if media.size() < dev.size {
            return Err(wrong(format!(
                "it is {} bytes, the log says {}",
                media.size(),
                dev.size
            )));
        }
        Ok(sb)
    }

    /// Uses `media` as secondary device `index` after [`Famfs::check_secondary`].
    pub fn attach_device(&mut self, index: u32, media: Media) -> Result<()> {
        self.check_secondary(index, &media)?;
        let path = media.path().to_path_buf();
        if let Some(slot) = self.attached.get_mut(index as usize) {
            *slot = Attached::Yes { media, path };
        }
        Ok(())
    }

    /// Looks for every secondary device not looked for yet (only when the media reaches file
    /// data: through meta files nothing but the log is used). Candidates, in order: the paths
    /// given to [`Famfs::open_with`], then [`famfs_media::dax::candidates`] (the host's cache, the
    /// name the log recorded for it, the other secondaries' names, every `/dev/dax*`); each is
    /// used only once its superblock shows this file system's uuid and the device's uuid.
    pub fn attach_missing(&mut self) {
        if !self.media.has_data() || self.media.kind() == MediaKind::Memory {
            return;
        }
        for i in 1..self.devices.len() {
            if !matches!(self.attached[i], Attached::No) {
                continue;
            }
            let dev = self.devices[i].clone();
            let mut cands: Vec<PathBuf> = self.candidates.clone();
            let others = self.devices.iter().skip(1).filter(|d| d.index != dev.index);
            cands.extend(famfs_media::dax::candidates(
                &self.sb.fs_uuid,
                &dev.uuid,
                &dev.name,
                others.map(|d| d.name.as_str()),
            ));
            let mut tried = Vec::new();
            let mut found = None;
            let mine: Vec<PathBuf> = std::iter::once(self.media.path().to_path_buf())
                .chain(self.attached.iter().filter_map(|a| match a {
                    Attached::Yes { path, .. } => Some(path.clone()),
                    _ => None,
                }))
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .collect();
            for c in cands {
                let Ok(canon) = std::fs::canonicalize(&c) else {
                    continue;
                };
                if mine.contains(&canon) || tried.contains(&canon) {
                    continue;
                }
                tried.push(canon);
                // Not opened unless a device or an image (a FIFO would block the open).
                if !famfs_media::dax::is_device_or_image(&c) {
                    continue;
                }
                let Ok(m) = Media::open(&c, self.media.access()) else {
                    continue;
                };
                if self.check_secondary(i as u32, &m).is_ok() {
                    found = Some((m, c));
                    break;
                }
            }
            self.attached[i] = match found {
                Some((media, path)) => Attached::Yes { media, path },
                None => Attached::Missing(format!(
                    "device {i} (uuid {}, added as {}) was not found on this host ({} candidates checked)",
                    format_uuid(&dev.uuid),
                    if dev.name.is_empty() { "?" } else { &dev.name },
                    tried.len()
                )),
            };
        }
    }

    /// The media holding device `index` on this host.
    pub fn device_media(&self, index: u64) -> Result<&Media> {
        if index == 0 {
            return Ok(&self.media);
        }
        let i = usize::try_from(index)
            .ok()
            .filter(|&i| i < self.devices.len())
            .ok_or(MetaError::NoSuchDevice(index))?;
        match &self.attached[i] {
            Attached::Yes { media, .. } => Ok(media),
            Attached::Missing(why) => Err(MetaError::DeviceMissing(why.clone())),
            Attached::No => Err(MetaError::DeviceMissing(format!(
                "device {i} (uuid {}) is not open here",
                format_uuid(&self.devices[i].uuid)
            ))),
        }
    }

    /// Gives the media back (e.g. to open it again and replay the log from the start).
    pub fn into_media(self) -> Media {
        self.media
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// This host's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Why this host's system uuid could not be read (it then counts as a client), if it could not.
    pub fn system_uuid_error(&self) -> Option<&str> {
        self.uuid_error.as_deref()
    }

    /// The media.
    pub fn media(&self) -> &Media {
        &self.media
    }

    /// The namespace as of the last play.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The allocation bitmap of the primary device as of the last play.
    pub fn bitmap(&self) -> &Bitmap {
        &self.bitmaps[0]
    }

    /// Number of log entries played so far (the next index to play).
    pub fn played(&self) -> u64 {
        self.next_index
    }

    /// Problems found in played entries, in log order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Deleted files whose memory is not reclaimed yet, in DELETE order.
    pub fn pending_deletes(&self) -> impl Iterator<Item = &PendingDelete> {
        self.pending.values()
    }

    /// Every ADD_DAXDEV entry played, valid or not (the device table is [`Famfs::devices`]).
    pub fn daxdevs(&self) -> &[DaxdevEntry] {
        &self.daxdevs
    }

    /// Reads the log header fresh from memory.
    pub fn log_header(&self) -> Result<LogHeader> {
        Ok(self.media.read_log_header(&self.sb)?)
    }

    /// Plays the entries appended since the last play (idempotent: nothing happens when the log
    /// did not grow). An entry failing its integrity check twice stops the play with
    /// [`MetaError::LogDamaged`]; everything before it stays played.
    pub fn refresh(&mut self) -> Result<PlayStats> {
        let sb_now = self.media.read_superblock()?;
        if sb_now.fs_uuid != self.sb.fs_uuid || sb_now.log_len != self.sb.log_len {
            return Err(MetaError::SuperblockChanged);
        }
        // The master marks the superblock (version 49) before its first DELETE entry.
        self.sb.version = sb_now.version;
        let h = self.log_header()?;
        let end = h.next_index();
        if end < self.next_index {
            return Err(MetaError::LogWentBackwards {
                played: self.next_index,
                now: end,
            });
        }
        let mut stats = PlayStats::default();
        let ndev = self.devices.len();
        let first = self.next_index;
        let mut buf = std::mem::take(&mut self.scratch);
        let r = self
            .media
            .read_log_range(&self.sb, first, end - first, &mut buf);
        let result = r.map_err(MetaError::from).and_then(|()| {
            for (i, chunk) in buf.chunks_exact(LOG_ENTRY_SIZE).enumerate() {
                let index = first + i as u64;
                let entry = match LogEntry::check_integrity(chunk, index) {
                    Ok(raw) => LogEntry::decode_body(&raw),
                    // Maybe a stale cache line: invalidate and read that entry once more.
                    Err(_) => match self.media.read_log_entry(&self.sb, index) {
                        Ok(e) => Ok(e),
                        Err(famfs_media::MediaError::Format(e)) if e.is_integrity() => {
                            return Err(MetaError::LogDamaged { index, source: e })
                        }
                        Err(famfs_media::MediaError::Format(e)) => Err(e),
                        Err(e) => return Err(e.into()),
                    },
                };
                self.apply(index, entry, &mut stats);
                self.next_index = index + 1;
                stats.played += 1;
            }
            Ok(stats)
        });
        self.scratch = buf;
        if self.devices.len() > ndev {
            self.attach_missing();
        }
        result
    }

    fn problem(
        &mut self,
        index: u64,
        path: Option<&RelPath>,
        kind: ProblemKind,
        stats: &mut PlayStats,
    ) {
        stats.problems += 1;
        self.problems.push(Problem {
            index,
            path: path.map(|p| p.to_string()),
            kind,
            device: 0,
        });
    }

    fn apply(
        &mut self,
        index: u64,
        entry: std::result::Result<LogEntry, FormatError>,
        stats: &mut PlayStats,
    ) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return self.problem(index, None, ProblemKind::BadEntry(e), stats),
        };
        match entry.body {
            LogEntryBody::File(f) => {
                // Every valid FILE entry owns its extents, even a duplicate path (fsck must see
                // the space as used to report collisions correctly).
                for e in f.fmap.extents() {
                    let Some(bm) = usize::try_from(e.devindex)
                        .ok()
                        .and_then(|i| self.bitmaps.get_mut(i))
                    else {
                        let why = format!(
                            "extent on device {}, which the log has not added",
                            e.devindex
                        );
                        self.problem(index, Some(&f.path), ProblemKind::BadDevice(why), stats);
                        continue;
                    };
                    let r = bm.mark(e);
                    let failed = r.is_err();
                    match r {
                        Ok(()) => {}
                        Err(err @ AllocError::InPartialUnit { .. }) => {
                            self.problem(index, Some(&f.path), ProblemKind::PartialUnit(err), stats)
                        }
                        Err(err) => {
                            self.collided = true;
                            self.problem(index, Some(&f.path), ProblemKind::Collision(err), stats)
                        }
                    }
                    if failed {
                        if let Some(p) = self.problems.last_mut() {
                            p.device = e.devindex;
                        }
                    }
                }
                let info = FileInfo {
                    size: f.size,
                    flags: f.flags,
                    fmap: f.fmap,
                };
                match self
                    .ns
                    .apply_file(&f.path, f.mode, f.uid, f.gid, info, Some(index))
                {
                    Ok(_) => stats.files += 1,
                    Err(ApplyConflict::Exists { .. }) => {
                        self.problem(index, Some(&f.path), ProblemKind::Duplicate, stats)
                    }
                    Err(c) => self.problem(index, Some(&f.path), ProblemKind::Conflict(c), stats),
                }
            }
            LogEntryBody::Mkdir(d) => {
                let before = self.ns.dir_count();
                match self
                    .ns
                    .apply_mkdir(&d.path, d.mode, d.uid, d.gid, Some(index))
                {
                    Ok(_) => stats.dirs += self.ns.dir_count() - before,
                    Err(c) => self.problem(index, Some(&d.path), ProblemKind::Conflict(c), stats),
                }
            }
            LogEntryBody::Delete(d) => self.apply_delete(index, d, stats),
            LogEntryBody::Reclaim(r) => self.apply_reclaim(index, r, stats),
            LogEntryBody::AddDaxdev(x) => {
                self.daxdevs.push(x.clone());
                let why = if x.index as usize != self.devices.len() {
                    Some(format!(
                        "ADD_DAXDEV index {} out of order (the next device is {})",
                        x.index,
                        self.devices.len()
                    ))
                } else if let Some(d) = self.devices.iter().find(|d| d.uuid == x.uuid) {
                    Some(format!(
                        "ADD_DAXDEV uuid {} is already device {}",
                        format_uuid(&x.uuid),
                        d.index
                    ))
                } else if x.size < SB_REGION_LEN || x.size > MAX_DEVICE_SIZE {
                    Some(format!("ADD_DAXDEV size {} is implausible", x.size))
                } else if x.index as usize >= MAX_DEVICES {
                    Some(format!(
                        "ADD_DAXDEV index {} beyond the {MAX_DEVICES} devices supported",
                        x.index
                    ))
                } else {
                    None
                };
                if let Some(why) = why {
                    return self.problem(index, None, ProblemKind::BadDevice(why), stats);
                }
                self.devices.push(Device {
                    index: x.index,
                    uuid: x.uuid,
                    size: x.size,
                    name: x.name,
                });
                // The secondary superblock's 2 MiB unit is never allocated.
                self.bitmaps.push(Bitmap::new(x.size, SB_REGION_LEN));
                self.attached.push(Attached::No);
            }
        }
    }

    fn apply_delete(&mut self, index: u64, d: DeleteEntry, stats: &mut PlayStats) {
        let bad = |why: String| ProblemKind::BadDelete(why);
        if !self.sb.deletes_enabled() {
            // Read it again: a reader may have read the superblock just before the master
            // marked it and the log just after.
            if let Ok(sb) = self.media.read_superblock() {
                self.sb.version = sb.version;
            }
            if !self.sb.deletes_enabled() {
                let why = "DELETE entry on a superblock of version 48 (the C tools would not see it: the master marks the superblock first)";
                self.problem(index, Some(&d.path), bad(why.into()), stats);
            }
        }
        let Some(ino) = self.ns.resolve(d.path.as_str()) else {
            let why = "DELETE of a path that does not exist".to_string();
            return self.problem(index, Some(&d.path), bad(why), stats);
        };
        let Some(node) = self.ns.get(ino) else {
            return;
        };
        let want = (d.target != DELETE_TARGET_IMPLIED).then_some(d.target);
        if node.log_index != want || node.is_dir() != d.is_dir() {
            let why = format!(
                "DELETE names entry {} ({}), but the path was made by {} ({})",
                d.target,
                if d.is_dir() { "a directory" } else { "a file" },
                node.log_index
                    .map_or_else(|| "no entry".to_string(), |i| format!("entry {i}")),
                if node.is_dir() {
                    "a directory"
                } else {
                    "a file"
                },
            );
            return self.problem(index, Some(&d.path), bad(why), stats);
        }
        let file = node.file().cloned();
        match self.ns.remove(ino) {
            Ok(()) => {}
            Err(RemoveConflict::NotEmpty) => {
                let why = "DELETE of a directory that is not empty".to_string();
                return self.problem(index, Some(&d.path), bad(why), stats);
            }
            Err(c) => {
                return self.problem(index, Some(&d.path), bad(format!("{c:?}")), stats);
            }
        }
        if let Some(f) = file {
            self.pending.insert(
                index,
                PendingDelete {
                    index,
                    target: d.target,
                    path: d.path.to_string(),
                    size: f.size,
                    fmap: f.fmap,
                    revoke: d.revoke(),
                },
            );
        }
    }

    fn apply_reclaim(&mut self, index: u64, r: ReclaimEntry, stats: &mut PlayStats) {
        let mut freed = Vec::new();
        for d in &r.deletes {
            match self.pending.remove(d) {
                Some(p) => freed.push(p),
                None => {
                    let why = format!("RECLAIM of entry {d}, which is not a pending delete");
                    self.problem(index, None, ProblemKind::BadDelete(why), stats);
                }
            }
        }
        for p in &freed {
            for e in p.fmap.extents() {
                if let Some(bm) = usize::try_from(e.devindex)
                    .ok()
                    .and_then(|i| self.bitmaps.get_mut(i))
                {
                    bm.release(e);
                }
            }
        }
        if self.collided && !freed.is_empty() {
            // Damage made two files share units: whatever the others still hold stays taken.
            let mut held: Vec<Extent> = self
                .ns
                .nodes()
                .filter_map(|n| n.file())
                .flat_map(|f| f.fmap.extents().iter().copied())
                .collect();
            held.extend(
                self.pending
                    .values()
                    .flat_map(|p| p.fmap.extents().iter().copied()),
            );
            for e in held {
                let overlaps = freed
                    .iter()
                    .flat_map(|p| p.fmap.extents())
                    .any(|f| f.devindex == e.devindex && f.offset < e.end() && e.offset < f.end());
                if let Some(bm) = usize::try_from(e.devindex)
                    .ok()
                    .and_then(|i| self.bitmaps.get_mut(i))
                    .filter(|_| overlaps)
                {
                    let _ = bm.mark(&e);
                }
            }
        }
    }

    // ---- writing (master only) ----

    fn check_writable(&self) -> Result<()> {
        if self.media.access() != Access::ReadWrite {
            return Err(MetaError::ReadOnly);
        }
        if self.role != Role::Master {
            return Err(MetaError::NotMaster {
                master: format_uuid(&self.sb.system_uuid),
                ours: self
                    .local_uuid
                    .map(|u| format_uuid(&u))
                    .unwrap_or_else(|| "unknown".into()),
            });
        }
        Ok(())
    }

    /// Runs `f` with the log lock held, after catching up with entries other processes appended.
    /// Use it to create many files under one lock.
    pub fn with_log_lock<T>(
        &mut self,
        f: impl FnOnce(&mut Appender<'_>) -> Result<T>,
    ) -> Result<T> {
        self.check_writable()?;
        // The lock of the file system we opened (not of whatever the superblock says now: a
        // `mkfs -f` holds that one while it rewrites the device, and the play below then finds
        // the superblock changed).
        let _lock = self.media.lock_fs(&self.sb.fs_uuid)?;
        self.refresh()?;
        f(&mut Appender {
            fs: self,
            cursors: Vec::new(),
        })
    }

    /// Creates a directory (parent must exist).
    pub fn mkdir(&mut self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Ino> {
        self.with_log_lock(|a| a.mkdir(path, mode, uid, gid))
    }

    /// Removes a file (see [`Appender::unlink`]); returns the DELETE entry's index.
    pub fn unlink(&mut self, path: &RelPath, revoke: bool) -> Result<u64> {
        self.with_log_lock(|a| a.unlink(path, revoke))
    }

    /// Removes an empty directory (see [`Appender::rmdir`]).
    pub fn rmdir(&mut self, path: &RelPath) -> Result<u64> {
        self.with_log_lock(|a| a.rmdir(path))
    }

    /// Removes a file or a directory with everything under it (see [`Appender::remove_all`]).
    pub fn remove_all(&mut self, path: &RelPath, revoke: bool) -> Result<Vec<u64>> {
        self.with_log_lock(|a| a.remove_all(path, revoke))
    }

    /// Rewrites the log with only the live entries (see [`Appender::compact`]). Offline only:
    /// the caller makes sure no host has the file system mounted.
    pub fn compact(&mut self) -> Result<CompactReport> {
        self.with_log_lock(|a| a.compact())
    }

    /// Forgets everything played, to play the log again from its start.
    fn reset_play(&mut self) {
        let primary = self.devices[0].clone();
        self.bitmaps = vec![Bitmap::new(primary.size, self.sb.data_offset())];
        self.devices = vec![primary];
        self.attached.truncate(1);
        self.ns = Namespace::default();
        self.next_index = 0;
        self.problems.clear();
        self.daxdevs.clear();
        self.pending.clear();
        self.collided = false;
    }

    /// Appends RECLAIM entries for the pending deletes `gate` allows (see
    /// [`Appender::reclaim`]).
    pub fn reclaim(&mut self, gate: &dyn ReclaimGate) -> Result<ReclaimReport> {
        self.with_log_lock(|a| a.reclaim(gate))
    }

    /// Creates a directory and its missing parents; existing directories are fine.
    pub fn mkdir_p(&mut self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Ino> {
        self.with_log_lock(|a| a.mkdir_p(path, mode, uid, gid))
    }

    /// Creates a file of `size` bytes (parent must exist), allocating its memory.
    pub fn create_file(
        &mut self,
        path: &RelPath,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        layout: Layout,
    ) -> Result<Ino> {
        self.with_log_lock(|a| a.create_file(path, size, mode, uid, gid, layout))
    }

    // ---- file data (device and image media) ----

    fn file_info(&self, ino: Ino) -> Result<(&FileInfo, String)> {
        let node = self
            .ns
            .get(ino)
            .ok_or_else(|| MetaError::NotFound(format!("<inode {ino}>")))?;
        let path = self.ns.path_of(ino).unwrap_or_default();
        match &node.kind {
            NodeKind::File(f) => Ok((f, path)),
            NodeKind::Dir { .. } => Err(MetaError::IsADirectory(path)),
        }
    }

    fn data_op(
        &self,
        ino: Ino,
        offset: u64,
        len: usize,
        mut op: impl FnMut(&Media, u64, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        if !self.media.has_data() {
            return Err(MetaError::NoData(self.media.kind()));
        }
        let (info, path) = self.file_info(ino)?;
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > info.size) {
            return Err(MetaError::BeyondEof {
                path,
                offset,
                len: len as u64,
                size: info.size,
            });
        }
        let mut done = 0usize;
        while done < len {
            let seg =
                info.fmap
                    .resolve(offset + done as u64)
                    .ok_or_else(|| MetaError::BeyondEof {
                        path: path.clone(),
                        offset,
                        len: len as u64,
                        size: info.size,
                    })?;
            let n = (seg.len.min((len - done) as u64)) as usize;
            let media = self.device_media(seg.devindex).map_err(|e| match e {
                MetaError::DeviceMissing(why) => MetaError::FileDeviceMissing {
                    path: path.clone(),
                    why,
                },
                e => e,
            })?;
            op(media, seg.offset, done..done + n)?;
            done += n;
        }
        Ok(())
    }

    /// Writes file data directly into device memory (flushed from the CPU caches).
    pub fn write_data(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        self.data_op(ino, offset, data.len(), |m, dev_off, r| {
            Ok(m.write_at(dev_off, &data[r])?)
        })
    }

    /// Reads file data from device memory (cache lines invalidated first: another host may have
    /// written it).
    pub fn read_data(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        self.data_op(ino, offset, len, |m, dev_off, r| {
            Ok(m.read_fresh(dev_off, &mut buf[r])?)
        })
    }

    /// Flushes the CPU cache lines of a file's whole memory.
    pub fn flush_data(&self, ino: Ino) -> Result<()> {
        let (info, _) = self.file_info(ino)?;
        if !self.media.has_data() {
            return Err(MetaError::NoData(self.media.kind()));
        }
        for e in info.fmap.extents() {
            // Invalidation writes dirty lines back as well.
            self.device_media(e.devindex)?.acquire(e.offset, e.len)?;
        }
        Ok(())
    }
}

/// Appends entries while the log lock is held (see [`Famfs::with_log_lock`]).
pub struct Appender<'a> {
    fs: &'a mut Famfs,
    /// Where the next contiguous allocation of this session starts searching on each device (as
    /// the C allocator's cursor: kept for the whole locked session, from 0 at its start).
    cursors: Vec<u64>,
}

impl Appender<'_> {
    /// The namespace including entries appended so far under this lock.
    pub fn namespace(&self) -> &Namespace {
        &self.fs.ns
    }

    fn append(&mut self, body: LogEntryBody) -> Result<u64> {
        let fs = &mut *self.fs;
        // The header as it is now, under the lock: never an index remembered from earlier.
        let h = fs.log_header()?;
        if h.is_full() {
            return Err(MetaError::LogFull {
                capacity: h.geometry().capacity(),
            });
        }
        let index = h.next_index();
        // Under the lock nobody else of this host appends, and everything up to the header was
        // played when the lock was taken: a header ahead of that was moved by a writer that does
        // not hold our lock (two masters). Appending would build on entries never checked.
        if index != fs.next_index {
            return Err(MetaError::TwoWriters {
                index: fs.next_index,
                what: format!("the log header went from {} to {index} entries while this host held the append lock", fs.next_index),
            });
        }
        let next = h.advanced()?;
        let entry = LogEntry {
            seqnum: index,
            body,
        };
        let bytes = entry.encode();
        // Entry first, durable (flushed, and for a page-cache mapping synced), then the header
        // that counts it: no crash and no reader on another host can see a header counting an
        // entry that is not in memory (Documentation/reliability.md).
        fs.media.write_log_entry(&fs.sb, index, &bytes)?;
        fs.media.write_log_header(&next)?;
        // Read both back from memory: another master appending at the same moment overwrote one
        // or the other. Say so rather than report an entry that is not in the log.
        let now = fs.log_header()?;
        if now.next_index() != index + 1 {
            return Err(MetaError::TwoWriters {
                index,
                what: format!(
                    "the header says {} entries right after this append made it {}",
                    now.next_index(),
                    index + 1
                ),
            });
        }
        let mut back = [0u8; LOG_ENTRY_SIZE];
        fs.media
            .read_fresh(Media::entry_offset(&fs.sb, index)?, &mut back)?;
        if back != bytes {
            return Err(MetaError::TwoWriters {
                index,
                what: "the entry just written was overwritten".into(),
            });
        }
        let mut stats = PlayStats::default();
        fs.apply(index, Ok(entry), &mut stats);
        fs.next_index = index + 1;
        Ok(index)
    }

    fn parent_of(&self, path: &RelPath) -> Result<()> {
        let ns = &self.fs.ns;
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        match ns.resolve(parent.as_str()).and_then(|i| ns.get(i)) {
            None => Err(MetaError::NotFound(parent.to_string())),
            Some(n) if !n.is_dir() => Err(MetaError::NotADirectory(parent.to_string())),
            Some(_) => Ok(()),
        }
    }

    /// Marks the superblock (version 49) before the first DELETE: from then on the C tools,
    /// which would ignore a DELETE and keep using memory given to other files, refuse the file
    /// system. Durable before the DELETE entry is written.
    fn mark_deletes(&mut self) -> Result<()> {
        if self.fs.sb.deletes_enabled() {
            return Ok(());
        }
        if !self.fs.media.has_data() {
            return Err(MetaError::DeletesNotEnabled);
        }
        let mut sb = self.fs.sb.clone();
        sb.version = SB_VERSION_DELETE;
        self.fs.media.write_durable(0, &sb.encode())?;
        self.fs.sb = sb;
        Ok(())
    }

    /// Logs the removal of the node at `path` (which must exist). The caller checked its kind.
    fn delete(&mut self, path: &RelPath, revoke: bool) -> Result<u64> {
        let ns = &self.fs.ns;
        let ino = ns
            .resolve(path.as_str())
            .ok_or_else(|| MetaError::NotFound(path.to_string()))?;
        let node = ns
            .get(ino)
            .ok_or_else(|| MetaError::NotFound(path.to_string()))?;
        if ns.children(ino).is_some_and(|mut c| c.next().is_some()) {
            return Err(MetaError::NotEmpty(path.to_string()));
        }
        let mut flags = 0;
        if revoke {
            flags |= DELETE_FLAG_REVOKE;
        }
        if node.is_dir() {
            flags |= DELETE_FLAG_DIR;
        }
        let entry = DeleteEntry {
            target: node.log_index.unwrap_or(DELETE_TARGET_IMPLIED),
            flags,
            path: path.clone(),
        };
        let h = self.fs.log_header()?;
        if h.is_full() {
            return Err(MetaError::LogFull {
                capacity: h.geometry().capacity(),
            });
        }
        self.mark_deletes()?;
        self.append(LogEntryBody::Delete(entry))
    }

    /// Removes a file: its path disappears on every host that plays the log; its memory stays
    /// allocated ([`Famfs::pending_deletes`]) until [`Appender::reclaim`] frees it. `revoke`
    /// is recorded in the entry (hosts revoke the file instead of letting holders keep it).
    /// Returns the DELETE entry's index.
    pub fn unlink(&mut self, path: &RelPath, revoke: bool) -> Result<u64> {
        match self.node_kind(path)? {
            true => Err(MetaError::IsADirectory(path.to_string())),
            false => self.delete(path, revoke),
        }
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, path: &RelPath) -> Result<u64> {
        match self.node_kind(path)? {
            true => self.delete(path, false),
            false => Err(MetaError::NotADirectory(path.to_string())),
        }
    }

    /// Removes a file, or a directory and everything under it (children first, one DELETE
    /// entry per node). Returns the DELETE indexes in log order.
    pub fn remove_all(&mut self, path: &RelPath, revoke: bool) -> Result<Vec<u64>> {
        self.node_kind(path)?;
        // Post-order: every node after its children.
        let mut order = Vec::new();
        let mut stack = vec![(path.clone(), false)];
        while let Some((p, expanded)) = stack.pop() {
            let ns = &self.fs.ns;
            let ino = ns
                .resolve(p.as_str())
                .ok_or_else(|| MetaError::NotFound(p.to_string()))?;
            match ns.children(ino) {
                Some(children) if !expanded => {
                    let names: Vec<String> = children.map(|(n, _)| n.to_string()).collect();
                    stack.push((p.clone(), true));
                    for n in names.into_iter().rev() {
                        stack.push((p.join(&n)?, false));
                    }
                }
                _ => order.push(p),
            }
        }
        let mut done = Vec::with_capacity(order.len());
        for p in order {
            done.push(self.delete(&p, revoke)?);
        }
        Ok(done)
    }

    /// Whether `path` is a directory (error when it does not exist or is the root).
    fn node_kind(&self, path: &RelPath) -> Result<bool> {
        let ns = &self.fs.ns;
        let ino = ns
            .resolve(path.as_str())
            .ok_or_else(|| MetaError::NotFound(path.to_string()))?;
        if ino == crate::ROOT_INO {
            return Err(MetaError::RemoveRoot);
        }
        Ok(ns.get(ino).is_some_and(|n| n.is_dir()))
    }

    /// Deleted files whose memory is not reclaimed yet (as of this lock).
    pub fn pending_deletes(&self) -> impl Iterator<Item = &PendingDelete> {
        self.fs.pending.values()
    }

    /// Asks `gate` about every pending delete and appends RECLAIM entries (up to 64 deletes
    /// each) for those it allows; their memory is free for new files from then on.
    pub fn reclaim(&mut self, gate: &dyn ReclaimGate) -> Result<ReclaimReport> {
        let mut report = ReclaimReport::default();
        let mut allowed = Vec::new();
        for (&d, p) in &self.fs.pending {
            match gate.may_reclaim(d) {
                Ok(true) => {
                    allowed.push(d);
                    report.freed_bytes += p.fmap.extents().iter().map(|e| e.len).sum::<u64>();
                }
                Ok(false) => report.held.push(d),
                Err(why) => report.undecided.push((d, why)),
            }
        }
        for chunk in allowed.chunks(RECLAIM_MAX) {
            self.append(LogEntryBody::Reclaim(ReclaimEntry {
                deletes: chunk.to_vec(),
            }))?;
            report.entries += 1;
            report.reclaimed.extend_from_slice(chunk);
        }
        Ok(report)
    }

    /// Rewrites the log with only what is live: the ADD_DAXDEV entries of the device table, a
    /// MKDIR for every directory and a FILE for every file of the namespace (inode order, so
    /// parents first), renumbered from 0. Pending deletes are dropped with their memory
    /// (offline, nobody holds them). Crash-safe: the new log is written to free space first,
    /// then a record naming it in the superblock region, then it is copied over the log, then
    /// the record is cleared; an opener that finds the record finishes the copy (master,
    /// read-write) or refuses ([`MetaError::CompactionInterrupted`]), so no reader ever plays a
    /// half-copied log. Refused when the log has damage.
    pub fn compact(&mut self) -> Result<CompactReport> {
        let fs = &mut *self.fs;
        if let Some(p) = fs.problems.iter().find(|p| p.is_damage()) {
            return Err(MetaError::CannotCompact(format!(
                "the log has damage ({p}); see `famfs fsck`"
            )));
        }
        let mut bodies = Vec::new();
        for d in fs.devices.iter().skip(1) {
            bodies.push(LogEntryBody::AddDaxdev(DaxdevEntry {
                size: d.size,
                uuid: d.uuid,
                index: d.index,
                name: d.name.clone(),
            }));
        }
        for n in fs.ns.nodes().skip(1) {
            let path = RelPath::new(&fs.ns.path_of(n.ino).unwrap_or_default())?;
            bodies.push(match &n.kind {
                NodeKind::Dir { .. } => LogEntryBody::Mkdir(MkdirEntry {
                    uid: n.uid,
                    gid: n.gid,
                    mode: n.mode,
                    path,
                }),
                NodeKind::File(f) => LogEntryBody::File(FileEntry {
                    size: f.size,
                    flags: f.flags,
                    uid: n.uid,
                    gid: n.gid,
                    mode: n.mode,
                    path,
                    fmap: f.fmap.clone(),
                }),
            });
        }
        let header = LogHeader::with_entries(fs.sb.log_geometry(), bodies.len() as u64)?;
        let mut image = Vec::with_capacity(LOG_HEADER_SIZE + bodies.len() * LOG_ENTRY_SIZE);
        image.extend_from_slice(&header.encode());
        for (i, body) in bodies.into_iter().enumerate() {
            let e = LogEntry {
                seqnum: i as u64,
                body,
            };
            image.extend_from_slice(&e.encode());
        }
        let report = CompactReport {
            entries_before: fs.next_index,
            entries_after: header.next_index(),
            dropped_pending: fs.pending.len() as u64,
            freed_bytes: fs
                .pending
                .values()
                .flat_map(|p| p.fmap.extents())
                .map(|e| e.len)
                .sum(),
            scratch: fs.bitmaps[0].find_contiguous(image.len() as u64, 0)?.offset,
        };
        crate::compact::switch(&fs.media, &fs.sb, report.scratch, &image, fs.next_index)?;
        fs.reset_play();
        fs.refresh()?;
        fs.attach_missing();
        if fs.next_index != report.entries_after {
            return Err(MetaError::CannotCompact(format!(
                "the compacted log plays {} entries, {} were written",
                fs.next_index, report.entries_after
            )));
        }
        Ok(report)
    }

    /// Creates a directory (parent must exist; an existing path is an error).
    pub fn mkdir(&mut self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Ino> {
        self.parent_of(path)?;
        if self.fs.ns.resolve(path.as_str()).is_some() {
            return Err(MetaError::Exists(path.to_string()));
        }
        let body = LogEntryBody::Mkdir(MkdirEntry {
            uid,
            gid,
            mode: mode & 0o7777,
            path: path.clone(),
        });
        self.append(body)?;
        self.fs
            .ns
            .resolve(path.as_str())
            .ok_or_else(|| MetaError::NotFound(path.to_string()))
    }

    /// Creates a directory and its missing parents.
    pub fn mkdir_p(&mut self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Ino> {
        let mut cur: Option<RelPath> = None;
        let mut ino = crate::ROOT_INO;
        for c in path.components() {
            let p = match &cur {
                None => RelPath::new(c)?,
                Some(p) => p.join(c)?,
            };
            ino = match self.fs.ns.resolve(p.as_str()) {
                Some(i) if self.fs.ns.get(i).is_some_and(|n| n.is_dir()) => i,
                Some(_) => return Err(MetaError::NotADirectory(p.to_string())),
                None => self.mkdir(&p, mode, uid, gid)?,
            };
            cur = Some(p);
        }
        Ok(ino)
    }

    /// Logs a new file `dest` with the size, owner, mode and map of the file `src`: the two share
    /// their memory (a cross-linked file, as the C `famfs clone` makes for testing; fsck reports
    /// the collision).
    pub fn clone_file(&mut self, src: &RelPath, dest: &RelPath) -> Result<Ino> {
        let ns = &self.fs.ns;
        let node = ns
            .resolve(src.as_str())
            .and_then(|i| ns.get(i))
            .ok_or_else(|| MetaError::NotFound(src.to_string()))?;
        let f = node
            .file()
            .ok_or_else(|| MetaError::IsADirectory(src.to_string()))?;
        let entry = FileEntry {
            size: f.size,
            flags: f.flags,
            uid: node.uid,
            gid: node.gid,
            mode: node.mode,
            path: dest.clone(),
            fmap: f.fmap.clone(),
        };
        self.parent_of(dest)?;
        if self.fs.ns.resolve(dest.as_str()).is_some() {
            return Err(MetaError::Exists(dest.to_string()));
        }
        entry.validate()?;
        self.append(LogEntryBody::File(entry))?;
        self.fs
            .ns
            .resolve(dest.as_str())
            .ok_or_else(|| MetaError::NotFound(dest.to_string()))
    }

    /// The devices in the order a new file tries them: most free space first (ties: lowest
    /// index). On a fresh two-device file system the secondary comes first (the primary holds the
    /// log), and files then alternate as space evens out. A secondary this host looked for and
    /// did not find is left out (a file placed there could not be written here); through meta
    /// files (a mount) the devices are not looked for here and all count.
    fn device_order(&mut self) -> (Vec<usize>, Vec<String>) {
        self.fs.attach_missing();
        let mut skipped = Vec::new();
        let mut order: Vec<usize> = Vec::new();
        for i in 0..self.fs.bitmaps.len() {
            match self.fs.attached.get(i) {
                Some(Attached::Missing(why)) if i > 0 => skipped.push(why.clone()),
                _ => order.push(i),
            }
        }
        order.sort_by_key(|&i| (std::cmp::Reverse(self.fs.bitmaps[i].free_bytes()), i));
        (order, skipped)
    }

    /// The error of an allocation that found no room on the devices it tried.
    fn no_room(first: Option<AllocError>, skipped: &[String]) -> MetaError {
        match (first, skipped.is_empty()) {
            (Some(e), true) => e.into(),
            (first, _) => MetaError::DeviceMissing(format!(
                "{}; the devices this host lacks were not used: {}",
                first
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "no device of this host has room".into()),
                skipped.join("; ")
            )),
        }
    }

    /// The extents of a plain file on the first device (in [`Appender::device_order`]) with
    /// room: one extent if a free range is long enough, else several (up to 16) on one device.
    /// Nothing is marked: the bitmap is updated when the entry is applied, so a failed append
    /// leaves it untouched (and no bitmap is copied).
    fn alloc_simple(&mut self, size: u64, reset_cursor: bool) -> Result<Vec<Extent>> {
        let n = self.fs.bitmaps.len();
        self.cursors.resize(n, 0);
        let (order, skipped) = self.device_order();
        let mut first_err = None;
        // One extent on any device before several on one.
        for i in order.iter().copied() {
            if reset_cursor {
                self.cursors[i] = 0;
            }
            match self.fs.bitmaps[i].find_contiguous(size, self.cursors[i]) {
                Ok(e) => {
                    self.cursors[i] = e.end();
                    return Ok(vec![Extent {
                        devindex: i as u64,
                        ..e
                    }]);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        for i in order {
            if let Ok(v) = self.fs.bitmaps[i].find_simple(size, self.cursors[i]) {
                return Ok(v
                    .into_iter()
                    .map(|e| Extent {
                        devindex: i as u64,
                        ..e
                    })
                    .collect());
            }
        }
        Err(Self::no_room(first_err, &skipped))
    }

    /// The map of a new file of `size` bytes (found without marking; nothing is marked until
    /// the entry is applied).
    fn allocate(&mut self, size: u64, layout: Layout) -> Result<Fmap> {
        let ndev = self.fs.bitmaps.len();
        Ok(match layout {
            Layout::Contiguous => Fmap::simple(self.alloc_simple(size, false)?)?,
            // A file smaller than one chunk gets a simple map, first fit from the start of the
            // device (the C allocator does the same and resets its cursor).
            Layout::Interleaved(p) if size < p.chunk_size() => {
                Fmap::simple(self.alloc_simple(size, true)?)?
            }
            Layout::Interleaved(p) if ndev == 1 => {
                let seed = u64::from_le_bytes(
                    uuid::Uuid::new_v4().as_bytes()[..8]
                        .try_into()
                        .expect("8 bytes"),
                );
                Fmap::Interleaved(self.fs.bitmaps[0].find_interleaved(size, &p, seed)?)
            }
            Layout::Interleaved(p) => {
                // Several devices: one strip per device, on nstrips distinct devices (most free
                // first); the bucket count does not apply.
                let nstrips = p.nstrips();
                if nstrips > ndev as u64 {
                    return Err(AllocError::BadInterleave(format!(
                        "{nstrips} strips on a file system of {ndev} devices: a multi-device file system puts one strip on each device (-N at most {ndev})"
                    ))
                    .into());
                }
                let strip_len = p.strip_len(size);
                let mut strips = Vec::new();
                let (order, skipped) = self.device_order();
                for i in order {
                    if strips.len() as u64 == nstrips {
                        break;
                    }
                    if let Some(e) = self.fs.bitmaps[i].find_strip(strip_len) {
                        strips.push(Extent {
                            devindex: i as u64,
                            ..e
                        });
                    }
                }
                if (strips.len() as u64) < nstrips {
                    let e = AllocError::NoSpaceInterleaved {
                        nstrips,
                        found: strips.len() as u64,
                        strip_len,
                    };
                    return Err(Self::no_room(Some(e), &skipped));
                }
                Fmap::Interleaved(Interleave::new(p.chunk_size(), strips)?)
            }
        })
    }

    /// Adds `media` to the file system as its next device: writes a secondary superblock on it
    /// (zeroing its first 2 MiB), then logs an ADD_DAXDEV entry naming its new device uuid, its
    /// size and `name`. Returns the device index. Policy (an existing famfs on it, the minimum
    /// size, the primary itself) is the caller's; a device already in the table is refused here.
    pub fn add_device(&mut self, media: Media, name: &str, dev_uuid: UuidBytes) -> Result<u32> {
        if !media.has_data() || media.access() != Access::ReadWrite {
            return Err(MetaError::NoData(media.kind()));
        }
        if let Ok(AnySuperblock::Secondary(s)) = media.read_any_superblock() {
            if s.fs_uuid == self.fs.sb.fs_uuid
                && self.fs.devices.iter().any(|d| d.uuid == s.dev_uuid)
            {
                return Err(MetaError::AlreadyMember(media.path().to_path_buf()));
            }
        }
        if self.fs.devices.iter().any(|d| d.uuid == dev_uuid) {
            return Err(MetaError::AlreadyMember(media.path().to_path_buf()));
        }
        let index = self.fs.devices.len() as u32;
        if index as usize >= MAX_DEVICES {
            return Err(MetaError::TooManyDevices(MAX_DEVICES));
        }
        let size = media.size();
        if size > MAX_DEVICE_SIZE {
            return Err(MetaError::ImplausibleDeviceSize {
                size,
                max: MAX_DEVICE_SIZE,
            });
        }
        let h = self.fs.log_header()?;
        if h.is_full() {
            return Err(MetaError::LogFull {
                capacity: h.geometry().capacity(),
            });
        }
        // The superblock first: a reader that sees the entry finds the device ready.
        let sb = SecondarySuperblock::new(&self.fs.sb, dev_uuid, size, name);
        media.zero(0, SB_REGION_LEN.min(size))?;
        media.write_at(0, &sb.encode())?;
        self.append(LogEntryBody::AddDaxdev(DaxdevEntry {
            size,
            uuid: dev_uuid,
            index,
            name: name.to_string(),
        }))?;
        if self.fs.devices.len() as u32 != index + 1 {
            return Err(MetaError::NoSuchDevice(index.into()));
        }
        if self.fs.media.has_data() {
            let path = media.path().to_path_buf();
            self.fs.attached[index as usize] = Attached::Yes { media, path };
        }
        Ok(index)
    }

    /// Allocates memory and creates a file (parent must exist; an existing path is an error).
    pub fn create_file(
        &mut self,
        path: &RelPath,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        layout: Layout,
    ) -> Result<Ino> {
        if size == 0 {
            return Err(FormatError::FileSizeZero.into());
        }
        self.parent_of(path)?;
        if self.fs.ns.resolve(path.as_str()).is_some() {
            return Err(MetaError::Exists(path.to_string()));
        }
        let h = self.fs.log_header()?;
        if h.is_full() {
            return Err(MetaError::LogFull {
                capacity: h.geometry().capacity(),
            });
        }
        let fmap = self.allocate(size, layout)?;
        let f = FileEntry {
            size,
            flags: FileFlags::READ_WRITE,
            uid,
            gid,
            mode: mode & 0o7777,
            path: path.clone(),
            fmap,
        };
        f.validate()?;
        self.append(LogEntryBody::File(f))?;
        self.fs
            .ns
            .resolve(path.as_str())
            .ok_or_else(|| MetaError::NotFound(path.to_string()))
    }
}

/// Most devices a file system may have: the slots of famfs.ko's daxdev table (defined once, in
/// kernel/fmap).
pub const MAX_DEVICES: usize = famfs_fmap::MAX_DAXDEVS as usize;

/// Marks the superblock of `media` (version 49) so that the log may hold DELETE entries and the
/// C tools refuse the file system (`mkfs.famfs --enable-delete`, or before a first delete made
/// where the superblock is not writable). Returns the superblock as written.
pub fn enable_deletes(media: &Media) -> Result<Superblock> {
    let mut sb = media.read_superblock()?;
    if !sb.deletes_enabled() {
        sb.version = SB_VERSION_DELETE;
        media.write_durable(0, &sb.encode())?;
    }
    Ok(sb)
}

/// Options of [`mkfs`].
#[derive(Debug, Clone)]
pub struct MkfsOptions {
    pub log_len: u64,
    pub fs_uuid: UuidBytes,
    pub dev_uuid: UuidBytes,
    pub system_uuid: UuidBytes,
    /// Recorded in the superblock (the path given to mkfs).
    pub device_name: String,
}

/// Writes a new file system: zeroes the superblock region and the log, writes the empty log
/// header, and writes the superblock last (so a crash leaves no valid-looking half file system).
/// Policy checks (size, existing fs, mounts) are the caller's.
pub fn mkfs(media: &Media, o: &MkfsOptions) -> Result<Superblock> {
    let sb = Superblock::new(
        o.log_len,
        media.size(),
        o.fs_uuid,
        o.dev_uuid,
        o.system_uuid,
        &o.device_name,
    )?;
    media.zero(0, SB_REGION_LEN)?;
    media.zero(LOG_OFFSET, o.log_len)?;
    media.write_log_header(&LogHeader::new(sb.log_geometry()))?;
    media.write_at(0, &sb.encode())?;
    Ok(sb)
}
