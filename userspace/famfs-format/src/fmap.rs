use crate::bytes::{get_u32, get_u64, need, put_u32, put_u64};
use crate::{FormatError, EXTENT_SIZE, FMAP_SIZE, MAX_EXTENTS, MIB2};

/// One contiguous range of device memory: `len` bytes at `offset` of device `devindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    /// Index of the device (0 = the superblock's device; the only one today).
    pub devindex: u64,
    /// Byte offset on the device; a non-zero multiple of 2 MiB.
    pub offset: u64,
    /// Length in bytes; a non-zero multiple of 2 MiB.
    pub len: u64,
}

impl Extent {
    /// An extent on device 0.
    pub fn new(offset: u64, len: u64) -> Self {
        Extent {
            devindex: 0,
            offset,
            len,
        }
    }

    /// Checks alignment and that it does not start at 0 (the superblock).
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.len == 0 {
            return Err(FormatError::ExtentEmpty);
        }
        if !self.offset.is_multiple_of(MIB2) || !self.len.is_multiple_of(MIB2) {
            return Err(FormatError::ExtentMisaligned {
                offset: self.offset,
                len: self.len,
            });
        }
        if self.offset == 0 {
            return Err(FormatError::ExtentAtZero);
        }
        // Device offsets inside the extent are computed as offset + (something < len).
        if self.offset.checked_add(self.len).is_none() {
            return Err(FormatError::ExtentOverflow {
                offset: self.offset,
                len: self.len,
            });
        }
        Ok(())
    }

    /// Checks that the extent ends within a device of `device_size` bytes.
    pub fn check_within(&self, device_size: u64) -> Result<(), FormatError> {
        match self.offset.checked_add(self.len) {
            Some(end) if end <= device_size => Ok(()),
            _ => Err(FormatError::ExtentBeyondDevice {
                offset: self.offset,
                len: self.len,
                device_size,
            }),
        }
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }

    fn encode(&self, b: &mut [u8]) {
        put_u64(b, 0, self.devindex);
        put_u64(b, 8, self.offset);
        put_u64(b, 16, self.len);
    }

    fn decode(b: &[u8]) -> Self {
        Extent {
            devindex: get_u64(b, 0),
            offset: get_u64(b, 8),
            len: get_u64(b, 16),
        }
    }
}

/// An interleaved (striped) layout: the file is cut in chunks of `chunk_size` bytes handed out to the
/// strips round-robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interleave {
    chunk_size: u64,
    strips: Vec<Extent>,
}

impl Interleave {
    /// Validates and builds an interleaved layout (1 to 16 strips, chunk a non-zero multiple of 2 MiB).
    pub fn new(chunk_size: u64, strips: Vec<Extent>) -> Result<Self, FormatError> {
        if strips.is_empty() || strips.len() > MAX_EXTENTS {
            return Err(FormatError::BadStripCount(strips.len() as u64));
        }
        if chunk_size == 0 || !chunk_size.is_multiple_of(MIB2) {
            return Err(FormatError::BadChunkSize(chunk_size));
        }
        for s in &strips {
            s.validate()?;
        }
        Ok(Interleave { chunk_size, strips })
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// The strips, in order.
    pub fn strips(&self) -> &[Extent] {
        &self.strips
    }

    /// Number of strips.
    pub fn nstrips(&self) -> u64 {
        self.strips.len() as u64
    }
}

/// A file's map from file offsets to device memory. Constructors validate, so an `Fmap` always
/// holds 1 to 16 aligned, non-zero-offset extents (or a valid interleave).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fmap {
    /// Extents concatenated in order.
    Simple(Vec<Extent>),
    /// One interleaved extent.
    Interleaved(Interleave),
}

/// A piece of a file resolved to device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Device index.
    pub devindex: u64,
    /// Device offset of the first byte.
    pub offset: u64,
    /// Contiguous bytes valid from there.
    pub len: u64,
}

const EXT_SIMPLE: u32 = 0;
const EXT_INTERLEAVE: u32 = 1;

impl Fmap {
    /// A validated simple fmap.
    pub fn simple(extents: Vec<Extent>) -> Result<Self, FormatError> {
        if extents.is_empty() || extents.len() > MAX_EXTENTS {
            return Err(FormatError::BadExtentCount(extents.len() as u32));
        }
        for e in &extents {
            e.validate()?;
        }
        Ok(Fmap::Simple(extents))
    }

    /// Every device extent the fmap uses (the strips, for an interleaved map).
    pub fn extents(&self) -> &[Extent] {
        match self {
            Fmap::Simple(e) => e,
            Fmap::Interleaved(i) => &i.strips,
        }
    }

