//! pushbench: what does each server-push transport really cost, and how
//! fast is it, for a given workload?

pub mod calibrate;
pub mod check;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codec;
pub mod compare;
pub mod dashboard;
pub mod environment;
pub mod hub;
pub mod load;
pub mod machine;
pub mod network;
pub mod procstat;
pub mod progress;
pub mod proxy;
pub mod publisher;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod server;
pub mod server_process;
pub mod sweep;
pub mod target;
pub mod thresholds;
pub mod tls;
