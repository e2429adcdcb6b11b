//! The spread of repeated runs (`run --repeat N`): per figure and
//! transport, a bar at the median and a whisker from the lowest to the
//! highest repetition, so a difference inside the whiskers reads as none.

use std::path::Path;

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{DrawResult, HEIGHT, WIDTH, bar_panel, colour, register_font, titled, with_legend};
use crate::compare::Values;
use crate::report::summary::{Summary, TransportSummary};

type Figure = (&'static str, fn(&TransportSummary) -> Option<f64>);

const FIGURES: [Figure; 6] = [
    ("latency p50 (ms)", |t| {
        (t.latency_us.count > 0).then(|| t.latency_us.p50 as f64 / 1000.0)
    }),
    ("latency p99 (ms)", |t| {
        (t.latency_us.count > 0).then(|| t.latency_us.p99 as f64 / 1000.0)
    }),
    ("delivered events/s", |t| {
        (t.throughput.window_s > 0.0).then_some(t.throughput.delivered_per_s)
    }),
    ("bytes down per event (B)", |t| t.cost.bytes_down_per_event),
    ("server CPU per event (µs)", |t| {
        t.cost.server_cpu_us_per_event
    }),
    ("generator CPU per event (µs)", |t| {
        t.cost.generator_cpu_us_per_event
    }),
];

fn draw<DB: DrawingBackend>(runs: &[Summary], area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let area = &titled(
        area,
        &format!("Median and range of {} repetitions", runs.len()),
    )?;
    let Some(first) = runs.first() else {
        return Ok(());
    };
    let kinds: Vec<_> = first.transports.iter().map(|t| t.transport).collect();
    let entries: Vec<_> = kinds
        .iter()
        .map(|t| (t.to_string(), colour(*t), false))
        .collect();
    let grid = with_legend(area, &entries)?;
    for (panel, (title, value)) in grid.split_evenly((2, 3)).iter().zip(FIGURES) {
        let per_kind: Vec<Values> = kinds
            .iter()
            .map(|k| {
                Values(
                    runs.iter()
                        .filter_map(|s| s.transports.iter().find(|t| t.transport == *k))
                        .filter_map(value)
                        .collect(),
                )
            })
            .collect();
        let y_max = per_kind
            .iter()
            .flat_map(|v| v.0.iter().copied())
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.15;
        let mut chart = bar_panel(
            panel,
            &format!("{title}, {} runs", runs.len()),
            kinds.len(),
            y_max,
        )?;
        for (i, (kind, v)) in kinds.iter().zip(&per_kind).enumerate() {
            if v.0.is_empty() {
                continue;
            }
            let x = i as f64;
            let lo = v.0.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.25, 0.0), (x + 0.75, v.median())],
                colour(*kind).mix(0.6).filled(),
            )))?;
            let whisker = BLACK.stroke_width(2);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x + 0.5, lo), (x + 0.5, hi)],
                whisker,
            )))?;
            for y in [lo, hi] {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x + 0.4, y), (x + 0.6, y)],
                    whisker,
                )))?;
            }
        }
    }
    Ok(())
}

/// Writes the charts of repeated runs into `dir`: `repetitions` (every
/// figure's median and range) and `repetitions_cost_vs_latency`, each as
/// PNG and SVG.
pub fn write(runs: &[Summary], dir: &Path) -> anyhow::Result<()> {
    register_font();
    write_chart(
        dir,
        "repetitions",
        |a| draw(runs, a).map_err(|e| anyhow::anyhow!("{e}")),
        |a| draw(runs, a).map_err(|e| anyhow::anyhow!("{e}")),
    )?;
    write_chart(
        dir,
        "repetitions_cost_vs_latency",
        |a| super::tradeoff::draw_repeated(runs, a).map_err(|e| anyhow::anyhow!("{e}")),
        |a| super::tradeoff::draw_repeated(runs, a).map_err(|e| anyhow::anyhow!("{e}")),
    )
}

/// `NAME.png` and `NAME.svg` in `dir`, drawn by the same code on each
/// backend.
fn write_chart(
    dir: &Path,
    name: &str,
    png_draw: impl Fn(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
    svg_draw: impl Fn(&DrawingArea<SVGBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let png = dir.join(format!("{name}.png"));
    {
        let root = BitMapBackend::new(&png, (WIDTH, HEIGHT)).into_drawing_area();
        png_draw(&root).with_context(|| format!("drawing {}", png.display()))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", png.display()))?;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        svg_draw(&root).with_context(|| format!("drawing {name}.svg"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing {name}.svg: {e}"))?;
    }
    let path = dir.join(format!("{name}.svg"));
    std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))
}
