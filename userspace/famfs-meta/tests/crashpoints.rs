//! Crash consistency of log appends, proven by enumerating crash states (the method of ALICE and
//! CrashMonkey): a real append runs on media that record every store, cache flush and msync
//! ([`Media::record`]); a model of the medium then gives every state a crash can leave at every
//! point of that sequence, and each state is played as a host booting after the crash would.
//!
//! The models (Documentation/reliability.md):
//! - DAX memory (a devdax device with `--device`, the famfs.ko files of a module-mode mount):
//!   stores reach memory in cache lines, in any order, until a cache flush of their range is done;
//!   a line can be written back in the middle of a copy (a prefix of its 8-byte stores).
//! - Page cache (an image file with `--device`, the FUSE `.meta/.log` of a fallback mount):
//!   stores reach the file (the server, the memory) in pages, in any order, until an `msync` of
//!   their range is done; a page can be written back in the middle of a copy. Cache flushes do
//!   nothing for durability here.
//!
//! For every prefix of the recorded sequence, every subset of the units not yet made durable is
//! taken as written (at their latest content), and every unit is in turn taken torn (at each of
//! its intermediate contents) with the others all old or all new. Every such state must play to
//! the log before the append or after it, with no damage (never a hole that stops the play, never
//! a half entry accepted), and a later append on it must play too.

use famfs_format::{RelPath, DEFAULT_LOG_LEN, LOG_OFFSET, MIN_DEVICE_SIZE, SB_REGION_LEN};
use famfs_media::{Access, Media, MediaOp};
use famfs_meta::{mkfs, Famfs, Layout, MkfsOptions};
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::path::Path;

const DEV: u64 = MIN_DEVICE_SIZE;
/// The part of the log the appends below touch (header and the first entries).
const WIN: usize = 16 << 10;

#[derive(Clone, Copy, Debug)]
struct Model {
    name: &'static str,
    /// The unit the medium writes back: a cache line or a page.
    unit: usize,
    /// Whether a cache flush makes a range durable (DAX) or only an msync does (page cache).
    cpu_flush_persists: bool,
}

const DAX: Model = Model {
    name: "DAX memory",
    unit: 64,
    cpu_flush_persists: true,
};
const PAGES: Model = Model {
    name: "page cache",
    unit: 4096,
    cpu_flush_persists: false,
};

/// The medium of the log window under a model: what is durable, what was stored, and for each
/// unit not yet durable, its contents after each 8-byte store to it since it last was.
struct Sim {
    unit: usize,
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: BTreeMap<usize, Vec<Vec<u8>>>,
}

impl Sim {
    fn new(base: &[u8], unit: usize) -> Sim {
        Sim {
            unit,
            durable: base.to_vec(),
            current: base.to_vec(),
            pending: BTreeMap::new(),
        }
    }

    fn window(off: u64, len: usize) -> Option<usize> {
        let rel = usize::try_from(off.checked_sub(LOG_OFFSET)?).ok()?;
        (rel + len <= WIN).then_some(rel)
    }

    /// A store as the media does it: 8-byte volatile stores in ascending address order.
    fn store(&mut self, off: u64, data: &[u8]) {
        let rel = Self::window(off, data.len())
            .unwrap_or_else(|| panic!("store at {off:#x} outside the log window"));
        let mut i = 0;
        while i < data.len() {
            let n = (8 - (rel + i) % 8).min(data.len() - i);
            self.current[rel + i..rel + i + n].copy_from_slice(&data[i..i + n]);
            let u = (rel + i) / self.unit;
            let version = self.current[u * self.unit..(u + 1) * self.unit].to_vec();
            self.pending.entry(u).or_default().push(version);
            i += n;
        }
    }

