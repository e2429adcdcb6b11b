//! pushbench: what does each server-push transport really cost, and how
//! fast is it, for a given workload?

pub mod client;
pub mod clock;
pub mod codec;
pub mod hub;
pub mod load;
pub mod scenario;
pub mod schedule;
pub mod server;
