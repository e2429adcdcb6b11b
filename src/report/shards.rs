//! `pushbench merge`: joins the results directories of one run's shards
//! (`run --shard K/N`, each a generator of its own, on this machine or on
//! others) into one results directory, as if one generator had run every
//! client.
//!
//! Works on saved files only, like `report`. Counts are summed, latency
//! histograms added (every latency was taken on its own shard's clock,
//! against its own shard's publisher), per-event costs recomputed from the
//! sums. What cannot be merged is shown as unknown and said in a warning:
//! the server's CPU and memory (every shard measured the whole server over
//! its own window), the machine's load (each shard saw its own machine),
//! the publisher's request times (kept as percentiles only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::files::{self, HISTOGRAMS, SUMMARY, TIMELINE, TimelineRow, WindowHistograms};
use super::merge::read_log;
use super::saved;
use super::summary::{
    ClientMessageFigures, Cost, Delivery, GeneratorProcess, Percentiles, PhaseFigures, Processes,
    PublisherFigures, ShardOrigin, Summary, TransportSummary, interval_log_name,
};
use crate::scenario::TransportKind;

/// Why a merge did not happen.
#[derive(Debug)]
pub enum MergeError {
    /// The directories are not the shards of one run (exit 2).
    Refused(String),
    /// Reading or writing failed (exit 1).
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for MergeError {
    fn from(e: anyhow::Error) -> Self {
        MergeError::Failed(e)
    }
}

/// One shard's results directory, read back.
struct Shard {
    dir: PathBuf,
    index: u32,
    summary: Summary,
}

/// Merges the shards in `dirs` into `out` (created; must not hold a
/// summary already) and returns the merged summary.
pub fn merge_shards(dirs: &[PathBuf], out: &Path) -> Result<Summary, MergeError> {
    merge(dirs, out, None)
}

/// Merges the generator processes of one `run --generators N` (see
/// [`crate::runner::WindowGate`]): shards on this machine, against one
/// server, that measured exactly the same window. The server's CPU and peak
/// memory and the machine's load, which each of them measured over that
/// window, are then known; the summary carries `scenario`, the run's own.
pub fn merge_generators(
    dirs: &[PathBuf],
    out: &Path,
    scenario: &crate::scenario::Scenario,
    warnings: Vec<String>,
) -> Result<Summary, MergeError> {
    merge(dirs, out, Some((scenario, warnings)))
}

/// `one_window`: the scenario of a run whose shards measured one window,
/// and warnings of its own.
fn merge(
    dirs: &[PathBuf],
    out: &Path,
    one_window: Option<(&crate::scenario::Scenario, Vec<String>)>,
) -> Result<Summary, MergeError> {
    let refuse = |m: String| Err(MergeError::Refused(m));
    if out.join(SUMMARY).exists() {
        return refuse(format!(
            "{}: holds results already; give --out a new directory",
            out.display()
        ));
    }
    let mut shards = Vec::new();
    for dir in dirs {
        let summary = saved::load_summary(&dir.join(SUMMARY))
            .map_err(|e| MergeError::Refused(format!("{e:#}")))?;
        let Some(index) = summary.scenario.clients.shard else {
            return refuse(format!(
                "{}: not a shard's results (run --shard K/N writes them)",
                dir.display()
            ));
        };
        shards.push(Shard {
            dir: dir.clone(),
            index,
            summary,
        });
    }
    check_one_run(&mut shards).map_err(MergeError::Refused)?;

    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    let first = &shards[0].summary;
    let mut merged = first.clone();
    merged.scenario.clients.shard = None;
    merged.started_at_utc = shards
        .iter()
        .map(|s| s.summary.started_at_utc.clone())
        .min()
        .unwrap_or_default();
    merged.complete = shards.iter().all(|s| s.summary.complete);
    merged.incomplete_reason = shards
        .iter()
        .find_map(|s| {
            s.summary
                .incomplete_reason
                .as_ref()
                .map(|r| format!("shard {}: {r}", s.index))
        })
        .or_else(|| (!merged.complete).then(|| "a shard did not complete".into()));
    merged.environment.reference_steps_ns = shards
        .iter()
        .flat_map(|s| s.summary.environment.reference_steps_ns.iter().copied())
        .collect();
    merged.warnings = union(shards.iter().map(|s| &s.summary.warnings));
    merged.warnings.push(match one_window {
        None => format!(
            "merged from {} shards: counts are summed and latency histograms added; the server's CPU and memory and the machine's load are not merged (each shard measured them over its own window), see each shard's directory",
            shards.len()
        ),
        Some(_) => format!(
            "merged from {} generator processes that measured one window: counts are summed and latency histograms added; the server's CPU is the mean of what each measured over that window, the machine's load shard 0's",
            shards.len()
        ),
    });
    // The run's own scenario: the processes' say where they found the
    // server this process started, as if it were a target.
    if let Some((scenario, warnings)) = &one_window {
        let theirs = super::summary::scenario_warnings(&first.scenario);
        merged.warnings.retain(|w| !theirs.contains(w));
        merged
            .warnings
            .splice(0..0, super::summary::scenario_warnings(scenario));
        merged.warnings.extend(warnings.iter().cloned());
        merged.scenario = (*scenario).clone();
    }
    // Generator processes open one window whenever each of them started.
    if one_window.is_none() {
        merged.warnings.extend(skew_warning(
            &shards
                .iter()
                .map(|s| s.summary.started_at_utc.as_str())
                .collect::<Vec<_>>(),
        ));
    }
    // A run's own generator processes ran here, and their directories go
    // once merged: their figures are in `processes.generators`.
    merged.shards = shards
        .iter()
        .filter(|_| one_window.is_none())
        .map(|s| ShardOrigin {
            shard: s.index,
            directory: s.dir.display().to_string(),
            started_at_utc: s.summary.started_at_utc.clone(),
            complete: s.summary.complete,
            environment: s.summary.environment.clone(),
        })
        .collect();

    let histograms: Vec<BTreeMap<TransportKind, WindowHistograms>> = shards
        .iter()
        .map(|s| files::read_window_histograms(&s.dir.join(HISTOGRAMS)))
        .collect::<anyhow::Result<_>>()?;
    merged.transports = first
        .transports
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let all: Vec<&TransportSummary> =
                shards.iter().map(|s| &s.summary.transports[i]).collect();
            let h = add_window_histograms(t.transport, &histograms)?;
            let indices: Vec<u32> = shards.iter().map(|s| s.index).collect();
            Ok(merge_transport(&all, &indices, &h, one_window.is_some()))
        })
        .collect::<anyhow::Result<_>>()?;

    let path = out.join(SUMMARY);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&merged).map_err(anyhow::Error::from)? + "\n",
    )
    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    write_histograms(&shards, out, one_window.is_some())?;
    Ok(merged)
}

