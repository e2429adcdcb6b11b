//! What every accepted socket gets before HTTP sees it: a place under the
//! connection cap, and a write-stall limit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::AppState;
use super::admin::Refusal;

/// One place under [`super::ServerConfig::max_connections`], given back
/// when the connection's task ends.
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    pub fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers a connection past the cap: a plain 503 over cleartext (a TLS
/// client could not read it, so it only sees the close), within a second.
pub async fn refuse(mut tcp: TcpStream, tls: bool) {
    if !tls {
        const BODY: &str = "the server is at its connection limit: retry later\n";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        // Answer, end our side, and read what the client sent before
        // closing: closing with its request unread would reset the
        // connection and could discard the answer on the way.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            tcp.write_all(answer.as_bytes()).await?;
            tcp.shutdown().await?;
            let mut sink = [0u8; 4096];
            while tcp.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
    }
}

/// A socket whose writes fail (`TimedOut`) once one has made no progress
/// for the write timeout: a client that stops reading would otherwise hold
/// its connection, its task and its buffers forever, and no heartbeat can
/// reach it through the same blocked stream. Reads are untouched.
///
/// It also holds the connection's [`Slot`]: the socket outlives HTTP when
/// a connection is upgraded to a WebSocket, and must keep counting against
/// the cap until it closes (a slot held by the HTTP task was given back at
/// the upgrade, and WebSockets went past the cap).
pub struct StallGuard<S> {
    inner: S,
    _slot: Slot,
    timeout: Duration,
    /// Armed when a write first returns `Pending`, cleared by progress.
    stalled: Option<Pin<Box<Sleep>>>,
    state: Arc<AppState>,
    counted: bool,
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, slot: Slot, timeout: Duration, state: Arc<AppState>) -> StallGuard<S> {
        StallGuard {
            inner,
            _slot: slot,
            timeout,
            stalled: None,
            state,
            counted: false,
        }
    }

    /// Called with the inner write's answer: `Pending` arms the timer (and
    /// polls it, so its expiry wakes the writer), anything else disarms it.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if !self.counted {
            self.counted = true;
            self.state.gauges.refused(Refusal::SlowConsumer);
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "a write to this client made no progress within the write timeout",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
