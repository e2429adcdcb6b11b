//! Wake-ups for client sends at their intended times, to the microsecond.
//!
//! Client messages follow an open-loop schedule, and their latency runs
//! from the intended send time. The workers' async runtime keeps time in
//! whole milliseconds and rounds every deadline up, so a message would
//! leave up to 1 ms late, and that lateness (the generator's, not the
//! transport's) would be charged to every transport. Like the server's
//! publisher, this clock sleeps on the kernel's high-resolution timer, on
//! a thread of its own per worker, and wakes each waiting send when due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::clock;

struct Due {
    at_ns: u64,
    /// Registration order: equal times wake in the order they were asked for.
    order: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ns, self.order) == (other.at_ns, other.order)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ns, self.order).cmp(&(other.at_ns, other.order))
    }
}

/// One worker's send clock. Its thread ends when the clock is dropped.
pub struct SendClock {
    requests: mpsc::Sender<(u64, oneshot::Sender<()>)>,
}

impl SendClock {
    pub fn start(name: String) -> std::io::Result<SendClock> {
        let (requests, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || run(&rx))?;
        Ok(SendClock { requests })
    }

    /// Completes at `at_ns` on the monotonic clock (at once if it has passed).
    pub async fn wait_until(&self, at_ns: u64) {
        if at_ns <= clock::now_ns() {
            return;
        }
        let (wake, woken) = oneshot::channel();
        if self.requests.send((at_ns, wake)).is_err() || woken.await.is_err() {
            // No clock thread: fall back on the runtime's coarser timer.
            tokio::time::sleep_until(clock::instant_at(at_ns)).await;
        }
    }
}

fn run(requests: &mpsc::Receiver<(u64, oneshot::Sender<()>)>) {
    let mut due: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        let now = clock::now_ns();
        while due.peek().is_some_and(|d| d.0.at_ns <= now) {
            let Reverse(d) = due.pop().expect("peeked");
            let _ = d.wake.send(());
        }
        let next = match due.peek() {
            Some(d) => requests.recv_timeout(Duration::from_nanos(d.0.at_ns - now)),
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((at_ns, wake)) => {
                order += 1;
                due.push(Reverse(Due { at_ns, order, wake }));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_in_due_order_and_never_early() {
        let clock = SendClock::start("test-send-clock".into()).unwrap();
        let base = clock::now_ns() + 5_000_000;
        let woke = std::sync::Mutex::new(Vec::new());
        let waits = [3u64, 1, 2].map(|k| {
            let (clock, woke) = (&clock, &woke);
            async move {
                // 20 ms apart: two waiters woken in one late tick are
                // polled in join_all's order, not due order, so gaps must
                // outlast a scheduling stall of a loaded machine (2 ms
                // apart failed once under a parallel build).
                let at = base + k * 20_000_000;
                clock.wait_until(at).await;
                assert!(clock::now_ns() >= at, "woke early");
                woke.lock().unwrap().push(k);
            }
        });
        futures_util::future::join_all(waits).await;
        assert_eq!(*woke.lock().unwrap(), vec![1, 2, 3]);
    }
}
