//! Joins results directories of one scenario, each holding other
//! transports, into one: how `run` gathers the transports it ran each in a
//! generator process of its own.
//!
//! Works on saved files only (summary.json, timeline.csv, the HdrHistogram
//! logs), like `report`: it never sees the runner's in-memory figures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use super::files::{self, HISTOGRAMS, SUMMARY, TIMELINE};
use super::saved;
use super::summary::{Summary, interval_log_name};

/// One histogram of a V2 interval log, with its times relative to the
/// log's start.
pub(super) struct Entry {
    pub start: Duration,
    pub length: Duration,
    pub tag: Option<String>,
    pub histogram: Histogram<u64>,
}

/// Reads a V2 interval log: its start time (seconds since the epoch) and
/// its histograms.
pub(super) fn read_log(path: &Path) -> anyhow::Result<(Duration, Vec<Entry>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut start = None;
    let mut entries = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        match entry
            .map_err(|e| anyhow::anyhow!("{}: not an HdrHistogram log: {e:?}", path.display()))?
        {
            LogEntry::StartTime(t) => start = Some(t),
            LogEntry::BaseTime(t) => {
                start.get_or_insert(t);
            }
            LogEntry::Interval(i) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .with_context(|| format!("{}: a histogram is not base64", path.display()))?;
                let histogram = deserializer
                    .deserialize(&mut raw.as_slice())
                    .map_err(|e| anyhow::anyhow!("{}: histogram: {e:?}", path.display()))?;
                entries.push(Entry {
                    start: i.start_timestamp(),
                    length: i.duration(),
                    tag: i.tag().map(|t| t.as_str().to_string()),
                    histogram,
                });
            }
        }
    }
    let start = start.with_context(|| format!("{}: no StartTime", path.display()))?;
    Ok((start, entries))
}

/// Joins `parts` (results directories of the same scenario, one or more
/// transports each, in run order) into `out`, under `summary`'s scenario,
/// environment and start time; the parts' transports and warnings are
/// appended to it. Returns the joined summary.
pub fn join_parts(parts: &[PathBuf], out: &Path, mut summary: Summary) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut rows = Vec::new();
    let mut window_logs = Vec::new();
    for part in parts {
        let s = saved::load_summary(&part.join(SUMMARY))?;
        if s.scenario.name != summary.scenario.name {
            bail!(
                "{}: a part of scenario {:?}, not {:?}",
                part.display(),
                s.scenario.name,
                summary.scenario.name
            );
        }
        if !s.complete {
            // The part knows why it stopped (the server died, say); the
            // run's own reason only knows that the part's process ended.
            summary.complete = false;
            if let Some(reason) = &s.incomplete_reason {
                summary.incomplete_reason = Some(reason.clone());
            }
        }
        for w in s.warnings {
            if !summary.warnings.contains(&w) {
                summary.warnings.push(w);
            }
        }
        summary
            .environment
            .reference_steps_ns
            .extend(s.environment.reference_steps_ns);
        for t in &s.transports {
            let name = interval_log_name(t.transport);
            std::fs::copy(part.join(&name), out.join(&name))
                .with_context(|| format!("copying {}", part.join(&name).display()))?;
            if let Some(p) = &t.proxy {
                std::fs::copy(part.join(&p.config_file), out.join(&p.config_file))
                    .with_context(|| format!("copying {}", part.join(&p.config_file).display()))?;
            }
        }
        summary.transports.extend(s.transports);
        rows.extend(files::read_timeline(&part.join(TIMELINE))?);
        window_logs.push(read_log(&part.join(HISTOGRAMS))?);
    }
    let steps = std::mem::take(&mut summary.environment.reference_steps_ns);
    summary.environment.set_reference_steps(steps);

    let path = out.join(SUMMARY);
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;

    let path = out.join(TIMELINE);
    let mut w =
        csv::Writer::from_path(&path).with_context(|| format!("writing {}", path.display()))?;
    for row in &rows {
        w.serialize(row)?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;

    // One window log, on the first part's start: every entry keeps its own
    // transport's times.
    let Some(first) = window_logs.first().map(|(start, _)| *start) else {
        return Ok(summary);
    };
    let entries: Vec<_> = window_logs
        .iter()
        .flat_map(|(start, entries)| {
            let offset = start.saturating_sub(first);
            entries
                .iter()
                .map(move |e| (offset + e.start, e.length, e.tag.as_deref(), &e.histogram))
        })
        .collect();
    files::write_log(
        &out.join(HISTOGRAMS),
        &[
            "pushbench measured-window histograms, tagged <transport>.<figure>; values in microseconds",
        ],
        std::time::UNIX_EPOCH + first,
        &entries,
    )?;
    Ok(summary)
}
