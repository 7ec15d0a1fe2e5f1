//! `famfs fsck`: locate the file system (a secondary leads to its primary, a path to its mount),
//! run the checks (damage and warnings from the log play, the log header, the system uuid;
//! collisions; usage per device and per bucket), then print them as text or JSON.

use super::common::*;
use crate::dax::set_daxmode_fsdev;
use anyhow::{anyhow, bail, Result};
use clap::{ArgAction, Args};
use famfs_alloc::Bitmap;
use famfs_cmdline::size::human;
use famfs_format::format_uuid;
use famfs_format::LogHeader;
use famfs_meta::{Access, Famfs};
use std::path::{Path, PathBuf};

/// Check a file system: superblock, log, namespace and allocation.
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct FsckArgs {
    /// Human-readable sizes.
    #[arg(short = 'h', long)]
    pub human: bool,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    /// Also report used and free space in N equal buckets of the device (as interleaving
    /// sees them).
    #[arg(short = 'B', long, value_name = "N", value_parser = crate::parse_c_ulong)]
    pub nbuckets: Option<u64>,
    /// C famfs: check even if mounted. Accepted: fsck only reads, mounted or not.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// C famfs: do not use dax. Accepted: images and devices are read alike.
    #[arg(short = 'D', long)]
    pub nodax: bool,
    /// C famfs: read through mmap. Accepted: the only way here.
    #[arg(short = 'm', long)]
    pub mmap: bool,
    /// C famfs: read with read(2). Accepted: the metadata is always mapped here. Not with -m
    /// (as in C).
    #[arg(short = 'r', long, conflicts_with = "mmap")]
    pub read: bool,
    /// Leave the devdax device bound to fsdev_dax afterwards (as the C famfs does; `famfs
    /// mount` in module mode needs it). The device is read in either mode.
    #[arg(long)]
    pub set_daxmode: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Device, image or a path in a mounted famfs (default: --device).
    pub path: Option<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &FsckArgs) -> Result<bool> {
    let damaged = check(cli, a)?;
    if a.set_daxmode {
        match a.path.as_ref().or(cli.device.as_ref()) {
            Some(d) => set_daxmode_fsdev("famfs fsck", d)?,
            None => {
                eprintln!("famfs fsck: note: --set-daxmode without a device: nothing to rebind")
            }
        }
    }
    Ok(!damaged)
}

/// fsck: returns whether damage was found.
fn check(cli: &GlobalArgs, a: &FsckArgs) -> Result<bool> {
    note_accepted_options(a);
    if a.nbuckets == Some(0) || a.nbuckets.is_some_and(|n| n > famfs_alloc::MAX_BUCKETS) {
        bail!("-B: between 1 and {} buckets", famfs_alloc::MAX_BUCKETS);
    }
    let dev = a
        .path
        .clone()
        .or_else(|| cli.device.clone())
        .ok_or_else(|| anyhow!("fsck needs a device, image or mount path"))?;
    let Some(dev) = primary_for(dev, a.json) else {
        return Ok(true);
    };
    let Some(fs) = open_fs(&dev, a.json)? else {
        return Ok(true);
    };
    let h = fs.log_header()?;
    let (damage, warnings) = problems(&fs, &h);
    let f = Findings {
        damage,
        warnings,
        collisions: collisions(&fs),
        per_device: device_usage(&fs, &dev),
        used: fs.bitmap().used_units() * famfs_alloc::UNIT,
        buckets: bucket_usage(fs.bitmap(), a.nbuckets),
    };
    if a.json {
        print_json(&fs, &h, &dev, &f, cli.verbose > 0)?;
    } else {
        print_text(&fs, &h, &dev, &f, a.human, cli.verbose > 0);
    }
    Ok(!f.damage.is_empty())
}

/// What the checks found.
struct Findings {
    damage: Vec<String>,
    warnings: Vec<String>,
    collisions: usize,
    /// Per device: used, free, collisions, and where this host found it.
    per_device: Vec<serde_json::Value>,
    /// Allocated bytes of the primary's bitmap.
    used: u64,
    /// (offset, used bytes, free bytes) per bucket of -B N.
    buckets: Vec<(u64, u64, u64)>,
}

