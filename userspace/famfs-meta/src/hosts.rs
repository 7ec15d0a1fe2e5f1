//! Hosts of a file system: the host slots in the shared memory (famfs-format `slots`), claiming
//! one, liveness as an observer sees it on its own clock, and the reclaim gate built on them
//! (Documentation/design.md, "Hosts and leases").
//!
//! - Every host that mounts claims a slot ([`claim_slot`]) and heartbeats in it: a counter it
//!   increments every interval, the number of log entries it has played, the deleted files it
//!   still holds.
//! - There is no shared clock. An observer ([`HostObserver`]) remembers, per slot, when *it*
//!   first saw the slot's current heartbeat value, on its own monotonic clock. A slot whose
//!   heartbeat has not changed for longer than [`dead_after`] of the slot's lease is dead.
//! - A dead host has fenced itself by then: famfs-fused renews its famfs.ko lease only after its
//!   heartbeat write was read back, and only up to one lease past the moment it started that
//!   write. So once the observer has watched one value for a lease (plus the clock-rate slack),
//!   the host's kernel has revoked its files.
//! - [`SlotGate`] is the reclaim gate: a deleted file's memory may be reused when every host
//!   that is not dead has played the delete and does not hold the file.

use famfs_format::slots::{
    slot_offset, HostSlot, SlotContent, SlotRole, SlotState, SLOT_COUNT, SLOT_SIZE,
};
use famfs_format::{format_uuid, UuidBytes};
use famfs_media::{Media, MediaError};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use thiserror::Error;

pub use crate::ReclaimGate;

/// Errors of the host slots.
#[derive(Debug, Error)]
pub enum HostsError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("host slot {index}: {source}")]
    Io {
        index: usize,
        source: std::io::Error,
    },
    #[error(
        "no free host slot: all {SLOT_COUNT} slots are held by hosts that are alive (or were \
         alive within their lease); unmount the file system on a host that no longer needs it"
    )]
    NoFreeSlot,
    #[error(
        "host slot {index} was taken by another host while this one claimed it ({tries} tries): \
         too many hosts mounting at once; mount again"
    )]
    Contended { index: usize, tries: usize },
    #[error(
        "host slot {index} no longer holds this host (found {found}): another host took it; \
         this host stops heartbeating (its lease ends and famfs.ko revokes its files)"
    )]
    SlotLost { index: usize, found: String },
}

/// Reads and writes slots: the device or image ([`Media`], which invalidates the CPU cache before
/// reading and writes back after writing), or a file over the superblock region at offset 0 (the
/// server's famfs.ko file: `pread`/`pwrite`, which fail with an errno once famfs.ko revoked it).
pub trait SlotIo {
    fn read_slot(&self, index: usize) -> Result<[u8; SLOT_SIZE], HostsError>;
    fn write_slot(&self, index: usize, bytes: &[u8; SLOT_SIZE]) -> Result<(), HostsError>;
}

impl<T: SlotIo + ?Sized> SlotIo for &T {
    fn read_slot(&self, index: usize) -> Result<[u8; SLOT_SIZE], HostsError> {
        (**self).read_slot(index)
    }

    fn write_slot(&self, index: usize, bytes: &[u8; SLOT_SIZE]) -> Result<(), HostsError> {
        (**self).write_slot(index, bytes)
    }
}

fn offset(index: usize) -> Result<u64, HostsError> {
    slot_offset(index).ok_or(HostsError::Io {
        index,
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })
}

impl SlotIo for Media {
    fn read_slot(&self, index: usize) -> Result<[u8; SLOT_SIZE], HostsError> {
        let mut b = [0u8; SLOT_SIZE];
        self.read_fresh(offset(index)?, &mut b)?;
        Ok(b)
    }

    fn write_slot(&self, index: usize, bytes: &[u8; SLOT_SIZE]) -> Result<(), HostsError> {
        Ok(self.write_durable(offset(index)?, bytes)?)
    }
}

impl SlotIo for std::fs::File {
    fn read_slot(&self, index: usize) -> Result<[u8; SLOT_SIZE], HostsError> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; SLOT_SIZE];
        self.read_exact_at(&mut b, offset(index)?)
            .map_err(|source| HostsError::Io { index, source })?;
        Ok(b)
    }

    fn write_slot(&self, index: usize, bytes: &[u8; SLOT_SIZE]) -> Result<(), HostsError> {
        use std::os::unix::fs::FileExt;
        self.write_all_at(bytes, offset(index)?)
            .map_err(|source| HostsError::Io { index, source })
    }
}

/// Reads the whole table, decoded for the file system `fs_uuid`.
pub fn read_table(io: &dyn SlotIo, fs_uuid: &UuidBytes) -> Result<Vec<SlotContent>, HostsError> {
    (0..SLOT_COUNT)
        .map(|i| Ok(HostSlot::decode(&io.read_slot(i)?, fs_uuid)))
        .collect()
}

/// How long an observer must have seen a slot's heartbeat unchanged before the host counts as
/// dead, for a host lease of `lease_ms`: the lease, plus 10 % for the difference in clock rates
/// between the two hosts (real clocks differ by well under 0.1 %), plus 500 ms for famfs.ko to
/// run the revoke once its timer fired. See design.md, "Hosts and leases".
pub fn dead_after(lease_ms: u32) -> Duration {
    let lease = Duration::from_millis(u64::from(lease_ms));
    lease + lease / 10 + Duration::from_millis(500)
}

