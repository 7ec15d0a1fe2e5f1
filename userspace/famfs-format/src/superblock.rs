use crate::bytes::{get_arr, get_u32, get_u64, need, put_u32, put_u64};
use crate::*;

/// Superblock flag: this is the primary superblock. The C header defines it, but the C
/// `mkfs.famfs` writes `sb_flags` = 0 and no reader of either implementation looks at the field;
/// famfs-rs writes 0 as well, so both make the same bytes (it is not covered by the crc).
pub const SB_FLAG_PRIMARY: u32 = 1;
/// Superblock flag: a secondary device of a multi-device file system (famfs-rs; the C header
/// defines the value). Such a superblock has no log (log offset and length 0): see
/// [`SecondarySuperblock`]. A primary superblock never has this bit.
pub const SB_FLAG_SECONDARY: u32 = 2;

/// The superblock exactly as on media (200 bytes, little-endian fields). Its size and every field
/// offset are pinned by tests; it is converted to and from bytes field by field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSuperblock {
    pub magic: u64,
    pub version: u64,
    pub log_offset: u64,
    pub log_len: u64,
    pub alloc_unit: u64,
    pub omf_ver_major: u32,
    pub omf_ver_minor: u32,
    pub fs_uuid: UuidBytes,
    pub dev_uuid: UuidBytes,
    pub system_uuid: UuidBytes,
    pub crc: u64,
    pub sb_flags: u32,
    pub pad: u32,
    pub daxdev_size: u64,
    pub daxdev_uuid: UuidBytes,
    pub daxdev_name: [u8; DAXDEV_NAME_LEN],
}

impl RawSuperblock {
    /// The format's constants (magic, versions), everything else zero: the base that each kind of
    /// superblock we write fills in.
    fn blank() -> Self {
        RawSuperblock {
            magic: SB_MAGIC,
            version: SB_VERSION,
            log_offset: 0,
            log_len: 0,
            alloc_unit: 0,
            omf_ver_major: OMF_VER_MAJOR,
            omf_ver_minor: OMF_VER_MINOR,
            fs_uuid: [0; 16],
            dev_uuid: [0; 16],
            system_uuid: [0; 16],
            crc: 0,
            sb_flags: 0,
            pad: 0,
            daxdev_size: 0,
            daxdev_uuid: [0; 16],
            daxdev_name: [0; DAXDEV_NAME_LEN],
        }
    }

    /// With its crc computed over the other fields.
    fn sealed(mut self) -> Self {
        self.crc = 0;
        self.crc = self.compute_crc();
        self
    }

    /// Reads the fields from the first 200 bytes of `b` (no validation beyond the length).
    pub fn from_bytes(b: &[u8]) -> Result<Self, FormatError> {
        need(b, SB_SIZE, "superblock")?;
        Ok(RawSuperblock {
            magic: get_u64(b, 0),
            version: get_u64(b, 8),
            log_offset: get_u64(b, 16),
            log_len: get_u64(b, 24),
            alloc_unit: get_u64(b, 32),
            omf_ver_major: get_u32(b, 40),
            omf_ver_minor: get_u32(b, 44),
            fs_uuid: get_arr(b, 48),
            dev_uuid: get_arr(b, 64),
            system_uuid: get_arr(b, 80),
            crc: get_u64(b, 96),
            sb_flags: get_u32(b, 104),
            pad: get_u32(b, 108),
            daxdev_size: get_u64(b, 112),
            daxdev_uuid: get_arr(b, 120),
            daxdev_name: get_arr(b, 136),
        })
    }

    /// The 200 on-media bytes.
    pub fn to_bytes(&self) -> [u8; SB_SIZE] {
        let mut b = [0u8; SB_SIZE];
        put_u64(&mut b, 0, self.magic);
        put_u64(&mut b, 8, self.version);
        put_u64(&mut b, 16, self.log_offset);
        put_u64(&mut b, 24, self.log_len);
        put_u64(&mut b, 32, self.alloc_unit);
        put_u32(&mut b, 40, self.omf_ver_major);
        put_u32(&mut b, 44, self.omf_ver_minor);
        b[48..64].copy_from_slice(&self.fs_uuid);
        b[64..80].copy_from_slice(&self.dev_uuid);
        b[80..96].copy_from_slice(&self.system_uuid);
        put_u64(&mut b, 96, self.crc);
        put_u32(&mut b, 104, self.sb_flags);
        put_u32(&mut b, 108, self.pad);
        put_u64(&mut b, 112, self.daxdev_size);
        b[120..136].copy_from_slice(&self.daxdev_uuid);
        b[136..200].copy_from_slice(&self.daxdev_name);
        b
    }

