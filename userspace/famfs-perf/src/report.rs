//! Result records (one JSON object per line while measuring), and the report: medians, spreads,
//! ratios to their ceilings, target verdicts, rendered as JSON and Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::{
    at_least, at_least_of_ceiling, below, paired_ratio, ratio, same, Ratio, Summary, Verdict,
};

/// What a figure aims for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Target {
    /// Ratio to the baseline (or, for comparisons, of the two figures) at least this.
    RatioAtLeast(f64),
    /// The value (in the record's unit) below this.
    Below(f64),
    /// The value exactly this (counts).
    Equals(f64),
    /// An A/A row: the ratio to the same path measured again is 1 within this tolerance, or the
    /// run is void.
    Same(f64),
}

impl Target {
    pub fn text(&self, unit: &str) -> String {
        match self {
            Target::RatioAtLeast(r) => format!("ratio >= {r}"),
            Target::Below(v) => format!("< {} {unit}", fmt_num(*v)),
            Target::Equals(v) => format!("= {}", fmt_num(*v)),
            Target::Same(t) => format!("A/A: 1.00 ± {t}"),
        }
    }
}

/// One measured figure: its raw samples, or why it was not measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Table section: `data`, `first-touch`, `threads`, `meta`, `host-data`.
    pub section: String,
    /// The access path or subject: `raw`, `module`, `fuse`, `fallback`, `tmpfs`, `cli`, `library`...
    pub path: String,
    /// Key of the figure within its section, e.g. `mmap/seq-read/4K/t1`.
    pub key: String,
    /// Human label.
    pub figure: String,
    pub unit: String,
    pub higher_is_better: bool,
    #[serde(default)]
    pub samples: Vec<f64>,
    /// Id (`section/path/key`) of the ceiling this figure is compared with.
    #[serde(default)]
    pub baseline: Option<String>,
    #[serde(default)]
    pub target: Option<Target>,
    /// Set when the figure could not be measured: the reason.
    #[serde(default)]
    pub not_measured: Option<String>,
    /// Where it ran: `vm-tcg`, `vm-kvm`, `host`.
    pub env: String,
    /// The interleaving round of each sample (parallel to `samples`), when the paths were
    /// measured in rounds (`famfs-perf data --round`): ratios then pair samples by round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<u32>,
}

impl Record {
    /// A figure with no samples, baseline, target or reason yet.
    pub fn new(
        section: String,
        path: String,
        key: String,
        figure: String,
        unit: &str,
        higher_is_better: bool,
        env: String,
    ) -> Self {
        Record {
            section,
            path,
            key,
            figure,
            unit: unit.into(),
            higher_is_better,
            samples: Vec::new(),
            baseline: None,
            target: None,
            not_measured: None,
            env,
            rounds: Vec::new(),
        }
    }

    /// `(round, sample)` pairs, when every sample has its round.
    pub fn by_round(&self) -> Option<Vec<(u32, f64)>> {
        (!self.samples.is_empty() && self.rounds.len() == self.samples.len()).then(|| {
            self.rounds
                .iter()
                .copied()
                .zip(self.samples.iter().copied())
                .collect()
        })
    }

    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.section, self.path, self.key)
    }
}

/// A record with its statistics worked out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub record: Record,
    pub summary: Option<Summary>,
    pub ratio: Option<Ratio>,
    pub verdict: Option<Verdict>,
}

/// A derived comparison between two figures (e.g. module over fallback).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub what: String,
    pub a: String,
    pub b: String,
    pub ratio: Option<Ratio>,
    pub target: Option<Target>,
    pub verdict: Option<Verdict>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Free-form facts about the run: machine, kernel, VM, repetitions.
    pub info: BTreeMap<String, String>,
    pub rows: Vec<Row>,
    pub comparisons: Vec<Comparison>,
}

fn verdict_for(target: &Target, s: &Summary, r: Option<&Ratio>) -> Option<Verdict> {
    match target {
        // Every ratio target of a record is to a ceiling (<= 1): beating it is a method error.
        Target::RatioAtLeast(t) => r.map(|r| {
            if *t <= 1.0 {
                at_least_of_ceiling(r, *t)
            } else {
                at_least(r.lo, r.hi, *t)
            }
        }),
        Target::Same(t) => r.map(|r| same(r, *t)),
        Target::Below(t) => Some(below(s.q1, s.q3, *t)),
        Target::Equals(t) => Some(if s.min == *t && s.max == *t {
            Verdict::Meets
        } else {
            Verdict::Misses
        }),
    }
}

