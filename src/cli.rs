//! Command-line interface: parse, validate once, dispatch, map to exit codes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::codec::Encoding;
use crate::report::{self, Results, Summary};
use crate::runner::{self, Ending};
use crate::scenario::{Override, Scenario, TransportKind};
use crate::server::{self, AppState, ServerConfig};
use crate::server_process::{READY_PREFIX, ServerLaunch};

/// Exit codes, as documented in the README.
pub mod exit {
    /// The run finished and every figure was written.
    pub const OK: u8 = 0;
    /// The run failed or stopped early (results marked incomplete).
    pub const FAILED: u8 = 1;
    /// Bad input: scenario file, flags or results directory.
    pub const BAD_INPUT: u8 = 2;
    /// Interrupted with Ctrl-C (results marked incomplete).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "pushbench",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PUSHBENCH_GIT_REVISION"), ")"),
    about = "What server push really costs: WebSocket, long polling and more, under the same workload"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Less output, for scripts and logs (any command): run and sweep
    /// print one plain line per phase instead of progress bars; check
    /// prints only the checks that did not pass and its count; compare
    /// only its verdict; validate, init and report nothing but errors.
    /// Errors and warnings are always printed.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

/// A scenario file and the keys the command line sets in it.
#[derive(Args, Debug)]
struct ScenarioArgs {
    /// Scenario file (TOML; the files in scenarios/ document every key), e.g. scenarios/stock_ticker.toml
    scenario: PathBuf,
    /// Set any scenario key, validated like the file (repeatable):
    /// --set publish.rate=1600 --set phases.measure=10s
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = Override::parse_set)]
    set: Vec<Override>,
    /// Clients: sets clients.count.
    #[arg(short = 'c', long, value_name = "N", allow_negative_numbers = true)]
    clients: Option<String>,
    /// Measured time: sets phases.measure (e.g. 10s).
    #[arg(short = 'd', long, value_name = "DURATION")]
    duration: Option<String>,
    /// Events per second over all topics: sets publish.rate.
    #[arg(long, value_name = "EVENTS_PER_S", allow_negative_numbers = true)]
    rate: Option<String>,
    /// Run the clients in N generator processes on this machine, each
    /// with one shard of them and its topics' publisher, against the one
    /// server, measuring one window; their results are merged into one:
    /// sets clients.processes.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    generators: Option<String>,
    /// Run over an emulated link with this preset, replacing the
    /// scenario's [network] section: lan, broadband, 4g, 3g, satellite or
    /// lossy_wifi (figures and sources: docs/network.md). Needs root.
    #[arg(long, value_name = "PROFILE")]
    network: Option<String>,
    /// Measure a server that is already running, at http://HOST:PORT (or
    /// https with --ca): nothing is started, the generator publishes;
    /// sets target.url. A Socket.IO server takes --set target.kind=socketio.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Run only shard K of N (K from 0, as a Kubernetes Indexed Job's
    /// completion index): its clients and its topics' events, against the
    /// --target every shard shares; sets clients.shards = N and
    /// clients.shard = K. Join the shards' results with `pushbench merge`.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    shard: Option<(String, String)>,
}

/// `K/N` of `--shard`, split; the numbers are checked like the scenario's
/// `clients.shard` and `clients.shards`, naming the flag.
fn parse_shard(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('/') {
        Some((k, n)) if !k.is_empty() && !n.is_empty() => Ok((k.to_owned(), n.to_owned())),
        _ => Err(format!(
            "{arg:?}: expected K/N, shard K (counted from 0) of N, e.g. 0/4"
        )),
    }
}

impl ScenarioArgs {
    /// Every override, shortcuts first so an explicit --set wins.
    fn overrides(&self) -> Vec<Override> {
        let shortcuts = [
            ("--clients", "clients.count", &self.clients),
            ("--duration", "phases.measure", &self.duration),
            ("--rate", "publish.rate", &self.rate),
            ("--generators", "clients.processes", &self.generators),
            ("--target", "target.url", &self.target),
        ];
        // --network replaces the whole section, so a file's own keys do
        // not bend the preset asked for.
        let network = self.network.as_ref().map(|p| Override {
            key: "network".into(),
            value: format!("{{ profile = {} }}", toml::Value::String(p.clone())),
            flag: format!("--network {p}"),
        });
        let shard = self.shard.iter().flat_map(|(k, n)| {
            let flag = format!("--shard {k}/{n}");
            [("clients.shards", n), ("clients.shard", k)].map(|(key, value)| Override {
                key: key.into(),
                value: value.clone(),
                flag: flag.clone(),
            })
        });
        shortcuts
            .into_iter()
            .filter_map(|(flag, key, v)| v.clone().map(|v| Override::shortcut(flag, key, v)))
            .chain(network)
            .chain(shard)
            .chain(self.set.iter().cloned())
            .collect()
    }

    fn load(&self) -> Result<Scenario, crate::scenario::ScenarioError> {
        Scenario::load_with(&self.scenario, &self.overrides())
    }
}

/// How to reach and measure a `--target` server.
#[derive(Args, Debug, Clone, Default)]
struct TargetArgs {
    /// Bearer token of a target pushbench server's control routes: with it
    /// the server's own counters (heads, messages received) are read.
    #[arg(long, env = "PUSHBENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The target server's process on this machine: its CPU and memory are
    /// measured (without it they are shown as not measured).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// The certificate (PEM) an https target presents, the only one trusted.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Start against a target that is not on this machine without asking.
    #[arg(long)]
    yes: bool,
}

/// The end of `run --help`: what a newcomer looks for next.
const RUN_AFTER_HELP: &str = "\
Transports: websocket, websocket_h2, sse, long_polling, long_polling_close, long_polling_h2, short_polling (the bundled server); socketio_polling, socketio_websocket (a Socket.IO server).

Scenario format: every key, its default and what it allows in docs/scenario.md (`pushbench scenario-reference`); commented examples in scenarios/; a starter with `pushbench init NAME`.