    /// The crc the superblock should carry: crc32 of bytes [0, 96).
    pub fn compute_crc(&self) -> u64 {
        crc32(&self.to_bytes()[..SB_CRC_RANGE]) as u64
    }
}

/// A validated superblock. Build one with [`Superblock::new`] (mkfs) or [`Superblock::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// [`SB_VERSION`] (48, as the C tools write it), or [`SB_VERSION_DELETE`] (49) once the
    /// master has logged a delete: the C tools then refuse the file system.
    pub version: u64,
    /// Log length in bytes (power of two, at least 8 MiB).
    pub log_len: u64,
    /// Allocation unit (2 MiB, or 4096 on old media).
    pub alloc_unit: u64,
    /// File system uuid.
    pub fs_uuid: UuidBytes,
    /// Device uuid.
    pub dev_uuid: UuidBytes,
    /// Uuid of the master host.
    pub system_uuid: UuidBytes,
    /// Flags (not covered by the crc).
    pub sb_flags: u32,
    /// Device size in bytes (not covered by the crc).
    pub device_size: u64,
    /// Device uuid field of the daxdev record (unused).
    pub daxdev_uuid: UuidBytes,
    /// Device path given to mkfs, NUL-padded.
    pub device_name: [u8; DAXDEV_NAME_LEN],
}

impl Superblock {
    /// A fresh superblock as mkfs writes it.
    pub fn new(
        log_len: u64,
        device_size: u64,
        fs_uuid: UuidBytes,
        dev_uuid: UuidBytes,
        system_uuid: UuidBytes,
        device_name: &str,
    ) -> Result<Self, FormatError> {
        check_log_len(log_len)?;
        let log_end = LOG_OFFSET + log_len;
        if device_size < log_end {
            return Err(FormatError::DeviceTooSmall {
                device_size,
                log_end,
            });
        }
        let mut name = [0u8; DAXDEV_NAME_LEN];
        let n = device_name.len().min(DAXDEV_NAME_LEN);
        name[..n].copy_from_slice(&device_name.as_bytes()[..n]);
        Ok(Superblock {
            version: SB_VERSION,
            log_len,
            alloc_unit: ALLOC_UNIT,
            fs_uuid,
            dev_uuid,
            system_uuid,
            sb_flags: 0,
            device_size,
            daxdev_uuid: [0; 16],
            device_name: name,
        })
    }

    /// The raw form, crc included.
    pub fn to_raw(&self) -> RawSuperblock {
        RawSuperblock {
            version: self.version,
            log_offset: LOG_OFFSET,
            log_len: self.log_len,
            alloc_unit: self.alloc_unit,
            fs_uuid: self.fs_uuid,
            dev_uuid: self.dev_uuid,
            system_uuid: self.system_uuid,
            sb_flags: self.sb_flags,
            daxdev_size: self.device_size,
            daxdev_uuid: self.daxdev_uuid,
            daxdev_name: self.device_name,
            ..RawSuperblock::blank()
        }
        .sealed()
    }

    /// The 200 on-media bytes.
    pub fn encode(&self) -> [u8; SB_SIZE] {
        self.to_raw().to_bytes()
    }

