//! `run --target URL`: a server that is already running, the user's own or
//! a `pushbench serve` started by hand. Nothing is started; the generator
//! publishes through the server's publish interface; transports the server
//! does not offer are found before the run by one probe per route.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::client::socketio::{self, SocketIoWs};
use crate::client::{SocketCounters, TlsTarget};
use crate::scenario::{Scenario, ServerKind, TargetServer, TransportKind};

/// The topic the probes subscribe to (and so create on the target).
pub const PROBE_TOPIC: &str = "pushbench.probe";

/// A resolved target: where it listens and how to reach it.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub addr: SocketAddr,
    /// The host as the URL names it (what an https certificate must name).
    pub host: String,
    pub https: bool,
    /// The certificate (PEM) to trust for an https target.
    pub ca_pem: Option<String>,
}

/// Resolves the target's host and reads `--ca` for an https target.
pub async fn resolve(
    target: &TargetServer,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<Resolved> {
    let (scheme, rest) = target
        .url
        .split_once("://")
        .context("a target URL has a scheme")?;
    let https = scheme == "https";
    let ca_pem = match (https, ca) {
        (true, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--ca {}: cannot read it", path.display()))?,
        ),
        (true, None) => bail!(
            "{}: an https target needs --ca FILE, the certificate (PEM) to trust; pushbench trusts nothing else",
            target.url
        ),
        (false, Some(_)) => bail!("--ca is for an https target; {} is http", target.url),
        (false, None) => None,
    };
    let addr = tokio::net::lookup_host(rest)
        .await
        .with_context(|| format!("cannot resolve {rest}"))?
        .next()
        .with_context(|| format!("{rest} resolves to no address"))?;
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h).to_owned();
    Ok(Resolved {
        addr,
        host,
        https,
        ca_pem,
    })
}

/// One transport's probe: offered, or why not.
pub struct Probe {
    pub transport: TransportKind,
    pub offered: Result<(), String>,
}

/// Probes the routes the scenario's transports need, and the publish route.
pub async fn probe(
    scenario: &Scenario,
    target: &TargetServer,
    resolved: &Resolved,
) -> anyhow::Result<(Vec<Probe>, Result<(), String>)> {
    let http = client(resolved, false)?;
    let h2 = client(resolved, true)?;
    let base = target.url.clone();
    let mut probes = Vec::new();
    for &t in &scenario.transports {
        let offered = match t {
            TransportKind::LongPolling
            | TransportKind::LongPollingClose
            | TransportKind::ShortPolling => {
                expect_status(
                    http.get(format!("{base}/lp?subs={PROBE_TOPIC}&hold_ms=0")),
                    200,
                )
                .await
            }
            TransportKind::LongPollingH2 => expect_status(
                h2.get(format!("{base}/lp?subs={PROBE_TOPIC}&hold_ms=0")),
                200,
            )
            .await
            .map_err(|e| format!("over HTTP/2: {e}")),
            TransportKind::Sse => {
                expect_status(http.get(format!("{base}/sse?subs={PROBE_TOPIC}")), 200).await
            }
            TransportKind::Websocket | TransportKind::WebsocketH2 => {
                let upgrade = expect_status(
                    http.get(format!("{base}/ws"))
                        .header("connection", "Upgrade")
                        .header("upgrade", "websocket")
                        .header("sec-websocket-version", "13")
                        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    101,
                )
                .await;
                match (t, upgrade) {
                    // Extended CONNECT cannot be asked alone: an HTTP/2
                    // connection that serves /lp stands for it.
                    (TransportKind::WebsocketH2, Ok(())) => expect_status(
                        h2.get(format!("{base}/lp?subs={PROBE_TOPIC}&hold_ms=0")),
                        200,
                    )
                    .await
                    .map_err(|e| format!("no HTTP/2: {e}")),
                    (_, r) => r,
                }
            }
            TransportKind::SocketioPolling => {
                let r = http
                    .get(format!("{base}{}?EIO=4&transport=polling", socketio::PATH))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let body = r.text().await.unwrap_or_default();
                        if body.starts_with("0{") {
                            Ok(())
                        } else {
                            Err(format!("not an Engine.IO v4 open packet: {body:.60}"))
                        }
                    }
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
            TransportKind::SocketioWebsocket => {
                if resolved.https {
                    // Probed by the run itself: the probe speaks plain TCP.
                    Ok(())
                } else {
                    probe_socketio_ws(resolved.addr).await
                }
            }
        };
        probes.push(Probe {
            transport: t,
            offered,
        });
    }
    let publish = match target.kind {
        // An empty batch publishes nothing and must be accepted.
        ServerKind::Pushbench => expect_status(
            http.post(format!("{base}/send"))
                .header("content-type", "application/json")
                .body("[]"),
            204,
        )
        .await
        .map_err(|e| format!("POST /send (the publish route): {e}")),
        ServerKind::Socketio => Ok(()),
    };
    Ok((probes, publish))
}

async fn probe_socketio_ws(addr: SocketAddr) -> Result<(), String> {
    let run = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        SocketIoWs::connect(tcp, addr, &SocketCounters::default())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

async fn expect_status(request: reqwest::RequestBuilder, want: u16) -> Result<(), String> {
    match request.send().await {
        Ok(r) if r.status().as_u16() == want => Ok(()),
        Ok(r) => Err(format!("HTTP {} (expected {want})", r.status())),
        Err(e) => Err(with_causes(&e)),
    }
}

/// An error and what caused it (a refused certificate, a refused
/// connection), which reqwest's own message leaves out.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// A probe client: trusting exactly the target's certificate over https,
/// HTTP/2 with prior knowledge (or by ALPN) when `h2`.
fn client(resolved: &Resolved, h2: bool) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0);
    if h2 {
        builder = builder.http2_prior_knowledge();
    } else {
        builder = builder.http1_only();
    }
    if let Some(pem) = &resolved.ca_pem {
        let alpn = if h2 {
            crate::tls::ALPN_H2
        } else {
            crate::tls::ALPN_HTTP1
        };
        let config = crate::tls::client_config(pem, alpn)?;
        builder = builder.use_preconfigured_tls(std::sync::Arc::unwrap_or_clone(config));
    }
    Ok(builder.build()?)
}

/// The TLS settings the clients use for an https target.
pub fn tls_target(resolved: &Resolved) -> anyhow::Result<Option<TlsTarget>> {
    resolved
        .ca_pem
        .as_deref()
        .map(|pem| TlsTarget::trusting(pem)?.named(&resolved.host))
        .transpose()
}

/// The load a run puts on a target, said before it starts.
pub fn load_line(scenario: &Scenario, target: &TargetServer, addr: SocketAddr) -> String {
    let c = &scenario.clients;
    // A shard publishes its topics' events only.
    let share = if c.shard.is_some() {
        f64::from(c.shards)
    } else {
        1.0
    };
    // Every topic gets rate / topics events/s, sharded or not.
    let deliveries = scenario.publish.rate * f64::from(c.topics_per_client)
        / f64::from(scenario.topics.count)
        * f64::from(c.here());
    format!(
        "target {} ({addr}, {}): per transport {} clients (one connection each, fewer over HTTP/2), {:.0} events/s published from this machine, about {deliveries:.0} deliveries/s, for {} of {}",
        target.url,
        target.kind.name(),
        c.here(),
        scenario.publish.rate / share,
        humantime::format_duration(
            scenario.phases.warmup + scenario.phases.measure + scenario.phases.drain
        ),
        scenario
            .transports
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
