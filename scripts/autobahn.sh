#!/usr/bin/env bash
# WebSocket conformance with the Autobahn|Testsuite (autobahntestsuite
# 0.8.2, Python 2.7), both ends of pushbench:
#   server  wstest -m fuzzingclient against the bundled server's echo route
#           ws://127.0.0.1:PORT/echo, cases 1-7 and 9;
#   client  wstest -m fuzzingserver, driven by the generator's WebSocket
#           client (src/client/ws.rs, pushbench's own codec) as an echo
#           client (examples/autobahn_client.rs), cases 1-7, 9 and 10.
# 12.* and 13.* (permessage-deflate) are left out on both sides.
#
#     scripts/autobahn.sh [--side server|client|both] [--no-build]
#                         [--install-only] [--check-only] [--out DIR]
#
#   --side          which end to test (default both)
#   --no-build      use target/release/pushbench and
#                   target/release/examples/autobahn_client as they are
#                   (default: cargo build --release)
#   --install-only  only make sure the Python 2.7 virtualenv is there (target/autobahn-venv)
#   --check-only    run nothing; judge the reports already in DIR/SIDE/report/index.json
#   --out DIR       DIR/server and DIR/client get spec, logs and report (default target/autobahn)
#
# Environment: AUTOBAHN_PYTHON2 (a python2.7 to use), AUTOBAHN_TIMEOUT (bound
# of each wstest run in seconds, default 900), AUTOBAHN_INSTALL_TIMEOUT
# (bound of the virtualenv install, default 900).
#
# The accepted non-OK results of each side are in
# scripts/autobahn-expected-server.json and scripts/autobahn-expected-client.json,
# which map a case id to the result that is accepted for it, and why:
#     {"7.1.6": {"behavior": "INFORMATIONAL", "behaviorClose": "INFORMATIONAL",
#                "reason": "256K message, close, then a ping: the suite only records what happens"}}
# "behaviorClose" may be left out and then means "OK". The run fails (exit 1)
# on any FAILED (behavior or behaviorClose, listed or not), on any case that
# is not OK/OK and not listed, on a listed case whose result differs (also
# when it is now OK: drop the entry), on a listed case that was not run, and
# on any case of the selection missing from the report (peer died, run cut).
# Exit 2: something needed is missing (python2.7, a binary).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

build=1
mode=run
side=both
out=target/autobahn
while [ $# -gt 0 ]; do
  case "$1" in
    --side)
      side=${2:?--side needs server, client or both}; shift
      case "$side" in server|client|both) ;; *)
        echo "autobahn: --side $side: allowed are server, client, both" >&2; exit 2 ;;
      esac ;;
    --no-build) build=0 ;;
    --install-only) mode=install ;;
    --check-only) mode=check ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "autobahn: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

venv=target/autobahn-venv
agent=pushbench
run_timeout=${AUTOBAHN_TIMEOUT:-900}
install_timeout=${AUTOBAHN_INSTALL_TIMEOUT:-900}
# Largest message of cases 9.* (9.1.6, 9.2.6): 16 MiB.
max_message=$((16 * 1024 * 1024))
server_cases_json='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*"]'
client_cases_json='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]'
exclude_json='["12.*", "13.*"]'

# Every package of the virtualenv, pinned: installed with --no-deps, so
# nothing newer (and Python-3-only) slips in; `pip check` proves the list
# complete. Versions are the last that install and run on Python 2.7
# (Twisted 19.10.0 and incremental 16.10.1 as upstream's own requirements
# of 2025 pin them; autobahn 0.10.9 and txaio<=2.1.0 are what
# autobahntestsuite 0.8.2 itself requires).
pins='autobahntestsuite==0.8.2
autobahn==0.10.9
txaio==2.1.0
six==1.16.0
Twisted==19.10.0
zope.interface==4.6.0
constantly==15.1.0
incremental==16.10.1
Automat==20.2.0
attrs==21.4.0
hyperlink==21.0.0
idna==2.10
typing==3.10.0.0
PyHamcrest==1.10.1
pyOpenSSL==19.1.0
cryptography==3.3.2
cffi==1.15.1
pycparser==2.21
enum34==1.1.10
ipaddress==1.0.23
service-identity==18.1.0
pyasn1==0.4.8
pyasn1-modules==0.2.8
klein==17.10.0
Werkzeug==1.0.1
Jinja2==2.11.3
MarkupSafe==1.1.1
unittest2==1.1.0
argparse==1.4.0
traceback2==1.4.0
linecache2==1.0.0
wsaccel==0.6.2
ujson==1.35'
# The tools of the virtualenv itself (virtualenv 16.7.12 is the last
# single-module release; it runs on and makes Python 2.7 environments).
virtualenv_pin='virtualenv==16.7.12'
base_pins='pip==20.3.4 setuptools==44.1.1 wheel==0.37.1'

