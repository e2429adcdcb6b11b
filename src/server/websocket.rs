//! WebSocket routes: `/ws` (subscribe with one text message, then the
//! server pushes each event as one frame; pings keep idle connections
//! honest) and `/echo` (every message sent back, for conformance testing).
//!
//! Every way a connection ends on the server's initiative sends a close
//! frame with its code (1002 protocol error, 1007 invalid payload, 1008
//! policy, 1009 too big) and waits briefly for the client's answering
//! close, so clients see the reason and not a dropped connection (1006).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};

use super::admin::Refusal;
use super::{AppState, send};
use crate::codec::{self, ClientMessage, Encoding, ServerMessage};
use crate::hub::{Drained, Subscriber};

/// Small buffers: at tens of thousands of connections, tungstenite's 128 KiB
/// default read buffer alone would cost gigabytes.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 4 * 1024;
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Events written before a flush, so one slow wake does not hog the task.
const DRAIN_CHUNK: usize = 256;
/// How long a close frame the server sent waits for the client's answer.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The limits every WebSocket route shares. Messages (and frames) a client
/// sends are capped at `max_message` (a chat line or an echo request, not
/// a second event stream; without the frame cap tungstenite would buffer
/// 16 MiB frames). The write buffer has room for two of the largest events
/// or echoes: sized from the limits, so every event a plan may publish
/// passes over WebSocket as over long polling (with tungstenite's default
/// cap, events over ~132 KiB dropped every subscriber of their topic).
fn configure(ws: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let max_message = state.config.max_message;
    let largest = max_message.max(codec::MAX_PAYLOAD_BYTES + codec::MAX_ENVELOPE_BYTES);
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + 2 * largest)
        .max_message_size(max_message)
        .max_frame_size(max_message)
}

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> Response {
    configure(ws, &state).on_upgrade(move |socket| connection(socket, state))
}

pub async fn echo_upgrade(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> Response {
    configure(ws, &state).on_upgrade(move |socket| echo(socket, state))
}

type Tx = futures_util::stream::SplitSink<WebSocket, Message>;
type Rx = futures_util::stream::SplitStream<WebSocket>;

/// Sends a close frame, then reads (and discards) until the client answers
/// with its own or [`CLOSE_GRACE`] passes, so the close handshake completes
/// before the connection is dropped.
async fn close_with(tx: &mut Tx, rx: &mut Rx, code: u16, reason: &str) {
    if tx.send(close(code, reason)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = rx.next().await {}
    })
    .await;
}

/// The client closed: answer with the close frame tungstenite queued (the
/// client's code echoed) and end.
async fn answer_close(tx: &mut Tx, rx: &mut Rx) {
    let _ = tx.close().await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = rx.next().await {}
    })
    .await;
}

/// A read failed: a client that broke the protocol gets the close code
/// for what it did; a connection that merely broke gets nothing (there is
/// no one to send to).
async fn refuse_error(state: &AppState, tx: &mut Tx, rx: &mut Rx, error: axum::Error) {
    use tokio_tungstenite::tungstenite::Error as E;
    let error = error.into_inner();
    let Some(e) = error.downcast_ref::<E>() else {
        return;
    };
    let (code, why) = match e {
        // The peer dropped the connection: no one to answer, nothing refused.
        E::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => {
            return;
        }
        E::Protocol(p) => (close_code::PROTOCOL, p.to_string()),
        E::Utf8(_) => (
            close_code::INVALID,
            "invalid UTF-8 in a text message".into(),
        ),
        E::Capacity(c) => (close_code::SIZE, c.to_string()),
        _ => return,
    };
    state.gauges.refused(if code == close_code::SIZE {
        Refusal::MessageSize
    } else {
        Refusal::Protocol
    });
    close_with(tx, rx, code, &why).await;
}

