//! summary.json: every figure of a run, its scenario and its environment,
//! in a versioned schema (docs/summary.schema.json, generated from these
//! types; a test keeps the two in step).
//!
//! Units are in the field names: `_us` microseconds, `_s` seconds,
//! `_bytes` bytes. "Per event" means per event delivered inside the
//! measured window.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::environment::{Build, Environment};
use crate::load::tracker::DeliveryCounts;
use crate::runner::{Ending, RunOutcome, TransportRun};
use crate::scenario::{Scenario, TransportKind};

/// Bumped on any change a reader of summary.json would notice.
pub const SCHEMA_VERSION: u32 = 4;
/// The oldest version this pushbench still reads: versions 2 to 4 only
/// made `delivery.expected` and `delivery.lost` nullable, added fields
/// with defaults and added transports, so older summaries read as new ones.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// The generator is called saturated above this share of its worker threads' CPU.
pub const GENERATOR_SATURATION: f64 = 0.85;

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    pub schema_version: u32,
    /// False when the run was interrupted or failed; the figures are then
    /// what was measured until it stopped.
    pub complete: bool,
    pub incomplete_reason: Option<String>,
    /// RFC 3339 UTC time the run began.
    pub started_at_utc: String,
    pub pushbench: Build,
    pub environment: Environment,
    pub scenario: Scenario,
    /// Reasons to distrust or qualify every figure of the run.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub transports: Vec<TransportSummary>,
    /// The shards `pushbench merge` joined into this summary, in shard
    /// order (empty for a run of one process): when, where and how each ran.
    #[serde(default)]
    pub shards: Vec<ShardOrigin>,
}

/// One shard of a merged run (`run --shard K/N`).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShardOrigin {
    /// K of `--shard K/N`.
    pub shard: u32,
    /// The shard's results directory as given to `pushbench merge`.
    pub directory: String,
    pub started_at_utc: String,
    pub complete: bool,
    /// The machine the shard's generator ran on.
    pub environment: Environment,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TransportSummary {
    pub transport: TransportKind,
    pub complete: bool,
    pub incomplete_reason: Option<String>,
    /// Reasons to distrust or qualify these figures.
    pub warnings: Vec<String>,
    pub clients: ClientFigures,
    pub phases: PhaseFigures,
    pub throughput: Throughput,
    /// Receive time minus the event's intended publish time (open-loop
    /// schedule): includes any delay in the server's publisher, fan-out,
    /// network and, for long polling, the re-poll gap. Events intended
    /// inside the measured window.
    pub latency_us: Percentiles,
    /// Receive time minus the time the server actually published the event
    /// into its hub: the uncorrected figure, blind to publisher backlog.
    pub latency_from_publish_us: Percentiles,
    /// TCP connect, handshake and the answer to the subscription, every
    /// (re)connection.
    pub connect_us: Percentiles,
    /// Echo requests: receive time of the server's answer minus the
    /// request's intended send time (open-loop), when the scenario has them.
    #[serde(default)]
    pub echo_us: Option<Percentiles>,
    /// Messages the clients sent, when the scenario has them.
    #[serde(default)]
    pub client_messages: Option<ClientMessageFigures>,
    /// Over the whole subscription of every client, drain included.
    pub delivery: Delivery,
    pub cost: Cost,
    pub processes: Processes,
    /// The whole machine during the measured window (every process, the
    /// kernel and the hypervisor), sampled each second.
    #[serde(default)]
    pub machine: Option<MachineFigures>,
    pub server: Option<ServerFigures>,
    /// Client errors by kind (each usually followed by a reconnect).
    pub errors: BTreeMap<String, u64>,
    /// Files of this transport in the results directory.
    pub files: Files,
    /// The emulated link it ran over (`[network]`): as configured, as
    /// probed, what physics predicts, and the delay stage's own figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkFigures>,
    /// The reverse proxy it ran through (`[proxy]`), measured like the
    /// server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyFigures>,
    /// Who published the events: the bundled server's in-process publisher
    /// or the generator's publisher through the server's publish interface.
    #[serde(default)]
    pub publish_from: crate::scenario::PublishFrom,
    /// The generator's publisher, when it published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<PublisherFigures>,
}

