//! WebSocket client: one connection, one subscribe message, then frames.
//! Client messages go out as text frames on the same connection.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::lock::Mutex;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{Alpn, ClientError, Conn, Cursor, Dial, Framing, MessageSender, Received, Transport};
use crate::codec::ClientMessage;

type Sink<S> = Rc<Mutex<SplitSink<WebSocketStream<S>, Message>>>;

/// A WebSocket client over any byte stream `S`: a TCP or TLS connection of
/// its own, or an HTTP/2 stream (`websocket_h2`).
pub struct WebSocketClient<S = Conn> {
    rx: SplitStream<WebSocketStream<S>>,
    tx: Sink<S>,
}

/// Small buffers, as on the server: thousands of clients share one process.
pub(super) fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        // The largest event the server may send, envelope included.
        .max_message_size(Some(
            crate::codec::MAX_PAYLOAD_BYTES + crate::codec::MAX_ENVELOPE_BYTES,
        ))
}

impl Transport for WebSocketClient {
    type Shared = ();
    type Sender = WebSocketSender;

    async fn connect(
        dial: &Dial<'_>,
        _shared: &(),
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let stream = dial.open(Alpn::Http1).await?;
        dial.counters.requests.fetch_add(1, Ordering::Relaxed);
        let scheme = if dial.target.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        let url = format!("{scheme}://{}/ws", dial.target.addr);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config()))
                .await
                .map_err(|e| ClientError::Handshake(e.to_string()))?;
        WebSocketClient::subscribe(ws, cursor).await
    }

    async fn recv(&mut self, cursor: &impl Cursor) -> Result<Received, ClientError> {
        self.next_message(cursor).await
    }

    fn sender(&self, _dial: &Dial<'_>) -> WebSocketSender {
        self.message_sender()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketClient<S> {
    /// Sends the subscription on an open WebSocket and waits for its answer.
    pub(super) async fn subscribe(
        ws: WebSocketStream<S>,
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let (mut tx, rx) = ws.split();
        let subscribe =
            ClientMessage::Subscribe(cursor.entries().map(|(t, c)| (t.to_string(), c)).collect());
        tx.send(Message::Text(subscribe.to_json().into()))
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let mut client = WebSocketClient {
            rx,
            tx: Rc::new(Mutex::new(tx)),
        };
        let first = client.next_message(cursor).await?;
        Ok((client, first))
    }

    pub(super) async fn next_message(
        &mut self,
        _cursor: &impl Cursor,
    ) -> Result<Received, ClientError> {
        loop {
            let body: Bytes = match self.rx.next().await {
                Some(Ok(Message::Text(text))) => text.into(),
                Some(Ok(Message::Binary(bytes))) => bytes,
                // tungstenite queues the pong and sends it with the next read.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClientError::Closed(frame.map(|f| f.code.into())));
                }
                Some(Err(e)) => return Err(ClientError::Io(e.to_string())),
                None => return Err(ClientError::Closed(None)),
            };
            return Ok(Received {
                body,
                framing: Framing::Single,
            });
        }
    }

    pub(super) fn message_sender(&self) -> WebSocketSender<S> {
        WebSocketSender(self.tx.clone())
    }
}

/// Text frames on the client's WebSocket.
pub struct WebSocketSender<S = Conn>(Sink<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> MessageSender for WebSocketSender<S> {
    async fn send(&mut self, message: String) -> Result<(), ClientError> {
        self.0
            .lock()
            .await
            .send(Message::Text(message.into()))
            .await
            .map_err(|e| ClientError::Io(e.to_string()))
    }
}
