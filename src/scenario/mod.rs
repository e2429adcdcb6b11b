//! Scenario files: parsed from TOML and validated here, once.
//!
//! Nothing downstream re-checks a [`Scenario`]: every range, every name and
//! every cross-field rule is enforced in [`Scenario::load`], and every error
//! names the file, line, column and field and says what is allowed.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::codec::Encoding;

pub mod keys;

/// The commented starter scenario `pushbench init` writes, named `name`.
pub fn starter(name: &str) -> String {
    include_str!("starter.toml").replace("NAME", name)
}
use crate::schedule::Arrival;

/// A way to push events from the server to a client.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// One WebSocket per client; the server pushes each event as a frame.
    Websocket,
    /// WebSockets over HTTP/2 (RFC 8441 extended CONNECT): one stream per
    /// client, many clients per connection.
    WebsocketH2,
    /// Server-sent events (EventSource): one `text/event-stream` response
    /// per client, resumed with `Last-Event-ID` after a reconnect.
    Sse,
    /// HTTP/1.1 long polling on a kept-alive connection, one poll at a time.
    LongPolling,
    /// Long polling with a new TCP connection for every poll
    /// (`Connection: close`), as HTTP/1.0 clients do.
    LongPollingClose,
    /// Long polling over HTTP/2 (cleartext, prior knowledge, or ALPN over
    /// TLS): many clients' polls multiplexed on few connections.
    LongPollingH2,
    /// A plain poll at a fixed interval, answered at once.
    ShortPolling,
    /// Socket.IO over Engine.IO v4 long polling (`transports: ["polling"]`),
    /// against a Socket.IO server.
    SocketioPolling,
    /// Socket.IO over an Engine.IO v4 WebSocket (`transports: ["websocket"]`),
    /// against a Socket.IO server.
    SocketioWebsocket,
}

/// The kind of server a transport talks to.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// A server speaking docs/protocol.md: `pushbench serve` or the user's own.
    #[default]
    Pushbench,
    /// A Socket.IO server (Engine.IO v4, Socket.IO v5): rooms are topics and
    /// everything pushbench needs travels in the event (docs/socketio.md).
    Socketio,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Pushbench => "pushbench",
            ServerKind::Socketio => "socketio",
        }
    }
}

impl TransportKind {
    /// Every transport pushbench has a client for.
    pub const ALL: [TransportKind; 9] = [
        TransportKind::Websocket,
        TransportKind::WebsocketH2,
        TransportKind::Sse,
        TransportKind::LongPolling,
        TransportKind::LongPollingClose,
        TransportKind::LongPollingH2,
        TransportKind::ShortPolling,
        TransportKind::SocketioPolling,
        TransportKind::SocketioWebsocket,
    ];

    /// The kind of server the transport needs.
    pub fn server(self) -> ServerKind {
        match self {
            TransportKind::SocketioPolling | TransportKind::SocketioWebsocket => {
                ServerKind::Socketio
            }
            _ => ServerKind::Pushbench,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Websocket => "websocket",
            TransportKind::WebsocketH2 => "websocket_h2",
            TransportKind::Sse => "sse",
            TransportKind::LongPolling => "long_polling",
            TransportKind::LongPollingClose => "long_polling_close",
            TransportKind::LongPollingH2 => "long_polling_h2",
            TransportKind::ShortPolling => "short_polling",
            TransportKind::SocketioPolling => "socketio_polling",
            TransportKind::SocketioWebsocket => "socketio_websocket",
        }
    }

    /// Whether the transport can carry events in `encoding` (SSE and
    /// Socket.IO's events are text).
    pub fn carries(self, encoding: Encoding) -> bool {
        encoding == Encoding::Json
            || !matches!(
                self,
                TransportKind::Sse
                    | TransportKind::SocketioPolling
                    | TransportKind::SocketioWebsocket
            )
    }

    /// Whether clients share connections (so connection counts and memory
    /// per connection mean something else).
    pub fn multiplexed(self) -> bool {
        matches!(
            self,
            TransportKind::LongPollingH2 | TransportKind::WebsocketH2
        )
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated scenario: the workload every listed transport runs.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scenario {
    pub name: String,
    /// The file it was read from, as given.
    pub file: String,
    pub transports: Vec<TransportKind>,
    /// Whether the transports were named (in the file, by `--set` or
    /// `--transport`) rather than left to the default: a target that lacks
    /// a named one is refused, a default one is skipped.
    #[serde(skip)]
    pub transports_listed: bool,
    pub seed: u64,
    pub clients: Clients,
    pub topics: Topics,
    pub publish: Publish,
    pub phases: Phases,
    pub long_polling: LongPolling,
    // Defaults keep summaries written before these fields readable.
    #[serde(default)]
    pub short_polling: ShortPolling,
    #[serde(default)]
    pub http2: Http2,
    pub websocket: Websocket,
    /// The bundled server's own settings (`[server]`).
    #[serde(default)]
    pub server: ServerSettings,
    /// Every transport over TLS (wss, https) with a certificate the server
    /// makes at start and the clients trust alone.
    #[serde(default)]
    pub tls: bool,
    /// Messages clients send to one of their topics (chat lines, game input).
    #[serde(default)]
    pub messages: Option<ClientSends>,
    /// Requests each client sends and the server answers to it alone.
    #[serde(default)]
    pub echo: Option<ClientSends>,
    /// How the comparison as a whole is run.
    #[serde(default)]
    pub run: Run,
    /// Pass/fail conditions judged on the finished run (`[thresholds]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<crate::thresholds::Threshold>,
    /// The emulated link between generator and server (`[network]`);
    /// none: loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::network::Network>,
    /// A reverse proxy between the clients and the server (`[proxy]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::proxy::Proxy>,
    /// A server that is already running (`[target]`, `run --target`); none:
    /// `run` starts a fresh server for every transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetServer>,
}

/// `[target]`: a running server to measure instead of a fresh bundled one.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TargetServer {
    /// `http://HOST:PORT` or `https://HOST:PORT`, the server's base URL.
    pub url: String,
    /// What it speaks.
    #[serde(default)]
    pub kind: ServerKind,
}

impl TargetServer {
    /// Whether the target is on this machine's loopback (`localhost`,
    /// 127.x.x.x, `[::1]`): only there do the server's clock and the
    /// generator's agree, and only there is no confirmation asked.
    pub fn is_loopback(&self) -> bool {
        let host = reqwest::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Who publishes the scenario's events on its open-loop schedule.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PublishFrom {
    /// The bundled server's in-process publisher (`/_pushbench/publish`):
    /// latency from the schedule to the client, without a publish request.
    #[default]
    Server,
    /// A publisher client in the generator, through the server's publish
    /// interface: latency includes the publish request, as in an
    /// application whose backend publishes over the network.
    Generator,
}

impl PublishFrom {
    pub fn name(self) -> &'static str {
        match self {
            PublishFrom::Server => "server",
            PublishFrom::Generator => "generator",
        }
    }
}

/// `[run]`: how many times the whole comparison runs.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Run {
    /// Repetitions of the whole comparison, transports interleaved
    /// (A B C, A B C, …); `run --repeat` overrides it.
    pub repeat: u32,
}

