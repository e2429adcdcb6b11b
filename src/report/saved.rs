//! A results directory read back from disk: what `pushbench report`
//! renders from, and what `run` renders from too once it has written it,
//! so a report can always be regenerated without re-running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::files::{self, TimelineRow, WindowHistograms};
use super::summary::{OLDEST_READABLE_VERSION, SCHEMA_VERSION, Summary};
use crate::scenario::TransportKind;

pub struct Saved {
    pub dir: PathBuf,
    pub summary: Summary,
    pub timeline: Vec<TimelineRow>,
    pub histograms: BTreeMap<TransportKind, WindowHistograms>,
}

/// Reads a results directory; every error names the file at fault.
pub fn load(dir: &Path) -> anyhow::Result<Saved> {
    if !dir.is_dir() {
        bail!(
            "{}: not a results directory (it does not exist or is not a directory)",
            dir.display()
        );
    }
    let summary = load_summary(&dir.join(files::SUMMARY))?;
    let timeline = files::read_timeline(&dir.join(files::TIMELINE))?;
    let histograms = files::read_window_histograms(&dir.join(files::HISTOGRAMS))?;
    for t in &summary.transports {
        if !histograms.contains_key(&t.transport) {
            bail!(
                "{}: no histograms for {}",
                dir.join(files::HISTOGRAMS).display(),
                t.transport
            );
        }
    }
    Ok(Saved {
        dir: dir.to_path_buf(),
        summary,
        timeline,
        histograms,
    })
}

/// A summary.json itself, or the one inside a results directory.
pub fn summary_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(files::SUMMARY)
    } else {
        path.to_path_buf()
    }
}

/// Reads a summary.json, refusing other schema versions by name.
pub fn load_summary(path: &Path) -> anyhow::Result<Summary> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if (OLDEST_READABLE_VERSION as u64..=SCHEMA_VERSION as u64).contains(&v) => {}
        Some(v) => bail!(
            "{}: schema_version {v}, but this pushbench reads versions {OLDEST_READABLE_VERSION} to {SCHEMA_VERSION}",
            path.display()
        ),
        None => bail!(
            "{}: no schema_version: not a pushbench summary",
            path.display()
        ),
    }
    serde_json::from_value(value)
        .with_context(|| format!("{}: not a pushbench summary", path.display()))
}
