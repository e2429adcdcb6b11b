//! Load-generator clients: one module per transport behind [`Transport`].
//!
//! A transport only moves bytes: it connects, subscribes and hands back
//! what the server sent, with its framing. Decoding, sequence tracking and
//! timing live in `load`, identical for every transport, so the figures of
//! two transports differ only by what the transports themselves do.
//!
//! Every socket is wrapped in [`CountingStream`], so bytes are counted at
//! the socket: HTTP headers, WebSocket frame headers, pings and all.

pub mod http;
mod long_poll;
mod long_poll_close;
mod long_poll_h2;
mod short_poll;
pub mod socketio;
mod sse;
mod websocket;
mod websocket_h2;
pub mod ws;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

pub use long_poll::LongPollClient;
pub use long_poll_close::LongPollCloseClient;
pub use long_poll_h2::{H2Pool, LongPollH2Client};
pub use short_poll::ShortPollClient;
pub use socketio::{SocketIoPollingClient, SocketIoWebSocketClient};
pub use sse::SseClient;
pub use websocket::WebSocketClient;
pub use websocket_h2::WebSocketH2Client;

use crate::codec::Encoding;

/// Where and how to reach the server.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub encoding: Encoding,
    /// Long polling: how long the server may hold a poll.
    pub hold: Duration,
    /// Long polling: most events per answer.
    pub max_batch: u32,
    /// Short polling: time between the starts of two polls.
    pub poll_interval: Duration,
    /// HTTP/2: clients whose requests share one connection.
    pub clients_per_connection: u32,
    /// TLS client settings, when the server serves TLS.
    pub tls: Option<TlsTarget>,
}

/// Client TLS settings trusting exactly the server's certificate, one per
/// ALPN protocol a transport may ask for.
#[derive(Clone, Debug)]
pub struct TlsTarget {
    pub http1: Arc<rustls::ClientConfig>,
    pub h2: Arc<rustls::ClientConfig>,
    /// The name the certificate must carry: the server's IP address when
    /// none (the bundled server's certificates name it).
    pub name: Option<ServerName<'static>>,
}

impl TlsTarget {
    pub fn trusting(cert_pem: &str) -> anyhow::Result<TlsTarget> {
        Ok(TlsTarget {
            http1: crate::tls::client_config(cert_pem, crate::tls::ALPN_HTTP1)?,
            h2: crate::tls::client_config(cert_pem, crate::tls::ALPN_H2)?,
            name: None,
        })
    }

    /// Checks the certificate against `host` (a DNS name or an address),
    /// as a target's URL names it.
    pub fn named(self, host: &str) -> anyhow::Result<TlsTarget> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| anyhow::anyhow!("{host:?} is not a name TLS can check: {e}"))?
            .to_owned();
        Ok(TlsTarget {
            name: Some(name),
            ..self
        })
    }
}

/// The HTTP version a connection is opened for (its ALPN under TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    H2,
}

/// A client socket: plain TCP or TLS over it, counted beneath the TLS layer
/// so bytes are the bytes on the wire.
pub type Conn = Either<CountingStream<TcpStream>, TlsStream<CountingStream<TcpStream>>>;

/// What a client needs to open connections.
pub struct Dial<'a> {
    pub target: &'a Target,
    pub source: IpAddr,
    pub counters: &'a Arc<SocketCounters>,
    /// The client's index within its worker (HTTP/2: which shared connection).
    pub index: usize,
}

impl Dial<'_> {
    /// Opens a connection, with the TLS handshake when the server serves TLS.
    pub async fn open(&self, alpn: Alpn) -> Result<Conn, ClientError> {
        let tcp = connect_tcp(self.target.addr, self.source, self.counters).await?;
        let Some(tls) = &self.target.tls else {
            return Ok(Either::Left(tcp));
        };
        let config = match alpn {
            Alpn::Http1 => tls.http1.clone(),
            Alpn::H2 => tls.h2.clone(),
        };
        let name = tls
            .name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(self.target.addr.ip().into()));
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map(Either::Right)
            .map_err(|e| ClientError::Handshake(format!("TLS: {e}")))
    }

    /// An owned copy, for senders that open their own connections later.
    pub fn to_owned(&self) -> OwnedDial {
        OwnedDial {
            target: self.target.clone(),
            source: self.source,
            counters: self.counters.clone(),
            index: self.index,
        }
    }
}

