//! CPU time and memory of a process, read from /proc.
//!
//! CPU time is user + system over all threads, so the server's and the
//! generator's costs can be charged per delivered event.

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

    /// User + system CPU time so far, all threads.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = self.process()?.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        Some(Duration::from_secs_f64(
            (stat.utime + stat.stime) as f64 / ticks,
        ))
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
}
