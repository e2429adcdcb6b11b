//! Long polling over HTTP/2: the polls of `clients_per_connection` clients
//! share one connection as concurrent streams (cleartext with prior
//! knowledge, or `h2` by ALPN over TLS). Client messages go out as further
//! streams on the same connection.
//!
//! Bytes and CPU are per delivered event whatever carries them, so the
//! figures compare directly with one-connection-per-client transports; a
//! shared connection's handshake is paid (and timed) by the first client
//! that needs it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use ::http::{Request, header};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::http::{self, Body};
use super::{
    Alpn, ClientError, Cursor, Dial, Framing, MessageSender, OwnedDial, Received, Transport,
};

/// How long a new connection may take to allow extended CONNECT.
const SETTINGS_TIMEOUT: Duration = Duration::from_secs(5);

type Slot = Rc<tokio::sync::Mutex<Option<SendRequest<Body>>>>;

/// The HTTP/2 connections of one worker, one per `clients_per_connection`
/// consecutive clients, opened on first use and reopened once closed.
#[derive(Default)]
pub struct H2Pool {
    slots: RefCell<Vec<Slot>>,
}

impl H2Pool {
    /// The shared connection of the client at `dial.index`, opened if it
    /// has none yet or it closed. With `extended_connect`, a new connection
    /// is handed out only once the server has allowed extended CONNECT
    /// (RFC 8441) in its SETTINGS, which arrive after the handshake.
    pub(super) async fn sender(
        &self,
        dial: &Dial<'_>,
        extended_connect: bool,
    ) -> Result<SendRequest<Body>, ClientError> {
        let index = dial.index / dial.target.clients_per_connection.max(1) as usize;
        let slot = {
            let mut slots = self.slots.borrow_mut();
            if slots.len() <= index {
                slots.resize_with(index + 1, Slot::default);
            }
            slots[index].clone()
        };
        // Held while connecting, so the clients of a slot open one connection.
        let mut held = slot.lock().await;
        if let Some(sender) = held.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let conn = dial.open(Alpn::H2).await?;
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(conn))
            .await
            .map_err(|e| ClientError::Handshake(e.to_string()))?;
        let mut connection = Box::pin(connection);
        if extended_connect {
            let deadline = tokio::time::Instant::now() + SETTINGS_TIMEOUT;
            while !connection.is_extended_connect_protocol_enabled() {
                tokio::select! {
                    _ = &mut connection => return Err(ClientError::Closed(None)),
                    () = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ClientError::Handshake(
                        "the server does not allow WebSocket over HTTP/2 (no extended CONNECT)"
                            .into(),
                    ));
                }
            }
        }
        tokio::task::spawn_local(connection);
        *held = Some(sender.clone());
        Ok(sender)
    }
}

/// `scheme://addr` for absolute request URIs (HTTP/2 carries them as
/// `:scheme` and `:authority`).
pub(super) fn origin(dial: &Dial<'_>) -> String {
    let scheme = if dial.target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", dial.target.addr)
}

pub struct LongPollH2Client {
    sender: SendRequest<Body>,
    dial: OwnedDial,
    origin: String,
    path: String,
    uri: String,
}

impl Transport for LongPollH2Client {
    type Shared = H2Pool;
    type Sender = H2Sender;

    async fn connect(
        dial: &Dial<'_>,
        pool: &H2Pool,
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let mut client = LongPollH2Client {
            sender: pool.sender(dial, false).await?,
            dial: dial.to_owned(),
            origin: origin(dial),
            path: String::new(),
            uri: String::new(),
        };
        let first = client.recv(cursor).await?;
        Ok((client, first))
    }

    async fn recv(&mut self, cursor: &impl Cursor) -> Result<Received, ClientError> {
        let target = &self.dial.target;
        http::poll_path(&mut self.path, cursor, target.hold, target.max_batch);
        self.uri.clear();
        self.uri.push_str(&self.origin);
        self.uri.push_str(&self.path);
        let request = Request::get(self.uri.as_str())
            .body(Body::default())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let response = http::exchange(&mut self.sender, request, &self.dial.counters).await?;
        Ok(Received {
            body: http::body_of(response).await?.into(),
            framing: Framing::Batch,
        })
    }

    fn sender(&self, dial: &Dial<'_>) -> H2Sender {
        H2Sender {
            sender: self.sender.clone(),
            dial: dial.to_owned(),
            uri: format!("{}/send", self.origin),
        }
    }
}

/// `POST /send` as a stream of the client's shared connection.
pub struct H2Sender {
    sender: SendRequest<Body>,
    dial: OwnedDial,
    uri: String,
}

impl MessageSender for H2Sender {
    async fn send(&mut self, message: String) -> Result<(), ClientError> {
        let request = Request::post(self.uri.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(message))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let response = http::exchange(&mut self.sender, request, &self.dial.counters).await?;
        http::body_of(response).await.map(drop)
    }
}
