//! Runs a scenario: for each transport in turn, a fresh server, the same
//! clients and the same publish schedule, through the phases
//! connect → warm-up → measure → drain.
//!
//! The phases are driven here, apart from the workers: this module decides
//! *when* (phase edges, the publisher's start) and takes the snapshots at
//! the edges of the measured window; workers only run clients.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::bail;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

use crate::client::{CounterSnapshot, Target, TlsTarget};
use crate::clock;
use crate::load::{self, ClientSpec, Control, IntervalReport, WorkerReport};
use crate::machine::{self, MachineSample};
use crate::network::Network;
use crate::network::link::{self, StageProcess};
use crate::network::stage::StageReport;
use crate::procstat::ProcHandle;
use crate::progress::{Live, Phase, Progress};
use crate::publisher::{Channel, GeneratorPublisher, PublisherReport};
use crate::scenario::{PublishFrom, Scenario, ServerKind, TopicChoice, TransportKind};
use crate::server::{PublishPlan, PublisherState, ServerStats};
use crate::server_process::{ServerLaunch, ServerUnderTest};

const SEC: u64 = 1_000_000_000;
/// Clients that have not connected this long after the ramp are left out.
const CONNECT_GRACE: Duration = Duration::from_secs(10);

/// Monotonic times of the phase edges of one transport's run.
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseEdges {
    pub base_ns: u64,
    pub connected_ns: Option<u64>,
    pub publish_start_ns: Option<u64>,
    pub measure_start_ns: Option<u64>,
    pub measure_end_ns: Option<u64>,
    pub drain_end_ns: Option<u64>,
}

/// Figures taken at one instant: counters and CPU of both processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub at_ns: u64,
    pub counters: CounterSnapshot,
    pub generator_cpu: Option<Duration>,
    pub server_cpu: Option<Duration>,
}

/// Everything measured for one transport.
pub struct TransportRun {
    pub kind: TransportKind,
    /// Wall-clock time of [`PhaseEdges::base_ns`], for interval logs.
    pub started_at: SystemTime,
    pub incomplete_reason: Option<String>,
    pub clients_requested: u32,
    pub clients_subscribed: u64,
    pub phases: PhaseEdges,
    pub report: WorkerReport,
    /// One merged report per second since `phases.base_ns`.
    pub intervals: Vec<IntervalReport>,
    pub window_start: Option<Snapshot>,
    pub window_end: Option<Snapshot>,
    pub totals: CounterSnapshot,
    pub server_rss_before_connect: Option<u64>,
    pub server_rss_after_connect: Option<u64>,
    pub server_peak_rss: Option<u64>,
    pub generator_peak_rss: Option<u64>,
    pub server_stats: Option<ServerStats>,
    /// The whole machine, one sample per second of the run.
    pub machine: Vec<MachineSample>,
    /// The server's `client_messages` before this transport's clients
    /// sent any: zero for a fresh server, more for one shared by transports.
    pub server_client_messages_before: u64,
    /// The emulated link, when the scenario has `[network]`.
    pub link: Option<LinkRun>,
    /// The reverse proxy, when the scenario has `[proxy]`.
    pub proxy: Option<ProxyRun>,
    /// Who published this transport's events.
    pub publish_from: PublishFrom,
    /// What the generator's publisher did, when it published.
    pub publisher: Option<PublisherReport>,
    /// Whether the topics' final sequence numbers were learnt, so that
    /// `expected` and `lost` are known.
    pub heads_known: bool,
}

/// One transport's run through a reverse proxy.
pub struct ProxyRun {
    pub kind: String,
    /// The proxy's configuration file as generated.
    pub config: String,
    /// The proxy's CPU over the measured window.
    pub cpu: Option<Duration>,
    pub peak_rss: Option<u64>,
    /// Its RSS before and after the clients connected.
    pub rss_before_connect: Option<u64>,
    pub rss_after_connect: Option<u64>,
    proc: ProcHandle,
    cpu_at_window_start: Option<Duration>,
}

/// One transport's run over an emulated link: the link as configured and
/// as measured.
pub struct LinkRun {
    pub configured: Network,
    /// TCP handshake times through the link before the clients started,
    /// sorted, in ms.
    pub probe_rtt_ms: Vec<f64>,
    /// What the delay stage measured of itself; none without a stage, or if
    /// it could not say.
    pub stage: Option<StageReport>,
    /// The stage's CPU over the measured window.
    pub stage_cpu: Option<Duration>,
    pub stage_peak_rss: Option<u64>,
    /// TCP segments the generator's side retransmitted in the window (its
    /// data and requests lost on the way up).
    pub retransmitted_up: Option<u64>,
    /// TCP segments the server's side retransmitted in the window (events
    /// lost on the way down).
    pub retransmitted_down: Option<u64>,
    /// Packets the rate limits' queues dropped in the window (the link's
    /// `queue` overflowing), up and down; none without a rate limit.
    pub rate_limit_dropped: (Option<u64>, Option<u64>),
    stage_proc: Option<ProcHandle>,
    server_pid: Option<u32>,
    name: Option<link::LinkName>,
    at_window_start: (Option<Duration>, Option<u64>, Option<u64>),
    drops_at_window_start: (Option<u64>, Option<u64>),
}