/// The generator's publisher: its requests are part of the latency (as in
/// an application whose backend publishes over the network) and are
/// reported apart here. Its bytes are not in `cost`, which counts the
/// clients' sockets.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PublisherFigures {
    /// Events the server accepted (Socket.IO: emitted, it answers nothing).
    pub published: u64,
    /// Events whose request failed or was refused: not published, not expected.
    pub failed: u64,
    pub requests: u64,
    /// Publish request to its answer, every request of the run; none
    /// where the channel has no answers (Socket.IO).
    pub request_time_us: Option<Percentiles>,
    /// How late, at most, an event left the publisher after its intended time.
    pub max_lag_us: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub connections_opened: u64,
    /// The first failure, as it was reported.
    pub first_error: Option<String>,
    /// CPU time of the publisher's thread over the whole run, per event it
    /// published (already part of the generator's CPU).
    pub cpu_us_per_published_event: Option<f64>,
}

impl PublisherFigures {
    fn of(p: &crate::publisher::PublisherReport) -> PublisherFigures {
        PublisherFigures {
            published: p.published,
            failed: p.failed,
            requests: p.requests,
            request_time_us: (!p.request_time.is_empty()).then(|| Percentiles::of(&p.request_time)),
            max_lag_us: p.max_lag_ns / 1000,
            bytes_up: p.counters.bytes_up,
            bytes_down: p.counters.bytes_down,
            connections_opened: p.counters.connections,
            first_error: p.first_error.clone(),
            cpu_us_per_published_event: p
                .cpu
                .filter(|_| p.published > 0)
                .map(|c| c.as_secs_f64() * 1e6 / p.published as f64),
        }
    }
}

/// One transport's reverse proxy.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProxyFigures {
    pub kind: String,
    /// CPU time (user + system) over the measured window.
    pub cpu_s: Option<f64>,
    pub cpu_us_per_event: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    /// Growth of its RSS while the clients connected, per client.
    pub memory_per_connection_bytes: Option<f64>,
    /// Its generated configuration, in the results directory.
    pub config_file: String,
}

pub fn proxy_config_name(kind: TransportKind, proxy: &str) -> String {
    format!("{proxy}-{}.conf", kind.name())
}

/// One transport's emulated link.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinkFigures {
    pub configured: crate::network::Network,
    /// TCP handshakes through the link just before the clients started,
    /// each one round trip (SYN out, SYN-ACK back), sorted, in ms.
    pub probe_rtt_ms: Vec<f64>,
    pub probe_rtt_median_ms: Option<f64>,
    /// What the link alone costs, from its configured figures.
    pub predicted: LinkPrediction,
    /// The delay stage's own precision and drops; none when the link needs
    /// no stage (rate limit only) or the stage could not report.
    pub stage: Option<crate::network::stage::StageReport>,
    /// The delay stage's CPU over the measured window (its own process).
    pub stage_cpu_s: Option<f64>,
    pub stage_cpu_us_per_event: Option<f64>,
    pub stage_peak_rss_bytes: Option<u64>,
    /// Packets the rate limits' queues (`queue`) dropped over the measured
    /// window, towards the server and towards the clients; none where that
    /// direction has no rate limit.
    #[serde(default)]
    pub rate_limit_dropped_up: Option<u64>,
    #[serde(default)]
    pub rate_limit_dropped_down: Option<u64>,
    /// TCP segments the generator's side retransmitted over the measured
    /// window: its requests and messages (and the server's ACKs of them)
    /// lost on the way.
    pub retransmitted_up: Option<u64>,
    /// TCP segments the server's side retransmitted over the measured
    /// window: events (and the clients' ACKs of them) lost on the way.
    pub retransmitted_down: Option<u64>,
}

