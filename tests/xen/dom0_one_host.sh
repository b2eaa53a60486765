# The one-host stage of tests/xen/run_xen_test.sh, sourced by dom0's /init
# (tests/xen/dom0_init.sh) once the toolstack runs:
#   1. a veth pair; backend_kmod bound to veth0; a vmrdma-check server on
#      the eth: transport on veth1 (the peer, a process in dom0);
#   2. guest "a": frontend_kmod + vmrdma-check client on xen:/dev/vmrdma
#      RDMA-writes, reads back and verifies through the backend; a forged
#      rkey must come back as "bad key", a SIGKILLed transfer must release
#      its page pins and the next process must succeed (domu_init.sh); then
#      it powers off and the backend must let go of it;
#   3. guest "b": an endless transfer, destroyed from dom0 mid-way; the
#      backend must clean up (grants unmapped, domain gone, a teardown
#      line), the peer must live on;
#   4. unload the backend;
#   5. guest "c": guest a's job again, with vmrdmad --xen (the user-space
#      daemon) as the backend instead of backend_kmod; it must let go of the
#      guest after poweroff (domain gone, "domN gone" in its log);
#   6. guest "d": guest b's endless transfer, destroyed, served by vmrdmad;
#      the domain must go away and vmrdmad must log the teardown and live
#      on;
#   7. guest "e": detached (vmrdma-xen-attach detach) while transferring
#      under vmrdmad: vmrdmad lets go, the guest's transfer fails with a
#      clear error, and the backend node stays gone; then vmrdmad must exit
#      0 on SIGTERM.
# shellcheck shell=sh