Exit codes: 0 done; 1 the run failed, stopped early or failed a [thresholds] condition; 2 bad input (scenario, flag, override, results directory, dashboard address), found before anything starts; 130 interrupted.";

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario against the bundled server, one fresh server process per transport.
    #[command(after_help = RUN_AFTER_HELP)]
    Run {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Validate the scenario and show what would run (transports,
        /// connections, events/s, open files, duration), then exit.
        #[arg(long)]
        dry_run: bool,
        /// Print summary.json (an array of them with --repeat) on stdout,
        /// for scripts; the table and notices go to stderr.
        #[arg(long)]
        json: bool,
        /// Where the results directory is created.
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
        /// Run only these transports (repeatable); default: the scenario's list.
        #[arg(long = "transport", value_parser = parse_transport)]
        transports: Vec<TransportKind>,
        /// Run every transport over TLS, as `tls = true` in the scenario does.
        #[arg(long)]
        tls: bool,
        /// Run the whole comparison this many times, transports
        /// interleaved (A B C, A B C, …), and report every figure as median
        /// and range over the repetitions.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        repeat: Option<u32>,
        /// Internal: this process is one transport's generator of a larger
        /// run; write the data files only (no table, no charts).
        #[arg(long, hide = true)]
        part: bool,
        /// Internal: the emulated link this part runs over, named by the
        /// pid of the run that built it.
        #[arg(long, hide = true, value_parser = crate::network::link::LinkName::parse)]
        link: Option<crate::network::link::LinkName>,
        /// Follow the run in a browser: serve a live page (phase, clients,
        /// events/s, latency p50/p99 per second, errors per transport, then
        /// the final figures) at ADDR, loopback 127.0.0.1:5665 when none is
        /// given; port 0 picks a free one. The URL is printed at the start.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::dashboard::DEFAULT_ADDR)]
        dashboard: Option<SocketAddr>,
        /// Internal: this part writes its progress as JSON lines on stdout
        /// for the run that started it, which serves the dashboard.
        #[arg(long, hide = true)]
        progress_lines: bool,
        /// Internal: this part is one generator process of several (see
        /// `runner::WindowGate`); their timeline's zero, on the monotonic
        /// clock.
        #[arg(long, hide = true, value_name = "NS")]
        window_gate: Option<u64>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Check a server against the push protocol (docs/protocol.md): one
    /// line per check, pass, FAIL or skipped with the reason. Exit 0 when
    /// nothing failed, 1 when a check failed, 2 when the server cannot be
    /// reached or the arguments are wrong. The checks publish to topics of
    /// their own, named check.<random>.<check>.
    Check {
        /// The server's base URL, http://HOST:PORT (https with --ca).
        url: String,
        /// The certificate (PEM) an https server presents, the only one trusted.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Also check that the server pings a WebSocket within this time
        /// (its heartbeat interval and a margin, e.g. 20s).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        heartbeat_wait: Option<Duration>,
    },
    /// Check a scenario (with any overrides) and show what `run` would do,
    /// without running it: exit 0 if it is valid, 2 if not.
    Validate {
        #[command(flatten)]
        scenario: ScenarioArgs,
    },
    /// Start the bundled server alone, for manual use.
    ///
    /// Its routes, limits, status and close codes: docs/protocol.md. It
    /// prints its control token and then the line `pushbench server
    /// listening on URL` once it accepts connections; Ctrl-C stops it.
    Serve {
        /// Address and port to listen on. A loopback address (the default)
        /// answers only loopback Host names; any other exposes the server
        /// to the network.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Event encoding: json (text; needed for server-sent events) or
        /// binary (pushbench's compact frames).
        #[arg(long, default_value = "json")]
        encoding: Encoding,
        /// Recent events kept per topic for pollers and resumes (1 to 1000000).
        #[arg(long, default_value_t = 1024)]
        buffer_per_topic: usize,
        /// Bytes of events kept per topic, whatever their count (the newest
        /// event is always kept; 1024 to 17179869184).
        #[arg(long, default_value_t = server::DEFAULT_BUFFER_BYTES_PER_TOPIC)]
        buffer_bytes_per_topic: usize,
        /// Bytes of events kept over all topics, 128 bytes of bookkeeping
        /// counted per event: past it the server's oldest events leave
        /// first (16777216 to 1099511627776).
        #[arg(long, default_value_t = server::DEFAULT_BUFFER_BYTES)]
        buffer_bytes: usize,
        /// Topics the server holds at most; requests that would create
        /// more get 429 (WebSocket close 1008). 1 to 10000000.
        #[arg(long, default_value_t = server::DEFAULT_MAX_TOPICS)]
        max_topics: usize,
        /// Largest WebSocket message or frame a client may send, in bytes
        /// (close 1009 past it; 125 to 16777216).
        #[arg(long, default_value_t = server::DEFAULT_MAX_MESSAGE)]
        max_message: usize,
        /// Open connections at most (503 past it). Default: 100000, or the
        /// open-file limit less 64 when that is lower.
        #[arg(long)]
        max_connections: Option<usize>,
        /// A write to a client that makes no progress this long closes the
        /// connection (slow consumer; 100ms to 1h).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        write_timeout: Duration,
        /// A connection that sends no complete request head for this long
        /// is closed: headers still arriving, or an idle keep-alive
        /// connection (1s to 1h).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        idle_timeout: Duration,
        /// Interval of WebSocket pings, and the silence after which an SSE
        /// stream gets a heartbeat comment (100ms or more).
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        heartbeat: Duration,
        /// Bearer token the control routes require (default: a fresh random
        /// one, printed at start). Prefer the environment variable: a
        /// command line is visible to every user of the machine.
        #[arg(long, env = "PUSHBENCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Raise the open-file limit to at least this, or refuse to start.
        #[arg(long, default_value_t = 1024)]
        min_open_files: u64,
        /// Serve TLS only, with a self-signed certificate made at start and
        /// written (PEM) to this file for clients to trust.
        #[arg(long, value_name = "PATH")]
        tls_cert_out: Option<PathBuf>,
        /// Internal: end when the process that started this one ends
        /// (`run` starts its servers so; none outlives a killed run).
        #[arg(long, hide = true)]
        exit_with_parent: bool,
        /// Worker threads of the server's runtime: connections are spread
        /// over them, the topics' buffers are shared (1 to 256).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
        threads: u32,
    },
    /// Run a scenario at every value of one or two keys and chart each
    /// figure against them, with a crossover table (which transport is best
    /// where, and by how much).
    ///
    /// Each point is a normal run with its own results directory, inside
    /// one sweep directory indexed by sweep.json; `pushbench report` on that
    /// directory renders the sweep's report again.
    Sweep {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// A numeric scenario key and its values, e.g.
        /// --vary network.rtt=0ms,20ms,50ms,100ms (give twice for a grid).
        #[arg(long = "vary", value_name = "KEY=V1,V2,…", required = true, value_parser = crate::sweep::Vary::parse)]
        vary: Vec<crate::sweep::Vary>,
        /// Where the sweep directory is created.
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
        /// Run only these transports at each point (repeatable).
        #[arg(long = "transport", value_parser = parse_transport)]
        transports: Vec<TransportKind>,
        /// Every transport over TLS.
        #[arg(long)]
        tls: bool,
    },
    /// Join the results directories of one run's shards (`run --shard
    /// K/N`, every K of N once) into one results directory and report on
    /// it: counts summed, latency histograms added, per-event costs
    /// recomputed. Exit 2 when the directories are not one run's shards
    /// (other scenario, build or transports; a shard missing or twice).
    Merge {
        /// The shards' results directories.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// The merged results directory (created).
        #[arg(long)]
        out: PathBuf,
        /// Print the merged summary.json on stdout; the table goes to stderr.
        #[arg(long)]
        json: bool,
    },
    /// Render the charts and reports of a results directory (or a sweep
    /// directory) from its saved data.
    Report {
        /// A directory written by `pushbench run` (e.g.
        /// results/stock_ticker-20260101T000000Z) or `pushbench sweep`.
        results_dir: PathBuf,
    },
    /// Compare runs with a baseline: exit 0 (pass), 1 (regression) or 2 (bad input).
    ///
    /// Each side is a summary.json, a results directory, or a directory of
    /// results directories. With three or more runs a side (made on the
    /// same machine, interleaved), timing is judged A/B from the runs' own
    /// spread; with one run a side it is divided by each run's reference
    /// step and is only indicative across machines.
    Compare {
        /// Baseline: summary.json, a results directory, or a directory of them.
        baseline: PathBuf,
        /// Current: summary.json, a results directory, or a directory of them.
        current: PathBuf,
        /// Figures to judge, comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = crate::compare::Group::DEFAULT)]
        figures: Vec<crate::compare::Group>,
        /// Allowed worsening of deterministic figures (bytes, requests per event), in percent.
        #[arg(long, default_value_t = 3.0)]
        tight: f64,
        /// One run a side: allowed worsening of timing figures after
        /// calibration, in percent.
        #[arg(long, default_value_t = 30.0)]
        noise: f64,
        /// One run a side: allowed worsening of tail latency (p99) after
        /// calibration, in percent; default: twice --noise.
        #[arg(long)]
        tail_noise: Option<f64>,
    },
    /// Print the JSON schema of summary.json.
    #[command(hide = true)]
    Schema,
    /// Print the scenario reference: every key, its type, default and
    /// what is allowed (docs/scenario.md).
    ScenarioReference,
    /// Write a commented starter scenario, NAME.toml, in the current
    /// directory (never over an existing file).
    Init {
        /// The scenario's name (1 to 64 of a-z A-Z 0-9 _ -).
        #[arg(default_value = "my_scenario")]
        name: String,
    },
    /// Print a shell completion script, e.g. `pushbench completions bash >
    /// /etc/bash_completion.d/pushbench`.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), e.g. `pushbench man | man -l -`.
    Man,
    /// Internal: the delay stage of an emulated link (see docs/network.md).
    #[command(hide = true)]
    LinkStage {
        #[arg(long, value_parser = humantime::parse_duration)]
        delay_up: Duration,
        #[arg(long, value_parser = humantime::parse_duration)]
        delay_down: Duration,
        #[arg(long, value_parser = humantime::parse_duration)]
        jitter: Duration,
        /// Percent of packets dropped towards the server.
        #[arg(long)]
        loss_up: f64,
        /// Percent of packets dropped towards the generator.
        #[arg(long)]
        loss_down: f64,
        #[arg(long)]
        seed: u64,
    },
}

fn parse_transport(s: &str) -> Result<TransportKind, String> {
    TransportKind::ALL
        .into_iter()
        .find(|t| t.name() == s)
        .ok_or_else(|| {
            format!(
                "unknown transport {s:?}; allowed: {}",
                TransportKind::ALL.map(|t| t.name()).join(", ")
            )
        })
}

/// Runs the command line; the binary's `main` is only this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // One worker thread everywhere (the generator's workers and the
    // publisher have threads of their own), except a server asked for more.
    let threads = match &cli.command {
        Command::Serve { threads, .. } => *threads as usize,
        _ => 1,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Held long polls and sockets are not worth waiting for at exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

async fn dispatch(cli: Cli) -> u8 {
    let quiet = cli.quiet;
    match cli.command {
        Command::Run {
            scenario,
            dry_run,
            json,
            results_dir,
            transports,
            tls,
            repeat,
            part,
            link,
            dashboard,
            progress_lines,
            window_gate,
            target,
        } => {
            let how = RunHow {
                window_gate,
                quiet,
                tls,
                repeat,
                part,
                link,
                dry_run,
                json,
                dashboard,
                progress_lines,
                target,
            };
            run(&scenario, &results_dir, transports, how).await
        }
        Command::Check {
            url,
            ca,
            heartbeat_wait,
        } => check(&url, ca.as_deref(), heartbeat_wait, quiet).await,
        Command::Validate { scenario } => match scenario.load() {
            Ok(s) => {
                if !quiet {
                    print!("{}", dry_run_text(&s, &scenario.overrides()));
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::BAD_INPUT
            }
        },
        Command::Serve {
            listen,
            encoding,
            buffer_per_topic,
            buffer_bytes_per_topic,
            buffer_bytes,
            max_topics,
            max_message,
            max_connections,
            write_timeout,
            idle_timeout,
            heartbeat,
            token,
            min_open_files,
            tls_cert_out,
            exit_with_parent,
            threads: _,
        } => {
            if exit_with_parent {
                let _ = rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ));
            }
            // A zero heartbeat panicked on the first WebSocket client (and
            // spun SSE streams on comments); a zero buffer holds no event.
            let checks: [(bool, String); 9] = [
                (
                    (1 << 20..=1 << 40).contains(&buffer_bytes),
                    format!(
                        "--buffer-bytes {buffer_bytes}: allowed is 1048576 to 1099511627776 bytes"
                    ),
                ),
                (
                    (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&idle_timeout),
                    format!(
                        "--idle-timeout {}: allowed is 1s to 1h",
                        humantime::format_duration(idle_timeout)
                    ),
                ),
                (
                    heartbeat >= Duration::from_millis(100),
                    format!(
                        "--heartbeat {}: allowed is 100ms or more (e.g. --heartbeat 15s)",
                        humantime::format_duration(heartbeat)
                    ),
                ),
                (
                    (1..=1_000_000).contains(&buffer_per_topic),
                    format!(
                        "--buffer-per-topic {buffer_per_topic}: allowed is 1 to 1000000 events"
                    ),
                ),
                (
                    (1024..=16 << 30).contains(&buffer_bytes_per_topic),
                    format!(
                        "--buffer-bytes-per-topic {buffer_bytes_per_topic}: allowed is 1024 to 17179869184 bytes"
                    ),
                ),
                (
                    (1..=10_000_000).contains(&max_topics),
                    format!("--max-topics {max_topics}: allowed is 1 to 10000000"),
                ),
                (
                    (125..=server::MAX_MAX_MESSAGE).contains(&max_message),
                    format!(
                        "--max-message {max_message}: allowed is 125 to {} bytes",
                        server::MAX_MAX_MESSAGE
                    ),
                ),
                (
                    max_connections.is_none_or(|n| n >= 1),
                    "--max-connections 0: allowed is 1 or more".to_owned(),
                ),
                (
                    (Duration::from_millis(100)..=Duration::from_secs(3600))
                        .contains(&write_timeout),
                    format!(
                        "--write-timeout {}: allowed is 100ms to 1h",
                        humantime::format_duration(write_timeout)
                    ),
                ),
            ];
            if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
                eprintln!("error: {why}");
                return exit::BAD_INPUT;
            }
            if token
                .as_ref()
                .is_some_and(|t| t.is_empty() || !t.is_ascii() || t.contains(char::is_whitespace))
            {
                eprintln!(
                    "error: --token: allowed is a non-empty token of visible ASCII characters"
                );
                return exit::BAD_INPUT;
            }
            let config = ServerConfig {
                encoding,
                buffer_per_topic,
                buffer_bytes_per_topic,
                buffer_bytes,
                max_topics,
                max_message,
                max_connections: max_connections.unwrap_or(server::DEFAULT_MAX_CONNECTIONS),
                write_timeout,
                header_timeout: idle_timeout,
                heartbeat,
                token: Some(token.unwrap_or_else(server::random_token)),
                loopback_hosts_only: listen.ip().is_loopback(),
                ..ServerConfig::default()
            };
            serve(
                listen,
                config,
                max_connections.is_none(),
                min_open_files,
                tls_cert_out,
            )
            .await
        }
        Command::Sweep {
            scenario,
            vary,
            results_dir,
            transports,
            tls,
        } => sweep(&scenario, vary, &results_dir, transports, quiet, tls).await,
        Command::Merge { shards, out, json } => match report::shards::merge_shards(&shards, &out) {
            Ok(summary) => {
                let ending = if summary.complete {
                    Ending::Complete
                } else {
                    Ending::Failed(summary.incomplete_reason.clone().unwrap_or_default())
                };
                finish(&summary, &out, ending, json)
            }
            Err(report::shards::MergeError::Refused(why)) => {
                eprintln!("error: {why}");
                exit::BAD_INPUT
            }
            Err(report::shards::MergeError::Failed(e)) => {
                eprintln!("error: {e:#}");
                exit::FAILED
            }
        },
        Command::Report { results_dir } if results_dir.join(crate::sweep::INDEX).is_file() => {
            match report::sweep::render(&results_dir) {
                Ok(data) => {
                    if !quiet {
                        print_crossover(&data);
                        println!("report: {}", results_dir.join("report.html").display());
                    }
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    exit::BAD_INPUT
                }
            }
        }
        Command::Report { results_dir } => match report::render(&results_dir) {
            Ok(saved) => {
                if !quiet {
                    print_summary(&saved.summary, &results_dir, false);
                    println!("report: {}", results_dir.join("report.html").display());
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                exit::BAD_INPUT
            }
        },
        Command::Compare {
            baseline,
            current,
            figures,
            tight,
            noise,
            tail_noise,
        } => compare(
            &baseline,
            &current,
            &figures,
            crate::compare::Thresholds {
                tight_pct: tight,
                noise_pct: noise,
                tail_noise_pct: tail_noise.unwrap_or(2.0 * noise),
            },
            quiet,
        ),
        Command::Schema => {
            print!("{}", report::summary::schema());
            exit::OK
        }
        Command::ScenarioReference => {
            print!("{}", crate::scenario::keys::markdown());
            exit::OK
        }
        Command::Init { name } => init(&name, quiet),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pushbench",
                &mut std::io::stdout(),
            );
            exit::OK
        }
        Command::LinkStage {
            delay_up,
            delay_down,
            jitter,
            loss_up,
            loss_down,
            seed,
        } => {
            let config = crate::network::stage::StageConfig {
                delay_up,
                delay_down,
                jitter,
                loss_up: loss_up / 100.0,
                loss_down: loss_down / 100.0,
                seed,
            };
            match tokio::task::spawn_blocking(move || crate::network::stage::run(config)).await {
                Ok(Ok(())) => exit::OK,
                Ok(Err(e)) => {
                    eprintln!("error: link stage: {e:#}");
                    exit::FAILED
                }
                Err(e) => {
                    eprintln!("error: link stage: {e}");
                    exit::FAILED
                }
            }
        }
        Command::Man => {
            use clap::CommandFactory as _;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("error: the manual page could not be written: {e}");
                    exit::FAILED
                }
            }
        }
    }
}