/// [`Dial`] without borrows.
#[derive(Clone)]
pub struct OwnedDial {
    pub target: Target,
    pub source: IpAddr,
    pub counters: Arc<SocketCounters>,
    pub index: usize,
}

impl OwnedDial {
    pub fn dial(&self) -> Dial<'_> {
        Dial {
            target: &self.target,
            source: self.source,
            counters: &self.counters,
            index: self.index,
        }
    }
}

/// How the bytes of one [`Received`] are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly one message (a WebSocket frame).
    Single,
    /// A long-poll batch body of zero or more messages.
    Batch,
}

/// What a transport received in one read.
pub struct Received {
    pub body: Body,
    pub framing: Framing,
}

/// The bytes of a [`Received`]: a WebSocket text message, which the
/// WebSocket reader has checked as UTF-8 (the decoder does not check it
/// again), or bytes nothing has checked yet.
#[derive(Clone, Debug)]
pub enum Body {
    Bytes(Bytes),
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
}

impl Body {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Bytes(b) => b,
            Body::Text(t) => t.as_bytes(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::Bytes(bytes)
    }
}

/// Where a client stands: each subscribed topic and the last sequence
/// number it holds (`None` until the server has answered the subscription).
///
/// Only transports that send it read it (the polling transports on every
/// poll, WebSocket and SSE once per connection), so it costs nothing per
/// pushed frame or block.
pub trait Cursor {
    fn entries(&self) -> impl Iterator<Item = (&str, Option<u64>)>;
}

/// One client connection of some transport.
///
/// Futures need not be `Send`: each generator worker runs its clients on a
/// single thread, which keeps counters and histograms free of locks.
pub trait Transport: Sized {
    /// State the clients of one worker share (HTTP/2: its connections).
    type Shared: Default;
    /// Sends client messages while a receive is in flight.
    type Sender: MessageSender;

    /// Connects, subscribes at `cursor` and returns the connection with the
    /// server's answer to the subscription.
    fn connect(
        dial: &Dial<'_>,
        shared: &Self::Shared,
        cursor: &impl Cursor,
    ) -> impl Future<Output = Result<(Self, Received), ClientError>>;

    /// Waits for the next data from the server. `cursor` is where the
    /// client stands now (the polling transports send it).
    fn recv(&mut self, cursor: &impl Cursor)
    -> impl Future<Output = Result<Received, ClientError>>;

    /// A handle for client-to-server messages of this connection: a
    /// WebSocket sends frames on it; the HTTP transports send `POST /send`.
    fn sender(&self, dial: &Dial<'_>) -> Self::Sender;
}

/// Sends one client message (JSON, see [`crate::codec::ClientMessage`]).
pub trait MessageSender {
    fn send(&mut self, message: String) -> impl Future<Output = Result<(), ClientError>>;
}

/// Counters of one generator worker, bumped by every socket it owns.
/// Atomics only so the coordinator can read them while the run goes on;
/// each is written by one thread, so they are never contended.
#[derive(Debug, Default)]
pub struct SocketCounters {
    pub bytes_down: AtomicU64,
    pub bytes_up: AtomicU64,
    /// HTTP requests sent, WebSocket upgrade requests included.
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    /// Client messages counted as sent (the report's `sent`), live: the
    /// drain waits for the server's count to reach them. Not part of
    /// [`CounterSnapshot`].
    pub messages_sent: AtomicU64,
}

/// A snapshot of [`SocketCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub bytes_down: u64,
    pub bytes_up: u64,
    pub requests: u64,
    pub connections: u64,
}

