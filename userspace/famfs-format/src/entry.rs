use crate::bytes::{get_arr, get_u32, get_u64, need, put_u32, put_u64};
use crate::*;

/// A log entry exactly as on media (544 bytes). Size and offsets pinned by tests.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLogEntry {
    pub seqnum: u64,
    pub entry_type: u32,
    pub pad: u32,
    pub body: [u8; LOG_ENTRY_BODY_SIZE],
    pub crc: u64,
}

impl RawLogEntry {
    /// Reads the fields from the first 544 bytes of `b`.
    pub fn from_bytes(b: &[u8]) -> Result<Self, FormatError> {
        need(b, LOG_ENTRY_SIZE, "log entry")?;
        Ok(RawLogEntry {
            seqnum: get_u64(b, 0),
            entry_type: get_u32(b, 8),
            pad: get_u32(b, 12),
            body: get_arr(b, LOG_ENTRY_BODY_OFFSET),
            crc: get_u64(b, LOG_ENTRY_CRC_RANGE),
        })
    }

    /// The 544 on-media bytes.
    pub fn to_bytes(&self) -> [u8; LOG_ENTRY_SIZE] {
        let mut b = [0u8; LOG_ENTRY_SIZE];
        put_u64(&mut b, 0, self.seqnum);
        put_u32(&mut b, 8, self.entry_type);
        put_u32(&mut b, 12, self.pad);
        b[LOG_ENTRY_BODY_OFFSET..LOG_ENTRY_CRC_RANGE].copy_from_slice(&self.body);
        put_u64(&mut b, LOG_ENTRY_CRC_RANGE, self.crc);
        b
    }

    /// crc32 of bytes [0, 536).
    pub fn compute_crc(&self) -> u64 {
        crc32(&self.to_bytes()[..LOG_ENTRY_CRC_RANGE]) as u64
    }
}

/// Entry type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum EntryType {
    File = 0,
    Mkdir = 1,
    /// Removes a file or directory (C `FAMFS_LOG_DELETE`, never written by the C tools; layout
    /// by famfs-rs, see [`DeleteEntry`]).
    Delete = 2,
    AddDaxdev = 3,
    /// Gives the memory of deleted files back to the allocator (famfs-rs, see [`ReclaimEntry`]).
    Reclaim = 4,
}

/// FILE entry flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileFlags(pub u32);

impl FileFlags {
    /// Read-only on all hosts.
    pub const READ_ONLY: FileFlags = FileFlags(1);
    /// Read-write on all hosts (what the C tools write).
    pub const READ_WRITE: FileFlags = FileFlags(2);
}

/// A FILE entry: a file of `size` bytes whose memory is `fmap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    pub flags: FileFlags,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    pub path: RelPath,
    pub fmap: Fmap,
}

impl FileEntry {
    /// Checks the invariants a reader relies on: non-zero size covered by the fmap.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.size == 0 {
            return Err(FormatError::FileSizeZero);
        }
        let covered = self.fmap.capacity();
        if covered < self.size {
            return Err(FormatError::FmapTooSmall {
                size: self.size,
                covered,
            });
        }
        Ok(())
    }
}

/// A MKDIR entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkdirEntry {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    pub path: RelPath,
}

/// An ADD_DAXDEV entry: device `index` of the file system is the device whose (secondary)
/// superblock carries `uuid`. Indexes are dense in log order; 0 is the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaxdevEntry {
    pub size: u64,
    pub uuid: UuidBytes,
    pub index: u32,
    /// The path the device was added by on the master (famfs-rs extension at body offset 32,
    /// 64 bytes NUL-padded; zero in C-made entries). A hint only: names differ between hosts,
    /// and a device is used only after its superblock showed the right uuids.
    pub name: String,
}

/// Bytes of the ADD_DAXDEV name hint.
pub const DAXDEV_ENTRY_NAME_LEN: usize = 64;
/// Offset of the name hint in the ADD_DAXDEV body.
const DAXDEV_ENTRY_NAME_OFF: usize = 32;

