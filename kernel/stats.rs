// SPDX-License-Identifier: GPL-2.0

//! Module-wide counters, shown read-only in debugfs under `famfs/` (tests and benchmarks read
//! them to prove which fault sizes served a mapping and that I/O bypassed user space).

use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use kernel::bindings;
use kernel::prelude::*;

/// One counter.
pub(crate) struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
}

pub(crate) static PTE_FAULTS: Counter = Counter::new();
pub(crate) static PMD_FAULTS: Counter = Counter::new();
pub(crate) static FALLBACK_FAULTS: Counter = Counter::new();
pub(crate) static READ_BYTES: Counter = Counter::new();
pub(crate) static WRITE_BYTES: Counter = Counter::new();
pub(crate) static FILES: Counter = Counter::new();
pub(crate) static DAXDEVS: Counter = Counter::new();

const ENTRIES: [(&CStr, &Counter); 7] = [
    (c"pte_faults", &PTE_FAULTS),
    (c"pmd_faults", &PMD_FAULTS),
    (c"fallback_faults", &FALLBACK_FAULTS),
    (c"read_bytes", &READ_BYTES),
    (c"write_bytes", &WRITE_BYTES),
    (c"files", &FILES),
    (c"daxdevs", &DAXDEVS),
];

/// The `famfs` debugfs directory; removed on drop.
pub(crate) struct DebugfsDir {
    dir: *mut bindings::dentry,
}

// SAFETY: The dentry pointer is only passed to `debugfs_remove`, which may run on any thread.
unsafe impl Send for DebugfsDir {}
// SAFETY: No `&self` method touches the pointer.
unsafe impl Sync for DebugfsDir {}

impl DebugfsDir {
    /// Creates `/sys/kernel/debug/famfs/*`. Debugfs failures are not fatal: the counters are
    /// still counted, only not shown.
    pub(crate) fn create() -> Self {
        // SAFETY: A NUL-terminated name and no parent (the debugfs root).
        let dir =
            unsafe { bindings::debugfs_create_dir(c"famfs".as_ptr().cast(), ptr::null_mut()) };
        if kernel::error::from_err_ptr(dir).is_err() {
            pr_warn!("no debugfs directory; counters are not shown\n");
            return Self {
                dir: ptr::null_mut(),
            };
        }
        for (name, counter) in ENTRIES {
            // The counters are statics: they outlive the directory, which goes with the module.
            // SAFETY: `dir` is a live debugfs directory; `AtomicU64` has `u64`'s layout and
            // debugfs only reads it (mode 0444), so the statics serve as its value.
            unsafe {
                bindings::debugfs_create_u64(name.as_ptr().cast(), 0o444, dir, counter.0.as_ptr())
            };
        }
        Self { dir }
    }
}

impl Drop for DebugfsDir {
    fn drop(&mut self) {
        if !self.dir.is_null() {
            // SAFETY: `dir` came from `debugfs_create_dir` and is removed exactly once.
            unsafe { bindings::debugfs_remove(self.dir) };
        }
    }
}
