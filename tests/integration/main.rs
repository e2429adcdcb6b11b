//! Integration tests: one binary, one module per area.
//!
//! - `workload`: small workloads over every transport against a server on
//!   127.0.0.1:0, checking exactly-once in-order delivery and the counters.
//! - `protocol`: malformed requests get the right status or close code and
//!   the server keeps serving everyone else.
//! - `cli`: the binary itself: bad scenarios exit 2 with a useful message,
//!   a tiny run writes complete results.
//! - `dashboard`: `run --dashboard`'s live feed followed to its end, and
//!   an address in use refused before anything starts.
//! - `reports`: charts, report.html and report.md from a saved results
//!   directory, and `pushbench report` on broken ones.
//! - `network`: runs over an emulated link between two network
//!   namespaces (root only; CI runs them), and its removal.
//! - `proxy`: every transport through a real nginx, and nginx's
//!   read timeout cutting held polls (CI installs nginx).
//! - `schema`: docs/summary.schema.json matches the code.
//! - `shards`: `run --shard K/N` against one server and `pushbench merge`
//!   give the counts of the same workload run in one process.
//! - `target`: publishing from the generator, `run --target`, `check`, and
//!   a real Socket.IO server (CI installs Node.js and its packages).

mod cli;
mod dashboard;
mod hostile;
mod network;
mod protocol;
mod proxy;
mod reports;
mod schema;
mod shards;
mod target;
mod util;
mod workload;