/// DELETE flag: revoke the file on every host (mappings SIGBUS, descriptors ESTALE) instead of
/// letting holders keep it until they let go.
pub const DELETE_FLAG_REVOKE: u32 = 1;
/// DELETE flag: the removed node is a directory (it was empty when removed).
pub const DELETE_FLAG_DIR: u32 = 2;
/// `target` of a DELETE of a directory that has no entry of its own (implied by a deeper path).
pub const DELETE_TARGET_IMPLIED: u64 = u64::MAX;

/// A DELETE entry (type 2): `path`, created by the entry at index `target`, is removed from the
/// namespace. A file's extents stay allocated ("pending") until a [`ReclaimEntry`] names this
/// entry's index. Body: target u64 @0, flags u32 @8, zero u32 @12, relpath[80] @16, rest zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteEntry {
    /// Index of the FILE or MKDIR entry that created the node ([`DELETE_TARGET_IMPLIED`] for a
    /// directory implied by a deeper path).
    pub target: u64,
    /// [`DELETE_FLAG_REVOKE`], [`DELETE_FLAG_DIR`]; other bits are refused on read.
    pub flags: u32,
    pub path: RelPath,
}

impl DeleteEntry {
    /// Whether the delete asked for revocation on every host.
    pub fn revoke(&self) -> bool {
        self.flags & DELETE_FLAG_REVOKE != 0
    }

    /// Whether the removed node is a directory.
    pub fn is_dir(&self) -> bool {
        self.flags & DELETE_FLAG_DIR != 0
    }
}

/// Most DELETE indexes one RECLAIM entry names.
pub const RECLAIM_MAX: usize = 64;

/// A RECLAIM entry (type 4, famfs-rs): the extents of the files deleted by the DELETE entries at
/// `deletes` (log indexes, each earlier than this entry) are free from here on. Body: count u32
/// @0 (1 to 64), zero u32 @4, count u64 indexes @8, rest zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReclaimEntry {
    pub deletes: Vec<u64>,
}

/// The typed body of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntryBody {
    File(FileEntry),
    Mkdir(MkdirEntry),
    AddDaxdev(DaxdevEntry),
    Delete(DeleteEntry),
    Reclaim(ReclaimEntry),
}

/// A decoded log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seqnum: u64,
    pub body: LogEntryBody,
}

impl LogEntry {
    /// Encodes the entry for slot `seqnum` (crc computed here).
    pub fn encode(&self) -> [u8; LOG_ENTRY_SIZE] {
        let mut body = [0u8; LOG_ENTRY_BODY_SIZE];
        let ty = match &self.body {
            LogEntryBody::File(f) => {
                put_u64(&mut body, 0, f.size);
                put_u32(&mut body, 8, f.flags.0);
                put_u32(&mut body, 12, f.uid);
                put_u32(&mut body, 16, f.gid);
                put_u32(&mut body, 20, f.mode);
                f.path.encode(&mut body[24..]);
                f.fmap.encode(&mut body[104..]);
                EntryType::File
            }
            LogEntryBody::Mkdir(d) => {
                put_u32(&mut body, 0, d.uid);
                put_u32(&mut body, 4, d.gid);
                put_u32(&mut body, 8, d.mode);
                d.path.encode(&mut body[12..]);
                EntryType::Mkdir
            }
            LogEntryBody::AddDaxdev(x) => {
                put_u64(&mut body, 0, x.size);
                body[8..24].copy_from_slice(&x.uuid);
                put_u32(&mut body, 24, x.index);
                // At most 63 bytes, so the field always ends with a NUL; cut at a char boundary.
                let mut n = x.name.len().min(DAXDEV_ENTRY_NAME_LEN - 1);
                while !x.name.is_char_boundary(n) {
                    n -= 1;
                }
                body[DAXDEV_ENTRY_NAME_OFF..DAXDEV_ENTRY_NAME_OFF + n]
                    .copy_from_slice(&x.name.as_bytes()[..n]);
                EntryType::AddDaxdev
            }
            LogEntryBody::Delete(d) => {
                put_u64(&mut body, 0, d.target);
                put_u32(&mut body, 8, d.flags);
                d.path.encode(&mut body[16..]);
                EntryType::Delete
            }
            LogEntryBody::Reclaim(r) => {
                // The encoder writes what it is given (at most 64: more would not fit); the
                // decoder refuses a count outside 1..=64.
                let n = r.deletes.len().min(RECLAIM_MAX);
                put_u32(&mut body, 0, n as u32);
                for (i, d) in r.deletes.iter().take(n).enumerate() {
                    put_u64(&mut body, 8 + 8 * i, *d);
                }
                EntryType::Reclaim
            }
        };
        let mut raw = RawLogEntry {
            seqnum: self.seqnum,
            entry_type: ty as u32,
            pad: 0,
            body,
            crc: 0,
        };
        raw.crc = raw.compute_crc();
        raw.to_bytes()
    }

