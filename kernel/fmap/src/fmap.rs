//! The famfs fmap message: parse, validate, resolve. (The encoder is in
//! `encode.rs`, which user space uses and the kernel module does not compile.)
//!
//! This file is self-contained on purpose: it names nothing but `core::`, so
//! the kernel module includes it with `#[path = "../fmap/src/fmap.rs"] mod
//! fmap;` while user space gets it through the `famfs-fmap` crate. It never
//! allocates and never panics, whatever bytes it is given: every read goes
//! through `get`, every sum and product through `checked_*`.
//!
//! # Wire format (all integers little-endian)
//!
//! A 32-byte header:
//!
//! | offset | field        | size | value                                  |
//! |--------|--------------|------|----------------------------------------|
//! | 0      | file_type    | 1    | 0 regular, 1 superblock, 2 log          |
//! | 1      | reserved     | 1    | 0                                      |
//! | 2      | fmap_version | 2    | 1                                      |
//! | 4      | ext_type     | 4    | 0 simple, 1 interleaved                 |
//! | 8      | nextents     | 4    | number of (simple or interleaved) extents |
//! | 12     | reserved0    | 4    | 0, or the total message length          |
//! | 16     | file_size    | 8    | bytes                                  |
//! | 24     | reserved1    | 8    | 0                                      |
//!
//! then `nextents` extents. A simple extent is 24 bytes: `devindex` u32,
//! reserved u32, `offset` u64, `len` u64. An interleaved extent is a 24-byte
//! head — `nstrips` u32, `chunk_size` u32, `nbytes` u64, reserved u64 —
//! followed by `nstrips` simple extents, its strips.
//!
//! # Validation rules ([`Fmap::parse`])
//!
//! Each rule has its own [`FmapError`] variant, named in brackets.
//!
//! 1. The message is at most [`MAX_MSG_LEN`] (one page) [`TooLarge`], at least
//!    a header [`TooShort`], holds every extent the counts declare
//!    [`Truncated`] and nothing after them [`TrailingBytes`].
//! 2. `fmap_version` is [`FMAP_VERSION`] [`BadVersion`]; `file_type` is 0, 1
//!    or 2 [`BadFileType`]; `ext_type` is 0 or 1 [`BadExtType`].
//! 3. Every reserved field is zero, except `reserved0`, which may also equal
//!    the message length (a later protocol draft stores it there)
//!    [`ReservedNonZero`].
//! 4. `1 <= nextents <= MAX_EXTENTS` [`NoExtents`], [`TooManyExtents`];
//!    `1 <= nstrips <= MAX_STRIPS` [`NoStrips`], [`TooManyStrips`].
//! 5. Every simple extent and strip: `devindex < MAX_DAXDEVS`
//!    [`DevIndexOutOfRange`]; `len != 0` [`ZeroLength`]; `offset` and `len`
//!    multiples of [`ALIGN`] [`Misaligned`]; `offset + len` fits in a u64
//!    [`Overflow`].
//! 6. Every interleaved extent: `chunk_size` a nonzero multiple of [`ALIGN`]
//!    [`BadChunkSize`]; `nbytes != 0` [`ZeroLength`]; each strip long enough
//!    for the chunks that `nbytes` sends to it [`InconsistentInterleave`]:
//!    with `chunks = ceil(nbytes / chunk_size)`, strip `s` receives
//!    `chunks / nstrips` chunks, plus one if `s < chunks % nstrips`, and its
//!    `len` must be at least that many chunk sizes ([`dealt_chunks`]; the same
//!    as `nbytes <= interleave_capacity(..)` of the strips, the capacity rule
//!    user space uses for on-media maps). `nbytes` itself need not
//!    be aligned (the C famfs tools store the file size there), but an
//!    interleaved extent that is followed by another must end on an [`ALIGN`]
//!    boundary [`Misaligned`], so that every extent starts 2 MiB-aligned in
//!    the file. Strips need not have equal lengths, nor lengths that are
//!    multiples of `chunk_size`: slack at a strip's end is never addressed.
//! 7. The extents' lengths (`len`, or `nbytes` for interleaved extents) add up
//!    without overflow [`Overflow`] to at least `file_size` [`ShortMap`].
//!
//! [`Fmap::check_devices`] adds the checks that need the device table: every
//! device named exists [`UnknownDevice`] and holds the whole extent or strip
//! [`BeyondDevice`].
//!
//! [`TooLarge`]: FmapError::TooLarge
//! [`TooShort`]: FmapError::TooShort
//! [`Truncated`]: FmapError::Truncated
//! [`TrailingBytes`]: FmapError::TrailingBytes
//! [`BadVersion`]: FmapError::BadVersion
//! [`BadFileType`]: FmapError::BadFileType
//! [`BadExtType`]: FmapError::BadExtType
//! [`ReservedNonZero`]: FmapError::ReservedNonZero
//! [`NoExtents`]: FmapError::NoExtents
//! [`TooManyExtents`]: FmapError::TooManyExtents
//! [`NoStrips`]: FmapError::NoStrips
//! [`TooManyStrips`]: FmapError::TooManyStrips
//! [`DevIndexOutOfRange`]: FmapError::DevIndexOutOfRange
//! [`ZeroLength`]: FmapError::ZeroLength
//! [`Misaligned`]: FmapError::Misaligned
//! [`Overflow`]: FmapError::Overflow
//! [`BadChunkSize`]: FmapError::BadChunkSize
//! [`InconsistentInterleave`]: FmapError::InconsistentInterleave
//! [`ShortMap`]: FmapError::ShortMap
//! [`UnknownDevice`]: FmapError::UnknownDevice
//! [`BeyondDevice`]: FmapError::BeyondDevice
//!
//! # Resolution
//!
//! Extents are laid end to end in the file in message order. A simple extent
//! maps its range linearly. An interleaved extent cuts its range into
//! `chunk_size` chunks and deals them round-robin to its strips: chunk `c`
//! lives in strip `c % nstrips`, at `(c / nstrips) * chunk_size` from the
//! strip's start ([`locate_chunk`]). This interleave rule (locate, deal,
//! capacity) is the one layout rule of famfs-rs: user space's on-media map
//! (famfs-format), allocator and fsck take it from here too.

