//! Helpers shared by the integration tests: a raw message writer that can
//! produce invalid messages too (the crate's encoder refuses those).
#![allow(dead_code)]

use famfs_fmap::ALIGN;

pub const MIB: u64 = 1 << 20;

/// Little-endian message writer with no validation at all.
#[derive(Clone, Default)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// A header with the given fields and zero reserved fields.
    pub fn header(file_type: u8, ext_type: u32, nextents: u32, file_size: u64) -> Self {
        let mut r = Raw(Vec::new());
        r.u8(file_type)
            .u8(0)
            .u16(1)
            .u32(ext_type)
            .u32(nextents)
            .u32(0);
        r.u64(file_size).u64(0);
        r
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A simple extent (or strip) with a zero reserved field.
    pub fn ext(&mut self, devindex: u32, offset: u64, len: u64) -> &mut Self {
        self.u32(devindex).u32(0).u64(offset).u64(len)
    }
    /// An interleaved extent head with a zero reserved field.
    pub fn ie(&mut self, nstrips: u32, chunk_size: u32, nbytes: u64) -> &mut Self {
        self.u32(nstrips).u32(chunk_size).u64(nbytes).u64(0)
    }
    /// Overwrites bytes at `at` with `v`'s little-endian bytes.
    pub fn poke(&mut self, at: usize, v: &[u8]) -> &mut Self {
        self.0[at..at + v.len()].copy_from_slice(v);
        self
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A valid one-extent simple map of `n` 2 MiB granules.
pub fn simple_one(n: u64) -> Raw {
    let mut r = Raw::header(0, 0, 1, n * ALIGN);
    r.ext(0, 0, n * ALIGN);
    r
}

/// A valid interleaved map: one extent, `nstrips` strips of `per_strip`
/// chunks of 2 MiB each, on devices 0.., covering all of them.
pub fn interleaved_one(nstrips: u32, per_strip: u64) -> Raw {
    let nbytes = u64::from(nstrips) * per_strip * ALIGN;
    let mut r = Raw::header(0, 1, 1, nbytes);
    r.ie(nstrips, ALIGN as u32, nbytes);
    for s in 0..nstrips {
        r.ext(s, 16 * ALIGN * u64::from(s), per_strip * ALIGN);
    }
    r
}
