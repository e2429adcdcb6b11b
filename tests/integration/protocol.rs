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
    state.hub.publish(&state.hub.topic("A").unwrap(), 1, b"x");
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
    let topic = state.hub.topic("A").unwrap();
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
    let topic = state.hub.topic("A").unwrap();
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

#[tokio::test]
async fn websocket_carries_events_up_to_the_payload_limit_and_refuses_huge_subscriptions() {
    let (addr, state) = start_server(Encoding::Binary).await;
    let many: Vec<String> = (0..=codec::MAX_TOPICS_PER_SUBSCRIPTION)
        .map(|i| format!("\"T{i}\":null"))
        .collect();
    let subscribe = format!("{{\"subscribe\":{{{}}}}}", many.join(","));
    assert_eq!(
        ws_close_code(addr, Message::Text(subscribe.into())).await,
        Some(CloseCode::Policy)
    );

    // Events of the largest allowed payload, one after another: the
    // subscriber gets both and stays connected (tungstenite's default
    // write cap dropped every subscriber past ~132 KiB).
    let topic = state.hub.topic("BIG").unwrap();
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(codec::MAX_PAYLOAD_BYTES + codec::MAX_ENVELOPE_BYTES));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/ws"),
        Some(config),
        false,
    )
    .await
    .unwrap();
    ws.send(Message::Text(r#"{"subscribe":{"BIG":null}}"#.into()))
        .await
        .unwrap();
    let payload = vec![b'x'; codec::MAX_PAYLOAD_BYTES];
    let mut sizes = Vec::new();
    while sizes.len() < 2 {
        let Message::Binary(b) = ws.next().await.unwrap().unwrap() else {
            continue;
        };
        match codec::decode_single(Encoding::Binary, &b).unwrap() {
            ServerMessage::Subscribed(_) => {
                state.hub.publish(&topic, 1, &payload);
                state.hub.publish(&topic, 2, &payload);
            }
            ServerMessage::Event(e) => sizes.push(e.payload.len()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sizes, vec![codec::MAX_PAYLOAD_BYTES; 2]);
}

/// Reads an SSE stream until `blocks` blocks (heartbeats included) arrived.
async fn sse_blocks(mut response: reqwest::Response, blocks: usize) -> Vec<String> {
    let mut text = String::new();
    while text.matches("\n\n").count() < blocks {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), response.chunk())
            .await
            .expect("the stream goes quiet")
            .unwrap()
            .expect("the stream ended");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn sse_ids_name_only_their_event_and_last_event_id_resumes_every_topic_it_names() {
    let (addr, state) = start_server(Encoding::Json).await;
    let (a, b) = (state.hub.topic("A").unwrap(), state.hub.topic("B").unwrap());
    state.hub.publish(&a, 1, b"a1");
    let url = format!("http://{addr}/sse?subs=A,B");
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let publisher = {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            state.hub.publish(&b, 2, b"b1");
            state.hub.publish(&a, 3, b"a2");
        })
    };
    let blocks = sse_blocks(response, 3).await;
    publisher.await.unwrap();
    assert!(
        blocks[0].starts_with("id: A:1,B:0\nevent: subscribed\ndata: "),
        "{}",
        blocks[0]
    );
    // Each event's id is its own topic and sequence number: the same
    // bytes whatever the subscription's size.
    assert!(blocks[1].starts_with("id: B:1\ndata: "), "{}", blocks[1]);
    assert!(blocks[2].starts_with("id: A:2\ndata: "), "{}", blocks[2]);
    let data = blocks[2].split_once("data: ").unwrap().1;
    let ServerMessage::Event(e) = codec::decode_json(data.as_bytes()).unwrap() else {
        panic!("not an event: {data}")
    };
    assert_eq!(
        (e.topic.as_ref(), e.seq, e.payload.as_ref()),
        ("A", 2, &b"a2"[..])
    );

    // Reconnect with the whole cursor A:1,B:0 (what pushbench's client
    // sends): both topics resume where it says.
    let (subscribed, ids) = sse_resume(&url, "A:1,B:0").await;
    assert!(
        subscribed.starts_with("id: A:1,B:0\nevent: subscribed"),
        "{subscribed}"
    );
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"id: B:1".to_owned()), "{ids:?}");
    assert!(ids.contains(&"id: A:2".to_owned()), "{ids:?}");

    // An EventSource sends back the last id it saw: that topic resumes
    // after it; the others resume from the query's cursors (here B from 0).
    let (subscribed, ids) = sse_resume(&format!("http://{addr}/sse?subs=A,B:0"), "A:1").await;
    assert!(
        subscribed.starts_with("id: A:1,B:0\nevent: subscribed"),
        "{subscribed}"
    );
    assert!(
        ids.contains(&"id: A:2".to_owned()) && ids.contains(&"id: B:1".to_owned()),
        "{ids:?}"
    );
}

