//! `pushbench compare BASELINE CURRENT`: the performance regression gate.
//!
//! Figures come in groups, judged differently:
//! - deterministic ones (`delivery`: lost, duplicated, out of order;
//!   `bytes`: bytes and requests per event) depend on the code, not on the
//!   machine: they are held tightly, against any baseline;
//! - timing ones (`latency`, `cpu` per event, `throughput`) depend on the
//!   machine as much as on the code. They are judged **A/B**: each side is
//!   several runs made on the same machine, interleaved (A B B A A B …, so
//!   drift hits both alike), and current is called worse only when every
//!   current run is worse than every baseline run by more than a floor
//!   (see `judge_ab`); runs of one build that spread more than a limit
//!   among themselves are "too noisy to judge".
//!
//! One run per side (a user comparing two saved summaries) still works:
//! timing figures are then divided by each run's reference step and held
//! to a fixed noise threshold, and when the two runs come from different
//! machines their timing verdicts are marked indicative and never fail.
//! Dividing by a CPU-bound reference step cannot make latency comparable
//! across machines: on a shared 2-core machine latency is mostly queueing,
//! which grows non-linearly with load.
//!
//! Latency is only judged where the machine had CPU to spare: a run whose
//! machine was CPU-bound in a measured second (see `machine`) makes that
//! transport's latency "not comparable here", which is neither a pass nor
//! a regression.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use comfy_table::presets::{ASCII_MARKDOWN, UTF8_FULL_CONDENSED};
use comfy_table::{CellAlignment, Table};

use crate::report::saved;
use crate::report::summary::{Summary, TransportSummary};

/// Thresholds for comparing one run with one run.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Deterministic figures (bytes, requests per event), percent.
    pub tight_pct: f64,
    /// Timing figures after dividing by the reference step, percent
    /// (single runs only; A/B runs measure their own noise).
    pub noise_pct: f64,
    /// Tail latency (p99) after dividing by the reference step, percent.
    pub tail_noise_pct: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            tight_pct: 3.0,
            noise_pct: 30.0,
            tail_noise_pct: 60.0,
        }
    }
}

impl Thresholds {
    /// Refuses thresholds that would make every verdict meaningless.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, v) in [
            ("--tight", self.tight_pct),
            ("--noise", self.noise_pct),
            ("--tail-noise", self.tail_noise_pct),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!(
                    "{flag} {v}: allowed is a percentage, 0 or more (e.g. {flag} 30)"
                ));
            }
        }
        Ok(())
    }
}

/// A/B needs at least this many runs a side: with three, complete
/// separation of the two sides has p = 1/20 = 0.05.
pub const AB_MIN_RUNS: usize = 3;

/// Groups of figures, selectable with `--figures`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Lost, duplicated and out-of-order events (deterministic).
    Delivery,
    /// Bytes and HTTP requests per event (deterministic).
    Bytes,
    /// Latency p50 and p99 (timing; judged only on a machine with CPU to spare).
    Latency,
    /// Server and generator CPU per event (timing).
    Cpu,
    /// Delivered events per second (timing; meaningful at saturation).
    Throughput,
}

impl Group {
    /// What `compare` judges when `--figures` is not given: throughput only
    /// means something when a scenario saturates the machine on purpose.
    pub const DEFAULT: [Group; 4] = [Group::Delivery, Group::Bytes, Group::Latency, Group::Cpu];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Better than the baseline past the limit: still a pass, but the
    /// baseline may deserve an update.
    Improved,
    Regression,
    /// Cannot be judged on these runs (the note says why): neither a pass
    /// nor a regression.
    NotComparable,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "ok",
            Verdict::Improved => "improved",
            Verdict::Regression => "REGRESSION",
            Verdict::NotComparable => "not comparable",
        })
    }
}

/// One side's values of one figure: one per run.
#[derive(Clone, Debug, Default)]
pub struct Values(pub Vec<f64>);

impl Values {
    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// Range over median, percent: how far runs of the same code spread.
    fn spread_pct(&self) -> f64 {
        let m = self.median();
        if self.0.len() < 2 || m == 0.0 {
            0.0
        } else {
            (self.max() - self.min()) / m.abs() * 100.0
        }
    }

    /// "median unit [min–max] n=runs", or the one value, or "n/a".
    pub fn show(&self, unit: &str) -> String {
        match self.0.len() {
            0 => "n/a".into(),
            1 => format!("{} {unit}", num(self.0[0])),
            n => format!(
                "{} {unit} [{}–{}] n={n}",
                num(self.median()),
                num(self.min()),
                num(self.max())
            ),
        }
    }
}

