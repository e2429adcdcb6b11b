#!/usr/bin/env python3
"""Checks `run --dashboard` and report.html in a real browser (headless
Chromium, driven over the DevTools protocol).

During a short two-transport run it loads the live page and checks that
its figures update while the run goes on, that the final figures it shows
equal summary.json, and that the per-second events/s it showed agree with
the summary's rate. Then it opens the run's report.html and checks that
every chart the run drew is on it and rendered. Neither page may log a console error or throw. It
saves screenshots of both (dashboard-live.png, dashboard-final.png,
report.png) for a look by eye.

Usage: scripts/check-dashboard.py BINARY [--out DIR]
Exit 0 when everything holds, 1 when a check failed, 2 when a part is
missing (Chromium: Debian package `chromium`; websocket-client: PyPI).
"""

import argparse
import base64
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

try:
    import websocket  # websocket-client
except ImportError:
    print("error: needs the Python package websocket-client (pip install websocket-client)", file=sys.stderr)
    sys.exit(2)

FAILURES = []


def fail(what):
    FAILURES.append(what)
    print(f"FAIL: {what}", flush=True)


def say(what):
    print(f"check-dashboard: {what}", flush=True)


class Browser:
    """One headless Chromium and one page of it, over the DevTools protocol."""

    def __init__(self, profile):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            print("error: needs Chromium (Debian package: chromium)", file=sys.stderr)
            sys.exit(2)
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            page = self._page_target(os.path.join(profile, "DevToolsActivePort"))
        except Exception:
            self.proc.kill()
            self.proc.wait()
            raise
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], suppress_origin=True)
        self.next_id = 0
        self.replies = {}
        self.events = queue.Queue()
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.console_errors = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})

    def _page_target(self, port_file, timeout=30):
        """The DevTools address of Chromium's first page, once it has one."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                port = open(port_file).read().split()[0]
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
                page = next((t for t in targets if t["type"] == "page"), None)
                if page is not None:
                    return page
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.1)
        print("error: Chromium did not start a page with its DevTools endpoint", file=sys.stderr)
        sys.exit(2)

    def _read(self):
        while True:
            try:
                msg = json.loads(self.ws.recv())
            except Exception:
                return
            if "id" in msg:
                with self.cond:
                    self.replies[msg["id"]] = msg
                    self.cond.notify_all()
                continue
            method, params = msg.get("method"), msg.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                self.console_errors.append(f"console.{params['type']}: {args}")
            elif method == "Runtime.exceptionThrown":
                d = params.get("exceptionDetails", {})
                self.console_errors.append(
                    f"exception: {d.get('exception', {}).get('description', d.get('text'))}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                e = params["entry"]
                self.console_errors.append(f"log: {e.get('text')} {e.get('url', '')}")
            self.events.put((method, params))

    def call(self, method, params=None, timeout=30):
        with self.cond:
            self.next_id += 1
            i = self.next_id
        self.ws.send(json.dumps({"id": i, "method": method, "params": params or {}}))
        with self.cond:
            if not self.cond.wait_for(lambda: i in self.replies, timeout):
                raise RuntimeError(f"{method}: no answer in {timeout} s")
            reply = self.replies.pop(i)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url, timeout=30):
        while not self.events.empty():
            self.events.get_nowait()
        self.call("Page.navigate", {"url": url})
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                method, _ = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if method == "Page.loadEventFired":
                return
        raise RuntimeError(f"{url} did not load in {timeout} s")

    def eval(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:60]}…: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        say(f"screenshot {path}")

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# What the page shows, read from its DOM (what a user sees), plus the
# per-second series it drew.
READ_PAGE = """JSON.stringify({
  status: document.getElementById('status').dataset.status,
  live: [...document.querySelectorAll('#live tbody tr')].map(tr => ({
    transport: tr.dataset.transport,
    fields: Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map(
      td => [td.dataset.field, td.dataset.value === undefined ? null : td.dataset.value]))})),
  final: [...document.querySelectorAll('#final tbody tr')].map(tr => ({
    transport: tr.dataset.transport,
    fields: Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map(
      td => [td.dataset.field, td.dataset.value === undefined ? null : td.dataset.value]))})),
  results: document.getElementById('results').textContent,
  series: Object.fromEntries([...window.pushbench.transports.values()].map(
    t => [t.name, [...t.series.entries()]])),
  lines: [...new Set([...document.querySelectorAll('#rate-chart path[data-transport]')].map(
    p => p.dataset.transport))].sort()
})"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--out", default="target/dashboard-check")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="pushbench-dashboard-")
    try:
        browser = Browser(os.path.join(work, "profile"))
        try:
            check(browser, args, work)
        finally:
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if FAILURES:
        say(f"{len(FAILURES)} check(s) failed")
        sys.exit(1)
    say("pass")


def check(browser, args, work):
    transports = ["websocket", "long_polling"]
    cmd = [args.binary, "run", "scenarios/stock_ticker.toml", "-c", "200", "-d", "5s",
           "--set", "phases.warmup=2s", "--set", "clients.connect_ramp=1s",
           "--dashboard", "127.0.0.1:0", "--results-dir", os.path.join(work, "results"), "--quiet"]
    for t in transports:
        cmd += ["--transport", t]
    say(" ".join(cmd))
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        follow(browser, args, run, transports)
    finally:
        if run.poll() is None:
            run.kill()
        run.wait()


