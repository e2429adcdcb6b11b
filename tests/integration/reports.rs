//! Charts and reports rendered from a saved results directory
//! (tests/fixtures/results, written by a real tiny run).

use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/results");
const CHARTS: [&str; 7] = [
    "latency_spectrum",
    "latency_over_time",
    "throughput",
    "cost_per_event",
    "cost_vs_latency",
    "connect_time",
    "delivery",
];

/// A copy of the fixture, so rendering never writes into the repository.
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("results");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(FIXTURE).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    (tmp, dir)
}

fn read(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(!text.is_empty(), "{name} is empty");
    text
}

#[test]
fn every_chart_is_drawn_as_png_and_svg_with_names_and_axis_titles() {
    let (_tmp, dir) = fixture_copy();
    pushbench::report::render(&dir).unwrap();
    for chart in CHARTS {
        let png = std::fs::read(dir.join(format!("{chart}.png"))).unwrap();
        assert!(
            png.len() > 10_000 && png.starts_with(b"\x89PNG"),
            "{chart}.png"
        );
        let svg = read(&dir, &format!("{chart}.svg"));
        assert!(
            svg.contains("websocket") && svg.contains("long_polling"),
            "{chart}.svg names both transports"
        );
    }
    let axis_titles = [
        ("latency_spectrum", "latency (ms)"),
        ("latency_spectrum", "percentile"),
        ("latency_over_time", "time since the transport"),
        ("throughput", "delivered events per second"),
        ("cost_per_event", "bytes down per event (B)"),
        ("cost_per_event", "server memory per connection (KiB)"),
        ("connect_time", "connect time (ms)"),
        ("delivery", "out of order"),
    ];
    for (chart, title) in axis_titles {
        assert!(
            read(&dir, &format!("{chart}.svg")).contains(title),
            "{chart}.svg lacks {title:?}"
        );
    }
}

#[test]
fn html_report_is_self_contained_and_complete() {
    let (_tmp, dir) = fixture_copy();
    let saved = pushbench::report::render(&dir).unwrap();
    let html = read(&dir, "report.html");
    assert_eq!(
        html.matches("<svg").count(),
        CHARTS.len(),
        "every chart inline"
    );
    for chart in CHARTS {
        assert!(
            html.contains(&format!("<figure id=\"{chart}\">")),
            "{chart}"
        );
    }
    // Every comparison row, with the fixture's own figures.
    // Not a terminal here: the table is plain ASCII (Markdown).
    let table = pushbench::report::render_table(&saved.summary);
    let labels: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|-"))
        .map(|l| l.split('|').nth(1).unwrap().trim())
        .collect();
    assert!(labels.len() > 20, "{table}");
    for label in labels {
        if !label.contains("(measured") {
            assert!(
                html.contains(&format!("<td>{}</td>", html_escape::encode_text(label))),
                "row {label:?}"
            );
        }
    }
    let delivered = saved.summary.transports[0].delivery.delivered.to_string();
    assert!(html.contains(&format!("<td class=\"n\">{delivered}</td>")));
    for section in ["Method", "Environment", "Scenario", "coordinated omission"] {
        assert!(html.contains(section), "{section}");
    }
    // Nothing fetched from anywhere: no scripts, links, sources or imports.
    let lower = html.to_lowercase();
    for external in ["<script", "<link", "src=", "href=", "@import", "url("] {
        assert!(
            !lower.contains(external),
            "report.html references something external: {external}"
        );
    }
}

#[test]
fn markdown_report_has_the_table_and_links_every_png() {
    let (_tmp, dir) = fixture_copy();
    pushbench::report::render(&dir).unwrap();
    let md = read(&dir, "report.md");
    assert!(md.contains("| figure | websocket | long_polling |"));
    assert!(md.contains("| latency p99 |") && md.contains("| lost |"));
    for chart in CHARTS {
        assert!(md.contains(&format!("]({chart}.png)")), "{chart}");
    }
}

#[test]
fn warnings_and_incomplete_runs_are_shown() {
    let (_tmp, dir) = fixture_copy();
    let path = dir.join("summary.json");
    let mut summary: serde_json::Value = serde_json::from_str(&read(&dir, "summary.json")).unwrap();
    summary["complete"] = false.into();
    summary["incomplete_reason"] = "interrupted by the user".into();
    summary["transports"][1]["warnings"] = serde_json::json!(["generator saturated: test"]);
    std::fs::write(&path, summary.to_string()).unwrap();
    pushbench::report::render(&dir).unwrap();
    let html = read(&dir, "report.html");
    assert!(html.contains("INCOMPLETE run: interrupted by the user"));
    assert!(html.contains("warning: long_polling: generator saturated: test"));
}

fn report_cli(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pushbench"))
        .arg("report")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn report_on_a_broken_directory_exits_2_naming_the_file() {
    let (tmp, dir) = fixture_copy();
    let (code, stderr) = report_cli(&tmp.path().join("nope"));
    assert_eq!(code, 2);
    assert!(stderr.contains("nope: not a results directory"), "{stderr}");

    std::fs::write(
        dir.join("summary.json"),
        "{\"schema_version\": 1, \"complete\": tru",
    )
    .unwrap();
    let (code, stderr) = report_cli(&dir);
    assert_eq!(code, 2);
    assert!(stderr.contains("summary.json: not valid JSON"), "{stderr}");

    let (_tmp2, dir) = fixture_copy();
    std::fs::remove_file(dir.join("histograms.hlog")).unwrap();
    let (code, stderr) = report_cli(&dir);
    assert_eq!(code, 2);
    assert!(stderr.contains("histograms.hlog"), "{stderr}");

    let (_tmp3, dir) = fixture_copy();
    std::fs::write(dir.join("timeline.csv"), "transport,second\nwebsocket,x\n").unwrap();
    let (code, stderr) = report_cli(&dir);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("timeline.csv: row 2 is malformed"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn report_regenerates_from_saved_data_alone() {
    let (_tmp, dir) = fixture_copy();
    let (code, stderr) = report_cli(&dir);
    assert_eq!(code, 0, "{stderr}");
    assert!(dir.join("report.html").is_file() && dir.join("latency_spectrum.png").is_file());
}
