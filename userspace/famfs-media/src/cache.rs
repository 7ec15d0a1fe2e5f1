//! CPU cache maintenance and copies for memory shared between hosts (Documentation/sharing.md).
//!
//! CXL shared memory is not kept coherent across hosts. famfs uses one pair of operations for it,
//! everywhere it reads or writes shared metadata or data:
//!
//! - **publish** (writer, after writing): write every cache line of the range back to memory
//!   (`clwb` when the CPU has it, else `clflushopt`, else `clflush`), then `sfence`, so the stores
//!   and the write-backs are complete before anything the writer does next (e.g. the log header
//!   store that makes a new entry visible);
//! - **acquire** (reader, before reading): write back and *drop* every line of the range
//!   (`clflushopt`, else `clflush`; never `clwb`, which may leave a stale line valid), then
//!   `mfence`, a full fence, so that no later load is satisfied before the lines are gone.
//!
//! Acquire writes dirty lines back too, so it is also a correct publish: `famfs flush`, which a
//! user runs on either side of a hand-over, does acquire.
//!
//! Other architectures: both are a sequentially consistent fence only. famfs then relies on the
//! hardware keeping the shared memory coherent; on non-coherent sharing without x86 cache
//! instructions, cross-host visibility is not guaranteed (sharing.md says so).
//!
//! The copies ([`copy_from_shared`], [`copy_to_shared`]) move bytes with volatile 8-byte accesses:
//! the memory may be changed by another host at any time, so it is never read or written as
//! ordinary Rust memory (a plain copy of memory that changes underneath is a data race in Rust's
//! model, and the compiler could tear, repeat or elide the accesses).

/// Cache line size assumed for flushing (x86_64).
pub const CACHE_LINE: usize = 64;

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::CACHE_LINE;
    use std::sync::OnceLock;

    #[derive(Clone, Copy)]
    struct Features {
        clflushopt: bool,
        clwb: bool,
    }

    fn features() -> Features {
        static F: OnceLock<Features> = OnceLock::new();
        *F.get_or_init(|| {
            // CPUID leaf 7, sub-leaf 0, EBX: bit 23 = CLFLUSHOPT, bit 24 = CLWB.
            // cpuid exists on every x86_64 CPU.
            let max_leaf = core::arch::x86_64::__cpuid(0).eax;
            let ebx = if max_leaf >= 7 {
                core::arch::x86_64::__cpuid_count(7, 0).ebx
            } else {
                0
            };
            Features {
                clflushopt: ebx & (1 << 23) != 0,
                clwb: ebx & (1 << 24) != 0,
            }
        })
    }

    fn lines(ptr: *const u8, len: usize) -> impl Iterator<Item = *const u8> {
        let start = (ptr as usize) & !(CACHE_LINE - 1);
        let end = (ptr as usize).saturating_add(len);
        (start..end).step_by(CACHE_LINE).map(|a| a as *const u8)
    }

    /// # Safety
    /// `[ptr, ptr + len)` must be mapped memory.
    pub unsafe fn publish(ptr: *const u8, len: usize) {
        let f = features();
        // SAFETY (both loops below): each `p` is the start of a cache line overlapping the
        // caller's mapped range; the cache instructions only write back or drop that line (no
        // data changes, no fault on mapped memory) and are present per CPUID (clflush always).
        for p in lines(ptr, len) {
            if f.clwb {
                core::arch::asm!("clwb [{0}]", in(reg) p, options(nostack, preserves_flags));
            } else if f.clflushopt {
                core::arch::asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags));
            } else {
                core::arch::x86_64::_mm_clflush(p);
            }
        }
        core::arch::x86_64::_mm_sfence();
    }

    /// # Safety
    /// `[ptr, ptr + len)` must be mapped memory.
    pub unsafe fn acquire(ptr: *const u8, len: usize) {
        let f = features();
        for p in lines(ptr, len) {
            if f.clflushopt {
                core::arch::asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags));
            } else {
                core::arch::x86_64::_mm_clflush(p);
            }
        }
        // A full fence: sfence orders the flushes against stores only, and a later load could
        // otherwise be served from a line before its flush is done.
        core::arch::x86_64::_mm_mfence();
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    // SAFETY: (contract) as on x86_64; this version only fences and touches no memory.
    pub unsafe fn publish(_ptr: *const u8, _len: usize) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
    // SAFETY: (contract) as on x86_64; this version only fences and touches no memory.
    pub unsafe fn acquire(_ptr: *const u8, _len: usize) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Publish: writes back the cache lines covering `[ptr, ptr + len)` and fences (writer side).
