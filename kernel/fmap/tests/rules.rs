//! One test per validation rule, each checking the specific error, plus the
//! accessors, resolution examples and the encoder.

mod common;

use common::{interleaved_one, simple_one, Raw, MIB};
use famfs_fmap::FmapError::*;
use famfs_fmap::*;

fn parse(r: &Raw) -> Result<Fmap<'_>, FmapError> {
    Fmap::parse(r.bytes())
}

fn err(r: &Raw) -> FmapError {
    parse(r).expect_err("message should be refused")
}

// ---- accepted messages ------------------------------------------------------

#[test]
fn simple_map_parses_and_resolves() {
    let mut r = Raw::header(2, 0, 2, 5 * MIB);
    r.ext(3, 10 * ALIGN, ALIGN).ext(7, 0, 2 * ALIGN);
    let f = parse(&r).unwrap();
    assert_eq!(f.file_type(), FileType::Log);
    assert_eq!(f.ext_type(), ExtType::Simple);
    assert_eq!(f.nextents(), 2);
    assert_eq!(f.file_size(), 5 * MIB);
    assert_eq!(f.mapped_len(), 3 * ALIGN);
    assert_eq!(f.max_devindex(), 7);
    assert_eq!(f.device_mask(), (1 << 3) | (1 << 7));
    assert_eq!(f.as_bytes(), r.bytes());
    let exts: Vec<_> = f.extents().collect();
    assert_eq!(
        exts,
        [
            Extent::Simple(SimpleExtent {
                devindex: 3,
                offset: 10 * ALIGN,
                len: ALIGN
            }),
            Extent::Simple(SimpleExtent {
                devindex: 7,
                offset: 0,
                len: 2 * ALIGN
            }),
        ]
    );
    let at = |off| f.resolve(off).map(|r| (r.devindex, r.dev_offset, r.len));
    assert_eq!(at(0), Some((3, 10 * ALIGN, ALIGN)));
    assert_eq!(at(ALIGN - 1), Some((3, 11 * ALIGN - 1, 1)));
    assert_eq!(at(ALIGN), Some((7, 0, 2 * ALIGN)));
    assert_eq!(at(3 * ALIGN - 1), Some((7, 2 * ALIGN - 1, 1)));
    assert_eq!(at(3 * ALIGN), None);
    // Clamped to file_size (5 MiB).
    let c = f.resolve_in_file(ALIGN + 1).unwrap();
    assert_eq!(
        (c.devindex, c.dev_offset, c.len),
        (7, 1, 5 * MIB - ALIGN - 1)
    );
    assert_eq!(f.resolve_in_file(5 * MIB), None);
    assert!(f.resolve(5 * MIB).is_some());
}

#[test]
fn interleaved_map_resolves_round_robin() {
    // 3 strips, 4 MiB chunks, 20 MiB: chunks 0..5 go to strips 0,1,2,0,1.
    let chunk = 2 * ALIGN;
    let mut r = Raw::header(0, 1, 1, 20 * MIB);
    r.ie(3, chunk as u32, 20 * MIB);
    r.ext(0, 100 * ALIGN, 2 * chunk)
        .ext(1, 0, 2 * chunk)
        .ext(2, 50 * ALIGN, chunk);
    let f = parse(&r).unwrap();
    let Some(Extent::Interleaved(ie)) = f.extents().next() else {
        panic!()
    };
    assert_eq!(
        (ie.nstrips, u64::from(ie.chunk_size), ie.nbytes),
        (3, chunk, 20 * MIB)
    );
    assert_eq!(ie.strips().count(), 3);
    assert_eq!(
        ie.strip(2),
        Some(SimpleExtent {
            devindex: 2,
            offset: 50 * ALIGN,
            len: chunk
        })
    );
    assert_eq!(ie.strip(3), None);
    let at = |off| f.resolve(off).map(|r| (r.devindex, r.dev_offset, r.len));
    assert_eq!(at(0), Some((0, 100 * ALIGN, chunk)));
    assert_eq!(at(chunk + 5), Some((1, 5, chunk - 5)));
    assert_eq!(at(2 * chunk), Some((2, 50 * ALIGN, chunk)));
    assert_eq!(
        at(3 * chunk + 1),
        Some((0, 100 * ALIGN + chunk + 1, chunk - 1))
    );
    assert_eq!(at(4 * chunk), Some((1, chunk, chunk)));
    assert_eq!(at(5 * chunk), None);
}

