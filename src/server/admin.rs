//! Control routes used by `pushbench run`: start the open-loop publisher,
//! read the server's counters. Not part of the push protocol itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::clock;
use crate::hub::Topic;
use crate::schedule::{Arrival, Schedule};

/// What the publisher is asked to do. All times on the host's monotonic clock.
///
/// A plan is identified by its content: the one accepted last, sent again
/// (a retry after its connection was cut on the way back), is answered as
/// accepted and starts nothing, so `run` can retry a publish request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishPlan {
    pub topics: Vec<String>,
    /// Events per second over all topics; each event picks a topic at random.
    pub rate: f64,
    pub arrival: Arrival,
    pub payload_bytes: usize,
    pub seed: u64,
    /// Intended time of the schedule's offset 0.
    pub start_ns: u64,
    /// No event is intended at or after `start_ns + duration_ns`.
    pub duration_ns: u64,
}

/// Bounds of a publish plan: the scenario's own limits. A plan past them
/// is refused (400) before anything is allocated for it: one request asking
/// for a terabyte payload used to abort the server.
pub const MAX_PLAN_TOPICS: usize = 100_000;
pub const MAX_PLAN_RATE: f64 = 1_000_000.0;
pub const MAX_PLAN_DURATION_NS: u64 = 24 * 3600 * 1_000_000_000;
/// A plan's JSON: 100,000 topics of up to 64 bytes fit in 8 MiB.
pub const MAX_PLAN_BODY: usize = 8 << 20;