    fn barrier(&mut self, off: u64, len: u64) {
        let Some(rel) = Self::window(off, 0) else {
            return;
        };
        if len == 0 || rel >= WIN {
            return;
        }
        let last = (rel + len as usize - 1).min(WIN - 1) / self.unit;
        for u in rel / self.unit..=last {
            if self.pending.remove(&u).is_some() {
                let r = u * self.unit..(u + 1) * self.unit;
                self.durable[r.clone()].copy_from_slice(&self.current[r]);
            }
        }
    }

    fn apply(&mut self, op: &MediaOp, m: Model) {
        match op {
            MediaOp::Store { off, data } => self.store(*off, data),
            MediaOp::CpuFlush { off, len } if m.cpu_flush_persists => self.barrier(*off, *len),
            MediaOp::CpuFlush { .. } => {}
            MediaOp::Sync { off, len } => self.barrier(*off, *len),
        }
    }

    /// Every state a crash now can leave.
    fn crash_states(&self, out: &mut Vec<Vec<u8>>) {
        let units: Vec<(&usize, &Vec<Vec<u8>>)> = self.pending.iter().collect();
        assert!(
            units.len() <= 14,
            "{} units pending at once: the enumeration would not be bounded",
            units.len()
        );
        let put = |s: &mut Vec<u8>, u: usize, v: &[u8]| {
            s[u * self.unit..(u + 1) * self.unit].copy_from_slice(v)
        };
        for mask in 0u32..1 << units.len() {
            let mut s = self.durable.clone();
            for (k, (u, versions)) in units.iter().enumerate() {
                if mask & (1 << k) != 0 {
                    put(
                        &mut s,
                        **u,
                        versions.last().expect("a pending unit has a version"),
                    );
                }
            }
            out.push(s);
        }
        for (k, (u, versions)) in units.iter().enumerate() {
            for torn in &versions[..versions.len() - 1] {
                for others_new in [false, true] {
                    let mut s = self.durable.clone();
                    for (j, (w, vs)) in units.iter().enumerate() {
                        if j != k && others_new {
                            put(&mut s, **w, vs.last().expect("a version"));
                        }
                    }
                    put(&mut s, **u, torn);
                    out.push(s);
                }
            }
        }
    }
}

fn rp(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Before,
    After,
}

/// Which side of an append a log of `played` entries is, when `before` were there before it.
fn seen_of(played: u64, before: u64) -> Result<Seen, String> {
    match played {
        n if n == before => Ok(Seen::Before),
        n if n == before + 1 => Ok(Seen::After),
        n => Err(format!(
            "{n} entries played, want {before} or {}",
            before + 1
        )),
    }
}

/// A device in process memory holding `sb` at 0 and `log` at the log's offset.
fn media_with(sb: &[u8], log: &[u8]) -> Media {
    let m = Media::memory(DEV).unwrap();
    m.write_at(0, sb).unwrap();
    m.write_at(LOG_OFFSET, log).unwrap();
    m
}

/// Plays a crash state as the next boot would, with no damage allowed.
fn boot(m: Media) -> Result<Famfs, String> {
    let fs = Famfs::from_media(m).map_err(|e| format!("log play failed: {e}"))?;
    if let Some(p) = fs.problems().iter().find(|p| p.is_damage()) {
        return Err(format!("log play found damage: {p}"));
    }
    Ok(fs)
}

/// The log goes on after a crash: a later append lands, and the log plays again to it with no
/// damage. Returns the file system played again.
fn next_append_plays(mut fs: Famfs) -> Result<Famfs, String> {
    fs.mkdir(&rp("after-crash"), 0o755, 0, 0)
        .map_err(|e| format!("the next append failed: {e}"))?;
    let played = fs.played();
    let again = Famfs::from_media(fs.into_media())
        .map_err(|e| format!("the log after the next append: {e}"))?;
    if again.played() != played
        || again.namespace().resolve("after-crash").is_none()
        || again.problems().iter().any(|p| p.is_damage())
    {
        return Err("the next append does not play".into());
    }
    Ok(again)
}

