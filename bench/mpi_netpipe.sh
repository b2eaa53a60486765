#!/usr/bin/env bash
# NetPIPE over Open MPI (NPopenmpi, Debian's netpipe-openmpi), two ranks in
# two network namespaces joined by one veth pair, three ways in one run:
#   vmrdma   pml cm + mtl ofi + the vmrdma provider: eth: (the engine in each
#            rank, the default), or with --transport unix a frontend of a
#            vmrdmad in each namespace (unix:, MPI with no privilege)
#   ofi-tcp  pml cm + mtl ofi + libfabric's tcp provider (tcp;ofi_rxm)
#   ob1-tcp  pml ob1 + btl tcp (Open MPI's own TCP path)
# Prints latency (half round trip) and bandwidth at a few sizes and the
# ratios vmrdma/ob1-tcp and vmrdma/ofi-tcp (docs/benchmarks.md, docs/mpi.md).
#
#   bench/mpi_netpipe.sh [--mtu N] [--upper BYTES] [--transport eth|unix] [--out DIR]
#
# VMRDMA_* variables set when it runs (VMRDMA_FI_*, VMRDMA_ETH_RX; VMRDMA_DEVICE
# unless --transport unix, which sets it per namespace) reach the vmrdma ranks
# (docs/mpi.md, Environment), e.g. VMRDMA_FI_INTEGRITY=link bench/mpi_netpipe.sh.
#
# Needs root (namespaces, raw sockets), openmpi-bin, netpipe-openmpi,
# libfabric-bin. Builds the provider and vmrdmad with --config=release.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mtu=9000
upper=4194304
transport=eth
out=
while [ $# -gt 0 ]; do
    case "$1" in
    --mtu) mtu=$2; shift 2 ;;
    --upper) upper=$2; shift 2 ;;
    --transport) transport=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--mtu N] [--upper BYTES] [--transport eth|unix] [--out DIR]" >&2; exit 2 ;;
    esac
done
case "$transport" in
eth | unix) ;;
*) echo "$0: --transport: eth or unix, not '$transport'" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (namespaces, raw sockets)" >&2; exit 1; }
for tool in mpirun NPopenmpi fi_info; do
    command -v "$tool" >/dev/null || { echo "$0: $tool missing (scripts/deps.sh openmpi-bin netpipe-openmpi libfabric-bin)" >&2; exit 1; }
done

(cd "$root" && bazel build --config=release //fabric:libvmrdma-fi.so //vmrdmad:vmrdmad >/dev/null 2>&1) ||
    { echo "$0: bazel build --config=release //fabric:libvmrdma-fi.so //vmrdmad:vmrdmad failed" >&2; exit 1; }
work=$(mktemp -d)
[ -n "$out" ] || out=$work
mkdir -p "$out" "$work/prov"
# The release output itself: bazel-bin follows whichever build ran last.
bin=$(cd "$root" && bazel info --config=release bazel-bin 2>/dev/null)
cp "$bin/fabric/libvmrdma-fi.so" "$work/prov/"
cp "$bin/vmrdmad/vmrdmad" "$work/vmrdmad"
export FI_PROVIDER_PATH=$work/prov

ns_a=npa$$
ns_b=npb$$
# Both ends carry one name inside their namespaces, so FI_TCP_IFACE (which
# mpirun hands to both ranks) names each rank's own end.
if_name=vmnp0
if_a=vna$$
if_b=vnb$$
daemons=()
cleanup() {
    for pid in "${daemons[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${daemons[@]}"; do wait "$pid" 2>/dev/null || true; done
    ip netns del "$ns_a" 2>/dev/null || true
    ip netns del "$ns_b" 2>/dev/null || true
    rm -rf "$work/prov"
}
trap cleanup EXIT
ip netns add "$ns_a"
ip netns add "$ns_b"
ip link add "$if_a" mtu "$mtu" type veth peer name "$if_b" mtu "$mtu"
ip link set "$if_a" netns "$ns_a"
ip link set "$if_b" netns "$ns_b"
for side in "$ns_a $if_a 192.0.2.1" "$ns_b $if_b 192.0.2.2"; do
    set -- $side
    ip -n "$1" link set "$2" name "$if_name"
    ip -n "$1" link set lo up
    ip -n "$1" link set "$if_name" up
    ip -n "$1" addr add "$3/24" dev "$if_name"
done
sleep 1

# $1 name, the rest mpirun options. Writes $out/np-NAME.out (NetPIPE's
# table: bytes, Mbps, seconds per half round trip). --bind-to none: each
# namespace's orted would bind its rank to core 0, the same core.
run() {
    local name=$1
    shift
    local start=$(date +%s)
    echo "$name: NetPIPE 1 B to $upper B..." >&2
    ip netns exec "$ns_a" unshare --uts sh -c "hostname $ns_a; exec timeout 900 mpirun --allow-run-as-root -np 2 \
        --host $ns_a,$ns_b --mca plm_rsh_agent $root/tests/fabric/rsh_netns.sh \
        --mca oob_tcp_if_include 192.0.2.0/24 --bind-to none -x FI_PROVIDER_PATH $* \
        NPopenmpi -l 1 -u $upper -p 0 -o $out/np-$name.out" >"$out/np-$name.log" 2>&1 ||
        { tail -20 "$out/np-$name.log"; echo "$0: $name failed" >&2; exit 1; }
    echo "$name: $(($(date +%s) - start)) s" >&2
}
if [ "$transport" = unix ]; then
    # One vmrdmad per namespace (the driver domain of that "host"); each
    # rank is a frontend of its own namespace's daemon: the launcher's
    # VMRDMA_DEVICE for rank 0, rsh_netns.sh's pattern for the other.
    unset VMRDMA_DEVICE VMRDMA_DEVICE_PATTERN
    for ns in "$ns_a" "$ns_b"; do
        ip netns exec "$ns" "$work/vmrdmad" --device "eth:$if_name" --socket "$work/$ns.sock" \
            >"$out/vmrdmad-$ns.log" 2>&1 &
        daemons+=($!)
    done
    for _ in $(seq 50); do [ -S "$work/$ns_a.sock" ] && [ -S "$work/$ns_b.sock" ] && break; sleep 0.1; done
    [ -S "$work/$ns_a.sock" ] && [ -S "$work/$ns_b.sock" ] ||
        { tail "$out"/vmrdmad-*.log; echo "$0: vmrdmad did not start" >&2; exit 1; }
    export VMRDMA_DEVICE_PATTERN="unix:$work/%h.sock"
    echo "vmrdma: unix:, a frontend of the vmrdmad in its namespace (vmrdmad's defaults)" >&2
fi
provider_env=
for v in $(env | sed -n 's/^\(VMRDMA_[A-Z_]*\)=.*/\1/p'); do
    case "$v" in VMRDMA_DEVICE | VMRDMA_DEVICE_PATTERN) [ "$transport" = unix ] && continue ;; esac
    provider_env="$provider_env -x $v"
    echo "vmrdma: $v=${!v}" >&2