fn compare(
    baseline: &Path,
    current: &Path,
    figures: &[crate::compare::Group],
    thresholds: crate::compare::Thresholds,
    quiet: bool,
) -> u8 {
    use crate::compare::{self, Style, Verdict};
    use std::io::IsTerminal as _;
    let loaded = compare::load(baseline).and_then(|b| Ok((b, compare::load(current)?)));
    let checks =
        loaded.and_then(|(b, c)| Ok((compare::compare(&b, &c, figures, thresholds)?, b, c)));
    let (checks, b, c) = match checks {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::BAD_INPUT;
        }
    };
    let style = if std::io::stdout().is_terminal() {
        Style::Terminal
    } else {
        Style::Plain
    };
    if !quiet {
        println!("{}", compare::render(&checks, &b, &c, style));
    }
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    let not_comparable = match count(Verdict::NotComparable) {
        0 => String::new(),
        n => format!("; {n} not comparable here (see the notes: neither passed nor failed)"),
    };
    let regressions: Vec<_> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Regression)
        .collect();
    if regressions.is_empty() {
        let improved = count(Verdict::Improved);
        println!(
            "pass: {} figures within limits{}{not_comparable}",
            count(Verdict::Pass) + improved,
            if improved > 0 {
                format!(", {improved} better than the baseline")
            } else {
                String::new()
            }
        );
        exit::OK
    } else {
        let single = b.runs.len() == 1 && c.runs.len() == 1;
        println!(
            "FAIL: {} regression(s): {}{not_comparable}.\n{}",
            regressions.len(),
            regressions
                .iter()
                .map(|c| format!("{} {}", c.transport, c.figure))
                .collect::<Vec<_>>()
                .join(", "),
            if single {
                format!(
                    "regression, or update the baseline with: cp {} {}",
                    report::saved::summary_path(current).display(),
                    report::saved::summary_path(baseline).display()
                )
            } else {
                "regression, or an intended change: then refresh the baseline (scripts/ci-perf.sh --update)".into()
            }
        );
        exit::FAILED
    }
}

/// Makes sure this process may open `needed` files, raising the soft limit
/// up to the hard one; otherwise says which limit, how much and how to fix it.
pub fn ensure_open_files(needed: u64, what: &str) -> Result<(), String> {
    let raised = rlimit::increase_nofile_limit(needed).unwrap_or(0);
    if raised >= needed {
        return Ok(());
    }
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((raised, raised));
    Err(format!(
        "{what} needs about {needed} open files (one per socket), but the open-file limit (RLIMIT_NOFILE) is {soft} soft / {hard} hard. \
         Raise the hard limit to at least {needed} (e.g. `ulimit -Hn {needed}` as root, LimitNOFILE={needed} for a systemd unit, \
         or a nofile line in /etc/security/limits.conf) or lower clients.count"
    ))
}

async fn serve(
    listen: SocketAddr,
    mut config: ServerConfig,
    cap_from_open_files: bool,
    min_open_files: u64,
    tls_cert_out: Option<PathBuf>,
) -> u8 {
    if let Err(e) = ensure_open_files(min_open_files, "the server") {
        eprintln!("error: {e}");
        return exit::FAILED;
    }
    // Past the open-file limit, accept() fails and new clients wait
    // unanswered in the backlog; under it they get a 503 at once.
    if cap_from_open_files && let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        let room = usize::try_from(soft.saturating_sub(64)).unwrap_or(usize::MAX);
        config.max_connections = config.max_connections.min(room.max(1));
    }
    let tls = match tls_cert_out
        .map(|path| make_certificate(&path, listen.ip()))
        .transpose()
    {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::FAILED;
        }
    };
    let listener = match server::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return exit::FAILED;
        }
    };
    let addr = listener.local_addr().map_or(listen, |a| a);
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(token) = &config.token {
        println!("control token (Authorization: Bearer …): {token}");
    }
    println!("{READY_PREFIX}{scheme}://{addr}");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match server::serve(listener, AppState::new(config), tls, shutdown).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: server failed: {e}");
            exit::FAILED
        }
    }
}

/// A fresh self-signed certificate, also valid for the address the server
/// listens on, its PEM written to `path`.
fn make_certificate(
    path: &Path,
    listen: std::net::IpAddr,
) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
    let cert = crate::tls::SelfSigned::generate_for(Some(listen))?;
    std::fs::write(path, &cert.cert_pem)
        .with_context(|| format!("cannot write the certificate to {}", path.display()))?;
    cert.server_config()
}

fn print_summary(summary: &Summary, dir: &Path, json: bool) {
    say(json, &report::render_table(summary));
    for line in report::notices(summary) {
        say(json, &line);
    }
    say(json, &format!("results: {}", dir.display()));
}

/// The human-readable end of a run: on stdout, or on stderr when stdout
/// carries `--json` for a script.
fn say(json: bool, text: &str) {
    if json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

/// `--json`: the summary (one object; an array over repetitions) on stdout.
fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: the summary could not be written as JSON: {e}"),
    }
}

/// `results/<scenario>-<UTC timestamp>`, made unique if it exists.
fn results_path(root: &Path, name: &str, started_at_utc: &str) -> PathBuf {
    let stamp: String = started_at_utc
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut dir = root.join(format!("{name}-{stamp}"));
    let mut n = 2;
    while dir.exists() {
        dir = root.join(format!("{name}-{stamp}-{n}"));
        n += 1;
    }
    dir
}

