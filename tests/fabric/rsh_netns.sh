#!/bin/sh
# plm_rsh_agent for mpirun across network namespaces: HOST is a namespace.
# VMRDMA_DEVICE_PATTERN (e.g. unix:/run/x/%h.sock) gives each host its own
# VMRDMA_DEVICE, with %h replaced by the host.
#
#   tests/fabric/rsh_netns.sh HOST COMMAND...   (mpirun --mca plm_rsh_agent)
case "${1:-}" in
-h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
'') echo "usage: $0 HOST COMMAND..." >&2; exit 2 ;;
esac
host=$1
shift
if [ -n "${VMRDMA_DEVICE_PATTERN:-}" ]; then
    VMRDMA_DEVICE=$(printf '%s' "$VMRDMA_DEVICE_PATTERN" | sed "s/%h/$host/g")
    export VMRDMA_DEVICE
fi
exec ip netns exec "$host" unshare --uts sh -c "hostname $host; exec $*"
