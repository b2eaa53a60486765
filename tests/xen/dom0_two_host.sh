# The two-host stage of tests/xen/run_xen_test.sh, sourced by dom0's /init
# (tests/xen/dom0_init.sh) on each of two Xen hosts (VMRDMA_XEN_HOST a or
# b) once the toolstack runs.  The hosts are joined by a virtio-net link; each
# dom0 bridges it with its guests' vifs on br0 (10.99.0.0/24), and the two
# dom0s tell each other how far they are over it: each serves the keys it
# has reached from /www with busybox httpd, and waits for the other's with
# wget ("publish" and "await_peer" below).  Guests take their jobs from
# their console (tests/xen/domu_jobs.sh).
# shellcheck shell=sh

host=$VMRDMA_XEN_HOST
case "$host" in
a) peer=b my_ip=10.99.0.1 peer_ip=10.99.0.2 guest_net=10.99.0.1 ;;
b) peer=a my_ip=10.99.0.2 peer_ip=10.99.0.1 guest_net=10.99.0.2 ;;
*)
    fail "VMRDMA_XEN_HOST must be a or b, not '$host'"
    finish
    ;;
esac
HOST=$(echo "$host" | tr a-z A-Z)
# Jumbo frames on the link, the bridge and the vifs: both paths compared
# (vmrdma's frames, TCP's segments through netfront) use them.  At MTU 1500
# one connection's window (256 frames) is 357 KiB, less than this
# emulated link's round trip needs, and the work per byte triples.
mtu=9000
# busybox runs its own applets before PATH: iproute2's by their path.
ip() { /usr/sbin/ip "$@"; }
tc() { /usr/sbin/tc "$@"; }
PEER=$(echo "$peer" | tr a-z A-Z)

# --- the dom0s' keys ---
# publish KEY [VALUE]: the peer sees KEY (with VALUE) from now on.
publish() {
    echo "${2:-}" >"/www/$1.tmp" && mv "/www/$1.tmp" "/www/$1"
}
# (busybox 1.35's wget crashes on -T: timeout bounds it instead)
peer_has() { timeout 3 wget -q -O "/tmp/peer.$1" "http://$peer_ip:8000/$1" 2>/dev/null; }
# await_peer SECONDS KEY: waits for the peer's KEY and sets $peer_value to
# its value; 1 (after failing) if it does not come, or if the peer failed
# first.
await_peer() {
    local end=$(($(now) + $1))
    while ! peer_has "$2"; do
        if peer_has failed; then
            fail "host $PEER failed while host $HOST waited for its '$2': $(cat /tmp/peer.failed)"
            return 1
        fi
        if [ "$(now)" -ge "$end" ]; then
            fail "host $PEER did not reach '$2' in $1 s"
            return 1
        fi
        sleep 0.5
    done
    peer_value=$(cat "/tmp/peer.$2")
}
# Before powering off: say how it went, and wait a little for the peer to
# say so too (its keys vanish with it).
finish_hook() {
    local d st
    for d in eth0 br0; do
        st=/sys/class/net/$d/statistics
        [ -d "$st" ] && say "link $d: sent $(cat $st/tx_packets) frames ($(cat $st/tx_dropped) dropped), received $(cat $st/rx_packets) ($(cat $st/rx_dropped) dropped)"
    done
    [ -r /proc/vmrdma_back ] && say "backend: $(grep -v '^frontend ' /proc/vmrdma_back | tr '\n' ' ')"
    if [ -n "$fails" ]; then publish failed "$fails"; else publish finished; fi
    [ -d /www ] && wait_for 60 peer_done
}
# Done: it said how it went, or it is gone already (its keys, "up"
# included, vanish only when it powers off, after saying so: one host
# seeing the other's "finished" and powering off before the other saw its
# own cost the other the whole 60 s).
peer_done() { peer_has finished || peer_has failed || ! peer_has up; }
# bail: stop here after a failure the rest depends on.
bail() { [ -z "$fails" ] || finish; }

