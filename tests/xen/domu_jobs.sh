# The guest's side of the two-host stage (tests/xen/dom0_two_host.sh),
# sourced by the domU's /init for VMRDMA_MODE=jobs.  dom0 writes one job a
# line into the guest's console ("ID JOB ARGS..."); the guest runs them in
# order and answers each with one line, "vmrdma-domu: job ID JOB: OK ..."
# or "vmrdma-domu: job ID JOB: FAIL: why", which dom0 reads back from the
# console log.  The guest's vmrdma server opens endpoint VMRDMA_EP, its
# clients VMRDMA_EP + 1 (a backend's endpoint ids are shared by its
# guests).  Jobs:
#   net IP [MTU]        netfront up with IP/24 on eth0 (the vif)
#   ping IP             IP answers within 20 s
#   vmrdma              frontend_kmod loaded and connected
#   serve NAME          vmrdma-check serve --name NAME in the background
#   tcp-serve           vmrdma-check tcp-serve in the background
#   check NAME          vmrdma-check client --name NAME: 3 rounds, every
#                       operation verified
#   measure NAME LENGTH SECONDS   rounds/s of write + read back (the answer
#                       ends with "(X rounds/s)")
#   tcp IP LENGTH SECONDS         the same rounds over TCP through the vif
#   forever NAME        an endless verified transfer in the background (its
#                       progress and its end go to the console)
#   flood NAME LENGTH DEPTH  RDMA writes of LENGTH to NAME, DEPTH in flight,
#                       in the background until stopped
#   stop                ends the background transfers (forever, flood)
#   poweroff            the end (the guest's RESULT line, then it is gone)
# shellcheck shell=sh

job_id=""
job_name=""
ok() { say "job $job_id $job_name: OK${*:+: $*}"; }
nok() { say "job $job_id $job_name: FAIL: $*"; }
# until_true TENTHS COMMAND...: polls COMMAND every 0.1 s.
until_true() {
    local n=$1
    shift
    while ! "$@"; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.1
    done
}
# client_job LOG ARGS...: vmrdma-check (client or tcp-client) in the
# foreground; its lines go to the console, its verdict to the answer.
client_job() {
    local log=$1 rc
    shift
    /vmrdma-check "$@" >"$log" 2>&1
    rc=$?
    sed 's/^/vmrdma-domu: /' "$log"
    if [ $rc -eq 0 ] && grep -q '^vmrdma-check: OK' "$log"; then
        ok "$(grep '^vmrdma-check: OK' "$log" | sed 's/^vmrdma-check: OK: //')"
    else
        nok "vmrdma-check exit $rc: $(grep '^vmrdma-check: FAIL' "$log" | sed 's/^vmrdma-check: FAIL: //')"
    fi
}
# background NAME ARGS...: vmrdma-check client in the background, its
# lines straight to the console (dom0 watches them for progress); when it
# ends the guest says "vmrdma-domu: NAME: ended (exit N)".
background() {
    local name=$1
    shift
    (
        /vmrdma-check client --device xen:/dev/vmrdma --ep "$client_ep" "$@" &
        echo $! >"/tmp/$name.pid"
        wait $!
        say "$name: ended (exit $?)"
    ) &
    ok "started"
}

job_net() {
    [ -n "$1" ] || { nok "net needs an address"; return; }
    insmod /mods/xen-netfront.ko 2>/dev/null
    until_true 100 test -e /sys/class/net/eth0 || { nok "no eth0 (netfront) in 10 s"; return; }
    ip addr add "$1/24" dev eth0 && ip link set dev eth0 mtu "${2:-1500}" && ip link set dev eth0 up ||
        { nok "cannot set up eth0"; return; }
    ok "eth0 $1, mac $(cat /sys/class/net/eth0/address), mtu $(cat /sys/class/net/eth0/mtu)"
}
job_ping() {
    local i=0
    while [ $i -lt 20 ]; do
        ping -c 1 -W 1 "$1" >/dev/null 2>&1 && { ok "$1 answers"; return; }
        i=$((i + 1))
    done
    nok "$1 did not answer in 20 s"
}
job_vmrdma() {
    if vmrdma_up; then ok "connected"; else nok "$fails"; fi
}
# started LOG WHAT: waits up to 20 s for a background server's READY.
started() {
    if until_true 200 grep -q '^READY' "$1"; then ok "$(grep '^READY' "$1")"; else nok "$2: no READY in 20 s: $(tail -n 1 "$1")"; fi
}
job_serve() {
    /vmrdma-check serve --device xen:/dev/vmrdma --ep "$VMRDMA_EP" --size 1M --name "$1" >/tmp/serve.log 2>/tmp/serve.err &
    started /tmp/serve.log serve
}
job_tcp_serve() {
    /vmrdma-check tcp-serve >/tmp/tcp-serve.log 2>&1 &
    started /tmp/tcp-serve.log tcp-serve
}
job_stop() {
    local b
    for b in forever flood; do
        [ -s "/tmp/$b.pid" ] || continue
        kill "$(cat "/tmp/$b.pid")" 2>/dev/null
        rm -f "/tmp/$b.pid"
    done
    ok
}

client_ep=$((VMRDMA_EP + 1))
stty -echo 2>/dev/null
say "jobs: ready"
while read -r job_id job_name a1 a2 a3; do
    case "$job_name" in
    net) job_net "$a1" "$a2" ;;
    ping) job_ping "$a1" ;;
    vmrdma) job_vmrdma ;;
    serve) job_serve "$a1" ;;
    tcp-serve) job_tcp_serve ;;
    check) client_job /tmp/check.log client --device xen:/dev/vmrdma --ep "$client_ep" --name "$a1" --rounds 3 ;;
    measure)
        client_job /tmp/measure.log client --device xen:/dev/vmrdma --ep "$client_ep" --name "$a1" \
            --length "$a2" --measure "$a3"
        ;;
    tcp) client_job /tmp/tcp.log tcp-client --host "$a1" --length "$a2" --measure "$a3" ;;
    forever) background forever --name "$a1" --forever ;;
    flood) background flood --name "$a1" --flood --length "$a2" --depth "$a3" ;;
    stop) job_stop ;;
    poweroff) ok; break ;;
    "") ;;
    *) nok "unknown job '$job_name'" ;;
    esac
done
