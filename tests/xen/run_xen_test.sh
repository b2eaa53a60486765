#!/usr/bin/env bash
# Proves backend_kmod and frontend_kmod under real Xen: boots Xen 4.17 with
# Debian's 6.1 kernel as PV dom0 under QEMU (TCG, no KVM needed), and from
# dom0 (tests/xen/dom0_init.sh) PV guests running frontend_kmod
# (tests/xen/domu_init.sh).  A guest RDMA-writes and reads back through
# the backend to a peer process in dom0 (eth: transport over a veth pair)
# with the data verified (plus a forged rkey and a SIGKILLed transfer); a
# second guest is destroyed mid-transfer and the backend must clean up;
# after backend_kmod is unloaded, a third and a fourth guest do the same two
# with vmrdmad --xen (the user-space daemon) as the backend.  Exits 0 only
# when dom0 says PASS.
#
#   tests/xen/run_xen_test.sh [--boot-only]
#
# --boot-only boots Xen, dom0 and an empty guest (checks the toolchain; no
# vmrdma code involved).  Installs qemu-system-x86, busybox-static, cpio,
# libxen-dev, iproute2, xz-utils and the kernel headers when missing (root
# needed then); downloads the kernel image and Xen packages once into
# $VMRDMA_QEMU_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/vmrdma-qemu),
# shared with tests/qemu/run_module_test.sh.  VMRDMA_XEN_TIMEOUT (default
# 540) bounds QEMU in seconds; VMRDMA_XEN_LOG=FILE keeps the serial console.
set -uo pipefail
start_ns=$(date +%s%N)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/../kbuild/kmod_lib.sh
. "$root/tests/kbuild/kmod_lib.sh"
tag=xen
stage=full
case "${1:-}" in
"") ;;
--boot-only) stage=boot ;;
-h | --help)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [--boot-only]" >&2
    exit 2
    ;;
esac
cache=${VMRDMA_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmrdma-qemu}
qemu_timeout=${VMRDMA_XEN_TIMEOUT:-540}
xen_ver=4.17
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== step 1: packages"
vr_kmod_resolve "$tag" || exit 1
abi=$VR_KMOD_ABI
vr_apt_install "$tag" "$work" qemu-system-x86 busybox-static cpio libxen-dev iproute2 xz-utils || exit 1
vr_kmod_headers "$tag" "$work" || exit 1
echo "   ok   qemu-system-x86 busybox-static cpio libxen-dev iproute2 $VR_KMOD_PKG"

echo "== step 2: Linux $abi and Xen $xen_ver images"
vr_kmod_image "$tag" "$cache" "$work" || exit 1
kdir=$VR_KMOD_IMAGE_DIR
# Derived once per image: its modules and an uncompressed vmlinux for the
# guests (xl decompressing a bzImage under TCG costs seconds per guest).
if [ ! -s "$kdir/vmlinux" ] || [ ! -d "$kdir/modules" ]; then
    rm -rf "$work/k" "$kdir/modules" "$kdir/vmlinux"
    dpkg -x "$VR_KMOD_IMAGE_DEB" "$work/k" || { echo "$tag: FAILED (dpkg -x image)"; exit 1; }
    mv "$work/k/lib/modules/$abi/kernel" "$kdir/modules"
    off=$(LC_ALL=C grep -obUaP -m 1 '\xfd7zXZ\x00' "$VR_KMOD_VMLINUZ" | head -n 1 | cut -d: -f1)
    if [ -z "$off" ] || ! { tail -c +"$((off + 1))" "$VR_KMOD_VMLINUZ" | xz -dc >"$work/vmlinux" 2>/dev/null;
        readelf -h "$work/vmlinux" >/dev/null 2>&1; }; then
        echo "$tag: FAILED (cannot extract vmlinux from the xz payload of $VR_KMOD_VMLINUZ)"
        exit 1
    fi
    mv "$work/vmlinux" "$kdir/vmlinux"
    rm -rf "$work/k"
    echo "   extracted modules and vmlinux"