/// Plays a crash state of an append of `new_path` as the next boot would; `Err` says what is
/// wrong with it.
fn check(sb: &[u8], state: &[u8], before: u64, new_path: &str) -> Result<Seen, String> {
    let fs = boot(media_with(sb, state))?;
    let seen = seen_of(fs.played(), before)?;
    if (seen == Seen::After) != fs.namespace().resolve(new_path).is_some() {
        return Err(format!(
            "{seen:?} the append, but /{new_path} is {}",
            if seen == Seen::After {
                "missing"
            } else {
                "there"
            }
        ));
    }
    next_append_plays(fs)?;
    Ok(seen)
}

/// A new file system in process memory with `dirs` directories (old0, old1, ...).
fn fresh(dirs: u64) -> Famfs {
    let m = Media::memory(DEV).unwrap();
    let system_uuid = famfs_meta::local_system_uuid(&famfs_meta::system_uuid_path()).unwrap();
    let o = MkfsOptions {
        log_len: DEFAULT_LOG_LEN,
        fs_uuid: [7; 16],
        dev_uuid: [8; 16],
        system_uuid,
        device_name: "crash".into(),
    };
    mkfs(&m, &o).unwrap();
    let mut fs = Famfs::from_media(m).unwrap();
    for i in 0..dirs {
        fs.mkdir(&rp(&format!("old{i}")), 0o755, 0, 0).unwrap();
    }
    fs
}

/// The superblock region and the log of a device.
fn regions(m: &Media) -> (Vec<u8>, Vec<u8>) {
    let mut sb = vec![0u8; SB_REGION_LEN as usize];
    m.read_fresh(0, &mut sb).unwrap();
    let mut log = vec![0u8; DEFAULT_LOG_LEN as usize];
    m.read_fresh(LOG_OFFSET, &mut log).unwrap();
    (sb, log)
}

/// How the append reaches the log.
#[derive(Clone, Copy, Debug)]
enum Path_ {
    /// `famfs --device IMAGE`: an image file, mapped from the page cache.
    DeviceImage,
    /// `famfs --device /dev/daxX.Y`: DAX memory (process memory here: the same stores and flushes).
    DeviceDax,
    /// Through a mount: the `.meta/.superblock` and `.meta/.log` files (regular files here: the
    /// same stores, flushes and msyncs as on a mount).
    Mount,
}

/// Every path of an append, with the models of the medium under it.
const PATHS: [(Path_, &[Model]); 3] = [
    (Path_::DeviceImage, &[PAGES]),
    (Path_::DeviceDax, &[DAX]),
    (Path_::Mount, &[DAX, PAGES]),
];

/// Opens the prepared file system the way `path` does, with recording media.
fn open_recording(path: Path_, dir: &Path, sb: &[u8], log: &[u8]) -> (Famfs, famfs_media::Trace) {
    let mut media = match path {
        Path_::DeviceImage => {
            let img = dir.join("img");
            let f = std::fs::File::create(&img).unwrap();
            f.set_len(DEV).unwrap();
            f.write_all_at(sb, 0).unwrap();
            f.write_all_at(log, LOG_OFFSET).unwrap();
            Media::open(&img, Access::ReadWrite).unwrap()
        }
        Path_::DeviceDax => media_with(sb, log),
        Path_::Mount => {
            std::fs::create_dir_all(dir.join(".meta")).unwrap();
            std::fs::write(dir.join(".meta/.superblock"), sb).unwrap();
            std::fs::write(dir.join(".meta/.log"), log).unwrap();
            let open = |n: &str, w: bool| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(w)
                    .open(dir.join(".meta").join(n))
                    .unwrap()
            };
            Media::from_meta_files(
                dir,
                open(".superblock", false),
                open(".log", true),
                Access::ReadWrite,
            )
            .unwrap()
        }
    };
    let trace = media.record();
    let fs = Famfs::from_media(media).unwrap();
    trace.lock().unwrap().clear();
    (fs, trace)
}

