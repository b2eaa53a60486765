#!/usr/bin/env bash
# Kernel-safety check for proto/:
#   1. every proto/*.c compiles alone with gcc -std=gnu11 -Wall -Wextra -Werror;
#   2. proto/*.c plus vmrdma_proto_test.c build as an out-of-tree module
#      (W=1, any "warning:" fails) against the headers package of Debian's
#      current kernel ABI, installed here if missing.  Build only; the module
#      is never loaded.
# Exits non-zero on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== step 1: gcc -std=gnu11 -Wall -Wextra -Werror -c proto/*.c"
fail=0
for f in "$root"/proto/*.c; do
    if gcc -std=gnu11 -Wall -Wextra -Werror -c "$f" -o "$tmp/$(basename "$f" .c).o"; then
        echo "   ok   proto/$(basename "$f")"
    else
        echo "   FAIL proto/$(basename "$f")"
        fail=1
    fi
done
if [ "$fail" -ne 0 ]; then
    echo "kbuild: FAILED (user-space -Werror compile)"
    exit 1
fi

echo "== step 2: kernel module against Debian's kernel headers"
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$')" ]; then
    apt-get update -qq >/dev/null || { echo "kbuild: FAILED (apt-get update)"; exit 1; }
fi
pkg=$(apt-cache depends linux-headers-amd64 2>/dev/null | awk '/Depends: linux-headers-/{print $2; exit}')
if [ -z "$pkg" ]; then
    apt-get update -qq >/dev/null
    pkg=$(apt-cache depends linux-headers-amd64 2>/dev/null | awk '/Depends: linux-headers-/{print $2; exit}')
fi
if [ -z "$pkg" ]; then
    echo "kbuild: FAILED (cannot resolve linux-headers-amd64)"
    exit 1
fi
if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
    echo "   installing $pkg"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >"$tmp/apt.log" 2>&1; then
        cat "$tmp/apt.log" >&2
        echo "kbuild: FAILED (apt-get install $pkg)"
        exit 1
    fi
fi
kdir=/usr/src/$pkg
if [ ! -f "$kdir/Makefile" ]; then
    echo "kbuild: FAILED ($kdir has no Makefile)"
    exit 1
fi

mod=$tmp/mod
mkdir -p "$mod/proto"
cp "$here/Kbuild" "$here/vmrdma_proto_test.c" "$mod/"
cp "$root"/proto/*.c "$root"/proto/*.h "$mod/proto/"
echo "   make -C $kdir M=<tmp> W=1 modules"
make -C "$kdir" M="$mod" W=1 modules >"$tmp/build.log" 2>&1
rc=$?
sed "s|$mod/||g" "$tmp/build.log"
nwarn=$(grep -ci 'warning:' "$tmp/build.log" || true)
if [ "$rc" -ne 0 ] || [ "$nwarn" -ne 0 ] || [ ! -f "$mod/vmrdma_proto_kt.ko" ]; then
    echo "kbuild: FAILED against $pkg (make rc $rc, $nwarn warning(s))"
    exit 1
fi
size=$(stat -c %s "$mod/vmrdma_proto_kt.ko")
echo "kbuild: OK: proto/*.c built with -Werror, and vmrdma_proto_kt.ko (${size} bytes) built against $pkg with W=1 and no warnings"
