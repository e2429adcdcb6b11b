//! Delivered events per second over the run, per transport.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::timeline::time_chart;
use super::{DrawResult, colour, transport_legend, transports};
use crate::report::saved::Saved;

pub fn draw<DB: DrawingBackend>(saved: &Saved, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let plot = transport_legend(saved, area)?;
    let kinds = transports(saved);
    let rows = &saved.timeline;
    let y_max = rows.iter().map(|r| r.delivered).max().unwrap_or(1).max(1) as f64 * 1.15;

    let mut chart = time_chart(&plot, rows, y_max, "delivered events per second", &|v| {
        format!("{v:.0}")
    })?;
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
