//! The generator's WebSocket client ([`pushbench::client::ws`]) as an echo
//! client for the Autobahn|Testsuite fuzzing server, which judges its
//! conformance to RFC 6455 (scripts/autobahn.sh runs it).
//!
//!     autobahn_client ws://127.0.0.1:9001 AGENT
//!
//! It asks the suite how many cases there are, runs each (echoing every
//! text and binary message until the suite closes), then asks the suite to
//! write its report. Exit 0 when every case ran; the report judges them.

use std::time::Duration;

use pushbench::client::ClientError;
use pushbench::client::ws::{WsConn, WsMessage};
use tokio::net::TcpStream;

/// Cases 9.* send messages of up to 16 MiB.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// How long a closed case may take to drop TCP (RFC 6455 7.1.1).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, agent] = &args[..] else {
        eprintln!("usage: autobahn_client ws://HOST:PORT AGENT");
        return std::process::ExitCode::from(2);
    };
    let Some(host) = url.strip_prefix("ws://") else {
        eprintln!("autobahn_client: {url}: only ws:// URLs");
        return std::process::ExitCode::from(2);
    };
    match run(host, agent).await {
        Ok(cases) => {
            println!("autobahn_client: ran {cases} cases");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("autobahn_client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(host: &str, agent: &str) -> Result<u32, String> {
    let mut count = connect(host, "/getCaseCount").await?;
    let cases = match count.next().await {
        Ok(WsMessage::Text(text)) => text
            .parse::<u32>()
            .map_err(|e| format!("case count {:?}: {e}", text.as_str()))?,
        other => return Err(format!("no case count: {other:?}")),
    };
    finish(count, Ok(())).await;
    for case in 1..=cases {
        let mut ws = connect(host, &format!("/runCase?case={case}&agent={agent}")).await?;
        let ended = echo(&mut ws).await;
        finish(ws, ended).await;
    }
    let reports = connect(host, &format!("/updateReports?agent={agent}")).await?;
    finish(reports, Ok(())).await;
    Ok(cases)
}

async fn connect(host: &str, path: &str) -> Result<WsConn<TcpStream>, String> {
    let stream = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    WsConn::handshake(stream, host, path, MAX_MESSAGE)
        .await
        .map_err(|e| format!("{path}: {e}"))
}

/// Sends back every data message as it came, until the connection ends.
async fn echo(ws: &mut WsConn<TcpStream>) -> Result<(), ClientError> {
    loop {
        match ws.next().await? {
            WsMessage::Text(text) => ws.writer.send_text(&text).await?,
            WsMessage::Binary(data) => ws.writer.send_binary(&data).await?,
        }
    }
}

/// Ends a connection the way the reader left it: after a close or a
/// failure it has already sent its close frame, and waits for the server
/// to drop TCP; anything else is closed normally first.
async fn finish(mut ws: WsConn<TcpStream>, ended: Result<(), ClientError>) {
    if let Ok(()) = ended {
        let _ = ws.writer.close(Some((1000, ""))).await;
        // The server's close answer, then its end of TCP.
        let _ = tokio::time::timeout(CLOSE_WAIT, ws.next()).await;
    }
    ws.reader.await_eof(CLOSE_WAIT).await;
}
