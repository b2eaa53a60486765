#!/usr/bin/env bash
# Runs every vmrdma test (installs missing Debian packages first).
# Extra arguments go to `bazel test`, e.g. ./test.sh --config=asan; targets
# after `--` replace //..., e.g. ./test.sh --config=tsan -- //tests/coro/...
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
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
