//! Reporters: one trait, fanned out over the results of a run. Each writes
//! one thing (summary.json, interval logs, the timeline, the terminal
//! table) from the same [`Results`].

mod files;
pub mod summary;
mod terminal;

use std::path::PathBuf;

pub use summary::Summary;

use crate::runner::TransportRun;

/// A finished (or stopped) run and where its files go.
pub struct Results<'a> {
    pub dir: PathBuf,
    pub summary: &'a Summary,
    pub runs: &'a [TransportRun],
}

pub trait Reporter {
    fn report(&self, results: &Results<'_>) -> anyhow::Result<()>;
}

/// Every reporter, in the order they run. Files first, so a failure to
/// print cannot lose them.
pub fn reporters(print_table: bool) -> Vec<Box<dyn Reporter>> {
    let mut all: Vec<Box<dyn Reporter>> = vec![
        Box::new(files::SummaryJson),
        Box::new(files::IntervalLogs),
        Box::new(files::TimelineCsv),
    ];
    if print_table {
        all.push(Box::new(terminal::Table));
    }
    all
}

/// Runs every reporter; reports every failure, not just the first.
pub fn write_all(results: &Results<'_>, print_table: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(&results.dir)?;
    let mut failures = Vec::new();
    for r in reporters(print_table) {
        if let Err(e) = r.report(results) {
            failures.push(format!("{e:#}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("some results could not be written: {}", failures.join("; "))
    }
}

pub use terminal::render_table;
