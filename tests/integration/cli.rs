//! The binary as a user runs it.

use std::process::Command;

fn pushbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pushbench"))
}

fn run_with(scenario: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, scenario).unwrap();
    outcome(
        pushbench()
            .args(["run", path.to_str().unwrap(), "--results-dir"])
            .arg(dir.path().join("results")),
    )
}

/// Exit code, stdout and stderr of a finished command.
fn outcome(command: &mut Command) -> (i32, String, String) {
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_broken_scenario_exits_2_naming_file_line_field_and_what_is_allowed() {
    let text =
        crate::util::tiny_scenario("\"websocket\"", "json").replace("rate = 400.0", "rate = 0.0");
    let (code, _, stderr) = run_with(&text);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "broken.toml:12:8: publish.rate: out of range: allowed events per second, more than 0"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );

    let (code, _, stderr) = run_with("transports = [\"websocket\"]\n[clients]\ncount = \"x\"\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("broken.toml:3:9: clients.count: invalid type"),
        "{stderr}"
    );

    let out = pushbench()
        .args(["run", "does/not/exist.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("does/not/exist.toml: cannot read the scenario file")
    );
}

#[test]
fn a_tiny_run_writes_complete_results_for_both_transports() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    let text = crate::util::tiny_scenario("\"websocket\", \"long_polling\"", "json")
        .replace("1500ms", "1s");
    std::fs::write(&scenario, text).unwrap();
    let out = pushbench()
        .args([
            "run",
            "--quiet",
            scenario.to_str().unwrap(),
            "--results-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = stdout_of_success(&out);
    assert!(
        stdout.contains("websocket")
            && stdout.contains("long_polling")
            && stdout.contains("latency p99"),
        "{stdout}"
    );

    let (results, summary) = only_results(dir.path());
    assert_eq!(summary["complete"], true);
    assert_eq!(
        summary["schema_version"],
        pushbench::report::summary::SCHEMA_VERSION
    );
    let transports = summary["transports"].as_array().unwrap();
    assert_eq!(transports.len(), 2);
    for t in transports {
        assert_eq!(t["delivery"]["lost"], 0, "{t}");
        assert!(t["delivery"]["delivered"].as_u64().unwrap() > 0);
        // Measured in a server process of its own.
        assert!(t["processes"]["server_cpu_s"].as_f64().is_some(), "{t}");
        assert!(
            t["processes"]["server_memory_per_connection_bytes"]
                .as_f64()
                .is_some(),
            "{t}"
        );
        let log = results.join(t["files"]["interval_log"].as_str().unwrap());
        assert!(
            std::fs::read_to_string(log).unwrap().contains("HISTF"),
            "V2 compressed histograms"
        );
    }
    // The timeline's measure rows cover exactly the measured window: their
    // sums are the summary's figures, to the event and the byte (each
    // event counts in the second it arrived, even when a worker's timer
    // wakes late).
    let rows = pushbench::report::files::read_timeline(&results.join("timeline.csv")).unwrap();
    for t in transports {
        let name = t["transport"].as_str().unwrap();
        let measure: Vec<_> = rows
            .iter()
            .filter(|r| r.transport.name() == name && r.phase == "measure")
            .collect();
        assert_eq!(
            measure.len() as f64,
            t["throughput"]["window_s"].as_f64().unwrap().round(),
            "{name}: one measure row per second of the window"
        );
        let sum = |f: fn(&&pushbench::report::files::TimelineRow) -> u64| -> u64 {
            measure.iter().map(f).sum()
        };
        assert_eq!(
            sum(|r| r.delivered),
            t["throughput"]["delivered_in_window"].as_u64().unwrap(),
            "{name}: delivered"
        );
        assert_eq!(
            sum(|r| r.bytes_down),
            t["cost"]["bytes_down"].as_u64().unwrap(),
            "{name}: bytes down"
        );
        assert_eq!(
            sum(|r| r.bytes_up),
            t["cost"]["bytes_up"].as_u64().unwrap(),
            "{name}: bytes up"
        );
        assert_eq!(
            sum(|r| r.requests),
            t["cost"]["requests"].as_u64().unwrap(),
            "{name}: requests"
        );
        assert!(
            measure.iter().all(|r| r.machine_busy_pct.is_some()),
            "{name}: every second has its machine sample"
        );
        assert!(
            rows.iter()
                .any(|r| r.transport.name() == name && r.phase == "drain"),
            "{name}: drain rows"
        );
        assert!(t["machine"]["samples"].as_u64().unwrap() >= 1, "{t}");
    }
    let timeline = std::fs::read_to_string(results.join("timeline.csv")).unwrap();
    assert!(
        timeline
            .lines()
            .any(|l| l.starts_with("long_polling,") && l.contains(",measure,"))
    );
}

fn compare(baseline: &std::path::Path, current: &std::path::Path) -> (i32, String) {
    let out = pushbench()
        .arg("compare")
        .arg(baseline)
        .arg(current)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn compare_exits_0_on_pass_1_on_regression_2_on_bad_input() {
    let fixture = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/results/summary.json"
    ));
    let (code, out) = compare(fixture, fixture);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("pass:") && out.contains("bytes down / event"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    let bytes = &mut summary["transports"][0]["cost"]["bytes_down_per_event"];
    *bytes = (bytes.as_f64().unwrap() * 1.2).into();
    let worse = dir.path().join("worse.json");
    std::fs::write(&worse, summary.to_string()).unwrap();
    let (code, out) = compare(fixture, &worse);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REGRESSION") && out.contains("regression, or update the baseline with: cp"),
        "{out}"
    );

    let (code, out) = compare(fixture, &dir.path().join("missing.json"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("missing.json: cannot read"), "{out}");
}

#[test]
fn every_bundled_scenario_is_valid_and_runs_every_transport_it_can() {
    let mut seen = 0;
    for entry in std::fs::read_dir("scenarios").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = pushbench::scenario::Scenario::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!s.transports.is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(
        seen >= 5,
        "stock_ticker, chat, gaming, notifications, progress and more"
    );
}

#[test]
fn a_server_killed_mid_window_leaves_lost_unknown_and_the_window_closed_at_its_death() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("killed.toml");
    let text = crate::util::tiny_scenario("\"websocket\"", "json").replace("1500ms", "20s");
    std::fs::write(&scenario, text).unwrap();
    let mut child = pushbench()
        .args([
            "run",
            "--quiet",
            scenario.to_str().unwrap(),
            "--results-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The server is the run's only child process; kill it a second into
    // the measured window, however long the machine took to get there.
    let stderr = child.stderr.take().unwrap();
    let (measuring, measure_began) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(": measure (") {
                let _ = measuring.send(());
            }
            all += &line;
            all.push('\n');
        }
        all
    });
    measure_began
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the measured window began");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let server: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let killed_at = std::time::Instant::now();
    nix_kill(server);
    let out = child.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let (_, summary) = only_results(dir.path());
    let t = &summary["transports"][0];
    assert_eq!(summary["complete"], false);
    assert!(t["delivery"]["lost"].is_null(), "{t}");
    assert!(t["delivery"]["expected"].is_null(), "{t}");
    assert!(t["delivery"]["delivered"].as_u64().unwrap() > 0, "{t}");
    // The window closed at the death, not 20 s later nor at the next poll.
    let window = t["throughput"]["window_s"].as_f64().unwrap();
    assert!(window > 0.5 && window < 10.0, "window {window} s");
    assert!(killed_at.elapsed().as_secs() < 15);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains(" lost ") && l.contains("unknown")),
        "{table}"
    );
}

