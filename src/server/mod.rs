//! The bundled server: every transport over one [`Hub`], with the same
//! event semantics (docs/protocol.md).
//!
//! `pushbench run` starts it as its own process per transport so its CPU and
//! memory are measured apart from the generator's; tests and `pushbench
//! serve` run it in-process through [`app`] and [`serve`].

mod admin;
mod long_poll;
pub mod send;
mod sse;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;

pub use admin::{PublishPlan, PublisherState, ServerStats};

use crate::codec::Encoding;
use crate::hub::Hub;

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
        }
    }
}

pub struct AppState {
    pub hub: Hub,
    pub config: ServerConfig,
    publisher: admin::Publisher,
    gauges: admin::Gauges,
}

impl AppState {
    pub fn new(config: ServerConfig) -> Arc<AppState> {
        Arc::new(AppState {
            hub: Hub::new(config.encoding, config.buffer_per_topic),
            config,
            publisher: admin::Publisher::default(),
            gauges: admin::Gauges::default(),
        })
    }
}

/// Every route of the server.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        // `any`: HTTP/1.1 upgrades with GET, HTTP/2 with extended CONNECT.
        .route("/ws", any(websocket::upgrade))
        .route("/lp", get(long_poll::poll))
        .route("/sse", get(sse::stream))
        .route(
            "/send",
            post(send::post).layer(axum::extract::DefaultBodyLimit::max(send::MAX_BODY)),
        )
        .route(
            "/_pushbench/publish",
            post(admin::publish).layer(axum::extract::DefaultBodyLimit::max(admin::MAX_PLAN_BODY)),
        )
        .route("/_pushbench/stats", get(admin::stats))
        .with_state(state)
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

/// A client has this long to send a request's headers (HTTP/1.1) or to
/// finish the TLS handshake: slow-header clients (1,000 of them held the
/// server's sockets for 90 s) are cut off instead of held forever.
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
    let service = TowerToHyperService::new(app(state));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .enable_connect_protocol();
    let builder = Arc::new(builder);
    let tls = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
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
        let (builder, service, tls) = (builder.clone(), service.clone(), tls.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(tcp)).await
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
