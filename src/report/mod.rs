//! Results in two stages.
//!
//! 1. [`Reporter`]s write what a run measured to its results directory:
//!    summary.json, the HdrHistogram logs and the timeline.
//! 2. [`render`] reads that directory back and fans it out to the
//!    [`Renderer`]s: charts, report.html, report.md. `pushbench report DIR`
//!    runs only this stage, so a report can be regenerated or restyled
//!    without re-running the benchmark; `run` runs both.

pub mod charts;
pub mod files;
mod html;
mod markdown;
pub mod merge;
pub mod repeat;
pub mod saved;
pub mod shards;
pub mod summary;
pub mod sweep;
mod table;
mod terminal;

use std::path::{Path, PathBuf};

pub use summary::Summary;
pub use table::MIN_SAMPLES_BEYOND;
pub use terminal::{notices, render_table};

use crate::runner::TransportRun;

/// A finished (or stopped) run and where its files go.
pub struct Results<'a> {
    pub dir: PathBuf,
    pub summary: &'a Summary,
    pub runs: &'a [TransportRun],
}

/// Writes one data file of a run.
pub trait Reporter {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()>;
}

/// Renders one report from saved data and the charts drawn from it.
pub trait Renderer {
    fn render(&self, saved: &saved::Saved, charts: &[charts::Rendered]) -> anyhow::Result<()>;
}

fn reporters() -> Vec<Box<dyn Reporter>> {
    vec![
        Box::new(files::SummaryJson),
        Box::new(files::IntervalLogs),
        Box::new(files::WindowHistogramLog),
        Box::new(files::TimelineCsv),
        Box::new(files::ProxyConfigs),
    ]
}

fn renderers() -> Vec<Box<dyn Renderer>> {
    vec![Box::new(html::Html), Box::new(markdown::Markdown)]
}

/// Writes every data file; reports every failure, not just the first.
pub fn write_data(results: &Results<'_>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&results.dir)?;
    let failures: Vec<String> = reporters()
        .iter()
        .filter_map(|r| r.report(results).err())
        .map(|e| format!("{e:#}"))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("some results could not be written: {}", failures.join("; "))
    }
}

/// Renders the charts and reports of a results directory from its files.
pub fn render(dir: &Path) -> anyhow::Result<saved::Saved> {
    let saved = saved::load(dir)?;
    let charts = charts::render_all(&saved, dir)?;
    for r in renderers() {
        r.render(&saved, &charts)?;
    }
    Ok(saved)
}
