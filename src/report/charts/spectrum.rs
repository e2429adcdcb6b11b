//! The HdrHistogram "nines" view of latency: percentile on a log scale of
//! 1/(1-p), so p50, p90, p99, p99.9 … are evenly spaced and the tail gets
//! the room it deserves.

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::coord::combinators::BindKeyPoints;
use plotters::prelude::*;

use super::{DrawResult, axis_font, colour, label_font, log_ticks, transports, with_legend};
use crate::report::saved::Saved;
use crate::scenario::TransportKind;

/// x position of a quantile: 1/(1-q), capped so q = 1 (the max) stays on the chart.
fn nines(q: f64, cap: f64) -> f64 {
    if q >= 1.0 {
        cap
    } else {
        (1.0 / (1.0 - q)).min(cap)
    }
}

/// (x, value in ms) points of a histogram's percentile spectrum.
fn points(h: &Histogram<u64>, cap: f64) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(5)
        .map(|v| {
            (
                nines(v.quantile_iterated_to(), cap),
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect();
    // The last point is the maximum: pin it to the right edge.
    if let Some(last) = pts.last_mut() {
        last.0 = cap;
    }
    pts
}

/// Ticks at 0%, 50%, 90%, 99%, 99.9% … up to the right edge.
fn key_points(cap: f64) -> Vec<f64> {
    let mut points = vec![1.0, 2.0];
    let mut x = 10.0;
    while x <= cap * 1.0001 {
        points.push(x);
        x *= 10.0;
    }
    points
}

fn percent_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    if *x >= 0.999e6 && *x <= 1.001e6 {
        return "99.9999%".into();
    }
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Draws one line per transport of `pick(transport)` on the nines scale.
pub fn draw_spectrum<DB: DrawingBackend>(
    saved: &Saved,
    area: &DrawingArea<DB, Shift>,
    pick: impl Fn(TransportKind) -> Option<Histogram<u64>>,
    y_label: &str,
) -> DrawResult<DB> {
    let series: Vec<(TransportKind, Histogram<u64>)> = transports(saved)
        .into_iter()
        .filter_map(|t| pick(t).filter(|h| !h.is_empty()).map(|h| (t, h)))
        .collect();
    let most = series.iter().map(|(_, h)| h.len()).max().unwrap_or(1) as f64;
    // Enough nines to show the max of the largest histogram, at least 99.9%.
    let cap = 10f64.powf(most.log10().ceil().clamp(3.0, 6.0));
    // Log scale: transports differ by orders of magnitude (short polling's
    // second against a WebSocket's fraction of a millisecond), and a linear
    // axis would flatten all but the slowest onto zero.
    let y_max = series
        .iter()
        .map(|(_, h)| h.max() as f64 / 1000.0)
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.3;
    let y_min = series
        .iter()
        .map(|(_, h)| h.min().max(1) as f64 / 1000.0)
        .fold(f64::MAX, f64::min)
        .min(y_max / 10.0);
    let y_min = 10f64.powf(y_min.log10().floor());

    let plot = with_legend(
        area,
        &series
            .iter()
            .map(|(t, _)| (t.to_string(), colour(*t), false))
            .collect::<Vec<_>>(),
    )?;
    let mut chart = ChartBuilder::on(&plot)
        .margin(20)
        .margin_right(60)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (1.0f64..cap).log_scale().with_key_points(key_points(cap)),
            (y_min..y_max)
                .log_scale()
                .with_key_points(log_ticks(y_min, y_max)),
        )?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1/(1-p))")
        .y_desc(format!("{y_label}, log scale"))
        .x_label_formatter(&percent_label)
        .y_label_formatter(&ms_label)
        .axis_desc_style(label_font())
        .label_style(axis_font())
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (t, h) in &series {
        let c = colour(*t);
        chart.draw_series(LineSeries::new(points(h, cap), c.stroke_width(3)))?;
    }
    if series.is_empty() {
        plot.draw_text("no samples", &label_font(), (WIDTH_HINT, 200))?;
    }
    Ok(())
}

const WIDTH_HINT: i32 = 520;

/// Milliseconds with as many decimals as the magnitude needs.
fn ms_label(v: &f64) -> String {
    match *v {
        v if v < 0.1 => format!("{v:.3}"),
        v if v < 10.0 => format!("{v:.2}"),
        v => format!("{v:.0}"),
    }
}

pub fn draw<DB: DrawingBackend>(saved: &Saved, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    draw_spectrum(
        saved,
        area,
        |t| saved.histograms.get(&t).map(|h| h.latency.clone()),
        "latency (ms)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_labels_read_as_percentiles() {
        assert_eq!(percent_label(&1.0), "0%");
        assert_eq!(percent_label(&10.0), "90%");
        assert_eq!(percent_label(&100.0), "99%");
        assert_eq!(percent_label(&1000.0), "99.9%");
        assert_eq!(percent_label(&10000.0), "99.99%");
        assert_eq!(percent_label(&2.0), "50%");
        assert_eq!(key_points(1e3), vec![1.0, 2.0, 10.0, 100.0, 1000.0]);
        assert_eq!(nines(0.5, 1e6), 2.0);
        assert_eq!(nines(1.0, 1e3), 1e3);
    }
}