fn nix_kill(pid: i32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The one results directory a run wrote under `root`, and its summary.
fn only_results(root: &std::path::Path) -> (std::path::PathBuf, serde_json::Value) {
    let results = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let summary =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).unwrap()).unwrap();
    (results, summary)
}

#[test]
fn repeat_runs_each_repetition_into_its_own_directory_and_tables_the_spread() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    let text = crate::util::tiny_scenario("\"websocket\", \"sse\"", "json").replace("1500ms", "1s");
    std::fs::write(&scenario, text).unwrap();
    let out = pushbench()
        .args([
            "run",
            "--quiet",
            "--repeat",
            "2",
            scenario.to_str().unwrap(),
        ])
        .arg("--results-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = stdout_of_success(&out);
    let root = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    for r in 1..=2 {
        let text = std::fs::read(root.join(format!("repeat-{r}/summary.json"))).unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(summary["transports"].as_array().unwrap().len(), 2);
    }
    let table = std::fs::read_to_string(root.join("repetitions.md")).unwrap();
    assert!(
        table.contains("2 repetitions") && table.contains("n=2"),
        "{table}"
    );
    assert!(stdout.contains("latency p50"), "{stdout}");
    for chart in ["repetitions", "repetitions_cost_vs_latency"] {
        for ext in ["png", "svg"] {
            assert!(
                root.join(format!("{chart}.{ext}")).is_file(),
                "{chart}.{ext}"
            );
        }
    }
    // The repetitions compare A/B-style as a directory of runs.
    let (code, text) = compare(&root, &root);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn flags_that_make_no_sense_exit_2_before_anything_starts() {
    let out = pushbench()
        .args([
            "run",
            "scenarios/smoke.toml",
            "--transport",
            "sse",
            "--transport",
            "sse",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));
    for args in [
        ["serve", "--heartbeat", "0s"],
        ["serve", "--buffer-per-topic", "0"],
    ] {
        let out = pushbench().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("allowed is"));
    }
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/results/summary.json"
    );
    let out = pushbench()
        .args(["compare", "--noise", "nan", fixture, fixture])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--noise NaN: allowed is"));
}

