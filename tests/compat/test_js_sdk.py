"""The AWS SDK for JavaScript v3 (its default HTTP/2 handler, prior knowledge on http://)
subscribing with SubscribeToShard. The Node packages are installed by scripts/venv.sh."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent.parent / "js"


def test_js_sdk_v3_subscribes_over_http2(endpoint, make_stream):
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@aws-sdk" / "client-kinesis").exists():
        pytest.fail("node and tests/js/node_modules are required: run scripts/venv.sh")
    name = make_stream(shard_count=1)
    out = subprocess.run(
        [node, str(JS / "subscribe.mjs"), endpoint, name], capture_output=True, text=True, timeout=90
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["handler"] == "NodeHttp2Handler", result
    assert result["data"] == ["before-0", "before-1", "before-2", "after-0", "after-1", "after-2"]
    assert result["continuation"] and len(result["continuation"]) == 56
