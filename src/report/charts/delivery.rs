//! Delivery correctness: lost, duplicated, out-of-order and server-reported
//! missed events per transport. Zeros are drawn as zeros, with their label.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{DrawResult, axis_font, colour, label_font, transports, with_legend};
use crate::report::saved::Saved;
use crate::report::summary::{Delivery, count_or_unknown};

/// A count per bar; `None` (lost, when the server's final heads are
/// unknown) is drawn as no bar, labelled "unknown".
type Count = (&'static str, fn(&Delivery) -> Option<u64>);

const COUNTS: [Count; 4] = [
    ("lost", |d| d.lost),
    ("duplicated", |d| Some(d.duplicated)),
    ("out of order", |d| Some(d.out_of_order)),
    ("missed (reported by server)", |d| Some(d.missed_reported)),
];

pub fn draw<DB: DrawingBackend>(saved: &Saved, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let kinds = transports(saved);
    let entries: Vec<_> = saved
        .summary
        .transports
        .iter()
        .map(|t| {
            (
                format!(
                    "{} ({} events expected)",
                    t.transport,
                    count_or_unknown(t.delivery.expected)
                ),
                colour(t.transport),
                false,
            )
        })
        .collect();
    let plot = with_legend(area, &entries)?;
    let max = saved
        .summary
        .transports
        .iter()
        .flat_map(|t| COUNTS.iter().filter_map(move |(_, f)| f(&t.delivery)))
        .max()
        .unwrap_or(0);
    // Whole events: an integer axis, tall enough to show zeros as zeros.
    let y_max = (max as f64 * 1.3).ceil().max(5.0) as u64;
    let n = kinds.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&plot)
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..COUNTS.len() as f64, 0.0..y_max as f64)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(COUNTS.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < COUNTS.len() {
                COUNTS[i].0.to_string()
            } else {
                String::new()
            }
        })
        .y_desc("events")
        .y_labels(6)
        // Whole events only: no label between two of them.
        .y_label_formatter(&|y| {
            if y.fract() == 0.0 {
                format!("{y:.0}")
            } else {
                String::new()
            }
        })
        .axis_desc_style(label_font())
        .label_style(axis_font())
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (c, (_, count)) in COUNTS.iter().enumerate() {
        for (i, t) in saved.summary.transports.iter().enumerate() {
            let width = 0.7 / n;
            let x0 = c as f64 + 0.15 + i as f64 * width;
            let known = count(&t.delivery);
            let v = known.unwrap_or(0);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, v as f64)],
                colour(t.transport).filled(),
            )))?;
            // Just above the bar's top (a zero's is the axis), centred on it.
            chart.draw_series(std::iter::once(Text::new(
                count_or_unknown(known),
                (x0 + width * 0.45, v as f64 + y_max as f64 * 0.015),
                axis_font()
                    .color(&colour(t.transport))
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )))?;
        }
    }
    Ok(())
}
