//! A sweep's report: each figure against the varied key, one line per
//! transport, and the crossover table that says which transport is best at
//! each point and by how much. Rendered from sweep.json and each point's
//! summary.json, so `pushbench report SWEEP_DIR` can always redo it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use html_escape::encode_text as esc;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::charts::{self, DrawResult, axis_font, colour, label_font, with_legend};
use super::summary::{Summary, TransportSummary};
use crate::scenario::TransportKind;
use crate::sweep::{self, Index};

/// A point with its run's summary, when it wrote one.
pub struct SweepPoint {
    pub point: sweep::Point,
    /// The first varied key's value as a number (ms for durations).
    pub x: f64,
    pub summary: Option<Summary>,
}

pub struct SweepData {
    pub index: Index,
    pub points: Vec<SweepPoint>,
}

/// Reads a sweep directory: its index and every point's summary.
pub fn load(dir: &Path) -> anyhow::Result<SweepData> {
    let index = sweep::load(dir)?;
    let Some(key) = index.vary.first().map(|v| v.key.clone()) else {
        anyhow::bail!("{}: no varied key", dir.join(sweep::INDEX).display());
    };
    // A point whose summary is missing or unreadable shows as "no
    // results"; the rest of the sweep is still reported.
    let points = index
        .points
        .iter()
        .filter_map(|p| {
            let x = p.values.get(&key).and_then(|v| sweep::number(v))?;
            let summary = p.results.as_ref().and_then(|r| {
                let path = dir.join(r).join("summary.json");
                super::saved::load_summary(&path)
                    .map_err(|e| eprintln!("warning: {e:#}"))
                    .ok()
            });
            Some(SweepPoint {
                x,
                point: p.clone(),
                summary,
            })
        })
        .collect();
    Ok(SweepData { index, points })
}

type Figure = (
    &'static str,
    &'static str,
    fn(&TransportSummary) -> Option<f64>,
);

/// The figures charted and judged, with their units; lower is better.
const FIGURES: [Figure; 4] = [
    ("latency p50", "ms", |t| {
        (t.latency_us.count > 0).then(|| t.latency_us.p50 as f64 / 1e3)
    }),
    ("latency p99", "ms", |t| {
        (t.latency_us.count > 0).then(|| t.latency_us.p99 as f64 / 1e3)
    }),
    ("bytes down per event", "B", |t| t.cost.bytes_down_per_event),
    ("server CPU per event", "µs", |t| {
        t.cost.server_cpu_us_per_event
    }),
];

/// One line of a chart: a transport, and the second key's value in a grid.
#[derive(Clone, PartialEq)]
struct Series {
    kind: TransportKind,
    second: Option<String>,
}

impl Series {
    fn label(&self, index: &Index) -> String {
        match (&self.second, index.vary.get(1)) {
            (Some(v), Some(second)) => format!("{}, {}={v}", self.kind, second.key),
            _ => self.kind.to_string(),
        }
    }
}

