//! Server-sent events route: `GET /sse?subs=A,B` answers with a
//! `text/event-stream` that stays open.
//!
//! The first block answers the subscription (`event: subscribed`, its id
//! the stream's whole cursor, `A:5,B:9`); each event follows as one block
//! whose data is the JSON event and whose `id:` is that event's own
//! `TOPIC:SEQ`. Only what changed, so an event costs the same bytes
//! whatever the subscription's size (ids listing every topic made one
//! 130-byte event 90 KB on 13k topics). `Last-Event-ID` resumes the topics
//! it names; the others resume from the query's cursors, so a client that
//! follows several topics and must miss nothing reconnects with its own
//! cursor in the query or in `Last-Event-ID` (as pushbench's client does).
//! Heartbeat comments keep idle streams alive through proxies and let both
//! ends notice a dead connection.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use super::AppState;
use crate::codec::{self, Encoding, ServerMessage, sse};
use crate::hub::{Drained, Subscriber};

/// Events written per chunk, so one busy stream does not hog its task.
const DRAIN_CHUNK: usize = 256;

#[derive(Deserialize)]
pub struct StreamParams {
    subs: Option<String>,
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, "no-store")],
        message + "\n",
    )
        .into_response()
}

pub async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if state.hub.encoding() != Encoding::Json {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "server-sent events carry text: start the server with --encoding json\n",
        )
            .into_response();
    }
    let Ok(Query(params)) = params else {
        return bad_request("malformed query: expected subs=TOPIC,...".into());
    };
    let Some(subs) = params.subs else {
        return bad_request("missing subs=TOPIC,...".into());
    };
    let mut entries = match codec::parse_cursor(&subs) {
        Ok(e) => e,
        Err(e) => return bad_request(e),
    };
    // Last-Event-ID overrides the query's cursors topic by topic; topics it
    // names that the query does not are ignored (the query is the subscription).
    if let Some(last) = headers.get("last-event-id") {
        let resume = match last.to_str().map_err(|e| e.to_string()).and_then(|s| {
            if s.is_empty() {
                Ok(Vec::new())
            } else {
                codec::parse_cursor(s)
            }
        }) {
            Ok(r) => r,
            Err(e) => return bad_request(format!("bad Last-Event-ID: {e}")),
        };
        // By name, not a scan per topic: linear in both lists.
        let resume: std::collections::HashMap<&str, Option<u64>> = resume.into_iter().collect();
        for entry in &mut entries {
            if let Some(cursor) = resume.get(entry.0) {
                entry.1 = cursor.or(entry.1);
            }
        }
    }
    let (sub, _started) = match Subscriber::new(&state.hub, &entries) {
        Ok(ok) => ok,
        Err(e) => return super::refuse_subscription(&state, e),
    };
    let mut first = BytesMut::new();
    let heads = sub.cursors().map(|(t, c)| (t.into(), c)).collect();
    let mut json = BytesMut::new();
    codec::encode(Encoding::Json, &ServerMessage::Subscribed(heads), &mut json)
        .expect("heads encode");
    let id = cursor_id(&sub);
    sse::encode_event(
        Some(&id),
        Some("subscribed"),
        std::str::from_utf8(&json).expect("JSON is UTF-8"),
        &mut first,
    )
    .expect("cursor ids have no line breaks");

    let stream = EventStream {
        sub,
        first: Some(first.freeze()),
        more: true,
        heartbeat: state.config.heartbeat,
        _gauge: state.gauges.sse(),
    };
    let stream = futures_util::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next_chunk().await;
        Some((Ok::<Bytes, std::io::Error>(chunk), stream))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
        .body(Body::from_stream(stream))
        .expect("static headers are valid")
}

/// One open stream: its subscriber and what it still has to send.
struct EventStream {
    sub: Subscriber,
    /// The answer to the subscription, sent first.
    first: Option<Bytes>,
    /// The last drain stopped at its cap with events left.
    more: bool,
    heartbeat: std::time::Duration,
    _gauge: super::admin::GaugeGuard,
}

impl EventStream {
    /// The next bytes to write: the subscription's answer, a run of event
    /// blocks, or a heartbeat comment after `heartbeat` of silence.
    async fn next_chunk(&mut self) -> Bytes {
        if let Some(first) = self.first.take() {
            return first;
        }
        loop {
            if !self.more {
                tokio::select! {
                    () = self.sub.changed() => {}
                    () = tokio::time::sleep(self.heartbeat) => {
                        let mut out = BytesMut::new();
                        sse::encode_comment("heartbeat", &mut out);
                        return out.freeze();
                    }
                }
            }
            let out = drain_blocks(&mut self.sub, &mut self.more);
            if !out.is_empty() {
                return out.freeze();
            }
        }
    }
}

/// Every event after the cursors (up to a chunk), one block each, with the
/// event's own `TOPIC:SEQ` as its id.
fn drain_blocks(sub: &mut Subscriber, more: &mut bool) -> BytesMut {
    let mut out = BytesMut::new();
    let mut id = String::new();
    let mut block = |topic: &str, seq: u64, data: &[u8], out: &mut BytesMut| {
        id.clear();
        codec::format_cursor(std::iter::once((topic, Some(seq))), &mut id);
        let data = std::str::from_utf8(data).expect("JSON is UTF-8");
        sse::encode_event(Some(&id), None, data, out).expect("cursor ids have no line breaks");
    };
    *more = sub.drain(DRAIN_CHUNK, usize::MAX, &mut |d| match d {
        Drained::Event(e) => block(&e.topic, e.seq, &e.bytes, &mut out),
        Drained::Missed { topic, first, last } => {
            let mut buf = BytesMut::new();
            let notice = ServerMessage::Missed {
                topic: topic.into(),
                first,
                last,
            };
            codec::encode(Encoding::Json, &notice, &mut buf).expect("notice encodes");
            block(topic, last, &buf, &mut out);
        }
    });
    out
}

fn cursor_id(sub: &Subscriber) -> String {
    let mut id = String::new();
    codec::format_cursor(sub.cursors().map(|(t, c)| (t, Some(c))), &mut id);
    id
}
