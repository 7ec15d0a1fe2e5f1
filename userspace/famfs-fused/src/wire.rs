//! The wire fmap messages the server hands to `famfs.ko`'s create-file ioctl (fmap-wire.md,
//! crate famfs-fmap). A file's message is its on-media map converted by the one conversion,
//! [`famfs_format::Fmap::to_wire`] (both directions and their property tests live in
//! famfs-format/src/wire.rs); the meta files' messages are built here.

use famfs_fmap::{encode_simple, FileType, SimpleExtent, MAX_MSG_LEN};
pub use famfs_format::WireError;
use famfs_format::{Fmap, LOG_OFFSET, SB_REGION_LEN};

/// Builds the wire message of a file of `size` bytes mapped by `fmap` ([`Fmap::to_wire`]).
pub fn wire_fmap(file_type: FileType, size: u64, fmap: &Fmap) -> Result<Vec<u8>, WireError> {
    fmap.to_wire(file_type, size)
}

/// The wire message of `.meta/.superblock`: the 2 MiB superblock region at device offset 0.
pub fn superblock_wire() -> Result<Vec<u8>, WireError> {
    superblock_wire_on(0)
}

/// The wire message of a read-only file over the 2 MiB superblock region of device `devindex`
/// (the primary's superblock, or a secondary's): what the server reads with pread(2) to check
/// that the device still holds the mounted file system.
pub fn superblock_wire_on(devindex: u32) -> Result<Vec<u8>, WireError> {
    let mut buf = vec![0u8; MAX_MSG_LEN];
    let e = SimpleExtent {
        devindex,
        offset: 0,
        len: SB_REGION_LEN,
    };
    let len = encode_simple(&mut buf, FileType::Superblock, SB_REGION_LEN, &[e])
        .map_err(WireError::Fmap)?;
    buf.truncate(len);
    Ok(buf)
}

/// The wire message of `.meta/.log`: `log_len` bytes at device offset 2 MiB.
pub fn log_wire(log_len: u64) -> Result<Vec<u8>, WireError> {
    let mut buf = vec![0u8; MAX_MSG_LEN];
    let e = SimpleExtent {
        devindex: 0,
        offset: LOG_OFFSET,
        len: log_len,
    };
    let len = encode_simple(&mut buf, FileType::Log, log_len, &[e]).map_err(WireError::Fmap)?;
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use famfs_fmap::FmapError;
    use famfs_fmap::{ExtType, Fmap as Wire};
    use famfs_format::{Extent, Interleave};

    const M2: u64 = 2 << 20;

    #[test]
    fn simple_map_round_trips() {
        let fmap =
            Fmap::simple(vec![Extent::new(10 * M2, 2 * M2), Extent::new(40 * M2, M2)]).unwrap();
        let size = 3 * M2 - 7;
        let msg = wire_fmap(FileType::Regular, size, &fmap).unwrap();
        let w = Wire::parse(&msg).unwrap();
        assert_eq!(w.file_type(), FileType::Regular);
        assert_eq!(w.ext_type(), ExtType::Simple);
        assert_eq!(w.nextents(), 2);
        assert_eq!(w.file_size(), size);
        // Every offset resolves to the same device byte as the on-media map says.
        for off in [0, 1, M2 - 1, M2, 2 * M2 - 1, 2 * M2, size - 1] {
            let r = w.resolve(off).unwrap();
            let s = fmap.resolve(off).unwrap();
            assert_eq!(
                (r.devindex as u64, r.dev_offset),
                (s.devindex, s.offset),
                "offset {off}"
            );
        }
    }

    #[test]
    fn interleaved_map_round_trips() {
        let strips = vec![
            Extent::new(100 * M2, 4 * M2),
            Extent::new(200 * M2, 4 * M2),
            Extent::new(300 * M2, 4 * M2),
        ];
        let fmap = Fmap::Interleaved(Interleave::new(M2, strips).unwrap());
        let size = 11 * M2 + 12345;
        let msg = wire_fmap(FileType::Regular, size, &fmap).unwrap();
        let w = Wire::parse(&msg).unwrap();
        assert_eq!(w.ext_type(), ExtType::Interleaved);
        assert_eq!(w.nextents(), 1);
        assert_eq!(w.file_size(), size);
        let mut off = 0;
        while off < size {
            let r = w.resolve(off).unwrap();
            let s = fmap.resolve(off).unwrap();
            assert_eq!(r.dev_offset, s.offset, "offset {off}");
            // Both resolvers share famfs-fmap's arithmetic: check against on-media-format.md's
            // formula too (strips 100, 200, 300 x 2 MiB, 2 MiB chunks).
            let c = off / M2;
            assert_eq!(
                r.dev_offset,
                (100 + 100 * (c % 3)) * M2 + (c / 3) * M2 + off % M2
            );
            off += M2 / 2 + 1;
        }
    }

    #[test]
    fn meta_files() {
        let w = superblock_wire().unwrap();
        let f = Wire::parse(&w).unwrap();
        assert_eq!(f.file_type(), FileType::Superblock);
        assert_eq!(f.file_size(), SB_REGION_LEN);
        assert_eq!(f.resolve(5).unwrap().dev_offset, 5);
        let l = log_wire(8 << 20).unwrap();
        let f = Wire::parse(&l).unwrap();
        assert_eq!(f.file_type(), FileType::Log);
        assert_eq!(f.file_size(), 8 << 20);
        assert_eq!(f.resolve(48).unwrap().dev_offset, LOG_OFFSET + 48);
        assert!(f.resolve(8 << 20).is_none() || f.resolve_in_file(8 << 20).is_none());
    }

    #[test]
    fn refuses_what_the_wire_cannot_hold() {
        let big = Extent {
            devindex: 1 << 40,
            offset: M2,
            len: M2,
        };
        let fmap = Fmap::Simple(vec![big]);
        assert_eq!(
            wire_fmap(FileType::Regular, 1, &fmap),
            Err(WireError::DevIndex(1 << 40))
        );
        let fmap =
            Fmap::Interleaved(Interleave::new(1 << 33, vec![Extent::new(M2, 1 << 33)]).unwrap());
        assert_eq!(
            wire_fmap(FileType::Regular, 1, &fmap),
            Err(WireError::ChunkSize(1 << 33))
        );
        // A map shorter than the file is refused by the wire validation, not sent to the module.
        let fmap = Fmap::simple(vec![Extent::new(M2, M2)]).unwrap();
        assert!(matches!(
            wire_fmap(FileType::Regular, M2 + 1, &fmap),
            Err(WireError::Fmap(FmapError::ShortMap))
        ));
    }
}
