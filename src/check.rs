//! `pushbench check URL`: does a server keep docs/protocol.md? For people
//! implementing the protocol: one line per check (pass, FAIL or skipped,
//! with the reason), each on topics of its own so checks cannot disturb
//! each other or the server's other users.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::client::{Alpn, Dial, SocketCounters, Target};
use crate::codec::{self, Encoding, ServerMessage};
use crate::target::Resolved;

/// How one check ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skipped(String),
}

/// One check's line.
pub struct Line {
    pub name: &'static str,
    pub what: &'static str,
    pub outcome: Outcome,
}

/// An event as the checks read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    topic: String,
    seq: u64,
    intended_ns: u64,
}

/// A decoded answer, owned.
#[derive(Debug, Default)]
struct Batch {
    heads: Vec<(String, u64)>,
    events: Vec<Ev>,
    missed: Vec<(String, u64, u64)>,
}

fn own(messages: Vec<ServerMessage<'_>>) -> Batch {
    let mut b = Batch::default();
    for m in messages {
        match m {
            ServerMessage::Event(e) => b.events.push(Ev {
                topic: e.topic.into_owned(),
                seq: e.seq,
                intended_ns: e.intended_ns,
            }),
            ServerMessage::Subscribed(h) => b
                .heads
                .extend(h.into_iter().map(|(t, s)| (t.into_owned(), s))),
            ServerMessage::Missed { topic, first, last } => {
                b.missed.push((topic.into_owned(), first, last))
            }
        }
    }
    b
}

type Check = Result<Outcome, String>;

struct Checker {
    base: String,
    http: reqwest::Client,
    target: Target,
    encoding: Encoding,
    /// Prefix of this run's topics: `check.<random>.`
    prefix: String,
    heartbeat_wait: Option<Duration>,
}

/// Runs every check against `base` (`http://HOST:PORT`). The lines, in order.
pub async fn run(
    base: &str,
    resolved: &Resolved,
    heartbeat_wait: Option<Duration>,
) -> anyhow::Result<Vec<Line>> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .http1_only();
    if let Some(pem) = &resolved.ca_pem {
        let config = crate::tls::client_config(pem, crate::tls::ALPN_HTTP1)?;
        builder = builder.use_preconfigured_tls(Arc::unwrap_or_clone(config));
    }
    let http = builder.build()?;
    let salt: u32 = rand::random();
    let mut c = Checker {
        base: base.to_owned(),
        http,
        target: Target {
            addr: resolved.addr,
            encoding: Encoding::Json,
            hold: Duration::from_secs(1),
            max_batch: 1,
            poll_interval: Duration::from_secs(1),
            clients_per_connection: 1,
            tls: crate::target::tls_target(resolved)?,
        },
        encoding: Encoding::Json,
        prefix: format!("check.{salt:08x}."),
        heartbeat_wait,
    };
    // The encoding, from the answer to a subscription.
    let r = c
        .http
        .get(format!("{}/lp?subs={}&hold_ms=0", c.base, c.topic("probe")))
        .send()
        .await
        .with_context(|| format!("{base} does not answer"))?;
    if r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"))
    {
        c.encoding = Encoding::Binary;
    }
    let mut lines = Vec::new();
    macro_rules! check {
        ($name:literal, $what:literal, $f:expr) => {
            let outcome = match tokio::time::timeout(Duration::from_secs(30), $f).await {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => Outcome::Fail(e),
                Err(_) => Outcome::Fail("no answer within 30 s".into()),
            };
            lines.push(Line {
                name: $name,
                what: $what,
                outcome,
            });
        };
    }
    check!(
        "send.single",
        "POST /send publishes one message (204)",
        c.send_single()
    );
    check!(
        "send.batch",
        "POST /send publishes an array in order, consecutive sequence numbers",
        c.send_batch()
    );
    check!(
        "send.malformed",
        "POST /send refuses malformed JSON (400)",
        c.send_status("{", "application/json", 400)
    );
    check!(
        "send.content_type",
        "POST /send refuses a body without Content-Type: application/json (415)",
        c.send_status(
            r#"{"publish":{"topic":"x","intended_ns":1,"payload":""}}"#,
            "text/plain",
            415
        )
    );
    check!(
        "lp.subscribe",
        "a poll without a cursor answers at once with the head",
        c.lp_subscribe()
    );
    check!(
        "lp.order",
        "a poll returns every event after the cursor, in order, intended time kept",
        c.lp_order()
    );
    check!("lp.max", "max= caps the events of one answer", c.lp_max());
    check!(
        "lp.hold_timeout",
        "a held poll with nothing new answers [] after hold_ms",
        c.lp_hold_timeout()
    );
    check!(
        "lp.hold_wakes",
        "a held poll answers as soon as an event is published",
        c.lp_hold_wakes()
    );
    check!(
        "lp.missed",
        "a cursor older than the buffer gets a missed notice",
        c.lp_missed()
    );
    check!(
        "lp.refusals",
        "400 for a cursor ahead of the head, an invalid topic, a topic named twice",
        c.lp_refusals()
    );
    check!(
        "sse.stream",
        "SSE: subscribed block, then each event with id TOPIC:SEQ",
        c.sse_stream()
    );
    check!(
        "sse.last_event_id",
        "SSE: Last-Event-ID resumes after the event it names",
        c.sse_last_event_id()
    );
    check!(
        "ws.push",
        "WebSocket: subscribed, then each event as a frame",
        c.ws_push()
    );
    check!(
        "ws.resume",
        "WebSocket: exactly once, in order, across a forced reconnect by cursor",
        c.ws_resume()
    );
    check!(
        "ws.publish",
        "WebSocket: a publish message is delivered like any event",
        c.ws_publish()
    );
    check!(
        "ws.close_codes",
        "WebSocket: 1007 for malformed JSON, 1003 for a binary subscription, 1008 for no topics",
        c.ws_close_codes()
    );
    check!(
        "ws.heartbeat",
        "WebSocket: the server pings",
        c.ws_heartbeat()
    );
    Ok(lines)
}