#[test]
fn unaligned_nbytes_of_the_last_interleaved_extent_is_accepted() {
    // As the C tools write it: nbytes = file size, 3 MiB in 2 MiB chunks.
    let mut r = Raw::header(0, 1, 1, 3 * MIB);
    r.ie(2, ALIGN as u32, 3 * MIB)
        .ext(0, 0, ALIGN)
        .ext(1, 0, ALIGN);
    let f = parse(&r).unwrap();
    let last = f.resolve(ALIGN).unwrap();
    assert_eq!((last.devindex, last.dev_offset, last.len), (1, 0, MIB));
    assert_eq!(f.resolve(3 * MIB), None);
}

#[test]
fn strips_may_differ_in_length_if_long_enough() {
    // 3 chunks over 2 strips: strip 0 needs 2 chunks, strip 1 needs 1.
    let mut r = Raw::header(0, 1, 1, 3 * ALIGN);
    r.ie(2, ALIGN as u32, 3 * ALIGN)
        .ext(0, 0, 2 * ALIGN)
        .ext(1, 0, ALIGN);
    parse(&r).unwrap();
    // Slack beyond what nbytes needs is fine too.
    let mut r = Raw::header(0, 1, 1, 3 * ALIGN);
    r.ie(2, ALIGN as u32, 3 * ALIGN)
        .ext(0, 0, 9 * ALIGN)
        .ext(1, 0, 3 * ALIGN);
    parse(&r).unwrap();
}

#[test]
fn file_size_zero_and_exact_coverage_are_accepted() {
    let mut r = simple_one(2);
    r.poke(16, &0u64.to_le_bytes());
    assert_eq!(parse(&r).unwrap().file_size(), 0);
    assert_eq!(parse(&simple_one(2)).unwrap().file_size(), 2 * ALIGN);
}

#[test]
fn limits_themselves_are_accepted() {
    let mut r = Raw::header(0, 0, MAX_EXTENTS, 0);
    for i in 0..MAX_EXTENTS {
        r.ext(MAX_DAXDEVS - 1, u64::from(i) * ALIGN, ALIGN);
    }
    assert_eq!(parse(&r).unwrap().max_devindex(), MAX_DAXDEVS - 1);
    // 32 strips; 4 such extents fit in a page (32 + 4 * 792 bytes).
    let mut r = Raw::header(0, 1, 4, 0);
    for _ in 0..4 {
        r.ie(MAX_STRIPS, ALIGN as u32, ALIGN);
        for s in 0..MAX_STRIPS {
            r.ext(s, 0, ALIGN);
        }
    }
    assert_eq!(parse(&r).unwrap().mapped_len(), 4 * ALIGN);
}

// ---- rule 1: size --------------------------------------------------------

#[test]
fn too_large() {
    let mut r = simple_one(1);
    r.0.resize(MAX_MSG_LEN + 1, 0);
    assert_eq!(err(&r), TooLarge);
}

#[test]
fn too_short() {
    assert_eq!(Fmap::parse(&[]).unwrap_err(), TooShort);
    let r = simple_one(1);
    assert_eq!(
        Fmap::parse(&r.bytes()[..HEADER_LEN - 1]).unwrap_err(),
        TooShort
    );
}

#[test]
fn truncated() {
    let r = simple_one(1);
    assert_eq!(
        Fmap::parse(&r.bytes()[..HEADER_LEN]).unwrap_err(),
        Truncated
    );
    assert_eq!(
        Fmap::parse(&r.bytes()[..r.0.len() - 1]).unwrap_err(),
        Truncated
    );
    let r = interleaved_one(2, 1);
    assert_eq!(
        Fmap::parse(&r.bytes()[..r.0.len() - 1]).unwrap_err(),
        Truncated
    );
    assert_eq!(
        Fmap::parse(&r.bytes()[..HEADER_LEN + 10]).unwrap_err(),
        Truncated
    );
}

#[test]
fn trailing_bytes() {
    let mut r = simple_one(1);
    r.u8(0);
    assert_eq!(err(&r), TrailingBytes);
}

// ---- rule 2: header values -----------------------------------------------

#[test]
fn bad_version() {
    for v in [0u16, 2, u16::MAX] {
        let mut r = simple_one(1);
        r.poke(2, &v.to_le_bytes());
        assert_eq!(err(&r), BadVersion);
    }
}

