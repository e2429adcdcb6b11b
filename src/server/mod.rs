//! The bundled server: every transport over one [`Hub`], with the same
//! event semantics (docs/protocol.md).
//!
//! `pushbench run` starts it as its own process per transport so its CPU and
//! memory are measured apart from the generator's; tests and `pushbench
//! serve` run it in-process through [`app`] and [`serve`].

mod admin;
mod long_poll;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpSocket};

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
        .route("/ws", get(websocket::upgrade))
        .route("/lp", get(long_poll::poll))
        .route("/_pushbench/publish", post(admin::publish))
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

/// Serves until `shutdown` completes. Every accepted socket gets
/// TCP_NODELAY: small pushed events must not wait for Nagle's algorithm.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