find_python2() {
  local c pyenv_root
  pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
  local candidates=("${AUTOBAHN_PYTHON2:-}" python2.7 python2)
  shopt -s nullglob
  candidates+=("$pyenv_root"/versions/2.7*/bin/python2.7 /usr/local/bin/python2.7 /usr/bin/python2.7)
  shopt -u nullglob
  for c in "${candidates[@]}"; do
    [ -n "$c" ] || continue
    # A pyenv shim exists even when no 2.7 is selected: ask it to run.
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

install_venv() {
  local want py2 start tools
  want=$(printf '%s\n%s\n%s\n' "$pins" "$virtualenv_pin" "$base_pins" | sha256sum | cut -c1-16)
  if [ -x "$venv/bin/wstest" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  if ! py2=$(find_python2); then
    cat >&2 <<'EOF'
autobahn: python2.7 is missing. Autobahn|Testsuite 0.8.2 runs on Python 2.7 only,
and Debian (12 and later) has no python2 package: install one with pyenv
(`pyenv install 2.7.18`, needs build-essential libssl-dev zlib1g-dev libbz2-dev
libreadline-dev libsqlite3-dev libffi-dev) or point AUTOBAHN_PYTHON2 at a python2.7.
EOF
    exit 2
  fi
  export PIP_NO_PYTHON_VERSION_WARNING=1
  echo "== installing Autobahn|Testsuite 0.8.2 into $venv (Python 2.7: $py2)"
  start=$SECONDS
  tools="$venv.tools"
  rm -rf "$venv" "$tools"
  # virtualenv goes into a private folder, not the interpreter's site-packages.
  timeout "$install_timeout" "$py2" -m pip install --disable-pip-version-check --no-input -q \
    --target "$tools" "$virtualenv_pin"
  PYTHONPATH="$tools" timeout "$install_timeout" "$py2" -m virtualenv -q "$venv" >/dev/null
  rm -rf "$tools"
  # shellcheck disable=SC2086
  timeout "$install_timeout" "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q $base_pins
  printf '%s\n' "$pins" >"$venv/requirements.txt"
  timeout "$install_timeout" "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
    --no-deps -r "$venv/requirements.txt"
  "$venv/bin/python" -m pip check --disable-pip-version-check
  PYTHONWARNINGS=ignore "$venv/bin/wstest" --help >/dev/null
  echo "$want" >"$venv/.pins"
  echo "== Autobahn|Testsuite installed in $((SECONDS - start)) s"
}

# Judge one side's report: print the counts and the non-OK cases, exit 1 on
# what the header above names.  check_report SIDE
check_report() {
  local dir="$out/$1"
  python3 - "$dir/report/index.json" "scripts/autobahn-expected-$1.json" "$dir/cases.json" "$agent" "$1" <<'PY'
import json, os, re, sys

index_path, expected_path, cases_path, agent, side = sys.argv[1:6]
mode = {"server": "fuzzingclient", "client": "fuzzingserver"}[side]
KNOWN = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED",
         "WRONG CODE", "UNCLEAN", "FAILED BY CLIENT", "NO_CLOSE"]
SHOWN = KNOWN[:5]


def key(case_id):
    return tuple(int(p) for p in case_id.split("."))


def fail(msg):
    print(f"autobahn ({side}): " + msg)
    sys.exit(1)


try:
    with open(expected_path) as f:
        expected = json.load(f)
except (OSError, ValueError) as e:
    fail(f"cannot read the expected results {expected_path}: {e}")
bad = []
if not isinstance(expected, dict):
    bad.append("the top level must be an object (case id -> expected result)")
    expected = {}
for cid, e in expected.items():
    if not re.fullmatch(r"\d+(\.\d+)+", cid):
        bad.append(f"{cid!r}: not a case id like \"6.4.1\"")
    if not isinstance(e, dict):
        bad.append(f"{cid}: must be an object with behavior, behaviorClose (optional), reason")
        continue
    extra = set(e) - {"behavior", "behaviorClose", "reason"}
    if extra:
        bad.append(f"{cid}: unknown keys {sorted(extra)}")
    if e.get("behavior") not in KNOWN:
        bad.append(f"{cid}: behavior {e.get('behavior')!r} is not one of {KNOWN}")
    if e.get("behaviorClose", "OK") not in KNOWN:
        bad.append(f"{cid}: behaviorClose {e.get('behaviorClose')!r} is not one of {KNOWN}")
    if not isinstance(e.get("reason"), str) or not e["reason"].strip():
        bad.append(f"{cid}: a reason (non-empty string) is required")
if bad:
    fail(f"{expected_path} is not valid:\n  " + "\n  ".join(bad))

try:
    with open(index_path) as f:
        index = json.load(f)
except (OSError, ValueError) as e:
    fail(f"no report to judge ({index_path}: {e})")
if agent not in index:
    fail(f"{index_path} has no results for agent {agent!r} (has {sorted(index)}); "
         "the peer was probably not reachable")
results = index[agent]
others = sorted(set(index) - {agent})

problems = []
if others:
    problems.append(f"the report also holds agents {others}")
selection = None
if os.path.exists(cases_path):
    with open(cases_path) as f:
        selection = json.load(f)
    missing = sorted(set(selection) - set(results), key=key)
    if missing:
        problems.append(f"{len(missing)} of {len(selection)} selected cases have no result "
                        f"(peer died or the run was cut?): {', '.join(missing[:20])}"
                        + (" ..." if len(missing) > 20 else ""))
else:
    print(f"autobahn ({side}): note: {cases_path} is missing; not checking that every selected case ran")

counts = {"behavior": {}, "behaviorClose": {}}
for r in results.values():
    for field in counts:
        v = r.get(field, "?")
        counts[field][v] = counts[field].get(v, 0) + 1

print(f"Autobahn|Testsuite {mode}: {len(results)} cases for agent {agent}")
for field in ("behavior", "behaviorClose"):
    c = counts[field]
    shown = [f"{v} {c.get(v, 0)}" for v in SHOWN]
    shown += [f"{v} {n}" for v, n in sorted(c.items()) if v not in SHOWN]
    print(f"  {field + ':':15s}" + ", ".join(shown))

non_ok = []
unlisted = {}
passed = 0
for cid in sorted(results, key=key):
    r = results[cid]
    b, bc = r.get("behavior"), r.get("behaviorClose")
    e = expected.get(cid)
    ok = b == "OK" and bc == "OK"
    if not ok:
        note = f"expected: {e['reason']}" if e else "NOT LISTED"
        non_ok.append(f"  {cid:8s} {b} / {bc} (close code {r.get('remoteCloseCode')}, "
                      f"{r.get('duration')} ms) {note}")
    good = True
    if b == "FAILED" or bc == "FAILED":
        problems.append(f"{cid}: {b} / {bc} (details: {os.path.join(os.path.dirname(index_path), r.get('reportfile', '?'))})")
        good = False
    elif e is not None:
        want = (e["behavior"], e.get("behaviorClose", "OK"))
        if (b, bc) != want:
            problems.append(f"{cid}: {b} / {bc}, but {expected_path} expects {want[0]} / {want[1]}"
                            + (" (now OK: drop the entry)" if ok else ""))
            good = False
    elif not ok:
        problems.append(f"{cid}: {b} / {bc} is not listed in {expected_path}")
        unlisted[cid] = {"behavior": b, "behaviorClose": bc, "reason": "TODO: why this is accepted"}
        good = False
    passed += good

not_run = sorted(set(expected) - set(results), key=key)
if not_run:
    problems.append(f"listed in {expected_path} but not in the report: {', '.join(not_run)}")

if non_ok:
    print("non-OK cases (behavior / behaviorClose):")
    print("\n".join(non_ok))
if problems:
    print("problems:")
    print("\n".join("  " + p for p in problems))
    if unlisted:
        print(f"entries for {expected_path}, if these results are accepted (write the reasons):")
        print(json.dumps(unlisted, indent=2))
failed = len(results) - passed
if selection is not None:
    failed += len(set(selection) - set(results))
print(f"autobahn ({side}): {passed} passed, {failed} failed")
sys.exit(1 if problems else 0)
PY
}

sides=(server client)
case "$side" in server|client) sides=("$side") ;; esac

