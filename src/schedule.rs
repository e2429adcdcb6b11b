//! Open-loop schedules: *when* things are meant to happen, decided apart
//! from whoever does them.
//!
//! The publisher asks this module for the intended time of each event and
//! stamps it into the event; it never waits for a delivery, so a stalled
//! server shows up as latency instead of silently slowing the workload down
//! (coordinated omission).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};

/// How event arrivals are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly spaced, exactly `rate` per second.
    Constant,
    /// A Poisson process: exponential gaps with mean `1/rate`, the way
    /// independent sources (traders, users) produce events.
    Poisson,
}

/// Intended offsets, in nanoseconds from the schedule's start.
pub struct Schedule {
    arrival: Arrival,
    period_ns: f64,
    exp: Option<Exp<f64>>,
    rng: StdRng,
    index: u64,
    offset_ns: f64,
}

impl Schedule {
    /// `rate` is in events per second and must be positive.
    pub fn new(arrival: Arrival, rate: f64, seed: u64) -> Self {
        assert!(
            rate > 0.0 && rate.is_finite(),
            "rate validated by the scenario"
        );
        Schedule {
            arrival,
            period_ns: 1e9 / rate,
            exp: Exp::new(rate / 1e9).ok(),
            rng: StdRng::seed_from_u64(seed),
            index: 0,
            offset_ns: 0.0,
        }
    }
}

impl Iterator for Schedule {
    type Item = u64;

    /// The next intended offset in ns. Constant arrivals are computed from
    /// the index, not accumulated, so they do not drift.
    fn next(&mut self) -> Option<u64> {
        let at = match self.arrival {
            Arrival::Constant => self.index as f64 * self.period_ns,
            Arrival::Poisson => {
                let exp = self.exp.expect("positive rate");
                self.offset_ns += exp.sample(&mut self.rng);
                self.offset_ns
            }
        };
        self.index += 1;
        Some(at as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_schedule_is_evenly_spaced() {
        let offsets: Vec<u64> = Schedule::new(Arrival::Constant, 4.0, 1).take(4).collect();
        assert_eq!(offsets, vec![0, 250_000_000, 500_000_000, 750_000_000]);
    }

    #[test]
    fn poisson_schedule_has_the_requested_mean_rate_and_is_reproducible() {
        let rate = 1000.0;
        let n = 20_000;
        let last = Schedule::new(Arrival::Poisson, rate, 7).nth(n - 1).unwrap();
        let measured = n as f64 / (last as f64 / 1e9);
        assert!(
            (measured / rate - 1.0).abs() < 0.03,
            "measured rate {measured}"
        );
        let a: Vec<u64> = Schedule::new(Arrival::Poisson, rate, 7).take(10).collect();
        let b: Vec<u64> = Schedule::new(Arrival::Poisson, rate, 7).take(10).collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
    }
}