    /// Checks the integrity of the entry in slot `index`: crc first, then seqnum == index.
    /// A failure here means the log itself is damaged (or our cache is stale).
    pub fn check_integrity(b: &[u8], index: u64) -> Result<RawLogEntry, FormatError> {
        let raw = RawLogEntry::from_bytes(b)?;
        let computed = raw.compute_crc();
        if raw.crc != computed {
            return Err(FormatError::BadEntryCrc {
                index,
                stored: raw.crc,
                computed,
            });
        }
        if raw.seqnum != index {
            return Err(FormatError::SeqnumMismatch {
                index,
                seqnum: raw.seqnum,
            });
        }
        Ok(raw)
    }

    /// Decodes the body of an entry that passed [`LogEntry::check_integrity`]. Errors here concern
    /// that one entry (bad path, bad extent, unknown type).
    pub fn decode_body(raw: &RawLogEntry) -> Result<LogEntry, FormatError> {
        let b = &raw.body;
        let body = match raw.entry_type {
            0 => {
                let f = FileEntry {
                    size: get_u64(b, 0),
                    flags: FileFlags(get_u32(b, 8)),
                    uid: get_u32(b, 12),
                    gid: get_u32(b, 16),
                    mode: get_u32(b, 20),
                    path: RelPath::decode(&b[24..])?,
                    fmap: Fmap::decode(&b[104..])?,
                };
                f.validate()?;
                LogEntryBody::File(f)
            }
            1 => LogEntryBody::Mkdir(MkdirEntry {
                uid: get_u32(b, 0),
                gid: get_u32(b, 4),
                mode: get_u32(b, 8),
                path: RelPath::decode(&b[12..])?,
            }),
            3 => {
                // A hint only: one that is not UTF-8 ending in a NUL inside the field is no hint
                // (never a lossy one, which would not encode back to what was read).
                let field =
                    &b[DAXDEV_ENTRY_NAME_OFF..DAXDEV_ENTRY_NAME_OFF + DAXDEV_ENTRY_NAME_LEN];
                let name = field
                    .iter()
                    .position(|&c| c == 0)
                    .and_then(|end| std::str::from_utf8(&field[..end]).ok())
                    .unwrap_or_default()
                    .to_string();
                LogEntryBody::AddDaxdev(DaxdevEntry {
                    size: get_u64(b, 0),
                    uuid: get_arr(b, 8),
                    index: get_u32(b, 24),
                    name,
                })
            }
            2 => {
                let flags = get_u32(b, 8);
                if flags & !(DELETE_FLAG_REVOKE | DELETE_FLAG_DIR) != 0 {
                    return Err(FormatError::BadDelete(format!("unknown flags {flags:#x}")));
                }
                if get_u32(b, 12) != 0 || b[96..].iter().any(|&c| c != 0) {
                    return Err(FormatError::BadDelete("reserved bytes not zero".into()));
                }
                let target = get_u64(b, 0);
                if target >= raw.seqnum && target != DELETE_TARGET_IMPLIED {
                    return Err(FormatError::BadDelete(format!(
                        "target entry {target} is not before the delete itself"
                    )));
                }
                LogEntryBody::Delete(DeleteEntry {
                    target,
                    flags,
                    path: RelPath::decode(&b[16..])?,
                })
            }
            4 => {
                let n = get_u32(b, 0) as usize;
                if n == 0 || n > RECLAIM_MAX {
                    return Err(FormatError::BadReclaim(format!(
                        "count {n} (1 to {RECLAIM_MAX})"
                    )));
                }
                if get_u32(b, 4) != 0 || b[8 + 8 * n..].iter().any(|&c| c != 0) {
                    return Err(FormatError::BadReclaim("reserved bytes not zero".into()));
                }
                let deletes: Vec<u64> = (0..n).map(|i| get_u64(b, 8 + 8 * i)).collect();
                if let Some(d) = deletes.iter().find(|&&d| d >= raw.seqnum) {
                    return Err(FormatError::BadReclaim(format!(
                        "names entry {d}, not before the reclaim itself"
                    )));
                }
                LogEntryBody::Reclaim(ReclaimEntry { deletes })
            }
            other => {
                return Err(FormatError::BadEntryType {
                    index: raw.seqnum,
                    found: other,
                })
            }
        };
        Ok(LogEntry {
            seqnum: raw.seqnum,
            body,
        })
    }