#[test]
fn bad_file_type() {
    for t in [3u8, 255] {
        let mut r = simple_one(1);
        r.poke(0, &[t]);
        assert_eq!(err(&r), BadFileType);
    }
    for (raw, t) in [
        (0, FileType::Regular),
        (1, FileType::Superblock),
        (2, FileType::Log),
    ] {
        let mut r = simple_one(1);
        r.poke(0, &[raw]);
        assert_eq!(parse(&r).unwrap().file_type(), t);
    }
}

#[test]
fn bad_ext_type() {
    let mut r = simple_one(1);
    r.poke(4, &2u32.to_le_bytes());
    assert_eq!(err(&r), BadExtType);
}

// ---- rule 3: reserved fields ----------------------------------------------

#[test]
fn reserved_header_fields() {
    let len = simple_one(1).0.len() as u32;
    for (at, bytes) in [
        (1, vec![1u8]),
        (12, 1u32.to_le_bytes().to_vec()),
        (12, (len + 1).to_le_bytes().to_vec()),
        (24, 1u64.to_le_bytes().to_vec()),
    ] {
        let mut r = simple_one(1);
        r.poke(at, &bytes);
        assert_eq!(err(&r), ReservedNonZero, "offset {at}");
    }
}

#[test]
fn reserved0_may_hold_the_message_length() {
    let mut r = simple_one(1);
    let len = r.0.len() as u32;
    r.poke(12, &len.to_le_bytes());
    parse(&r).unwrap();
}

#[test]
fn reserved_extent_fields() {
    let mut r = simple_one(1);
    r.poke(HEADER_LEN + 4, &[1]);
    assert_eq!(err(&r), ReservedNonZero);
    let mut r = interleaved_one(2, 1);
    r.poke(HEADER_LEN + 16, &[1]);
    assert_eq!(err(&r), ReservedNonZero);
    let mut r = interleaved_one(2, 1);
    r.poke(HEADER_LEN + 2 * EXTENT_LEN + 4, &[1]);
    assert_eq!(err(&r), ReservedNonZero);
}

// ---- rule 4: counts --------------------------------------------------------

#[test]
fn no_extents() {
    assert_eq!(err(&Raw::header(0, 0, 0, 0)), NoExtents);
}

#[test]
fn too_many_extents() {
    let mut r = Raw::header(0, 0, MAX_EXTENTS + 1, 0);
    for _ in 0..=MAX_EXTENTS {
        r.ext(0, 0, ALIGN);
    }
    assert_eq!(err(&r), TooManyExtents);
    assert_eq!(err(&Raw::header(0, 0, u32::MAX, 0)), TooManyExtents);
}

#[test]
fn no_strips() {
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(0, ALIGN as u32, ALIGN);
    assert_eq!(err(&r), NoStrips);
}

#[test]
fn too_many_strips() {
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(MAX_STRIPS + 1, ALIGN as u32, ALIGN);
    for _ in 0..=MAX_STRIPS {
        r.ext(0, 0, ALIGN);
    }
    assert_eq!(err(&r), TooManyStrips);
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(u32::MAX, ALIGN as u32, ALIGN);
    assert_eq!(err(&r), TooManyStrips);
}

// ---- rule 5: extents and strips ------------------------------------------

#[test]
fn dev_index_out_of_range() {
    let mut r = Raw::header(0, 0, 1, 0);
    r.ext(MAX_DAXDEVS, 0, ALIGN);
    assert_eq!(err(&r), DevIndexOutOfRange);
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(1, ALIGN as u32, ALIGN).ext(u32::MAX, 0, ALIGN);
    assert_eq!(err(&r), DevIndexOutOfRange);
}

#[test]
fn zero_length() {
    let mut r = Raw::header(0, 0, 1, 0);
    r.ext(0, 0, 0);
    assert_eq!(err(&r), ZeroLength);
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(1, ALIGN as u32, ALIGN).ext(0, 0, 0);
    assert_eq!(err(&r), ZeroLength);
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(1, ALIGN as u32, 0).ext(0, 0, ALIGN);
    assert_eq!(err(&r), ZeroLength);
}

#[test]
fn misaligned() {
    for (off, len) in [(4096, ALIGN), (0, ALIGN + 4096), (MIB, ALIGN), (0, MIB)] {
        let mut r = Raw::header(0, 0, 1, 0);
        r.ext(0, off, len);
        assert_eq!(err(&r), Misaligned, "simple {off} {len}");
        let mut r = Raw::header(0, 1, 1, 0);
        r.ie(1, ALIGN as u32, ALIGN).ext(0, off, len);
        assert_eq!(err(&r), Misaligned, "strip {off} {len}");
    }
}