    /// Decodes and validates, in the C tools' order (magic, version, crc, alloc unit), then the log
    /// geometry this implementation relies on for bounds.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        let r = RawSuperblock::from_bytes(b)?;
        check_common(&r, &[SB_VERSION, SB_VERSION_DELETE])?;
        if r.log_offset != LOG_OFFSET {
            return Err(FormatError::BadLogOffset {
                found: r.log_offset,
            });
        }
        check_log_len(r.log_len)?;
        Ok(Superblock {
            version: r.version,
            log_len: r.log_len,
            alloc_unit: r.alloc_unit,
            fs_uuid: r.fs_uuid,
            dev_uuid: r.dev_uuid,
            system_uuid: r.system_uuid,
            sb_flags: r.sb_flags,
            device_size: r.daxdev_size,
            daxdev_uuid: r.daxdev_uuid,
            device_name: r.daxdev_name,
        })
    }

    /// The device name as text (up to the first NUL; lossy).
    pub fn device_name_str(&self) -> String {
        let end = self
            .device_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(DAXDEV_NAME_LEN);
        String::from_utf8_lossy(&self.device_name[..end]).into_owned()
    }

    /// Whether the log may hold DELETE and RECLAIM entries (version [`SB_VERSION_DELETE`]).
    pub fn deletes_enabled(&self) -> bool {
        self.version == SB_VERSION_DELETE
    }

    /// First byte of the data area.
    pub fn data_offset(&self) -> u64 {
        LOG_OFFSET + self.log_len
    }

    /// The log geometry described by this superblock.
    pub fn log_geometry(&self) -> LogGeometry {
        LogGeometry::new(self.log_len).expect("log_len validated at construction")
    }
}

/// The superblock of a secondary device (one added by `mkfs.famfs PRIMARY SECONDARY...` or
/// `famfs devadd`). Same 200-byte layout as the primary's; what differs
/// (Documentation/on-media-format.md, "Secondary superblock"):
///
/// - `log_offset` and `log_len` are 0: the log lives on the primary only;
/// - `sb_flags` has [`SB_FLAG_SECONDARY`] (bit 1) set;
/// - `fs_uuid` and `system_uuid` are the primary's, `dev_uuid` is this device's own;
/// - `daxdev.uuid` (offset 120, not crc-covered) holds the primary's device uuid;
/// - `daxdev.size` is this device's size, `daxdev.name` the path it was added by.
///
/// A reader that only knows primaries refuses it (log offset 0), so a secondary is never taken
/// for a file system of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondarySuperblock {
    /// The file system's uuid (the primary's).
    pub fs_uuid: UuidBytes,
    /// This device's uuid (the one its ADD_DAXDEV entry names).
    pub dev_uuid: UuidBytes,
    /// The master's system uuid (the primary's).
    pub system_uuid: UuidBytes,
    /// The primary device's uuid.
    pub primary_dev_uuid: UuidBytes,
    /// This device's size in bytes.
    pub device_size: u64,
    /// The path it was added by, NUL-padded.
    pub device_name: [u8; DAXDEV_NAME_LEN],
}

impl SecondarySuperblock {
    /// A secondary superblock for a device of `device_size` bytes joining the file system of
    /// `primary`.
    pub fn new(
        primary: &Superblock,
        dev_uuid: UuidBytes,
        device_size: u64,
        device_name: &str,
    ) -> Self {
        let mut name = [0u8; DAXDEV_NAME_LEN];
        let n = device_name.len().min(DAXDEV_NAME_LEN);
        name[..n].copy_from_slice(&device_name.as_bytes()[..n]);
        SecondarySuperblock {
            fs_uuid: primary.fs_uuid,
            dev_uuid,
            system_uuid: primary.system_uuid,
            primary_dev_uuid: primary.dev_uuid,
            device_size,
            device_name: name,
        }
    }

    /// The raw form, crc included.
    pub fn to_raw(&self) -> RawSuperblock {
        RawSuperblock {
            log_offset: 0,
            log_len: 0,
            alloc_unit: ALLOC_UNIT,
            fs_uuid: self.fs_uuid,
            dev_uuid: self.dev_uuid,
            system_uuid: self.system_uuid,
            sb_flags: SB_FLAG_SECONDARY,
            daxdev_size: self.device_size,
            daxdev_uuid: self.primary_dev_uuid,
            daxdev_name: self.device_name,
            ..RawSuperblock::blank()
        }
        .sealed()
    }

    /// The 200 on-media bytes.
    pub fn encode(&self) -> [u8; SB_SIZE] {
        self.to_raw().to_bytes()
    }