#![forbid(unsafe_code)]

use core::fmt;

/// Alignment of every device offset, length and chunk size: 2 MiB, the PMD
/// size on x86-64 and arm64 with 4 KiB pages, so that huge-page faults work.
pub const ALIGN: u64 = 2 << 20;
/// The only `fmap_version` understood.
pub const FMAP_VERSION: u16 = 1;
/// Size of the message header.
pub const HEADER_LEN: usize = 32;
/// Size of a simple extent, and of an interleaved extent's head.
pub const EXTENT_LEN: usize = 24;
/// Most extents in one message.
pub const MAX_EXTENTS: u32 = 32;
/// Most strips in one interleaved extent.
pub const MAX_STRIPS: u32 = 32;
/// Largest message: one page, as a FUSE reply in the posted protocol.
pub const MAX_MSG_LEN: usize = 4096;
/// Size of the daxdev table: a device index is below this.
pub const MAX_DAXDEVS: u32 = 64;

/// Linux errno values (asm-generic numbering, as on x86-64 and arm64).
pub mod errno {
    /// Input/output error.
    pub const EIO: i32 = 5;
    /// No such device or address.
    pub const ENXIO: i32 = 6;
    /// Argument list too long.
    pub const E2BIG: i32 = 7;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Result too large (for a buffer too small to hold a result).
    pub const ERANGE: i32 = 34;
    /// Value too large for defined data type.
    pub const EOVERFLOW: i32 = 75;
}

/// Why a message was refused: one variant per rule of the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FmapError {
    /// Shorter than the 32-byte header.
    TooShort,
    /// Ends before the extents its counts declare.
    Truncated,
    /// Bytes left over after the last extent.
    TrailingBytes,
    /// Longer than [`MAX_MSG_LEN`].
    TooLarge,
    /// `fmap_version` is not [`FMAP_VERSION`].
    BadVersion,
    /// `file_type` is not 0, 1 or 2.
    BadFileType,
    /// `ext_type` is not 0 or 1, or (encoder) an extent of the other type
    /// was added.
    BadExtType,
    /// A reserved field is not zero.
    ReservedNonZero,
    /// `nextents` is zero.
    NoExtents,
    /// `nextents` exceeds [`MAX_EXTENTS`].
    TooManyExtents,
    /// An interleaved extent has no strips.
    NoStrips,
    /// `nstrips` exceeds [`MAX_STRIPS`].
    TooManyStrips,
    /// An offset or length is not a multiple of [`ALIGN`], or an interleaved
    /// extent that is not the last ends off an [`ALIGN`] boundary.
    Misaligned,
    /// An extent, strip or interleaved extent has length zero.
    ZeroLength,
    /// A sum or product does not fit in a u64.
    Overflow,
    /// The extents cover less than `file_size`.
    ShortMap,
    /// `chunk_size` is zero or not a multiple of [`ALIGN`].
    BadChunkSize,
    /// A strip is too short for the chunks `nbytes` sends to it.
    InconsistentInterleave,
    /// A device index is at least [`MAX_DAXDEVS`].
    DevIndexOutOfRange,
    /// ([`Fmap::check_devices`]) no device at that index.
    UnknownDevice,
    /// ([`Fmap::check_devices`]) an extent reaches past its device's end.
    BeyondDevice,
    /// (encoder) the output buffer is too small.
    BufferTooSmall,
}