fn num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Exact one-sided Mann–Whitney p-value that `b` tends to be larger than
/// `a`: the share of all ways to split the pooled runs into two groups of
/// these sizes whose U statistic is at least the observed one (ties count
/// half). Exact enumeration: the gate has a handful of runs a side.
pub fn mann_whitney_greater(a: &[f64], b: &[f64]) -> f64 {
    let u = |a: &[f64], b: &[f64]| -> f64 {
        let mut u = 0.0;
        for x in a {
            for y in b {
                if y > x {
                    u += 1.0;
                } else if y == x {
                    u += 0.5;
                }
            }
        }
        u
    };
    let observed = u(a, b);
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let (n, k) = (pooled.len(), b.len());
    if k == 0 || k == n {
        return 1.0;
    }
    if n > 20 {
        // Too many splits to count (C(24, 12) = 2.7 million): the normal
        // approximation of U, with a continuity correction, is close there.
        let (na, nb) = (a.len() as f64, b.len() as f64);
        let mean = na * nb / 2.0;
        let sd = (na * nb * (na + nb + 1.0) / 12.0).sqrt();
        let z = (observed - 0.5 - mean) / sd;
        return 0.5 * erfc(z / std::f64::consts::SQRT_2);
    }
    let (mut at_least, mut total) = (0u64, 0u64);
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize != k {
            continue;
        }
        let (mut ga, mut gb) = (Vec::with_capacity(n - k), Vec::with_capacity(k));
        for (i, v) in pooled.iter().enumerate() {
            if mask & (1 << i) != 0 {
                gb.push(*v)
            } else {
                ga.push(*v)
            }
        }
        total += 1;
        if u(&ga, &gb) >= observed - 1e-9 {
            at_least += 1;
        }
    }
    at_least as f64 / total as f64
}

/// The complementary error function (Abramowitz and Stegun 7.1.26, error
/// below 1.5e-7): enough for a p-value compared with 0.05.
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if x >= 0.0 { erfc } else { 2.0 - erfc }
}

/// How a figure is judged.
#[derive(Clone, Copy)]
enum Rule {
    /// Lower is better; fails past `tight_pct`, with an absolute slack
    /// for figures near zero (e.g. pong bytes on an idle WebSocket).
    Tight { slack: f64 },
    /// Counts that must not exceed the baseline at all.
    NoMoreThan,
    /// Timing. `floor_pct`: the least change called a regression in A/B;
    /// `max_spread_pct`: runs spreading more than this among themselves
    /// are too noisy to judge; `tail`: single runs use the tail threshold.
    Timing {
        higher_is_better: bool,
        floor_pct: f64,
        max_spread_pct: f64,
        tail: bool,
    },
}

const MEDIAN_TIMING: Rule = Rule::Timing {
    higher_is_better: false,
    floor_pct: 15.0,
    max_spread_pct: 50.0,
    tail: false,
};

struct Figure {
    name: &'static str,
    unit: &'static str,
    group: Group,
    rule: Rule,
    value: fn(&TransportSummary) -> Option<f64>,
}

const FIGURES: &[Figure] = &[
    Figure {
        name: "bytes down / event",
        unit: "B",
        group: Group::Bytes,
        rule: Rule::Tight { slack: 1.0 },
        value: |t| t.cost.bytes_down_per_event,
    },
    Figure {
        name: "bytes up / event",
        unit: "B",
        group: Group::Bytes,
        rule: Rule::Tight { slack: 1.0 },
        value: |t| t.cost.bytes_up_per_event,
    },
    Figure {
        name: "HTTP requests / event",
        unit: "req",
        group: Group::Bytes,
        rule: Rule::Tight { slack: 0.01 },
        value: |t| t.cost.requests_per_event,
    },
    Figure {
        name: "lost events",
        unit: "events",
        group: Group::Delivery,
        rule: Rule::NoMoreThan,
        value: |t| t.delivery.lost.map(|v| v as f64),
    },
    Figure {
        name: "duplicated events",
        unit: "events",
        group: Group::Delivery,
        rule: Rule::NoMoreThan,
        value: |t| Some(t.delivery.duplicated as f64),
    },
    Figure {
        name: "out-of-order events",
        unit: "events",
        group: Group::Delivery,
        rule: Rule::NoMoreThan,
        value: |t| Some(t.delivery.out_of_order as f64),
    },
    Figure {
        name: "latency p50",
        unit: "µs",
        group: Group::Latency,
        rule: MEDIAN_TIMING,
        value: |t| (t.latency_us.count > 0).then_some(t.latency_us.p50 as f64),
    },
    Figure {
        name: "latency p99",
        unit: "µs",
        group: Group::Latency,
        // Tails move more between runs of the same code (up to 43% seen
        // on a 2-core machine) than medians (22%); a doubled p99 fails.
        rule: Rule::Timing {
            higher_is_better: false,
            floor_pct: 30.0,
            max_spread_pct: 100.0,
            tail: true,
        },
        value: |t| (t.latency_us.count > 0).then_some(t.latency_us.p99 as f64),
    },
    Figure {
        name: "server CPU / event",
        unit: "µs",
        group: Group::Cpu,
        rule: MEDIAN_TIMING,
        value: |t| t.cost.server_cpu_us_per_event,
    },
    Figure {
        name: "generator CPU / event",
        unit: "µs",
        group: Group::Cpu,
        rule: MEDIAN_TIMING,
        value: |t| t.cost.generator_cpu_us_per_event,
    },
    Figure {
        name: "delivered events/s",
        unit: "/s",
        group: Group::Throughput,
        rule: Rule::Timing {
            higher_is_better: true,
            floor_pct: 15.0,
            max_spread_pct: 50.0,
            tail: false,
        },
        value: |t| Some(t.throughput.delivered_per_s),
    },
];