/// Whether a run can write its results under `dir`: created if missing,
/// and a file written (then removed) in it.
fn check_results_dir(dir: &Path) -> Result<(), String> {
    let what = |e: std::io::Error, doing: &str| {
        format!(
            "--results-dir {}: {doing}: {e}; give a directory this user can write (default: results)",
            dir.display()
        )
    };
    // The first file on the path names the mistake better than the
    // system's "File exists" or "Not a directory".
    if let Some(file) = dir
        .ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.is_file())
    {
        return Err(format!(
            "--results-dir {}: {} is a file, not a directory; give a directory this user can write (default: results)",
            dir.display(),
            file.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| what(e, "cannot create it"))?;
    tempfile::tempfile_in(dir).map_err(|e| what(e, "cannot write in it"))?;
    Ok(())
}

/// Expected wall time of a whole run: every phase of every transport, each
/// repetition (drain counted in full, process starts not at all).
fn expected_duration(s: &Scenario) -> Duration {
    let p = &s.phases;
    (s.clients.connect_ramp + p.warmup + p.measure + p.drain)
        * s.transports.len() as u32
        * s.run.repeat
}

/// The line a run starts with: what runs, for how long, and where the
/// results go.
fn start_banner(s: &Scenario, results_dir: &Path) -> String {
    let total = expected_duration(s);
    let until = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + total);
    let network = s
        .network
        .as_ref()
        .map(|n| format!("; over an emulated link: {}", n.describe()))
        .unwrap_or_default()
        + &s.proxy
            .as_ref()
            .map(|p| format!("; through {}", p.kind))
            .unwrap_or_default();
    format!(
        "pushbench: {} — {} transport(s) × {} repetition(s), {} clients; about {} (until {until}); results under {}{network}",
        s.name,
        s.transports.len(),
        s.run.repeat,
        s.clients.count,
        humantime::format_duration(total),
        results_dir.display()
    )
}

/// What `validate` and `run --dry-run` print: the resolved scenario and
/// what running it takes.
fn dry_run_text(s: &Scenario, overrides: &[Override]) -> String {
    use std::fmt::Write as _;
    let secs = |d: Duration| {
        humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
    };
    let p = &s.phases;
    let per_transport = s.clients.connect_ramp + p.warmup + p.measure + p.drain;
    let transports = s.transports.len() as u32;
    let total = expected_duration(s);
    let reach = s.clients.count as f64 * s.clients.topics_per_client as f64 / s.topics.count as f64;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
    let mut out = String::new();
    let _ = writeln!(out, "scenario: {} ({}): valid", s.file, s.name);
    if !overrides.is_empty() {
        // One flag may set several keys (--shard): named once.
        let mut flags: Vec<&str> = overrides.iter().map(|o| o.flag.as_str()).collect();
        flags.dedup();
        let _ = writeln!(out, "overrides: {}", flags.join(", "));
    }
    let names: Vec<&str> = s.transports.iter().map(|t| t.name()).collect();
    let servers = match &s.target {
        Some(t) => format!(
            "each against the running {} server at {}",
            t.kind.name(),
            t.url
        ),
        None => format!(
            "each against a fresh server process ({} worker thread(s) for pushbench's; generator: {} worker thread(s))",
            s.server.threads, s.clients.workers
        ),
    };
    let _ = writeln!(
        out,
        "transports: {} ({}), {servers}{}",
        names.join(", "),
        transports,
        if s.tls { ", over TLS" } else { "" }
    );
    let from: Vec<String> = s
        .transports
        .iter()
        .map(|t| format!("{t}: {}", s.publish_from(*t).name()))
        .collect();
    let _ = writeln!(out, "published from: {}", from.join(", "));
    let _ = writeln!(
        out,
        "clients: {} ({} of {} topics each), connecting over {}",
        s.clients.count,
        s.clients.topics_per_client,
        s.topics.count,
        secs(s.clients.connect_ramp)
    );
    let _ = writeln!(
        out,
        "load: {} events/s published ({:?}, {} B payload), about {:.0} deliveries/s",
        s.publish.rate,
        s.publish.arrival,
        s.publish.payload_bytes,
        s.publish.rate * reach
    );
    if s.clients.shards > 1 {
        let n = s.clients.shards;
        let here = match s.clients.shard {
            Some(k) => format!(
                "this process runs shard {k}: {} clients, publishing its topics' events (about {:.0} events/s); join the shards' results with pushbench merge",
                s.clients.here(),
                s.publish.rate / f64::from(n)
            ),
            None if s.clients.processes > 1 => format!(
                "each in a generator process of its own ({} worker threads each), publishing its topics' events, against one server; one window, results merged",
                s.clients.workers
            ),
            None => "this process runs all of them".into(),
        };
        let _ = writeln!(
            out,
            "shards: {n} (client i and topic j in shard i mod {n} and j mod {n}; a client subscribes to its shard's topics); {here}"
        );
    }
    let processes = match (s.clients.processes, &s.target) {
        (1, _) => format!("{} per process", s.open_files_needed()),
        (_, Some(_)) => format!("{} per generator process", s.generator_open_files_needed()),
        (_, None) => format!(
            "{} per generator process, {} for the server",
            s.generator_open_files_needed(),
            s.server_open_files_needed()
        ),
    };
    let _ = writeln!(
        out,
        "open files: about {processes} (this shell's limit: {soft} soft, {hard} hard)"
    );
    let _ = writeln!(
        out,
        "time: about {} per transport (connect {}, warm-up {}, measure {}, drain at most {}); {} in all{}",
        secs(per_transport),
        secs(s.clients.connect_ramp),
        secs(p.warmup),
        secs(p.measure),
        secs(p.drain),
        secs(total),
        if s.run.repeat > 1 {
            format!(" over {} repetitions", s.run.repeat)
        } else {
            String::new()
        }
    );
    let network = match &s.network {
        Some(n) => format!(
            "emulated link ({}); needs root, ip, tc and iptables",
            n.describe()
        ),
        None => "loopback (no [network] section)".into(),
    };
    let _ = writeln!(out, "network: {network}");
    if let Some(p) = &s.proxy {
        let _ = writeln!(
            out,
            "proxy: {} between clients and server, fresh per transport (read timeout {}, buffering {}); needs nginx",
            p.kind,
            humantime::format_duration(p.read_timeout),
            if p.buffering { "on" } else { "off" }
        );
    }
    out
}

/// `pushbench check URL`.
async fn check(url: &str, ca: Option<&Path>, heartbeat_wait: Option<Duration>, quiet: bool) -> u8 {
    let target = match crate::scenario::normalize_target_url(url) {
        Ok(url) => crate::scenario::TargetServer {
            url,
            kind: crate::scenario::ServerKind::Pushbench,
        },
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let resolved = match crate::target::resolve(&target, ca).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::BAD_INPUT;
        }
    };
    match crate::check::run(&target.url, &resolved, heartbeat_wait).await {
        Ok(lines) => {
            let (text, failed) = crate::check::report(&lines);
            if quiet {
                // The checks that did not pass, and the count.
                for line in text.lines().filter(|l| !l.starts_with("pass ")) {
                    println!("{line}");
                }
            } else {
                print!("{text}");
            }
            if failed > 0 { exit::FAILED } else { exit::OK }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::BAD_INPUT
        }
    }
}

/// For a `[target]`: resolves it, probes its routes (skipping transports
/// it does not offer that the scenario did not name, refusing named ones),
/// says what load it will get and, for a target off this machine, asks
/// first (or takes `--yes`). A part only resolves: its parent has probed
/// and asked.
async fn prepare_target(
    scenario: &mut Scenario,
    args: &TargetArgs,
    quiet: bool,
) -> anyhow::Result<Option<ServerLaunch>> {
    let Some(target) = scenario.target.clone() else {
        if args.server_pid.is_some() || args.ca.is_some() {
            anyhow::bail!("--server-pid and --ca are for a run against --target URL");
        }
        return Ok(None);
    };
    if let Some(pid) = args.server_pid
        && !Path::new(&format!("/proc/{pid}")).exists()
    {
        anyhow::bail!("--server-pid {pid}: no such process on this machine");
    }
    let resolved = crate::target::resolve(&target, args.ca.as_deref()).await?;
    scenario.tls = resolved.https;
    if !quiet {
        // Asked before the probes: they are traffic to the target too.
        if !target.is_loopback() && !args.yes {
            use std::io::IsTerminal as _;
            eprintln!(
                "{}",
                crate::target::load_line(scenario, &target, resolved.addr)
            );
            if !std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "{} is not on this machine: pass --yes to put this load on it",
                    target.url
                );
            }
            eprint!("put this load on {}? [y/N] ", target.url);
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                anyhow::bail!("not confirmed; nothing was started");
            }
        }
        let (probes, publish) = crate::target::probe(scenario, &target, &resolved).await?;
        publish.map_err(|e| {
            anyhow::anyhow!("{} cannot take the generator's events: {e}", target.url)
        })?;
        for p in probes {
            if let Err(why) = p.offered {
                if scenario.transports_listed {
                    anyhow::bail!(
                        "{} does not offer {} ({why}); leave it out of the transports",
                        target.url,
                        p.transport
                    );
                }
                eprintln!(
                    "skipping {}: {} does not offer it ({why})",
                    p.transport, target.url
                );
                scenario.transports.retain(|t| *t != p.transport);
            }
        }
        if scenario.transports.is_empty() {
            anyhow::bail!("{} offers none of the scenario's transports", target.url);
        }
        eprintln!(
            "{}",
            crate::target::load_line(scenario, &target, resolved.addr)
        );
    }
    Ok(Some(ServerLaunch::Existing {
        addr: resolved.addr,
        kind: target.kind,
        pid: args.server_pid,
        tls_name: resolved.https.then(|| resolved.host.clone()),
        tls_cert_pem: resolved.ca_pem,
        token: args.token.clone(),
        control: args.token.is_some() && target.kind == crate::scenario::ServerKind::Pushbench,
    }))
}

