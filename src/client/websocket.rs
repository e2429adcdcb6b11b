//! WebSocket client: one connection, one subscribe message, then frames,
//! on pushbench's own codec ([`super::ws`]). Client messages go out as
//! text frames on the same connection.

use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::ws::{WsConn, WsMessage, WsReader, WsWriter};
use super::{
    Alpn, Body, ClientError, Conn, Cursor, Dial, Framing, MessageSender, Received, Transport,
};
use crate::codec::ClientMessage;

/// The largest event the server may send, envelope included.
pub(super) const MAX_MESSAGE: usize =
    crate::codec::MAX_PAYLOAD_BYTES + crate::codec::MAX_ENVELOPE_BYTES;

/// A WebSocket client over any byte stream `S`: a TCP or TLS connection of
/// its own, or an HTTP/2 stream (`websocket_h2`).
pub struct WebSocketClient<S = Conn> {
    rx: WsReader<S>,
    tx: WsWriter<S>,
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
        let ws =
            WsConn::handshake(stream, &dial.target.addr.to_string(), "/ws", MAX_MESSAGE).await?;
        WebSocketClient::subscribe(ws, cursor).await
    }

    async fn recv(&mut self, cursor: &impl Cursor) -> Result<Received, ClientError> {
        self.next_message(cursor).await
    }

    fn sender(&self, _dial: &Dial<'_>) -> WebSocketSender {
        self.message_sender()
    }
}

impl<S: AsyncRead + AsyncWrite> WebSocketClient<S> {
    /// A WebSocket on a stream whose handshake is done (HTTP/2's CONNECT).
    pub(super) fn open(stream: S) -> WsConn<S> {
        WsConn::open(stream, BytesMut::new(), MAX_MESSAGE)
    }

    /// Sends the subscription on an open WebSocket and waits for its answer.
    pub(super) async fn subscribe(
        ws: WsConn<S>,
        cursor: &impl Cursor,
    ) -> Result<(Self, Received), ClientError> {
        let subscribe =
            ClientMessage::Subscribe(cursor.entries().map(|(t, c)| (t.to_string(), c)).collect());
        ws.writer.send_text(&subscribe.to_json()).await?;
        let mut client = WebSocketClient {
            rx: ws.reader,
            tx: ws.writer,
        };
        let first = client.next_message(cursor).await?;
        Ok((client, first))
    }

    pub(super) async fn next_message(
        &mut self,
        _cursor: &impl Cursor,
    ) -> Result<Received, ClientError> {
        let body = match self.rx.next().await? {
            WsMessage::Text(text) => Body::Text(text),
            WsMessage::Binary(bytes) => Body::Bytes(bytes),
        };
        Ok(Received {
            body,
            framing: Framing::Single,
        })
    }

    pub(super) fn message_sender(&self) -> WebSocketSender<S> {
        WebSocketSender(self.tx.clone())
    }
}

/// Text frames on the client's WebSocket.
pub struct WebSocketSender<S = Conn>(WsWriter<S>);

impl<S: AsyncWrite> MessageSender for WebSocketSender<S> {
    async fn send(&mut self, message: String) -> Result<(), ClientError> {
        self.0.send_text(&message).await
    }
}