/// The ratio of figure `a` to figure `b`: paired by round when both were measured in the same
/// interleaved rounds, else from the two summaries (IQR range).
fn ratio_of(
    a: &Record,
    b: &Record,
    sa: &Summary,
    sb: &Summary,
    higher_is_better: bool,
) -> Option<Ratio> {
    if let (Some(x), Some(y)) = (a.by_round(), b.by_round()) {
        if let Some(r) = paired_ratio(&x, &y, higher_is_better) {
            return Some(r);
        }
    }
    ratio(sa, sb, higher_is_better)
}

/// Builds the report. Records with the same id accumulate: measured samples (one invocation per
/// interleaving round) are appended; a not-measured record gives way to a measured one and is
/// kept only while nothing was measured; a record without rounds replaces an earlier one.
pub fn build(records: Vec<Record>, info: BTreeMap<String, String>) -> Report {
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    let mut uniq: Vec<Record> = Vec::new();
    for r in records {
        match by_id.get(&r.id()) {
            Some(&i) => {
                let old = &mut uniq[i];
                let both_rounds = old.by_round().is_some() && r.by_round().is_some();
                if both_rounds && old.not_measured.is_none() && r.not_measured.is_none() {
                    old.samples.extend_from_slice(&r.samples);
                    old.rounds.extend_from_slice(&r.rounds);
                } else if r.not_measured.is_some()
                    && old.not_measured.is_none()
                    && old.by_round().is_some()
                {
                    // One round failed: the other rounds' samples stand.
                } else {
                    *old = r;
                }
            }
            None => {
                by_id.insert(r.id(), uniq.len());
                uniq.push(r);
            }
        }
    }
    let summaries: BTreeMap<String, Summary> = uniq
        .iter()
        .filter(|r| r.not_measured.is_none())
        .filter_map(|r| Summary::of(&r.samples).map(|s| (r.id(), s)))
        .collect();
    let rec_of: BTreeMap<String, &Record> = uniq.iter().map(|r| (r.id(), r)).collect();
    let pair = |a: &str, b: &str, higher: bool| -> Option<Ratio> {
        match (
            rec_of.get(a),
            rec_of.get(b),
            summaries.get(a),
            summaries.get(b),
        ) {
            (Some(ra), Some(rb), Some(sa), Some(sb)) => ratio_of(ra, rb, sa, sb, higher),
            _ => None,
        }
    };
    let mut rows = Vec::new();
    for r in &uniq {
        let summary = if r.not_measured.is_none() {
            summaries.get(&r.id()).copied()
        } else {
            None
        };
        let ratio = match (&summary, &r.baseline) {
            (Some(_), Some(b)) => pair(&r.id(), b, r.higher_is_better),
            _ => None,
        };
        let verdict = match (&r.target, &summary) {
            (Some(t), Some(s)) => verdict_for(t, s, ratio.as_ref()),
            _ => None,
        };
        rows.push(Row {
            record: r.clone(),
            summary,
            ratio,
            verdict,
        });
    }
    // Module over fallback, for every figure both paths have (target 10x on mmap).
    let mut comparisons = Vec::new();
    // Fault counts are not compared: they are exact figures with their own targets.
    for r in uniq
        .iter()
        .filter(|r| r.path == "module" && r.unit != "faults")
    {
        let fb = format!("{}/fallback/{}", r.section, r.key);
        let Some(fbr) = uniq.iter().find(|x| x.id() == fb) else {
            continue;
        };
        let target = (r.key.starts_with("mmap/") || r.key.ends_with("/time"))
            .then_some(Target::RatioAtLeast(10.0));
        let (ratio, note) = match (summaries.get(&r.id()), summaries.get(&fb)) {
            (Some(_), Some(_)) => (pair(&r.id(), &fb, r.higher_is_better), None),
            _ => (
                None,
                Some(
                    fbr.not_measured
                        .clone()
                        .or(r.not_measured.clone())
                        .unwrap_or_else(|| "no samples".into()),
                ),
            ),
        };
        let verdict = match (&target, &ratio) {
            (Some(Target::RatioAtLeast(t)), Some(x)) => Some(at_least(x.lo, x.hi, *t)),
            _ => None,
        };
        comparisons.push(Comparison {
            what: format!("{}: module / fallback", r.figure),
            a: r.id(),
            b: fb,
            ratio,
            target,
            verdict,
            note,
        });
    }
    // The module-mode mount over the famfs.ko file itself: passthrough adds nothing per I/O
    // (target 0.97 on bandwidth; above 1.05 is a method error).
    for r in uniq.iter().filter(|r| r.path == "fuse" && r.unit == "MB/s") {
        let m = format!("{}/module/{}", r.section, r.key);
        let Some(mr) = uniq.iter().find(|x| x.id() == m) else {
            continue;
        };
        // mmap: the same pages once faulted, so nothing between (0.99); read(2)/write(2) pay the
        // passthrough's per-call layers (0.97).
        let t = if r.key.starts_with("mmap/") {
            0.99
        } else {
            0.97
        };
        let target = Some(Target::RatioAtLeast(t));
        let (ratio, note) = match (summaries.get(&r.id()), summaries.get(&m)) {
            (Some(_), Some(_)) => (pair(&r.id(), &m, true), None),
            _ => (
                None,
                Some(
                    r.not_measured
                        .clone()
                        .or(mr.not_measured.clone())
                        .unwrap_or_else(|| "no samples".into()),
                ),
            ),
        };
        let verdict = ratio.as_ref().map(|x| at_least_of_ceiling(x, t));
        comparisons.push(Comparison {
            what: format!("{}: mount / module", r.figure),
            a: r.id(),
            b: m,
            ratio,
            target,
            verdict,
            note,
        });
    }
    // famfs against the file systems a user would otherwise put on the same memory (ext4 and
    // xfs with -o dax on an fsdax namespace of the same NVDIMM, same boot): read(2)/write(2) at
    // least as cheap (>= 0.99: within the A/A tolerance). A peer is not a ceiling: famfs may
    // beat it (no journal, no allocation on write).
    for r in uniq.iter().filter(|r| {
        (r.path == "module" || r.path == "fuse") && r.unit == "MB/s" && r.key.starts_with("rw/")
    }) {
        for peer in PEERS {
            let pid = format!("{}/{peer}/{}", r.section, r.key);
            let Some(pr) = uniq.iter().find(|x| x.id() == pid) else {
                continue;
            };
            let target = Some(Target::RatioAtLeast(0.99));
            let (ratio, note) = match (summaries.get(&r.id()), summaries.get(&pid)) {
                (Some(_), Some(_)) => (pair(&r.id(), &pid, true), None),
                _ => (
                    None,
                    Some(
                        pr.not_measured
                            .clone()
                            .or(r.not_measured.clone())
                            .unwrap_or_else(|| "no samples".into()),
                    ),
                ),
            };
            let verdict = ratio.as_ref().map(|x| at_least(x.lo, x.hi, 0.99));
            comparisons.push(Comparison {
                what: format!("{}: {} / {peer}", r.figure, r.path),
                a: r.id(),
                b: pid,
                ratio,
                target,
                verdict,
                note,
            });
        }
    }
    Report {
        info,
        rows,
        comparisons,
    }
}

