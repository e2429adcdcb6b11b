//! Hostile clients against a real `pushbench serve` process, scaled down:
//! each attack gets its refusal (status or close code) while a
//! well-behaved WebSocket subscriber keeps receiving every event on time,
//! and the server's memory stays bounded.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use pushbench::codec::frame::{self, OpCode};
use pushbench::codec::{self, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "hostile-test-token";

/// A `pushbench serve` process with small limits, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushbench"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("PUSHBENCH_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let addr = loop {
            let line = lines.next().expect("server exited before ready").unwrap();
            if let Some(url) = line.strip_prefix(pushbench::server_process::READY_PREFIX) {
                break url.trim().trim_start_matches("http://").parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Resident memory, from /proc.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib * 1024
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Publishes one client message through `POST /send` (must be 204).
    async fn send(&self, client: &reqwest::Client, topic: &str, intended_ns: u64, payload: &str) {
        let body = format!(
            r#"{{"publish":{{"topic":"{topic}","intended_ns":{intended_ns},"payload":"{payload}"}}}}"#
        );
        let r = client
            .post(self.url("/send"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{topic}");
    }

    async fn stats(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(self.url("/_pushbench/stats"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// What the good subscriber saw: events, sequence gaps, and the longest
/// delay between an event's intended publish time and its arrival.
#[derive(Default)]
struct Good {
    events: AtomicU64,
    lost: AtomicU64,
    worst_delay_ns: AtomicU64,
}

/// Subscribes to GOOD over WebSocket and checks every event it gets.
async fn good_subscriber(addr: SocketAddr, seen: Arc<Good>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws.send(Message::text(r#"{"subscribe":{"GOOD":null}}"#))
        .await
        .unwrap();
    let mut last = None;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        match codec::decode_json(text.as_bytes()).unwrap() {
            ServerMessage::Subscribed(heads) => last = Some(heads[0].1),
            ServerMessage::Event(e) => {
                let delay = pushbench::clock::now_ns().saturating_sub(e.intended_ns);
                seen.worst_delay_ns.fetch_max(delay, Ordering::Relaxed);
                seen.events.fetch_add(1, Ordering::Relaxed);
                if let Some(l) = last {
                    seen.lost.fetch_add(e.seq - l - 1, Ordering::Relaxed);
                }
                last = Some(e.seq);
            }
            other => panic!("good subscriber got {other:?}"),
        }
    }
}

/// The server's answer to a raw HTTP/1.1 request: status and body.
async fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// A WebSocket opened by hand, so frames no library would send can be sent.
async fn raw_websocket(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Sends `frames` (already encoded) and returns the close code the server
/// answers with, or None when it only dropped the connection.
async fn close_code_for(addr: SocketAddr, path: &str, frames: &[u8]) -> Option<u16> {
    let mut tcp = raw_websocket(addr, path).await;
    // The server may close before it has read everything (a frame too big).
    let _ = tcp.write_all(frames).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Some((f, _))) = frame::decode_frame(&buf)
                && f.header.opcode == OpCode::Close
            {
                return frame::decode_close(f.payload)
                    .ok()
                    .flatten()
                    .map(|(c, _)| c);
            }
            // Skip a whole non-close frame (an echo).
            if let Ok(Some((_, used))) = frame::decode_frame(&buf) {
                buf.drain(..used);
                continue;
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    read.unwrap_or(None)
}

fn masked(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let key = [1, 2, 3, 4];
    frame::FrameHeader {
        fin,
        rsv,
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    }
    .encode(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    frame::apply_mask(&mut out[start..], key, 0);
    out.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_refused_while_a_good_subscriber_misses_nothing() {
    let mut server = Server::start(&[
        "--max-topics",
        "200",
        "--max-connections",
        "40",
        "--write-timeout",
        "1s",
        "--buffer-bytes-per-topic",
        "1048576",
        "--buffer-bytes",
        "8388608",
    ]);
    let addr = server.addr;
    let client = reqwest::Client::new();
    let seen = Arc::new(Good::default());
    let good = tokio::spawn(good_subscriber(addr, seen.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 200 events a second to GOOD for the whole test.
    let plan = |topic: &str, rate: f64, payload: u64| {
        serde_json::json!({
            "topics": [topic], "rate": rate, "arrival": "constant",
            "payload_bytes": payload, "seed": 1,
            "start_ns": pushbench::clock::now_ns(), "duration_ns": 60_000_000_000u64,
        })
    };
    let r = client
        .post(server.url("/_pushbench/publish"))
        .bearer_auth(TOKEN)
        .json(&plan("GOOD", 200.0, 32))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let rss_before = server.rss_bytes();

    // Control routes without the token: 401.
    let r = client
        .get(server.url("/_pushbench/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(server.url("/_pushbench/publish"))
        .json(&plan("X", 1.0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A page that rebound its name to 127.0.0.1: 403.
    let (status, _) = raw_http(
        addr,
        b"GET /lp?subs=GOOD&hold_ms=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 403);

    // Topics past the server's cap (200; GOOD and BULK are two of them):
    // 429, and WebSocket close 1008.
    let r = client
        .get(server.url("/lp?subs=BULK&hold_ms=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut answered = std::collections::BTreeMap::new();
    for i in 0..300 {
        let r = client
            .get(server.url(&format!("/lp?subs=T{i}&hold_ms=1")))
            .send()
            .await
            .unwrap();
        *answered.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(answered, [(200, 198), (429, 102)].into());
    let ws_code = close_code_for(
        addr,
        "/ws",
        &masked(true, 0, OpCode::Text, br#"{"subscribe":{"NEWONE":null}}"#),
    )
    .await;
    assert_eq!(ws_code, Some(1008));

    // Request bodies that never finish: 408 after the body timeout, and
    // their memory is not kept. Thirty of them at once.
    let mut slow_bodies = Vec::new();
    for _ in 0..30 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"POST /send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{\"publish\":",
        )
        .await
        .unwrap();
        slow_bodies.push(tcp);
    }

    // Past the connection cap (40, the slow bodies and the subscriber
    // hold 31): new connections get 503 at once, not a hang.
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut head = [0u8; 12];
        match tokio::time::timeout(Duration::from_millis(300), tcp.read_exact(&mut head)).await {
            Ok(Ok(_)) if &head == b"HTTP/1.1 503" => refused += 1,
            _ => idle.push(tcp),
        }
    }
    assert!(refused >= 10, "only {refused} of 20 refused");
    drop(idle);

    // Body timeout: every slow body is answered 408.
    for mut tcp in slow_bodies {
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            pushbench::server::send::BODY_READ_TIMEOUT * 2,
            tcp.read_to_end(&mut answer),
        )
        .await;
        assert!(
            answer.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }

    // A slow consumer: subscribes to a stream of 60 KB events (sent by
    // another client) and never reads. Its writes stall and it is closed
    // after the write timeout.
    let mut stalled = raw_websocket(addr, "/ws").await;
    stalled
        .write_all(&masked(
            true,
            0,
            OpCode::Text,
            br#"{"subscribe":{"BULK":null}}"#,
        ))
        .await
        .unwrap();
    let payload = "x".repeat(60_000);
    for i in 0..400u64 {
        server.send(&client, "BULK", i, &payload).await;
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let stats = server.stats().await;
    assert!(
        stats["refusals"]["slow_consumer"].as_u64().unwrap() >= 1,
        "{stats}"
    );

    // Large events spread over a hundred topics: each topic's own budget
    // would keep them all (6 MB); the server-wide budget (8 MiB, with
    // BULK's 1 MiB) keeps the newest only.
    for i in 0..200u64 {
        server
            .send(&client, &format!("T{}", i % 100), i, &payload)
            .await;
    }
    // T0's first event (sent first) has left; its second is still there.
    let body = client
        .get(server.url("/lp?subs=T0:0&hold_ms=1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut answer = Vec::new();
    codec::decode_batch(codec::Encoding::Json, &body, &mut answer).unwrap();
    assert!(
        matches!(
            answer.first(),
            Some(ServerMessage::Missed {
                first: 1,
                last: 1,
                ..
            })
        ),
        "{answer:?}"
    );
    assert!(
        matches!(answer.get(1), Some(ServerMessage::Event(e)) if e.seq == 2),
        "{answer:?}"
    );
    drop(stalled);

    // WebSocket protocol errors get their close codes.
    let bad_utf8 = masked(true, 0, OpCode::Text, &[0xff, 0xfe]);
    assert_eq!(close_code_for(addr, "/echo", &bad_utf8).await, Some(1007));
    let reserved_bits = masked(true, 0b100, OpCode::Text, b"hi");
    assert_eq!(
        close_code_for(addr, "/echo", &reserved_bits).await,
        Some(1002)
    );
    let too_big = masked(true, 0, OpCode::Binary, &vec![0u8; 70_000]);
    assert_eq!(close_code_for(addr, "/echo", &too_big).await, Some(1009));
    let mut normal = BytesMut::new();
    frame::encode_close(Some((1000, "bye")), &mut normal);
    let normal = masked(true, 0, OpCode::Close, &normal);
    assert_eq!(close_code_for(addr, "/ws", &normal).await, Some(1000));
    assert_eq!(close_code_for(addr, "/echo", &normal).await, Some(1000));

    // The good subscriber: still connected, nothing lost, never held up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.alive(), "the server died");
    assert!(!good.is_finished(), "the good subscriber was disconnected");
    let events = seen.events.load(Ordering::Relaxed);
    let worst_ms = seen.worst_delay_ns.load(Ordering::Relaxed) as f64 / 1e6;
    eprintln!("good subscriber: {events} events, worst delay {worst_ms:.1} ms");
    assert!(events >= 1000, "only {events} events");
    assert_eq!(seen.lost.load(Ordering::Relaxed), 0);
    // No attack may freeze the server: a blocking one held every client
    // for seconds. The bound is wide for a slow, busy machine.
    assert!(worst_ms < 500.0, "an event waited {worst_ms:.1} ms");
    // Memory: the 30 unfinished bodies and 400 large events (kept only up
    // to the 1 MiB per-topic budget) leave the server within bounds.
    let rss_after = server.rss_bytes();
    eprintln!(
        "server RSS {:.1} MiB before the attacks, {:.1} MiB after",
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0
    );
    assert!(
        rss_after < rss_before + (64 << 20),
        "RSS grew {} → {}",
        rss_before,
        rss_after
    );
    let stats = server.stats().await;
    for (reason, at_least) in [
        ("token", 2),
        ("host", 1),
        ("topic_limit", 100),
        ("connection_limit", 10),
        ("body_timeout", 30),
        ("slow_consumer", 1),
        ("websocket_protocol", 2),
        ("message_size", 1),
    ] {
        let n = stats["refusals"][reason].as_u64().unwrap();
        assert!(
            n >= at_least,
            "{reason}: {n} (expected at least {at_least})"
        );
    }
}

/// Requests to every server-side parser (queries, `Last-Event-ID`, `/send`
/// bodies, plans) with arbitrary contents: each is answered, and never
/// with a server error.
mod arbitrary_input {
    use axum::body::Body;
    use axum::http::Request;
    use proptest::prelude::*;
    use tower::ServiceExt;

    fn answer(app: &axum::Router, request: Request<Body>) -> Option<u16> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // A well-formed long poll holds: no answer within the second
            // is a valid outcome, not a failure.
            tokio::time::timeout(
                std::time::Duration::from_secs(1),
                app.clone().oneshot(request),
            )
            .await
            .ok()
            .map(|r| r.unwrap().status().as_u16())
        })
    }

    fn app() -> axum::Router {
        let state = pushbench::server::AppState::new(pushbench::server::ServerConfig::default());
        pushbench::hub::Hub::topic(&state.hub, "A").unwrap();
        pushbench::server::app(state)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn queries_and_last_event_ids(
            route in prop_oneof![Just("/lp"), Just("/sse")],
            query in "(subs=)?[A-Za-z0-9:,._%&=+-]{0,120}",
            last_id in proptest::option::of("[ -~]{0,120}"),
        ) {
            let mut request = Request::get(format!("{route}?{query}")).header("host", "127.0.0.1");
            if let Some(id) = &last_id {
                request = request.header("last-event-id", id.as_str());
            }
            let Ok(request) = request.body(Body::empty()) else { return Ok(()) };
            if let Some(status) = answer(&app(), request) {
                prop_assert!(status < 500, "{route}?{query} ({last_id:?}): {status}");
            }
        }

        #[test]
        fn bodies(
            route in prop_oneof![Just("/send"), Just("/_pushbench/publish")],
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                "\\{\"publish\":\\{\"topic\":\"[A-Za-z0-9]{0,4}\",\"intended_ns\":[0-9-]{0,5},\"payload\":\"[ -~]{0,20}\"\\}\\}"
                    .prop_map(String::into_bytes),
                // Plans a few milliseconds long: a valid one runs its publisher
                // in this process.
                "\\{\"topics\":\\[\"A\"\\],\"rate\":-?[0-9.e]{0,4},\"arrival\":\"constant\",\"payload_bytes\":[0-9]{0,4},\"seed\":1,\"start_ns\":0,\"duration_ns\":[0-9]{0,7}\\}"
                    .prop_map(String::into_bytes),
            ],
        ) {
            let request = Request::post(route)
                .header("host", "127.0.0.1")
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap();
            if let Some(status) = answer(&app(), request) {
                prop_assert!(status < 500, "{route} {:?}: {status}", String::from_utf8_lossy(&body));
            }
        }
    }
}
