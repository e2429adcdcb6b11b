//! Delivered events per second over the run, per transport.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::timeline::shade_phases;
use super::{DrawResult, axis_font, colour, label_font, legend, transports};
use crate::report::saved::Saved;

pub fn draw<DB: DrawingBackend>(saved: &Saved, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let (legend_area, plot) = area.split_vertically(36);
    let rows = &saved.timeline;
    let x_max = rows.iter().map(|r| r.second + 1).max().unwrap_or(1) as f64;
    let y_max = rows.iter().map(|r| r.delivered).max().unwrap_or(1).max(1) as f64 * 1.15;
    let kinds = transports(saved);
    legend(
        &legend_area,
        &kinds
            .iter()
            .map(|t| (t.to_string(), colour(*t), false))
            .collect::<Vec<_>>(),
    )?;

    let mut chart = ChartBuilder::on(&plot)
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time since the transport's run began (s)")
        .y_desc("delivered events per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .axis_desc_style(label_font())
        .label_style(axis_font())
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    shade_phases(&mut chart, rows, y_max)?;
    for t in &kinds {
        chart.draw_series(LineSeries::new(
            rows.iter()
                .filter(|r| r.transport == *t)
                .map(|r| (r.second as f64 + 0.5, r.delivered as f64)),
            colour(*t).stroke_width(3),
        ))?;
    }
    Ok(())
}