/// The system uuid file and lock directory of every test here, set once before anything reads
/// them (the tests of this file run in parallel threads of one process).
fn env() {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(famfs_meta::SYSTEM_UUID_ENV, dir.path().join("system_uuid"));
        std::env::set_var(famfs_media::lock::LOCK_DIR_ENV, dir.path().join("locks"));
        famfs_meta::local_system_uuid(&dir.path().join("system_uuid")).unwrap();
        dir
    });
}

/// How the crash states of one recording under one model played.
#[derive(Default)]
struct Tally {
    before: usize,
    after: usize,
}

impl Tally {
    /// Counts the outcome of one state; a failure goes to `failures` (the first ten of a test),
    /// named by `what` and the reason.
    fn add(
        &mut self,
        r: Result<Seen, String>,
        failures: &mut Vec<String>,
        what: impl FnOnce() -> String,
    ) {
        match r {
            Ok(Seen::Before) => self.before += 1,
            Ok(Seen::After) => self.after += 1,
            Err(why) => {
                if failures.len() < 10 {
                    failures.push(format!("{}: {why}", what()));
                }
            }
        }
    }
}

#[test]
fn every_crash_state_of_an_append_plays_before_or_after_it() {
    env();
    let mut failures = Vec::new();
    let mut total = 0usize;
    // Entry 0 shares the header's cache line and page; entry 7 straddles pages 0 and 1; entry 8
    // is in page 1 alone.
    for before in [0u64, 7, 8] {
        let (sb, log) = regions(&fresh(before).into_media());
        let sb_head = &sb[..famfs_format::SB_SIZE];
        for (path, models) in PATHS {
            let d = tempfile::tempdir().unwrap();
            let (mut fs, trace) = open_recording(path, d.path(), &sb, &log);
            // A long name: the entry's lines are not mostly zeros, so partial writes show.
            let new_path = format!("new{before}-{}", "p".repeat(60));
            if before == 7 {
                fs.create_file(&rp(&new_path), 3 << 20, 0o644, 0, 0, Layout::Contiguous)
                    .unwrap();
            } else {
                fs.mkdir(&rp(&new_path), 0o755, 0, 0).unwrap();
            }
            let ops = trace.lock().unwrap().clone();
            if std::env::var_os("CRASHPOINTS_DEBUG").is_some() {
                for o in &ops {
                    match o {
                        MediaOp::Store { off, data } => {
                            println!("  store {off:#x} +{}", data.len())
                        }
                        o => println!("  {o:?}"),
                    }
                }
            }
            assert!(
                ops.iter().any(|o| matches!(o, MediaOp::Store { .. })),
                "{path:?}: no store recorded"
            );
            for &m in models {
                let states = states_of(&log, &ops, m);
                let mut t = Tally::default();
                for s in &states {
                    t.add(check(sb_head, s, before, &new_path), &mut failures, || {
                        format!("{path:?} on {} after {before} entries", m.name)
                    });
                }
                total += states.len();
                println!("{path:?} on {}, {before} entries before: {} ops, {} crash states: {} before the append, {} after", m.name, ops.len(), states.len(), t.before, t.after);
                assert!(
                    t.after > 0,
                    "{path:?} on {}: no state shows the append (the enumeration is broken)",
                    m.name
                );
            }
        }
    }
    println!("{total} crash states checked");
    assert!(
        failures.is_empty(),
        "crash states that do not play to before or after the append:\n{}",
        failures.join("\n")
    );
}

/// Keeps the first of each distinct state.
fn distinct<T: Hash>(states: &mut Vec<T>) {
    let mut seen = HashSet::new();
    states.retain(|s| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        s.hash(&mut h);
        seen.insert(h.finish())
    });
}

/// Every distinct crash state of `ops` (recorded on top of `log`) under model `m`.
fn states_of(log: &[u8], ops: &[MediaOp], m: Model) -> Vec<Vec<u8>> {
    let mut sim = Sim::new(&log[..WIN], m.unit);
    let mut states = Vec::new();
    sim.crash_states(&mut states);
    for op in ops {
        sim.apply(op, m);
        sim.crash_states(&mut states);
    }
    distinct(&mut states);
    states
}

