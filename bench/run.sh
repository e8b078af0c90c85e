#!/usr/bin/env bash
# Whole-command benchmarks: generates 100k and 1M invoices, times relance's
# commands as whole processes (median of several runs, peak memory), the raw
# csv floor, delivery to the outbox and to a real SMTP server on 127.0.0.1,
# the daemon's reload latency and memory, and the day-one plan against the
# same plan as one DuckDB query (bench/duckdb_plan.sql). Writes bench/results.md.
#
#   bench/run.sh            # everything (about 20 minutes on 2 cores)
#   SIZES="100000" RUNS=3 bench/run.sh
#   ONLY="duckdb" bench/run.sh   # some parts only: commands backtest delivery postgres daemon duckdb
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${WORK:-/tmp/relance-bench}
SIZES=${SIZES-"100000 1000000"}   # SIZES="" skips to delivery and the daemon
RUNS=${RUNS:-5}
ONLY=${ONLY:-}
AS_OF=2026-12-01
OUT=${OUT:-$ROOT/bench/results.md}

# Timers: hyperfine for medians, GNU time for peak memory (both Debian packages).
if ! command -v hyperfine >/dev/null || [ ! -x /usr/bin/time ]; then
  (apt-get update -qq && apt-get install -y -qq hyperfine time) >/dev/null
