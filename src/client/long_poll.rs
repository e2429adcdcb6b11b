//! Long-polling client: one kept-alive HTTP/1.1 connection, one poll at a
//! time, each carrying the cursor of what the client already has.
//!
//! Built on hyper's connection API rather than a pooled HTTP client so that
//! the socket is ours to count and a client is exactly one connection.

use std::sync::Arc;

use ::http::HeaderValue;
use hyper::client::conn::http1::SendRequest;

use super::http::{self, Body, Http1Sender};
use super::{
    Alpn, ClientError, Cursor, Dial, Framing, Received, SocketCounters, Target, Transport,
};

pub struct LongPollClient {
    sender: SendRequest<Body>,
    target: Target,
    counters: Arc<SocketCounters>,
    /// Built once per connection; only the path changes from poll to poll.
    host: HeaderValue,
    path: String,
}

impl Transport for LongPollClient {
    type Shared = ();
    type Sender = Http1Sender;

    async fn connect(
        dial: &Dial<'_>,
        _shared: &(),
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let sender = http::handshake_h1(dial.open(Alpn::Http1).await?).await?;
        let mut client = LongPollClient {
            sender,
            target: dial.target.clone(),
            counters: dial.counters.clone(),
            host: http::host(dial),
            path: String::new(),
        };
        let first = client.recv(cursor).await?;
        Ok((client, first))
    }

    async fn recv(&mut self, cursor: &impl Cursor) -> Result<Received, ClientError> {
        http::poll_path(
            &mut self.path,
            cursor,
            self.target.hold,
            self.target.max_batch,
        );
        let request = http::get(&self.path, &self.host)?;
        let response = http::exchange(&mut self.sender, request, &self.counters).await?;
        Ok(Received {
            body: http::body_of(response).await?.into(),
            framing: Framing::Batch,
        })
    }

    fn sender(&self, dial: &Dial<'_>) -> Http1Sender {
        Http1Sender::new(dial, false)
    }
}
