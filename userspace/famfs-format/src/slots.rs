//! Host slots: a table of per-host records in the unused part of the primary device's superblock
//! region, where every host that mounts the file system publishes that it is alive (a heartbeat
//! counter), how far it has played the log, and which deleted files it still holds (see
//! Documentation/on-media-format.md, "Host slots", and design.md, "Hosts and leases").
//!
//! The C famfs tools never read or write these bytes: they use the first 200 bytes of the 2 MiB
//! superblock region (the superblock) and nothing else of it; the C `mkfs.famfs` of some versions
//! zeroes the region, which frees every slot of the file system it replaces. famfs-rs `mkfs.famfs`
//! zeroes the region too. A slot also names the file system it belongs to (its fs uuid), so slots
//! left behind by an earlier file system on the same memory are free.
//!
//! Like the rest of this crate, this module is pure: it encodes and decodes one slot's bytes.
//! Reading the table, claiming a slot and judging liveness are famfs-meta's `hosts` module.

use crate::bytes::{get_arr, get_u32, get_u64, put_u32, put_u64};
use crate::UuidBytes;

/// Where the slot table starts on the primary device: 1 MiB into the 2 MiB superblock region,
/// far from the 200-byte superblock and from anything the C tools define there.
pub const SLOT_TABLE_OFFSET: u64 = 0x10_0000;
/// Size of one slot: a multiple of the 64-byte cache line, so that no two hosts ever write the
/// same line (the memory is not coherent between hosts).
pub const SLOT_SIZE: usize = 1024;
/// Number of slots: the most hosts that can have the file system mounted at once.
pub const SLOT_COUNT: usize = 64;
/// Slot magic: the bytes `famfshst` read as a little-endian u64.
pub const SLOT_MAGIC: u64 = u64::from_le_bytes(*b"famfshst");
/// Slot layout version.
pub const SLOT_VERSION: u32 = 1;
/// Most deleted files one slot lists; a host holding more sets [`SlotFlags::HELD_OVERFLOW`].
pub const SLOT_MAX_HELD: usize = 64;
/// Size of the host name field (NUL-padded; a longer name is cut).
pub const SLOT_HOSTNAME_LEN: usize = 64;
/// Bytes covered by the slot crc: [0, 1016).
pub const SLOT_CRC_RANGE: usize = SLOT_SIZE - 8;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_STATE: usize = 12;
const OFF_FS_UUID: usize = 16;
const OFF_HOST_ID: usize = 32;
const OFF_SYSTEM_UUID: usize = 48;
const OFF_GENERATION: usize = 64;
const OFF_HEARTBEAT: usize = 72;
const OFF_APPLIED: usize = 80;
const OFF_ROLE: usize = 88;
const OFF_FLAGS: usize = 92;
const OFF_LEASE_MS: usize = 96;
const OFF_INTERVAL_MS: usize = 100;
const OFF_PID: usize = 104;
const OFF_NHELD: usize = 108;
const OFF_HOSTNAME: usize = 112;
const OFF_HELD: usize = 192;
const OFF_CRC: usize = SLOT_CRC_RANGE;

/// Device offset of slot `index` (`None` past the table).
pub fn slot_offset(index: usize) -> Option<u64> {
    (index < SLOT_COUNT).then(|| SLOT_TABLE_OFFSET + (index * SLOT_SIZE) as u64)
}

/// The state of a slot that is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Written by a host that is claiming the slot; it becomes [`SlotState::Live`] once the
    /// claim was read back unchanged after the settle time.
    Claiming,
    /// The host has the file system mounted and heartbeats.
    Live,
    /// The host unmounted cleanly: the slot is free, and the host holds nothing.
    Released,
}

impl SlotState {
    fn code(self) -> u32 {
        match self {
            SlotState::Claiming => 1,
            SlotState::Live => 2,
            SlotState::Released => 3,
        }
    }

    fn from_code(c: u32) -> Option<Self> {
        match c {
            1 => Some(SlotState::Claiming),
            2 => Some(SlotState::Live),
            3 => Some(SlotState::Released),
            _ => None,
        }
    }
}

/// The role a host mounted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRole {
    Master,
    Client,
}

impl SlotRole {
    fn code(self) -> u32 {
        match self {
            SlotRole::Master => 1,
            SlotRole::Client => 2,
        }
    }

    fn from_code(c: u32) -> Option<Self> {
        match c {
            1 => Some(SlotRole::Master),
            2 => Some(SlotRole::Client),
            _ => None,
        }
    }
}