    /// How many file bytes the map can hold. Interleaved: the one capacity rule of
    /// [`famfs_fmap::interleave_capacity`] (the C famfs rule the kernel validates with: every
    /// chunk, dealt round-robin, lies whole inside its strip; strips may differ in length).
    pub fn capacity(&self) -> u64 {
        match self {
            Fmap::Simple(e) => e.iter().fold(0u64, |a, x| a.saturating_add(x.len)),
            Fmap::Interleaved(i) => {
                famfs_fmap::interleave_capacity(i.chunk_size, i.strips.iter().map(|s| s.len))
            }
        }
    }

    /// Checks every extent against a device size.
    pub fn check_within(&self, device_size: u64) -> Result<(), FormatError> {
        self.extents()
            .iter()
            .try_for_each(|e| e.check_within(device_size))
    }

    /// Resolves file offset `off` to device memory, `None` past the map's capacity.
    pub fn resolve(&self, off: u64) -> Option<Segment> {
        match self {
            Fmap::Simple(exts) => {
                let mut rem = off;
                for e in exts {
                    if rem < e.len {
                        return Some(Segment {
                            devindex: e.devindex,
                            offset: e.offset + rem,
                            len: e.len - rem,
                        });
                    }
                    rem -= e.len;
                }
                None
            }
            Fmap::Interleaved(i) => {
                if off >= self.capacity() {
                    return None;
                }
                let pos = famfs_fmap::locate_chunk(i.chunk_size, i.nstrips(), off)?;
                let strip = i.strips.get(usize::try_from(pos.strip).ok()?)?;
                Some(Segment {
                    devindex: strip.devindex,
                    offset: strip.offset + pos.in_strip,
                    len: pos.to_chunk_end,
                })
            }
        }
    }

    /// Writes the 416-byte on-media form into `b` (which must be at least 416 bytes).
    pub fn encode(&self, b: &mut [u8]) {
        let b = &mut b[..FMAP_SIZE];
        b.fill(0);
        match self {
            Fmap::Simple(exts) => {
                put_u32(b, 0, EXT_SIMPLE);
                put_u32(b, 8, exts.len() as u32);
                for (i, e) in exts.iter().enumerate() {
                    e.encode(&mut b[16 + i * EXTENT_SIZE..]);
                }
            }
            Fmap::Interleaved(il) => {
                put_u32(b, 0, EXT_INTERLEAVE);
                put_u32(b, 8, 1);
                put_u64(b, 16, il.nstrips());
                put_u64(b, 24, il.chunk_size);
                for (i, e) in il.strips.iter().enumerate() {
                    e.encode(&mut b[32 + i * EXTENT_SIZE..]);
                }
            }
        }
    }

