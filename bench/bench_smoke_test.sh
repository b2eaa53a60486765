#!/usr/bin/env bash
# bench_smoke_test: vmrdma-bench runs end to end and every path it measures
# reports what the tables are made of. Short runs (0.3 s a point); no figure
# is compared with another, only whether it was measured at all:
#   - write, 4 KiB: vmrdma, TCP and raw frames each moved bytes and report
#     the CPU of both their sides (a raw side once printed 0.00 s/GiB);
#   - --transport unix: the daemon path moved bytes and reports the daemon's
#     CPU, and the in-process eth: path beside it moved bytes;
#   - --mode lat: vmrdma and TCP report a round trip;
#   - --help and a bad option.
# vmrdma-bench makes and removes its own namespaces and veth pair. Needs
# root; VMRDMA_SKIP_NET_TESTS=1 skips it.
set -euo pipefail
fail() { echo "bench_smoke_test: FAIL: $*" >&2; exit 1; }
BENCH=$(cd "$(dirname "${1:?vmrdma-bench binary}")" && pwd)/$(basename "$1")

"$BENCH" --help | grep -q -- "--transport" || fail "--help does not describe --transport"
if "$BENCH" --depth 0 >/dev/null 2>&1; then fail "--depth 0 was accepted"; fi

if [ "$(id -u)" -ne 0 ]; then
    if [ "${VMRDMA_SKIP_NET_TESTS:-}" = 1 ]; then echo "SKIPPED network test: not root"; exit 0; fi
    fail "needs root (VMRDMA_SKIP_NET_TESTS=1 skips)"
fi

work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/bench_smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

# run NAME ARGS...: vmrdma-bench ARGS; its CSV (vmrdma-bench-MODE.csv) stays
# as NAME.csv.
run() {
    local name=$1
    shift
    rm -f vmrdma-bench-*.csv
    "$BENCH" "$@" >"$name.out" 2>&1 || fail "vmrdma-bench $*: exit $?: $(tail -5 "$name.out")"
    mv vmrdma-bench-*.csv "$name.csv" || fail "vmrdma-bench $* wrote no CSV"
}

# positive NAME PATH COLUMN...: in NAME.csv, PATH's row has every COLUMN > 0.
positive() {
    local name=$1 path=$2
    shift 2
    for column in "$@"; do
        awk -F, -v path="$path" -v col="$column" '
            NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
            $3 == path { found = 1; if (!c || !($c > 0)) bad = 1 }
            END { exit !(found && !bad) }' "$name.csv" ||
            fail "$name: $path's $column is not positive: $(cat "$name.csv")"
    done
}

run write -s 4K -D 0.3
for path in vmrdma tcp raw; do
    positive write "$path" gib_per_s client_cpu_s_per_gib server_cpu_s_per_gib
done

run unix --transport unix -s 4K -D 0.3 --no-tcp --no-raw
positive unix vmrdma gib_per_s daemon_cpu_s_per_gib
positive unix eth gib_per_s client_cpu_s_per_gib server_cpu_s_per_gib

run lat --mode lat -s 64 -D 0.3 --no-raw
for path in vmrdma tcp; do positive lat "$path" latency_median_us; done

echo "bench_smoke_test: every path measured (write: vmrdma, TCP, raw; unix: daemon and eth; lat: vmrdma, TCP)"
