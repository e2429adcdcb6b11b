//! The user's own server: publishing from the generator, `run --target`,
//! `pushbench check`, and a real Socket.IO server (CI installs Node.js and
//! the server's packages; elsewhere the Socket.IO test says why it did not
//! run).

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use pushbench::codec::Encoding;
use pushbench::runner::{self, Ending};
use pushbench::scenario::{PublishFrom, ServerKind};
use pushbench::server_process::ServerLaunch;
use tokio_util::sync::CancellationToken;

use crate::util::{parse, start_server, tiny_scenario};

pub(crate) fn pushbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pushbench"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_from_the_generator_delivers_every_event_once_with_a_latency_sample_each() {
    let (addr, state) = start_server(Encoding::Json).await;
    let text = tiny_scenario("\"websocket\", \"sse\", \"long_polling\"", "json")
        .replace("[publish]", "[publish]\nfrom = \"generator\"");
    let scenario = parse(&text);
    let launch = ServerLaunch::Existing {
        kind: ServerKind::Pushbench,
        addr,
        pid: None,
        tls_cert_pem: None,
        tls_name: None,
        token: None,
        control: true,
    };
    let outcome = runner::run_scenario(
        &scenario,
        &launch,
        &CancellationToken::new(),
        Arc::new(pushbench::progress::Silent),
        None,
    )
    .await;
    assert_eq!(outcome.ending, Ending::Complete);
    for run in &outcome.transports {
        let t = run.kind;
        let d = run.report.delivery;
        assert_eq!(run.publish_from, PublishFrom::Generator, "{t}");
        let p = run.publisher.as_ref().expect("the generator published");
        assert_eq!(p.failed, 0, "{t}: {:?}", p.first_error);
        assert!(p.published > 300, "{t}: published {}", p.published);
        assert!(p.requests > 0 && p.requests <= p.published, "{t}");
        assert!(!p.request_time.is_empty(), "{t}");
        assert!(
            d.expected > 40 * 3 * 20,
            "{t}: only {} expected",
            d.expected
        );
        assert_eq!(d.delivered, d.expected, "{t}: {d:?}");
        assert_eq!(
            (d.lost, d.duplicated, d.out_of_order),
            (0, 0, 0),
            "{t}: {d:?}"
        );
        // With no warm-up every event is intended inside the window, so
        // every delivered event has exactly one latency sample.
        assert_eq!(run.report.latency.len(), d.delivered, "{t}");
        assert!(run.report.delivered_in_window > 0, "{t}");
    }
    // The server published exactly what the publishers sent, three times.
    let published: u64 = outcome
        .transports
        .iter()
        .map(|r| r.publisher.as_ref().unwrap().published)
        .sum();
    assert_eq!(state.hub.heads().values().sum::<u64>(), published);
}

/// `pushbench serve` on port 0, and the URL it listens on.
pub(crate) fn serve() -> (std::process::Child, String) {
    serve_with(&[])
}

fn serve_with(extra: &[&str]) -> (std::process::Child, String) {
    let mut child = pushbench()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--buffer-per-topic",
            "64",
        ])
        .args(extra)
        .env("PUSHBENCH_TOKEN", "secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix(pushbench::server_process::READY_PREFIX)
                .map(|u| u.trim().to_owned())
        })
        .expect("the server says where it listens");
    (child, url)
}

pub(crate) fn summary_of(args: &[&str], scenario: &str) -> (i32, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.toml");
    std::fs::write(&path, scenario).unwrap();
    let out = pushbench()
        .arg("run")
        .arg(&path)
        .args(["--quiet", "--json", "--results-dir"])
        .arg(dir.path().join("results"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), summary, stderr)
}

