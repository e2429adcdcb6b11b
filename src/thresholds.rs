//! Pass/fail next to the workload: a scenario's `[thresholds]`, such as
//! `"websocket.latency.p99" = "< 50ms"` or `"*.lost" = "== 0"`, judged on
//! the finished run's summary. `run` exits 1 when one fails, and every
//! report lists each threshold with the value it was judged on.

use serde::{Deserialize, Serialize};

use crate::report::Summary;
use crate::report::summary::TransportSummary;
use crate::scenario::TransportKind;

/// One threshold as the scenario states it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Threshold {
    /// `TRANSPORT.FIGURE` or `*.FIGURE`, e.g. `websocket.latency.p99`.
    pub key: String,
    /// `OP VALUE[UNIT]`, e.g. `< 50ms`, `== 0`.
    pub condition: String,
}

/// Figures a threshold may name: (name, unit shown, what it reads).
const FIGURES: [(&str, &str); 13] = [
    ("latency.p50", "ms"),
    ("latency.p90", "ms"),
    ("latency.p99", "ms"),
    ("latency.p99_9", "ms"),
    ("latency.max", "ms"),
    ("connect.p99", "ms"),
    ("lost", ""),
    ("duplicated", ""),
    ("out_of_order", ""),
    ("delivered_per_s", "events/s"),
    ("bytes_per_event", "B"),
    ("server_cpu_us_per_event", "µs"),
    ("generator_cpu_us_per_event", "µs"),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// A threshold ready to judge.
#[derive(Clone, Debug, PartialEq)]
struct Parsed {
    transport: Option<TransportKind>,
    figure: &'static str,
    op: Op,
    /// In the figure's unit (ms for times).
    value: f64,
}

/// Names the figures a threshold may use, for messages.
fn figure_names() -> String {
    FIGURES.map(|(n, _)| n).join(", ")
}

impl Threshold {
    /// Checks the key and the condition; the error says what is allowed.
    pub fn check(&self) -> Result<(), String> {
        self.parse().map(|_| ())
    }

    fn parse(&self) -> Result<Parsed, String> {
        let (transport, figure) = self.key.split_once('.').ok_or_else(|| {
            format!(
                "threshold {:?}: expected TRANSPORT.FIGURE or *.FIGURE, e.g. websocket.latency.p99",
                self.key
            )
        })?;
        let transport = match transport {
            "*" => None,
            name => Some(
                TransportKind::ALL
                    .into_iter()
                    .find(|t| t.name() == name)
                    .ok_or_else(|| {
                        format!(
                            "threshold {:?}: no transport {name:?}; allowed: * or one of {}",
                            self.key,
                            TransportKind::ALL.map(|t| t.name()).join(", ")
                        )
                    })?,
            ),
        };
        let (figure, unit) = FIGURES
            .into_iter()
            .find(|(n, _)| *n == figure)
            .ok_or_else(|| {
                format!(
                    "threshold {:?}: no figure {figure:?}; allowed: {}",
                    self.key,
                    figure_names()
                )
            })?;
        let c = self.condition.trim();
        let (op, rest) = [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("<", Op::Lt), (">", Op::Gt)]
            .into_iter()
            .find_map(|(text, op)| c.strip_prefix(text).map(|rest| (op, rest.trim())))
            .ok_or_else(|| {
                format!(
                    "threshold {:?} = {:?}: expected a comparison such as \"< 50ms\" or \"== 0\" (<, <=, >, >=, ==)",
                    self.key, self.condition
                )
            })?;
        // The longest prefix that is a number; the rest is its unit.
        let (value, given_unit) = (1..=rest.len())
            .rev()
            .filter(|&k| rest.is_char_boundary(k))
            .find_map(|k| {
                let v: f64 = rest[..k].trim().parse().ok()?;
                v.is_finite().then_some((v, &rest[k..]))
            })
            .ok_or_else(|| {
                format!(
                    "threshold {:?} = {:?}: {rest:?} does not start with a number",
                    self.key, self.condition
                )
            })?;
        let scale = match (unit, given_unit.trim()) {
            ("ms", "ms" | "") => 1.0,
            ("ms", "us" | "µs") => 1e-3,
            ("ms", "s") => 1e3,
            ("µs", "us") => 1.0,
            (u, g) if g.is_empty() || g == u => 1.0,
            (u, g) => {
                return Err(format!(
                    "threshold {:?} = {:?}: unit {g:?} does not fit {figure} ({})",
                    self.key,
                    self.condition,
                    if u == "ms" {
                        "allowed: ms, us, s".to_owned()
                    } else if u.is_empty() {
                        "a count, no unit".to_owned()
                    } else {
                        format!("in {u}")
                    }
                ));
            }
        };
        Ok(Parsed {
            transport,
            figure,
            op,
            value: value * scale,
        })
    }
}

/// One threshold judged on one transport.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub key: String,
    pub condition: String,
    pub transport: TransportKind,
    /// The figure, in its unit; None when it could not be known.
    pub value: Option<f64>,
    pub unit: &'static str,
    pub passed: bool,
}