/// The longest lease a server accepts ([`dead_after`] of it is how long a slot that does not
/// decode must stay unchanged before a claimer or the gate ignores it).
pub const MAX_LEASE_MS: u32 = 120_000;

/// A slot a host is about to claim: everything but the state, generation and heartbeat.
#[derive(Debug, Clone)]
pub struct SlotTemplate {
    pub fs_uuid: UuidBytes,
    pub host_id: UuidBytes,
    pub system_uuid: UuidBytes,
    pub role: SlotRole,
    pub module_lease: bool,
    pub lease_ms: u32,
    pub interval_ms: u32,
    pub hostname: String,
    /// Log entries played when the claim is made (the host plays the log again after the claim
    /// is visible and before it serves any file: see [`claim_slot`]).
    pub applied: u64,
}

impl SlotTemplate {
    fn slot(&self, state: SlotState, generation: u64, heartbeat: u64) -> HostSlot {
        let mut flags = 0;
        if self.module_lease {
            flags |= famfs_format::slots::SlotFlags::MODULE_LEASE;
        }
        HostSlot {
            state,
            fs_uuid: self.fs_uuid,
            host_id: self.host_id,
            system_uuid: self.system_uuid,
            generation,
            heartbeat,
            applied: self.applied,
            role: self.role,
            flags: famfs_format::slots::SlotFlags(flags),
            lease_ms: self.lease_ms,
            interval_ms: self.interval_ms,
            pid: std::process::id(),
            hostname: self.hostname.clone(),
            held: Vec::new(),
        }
    }
}

/// Options of a claim.
#[derive(Debug, Clone, Copy)]
pub struct ClaimOptions {
    /// How long a written claim must stay unchanged before it is taken as won.
    pub settle: Duration,
    /// Whether to wait for dead slots when none is free (takes [`dead_after`] of the longest
    /// lease among them); otherwise a full table fails at once with [`HostsError::NoFreeSlot`].
    pub wait_for_dead: bool,
}

impl Default for ClaimOptions {
    fn default() -> Self {
        ClaimOptions {
            settle: Duration::from_millis(100),
            wait_for_dead: true,
        }
    }
}

/// A claimed slot.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub index: usize,
    pub slot: HostSlot,
}

fn generation_of(c: &SlotContent) -> u64 {
    match c {
        SlotContent::Slot(s) => s.generation,
        _ => 0,
    }
}

fn is_free(c: &SlotContent) -> bool {
    match c {
        SlotContent::Empty | SlotContent::Foreign => true,
        SlotContent::Slot(s) => s.state == SlotState::Released,
        SlotContent::Corrupt(_) => false,
    }
}

/// Claims a slot for this host: a free one (never used, another file system's, or released by
/// a clean unmount), else, with `wait_for_dead`, one whose bytes stayed unchanged for
/// [`dead_after`] of its lease.
///
/// The memory has no atomic operation across hosts, so a claim is write, settle, read back:
///
/// 1. read the table; pick a free slot, starting at a random index (two hosts mounting at once
///    rarely even pick the same slot);
/// 2. write it as [`SlotState::Claiming`] with this host's random id and the slot's generation
///    plus one;
/// 3. wait `settle`, read it back: anything but our bytes means another host wrote it after us,
///    and we try another slot (the last writer keeps it);
/// 4. write it as [`SlotState::Live`] and read that back.
///
/// What it guarantees: two hosts end up believing they hold one slot only if one of them took
/// longer than `settle` between reading the slot free (step 1) and writing its claim (step 2),
/// e.g. it was stopped there. Every heartbeat then reads the slot before writing it
/// ([`Heartbeat::beat`]) and a host that finds another's id stops heartbeating, so the
/// double claim lasts at most one interval, and it is seen by observers as a slot whose identity
/// changed without being released ([`HostView::contested`]), which the gate waits out.
///
/// A host must claim its slot before it plays the log for serving, or play again after the
/// claim is visible and before it serves a file: then a delete appended before the claim was
/// visible is in its namespace, and one appended after is held back by the gate until the host
/// has played it.
pub fn claim_slot(
    io: &dyn SlotIo,
    template: &SlotTemplate,
    opts: ClaimOptions,
) -> Result<Claimed, HostsError> {
    const TRIES: usize = 8;
    let mut excluded = vec![false; SLOT_COUNT];
    let mut last = 0;
    for _ in 0..TRIES {
        let table = read_table(io, &template.fs_uuid)?;
        let start = random_index();
        let mut pick = (0..SLOT_COUNT)
            .map(|k| (start + k) % SLOT_COUNT)
            .find(|&i| !excluded[i] && is_free(&table[i]));
        if pick.is_none() && opts.wait_for_dead {
            pick = wait_for_dead_slot(io, &template.fs_uuid, &table, &excluded)?;
        }
        let Some(index) = pick else {
            return Err(HostsError::NoFreeSlot);
        };
        last = index;
        let generation = generation_of(&table[index]) + 1;
        let claim = template.slot(SlotState::Claiming, generation, 0).encode();
        io.write_slot(index, &claim)?;
        std::thread::sleep(opts.settle + jitter(opts.settle));
        if io.read_slot(index)? != claim {
            log::warn!("host slot {index}: another host wrote it while this one claimed it");
            excluded[index] = true;
            continue;
        }
        let live = template.slot(SlotState::Live, generation, 1);
        let bytes = live.encode();
        io.write_slot(index, &bytes)?;
        if io.read_slot(index)? != bytes {
            excluded[index] = true;
            continue;
        }
        return Ok(Claimed { index, slot: live });
    }
    Err(HostsError::Contended {
        index: last,
        tries: TRIES,
    })
}

