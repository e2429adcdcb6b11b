//! Load-generator clients: one module per transport behind [`Transport`].
//!
//! A transport only moves bytes: it connects, subscribes and hands back
//! what the server sent, with its framing. Decoding, sequence tracking and
//! timing live in `load`, identical for every transport, so the figures of
//! two transports differ only by what the transports themselves do.
//!
//! Every socket is wrapped in [`CountingStream`], so bytes are counted at
//! the socket: HTTP headers, WebSocket frame headers, pings and all.

mod long_poll;
mod websocket;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

pub use long_poll::LongPollClient;
pub use websocket::WebSocketClient;

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
    pub body: Bytes,
    pub framing: Framing,
}

/// Where a client stands: each subscribed topic and the last sequence
/// number it holds (`None` until the server has answered the subscription).
///
/// Only transports that send it read it (long polling on every poll,
/// WebSocket once to subscribe), so it costs nothing per WebSocket frame.
pub trait Cursor {
    fn entries(&self) -> impl Iterator<Item = (&str, Option<u64>)>;
}

/// One client connection of some transport.
///
/// Futures need not be `Send`: each generator worker runs its clients on a
/// single thread, which keeps counters and histograms free of locks.
pub trait Transport: Sized {
    /// Connects from `source`, subscribes at `cursor` and returns the
    /// connection with the server's answer to the subscription.
    fn connect(
        target: &Target,
        source: IpAddr,
        cursor: &impl Cursor,
        counters: &Arc<SocketCounters>,
    ) -> impl Future<Output = Result<(Self, Received), ClientError>>;

    /// Waits for the next data from the server. `cursor` is where the
    /// client stands now (long polling sends it; WebSocket ignores it).
    fn recv(&mut self, cursor: &impl Cursor)
    -> impl Future<Output = Result<Received, ClientError>>;
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
    counters.connections.fetch_add(1, Ordering::Relaxed);
    let stream = socket.connect(target).await.map_err(ClientError::Connect)?;
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