/// The peers: labels of the ext4 and xfs DAX runs (scripts/bench).
pub const PEERS: &[&str] = &["ext4-dax", "xfs-dax"];

/// The A/A rows of a report: how many held, how many were measured, and the sections whose A/A
/// rows could not be measured (`None`: the run had none).
pub fn aa_status(rep: &Report) -> Option<(usize, usize, Vec<String>)> {
    let aa: Vec<&Row> = rep
        .rows
        .iter()
        .filter(|r| matches!(r.record.target, Some(Target::Same(_))))
        .collect();
    (!aa.is_empty()).then(|| {
        let measured: Vec<&&Row> = aa.iter().filter(|r| r.verdict.is_some()).collect();
        let ok = measured
            .iter()
            .filter(|r| r.verdict == Some(Verdict::Meets))
            .count();
        let mut unmeasured: Vec<String> = aa
            .iter()
            .filter(|r| r.verdict.is_none())
            .map(|r| r.record.section.clone())
            .collect();
        unmeasured.dedup();
        (ok, measured.len(), unmeasured)
    })
}

/// Three significant digits, no exponent for everyday magnitudes.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 || (a.fract() == 0.0 && a < 1e15) {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.001 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

/// `median (lo–hi)`: over paired rounds ("5 rounds": the whole range of the per-round ratios),
/// else the range the two IQRs allow ("IQR").
fn fmt_ratio(r: &Ratio) -> String {
    if r.rounds == 1 {
        format!("{:.2} (best samples)", r.value)
    } else if r.rounds > 0 {
        format!(
            "{:.2} ({:.2}–{:.2}, {} rounds)",
            r.value, r.lo, r.hi, r.rounds
        )
    } else {
        format!("{:.2} ({:.2}–{:.2} IQR)", r.value, r.lo, r.hi)
    }
}

