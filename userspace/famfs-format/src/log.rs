use crate::bytes::{get_u64, need, put_u64};
use crate::superblock::check_log_len;
use crate::*;

/// The log header exactly as on media (48 bytes). Size and offsets pinned by tests.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLogHeader {
    pub magic: u64,
    pub len: u64,
    pub last_index: u64,
    pub crc: u64,
    pub next_seqnum: u64,
    pub next_index: u64,
}

impl RawLogHeader {
    /// Reads the fields from the first 48 bytes of `b`.
    pub fn from_bytes(b: &[u8]) -> Result<Self, FormatError> {
        need(b, LOG_HEADER_SIZE, "log header")?;
        Ok(RawLogHeader {
            magic: get_u64(b, 0),
            len: get_u64(b, 8),
            last_index: get_u64(b, 16),
            crc: get_u64(b, 24),
            next_seqnum: get_u64(b, 32),
            next_index: get_u64(b, 40),
        })
    }

    /// The 48 on-media bytes.
    pub fn to_bytes(&self) -> [u8; LOG_HEADER_SIZE] {
        let mut b = [0u8; LOG_HEADER_SIZE];
        put_u64(&mut b, 0, self.magic);
        put_u64(&mut b, 8, self.len);
        put_u64(&mut b, 16, self.last_index);
        put_u64(&mut b, 24, self.crc);
        put_u64(&mut b, 32, self.next_seqnum);
        put_u64(&mut b, 40, self.next_index);
        b
    }

    /// crc32 of bytes [0, 24).
    pub fn compute_crc(&self) -> u64 {
        crc32(&self.to_bytes()[..LOG_HEADER_CRC_RANGE]) as u64
    }
}

/// Where things are inside a log of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogGeometry {
    log_len: u64,
}

impl LogGeometry {
    /// Geometry of a log of `log_len` bytes (power of two, >= 8 MiB).
    pub fn new(log_len: u64) -> Result<Self, FormatError> {
        check_log_len(log_len)?;
        Ok(LogGeometry { log_len })
    }

    /// Log length in bytes.
    pub fn log_len(&self) -> u64 {
        self.log_len
    }

    /// Number of entries the log can hold (15420 for 8 MiB).
    pub fn capacity(&self) -> u64 {
        (self.log_len - LOG_HEADER_SIZE as u64) / LOG_ENTRY_SIZE as u64
    }

    /// The last valid index (capacity - 1).
    pub fn last_index(&self) -> u64 {
        self.capacity() - 1
    }

    /// Byte offset of entry `index` inside the log; `None` when past the last entry.
    pub fn entry_offset(&self, index: u64) -> Option<u64> {
        (index < self.capacity()).then(|| LOG_HEADER_SIZE as u64 + index * LOG_ENTRY_SIZE as u64)
    }
}

/// A validated log header. `next_index` is checked against the capacity, so
/// `0..next_index` always names entries inside the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHeader {
    geometry: LogGeometry,
    next_seqnum: u64,
    next_index: u64,
}

impl LogHeader {
    /// An empty log (as mkfs writes it).
    pub fn new(geometry: LogGeometry) -> Self {
        LogHeader {
            geometry,
            next_seqnum: 0,
            next_index: 0,
        }
    }

    /// A header counting `n` entries, counters equal (a rewritten, compacted log).
    pub fn with_entries(geometry: LogGeometry, n: u64) -> Result<Self, FormatError> {
        if n > geometry.capacity() {
            return Err(FormatError::CountersPastEnd {
                next_index: n,
                capacity: geometry.capacity(),
            });
        }
        Ok(LogHeader {
            geometry,
            next_seqnum: n,
            next_index: n,
        })
    }

    /// The geometry.
    pub fn geometry(&self) -> LogGeometry {
        self.geometry
    }

    /// Index of the next entry to write; entries `[0, next_index)` are in use.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Seqnum of the next entry to write (equals next_index in a healthy log).
    pub fn next_seqnum(&self) -> u64 {
        self.next_seqnum
    }

    /// True when no entry can be appended.
    pub fn is_full(&self) -> bool {
        self.next_index > self.geometry.last_index()
    }

    /// The header after one more entry was appended. `next_index` is the authority: `next_seqnum`
    /// is not covered by the crc, and a writer killed between storing the two counters leaves them
    /// apart; both come out equal here, so the next append repairs such a header.
    pub fn advanced(&self) -> Result<LogHeader, FormatError> {
        let next = self.next_index + 1;
        if next > self.geometry.capacity() {
            return Err(FormatError::CountersPastEnd {
                next_index: next,
                capacity: self.geometry.capacity(),
            });
        }
        Ok(LogHeader {
            geometry: self.geometry,
            next_seqnum: next,
            next_index: next,
        })
    }

    /// Whether the two counters disagree (an interrupted append; harmless, see [`LogHeader::advanced`]).
    pub fn counters_disagree(&self) -> bool {
        self.next_seqnum != self.next_index
    }

    /// The raw form, crc included.
    pub fn to_raw(&self) -> RawLogHeader {
        let mut r = RawLogHeader {
            magic: LOG_MAGIC,
            len: self.geometry.log_len,
            last_index: self.geometry.last_index(),
            crc: 0,
            next_seqnum: self.next_seqnum,
            next_index: self.next_index,
        };
        r.crc = r.compute_crc();
        r
    }

    /// The 48 on-media bytes.
    pub fn encode(&self) -> [u8; LOG_HEADER_SIZE] {
        self.to_raw().to_bytes()
    }

