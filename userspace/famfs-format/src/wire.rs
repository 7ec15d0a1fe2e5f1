//! The one conversion between a file's on-media map ([`Fmap`], 416 bytes in its log entry: u64
//! fields, up to 16 extents or strips) and the wire fmap message `famfs.ko`'s create-file ioctl
//! takes and its GET_FMAP returns (crate famfs-fmap, fmap-wire.md: u32 device index and chunk
//! size, up to 32 extents, an interleaved extent records the bytes it covers, `nbytes`).
//!
//! Both directions are here and nowhere else: [`Fmap::to_wire`] (the FUSE server, for every file
//! it creates in the module) and [`Fmap::from_wire`]. `to_wire` refuses what the narrower wire
//! fields cannot hold instead of truncating, and every message it returns has been validated by
//! `famfs_fmap::Fmap::parse` (the builder does that in `finish`). Both models take the
//! interleave rule from famfs-fmap, so a map covers a file size on media exactly when its wire
//! message is accepted (property-tested below).

use crate::{Extent, Fmap, FormatError, Interleave, MAX_EXTENTS};
use famfs_fmap::{
    encode_interleaved, encode_simple, ExtType, FileType, FmapError, InterleaveSpec, SimpleExtent,
    MAX_MSG_LEN,
};
use thiserror::Error;

/// Why a map cannot be turned into a wire message, or a wire message into an on-media map.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("device index {0} does not fit the wire format (u32)")]
    DevIndex(u64),
    #[error("chunk size {0} does not fit the wire format (u32)")]
    ChunkSize(u64),
    #[error("the fmap message is invalid: {0}")]
    Fmap(FmapError),
    #[error("the fmap message has {0} extents; an on-media map holds 16 simple extents or one interleaved extent")]
    NotOnMedia(u32),
    #[error("the fmap message is not a valid on-media map: {0}")]
    Format(FormatError),
}

impl WireError {
    /// The errno an open fails with when its map cannot be converted: the file's metadata is
    /// damaged or beyond what the module supports, which is an I/O error for the caller.
    pub fn errno(&self) -> i32 {
        famfs_fmap::errno::EIO
    }
}

fn to_simple(e: &Extent) -> Result<SimpleExtent, WireError> {
    Ok(SimpleExtent {
        devindex: u32::try_from(e.devindex).map_err(|_| WireError::DevIndex(e.devindex))?,
        offset: e.offset,
        len: e.len,
    })
}

fn from_simple(e: SimpleExtent) -> Extent {
    Extent {
        devindex: u64::from(e.devindex),
        offset: e.offset,
        len: e.len,
    }
}

impl Fmap {
    /// The wire message of a file of `size` bytes mapped by this map. The on-media format has
    /// one interleaved extent covering the whole file; as the C tools do, its `nbytes` is the
    /// file size.
    pub fn to_wire(&self, file_type: FileType, size: u64) -> Result<Vec<u8>, WireError> {
        let mut buf = vec![0u8; MAX_MSG_LEN];
        let len = match self {
            Fmap::Simple(exts) => {
                let exts = exts.iter().map(to_simple).collect::<Result<Vec<_>, _>>()?;
                encode_simple(&mut buf, file_type, size, &exts).map_err(WireError::Fmap)?
            }
            Fmap::Interleaved(il) => {
                let strips = il
                    .strips()
                    .iter()
                    .map(to_simple)
                    .collect::<Result<Vec<_>, _>>()?;
                let chunk_size = u32::try_from(il.chunk_size())
                    .map_err(|_| WireError::ChunkSize(il.chunk_size()))?;
                let spec = InterleaveSpec {
                    chunk_size,
                    nbytes: size,
                    strips: &strips,
                };
                encode_interleaved(&mut buf, file_type, size, &[spec]).map_err(WireError::Fmap)?
            }
        };
        buf.truncate(len);
        Ok(buf)
    }

