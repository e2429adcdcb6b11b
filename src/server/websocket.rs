//! WebSocket routes: `/ws` (subscribe with one text message, then the
//! server pushes each event as one frame; pings keep idle connections
//! honest) and `/echo` (every message sent back, for conformance testing).
//! Both run on pushbench's own codec ([`super::ws`]); an event's frame is
//! written from the bytes the hub encoded once for every subscriber.
//!
//! Every way a connection ends on the server's initiative sends a close
//! frame with its code (1002 protocol error, 1003 unsupported data, 1007
//! invalid payload, 1008 policy, 1009 too big), so clients see the reason
//! and not a dropped connection (1006). A refusal by policy waits briefly
//! for the client's answering close; after a broken frame the server ends
//! its side at once and only drains what the client still sends.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use bytes::{Bytes, BytesMut};

use super::admin::Refusal;
use super::ws::{ReadError, UpgradedWs, WsUpgrade};
use super::{AppState, send};
use crate::codec::frame::close::{AWAY, INVALID, POLICY, UNSUPPORTED};
use crate::codec::frame::{FrameError, OpCode};
use crate::codec::reader::{DataMessage, Read, close_code};
use crate::codec::{self, ClientMessage, Encoding, ServerMessage};
use crate::hub::{Drained, Subscriber};

const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Events written before a flush, so one slow wake does not hog the task.
const DRAIN_CHUNK: usize = 256;

/// Client messages (and frames) are capped at `max_message`: a chat line
/// or an echo request, not a second event stream. Events the server sends
/// have no cap here: every event a plan may publish passes over WebSocket
/// as over long polling.
pub async fn upgrade(ws: WsUpgrade, State(state): State<Arc<AppState>>) -> Response {
    let max_message = state.config.max_message;
    ws.on_upgrade(max_message, move |socket| connection(socket, state))
}

pub async fn echo_upgrade(ws: WsUpgrade, State(state): State<Arc<AppState>>) -> Response {
    let max_message = state.config.max_message;
    ws.on_upgrade(max_message, move |socket| echo(socket, state))
}

/// A read failed: a client that broke the protocol gets the close code
/// for what it did; a connection that merely broke gets nothing (there is
/// no one to send to).
async fn refuse_error(state: &AppState, ws: UpgradedWs, error: ReadError) {
    let ReadError::Broken(e) = error else {
        return;
    };
    state
        .gauges
        .refused(if matches!(e, FrameError::MessageTooLong(_)) {
            Refusal::MessageSize
        } else {
            Refusal::Protocol
        });
    ws.fail(close_code(&e), &e.to_string()).await;
}

/// `/echo`: every text or binary message goes back as it came, under the
/// same limits as `/ws`.
async fn echo(mut ws: UpgradedWs, state: Arc<AppState>) {
    loop {
        let answer = match ws.read().await {
            Ok(Read::Data(DataMessage::Text(text))) => ws.send(OpCode::Text, text.into()).await,
            Ok(Read::Data(DataMessage::Binary(data))) => ws.send(OpCode::Binary, data).await,
            // The pong is queued; pongs need nothing.
            Ok(Read::Ping(_)) => ws.flush().await,
            Ok(Read::Pong | Read::More(_)) => Ok(()),
            Ok(Read::Close(code)) => return ws.answer_close(code).await,
            Err(e) => return refuse_error(&state, ws, e).await,
        };
        if answer.is_err() {
            return;
        }
    }
}

