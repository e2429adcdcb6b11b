//! Server-sent events client (what a browser's EventSource does): one
//! kept-alive HTTP/1.1 request whose `text/event-stream` answer stays open.
//!
//! After a reconnect it sends `Last-Event-ID` with its whole cursor, every
//! topic's last sequence number: the server's ids name only each event's
//! own topic (docs/protocol.md), so the last id alone would resume one
//! topic of several.

use ::http::{HeaderValue, Request, header};
use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::http::{self, Body, Http1Sender};
use super::{Alpn, ClientError, Cursor, Dial, Framing, Received, Transport};
use crate::codec::{self, sse};

/// Where an event's data is: a range of the block, or bytes of its own
/// (several lines joined).
enum Data {
    At(std::ops::Range<usize>),
    Joined(Bytes),
}

pub struct SseClient {
    body: Incoming,
    buf: BytesMut,
    /// Holds the connection open for the life of the stream.
    _sender: SendRequest<Body>,
}

impl Transport for SseClient {
    type Shared = ();
    type Sender = Http1Sender;

    async fn connect(
        dial: &Dial<'_>,
        _shared: &(),
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let mut sender = http::handshake_h1(dial.open(Alpn::Http1).await?).await?;
        let mut path = String::from("/sse?subs=");
        codec::format_cursor(cursor.entries().map(|(t, _)| (t, None)), &mut path);
        let mut request = Request::get(path)
            .header(header::HOST, http::host(dial))
            .header(header::ACCEPT, "text/event-stream");
        if cursor.entries().any(|(_, c)| c.is_some()) {
            let mut last_id = String::new();
            codec::format_cursor(cursor.entries(), &mut last_id);
            let value = HeaderValue::from_str(&last_id)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            request = request.header("last-event-id", value);
        }
        let request = request
            .body(Body::default())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let response = http::exchange(&mut sender, request, dial.counters).await?;
        if !response.status().is_success() {
            return Err(ClientError::Status(response.status().as_u16()));
        }
        let mut client = SseClient {
            body: response.into_body(),
            buf: BytesMut::with_capacity(4096),
            _sender: sender,
        };
        let first = client.recv(cursor).await?;
        Ok((client, first))
    }

    async fn recv(&mut self, _cursor: &impl Cursor) -> Result<Received, ClientError> {
        loop {
            let decoded = sse::decode_block(&self.buf)
                .map_err(|e| ClientError::Protocol(e.to_string()))?
                .map(|(dispatch, used)| match dispatch {
                    // One `data:` line is borrowed from the buffer: hand out
                    // its place, to slice without copying. Several are
                    // joined, so they are copied.
                    sse::Dispatch::Event(event) => match event.data {
                        Cow::Borrowed(data) => {
                            let start = (data.as_ptr() as usize)
                                .checked_sub(self.buf.as_ptr() as usize)
                                .filter(|start| start + data.len() <= used);
                            let data = match start {
                                Some(start) => Data::At(start..start + data.len()),
                                None => Data::Joined(Bytes::copy_from_slice(data.as_bytes())),
                            };
                            (Some(data), used)
                        }
                        Cow::Owned(data) => (Some(Data::Joined(Bytes::from(data))), used),
                    },
                    // Heartbeat comments.
                    sse::Dispatch::Nothing { .. } => (None, used),
                });
            match decoded {
                Some((data, used)) => {
                    let block = self.buf.split_to(used).freeze();
                    let body = match data {
                        Some(Data::At(range)) => block.slice(range),
                        Some(Data::Joined(bytes)) => bytes,
                        None => continue,
                    };
                    return Ok(Received {
                        body: body.into(),
                        framing: Framing::Single,
                    });
                }
                None => match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => return Err(ClientError::Io(e.to_string())),
                    None => return Err(ClientError::Closed(None)),
                },
            }
        }
    }

    fn sender(&self, dial: &Dial<'_>) -> Http1Sender {
        Http1Sender::new(dial, false)
    }
}
