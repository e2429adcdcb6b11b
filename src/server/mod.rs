//! The bundled server: every transport over one [`Hub`], with the same
//! event semantics (docs/protocol.md).
//!
//! `pushbench run` starts it as its own process per transport so its CPU and
//! memory are measured apart from the generator's; tests and `pushbench
//! serve` run it in-process through [`app`] and [`serve`].

mod admin;
mod conn;
mod long_poll;
pub mod send;
mod sse;
mod websocket;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;

pub use admin::{PublishPlan, PublisherState, ServerStats};

use crate::codec::Encoding;
use crate::hub::{Hub, HubLimits};

/// Settings fixed for the life of a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub encoding: Encoding,
    pub buffer_per_topic: usize,
    /// Longest hold a long poll may ask for.
    pub max_hold: Duration,
    /// Most events one long-poll answer carries, whatever the client asks.
    pub max_batch: usize,
    /// Rough cap on the bytes of one long-poll answer.
    pub max_batch_bytes: usize,
    pub heartbeat: Duration,
    /// Bytes of events kept per topic, besides their count: a topic of
    /// 1 MiB events keeps fewer of them.
    pub buffer_bytes_per_topic: usize,
    /// Bytes of events kept over all topics: past it the oldest events of
    /// the whole server leave first (subscribers behind them get `missed`).
    pub buffer_bytes: usize,
    /// Topics the hub holds at most; a request that would create one more
    /// is refused (429, WebSocket 1008).
    pub max_topics: usize,
    /// Largest WebSocket message (and frame) a client may send, `/echo`
    /// included; past it the connection is closed with 1009.
    pub max_message: usize,
    /// Open connections at most; past it a new one is answered 503 and
    /// closed instead of waiting unanswered in the backlog.
    pub max_connections: usize,
    /// A write to a client that makes no progress this long ends the
    /// connection (a slow consumer): its events stay in the topic buffers
    /// and it resumes by cursor like any reconnect.
    pub write_timeout: Duration,
    /// Bearer token the control routes (`/_pushbench/…`) require. `None`
    /// leaves them open: only for servers inside a test process.
    pub token: Option<String>,
    /// How long a connection may wait for a request's headers, idle
    /// keep-alive time included (and the TLS handshake): slow-header
    /// clients and forgotten connections are closed after it.
    pub header_timeout: Duration,
    /// Refuse requests (403) whose Host is not a loopback name: a server
    /// bound to loopback must not answer pages that rebound a public name
    /// to 127.0.0.1 (DNS rebinding).
    pub loopback_hosts_only: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            encoding: Encoding::Json,
            buffer_per_topic: 1024,
            max_hold: Duration::from_secs(120),
            max_batch: 10_000,
            max_batch_bytes: 1 << 20,
            heartbeat: Duration::from_secs(15),
            buffer_bytes_per_topic: DEFAULT_BUFFER_BYTES_PER_TOPIC,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            max_topics: DEFAULT_MAX_TOPICS,
            max_message: DEFAULT_MAX_MESSAGE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            header_timeout: HEADER_READ_TIMEOUT,
            token: None,
            loopback_hosts_only: true,
        }
    }
}

/// Defaults of the limits above; `pushbench serve --help` and
/// docs/protocol.md ("Limits") list them.
pub const DEFAULT_BUFFER_BYTES_PER_TOPIC: usize = 64 << 20;
pub const DEFAULT_BUFFER_BYTES: usize = 1 << 30;
pub const DEFAULT_MAX_TOPICS: usize = 100_000;
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A fresh control token: 128 random bits, hex.
pub fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Largest `--max-message`: room for the conformance suite's largest
/// (16 MiB) messages, and a bound on what one client can make the server hold.
pub const MAX_MAX_MESSAGE: usize = 16 << 20;

pub struct AppState {
    pub hub: Hub,
    pub config: ServerConfig,
    publisher: admin::Publisher,
    gauges: admin::Gauges,
}

impl AppState {
    pub fn new(config: ServerConfig) -> Arc<AppState> {
        Arc::new(AppState {
            hub: Hub::new(
                config.encoding,
                HubLimits {
                    events_per_topic: config.buffer_per_topic,
                    bytes_per_topic: config.buffer_bytes_per_topic,
                    topics: config.max_topics,
                    bytes: config.buffer_bytes,
                },
            ),
            config,
            publisher: admin::Publisher::default(),
            gauges: admin::Gauges::default(),
        })
    }
}