#[test]
fn misaligned_interleaved_extent_followed_by_another() {
    let mut r = Raw::header(0, 1, 2, 0);
    r.ie(1, ALIGN as u32, MIB).ext(0, 0, ALIGN);
    r.ie(1, ALIGN as u32, ALIGN).ext(0, 0, ALIGN);
    assert_eq!(err(&r), Misaligned);
}

#[test]
fn overflow() {
    let top = u64::MAX - (ALIGN - 1); // the highest aligned offset
    let mut r = Raw::header(0, 0, 1, 0);
    r.ext(0, top, ALIGN);
    assert_eq!(err(&r), Overflow);
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(1, ALIGN as u32, ALIGN).ext(0, top, ALIGN);
    assert_eq!(err(&r), Overflow);
    // Extents that fit one by one but not together.
    let half = 1u64 << 63;
    let mut r = Raw::header(0, 0, 2, 0);
    r.ext(0, 0, half).ext(0, 0, half);
    assert_eq!(err(&r), Overflow);
}

// ---- rule 6: interleave ----------------------------------------------------

#[test]
fn bad_chunk_size() {
    for chunk in [0u32, 4096, MIB as u32, 3 * MIB as u32, u32::MAX] {
        let mut r = Raw::header(0, 1, 1, 0);
        r.ie(1, chunk, ALIGN).ext(0, 0, ALIGN);
        assert_eq!(err(&r), BadChunkSize, "chunk {chunk}");
    }
}

#[test]
fn inconsistent_interleave() {
    // 3 chunks over 2 strips: strip 0 needs 2 chunks but has 1.
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(2, ALIGN as u32, 3 * ALIGN)
        .ext(0, 0, ALIGN)
        .ext(1, 0, 2 * ALIGN);
    assert_eq!(err(&r), InconsistentInterleave);
    // A partial last chunk still needs a whole chunk of strip.
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(1, 2 * ALIGN as u32, 3 * ALIGN).ext(0, 0, ALIGN);
    assert_eq!(err(&r), InconsistentInterleave);
    // nbytes far beyond what strips hold.
    let mut r = Raw::header(0, 1, 1, 0);
    r.ie(1, ALIGN as u32, u64::MAX).ext(0, 0, ALIGN);
    assert_eq!(err(&r), InconsistentInterleave);
}

// ---- rule 7: coverage ------------------------------------------------------

#[test]
fn short_map() {
    let mut r = simple_one(2);
    r.poke(16, &(2 * ALIGN + 1).to_le_bytes());
    assert_eq!(err(&r), ShortMap);
    let mut r = interleaved_one(2, 2);
    r.poke(16, &u64::MAX.to_le_bytes());
    assert_eq!(err(&r), ShortMap);
}

// ---- devices ----------------------------------------------------------------

#[test]
fn check_devices() {
    let f_raw = interleaved_one(2, 3); // strip s at 32 MiB * s, 6 MiB long
    let f = parse(&f_raw).unwrap();
    // Device 0 needs 6 MiB, device 1 needs 38 MiB.
    let sizes = |size0: u64, size1: u64| move |dev: u32| [size0, size1].get(dev as usize).copied();
    assert_eq!(f.check_devices(sizes(6 * MIB, 38 * MIB)), Ok(()));
    assert_eq!(
        f.check_devices(sizes(6 * MIB, 38 * MIB - 1)),
        Err(BeyondDevice)
    );
    assert_eq!(
        f.check_devices(sizes(6 * MIB - 1, u64::MAX)),
        Err(BeyondDevice)
    );
    let missing = |dev: u32| if dev == 0 { Some(u64::MAX) } else { None };
    assert_eq!(f.check_devices(missing), Err(UnknownDevice));
    let mut seen = Vec::new();
    f.check_devices(|d| {
        seen.push(d);
        Some(u64::MAX)
    })
    .unwrap();
    assert_eq!(seen, [0, 1]);
}

// ---- errno ------------------------------------------------------------------

