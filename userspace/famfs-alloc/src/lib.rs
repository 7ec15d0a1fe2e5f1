//! The famfs allocator: a bitmap of 2 MiB units over the device, rebuilt from the log.
//!
//! famfs never frees space (no delete, truncate or append), so the bitmap is simply the union of all
//! extents of all FILE entries plus the superblock and log. Building it is linear in the number of
//! entries and allocating is a first-fit scan that skips full 64-unit words, which keeps both in the
//! microsecond-to-millisecond range even for a full log.

use famfs_format::{Extent, FormatError, Interleave, MAX_EXTENTS, MIB2};
use thiserror::Error;

/// The allocation unit of the bitmap.
pub const UNIT: u64 = MIB2;
/// Smallest bucket for interleaved allocation.
pub const MIN_BUCKET: u64 = 1 << 30;
/// Most buckets for interleaved allocation.
pub const MAX_BUCKETS: u64 = 64;

/// Allocation and marking errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllocError {
    #[error("no space: cannot find {needed} contiguous bytes (free: {free} bytes)")]
    NoSpace { needed: u64, free: u64 },
    #[error("no space for an interleaved file: only {found} of {nstrips} buckets have a free strip of {strip_len} bytes")]
    NoSpaceInterleaved { nstrips: u64, found: u64, strip_len: u64 },
    #[error("allocation collision: [{offset:#x}, +{len:#x}) overlaps space already in use")]
    Collision { offset: u64, len: u64 },
    #[error("extent [{offset:#x}, +{len:#x}) goes beyond the device ({device_size:#x} bytes)")]
    BeyondDevice { offset: u64, len: u64, device_size: u64 },
    /// Not damage: the extent ends inside the last, partial 2 MiB unit of a device whose size is
    /// not a multiple of 2 MiB. The C allocator counts that unit as allocatable (famfs-rs never
    /// allocates it); the file's bytes past the device end are not reachable.
    #[error("extent [{offset:#x}, +{len:#x}) reaches {past} bytes past the end of the device ({device_size:#x} bytes, not a multiple of 2 MiB): the C allocator hands out the partial last unit; those bytes do not exist")]
    InPartialUnit { offset: u64, len: u64, device_size: u64, past: u64 },
    #[error("size 0 cannot be allocated")]
    ZeroSize,
    #[error("bad interleave parameters: {0}")]
    BadInterleave(String),
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Parameters of an interleaved allocation, validated at construction against a device size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterleaveParams {
    nbuckets: u64,
    nstrips: u64,
    chunk_size: u64,
}

impl InterleaveParams {
    /// Checks the rules: chunk a power of two and a multiple of 2 MiB; 1 <= nstrips <= nbuckets;
    /// nstrips <= 16 (what an fmap holds); nbuckets <= 64 and every bucket at least 1 GiB.
    pub fn new(nbuckets: u64, nstrips: u64, chunk_size: u64, device_size: u64) -> Result<Self, AllocError> {
        let bad = |s: String| Err(AllocError::BadInterleave(s));
        if chunk_size == 0 || !chunk_size.is_power_of_two() || !chunk_size.is_multiple_of(UNIT) {
            return bad(format!("chunk size {chunk_size} must be a power of two and a multiple of 2 MiB"));
        }
        if nstrips == 0 || nstrips > nbuckets {
            return bad(format!("nstrips {nstrips} must be between 1 and nbuckets ({nbuckets})"));
        }
        if nstrips > MAX_EXTENTS as u64 {
            return bad(format!("nstrips {nstrips} exceeds the {MAX_EXTENTS} strips an fmap holds"));
        }
        if nbuckets > MAX_BUCKETS {
            return bad(format!("nbuckets {nbuckets} exceeds {MAX_BUCKETS}"));
        }
        if device_size / nbuckets < MIN_BUCKET {
            return bad(format!(
                "{nbuckets} buckets on a {} MiB device would be smaller than 1 GiB each",
                device_size >> 20
            ));
        }
        Ok(InterleaveParams { nbuckets, nstrips, chunk_size })
    }

