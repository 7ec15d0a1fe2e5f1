//! Property tests: random valid maps against a naive model, encode/parse
//! round trips, and random or mutated bytes (never a panic, and anything
//! accepted keeps the resolution invariants).

use famfs_fmap::*;
use proptest::prelude::*;

/// A map as the tests think of it, before encoding.
#[derive(Debug, Clone)]
enum Spec {
    Simple(Vec<SimpleExtent>),
    /// (chunk_size, nbytes, strips) per interleaved extent.
    Interleaved(Vec<(u32, u64, Vec<SimpleExtent>)>),
}

#[derive(Debug, Clone)]
struct MapCase {
    file_type: FileType,
    file_size: u64,
    spec: Spec,
}

impl MapCase {
    fn mapped(&self) -> u64 {
        match &self.spec {
            Spec::Simple(v) => v.iter().map(|e| e.len).sum(),
            Spec::Interleaved(v) => v.iter().map(|ie| ie.1).sum(),
        }
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, FmapError> {
        match &self.spec {
            Spec::Simple(v) => encode_simple(buf, self.file_type, self.file_size, v),
            Spec::Interleaved(v) => {
                let specs: Vec<_> = v
                    .iter()
                    .map(|(c, n, s)| InterleaveSpec {
                        chunk_size: *c,
                        nbytes: *n,
                        strips: s,
                    })
                    .collect();
                encode_interleaved(buf, self.file_type, self.file_size, &specs)
            }
        }
    }

    /// Every device range of the map (extents and strips).
    fn ranges(&self) -> Vec<SimpleExtent> {
        match &self.spec {
            Spec::Simple(v) => v.clone(),
            Spec::Interleaved(v) => v.iter().flat_map(|ie| ie.2.clone()).collect(),
        }
    }
}

/// The naive model: the file expanded into one (device, device offset) per
/// 2 MiB granule, by walking the map piece by piece without any division,
/// plus the file offsets where a contiguous run must stop (extent and chunk
/// ends).
struct Model {
    granules: Vec<(u32, u64)>,
    stops: Vec<u64>,
}

fn model(case: &MapCase) -> Model {
    let mut granules = Vec::new();
    let mut stops = Vec::new();
    let mut pos = 0u64; // file offset of the next granule
    match &case.spec {
        Spec::Simple(v) => {
            for e in v {
                let mut off = e.offset;
                while off < e.offset + e.len {
                    granules.push((e.devindex, off));
                    off += ALIGN;
                }
                pos += e.len;
                stops.push(pos);
            }
        }
        Spec::Interleaved(v) => {
            for (chunk, nbytes, strips) in v {
                let start = pos;
                let end = start + nbytes;
                let mut cursor = vec![0u64; strips.len()];
                let mut strip = 0;
                while pos < end {
                    let s = &strips[strip];
                    let mut k = 0;
                    while k < u64::from(*chunk) && pos < end {
                        granules.push((s.devindex, s.offset + cursor[strip] + k));
                        k += ALIGN;
                        pos += ALIGN;
                    }
                    cursor[strip] += u64::from(*chunk);
                    strip = if strip + 1 == strips.len() {
                        0
                    } else {
                        strip + 1
                    };
                    stops.push(pos.min(end));
                }
                pos = end;
            }
        }
    }
    Model { granules, stops }
}

/// Chunk counts per strip, by dealing them one by one.
fn dealt(nbytes: u64, chunk: u64, nstrips: usize) -> Vec<u64> {
    let mut counts = vec![0u64; nstrips];
    let (mut done, mut s) = (0u64, 0usize);
    while done < nbytes {
        counts[s] += 1;
        done += chunk;
        s = (s + 1) % nstrips;
    }
    counts
}

fn file_type() -> impl Strategy<Value = FileType> {
    prop_oneof![
        Just(FileType::Regular),
        Just(FileType::Superblock),
        Just(FileType::Log)
    ]
}

fn simple_extent() -> impl Strategy<Value = SimpleExtent> {
    (0u32..MAX_DAXDEVS, 0u64..512, 1u64..8).prop_map(|(devindex, off, len)| SimpleExtent {
        devindex,
        offset: off * ALIGN,
        len: len * ALIGN,
    })
}

/// One interleaved extent; `last` may have an unaligned `nbytes`.
fn interleaved(last: bool) -> impl Strategy<Value = (u32, u64, Vec<SimpleExtent>)> {
    (
        1usize..=6,
        1u32..=3,
        1u64..=16,
        if last { 0u64..ALIGN } else { 0u64..1 },
        prop::collection::vec((0u32..8, 0u64..256, 0u64..3), 6),
    )
        .prop_map(|(nstrips, chunk_mult, gran, shave, raw)| {
            let chunk = chunk_mult * ALIGN as u32;
            let nbytes = gran * ALIGN - shave;
            let counts = dealt(nbytes, u64::from(chunk), nstrips);
            let strips = counts
                .iter()
                .zip(&raw)
                .map(|(&n, &(devindex, off, slack))| SimpleExtent {
                    devindex,
                    offset: off * ALIGN,
                    len: (n + slack).max(1) * u64::from(chunk),
                })
                .collect();
            (chunk, nbytes, strips)
        })
}

fn map_case() -> impl Strategy<Value = MapCase> {
    let simple = prop::collection::vec(simple_extent(), 1..=12).prop_map(Spec::Simple);
    let inter = (
        prop::collection::vec(interleaved(false), 0..=3),
        interleaved(true),
    )
        .prop_map(|(mut v, last)| {
            v.push(last);
            Spec::Interleaved(v)
        });
    (file_type(), prop_oneof![simple, inter], 0u64..=1000).prop_map(|(file_type, spec, frac)| {
        let mut case = MapCase {
            file_type,
            file_size: 0,
            spec,
        };
        case.file_size = case.mapped() / 1000 * frac;
        case
    })
}

/// Invariants any accepted map keeps at `off`, model or not.
fn check_generic(f: &Fmap<'_>, off: u64) {
    let mapped = f.mapped_len();
    let Some(r) = f.resolve(off) else {
        assert!(off >= mapped, "no resolution at {off} below {mapped}");
        return;
    };
    assert!(r.len > 0 && off < mapped && r.len <= mapped - off);
    let inside = |s: &SimpleExtent| {
        s.devindex == r.devindex
            && r.dev_offset >= s.offset
            && r.dev_offset + r.len <= s.offset + s.len
    };
    let ok = f.extents().any(|e| match e {
        Extent::Simple(s) => inside(&s),
        Extent::Interleaved(ie) => {
            r.len <= u64::from(ie.chunk_size) && ie.strips().any(|s| inside(&s))
        }
    });
    assert!(ok, "{r:?} at {off} outside every extent");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn resolution_agrees_with_the_model(
        case in map_case(),
        picks in prop::collection::vec(any::<u64>(), 32),
    ) {
        let mut buf = [0u8; MAX_MSG_LEN];
        let n = match case.encode(&mut buf) {
            Ok(n) => n,
            // A few random interleaved maps exceed a page: skip those.
            Err(FmapError::TooLarge) => return Ok(()),
            Err(e) => panic!("valid map refused: {e:?} {case:?}"),
        };
        let f = Fmap::parse(&buf[..n]).unwrap();
        let m = model(&case);
        let mapped = case.mapped();
        prop_assert_eq!(f.mapped_len(), mapped);
        // Every granule's first and last byte, and random bytes.
        let mut offsets: Vec<u64> = (0..m.granules.len() as u64)
            .flat_map(|g| [g * ALIGN, (g * ALIGN + ALIGN - 1).min(mapped - 1)])
            .collect();
        offsets.extend(picks.iter().map(|p| p % mapped));
        for off in offsets {
            let r = f.resolve(off).expect("offset below mapped_len resolves");
            let g = (off / ALIGN) as usize;
            let (dev, base) = m.granules[g];
            let want = (dev, base + off % ALIGN);
            prop_assert_eq!((r.devindex, r.dev_offset), want, "offset {}", off);
            // The run is contiguous in the model, granule by granule ...
            let end = off + r.len;
            let mut next = (g as u64 + 1) * ALIGN;
            while next < end {
                let granule = m.granules[(next / ALIGN) as usize];
                prop_assert_eq!(granule, (dev, r.dev_offset + (next - off)));
                next += ALIGN;
            }
            // ... and ends exactly at the next extent or chunk end.
            let stop = *m.stops.iter().find(|&&s| s > off).unwrap();
            prop_assert_eq!(end, stop, "offset {}", off);
            prop_assert!(case.ranges().iter().any(|s| s.devindex == r.devindex
                && r.dev_offset >= s.offset && end - off + r.dev_offset <= s.offset + s.len));
            check_generic(&f, off);
            // The in-file variant agrees, clamped.
            match f.resolve_in_file(off) {
                Some(c) => {
                    prop_assert!(off < case.file_size);
                    prop_assert_eq!((c.devindex, c.dev_offset), (r.devindex, r.dev_offset));
                    prop_assert_eq!(c.len, r.len.min(case.file_size - off));
                }
                None => prop_assert!(off >= case.file_size),
            }
        }
        prop_assert_eq!(f.resolve(mapped), None);
        prop_assert_eq!(f.resolve(u64::MAX), None);
    }

    #[test]
    fn encode_parse_round_trip(case in map_case()) {
        let mut buf = [0u8; MAX_MSG_LEN];
        let Ok(n) = case.encode(&mut buf) else { return Ok(()) };
        let f = Fmap::parse(&buf[..n]).unwrap();
        prop_assert_eq!(f.file_type(), case.file_type);
        prop_assert_eq!(f.file_size(), case.file_size);
        match &case.spec {
            Spec::Simple(v) => {
                prop_assert_eq!(f.ext_type(), ExtType::Simple);
                let got: Vec<_> = f.extents().collect();
                let want: Vec<_> = v.iter().copied().map(Extent::Simple).collect();
                prop_assert_eq!(got, want);
            }
            Spec::Interleaved(v) => {
                prop_assert_eq!(f.ext_type(), ExtType::Interleaved);
                let got: Vec<_> = f.extents().map(|e| match e {
                    Extent::Interleaved(ie) => {
                        (ie.chunk_size, ie.nbytes, ie.strips().collect::<Vec<_>>())
                    }
                    Extent::Simple(_) => panic!("simple extent"),
                }).collect();
                prop_assert_eq!(&got, v);
            }
        }
        let max = case.ranges().iter().map(|s| s.devindex).max().unwrap();
        prop_assert_eq!(f.max_devindex(), max);
        // Devices exactly as large as needed pass; one byte less fails.
        let need = |dev: u32| {
            case.ranges().iter().filter(|s| s.devindex == dev).map(|s| s.offset + s.len).max()
        };
        prop_assert_eq!(f.check_devices(need), Ok(()));
        prop_assert_eq!(f.check_devices(|d| need(d).map(|n| n - 1)), Err(FmapError::BeyondDevice));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..5000)) {
        if let Ok(f) = Fmap::parse(&bytes) {
            check_generic(&f, 0);
        }
        let t = Fmap::from_trusted(&bytes);
        let _ = (t.resolve(0), t.mapped_len(), t.max_devindex(), t.extents().count());
    }