if [ "$mode" = check ]; then
  rc=0
  for sd in "${sides[@]}"; do check_report "$sd" || rc=1; done
  exit "$rc"
fi

install_venv
if [ "$mode" = install ]; then
  "$venv/bin/wstest" --autobahnversion 2>/dev/null || true
  exit 0
fi

if [ "$build" = 1 ]; then
  cargo build --release --quiet --bin pushbench --example autobahn_client
fi
bin=target/release/pushbench
client_bin=target/release/examples/autobahn_client
for b in "$bin" "$client_bin"; do
  if [ ! -x "$b" ]; then
    echo "autobahn: $b is missing (build it, or leave out --no-build)" >&2
    exit 2
  fi
done
wstest_bin="$PWD/$venv/bin/wstest"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The case ids a spec selects, to notice any that are missing from the report.
selected_cases() {
  PYTHONWARNINGS=ignore "$venv/bin/python" - "$1" <<'PY'
import json, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet
spec = json.load(open(sys.argv[1]))
print(json.dumps(CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories).parseSpecCases(spec)))
PY
}

peer_pid=
stop_peer() {
  [ -n "$peer_pid" ] || return 0
  if kill -0 "$peer_pid" 2>/dev/null; then
    kill "$peer_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$peer_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$peer_pid" 2>/dev/null || true
  fi
  wait "$peer_pid" 2>/dev/null || true
  peer_pid=
}
trap stop_peer EXIT
trap 'exit 130' INT TERM

