# shellcheck shell=bash
# Sourced by tests/kbuild/build.sh and tests/qemu/run_module_test.sh: find
# Debian's current kernel ABI, install its headers, build the proto/ test
# module.  Each function prints "TAG: FAILED (...)" and returns 1 on failure.
# Not executable on its own.

vr_kmod_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vr_kmod_root=$(cd "$vr_kmod_here/../.." && pwd)

# vr_kmod_resolve TAG
# Sets VR_KMOD_PKG (linux-headers-6.1.0-NN-amd64, the dependency of
# linux-headers-amd64: NN is never hard-coded, old ones leave the mirror)
# and VR_KMOD_ABI (6.1.0-NN-amd64).  Runs apt-get update if the package
# lists are empty or do not resolve the name.
vr_kmod_resolve() {
    local tag=$1 pkg
    # shellcheck disable=SC2010,SC2143  # the lists' file names are plain
    if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$')" ]; then
        apt-get update -qq >/dev/null || { echo "$tag: FAILED (apt-get update)"; return 1; }
    fi
    pkg=$(apt-cache depends linux-headers-amd64 2>/dev/null | awk '/Depends: linux-headers-/{print $2; exit}')
    if [ -z "$pkg" ]; then
        apt-get update -qq >/dev/null
        pkg=$(apt-cache depends linux-headers-amd64 2>/dev/null | awk '/Depends: linux-headers-/{print $2; exit}')
    fi
    if [ -z "$pkg" ]; then
        echo "$tag: FAILED (cannot resolve linux-headers-amd64)"
        return 1
    fi
    VR_KMOD_PKG=$pkg
    # shellcheck disable=SC2034  # used by the callers
    VR_KMOD_ABI=${pkg#linux-headers-}
}

# vr_kmod_headers TAG SCRATCH_DIR
# Installs VR_KMOD_PKG if missing (printing "   installing PKG"); sets
# VR_KMOD_KDIR to its kbuild directory.
vr_kmod_headers() {
    local tag=$1 scratch=$2 pkg=$VR_KMOD_PKG
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
        echo "   installing $pkg"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >"$scratch/apt.log" 2>&1; then
            cat "$scratch/apt.log" >&2
            echo "$tag: FAILED (apt-get install $pkg)"
            return 1
        fi
    fi
    VR_KMOD_KDIR=/usr/src/$pkg
    if [ ! -f "$VR_KMOD_KDIR/Makefile" ]; then
        echo "$tag: FAILED ($VR_KMOD_KDIR has no Makefile)"
        return 1
    fi
}

# vr_kmod_build TAG MOD_DIR LOG [SRC_DIR KO_NAME]
# Copies SRC_DIR's Kbuild and *.[ch] (default: this directory, the proto/
# test module vmrdma_proto_kt) and proto/*.[ch] (into MOD_DIR/proto) into
# MOD_DIR (new or empty), runs "make -C VR_KMOD_KDIR M=MOD_DIR W=1 modules"
# into LOG, prints the log with MOD_DIR/ stripped, and fails on a make error,
# any "warning:" or a missing MOD_DIR/KO_NAME.ko.
vr_kmod_build() {
    local tag=$1 mod=$2 log=$3 src=${4:-$vr_kmod_here} ko=${5:-vmrdma_proto_kt} rc nwarn
    mkdir -p "$mod/proto"
    cp "$src/Kbuild" "$mod/"
    cp "$src"/*.c "$mod/"
    cp "$src"/*.h "$mod/" 2>/dev/null || true
    cp "$vr_kmod_root"/proto/*.c "$vr_kmod_root"/proto/*.h "$vr_kmod_root"/proto/Kbuild.objs "$mod/proto/"
    echo "   make -C $VR_KMOD_KDIR M=<tmp> W=1 modules   ($ko)"
    make -C "$VR_KMOD_KDIR" M="$mod" W=1 modules >"$log" 2>&1
    rc=$?
    sed "s|$mod/||g" "$log"
    nwarn=$(grep -ci 'warning:' "$log" || true)
    if [ "$rc" -ne 0 ] || [ "$nwarn" -ne 0 ] || [ ! -f "$mod/$ko.ko" ]; then
        echo "$tag: FAILED: $ko against $VR_KMOD_PKG (make rc $rc, $nwarn warning(s))"
        return 1
    fi
}

# vr_secs_since START_NS -> "12.3"
vr_secs_since() {
    local d=$(( $(date +%s%N) - $1 ))
    printf '%d.%d' $((d / 1000000000)) $((d / 100000000 % 10))
}

# vr_apt_download TAG DIR PKG...
# apt-get download PKG... into DIR (created), refreshing the package lists
# once if that fails (a stale list names files the mirror no longer has).
vr_apt_download() {
    local tag=$1 dir=$2
    shift 2
    mkdir -p "$dir" || { echo "$tag: FAILED (cannot create $dir)"; return 1; }
    if ! (cd "$dir" && apt-get download "$@" >"$dir/.download.log" 2>&1); then
        apt-get update -qq >/dev/null 2>&1
        if ! (cd "$dir" && apt-get download "$@" >"$dir/.download.log" 2>&1); then
            cat "$dir/.download.log" >&2
            echo "$tag: FAILED (apt-get download $*)"
            return 1
        fi
    fi
    rm -f "$dir/.download.log"
}

# vr_kmod_image TAG CACHE WORK
# Makes sure CACHE/linux-image-$VR_KMOD_ABI_VERSION/ holds the image package
# (.deb, whose modules the Xen harness needs) and its vmlinuz, downloading
# them once; other versions there are deleted (their ABI has left the
# mirror).  Sets VR_KMOD_IMAGE_DIR, VR_KMOD_IMAGE_DEB and VR_KMOD_VMLINUZ.
# Holds CACHE/.lock while downloading.
vr_kmod_image() {
    local tag=$1 cache=$2 work=$3 img=linux-image-$VR_KMOD_ABI ver kcache deb t
    ver=$(apt-cache show "$img" 2>/dev/null | awk '/^Version:/{print $2; exit}')
    if [ -z "$ver" ]; then
        echo "$tag: FAILED (apt-cache knows no $img)"
        return 1
    fi
    kcache=$cache/${img}_$ver
    mkdir -p "$cache" || { echo "$tag: FAILED (cannot create $cache)"; return 1; }
    (
        flock 9 # one download at a time per cache
        if [ -s "$kcache/vmlinuz" ] && ls "$kcache"/*.deb >/dev/null 2>&1; then
            echo "   cached $kcache/vmlinuz"
            exit 0
        fi
        t=$(date +%s%N)
        rm -rf "$kcache" "$work/dl" "$work/x"
        vr_apt_download "$tag" "$work/dl" "$img" || exit 1
        mkdir -p "$kcache"
        deb=$(ls "$work"/dl/*.deb)
        if ! dpkg -x "$deb" "$work/x" || [ ! -s "$work/x/boot/vmlinuz-$VR_KMOD_ABI" ]; then
            echo "$tag: FAILED (no boot/vmlinuz-$VR_KMOD_ABI in $(basename "$deb"))"
            exit 1
        fi
        if ! { mv "$deb" "$kcache/" && cp "$work/x/boot/vmlinuz-$VR_KMOD_ABI" "$kcache/vmlinuz.tmp" &&
            mv "$kcache/vmlinuz.tmp" "$kcache/vmlinuz"; }; then
            echo "$tag: FAILED (cannot fill $kcache)"
            exit 1
        fi
        rm -rf "$work/x"
        find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-*' ! -path "$kcache" -exec rm -rf {} +
        echo "   downloaded $(basename "$deb") and extracted vmlinuz ($(vr_secs_since "$t") s)"
    ) 9>"$cache/.lock" || return 1
    VR_KMOD_IMAGE_DIR=$kcache
    VR_KMOD_IMAGE_DEB=$(ls "$kcache"/*.deb | head -n 1)
    # shellcheck disable=SC2034  # used by the callers
    VR_KMOD_VMLINUZ=$kcache/vmlinuz
}

# vr_apt_install TAG WORK PKG...
# Installs those of PKG... that are missing (without recommends; root needed
# then), refreshing the package lists once if the first try fails (stale
# lists name files the mirror no longer has).
vr_apt_install() {
    local tag=$1 work=$2 p missing=()
    shift 2
    for p in "$@"; do
        if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "$tag: FAILED (missing ${missing[*]}; run as root or apt-get install them)"
        return 1
    fi
    echo "   installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$work/apt.log" 2>&1; then
        apt-get update -qq >/dev/null 2>&1
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            >"$work/apt.log" 2>&1; then
            cat "$work/apt.log" >&2
            echo "$tag: FAILED (apt-get install ${missing[*]})"
            return 1
        fi
    fi
}

# vr_pack_initramfs DIR OUT: DIR as a gzipped newc cpio archive, owned by root.
vr_pack_initramfs() {
    (cd "$1" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$2"
}

# vr_qemu_boot WORK TIMEOUT QEMU-ARGS...
# Boots qemu-system-x86_64 under TCG (-cpu qemu64: with -cpu max a Xen PV
# dom0 faults at once under TCG; $VR_QEMU_CPU adds features, e.g.
# qemu64,+sse4.2) with no devices but a serial console into
# WORK/serial.log, bounded by TIMEOUT seconds.  Leaves the console with CRs
# stripped in WORK/serial.log.txt and QEMU's own output in WORK/qemu.out,
# and sets VR_QEMU_SECS (boot to exit) and VR_QEMU_WHY (empty, or why QEMU
# itself failed: a timeout or an exit status).  While it runs, WORK/qemu.pid
# names the process to signal to stop it early (timeout's, which passes it
# on).
vr_qemu_boot() {
    local work=$1 limit=$2 t rc
    shift 2
    t=$(date +%s%N)
    timeout -k 5 "$limit" qemu-system-x86_64 -accel tcg -cpu "${VR_QEMU_CPU:-qemu64}" \
        -nodefaults -display none -no-reboot -serial "file:$work/serial.log" "$@" \
        </dev/null >"$work/qemu.out" 2>&1 &
    echo $! >"$work/qemu.pid"
    wait $!
    rc=$?
    rm -f "$work/qemu.pid"
    VR_QEMU_SECS=$(vr_secs_since "$t")
    touch "$work/serial.log"
    tr -d '\r' <"$work/serial.log" >"$work/serial.log.txt"
    VR_QEMU_WHY=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        VR_QEMU_WHY="QEMU timed out after ${limit}s"
    elif [ "$rc" -ne 0 ]; then
        VR_QEMU_WHY="QEMU exit $rc"
    fi
}

# vr_kmod_crypto_mods TAG DIR
# Copies the kernel library modules that proto/ needs (lib/crypto's
# libchacha.ko and libpoly1305.ko: crypto.h uses their generic ChaCha20 and
# Poly1305) out of the image package VR_KMOD_IMAGE_DEB into DIR and sets
# VR_KMOD_CRYPTO_MODS to their names in load order.  On a real system
# modprobe loads them; under QEMU busybox insmod needs them first.
vr_kmod_crypto_mods() {
    local tag=$1 dir=$2 m
    mkdir -p "$dir"
    # shellcheck disable=SC2034  # used by the callers
    VR_KMOD_CRYPTO_MODS="libchacha libpoly1305"
    for m in $VR_KMOD_CRYPTO_MODS; do
        if ! dpkg --fsys-tarfile "$VR_KMOD_IMAGE_DEB" |
            tar -xO "./lib/modules/$VR_KMOD_ABI/kernel/lib/crypto/$m.ko" >"$dir/$m.ko" ||
            [ ! -s "$dir/$m.ko" ]; then
            echo "$tag: FAILED (no lib/crypto/$m.ko in $(basename "$VR_KMOD_IMAGE_DEB"))"
            return 1
        fi
    done
}
