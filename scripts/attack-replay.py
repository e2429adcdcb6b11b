#!/usr/bin/env python3
"""Replays hostile-client attacks against a fresh `pushbench serve` and prints
a markdown table: what the server answered, its RSS after each attack, the
worst delay a well-behaved WebSocket subscriber saw meanwhile, and whether
the server is still alive.

    scripts/attack-replay.py [--binary target/release/pushbench] [--only 4,8]

Evidence for the limits of docs/protocol.md ("Limits"); run by hand, not in
CI. Python 3 standard library only; Linux only (/proc, CLOCK_MONOTONIC).

One server serves every row: `--max-topics 2000 --max-connections 1200
--write-timeout 2s`, so the topic-cap, connection-cap and slow-consumer
attacks are scaled down to fit a few minutes. A good subscriber (its own
process, so this script's attack loops cannot delay it) follows topic GOOD,
fed at 200 events/s by the server's own publisher, for the whole run.
"""

import argparse
import base64
import hashlib
import http.client
import json
import multiprocessing
import os
import resource
import secrets
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

# The server stamps events with CLOCK_MONOTONIC plus this (src/clock.rs).
OFFSET_NS = 100_000_000_000_000_000
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

MAX_TOPICS = 2000
MAX_CONNECTIONS = 1200
WRITE_TIMEOUT = "2s"
SERVE_FLAGS = [
    "--max-topics", str(MAX_TOPICS),
    "--max-connections", str(MAX_CONNECTIONS),
    "--write-timeout", WRITE_TIMEOUT,
]
GOOD_RATE = 200.0
TOTAL_BUDGET_S = 290.0
SSE_TOPICS = [f"S{i}" for i in range(256)]


def now_ns():
    """The server's clock: monotonic nanoseconds plus OFFSET_NS."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) + OFFSET_NS


def log(msg):
    print(f"[attack-replay] {msg}", file=sys.stderr, flush=True)


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def short(text, n=90):
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


# --------------------------------------------------------------------------
# WebSocket (RFC 6455), hand-written: client frames masked, server's not.


def ws_frame(opcode, payload=b"", fin=True, rsv=0, mask=True):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    if n:
        keys = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")
    return head + key + payload


class FrameReader:
    """Splits a byte stream into frames: (fin, rsv, opcode, payload)."""

    def __init__(self, initial=b""):
        self.buf = bytearray(initial)

    def feed(self, data):
        self.buf += data

    def frames(self):
        out = []
        b = self.buf
        while len(b) >= 2:
            b0, b1 = b[0], b[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(b) < 4:
                    break
                n, off = int.from_bytes(b[2:4], "big"), 4
            elif n == 127:
                if len(b) < 10:
                    break
                n, off = int.from_bytes(b[2:10], "big"), 10
            key = None
            if b1 & 0x80:
                if len(b) < off + 4:
                    break
                key, off = bytes(b[off:off + 4]), off + 4
            if len(b) < off + n:
                break
            payload = bytes(b[off:off + n])
            if key:
                keys = (key * (n // 4 + 1))[:n]
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")
            del b[:off + n]
            out.append((b0 >> 7, b0 & 0x70, b0 & 0x0F, payload))
        return out


def ws_connect(port, path="/ws", timeout=5.0, rcvbuf=None):
    """Opens a WebSocket; returns the socket and any bytes after the 101."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    s.sendall(
        b"GET " + path.encode() + b" HTTP/1.1\r\n"
        b"Host: 127.0.0.1:" + str(port).encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            s.close()
            raise ConnectionError("connection closed during the WebSocket handshake")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        s.close()
        raise ConnectionError(f"upgrade refused: {short(status)}")
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    if accept.lower() not in head.lower():
        s.close()
        raise ConnectionError("wrong Sec-WebSocket-Accept")
    return s, rest


def read_close(sock, reader, timeout=5.0):
    """Reads until the server's close frame: '1007 (reason)' or what happened instead."""
    deadline = time.monotonic() + timeout
    while True:
        for _fin, _rsv, opcode, payload in reader.frames():
            if opcode == 0x8:
                if len(payload) >= 2:
                    code = struct.unpack("!H", payload[:2])[0]
                    reason = short(payload[2:], 60)
                    try:
                        sock.sendall(ws_frame(0x8, payload[:2]))
                    except OSError:
                        pass
                    return code, reason
                return None, "close frame without a code"
        left = deadline - time.monotonic()
        if left <= 0:
            return None, f"no close frame within {timeout:.0f} s"
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError as e:
            return None, f"connection error ({e.__class__.__name__}) without a close frame"
        if not data:
            return None, "connection closed without a close frame (1006)"
        reader.feed(data)


