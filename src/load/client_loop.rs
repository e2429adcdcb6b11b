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
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::send_clock::SendClock;
use super::tracker::{Arrival, Tracker};
use super::{ClientSpec, Control, IntervalReport, WorkerReport, new_histogram};
use crate::client::{
    Body, ClientError, CounterSnapshot, Dial, ErrorKind, Framing, MessageSender, Received,
    SocketCounters, Target, Transport,
};
use crate::clock;
use crate::codec::{self, ClientMessage, ServerMessage};
use crate::scenario::ClientSends;
use crate::schedule::Schedule;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// State of one worker, shared by its clients on one thread.
pub(super) struct WorkerCtx {
    pub target: Target,
    pub control: Arc<Control>,
    pub counters: Arc<SocketCounters>,
    pub report: RefCell<WorkerReport>,
    /// Where each closed second goes.
    pub intervals: UnboundedSender<IntervalReport>,
    /// The second of the timeline the `interval_*` fields count.
    pub interval_index: Cell<u64>,
    /// Latency of events received in the current second.
    pub interval: RefCell<Histogram<u64>>,
    pub interval_delivered: Cell<u64>,
    pub interval_errors: Cell<u64>,
    pub connected: Cell<u64>,
    pub last_counters: Cell<CounterSnapshot>,
    /// Client-to-server messages, if the scenario has them.
    pub messages: Option<ClientSends>,
    pub echo: Option<ClientSends>,
    /// Wakes send loops on time (`None` when the scenario has no sends).
    pub send_clock: Option<SendClock>,
    /// The run's stop and final heads, as this worker's clients see them.
    pub signals: Signals,
}

/// The run's stop and final heads, copied onto one worker's thread by
/// [`mirror_signals`]. Every client checks them between messages and
/// waits on them beside every receive. The run's own `CancellationToken`
/// and `watch` channel are shared by every worker's thread, and reading
/// or waiting on either takes a lock that the other threads take too: per
/// message that cost the generator about a sixth of its CPU at saturation.
/// These are read without a lock, and waited on once per connection.
#[derive(Default)]
pub(super) struct Signals {
    stopped: Cell<bool>,
    heads: RefCell<Option<Arc<HashMap<String, u64>>>>,
    /// Fires (`notify_waiters`) when either of the above changes.
    changed: Notify,
}

impl Signals {
    /// Returns once the run has stopped.
    async fn until_stopped(&self) {
        loop {
            // Made before the check: a stop between the two still wakes it.
            let changed = self.changed.notified();
            if self.stopped.get() {
                return;
            }
            changed.await;
        }
    }

    /// True when the client holds every event up to the final heads.
    fn done(&self, tracker: &Tracker) -> bool {
        self.heads
            .borrow()
            .as_ref()
            .is_some_and(|h| tracker.complete(h))
    }
}