/// One compared figure.
#[derive(Clone, Debug)]
pub struct Check {
    pub transport: String,
    pub figure: &'static str,
    pub unit: &'static str,
    pub baseline: Values,
    pub current: Values,
    /// Relative change of the medians as measured, percent (current over
    /// baseline).
    pub change_pct: Option<f64>,
    /// For a single pair judged after dividing by each run's reference
    /// step: the change the verdict is on. Shown beside the measured one,
    /// which can go the other way on a faster or slower machine.
    pub calibrated_pct: Option<f64>,
    /// What was allowed, in words.
    pub limit: String,
    pub verdict: Verdict,
    /// Why the verdict is what it is, when it is not plain.
    pub note: Option<String>,
}

/// One side of a comparison: one or more runs of the same scenario.
pub struct Side {
    pub path: PathBuf,
    pub runs: Vec<Summary>,
}

/// Reads one side: a summary.json, a results directory holding one, or a
/// directory of results directories (several runs, for A/B).
pub fn load(path: &Path) -> anyhow::Result<Side> {
    let single = saved::summary_path(path);
    if single.is_file() || !path.is_dir() {
        return Ok(Side {
            path: path.to_path_buf(),
            runs: vec![saved::load_summary(&single)?],
        });
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot read", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(crate::report::files::SUMMARY).is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "{}: no summary.json in it or in any directory directly under it",
            path.display()
        );
    }
    let runs = dirs
        .iter()
        .map(|d| saved::load_summary(&saved::summary_path(d)))
        .collect::<anyhow::Result<_>>()?;
    Ok(Side {
        path: path.to_path_buf(),
        runs,
    })
}

fn reference_ns(s: &Summary) -> Option<f64> {
    s.environment
        .reference_step_ns
        .filter(|n| *n > 0)
        .map(|n| n as f64)
}

/// How far the reference step may move, within a run or between two, before
/// single-run timing verdicts become indicative only, percent.
pub const CALIBRATION_SPREAD_PCT: f64 = 25.0;

/// Why two single runs' timings cannot be held against each other, if so.
fn different_machines(b: &Summary, c: &Summary) -> Option<String> {
    let (eb, ec) = (&b.environment, &c.environment);
    if eb.cpu_model != ec.cpu_model || eb.cores != ec.cores {
        return Some(format!(
            "different machines ({} × {:?} vs {} × {:?})",
            eb.cores, eb.cpu_model, ec.cores, ec.cpu_model
        ));
    }
    for (s, which) in [(b, "baseline"), (c, "current")] {
        if let Some(spread) = s
            .environment
            .reference_spread_pct()
            .filter(|p| *p > CALIBRATION_SPREAD_PCT)
        {
            return Some(format!(
                "the {which} machine's speed moved by {spread:.0}% within its run (reference steps, more than {CALIBRATION_SPREAD_PCT:.0}%)"
            ));
        }
    }
    match (reference_ns(b), reference_ns(c)) {
        (Some(rb), Some(rc)) if (rc / rb - 1.0).abs() * 100.0 > CALIBRATION_SPREAD_PCT => {
            Some(format!(
                "the machine's speed moved (reference step {:.1} ms vs {:.1} ms)",
                rb / 1e6,
                rc / 1e6
            ))
        }
        (Some(_), Some(_)) => None,
        _ => Some("a run has no reference step".into()),
    }
}