/// Reconnects an SSE stream with `Last-Event-ID`: the subscription's answer
/// and the id lines of the next two events.
async fn sse_resume(url: &str, last_event_id: &str) -> (String, Vec<String>) {
    let resumed = reqwest::Client::new()
        .get(url)
        .header("last-event-id", last_event_id)
        .send()
        .await
        .unwrap();
    let mut blocks = sse_blocks(resumed, 3).await;
    let subscribed = blocks.remove(0);
    let ids = blocks
        .iter()
        .map(|b| b.lines().next().unwrap().to_owned())
        .collect();
    (subscribed, ids)
}

#[tokio::test]
async fn sse_sends_heartbeats_and_rejects_bad_requests() {
    let (addr, _state) = start_server(Encoding::Json).await;
    // The test server's heartbeat is the default (15 s); one comes sooner
    // from a server started with a short one.
    for (query, header, expect) in [
        ("/sse", None, "missing subs"),
        ("/sse?subs=bad%20name", None, "invalid topic"),
        ("/sse?subs=A", Some("A:x"), "bad Last-Event-ID"),
        ("/sse?subs=A", Some("A:5"), "ahead of its newest event"),
    ] {
        let mut request = reqwest::Client::new().get(format!("http://{addr}{query}"));
        if let Some(h) = header {
            request = request.header("last-event-id", h);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 400, "{query} {header:?}");
        let body = r.text().await.unwrap();
        assert!(body.contains(expect), "{query}: {body}");
    }
    let (binary_addr, _) = start_server(Encoding::Binary).await;
    let r = reqwest::get(format!("http://{binary_addr}/sse?subs=A"))
        .await
        .unwrap();
    assert_eq!(r.status(), 501);

    let listener = pushbench::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let state = pushbench::server::AppState::new(pushbench::server::ServerConfig {
        heartbeat: std::time::Duration::from_millis(50),
        ..Default::default()
    });
    tokio::spawn(pushbench::server::serve(
        listener,
        state,
        None,
        std::future::pending(),
    ));
    let r = reqwest::get(format!("http://{addr}/sse?subs=A"))
        .await
        .unwrap();
    let blocks = sse_blocks(r, 2).await;
    assert_eq!(blocks[1], ": heartbeat");
}

