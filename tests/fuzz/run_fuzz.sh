#!/usr/bin/env bash
# Builds the rx_fuzz libFuzzer target with Debian's clang (ASan + UBSan) and
# fuzzes the receive path for SECONDS (default 60) from a copy of the seed
# corpus.  Prints one summary line; exits non-zero if the fuzzer found a
# crash (the input is kept under tests/fuzz/crashes/).
#   usage: tests/fuzz/run_fuzz.sh [SECONDS]
set -uo pipefail
secs=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cc=${CLANG:-clang}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -std=gnu11 -Wall -Wextra -Werror -I"$root/proto" -I"$here" \
        "$here/rx_fuzz.c" "$root"/proto/*.c -lsodium -o "$tmp/rx_fuzz" 2>"$tmp/build.log"; then
    cat "$tmp/build.log" >&2
    echo "rx_fuzz: BUILD FAILED"
    exit 2
fi
mkdir -p "$tmp/corpus" "$tmp/artifacts"
cp "$here"/corpus/* "$tmp/corpus/"
start=$(date +%s)
# -timeout: one input must finish in 10 s; -rss_limit_mb bounds memory.
"$tmp/rx_fuzz" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$tmp/artifacts/" "$tmp/corpus" \
    >"$tmp/fuzz.log" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/fuzz.log" | tail -1)
speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$tmp/fuzz.log" | tail -1)
cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$tmp/fuzz.log" | tail -1)
crashes=$(find "$tmp/artifacts" -type f | wc -l)
if [ "$crashes" -gt 0 ] || [ "$rc" -ne 0 ]; then
    mkdir -p "$here/crashes"
    cp "$tmp"/artifacts/* "$here/crashes/" 2>/dev/null || true
    # the diagnosis: oracle message or sanitizer report, and frames in our code
    grep -E 'ERROR|rx_fuzz:|SUMMARY|runtime error|^ *#[0-9]+ .*(/proto/|/tests/fuzz/)' \
        "$tmp/fuzz.log" | head -30
    echo "rx_fuzz: CRASH after ${elapsed}s, ${execs:-?} execs (${speed:-?}/s), ${crashes} artifact(s) saved in tests/fuzz/crashes/ (rc ${rc})"
    exit 1
fi
echo "rx_fuzz: OK ${elapsed}s, ${execs:-?} execs (${speed:-?} exec/s), ${cov:-no coverage line}, no crash"
