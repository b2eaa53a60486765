#!/usr/bin/env bash
# The main job: a real RDMA transfer between two network namespaces
# (installs missing Debian packages first, then builds and runs).
# Options go to the program: ./quickstart.sh --help
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
bazel build --config=release --noshow_progress --ui_event_filters=-info //examples:quickstart
exec bazel-bin/examples/quickstart "$@"