impl ProxyRun {
    fn window_end(&mut self) {
        self.cpu = self
            .proc
            .cpu_time()
            .zip(self.cpu_at_window_start)
            .map(|(end, start)| end.saturating_sub(start));
    }
}

impl LinkRun {
    /// The rate limits' drop counters, up and down, where there are limits.
    fn rate_limit_drops(&self) -> (Option<u64>, Option<u64>) {
        let Some(name) = &self.name else {
            return (None, None);
        };
        let up = self
            .configured
            .bandwidth_up_bps
            .and_then(|_| link::qdisc_dropped(&name.client_ns(), &name.client_if()));
        let down = self
            .configured
            .bandwidth_down_bps
            .and_then(|_| link::qdisc_dropped(&name.server_ns(), &name.server_if()));
        (up, down)
    }

    fn window_start(&mut self) {
        self.drops_at_window_start = self.rate_limit_drops();
        self.at_window_start = (
            self.stage_proc.and_then(|p| p.cpu_time()),
            link::retransmitted_segments(None),
            self.server_pid
                .and_then(|pid| link::retransmitted_segments(Some(pid))),
        );
    }

    fn window_end(&mut self) {
        let (cpu, up, down) = self.at_window_start;
        let since =
            |end: Option<u64>, start: Option<u64>| end.zip(start).map(|(e, s)| e.saturating_sub(s));
        self.stage_cpu = self
            .stage_proc
            .and_then(|p| p.cpu_time())
            .zip(cpu)
            .map(|(end, start)| end.saturating_sub(start));
        let (drops_up, drops_down) = self.rate_limit_drops();
        self.rate_limit_dropped = (
            since(drops_up, self.drops_at_window_start.0),
            since(drops_down, self.drops_at_window_start.1),
        );
        self.retransmitted_up = since(link::retransmitted_segments(None), up);
        self.retransmitted_down = since(
            self.server_pid
                .and_then(|pid| link::retransmitted_segments(Some(pid))),
            down,
        );
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Complete,
    /// The user pressed Ctrl-C.
    Interrupted,
    /// Something failed; the message says what.
    Failed(String),
}

pub struct RunOutcome {
    pub transports: Vec<TransportRun>,
    pub ending: Ending,
    /// The reference step (see `calibrate`), timed before the first
    /// transport and after each one, in ns.
    pub reference_steps_ns: Vec<u64>,
}

/// How one generator process of `run --generators N` measures over exactly
/// the window its siblings do. They share the timeline's zero
/// (`base_ns`, chosen by the process that started them); once its clients
/// are subscribed, each says on stdout how soon it could open the window
/// ([`GATE_READY`]) and waits on stdin for the start that suits them all
/// ([`GATE_GO`]). Opening on the same whole second of the same timeline,
/// they measure one window: the server's CPU and the machine's load each of
/// them reads over it are then one measurement, not N different ones.
#[derive(Clone, Copy, Debug)]
pub struct WindowGate {
    /// The timeline's zero on [`clock::now_ns`], shared by the processes.
    pub base_ns: u64,
}

/// A process's line on stdout: `{GATE_READY}{earliest_ns}`.
pub const GATE_READY: &str = "pushbench window ready at ";
/// The answer on its stdin: `{GATE_GO}{earliest_ns}`, the latest of them.
pub const GATE_GO: &str = "pushbench window go at ";

impl WindowGate {
    /// The earliest window start every sibling can keep, from this
    /// process's own earliest.
    async fn agree(&self, earliest_ns: u64) -> anyhow::Result<u64> {
        use std::io::Write as _;
        use tokio::io::AsyncBufReadExt as _;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{GATE_READY}{earliest_ns}")?;
            out.flush()?;
        }
        let mut line = String::new();
        tokio::io::BufReader::new(tokio::io::stdin())
            .read_line(&mut line)
            .await?;
        let agreed = line
            .trim_end()
            .strip_prefix(GATE_GO)
            .and_then(|ns| ns.parse::<u64>().ok())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the run that started this generator process gave no window start (got {line:?})"
                )
            })?;
        Ok(agreed.max(earliest_ns))
    }
}

