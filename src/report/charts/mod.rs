//! Comparison charts, drawn with plotters to PNG and SVG from saved data.
//!
//! One file per chart kind. Every chart uses the same colour for a
//! transport, a title, axis labels with units, and a legend in a strip of
//! its own above the plot so it never covers data. Text is drawn with an
//! embedded font (DejaVu Sans), registered before the first chart: no
//! system font libraries are needed or used.

mod connect;
mod cost;
mod delivery;
mod spectrum;
pub mod spread;
mod throughput;
mod timeline;
mod tradeoff;

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::saved::Saved;
use crate::scenario::TransportKind;

pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 700;
const FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
pub const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters. Anything that draws text
/// with plotters (our charts, criterion's plots) must call this first.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ] {
            if plotters::style::register_font(FONT, style, FONT_BYTES).is_err() {
                panic!("the embedded font is a valid TrueType file");
            }
        }
    });
}

/// The colour of a transport, the same in every chart.
pub fn colour(kind: TransportKind) -> RGBColor {
    match kind {
        TransportKind::Websocket => RGBColor(31, 119, 180),
        TransportKind::WebsocketH2 => RGBColor(23, 190, 207),
        TransportKind::Sse => RGBColor(44, 160, 44),
        TransportKind::LongPolling => RGBColor(214, 39, 40),
        TransportKind::LongPollingClose => RGBColor(255, 127, 14),
        TransportKind::LongPollingH2 => RGBColor(148, 103, 189),
        TransportKind::ShortPolling => RGBColor(140, 86, 75),
        TransportKind::SocketioPolling => RGBColor(227, 119, 194),
        TransportKind::SocketioWebsocket => RGBColor(188, 189, 34),
    }
}

pub type DrawError<DB> = DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>;
pub type DrawResult<DB> = Result<(), DrawError<DB>>;

/// The charts, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChartKind {
    LatencySpectrum,
    LatencyOverTime,
    Throughput,
    Cost,
    Connect,
    Delivery,
    CostVsLatency,
}

impl ChartKind {
    pub const ALL: [ChartKind; 7] = [
        ChartKind::LatencySpectrum,
        ChartKind::LatencyOverTime,
        ChartKind::Throughput,
        ChartKind::Cost,
        ChartKind::CostVsLatency,
        ChartKind::Connect,
        ChartKind::Delivery,
    ];

    pub fn file_stem(self) -> &'static str {
        match self {
            ChartKind::LatencySpectrum => "latency_spectrum",
            ChartKind::LatencyOverTime => "latency_over_time",
            ChartKind::Throughput => "throughput",
            ChartKind::Cost => "cost_per_event",
            ChartKind::Connect => "connect_time",
            ChartKind::Delivery => "delivery",
            ChartKind::CostVsLatency => "cost_vs_latency",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ChartKind::LatencySpectrum => "Latency by percentile (from intended publish time)",
            ChartKind::LatencyOverTime => "Latency over time: p50 and p99 per second",
            ChartKind::Throughput => "Delivered events per second",
            ChartKind::Cost => "Cost per delivered event",
            ChartKind::Connect => {
                "Connect time by percentile (TCP + handshake + subscription answer)"
            }
            ChartKind::Delivery => {
                "Delivery correctness: events not delivered exactly once in order"
            }
            ChartKind::CostVsLatency => {
                "Cost against latency: the cheapest transport left of the latency you can afford"
            }
        }
    }

    fn draw<DB: DrawingBackend>(
        self,
        saved: &Saved,
        root: &DrawingArea<DB, Shift>,
    ) -> DrawResult<DB> {
        let rest = titled(root, self.title())?;
        match self {
            ChartKind::LatencySpectrum => spectrum::draw(saved, &rest),
            ChartKind::LatencyOverTime => timeline::draw(saved, &rest),
            ChartKind::Throughput => throughput::draw(saved, &rest),
            ChartKind::Cost => cost::draw(saved, &rest),
            ChartKind::Connect => connect::draw(saved, &rest),
            ChartKind::Delivery => delivery::draw(saved, &rest),
            ChartKind::CostVsLatency => tradeoff::draw(saved, &rest),
        }
    }
}

/// Ticks for a log axis from `lo` to `hi`: 1, 2 and 5 of every decade.
/// Left to itself the axis labelled only whole powers of ten, and missed
/// the lowest one to rounding: a small run's latencies, all below 1 ms,
/// got no label at all.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut exp = lo.log10().floor() as i32;
    while 10f64.powi(exp) <= hi * 1.001 {
        for m in [1.0, 2.0, 5.0] {
            // Rounded to the decade's digits: 0.1 × 2 reads 0.2.
            let t = format!("{:e}", m * 10f64.powi(exp))
                .parse::<f64>()
                .expect("a number");
            if t >= lo * 0.999 && t <= hi * 1.001 {
                ticks.push(t);
            }
        }
        exp += 1;
    }
    ticks
}

/// Fills `root` white and writes `title` across its top; the rest of it
/// is for the chart.
pub fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
) -> Result<DrawingArea<DB, Shift>, DrawError<DB>> {
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(50);
    top.draw_text(title, &(FONT, 26).into_font().color(&BLACK), (20, 14))?;
    Ok(rest)
}

/// A chart written to disk: its PNG and its SVG text.
pub struct Rendered {
    pub kind: ChartKind,
    pub png: PathBuf,
    pub svg: String,
}