impl Checker {
    fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn publish(&self, topic: &str, n: usize) -> Result<Vec<u64>, String> {
        let intended: Vec<u64> = (0..n).map(|i| crate::clock::now_ns() + i as u64).collect();
        let items: Vec<String> = intended
            .iter()
            .map(|i| {
                format!(
                    r#"{{"publish":{{"topic":"{topic}","intended_ns":{i},"payload":"check"}}}}"#
                )
            })
            .collect();
        for chunk in items.chunks(200) {
            let r = self
                .http
                .post(format!("{}/send", self.base))
                .header("content-type", "application/json")
                .body(format!("[{}]", chunk.join(",")))
                .send()
                .await
                .map_err(|e| format!("POST /send: {e}"))?;
            if r.status() != 204 {
                return Err(format!("POST /send of a batch answered {}", r.status()));
            }
        }
        Ok(intended)
    }

    async fn poll(&self, query: &str) -> Result<(u16, Batch), String> {
        let r = self
            .http
            .get(format!("{}/lp?{query}", self.base))
            .send()
            .await
            .map_err(|e| format!("GET /lp: {e}"))?;
        let status = r.status().as_u16();
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Ok((status, Batch::default()));
        }
        let mut messages = Vec::new();
        codec::decode_batch(self.encoding, &body, &mut messages)
            .map_err(|e| format!("the answer does not decode: {e}"))?;
        Ok((status, own(messages)))
    }

    async fn head(&self, topic: &str) -> Result<u64, String> {
        let (status, b) = self.poll(&format!("subs={topic}&hold_ms=0")).await?;
        if status != 200 {
            return Err(format!("GET /lp?subs={topic} answered {status}"));
        }
        b.heads
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, h)| *h)
            .ok_or_else(|| format!("no head for {topic} in the answer: {b:?}"))
    }

    async fn send_single(&self) -> Check {
        let topic = self.topic("single");
        let r = self
            .http
            .post(format!("{}/send", self.base))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"publish":{{"topic":"{topic}","intended_ns":5,"payload":"x"}}}}"#
            ))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        expect(r.status() == 204, || format!("answered {}", r.status()))
    }

    async fn send_batch(&self) -> Check {
        let topic = self.topic("batch");
        let head = self.head(&topic).await?;
        let intended = self.publish(&topic, 3).await?;
        let (_, b) = self.poll(&format!("subs={topic}:{head}&hold_ms=0")).await?;
        in_order(&b.events, &topic, head, &intended)
    }

    async fn send_status(
        &self,
        body: &'static str,
        content_type: &'static str,
        want: u16,
    ) -> Check {
        let r = self
            .http
            .post(format!("{}/send", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        expect(r.status().as_u16() == want, || {
            format!("answered {} instead of {want}", r.status())
        })
    }

    async fn lp_subscribe(&self) -> Check {
        let topic = self.topic("subscribe");
        let (status, b) = self.poll(&format!("subs={topic}&hold_ms=5000")).await?;
        expect(status == 200 && b.heads == vec![(topic.clone(), 0)], || {
            format!("answered {status} with {b:?}, not subscribed {{{topic}: 0}}")
        })
    }

    async fn lp_order(&self) -> Check {
        let topic = self.topic("order");
        let head = self.head(&topic).await?;
        let intended = self.publish(&topic, 5).await?;
        let (_, b) = self.poll(&format!("subs={topic}:{head}&hold_ms=0")).await?;
        in_order(&b.events, &topic, head, &intended)
    }

    async fn lp_max(&self) -> Check {
        let topic = self.topic("max");
        let head = self.head(&topic).await?;
        self.publish(&topic, 5).await?;
        let (_, b) = self
            .poll(&format!("subs={topic}:{head}&hold_ms=0&max=2"))
            .await?;
        expect(b.events.len() == 2, || {
            format!("max=2 answered {} events", b.events.len())
        })
    }

    async fn lp_hold_timeout(&self) -> Check {
        let topic = self.topic("hold");
        let head = self.head(&topic).await?;
        let started = std::time::Instant::now();
        let (status, b) = self
            .poll(&format!("subs={topic}:{head}&hold_ms=300"))
            .await?;
        let took = started.elapsed();
        expect(
            status == 200 && b.events.is_empty() && took >= Duration::from_millis(250),
            || {
                format!(
                    "answered {status} after {took:?} with {b:?}: expected [] after about 300 ms"
                )
            },
        )
    }

    async fn lp_hold_wakes(&self) -> Check {
        let topic = self.topic("wake");
        let head = self.head(&topic).await?;
        let query = format!("subs={topic}:{head}&hold_ms=10000");
        let poll = self.poll(&query);
        let publish = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.publish(&topic, 1).await
        };
        let started = std::time::Instant::now();
        let (answer, published) = tokio::join!(poll, publish);
        let intended = published?;
        let (_, b) = answer?;
        let took = started.elapsed();
        if took > Duration::from_secs(5) {
            return Ok(Outcome::Fail(format!(
                "the held poll answered only after {took:?}"
            )));
        }
        in_order(&b.events, &topic, head, &intended)
    }

    async fn lp_missed(&self) -> Check {
        let topic = self.topic("missed");
        let n = 1100;
        self.publish(&topic, n).await?;
        let (_, b) = self
            .poll(&format!("subs={topic}:0&hold_ms=0&max=10000"))
            .await?;
        if b.events.len() == n {
            return Ok(Outcome::Skipped(format!(
                "the server buffers all {n} events of a topic: no cursor is older than its buffer"
            )));
        }
        let Some((t, first, last)) = b.missed.first() else {
            return Ok(Outcome::Fail(format!(
                "{} of {n} events came back and no missed notice",
                b.events.len()
            )));
        };
        let next = b.events.first().map(|e| e.seq);
        expect(t == &topic && *first == 1 && next == Some(last + 1), || {
            format!("missed {t} {first}..{last}, then event {next:?}: expected 1..k then k+1")
        })
    }

    async fn lp_refusals(&self) -> Check {
        let topic = self.topic("refusals");
        let cases = [
            format!("subs={topic}:999999999&hold_ms=0"),
            "subs=bad%20topic!&hold_ms=0".to_owned(),
            format!("subs={topic},{topic}&hold_ms=0"),
        ];
        for q in cases {
            let (status, _) = self.poll(&q).await?;
            if status != 400 {
                return Ok(Outcome::Fail(format!("/lp?{q} answered {status}, not 400")));
            }
        }
        Ok(Outcome::Pass)
    }

    /// Reads SSE blocks until `n` events (or the time runs out).
    async fn sse(
        &self,
        query: &str,
        last_event_id: Option<String>,
        n: usize,
        publish: Option<&str>,
    ) -> Result<(Vec<String>, Batch), String> {
        if self.encoding != Encoding::Json {
            return Err("skip: SSE is JSON only and this server uses the binary encoding".into());
        }
        let mut request = self.http.get(format!("{}/sse?{query}", self.base));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let mut r = request.send().await.map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("skip-or-fail: GET /sse answered {}", r.status()));
        }
        let mut buf = Vec::new();
        let mut ids = Vec::new();
        let mut batch = Batch::default();
        let mut published = publish.is_none();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while batch.events.len() < n {
            let chunk = tokio::time::timeout_at(deadline, r.chunk())
                .await
                .map_err(|_| format!("{} of {n} events within 10 s", batch.events.len()))?
                .map_err(|e| e.to_string())?
                .ok_or("the stream ended")?;
            buf.extend_from_slice(&chunk);
            while let Some((dispatch, used)) =
                codec::sse::decode_block(&buf).map_err(|e| format!("{e:?}"))?
            {
                if let codec::sse::Dispatch::Event(e) = &dispatch {
                    let m = codec::decode_json(e.data.as_bytes()).map_err(|e| e.to_string())?;
                    ids.push(e.id.as_deref().unwrap_or("").to_owned());
                    let owned = own(vec![m]);
                    batch.heads.extend(owned.heads);
                    batch.events.extend(owned.events);
                    batch.missed.extend(owned.missed);
                }
                buf.drain(..used);
            }
            if !published && !batch.heads.is_empty() {
                self.publish(publish.expect("checked"), n).await?;
                published = true;
            }
        }
        Ok((ids, batch))
    }

    async fn sse_stream(&self) -> Check {
        let topic = self.topic("sse");
        match self
            .sse(&format!("subs={topic}"), None, 2, Some(&topic))
            .await
        {
            Ok((ids, b)) => expect(
                b.heads == vec![(topic.clone(), 0)]
                    && b.events.iter().map(|e| e.seq).collect::<Vec<_>>() == [1, 2]
                    && ids.get(1).map(String::as_str) == Some(&format!("{topic}:1")[..]),
                || format!("ids {ids:?}, {b:?}"),
            ),
            Err(e) => skip_or_fail(e),
        }
    }

    async fn sse_last_event_id(&self) -> Check {
        let topic = self.topic("sse_resume");
        let intended = self.publish(&topic, 4).await?;
        match self
            .sse(
                &format!("subs={topic}:0"),
                Some(format!("{topic}:2")),
                2,
                None,
            )
            .await
        {
            Ok((_, b)) => in_order(&b.events, &topic, 2, &intended[2..]),
            Err(e) => skip_or_fail(e),
        }
    }

    async fn ws(&self) -> Result<WsConn, String> {
        let counters = Arc::new(SocketCounters::default());
        let dial = Dial {
            target: &self.target,
            source: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            counters: &counters,
            index: 0,
        };
        let stream = dial.open(Alpn::Http1).await.map_err(|e| e.to_string())?;
        let scheme = if self.target.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        let (ws, _) =
            tokio_tungstenite::client_async(format!("{scheme}://{}/ws", self.target.addr), stream)
                .await
                .map_err(|e| format!("skip-or-fail: the upgrade at /ws failed: {e}"))?;
        Ok(ws)
    }

    async fn ws_subscribe(
        &self,
        ws: &mut WsConn,
        topic: &str,
        cursor: Option<u64>,
    ) -> Result<(), String> {
        let cursor = cursor.map_or("null".to_owned(), |c| c.to_string());
        ws.send(Message::Text(
            format!(r#"{{"subscribe":{{"{topic}":{cursor}}}}}"#).into(),
        ))
        .await
        .map_err(|e| e.to_string())?;
        let first = ws_messages(ws, 1, self.encoding).await?;
        expect(!first.heads.is_empty(), || {
            format!("the first message was {first:?}, not subscribed")
        })
        .map(drop)
    }

    async fn ws_push(&self) -> Check {
        let topic = self.topic("ws");
        let mut ws = match self.ws().await {
            Ok(ws) => ws,
            Err(e) => return skip_or_fail(e),
        };
        self.ws_subscribe(&mut ws, &topic, None).await?;
        let intended = self.publish(&topic, 3).await?;
        let b = ws_messages(&mut ws, 3, self.encoding).await?;
        in_order(&b.events, &topic, 0, &intended)
    }

    async fn ws_resume(&self) -> Check {
        let topic = self.topic("ws_resume");
        let mut ws = match self.ws().await {
            Ok(ws) => ws,
            Err(e) => return skip_or_fail(e),
        };
        self.ws_subscribe(&mut ws, &topic, None).await?;
        let intended = self.publish(&topic, 3).await?;
        let mut seen = ws_messages(&mut ws, 3, self.encoding).await?;
        // The connection is cut; events go on meanwhile.
        drop(ws);
        let more = self.publish(&topic, 3).await?;
        let mut ws = self.ws().await?;
        self.ws_subscribe(&mut ws, &topic, seen.events.last().map(|e| e.seq))
            .await?;
        let more = [intended, more].concat();
        let after = self.publish(&topic, 1).await?;
        let rest = ws_messages(&mut ws, 4, self.encoding).await?;
        seen.events.extend(rest.events);
        in_order(&seen.events, &topic, 0, &[more, after].concat())
    }

    async fn ws_publish(&self) -> Check {
        let topic = self.topic("ws_publish");
        let mut ws = match self.ws().await {
            Ok(ws) => ws,
            Err(e) => return skip_or_fail(e),
        };
        self.ws_subscribe(&mut ws, &topic, None).await?;
        ws.send(Message::Text(
            format!(r#"{{"publish":{{"topic":"{topic}","intended_ns":77,"payload":"hi"}}}}"#)
                .into(),
        ))
        .await
        .map_err(|e| e.to_string())?;
        let b = ws_messages(&mut ws, 1, self.encoding).await?;
        in_order(&b.events, &topic, 0, &[77])
    }

    async fn ws_close_codes(&self) -> Check {
        let cases: [(Message, CloseCode); 3] = [
            (Message::Text("{not json".into()), CloseCode::Invalid),
            (
                Message::Binary(vec![1, 2, 3].into()),
                CloseCode::Unsupported,
            ),
            (
                Message::Text(r#"{"subscribe":{}}"#.into()),
                CloseCode::Policy,
            ),
        ];
        for (send, want) in cases {
            let mut ws = match self.ws().await {
                Ok(ws) => ws,
                Err(e) => return skip_or_fail(e),
            };
            ws.send(send.clone()).await.map_err(|e| e.to_string())?;
            let code = loop {
                match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(_)) | None) => break None,
                    Err(_) => {
                        return Ok(Outcome::Fail(format!("no close within 5 s after {send:?}")));
                    }
                }
            };
            if code != Some(want) {
                return Ok(Outcome::Fail(format!(
                    "{send:?} was closed with {code:?}, not {want:?}"
                )));
            }
        }
        Ok(Outcome::Pass)
    }

    async fn ws_heartbeat(&self) -> Check {
        let Some(wait) = self.heartbeat_wait else {
            return Ok(Outcome::Skipped(
                "it takes the server's heartbeat interval (15 s by default): give --heartbeat-wait"
                    .into(),
            ));
        };
        let topic = self.topic("heartbeat");
        let mut ws = match self.ws().await {
            Ok(ws) => ws,
            Err(e) => return skip_or_fail(e),
        };
        self.ws_subscribe(&mut ws, &topic, None).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Ping(_)))) => return Ok(Outcome::Pass),
                Ok(Some(Ok(_))) => continue,
                Ok(_) => return Ok(Outcome::Fail("the connection ended".into())),
                Err(_) => return Ok(Outcome::Fail(format!("no ping within {wait:?}"))),
            }
        }
    }
}