fi
cargo build --release --bin relance --example gen --example floor --example smtp_sink --example reload_latency
TARGET=${CARGO_TARGET_DIR:-target}
[[ $TARGET = /* ]] || TARGET=$ROOT/$TARGET
BIN=$TARGET/release
RELANCE=$BIN/relance
mkdir -p "$WORK"

part() { # name: whether this run measures that part (ONLY unset: all of them)
  [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]
}
folder() { # invoices → the generated folder (seed 1, 20 invoices a customer), made once
  local dir=$WORK/$1
  if [ ! -f "$dir/relance.yaml" ]; then
    "$BIN/examples/gen" --invoices "$1" --customers $(($1 / 20)) --seed 1 --out "$dir"
  fi
  echo "$dir"
}

median() { # hyperfine CSV export (command,mean,stddev,median,...)[, its Nth command] → median seconds
  awk -F, -v row=$((${2:-1} + 1)) 'NR == row { printf "%.3f", $4 }' "$1"
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
  [ -z "$ONLY" ] || echo "- only: $ONLY"
  if part commands || part backtest || part delivery || part postgres; then
    echo
    echo "| invoices | command | median (s) | peak memory (MB) |"
    echo "|---|---|---|---|"
  fi
} >"$OUT"

for n in $(part commands && echo "$SIZES"); do
  dir=$(folder "$n")
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
if part backtest; then
hist=$WORK/history-100000
if [ ! -f "$hist/relance.yaml" ]; then
  "$BIN/examples/gen" --invoices 100000 --customers 5000 --seed 1 --history --out "$hist"
fi
cd "$hist"
IFS=$'\t' read -r secs mb < <(timeit backtest $RELANCE backtest --from 2025-12-01 --to 2026-12-01)
echo "| 100000, a year of history | \`relance backtest --from 2025-12-01 --to 2026-12-01\` | $secs | $mb |" >>"$OUT"
cd "$ROOT"
fi

# Delivery: a folder where about 10,000 reminders are due on the day.
if part delivery; then
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
fi

# The PostgreSQL journal: the same ~10,000 reminders as `delivery`, delivered
# by one, two and three daemons (`relance run`) sharing one database, to the
# outbox and over SMTP. A throwaway cluster (Debian's postgresql package,
# installed when missing) runs as the postgres user in $WORK/pg. Each count
# is timed from the daemons' start until the deciding one has journaled the
# day (one transaction) and no reminder is left `planned` (the database
# polled every 0.1 s), start-up and loading included, as `run --once` is
# timed above; then the daemons are stopped (SIGTERM). The rate is of the
# reminders delivered (`sent` or `failed`; those awaiting approval are not).
if part postgres; then
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
PGDATA=$WORK/pg
PGPORT=${PGPORT:-5439}
as_pg() { # the server's programs run as postgres when root (initdb refuses root)
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
rm -rf "$PGDATA" && mkdir -p "$PGDATA"
[ "$(id -u)" -ne 0 ] || chown postgres: "$PGDATA"
as_pg "$PGBIN/initdb" -D "$PGDATA/data" -A trust -U postgres -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA/data" -l "$PGDATA/log" -w \
  -o "-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1" start >/dev/null
stop_pg() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA/data" -m fast stop >/dev/null 2>&1 || true; }
trap 'stop_pg; kill ${SINK:-} 2>/dev/null || true' EXIT
sql() { "$PGBIN/psql" -qtAX -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }
export RELANCE_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/bench?sslmode=disable"

dir=$WORK/delivery
if [ ! -f "$dir/relance.yaml" ]; then
  "$BIN/examples/gen" --invoices 20200 --customers 1000 --seed 2 --out "$dir"
fi
cd "$dir"
# The config as generated (an interrupted run may have left its own).
[ ! -f relance.yaml.sqlite ] || mv relance.yaml.sqlite relance.yaml
mkdir -p "$WORK/old"
FRESH="mv state outbox tasks \$(mktemp -d -p $WORK/old) 2>/dev/null || true"
eval "$FRESH"
due=$($RELANCE preview --as-of $AS_OF --days 1 --format csv 2>/dev/null | tail -n +2 | wc -l)
cp relance.yaml relance.yaml.sqlite
"$BIN/examples/smtp_sink" 2525 2>"$WORK/smtp.log" &
SINK=$!
for route in outbox smtp; do
  for daemons in 1 2 3; do
    eval "$FRESH"
    sql -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
    { grep -v '^journal:' relance.yaml.sqlite
      echo 'journal: {url_env: RELANCE_DATABASE_URL}'
      [ $route = outbox ] || echo 'delivery: {kind: smtp, host: 127.0.0.1, port: 2525, tls: none}'
    } >relance.yaml
    start=$(date +%s.%N)
    pids=()
    for _ in $(seq "$daemons"); do
      $RELANCE run --confirm --as-of $AS_OF 2>>"$WORK/postgres-daemons.log" &
      pids+=($!)
    done
    done_at=
    for _ in $(seq 6000); do # at most 10 minutes
      over=$(sql -d bench -c "SELECT COUNT(*) > 0 AND COUNT(*) FILTER (WHERE state = 'planned') = 0 FROM reminder" 2>/dev/null || echo f)
      if [ "$over" = t ]; then done_at=$(date +%s.%N); break; fi
      sleep 0.1
    done
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    if [ -z "$done_at" ]; then
      echo "| $due due | $daemons daemon(s), PostgreSQL journal, $route | did not finish in 10 minutes | |" >>"$OUT"
      continue
    fi
    secs=$(awk -v a="$start" -v b="$done_at" 'BEGIN { printf "%.3f", b - a }')
    delivered=$(sql -d bench -c "SELECT COUNT(*) FROM reminder WHERE state IN ('sent', 'failed')")
    where="to the outbox"
    [ $route = outbox ] || where="over SMTP to 127.0.0.1"
    echo "| $due due | $daemons \`relance run\` daemon(s) on one PostgreSQL journal, $where ($delivered reminders delivered) | $secs | $(rate "$delivered" "$secs") |" >>"$OUT"
  done
done
mv relance.yaml.sqlite relance.yaml
kill $SINK 2>/dev/null || true
stop_pg
trap - EXIT
rm -rf "$WORK/old"
cd "$ROOT"
fi

# The day-one plan against the same plan as one DuckDB query (the query a
# user would write instead of relance, bench/duckdb_plan.sql: what it leaves
# out is written there), both timed side by side, Python's start-up included.
duckdb_python() { # → a Python with the duckdb package, in a venv of $WORK
  local venv=$WORK/duckdb-venv
  if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
    rm -rf "$venv"
    # Debian's python3 makes venvs only with python3-venv (ensurepip).
    if ! command -v python3 >/dev/null || ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      (apt-get update -qq && apt-get install -y -qq python3 python3-venv) >/dev/null
      python3 -m venv "$venv"
    fi
    # One version, so that figures of different runs compare.
    "$venv/bin/pip" install -q duckdb==2.0.1 >&2
  fi
  echo "$venv/bin/python"
}
if part duckdb; then
  PY=$(duckdb_python)
  echo >>"$OUT"
  echo "DuckDB $("$PY" -c 'import duckdb; print(duckdb.__version__)') (Python package), \`bench/duckdb_plan.py\` running bench/duckdb_plan.sql, against \`relance preview --as-of $AS_OF --days 1 --format json\`, side by side (goal: relance ÷ DuckDB < 0.5):" >>"$OUT"
  echo >>"$OUT"
  echo "| invoices | relance (s) | DuckDB (s) | relance ÷ DuckDB | peak memory relance / DuckDB (MB) | reminders relance / DuckDB | reminders that differ |" >>"$OUT"
  echo "|---|---|---|---|---|---|---|" >>"$OUT"
  for n in $SIZES; do
    dir=$(folder "$n")
    cd "$dir"
    plan=($RELANCE preview --as-of $AS_OF --days 1 --format json)
    query=("$PY" "$ROOT/bench/duckdb_plan.py" . $AS_OF)
    hyperfine --style none --warmup 1 --runs "$RUNS" --export-csv "$WORK/$n-duckdb.csv" \
      "$(printf '%q ' "${plan[@]}")" "$(printf '%q ' "${query[@]}")" >/dev/null
    secs=$(median "$WORK/$n-duckdb.csv" 1)
    duck=$(median "$WORK/$n-duckdb.csv" 2)
    "${plan[@]}" >"$WORK/plan-relance.json"
    "${query[@]}" >"$WORK/plan-duckdb.json"
    # Both plans' rows, and those of one not in the other: any field of a
    # reminder (cc and approval, absent from relance's rows that have none, aside).
    counts=$("$PY" - "$WORK/plan-relance.json" "$WORK/plan-duckdb.json" <<'PY'
import sys, duckdb
fields = ["date", "invoice", "customer_id", "customer_name", "policy", "stage", "occurrence",
          "message", "channel", "to", "language", "template", "subject", "amount_due", "currency"]
cols = ", ".join('"%s"' % f for f in fields)
types = ", ".join("'%s': 'VARCHAR'" % f for f in fields)
a, b = ("read_json('%s', columns = {%s})" % (path, types) for path in sys.argv[1:3])
print(*duckdb.connect().execute(f"""SELECT (SELECT count(*) FROM {a}), (SELECT count(*) FROM {b}),
    (SELECT count(*) FROM (SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b}))
  + (SELECT count(*) FROM (SELECT {cols} FROM {b} EXCEPT ALL SELECT {cols} FROM {a}))""").fetchone())
PY
    )
    read -r ours theirs differ <<<"$counts"
    ratio=$(awk -v a="$secs" -v b="$duck" 'BEGIN { printf "%.2f", a / b }')
    echo "| $n | $secs | $duck | $ratio | $(peak_mb "${plan[@]}") / $(peak_mb "${query[@]}") | $ours / $theirs | $differ |" >>"$OUT"
    rm -f "$WORK/plan-relance.json" "$WORK/plan-duckdb.json"
    cd "$ROOT"
  done
fi

# The daemon: reload latency and memory over many reloads, on a copy of each
# folder (the measurement edits rules/standard.yaml). At 1,000,000 invoices
# a reload takes seconds: 100 of them show a trend as well as 1,000.
if part daemon; then
  for n in ${SIZES:-100000}; do
    copy=$WORK/reload-$n
    rm -rf "$copy"
    dir=$(folder "$n")
    cp -a "$dir" "$copy"
    rm -rf "$copy/state" "$copy/outbox"
    reloads=$((n >= 1000000 ?  10 : 1000))
    {
      echo
      echo "Daemon with $n invoices (\`examples/reload_latency\`: 20 editor-style saves of rules/standard.yaml, then $reloads SIGHUP reloads):"
      echo
      # In a process group of its own: a measurement that fails leaves its
      # daemon running, and the group's end stops it.
      setsid "$BIN/examples/reload_latency" "$copy" 20 "$reloads" >"$WORK/reload.txt" 2>"$WORK/reload.err" &
      measurement=$!
      if wait "$measurement"; then
        sed 's/^/- /' "$WORK/reload.txt"
      else
        echo "- failed: $(grep -m 1 -A 1 'panicked at' "$WORK/reload.err" | tail -n 1)"
      fi
      kill -KILL -- "-$measurement" 2>/dev/null || true
    } >>"$OUT"
    rm -rf "$copy"
  done
fi
cat "$OUT"