def follow(browser, args, run, transports):
    url_q = queue.Queue()

    def echo_stderr():
        for line in run.stderr:
            sys.stderr.write(f"  | {line}")
            if line.startswith("dashboard: "):
                url_q.put(line.split(" ", 1)[1].strip())

    threading.Thread(target=echo_stderr, daemon=True).start()
    out_lines = []
    threading.Thread(target=lambda: out_lines.extend(run.stdout), daemon=True).start()
    try:
        url = url_q.get(timeout=60)
    except queue.Empty:
        run.kill()
        fail("the run printed no `dashboard: URL` line")
        return
    browser.open(url)
    say(f"opened {url}")

    # While the run goes on: the figures on the page change.
    seen = {t: set() for t in transports}
    live_shot = False
    while run.poll() is None:
        page = json.loads(browser.eval(READ_PAGE))
        for row in page["live"]:
            f = row["fields"]
            if row["transport"] in seen and f.get("delivered_per_s") is not None:
                seen[row["transport"]].add((f["delivered_per_s"], f["p50"], f["p99"]))
            if (row["transport"] == transports[-1] and f.get("phase") == "measure"
                    and page["lines"] == sorted(transports) and not live_shot):
                browser.screenshot(os.path.join(args.out, "dashboard-live.png"))
                live_shot = True
        time.sleep(0.4)
    code = run.wait()
    if code != 0:
        fail(f"the run exited {code}")
        return
    for t, values in seen.items():
        if len(values) < 2:
            fail(f"{t}: the page's live figures did not change while the run went on ({values})")
        else:
            say(f"{t}: the live row showed {len(values)} different figures during the run")
    if not live_shot:
        fail("the last transport's measure phase was not seen live on the page with a line per transport drawn")

    # The end: the page keeps the final figures, equal to summary.json.
    deadline = time.time() + 10
    page = json.loads(browser.eval(READ_PAGE))
    while page["status"] != "finished" and time.time() < deadline:
        time.sleep(0.2)
        page = json.loads(browser.eval(READ_PAGE))
    if page["status"] != "finished":
        fail(f"the page did not show the end of the run (status {page['status']})")
        return
    browser.screenshot(os.path.join(args.out, "dashboard-final.png"))
    results = page["results"]
    with open(os.path.join(results, "summary.json")) as f:
        summary = json.load(f)
    final = {r["transport"]: r["fields"] for r in page["final"]}
    for ts in summary["transports"]:
        t = ts["transport"]
        shown = final.get(t)
        if shown is None:
            fail(f"{t}: not in the page's final figures")
            continue
        want = {
            "expected": ts["delivery"]["expected"], "delivered": ts["delivery"]["delivered"],
            "lost": ts["delivery"]["lost"], "p50": ts["latency_us"]["p50"],
            "p99": ts["latency_us"]["p99"], "p99_9": ts["latency_us"]["p99_9"],
            "errors": sum(ts["errors"].values()),
        }
        for k, v in want.items():
            got = shown.get(k)
            if (None if got is None else int(got)) != v:
                fail(f"{t}: the page's final {k} is {got}, summary.json says {v}")
        rate = ts["throughput"]["delivered_per_s"]
        if abs(float(shown["delivered_per_s"]) - rate) > 1e-6 * max(1.0, rate):
            fail(f"{t}: the page's final events/s is {shown['delivered_per_s']}, summary.json says {rate}")
        # The per-second rates the page drew while the run went on measure
        # the same thing as the summary's window.
        measured = [p["rate"] for s, p in page["series"].get(t, []) if p["phase"] == "measure"]
        if not measured:
            fail(f"{t}: the page drew no second of the measured phase")
            continue
        median = statistics.median(measured)
        if not 0.5 * rate <= median <= 2 * rate:
            fail(f"{t}: the page showed a median of {median} events/s in the measured phase; summary.json says {rate:.1f}")
        say(f"{t}: final figures equal summary.json (delivered {ts['delivery']['delivered']}, p99 {ts['latency_us']['p99']} µs); "
            f"live median {median} events/s against {rate:.1f}")
    if browser.console_errors:
        for e in browser.console_errors:
            fail(f"dashboard: {e}")
    browser.console_errors.clear()

    # The run's report.html, opened from disk like a user does.
    browser.open("file://" + os.path.join(results, "report.html"))
    time.sleep(0.5)
    report = json.loads(browser.eval("""JSON.stringify({
      text: document.body.innerText,
      charts: [...document.querySelectorAll('svg')].map(s => {
        const b = s.getBoundingClientRect();
        return [b.width, b.height, s.querySelectorAll('path, polyline, line, rect, circle').length];
      })
    })"""))
    for t in transports:
        if t not in report["text"]:
            fail(f"report.html does not name {t}")
    drawn = sorted(f for f in os.listdir(results) if f.endswith(".svg"))
    if len(report["charts"]) != len(drawn):
        fail(f"report.html shows {len(report['charts'])} charts; the run drew {len(drawn)} ({', '.join(drawn)})")
    for i, (w, h, shapes) in enumerate(report["charts"]):
        if w < 100 or h < 100 or shapes < 5:
            fail(f"report.html: chart {i + 1} is not drawn ({w}×{h} px, {shapes} shapes)")
    say(f"report.html: {len(report['charts'])} charts drawn ({', '.join(drawn)})")
    browser.screenshot(os.path.join(args.out, "report.png"))
    for e in browser.console_errors:
        fail(f"report.html: {e}")


if __name__ == "__main__":
    main()
