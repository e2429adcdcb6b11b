//! Emulated network links: a scenario's `[network]` section, the presets it
//! may name, and the link `run` builds for it.
//!
//! The link is real kernel TCP between two network namespaces joined by a
//! veth pair: the server in one, the generator in the other. Rate limits
//! are the kernel's token bucket (`tbf`); delay, jitter and loss are
//! pushbench's own stage on NFQUEUE ([`stage`]), because the kernels this
//! runs on may have no netem. See docs/network.md.

pub mod link;
pub mod stage;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A validated `[network]` section: the link every transport of the run
/// goes through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Network {
    /// The preset it started from, if any (`profile = "4g"`).
    pub profile: Option<String>,
    /// Round-trip time the link adds: half on the way up, half down.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub rtt: Duration,
    /// Each packet's one-way delay varies uniformly by up to this much
    /// either way, without reordering the packets of one direction.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub jitter: Duration,
    /// Packets dropped on the way from the generator to the server, percent.
    pub loss_up_percent: f64,
    /// Packets dropped on the way from the server to the generator, percent.
    pub loss_down_percent: f64,
    /// Bits per second from the server to the generator; none: unlimited.
    pub bandwidth_down_bps: Option<u64>,
    /// Bits per second from the generator to the server; none: unlimited.
    pub bandwidth_up_bps: Option<u64>,
    /// Bytes a rate-limited direction queues before it drops.
    pub queue_bytes: u64,
}

impl Network {
    /// Whether packets pass through the delay/loss stage at all; a link with
    /// only a rate limit (or nothing) does without it.
    pub fn needs_stage(&self) -> bool {
        !self.rtt.is_zero()
            || !self.jitter.is_zero()
            || self.loss_up_percent > 0.0
            || self.loss_down_percent > 0.0
    }

    /// One line for banners and reports: `rtt 100ms ± 0s, loss 0%/0%, …`.
    pub fn describe(&self) -> String {
        let rate = |bps: Option<u64>| bps.map_or("unlimited".to_owned(), format_bps);
        let profile = self
            .profile
            .as_deref()
            .map(|p| format!("profile {p}: "))
            .unwrap_or_default();
        format!(
            "{profile}rtt {}, jitter ±{}, loss {}% up / {}% down, bandwidth {} down / {} up",
            humantime::format_duration(self.rtt),
            humantime::format_duration(self.jitter),
            self.loss_up_percent,
            self.loss_down_percent,
            rate(self.bandwidth_down_bps),
            rate(self.bandwidth_up_bps),
        )
    }
}

/// Bytes a rate-limited direction queues when the scenario does not say:
/// about 100 full-size packets, the order of a home router's buffer.
pub const DEFAULT_QUEUE_BYTES: u64 = 150_000;

/// A documented preset: the figures and where they come from.
pub struct Profile {
    pub name: &'static str,
    pub rtt_ms: f64,
    pub jitter_ms: f64,
    pub loss_percent: f64,
    pub down_bps: Option<u64>,
    pub up_bps: Option<u64>,
    /// Where the figures come from, for docs/network.md and `--help`.
    pub source: &'static str,
}

const MBIT: u64 = 1_000_000;
const KBIT: u64 = 1_000;

/// The presets `profile = "…"` and `run --network` accept.
pub const PROFILES: [Profile; 6] = [
    Profile {
        name: "lan",
        rtt_ms: 1.0,
        jitter_ms: 0.0,
        loss_percent: 0.0,
        down_bps: None,
        up_bps: None,
        source: "a switched office or data-centre LAN: well under a millisecond per hop, rounded up to 1 ms; no rate limit",
    },
    Profile {
        name: "broadband",
        rtt_ms: 28.0,
        jitter_ms: 0.0,
        loss_percent: 0.0,
        down_bps: Some(5 * MBIT),
        up_bps: Some(MBIT),
        source: "WebPageTest's \"Cable\" connectivity profile: 5 Mbit/s down, 1 Mbit/s up, 28 ms RTT",
    },
    Profile {
        name: "4g",
        rtt_ms: 170.0,
        jitter_ms: 0.0,
        loss_percent: 0.0,
        down_bps: Some(9 * MBIT),
        up_bps: Some(9 * MBIT),
        source: "WebPageTest's \"4G\" connectivity profile: 9 Mbit/s each way, 170 ms RTT",
    },
    Profile {
        name: "3g",
        rtt_ms: 300.0,
        jitter_ms: 0.0,
        loss_percent: 0.0,
        down_bps: Some(1_600 * KBIT),
        up_bps: Some(768 * KBIT),
        source: "WebPageTest's \"3G\" connectivity profile: 1.6 Mbit/s down, 768 kbit/s up, 300 ms RTT",
    },
    Profile {
        name: "satellite",
        rtt_ms: 600.0,
        jitter_ms: 0.0,
        loss_percent: 0.0,
        down_bps: Some(10 * MBIT),
        up_bps: Some(2 * MBIT),
        source: "a geostationary link: four trips of 35,786 km at the speed of light are 477 ms, about 600 ms with the ground segment; 10 Mbit/s down, 2 Mbit/s up as a consumer plan",
    },
    Profile {
        name: "lossy_wifi",
        rtt_ms: 20.0,
        jitter_ms: 10.0,
        loss_percent: 2.0,
        down_bps: None,
        up_bps: None,
        source: "pushbench's own stand-in for a crowded Wi-Fi, not a published profile: 20 ms RTT, ±10 ms jitter, 2% loss each way",
    },
];

