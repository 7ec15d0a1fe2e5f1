//! [`Famfs`]: an open file system (media + superblock + played namespace + allocation bitmap).

use crate::namespace::{ApplyConflict, FileInfo, Ino, Namespace, NodeKind};
use crate::role::{local_system_uuid, system_uuid_path, Role};
use crate::{MetaError, Result};
use famfs_alloc::{AllocError, Bitmap, InterleaveParams};
use famfs_format::*;
use famfs_media::{Access, Media, MediaKind};
use std::path::Path;

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
}

/// A problem found while playing entry `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub index: u64,
    pub path: Option<String>,
    pub kind: ProblemKind,
}

impl Problem {
    /// Whether this is damage (as opposed to a harmless duplicate).
    pub fn is_damage(&self) -> bool {
        !matches!(self.kind, ProblemKind::Duplicate | ProblemKind::PartialUnit(_))
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}", self.index)?;
        if let Some(p) = &self.path {
            write!(f, " (/{p})")?;
        }
        match &self.kind {
            ProblemKind::BadEntry(e) => write!(f, ": invalid entry: {e}"),
            ProblemKind::Collision(e) => write!(f, ": {e}"),
            ProblemKind::Conflict(ApplyConflict::Exists { .. }) => write!(f, ": directory over an existing file"),
            ProblemKind::Conflict(ApplyConflict::ParentNotDir) => write!(f, ": a parent is a file"),
            ProblemKind::Duplicate => write!(f, ": path already exists; entry ignored"),
            ProblemKind::PartialUnit(e) => write!(f, ": {e}"),
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

/// An open famfs: the media, its validated superblock, this host's role, and the namespace and
/// allocation bitmap as of the last played entry.
pub struct Famfs {
    media: Media,
    sb: Superblock,
    role: Role,
    local_uuid: Option<UuidBytes>,
    uuid_error: Option<String>,
    ns: Namespace,
    bitmap: Bitmap,
    next_index: u64,
    problems: Vec<Problem>,
    daxdevs: Vec<DaxdevEntry>,
    scratch: Vec<u8>,
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
            return Err(MetaError::ImplausibleDeviceSize { size: dev_size, max: MAX_DEVICE_SIZE });
        }
        let log_end = sb.data_offset();
        if media.kind() != MediaKind::MetaFiles && media.size() < log_end {
            return Err(FormatError::DeviceTooSmall { device_size: media.size(), log_end }.into());
        }
        let sup = system_uuid_path();
        // A host that cannot create its uuid file (no permission) can still read as a client.
        let (local_uuid, uuid_error) = match local_system_uuid(&sup) {
            Ok(u) => (Some(u), None),
            Err(e) => (None, Some(format!("system uuid file {}: {e}", sup.display()))),
        };
        let role = if local_uuid == Some(sb.system_uuid) { Role::Master } else { Role::Client };
        let mut fs = Famfs {
            bitmap: Bitmap::new(dev_size, log_end),
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
        };
        fs.refresh()?;
        Ok(fs)
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

    /// The allocation bitmap as of the last play.
    pub fn bitmap(&self) -> &Bitmap {
        &self.bitmap
    }

    /// Number of log entries played so far (the next index to play).
    pub fn played(&self) -> u64 {
        self.next_index
    }

    /// Problems found in played entries, in log order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Devices added by ADD_DAXDEV entries (recorded, not used).
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
        let h = self.log_header()?;
        let end = h.next_index();
        if end < self.next_index {
            return Err(MetaError::LogWentBackwards { played: self.next_index, now: end });
        }
        let mut stats = PlayStats::default();
        let first = self.next_index;
        let mut buf = std::mem::take(&mut self.scratch);
        let r = self.media.read_log_range(&self.sb, first, end - first, &mut buf);
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
        result
    }

    fn problem(&mut self, index: u64, path: Option<&RelPath>, kind: ProblemKind, stats: &mut PlayStats) {
        stats.problems += 1;
        self.problems.push(Problem { index, path: path.map(|p| p.to_string()), kind });
    }

