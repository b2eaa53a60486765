#!/usr/bin/env bash
# Installs the Debian packages vmrdma needs, only those that are missing.
# Idempotent and silent when nothing is missing. Usage: scripts/deps.sh [extra-package...]
set -euo pipefail

packages=(
    bazel-bootstrap    # Bazel 4.2.3, offline
    g++
    liburing-dev
    libsodium-dev      # proto/crypto.h: handshake cookies, authenticated frames
    doctest-dev
    libxen-dev         # libxenevtchn, libxengnttab
    iproute2           # ip netns / veth for the integration tests
    socat              # the data mover demo's TCP baseline (tar | socat)
    tshark             # tests/wire:dissector_test (Wireshark dissector)
    libfabric-dev      # fabric/: the libfabric provider (headers, libfabric.so)
    libfabric-bin      # fi_info, fi_pingpong: tests/install, tests/fabric
    libxdp-dev         # bench/rawframe --mode xdp: AF_XDP sockets (xsk_*)
    libbpf-dev         # ... and its XDP program (bpf_prog_load, bpf_xdp_attach)
    ethtool            # bench/rawframe --threaded-napi (GRO on the receiving veth)
    "$@"
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "vmrdma: missing Debian packages: ${missing[*]}" >&2
    echo "vmrdma: run as root, or install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "vmrdma: installing ${missing[*]} (once)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
if printf '%s\n' "${missing[@]}" | grep -qx tshark; then
    # wireshark-common asks whether non-root users may capture: answer no.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "vmrdma: packages installed." >&2
