//! The data files of a results directory, written after a run and read
//! back by `pushbench report`: everything the charts and reports need.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use super::summary::interval_log_name;
use super::{Reporter, Results};
use crate::runner::TransportRun;
use crate::scenario::TransportKind;

pub const SUMMARY: &str = "summary.json";
pub const TIMELINE: &str = "timeline.csv";
pub const HISTOGRAMS: &str = "histograms.hlog";

pub struct SummaryJson;

impl Reporter for SummaryJson {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()> {
        let path = results.dir.join(SUMMARY);
        let json = serde_json::to_string_pretty(results.summary)?;
        std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// Writes a V2 interval log whose times count from `start`: each entry is
/// (start offset, length, tag, histogram).
pub(super) fn write_log(
    path: &Path,
    comments: &[&str],
    start: std::time::SystemTime,
    entries: &[(Duration, Duration, Option<&str>, &Histogram<u64>)],
) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    for c in comments {
        builder.add_comment(c);
    }
    let mut writer = builder
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(|e| anyhow::anyhow!("{}: log header: {e}", path.display()))?;
    for (start, length, tag, h) in entries {
        let tag = tag.map(|t| Tag::new(t).expect("tags have no commas or spaces"));
        writer
            .write_histogram(*h, *start, *length, tag)
            .map_err(|e| anyhow::anyhow!("{}: log entry: {e:?}", path.display()))?;
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Each transport's generated proxy configuration, as it ran.
pub struct ProxyConfigs;

impl Reporter for ProxyConfigs {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()> {
        for run in results.runs {
            if let Some(p) = &run.proxy {
                let path = results
                    .dir
                    .join(super::summary::proxy_config_name(run.kind, &p.kind));
                std::fs::write(&path, &p.config)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// One HdrHistogram V2 interval log per transport: latency from intended
/// publish time, one histogram per second of the run, values in µs.
pub struct IntervalLogs;

impl Reporter for IntervalLogs {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()> {
        for run in results.runs {
            let entries: Vec<_> = run
                .intervals
                .iter()
                .map(|i| {
                    (
                        Duration::from_secs(i.index),
                        Duration::from_secs(1),
                        None,
                        &i.latency,
                    )
                })
                .collect();
            write_log(
                &results.dir.join(interval_log_name(run.kind)),
                &[
                    &format!(
                        "pushbench {} latency (receive - intended publish time), per second received",
                        run.kind
                    ),
                    "values in microseconds; with HistogramLogProcessor use -outputValueUnitRatio 1000 for ms",
                ],
                run.started_at,
                &entries,
            )?;
        }
        Ok(())
    }
}

/// The measured-window histograms behind every percentile in summary.json.
#[derive(Clone, Debug)]
pub struct WindowHistograms {
    pub latency: Histogram<u64>,
    pub latency_from_publish: Histogram<u64>,
    pub connect: Histogram<u64>,
    /// Echo round trips, when the scenario has `[echo]`.
    pub echo: Option<Histogram<u64>>,
}

const KINDS: [&str; 4] = ["latency", "latency_from_publish", "connect", "echo"];

/// histograms.hlog: per transport, the histograms summary.json's
/// percentiles come from, tagged `<transport>.<figure>`, in one standard
/// V2 log, so any percentile can be recomputed or runs merged later.
pub struct WindowHistogramLog;

impl Reporter for WindowHistogramLog {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()> {
        let Some(first) = results.runs.first() else {
            return Ok(());
        };
        let tags: Vec<Vec<String>> = results
            .runs
            .iter()
            .map(|r| KINDS.iter().map(|k| format!("{}.{k}", r.kind)).collect())
            .collect();
        let mut entries = Vec::new();
        for (run, tags) in results.runs.iter().zip(&tags) {
            // Every entry is stamped with its own transport's times, on the
            // log's base time (the first transport's start).
            let offset = run
                .started_at
                .duration_since(first.started_at)
                .unwrap_or_default();
            let p = &run.phases;
            let since_base = |ns: Option<u64>| {
                offset + Duration::from_nanos(ns.unwrap_or(p.base_ns).saturating_sub(p.base_ns))
            };
            let measured = (
                since_base(p.measure_start_ns),
                since_base(p.measure_end_ns).saturating_sub(since_base(p.measure_start_ns)),
            );
            // Connections are timed over the whole run, reconnects included.
            let end = p.drain_end_ns.or(p.measure_end_ns).or(p.connected_ns);
            let whole = (offset, since_base(end).saturating_sub(offset));
            let r = &run.report;
            let echo = results.summary.scenario.echo.is_some();
            for ((tag, h), (start, length)) in tags
                .iter()
                .zip([
                    &r.latency,
                    &r.latency_published,
                    &r.connect,
                    &r.echo_latency,
                ])
                .zip([measured, measured, whole, measured])
                .take(if echo { 4 } else { 3 })
            {
                entries.push((start, length, Some(tag.as_str()), h));
            }
        }
        write_log(
            &results.dir.join(HISTOGRAMS),
            &[
                "pushbench measured-window histograms, tagged <transport>.<figure>; values in microseconds",
            ],
            first.started_at,
            &entries,
        )
    }
}

/// Reads histograms.hlog back.
pub fn read_window_histograms(
    path: &Path,
) -> anyhow::Result<BTreeMap<TransportKind, WindowHistograms>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut found: BTreeMap<(TransportKind, usize), Histogram<u64>> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry = entry
            .map_err(|e| anyhow::anyhow!("{}: not an HdrHistogram log: {e:?}", path.display()))?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let Some(tag) = interval.tag() else { continue };
        let Some((transport, kind)) = tag.as_str().split_once('.') else {
            continue;
        };
        let Some(transport) = TransportKind::ALL
            .into_iter()
            .find(|t| t.name() == transport)
        else {
            continue;
        };
        let Some(k) = KINDS.iter().position(|x| *x == kind) else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .with_context(|| format!("{}: histogram {tag:?} is not base64", path.display()))?;
        let h: Histogram<u64> = deserializer
            .deserialize(&mut raw.as_slice())
            .map_err(|e| anyhow::anyhow!("{}: histogram {tag:?}: {e:?}", path.display()))?;
        found.insert((transport, k), h);
    }
    let mut out = BTreeMap::new();
    for t in TransportKind::ALL {
        if let (Some(latency), Some(latency_from_publish), Some(connect)) = (
            found.remove(&(t, 0)),
            found.remove(&(t, 1)),
            found.remove(&(t, 2)),
        ) {
            out.insert(
                t,
                WindowHistograms {
                    latency,
                    latency_from_publish,
                    connect,
                    echo: found.remove(&(t, 3)),
                },
            );
        }
    }
    Ok(out)
}

/// One row of timeline.csv: one transport, one second.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TimelineRow {
    pub transport: TransportKind,
    /// Seconds since the transport's run began (its server was up).
    pub second: u64,
    /// connect, warmup, measure or drain.
    pub phase: String,
    pub connected: u64,
    pub delivered: u64,
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
    pub latency_max_us: Option<u64>,
    pub bytes_down: u64,
    pub bytes_up: u64,
    pub requests: u64,
    pub errors: u64,
    /// The whole machine in this second (see `machine`), when sampled.
    #[serde(default)]
    pub machine_busy_pct: Option<f64>,
    #[serde(default)]
    pub machine_steal_pct: Option<f64>,
    #[serde(default)]
    pub machine_iowait_pct: Option<f64>,
    #[serde(default)]
    pub run_queue: Option<u32>,
    #[serde(default)]
    pub generator_wait_ms: Option<f64>,
}

/// The phase a second of the run belongs to.
fn phase_of(run: &TransportRun, index: u64) -> &'static str {
    let p = &run.phases;
    let t = p.base_ns + index * 1_000_000_000;
    let before = |edge: Option<u64>| edge.is_none_or(|e| t < e);
    if before(p.publish_start_ns) {
        "connect"
    } else if before(p.measure_start_ns) {
        "warmup"
    } else if before(p.measure_end_ns) {
        "measure"
    } else {
        "drain"
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// timeline.csv: one row per transport and second.
pub struct TimelineCsv;

impl Reporter for TimelineCsv {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()> {
        let path = results.dir.join(TIMELINE);
        let mut w =
            csv::Writer::from_path(&path).with_context(|| format!("writing {}", path.display()))?;
        for run in results.runs {
            for i in &run.intervals {
                let h = &i.latency;
                let q = |v: u64| (!h.is_empty()).then_some(v);
                let m = run.machine.iter().find(|m| m.second == i.index);
                w.serialize(TimelineRow {
                    transport: run.kind,
                    second: i.index,
                    phase: phase_of(run, i.index).into(),
                    connected: i.connected,
                    delivered: i.delivered,
                    latency_p50_us: q(h.value_at_quantile(0.5)),
                    latency_p99_us: q(h.value_at_quantile(0.99)),
                    latency_max_us: q(h.max()),
                    bytes_down: i.counters.bytes_down,
                    bytes_up: i.counters.bytes_up,
                    requests: i.counters.requests,
                    errors: i.errors,
                    machine_busy_pct: m.map(|m| round1(m.busy_pct)),
                    machine_steal_pct: m.map(|m| round1(m.steal_pct)),
                    machine_iowait_pct: m.map(|m| round1(m.iowait_pct)),
                    run_queue: m.map(|m| m.run_queue),
                    generator_wait_ms: m.and_then(|m| m.generator_wait_ms).map(round1),
                })?;
            }
        }
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

pub fn read_timeline(path: &Path) -> anyhow::Result<Vec<TimelineRow>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    r.deserialize()
        .enumerate()
        .map(|(i, row)| {
            row.with_context(|| format!("{}: row {} is malformed", path.display(), i + 2))
        })
        .collect()
}