/// Whether every 2 MiB unit of `path`'s memory (a pending or reclaimed file) is taken.
fn units_taken(fs: &Famfs, fmap: &famfs_format::Fmap) -> (bool, bool) {
    let mut all = true;
    let mut none = true;
    for e in fmap.extents() {
        for u in e.offset / (2 << 20)..e.end().div_ceil(2 << 20) {
            let set = fs.bitmap().is_set(u);
            all &= set;
            none &= !set;
        }
    }
    (all, none)
}

/// A master that dies in the middle of a delete or of a reclaim loses nothing and leaks nothing:
/// every crash state plays to before or after that append; after a delete, the file is gone
/// and its memory pending (still allocated); a later reclaim on that state frees it; after a
/// reclaim, the memory is free and nothing is pending.
#[test]
fn every_crash_state_of_a_delete_and_of_a_reclaim_plays_before_or_after_it() {
    env();
    let mut failures = Vec::new();
    for reclaim in [false, true] {
        let verb = if reclaim { "reclaim" } else { "delete" };
        // 7 directories, the victim (3 units), then a file deleted at once (the superblock is
        // marked from then on, as on any file system with a delete), then for the reclaim case
        // the victim's delete.
        let mut fs = fresh(7);
        let victim = format!("victim-{}", "v".repeat(60));
        fs.create_file(&rp(&victim), 5 << 20, 0o644, 0, 0, Layout::Contiguous)
            .unwrap();
        let ns = fs.namespace();
        let fmap = ns
            .get(ns.resolve(&victim).unwrap())
            .unwrap()
            .file()
            .unwrap()
            .fmap
            .clone();
        fs.create_file(&rp("first"), 1, 0o644, 0, 0, Layout::Contiguous)
            .unwrap();
        fs.unlink(&rp("first"), false).unwrap();
        fs.reclaim(&famfs_meta::OfflineGate).unwrap();
        if reclaim {
            fs.unlink(&rp(&victim), true).unwrap();
        }
        let before = fs.played();
        let (sb, log) = regions(&fs.into_media());
        let sb_head = &sb[..famfs_format::SB_SIZE];
        for (path, models) in PATHS {
            let d = tempfile::tempdir().unwrap();
            let (mut fs, trace) = open_recording(path, d.path(), &sb, &log);
            if reclaim {
                let r = fs.reclaim(&famfs_meta::OfflineGate).unwrap();
                assert_eq!(r.reclaimed.len(), 1);
            } else {
                fs.unlink(&rp(&victim), false).unwrap();
            }
            let ops = trace.lock().unwrap().clone();
            assert!(
                !ops.iter()
                    .any(|o| matches!(o, MediaOp::Store { off, .. } if *off < LOG_OFFSET)),
                "the superblock was marked before: only the log is written"
            );
            for &m in models {
                let mut t = Tally::default();
                let states = states_of(&log, &ops, m);
                for s in &states {
                    let r = (|| -> Result<Seen, String> {
                        let mut fs = boot(media_with(sb_head, s))?;
                        let seen = seen_of(fs.played(), before)?;
                        let present = fs.namespace().resolve(&victim).is_some();
                        let pending = fs.pending_deletes().any(|p| p.path == victim);
                        let (all, none) = units_taken(&fs, &fmap);
                        // (present, pending, memory taken) before and after each append.
                        let want = match (reclaim, &seen) {
                            (false, Seen::Before) => (true, false, true),
                            (false, Seen::After) | (true, Seen::Before) => (false, true, true),
                            (true, Seen::After) => (false, false, false),
                        };
                        let got = (present, pending, if want.2 { all } else { !none });
                        if got != want {
                            return Err(format!(
                                "{seen:?}: (present, pending, taken) = {got:?}, want {want:?}"
                            ));
                        }
                        // The next master finishes the job: a reclaim frees what is pending,
                        // and the log goes on.
                        fs.reclaim(&famfs_meta::OfflineGate)
                            .map_err(|e| format!("the reclaim after the crash failed: {e}"))?;
                        let again = next_append_plays(fs)?;
                        let (_, none) = units_taken(&again, &fmap);
                        if again.pending_deletes().count() != 0 || (!present && !none) {
                            return Err(
                                "the reclaim after the crash did not free the memory".into()
                            );
                        }
                        Ok(seen)
                    })();
                    t.add(r, &mut failures, || {
                        format!("{verb} of {path:?} on {}", m.name)
                    });
                }
                println!(
                    "{verb} via {path:?} on {}: {} ops, {} crash states: {} before, {} after",
                    m.name,
                    ops.len(),
                    states.len(),
                    t.before,
                    t.after
                );
                assert!(t.after > 0 && t.before > 0, "the enumeration is broken");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "crash states that do not play to before or after a delete or reclaim:\n{}",
        failures.join("\n")
    );
}

/// The medium of a whole device under a model, sparsely: units are keyed by device offset /
/// unit; `base` gives a unit's contents before the recording.
struct SparseSim<'a> {
    unit: u64,
    base: &'a dyn Fn(u64) -> Vec<u8>,
    durable: BTreeMap<u64, Vec<u8>>,
    current: BTreeMap<u64, Vec<u8>>,
    pending: BTreeMap<u64, Vec<Vec<u8>>>,
}

impl SparseSim<'_> {
    fn cur(&mut self, u: u64) -> &mut Vec<u8> {
        let base = self.base;
        let unit = self.unit;
        self.current.entry(u).or_insert_with(|| base(u * unit))
    }

    fn apply(&mut self, op: &MediaOp, m: Model) {
        let (off, len) = match op {
            MediaOp::Store { off, data } => {
                let mut i = 0usize;
                while i < data.len() {
                    let a = *off + i as u64;
                    let n = ((8 - a % 8) as usize).min(data.len() - i);
                    let u = a / self.unit;
                    let rel = (a % self.unit) as usize;
                    self.cur(u)[rel..rel + n].copy_from_slice(&data[i..i + n]);
                    let v = self.current[&u].clone();
                    self.pending.entry(u).or_default().push(v);
                    i += n;
                }
                return;
            }
            MediaOp::CpuFlush { .. } if !m.cpu_flush_persists => return,
            MediaOp::CpuFlush { off, len } | MediaOp::Sync { off, len } => (*off, *len),
        };
        if len == 0 {
            return;
        }
        for u in off / self.unit..=(off + len - 1) / self.unit {
            if self.pending.remove(&u).is_some() {
                self.durable.insert(u, self.current[&u].clone());
            }
        }
    }

    /// Crash states now, as overlays: nothing pending written, all of it, each unit alone, each
    /// prefix in address order, and each unit torn at each intermediate content with the
    /// others old or new (linear in the pending units, not exponential: a compaction writes
    /// many lines at once).
    fn crash_states(&self, out: &mut Vec<BTreeMap<u64, Vec<u8>>>) {
        let units: Vec<(&u64, &Vec<Vec<u8>>)> = self.pending.iter().collect();
        let last = |v: &Vec<Vec<u8>>| v.last().expect("a version").clone();
        out.push(self.durable.clone());
        let mut all = self.durable.clone();
        for (u, v) in &units {
            all.insert(**u, last(v));
        }
        out.push(all.clone());
        let mut prefix = self.durable.clone();
        for (u, v) in &units {
            let mut one = self.durable.clone();
            one.insert(**u, last(v));
            out.push(one);
            prefix.insert(**u, last(v));
            out.push(prefix.clone());
            for torn in &v[..v.len() - 1] {
                for base in [&self.durable, &all] {
                    let mut s = base.clone();
                    s.insert(**u, torn.clone());
                    out.push(s);
                }
            }
        }
    }
}

