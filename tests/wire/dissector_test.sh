#!/usr/bin/env bash
# dissector_test: the Wireshark dissector (tools/wireshark/vmrdma.lua) decodes
# every opcode of docs/wire-format.md in a real capture, with a good CRC and
# nothing malformed.
#
# In a network namespace of its own (re-executes itself under `unshare -n`),
# it makes a veth pair with MTU 1500, captures EtherType 0x88B5 on one end
# with dumpcap, runs opcode_tour on the pair (every opcode at least once),
# then decodes the capture with `tshark -X lua_script:vmrdma.lua` and checks:
# every opcode name of the spec appears, every vmrdma frame has "crc: good",
# no frame carries expert info (malformed, bad CRC, Lua error) and every
# captured frame was dissected as vmrdma. Prints a count per opcode.
#
# Usage: dissector_test.sh [vmrdma.lua] [opcode_tour] [wire-format.md]
# (Bazel passes all three.) Needs root (or CAP_SYS_ADMIN + CAP_NET_RAW) and
# tshark (scripts/deps.sh installs it). Without the privilege it fails with
# the reason, unless VMRDMA_SKIP_NET_TESTS=1, which makes it print SKIPPED.
set -euo pipefail

fail() {
    echo "dissector_test: FAIL: $*" >&2
    exit 1
}