/// The shards must be one run's: one build, one scenario (apart from the
/// shard index), the same transports, and every shard of N exactly once.
fn check_one_run(shards: &mut [Shard]) -> Result<(), String> {
    let Some(first) = shards.first() else {
        return Err("no results directories given".into());
    };
    // The workload, without what each machine resolves for itself: the
    // generator's worker threads and the server's default to its cores,
    // and the file's path is where that machine keeps it.
    let key = |s: &Summary| {
        let mut scenario = s.scenario.clone();
        scenario.clients.shard = None;
        scenario.clients.workers = 0;
        scenario.server = first.summary.scenario.server.clone();
        scenario.file = String::new();
        serde_json::to_value(&scenario).unwrap_or_default()
    };
    let (dir0, build0, key0) = (
        first.dir.display().to_string(),
        first.summary.pushbench.clone(),
        key(&first.summary),
    );
    let transports0: Vec<TransportKind> = first
        .summary
        .transports
        .iter()
        .map(|t| t.transport)
        .collect();
    for s in shards.iter() {
        let b = &s.summary.pushbench;
        if s.summary.schema_version != first.summary.schema_version
            || b.version != build0.version
            || b.git_revision != build0.git_revision
        {
            return Err(format!(
                "{}: written by pushbench {} ({}, schema {}), {dir0} by {} ({}, schema {}): shards of one run come from one build",
                s.dir.display(),
                b.version,
                b.git_revision,
                s.summary.schema_version,
                build0.version,
                build0.git_revision,
                first.summary.schema_version
            ));
        }
        if let Some(path) = first_difference(&key0, &key(&s.summary), "scenario") {
            return Err(format!(
                "{}: another scenario than {dir0}'s ({path} differs): shards of one run share their scenario",
                s.dir.display()
            ));
        }
        let transports: Vec<TransportKind> =
            s.summary.transports.iter().map(|t| t.transport).collect();
        if transports != transports0 {
            return Err(format!(
                "{}: transports {}, {dir0}: {}; shards of one run measure the same transports",
                s.dir.display(),
                names(&transports),
                names(&transports0)
            ));
        }
    }
    let n = first.summary.scenario.clients.shards;
    shards.sort_by_key(|s| s.index);
    for pair in shards.windows(2) {
        if pair[0].index == pair[1].index {
            return Err(format!(
                "shard {} is given twice: {} and {}",
                pair[0].index,
                pair[0].dir.display(),
                pair[1].dir.display()
            ));
        }
    }
    let missing: Vec<String> = (0..n)
        .filter(|k| !shards.iter().any(|s| s.index == *k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "shard(s) {} of {n} missing: a merge of part of a run would understate it",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// Shards that did not start together did not run side by side: their
/// rates were not summed over one window, and the timeline adds seconds
/// of different times. Start times are whole seconds, so a spread of up
/// to 1 s is taken as together.
fn skew_warning(started_at_utc: &[&str]) -> Option<String> {
    let times: Vec<std::time::SystemTime> = started_at_utc
        .iter()
        .filter_map(|t| humantime::parse_rfc3339(t).ok())
        .collect();
    if times.len() < started_at_utc.len() {
        return Some(
            "a shard's start time cannot be read, so whether the shards ran side by side is unknown"
                .into(),
        );
    }
    let (first, last) = (times.iter().min()?, times.iter().max()?);
    let spread = last.duration_since(*first).unwrap_or_default();
    (spread > Duration::from_secs(1)).then(|| {
        format!(
            "the shards started up to {} s apart: delivered_per_s adds rates of windows that did not coincide, and the timeline adds seconds counted from each shard's own start; start them together",
            spread.as_secs()
        )
    })
}

fn names(t: &[TransportKind]) -> String {
    t.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

/// The dotted path of the first place two JSON values differ.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys().filter(|k| !x.contains_key(*k)))
            .find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{at}.{k}"),
                )
            }),
        _ => (a != b).then(|| at.to_owned()),
    }
}

