//! The generator's publisher: the open-loop schedule of a publish plan,
//! sent to the server through its publish interface, from the generator's
//! own process and clock.
//!
//! The same schedule as the bundled server's in-process publisher (same
//! seed, same intended times, same topic for each event), so a run that
//! publishes from the generator differs from one that publishes in the
//! server only by the publish path: a request per batch of due events over
//! one kept-alive connection. When a request is slow, the events that come
//! due meanwhile go in the next one, each stamped with its own intended
//! time: the schedule never waits for the server, and the wait shows as
//! latency (coordinated omission).
//!
//! Receivers and publisher read the same clock, so latency stays exact
//! wherever the server runs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::http::{HeaderValue, Request, header};
use hdrhistogram::Histogram;
use hyper::client::conn::http1::SendRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::socketio::SocketIoWs;
use crate::client::{Alpn, CounterSnapshot, Dial, SocketCounters, Target};
use crate::clock;
use crate::schedule::Schedule;
use crate::server::PublishPlan;

/// Largest body of one publish request: under the 64 KiB a `POST /send`
/// may carry (docs/protocol.md); more due events wait for the next one.
const MAX_BATCH_BYTES: usize = 60 * 1024;

/// Where the publisher sends events.
#[derive(Clone, Debug)]
pub enum Channel {
    /// `POST /send` of docs/protocol.md: one publish message, or an array
    /// of them for a batch; with `Authorization: Bearer` when a token is
    /// given.
    Pushbench { token: Option<String> },
    /// A Socket.IO server: `publish_batch` events over an Engine.IO
    /// WebSocket, numbered per room by the publisher.
    Socketio,
}

/// What the publisher did, for the summary.
#[derive(Clone, Debug)]
pub struct PublisherReport {
    /// Events the server accepted (Socket.IO: emitted; it acknowledges nothing).
    pub published: u64,
    /// Events whose request failed or was refused.
    pub failed: u64,
    pub requests: u64,
    /// Time from sending a publish request to its answer, in µs (none for
    /// Socket.IO, whose emits get no answer).
    pub request_time: Histogram<u64>,
    /// How late, at most, an event left the publisher after its intended
    /// time (its request waited for the one before).
    pub max_lag_ns: u64,
    /// The last sequence number the publisher gave each topic (Socket.IO
    /// only; a pushbench server numbers its own events).
    pub heads: HashMap<String, u64>,
    /// Bytes, requests and connections of the publisher's socket.
    pub counters: CounterSnapshot,
    /// The first failure, as it was reported.
    pub first_error: Option<String>,
    /// CPU time of the publisher's thread (part of the generator's CPU).
    pub cpu: Option<Duration>,
}

/// A running publisher.
pub struct GeneratorPublisher {
    done: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<PublisherReport>,
}

impl GeneratorPublisher {
    /// Starts publishing `plan` to the server at `target` from its own
    /// thread (its sleeps use the kernel's high-resolution timer, as the
    /// server's publisher does). With `shard` = (K, N) it publishes only
    /// the events of topics j with j mod N = K, following the whole plan's
    /// schedule and topic picks, so N shards publish the plan between them.
    pub fn start(
        plan: PublishPlan,
        shard: Option<(u32, u32)>,
        target: Target,
        source: IpAddr,
        channel: Channel,
    ) -> std::io::Result<GeneratorPublisher> {
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        let stopped = stop.clone();
        let handle = std::thread::Builder::new()
            .name("pushbench-publisher".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds");
                // A LocalSet: the HTTP/1.1 connection's task is spawned
                // locally, as in the generator's workers.
                let report = tokio::task::LocalSet::new().block_on(
                    &runtime,
                    publish(plan, shard, target, source, channel, stopped),
                );
                finished.store(true, Ordering::Release);
                report
            })?;
        Ok(GeneratorPublisher { done, stop, handle })
    }

    /// Stops before the plan's end (a run that is ending early); the
    /// events not sent by then are not published and not expected.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// True once every event of the plan was sent (or failed).
    pub fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    pub fn join(self) -> PublisherReport {
        self.handle
            .join()
            .unwrap_or_else(|_| GeneratorPublisher::failed_report("the publisher thread panicked"))
    }

    /// The report of a publisher whose own report was lost.
    pub fn failed_report(why: &str) -> PublisherReport {
        PublisherReport {
            published: 0,
            failed: 0,
            requests: 0,
            request_time: crate::load::new_histogram(),
            max_lag_ns: 0,
            heads: HashMap::new(),
            counters: CounterSnapshot::default(),
            first_error: Some(why.to_owned()),
            cpu: None,
        }
    }
}

/// One event of the schedule.
struct Due {
    topic: usize,
    intended_ns: u64,
}