    pub fn nbuckets(&self) -> u64 {
        self.nbuckets
    }
    pub fn nstrips(&self) -> u64 {
        self.nstrips
    }
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// Length of each strip for a file of `size` bytes: `ceil(size / (nstrips * chunk)) * chunk`.
    pub fn strip_len(&self, size: u64) -> u64 {
        let stripe = self.nstrips * self.chunk_size;
        size.div_ceil(stripe) * self.chunk_size
    }
}

/// The allocation bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    device_size: u64,
    units: u64,
    words: Vec<u64>,
    used: u64,
}

/// A small deterministic generator (splitmix64) for the bucket shuffle.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Bitmap {
    /// A bitmap for a device of `device_size` bytes with `[0, reserved)` (superblock and log) taken.
    pub fn new(device_size: u64, reserved: u64) -> Self {
        let units = device_size / UNIT;
        let mut b = Bitmap { device_size, units, words: vec![0; units.div_ceil(64) as usize], used: 0 };
        let r = reserved.div_ceil(UNIT).min(units);
        b.set_range(0, r);
        b
    }

    /// Device size in bytes.
    pub fn device_size(&self) -> u64 {
        self.device_size
    }

    /// Number of 2 MiB units on the device.
    pub fn total_units(&self) -> u64 {
        self.units
    }

    /// Units in use.
    pub fn used_units(&self) -> u64 {
        self.used
    }

    /// Free bytes.
    pub fn free_bytes(&self) -> u64 {
        (self.units - self.used) * UNIT
    }

    /// Whether unit `u` is taken.
    pub fn is_set(&self, u: u64) -> bool {
        u < self.units && self.words[(u / 64) as usize] & (1 << (u % 64)) != 0
    }

    fn set_range(&mut self, start: u64, n: u64) {
        for u in start..start + n {
            let w = &mut self.words[(u / 64) as usize];
            let bit = 1u64 << (u % 64);
            if *w & bit == 0 {
                *w |= bit;
                self.used += 1;
            }
        }
    }

    fn clear_range(&mut self, start: u64, n: u64) {
        for u in start..start + n {
            let w = &mut self.words[(u / 64) as usize];
            let bit = 1u64 << (u % 64);
            if *w & bit != 0 {
                *w &= !bit;
                self.used -= 1;
            }
        }
    }

    /// Marks an extent of a played FILE entry. Everything inside the device is marked even when
    /// something collides, so one bad entry is reported once and not blamed on later ones.
    /// An extent ending in the partial last unit of a device whose size is not a multiple of
    /// 2 MiB (as the C allocator makes them) gives [`AllocError::InPartialUnit`], not
    /// [`AllocError::BeyondDevice`]; collisions are reported first.
    pub fn mark(&mut self, e: &Extent) -> Result<(), AllocError> {
        let start = e.offset / UNIT;
        let end_units = e.end().div_ceil(UNIT);
        let in_dev_end = end_units.min(self.units);
        let partial_end = self.device_size.div_ceil(UNIT) * UNIT;
        let mut first_collision = None;
        let mut ncollide = 0;
        for u in start.min(in_dev_end)..in_dev_end {
            if self.is_set(u) {
                first_collision.get_or_insert(u);
                ncollide += 1;
            }
        }
        self.set_range(start.min(in_dev_end), in_dev_end - start.min(in_dev_end));
        let overflow = e.offset.checked_add(e.len).is_none();
        if overflow || (end_units > self.units && e.end() > partial_end) {
            return Err(AllocError::BeyondDevice { offset: e.offset, len: e.len, device_size: self.device_size });
        }
        if let Some(u) = first_collision {
            return Err(AllocError::Collision { offset: u * UNIT, len: ncollide * UNIT });
        }
        if end_units > self.units {
            let past = e.end() - self.device_size.min(e.end());
            return Err(AllocError::InPartialUnit { offset: e.offset, len: e.len, device_size: self.device_size, past });
        }
        Ok(())
    }

    /// First free run of `n` units within units `[lo, hi)`.
    fn find_run(&self, n: u64, lo: u64, hi: u64) -> Option<u64> {
        let hi = hi.min(self.units);
        let mut u = lo;
        let mut run_start = lo;
        let mut run = 0;
        while u < hi {
            // Skip whole full words quickly.
            if u.is_multiple_of(64) && u + 64 <= hi && self.words[(u / 64) as usize] == u64::MAX {
                u += 64;
                run = 0;
                run_start = u;
                continue;
            }
            if self.is_set(u) {
                run = 0;
                run_start = u + 1;
            } else {
                run += 1;
                if run == n {
                    return Some(run_start);
                }
            }
            u += 1;
        }
        None
    }

    /// First-fit contiguous allocation of `size` bytes rounded up to 2 MiB: one extent.
    pub fn alloc_contiguous(&mut self, size: u64) -> Result<Extent, AllocError> {
        self.alloc_contiguous_from(size, &mut 0)
    }

    /// Contiguous allocation from a cursor, as the C allocator does within one locked session
    /// (several files created under one log lock): the first fit at or after `*cursor` (a byte
    /// offset), which then moves to the end of the new extent. When nothing fits after the cursor
    /// the search starts over from the beginning of the device (the C allocator fails there).
    /// Only whole 2 MiB units inside the device are ever handed out.
    pub fn alloc_contiguous_from(&mut self, size: u64, cursor: &mut u64) -> Result<Extent, AllocError> {
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        let n = size.div_ceil(UNIT);
        let from = (*cursor / UNIT).min(self.units);
        let start = self
            .find_run(n, from, self.units)
            .or_else(|| self.find_run(n, 0, self.units))
            .ok_or(AllocError::NoSpace { needed: n * UNIT, free: self.free_bytes() })?;
        self.set_range(start, n);
        *cursor = (start + n) * UNIT;
        Ok(Extent::new(start * UNIT, n * UNIT))
    }

    /// First-fit run of `len` bytes (a multiple of 2 MiB) anywhere on the device, without
    /// touching any cursor: one strip of an interleaved file spread over several devices.
    /// `None` when no run is free.
    pub fn alloc_strip(&mut self, len: u64) -> Option<Extent> {
        let n = len.div_ceil(UNIT);
        if n == 0 {
            return None;
        }
        let start = self.find_run(n, 0, self.units)?;
        self.set_range(start, n);
        Some(Extent::new(start * UNIT, n * UNIT))
    }

    /// Interleaved allocation: the device is split into `nbuckets` equal buckets, visited in an order
    /// shuffled by `seed`, and one first-fit strip is taken from each until `nstrips` strips are found.
    /// On failure nothing stays allocated.
    pub fn alloc_interleaved(&mut self, size: u64, p: &InterleaveParams, seed: u64) -> Result<Interleave, AllocError> {
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        let strip_len = p.strip_len(size);
        let strip_units = strip_len / UNIT;
        let bucket_units = self.units / p.nbuckets;
        let mut order: Vec<u64> = (0..p.nbuckets).collect();
        let mut st = seed;
        for i in (1..order.len()).rev() {
            let j = (splitmix(&mut st) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut strips = Vec::new();
        for b in order {
            if strips.len() as u64 == p.nstrips {
                break;
            }
            let lo = b * bucket_units;
            if let Some(start) = self.find_run(strip_units, lo, lo + bucket_units) {
                self.set_range(start, strip_units);
                strips.push(Extent::new(start * UNIT, strip_len));
            }
        }
        if (strips.len() as u64) < p.nstrips {
            for s in &strips {
                self.clear_range(s.offset / UNIT, strip_units);
            }
            return Err(AllocError::NoSpaceInterleaved { nstrips: p.nstrips, found: strips.len() as u64, strip_len });
        }
        Ok(Interleave::new(p.chunk_size, strips)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use famfs_format::Fmap;
    use proptest::prelude::*;

    const G: u64 = 1 << 30;
    const RESERVED: u64 = (2 << 20) + (8 << 20);

    #[test]
    fn reserved_and_first_fit() {
        let mut b = Bitmap::new(4 * G, RESERVED);
        assert_eq!(b.used_units(), 5);
        let e = b.alloc_contiguous(1).unwrap();
        assert_eq!(e, Extent::new(10 << 20, 2 << 20));
        let e2 = b.alloc_contiguous(5 << 20).unwrap();
        assert_eq!(e2, Extent::new(12 << 20, 6 << 20));
        assert!(matches!(b.mark(&e), Err(AllocError::Collision { .. })));
        assert!(matches!(b.mark(&Extent::new(4 * G - UNIT, 2 * UNIT)), Err(AllocError::BeyondDevice { .. })));
        assert_eq!(b.alloc_contiguous(0), Err(AllocError::ZeroSize));
    }

    #[test]
    fn cursor_kept_then_wraps() {
        let mut b = Bitmap::new(4 * G, RESERVED);
        // A hole of one unit at 12M: [10M,12M) and [14M,16M) taken.
        b.mark(&Extent::new(10 << 20, 2 << 20)).unwrap();
        b.mark(&Extent::new(14 << 20, 2 << 20)).unwrap();
        let mut cur = 0;
        assert_eq!(b.alloc_contiguous_from(4 << 20, &mut cur).unwrap(), Extent::new(16 << 20, 4 << 20));
        assert_eq!(cur, 20 << 20);
        // The cursor is past the hole: the next small file goes after it (as C does).
        assert_eq!(b.alloc_contiguous_from(1, &mut cur).unwrap(), Extent::new(20 << 20, 2 << 20));
        // Nothing fits after the cursor: start over from the beginning (C would fail).
        let mut end = 4 * G - UNIT;
        assert_eq!(b.alloc_contiguous_from(1, &mut end).unwrap(), Extent::new(4 * G - UNIT, UNIT));
        assert_eq!(b.alloc_contiguous_from(1, &mut end).unwrap(), Extent::new(12 << 20, UNIT));
        // A fresh cursor is first fit.
        assert_eq!(b.alloc_contiguous(1).unwrap(), Extent::new(22 << 20, UNIT));
    }

    #[test]
    fn partial_last_unit() {
        let dev = 4 * G + (1 << 20); // not a multiple of 2 MiB
        let mut b = Bitmap::new(dev, RESERVED);
        assert_eq!(b.total_units(), 4 * G / UNIT);
        // An extent covering the partial unit (as the C allocator makes it): not BeyondDevice.
        let e = Extent::new(4 * G, UNIT);
        assert_eq!(b.mark(&e), Err(AllocError::InPartialUnit { offset: 4 * G, len: UNIT, device_size: dev, past: 1 << 20 }));
        assert_eq!(b.clone().mark(&e), Err(AllocError::InPartialUnit { offset: 4 * G, len: UNIT, device_size: dev, past: 1 << 20 }));
        // One unit further is beyond the device.
        assert!(matches!(b.mark(&Extent::new(4 * G, 2 * UNIT)), Err(AllocError::BeyondDevice { .. })));
        // We never hand the partial unit out: filling the device ends at the last whole unit.
        let free = b.free_bytes();
        let e = b.alloc_contiguous(free).unwrap();
        assert_eq!(e.end(), 4 * G);
        assert!(matches!(b.alloc_contiguous(1), Err(AllocError::NoSpace { .. })));
    }

    #[test]
    fn full_device() {
        let mut b = Bitmap::new(4 * G, RESERVED);
        let free = b.free_bytes();
        let e = b.alloc_contiguous(free).unwrap();
        assert_eq!(e.end(), 4 * G);
        assert!(matches!(b.alloc_contiguous(1), Err(AllocError::NoSpace { .. })));
        assert_eq!(b.used_units(), b.total_units());
    }

    #[test]
    fn interleave_params() {
        assert!(InterleaveParams::new(4, 4, 2 << 20, 8 * G).is_ok());
        assert!(InterleaveParams::new(4, 5, 2 << 20, 8 * G).is_err());
        assert!(InterleaveParams::new(4, 0, 2 << 20, 8 * G).is_err());
        assert!(InterleaveParams::new(4, 4, 3 << 20, 8 * G).is_err());
        assert!(InterleaveParams::new(4, 4, 1 << 20, 8 * G).is_err());
        assert!(InterleaveParams::new(16, 4, 2 << 20, 8 * G).is_err()); // buckets < 1 GiB
        assert!(InterleaveParams::new(65, 4, 2 << 20, 1 << 40).is_err());
        assert!(InterleaveParams::new(32, 17, 2 << 20, 1 << 40).is_err());
        let p = InterleaveParams::new(4, 3, 2 << 20, 8 * G).unwrap();
        assert_eq!(p.strip_len(1), 2 << 20);
        assert_eq!(p.strip_len(6 << 20), 2 << 20);
        assert_eq!(p.strip_len((6 << 20) + 1), 4 << 20);
    }

    #[test]
    fn interleave_failure_rolls_back() {
        let mut b = Bitmap::new(4 * G, RESERVED);
        let p = InterleaveParams::new(4, 4, 2 << 20, 4 * G).unwrap();
        // Fill bucket 2 completely.
        b.mark(&Extent::new(2 * G, G)).unwrap();
        let used = b.used_units();
        assert!(matches!(b.alloc_interleaved(1, &p, 1), Err(AllocError::NoSpaceInterleaved { found: 3, .. })));
        assert_eq!(b.used_units(), used);
    }

    fn no_overlap(exts: &[Extent]) -> bool {
        let mut v: Vec<_> = exts.to_vec();
        v.sort_by_key(|e| e.offset);
        v.windows(2).all(|w| w[0].end() <= w[1].offset)
    }

    proptest! {
        #[test]
        fn contiguous_properties(sizes in proptest::collection::vec(1u64..(300 << 20), 1..60)) {
            let dev = 4 * G;
            let mut b = Bitmap::new(dev, RESERVED);
            let mut got = Vec::new();
            for s in sizes {
                match b.alloc_contiguous(s) {
                    Ok(e) => {
                        prop_assert_eq!(e.offset % UNIT, 0);
                        prop_assert_eq!(e.len % UNIT, 0);
                        prop_assert!(e.len >= s && e.len < s + UNIT);
                        prop_assert!(e.offset >= RESERVED && e.end() <= dev);
                        got.push(e);
                    }
                    Err(AllocError::NoSpace { free, .. }) => {
                        // Full (or too fragmented) device: nothing was taken.
                        prop_assert_eq!(free, b.free_bytes());
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            prop_assert!(no_overlap(&got));
            let used: u64 = got.iter().map(|e| e.len / UNIT).sum::<u64>() + RESERVED / UNIT;
            prop_assert_eq!(used, b.used_units());
            // Rebuilding from the extents gives the same bitmap without collisions.
            let mut r = Bitmap::new(dev, RESERVED);
            for e in &got { prop_assert!(r.mark(e).is_ok()); }
            prop_assert_eq!(r, b);
        }

        #[test]
        fn interleaved_properties(nb in 1u64..=8, ns_frac in 0u64..8, chunk_pow in 0u32..3, sizes in proptest::collection::vec(1u64..(512 << 20), 1..30), seed in any::<u64>()) {
            let dev = 8 * G;
            let ns = 1 + ns_frac % nb;
            let chunk = (2u64 << 20) << chunk_pow;
            let p = InterleaveParams::new(nb, ns, chunk, dev).unwrap();
            let mut b = Bitmap::new(dev, RESERVED);
            let bucket = (dev / UNIT / nb) * UNIT;
            let mut all = Vec::new();
            for (i, s) in sizes.into_iter().enumerate() {
                let before = b.used_units();
                match b.alloc_interleaved(s, &p, seed ^ i as u64) {
                    Ok(il) => {
                        prop_assert_eq!(il.nstrips(), ns);
                        prop_assert_eq!(il.chunk_size(), chunk);
                        let f = Fmap::Interleaved(il.clone());
                        prop_assert!(f.capacity() >= s);
                        let mut buckets: Vec<u64> = il.strips().iter().map(|e| e.offset / bucket).collect();
                        for e in il.strips() {
                            prop_assert_eq!(e.len, p.strip_len(s));
                            prop_assert_eq!(e.len % chunk, 0);
                            prop_assert_eq!((e.end() - 1) / bucket, e.offset / bucket, "strip crosses a bucket");
                        }
                        buckets.sort();
                        buckets.dedup();
                        prop_assert_eq!(buckets.len() as u64, ns, "strips share a bucket");
                        all.extend_from_slice(il.strips());
                    }
                    Err(AllocError::NoSpaceInterleaved { .. }) => prop_assert_eq!(b.used_units(), before),
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            prop_assert!(no_overlap(&all));
            prop_assert!(all.iter().all(|e| e.offset >= RESERVED));
        }
    }
}
