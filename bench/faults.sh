#!/usr/bin/env bash
# Fault figures for RELIABILITY.md: relance under the faults an operator meets,
# against real parts (the release binary, a real SMTP server on 127.0.0.1 that
# logs every Message-ID it accepts, a real SQLite journal, real file edits).
#
#   bench/faults.sh                  # every scenario (about 3 minutes with AWAY=60)
#   KILLS=10 AWAY=5 bench/faults.sh  # a quicker run
#   PROFILE=debug N=100 KILLS=5 ONLY=1 bench/faults.sh   # the debug build, scenario 1
#
# 1. kill -9: the daemon (`relance run`) delivering a batch of N reminders
#    over SMTP, killed (SIGKILL) at KILLS random points of the batch and
#    restarted each time, then left to finish: lost must be 0, duplicates at
#    most 1 per kill and SMTP connection (the messages in flight when the
#    process died), counted at the server.
# 2. SMTP away: the server stopped for AWAY seconds under a running daemon,
#    then back: everything delivered, each message once.
# 3. Full disk: the outbox on a small tmpfs; nothing is marked sent without its
#    file; once there is room, everything is delivered once.
# 4. Edit storm: rules/standard.yaml rewritten 100 times a second for 10 s,
#    one version in three broken, under the daemon: it stays up and ends on
#    the last good version.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-1000}
KILLS=${KILLS:-50}
AWAY=${AWAY:-60}
PORT=${PORT:-2626}
ONLY=${ONLY:-"1 2 3 4"}   # which scenarios to run
WORK=$(mktemp -d /tmp/relance-faults.XXXXXX)
AS_OF=2026-12-01

PROFILE=${PROFILE:-release}   # or debug
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$PROFILE" = release ]; then
  cargo build --release --bin relance --example smtp_sink >/dev/null 2>&1
else
  cargo build --bin relance --example smtp_sink >/dev/null 2>&1
fi
RELANCE=$TARGET_DIR/$PROFILE/relance
SINK=$TARGET_DIR/$PROFILE/examples/smtp_sink
SINK_PID=
DAEMON_PID=

cleanup() {
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
  [ -n "$DAEMON_PID" ] && kill -9 "$DAEMON_PID" 2>/dev/null || true
  mountpoint -q "$WORK/disk/outbox" 2>/dev/null && umount "$WORK/disk/outbox" || true
}
trap cleanup EXIT

# A folder with N invoices of N customers, each due one email reminder on AS_OF.
folder() { # dir delivery-yaml
  local dir=$1
  mkdir -p "$dir/rules" "$dir/templates" "$dir/data"
  cat >"$dir/relance.yaml" <<EOF
timezone: UTC
language: en
company: {name: Faults Ltd, email: ar@faults.example}
delivery: $2
limits: {max_per_run: 100000}
retry: {first: 1s, max: 2s, attempts: 1000}
schedule: {every: 1s}
EOF
  printf 'name: standard\nstages:\n  - {id: overdue_1, offset: 1, template: overdue}\n' >"$dir/rules/standard.yaml"
  printf -- '---\nsubject: "Invoice {{invoice.number}} is overdue"\n---\nPlease pay {{money invoice.amount_due}}.\n' >"$dir/templates/overdue.en.hbs"
  {
    echo "number,customer_id,customer_name,email,issue_date,due_date,amount"
    for i in $(seq -w 1 "$N"); do
      echo "F$i,C$i,Customer $i,c$i@example.com,2026-10-31,2026-11-30,100.00"
    done
  } >"$dir/data/invoices.csv"
}

