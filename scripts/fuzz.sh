#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20), starting from the committed seed corpus.
# A crash fails the run and leaves the input in fuzz/artifacts/<target>/.
#   scripts/fuzz.sh            short run, as CI does
#   scripts/fuzz.sh 3600       an hour per target
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable compiler provide them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build -O
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
    mkdir -p "$work/$target"
    log="$work/$target.log"
    if ! cargo fuzz run -O "$target" "$work/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $target FAILED" >&2
        exit 1
    fi
    runs="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)"
    echo "fuzz: $target ok: ${runs:-no summary}"
done
