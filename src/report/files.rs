//! The files of a results directory.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use super::summary::interval_log_name;
use super::{Reporter, Results};
use crate::runner::TransportRun;

pub struct SummaryJson;

impl Reporter for SummaryJson {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()> {
        let path = results.dir.join("summary.json");
        let json = serde_json::to_string_pretty(results.summary)?;
        std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// One HdrHistogram V2 interval log per transport: latency from intended
/// publish time, one histogram per second of the run, values in µs.
pub struct IntervalLogs;

impl Reporter for IntervalLogs {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()> {
        for run in results.runs {
            let path = results.dir.join(interval_log_name(run.kind));
            let mut out = Vec::new();
            let mut serializer = V2DeflateSerializer::new();
            let mut writer = IntervalLogWriterBuilder::new()
                .add_comment(&format!("pushbench {} latency (receive - intended publish time)", run.kind))
                .add_comment("values in microseconds; with HistogramLogProcessor use -outputValueUnitRatio 1000 for ms")
                .with_start_time(run.started_at)
                .with_base_time(run.started_at)
                .with_max_value_divisor(1000.0)
                .begin_log_with(&mut out, &mut serializer)
                .map_err(|e| anyhow::anyhow!("interval log header: {e}"))?;
            for i in &run.intervals {
                writer
                    .write_histogram(
                        &i.latency,
                        Duration::from_secs(i.index),
                        Duration::from_secs(1),
                        None,
                    )
                    .map_err(|e| anyhow::anyhow!("interval log entry: {e:?}"))?;
            }
            std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
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

/// timeline.csv: one row per transport and second.
pub struct TimelineCsv;

impl Reporter for TimelineCsv {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()> {
        let mut csv = String::from(
            "transport,second,phase,connected,delivered,latency_p50_us,latency_p99_us,latency_max_us,bytes_down,bytes_up,requests,errors\n",
        );
        for run in results.runs {
            for i in &run.intervals {
                let h = &i.latency;
                let (p50, p99, max) = if h.is_empty() {
                    (String::new(), String::new(), String::new())
                } else {
                    (
                        h.value_at_quantile(0.5).to_string(),
                        h.value_at_quantile(0.99).to_string(),
                        h.max().to_string(),
                    )
                };
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{p50},{p99},{max},{},{},{},{}",
                    run.kind,
                    i.index,
                    phase_of(run, i.index),
                    i.connected,
                    i.delivered,
                    i.counters.bytes_down,
                    i.counters.bytes_up,
                    i.counters.requests,
                    i.errors
                );
            }
        }
        let path = results.dir.join("timeline.csv");
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        f.write_all(csv.as_bytes())?;
        Ok(())
    }
}