impl Default for Run {
    fn default() -> Self {
        Run { repeat: 1 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Clients {
    /// Concurrent clients per transport.
    pub count: u32,
    /// Topics each client subscribes to, picked at random without repeats.
    pub topics_per_client: u32,
    /// Clients connect evenly spread over this time.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect_ramp: Duration,
    /// Loopback source addresses (127.0.0.1, .2, ...) clients are spread over.
    pub source_addresses: u32,
    /// Generator worker threads, each with its own event loop and histograms.
    /// In a run of several generator processes: the threads of each.
    pub workers: u32,
    /// Generator processes on this machine (`run --generators N`): each
    /// runs one of `shards` (= processes) with its own open-file budget,
    /// worker threads and histograms, against the one server, and their
    /// results are merged into one.
    #[serde(default = "one")]
    pub processes: u32,
    #[serde(default)]
    pub topic_choice: TopicChoice,
    /// Groups the clients and topics are split into, so that the run can be
    /// spread over generators on several machines: client i and topic j
    /// belong to group i mod shards and j mod shards, and a client
    /// subscribes only to its group's topics. Run whole (one process), or
    /// one group per process with `run --shard K/N` and joined with
    /// `pushbench merge`: the same workload either way.
    #[serde(default = "one")]
    pub shards: u32,
    /// The one group this process runs (`run --shard K/N`): its clients,
    /// and, as the generator publishes, only its topics' events, so every
    /// latency is taken on this machine's clock. None: every group.
    #[serde(default)]
    pub shard: Option<u32>,
}

fn one() -> u32 {
    1
}

/// Clients one process serves or runs: about 19,900 sockets fit in the
/// 20,000 open files a process may have on the machines this is built for.
pub const MAX_CLIENTS_PER_PROCESS: u32 = 19_000;

impl Clients {
    /// Whether client `i` runs in this process.
    pub fn runs_here(&self, i: u64) -> bool {
        self.shard
            .is_none_or(|k| i % u64::from(self.shards) == u64::from(k))
    }

    /// Whether this process publishes the events of topic `j`.
    pub fn publishes_here(&self, j: usize) -> bool {
        self.shard
            .is_none_or(|k| j as u64 % u64::from(self.shards) == u64::from(k))
    }

    /// The clients this process runs: all of them, or its shard's.
    pub fn here(&self) -> u32 {
        match self.shard {
            None => self.count,
            Some(k) => (self.count - k).div_ceil(self.shards),
        }
    }
}

/// How clients pick their topics.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TopicChoice {
    /// `topics_per_client` distinct topics at random.
    #[default]
    Random,
    /// Client i alone takes topic i (a job it started, its own inbox).
    Own,
}

/// An open-loop schedule of messages every client sends.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClientSends {
    /// Messages per second per client.
    pub rate_per_client: f64,
    pub arrival: Arrival,
    pub payload_bytes: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShortPolling {
    /// Time between the starts of two polls of one client.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub interval: Duration,
}

impl Default for ShortPolling {
    fn default() -> Self {
        ShortPolling {
            interval: Duration::from_secs(1),
        }
    }
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            clients_per_connection: 100,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Http2 {
    /// Clients whose requests share one HTTP/2 connection.
    pub clients_per_connection: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Topics {
    pub count: u32,
    /// Topic names are the prefix and a zero-padded index: SYM0001.
    pub prefix: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Publish {
    /// Events per second over all topics together.
    pub rate: f64,
    pub arrival: Arrival,
    pub payload_bytes: u32,
    pub encoding: Encoding,
    /// Recent events the server keeps per topic for pollers and resumes.
    pub buffer_per_topic: u32,
    /// Who publishes: the bundled server itself, or the generator through
    /// the server's publish interface (always, against a `[target]` and for
    /// Socket.IO transports: see [`Scenario::publish_from`]).
    #[serde(default)]
    pub from: PublishFrom,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Phases {
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub warmup: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub measure: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub drain: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LongPolling {
    /// How long the server holds a poll with nothing to answer.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub hold: Duration,
    /// Most events one poll answer carries.
    pub max_batch: u32,
}

/// `[server]`: how `run` starts the bundled server.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerSettings {
    /// Worker threads of the server's runtime (`serve --threads`). Default:
    /// half the machine's cores, at least 1, so that on a machine shared
    /// with the generator (whose `clients.workers` default to one per
    /// core) neither takes every core.
    pub threads: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings { threads: 1 }
    }
}

/// The default of `server.threads` on this machine.
pub fn default_server_threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| (n.get() as u32 / 2).max(1))
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Websocket {
    /// Interval of the server's ping frames; also the silence after which
    /// an SSE stream gets a heartbeat comment.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub heartbeat: Duration,
}

impl Scenario {
    /// Who publishes for `kind`: the generator against a `[target]` and for
    /// a Socket.IO server (which has no publisher of its own), otherwise
    /// as `publish.from` says.
    pub fn publish_from(&self, kind: TransportKind) -> PublishFrom {
        if self.target.is_some() || kind.server() == ServerKind::Socketio {
            PublishFrom::Generator
        } else {
            self.publish.from
        }
    }

    /// Open files the `run` process needs: its generator's (see
    /// [`Self::generator_open_files_needed`]) and, when it starts the
    /// bundled server, the server's (the server is given them with
    /// `--min-open-files`; a Socket.IO server and nginx inherit this
    /// process's limit).
    pub fn open_files_needed(&self) -> u64 {
        let own = self.generator_open_files_needed();
        match self.target {
            Some(_) => own,
            None => own.max(self.server_open_files_needed()),
        }
    }

    /// Open files one generator process needs: a socket per client it
    /// runs, and room for the rest.
    pub fn generator_open_files_needed(&self) -> u64 {
        // nginx, when there is one, holds each client's socket and one to
        // the server for each, under the limit it inherits from run.
        let proxy = if self.proxy.is_some() { 2 } else { 1 };
        // The run that starts generator processes holds no client itself;
        // each of them holds its shard's.
        let clients = match self.clients.processes {
            1 => self.clients.here(),
            n => self.clients.count.div_ceil(n),
        };
        u64::from(clients) * self.sockets_per_client() * proxy + 256
    }

    /// Open files the bundled server needs: a socket for every client of
    /// the run, whichever generator process runs it, and room for the rest.
    pub fn server_open_files_needed(&self) -> u64 {
        u64::from(self.clients.count) * self.sockets_per_client() + 256
    }

    /// Sockets one client holds: two when it also sends over HTTP/1.1 (a
    /// held poll or open stream occupies the first).
    fn sockets_per_client(&self) -> u64 {
        if self.messages.is_some() || self.echo.is_some() {
            2
        } else {
            1
        }
    }

    /// Topic name of index `i` (0-based).
    pub fn topic_name(&self, i: u32) -> String {
        let width = self.topics.count.to_string().len().max(4);
        format!("{}{:0width$}", self.topics.prefix, i + 1)
    }

    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::parse(path, &read_scenario(path)?)
    }

    /// Reads a scenario file and applies command-line overrides to it, each
    /// validated exactly like the file; an error in an overridden key names
    /// the flag that set it.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Scenario, ScenarioError> {
        if overrides.is_empty() {
            return Scenario::load(path);
        }
        let text = read_scenario(path)?;
        // Malformed TOML or a broken file is reported against the file.
        let mut table: toml::Table = match toml::from_str(&text) {
            Ok(t) => t,
            Err(_) => return Scenario::parse(path, &text),
        };
        for o in overrides {
            o.apply(&mut table)?;
        }
        let merged = toml::to_string(&table).map_err(|e| ScenarioError {
            file: path.to_path_buf(),
            position: None,
            field: None,
            message: format!("cannot apply the overrides: {e}"),
        })?;
        Scenario::parse(path, &merged).map_err(|e| {
            // The override that set the refused key, or a key inside an
            // unknown section it made up (`--set publsh.rate=…`).
            match overrides.iter().rev().find(|o| {
                e.field
                    .as_deref()
                    .is_some_and(|f| f == o.key || o.key.starts_with(&format!("{f}.")))
            }) {
                // The override's own value was refused: name the flag.
                Some(o) => ScenarioError {
                    file: PathBuf::from(&o.flag),
                    position: None,
                    ..e
                },
                // Something else: the file's own place for it, if the file
                // alone has the same problem.
                None => match Scenario::parse(path, &text) {
                    Err(original) if original.field == e.field => original,
                    _ => ScenarioError {
                        position: None,
                        ..e
                    },
                },
            }
        })
    }

    /// Validates scenario text; `path` is used for messages and the default name.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let err =
            |span: Option<Range<usize>>, field: Option<String>, message: String| ScenarioError {
                file: path.to_path_buf(),
                position: span.map(|s| line_col(text, s.start)),
                field,
                message,
            };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let message = match (e.message(), e.span()) {
                // toml says "duplicate key" without the key: name it, from
                // the text where the repeat starts.
                ("duplicate key", Some(span)) => {
                    let start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
                    let line = text[start..].lines().next().unwrap_or("").trim();
                    if line.starts_with('[') {
                        format!("the table {line} appears twice; merge them into one")
                    } else {
                        let key = line.split('=').next().unwrap_or(line).trim();
                        format!(
                            "duplicate key `{key}`: it is already set earlier in the same table; keep one"
                        )
                    }
                }
                (m, _) => m.to_string(),
            };
            err(e.span(), None, message)
        })?;
        let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
            // Spanned<T> shows up as an inner field of serde's; not the user's.
            let field = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            err(
                inner.span(),
                (field != ".").then_some(field),
                plain_message(inner.message(), text),
            )
        })?;
        let v = Validator { err: &err };

        let name = match raw.name {
            Some(n) => {
                v.check(
                    n.span(),
                    "name",
                    is_slug(n.get_ref()),
                    "1 to 64 of a-z A-Z 0-9 _ -",
                )?;
                n.into_inner()
            }
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into()),
        };
        let encoding = raw.publish.encoding.unwrap_or(Encoding::Json);
        let target = raw.target.map(|t| target_server(t, &v)).transpose()?;
        let listed = raw.transports.is_some();
        // Errors about the list point at it, when the file has one.
        let transports_span = raw
            .transports
            .as_ref()
            .map(|t| t.span())
            .filter(|s| *s != (0..0));
        let transports = match raw.transports {
            // Every transport that can carry the scenario's events, of the
            // target's kind (the bundled server's without a target).
            None => {
                let kind = target.as_ref().map_or(ServerKind::Pushbench, |t| t.kind);
                TransportKind::ALL
                    .into_iter()
                    .filter(|t| t.carries(encoding) && t.server() == kind)
                    .collect()
            }
            Some(listed) => listed.into_inner(),
        };
        if transports.is_empty() {
            return Err(err(
                transports_span.clone(),
                Some("transports".into()),
                format!(
                    "no transports listed: name one or more of {}",
                    transport_names()
                ),
            ));
        }
        for (i, t) in transports.iter().enumerate() {
            if transports[..i].contains(t) {
                return Err(err(
                    transports_span.clone(),
                    Some("transports".into()),
                    format!("transport {t} is listed twice"),
                ));
            }
            if !t.carries(encoding) {
                return Err(err(
                    transports_span.clone(),
                    Some("transports".into()),
                    format!(
                        "{t} carries text only: use publish.encoding = \"json\" or leave {t} out"
                    ),
                ));
            }
        }

        let c = raw.clients;
        v.bounded(&c.count, "clients.count")?;
        v.bounded(&c.topics_per_client, "clients.topics_per_client")?;
        let t = raw.topics;
        v.bounded(&t.count, "topics.count")?;
        v.check(
            c.topics_per_client.span(),
            "clients.topics_per_client",
            *c.topics_per_client.get_ref() <= *t.count.get_ref(),
            &format!("at most topics.count ({})", t.count.get_ref()),
        )?;
        let prefix_span = t.prefix.as_ref().map(|p| p.span());
        let prefix = t
            .prefix
            .map(Spanned::into_inner)
            .unwrap_or_else(|| "T".into());
        if !(1..=32).contains(&prefix.len()) || !crate::codec::is_valid_topic(&prefix) {
            return Err(err(
                prefix_span.filter(|s| *s != (0..0)),
                Some("topics.prefix".into()),
                format!("must be 1 to 32 of A-Z a-z 0-9 _ - ., got {prefix:?}"),
            ));
        }
        let ramp = duration(&c.connect_ramp, "clients.connect_ramp", &v)?;
        let sources = c.source_addresses.map(|s| {
            v.bounded(&s, "clients.source_addresses")
                .map(|_| s.into_inner())
        });
        let source_addresses = match sources {
            Some(s) => s?,
            None => c.count.get_ref().div_ceil(10_000),
        };
        let processes = match &c.processes {
            Some(n) => {
                v.bounded(n, "clients.processes")?;
                v.check(
                    n.span(),
                    "clients.processes",
                    n.get_ref() <= c.count.get_ref(),
                    &format!(
                        "at most clients.count ({}): every process has clients",
                        c.count.get_ref()
                    ),
                )?;
                *n.get_ref()
            }
            None => 1,
        };
        // The machine's cores are split between the processes, so that
        // N processes do not run N times as many threads as there are cores.
        let workers = match c.workers {
            Some(w) => {
                v.bounded(&w, "clients.workers")?;
                w.into_inner()
            }
            None => std::thread::available_parallelism()
                .map_or(1, |n| (n.get() as u32 / processes).max(1)),
        };

        if let (Some(p), Some(n)) = (&c.processes, &c.shards) {
            v.check(
                n.span(),
                "clients.shards",
                p.get_ref() == &1 || n.get_ref() == p.get_ref(),
                &format!(
                    "{} with clients.processes = {}: each process runs one shard; leave clients.shards out",
                    p.get_ref(),
                    p.get_ref()
                ),
            )?;
        }
        let shards = match &c.shards {
            None if processes > 1 => processes,
            Some(n) => {
                v.bounded(n, "clients.shards")?;
                v.check(
                    n.span(),
                    "clients.shards",
                    n.get_ref() <= c.count.get_ref(),
                    &format!(
                        "at most clients.count ({}): every shard has clients",
                        c.count.get_ref()
                    ),
                )?;
                *n.get_ref()
            }
            None => 1,
        };
        let shard = match &c.shard {
            Some(k) => {
                v.range(
                    k,
                    "clients.shard",
                    0,
                    u64::from(shards - 1),
                    &format!("(the shards of clients.shards = {shards}, counted from 0)"),
                )?;
                v.check(
                    k.span(),
                    "clients.shard",
                    target.is_some(),
                    "only against a server every shard shares: give it with --target URL or [target] url",
                )?;
                v.check(
                    k.span(),
                    "clients.shard",
                    processes == 1,
                    "not with clients.processes > 1, which runs every shard itself",
                )?;
                Some(*k.get_ref())
            }
            None => None,
        };
        // A process holds about 19,900 sockets (20,000 open files here, less
        // its own): the bundled server a socket per client, a generator
        // process one per client of its shard.
        let count = *c.count.get_ref();
        v.check(
            c.count.span(),
            "clients.count",
            target.is_some() || count <= MAX_CLIENTS_PER_PROCESS,
            &format!(
                "1 to {MAX_CLIENTS_PER_PROCESS} with the bundled server, which holds a socket per client; more against a [target], in shards"
            ),
        )?;
        let per_process = if shard.is_some() || processes > 1 {
            count.div_ceil(shards)
        } else {
            count
        };
        v.check(
            c.count.span(),
            "clients.count",
            per_process <= MAX_CLIENTS_PER_PROCESS,
            &format!(
                "at most {MAX_CLIENTS_PER_PROCESS} per generator process ({per_process} here): {MAX_CLIENTS_PER_PROCESS} × clients.shards, run in shards (run --shard K/N, or --generators N)"
            ),
        )?;
        let topic_choice = c.topic_choice.unwrap_or(TopicChoice::Random);
        if topic_choice == TopicChoice::Random && shards > 1 {
            v.check(
                c.topics_per_client.span(),
                "clients.topics_per_client",
                *c.topics_per_client.get_ref() <= t.count.get_ref() / shards,
                &format!(
                    "at most topics.count / clients.shards ({}): a client subscribes only to its shard's topics",
                    t.count.get_ref() / shards
                ),
            )?;
        }
        if topic_choice == TopicChoice::Own {
            v.check(
                c.topics_per_client.span(),
                "clients.topics_per_client",
                *c.topics_per_client.get_ref() == 1,
                "1 when topic_choice = \"own\" (each client has its own topic)",
            )?;
            v.check(
                t.count.span(),
                "topics.count",
                *t.count.get_ref() >= *c.count.get_ref(),
                &format!(
                    "at least clients.count ({}) when topic_choice = \"own\"",
                    c.count.get_ref()
                ),
            )?;
        }

        let p = raw.publish;
        let rate = *p.rate.get_ref();
        v.check(
            p.rate.span(),
            "publish.rate",
            rate > 0.0 && rate <= 1_000_000.0,
            "events per second, more than 0 and at most 1000000",
        )?;
        v.bounded(&p.payload_bytes, "publish.payload_bytes")?;
        let buffer = p
            .buffer_per_topic
            .unwrap_or_else(|| Spanned::new(0..0, 1024));
        v.bounded(&buffer, "publish.buffer_per_topic")?;

        let ph = raw.phases;
        let warmup = duration(&ph.warmup, "phases.warmup", &v)?;
        let measure = duration(&ph.measure, "phases.measure", &v)?;
        let drain = duration(&ph.drain, "phases.drain", &v)?;

        let lp = raw.long_polling.unwrap_or_default();
        let hold = match lp.hold {
            Some(h) => duration(&h, "long_polling.hold", &v)?,
            None => Duration::from_secs(30),
        };
        let max_batch = match lp.max_batch {
            Some(m) => {
                v.bounded(&m, "long_polling.max_batch")?;
                m.into_inner()
            }
            None => 1000,
        };
        let sp = raw.short_polling.unwrap_or_default();
        let interval = match sp.interval {
            Some(i) => duration(&i, "short_polling.interval", &v)?,
            None => Duration::from_secs(1),
        };
        let h2 = raw.http2.unwrap_or_default();
        let clients_per_connection = match h2.clients_per_connection {
            Some(n) => {
                v.bounded(&n, "http2.clients_per_connection")?;
                n.into_inner()
            }
            None => 100,
        };
        let messages = raw
            .messages
            .map(|m| client_sends(m, "messages", &v))
            .transpose()?;
        let echo = raw.echo.map(|m| client_sends(m, "echo", &v)).transpose()?;
        let threads = match raw.server.and_then(|s| s.threads) {
            Some(t) => {
                v.bounded(&t, "server.threads")?;
                t.into_inner()
            }
            None => default_server_threads(),
        };
        let ws = raw.websocket.unwrap_or_default();
        let heartbeat = match ws.heartbeat {
            Some(h) => duration(&h, "websocket.heartbeat", &v)?,
            None => Duration::from_secs(15),
        };

        let repeat = match raw.run.and_then(|r| r.repeat) {
            Some(r) => {
                v.bounded(&r, "run.repeat")?;
                r.into_inner()
            }
            None => 1,
        };

        let thresholds = match raw.thresholds {
            Some(table) => {
                let span = table.span();
                let mut flat = Vec::new();
                flatten_thresholds(String::new(), table.into_inner(), &mut flat)
                    .map_err(|m| err(Some(span.clone()), Some("thresholds".into()), m))?;
                for t in &flat {
                    t.check()
                        .map_err(|m| err(Some(span.clone()), Some("thresholds".into()), m))?;
                }
                flat
            }
            None => Vec::new(),
        };

        let network = raw.network.map(|n| network(n, &v)).transpose()?;
        let proxy = match raw.proxy {
            Some(p) => {
                v.check(
                    p.kind.span(),
                    "proxy.kind",
                    p.kind.get_ref() == "nginx",
                    &format!("\"nginx\", got {:?}", p.kind.get_ref()),
                )?;
                let read_timeout = match &p.read_timeout {
                    Some(t) => duration(t, "proxy.read_timeout", &v)?,
                    None => Duration::from_secs(60),
                };
                Some(crate::proxy::Proxy {
                    kind: p.kind.into_inner(),
                    read_timeout,
                    buffering: p.buffering.unwrap_or(false),
                })
            }
            None => None,
        };
        let transports = match (&proxy, listed) {
            // Left to the default, the transports the proxy cannot carry
            // are left out; listed, they are refused.
            (Some(_), false) => transports
                .into_iter()
                .filter(|t| crate::proxy::cannot_carry(*t).is_none())
                .collect(),
            (Some(_), true) => {
                if let Some((t, why)) = transports
                    .iter()
                    .find_map(|t| crate::proxy::cannot_carry(*t).map(|w| (t, w)))
                {
                    return Err(err(
                        transports_span.clone(),
                        Some("transports".into()),
                        format!("{t} cannot run behind [proxy]: {why}; leave it out"),
                    ));
                }
                transports
            }
            (None, _) => transports,
        };

        let socketio = transports
            .iter()
            .find(|t| t.server() == ServerKind::Socketio);
        if let Some(t) = &target
            && let Some(other) = transports.iter().find(|k| k.server() != t.kind)
        {
            return Err(err(
                transports_span.clone(),
                Some("transports".into()),
                format!(
                    "{other} needs a {} server, but target.kind is {:?}: list only {} transports, or measure {other} in a run of its own",
                    other.server().name(),
                    t.kind.name(),
                    t.kind.name()
                ),
            ));
        }
        if let Some(t) = socketio {
            let refuse = |what: &str, why: &str| {
                Err(err(
                    transports_span.clone(),
                    Some("transports".into()),
                    format!("{t} cannot run with {what}: {why}; leave one of them out"),
                ))
            };
            if messages.is_some() || echo.is_some() {
                return refuse(
                    "[messages] or [echo]",
                    "a Socket.IO server numbers no events, so client messages could not be checked for loss and order",
                );
            }
            if raw.tls == Some(true) {
                return refuse(
                    "tls = true",
                    "the bundled Socket.IO server serves plain HTTP",
                );
            }
            if network.is_some() {
                return refuse(
                    "[network]",
                    "the bundled Socket.IO server is not started inside an emulated link",
                );
            }
            if proxy.is_some() {
                return refuse(
                    "[proxy]",
                    "pushbench makes no proxy configuration for Socket.IO",
                );
            }
        }
        let from_span = p.from.as_ref().map(|f| f.span());
        let from = match p.from {
            Some(f) => {
                v.check(
                    f.span(),
                    "publish.from",
                    !(target.is_some() && *f.get_ref() == PublishFrom::Server),
                    "\"generator\" against a [target]: only a server that run starts has the in-process publisher",
                )?;
                f.into_inner()
            }
            None if target.is_some() || processes > 1 => PublishFrom::Generator,
            None => PublishFrom::Server,
        };
        if let Some(p) = c.processes.as_ref().filter(|_| processes > 1) {
            let not_with = [
                (
                    network.is_some(),
                    "[network]: the generator processes are not started inside the emulated link",
                ),
                (
                    proxy.is_some(),
                    "[proxy]: the generator processes do not go through the proxy",
                ),
                (
                    from == PublishFrom::Server,
                    "publish.from = \"server\": each process publishes its own shard's topics, so that every latency is taken against its own clock",
                ),
            ];
            if let Some((_, why)) = not_with.iter().find(|(given, _)| *given) {
                v.check(
                    p.span(),
                    "clients.processes",
                    false,
                    &format!("1 with {why}"),
                )?;
            }
        }
        if from == PublishFrom::Generator && network.is_some() {
            return Err(err(
                from_span,
                Some("publish.from".into()),
                "\"generator\" with [network]: the publisher would cross the clients' emulated link, which a backend publishing to the server does not; publish from the server".into(),
            ));
        }

        Ok(Scenario {
            target,
            proxy,
            network,
            thresholds,
            name,
            file: path.display().to_string(),
            transports,
            transports_listed: listed,
            seed: raw.seed.unwrap_or(1),
            clients: Clients {
                count: c.count.into_inner(),
                topics_per_client: c.topics_per_client.into_inner(),
                connect_ramp: ramp,
                source_addresses,
                workers,
                processes,
                topic_choice,
                shards,
                shard,
            },
            topics: Topics {
                count: t.count.into_inner(),
                prefix,
            },
            publish: Publish {
                rate,
                arrival: p.arrival.unwrap_or(Arrival::Poisson),
                payload_bytes: p.payload_bytes.into_inner(),
                encoding,
                buffer_per_topic: buffer.into_inner(),
                from,
            },
            phases: Phases {
                warmup,
                measure,
                drain,
            },
            long_polling: LongPolling { hold, max_batch },
            short_polling: ShortPolling { interval },
            http2: Http2 {
                clients_per_connection,
            },
            websocket: Websocket { heartbeat },
            server: ServerSettings { threads },
            tls: raw.tls.unwrap_or(false),
            messages,
            echo,
            run: Run { repeat },
        })
    }
}

