//! Counts of the FUSE requests the server received, per opcode.
//!
//! In module mode read, write and mmap of a file go from the FUSE kernel straight to the
//! module's DAX file (passthrough): a `read` or `write` count that stays at zero while a test
//! reads and writes through the mount is the proof. The counts are exposed as the `user.famfs.stats`
//! xattr of the mount's root and in the `--stats-file` (written on SIGUSR1 and at exit).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! ops {
    ($($v:ident => $n:literal),* $(,)?) => {
        /// A FUSE opcode the server counts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Op { $($v),* }
        impl Op {
            /// Every opcode, in display order.
            pub const ALL: &'static [Op] = &[$(Op::$v),*];
            /// The opcode's name as FUSE spells it (lower case).
            pub fn name(self) -> &'static str {
                match self { $(Op::$v => $n),* }
            }
        }
    };
}

ops! {
    Init => "init", Lookup => "lookup", Forget => "forget", Getattr => "getattr", Setattr => "setattr",
    Open => "open", Read => "read", Write => "write", Flush => "flush", Release => "release",
    Fsync => "fsync", Opendir => "opendir", Readdir => "readdir", Readdirplus => "readdirplus",
    Releasedir => "releasedir", Statfs => "statfs", Getxattr => "getxattr", Listxattr => "listxattr",
    Setxattr => "setxattr", Removexattr => "removexattr", Access => "access", Create => "create",
    Mknod => "mknod", Mkdir => "mkdir", Unlink => "unlink", Rmdir => "rmdir", Rename => "rename",
    Link => "link", Symlink => "symlink", Readlink => "readlink", Fallocate => "fallocate",
    Getlk => "getlk", Setlk => "setlk", Lseek => "lseek", CopyFileRange => "copy_file_range",
    Ioctl => "ioctl",
}

/// Per-opcode request counters plus a few server events.
#[derive(Debug)]
pub struct Stats {
    counts: [AtomicU64; 40],
    /// Opens answered with `FOPEN_PASSTHROUGH`.
    pub passthrough_opens: AtomicU64,
    /// DAX files created through `/dev/famfs` (one per inode).
    pub dax_files_created: AtomicU64,
    /// Log plays that found new entries.
    pub log_plays: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            passthrough_opens: AtomicU64::new(0),
            dax_files_created: AtomicU64::new(0),
            log_plays: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// Counts one request.
    pub fn count(&self, op: Op) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of one opcode.
    pub fn get(&self, op: Op) -> u64 {
        self.counts[op as usize].load(Ordering::Relaxed)
    }

    /// `name count` lines, one per opcode (zero counts included, so a reader can rely on every
    /// line being present), then the event counters.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for op in Op::ALL {
            s.push_str(&format!("{} {}\n", op.name(), self.get(*op)));
        }
        s.push_str(&format!(
            "passthrough_opens {}\n",
            self.passthrough_opens.load(Ordering::Relaxed)
        ));
        s.push_str(&format!(
            "dax_files_created {}\n",
            self.dax_files_created.load(Ordering::Relaxed)
        ));
        s.push_str(&format!(
            "log_plays {}\n",
            self.log_plays.load(Ordering::Relaxed)
        ));
        s
    }

    /// Writes [`Stats::render`] to `path` atomically (temporary file + rename), so a reader never
    /// sees half a file.
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }
}

/// Parses [`Stats::render`] output into (name, count) pairs (for tests and tools).
pub fn parse_stats(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        assert!(Op::ALL.len() <= 40);
        let s = Stats::default();
        s.count(Op::Read);
        s.count(Op::Read);
        s.count(Op::Ioctl);
        let p = parse_stats(&s.render());
        assert!(p.contains(&("read".into(), 2)));
        assert!(p.contains(&("ioctl".into(), 1)));
        assert!(p.contains(&("write".into(), 0)));
    }
}
