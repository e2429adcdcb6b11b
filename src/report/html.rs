//! report.html: one self-contained page (charts inline as SVG, styles
//! inline, no scripts, fonts or files fetched), so it opens offline and
//! can be attached to a design review as it is.

use std::fmt::Write as _;

use anyhow::Context as _;
use html_escape::encode_text as esc;

use super::charts::Rendered;
use super::saved::Saved;
use super::terminal::notices;
use super::{Renderer, charts};

pub const FILE: &str = "report.html";

const STYLE: &str = "body{font-family:sans-serif;max-width:1240px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px}\
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}\
.warn{background:#fff4e5;border-left:4px solid #e67e22;padding:6px 12px;margin:4px 0}\
.bad{background:#fdecea;border-left:4px solid #c0392b;padding:6px 12px;margin:4px 0}\
figure{margin:2em 0}svg{max-width:100%;height:auto}pre{background:#f7f7f7;padding:1em;overflow:auto}";

const METHOD: &str = "<p><b>Latency</b> is the client's receive time (taken when the event has been decoded) minus the \
event's <i>intended</i> publish time from the open-loop schedule, both read from the host's monotonic clock. The \
publisher never waits for delivery, so a stalled server, a full buffer or a long-poll re-poll gap is charged in full \
(no coordinated omission). The uncorrected figure measures from the moment the server actually published the event. \
Latency counts the events intended inside the measured window; warm-up is discarded.</p>\
<p><b>Delivery</b>: each client tracks the sequence numbers of its topics; expected events are those published on \
its topics while it was subscribed; lost = expected − delivered, after a bounded drain.</p>\
<p><b>Cost</b> is counted at the generator's sockets (HTTP and WebSocket frame headers included) and in each \
process's CPU time (user + system, from /proc) over the measured window, divided by the events delivered in it. \
Server memory per connection is the growth of the server's resident memory while the clients connected, divided by \
the clients.</p>\
<p><b>Fairness</b>: every transport runs the same seeded clients, topics and schedule, each against a fresh server \
process, one after the other on the same machine.</p>";

pub struct Html;

impl Renderer for Html {
    fn render(&self, saved: &Saved, charts: &[Rendered]) -> anyhow::Result<()> {
        let s = &saved.summary;
        let mut h = String::with_capacity(256 * 1024);
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>pushbench: {}</title><style>{STYLE}</style></head><body>",
            esc(&s.scenario.name)
        );
        let _ = write!(
            h,
            "<h1>pushbench: {}</h1><p>Started {} · pushbench {} ({}) · {} transports · measured {}</p>",
            esc(&s.scenario.name),
            esc(&s.started_at_utc),
            esc(&s.pushbench.version),
            esc(&s.pushbench.git_revision),
            s.transports.len(),
            esc(&humantime::format_duration(s.scenario.phases.measure).to_string()),
        );
        for line in notices(s) {
            let class = if line.starts_with("INCOMPLETE") {
                "bad"
            } else {
                "warn"
            };
            let _ = write!(h, "<div class=\"{class}\">{}</div>", esc(&line));
        }

        h.push_str("<h2>Comparison</h2><table><tr><th>figure</th>");
        for t in &s.transports {
            let c = charts::colour(t.transport);
            let _ = write!(
                h,
                "<th style=\"color:rgb({},{},{})\">{}</th>",
                c.0,
                c.1,
                c.2,
                esc(t.transport.name())
            );
        }
        h.push_str("</tr>");
        for (label, value) in super::table::rows(&s.transports) {
            let _ = write!(h, "<tr><td>{}</td>", esc(label.trim()));
            for t in &s.transports {
                let _ = write!(h, "<td class=\"n\">{}</td>", esc(&value(t)));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");

        h.push_str("<h2>Charts</h2>");
        for chart in charts {
            let _ = write!(
                h,
                "<figure id=\"{}\">{}<figcaption>{}</figcaption></figure>",
                chart.kind.file_stem(),
                chart.svg,
                esc(chart.kind.title())
            );
        }

        let _ = write!(h, "<h2>Method</h2>{METHOD}");
        let e = &s.environment;
        let _ = write!(
            h,
            "<h2>Environment</h2><table><tr><td>CPU</td><td>{}</td></tr><tr><td>cores</td><td>{}</td></tr>\
             <tr><td>kernel</td><td>{} ({})</td></tr><tr><td>open-file limit</td><td>{}</td></tr></table>",
            esc(&e.cpu_model),
            e.cores,
            esc(&e.kernel),
            esc(&e.os),
            e.open_files_limit
        );
        let scenario = serde_json::to_string_pretty(&s.scenario)?;
        let _ = writeln!(
            h,
            "<h2>Scenario</h2><pre>{}</pre></body></html>",
            esc(&scenario)
        );

        let path = saved.dir.join(FILE);
        std::fs::write(&path, h).with_context(|| format!("writing {}", path.display()))
    }
}