#[test]
fn errno_mapping() {
    use famfs_fmap::errno::*;
    let all = [
        (TooShort, EINVAL),
        (Truncated, EINVAL),
        (TrailingBytes, EINVAL),
        (TooLarge, E2BIG),
        (BadVersion, EINVAL),
        (BadFileType, EINVAL),
        (BadExtType, EINVAL),
        (ReservedNonZero, EINVAL),
        (NoExtents, EINVAL),
        (TooManyExtents, EINVAL),
        (NoStrips, EINVAL),
        (TooManyStrips, EINVAL),
        (Misaligned, EINVAL),
        (ZeroLength, EINVAL),
        (Overflow, EOVERFLOW),
        (ShortMap, EINVAL),
        (BadChunkSize, EINVAL),
        (InconsistentInterleave, EINVAL),
        (DevIndexOutOfRange, ENXIO),
        (UnknownDevice, ENXIO),
        (BeyondDevice, ENXIO),
        (BufferTooSmall, ERANGE),
    ];
    for (e, n) in all {
        assert_eq!(e.errno(), n, "{e:?}");
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        (ENXIO, E2BIG, EINVAL, ERANGE, EOVERFLOW),
        (6, 7, 22, 34, 75)
    );
}

// ---- encoder ----------------------------------------------------------------

#[test]
fn encode_simple_round_trips() {
    let exts = [
        SimpleExtent {
            devindex: 1,
            offset: 4 * ALIGN,
            len: ALIGN,
        },
        SimpleExtent {
            devindex: 0,
            offset: 0,
            len: 3 * ALIGN,
        },
    ];
    let mut buf = [0u8; 256];
    let n = encode_simple(&mut buf, FileType::Superblock, 7 * MIB, &exts).unwrap();
    assert_eq!(n, HEADER_LEN + 2 * EXTENT_LEN);
    let f = Fmap::parse(&buf[..n]).unwrap();
    assert_eq!(
        f.header(),
        FmapHeader {
            file_type: FileType::Superblock,
            ext_type: ExtType::Simple,
            nextents: 2,
            file_size: 7 * MIB,
        }
    );
    let back: Vec<_> = f.extents().collect();
    assert_eq!(back, exts.map(Extent::Simple));
    // Identical to the hand-written message.
    let mut r = Raw::header(1, 0, 2, 7 * MIB);
    r.ext(1, 4 * ALIGN, ALIGN).ext(0, 0, 3 * ALIGN);
    assert_eq!(&buf[..n], r.bytes());
}

#[test]
fn encode_interleaved_round_trips() {
    let strips = [
        SimpleExtent {
            devindex: 0,
            offset: 0,
            len: 2 * ALIGN,
        },
        SimpleExtent {
            devindex: 1,
            offset: 8 * ALIGN,
            len: 2 * ALIGN,
        },
    ];
    let specs = [
        InterleaveSpec {
            chunk_size: ALIGN as u32,
            nbytes: 4 * ALIGN,
            strips: &strips,
        },
        InterleaveSpec {
            chunk_size: 2 * ALIGN as u32,
            nbytes: 3 * MIB,
            strips: &strips[1..],
        },
    ];
    let mut buf = [0u8; 512];
    let n = encode_interleaved(&mut buf, FileType::Regular, 4 * ALIGN + MIB, &specs).unwrap();
    assert_eq!(n, HEADER_LEN + 2 * EXTENT_LEN + 3 * EXTENT_LEN);
    let f = Fmap::parse(&buf[..n]).unwrap();
    let ies: Vec<_> = f
        .extents()
        .map(|e| match e {
            Extent::Interleaved(ie) => (ie.chunk_size, ie.nbytes, ie.strips().collect::<Vec<_>>()),
            Extent::Simple(_) => panic!("simple extent in an interleaved map"),
        })
        .collect();
    assert_eq!(
        ies,
        specs.map(|s| (s.chunk_size, s.nbytes, s.strips.to_vec()))
    );
    let r = f.resolve(4 * ALIGN + 1).unwrap();
    assert_eq!(
        (r.devindex, r.dev_offset, r.len),
        (1, 8 * ALIGN + 1, 3 * MIB - 1)
    );
}