/// Compares every selected figure of every transport of the baseline.
/// Errors (exit 2) when the two sides are not comparable at all.
pub fn compare(
    baseline: &Side,
    current: &Side,
    groups: &[Group],
    th: Thresholds,
) -> anyhow::Result<Vec<Check>> {
    th.validate().map_err(anyhow::Error::msg)?;
    let name = &baseline.runs[0].scenario.name;
    let workload = scenario_without_transports(&baseline.runs[0].scenario);
    for (side, which) in [(baseline, "baseline"), (current, "current")] {
        for s in &side.runs {
            if &s.scenario.name != name {
                bail!(
                    "not the same scenario: the baseline ran {name:?}, a {which} run ran {:?} ({})",
                    s.scenario.name,
                    side.path.display()
                );
            }
            let mut differs = Vec::new();
            differing_keys(
                &workload,
                &scenario_without_transports(&s.scenario),
                "",
                &mut differs,
            );
            if !differs.is_empty() {
                bail!(
                    "not the same workload: scenario {name:?} differs in {} between the baseline and a {which} run ({}); refresh the baseline",
                    differs.join(", "),
                    side.path.display()
                );
            }
            if !s.complete {
                bail!(
                    "a {which} run is incomplete ({}): nothing to compare it on ({})",
                    s.incomplete_reason.as_deref().unwrap_or("?"),
                    side.path.display()
                );
            }
        }
    }
    let single = baseline.runs.len() == 1 && current.runs.len() == 1;
    let machines = if single {
        different_machines(&baseline.runs[0], &current.runs[0])
    } else {
        None
    };
    let mut checks = Vec::new();
    for b in &baseline.runs[0].transports {
        let kind = b.transport;
        let (bs, cs) = (
            pick(baseline, "baseline", kind)?,
            pick(current, "current", kind)?,
        );
        let busy = |ts: &[&TransportSummary]| {
            ts.iter()
                .filter(|t| t.machine.as_ref().is_some_and(|m| m.cpu_bound()))
                .count()
        };
        let cpu_bound = busy(&bs) + busy(&cs);
        for f in FIGURES.iter().filter(|f| groups.contains(&f.group)) {
            let values =
                |ts: &[&TransportSummary]| Values(ts.iter().filter_map(|t| (f.value)(t)).collect());
            let (bv, cv) = (values(&bs), values(&cs));
            if bv.0.is_empty() && cv.0.is_empty() {
                continue;
            }
            let mut check = Check {
                transport: kind.to_string(),
                figure: f.name,
                unit: f.unit,
                baseline: bv,
                current: cv,
                change_pct: None,
                calibrated_pct: None,
                limit: String::new(),
                verdict: Verdict::Pass,
                note: None,
            };
            if check.baseline.0.is_empty() || check.current.0.is_empty() {
                check.verdict = Verdict::NotComparable;
                check.note = Some(format!(
                    "no value on the {} side",
                    if check.baseline.0.is_empty() {
                        "baseline"
                    } else {
                        "current"
                    }
                ));
                checks.push(check);
                continue;
            }
            match f.rule {
                Rule::Tight { slack } => judge_tight(&mut check, th.tight_pct, slack),
                Rule::NoMoreThan => judge_no_more(&mut check),
                Rule::Timing { tail, .. }
                    if f.group == Group::Latency
                        && few_samples(&bs, &cs, if tail { 0.99 } else { 0.5 }) =>
                {
                    check.verdict = Verdict::NotComparable;
                    check.note = Some(format!(
                        "too few latency samples in a run: fewer than {} beyond this percentile (see the table's * mark)",
                        crate::report::MIN_SAMPLES_BEYOND
                    ));
                }
                Rule::Timing { .. } if f.group == Group::Latency && cpu_bound > 0 => {
                    check.verdict = Verdict::NotComparable;
                    check.note = Some(format!(
                        "the machine was CPU-bound in {cpu_bound} of {} runs (busy or stolen past {:.0}% in a measured second): latency there is queueing for a CPU",
                        bs.len() + cs.len(),
                        crate::machine::BUSY_LIMIT_PCT
                    ));
                }
                Rule::Timing {
                    higher_is_better,
                    floor_pct,
                    max_spread_pct,
                    tail,
                } => {
                    // A/B counts the runs that have this figure.
                    let ab = check.baseline.0.len() >= AB_MIN_RUNS
                        && check.current.0.len() >= AB_MIN_RUNS;
                    if ab {
                        judge_ab(&mut check, higher_is_better, floor_pct, max_spread_pct);
                    } else if single {
                        let allowed = if tail {
                            th.tail_noise_pct
                        } else {
                            th.noise_pct
                        };
                        judge_calibrated(
                            &mut check,
                            (&baseline.runs[0], &current.runs[0]),
                            higher_is_better,
                            allowed,
                            machines.as_deref(),
                        );
                    } else {
                        check.verdict = Verdict::NotComparable;
                        check.note = Some(format!(
                            "A/B needs at least {AB_MIN_RUNS} runs a side ({} and {} given)",
                            baseline.runs.len(),
                            current.runs.len()
                        ));
                    }
                }
            }
            checks.push(check);
        }
    }
    Ok(checks)
}

fn scenario_without_transports(s: &crate::scenario::Scenario) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        // What runs and how often is not the workload.
        map.remove("transports");
        map.remove("run");
    }
    v
}

/// The keys whose values differ between `a` and `b`, dotted; keys only one
/// side has (a setting newer than the other build) are not differences.
fn differing_keys(a: &serde_json::Value, b: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            for (k, va) in a {
                if let Some(vb) = b.get(k) {
                    let key = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    differing_keys(va, vb, &key, out);
                }
            }
        }
        _ if a != b => out.push(at.to_string()),
        _ => {}
    }
}

/// True when a run of either side has fewer than the table's minimum of
/// samples beyond quantile `q` of its latency.
fn few_samples(bs: &[&TransportSummary], cs: &[&TransportSummary], q: f64) -> bool {
    bs.iter()
        .chain(cs)
        .any(|t| (t.latency_us.count as f64) * (1.0 - q) < crate::report::MIN_SAMPLES_BEYOND)
}

/// Every run's figures of one transport; an error names the run without it.
fn pick<'a>(
    side: &'a Side,
    which: &str,
    kind: crate::scenario::TransportKind,
) -> anyhow::Result<Vec<&'a TransportSummary>> {
    side.runs
        .iter()
        .map(|s| {
            s.transports
                .iter()
                .find(|t| t.transport == kind)
                .with_context(|| {
                    format!(
                        "a {which} run has no {kind} transport; the baseline has ({})",
                        side.path.display()
                    )
                })
        })
        .collect()
}

fn judge_tight(c: &mut Check, tight_pct: f64, slack: f64) {
    let (b, v) = (c.baseline.median(), c.current.median());
    let allowed = (b * tight_pct / 100.0).max(slack);
    c.verdict = band(b, v, allowed);
    c.change_pct = (b != 0.0).then(|| (v / b - 1.0) * 100.0);
    c.limit = format!("±{tight_pct}% (min {slack})");
}

