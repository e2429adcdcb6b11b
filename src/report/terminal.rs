//! The side-by-side comparison printed at the end of a run.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table as Grid};

use super::summary::{Summary, TransportSummary};
use super::{Reporter, Results};

pub struct Table;

impl Reporter for Table {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()> {
        println!("{}", render_table(results.summary));
        for t in &results.summary.transports {
            for w in &t.warnings {
                println!("warning: {}: {w}", t.transport);
            }
            if let Some(reason) = &t.incomplete_reason {
                println!("INCOMPLETE: {}: {reason}", t.transport);
            }
        }
        println!("results: {}", results.dir.display());
        Ok(())
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}{unit}"))
}

type Row = (&'static str, fn(&TransportSummary) -> String);

const ROWS: &[Row] = &[
    ("clients subscribed", |t| {
        format!("{} / {}", t.clients.subscribed, t.clients.requested)
    }),
    ("delivered events/s", |t| {
        format!("{:.0}", t.throughput.delivered_per_s)
    }),
    ("latency p50", |t| ms(t.latency_us.p50)),
    ("latency p90", |t| ms(t.latency_us.p90)),
    ("latency p99", |t| ms(t.latency_us.p99)),
    ("latency p99.9", |t| ms(t.latency_us.p99_9)),
    ("latency p99.99", |t| ms(t.latency_us.p99_99)),
    ("latency max", |t| ms(t.latency_us.max)),
    ("latency mean", |t| {
        format!("{:.2} ms", t.latency_us.mean / 1000.0)
    }),
    ("  uncorrected p50 (from publish)", |t| {
        ms(t.latency_from_publish_us.p50)
    }),
    ("  uncorrected p99 (from publish)", |t| {
        ms(t.latency_from_publish_us.p99)
    }),
    ("expected events", |t| t.delivery.expected.to_string()),
    ("delivered", |t| t.delivery.delivered.to_string()),
    ("lost", |t| t.delivery.lost.to_string()),
    ("duplicated", |t| t.delivery.duplicated.to_string()),
    ("out of order", |t| t.delivery.out_of_order.to_string()),
    ("bytes down / event", |t| {
        opt(t.cost.bytes_down_per_event, 1, " B")
    }),
    ("bytes up / event", |t| {
        opt(t.cost.bytes_up_per_event, 1, " B")
    }),
    ("HTTP requests / event", |t| {
        opt(t.cost.requests_per_event, 3, "")
    }),
    ("connections opened", |t| {
        t.cost.connections_opened.to_string()
    }),
    ("server CPU / event", |t| {
        opt(t.cost.server_cpu_us_per_event, 2, " µs")
    }),
    ("generator CPU / event", |t| {
        opt(t.cost.generator_cpu_us_per_event, 2, " µs")
    }),
    ("server memory / connection", |t| {
        opt(
            t.processes
                .server_memory_per_connection_bytes
                .map(|b| b / 1024.0),
            1,
            " KiB",
        )
    }),
    ("server peak RSS", |t| {
        opt(
            t.processes
                .server_peak_rss_bytes
                .map(|b| b as f64 / 1048576.0),
            1,
            " MiB",
        )
    }),
    ("generator peak RSS", |t| {
        opt(
            t.processes
                .generator_peak_rss_bytes
                .map(|b| b as f64 / 1048576.0),
            1,
            " MiB",
        )
    }),
    ("connect p50", |t| ms(t.connect_us.p50)),
    ("connect p99", |t| ms(t.connect_us.p99)),
    ("connect max", |t| ms(t.connect_us.max)),
    ("client errors", |t| {
        t.errors.values().sum::<u64>().to_string()
    }),
];

/// The comparison table: one column per transport.
pub fn render_table(summary: &Summary) -> String {
    let mut grid = Grid::new();
    grid.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec![format!(
        "{} (measured {})",
        summary.scenario.name,
        humantime::format_duration(summary.scenario.phases.measure)
    )];
    header.extend(summary.transports.iter().map(|t| t.transport.to_string()));
    grid.set_header(header);
    for (label, value) in ROWS {
        let mut row = vec![label.to_string()];
        row.extend(summary.transports.iter().map(value));
        grid.add_row(row);
    }
    for (i, column) in grid.column_iter_mut().enumerate() {
        if i > 0 {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    grid.to_string()
}