fn client_sends<F>(
    raw: RawClientSends,
    section: &str,
    v: &Validator<'_, F>,
) -> Result<ClientSends, ScenarioError>
where
    F: Fn(Option<Range<usize>>, Option<String>, String) -> ScenarioError,
{
    let rate = *raw.rate_per_client.get_ref();
    v.check(
        raw.rate_per_client.span(),
        &format!("{section}.rate_per_client"),
        rate > 0.0 && rate <= 1000.0,
        "messages per second per client, more than 0 and at most 1000",
    )?;
    v.bounded(&raw.payload_bytes, &format!("{section}.payload_bytes"))?;
    Ok(ClientSends {
        rate_per_client: rate,
        arrival: raw.arrival.unwrap_or(Arrival::Poisson),
        payload_bytes: raw.payload_bytes.into_inner(),
    })
}

/// `[network]`: a preset (`profile`) and the keys that change it, or the
/// keys alone on a link that starts as loopback's (no delay, no loss, no
/// rate limit).
fn network<F>(
    raw: RawNetwork,
    v: &Validator<'_, F>,
) -> Result<crate::network::Network, ScenarioError>
where
    F: Fn(Option<Range<usize>>, Option<String>, String) -> ScenarioError,
{
    use crate::network::{self as net, Network};
    let refuse = |span: Range<usize>, field: &str, message: String| {
        (v.err)(Some(span), Some(field.into()), message)
    };
    let ms = |ms: f64| Duration::from_secs_f64(ms / 1e3);
    let mut n = match &raw.profile {
        Some(name) => {
            let p = net::profile(name.get_ref()).ok_or_else(|| {
                refuse(
                    name.span(),
                    "network.profile",
                    format!(
                        "unknown profile {:?}; allowed: {} (docs/network.md gives each one's figures and source)",
                        name.get_ref(),
                        net::profile_names()
                    ),
                )
            })?;
            Network {
                profile: Some(p.name.to_owned()),
                rtt: ms(p.rtt_ms),
                jitter: ms(p.jitter_ms),
                loss_up_percent: p.loss_percent,
                loss_down_percent: p.loss_percent,
                bandwidth_down_bps: p.down_bps,
                bandwidth_up_bps: p.up_bps,
                queue_bytes: net::DEFAULT_QUEUE_BYTES,
            }
        }
        None => Network {
            profile: None,
            rtt: Duration::ZERO,
            jitter: Duration::ZERO,
            loss_up_percent: 0.0,
            loss_down_percent: 0.0,
            bandwidth_down_bps: None,
            bandwidth_up_bps: None,
            queue_bytes: net::DEFAULT_QUEUE_BYTES,
        },
    };
    if let Some(rtt) = &raw.rtt {
        n.rtt = duration(rtt, "network.rtt", v)?;
    }
    if let Some(jitter) = &raw.jitter {
        n.jitter = duration(jitter, "network.jitter", v)?;
    }
    v.check(
        raw.jitter
            .as_ref()
            .or(raw.rtt.as_ref())
            .map_or(0..0, |s| s.span()),
        "network.jitter",
        n.jitter <= n.rtt / 2,
        &format!(
            "at most half of network.rtt ({}{}): a one-way delay cannot go below zero",
            humantime::format_duration(n.rtt / 2),
            n.profile
                .as_deref()
                .map(|p| format!(
                    "; jitter ±{} came from profile {p}",
                    humantime::format_duration(n.jitter)
                ))
                .filter(|_| raw.jitter.is_none())
                .unwrap_or_default()
        ),
    )?;
    let loss = |value: &Spanned<f64>, field: &str| {
        let p = *value.get_ref();
        v.check(
            value.span(),
            field,
            (0.0..=50.0).contains(&p),
            &format!("0 to 50 percent of packets, got {p}"),
        )
        .map(|()| p)
    };
    if let Some(l) = &raw.loss {
        n.loss_up_percent = loss(l, "network.loss")?;
        n.loss_down_percent = n.loss_up_percent;
    }
    if let Some(l) = &raw.loss_up {
        n.loss_up_percent = loss(l, "network.loss_up")?;
    }
    if let Some(l) = &raw.loss_down {
        n.loss_down_percent = loss(l, "network.loss_down")?;
    }
    let rate = |value: &Spanned<String>, field: &str| {
        let bps = net::parse_bps(value.get_ref()).map_err(|m| refuse(value.span(), field, m))?;
        v.check(
            value.span(),
            field,
            (8_000..=10_000_000_000).contains(&bps),
            &format!("8kbit to 10gbit, got {:?}", value.get_ref()),
        )
        .map(|()| bps)
    };
    if let Some(r) = &raw.bandwidth_down {
        n.bandwidth_down_bps = Some(rate(r, "network.bandwidth_down")?);
    }
    if let Some(r) = &raw.bandwidth_up {
        n.bandwidth_up_bps = Some(rate(r, "network.bandwidth_up")?);
    }
    if let Some(q) = &raw.queue {
        let text = match q.get_ref() {
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        n.queue_bytes =
            net::parse_queue(&text).map_err(|m| refuse(q.span(), "network.queue", m))?;
        v.check(
            q.span(),
            "network.queue",
            (3_000..=64 << 20).contains(&n.queue_bytes),
            &format!("2 packets (3000 bytes) to 64MiB, got {text}"),
        )?;
    }
    Ok(n)
}

/// `[target]`: the URL of a running server, as `http://HOST:PORT`.
fn target_server<F>(raw: RawTarget, v: &Validator<'_, F>) -> Result<TargetServer, ScenarioError>
where
    F: Fn(Option<Range<usize>>, Option<String>, String) -> ScenarioError,
{
    let span = raw.url.span();
    let url = normalize_target_url(raw.url.get_ref())
        .map_err(|m| (v.err)(Some(span), Some("target.url".into()), m))?;
    Ok(TargetServer {
        url,
        kind: raw.kind.unwrap_or_default(),
    })
}

/// A target's base URL, checked: `http` or `https` (`ws`/`wss` are taken
/// for them), a host, a port, no path, query or credentials. Returns it
/// as `SCHEME://HOST:PORT`.
pub fn normalize_target_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| {
        format!("{text:?} is not a URL ({e}): write e.g. \"http://127.0.0.1:8080\"")
    })?;
    let scheme = match url.scheme() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => {
            return Err(format!(
                "{text:?}: scheme {other:?} is not allowed; allowed: http, https (ws, wss)"
            ));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| format!("{text:?} names no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{text:?}: credentials do not go in the URL; use --token or PUSHBENCH_TOKEN"
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?}: give the server's base URL without a path or query; pushbench adds the routes"
        ));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{text:?} names no port"))?;
    Ok(format!("{scheme}://{host}:{port}"))
}

