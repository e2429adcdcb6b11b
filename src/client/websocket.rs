//! WebSocket client: one connection, one subscribe message, then frames.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{
    ClientError, CountingStream, Cursor, Framing, Received, SocketCounters, Target, Transport,
};
use crate::codec::ClientMessage;

pub struct WebSocketClient {
    ws: WebSocketStream<CountingStream<TcpStream>>,
}

/// Small buffers, as on the server: thousands of clients share one process.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
}

impl Transport for WebSocketClient {
    async fn connect(
        target: &Target,
        source: IpAddr,
        cursor: &impl Cursor,
        counters: &Arc<SocketCounters>,
    ) -> Result<(Self, Received), ClientError> {
        let stream = super::connect_tcp(target.addr, source, counters).await?;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let url = format!("ws://{}/ws", target.addr);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config()))
                .await
                .map_err(|e| ClientError::Handshake(e.to_string()))?;
        let mut client = WebSocketClient { ws };
        let subscribe =
            ClientMessage::Subscribe(cursor.entries().map(|(t, c)| (t.to_string(), c)).collect());
        client
            .ws
            .send(Message::Text(subscribe.to_json().into()))
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let first = client.recv(cursor).await?;
        Ok((client, first))
    }

    async fn recv(&mut self, _cursor: &impl Cursor) -> Result<Received, ClientError> {
        loop {
            let body: Bytes = match self.ws.next().await {
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
}