/// Physics of the configured link for this transport, to set beside the
/// measured figures.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinkPrediction {
    /// One-way delay less the jitter, the floor of any push latency: no
    /// event arrives sooner.
    pub latency_floor_ms: f64,
    /// Long polling's worst case for an event published just as an answer
    /// left: its trip, the re-poll's and the event's, 1.5 RTT. None for
    /// transports that do not re-poll.
    pub long_poll_worst_ms: Option<f64>,
    /// Floor of connect time: TCP (1 RTT, only for a client that opens its
    /// own connection: HTTP/2 clients share one), the request or upgrade
    /// (1 RTT), WebSocket's subscription after the upgrade (1 RTT), and
    /// TLS 1.3 (1 RTT) when the run uses TLS.
    pub connect_floor_ms: f64,
}

impl LinkFigures {
    fn of(l: &crate::runner::LinkRun, kind: TransportKind, tls: bool, events: u64) -> LinkFigures {
        let rtt = l.configured.rtt.as_secs_f64() * 1e3;
        let jitter = l.configured.jitter.as_secs_f64() * 1e3;
        let stage_cpu_s = l.stage_cpu.map(|d| d.as_secs_f64());
        let own_connection = !kind.multiplexed();
        let websocket = matches!(kind, TransportKind::Websocket | TransportKind::WebsocketH2);
        let re_polls = matches!(
            kind,
            TransportKind::LongPolling
                | TransportKind::LongPollingClose
                | TransportKind::LongPollingH2
        );
        let round_trips = [own_connection, true, websocket, tls && own_connection]
            .iter()
            .filter(|b| **b)
            .count() as f64;
        LinkFigures {
            configured: l.configured.clone(),
            probe_rtt_median_ms: l.probe_rtt_ms.get(l.probe_rtt_ms.len() / 2).copied(),
            probe_rtt_ms: l.probe_rtt_ms.clone(),
            predicted: LinkPrediction {
                latency_floor_ms: (rtt / 2.0 - jitter).max(0.0),
                long_poll_worst_ms: re_polls.then_some(rtt * 1.5),
                connect_floor_ms: rtt * round_trips,
            },
            stage: l.stage.clone(),
            stage_cpu_s,
            stage_cpu_us_per_event: stage_cpu_s.and_then(|s| per_event(s * 1e6, events)),
            stage_peak_rss_bytes: l.stage_peak_rss,
            rate_limit_dropped_up: l.rate_limit_dropped.0,
            rate_limit_dropped_down: l.rate_limit_dropped.1,
            retransmitted_up: l.retransmitted_up,
            retransmitted_down: l.retransmitted_down,
        }
    }
}

/// Delivery counts over every client. `expected` and `lost` need the
/// server's final sequence number per topic: when the server died before
/// it could say, they cannot be known and are null (shown as "unknown"),
/// never a number that only covers what the clients happened to see.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Delivery {
    /// Events published on the clients' topics while they were subscribed.
    pub expected: Option<u64>,
    /// Distinct expected events that arrived.
    pub delivered: u64,
    /// `expected - delivered`: never arrived (including `missed_reported`).
    pub lost: Option<u64>,
    /// Arrivals of an event already delivered.
    pub duplicated: u64,
    /// Events that arrived after a later event of the same topic.
    pub out_of_order: u64,
    /// Events the server said had left its buffer before it could send them.
    pub missed_reported: u64,
    /// Events for topics a client never subscribed to, or from before its
    /// subscription began.
    pub unexpected: u64,
}

impl Delivery {
    /// `known`: whether the server's final heads were read.
    pub fn of(d: &DeliveryCounts, known: bool) -> Delivery {
        Delivery {
            expected: known.then_some(d.expected),
            delivered: d.delivered,
            lost: known.then_some(d.lost),
            duplicated: d.duplicated,
            out_of_order: d.out_of_order,
            missed_reported: d.missed_reported,
            unexpected: d.unexpected,
        }
    }
}

