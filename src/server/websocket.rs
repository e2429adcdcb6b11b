//! WebSocket route: subscribe with one text message, then the server pushes
//! each event as one frame. Pings keep idle connections honest.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};

use super::{AppState, send};
use crate::codec::{self, ClientMessage, Encoding, ServerMessage};
use crate::hub::{Drained, Subscriber};

/// Small buffers: at tens of thousands of connections, tungstenite's 128 KiB
/// default read buffer alone would cost gigabytes.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 4 * 1024;
/// Largest message (and frame) a client may send: a chat line or an echo
/// request, not a second event stream. Past it the connection is closed
/// with 1009; without the frame cap tungstenite would buffer 16 MiB frames.
const MAX_MESSAGE: usize = 64 * 1024;
/// Room for two of the largest events in the write buffer: sized from the
/// payload limit, so every event a plan may publish passes over WebSocket
/// as over long polling (with tungstenite's default cap, events over
/// ~132 KiB dropped every subscriber of their topic).
const MAX_WRITE_BUFFER: usize =
    WRITE_BUFFER + 2 * (codec::MAX_PAYLOAD_BYTES + codec::MAX_ENVELOPE_BYTES);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Events written before a flush, so one slow wake does not hog the task.
const DRAIN_CHUNK: usize = 256;

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> Response {
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| connection(socket, state))
}

/// A close frame. Its reason is cut to the 123 bytes a control frame has
/// room for (at a character boundary): a longer one would fail to send and
/// the client would see a dropped connection instead of the code.
fn close(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].into(),
    }))
}

const MAX_CLOSE_REASON: usize = 123;

async fn connection(socket: WebSocket, state: Arc<AppState>) {
    let _gauge = state.gauges.websocket();
    let (mut tx, mut rx) = socket.split();
    let encoding = state.hub.encoding();

    let entries = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, rx.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => match ClientMessage::from_json(&text) {
            Ok(ClientMessage::Subscribe(map)) if map.len() > codec::MAX_TOPICS_PER_SUBSCRIPTION => {
                let why = format!(
                    "{} topics in one subscription: at most {}",
                    map.len(),
                    codec::MAX_TOPICS_PER_SUBSCRIPTION
                );
                let _ = tx.send(close(close_code::POLICY, &why)).await;
                return;
            }
            Ok(ClientMessage::Subscribe(map)) if !map.is_empty() => {
                map.into_iter().collect::<Vec<_>>()
            }
            Ok(ClientMessage::Subscribe(_)) => {
                let _ = tx
                    .send(close(close_code::POLICY, "subscribe names no topic"))
                    .await;
                return;
            }
            Ok(ClientMessage::Publish { .. }) => {
                let _ = tx
                    .send(close(close_code::POLICY, "subscribe before publishing"))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx
                    .send(close(
                        close_code::INVALID,
                        &format!("bad subscribe message: {e}"),
                    ))
                    .await;
                return;
            }
        },
        Ok(Some(Ok(Message::Binary(_)))) => {
            let _ = tx
                .send(close(
                    close_code::UNSUPPORTED,
                    "send the subscribe message as text",
                ))
                .await;
            return;
        }
        Ok(_) => return,
        Err(_) => {
            let _ = tx
                .send(close(
                    close_code::POLICY,
                    "no subscribe message within 10 s",
                ))
                .await;
            return;
        }
    };
    let (mut sub, started) = match Subscriber::new(&state.hub, &entries) {
        Ok(ok) => ok,
        Err(e) => {
            let _ = tx.send(close(close_code::POLICY, &e.to_string())).await;
            return;
        }
    };
    // The answer lists every topic: where a fresh subscription starts, and
    // where a resumed one stands.
    let heads = sub
        .cursors()
        .map(|(t, c)| {
            (
                t.into(),
                started
                    .iter()
                    .find(|(s, _)| s.as_ref() == t)
                    .map_or(c, |(_, h)| *h),
            )
        })
        .collect();
    if tx
        .send(encode(encoding, &ServerMessage::Subscribed(heads)))
        .await
        .is_err()
    {
        return;
    }

    let mut heartbeat = tokio::time::interval(state.config.heartbeat);
    heartbeat.tick().await;
    let mut unanswered_pings = 0u32;
    let mut more = true;
    let mut frames = Vec::with_capacity(16);
    loop {
        if more {
            more = sub.drain(DRAIN_CHUNK, usize::MAX, &mut |d| {
                frames.push(frame(encoding, d))
            });
            for f in frames.drain(..) {
                if tx.feed(f).await.is_err() {
                    return;
                }
            }
            if tx.flush().await.is_err() {
                return;
            }
            if more {
                tokio::task::yield_now().await;
                continue;
            }
        }
        tokio::select! {
            () = sub.changed() => more = true,
            msg = rx.next() => match msg {
                Some(Ok(Message::Pong(_))) => unanswered_pings = 0,
                Some(Ok(Message::Ping(_))) => {} // answered by the WebSocket layer
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(Message::Text(text))) => {
                    let accepted = ClientMessage::from_json(&text)
                        .map_err(|e| send::Refused::Malformed(e.to_string()))
                        .and_then(|m| send::accept(&state, m));
                    if let Err(e) = accepted {
                        let code = match e {
                            send::Refused::Malformed(_) => close_code::INVALID,
                            _ => close_code::POLICY,
                        };
                        let _ = tx.send(close(code, &e.to_string())).await;
                        return;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let _ = tx.send(close(close_code::UNSUPPORTED, "send client messages as text")).await;
                    return;
                }
            },
            _ = heartbeat.tick() => {
                if unanswered_pings >= 2 {
                    let _ = tx.send(close(close_code::AWAY, "no pong to two pings")).await;
                    return;
                }
                unanswered_pings += 1;
                if tx.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn encode(encoding: Encoding, msg: &ServerMessage<'_>) -> Message {
    let mut buf = BytesMut::new();
    codec::encode(encoding, msg, &mut buf).expect("server messages encode");
    match encoding {
        Encoding::Json => Message::Text(
            String::from_utf8(buf.to_vec())
                .expect("JSON is UTF-8")
                .into(),
        ),
        Encoding::Binary => Message::Binary(buf.freeze()),
    }
}

fn frame(encoding: Encoding, drained: Drained) -> Message {
    match drained {
        Drained::Event(e) => match e.text {
            Some(text) => Message::Text(text),
            None => Message::Binary(e.bytes),
        },
        Drained::Missed { topic, first, last } => encode(
            encoding,
            &ServerMessage::Missed {
                topic: topic.as_ref().into(),
                first,
                last,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let Message::Close(Some(frame)) = close(close_code::POLICY, &long) else {
            panic!("not a close")
        };
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert!(frame.reason.len() >= MAX_CLOSE_REASON - 1);
        let Message::Close(Some(frame)) = close(close_code::POLICY, "short") else {
            panic!("not a close")
        };
        assert_eq!(frame.reason.as_str(), "short");
    }
}
