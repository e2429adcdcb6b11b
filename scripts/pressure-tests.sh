#!/usr/bin/env bash
# The workload tests under CPU pressure: pinned to one core beside a
# busy-looping process on that same core, several times. Races between
# what a client counts and what the server counts hide on a fast, idle
# machine; starving every thread of CPU widens the windows they live in,
# the way a slow or noisy machine does.
#
#     scripts/pressure-tests.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
command -v taskset >/dev/null || { echo "pressure-tests: taskset is missing (Debian package util-linux)" >&2; exit 2; }

# Build first, unpinned: only the tests run under pressure.
cargo test --quiet --test integration --no-run

for i in $(seq 1 "$rounds"); do
  echo "== workload tests on one core beside a CPU hog: round $i of $rounds"
  taskset -c 0 bash -c 'while :; do :; done' &
  hog=$!
  trap 'kill $hog 2>/dev/null || true' EXIT
  log=target/pressure-round-$i.log
  if ! taskset -c 0 cargo test --quiet --test integration workload:: >"$log" 2>&1; then
    kill $hog 2>/dev/null || true
    # The assertion that failed, not only the backtrace's tail.
    grep -E -A 12 "panicked at|^failures:" "$log" | grep -v "^  *[0-9]*: \|^  *at " | head -n 60
    echo "pressure-tests: FAILED in round $i (whole output: $log)" >&2
    exit 1
  fi
  grep -E "^test result" "$log" || true
  kill $hog 2>/dev/null || true
  wait $hog 2>/dev/null || true
done
echo "pressure-tests: $rounds rounds passed"