# --------------------------------------------------------------------------
# The good subscriber: its own process, so the attacks' Python loops cannot
# hold it up. It follows GOOD, answers pings, and reports per window the
# worst (receive time - intended time) and the sequence gaps.


def subscriber_main(port, ctl):
    totals = {"events": 0, "lost": 0, "worst_ns": 0, "reconnects": 0, "duplicates": 0, "errors": []}
    window = None
    last = None  # cursor on GOOD
    sock = reader = None
    partial = []  # fragments of a message in progress

    def connect():
        nonlocal sock, reader
        s, rest = ws_connect(port, "/ws")
        sub = {"GOOD": last}
        s.sendall(ws_frame(0x1, json.dumps({"subscribe": sub}).encode()))
        s.setblocking(False)
        sock, reader = s, FrameReader(rest)

    def on_message(text, recv_ns):
        nonlocal last
        msg = json.loads(text)
        if "subscribed" in msg:
            head = msg["subscribed"].get("GOOD")
            if last is None and head is not None:
                last = head
            return "subscribed"
        if "missed" in msg:
            m = msg["missed"]
            gone = m["last"] - m["first"] + 1
            totals["lost"] += gone
            if window is not None:
                window["lost"] += gone
            last = m["last"]
            return None
        seq, intended = msg["s"], msg["i"]
        delay = recv_ns - intended
        if last is not None and seq > last + 1:
            totals["lost"] += seq - last - 1
            if window is not None:
                window["lost"] += seq - last - 1
        if last is not None and seq <= last:
            totals["duplicates"] += 1
        last = seq
        totals["events"] += 1
        totals["worst_ns"] = max(totals["worst_ns"], delay)
        if window is not None:
            window["events"] += 1
            window["worst_ns"] = max(window["worst_ns"], delay)
        return None

    try:
        connect()
    except Exception as e:  # noqa: BLE001
        ctl.send({"ready": False, "error": repr(e)})
        return
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "ws")
    sel.register(ctl, selectors.EVENT_READ, "ctl")
    ready_sent = False
    while True:
        for key, _ in sel.select(1.0):
            if key.data == "ctl":
                cmd = ctl.recv()
                if cmd == "start":
                    window = {"events": 0, "lost": 0, "worst_ns": 0, "reconnects": 0}
                elif cmd == "end":
                    ctl.send(window or {"events": 0, "lost": 0, "worst_ns": 0, "reconnects": 0})
                    window = None
                elif cmd == "stop":
                    ctl.send(totals)
                    return
                continue
            try:
                data = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            recv_ns = now_ns()
            closed = not data
            if data:
                reader.feed(data)
                for fin, _rsv, opcode, payload in reader.frames():
                    if opcode == 0x9:
                        try:
                            sock.setblocking(True)
                            sock.sendall(ws_frame(0xA, payload))
                            sock.setblocking(False)
                        except OSError:
                            closed = True
                    elif opcode == 0x8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                        totals["errors"].append(f"server closed the subscriber with {code}")
                        closed = True
                    elif opcode in (0x1, 0x0):
                        partial.append(payload)
                        if fin:
                            text = b"".join(partial)
                            partial.clear()
                            if on_message(text, recv_ns) == "subscribed" and not ready_sent:
                                ctl.send({"ready": True})
                                ready_sent = True
            if closed:
                sel.unregister(sock)
                sock.close()
                totals["reconnects"] += 1
                if window is not None:
                    window["reconnects"] += 1
                for _ in range(20):
                    try:
                        connect()
                        break
                    except Exception:  # noqa: BLE001
                        time.sleep(0.2)
                else:
                    totals["errors"].append("could not reconnect")
                    if not ready_sent:
                        ctl.send({"ready": False, "error": "subscriber lost"})
                        ready_sent = True
                    sock = None  # keep answering the control pipe only
                if sock is not None:
                    sel.register(sock, selectors.EVENT_READ, "ws")


class Subscriber:
    def __init__(self, port):
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=subscriber_main, args=(port, child), daemon=True)
        self.proc.start()
        if not self.conn.poll(10):
            raise RuntimeError("good subscriber: no subscription within 10 s")
        msg = self.conn.recv()
        if not msg.get("ready"):
            raise RuntimeError(f"good subscriber failed: {msg.get('error')}")

    def start(self):
        self.conn.send("start")

    def end(self):
        self.conn.send("end")
        if not self.conn.poll(10):
            return None
        return self.conn.recv()

    def stop(self):
        try:
            self.conn.send("stop")
            if self.conn.poll(10):
                return self.conn.recv()
        except (OSError, EOFError):
            pass
        return None

    def kill(self):
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(3)