/// The stdout of a command that must have exited 0; otherwise fails with
/// both its outputs.
fn stdout_of_success(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_results_dir_that_cannot_be_written_is_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(
        &scenario,
        crate::util::tiny_scenario("\"websocket\"", "json"),
    )
    .unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let refused = |results_dir: &std::path::Path| {
        let (code, _, stderr) = outcome(
            pushbench()
                .args(["run", scenario.to_str().unwrap(), "--results-dir"])
                .arg(results_dir),
        );
        assert_eq!(code, 2, "{stderr}");
        // Refused before anything started: no phase ran.
        assert!(!stderr.contains("connect"), "{stderr}");
        stderr
    };
    let is_a_file = format!("{} is a file, not a directory", file.display());
    let stderr = refused(&file);
    assert!(
        stderr.contains(&format!("--results-dir {}: {is_a_file}", file.display())),
        "{stderr}"
    );
    // A path under the file names the file.
    let stderr = refused(&file.join("results"));
    assert!(stderr.contains(&is_a_file), "{stderr}");
}

fn validate(args: &[&str]) -> (i32, String, String) {
    outcome(
        pushbench()
            .args(["validate", "scenarios/stock_ticker.toml"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    )
}

#[test]
fn overrides_are_validated_like_the_file_and_errors_name_the_flag() {
    let (code, out, err) = validate(&[
        "--rate",
        "1600",
        "-c",
        "1000",
        "--set",
        "phases.measure=10s",
    ]);
    assert_eq!(code, 0, "{err}");
    // 1,600 events/s, each reaching 1,000 × 5 / 250 = 20 clients.
    assert!(out.contains("about 32000 deliveries/s"), "{out}");
    assert!(out.contains("measure 10s"), "{out}");
    assert!(
        out.contains("overrides: --clients 1000, --rate 1600, --set phases.measure=10s"),
        "{out}"
    );

    for (args, expect) in [
        (
            vec!["--set", "publish.rate=0"],
            "--set publish.rate=0: publish.rate: out of range",
        ),
        (
            vec!["--rate", "-5"],
            "--rate -5: publish.rate: out of range",
        ),
        (vec!["-d", "10"], "--duration 10: phases.measure"),
        (vec!["--set", "publsh.rate=1"], "unknown field `publsh`"),
        (vec!["--set", "rate"], "expected KEY=VALUE"),
    ] {
        let (code, _, err) = validate(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn a_dry_run_shows_what_would_run_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let out = pushbench()
        .args([
            "run",
            "scenarios/stock_ticker.toml",
            "--dry-run",
            "--transport",
            "sse",
        ])
        .arg("--results-dir")
        .arg(&results)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("transports: sse (1)"), "{stdout}");
    assert!(stdout.contains("open files: about 2256"), "{stdout}");
    assert!(!results.exists(), "a dry run wrote {}", results.display());
    // Generator processes each hold their share; the server all of them.
    let out = pushbench()
        .args(["run", "scenarios/stock_ticker.toml", "--dry-run"])
        .args(["--transport", "sse", "--generators", "2"])
        .arg("--results-dir")
        .arg(&results)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("open files: about 1256 per generator process, 2256 for the server"),
        "{stdout}"
    );
    assert!(!results.exists(), "a dry run wrote {}", results.display());
}

#[test]
fn thresholds_are_judged_and_a_failed_one_exits_1() {
    // Nested-table and quoted keys alike; one threshold no machine can
    // meet (a latency under a nanosecond), one every correct run meets.
    let text = crate::util::tiny_scenario("\"websocket\"", "json")
        + "\n[thresholds]\n\"*.lost\" = \"== 0\"\nwebsocket.latency.p50 = \"< 0.000001ms\"\n";
    let (code, stdout, stderr) = run_with(&text);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("threshold passed: websocket: *.lost == 0 (was 0)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("threshold FAILED: websocket: websocket.latency.p50 < 0.000001ms"),
        "{stdout}"
    );
    assert!(stderr.contains("1 threshold check(s) failed"), "{stderr}");

    let bad = crate::util::tiny_scenario("\"websocket\"", "json")
        + "\n[thresholds]\n\"websocket.latency.p98\" = \"< 5ms\"\n";
    let (code, _, stderr) = run_with(&bad);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("thresholds: threshold \"websocket.latency.p98\": no figure"),
        "{stderr}"
    );
}

#[test]
fn json_puts_the_summary_alone_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(&scenario, crate::util::tiny_scenario("\"sse\"", "json")).unwrap();
    let (code, stdout, stderr) = outcome(
        pushbench()
            .args(["run", "--quiet", "--json", scenario.to_str().unwrap()])
            .arg("--results-dir")
            .arg(dir.path().join("results")),
    );
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(summary["transports"][0]["transport"], "sse");
    assert!(
        stderr.contains("latency p99"),
        "the table goes to stderr: {stderr}"
    );
}

