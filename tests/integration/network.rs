//! Emulated links: real kernel TCP between two network namespaces, with
//! pushbench's delay stage in the path. They need root (CAP_NET_ADMIN),
//! `ip`, `tc` and `iptables`: CI has them and must run these; elsewhere
//! they say why they did not run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pushbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pushbench"))
}

/// True when links can be built here. Under CI a missing capability or
/// tool fails the test instead: CI installs them and never skips.
fn links_possible(test: &str) -> bool {
    let caps = std::fs::read_to_string("/proc/self/status").unwrap();
    let net_admin = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|c| c & (1 << 12) != 0);
    let tools = ["ip", "tc", "iptables"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let possible = net_admin && tools;
    if !possible {
        let why = format!(
            "{test}: needs root (CAP_NET_ADMIN: {net_admin}) and ip, tc, iptables (all found: {tools})"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: {why}"
        );
        eprintln!("skipped {why}");
    }
    possible
}

/// A tiny scenario over a link, in `dir`.
fn scenario_file(dir: &tempfile::TempDir, network: &str) -> std::path::PathBuf {
    let text = crate::util::tiny_scenario("\"websocket\", \"long_polling\"", "json")
        .replace("1500ms", "2s")
        + network;
    let path = dir.path().join("link.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn namespaces_of(pid: u32) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("pb-{pid}-")))
                .collect()
        })
        .unwrap_or_default()
}

fn summary_of(root: &Path) -> serde_json::Value {
    let dir = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .unwrap()
        .path();
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_50ms_link_delays_push_by_half_the_rtt_and_is_removed_after() {
    if !links_possible("a_50ms_link_delays_push_by_half_the_rtt_and_is_removed_after") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = scenario_file(&dir, "[network]\nrtt = \"50ms\"\n");
    let child = pushbench()
        .args(["run", "--quiet"])
        .arg(&path)
        .arg("--results-dir")
        .arg(dir.path().join("results"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        namespaces_of(pid).is_empty(),
        "left behind: {:?}",
        namespaces_of(pid)
    );

    let summary = summary_of(&dir.path().join("results"));
    for t in summary["transports"].as_array().unwrap() {
        let name = t["transport"].as_str().unwrap();
        let link = &t["link"];
        // The probe reads the configured round trip.
        let probed = link["probe_rtt_median_ms"].as_f64().unwrap();
        assert!((50.0..=52.0).contains(&probed), "{name}: probe {probed} ms");
        // Nothing is lost over a link without loss.
        assert_eq!(t["delivery"]["lost"], 0, "{name}");
        assert!(t["delivery"]["delivered"].as_u64().unwrap() > 0, "{name}");
        // A connection costs a TCP handshake and a request through it at
        // least: two round trips.
        let connect_p50 = t["connect_us"]["p50"].as_u64().unwrap();
        assert!(
            connect_p50 >= 100_000,
            "{name}: connect p50 {connect_p50} µs"
        );
        let p50 = t["latency_us"]["p50"].as_u64().unwrap();
        match name {
            // Pushed at once: the one-way delay and the server's time.
            "websocket" => assert!(
                (25_000..=28_000).contains(&p50),
                "websocket p50 {p50} µs, expected 25 ms + at most 3"
            ),
            // At most a re-poll round trip more.
            _ => assert!(
                (25_000..=78_000).contains(&p50),
                "{name} p50 {p50} µs, expected between 25 and 75 ms + 3"
            ),
        }
        let stage = &link["stage"];
        assert_eq!(stage["overflow_dropped"], 0, "{name}");
        assert_eq!(stage["up"]["dropped"], 0, "{name}");
        assert!(stage["up"]["packets"].as_u64().unwrap() > 0, "{name}");
        assert!(link["stage_cpu_s"].as_f64().is_some(), "{name}");
    }
}

#[test]
fn an_interrupted_link_run_removes_its_namespaces() {
    if !links_possible("an_interrupted_link_run_removes_its_namespaces") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = scenario_file(&dir, "[network]\nrtt = \"20ms\"\n");
    let child = pushbench()
        .args(["run", "--quiet"])
        .arg(&path)
        .arg("--results-dir")
        .arg(dir.path().join("results"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while namespaces_of(pid).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(namespaces_of(pid).len(), 2, "the link was never built");
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        namespaces_of(pid).is_empty(),
        "left behind: {:?}",
        namespaces_of(pid)
    );
}

#[test]
fn without_net_admin_a_link_scenario_exits_2_before_starting() {
    if !links_possible("without_net_admin_a_link_scenario_exits_2_before_starting") {
        return;
    }
    // The same binary as an unprivileged user: no capability at all.
    let dir = tempfile::tempdir().unwrap();
    let path = scenario_file(&dir, "[network]\nprofile = \"lan\"\n");
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    for p in [dir.path(), results.as_path(), path.as_path()] {
        Command::new("chmod").arg("a+rwx").arg(p).status().unwrap();
    }
    // A copy the unprivileged user can reach wherever the checkout is.
    let exe = dir.path().join("pushbench");
    std::fs::copy(env!("CARGO_BIN_EXE_pushbench"), &exe).unwrap();
    Command::new("chmod")
        .arg("a+rx")
        .arg(&exe)
        .status()
        .unwrap();
    let started = Instant::now();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(&exe)
        .arg("run")
        .arg(&path)
        .arg("--results-dir")
        .arg(&results)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs root (CAP_NET_ADMIN"), "{stderr}");
    assert!(stderr.contains("link.toml"), "names the scenario: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "nothing started"
    );
    assert!(
        std::fs::read_dir(&results).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn a_lossy_jittery_link_loses_packets_but_no_event() {
    if !links_possible("a_lossy_jittery_link_loses_packets_but_no_event") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = scenario_file(
        &dir,
        "[network]\nrtt = \"20ms\"\njitter = \"2ms\"\nloss = 5.0\n",
    );
    let out = pushbench()
        .args(["run", "--quiet", "--transport", "websocket"])
        .arg(&path)
        .arg("--results-dir")
        .arg(dir.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary = summary_of(&dir.path().join("results"));
    let t = &summary["transports"][0];
    let link = &t["link"];
    // TCP hides the loss from the application: every event arrives.
    assert_eq!(t["delivery"]["lost"], 0);
    let stage = &link["stage"];
    let dropped =
        stage["up"]["dropped"].as_u64().unwrap() + stage["down"]["dropped"].as_u64().unwrap();
    let packets =
        stage["up"]["packets"].as_u64().unwrap() + stage["down"]["packets"].as_u64().unwrap();
    assert!(
        dropped > 0 && dropped < packets / 5,
        "{dropped} of {packets} dropped"
    );
    // The server resent what the link dropped on the way down.
    assert!(link["retransmitted_down"].as_u64().unwrap() > 0, "{link}");
    // With jitter the floor is the one-way delay less the jitter.
    assert_eq!(link["predicted"]["latency_floor_ms"], 8.0);
    assert!(t["latency_us"]["p50"].as_u64().unwrap() >= 8_000);
}