impl std::fmt::Display for SlotRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SlotRole::Master => "master",
            SlotRole::Client => "client",
        })
    }
}

/// Slot flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotFlags(pub u32);

impl SlotFlags {
    /// The host serves data through famfs.ko and renews a famfs.ko lease after each heartbeat:
    /// it fences itself (the kernel revokes its files) when it stops heartbeating.
    pub const MODULE_LEASE: u32 = 1 << 0;
    /// The host holds more deleted files than the slot lists: it may hold any of them.
    pub const HELD_OVERFLOW: u32 = 1 << 1;
    /// Every bit defined by this version.
    pub const KNOWN: u32 = Self::MODULE_LEASE | Self::HELD_OVERFLOW;

    /// Whether `bit` is set.
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// One host's slot, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSlot {
    pub state: SlotState,
    /// The file system the slot belongs to.
    pub fs_uuid: UuidBytes,
    /// The host's identity for this mount: a random uuid chosen at every mount.
    pub host_id: UuidBytes,
    /// The host's system uuid (`/opt/famfs/system_uuid`; zero when unknown).
    pub system_uuid: UuidBytes,
    /// Incremented by every claim of this slot.
    pub generation: u64,
    /// Incremented by every heartbeat.
    pub heartbeat: u64,
    /// Log entries the host has played (the index of the next entry it will play).
    pub applied: u64,
    pub role: SlotRole,
    pub flags: SlotFlags,
    /// The host's lease: it fences itself when it has not heartbeaten for this long.
    pub lease_ms: u32,
    /// The host's heartbeat interval.
    pub interval_ms: u32,
    /// The process id of the host's server (informational).
    pub pid: u32,
    /// The host's name (informational; at most [`SLOT_HOSTNAME_LEN`]` - 1` bytes).
    pub hostname: String,
    /// The deleted files the host still holds, by the log index of their delete entry, at most
    /// [`SLOT_MAX_HELD`].
    pub held: Vec<u64>,
}

/// What a slot's bytes hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotContent {
    /// Never written (no magic): free.
    Empty,
    /// A valid slot of another file system (left behind by an earlier one on this memory): free.
    Foreign,
    /// A valid slot of this file system.
    Slot(HostSlot),
    /// The magic is there but the slot is not valid (crc, version, field values): a write in
    /// progress by another host, or damage. Not free: a claimer takes it only once it stayed
    /// unchanged for a lease (as a dead host's slot).
    Corrupt(String),
}

impl HostSlot {
    /// Encodes the slot (crc included).
    pub fn encode(&self) -> [u8; SLOT_SIZE] {
        let mut b = [0u8; SLOT_SIZE];
        put_u64(&mut b, OFF_MAGIC, SLOT_MAGIC);
        put_u32(&mut b, OFF_VERSION, SLOT_VERSION);
        put_u32(&mut b, OFF_STATE, self.state.code());
        b[OFF_FS_UUID..OFF_FS_UUID + 16].copy_from_slice(&self.fs_uuid);
        b[OFF_HOST_ID..OFF_HOST_ID + 16].copy_from_slice(&self.host_id);
        b[OFF_SYSTEM_UUID..OFF_SYSTEM_UUID + 16].copy_from_slice(&self.system_uuid);
        put_u64(&mut b, OFF_GENERATION, self.generation);
        put_u64(&mut b, OFF_HEARTBEAT, self.heartbeat);
        put_u64(&mut b, OFF_APPLIED, self.applied);
        put_u32(&mut b, OFF_ROLE, self.role.code());
        let mut flags = self.flags.0 & SlotFlags::KNOWN;
        let held = if self.held.len() > SLOT_MAX_HELD {
            flags |= SlotFlags::HELD_OVERFLOW;
            &self.held[..SLOT_MAX_HELD]
        } else {
            &self.held[..]
        };
        put_u32(&mut b, OFF_FLAGS, flags);
        put_u32(&mut b, OFF_LEASE_MS, self.lease_ms);
        put_u32(&mut b, OFF_INTERVAL_MS, self.interval_ms);
        put_u32(&mut b, OFF_PID, self.pid);
        put_u32(&mut b, OFF_NHELD, held.len() as u32);
        let name = truncate_utf8(&self.hostname, SLOT_HOSTNAME_LEN - 1);
        b[OFF_HOSTNAME..OFF_HOSTNAME + name.len()].copy_from_slice(name.as_bytes());
        for (i, h) in held.iter().enumerate() {
            put_u64(&mut b, OFF_HELD + 8 * i, *h);
        }
        let crc = crate::crc32(&b[..SLOT_CRC_RANGE]);
        put_u64(&mut b, OFF_CRC, u64::from(crc));
        b
    }