/// Watches the slots that are neither free nor excluded until one has stayed byte-for-byte
/// unchanged for [`dead_after`] of its lease ([`MAX_LEASE_MS`] for one that does not decode).
fn wait_for_dead_slot(
    io: &dyn SlotIo,
    fs_uuid: &UuidBytes,
    table: &[SlotContent],
    excluded: &[bool],
) -> Result<Option<usize>, HostsError> {
    let wait = table
        .iter()
        .map(|c| match c {
            SlotContent::Slot(s) => dead_after(s.lease_ms),
            _ => dead_after(MAX_LEASE_MS),
        })
        .max()
        .unwrap_or_default();
    let before: Vec<[u8; SLOT_SIZE]> = (0..SLOT_COUNT)
        .map(|i| io.read_slot(i))
        .collect::<Result<_, _>>()?;
    log::warn!(
        "every host slot is in use: waiting {} s for one whose host is dead",
        wait.as_secs()
    );
    let t0 = Instant::now();
    while t0.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(200));
    }
    for (i, b) in before.iter().enumerate() {
        if excluded[i] {
            continue;
        }
        let now = io.read_slot(i)?;
        let c = HostSlot::decode(&now, fs_uuid);
        let limit = match &c {
            SlotContent::Slot(s) => dead_after(s.lease_ms),
            _ => dead_after(MAX_LEASE_MS),
        };
        if is_free(&c) || (now == *b && t0.elapsed() >= limit) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn random_index() -> usize {
    let u = uuid::Uuid::new_v4();
    (u.as_u128() % SLOT_COUNT as u128) as usize
}

fn jitter(settle: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    settle * r / 2000
}

/// A random host id for one mount.
pub fn new_host_id() -> UuidBytes {
    *uuid::Uuid::new_v4().as_bytes()
}

/// This host's name (`uname -n`), or empty.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A claimed slot being heartbeaten (the server's side).
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub index: usize,
    slot: HostSlot,
}

impl Heartbeat {
    /// Starts from a claim.
    pub fn new(c: Claimed) -> Self {
        Heartbeat {
            index: c.index,
            slot: c.slot,
        }
    }

    /// The slot as last written.
    pub fn slot(&self) -> &HostSlot {
        &self.slot
    }

    /// One heartbeat: reads the slot (it must still be ours: same host id and generation), writes
    /// it with the heartbeat counter plus one and the given applied count and held list, and
    /// reads it back. Only when this returns `Ok` may the caller renew its lease.
    pub fn beat(&mut self, io: &dyn SlotIo, applied: u64, held: &[u64]) -> Result<(), HostsError> {
        self.check_ours(io)?;
        let mut next = self.slot.clone();
        next.heartbeat += 1;
        next.applied = applied;
        next.held = held.to_vec();
        let bytes = next.encode();
        io.write_slot(self.index, &bytes)?;
        if io.read_slot(self.index)? != bytes {
            return Err(self.lost(io));
        }
        self.slot = next;
        Ok(())
    }

    /// Marks the slot released (clean unmount): the host holds nothing any more and the slot is
    /// free for the next host.
    pub fn release(&mut self, io: &dyn SlotIo) -> Result<(), HostsError> {
        self.check_ours(io)?;
        let mut next = self.slot.clone();
        next.state = SlotState::Released;
        next.held.clear();
        next.heartbeat += 1;
        io.write_slot(self.index, &next.encode())?;
        self.slot = next;
        Ok(())
    }

    fn check_ours(&self, io: &dyn SlotIo) -> Result<(), HostsError> {
        match HostSlot::decode(&io.read_slot(self.index)?, &self.slot.fs_uuid) {
            SlotContent::Slot(s)
                if s.host_id == self.slot.host_id && s.generation == self.slot.generation =>
            {
                Ok(())
            }
            _ => Err(self.lost(io)),
        }
    }

    fn lost(&self, io: &dyn SlotIo) -> HostsError {
        let found = match io
            .read_slot(self.index)
            .map(|b| HostSlot::decode(&b, &self.slot.fs_uuid))
        {
            Ok(SlotContent::Slot(s)) => format!(
                "host {} generation {} ({})",
                format_uuid(&s.host_id),
                s.generation,
                s.hostname
            ),
            Ok(SlotContent::Empty) => "an empty slot".into(),
            Ok(SlotContent::Foreign) => "another file system's slot".into(),
            Ok(SlotContent::Corrupt(w)) => format!("a slot that does not decode: {w}"),
            Err(e) => format!("nothing readable: {e}"),
        };
        HostsError::SlotLost {
            index: self.index,
            found,
        }
    }
}

/// How a slot's host looks to an observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Free: never used, another file system's, or released by a clean unmount.
    Free,
    /// Its heartbeat advanced while this observer watched.
    Alive,
    /// Not seen advancing yet (first look, or less than two intervals): counted as alive.
    Unknown,
    /// Not advancing for more than two intervals but less than [`dead_after`]: counted as alive.
    Stalled,
    /// Unchanged for longer than [`dead_after`] of its lease: the host has fenced itself.
    Dead,
}