# Ready when /echo answers a WebSocket handshake with 101.
probe() {
  python3 - "$1" <<'PY'
import base64, os, socket, sys
port = int(sys.argv[1])
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
except OSError:
    sys.exit(3)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
data = b""
try:
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
status = data.split(b"\r\n", 1)[0].decode("latin-1")
print(status or "no answer")
sys.exit(0 if status.split(" ")[1:2] == ["101"] else 4)
PY
}

# The bundled server, judged by wstest's fuzzing client.
run_server_side() {
  local dir="$out/server" dir_abs port serve_help status rc ready server_died start
  mkdir -p "$dir"
  rm -rf "$dir/report" "$dir/cases.json"
  dir_abs=$(cd "$dir" && pwd)
  port=$(free_port)
  serve_help=$("$bin" serve --help 2>&1)
  local server_args=(serve --listen "127.0.0.1:$port")
  if grep -q -- '--max-message' <<<"$serve_help"; then
    server_args+=(--max-message "$max_message")
  else
    echo "autobahn (server): note: 'pushbench serve' has no --max-message; cases 9.* need messages of up to 16 MiB"
  fi
  # A server ping inside a case is an event the case did not expect (FAILED):
  # no pings during the run.
  if grep -q -- '--heartbeat' <<<"$serve_help"; then
    server_args+=(--heartbeat 1h)
  fi

  cat >"$dir/fuzzingclient.json" <<SPEC
{
  "options": {"failByDrop": false},
  "outdir": "$dir_abs/report",
  "servers": [{"agent": "$agent", "url": "ws://127.0.0.1:$port/echo"}],
  "cases": $server_cases_json,
  "exclude-cases": $exclude_json,
  "exclude-agent-cases": {}
}
SPEC
  selected_cases "$dir/fuzzingclient.json" >"$dir/cases.json"

  echo "== pushbench ${server_args[*]}"
  "$bin" "${server_args[@]}" >"$dir/server.log" 2>&1 &
  peer_pid=$!
  ready=0
  for _ in $(seq 1 150); do
    if ! kill -0 "$peer_pid" 2>/dev/null; then
      echo "autobahn (server): the server exited at start:" >&2
      tail -n 20 "$dir/server.log" >&2
      return 1
    fi
    set +e
    status=$(probe "$port")
    rc=$?
    set -e
    if [ "$rc" = 0 ]; then ready=1; break; fi
    if [ "$rc" = 4 ]; then
      echo "autobahn (server): ws://127.0.0.1:$port/echo refused the WebSocket handshake ($status): no echo route?" >&2
      return 1
    fi
    sleep 0.2
  done
  if [ "$ready" != 1 ]; then
    echo "autobahn (server): the server did not listen on 127.0.0.1:$port within 30 s" >&2
    return 1
  fi

  echo "== wstest -m fuzzingclient: cases $server_cases_json against ws://127.0.0.1:$port/echo (at most ${run_timeout} s; log $dir/wstest.log)"
  start=$SECONDS
  set +e
  (cd "$dir_abs" && timeout --kill-after=15 "$run_timeout" "$wstest_bin" -m fuzzingclient -s fuzzingclient.json) \
    >"$dir/wstest.log" 2>&1
  rc=$?
  set -e
  echo "== wstest finished in $((SECONDS - start)) s (exit $rc)"
  server_died=0
  kill -0 "$peer_pid" 2>/dev/null || server_died=1
  stop_peer

  if [ "$rc" != 0 ]; then
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      echo "autobahn (server): wstest did not finish within ${run_timeout} s (AUTOBAHN_TIMEOUT)" >&2
    else
      echo "autobahn (server): wstest failed (exit $rc):" >&2
    fi
    tail -n 30 "$dir/wstest.log" >&2
    return 1
  fi
  if [ "$server_died" = 1 ]; then
    echo "autobahn (server): the server died during the run; its log's end:"
    tail -n 20 "$dir/server.log"
  fi
  set +e
  check_report server
  rc=$?
  set -e
  echo "   (report: $dir/report/index.html)"
  if [ "$server_died" = 1 ]; then return 1; fi
  return "$rc"
}

