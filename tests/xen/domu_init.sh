#!/bin/busybox sh
# /init of the test domU (tests/xen/run_xen_test.sh).  dom0 passes the job
# on the kernel command line; Linux hands unknown NAME=VALUE words to init
# as environment variables: VMRDMA_MODE (boot | verify | forever | jobs)
# and, for verify/forever, VMRDMA_PEER (MAC), VMRDMA_PEER_EP, VMRDMA_RKEY,
# VMRDMA_SIZE.  jobs (the two-host stage) takes its jobs from the console
# (tests/xen/domu_jobs.sh).  Everything printed lands in dom0's console log of this
# guest; the last line is "vmrdma-domu: RESULT: PASS" or "... FAIL (why)".
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp
say() { echo "vmrdma-domu: $*"; }
fails=""
fail() { fails="$fails${fails:+; }$*"; }
finish() {
    dmesg | grep -E 'WARNING|BUG|Oops|Call Trace' >/tmp/bad.log
    if [ -s /tmp/bad.log ]; then
        sed 's/^/vmrdma-domu: ! /' /tmp/bad.log
        fail "$(wc -l </tmp/bad.log) WARNING/BUG/Oops line(s) in the guest's dmesg"
    fi
    if [ -z "$fails" ]; then say "RESULT: PASS"; else say "RESULT: FAIL ($fails)"; fi
    sync
    poweroff -f
}
say "guest kernel $(uname -r), mode ${VMRDMA_MODE:-unset}"
[ "$VMRDMA_MODE" = boot ] && finish

# vmrdma_up: loads frontend_kmod and waits for the device dom0 attached
# before unpausing us; 1 (after failing, with the guest's log) if it does
# not connect.
vmrdma_up() {
    local state="" i=0
    if ! insmod /vmrdma_front.ko; then
        fail "insmod vmrdma_front.ko exit $?"
        return 1
    fi
    while [ $i -lt 100 ]; do
        state=$(cat /sys/bus/xen/devices/vmrdma-0/state 2>/dev/null)
        [ "$state" = Connected ] && [ -c /dev/vmrdma ] && break
        sleep 0.1
        i=$((i + 1))
    done
    say "xenbus state '${state:-absent}' after $((i / 10)).$((i % 10)) s"
    if [ "$state" != Connected ]; then
        fail "the vmrdma device did not connect"
        dmesg | tail -n 20 | sed 's/^/vmrdma-domu: | /'
        return 1
    fi
    dmesg | grep vmrdma | sed 's/^/vmrdma-domu: | /'
}
if [ "$VMRDMA_MODE" = jobs ]; then
    # shellcheck source=domu_jobs.sh
    . /domu_jobs.sh
    finish
fi
vmrdma_up || finish

args="--device xen:/dev/vmrdma --peer $VMRDMA_PEER --peer-ep $VMRDMA_PEER_EP --rkey $VMRDMA_RKEY --size $VMRDMA_SIZE"
case "$VMRDMA_MODE" in
verify)
    # shellcheck disable=SC2086  # word splitting wanted
    /vmrdma-check client $args --rounds 3 >/tmp/check.log 2>&1
    rc=$?
    sed 's/^/vmrdma-domu: /' /tmp/check.log
    [ $rc -eq 0 ] || fail "vmrdma-check exit $rc"
    grep -q '^vmrdma-check: OK' /tmp/check.log || fail "no 'vmrdma-check: OK' line"
    # A forged key: the peer refuses it, and the refusal must come back
    # through backend and frontend as a clear error, not a hang.
    forged=$(printf '0x%x' $(( VMRDMA_RKEY ^ 0x5a5a00 )))
    # shellcheck disable=SC2086
    /vmrdma-check client ${args%--rkey*} --rkey "$forged" --size "$VMRDMA_SIZE" --rounds 1 >/tmp/forged.log 2>&1
    rc=$?
    sed 's/^/vmrdma-domu: [forged key] /' /tmp/forged.log
    [ $rc -eq 1 ] || fail "a forged rkey gave exit $rc, not 1"
    grep -qi 'bad key' /tmp/forged.log || fail "a forged rkey was not reported as a bad key"
    # By name: the RESOLVE broadcast and the private data of the handshake
    # go through the backend too (the name and the region descriptor live
    # in granted pages).
    /vmrdma-check client --device xen:/dev/vmrdma --name vmrdma-check --rounds 1 >/tmp/named.log 2>&1
    rc=$?
    sed 's/^/vmrdma-domu: [by name] /' /tmp/named.log
    [ $rc -eq 0 ] || fail "vmrdma-check --name exit $rc"
    grep -q '^vmrdma-check: OK' /tmp/named.log || fail "no 'vmrdma-check: OK' line by name"
    # A process SIGKILLed mid-transfer: closing its file must unpin every
    # page it registered (the kernel counts pins in /proc/vmstat) and the
    # device must keep working for the next process.
    # The log is created before the job starts: the background shell opens
    # its redirection only once it runs, which can be after our first look.
    : >/tmp/killed.log
    rounds_done() { n=$(grep -c 'round' /tmp/killed.log); echo "${n:-0}"; }
    # shellcheck disable=SC2086
    /vmrdma-check client $args --forever >>/tmp/killed.log 2>&1 &
    pid=$!
    i=0
    while [ $i -lt 300 ] && [ "$(rounds_done)" -lt 2 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -9 $pid
    wait $pid 2>/dev/null
    # The last reference to the file can be io_uring's, dropped by its exit
    # work shortly after the process is gone: give the release 10 s.
    i=0
    while :; do
        acquired=$(awk '/^nr_foll_pin_acquired/{print $2}' /proc/vmstat)
        released=$(awk '/^nr_foll_pin_released/{print $2}' /proc/vmstat)
        [ "$acquired" = "$released" ] || [ $i -ge 100 ] || { sleep 0.1; i=$((i + 1)); continue; }
        break
    done
    say "SIGKILLed a transfer after: $(grep round /tmp/killed.log | tail -n 1 | sed 's/^vmrdma-check: //')"
    say "page pins: $acquired acquired, $released released"
    [ "$(rounds_done)" -ge 2 ] || fail "the transfer to be killed made no progress"
    [ -n "$acquired" ] && [ "$acquired" = "$released" ] || fail "pins left after the killed process: $acquired acquired, $released released"
    # shellcheck disable=SC2086
    /vmrdma-check client $args --rounds 1 >/tmp/after.log 2>&1 || fail "the device failed after a killed process: $(tail -n 1 /tmp/after.log)"
    grep -q '^vmrdma-check: OK' /tmp/after.log && say "the next process: $(grep '^vmrdma-check: OK' /tmp/after.log)"
    ;;
forever)
    # shellcheck disable=SC2086
    /vmrdma-check client $args --forever 2>&1 | sed 's/^/vmrdma-domu: /'
    # Ends when dom0 destroys the guest or takes its device away (guests b, d,
    # e: expected there, and dom0 judges it); anywhere else it is a failure.
    fail "the endless transfer ended: its device went away or it failed (the line above says which)"
    ;;
*)
    fail "unknown VMRDMA_MODE '$VMRDMA_MODE'"
    ;;
esac
finish
