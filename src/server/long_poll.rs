//! Long-poll route: `GET /lp?subs=A:5,B:9&hold_ms=30000`.
//!
//! One outstanding poll per client. The cursor in `subs` is the client's
//! acknowledgement: the answer holds every buffered event after it (up to a
//! count and byte cap), at once if there are any, otherwise as soon as one
//! is published, otherwise an empty answer when the hold time passes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::codec::{self, BatchWriter, ServerMessage};
use crate::hub::{Drained, Subscriber};

#[derive(Deserialize)]
pub struct PollParams {
    subs: Option<String>,
    hold_ms: Option<u64>,
    max: Option<usize>,
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, "no-store")],
        message + "\n",
    )
        .into_response()
}

pub async fn poll(
    State(state): State<Arc<AppState>>,
    params: Result<Query<PollParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return bad_request(
            "malformed query: expected subs=TOPIC[:CURSOR],... and optional hold_ms, max".into(),
        );
    };
    let Some(subs) = params.subs else {
        return bad_request("missing subs=TOPIC[:CURSOR],...".into());
    };
    let entries = match codec::parse_cursor(&subs) {
        Ok(e) => e,
        Err(e) => return bad_request(e),
    };
    let config = &state.config;
    let hold = Duration::from_millis(params.hold_ms.unwrap_or(30_000)).min(config.max_hold);
    let max = params
        .max
        .unwrap_or(config.max_batch)
        .clamp(1, config.max_batch);
    let (mut sub, started) = match Subscriber::new(&state.hub, &entries) {
        Ok(ok) => ok,
        Err(e) => return super::refuse_subscription(&state, e),
    };
    let _gauge = state.gauges.poll();

    let encoding = state.hub.encoding();
    let mut batch = BatchWriter::new(encoding);
    if !started.is_empty() {
        let heads = started
            .iter()
            .map(|(t, h)| (t.as_ref().into(), *h))
            .collect();
        batch
            .push(&ServerMessage::Subscribed(heads))
            .expect("heads encode");
    }
    let deadline = tokio::time::Instant::now() + hold;
    loop {
        sub.drain(max, config.max_batch_bytes, &mut |d| match d {
            Drained::Event(e) => {
                batch.push_encoded(&e.bytes);
            }
            Drained::Missed { topic, first, last } => {
                let msg = ServerMessage::Missed {
                    topic: topic.into(),
                    first,
                    last,
                };
                batch.push(&msg).expect("notice encodes");
            }
        });
        if !batch.is_empty() {
            break;
        }
        tokio::select! {
            () = sub.changed() => {}
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    let mut response = batch.finish().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.batch_content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
