#!/usr/bin/env bash
# dissector_test: the Wireshark dissector (tools/wireshark/vmrdma.lua) decodes
# every opcode of docs/wire-format.md in a real capture, with a good CRC and
# nothing malformed.
#
# In a network namespace of its own (re-executes itself under `unshare -n`),
# it makes a veth pair with MTU 1500, captures EtherType 0x88B5 on one end
# with dumpcap, runs opcode_tour on the pair (every opcode at least once,
# then once more with link integrity, whose data frames are flagged LINK_FCS, and
# once with authenticated frames, flagged AUTH with an auth block),
# then decodes the capture with `tshark -X lua_script:vmrdma.lua` and checks:
# every opcode name of the spec appears (BUNDLE included: the tour posts
# small writes together, which the eth: device bundles), every vmrdma frame
# has "crc: good" (the frames inside bundles too, each on its own), every
# bundle's entries were all dissected, no frame carries expert info
# (malformed, bad CRC, Lua error) and every captured frame was dissected as
# vmrdma. Prints a count per opcode. Then damaged copies of a real frame and
# of a real bundle must be flagged.
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
# Again with both ends agreeing to link integrity: data frames flagged
# LINK_FCS, whose CRC covers the headers only, must decode as "crc: good" too.
"$TOUR" vwa vwb --integrity-link || fail "opcode_tour --integrity-link failed (exit $?)"
# And with authenticated frames: flagged AUTH, an auth block before the payload.
"$TOUR" vwa vwb --auth || fail "opcode_tour --auth failed (exit $?)"

sleep 0.5  # let the last frames reach the capture
kill -INT "$cap_pid"
wait "$cap_pid" || true
cap_pid=""
[ -s capture.pcapng ] || fail "empty capture"

captured=$(tshark -r capture.pcapng -T fields -e frame.number 2>/dev/null | wc -l)

# Decode. Lua load errors go to stderr: any "Lua" complaint fails the test.
tshark -r capture.pcapng -X lua_script:"$LUA" -Y vmrdma -T fields -E separator=/t -E occurrence=a \
    -e frame.number -e vmrdma.opname -e vmrdma.crc.status -e _ws.expert.message -e vmrdma.problem \
    -e _ws.col.Info -e vmrdma.bundle.count >decoded.tsv 2>tshark.err || { cat tshark.err >&2; fail "tshark could not decode the capture"; }
if grep -iq "lua" tshark.err; then cat tshark.err >&2; fail "the Lua dissector reported errors"; fi

link_fcs=$(tshark -r capture.pcapng -X lua_script:"$LUA" -Y "vmrdma.flags.link_fcs == 1" 2>/dev/null | wc -l)
echo "dissector_test: $link_fcs frames flagged LINK_FCS (header-only CRC)"
[ "$link_fcs" -gt 0 ] || fail "the --integrity-link tour put no LINK_FCS frame on the wire"
authed=$(tshark -r capture.pcapng -X lua_script:"$LUA" -Y "vmrdma.flags.auth == 1" 2>/dev/null | wc -l)
echo "dissector_test: $authed frames flagged AUTH (auth block, CRC over the headers and the block)"
[ "$authed" -gt 0 ] || fail "the --auth tour put no AUTH frame on the wire"

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

# A bundle's line lists its fields in tree order: opnames "BUNDLE,WRITE_ONLY,
# WRITE_ONLY,...", one CRC status per inner frame. frames.tsv has one row per
# vmrdma frame, lone or inner: capture frame number, opname, CRC status
# ("-" for the bundle itself, "none" when missing), "lone"/"inner"/"bundle".
# A line whose opnames do not add up (a bundle with fewer inner frames than
# its count, a bundle not first, several frames outside a bundle, CRC
# statuses left over) goes to odd.tsv.
awk -F'\t' -v OFS='\t' '
    {
        n = split($2, ops, ","); m = split($3, crcs, ",")
        bundle = (ops[1] == "BUNDLE")
        inner = 0; bundles = 0
        for (i = 1; i <= n; i++) {
            if (ops[i] == "BUNDLE") { bundles++; print $1, "BUNDLE", "-", "bundle"; continue }
            inner++
            print $1, ops[i], (inner <= m ? crcs[inner] : "none"), (bundle ? "inner" : "lone")
        }
        want = bundle ? $7 : 1
        if (bundles != bundle || inner != want || inner < 1 || m > inner)
            print $1 "\t" $2 "\t" $3 "\tcount " $7 > "odd.tsv"
    }' decoded.tsv >frames.tsv
