#!/usr/bin/env bash
# Installs what building Sluice needs on Debian or Ubuntu, if it is missing:
#   librocksdb-dev  the distribution's RocksDB, which the pinned `rocksdb` crate links against
#                   (building RocksDB from source instead takes 15+ minutes on two cores)
#   libclang-dev    bindgen, used by librocksdb-sys to read RocksDB's C header
#   build-essential a C/C++ toolchain for the crates that compile C (zstd, ring)
set -euo pipefail

need=()
for pkg in librocksdb-dev libclang-dev build-essential pkg-config curl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing build dependencies: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install a Rust toolchain (https://rustup.rs), 1.85 or newer" >&2
    exit 1
fi