/// What a scenario with `[proxy]` needs before anything starts: transports
/// the proxy carries, no TLS, and nginx installed.
fn proxy_preflight(scenario: &Scenario, path: &Path) -> Result<(), String> {
    if scenario.proxy.is_none() {
        return Ok(());
    }
    if let Some((t, why)) = scenario
        .transports
        .iter()
        .find_map(|t| crate::proxy::cannot_carry(*t).map(|w| (t, w)))
    {
        return Err(format!(
            "{t} cannot run behind [proxy] in {}: {why}",
            path.display()
        ));
    }
    if scenario.tls {
        return Err(format!(
            "{}: TLS behind [proxy] is not supported: the proxy would end TLS with a certificate of its own; run without --tls (or tls = true)",
            path.display()
        ));
    }
    crate::proxy::find_nginx().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// The crossover table of a sweep, one line per point.
fn print_crossover(data: &report::sweep::SweepData) {
    println!("crossover (best transport at each point; lower is better):");
    for (at, cells) in report::sweep::crossover(data) {
        println!(
            "  {at}: p99 {} | bytes {} | server CPU {}",
            cells[0], cells[1], cells[2]
        );
    }
}

/// `pushbench sweep`: validates every point, then runs each as a normal
/// run (its own process and results directory) and reports on them all.
async fn sweep(
    args: &ScenarioArgs,
    vary: Vec<crate::sweep::Vary>,
    results_dir: &Path,
    transports: Vec<TransportKind>,
    quiet: bool,
    tls: bool,
) -> u8 {
    let path = args.scenario.as_path();
    let overrides = args.overrides();
    let mut scenario = match crate::sweep::validate(path, &overrides, &vary) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    // What each point's run would refuse, refused here once, before any
    // point starts.
    if !transports.is_empty() {
        scenario.transports = transports.clone();
    }
    scenario.tls |= tls;
    let refused = proxy_preflight(&scenario, path).err().or_else(|| {
        scenario
            .network
            .as_ref()
            .and_then(|_| crate::network::link::check_requirements().err())
            .map(|e| format!("{}: {e}", path.display()))
    });
    let refused = refused.or_else(|| {
        (scenario.run.repeat > 1).then(|| {
            format!(
                "{}: run.repeat = {}: a sweep runs each point once (repeat the sweep instead)",
                path.display(),
                scenario.run.repeat
            )
        })
    });
    if let Some(e) = refused {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    if let Err(e) = check_results_dir(results_dir) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find the pushbench executable: {e}");
            return exit::FAILED;
        }
    };
    // Ctrl-C reaches the point's run too (same process group): it stops
    // and writes what it measured; the sweep then stops after it.
    let interrupted = on_interrupt();

    let started_at_utc =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let dir = results_path(
        results_dir,
        &format!("{}-sweep", scenario.name),
        &started_at_utc,
    );
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return exit::FAILED;
    }
    let grid = crate::sweep::grid(&vary);
    let mut index = crate::sweep::Index {
        schema_version: crate::sweep::SCHEMA_VERSION,
        scenario: path.display().to_string(),
        name: scenario.name.clone(),
        started_at_utc,
        vary,
        overrides: overrides.iter().map(|o| o.flag.clone()).collect(),
        points: Vec::new(),
    };
    eprintln!(
        "pushbench sweep: {} points of {} into {}",
        grid.len(),
        path.display(),
        dir.display()
    );
    let mut code = exit::OK;
    for (k, values) in grid.into_iter().enumerate() {
        let at: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("== point {}: {}", k + 1, at.join(", "));
        let out = dir.join(format!("point-{:03}", k + 1));
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("run")
            .arg(path)
            .arg("--results-dir")
            .arg(&out)
            .args(
                overrides
                    .iter()
                    .map(|o| format!("--set={}={}", o.key, o.value)),
            )
            .args(at.iter().map(|a| format!("--set={a}")))
            .args(transports.iter().flat_map(|t| ["--transport", t.name()]))
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        if quiet {
            cmd.arg("--quiet");
        }
        if tls {
            cmd.arg("--tls");
        }
        // A terminal's Ctrl-C reaches the point's run too (same process
        // group); SIGTERM or SIGHUP sent to the sweep alone is passed on.
        let status = match cmd.spawn() {
            Ok(mut child) => {
                let status = wait_passing_interrupt(&mut child, &interrupted).await;
                status.ok().and_then(|s| s.code())
            }
            Err(e) => {
                eprintln!("error: cannot start the run of point {}: {e}", k + 1);
                None
            }
        };
        let results = crate::sweep::written_results(&out)
            .and_then(|r| r.strip_prefix(&dir).ok().map(|r| r.display().to_string()));
        index.points.push(crate::sweep::Point {
            values,
            results,
            exit_code: status,
        });
        if let Err(e) = crate::sweep::save(&dir, &index) {
            eprintln!("error: {e:#}");
            return exit::FAILED;
        }
        if status == Some(exit::BAD_INPUT as i32) {
            eprintln!(
                "error: point {} was refused (above); the sweep stops",
                k + 1
            );
            return exit::BAD_INPUT;
        }
        if status != Some(exit::OK as i32) {
            code = exit::FAILED;
        }
        if interrupted.is_cancelled() || status == Some(exit::INTERRUPTED as i32) {
            code = exit::INTERRUPTED;
            break;
        }
    }
    match report::sweep::render(&dir) {
        Ok(data) => {
            print_crossover(&data);
            println!("report: {}", dir.join("report.html").display());
        }
        Err(e) => {
            eprintln!(
                "error: the sweep's runs are in {}, but its report could not be rendered: {e:#}",
                dir.display()
            );
            return exit::FAILED;
        }
    }
    code
}

/// A token cancelled on Ctrl-C (SIGINT), SIGTERM or SIGHUP: a run stops,
/// writes what it measured and cleans up, whichever way it is told to end
/// (a terminal, `timeout`, a CI job cancelled, a closed terminal).
fn on_interrupt() -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = CancellationToken::new();
    let cancel = interrupt.clone();
    let mut streams: Vec<_> = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ]
    .into_iter()
    .filter_map(|k| signal(k).ok())
    .collect();
    tokio::spawn(async move {
        let any = futures_util::future::select_all(streams.iter_mut().map(|s| Box::pin(s.recv())));
        any.await;
        eprintln!("interrupted: stopping and writing what was measured");
        cancel.cancel();
    });
    interrupt
}

/// Waits for a child run; on `interrupt` it sends the child SIGINT (it
/// then stops, writes what it measured and ends) and waits for that.
async fn wait_passing_interrupt(
    child: &mut tokio::process::Child,
    interrupt: &CancellationToken,
) -> std::io::Result<std::process::ExitStatus> {
    tokio::select! {
        status = child.wait() => status,
        () = interrupt.cancelled() => {
            if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
            }
            child.wait().await
        }
    }
}

/// How `run` runs, from its flags.
struct RunHow {
    /// Only validate and show what would run.
    dry_run: bool,
    /// Print the summary as JSON on stdout (the table goes to stderr).
    json: bool,
    quiet: bool,
    tls: bool,
    /// `--repeat`, over the scenario's `run.repeat`.
    repeat: Option<u32>,
    part: bool,
    /// `--link`: the emulated link a part runs over.
    link: Option<crate::network::link::LinkName>,
    /// `--dashboard`: where the live page is served.
    dashboard: Option<SocketAddr>,
    /// `--progress-lines`: a part's progress as JSON lines on stdout.
    progress_lines: bool,
    /// `--window-gate`: this part is one generator process of several.
    window_gate: Option<u64>,
    target: TargetArgs,
}