impl Liveness {
    /// Whether the gate must count the host (everything but free and dead).
    pub fn counts(self) -> bool {
        !matches!(self, Liveness::Free | Liveness::Dead)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Free => "free",
            Liveness::Alive => "alive",
            Liveness::Unknown => "unknown",
            Liveness::Stalled => "stalled",
            Liveness::Dead => "dead",
        }
    }
}

/// One slot as an observer sees it.
#[derive(Debug, Clone)]
pub struct HostView {
    pub index: usize,
    pub liveness: Liveness,
    /// The slot, when it decodes as one of this file system's.
    pub slot: Option<HostSlot>,
    /// Why the slot does not decode (a write caught half done, or damage).
    pub corrupt: Option<String>,
    /// How long this observer has seen the current heartbeat value (or bytes) unchanged.
    pub unchanged_for: Duration,
    /// The slot changed hands (another host id or generation) without being seen released or
    /// dead: two hosts may have written it. The gate waits until this has lasted a lease.
    pub contested: bool,
}

impl HostView {
    /// One line for `famfs hosts`.
    pub fn describe(&self) -> String {
        match (&self.slot, &self.corrupt) {
            (Some(s), _) => format!(
                "slot {:2} {:7} {:6} {} host {} pid {} hb {} applied {} lease {} ms{}{}{}",
                self.index,
                self.liveness.as_str(),
                s.role.to_string(),
                if s.hostname.is_empty() {
                    "?"
                } else {
                    &s.hostname
                },
                format_uuid(&s.host_id),
                s.pid,
                s.heartbeat,
                s.applied,
                s.lease_ms,
                if s.flags.has(famfs_format::slots::SlotFlags::MODULE_LEASE) {
                    " famfs.ko-lease"
                } else {
                    " no-kernel-lease"
                },
                if s.held.is_empty() && !s.flags.has(famfs_format::slots::SlotFlags::HELD_OVERFLOW)
                {
                    String::new()
                } else {
                    format!(
                        " holds {:?}{}",
                        s.held,
                        if s.flags.has(famfs_format::slots::SlotFlags::HELD_OVERFLOW) {
                            " and more"
                        } else {
                            ""
                        }
                    )
                },
                if self.contested { " CONTESTED" } else { "" },
            ),
            (None, Some(w)) => format!(
                "slot {:2} {:7} does not decode: {w}",
                self.index,
                self.liveness.as_str()
            ),
            (None, None) => format!("slot {:2} free", self.index),
        }
    }

    /// The view as JSON (`famfs hosts --json`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "slot": self.index,
            "liveness": self.liveness.as_str(),
            "unchanged_ms": self.unchanged_for.as_millis() as u64,
            "contested": self.contested,
        });
        if let Some(w) = &self.corrupt {
            v["corrupt"] = serde_json::Value::String(w.clone());
        }
        if let Some(s) = &self.slot {
            v["state"] = serde_json::Value::String(
                match s.state {
                    SlotState::Claiming => "claiming",
                    SlotState::Live => "live",
                    SlotState::Released => "released",
                }
                .into(),
            );
            v["role"] = serde_json::Value::String(s.role.to_string());
            v["hostname"] = serde_json::Value::String(s.hostname.clone());
            v["host_id"] = serde_json::Value::String(format_uuid(&s.host_id));
            v["system_uuid"] = serde_json::Value::String(format_uuid(&s.system_uuid));
            v["generation"] = s.generation.into();
            v["heartbeat"] = s.heartbeat.into();
            v["applied"] = s.applied.into();
            v["lease_ms"] = s.lease_ms.into();
            v["interval_ms"] = s.interval_ms.into();
            v["pid"] = s.pid.into();
            v["module_lease"] = s
                .flags
                .has(famfs_format::slots::SlotFlags::MODULE_LEASE)
                .into();
            v["held"] = s.held.clone().into();
            v["held_overflow"] = s
                .flags
                .has(famfs_format::slots::SlotFlags::HELD_OVERFLOW)
                .into();
        }
        v
    }
}

/// What an observer remembers of one slot.
#[derive(Debug, Clone)]
struct Seen {
    /// (host id, generation, heartbeat), or the raw bytes' crc for a slot that does not decode.
    key: (UuidBytes, u64, u64),
    since: Instant,
    /// The first time this observer saw the value change (it is alive).
    advanced: bool,
    contested_until: Option<Instant>,
}

/// Watches the slot table over time, on this process's monotonic clock.
#[derive(Debug)]
pub struct HostObserver {
    fs_uuid: UuidBytes,
    seen: HashMap<usize, Seen>,
}

impl HostObserver {
    /// An observer of the file system `fs_uuid` that has seen nothing yet.
    pub fn new(fs_uuid: UuidBytes) -> Self {
        HostObserver {
            fs_uuid,
            seen: HashMap::new(),
        }
    }

    /// Reads the table now and returns every slot's view.
    pub fn observe(&mut self, io: &dyn SlotIo) -> Result<Vec<HostView>, HostsError> {
        let raw: Vec<[u8; SLOT_SIZE]> = (0..SLOT_COUNT)
            .map(|i| io.read_slot(i))
            .collect::<Result<_, _>>()?;
        Ok(self.observe_bytes(&raw, Instant::now()))
    }