impl FmapError {
    /// The errno (positive) the kernel returns for this error, negated.
    ///
    /// | error                                          | errno       |
    /// |------------------------------------------------|-------------|
    /// | `TooLarge`                                     | `E2BIG`     |
    /// | `Overflow`                                     | `EOVERFLOW` |
    /// | `DevIndexOutOfRange`, `UnknownDevice`, `BeyondDevice` | `ENXIO` |
    /// | `BufferTooSmall`                               | `ERANGE`    |
    /// | every other (a malformed message)              | `EINVAL`    |
    pub const fn errno(&self) -> i32 {
        match self {
            FmapError::TooLarge => errno::E2BIG,
            FmapError::Overflow => errno::EOVERFLOW,
            FmapError::DevIndexOutOfRange | FmapError::UnknownDevice | FmapError::BeyondDevice => {
                errno::ENXIO
            }
            FmapError::BufferTooSmall => errno::ERANGE,
            FmapError::TooShort
            | FmapError::Truncated
            | FmapError::TrailingBytes
            | FmapError::BadVersion
            | FmapError::BadFileType
            | FmapError::BadExtType
            | FmapError::ReservedNonZero
            | FmapError::NoExtents
            | FmapError::TooManyExtents
            | FmapError::NoStrips
            | FmapError::TooManyStrips
            | FmapError::Misaligned
            | FmapError::ZeroLength
            | FmapError::ShortMap
            | FmapError::BadChunkSize
            | FmapError::InconsistentInterleave => errno::EINVAL,
        }
    }

    /// A short English description, for log messages.
    pub const fn as_str(&self) -> &'static str {
        match self {
            FmapError::TooShort => "fmap shorter than its header",
            FmapError::Truncated => "fmap truncated",
            FmapError::TrailingBytes => "bytes after the last extent",
            FmapError::TooLarge => "fmap larger than a page",
            FmapError::BadVersion => "unknown fmap version",
            FmapError::BadFileType => "unknown file type",
            FmapError::BadExtType => "unknown or mixed extent type",
            FmapError::ReservedNonZero => "reserved field not zero",
            FmapError::NoExtents => "no extents",
            FmapError::TooManyExtents => "too many extents",
            FmapError::NoStrips => "interleaved extent without strips",
            FmapError::TooManyStrips => "too many strips",
            FmapError::Misaligned => "offset or length not 2 MiB aligned",
            FmapError::ZeroLength => "zero-length extent",
            FmapError::Overflow => "arithmetic overflow",
            FmapError::ShortMap => "extents shorter than the file size",
            FmapError::BadChunkSize => "chunk size zero or not 2 MiB aligned",
            FmapError::InconsistentInterleave => "strip too short for the interleave",
            FmapError::DevIndexOutOfRange => "device index out of range",
            FmapError::UnknownDevice => "no such device",
            FmapError::BeyondDevice => "extent beyond the end of its device",
            FmapError::BufferTooSmall => "buffer too small",
        }
    }
}

impl fmt::Display for FmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of famfs file a map describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// An ordinary file.
    Regular,
    /// The famfs superblock file.
    Superblock,
    /// The famfs metadata log file.
    Log,
}

impl FileType {
    /// Decodes the wire value.
    pub const fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(FileType::Regular),
            1 => Some(FileType::Superblock),
            2 => Some(FileType::Log),
            _ => None,
        }
    }

    /// The wire value.
    pub const fn to_raw(self) -> u8 {
        match self {
            FileType::Regular => 0,
            FileType::Superblock => 1,
            FileType::Log => 2,
        }
    }
}

