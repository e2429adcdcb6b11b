//! The delay stage: holds every packet of the emulated link for its
//! one-way delay (± jitter), drops the share the scenario loses, and
//! measures how exactly it did so.
//!
//! It runs as its own process (`pushbench link-stage`, started by `run` in
//! the generator's namespace) so that its CPU is measured apart from the
//! generator's, like the server's. The kernel hands it each packet through
//! NFQUEUE (the generator's namespace queues outgoing packets on queue
//! [`QUEUE_UP`] and incoming ones on [`QUEUE_DOWN`]); a packet nobody
//! judges is never sent, so nothing passes the link undelayed.
//!
//! The queue's socket is read without blocking. Between reads the stage
//! waits in `poll` on a duplicate of that socket (the crate that speaks
//! NFQUEUE exposes no descriptor, so the stage takes its own copy with
//! `pidfd_getfd`) until a packet comes or the next one is due. Where that
//! is not possible it looks every [`POLL`] instead, noticing a packet up
//! to that late; the RTT probe before each run measures either way.

use std::collections::VecDeque;
use std::io::{BufRead as _, ErrorKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

use crate::clock;

/// Queue of the packets the generator sends (towards the server).
pub const QUEUE_UP: u16 = 0;
/// Queue of the packets the generator receives (from the server).
pub const QUEUE_DOWN: u16 = 1;
/// Longest sleep between two looks at the queue.
pub const POLL: Duration = Duration::from_micros(100);
/// Packets the kernel holds for the stage per queue before it drops.
const KERNEL_QUEUE_PACKETS: u32 = 65_536;
/// The line the stage prints once both queues are bound.
pub const READY: &str = "pushbench link stage ready";
/// Packets read between two releases at most.
const BATCH: usize = 64;
/// Receive buffer of the queue's socket: room for the notices of a burst
/// (one event fanned out to thousands of clients) while the stage sleeps.
const SOCKET_BUFFER: usize = 32 << 20;

/// What the stage does to each direction.
#[derive(Clone, Copy, Debug)]
pub struct StageConfig {
    pub delay_up: Duration,
    pub delay_down: Duration,
    pub jitter: Duration,
    /// Fraction of packets dropped, 0..=1.
    pub loss_up: f64,
    pub loss_down: f64,
    pub seed: u64,
}

/// One direction's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DirectionReport {
    /// Packets the stage was handed.
    pub packets: u64,
    /// Packets dropped as the scenario's loss.
    pub dropped: u64,
    /// Time each passed packet was held, from when the stage noticed it.
    pub held_p50_us: Option<u64>,
    pub held_p99_us: Option<u64>,
    pub held_max_us: Option<u64>,
    /// How late packets left after their due time: the stage's own error
    /// once it has a packet. The time between the kernel queueing a packet
    /// and the stage reading it is not in it (the RTT probe includes it).
    pub late_p50_us: Option<u64>,
    pub late_p99_us: Option<u64>,
    pub late_max_us: Option<u64>,
    /// Verdicts that could not be sent (the packet is then lost).
    pub verdict_errors: u64,
}

/// What the stage reports when it stops.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StageReport {
    pub up: DirectionReport,
    pub down: DirectionReport,
    /// Packets the kernel dropped because the stage's queue was full or its
    /// socket could not take them (from /proc/net/netfilter/nfnetlink_queue);
    /// none when that file cannot be read.
    pub overflow_dropped: Option<u64>,
    /// Packets still held when the stage stopped, let go at once.
    pub unreleased: u64,
    /// Errors the queue's socket reported: refused verdicts (the packet
    /// is lost) or notices the socket could not take.
    pub queue_errors: u64,
    /// True when the stage waited on its queue's socket; false when it had
    /// to look every [`POLL`] (a packet then waits up to that long unseen).
    pub waited_on_socket: bool,
}

struct Held {
    due_ns: u64,
    noticed_ns: u64,
    msg: nfq::Message,
}

struct Direction {
    delay_ns: u64,
    loss: f64,
    last_due_ns: u64,
    queue: VecDeque<Held>,
    held_us: Histogram<u64>,
    late_us: Histogram<u64>,
    report: DirectionReport,
}

impl Direction {
    fn new(delay: Duration, loss: f64) -> Direction {
        let hist = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        Direction {
            delay_ns: delay.as_nanos() as u64,
            loss,
            last_due_ns: 0,
            queue: VecDeque::new(),
            held_us: hist(),
            late_us: hist(),
            report: DirectionReport::default(),
        }
    }

    fn finish(mut self) -> DirectionReport {
        let q = |h: &Histogram<u64>, at: f64| (!h.is_empty()).then(|| h.value_at_quantile(at));
        self.report.held_p50_us = q(&self.held_us, 0.5);
        self.report.held_p99_us = q(&self.held_us, 0.99);
        self.report.held_max_us = (!self.held_us.is_empty()).then(|| self.held_us.max());
        self.report.late_p50_us = q(&self.late_us, 0.5);
        self.report.late_p99_us = q(&self.late_us, 0.99);
        self.report.late_max_us = (!self.late_us.is_empty()).then(|| self.late_us.max());
        self.report
    }
}

