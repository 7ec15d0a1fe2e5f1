//! CPU cache maintenance for memory shared between hosts.
//!
//! CXL shared memory is not kept coherent across hosts: a writer must push its cache lines out to
//! memory after writing, and a reader must drop lines it may hold from an earlier read before reading
//! metadata another host may have changed. On x86_64 both are `clflushopt` (or `clflush` on old CPUs)
//! per 64-byte line followed by `sfence`; `clwb` is used for flushes when present because it keeps the
//! line valid. Elsewhere these are no-ops (coherent or unsupported architectures).

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
            let ebx = if max_leaf >= 7 { core::arch::x86_64::__cpuid_count(7, 0).ebx } else { 0 };
            Features { clflushopt: ebx & (1 << 23) != 0, clwb: ebx & (1 << 24) != 0 }
        })
    }

    fn lines(ptr: *const u8, len: usize) -> impl Iterator<Item = *const u8> {
        let start = (ptr as usize) & !(CACHE_LINE - 1);
        let end = (ptr as usize).saturating_add(len);
        (start..end).step_by(CACHE_LINE).map(|a| a as *const u8)
    }

    /// # Safety
    /// `[ptr, ptr + len)` must be mapped memory.
    pub unsafe fn flush(ptr: *const u8, len: usize) {
        let f = features();
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
    pub unsafe fn invalidate(ptr: *const u8, len: usize) {
        let f = features();
        for p in lines(ptr, len) {
            if f.clflushopt {
                core::arch::asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags));
            } else {
                core::arch::x86_64::_mm_clflush(p);
            }
        }
        core::arch::x86_64::_mm_sfence();
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub unsafe fn flush(_ptr: *const u8, _len: usize) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
    pub unsafe fn invalidate(_ptr: *const u8, _len: usize) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Writes back the cache lines covering `[ptr, ptr + len)`.
///
/// # Safety
/// The range must be mapped memory of this process.
pub unsafe fn flush(ptr: *const u8, len: usize) {
    imp::flush(ptr, len)
}

/// Drops (after writing back) the cache lines covering `[ptr, ptr + len)`, so the next read comes
/// from memory.
///
/// # Safety
/// The range must be mapped memory of this process.
pub unsafe fn invalidate(ptr: *const u8, len: usize) {
    imp::invalidate(ptr, len)
}

/// Flushes the cache lines of a byte slice (e.g. a mapping of a file in a famfs mount).
pub fn flush_slice(s: &[u8]) {
    // SAFETY: a slice is mapped memory.
    unsafe { flush(s.as_ptr(), s.len()) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flush_and_invalidate_do_not_fault() {
        let v = vec![7u8; 4096 + 3];
        super::flush_slice(&v[1..]);
        unsafe { super::invalidate(v.as_ptr().add(5), 4000) };
        unsafe { super::invalidate(v.as_ptr(), 0) };
        assert_eq!(v[100], 7);
    }
}