const SECTIONS: &[(&str, &str)] = &[
    ("data", "Data path in the VM, RAM-speed device memory (NVDIMM). In an icount boot guest time counts instructions: MB/s = bytes per 1,000 guest instructions (no memory stalls); otherwise TCG wall clock: compare only ratios"),
    ("threads", "Thread scaling in the VM, RAM-speed device memory (WALL CLOCK under TCG: never from an icount boot, which runs the vCPUs one at a time)"),
    ("first-touch", "First touch in the VM, RAM-speed device memory (time: guest instructions in an icount boot, 1 ms = 1,000,000; fault counts are exact)"),
    ("sync", "msync/fdatasync after the writes of the data table, RAM-speed device memory (not in the bandwidth figures)"),
    ("cxl-data", "Data path bandwidth in the VM, CXL-model device memory (QEMU serves it as I/O memory: the emulator's slow path)"),
    ("cxl-threads", "Thread scaling in the VM, CXL-model device memory"),
    ("cxl-first-touch", "First touch in the VM, CXL-model device memory"),
    ("cxl-sync", "msync/fdatasync after writes, CXL-model device memory"),
    ("fio", "fio in the VM, RAM-speed device memory (icount: MB/s = bytes per 1,000 guest instructions); libpmem on a file against dev-dax on the raw device, mmap/psync against the same engine on ext4-dax"),
    ("reader", "Reader workload in the VM (scripts/reader-workload, numpy): write a float64 array through a shared map, map it read-only and sum it (icount: 1 ms = 1,000,000 guest instructions)"),
    ("scale", "Metadata at scale: many files in one directory (vm-*-icount rows: guest time = instructions, 1 ms = 1,000,000; host rows: wall clock)"),
    ("meta", "Metadata on the host (real speed)"),
    ("host-data", "Fallback mode data path on the host (real speed; ceiling: the image file itself)"),
    ("host-threads", "Fallback mode thread scaling on the host"),
    ("host-first-touch", "Fallback mode first touch on the host"),
    ("host-sync", "Fallback mode msync/fdatasync on the host (after the writes of its data table)"),
];

fn section_title(s: &str) -> String {
    SECTIONS
        .iter()
        .find(|(k, _)| *k == s)
        .map(|(_, t)| t.to_string())
        .unwrap_or_else(|| s.to_string())
}