fn judge_no_more(c: &mut Check) {
    // Every current run is held to the worst baseline run.
    let (b, v) = (c.baseline.max(), c.current.max());
    c.verdict = if v > b {
        Verdict::Regression
    } else if v < b {
        Verdict::Improved
    } else {
        Verdict::Pass
    };
    c.change_pct = (b != 0.0).then(|| (v / b - 1.0) * 100.0);
    c.limit = "no more than baseline".into();
}

fn band(baseline: f64, current: f64, allowed: f64) -> Verdict {
    if current > baseline + allowed {
        Verdict::Regression
    } else if current < baseline - allowed {
        Verdict::Improved
    } else {
        Verdict::Pass
    }
}

/// A/B: current is worse only when *every* current run is worse than
/// *every* baseline run by more than the floor (the gap between the two
/// sides, not between their medians). That implies complete separation,
/// the strongest ordering a rank test can see (p = 1/20 with three runs a
/// side), and an effect no run of the baseline comes near. With two dozen
/// figures per gate, a median test at p ≤ 0.05 called identical code a
/// regression on one core (long_polling_h2 p99 +51%, gap 9%).
fn judge_ab(c: &mut Check, higher_is_better: bool, floor_pct: f64, max_spread_pct: f64) {
    let (b, v) = (c.baseline.median(), c.current.median());
    c.change_pct = Some(if b == 0.0 { 0.0 } else { (v / b - 1.0) * 100.0 });
    let (b_lo, b_hi, c_lo, c_hi) = (
        c.baseline.min(),
        c.baseline.max(),
        c.current.min(),
        c.current.max(),
    );
    let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { 1.0 };
    // How much worse (better) the best (worst) current run is than the
    // worst (best) baseline run, percent; positive when the sides part.
    let (gap_worse, gap_better) = if higher_is_better {
        (
            (1.0 - ratio(c_hi, b_lo)) * 100.0,
            (ratio(c_lo, b_hi) - 1.0) * 100.0,
        )
    } else {
        (
            (ratio(c_lo, b_hi) - 1.0) * 100.0,
            (1.0 - ratio(c_hi, b_lo)) * 100.0,
        )
    };
    let spread = c.baseline.spread_pct().max(c.current.spread_pct());
    c.limit = format!(
        "every run {floor_pct:.0}% {} than every baseline run",
        if higher_is_better { "lower" } else { "higher" }
    );
    let sign = if higher_is_better { -1.0 } else { 1.0 };
    let flip = |v: &Values| v.0.iter().map(|x| sign * x).collect::<Vec<_>>();
    let (fb, fc) = (flip(&c.baseline), flip(&c.current));
    let runs = format!("{} + {} runs", fb.len(), fc.len());
    if gap_worse > floor_pct {
        c.verdict = Verdict::Regression;
        c.note = Some(format!(
            "every current run is at least {gap_worse:.0}% worse than every baseline run (rank test p = {:.3} over {runs})",
            mann_whitney_greater(&fb, &fc)
        ));
    } else if gap_better > floor_pct {
        c.verdict = Verdict::Improved;
        c.note = Some(format!(
            "every current run is at least {gap_better:.0}% better than every baseline run (rank test p = {:.3} over {runs})",
            mann_whitney_greater(&fc, &fb)
        ));
    } else if spread > max_spread_pct {
        c.verdict = Verdict::NotComparable;
        c.note = Some(format!(
            "too noisy to judge: runs of the same build spread by {spread:.0}% (more than {max_spread_pct:.0}%)"
        ));
    } else {
        c.verdict = Verdict::Pass;
    }
}

fn judge_calibrated(
    c: &mut Check,
    (bs, cs): (&Summary, &Summary),
    higher_is_better: bool,
    allowed_pct: f64,
    machines: Option<&str>,
) {
    let (Some(rb), Some(rc)) = (reference_ns(bs), reference_ns(cs)) else {
        c.verdict = Verdict::NotComparable;
        c.note = Some("a run has no reference step (environment.reference_step_ns)".into());
        return;
    };
    let sign = if higher_is_better { -1.0 } else { 1.0 };
    // Time per unit of reference work: a throughput scales the other way.
    let (nb, nc) = if higher_is_better {
        (c.baseline.median() * rb, c.current.median() * rc)
    } else {
        (c.baseline.median() / rb, c.current.median() / rc)
    };
    let raw = if nb == 0.0 {
        0.0
    } else {
        (nc / nb - 1.0) * 100.0
    };
    let change = sign * raw;
    let (b, v) = (c.baseline.median(), c.current.median());
    c.change_pct = (b != 0.0).then(|| (v / b - 1.0) * 100.0);
    c.calibrated_pct = Some(raw);
    c.limit = format!(
        "{}{allowed_pct}% noise, calibrated",
        if higher_is_better { "-" } else { "+" }
    );
    c.verdict = if change > allowed_pct {
        Verdict::Regression
    } else if change < -allowed_pct {
        Verdict::Improved
    } else {
        Verdict::Pass
    };
    if let Some(why) = machines
        && c.verdict != Verdict::Pass
    {
        c.note = Some(format!(
            "{why}: timing verdicts across machines are indicative only ({})",
            c.verdict
        ));
        c.verdict = Verdict::NotComparable;
    }
}