/// The kind of every extent in a message (one kind per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtType {
    /// Simple extents.
    Simple,
    /// Interleaved extents.
    Interleaved,
}

impl ExtType {
    /// Decodes the wire value.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(ExtType::Simple),
            1 => Some(ExtType::Interleaved),
            _ => None,
        }
    }

    /// The wire value.
    pub const fn to_raw(self) -> u32 {
        match self {
            ExtType::Simple => 0,
            ExtType::Interleaved => 1,
        }
    }
}

/// The decoded header fields that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FmapHeader {
    /// Kind of file.
    pub file_type: FileType,
    /// Kind of every extent.
    pub ext_type: ExtType,
    /// Number of extents (simple or interleaved).
    pub nextents: u32,
    /// File size in bytes.
    pub file_size: u64,
}

/// A contiguous range of one device: a simple extent, or a strip of an
/// interleaved extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleExtent {
    /// Index in the daxdev table.
    pub devindex: u32,
    /// Byte offset in the device.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// An interleaved extent of a validated message, borrowing its strips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterleavedExtent<'a> {
    /// Number of strips.
    pub nstrips: u32,
    /// Bytes per chunk.
    pub chunk_size: u32,
    /// Bytes of the file this extent covers.
    pub nbytes: u64,
    strips: &'a [u8],
}

impl<'a> InterleavedExtent<'a> {
    /// The strips, in order.
    pub fn strips(&self) -> Strips<'a> {
        Strips { rest: self.strips }
    }

    /// Strip `index`, if it exists.
    pub fn strip(&self, index: u32) -> Option<SimpleExtent> {
        let at = usize::try_from(index).ok()?.checked_mul(EXTENT_LEN)?;
        read_simple(self.strips, at).map(|raw| raw.extent)
    }

    /// Resolves `local`, an offset from this extent's start in the file.
    fn resolve(&self, local: u64) -> Option<Resolved> {
        if local >= self.nbytes {
            return None;
        }
        let pos = locate_chunk(u64::from(self.chunk_size), u64::from(self.nstrips), local)?;
        let strip = self.strip(u32::try_from(pos.strip).ok()?)?;
        let in_strip = pos.in_strip;
        let len = min(pos.to_chunk_end, self.nbytes.checked_sub(local)?);
        // Never hand out a range outside the strip, even for a map that
        // `Fmap::from_trusted` accepted without validation.
        if in_strip.checked_add(len)? > strip.len || strip.offset.checked_add(strip.len).is_none() {
            return None;
        }
        Some(Resolved {
            devindex: strip.devindex,
            dev_offset: strip.offset.checked_add(in_strip)?,
            len,
        })
    }
}

// ---- the interleave rule ----------------------------------------------------
//
// One rule for where the bytes of an interleaved layout live and how many bytes its strips hold,
// used by the validation and resolution below (the kernel's), and by user space's on-media map
// (famfs-format `Fmap::capacity`/`resolve`), allocator and fsck through this crate. It is the
// C famfs rule (famfs_kfmap.h): the file is cut into `ceil(nbytes / chunk_size)` chunks dealt
// round-robin to the strips; chunk `c` is in strip `c % nstrips` at `(c / nstrips) * chunk_size`.
// A strip must hold every chunk dealt to it, whole; strips may differ in length.

/// Where an offset of an interleaved layout lies ([`locate_chunk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPos {
    /// Index of the strip.
    pub strip: u64,
    /// Offset from the strip's start.
    pub in_strip: u64,
    /// Bytes from there to the end of the chunk (contiguous memory).
    pub to_chunk_end: u64,
}

/// Locates `local`, an offset from an interleaved extent's start in the file, among `nstrips`
/// strips of `chunk_size` chunks (`None` if either is zero, or on overflow). Whether the strip is
/// long enough is the caller's check ([`interleave_capacity`] or the strip's `len`).
pub fn locate_chunk(chunk_size: u64, nstrips: u64, local: u64) -> Option<ChunkPos> {
    let chunk = local.checked_div(chunk_size)?;
    let within = local.checked_rem(chunk_size)?;
    let stripe = chunk.checked_div(nstrips)?;
    Some(ChunkPos {
        strip: chunk.checked_rem(nstrips)?,
        in_strip: stripe.checked_mul(chunk_size)?.checked_add(within)?,
        to_chunk_end: chunk_size.checked_sub(within)?,
    })
}

