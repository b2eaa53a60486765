#!/usr/bin/env bash
# Runs every vmrdma test (installs missing Debian packages first):
#   1. bazel test //...  (unit, engine, simulation, transports, daemon, tools),
#      and eth_ops_test again through the other receive paths (VMRDMA_ETH_RX=uring,
#      recvmmsg), split_ops_test (vmrdmad) through uring;
#   2. the kernel checks: proto/ and both Xen modules built with kbuild
#      (tests/kbuild/build.sh), loaded in Debian's kernel under QEMU
#      (tests/qemu/run_module_test.sh), and the split driver under real Xen
#      in QEMU (tests/xen/run_xen_test.sh: one host, then two hosts).
#      Four to eight minutes on a shared two-core machine once the kernel
#      and Xen packages are cached;
#   3. the libfabric provider end to end (tests/fabric/run_fabric_test.sh:
#      fabtests, fi_pingpong and Open MPI across two namespaces), about
#      five minutes once fabtests are cached (three with --quick, as CI runs it).
# With arguments only Bazel runs: they go to `bazel test`, e.g.
# ./test.sh --config=asan; targets after `--` replace //..., e.g.
# ./test.sh --config=tsan -- //tests/coro/...
set -uo pipefail
cd "$(dirname "$0")"
if [ $# -gt 0 ]; then
    scripts/deps.sh || exit 1
    options=()
    targets=()
    while [ $# -gt 0 ]; do
        if [ "$1" = "--" ]; then
            shift
            targets=("$@")
            break
        fi
        options+=("$1")
        shift
    done
    [ ${#targets[@]} -gt 0 ] || targets=(//...)
    exec bazel test "${options[@]}" -- "${targets[@]}"
fi
scripts/deps.sh make || exit 1
failed=()
bazel test //... || failed+=("bazel test //...")
# The eth: transport's other receive paths (docs/eth-transport.md, "Receive").
for rx in uring recvmmsg; do
    bazel test --test_env=VMRDMA_ETH_RX=$rx //tests/eth:eth_ops_test || failed+=("eth_ops_test, VMRDMA_ETH_RX=$rx")
done
# vmrdmad with the io_uring receive: its responses are made in the reap, and
# their doorbells must ring before it sleeps (docs/split-driver.md, "Doorbells").
bazel test --test_env=VMRDMA_ETH_RX=uring //tests/split:split_ops_test || failed+=("split_ops_test, VMRDMA_ETH_RX=uring")
for check in tests/kbuild/build.sh tests/qemu/run_module_test.sh tests/xen/run_xen_test.sh \
    tests/fabric/run_fabric_test.sh; do
    echo "=== $check"
    "$check" || failed+=("$check")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: FAILED: ${failed[*]}"
    exit 1
fi
echo "test.sh: every test passed (bazel test //..., kbuild, QEMU module load, Xen split driver, libfabric provider)"
