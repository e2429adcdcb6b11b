//! Setup shared by the tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pushbench::codec::Encoding;
use pushbench::scenario::Scenario;
use pushbench::server::{self, AppState, ServerConfig};

/// Starts the bundled server in this process on 127.0.0.1:0.
pub async fn start_server(encoding: Encoding) -> (SocketAddr, Arc<AppState>) {
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig {
        encoding,
        buffer_per_topic: 64,
        ..ServerConfig::default()
    };
    let state = AppState::new(config);
    tokio::spawn(server::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    (addr, state)
}

/// A small, fast scenario; `extra` is appended (later keys win by table).
pub fn tiny_scenario(transports: &str, encoding: &str) -> String {
    format!(
        r#"
transports = [{transports}]
seed = 3
[clients]
count = 40
topics_per_client = 3
connect_ramp = "200ms"
workers = 2
[topics]
count = 8
[publish]
rate = 400.0
arrival = "poisson"
payload_bytes = 48
encoding = "{encoding}"
[phases]
warmup = "0s"
measure = "1500ms"
drain = "5s"
[long_polling]
hold = "5s"
"#
    )
}

pub fn parse(text: &str) -> Scenario {
    Scenario::parse(Path::new("tiny.toml"), text).expect("valid test scenario")
}
