//! The fuzzer's seed corpus (userspace/fuzz/corpus/parse_fmap): valid messages made
//! with the encoder. `FMAP_WRITE_CORPUS=1 cargo test --test corpus` rewrites
//! it; otherwise this test checks that it is present, current and valid.

use famfs_fmap::*;
use std::path::PathBuf;

const MIB: u64 = 1 << 20;

fn ext(devindex: u32, offset: u64, len: u64) -> SimpleExtent {
    SimpleExtent {
        devindex,
        offset,
        len,
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_MSG_LEN];
    let mut simple = |name, ft, size, exts: &[SimpleExtent]| {
        let n = encode_simple(&mut buf, ft, size, exts).unwrap();
        (name, buf[..n].to_vec())
    };
    out.push(simple(
        "simple-one",
        FileType::Regular,
        3 * MIB,
        &[ext(0, 0, 2 * ALIGN)],
    ));
    out.push(simple(
        "superblock",
        FileType::Superblock,
        ALIGN,
        &[ext(0, 0, ALIGN)],
    ));
    out.push(simple(
        "log-two-devices",
        FileType::Log,
        5 * ALIGN,
        &[
            ext(0, 4 * ALIGN, ALIGN),
            ext(5, 0, 3 * ALIGN),
            ext(63, 100 * ALIGN, ALIGN),
        ],
    ));
    let many: Vec<_> = (0..MAX_EXTENTS)
        .map(|i| ext(i % 4, u64::from(i) * ALIGN, ALIGN))
        .collect();
    out.push(simple("simple-max-extents", FileType::Regular, 0, &many));

    let mut inter = |name, size, specs: &[InterleaveSpec<'_>]| {
        let n = encode_interleaved(&mut buf, FileType::Regular, size, specs).unwrap();
        (name, buf[..n].to_vec())
    };
    let three = [
        ext(0, 0, 2 * ALIGN),
        ext(1, 8 * ALIGN, 2 * ALIGN),
        ext(2, 0, 2 * ALIGN),
    ];
    let spec = InterleaveSpec {
        chunk_size: ALIGN as u32,
        nbytes: 6 * ALIGN,
        strips: &three,
    };
    out.push(inter("interleaved-three", 6 * ALIGN, &[spec]));
    let tail = InterleaveSpec {
        chunk_size: 2 * ALIGN as u32,
        nbytes: 5 * MIB,
        strips: &three[..2],
    };
    out.push(inter(
        "interleaved-two-extents-unaligned-tail",
        6 * ALIGN + 5 * MIB,
        &[spec, tail],
    ));

    // reserved0 carrying the message length, as a later draft does.
    let (_, mut with_len) = out[0].clone();
    let len = with_len.len() as u32;
    with_len[12..16].copy_from_slice(&len.to_le_bytes());
    out.push(("simple-reserved0-length", with_len));
    out
}

#[test]
fn seed_corpus_is_current_and_valid() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../userspace/fuzz/corpus/parse_fmap");
    let write = std::env::var_os("FMAP_WRITE_CORPUS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes) in seeds() {
        Fmap::parse(&bytes).unwrap_or_else(|e| panic!("seed {name}: {e:?}"));
        let path = dir.join(name);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (run with FMAP_WRITE_CORPUS=1)", path.display())
            });
            assert_eq!(
                on_disk,
                bytes,
                "{} is stale (run with FMAP_WRITE_CORPUS=1)",
                path.display()
            );
        }
    }
}