#[test]
fn a_target_started_apart_gives_the_counts_of_a_managed_run() {
    let text = tiny_scenario("\"websocket\"", "json")
        .replace("[publish]", "[publish]\nfrom = \"generator\"");
    let (code, managed, stderr) = summary_of(&[], &text);
    assert_eq!(code, 0, "{stderr}");
    let (mut server, url) = serve();
    let pid = server.id().to_string();
    let (code, target, stderr) = summary_of(&["--target", &url], &text);
    let (code_pid, with_pid, stderr_pid) =
        summary_of(&["--target", &url, "--server-pid", &pid], &text);
    let _ = server.kill();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(code_pid, 0, "{stderr_pid}");
    assert!(stderr.contains(&format!("target {url}")), "{stderr}");
    let m = &managed["transports"][0];
    let t = &target["transports"][0];
    // The same seeded schedule on the same topics: the same events.
    assert_eq!(m["delivery"]["expected"], t["delivery"]["expected"]);
    assert_eq!(t["delivery"]["delivered"], t["delivery"]["expected"]);
    assert_eq!(t["delivery"]["lost"], 0);
    assert_eq!(t["publish_from"], "generator");
    assert_eq!(target["scenario"]["target"]["url"], url.as_str());
    // Without --server-pid the server is not measured, and says so.
    assert!(t["processes"]["server_cpu_s"].is_null(), "{t}");
    assert!(
        with_pid["transports"][0]["processes"]["server_cpu_s"].as_f64() > Some(0.0),
        "{with_pid}"
    );
    assert!(
        target["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("running server")),
        "{target}"
    );
}

#[test]
fn an_https_target_is_measured_trusting_only_the_given_certificate_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let (mut server, url) = serve_with(&["--tls-cert-out", cert.to_str().unwrap()]);
    let port = url.rsplit(':').next().unwrap().to_owned();
    let text = tiny_scenario("\"websocket\", \"long_polling\"", "json");
    // The certificate names localhost: checked by that name.
    let by_name = format!("https://localhost:{port}");
    let (code, summary, stderr) = summary_of(
        &["--target", &by_name, "--ca", cert.to_str().unwrap()],
        &text,
    );
    // Another certificate is not trusted.
    let other = dir.path().join("other.pem");
    std::fs::write(
        &other,
        pushbench::tls::SelfSigned::generate().unwrap().cert_pem,
    )
    .unwrap();
    let (code_other, _, stderr_other) = summary_of(
        &["--target", &by_name, "--ca", other.to_str().unwrap()],
        &text,
    );
    let _ = server.kill();
    assert_eq!(code, 0, "{stderr}");
    for t in summary["transports"].as_array().unwrap() {
        assert_eq!(t["delivery"]["lost"], 0, "{t}");
        assert!(t["delivery"]["delivered"].as_u64() > Some(0), "{t}");
    }
    assert_eq!(summary["scenario"]["tls"], true);
    assert_eq!(code_other, 2, "{stderr_other}");
    assert!(
        stderr_other.contains("UnknownIssuer") || stderr_other.contains("certificate"),
        "{stderr_other}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_is_refused_before_anything_starts_when_it_cannot_be_run() {
    let refused = |args: Vec<String>, text: String| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            summary_of(&args, &text)
        })
    };
    let text = tiny_scenario("\"websocket\", \"long_polling\"", "json");
    // Off this machine, without --yes and without a terminal to ask at:
    // refused before any traffic (192.0.2.1 is a documentation address).
    let (code, _, stderr) = refused(
        vec!["--target".into(), "http://192.0.2.1:8080".into()],
        text.clone(),
    )
    .await
    .unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("pass --yes"), "{stderr}");
    // A server without /ws: the listed websocket is refused, naming it.
    let addr = start_skipping_server().await;
    let (code, _, stderr) = refused(
        vec!["--target".into(), format!("http://{addr}")],
        text.clone(),
    )
    .await
    .unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does not offer websocket"), "{stderr}");
    // Left to the default, it is skipped with a line, and the rest run.
    let default = text.replace("transports = [\"websocket\", \"long_polling\"]", "");
    let (code, summary, stderr) = refused(
        vec![
            "--target".into(),
            format!("http://{addr}"),
            "--dry-run".into(),
        ],
        default.clone(),
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr} {summary}");
    assert!(stderr.contains("skipping websocket: "), "{stderr}");
    assert!(stderr.contains("skipping sse: "), "{stderr}");
    assert!(!stderr.contains("skipping long_polling: "), "{stderr}");
    // The in-process publisher needs a server run starts.
    let (code, _, stderr) = refused(
        vec!["--target".into(), format!("http://{addr}")],
        text.replace("[publish]", "[publish]\nfrom = \"server\""),
    )
    .await
    .unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("publish.from"), "{stderr}");
    // An https target without the certificate to trust.
    let (code, _, stderr) = refused(
        vec!["--target".into(), "https://127.0.0.1:9".into()],
        text.clone(),
    )
    .await
    .unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--ca"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_against_the_bundled_server() {
    let (addr, _state) = start_server(Encoding::Json).await;
    let url = format!("http://{addr}");
    let resolved = pushbench::target::Resolved {
        addr,
        host: "127.0.0.1".into(),
        https: false,
        ca_pem: None,
    };
    let lines = pushbench::check::run(&url, &resolved, Some(std::time::Duration::from_secs(20)))
        .await
        .unwrap();
    let (text, code) = pushbench::check::report(&lines);
    assert_eq!(code, 0, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.outcome == pushbench::check::Outcome::Pass),
        "{text}"
    );
    assert!(lines.len() >= 18, "{text}");
}