/// Runs every transport of the scenario in order. Stops early (keeping what
/// was measured) on `interrupt` or a failure. With a `gate`, this process
/// is one of several generators whose windows must coincide.
pub async fn run_scenario(
    scenario: &Scenario,
    launch: &ServerLaunch,
    interrupt: &CancellationToken,
    progress: Arc<dyn Progress>,
    gate: Option<WindowGate>,
) -> RunOutcome {
    let mut transports = Vec::new();
    let mut steps = vec![reference_step().await];
    for &kind in &scenario.transports {
        let run = run_transport(scenario, kind, launch, interrupt, progress.clone(), gate).await;
        steps.push(reference_step().await);
        let ending = match &run.incomplete_reason {
            None => format!(
                "done: {} of {} events delivered",
                run.report.delivery.delivered, run.report.delivery.expected
            ),
            Some(reason) => format!("stopped: {reason}"),
        };
        progress.done(kind, &ending);
        let reason = run.incomplete_reason.clone();
        transports.push(run);
        if interrupt.is_cancelled() {
            return RunOutcome {
                transports,
                ending: Ending::Interrupted,
                reference_steps_ns: steps,
            };
        }
        if let Some(reason) = reason {
            return RunOutcome {
                transports,
                ending: Ending::Failed(reason),
                reference_steps_ns: steps,
            };
        }
    }
    RunOutcome {
        transports,
        ending: Ending::Complete,
        reference_steps_ns: steps,
    }
}

/// Times the reference step off the async runtime's only worker.
async fn reference_step() -> u64 {
    tokio::task::spawn_blocking(crate::calibrate::reference_ns)
        .await
        .unwrap_or(0)
}

/// The clients of a scenario this process runs (all, or its shard's):
/// when each connects, from where, to what. Seeded, so every transport
/// gets exactly the same clients, and a shard exactly its share of the
/// whole run's. Over an emulated link the clients' addresses are the link's.
pub fn plan_clients(scenario: &Scenario, first_start_ns: u64) -> Vec<ClientSpec> {
    let over_link = scenario.network.is_some();
    // A target elsewhere is reached from the address the route gives.
    let remote = scenario.target.as_ref().is_some_and(|t| !t.is_loopback());
    let n = scenario.clients.count as u64;
    let ramp = scenario.clients.connect_ramp.as_nanos() as u64;
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let shards = scenario.clients.shards;
    (0..n)
        .map(|i| {
            let mut topics: Vec<String> = match scenario.clients.topic_choice {
                // From the topics of the client's shard: j = group + k * shards.
                TopicChoice::Random => {
                    let group = (i % u64::from(shards)) as u32;
                    rand::seq::index::sample(
                        &mut rng,
                        (scenario.topics.count - group).div_ceil(shards) as usize,
                        scenario.clients.topics_per_client as usize,
                    )
                    .into_iter()
                    .map(|k| scenario.topic_name(group + k as u32 * shards))
                    .collect()
                }
                TopicChoice::Own => vec![scenario.topic_name(i as u32)],
            };
            let echo_topic = scenario.echo.as_ref().map(|_| format!("echo.{i}"));
            topics.extend(echo_topic.clone());
            ClientSpec {
                start_ns: first_start_ns + ramp * i / n.max(1),
                source: {
                    let k = (i % u64::from(scenario.clients.source_addresses)) as u32;
                    IpAddr::V4(if over_link {
                        link::client_addr(k)
                    } else if remote {
                        Ipv4Addr::UNSPECIFIED
                    } else {
                        Ipv4Addr::new(127, 0, 0, 1 + k as u8)
                    })
                },
                topics,
                echo_topic,
                seed: scenario.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i,
            }
        })
        .enumerate()
        .filter(|(i, _)| scenario.clients.runs_here(*i as u64))
        .map(|(_, spec)| spec)
        .collect()
}