# The generator's client, judged by wstest's fuzzing server.
run_client_side() {
  local dir="$out/client" dir_abs port rc ready start
  mkdir -p "$dir"
  rm -rf "$dir/report" "$dir/cases.json"
  dir_abs=$(cd "$dir" && pwd)
  port=$(free_port)
  cat >"$dir/fuzzingserver.json" <<SPEC
{
  "url": "ws://127.0.0.1:$port",
  "options": {"failByDrop": false},
  "outdir": "$dir_abs/report",
  "cases": $client_cases_json,
  "exclude-cases": $exclude_json,
  "exclude-agent-cases": {}
}
SPEC
  selected_cases "$dir/fuzzingserver.json" >"$dir/cases.json"

  echo "== wstest -m fuzzingserver on ws://127.0.0.1:$port: cases $client_cases_json (log $dir/wstest.log)"
  (cd "$dir_abs" && exec timeout --kill-after=15 "$run_timeout" "$wstest_bin" -m fuzzingserver -s fuzzingserver.json) \
    >"$dir/wstest.log" 2>&1 &
  peer_pid=$!
  ready=0
  for _ in $(seq 1 150); do
    if ! kill -0 "$peer_pid" 2>/dev/null; then
      echo "autobahn (client): the fuzzing server exited at start:" >&2
      tail -n 20 "$dir/wstest.log" >&2
      return 1
    fi
    if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)' "$port" 2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.2
  done
  if [ "$ready" != 1 ]; then
    echo "autobahn (client): the fuzzing server did not listen on 127.0.0.1:$port within 30 s" >&2
    return 1
  fi

  echo "== $client_bin ws://127.0.0.1:$port $agent (at most ${run_timeout} s; log $dir/client.log)"
  start=$SECONDS
  set +e
  timeout --kill-after=15 "$run_timeout" "$client_bin" "ws://127.0.0.1:$port" "$agent" >"$dir/client.log" 2>&1
  rc=$?
  set -e
  echo "== the client finished in $((SECONDS - start)) s (exit $rc): $(tail -n 1 "$dir/client.log")"
  # The fuzzing server writes the report when the client asks for it, at
  # the end: give it a moment to finish writing.
  for _ in $(seq 1 50); do [ -s "$dir/report/index.json" ] && break; sleep 0.2; done
  stop_peer
  if [ "$rc" != 0 ]; then
    echo "autobahn (client): the client failed (exit $rc):" >&2
    tail -n 30 "$dir/client.log" >&2
    return 1
  fi
  set +e
  check_report client
  rc=$?
  set -e
  echo "   (report: $dir/report/index.html)"
  return "$rc"
}

mkdir -p "$out"
rc=0
for sd in "${sides[@]}"; do
  "run_${sd}_side" || rc=1
done
exit "$rc"