/// The number of chunks of `chunk_size` that `nbytes` bytes need: `ceil(nbytes / chunk_size)`
/// (`None` for a zero chunk size or on overflow).
pub fn chunks_for(nbytes: u64, chunk_size: u64) -> Option<u64> {
    let whole = nbytes.checked_div(chunk_size)?;
    let partial = nbytes.checked_rem(chunk_size)?;
    whole.checked_add(u64::from(partial != 0))
}

/// How many of the chunks `0..chunks`, dealt round-robin to `nstrips` strips, land in strip
/// `strip`: `chunks / nstrips`, plus one if `strip < chunks % nstrips` (`None` for no strips).
pub fn dealt_chunks(chunks: u64, nstrips: u64, strip: u64) -> Option<u64> {
    let whole = chunks.checked_div(nstrips)?;
    let extra = chunks.checked_rem(nstrips)?;
    whole.checked_add(u64::from(strip < extra))
}

/// The capacity of an interleaved layout: the most bytes whose chunks, dealt round-robin, each
/// land whole inside their strip, given the strips' lengths in order (0 for no strips or a zero
/// chunk size; saturated at `u64::MAX`). A byte count `nbytes` satisfies the per-strip rule of
/// validation rule 6 exactly when `nbytes <= interleave_capacity(..)`.
///
/// With `k` the fewest whole chunks any strip holds, every strip takes `k` rounds, and one more
/// chunk goes to each strip of the leading run of strips that hold more than `k`.
pub fn interleave_capacity(chunk_size: u64, strip_lens: impl Iterator<Item = u64> + Clone) -> u64 {
    let mut fewest: Option<u64> = None;
    for len in strip_lens.clone() {
        let Some(k) = len.checked_div(chunk_size) else {
            return 0;
        };
        fewest = Some(fewest.map_or(k, |f| min(f, k)));
    }
    let Some(k) = fewest else {
        return 0;
    };
    let mut nstrips: u64 = 0;
    let mut leading: u64 = 0;
    let mut in_run = true;
    for len in strip_lens {
        in_run = in_run && len.checked_div(chunk_size).is_some_and(|n| n > k);
        leading = leading.saturating_add(u64::from(in_run));
        nstrips = nstrips.saturating_add(1);
    }
    nstrips
        .saturating_mul(k)
        .saturating_add(leading)
        .saturating_mul(chunk_size)
}

/// One extent of a validated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent<'a> {
    /// A simple extent.
    Simple(SimpleExtent),
    /// An interleaved extent and its strips.
    Interleaved(InterleavedExtent<'a>),
}

impl Extent<'_> {
    /// Bytes of the file this extent covers.
    pub fn file_len(&self) -> u64 {
        match self {
            Extent::Simple(e) => e.len,
            Extent::Interleaved(ie) => ie.nbytes,
        }
    }

    /// Calls `f` on the extent itself (simple) or on each strip.
    fn for_each_range<E>(&self, mut f: impl FnMut(SimpleExtent) -> Result<(), E>) -> Result<(), E> {
        match self {
            Extent::Simple(e) => f(*e),
            Extent::Interleaved(ie) => ie.strips().try_for_each(f),
        }
    }

    /// Resolves `local`, an offset from this extent's start in the file.
    fn resolve(&self, local: u64) -> Option<Resolved> {
        match self {
            // The end check matters only for unvalidated maps (`from_trusted`):
            // a range that wraps around the address space is never returned.
            Extent::Simple(e) if local < e.len && e.offset.checked_add(e.len).is_some() => {
                Some(Resolved {
                    devindex: e.devindex,
                    dev_offset: e.offset.checked_add(local)?,
                    len: e.len.checked_sub(local)?,
                })
            }
            Extent::Simple(_) => None,
            Extent::Interleaved(ie) => ie.resolve(local),
        }
    }
}

/// Where a file offset lives, and how far the memory stays contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// Index in the daxdev table.
    pub devindex: u32,
    /// Byte offset in the device.
    pub dev_offset: u64,
    /// Bytes from `dev_offset` on that follow the file contiguously: to the
    /// end of the simple extent, or of the chunk (and never past the
    /// interleaved extent's `nbytes`). Never zero.
    pub len: u64,
}

/// A validated fmap message, borrowed: reading it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fmap<'a> {
    bytes: &'a [u8],
    header: FmapHeader,
}