/// `/echo`: every text or binary message goes back as it came, under the
/// same limits as `/ws`.
async fn echo(socket: WebSocket, state: Arc<AppState>) {
    let (mut tx, mut rx) = socket.split();
    loop {
        match rx.next().await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            // Pings are answered by the WebSocket layer; pongs need nothing.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) => return answer_close(&mut tx, &mut rx).await,
            Some(Err(e)) => return refuse_error(&state, &mut tx, &mut rx, e).await,
            None => return,
        }
    }
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

    // The first data message is the subscription; pings before it are fine.
    let deadline = tokio::time::Instant::now() + SUBSCRIBE_TIMEOUT;
    let first = loop {
        match tokio::time::timeout_at(deadline, rx.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => break other,
        }
    };
    let entries = match first {
        Ok(Some(Ok(Message::Text(text)))) => match ClientMessage::from_json(&text) {
            Ok(ClientMessage::Subscribe(map)) if map.len() > codec::MAX_TOPICS_PER_SUBSCRIPTION => {
                let why = format!(
                    "{} topics in one subscription: at most {}",
                    map.len(),
                    codec::MAX_TOPICS_PER_SUBSCRIPTION
                );
                return close_with(&mut tx, &mut rx, close_code::POLICY, &why).await;
            }
            Ok(ClientMessage::Subscribe(map)) if !map.is_empty() => {
                map.into_iter().collect::<Vec<_>>()
            }
            Ok(ClientMessage::Subscribe(_)) => {
                let why = "subscribe names no topic";
                return close_with(&mut tx, &mut rx, close_code::POLICY, why).await;
            }
            Ok(ClientMessage::Publish { .. }) => {
                let why = "subscribe before publishing";
                return close_with(&mut tx, &mut rx, close_code::POLICY, why).await;
            }
            Err(e) => {
                let why = format!("bad subscribe message: {e}");
                return close_with(&mut tx, &mut rx, close_code::INVALID, &why).await;
            }
        },
        Ok(Some(Ok(Message::Binary(_)))) => {
            let why = "send the subscribe message as text";
            return close_with(&mut tx, &mut rx, close_code::UNSUPPORTED, why).await;
        }
        Ok(Some(Ok(Message::Close(_)))) => return answer_close(&mut tx, &mut rx).await,
        Ok(Some(Err(e))) => return refuse_error(&state, &mut tx, &mut rx, e).await,
        Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) | Ok(None) => return,
        Err(_) => {
            let why = "no subscribe message within 10 s";
            return close_with(&mut tx, &mut rx, close_code::POLICY, why).await;
        }
    };
    let (mut sub, started) = match Subscriber::new(&state.hub, &entries) {
        Ok(ok) => ok,
        Err(e) => {
            if matches!(e, crate::hub::SubscribeError::TopicLimit(_)) {
                state.gauges.refused(Refusal::Topics);
            }
            return close_with(&mut tx, &mut rx, close_code::POLICY, &e.to_string()).await;
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
                Some(Ok(Message::Close(_))) => return answer_close(&mut tx, &mut rx).await,
                Some(Err(e)) => return refuse_error(&state, &mut tx, &mut rx, e).await,
                None => return,
                Some(Ok(Message::Text(text))) => {
                    let accepted = ClientMessage::from_json(&text)
                        .map_err(|e| send::Refused::Malformed(e.to_string()))
                        .and_then(|m| send::accept(&state, m));
                    if let Err(e) = accepted {
                        let code = match e {
                            send::Refused::Malformed(_) => close_code::INVALID,
                            _ => close_code::POLICY,
                        };
                        return close_with(&mut tx, &mut rx, code, &e.to_string()).await;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let why = "send client messages as text";
                    return close_with(&mut tx, &mut rx, close_code::UNSUPPORTED, why).await;
                }
            },
            _ = heartbeat.tick() => {
                if unanswered_pings >= 2 {
                    return close_with(&mut tx, &mut rx, close_code::AWAY, "no pong to two pings").await;
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