/// A count that may be unknown, for tables and charts.
pub fn count_or_unknown(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClientFigures {
    pub requested: u32,
    /// Clients whose subscription was answered at least once.
    pub subscribed: u64,
}

/// Client-to-server messages (chat lines, echo requests) over the run.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClientMessageFigures {
    /// Sent and acknowledged (HTTP 204; WebSocket: written).
    pub sent: u64,
    /// Due while the client had no connection, or failed on the way.
    pub failed: u64,
    /// Client messages the server published during this transport's run
    /// (counted by the server).
    pub received_by_server: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseFigures {
    pub connect_s: Option<f64>,
    pub warmup_s: Option<f64>,
    pub measure_s: Option<f64>,
    pub drain_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Throughput {
    /// Events received inside the measured window, per second.
    pub delivered_per_s: f64,
    pub delivered_in_window: u64,
    pub window_s: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }
}

/// Counted at the generator's sockets over the measured window.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cost {
    /// Server-to-client bytes per delivered event, HTTP and frame headers included.
    pub bytes_down_per_event: Option<f64>,
    /// Client-to-server bytes per delivered event.
    pub bytes_up_per_event: Option<f64>,
    /// HTTP requests per delivered event (WebSocket: only the upgrades).
    pub requests_per_event: Option<f64>,
    pub server_cpu_us_per_event: Option<f64>,
    pub generator_cpu_us_per_event: Option<f64>,
    pub bytes_down: u64,
    pub bytes_up: u64,
    pub requests: u64,
    /// TCP connections opened over the whole run (reconnects included).
    pub connections_opened: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Processes {
    /// CPU time (user + system) over the measured window.
    pub server_cpu_s: Option<f64>,
    pub generator_cpu_s: Option<f64>,
    pub server_peak_rss_bytes: Option<u64>,
    pub generator_peak_rss_bytes: Option<u64>,
    /// Growth of the server's RSS from before the clients connected to
    /// after, divided by the clients subscribed.
    pub server_memory_per_connection_bytes: Option<f64>,
    /// Generator CPU over the window as a share of its worker threads.
    pub generator_cpu_share: Option<f64>,
    /// Server plus generator CPU (plus the proxy's and the link stage's,
    /// when they run) as a share of all cores.
    pub machine_cpu_share: Option<f64>,
    /// Each generator process's own figures, in shard order, when the
    /// clients ran in several (`run --generators N`, `pushbench merge`);
    /// `generator_cpu_s` and `generator_peak_rss_bytes` are their sum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<GeneratorProcess>,
}

/// One generator process of a run whose clients ran in several.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GeneratorProcess {
    /// K of its `--shard K/N`.
    pub shard: u32,
    /// Events its clients received in the window.
    pub delivered_in_window: u64,
    /// Its CPU time over the window.
    pub cpu_s: Option<f64>,
    /// Its CPU over the window as a share of its worker threads.
    pub cpu_share: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

/// The whole machine over the seconds that overlap the measured window
/// (see `machine`): the limits in `machine` turn these into warnings.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MachineFigures {
    /// Seconds sampled.
    pub samples: u32,
    /// Busy (user, system, irq) share of all CPUs, percent: the busiest second.
    pub busy_pct_max: f64,
    pub busy_pct_mean: f64,
    /// Share taken by the hypervisor (steal), percent: the worst second.
    pub steal_pct_max: f64,
    /// Busy plus steal in the worst second, percent: the CPU the run could
    /// not have had.
    pub busy_and_steal_pct_max: f64,
    pub iowait_pct_max: f64,
    /// Most runnable tasks seen at a second's end.
    pub run_queue_max: u32,
    /// Most time the generator's threads waited for a CPU in one second, ms.
    pub generator_wait_ms_max: Option<f64>,
}

