//! The one clock every timestamp in pushbench is read from.
//!
//! Latency is measured across two processes (the server stamps an event's
//! intended publish time, the generator stamps its receive time), so the
//! clock must be shared by every process on the host and must not jump when
//! the wall clock is stepped. `CLOCK_MONOTONIC` is both: one per host, never
//! set by NTP steps. `std::time::Instant` reads the same clock but hides the
//! value, which we must put on the wire.

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// Added to the monotonic clock's reading: every timestamp then has 18
/// decimal digits for the first 28 years after boot, so a JSON event has
/// the same size on a machine booted a minute ago and one up for months.
/// Without it, bytes per event grew by 2 B per tenfold of uptime (a
/// deterministic figure that depended on the machine).
pub const OFFSET_NS: u64 = 100_000_000_000_000_000;

/// Nanoseconds on the host's monotonic clock, plus [`OFFSET_NS`].
pub fn now_ns() -> u64 {
    let ts = clock_gettime(ClockId::Monotonic);
    // The monotonic clock counts from boot and is never negative.
    OFFSET_NS + ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A `tokio::time::Instant` for a point on the monotonic clock, so tasks can
/// sleep until a time that another process (or the scenario plan) chose.
pub fn instant_at(ns: u64) -> tokio::time::Instant {
    let now_ns = now_ns();
    let now = tokio::time::Instant::now();
    if ns >= now_ns {
        now + Duration::from_nanos(ns - now_ns)
    } else {
        now.checked_sub(Duration::from_nanos(now_ns - ns))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_never_goes_back() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert!(a > 0);
    }

    #[test]
    fn timestamps_have_a_fixed_number_of_digits() {
        assert_eq!(now_ns().to_string().len(), 18);
    }
}