#[test]
fn completions_and_the_manual_page_cover_every_command() {
    let (code, bash, _) = outcome(pushbench().args(["completions", "bash"]));
    assert_eq!(code, 0);
    for command in ["run", "serve", "validate", "compare", "report"] {
        assert!(bash.contains(command), "bash completion lacks {command}");
    }
    assert!(bash.contains("--max-connections"), "serve's flags");
    let (code, man, _) = outcome(pushbench().arg("man"));
    assert_eq!(code, 0);
    assert!(
        man.starts_with(".ie") || man.contains(".TH pushbench"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains("validate"), "subcommands listed");
}

#[test]
fn a_sweep_runs_every_point_indexes_them_and_reports_the_crossover() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    let text = crate::util::tiny_scenario("\"websocket\", \"long_polling\"", "json")
        .replace("1500ms", "1s");
    std::fs::write(&scenario, text).unwrap();

    // Every point is validated before any runs: a bad value names the flag.
    let (code, _, stderr) = outcome(
        pushbench()
            .args(["sweep", "--quiet", "--vary", "publish.rate=200,0"])
            .arg(&scenario)
            .arg("--results-dir")
            .arg(dir.path().join("refused")),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--vary publish.rate=0"), "{stderr}");
    assert!(!dir.path().join("refused").exists(), "nothing started");
    let (code, _, stderr) = outcome(
        pushbench()
            .args(["sweep", "--vary", "publish.arrival=poisson,constant"])
            .arg(&scenario)
            .arg("--results-dir")
            .arg(dir.path().join("refused")),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a number or duration"), "{stderr}");

    let results = dir.path().join("results");
    let (code, stdout, stderr) = outcome(
        pushbench()
            .args(["sweep", "--quiet", "--vary", "publish.rate=100,300"])
            .arg(&scenario)
            .arg("--results-dir")
            .arg(&results),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("publish.rate=100: p99 "), "{stdout}");
    assert!(stdout.contains("publish.rate=300: p99 "), "{stdout}");
    let sweep_dir = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("sweep.json").is_file())
        .unwrap()
        .path();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sweep_dir.join("sweep.json")).unwrap()).unwrap();
    let points = index["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for (p, rate) in points.iter().zip([100.0, 300.0]) {
        assert_eq!(p["exit_code"], 0);
        let summary: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                sweep_dir
                    .join(p["results"].as_str().unwrap())
                    .join("summary.json"),
            )
            .unwrap(),
        )
        .unwrap();
        // Each point is a normal run of the scenario with its value set.
        assert_eq!(summary["scenario"]["publish"]["rate"], rate);
        assert_eq!(summary["transports"].as_array().unwrap().len(), 2);
    }
    for f in [
        "report.md",
        "report.html",
        "sweep_latency.png",
        "sweep_cost.svg",
    ] {
        assert!(sweep_dir.join(f).is_file(), "{f}");
    }
    let md = std::fs::read_to_string(sweep_dir.join("report.md")).unwrap();
    assert!(md.contains("| publish.rate=300 |"), "{md}");

    // The report is rendered again from the saved files alone.
    std::fs::remove_file(sweep_dir.join("report.md")).unwrap();
    let (code, stdout, stderr) = outcome(pushbench().arg("report").arg(&sweep_dir));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("crossover"), "{stdout}");
    assert!(sweep_dir.join("report.md").is_file());
}

