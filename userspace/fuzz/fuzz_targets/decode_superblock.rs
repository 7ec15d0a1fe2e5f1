//! Arbitrary bytes as a superblock. Each input is decoded as it is and once more with its crc
//! fixed up (so that the checks after the crc are reached); whatever decodes must re-encode to
//! the same superblock and, for the fields the decoder keeps, to the same bytes.
#![no_main]

use famfs_format::{crc32, FormatError, RawSuperblock, Superblock, SB_CRC_RANGE, SB_SIZE};
use libfuzzer_sys::fuzz_target;

fn check(b: &[u8]) {
    let sb = match Superblock::decode(b) {
        Ok(sb) => sb,
        Err(FormatError::Truncated { need, have, .. }) => {
            assert!(b.len() < SB_SIZE && need == SB_SIZE && have == b.len());
            return;
        }
        Err(_) => return,
    };
    let raw = RawSuperblock::from_bytes(b).expect("decoded, so long enough");
    let enc = sb.encode();
    assert_eq!(
        Superblock::decode(&enc).as_ref(),
        Ok(&sb),
        "re-encoding changes the superblock"
    );
    // The decoder checks magic, version, log offset and log length, and the encoder writes them
    // back; it ignores the omf version and the padding (as the C tools do) and rewrites them.
    if raw.omf_ver_major == 2 && raw.omf_ver_minor == 2 && raw.pad == 0 {
        assert_eq!(&enc[..], &b[..SB_SIZE], "round trip changes bytes");
    }
    assert!(sb.log_len.is_power_of_two() && sb.log_len >= 8 << 20);
    let g = sb.log_geometry();
    assert!(g.capacity() > 0 && g.entry_offset(g.last_index()).is_some());
    assert!(sb.data_offset() > sb.log_len);
    let _ = sb.device_name_str();
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= SB_SIZE {
        let mut b = data[..SB_SIZE].to_vec();
        let crc = crc32(&b[..SB_CRC_RANGE]) as u64;
        b[SB_CRC_RANGE..SB_CRC_RANGE + 8].copy_from_slice(&crc.to_le_bytes());
        check(&b);
    }
});
