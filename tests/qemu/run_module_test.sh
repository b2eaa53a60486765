#!/usr/bin/env bash
# Loads proto/ into a real kernel: builds the kbuild test module
# (tests/kbuild) against Debian's current kernel ABI (6.1.0-NN-amd64), boots
# that same Debian kernel under QEMU (TCG, no KVM needed) with a busybox
# initramfs whose /init insmods the module and rmmods it, then does the same
# with the Xen drivers (vmrdma_front.ko, vmrdma_back.ko), which must say why
# they do nothing outside Xen; it shows the kernel log, checks it and the
# taint flags, prints a PASS/FAIL marker and powers off.  Exits 0 only when
# the guest says PASS and the test module's own success line is in the log.
#
# Installs qemu-system-x86, busybox-static, cpio and the kernel headers if
# missing (needs root then).  The kernel image package is downloaded once
# into $VMRDMA_QEMU_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/vmrdma-qemu).
# VMRDMA_QEMU_TIMEOUT (default 120) bounds the QEMU run in seconds;
# VMRDMA_QEMU_LOG=FILE keeps a copy of the guest's serial console.
set -uo pipefail
case "${1:-}" in
"") ;;
-h | --help)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [--help]  (no arguments: runs the check)" >&2
    exit 2
    ;;
esac
start_ns=$(date +%s%N)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/../kbuild/kmod_lib.sh
. "$root/tests/kbuild/kmod_lib.sh"
tag=qemu
cache=${VMRDMA_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmrdma-qemu}
qemu_timeout=${VMRDMA_QEMU_TIMEOUT:-120}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT


echo "== step 1: packages"
vr_kmod_resolve "$tag" || exit 1
abi=$VR_KMOD_ABI
vr_apt_install "$tag" "$work" qemu-system-x86 busybox-static cpio || exit 1
vr_kmod_headers "$tag" "$work" || exit 1
busybox=/bin/busybox
if [ ! -x "$busybox" ] || readelf -l "$busybox" 2>/dev/null | grep -q 'interpreter'; then
    echo "$tag: FAILED ($busybox is missing or not static; busybox-static provides it)"
    exit 1
fi
echo "   ok   qemu-system-x86 busybox-static cpio $VR_KMOD_PKG"

echo "== step 2: kernel image linux-image-$abi"
vr_kmod_image "$tag" "$cache" "$work" || exit 1
vmlinuz=$VR_KMOD_VMLINUZ

echo "== step 3: test module and initramfs"
mod=$work/mod
vr_kmod_build "$tag" "$mod" "$work/build.log" || exit 1
# The Xen drivers too: outside Xen they must load, refuse politely, unload.
vr_kmod_build "$tag" "$work/back" "$work/back.log" "$root/backend_kmod" vmrdma_back >/dev/null ||
    { cat "$work/back.log"; exit 1; }
vr_kmod_build "$tag" "$work/front" "$work/front.log" "$root/frontend_kmod" vmrdma_front >/dev/null ||
    { cat "$work/front.log"; exit 1; }
# The .modinfo strings are NUL-separated "key=value" (no modinfo/kmod needed).
vermagic=$(tr '\0' '\n' <"$mod/vmrdma_proto_kt.ko" | sed -n 's/^vermagic=\([^ ]*\).*/\1/p' | head -n 1)
if [ "$vermagic" != "$abi" ]; then
    echo "$tag: FAILED (module vermagic '$vermagic', kernel $abi)"
    exit 1
fi
ird=$work/initramfs
mkdir -p "$ird/bin" "$ird/dev" "$ird/proc" "$ird/sys" "$ird/tmp"
cp "$busybox" "$ird/bin/busybox"
cp "$mod/vmrdma_proto_kt.ko" "$work/back/vmrdma_back.ko" "$work/front/vmrdma_front.ko" "$ird/"
# proto/'s ChaCha20 and Poly1305 come from two library modules of the image.
vr_kmod_crypto_mods "$tag" "$ird/lib" || exit 1
echo "$VR_KMOD_CRYPTO_MODS" >"$ird/crypto_mods"
[ "$(id -u)" -ne 0 ] || mknod -m 600 "$ird/dev/console" c 5 1
# The guest's /init.  Its result marker is "vmrdma-qemu: RESULT: PASS" or
# "vmrdma-qemu: RESULT: FAIL (reasons)".  The boot part of dmesg is
# cleared (dmesg -c) before insmod, so the part shown is the module's; both
# parts are checked.
cat >"$ird/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() { echo "vmrdma-qemu: $*"; }
fails=""
fail() { fails="$fails${fails:+; }$*"; }
say "guest kernel $(uname -r)"
dmesg -c >/tmp/boot.log
say "boot log: $(wc -l </tmp/boot.log) lines"
# Taint flags O (out-of-tree, 4096) and E (unsigned, 8192) are expected.
taint0=$(( $(cat /proc/sys/kernel/tainted) & ~12288 ))
for m in $(cat /crypto_mods); do
    insmod "/lib/$m.ko" || fail "insmod $m (the kernel's, which proto/ needs)"
done
if insmod /vmrdma_proto_kt.ko; then
    grep -q '^vmrdma_proto_kt ' /proc/modules || fail "not in /proc/modules after insmod"
    if rmmod vmrdma_proto_kt; then
        ! grep -q '^vmrdma_proto_kt ' /proc/modules || fail "still in /proc/modules after rmmod"
    else
        fail "rmmod exit $?"
    fi
