//! Cost against latency, one point per transport: the chart a decision
//! needs. "The cheapest transport that meets my latency" is the lowest
//! point left of the latency the application can afford.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    DrawResult, axis_font, colour, label_font, log_ticks, titled, transport_legend, with_legend,
};
use crate::compare::Values;
use crate::report::saved::Saved;
use crate::report::summary::{Summary, TransportSummary};
use crate::scenario::TransportKind;

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
    draw_runs(&[&saved.summary], &plot)
}

/// The chart over repetitions of one comparison (`run --repeat`): each
/// transport at its medians, with whiskers from the lowest to the highest
/// repetition on both axes, so transports whose whiskers overlap are not
/// told apart by this run.
pub fn draw_repeated<DB: DrawingBackend>(
    runs: &[Summary],
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let area = &titled(
        area,
        &format!(
            "Cost against latency p99: median and range of {} repetitions",
            runs.len()
        ),
    )?;
    let Some(first) = runs.first() else {
        return Ok(());
    };
    let entries: Vec<_> = first
        .transports
        .iter()
        .map(|t| (t.transport.to_string(), colour(t.transport), false))
        .collect();
    let plot = with_legend(area, &entries)?;
    draw_runs(&runs.iter().collect::<Vec<_>>(), &plot)
}

/// One transport's values over the runs: median, lowest and highest.
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let v = Values(values.to_vec());
    Some((v.median(), v.min(), v.max()))
}

fn draw_runs<DB: DrawingBackend>(
    runs: &[&Summary],
    plot: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let Some(first) = runs.first() else {
        return Ok(());
    };
    let kinds: Vec<TransportKind> = first.transports.iter().map(|t| t.transport).collect();
    let of = |kind: TransportKind, f: &dyn Fn(&TransportSummary) -> Option<f64>| -> Vec<f64> {
        runs.iter()
            .filter_map(|s| s.transports.iter().find(|t| t.transport == kind))
            .filter_map(f)
            .collect()
    };
    let latencies: Vec<f64> = kinds.iter().flat_map(|k| of(*k, &p99_ms)).collect();
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
        // Both figures of a run must be known for it to count.
        let points: Vec<_> = kinds
            .iter()
            .filter_map(|k| {
                let pairs: Vec<(f64, f64)> = runs
                    .iter()
                    .filter_map(|s| s.transports.iter().find(|t| t.transport == *k))
                    .filter_map(|t| Some((p99_ms(t)?, cost(t)?)))
                    .collect();
                let xs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
                let ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
                Some((*k, spread(&xs)?, spread(&ys)?))
            })
            .collect();
        let y_max = points.iter().map(|p| p.2.2).fold(0.0, f64::max).max(1e-9) * 1.25;
        let mut chart = ChartBuilder::on(panel)
            .margin(20)
            .margin_right(40)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (x_min..x_max)
                    .log_scale()
                    .with_key_points(log_ticks(x_min, x_max)),
                0.0..y_max,
            )?;
        let caption = if runs.len() > 1 {
            format!("{name}; median and range of {} runs", runs.len())
        } else {
            name.to_owned()
        };
        chart
            .configure_mesh()
            .x_desc("latency p99 (ms, log scale)")
            .y_desc(caption)
            .x_label_formatter(&|v| format_ms(*v))
            .y_label_formatter(&|v| format_ms(*v))
            .axis_desc_style(label_font())
            .label_style(axis_font())
            .draw()?;
        for (kind, (x, x_lo, x_hi), (y, y_lo, y_hi)) in points {
            let whisker = colour(kind).stroke_width(2);
            if x_hi > x_lo {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x_lo, y), (x_hi, y)],
                    whisker,
                )))?;
            }
            if y_hi > y_lo {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x, y_lo), (x, y_hi)],
                    whisker,
                )))?;
            }
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

#[cfg(test)]
mod tests {
    #[test]
    fn tick_labels_have_no_needless_decimals() {
        assert_eq!(super::format_ms(0.2), "0.2");
        assert_eq!(super::format_ms(20.0), "20");
    }
}