#[test]
fn builder_refuses_mixed_types() {
    let mut buf = [0u8; 512];
    let mut b = FmapBuilder::new(&mut buf, FileType::Regular, ExtType::Simple, 0);
    let spec = InterleaveSpec {
        chunk_size: ALIGN as u32,
        nbytes: ALIGN,
        strips: &[],
    };
    assert_eq!(b.push_interleaved(spec).unwrap_err(), NoStrips);
    let strip = [SimpleExtent {
        devindex: 0,
        offset: 0,
        len: ALIGN,
    }];
    let spec = InterleaveSpec {
        strips: &strip,
        ..spec
    };
    assert_eq!(b.push_interleaved(spec).unwrap_err(), BadExtType);
    // The error sticks.
    assert_eq!(b.push_simple(strip[0]).unwrap_err(), BadExtType);
    assert_eq!(b.finish().unwrap_err(), BadExtType);

    let mut b = FmapBuilder::new(&mut buf, FileType::Regular, ExtType::Interleaved, 0);
    assert_eq!(b.push_simple(strip[0]).unwrap_err(), BadExtType);
}

#[test]
fn builder_limits() {
    let e = SimpleExtent {
        devindex: 0,
        offset: 0,
        len: ALIGN,
    };
    let mut buf = [0u8; MAX_MSG_LEN];
    let mut b = FmapBuilder::new(&mut buf, FileType::Regular, ExtType::Simple, 0);
    for _ in 0..MAX_EXTENTS {
        b.push_simple(e).unwrap();
    }
    assert_eq!(b.push_simple(e).unwrap_err(), TooManyExtents);

    let strips = [e; MAX_STRIPS as usize + 1];
    let spec = InterleaveSpec {
        chunk_size: ALIGN as u32,
        nbytes: ALIGN,
        strips: &strips,
    };
    let mut b = FmapBuilder::new(&mut buf, FileType::Regular, ExtType::Interleaved, 0);
    assert_eq!(b.push_interleaved(spec).unwrap_err(), TooManyStrips);
    let spec = InterleaveSpec {
        strips: &strips[1..],
        ..spec
    };
    for _ in 0..5 {
        b.push_interleaved(spec).unwrap(); // 32 + 5 * 792 = 3992 bytes
    }
    assert_eq!(b.push_interleaved(spec).unwrap_err(), TooLarge);
}

#[test]
fn builder_buffer_too_small() {
    let e = SimpleExtent {
        devindex: 0,
        offset: 0,
        len: ALIGN,
    };
    for size in [0, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + EXTENT_LEN - 1] {
        let mut buf = vec![0u8; size];
        assert_eq!(
            encode_simple(&mut buf, FileType::Regular, 0, &[e]).unwrap_err(),
            BufferTooSmall
        );
    }
    let mut buf = [0u8; HEADER_LEN + EXTENT_LEN];
    assert_eq!(
        encode_simple(&mut buf, FileType::Regular, 0, &[e]),
        Ok(buf.len())
    );
}

#[test]
fn encoder_validates_like_the_parser() {
    let mut buf = [0u8; 512];
    let bad = SimpleExtent {
        devindex: 0,
        offset: 0,
        len: 0,
    };
    assert_eq!(
        encode_simple(&mut buf, FileType::Regular, 0, &[bad]),
        Err(ZeroLength)
    );
    let ok = SimpleExtent {
        devindex: 0,
        offset: 0,
        len: ALIGN,
    };
    assert_eq!(
        encode_simple(&mut buf, FileType::Regular, ALIGN + 1, &[ok]),
        Err(ShortMap)
    );
    assert_eq!(
        encode_simple(&mut buf, FileType::Regular, 0, &[]),
        Err(NoExtents)
    );
    let spec = InterleaveSpec {
        chunk_size: 4096,
        nbytes: ALIGN,
        strips: &[ok],
    };
    assert_eq!(
        encode_interleaved(&mut buf, FileType::Regular, 0, &[spec]),
        Err(BadChunkSize)
    );
}

// ---- robustness -------------------------------------------------------------

#[test]
fn from_trusted_never_panics_on_garbage() {
    for bytes in [&[][..], &[0xff; 31][..], &[0xff; 100][..], &[1; 4096][..]] {
        let f = Fmap::from_trusted(bytes);
        let _ = (
            f.resolve(0),
            f.mapped_len(),
            f.max_devindex(),
            f.device_mask(),
        );
        let _ = f.check_devices(|_| Some(0));
        let _ = f.extents().count();
    }
    // And it agrees with parse on valid bytes.
    let r = interleaved_one(3, 2);
    let (a, b) = (
        Fmap::parse(r.bytes()).unwrap(),
        Fmap::from_trusted(r.bytes()),
    );
    assert_eq!(a, b);
}