type WsConn = tokio_tungstenite::WebSocketStream<crate::client::Conn>;

async fn ws_messages(ws: &mut WsConn, n: usize, encoding: Encoding) -> Result<Batch, String> {
    let mut got = Batch::default();
    let mut count = 0;
    while count < n {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| format!("{count} of {n} messages within 10 s"))?;
        let body: bytes::Bytes = match frame {
            Some(Ok(Message::Text(t))) => t.into(),
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the connection ended".into()),
        };
        let m = codec::decode_single(encoding, &body).map_err(|e| e.to_string())?;
        let b = own(vec![m]);
        got.heads.extend(b.heads);
        got.events.extend(b.events);
        got.missed.extend(b.missed);
        count += 1;
    }
    Ok(got)
}

/// Events of `topic` numbered `after+1 …`, one each, with the intended
/// times published.
fn in_order(events: &[Ev], topic: &str, after: u64, intended: &[u64]) -> Check {
    let want: Vec<Ev> = intended
        .iter()
        .enumerate()
        .map(|(i, t)| Ev {
            topic: topic.to_owned(),
            seq: after + 1 + i as u64,
            intended_ns: *t,
        })
        .collect();
    if events == want {
        return Ok(Outcome::Pass);
    }
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    Ok(Outcome::Fail(format!(
        "expected sequence numbers {}..={} with their intended times, got {seqs:?}{}",
        after + 1,
        after + intended.len() as u64,
        if events.iter().map(|e| e.intended_ns).collect::<Vec<_>>() != intended {
            " (or intended times changed)"
        } else {
            ""
        }
    )))
}

