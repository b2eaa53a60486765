#!/usr/bin/env bash
# Runs every vmrdma test (installs missing Debian packages first).
# Extra arguments go to `bazel test`, e.g. ./test.sh --config=asan
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
exec bazel test //... "$@"