/// Runs the stage until its standard input closes, then prints its
/// [`StageReport`] as one JSON line. Prints [`READY`] once it holds both
/// queues.
pub fn run(config: StageConfig) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // Sleeps end when asked, not up to 50 µs later.
    let _ = nix::sys::prctl::set_timerslack(1);
    // The link is the network, not a program competing for the machine:
    // ahead of the server and generator when they want the same core (its
    // CPU is still measured and reported).
    let _ = rustix::process::setpriority_process(None, -10);
    let before = open_sockets();
    let mut q = nfq::Queue::open().context("cannot open a netfilter queue socket")?;
    let wake = own_copy_of_new_socket(&before);
    if let Some(fd) = &wake {
        let _ = nix::sys::socket::setsockopt(
            fd,
            nix::sys::socket::sockopt::RcvBufForce,
            &SOCKET_BUFFER,
        );
    }
    for num in [QUEUE_UP, QUEUE_DOWN] {
        q.bind(num)
            .with_context(|| format!("cannot bind netfilter queue {num}"))?;
        // Only the packet's metadata comes up: the stage needs no payload,
        // and a held packet then pins 4 KiB instead of 64.
        q.set_copy_range(num, 0)?;
        q.set_queue_max_len(num, KERNEL_QUEUE_PACKETS)?;
    }
    q.set_nonblocking(true);
    println!("{READY}");

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for _ in std::io::stdin().lock().lines() {}
            stop.store(true, Ordering::Release);
        });
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let jitter_ns = config.jitter.as_nanos() as i64;
    let mut dirs = [
        Direction::new(config.delay_up, config.loss_up),
        Direction::new(config.delay_down, config.loss_down),
    ];
    let mut queue_errors = 0u64;
    while !stop.load(Ordering::Acquire) {
        // At most a batch between releases: a steady stream of arrivals
        // must not hold back packets that are due.
        for _ in 0..BATCH {
            let mut msg = match q.recv() {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The kernel's answer to a refused verdict arrives here,
                // and so does a socket overrun: counted, not fatal (a
                // stage that stops would stop the link).
                Err(_) => {
                    queue_errors += 1;
                    continue;
                }
            };
            let now = clock::now_ns();
            let d = &mut dirs[usize::from(msg.get_queue_num() == QUEUE_DOWN)];
            d.report.packets += 1;
            if d.loss > 0.0 && rng.random::<f64>() < d.loss {
                d.report.dropped += 1;
                msg.set_verdict(nfq::Verdict::Drop);
                if q.verdict(msg).is_err() {
                    d.report.verdict_errors += 1;
                }
                continue;
            }
            let jitter = if jitter_ns > 0 {
                rng.random_range(-jitter_ns..=jitter_ns)
            } else {
                0
            };
            // No packet overtakes an earlier one of its direction, as on a
            // real path: jitter stretches gaps, it does not reorder.
            let due = (now + d.delay_ns)
                .saturating_add_signed(jitter)
                .max(d.last_due_ns);
            d.last_due_ns = due;
            d.queue.push_back(Held {
                due_ns: due,
                noticed_ns: now,
                msg,
            });
        }
        let now = clock::now_ns();
        let mut next_due = u64::MAX;
        for d in &mut dirs {
            while d.queue.front().is_some_and(|h| h.due_ns <= now) {
                let h = d.queue.pop_front().expect("front exists");
                d.held_us.saturating_record((now - h.noticed_ns) / 1_000);
                d.late_us.saturating_record((now - h.due_ns) / 1_000);
                let mut msg = h.msg;
                msg.set_verdict(nfq::Verdict::Accept);
                if q.verdict(msg).is_err() {
                    d.report.verdict_errors += 1;
                }
            }
            if let Some(h) = d.queue.front() {
                next_due = next_due.min(h.due_ns);
            }
        }
        let wait = next_due.saturating_sub(clock::now_ns());
        match &wake {
            // Until a packet comes, the next is due, or (to see a stop) 100 ms.
            Some(fd) => {
                let wait = Duration::from_nanos(wait.min(100_000_000));
                let timeout = rustix::time::Timespec {
                    tv_sec: wait.as_secs() as i64,
                    tv_nsec: i64::from(wait.subsec_nanos()),
                };
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                let _ = rustix::event::poll(&mut fds, Some(&timeout));
            }
            None => {
                let wait = wait.min(POLL.as_nanos() as u64);
                if wait > 0 {
                    std::thread::sleep(Duration::from_nanos(wait));
                }
            }
        }
    }
    // Packets still held go on rather than vanish with the socket.
    let mut unreleased = 0;
    for d in &mut dirs {
        for h in d.queue.drain(..) {
            unreleased += 1;
            let mut msg = h.msg;
            msg.set_verdict(nfq::Verdict::Accept);
            let _ = q.verdict(msg);
        }
    }
    let [up, down] = dirs;
    let report = StageReport {
        unreleased,
        queue_errors,
        up: up.finish(),
        down: down.finish(),
        overflow_dropped: overflow_dropped(),
        waited_on_socket: wake.is_some(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The numbers of this process's open socket descriptors.
fn open_sockets() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A descriptor of our own for the one socket opened since `before` (the
/// queue's), duplicated through `pidfd_getfd` on this very process; none
/// if that is not exactly one socket or the kernel refuses.
fn own_copy_of_new_socket(before: &[i32]) -> Option<rustix::fd::OwnedFd> {
    let new: Vec<i32> = open_sockets()
        .into_iter()
        .filter(|fd| !before.contains(fd))
        .collect();
    let [fd] = new[..] else { return None };
    let me = rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    rustix::process::pidfd_getfd(&me, fd, rustix::process::PidfdGetfdFlags::empty()).ok()
}

/// Packets this namespace's queues dropped for want of room, from
/// `/proc/net/netfilter/nfnetlink_queue`: per queue, the 6th column is
/// `queue_dropped` and the 7th `user_dropped`.
fn overflow_dropped() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netfilter/nfnetlink_queue").ok()?;
    text.lines()
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let col = |i: usize| cols.get(i).and_then(|c| c.parse::<i64>().ok());
            Some((col(5)? + col(6)?).max(0) as u64)
        })
        .sum::<Option<u64>>()
}
