#!/usr/bin/env bash
# Creates .venv with what the compatibility suite needs (boto3, the AWS CLI, pytest), and installs
# the AWS SDK for JavaScript v3 under tests/js (from its lock file).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import boto3, pytest, awscli" 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check -r tests/compat/requirements.txt
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
