//! Summary statistics of repeated measurements, and the verdict of a ratio against a target.

use serde::{Deserialize, Serialize};

/// Median and spread of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// First and third quartiles (linear interpolation between order statistics).
    pub q1: f64,
    pub q3: f64,
}

/// The `p` quantile (0..=1) of sorted samples, interpolating linearly between neighbours.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

impl Summary {
    /// Summarises `samples`; `None` when there are none (or any is not a number).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|x| x.is_nan()) {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Some(Summary {
            n: s.len(),
            median: quantile(&s, 0.5),
            min: s[0],
            max: s[s.len() - 1],
            q1: quantile(&s, 0.25),
            q3: quantile(&s, 0.75),
        })
    }
}

/// A ratio of two summarised figures: the ratio of medians, and the range it may take given the
/// spread of both (interquartile ranges).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    /// Rounds paired (0: not paired; `lo..hi` is then the range the two IQRs allow).
    #[serde(default)]
    pub rounds: usize,
}

/// `a / b` for figures where higher is better (bandwidth), or `b / a` where lower is better (time):
/// a ratio below 1 always means "a is worse than b".
pub fn ratio(a: &Summary, b: &Summary, higher_is_better: bool) -> Option<Ratio> {
    let (num, den) = if higher_is_better { (a, b) } else { (b, a) };
    if den.median <= 0.0 || den.q1 <= 0.0 {
        return None;
    }
    let value = num.median / den.median;
    let lo = num.q1 / den.q3;
    let hi = num.q3 / den.q1;
    Some(Ratio {
        value,
        lo: lo.min(value),
        hi: hi.max(value),
        rounds: 0,
    })
}

/// The ratio of two figures measured in the same interleaved rounds (`(round, sample)` pairs):
/// one ratio per round present in both (the best of each side's samples in that round), then
/// their median and their whole range. Pairing cancels what drifts between rounds (host load,
/// TCG translation caches): each ratio compares a path with its ceiling measured minutes apart,
/// not a run apart. `None` without a common round.
pub fn paired_ratio(a: &[(u32, f64)], b: &[(u32, f64)], higher_is_better: bool) -> Option<Ratio> {
    // Several samples of a path in one round: its best one stands for the round. Under the
    // emulator a sample is only ever slowed (a host interrupt, emulator housekeeping), never sped
    // up, so the best sample is the path's own speed and the others add the interference's.
    let best_of = |v: &[(u32, f64)], r: u32| {
        let xs = v.iter().filter(|(k, _)| *k == r).map(|(_, x)| *x);
        if higher_is_better {
            xs.reduce(f64::max)
        } else {
            xs.reduce(f64::min)
        }
    };
    let mut rounds: Vec<u32> = a.iter().map(|(r, _)| *r).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let mut ratios = Vec::new();
    for r in rounds {
        let (Some(x), Some(y)) = (best_of(a, r), best_of(b, r)) else {
            continue;
        };
        let (num, den) = if higher_is_better { (x, y) } else { (y, x) };
        if den <= 0.0 {
            return None;
        }
        ratios.push(num / den);
    }
    // One round is enough under icount, where a sample is only ever lengthened by other work
    // (a kworker, a timer): its best sample is the path's own instruction count.
    if ratios.is_empty() {
        return None;
    }
    let s = Summary::of(&ratios)?;
    Some(Ratio {
        value: s.median,
        lo: s.min,
        hi: s.max,
        rounds: ratios.len(),
    })
}

/// Whether a figure meets its target, taking its spread into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Meets,
    Misses,
    /// The spread straddles the target: the run cannot tell.
    Inconclusive,
    /// The path beats its own ceiling by more than [`CEILING_SLACK`]: the ceiling or the method
    /// is wrong (different fault sizes, caching, timing), so the figure proves nothing.
    MethodError,
    /// The median is within the ceiling and the whole range clears the target, but the range
    /// reaches above [`CEILING_SLACK`]: in some rounds the path "beat" its ceiling, so the
    /// per-round noise is larger than the margin and the run cannot say "meets".
    Noisy,
    /// An A/A row (the same path measured as both sides) is off 1.00 by more than its
    /// tolerance: the method does not repeat, so no ratio of this run is evidence.
    Void,
}

