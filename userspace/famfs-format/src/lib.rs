//! The famfs on-media format (superblock version 48, omf 2.2), byte-compatible with the C famfs tools.
//!
//! Everything in this crate is pure: it encodes and decodes byte slices and never touches a device.
//! The `#[repr(C)]` structs ([`RawSuperblock`], [`RawLogHeader`], [`RawLogEntry`]) document the layout
//! and their sizes and field offsets are pinned by tests; the encoders and decoders nevertheless work
//! field by field on little-endian byte slices, so nothing depends on host endianness or alignment and
//! no unaligned memory is ever reinterpreted.
//!
//! Decoders never panic: every length, counter and enum value read from media is checked and a
//! [`FormatError`] says what was wrong.

mod bytes;
mod consts;
mod entry;
mod error;
mod fmap;
mod log;
mod path;
mod superblock;
mod wire;

pub use consts::*;
pub use entry::{
    DaxdevEntry, DeleteEntry, EntryType, FileEntry, FileFlags, LogEntry, LogEntryBody, MkdirEntry,
    RawLogEntry, ReclaimEntry, DAXDEV_ENTRY_NAME_LEN, DELETE_FLAG_DIR, DELETE_FLAG_REVOKE,
    DELETE_TARGET_IMPLIED, RECLAIM_MAX,
};
pub use error::FormatError;
pub use fmap::{Extent, Fmap, Interleave, Segment};
pub use log::{LogGeometry, LogHeader, RawLogHeader};
pub use path::RelPath;
pub use superblock::{
    AnySuperblock, RawSuperblock, SecondarySuperblock, Superblock, SB_FLAG_PRIMARY,
    SB_FLAG_SECONDARY,
};
pub use wire::WireError;

/// zlib-compatible crc32 (initial value 0, as `crc32(0, buf, len)` in zlib).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// A 16-byte uuid as stored on media (RFC 4122 byte order).
pub type UuidBytes = [u8; 16];

/// Formats a uuid the usual way (8-4-4-4-12 lower-case hex).
pub fn format_uuid(u: &UuidBytes) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    let h = h.concat();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses a uuid in its 36-character text form (case-insensitive); `None` when malformed.
pub fn parse_uuid(s: &str) -> Option<UuidBytes> {
    let s = s.trim();
    if s.len() != 36 {
        return None;
    }
    let bytes = s.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        let dash = matches!(i, 8 | 13 | 18 | 23);
        if dash != (c == b'-') {
            return None;
        }
    }
    let hex: Vec<u8> = bytes.iter().copied().filter(|&c| c != b'-').collect();
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_zlib_crc32() {
        // The zlib check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn uuid_text_round_trip() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let s = format_uuid(&u);
        assert_eq!(s, "12345678-9abc-def0-0102-030405060708");
        assert_eq!(parse_uuid(&s), Some(u));
        assert_eq!(parse_uuid(&s.to_uppercase()), Some(u));
        assert_eq!(parse_uuid("12345678-9abc-def0-0102-03040506070"), None);
        assert_eq!(parse_uuid("12345678x9abc-def0-0102-030405060708"), None);
        assert_eq!(parse_uuid("g2345678-9abc-def0-0102-030405060708"), None);
        assert_eq!(parse_uuid("ééé"), None);
    }
}
