//! The load generator: worker threads, each running its share of clients on
//! its own single-threaded event loop with its own histograms and counters.
//! Nothing on the hot path is shared between workers; the coordinator
//! merges their reports at the end (and their one-second intervals as they
//! come).

mod client_loop;
mod send_clock;
pub mod tracker;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use worker::{Worker, spawn_worker};

use crate::client::{CounterSnapshot, ErrorKind};
use tracker::DeliveryCounts;

/// Latencies are recorded in microseconds, from 1 µs to one hour.
pub const HIST_MAX_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// What the coordinator and every worker share: signals and phase edges.
pub struct Control {
    /// Zero of the one-second timeline (monotonic ns).
    pub base_ns: u64,
    /// Clients stop when this fires.
    pub stop: CancellationToken,
    /// Events intended inside [start, end) are the measured ones; events
    /// received inside it count toward throughput and cost. Unset (MAX)
    /// until the publisher's start is fixed.
    window_start_ns: AtomicU64,
    window_end_ns: AtomicU64,
    /// The newest sequence number of every topic once publishing has ended;
    /// clients that hold everything up to it are done.
    final_heads: watch::Sender<Option<Arc<HashMap<String, u64>>>>,
    /// Clients whose subscription has been answered at least once.
    pub subscribed: AtomicU64,
    /// Clients connected right now.
    pub connected: AtomicU64,
    /// Clients that hold every event up to the final heads.
    pub complete: AtomicU64,
    /// When clients send their messages: [start, end) on the monotonic
    /// clock, the same span as the server's publishing. Unset until fixed.
    send_window: watch::Sender<Option<(u64, u64)>>,
    /// Clients whose send loop has not ended (its last message may still be
    /// on its way): the final heads are read only once this is zero. Read
    /// it with `Acquire`: at zero, the workers' `messages_sent` are final.
    pub sending_clients: AtomicU64,
}

impl Control {
    pub fn new(base_ns: u64) -> Arc<Control> {
        Arc::new(Control {
            base_ns,
            stop: CancellationToken::new(),
            window_start_ns: AtomicU64::new(u64::MAX),
            window_end_ns: AtomicU64::new(u64::MAX),
            final_heads: watch::Sender::new(None),
            subscribed: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            complete: AtomicU64::new(0),
            send_window: watch::Sender::new(None),
            sending_clients: AtomicU64::new(0),
        })
    }

    pub fn set_window(&self, start_ns: u64, end_ns: u64) {
        self.window_start_ns.store(start_ns, Ordering::Relaxed);
        self.window_end_ns.store(end_ns, Ordering::Relaxed);
    }

    fn window(&self) -> (u64, u64) {
        (
            self.window_start_ns.load(Ordering::Relaxed),
            self.window_end_ns.load(Ordering::Relaxed),
        )
    }

    pub fn set_final_heads(&self, heads: HashMap<String, u64>) {
        self.final_heads.send_replace(Some(Arc::new(heads)));
    }

    pub fn final_heads(&self) -> Option<Arc<HashMap<String, u64>>> {
        self.final_heads.borrow().clone()
    }

    pub fn set_send_window(&self, start_ns: u64, end_ns: u64) {
        self.send_window.send_replace(Some((start_ns, end_ns)));
    }

    /// Waits until the send window is fixed.
    async fn send_window(&self) -> (u64, u64) {
        let mut rx = self.send_window.subscribe();
        let window = *rx
            .wait_for(Option::is_some)
            .await
            .expect("sender lives in self");
        window.expect("waited for Some")
    }
}

/// One client's part of the workload.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// When it connects (monotonic ns), from the connect ramp.
    pub start_ns: u64,
    pub source: IpAddr,
    /// Every topic it subscribes to, its echo topic (if any) included.
    pub topics: Vec<String>,
    /// The topic the server answers its echo requests on, its alone.
    pub echo_topic: Option<String>,
    /// Seeds its message schedules.
    pub seed: u64,
}

/// One second of one worker (or, merged, of all workers).
pub struct IntervalReport {
    /// Seconds since [`Control::base_ns`].
    pub index: u64,
    /// Latency from intended publish time of events received in this second.
    pub latency: Histogram<u64>,
    pub delivered: u64,
    pub counters: CounterSnapshot,
    /// Clients connected at the end of the second.
    pub connected: u64,
    pub errors: u64,
}

impl IntervalReport {
    pub fn merge(&mut self, other: &IntervalReport) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.delivered += other.delivered;
        self.counters = self.counters + other.counters;
        self.connected += other.connected;
        self.errors += other.errors;
    }
}

/// Everything one worker measured, for the whole run.
pub struct WorkerReport {
    /// Intended publish time to receive, events intended in the window.
    pub latency: Histogram<u64>,
    /// Actual publish time to receive, same events.
    pub latency_published: Histogram<u64>,
    /// Echo round trips: intended send time to the answer's arrival.
    pub echo_latency: Histogram<u64>,
    /// TCP connect + handshake + subscription answer, every (re)connect.
    pub connect: Histogram<u64>,
    /// Client messages (chat lines and echo requests) sent: over HTTP,
    /// accepted by the server (204); over a WebSocket, only handed to the
    /// connection (the kernel's socket buffer, or an HTTP/2 stream's queue),
    /// with no answer from the server.
    pub sent: u64,
    /// Client messages that could not be sent (no connection, or it failed).
    pub send_failed: u64,
    pub delivery: DeliveryCounts,
    pub delivered_in_window: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl WorkerReport {
    pub fn empty() -> WorkerReport {
        WorkerReport {
            latency: new_histogram(),
            latency_published: new_histogram(),
            echo_latency: new_histogram(),
            connect: new_histogram(),
            sent: 0,
            send_failed: 0,
            delivery: DeliveryCounts::default(),
            delivered_in_window: 0,
            errors: BTreeMap::new(),
        }
    }

    pub fn merge(&mut self, o: &WorkerReport) {
        self.latency.add(&o.latency).expect("same bounds");
        self.latency_published
            .add(&o.latency_published)
            .expect("same bounds");
        self.echo_latency.add(&o.echo_latency).expect("same bounds");
        self.connect.add(&o.connect).expect("same bounds");
        self.sent += o.sent;
        self.send_failed += o.send_failed;
        self.delivery += o.delivery;
        self.delivered_in_window += o.delivered_in_window;
        for (k, v) in &o.errors {
            *self.errors.entry(*k).or_default() += v;
        }
    }
}
