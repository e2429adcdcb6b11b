//! The life of one client, the same for every transport: connect over the
//! ramp, subscribe, receive, decode, account for each event, reconnect and
//! resume after a failure, stop when done or told to.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::tracker::{Arrival, Tracker};
use super::{ClientSpec, Control, IntervalReport, WorkerReport, new_histogram};
use crate::client::{
    ClientError, CounterSnapshot, ErrorKind, Framing, Received, SocketCounters, Target, Transport,
};
use crate::clock;
use crate::codec::{self, ServerMessage};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// State of one worker, shared by its clients on one thread.
pub(super) struct WorkerCtx {
    pub target: Target,
    pub control: Arc<Control>,
    pub counters: Arc<SocketCounters>,
    pub report: RefCell<WorkerReport>,
    /// Latency of events received in the current second.
    pub interval: RefCell<Histogram<u64>>,
    pub interval_delivered: Cell<u64>,
    pub interval_errors: Cell<u64>,
    pub connected: Cell<u64>,
    pub last_counters: Cell<CounterSnapshot>,
}

impl WorkerCtx {
    /// Closes the current second: its histogram and the counter deltas.
    pub fn take_interval(&self, index: u64) -> IntervalReport {
        let now = self.counters.snapshot();
        let delta = now - self.last_counters.replace(now);
        IntervalReport {
            index,
            latency: self.interval.replace(new_histogram()),
            delivered: self.interval_delivered.take(),
            counters: delta,
            connected: self.connected.get(),
            errors: self.interval_errors.take(),
        }
    }

    fn error(&self, kind: ErrorKind) {
        *self.report.borrow_mut().errors.entry(kind).or_default() += 1;
        self.interval_errors.set(self.interval_errors.get() + 1);
    }

    /// Records one delivered event, received at `now_ns`.
    fn delivered(&self, intended_ns: u64, published_ns: u64, now_ns: u64) {
        let latency_us = now_ns.saturating_sub(intended_ns) / 1000;
        self.interval.borrow_mut().saturating_record(latency_us);
        self.interval_delivered
            .set(self.interval_delivered.get() + 1);
        let (start, end) = self.control.window();
        let mut report = self.report.borrow_mut();
        if (start..end).contains(&intended_ns) {
            report.latency.saturating_record(latency_us);
            report
                .latency_published
                .saturating_record(now_ns.saturating_sub(published_ns) / 1000);
        }
        if (start..end).contains(&now_ns) {
            report.delivered_in_window += 1;
        }
    }

    /// Decodes what a transport received and accounts for every message.
    /// The receive time is taken once the bytes are decoded.
    fn received(&self, tracker: &mut Tracker, received: &Received) -> Result<(), ClientError> {
        let encoding = self.target.encoding;
        match received.framing {
            Framing::Single => {
                let msg = codec::decode_single(encoding, &received.body)?;
                self.apply(tracker, msg, clock::now_ns());
            }
            Framing::Batch => {
                let mut msgs = Vec::new();
                codec::decode_batch(encoding, &received.body, &mut msgs)?;
                let now = clock::now_ns();
                for msg in msgs {
                    self.apply(tracker, msg, now);
                }
            }
        }
        Ok(())
    }

    fn apply(&self, tracker: &mut Tracker, msg: ServerMessage<'_>, now_ns: u64) {
        match msg {
            ServerMessage::Event(e) => match tracker.on_event(&e.topic, e.seq) {
                Arrival::New | Arrival::Late => {
                    self.delivered(e.intended_ns, e.published_ns, now_ns)
                }
                Arrival::Duplicate | Arrival::Unexpected => {}
            },
            ServerMessage::Subscribed(heads) => {
                for (topic, head) in heads {
                    tracker.on_subscribed(&topic, head);
                }
            }
            ServerMessage::Missed { topic, first, last } => tracker.on_missed(&topic, first, last),
        }
    }