/// An open connection of either kind.
enum Open {
    Http {
        sender: SendRequest<crate::client::http::Body>,
        host: HeaderValue,
        token: Option<HeaderValue>,
    },
    Socketio(Box<SocketIoWs>),
}

async fn publish(
    plan: PublishPlan,
    shard: Option<(u32, u32)>,
    target: Target,
    source: IpAddr,
    channel: Channel,
    stop: Arc<AtomicBool>,
) -> PublisherReport {
    let counters = Arc::new(SocketCounters::default());
    let mut report = GeneratorPublisher::failed_report("");
    report.first_error = None;
    let payload: String = (0..plan.payload_bytes)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut pick = StdRng::seed_from_u64(plan.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut schedule = Schedule::new(plan.arrival, plan.rate, plan.seed);
    let end = plan.start_ns + plan.duration_ns;
    let mut seqs = vec![0u64; plan.topics.len()];
    let mut conn: Option<Open> = None;
    let mut next = schedule.next().map(|o| plan.start_ns + o);
    let mut due: Vec<Due> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        // Everything due now goes in one request.
        let now = clock::now_ns();
        while let Some(at) = next.filter(|at| *at < end && *at <= now) {
            let topic = pick.random_range(0..plan.topics.len());
            if shard.is_none_or(|(k, n)| topic as u64 % u64::from(n) == u64::from(k)) {
                due.push(Due {
                    topic,
                    intended_ns: at,
                });
            }
            next = schedule.next().map(|o| plan.start_ns + o);
        }
        if due.is_empty() {
            let Some(at) = next.filter(|at| *at < end) else {
                break;
            };
            // In steps of at most 100 ms, so a stop is seen.
            wait_until(at.min(clock::now_ns() + 100_000_000), conn.as_mut()).await;
            continue;
        }
        let lag = clock::now_ns().saturating_sub(due[0].intended_ns);
        report.max_lag_ns = report.max_lag_ns.max(lag);
        // A kept-alive connection the server closed while idle (a slow
        // schedule can wait longer than its idle timeout) is replaced
        // before use, not counted as a failed publish.
        if let Some(Open::Http { sender, .. }) = &conn
            && sender.is_closed()
        {
            conn = None;
        }
        // A Socket.IO server pings: answered here too, since at a high rate
        // the publisher may never wait long enough to read in `wait_until`.
        if let Some(Open::Socketio(ws)) = &mut conn {
            while let Some(read) = futures_util::FutureExt::now_or_never(ws.text()) {
                if read.is_err() {
                    conn = None;
                    break;
                }
            }
        }
        if conn.is_none() {
            match connect(&target, source, &counters, &channel).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    report.failed += due.len() as u64;
                    report.first_error.get_or_insert(e);
                    due.clear();
                    continue;
                }
            }
        }
        let open = conn.as_mut().expect("connected above");
        let socketio = matches!(open, Open::Socketio(_));
        let taken = take_batch(&mut due, &plan, &payload, &mut seqs, socketio);
        let sent_at = clock::now_ns();
        report.requests += 1;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        match send(open, taken.body).await {
            Ok(answered) => {
                report.published += taken.events;
                if answered {
                    let us = (clock::now_ns() - sent_at) / 1000;
                    let _ = report.request_time.record(us.max(1));
                }
            }
            Err(e) => {
                report.failed += taken.events;
                report.first_error.get_or_insert(e);
                conn = None;
            }
        }
    }
    for (topic, seq) in plan.topics.iter().zip(seqs) {
        if seq > 0 {
            report.heads.insert(topic.clone(), seq);
        }
    }
    report.counters = counters.snapshot();
    report.cpu = thread_cpu();
    report
}

/// CPU time of the calling thread.
fn thread_cpu() -> Option<Duration> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .ok()
        .map(Duration::from)
}

/// Sleeps until `at` on the monotonic clock: on the runtime's timer while
/// more than 2 ms away (a Socket.IO connection answers pings meanwhile),
/// then with the kernel's high-resolution sleep.
async fn wait_until(at: u64, conn: Option<&mut Open>) {
    let coarse = at.saturating_sub(2_000_000);
    if clock::now_ns() < coarse {
        match conn {
            Some(Open::Socketio(ws)) => {
                let _ = tokio::time::timeout_at(clock::instant_at(coarse), ws.text()).await;
            }
            _ => tokio::time::sleep_until(clock::instant_at(coarse)).await,
        }
    }
    let now = clock::now_ns();
    if at > now {
        std::thread::sleep(Duration::from_nanos(at - now));
    }
}