    /// Decodes and validates the 416-byte on-media form.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        need(b, FMAP_SIZE, "fmap")?;
        let count = get_u32(b, 8);
        match get_u32(b, 0) {
            EXT_SIMPLE => {
                if count == 0 || count as usize > MAX_EXTENTS {
                    return Err(FormatError::BadExtentCount(count));
                }
                let exts = (0..count as usize)
                    .map(|i| Extent::decode(&b[16 + i * EXTENT_SIZE..]))
                    .collect();
                Fmap::simple(exts)
            }
            EXT_INTERLEAVE => {
                if count != 1 {
                    return Err(FormatError::BadExtentCount(count));
                }
                let nstrips = get_u64(b, 16);
                if nstrips == 0 || nstrips > MAX_EXTENTS as u64 {
                    return Err(FormatError::BadStripCount(nstrips));
                }
                let chunk = get_u64(b, 24);
                let strips = (0..nstrips as usize)
                    .map(|i| Extent::decode(&b[32 + i * EXTENT_SIZE..]))
                    .collect();
                Ok(Fmap::Interleaved(Interleave::new(chunk, strips)?))
            }
            other => Err(FormatError::BadExtentType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: u64 = MIB2;

    #[test]
    fn simple_layout() {
        let f = Fmap::simple(vec![Extent::new(10 * M, 4 * M), Extent::new(20 * M, 2 * M)]).unwrap();
        let mut b = [0xaau8; FMAP_SIZE];
        f.encode(&mut b);
        assert_eq!(get_u32(&b, 0), 0);
        assert_eq!(get_u32(&b, 4), 0);
        assert_eq!(get_u32(&b, 8), 2);
        assert_eq!(get_u64(&b, 16), 0);
        assert_eq!(get_u64(&b, 24), 10 * M);
        assert_eq!(get_u64(&b, 32), 4 * M);
        assert_eq!(get_u64(&b, 40 + 8), 20 * M);
        assert!(b[64..].iter().all(|&x| x == 0));
        assert_eq!(Fmap::decode(&b).unwrap(), f);
        assert_eq!(f.capacity(), 6 * M);
        assert_eq!(
            f.resolve(5 * M),
            Some(Segment {
                devindex: 0,
                offset: 21 * M,
                len: M
            })
        );
        assert_eq!(f.resolve(6 * M), None);
    }

    #[test]
    fn interleaved_layout() {
        let strips = vec![
            Extent::new(100 * M, 4 * M),
            Extent::new(200 * M, 4 * M),
            Extent::new(300 * M, 4 * M),
        ];
        let f = Fmap::Interleaved(Interleave::new(2 * M, strips).unwrap());
        let mut b = [0u8; FMAP_SIZE];
        f.encode(&mut b);
        assert_eq!(get_u32(&b, 0), 1);
        assert_eq!(get_u32(&b, 8), 1);
        assert_eq!(get_u64(&b, 16), 3);
        assert_eq!(get_u64(&b, 24), 2 * M);
        assert_eq!(get_u64(&b, 32 + 8), 100 * M);
        assert_eq!(get_u64(&b, 32 + 24 + 8), 200 * M);
        assert_eq!(16 + crate::INTERLEAVED_EXTENT_SIZE, FMAP_SIZE);
        assert_eq!(Fmap::decode(&b).unwrap(), f);
        assert_eq!(f.capacity(), 12 * M);
        // chunk 4 -> strip 1, stripe 1
        let s = f.resolve(8 * M + 5).unwrap();
        assert_eq!(s.offset, 200 * M + 2 * M + 5);
        assert_eq!(s.len, 2 * M - 5);
    }

    #[test]
    fn decode_errors() {
        let mut b = [0u8; FMAP_SIZE];
        assert_eq!(Fmap::decode(&b), Err(FormatError::BadExtentCount(0)));
        put_u32(&mut b, 8, 17);
        assert_eq!(Fmap::decode(&b), Err(FormatError::BadExtentCount(17)));
        put_u32(&mut b, 0, 7);
        assert_eq!(Fmap::decode(&b), Err(FormatError::BadExtentType(7)));
        put_u32(&mut b, 0, 0);
        put_u32(&mut b, 8, 1);
        put_u64(&mut b, 32, M);
        assert_eq!(Fmap::decode(&b), Err(FormatError::ExtentAtZero));
        put_u64(&mut b, 24, M + 4096);
        assert!(matches!(
            Fmap::decode(&b),
            Err(FormatError::ExtentMisaligned { .. })
        ));
        put_u32(&mut b, 0, 1);
        put_u64(&mut b, 16, 0);
        assert_eq!(Fmap::decode(&b), Err(FormatError::BadStripCount(0)));
        put_u64(&mut b, 16, 1);
        put_u64(&mut b, 24, 4096);
        assert_eq!(Fmap::decode(&b), Err(FormatError::BadChunkSize(4096)));
        assert!(matches!(
            Fmap::decode(&b[..100]),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            Extent::new(4 * M, 4 * M).check_within(6 * M),
            Err(FormatError::ExtentBeyondDevice { .. })
        ));
        assert!(Extent::new(u64::MAX - M + 1, 2 * M)
            .check_within(u64::MAX)
            .is_err());
    }

    /// Regression (fuzzing, decode_log_entry): an extent ending past 2^64 was accepted and
    /// resolving an offset inside it overflowed.
    #[test]
    fn extent_wrapping_the_address_space_is_refused() {
        let top = u64::MAX / M * M;
        assert_eq!(
            Extent::new(top, 2 * M).validate(),
            Err(FormatError::ExtentOverflow {
                offset: top,
                len: 2 * M
            })
        );
        assert_eq!(Extent::new(top - M, M).validate(), Ok(()));
        let mut b = [0u8; FMAP_SIZE];
        put_u32(&mut b, 8, 1);
        put_u64(&mut b, 24, 2 * M);
        put_u64(&mut b, 32, u64::MAX / M * M);
        assert!(matches!(
            Fmap::decode(&b),
            Err(FormatError::ExtentOverflow { .. })
        ));
        // Interleaved strips too.
        put_u32(&mut b, 0, 1);
        put_u64(&mut b, 16, 1);
        put_u64(&mut b, 24, 2 * M);
        put_u64(&mut b, 32 + 8, top);
        put_u64(&mut b, 32 + 16, 4 * M);
        assert!(matches!(
            Fmap::decode(&b),
            Err(FormatError::ExtentOverflow { .. })
        ));
    }

    /// Where byte `off` of an interleaved map lives by the C famfs rules (famfs_kfmap.h and
    /// `famfs_interleave_fileofs_to_daxofs` in the C kernel): chunk `c = off / chunk` is in strip
    /// `c % nstrips` at `(c / nstrips) * chunk + off % chunk`; the C kernel checks no capacity, so
    /// a map holds `off` exactly when that byte lies inside its strip. Written here from the C
    /// sources, independent of `Fmap::resolve` and `Fmap::capacity`.
    fn c_rule(chunk: u64, strips: &[Extent], off: u64) -> Option<(u64, u64)> {
        let c = off / chunk;
        let s = &strips[(c % strips.len() as u64) as usize];
        let in_strip = (c / strips.len() as u64) * chunk + off % chunk;
        (in_strip < s.len).then_some((s.devindex, s.offset + in_strip))
    }

    /// The C tools' capacity for a file is every byte below the file size that `c_rule` places:
    /// strips may differ in length (the C kernel takes any strips whose round-robin reaches every
    /// byte of the file). Regression: famfs-format took the shortest strip times nstrips, so a
    /// FILE entry the C kernel serves (strip 0 of 8 MiB, strip 1 of 4 MiB, 12 MiB file, 4 MiB
    /// chunks) was refused as `FmapTooSmall` and its bytes 8..12 MiB did not resolve.
    #[test]
    fn interleave_capacity_is_the_c_round_robin() {
        let strips = vec![Extent::new(100 * M, 4 * M), Extent::new(200 * M, 2 * M)];
        let f = Fmap::Interleaved(Interleave::new(2 * M, strips.clone()).unwrap());
        assert_eq!(f.capacity(), 6 * M);
        for off in (0..6 * M).step_by((M / 2 + 7) as usize) {
            let s = f.resolve(off).unwrap();
            assert_eq!(
                Some((s.devindex, s.offset)),
                c_rule(2 * M, &strips, off),
                "{off}"
            );
        }
        assert_eq!(f.resolve(6 * M), None);
        assert_eq!(c_rule(2 * M, &strips, 6 * M), None);
    }

    proptest! {
        /// For any strips (lengths unequal, not multiples of the chunk): an offset resolves
        /// exactly when every byte below it is placed by the C rule, and to the same place.
        #[test]
        fn interleave_agrees_with_the_c_rule(
            chunks in 1u64..4,
            lens in proptest::collection::vec(1u64..9, 1..=6),
            probe in 0u64..64,
        ) {
            let chunk = chunks * M;
            let strips: Vec<Extent> = lens
                .iter()
                .enumerate()
                .map(|(i, &l)| Extent { devindex: i as u64 % 3, offset: (1 + i as u64 * 16) * M, len: l * M })
                .collect();
            let f = Fmap::Interleaved(Interleave::new(chunk, strips.clone()).unwrap());
            // The C capacity: the first byte (in 2 MiB steps) the round-robin cannot place.
            let mut cap = 0;
            while c_rule(chunk, &strips, cap).is_some() {
                cap += M;
            }
            // Whole chunks only: a chunk is usable when all of it fits its strip.
            let cap = cap / chunk * chunk;
            prop_assert_eq!(f.capacity(), cap);
            let off = probe * (M / 2) + probe % 5;
            match f.resolve(off) {
                Some(s) => {
                    prop_assert!(off < cap);
                    prop_assert_eq!(Some((s.devindex, s.offset)), c_rule(chunk, &strips, off));
                }
                None => prop_assert!(off >= cap),
            }
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Fmap::decode(&bytes);
        }

        #[test]
        fn simple_round_trip(units in proptest::collection::vec((1u64..1000, 1u64..100), 1..=16)) {
            let exts: Vec<Extent> = units.iter().map(|&(o, l)| Extent::new(o * M, l * M)).collect();
            let f = Fmap::simple(exts).unwrap();
            let mut b = [0u8; FMAP_SIZE];
            f.encode(&mut b);
            prop_assert_eq!(Fmap::decode(&b).unwrap(), f);
        }

        #[test]
        fn interleave_resolution_stays_in_strips(n in 1usize..=16, chunks in 1u64..4, stripes in 1u64..4, off in any::<u64>()) {
            let chunk = chunks * M;
            let strips: Vec<Extent> = (0..n).map(|i| Extent::new((1 + i as u64 * 64) * M, stripes * chunk)).collect();
            let f = Fmap::Interleaved(Interleave::new(chunk, strips.clone()).unwrap());
            let cap = f.capacity();
            prop_assert_eq!(cap, n as u64 * stripes * chunk);
            let off = off % (cap + 10);
            match f.resolve(off) {
                None => prop_assert!(off >= cap),
                Some(s) => {
                    prop_assert!(strips.iter().any(|e| s.offset >= e.offset && s.offset + s.len <= e.end()));
                }
            }
        }
    }
}
