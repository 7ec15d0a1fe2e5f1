//! Log compaction (`famfs compact`): the on-media record that makes the switch to a rewritten log
//! crash-safe, and the recovery an opener runs when it finds one. The rewrite itself (which
//! entries are live) is [`crate::Appender::compact`].
//!
//! Order of the switch (Documentation/on-media-format.md, "Compaction record"):
//! 1. the new log (header and entries) is written durably to free data space ("scratch");
//! 2. the record naming it (scratch offset, length, crc32 of the bytes) is written durably at
//!    [`COMPACT_RECORD_OFFSET`] in the superblock region;
//! 3. the new log is copied over the log: entries first, header last, durably;
//! 4. the record is zeroed, durably.
//!
//! A crash before 2 is complete leaves no valid record: the old log is intact (the scratch is
//! free space nobody references). A crash after it leaves the record: whatever the log region
//! holds then (old, new, or half of each), the new log is intact in the scratch, and an opener
//! redoes step 3 and 4 (the master, read-write) or refuses to play.

use crate::{Famfs, MetaError, Result, Role};
use famfs_format::{
    crc32, LogHeader, Superblock, UuidBytes, LOG_ENTRY_SIZE, LOG_HEADER_SIZE, LOG_OFFSET,
};
use famfs_media::{Access, Media};

/// Where the compaction record lives: in the superblock's 2 MiB region, after the 200-byte
/// superblock (nothing else uses `[0x400, 0x440)`).
pub const COMPACT_RECORD_OFFSET: u64 = 0x400;
/// Bytes of the record.
pub const COMPACT_RECORD_SIZE: usize = 64;
/// "FAMFSCMP" read as a little-endian u64.
const COMPACT_MAGIC: u64 = u64::from_le_bytes(*b"FAMFSCMP");

/// What [`crate::Famfs::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Log entries before and after.
    pub entries_before: u64,
    pub entries_after: u64,
    /// Pending deletes dropped (their memory is free now).
    pub dropped_pending: u64,
    /// Bytes those held.
    pub freed_bytes: u64,
    /// Device offset where the new log was staged.
    pub scratch: u64,
}

/// The record of a compaction in progress (64 bytes at [`COMPACT_RECORD_OFFSET`]): magic u64
/// @0, fs uuid @8, scratch offset u64 @24, length u64 @32, crc32 of the staged bytes u64 @40,
/// zero @48, crc32 of [0, 56) u64 @56.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactRecord {
    pub fs_uuid: UuidBytes,
    pub scratch: u64,
    pub len: u64,
    pub image_crc: u64,
}

