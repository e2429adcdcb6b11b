//! The comparison rows, shared by the terminal table, report.md and
//! report.html so the three always show the same figures.

use super::summary::{Percentiles, TransportSummary, count_or_unknown};

pub type Row = (&'static str, fn(&TransportSummary) -> String);

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Fewer samples than this beyond a percentile (above p99, say) make it
/// the luck of a few events: such a figure is marked with [`FEW`].
pub const MIN_SAMPLES_BEYOND: f64 = 10.0;
/// Per-event figures over fewer events than this are marked with [`FEW`].
pub const MIN_EVENTS: u64 = 1000;
/// The mark of a figure from too few samples (see the notices).
pub const FEW: &str = " *";

/// A percentile of a histogram that may be empty (a transport stopped
/// before its window, say): "n/a", never 0.00 ms; marked when fewer than
/// [`MIN_SAMPLES_BEYOND`] samples lie beyond quantile `q` (the max, q = 1,
/// is what it is: never marked).
fn pct(p: &Percentiles, q: f64, f: fn(&Percentiles) -> u64) -> String {
    if p.count == 0 {
        "n/a".into()
    } else if q < 1.0 && (p.count as f64) * (1.0 - q) < MIN_SAMPLES_BEYOND {
        ms(f(p)) + FEW
    } else {
        ms(f(p))
    }
}

/// A per-event figure, marked when it comes from fewer than [`MIN_EVENTS`].
fn per_event(t: &TransportSummary, v: Option<f64>, digits: usize, unit: &str) -> String {
    let s = opt(v, digits, unit);
    if v.is_some() && t.throughput.delivered_in_window < MIN_EVENTS {
        s + FEW
    } else {
        s
    }
}

/// True when some figure of `t` carries the [`FEW`] mark.
pub fn has_few_samples(t: &TransportSummary) -> bool {
    ROWS.iter().any(|(_, f)| f(t).ends_with(FEW))
}

fn opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}{unit}"))
}

fn mib(v: Option<u64>) -> String {
    opt(v.map(|b| b as f64 / 1048576.0), 1, " MiB")
}

/// The rows for `transports`: [`ROWS`], and [`LINK_ROWS`] when any ran
/// over an emulated link.
pub fn rows(transports: &[TransportSummary]) -> Vec<Row> {
    let mut rows = ROWS.to_vec();
    if transports.iter().any(|t| t.proxy.is_some()) {
        rows.extend_from_slice(PROXY_ROWS);
    }
    if transports.iter().any(|t| t.link.is_some()) {
        rows.extend_from_slice(LINK_ROWS);
    }
    if transports.iter().any(|t| t.publisher.is_some()) {
        rows.extend_from_slice(PUBLISHER_ROWS);
    }
    rows
}

/// The generator's publisher, when it published.
pub const PUBLISHER_ROWS: &[Row] = &[
    ("published from", |t| t.publish_from.name().to_owned()),
    ("publish requests / event", |t| {
        opt(
            t.publisher
                .as_ref()
                .filter(|p| p.published > 0)
                .map(|p| p.requests as f64 / p.published as f64),
            3,
            "",
        )
    }),
    ("publish request p50", |t| {
        opt(
            t.publisher
                .as_ref()
                .and_then(|p| p.request_time_us.as_ref())
                .map(|r| r.p50 as f64 / 1000.0),
            2,
            " ms",
        )
    }),
    ("publish request p99", |t| {
        opt(
            t.publisher
                .as_ref()
                .and_then(|p| p.request_time_us.as_ref())
                .map(|r| r.p99 as f64 / 1000.0),
            2,
            " ms",
        )
    }),
    ("publisher CPU / published event", |t| {
        opt(
            t.publisher
                .as_ref()
                .and_then(|p| p.cpu_us_per_published_event),
            2,
            " µs",
        )
    }),
    ("publish failures", |t| {
        t.publisher
            .as_ref()
            .map_or_else(|| "n/a".into(), |p| p.failed.to_string())
    }),
];

/// The reverse proxy, measured like the server.
pub const PROXY_ROWS: &[Row] = &[
    ("proxy CPU / event", |t| {
        per_event(
            t,
            t.proxy.as_ref().and_then(|p| p.cpu_us_per_event),
            2,
            " µs",
        )
    }),
    ("proxy memory / connection", |t| {
        opt(
            t.proxy
                .as_ref()
                .and_then(|p| p.memory_per_connection_bytes)
                .map(|b| b / 1024.0),
            1,
            " KiB",
        )
    }),
    ("proxy peak RSS", |t| {
        mib(t.proxy.as_ref().and_then(|p| p.peak_rss_bytes))
    }),
];

fn link_ms(t: &TransportSummary, f: fn(&super::summary::LinkFigures) -> Option<f64>) -> String {
    opt(t.link.as_ref().and_then(f), 2, " ms")
}