# --------------------------------------------------------------------------
# The server process.


class Server:
    def __init__(self, binary, token):
        env = dict(os.environ, PUSHBENCH_TOKEN=token)
        self.token = token
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", *SERVE_FLAGS],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self.output = []
        self.port = None
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + 15
        while self.port is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                err = self.proc.stderr.read1(4096) if self.proc.poll() is not None else b""
                raise RuntimeError(f"server did not start: {short(err)}")
            if not sel.select(left):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.decode("utf-8", "replace")
                self.output.append(line)
                if line.startswith("pushbench server listening on "):
                    self.port = int(line.rsplit(":", 1)[1].strip().strip("/"))
        sel.close()
        # Keep draining both pipes so the server never blocks on them.
        for pipe in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._drain, args=(pipe,), daemon=True).start()

    def _drain(self, pipe):
        try:
            for line in pipe:
                self.output.append(line.decode("utf-8", "replace").rstrip())
        except (OSError, ValueError):
            pass

    def rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def request(self, method, path, body=None, headers=None, token=True, timeout=5.0):
        """One request on a fresh connection: (status, body, seconds)."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data, time.perf_counter() - t0
        finally:
            conn.close()

    def stats(self):
        status, body, _ = self.request("GET", "/_pushbench/stats")
        if status != 200:
            raise RuntimeError(f"stats answered {status}")
        return json.loads(body)

    def refusals(self):
        return self.stats().get("refusals", {})

    def alive(self):
        code = self.proc.poll()
        if code is not None:
            return f"NO (exited {code})"
        try:
            status, _, secs = self.request("GET", "/", token=False, timeout=3)
        except OSError as e:
            return f"process up, GET / failed ({e.__class__.__name__})"
        return "yes" if status == 200 else f"process up, GET / {status}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------
# Raw HTTP: write a request (however large) while watching for the answer,
# so a server that answers early and closes is seen, not a broken pipe.


def raw_exchange(port, data, timeout=10.0):
    """Sends `data` on a new connection, reads the answer's head. Returns a
    dict: status (int or None), line, first (seconds to the first answer
    byte, from the first byte sent), sent, error."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    view = memoryview(data)
    sent, got, error, first = 0, b"", None, None
    t0 = time.perf_counter()
    deadline = t0 + timeout
    writing = True
    try:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                error = f"no answer within {timeout:.0f} s"
                break
            events = sel.select(left)
            done = False
            for _key, mask in events:
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        chunk = None
                    except OSError as e:
                        error = f"{e.__class__.__name__} while reading"
                        done = True
                        chunk = None
                    if chunk:
                        if first is None:
                            first = time.perf_counter() - t0
                        got += chunk
                        if b"\r\n\r\n" in got:
                            done = True
                    elif chunk == b"":
                        if not got:
                            error = "closed without an answer"
                        done = True
                if writing and mask & selectors.EVENT_WRITE:
                    try:
                        sent += s.send(view[sent:sent + (1 << 18)])
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError as e:
                        error = f"{e.__class__.__name__} while sending"
                        writing = False
                        sel.modify(s, selectors.EVENT_READ)
                    if writing and sent >= len(data):
                        writing = False
                        sel.modify(s, selectors.EVENT_READ)
            if done:
                break
    finally:
        sel.close()
        s.close()
    line = got.split(b"\r\n", 1)[0].decode("latin-1") if got else ""
    status = None
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1].isdigit():
        status = int(parts[1])
    body = got.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in got else b""
    return {"status": status, "line": line, "first": first, "sent": sent, "error": error, "body": body}


def describe(r, total=None):
    if r["status"] is not None:
        text = str(r["status"])
        if r["first"] is not None:
            text += f" in {ms(r['first'])}"
    else:
        text = r["error"] or "no answer"
    if total is not None and r["sent"] < total:
        text += f" (server stopped reading: {r['sent'] / 1024:.0f} KiB of {total / 1024:.0f} KiB sent)"
    return text


def head_bytes(port, method, path, headers=()):
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def counts(statuses):
    tally = {}
    for s in statuses:
        tally[s] = tally.get(s, 0) + 1
    return ", ".join(f"{k} ×{v}" for k, v in sorted(tally.items(), key=lambda kv: -kv[1]))


def spread(values):
    if not values:
        return "n/a"
    values = sorted(values)
    return f"{values[0]:.1f}–{values[-1]:.1f} s (median {statistics.median(values):.1f})"


