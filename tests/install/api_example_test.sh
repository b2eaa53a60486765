#!/usr/bin/env bash
# api_example_test: docs/api.md's complete example, exactly as printed.
# Installs vmrdma into a scratch prefix, extracts the first ```cpp block
# under "## A complete example" from docs/api.md, builds it with plain g++
# and pkg-config, then, in a network namespace of its own with a veth pair,
# runs it as server on one end and as client on the other and checks that
# both finish and the client read back what it wrote.
# Needs root (unshare -n, raw sockets); VMRDMA_SKIP_NET_TESTS=1 skips it.
set -euo pipefail
fail() { echo "api_example_test: FAIL: $*" >&2; exit 1; }

if [ -z "${IN_NETNS:-}" ]; then
    if ! why=$(unshare -n true 2>&1); then
        if [ "${VMRDMA_SKIP_NET_TESTS:-}" = 1 ]; then echo "SKIPPED network test: $why"; exit 0; fi
        fail "unshare -n failed: ${why:-permission denied} (needs root; VMRDMA_SKIP_NET_TESTS=1 skips)"
    fi
    exec unshare -n env IN_NETNS=1 "$0" "$@"
fi

root=$TEST_SRCDIR/vmrdma
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/api_example.XXXXXX")
trap 'kill $srv 2>/dev/null || true; rm -rf "$work"' EXIT
srv=""
RUNFILES_DIR=$TEST_SRCDIR "$root/install" "$work/prefix" >/dev/null 2>&1 || fail "install failed"
export PKG_CONFIG_PATH=$work/prefix/lib/pkgconfig

# The block, byte for byte: from the ```cpp after the heading to its closing fence.
awk '/^## A complete example/ { section = 1; next }
     section && /^```cpp$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$root/docs/api.md" >"$work/example.cc"
[ -s "$work/example.cc" ] || fail "no \`\`\`cpp block under '## A complete example' in docs/api.md"
echo "api_example_test: $(wc -l <"$work/example.cc") lines from docs/api.md"
g++ -std=c++20 -Wall -Wextra -Werror "$work/example.cc" $(pkg-config --cflags --libs vmrdma) -o "$work/example" \
    || fail "the example does not compile as printed"

ip link set lo up
ip link add vxa type veth peer name vxb
ip link set vxa up
ip link set vxb up
"$work/example" server eth:vxa >"$work/server.out" 2>&1 &
srv=$!
# No address is passed: the client finds the server by the name it announces.
timeout 60 "$work/example" client eth:vxb >"$work/client.out" 2>&1 || { cat "$work/client.out" >&2; fail "client failed"; }
wait $srv || { cat "$work/server.out" >&2; fail "server failed"; }
srv=""
cat "$work/server.out" "$work/client.out"
grep -q "read back intact" "$work/client.out" || fail "the client did not read back what it wrote"
grep -q "fetch_add found 0x2a2a2a2a2a2a2a2a" "$work/client.out" || fail "fetch_add did not see the written bytes"
grep -q "first byte now 43" "$work/server.out" || fail "the server's memory does not hold the write plus 1"
grep -q "client left (peer is gone)" "$work/server.out" || fail "the server did not see the client leave"
echo "api_example_test: OK: docs/api.md's example built and ran as printed"
