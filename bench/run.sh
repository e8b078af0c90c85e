#!/usr/bin/env bash
# Whole-command benchmarks: generates 100k and 1M invoices, times relance's
# commands as whole processes (median of several runs, peak memory), the raw
# csv floor, delivery to the outbox and to a real SMTP server on 127.0.0.1,
# and the daemon's reload latency and memory. Writes bench/results.md.
#
#   bench/run.sh            # everything (about 10 minutes on 2 cores)
#   SIZES="100000" RUNS=3 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${WORK:-/tmp/relance-bench}
SIZES=${SIZES-"100000 1000000"}   # SIZES="" skips to delivery and the daemon
RUNS=${RUNS:-5}
AS_OF=2026-12-01
OUT=$ROOT/bench/results.md

# Timers: hyperfine for medians, GNU time for peak memory (both Debian packages).
if ! command -v hyperfine >/dev/null || [ ! -x /usr/bin/time ]; then
  (apt-get update -qq && apt-get install -y -qq hyperfine time) >/dev/null
fi
cargo build --release --bin relance --example gen --example floor --example smtp_sink --example reload_latency
BIN=$ROOT/target/release
RELANCE=$BIN/relance
mkdir -p "$WORK"

median() { # hyperfine CSV export (command,mean,stddev,median,...) → median seconds
  awk -F, 'NR == 2 { printf "%.3f", $4 }' "$1"
}
rate() { # count, seconds → "N reminders/s"
  awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f reminders/s", n / s }'
}
peak_mb() { # peak RSS of one run, in MB
  /usr/bin/time -f %M "$@" >/dev/null 2>"$WORK/time.txt" || true
  echo $(( $(tail -n 1 "$WORK/time.txt") / 1024 ))
}
timeit() { # name, command...: median seconds and peak MB, tab-separated
  local name=$1; shift
  hyperfine --style none --warmup 1 --runs "$RUNS" --export-csv "$WORK/$name.csv" "$(printf '%q ' "$@")" >/dev/null
  printf '%s\t%s\n' "$(median "$WORK/$name.csv")" "$(peak_mb "$@")"
}

{
  echo "# bench/run.sh results"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "- relance $(git rev-parse --short HEAD), $(rustc --version)"
  echo "- median of $RUNS runs (hyperfine, 1 warm-up); peak memory from /usr/bin/time"
  echo
  echo "| invoices | command | median (s) | peak memory (MB) |"
  echo "|---|---|---|---|"
} >"$OUT"

for n in $SIZES; do
  dir=$WORK/$n
  if [ ! -f "$dir/relance.yaml" ]; then
    "$BIN/examples/gen" --invoices "$n" --customers $((n / 20)) --seed 1 --out "$dir"
  fi
  cd "$dir"
  while IFS='|' read -r name args; do
    # shellcheck disable=SC2086
    IFS=$'\t' read -r secs mb < <(timeit "$n-$name" $RELANCE $args)
    echo "| $n | \`relance $args\` | $secs | $mb |" >>"$OUT"
  done <<ROWS
check|check
preview1|preview --as-of $AS_OF --days 1
preview30|preview --as-of $AS_OF --days 30
preview30json|preview --as-of $AS_OF --days 30 --format json
preview30render|preview --as-of $AS_OF --days 30 --render --format json
ROWS
  IFS=$'\t' read -r secs mb < <(timeit "$n-floor" "$BIN/examples/floor" data/invoices.csv data/export_fr.csv)
  echo "| $n | csv floor: \`csv\` crate reading the same files into raw records | $secs | $mb |" >>"$OUT"
  for days in 1 30; do
    count=$($RELANCE preview --as-of $AS_OF --days $days --format csv 2>/dev/null | tail -n +2 | wc -l)
    echo "| $n | reminders in the $days-day preview | $count | |" >>"$OUT"
  done
  cd "$ROOT"
done

# Backtest: a year of history of 100,000 invoices (gen --history), replayed day by day.
hist=$WORK/history-100000
if [ ! -f "$hist/relance.yaml" ]; then
  "$BIN/examples/gen" --invoices 100000 --customers 5000 --seed 1 --history --out "$hist"
fi
cd "$hist"
IFS=$'\t' read -r secs mb < <(timeit backtest $RELANCE backtest --from 2025-12-01 --to 2026-12-01)
echo "| 100000, a year of history | \`relance backtest --from 2025-12-01 --to 2026-12-01\` | $secs | $mb |" >>"$OUT"
cd "$ROOT"

# Delivery: a folder where about 10,000 reminders are due on the day.
dir=$WORK/delivery
if [ ! -f "$dir/relance.yaml" ]; then
  "$BIN/examples/gen" --invoices 20200 --customers 1000 --seed 2 --out "$dir"
fi
cd "$dir"
# Each run starts from an empty journal, outbox and tasks folder. The old ones
# are moved aside, not deleted: ext4 allocates inodes slowly right after
# thousands were freed, which would time the file system's bookkeeping of
# `rm -rf` rather than relance.
mkdir -p "$WORK/old"
FRESH="mv state outbox tasks \$(mktemp -d -p $WORK/old) 2>/dev/null || true"
eval "$FRESH"
due=$($RELANCE preview --as-of $AS_OF --days 1 --format csv 2>/dev/null | tail -n +2 | wc -l)
IFS=$'\t' read -r secs mb < <(
  hyperfine --style none --runs 3 --prepare "$FRESH" --export-csv "$WORK/outbox.csv" \
    "$RELANCE run --once --confirm --as-of $AS_OF" >/dev/null
  printf '%s\t-\n' "$(median "$WORK/outbox.csv")"
)
sent=$(ls outbox | wc -l)
tasks=$(ls tasks | wc -l)
echo "| $due due | \`run --once --confirm\` to the outbox ($sent .eml files, $tasks files in tasks/) | $secs | $(rate "$due" "$secs") |" >>"$OUT"

"$BIN/examples/smtp_sink" 2525 2>"$WORK/smtp.log" &
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
cp relance.yaml relance.yaml.outbox
printf 'delivery: {kind: smtp, host: 127.0.0.1, port: 2525, tls: none}\n' >>relance.yaml
hyperfine --style none --runs 3 --prepare "$FRESH" --export-csv "$WORK/smtp.csv" \
  "$RELANCE run --once --confirm --as-of $AS_OF" >/dev/null
secs=$(median "$WORK/smtp.csv")
echo "| $due due | \`run --once --confirm\` over SMTP to 127.0.0.1 ($sent emails, $tasks files in tasks/) | $secs | $(rate "$due" "$secs") |" >>"$OUT"
mv relance.yaml.outbox relance.yaml
kill $SINK 2>/dev/null || true
rm -rf "$WORK/old"
cd "$ROOT"

# The daemon: reload latency and memory over many reloads, 100k invoices.
if [ -d "$WORK/100000" ]; then
  rm -rf "$WORK/100000/state" "$WORK/100000/outbox"
  "$BIN/examples/reload_latency" "$WORK/100000" 20 1000 >"$WORK/reload.txt"
  {
    echo
    echo "Daemon with 100,000 invoices (\`examples/reload_latency\`: 20 editor-style saves of rules/standard.yaml, then 1,000 SIGHUP reloads):"
    echo
    sed 's/^/- /' "$WORK/reload.txt"
  } >>"$OUT"
fi
cat "$OUT"