/// A ratio to a ceiling above this is a method error, never a "meets".
pub const CEILING_SLACK: f64 = 1.05;

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Meets => "meets",
            Verdict::Misses => "MISSES",
            Verdict::Inconclusive => "inconclusive",
            Verdict::MethodError => "METHOD ERROR (> 1.05 of its ceiling)",
            Verdict::Noisy => "inconclusive (range above 1.05: noise)",
            Verdict::Void => "RUN VOID (A/A off 1.00)",
        }
    }
}

/// Verdict of an A/A ratio (the same path as both sides): the whole range within `1 ± tol`.
pub fn same(r: &Ratio, tol: f64) -> Verdict {
    if r.lo >= 1.0 - tol && r.hi <= 1.0 + tol {
        Verdict::Meets
    } else {
        Verdict::Void
    }
}

/// Verdict of "x >= target" where x lies in `lo..=hi` (median `mid`).
pub fn at_least(lo: f64, hi: f64, target: f64) -> Verdict {
    if lo >= target {
        Verdict::Meets
    } else if hi < target {
        Verdict::Misses
    } else {
        Verdict::Inconclusive
    }
}

/// Verdict of "ratio >= target" for a ratio to a ceiling (`target <= 1`): a median ratio above
/// [`CEILING_SLACK`] is a method error, and no ratio above it counts towards a "meets": a meets
/// needs the whole range within `target..=CEILING_SLACK`.
pub fn at_least_of_ceiling(r: &Ratio, target: f64) -> Verdict {
    if r.value > CEILING_SLACK {
        Verdict::MethodError
    } else {
        match at_least(r.lo, r.hi, target) {
            Verdict::Meets if r.hi > CEILING_SLACK => Verdict::Noisy,
            v => v,
        }
    }
}