/// Every route of the server.
pub fn app(state: Arc<AppState>) -> Router {
    let control = Router::new()
        .route(
            "/_pushbench/publish",
            post(admin::publish)
                .layer(axum::extract::DefaultBodyLimit::max(admin::MAX_PLAN_BODY))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    body_within::<{ admin::MAX_PLAN_BODY }>,
                )),
        )
        .route("/_pushbench/stats", get(admin::stats))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(index))
        // `any`: HTTP/1.1 upgrades with GET, HTTP/2 with extended CONNECT.
        .route("/ws", any(websocket::upgrade))
        .route("/echo", any(websocket::echo_upgrade))
        .route("/lp", get(long_poll::poll))
        .route("/sse", get(sse::stream))
        .route(
            "/send",
            post(send::post)
                .layer(axum::extract::DefaultBodyLimit::max(send::MAX_BODY))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    body_within::<{ send::MAX_BODY }>,
                )),
        )
        .merge(control)
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .with_state(state)
}

/// The answer to a subscription the hub refused: 429 when the server holds
/// its most topics (counted), 400 for the client's own mistakes.
fn refuse_subscription(state: &AppState, e: crate::hub::SubscribeError) -> Response {
    let status = match e {
        crate::hub::SubscribeError::TopicLimit(_) => {
            state.gauges.refused(admin::Refusal::Topics);
            StatusCode::TOO_MANY_REQUESTS
        }
        _ => StatusCode::BAD_REQUEST,
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        format!("{e}\n"),
    )
        .into_response()
}

/// Bodies are read whole, in bounded time and size, before a handler runs.
async fn body_within<const LIMIT: usize>(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    match send::read_body_within(&state, req, LIMIT).await {
        Ok(req) => next.run(req).await,
        Err(refused) => refused,
    }
}

/// `GET /`: what this server offers, for whoever opens it in a browser.
async fn index() -> &'static str {
    "pushbench server (docs/protocol.md)\n\
     GET  /ws     WebSocket: subscribe, then events\n\
     GET  /sse    server-sent events: /sse?subs=TOPIC,...\n\
     GET  /lp     long poll: /lp?cursor=TOPIC:SEQ,...\n\
     POST /send   publish a client message (application/json)\n\
     GET  /echo   WebSocket echo (conformance testing)\n\
     /_pushbench/publish, /_pushbench/stats: control routes (token required)\n"
}

/// The control routes start publishers and read every counter: they take
/// `Authorization: Bearer TOKEN` when the server has a token (401 without).
async fn require_token(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.config.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            state.gauges.refused(admin::Refusal::Token);
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "control routes need Authorization: Bearer TOKEN (printed by `pushbench serve`, or its --token / PUSHBENCH_TOKEN)\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// See [`ServerConfig::loopback_hosts_only`].
async fn check_host(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.config.loopback_hosts_only {
        let loopback = match req.uri().authority() {
            Some(authority) => is_loopback_host(authority.host()),
            None => req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|h| match h.parse::<http::uri::Authority>() {
                    Ok(authority) => is_loopback_host(authority.host()),
                    Err(_) => is_loopback_host(h),
                }),
        };
        if !loopback {
            state.gauges.refused(admin::Refusal::Host);
            return (
                StatusCode::FORBIDDEN,
                "this server listens on loopback and answers only loopback host names (localhost, 127.x.x.x, [::1])\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// localhost, 127.x.x.x or [::1] (brackets optional).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Binds a listener with a backlog deep enough for thousands of clients
/// connecting in a ramp (the default of 128 drops SYNs and adds 1 s retries
/// to the connect figures).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Concurrent HTTP/2 streams per connection. Long polls over HTTP/2 hold
/// a stream each for the whole hold time, so a connection shared by many
/// clients needs far more than the usual 100-250.
pub const MAX_CONCURRENT_STREAMS: u32 = 20_000;

/// Default time a client has to send a request's headers (HTTP/1.1; idle
/// keep-alive time counts too) or to finish the TLS handshake: slow-header
/// clients (1,000 of them held the server's sockets for 90 s) are cut off
/// instead of held forever. `serve --idle-timeout` sets it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP/1.1 request head (request line and headers): past it the
/// answer is 431. A subscription of the most topics allowed fits many
/// times over.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How long shutdown waits for open connections (SSE streams, held polls)
/// before it lets them drop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves HTTP/1.1 and HTTP/2 (cleartext with prior knowledge, or ALPN
/// over TLS when `tls` is given) until `shutdown` completes.
///
/// Every accepted socket gets TCP_NODELAY: small pushed events must not
/// wait for Nagle's algorithm. HTTP/2 allows [`MAX_CONCURRENT_STREAMS`] and
/// extended CONNECT, so a WebSocket may also run over an HTTP/2 stream.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(app(state.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .enable_connect_protocol();
    let builder = Arc::new(builder);
    let tls = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                // Out of file descriptors or similar: back off, keep serving.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let Some(slot) = conn::Slot::take(&open, state.config.max_connections) else {
            state.gauges.refused(admin::Refusal::Connections);
            tokio::spawn(conn::refuse(tcp, tls.is_some()));
            continue;
        };
        let tcp = conn::StallGuard::new(tcp, slot, state.config.write_timeout, state.clone());
        let (builder, service, tls) = (builder.clone(), service.clone(), tls.clone());
        let header_timeout = state.config.header_timeout;
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}
