#!/usr/bin/env bash
# Installs vmrdma for use outside Bazel: headers, libvmrdma.so, vmrdma.pc and
# the libfabric provider lib/libfabric/libvmrdma-fi.so (docs/mpi.md).
#   bazel run --config=release //:install -- [PREFIX]   (default PREFIX: /usr/local)
# Then: g++ -std=c++20 app.cc $(pkg-config --cflags --libs vmrdma)
# (with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a PREFIX pkg-config does not search).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
prefix=${1:-/usr/local}
case "$prefix" in /*) ;; *) prefix="${BUILD_WORKING_DIRECTORY:-$PWD}/$prefix" ;; esac

# Inside `bazel run` (or a test) the inputs sit in the runfiles tree.
here=${RUNFILES_DIR:-$0.runfiles}/vmrdma
[ -d "$here" ] || here=$(cd "$(dirname "$0")/.." && pwd)

mode=$(cat "$here/build_mode.txt" 2>/dev/null || echo unknown)
if [ "$mode" != opt ]; then
    # An application built against this runs 1.3x (64 MiB writes) to 2x
    # (4 KiB writes) slower than against the optimised library.
    echo "vmrdma install: warning: this library is a '$mode' build, not optimised;" \
         "for applications install it with: bazel run --config=release //:install -- $prefix" >&2
fi

# (mkdir/cp, not install(1): this script is itself called `install` in Bazel)
mkdir -p "$prefix/include/vmrdma" "$prefix/lib/pkgconfig" "$prefix/lib/libfabric"
cp "$here"/coro/include/vmrdma/*.hpp "$prefix/include/vmrdma/"
chmod 0644 "$prefix"/include/vmrdma/*.hpp
cp "$here/libvmrdma.so" "$prefix/lib/libvmrdma.so"
chmod 0755 "$prefix/lib/libvmrdma.so"
# libfabric loads it from a directory on FI_PROVIDER_PATH (docs/mpi.md).
cp "$here/fabric/libvmrdma-fi.so" "$prefix/lib/libfabric/libvmrdma-fi.so"
chmod 0755 "$prefix/lib/libfabric/libvmrdma-fi.so"
cat > "$prefix/lib/pkgconfig/vmrdma.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: vmrdma
Description: RDMA semantics over plain Ethernet with a C++20 coroutine API
Version: 0.1.0
# compilation mode of libvmrdma.so: opt is the optimised build
build=$mode
Requires: liburing libsodium
Cflags: -std=c++20 -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lvmrdma
PC
echo "vmrdma ($mode build) installed under $prefix (headers, lib/libvmrdma.so, lib/pkgconfig/vmrdma.pc," \
     "lib/libfabric/libvmrdma-fi.so: FI_PROVIDER_PATH=$prefix/lib/libfabric)"
