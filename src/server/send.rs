//! Client-to-server messages: `POST /send` for the HTTP transports, and the
//! same [`ClientMessage::Publish`] as a text frame over a WebSocket. Either
//! way the message is published into the hub like any other event, so its
//! delivery is tracked (exactly once, in order) and timed the same way.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::AppState;
use crate::codec::{self, ClientMessage};

/// Why a client message was refused; the text is sent back to the client.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("bad message: {0}")]
    Malformed(String),
    #[error("invalid topic name {0:?}: 1 to 64 of A-Z a-z 0-9 _ - .")]
    Topic(String),
    #[error("send a publish message here, not {0}")]
    Unexpected(&'static str),
    #[error(transparent)]
    TopicLimit(#[from] crate::hub::TopicLimit),
}

/// Publishes one client message. Returns the sequence number it got.
pub fn accept(state: &AppState, message: ClientMessage<'_>) -> Result<u64, Refused> {
    match message {
        ClientMessage::Publish {
            topic,
            intended_ns,
            payload,
        } => {
            if !codec::is_valid_topic(&topic) {
                return Err(Refused::Topic(topic.into_owned()));
            }
            let topic = state.hub.topic(&topic).inspect_err(|_| {
                state.gauges.refused(super::admin::Refusal::Topics);
            })?;
            let seq = state.hub.publish(&topic, intended_ns, payload.as_bytes());
            state.gauges.client_message();
            Ok(seq)
        }
        ClientMessage::Subscribe(_) => Err(Refused::Unexpected("a subscription")),
    }
}

/// Largest `POST /send` body: a client message, as on a WebSocket. Larger
/// ones get 413 before they are read in full.
pub const MAX_BODY: usize = 64 * 1024;

/// `POST /send` with a JSON [`ClientMessage::Publish`]: 204 once published,
/// 415 without `Content-Type: application/json` (a cross-site form cannot
/// send that without a CORS preflight, which this server never allows),
/// 400 with the reason otherwise.
pub async fn post(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::CACHE_CONTROL, "no-store")],
            "send a JSON publish message with Content-Type: application/json\n",
        )
            .into_response();
    }
    let text = match std::str::from_utf8(&body) {
        Ok(text) => text,
        Err(_) => return refused(Refused::Malformed("not UTF-8".into())),
    };
    // A batch (an array of publish messages, as a publisher sends the
    // events that came due together) is published in its order.
    if text.trim_start().starts_with('[') {
        let messages: Vec<ClientMessage<'_>> = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => return refused(Refused::Malformed(e.to_string())),
        };
        if let Some(bad) = messages.iter().find_map(|m| match m {
            ClientMessage::Publish { topic, .. } if !codec::is_valid_topic(topic) => {
                Some(Refused::Topic(topic.clone().into_owned()))
            }
            ClientMessage::Subscribe(_) => Some(Refused::Unexpected("a subscription")),
            _ => None,
        }) {
            return refused(bad);
        }
        let n = messages.len();
        for (i, m) in messages.into_iter().enumerate() {
            if let Err(e) = accept(&state, m) {
                let at_limit = matches!(e, Refused::TopicLimit(_));
                let mut answer = refused(Refused::Malformed(format!(
                    "published {i} of {n}, then: {e}"
                )));
                if at_limit {
                    *answer.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                }
                return answer;
            }
        }
        return StatusCode::NO_CONTENT.into_response();
    }
    match ClientMessage::from_json(text)
        .map_err(|e| Refused::Malformed(e.to_string()))
        .and_then(|m| accept(&state, m))
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(e),
    }
}

/// The answer to a refused message: 429 at the topic limit, 400 otherwise,
/// with the reason.
fn refused(e: Refused) -> Response {
    (
        match e {
            Refused::TopicLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        },
        [(header::CACHE_CONTROL, "no-store")],
        format!("{e}\n"),
    )
        .into_response()
}

/// A client has this long to send a request body once its headers are in:
/// unfinished bodies were held forever (200 of them held 362 MB).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request's body whole, within [`BODY_READ_TIMEOUT`] and `limit`
/// bytes (413 past it, 408 when too slow), before its handler runs.
pub async fn read_body_within(
    state: &AppState,
    req: axum::extract::Request,
    limit: usize,
) -> Result<axum::extract::Request, Response> {
    use super::admin::Refusal;
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(bytes),
        )),
        Ok(Err(_)) => {
            state.gauges.refused(Refusal::BodySize);
            Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a request body here is at most {limit} bytes\n"),
            )
                .into_response())
        }
        Err(_) => {
            state.gauges.refused(Refusal::BodyTimeout);
            Err((
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s\n",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
                .into_response())
        }
    }
}