    /// [`HostObserver::observe`] on bytes read at `now` (tests drive the clock).
    pub fn observe_bytes(&mut self, raw: &[[u8; SLOT_SIZE]], now: Instant) -> Vec<HostView> {
        raw.iter()
            .enumerate()
            .map(|(i, b)| self.view(i, HostSlot::decode(b, &self.fs_uuid), b, now))
            .collect()
    }

    fn view(&mut self, index: usize, c: SlotContent, b: &[u8], now: Instant) -> HostView {
        let free = is_free(&c);
        let (key, lease_ms, interval_ms) = match &c {
            SlotContent::Slot(s) => (
                (s.host_id, s.generation, s.heartbeat),
                s.lease_ms,
                s.interval_ms,
            ),
            _ => (
                ([0; 16], u64::MAX, u64::from(famfs_format::crc32(b))),
                MAX_LEASE_MS,
                MAX_LEASE_MS,
            ),
        };
        if free {
            self.seen.remove(&index);
            return HostView {
                index,
                liveness: Liveness::Free,
                slot: match c {
                    SlotContent::Slot(s) => Some(s),
                    _ => None,
                },
                corrupt: None,
                unchanged_for: Duration::ZERO,
                contested: false,
            };
        }
        let entry = match self.seen.get_mut(&index) {
            Some(e) if e.key == key => e,
            Some(e) => {
                // Same host and generation: the heartbeat advanced. Another host or
                // generation without a release or death in between: contested.
                let same_claim = e.key.0 == key.0 && e.key.1 == key.1;
                if !same_claim {
                    let was_dead = now.duration_since(e.since) > dead_after(lease_ms);
                    if !was_dead {
                        e.contested_until = Some(now + dead_after(lease_ms));
                    }
                }
                e.key = key;
                e.since = now;
                e.advanced = same_claim;
                e
            }
            None => self.seen.entry(index).or_insert(Seen {
                key,
                since: now,
                advanced: false,
                contested_until: None,
            }),
        };
        let unchanged_for = now.duration_since(entry.since);
        let contested = entry.contested_until.is_some_and(|t| now < t);
        let liveness = if unchanged_for > dead_after(lease_ms) {
            Liveness::Dead
        } else if unchanged_for > Duration::from_millis(2 * u64::from(interval_ms)) {
            Liveness::Stalled
        } else if entry.advanced {
            Liveness::Alive
        } else {
            Liveness::Unknown
        };
        let (slot, corrupt) = match c {
            SlotContent::Slot(s) => (Some(s), None),
            SlotContent::Corrupt(w) => (None, Some(w)),
            _ => (None, None),
        };
        HostView {
            index,
            liveness,
            slot,
            corrupt,
            unchanged_for,
            contested,
        }
    }
}

