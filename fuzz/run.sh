#!/usr/bin/env bash
# Fuzzes the sans-IO parser for SECONDS (default 600) on stable Rust.
#
# Usage: fuzz/run.sh [SECONDS]
#
# Needs `cargo install cargo-fuzz`. RUSTC_BOOTSTRAP=1 lets stable rustc accept the
# -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation). New inputs go
# to fuzz/corpus/parser (ignored by git); fuzz/seeds holds the committed seeds.
# Prints the execution count and figures; exits non-zero when libFuzzer finds a
# crash (the input is then in fuzz/artifacts/parser/).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
log="fuzz/target/run.log"
mkdir -p fuzz/corpus/parser fuzz/target

status=0
# -a: debug assertions and overflow checks on, so arithmetic overflow is a crash too.
RUSTC_BOOTSTRAP=1 cargo fuzz run -a parser fuzz/corpus/parser fuzz/seeds -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 2>&1 |
    tee "$log" || status=$?

echo
echo "==> fuzz figures (full log: $log)"
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" || true
grep -E '^Done [0-9]+ runs' "$log" || true
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
echo "corpus files: $(find fuzz/corpus/parser -type f | wc -l)"
if [ "$status" -ne 0 ]; then
    echo "==> FAILED (exit $status): see the crash input in fuzz/artifacts/parser/" >&2
fi
exit "$status"