fi
xver=$(apt-cache show "xen-hypervisor-$xen_ver-amd64" 2>/dev/null | awk '/^Version:/{print $2; exit}')
[ -n "$xver" ] || { echo "$tag: FAILED (apt-cache knows no xen-hypervisor-$xen_ver-amd64)"; exit 1; }
xcache=$cache/xen-${xen_ver}_$xver
if [ ! -s "$xcache/xen.img" ]; then
    t=$(date +%s%N)
    rm -rf "$xcache" "$work/xdl"
    vr_apt_download "$tag" "$work/xdl" "xen-hypervisor-$xen_ver-amd64" "xen-utils-$xen_ver" xenstore-utils || exit 1
    mkdir -p "$xcache/root"
    for deb in "$work"/xdl/*.deb; do dpkg -x "$deb" "$xcache/root" || exit 1; done
    # QEMU's multiboot loader wants the ELF32 image, not the gzip.
    gunzip -c "$xcache/root/boot/xen-$xen_ver-amd64.gz" >"$xcache/xen.img.tmp" && mv "$xcache/xen.img.tmp" "$xcache/xen.img" ||
        { echo "$tag: FAILED (no boot/xen-$xen_ver-amd64.gz)"; exit 1; }
    find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'xen-*' ! -path "$xcache" -exec rm -rf {} +
    echo "   downloaded Xen $xver ($(vr_secs_since "$t") s)"
else
    echo "   cached Xen $xver"
fi
xbin=$xcache/root/usr/lib/xen-$xen_ver/bin

echo "== step 3: modules and programs"
if [ "$stage" = full ]; then
    vr_kmod_build "$tag" "$work/back" "$work/back.log" "$root/backend_kmod" vmrdma_back >/dev/null ||
        { cat "$work/back.log"; exit 1; }
    vr_kmod_build "$tag" "$work/front" "$work/front.log" "$root/frontend_kmod" vmrdma_front >/dev/null ||
        { cat "$work/front.log"; exit 1; }
    echo "   vmrdma_back.ko, vmrdma_front.ko built against $VR_KMOD_PKG (W=1, no warnings)"
    if ! (cd "$root" && bazel build --config=release --noshow_progress --ui_event_filters=-info \
        //examples:vmrdma-check //tools/xen_attach:vmrdma-xen-attach //vmrdmad:vmrdmad) >"$work/bazel.log" 2>&1; then
        cat "$work/bazel.log"
        echo "$tag: FAILED (bazel build of vmrdma-check, vmrdma-xen-attach and vmrdmad)"
        exit 1
    fi
    bin=$(cd "$root" && bazel info --config=release bazel-bin 2>/dev/null)
    check=$bin/examples/vmrdma-check
    attach=$bin/tools/xen_attach/vmrdma-xen-attach
    vmrdmad=$bin/vmrdmad/vmrdmad
    echo "   vmrdma-check, vmrdma-xen-attach, vmrdmad (bazel --config=release)"
fi

# add_binary ROOT FILE [DEST]: copies FILE and its shared-library closure.
add_binary() {
    local r=$1 f=$2 dest=${3:-$2} lib
    mkdir -p "$r$(dirname "$dest")"
    cp "$f" "$r$dest"
    LD_LIBRARY_PATH=$xcache/root/usr/lib/xen-$xen_ver/lib ldd "$f" 2>/dev/null |
        awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | while read -r lib; do
        [ -e "$r$lib" ] && continue
        mkdir -p "$r$(dirname "$lib")"
        cp -L "$lib" "$r$lib"
    done
}
new_root() {
    mkdir -p "$1"/{bin,dev,proc,sys,tmp,run,etc}
    cp /bin/busybox "$1/bin/busybox"
    [ "$(id -u)" -ne 0 ] || mknod -m 600 "$1/dev/console" c 5 1
}

domu=$work/domu
new_root "$domu"
cp "$here/domu_init.sh" "$domu/init"
if [ "$stage" = full ]; then
    cp "$work/front/vmrdma_front.ko" "$domu/"
    add_binary "$domu" "$check" /vmrdma-check
fi
vr_pack_initramfs "$domu" "$work/domu.gz" || { echo "$tag: FAILED (domU initramfs)"; exit 1; }

dom0=$work/dom0
new_root "$dom0"
cp "$here/dom0_init.sh" "$dom0/init"
mkdir -p "$dom0/mods" "$dom0/domu"
for m in xen/xen-evtchn xen/xen-gntdev xen/xen-gntalloc xen/xen-privcmd xen/xenfs/xenfs net/veth; do
    cp "$kdir/modules/drivers/$m.ko" "$dom0/mods/" || { echo "$tag: FAILED (no $m.ko in the image)"; exit 1; }
done
# proto/'s ChaCha20 and Poly1305 (vmrdma_back.ko needs them): lib/crypto's modules.
for m in libchacha libpoly1305; do
    cp "$kdir/modules/lib/crypto/$m.ko" "$dom0/mods/" || { echo "$tag: FAILED (no $m.ko in the image)"; exit 1; }
done
for b in xl xenstored xen-init-dom0 xenconsoled; do
    add_binary "$dom0" "$xbin/$b" "/usr/lib/xen-$xen_ver/bin/$b"
done
cp -a "$xcache/root/usr/lib/xen-$xen_ver/lib" "$dom0/usr/lib/xen-$xen_ver/" 2>/dev/null
add_binary "$dom0" "$(command -v ip)" /usr/sbin/ip
# xl needs libgcc_s for pthread_cancel (dlopen'd, so not in ldd's list).
gcc_s=$(ldconfig -p | awk '/libgcc_s.so.1 .*x86-64/{print $NF; exit}')
mkdir -p "$dom0$(dirname "$gcc_s")" && cp -L "$gcc_s" "$dom0$gcc_s"
cp "$kdir/vmlinux" "$dom0/domu/vmlinux"
cp "$work/domu.gz" "$dom0/domu/initrd.gz"
if [ "$stage" = full ]; then
    cp "$work/back/vmrdma_back.ko" "$dom0/"
    add_binary "$dom0" "$check" /vmrdma-check
    add_binary "$dom0" "$attach" /vmrdma-xen-attach
    add_binary "$dom0" "$vmrdmad" /vmrdmad
fi
vr_pack_initramfs "$dom0" "$work/dom0.gz" || { echo "$tag: FAILED (dom0 initramfs)"; exit 1; }
echo "   initramfs: dom0 $(($(stat -c %s "$work/dom0.gz") / 1048576)) MiB (toolstack, guest kernel and initramfs inside)"

echo "== step 4: boot Xen $xver + dom0 under QEMU TCG (timeout ${qemu_timeout}s, stage $stage)"
log=$work/serial.log
vr_qemu_boot "$work" "$qemu_timeout" -m 2048 -smp 2 \
    -kernel "$xcache/xen.img" -append "console=com1 dom0_mem=1024M,max:1024M" \
    -initrd "$VR_KMOD_VMLINUZ console=hvc0 quiet VMRDMA_XEN_STAGE=$stage,$work/dom0.gz"
secs=$VR_QEMU_SECS
grep -a '^vmrdma-xen: ' "$log.txt" | sed 's/^/   /'
[ -z "${VMRDMA_XEN_LOG:-}" ] || cp "$log.txt" "$VMRDMA_XEN_LOG"
why=$VR_QEMU_WHY
[ -n "$why" ] || grep -aq '^vmrdma-xen: RESULT: PASS' "$log.txt" || why="dom0 did not report PASS"
if [ -n "$why" ]; then
    echo "--- QEMU output"
    cat "$work/qemu.out"
    echo "--- serial console, last 80 lines"
    tail -n 80 "$log.txt"
    echo "$tag: FAILED ($why)"
    exit 1
fi
if [ "$stage" = boot ]; then
    echo "xen: OK: Xen $xver, dom0 and an empty PV guest booted and stopped (QEMU TCG, ${secs}s; $(vr_secs_since "$start_ns")s in all)"
else
    echo "xen: OK: under Xen $xver a guest found its peer by name, connected with private data, RDMA-wrote and read back through backend_kmod, a guest destroyed mid-transfer was cleaned up, the same two and a live detach through vmrdmad --xen, dom0 stayed clean (QEMU TCG, ${secs}s; $(vr_secs_since "$start_ns")s in all)"
fi