/// The Markdown tables of a report.
pub fn render_markdown(rep: &Report) -> String {
    let mut out = String::new();
    if !rep.info.is_empty() {
        out.push_str("| run | |\n|---|---|\n");
        for (k, v) in &rep.info {
            let _ = writeln!(out, "| {k} | {} |", v.replace('|', "/"));
        }
        out.push('\n');
    }
    match aa_status(rep) {
        Some((ok, n, _)) if ok == n => {
            let _ = writeln!(out, "A/A check: all {n} measured A/A rows (the same path measured as both sides) read 1.00 within their tolerance: the run stands.\n");
        }
        Some((ok, n, _)) => {
            let _ = writeln!(out, "**A/A check FAILED: {} of {n} A/A rows are off 1.00 beyond their tolerance. This run is VOID: none of its ratios is evidence.**\n", n - ok);
        }
        None => {}
    }
    if let Some((_, _, un)) = aa_status(rep) {
        if !un.is_empty() {
            let _ = writeln!(out, "A/A rows not measured in: {} (see their rows for why): those tables have no A/A check in this run.\n", un.join(", "));
        }
    }
    let mut order: Vec<String> = SECTIONS.iter().map(|(k, _)| k.to_string()).collect();
    for r in &rep.rows {
        if !order.contains(&r.record.section) {
            order.push(r.record.section.clone());
        }
    }
    for sec in order {
        let rows: Vec<&Row> = rep
            .rows
            .iter()
            .filter(|r| r.record.section == sec)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {}\n", section_title(&sec));
        out.push_str("| figure | path | median | spread: min–max (IQR) | n | ratio to ceiling (range) | target | verdict |\n");
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for row in rows {
            let r = &row.record;
            let (value, spread, n) = match (&r.not_measured, &row.summary) {
                (Some(why), _) => (
                    format!("not measured: {}", why.replace('|', "/").replace('\n', " ")),
                    String::new(),
                    String::new(),
                ),
                (None, Some(s)) => (
                    format!("{} {}", fmt_num(s.median), r.unit),
                    format!(
                        "{}–{} ({}–{})",
                        fmt_num(s.min),
                        fmt_num(s.max),
                        fmt_num(s.q1),
                        fmt_num(s.q3)
                    ),
                    s.n.to_string(),
                ),
                (None, None) => ("no samples".into(), String::new(), String::new()),
            };
            let ratio = match (&row.ratio, &r.baseline) {
                (Some(x), Some(b)) => {
                    format!("{} of {}", fmt_ratio(x), b.split('/').nth(1).unwrap_or(b))
                }
                (None, Some(_)) if row.summary.is_some() => "n/a (no ceiling)".into(),
                _ => String::new(),
            };
            let target = r.target.map(|t| t.text(&r.unit)).unwrap_or_default();
            let verdict = row
                .verdict
                .map(|v| v.label().to_string())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {value} | {spread} | {n} | {ratio} | {target} | {verdict} |",
                r.figure, r.path
            );
        }
        out.push('\n');
    }
    for (title, suffix) in [
        (
            "Module over fallback mode (same boot)",
            ": module / fallback",
        ),
        (
            "Module-mode mount over the famfs.ko file (same boot)",
            ": mount / module",
        ),
        (
            "famfs over ext4 -o dax (same memory, same boot; target: at least as cheap)",
            " / ext4-dax",
        ),
        (
            "famfs over xfs -o dax (same memory, same boot; target: at least as cheap)",
            " / xfs-dax",
        ),
    ] {
        let cs: Vec<&Comparison> = rep
            .comparisons
            .iter()
            .filter(|c| c.what.ends_with(suffix))
            .collect();
        if cs.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "### {title}\n\n| comparison | ratio (range) | target | verdict |\n|---|---|---|---|\n"
        );
        for c in cs {
            let section = c.a.split('/').next().unwrap_or("");
            let c = &Comparison {
                what: if section.starts_with("cxl-") {
                    format!("{} (CXL model)", c.what)
                } else {
                    c.what.clone()
                },
                ..c.clone()
            };
            let ratio = match (&c.ratio, &c.note) {
                (Some(r), _) => fmt_ratio(r),
                (None, Some(n)) => format!("not measured: {}", n.replace('|', "/")),
                _ => "n/a".into(),
            };
            let target = c.target.map(|t| t.text("")).unwrap_or_default();
            let verdict = c.verdict.map(|v| v.label().to_string()).unwrap_or_default();
            let _ = writeln!(out, "| {} | {ratio} | {target} | {verdict} |", c.what);
        }
        out.push('\n');
    }
    out
}