impl Verdict {
    pub fn line(&self) -> String {
        let value = match self.value {
            Some(v) => format!("{} {}", trim_number(v), self.unit)
                .trim_end()
                .to_owned(),
            None => "unknown".into(),
        };
        let (word, why) = if self.passed {
            ("passed", "")
        } else if self.value.is_none() {
            ("FAILED", " (a figure that cannot be known cannot pass)")
        } else {
            ("FAILED", "")
        };
        format!(
            "threshold {word}: {}: {} {} (was {value}){why}",
            self.transport, self.key, self.condition
        )
    }
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The figure a threshold names, read from a transport's summary.
fn read(t: &TransportSummary, figure: &str) -> Option<f64> {
    let ms = |us: u64, count: u64| (count > 0).then_some(us as f64 / 1000.0);
    let l = &t.latency_us;
    match figure {
        "latency.p50" => ms(l.p50, l.count),
        "latency.p90" => ms(l.p90, l.count),
        "latency.p99" => ms(l.p99, l.count),
        "latency.p99_9" => ms(l.p99_9, l.count),
        "latency.max" => ms(l.max, l.count),
        "connect.p99" => ms(t.connect_us.p99, t.connect_us.count),
        "lost" => t.delivery.lost.map(|v| v as f64),
        "duplicated" => Some(t.delivery.duplicated as f64),
        "out_of_order" => Some(t.delivery.out_of_order as f64),
        // No measured window: the rate is unknown, not 0.
        "delivered_per_s" => (t.throughput.window_s > 0.0).then_some(t.throughput.delivered_per_s),
        "bytes_per_event" => t.cost.bytes_down_per_event,
        "server_cpu_us_per_event" => t.cost.server_cpu_us_per_event,
        "generator_cpu_us_per_event" => t.cost.generator_cpu_us_per_event,
        _ => None,
    }
}

/// Every threshold of the run's scenario, judged on every transport it
/// names (`*`: each transport that ran).
pub fn judge(summary: &Summary) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for threshold in &summary.scenario.thresholds {
        let Ok(p) = threshold.parse() else { continue };
        let unit = FIGURES
            .iter()
            .find(|(n, _)| *n == p.figure)
            .map_or("", |(_, u)| u);
        for t in &summary.transports {
            if p.transport.is_some_and(|k| k != t.transport) {
                continue;
            }
            let value = read(t, p.figure);
            let passed = value.is_some_and(|v| match p.op {
                Op::Lt => v < p.value,
                Op::Le => v <= p.value,
                Op::Gt => v > p.value,
                Op::Ge => v >= p.value,
                Op::Eq => v == p.value,
            });
            verdicts.push(Verdict {
                key: threshold.key.clone(),
                condition: threshold.condition.clone(),
                transport: t.transport,
                value,
                unit,
                passed,
            });
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(key: &str, condition: &str) -> Threshold {
        Threshold {
            key: key.into(),
            condition: condition.into(),
        }
    }

    #[test]
    fn conditions_parse_with_units() {
        let p = t("websocket.latency.p99", "< 50ms").parse().unwrap();
        assert_eq!(p.transport, Some(TransportKind::Websocket));
        assert_eq!((p.op, p.value), (Op::Lt, 50.0));
        assert_eq!(t("*.latency.p50", "<= 1.5s").parse().unwrap().value, 1500.0);
        assert_eq!(t("*.latency.p50", "<= 250us").parse().unwrap().value, 0.25);
        assert_eq!(t("*.latency.p99", "< 5e-1ms").parse().unwrap().value, 0.5);
        assert_eq!(
            t("*.delivered_per_s", "> 100events/s")
                .parse()
                .unwrap()
                .value,
            100.0
        );
        assert_eq!(
            t("*.server_cpu_us_per_event", "< 12us")
                .parse()
                .unwrap()
                .value,
            12.0
        );
        let p = t("*.lost", "== 0").parse().unwrap();
        assert_eq!((p.transport, p.op, p.value), (None, Op::Eq, 0.0));
    }

    #[test]
    fn bad_thresholds_say_what_is_allowed() {
        for (key, condition, expect) in [
            ("websocket", "< 1", "TRANSPORT.FIGURE"),
            (
                "carrier_pigeon.lost",
                "== 0",
                "allowed: * or one of websocket",
            ),
            ("*.latency.p98", "< 1", "allowed: latency.p50"),
            ("*.lost", "about 0", "expected a comparison"),
            ("*.lost", "< many", "does not start with a number"),
            ("*.lost", "< 5ms", "a count, no unit"),
            ("*.latency.p99", "< 5kg", "allowed: ms, us, s"),
        ] {
            let e = t(key, condition).check().unwrap_err();
            assert!(e.contains(expect), "{key} {condition}: {e}");
        }
    }
}