#[test]
fn init_writes_a_starter_that_validates_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) =
        outcome(pushbench().args(["init", "feed"]).current_dir(dir.path()));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote feed.toml"), "{stdout}");
    let text = std::fs::read_to_string(dir.path().join("feed.toml")).unwrap();
    assert!(text.contains("name = \"feed\"") && text.contains("docs/scenario.md"));
    let (code, stdout, stderr) = outcome(
        pushbench()
            .args(["validate", "feed.toml"])
            .current_dir(dir.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("websocket"), "{stdout}");

    let (code, _, stderr) = outcome(pushbench().args(["init", "feed"]).current_dir(dir.path()));
    assert_eq!(code, 2);
    assert!(stderr.contains("feed.toml exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("feed.toml")).unwrap(),
        text,
        "left as it was"
    );
    let (code, _, stderr) = outcome(
        pushbench()
            .args(["init", "no good"])
            .current_dir(dir.path()),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("1 to 64 of a-z"), "{stderr}");
    assert!(!dir.path().join("no good.toml").exists());
}

#[test]
fn results_that_cannot_be_written_where_asked_are_saved_elsewhere_and_said_so() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(
        &scenario,
        crate::util::tiny_scenario("\"websocket\"", "json").replace("1500ms", "2s"),
    )
    .unwrap();
    let results = dir.path().join("results");
    let mut child = pushbench()
        .args(["run", "--quiet"])
        .arg(&scenario)
        .arg("--results-dir")
        .arg(&results)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // Once the run is measuring, its results directory becomes a file.
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{seen}");
        seen += &line;
        if line.contains("websocket: measure") {
            break;
        }
    }
    std::fs::remove_dir_all(&results).unwrap();
    std::fs::write(&results, "in the way").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{seen}{rest}");
    let saved = rest
        .lines()
        .find_map(|l| l.split("they are saved in ").nth(1))
        .unwrap_or_else(|| panic!("no word of where: {rest}"))
        .trim_end_matches(" instead");
    let saved = std::path::Path::new(saved);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["transports"][0]["delivery"]["lost"], 0);
    assert!(
        saved.join("report.html").is_file(),
        "the report is rendered there too"
    );
    std::fs::remove_dir_all(saved.parent().unwrap()).unwrap();
}

#[test]
fn quiet_leaves_only_what_a_script_needs() {
    let (code, stdout, stderr) =
        outcome(pushbench().args(["validate", "-q", "scenarios/stock_ticker.toml"]));
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", ""));
    let (code, stdout, stderr) = outcome(pushbench().args([
        "--quiet",
        "validate",
        "scenarios/stock_ticker.toml",
        "--set",
        "publish.rate=0",
    ]));
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(
        stderr.contains("publish.rate"),
        "errors are always printed: {stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = outcome(
        pushbench()
            .args(["init", "--quiet", "q"])
            .current_dir(dir.path()),
    );
    assert_eq!((code, stdout.as_str()), (0, ""));
    assert!(dir.path().join("q.toml").is_file());
}
