#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (SECONDS_EACH, default 60) from
# the seed corpus in fuzz/corpus/TARGET. New interesting inputs go to
# fuzz/work/corpus (not committed); a crash is written to
# fuzz/artifacts/TARGET/ and the script exits 1: copy the file into
# fuzz/regressions/TARGET/ (tests/fuzz_corpus.rs then runs it on every
# `cargo test`) and fix the bug.
#
#   fuzz/run.sh                        # every target, 60 s each
#   SECONDS_EACH=600 fuzz/run.sh policy
#
# Needs a nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz
# (`cargo install cargo-fuzz`); it installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${SECONDS_EACH:-60}
TARGETS=${*:-feed_csv feed_json policy template amount date}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
rustup toolchain list | grep -q nightly || {
  echo "fuzz/run.sh needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
}
# Temporary folders of the harness in memory: the targets write a file per input.
export TMPDIR=${TMPDIR:-/dev/shm}
status=0
for target in $TARGETS; do
  mkdir -p "work/corpus/$target"
  echo "== $target (${SECONDS_EACH}s)"
  if ! cargo +nightly fuzz run "$target" "work/corpus/$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1; then
    echo "!! $target: a crash or a hang; see fuzz/artifacts/$target/" >&2
    status=1
  fi
done
exit $status