/// A server that numbers its events 1, 3, 4, … (it skips 2) and offers
/// only `/send` and `/lp`.
async fn start_skipping_server() -> std::net::SocketAddr {
    use axum::extract::{Query, State};
    use axum::routing::{get, post};
    use std::collections::HashMap;
    use std::sync::Mutex;
    type Topics = Arc<Mutex<HashMap<String, Vec<(u64, u64)>>>>;
    async fn send(State(topics): State<Topics>, body: String) -> axum::http::StatusCode {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
            return axum::http::StatusCode::BAD_REQUEST;
        };
        let items = v.as_array().cloned().unwrap_or_else(|| vec![v]);
        let mut topics = topics.lock().unwrap();
        for item in items {
            let p = &item["publish"];
            let list = topics
                .entry(p["topic"].as_str().unwrap_or("").to_owned())
                .or_default();
            let seq = match list.last() {
                None => 1,
                Some((1, _)) => 3,
                Some((s, _)) => s + 1,
            };
            list.push((seq, p["intended_ns"].as_u64().unwrap_or(0)));
        }
        axum::http::StatusCode::NO_CONTENT
    }
    async fn lp(State(topics): State<Topics>, Query(q): Query<HashMap<String, String>>) -> String {
        let subs = q.get("subs").cloned().unwrap_or_default();
        let (topic, cursor) = match subs.split_once(':') {
            Some((t, c)) => (t.to_owned(), c.parse::<u64>().ok()),
            None => (subs.clone(), None),
        };
        let topics = topics.lock().unwrap();
        let list = topics.get(&topic).cloned().unwrap_or_default();
        match cursor {
            None => format!(
                r#"[{{"subscribed":{{"{topic}":{}}}}}]"#,
                list.last().map_or(0, |e| e.0)
            ),
            Some(c) => {
                let events: Vec<String> = list
                    .iter()
                    .filter(|(s, _)| *s > c)
                    .map(|(s, i)| format!(r#"{{"t":"{topic}","s":{s},"i":{i},"p":{i},"d":""}}"#))
                    .collect();
                format!("[{}]", events.join(","))
            }
        }
    }
    let topics: Topics = Arc::default();
    let app = axum::Router::new()
        .route("/send", post(send))
        .route("/lp", get(lp))
        .with_state(topics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_a_server_that_skips_a_sequence_number_naming_the_check() {
    let addr = start_skipping_server().await;
    let resolved = pushbench::target::Resolved {
        addr,
        host: "127.0.0.1".into(),
        https: false,
        ca_pem: None,
    };
    let lines = pushbench::check::run(&format!("http://{addr}"), &resolved, None)
        .await
        .unwrap();
    let (text, code) = pushbench::check::report(&lines);
    assert_eq!(code, 1, "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}: {text}"))
            .to_owned()
    };
    assert!(line("lp.order").starts_with("FAIL"), "{text}");
    assert!(line("lp.order").contains("[1, 3, 4"), "{text}");
    assert!(line("send.batch").starts_with("FAIL"), "{text}");
    // Routes it does not offer are skipped, not failed.
    assert!(line("ws.push").starts_with("skipped"), "{text}");
    assert!(line("sse.stream").starts_with("skipped"), "{text}");
}

#[test]
fn a_socketio_run_delivers_every_event_over_both_transports() {
    if let Err(why) = pushbench::server_process::find_socketio() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the Socket.IO test: {why}"
        );
        eprintln!("skipped a_socketio_run_delivers_every_event_over_both_transports: {why}");
        return;
    }
    let text = tiny_scenario("\"socketio_polling\", \"socketio_websocket\"", "json");
    let (code, summary, stderr) = summary_of(&[], &text);
    assert_eq!(code, 0, "{stderr}");
    let transports = summary["transports"].as_array().unwrap();
    assert_eq!(transports.len(), 2, "{summary}");
    for t in transports {
        let name = &t["transport"];
        let d = &t["delivery"];
        assert!(d["expected"].as_u64() > Some(40 * 3 * 20), "{name}: {d}");
        assert_eq!(d["delivered"], d["expected"], "{name}: {d}");
        assert_eq!(d["lost"], 0, "{name}: {d}");
        assert_eq!(d["duplicated"], 0, "{name}: {d}");
        assert_eq!(t["publish_from"], "generator", "{name}");
        assert!(
            t["processes"]["server_cpu_s"].as_f64() > Some(0.0),
            "{name}"
        );
        assert!(t["cost"]["bytes_down"].as_u64() > Some(0), "{name}");
    }
    assert_eq!(transports[0]["transport"], "socketio_polling");
    assert!(transports[0]["cost"]["requests_per_event"].as_f64() > Some(0.1));
}