/// Verdict of "x < target" where x lies in `lo..=hi`.
pub fn below(lo: f64, hi: f64, target: f64) -> Verdict {
    if hi < target {
        Verdict::Meets
    } else if lo >= target {
        Verdict::Misses
    } else {
        Verdict::Inconclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.q1, 1.75);
        assert_eq!(s.q3, 3.25);
    }

    #[test]
    fn single_and_empty() {
        let s = Summary::of(&[7.0]).unwrap();
        assert_eq!(
            (s.median, s.q1, s.q3, s.min, s.max),
            (7.0, 7.0, 7.0, 7.0, 7.0)
        );
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn ratio_direction_and_range() {
        let a = Summary::of(&[90.0, 95.0, 100.0]).unwrap();
        let b = Summary::of(&[100.0, 100.0, 100.0]).unwrap();
        let r = ratio(&a, &b, true).unwrap();
        assert!((r.value - 0.95).abs() < 1e-12);
        assert!(r.lo <= r.value && r.value <= r.hi);
        assert!((r.lo - 0.925).abs() < 1e-12 && (r.hi - 0.975).abs() < 1e-12);
        // Times: a takes twice as long as b -> 0.5.
        let a = Summary::of(&[2.0]).unwrap();
        let b = Summary::of(&[1.0]).unwrap();
        assert_eq!(ratio(&a, &b, false).unwrap().value, 0.5);
        assert!(ratio(&a, &Summary::of(&[0.0]).unwrap(), true).is_none());
    }

    #[test]
    fn paired_ratios_follow_the_rounds() {
        // The ceiling drifts 2x between rounds; the path is 0.9 of it in every round.
        let b = [(0, 100.0), (1, 200.0), (2, 100.0), (3, 200.0)];
        let a = [(0, 90.0), (1, 180.0), (2, 90.0), (3, 180.0)];
        let r = paired_ratio(&a, &b, true).unwrap();
        assert!(
            (r.value - 0.9).abs() < 1e-12
                && (r.lo - 0.9).abs() < 1e-12
                && (r.hi - 0.9).abs() < 1e-12
        );
        // The unpaired ratio of the same samples cannot tell: its range straddles 0.95.
        let u = ratio(
            &Summary::of(&[90.0, 180.0, 90.0, 180.0]).unwrap(),
            &Summary::of(&[100.0, 200.0, 100.0, 200.0]).unwrap(),
            true,
        )
        .unwrap();
        assert!(u.lo < 0.95 && u.hi > 0.95);
        // Times (lower is better): the best (lowest) sample of a round stands for it; rounds only
        // one side has are skipped. Round 0: 1.5 / 2.0, round 1: 1.5 / 3.0.
        let a = [(0, 4.0), (0, 2.0), (1, 3.0), (5, 9.0)];
        let b = [(0, 1.5), (1, 1.5)];
        let r = paired_ratio(&a, &b, false).unwrap();
        assert!(
            (r.value - 0.625).abs() < 1e-12
                && (r.lo - 0.5).abs() < 1e-12
                && (r.hi - 0.75).abs() < 1e-12
        );
        // Bandwidth: the highest sample of a round; a slowed sample of the path does not count.
        let a = [(0, 60.0), (0, 99.0), (1, 98.0), (1, 70.0)];
        let b = [(0, 100.0), (0, 80.0), (1, 100.0)];
        let r = paired_ratio(&a, &b, true).unwrap();
        assert!((r.lo - 0.98).abs() < 1e-12 && (r.hi - 0.99).abs() < 1e-12);
        // One common round (icount): the ratio of the two best samples.
        let r = paired_ratio(&a[..2], &b, true).unwrap();
        assert!((r.value - 0.99).abs() < 1e-12 && r.rounds == 1);
        assert!(paired_ratio(&a[..2], &[(7, 1.0)], true).is_none()); // no common round
    }

    #[test]
    fn verdicts() {
        assert_eq!(at_least(0.96, 0.99, 0.95), Verdict::Meets);
        assert_eq!(at_least(0.80, 0.90, 0.95), Verdict::Misses);
        assert_eq!(at_least(0.90, 0.99, 0.95), Verdict::Inconclusive);
        assert_eq!(below(0.2, 0.4, 1.0), Verdict::Meets);
        assert_eq!(below(1.2, 1.4, 1.0), Verdict::Misses);
        assert_eq!(below(0.8, 1.4, 1.0), Verdict::Inconclusive);
        assert_eq!(Verdict::Misses.label(), "MISSES");
        let r = |value| Ratio {
            value,
            lo: value - 0.01,
            hi: value + 0.01,
            rounds: 0,
        };
        assert_eq!(at_least_of_ceiling(&r(1.2), 0.95), Verdict::MethodError);
        assert_eq!(at_least_of_ceiling(&r(1.03), 0.95), Verdict::Meets);
        assert_eq!(at_least_of_ceiling(&r(1.045), 0.95), Verdict::Noisy); // range reaches 1.055
        assert_eq!(
            at_least_of_ceiling(
                &Ratio {
                    value: 1.0,
                    lo: 0.96,
                    hi: 1.5,
                    rounds: 5
                },
                0.95
            ),
            Verdict::Noisy
        );
        assert_eq!(
            at_least_of_ceiling(
                &Ratio {
                    value: 0.9,
                    lo: 0.5,
                    hi: 1.5,
                    rounds: 5
                },
                0.95
            ),
            Verdict::Inconclusive
        );
        assert_eq!(at_least_of_ceiling(&r(0.5), 0.95), Verdict::Misses);
        assert_eq!(same(&r(1.0), 0.01), Verdict::Meets);
        assert_eq!(same(&r(1.005), 0.01), Verdict::Void); // range reaches 1.015
        assert_eq!(same(&r(0.985), 0.01), Verdict::Void);
    }
}
