use thiserror::Error;

/// Everything that can be wrong with bytes read from (or about to be written to) a famfs device.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    #[error("{what}: need {need} bytes, only {have} available (truncated device or file?)")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error(
        "bad superblock magic {found:#x} (expected {:#x}): not a famfs file system",
        crate::SB_MAGIC
    )]
    BadMagic { found: u64 },
    #[error(
        "unsupported superblock version {found} (expected {}, or {} once files were deleted)",
        crate::SB_VERSION,
        crate::SB_VERSION_DELETE
    )]
    BadVersion { found: u64 },
    #[error("superblock crc mismatch: stored {stored:#x}, computed {computed:#x}")]
    BadSuperblockCrc { stored: u64, computed: u64 },
    #[error("bad allocation unit {found:#x} (expected 0x200000 or 0x1000)")]
    BadAllocUnit { found: u64 },
    #[error("not a secondary superblock (sb_flags lacks the secondary bit)")]
    NotSecondary,
    #[error("a secondary superblock must have no log (found log offset {log_offset:#x}, length {log_len:#x})")]
    SecondaryWithLog { log_offset: u64, log_len: u64 },
    #[error("bad log offset {found:#x} (expected 0x200000)")]
    BadLogOffset { found: u64 },
    #[error("bad log length {found:#x}: must be a power of two of at least 8 MiB")]
    BadLogLen { found: u64 },
    #[error("device of {device_size} bytes too small for a log ending at {log_end}")]
    DeviceTooSmall { device_size: u64, log_end: u64 },
    #[error("bad log magic {found:#x} (expected {:#x})", crate::LOG_MAGIC)]
    BadLogMagic { found: u64 },
    #[error("log header crc mismatch: stored {stored:#x}, computed {computed:#x}")]
    BadLogHeaderCrc { stored: u64, computed: u64 },
    #[error("log header length {found:#x} differs from the superblock's log_len {expected:#x}")]
    LogLenMismatch { found: u64, expected: u64 },
    #[error("log header last_index {found} wrong for its length (expected {expected})")]
    BadLastIndex { found: u64, expected: u64 },
    #[error("log counters past the end of the log: next_index {next_index}, capacity {capacity}")]
    CountersPastEnd { next_index: u64, capacity: u64 },
    #[error("log entry {index}: crc mismatch (stored {stored:#x}, computed {computed:#x})")]
    BadEntryCrc {
        index: u64,
        stored: u64,
        computed: u64,
    },
    #[error("log entry {index}: seqnum {seqnum} does not match its index")]
    SeqnumMismatch { index: u64, seqnum: u64 },
    #[error("log entry {index}: unknown or unsupported entry type {found}")]
    BadEntryType { index: u64, found: u32 },
    #[error("path is empty")]
    PathEmpty,
    #[error(
        "path of {len} bytes is too long (at most {} bytes)",
        crate::MAX_RELPATH
    )]
    PathTooLong { len: usize },
    #[error("path is not relative to the file system root (it starts with '/')")]
    PathAbsolute,
    #[error("path contains a NUL byte")]
    PathNul,
    #[error("path field is not NUL-terminated")]
    PathNotTerminated,
    #[error("path component {0:?} is not allowed ('.', '..' and empty components are refused)")]
    PathBadComponent(String),
    #[error("path is not valid UTF-8")]
    PathNotUtf8,
    #[error("extent at offset {offset:#x} length {len:#x} is not 2 MiB aligned")]
    ExtentMisaligned { offset: u64, len: u64 },
    #[error("extent at offset 0 (that is the superblock)")]
    ExtentAtZero,
    #[error("extent [{offset:#x}, +{len:#x}) wraps past the end of the 64-bit address space")]
    ExtentOverflow { offset: u64, len: u64 },
    #[error("extent of length 0")]
    ExtentEmpty,
    #[error("extent [{offset:#x}, +{len:#x}) goes beyond the device end {device_size:#x}")]
    ExtentBeyondDevice {
        offset: u64,
        len: u64,
        device_size: u64,
    },
    #[error("unknown fmap extent type {0}")]
    BadExtentType(u32),
    #[error("bad fmap extent count {0} (1 to 16 simple extents, or exactly 1 interleaved extent)")]
    BadExtentCount(u32),
    #[error("bad strip count {0} (1 to 16)")]
    BadStripCount(u64),
    #[error("bad chunk size {0:#x}: must be a non-zero multiple of 2 MiB")]
    BadChunkSize(u64),
    #[error("file size 0 is not allowed")]
    FileSizeZero,
    #[error("fmap covers {covered} bytes, less than the file size {size}")]
    FmapTooSmall { size: u64, covered: u64 },
    #[error("DELETE entry: {0}")]
    BadDelete(String),
    #[error("RECLAIM entry: {0}")]
    BadReclaim(String),
}

impl FormatError {
    /// True for errors meaning the bytes of a log entry are not what was written (crc, seqnum,
    /// truncation), as opposed to an intact entry with invalid content.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            FormatError::BadEntryCrc { .. }
                | FormatError::SeqnumMismatch { .. }
                | FormatError::Truncated { .. }
        )
    }
}