impl MachineFigures {
    /// The samples whose second overlaps [from_ns, to_ns) of a run that
    /// began at base_ns; `None` without any.
    pub fn over(
        samples: &[crate::machine::MachineSample],
        base_ns: u64,
        from_ns: u64,
        to_ns: u64,
    ) -> Option<MachineFigures> {
        let inside: Vec<_> = samples
            .iter()
            .filter(|s| {
                let start = base_ns + s.second * 1_000_000_000;
                start < to_ns && start + 1_000_000_000 > from_ns
            })
            .collect();
        if inside.is_empty() {
            return None;
        }
        let max = |f: fn(&crate::machine::MachineSample) -> f64| {
            inside.iter().map(|s| f(s)).fold(0.0, f64::max)
        };
        Some(MachineFigures {
            samples: inside.len() as u32,
            busy_pct_max: max(|s| s.busy_pct),
            busy_pct_mean: inside.iter().map(|s| s.busy_pct).sum::<f64>() / inside.len() as f64,
            steal_pct_max: max(|s| s.steal_pct),
            busy_and_steal_pct_max: max(|s| s.busy_pct + s.steal_pct),
            iowait_pct_max: max(|s| s.iowait_pct),
            run_queue_max: inside.iter().map(|s| s.run_queue).max().unwrap_or(0),
            generator_wait_ms_max: inside
                .iter()
                .filter_map(|s| s.generator_wait_ms)
                .reduce(f64::max),
        })
    }

    /// Why these figures cannot be taken at face value, if they cannot:
    /// each reason names the limit and the figures it taints.
    pub fn warnings(&self, workers: u32) -> Vec<String> {
        use crate::machine::{BUSY_LIMIT_PCT, GENERATOR_WAIT_LIMIT_MS, STEAL_LIMIT_PCT};
        let mut out = Vec::new();
        if self.cpu_bound() {
            out.push(format!(
                "machine CPU-bound: {:.0}% of all CPUs were busy or stolen in a measured second (limit {BUSY_LIMIT_PCT:.0}%); latency and throughput include waiting for a CPU and describe this machine's load, not the transport alone",
                self.busy_and_steal_pct_max
            ));
        }
        if self.steal_pct_max >= STEAL_LIMIT_PCT {
            out.push(format!(
                "hypervisor steal: up to {:.0}% of all CPUs went to other guests in a measured second (limit {STEAL_LIMIT_PCT:.0}%); latency and CPU per event vary with the neighbours",
                self.steal_pct_max
            ));
        }
        let limit = GENERATOR_WAIT_LIMIT_MS * workers.max(1) as f64;
        if let Some(w) = self.generator_wait_ms_max.filter(|w| *w >= limit) {
            out.push(format!(
                "generator starved: its threads waited {w:.0} ms for a CPU in one second (limit {limit:.0} ms: a quarter of each second for each of its {workers} worker threads); latency includes the generator's own queueing"
            ));
        }
        out
    }