/// Says which options of the C fsck are accepted and not needed.
fn note_accepted_options(a: &FsckArgs) {
    note(
        "fsck",
        a.force,
        "-f/--force",
        "fsck only reads, mounted or not",
    );
    note(
        "fsck",
        a.nodax,
        "-D/--nodax",
        "images and devices are read alike",
    );
    note("fsck", a.mmap, "-m/--mmap", "the metadata is always mapped");
    note(
        "fsck",
        a.read,
        "-r/--read",
        "the metadata is always mapped (and cache lines invalidated first)",
    );
}

/// A secondary device leads to its primary (the log is there). `None` when `dev` is a secondary
/// whose primary this host does not have (reported: that is damage).
fn primary_for(dev: PathBuf, json: bool) -> Option<PathBuf> {
    if dev.is_dir() {
        return Some(dev);
    }
    if let Ok(Some(p)) = crate::devices::primary_of(&dev) {
        if !json {
            println!(
                "{} is a secondary device; checking the file system on its primary {}",
                dev.display(),
                p.display()
            );
        }
        return Some(p);
    }
    let secondary = famfs_media::Media::open(&dev, Access::ReadOnly)
        .ok()
        .is_some_and(|m| {
            matches!(
                m.read_any_superblock(),
                Ok(famfs_format::AnySuperblock::Secondary(_))
            )
        });
    if !secondary {
        return Some(dev);
    }
    let msg = format!(
        "{} is a secondary device and its primary was not found on this host",
        dev.display()
    );
    if json {
        println!(
            "{}",
            serde_json::json!({"path": dev, "ok": false, "error": msg})
        );
    } else {
        println!("{msg}");
    }
    None
}

/// Opens the file system on the device or image `dev`, or the mount `dev` is inside. `None` when
/// neither holds one (reported: that is damage).
fn open_fs(dev: &Path, json: bool) -> Result<Option<Famfs>> {
    match Famfs::open(dev, Access::ReadOnly) {
        Ok(fs) => Ok(Some(fs)),
        Err(e) => {
            // Not a device/image: maybe a path inside a mount.
            if let Some(m) = crate::target::find_mount(dev).filter(|_| !dev.is_file()) {
                Ok(Some(Famfs::open(&m, Access::ReadOnly)?))
            } else {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"path": dev, "ok": false, "error": e.to_string()})
                    );
                } else {
                    println!("{}: {e}", dev.display());
                }
                Ok(None)
            }
        }
    }
}

/// Damage and warnings: the log play's problems, log header counters that disagree, and a system
/// uuid this host cannot read.
fn problems(fs: &Famfs, h: &LogHeader) -> (Vec<String>, Vec<String>) {
    let damage: Vec<String> = fs
        .problems()
        .iter()
        .filter(|p| p.is_damage())
        .map(|p| p.to_string())
        .collect();
    let mut warnings: Vec<String> = fs
        .problems()
        .iter()
        .filter(|p| !p.is_damage())
        .map(|p| p.to_string())
        .collect();
    if h.counters_disagree() {
        warnings.push(format!(
            "log header: next_seqnum {} differs from next_index {} (an interrupted append; the next append repairs it)",
            h.next_seqnum(),
            h.next_index()
        ));
    }
    if let Some(e) = fs.system_uuid_error() {
        warnings.push(format!("{e}: this host counts as a client"));
    }
    (damage, warnings)
}

/// Allocations that overlap (cross-linked files).
fn collisions(fs: &Famfs) -> usize {
    fs.problems()
        .iter()
        .filter(|p| matches!(p.kind, famfs_meta::ProblemKind::Collision(_)))
        .count()
}