impl SocketCounters {
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Add for CounterSnapshot {
    type Output = CounterSnapshot;
    fn add(self, o: Self) -> Self {
        CounterSnapshot {
            bytes_down: self.bytes_down + o.bytes_down,
            bytes_up: self.bytes_up + o.bytes_up,
            requests: self.requests + o.requests,
            connections: self.connections + o.connections,
        }
    }
}

impl std::ops::Sub for CounterSnapshot {
    type Output = CounterSnapshot;
    fn sub(self, o: Self) -> Self {
        CounterSnapshot {
            bytes_down: self.bytes_down.saturating_sub(o.bytes_down),
            bytes_up: self.bytes_up.saturating_sub(o.bytes_up),
            requests: self.requests.saturating_sub(o.requests),
            connections: self.connections.saturating_sub(o.connections),
        }
    }
}

/// A stream that counts every byte read from and written to it.
pub struct CountingStream<S> {
    inner: S,
    counters: Arc<SocketCounters>,
}

impl<S> CountingStream<S> {
    pub fn new(inner: S, counters: Arc<SocketCounters>) -> Self {
        CountingStream { inner, counters }
    }
}

impl<S> CountingStream<S> {
    fn count_written(&self, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = poll {
            self.counters
                .bytes_up
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.counters.bytes_down.fetch_add(n, Ordering::Relaxed);
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count_written(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count_written(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Opens a TCP connection from `source` (port chosen by the kernel), with
/// TCP_NODELAY, counted as one connection.
///
/// The source port is chosen at connect() rather than bind()
/// (IP_BIND_ADDRESS_NO_PORT): bind() alone must find a port free for every
/// destination, and with thousands of sockets (or a previous transport's
/// thousands in TIME_WAIT) that search makes connects take seconds.
pub async fn connect_tcp(
    target: SocketAddr,
    source: IpAddr,
    counters: &Arc<SocketCounters>,
) -> Result<CountingStream<TcpStream>, ClientError> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(ClientError::Connect)?;
    if source.is_ipv4() {
        use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
        setsockopt(&socket, IpBindAddressNoPort, &true)
            .map_err(|e| ClientError::Connect(e.into()))?;
    }
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(ClientError::Connect)?;
    let stream = socket.connect(target).await.map_err(ClientError::Connect)?;
    // Connections opened, not attempts: a refused connect is an error.
    counters.connections.fetch_add(1, Ordering::Relaxed);
    stream.set_nodelay(true).map_err(ClientError::Connect)?;
    Ok(CountingStream::new(stream, counters.clone()))
}

/// Why a client lost or could not get its connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed (refused, no ports, too many open files...).
    #[error("connect failed: {0}")]
    Connect(io::Error),
    /// The WebSocket or HTTP exchange failed before data flowed.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The server answered with an HTTP error status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The connection ended; with the WebSocket close code if one was sent.
    #[error("connection closed{}", .0.map(|c| format!(" with code {c}")).unwrap_or_default())]
    Closed(Option<u16>),
    /// I/O failed on an established connection.
    #[error("I/O error: {0}")]
    Io(String),
    /// The server sent bytes that do not decode.
    #[error("undecodable message: {0}")]
    Decode(#[from] crate::codec::CodecError),
    /// The server broke the protocol (e.g. data before the subscription answer).
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Error kinds as counted in results: by kind, never by message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    Connect,
    ConnectTimeout,
    Handshake,
    Status,
    Closed,
    Io,
    Decode,
    Protocol,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Handshake => "handshake",
            ErrorKind::Status => "http_status",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Decode => "decode",
            ErrorKind::Protocol => "protocol",
        }
    }
}

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Connect(_) => ErrorKind::Connect,
            ClientError::Handshake(_) => ErrorKind::Handshake,
            ClientError::Status(_) => ErrorKind::Status,
            ClientError::Closed(_) => ErrorKind::Closed,
            ClientError::Io(_) => ErrorKind::Io,
            ClientError::Decode(_) => ErrorKind::Decode,
            ClientError::Protocol(_) => ErrorKind::Protocol,
        }
    }
}
