//! One generator worker: a thread with a single-threaded event loop that
//! runs its clients and owns their histograms.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::LocalSet;

use super::client_loop::{Signals, WorkerCtx, mirror_signals, run_client};
use super::send_clock::SendClock;
use super::{ClientSpec, Control, IntervalReport, WorkerReport, new_histogram};
use crate::client::{
    CounterSnapshot, LongPollClient, LongPollCloseClient, LongPollH2Client, ShortPollClient,
    SocketCounters, SocketIoPollingClient, SocketIoWebSocketClient, SseClient, Target, Transport,
    WebSocketClient, WebSocketH2Client,
};
use crate::clock;
use crate::scenario::ClientSends;
use crate::scenario::TransportKind;

pub struct Worker {
    pub counters: Arc<SocketCounters>,
    handle: std::thread::JoinHandle<WorkerReport>,
}

impl Worker {
    /// Waits for the worker's clients to end (they end when the run's stop
    /// signal fires) and returns what it measured; `Err` with the panic's
    /// message if the worker thread panicked (its figures are lost, so the
    /// run is incomplete).
    pub fn join(self) -> Result<WorkerReport, String> {
        self.handle.join().map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into())
        })
    }
}

pub fn spawn_worker(
    id: usize,
    kind: TransportKind,
    target: Target,
    clients: Vec<ClientSpec>,
    control: Arc<Control>,
    sends: (Option<ClientSends>, Option<ClientSends>),
    intervals: UnboundedSender<IntervalReport>,
) -> std::io::Result<Worker> {
    let counters = Arc::new(SocketCounters::default());
    let thread_counters = counters.clone();
    let handle = std::thread::Builder::new()
        .name(format!("pushbench-worker-{id}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("worker runtime");
            let send_clock = if sends.0.is_some() || sends.1.is_some() {
                SendClock::start(format!("pushbench-sends-{id}")).ok()
            } else {
                None
            };
            let first_second = clock::now_ns().saturating_sub(control.base_ns) / 1_000_000_000;
            let ctx = Rc::new(WorkerCtx {
                target,
                intervals: intervals.clone(),
                interval_index: Cell::new(first_second),
                control,
                counters: thread_counters,
                report: RefCell::new(WorkerReport::empty()),
                interval: RefCell::new(new_histogram()),
                interval_delivered: Cell::new(0),
                interval_errors: Cell::new(0),
                connected: Cell::new(0),
                last_counters: Cell::new(CounterSnapshot::default()),
                messages: sends.0,
                echo: sends.1,
                send_clock,
                signals: Signals::default(),
            });
            LocalSet::new().block_on(&rt, run(kind, clients, ctx, intervals))
        })?;
    Ok(Worker { counters, handle })
}

async fn run(
    kind: TransportKind,
    clients: Vec<ClientSpec>,
    ctx: Rc<WorkerCtx>,
    intervals: UnboundedSender<IntervalReport>,
) -> WorkerReport {
    match kind {
        TransportKind::Websocket => run_all::<WebSocketClient>(clients, ctx, intervals).await,
        TransportKind::WebsocketH2 => run_all::<WebSocketH2Client>(clients, ctx, intervals).await,
        TransportKind::Sse => run_all::<SseClient>(clients, ctx, intervals).await,
        TransportKind::LongPolling => run_all::<LongPollClient>(clients, ctx, intervals).await,
        TransportKind::LongPollingClose => {
            run_all::<LongPollCloseClient>(clients, ctx, intervals).await
        }
        TransportKind::LongPollingH2 => run_all::<LongPollH2Client>(clients, ctx, intervals).await,
        TransportKind::ShortPolling => run_all::<ShortPollClient>(clients, ctx, intervals).await,
        TransportKind::SocketioPolling => {
            run_all::<SocketIoPollingClient>(clients, ctx, intervals).await
        }
        TransportKind::SocketioWebsocket => {
            run_all::<SocketIoWebSocketClient>(clients, ctx, intervals).await
        }
    }
}

async fn run_all<T: Transport + 'static>(
    clients: Vec<ClientSpec>,
    ctx: Rc<WorkerCtx>,
    intervals: UnboundedSender<IntervalReport>,
) -> WorkerReport {
    let shared = Rc::new(T::Shared::default());
    let mirror = tokio::task::spawn_local(mirror_signals(ctx.clone()));
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, spec)| {
            tokio::task::spawn_local(run_client::<T>(spec, index, ctx.clone(), shared.clone()))
        })
        .collect();
    let ticker = tokio::task::spawn_local(tick(ctx.clone()));
    let mut trackers = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(tracker) = t.await {
            trackers.push(tracker);
        }
    }
    ticker.abort();
    let _ = ticker.await;
    mirror.abort();
    let _ = mirror.await;
    // The seconds up to now, then the one under way.
    let now = (clock::now_ns().saturating_sub(ctx.control.base_ns)) / 1_000_000_000;
    ctx.roll_to(now);
    let _ = intervals.send(ctx.take_interval(ctx.interval_index.get()));

    let heads = ctx.control.final_heads().unwrap_or_default();
    let mut report = ctx.report.replace(WorkerReport::empty());
    for t in &trackers {
        report.delivery += t.finish(&heads);
    }
    report
}

/// Hands the coordinator one report per second of this worker: each
/// second closes at its boundary, or earlier, when the first event of the
/// next second arrives (see `WorkerCtx::roll_to`).
async fn tick(ctx: Rc<WorkerCtx>) {
    let base = ctx.control.base_ns;
    let mut k = clock::now_ns().saturating_sub(base) / 1_000_000_000 + 1;
    loop {
        tokio::time::sleep_until(clock::instant_at(base + k * 1_000_000_000)).await;
        if !ctx.roll_to(k) {
            return;
        }
        k += 1;
    }
}