    /// Integrity check and body decode in one step.
    pub fn decode(b: &[u8], index: u64) -> Result<LogEntry, FormatError> {
        let raw = Self::check_integrity(b, index)?;
        Self::decode_body(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use proptest::prelude::*;

    const M: u64 = MIB2;

    /// Regression: a FILE entry whose interleaved strips differ in length (strip 0 of 8 MiB,
    /// strip 1 of 4 MiB, 4 MiB chunks, a 12 MiB file) is served by the C famfs kernel (chunk 2
    /// goes to strip 0 at 4 MiB, inside it), but was refused here as `FmapTooSmall { covered:
    /// 8 MiB }` (the shortest strip times the strip count), so log play and fsck reported the
    /// entry invalid and dropped the file.
    #[test]
    fn file_with_unequal_strips_is_valid() {
        let strips = vec![Extent::new(50 * M, 4 * M), Extent::new(80 * M, 2 * M)];
        let e = FileEntry {
            size: 6 * M,
            flags: FileFlags::READ_WRITE,
            uid: 0,
            gid: 0,
            mode: 0o644,
            path: RelPath::new("il").unwrap(),
            fmap: Fmap::Interleaved(crate::Interleave::new(2 * M, strips).unwrap()),
        };
        assert_eq!(e.validate(), Ok(()));
        let over = FileEntry {
            size: 6 * M + 1,
            ..e
        };
        assert_eq!(
            over.validate(),
            Err(FormatError::FmapTooSmall {
                size: 6 * M + 1,
                covered: 6 * M
            })
        );
    }

    fn file_entry(seq: u64) -> LogEntry {
        LogEntry {
            seqnum: seq,
            body: LogEntryBody::File(FileEntry {
                size: 3 * M + 1,
                flags: FileFlags::READ_WRITE,
                uid: 1000,
                gid: 100,
                mode: 0o644,
                path: RelPath::new("dir/file").unwrap(),
                fmap: Fmap::simple(vec![Extent::new(10 * M, 4 * M)]).unwrap(),
            }),
        }
    }

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<RawLogEntry>(), 544);
        assert_eq!(offset_of!(RawLogEntry, seqnum), 0);
        assert_eq!(offset_of!(RawLogEntry, entry_type), 8);
        assert_eq!(offset_of!(RawLogEntry, pad), 12);
        assert_eq!(offset_of!(RawLogEntry, body), 16);
        assert_eq!(offset_of!(RawLogEntry, crc), 536);
        assert_eq!(LOG_ENTRY_BODY_SIZE, 520);
        assert_eq!(104 + FMAP_SIZE, LOG_ENTRY_BODY_SIZE);
    }

    #[test]
    fn file_entry_bytes() {
        let e = file_entry(7);
        let b = e.encode();
        assert_eq!(get_u64(&b, 0), 7);
        assert_eq!(get_u32(&b, 8), 0);
        assert_eq!(get_u32(&b, 12), 0);
        let body = &b[16..];
        assert_eq!(get_u64(body, 0), 3 * M + 1);
        assert_eq!(get_u32(body, 8), 2);
        assert_eq!(get_u32(body, 12), 1000);
        assert_eq!(get_u32(body, 16), 100);
        assert_eq!(get_u32(body, 20), 0o644);
        assert_eq!(&body[24..33], b"dir/file\0");
        assert_eq!(get_u32(body, 104), 0); // ext_type
        assert_eq!(get_u32(body, 112), 1); // count
        assert_eq!(get_u64(body, 104 + 16 + 8), 10 * M);
        assert_eq!(get_u64(&b, 536), crc32(&b[..536]) as u64);
        assert_eq!(LogEntry::decode(&b, 7).unwrap(), e);
    }

