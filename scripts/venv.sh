#!/usr/bin/env bash
# Creates .venv with what the compatibility suite needs (boto3, the AWS CLI, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import boto3, pytest, awscli" 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check -r tests/compat/requirements.txt
fi