    fn apply(&mut self, index: u64, entry: std::result::Result<LogEntry, FormatError>, stats: &mut PlayStats) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return self.problem(index, None, ProblemKind::BadEntry(e), stats),
        };
        match entry.body {
            LogEntryBody::File(f) => {
                // Every valid FILE entry owns its extents, even a duplicate path (fsck must see
                // the space as used to report collisions correctly).
                for e in f.fmap.extents() {
                    match self.bitmap.mark(e) {
                        Ok(()) => {}
                        Err(err @ AllocError::InPartialUnit { .. }) => {
                            self.problem(index, Some(&f.path), ProblemKind::PartialUnit(err), stats)
                        }
                        Err(err) => self.problem(index, Some(&f.path), ProblemKind::Collision(err), stats),
                    }
                }
                let info = FileInfo { size: f.size, flags: f.flags, fmap: f.fmap };
                match self.ns.apply_file(&f.path, f.mode, f.uid, f.gid, info, Some(index)) {
                    Ok(_) => stats.files += 1,
                    Err(ApplyConflict::Exists { .. }) => self.problem(index, Some(&f.path), ProblemKind::Duplicate, stats),
                    Err(c) => self.problem(index, Some(&f.path), ProblemKind::Conflict(c), stats),
                }
            }
            LogEntryBody::Mkdir(d) => {
                let before = self.ns.dir_count();
                match self.ns.apply_mkdir(&d.path, d.mode, d.uid, d.gid, Some(index)) {
                    Ok(_) => stats.dirs += self.ns.dir_count() - before,
                    Err(c) => self.problem(index, Some(&d.path), ProblemKind::Conflict(c), stats),
                }
            }
            LogEntryBody::AddDaxdev(x) => self.daxdevs.push(x),
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
                ours: self.local_uuid.map(|u| format_uuid(&u)).unwrap_or_else(|| "unknown".into()),
            });
        }
        Ok(())
    }

    /// Runs `f` with the log lock held, after catching up with entries other processes appended.
    /// Use it to create many files under one lock.
    pub fn with_log_lock<T>(&mut self, f: impl FnOnce(&mut Appender<'_>) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let _lock = self.media.lock_log()?;
        self.refresh()?;
        f(&mut Appender { fs: self, cursor: 0 })
    }

    /// Creates a directory (parent must exist).
    pub fn mkdir(&mut self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Ino> {
        self.with_log_lock(|a| a.mkdir(path, mode, uid, gid))
    }

    /// Creates a directory and its missing parents; existing directories are fine.
    pub fn mkdir_p(&mut self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Ino> {
        self.with_log_lock(|a| a.mkdir_p(path, mode, uid, gid))
    }

    /// Creates a file of `size` bytes (parent must exist), allocating its memory.
    pub fn create_file(&mut self, path: &RelPath, size: u64, mode: u32, uid: u32, gid: u32, layout: Layout) -> Result<Ino> {
        self.with_log_lock(|a| a.create_file(path, size, mode, uid, gid, layout))
    }

    // ---- file data (device and image media) ----

    fn file_info(&self, ino: Ino) -> Result<(&FileInfo, String)> {
        let node = self.ns.get(ino).ok_or_else(|| MetaError::NotFound(format!("<inode {ino}>")))?;
        let path = self.ns.path_of(ino).unwrap_or_default();
        match &node.kind {
            NodeKind::File(f) => Ok((f, path)),
            NodeKind::Dir { .. } => Err(MetaError::IsADirectory(path)),
        }
    }

    fn data_op(&self, ino: Ino, offset: u64, len: usize, mut op: impl FnMut(u64, std::ops::Range<usize>) -> Result<()>) -> Result<()> {
        if !self.media.has_data() {
            return Err(MetaError::NoData(self.media.kind()));
        }
        let (info, path) = self.file_info(ino)?;
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > info.size) {
            return Err(MetaError::BeyondEof { path, offset, len: len as u64, size: info.size });
        }
        let mut done = 0usize;
        while done < len {
            let seg = info.fmap.resolve(offset + done as u64).ok_or_else(|| MetaError::BeyondEof {
                path: path.clone(),
                offset,
                len: len as u64,
                size: info.size,
            })?;
            let n = (seg.len.min((len - done) as u64)) as usize;
            op(seg.offset, done..done + n)?;
            done += n;
        }
        Ok(())
    }

    /// Writes file data directly into device memory (flushed from the CPU caches).
    pub fn write_data(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        self.data_op(ino, offset, data.len(), |dev_off, r| Ok(self.media.write_at(dev_off, &data[r])?))
    }

    /// Reads file data from device memory (cache lines invalidated first: another host may have
    /// written it).
    pub fn read_data(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        self.data_op(ino, offset, len, |dev_off, r| Ok(self.media.read_fresh(dev_off, &mut buf[r])?))
    }

    /// Flushes the CPU cache lines of a file's whole memory.
    pub fn flush_data(&self, ino: Ino) -> Result<()> {
        let (info, _) = self.file_info(ino)?;
        if !self.media.has_data() {
            return Err(MetaError::NoData(self.media.kind()));
        }
        for e in info.fmap.extents() {
            // Invalidation writes dirty lines back as well.
            self.media.acquire(e.offset, e.len)?;
        }
        Ok(())
    }
}

/// Appends entries while the log lock is held (see [`Famfs::with_log_lock`]).
pub struct Appender<'a> {
    fs: &'a mut Famfs,
    /// Where the next contiguous allocation of this session starts searching (as the C
    /// allocator's cursor: kept for the whole locked session, from 0 at its start).
    cursor: u64,
}

