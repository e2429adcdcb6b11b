//! The comparison rows, shared by the terminal table, report.md and
//! report.html so the three always show the same figures.

use super::summary::TransportSummary;

pub type Row = (&'static str, fn(&TransportSummary) -> String);

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}{unit}"))
}

fn mib(v: Option<u64>) -> String {
    opt(v.map(|b| b as f64 / 1048576.0), 1, " MiB")
}

pub const ROWS: &[Row] = &[
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
    ("echo round trip p50", |t| {
        t.echo_us
            .as_ref()
            .map_or_else(|| "n/a".into(), |e| ms(e.p50))
    }),
    ("echo round trip p99", |t| {
        t.echo_us
            .as_ref()
            .map_or_else(|| "n/a".into(), |e| ms(e.p99))
    }),
    ("client messages sent / failed", |t| {
        t.client_messages
            .as_ref()
            .map_or_else(|| "n/a".into(), |m| format!("{} / {}", m.sent, m.failed))
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
        mib(t.processes.server_peak_rss_bytes)
    }),
    ("generator peak RSS", |t| {
        mib(t.processes.generator_peak_rss_bytes)
    }),
    ("connect p50", |t| ms(t.connect_us.p50)),
    ("connect p99", |t| ms(t.connect_us.p99)),
    ("connect max", |t| ms(t.connect_us.max)),
    ("client errors", |t| {
        t.errors.values().sum::<u64>().to_string()
    }),
];