    /// Decodes and validates a header against the superblock's log length. The unprotected counters
    /// are bounds-checked: next_index may not exceed the capacity.
    pub fn decode(b: &[u8], sb_log_len: u64) -> Result<Self, FormatError> {
        let r = RawLogHeader::from_bytes(b)?;
        if r.magic != LOG_MAGIC {
            return Err(FormatError::BadLogMagic { found: r.magic });
        }
        let computed = r.compute_crc();
        if r.crc != computed {
            return Err(FormatError::BadLogHeaderCrc {
                stored: r.crc,
                computed,
            });
        }
        if r.len != sb_log_len {
            return Err(FormatError::LogLenMismatch {
                found: r.len,
                expected: sb_log_len,
            });
        }
        let geometry = LogGeometry::new(r.len)?;
        if r.last_index != geometry.last_index() {
            return Err(FormatError::BadLastIndex {
                found: r.last_index,
                expected: geometry.last_index(),
            });
        }
        if r.next_index > geometry.capacity() {
            return Err(FormatError::CountersPastEnd {
                next_index: r.next_index,
                capacity: geometry.capacity(),
            });
        }
        Ok(LogHeader {
            geometry,
            next_seqnum: r.next_seqnum,
            next_index: r.next_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout_is_pinned() {
        assert_eq!(size_of::<RawLogHeader>(), 48);
        assert_eq!(offset_of!(RawLogHeader, magic), 0);
        assert_eq!(offset_of!(RawLogHeader, len), 8);
        assert_eq!(offset_of!(RawLogHeader, last_index), 16);
        assert_eq!(offset_of!(RawLogHeader, crc), 24);
        assert_eq!(offset_of!(RawLogHeader, next_seqnum), 32);
        assert_eq!(offset_of!(RawLogHeader, next_index), 40);
        let g = LogGeometry::new(DEFAULT_LOG_LEN).unwrap();
        assert_eq!(g.capacity(), 15420);
        assert_eq!(g.last_index(), 15419);
        assert_eq!(g.entry_offset(0), Some(48));
        assert_eq!(g.entry_offset(1), Some(48 + 544));
        assert_eq!(g.entry_offset(15420), None);
        let b = LogHeader::new(g).encode();
        assert_eq!(&b[0..8], &0x0000_0badcafef00du64.to_le_bytes());
        assert_eq!(&b[8..16], &(8u64 << 20).to_le_bytes());
        assert_eq!(&b[16..24], &15419u64.to_le_bytes());
        assert_eq!(&b[24..32], &(crc32(&b[..24]) as u64).to_le_bytes());
        assert_eq!(&b[32..48], &[0; 16]);
        assert_eq!(
            LogGeometry::new(16 << 20).unwrap().last_index(),
            ((16u64 << 20) - 48) / 544 - 1
        );
    }

    #[test]
    fn crc_covers_exactly_0_to_24() {
        let g = LogGeometry::new(DEFAULT_LOG_LEN).unwrap();
        let good = LogHeader::new(g).encode();
        for i in 0..LOG_HEADER_SIZE {
            let mut b = good;
            b[i] ^= 0x01;
            let r = LogHeader::decode(&b, DEFAULT_LOG_LEN);
            // bytes [24, 32) hold the crc itself; the counters after it are not covered
            let crc_err = matches!(
                r,
                Err(FormatError::BadLogHeaderCrc { .. }) | Err(FormatError::BadLogMagic { .. })
            );
            assert_eq!(crc_err, i < 32, "byte {i}: {r:?}");
        }
    }

    #[test]
    fn errors() {
        let g = LogGeometry::new(DEFAULT_LOG_LEN).unwrap();
        let mut r = LogHeader::new(g).to_raw();
        assert!(matches!(
            LogHeader::decode(&r.to_bytes(), 16 << 20),
            Err(FormatError::LogLenMismatch { .. })
        ));
        r.magic = 1;
        assert_eq!(
            LogHeader::decode(&r.to_bytes(), DEFAULT_LOG_LEN),
            Err(FormatError::BadLogMagic { found: 1 })
        );
        r.magic = LOG_MAGIC;
        r.last_index = 3;
        r.crc = r.compute_crc();
        assert!(matches!(
            LogHeader::decode(&r.to_bytes(), DEFAULT_LOG_LEN),
            Err(FormatError::BadLastIndex { .. })
        ));
        r.last_index = 15419;
        r.crc = r.compute_crc();
        r.next_index = 15420;
        r.next_seqnum = 15420;
        let full = LogHeader::decode(&r.to_bytes(), DEFAULT_LOG_LEN).unwrap();
        assert!(full.is_full());
        assert!(matches!(
            full.advanced(),
            Err(FormatError::CountersPastEnd { .. })
        ));
        r.next_index = 15421;
        assert!(matches!(
            LogHeader::decode(&r.to_bytes(), DEFAULT_LOG_LEN),
            Err(FormatError::CountersPastEnd { .. })
        ));
        r.next_index = u64::MAX;
        assert!(matches!(
            LogHeader::decode(&r.to_bytes(), DEFAULT_LOG_LEN),
            Err(FormatError::CountersPastEnd { .. })
        ));
        r.next_index = 5;
        r.next_seqnum = 6;
        let h = LogHeader::decode(&r.to_bytes(), DEFAULT_LOG_LEN).unwrap();
        assert!(h.counters_disagree());
        let next = h.advanced().unwrap();
        assert_eq!((next.next_index(), next.next_seqnum()), (6, 6));
        assert!(!next.counters_disagree());
        assert!(matches!(
            LogHeader::decode(&[0; 47], DEFAULT_LOG_LEN),
            Err(FormatError::Truncated { .. })
        ));
    }
}
