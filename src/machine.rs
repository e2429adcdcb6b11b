//! The whole machine, sampled once a second while a transport runs.
//!
//! pushbench's own processes are not the only thing that takes CPU: other
//! programs, the kernel's network work charged to nobody, and on a virtual
//! machine the hypervisor (steal). Latency on a busy 2-core machine is
//! mostly waiting for a CPU, so a run is only honest if it says when the
//! machine was busy. This module reads `/proc/stat` (busy, steal, iowait,
//! run queue) and the generator's own threads' run-queue wait
//! (`/proc/self/task/*/schedstat`) every second, on the timeline's seconds,
//! and never decides anything: the summary turns the samples into warnings.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock;

/// Busy plus stolen share of all CPUs in any measured second from which a
/// run is called CPU-bound: past it, waiting for a CPU becomes a visible
/// part of latency on a 2-core machine (runs at 77–84% busy already showed
/// medians 100× their unloaded value).
pub const BUSY_LIMIT_PCT: f64 = 75.0;
/// Share of all CPUs taken by the hypervisor in any measured second from
/// which the machine is called unsteady.
pub const STEAL_LIMIT_PCT: f64 = 5.0;
/// Time the generator's threads spent runnable but waiting for a CPU, in
/// milliseconds per second and per worker thread, from which the generator
/// is called starved: a quarter of every second. (On a 2-core machine
/// shared with the server, the stock ticker's two workers wait 120–150 ms
/// a second each at 37% machine load with a 0.5 ms median: waiting for a
/// CPU is normal there, only a starved generator is worth a warning.)
pub const GENERATOR_WAIT_LIMIT_MS: f64 = 250.0;

/// One second of the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineSample {
    /// The timeline second this covers: [second, second + 1) since the
    /// transport's run began.
    pub second: u64,
    /// User, nice, system, irq and softirq time, percent of all CPUs.
    pub busy_pct: f64,
    /// Time the hypervisor ran something else, percent of all CPUs.
    pub steal_pct: f64,
    pub iowait_pct: f64,
    /// Runnable tasks at the end of the second (`procs_running`).
    pub run_queue: u32,
    /// Run-queue wait of the generator's threads during the second, ms.
    pub generator_wait_ms: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default)]
struct CpuTimes {
    busy: u64,
    steal: u64,
    iowait: u64,
    total: u64,
}

/// Reads the aggregate `cpu` line and `procs_running` of /proc/stat.
fn read_stat() -> Option<(CpuTimes, u32)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(CpuTimes, u32)> {
    let cpu = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already inside user and nice.
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let times = CpuTimes {
        busy: at(0) + at(1) + at(2) + at(5) + at(6),
        iowait: at(4),
        steal: at(7),
        total: (0..8).map(at).sum(),
    };
    let running = text
        .lines()
        .find_map(|l| l.strip_prefix("procs_running "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((times, running))
}

/// Run-queue wait (the second field of schedstat, ns) summed over this
/// process's live threads.
fn generator_wait_ns() -> Option<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        sum += text.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// Fewest clock ticks (all CPUs together; 100 a second per CPU) a sample
/// must span to give a meaningful share.
const MIN_TICKS: u64 = 20;

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// A running sampler; [`Sampler::stop`] returns what it saw.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Vec<MachineSample>>,
}

impl Sampler {
    /// Samples at `base_ns` + 1 s, + 2 s, … (the timeline's seconds).
    pub fn start(base_ns: u64) -> std::io::Result<Sampler> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("machine-sampler".into())
            .spawn(move || {
                let mut samples = Vec::new();
                let mut last = read_stat().map(|(t, _)| t);
                let mut last_wait = generator_wait_ns();
                for second in 0.. {
                    let due = base_ns + (second + 1) * 1_000_000_000;
                    let wait = Duration::from_nanos(due.saturating_sub(clock::now_ns()));
                    match stopped.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                    let Some((now, running)) = read_stat() else {
                        continue;
                    };
                    let wait_now = generator_wait_ns();
                    if let Some(prev) = last {
                        let total = now.total.saturating_sub(prev.total);
                        // A sampler that woke late leaves the next second a
                        // sliver of a few clock ticks, whose busy share reads
                        // 0%, 50% or 100%: it is folded into the next sample.
                        if total < MIN_TICKS {
                            continue;
                        }
                        samples.push(MachineSample {
                            second,
                            busy_pct: pct(now.busy.saturating_sub(prev.busy), total),
                            steal_pct: pct(now.steal.saturating_sub(prev.steal), total),
                            iowait_pct: pct(now.iowait.saturating_sub(prev.iowait), total),
                            // The sampler itself is running.
                            run_queue: running.saturating_sub(1),
                            generator_wait_ms: match (last_wait, wait_now) {
                                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
                                _ => None,
                            },
                        });
                    }
                    last = Some(now);
                    last_wait = wait_now;
                }
                samples
            })?;
        Ok(Sampler { stop, thread })
    }

    pub fn stop(self) -> Vec<MachineSample> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cpu_line_and_the_run_queue() {
        let text = "cpu  100 5 50 800 10 3 2 30 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\nprocs_running 3\nprocs_blocked 0\n";
        let (t, running) = parse_stat(text).unwrap();
        assert_eq!(t.busy, 100 + 5 + 50 + 3 + 2);
        assert_eq!(t.steal, 30);
        assert_eq!(t.iowait, 10);
        assert_eq!(t.total, 100 + 5 + 50 + 800 + 10 + 3 + 2 + 30);
        assert_eq!(running, 3);
    }

    #[test]
    fn a_busy_thread_shows_in_the_samples() {
        let base = clock::now_ns();
        let sampler = Sampler::start(base).unwrap();
        let spin_until = base + 2_300_000_000;
        while clock::now_ns() < spin_until {
            std::hint::black_box(0u64);
        }
        let samples = sampler.stop();
        assert_eq!(samples.iter().map(|s| s.second).collect::<Vec<_>>(), [0, 1]);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // One spinning thread is at least most of one core's share.
        for s in &samples {
            assert!(
                s.busy_pct + s.steal_pct >= 0.5 * 100.0 / cores,
                "{s:?} on {cores} cores"
            );
            assert!(s.busy_pct <= 100.0);
        }
    }
}