impl<'a> Fmap<'a> {
    /// Validates `bytes` as one whole message (see the module docs for the
    /// rules) and returns a view of it.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FmapError> {
        if bytes.len() > MAX_MSG_LEN {
            return Err(FmapError::TooLarge);
        }
        let header = parse_header(bytes)?;
        let mut pos = HEADER_LEN;
        let mut mapped: u64 = 0;
        for _ in 0..header.nextents {
            let len = match header.ext_type {
                ExtType::Simple => {
                    let raw = read_simple(bytes, pos).ok_or(FmapError::Truncated)?;
                    check_simple(&raw)?;
                    raw.extent.len
                }
                ExtType::Interleaved => {
                    // The previous interleaved extent must end aligned.
                    if mapped % ALIGN != 0 {
                        return Err(FmapError::Misaligned);
                    }
                    check_interleaved(bytes, pos)?
                }
            };
            pos = next_extent(bytes, pos, header.ext_type).ok_or(FmapError::Truncated)?;
            mapped = mapped.checked_add(len).ok_or(FmapError::Overflow)?;
        }
        if pos != bytes.len() {
            return Err(FmapError::TrailingBytes);
        }
        if mapped < header.file_size {
            return Err(FmapError::ShortMap);
        }
        Ok(Fmap { bytes, header })
    }

    /// A view of `bytes` without validation, for a caller that keeps bytes
    /// [`Fmap::parse`] accepted earlier and wants to skip the re-check.
    ///
    /// Memory-safe and panic-free for any bytes, and resolution still never
    /// returns a range outside an extent or strip; but on bytes that were not
    /// validated the answers are unspecified.
    pub fn from_trusted(bytes: &'a [u8]) -> Self {
        let byte = |at: usize| bytes.get(at).copied().unwrap_or(0);
        let header = FmapHeader {
            file_type: FileType::from_raw(byte(0)).unwrap_or(FileType::Regular),
            ext_type: read_u32(bytes, 4)
                .and_then(ExtType::from_raw)
                .unwrap_or(ExtType::Simple),
            nextents: read_u32(bytes, 8).unwrap_or(0),
            file_size: read_u64(bytes, 16).unwrap_or(0),
        };
        Fmap { bytes, header }
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The decoded header.
    pub fn header(&self) -> FmapHeader {
        self.header
    }

    /// File size in bytes.
    pub fn file_size(&self) -> u64 {
        self.header.file_size
    }

    /// Kind of file.
    pub fn file_type(&self) -> FileType {
        self.header.file_type
    }

    /// Kind of every extent.
    pub fn ext_type(&self) -> ExtType {
        self.header.ext_type
    }

    /// Number of extents (simple or interleaved).
    pub fn nextents(&self) -> u32 {
        self.header.nextents
    }

    /// The extents in file order.
    pub fn extents(&self) -> Extents<'a> {
        Extents {
            bytes: self.bytes,
            pos: HEADER_LEN,
            remaining: self.header.nextents,
            ext_type: self.header.ext_type,
        }
    }

    /// Bytes of file the extents cover (at least `file_size`).
    pub fn mapped_len(&self) -> u64 {
        self.extents()
            .fold(0u64, |sum, e| sum.saturating_add(e.file_len()))
    }

    /// Resolves file offset `offset`, for any offset below
    /// [`mapped_len`](Self::mapped_len); `None` beyond it.
    pub fn resolve(&self, offset: u64) -> Option<Resolved> {
        let mut start: u64 = 0;
        for extent in self.extents() {
            let end = start.checked_add(extent.file_len())?;
            if offset < end {
                return extent.resolve(offset.checked_sub(start)?);
            }
            start = end;
        }
        None
    }

    /// Like [`resolve`](Self::resolve), but only below `file_size`, and with
    /// `len` clamped so that the range ends at or before `file_size`.
    pub fn resolve_in_file(&self, offset: u64) -> Option<Resolved> {
        let left = self
            .header
            .file_size
            .checked_sub(offset)
            .filter(|&n| n > 0)?;
        let r = self.resolve(offset)?;
        Some(Resolved {
            len: min(r.len, left),
            ..r
        })
    }

    /// Checks that every extent and strip lies inside its device.
    /// `device_size(devindex)` returns the size in bytes of the device at
    /// that index, or `None` if there is none.
    pub fn check_devices(
        &self,
        mut device_size: impl FnMut(u32) -> Option<u64>,
    ) -> Result<(), FmapError> {
        self.for_each_range(|e| {
            let size = device_size(e.devindex).ok_or(FmapError::UnknownDevice)?;
            let end = e.offset.checked_add(e.len).ok_or(FmapError::Overflow)?;
            if end > size {
                return Err(FmapError::BeyondDevice);
            }
            Ok(())
        })
    }

    /// The highest device index named (0 for a map naming none).
    pub fn max_devindex(&self) -> u32 {
        let mut max = 0;
        let _ = self.for_each_range::<()>(|e| {
            max = max.max(e.devindex);
            Ok(())
        });
        max
    }

    /// The set of device indexes named, bit `i` for index `i` (indexes of 64
    /// and above, which a validated map does not have, are left out).
    pub fn device_mask(&self) -> u64 {
        let mut mask = 0u64;
        let _ = self.for_each_range::<()>(|e| {
            mask |= 1u64.checked_shl(e.devindex).unwrap_or(0);
            Ok(())
        });
        mask
    }

    /// Calls `f` on every simple extent and every strip.
    fn for_each_range<E>(&self, mut f: impl FnMut(SimpleExtent) -> Result<(), E>) -> Result<(), E> {
        self.extents().try_for_each(|e| e.for_each_range(&mut f))
    }
}