fn series(data: &SweepData) -> Vec<Series> {
    let second = data.index.vary.get(1).map(|v| &v.key);
    let mut out: Vec<Series> = Vec::new();
    for p in &data.points {
        for t in p.summary.iter().flat_map(|s| &s.transports) {
            let s = Series {
                kind: t.transport,
                second: second.and_then(|k| p.point.values.get(k).cloned()),
            };
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// The points of one series for one figure: (x, value), by x.
fn line(data: &SweepData, s: &Series, f: fn(&TransportSummary) -> Option<f64>) -> Vec<(f64, f64)> {
    let second = data.index.vary.get(1).map(|v| &v.key);
    let mut pts: Vec<(f64, f64)> = data
        .points
        .iter()
        .filter(|p| second.and_then(|k| p.point.values.get(k)) == s.second.as_ref())
        .filter_map(|p| {
            let t = p
                .summary
                .as_ref()?
                .transports
                .iter()
                // Only complete runs: a stopped one's figures are partial.
                .find(|t| t.transport == s.kind && t.complete)?;
            Some((p.x, f(t)?))
        })
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

fn draw_panels<DB: DrawingBackend>(
    data: &SweepData,
    figures: &[Figure],
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let all = series(data);
    // In a grid, the second key's values alternate solid and dashed lines.
    let dashed = |s: &Series| {
        data.index.vary.get(1).is_some_and(|v| {
            s.second
                .as_ref()
                .and_then(|x| v.values.iter().position(|y| y == x))
                .is_some_and(|i| i % 2 == 1)
        })
    };
    let entries: Vec<_> = all
        .iter()
        .map(|s| (s.label(&data.index), colour(s.kind), dashed(s)))
        .collect();
    let plot = with_legend(area, &entries)?;
    let key = &data.index.vary[0].key;
    let xs: Vec<f64> = data.points.iter().map(|p| p.x).collect();
    let (x_lo, x_hi) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let x_hi = if x_hi > x_lo { x_hi } else { x_lo + 1.0 };
    let unit = if data.index.vary[0]
        .values
        .iter()
        .any(|v| v.parse::<f64>().is_err())
    {
        " (ms)"
    } else {
        ""
    };
    let panels = plot.split_evenly((1, figures.len()));
    for (panel, (name, fig_unit, f)) in panels.iter().zip(figures) {
        let lines: Vec<(usize, Vec<(f64, f64)>)> = all
            .iter()
            .enumerate()
            .map(|(i, s)| (i, line(data, s, *f)))
            .collect();
        let values: Vec<f64> = lines
            .iter()
            .flat_map(|(_, l)| l.iter().map(|p| p.1))
            .collect();
        let lo = values.iter().copied().fold(f64::MAX, f64::min);
        let hi = values.iter().copied().fold(0.0, f64::max).max(1e-6);
        // Log scale when the values span decades (short polling's second
        // beside WebSocket's milliseconds), linear otherwise.
        let log = lo > 0.0 && hi / lo > 30.0;
        let mut builder = ChartBuilder::on(panel);
        builder
            .margin(16)
            .margin_right(30)
            .caption(format!("{name} ({fig_unit})"), (charts::FONT, 20))
            .x_label_area_size(50)
            .y_label_area_size(70);
        let x_desc = format!("{key}{unit}");
        let y_desc = format!("{name} ({fig_unit}{})", if log { ", log" } else { "" });
        macro_rules! plot_lines {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_label_formatter(&|v| tick(*v))
                    .y_label_formatter(&|v| tick(*v))
                    .x_desc(x_desc.as_str())
                    .y_desc(y_desc.as_str())
                    .axis_desc_style(label_font())
                    .label_style(axis_font())
                    .draw()?;
                for (i, pts) in &lines {
                    let s = &all[*i];
                    let style = colour(s.kind).stroke_width(3);
                    if dashed(s) {
                        chart.draw_series(DashedLineSeries::new(
                            pts.iter().copied(),
                            10,
                            8,
                            style,
                        ))?;
                    } else {
                        chart.draw_series(LineSeries::new(pts.iter().copied(), style))?;
                    }
                    chart.draw_series(
                        pts.iter()
                            .map(|p| Circle::new(*p, 5, colour(s.kind).filled())),
                    )?;
                }
            }};
        }
        if log {
            plot_lines!(builder.build_cartesian_2d(x_lo..x_hi, (lo / 1.5..hi * 1.5).log_scale())?);
        } else {
            plot_lines!(builder.build_cartesian_2d(x_lo..x_hi, 0.0..hi * 1.15)?);
        }
    }
    Ok(())
}

/// A tick label without needless decimals (a decimal point renders
/// raised in the embedded font's PNGs, so fewer is better).
fn tick(v: f64) -> String {
    if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The charts of a sweep: (file stem, title, figures).
const CHARTS: [(&str, &str, std::ops::Range<usize>); 2] = [
    ("sweep_latency", "Latency against the varied key", 0..2),
    (
        "sweep_cost",
        "Cost per delivered event against the varied key",
        2..4,
    ),
];

fn draw_chart<DB: DrawingBackend>(
    data: &SweepData,
    title: &str,
    figures: &[Figure],
    root: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (head, rest) = root.split_vertically(50);
    head.draw_text(
        title,
        &(charts::FONT, 26).into_font().color(&BLACK),
        (20, 14),
    )?;
    draw_panels(data, figures, &rest)
}

/// The crossover table: at each point, the best transport on each figure
/// and how far ahead of the next it is.
pub fn crossover(data: &SweepData) -> Vec<(String, Vec<String>)> {
    data.points
        .iter()
        .map(|p| {
            let at = p
                .point
                .values
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let cells = FIGURES
                .iter()
                .skip(1)
                .map(|(_, unit, f)| {
                    let Some(s) = &p.summary else {
                        return "no results".to_owned();
                    };
                    let mut ranked: Vec<(TransportKind, f64)> = s
                        .transports
                        .iter()
                        .filter(|t| t.complete)
                        .filter_map(|t| Some((t.transport, f(t)?)))
                        .collect();
                    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
                    match ranked.as_slice() {
                        [] => "unknown".to_owned(),
                        [(k, v)] => format!("{k} {v:.2} {unit}"),
                        // A zero (CPU below the clock's resolution) has no
                        // meaningful ratio: the next is named instead.
                        [(k, v), (k2, v2), ..] if *v > 0.0 => {
                            format!("{k} {v:.2} {unit} ({:.2}× better than {k2})", v2 / v)
                        }
                        [(k, v), (k2, v2), ..] => {
                            format!("{k} {v:.2} {unit} (next: {k2} {v2:.2} {unit})")
                        }
                    }
                })
                .collect();
            (at, cells)
        })
        .collect()
}

/// Renders the sweep's charts, report.md and report.html.
pub fn render(dir: &Path) -> anyhow::Result<SweepData> {
    let data = load(dir)?;
    charts::register_font();
    let mut svgs = Vec::new();
    for (stem, title, range) in CHARTS {
        let figures = &FIGURES[range];
        let png = dir.join(format!("{stem}.png"));
        {
            let root =
                BitMapBackend::new(&png, (charts::WIDTH, charts::HEIGHT)).into_drawing_area();
            draw_chart(&data, title, figures, &root)
                .map_err(|e| anyhow::anyhow!("drawing {}: {e}", png.display()))?;
            root.present()
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", png.display()))?;
        }
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (charts::WIDTH, charts::HEIGHT))
                .into_drawing_area();
            draw_chart(&data, title, figures, &root)
                .map_err(|e| anyhow::anyhow!("drawing {stem}.svg: {e}"))?;
            root.present()
                .map_err(|e| anyhow::anyhow!("drawing {stem}.svg: {e}"))?;
        }
        std::fs::write(dir.join(format!("{stem}.svg")), &svg)
            .with_context(|| format!("writing {stem}.svg"))?;
        svgs.push((stem, title, svg));
    }

    let table = crossover(&data);
    let heads = [
        "point",
        "best latency p99",
        "best bytes down / event",
        "best server CPU / event",
    ];
    let i = &data.index;
    let mut md = format!(
        "# pushbench sweep: {}\n\nStarted {}; {} varied over {} points, each a full run of {} (results directories beside this file).\n\n",
        i.name,
        i.started_at_utc,
        i.vary
            .iter()
            .map(|v| format!("{} = {}", v.key, v.values.join(", ")))
            .collect::<Vec<_>>()
            .join(" × "),
        i.points.len(),
        i.scenario
    );
    for p in &data.points {
        if p.point.exit_code != Some(0) {
            let _ = writeln!(
                md,
                "> **point {:?}: its run ended with exit code {}**\n",
                p.point.values,
                p.point
                    .exit_code
                    .map_or("unknown".into(), |c| c.to_string())
            );
        }
    }
    md.push_str("## Crossover\n\n| ");
    md.push_str(&heads.join(" | "));
    md.push_str(" |\n|---|---|---|---|\n");
    for (at, cells) in &table {
        let _ = writeln!(md, "| {at} | {} |", cells.join(" | "));
    }
    md.push_str("\n## Charts\n\n");
    for (stem, title, _) in &svgs {
        let _ = write!(md, "### {title}\n\n![{title}]({stem}.png)\n\n");
    }
    std::fs::write(dir.join("report.md"), md).context("writing report.md")?;

    let mut h = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>pushbench sweep: {0}</title>\
<style>body{{font-family:sans-serif;max-width:1240px;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 10px}}th{{background:#f4f4f4}}svg{{max-width:100%;height:auto}}</style></head>\
<body><h1>pushbench sweep: {0}</h1><p>Started {1} · {2} points</p><h2>Crossover</h2><table><tr>",
        esc(&i.name),
        esc(&i.started_at_utc),
        i.points.len()
    );
    for head in heads {
        let _ = write!(h, "<th>{}</th>", esc(head));
    }
    h.push_str("</tr>");
    for (at, cells) in &table {
        let _ = write!(h, "<tr><td>{}</td>", esc(at));
        for c in cells {
            let _ = write!(h, "<td>{}</td>", esc(c));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table><h2>Charts</h2>");
    for (_, title, svg) in &svgs {
        let _ = write!(
            h,
            "<figure><figcaption>{}</figcaption>{svg}</figure>",
            esc(title)
        );
    }
    h.push_str("</body></html>");
    std::fs::write(dir.join("report.html"), h).context("writing report.html")?;
    Ok(data)
}