else
    fail "insmod exit $?"
fi
# The Xen drivers outside Xen: each loads, says why it does nothing, unloads.
for m in vmrdma_front "vmrdma_back netdev=eth0"; do
    set -- $m
    m=$1
    shift
    if insmod "/$m.ko" "$@"; then
        grep -q "^$m " /proc/modules || fail "$m not in /proc/modules after insmod"
        rmmod $m || fail "rmmod $m exit $?"
    else
        fail "insmod $m exit $?"
    fi
done
taint1=$(( $(cat /proc/sys/kernel/tainted) & ~12288 ))
dmesg >/tmp/mod.log
grep -q 'vmrdma_front: not running on Xen' /tmp/mod.log || fail "no 'vmrdma_front: not running on Xen' line"
grep -q 'vmrdma_back: not running in a Xen dom0' /tmp/mod.log || fail "no 'vmrdma_back: not running in a Xen dom0' line"
say "kernel log from insmod to rmmod:"
sed 's/^/  | /' /tmp/mod.log
grep -q 'vmrdma_proto_kt: OK:' /tmp/mod.log || fail "no 'vmrdma_proto_kt: OK:' line"
grep -q 'vmrdma_proto_kt: unloaded' /tmp/mod.log || fail "no 'vmrdma_proto_kt: unloaded' line"
# The whole log, boot included, must be free of these.
cat /tmp/boot.log /tmp/mod.log | grep -E 'WARNING|BUG|Oops|Call Trace|KASAN|[Ll]eak' >/tmp/bad.log
bad=$(wc -l </tmp/bad.log)
if [ "$bad" -ne 0 ]; then
    say "suspicious kernel log lines:"
    sed 's/^/  ! /' /tmp/bad.log
    fail "$bad WARNING/BUG/Oops/Call Trace/KASAN/leak line(s) in dmesg"
fi
[ "$taint1" -eq "$taint0" ] || fail "kernel taint went from $taint0 to $taint1 (beyond O/E)"
if [ -z "$fails" ]; then
    say "RESULT: PASS"
else
    say "RESULT: FAIL ($fails)"
fi
sync
poweroff -f
EOF
chmod 755 "$ird/init"
if ! vr_pack_initramfs "$ird" "$work/initrd.gz"; then
    echo "$tag: FAILED (cpio of the initramfs)"
    exit 1
fi
echo "   initramfs: busybox + vmrdma_proto_kt.ko, vmrdma_front.ko, vmrdma_back.ko ($(stat -c %s "$work/initrd.gz") bytes gzipped)"

echo "== step 4: boot Linux $abi under QEMU TCG (timeout ${qemu_timeout}s)"
log=$work/serial.log
# SSE4.2 in the emulated CPU, so that the kernel runs (and checks) proto's
# crc32-instruction CRC32C, not only the portable tables (with the SSE levels
# below it: user space picks string functions by them).
VR_QEMU_CPU=qemu64,+ssse3,+sse4.1,+sse4.2 vr_qemu_boot "$work" "$qemu_timeout" -m 512 -smp 1 -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1"
boot_s=$VR_QEMU_SECS
grep -a -e '^vmrdma-qemu: ' -e '^  [|!] ' "$log.txt" | sed 's/^/   /'
[ -z "${VMRDMA_QEMU_LOG:-}" ] || cp "$log.txt" "$VMRDMA_QEMU_LOG"
guest_abi=$(sed -n 's/^vmrdma-qemu: guest kernel //p' "$log.txt" | head -n 1)
# Why the guest's run does not count, or nothing.
guest_verdict() {
    if ! grep -aq '^vmrdma-qemu: RESULT: PASS$' "$log.txt"; then
        echo "no PASS marker from the guest"
    elif ! grep -aq 'vmrdma_proto_kt: OK:' "$log.txt"; then
        echo "no 'vmrdma_proto_kt: OK:' line from the module"
    elif ! grep -aq 'CRC32C: the crc32 instruction agrees' "$log.txt"; then
        echo "the kernel did not run the crc32-instruction CRC32C (no SSE4.2 in the emulated CPU?)"
    elif [ "$guest_abi" != "$abi" ]; then
        echo "guest ran '$guest_abi', not $abi"
    fi
}
why=${VR_QEMU_WHY:-$(guest_verdict)}
if [ -n "$why" ]; then
    if [ -s "$work/qemu.out" ]; then
        echo "---- QEMU's own output ----"
        cat "$work/qemu.out"
    fi
    echo "---- serial console, other than the guest lines above (last 60) ----"
    grep -a -v -e '^vmrdma-qemu: ' -e '^  [|!] ' "$log.txt" | tail -n 60
    echo "----"
    echo "$tag: FAILED ($why; boot ran ${boot_s}s)"
    exit 1
fi
echo "$tag: OK: vmrdma_proto_kt loaded, ran the engine and the crc32-instruction CRC32C, unloaded cleanly under Linux $guest_abi" \
    "and vmrdma_front/vmrdma_back loaded, refused without Xen and unloaded" \
    "(QEMU TCG, boot to poweroff ${boot_s}s, $(vr_secs_since "$start_ns")s in all)"