    #[test]
    fn mkdir_and_daxdev_bytes() {
        let d = LogEntry {
            seqnum: 0,
            body: LogEntryBody::Mkdir(MkdirEntry {
                uid: 1,
                gid: 2,
                mode: 0o755,
                path: RelPath::new("a/b").unwrap(),
            }),
        };
        let b = d.encode();
        assert_eq!(get_u32(&b, 8), 1);
        assert_eq!(get_u32(&b, 16), 1);
        assert_eq!(get_u32(&b, 20), 2);
        assert_eq!(get_u32(&b, 24), 0o755);
        assert_eq!(&b[28..32], b"a/b\0");
        assert!(b[16 + 92..536].iter().all(|&x| x == 0));
        assert_eq!(LogEntry::decode(&b, 0).unwrap(), d);
        let x = LogEntry {
            seqnum: 1,
            body: LogEntryBody::AddDaxdev(DaxdevEntry {
                size: 1 << 34,
                uuid: [9; 16],
                index: 1,
                name: "/dev/dax1.0".into(),
            }),
        };
        let b = x.encode();
        assert_eq!(get_u32(&b, 8), 3);
        assert_eq!(get_u64(&b, 16), 1 << 34);
        assert_eq!(&b[24..40], &[9; 16]);
        assert_eq!(get_u32(&b, 40), 1);
        assert_eq!(&b[16 + 28..16 + 32], &[0; 4]);
        assert_eq!(&b[16 + 32..16 + 44], b"/dev/dax1.0\0");
        assert!(b[16 + 44..536].iter().all(|&c| c == 0));
        assert_eq!(LogEntry::decode(&b, 1).unwrap(), x);
        // A C-made entry has no name: it decodes as an empty one.
        let mut raw = RawLogEntry::from_bytes(&b).unwrap();
        raw.body[32..96].fill(0);
        raw.crc = raw.compute_crc();
        match LogEntry::decode(&raw.to_bytes(), 1).unwrap().body {
            LogEntryBody::AddDaxdev(d) => assert_eq!(d.name, ""),
            other => panic!("{other:?}"),
        }
        // A name that is not UTF-8, or fills the field without a NUL, reads as no name.
        for fill in [&[0xf3u8; 64][..], &[b'*'; 64][..]] {
            let mut raw = RawLogEntry::from_bytes(&b).unwrap();
            raw.body[32..96].copy_from_slice(fill);
            raw.crc = raw.compute_crc();
            let e = LogEntry::decode(&raw.to_bytes(), 1).unwrap();
            match &e.body {
                LogEntryBody::AddDaxdev(d) => assert_eq!(d.name, ""),
                other => panic!("{other:?}"),
            }
            assert_eq!(LogEntry::decode(&e.encode(), 1).unwrap(), e);
        }
        // A long name is cut to 63 bytes and keeps its NUL.
        let long = LogEntry {
            seqnum: 1,
            body: LogEntryBody::AddDaxdev(DaxdevEntry {
                size: 1,
                uuid: [1; 16],
                index: 1,
                name: "x".repeat(100),
            }),
        };
        let b = long.encode();
        assert_eq!(b[16 + 32 + 63], 0);
    }

    #[test]
    fn crc_covers_exactly_0_to_536() {
        let good = file_entry(3).encode();
        for i in 0..LOG_ENTRY_SIZE {
            let mut b = good;
            b[i] ^= 0x80;
            let r = LogEntry::check_integrity(&b, 3);
            assert!(r.is_err(), "byte {i}");
            if i < 536 {
                assert!(
                    matches!(r, Err(FormatError::BadEntryCrc { .. })),
                    "byte {i}"
                );
            }
        }
    }

