//! Long-polling client: one kept-alive HTTP/1.1 connection, one poll at a
//! time, each carrying the cursor of what the client already has.
//!
//! Built on hyper's connection API rather than a pooled HTTP client so that
//! the socket is ours to count and a client is exactly one connection.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::{ClientError, Cursor, Framing, Received, SocketCounters, Target, Transport};
use crate::codec;

pub struct LongPollClient {
    sender: SendRequest<Empty<Bytes>>,
    target: Target,
    counters: Arc<SocketCounters>,
    /// Built once per connection; only the path changes from poll to poll.
    host: http::HeaderValue,
    path: String,
}

impl Transport for LongPollClient {
    async fn connect(
        target: &Target,
        source: IpAddr,
        cursor: &impl Cursor,
        counters: &Arc<SocketCounters>,
    ) -> Result<(Self, Received), ClientError> {
        let stream = super::connect_tcp(target.addr, source, counters).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Handshake(e.to_string()))?;
        // The connection task ends when the sender is dropped or the peer closes.
        tokio::task::spawn_local(connection);
        let mut client = LongPollClient {
            sender,
            target: target.clone(),
            counters: counters.clone(),
            host: http::HeaderValue::from_str(&target.addr.to_string())
                .expect("a socket address is a valid header"),
            path: String::new(),
        };
        let first = client.recv(cursor).await?;
        Ok((client, first))
    }

    async fn recv(&mut self, cursor: &impl Cursor) -> Result<Received, ClientError> {
        self.path.clear();
        self.path.push_str("/lp?subs=");
        codec::format_cursor(cursor.entries(), &mut self.path);
        use std::fmt::Write as _;
        let _ = write!(
            self.path,
            "&hold_ms={}&max={}",
            self.target.hold.as_millis(),
            self.target.max_batch
        );
        let request = Request::get(self.path.as_str())
            .header(header::HOST, self.host.clone())
            .body(Empty::new())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|_| ClientError::Closed(None))?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ClientError::Status(response.status().as_u16()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?
            .to_bytes();
        Ok(Received {
            body,
            framing: Framing::Batch,
        })
    }
}