impl CompactRecord {
    /// The 64 on-media bytes.
    pub fn encode(&self) -> [u8; COMPACT_RECORD_SIZE] {
        let mut b = [0u8; COMPACT_RECORD_SIZE];
        b[0..8].copy_from_slice(&COMPACT_MAGIC.to_le_bytes());
        b[8..24].copy_from_slice(&self.fs_uuid);
        b[24..32].copy_from_slice(&self.scratch.to_le_bytes());
        b[32..40].copy_from_slice(&self.len.to_le_bytes());
        b[40..48].copy_from_slice(&self.image_crc.to_le_bytes());
        let crc = crc32(&b[..56]) as u64;
        b[56..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A valid record, or `None` (zeroes, a torn or foreign record).
    pub fn decode(b: &[u8]) -> Option<CompactRecord> {
        if b.len() < COMPACT_RECORD_SIZE
            || get_u64_le(b, 0) != COMPACT_MAGIC
            || get_u64_le(b, 56) != crc32(&b[..56]) as u64
            || b[48..56].iter().any(|&c| c != 0)
        {
            return None;
        }
        let mut fs_uuid = [0u8; 16];
        fs_uuid.copy_from_slice(&b[8..24]);
        Some(CompactRecord {
            fs_uuid,
            scratch: get_u64_le(b, 24),
            len: get_u64_le(b, 32),
            image_crc: get_u64_le(b, 40),
        })
    }
}

fn get_u64_le(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Reads the record of a compaction in progress, if any.
pub fn read_record(media: &Media, sb: &Superblock) -> Option<CompactRecord> {
    let mut b = [0u8; COMPACT_RECORD_SIZE];
    media.read_fresh(COMPACT_RECORD_OFFSET, &mut b).ok()?;
    CompactRecord::decode(&b).filter(|r| r.fs_uuid == sb.fs_uuid)
}

/// Copies a staged log over the log: entries first, header last, each durable.
fn install(media: &Media, image: &[u8]) -> Result<()> {
    media.write_durable(
        LOG_OFFSET + LOG_HEADER_SIZE as u64,
        &image[LOG_HEADER_SIZE..],
    )?;
    media.write_durable(LOG_OFFSET, &image[..LOG_HEADER_SIZE])?;
    Ok(())
}

/// Checks that `image` is a whole log of `sb`'s geometry: a valid header and as many entries as
/// it counts.
fn check_image(sb: &Superblock, image: &[u8]) -> Result<LogHeader> {
    let h = LogHeader::decode(image, sb.log_len)?;
    let want = LOG_HEADER_SIZE as u64 + h.next_index() * LOG_ENTRY_SIZE as u64;
    if image.len() as u64 != want {
        return Err(MetaError::CannotCompact(format!(
            "the new log is {} bytes, its header counts {} entries",
            image.len(),
            h.next_index()
        )));
    }
    Ok(h)
}

/// Steps 1 to 4 of the switch (module doc). `old_entries` is the length of the log being
/// replaced: the entries past the new end are zeroed afterwards (not needed for correctness:
/// nothing reads past the header's count).
pub(crate) fn switch(
    media: &Media,
    sb: &Superblock,
    scratch: u64,
    image: &[u8],
    old_entries: u64,
) -> Result<()> {
    let h = check_image(sb, image)?;
    media.write_durable(scratch, image)?;
    let rec = CompactRecord {
        fs_uuid: sb.fs_uuid,
        scratch,
        len: image.len() as u64,
        image_crc: crc32(image) as u64,
    };
    media.write_durable(COMPACT_RECORD_OFFSET, &rec.encode())?;
    install(media, image)?;
    media.write_durable(COMPACT_RECORD_OFFSET, &[0u8; COMPACT_RECORD_SIZE])?;
    if old_entries > h.next_index() {
        let from = LOG_OFFSET + image.len() as u64;
        let len = (old_entries - h.next_index()) * LOG_ENTRY_SIZE as u64;
        media.zero(from, len)?;
        media.sync(from, len)?;
    }
    Ok(())
}

/// Run by every opener before playing: finishes an interrupted compaction (the master with the
/// device or image open read-write) or refuses to play a log that may be half copied.
pub(crate) fn recover(fs: &mut Famfs) -> Result<()> {
    let sb = fs.superblock().clone();
    let Some(rec) = read_record(fs.media(), &sb) else {
        return Ok(());
    };
    let media = fs.media();
    let can_finish = media.access() == Access::ReadWrite
        && media.has_data()
        && fs.role() == Role::Master
        && rec.len <= LOG_HEADER_SIZE as u64 + sb.log_geometry().capacity() * LOG_ENTRY_SIZE as u64;
    if !can_finish {
        return Err(MetaError::CompactionInterrupted {
            scratch: rec.scratch,
        });
    }
    let _lock = media.lock_fs(&sb.fs_uuid)?;
    let mut image = vec![0u8; rec.len as usize];
    media.read_fresh(rec.scratch, &mut image)?;
    if crc32(&image) as u64 != rec.image_crc {
        return Err(MetaError::CannotCompact(format!(
            "an interrupted compaction left a record naming a new log at {:#x} whose bytes are damaged; the log itself may be half copied: run `famfs fsck`",
            rec.scratch
        )));
    }
    check_image(&sb, &image)?;
    install(media, &image)?;
    media.write_durable(COMPACT_RECORD_OFFSET, &[0u8; COMPACT_RECORD_SIZE])?;
    Ok(())
}
