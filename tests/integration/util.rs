//! Setup shared by the tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pushbench::codec::Encoding;
use pushbench::scenario::Scenario;
use pushbench::server::{self, AppState, ServerConfig};

/// Starts the bundled server in this process on 127.0.0.1:0.
pub async fn start_server(encoding: Encoding) -> (SocketAddr, Arc<AppState>) {
    start_server_with(encoding, None).await
}

/// Starts the bundled server, serving TLS when given a certificate.
pub async fn start_server_with(
    encoding: Encoding,
    tls: Option<&pushbench::tls::SelfSigned>,
) -> (SocketAddr, Arc<AppState>) {
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
        tls.map(|t| t.server_config().unwrap()),
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
# Within the test server's 64 events of buffer per topic.
[short_polling]
interval = "250ms"
"#
    )
}

pub fn parse(text: &str) -> Scenario {
    Scenario::parse(Path::new("tiny.toml"), text).expect("valid test scenario")
}

/// A TCP relay in front of the server that can cut every connection
/// through it at once, as a network failure or a restarting proxy would.
pub struct CuttingProxy {
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
}

impl CuttingProxy {
    pub async fn start(upstream: SocketAddr) -> CuttingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let mut cut_rx = cuts.subscribe();
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = up.set_nodelay(true);
                    let _ = down.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        CuttingProxy { addr, cut }
    }

    /// Drops every connection open through the proxy now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}