/// Per device: used, free, collisions, and where this host found it.
fn device_usage(fs: &Famfs, dev: &Path) -> Vec<serde_json::Value> {
    fs.devices()
        .iter()
        .zip(fs.bitmaps())
        .map(|(d, b)| {
            let coll = fs
                .problems()
                .iter()
                .filter(|p| {
                    p.device == d.index as u64
                        && matches!(p.kind, famfs_meta::ProblemKind::Collision(_))
                })
                .count();
            let local = if d.index == 0 {
                Some(dev.display().to_string())
            } else {
                fs.device_path(d.index).map(|p| p.display().to_string())
            };
            serde_json::json!({
                "index": d.index, "uuid": format_uuid(&d.uuid), "size": d.size, "name": d.name,
                "kind": if d.index == 0 { "primary" } else { "secondary" },
                "local_path": local, "missing": fs.device_missing(d.index),
                "allocated_bytes": b.used_units() * famfs_alloc::UNIT, "free_bytes": b.free_bytes(),
                "collisions": coll,
            })
        })
        .collect()
}

/// Used and free units per bucket (-B N): what interleaved allocation will find.
fn bucket_usage(bm: &Bitmap, nbuckets: Option<u64>) -> Vec<(u64, u64, u64)> {
    match nbuckets {
        None => Vec::new(),
        Some(n) => {
            let per = bm.total_units() / n;
            (0..n)
                .map(|b| {
                    let used = (b * per..(b + 1) * per).filter(|u| bm.is_set(*u)).count() as u64;
                    (
                        b * per * famfs_alloc::UNIT,
                        used * famfs_alloc::UNIT,
                        (per - used) * famfs_alloc::UNIT,
                    )
                })
                .collect()
        }
    }
}