# --- guests ---
# console_tty NAME: the dom0 end of the guest's console (a pty).
console_tty() { xenstore-read "/local/domain/$(xl domid "$1")/console/tty" 2>/dev/null; }
next_job=0
# job NAME SECONDS JOB ARGS...: runs a job in the guest and waits for its
# answer (tests/xen/domu_jobs.sh); 0 if it says OK, else 1 after failing.
# The answer's text is left in $answer.
job() {
    local name=$1 secs=$2 tty id line t0
    shift 2
    t0=$(now)
    next_job=$((next_job + 1))
    id=$next_job
    tty=$(console_tty "$name")
    [ -n "$tty" ] || { fail "guest $name has no console"; return 1; }
    echo "$id $*" >"$tty"
    if ! wait_for "$secs" answered "$name" "job $id $1: "; then
        fail "guest $name: job '$*' did not end in $secs s (last seen: $(tail -n 1 "$(guest_log "$name")" | tr -d '\r'))"
        return 1
    fi
    line=$(grep "job $id $1: " "$(guest_log "$name")" | tail -n 1 | tr -d '\r')
    answer=${line#*: OK}
    answer=${answer#: }
    say "[$name] ${line#vmrdma-domu: } [$(($(now) - t0)) s]"
    case "$line" in *": OK"*) return 0 ;; esac
    fail "guest $name: ${line#vmrdma-domu: }"
    return 1
}
answered() { grep -Eq "$2(OK|FAIL)" "$(guest_log "$1")" 2>/dev/null; }
# progressed NAME forever|flood SECONDS: the guest's background transfer
# printed two lines of progress within SECONDS; 1 (after failing) if not.
progressed() {
    local pattern="vmrdma-check: round "
    [ "$2" = flood ] && pattern="vmrdma-check: flood: "
    if ! wait_for "$3" lines_at_least "$1" "$pattern" 2; then
        fail "guest $1: its $2 made no progress in $3 s (last seen: $(tail -n 1 "$(guest_log "$1")" | tr -d '\r'))"
        return 1
    fi
}
lines_at_least() { local n; n=$(grep -c "$2" "$(guest_log "$1")" 2>/dev/null); [ "${n:-0}" -ge "$3" ]; }
# create_guest NAME IP [ATTACH-ARGS...]: a guest with a vif on br0, taking
# jobs, unpaused; with ATTACH-ARGS (or "-" for none) also a vmrdma device
# (vmrdma-xen-attach attach DOMID ATTACH-ARGS).  Its domid goes to
# /tmp/NAME.domid.  A backend's endpoint ids are shared by its guests: the
# guest at 10.99.0.xN uses 2N (its server) and 2N+1 (its clients).
create_guest() {
    local name=$1 ip=$2 mac
    shift 2
    mac=$(printf '00:16:3e:99:00:%02x' "${ip##*.}")
    make_guest "$name" "VMRDMA_MODE=jobs VMRDMA_EP=$((2 * ${ip##*.} % 20))" \
        "vif = [ 'mac=$mac,bridge=br0,script=/etc/xen/scripts/vif-bridge-test' ]" ||
        { fail "xl create $name"; return 1; }
    echo "$domid" >"/tmp/$name.domid"
    echo "$ip" >"/tmp/$name.ip"
    if [ $# -gt 0 ]; then
        [ "$1" = - ] && shift
        /vmrdma-xen-attach attach "$domid" "$@" | sed 's/^/vmrdma-xen: /'
    fi
    xl unpause "$name"
}
domid_of() { cat "/tmp/$1.domid"; }
# guest_ready NAME: the guest created by create_guest takes jobs and has
# its address on the vif.
guest_ready() {
    wait_for 120 log_has "$1" "jobs: ready" || { fail "guest $1 did not come up in 120 s"; return 1; }
    job "$1" 30 net "$(cat "/tmp/$1.ip")" "$mtu" || return 1
    # netback takes a vif's MTU above 1500 only once netfront has connected
    # (with scatter-gather).
    ip link set dev "vif$(domid_of "$1").0" mtu "$mtu" || { fail "vif of $1: MTU $mtu refused"; return 1; }
}
start_guest() { create_guest "$@" && guest_ready "$1"; }

step "host $HOST: virtio-net link, bridge br0 ($my_ip), the dom0s' keys"
# Plain FIFOs: fq_codel (the default) drops frames whose wait passes 5 ms,
# which under TCG is most of them in a burst, and the resends would skew
# both paths' rounds/s and the weights' shares.
echo pfifo_fast >/proc/sys/net/core/default_qdisc
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net \
    llc stp bridge xen-netback sch_tbf; do
    insmod "/mods/$m.ko" || fail "insmod $m"
done
wait_for 10 test -e /sys/class/net/eth0 || fail "no eth0 (virtio-net) in 10 s"
bail
mac=$(cat /sys/class/net/eth0/address)
# br0 keeps eth0's MAC (a bridge otherwise takes its lowest port's, which
# would change as vifs come and go): the backend bound to it keeps its address.
ip link set eth0 mtu "$mtu" && ip link add br0 type bridge && ip link set br0 address "$mac" &&
    ip link set br0 mtu "$mtu" && ip link set eth0 master br0 && ip link set eth0 up && ip link set br0 up &&
    ip addr add "$my_ip/24" dev br0 ||
    fail "bridge br0 at MTU $mtu"
mkdir -p /www
httpd -p 8000 -h /www || fail "httpd"
bail
publish up "$mac"
if ! await_peer 120 up; then
    { ip -s link; ip addr; dmesg | tail -n 20; } | sed 's/^/vmrdma-xen: | /'
    finish
fi
say "host $PEER's dom0 is up (NIC $peer_value)"

if [ "$VMRDMA_XEN_STAGE" = two-host-boot ]; then
    step "host $HOST: an empty guest with a vif"
    if start_guest "boot$host" "${guest_net}1"; then
        job "boot$host" 30 ping "$peer_ip"
        job "boot$host" 30 poweroff
    fi
    return 0
fi

# --- the vmrdma flow ---
# What host A's closing SUMMARY line says, piece by piece.
summary=""
note() { summary="$summary${summary:+; }$*"; }
# gone NAME: the guest's domain disappeared (Xen keeps one whose grants are
# still mapped) within 30 s.
gone() {
    local t0
    t0=$(now)
    wait_for 30 domain_gone "$1" || { fail "guest $1 still exists 30 s after it stopped (grants still mapped?)"; return 1; }
    say "guest $1 is gone [$(($(now) - t0)) s]"
}
# frontend_bytes DOMID: bytes its endpoints sent, from /proc/vmrdma_back.
frontend_bytes() { awk -v d="dom$1" '$1 == "frontend" && $2 == d { print $8 }' /proc/vmrdma_back; }

# Admission by weight shares inflight_bytes among the guests that send
# (proto/service.h).  It is set so that the weight-3 guest's share (3/4 of
# it, 1.5 MiB) stays below what one connection may have unacknowledged
# (256 frames of MTU 9000, about 2.2 MiB): a share the window would cut
# anyway is no share.  The flooders write 64 KiB at a time, so 512 KiB and
# 1.5 MiB are whole numbers of writes.
budget=2097152
# The engine's first retransmission timeout is 20 ms; here a round trip is
# longer (TCG, and in the weights step 2 MiB queued at 200 Mbit/s is 80 ms):
# with 20 ms the weights step saw 33 timeouts in 10 s, each shrinking a
# window, and 0.38 instead of 0.75.  300 ms: none.
rto_us=300000
step "host $HOST: backend_kmod on br0"
insmod /vmrdma_back.ko netdev=br0 inflight_bytes=$budget rto_us=$rto_us ||
    fail "insmod vmrdma_back.ko netdev=br0 inflight_bytes=$budget rto_us=$rto_us"
dmesg | grep 'vmrdma_back: serving' | sed 's/^/vmrdma-xen: | /'
bail

# Every guest of the stage boots now, at once, while the first ones work:
# host A's a1 (the peer of b1), a2 and a3 (the weights 1 and 3); host B's
# b1 and b2 (b2 gets its vmrdma device from vmrdmad later).
step "host $HOST: its guests boot"
if [ "$host" = a ]; then
    create_guest a1 "${guest_net}1" - && create_guest a2 "${guest_net}2" --weight 1 &&
        create_guest a3 "${guest_net}3" --weight 3 || finish
else
    create_guest b1 "${guest_net}1" - && create_guest b2 "${guest_net}2" || finish
fi

me=${host}1
them=${peer}1
step "guest $me <-> guest $them: write, read, send/recv, fetch_add, compare_swap, both ways"
guest_ready "$me" && job "$me" 30 vmrdma && job "$me" 30 serve "guest-$me" || finish
[ "$host" = a ] || job "$me" 30 tcp-serve || finish
publish serving
await_peer 240 serving || finish
job "$me" 120 check "guest-$them" || finish
publish checked
await_peer 240 checked || finish
[ "$host" = a ] && note "guest a1 <-> guest b1: RDMA write, read, tagged send/recv, fetch_add and compare_swap verified both ways"

step "rounds/s from guest a1 to guest b1: vmrdma (backend_kmod both ends) beside TCP (netfront/netback)"
if [ "$host" = a ]; then
    table=""
    for length in 4K 64K 512K; do
        job a1 60 measure guest-b1 "$length" 3 || break
        rdma=$(echo "$answer" | sed -n 's/.*(\([0-9.]*\) rounds\/s.*/\1/p')
        job a1 60 tcp 10.99.0.21 "$length" 3 || break
        tcp=$(echo "$answer" | sed -n 's/.*(\([0-9.]*\) rounds\/s.*/\1/p')
        say "ROUNDS: $length: vmrdma $rdma rounds/s, TCP $tcp rounds/s"
        table="$table${table:+, }$length $rdma vs $tcp"
    done
    [ -z "$table" ] || note "rounds/s vmrdma vs TCP through netfront: $table"
    publish measured
    bail
else
    await_peer 240 measured || finish
fi

step "weights 1:3: guests a2 and a3 of host A flood guest b1 at once"
if [ "$host" = a ]; then
    # The NIC is what the guests contend for, as on a real host: shaped to
    # 200 Mbit/s here, below what dom0 and the guests can produce under
    # TCG (about 900 Mbit/s of writes), so that the backend's admission
    # decides the shares, not which guest's vCPU Xen ran last.  The queue
    # holds more than the budget: nothing is dropped.
    tc qdisc replace dev eth0 root tbf rate 200mbit burst 64kb limit 8mb ||
        fail "tc qdisc replace dev eth0 root tbf"
    guest_ready a2 && guest_ready a3 && job a2 30 vmrdma && job a3 30 vmrdma &&
        job a2 30 flood guest-b1 64K 60 && job a3 30 flood guest-b1 64K 60 &&
        progressed a2 flood 60 && progressed a3 flood 60 || finish
    sleep 2 # both backlogged
    d2=$(domid_of a2) d3=$(domid_of a3)
    x2=$(frontend_bytes "$d2") x3=$(frontend_bytes "$d3") r0=$(proc_value retransmits) t0=$(proc_value timeouts)
    sleep 10
    y2=$(frontend_bytes "$d2") y3=$(frontend_bytes "$d3") r1=$(proc_value retransmits) t1=$(proc_value timeouts)
    grep '^frontend' /proc/vmrdma_back | sed 's/^/vmrdma-xen: | /'
    grep 'flood:' "$(guest_log a2)" | tail -n 12 | sed 's/^/vmrdma-xen: [a2] /'
    grep 'flood:' "$(guest_log a3)" | tail -n 12 | sed 's/^/vmrdma-xen: [a3] /'
    share=$(awk -v a="$((y2 - x2))" -v b="$((y3 - x3))" 'BEGIN { if (a + b > 0) printf "%.3f", b / (a + b); else print "none" }')
    say "SHARES: weight 1: $((y2 - x2)) bytes, weight 3: $((y3 - x3)) bytes in 10 s ($((r1 - r0)) frames resent, $((t1 - t0)) timeouts); share of weight 3: $share (ideal 0.750)"
    # Within +-10 % of 1:3: weight 3 moves 0.75 of the bytes, +-0.075.
    awk -v s="$share" 'BEGIN { exit !(s + 0 >= 0.675 && s + 0 <= 0.825) }' ||
        fail "weights 1:3 gave the weight-3 guest $share of the bytes, not 0.75 +-10 %"
    note "weights 1:3 gave the weight-3 guest $share of the bytes"
    job a2 30 stop && job a3 30 stop
    tc qdisc replace dev eth0 root pfifo_fast || fail "tc qdisc replace dev eth0 root pfifo_fast"
    job a2 30 poweroff && gone a2
    publish weighted
    bail
else
    await_peer 240 weighted || finish
fi

step "guest a1 destroyed while guest b1 transfers into it"
if [ "$host" = a ]; then
    await_peer 120 transferring || finish
    say "backend while b1 writes into a1: $(tr '\n' ' ' </proc/vmrdma_back)"
    d1=$(domid_of a1)
    xl destroy a1
    publish destroyed
    if gone a1; then
        wait_for 10 sh -c "! grep -q '^frontend dom$d1 ' /proc/vmrdma_back" || fail "backend still holds dom$d1"
        dmesg | grep -q "vmrdma_back: frontend dom$d1 gone" || fail "no teardown line for dom$d1"
        dmesg | grep "vmrdma_back: frontend dom$d1 gone" | sed 's/^/vmrdma-xen: | /'
    fi
    await_peer 120 saw_peer_gone || finish
    note "guest a1 destroyed mid-transfer: guest b1 failed with peer_gone after $peer_value s, host A let go of every grant"
else
    job b1 30 forever guest-a1 && progressed b1 forever 60 || finish
    publish transferring
    await_peer 120 destroyed || finish
    t0=$(now)
    if wait_for 30 log_has b1 "forever: ended"; then
        took=$(($(now) - t0))
        line=$(grep '^vmrdma-check: FAIL' "$(guest_log b1)" | tail -n 1 | tr -d '\r')
        say "[b1] ${line:-no FAIL line} ($took s after host A destroyed a1)"
        case "$line" in *"[peer_gone]"*) ;; *) fail "guest b1's transfer did not fail with peer_gone: $line" ;; esac
        publish saw_peer_gone "$took"
    else
        fail "guest b1's transfer into the destroyed guest a1 did not fail within 30 s"
    fi
    bail