# --------------------------------------------------------------------------
# The rows.


class RowTimeout(Exception):
    pass


class Ctx:
    def __init__(self, server, subscriber):
        self.server = server
        self.sub = subscriber
        self.port = server.port
        self.sockets = []

    def track(self, s):
        self.sockets.append(s)
        return s

    def close_all(self):
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass
        self.sockets.clear()


def row_baseline(ctx):
    time.sleep(2)
    return "no attack: 2 s of GOOD events at 200/s"


def plan(payload_bytes):
    return {
        "topics": ["GOOD"], "rate": 100.0, "arrival": "constant",
        "payload_bytes": payload_bytes, "seed": 1,
        "start_ns": now_ns(), "duration_ns": 1_000_000_000,
    }


def plan_row(payload_bytes):
    def run(ctx):
        status, body, secs = ctx.server.request(
            "POST", "/_pushbench/publish", body=json.dumps(plan(payload_bytes)),
            headers={"Content-Type": "application/json"},
        )
        return f"{status} in {ms(secs)}: {short(body, 70)}"
    return run


def row_last_event_id(ctx):
    header = ",".join(f"T{i}:{i}" for i in range(100_000))
    data = head_bytes(ctx.port, "GET", "/sse?subs=A", [f"Last-Event-ID: {header}", "Accept: text/event-stream"])
    r = raw_exchange(ctx.port, data, timeout=15)
    return f"{describe(r, len(data))}; header {len(header) / 1e6:.2f} MB"


def row_lp_16k(ctx):
    subs = ",".join(f"T{i}" for i in range(16_000))
    data = head_bytes(ctx.port, "GET", f"/lp?subs={subs}&hold_ms=0")
    r = raw_exchange(ctx.port, data, timeout=15)
    return f"{describe(r, len(data))}; request line {len(subs) / 1024:.0f} KiB"


def row_topic_cap(ctx):
    existing = len(ctx.server.stats()["heads"])
    before = ctx.server.refusals().get("topic_limit", 0)
    conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=5)
    statuses, first_429 = [], None
    t0 = time.perf_counter()
    try:
        for n in range(3000):
            for attempt in range(2):
                try:
                    conn.request("GET", f"/lp?subs=T{n}&hold_ms=1")
                    resp = conn.getresponse()
                    resp.read()
                    break
                except (http.client.HTTPException, OSError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=5)
                    if attempt:
                        raise
            statuses.append(resp.status)
            if resp.status == 429 and first_429 is None:
                first_429 = n + 1
    finally:
        conn.close()
    took = time.perf_counter() - t0
    status, body, secs = ctx.server.request("GET", "/_pushbench/stats")
    stats = json.loads(body)
    after = stats.get("refusals", {}).get("topic_limit", 0)
    return (
        f"{counts(statuses)} in {took:.1f} s (first 429 at request {first_429}; "
        f"{existing} topics existed, cap {MAX_TOPICS}); topic_limit +{after - before}; "
        f"stats then {len(body) / 1024:.0f} KiB ({len(stats['heads'])} topics) in {ms(secs)}"
    )


def row_big_bodies(ctx):
    size = 1_900_000
    prefix = b'{"publish":{"topic":"BIG","intended_ns":1,"payload":"'
    body = prefix + b"a" * (size - len(prefix) - 3) + b'"}}'
    data = head_bytes(ctx.port, "POST", "/send", ["Content-Type: application/json", f"Content-Length: {len(body)}"]) + body
    before = ctx.server.refusals().get("body_size", 0)
    results = [raw_exchange(ctx.port, data, timeout=10) for _ in range(200)]
    after = ctx.server.refusals().get("body_size", 0)
    firsts = [r["first"] for r in results if r["first"] is not None]
    sent = sum(r["sent"] for r in results)
    return (
        f"{counts(r['status'] or r['error'] for r in results)}; answer in ≤{ms(max(firsts) if firsts else 0)}; "
        f"{sent / 1e6:.1f} MB of {len(data) * 200 / 1e6:.0f} MB written before the answers; body_size +{after - before}"
    )


def held_check(ctx):
    """While an attack holds sockets: RSS and how fast GET / is answered."""
    rss = ctx.server.rss_mib()
    try:
        status, _, secs = ctx.server.request("GET", "/", token=False, timeout=5)
        probe = f"GET / {status} in {ms(secs)}"
    except OSError as e:
        probe = f"GET / failed ({e.__class__.__name__})"
    return rss, probe