async fn run(
    args: &ScenarioArgs,
    results_dir: &Path,
    transports: Vec<TransportKind>,
    how: RunHow,
) -> u8 {
    let RunHow {
        quiet,
        tls,
        repeat,
        part,
        dry_run,
        json,
        link,
        dashboard,
        progress_lines,
        window_gate,
        target: target_args,
    } = how;
    if window_gate.is_some() && !part {
        eprintln!("error: --window-gate is internal: it is given to a run's generator processes");
        return exit::BAD_INPUT;
    }
    let path = args.scenario.as_path();
    if part {
        // A part whose parent dies (killed, say) is interrupted like a
        // Ctrl-C: it stops its server, writes what it measured and ends,
        // instead of running on unwatched.
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::INT));
    }
    let overrides = args.overrides();
    let mut scenario = match Scenario::load_with(path, &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    if let Some(t) = transports
        .iter()
        .enumerate()
        .find_map(|(i, t)| transports[..i].contains(t).then_some(t))
    {
        eprintln!(
            "error: --transport {t} is given twice; each transport runs once per run (its files would overwrite each other)"
        );
        return exit::BAD_INPUT;
    }
    if !transports.is_empty() {
        if let Some(t) = transports
            .iter()
            .find(|t| !t.carries(scenario.publish.encoding))
        {
            eprintln!(
                "error: {t} carries text only; {} uses publish.encoding = \"{}\"",
                path.display(),
                scenario.publish.encoding.as_str()
            );
            return exit::BAD_INPUT;
        }
        scenario.transports = transports;
        scenario.transports_listed = true;
    }
    scenario.tls |= tls;
    if let Some(r) = repeat {
        scenario.run.repeat = r;
    }
    if dashboard.is_some() && scenario.clients.processes > 1 {
        eprintln!(
            "error: --dashboard with clients.processes = {}: the live page follows one generator process; run with one, or without the page",
            scenario.clients.processes
        );
        return exit::BAD_INPUT;
    }
    if let Err(e) = proxy_preflight(&scenario, path) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    if scenario.target.is_none()
        && scenario
            .transports
            .iter()
            .any(|t| t.server() == crate::scenario::ServerKind::Socketio)
        && let Err(e) = crate::server_process::find_socketio()
    {
        eprintln!("error: {}: {e}", path.display());
        return exit::BAD_INPUT;
    }
    let target_launch = match prepare_target(&mut scenario, &target_args, part).await {
        Ok(launch) => launch,
        Err(e) => {
            eprintln!("error: {}: {e:#}", path.display());
            return exit::BAD_INPUT;
        }
    };
    if dry_run {
        print!("{}", dry_run_text(&scenario, &overrides));
        return exit::OK;
    }
    // Found before the run, not after it: a results directory that cannot
    // be written used to lose a whole run's measurements at the end.
    if let Err(e) = check_results_dir(results_dir) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    // A part is one transport, once.
    let repeat = if part { 1 } else { scenario.run.repeat };
    if let Err(e) = ensure_open_files(
        scenario.open_files_needed(),
        &format!(
            "{} (clients.count = {})",
            path.display(),
            scenario.clients.count
        ),
    ) {
        eprintln!("error: {e}");
        return exit::FAILED;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find the pushbench executable to start the server: {e}");
            return exit::FAILED;
        }
    };
    // The page's address is had before anything starts, like the results
    // directory: a run should not find out at its end that no one saw it.
    let board = match dashboard {
        Some(addr) if !part => match crate::dashboard::Dashboard::start(addr).await {
            Ok(board) => {
                if !addr.ip().is_loopback() {
                    eprintln!(
                        "warning: --dashboard {addr}: the live page is reachable from the network, without a password"
                    );
                }
                Some(board)
            }
            Err(e) => {
                eprintln!(
                    "error: --dashboard {addr}: cannot listen there: {e}; give another address, or port 0 for any free one"
                );
                return exit::BAD_INPUT;
            }
        },
        _ => None,
    };
    // Every way out of the run below ends the live page: with the final
    // figures when there are some, otherwise saying that there are none.
    let code = async {
        // Listening before the link is built: an interrupt while it is being
        // built must still reach the code that removes it.
        let interrupt = on_interrupt();
        // The link is built once, by the run that owns it, and removed when
        // this returns (or unwinds); its parts run inside it.
        let mut built_link = None;
        match (&scenario.network, part, &link) {
            (None, _, None) => {}
            (Some(network), false, None) => {
                if let Err(e) = crate::network::link::check_requirements() {
                    eprintln!("error: {}: {e}", path.display());
                    return exit::BAD_INPUT;
                }
                match crate::network::link::Link::build(network, scenario.clients.source_addresses) {
                    Ok(l) => built_link = Some(l),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return exit::FAILED;
                    }
                }
            }
            (Some(_), true, Some(_)) => {}
            _ => {
                eprintln!(
                    "error: --link is internal: a part runs over its parent's link, and only when the scenario has [network]"
                );
                return exit::BAD_INPUT;
            }
        }
        let link_name = built_link
            .as_ref()
            .map(|l: &crate::network::link::Link| l.name.clone());
        let started_at_utc =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        // A part runs under its parent's lock; the lock is held until this
        // function returns, whichever way the run goes.
        let (_lock, concurrent) = if part {
            (None, None)
        } else {
            match crate::environment::RunLock::take() {
                Ok(lock) => (Some(lock), None),
                Err(w) => (None, Some(w)),
            }
        };
        if let Some(w) = &concurrent {
            eprintln!("warning: {w}");
        }
        if !part {
            eprintln!("{}", start_banner(&scenario, results_dir));
        }
        if let Some(board) = &board {
            eprintln!("dashboard: {}", board.url());
            board.push(&crate::dashboard::Update::Started {
                scenario: scenario.name.clone(),
                transports: scenario
                    .transports
                    .iter()
                    .map(|t| t.name().to_owned())
                    .collect(),
                repeat,
                clients: scenario.clients.count,
                expected_s: expected_duration(&scenario).as_secs_f64(),
                results_dir: results_dir.display().to_string(),
            });
        }
        // Over a link every transport is a part: the generator must run inside
        // the link's client namespace, and this process is not.
        if !part && (scenario.transports.len() > 1 || repeat > 1 || link_name.is_some()) {
            let parts = Parts {
                target: &target_args,
                link: link_name.as_ref(),
                path,
                json,
                overrides: &overrides,
                scenario: &scenario,
                exe: &exe,
                quiet,
                tls,
                repeat,
                board: board.as_ref(),
            };
            return run_in_parts(parts, results_dir, &interrupt, concurrent).await;
        }
        let launch = target_launch.unwrap_or(ServerLaunch::Spawn {
            exe: exe.clone(),
            link: link.clone(),
        });
        if scenario.clients.processes > 1 {
            let g = Generators {
                scenario: &scenario,
                path,
                overrides: &overrides,
                exe: &exe,
                quiet,
                target: &target_args,
                warnings: concurrent.into_iter().collect(),
                started_at_utc: &started_at_utc,
            };
            let (summary, dir, ending) =
                match run_generators(&g, &launch, results_dir, &interrupt).await {
                    Ok(done) => done,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return exit::FAILED;
                    }
                };
            if part {
                return ending_code(ending);
            }
            return finish(&summary, &dir, ending, json);
        }
        let environment = crate::environment::environment();
        // Of several generator processes, the first shows the phases.
        let terminal: Box<dyn crate::progress::Progress> =
            match (window_gate, scenario.clients.shard) {
                (None, _) => crate::progress::for_output(quiet),
                (Some(_), Some(0)) => Box::new(crate::progress::WithoutEndings(
                    crate::progress::for_output(quiet),
                )),
                (Some(_), _) => Box::new(crate::progress::Silent),
            };
        let progress: std::sync::Arc<dyn crate::progress::Progress> = match &board {
            Some(board) => std::sync::Arc::new(crate::dashboard::Tee::new(
                terminal,
                crate::dashboard::Sink::Board(board.clone()),
            )),
            None if progress_lines => std::sync::Arc::new(crate::dashboard::Tee::new(
                terminal,
                crate::dashboard::Sink::Lines,
            )),
            None => terminal.into(),
        };
        let gate = window_gate.map(|base_ns| runner::WindowGate { base_ns });
        let outcome = runner::run_scenario(&scenario, &launch, &interrupt, progress, gate).await;
        let mut environment = environment;
        environment.set_reference_steps(outcome.reference_steps_ns.clone());
        let mut summary = Summary::new(&scenario, &outcome, started_at_utc.clone(), environment);
        summary.warnings.extend(concurrent);
        let dir = results_path(results_dir, &scenario.name, &started_at_utc);
        let dir = match write_results(&summary, &outcome.transports, dir) {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILED;
            }
        };
        if part {
            return ending_code(outcome.ending);
        }
        let code = finish(&summary, &dir, outcome.ending, json);
        tell_board(board.as_deref(), &dir, &[&summary]).await;
        code
    }
    .await;
    if let Some(board) = &board {
        board
            .abandon(&format!(
                "the run ended (exit {code}) without final figures: its terminal says why"
            ))
            .await;
    }
    code
}

/// Writes a run's data files into `dir`. When `dir` cannot take them (a
/// full disk, a results directory removed or replaced during the run),
/// they go to a fresh directory under the system's temporary directory
/// instead, and a warning says where: measurements are never lost to an
/// output error. Returns where they are.
fn write_results(
    summary: &Summary,
    runs: &[runner::TransportRun],
    dir: PathBuf,
) -> Result<PathBuf, String> {
    let write = |dir: &Path| {
        report::write_data(&Results {
            dir: dir.to_path_buf(),
            summary,
            runs,
        })
    };
    let Err(first) = write(&dir) else {
        return Ok(dir);
    };
    let fallback = tempfile::Builder::new()
        .prefix("pushbench-results-")
        .tempdir()
        .map(|t| t.keep().join(dir.file_name().unwrap_or_default()))
        .map_err(|e| {
            format!(
                "cannot write the results to {} ({first:#}), nor make a temporary directory for them: {e}",
                dir.display()
            )
        })?;
    match write(&fallback) {
        Ok(()) => {
            eprintln!(
                "warning: cannot write the results to {} ({first:#}); they are saved in {} instead",
                dir.display(),
                fallback.display()
            );
            Ok(fallback)
        }
        Err(e) => Err(format!(
            "cannot write the results to {} ({first:#}), nor to {} ({e:#})",
            dir.display(),
            fallback.display()
        )),
    }
}

/// The final figures to the live page, if there is one, once every page
/// open has been sent them (at most 2 s).
async fn tell_board(
    board: Option<&crate::dashboard::Dashboard>,
    dir: &Path,
    summaries: &[&Summary],
) {
    if let Some(board) = board {
        let update = crate::dashboard::Update::finished(dir, summaries);
        board.finish(&update, Duration::from_secs(2)).await;
    }
}

fn ending_code(ending: Ending) -> u8 {
    match ending {
        Ending::Complete => exit::OK,
        Ending::Interrupted => exit::INTERRUPTED,
        Ending::Failed(_) => exit::FAILED,
    }
}

/// Prints the table, renders the reports of a written results directory
/// and maps how the run ended to the exit code.
fn finish(summary: &Summary, dir: &Path, ending: Ending, json: bool) -> u8 {
    print_summary(summary, dir, json);
    if let Err(e) = report::render(dir) {
        eprintln!(
            "error: the measurements are saved in {}, but the report could not be rendered: {e:#}",
            dir.display()
        );
        return exit::FAILED;
    }
    say(
        json,
        &format!("report: {}", dir.join("report.html").display()),
    );
    if json {
        print_json(summary);
    }
    if let Ending::Failed(reason) = &ending {
        eprintln!("error: the run stopped early: {reason}");
    }
    thresholds_code(&[summary], ending_code(ending))
}

/// A run that finished but failed one of its scenario's thresholds exits
/// 1 (FAILED), like a run that stopped early.
fn thresholds_code(summaries: &[&Summary], code: u8) -> u8 {
    let failed = summaries
        .iter()
        .flat_map(|s| crate::thresholds::judge(s))
        .filter(|v| !v.passed)
        .count();
    if failed > 0 {
        eprintln!("error: {failed} threshold check(s) failed (listed above)");
        if code == exit::OK {
            return exit::FAILED;
        }
    }
    code
}

