//! The table of a run repeated N times (`run --repeat N`): every figure as
//! the median and range over the repetitions, per transport. The spread is
//! the figure's honest precision on this machine; a difference between two
//! transports inside it is not a difference.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};

use super::summary::{Summary, TransportSummary};
use crate::compare::Values;

type Figure = (
    &'static str,
    &'static str,
    fn(&TransportSummary) -> Option<f64>,
);

const FIGURES: &[Figure] = &[
    ("delivered events/s", "/s", |t| {
        (t.throughput.window_s > 0.0).then_some(t.throughput.delivered_per_s)
    }),
    ("latency p50", "ms", |t| {
        (t.latency_us.count > 0).then(|| t.latency_us.p50 as f64 / 1000.0)
    }),
    ("latency p99", "ms", |t| {
        (t.latency_us.count > 0).then(|| t.latency_us.p99 as f64 / 1000.0)
    }),
    ("latency p99.9", "ms", |t| {
        (t.latency_us.count > 0).then(|| t.latency_us.p99_9 as f64 / 1000.0)
    }),
    ("lost", "events", |t| t.delivery.lost.map(|v| v as f64)),
    ("bytes down / event", "B", |t| t.cost.bytes_down_per_event),
    ("bytes up / event", "B", |t| t.cost.bytes_up_per_event),
    ("HTTP requests / event", "", |t| t.cost.requests_per_event),
    ("server CPU / event", "µs", |t| {
        t.cost.server_cpu_us_per_event
    }),
    ("generator CPU / event", "µs", |t| {
        t.cost.generator_cpu_us_per_event
    }),
    ("server peak RSS", "MiB", |t| {
        t.processes
            .server_peak_rss_bytes
            .map(|b| b as f64 / 1048576.0)
    }),
    ("generator peak RSS", "MiB", |t| {
        t.processes
            .generator_peak_rss_bytes
            .map(|b| b as f64 / 1048576.0)
    }),
    ("machine busy, worst second", "%", |t| {
        t.machine.as_ref().map(|m| m.busy_and_steal_pct_max)
    }),
];

/// Median [min–max] n=runs of every figure, transports as columns.
pub fn render(runs: &[Summary]) -> String {
    let Some(first) = runs.first() else {
        return String::new();
    };
    let kinds: Vec<_> = first.transports.iter().map(|t| t.transport).collect();
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN);
    let mut header = vec![format!(
        "{} ({} repetitions)",
        first.scenario.name,
        runs.len()
    )];
    header.extend(kinds.iter().map(|k| k.to_string()));
    table.set_header(header);
    for (name, unit, value) in FIGURES {
        let mut row = vec![name.to_string()];
        for kind in &kinds {
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|s| s.transports.iter().find(|t| t.transport == *kind))
                .filter_map(value)
                .collect();
            row.push(Values(values).show(unit));
        }
        table.add_row(row);
    }
    for i in 1..=kinds.len() {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!(
        "{table}\nEach cell: median [min–max] n=repetitions with the figure; every repetition ran the transports interleaved, each in fresh generator and server processes."
    )
}