async fn connection(mut ws: UpgradedWs, state: Arc<AppState>) {
    let _gauge = state.gauges.websocket();
    let encoding = state.hub.encoding();

    // The first data message is the subscription; pings before it are fine.
    let deadline = tokio::time::Instant::now() + SUBSCRIBE_TIMEOUT;
    let first = loop {
        match tokio::time::timeout_at(deadline, ws.read()).await {
            Ok(Ok(Read::Ping(_))) => {
                if ws.flush().await.is_err() {
                    return;
                }
            }
            Ok(Ok(Read::Pong)) => {}
            other => break other,
        }
    };
    let entries = match first {
        Ok(Ok(Read::Data(DataMessage::Text(text)))) => match ClientMessage::from_json(&text) {
            Ok(ClientMessage::Subscribe(map)) if map.len() > codec::MAX_TOPICS_PER_SUBSCRIPTION => {
                let why = format!(
                    "{} topics in one subscription: at most {}",
                    map.len(),
                    codec::MAX_TOPICS_PER_SUBSCRIPTION
                );
                return ws.close(POLICY, &why).await;
            }
            Ok(ClientMessage::Subscribe(map)) if !map.is_empty() => {
                map.into_iter().collect::<Vec<_>>()
            }
            Ok(ClientMessage::Subscribe(_)) => {
                return ws.close(POLICY, "subscribe names no topic").await;
            }
            Ok(ClientMessage::Publish { .. }) => {
                return ws.close(POLICY, "subscribe before publishing").await;
            }
            Err(e) => {
                let why = format!("bad subscribe message: {e}");
                return ws.close(INVALID, &why).await;
            }
        },
        Ok(Ok(Read::Data(DataMessage::Binary(_)))) => {
            return ws
                .close(UNSUPPORTED, "send the subscribe message as text")
                .await;
        }
        Ok(Ok(Read::Close(code))) => return ws.answer_close(code).await,
        Ok(Err(e)) => return refuse_error(&state, ws, e).await,
        Ok(Ok(Read::Ping(_) | Read::Pong | Read::More(_))) => return,
        Err(_) => {
            return ws.close(POLICY, "no subscribe message within 10 s").await;
        }
    };
    let (mut sub, started) = match Subscriber::new(&state.hub, &entries) {
        Ok(ok) => ok,
        Err(e) => {
            if matches!(e, crate::hub::SubscribeError::TopicLimit(_)) {
                state.gauges.refused(Refusal::Topics);
            }
            return ws.close(POLICY, &e.to_string()).await;
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
    let (kind, subscribed) = encode(encoding, &ServerMessage::Subscribed(heads));
    if ws.send(kind, subscribed).await.is_err() {
        return;
    }

    let mut heartbeat = tokio::time::interval(state.config.heartbeat);
    heartbeat.tick().await;
    let mut unanswered_pings = 0u32;
    let mut more = true;
    let event_kind = opcode(encoding);
    loop {
        if more {
            more = sub.drain(DRAIN_CHUNK, usize::MAX, &mut |d| match d {
                Drained::Event(e) => ws.queue(event_kind, &e.bytes),
                Drained::Missed { topic, first, last } => {
                    let notice = ServerMessage::Missed {
                        topic: topic.into(),
                        first,
                        last,
                    };
                    ws.queue(event_kind, &encode(encoding, &notice).1);
                }
            });
            if more {
                if ws.flush().await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
                continue;
            }
        }
        // Pongs, heartbeats and events are sent here, together.
        if ws.pending() && ws.flush().await.is_err() {
            return;
        }
        tokio::select! {
            () = sub.changed() => more = true,
            read = ws.read() => match read {
                Ok(Read::Pong) => unanswered_pings = 0,
                Ok(Read::Ping(_) | Read::More(_)) => {} // the pong is queued
                Ok(Read::Close(code)) => return ws.answer_close(code).await,
                Err(e) => return refuse_error(&state, ws, e).await,
                Ok(Read::Data(DataMessage::Text(text))) => {
                    let accepted = ClientMessage::from_json(&text)
                        .map_err(|e| send::Refused::Malformed(e.to_string()))
                        .and_then(|m| send::accept(&state, m));
                    if let Err(e) = accepted {
                        let code = match e {
                            send::Refused::Malformed(_) => INVALID,
                            _ => POLICY,
                        };
                        return ws.close(code, &e.to_string()).await;
                    }
                }
                Ok(Read::Data(DataMessage::Binary(_))) => {
                    return ws.close(UNSUPPORTED, "send client messages as text").await;
                }
            },
            _ = heartbeat.tick() => {
                if unanswered_pings >= 2 {
                    return ws.close(AWAY, "no pong to two pings").await;
                }
                unanswered_pings += 1;
                ws.queue(OpCode::Ping, &Bytes::new());
            }
        }
    }
}

/// A server message as a frame: text in JSON, binary in the binary encoding.
fn opcode(encoding: Encoding) -> OpCode {
    match encoding {
        Encoding::Json => OpCode::Text,
        Encoding::Binary => OpCode::Binary,
    }
}

fn encode(encoding: Encoding, msg: &ServerMessage<'_>) -> (OpCode, Bytes) {
    let mut buf = BytesMut::new();
    codec::encode(encoding, msg, &mut buf).expect("server messages encode");
    (opcode(encoding), buf.freeze())
}