    fn set_connected(&self, up: bool) {
        let delta: i64 = if up { 1 } else { -1 };
        self.connected
            .set(self.connected.get().saturating_add_signed(delta));
        if up {
            self.control.connected.fetch_add(1, Ordering::Relaxed);
        } else {
            self.control.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Runs one client until the run stops or it holds every event up to the
/// final heads. Returns its tracker for the final accounting.
pub(super) async fn run_client<T: Transport>(spec: ClientSpec, ctx: Rc<WorkerCtx>) -> Tracker {
    let control = ctx.control.clone();
    let stop = control.stop.clone();
    // Final heads, kept locally: refreshed only when the channel's version
    // moves (one atomic load), never read under its lock per message.
    let mut heads_rx = control.final_heads.subscribe();
    let mut heads = heads_rx.borrow_and_update().clone();
    let done = |heads: &Option<Arc<HashMap<String, u64>>>, tracker: &Tracker| {
        heads.as_ref().is_some_and(|h| tracker.complete(h))
    };
    let mut tracker = Tracker::new(spec.topics);
    tokio::select! {
        () = stop.cancelled() => return tracker,
        () = tokio::time::sleep_until(clock::instant_at(spec.start_ns)) => {}
    }
    let mut failures = 0u32;
    'connection: loop {
        if failures > 0 {
            let backoff = (Duration::from_millis(100) * 2u32.pow(failures.min(5))).min(MAX_BACKOFF);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
            }
        }
        let began = clock::now_ns();
        let attempt = {
            tokio::select! {
                () = stop.cancelled() => break,
                r = tokio::time::timeout(CONNECT_TIMEOUT, T::connect(&ctx.target, spec.source, &tracker, &ctx.counters)) => r,
            }
        };
        let (mut transport, first) = match attempt {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => {
                ctx.error(e.kind());
                failures += 1;
                continue;
            }
            Err(_) => {
                ctx.error(ErrorKind::ConnectTimeout);
                failures += 1;
                continue;
            }
        };
        let was_subscribed = tracker.subscribed();
        if let Err(e) = ctx.received(&mut tracker, &first) {
            ctx.error(e.kind());
            failures += 1;
            continue;
        }
        if !tracker.subscribed() {
            ctx.error(ErrorKind::Protocol);
            failures += 1;
            continue;
        }
        ctx.report
            .borrow_mut()
            .connect
            .saturating_record(clock::now_ns().saturating_sub(began) / 1000);
        if !was_subscribed {
            control.subscribed.fetch_add(1, Ordering::Relaxed);
        }
        failures = 0;
        ctx.set_connected(true);
        loop {
            if heads_rx.has_changed().unwrap_or(false) {
                heads = heads_rx.borrow_and_update().clone();
            }
            if done(&heads, &tracker) {
                control.complete.fetch_add(1, Ordering::Relaxed);
                ctx.set_connected(false);
                break 'connection;
            }
            // The receive stays in flight while the final heads arrive:
            // dropping it would abandon a sent long poll mid-answer.
            let result = {
                let recv = transport.recv(&tracker);
                tokio::pin!(recv);
                loop {
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => break None,
                        r = &mut recv => break Some(r),
                        Ok(()) = heads_rx.changed() => {
                            heads = heads_rx.borrow_and_update().clone();
                            if done(&heads, &tracker) {
                                break None;
                            }
                        }
                    }
                }
            };
            let outcome = match result {
                // Stopped, or complete while a receive was in flight.
                None => {
                    if done(&heads, &tracker) {
                        control.complete.fetch_add(1, Ordering::Relaxed);
                    }
                    ctx.set_connected(false);
                    break 'connection;
                }
                Some(r) => r.and_then(|received| ctx.received(&mut tracker, &received)),
            };
            if let Err(e) = outcome {
                ctx.error(e.kind());
                ctx.set_connected(false);
                failures += 1;
                continue 'connection;
            }
        }
    }
    tracker
}
