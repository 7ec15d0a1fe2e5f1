//! Arbitrary bytes as a log entry: decoded as they are (at the index the entry claims, and at 0),
//! then with the crc fixed up. A decoded entry must keep every promise its types make (valid
//! relative path, valid fmap covering the size, resolution inside the extents) and survive a
//! re-encode unchanged.
#![no_main]

use famfs_format::{
    crc32, Fmap, LogEntry, LogEntryBody, RawLogEntry, RelPath, LOG_ENTRY_CRC_RANGE, LOG_ENTRY_SIZE,
    MAX_RELPATH,
};
use libfuzzer_sys::fuzz_target;

fn check_path(p: &RelPath) {
    let s = p.as_str();
    assert!(!s.is_empty() && s.len() <= MAX_RELPATH && !s.starts_with('/') && !s.contains('\0'));
    assert!(p
        .components()
        .all(|c| !c.is_empty() && c != "." && c != ".."));
    assert_eq!(RelPath::new(s).as_ref(), Ok(p));
}

fn check_fmap(f: &Fmap, size: u64) {
    assert!(f.capacity() >= size);
    for e in f.extents() {
        assert!(e.validate().is_ok());
    }
    for off in [0, size / 3, size / 2, size - 1] {
        let seg = f.resolve(off).expect("offset inside the file resolves");
        assert!(seg.len > 0);
        let end = seg.offset.checked_add(seg.len).expect("segment end fits");
        assert!(
            f.extents()
                .iter()
                .any(|e| seg.offset >= e.offset && end <= e.end()),
            "segment {seg:?} outside the extents"
        );
    }
    // The capacity saturates at u64::MAX for extents totalling more than that (nonsense, but no
    // harm: no file is that large).
    if f.capacity() < u64::MAX {
        assert!(f.resolve(f.capacity()).is_none());
    }
}

fn check(b: &[u8], index: u64) {
    let Ok(e) = LogEntry::decode(b, index) else {
        return;
    };
    assert_eq!(e.seqnum, index);
    match &e.body {
        LogEntryBody::File(f) => {
            assert!(f.validate().is_ok());
            check_path(&f.path);
            check_fmap(&f.fmap, f.size);
        }
        LogEntryBody::Mkdir(d) => check_path(&d.path),
        LogEntryBody::AddDaxdev(_) => {}
        LogEntryBody::Delete(d) => {
            check_path(&d.path);
            assert!(d.target < index || d.target == u64::MAX);
        }
        LogEntryBody::Reclaim(r) => {
            assert!((1..=64).contains(&r.deletes.len()));
            assert!(r.deletes.iter().all(|&d| d < index));
        }
    }
    let enc = e.encode();
    assert_eq!(
        LogEntry::decode(&enc, index).as_ref(),
        Ok(&e),
        "round trip changes the entry"
    );
    // The header fields are kept byte for byte.
    assert_eq!(&enc[..12], &b[..12]);
}

fuzz_target!(|data: &[u8]| {
    let claimed = RawLogEntry::from_bytes(data).map(|r| r.seqnum).unwrap_or(0);
    check(data, claimed);
    check(data, 0);
    if data.len() >= LOG_ENTRY_SIZE {
        let mut b = data[..LOG_ENTRY_SIZE].to_vec();
        let crc = crc32(&b[..LOG_ENTRY_CRC_RANGE]) as u64;
        b[LOG_ENTRY_CRC_RANGE..].copy_from_slice(&crc.to_le_bytes());
        check(&b, claimed);
    }
});