/// The preset of that name.
pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// The names of every preset, for messages.
pub fn profile_names() -> String {
    PROFILES.map(|p| p.name).join(", ")
}

/// Parses a rate as tc writes it: `10mbit`, `1.5mbit`, `768kbit`,
/// `1gbit`, `9600bit`.
pub fn parse_bps(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => {
            return Err(format!(
                "{text:?} is not a rate: write e.g. \"10mbit\", \"768kbit\" or \"1gbit\""
            ));
        }
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate: write e.g. \"10mbit\""))?;
    Ok((n * scale).round() as u64)
}

/// A rate in tc's units, as [`parse_bps`] reads it.
pub fn format_bps(bps: u64) -> String {
    if bps >= MBIT && bps.is_multiple_of(MBIT / 10) {
        format!("{}mbit", bps as f64 / MBIT as f64)
    } else if bps >= KBIT && bps.is_multiple_of(KBIT) {
        format!("{}kbit", bps / KBIT)
    } else {
        format!("{bps}bit")
    }
}

/// Parses a queue size: a number of packets (`100`, taken as full-size
/// 1,500-byte packets) or bytes with a unit (`"64KiB"`, `"150kB"`,
/// `"1MB"`, `"9000B"`).
pub fn parse_queue(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let too_big = || format!("{text:?} is far too large a queue");
    if let Ok(packets) = t.parse::<u64>() {
        return packets.checked_mul(1_500).ok_or_else(too_big);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "B" => 1,
        "kB" | "KB" => 1_000,
        "KiB" => 1_024,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        _ => {
            return Err(format!(
                "{text:?} is not a queue size: write packets (100) or bytes (\"64KiB\", \"150kB\")"
            ));
        }
    };
    number
        .parse::<u64>()
        .map_err(|_| format!("{text:?} is not a queue size: write e.g. 100 or \"64KiB\""))?
        .checked_mul(scale)
        .ok_or_else(too_big)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_tc_writes_them() {
        assert_eq!(parse_bps("10mbit"), Ok(10_000_000));
        assert_eq!(parse_bps("1.6mbit"), Ok(1_600_000));
        assert_eq!(parse_bps("768kbit"), Ok(768_000));
        assert_eq!(parse_bps("1gbit"), Ok(1_000_000_000));
        assert!(parse_bps("10mbps").is_err());
        assert!(parse_bps("fast").is_err());
        for bps in [1_600_000, 768_000, 9_000_000, 10_000_000, 123] {
            assert_eq!(parse_bps(&format_bps(bps)), Ok(bps));
        }
    }

    #[test]
    fn queues_are_packets_or_bytes() {
        assert_eq!(parse_queue("100"), Ok(150_000));
        assert_eq!(parse_queue("64KiB"), Ok(65_536));
        assert_eq!(parse_queue("150kB"), Ok(150_000));
        assert!(parse_queue("lots").is_err());
    }

    #[test]
    fn every_profile_has_a_source_and_a_unique_name() {
        for (i, p) in PROFILES.iter().enumerate() {
            assert!(!p.source.is_empty());
            assert!(PROFILES[..i].iter().all(|q| q.name != p.name));
        }
        assert_eq!(profile("4g").map(|p| p.rtt_ms), Some(170.0));
    }
}