/// Parses JSON-lines record files (blank lines ignored).
pub fn parse_records(text: &str) -> anyhow::Result<Vec<Record>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(section: &str, path: &str, key: &str, samples: &[f64]) -> Record {
        let mut r = Record::new(
            section.into(),
            path.into(),
            key.into(),
            key.into(),
            "MB/s",
            true,
            "vm-tcg".into(),
        );
        r.samples = samples.to_vec();
        r
    }

    #[test]
    fn ratios_verdicts_and_comparisons() {
        let raw = rec("data", "raw", "mmap/seq-read/2M/t1", &[100.0, 100.0, 100.0]);
        let mut m = rec("data", "module", "mmap/seq-read/2M/t1", &[97.0, 98.0, 99.0]);
        m.baseline = Some(raw.id());
        m.target = Some(Target::RatioAtLeast(0.95));
        let mut fb = rec(
            "data",
            "fallback",
            "mmap/seq-read/2M/t1",
            &[9.0, 10.0, 11.0],
        );
        fb.baseline = Some(raw.id());
        let mut missing = rec("data", "fuse", "mmap/seq-read/2M/t1", &[]);
        missing.not_measured = Some("famfs mount failed: x | y".into());
        missing.baseline = Some(raw.id());
        let rep = build(
            vec![raw, m, fb, missing],
            BTreeMap::from([("host".to_string(), "test".to_string())]),
        );
        assert_eq!(rep.rows.len(), 4);
        let m = &rep.rows[1];
        assert!((m.ratio.unwrap().value - 0.98).abs() < 1e-9);
        assert_eq!(m.verdict, Some(Verdict::Meets));
        assert!(rep.rows[3].summary.is_none() && rep.rows[3].ratio.is_none());
        assert_eq!(rep.comparisons.len(), 2);
        assert!(
            rep.comparisons[1].what.ends_with(": mount / module")
                && rep.comparisons[1].note.as_deref() == Some("famfs mount failed: x | y")
        );
        let c = &rep.comparisons[0];
        assert!((c.ratio.unwrap().value - 9.8).abs() < 1e-9);
        assert_eq!(c.verdict, Some(Verdict::Inconclusive)); // IQRs 97.5-98.5 over 9.5-10.5 straddle 10
        let md = render_markdown(&rep);
        assert!(md.contains("| host | test |"));
        assert!(md.contains("### Data path in the VM"));
        assert!(md.contains("| mmap/seq-read/2M/t1 | module | 98 MB/s | 97–99 (97.5–98.5) | 3 | 0.98 (0.97–0.98 IQR) of raw | ratio >= 0.95 | meets |"), "{md}");
        assert!(md.contains("not measured: famfs mount failed: x / y"));
        assert!(md.contains("### Module over fallback mode"));
    }

    #[test]
    fn beating_the_ceiling_is_a_method_error() {
        let raw = rec("data", "raw", "mmap/seq-read/4K/t1", &[100.0, 100.0, 100.0]);
        let mut m = rec(
            "data",
            "module",
            "mmap/seq-read/4K/t1",
            &[430.0, 436.0, 440.0],
        );
        m.baseline = Some(raw.id());
        m.target = Some(Target::RatioAtLeast(0.95));
        let mut f = rec(
            "data",
            "fuse",
            "mmap/seq-read/4K/t1",
            &[436.0, 436.0, 436.0],
        );
        f.baseline = Some(raw.id());
        f.target = Some(Target::RatioAtLeast(0.95));
        let rep = build(vec![raw, m, f], BTreeMap::new());
        assert_eq!(rep.rows[1].verdict, Some(Verdict::MethodError));
        // mount / module = 1.0: meets 0.97.
        assert_eq!(rep.comparisons[0].verdict, Some(Verdict::Meets));
        assert!(render_markdown(&rep).contains("METHOD ERROR"));
    }

    #[test]
    fn rounds_accumulate_and_pair() {
        // Two interleaved rounds per path, one invocation each; the ceiling doubles in round 1.
        let round = |path: &str, r: u32, x: f64| {
            let mut v = rec("data", path, "mmap/seq-write/4K/t1", &[x]);
            v.rounds = vec![r];
            if path != "raw" {
                v.baseline = Some("data/raw/mmap/seq-write/4K/t1".into());
                v.target = Some(Target::RatioAtLeast(0.95));
            }
            v
        };
        let mut failed = round("module", 2, 0.0);
        failed.samples.clear();
        failed.rounds.clear();
        failed.not_measured = Some("round 2 failed".into());
        let recs = vec![
            round("raw", 0, 100.0),
            round("module", 0, 98.0),
            round("module", 1, 196.0),
            round("raw", 1, 200.0),
            failed,
            round("raw", 2, 150.0),
        ];
        let rep = build(recs, BTreeMap::new());
        assert_eq!(rep.rows.len(), 2);
        let m = &rep.rows[1];
        assert_eq!(m.record.samples, vec![98.0, 196.0]);
        let r = m.ratio.unwrap();
        assert_eq!(r.rounds, 2);
        assert!((r.value - 0.98).abs() < 1e-12 && (r.lo - 0.98).abs() < 1e-12);
        assert_eq!(m.verdict, Some(Verdict::Meets)); // unpaired, the IQRs would straddle 0.95
        assert!(render_markdown(&rep).contains("0.98 (0.98–0.98, 2 rounds) of raw"));
        // A path that beats its ceiling in every round is a method error, paired or not.
        let rep = build(
            vec![
                round("raw", 0, 100.0),
                round("raw", 1, 100.0),
                round("module", 0, 120.0),
                round("module", 1, 118.0),
            ],
            BTreeMap::new(),
        );
        assert_eq!(rep.rows[1].verdict, Some(Verdict::MethodError));
    }

    #[test]
    fn aa_rows_void_a_run_and_peers_compare() {
        let raw = rec("data", "module", "rw/seq-read/4K/t1", &[100.0, 100.2]);
        let mut aa = rec("data", "module-aa", "rw/seq-read/4K/t1", &[100.1, 100.3]);
        aa.baseline = Some(raw.id());
        aa.target = Some(Target::Same(0.01));
        let ext4 = rec("data", "ext4-dax", "rw/seq-read/4K/t1", &[80.0, 80.1]);
        let xfs = rec("data", "xfs-dax", "rw/seq-read/4K/t1", &[120.0, 120.2]);
        let rep = build(vec![raw.clone(), aa.clone(), ext4, xfs], BTreeMap::new());
        assert_eq!(rep.rows[1].verdict, Some(Verdict::Meets));
        assert_eq!(aa_status(&rep), Some((1, 1, vec![])));
        let peers: Vec<_> = rep
            .comparisons
            .iter()
            .map(|c| (c.what.clone(), c.verdict))
            .collect();
        assert_eq!(
            peers,
            vec![
                (
                    "rw/seq-read/4K/t1: module / ext4-dax".to_string(),
                    Some(Verdict::Meets)
                ),
                (
                    "rw/seq-read/4K/t1: module / xfs-dax".to_string(),
                    Some(Verdict::Misses)
                ),
            ]
        );
        let md = render_markdown(&rep);
        assert!(md.contains("A/A check: all 1 measured A/A rows"), "{md}");
        assert!(md.contains("### famfs over xfs -o dax"));
        // An A/A row 2% off: the run is void, and the report says so first.
        let mut off = aa;
        off.samples = vec![102.0, 102.1];
        let rep = build(vec![raw, off], BTreeMap::new());
        assert_eq!(rep.rows[1].verdict, Some(Verdict::Void));
        assert!(render_markdown(&rep).contains("This run is VOID"));
    }

    #[test]
    fn later_records_replace_earlier_and_targets() {
        let a = rec("meta", "cli", "creat", &[5.0]);
        let mut b = rec("meta", "cli", "creat", &[0.4, 0.5, 0.6]);
        b.higher_is_better = false;
        b.unit = "ms".into();
        b.target = Some(Target::Below(1.0));
        let mut pmd = rec("first-touch", "module", "aligned/pmd", &[512.0, 512.0]);
        pmd.target = Some(Target::Equals(512.0));
        let mut pmd_bad = rec("first-touch", "fuse", "aligned/pmd", &[512.0, 0.0]);
        pmd_bad.target = Some(Target::Equals(512.0));
        let rep = build(vec![a, b, pmd, pmd_bad], BTreeMap::new());
        assert_eq!(rep.rows.len(), 3);
        assert_eq!(rep.rows[0].summary.unwrap().n, 3);
        assert_eq!(rep.rows[0].verdict, Some(Verdict::Meets));
        assert_eq!(rep.rows[1].verdict, Some(Verdict::Meets));
        assert_eq!(rep.rows[2].verdict, Some(Verdict::Misses));
        assert!(render_markdown(&rep).contains("< 1 ms"));
    }

    #[test]
    fn numbers_and_jsonl() {
        assert_eq!(fmt_num(1234.56), "1235");
        assert_eq!(fmt_num(12.345), "12.3");
        assert_eq!(fmt_num(1.2345), "1.23");
        assert_eq!(fmt_num(0.01234), "0.012");
        assert_eq!(fmt_num(512.0), "512");
        assert_eq!(fmt_num(0.0), "0");
        let r = rec("meta", "cli", "x", &[1.0]);
        let text = format!(
            "{}\n\n{}\n",
            serde_json::to_string(&r).unwrap(),
            serde_json::to_string(&r).unwrap()
        );
        assert_eq!(parse_records(&text).unwrap().len(), 2);
        assert!(parse_records("{").is_err());
    }
}