/// Iterator over the extents of an [`Fmap`].
#[derive(Debug, Clone)]
pub struct Extents<'a> {
    bytes: &'a [u8],
    pos: usize,
    remaining: u32,
    ext_type: ExtType,
}

impl<'a> Iterator for Extents<'a> {
    type Item = Extent<'a>;

    fn next(&mut self) -> Option<Extent<'a>> {
        self.remaining = self.remaining.checked_sub(1)?;
        let extent = match self.ext_type {
            ExtType::Simple => Extent::Simple(read_simple(self.bytes, self.pos)?.extent),
            ExtType::Interleaved => Extent::Interleaved(read_interleaved(self.bytes, self.pos)?.0),
        };
        match next_extent(self.bytes, self.pos, self.ext_type) {
            Some(pos) => self.pos = pos,
            None => self.remaining = 0,
        }
        Some(extent)
    }
}

/// Iterator over the strips of an [`InterleavedExtent`].
#[derive(Debug, Clone)]
pub struct Strips<'a> {
    rest: &'a [u8],
}

impl Iterator for Strips<'_> {
    type Item = SimpleExtent;

    fn next(&mut self) -> Option<SimpleExtent> {
        let raw = read_simple(self.rest, 0)?;
        self.rest = self.rest.get(EXTENT_LEN..).unwrap_or(&[]);
        Some(raw.extent)
    }
}

// ---- decoding helpers -------------------------------------------------------

