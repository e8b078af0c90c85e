#!/usr/bin/env bash
# The web console at 100,000 invoices: how long the plan page of the next 14
# days takes to answer once `relance serve` has loaded its snapshot, the first
# request (which plans the window) and the repeated ones (served from the plan
# kept for that snapshot), and /api/plan?days=14 (every row, as
# `preview --format json`). Prints a Markdown table for BENCHMARKS.md.
#
#   bench/console.sh                       # 100,000 invoices in /tmp/relance-bench/100000
#   N=20000 DIR=/tmp/c20k RUNS=50 bench/console.sh
#
# Times are curl's `time_total` for each request on 127.0.0.1 (connection,
# server and transfer; no process start in them): the first request, then the
# median, 95th percentile and maximum of RUNS more.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-100000}
DIR=${DIR:-/tmp/relance-bench/$N}
RUNS=${RUNS:-30}
SEARCH=${SEARCH:-garage}   # a trade in some generated customers' names
AS_OF=2026-12-01
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
cargo build --release --bin relance --example gen
RELANCE=$TARGET/release/relance
if [ ! -f "$DIR/relance.yaml" ]; then
  "$TARGET/release/examples/gen" --invoices "$N" --customers $((N / 20)) --seed 1 --out "$DIR"
fi

LOG=$(mktemp)
RELANCE_LOG=info "$RELANCE" --dir "$DIR" serve --http 127.0.0.1:0 --as-of "$AS_OF" 2>"$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -f "$LOG"' EXIT

# The console listens once the daemon has loaded the folder: its address is
# in the log; /readyz says the snapshot is good and the journal writable.
BASE=
for _ in $(seq 600); do
  BASE=$(grep -o 'console listening on http://[0-9.:]*' "$LOG" | head -n 1 | sed 's/.* on //') || true
  [ -n "$BASE" ] && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
[ -n "$BASE" ] || { echo "the console never listened:" >&2; cat "$LOG" >&2; exit 1; }
curl -sf --retry 50 --retry-delay 0 --retry-all-errors -o /dev/null "$BASE/readyz"

seconds() { # path → seconds of one GET (fails unless 200)
  curl -sf -o /dev/null -w '%{time_total}\n' "$BASE$1"
}
bytes() { # path → size of the answer
  curl -sf -o /dev/null -w '%{size_download}\n' "$BASE$1"
}
ms() { awk '{ printf "%.1f", $1 * 1000 }'; }
stats() { # seconds, one a line → "median | p95 | max" in ms
  sort -g | awk '{ t[NR] = $1 } END {
    p95 = int((NR * 95 + 99) / 100)
    printf "%.1f | %.1f | %.1f", t[int((NR + 1) / 2)] * 1000, t[p95] * 1000, t[NR] * 1000 }'
}
measure() { # label, path: the first request, then RUNS more
  local first
  first=$(seconds "$2" | ms)
  echo "| $1 | $first | $(for _ in $(seq "$RUNS"); do seconds "$2"; done | stats) | $(bytes "$2") |"
}

table=$(
  echo "| request | first (ms) | median (ms) | p95 (ms) | max (ms) | bytes |"
  echo "|---|---|---|---|---|---|"
  measure "\`GET /plan\` (14 days, first page of 50 rows)" /plan
  measure "\`GET /plan?page=2\`" "/plan?page=2"
  measure "\`GET /plan?q=$SEARCH\` (text search over the window)" "/plan?q=$SEARCH"
  measure "\`GET /api/plan?days=14\` (every row, JSON)" "/api/plan?days=14"
)
reminders=$(curl -sf "$BASE/plan" | grep -o '<span class="count">[0-9]*' | grep -o '[0-9]*$')
echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
echo "- relance $(git rev-parse --short HEAD), $(rustc --version)"
echo "- \`relance serve --http 127.0.0.1:0 --as-of $AS_OF\` on \`gen --invoices $N --customers $((N / 20)) --seed 1\`: $reminders reminders in the 14 days"
echo "- curl's time_total on 127.0.0.1: the first request, then $RUNS more"
echo
echo "$table"
