//! What the HTTP transports share: opening an HTTP/1.1 connection, building
//! poll requests, reading answers, and `POST /send` for client messages.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_util::rt::TokioIo;

use super::{Alpn, ClientError, Conn, Cursor, Dial, MessageSender, OwnedDial, SocketCounters};
use crate::codec;

pub type Body = Full<Bytes>;

/// The `Host` header for the server, built once per connection.
pub fn host(dial: &Dial<'_>) -> HeaderValue {
    HeaderValue::from_str(&dial.target.addr.to_string())
        .expect("a socket address is a valid header")
}

/// HTTP/1.1 over `conn`; the connection task ends when the sender is
/// dropped or the peer closes.
pub async fn handshake_h1(conn: Conn) -> Result<SendRequest<Body>, ClientError> {
    let (sender, connection) = http1::handshake(TokioIo::new(conn))
        .await
        .map_err(|e| ClientError::Handshake(e.to_string()))?;
    tokio::task::spawn_local(connection);
    Ok(sender)
}

/// A request sender of either HTTP version, for [`exchange`].
pub trait Exchange {
    fn ready(&mut self) -> impl Future<Output = hyper::Result<()>>;
    fn send(
        &mut self,
        request: Request<Body>,
    ) -> impl Future<Output = hyper::Result<Response<Incoming>>>;
}

impl Exchange for SendRequest<Body> {
    fn ready(&mut self) -> impl Future<Output = hyper::Result<()>> {
        SendRequest::ready(self)
    }
    fn send(
        &mut self,
        request: Request<Body>,
    ) -> impl Future<Output = hyper::Result<Response<Incoming>>> {
        self.send_request(request)
    }
}

impl Exchange for http2::SendRequest<Body> {
    fn ready(&mut self) -> impl Future<Output = hyper::Result<()>> {
        http2::SendRequest::ready(self)
    }
    fn send(
        &mut self,
        request: Request<Body>,
    ) -> impl Future<Output = hyper::Result<Response<Incoming>>> {
        self.send_request(request)
    }
}

/// Sends one request once the connection can take it, counted as a request
/// when it goes out, and returns the answer's head.
pub async fn exchange(
    sender: &mut impl Exchange,
    request: Request<Body>,
    counters: &SocketCounters,
) -> Result<Response<Incoming>, ClientError> {
    sender
        .ready()
        .await
        .map_err(|_| ClientError::Closed(None))?;
    counters.requests.fetch_add(1, Ordering::Relaxed);
    sender
        .send(request)
        .await
        .map_err(|e| ClientError::Io(e.to_string()))
}

/// `/lp?subs=CURSOR&hold_ms=H&max=M` into `path` (reused between polls).
pub fn poll_path(path: &mut String, cursor: &impl Cursor, hold: Duration, max_batch: u32) {
    use std::fmt::Write as _;
    path.clear();
    path.push_str("/lp?subs=");
    codec::format_cursor(cursor.entries(), path);
    let _ = write!(path, "&hold_ms={}&max={max_batch}", hold.as_millis());
}

pub fn get(path: &str, host: &HeaderValue) -> Result<Request<Body>, ClientError> {
    Request::get(path)
        .header(header::HOST, host.clone())
        .body(Body::default())
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// The whole body of a successful answer.
pub async fn body_of(response: Response<Incoming>) -> Result<Bytes, ClientError> {
    if !response.status().is_success() {
        return Err(ClientError::Status(response.status().as_u16()));
    }
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Io(e.to_string()))?
        .to_bytes())
}

pub fn post_send(message: String, host: &HeaderValue) -> Result<Request<Body>, ClientError> {
    Request::post("/send")
        .header(header::HOST, host.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(message))
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Client messages over HTTP/1.1: a connection of their own, since the
/// client's other one is busy with a held poll or an open stream (a browser
/// would take a second connection from its pool the same way). Kept alive
/// between messages, or a new one per message when `close_each`.
pub struct Http1Sender {
    dial: OwnedDial,
    host: HeaderValue,
    sender: Option<SendRequest<Body>>,
    close_each: bool,
}

impl Http1Sender {
    pub fn new(dial: &Dial<'_>, close_each: bool) -> Http1Sender {
        Http1Sender {
            dial: dial.to_owned(),
            host: host(dial),
            sender: None,
            close_each,
        }
    }
}

impl MessageSender for Http1Sender {
    async fn send(&mut self, message: String) -> Result<(), ClientError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => handshake_h1(self.dial.dial().open(Alpn::Http1).await?).await?,
        };
        let mut request = post_send(message, &self.host)?;
        if self.close_each {
            request
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let response = exchange(&mut sender, request, &self.dial.counters).await?;
        body_of(response).await?;
        if !self.close_each {
            self.sender = Some(sender);
        }
        Ok(())
    }
}
