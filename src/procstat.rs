//! CPU time and memory of a process, read from /proc.
//!
//! CPU time is user + system over all threads, so the server's and the
//! generator's costs can be charged per delivered event. It is read from
//! the process's CPU-time clock (`clock_getcpuclockid`), which counts in
//! nanoseconds: /proc's utime and stime come in 10 ms ticks, which made
//! two identical short runs differ by half on CPU per event.

use std::time::Duration;

use procfs::process::Process;

/// A process to read figures of: ourselves or a child.
#[derive(Clone, Copy, Debug)]
pub struct ProcHandle(Option<u32>);

impl ProcHandle {
    pub fn myself() -> ProcHandle {
        ProcHandle(None)
    }

    pub fn pid(pid: u32) -> ProcHandle {
        ProcHandle(Some(pid))
    }

    fn process(&self) -> Option<Process> {
        match self.0 {
            None => Process::myself().ok(),
            Some(pid) => Process::new(pid as i32).ok(),
        }
    }

    /// User + system CPU time so far, all threads (those that have ended
    /// included), to the nanosecond. `None` once the process is gone.
    pub fn cpu_time(&self) -> Option<Duration> {
        use nix::time::{ClockId, clock_getcpuclockid, clock_gettime};
        let clock = match self.0 {
            None => ClockId::CLOCK_PROCESS_CPUTIME_ID,
            Some(pid) => clock_getcpuclockid(nix::unistd::Pid::from_raw(pid as i32)).ok()?,
        };
        let t = clock_gettime(clock).ok()?;
        Some(Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
    }

    /// Resident set size now, in bytes.
    pub fn rss(&self) -> Option<u64> {
        let stat = self.process()?.stat().ok()?;
        Some(stat.rss * procfs::page_size())
    }

    /// Peak resident set size (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        self.process()?.status().ok()?.vmhwm.map(|kb| kb * 1024)
    }

    /// Restarts the peak-RSS record (Linux `clear_refs` 5), so one generator
    /// process can report a peak per transport. Best effort.
    pub fn reset_peak_rss(&self) {
        let path = match self.0 {
            None => "/proc/self/clear_refs".to_string(),
            Some(pid) => format!("/proc/{pid}/clear_refs"),
        };
        let _ = std::fs::write(path, "5");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_figures() {
        let me = ProcHandle::myself();
        assert!(me.rss().unwrap() > 0);
        assert!(me.peak_rss().unwrap() >= me.rss().unwrap() / 2);
        assert!(me.cpu_time().is_some());
    }

    #[test]
    fn cpu_time_resolves_below_a_clock_tick() {
        // Spin until the clock moves, then check the step is far below the
        // 10 ms of a /proc tick.
        let me = ProcHandle::myself();
        let first = me.cpu_time().unwrap();
        let mut next = first;
        while next == first {
            next = me.cpu_time().unwrap();
        }
        assert!(
            next - first < Duration::from_millis(1),
            "{:?}",
            next - first
        );
    }

    #[test]
    fn another_process_cpu_time_is_read_and_a_gone_one_is_none() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let handle = ProcHandle::pid(child.id());
        assert!(handle.cpu_time().is_some());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(handle.cpu_time().is_none());
    }
}
