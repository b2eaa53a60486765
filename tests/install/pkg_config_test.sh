#!/usr/bin/env bash
# Installs vmrdma into a scratch prefix, builds an example with plain g++ and
# pkg-config (no Bazel), and runs it.
set -euo pipefail
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
root=$TEST_SRCDIR/vmrdma
RUNFILES_DIR=$TEST_SRCDIR "$root/install" "$prefix" 2>"$prefix/install.err"
cat "$prefix/install.err" >&2
# The install says how the library was built, and warns unless optimised.
mode=$(cat "$root/build_mode.txt")
grep -qx "build=$mode" "$prefix/lib/pkgconfig/vmrdma.pc" || { echo "vmrdma.pc lacks build=$mode" >&2; exit 1; }
if [ "$mode" = opt ]; then
    ! grep -q "not optimised" "$prefix/install.err" || { echo "warned about an optimised build" >&2; exit 1; }
else
    grep -q "not optimised" "$prefix/install.err" || { echo "no warning for a '$mode' build" >&2; exit 1; }
    grep -q -- "--config=release" "$prefix/install.err" || { echo "the warning does not say how" >&2; exit 1; }
fi
[ "$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --variable=build vmrdma)" = "$mode" ]
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
flags=$(pkg-config --cflags --libs vmrdma)
echo "pkg-config: $flags"
g++ -Wall -Wextra -Werror "$root/examples/runtime_demo.cc" $flags -o "$prefix/runtime_demo"
"$prefix/runtime_demo"
# The RDMA API header compiles and links on its own too.
cat > "$prefix/api.cc" <<'CC'
#include <vmrdma/rdma.hpp>
#include <vmrdma/runtime.hpp>
int main() {
    vmrdma::event_loop loop;
    try {
        vmrdma::device::open(loop, "nonsense:x");
    } catch (const vmrdma::error& e) {
        return e.code() == vmrdma::errc::invalid_argument ? 0 : 1;
    }
    return 1;
}
CC
g++ -Wall -Wextra -Werror "$prefix/api.cc" $flags -o "$prefix/api"
"$prefix/api"
echo "built and ran two programs against the installed vmrdma"
# The libfabric provider: installed where FI_PROVIDER_PATH finds it, and
# libfabric loads it (fi_info -l lists the providers it loaded).
[ -x "$prefix/lib/libfabric/libvmrdma-fi.so" ] || { echo "no lib/libfabric/libvmrdma-fi.so" >&2; exit 1; }
FI_PROVIDER_PATH=$prefix/lib/libfabric fi_info -l >"$prefix/fi_info_list.out" 2>&1
grep -q "^vmrdma:" "$prefix/fi_info_list.out" || { cat "$prefix/fi_info_list.out" >&2; echo "libfabric does not list the vmrdma provider" >&2; exit 1; }