#[tokio::test]
async fn send_publishes_client_messages_and_rejects_bad_ones() {
    let (addr, state) = start_server(Encoding::Json).await;
    let client = reqwest::Client::new();
    let post = |body: &'static str| {
        client
            .post(format!("http://{addr}/send"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post(r#"{"publish":{"topic":"room.1","intended_ns":7,"payload":"hi"}}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(state.hub.heads()["room.1"], 1);
    for (body, expect) in [
        ("not json", "bad message"),
        (
            r#"{"publish":{"topic":"bad name","intended_ns":7,"payload":""}}"#,
            "invalid topic",
        ),
        (r#"{"subscribe":{"A":null}}"#, "send a publish message here"),
    ] {
        let r = post(body).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(expect), "{body}: {text}");
    }
    // A cross-site form (text/plain) is refused; so is an oversized body.
    let r = client
        .post(format!("http://{addr}/send"))
        .header("content-type", "text/plain")
        .body(r#"{"publish":{"topic":"room.1","intended_ns":7,"payload":"hi"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let big = format!(
        r#"{{"publish":{{"topic":"room.1","intended_ns":7,"payload":"{}"}}}}"#,
        "x".repeat(pushbench::server::send::MAX_BODY)
    );
    let r = client
        .post(format!("http://{addr}/send"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(state.hub.published(), 1, "nothing else was published");
}

#[tokio::test]
async fn hostile_plans_and_subscriptions_are_refused_and_the_server_keeps_serving() {
    let (addr, state) = start_server(Encoding::Json).await;
    let client = reqwest::Client::new();
    let plan = |payload: u64, rate: f64, duration: u64| {
        serde_json::json!({
            "topics": ["A"], "rate": rate, "arrival": "constant",
            "payload_bytes": payload, "seed": 1,
            "start_ns": pushbench::clock::now_ns(), "duration_ns": duration,
        })
    };
    for (body, expect) in [
        (
            plan(1_000_000_000_000, 10.0, 1_000_000_000),
            "payload_bytes",
        ),
        (plan(1 << 63, 10.0, 1_000_000_000), "payload_bytes"),
        (plan(10, 1e12, 1_000_000_000), "rate"),
        (plan(10, 10.0, u64::MAX), "duration_ns"),
    ] {
        let r = client
            .post(format!("http://{addr}/_pushbench/publish"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.text().await.unwrap().contains(expect), "{body}");
    }
    // The publisher is still free: a sane plan is taken (202), not 409.
    // The same plan again (a retry whose answer was lost) is answered as
    // accepted and starts nothing; another plan meanwhile is a conflict.
    let sane = plan(16, 100.0, 500_000_000);
    for (body, status) in [
        (&sane, 202),
        (&sane, 202),
        (&plan(16, 100.0, 500_000_000), 409),
    ] {
        let r = client
            .post(format!("http://{addr}/_pushbench/publish"))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
    }

    // A 100,000-topic subscription, in the query and in Last-Event-ID, is
    // refused at once; a good subscriber is answered meanwhile.
    let huge: Vec<String> = (0..100_000).map(|i| format!("T{i}:{i}")).collect();
    let huge = huge.join(",");
    let r = client
        .get(format!("http://{addr}/sse?subs=A"))
        .header("last-event-id", huge.as_str())
        .send()
        .await
        .unwrap();
    // Past the header size limit (431) or past the topic limit (400).
    assert!(r.status() == 400 || r.status() == 431, "{}", r.status());
    let over: Vec<String> = (0..=codec::MAX_TOPICS_PER_SUBSCRIPTION)
        .map(|i| format!("T{i}:1"))
        .collect();
    let r = client
        .get(format!("http://{addr}/sse?subs=A"))
        .header("last-event-id", over.join(","))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("at most 256"));
    let r = client
        .get(format!(
            "http://{addr}/lp?subs={}",
            &huge[..huge.len().min(60_000)]
        ))
        .send()
        .await
        .unwrap();
    assert!(
        r.status() == 400 || r.status() == 414 || r.status() == 431,
        "{}",
        r.status()
    );
    let r = client
        .get(format!("http://{addr}/lp?subs=A:0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // One publisher ran: 100 events/s for 0.5 s is 50 events, not 100.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stats: pushbench::server::ServerStats = client
            .get(format!("http://{addr}/_pushbench/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats.publisher == pushbench::server::PublisherState::Done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the publisher never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state.hub.heads()["A"], 50);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, state) = start_server(Encoding::Json).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /lp?subs=A HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // Meanwhile a good client is served at once.
    state.hub.publish(&state.hub.topic("A").unwrap(), 1, b"x");
    let r = reqwest::get(format!("http://{addr}/lp?subs=A"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The slow one gets the connection closed (after a 408, or without an
    // answer) once the header timeout passes, not before.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        pushbench::server::HEADER_READ_TIMEOUT * 3,
        slow.read_to_end(&mut rest),
    )
    .await;
    assert!(read.is_ok(), "still open after three header timeouts");
    let waited = started.elapsed();
    assert!(
        waited >= pushbench::server::HEADER_READ_TIMEOUT - std::time::Duration::from_millis(100),
        "closed after {waited:?}"
    );
}