fn transport_names() -> String {
    TransportKind::ALL
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_slug(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

struct Validator<'a, F> {
    err: &'a F,
}

impl<F> Validator<'_, F>
where
    F: Fn(Option<Range<usize>>, Option<String>, String) -> ScenarioError,
{
    fn check(
        &self,
        span: Range<usize>,
        field: &str,
        ok: bool,
        allowed: &str,
    ) -> Result<(), ScenarioError> {
        if ok {
            Ok(())
        } else {
            let span = (span != (0..0)).then_some(span);
            Err((self.err)(
                span,
                Some(field.into()),
                format!("out of range: allowed {allowed}"),
            ))
        }
    }

    /// An integer key, within the bounds [`keys::KEYS`] gives it.
    fn bounded<T: Into<u64> + Copy + fmt::Display>(
        &self,
        value: &Spanned<T>,
        field: &str,
    ) -> Result<(), ScenarioError> {
        let keys::Allowed::Int { min, max, unit } = keys::get(field).allowed else {
            panic!("{field} is not an integer in scenario::keys::KEYS");
        };
        self.range(value, field, min, max, unit)
    }

    fn range<T: Into<u64> + Copy + fmt::Display>(
        &self,
        value: &Spanned<T>,
        field: &str,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Result<(), ScenarioError> {
        let n: u64 = (*value.get_ref()).into();
        self.check(
            value.span(),
            field,
            (min..=max).contains(&n),
            &format!("{min} to {max} {unit}, got {}", value.get_ref()),
        )
    }
}

/// A duration key, within the bounds [`keys::KEYS`] gives it.
fn duration<F>(
    value: &Spanned<String>,
    field: &str,
    v: &Validator<'_, F>,
) -> Result<Duration, ScenarioError>
where
    F: Fn(Option<Range<usize>>, Option<String>, String) -> ScenarioError,
{
    let keys::Allowed::Time { min, max } = keys::get(field).allowed else {
        panic!("{field} is not a duration in scenario::keys::KEYS");
    };
    let text = value.get_ref();
    match humantime::parse_duration(text) {
        Ok(d) => {
            v.check(
                value.span(),
                field,
                d >= min && d <= max,
                &format!(
                    "{} to {}, got {text:?}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            )?;
            Ok(d)
        }
        Err(e) => Err((v.err)(
            Some(value.span()),
            Some(field.into()),
            format!("not a duration ({e}): write e.g. \"500ms\", \"10s\" or \"2m\""),
        )),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A deserializer's message in the user's terms: what was given and what
/// is allowed, with a likely fix where there is one.
fn plain_message(message: &str, text: &str) -> String {
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return if text.trim().is_empty() {
            "the scenario is empty: it needs [clients], [topics], [publish] and [phases] \
             (scenarios/stock_ticker.toml shows every key)"
                .to_owned()
        } else {
            format!("`{field}` is missing: it is required here")
        };
    }
    // "invalid value: integer `-5`, expected u32"
    if let Some(rest) = message.strip_prefix("invalid value: integer `")
        && let Some((given, expected)) = rest.split_once("`, expected ")
    {
        let range = match expected {
            "u32" => Some(u32::MAX as u64),
            "u64" => Some(u64::MAX),
            "usize" => Some(usize::MAX as u64),
            _ => None,
        };
        if let Some(max) = range {
            return format!("{given} is not allowed: expected a whole number from 0 to {max}");
        }
    }
    // "invalid type: integer `5`, expected a string": a duration without
    // its unit, most likely.
    if let Some(rest) = message.strip_prefix("invalid type: integer `")
        && let Some((given, "a string")) = rest.split_once("`, expected ")
    {
        return format!(
            "{given} is a number, but a string is expected here; a duration takes quotes and a unit, e.g. \"{given}s\""
        );
    }
    with_suggestion(message)
}

/// Serde's "unknown field `x`, expected one of `a`, `b`" with the closest
/// allowed key named first, when one is close: a misspelling is the usual
/// cause.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((given, allowed)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let closest = allowed
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|key| (strsim::damerau_levenshtein(given, key), key))
        .min();
    match closest {
        Some((distance, key)) if distance <= 2.max(given.len() / 3) => {
            format!("{message} (did you mean `{key}`?)")
        }
        _ => message.to_owned(),
    }
}

fn read_scenario(path: &Path) -> Result<String, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|e| ScenarioError {
        file: path.to_path_buf(),
        position: None,
        field: None,
        message: format!("cannot read the scenario file: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        ScenarioError {
            file: path.to_path_buf(),
            position: Some(line_col(&before, valid)),
            field: None,
            message: format!(
                "not UTF-8: byte {valid} (0x{:02x}) starts an invalid sequence; save the file as UTF-8",
                e.as_bytes()[valid]
            ),
        }
    })
}

/// One scenario key set from the command line (`--set KEY=VALUE`, or a
/// shortcut such as `--rate`).
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Dotted key, e.g. `publish.rate`.
    pub key: String,
    /// The value as TOML (`800`, `"10s"`, `["websocket"]`); a bare word that
    /// is not TOML is taken as a string, so `--set phases.measure=10s` works.
    pub value: String,
    /// How the user wrote it, for messages: `--set publish.rate=0`, `--rate 0`.
    pub flag: String,
}

