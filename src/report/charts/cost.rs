//! Cost per delivered event, side by side: one small bar chart per figure,
//! each with its own scale and unit.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, axis_font, bar_panel, colour, transport_legend, transports};
use crate::report::saved::Saved;
use crate::report::summary::TransportSummary;

type Figure = (&'static str, fn(&TransportSummary) -> Option<f64>);

const FIGURES: [Figure; 6] = [
    ("bytes down per event (B)", |t| t.cost.bytes_down_per_event),
    ("bytes up per event (B)", |t| t.cost.bytes_up_per_event),
    ("HTTP requests per event", |t| t.cost.requests_per_event),
    ("server CPU per event (µs)", |t| {
        t.cost.server_cpu_us_per_event
    }),
    ("generator CPU per event (µs)", |t| {
        t.cost.generator_cpu_us_per_event
    }),
    ("server memory per connection (KiB)", |t| {
        t.processes
            .server_memory_per_connection_bytes
            .map(|b| b / 1024.0)
    }),
];

fn format_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

pub fn draw<DB: DrawingBackend>(saved: &Saved, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let grid = transport_legend(saved, area)?;
    let kinds = transports(saved);
    let panels = grid.split_evenly((2, 3));
    for (panel, (title, value)) in panels.iter().zip(FIGURES) {
        let values: Vec<Option<f64>> = saved.summary.transports.iter().map(value).collect();
        let y_max = values
            .iter()
            .flatten()
            .copied()
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.25;
        let mut chart = bar_panel(panel, title, kinds.len(), y_max)?;
        for (i, (t, v)) in kinds.iter().zip(&values).enumerate() {
            let x = i as f64;
            let label = v.map_or_else(|| "n/a".to_string(), format_value);
            let h = v.unwrap_or(0.0);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, h)],
                colour(*t).filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                label,
                (x + 0.3, h + y_max * 0.1),
                axis_font(),
            )))?;
        }
    }
    Ok(())
}