start_sink() { # log
  "$SINK" "$PORT" --log "$1" 2>>"$WORK/sink.err" &
  SINK_PID=$!
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && return; sleep 0.05; done
  echo "smtp_sink did not start" >&2; exit 1
}
stop_sink() { kill "$SINK_PID"; wait "$SINK_PID" 2>/dev/null || true; SINK_PID=; }
unique() { sort -u "$1" | grep -vc '^(no Message-ID)$' || true; }
total() { wc -l <"$1" | tr -d ' '; }
sent_in_journal() { # dir
  "$RELANCE" --dir "$1" history --format csv | awk -F, 'NR > 1 && $5 == "sent"' | wc -l | tr -d ' '
}
wait_for() { # seconds command...: polls until the command succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $deadline ] || return 1; sleep 0.2; done
}
smtp() { echo "{kind: smtp, host: 127.0.0.1, port: $PORT, tls: none}"; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

echo "# bench/faults.sh results"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "- relance $(git rev-parse --short HEAD); N=$N reminders, KILLS=$KILLS, AWAY=${AWAY}s"
echo

# 1. kill -9 of the daemon at random points of a batch, restarted each time.
if want 1; then
  dir=$WORK/kill; folder "$dir" "$(smtp)"; log=$WORK/kill.ids; : >"$log"; start_sink "$log"
  # The kill points: KILLS distinct counts of messages the server has accepted,
  # spread over the batch; each restart of the daemon goes on with what is
  # left of it (the crash's `planned` rows first).
  points=$(shuf -i 1-"$((N - 1))" -n "$KILLS" | sort -n)
  kills=0
  for point in $points; do
    "$RELANCE" --dir "$dir" run --confirm --as-of "$AS_OF" >>"$WORK/kill.log" 2>&1 &
    DAEMON_PID=$!
    while [ "$(total "$log")" -lt "$point" ] && kill -0 "$DAEMON_PID" 2>/dev/null; do sleep 0.002; done
    if kill -9 "$DAEMON_PID" 2>/dev/null; then kills=$((kills + 1)); fi
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=
  done
  # Restarted once more and left to finish the batch.
  "$RELANCE" --dir "$dir" run --confirm --as-of "$AS_OF" >>"$WORK/kill.log" 2>&1 &
  DAEMON_PID=$!
  all_sent() { [ "$(sent_in_journal "$dir")" -ge "$N" ]; }
  if wait_for 300 all_sent; then status=ok; else status="NOT all sent after 300 s"; fi
  kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=
  stop_sink
  got=$(unique "$log"); all=$(total "$log"); dups=$((all - got))
  echo "1. the daemon killed (SIGKILL) at $kills points of a $N-reminder SMTP batch and restarted: delivered $got, lost $((N - got)), duplicates $dups ($(awk -v d="$dups" -v k="$kills" 'BEGIN { printf "%.2f", k ? d / k : 0 }') per kill), sent in the journal $(sent_in_journal "$dir"), $status"
fi

# 2. The SMTP server away for AWAY seconds under the daemon.
if want 2; then
  dir=$WORK/away; folder "$dir" "$(smtp)"; log=$WORK/away.ids; : >"$log"
  "$RELANCE" --dir "$dir" run --confirm --as-of "$AS_OF" >"$WORK/away.log" 2>&1 &
  daemon=$!; DAEMON_PID=$daemon
  sleep "$AWAY"
  start_sink "$log"
  delivered() { [ "$(unique "$log")" -ge "$N" ]; }
  if wait_for 120 delivered; then status=ok; else status="NOT all delivered after 120 s"; fi
  kill "$daemon"; wait "$daemon" 2>/dev/null || true; DAEMON_PID=
  stop_sink
  got=$(unique "$log"); all=$(total "$log")
  echo "2. SMTP server away ${AWAY} s under the daemon, then back: delivered $got of $N, duplicates $((all - got)), daemon $(grep -c 'delivery failed' "$WORK/away.log") failed attempts logged, $status"
fi

# 3. A full outbox disk (tmpfs of 256 KiB), then room again.
if want 3; then
  dir=$WORK/disk; folder "$dir" "{kind: outbox, dir: outbox}"; mkdir -p "$dir/outbox"
  if mount -t tmpfs -o size=256k tmpfs "$dir/outbox" 2>/dev/null; then
    "$RELANCE" --dir "$dir" run --once --confirm --as-of "$AS_OF" >"$WORK/disk1.log" 2>&1 || true
    files=$(find "$dir/outbox" -name '*.eml' -size +0 | wc -l | tr -d ' ')
    sent=$(sent_in_journal "$dir")
    mount -o remount,size=64m "$dir/outbox"
    "$RELANCE" --dir "$dir" run --once --confirm --as-of "$AS_OF" >"$WORK/disk2.log" 2>&1 || true
    # Retries wait for their backoff (1 s here): run until nothing is left.
    for _ in $(seq 10); do
      [ "$(sent_in_journal "$dir")" -ge "$N" ] && break
      sleep 1
      "$RELANCE" --dir "$dir" run --once --confirm --as-of "$AS_OF" >>"$WORK/disk2.log" 2>&1 || true
    done
    files2=$(find "$dir/outbox" -name '*.eml' -size +0 | wc -l | tr -d ' ')
    echo "3. outbox on a full 256 KiB tmpfs: $files files written, $sent marked sent (never more than the files); after remounting with room: $files2 files, $(sent_in_journal "$dir") sent, for $N reminders"
    umount "$dir/outbox"
  else
    echo "3. full disk: SKIPPED, this machine does not let the script mount a tmpfs (run as root on Linux)"
  fi
fi

# 4. An edit storm under the daemon.
if want 4; then
  dir=$WORK/storm; folder "$dir" "{kind: log}"
  "$RELANCE" --dir "$dir" run --as-of "$AS_OF" >"$WORK/storm.log" 2>&1 &
  daemon=$!; DAEMON_PID=$daemon
  wait_for 30 grep -q 'evaluation done' "$WORK/storm.log"
  good='name: standard\nstages:\n  - {id: overdue_1, offset: %d, template: overdue}\n'
  for i in $(seq 1000); do
    if [ $((i % 3)) -eq 0 ]; then
      printf 'name: standard\nstages: [{id: overdue_1, ofset: 1' >"$dir/rules/standard.yaml.tmp"
    else
      printf "$good" $((i % 30 + 1)) >"$dir/rules/standard.yaml.tmp"
    fi
    mv "$dir/rules/standard.yaml.tmp" "$dir/rules/standard.yaml"
    sleep 0.01
  done
  printf "$good" 7 >"$dir/rules/standard.yaml.tmp"; mv "$dir/rules/standard.yaml.tmp" "$dir/rules/standard.yaml"
  sleep 2
  if kill -0 "$daemon" 2>/dev/null; then alive=yes; else alive=NO; fi
  # A reload is live when the daemon logs `now live: …`; a broken version is `reload failed: …`.
  last=$( (grep -oE 'now live|reload failed' "$WORK/storm.log" || true) | tail -n 1)
  [ "$last" != "now live" ] || last=reloaded
  kill "$daemon"; wait "$daemon" 2>/dev/null || true; DAEMON_PID=
  oks=$(grep -c 'now live' "$WORK/storm.log" || true)
  refused=$(grep -c 'reload failed' "$WORK/storm.log" || true)
  echo "4. 1,000 saves of rules/standard.yaml in about 10 s (one in three broken) under the daemon: alive at the end: $alive; $oks reloads ok, $refused refused; last: ${last:-none}"
fi