/// Draws every chart to `<stem>.png` and `<stem>.svg` in `dir`.
pub fn render_all(saved: &Saved, dir: &Path) -> anyhow::Result<Vec<Rendered>> {
    register_font();
    let mut out = Vec::new();
    for kind in ChartKind::ALL {
        let png = dir.join(format!("{}.png", kind.file_stem()));
        {
            let root = BitMapBackend::new(&png, (WIDTH, HEIGHT)).into_drawing_area();
            kind.draw(saved, &root)
                .map_err(|e| anyhow::anyhow!("drawing {}: {e}", png.display()))?;
            root.present()
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", png.display()))?;
        }
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            kind.draw(saved, &root)
                .map_err(|e| anyhow::anyhow!("drawing {}.svg: {e}", kind.file_stem()))?;
            root.present()
                .map_err(|e| anyhow::anyhow!("drawing {}.svg: {e}", kind.file_stem()))?;
        }
        let svg_path = dir.join(format!("{}.svg", kind.file_stem()));
        std::fs::write(&svg_path, &svg)
            .with_context(|| format!("writing {}", svg_path.display()))?;
        out.push(Rendered { kind, png, svg });
    }
    Ok(out)
}

/// Height of one row of a legend strip.
const LEGEND_ROW: u32 = 30;

/// Splits off a legend strip above the plot and draws it: a coloured mark
/// and a name per entry, wrapped onto as many rows as the entries need
/// (one row cut the legend after three of fourteen entries). `dashed`
/// entries get a broken line mark. Returns the plot area below it.
pub fn with_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor, bool)],
) -> Result<DrawingArea<DB, Shift>, DrawError<DB>> {
    let style = (FONT, 18).into_font().color(&BLACK);
    let width = area.dim_in_pixel().0 as i32;
    // Where each entry goes: (x, row).
    let mut places = Vec::with_capacity(entries.len());
    let (mut x, mut row) = (70, 0);
    for (label, _, _) in entries {
        let (w, _) = area.estimate_text_size(label, &style)?;
        let step = 34 + w as i32 + 36;
        if x > 70 && x + step - 36 > width - 20 {
            x = 70;
            row += 1;
        }
        places.push((x, row));
        x += step;
    }
    let (strip, plot) = area.split_vertically(LEGEND_ROW * (row as u32 + 1) + 6);
    for ((label, colour, dashed), (x, row)) in entries.iter().zip(places) {
        let y = 15 + row * LEGEND_ROW as i32;
        if *dashed {
            for k in 0..3 {
                strip.draw(&PathElement::new(
                    vec![(x + k * 10, y), (x + k * 10 + 6, y)],
                    colour.stroke_width(3),
                ))?;
            }
        } else {
            strip.draw(&PathElement::new(
                vec![(x, y), (x + 26, y)],
                colour.stroke_width(3),
            ))?;
        }
        strip.draw_text(label, &style, (x + 34, y - 10))?;
    }
    Ok(plot)
}

/// Splits off a legend strip naming each transport in its colour; returns
/// the plot area below it.
pub fn transport_legend<DB: DrawingBackend>(
    saved: &Saved,
    area: &DrawingArea<DB, Shift>,
) -> Result<DrawingArea<DB, Shift>, DrawError<DB>> {
    let entries: Vec<_> = transports(saved)
        .into_iter()
        .map(|t| (t.to_string(), colour(t), false))
        .collect();
    with_legend(area, &entries)
}

/// The transports in the order the run measured them.
pub fn transports(saved: &Saved) -> Vec<TransportKind> {
    saved
        .summary
        .transports
        .iter()
        .map(|t| t.transport)
        .collect()
}

/// One small bar panel of a grid: a caption, a y axis of its own from 0 to
/// `y_max`, one slot per transport along x (no x axis: the legend names
/// the colours).
pub fn bar_panel<'a, DB: DrawingBackend>(
    panel: &'a DrawingArea<DB, Shift>,
    title: &str,
    slots: usize,
    y_max: f64,
) -> Result<
    ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    DrawError<DB>,
> {
    let mut chart = ChartBuilder::on(panel)
        .margin(12)
        .caption(title, (FONT, 18))
        .x_label_area_size(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..slots as f64, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_label_formatter(&|v| {
            if y_max >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .label_style(axis_font())
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    Ok(chart)
}

/// Axis label style shared by every chart.
pub fn label_font() -> TextStyle<'static> {
    (FONT, 18).into_font().color(&BLACK)
}

/// An even size: the font renderer places each glyph at half the size
/// plus its own top, truncated to a pixel, so at an odd size a short glyph
/// such as a decimal point sat a pixel higher than the digits (`233·2`).
pub fn axis_font() -> TextStyle<'static> {
    (FONT, 16).into_font().color(&BLACK)
}

#[cfg(test)]
mod log_tick_tests {
    #[test]
    fn a_log_axis_below_1_ms_gets_ticks() {
        assert_eq!(
            super::log_ticks(0.1, 10.0),
            [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
        );
        assert_eq!(super::log_ticks(0.01, 0.13), [0.01, 0.02, 0.05, 0.1]);
        assert_eq!(super::log_ticks(3.0, 60.0), [5.0, 10.0, 20.0, 50.0]);
    }
}
