#!/usr/bin/env bash
# pushbench's long-poll costs next to established peers, on matched
# shapes, on this machine, in one go:
#
#   server:    pushbench serve answering GET /lp with a batch of events,
#              against nginx serving the same bytes as a static file, both
#              driven by wrk (same connections, threads and duration):
#              server CPU per request, and the ratio.
#   generator: pushbench's long-poll generator (a heavily loaded run of
#              scenarios/ci_saturation.toml), against wrk fetching answers
#              of the same size from the same server: generator CPU per
#              request, and the ratio.
#
# CPU is read from the kernel's accounting of each process (all its
# threads), over the measured span only. Figures are this machine's: a
# ratio is meaningful, an absolute figure only next to others from the
# same run. No WebSocket peer is run: none of the registries this project
# installs from carries a WebSocket load tool that reads messages without
# a scripting runtime of its own (tcpkali is not in Debian 12).
#
# Usage: scripts/peers.sh [--no-build]
#   PEERS_DURATION=10 (s per measurement), PEERS_CONNECTIONS=100 (server shape)
# Needs wrk, nginx, curl and pgrep (Debian packages wrk, nginx, curl,
# procps); installs them when run as root with apt-get, otherwise exits 2
# naming the package.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${PEERS_DURATION:-10}
connections=${PEERS_CONNECTIONS:-100}
build=true
[ "${1:-}" = "--no-build" ] && build=false

need() { # command, Debian package
    command -v "$1" > /dev/null && return
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        apt-get install -y -q "$2" > /dev/null 2>&1 ||
            { apt-get update -q > /dev/null && apt-get install -y -q "$2" > /dev/null; }
    fi
    command -v "$1" > /dev/null || { echo "peers: $1 not found: install Debian's $2 package" >&2; exit 2; }
}
need wrk wrk
need nginx nginx
need curl curl
need pgrep procps
# nginx may live in sbin, off a plain user's PATH.
nginx_bin=$(command -v nginx)