/// What a run in parts needs to start each part.
struct Parts<'a> {
    path: &'a Path,
    /// `--json`: the summary goes to stdout, the table to stderr.
    json: bool,
    /// Passed on to every part as `--set`, so each runs the same scenario.
    overrides: &'a [Override],
    scenario: &'a Scenario,
    exe: &'a Path,
    quiet: bool,
    tls: bool,
    repeat: u32,
    /// The link every part runs inside, if the scenario has one.
    link: Option<&'a crate::network::link::LinkName>,
    /// How to reach a `--target`, passed on to every part.
    target: &'a TargetArgs,
    /// The live page the parts' progress goes to.
    board: Option<&'a std::sync::Arc<crate::dashboard::Dashboard>>,
}

/// Runs each transport in a generator process of its own (`run --part`),
/// like the server: nothing one transport leaves behind (heap, caches,
/// peak RSS, threads) carries into the next, whatever the order. Then
/// joins their results directories into one and reports on it. With
/// `--repeat N`, the whole comparison runs N times, transports interleaved
/// (A B C, A B C, …, so drift hits every transport alike), each repetition
/// in a results directory of its own, and the figures are reported as
/// median and range over the repetitions.
async fn run_in_parts(
    p: Parts<'_>,
    results_dir: &Path,
    interrupt: &CancellationToken,
    concurrent: Option<String>,
) -> u8 {
    let started_at_utc =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let dir = results_path(results_dir, &p.scenario.name, &started_at_utc);
    let parts_root = beside(&dir, "parts");
    let mut environment = crate::environment::environment();
    environment.reference_steps_ns = environment.reference_step_ns.into_iter().collect();
    let mut done = Vec::new();
    let mut ending = Ending::Complete;
    for r in 1..=p.repeat {
        let (parts, rep_ending) =
            run_parts_once(&p, &parts_root.join(r.to_string()), interrupt).await;
        if parts.is_empty() {
            eprintln!("error: no transport wrote any results");
            ending = match rep_ending {
                Ending::Complete => Ending::Failed("no results".into()),
                other => other,
            };
            break;
        }
        let rep_dir = if p.repeat == 1 {
            dir.clone()
        } else {
            dir.join(format!("repeat-{r}"))
        };
        let mut skeleton = Summary::header(
            p.scenario,
            &rep_ending,
            started_at_utc.clone(),
            environment.clone(),
        );
        skeleton.warnings.extend(concurrent.clone());
        match report::merge::join_parts(&parts, &rep_dir, skeleton) {
            Ok(summary) => done.push((rep_dir, summary)),
            Err(e) => {
                eprintln!(
                    "error: the parts of this run are in {}, but could not be joined: {e:#}",
                    parts_root.display()
                );
                return exit::FAILED;
            }
        }
        if rep_ending != Ending::Complete {
            ending = rep_ending;
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&parts_root);
    if p.repeat == 1 {
        return match done.pop() {
            Some((dir, summary)) => {
                let code = finish(&summary, &dir, ending, p.json);
                tell_board(p.board.map(|b| &**b), &dir, &[&summary]).await;
                code
            }
            None => ending_code(ending),
        };
    }
    for (rep_dir, _) in &done {
        if let Err(e) = report::render(rep_dir) {
            eprintln!(
                "error: {}: the report could not be rendered: {e:#}",
                rep_dir.display()
            );
        }
    }
    let summaries: Vec<Summary> = done.into_iter().map(|(_, s)| s).collect();
    let table = report::repeat::render(&summaries);
    say(p.json, &table);
    // Each notice once, with how many repetitions gave it.
    let mut notices: Vec<(String, usize)> = Vec::new();
    for line in summaries.iter().flat_map(report::notices) {
        match notices.iter_mut().find(|(l, _)| *l == line) {
            Some((_, n)) => *n += 1,
            None => notices.push((line, 1)),
        }
    }
    for (line, n) in notices {
        say(
            p.json,
            &format!("{line} (in {n} of {} repetitions)", summaries.len()),
        );
    }
    if let Err(e) = report::charts::spread::write(&summaries, &dir) {
        eprintln!("error: the repetitions chart could not be drawn: {e:#}");
    }
    let path = dir.join("repetitions.md");
    if let Err(e) = std::fs::write(
        &path,
        format!(
            "# {}: {} repetitions\n\n{table}\n\n![median and range of each figure](repetitions.svg)\n\n![cost against latency p99: median and range of each transport](repetitions_cost_vs_latency.svg)\n",
            p.scenario.name,
            summaries.len()
        ),
    ) {
        eprintln!("error: writing {}: {e}", path.display());
    }
    say(
        p.json,
        &format!("results: {} (one directory per repetition)", dir.display()),
    );
    if p.json {
        print_json(&summaries);
    }
    if let Ending::Failed(reason) = &ending {
        eprintln!("error: the run stopped early: {reason}");
    }
    let all: Vec<&Summary> = summaries.iter().collect();
    let code = thresholds_code(&all, ending_code(ending));
    tell_board(p.board.map(|b| &**b), &dir, &all).await;
    code
}

/// One pass over the scenario's transports, each in its own generator
/// process: the results directories written, and how the pass ended.
async fn run_parts_once(
    p: &Parts<'_>,
    parts_root: &Path,
    interrupt: &CancellationToken,
) -> (Vec<PathBuf>, Ending) {
    let mut parts = Vec::new();
    for t in &p.scenario.transports {
        if interrupt.is_cancelled() {
            return (parts, Ending::Interrupted);
        }
        let out = parts_root.join(t.name());
        let mut cmd = match p.link {
            Some(link) => crate::network::link::command_in(&link.client_ns(), p.exe),
            None => tokio::process::Command::new(p.exe),
        };
        cmd.arg("run");
        if let Some(link) = p.link {
            cmd.args(["--link".to_owned(), link.arg()]);
        }
        cmd.arg(p.path)
            .args(["--part", "--transport", t.name(), "--results-dir"])
            .arg(&out)
            .args(
                p.overrides
                    .iter()
                    .map(|o| format!("--set={}={}", o.key, o.value)),
            )
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        if p.board.is_some() {
            cmd.arg("--progress-lines")
                .stdout(std::process::Stdio::piped());
        }
        if p.quiet {
            cmd.arg("--quiet");
        }
        if p.tls {
            cmd.arg("--tls");
        }
        // The token in the environment, as a command line is visible to
        // every user of the machine.
        if let Some(token) = &p.target.token {
            cmd.env("PUSHBENCH_TOKEN", token);
        }
        if let Some(pid) = p.target.server_pid {
            cmd.args(["--server-pid".to_owned(), pid.to_string()]);
        }
        if let Some(ca) = &p.target.ca {
            cmd.arg("--ca").arg(ca);
        }
        // Ctrl-C at a terminal reaches the part too (same process group);
        // an interrupt sent to this process alone is passed on. Either way
        // the part stops, writes what it measured, and this waits for it.
        let status = match cmd.spawn() {
            Ok(mut child) => {
                let lines = forward_progress_lines(&mut child, p.board);
                let status = wait_passing_interrupt(&mut child, interrupt).await;
                // Every line of this part reaches the page before the next
                // part's or the run's final figures.
                if let Some(lines) = lines {
                    let _ = lines.await;
                }
                status
            }
            Err(e) => Err(e),
        };
        let written = written_dir(&out);
        parts.extend(written.clone());
        let code = status.as_ref().ok().and_then(|s| s.code());
        if interrupt.is_cancelled() || code == Some(exit::INTERRUPTED as i32) {
            return (parts, Ending::Interrupted);
        }
        if code != Some(exit::OK as i32) {
            let why = match (&status, written) {
                (Err(e), _) => format!("{t}: cannot start its generator process: {e}"),
                (Ok(s), Some(_)) => format!("{t}: its generator process ended with {s}"),
                (Ok(s), None) => {
                    format!("{t}: its generator process ended with {s} and wrote no results")
                }
            };
            return (parts, Ending::Failed(why));
        }
    }
    (parts, Ending::Complete)
}

/// What [`run_generators`] needs of the run.
struct Generators<'a> {
    scenario: &'a Scenario,
    path: &'a Path,
    /// Passed on to every process as `--set`, so each runs the same scenario.
    overrides: &'a [Override],
    exe: &'a Path,
    quiet: bool,
    /// How to reach a `--target`, passed on to every process.
    target: &'a TargetArgs,
    /// Added to the merged summary (another run on the machine, say).
    warnings: Vec<String>,
    /// When the run started, which names its results directory.
    started_at_utc: &'a str,
}

/// How far ahead of their start the generator processes' shared timeline
/// begins, plus [`GENERATORS_LEAD_EACH`] a process: each is up and waiting
/// before it, so none begins late on it (a late one would connect its
/// clients faster than the ramp, and have less time to).
const GENERATORS_LEAD: Duration = Duration::from_millis(400);
/// What starting one more generator process adds to the lead, for the
/// slowest machine starting 64 of them on 2 cores.
const GENERATORS_LEAD_EACH: Duration = Duration::from_millis(100);