    /// True when busy plus steal passed [`crate::machine::BUSY_LIMIT_PCT`]
    /// in a measured second.
    pub fn cpu_bound(&self) -> bool {
        self.busy_and_steal_pct_max >= crate::machine::BUSY_LIMIT_PCT
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerFigures {
    pub published: u64,
    /// Largest delay of the server's publisher behind its schedule.
    pub max_publish_lag_us: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Files {
    /// HdrHistogram V2 interval log of `latency_us`, one histogram per second.
    pub interval_log: String,
}

fn secs(from: Option<u64>, to: Option<u64>) -> Option<f64> {
    Some(to?.checked_sub(from?)? as f64 / 1e9)
}

fn per_event(value: f64, events: u64) -> Option<f64> {
    (events > 0).then(|| value / events as f64)
}

/// Client messages the server counted during this transport's run.
/// Unknown for a shard: the server counts every shard's messages.
fn received_by_server(run: &TransportRun, scenario: &Scenario) -> Option<u64> {
    if scenario.clients.shard.is_some() {
        return None;
    }
    run.server_stats.as_ref().map(|s| {
        s.client_messages
            .saturating_sub(run.server_client_messages_before)
    })
}

/// The window's bytes and requests as the sum of the timeline's measure
/// seconds, when the window is whole seconds of the timeline (it opens on
/// one; it ends on one unless `phases.measure` has a fraction or the run
/// was cut short): timeline.csv then sums exactly to the summary. The
/// seconds close at their boundaries, like the window's own snapshots.
fn timeline_window_counters(run: &TransportRun) -> Option<crate::client::CounterSnapshot> {
    const SEC: u64 = 1_000_000_000;
    let p = &run.phases;
    let (start, end) = (p.measure_start_ns?, p.measure_end_ns?);
    let whole = |t: u64| t >= p.base_ns && (t - p.base_ns).is_multiple_of(SEC);
    if !(whole(start) && whole(end)) || run.intervals.is_empty() {
        return None;
    }
    let seconds = (start - p.base_ns) / SEC..(end - p.base_ns) / SEC;
    Some(
        run.intervals
            .iter()
            .filter(|i| seconds.contains(&i.index))
            .fold(crate::client::CounterSnapshot::default(), |acc, i| {
                acc + i.counters
            }),
    )
}

impl TransportSummary {
    pub fn from_run(run: &TransportRun, scenario: &Scenario, cores: u32) -> TransportSummary {
        let p = &run.phases;
        let window = match (&run.window_start, &run.window_end) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        };
        let window_s = window.map_or(0.0, |(a, b)| b.at_ns.saturating_sub(a.at_ns) as f64 / 1e9);
        let events = run.report.delivered_in_window;
        let counters = timeline_window_counters(run).unwrap_or_else(|| {
            window
                .map(|(a, b)| b.counters - a.counters)
                .unwrap_or_default()
        });
        let cpu = |f: fn(&crate::runner::Snapshot) -> Option<std::time::Duration>| {
            window.and_then(|(a, b)| Some(f(b)?.saturating_sub(f(a)?).as_secs_f64()))
        };
        let server_cpu_s = cpu(|s| s.server_cpu);
        let generator_cpu_s = cpu(|s| s.generator_cpu);
        let with_events = |v: Option<f64>, scale: f64| v.and_then(|v| per_event(v * scale, events));

        let generator_cpu_share = generator_cpu_s
            .filter(|_| window_s > 0.0)
            .map(|g| g / window_s / scenario.clients.workers as f64);
        // With the proxy and the link's stage, when they run: all of the
        // run's own processes.
        let helpers: f64 = [
            run.proxy.as_ref().and_then(|p| p.cpu),
            run.link.as_ref().and_then(|l| l.stage_cpu),
        ]
        .iter()
        .flatten()
        .map(|d| d.as_secs_f64())
        .sum();
        let machine_cpu_share = match (generator_cpu_s, server_cpu_s) {
            (Some(g), Some(s)) if window_s > 0.0 => {
                Some((g + s + helpers) / window_s / cores as f64)
            }
            _ => None,
        };
        let memory_per_connection =
            match (run.server_rss_before_connect, run.server_rss_after_connect) {
                (Some(before), Some(after)) if run.clients_subscribed > 0 => {
                    Some(after.saturating_sub(before) as f64 / run.clients_subscribed as f64)
                }
                _ => None,
            };

        let mut warnings = Vec::new();
        if let Some(share) = generator_cpu_share.filter(|s| *s >= GENERATOR_SATURATION) {
            warnings.push(format!(
                "generator saturated: it used {:.0}% of its {} worker threads' CPU during the window, so these figures describe the generator as much as the transport",
                share * 100.0,
                scenario.clients.workers
            ));
        }
        let machine = match (p.measure_start_ns, p.measure_end_ns) {
            (Some(from), Some(to)) => MachineFigures::over(&run.machine, p.base_ns, from, to),
            _ => None,
        };
        warnings.extend(
            machine
                .iter()
                .flat_map(|m| m.warnings(scenario.clients.workers)),
        );
        let d = &run.report.delivery;
        let heads_known = run.heads_known;
        if (heads_known && d.lost > 0) || d.duplicated > 0 || d.out_of_order > 0 {
            let lost = if heads_known {
                d.lost.to_string()
            } else {
                "unknown".into()
            };
            warnings.push(format!(
                "delivery was not exactly-once in order: {lost} lost ({} reported missed by the server), {} duplicated, {} out of order",
                d.missed_reported, d.duplicated, d.out_of_order
            ));
        }
        if !run.heads_known {
            warnings.push(
                "the server's final sequence numbers are unknown (it stopped answering), so `expected` and `lost` cannot be known and are shown as unknown"
                    .into(),
            );
        }
        let sends = scenario.messages.is_some() || scenario.echo.is_some();
        if let Some(received) = received_by_server(run, scenario).filter(|_| sends)
            && received != run.report.sent
        {
            warnings.push(format!(
                "the server counted {received} client messages, the clients {} sent: the counts still differed at the end of the drain",
                run.report.sent
            ));
        }
        if let Some(p) = run.publisher.as_ref().filter(|p| p.failed > 0) {
            warnings.push(format!(
                "the generator's publisher could not publish {} of {} events ({}): {}",
                p.failed,
                p.failed + p.published,
                p.first_error.as_deref().unwrap_or("no reason given"),
                if run.kind.server() == crate::scenario::ServerKind::Socketio {
                    "it had numbered them, so the clients count them lost"
                } else {
                    "the server never numbered them, so they are neither expected nor lost"
                }
            ));
        }
        if run.publish_from == crate::scenario::PublishFrom::Generator
            && scenario.target.as_ref().is_some_and(|t| !t.is_loopback())
            && run.kind.server() == crate::scenario::ServerKind::Pushbench
        {
            warnings.push(
                "latency_from_publish compares the target's clock with this machine's: it means nothing unless the server runs on this machine (latency, from the generator's own schedule, is exact)"
                    .into(),
            );
        }
        if run.report.send_failed > 0 {
            warnings.push(format!(
                "{} client messages could not be sent (no connection at their send time, or the send failed)",
                run.report.send_failed
            ));
        }
        if run.kind.multiplexed() {
            warnings.push(format!(
                "clients share connections ({} per HTTP/2 connection): memory per connection is per client",
                scenario.http2.clients_per_connection
            ));
        }
        if run.clients_subscribed < run.clients_requested as u64 {
            warnings.push(format!(
                "only {} of {} clients subscribed",
                run.clients_subscribed, run.clients_requested
            ));
        }

        TransportSummary {
            transport: run.kind,
            complete: run.incomplete_reason.is_none(),
            incomplete_reason: run.incomplete_reason.clone(),
            warnings,
            clients: ClientFigures {
                requested: run.clients_requested,
                subscribed: run.clients_subscribed,
            },
            phases: PhaseFigures {
                connect_s: secs(Some(p.base_ns), p.connected_ns),
                warmup_s: secs(p.publish_start_ns, p.measure_start_ns),
                measure_s: secs(p.measure_start_ns, p.measure_end_ns),
                drain_s: secs(p.measure_end_ns, p.drain_end_ns),
            },
            throughput: Throughput {
                delivered_per_s: if window_s > 0.0 {
                    events as f64 / window_s
                } else {
                    0.0
                },
                delivered_in_window: events,
                window_s,
            },
            latency_us: Percentiles::of(&run.report.latency),
            latency_from_publish_us: Percentiles::of(&run.report.latency_published),
            connect_us: Percentiles::of(&run.report.connect),
            echo_us: scenario
                .echo
                .as_ref()
                .map(|_| Percentiles::of(&run.report.echo_latency)),
            client_messages: (scenario.messages.is_some() || scenario.echo.is_some()).then(|| {
                ClientMessageFigures {
                    sent: run.report.sent,
                    failed: run.report.send_failed,
                    received_by_server: received_by_server(run, scenario),
                }
            }),
            delivery: Delivery::of(&run.report.delivery, run.heads_known),
            cost: Cost {
                bytes_down_per_event: per_event(counters.bytes_down as f64, events),
                bytes_up_per_event: per_event(counters.bytes_up as f64, events),
                requests_per_event: per_event(counters.requests as f64, events),
                server_cpu_us_per_event: with_events(server_cpu_s, 1e6),
                generator_cpu_us_per_event: with_events(generator_cpu_s, 1e6),
                bytes_down: counters.bytes_down,
                bytes_up: counters.bytes_up,
                requests: counters.requests,
                connections_opened: run.totals.connections,
            },
            processes: Processes {
                server_cpu_s,
                generator_cpu_s,
                server_peak_rss_bytes: run.server_peak_rss,
                generator_peak_rss_bytes: run.generator_peak_rss,
                server_memory_per_connection_bytes: memory_per_connection,
                generator_cpu_share,
                machine_cpu_share,
                generators: Vec::new(),
            },
            machine,
            server: run.server_stats.as_ref().map(|s| ServerFigures {
                published: s.published,
                max_publish_lag_us: s.max_publish_lag_ns / 1000,
            }),
            errors: run
                .report
                .errors
                .iter()
                .map(|(k, v)| (k.name().to_string(), *v))
                .collect(),
            files: Files {
                interval_log: interval_log_name(run.kind),
            },
            link: run
                .link
                .as_ref()
                .map(|l| LinkFigures::of(l, run.kind, scenario.tls, events)),
            proxy: run.proxy.as_ref().map(|p| {
                let cpu_s = p.cpu.map(|d| d.as_secs_f64());
                ProxyFigures {
                    kind: p.kind.clone(),
                    cpu_s,
                    cpu_us_per_event: with_events(cpu_s, 1e6),
                    peak_rss_bytes: p.peak_rss,
                    memory_per_connection_bytes: match (p.rss_before_connect, p.rss_after_connect) {
                        (Some(b), Some(a)) if run.clients_subscribed > 0 => {
                            Some(a.saturating_sub(b) as f64 / run.clients_subscribed as f64)
                        }
                        _ => None,
                    },
                    config_file: proxy_config_name(run.kind, &p.kind),
                }
            }),
            publish_from: run.publish_from,
            publisher: run.publisher.as_ref().map(PublisherFigures::of),
        }
    }
}

pub fn interval_log_name(kind: TransportKind) -> String {
    format!("{}.hlog", kind.name())
}

impl Summary {
    /// A summary without transports yet: the run's scenario, how it ended,
    /// when and where.
    pub fn header(
        scenario: &Scenario,
        ending: &Ending,
        started_at_utc: String,
        environment: Environment,
    ) -> Summary {
        Summary {
            schema_version: SCHEMA_VERSION,
            complete: *ending == Ending::Complete,
            incomplete_reason: match ending {
                Ending::Complete => None,
                Ending::Interrupted => Some("interrupted by the user".into()),
                Ending::Failed(reason) => Some(reason.clone()),
            },
            started_at_utc,
            pushbench: crate::environment::build(),
            environment,
            scenario: scenario.clone(),
            warnings: scenario_warnings(scenario),
            transports: Vec::new(),
            shards: Vec::new(),
        }
    }

    pub fn new(
        scenario: &Scenario,
        outcome: &RunOutcome,
        started_at_utc: String,
        environment: Environment,
    ) -> Summary {
        let cores = environment.cores;
        let mut summary = Summary::header(scenario, &outcome.ending, started_at_utc, environment);
        summary.transports = outcome
            .transports
            .iter()
            .map(|t| TransportSummary::from_run(t, scenario, cores))
            .collect();
        summary
    }
}

/// The JSON schema of summary.json.
pub fn schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Summary)).expect("schema serializes") + "\n"
}

/// What the scenario itself tells the reader of every summary of it.
pub fn scenario_warnings(scenario: &Scenario) -> Vec<String> {
    scenario
        .target
        .iter()
        .map(|t| format!(
            "{} is a running server: it serves every transport in turn, not a fresh process for each, so its memory and state carry over from one transport to the next",
            t.url
        ))
        .collect()
}