///
/// # Safety
/// The range must be mapped memory of this process.
pub unsafe fn publish(ptr: *const u8, len: usize) {
    // SAFETY: forwarded contract.
    unsafe { imp::publish(ptr, len) }
}

/// Acquire: writes back and drops the cache lines covering `[ptr, ptr + len)`, then a full fence,
/// so the next read comes from memory (reader side; also a correct publish).
///
/// # Safety
/// The range must be mapped memory of this process.
pub unsafe fn acquire(ptr: *const u8, len: usize) {
    // SAFETY: forwarded contract.
    unsafe { imp::acquire(ptr, len) }
}

const WORD: usize = std::mem::size_of::<u64>();

/// Copies `dst.len()` bytes from shared memory at `src` with volatile accesses (8-byte words
/// where `src` is aligned, bytes at the edges).
///
/// # Safety
/// `[src, src + dst.len())` must be mapped, readable memory, not overlapping `dst`.
pub unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    let head = src.align_offset(WORD).min(len);
    let words = (len - head) / WORD;
    let out = dst.as_mut_ptr();
    // SAFETY: every access is inside [src, src + len) (the caller's contract) or inside `dst`;
    // the word reads are aligned (src + head is 8-byte aligned); the writes to dst are unaligned.
    unsafe {
        for i in 0..head {
            *out.add(i) = std::ptr::read_volatile(src.add(i));
        }
        for w in 0..words {
            let off = head + w * WORD;
            let v = std::ptr::read_volatile(src.add(off).cast::<u64>());
            std::ptr::write_unaligned(out.add(off).cast::<u64>(), v);
        }
        for i in head + words * WORD..len {
            *out.add(i) = std::ptr::read_volatile(src.add(i));
        }
    }
}

/// Copies `src` into shared memory at `dst` with volatile accesses (8-byte words where `dst` is
/// aligned, bytes at the edges).
///
/// # Safety
/// `[dst, dst + src.len())` must be mapped, writable memory, not overlapping `src`.
pub unsafe fn copy_to_shared(src: &[u8], dst: *mut u8) {
    let len = src.len();
    let head = dst.align_offset(WORD).min(len);
    let words = (len - head) / WORD;
    let inp = src.as_ptr();
    // SAFETY: every access is inside [dst, dst + len) (the caller's contract) or inside `src`;
    // the word writes are aligned (dst + head is 8-byte aligned); the reads from src unaligned.
    unsafe {
        for i in 0..head {
            std::ptr::write_volatile(dst.add(i), *inp.add(i));
        }
        for w in 0..words {
            let off = head + w * WORD;
            let v = std::ptr::read_unaligned(inp.add(off).cast::<u64>());
            std::ptr::write_volatile(dst.add(off).cast::<u64>(), v);
        }
        for i in head + words * WORD..len {
            std::ptr::write_volatile(dst.add(i), *inp.add(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_acquire_do_not_fault() {
        let v = vec![7u8; 4096 + 3];
        // SAFETY: ranges inside the vector.
        unsafe {
            publish(v.as_ptr().add(1), 4096);
            acquire(v.as_ptr().add(5), 4000);
            acquire(v.as_ptr(), 0);
        }
        assert_eq!(v[100], 7);
    }

    #[test]
    fn shared_copies_every_alignment_and_length() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for so in 0..9 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 64, 200] {
                let mut out = vec![0u8; len];
                // SAFETY: so + len <= 300.
                unsafe { copy_from_shared(src.as_ptr().add(so), &mut out) };
                assert_eq!(out, &src[so..so + len]);
                let mut dst = vec![0xaau8; 300];
                // SAFETY: so + len <= 300.
                unsafe { copy_to_shared(&src[..len], dst.as_mut_ptr().add(so)) };
                assert_eq!(&dst[so..so + len], &src[..len]);
                assert!(dst[..so].iter().chain(&dst[so + len..]).all(|b| *b == 0xaa));
            }
        }
    }
}
