//! Bad requests get a precise answer and do not disturb other clients.

use futures_util::{SinkExt, StreamExt};
use pushbench::codec::{self, Encoding, ServerMessage};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::util::start_server;

async fn get(
    addr: std::net::SocketAddr,
    path_and_query: &str,
) -> (u16, String, reqwest::header::HeaderMap) {
    let r = reqwest::get(format!("http://{addr}{path_and_query}"))
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

#[tokio::test]
async fn long_poll_rejects_bad_requests_with_400_and_a_reason() {
    let (addr, state) = start_server(Encoding::Json).await;
    for (query, expect) in [
        ("/lp", "missing subs"),
        ("/lp?subs=", "at least one topic"),
        ("/lp?subs=A:x", "whole number"),
        ("/lp?subs=A,A", "twice"),
        ("/lp?subs=bad%20name", "invalid topic"),
        ("/lp?subs=A:99", "ahead of its newest event"),
        ("/lp?subs=A&hold_ms=soon", "malformed query"),
    ] {
        let (status, body, _) = get(addr, query).await;
        assert_eq!(status, 400, "{query}");
        assert!(body.contains(expect), "{query}: {body}");
    }
    // Still serving: a subscribe poll answers at once with the head.
    state.hub.publish(&state.hub.topic("A"), 1, b"x");
    let (status, body, headers) = get(addr, "/lp?subs=A").await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    let mut msgs = Vec::new();
    codec::decode_batch(Encoding::Json, body.as_bytes(), &mut msgs).unwrap();
    assert_eq!(msgs, vec![ServerMessage::Subscribed(vec![("A".into(), 1)])]);
}

#[tokio::test]
async fn long_poll_answers_buffered_events_at_once_and_reports_overruns() {
    let (addr, state) = start_server(Encoding::Json).await;
    let topic = state.hub.topic("A");
    for i in 0..100 {
        state.hub.publish(&topic, i, b"x");
    }
    // The server buffers 64 per topic: events 1..=36 are gone.
    let (status, body, _) = get(addr, "/lp?subs=A:0&hold_ms=1").await;
    assert_eq!(status, 200);
    let mut msgs = Vec::new();
    codec::decode_batch(Encoding::Json, body.as_bytes(), &mut msgs).unwrap();
    assert_eq!(
        msgs[0],
        ServerMessage::Missed {
            topic: "A".into(),
            first: 1,
            last: 36
        }
    );
    assert_eq!(msgs.len(), 1 + 64);
    // Nothing new: the hold passes and the answer is empty.
    let (status, body, _) = get(addr, "/lp?subs=A:100&hold_ms=50").await;
    assert_eq!((status, body.as_str()), (200, "[]"));
}

async fn ws_close_code(addr: std::net::SocketAddr, first: Message) -> Option<CloseCode> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws.send(first).await.unwrap();
    while let Some(msg) = ws.next().await {
        if let Ok(Message::Close(frame)) = msg {
            return frame.map(|f| f.code);
        }
    }
    None
}

#[tokio::test]
async fn websocket_closes_bad_subscriptions_with_the_right_code() {
    let (addr, state) = start_server(Encoding::Binary).await;
    assert_eq!(
        ws_close_code(addr, Message::Text("{nope".into())).await,
        Some(CloseCode::Invalid)
    );
    assert_eq!(
        ws_close_code(addr, Message::Binary(vec![1, 2].into())).await,
        Some(CloseCode::Unsupported)
    );
    assert_eq!(
        ws_close_code(addr, Message::Text(r#"{"subscribe":{}}"#.into())).await,
        Some(CloseCode::Policy)
    );
    assert_eq!(
        ws_close_code(addr, Message::Text(r#"{"subscribe":{"A":7}}"#.into())).await,
        Some(CloseCode::Policy)
    );

    // Others are still served, and a resume replays what was buffered.
    let topic = state.hub.topic("A");
    for i in 0..3 {
        state.hub.publish(&topic, i, b"p");
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws.send(Message::Text(r#"{"subscribe":{"A":1}}"#.into()))
        .await
        .unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let Message::Binary(b) = ws.next().await.unwrap().unwrap() else {
            continue;
        };
        match codec::decode_single(Encoding::Binary, &b).unwrap() {
            ServerMessage::Subscribed(heads) => assert_eq!(heads, vec![("A".into(), 1)]),
            ServerMessage::Event(e) => seqs.push(e.seq),
            other => panic!("unexpected {other:?}"),
        }
        if seqs.len() == 2 {
            state.hub.publish(&topic, 9, b"p");
        }
    }
    assert_eq!(seqs, vec![2, 3, 4]);
}