    #[test]
    fn mutated_maps_never_panic(
        case in map_case(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        picks in prop::collection::vec(any::<u64>(), 8),
    ) {
        let mut buf = [0u8; MAX_MSG_LEN];
        let Ok(n) = case.encode(&mut buf) else { return Ok(()) };
        let mut bytes = buf[..n].to_vec();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(f) = Fmap::parse(&bytes) {
            let mapped = f.mapped_len();
            prop_assert!(mapped >= f.file_size());
            for p in picks {
                check_generic(&f, p % mapped);
                check_generic(&f, p);
            }
        }
    }
}

proptest! {
    /// The one capacity rule: for any strips (lengths unequal, not multiples of the chunk), a
    /// message whose interleaved extent covers `nbytes` parses exactly when `nbytes` is at most
    /// [`interleave_capacity`] of its strips, and [`dealt_chunks`] agrees with dealing the
    /// chunks one by one (`dealt`, the independent model above).
    #[test]
    fn capacity_is_the_validation_rule(
        chunk_mult in 1u32..=3,
        lens in prop::collection::vec(1u64..=12, 1..=6),
        nbytes_units in 1u64..=64,
        shave in 0u64..ALIGN,
    ) {
        let chunk = chunk_mult * ALIGN as u32;
        let strips: Vec<SimpleExtent> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| SimpleExtent {
                devindex: 0,
                offset: (i as u64 * 16 + 1) * ALIGN,
                len: l * ALIGN,
            })
            .collect();
        let nbytes = nbytes_units * ALIGN - shave;
        let cap = interleave_capacity(u64::from(chunk), strips.iter().map(|s| s.len));
        let counts = dealt(nbytes, u64::from(chunk), strips.len());
        for (i, &n) in counts.iter().enumerate() {
            let chunks = chunks_for(nbytes, u64::from(chunk)).unwrap();
            prop_assert_eq!(dealt_chunks(chunks, strips.len() as u64, i as u64), Some(n));
        }
        let fits = counts.iter().zip(&strips).all(|(&n, s)| n * u64::from(chunk) <= s.len);
        let mut buf = [0u8; MAX_MSG_LEN];
        let spec = InterleaveSpec { chunk_size: chunk, nbytes, strips: &strips };
        let parsed = encode_interleaved(&mut buf, FileType::Regular, nbytes, &[spec]);
        prop_assert_eq!(fits, nbytes <= cap);
        match parsed {
            Ok(_) => prop_assert!(nbytes <= cap),
            Err(e) => {
                prop_assert_eq!(e, FmapError::InconsistentInterleave);
                prop_assert!(nbytes > cap);
            }
        }
    }
}
