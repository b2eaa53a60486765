#!/usr/bin/env bash
# Kernel-safety check for proto/:
#   1. every proto/*.c compiles alone with gcc -std=gnu11 -Wall -Wextra -Werror;
#   2. proto/*.c plus vmrdma_proto_test.c build as an out-of-tree module
#      (W=1, any "warning:" fails) against the headers package of Debian's
#      current kernel ABI, installed here if missing (tests/kbuild/kmod_lib.sh,
#      shared with tests/qemu/run_module_test.sh, which loads the module);
#   3. backend_kmod and frontend_kmod build the same way (W=1, no warnings).
# Exits non-zero on any failure.
set -uo pipefail
case "${1:-}" in
"") ;;
-h | --help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [--help]  (no arguments: runs the check)" >&2
    exit 2
    ;;
esac
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
# shellcheck source=SCRIPTDIR/kmod_lib.sh
. "$here/kmod_lib.sh"
vr_kmod_resolve kbuild || exit 1
pkg=$VR_KMOD_PKG
vr_kmod_headers kbuild "$tmp" || exit 1
mod=$tmp/mod
vr_kmod_build kbuild "$mod" "$tmp/build.log" || exit 1
size=$(stat -c %s "$mod/vmrdma_proto_kt.ko")
echo "== step 3: the Xen drivers: backend_kmod (dom0), frontend_kmod (domU)"
vr_kmod_build kbuild "$tmp/back" "$tmp/back.log" "$root/backend_kmod" vmrdma_back || exit 1
vr_kmod_build kbuild "$tmp/front" "$tmp/front.log" "$root/frontend_kmod" vmrdma_front || exit 1
echo "kbuild: OK: proto/*.c built with -Werror; vmrdma_proto_kt.ko (${size} bytes), vmrdma_back.ko and" \
    "vmrdma_front.ko built against $pkg with W=1 and no warnings"