/// `fsck --json`.
fn print_json(fs: &Famfs, h: &LogHeader, dev: &Path, f: &Findings, verbose: bool) -> Result<()> {
    let sb = fs.superblock();
    let g = h.geometry();
    let ns = fs.namespace();
    let bm = fs.bitmap();
    let files: Vec<_> = ns
        .nodes()
        .filter_map(|n| {
            n.file().map(|f| {
                serde_json::json!({
                    "path": format!("/{}", ns.path_of(n.ino).unwrap_or_default()),
                    "size": f.size, "mode": format!("{:o}", n.mode), "uid": n.uid, "gid": n.gid,
                    "fmap": fmap_json(&f.fmap),
                })
            })
        })
        .collect();
    let v = serde_json::json!({
        "path": dev, "ok": f.damage.is_empty(),
        "fs_uuid": format_uuid(&sb.fs_uuid), "device_uuid": format_uuid(&sb.dev_uuid),
        "system_uuid": format_uuid(&sb.system_uuid), "role": fs.role().to_string(),
        "device_size": sb.device_size, "device_name": sb.device_name_str(), "alloc_unit": sb.alloc_unit,
        "log": {"len": sb.log_len, "entries": h.next_index(), "capacity": g.capacity()},
        "files": ns.file_count(), "directories": ns.dir_count(),
        "allocated_bytes": f.used, "free_bytes": bm.free_bytes(),
        "collisions": f.collisions, "damage": f.damage, "warnings": f.warnings,
        "superblock_version": sb.version, "pending_deletes": super::pending::json(fs),
        "daxdevs": fs.daxdevs().iter().map(daxdev_json).collect::<Vec<_>>(),
        "devices": f.per_device,
        "buckets": f.buckets.iter().map(|(o, u, f)| serde_json::json!({"offset": o, "used_bytes": u, "free_bytes": f})).collect::<Vec<_>>(),
        "file_list": if verbose { serde_json::Value::Array(files) } else { serde_json::Value::Null },
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// fsck's text report; the capacity lines and the verbose block are the C fsck's.
fn print_text(
    fs: &Famfs,
    h: &LogHeader,
    dev: &Path,
    f: &Findings,
    human_sizes: bool,
    verbose: bool,
) {
    let sb = fs.superblock();
    let g = h.geometry();
    let ns = fs.namespace();
    let bm = fs.bitmap();
    let sz = |n: u64| if human_sizes { human(n) } else { n.to_string() };
    println!("famfs on {}", dev.display());
    println!(
        "  superblock:   valid ({}, omf 2.2), device name {:?}",
        super::pending::version_text(fs),
        sb.device_name_str()
    );
    println!("  fs uuid:      {}", format_uuid(&sb.fs_uuid));
    println!("  device uuid:  {}", format_uuid(&sb.dev_uuid));
    println!(
        "  system uuid:  {} (this host is {})",
        format_uuid(&sb.system_uuid),
        fs.role()
    );
    println!("  device size:  {}", sz(sb.device_size));
    println!(
        "  log:          {}, {} of {} entries used ({:.1}%)",
        sz(sb.log_len),
        h.next_index(),
        g.capacity(),
        100.0 * h.next_index() as f64 / g.capacity() as f64
    );
    println!("  files:        {}", ns.file_count());
    println!("  directories:  {}", ns.dir_count());
    println!(
        "  allocated:    {} of {} (free {})",
        sz(f.used),
        sz(bm.total_units() * famfs_alloc::UNIT),
        sz(bm.free_bytes())
    );
    println!("  collisions:   {}", f.collisions);
    super::pending::print_text(fs);
    for (i, (o, u, f)) in f.buckets.iter().enumerate() {
        println!(
            "  bucket {i:2}:    offset {o:#x}: used {}, free {}",
            sz(*u),
            sz(*f)
        );
    }
    println!(
        "  devices:      {} (the primary and {} added by ADD_DAXDEV)",
        fs.devices().len(),
        fs.devices().len() - 1
    );
    for v in &f.per_device {
        let g = |k: &str| v[k].as_u64().unwrap_or(0);
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        println!(
            "    device {}: {} uuid {} size {}, allocated {}, free {}, collisions {}, {}",
            g("index"),
            s("kind"),
            s("uuid"),
            sz(g("size")),
            sz(g("allocated_bytes")),
            sz(g("free_bytes")),
            g("collisions"),
            match (v["local_path"].as_str(), v["missing"].as_str()) {
                (Some(p), _) => format!("here: {p}"),
                (None, Some(why)) => format!("MISSING: {why}"),
                (None, None) => format!("added as {}", s("name")),
            }
        );
    }
    if verbose {
        for n in ns.nodes() {
            if let Some(f) = n.file() {
                println!(
                    "  file /{} size {}",
                    ns.path_of(n.ino).unwrap_or_default(),
                    sz(f.size)
                );
                print_fmap(&f.fmap, "      ");
            }
        }
    }
    for w in &f.warnings {
        println!("  warning: {w}");
    }
    for d in &f.damage {
        println!("  DAMAGE: {d}");
    }
    // The C famfs fsck's capacity lines, for scripts that parse them (--json is the stable
    // interface).
    let sum_sizes: u64 = ns.nodes().filter_map(|n| n.file().map(|f| f.size)).sum();
    println!("Capacity:");
    println!("  Device capacity:        {}", sz(sb.device_size));
    println!(
        "  Bitmap capacity:        {}",
        sz(bm.total_units() * famfs_alloc::UNIT)
    );
    println!("  Sum of file sizes:      {}", sz(sum_sizes));
    println!("  Allocated space:        {}", sz(f.used));
    println!("  Free space:             {}", sz(bm.free_bytes()));
    if verbose {
        // The C fsck's verbose block, by the C tools' names: C scripts read the log length with
        // `grep log_len | awk '{print $2}'`.
        let header = famfs_format::LOG_HEADER_SIZE as u64;
        let entry = famfs_format::LOG_ENTRY_SIZE as u64;
        let full = header + entry * (1 + g.last_index());
        println!("Verbose:");
        println!("  log_offset:        {}", famfs_format::LOG_OFFSET);
        println!("  log_len:           {}", sb.log_len);
        println!("  sizeof(log header) {header}");
        println!("  sizeof(log_entry)  {entry}");
        println!("  last_log_index:    {}", g.last_index());
        println!("  full log size:     {full}");
        println!("  FAMFS_LOG_LEN:     {}", famfs_format::DEFAULT_LOG_LEN);
        println!("  Remainder:         {}", sb.log_len as i128 - full as i128);
    }
    println!(
        "{}",
        if f.damage.is_empty() {
            "clean"
        } else {
            "damaged"
        }
    );
}