impl PublishPlan {
    /// Why the server must refuse this plan, if it must.
    pub fn check(&self) -> Result<(), String> {
        if self.topics.is_empty() || self.topics.len() > MAX_PLAN_TOPICS {
            return Err(format!(
                "a plan names 1 to {MAX_PLAN_TOPICS} topics, not {}",
                self.topics.len()
            ));
        }
        if !(self.rate > 0.0 && self.rate <= MAX_PLAN_RATE) {
            return Err(format!(
                "rate {}: more than 0 and at most {MAX_PLAN_RATE} events per second",
                self.rate
            ));
        }
        if self.payload_bytes > crate::codec::MAX_PAYLOAD_BYTES {
            return Err(format!(
                "payload_bytes {}: at most {}",
                self.payload_bytes,
                crate::codec::MAX_PAYLOAD_BYTES
            ));
        }
        if self.duration_ns > MAX_PLAN_DURATION_NS
            || self.start_ns.checked_add(self.duration_ns).is_none()
        {
            return Err(format!(
                "duration_ns {}: at most {MAX_PLAN_DURATION_NS} (24 h), and start_ns + duration_ns must fit 64 bits",
                self.duration_ns
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublisherState {
    #[default]
    Idle,
    Running,
    Done,
}

#[derive(Default)]
pub(super) struct Publisher {
    state: Mutex<PublisherState>,
    /// The plan accepted last, to answer its retry (see [`PublishPlan`]).
    accepted: Mutex<Option<PublishPlan>>,
    max_lag_ns: AtomicU64,
}

/// Live connection gauges, counted by guards so an early return cannot leak.
#[derive(Default)]
pub(super) struct Gauges {
    websockets: Arc<AtomicU64>,
    polls: Arc<AtomicU64>,
    sse_streams: Arc<AtomicU64>,
    client_messages: AtomicU64,
    refusals: [AtomicU64; Refusal::ALL.len()],
}

/// Why the server refused or ended a client: each counted, and reported by
/// name in `/_pushbench/stats` (`refusals`), so a run can tell that a limit
/// shaped its figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A control route without the right token (401).
    Token,
    /// A Host that is not a loopback name on a loopback server (403).
    Host,
    /// A connection past the connection cap (503).
    Connections,
    /// A client whose writes stalled past the write timeout (closed).
    SlowConsumer,
    /// A request that would create a topic past the hub's cap (429, 1008).
    Topics,
    /// A WebSocket message past the size limit (1009).
    MessageSize,
    /// A request body past its size limit (413).
    BodySize,
    /// A request body not received within the body timeout (408).
    BodyTimeout,
    /// A WebSocket client that broke the protocol (1002) or sent invalid
    /// UTF-8 (1007).
    Protocol,
}

impl Refusal {
    const ALL: [Refusal; 9] = [
        Refusal::Token,
        Refusal::Host,
        Refusal::Connections,
        Refusal::SlowConsumer,
        Refusal::Topics,
        Refusal::MessageSize,
        Refusal::BodySize,
        Refusal::BodyTimeout,
        Refusal::Protocol,
    ];

    fn name(self) -> &'static str {
        match self {
            Refusal::Token => "token",
            Refusal::Host => "host",
            Refusal::Connections => "connection_limit",
            Refusal::SlowConsumer => "slow_consumer",
            Refusal::Topics => "topic_limit",
            Refusal::MessageSize => "message_size",
            Refusal::BodySize => "body_size",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::Protocol => "websocket_protocol",
        }
    }
}

pub(super) struct GaugeGuard(Arc<AtomicU64>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gauges {
    fn guard(gauge: &Arc<AtomicU64>) -> GaugeGuard {
        gauge.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(gauge.clone())
    }
    pub(super) fn websocket(&self) -> GaugeGuard {
        Self::guard(&self.websockets)
    }
    pub(super) fn poll(&self) -> GaugeGuard {
        Self::guard(&self.polls)
    }
    pub(super) fn sse(&self) -> GaugeGuard {
        Self::guard(&self.sse_streams)
    }
    pub(super) fn client_message(&self) {
        self.client_messages.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn refused(&self, why: Refusal) {
        let i = Refusal::ALL
            .iter()
            .position(|r| *r == why)
            .expect("every refusal is listed");
        self.refusals[i].fetch_add(1, Ordering::Relaxed);
    }
    fn refusals(&self) -> BTreeMap<String, u64> {
        Refusal::ALL
            .iter()
            .zip(&self.refusals)
            .map(|(r, n)| (r.name().to_owned(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The server's counters, as `GET /_pushbench/stats` reports them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerStats {
    pub published: u64,
    pub publisher: PublisherState,
    /// Largest delay between an event's intended and actual publish time.
    pub max_publish_lag_ns: u64,
    pub websocket_connections: u64,
    pub polls_in_progress: u64,
    #[serde(default)]
    pub sse_streams: u64,
    /// Messages clients published (WebSocket frames, `POST /send`).
    #[serde(default)]
    pub client_messages: u64,
    /// Clients refused or closed by a limit, by reason (`slow_consumer`,
    /// `connection_limit`, `topic_limit`, …; docs/protocol.md, "Limits").
    #[serde(default)]
    pub refusals: BTreeMap<String, u64>,
    /// Newest sequence number per topic.
    pub heads: BTreeMap<String, u64>,
}

pub(super) async fn stats(State(state): State<Arc<AppState>>) -> Json<ServerStats> {
    Json(ServerStats {
        published: state.hub.published(),
        publisher: *state.publisher.state.lock().expect("publisher lock"),
        max_publish_lag_ns: state.publisher.max_lag_ns.load(Ordering::Relaxed),
        websocket_connections: state.gauges.websockets.load(Ordering::Relaxed),
        polls_in_progress: state.gauges.polls.load(Ordering::Relaxed),
        sse_streams: state.gauges.sse_streams.load(Ordering::Relaxed),
        client_messages: state.gauges.client_messages.load(Ordering::Relaxed),
        refusals: state.gauges.refusals(),
        heads: state.hub.heads(),
    })
}

pub(super) async fn publish(
    State(state): State<Arc<AppState>>,
    Json(plan): Json<PublishPlan>,
) -> Response {
    if let Err(why) = plan.check() {
        return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
    }
    if let Some(bad) = plan
        .topics
        .iter()
        .find(|t| !crate::codec::is_valid_topic(t))
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("invalid topic name {bad:?}\n"),
        )
            .into_response();
    }
    let topics = match plan
        .topics
        .iter()
        .map(|t| state.hub.topic(t))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(topics) => topics,
        Err(e) => {
            state.gauges.refused(Refusal::Topics);
            return (StatusCode::TOO_MANY_REQUESTS, format!("{e}\n")).into_response();
        }
    };
    {
        let mut accepted = state.publisher.accepted.lock().expect("publisher lock");
        if accepted.as_ref() == Some(&plan) {
            return StatusCode::ACCEPTED.into_response();
        }
        let mut s = state.publisher.state.lock().expect("publisher lock");
        if *s == PublisherState::Running {
            return (StatusCode::CONFLICT, "a publisher is already running\n").into_response();
        }
        *s = PublisherState::Running;
        *accepted = Some(plan.clone());
    }
    let spawned = std::thread::Builder::new()
        .name("pushbench-publisher".into())
        .spawn(move || run_publisher(&state, &plan, topics));
    match spawned {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot start the publisher: {e}\n"),
        )
            .into_response(),
    }
}

/// Publishes on the open-loop schedule. When it falls behind (an overloaded
/// server), it publishes every overdue event at once, each stamped with its
/// own intended time, so the backlog is charged as latency.
///
/// It runs on its own thread and sleeps with the kernel's high-resolution
/// timer: the async runtime's timer has a 1 ms granularity that would add
/// up to a millisecond of the publisher's own lateness to every event.
fn run_publisher(state: &AppState, plan: &PublishPlan, topics: Vec<Arc<Topic>>) {
    let payload: Vec<u8> = (0..plan.payload_bytes)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let mut pick = StdRng::seed_from_u64(plan.seed ^ 0x9e37_79b9_7f4a_7c15);
    let end = plan.start_ns + plan.duration_ns;
    for offset in Schedule::new(plan.arrival, plan.rate, plan.seed) {
        let intended = plan.start_ns + offset;
        if intended >= end {
            break;
        }
        let now = clock::now_ns();
        if intended > now {
            std::thread::sleep(std::time::Duration::from_nanos(intended - now));
        }
        let topic = &topics[pick.random_range(0..topics.len())];
        state.hub.publish(topic, intended, &payload);
        let lag = clock::now_ns().saturating_sub(intended);
        state.publisher.max_lag_ns.fetch_max(lag, Ordering::Relaxed);
    }
    *state.publisher.state.lock().expect("publisher lock") = PublisherState::Done;
}