/// How long to watch the slots by default: two heartbeats of the slowest host that is not
/// released, and 200 ms, at most 5 s. Enough to see a live host advance; far too short to see a
/// stopped one dead (that takes its lease: a caller that wants dead hosts ignored watches longer).
pub fn default_window(table: &[SlotContent]) -> Duration {
    let slowest = table
        .iter()
        .filter_map(|c| match c {
            SlotContent::Slot(s) if s.state != SlotState::Released => Some(s.interval_ms),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    (Duration::from_millis(2 * u64::from(slowest)) + Duration::from_millis(200))
        .min(Duration::from_secs(5))
}

/// Watches the slots for `window` (a sample every 100 ms, and a last one at the end), opening the
/// media afresh for every sample (`open`): through a fallback mount, `.meta/.superblock` is page
/// cache, which only a new open drops. Returns the last sample's views: a slot seen advancing is
/// [`Liveness::Alive`]; a window longer than [`dead_after`] of a slot's lease can find it
/// [`Liveness::Dead`]; a shorter one never does.
pub fn watch<M: SlotIo>(
    open: &dyn Fn() -> Result<M, HostsError>,
    fs_uuid: &UuidBytes,
    window: Duration,
) -> Result<Vec<HostView>, HostsError> {
    let mut o = HostObserver::new(*fs_uuid);
    let t0 = Instant::now();
    loop {
        let views = o.observe(&open()?)?;
        let left = window.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return Ok(views);
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// The reclaim gate over one observation of the slots: a delete at log index `d` may be
/// reclaimed when every slot that counts ([`Liveness::counts`]) decodes, is not contested, has
/// played entry `d` (`applied > d`) and does not hold it.
pub struct SlotGate<'a> {
    pub views: &'a [HostView],
}

impl SlotGate<'_> {
    /// Why the delete at `delete_index` may not be reclaimed yet (`None`: it may).
    pub fn blocker(&self, delete_index: u64) -> Option<String> {
        for v in self.views.iter().filter(|v| v.liveness.counts()) {
            let Some(s) = &v.slot else {
                return Some(format!(
                    "slot {} does not decode ({}) and has not stayed unchanged for {} s",
                    v.index,
                    v.corrupt.as_deref().unwrap_or("?"),
                    dead_after(MAX_LEASE_MS).as_secs()
                ));
            };
            let who = format!("host {} (slot {}, {})", s.hostname, v.index, s.role);
            if v.contested {
                return Some(format!("{who}: its slot changed hands while in use"));
            }
            if s.applied <= delete_index {
                return Some(format!(
                    "{who} has played {} log entries, not yet the delete at {delete_index}",
                    s.applied
                ));
            }
            if s.may_hold(delete_index) {
                return Some(format!("{who} still holds the file (open or mapped)"));
            }
        }
        None
    }
}

impl ReclaimGate for SlotGate<'_> {
    fn may_reclaim(&self, delete_index: u64) -> Result<bool, String> {
        Ok(self.blocker(delete_index).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const FS: UuidBytes = [9; 16];

    type Hook = Box<dyn FnMut(usize, &mut Vec<[u8; SLOT_SIZE]>)>;

    /// A slot table in process memory, with hooks to interfere with a claim.
    struct Mem {
        slots: RefCell<Vec<[u8; SLOT_SIZE]>>,
        /// Called after every write: may overwrite slots (another host).
        after_write: RefCell<Option<Hook>>,
    }

    impl Mem {
        fn new() -> Self {
            Mem {
                slots: RefCell::new(vec![[0u8; SLOT_SIZE]; SLOT_COUNT]),
                after_write: RefCell::new(None),
            }
        }
    }

    impl SlotIo for Mem {
        fn read_slot(&self, index: usize) -> Result<[u8; SLOT_SIZE], HostsError> {
            Ok(self.slots.borrow()[index])
        }
        fn write_slot(&self, index: usize, bytes: &[u8; SLOT_SIZE]) -> Result<(), HostsError> {
            let mut s = self.slots.borrow_mut();
            s[index] = *bytes;
            if let Some(f) = self.after_write.borrow_mut().as_mut() {
                f(index, &mut s);
            }
            Ok(())
        }
    }

    fn template(id: u8) -> SlotTemplate {
        SlotTemplate {
            fs_uuid: FS,
            host_id: [id; 16],
            system_uuid: [id; 16],
            role: SlotRole::Client,
            module_lease: true,
            lease_ms: 10_000,
            interval_ms: 1000,
            hostname: format!("h{id}"),
            applied: 5,
        }
    }

    const FAST: ClaimOptions = ClaimOptions {
        settle: Duration::from_millis(1),
        wait_for_dead: false,
    };

    fn decode(m: &Mem, i: usize) -> SlotContent {
        HostSlot::decode(&m.slots.borrow()[i], &FS)
    }

    #[test]
    fn claim_takes_a_free_slot_and_heartbeats_in_it() {
        let m = Mem::new();
        let c = claim_slot(&m, &template(1), FAST).unwrap();
        let SlotContent::Slot(s) = decode(&m, c.index) else {
            panic!()
        };
        assert_eq!(
            (s.state, s.host_id, s.generation, s.applied),
            (SlotState::Live, [1; 16], 1, 5)
        );
        let mut hb = Heartbeat::new(c);
        hb.beat(&m, 8, &[6]).unwrap();
        let SlotContent::Slot(s) = decode(&m, hb.index) else {
            panic!()
        };
        assert_eq!((s.heartbeat, s.applied, s.held.clone()), (2, 8, vec![6]));
        // A second host gets another slot.
        let c2 = claim_slot(&m, &template(2), FAST).unwrap();
        assert_ne!(c2.index, hb.index);
        // Clean release frees it; the next claim of that slot has generation 2.
        hb.release(&m).unwrap();
        assert!(is_free(&decode(&m, hb.index)));
        for i in 0..SLOT_COUNT {
            if i != hb.index && is_free(&decode(&m, i)) {
                // Fill every other free slot with a live host so the released one is the pick.
                m.slots.borrow_mut()[i] = template(50).slot(SlotState::Live, 1, 1).encode();
            }
        }
        let c3 = claim_slot(&m, &template(3), FAST).unwrap();
        assert_eq!((c3.index, c3.slot.generation), (hb.index, 2));
        // Now full: no free slot, and not waiting for dead ones.
        assert!(matches!(
            claim_slot(&m, &template(4), FAST),
            Err(HostsError::NoFreeSlot)
        ));
    }

    #[test]
    fn corrupt_and_foreign_slots() {
        let m = Mem::new();
        // Every slot: a corrupt one (magic, bad crc) except one foreign.
        let mut corrupt = template(7).slot(SlotState::Live, 1, 1).encode();
        corrupt[300] ^= 1;
        let mut foreign = template(8);
        foreign.fs_uuid = [1; 16];
        for i in 0..SLOT_COUNT {
            m.slots.borrow_mut()[i] = corrupt;
        }
        m.slots.borrow_mut()[17] = foreign.slot(SlotState::Live, 1, 1).encode();
        let c = claim_slot(&m, &template(1), FAST).unwrap();
        assert_eq!(c.index, 17, "only the foreign slot is free");
        assert!(matches!(
            claim_slot(&m, &template(2), FAST),
            Err(HostsError::NoFreeSlot)
        ));
        // The gate counts a corrupt slot as a live host until it stayed unchanged long enough.
        let mut o = HostObserver::new(FS);
        let raw = m.slots.borrow().clone();
        let t0 = Instant::now();
        let v = o.observe_bytes(&raw, t0);
        assert!(v[0].corrupt.is_some() && v[0].liveness.counts());
        let g = SlotGate { views: &v };
        assert!(g.blocker(0).unwrap().contains("does not decode"));
        let v = o.observe_bytes(
            &raw,
            t0 + dead_after(MAX_LEASE_MS) + Duration::from_millis(1),
        );
        assert_eq!(v[0].liveness, Liveness::Dead);
    }

    #[test]
    fn a_claim_overwritten_by_another_host_moves_on() {
        let m = Mem::new();
        // Another host overwrites the first claim write, wherever it lands.
        let mut fired = false;
        let other = template(9).slot(SlotState::Claiming, 1, 0).encode();
        *m.after_write.borrow_mut() = Some(Box::new(move |i, s| {
            if !fired {
                fired = true;
                s[i] = other;
            }
        }));
        let c = claim_slot(&m, &template(1), FAST).unwrap();
        let SlotContent::Slot(theirs) = decode(
            &m,
            (0..SLOT_COUNT)
                .find(|&i| i != c.index && !is_free(&decode(&m, i)))
                .unwrap(),
        ) else {
            panic!()
        };
        assert_eq!(
            theirs.host_id, [9; 16],
            "the other host kept the slot it wrote last"
        );
        let SlotContent::Slot(ours) = decode(&m, c.index) else {
            panic!()
        };
        assert_eq!(ours.host_id, [1; 16]);
        // Always overwritten: the claim gives up.
        let m = Mem::new();
        let other = template(9).slot(SlotState::Claiming, 1, 0).encode();
        *m.after_write.borrow_mut() = Some(Box::new(move |i, s| s[i] = other));
        assert!(matches!(
            claim_slot(&m, &template(1), FAST),
            Err(HostsError::Contended { .. })
        ));
    }

    #[test]
    fn heartbeat_stops_when_the_slot_was_taken() {
        let m = Mem::new();
        let mut hb = Heartbeat::new(claim_slot(&m, &template(1), FAST).unwrap());
        m.slots.borrow_mut()[hb.index] = template(2).slot(SlotState::Live, 1, 1).encode();
        let e = hb.beat(&m, 6, &[]).unwrap_err();
        assert!(matches!(e, HostsError::SlotLost { .. }), "{e}");
        assert!(e.to_string().contains("h2"));
        // Nothing was written over the other host's slot.
        let SlotContent::Slot(s) = decode(&m, hb.index) else {
            panic!()
        };
        assert_eq!(s.host_id, [2; 16]);
    }

    fn live(id: u8, hb: u64, applied: u64, held: &[u64]) -> [u8; SLOT_SIZE] {
        let mut t = template(id);
        t.applied = applied;
        let mut s = t.slot(SlotState::Live, 1, hb);
        s.held = held.to_vec();
        s.encode()
    }

    #[test]
    fn liveness_on_the_observers_clock() {
        let mut raw = vec![[0u8; SLOT_SIZE]; SLOT_COUNT];
        raw[0] = live(1, 10, 20, &[]);
        let mut o = HostObserver::new(FS);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(o.observe_bytes(&raw, t0)[0].liveness, Liveness::Unknown);
        assert_eq!(
            o.observe_bytes(&raw, t0 + ms(1500))[0].liveness,
            Liveness::Unknown
        );
        raw[0] = live(1, 11, 20, &[]);
        assert_eq!(
            o.observe_bytes(&raw, t0 + ms(1600))[0].liveness,
            Liveness::Alive
        );
        assert_eq!(
            o.observe_bytes(&raw, t0 + ms(3700))[0].liveness,
            Liveness::Stalled
        );
        // The lease is 10 s: dead only after 10 s + 10 % + 0.5 s of the same value.
        let dead_at = t0 + ms(1600) + dead_after(10_000);
        assert_eq!(
            o.observe_bytes(&raw, dead_at)[0].liveness,
            Liveness::Stalled
        );
        assert_eq!(
            o.observe_bytes(&raw, dead_at + ms(1))[0].liveness,
            Liveness::Dead
        );
        assert_eq!(dead_after(10_000), ms(11_500));
        // It comes back: alive again (its fencing already happened; it re-claims in practice).
        raw[0] = live(1, 12, 20, &[]);
        assert_eq!(
            o.observe_bytes(&raw, dead_at + ms(2))[0].liveness,
            Liveness::Alive
        );
        // A first look at a slot never says dead, however old its value.
        let mut fresh = HostObserver::new(FS);
        assert_eq!(
            fresh.observe_bytes(&raw, dead_at)[0].liveness,
            Liveness::Unknown
        );
    }

    #[test]
    fn gate_waits_for_every_counted_host() {
        let mut raw = vec![[0u8; SLOT_SIZE]; SLOT_COUNT];
        raw[3] = live(1, 1, 30, &[]);
        raw[40] = live(2, 1, 25, &[]);
        let mut o = HostObserver::new(FS);
        let t0 = Instant::now();
        let v = o.observe_bytes(&raw, t0);
        let g = SlotGate { views: &v };
        // Delete at 24: both have played it, nobody holds it.
        assert_eq!(g.may_reclaim(24), Ok(true));
        // Delete at 25: host 2 has played 25 entries (0..=24), not entry 25.
        assert_eq!(g.may_reclaim(25), Ok(false));
        assert!(g.blocker(25).unwrap().contains("not yet the delete at 25"));
        // Host 1 holds the delete at 20.
        raw[3] = live(1, 2, 30, &[20]);
        let v = o.observe_bytes(&raw, t0);
        let g = SlotGate { views: &v };
        assert!(g.blocker(20).unwrap().contains("still holds"));
        assert_eq!(g.may_reclaim(21), Ok(true));
        // Overflowed list: holds everything.
        let mut t = template(1);
        t.applied = 30;
        let mut s = t.slot(SlotState::Live, 1, 3);
        s.held = (100..200).collect();
        raw[3] = s.encode();
        let v = o.observe_bytes(&raw, t0);
        assert_eq!(SlotGate { views: &v }.may_reclaim(21), Ok(false));
        // Host 1 stops; once dead it no longer counts, host 2 (still beating) blocks the delete
        // at 25.
        raw[40] = live(2, 2, 25, &[]);
        o.observe_bytes(&raw, t0 + Duration::from_secs(5));
        let later = t0 + dead_after(10_000) + Duration::from_millis(1);
        let v = o.observe_bytes(&raw, later);
        assert_eq!(v[3].liveness, Liveness::Dead);
        let g = SlotGate { views: &v };
        assert_eq!(g.may_reclaim(21), Ok(true));
        assert_eq!(g.may_reclaim(25), Ok(false));
        // A released slot does not count, even with a low applied count.
        let mut t = template(2);
        t.applied = 0;
        raw[40] = t.slot(SlotState::Released, 1, 5).encode();
        let v = o.observe_bytes(&raw, later);
        assert_eq!(SlotGate { views: &v }.may_reclaim(25), Ok(true));
        // A host that is claiming (applied = what it played before) counts.
        let mut t = template(5);
        t.applied = 3;
        raw[7] = t.slot(SlotState::Claiming, 1, 0).encode();
        let v = o.observe_bytes(&raw, later);
        assert_eq!(SlotGate { views: &v }.may_reclaim(25), Ok(false));
    }

    #[test]
    fn a_slot_changing_hands_while_live_is_contested() {
        let mut raw = vec![[0u8; SLOT_SIZE]; SLOT_COUNT];
        raw[0] = live(1, 5, 50, &[]);
        let mut o = HostObserver::new(FS);
        let t0 = Instant::now();
        o.observe_bytes(&raw, t0);
        raw[0] = live(2, 1, 50, &[]);
        let v = o.observe_bytes(&raw, t0 + Duration::from_millis(500));
        assert!(v[0].contested);
        assert!(SlotGate { views: &v }
            .blocker(10)
            .unwrap()
            .contains("changed hands"));
        let v = o.observe_bytes(&raw, t0 + Duration::from_secs(13));
        assert!(!v[0].contested);
        assert_eq!(SlotGate { views: &v }.may_reclaim(10), Ok(true));
    }

    /// Hosts claiming at once (threads, each with its own mapping of one image, as hosts have
    /// their own view of the memory): every winner ends up alone in its slot, with its own
    /// bytes; with fewer free slots than claimers, the others are refused, never doubled up.
    #[test]
    fn concurrent_claims_never_share_a_slot() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        // All but 4 slots held by live hosts.
        let m = Media::open(&img, famfs_media::Access::ReadWrite).unwrap();
        for i in 4..SLOT_COUNT {
            m.write_slot(i, &template(200).slot(SlotState::Live, 1, 1).encode())
                .unwrap();
        }
        drop(m);
        // The default settle time: a claimer preempted for longer between its scan and its write
        // could double up (the documented limit), which this test must not be flaky about.
        let opts = ClaimOptions {
            settle: Duration::from_millis(100),
            wait_for_dead: false,
        };
        let results: Vec<_> = std::thread::scope(|sc| {
            let hs: Vec<_> = (1..=10u8)
                .map(|id| {
                    let img = &img;
                    sc.spawn(move || {
                        let m = Media::open(img, famfs_media::Access::ReadWrite).unwrap();
                        (id, claim_slot(&m, &template(id), opts))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let m = Media::open(&img, famfs_media::Access::ReadOnly).unwrap();
        let mut won = Vec::new();
        for (id, r) in &results {
            match r {
                Ok(c) => {
                    let SlotContent::Slot(s) =
                        HostSlot::decode(&m.read_slot(c.index).unwrap(), &FS)
                    else {
                        panic!("slot {} does not decode", c.index)
                    };
                    assert_eq!(
                        s.host_id, [*id; 16],
                        "host {id} believes it holds slot {}",
                        c.index
                    );
                    won.push(c.index);
                }
                Err(HostsError::NoFreeSlot | HostsError::Contended { .. }) => {}
                Err(e) => panic!("host {id}: {e}"),
            }
        }
        won.sort_unstable();
        let n = won.len();
        won.dedup();
        assert_eq!(won.len(), n, "two hosts hold one slot: {results:?}");
        assert!(!won.is_empty() && won.iter().all(|&i| i < 4), "{won:?}");
    }

    #[test]
    fn media_and_file_slot_io() {
        let m = Media::memory(4 << 20).unwrap();
        let c = claim_slot(&m, &template(1), FAST).unwrap();
        let t = read_table(&m, &FS).unwrap();
        assert!(matches!(&t[c.index], SlotContent::Slot(s) if s.host_id == [1; 16]));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sb");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        f.set_len(2 << 20).unwrap();
        let c = claim_slot(&f, &template(2), FAST).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let off = slot_offset(c.index).unwrap() as usize;
        assert!(matches!(
            HostSlot::decode(&bytes[off..off + SLOT_SIZE], &FS),
            SlotContent::Slot(s) if s.host_id == [2; 16]
        ));
        // A file too short: an error, not a panic.
        f.set_len(4096).unwrap();
        assert!(matches!(f.read_slot(0), Err(HostsError::Io { .. })));
    }
}
