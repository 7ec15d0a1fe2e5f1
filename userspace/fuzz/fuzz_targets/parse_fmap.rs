//! Parses arbitrary bytes as an fmap message; when they are valid, checks
//! that resolution, device checks and re-encoding keep their promises.
#![no_main]

use famfs_fmap::{
    encode_interleaved, encode_simple, Extent, Fmap, InterleaveSpec, Resolved, SimpleExtent,
    MAX_DAXDEVS, MAX_MSG_LEN, MAX_STRIPS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(fmap) = Fmap::parse(data) else {
        // Rejected; the unvalidated view must still neither panic nor
        // resolve outside an extent.
        let lenient = Fmap::from_trusted(data);
        let _ = lenient.mapped_len();
        let _ = lenient.check_devices(|_| Some(0));
        for off in [0, 1 << 21, 1 << 30] {
            if let Some(r) = lenient.resolve(off) {
                assert!(inside_some_extent(&lenient, r));
            }
        }
        return;
    };
    let mapped = fmap.mapped_len();
    assert!(mapped >= fmap.file_size());
    assert!(fmap.max_devindex() < MAX_DAXDEVS);

    // Resolve extent boundaries, chunk boundaries and a spread of offsets.
    let mut probes = [0u64; 64];
    let mut n = 0;
    let mut start = 0u64;
    for e in fmap.extents() {
        for p in [start, start + e.file_len() - 1, start + e.file_len() / 2] {
            if n < probes.len() {
                probes[n] = p;
                n += 1;
            }
        }
        start += e.file_len();
    }
    for i in 0..16u64 {
        if n < probes.len() {
            probes[n] = (mapped / 16) * i + i * 4097;
            n += 1;
        }
    }
    for &off in &probes[..n] {
        check_offset(&fmap, off, mapped);
    }
    assert_eq!(fmap.resolve(mapped), None);
    assert_eq!(fmap.resolve(u64::MAX), None);

    // Every range lies in a device as big as the map says.
    assert!(fmap.check_devices(|_| Some(u64::MAX)).is_ok());

    // Re-encoding gives back the same bytes (up to reserved0).
    let mut buf = [0u8; MAX_MSG_LEN];
    let len = reencode(&fmap, &mut buf);
    assert_eq!(&buf[..12], &data[..12]);
    assert_eq!(&buf[16..len], &data[16..]);
});

/// One resolution, and its invariants: inside the extent or strip it comes
/// from, nonzero, not past the mapped length, and consistent one byte on.
fn check_offset(fmap: &Fmap<'_>, off: u64, mapped: u64) {
    let Some(r) = fmap.resolve(off) else {
        assert!(off >= mapped);
        return;
    };
    assert!(off < mapped);
    assert!(r.len > 0 && r.len <= mapped - off);
    assert!(inside_some_extent(fmap, r), "{r:?} outside every extent");
    if r.len > 1 {
        let next = fmap.resolve(off + 1).expect("contiguous");
        assert_eq!(next.devindex, r.devindex);
        assert_eq!(next.dev_offset, r.dev_offset + 1);
        assert_eq!(next.len, r.len - 1);
    }
    if let Some(c) = fmap.resolve_in_file(off) {
        assert!(off < fmap.file_size() && c.len <= fmap.file_size() - off);
        assert_eq!((c.devindex, c.dev_offset), (r.devindex, r.dev_offset));
    } else {
        assert!(off >= fmap.file_size());
    }
}

/// Whether `r` lies inside one simple extent, or inside one strip and one
/// chunk of an interleaved extent.
fn inside_some_extent(fmap: &Fmap<'_>, r: Resolved) -> bool {
    let within = |s: &SimpleExtent| {
        s.devindex == r.devindex
            && r.dev_offset >= s.offset
            && r.dev_offset
                .checked_add(r.len)
                .is_some_and(|end| end <= s.offset.saturating_add(s.len))
    };
    fmap.extents().any(|e| match e {
        Extent::Simple(s) => within(&s),
        Extent::Interleaved(ie) => {
            r.len <= u64::from(ie.chunk_size) && ie.strips().any(|s| within(&s))
        }
    })
}

fn reencode(fmap: &Fmap<'_>, buf: &mut [u8]) -> usize {
    let mut simple = [SimpleExtent {
        devindex: 0,
        offset: 0,
        len: 0,
    }; 32];
    let mut strips = [[SimpleExtent {
        devindex: 0,
        offset: 0,
        len: 0,
    }; MAX_STRIPS as usize]; 32];
    let mut specs_raw = [(0u32, 0u64, 0usize); 32];
    let mut n = 0;
    for e in fmap.extents() {
        match e {
            Extent::Simple(s) => simple[n] = s,
            Extent::Interleaved(ie) => {
                let mut k = 0;
                for s in ie.strips() {
                    strips[n][k] = s;
                    k += 1;
                }
                specs_raw[n] = (ie.chunk_size, ie.nbytes, k);
            }
        }
        n += 1;
    }
    let res = match fmap.ext_type() {
        famfs_fmap::ExtType::Simple => {
            encode_simple(buf, fmap.file_type(), fmap.file_size(), &simple[..n])
        }
        famfs_fmap::ExtType::Interleaved => {
            let mut specs = [InterleaveSpec {
                chunk_size: 0,
                nbytes: 0,
                strips: &[],
            }; 32];
            for i in 0..n {
                let (chunk_size, nbytes, k) = specs_raw[i];
                specs[i] = InterleaveSpec {
                    chunk_size,
                    nbytes,
                    strips: &strips[i][..k],
                };
            }
            encode_interleaved(buf, fmap.file_type(), fmap.file_size(), &specs[..n])
        }
    };
    res.expect("a parsed map re-encodes")
}