touch odd.tsv
if [ -s odd.tsv ]; then
    echo "dissector_test: FAIL: frames whose bundle entries were not all dissected (or did not add up):" >&2
    head -n 20 odd.tsv >&2
    status=1
fi
nbundles=$(awk -F'\t' '$4 == "bundle"' frames.tsv | wc -l)
ninner=$(awk -F'\t' '$4 == "inner"' frames.tsv | wc -l)
nframes=$(awk -F'\t' '$4 != "bundle"' frames.tsv | wc -l)
echo "dissector_test: $nbundles bundles carrying $ninner frames; $nframes vmrdma frames in all"

bad_crc=$(awk -F'\t' '$4 != "bundle" && $3 != "good"' frames.tsv)
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

echo "dissector_test: frames per opcode (lone and inside bundles; BUNDLE: the bundles):"
missing=()
for op in "${expected[@]}"; do
    n=$(awk -F'\t' -v op="$op" '$2 == op' frames.tsv | wc -l)
    in_bundles=$(awk -F'\t' -v op="$op" '$2 == op && $4 == "inner"' frames.tsv | wc -l)
    if [ "$in_bundles" -gt 0 ]; then
        printf '    %-18s %6d  (%d in bundles)\n' "$op" "$n" "$in_bundles"
    else
        printf '    %-18s %6d\n' "$op" "$n"
    fi
    [ "$n" -gt 0 ] || missing+=("$op")
done
others=$(cut -f2 frames.tsv | sort -u | grep -vxF -f <(printf '%s\n' "${expected[@]}") || true)
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
# Takes the first WRITE_ONLY frame (1-byte payload, 87 bytes) and the first
# bundle of the capture, writes damaged variants into a classic pcap (with od
# and printf only) and expects the dissector to report each one.
base_no=$(awk -F'\t' '$2 == "WRITE_ONLY" { print $1; exit }' decoded.tsv)
tshark -r capture.pcapng -Y "frame.number == $base_no" -F pcap -w base.pcap 2>/dev/null
read -r -a base < <(od -An -tx1 -v -j 40 base.pcap | tr -s ' \n' '  '; echo)
[ "${#base[@]}" -eq 87 ] || fail "self-check: expected an 87-byte WRITE_ONLY frame, got ${#base[@]} bytes"

le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
record() { # hex bytes... -> one pcap record on stdout
    local esc="" b
    for b in "$@"; do esc+="\\x$b"; done
    printf '%b' "$(le32 0)$(le32 0)$(le32 $#)$(le32 $#)$esc"
}
with() { # index value: f = the base frame with one byte replaced
    f=("${base[@]}")
    f[$1]=$2
}
flip() { printf %02x $((0x$1 ^ 0xff)); }
hi() { printf %02x $(($1 >> 8)); }   # the bytes of a be16
lo() { printf %02x $(($1 & 255)); }

# The bundle: its header at 14 (count at 16), entry 1's length at 22, entry
# 1's frame at 24.
bundle_no=$(awk -F'\t' '$2 ~ /^BUNDLE,/ { print $1; exit }' decoded.tsv)
[ -n "$bundle_no" ] || fail "self-check: no bundle in the capture"
tshark -r capture.pcapng -Y "frame.number == $bundle_no" -F pcap -w bundle.pcap 2>/dev/null
read -r -a bundle < <(od -An -tx1 -v -j 40 bundle.pcap | tr -s ' \n' '  '; echo)
if [ "${#bundle[@]}" -lt 200 ] || [ "${bundle[15]}" != 60 ]; then
    fail "self-check: frame $bundle_no is not a bundle of two frames or more (${#bundle[@]} bytes)"