    /// The on-media map of a (validated) wire message; its file size is `w.file_size()`.
    /// Refuses what the on-media form cannot hold: more than 16 extents or strips, more than one
    /// interleaved extent, an extent at device offset 0.
    pub fn from_wire(w: &famfs_fmap::Fmap<'_>) -> Result<Fmap, WireError> {
        let mut simple = Vec::new();
        let mut interleaved = None;
        for e in w.extents() {
            match e {
                famfs_fmap::Extent::Simple(s) => simple.push(from_simple(s)),
                famfs_fmap::Extent::Interleaved(ie) if interleaved.is_none() => {
                    interleaved = Some((ie.chunk_size, ie.strips().map(from_simple).collect()));
                }
                famfs_fmap::Extent::Interleaved(_) => {
                    return Err(WireError::NotOnMedia(w.nextents()))
                }
            }
        }
        match (w.ext_type(), interleaved) {
            (ExtType::Interleaved, Some((chunk, strips))) => {
                Interleave::new(u64::from(chunk), strips)
                    .map(Fmap::Interleaved)
                    .map_err(WireError::Format)
            }
            _ if simple.len() > MAX_EXTENTS => Err(WireError::NotOnMedia(w.nextents())),
            _ => Fmap::simple(simple).map_err(WireError::Format),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MIB2 as M;
    use proptest::prelude::*;

    /// Where byte `off` lives by the C famfs rules, written from the C sources
    /// (`famfs_fileofs_to_daxofs`, `famfs_interleave_fileofs_to_daxofs`): simple extents
    /// concatenated; interleaved chunk `c` in strip `c % nstrips` at `(c / nstrips) * chunk`; the
    /// byte must lie inside its extent or strip. Independent of both resolvers under test.
    fn c_rule(f: &Fmap, off: u64) -> Option<(u64, u64)> {
        match f {
            Fmap::Simple(exts) => {
                let mut start = 0;
                for e in exts {
                    if off < start + e.len {
                        return Some((e.devindex, e.offset + off - start));
                    }
                    start += e.len;
                }
                None
            }
            Fmap::Interleaved(il) => {
                let (chunk, strips) = (il.chunk_size(), il.strips());
                let c = off / chunk;
                let s = &strips[(c % strips.len() as u64) as usize];
                let within = (c / strips.len() as u64) * chunk + off % chunk;
                (within < s.len).then_some((s.devindex, s.offset + within))
            }
        }
    }

    fn on_media() -> impl Strategy<Value = Fmap> {
        let ext = (0u64..4, 1u64..500, 1u64..6).prop_map(|(d, o, l)| Extent {
            devindex: d,
            offset: o * M,
            len: l * M,
        });
        let simple = proptest::collection::vec(ext.clone(), 1..=MAX_EXTENTS)
            .prop_map(|v| Fmap::simple(v).unwrap());
        let inter = (1u64..4, proptest::collection::vec(ext, 1..=MAX_EXTENTS))
            .prop_map(|(c, v)| Fmap::Interleaved(Interleave::new(c * M, v).unwrap()));
        prop_oneof![simple, inter]
    }

    proptest! {
        /// Both ways: every size the on-media map covers converts, the message parses, converts
        /// back to the same map, and resolves every probed byte where the C rules put it (and
        /// so does the on-media map); one byte more than the capacity is refused on the wire too
        /// (one capacity rule in both models).
        #[test]
        fn round_trip_and_one_capacity(f in on_media(), frac in 1u64..=1000, probes in proptest::collection::vec(any::<u64>(), 8)) {
            let cap = f.capacity();
            prop_assume!(cap > 0);
            let size = (cap / 1000 * frac).max(1).min(cap);
            let msg = f.to_wire(FileType::Regular, size).unwrap();
            let w = famfs_fmap::Fmap::parse(&msg).unwrap();
            prop_assert_eq!(w.file_size(), size);
            prop_assert_eq!(Fmap::from_wire(&w).unwrap(), f.clone());
            for p in probes.iter().map(|p| p % size).chain([0, size - 1]) {
                let want = c_rule(&f, p);
                prop_assert!(want.is_some(), "offset {} below the capacity is placed", p);
                let r = w.resolve(p).unwrap();
                prop_assert_eq!(Some((u64::from(r.devindex), r.dev_offset)), want);
                let s = f.resolve(p).unwrap();
                prop_assert_eq!(Some((s.devindex, s.offset)), want);
            }
            let over = f.to_wire(FileType::Regular, cap + 1).unwrap_err();
            prop_assert!(
                matches!(over, WireError::Fmap(FmapError::ShortMap | FmapError::InconsistentInterleave)),
                "{:?}", over
            );
            prop_assert_eq!(f.resolve(cap), None);
        }
    }

    #[test]
    fn from_wire_refuses_what_media_cannot_hold() {
        let mut buf = [0u8; MAX_MSG_LEN];
        let exts: Vec<SimpleExtent> = (1..=17)
            .map(|i| SimpleExtent {
                devindex: 0,
                offset: i * M,
                len: M,
            })
            .collect();
        let n = encode_simple(&mut buf, FileType::Regular, M, &exts).unwrap();
        let w = famfs_fmap::Fmap::parse(&buf[..n]).unwrap();
        assert_eq!(Fmap::from_wire(&w), Err(WireError::NotOnMedia(17)));
        let strips = [SimpleExtent {
            devindex: 0,
            offset: M,
            len: M,
        }];
        let spec = InterleaveSpec {
            chunk_size: M as u32,
            nbytes: M,
            strips: &strips,
        };
        let n = encode_interleaved(&mut buf, FileType::Regular, 2 * M, &[spec, spec]).unwrap();
        let w = famfs_fmap::Fmap::parse(&buf[..n]).unwrap();
        assert_eq!(Fmap::from_wire(&w), Err(WireError::NotOnMedia(2)));
        let n = encode_simple(
            &mut buf,
            FileType::Superblock,
            M,
            &[SimpleExtent {
                devindex: 0,
                offset: 0,
                len: M,
            }],
        )
        .unwrap();
        let w = famfs_fmap::Fmap::parse(&buf[..n]).unwrap();
        assert_eq!(
            Fmap::from_wire(&w),
            Err(WireError::Format(FormatError::ExtentAtZero))
        );
    }
}