done
[ "$transport" = unix ] && export VMRDMA_DEVICE="unix:$work/$ns_a.sock"
run vmrdma --mca pml cm --mca mtl ofi --mca mtl_ofi_provider_include vmrdma --mca btl self $provider_env
unset VMRDMA_DEVICE
run ofi-tcp --mca pml cm --mca mtl ofi --mca mtl_ofi_provider_include "'tcp;ofi_rxm'" --mca btl self \
    -x FI_TCP_IFACE="$if_name"
run ob1-tcp --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include 192.0.2.0/24

# The NetPIPE point nearest each size.
python3 - "$out" <<'EOF'
import sys
out = sys.argv[1]
def load(name):
    rows = []
    for line in open(f"{out}/np-{name}.out"):
        f = line.split()
        if len(f) >= 3:
            rows.append((int(float(f[0])), float(f[1]), float(f[2])))
    return rows
paths = ["vmrdma", "ofi-tcp", "ob1-tcp"]
data = {p: load(p) for p in paths}
def at(p, size):
    return min(data[p], key=lambda r: abs(r[0] - size))
sizes = [1, 8, 64, 512, 4096, 16384, 65536, 262144, 1048576, 4194304]
print(f"{'bytes':>8} | {'latency us: vmrdma':>18} {'ofi-tcp':>8} {'ob1-tcp':>8} | "
      f"{'MB/s: vmrdma':>12} {'ofi-tcp':>8} {'ob1-tcp':>8} | {'bw vs ob1':>9} {'vs ofi':>7} | {'lat vs ob1':>10}")
for s in sizes:
    r = {p: at(p, s) for p in paths}
    if r["vmrdma"][0] != s:
        continue
    # MB/s (10^6 bytes) from bytes and seconds per half round trip.
    mb = {p: r[p][0] / r[p][2] / 1e6 for p in paths}
    us = {p: r[p][2] * 1e6 for p in paths}
    print(f"{s:>8} | {us['vmrdma']:>18.1f} {us['ofi-tcp']:>8.1f} {us['ob1-tcp']:>8.1f} | "
          f"{mb['vmrdma']:>12.1f} {mb['ofi-tcp']:>8.1f} {mb['ob1-tcp']:>8.1f} | "
          f"{mb['vmrdma'] / mb['ob1-tcp']:>8.2f}x {mb['vmrdma'] / mb['ofi-tcp']:>6.2f}x | "
          f"{us['vmrdma'] / us['ob1-tcp']:>9.2f}x")
EOF
echo "NetPIPE tables and logs: $out"
