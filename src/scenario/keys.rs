//! Every scenario key: its type, default, what is allowed and what it
//! does. The validator takes the bounds of numeric and duration keys from
//! here, `docs/scenario.md` is generated from here (a test keeps it in
//! step), and a test checks that this list holds exactly the keys the
//! parser accepts and that every bound here is the one enforced.

use std::time::Duration;

/// What values a key takes.
#[derive(Clone, Copy, Debug)]
pub enum Allowed {
    /// An integer from `min` to `max`; `unit` says of what.
    Int {
        min: u64,
        max: u64,
        unit: &'static str,
    },
    /// A duration (`"500ms"`, `"10s"`, `"2m"`) from `min` to `max`.
    Time { min: Duration, max: Duration },
    /// Said in words: the validator checks it in code of its own.
    Words(&'static str),
}

impl Allowed {
    pub fn describe(&self) -> String {
        match self {
            Allowed::Int { min, max, unit } => format!("{min} to {max} {unit}"),
            Allowed::Time { min, max } => format!(
                "{} to {}",
                humantime::format_duration(*min),
                humantime::format_duration(*max)
            ),
            Allowed::Words(w) => (*w).to_owned(),
        }
    }
}

/// One scenario key.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// Dotted, as `--set` takes it: `clients.count`.
    pub key: &'static str,
    pub kind: &'static str,
    /// None: required (in its section, when the section is given).
    pub default: Option<&'static str>,
    pub allowed: Allowed,
    pub doc: &'static str,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

const fn int(min: u64, max: u64, unit: &'static str) -> Allowed {
    Allowed::Int { min, max, unit }
}

const fn time(min: Duration, max: Duration) -> Allowed {
    Allowed::Time { min, max }
}

/// Sections whose keys are all optional, described once.
pub const SECTIONS: &[(&str, &str)] = &[
    ("", "What the scenario is called and what runs."),
    (
        "clients",
        "Required. The simulated clients of every transport.",
    ),
    ("topics", "Required. The topics events are published to."),
    (
        "publish",
        "Required. The open-loop schedule of events: each has an intended publish time, and latency is measured from it.",
    ),
    (
        "phases",
        "Required. Warm-up is discarded; only the measured phase counts; the drain waits for events still on their way.",
    ),
    ("long_polling", "Optional. The long-polling transports."),
    ("short_polling", "Optional. The short-polling transport."),
    (
        "http2",
        "Optional. The HTTP/2 transports (websocket_h2, long_polling_h2).",
    ),
    ("websocket", "Optional. WebSocket and SSE keep-alives."),
    (
        "messages",
        "Optional. Messages every client sends to one of its topics (chat lines, game input); counted by client and server alike.",
    ),
    (
        "echo",
        "Optional. Requests every client sends and the server answers to it alone; their round trip is measured.",
    ),
    ("run", "Optional. How the comparison as a whole runs."),
    (
        "thresholds",
        "Optional. Pass/fail conditions on the finished run: `\"websocket.latency.p99\" = \"< 50ms\"`, `\"*.lost\" = \"== 0\"`; run exits 1 when one fails (README: Scenarios).",
    ),
    (
        "network",
        "Optional. An emulated link between generator and server (needs root; docs/network.md).",
    ),
    (
        "proxy",
        "Optional. A real reverse proxy between clients and server.",
    ),
    (
        "target",
        "Optional. A server that is already running, measured instead of a fresh bundled one (README: Your own server).",
    ),
    ("server", "Optional. How run starts the bundled server."),
];

pub const KEYS: &[Key] = &[
    Key {
        key: "name",
        kind: "string",
        default: Some("the file's name without .toml"),
        allowed: Allowed::Words("1 to 64 of a-z A-Z 0-9 _ -"),
        doc: "Names the results directory and the report.",
    },
    Key {
        key: "transports",
        kind: "list of strings",
        default: Some("every transport that carries publish.encoding, of the target's kind"),
        allowed: Allowed::Words(
            "websocket, websocket_h2, sse, long_polling, long_polling_close, long_polling_h2, short_polling, socketio_polling, socketio_websocket; each once",
        ),
        doc: "The transports compared, each in fresh processes; `run --transport` picks a subset.",
    },
    Key {
        key: "seed",
        kind: "integer",
        default: Some("1"),
        allowed: Allowed::Words("any 64-bit unsigned integer"),
        doc: "Seeds the schedule and the clients' topic picks: the same seed, the same workload.",
    },
    Key {
        key: "tls",
        kind: "boolean",
        default: Some("false"),
        allowed: Allowed::Words("true or false"),
        doc: "Every transport over TLS (wss, https) with a certificate the server makes at start; `run --tls` sets it.",
    },
    Key {
        key: "clients.count",
        kind: "integer",
        default: None,
        allowed: int(1, 1_000_000, "clients per transport"),
        doc: "Concurrent clients per transport, over all shards. A process holds about 19,900 sockets, so at most 19,000 with the bundled server and per generator process; more against a [target], in shards of 19,000 or fewer.",
    },
    Key {
        key: "clients.topics_per_client",
        kind: "integer",
        default: None,
        allowed: int(1, 64, "topics per client"),
        doc: "Topics each client subscribes to, distinct; at most topics.count (topics.count / clients.shards when sharded).",
    },
    Key {
        key: "clients.connect_ramp",
        kind: "duration",
        default: None,
        allowed: time(Duration::ZERO, secs(600)),
        doc: "Clients connect evenly spread over this time.",
    },
    Key {
        key: "clients.source_addresses",
        kind: "integer",
        default: Some("one per 10,000 clients"),
        allowed: int(1, 250, "loopback source addresses"),
        doc: "Loopback source addresses (127.0.0.1, .2, …) clients connect from: connect() slows after about 14,000 connections from one.",
    },
    Key {
        key: "clients.workers",
        kind: "integer",
        default: Some("one per core (per process: the cores divided among clients.processes)"),
        allowed: int(1, 64, "generator worker threads"),
        doc: "Generator worker threads, each with its own event loop and histograms.",
    },
    Key {
        key: "clients.processes",
        kind: "integer",
        default: Some("1"),
        allowed: int(1, 64, "generator processes"),
        doc: "Generator processes on this machine, each running one shard (clients.shards = processes) with its own open-file budget, worker threads (clients.workers defaults to the cores divided among them) and histograms, against the one server; their results are merged into one. `run --generators N` sets it.",
    },
    Key {
        key: "clients.topic_choice",
        kind: "string",
        default: Some("\"random\""),
        allowed: Allowed::Words(
            "\"random\" (distinct topics at random) or \"own\" (client i alone on topic i; topics_per_client = 1, topics.count ≥ clients.count)",
        ),
        doc: "How clients pick their topics.",
    },
    Key {
        key: "clients.shards",
        kind: "integer",
        default: Some("1"),
        allowed: int(1, 1000, "groups of clients and topics"),
        doc: "Groups the clients and topics are split into (at most clients.count): client i and topic j belong to group i mod shards and j mod shards. `run --shard K/N` sets it.",
    },
    Key {
        key: "clients.shard",
        kind: "integer",
        default: Some("every group"),
        allowed: Allowed::Words("0 to clients.shards − 1; only with a target"),
        doc: "The one group this process runs, with its topics' publisher. `run --shard K/N` sets it.",
    },
    Key {
        key: "topics.count",
        kind: "integer",
        default: None,
        allowed: int(1, 100_000, "topics"),
        doc: "Topics events are spread over, evenly at random.",
    },
    Key {
        key: "topics.prefix",
        kind: "string",
        default: Some("\"T\""),
        allowed: Allowed::Words("1 to 32 of A-Z a-z 0-9 _ - ."),
        doc: "Topic names are the prefix and a zero-padded index: SYM0001.",
    },
    Key {
        key: "publish.from",
        kind: "string",
        default: Some("\"server\" (\"generator\" against a target or a Socket.IO server)"),
        allowed: Allowed::Words("\"server\" or \"generator\""),
        doc: "Who publishes: the bundled server's in-process publisher, or the generator through the server's publish interface (latency then includes the publish request).",
    },
    Key {
        key: "publish.rate",
        kind: "number",
        default: None,
        allowed: Allowed::Words("more than 0 and at most 1000000 events per second"),
        doc: "Events per second over all topics together.",
    },
    Key {
        key: "publish.arrival",
        kind: "string",
        default: Some("\"poisson\""),
        allowed: Allowed::Words("\"poisson\" or \"constant\""),
        doc: "Gaps between events: exponential (independent sources) or even.",
    },
    Key {
        key: "publish.payload_bytes",
        kind: "integer",
        default: None,
        allowed: int(0, 1 << 20, "bytes"),
        doc: "Payload bytes of each event, besides its header.",
    },
    Key {
        key: "publish.encoding",
        kind: "string",
        default: Some("\"json\""),
        allowed: Allowed::Words(
            "\"json\" (text; needed by SSE and Socket.IO) or \"binary\" (compact frames)",
        ),
        doc: "How events are encoded on the wire.",
    },
    Key {
        key: "publish.buffer_per_topic",
        kind: "integer",
        default: Some("1024"),
        allowed: int(1, 1_000_000, "events"),
        doc: "Recent events the server keeps per topic for pollers and resumes.",
    },
    Key {
        key: "phases.warmup",
        kind: "duration",
        default: None,
        allowed: time(Duration::ZERO, secs(3600)),
        doc: "Runs the workload and discards what it measures.",
    },
    Key {
        key: "phases.measure",
        kind: "duration",
        default: None,
        allowed: time(secs(1), secs(24 * 3600)),
        doc: "The measured window; `run -d` sets it.",
    },
    Key {
        key: "phases.drain",
        kind: "duration",
        default: None,
        allowed: time(Duration::ZERO, secs(600)),
        doc: "At most this long for events still on their way; ends early when every one is in.",
    },
    Key {
        key: "long_polling.hold",
        kind: "duration",
        default: Some("\"30s\""),
        allowed: time(ms(1), secs(120)),
        doc: "How long the server holds a poll with nothing to answer.",
    },
    Key {
        key: "long_polling.max_batch",
        kind: "integer",
        default: Some("1000"),
        allowed: int(1, 100_000, "events per poll answer"),
        doc: "Most events one poll answer carries.",
    },
    Key {
        key: "short_polling.interval",
        kind: "duration",
        default: Some("\"1s\""),
        allowed: time(ms(10), secs(600)),
        doc: "Time between the starts of two polls of one client.",
    },
    Key {
        key: "http2.clients_per_connection",
        kind: "integer",
        default: Some("100"),
        allowed: int(1, 10_000, "clients per HTTP/2 connection"),
        doc: "Clients whose requests share one HTTP/2 connection.",
    },
    Key {
        key: "websocket.heartbeat",
        kind: "duration",
        default: Some("\"15s\""),
        allowed: time(ms(100), secs(3600)),
        doc: "Interval of the server's ping frames; also the silence after which an SSE stream gets a heartbeat comment.",
    },
    Key {
        key: "messages.rate_per_client",
        kind: "number",
        default: None,
        allowed: Allowed::Words("more than 0 and at most 1000 messages per second"),
        doc: "Messages per second each client sends.",
    },
    Key {
        key: "messages.arrival",
        kind: "string",
        default: Some("\"poisson\""),
        allowed: Allowed::Words("\"poisson\" or \"constant\""),
        doc: "Gaps between a client's messages.",
    },
    Key {
        key: "messages.payload_bytes",
        kind: "integer",
        default: None,
        allowed: int(0, 60_000, "bytes"),
        doc: "Payload bytes of each message.",
    },
    Key {
        key: "echo.rate_per_client",
        kind: "number",
        default: None,
        allowed: Allowed::Words("more than 0 and at most 1000 requests per second"),
        doc: "Echo requests per second each client sends.",
    },
    Key {
        key: "echo.arrival",
        kind: "string",
        default: Some("\"poisson\""),
        allowed: Allowed::Words("\"poisson\" or \"constant\""),
        doc: "Gaps between a client's echo requests.",
    },
    Key {
        key: "echo.payload_bytes",
        kind: "integer",
        default: None,
        allowed: int(0, 60_000, "bytes"),
        doc: "Payload bytes of each echo request.",
    },
    Key {
        key: "run.repeat",
        kind: "integer",
        default: Some("1"),
        allowed: int(1, 100, "repetitions"),
        doc: "Runs the whole comparison this many times, transports interleaved, and reports median and range; `run --repeat` sets it.",
    },
    Key {
        key: "thresholds.TRANSPORT.FIGURE",
        kind: "string",
        default: Some("none"),
        allowed: Allowed::Words(
            "a transport or * for every one; a figure such as latency.p99 or lost; conditions such as \"< 50ms\", \"== 0\", \">= 1000\"",
        ),
        doc: "Each condition is judged on the finished run and shown with the value it was judged on.",
    },
    Key {
        key: "network.profile",
        kind: "string",
        default: Some("none: loopback's figures"),
        allowed: Allowed::Words("lan, broadband, 4g, 3g, satellite or lossy_wifi"),
        doc: "A documented preset; the keys below change it.",
    },
    Key {
        key: "network.rtt",
        kind: "duration",
        default: Some("the profile's, else 0"),
        allowed: time(Duration::ZERO, secs(10)),
        doc: "Round-trip time added, half each way.",
    },
    Key {
        key: "network.jitter",
        kind: "duration",
        default: Some("the profile's, else 0"),
        allowed: time(Duration::ZERO, secs(5)),
        doc: "± spread of each one-way delay; at most half of rtt.",
    },
    Key {
        key: "network.loss",
        kind: "number",
        default: Some("the profile's, else 0"),
        allowed: Allowed::Words("0 to 50 percent of packets"),
        doc: "Packet loss both ways.",
    },
    Key {
        key: "network.loss_up",
        kind: "number",
        default: Some("network.loss"),
        allowed: Allowed::Words("0 to 50 percent of packets"),
        doc: "Packet loss from clients to server.",
    },
    Key {
        key: "network.loss_down",
        kind: "number",
        default: Some("network.loss"),
        allowed: Allowed::Words("0 to 50 percent of packets"),
        doc: "Packet loss from server to clients.",
    },
    Key {
        key: "network.bandwidth_down",
        kind: "string",
        default: Some("the profile's, else unlimited"),
        allowed: Allowed::Words("8kbit to 10gbit, e.g. \"20mbit\""),
        doc: "Rate limit from server to clients.",
    },
    Key {
        key: "network.bandwidth_up",
        kind: "string",
        default: Some("the profile's, else unlimited"),
        allowed: Allowed::Words("8kbit to 10gbit, e.g. \"5mbit\""),
        doc: "Rate limit from clients to server.",
    },
    Key {
        key: "network.queue",
        kind: "integer or string",
        default: Some("150000 (bytes)"),
        allowed: Allowed::Words("3000 bytes to 64MiB, e.g. 150000 or \"64kb\""),
        doc: "Bytes a rate limit queues before it drops.",
    },
    Key {
        key: "proxy.kind",
        kind: "string",
        default: None,
        allowed: Allowed::Words("\"nginx\""),
        doc: "The proxy, started fresh per transport and measured like the server.",
    },
    Key {
        key: "proxy.read_timeout",
        kind: "duration",
        default: Some("\"60s\""),
        allowed: time(secs(1), secs(3600)),
        doc: "The proxy's read timeout towards the server: shorter than long_polling.hold cuts held polls.",
    },
    Key {
        key: "proxy.buffering",
        kind: "boolean",
        default: Some("false"),
        allowed: Allowed::Words("true or false"),
        doc: "Whether the proxy buffers responses.",
    },
    Key {
        key: "target.url",
        kind: "string",
        default: None,
        allowed: Allowed::Words("http://HOST:PORT or https://HOST:PORT, no path"),
        doc: "The running server's base URL; `run --target` sets it.",
    },
    Key {
        key: "target.kind",
        kind: "string",
        default: Some("\"pushbench\""),
        allowed: Allowed::Words("\"pushbench\" (docs/protocol.md) or \"socketio\""),
        doc: "What the target speaks.",
    },
    Key {
        key: "server.threads",
        kind: "integer",
        default: Some("half the cores, at least 1"),
        allowed: int(1, 256, "worker threads"),
        doc: "Worker threads of the bundled server's runtime, so that the server and the generator on one machine do not both take every core.",
    },
];

/// The key named `key`. Panics on a name not in [`KEYS`]: the validator
/// names keys in code, and a test runs every one.
pub fn get(key: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.key == key)
        .unwrap_or_else(|| panic!("scenario key {key} is not in scenario::keys::KEYS"))
}

