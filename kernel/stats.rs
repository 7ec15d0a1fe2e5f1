// SPDX-License-Identifier: GPL-2.0

//! Module-wide counters, shown read-only in debugfs under `famfs/` (tests and benchmarks read
//! them to prove which fault sizes served a mapping and that I/O bypassed user space).
//!
//! C headers: none directly (`kernel::debugfs`)

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::debugfs;
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

static ENTRIES: [(&CStr, &Counter); 7] = [
    (c"pte_faults", &PTE_FAULTS),
    (c"pmd_faults", &PMD_FAULTS),
    (c"fallback_faults", &FALLBACK_FAULTS),
    (c"read_bytes", &READ_BYTES),
    (c"write_bytes", &WRITE_BYTES),
    (c"files", &FILES),
    (c"daxdevs", &DAXDEVS),
];

/// Shown as the decimal value and a newline, as `debugfs_create_u64` would.
impl core::fmt::Debug for Counter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0.load(Ordering::Relaxed))
    }
}

/// The `famfs` debugfs directory and its read-only counter files; removed on drop.
pub(crate) struct DebugfsDir {
    _files: KVec<Pin<KBox<debugfs::File<&'static Counter>>>>,
    _dir: debugfs::Dir,
}

impl DebugfsDir {
    /// Creates `/sys/kernel/debug/famfs/*`. Debugfs failures are not fatal: the counters are
    /// still counted, only not shown.
    pub(crate) fn create() -> Self {
        let dir = debugfs::Dir::new(c"famfs");
        let mut files = KVec::new();
        for (name, counter) in ENTRIES {
            match KBox::pin_init(dir.read_only_file(name, counter), GFP_KERNEL) {
                Ok(file) => {
                    if files.push(file, GFP_KERNEL).is_err() {
                        pr_warn!("no memory for the debugfs counters\n");
                    }
                }
                Err(_) => pr_warn!("no memory for the debugfs counters\n"),
            }
        }
        Self {
            _files: files,
            _dir: dir,
        }
    }
}
