//! The machine a run happened on, recorded beside its figures: numbers
//! without their environment cannot be compared.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Build {
    pub version: String,
    /// `git describe` of the source tree at build time ("-dirty" if modified).
    pub git_revision: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Environment {
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cores: u32,
    pub kernel: String,
    pub os: String,
    /// Soft open-file limit of the generator when the run began.
    pub open_files_limit: u64,
    /// The reference step of this run (see `calibrate`), in ns: the median
    /// of `reference_steps_ns`. Timing figures divided by it are only a
    /// rough guide across machines; see `compare`.
    #[serde(default)]
    pub reference_step_ns: Option<u64>,
    /// Every timing of the reference step: before the first transport and
    /// after each one. Their spread shows how steady the machine's speed
    /// was through the run (one noisy guest moved 13.9 → 24.4 ms in 24 s).
    #[serde(default)]
    pub reference_steps_ns: Vec<u64>,
}

pub fn build() -> Build {
    Build {
        version: env!("CARGO_PKG_VERSION").into(),
        git_revision: env!("PUSHBENCH_GIT_REVISION").into(),
    }
}

pub fn environment() -> Environment {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let uname = rustix::system::uname();
    Environment {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        kernel: uname.release().to_string_lossy().into_owned(),
        os: std::env::consts::OS.into(),
        open_files_limit: rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft),
        reference_step_ns: Some(crate::calibrate::reference_ns()),
        reference_steps_ns: Vec::new(),
    }
}

impl Environment {
    /// Records the reference steps timed through a run; the median becomes
    /// `reference_step_ns`.
    pub fn set_reference_steps(&mut self, mut steps: Vec<u64>) {
        steps.retain(|s| *s > 0);
        if steps.is_empty() {
            return;
        }
        let mut sorted = steps.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        self.reference_step_ns = Some(if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        });
        self.reference_steps_ns = steps;
    }

    /// Range over median of the reference steps, percent; `None` with
    /// fewer than two.
    pub fn reference_spread_pct(&self) -> Option<f64> {
        let s = &self.reference_steps_ns;
        let median = self.reference_step_ns? as f64;
        if s.len() < 2 || median == 0.0 {
            return None;
        }
        let (lo, hi) = (s.iter().min()?, s.iter().max()?);
        Some((hi - lo) as f64 / median * 100.0)
    }
}

/// Held for the whole of a run: a second run on the same machine finds it
/// taken and says so, since both would measure a machine shared with the
/// other (and report as if alone).
pub struct RunLock(#[allow(dead_code)] Option<std::fs::File>);

impl RunLock {
    /// Takes the machine-wide run lock; `Err` (with a warning to show) when
    /// another pushbench run holds it. The lock is advisory and never
    /// blocks: a run goes ahead either way.
    pub fn take() -> Result<RunLock, String> {
        use rustix::fs::{FlockOperation, flock};
        let path = std::env::temp_dir().join("pushbench-run.lock");
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            return Ok(RunLock(None));
        };
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(RunLock(Some(file))),
            Err(_) => Err(format!(
                "another pushbench run was going on on this machine when this one began ({} is locked): both measured a machine shared with the other",
                path.display()
            )),
        }
    }
}