    #[test]
    fn entry_errors() {
        let b = file_entry(3).encode();
        assert_eq!(
            LogEntry::decode(&b, 4),
            Err(FormatError::SeqnumMismatch {
                index: 4,
                seqnum: 3
            })
        );
        assert!(matches!(
            LogEntry::decode(&b[..543], 3),
            Err(FormatError::Truncated { .. })
        ));
        let reencode = |f: &dyn Fn(&mut RawLogEntry)| {
            let mut r = RawLogEntry::from_bytes(&b).unwrap();
            f(&mut r);
            r.crc = r.compute_crc();
            LogEntry::decode(&r.to_bytes(), 3)
        };
        // A FILE body read as a DELETE: its "target" (the size) is not an earlier entry.
        assert!(matches!(
            reencode(&|r| r.entry_type = 2),
            Err(FormatError::BadDelete(_))
        ));
        assert!(matches!(
            reencode(&|r| r.entry_type = 99),
            Err(FormatError::BadEntryType { found: 99, .. })
        ));
        assert_eq!(
            reencode(&|r| r.body[..8].fill(0)),
            Err(FormatError::FileSizeZero)
        );
        assert!(matches!(
            reencode(&|r| put_u64(&mut r.body, 0, 9 * M)),
            Err(FormatError::FmapTooSmall { .. })
        ));
        assert_eq!(
            reencode(&|r| r.body[24] = b'/'),
            Err(FormatError::PathAbsolute)
        );
        assert!(matches!(
            reencode(&|r| r.body[24..27].copy_from_slice(b"../")),
            Err(FormatError::PathBadComponent(_))
        ));
        assert_eq!(
            reencode(&|r| r.body[24..104].fill(b'a')),
            Err(FormatError::PathNotTerminated)
        );
        assert_eq!(
            reencode(&|r| put_u64(&mut r.body, 104 + 24, 0)),
            Err(FormatError::ExtentAtZero)
        );
        assert!(matches!(
            reencode(&|r| put_u64(&mut r.body, 104 + 24, 4096)),
            Err(FormatError::ExtentMisaligned { .. })
        ));
    }

    fn delete_entry(seq: u64) -> LogEntry {
        LogEntry {
            seqnum: seq,
            body: LogEntryBody::Delete(DeleteEntry {
                target: 5,
                flags: DELETE_FLAG_REVOKE,
                path: RelPath::new("dir/file").unwrap(),
            }),
        }
    }