/// A compaction killed at any point leaves the old log or the new one, never a torn one: every
/// crash state either plays the old log, or (the record found) is finished by the next master
/// open to the new log; both show the same namespace, with no damage, and the log goes on.
#[test]
fn every_crash_state_of_a_compaction_plays_the_old_or_the_new_log() {
    env();
    let mut fs = fresh(0);
    // Deleted files first: the live entries move down the log.
    for i in 0..6 {
        fs.create_file(&rp(&format!("t{i}")), 1, 0o644, 0, 0, Layout::Contiguous)
            .unwrap();
    }
    fs.mkdir(&rp("keep"), 0o755, 0, 0).unwrap();
    fs.create_file(&rp("keep/f"), 3 << 20, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
    for i in 0..6 {
        fs.unlink(&rp(&format!("t{i}")), false).unwrap();
    }
    fs.reclaim(&famfs_meta::OfflineGate).unwrap();
    fs.create_file(&rp("pending"), 1, 0o644, 0, 0, Layout::Contiguous)
        .unwrap();
    fs.unlink(&rp("pending"), false).unwrap();
    let old_n = fs.played();
    let names = |fs: &Famfs| -> Vec<String> {
        let ns = fs.namespace();
        ns.nodes().map(|n| ns.path_of(n.ino).unwrap()).collect()
    };
    let want_names = names(&fs);
    let base_media = fs.into_media();
    let (sb, log) = regions(&base_media);
    let mut failures = Vec::new();
    for (path, model) in [(Path_::DeviceImage, PAGES), (Path_::DeviceDax, DAX)] {
        let d = tempfile::tempdir().unwrap();
        let (mut fs, trace) = open_recording(path, d.path(), &sb, &log);
        let r = fs.compact().unwrap();
        let new_n = r.entries_after;
        assert!(new_n < old_n);
        let ops = trace.lock().unwrap().clone();
        let unit = model.unit as u64;
        let base = |off: u64| {
            let mut b = vec![0u8; unit as usize];
            base_media.read_fresh(off, &mut b).unwrap();
            b
        };
        let mut sim = SparseSim {
            unit,
            base: &base,
            durable: BTreeMap::new(),
            current: BTreeMap::new(),
            pending: BTreeMap::new(),
        };
        let mut states = Vec::new();
        sim.crash_states(&mut states);
        for op in &ops {
            sim.apply(op, model);
            sim.crash_states(&mut states);
        }
        distinct(&mut states);
        // Before: the old log played; after: the new one.
        let mut t = Tally::default();
        for s in &states {
            let m = media_with(&sb, &log);
            for (u, b) in s {
                m.write_at(u * unit, b).unwrap();
            }
            let r = (|| -> Result<Seen, String> {
                let fs = boot(m)?;
                let seen = match fs.played() {
                    n if n == old_n => Seen::Before,
                    n if n == new_n => Seen::After,
                    n => return Err(format!("{n} entries, want {old_n} or {new_n}")),
                };
                if names(&fs) != want_names {
                    return Err(format!("namespace {:?}", names(&fs)));
                }
                if (seen == Seen::After) == (fs.pending_deletes().count() != 0) {
                    return Err("pending deletes wrong for the log played".into());
                }
                next_append_plays(fs)?;
                Ok(seen)
            })();
            t.add(r, &mut failures, || format!("{path:?} on {}", model.name));
        }
        println!(
            "compaction via {path:?} on {}: {} ops, {} crash states: {} old log, {} new",
            model.name,
            ops.len(),
            states.len(),
            t.before,
            t.after
        );
        assert!(t.before > 0 && t.after > 0, "the enumeration is broken");
    }
    assert!(
        failures.is_empty(),
        "crash states of a compaction that play neither log:\n{}",
        failures.join("\n")
    );
}
