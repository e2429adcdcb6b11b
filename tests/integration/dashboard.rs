//! `run --dashboard`: the live page's feed, followed as a browser does
//! (the browser itself is driven by scripts/check-dashboard.py in CI).

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use pushbench::dashboard::Update;

fn pushbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pushbench"))
}

/// A run that is killed if the test fails before waiting for it.
struct Running(Option<std::process::Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the tiny scenario over `transports` with a dashboard, follows its
/// feed from after the start (as a page opened late does) to the end, and
/// returns the updates and the run's summary.json.
async fn followed_run(transports: &str) -> (Vec<Update>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    // Long enough for live figures: each tells of a second two back.
    let text = crate::util::tiny_scenario(transports, "json").replace("1500ms", "3s");
    std::fs::write(&scenario, text).unwrap();
    let mut run = Running(Some(
        pushbench()
            .args(["run", "--quiet", "--dashboard", "127.0.0.1:0"])
            .arg(&scenario)
            .arg("--results-dir")
            .arg(dir.path().join("results"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let child = run.0.as_mut().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("dashboard: ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the run prints `dashboard: URL`");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("new EventSource(\"events\")")
    );
    // The feed ends after the final figures: reading it to its end is
    // following the whole run.
    let body = tokio::time::timeout(
        Duration::from_secs(120),
        http.get(format!("{url}events"))
            .send()
            .await
            .unwrap()
            .text(),
    )
    .await
    .expect("the feed ends with the run")
    .unwrap();
    let mut child = run.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let updates = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let results = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let summary =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).unwrap()).unwrap();
    (updates, summary)
}

/// The updates are a whole run in order, and its end is summary.json's.
fn check_run(updates: &[Update], summary: &serde_json::Value, transports: &[&str]) {
    assert!(
        matches!(&updates[0], Update::Started { transports: t, .. } if t == transports),
        "{:?}",
        updates[0]
    );
    // Each transport in turn: its phases in order, live figures, its end.
    let order = ["connect", "warm-up", "measure", "drain"];
    let rank = |p: &str| order.iter().position(|o| *o == p).expect("a known phase");
    let mut at = 1;
    for t in transports {
        let mut phases = Vec::new();
        let mut delivering = 0;
        // Live seconds come in order, each labelled with the phase it fell
        // in: never a later phase than the one being run.
        let mut last_live: Option<(u64, usize)> = None;
        loop {
            let Some(update) = updates.get(at) else {
                panic!("{t}: the feed ended before its end: {:?}", &updates[1..]);
            };
            match update {
                Update::Phase {
                    transport, phase, ..
                } if transport == t => phases.push(phase.as_str()),
                Update::Live {
                    transport,
                    phase,
                    delivered_per_s,
                    second,
                    connected,
                    clients,
                    ..
                } if transport == t => {
                    assert!(connected <= clients);
                    let running = rank(phases.last().expect("a phase before live figures"));
                    assert!(
                        rank(phase) <= running,
                        "{t}: {phase} while running {running}"
                    );
                    if let Some(second) = second {
                        let now = (*second, rank(phase));
                        assert!(
                            last_live.is_none_or(|l| l <= now),
                            "{t}: {last_live:?} then {now:?}"
                        );
                        last_live = Some(now);
                    }
                    if delivered_per_s.is_some_and(|d| d > 0) {
                        assert!(second.is_some());
                        delivering += 1;
                    }
                }
                Update::Done { transport, note } if transport == t => {
                    assert!(note.contains("events delivered"), "{note}");
                    at += 1;
                    break;
                }
                other => panic!("{t}: unexpected {other:?}"),
            }
            at += 1;
        }
        assert_eq!(phases, order, "{t}");
        assert!(delivering > 0, "{t}: no live second with deliveries");
    }
    let Some(Update::Finished {
        rows,
        complete,
        results,
        reason: None,
    }) = updates.get(at)
    else {
        panic!("no final figures: {:?}", &updates[at..]);
    };
    assert_eq!(updates.len(), at + 1, "nothing after the final figures");
    assert!(*complete);
    assert!(results.contains("tiny"), "{results}");
    let want = summary["transports"].as_array().unwrap();
    assert_eq!(rows.len(), want.len());
    for (row, t) in rows.iter().zip(want) {
        assert_eq!(row.transport, t["transport"].as_str().unwrap());
        assert_eq!(row.delivered, t["delivery"]["delivered"].as_u64().unwrap());
        assert_eq!(row.lost, t["delivery"]["lost"].as_u64());
        assert_eq!(row.lost, Some(0));
        assert_eq!(row.p99_us, t["latency_us"]["p99"].as_u64().unwrap());
        assert_eq!(
            row.delivered_per_s,
            t["throughput"]["delivered_per_s"].as_f64().unwrap()
        );
    }
}

#[tokio::test]
async fn a_dashboard_follows_every_transport_and_ends_with_the_summarys_figures() {
    // One transport runs in this process; two run each in a process of
    // its own, whose progress reaches the page through a pipe.
    let (updates, summary) = followed_run("\"websocket\"").await;
    check_run(&updates, &summary, &["websocket"]);
    let (updates, summary) = followed_run("\"websocket\", \"long_polling\"").await;
    check_run(&updates, &summary, &["websocket", "long_polling"]);
}

#[test]
fn a_dashboard_address_in_use_is_refused_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = pushbench()
        .args(["run", "scenarios/stock_ticker.toml", "--dashboard", &addr])
        .arg("--results-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--dashboard {addr}: cannot listen there")),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
