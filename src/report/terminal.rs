//! The side-by-side comparison printed at the end of a run.

use std::io::IsTerminal;

use comfy_table::presets::{ASCII_MARKDOWN, UTF8_FULL_CONDENSED};
use comfy_table::{CellAlignment, Table};

use super::summary::Summary;

/// The comparison table: one column per transport. Box-drawing on a
/// terminal; plain ASCII (a Markdown table) when stdout is piped or
/// redirected, so logs and files stay readable anywhere.
pub fn render_table(summary: &Summary) -> String {
    let mut grid = Table::new();
    grid.load_preset(if std::io::stdout().is_terminal() {
        UTF8_FULL_CONDENSED
    } else {
        ASCII_MARKDOWN
    });
    let mut header = vec![format!(
        "{} (measured {})",
        summary.scenario.name,
        humantime::format_duration(summary.scenario.phases.measure)
    )];
    header.extend(summary.transports.iter().map(|t| t.transport.to_string()));
    grid.set_header(header);
    for (label, value) in super::table::rows(&summary.transports) {
        let mut row = vec![label.to_string()];
        row.extend(summary.transports.iter().map(value));
        grid.add_row(row);
    }
    for (i, column) in grid.column_iter_mut().enumerate() {
        if i > 0 {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    grid.to_string()
}

/// Warnings and incomplete notices, one line each.
pub fn notices(summary: &Summary) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(reason) = &summary.incomplete_reason {
        lines.push(format!("INCOMPLETE run: {reason}"));
    }
    for w in &summary.warnings {
        lines.push(format!("warning: {w}"));
    }
    for t in &summary.transports {
        for w in &t.warnings {
            lines.push(format!("warning: {}: {w}", t.transport));
        }
        if let Some(reason) = &t.incomplete_reason {
            lines.push(format!("INCOMPLETE: {}: {reason}", t.transport));
        }
    }
    lines.extend(crate::thresholds::judge(summary).iter().map(|v| v.line()));
    if summary.transports.iter().any(super::table::has_few_samples) {
        lines.push(format!(
            "*: from too few samples to rely on: a percentile with fewer than {} samples beyond it (p99 needs {} samples), or a per-event figure over fewer than {} events",
            super::table::MIN_SAMPLES_BEYOND,
            (super::table::MIN_SAMPLES_BEYOND / 0.01) as u64,
            super::table::MIN_EVENTS
        ));
    }
    lines
}
