#!/usr/bin/env bash
# rawframe_xdp_test: rawframe's AF_XDP path carries whole frames. For frames
# of one descriptor (78 bytes) and of two and three (4110, 9014: multi-buffer),
# with the receiver's program in native and in generic mode, frames arrive and
# every one arrives whole (bytes = frames x frame size). rawframe makes and
# removes its own namespaces and veth pair. Needs root and Linux 6.6+
# (multi-buffer AF_XDP); VMRDMA_SKIP_NET_TESTS=1 skips it.
set -euo pipefail
fail() { echo "rawframe_xdp_test: FAIL: $*" >&2; exit 1; }
RAWFRAME=${1:?rawframe binary}

if [ "$(id -u)" -ne 0 ]; then
    if [ "${VMRDMA_SKIP_NET_TESTS:-}" = 1 ]; then echo "SKIPPED network test: not root"; exit 0; fi
    fail "needs root (VMRDMA_SKIP_NET_TESTS=1 skips)"
fi
read -r major minor _ < <(uname -r | tr '.-' '  ')
if [ "$major" -lt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -lt 6 ]; }; then
    echo "SKIPPED: multi-buffer AF_XDP needs Linux 6.6 or later, this is $(uname -r)"
    exit 0
fi

field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$2"; }
for mode in xdp xdp-skb; do
    for frame in 78 4110 9014; do
        out=$("$RAWFRAME" --mode "$mode" --frame "$frame" -D 0.3 --json) || fail "$mode, $frame bytes: rawframe failed"
        frames=$(field arrived_frames "$out")
        bytes=$(field arrived_bytes "$out")
        [ -n "$frames" ] && [ -n "$bytes" ] || fail "$mode, $frame bytes: no counts in: $out"
        [ "$frames" -gt 0 ] || fail "$mode, $frame bytes: nothing arrived: $out"
        [ "$bytes" -eq $((frames * frame)) ] || fail "$mode, $frame bytes: $bytes bytes in $frames frames: $out"
        echo "$mode, $frame-byte frames: $frames arrived whole"
    done
done
echo "rawframe_xdp_test: PASS"
