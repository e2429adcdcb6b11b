//! report.md: the comparison table and the charts as linked PNGs, ready to
//! paste into a pull request.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::Renderer;
use super::charts::Rendered;
use super::saved::Saved;
use super::terminal::notices;

pub const FILE: &str = "report.md";

pub struct Markdown;

impl Renderer for Markdown {
    fn render(&self, saved: &Saved, charts: &[Rendered]) -> anyhow::Result<()> {
        let s = &saved.summary;
        let mut md = format!(
            "# pushbench: {}\n\nStarted {} on {} ({} cores), pushbench {} ({}), measured {} per transport.\n\n",
            s.scenario.name,
            s.started_at_utc,
            s.environment.cpu_model,
            s.environment.cores,
            s.pushbench.version,
            s.pushbench.git_revision,
            humantime::format_duration(s.scenario.phases.measure),
        );
        for line in notices(s) {
            let _ = writeln!(md, "> **{line}**\n");
        }
        md.push_str("| figure |");
        for t in &s.transports {
            let _ = write!(md, " {} |", t.transport);
        }
        md.push_str("\n|---|");
        md.push_str(&"---:|".repeat(s.transports.len()));
        md.push('\n');
        for (label, value) in super::table::rows(&s.transports) {
            let _ = write!(md, "| {} |", label.trim());
            for t in &s.transports {
                let _ = write!(md, " {} |", value(t));
            }
            md.push('\n');
        }
        md.push_str("\n## Charts\n\n");
        for chart in charts {
            let file = chart
                .png
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = write!(
                md,
                "### {}\n\n![{}]({file})\n\n",
                chart.kind.title(),
                chart.kind.title()
            );
        }
        md.push_str("Full report with the method and environment: [report.html](report.html).\n");
        let path = saved.dir.join(FILE);
        std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))
    }
}