impl Appender<'_> {
    /// The namespace including entries appended so far under this lock.
    pub fn namespace(&self) -> &Namespace {
        &self.fs.ns
    }

    fn append(&mut self, body: LogEntryBody) -> Result<u64> {
        let fs = &mut *self.fs;
        let h = fs.log_header()?;
        if h.is_full() {
            return Err(MetaError::LogFull { capacity: h.geometry().capacity() });
        }
        let next = h.advanced()?;
        let index = h.next_index();
        let entry = LogEntry { seqnum: index, body };
        // Entry first, then the counters: a reader never sees a counter covering an unwritten entry.
        fs.media.write_log_entry(&fs.sb, index, &entry.encode())?;
        fs.media.write_log_header(&next)?;
        let mut stats = PlayStats::default();
        fs.apply(index, Ok(entry), &mut stats);
        fs.next_index = index + 1;
        Ok(index)
    }

    fn parent_of(&self, path: &RelPath) -> Result<()> {
        let ns = &self.fs.ns;
        let Some(parent) = path.parent() else { return Ok(()) };
        match ns.resolve(parent.as_str()).and_then(|i| ns.get(i)) {
            None => Err(MetaError::NotFound(parent.to_string())),
            Some(n) if !n.is_dir() => Err(MetaError::NotADirectory(parent.to_string())),
            Some(_) => Ok(()),
        }
    }

    /// Creates a directory (parent must exist; an existing path is an error).
    pub fn mkdir(&mut self, path: &RelPath, mode: u32, uid: u32, gid: u32) -> Result<Ino> {
        self.parent_of(path)?;
        if self.fs.ns.resolve(path.as_str()).is_some() {
            return Err(MetaError::Exists(path.to_string()));
        }
        let body = LogEntryBody::Mkdir(MkdirEntry { uid, gid, mode: mode & 0o7777, path: path.clone() });
        self.append(body)?;
        self.fs.ns.resolve(path.as_str()).ok_or_else(|| MetaError::NotFound(path.to_string()))
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
        let node = ns.resolve(src.as_str()).and_then(|i| ns.get(i)).ok_or_else(|| MetaError::NotFound(src.to_string()))?;
        let f = node.file().ok_or_else(|| MetaError::IsADirectory(src.to_string()))?;
        let entry = FileEntry { size: f.size, flags: f.flags, uid: node.uid, gid: node.gid, mode: node.mode, path: dest.clone(), fmap: f.fmap.clone() };
        self.parent_of(dest)?;
        if self.fs.ns.resolve(dest.as_str()).is_some() {
            return Err(MetaError::Exists(dest.to_string()));
        }
        entry.validate()?;
        self.append(LogEntryBody::File(entry))?;
        self.fs.ns.resolve(dest.as_str()).ok_or_else(|| MetaError::NotFound(dest.to_string()))
    }

    /// Allocates memory and creates a file (parent must exist; an existing path is an error).
    pub fn create_file(&mut self, path: &RelPath, size: u64, mode: u32, uid: u32, gid: u32, layout: Layout) -> Result<Ino> {
        if size == 0 {
            return Err(FormatError::FileSizeZero.into());
        }
        self.parent_of(path)?;
        if self.fs.ns.resolve(path.as_str()).is_some() {
            return Err(MetaError::Exists(path.to_string()));
        }
        let h = self.fs.log_header()?;
        if h.is_full() {
            return Err(MetaError::LogFull { capacity: h.geometry().capacity() });
        }
        // Allocate on a copy: the real bitmap is updated when the entry is applied, so a failed
        // append leaves it untouched.
        let mut bm = self.fs.bitmap.clone();
        let fmap = match layout {
            Layout::Contiguous => Fmap::simple(vec![bm.alloc_contiguous_from(size, &mut self.cursor)?])?,
            // A file smaller than one chunk gets one simple extent, first fit from the start of
            // the device (the C allocator does the same and resets its cursor).
            Layout::Interleaved(p) if size < p.chunk_size() => {
                self.cursor = 0;
                Fmap::simple(vec![bm.alloc_contiguous_from(size, &mut self.cursor)?])?
            }
            Layout::Interleaved(p) => {
                let seed = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"));
                Fmap::Interleaved(bm.alloc_interleaved(size, &p, seed)?)
            }
        };
        let f = FileEntry { size, flags: FileFlags::READ_WRITE, uid, gid, mode: mode & 0o7777, path: path.clone(), fmap };
        f.validate()?;
        self.append(LogEntryBody::File(f))?;
        self.fs.ns.resolve(path.as_str()).ok_or_else(|| MetaError::NotFound(path.to_string()))
    }
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
    let sb = Superblock::new(o.log_len, media.size(), o.fs_uuid, o.dev_uuid, o.system_uuid, &o.device_name)?;
    media.zero(0, SB_REGION_LEN)?;
    media.zero(LOG_OFFSET, o.log_len)?;
    media.write_log_header(&LogHeader::new(sb.log_geometry()))?;
    media.write_at(0, &sb.encode())?;
    Ok(sb)
}