    #[test]
    fn delete_entry_bytes() {
        let e = delete_entry(9);
        let b = e.encode();
        assert_eq!(get_u64(&b, 0), 9);
        assert_eq!(get_u32(&b, 8), 2, "type FAMFS_LOG_DELETE");
        assert_eq!(get_u32(&b, 12), 0);
        let body = &b[16..536];
        assert_eq!(get_u64(body, 0), 5, "target");
        assert_eq!(get_u32(body, 8), 1, "flags: revoke");
        assert_eq!(get_u32(body, 12), 0);
        assert_eq!(&body[16..25], b"dir/file\0");
        assert!(body[25..].iter().all(|&c| c == 0));
        assert_eq!(get_u64(&b, 536), crc32(&b[..536]) as u64);
        assert_eq!(LogEntry::decode(&b, 9).unwrap(), e);
        // An implied directory (no entry of its own) round-trips too.
        let d = LogEntry {
            seqnum: 3,
            body: LogEntryBody::Delete(DeleteEntry {
                target: DELETE_TARGET_IMPLIED,
                flags: DELETE_FLAG_DIR,
                path: RelPath::new("a").unwrap(),
            }),
        };
        let b = d.encode();
        assert_eq!(get_u64(&b, 16), u64::MAX);
        assert_eq!(get_u32(&b, 24), 2);
        match LogEntry::decode(&b, 3).unwrap().body {
            LogEntryBody::Delete(x) => assert!(x.is_dir() && !x.revoke()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reclaim_entry_bytes() {
        let e = LogEntry {
            seqnum: 100,
            body: LogEntryBody::Reclaim(ReclaimEntry {
                deletes: vec![7, 9, 99],
            }),
        };
        let b = e.encode();
        assert_eq!(get_u32(&b, 8), 4, "type RECLAIM");
        let body = &b[16..536];
        assert_eq!(get_u32(body, 0), 3);
        assert_eq!(get_u32(body, 4), 0);
        assert_eq!(get_u64(body, 8), 7);
        assert_eq!(get_u64(body, 16), 9);
        assert_eq!(get_u64(body, 24), 99);
        assert!(body[32..].iter().all(|&c| c == 0));
        assert_eq!(LogEntry::decode(&b, 100).unwrap(), e);
        let full = LogEntry {
            seqnum: 1000,
            body: LogEntryBody::Reclaim(ReclaimEntry {
                deletes: (0..RECLAIM_MAX as u64).collect(),
            }),
        };
        assert_eq!(LogEntry::decode(&full.encode(), 1000).unwrap(), full);
        assert_eq!(8 + 8 * RECLAIM_MAX, LOG_ENTRY_BODY_SIZE);
    }

    #[test]
    fn delete_and_reclaim_corruption() {
        let reencode = |e: &LogEntry, f: &dyn Fn(&mut RawLogEntry)| {
            let mut r = RawLogEntry::from_bytes(&e.encode()).unwrap();
            f(&mut r);
            r.crc = r.compute_crc();
            LogEntry::decode(&r.to_bytes(), e.seqnum)
        };
        let d = delete_entry(9);
        // Every byte of a DELETE entry is covered by the crc.
        let good = d.encode();
        for i in 0..LOG_ENTRY_SIZE {
            let mut b = good;
            b[i] ^= 0x10;
            assert!(LogEntry::check_integrity(&b, 9).is_err(), "byte {i}");
        }
        for (what, f) in [
            (
                "unknown flag",
                &(|r: &mut RawLogEntry| put_u32(&mut r.body, 8, 4)) as &dyn Fn(&mut RawLogEntry),
            ),
            ("reserved u32", &|r: &mut RawLogEntry| {
                put_u32(&mut r.body, 12, 1)
            }),
            ("byte past the path", &|r: &mut RawLogEntry| r.body[200] = 1),
            ("target after the delete", &|r: &mut RawLogEntry| {
                put_u64(&mut r.body, 0, 9)
            }),
        ] {
            assert!(
                matches!(reencode(&d, f), Err(FormatError::BadDelete(_))),
                "{what}"
            );
        }
        assert_eq!(
            reencode(&d, &|r| r.body[16] = b'/'),
            Err(FormatError::PathAbsolute)
        );
        let r = LogEntry {
            seqnum: 50,
            body: LogEntryBody::Reclaim(ReclaimEntry {
                deletes: vec![1, 2],
            }),
        };
        for (what, f) in [
            (
                "count 0",
                &(|r: &mut RawLogEntry| put_u32(&mut r.body, 0, 0)) as &dyn Fn(&mut RawLogEntry),
            ),
            ("count 65", &|r: &mut RawLogEntry| {
                put_u32(&mut r.body, 0, 65)
            }),
            ("reserved u32", &|r: &mut RawLogEntry| {
                put_u32(&mut r.body, 4, 1)
            }),
            ("index past the count", &|r: &mut RawLogEntry| {
                put_u64(&mut r.body, 24, 3)
            }),
            ("index after the reclaim", &|r: &mut RawLogEntry| {
                put_u64(&mut r.body, 8, 50)
            }),
        ] {
            assert!(
                matches!(reencode(&r, f), Err(FormatError::BadReclaim(_))),
                "{what}"
            );
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), idx in 0u64..4) {
            let _ = LogEntry::decode(&bytes, idx);
        }

        #[test]
        fn decode_never_panics_with_valid_crc(mut body in proptest::collection::vec(any::<u8>(), 520), ty in 0u32..5) {
            body.resize(520, 0);
            let mut raw = RawLogEntry { seqnum: 0, entry_type: ty, pad: 0, body: body.try_into().unwrap(), crc: 0 };
            raw.crc = raw.compute_crc();
            let _ = LogEntry::decode(&raw.to_bytes(), 0);
        }
    }
}