fi
count=$((0x${bundle[16]}${bundle[17]}))
len1=$((0x${bundle[22]}${bundle[23]}))
blen=${#bundle[@]}
bwith() { # index hex-bytes...: f = the bundle with bytes replaced from index on
    local i=$1 v
    shift
    f=("${bundle[@]}")
    for v in "$@"; do f[i]=$v; i=$((i + 1)); done
}
last1=$((24 + len1 - 1))  # entry 1's last byte
{
    printf '%b' '\xd4\xc3\xb2\xa1\x02\x00\x04\x00'"$(le32 0)$(le32 0)$(le32 65535)$(le32 1)"
    record "${base[@]}"                                      # 1: intact
    with 86 "$(flip "${base[86]}")"; record "${f[@]}"        # 2: payload byte flipped
    with 14 02; record "${f[@]}"                             # 3: version 2
    with 15 7f; record "${f[@]}"                             # 4: opcode 0x7f
    record "${base[@]}" 00                                   # 5: one byte more than payload length
    record "${base[@]:0:70}"                                 # 6: too short
    record "${bundle[@]}"                                    # 7: intact bundle
    bwith 16 "$(hi $((count + 1)))" "$(lo $((count + 1)))"
    record "${f[@]}"                                         # 8: count one too many
    bwith 22 "$(hi "$blen")" "$(lo "$blen")"; record "${f[@]}"  # 9: entry 1 runs past the end
    bwith 22 00 46; record "${f[@]}"                         # 10: entry 1 too short (70 bytes)
    bwith 21 01; record "${f[@]}"                            # 11: reserved bit
    bwith 0 "$(flip "${bundle[0]}")"; record "${f[@]}"       # 12: outer dst differs from inner
    bwith $last1 "$(flip "${bundle[$last1]}")"; record "${f[@]}"  # 13: entry 1's CRC bad
    record "${bundle[@]:0:14}" 03 60 00 01 00 00 00 00 "$(hi "$blen")" "$(lo "$blen")" \
        "${bundle[@]}"                                       # 14: a bundle in a bundle
    record "${bundle[@]}" 00                                 # 15: a byte after the last entry
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
expect_damage 3 'Version 2 is not 3' "bad version"
expect_damage 4 'Unknown opcode 0x7f' "unknown opcode"
expect_damage 5 'Payload length 1, but the frame carries 2 bytes' "payload length mismatch"
expect_damage 6 'too short' "too short"
expect_damage 7 '^7	good(,good)+		$' "intact bundle"
expect_damage 8 "	Bundle count $((count + 1)), but it holds $count entries" "bundle count one too many"
expect_damage 9 "	Entry 1: length $blen runs past the end of the bundle" "bundle entry runs past the end"
expect_damage 10 '	Entry 1: length 70 is too short for a frame' "bundle entry too short"
expect_damage 11 '	Bundle reserved field is 0x00000001, must be 0' "bundle reserved bit"
expect_damage 12 '^12	good(,good)+	Entry 1: its Ethernet header differs' "inner Ethernet header differs"
expect_damage 13 '^13	bad(,good)+	.*Bad CRC32C' "bad CRC of a bundle's first frame"
expect_damage 14 '	Entry 1 is a bundle inside a bundle' "nested bundle"
expect_damage 15 '	1 byte after the last entry' "byte after the last entry"
[ "$status" -eq 0 ] || { cat damaged.tsv >&2; exit 1; }
echo "dissector_test: self-check: damaged frames are flagged (bad CRC, version, opcode, length, too short)"
echo "dissector_test: self-check: damaged bundles are flagged (count, entry length, reserved, Ethernet header, inner CRC, nesting, trailing byte)"

echo "dissector_test: PASS: all ${#expected[@]} opcodes decoded, $nframes frames with good CRC ($ninner in $nbundles bundles), none malformed"
