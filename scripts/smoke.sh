#!/usr/bin/env bash
# Release smoke run: the tiny scenario end to end through real server
# processes; fails unless every transport completed with nothing lost.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/smoke-results
rm -rf "$out"
cargo build --release --quiet
./target/release/pushbench run scenarios/smoke.toml --quiet --results-dir "$out"

summary=$(ls "$out"/*/summary.json)
python3 - "$summary" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
names = [t["transport"] for t in s["transports"]]
problems = []
if not s["complete"]:
    problems.append(f"run incomplete: {s['incomplete_reason']}")
every = {"websocket", "websocket_h2", "sse", "long_polling", "long_polling_close",
         "long_polling_h2", "short_polling"}
if set(names) != every:
    problems.append(f"expected every transport, got {names}")
for t in s["transports"]:
    d = t["delivery"]
    if d["expected"] == 0 or d["delivered"] != d["expected"]:
        problems.append(f"{t['transport']}: delivered {d['delivered']} of {d['expected']}")
    for k in ("lost", "duplicated", "out_of_order", "unexpected"):
        if d[k]:
            problems.append(f"{t['transport']}: {k} = {d[k]}")
    if not t["latency_us"]["count"]:
        problems.append(f"{t['transport']}: no latency samples")
    if not t["cost"]["bytes_down"]:
        problems.append(f"{t['transport']}: no bytes counted")
    m = t.get("client_messages") or {}
    if not m.get("sent") or m.get("failed") or m.get("received_by_server") != m.get("sent"):
        problems.append(f"{t['transport']}: client messages {m}")
    if not (t.get("echo_us") or {}).get("count"):
        problems.append(f"{t['transport']}: no echo answers")
if problems:
    print("smoke run FAILED:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"smoke run ok: {', '.join(names)} delivered every event ({sys.argv[1]})")
PY