/// Each line once, in first-seen order.
fn union<'a>(lists: impl Iterator<Item = &'a Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lists.flatten() {
        if !out.contains(line) {
            out.push(line.clone());
        }
    }
    out
}

fn add(into: &mut Histogram<u64>, h: &Histogram<u64>) -> anyhow::Result<()> {
    into.add(h)
        .map_err(|e| anyhow::anyhow!("histograms of different bounds: {e:?}"))
}

/// One transport's measured-window histograms over every shard.
fn add_window_histograms(
    t: TransportKind,
    shards: &[BTreeMap<TransportKind, WindowHistograms>],
) -> anyhow::Result<WindowHistograms> {
    let mut all = shards.iter().map(|s| {
        s.get(&t)
            .ok_or_else(|| anyhow::anyhow!("a shard's {HISTOGRAMS} has no {t} histograms"))
    });
    let mut sum = all.next().expect("at least one shard")?.clone();
    for h in all {
        let h = h?;
        add(&mut sum.latency, &h.latency)?;
        add(&mut sum.latency_from_publish, &h.latency_from_publish)?;
        add(&mut sum.connect, &h.connect)?;
        sum.echo = match (sum.echo.take(), &h.echo) {
            (Some(mut a), Some(b)) => {
                add(&mut a, b)?;
                Some(a)
            }
            _ => None,
        };
    }
    Ok(sum)
}