# Absolute paths survive the re-exec and the cd below.
abs() { [ -e "$1" ] || fail "missing file: $1"; echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
LUA=$(abs "${1:-tools/wireshark/vmrdma.lua}")
TOUR=$(abs "${2:-bazel-bin/tests/wire/opcode_tour}")
SPEC=$(abs "${3:-docs/wire-format.md}")

command -v tshark >/dev/null || fail "tshark is not installed (scripts/deps.sh installs it: apt-get install tshark)"
command -v dumpcap >/dev/null || fail "dumpcap is not installed (it comes with tshark's wireshark-common)"
command -v ip >/dev/null || fail "iproute2's ip is not installed"

if [ -z "${IN_NETNS:-}" ]; then
    if ! why=$(unshare -n true 2>&1); then
        why="unshare -n failed: ${why:-permission denied} (this test needs root, or CAP_SYS_ADMIN and CAP_NET_RAW)"
        if [ "${VMRDMA_SKIP_NET_TESTS:-}" = 1 ]; then
            echo "SKIPPED network test: $why"
            exit 0
        fi
        fail "$why — set VMRDMA_SKIP_NET_TESTS=1 to skip this test instead"
    fi
    exec unshare -n env IN_NETNS=1 "$(abs "$0")" "$LUA" "$TOUR" "$SPEC"
fi

# --- inside the private network namespace ------------------------------------
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/dissector_test.XXXXXX")
cap_pid=""
cleanup() {
    if [ -n "$cap_pid" ]; then kill "$cap_pid" 2>/dev/null || true; wait "$cap_pid" 2>/dev/null || true; fi
    # Keep the capture for inspection when Bazel offers a place for it.
    if [ -n "${TEST_UNDECLARED_OUTPUTS_DIR:-}" ] && [ -f "$work/capture.pcapng" ]; then
        cp "$work/capture.pcapng" "$TEST_UNDECLARED_OUTPUTS_DIR/" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# The opcodes the spec names: rows of the "## Opcodes" table such as
# "| 0x11–0x14 | READ_RESP_FIRST / MIDDLE / LAST / ONLY |" expand to
# READ_RESP_FIRST READ_RESP_MIDDLE READ_RESP_LAST READ_RESP_ONLY.
mapfile -t expected < <(awk -F'|' '
    /^## / { in_ops = ($0 ~ /^## Opcodes/); next }
    in_ops && $2 ~ /0x[0-9A-Fa-f]/ {
        n = split($3, parts, "/")
        first = parts[1]; gsub(/[ \t]/, "", first)
        prefix = first; sub(/[A-Z]+$/, "", prefix)
        print first
        for (i = 2; i <= n; i++) { p = parts[i]; gsub(/[ \t]/, "", p); print prefix p }
    }' "$SPEC")
[ "${#expected[@]}" -ge 21 ] || fail "found only ${#expected[@]} opcodes in $SPEC's Opcodes table: ${expected[*]}"

ip link set lo up
ip link add vwa mtu 1500 type veth peer name vwb mtu 1500
ip link set vwa up
ip link set vwb up

# Capture on one end only: it sees a's transmissions and b's (as received),
# each frame once.
dumpcap -q -i vwa -f "ether proto 0x88b5" -w capture.pcapng >dumpcap.log 2>&1 &
cap_pid=$!
for _ in $(seq 100); do
    grep -q "Capturing on" dumpcap.log && break
    kill -0 "$cap_pid" 2>/dev/null || { cat dumpcap.log >&2; fail "dumpcap exited"; }
    sleep 0.1
done
grep -q "Capturing on" dumpcap.log || { cat dumpcap.log >&2; fail "dumpcap did not start capturing"; }
sleep 0.5

"$TOUR" vwa vwb || fail "opcode_tour failed (exit $?)"

sleep 0.5  # let the last frames reach the capture
kill -INT "$cap_pid"
wait "$cap_pid" || true
cap_pid=""
[ -s capture.pcapng ] || fail "empty capture"

captured=$(tshark -r capture.pcapng -T fields -e frame.number 2>/dev/null | wc -l)

# Decode. Lua load errors go to stderr: any "Lua" complaint fails the test.
tshark -r capture.pcapng -X lua_script:"$LUA" -Y vmrdma -T fields -E separator=/t -E occurrence=a \
    -e frame.number -e vmrdma.opname -e vmrdma.crc.status -e _ws.expert.message -e vmrdma.problem \
    -e _ws.col.Info >decoded.tsv 2>tshark.err || { cat tshark.err >&2; fail "tshark could not decode the capture"; }
if grep -iq "lua" tshark.err; then cat tshark.err >&2; fail "the Lua dissector reported errors"; fi

decoded=$(wc -l <decoded.tsv)
echo "dissector_test: $captured frames captured, $decoded decoded as vmrdma"
echo "dissector_test: first frames as tshark shows them:"
head -n 8 decoded.tsv | cut -f1,6 | sed 's/^/    /'

status=0
[ "$captured" -gt 0 ] || fail "nothing captured"
if [ "$decoded" -ne "$captured" ]; then
    echo "dissector_test: FAIL: only $decoded of $captured frames were dissected as vmrdma" >&2
    status=1
fi

bad_crc=$(awk -F'\t' '$3 != "good"' decoded.tsv)
if [ -n "$bad_crc" ]; then
    echo "dissector_test: FAIL: frames whose CRC is not good:" >&2
    echo "$bad_crc" | head -n 20 >&2
    status=1
fi
flagged=$(awk -F'\t' '$4 != "" || $5 != ""' decoded.tsv)
if [ -n "$flagged" ]; then
    echo "dissector_test: FAIL: frames marked malformed (expert info):" >&2
    echo "$flagged" | head -n 20 >&2
    status=1
fi

echo "dissector_test: frames per opcode:"
missing=()
for op in "${expected[@]}"; do
    n=$(awk -F'\t' -v op="$op" '$2 == op' decoded.tsv | wc -l)
    printf '    %-18s %6d\n' "$op" "$n"
    [ "$n" -gt 0 ] || missing+=("$op")
done
others=$(cut -f2 decoded.tsv | sort -u | grep -vxF -f <(printf '%s\n' "${expected[@]}") || true)
if [ -n "$others" ]; then
    echo "dissector_test: FAIL: opcodes not in the spec were decoded: $others" >&2
    status=1
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "dissector_test: FAIL: opcodes never decoded: ${missing[*]}" >&2
    status=1
fi

[ "$status" -eq 0 ] || exit 1

# --- the checks above can fail: damaged copies of a real frame are flagged ---
# Takes the first WRITE_ONLY frame (1-byte payload, 79 bytes) of the capture,
# writes damaged variants into a classic pcap (with od and printf only) and
# expects the dissector to report each one.
base_no=$(awk -F'\t' '$2 == "WRITE_ONLY" { print $1; exit }' decoded.tsv)
tshark -r capture.pcapng -Y "frame.number == $base_no" -F pcap -w base.pcap 2>/dev/null
read -r -a base < <(od -An -tx1 -v -j 40 base.pcap | tr -s ' \n' '  '; echo)
[ "${#base[@]}" -eq 79 ] || fail "self-check: expected a 79-byte WRITE_ONLY frame, got ${#base[@]} bytes"

le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
record() { # hex bytes... -> one pcap record on stdout
    local esc="" b
    for b in "$@"; do esc+="\\x$b"; done
    printf "$(le32 0)$(le32 0)$(le32 $#)$(le32 $#)$esc"
}
with() { # index value: the base frame with one byte replaced
    local f=("${base[@]}")
    f[$1]=$2
    echo "${f[@]}"
}
{
    printf '\xd4\xc3\xb2\xa1\x02\x00\x04\x00'"$(le32 0)$(le32 0)$(le32 65535)$(le32 1)"
    record "${base[@]}"                                         # 1: intact
    record $(with 78 "$(printf %02x $((0x${base[78]} ^ 0xff)))")  # 2: payload byte flipped
    record $(with 14 02)                                        # 3: version 2
    record $(with 15 7f)                                        # 4: opcode 0x7f
    record "${base[@]}" 00                                      # 5: one byte more than payload length
    record "${base[@]:0:70}"                                    # 6: too short
} >damaged.pcap
tshark -r damaged.pcap -X lua_script:"$LUA" -T fields -E separator=/t -E occurrence=a \
    -e frame.number -e vmrdma.crc.status -e vmrdma.problem -e _ws.expert.message \
    >damaged.tsv 2>>tshark.err || { cat tshark.err >&2; fail "tshark could not decode damaged.pcap"; }
expect_damage() { # frame-number regex-for-the-whole-line what
    local line
    line=$(awk -F'\t' -v n="$1" '$1 == n' damaged.tsv)
    if ! grep -Eq "$2" <<<"$line"; then
        echo "dissector_test: FAIL: self-check: frame $1 ($3) decoded as: $line" >&2
        status=1
    fi
}
expect_damage 1 '^1	good		$' "intact frame"
expect_damage 2 '	bad	.*Bad CRC32C' "payload byte flipped"
expect_damage 3 'Version 2 is not 1' "bad version"
expect_damage 4 'Unknown opcode 0x7f' "unknown opcode"
expect_damage 5 'Payload length 1, but the frame carries 2 bytes' "payload length mismatch"
expect_damage 6 'too short' "too short"
[ "$status" -eq 0 ] || { cat damaged.tsv >&2; exit 1; }
echo "dissector_test: self-check: damaged frames are flagged (bad CRC, version, opcode, length, too short)"

echo "dissector_test: PASS: all ${#expected[@]} opcodes decoded, $decoded frames with good CRC, none malformed"