    /// Decodes a slot's bytes as seen by a host of the file system `fs_uuid`. Never panics; `b`
    /// shorter than a slot is [`SlotContent::Corrupt`].
    pub fn decode(b: &[u8], fs_uuid: &UuidBytes) -> SlotContent {
        if b.len() < SLOT_SIZE {
            return SlotContent::Corrupt(format!("truncated: {} of {SLOT_SIZE} bytes", b.len()));
        }
        if get_u64(b, OFF_MAGIC) != SLOT_MAGIC {
            return SlotContent::Empty;
        }
        let stored = get_u64(b, OFF_CRC);
        let computed = u64::from(crate::crc32(&b[..SLOT_CRC_RANGE]));
        if stored != computed {
            return SlotContent::Corrupt(format!(
                "crc mismatch (stored {stored:#x}, computed {computed:#x})"
            ));
        }
        let version = get_u32(b, OFF_VERSION);
        if version != SLOT_VERSION {
            return SlotContent::Corrupt(format!(
                "unknown slot version {version} (this famfs knows {SLOT_VERSION})"
            ));
        }
        let slot_fs: UuidBytes = get_arr(b, OFF_FS_UUID);
        if slot_fs != *fs_uuid {
            return SlotContent::Foreign;
        }
        let Some(state) = SlotState::from_code(get_u32(b, OFF_STATE)) else {
            return SlotContent::Corrupt(format!("bad state {}", get_u32(b, OFF_STATE)));
        };
        let Some(role) = SlotRole::from_code(get_u32(b, OFF_ROLE)) else {
            return SlotContent::Corrupt(format!("bad role {}", get_u32(b, OFF_ROLE)));
        };
        let flags = get_u32(b, OFF_FLAGS);
        if flags & !SlotFlags::KNOWN != 0 {
            return SlotContent::Corrupt(format!("unknown flags {flags:#x}"));
        }
        let nheld = get_u32(b, OFF_NHELD) as usize;
        if nheld > SLOT_MAX_HELD {
            return SlotContent::Corrupt(format!(
                "{nheld} held files listed (at most {SLOT_MAX_HELD})"
            ));
        }
        let lease_ms = get_u32(b, OFF_LEASE_MS);
        if lease_ms == 0 {
            return SlotContent::Corrupt("lease of 0 ms".into());
        }
        let name = &b[OFF_HOSTNAME..OFF_HOSTNAME + SLOT_HOSTNAME_LEN];
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        let held = (0..nheld).map(|i| get_u64(b, OFF_HELD + 8 * i)).collect();
        SlotContent::Slot(HostSlot {
            state,
            fs_uuid: slot_fs,
            host_id: get_arr(b, OFF_HOST_ID),
            system_uuid: get_arr(b, OFF_SYSTEM_UUID),
            generation: get_u64(b, OFF_GENERATION),
            heartbeat: get_u64(b, OFF_HEARTBEAT),
            applied: get_u64(b, OFF_APPLIED),
            role,
            flags: SlotFlags(flags),
            lease_ms,
            interval_ms: get_u32(b, OFF_INTERVAL_MS),
            pid: get_u32(b, OFF_PID),
            hostname: String::from_utf8_lossy(&name[..end]).into_owned(),
            held,
        })
    }