fn sum_known(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.sum()
}

fn sum_known_f(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.sum()
}

fn max_known(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::max))
}

fn per_event(value: f64, events: u64) -> Option<f64> {
    (events > 0).then(|| value / events as f64)
}

/// One transport's figures over every shard; `one_window`: the shards
/// measured one server over one window (see [`merge_generators`]).
fn merge_transport(
    all: &[&TransportSummary],
    shards: &[u32],
    h: &WindowHistograms,
    one_window: bool,
) -> TransportSummary {
    let first = all[0];
    let sum = |f: fn(&TransportSummary) -> u64| all.iter().map(|t| f(t)).sum::<u64>();
    let events = sum(|t| t.throughput.delivered_in_window);
    let window_s = all
        .iter()
        .map(|t| t.throughput.window_s)
        .fold(0.0, f64::max);
    let generator_cpu_s = sum_known_f(all.iter().map(|t| t.processes.generator_cpu_s));
    let mut warnings = union(all.iter().map(|t| &t.warnings));
    let server_cpu: Vec<String> = all
        .iter()
        .filter_map(|t| t.processes.server_cpu_s)
        .map(|s| format!("{s:.3} s"))
        .collect();
    if !server_cpu.is_empty() && !one_window {
        warnings.push(format!(
            "server CPU is unknown in a merged run: every shard measured the whole server over its own window ({})",
            server_cpu.join(", ")
        ));
    }
    let mut merged = first.clone();
    merged.complete = all.iter().all(|t| t.complete);
    merged.incomplete_reason = all.iter().find_map(|t| t.incomplete_reason.clone());
    merged.warnings = warnings;
    merged.clients.requested = all.iter().map(|t| t.clients.requested).sum();
    merged.clients.subscribed = sum(|t| t.clients.subscribed);
    merged.phases = PhaseFigures {
        connect_s: max_known(all.iter().map(|t| t.phases.connect_s)),
        warmup_s: max_known(all.iter().map(|t| t.phases.warmup_s)),
        measure_s: max_known(all.iter().map(|t| t.phases.measure_s)),
        drain_s: max_known(all.iter().map(|t| t.phases.drain_s)),
    };
    // Shards run side by side: their rates add up.
    merged.throughput.delivered_per_s = all.iter().map(|t| t.throughput.delivered_per_s).sum();
    merged.throughput.delivered_in_window = events;
    merged.throughput.window_s = window_s;
    merged.latency_us = Percentiles::of(&h.latency);
    merged.latency_from_publish_us = Percentiles::of(&h.latency_from_publish);
    merged.connect_us = Percentiles::of(&h.connect);
    merged.echo_us = first
        .echo_us
        .as_ref()
        .and(h.echo.as_ref())
        .map(Percentiles::of);
    merged.client_messages = first
        .client_messages
        .as_ref()
        .map(|_| ClientMessageFigures {
            sent: all
                .iter()
                .filter_map(|t| t.client_messages.as_ref())
                .map(|m| m.sent)
                .sum(),
            failed: all
                .iter()
                .filter_map(|t| t.client_messages.as_ref())
                .map(|m| m.failed)
                .sum(),
            received_by_server: None,
        });
    merged.delivery = Delivery {
        expected: sum_known(all.iter().map(|t| t.delivery.expected)),
        delivered: sum(|t| t.delivery.delivered),
        lost: sum_known(all.iter().map(|t| t.delivery.lost)),
        duplicated: sum(|t| t.delivery.duplicated),
        out_of_order: sum(|t| t.delivery.out_of_order),
        missed_reported: sum(|t| t.delivery.missed_reported),
        unexpected: sum(|t| t.delivery.unexpected),
    };
    let (bytes_down, bytes_up, requests) = (
        sum(|t| t.cost.bytes_down),
        sum(|t| t.cost.bytes_up),
        sum(|t| t.cost.requests),
    );
    merged.cost = Cost {
        bytes_down_per_event: per_event(bytes_down as f64, events),
        bytes_up_per_event: per_event(bytes_up as f64, events),
        requests_per_event: per_event(requests as f64, events),
        server_cpu_us_per_event: None,
        generator_cpu_us_per_event: generator_cpu_s.and_then(|c| per_event(c * 1e6, events)),
        bytes_down,
        bytes_up,
        requests,
        connections_opened: sum(|t| t.cost.connections_opened),
    };
    // Over one window, every shard's reading of the server is a reading of
    // the same CPU time; they differ only by when each took its snapshots.
    let server_cpu_s = one_window
        .then(|| sum_known_f(all.iter().map(|t| t.processes.server_cpu_s)))
        .flatten()
        .map(|s| s / all.len() as f64);
    merged.cost.server_cpu_us_per_event = server_cpu_s.and_then(|c| per_event(c * 1e6, events));
    // Shard 0's share of the machine counts its own generator; the others'
    // generators are added in proportion.
    let machine_cpu_share = match (one_window, first.processes.machine_cpu_share) {
        (true, Some(share)) => match (
            first.processes.generator_cpu_s,
            first.processes.server_cpu_s,
            generator_cpu_s,
            server_cpu_s,
        ) {
            (Some(g0), Some(s0), Some(g), Some(s)) if g0 + s0 > 0.0 => {
                Some(share * (g + s) / (g0 + s0))
            }
            _ => None,
        },
        _ => None,
    };
    merged.processes = Processes {
        server_cpu_s,
        generator_cpu_s,
        server_peak_rss_bytes: one_window
            .then(|| {
                all.iter()
                    .map(|t| t.processes.server_peak_rss_bytes)
                    .collect::<Option<Vec<u64>>>()
                    .and_then(|v| v.into_iter().max())
            })
            .flatten(),
        // Every shard's generator at its peak: an upper bound of their
        // memory together.
        generator_peak_rss_bytes: sum_known(
            all.iter().map(|t| t.processes.generator_peak_rss_bytes),
        ),
        server_memory_per_connection_bytes: None,
        // The mean over the shards' generators.
        generator_cpu_share: sum_known_f(all.iter().map(|t| t.processes.generator_cpu_share))
            .map(|s| s / all.len() as f64),
        machine_cpu_share,
        generators: all
            .iter()
            .zip(shards)
            .map(|(t, &shard)| GeneratorProcess {
                shard,
                delivered_in_window: t.throughput.delivered_in_window,
                cpu_s: t.processes.generator_cpu_s,
                cpu_share: t.processes.generator_cpu_share,
                peak_rss_bytes: t.processes.generator_peak_rss_bytes,
            })
            .collect(),
    };
    merged.machine = if one_window {
        first.machine.clone()
    } else {
        None
    };
    merged.server = None;
    merged.errors = BTreeMap::new();
    for t in all {
        for (k, v) in &t.errors {
            *merged.errors.entry(k.clone()).or_default() += v;
        }
    }
    merged.link = None;
    merged.proxy = None;
    merged.publisher = first.publisher.as_ref().map(|_| merge_publishers(all));
    merged
}