# boot_attached NAME MODE: a guest running domu_init.sh's MODE with the job
# in $job, given a vmrdma device and unpaused.  Sets $domid (empty if it
# could not be created: 1, after failing).
boot_attached() {
    domid=""
    make_guest "$1" "VMRDMA_MODE=$2 $job" || { fail "xl create $1"; return 1; }
    /vmrdma-xen-attach attach "$domid" | sed 's/^/vmrdma-xen: /'
    xl unpause "$1" || { fail "xl unpause $1"; return 1; }
}
# verify_in_guest NAME: a guest runs the verify job (the job in $job; see
# domu_init.sh), prints its result and powers off; it must say PASS and
# disappear.  Failures are recorded; returns 1 only if the guest could not
# be created, so the caller then skips checking its backend's teardown.
# Sets $domid.
verify_in_guest() {
    local guest=$1
    boot_attached "$guest" verify || return 1
    wait_for 240 log_has "$guest" "RESULT:" || fail "guest $guest printed no result in 240 s"
    show_guest "$guest"
    log_has "$guest" "RESULT: PASS" || fail "guest $guest: transfer not verified"
    wait_for 30 domain_gone "$guest" || fail "guest $guest still exists 30 s after powering off (grants still mapped?)"
}
# start_transfer NAME: a guest on an endless transfer (the job in $job),
# attached, unpaused and shown to make progress.  Sets $domid (empty if
# the guest could not be created); returns 1, after failing, if it did not
# get that far.
start_transfer() {
    local guest=$1
    boot_attached "$guest" forever || return 1
    # The console log appears only once xenconsoled has output to write.
    progress() {
        local n
        n=$(grep -c 'vmrdma-check: .*round' "$(guest_log "$guest")" 2>/dev/null)
        [ "${n:-0}" -ge 2 ]
    }
    wait_for 240 progress || { fail "guest $guest made no progress in 240 s"; return 1; }
}
# destroy_mid_transfer NAME: start_transfer, then xl destroy; the guest
# must disappear (Xen keeps a domain whose grants are still mapped).
# Returns 1 (after failing) if any step did not happen.  The caller checks
# its backend's own teardown.
destroy_mid_transfer() {
    local name=$1 rc=1
    if start_transfer "$name"; then
        [ ! -r /proc/vmrdma_back ] || say "backend while $name transfers: $(tr '\n' ' ' </proc/vmrdma_back)"
        xl destroy "$name"
        if wait_for 30 domain_gone "$name"; then
            rc=0
        else
            fail "guest $name still exists 30 s after xl destroy (grants still mapped?)"
        fi
    fi
    show_guest "$name" | tail -n 3
    [ -z "$domid" ] || /vmrdma-xen-attach detach "$domid" --wait 0 >/dev/null 2>&1
    return $rc
}
# stop_peer PID LOG: the peer (vmrdma-check serve) must exit within 10 s
# of SIGTERM; if not, it is killed, and its last lines tell why.
stop_peer() {
    kill -TERM "$1" 2>/dev/null
    if ! wait_for 10 exited "$1"; then
        fail "the peer did not exit 10 s after SIGTERM ($(awk '{ printf "state %s, %d s of CPU", $3, ($14 + $15) / 100 }' "/proc/$1/stat"))"
        kill -KILL "$1" 2>/dev/null
    fi
    wait "$1" 2>/dev/null
    [ -z "$fails" ] || tail -n 20 "$2" | sed 's/^/vmrdma-xen: [peer] /'
}
# exited PID: gone, or a zombie waiting for its parent's wait.
exited() { ! [ -e "/proc/$1" ] || grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

step "dom0: veth pair, backend_kmod on veth0, peer on eth:veth1"
/usr/sbin/ip link add veth0 type veth peer name veth1 && /usr/sbin/ip link set dev veth0 up &&
    /usr/sbin/ip link set dev veth1 up ||
    fail "veth pair"
insmod /vmrdma_back.ko netdev=veth0 || fail "insmod vmrdma_back.ko netdev=veth0"
dmesg | grep vmrdma | sed 's/^/vmrdma-xen: | /'
[ -r /proc/vmrdma_back ] || fail "no /proc/vmrdma_back"
/vmrdma-check serve --device eth:veth1 --ep 1 --size 1M --name vmrdma-check >/tmp/serve.log 2>&1 &
serve_pid=$!
wait_for 20 grep -q '^READY' /tmp/serve.log || fail "the peer did not get ready"
sed 's/^/vmrdma-xen: [peer] /' /tmp/serve.log
[ -z "$fails" ] || finish
ready=$(grep '^READY' /tmp/serve.log)
field() { echo "$ready" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
job="VMRDMA_PEER=$(field mac) VMRDMA_PEER_EP=$(field ep) VMRDMA_RKEY=$(field rkey) VMRDMA_SIZE=$(field size)"

step "guest a: RDMA write, read back, small reads and fetch_add through the backend"
if verify_in_guest a; then
    # It powered off: the backend must let go of it.
    wait_for 10 backend_idle || fail "backend still holds guest a: $(tr '\n' ' ' </proc/vmrdma_back)"
    /vmrdma-xen-attach detach "$domid" --wait 0 >/dev/null 2>&1
    # The guest's small reads in flight together leave the backend as
    # bundles and come back from the eth: peer as bundles, which the
    # backend's engine must have unpacked.
    sent=$(proc_value tx_bundles)
    bundles=$(proc_value rx_bundles)
    say "backend sent ${sent:-no} and received ${bundles:-no} bundle(s) of small frames"
    [ "${sent:-0}" -gt 0 ] || fail "backend_kmod sent no bundles"
    [ "${bundles:-0}" -gt 0 ] || fail "backend_kmod received no bundles"
fi

step "guest b: destroyed in the middle of a transfer"
if destroy_mid_transfer b; then
    wait_for 10 backend_idle || fail "backend still holds guest b: $(tr '\n' ' ' </proc/vmrdma_back)"
    dmesg | grep -q "vmrdma_back: frontend dom$domid gone" || fail "no teardown line for dom$domid"
fi
kill -0 "$serve_pid" 2>/dev/null || fail "the peer process died"
say "backend after both guests: $(tr '\n' ' ' </proc/vmrdma_back)"

step "unload"
stop_peer "$serve_pid" /tmp/serve.log
rmmod vmrdma_back || fail "rmmod vmrdma_back"
dmesg | grep vmrdma | sed 's/^/vmrdma-xen: | /'

step "guest c: the same transfer served by vmrdmad --xen"
# veth0 is free again: the user-space daemon is the backend now, the guest
# (frontend_kmod) unchanged.  A fresh peer, since the first one is gone.
/vmrdma-check serve --device eth:veth1 --ep 1 --size 1M --name vmrdma-check >/tmp/serve2.log 2>&1 &
serve_pid=$!
/vmrdmad --device eth:veth0 --xen >/tmp/vmrdmad.log 2>&1 &
vmrdmad_pid=$!
wait_for 20 grep -q '^READY' /tmp/serve2.log || fail "the second peer did not get ready"
wait_for 20 grep -q 'Xen backend: serving' /tmp/vmrdmad.log || fail "vmrdmad --xen did not start"
if [ -z "$fails" ]; then
    ready=$(grep '^READY' /tmp/serve2.log)
    job="VMRDMA_PEER=$(field mac) VMRDMA_PEER_EP=$(field ep) VMRDMA_RKEY=$(field rkey) VMRDMA_SIZE=$(field size)"
    if verify_in_guest c; then
        wait_for 10 grep -q "dom$domid gone" /tmp/vmrdmad.log || fail "vmrdmad did not tear dom$domid down"
        /vmrdma-xen-attach detach "$domid" --wait 0 >/dev/null 2>&1
    fi
    step "guest d: destroyed in the middle of a transfer served by vmrdmad --xen"
    if destroy_mid_transfer d; then
        wait_for 10 grep -q "dom$domid gone" /tmp/vmrdmad.log || fail "vmrdmad did not tear dom$domid down"
    fi
    step "guest e: detached while transferring under vmrdmad --xen"
    if start_transfer e; then
        e=$domid
        /vmrdma-xen-attach detach "$e" --wait 10 | sed 's/^/vmrdma-xen: /'
        wait_for 10 grep -q "dom$e gone" /tmp/vmrdmad.log || fail "vmrdmad did not let go of detached dom$e"
        # The guest's transfer fails with a clear error and it powers off;
        # the device node must stay gone (a stale one written back by the
        # backend would refuse the next attach).
        wait_for 30 domain_gone e || fail "guest e still exists 30 s after its device was detached"
        /vmrdma-xen-attach status | grep -q "^$e " && fail "dom$e's backend node came back after detach"
    fi
    show_guest e | grep -v '^.*| \[' | tail -n 3
    xl destroy e 2>/dev/null
    kill -0 "$vmrdmad_pid" 2>/dev/null || fail "vmrdmad died"
fi
kill -TERM "$vmrdmad_pid" 2>/dev/null
wait "$vmrdmad_pid"
vrc=$?
sed 's/^/vmrdma-xen: [vmrdmad] /' /tmp/vmrdmad.log
[ "$vrc" = 0 ] || fail "vmrdmad --xen exited $vrc after SIGTERM"
stop_peer "$serve_pid" /tmp/serve2.log