fn read_u8(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn min(a: u64, b: u64) -> u64 {
    if a < b {
        a
    } else {
        b
    }
}

/// A simple extent together with its reserved field.
struct RawSimple {
    extent: SimpleExtent,
    reserved: u32,
}

fn read_simple(b: &[u8], at: usize) -> Option<RawSimple> {
    Some(RawSimple {
        extent: SimpleExtent {
            devindex: read_u32(b, at)?,
            offset: read_u64(b, at.checked_add(8)?)?,
            len: read_u64(b, at.checked_add(16)?)?,
        },
        reserved: read_u32(b, at.checked_add(4)?)?,
    })
}

/// Reads the interleaved extent at `at` and its reserved field.
fn read_interleaved(b: &[u8], at: usize) -> Option<(InterleavedExtent<'_>, u64)> {
    let nstrips = read_u32(b, at)?;
    let strips_at = at.checked_add(EXTENT_LEN)?;
    let strips_len = usize::try_from(nstrips).ok()?.checked_mul(EXTENT_LEN)?;
    let strips = b.get(strips_at..strips_at.checked_add(strips_len)?)?;
    let ie = InterleavedExtent {
        nstrips,
        chunk_size: read_u32(b, at.checked_add(4)?)?,
        nbytes: read_u64(b, at.checked_add(8)?)?,
        strips,
    };
    Some((ie, read_u64(b, at.checked_add(16)?)?))
}

/// Position of the extent after the one at `at`.
fn next_extent(b: &[u8], at: usize, ext_type: ExtType) -> Option<usize> {
    let strips = match ext_type {
        ExtType::Simple => 0,
        ExtType::Interleaved => usize::try_from(read_u32(b, at)?).ok()?,
    };
    strips
        .checked_add(1)?
        .checked_mul(EXTENT_LEN)?
        .checked_add(at)
}

// ---- validation -------------------------------------------------------------

fn parse_header(b: &[u8]) -> Result<FmapHeader, FmapError> {
    let too_short = FmapError::TooShort;
    if b.len() < HEADER_LEN {
        return Err(too_short);
    }
    if read_u16(b, 2).ok_or(too_short)? != FMAP_VERSION {
        return Err(FmapError::BadVersion);
    }
    let file_type =
        FileType::from_raw(read_u8(b, 0).ok_or(too_short)?).ok_or(FmapError::BadFileType)?;
    let ext_type =
        ExtType::from_raw(read_u32(b, 4).ok_or(too_short)?).ok_or(FmapError::BadExtType)?;
    let reserved = read_u8(b, 1).ok_or(too_short)?;
    let reserved0 = read_u32(b, 12).ok_or(too_short)?;
    let reserved1 = read_u64(b, 24).ok_or(too_short)?;
    // A later draft puts the message length in reserved0: accept that too.
    let reserved0_ok = reserved0 == 0 || usize::try_from(reserved0).ok() == Some(b.len());
    if reserved != 0 || !reserved0_ok || reserved1 != 0 {
        return Err(FmapError::ReservedNonZero);
    }
    let nextents = read_u32(b, 8).ok_or(too_short)?;
    if nextents == 0 {
        return Err(FmapError::NoExtents);
    }
    if nextents > MAX_EXTENTS {
        return Err(FmapError::TooManyExtents);
    }
    let file_size = read_u64(b, 16).ok_or(too_short)?;
    Ok(FmapHeader {
        file_type,
        ext_type,
        nextents,
        file_size,
    })
}

/// Rule 5: one simple extent or strip.
fn check_simple(raw: &RawSimple) -> Result<(), FmapError> {
    let e = &raw.extent;
    if raw.reserved != 0 {
        return Err(FmapError::ReservedNonZero);
    }
    if e.devindex >= MAX_DAXDEVS {
        return Err(FmapError::DevIndexOutOfRange);
    }
    if e.len == 0 {
        return Err(FmapError::ZeroLength);
    }
    if e.offset % ALIGN != 0 || e.len % ALIGN != 0 {
        return Err(FmapError::Misaligned);
    }
    e.offset.checked_add(e.len).ok_or(FmapError::Overflow)?;
    Ok(())
}

/// Rule 6: the interleaved extent at `at`; returns its `nbytes`.
fn check_interleaved(b: &[u8], at: usize) -> Result<u64, FmapError> {
    let nstrips = read_u32(b, at).ok_or(FmapError::Truncated)?;
    if nstrips == 0 {
        return Err(FmapError::NoStrips);
    }
    if nstrips > MAX_STRIPS {
        return Err(FmapError::TooManyStrips);
    }
    let (ie, reserved) = read_interleaved(b, at).ok_or(FmapError::Truncated)?;
    if reserved != 0 {
        return Err(FmapError::ReservedNonZero);
    }
    let chunk_size = u64::from(ie.chunk_size);
    if chunk_size == 0 || chunk_size % ALIGN != 0 {
        return Err(FmapError::BadChunkSize);
    }
    if ie.nbytes == 0 {
        return Err(FmapError::ZeroLength);
    }
    let nstrips = u64::from(nstrips);
    // ceil(nbytes / chunk_size); chunk_size is nonzero here, so only the sum can overflow.
    let chunks = chunks_for(ie.nbytes, chunk_size).ok_or(FmapError::Overflow)?;
    let mut index: u64 = 0;
    for strip in RawStrips(ie.strips) {
        check_simple(&strip)?;
        let strip_chunks = dealt_chunks(chunks, nstrips, index).ok_or(FmapError::NoStrips)?;
        let needed = strip_chunks
            .checked_mul(chunk_size)
            .ok_or(FmapError::InconsistentInterleave)?;
        if strip.extent.len < needed {
            return Err(FmapError::InconsistentInterleave);
        }
        index = index.saturating_add(1);
    }
    Ok(ie.nbytes)
}

/// Strips with their reserved fields, for validation.
struct RawStrips<'a>(&'a [u8]);

impl Iterator for RawStrips<'_> {
    type Item = RawSimple;

    fn next(&mut self) -> Option<RawSimple> {
        let raw = read_simple(self.0, 0)?;
        self.0 = self.0.get(EXTENT_LEN..).unwrap_or(&[]);
        Some(raw)
    }
}
