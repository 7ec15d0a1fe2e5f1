//! Arbitrary bytes as the log of a valid file system, played by famfs-meta.
//!
//! The device is a 4 GiB [`Media::memory`] (pages are only allocated when touched) holding a valid
//! superblock whose master is this "host". The first input byte selects repairs so that the fuzzer
//! gets past the checksums: bit 0 rewrites the log header's constant fields and crc (keeping the
//! counters, with next_index folded into the input's entries), bit 1 rewrites every entry's crc,
//! bit 2 sets every entry's seqnum to its index. The rest is laid at the log offset.
//!
//! Play must never panic and never allocate without bound; it either fails with an error or gives
//! a namespace whose every node is reachable by its path, problems only for played entries, file
//! data access that fails cleanly, and an append after which a replay from scratch gives the same
//! namespace.
#![no_main]

use famfs_format::*;
use famfs_media::Media;
use famfs_meta::{Famfs, Layout, MetaError, NodeKind, Role, ROOT_INO, SYSTEM_UUID_ENV};
use libfuzzer_sys::fuzz_target;
use std::sync::Once;

const DEVICE: u64 = 4 << 30;
/// Most input bytes used: the header and 240 entries.
const MAX_LOG_BYTES: usize = LOG_HEADER_SIZE + 240 * LOG_ENTRY_SIZE;
const MASTER: UuidBytes = [0x5a; 16];

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // This process's "host" is the master of the fuzzed file system.
        let p = std::env::temp_dir().join(format!("famfs-fuzz-system-uuid-{}", std::process::id()));
        std::fs::write(&p, format!("{}\n", format_uuid(&MASTER))).expect("write system uuid file");
        std::env::set_var(SYSTEM_UUID_ENV, &p);
    });
}

fn device(data: &[u8]) -> Media {
    let media = Media::memory(DEVICE).expect("anonymous memory");
    let sb = Superblock::new(DEFAULT_LOG_LEN, DEVICE, [1; 16], [2; 16], MASTER, "fuzz").unwrap();
    media.write_at(0, &sb.encode()).unwrap();
    let (flags, log) = match data.split_first() {
        Some((f, rest)) => (*f, &rest[..rest.len().min(MAX_LOG_BYTES)]),
        None => (0, &[][..]),
    };
    let mut log = log.to_vec();
    let nentries = log.len().saturating_sub(LOG_HEADER_SIZE) / LOG_ENTRY_SIZE;
    if flags & 1 != 0 && log.len() >= LOG_HEADER_SIZE {
        let mut h = RawLogHeader::from_bytes(&log).unwrap();
        let g = LogGeometry::new(DEFAULT_LOG_LEN).unwrap();
        h.magic = LOG_MAGIC;
        h.len = DEFAULT_LOG_LEN;
        h.last_index = g.last_index();
        h.next_index %= nentries as u64 + 2;
        h.crc = h.compute_crc();
        log[..LOG_HEADER_SIZE].copy_from_slice(&h.to_bytes());
    }
    for i in 0..nentries {
        let at = LOG_HEADER_SIZE + i * LOG_ENTRY_SIZE;
        let slot = &mut log[at..at + LOG_ENTRY_SIZE];
        let mut r = RawLogEntry::from_bytes(slot).unwrap();
        if flags & 4 != 0 {
            r.seqnum = i as u64;
        }
        if flags & 2 != 0 {
            r.crc = r.compute_crc();
        }
        slot.copy_from_slice(&r.to_bytes());
    }
    media.write_at(LOG_OFFSET, &log).unwrap();
    media
}

fn check_namespace(fs: &Famfs) {
    let ns = fs.namespace();
    // Removed nodes (DELETE entries) keep their numbers but are not listed.
    assert_eq!(
        ns.nodes().count() as u64,
        1 + ns.file_count() + ns.dir_count()
    );
    assert!(ns.len() >= 1 + ns.file_count() + ns.dir_count());
    for n in ns.nodes() {
        let path = ns.path_of(n.ino).expect("every node has a path");
        assert_eq!(
            ns.resolve(&path),
            Some(n.ino),
            "/{path} does not resolve to its node"
        );
        if n.ino != ROOT_INO {
            assert!(ns.get(n.parent).is_some_and(|p| p.is_dir()));
            assert!(RelPath::new(&path).is_ok(), "bad path /{path}");
        }
        if let NodeKind::File(f) = &n.kind {
            assert!(f.size > 0 && f.fmap.capacity() >= f.size);
            let mut b = [0u8; 1];
            for off in [0, f.size - 1, f.size] {
                match fs.read_data(n.ino, off, &mut b) {
                    Ok(()) => assert!(off < f.size),
                    Err(MetaError::BeyondEof { .. }) => assert_eq!(off, f.size),
                    Err(MetaError::Media(_)) => {} // an extent beyond the device
                    // An extent on a device the log never added (play reported it), or on one
                    // added but not attached: in-memory media has no secondaries.
                    Err(MetaError::NoSuchDevice(d)) => {
                        assert!(d >= fs.devices().len() as u64, "device {d} is in the table")
                    }
                    Err(MetaError::FileDeviceMissing { .. }) => {
                        assert!(
                            f.fmap.extents().iter().any(|e| e.devindex > 0),
                            "/{path}: device 0 called missing"
                        )
                    }
                    Err(e) => panic!("unexpected error reading /{path}: {e}"),
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    init();
    let mut fs = match Famfs::from_media(device(data)) {
        Ok(fs) => fs,
        Err(MetaError::LogDamaged { index, source }) => {
            assert!(source.is_integrity());
            assert!(
                index <= (data.len() / LOG_ENTRY_SIZE) as u64 + 1,
                "damage reported at entry {index}"
            );
            return;
        }
        Err(MetaError::Media(_) | MetaError::Format(_)) => return,
        Err(e) => panic!("unexpected error: {e}"),
    };
    assert_eq!(fs.role(), Role::Master);
    let h = fs.log_header().unwrap();
    assert_eq!(fs.played(), h.next_index());
    for p in fs.problems() {
        assert!(p.index < fs.played());
        assert!(p.to_string().starts_with(&format!("entry {}", p.index)));
    }
    check_namespace(&fs);
    assert_eq!(fs.refresh().unwrap().played, 0, "replay is not idempotent");

    // Append (when the log allows it), then replay everything from scratch: same namespace.
    let made = fs.with_log_lock(|a| {
        let d = RelPath::new("fuzz-dir")?;
        if a.namespace().resolve(d.as_str()).is_none() {
            a.mkdir(&d, 0o755, 0, 0)?;
        }
        a.create_file(
            &RelPath::new("fuzz-dir/f")?,
            3 << 20,
            0o644,
            0,
            0,
            Layout::Contiguous,
        )
    });
    let before = fs.namespace().clone();
    let nproblems = fs.problems().len();
    let media = fs.into_media();
    let again = Famfs::from_media(media).expect("a log that played plays again after an append");
    assert_eq!(
        again.namespace(),
        &before,
        "replay differs from the appender's view"
    );
    assert_eq!(again.problems().len(), nproblems);
    if made.is_ok() {
        check_namespace(&again);
    }
});
