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
    /// The reference step of this run (see `calibrate`), in ns: timing
    /// figures divided by it compare across machines of different speed.
    #[serde(default)]
    pub reference_step_ns: Option<u64>,
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
    }
}
