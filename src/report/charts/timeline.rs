//! Latency over the run: p50 and p99 of each second, per transport, with
//! the connect ramp and the warm-up shaded.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{DrawResult, axis_font, colour, label_font, log_ticks, transports, with_legend};
use crate::report::files::TimelineRow;
use crate::report::saved::Saved;

/// Shades the seconds before measuring began, labelled: the ramp (connect)
/// and the warm-up, taken from the first transport's timeline.
pub(super) fn shade_phases<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    rows: &[TimelineRow],
    (y_min, y_max): (f64, f64),
) -> DrawResult<DB> {
    let Some(first) = rows.first().map(|r| r.transport) else {
        return Ok(());
    };
    let start_of = |phase: &str| {
        rows.iter()
            .find(|r| r.transport == first && r.phase == phase)
            .map(|r| r.second as f64)
    };
    let (warmup, measure, drain) = (start_of("warmup"), start_of("measure"), start_of("drain"));
    let end = rows
        .iter()
        .filter(|r| r.transport == first)
        .map(|r| r.second as f64 + 1.0)
        .fold(0.0, f64::max);
    let bands = [
        ("connect", 0.0, warmup.or(measure)),
        ("warm-up", warmup.unwrap_or(f64::MAX), measure),
        ("drain", drain.unwrap_or(end), Some(end)),
    ];
    for (label, from, to) in bands {
        let Some(to) = to else { continue };
        if to <= from {
            continue;
        }
        chart.draw_series(std::iter::once(Rectangle::new(
            [(from, y_min), (to, y_max)],
            RGBColor(120, 120, 120).mix(0.12).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            label.to_string(),
            (from + 0.2, y_max * 0.97),
            axis_font(),
        )))?;
    }
    Ok(())
}

type TimeChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Axes over the run's seconds, with the phases before measuring shaded:
/// the frame shared by every chart of a figure over time.
pub(super) fn time_chart<'a, DB: DrawingBackend>(
    plot: &'a DrawingArea<DB, Shift>,
    rows: &[TimelineRow],
    y_max: f64,
    y_desc: &str,
    y_format: &dyn Fn(&f64) -> String,
) -> Result<TimeChart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let x_max = rows.iter().map(|r| r.second + 1).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(plot)
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time since the transport's run began (s)")
        .y_desc(y_desc)
        .y_label_formatter(y_format)
        .axis_desc_style(label_font())
        .label_style(axis_font())
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    shade_phases(&mut chart, rows, (0.0, y_max))?;
    Ok(chart)
}

/// p50 and p99 per second on a log axis: transports a thousand times
/// apart (short polling's second against WebSocket's millisecond) each
/// keep their own shape instead of flattening onto zero.
pub fn draw<DB: DrawingBackend>(saved: &Saved, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let rows = &saved.timeline;
    let values = || {
        rows.iter()
            .flat_map(|r| [r.latency_p50_us, r.latency_p99_us])
            .flatten()
            .map(|us| us.max(1) as f64 / 1000.0)
    };
    // Headroom above the highest line, so it does not run along the frame.
    let y_max = 10f64.powf((values().fold(0.001, f64::max) * 1.5).log10().ceil());
    let y_min = 10f64.powf(
        values()
            .fold(f64::MAX, f64::min)
            .min(y_max / 10.0)
            .log10()
            .floor(),
    );
    let kinds = transports(saved);
    let mut entries = Vec::new();
    for t in &kinds {
        entries.push((format!("{t} p99"), colour(*t), false));
        entries.push((format!("{t} p50"), colour(*t), true));
    }
    let plot = with_legend(area, &entries)?;

    let x_max = rows.iter().map(|r| r.second + 1).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(&plot)
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(90)
        .build_cartesian_2d(
            0.0..x_max,
            (y_min..y_max)
                .log_scale()
                .with_key_points(log_ticks(y_min, y_max)),
        )?;
    chart
        .configure_mesh()
        .x_desc("time since the transport's run began (s)")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| format_latency(*v))
        .axis_desc_style(label_font())
        .label_style(axis_font())
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    shade_phases(&mut chart, rows, (y_min, y_max))?;
    for t in &kinds {
        let mine = || rows.iter().filter(move |r| r.transport == *t);
        let at = |r: &TimelineRow, v: u64| (r.second as f64 + 0.5, v.max(1) as f64 / 1000.0);
        chart.draw_series(LineSeries::new(
            mine().filter_map(|r| r.latency_p99_us.map(|v| at(r, v))),
            colour(*t).stroke_width(3),
        ))?;
        chart.draw_series(DashedLineSeries::new(
            mine().filter_map(|r| r.latency_p50_us.map(|v| at(r, v))),
            6,
            5,
            colour(*t).stroke_width(2),
        ))?;
    }
    Ok(())
}

/// Log-axis labels that stay readable below 1 ms.
fn format_latency(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').to_owned()
    }
}