impl Override {
    /// Parses `KEY=VALUE` as given to `--set`.
    pub fn parse_set(arg: &str) -> Result<Override, String> {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected KEY=VALUE, e.g. publish.rate=1600"))?;
        let key = key.trim();
        if key.is_empty()
            || !key.split('.').all(|part| {
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
        {
            return Err(format!(
                "{key:?}: expected a dotted scenario key such as clients.count or publish.rate"
            ));
        }
        Ok(Override {
            key: key.to_owned(),
            value: value.trim().to_owned(),
            flag: format!("--set {arg}"),
        })
    }

    /// A shortcut flag for one key.
    pub fn shortcut(flag: &str, key: &str, value: String) -> Override {
        Override {
            flag: format!("{flag} {value}"),
            key: key.to_owned(),
            value,
        }
    }

    /// The value as TOML: a number, boolean, string, array or inline table
    /// as written, or else the text itself as a string.
    fn toml_value(&self) -> toml::Value {
        toml::from_str::<toml::Table>(&format!("v = {}", self.value))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(self.value.clone()))
    }

    fn apply(&self, table: &mut toml::Table) -> Result<(), ScenarioError> {
        let refuse = |message: String| ScenarioError {
            file: PathBuf::from(&self.flag),
            position: None,
            field: Some(self.key.clone()),
            message,
        };
        let mut parts: Vec<&str> = self.key.split('.').collect();
        let last = parts.pop().expect("keys have a part");
        let mut at = table;
        for (i, part) in parts.iter().enumerate() {
            let entry = at
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = entry.as_table_mut().ok_or_else(|| {
                refuse(format!(
                    "{} is a value, not a section",
                    parts[..=i].join(".")
                ))
            })?;
        }
        at.insert(last.to_owned(), self.toml_value());
        Ok(())
    }
}

/// A scenario that cannot be run, and why.
#[derive(Debug)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// Dotted field path, e.g. `publish.rate`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<Spanned<String>>,
    transports: Option<Spanned<Vec<TransportKind>>>,
    seed: Option<u64>,
    tls: Option<bool>,
    clients: RawClients,
    topics: RawTopics,
    publish: RawPublish,
    phases: RawPhases,
    long_polling: Option<RawLongPolling>,
    short_polling: Option<RawShortPolling>,
    http2: Option<RawHttp2>,
    websocket: Option<RawWebsocket>,
    messages: Option<RawClientSends>,
    echo: Option<RawClientSends>,
    run: Option<RawRun>,
    thresholds: Option<Spanned<toml::Table>>,
    network: Option<RawNetwork>,
    proxy: Option<RawProxy>,
    target: Option<RawTarget>,
    server: Option<RawServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Spanned<String>,
    kind: Option<ServerKind>,
}