$build && cargo build --release --quiet
pb=target/release/pushbench
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2> /dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Seconds of CPU (user + system, every thread) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
# Runs wrk and prints "requests cpu_seconds" (wrk's own CPU, from rusage).
run_wrk() { # url, connections, threads
    python3 - "$@" "$duration" << 'PY'
import re, resource, subprocess, sys
url, conns, threads, duration = sys.argv[1:5]
out = subprocess.run(["wrk", "-t", threads, "-c", conns, "-d", duration + "s", url],
                     capture_output=True, text=True, check=True).stdout
r = resource.getrusage(resource.RUSAGE_CHILDREN)
requests = int(re.search(r"(\d+) requests in", out).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
if errors:
    sys.exit(f"peers: wrk got {errors.group(1)} error answers from {url}")
print(requests, r.ru_utime + r.ru_stime)
PY
}
per_req_us() { python3 -c "print(f'{$1 / $2 * 1e6:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
wait_port() {
    for _ in $(seq 100); do
        (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return
        sleep 0.1
    done
    echo "peers: nothing listens on port $1" >&2
    exit 1
}

# Publishes N 64-byte events to TOPIC on the server at $port (POST /send).
publish() { # topic, count
    python3 - "$port" "$1" "$2" << 'PY'
import json, sys, urllib.request
port, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
events = [{"publish": {"topic": topic, "intended_ns": i + 1, "payload": "x" * 64}} for i in range(n)]
# In batches of 256 (about 28 KB), under the server's 64 KiB body limit:
# a slower machine answers each poll with more events, so n varies.
for start in range(0, n, 256):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/send",
                                 json.dumps(events[start:start + 256]).encode(),
                                 {"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
PY
}

# --- server shape --------------------------------------------------------
port=$(free_port)
token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
# Room on a topic for every event of the generator shape's answers below,
# however many a slower machine's polls carry.
"$pb" serve --listen "127.0.0.1:$port" --threads 1 --token "$token" \
    --buffer-per-topic 100000 > "$work/serve.log" 2>&1 &
server=$!
pids+=("$server")
wait_port "$port"
# Ten 64-byte events on one topic: every poll from cursor 0 is answered at
# once with the same batch, so each request costs the server the same.
events=10
publish PEERS "$events"
poll="http://127.0.0.1:$port/lp?subs=PEERS:0&hold_ms=0"
mkdir -p "$work/www"
curl -sf "$poll" -o "$work/www/batch"
# nginx's workers run as an unprivileged user: let them read the answer.
chmod -R a+rX "$work"
batch_bytes=$(stat -c %s "$work/www/batch")

nport=$(free_port)
cat > "$work/nginx.conf" << NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000000;
    server {
        listen 127.0.0.1:$nport;
        root $work/www;
        location / { default_type application/json; add_header Cache-Control no-store; }
    }
}
NGINX
"$nginx_bin" -c "$work/nginx.conf"
wait_port "$nport"
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)

echo "== server shape: GET of a ${batch_bytes}-byte answer ($events events), wrk -t1 -c $connections -d ${duration}s"
before=$(cpu_s "$server")
read -r pb_requests pb_wrk_cpu < <(run_wrk "$poll" "$connections" 1)
pb_cpu=$(python3 -c "print($(cpu_s "$server") - $before)")
before=$(cpu_s "$nginx_worker")
read -r ng_requests ng_wrk_cpu < <(run_wrk "http://127.0.0.1:$nport/batch" "$connections" 1)
ng_cpu=$(python3 -c "print($(cpu_s "$nginx_worker") - $before)")
pb_us=$(per_req_us "$pb_cpu" "$pb_requests")
ng_us=$(per_req_us "$ng_cpu" "$ng_requests")
printf '%-34s %10s requests, server %6.2f s CPU: %s us per request\n' \
    "pushbench serve (1 thread) /lp" "$pb_requests" "$pb_cpu" "$pb_us"
printf '%-34s %10s requests, server %6.2f s CPU: %s us per request\n' \
    "nginx (1 worker), same bytes" "$ng_requests" "$ng_cpu" "$ng_us"
echo "ratio: pushbench long-poll server CPU per request = $(ratio "$pb_us" "$ng_us") x nginx's"

# --- generator shape -----------------------------------------------------
echo "== generator shape: scenarios/ci_saturation.toml, long polling (heavily loaded)"
"$pb" run scenarios/ci_saturation.toml --transport long_polling --quiet \
    --results-dir "$work/run" > "$work/run.log" 2>&1 || { cat "$work/run.log" >&2; exit 1; }
read -r gen_requests gen_cpu per_poll clients < <(python3 - "$work/run" << 'PY'
import glob, json, sys
s = json.load(open(glob.glob(sys.argv[1] + "/*/summary.json")[0]))
t = s["transports"][0]
c, p = t["cost"], t["processes"]
# All over the measured window.
print(c["requests"], p["generator_cpu_s"], round(1 / c["requests_per_event"]),
      s["scenario"]["clients"]["count"])
PY
)
gen_us=$(per_req_us "$gen_cpu" "$gen_requests")
# wrk fetches answers of the same number of events from a fresh topic.
publish GEN "$per_poll"
read -r wrk_requests wrk_cpu < <(run_wrk "http://127.0.0.1:$port/lp?subs=GEN:0&hold_ms=0" "$clients" 2)
wrk_us=$(per_req_us "$wrk_cpu" "$wrk_requests")
printf '%-34s %10s requests, generator %6.2f s CPU: %s us per request (%s events each)\n' \
    "pushbench long-poll generator" "$gen_requests" "$gen_cpu" "$gen_us" "$per_poll"
printf '%-34s %10s requests, wrk %6.2f s CPU: %s us per request (%s events each)\n' \
    "wrk -t2 -c $clients, same answers" "$wrk_requests" "$wrk_cpu" "$wrk_us" "$per_poll"
echo "ratio: pushbench long-poll generator CPU per request = $(ratio "$gen_us" "$wrk_us") x wrk's"
