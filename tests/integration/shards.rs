//! Sharded runs: `run --shard K/N` against one running server, each shard a
//! process of its own as on machines of their own, joined by `pushbench
//! merge`, give exactly the counts of the same workload in one process.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::target::{pushbench, serve, summary_of};
use crate::util::tiny_scenario;

/// The one results directory a run wrote under `root`.
fn results_in(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("summary.json").is_file())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

fn merge(args: &[&Path], out: &Path) -> Output {
    pushbench()
        .arg("merge")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A merged transport `m` has every one of the 40 clients subscribed and
/// exactly the expected and delivered events of `whole`, one process
/// running the same workload, with none lost.
fn assert_same_deliveries(m: &serde_json::Value, whole: &serde_json::Value) {
    let name = &whole["transport"];
    assert_eq!(m["clients"]["subscribed"], 40, "{name}");
    assert!(whole["delivery"]["expected"].as_u64() > Some(0), "{name}");
    for figure in ["expected", "delivered"] {
        assert_eq!(
            m["delivery"][figure], whole["delivery"][figure],
            "{name}: {figure}"
        );
    }
    assert_eq!(m["delivery"]["lost"], 0, "{name}");
}

#[test]
fn shards_merged_give_the_counts_of_one_process_running_them_all() {
    let text = tiny_scenario("\"websocket\", \"long_polling\"", "json");
    let (mut server, url) = serve();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.toml");
    std::fs::write(&path, &text).unwrap();

    // The whole workload in one process.
    let (code, whole, err) = summary_of(&["--target", &url, "--set", "clients.shards=2"], &text);
    assert_eq!(code, 0, "{err}");

    // Both shards at once, as an Indexed Job's pods run.
    let shard = |k: u32| {
        pushbench()
            .arg("run")
            .arg(&path)
            .args(["--quiet", "--target", &url, "--shard"])
            .arg(format!("{k}/2"))
            .arg("--results-dir")
            .arg(dir.path().join(format!("shard-{k}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let running = [shard(0), shard(1)];
    for child in running {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let _ = server.kill();
    let s0 = results_in(&dir.path().join("shard-0"));
    let s1 = results_in(&dir.path().join("shard-1"));
    let out = dir.path().join("merged");
    let merged = merge(&[&s1, &s0], &out);
    assert!(merged.status.success(), "{}", stderr(&merged));
    let merged: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();

    let shard_summary = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    let (a, b) = (shard_summary(&s0), shard_summary(&s1));
    assert_eq!(a["scenario"]["clients"]["shard"], 0);
    assert_eq!(b["scenario"]["clients"]["shard"], 1);
    assert!(merged["scenario"]["clients"]["shard"].is_null(), "{merged}");
    assert_eq!(merged["scenario"]["clients"]["shards"], 2);
    assert_eq!(merged["shards"].as_array().map(Vec::len), Some(2));
    assert_eq!(merged["shards"][0]["shard"], 0);
    for (i, t) in whole["transports"].as_array().unwrap().iter().enumerate() {
        let m = &merged["transports"][i];
        let name = &t["transport"];
        assert_eq!(m["transport"], *name);
        // 40 clients split 20/20; the same seeded clients and events.
        assert_eq!(a["transports"][i]["clients"]["requested"], 20, "{name}");
        assert_eq!(m["clients"]["requested"], 40, "{name}");
        assert_same_deliveries(m, t);
        // Each shard published only its own topics' events.
        let published = |s: &serde_json::Value| {
            s["transports"][i]["publisher"]["published"]
                .as_u64()
                .unwrap()
        };
        assert!(published(&a) > 0 && published(&b) > 0, "{name}");
        assert_eq!(published(&a) + published(&b), published(&whole), "{name}");
        assert_eq!(
            m["publisher"]["published"].as_u64(),
            Some(published(&whole))
        );
        // Latency samples of both shards, added.
        let count =
            |s: &serde_json::Value| s["transports"][i]["latency_us"]["count"].as_u64().unwrap();
        assert_eq!(count(&merged), count(&a) + count(&b), "{name}");
        let bytes =
            |s: &serde_json::Value| s["transports"][i]["cost"]["bytes_down"].as_u64().unwrap();
        assert_eq!(bytes(&merged), bytes(&a) + bytes(&b), "{name}");
        // Not known for the whole run: each shard saw the server alone.
        assert!(m["processes"]["server_cpu_s"].is_null(), "{name}");
    }
    assert!(out.join("report.html").is_file());

    // Not one run's shards: refused, nothing written.
    let again = merge(&[&s0, &s0], &dir.path().join("twice"));
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("shard 0 is given twice"),
        "{}",
        stderr(&again)
    );
    let one = merge(&[&s1], &dir.path().join("one"));
    assert_eq!(one.status.code(), Some(2));
    assert!(
        stderr(&one).contains("shard(s) 0 of 2 missing"),
        "{}",
        stderr(&one)
    );
    let onto = merge(&[&s0, &s1], &out);
    assert_eq!(onto.status.code(), Some(2));
    assert!(
        stderr(&onto).contains("holds results already"),
        "{}",
        stderr(&onto)
    );
    assert!(!dir.path().join("twice").exists() && !dir.path().join("one").exists());
}

/// `run --generators 2`: two generator processes on this machine against
/// the one server the run starts, measuring one window, merged.
#[test]
fn generator_processes_merge_to_the_counts_of_one_and_measure_one_window() {
    let text = tiny_scenario("\"websocket\", \"long_polling\"", "json");
    // The same workload in one generator process that publishes too.
    let (mut server, url) = serve();
    let (code, whole, err) = summary_of(&["--target", &url, "--set", "clients.shards=2"], &text);
    let _ = server.kill();
    assert_eq!(code, 0, "{err}");
    let (code, many, err) = summary_of(&["--generators", "2"], &text);
    assert_eq!(code, 0, "{err}");

    let clients = &many["scenario"]["clients"];
    assert_eq!(clients["processes"], 2, "{many}");
    assert_eq!(clients["shards"], 2);
    assert!(clients["shard"].is_null() && many["scenario"]["target"].is_null());
    // The processes' directories are merged away; their figures stay.
    assert_eq!(many["shards"].as_array().map(Vec::len), Some(0), "{many}");
    let warnings = many["warnings"].to_string();
    assert!(
        warnings.contains("2 generator processes that measured one window"),
        "{warnings}"
    );
    assert!(!warnings.contains("running server"), "{warnings}");
    for (i, t) in whole["transports"].as_array().unwrap().iter().enumerate() {
        let m = &many["transports"][i];
        let name = &t["transport"];
        assert_eq!(m["transport"], *name);
        assert_same_deliveries(m, t);
        assert_eq!(m["publish_from"], "generator", "{name}");
        assert_eq!(
            m["publisher"]["published"], t["publisher"]["published"],
            "{name}"
        );
        // Each process's own figures, which add up to the run's.
        let own = m["processes"]["generators"].as_array().unwrap();
        assert_eq!(own.len(), 2, "{name}: {m}");
        assert_eq!(
            (own[0]["shard"].as_u64(), own[1]["shard"].as_u64()),
            (Some(0), Some(1))
        );
        let sum = |f: &str| own.iter().map(|p| p[f].as_u64().unwrap()).sum::<u64>();
        assert_eq!(
            Some(sum("delivered_in_window")),
            m["throughput"]["delivered_in_window"].as_u64(),
            "{name}"
        );
        assert_eq!(
            Some(sum("peak_rss_bytes")),
            m["processes"]["generator_peak_rss_bytes"].as_u64()
        );
        let cpu = |p: &serde_json::Value| p["cpu_s"].as_f64().unwrap();
        let total = m["processes"]["generator_cpu_s"].as_f64().unwrap();
        assert!((cpu(&own[0]) + cpu(&own[1]) - total).abs() < 1e-9, "{name}");
        // One window: the server's CPU and the machine's load are known.
        assert!(
            m["processes"]["server_cpu_s"].as_f64() > Some(0.0),
            "{name}: {m}"
        );
        assert!(
            m["cost"]["server_cpu_us_per_event"].as_f64() > Some(0.0),
            "{name}"
        );
        assert!(
            m["processes"]["server_peak_rss_bytes"].as_u64() > Some(0),
            "{name}"
        );
        assert!(m["machine"].is_object(), "{name}");
    }
}

/// The server a run with generator processes starts holds every process's
/// clients, however few each process holds, even where the shell's
/// open-file limit is low (the run raises it as far as the hard limit).
#[test]
fn the_bundled_server_has_room_for_the_clients_of_every_generator_process() {
    let text = tiny_scenario("\"websocket\"", "json").replace("count = 40\n", "count = 600\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    // 300 clients a process would fit under 512; 600 at the server do not.
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -Sn 512 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_pushbench"))
        .arg("run")
        .arg(&path)
        .args(["--quiet", "--json", "--generators", "2", "--results-dir"])
        .arg(dir.path().join("results"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &summary["transports"][0];
    assert_eq!(t["clients"]["subscribed"], 600, "{t}");
    assert_eq!(t["delivery"]["lost"], 0, "{t}");
    assert!(t["delivery"]["delivered"].as_u64() > Some(0), "{t}");
    // One machine over one window: the merged timeline keeps its load.
    let timeline =
        std::fs::read_to_string(results_in(&dir.path().join("results")).join("timeline.csv"))
            .unwrap();
    let mut rows = timeline.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let busy = header
        .iter()
        .position(|c| *c == "machine_busy_pct")
        .unwrap();
    assert!(
        rows.any(|r| r.split(',').nth(busy).is_some_and(|v| !v.is_empty())),
        "{timeline}"
    );
}

#[test]
fn generator_processes_are_refused_where_they_cannot_run() {
    let text = tiny_scenario("\"websocket\"", "json");
    for (args, says) in [
        (
            &["--generators", "2", "--dashboard", "127.0.0.1:0"][..],
            "--dashboard with clients.processes = 2",
        ),
        (
            &["--generators", "2", "--set", "clients.shards=4"][..],
            "each process runs one shard",
        ),
        (
            &["--generators", "2", "--set", "publish.from=\"server\""][..],
            "each process publishes its own shard's topics",
        ),
        (&["--generators", "41"][..], "every process has clients"),
        (&["--window-gate", "1"][..], "--window-gate is internal"),
    ] {
        let (code, _, err) = summary_of(args, &text);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_shard_is_refused_before_anything_starts_when_it_cannot_be_one() {
    let text = tiny_scenario("\"websocket\"", "json");
    let url = "http://127.0.0.1:9";
    for (args, says) in [
        (
            vec!["--shard", "2/2", "--target", url],
            "--shard 2/2: clients.shard: out of range: allowed 0 to 1",
        ),
        (
            vec!["--shard", "0/2"],
            "only against a server every shard shares",
        ),
        (vec!["--shard", "1"], "expected K/N"),
        (
            vec!["--shard", "0/41", "--target", url],
            "clients.shards: out of range: allowed at most clients.count (40)",
        ),
        (
            vec!["--shard", "0/4", "--target", url],
            "allowed at most topics.count / clients.shards (2)",
        ),
    ] {
        let (code, _, err) = summary_of(&args, &text);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