/// What the emulated link was, measured, beside what physics predicts.
pub const LINK_ROWS: &[Row] = &[
    ("link RTT probed (median)", |t| {
        link_ms(t, |l| l.probe_rtt_median_ms)
    }),
    ("physics: latency floor (RTT/2 − jitter)", |t| {
        link_ms(t, |l| Some(l.predicted.latency_floor_ms))
    }),
    ("physics: long-poll worst (1.5 RTT)", |t| {
        link_ms(t, |l| l.predicted.long_poll_worst_ms)
    }),
    ("physics: connect floor", |t| {
        link_ms(t, |l| Some(l.predicted.connect_floor_ms))
    }),
    ("TCP segments retransmitted up / down", |t| {
        let l = t.link.as_ref();
        format!(
            "{} / {}",
            count_or_unknown(l.and_then(|l| l.retransmitted_up)),
            count_or_unknown(l.and_then(|l| l.retransmitted_down))
        )
    }),
    ("link packets dropped (loss) up / down", |t| {
        match t.link.as_ref().and_then(|l| l.stage.as_ref()) {
            Some(s) => format!("{} / {}", s.up.dropped, s.down.dropped),
            None => "n/a".into(),
        }
    }),
    ("link stage lateness p99 / max", |t| {
        match t.link.as_ref().and_then(|l| l.stage.as_ref()) {
            Some(s) => format!(
                "{} / {}",
                opt(
                    s.up.late_p99_us
                        .max(s.down.late_p99_us)
                        .map(|v| v as f64 / 1e3),
                    2,
                    " ms"
                ),
                opt(
                    s.up.late_max_us
                        .max(s.down.late_max_us)
                        .map(|v| v as f64 / 1e3),
                    2,
                    " ms"
                )
            ),
            None => "n/a".into(),
        }
    }),
    ("rate-limit queue drops up / down", |t| {
        let l = t.link.as_ref();
        let show = |v: Option<u64>, limited: bool| match (v, limited) {
            (Some(v), _) => v.to_string(),
            (None, true) => "unknown".to_owned(),
            (None, false) => "n/a".to_owned(),
        };
        format!(
            "{} / {}",
            show(
                l.and_then(|l| l.rate_limit_dropped_up),
                l.is_some_and(|l| l.configured.bandwidth_up_bps.is_some())
            ),
            show(
                l.and_then(|l| l.rate_limit_dropped_down),
                l.is_some_and(|l| l.configured.bandwidth_down_bps.is_some())
            )
        )
    }),
    ("link stage queue overflow drops", |t| {
        match t.link.as_ref().and_then(|l| l.stage.as_ref()) {
            Some(s) => count_or_unknown(s.overflow_dropped),
            None => "n/a".into(),
        }
    }),
    ("link stage CPU per event", |t| {
        per_event(
            t,
            t.link.as_ref().and_then(|l| l.stage_cpu_us_per_event),
            2,
            " µs",
        )
    }),
];

pub const ROWS: &[Row] = &[
    ("clients subscribed", |t| {
        format!("{} / {}", t.clients.subscribed, t.clients.requested)
    }),
    ("delivered events/s", |t| {
        if t.throughput.window_s > 0.0 {
            format!("{:.0}", t.throughput.delivered_per_s)
        } else {
            "n/a".into()
        }
    }),
    ("latency samples", |t| t.latency_us.count.to_string()),
    ("latency p50", |t| pct(&t.latency_us, 0.5, |p| p.p50)),
    ("latency p90", |t| pct(&t.latency_us, 0.9, |p| p.p90)),
    ("latency p99", |t| pct(&t.latency_us, 0.99, |p| p.p99)),
    ("latency p99.9", |t| pct(&t.latency_us, 0.999, |p| p.p99_9)),
    ("latency p99.99", |t| {
        pct(&t.latency_us, 0.9999, |p| p.p99_99)
    }),
    ("latency max", |t| pct(&t.latency_us, 1.0, |p| p.max)),
    ("latency mean", |t| {
        if t.latency_us.count == 0 {
            "n/a".into()
        } else {
            format!("{:.2} ms", t.latency_us.mean / 1000.0)
        }
    }),
    ("  uncorrected p50 (from publish)", |t| {
        pct(&t.latency_from_publish_us, 0.5, |p| p.p50)
    }),
    ("  uncorrected p99 (from publish)", |t| {
        pct(&t.latency_from_publish_us, 0.99, |p| p.p99)
    }),
    ("echo round trip p50", |t| {
        t.echo_us
            .as_ref()
            .map_or_else(|| "n/a".into(), |e| pct(e, 0.5, |p| p.p50))
    }),
    ("echo round trip p99", |t| {
        t.echo_us
            .as_ref()
            .map_or_else(|| "n/a".into(), |e| pct(e, 0.99, |p| p.p99))
    }),
    ("client messages sent / failed", |t| {
        t.client_messages
            .as_ref()
            .map_or_else(|| "n/a".into(), |m| format!("{} / {}", m.sent, m.failed))
    }),
    ("expected events", |t| count_or_unknown(t.delivery.expected)),
    ("delivered", |t| t.delivery.delivered.to_string()),
    ("lost", |t| count_or_unknown(t.delivery.lost)),
    ("duplicated", |t| t.delivery.duplicated.to_string()),
    ("out of order", |t| t.delivery.out_of_order.to_string()),
    ("events in window", |t| {
        t.throughput.delivered_in_window.to_string()
    }),
    ("bytes down / event", |t| {
        per_event(t, t.cost.bytes_down_per_event, 1, " B")
    }),
    ("bytes up / event", |t| {
        per_event(t, t.cost.bytes_up_per_event, 1, " B")
    }),
    ("HTTP requests / event", |t| {
        per_event(t, t.cost.requests_per_event, 3, "")
    }),
    ("connections opened", |t| {
        t.cost.connections_opened.to_string()
    }),
    ("server CPU / event", |t| {
        per_event(t, t.cost.server_cpu_us_per_event, 2, " µs")
    }),
    ("generator CPU / event", |t| {
        per_event(t, t.cost.generator_cpu_us_per_event, 2, " µs")
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
    ("connect p50", |t| pct(&t.connect_us, 0.5, |p| p.p50)),
    ("connect p99", |t| pct(&t.connect_us, 0.99, |p| p.p99)),
    ("connect max", |t| pct(&t.connect_us, 1.0, |p| p.max)),
    ("client errors", |t| {
        t.errors.values().sum::<u64>().to_string()
    }),
];
