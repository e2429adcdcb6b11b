//! WebSocket over HTTP/2 (RFC 8441): each client's WebSocket is one
//! extended-CONNECT stream, and `clients_per_connection` clients share a
//! TCP (or TLS) connection. Frames, subscription and client messages are
//! those of the WebSocket transport; only what carries them differs.

use ::http::{Method, Request};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use super::http::{self, Body};
use super::long_poll_h2::origin;
use super::websocket::WebSocketSender;
use super::{ClientError, Cursor, Dial, H2Pool, Received, Transport, WebSocketClient};

type Stream = TokioIo<Upgraded>;

pub struct WebSocketH2Client(WebSocketClient<Stream>);

impl Transport for WebSocketH2Client {
    type Shared = H2Pool;
    type Sender = WebSocketSender<Stream>;

    async fn connect(
        dial: &Dial<'_>,
        pool: &H2Pool,
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let mut sender = pool.sender(dial, true).await?;
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("{}/ws", origin(dial)))
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .header("sec-websocket-version", "13")
            .body(Body::default())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        // A failed CONNECT is a failed handshake, as on HTTP/1.1.
        let mut response = http::exchange(&mut sender, request, dial.counters)
            .await
            .map_err(|e| match e {
                ClientError::Io(message) => ClientError::Handshake(message),
                other => other,
            })?;
        if !response.status().is_success() {
            return Err(ClientError::Status(response.status().as_u16()));
        }
        let upgraded = hyper::upgrade::on(&mut response)
            .await
            .map_err(|e| ClientError::Handshake(e.to_string()))?;
        let ws = WebSocketClient::open(TokioIo::new(upgraded));
        let (client, first) = WebSocketClient::subscribe(ws, cursor).await?;
        Ok((WebSocketH2Client(client), first))
    }

    async fn recv(&mut self, cursor: &impl Cursor) -> Result<Received, ClientError> {
        self.0.next_message(cursor).await
    }

    fn sender(&self, _dial: &Dial<'_>) -> Self::Sender {
        self.0.message_sender()
    }
}
