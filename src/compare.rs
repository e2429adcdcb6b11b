//! `pushbench compare BASELINE CURRENT`: the performance regression gate.
//!
//! Two kinds of figure, judged differently:
//! - deterministic ones (bytes and requests per event, delivery counts)
//!   depend on the code, not on the machine: they are held tightly;
//! - timing ones (latency, CPU per event) depend on the machine too: each
//!   is divided by its own run's reference step (a fixed CPU-bound task
//!   timed on the same machine, see `calibrate`) and fails only past a
//!   noise threshold, so a slower CI runner does not fail the gate. Tail
//!   latency (p99) gets a wider one: on a 2-core machine shared by server
//!   and generator, runs of identical code moved it by up to 43%, where
//!   medians and CPU per event moved by up to 22%.

use std::fmt;
use std::path::Path;

use anyhow::bail;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};

use crate::report::saved;
use crate::report::summary::{Summary, TransportSummary};

/// How much worse a figure may get before the gate fails, in percent.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Deterministic figures (bytes, requests per event).
    pub tight_pct: f64,
    /// Timing figures, after dividing by the reference step.
    pub noise_pct: f64,
    /// Tail latency (p99), after dividing by the reference step.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Better than the baseline by more than the threshold: still a pass,
    /// but the baseline may deserve an update.
    Improved,
    Regression,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "ok",
            Verdict::Improved => "improved",
            Verdict::Regression => "REGRESSION",
        })
    }
}

/// One compared figure.
#[derive(Clone, Debug)]
pub struct Check {
    pub transport: String,
    pub figure: &'static str,
    pub baseline: f64,
    pub current: f64,
    /// Relative change, in percent; for timing figures, after calibration.
    pub change_pct: Option<f64>,
    /// What was allowed, in words.
    pub limit: String,
    pub verdict: Verdict,
}

#[derive(Clone, Copy)]
enum Rule {
    /// Lower is better; fails past `tight_pct`, with an absolute slack
    /// for figures near zero (e.g. pong bytes on an idle WebSocket).
    Tight { slack: f64 },
    /// Counts that must not exceed the baseline at all.
    NoMoreThan,
    /// Timing, lower is better, divided by the reference step.
    Timing,
    /// Tail latency: timing with the wider `tail_noise_pct`.
    TailTiming,
}