/// How a table is drawn: box drawing for a terminal, Markdown otherwise.
#[derive(Clone, Copy, Debug)]
pub enum Style {
    Terminal,
    Plain,
}

/// The verdict table, then the notes.
pub fn render(checks: &[Check], baseline: &Side, current: &Side, style: Style) -> String {
    let mut t = Table::new();
    t.load_preset(match style {
        Style::Terminal => UTF8_FULL_CONDENSED,
        Style::Plain => ASCII_MARKDOWN,
    });
    t.set_header([
        "transport",
        "figure",
        "baseline",
        "current",
        "change",
        "allowed",
        "verdict",
    ]);
    let mut notes = Vec::new();
    for c in checks {
        let measured = match c.change_pct {
            Some(pct) => format!("{pct:+.1}%"),
            None if c.current.median() == 0.0 => "0".into(),
            None => "new".into(),
        };
        let change = match c.calibrated_pct {
            Some(pct) => format!("{measured}, calibrated {pct:+.1}%"),
            None => measured,
        };
        let verdict = match &c.note {
            Some(note) => {
                notes.push(format!(
                    "[{}] {} {}: {note}",
                    notes.len() + 1,
                    c.transport,
                    c.figure
                ));
                format!("{} [{}]", c.verdict, notes.len())
            }
            None => c.verdict.to_string(),
        };
        t.add_row([
            c.transport.clone(),
            c.figure.to_string(),
            c.baseline.show(c.unit),
            c.current.show(c.unit),
            change,
            c.limit.clone(),
            verdict,
        ]);
    }
    for i in 2..=4 {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let refs = |side: &Side| {
        side.runs
            .iter()
            .map(|s| reference_ns(s).map_or("?".into(), |n| format!("{:.1}", n / 1e6)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!("{t}\n");
    for n in notes {
        out += &n;
        out.push('\n');
    }
    out += &format!(
        "baseline: {} run(s) ({}); current: {} run(s) ({}); reference step, ms: baseline {}, current {}\n",
        baseline.runs.len(),
        baseline.path.display(),
        current.runs.len(),
        current.path.display(),
        refs(baseline),
        refs(current)
    );
    out += if baseline.runs.len() >= AB_MIN_RUNS && current.runs.len() >= AB_MIN_RUNS {
        "timing: A/B, median [min–max] of the runs; a regression needs every current run worse than every baseline run by more than the floor"
    } else {
        "timing: one run a side, divided by each run's reference step; only indicative unless both ran on the same machine, and only A/B runs (several a side, interleaved) are a fair gate"
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Summary {
        let text = include_str!("../tests/fixtures/results/summary.json");
        serde_json::from_str(text).unwrap()
    }

    fn side(runs: Vec<Summary>) -> Side {
        Side {
            path: PathBuf::from("test"),
            runs,
        }
    }

    fn verdicts(b: &[Summary], c: &[Summary]) -> Vec<(String, &'static str, Verdict)> {
        compare(
            &side(b.to_vec()),
            &side(c.to_vec()),
            &[
                Group::Delivery,
                Group::Bytes,
                Group::Latency,
                Group::Cpu,
                Group::Throughput,
            ],
            Thresholds::default(),
        )
        .unwrap()
        .into_iter()
        .map(|c| (c.transport, c.figure, c.verdict))
        .collect()
    }

    fn with(
        v: &[(String, &'static str, Verdict)],
        verdict: Verdict,
    ) -> Vec<(String, &'static str)> {
        v.iter()
            .filter(|x| x.2 == verdict)
            .map(|x| (x.0.clone(), x.1))
            .collect()
    }

    fn regressions(b: &[Summary], c: &[Summary]) -> Vec<(String, &'static str)> {
        with(&verdicts(b, c), Verdict::Regression)
    }

    /// `n` runs of the fixture, each timing figure scaled by `scale` and
    /// wobbled by a few percent, as runs of the same build are.
    fn runs(n: usize, scale: f64, wobble: &[f64]) -> Vec<Summary> {
        (0..n)
            .map(|i| {
                let mut s = fixture();
                let w = scale * wobble[i % wobble.len()];
                for t in &mut s.transports {
                    t.latency_us.p50 = (t.latency_us.p50 as f64 * w) as u64;
                    t.latency_us.p99 = (t.latency_us.p99 as f64 * w) as u64;
                    t.cost.server_cpu_us_per_event = t.cost.server_cpu_us_per_event.map(|v| v * w);
                    t.cost.generator_cpu_us_per_event =
                        t.cost.generator_cpu_us_per_event.map(|v| v * w);
                    t.throughput.delivered_per_s /= w;
                }
                s
            })
            .collect()
    }

    #[test]
    fn exact_mann_whitney_p_values() {
        // Complete separation of 3 and 3: 1 split in C(6,3) = 20.
        assert!((mann_whitney_greater(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]) - 0.05).abs() < 1e-12);
        // Of 4 and 4: 1 in 70.
        let p = mann_whitney_greater(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]);
        assert!((p - 1.0 / 70.0).abs() < 1e-12);
        // Many runs: the normal approximation, still tiny for separation and
        // near one half for interleaved sides.
        let a: Vec<f64> = (0..15).map(f64::from).collect();
        let b: Vec<f64> = (15..30).map(f64::from).collect();
        assert!(mann_whitney_greater(&a, &b) < 1e-4);
        let even: Vec<f64> = (0..15).map(|i| f64::from(2 * i)).collect();
        let odd: Vec<f64> = (0..15).map(|i| f64::from(2 * i + 1)).collect();
        let p = mann_whitney_greater(&even, &odd);
        assert!(p > 0.3 && p < 0.7, "{p}");
        // The other way round is as unlikely as it gets.
        assert_eq!(
            mann_whitney_greater(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]),
            1.0
        );
        // Identical values: no evidence.
        assert_eq!(mann_whitney_greater(&[1.0; 3], &[1.0; 3]), 1.0);
    }

    #[test]
    fn identical_builds_pass_ab_even_interleaved_with_noise() {
        let wobble = [1.0, 1.08, 0.95, 1.03];
        let a = runs(3, 1.0, &wobble);
        let b = runs(3, 1.0, &[1.03, 0.97, 1.06]);
        let v = verdicts(&a, &b);
        assert!(!v.is_empty());
        assert!(with(&v, Verdict::Regression).is_empty(), "{v:?}");
    }

    #[test]
    fn a_slower_machine_does_not_matter_to_ab_since_both_sides_ran_on_it() {
        // Everything three times slower on both sides: nothing changes.
        let a = runs(3, 3.0, &[1.0, 1.1, 0.9]);
        let b = runs(3, 3.0, &[1.05, 0.95, 1.02]);
        assert!(regressions(&a, &b).is_empty());
    }

    #[test]
    fn fifty_percent_more_cpu_or_a_doubled_p99_fails_ab() {
        let a = runs(3, 1.0, &[1.0, 1.05, 0.96]);
        let mut b = runs(3, 1.0, &[1.02, 0.98, 1.04]);
        for s in &mut b {
            let t = &mut s.transports[0];
            t.cost.generator_cpu_us_per_event = t.cost.generator_cpu_us_per_event.map(|v| v * 1.5);
            t.latency_us.p99 *= 2;
        }
        assert_eq!(
            regressions(&a, &b),
            vec![
                ("websocket".to_string(), "latency p99"),
                ("websocket".to_string(), "generator CPU / event"),
            ]
        );
    }

    #[test]
    fn a_change_inside_the_spread_of_the_runs_is_not_a_regression() {
        // Runs of one build spread by 30%: +25% is inside that noise.
        let a = runs(3, 1.0, &[0.85, 1.0, 1.15]);
        let b = runs(3, 1.25, &[0.96, 1.0, 1.04]);
        let v = verdicts(&a, &b);
        assert!(with(&v, Verdict::Regression).is_empty(), "{v:?}");
    }

    #[test]
    fn a_wider_current_side_whose_best_run_is_near_the_baseline_is_not_a_regression() {
        // Identical code pinned to one core: medians +51%, separated, but
        // the best current run only 9% above the worst baseline run.
        let mut a = runs(3, 1.0, &[1.0]);
        let mut b = runs(3, 1.0, &[1.0]);
        for (s, p99) in a.iter_mut().zip([654, 756, 737]) {
            s.transports[0].latency_us.p99 = p99;
        }
        for (s, p99) in b.iter_mut().zip([823, 1278, 1110]) {
            s.transports[0].latency_us.p99 = p99;
        }
        let v = verdicts(&a, &b);
        assert!(with(&v, Verdict::Regression).is_empty(), "{v:?}");
    }

    #[test]
    fn lower_throughput_is_a_regression_and_higher_an_improvement() {
        let a = runs(3, 1.0, &[1.0, 1.02, 0.98]);
        let mut b = runs(3, 1.0, &[1.01, 0.99, 1.0]);
        for s in &mut b {
            s.transports[0].throughput.delivered_per_s *= 0.6;
            s.transports[1].throughput.delivered_per_s *= 1.6;
        }
        let v = verdicts(&a, &b);
        assert!(
            with(&v, Verdict::Regression).contains(&("websocket".into(), "delivered events/s"))
        );
        assert!(
            with(&v, Verdict::Improved).contains(&("long_polling".into(), "delivered events/s"))
        );
    }

    #[test]
    fn latency_on_a_cpu_bound_machine_is_not_comparable_never_a_verdict() {
        let a = runs(3, 1.0, &[1.0]);
        let mut b = runs(3, 3.0, &[1.0, 1.01, 0.99]);
        b[1].transports[0].machine = Some(crate::report::summary::MachineFigures {
            samples: 5,
            busy_pct_max: 95.0,
            busy_pct_mean: 90.0,
            steal_pct_max: 0.0,
            busy_and_steal_pct_max: 95.0,
            iowait_pct_max: 0.0,
            run_queue_max: 4,
            generator_wait_ms_max: None,
        });
        let v = verdicts(&a, &b);
        let nc = with(&v, Verdict::NotComparable);
        assert!(nc.contains(&("websocket".into(), "latency p50")), "{v:?}");
        assert!(nc.contains(&("websocket".into(), "latency p99")), "{v:?}");
        // CPU per event is still judged: three times the CPU fails.
        assert!(
            with(&v, Verdict::Regression).contains(&("websocket".into(), "server CPU / event"))
        );
    }

    #[test]
    fn too_few_runs_for_ab_is_not_comparable_but_deterministic_figures_still_count() {
        let a = runs(2, 1.0, &[1.0]);
        let mut b = runs(2, 1.0, &[1.0]);
        b[0].transports[0].delivery.lost = Some(1);
        let v = verdicts(&a, &b);
        assert_eq!(
            with(&v, Verdict::Regression),
            vec![("websocket".to_string(), "lost events")]
        );
        assert!(with(&v, Verdict::NotComparable).contains(&("websocket".into(), "latency p50")));
    }

    #[test]
    fn single_runs_identical_pass() {
        let s = fixture();
        let v = verdicts(std::slice::from_ref(&s), std::slice::from_ref(&s));
        assert!(v.iter().all(|v| v.2 == Verdict::Pass), "{v:?}");
    }

    #[test]
    fn a_20_percent_rise_in_bytes_per_event_fails() {
        let b = fixture();
        let mut c = b.clone();
        let t = &mut c.transports[1].cost;
        t.bytes_down_per_event = t.bytes_down_per_event.map(|v| v * 1.2);
        assert_eq!(
            regressions(&[b], &[c]),
            vec![("long_polling".to_string(), "bytes down / event")]
        );
    }

    #[test]
    fn single_runs_same_machine_hold_timing_to_the_noise_threshold() {
        let b = fixture();
        let mut c = b.clone();
        c.transports[0].latency_us.p99 = (b.transports[0].latency_us.p99 as f64 * 1.45) as u64;
        assert!(regressions(std::slice::from_ref(&b), std::slice::from_ref(&c)).is_empty());
        c.transports[0].latency_us.p50 = (b.transports[0].latency_us.p50 as f64 * 1.45) as u64;
        assert_eq!(
            regressions(&[b], &[c]),
            vec![("websocket".to_string(), "latency p50")]
        );
    }

    #[test]
    fn a_calibrated_change_is_shown_beside_the_measured_one() {
        // Lower as measured, higher per unit of the machine's speed.
        let b = fixture();
        let mut c = b.clone();
        let step = b.environment.reference_step_ns.unwrap();
        c.environment.reference_step_ns = Some(step * 7 / 10);
        c.transports[0].latency_us.p50 = b.transports[0].latency_us.p50 * 9 / 10;
        let (bs, cs) = (side(vec![b]), side(vec![c]));
        let checks = compare(&bs, &cs, &[Group::Latency], Thresholds::default()).unwrap();
        let p50 = checks.iter().find(|c| c.figure == "latency p50").unwrap();
        assert!(p50.change_pct.unwrap() < -9.0, "{p50:?}");
        assert!(p50.calibrated_pct.unwrap() > 25.0, "{p50:?}");
        let table = render(&checks, &bs, &cs, Style::Plain);
        let row = table.lines().find(|l| l.contains("latency p50")).unwrap();
        assert!(row.contains("-10.3%, calibrated +28.2%"), "{row}");
    }

    #[test]
    fn single_runs_from_different_machines_are_indicative_only() {
        let b = fixture();
        let mut c = b.clone();
        c.environment.cpu_model = "another CPU".into();
        c.transports[0].latency_us.p50 *= 3;
        let v = verdicts(std::slice::from_ref(&b), std::slice::from_ref(&c));
        assert!(with(&v, Verdict::Regression).is_empty(), "{v:?}");
        assert!(with(&v, Verdict::NotComparable).contains(&("websocket".into(), "latency p50")));
        // Deterministic figures still fail across machines.
        c.transports[0].delivery.duplicated = 2;
        assert_eq!(
            regressions(&[b], &[c]),
            vec![("websocket".to_string(), "duplicated events")]
        );
    }

    #[test]
    fn summaries_that_cannot_be_compared_are_bad_input() {
        let b = fixture();
        let all = [Group::Delivery];
        let go = |x: &Summary, y: &Summary| {
            compare(
                &side(vec![x.clone()]),
                &side(vec![y.clone()]),
                &all,
                Thresholds::default(),
            )
        };
        let mut other = b.clone();
        other.scenario.name = "chat".into();
        assert!(
            go(&b, &other)
                .unwrap_err()
                .to_string()
                .contains("not the same scenario")
        );
        let mut missing = b.clone();
        missing.transports.pop();
        assert!(
            go(&b, &missing)
                .unwrap_err()
                .to_string()
                .contains("no long_polling")
        );
        let mut incomplete = b.clone();
        incomplete.complete = false;
        assert!(go(&b, &incomplete).is_err());
        let mut heavier = b.clone();
        heavier.scenario.publish.rate *= 2.0;
        let e = go(&b, &heavier).unwrap_err().to_string();
        assert!(
            e.contains("not the same workload") && e.contains("publish.rate"),
            "{e}"
        );
        let bad = Thresholds {
            noise_pct: f64::NAN,
            ..Thresholds::default()
        };
        let e = compare(&side(vec![b.clone()]), &side(vec![b]), &all, bad).unwrap_err();
        assert!(e.to_string().contains("--noise"), "{e}");
    }
}