fi

step "host B's backend is vmrdmad --xen now: guest a3 (backend_kmod) <-> guest b2 (vmrdmad)"
if [ "$host" = b ]; then
    job b1 30 poweroff && gone b1
    wait_for 10 backend_idle || fail "backend still holds guest b1: $(tr '\n' ' ' </proc/vmrdma_back)"
    rmmod vmrdma_back || fail "rmmod vmrdma_back"
    /vmrdmad --device eth:br0 --xen >/tmp/vmrdmad.log 2>&1 &
    vmrdmad_pid=$!
    wait_for 20 grep -q 'Xen backend: serving' /tmp/vmrdmad.log || fail "vmrdmad --xen did not start"
    bail
    me=b2 them=a3
else
    job a3 30 serve guest-a3 || finish
    me=a3 them=b2
fi
if [ "$host" = b ]; then
    /vmrdma-xen-attach attach "$(domid_of b2)" | sed 's/^/vmrdma-xen: /'
    guest_ready b2 && job b2 30 vmrdma && job b2 30 serve guest-b2 || finish
fi
publish serving2
await_peer 240 serving2 || finish
job "$me" 120 check "guest-$them" || finish
publish checked2
await_peer 240 checked2 || finish
job "$me" 30 poweroff && gone "$me"
if [ "$host" = a ]; then
    wait_for 10 backend_idle || fail "backend still holds guests: $(tr '\n' ' ' </proc/vmrdma_back)"
    say "backend at the end: $(tr '\n' ' ' </proc/vmrdma_back)"
    rmmod vmrdma_back || fail "rmmod vmrdma_back"
    note "then host B's backend was vmrdmad --xen and guest a3 (backend_kmod) and guest b2 (vmrdmad) verified every operation both ways; host A's dom0 stayed clean"
    [ -n "$fails" ] || say "SUMMARY: $summary"
else
    wait_for 10 grep -q "dom$(domid_of b2) gone" /tmp/vmrdmad.log || fail "vmrdmad did not tear dom$(domid_of b2) down"
    kill -TERM "$vmrdmad_pid"
    wait "$vmrdmad_pid"
    vrc=$?
    sed 's/^/vmrdma-xen: [vmrdmad] /' /tmp/vmrdmad.log
    [ "$vrc" = 0 ] || fail "vmrdmad --xen exited $vrc after SIGTERM"
fi