    /// Whether the host may hold the deleted file whose delete entry is at `delete_index`: it is
    /// listed, or the list overflowed.
    pub fn may_hold(&self, delete_index: u64) -> bool {
        self.flags.has(SlotFlags::HELD_OVERFLOW) || self.held.contains(&delete_index)
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: UuidBytes = [7; 16];

    fn slot() -> HostSlot {
        HostSlot {
            state: SlotState::Live,
            fs_uuid: FS,
            host_id: [1; 16],
            system_uuid: [2; 16],
            generation: 3,
            heartbeat: 44,
            applied: 55,
            role: SlotRole::Client,
            flags: SlotFlags(SlotFlags::MODULE_LEASE),
            lease_ms: 10_000,
            interval_ms: 1000,
            pid: 4242,
            hostname: "host-a".into(),
            held: vec![9, 12],
        }
    }

    #[test]
    fn table_fits_in_the_superblock_region_after_the_superblock() {
        let end = slot_offset(SLOT_COUNT - 1).unwrap() + SLOT_SIZE as u64;
        assert!(end <= crate::SB_REGION_LEN);
        assert!(SLOT_TABLE_OFFSET >= crate::SB_SIZE as u64);
        assert_eq!(SLOT_TABLE_OFFSET % 64, 0);
        assert_eq!(SLOT_SIZE % 64, 0);
        assert_eq!(slot_offset(SLOT_COUNT), None);
        assert_eq!(slot_offset(1), Some(0x10_0400));
        // The held list ends before the crc.
        const { assert!(OFF_HELD + 8 * SLOT_MAX_HELD <= SLOT_CRC_RANGE) };
        assert_eq!(OFF_HOSTNAME + SLOT_HOSTNAME_LEN, 176);
    }

    #[test]
    fn round_trip_and_byte_positions() {
        let s = slot();
        let b = s.encode();
        assert_eq!(HostSlot::decode(&b, &FS), SlotContent::Slot(s.clone()));
        // Field positions, checked on the bytes (the documented layout).
        assert_eq!(&b[0..8], b"famfshst");
        assert_eq!(b[8], 1);
        assert_eq!(b[12], 2);
        assert_eq!(&b[16..32], &[7; 16]);
        assert_eq!(&b[32..48], &[1; 16]);
        assert_eq!(b[72], 44);
        assert_eq!(b[80], 55);
        assert_eq!(b[88], 2);
        assert_eq!(u32::from_le_bytes(b[96..100].try_into().unwrap()), 10_000);
        assert_eq!(b[108], 2);
        assert_eq!(&b[112..118], b"host-a");
        assert_eq!(b[192], 9);
        assert_eq!(b[200], 12);
        let crc = u64::from_le_bytes(b[1016..1024].try_into().unwrap());
        assert_eq!(crc, u64::from(crate::crc32(&b[..1016])));
        assert!(s.may_hold(12) && !s.may_hold(13));
    }

    #[test]
    fn empty_foreign_and_corrupt_slots() {
        assert_eq!(HostSlot::decode(&[0u8; SLOT_SIZE], &FS), SlotContent::Empty);
        assert_eq!(
            HostSlot::decode(&[0xa5u8; SLOT_SIZE], &FS),
            SlotContent::Empty
        );
        assert_eq!(
            HostSlot::decode(&slot().encode(), &[8; 16]),
            SlotContent::Foreign
        );
        assert!(matches!(
            HostSlot::decode(&[0u8; 10], &FS),
            SlotContent::Corrupt(_)
        ));
        // Any flipped byte under the crc, and the crc itself.
        let good = slot().encode();
        for pos in [8, 12, 20, 72, 100, 150, 300, 1015, 1016] {
            let mut b = good;
            b[pos] ^= 0x40;
            assert!(
                matches!(HostSlot::decode(&b, &FS), SlotContent::Corrupt(ref w) if w.contains("crc")),
                "byte {pos}"
            );
        }
        // Valid crc, invalid content.
        let recrc = |mut b: [u8; SLOT_SIZE]| {
            let c = u64::from(crate::crc32(&b[..SLOT_CRC_RANGE]));
            put_u64(&mut b, OFF_CRC, c);
            b
        };
        for (off, val, what) in [
            (OFF_VERSION, 2u32, "version"),
            (OFF_STATE, 0, "state"),
            (OFF_STATE, 4, "state"),
            (OFF_ROLE, 0, "role"),
            (OFF_FLAGS, 4, "flags"),
            (OFF_NHELD, 65, "held"),
            (OFF_LEASE_MS, 0, "lease"),
        ] {
            let mut b = good;
            put_u32(&mut b, off, val);
            match HostSlot::decode(&recrc(b), &FS) {
                SlotContent::Corrupt(w) => assert!(w.contains(what), "{what}: {w}"),
                other => panic!("{what}: decoded {other:?}"),
            }
        }
    }

    #[test]
    fn overflowing_held_list_and_long_names() {
        let mut s = slot();
        s.held = (0..100).collect();
        s.hostname = "é".repeat(40);
        let SlotContent::Slot(d) = HostSlot::decode(&s.encode(), &FS) else {
            panic!("not a slot")
        };
        assert_eq!(d.held.len(), SLOT_MAX_HELD);
        assert!(d.flags.has(SlotFlags::HELD_OVERFLOW));
        // Overflowed: it may hold anything, even what is not listed.
        assert!(d.may_hold(99) && d.may_hold(1_000_000));
        assert!(d.hostname.len() < SLOT_HOSTNAME_LEN);
        assert!(d.hostname.chars().all(|c| c == 'é'));
    }
}