def row_unfinished_bodies(ctx):
    before = ctx.server.refusals().get("body_timeout", 0)
    head = head_bytes(ctx.port, "POST", "/send", ["Content-Type: application/json", "Content-Length: 60000"])
    part = b'{"publish":{"topic":"X","intended_ns":1,"payload":"' + b"a" * 30000
    sel = selectors.DefaultSelector()
    started = {}
    for _ in range(200):
        s = ctx.track(socket.create_connection(("127.0.0.1", ctx.port), timeout=5))
        s.sendall(head + part)
        s.setblocking(False)
        started[s] = time.monotonic()
        sel.register(s, selectors.EVENT_READ)
    t0 = time.monotonic()
    answered, statuses, held = {}, [], None
    while len(answered) < len(started) and time.monotonic() - t0 < 16:
        if held is None and time.monotonic() - t0 >= 5:
            held = held_check(ctx)
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            statuses.append(int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else "closed")
            answered[s] = time.monotonic() - started[s]
            sel.unregister(s)
    sel.close()
    after = ctx.server.refusals().get("body_timeout", 0)
    ctx.close_all()
    unanswered = len(started) - len(answered)
    rss, probe = held or (None, "n/a")
    return (
        f"{counts(statuses) or 'nothing'} after {spread(list(answered.values()))}"
        + (f"; {unanswered} unanswered after 16 s" if unanswered else "")
        + f"; body_timeout +{after - before}; while held (5 s): RSS {rss:.1f} MiB, {probe}"
    )


def row_slowloris(ctx, n=1000):
    partial = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slowloris: a"
    sel = selectors.DefaultSelector()
    started, failed = {}, 0
    for _ in range(n):
        try:
            s = ctx.track(socket.create_connection(("127.0.0.1", ctx.port), timeout=5))
            s.sendall(partial)
        except OSError:
            failed += 1
            continue
        s.setblocking(False)
        started[s] = time.monotonic()
        sel.register(s, selectors.EVENT_READ)
    t0 = time.monotonic()
    closed, answers, held = {}, [], None
    next_trickle = t0 + 1
    while len(closed) < len(started) and time.monotonic() - t0 < 20:
        now = time.monotonic()
        if held is None and now - t0 >= 5:
            held = held_check(ctx)
        if now >= next_trickle:  # one more header byte a second, as slowloris does
            next_trickle = now + 1
            for s in started:
                if s not in closed:
                    try:
                        s.send(b"a")
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        closed[s] = time.monotonic() - started[s]
                        sel.unregister(s)
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                answers.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                continue  # wait for the close itself
            if s not in closed:
                closed[s] = time.monotonic() - started[s]
                sel.unregister(s)
    sel.close()
    ctx.close_all()
    rss, probe = held or (None, "n/a")
    still = len(started) - len(closed)
    text = f"{len(closed)}/{n} closed by the server after {spread(list(closed.values()))}"
    text += f", answers seen: {counts(answers)}" if answers else ", no answer sent"
    if still:
        text += f"; {still} still open after 20 s"
    if failed:
        text += f"; {failed} could not connect"
    return text + f"; while held (5 s): RSS {rss:.1f} MiB, {probe}"


