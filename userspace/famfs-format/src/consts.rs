//! Constants of the on-media format (see Documentation/on-media-format.md).

/// 2 MiB, the allocation unit and the alignment of every extent.
pub const MIB2: u64 = 2 << 20;
/// Superblock magic.
pub const SB_MAGIC: u64 = 0x87b2_82ff;
/// Superblock version; the C tools reject any other value.
pub const SB_VERSION: u64 = 48;
/// Superblock version of a primary whose log may hold DELETE and RECLAIM entries (famfs-rs). The
/// master writes it before the first DELETE entry, so the C tools (which accept exactly 48 and
/// would ignore a DELETE, keeping the file and mapping memory given to another) refuse the file
/// system from then on. Documentation/compatibility.md, "Delete".
pub const SB_VERSION_DELETE: u64 = 49;
/// On-media format major version.
pub const OMF_VER_MAJOR: u32 = 2;
/// On-media format minor version.
pub const OMF_VER_MINOR: u32 = 2;
/// Bytes of the superblock that carry data.
pub const SB_SIZE: usize = 200;
/// Bytes covered by the superblock crc: [0, 96).
pub const SB_CRC_RANGE: usize = 96;
/// The superblock region (the first allocation unit).
pub const SB_REGION_LEN: u64 = MIB2;
/// Where the log starts on the device.
pub const LOG_OFFSET: u64 = 0x20_0000;
/// Default and minimum log length (8 MiB).
pub const DEFAULT_LOG_LEN: u64 = 8 << 20;
/// Smallest log length accepted.
pub const MIN_LOG_LEN: u64 = DEFAULT_LOG_LEN;
/// The allocation unit written by mkfs.
pub const ALLOC_UNIT: u64 = MIB2;
/// The other allocation unit readers accept.
pub const ALLOC_UNIT_4K: u64 = 4096;
/// Smallest device mkfs accepts (4 GiB).
pub const MIN_DEVICE_SIZE: u64 = 4 << 30;
/// Log header magic.
pub const LOG_MAGIC: u64 = 0x0000_0bad_cafe_f00d;
/// Size of the log header.
pub const LOG_HEADER_SIZE: usize = 48;
/// Bytes covered by the log header crc: [0, 24).
pub const LOG_HEADER_CRC_RANGE: usize = 24;
/// Size of one log entry.
pub const LOG_ENTRY_SIZE: usize = 544;
/// Bytes covered by a log entry crc: [0, 536).
pub const LOG_ENTRY_CRC_RANGE: usize = 536;
/// Size of the entry body union.
pub const LOG_ENTRY_BODY_SIZE: usize = 520;
/// Offset of the body inside an entry.
pub const LOG_ENTRY_BODY_OFFSET: usize = 16;
/// Size of the relpath field including its NUL.
pub const RELPATH_FIELD: usize = 80;
/// Longest relpath (the field keeps a terminating NUL).
pub const MAX_RELPATH: usize = RELPATH_FIELD - 1;
/// Size of an encoded fmap.
pub const FMAP_SIZE: usize = 416;
/// Size of a simple extent.
pub const EXTENT_SIZE: usize = 24;
/// Most simple extents in a FILE entry, and most strips of an interleaved extent (the C format's
/// limit). Every on-media map must fit the wire map famfs.ko takes, whose limits are defined once
/// in kernel/fmap: checked here at compile time.
pub const MAX_EXTENTS: usize = 16;
const _: () = assert!(
    MAX_EXTENTS as u32 <= famfs_fmap::MAX_EXTENTS && MAX_EXTENTS as u32 <= famfs_fmap::MAX_STRIPS
);
/// Size of the interleaved extent.
pub const INTERLEAVED_EXTENT_SIZE: usize = 400;
/// Size of the daxdev name field of the superblock.
pub const DAXDEV_NAME_LEN: usize = 64;