/// Copies the run's stop and final heads into the worker's [`Signals`] as
/// they change, and wakes the clients waiting on them. Ends at the stop.
pub(super) async fn mirror_signals(ctx: Rc<WorkerCtx>) {
    let signals = &ctx.signals;
    let mut heads_rx = ctx.control.final_heads.subscribe();
    loop {
        *signals.heads.borrow_mut() = heads_rx.borrow_and_update().clone();
        signals.changed.notify_waiters();
        tokio::select! {
            () = ctx.control.stop.cancelled() => break,
            Ok(()) = heads_rx.changed() => {}
        }
    }
    signals.stopped.set(true);
    signals.changed.notify_waiters();
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

    /// Closes every second before `index` and sends it on. Called by the
    /// ticker at each boundary and by every delivery with its receive
    /// time, so an event is counted in the second it arrived even when the
    /// ticker wakes late: the timeline's seconds then sum exactly to the
    /// window's figures. False once the coordinator is gone.
    pub fn roll_to(&self, index: u64) -> bool {
        while self.interval_index.get() < index {
            let closing = self.interval_index.get();
            if self.intervals.send(self.take_interval(closing)).is_err() {
                return false;
            }
            self.interval_index.set(closing + 1);
        }
        true
    }

    fn error(&self, kind: ErrorKind) {
        *self.report.borrow_mut().errors.entry(kind).or_default() += 1;
        self.interval_errors.set(self.interval_errors.get() + 1);
    }

    /// Records one delivered event, received at `now_ns`; `echo` for the
    /// answer to one of the client's own echo requests.
    fn delivered(&self, intended_ns: u64, published_ns: u64, now_ns: u64, echo: bool) {
        let latency_us = now_ns.saturating_sub(intended_ns) / 1000;
        self.roll_to(now_ns.saturating_sub(self.control.base_ns) / 1_000_000_000);
        self.interval.borrow_mut().saturating_record(latency_us);
        self.interval_delivered
            .set(self.interval_delivered.get() + 1);
        let (start, end) = self.control.window();
        let mut report = self.report.borrow_mut();
        if echo {
            if (start..end).contains(&intended_ns) {
                report.echo_latency.saturating_record(latency_us);
            }
        } else if (start..end).contains(&intended_ns) {
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
    fn received(
        &self,
        tracker: &mut Tracker,
        received: &Received,
        echo_topic: Option<&str>,
    ) -> Result<(), ClientError> {
        let encoding = self.target.encoding;
        match received.framing {
            Framing::Single => {
                let msg = match &received.body {
                    Body::Text(text) => codec::decode_single_text(encoding, text)?,
                    Body::Bytes(bytes) => codec::decode_single(encoding, bytes)?,
                };
                self.apply(tracker, msg, clock::now_ns(), echo_topic);
            }
            Framing::Batch => {
                let mut msgs = Vec::new();
                codec::decode_batch(encoding, received.body.as_bytes(), &mut msgs)?;
                let now = clock::now_ns();
                for msg in msgs {
                    self.apply(tracker, msg, now, echo_topic);
                }
            }
        }
        Ok(())
    }

    fn apply(
        &self,
        tracker: &mut Tracker,
        msg: ServerMessage<'_>,
        now_ns: u64,
        echo_topic: Option<&str>,
    ) {
        match msg {
            ServerMessage::Event(e) => match tracker.on_event(&e.topic, e.seq) {
                Arrival::New | Arrival::Late => {
                    let echo = echo_topic == Some(e.topic.as_ref());
                    self.delivered(e.intended_ns, e.published_ns, now_ns, echo)
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
pub(super) async fn run_client<T: Transport + 'static>(
    spec: ClientSpec,
    index: usize,
    ctx: Rc<WorkerCtx>,
    shared: Rc<T::Shared>,
) -> Tracker {
    let dial = Dial {
        target: &ctx.target,
        source: spec.source,
        counters: &ctx.counters,
        index,
    };
    let echo_topic = spec.echo_topic.clone();
    let sender_slot: SenderSlot<T::Sender> = Rc::default();
    let sending = (ctx.messages.is_some() || ctx.echo.is_some()).then(|| {
        tokio::task::spawn_local(send_loop(spec.clone(), ctx.clone(), sender_slot.clone()))
    });
    let tracker = connection_loop::<T>(
        &spec,
        &dial,
        &ctx,
        &shared,
        &sender_slot,
        echo_topic.as_deref(),
    )
    .await;
    if let Some(task) = sending {
        task.abort();
    }
    tracker
}

/// Where the send loop finds the sender of the current connection (none
/// while disconnected).
type SenderSlot<S> = Rc<RefCell<Option<S>>>;

async fn connection_loop<T: Transport>(
    spec: &ClientSpec,
    dial: &Dial<'_>,
    ctx: &Rc<WorkerCtx>,
    shared: &T::Shared,
    sender_slot: &SenderSlot<T::Sender>,
    echo_topic: Option<&str>,
) -> Tracker {
    let control = ctx.control.clone();
    let signals = &ctx.signals;
    let mut tracker = Tracker::new(spec.topics.clone());
    tokio::select! {
        () = signals.until_stopped() => return tracker,
        () = tokio::time::sleep_until(clock::instant_at(spec.start_ns)) => {}
    }
    let mut failures = 0u32;
    'connection: loop {
        if failures > 0 {
            let backoff = (Duration::from_millis(100) * 2u32.pow(failures.min(5))).min(MAX_BACKOFF);
            tokio::select! {
                () = signals.until_stopped() => break,
                () = tokio::time::sleep(backoff) => {}
            }
        }
        let began = clock::now_ns();
        let attempt = {
            tokio::select! {
                () = signals.until_stopped() => break,
                r = tokio::time::timeout(CONNECT_TIMEOUT, T::connect(dial, shared, &tracker)) => r,
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
        if let Err(e) = ctx.received(&mut tracker, &first, echo_topic) {
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
        *sender_slot.borrow_mut() = Some(transport.sender(dial));
        // Waited on beside every receive, registered once per connection.
        let signal = signals.changed.notified();
        tokio::pin!(signal);
        // Until the run stops or the client holds every event up to the
        // final heads; either ends the connection, and the client with it.
        while !signals.stopped.get() && !signals.done(&tracker) {
            // The receive stays in flight while the final heads arrive:
            // dropping it would abandon a sent long poll mid-answer. It is
            // polled first: the signals are rare, and a receive that is
            // ready (a frame already read) then costs no wait on them.
            let received = {
                let recv = transport.recv(&tracker);
                tokio::pin!(recv);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut recv => break Some(r),
                        () = &mut signal => {
                            signal.set(signals.changed.notified());
                            if signals.stopped.get() || signals.done(&tracker) {
                                break None;
                            }
                        }
                    }
                }
            };
            let Some(received) = received else { break };
            let outcome =
                received.and_then(|received| ctx.received(&mut tracker, &received, echo_topic));
            if let Err(e) = outcome {
                ctx.error(e.kind());
                ctx.set_connected(false);
                sender_slot.borrow_mut().take();
                failures += 1;
                continue 'connection;
            }
        }
        if signals.done(&tracker) {
            control.complete.fetch_add(1, Ordering::Relaxed);
        }
        ctx.set_connected(false);
        break;
    }
    tracker
}

/// One of a client's message schedules: when each message is due.
struct Due {
    times: Schedule,
    /// Where this client starts in its schedule, so clients do not send in step.
    offset_ns: u64,
    start_ns: u64,
    next_ns: u64,
    payload: String,
    echo: bool,
}

impl Due {
    fn new(sends: &ClientSends, start_ns: u64, seed: u64, rng: &mut StdRng, echo: bool) -> Due {
        let mut due = Due {
            times: Schedule::new(sends.arrival, sends.rate_per_client, seed),
            offset_ns: rng.random_range(0..(1e9 / sends.rate_per_client) as u64),
            start_ns,
            next_ns: 0,
            payload: "x".repeat(sends.payload_bytes as usize),
            echo,
        };
        due.advance();
        due
    }

    fn advance(&mut self) {
        let offset = self.times.next().unwrap_or(u64::MAX);
        self.next_ns = self
            .start_ns
            .saturating_add(self.offset_ns)
            .saturating_add(offset);
    }
}

/// Sends the client's messages on their open-loop schedules, from the send
/// window's start to its end: chat lines to one of its topics, echo
/// requests to its own echo topic. A message due while the client has no
/// connection is not sent and counts as failed; a slow send delays the
/// next ones, and their latency, measured from the intended send time,
/// shows it.
async fn send_loop<S: MessageSender>(spec: ClientSpec, ctx: Rc<WorkerCtx>, slot: SenderSlot<S>) {
    let control = ctx.control.clone();
    let _sending = Active::new(&control.sending_clients);
    let (start, end) = control.send_window().await;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut schedules: Vec<Due> = Vec::new();
    if let Some(m) = &ctx.messages {
        schedules.push(Due::new(m, start, spec.seed ^ 0x6d73, &mut rng, false));
    }
    if let (Some(e), Some(_)) = (&ctx.echo, &spec.echo_topic) {
        schedules.push(Due::new(e, start, spec.seed ^ 0xec, &mut rng, true));
    }
    let room_topics: Vec<&String> = spec
        .topics
        .iter()
        .filter(|t| Some(*t) != spec.echo_topic.as_ref())
        .collect();
    loop {
        let Some(due) = schedules.iter_mut().min_by_key(|d| d.next_ns) else {
            return;
        };
        let intended_ns = due.next_ns;
        if intended_ns >= end {
            return;
        }
        let topic = match (&spec.echo_topic, due.echo) {
            (Some(own), true) => own,
            _ => room_topics[rng.random_range(0..room_topics.len())],
        };
        let message = ClientMessage::Publish {
            topic: topic.into(),
            intended_ns,
            payload: due.payload.as_str().into(),
        }
        .to_json();
        due.advance();
        match &ctx.send_clock {
            Some(send_clock) => send_clock.wait_until(intended_ns).await,
            None => tokio::time::sleep_until(clock::instant_at(intended_ns)).await,
        }
        let Some(mut sender) = slot.borrow_mut().take() else {
            ctx.report.borrow_mut().send_failed += 1;
            continue;
        };
        let result = sender.send(message).await;
        match result {
            Ok(()) => {
                ctx.report.borrow_mut().sent += 1;
                ctx.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
                // Back in its slot unless the connection was replaced meanwhile.
                slot.borrow_mut().get_or_insert(sender);
            }
            Err(e) => {
                ctx.error(e.kind());
                ctx.report.borrow_mut().send_failed += 1;
            }
        }
    }
}

/// Counts a send loop as active until it ends, however it ends (the task
/// may be dropped mid-send when the run stops).
struct Active<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Active<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Active(counter)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        // Release: whoever reads zero (Acquire) also sees every
        // `messages_sent` this loop counted.
        self.0.fetch_sub(1, Ordering::Release);
    }
}