def row_slow_consumer(ctx):
    before = ctx.server.refusals().get("slow_consumer", 0)
    s, rest = ws_connect(ctx.port, "/ws", rcvbuf=4096)
    ctx.track(s)
    s.sendall(ws_frame(0x1, b'{"subscribe":{"BIG":null}}'))
    reader = FrameReader(rest)
    subscribed = False
    while not subscribed:
        for _fin, _rsv, opcode, payload in reader.frames():
            if opcode == 0x1 and b"subscribed" in payload:
                subscribed = True
        if not subscribed:
            data = s.recv(4096)
            if not data:
                raise ConnectionError("slow client closed before subscribing")
            reader.feed(data)
    # From here on the client never reads.
    payload = b"x" * 60_000
    conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=10)
    published, statuses, counted_at = 0, [], None
    t0 = time.monotonic()
    try:
        for i in range(1700):  # ~102 MB
            body = b'{"publish":{"topic":"BIG","intended_ns":%d,"payload":"' % now_ns() + payload + b'"}}'
            conn.request("POST", "/send", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
            published += len(payload)
            if i % 100 == 99 and counted_at is None:
                if ctx.server.refusals().get("slow_consumer", 0) > before:
                    counted_at = time.monotonic() - t0
    finally:
        conn.close()
    publish_took = time.monotonic() - t0
    while counted_at is None and time.monotonic() - t0 < publish_took + 10:
        if ctx.server.refusals().get("slow_consumer", 0) > before:
            counted_at = time.monotonic() - t0
            break
        time.sleep(0.1)
    after = ctx.server.refusals().get("slow_consumer", 0)
    # Now read what the kernel held for the client: the stream should end.
    s.settimeout(3)
    drained, ending = 0, "still open after draining 3 s"
    try:
        while drained < 64 << 20:
            data = s.recv(1 << 16)
            if not data:
                ending = "EOF"
                break
            drained += len(data)
    except socket.timeout:
        pass
    except OSError as e:
        ending = e.__class__.__name__
    ctx.close_all()
    when = f"counted {counted_at:.1f} s after the first publish" if counted_at is not None else "never counted"
    return (
        f"closed: slow_consumer +{after - before} ({when}); client stream: {ending} after "
        f"{drained / 1024:.0f} KiB buffered; published {published / 1e6:.0f} MB as {counts(statuses)} "
        f"in {publish_took:.1f} s"
    )


def row_connection_cap(ctx, n=1300):
    before = ctx.server.refusals().get("connection_limit", 0)
    sel = selectors.DefaultSelector()
    started, failed = {}, 0
    for _ in range(n):
        try:
            s = ctx.track(socket.create_connection(("127.0.0.1", ctx.port), timeout=2))
        except OSError:
            failed += 1
            continue
        s.setblocking(False)
        started[s] = time.monotonic()
        sel.register(s, selectors.EVENT_READ)
    last = time.monotonic()
    refused, other, closed_silent = [], [], 0
    while time.monotonic() - last < 2:
        for key, _ in sel.select(0.1):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            sel.unregister(s)
            if data.startswith(b"HTTP/1.1 503"):
                refused.append(time.monotonic() - started[s])
            elif data:
                other.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
            else:
                closed_silent += 1
    sel.close()
    silent = len(started) - len(refused) - len(other) - closed_silent
    ctx.close_all()
    time.sleep(0.5)
    after = ctx.server.refusals().get("connection_limit", 0)
    text = (
        f"{len(refused)}/{n} got HTTP/1.1 503 at once (≤{ms(max(refused)) if refused else 'n/a'} after connect); "
        f"{silent} accepted and idle (cap {MAX_CONNECTIONS}, good subscriber included)"
    )
    if other:
        text += f"; other answers: {counts(other)}"
    if closed_silent:
        text += f"; {closed_silent} closed without an answer"
    if failed:
        text += f"; {failed} could not connect"
    return text + f"; connection_limit +{after - before}"


class ChunkedReader:
    """Decodes an HTTP/1.1 chunked body as it arrives."""

    def __init__(self, raw=b""):
        self.raw = bytearray(raw)
        self.body = bytearray()

    def feed(self, data):
        self.raw += data
        while True:
            end = self.raw.find(b"\r\n")
            if end < 0:
                return
            size = int(bytes(self.raw[:end]).split(b";")[0], 16)
            if len(self.raw) < end + 2 + size + 2:
                return
            self.body += self.raw[end + 2:end + 2 + size]
            del self.raw[:end + 2 + size + 2]


def row_sse_ids(ctx):
    s = ctx.track(socket.create_connection(("127.0.0.1", ctx.port), timeout=5))
    s.sendall(head_bytes(ctx.port, "GET", "/sse?subs=" + ",".join(SSE_TOPICS), ["Accept: text/event-stream"]))
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            raise ConnectionError("SSE stream closed before its headers")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 200 " not in status + " ":
        return f"SSE refused: {status}"
    chunked = b"chunked" in head.lower()
    dec = ChunkedReader()
    body = bytearray()

    def feed(data):
        if chunked:
            dec.feed(data)
            body.extend(dec.body)
            dec.body.clear()
        else:
            body.extend(data)

    feed(rest)

    def next_block(deadline):
        while b"\n\n" not in body:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            data = s.recv(65536)
            if not data:
                raise ConnectionError("SSE stream ended")
            feed(data)
        i = body.index(b"\n\n") + 2
        block = bytes(body[:i])
        del body[:i]
        return block

    deadline = time.monotonic() + 10
    first = next_block(deadline)
    topic = "S17"
    status_send, _, _ = ctx.server.request(
        "POST", "/send", token=False,
        body=json.dumps({"publish": {"topic": topic, "intended_ns": now_ns(), "payload": "hello"}}),
        headers={"Content-Type": "application/json"},
    )
    while True:
        block = next_block(deadline)
        if b"data:" in block and f'"t":"{topic}"'.encode() in block:
            break
    ctx.close_all()
    id_line = next((l for l in block.decode().split("\n") if l.startswith("id:")), "(no id)")
    return (
        f"event block {len(block)} B, `{id_line}` (POST /send {status_send}); "
        f"the subscribed block (whole cursor) {len(first) / 1024:.1f} KiB"
    )


def echo_row(kind):
    def run(ctx):
        s, rest = ws_connect(ctx.port, "/echo")
        ctx.track(s)
        reader = FrameReader(rest)
        try:
            if kind == "normal":
                s.sendall(ws_frame(0x8, struct.pack("!H", 1000) + b"bye"))
            elif kind == "utf8":
                s.sendall(ws_frame(0x1, b"ok \xff\xfe\xfd"))
            elif kind == "rsv1":
                s.sendall(ws_frame(0x1, b"hello", rsv=0x40))
            elif kind == "big":
                s.sendall(ws_frame(0x2, os.urandom(70_000)))
        except OSError as e:
            pass  # the server may close before taking it all; its close frame tells why
        code, reason = read_close(s, reader, timeout=5)
        ctx.close_all()
        return f"close {code} ({reason})" if code is not None else reason
    return run


def row_content_type(ctx):
    body = json.dumps({"publish": {"topic": "X", "intended_ns": 1, "payload": "p"}})
    status, resp, secs = ctx.server.request("POST", "/send", body=body, token=False, headers={"Content-Type": "text/plain"})
    return f"{status} in {ms(secs)}: {short(resp, 70)}"


def row_evil_host(ctx):
    before = ctx.server.refusals().get("host", 0)
    data = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    r = raw_exchange(ctx.port, data, timeout=5)
    after = ctx.server.refusals().get("host", 0)
    return f"{describe(r)}: {short(r['body'], 60)}; host +{after - before}"


def row_no_token(ctx):
    before = ctx.server.refusals().get("token", 0)
    status, resp, secs = ctx.server.request("GET", "/_pushbench/stats", token=False)
    after = ctx.server.refusals().get("token", 0)
    return f"{status} in {ms(secs)}: {short(resp, 50)}; token +{after - before}"


def cli_row(binary, flags):
    def run(ctx):
        env = dict(os.environ, PUSHBENCH_TOKEN=ctx.server.token)
        try:
            p = subprocess.run(
                [binary, "serve", "--listen", "127.0.0.1:0", *flags],
                capture_output=True, timeout=5, env=env,
            )
        except subprocess.TimeoutExpired as e:
            return f"still running after 5 s (killed); stdout: {short(e.stdout or b'', 60)}"
        err = next((l for l in p.stderr.decode("utf-8", "replace").splitlines() if l.strip()), "")
        return f"exit {p.returncode}: {short(err, 100)}"
    return run


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/pushbench", help="the pushbench executable (default: %(default)s)")
    ap.add_argument("--only", default="", help="comma-separated row numbers to run (e.g. 4,8); default all")
    args = ap.parse_args()
    binary = args.binary
    if not os.path.isfile(binary) and not os.path.isabs(binary):
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", binary)
        if os.path.isfile(here):
            binary = os.path.normpath(here)
    if not os.access(binary, os.X_OK):
        sys.exit(f"attack-replay: no executable at {binary} (build it, or give --binary)")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1500:
        log(f"open-file limit {soft}: the 1,000- and 1,300-connection rows will fall short")

    rows = [
        ("0", "baseline (no attack)", row_baseline, 10),
        ("1", "publish plan `payload_bytes: 1000000000000`", plan_row(1_000_000_000_000), 10),
        ("1", "publish plan `payload_bytes: 2**63`", plan_row(2 ** 63), 10),
        ("2", "SSE `Last-Event-ID` of 100,000 topics (~1.2 MB header)", row_last_event_id, 20),
        ("3", "`/lp?subs=` of 16,000 topics", row_lp_16k, 20),
        ("4", f"3,000 new topics via `/lp?subs=Tn&hold_ms=1` (cap {MAX_TOPICS})", row_topic_cap, 40),
        ("5", "200 × `POST /send` of 1.9 MB", row_big_bodies, 40),
        ("6", "200 unfinished bodies (Content-Length 60000, 30 KB sent)", row_unfinished_bodies, 30),
        ("7", "1,000 slowloris connections (partial headers, 1 B/s)", row_slowloris, 30),
        ("8", f"WebSocket on BIG that never reads, ~100 MB published (write timeout {WRITE_TIMEOUT})", row_slow_consumer, 45),
        ("9", f"1,300 idle connections (cap {MAX_CONNECTIONS})", row_connection_cap, 20),
        ("10", "SSE on 256 topics, one event published", row_sse_ids, 15),
        ("11", "`/echo`: client close 1000", echo_row("normal"), 10),
        ("11", "`/echo`: text frame of invalid UTF-8", echo_row("utf8"), 10),
        ("11", "`/echo`: frame with RSV1 set", echo_row("rsv1"), 10),
        ("11", "`/echo`: 70,000-byte binary message", echo_row("big"), 10),
        ("12", "`POST /send` with `Content-Type: text/plain`", row_content_type, 10),
        ("12", "`Host: evil.example`", row_evil_host, 10),
        ("12", "`/_pushbench/stats` without token", row_no_token, 10),
        ("13", "`serve --heartbeat 0s`", cli_row(binary, ["--heartbeat", "0s"]), 10),
        ("13", "`serve --buffer-per-topic 0`", cli_row(binary, ["--buffer-per-topic", "0"]), 10),
    ]
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if only:
        rows = [r for r in rows if r[0] in only or r[0] == "0"]

    def on_alarm(_sig, _frame):
        raise RowTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    token = secrets.token_hex(16)
    server = subscriber = None
    table = []
    totals = None
    began = time.monotonic()
    try:
        server = Server(binary, token)
        log(f"server pid {server.proc.pid} on port {server.port}, flags {' '.join(SERVE_FLAGS)}")
        # Topics later rows need, made before the topic-cap row fills the hub.
        for subs in (",".join(SSE_TOPICS), "BIG"):
            status, body, _ = server.request("GET", f"/lp?subs={subs}&hold_ms=0", token=False)
            if status != 200:
                raise RuntimeError(f"could not create topics: {status} {short(body)}")
        subscriber = Subscriber(server.port)
        good_plan = {
            "topics": ["GOOD"], "rate": GOOD_RATE, "arrival": "constant", "payload_bytes": 32,
            "seed": 1, "start_ns": now_ns() + 100_000_000, "duration_ns": 900 * 1_000_000_000,
        }
        status, body, _ = server.request(
            "POST", "/_pushbench/publish", body=json.dumps(good_plan), headers={"Content-Type": "application/json"},
        )
        if status != 202:
            raise RuntimeError(f"publish plan for GOOD answered {status}: {short(body)}")
        time.sleep(0.5)
        ctx = Ctx(server, subscriber)

        for number, label, run, budget in rows:
            left = TOTAL_BUDGET_S - (time.monotonic() - began)
            if left < 5:
                table.append((number, label, "skipped: the run's time budget is spent", "", "", ""))
                continue
            budget = min(budget, left)
            log(f"row {number}: {label}")
            subscriber.start()
            signal.setitimer(signal.ITIMER_REAL, budget)
            try:
                answer = run(ctx)
            except RowTimeout:
                answer = f"row timed out after {budget:.0f} s"
            except Exception as e:  # noqa: BLE001 - a row's failure is a finding, not the end
                answer = f"error: {e.__class__.__name__}: {short(e, 100)}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                ctx.close_all()
            time.sleep(0.3)  # let the subscriber see the attack's tail
            window = subscriber.end()
            rss = server.rss_mib()
            alive = server.alive()
            if window is None:
                delay = "subscriber silent"
            elif window["events"] == 0:
                delay = "no events"
            else:
                delay = f"{window['worst_ns'] / 1e6:.1f} ({window['events']} events, {window['lost']} lost"
                delay += f", {window['reconnects']} reconnects)" if window["reconnects"] else ")"
            table.append((number, label, answer, f"{rss:.1f}" if rss is not None else "n/a", delay, alive))
            log(f"  -> {answer} | RSS {rss} | {delay} | {alive}")
            if server.proc.poll() is not None:
                log("the server died; stopping")
                break
        totals = subscriber.stop()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if subscriber is not None:
            subscriber.kill()
        if server is not None:
            server.stop()

    print("| # | attack | answer | server RSS after (MiB) | worst delay seen by the good subscriber (ms) | server alive |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(cell(c) for c in row) + " |")
    print()
    if totals:
        line = (
            f"Good subscriber (WebSocket on GOOD, {GOOD_RATE:.0f} events/s): {totals['events']} events, "
            f"{totals['lost']} lost, {totals['duplicates']} duplicates, worst delay {totals['worst_ns'] / 1e6:.1f} ms, "
            f"{totals['reconnects']} reconnects"
        )
        if totals["errors"]:
            line += f" ({'; '.join(totals['errors'][:3])})"
        print(line + f"; run took {time.monotonic() - began:.0f} s.")
    else:
        print("Good subscriber: no totals (it did not answer).")


if __name__ == "__main__":
    main()
