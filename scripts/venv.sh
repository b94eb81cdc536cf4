#!/usr/bin/env bash
# Creates .venv with what the compatibility suite needs (boto3, the AWS CLI, pytest), and installs
# the AWS SDK for JavaScript v3 under tests/js (from its lock file).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import boto3, pytest, awscli, snappy, zstandard" 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check -r tests/compat/requirements.txt
fi
# amazon_kclpy: the sdist's pure-Python package only. Its setup.py downloads the KCL's jars from a
# Java repository; the multi-language protocol it speaks needs none of them.
KCLPY_URL=https://files.pythonhosted.org/packages/30/f0/1fa4c9609c89a74daf44bb3bb2b95220b80119cf6c94d4f094126733b791/amazon_kclpy-3.2.0.tar.gz
KCLPY_SHA256=62e81cc84714c920fe6aa5d61837b298fe7e01f6326dcb564b12ab8e6c4aca4e
if ! .venv/bin/python -c "import amazon_kclpy.kcl" 2>/dev/null; then
    tmp=$(mktemp -d)
    curl -fsSL -o "$tmp/kclpy.tar.gz" "$KCLPY_URL"
    echo "$KCLPY_SHA256  $tmp/kclpy.tar.gz" | sha256sum -c --quiet
    tar -xzf "$tmp/kclpy.tar.gz" -C "$tmp"
    site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    cp -r "$tmp/amazon_kclpy-3.2.0/amazon_kclpy" "$site/"
    rm -rf "$tmp"
fi
if [ ! -d tests/js/node_modules/@aws-sdk/client-kinesis ]; then
    if ! command -v npm >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
