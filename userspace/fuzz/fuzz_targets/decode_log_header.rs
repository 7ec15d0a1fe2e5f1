//! Arbitrary bytes as a log header, checked against the default log length and against the length
//! the header itself claims, as they are and with the crc fixed up. A header that decodes must
//! bound its counters by the log and re-encode to the very same 48 bytes.
#![no_main]

use famfs_format::{
    crc32, LogHeader, RawLogHeader, DEFAULT_LOG_LEN, LOG_ENTRY_SIZE, LOG_HEADER_CRC_RANGE,
    LOG_HEADER_SIZE,
};
use libfuzzer_sys::fuzz_target;

fn check(b: &[u8], sb_log_len: u64) {
    let Ok(h) = LogHeader::decode(b, sb_log_len) else {
        return;
    };
    let g = h.geometry();
    assert_eq!(g.log_len(), sb_log_len);
    assert!(h.next_index() <= g.capacity());
    assert_eq!(h.is_full(), h.next_index() == g.capacity());
    // Every counted entry lies inside the log.
    if h.next_index() > 0 {
        let off = g
            .entry_offset(h.next_index() - 1)
            .expect("counted entry inside the log");
        assert!(off + LOG_ENTRY_SIZE as u64 <= g.log_len());
    }
    assert_eq!(
        &h.encode()[..],
        &b[..LOG_HEADER_SIZE],
        "round trip changes bytes"
    );
    assert_eq!(LogHeader::decode(&h.encode(), sb_log_len), Ok(h));
    if let Ok(next) = h.advanced() {
        assert_eq!(next.next_index(), h.next_index() + 1);
        assert!(next.next_index() <= g.capacity());
    }
}

fuzz_target!(|data: &[u8]| {
    let claimed = RawLogHeader::from_bytes(data)
        .map(|r| r.len)
        .unwrap_or(DEFAULT_LOG_LEN);
    check(data, DEFAULT_LOG_LEN);
    check(data, claimed);
    if data.len() >= LOG_HEADER_SIZE {
        let mut b = data[..LOG_HEADER_SIZE].to_vec();
        let crc = crc32(&b[..LOG_HEADER_CRC_RANGE]) as u64;
        b[24..32].copy_from_slice(&crc.to_le_bytes());
        check(&b, DEFAULT_LOG_LEN);
        check(&b, claimed);
    }
});
