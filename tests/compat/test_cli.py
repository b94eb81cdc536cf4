"""The AWS CLI (v1, the venv's `aws`) against sluice, through --endpoint-url.

AWS CLI v1 takes a blob argument such as `put-record --data` as a plain string and base64-encodes
it itself, and prints blobs of responses (get-records' Data) base64-encoded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conftest
from conftest import hash_key, unique_name


def find_aws() -> str | None:
    beside = Path(sys.executable).parent / "aws"
    if beside.exists():
        return str(beside)
    return shutil.which("aws")


AWS = find_aws()
pytestmark = pytest.mark.skipif(AWS is None, reason="the `aws` CLI executable is not installed")


@pytest.fixture(scope="module")
def aws(endpoint):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": conftest.CLIENT_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": conftest.CLIENT_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [AWS, "kinesis", *args, "--endpoint-url", endpoint, "--output", "json"]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if check:
            assert p.returncode == 0, f"{cmd} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
        return p

    def run_json(*args: str) -> dict:
        out = run(*args).stdout
        return json.loads(out) if out.strip() else {}

    run.json = run_json
    return run


def test_cli_stream_lifecycle(aws, kinesis):
    name = unique_name("cli")
    assert aws.json("create-stream", "--stream-name", name, "--shard-count", "2") == {}

    deadline = time.monotonic() + 30
    while True:
        summary = aws.json("describe-stream-summary", "--stream-name", name)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            break
        assert summary["StreamStatus"] == "CREATING"
        assert time.monotonic() < deadline, "stream never became ACTIVE"
        time.sleep(0.05)
    assert summary["OpenShardCount"] == 2
    assert summary["StreamName"] == name

    # Creating it again fails with the AWS error code on stderr and exit status 255.
    again = aws("create-stream", "--stream-name", name, "--shard-count", "2", check=False)
    assert again.returncode == 255
    assert "ResourceInUseException" in again.stderr

    assert name in aws.json("list-streams")["StreamNames"]

    shards = aws.json("list-shards", "--stream-name", name)["Shards"]
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"]

    text = "hello from aws cli v1 ✓"
    put = aws.json("put-record", "--stream-name", name, "--partition-key", "cli-key", "--data", text)
    h = hash_key("cli-key")
    owner = next(s["ShardId"] for s in shards
                 if int(s["HashKeyRange"]["StartingHashKey"]) <= h <= int(s["HashKeyRange"]["EndingHashKey"]))
    assert put["ShardId"] == owner

    it = aws.json("get-shard-iterator", "--stream-name", name, "--shard-id", put["ShardId"],
                  "--shard-iterator-type", "TRIM_HORIZON")["ShardIterator"]
    got = aws.json("get-records", "--shard-iterator", it)
    assert len(got["Records"]) == 1
    rec = got["Records"][0]
    assert rec["SequenceNumber"] == put["SequenceNumber"]
    assert rec["PartitionKey"] == "cli-key"
    # The CLI sent the plain string's UTF-8 bytes and prints the stored blob base64-encoded.
    assert base64.b64decode(rec["Data"]) == text.encode("utf-8")
    assert got["MillisBehindLatest"] == 0
    # boto3 sees the same bytes.
    b3 = kinesis.get_records(ShardIterator=kinesis.get_shard_iterator(
        StreamName=name, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"])
    assert [r["Data"] for r in b3["Records"]] == [text.encode("utf-8")]

    assert aws.json("delete-stream", "--stream-name", name) == {}
    deadline = time.monotonic() + 30
    while True:
        gone = aws("describe-stream-summary", "--stream-name", name, check=False)
        if gone.returncode != 0:
            break
        assert json.loads(gone.stdout)["StreamDescriptionSummary"]["StreamStatus"] == "DELETING"
        assert time.monotonic() < deadline, "stream never went away"
        time.sleep(0.05)
    assert gone.returncode == 255
    assert "ResourceNotFoundException" in gone.stderr
    assert name not in aws.json("list-streams")["StreamNames"]