fn expect(ok: bool, why: impl FnOnce() -> String) -> Check {
    Ok(if ok {
        Outcome::Pass
    } else {
        Outcome::Fail(why())
    })
}

/// A route the server does not offer skips its checks; anything else fails.
fn skip_or_fail(e: String) -> Check {
    match e.strip_prefix("skip-or-fail: ") {
        Some(rest) if rest.contains("404") || rest.contains("405") || rest.contains("501") => {
            Ok(Outcome::Skipped(format!("not offered: {rest}")))
        }
        Some(rest) => Ok(Outcome::Fail(rest.to_owned())),
        None => match e.strip_prefix("skip: ") {
            Some(rest) => Ok(Outcome::Skipped(rest.to_owned())),
            None => Ok(Outcome::Fail(e)),
        },
    }
}

/// The report, one line per check, and the exit code: 0 when nothing
/// failed, 1 otherwise.
pub fn report(lines: &[Line]) -> (String, u8) {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut failed = 0;
    for l in lines {
        let (mark, detail) = match &l.outcome {
            Outcome::Pass => ("pass", String::new()),
            Outcome::Fail(why) => {
                failed += 1;
                ("FAIL", format!(": {why}"))
            }
            Outcome::Skipped(why) => ("skipped", format!(": {why}")),
        };
        let _ = writeln!(out, "{mark:7} {:18} {}{detail}", l.name, l.what);
    }
    let passed = lines.iter().filter(|l| l.outcome == Outcome::Pass).count();
    let _ = writeln!(
        out,
        "{passed} passed, {failed} failed, {} skipped",
        lines.len() - passed - failed
    );
    (out, u8::from(failed > 0))
}
