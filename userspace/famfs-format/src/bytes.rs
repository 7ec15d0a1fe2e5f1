//! Little-endian field access on byte slices. Callers check slice lengths first (the structs have
//! fixed sizes), so these helpers take fixed-size arrays where they can.

pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn get_arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Checks that `b` holds at least `need` bytes, naming `what` in the error.
pub(crate) fn need(b: &[u8], need: usize, what: &'static str) -> Result<(), crate::FormatError> {
    if b.len() < need {
        Err(crate::FormatError::Truncated {
            what,
            need,
            have: b.len(),
        })
    } else {
        Ok(())
    }
}