/// docs/scenario.md.
pub fn markdown() -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "# Scenario reference\n\n\
         Every key a scenario file takes, generated from the code \
         (`src/scenario/keys.rs`; a test fails when this file is stale: \
         regenerate it with `cargo run -- scenario-reference > docs/scenario.md`). \
         The files in scenarios/ show them in use. Any key can be set from the \
         command line with `--set KEY=VALUE`, validated like the file.\n\n\
         Durations are strings with a unit: `\"500ms\"`, `\"10s\"`, `\"2m\"`. A key \
         without a default is required when its section is given.\n",
    );
    for (section, about) in SECTIONS {
        let title = if section.is_empty() {
            "Top level".to_owned()
        } else {
            format!("[{section}]")
        };
        let _ = write!(out, "\n## {title}\n\n{about}\n\n");
        out += "| key | type | default | allowed | what it does |\n|---|---|---|---|---|\n";
        for k in KEYS.iter().filter(|k| section_of(k.key) == *section) {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                k.key,
                k.kind,
                k.default.unwrap_or("required"),
                k.allowed.describe().replace('|', "\\|"),
                k.doc.replace('|', "\\|")
            );
        }
    }
    out
}

/// The section a dotted key is in; "" for the top level.
pub fn section_of(key: &str) -> &str {
    key.split_once('.').map_or("", |(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Sections whose keys are free (not fields of a struct).
    const FREE: &[&str] = &["thresholds"];

    /// The fields serde accepts in `section` ("" for the top level), read
    /// from its answer to a key it does not know.
    fn accepted(section: &str) -> BTreeSet<String> {
        let base = r#"
[clients]
count = 1
topics_per_client = 1
connect_ramp = "1s"
[topics]
count = 1
[publish]
rate = 1.0
payload_bytes = 1
[phases]
warmup = "1s"
measure = "1s"
drain = "1s"
"#;
        let mut table: toml::Table = toml::from_str(base).unwrap();
        let target = if section.is_empty() {
            &mut table
        } else {
            table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap()
        };
        target.insert("zzz_not_a_key".into(), toml::Value::Integer(1));
        let text = toml::to_string(&table).unwrap();
        let e = match toml::from_str::<super::super::RawScenario>(&text) {
            Ok(_) => panic!("{section}: an unknown key was accepted"),
            Err(e) => e.to_string(),
        };
        let expected = e
            .split("expected ")
            .nth(1)
            .unwrap_or_else(|| panic!("{section}: {e}"));
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_reference_lists_exactly_the_keys_the_parser_accepts() {
        let sections: BTreeSet<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
        for key in KEYS {
            assert!(sections.contains(section_of(key.key)), "{}", key.key);
        }
        for (section, _) in SECTIONS {
            let listed: BTreeSet<String> = KEYS
                .iter()
                .filter(|k| section_of(k.key) == *section)
                .map(|k| k.key.rsplit('.').next().unwrap().to_owned())
                .collect();
            if FREE.contains(section) {
                assert_eq!(listed.len(), 1, "{section}");
                continue;
            }
            let mut want = listed.clone();
            if section.is_empty() {
                // The top level's fields are its keys and the sections.
                want.extend(
                    sections
                        .iter()
                        .filter(|s| !s.is_empty())
                        .map(|s| s.to_string()),
                );
            }
            assert_eq!(accepted(section), want, "[{section}]");
        }
    }

    /// A valid scenario with these keys set, or the field an error names.
    fn with(sets: &[(&str, String)]) -> Result<(), Option<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.toml");
        let base = r#"
transports = ["websocket"]
[clients]
count = 1000
topics_per_client = 1
connect_ramp = "1s"
[topics]
count = 100000
[publish]
rate = 1.0
payload_bytes = 1
[phases]
warmup = "1s"
measure = "1s"
drain = "1s"
[messages]
rate_per_client = 1.0
payload_bytes = 1
[echo]
rate_per_client = 1.0
payload_bytes = 1
[network]
rtt = "10s"
[proxy]
kind = "nginx"
"#;
        // Generator processes and a target's generator, which publishes,
        // run neither over a link nor through a proxy.
        let base = if sets
            .iter()
            .any(|(k, _)| ["clients.processes", "target.url"].contains(k))
        {
            base.split("[network]").next().unwrap_or(base)
        } else {
            base
        };
        std::fs::write(&path, base).unwrap();
        let overrides: Vec<super::super::Override> = sets
            .iter()
            .map(|(k, v)| super::super::Override::parse_set(&format!("{k}={v}")).unwrap())
            .collect();
        super::super::Scenario::load_with(&path, &overrides)
            .map(|_| ())
            .map_err(|e| e.field)
    }

    #[test]
    fn every_bound_in_the_reference_is_the_one_enforced() {
        let show = |d: Duration| format!("{}ms", d.as_millis());
        let mut checked = 0;
        for k in KEYS {
            // Keys whose bound needs another key set to reach it.
            let context = |value: &str| -> Vec<(&str, String)> {
                match k.key {
                    "clients.topics_per_client" => vec![("topics.count", "1000".into())],
                    // 1,000,000 clients: 53 shards of a target's run.
                    "clients.count" if value.len() > 5 => vec![
                        ("target.url", "\"http://127.0.0.1:9\"".into()),
                        ("clients.shards", "53".into()),
                        ("clients.shard", "0".into()),
                    ],
                    _ => vec![],
                }
            };
            let (ok, refused) = match k.allowed {
                Allowed::Int { min, max, .. } => (
                    vec![min.to_string(), max.to_string()],
                    [
                        min.checked_sub(1).map(|m| m.to_string()),
                        Some((max + 1).to_string()),
                    ],
                ),
                Allowed::Time { min, max } => (
                    vec![show(min), show(max)],
                    [min.checked_sub(ms(1)).map(show), Some(show(max + ms(1)))],
                ),
                Allowed::Words(_) => continue,
            };
            for value in ok {
                let mut sets = context(&value);
                sets.push((k.key, value.clone()));
                assert_eq!(with(&sets), Ok(()), "{} = {value} is refused", k.key);
            }
            for value in refused.into_iter().flatten() {
                let mut sets = context(&value);
                sets.push((k.key, value.clone()));
                assert_eq!(
                    with(&sets),
                    Err(Some(k.key.to_owned())),
                    "{} = {value} is not refused naming it",
                    k.key
                );
            }
            checked += 1;
        }
        assert!(checked >= 20, "{checked}");
    }
}
