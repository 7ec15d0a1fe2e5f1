//! What a famfs file answers to requests that would change its size or allocation.
//!
//! A famfs file's memory is allocated once, by `famfs creat`, and its size is in the append-only
//! log: nothing can extend, shrink or punch it. Requests that would change nothing are another
//! matter: `posix_fallocate(3)` of a range inside the file asks that the range be allocated, and
//! it is; libpmem's `pmem_map_file` (so fio's libpmem engine) makes exactly that call, with a
//! truncate to the same size, before it maps a file. They succeed; the rest is refused.

use fuser::Errno;

/// A truncate (setattr of the size) to `new_size` of a file of `size` bytes: to the size it has
/// it changes nothing and succeeds, as POSIX has it; to any other size, `EPERM`.
pub(crate) fn truncate_verdict(size: u64, new_size: u64) -> Result<(), Errno> {
    if new_size == size {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// `fallocate(2)` on a file of `size` bytes.
///
/// - Mode 0 or `FALLOC_FL_KEEP_SIZE` over a range inside the file: already allocated, so `Ok`.
/// - The same past the end: it would extend the file, so `EPERM`, as for a truncate. Never
///   `EOPNOTSUPP` for mode 0, which would make glibc's `posix_fallocate` write zeros instead.
/// - Any other mode (punch hole, zero, collapse, insert, unshare range): `EOPNOTSUPP`, the
///   answer of a file system that does not offer that operation.
pub(crate) fn fallocate_verdict(
    size: u64,
    offset: u64,
    length: u64,
    mode: i32,
) -> Result<(), Errno> {
    if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    // The kernel refuses a zero length and offset + length past i64::MAX before asking us; a
    // hostile or buggy client of /dev/fuse gets EINVAL here too.
    let Some(end) = offset.checked_add(length).filter(|_| length > 0) else {
        return Err(Errno::EINVAL);
    };
    if end > size {
        return Err(Errno::EPERM);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_truncate_only_to_the_size_the_file_has() {
        assert_eq!(truncate_verdict(16 * MIB, 16 * MIB), Ok(()));
        assert_eq!(truncate_verdict(0, 0), Ok(()));
        assert_eq!(truncate_verdict(16 * MIB, 0), Err(Errno::EPERM));
        assert_eq!(truncate_verdict(16 * MIB, 16 * MIB + 1), Err(Errno::EPERM));
    }

    #[test]
    fn a_range_inside_the_file_is_already_allocated() {
        assert_eq!(fallocate_verdict(16 * MIB, 0, 16 * MIB, 0), Ok(()));
        assert_eq!(fallocate_verdict(16 * MIB, 4096, 4096, 0), Ok(()));
        assert_eq!(
            fallocate_verdict(16 * MIB, 0, 16 * MIB, libc::FALLOC_FL_KEEP_SIZE),
            Ok(())
        );
    }

    #[test]
    fn a_range_past_the_end_would_extend_the_file() {
        assert_eq!(
            fallocate_verdict(16 * MIB, 0, 16 * MIB + 1, 0),
            Err(Errno::EPERM)
        );
        assert_eq!(
            fallocate_verdict(16 * MIB, 16 * MIB, 1, 0),
            Err(Errno::EPERM)
        );
        assert_eq!(
            fallocate_verdict(16 * MIB, 16 * MIB, 1, libc::FALLOC_FL_KEEP_SIZE),
            Err(Errno::EPERM)
        );
    }

    #[test]
    fn modes_that_change_the_allocation_are_not_offered() {
        for mode in [
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            libc::FALLOC_FL_ZERO_RANGE,
            libc::FALLOC_FL_COLLAPSE_RANGE,
            libc::FALLOC_FL_INSERT_RANGE,
            libc::FALLOC_FL_UNSHARE_RANGE,
        ] {
            assert_eq!(
                fallocate_verdict(16 * MIB, 0, 4096, mode),
                Err(Errno::EOPNOTSUPP),
                "{mode:#x}"
            );
        }
    }

    #[test]
    fn empty_and_overflowing_ranges_are_invalid() {
        assert_eq!(fallocate_verdict(16 * MIB, 0, 0, 0), Err(Errno::EINVAL));
        assert_eq!(
            fallocate_verdict(16 * MIB, u64::MAX, 2, 0),
            Err(Errno::EINVAL)
        );
    }
}
