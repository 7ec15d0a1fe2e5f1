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
    #[error("no space: {needed} bytes do not fit in the {max_extents} extents a file may have (free: {free} bytes, too fragmented)")]
    Fragmented {
        needed: u64,
        free: u64,
        max_extents: usize,
    },
    #[error("no space for an interleaved file: only {found} free strips of {strip_len} bytes found, {nstrips} needed")]
    NoSpaceInterleaved {
        nstrips: u64,
        found: u64,
        strip_len: u64,
    },
    #[error("allocation collision: [{offset:#x}, +{len:#x}) overlaps space already in use")]
    Collision { offset: u64, len: u64 },
    #[error("extent [{offset:#x}, +{len:#x}) goes beyond the device ({device_size:#x} bytes)")]
    BeyondDevice {
        offset: u64,
        len: u64,
        device_size: u64,
    },
    /// Not damage: the extent ends inside the last, partial 2 MiB unit of a device whose size is
    /// not a multiple of 2 MiB. The C allocator counts that unit as allocatable (famfs-rs never
    /// allocates it); the file's bytes past the device end are not reachable.
    #[error("extent [{offset:#x}, +{len:#x}) reaches {past} bytes past the end of the device ({device_size:#x} bytes, not a multiple of 2 MiB): the C allocator hands out the partial last unit; those bytes do not exist")]
    InPartialUnit {
        offset: u64,
        len: u64,
        device_size: u64,
        past: u64,
    },
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
    pub fn new(
        nbuckets: u64,
        nstrips: u64,
        chunk_size: u64,
        device_size: u64,
    ) -> Result<Self, AllocError> {
        let bad = |s: String| Err(AllocError::BadInterleave(s));
        if chunk_size == 0 || !chunk_size.is_power_of_two() || !chunk_size.is_multiple_of(UNIT) {
            return bad(format!(
                "chunk size {chunk_size} must be a power of two and a multiple of 2 MiB"
            ));
        }
        if nstrips == 0 || nstrips > nbuckets {
            return bad(format!(
                "nstrips {nstrips} must be between 1 and nbuckets ({nbuckets})"
            ));
        }
        if nstrips > MAX_EXTENTS as u64 {
            return bad(format!(
                "nstrips {nstrips} exceeds the {MAX_EXTENTS} strips an fmap holds"
            ));
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
        Ok(InterleaveParams {
            nbuckets,
            nstrips,
            chunk_size,
        })
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

    /// Length of each strip for a file of `size` bytes: every strip as long as the one the
    /// layout rule deals the most chunks to (strip 0; famfs-fmap's `dealt_chunks`), which is
    /// the C allocator's `ceil(size / (nstrips * chunk)) * chunk`. Equal strips, as C makes.
    pub fn strip_len(&self, size: u64) -> u64 {
        let chunks = famfs_fmap::chunks_for(size, self.chunk_size).unwrap_or(0);
        famfs_fmap::dealt_chunks(chunks, self.nstrips, 0).unwrap_or(0) * self.chunk_size
    }
}

/// The allocation bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    device_size: u64,
    units: u64,
    words: Vec<u64>,
    used: u64,
    /// Units `[0, reserved)` (superblock and log) are never released.
    reserved: u64,
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
        let mut b = Bitmap {
            device_size,
            units,
            words: vec![0; units.div_ceil(64) as usize],
            used: 0,
            reserved: 0,
        };
        let r = reserved.div_ceil(UNIT).min(units);
        b.set_range(0, r);
        b.reserved = r;
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

    /// Frees the units of an extent (the memory of a deleted file, when its RECLAIM entry is
    /// played). Units past the device end and the reserved units (superblock, log) stay as they
    /// are. The caller marks again whatever another file still holds there (only damage, a
    /// collision, can make two files share a unit).
    pub fn release(&mut self, e: &Extent) {
        let start = (e.offset / UNIT).max(self.reserved);
        let end = e
            .offset
            .saturating_add(e.len)
            .div_ceil(UNIT)
            .min(self.units);
        if start < end {
            self.clear_range(start, end - start);
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
            return Err(AllocError::BeyondDevice {
                offset: e.offset,
                len: e.len,
                device_size: self.device_size,
            });
        }
        if let Some(u) = first_collision {
            return Err(AllocError::Collision {
                offset: u * UNIT,
                len: ncollide * UNIT,
            });
        }
        if end_units > self.units {
            let past = e.end() - self.device_size.min(e.end());
            return Err(AllocError::InPartialUnit {
                offset: e.offset,
                len: e.len,
                device_size: self.device_size,
                past,
            });
        }
        Ok(())
    }

    /// Whether unit `u` is taken in the bitmap or by one of the `(start, n)` unit runs of `held`
    /// (extents chosen for a file whose entry is not applied yet).
    fn taken(&self, u: u64, held: &[(u64, u64)]) -> bool {
        self.is_set(u) || held.iter().any(|&(s, n)| u >= s && u < s + n)
    }

    /// First free run of `n` units within units `[lo, hi)`, not overlapping `held`.
    fn find_run(&self, n: u64, lo: u64, hi: u64, held: &[(u64, u64)]) -> Option<u64> {
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
            if self.taken(u, held) {
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

    /// Every maximal free run of the device as `(start unit, units)`, in device order.
    fn free_runs(&self) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        let mut u = 0;
        let mut start = None;
        while u < self.units {
            let w = self.words[(u / 64) as usize];
            if u.is_multiple_of(64) && u + 64 <= self.units && (w == u64::MAX || w == 0) {
                match (w == 0, start) {
                    (true, None) => start = Some(u),
                    (false, Some(s)) => {
                        runs.push((s, u - s));
                        start = None;
                    }
                    _ => {}
                }
                u += 64;
                continue;
            }
            match (self.is_set(u), start) {
                (false, None) => start = Some(u),
                (true, Some(s)) => {
                    runs.push((s, u - s));
                    start = None;
                }
                _ => {}
            }
            u += 1;
        }
        if let Some(s) = start {
            runs.push((s, self.units - s));
        }
        runs
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
    pub fn alloc_contiguous_from(
        &mut self,
        size: u64,
        cursor: &mut u64,
    ) -> Result<Extent, AllocError> {
        let e = self.find_contiguous(size, *cursor)?;
        self.set_range(e.offset / UNIT, e.len / UNIT);
        *cursor = e.end();
        Ok(e)
    }

    /// Where [`Bitmap::alloc_contiguous_from`] would put `size` bytes, without taking them.
    pub fn find_contiguous(&self, size: u64, cursor: u64) -> Result<Extent, AllocError> {
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        let n = size.div_ceil(UNIT);
        let from = (cursor / UNIT).min(self.units);
        let start = self
            .find_run(n, from, self.units, &[])
            .or_else(|| self.find_run(n, 0, self.units, &[]))
            .ok_or(AllocError::NoSpace {
                needed: n * UNIT,
                free: self.free_bytes(),
            })?;
        Ok(Extent::new(start * UNIT, n * UNIT))
    }

    /// The extents of a plain file of `size` bytes, without taking them: one contiguous extent
    /// when a free run is long enough (as [`Bitmap::find_contiguous`]); otherwise the longest free
    /// runs, longest first, until the size is covered, if that takes at most [`MAX_EXTENTS`]
    /// extents (what a simple fmap holds). The C allocator knows only the first case.
    pub fn find_simple(&self, size: u64, cursor: u64) -> Result<Vec<Extent>, AllocError> {
        match self.find_contiguous(size, cursor) {
            Ok(e) => return Ok(vec![e]),
            Err(AllocError::NoSpace { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut need = size.div_ceil(UNIT);
        let mut runs = self.free_runs();
        runs.sort_by_key(|&(s, n)| (std::cmp::Reverse(n), s));
        let mut out = Vec::new();
        for (s, n) in runs.into_iter().take(MAX_EXTENTS) {
            let k = n.min(need);
            out.push(Extent::new(s * UNIT, k * UNIT));
            need -= k;
            if need == 0 {
                return Ok(out);
            }
        }
        Err(AllocError::Fragmented {
            needed: size.div_ceil(UNIT) * UNIT,
            free: self.free_bytes(),
            max_extents: MAX_EXTENTS,
        })
    }

    /// Marks extents found by one of the `find_*` functions (for callers that keep the bitmap
    /// themselves); fails like [`Bitmap::mark`] if they were taken meanwhile.
    pub fn take(&mut self, extents: &[Extent]) -> Result<(), AllocError> {
        for e in extents {
            self.mark(e)?;
        }
        Ok(())
    }

    /// First-fit run of `len` bytes (a multiple of 2 MiB) anywhere on the device, without
    /// touching any cursor: one strip of an interleaved file spread over several devices.
    /// `None` when no run is free.
    pub fn alloc_strip(&mut self, len: u64) -> Option<Extent> {
        let e = self.find_strip(len)?;
        self.set_range(e.offset / UNIT, e.len / UNIT);
        Some(e)
    }

    /// Where [`Bitmap::alloc_strip`] would put a strip, without taking it.
    pub fn find_strip(&self, len: u64) -> Option<Extent> {
        let n = len.div_ceil(UNIT);
        if n == 0 {
            return None;
        }
        let start = self.find_run(n, 0, self.units, &[])?;
        Some(Extent::new(start * UNIT, n * UNIT))
    }

    /// Interleaved allocation (see [`Bitmap::find_interleaved`]), marking the strips.
    pub fn alloc_interleaved(
        &mut self,
        size: u64,
        p: &InterleaveParams,
        seed: u64,
    ) -> Result<Interleave, AllocError> {
        let il = self.find_interleaved(size, p, seed)?;
        for s in il.strips() {
            self.set_range(s.offset / UNIT, s.len / UNIT);
        }
        Ok(il)
    }

    /// The strips of an interleaved file, without taking them. The device is split into
    /// `nbuckets` equal buckets, visited in an order shuffled by `seed`; each gives the first free
    /// strip inside it, until `nstrips` strips are found. When fewer buckets than that have room,
    /// the missing strips are the first free runs anywhere on the device (they may share a bucket
    /// with another strip or cross a bucket boundary): the C allocator does the same only for a
    /// bucket that is completely full (its search runs on past the bucket's end) and fails when
    /// a bucket has some room but not enough; a file it can place, this places too.
    pub fn find_interleaved(
        &self,
        size: u64,
        p: &InterleaveParams,
        seed: u64,
    ) -> Result<Interleave, AllocError> {
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
        let mut held: Vec<(u64, u64)> = Vec::new();
        for b in order {
            if held.len() as u64 == p.nstrips {
                break;
            }
            let lo = b * bucket_units;
            if let Some(start) = self.find_run(strip_units, lo, lo + bucket_units, &held) {
                held.push((start, strip_units));
            }
        }
        while (held.len() as u64) < p.nstrips {
            match self.find_run(strip_units, 0, self.units, &held) {
                Some(start) => held.push((start, strip_units)),
                None => break,
            }
        }
        if (held.len() as u64) < p.nstrips {
            return Err(AllocError::NoSpaceInterleaved {
                nstrips: p.nstrips,
                found: held.len() as u64,
                strip_len,
            });
        }
        let strips = held
            .iter()
            .map(|&(s, _)| Extent::new(s * UNIT, strip_len))
            .collect();
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
        assert!(matches!(
            b.mark(&Extent::new(4 * G - UNIT, 2 * UNIT)),
            Err(AllocError::BeyondDevice { .. })
        ));
        assert_eq!(b.alloc_contiguous(0), Err(AllocError::ZeroSize));
    }

    #[test]
    fn release_frees_for_reuse_but_never_the_log() {
        let mut b = Bitmap::new(4 * G, RESERVED);
        let e = b.alloc_contiguous(6 << 20).unwrap();
        let f = b.alloc_contiguous(2 << 20).unwrap();
        assert_eq!(b.used_units(), 5 + 4);
        b.release(&e);
        assert_eq!(b.used_units(), 5 + 1);
        // The space comes back: the same offset is handed out again.
        assert_eq!(b.alloc_contiguous(6 << 20).unwrap(), e);
        assert!(b.is_set(f.offset / UNIT));
        // An extent reaching into the log or past the device end frees only what it may.
        b.release(&Extent::new(UNIT, 4 * UNIT));
        assert!(
            (0..5).all(|u| b.is_set(u)),
            "the superblock and log stay taken"
        );
        assert_eq!(b.used_units(), 5 + 4);
        b.mark(&Extent::new(4 * G - UNIT, UNIT)).unwrap();
        b.release(&Extent::new(4 * G - UNIT, 4 * UNIT));
        assert_eq!(b.used_units(), 5 + 4);
        assert!(!b.is_set(4 * G / UNIT - 1));
    }

    #[test]
    fn cursor_kept_then_wraps() {
        let mut b = Bitmap::new(4 * G, RESERVED);
        // A hole of one unit at 12M: [10M,12M) and [14M,16M) taken.
        b.mark(&Extent::new(10 << 20, 2 << 20)).unwrap();
        b.mark(&Extent::new(14 << 20, 2 << 20)).unwrap();
        let mut cur = 0;
        assert_eq!(
            b.alloc_contiguous_from(4 << 20, &mut cur).unwrap(),
            Extent::new(16 << 20, 4 << 20)
        );
        assert_eq!(cur, 20 << 20);
        // The cursor is past the hole: the next small file goes after it (as C does).
        assert_eq!(
            b.alloc_contiguous_from(1, &mut cur).unwrap(),
            Extent::new(20 << 20, 2 << 20)
        );
        // Nothing fits after the cursor: start over from the beginning (C would fail).
        let mut end = 4 * G - UNIT;
        assert_eq!(
            b.alloc_contiguous_from(1, &mut end).unwrap(),
            Extent::new(4 * G - UNIT, UNIT)
        );
        assert_eq!(
            b.alloc_contiguous_from(1, &mut end).unwrap(),
            Extent::new(12 << 20, UNIT)
        );
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
        assert_eq!(
            b.mark(&e),
            Err(AllocError::InPartialUnit {
                offset: 4 * G,
                len: UNIT,
                device_size: dev,
                past: 1 << 20
            })
        );
        assert_eq!(
            b.clone().mark(&e),
            Err(AllocError::InPartialUnit {
                offset: 4 * G,
                len: UNIT,
                device_size: dev,
                past: 1 << 20
            })
        );
        // One unit further is beyond the device.
        assert!(matches!(
            b.mark(&Extent::new(4 * G, 2 * UNIT)),
            Err(AllocError::BeyondDevice { .. })
        ));
        // We never hand the partial unit out: filling the device ends at the last whole unit.
        let free = b.free_bytes();
        let e = b.alloc_contiguous(free).unwrap();
        assert_eq!(e.end(), 4 * G);
        assert!(matches!(
            b.alloc_contiguous(1),
            Err(AllocError::NoSpace { .. })
        ));
    }

    #[test]
    fn full_device() {
        let mut b = Bitmap::new(4 * G, RESERVED);
        let free = b.free_bytes();
        let e = b.alloc_contiguous(free).unwrap();
        assert_eq!(e.end(), 4 * G);
        assert!(matches!(
            b.alloc_contiguous(1),
            Err(AllocError::NoSpace { .. })
        ));
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
    fn interleave_full_bucket_and_failure_rolls_back() {
        let mut b = Bitmap::new(4 * G, RESERVED);
        let p = InterleaveParams::new(4, 4, 2 << 20, 4 * G).unwrap();
        // Bucket 2 completely full: its strip goes elsewhere (as in C, where the search runs on
        // past a full bucket).
        b.mark(&Extent::new(2 * G, G)).unwrap();
        let il = b.alloc_interleaved(8 << 20, &p, 1).unwrap();
        assert_eq!(il.nstrips(), 4);
        assert!(il.strips().iter().all(|e| e.offset / G != 2), "{il:?}");
        // Two free units left on the whole device: a file needing 4 strips of 1 unit fails and
        // takes nothing.
        let mut b = Bitmap::new(4 * G, RESERVED);
        b.mark(&Extent::new(RESERVED, 4 * G - RESERVED - 2 * UNIT))
            .unwrap();
        let used = b.used_units();
        assert!(matches!(
            b.alloc_interleaved(1, &p, 1),
            Err(AllocError::NoSpaceInterleaved { found: 2, .. })
        ));
        assert_eq!(b.used_units(), used);
    }

    /// Plain files: one extent when a run is long enough, else the longest runs (at most 16).
    #[test]
    fn simple_takes_several_extents() {
        let mut b = Bitmap::new(4 * G, RESERVED);
        // Free: three holes of 10, 6 and 4 units, the rest taken.
        let holes = [(100u64, 10u64), (300, 6), (500, 4)];
        let mut at = RESERVED / UNIT;
        for &(s, n) in &holes {
            b.mark(&Extent::new(at * UNIT, (s - at) * UNIT)).unwrap();
            at = s + n;
        }
        b.mark(&Extent::new(at * UNIT, 4 * G - at * UNIT)).unwrap();
        assert_eq!(
            b.find_simple(8 * UNIT, 0).unwrap(),
            vec![Extent::new(100 * UNIT, 8 * UNIT)]
        );
        assert_eq!(
            b.find_simple(13 * UNIT, 0).unwrap(),
            vec![
                Extent::new(100 * UNIT, 10 * UNIT),
                Extent::new(300 * UNIT, 3 * UNIT)
            ]
        );
        assert_eq!(b.find_simple(20 * UNIT, 0).unwrap().len(), 3);
        assert!(matches!(
            b.find_simple(21 * UNIT, 0),
            Err(AllocError::Fragmented { .. })
        ));
        // Nothing was taken by looking.
        assert_eq!(b.free_bytes(), 20 * UNIT);
        // 17 holes of one unit: 16 extents at most.
        let mut b = Bitmap::new(4 * G, RESERVED);
        b.mark(&Extent::new(RESERVED, 4 * G - RESERVED)).unwrap();
        let mut b2 = Bitmap::new(4 * G, 4 * G);
        for k in 0..17 {
            b.clear_range(100 + 2 * k, 1);
        }
        assert_eq!(b.find_simple(16 * UNIT, 0).unwrap().len(), 16);
        assert!(matches!(
            b.find_simple(17 * UNIT, 0),
            Err(AllocError::Fragmented { .. })
        ));
        assert!(matches!(
            b2.alloc_contiguous(1),
            Err(AllocError::NoSpace { .. })
        ));
    }

    fn no_overlap(exts: &[Extent]) -> bool {
        let mut v: Vec<_> = exts.to_vec();
        v.sort_by_key(|e| e.offset);
        v.windows(2).all(|w| w[0].end() <= w[1].offset)
    }

    /// A model of the C allocator (famfs_alloc.c as read, not copied), on its own bitmap of
    /// 2 MiB units: the contiguous search from a position, limited to a range when one is given,
    /// including what its unsigned "remaining space" arithmetic does once the search has run past
    /// the range (it no longer limits: a strip whose bucket is full lands after it).
    struct CModel {
        bits: Vec<bool>,
    }

    impl CModel {
        fn new(device_size: u64, reserved: u64) -> Self {
            let mut bits = vec![false; (device_size / UNIT) as usize];
            bits.iter_mut()
                .take(reserved.div_ceil(UNIT) as usize)
                .for_each(|b| *b = true);
            CModel { bits }
        }
        fn mark(&mut self, e: &Extent) {
            for u in e.offset / UNIT..e.end() / UNIT {
                self.bits[u as usize] = true;
            }
        }
        fn contig(&mut self, n: u64, pos: u64, range: Option<u64>) -> Option<u64> {
            let nbits = self.bits.len() as u64;
            let range = range.unwrap_or(nbits);
            for i in pos..nbits {
                if self.bits[i as usize] {
                    continue;
                }
                let remainder = (pos + range).checked_sub(i).unwrap_or(u64::MAX);
                if n > remainder {
                    return None;
                }
                if (i..i + n).all(|j| j < nbits && !self.bits[j as usize]) {
                    (i..i + n).for_each(|j| self.bits[j as usize] = true);
                    return Some(i);
                }
            }
            None
        }
        fn plain(&mut self, size: u64) -> bool {
            self.contig(size.div_ceil(UNIT), 0, None).is_some()
        }
        fn interleaved(
            &mut self,
            size: u64,
            nbuckets: u64,
            nstrips: u64,
            chunk: u64,
            order: &[u64],
        ) -> bool {
            if size < chunk {
                return self.plain(size);
            }
            let chunk_u = chunk / UNIT;
            let strip = size.div_ceil(UNIT).div_ceil(nstrips * chunk_u) * chunk_u;
            let bucket = self.bits.len() as u64 / nbuckets;
            let mut got = Vec::new();
            for &b in order {
                if let Some(s) = self.contig(strip, b * bucket, Some(bucket)) {
                    got.push(s);
                    if got.len() as u64 == nstrips {
                        return true;
                    }
                }
            }
            for s in got {
                (s..s + strip).for_each(|j| self.bits[j as usize] = false);
            }
            false
        }
    }

    /// A file of a replayed sequence: interleaved (nbuckets, nstrips, chunk) or plain.
    #[derive(Clone, Copy)]
    enum Req {
        Il(u64, u64, u64, u64),
        Plain(u64),
    }

    /// Files and bytes placed by the C model and by us for `reqs` (each request repeated as many
    /// times as it says, as a script creating files one command at a time; a refused file is
    /// skipped). The C model's bucket order is random (srand(time)): its best over `tries` orders
    /// is taken. Returns ((C files, C bytes), (our files, our bytes)).
    fn replay(
        dev: u64,
        pre: &[Extent],
        reqs: &[(Req, u32)],
        seed: u64,
        tries: u64,
    ) -> ((u64, u64), (u64, u64)) {
        let mut best_c = (0, 0);
        for t in 0..tries {
            let mut c = CModel::new(dev, RESERVED);
            pre.iter().for_each(|e| c.mark(e));
            let mut st = t.wrapping_mul(7919);
            let mut placed = (0, 0);
            for (r, count) in reqs {
                for _ in 0..*count {
                    let ok = match *r {
                        Req::Plain(s) => c.plain(s),
                        Req::Il(nb, ns, ch, s) => {
                            let mut order: Vec<u64> = (0..nb).collect();
                            for i in (1..order.len()).rev() {
                                order.swap(i, (splitmix(&mut st) % (i as u64 + 1)) as usize);
                            }
                            c.interleaved(s, nb, ns, ch, &order)
                        }
                    };
                    if ok {
                        let size = match *r {
                            Req::Plain(s) | Req::Il(_, _, _, s) => s,
                        };
                        placed = (placed.0 + 1, placed.1 + size);
                    }
                }
            }
            best_c = best_c.max(placed);
        }
        let mut b = Bitmap::new(dev, RESERVED);
        pre.iter().for_each(|e| b.mark(e).unwrap());
        let mut all: Vec<Extent> = pre.to_vec();
        let mut ours = (0, 0);
        let mut i = 0u64;
        for (r, count) in reqs {
            for _ in 0..*count {
                i += 1;
                let got: Vec<Extent> = match *r {
                    Req::Plain(s) => match b.find_simple(s, 0) {
                        Ok(v) => v,
                        Err(_) => continue,
                    },
                    Req::Il(nb, ns, ch, s) => {
                        let p = InterleaveParams::new(nb, ns, ch, dev).unwrap();
                        match b.alloc_interleaved(s, &p, seed ^ i) {
                            Ok(il) => {
                                let v = il.strips().to_vec();
                                for e in &v {
                                    b.clear_range(e.offset / UNIT, e.len / UNIT);
                                }
                                v
                            }
                            Err(_) => continue,
                        }
                    }
                };
                let size = match *r {
                    Req::Plain(s) | Req::Il(_, _, _, s) => s,
                };
                assert!(got.iter().map(|e| e.len).sum::<u64>() >= size);
                b.take(&got).unwrap();
                all.extend(got);
                ours = (ours.0 + 1, ours.1 + size);
            }
        }
        assert!(no_overlap(&all));
        assert!(all.iter().all(|e| e.end() <= dev));
        (best_c, ours)
    }

    /// The sequence of issue 25: 256 MiB files striped 3 of 4 buckets on a 4 GiB device until
    /// the allocator refuses (20 tries), then plain 256 MiB files (4 tries). The C allocator places 14 striped files
    /// and no plain one (no free range of 256 MiB is left); we place as many striped files and
    /// then use the remaining ~474 MiB in several extents.
    #[test]
    fn issue_sequence_places_at_least_what_c_places() {
        let seq = [
            (Req::Il(4, 3, 2 << 20, 256 << 20), 20),
            (Req::Plain(256 << 20), 4),
        ];
        for seed in 0..4 {
            let ((c, _), (ours, _)) = replay(4 * G, &[], &seq, seed, 16);
            assert_eq!(c, 14, "C model");
            assert!(ours > c, "seed {seed}: we placed {ours} files, C {c}");
        }
    }

    /// A bucket with no free unit at all: the C allocator's search runs past it into the next
    /// bucket, so a file striped over every bucket still fits; ours must place it too.
    #[test]
    fn full_bucket_places_at_least_what_c_places() {
        let pre = [Extent::new(2 * G, G)];
        let seq = [(Req::Il(4, 4, 2 << 20, 64 << 20), 60)];
        for seed in 0..4 {
            let ((c, _), (ours, _)) = replay(4 * G, &pre, &seq, seed, 16);
            assert!(c > 0, "C model places none");
            assert!(ours >= c, "seed {seed}: we placed {ours} files, C {c}");
        }
    }

    /// Mixed sizes and layouts past full: never fewer bytes placed than the C model (not files:
    /// an allocator that refuses a large file early leaves room for more small ones).
    #[test]
    fn mixed_sequences_place_at_least_what_c_places() {
        let seqs: [&[(Req, u32)]; 3] = [
            &[
                (Req::Il(4, 2, 4 << 20, 300 << 20), 30),
                (Req::Il(4, 4, 2 << 20, 100 << 20), 10),
                (Req::Plain(64 << 20), 10),
                (Req::Plain(6 << 20), 50),
            ],
            &[
                (Req::Plain(700 << 20), 5),
                (Req::Il(8, 3, 2 << 20, 150 << 20), 40),
                (Req::Plain(30 << 20), 100),
            ],
            &[
                (Req::Il(2, 2, 2 << 20, 500 << 20), 10),
                (Req::Plain(200 << 20), 10),
                (Req::Il(8, 8, 2 << 20, 40 << 20), 40),
            ],
        ];
        for (k, seq) in seqs.iter().enumerate() {
            let ((_, c), (_, ours)) = replay(8 * G, &[], seq, k as u64, 8);
            assert!(ours >= c, "sequence {k}: we placed {ours} bytes, C {c}");
        }
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
                // Buckets with room for a strip before this file: that many strips (up to
                // nstrips) must be whole in distinct buckets; the rest may go anywhere.
                let bu = bucket / UNIT;
                let su = p.strip_len(s) / UNIT;
                let rooms = (0..nb).filter(|k| b.find_run(su, k * bu, (k + 1) * bu, &[]).is_some()).count() as u64;
                match b.alloc_interleaved(s, &p, seed ^ i as u64) {
                    Ok(il) => {
                        prop_assert_eq!(il.nstrips(), ns);
                        prop_assert_eq!(il.chunk_size(), chunk);
                        let f = Fmap::Interleaved(il.clone());
                        prop_assert!(f.capacity() >= s);
                        let mut buckets: Vec<u64> = il
                            .strips()
                            .iter()
                            .filter(|e| (e.end() - 1) / bucket == e.offset / bucket)
                            .map(|e| e.offset / bucket)
                            .collect();
                        for e in il.strips() {
                            prop_assert_eq!(e.len, p.strip_len(s));
                            prop_assert_eq!(e.len % chunk, 0);
                        }
                        buckets.sort();
                        buckets.dedup();
                        prop_assert!(buckets.len() as u64 >= ns.min(rooms), "strips share a bucket while others had room");
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
