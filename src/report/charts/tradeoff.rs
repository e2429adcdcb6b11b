//! Cost against latency, one point per transport: the chart a decision
//! needs. "The cheapest transport that meets my latency" is the lowest
//! point left of the latency the application can afford.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, axis_font, colour, label_font, transport_legend};
use crate::report::saved::Saved;
use crate::report::summary::TransportSummary;

type Cost = (&'static str, fn(&TransportSummary) -> Option<f64>);

const COSTS: [Cost; 2] = [
    ("server CPU per event (µs)", |t| {
        t.cost.server_cpu_us_per_event
    }),
    ("bytes down per event (B)", |t| t.cost.bytes_down_per_event),
];

/// Latency p99 in ms, when the transport has latency samples.
fn p99_ms(t: &TransportSummary) -> Option<f64> {
    (t.latency_us.count > 0).then(|| t.latency_us.p99.max(1) as f64 / 1000.0)
}

pub fn draw<DB: DrawingBackend>(saved: &Saved, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let plot = transport_legend(saved, area)?;
    let transports = &saved.summary.transports;
    let latencies: Vec<f64> = transports.iter().filter_map(p99_ms).collect();
    let (lo, hi) = latencies
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    // A decade of room on each side, on a log axis: transports differ by
    // orders of magnitude (short polling's second against WebSocket's ms).
    let (x_min, x_max) = if latencies.is_empty() {
        (0.1, 10.0)
    } else {
        (
            10f64.powf((lo / 2.0).log10().floor()),
            10f64.powf((hi * 2.0).log10().ceil()),
        )
    };
    let panels = plot.split_evenly((1, 2));
    for (panel, (name, cost)) in panels.iter().zip(COSTS) {
        let points: Vec<_> = transports
            .iter()
            .filter_map(|t| Some((t.transport, p99_ms(t)?, cost(t)?)))
            .collect();
        let y_max = points.iter().map(|p| p.2).fold(0.0, f64::max).max(1e-9) * 1.25;
        let mut chart = ChartBuilder::on(panel)
            .margin(20)
            .margin_right(40)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("latency p99 (ms, log scale)")
            .y_desc(name)
            .x_label_formatter(&|v| format_ms(*v))
            .y_label_formatter(&|v| format_ms(*v))
            .axis_desc_style(label_font())
            .label_style(axis_font())
            .draw()?;
        for (kind, x, y) in points {
            chart.draw_series(std::iter::once(Circle::new(
                (x, y),
                7,
                colour(kind).filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                kind.to_string(),
                (x * 1.08, y + y_max * 0.02),
                axis_font(),
            )))?;
        }
    }
    Ok(())
}

/// Tick labels without needless decimals, and readable below 1 (log axes
/// of small runs).
fn format_ms(v: f64) -> String {
    if v.fract() == 0.0 || v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}