/// `clients.processes = N`: runs this transport's clients as N generator
/// processes (`run --part --shard K/N --target URL`), each with its own
/// open-file budget, worker threads and histograms and publishing its own
/// shard's topics, against one server: the one this process starts for the
/// transport, or the run's target. They share a timeline and open their
/// measured window together (see [`runner::WindowGate`]). Their results are
/// merged into one directory, each process's own figures in its summary's
/// `processes.generators`.
async fn run_generators(
    g: &Generators<'_>,
    launch: &ServerLaunch,
    results_dir: &Path,
    interrupt: &CancellationToken,
) -> Result<(Summary, PathBuf, Ending), String> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let s = g.scenario;
    // Several transports, or repetitions, run as parts, each of one.
    let &[kind] = s.transports.as_slice() else {
        return Err("generator processes measure one transport at a time".into());
    };
    let n = s.clients.processes;
    let dir = results_path(results_dir, &s.name, g.started_at_utc);
    // Beside the results, not in them: a failed run leaves them for a
    // look, and a directory a parent takes for a part's results.
    let own = beside(&dir, "generators");

    // The server: one started for this transport, or the run's target.
    let server = match &s.target {
        None => Some(
            crate::server_process::ServerUnderTest::start(launch, s, kind.server())
                .await
                .map_err(|e| format!("{kind}: the server did not start: {e:#}"))?,
        ),
        Some(_) => None,
    };
    let cert = match server.as_ref().and_then(|sv| sv.tls_cert_pem.as_ref()) {
        Some(pem) => {
            let file = tempfile::NamedTempFile::new()
                .and_then(|mut f| std::io::Write::write_all(&mut f, pem.as_bytes()).map(|()| f))
                .map_err(|e| format!("cannot write the server's certificate: {e}"))?;
            Some(file)
        }
        None => None,
    };
    let (url, token, pid, ca) = match (&server, &s.target) {
        (Some(sv), _) => (
            format!("{}://{}", if s.tls { "https" } else { "http" }, sv.addr),
            sv.token().map(str::to_owned),
            sv.pid(),
            cert.as_ref().map(|f| f.path().to_owned()),
        ),
        (None, target) => (
            target.as_ref().map(|t| t.url.clone()).unwrap_or_default(),
            g.target.token.clone(),
            g.target.server_pid,
            g.target.ca.clone(),
        ),
    };
    if !g.quiet {
        eprintln!(
            "[pushbench] {kind}: {n} generator processes, about {} clients each (the phases shown are the first's)",
            s.clients.count.div_ceil(n)
        );
    }

    let lead = GENERATORS_LEAD + GENERATORS_LEAD_EACH * n;
    let base_ns = crate::clock::now_ns() + lead.as_nanos() as u64;
    let mut children = Vec::new();
    for k in 0..n {
        let mut cmd = tokio::process::Command::new(g.exe);
        cmd.arg("run")
            .arg(g.path)
            .args(["--part", "--transport", kind.name(), "--results-dir"])
            .arg(own.join(k.to_string()))
            .args([
                format!("--window-gate={base_ns}"),
                format!("--shard={k}/{n}"),
                format!("--target={url}"),
            ])
            .args(
                g.overrides
                    .iter()
                    .map(|o| format!("--set={}={}", o.key, o.value)),
            )
            // Its one transport in the file too: a Socket.IO target takes
            // only Socket.IO transports in the scenario's list.
            .args([
                "--set=clients.processes=1".to_owned(),
                format!("--set=clients.workers={}", s.clients.workers),
                format!("--set=transports=[\"{}\"]", kind.name()),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if kind.server() == crate::scenario::ServerKind::Socketio {
            cmd.arg("--set=target.kind=\"socketio\"");
        }
        if g.quiet || k > 0 {
            cmd.arg("--quiet");
        }
        // The token in the environment, as a command line is visible to
        // every user of the machine.
        if let Some(token) = &token {
            cmd.env("PUSHBENCH_TOKEN", token);
        }
        if let Some(pid) = pid {
            cmd.arg(format!("--server-pid={pid}"));
        }
        if let Some(ca) = &ca {
            cmd.arg("--ca").arg(ca);
        }
        children.push(
            cmd.spawn()
                .map_err(|e| format!("cannot start generator process {k}: {e}"))?,
        );
    }

    // The window opens when every process can open it.
    let mut stdins: Vec<_> = children.iter_mut().map(|c| c.stdin.take()).collect();
    let mut lines: Vec<_> = children
        .iter_mut()
        .map(|c| {
            c.stdout
                .take()
                .map(|o| tokio::io::BufReader::new(o).lines())
        })
        .collect();
    let all_ready = async {
        let mut latest = 0;
        for (k, out) in lines.iter_mut().enumerate() {
            let mut ready = None;
            while let Some(Ok(Some(line))) = match out {
                Some(out) => Some(out.next_line().await),
                None => None,
            } {
                ready = line
                    .strip_prefix(runner::GATE_READY)
                    .and_then(|ns| ns.parse::<u64>().ok());
                if ready.is_some() {
                    break;
                }
            }
            latest = ready.ok_or(k)?.max(latest);
        }
        Ok::<u64, usize>(latest)
    };
    let gone_early = tokio::select! {
        ready = all_ready => match ready {
            Ok(ns) => {
                let go = format!("{}{ns}\n", runner::GATE_GO);
                for stdin in stdins.iter_mut().flatten() {
                    let _ = stdin.write_all(go.as_bytes()).await;
                    let _ = stdin.flush().await;
                }
                None
            }
            Err(k) => Some(k),
        },
        () = interrupt.cancelled() => None,
    };
    drop(stdins);
    // Nothing else is read from them, but a full pipe must not stall one.
    for mut out in lines.into_iter().flatten() {
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    }
    // A process that ended before its window stops the others: without it
    // their results cannot be merged.
    let stop = interrupt.child_token();
    if gone_early.is_some() {
        stop.cancel();
    }
    let waits: Vec<_> = children
        .into_iter()
        .map(|mut child| {
            let stop = stop.clone();
            tokio::spawn(async move { wait_passing_interrupt(&mut child, &stop).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for w in waits {
        statuses.push(w.await.map_err(std::io::Error::other).and_then(|r| r));
    }
    if let Some(server) = server {
        server.stop().await;
    }

    let code = |k: usize| statuses[k].as_ref().ok().and_then(|s| s.code());
    let status = |k: usize| match &statuses[k] {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    };
    // A process that ended early is the cause, checked before the others'
    // interrupted exits: they were stopped because of it.
    let ending = if interrupt.is_cancelled() {
        Ending::Interrupted
    } else if let Some(k) = gone_early {
        Ending::Failed(format!(
            "generator process {k} ended before its window opened ({})",
            status(k)
        ))
    } else if (0..statuses.len()).any(|k| code(k) == Some(exit::INTERRUPTED as i32)) {
        Ending::Interrupted
    } else if let Some(k) = (0..statuses.len()).find(|&k| code(k) != Some(exit::OK as i32)) {
        Ending::Failed(format!("generator process {k} ended with {}", status(k)))
    } else {
        Ending::Complete
    };
    let written: Vec<Option<PathBuf>> = (0..n)
        .map(|k| written_dir(&own.join(k.to_string())))
        .collect();
    if let Some(k) = written.iter().position(Option::is_none) {
        let why = match &ending {
            Ending::Failed(why) => why.clone(),
            _ => format!("it ended with {}", status(k)),
        };
        return Err(format!(
            "generator process {k} wrote no results ({why}), so the processes' results cannot be merged; theirs are in {}",
            own.display()
        ));
    }
    let dirs: Vec<PathBuf> = written.into_iter().flatten().collect();
    let summary =
        report::shards::merge_generators(&dirs, &dir, s, g.warnings.clone()).map_err(|e| {
            let why = match e {
                report::shards::MergeError::Refused(why) => why,
                report::shards::MergeError::Failed(e) => format!("{e:#}"),
            };
            format!("{why}; the processes' own results are in {}", own.display())
        })?;
    // Merged: each process's own figures are in the summary
    // (`processes.generators`).
    let _ = std::fs::remove_dir_all(&own);
    if let Some(t) = summary.transports.first().filter(|_| !g.quiet) {
        let expected = t
            .delivery
            .expected
            .map_or_else(|| "unknown".to_owned(), |e| e.to_string());
        eprintln!(
            "[pushbench] {kind}: {}: {} of {expected} events delivered, over {n} generator processes",
            if t.complete { "done" } else { "stopped" },
            t.delivery.delivered
        );
    }
    Ok((summary, dir, ending))
}

/// A hidden directory beside a run's results directory `dir`, for what the
/// run's own processes write before it is joined or merged into `dir`.
fn beside(dir: &Path, what: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.{what}"))
}

/// The results directory a process wrote under `out` (it names it), not a
/// hidden one of its own processes' (see [`beside`]).
fn written_dir(out: &Path) -> Option<PathBuf> {
    std::fs::read_dir(out).ok().and_then(|entries| {
        entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .find(|d| d.is_dir())
    })
}

/// Reads a part's progress lines (`--progress-lines`) into the live page
/// until the part closes its stdout.
fn forward_progress_lines(
    child: &mut tokio::process::Child,
    board: Option<&std::sync::Arc<crate::dashboard::Dashboard>>,
) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::io::AsyncBufReadExt as _;
    let stdout = child.stdout.take()?;
    let board = board?.clone();
    Some(tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            board.push_line(&line);
        }
    }))
}

/// `pushbench init NAME`: NAME.toml from the commented starter, refused
/// over an existing file or for a name a scenario cannot have.
fn init(name: &str, quiet: bool) -> u8 {
    let path = PathBuf::from(format!("{name}.toml"));
    let text = crate::scenario::starter(name);
    if let Err(e) = Scenario::parse(&path, &text) {
        eprintln!("error: pushbench init {name}: {}", e.message);
        return exit::BAD_INPUT;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path);
    match file.and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes())) {
        Ok(()) => {
            if !quiet {
                println!(
                    "wrote {}: check it with `pushbench validate {0}`, run it with `pushbench run {0}`",
                    path.display()
                );
            }
            exit::OK
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {} exists; give another name (pushbench init NAME)",
                path.display()
            );
            exit::BAD_INPUT
        }
        Err(e) => {
            eprintln!("error: writing {}: {e}", path.display());
            exit::FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_help_names_every_transport() {
        for t in TransportKind::ALL {
            assert!(
                RUN_AFTER_HELP.contains(&format!(" {},", t.name()))
                    || RUN_AFTER_HELP.contains(&format!(" {} (", t.name())),
                "{t}"
            );
        }
    }

    #[test]
    fn a_part_s_results_are_its_named_directory_not_its_processes_hidden_one() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("ticker-20261206T055700Z");
        let own = beside(&dir, "generators");
        assert_eq!(
            own.file_name().unwrap(),
            ".ticker-20261206T055700Z.generators"
        );
        // A failed generator run leaves its processes' results; a parent
        // must not take them for the part's.
        std::fs::create_dir_all(own.join("0")).unwrap();
        assert_eq!(written_dir(out.path()), None);
        std::fs::write(out.path().join("notes.txt"), "").unwrap();
        assert_eq!(written_dir(out.path()), None);
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(written_dir(out.path()), Some(dir));
    }
}
