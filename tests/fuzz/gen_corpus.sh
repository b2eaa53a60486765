#!/usr/bin/env bash
# Regenerates tests/fuzz/corpus/ (the rx_fuzz seeds) with gen_corpus.c.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -std=gnu11 -Wall -Wextra -Werror -O1 -I"$root/proto" -I"$here" \
    "$here/gen_corpus.c" "$root/proto/wire.c" "$root/proto/crc32c.c" -o "$tmp/gen_corpus"
mkdir -p "$here/corpus"
"$tmp/gen_corpus" "$here/corpus"