    /// Decodes and validates a secondary superblock: magic, version, crc, alloc unit 2 MiB,
    /// the secondary flag, and no log.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        let r = RawSuperblock::from_bytes(b)?;
        check_common(&r, &[SB_VERSION])?;
        if r.sb_flags & SB_FLAG_SECONDARY == 0 {
            return Err(FormatError::NotSecondary);
        }
        if r.log_offset != 0 || r.log_len != 0 {
            return Err(FormatError::SecondaryWithLog {
                log_offset: r.log_offset,
                log_len: r.log_len,
            });
        }
        Ok(SecondarySuperblock {
            fs_uuid: r.fs_uuid,
            dev_uuid: r.dev_uuid,
            system_uuid: r.system_uuid,
            primary_dev_uuid: r.daxdev_uuid,
            device_size: r.daxdev_size,
            device_name: r.daxdev_name,
        })
    }

    /// The device name as text (up to the first NUL; lossy).
    pub fn device_name_str(&self) -> String {
        let end = self
            .device_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(DAXDEV_NAME_LEN);
        String::from_utf8_lossy(&self.device_name[..end]).into_owned()
    }
}

/// Any famfs superblock: a primary (with the log) or a secondary device's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnySuperblock {
    Primary(Superblock),
    Secondary(SecondarySuperblock),
}

impl AnySuperblock {
    /// Decodes either kind: a superblock with [`SB_FLAG_SECONDARY`] must be a valid secondary,
    /// any other a valid primary.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        let r = RawSuperblock::from_bytes(b)?;
        if r.magic == SB_MAGIC && r.sb_flags & SB_FLAG_SECONDARY != 0 {
            return SecondarySuperblock::decode(b).map(AnySuperblock::Secondary);
        }
        Superblock::decode(b).map(AnySuperblock::Primary)
    }

    /// The file system uuid.
    pub fn fs_uuid(&self) -> UuidBytes {
        match self {
            AnySuperblock::Primary(s) => s.fs_uuid,
            AnySuperblock::Secondary(s) => s.fs_uuid,
        }
    }

    /// The device's own uuid.
    pub fn dev_uuid(&self) -> UuidBytes {
        match self {
            AnySuperblock::Primary(s) => s.dev_uuid,
            AnySuperblock::Secondary(s) => s.dev_uuid,
        }
    }
}

fn check_common(r: &RawSuperblock, versions: &[u64]) -> Result<(), FormatError> {
    if r.magic != SB_MAGIC {
        return Err(FormatError::BadMagic { found: r.magic });
    }
    if !versions.contains(&r.version) {
        return Err(FormatError::BadVersion { found: r.version });
    }
    let computed = r.compute_crc();
    if r.crc != computed {
        return Err(FormatError::BadSuperblockCrc {
            stored: r.crc,
            computed,
        });
    }
    if r.alloc_unit != ALLOC_UNIT && r.alloc_unit != ALLOC_UNIT_4K {
        return Err(FormatError::BadAllocUnit {
            found: r.alloc_unit,
        });
    }
    Ok(())
}

