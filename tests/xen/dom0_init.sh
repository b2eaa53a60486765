#!/bin/busybox sh
# /init of the test dom0 (tests/xen/run_xen_test.sh).  Starts the Xen
# toolstack (xenstored, xen-init-dom0, xenconsoled), then runs the stage
# named on the kernel command line, VMRDMA_XEN_STAGE:
#   boot       an empty guest (checks the toolchain, no vmrdma code);
#   one-host   tests/xen/dom0_one_host.sh: guests against a dom0 peer;
#   two-host   tests/xen/dom0_two_host.sh: this dom0 is host VMRDMA_XEN_HOST
#              (a or b) of two joined by a link; guests talk across it;
#   two-host-boot  the two hosts and the link only, an empty guest each.
# Every stage ends with no WARNING/BUG/Oops/Call Trace in dom0's log.
# Markers: "vmrdma-xen: ..." lines; the last is "vmrdma-xen: RESULT: PASS"
# or "vmrdma-xen: RESULT: FAIL (reasons)".
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
# /usr/sbin first: its ip is iproute2 (bridges), busybox's is not.
export PATH=/usr/sbin:/bin:/usr/bin:/usr/lib/xen-4.17/bin
export LD_LIBRARY_PATH=/usr/lib/xen-4.17/lib
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run /tmp /var/run/xen /var/lib/xen /var/lib/xenstored \
    /var/log/xen/console /etc/xen
: >/etc/xen/xl.conf # an empty one: xl only warns without it
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
say() { echo "vmrdma-xen: $*"; }
step() { echo "vmrdma-xen: == $* [dom0 up $(cut -d' ' -f1 /proc/uptime) s]"; }
fails=""
fail() { fails="$fails${fails:+; }$*"; say "FAIL: $*"; }
# Stages may add to what finish does first (e.g. tell a peer host).
finish_hook() { :; }
finish() {
    finish_hook
    cat /tmp/boot.log 2>/dev/null >/tmp/all.log
    dmesg >>/tmp/all.log
    grep -E 'WARNING|BUG|Oops|Call Trace|general protection' /tmp/all.log >/tmp/bad.log
    if [ -s /tmp/bad.log ]; then
        sed 's/^/vmrdma-xen: ! /' /tmp/bad.log
        fail "$(wc -l </tmp/bad.log) WARNING/BUG/Oops line(s) in dom0's dmesg"
    fi
    if [ -z "$fails" ]; then say "RESULT: PASS"; else say "RESULT: FAIL ($fails)"; fi
    sync
    poweroff -f
}
now() { cut -d. -f1 /proc/uptime; }
# wait_for SECONDS COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
    local end=$(( $(now) + $1 ))
    shift
    while ! "$@"; do
        [ "$(now)" -ge "$end" ] && return 1
        sleep 0.2
    done
}
guest_log() { echo "/var/log/xen/console/guest-$1.log"; }
log_has() { grep -q "$2" "$(guest_log "$1")" 2>/dev/null; }
show_guest() { sed 's/^/vmrdma-xen: [domU '"$1"'] /' "$(guest_log "$1")" 2>/dev/null | tr -d '\r'; }
# make_guest NAME KERNEL-ARGS [CONFIG-LINE...]: a paused PV guest; prints
# nothing, sets $domid.  Extra lines go into its xl config as they are.
make_guest() {
    local name=$1 args=$2 line
    shift 2
    cat >"/tmp/$name.cfg" <<EOF
name = "$name"
type = "pv"
kernel = "/domu/vmlinux"
ramdisk = "/domu/initrd.gz"
extra = "console=hvc0 quiet $args"
memory = 192
vcpus = 1
on_poweroff = "destroy"
on_crash = "destroy"
EOF
    for line in "$@"; do echo "$line" >>"/tmp/$name.cfg"; done
    if ! xl create -p "/tmp/$name.cfg" >"/tmp/$name.create.log" 2>&1; then
        sed 's/^/vmrdma-xen: xl: /' "/tmp/$name.create.log"
        return 1
    fi
    domid=$(xl domid "$name")
}
domain_gone() { ! xl list 2>/dev/null | grep -q "^$1 "; }
proc_value() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmrdma_back; }
backend_idle() { [ "$(proc_value frontends)" = 0 ] && [ "$(proc_value mapped_pages)" = 0 ]; }

step "dom0: Xen toolstack"
for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs veth libchacha libpoly1305; do
    insmod "/mods/$m.ko" || fail "insmod $m"
done
mount -t xenfs xenfs /proc/xen
grep -q control_d /proc/xen/capabilities || fail "not running as Xen dom0"
xenstored --pid-file /var/run/xenstored.pid || fail "xenstored"
xen-init-dom0 >/tmp/init-dom0.log 2>&1 || fail "xen-init-dom0"
xenconsoled --log=guest --log-dir=/var/log/xen/console || fail "xenconsoled"
dmesg -c >/tmp/boot.log
say "Xen $(xl info 2>/dev/null | awk '/^xen_version/{print $3}'), dom0 $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPU(s)"
[ -z "$fails" ] || finish

case "$VMRDMA_XEN_STAGE" in
boot)
    step "empty guest"
    make_guest smoke "VMRDMA_MODE=boot" || { fail "xl create"; finish; }
    xl unpause smoke
    wait_for 60 log_has smoke "RESULT:" || fail "guest printed no result in 60 s"
    show_guest smoke
    log_has smoke "RESULT: PASS" || fail "guest failed"
    ;;
one-host)
    # shellcheck source=dom0_one_host.sh
    . /dom0_one_host.sh
    ;;
two-host | two-host-boot)
    # shellcheck source=dom0_two_host.sh
    . /dom0_two_host.sh
    ;;
*)
    fail "unknown VMRDMA_XEN_STAGE '$VMRDMA_XEN_STAGE'"
    ;;
esac
finish