fn merge_publishers(all: &[&TransportSummary]) -> PublisherFigures {
    let p: Vec<&PublisherFigures> = all.iter().filter_map(|t| t.publisher.as_ref()).collect();
    let published: u64 = p.iter().map(|p| p.published).sum();
    PublisherFigures {
        published,
        failed: p.iter().map(|p| p.failed).sum(),
        requests: p.iter().map(|p| p.requests).sum(),
        // Kept as percentiles only: they cannot be added.
        request_time_us: None,
        max_lag_us: p.iter().map(|p| p.max_lag_us).max().unwrap_or(0),
        bytes_up: p.iter().map(|p| p.bytes_up).sum(),
        bytes_down: p.iter().map(|p| p.bytes_down).sum(),
        connections_opened: p.iter().map(|p| p.connections_opened).sum(),
        first_error: p.iter().find_map(|p| p.first_error.clone()),
        cpu_us_per_published_event: p
            .iter()
            .map(|p| p.cpu_us_per_published_event.map(|c| c * p.published as f64))
            .sum::<Option<f64>>()
            .and_then(|c| per_event(c, published)),
    }
}

/// The merged histogram logs and timeline: window histograms added per
/// tag; each transport's per-second histograms added by the second since
/// its shard's own start of that transport, and the timeline's counts
/// summed the same way, its latency taken from the added histograms.
/// `one_window`: the shards ran on one machine over one window, so the
/// first shard's (shard 0's) machine columns are the machine's.
fn write_histograms(shards: &[Shard], out: &Path, one_window: bool) -> anyhow::Result<()> {
    // histograms.hlog: every tag's histograms added, on the first shard's times.
    let logs: Vec<_> = shards
        .iter()
        .map(|s| read_log(&s.dir.join(HISTOGRAMS)))
        .collect::<anyhow::Result<_>>()?;
    let (start, first_entries) = &logs[0];
    let mut window = Vec::new();
    for e in first_entries {
        let mut h = e.histogram.clone();
        for (_, entries) in &logs[1..] {
            if let Some(other) = entries.iter().find(|o| o.tag == e.tag) {
                add(&mut h, &other.histogram)?;
            }
        }
        window.push((e.start, e.length, e.tag.clone(), h));
    }
    files::write_log(
        &out.join(HISTOGRAMS),
        &[
            "pushbench measured-window histograms, tagged <transport>.<figure>; values in microseconds; merged from shards",
        ],
        std::time::UNIX_EPOCH + *start,
        &window
            .iter()
            .map(|(s, l, t, h)| (*s, *l, t.as_deref(), h))
            .collect::<Vec<_>>(),
    )?;

    let mut rows: BTreeMap<(TransportKind, u64), TimelineRow> = BTreeMap::new();
    for s in shards {
        for row in files::read_timeline(&s.dir.join(TIMELINE))? {
            match rows.get_mut(&(row.transport, row.second)) {
                None => {
                    let mut row = row;
                    // Each shard's machine, not one machine.
                    if !one_window {
                        row.machine_busy_pct = None;
                        row.machine_steal_pct = None;
                        row.machine_iowait_pct = None;
                        row.run_queue = None;
                    }
                    // One generator process's wait, not all of theirs.
                    row.generator_wait_ms = None;
                    rows.insert((row.transport, row.second), row);
                }
                Some(r) => {
                    r.connected += row.connected;
                    r.delivered += row.delivered;
                    r.bytes_down += row.bytes_down;
                    r.bytes_up += row.bytes_up;
                    r.requests += row.requests;
                    r.errors += row.errors;
                }
            }
        }
    }
    for t in &shards[0].summary.transports {
        let name = interval_log_name(t.transport);
        let mut seconds: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
        let mut log_start = None;
        for s in shards {
            let (start, entries) = read_log(&s.dir.join(&name))?;
            log_start = Some(log_start.map_or(start, |l: Duration| l.min(start)));
            for e in entries {
                match seconds.get_mut(&e.start.as_secs()) {
                    Some(h) => add(h, &e.histogram)?,
                    None => {
                        seconds.insert(e.start.as_secs(), e.histogram);
                    }
                }
            }
        }
        for (second, h) in &seconds {
            if let Some(row) = rows.get_mut(&(t.transport, *second)) {
                let q = |v: u64| (!h.is_empty()).then_some(v);
                row.latency_p50_us = q(h.value_at_quantile(0.5));
                row.latency_p99_us = q(h.value_at_quantile(0.99));
                row.latency_max_us = q(h.max());
            }
        }
        let entries: Vec<_> = seconds
            .iter()
            .map(|(s, h)| (Duration::from_secs(*s), Duration::from_secs(1), None, h))
            .collect();
        files::write_log(
            &out.join(&name),
            &[
                &format!(
                    "pushbench {} latency (receive - intended publish time), per second received, merged from shards (seconds since each shard's own start)",
                    t.transport
                ),
                "values in microseconds; with HistogramLogProcessor use -outputValueUnitRatio 1000 for ms",
            ],
            std::time::UNIX_EPOCH + log_start.unwrap_or_default(),
            &entries,
        )?;
    }
    let path = out.join(TIMELINE);
    let mut w = csv::Writer::from_path(&path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    for row in rows.values() {
        w.serialize(row)?;
    }
    w.flush()
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, edit: impl Fn(&mut Summary)) -> Shard {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference/summary.json");
        let mut summary = saved::load_summary(&path).unwrap();
        summary.scenario.clients.shards = 2;
        summary.scenario.clients.shard = Some(index);
        edit(&mut summary);
        Shard {
            dir: PathBuf::from(format!("shard-{index}")),
            index,
            summary,
        }
    }

    #[test]
    fn shards_of_one_run_are_told_from_others_naming_what_differs() {
        // What each machine resolves for itself may differ.
        let mut ok = [
            shard(1, |s| s.scenario.clients.workers = 8),
            shard(0, |_| {}),
        ];
        assert_eq!(check_one_run(&mut ok), Ok(()));
        assert_eq!(ok[0].index, 0, "sorted by shard");
        let e = check_one_run(&mut [
            shard(0, |_| {}),
            shard(1, |s| s.scenario.publish.rate *= 2.0),
        ])
        .unwrap_err();
        assert!(
            e.contains("shard-1: another scenario than shard-0's (scenario.publish.rate differs)"),
            "{e}"
        );
        let e = check_one_run(&mut [
            shard(0, |_| {}),
            shard(1, |s| s.pushbench.git_revision = "other".into()),
        ])
        .unwrap_err();
        assert!(e.contains("one build"), "{e}");
        let e = check_one_run(&mut [
            shard(0, |_| {}),
            shard(1, |s| {
                s.transports.pop();
            }),
        ])
        .unwrap_err();
        assert!(e.contains("the same transports"), "{e}");
        let e = check_one_run(&mut [shard(1, |_| {})]).unwrap_err();
        assert!(e.contains("shard(s) 0 of 2 missing"), "{e}");
    }

    #[test]
    fn shards_that_did_not_start_together_are_said_to() {
        assert_eq!(
            skew_warning(&["2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z"]),
            None
        );
        let w = skew_warning(&["2026-11-22T10:00:00Z", "2026-11-22T10:00:07Z"]).unwrap();
        assert!(w.contains("started up to 7 s apart"), "{w}");
        let w = skew_warning(&["2026-11-22T10:00:00Z", "soon"]).unwrap();
        assert!(w.contains("unknown"), "{w}");
    }

    #[test]
    fn counts_add_up_and_what_cannot_be_merged_is_unknown() {
        let a = shard(0, |_| {});
        let b = shard(1, |_| {});
        let (ta, tb) = (&a.summary.transports[0], &b.summary.transports[0]);
        let h = WindowHistograms {
            latency: Histogram::new(3).unwrap(),
            latency_from_publish: Histogram::new(3).unwrap(),
            connect: Histogram::new(3).unwrap(),
            echo: None,
        };
        let m = merge_transport(&[ta, tb], &[0, 1], &h, false);
        assert_eq!(m.delivery.delivered, 2 * ta.delivery.delivered);
        assert_eq!(m.delivery.expected, ta.delivery.expected.map(|e| 2 * e));
        assert_eq!(m.cost.bytes_down, 2 * ta.cost.bytes_down);
        // Per event: the same as each shard's, from the sums.
        let per = |v: Option<f64>| v.map(|v| (v * 1000.0).round());
        assert_eq!(
            per(m.cost.bytes_down_per_event),
            per(ta.cost.bytes_down_per_event)
        );
        assert_eq!(m.clients.requested, 2 * ta.clients.requested);
        assert!(m.processes.server_cpu_s.is_none() && m.cost.server_cpu_us_per_event.is_none());
        if ta.processes.server_cpu_s.is_some() {
            assert!(
                m.warnings
                    .iter()
                    .any(|w| w.contains("server CPU is unknown"))
            );
        }
    }
}
