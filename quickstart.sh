#!/usr/bin/env bash
# The main job (installs missing Debian packages first, then builds and runs).
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
bazel build --config=release --noshow_progress --ui_event_filters=-info //examples:runtime_demo
exec bazel-bin/examples/runtime_demo "$@"