pub(crate) fn check_log_len(len: u64) -> Result<(), FormatError> {
    // An upper bound keeps the log mappable and the entry count in range even for a corrupt field.
    if len < MIN_LOG_LEN || !len.is_power_of_two() || len > (1 << 40) {
        return Err(FormatError::BadLogLen { found: len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    fn sample() -> Superblock {
        Superblock::new(
            DEFAULT_LOG_LEN,
            8 << 30,
            [1; 16],
            [2; 16],
            [3; 16],
            "/dev/dax0.0",
        )
        .unwrap()
    }

    #[test]
    fn raw_layout_is_pinned() {
        assert_eq!(size_of::<RawSuperblock>(), 200);
        assert_eq!(offset_of!(RawSuperblock, magic), 0);
        assert_eq!(offset_of!(RawSuperblock, version), 8);
        assert_eq!(offset_of!(RawSuperblock, log_offset), 16);
        assert_eq!(offset_of!(RawSuperblock, log_len), 24);
        assert_eq!(offset_of!(RawSuperblock, alloc_unit), 32);
        assert_eq!(offset_of!(RawSuperblock, omf_ver_major), 40);
        assert_eq!(offset_of!(RawSuperblock, omf_ver_minor), 44);
        assert_eq!(offset_of!(RawSuperblock, fs_uuid), 48);
        assert_eq!(offset_of!(RawSuperblock, dev_uuid), 64);
        assert_eq!(offset_of!(RawSuperblock, system_uuid), 80);
        assert_eq!(offset_of!(RawSuperblock, crc), 96);
        assert_eq!(offset_of!(RawSuperblock, sb_flags), 104);
        assert_eq!(offset_of!(RawSuperblock, pad), 108);
        assert_eq!(offset_of!(RawSuperblock, daxdev_size), 112);
        assert_eq!(offset_of!(RawSuperblock, daxdev_uuid), 120);
        assert_eq!(offset_of!(RawSuperblock, daxdev_name), 136);
    }

    #[test]
    fn delete_version() {
        let mut sb = sample();
        assert!(!sb.deletes_enabled());
        sb.version = SB_VERSION_DELETE;
        let b = sb.encode();
        assert_eq!(&b[8..16], &49u64.to_le_bytes());
        assert_eq!(&b[96..104], &(crc32(&b[..96]) as u64).to_le_bytes());
        let back = Superblock::decode(&b).unwrap();
        assert!(back.deletes_enabled());
        assert_eq!(back, sb);
        // Only 48 and 49 on a primary; a secondary stays 48 (it is never marked).
        let mut r = RawSuperblock::from_bytes(&b).unwrap();
        r.version = 50;
        assert_eq!(
            Superblock::decode(&r.sealed().to_bytes()),
            Err(FormatError::BadVersion { found: 50 })
        );
        let mut s = SecondarySuperblock::new(&sample(), [5; 16], 8 << 30, "x").to_raw();
        s.version = SB_VERSION_DELETE;
        assert_eq!(
            SecondarySuperblock::decode(&s.sealed().to_bytes()),
            Err(FormatError::BadVersion { found: 49 })
        );
    }

    #[test]
    fn encoded_bytes_are_pinned() {
        let b = sample().encode();
        assert_eq!(&b[0..8], &0x87b2_82ffu64.to_le_bytes());
        assert_eq!(&b[8..16], &48u64.to_le_bytes());
        assert_eq!(&b[16..24], &0x20_0000u64.to_le_bytes());
        assert_eq!(&b[24..32], &(8u64 << 20).to_le_bytes());
        assert_eq!(&b[32..40], &0x20_0000u64.to_le_bytes());
        assert_eq!(&b[40..44], &2u32.to_le_bytes());
        assert_eq!(&b[44..48], &2u32.to_le_bytes());
        assert_eq!(&b[48..64], &[1; 16]);
        assert_eq!(&b[64..80], &[2; 16]);
        assert_eq!(&b[80..96], &[3; 16]);
        assert_eq!(&b[96..104], &(crc32(&b[..96]) as u64).to_le_bytes());
        assert_eq!(&b[104..108], &0u32.to_le_bytes()); // as the C mkfs.famfs writes it
        assert_eq!(&b[108..112], &[0; 4]);
        assert_eq!(&b[112..120], &(8u64 << 30).to_le_bytes());
        assert_eq!(&b[136..147], b"/dev/dax0.0");
        assert!(b[147..200].iter().all(|&x| x == 0));
        assert_eq!(Superblock::decode(&b).unwrap(), sample());
    }

    #[test]
    fn secondary_superblock_bytes() {
        let p = sample();
        let s = SecondarySuperblock::new(&p, [7; 16], 16 << 30, "/dev/dax1.0");
        let b = s.encode();
        assert_eq!(&b[0..8], &SB_MAGIC.to_le_bytes());
        assert_eq!(&b[8..16], &48u64.to_le_bytes());
        assert_eq!(&b[16..32], &[0; 16], "no log: offset and length 0");
        assert_eq!(&b[32..40], &0x20_0000u64.to_le_bytes());
        assert_eq!(&b[48..64], &[1; 16], "the primary's fs uuid");
        assert_eq!(&b[64..80], &[7; 16], "its own device uuid");
        assert_eq!(&b[80..96], &[3; 16], "the primary's system uuid");
        assert_eq!(&b[96..104], &(crc32(&b[..96]) as u64).to_le_bytes());
        assert_eq!(&b[104..108], &2u32.to_le_bytes(), "sb_flags secondary");
        assert_eq!(&b[112..120], &(16u64 << 30).to_le_bytes());
        assert_eq!(&b[120..136], &[2; 16], "the primary's device uuid");
        assert_eq!(&b[136..147], b"/dev/dax1.0");
        assert_eq!(SecondarySuperblock::decode(&b).unwrap(), s);
        assert_eq!(
            AnySuperblock::decode(&b).unwrap(),
            AnySuperblock::Secondary(s.clone())
        );
        // A reader of primaries only refuses it (no log).
        assert_eq!(
            Superblock::decode(&b),
            Err(FormatError::BadLogOffset { found: 0 })
        );
        // The primary decodes as a primary, and is not a secondary.
        let pb = p.encode();
        assert_eq!(
            AnySuperblock::decode(&pb).unwrap(),
            AnySuperblock::Primary(p)
        );
        assert_eq!(
            SecondarySuperblock::decode(&pb),
            Err(FormatError::NotSecondary)
        );
        // A secondary flag on a superblock with a log is damage, not a primary.
        let mut r = RawSuperblock::from_bytes(&pb).unwrap();
        r.sb_flags = SB_FLAG_SECONDARY;
        assert!(matches!(
            AnySuperblock::decode(&r.to_bytes()),
            Err(FormatError::SecondaryWithLog { .. })
        ));
        let mut bad = b;
        bad[50] ^= 1;
        assert!(matches!(
            AnySuperblock::decode(&bad),
            Err(FormatError::BadSuperblockCrc { .. })
        ));
    }

    #[test]
    fn crc_covers_exactly_0_to_96() {
        let good = sample().encode();
        for i in 0..SB_SIZE {
            let mut b = good;
            b[i] ^= 0x40;
            let r = Superblock::decode(&b);
            if i < SB_CRC_RANGE + 8 {
                // [96, 104) is the crc field itself
                assert!(r.is_err(), "byte {i} is covered");
            } else {
                assert!(r.is_ok(), "byte {i} is not covered: {r:?}");
            }
        }
    }

    #[test]
    fn validation_order_and_errors() {
        let good = sample().encode();
        let mut r = RawSuperblock::from_bytes(&good).unwrap();
        r.magic = 0;
        r.version = 1; // magic is checked first
        assert_eq!(
            Superblock::decode(&r.to_bytes()),
            Err(FormatError::BadMagic { found: 0 })
        );
        r.magic = SB_MAGIC;
        assert_eq!(
            Superblock::decode(&r.to_bytes()),
            Err(FormatError::BadVersion { found: 1 })
        );
        r.version = SB_VERSION;
        r.alloc_unit = 12345; // crc comes before alloc unit
        assert!(matches!(
            Superblock::decode(&r.to_bytes()),
            Err(FormatError::BadSuperblockCrc { .. })
        ));
        r.crc = r.compute_crc();
        assert_eq!(
            Superblock::decode(&r.to_bytes()),
            Err(FormatError::BadAllocUnit { found: 12345 })
        );
        r.alloc_unit = ALLOC_UNIT_4K;
        r.crc = r.compute_crc();
        assert!(Superblock::decode(&r.to_bytes()).is_ok());
        r.log_offset = 0;
        r.crc = r.compute_crc();
        assert_eq!(
            Superblock::decode(&r.to_bytes()),
            Err(FormatError::BadLogOffset { found: 0 })
        );
        r.log_offset = LOG_OFFSET;
        for bad in [0, 4 << 20, (8 << 20) + 1, 1 << 41] {
            r.log_len = bad;
            r.crc = r.compute_crc();
            assert_eq!(
                Superblock::decode(&r.to_bytes()),
                Err(FormatError::BadLogLen { found: bad })
            );
        }
        assert!(matches!(
            Superblock::decode(&good[..199]),
            Err(FormatError::Truncated { .. })
        ));
        assert!(Superblock::new(DEFAULT_LOG_LEN, 4 << 20, [0; 16], [0; 16], [0; 16], "x").is_err());
    }
}