async fn connect(
    target: &Target,
    source: IpAddr,
    counters: &Arc<SocketCounters>,
    channel: &Channel,
) -> Result<Open, String> {
    let dial = Dial {
        target,
        source,
        counters,
        index: 0,
    };
    let stream = dial
        .open(Alpn::Http1)
        .await
        .map_err(|e| format!("publisher: {e}"))?;
    match channel {
        Channel::Pushbench { token } => {
            let sender = crate::client::http::handshake_h1(stream)
                .await
                .map_err(|e| format!("publisher: {e}"))?;
            Ok(Open::Http {
                sender,
                host: crate::client::http::host(&dial),
                token: token
                    .as_ref()
                    .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()),
            })
        }
        Channel::Socketio => SocketIoWs::connect(stream, target.addr, counters)
            .await
            .map(|ws| Open::Socketio(Box::new(ws)))
            .map_err(|e| format!("publisher: Socket.IO: {e}")),
    }
}

/// A request's body and how many events it carries.
struct Batch {
    body: String,
    events: u64,
}

/// Takes due events off the front of `due` up to [`MAX_BATCH_BYTES`].
fn take_batch(
    due: &mut Vec<Due>,
    plan: &PublishPlan,
    payload: &str,
    seqs: &mut [u64],
    socketio: bool,
) -> Batch {
    let mut items = Vec::new();
    let mut bytes = 0;
    let sent_ns = clock::now_ns();
    let mut n = 0;
    for d in due.iter() {
        let topic = &plan.topics[d.topic];
        let item = if !socketio {
            format!(
                "{{\"publish\":{{\"topic\":\"{topic}\",\"intended_ns\":{},\"payload\":\"{payload}\"}}}}",
                d.intended_ns
            )
        } else {
            seqs[d.topic] += 1;
            format!(
                "{{\"t\":\"{topic}\",\"s\":{},\"i\":\"{}\",\"p\":\"{sent_ns}\",\"d\":\"{payload}\"}}",
                seqs[d.topic], d.intended_ns
            )
        };
        if n > 0 && bytes + item.len() + 1 > MAX_BATCH_BYTES {
            break;
        }
        bytes += item.len() + 1;
        items.push(item);
        n += 1;
    }
    due.drain(..n);
    let body = if socketio {
        format!("42[\"publish_batch\",[{}]]", items.join(","))
    } else if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        format!("[{}]", items.join(","))
    };
    Batch {
        body,
        events: n as u64,
    }
}

/// Sends one batch; true when the server answered it (HTTP), false when
/// the channel has no answers (Socket.IO).
async fn send(open: &mut Open, body: String) -> Result<bool, String> {
    match open {
        Open::Http {
            sender,
            host,
            token,
        } => {
            let mut request = Request::post("/send")
                .header(header::HOST, host.clone())
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(t) = token {
                request = request.header(header::AUTHORIZATION, t.clone());
            }
            let request = request
                .body(crate::client::http::Body::from(body))
                .map_err(|e| e.to_string())?;
            sender
                .ready()
                .await
                .map_err(|e| format!("publish request: {e}"))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("publish request: {e}"))?;
            let status = response.status();
            let text = crate::client::http::body_of(response).await;
            match text {
                Ok(_) => Ok(true),
                Err(_) => Err(format!("the server answered a publish with {status}")),
            }
        }
        Open::Socketio(ws) => ws
            .send(body)
            .await
            .map(|()| false)
            .map_err(|e| format!("publish emit: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_events_are_batched_under_the_body_limit() {
        let plan = PublishPlan {
            topics: vec!["A".into(), "B".into()],
            rate: 1000.0,
            arrival: crate::schedule::Arrival::Constant,
            payload_bytes: 1000,
            seed: 1,
            start_ns: 0,
            duration_ns: 1,
        };
        let payload = "x".repeat(1000);
        let mut due: Vec<Due> = (0..100)
            .map(|i| Due {
                topic: i % 2,
                intended_ns: i as u64,
            })
            .collect();
        let mut seqs = vec![0; 2];
        let first = take_batch(&mut due, &plan, &payload, &mut seqs, false);
        assert!(first.body.len() <= MAX_BATCH_BYTES, "{}", first.body.len());
        assert!(first.events > 1 && first.events < 100);
        assert!(
            first
                .body
                .starts_with("[{\"publish\":{\"topic\":\"A\",\"intended_ns\":0,")
        );
        assert_eq!(due.len() as u64, 100 - first.events);
        // Events keep their order across batches.
        assert_eq!(due[0].intended_ns, first.events);
        let mut rest = take_batch(&mut due, &plan, &payload, &mut seqs, true);
        assert!(rest.body.starts_with("42[\"publish_batch\",[{\"t\":"));
        assert!(rest.body.contains("\"s\":1,"), "rooms numbered from 1");
        rest.body.clear();
    }
}