/// `[thresholds]` keys as written, quoted (`"websocket.latency.p99"`) or
/// as nested tables (`websocket.latency.p99 = …`): one dotted key each.
fn flatten_thresholds(
    prefix: String,
    table: toml::Table,
    out: &mut Vec<crate::thresholds::Threshold>,
) -> Result<(), String> {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::String(condition) => {
                out.push(crate::thresholds::Threshold { key, condition })
            }
            toml::Value::Table(inner) => flatten_thresholds(key, inner, out)?,
            other => {
                return Err(format!(
                    "threshold {key:?} = {other}: expected a condition in quotes, e.g. \"< 50ms\" or \"== 0\""
                ));
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    repeat: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClients {
    count: Spanned<u32>,
    topics_per_client: Spanned<u32>,
    connect_ramp: Spanned<String>,
    source_addresses: Option<Spanned<u32>>,
    workers: Option<Spanned<u32>>,
    processes: Option<Spanned<u32>>,
    topic_choice: Option<TopicChoice>,
    shards: Option<Spanned<u32>>,
    shard: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopics {
    count: Spanned<u32>,
    prefix: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    from: Option<Spanned<PublishFrom>>,
    rate: Spanned<f64>,
    arrival: Option<Arrival>,
    payload_bytes: Spanned<u32>,
    encoding: Option<Encoding>,
    buffer_per_topic: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhases {
    warmup: Spanned<String>,
    measure: Spanned<String>,
    drain: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLongPolling {
    hold: Option<Spanned<String>>,
    max_batch: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawShortPolling {
    interval: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp2 {
    clients_per_connection: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientSends {
    rate_per_client: Spanned<f64>,
    arrival: Option<Arrival>,
    payload_bytes: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    kind: Spanned<String>,
    read_timeout: Option<Spanned<String>>,
    buffering: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    profile: Option<Spanned<String>>,
    rtt: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    loss: Option<Spanned<f64>>,
    loss_up: Option<Spanned<f64>>,
    loss_down: Option<Spanned<f64>>,
    bandwidth_down: Option<Spanned<String>>,
    bandwidth_up: Option<Spanned<String>>,
    queue: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebsocket {
    heartbeat: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    threads: Option<Spanned<u32>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
transports = ["websocket", "long_polling"]
[clients]
count = 100
topics_per_client = 3
connect_ramp = "1s"
[topics]
count = 10
prefix = "SYM"
[publish]
rate = 50.0
payload_bytes = 32
[phases]
warmup = "1s"
measure = "5s"
drain = "2s"
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("scenarios/t.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_duplicate_key_or_table_is_named() {
        let e = error(&GOOD.replace("count = 100\n", "count = 100\ncount = 7\n"));
        assert!(e.contains(":5:1: duplicate key `count`"), "{e}");
        let e = error(&format!("{GOOD}\n[phases]\n"));
        assert!(e.contains("the table [phases] appears twice"), "{e}");
    }

    #[test]
    fn errors_in_the_transport_list_and_the_topic_prefix_have_a_place() {
        let e = error(&GOOD.replace(
            "[\"websocket\", \"long_polling\"]",
            "[\"websocket\", \"websocket\"]",
        ));
        assert!(
            e.contains("t.toml:2:14: transports: transport websocket is listed twice"),
            "{e}"
        );
        let e = error(&GOOD.replace("prefix = \"SYM\"", "prefix = \"S Y\""));
        assert!(
            e.contains("t.toml:9:10: topics.prefix: must be 1 to 32"),
            "{e}"
        );
        assert!(e.contains("got \"S Y\""), "{e}");
    }

    #[test]
    fn an_override_inventing_a_section_is_reported_against_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, GOOD).unwrap();
        let o = Override::parse_set("publsh.rate=5").unwrap();
        let e = Scenario::load_with(&path, &[o]).unwrap_err().to_string();
        assert!(e.starts_with("--set publsh.rate=5: "), "{e}");
        assert!(e.contains("did you mean `publish`?"), "{e}");
    }

    #[test]
    fn shards_split_clients_and_topics_and_a_shard_needs_a_shared_server() {
        let sharded = |keys: &str| {
            GOOD.replace(
                "connect_ramp = \"1s\"\n",
                &format!("connect_ramp = \"1s\"\n{keys}"),
            )
        };
        let target = "[target]\nurl = \"http://127.0.0.1:8080\"\n";
        let s = parse(&format!("{}{target}", sharded("shards = 3\nshard = 2\n"))).unwrap();
        // Clients 2, 5, …, 98 of 0..100.
        assert_eq!(
            (s.clients.shards, s.clients.shard, s.clients.here()),
            (3, Some(2), 33)
        );
        assert!(s.clients.runs_here(5) && !s.clients.runs_here(4));
        assert!(s.clients.publishes_here(8) && !s.clients.publishes_here(9));
        let whole = parse(&sharded("shards = 3\n")).unwrap();
        assert_eq!(whole.clients.here(), 100);
        assert!(whole.clients.runs_here(4) && whole.clients.publishes_here(9));
        for (keys, says) in [
            (
                "shards = 3\nshard = 3\n",
                "clients.shard: out of range: allowed 0 to 2",
            ),
            (
                "shards = 101\n",
                "clients.shards: out of range: allowed at most clients.count (100)",
            ),
            // 10 topics in 4 shards: 2 each, fewer than 3 per client.
            (
                "shards = 4\n",
                "allowed at most topics.count / clients.shards (2)",
            ),
            (
                "shards = 0\n",
                "clients.shards: out of range: allowed 1 to 1000",
            ),
        ] {
            let e = error(&format!("{}{target}", sharded(keys)));
            assert!(e.contains(says), "{keys}: {e}");
        }
        let e = error(&sharded("shards = 2\nshard = 0\n"));
        assert!(
            e.contains(
                "clients.shard: out of range: allowed only against a server every shard shares"
            ),
            "{e}"
        );
    }

    #[test]
    fn generator_processes_run_one_shard_each_and_publish_it() {
        let with = |keys: &str| {
            GOOD.replace(
                "connect_ramp = \"1s\"\n",
                &format!("connect_ramp = \"1s\"\n{keys}"),
            )
        };
        let s = parse(&with("processes = 2\n")).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        assert_eq!(
            (s.clients.processes, s.clients.shards, s.clients.shard),
            (2, 2, None)
        );
        assert_eq!(s.clients.workers, (cores / 2).max(1));
        assert_eq!(
            s.publish_from(TransportKind::Websocket),
            PublishFrom::Generator
        );
        // The bundled server holds all 100 clients' sockets; a process
        // against a target holds only its 50.
        assert_eq!(s.server_open_files_needed(), 100 + 256);
        assert_eq!(s.generator_open_files_needed(), 50 + 256);
        assert_eq!(s.open_files_needed(), 100 + 256);
        let target = "[target]\nurl = \"http://127.0.0.1:8080\"\n";
        let at_target = parse(&format!("{}{target}", with("processes = 2\n"))).unwrap();
        assert_eq!(at_target.open_files_needed(), 50 + 256);
        let one = parse(GOOD).unwrap();
        assert_eq!((one.clients.processes, one.clients.workers), (1, cores));
        let s = parse(&with("processes = 2\nworkers = 3\nshards = 2\n")).unwrap();
        assert_eq!(s.clients.workers, 3);
        for (text, says) in [
            (
                with("processes = 2\nshards = 4\n"),
                "clients.shards: out of range: allowed 2 with clients.processes = 2",
            ),
            (
                with("processes = 101\n"),
                "clients.processes: out of range: allowed 1 to 64",
            ),
            (
                format!("{}{target}", with("processes = 2\nshards = 2\nshard = 1\n")),
                "not with clients.processes > 1",
            ),
            (
                with("processes = 2\n").replace("[publish]", "[publish]\nfrom = \"server\""),
                "allowed 1 with publish.from = \"server\"",
            ),
            (
                format!("{}[network]\nprofile = \"lan\"\n", with("processes = 2\n")),
                "allowed 1 with [network]",
            ),
        ] {
            let e = error(&text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_good_scenario_gets_defaults() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.name, "t");
        assert_eq!(
            s.transports,
            [TransportKind::Websocket, TransportKind::LongPolling]
        );
        assert_eq!(s.publish.arrival, Arrival::Poisson);
        assert_eq!(s.publish.encoding, Encoding::Json);
        assert_eq!(s.long_polling.hold, Duration::from_secs(30));
        assert_eq!(s.clients.source_addresses, 1);
        assert_eq!(s.topic_name(0), "SYM0001");
    }

    #[test]
    fn a_target_defaults_to_its_kinds_transports_and_publishing_from_the_generator() {
        let all = GOOD.replace(r#"transports = ["websocket", "long_polling"]"#, "");
        let s = parse(&format!(
            "{all}\n[target]\nurl = \"ws://localhost:8080/\"\n"
        ))
        .unwrap();
        let t = s.target.as_ref().unwrap();
        assert_eq!(t.url, "http://localhost:8080");
        assert!(t.is_loopback());
        assert_eq!(
            s.publish_from(TransportKind::Websocket),
            PublishFrom::Generator
        );
        assert_eq!(s.transports.len(), 7);
        let sio = parse(&format!(
            "{all}\n[target]\nurl = \"http://10.0.0.5:3000\"\nkind = \"socketio\"\n"
        ))
        .unwrap();
        assert!(!sio.target.as_ref().unwrap().is_loopback());
        assert_eq!(
            sio.transports,
            [
                TransportKind::SocketioPolling,
                TransportKind::SocketioWebsocket
            ]
        );
        // Without a target, the server publishes unless told otherwise,
        // except for Socket.IO, which has no publisher of its own.
        let own = parse(GOOD).unwrap();
        assert_eq!(
            own.publish_from(TransportKind::Websocket),
            PublishFrom::Server
        );
        assert_eq!(
            own.publish_from(TransportKind::SocketioWebsocket),
            PublishFrom::Generator
        );
    }

    #[test]
    fn targets_and_socketio_refuse_what_they_cannot_do() {
        let refused = |text: String, field: &str, words: &str| {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.message.contains(words), "{e}");
        };
        for (url, words) in [
            ("ftp://x:1", "scheme \"ftp\""),
            ("http://h:1/path", "without a path"),
            ("http://u:p@h:1", "credentials"),
            ("not a url", "not a URL"),
        ] {
            refused(
                format!("{GOOD}\n[target]\nurl = \"{url}\"\n"),
                "target.url",
                words,
            );
        }
        refused(
            format!("{GOOD}\n[target]\nurl = \"http://h:1\"\n")
                .replace("[publish]", "[publish]\nfrom = \"server\""),
            "publish.from",
            "generator",
        );
        refused(
            format!("{GOOD}\n[target]\nurl = \"http://h:1\"\nkind = \"socketio\"\n"),
            "transports",
            "needs a pushbench server",
        );
        let sio = GOOD.replace(r#""long_polling""#, r#""socketio_polling""#);
        refused(
            format!("{sio}\n[echo]\nrate_per_client = 1.0\npayload_bytes = 8\n"),
            "transports",
            "numbers no events",
        );
        refused(format!("tls = true\n{sio}"), "transports", "plain HTTP");
        refused(
            sio.replace(
                "payload_bytes = 32",
                "payload_bytes = 32\nencoding = \"binary\"",
            ),
            "transports",
            "carries text only",
        );
    }

    #[test]
    fn unlisted_transports_default_to_every_one_that_carries_the_encoding() {
        let all = GOOD.replace(r#"transports = ["websocket", "long_polling"]"#, "");
        let bundled: Vec<TransportKind> = TransportKind::ALL
            .into_iter()
            .filter(|t| t.server() == ServerKind::Pushbench)
            .collect();
        assert_eq!(parse(&all).unwrap().transports, bundled);
        assert!(!parse(&all).unwrap().transports_listed);
        let binary = all.replace(
            "payload_bytes = 32",
            "payload_bytes = 32\nencoding = \"binary\"",
        );
        let kinds = parse(&binary).unwrap().transports;
        assert_eq!(kinds.len(), bundled.len() - 1);
        assert!(!kinds.contains(&TransportKind::Sse));

        let sse_binary = GOOD.replace(r#""long_polling""#, r#""sse""#).replace(
            "payload_bytes = 32",
            "payload_bytes = 32\nencoding = \"binary\"",
        );
        let e = error(&sse_binary);
        assert!(e.contains("transports: sse carries text only"), "{e}");
    }

    #[test]
    fn client_messages_and_own_topics_are_validated() {
        let text = format!("{GOOD}[messages]\nrate_per_client = 0.0\npayload_bytes = 10\n");
        let e = error(&text);
        assert!(e.contains("messages.rate_per_client: out of range"), "{e}");
        let text = format!("{GOOD}[echo]\nrate_per_client = 2.0\npayload_bytes = 10\n");
        let s = parse(&text).unwrap();
        assert_eq!(s.echo.unwrap().rate_per_client, 2.0);
        assert!(s.messages.is_none());

        let own = GOOD.replace(
            "connect_ramp = \"1s\"",
            "connect_ramp = \"1s\"\ntopic_choice = \"own\"",
        );
        let e = error(&own);
        assert!(
            e.contains("clients.topics_per_client: out of range: allowed 1 when"),
            "{e}"
        );
        let own = own.replace("topics_per_client = 3", "topics_per_client = 1");
        let e = error(&own);
        assert!(
            e.contains("topics.count: out of range: allowed at least clients.count (100)"),
            "{e}"
        );
    }

    #[test]
    fn out_of_range_names_line_column_field_and_allowed_values() {
        let text = GOOD.replace("rate = 50.0", "rate = -5.0");
        let e = error(&text);
        assert!(
            e.starts_with("scenarios/t.toml:11:8: publish.rate: out of range"),
            "{e}"
        );
        assert!(e.contains("more than 0"), "{e}");

        let e = error(&GOOD.replace("count = 100", "count = 0"));
        assert!(
            e.contains(":4:9: clients.count: out of range: allowed 1 to 1000000"),
            "{e}"
        );
        // More than a process holds: the bundled server, or one generator.
        let e = error(&GOOD.replace("count = 100\n", "count = 19001\n"));
        assert!(
            e.contains(
                ":4:9: clients.count: out of range: allowed 1 to 19000 with the bundled server"
            ),
            "{e}"
        );
        let target = "[target]\nurl = \"http://127.0.0.1:8080\"\n";
        let e = error(&format!(
            "{}{target}",
            GOOD.replace("count = 100\n", "count = 19001\n")
        ));
        assert!(
            e.contains("clients.count: out of range: allowed at most 19000 per generator process (19001 here)"),
            "{e}"
        );
        let sharded = GOOD
            .replace("count = 100\n", "count = 38000\nshards = 2\nshard = 1\n")
            .replace("count = 10\n", "count = 20\n");
        let s = parse(&format!("{sharded}{target}")).unwrap();
        assert_eq!((s.clients.count, s.clients.here()), (38000, 19000));
        assert_eq!(s.open_files_needed(), 19000 + 256);
        let e = error(&format!("{}{target}", sharded.replace("38000", "38001")));
        assert!(
            e.contains("at most 19000 per generator process (19001 here)"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_place() {
        let e = error(&GOOD.replace("prefix = \"SYM\"", "prefx = \"SYM\""));
        assert!(e.contains("scenarios/t.toml:9:1: topics.prefx"), "{e}");
        assert!(e.contains("topics"), "{e}");
        assert!(e.contains("unknown field `prefx`"), "{e}");
        assert!(e.contains("(did you mean `prefix`?)"), "{e}");
        // Nothing close: no guess.
        let e = error(&GOOD.replace("prefix = \"SYM\"", "zzzzzzzz = \"SYM\""));
        assert!(!e.contains("did you mean"), "{e}");
    }

    #[test]
    fn deserializer_messages_are_put_in_the_users_terms() {
        let e = error("");
        assert!(
            e.contains("the scenario is empty: it needs [clients]"),
            "{e}"
        );
        let e = error(&GOOD.replace("count = 100", "count = -5"));
        assert!(
            e.contains("-5 is not allowed: expected a whole number from 0 to 4294967295"),
            "{e}"
        );
        let e = error(&GOOD.replace("measure = \"5s\"", "measure = 5"));
        assert!(e.contains("phases.measure: 5 is a number"), "{e}");
        assert!(e.contains("e.g. \"5s\""), "{e}");
    }

    #[test]
    fn a_file_that_is_not_utf8_names_the_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.toml");
        std::fs::write(&path, b"name = \"x\"\n# caf\xe9\n").unwrap();
        let e = Scenario::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("latin1.toml:2:6: not UTF-8: byte 16 (0xe9)"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = error(&GOOD.replace("count = 100", "count = \"many\""));
        assert!(e.contains("clients.count"), "{e}");
        assert!(
            e.starts_with("scenarios/t.toml:4:9: clients.count: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_has_a_position() {
        let e = error("transports = [\n");
        assert!(e.starts_with("scenarios/t.toml:"), "{e}");
        assert!(e.split(':').nth(1).unwrap().parse::<usize>().is_ok(), "{e}");
    }

    #[test]
    fn no_transports_or_unknown_transport_is_refused() {
        let e = error(&GOOD.replace(r#"["websocket", "long_polling"]"#, "[]"));
        assert!(
            e.contains(
                "transports: no transports listed: name one or more of websocket, websocket_h2, sse, long_polling, long_polling_close, long_polling_h2, short_polling"
            ),
            "{e}"
        );
        let e = error(&GOOD.replace(r#""long_polling""#, r#""carrier_pigeon""#));
        assert!(
            e.contains("carrier_pigeon") && e.contains("long_polling"),
            "{e}"
        );
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        let e = error(&GOOD.replace(r#"measure = "5s""#, r#"measure = "five""#));
        assert!(e.contains("phases.measure: not a duration"), "{e}");
        let e = error(&GOOD.replace(r#"measure = "5s""#, r#"measure = "10ms""#));
        assert!(
            e.contains("phases.measure: out of range: allowed 1s to 1day"),
            "{e}"
        );
    }

    #[test]
    fn more_topics_per_client_than_topics_is_refused() {
        let e = error(&GOOD.replace("topics_per_client = 3", "topics_per_client = 11"));
        assert!(
            e.contains(
                "clients.topics_per_client: out of range: allowed at most topics.count (10)"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_network_section_starts_from_its_profile_and_is_validated() {
        let s = parse(&format!("{GOOD}[network]\nprofile = \"3g\"\nloss = 1.5\n")).unwrap();
        let n = s.network.unwrap();
        assert_eq!(n.profile.as_deref(), Some("3g"));
        assert_eq!(n.rtt, Duration::from_millis(300));
        assert_eq!(n.bandwidth_down_bps, Some(1_600_000));
        assert_eq!((n.loss_up_percent, n.loss_down_percent), (1.5, 1.5));
        assert!(parse(GOOD).unwrap().network.is_none());

        let e = error(&format!("{GOOD}[network]\nprofile = \"5g\"\n"));
        assert!(e.contains("network.profile: unknown profile \"5g\"; allowed: lan, broadband, 4g, 3g, satellite, lossy_wifi"), "{e}");
        let e = error(&format!(
            "{GOOD}[network]\nrtt = \"10ms\"\njitter = \"6ms\"\n"
        ));
        assert!(
            e.contains("network.jitter: out of range: allowed at most half of network.rtt (5ms)"),
            "{e}"
        );
        let e = error(&format!("{GOOD}[network]\nloss_down = 60.0\n"));
        assert!(e.contains(":18:13: network.loss_down: out of range: allowed 0 to 50 percent of packets, got 60"), "{e}");
        let e = error(&format!("{GOOD}[network]\nbandwidth_up = \"10mbps\"\n"));
        assert!(
            e.contains("network.bandwidth_up: \"10mbps\" is not a rate"),
            "{e}"
        );
        let e = error(&format!("{GOOD}[network]\nqueue = \"lots\"\n"));
        assert!(
            e.contains("network.queue: \"lots\" is not a queue size"),
            "{e}"
        );
    }

    #[test]
    fn the_network_flag_replaces_the_whole_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            format!("{GOOD}[network]\nrtt = \"5ms\"\nloss = 3.0\n"),
        )
        .unwrap();
        let o = Override {
            key: "network".into(),
            value: "{ profile = \"lan\" }".into(),
            flag: "--network lan".into(),
        };
        let n = Scenario::load_with(&path, &[o]).unwrap().network.unwrap();
        assert_eq!(n.profile.as_deref(), Some("lan"));
        assert_eq!(n.rtt, Duration::from_millis(1));
        assert_eq!(n.loss_up_percent, 0.0);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = Scenario::load(Path::new("no/such.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("no/such.toml: cannot read the scenario file"),
            "{e}"
        );
    }
}
