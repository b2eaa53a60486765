#!/usr/bin/env bash
# examples_test: the pattern examples run and verify themselves. In a network
# namespace of its own (re-executes under `unshare -n`):
#   rpc: server and client on the two ends of a veth pair, the client finding
#   the server by name, 2000 calls, none wrong, the server seeing it leave;
#   scatter: three peers and one sender, each on a veth whose other end is a
#   port of one bridge, every peer's slice intact.
# Needs root; VMRDMA_SKIP_NET_TESTS=1 skips it.
set -euo pipefail
fail() { echo "examples_test: FAIL: $*" >&2; exit 1; }
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
RPC=$(abs "${1:?rpc binary}")
SCATTER=$(abs "${2:?scatter binary}")

if [ -z "${IN_NETNS:-}" ]; then
    if ! why=$(unshare -n true 2>&1); then
        if [ "${VMRDMA_SKIP_NET_TESTS:-}" = 1 ]; then echo "SKIPPED network test: $why"; exit 0; fi
        fail "unshare -n failed: ${why:-permission denied} (needs root; VMRDMA_SKIP_NET_TESTS=1 skips)"
    fi
    exec unshare -n env IN_NETNS=1 "$(abs "$0")" "$RPC" "$SCATTER"
fi

work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/examples_test.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
ip link set lo up

# Waits for "ROLE: MAC" in a log and prints the MAC.
mac_of() {
    for _ in $(seq 200); do
        m=$(sed -n "s/^$2: \([0-9a-f:]\{17\}\)$/\1/p" "$1" | head -1)
        [ -n "$m" ] && { echo "$m"; return; }
        sleep 0.05
    done
    cat "$1" >&2
    fail "no MAC in $1"
}

# --- rpc ---
ip link add ra type veth peer name rb
ip link set ra up
ip link set rb up
"$RPC" server eth:ra >"$work/rpc-server.out" 2>&1 &
srv=$!
pids+=("$srv")
timeout 60 "$RPC" client eth:rb 2000 >"$work/rpc-client.out" 2>&1 || { cat "$work/rpc-client.out" >&2; fail "rpc client"; }
wait "$srv" || { cat "$work/rpc-server.out" >&2; fail "rpc server"; }
cat "$work/rpc-client.out" "$work/rpc-server.out"
grep -q "2000 calls in .* 0 wrong" "$work/rpc-client.out" || fail "rpc: not 2000 right answers"
grep -q "the client left after 2000 calls" "$work/rpc-server.out" || fail "rpc: the server did not see the client leave"

# --- scatter: a bridge with four ports ---
ip link add br0 type bridge
ip link set br0 up
for i in 0 1 2 3; do
    ip link add "s$i" type veth peer name "p$i"
    ip link set "p$i" master br0
    ip link set "p$i" up
    ip link set "s$i" up
done
macs=()
for i in 1 2 3; do
    "$SCATTER" peer "eth:s$i" 1048576 >"$work/peer$i.out" 2>&1 &
    pids+=("$!")
    macs+=("$(mac_of "$work/peer$i.out" peer)")
done
timeout 60 "$SCATTER" send eth:s0 "${macs[@]}" >"$work/send.out" 2>&1 || { cat "$work/send.out" >&2; fail "scatter send"; }
cat "$work/send.out"
for i in 1 2 3; do
    wait "${pids[$i]}" || { cat "$work/peer$i.out" >&2; fail "peer $i"; }
    cat "$work/peer$i.out"
done
for slice in 0 1 2; do
    grep -q "^peer: slice $slice of 1048576 bytes intact" "$work"/peer*.out || fail "slice $slice did not arrive intact"
done
echo "examples_test: OK: rpc (2000 calls) and scatter (3 peers) verified"
