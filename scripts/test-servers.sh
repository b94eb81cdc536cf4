#!/usr/bin/env bash
# Installs the servers the tests start themselves: s3s-fs (an S3-compatible server over plain
# files, for S3 delivery). Cached under $SLUICE_TOOLS (default ~/.cache/sluice-tools), so only the
# first run on a machine builds it (about 3 minutes).
set -euo pipefail
TOOLS="${SLUICE_TOOLS:-$HOME/.cache/sluice-tools}"
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    # 0.14.1 is the last release that builds with this toolchain (later ones need a newer rustc).
    nice -n 10 cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$TOOLS" --quiet
fi
echo "$TOOLS/bin/s3s-fs"
