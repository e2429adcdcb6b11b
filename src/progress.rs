//! What the user sees while a run goes on: progress bars on a terminal, or
//! one plain line per phase for logs (CI) and `--quiet`.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::scenario::TransportKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Warmup,
    Measure,
    Drain,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Warmup => "warm-up",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
        }
    }
}

/// Live figures of the transport being run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Live {
    pub clients: u64,
    pub connected: u64,
    /// The second (counted from the transport's start) the figures below
    /// are of: the last one every worker has reported.
    pub second: Option<u64>,
    /// When that second began, on the run's clock ([`crate::clock`]): it
    /// is a second or two behind the phase being run.
    pub second_started_ns: Option<u64>,
    /// Events delivered in that second.
    pub delivered_per_s: Option<u64>,
    /// Latency p50 of that second, µs.
    pub p50_us: Option<u64>,
    /// Latency p99 of that second, µs.
    pub p99_us: Option<u64>,
    pub errors: u64,
}

impl Live {
    fn describe(&self) -> String {
        let mut s = format!("{}/{} connected", self.connected, self.clients);
        if let Some(d) = self.delivered_per_s {
            s += &format!(" · {d} events/s");
        }
        if let Some(p) = self.p99_us {
            s += &format!(" · p99 {:.2} ms", p as f64 / 1000.0);
        }
        s + &format!(" · {} errors", self.errors)
    }
}

pub trait Progress: Send + Sync {
    /// `transport` entered `phase`, expected to last about `length`.
    fn phase(&self, transport: TransportKind, phase: Phase, length: Duration, note: &str);
    /// Called about twice a second while a transport runs.
    fn live(&self, live: &Live);
    /// `transport` is done; `note` says how it ended.
    fn done(&self, transport: TransportKind, note: &str);
}

/// The right progress for where output goes: bars on a terminal that can
/// draw them, else lines (a `TERM=dumb` terminal gets lines: bars would
/// stay hidden until the end).
pub fn for_output(quiet: bool) -> Box<dyn Progress> {
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    if !quiet && !dumb && std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines)
    }
}

/// One plain line per phase, on stderr.
pub struct Lines;

impl Progress for Lines {
    fn phase(&self, transport: TransportKind, phase: Phase, length: Duration, note: &str) {
        eprintln!(
            "[pushbench] {transport}: {} ({}){note}",
            phase.name(),
            humantime::format_duration(length)
        );
    }
    fn live(&self, _: &Live) {}
    fn done(&self, transport: TransportKind, note: &str) {
        eprintln!("[pushbench] {transport}: {note}");
    }
}

/// Another progress without its transports' endings: one generator
/// process of several shows the run's phases, and the run that started
/// them says how each transport ended, over all of them.
pub struct WithoutEndings(pub Box<dyn Progress>);

impl Progress for WithoutEndings {
    fn phase(&self, transport: TransportKind, phase: Phase, length: Duration, note: &str) {
        self.0.phase(transport, phase, length, note);
    }
    fn live(&self, live: &Live) {
        self.0.live(live);
    }
    fn done(&self, _: TransportKind, _: &str) {}
}

/// Nothing at all (tests).
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: TransportKind, _: Phase, _: Duration, _: &str) {}
    fn live(&self, _: &Live) {}
    fn done(&self, _: TransportKind, _: &str) {}
}

/// A bar per phase: elapsed against the phase's length, and live figures.
#[derive(Default)]
pub struct Bars {
    current: Mutex<Option<(ProgressBar, Instant)>>,
}

impl Progress for Bars {
    fn phase(&self, transport: TransportKind, phase: Phase, length: Duration, note: &str) {
        let mut current = self.current.lock().expect("progress lock");
        if let Some((bar, _)) = current.take() {
            bar.finish();
        }
        let bar = ProgressBar::new(length.as_millis().max(1) as u64);
        // The phase's own length, not an estimate from the bar's speed; the
        // drain ends early once every event is in.
        let of = match phase {
            Phase::Drain => "at most ",
            _ => "",
        };
        let template = format!(
            "{{prefix:>24}} [{{bar:28.cyan/blue}}] {{elapsed:>4}} of {of}{} {{msg}}",
            humantime::format_duration(length)
        );
        bar.set_style(
            ProgressStyle::with_template(&template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{transport} {}", phase.name()));
        // The drain's "at most" is in the template already.
        if phase != Phase::Drain {
            bar.set_message(note.trim_start_matches([';', ' ']).to_string());
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        *current = Some((bar, Instant::now()));
    }

    fn live(&self, live: &Live) {
        if let Some((bar, started)) = &*self.current.lock().expect("progress lock") {
            bar.set_position(started.elapsed().as_millis() as u64);
            bar.set_message(live.describe());
        }
    }

    fn done(&self, transport: TransportKind, note: &str) {
        if let Some((bar, _)) = self.current.lock().expect("progress lock").take() {
            bar.finish_with_message(format!("{transport}: {note}"));
        }
    }
}