type Figure = (&'static str, Rule, fn(&TransportSummary) -> Option<f64>);

const FIGURES: &[Figure] = &[
    ("bytes down / event", Rule::Tight { slack: 1.0 }, |t| {
        t.cost.bytes_down_per_event
    }),
    ("bytes up / event", Rule::Tight { slack: 1.0 }, |t| {
        t.cost.bytes_up_per_event
    }),
    ("HTTP requests / event", Rule::Tight { slack: 0.01 }, |t| {
        t.cost.requests_per_event
    }),
    ("lost events", Rule::NoMoreThan, |t| {
        Some(t.delivery.lost as f64)
    }),
    ("duplicated events", Rule::NoMoreThan, |t| {
        Some(t.delivery.duplicated as f64)
    }),
    ("out-of-order events", Rule::NoMoreThan, |t| {
        Some(t.delivery.out_of_order as f64)
    }),
    ("latency p50 (calibrated)", Rule::Timing, |t| {
        Some(t.latency_us.p50 as f64)
    }),
    ("latency p99 (calibrated)", Rule::TailTiming, |t| {
        Some(t.latency_us.p99 as f64)
    }),
    ("server CPU / event (calibrated)", Rule::Timing, |t| {
        t.cost.server_cpu_us_per_event
    }),
    ("generator CPU / event (calibrated)", Rule::Timing, |t| {
        t.cost.generator_cpu_us_per_event
    }),
];

/// Reads the summary at `path` (a summary.json or a results directory).
pub fn load(path: &Path) -> anyhow::Result<Summary> {
    saved::load_summary(&saved::summary_path(path))
}

fn reference(s: &Summary, which: &str) -> anyhow::Result<f64> {
    match s.environment.reference_step_ns {
        Some(ns) if ns > 0 => Ok(ns as f64),
        _ => bail!(
            "the {which} summary has no reference step (environment.reference_step_ns); re-run it with this pushbench"
        ),
    }
}

/// Compares every figure of every transport. Errors (exit 2) when the two
/// summaries are not comparable.
pub fn compare(
    baseline: &Summary,
    current: &Summary,
    th: Thresholds,
) -> anyhow::Result<Vec<Check>> {
    if baseline.scenario.name != current.scenario.name {
        bail!(
            "not the same scenario: baseline ran {:?}, current ran {:?}",
            baseline.scenario.name,
            current.scenario.name
        );
    }
    if !current.complete {
        bail!(
            "the current run is incomplete ({}); nothing to gate on",
            current.incomplete_reason.as_deref().unwrap_or("?")
        );
    }
    let (ref_base, ref_cur) = (
        reference(baseline, "baseline")?,
        reference(current, "current")?,
    );
    let mut checks = Vec::new();
    for b in &baseline.transports {
        let Some(c) = current
            .transports
            .iter()
            .find(|c| c.transport == b.transport)
        else {
            bail!(
                "the current run has no {} transport; the baseline has",
                b.transport
            )
        };
        for (figure, rule, value) in FIGURES {
            let (Some(bv), Some(cv)) = (value(b), value(c)) else {
                continue;
            };
            let (bv_n, cv_n) = match rule {
                Rule::Timing | Rule::TailTiming => (bv / ref_base, cv / ref_cur),
                _ => (bv, cv),
            };
            let (verdict, limit) = match *rule {
                Rule::Tight { slack } => {
                    let allowed = (bv * th.tight_pct / 100.0).max(slack);
                    (
                        judge(bv, cv, allowed),
                        format!("±{}% (min {slack})", th.tight_pct),
                    )
                }
                Rule::NoMoreThan => {
                    let v = if cv > bv {
                        Verdict::Regression
                    } else if cv < bv {
                        Verdict::Improved
                    } else {
                        Verdict::Pass
                    };
                    (v, "no more than baseline".to_string())
                }
                Rule::Timing => (
                    judge(bv_n, cv_n, bv_n * th.noise_pct / 100.0),
                    format!("+{}% noise", th.noise_pct),
                ),
                Rule::TailTiming => (
                    judge(bv_n, cv_n, bv_n * th.tail_noise_pct / 100.0),
                    format!("+{}% tail noise", th.tail_noise_pct),
                ),
            };
            let change_pct = (bv_n != 0.0).then(|| (cv_n / bv_n - 1.0) * 100.0);
            checks.push(Check {
                transport: b.transport.to_string(),
                figure,
                baseline: bv,
                current: cv,
                change_pct,
                limit,
                verdict,
            });
        }
    }
    Ok(checks)
}

fn judge(baseline: f64, current: f64, allowed: f64) -> Verdict {
    if current > baseline + allowed {
        Verdict::Regression
    } else if current < baseline - allowed {
        Verdict::Improved
    } else {
        Verdict::Pass
    }
}

/// The verdict table.
pub fn render(checks: &[Check], baseline: &Summary, current: &Summary) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "transport",
        "figure",
        "baseline",
        "current",
        "change",
        "allowed",
        "verdict",
    ]);
    for c in checks {
        let change = match c.change_pct {
            Some(pct) => format!("{pct:+.1}%"),
            None if c.current == 0.0 => "0".into(),
            None => "new".into(),
        };
        t.add_row([
            c.transport.clone(),
            c.figure.to_string(),
            format!("{:.3}", c.baseline),
            format!("{:.3}", c.current),
            change,
            c.limit.clone(),
            c.verdict.to_string(),
        ]);
    }
    for i in 2..=4 {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let (rb, rc) = (
        baseline.environment.reference_step_ns.unwrap_or(0),
        current.environment.reference_step_ns.unwrap_or(0),
    );
    format!(
        "{t}\nreference step: baseline {:.1} ms, current {:.1} ms (timing figures are compared after dividing by it)",
        rb as f64 / 1e6,
        rc as f64 / 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Summary {
        let text = include_str!("../tests/fixtures/results/summary.json");
        serde_json::from_str(text).unwrap()
    }

    fn verdicts(b: &Summary, c: &Summary) -> Vec<(String, &'static str, Verdict)> {
        compare(b, c, Thresholds::default())
            .unwrap()
            .into_iter()
            .map(|c| (c.transport, c.figure, c.verdict))
            .collect()
    }

    fn regressions(b: &Summary, c: &Summary) -> Vec<(String, &'static str)> {
        verdicts(b, c)
            .into_iter()
            .filter(|v| v.2 == Verdict::Regression)
            .map(|v| (v.0, v.1))
            .collect()
    }

    #[test]
    fn identical_summaries_pass() {
        let s = fixture();
        assert!(verdicts(&s, &s).iter().all(|v| v.2 == Verdict::Pass));
        assert!(!verdicts(&s, &s).is_empty());
    }

    #[test]
    fn a_20_percent_rise_in_bytes_per_event_fails() {
        let b = fixture();
        let mut c = b.clone();
        let t = &mut c.transports[1].cost;
        t.bytes_down_per_event = t.bytes_down_per_event.map(|v| v * 1.2);
        assert_eq!(
            regressions(&b, &c),
            vec![("long_polling".to_string(), "bytes down / event")]
        );
    }

    #[test]
    fn noise_inside_the_threshold_passes_and_past_it_fails() {
        let b = fixture();
        let mut c = b.clone();
        c.transports[0].latency_us.p99 = (b.transports[0].latency_us.p99 as f64 * 1.2) as u64;
        c.transports[0].cost.server_cpu_us_per_event = b.transports[0]
            .cost
            .server_cpu_us_per_event
            .map(|v| v * 0.85);
        assert!(regressions(&b, &c).is_empty());
        c.transports[0].latency_us.p99 = b.transports[0].latency_us.p99 * 2;
        assert_eq!(
            regressions(&b, &c),
            vec![("websocket".to_string(), "latency p99 (calibrated)")]
        );
    }

    #[test]
    fn tail_latency_has_the_wider_threshold_and_the_median_does_not() {
        let b = fixture();
        let mut c = b.clone();
        // +45%: inside the tail's 60%, past the median's 30%.
        c.transports[0].latency_us.p99 = (b.transports[0].latency_us.p99 as f64 * 1.45) as u64;
        assert!(regressions(&b, &c).is_empty());
        c.transports[0].latency_us.p50 = (b.transports[0].latency_us.p50 as f64 * 1.45) as u64;
        assert_eq!(
            regressions(&b, &c),
            vec![("websocket".to_string(), "latency p50 (calibrated)")]
        );
    }

    #[test]
    fn a_slower_machine_does_not_fail_the_gate() {
        let b = fixture();
        let mut c = b.clone();
        // Everything twice as slow, the reference step included.
        c.environment.reference_step_ns = b.environment.reference_step_ns.map(|n| n * 2);
        for t in &mut c.transports {
            t.latency_us.p50 *= 2;
            t.latency_us.p99 *= 2;
            t.cost.server_cpu_us_per_event = t.cost.server_cpu_us_per_event.map(|v| v * 2.0);
            t.cost.generator_cpu_us_per_event = t.cost.generator_cpu_us_per_event.map(|v| v * 2.0);
        }
        assert!(regressions(&b, &c).is_empty());
    }

    #[test]
    fn any_lost_event_fails() {
        let b = fixture();
        let mut c = b.clone();
        c.transports[0].delivery.lost = 1;
        assert_eq!(
            regressions(&b, &c),
            vec![("websocket".to_string(), "lost events")]
        );
    }

    #[test]
    fn summaries_that_cannot_be_compared_are_bad_input() {
        let b = fixture();
        let mut other = b.clone();
        other.scenario.name = "chat".into();
        assert!(
            compare(&b, &other, Thresholds::default())
                .unwrap_err()
                .to_string()
                .contains("not the same scenario")
        );
        let mut missing = b.clone();
        missing.transports.pop();
        assert!(
            compare(&b, &missing, Thresholds::default())
                .unwrap_err()
                .to_string()
                .contains("no long_polling")
        );
        let mut incomplete = b.clone();
        incomplete.complete = false;
        assert!(compare(&b, &incomplete, Thresholds::default()).is_err());
        let mut uncalibrated = b.clone();
        uncalibrated.environment.reference_step_ns = None;
        assert!(
            compare(&uncalibrated, &b, Thresholds::default())
                .unwrap_err()
                .to_string()
                .contains("reference step")
        );
    }
}