async fn run_transport(
    scenario: &Scenario,
    kind: TransportKind,
    launch: &ServerLaunch,
    interrupt: &CancellationToken,
    progress: Arc<dyn Progress>,
    gate: Option<WindowGate>,
) -> TransportRun {
    let me = ProcHandle::myself();
    me.reset_peak_rss();
    let mut run = TransportRun {
        kind,
        started_at: SystemTime::now(),
        incomplete_reason: None,
        clients_requested: scenario.clients.here(),
        clients_subscribed: 0,
        phases: PhaseEdges {
            base_ns: clock::now_ns(),
            ..Default::default()
        },
        report: WorkerReport::empty(),
        intervals: Vec::new(),
        window_start: None,
        window_end: None,
        totals: CounterSnapshot::default(),
        server_rss_before_connect: None,
        server_rss_after_connect: None,
        server_peak_rss: None,
        generator_peak_rss: None,
        server_stats: None,
        machine: Vec::new(),
        server_client_messages_before: 0,
        link: None,
        proxy: None,
        publish_from: scenario.publish_from(kind),
        publisher: None,
        heads_known: false,
    };
    // Over a link: its delay stage first (until it runs no packet
    // crosses), then the server inside the link.
    let stage = match (&scenario.network, launch) {
        (None, _) => None,
        (Some(network), ServerLaunch::Spawn { exe, link: Some(_) }) if network.needs_stage() => {
            match StageProcess::start(exe, network, scenario.seed).await {
                Ok(stage) => Some(stage),
                Err(e) => {
                    run.incomplete_reason = Some(format!("{e:#}"));
                    return run;
                }
            }
        }
        (Some(_), ServerLaunch::Spawn { link: Some(_), .. }) => None,
        (Some(_), _) => {
            run.incomplete_reason =
                Some("[network] needs a server that run starts inside the link".into());
            return run;
        }
    };
    let server = match ServerUnderTest::start(launch, scenario, kind.server()).await {
        Ok(s) => s,
        Err(e) => {
            run.incomplete_reason = Some(format!("{e:#}"));
            if let Some(stage) = stage {
                stage.stop().await;
            }
            return run;
        }
    };
    let server_proc = server.proc;
    run.server_rss_before_connect = server_proc.and_then(|p| p.rss());
    if let Some(network) = &scenario.network {
        let pids = (stage.as_ref().map(|s| s.pid), server.pid());
        let name = match launch {
            ServerLaunch::Spawn { link, .. } => link.clone(),
            ServerLaunch::Existing { .. } => None,
        };
        match probe_link(network, server.addr, pids, name).await {
            Ok(l) => run.link = Some(l),
            Err(e) => {
                run.incomplete_reason = Some(format!("{e:#}"));
                server.stop().await;
                if let Some(stage) = stage {
                    stage.stop().await;
                }
                return run;
            }
        }
    }

    // The proxy, fresh like the server, in the server's namespace over a
    // link (next to the server, as it would be deployed).
    let proxy = match &scenario.proxy {
        None => None,
        Some(p) => {
            let netns = match launch {
                ServerLaunch::Spawn { link, .. } => link.as_ref().map(|l| l.server_ns()),
                ServerLaunch::Existing { .. } => None,
            };
            let connections = u64::from(scenario.clients.here());
            match crate::proxy::ProxyProcess::start(
                p,
                kind,
                server.addr,
                netns.as_deref(),
                connections,
                scenario.http2.clients_per_connection,
            )
            .await
            {
                Ok(proxy) => {
                    let handle = ProcHandle::pid(proxy.pid);
                    run.proxy = Some(ProxyRun {
                        kind: p.kind.clone(),
                        config: proxy.config.clone(),
                        cpu: None,
                        peak_rss: None,
                        rss_before_connect: handle.rss(),
                        rss_after_connect: None,
                        proc: handle,
                        cpu_at_window_start: None,
                    });
                    Some(proxy)
                }
                Err(e) => {
                    run.incomplete_reason = Some(format!("{e:#}"));
                    server.stop().await;
                    if let Some(stage) = stage {
                        stage.stop().await;
                    }
                    return run;
                }
            }
        }
    };
    // The timeline, the connect ramp and the phases start once the server
    // is up: a slow server start must not squeeze the ramp. A generator
    // process of several starts on the zero they share (a little after
    // they were started, so that no process begins late on it).
    let base_ns = match gate {
        Some(g) => {
            sleep_until_ns(g.base_ns).await;
            g.base_ns
        }
        None => clock::now_ns(),
    };
    run.phases.base_ns = base_ns;
    run.started_at = SystemTime::now();
    let sampler = machine::Sampler::start(base_ns);
    let control = Control::new(base_ns);
    let target = Target {
        addr: proxy.as_ref().map_or(server.addr, |p| p.addr),
        encoding: scenario.publish.encoding,
        hold: scenario.long_polling.hold,
        max_batch: scenario.long_polling.max_batch,
        poll_interval: scenario.short_polling.interval,
        clients_per_connection: scenario.http2.clients_per_connection,
        tls: match server.tls_cert_pem.as_deref().map(|pem| {
            let tls = TlsTarget::trusting(pem)?;
            match &server.tls_name {
                Some(name) => tls.named(name),
                None => Ok(tls),
            }
        }) {
            None => None,
            Some(Ok(tls)) => Some(tls),
            Some(Err(e)) => {
                run.incomplete_reason =
                    Some(format!("cannot trust the server's certificate: {e:#}"));
                if let Some(proxy) = proxy {
                    proxy.stop().await;
                }
                server.stop().await;
                if let Some(stage) = stage {
                    stage.stop().await;
                }
                return run;
            }
        },
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<IntervalReport>();
    // Each second merged over the workers, with how many have reported it.
    let merged: Arc<Mutex<BTreeMap<u64, (IntervalReport, usize)>>> = Arc::default();
    let collector = {
        let merged = merged.clone();
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                let mut m = merged.lock().expect("interval lock");
                match m.get_mut(&r.index) {
                    Some((existing, reporters)) => {
                        existing.merge(&r);
                        *reporters += 1;
                    }
                    None => {
                        m.insert(r.index, (r, 1));
                    }
                }
            }
        })
    };

    let workers_n = scenario.clients.workers as usize;
    let mut shares: Vec<Vec<ClientSpec>> = vec![Vec::new(); workers_n];
    for (i, spec) in plan_clients(scenario, base_ns + SEC / 10)
        .into_iter()
        .enumerate()
    {
        shares[i % workers_n].push(spec);
    }
    let mut workers = Vec::new();
    for (id, share) in shares.into_iter().enumerate() {
        let sends = (scenario.messages.clone(), scenario.echo.clone());
        match load::spawn_worker(
            id,
            kind,
            target.clone(),
            share,
            control.clone(),
            sends,
            tx.clone(),
        ) {
            Ok(w) => workers.push(w),
            Err(e) => {
                run.incomplete_reason =
                    Some(format!("cannot start a generator worker thread: {e}"));
                break;
            }
        }
    }
    drop(tx);

    let mut publisher: Option<GeneratorPublisher> = None;
    let ticker = tokio::spawn(report_live(
        control.clone(),
        merged.clone(),
        (u64::from(scenario.clients.here()), workers.len()),
        progress.clone(),
    ));
    if run.incomplete_reason.is_none() {
        let outcome = {
            let publish_target = Target {
                addr: server.addr,
                ..target.clone()
            };
            let phases = drive_phases(
                scenario,
                (&server, &publish_target, &mut publisher),
                &control,
                &workers,
                &mut run,
                progress.as_ref(),
                gate,
            );
            let mut died_at = None;
            let r = tokio::select! {
                r = phases => r,
                () = interrupt.cancelled() => Err(anyhow::anyhow!("interrupted by the user")),
                (reason, at) = server.exited() => {
                    died_at = Some(at);
                    Err(anyhow::anyhow!(reason))
                }
            };
            r.map_err(|e| (e, died_at))
        };
        if let Err((e, died_at)) = outcome {
            run.incomplete_reason = Some(format!("{e:#}"));
            // Stopped inside the measured window: it ends when the server
            // died (or now), so the figures over it (throughput, cost per
            // event) cover what was measured, not the time it took to notice.
            if run.window_start.is_some() && run.window_end.is_none() {
                let mut end = snapshot(&workers, server_proc);
                let opened = run.window_start.map_or(0, |s| s.at_ns);
                end.at_ns = died_at.map_or(end.at_ns, |d| d.min(end.at_ns).max(opened));
                control.set_window(run.phases.measure_start_ns.unwrap_or(end.at_ns), end.at_ns);
                run.phases.measure_end_ns = Some(end.at_ns);
                run.window_end = Some(end);
                if let Some(l) = run.link.as_mut() {
                    l.window_end();
                }
                if let Some(p) = run.proxy.as_mut() {
                    p.window_end();
                }
            }
        }
    }

    // Wrap up, whatever happened: the publisher stopped, final heads for
    // the accounting if the phases did not get that far, then stop the
    // clients.
    if let Some(p) = publisher.take() {
        p.stop();
        run.publisher = Some(
            tokio::task::spawn_blocking(move || p.join())
                .await
                .unwrap_or_else(|_| {
                    GeneratorPublisher::failed_report("the publisher could not be joined")
                }),
        );
    }
    if control.final_heads().is_none() {
        match final_heads(scenario, &server, run.publisher.as_ref()).await {
            Ok((heads, stats)) => {
                run.heads_known = true;
                control.set_final_heads(heads);
                run.server_stats = run.server_stats.take().or(stats);
            }
            Err(e) => {
                run.incomplete_reason
                    .get_or_insert(format!("cannot read the topics' final heads: {e:#}"));
            }
        }
    }
    ticker.abort();
    control.stop.cancel();
    let reports = tokio::task::spawn_blocking(move || {
        workers.into_iter().map(|w| w.join()).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (id, r) in reports.iter().enumerate() {
        match r {
            Ok(r) => run.report.merge(r),
            Err(panic) => {
                let reason = format!(
                    "generator worker {id} panicked ({panic}): its clients' figures are missing"
                );
                run.incomplete_reason.get_or_insert(reason);
            }
        }
    }
    let _ = collector.await;
    run.intervals = std::mem::take(&mut *merged.lock().expect("interval lock"))
        .into_values()
        .map(|(second, _)| second)
        .collect();
    run.totals = run
        .intervals
        .iter()
        .fold(CounterSnapshot::default(), |acc, i| acc + i.counters);
    run.clients_subscribed = control
        .subscribed
        .load(std::sync::atomic::Ordering::Relaxed);
    run.server_peak_rss = server_proc.and_then(|p| p.peak_rss());
    run.generator_peak_rss = me.peak_rss();
    if let Ok(sampler) = sampler {
        run.machine = tokio::task::spawn_blocking(move || sampler.stop())
            .await
            .unwrap_or_default();
    }
    if let (Some(proxy), Some(p)) = (proxy, run.proxy.as_mut()) {
        p.peak_rss = p.proc.peak_rss();
        proxy.stop().await;
    }
    server.stop().await;
    if let (Some(stage), Some(l)) = (stage, run.link.as_mut()) {
        l.stage_peak_rss = l.stage_proc.and_then(|p| p.peak_rss());
        l.stage = stage.stop().await;
    }
    run
}

/// Times TCP handshakes through the link and refuses a link that does not
/// deliver the configured round trip within [`link::tolerance`] (plus the
/// jitter, which moves single handshakes).
async fn probe_link(
    network: &Network,
    addr: std::net::SocketAddr,
    (stage_pid, server_pid): (Option<u32>, Option<u32>),
    name: Option<link::LinkName>,
) -> anyhow::Result<LinkRun> {
    let lossy = network.loss_up_percent > 0.0 || network.loss_down_percent > 0.0;
    let connects = if lossy {
        link::PROBE_CONNECTS_LOSSY
    } else {
        link::PROBE_CONNECTS
    };
    let probe_rtt_ms =
        tokio::task::spawn_blocking(move || link::probe_rtt(addr, connects)).await??;
    let configured = network.rtt.as_secs_f64() * 1e3;
    let tolerance = (link::tolerance(network.rtt) + network.jitter).as_secs_f64() * 1e3;
    // On a lossy link a handshake whose SYN or SYN-ACK was dropped waits
    // a second or more for TCP to send it again: that is the loss, not the
    // round trip, so such handshakes are left out of the median.
    let judged: Vec<f64> = if lossy {
        probe_rtt_ms
            .iter()
            .copied()
            .filter(|t| *t < configured + tolerance + 500.0)
            .collect()
    } else {
        probe_rtt_ms.clone()
    };
    let median = judged
        .get(judged.len() / 2)
        .copied()
        .unwrap_or(f64::INFINITY);
    if judged.len() < 3 || (median - configured).abs() > tolerance {
        bail!(
            "the link cannot be emulated on this machine within ±{tolerance:.1} ms: {} TCP handshakes through it took {median:.2} ms (median of the {} without a resent SYN; all: {}) for rtt = {configured} ms",
            probe_rtt_ms.len(),
            judged.len(),
            probe_rtt_ms
                .iter()
                .map(|t| format!("{t:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(LinkRun {
        configured: network.clone(),
        probe_rtt_ms,
        stage: None,
        stage_cpu: None,
        stage_peak_rss: None,
        retransmitted_up: None,
        retransmitted_down: None,
        rate_limit_dropped: (None, None),
        stage_proc: stage_pid.map(ProcHandle::pid),
        server_pid,
        name,
        at_window_start: (None, None, None),
        drops_at_window_start: (None, None),
    })
}

/// Feeds the progress display twice a second from the newest second
/// every worker has reported (an earlier one would show a share of the
/// clients as the whole).
async fn report_live(
    control: Arc<Control>,
    merged: Arc<Mutex<BTreeMap<u64, (IntervalReport, usize)>>>,
    (clients, workers): (u64, usize),
    progress: Arc<dyn Progress>,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut live = Live {
            clients,
            connected: control.connected.load(std::sync::atomic::Ordering::Relaxed),
            ..Live::default()
        };
        {
            let m = merged.lock().expect("interval lock");
            live.errors = m.values().map(|(i, _)| i.errors).sum();
            let settled = m.iter().rev().find(|(_, (_, n))| *n >= workers);
            if let Some((&k, (i, _))) = settled {
                live.second = Some(k);
                live.second_started_ns = Some(control.base_ns + k * SEC);
                live.delivered_per_s = Some(i.delivered);
                let at = |q| (!i.latency.is_empty()).then(|| i.latency.value_at_quantile(q));
                live.p50_us = at(0.5);
                live.p99_us = at(0.99);
            }
        }
        progress.live(&live);
    }
}

fn snapshot(workers: &[load::Worker], server: Option<ProcHandle>) -> Snapshot {
    Snapshot {
        at_ns: clock::now_ns(),
        counters: workers.iter().fold(CounterSnapshot::default(), |acc, w| {
            acc + w.counters.snapshot()
        }),
        generator_cpu: ProcHandle::myself().cpu_time(),
        server_cpu: server.and_then(|p| p.cpu_time()),
    }
}

async fn sleep_until_ns(ns: u64) {
    tokio::time::sleep_until(clock::instant_at(ns)).await;
}

/// The newest sequence number of every topic once publishing has ended:
/// the server's own count where its control routes are ours, the
/// publisher's numbering for Socket.IO, otherwise asked by subscription.
async fn final_heads(
    scenario: &Scenario,
    server: &ServerUnderTest,
    publisher: Option<&PublisherReport>,
) -> anyhow::Result<(HashMap<String, u64>, Option<ServerStats>)> {
    if server.control {
        let stats = server.stats().await?;
        return Ok((stats.heads.clone().into_iter().collect(), Some(stats)));
    }
    if server.kind == ServerKind::Socketio {
        return Ok((publisher.map(|p| p.heads.clone()).unwrap_or_default(), None));
    }
    let mut topics: Vec<String> = (0..scenario.topics.count)
        .filter(|j| scenario.clients.publishes_here(*j as usize))
        .map(|i| scenario.topic_name(i))
        .collect();
    if scenario.echo.is_some() {
        topics.extend(
            (0..scenario.clients.count)
                .filter(|i| scenario.clients.runs_here(u64::from(*i)))
                .map(|i| format!("echo.{i}")),
        );
    }
    let heads = server
        .heads_by_subscription(&topics, scenario.publish.encoding)
        .await?;
    Ok((heads, None))
}

async fn drive_phases(
    scenario: &Scenario,
    (server, publish_target, publisher): (
        &ServerUnderTest,
        &Target,
        &mut Option<GeneratorPublisher>,
    ),
    control: &Control,
    workers: &[load::Worker],
    run: &mut TransportRun,
    progress: &dyn Progress,
    gate: Option<WindowGate>,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::{Acquire, Relaxed};
    let clients = u64::from(scenario.clients.here());
    let kind = run.kind;

    // Connect: wait for every subscription, or give up on stragglers.
    progress.phase(
        kind,
        Phase::Connect,
        scenario.clients.connect_ramp,
        &format!("; {clients} clients"),
    );
    let give_up = run.phases.base_ns
        + SEC / 10
        + scenario.clients.connect_ramp.as_nanos() as u64
        + CONNECT_GRACE.as_nanos() as u64;
    while control.subscribed.load(Relaxed) < clients && clock::now_ns() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let subscribed = control.subscribed.load(Relaxed);
    if subscribed == 0 {
        bail!("no client could connect and subscribe; see the errors by kind");
    }
    run.phases.connected_ns = Some(clock::now_ns());
    run.server_rss_after_connect = server.proc.and_then(|p| p.rss());
    if let Some(p) = run.proxy.as_mut() {
        p.rss_after_connect = p.proc.rss();
    }

    // Publish: warm-up then measure, on the server's open-loop schedule.
    // The measured window opens on a whole second of the timeline, so the
    // timeline's "measure" rows cover exactly the window and sum to the
    // summary's figures (the warm-up starts up to a second later for it).
    let warmup = scenario.phases.warmup.as_nanos() as u64;
    let measure = scenario.phases.measure.as_nanos() as u64;
    // The plan must reach the server before its start: over a link the
    // stats and publish requests take round trips (a new connection's
    // handshake, each request), which would otherwise land in the window
    // as latency.
    let link_lead = scenario
        .network
        .as_ref()
        .map_or(0, |n| (3 * (n.rtt + 2 * n.jitter)).as_nanos() as u64);
    let mut earliest = clock::now_ns() + SEC / 5 + link_lead + warmup;
    if let Some(g) = gate {
        earliest = g.agree(earliest).await?;
    }
    let measure_start = run.phases.base_ns + (earliest - run.phases.base_ns).div_ceil(SEC) * SEC;
    let start = measure_start - warmup;
    let measure_end = measure_start + measure;
    // The server's count before any client of this transport sends (none
    // does before the send window is fixed): the drain compares what it
    // counts from here with what the clients sent.
    let messages_before = if server.control {
        server.stats().await?.client_messages
    } else {
        0
    };
    run.server_client_messages_before = messages_before;
    control.set_window(measure_start, measure_end);
    control.set_send_window(start, measure_end);
    let plan = PublishPlan {
        topics: (0..scenario.topics.count)
            .map(|i| scenario.topic_name(i))
            .collect(),
        rate: scenario.publish.rate,
        arrival: scenario.publish.arrival,
        payload_bytes: scenario.publish.payload_bytes as usize,
        seed: scenario.seed,
        start_ns: start,
        duration_ns: warmup + measure,
    };
    match run.publish_from {
        PublishFrom::Server => server.publish(&plan).await?,
        PublishFrom::Generator => {
            let channel = match server.kind {
                ServerKind::Pushbench => Channel::Pushbench {
                    token: server.token().map(str::to_owned),
                },
                ServerKind::Socketio => Channel::Socketio,
            };
            let source = plan_clients(scenario, 0)
                .first()
                .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.source);
            *publisher = Some(
                GeneratorPublisher::start(
                    plan,
                    scenario.clients.shard.map(|k| (k, scenario.clients.shards)),
                    publish_target.clone(),
                    source,
                    channel,
                )
                .map_err(|e| anyhow::anyhow!("cannot start the publisher thread: {e}"))?,
            );
        }
    }
    run.phases.publish_start_ns = Some(start);
    progress.phase(
        kind,
        Phase::Warmup,
        scenario.phases.warmup,
        &format!("; {subscribed} of {clients} clients subscribed"),
    );
    sleep_until_ns(measure_start).await;
    run.window_start = Some(snapshot(workers, server.proc));
    if let Some(l) = run.link.as_mut() {
        l.window_start();
    }
    if let Some(p) = run.proxy.as_mut() {
        p.cpu_at_window_start = p.proc.cpu_time();
    }
    run.phases.measure_start_ns = Some(measure_start);
    progress.phase(kind, Phase::Measure, scenario.phases.measure, "");
    sleep_until_ns(measure_end).await;
    run.window_end = Some(snapshot(workers, server.proc));
    if let Some(l) = run.link.as_mut() {
        l.window_end();
    }
    if let Some(p) = run.proxy.as_mut() {
        p.window_end();
    }
    run.phases.measure_end_ns = Some(measure_end);

    // Drain: in-flight events get a bounded time to arrive.
    progress.phase(kind, Phase::Drain, scenario.phases.drain, "; at most");
    let drain_end = measure_end + scenario.phases.drain.as_nanos() as u64;
    loop {
        // Read before the stats are asked for: a send that ends while they
        // are on their way must not pass as settled with them. Acquire: at
        // zero, the sent counts below are final.
        let sends_done = control.sending_clients.load(Acquire) == 0;
        let sent: u64 = workers
            .iter()
            .map(|w| w.counters.messages_sent.load(Relaxed))
            .sum();
        if publisher.as_ref().is_some_and(|p| p.done()) {
            let p = publisher.take().expect("checked above");
            run.publisher = Some(tokio::task::spawn_blocking(move || p.join()).await?);
        }
        let stats = if server.control {
            Some(server.stats().await?)
        } else {
            None
        };
        let published_done = match run.publish_from {
            PublishFrom::Generator => publisher.is_none(),
            PublishFrom::Server => stats
                .as_ref()
                .is_some_and(|s| s.publisher == PublisherState::Done),
        };
        // A WebSocket message counts as sent once it is handed to the
        // connection, with no answer: it may still be in a socket buffer,
        // an HTTP/2 stream's queue or the server's read loop. Settled only
        // once the server has counted every one (the generator's publisher
        // sends through the same route); at the deadline the figures are
        // taken as they are, and the report shows any difference. A server
        // whose counters are not ours is taken as settled once every
        // message is sent.
        let received_all = stats.as_ref().is_none_or(|s| {
            let published_here = run.publisher.as_ref().map_or(0, |p| p.published);
            s.client_messages.saturating_sub(messages_before) >= sent + published_here
        });
        let settled = published_done && sends_done && received_all;
        if settled || clock::now_ns() >= drain_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(p) = publisher.take() {
        p.stop();
        run.publisher = Some(tokio::task::spawn_blocking(move || p.join()).await?);
    }
    let (heads, stats) = final_heads(scenario, server, run.publisher.as_ref()).await?;
    run.heads_known = true;
    run.server_stats = stats;
    control.set_final_heads(heads);
    while control.complete.load(Relaxed) < control.subscribed.load(Relaxed)
        && clock::now_ns() < drain_end
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.phases.drain_end_ns = Some(clock::now_ns());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(shards: &str) -> Scenario {
        Scenario::parse(
            std::path::Path::new("t.toml"),
            &format!(
                "transports = [\"websocket\"]\n[clients]\ncount = 30\ntopics_per_client = 3\nconnect_ramp = \"1s\"\n{shards}\
                 [topics]\ncount = 20\n[publish]\nrate = 10.0\npayload_bytes = 8\n\
                 [phases]\nwarmup = \"1s\"\nmeasure = \"1s\"\ndrain = \"1s\"\n\
                 [target]\nurl = \"http://127.0.0.1:1\"\n"
            ),
        )
        .unwrap()
    }

    #[test]
    fn the_shards_of_a_run_plan_exactly_its_clients_each_on_its_own_topics() {
        let whole = plan_clients(&scenario("shards = 3\n"), 0);
        assert_eq!(whole.len(), 30);
        let mut joined: Vec<Option<&ClientSpec>> = vec![None; 30];
        let shards: Vec<Vec<ClientSpec>> = (0..3)
            .map(|k| plan_clients(&scenario(&format!("shards = 3\nshard = {k}\n")), 0))
            .collect();
        for (k, plan) in shards.iter().enumerate() {
            assert_eq!(plan.len(), 10);
            for spec in plan {
                // The client's index, from its seed.
                let i = (spec.seed ^ 1u64.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as usize;
                assert_eq!(i % 3, k);
                joined[i] = Some(spec);
                for t in &spec.topics {
                    let j: usize = t.trim_start_matches('T').parse::<usize>().unwrap() - 1;
                    assert_eq!(j % 3, k, "client {i} has topic {t} of another shard");
                }
            }
        }
        for (i, spec) in whole.iter().enumerate() {
            let s = joined[i].expect("every client is in a shard");
            assert_eq!(
                (&s.topics, s.start_ns, s.source),
                (&spec.topics, spec.start_ns, spec.source)
            );
        }
    }
}
