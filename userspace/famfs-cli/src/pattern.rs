//! The deterministic fill used by `famfs creat -r -S SEED` and checked by `famfs verify -S SEED`.
//!
//! The byte at file offset `o` is byte `o % 8` (little-endian) of `splitmix64(seed ^ (o / 8) *
//! 0x9e3779b97f4a7c15)`. It depends only on the seed and the offset, so any range can be generated
//! or checked independently (in parallel, or a piece at a time) and two tools agree byte for byte.

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn word(seed: u64, w: u64) -> [u8; 8] {
    splitmix64(seed ^ w.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes()
}

/// Fills `buf` with the pattern bytes of file offsets `[offset, offset + buf.len())`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut o = offset;
    let mut i = 0;
    while i < buf.len() {
        let w = word(seed, o / 8);
        let start = (o % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&w[start..start + n]);
        i += n;
        o += n as u64;
    }
}

/// Offset (relative to `offset`) of the first byte of `buf` that differs from the pattern.
pub fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<usize> {
    let mut expect = vec![0u8; buf.len()];
    fill(seed, offset, &mut expect);
    buf.iter().zip(&expect).position(|(a, b)| a != b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_agree_with_whole() {
        let mut whole = vec![0u8; 1000];
        fill(42, 3, &mut whole);
        let mut piece = vec![0u8; 97];
        fill(42, 3 + 501, &mut piece);
        assert_eq!(&whole[501..598], &piece[..]);
        assert_eq!(first_mismatch(42, 3, &whole), None);
        whole[700] ^= 1;
        assert_eq!(first_mismatch(42, 3, &whole), Some(700));
        let mut other = vec![0u8; 1000];
        fill(43, 3, &mut other);
        assert_ne!(other, whole);
        // Pinned: documented values must never change.
        let mut b = [0u8; 8];
        fill(0, 0, &mut b);
        assert_eq!(b, splitmix64(0).to_le_bytes());
    }
}
