//! A real nginx between the clients and the server (`[proxy]`). CI
//! installs nginx and must run these; elsewhere they say why they did not.

use std::process::Command;

fn nginx_found(test: &str) -> bool {
    let found = pushbench::proxy::find_nginx().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run {test}: nginx is not installed (apt-get install nginx)"
        );
        eprintln!("skipped {test}: nginx is not installed (apt-get install nginx)");
    }
    found
}

fn run(proxy: &str, transports: &str, rate: f64, measure: &str) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = crate::util::tiny_scenario(transports, "json")
        .replace("1500ms", measure)
        .replace("rate = 400.0", &format!("rate = {rate:?}"))
        + "[proxy]\nkind = \"nginx\"\n"
        + proxy;
    let path = dir.path().join("proxied.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pushbench"))
        .args(["run", "--quiet"])
        .arg(&path)
        .arg("--results-dir")
        .arg(dir.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let results = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .flatten()
        .find(|e| e.path().join("summary.json").is_file())
        .unwrap()
        .path();
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).unwrap()).unwrap();
    for t in summary["transports"].as_array().unwrap() {
        let conf = t["proxy"]["config_file"].as_str().unwrap();
        let text = std::fs::read_to_string(results.join(conf)).unwrap();
        assert!(text.contains("proxy_pass http://pushbench;"), "{text}");
    }
    (summary, stderr)
}

#[test]
fn every_transport_nginx_carries_delivers_exactly_once_through_it() {
    if !nginx_found("every_transport_nginx_carries_delivers_exactly_once_through_it") {
        return;
    }
    let (summary, _) = run(
        "",
        "\"websocket\", \"sse\", \"long_polling\", \"long_polling_close\", \"long_polling_h2\", \"short_polling\"",
        400.0,
        "2s",
    );
    for t in summary["transports"].as_array().unwrap() {
        let name = t["transport"].as_str().unwrap();
        assert_eq!(t["delivery"]["lost"], 0, "{name}");
        assert_eq!(t["delivery"]["duplicated"], 0, "{name}");
        assert_eq!(t["delivery"]["out_of_order"], 0, "{name}");
        assert!(t["delivery"]["delivered"].as_u64().unwrap() > 0, "{name}");
        // nginx is measured like the server: it did work for every event.
        assert!(t["proxy"]["cpu_s"].as_f64().unwrap() > 0.0, "{name}");
        assert!(t["proxy"]["peak_rss_bytes"].as_u64().unwrap() > 0, "{name}");
    }
}

#[test]
fn a_read_timeout_shorter_than_the_hold_cuts_held_polls() {
    if !nginx_found("a_read_timeout_shorter_than_the_hold_cuts_held_polls") {
        return;
    }
    // Sparse events and the tiny scenario's 5 s holds behind a 1 s
    // proxy_read_timeout: nginx answers held polls with 504 instead of
    // letting them wait, and the clients poll again.
    // About 9 events in 6 s, 1.8 s apart on average for a client: gaps
    // longer than the timeout are the rule.
    let (summary, _) = run("read_timeout = \"1s\"\n", "\"long_polling\"", 1.5, "6s");
    let t = &summary["transports"][0];
    let errors: u64 = t["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(errors > 0, "no poll was cut: {}", t["errors"]);
    // Resuming by cursor: a cut poll loses nothing.
    assert!(t["delivery"]["delivered"].as_u64().unwrap() > 0);
    assert_eq!(t["delivery"]["lost"], 0);
}

#[test]
fn what_nginx_cannot_carry_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let text = crate::util::tiny_scenario("\"websocket\"", "json") + "[proxy]\nkind = \"nginx\"\n";
    let path = dir.path().join("p.toml");
    std::fs::write(&path, &text).unwrap();
    for (args, says) in [
        (
            vec!["--transport", "websocket_h2"],
            "websocket_h2 cannot run behind [proxy]",
        ),
        (vec!["--tls"], "TLS behind [proxy] is not supported"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pushbench"))
            .arg("run")
            .arg(&path)
            .args(&args)
            .arg("--results-dir")
            .arg(dir.path().join("results"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let listed = text.replace("[\"websocket\"]", "[\"websocket\", \"websocket_h2\"]");
    std::fs::write(&path, listed).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pushbench"))
        .args(["validate"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "websocket_h2 cannot run behind [proxy]: nginx does not proxy WebSocket over HTTP/2"
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("results").exists());
}
