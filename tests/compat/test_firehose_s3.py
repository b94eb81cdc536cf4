"""Firehose delivery into a real S3-compatible server: s3s-fs (installed by
scripts/test-servers.sh, which `make test` runs), started here on loopback. The daemon's
`[delivery.s3]` points every bucket there; objects are read back with boto3's s3 client, with
their Content-Encoding, under the keys AWS would give them."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from conftest import FAST_CONFIG, free_port, make_client, unique_name

AK, SK = "sluice-test-key", "sluice-test-secret"
ROLE = "arn:aws:iam::123456789012:role/FirehoseRole"


def s3s_binary() -> Path:
    env = os.environ.get("S3S_FS")
    if env:
        return Path(env)
    return Path(os.environ.get("SLUICE_TOOLS", Path.home() / ".cache" / "sluice-tools")) / "bin" / "s3s-fs"


@pytest.fixture
def s3(tmp_path):
    binary = s3s_binary()
    if not binary.exists():
        pytest.fail(f"s3s-fs not found at {binary}: run scripts/test-servers.sh (make test does)")
    port = free_port()
    root = tmp_path / "s3"
    root.mkdir()
    log = open(tmp_path / "s3s.log", "wb")
    proc = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), "--access-key", AK, "--secret-key", SK, str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("s3s-fs did not start")
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 2, "mode": "standard"}),
    )
    yield endpoint, client
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_delivery_into_an_s3_compatible_server(new_daemon, s3):
    endpoint, s3c = s3
    bucket = unique_name("data-lake-raw").lower()
    s3c.create_bucket(Bucket=bucket)
    d = new_daemon(
        FAST_CONFIG
        + '[delivery]\nbuffering_interval_cap = "1s"\n'
        + f'[delivery.s3]\nendpoint = "{endpoint}"\naccess_key_id = "{AK}"\nsecret_access_key = "{SK}"\n'
    )
    kinesis = make_client(d.endpoint)
    firehose = make_client(d.endpoint, service="firehose")
    stream = unique_name("sensor-data-stream")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    name = unique_name("to-s3")
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={
            "KinesisStreamARN": f"arn:aws:kinesis:us-east-1:123456789012:stream/{stream}", "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE,
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "sensor-data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/",
            "ErrorOutputPrefix": "errors/",
            "CompressionFormat": "GZIP",
        },
    )
    sent = [{"sensor_id": f"sensor-{i % 5}", "value": i} for i in range(300)]
    for i in range(0, len(sent), 100):
        r = kinesis.put_records(StreamName=stream, Records=[
            {"Data": json.dumps(x), "PartitionKey": x["sensor_id"]} for x in sent[i:i + 100]])
        assert r["FailedRecordCount"] == 0

    def fetch():
        out = {}
        for page in s3c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                out[o["Key"]] = s3c.get_object(Bucket=bucket, Key=o["Key"])
        return out

    deadline = time.monotonic() + 30
    while True:
        objs = fetch()
        bodies = {k: gzip.decompress(o["Body"].read()) for k, o in objs.items()}
        got = []
        for b in bodies.values():
            text, at, dec = b.decode(), 0, json.JSONDecoder()
            while at < len(text):
                v, at = dec.raw_decode(text, at)
                got.append(v)
        if len(got) >= len(sent) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(json.dumps(v) for v in got) == sorted(json.dumps(v) for v in sent), d.log_tail()
    for key, o in objs.items():
        assert key.startswith("sensor-data/year=") and key.endswith(".gz"), key
        assert f"/{name}-1-" in key
        assert o["ContentEncoding"] == "gzip"
    for sensor in {r["sensor_id"] for r in sent}:
        seen = [v["value"] for v in got if v["sensor_id"] == sensor]
        assert seen == sorted(seen)
    # Nothing went to the bucket directory: every object is on the server.
    assert not (Path(d.data_dir) / "buckets").exists()


def test_a_kinesis_channel_delivers_into_an_s3_compatible_server(new_daemon, s3):
    """A Kinesis channel (CreateChannel) on the same engine: ZSTD objects under its
    OutputKeyTemplate, with Content-Encoding zstd, and its dead-letter entries in another bucket."""
    import zstandard

    endpoint, s3c = s3
    bucket, dlq = unique_name("channel-lake").lower(), unique_name("channel-dlq").lower()
    s3c.create_bucket(Bucket=bucket)
    s3c.create_bucket(Bucket=dlq)
    d = new_daemon(
        FAST_CONFIG
        + '[delivery]\nbuffering_interval_cap = "1s"\n'
        + f'[delivery.s3]\nendpoint = "{endpoint}"\naccess_key_id = "{AK}"\nsecret_access_key = "{SK}"\n'
    )
    kinesis = make_client(d.endpoint)
    stream = unique_name("orders")
    kinesis.create_stream(StreamName=stream, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    owner = "123456789012"
    channel = kinesis.create_channel(
        ChannelName=unique_name("orders-to-s3"),
        ServiceExecutionRoleARN=ROLE,
        StreamConfigurationList=[{"StreamARN": arn, "RecordConfiguration": {"RecordFormatType": "JSON"}}],
        S3DestinationConfiguration={
            "StorageConfiguration": {
                "BucketARN": f"arn:aws:s3:::{bucket}",
                "ExpectedBucketOwner": owner,
                "CompressionType": "ZSTD",
                "OutputKeyTemplate": "orders/stream=!{stream-name}/!{yyyy}/!{MM}/!{dd}/!{channel-name}!{extension}",
            },
            "DeadLetterQueueS3Configuration": {
                "BucketARN": f"arn:aws:s3:::{dlq}",
                "ExpectedBucketOwner": owner,
                "ErrorOutputPrefix": "bad/",
            },
        },
    )["ChannelDescription"]
    deadline = time.monotonic() + 10
    while kinesis.describe_channel(ChannelARN=channel["ChannelARN"])["ChannelDescription"]["ChannelStatus"] != "ACTIVE":
        assert time.monotonic() < deadline, d.log_tail()
        time.sleep(0.05)
    sent = [json.dumps({"order": i}).encode() for i in range(200)]
    records = [{"Data": b, "PartitionKey": f"k{i % 7}"} for i, b in enumerate(sent)]
    records.insert(50, {"Data": b"not json", "PartitionKey": "k0"})
    r = kinesis.put_records(StreamName=stream, Records=records)
    assert r["FailedRecordCount"] == 0
    bad_seq = r["Records"][50]["SequenceNumber"]

    def keys(b):
        return [o["Key"] for page in s3c.get_paginator("list_objects_v2").paginate(Bucket=b) for o in page.get("Contents", [])]

    deadline = time.monotonic() + 30
    while True:
        got = []
        for k in keys(bucket):
            body = zstandard.ZstdDecompressor().decompressobj().decompress(s3c.get_object(Bucket=bucket, Key=k)["Body"].read())
            text, at, dec = body.decode(), 0, json.JSONDecoder()
            while at < len(text):
                v, at = dec.raw_decode(text, at)
                got.append(v)
        if (len(got) >= len(sent) and keys(dlq)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(got, key=lambda v: v["order"]) == [json.loads(b) for b in sent], d.log_tail()
    for k in keys(bucket):
        assert k.startswith(f"orders/stream={stream}/") and k.endswith(".zst"), k
        assert s3c.head_object(Bucket=bucket, Key=k)["ContentEncoding"] == "zstd"
    [dead] = keys(dlq)
    assert dead.startswith("bad/") and dead.endswith(".json"), dead
    [entry] = [json.loads(line) for line in s3c.get_object(Bucket=dlq, Key=dead)["Body"].read().splitlines()]
    assert entry["sequenceNumber"] == bad_seq and entry["streamARN"] == arn
    assert entry["errorCode"] == "InvalidRecordFormat" and "rawData" not in entry


def test_analytics_reference_data_from_the_s3_compatible_server(new_daemon, s3):
    """A Kinesis Analytics application joins a reference table read from the S3-compatible server
    (JSON lines, uploaded with boto3's s3 client)."""
    from test_analytics import app_over, in_app_schema, put_readings, wait_records

    endpoint, s3c = s3
    bucket = unique_name("reference").lower()
    s3c.create_bucket(Bucket=bucket)
    s3c.put_object(Bucket=bucket, Key="sites.json", Body=b'{"id": "sensor-0", "site": "roof"}\n{"id": "sensor-1", "site": "cellar"}\n')
    d = new_daemon(
        FAST_CONFIG
        + '[analytics]\ntick = "100ms"\n'
        + f'[delivery.s3]\nendpoint = "{endpoint}"\naccess_key_id = "{AK}"\nsecret_access_key = "{SK}"\n'
    )
    kinesis = make_client(d.endpoint)
    ka = make_client(d.endpoint, service="kinesisanalytics")
    reference = {
        "TableName": "SITES",
        "S3ReferenceDataSource": {"BucketARN": f"arn:aws:s3:::{bucket}", "FileKey": "sites.json", "ReferenceRoleARN": ROLE},
        "ReferenceSchema": in_app_schema([("ID", "VARCHAR(16)", "$.id"), ("SITE", "VARCHAR(16)", "$.site")]),
    }
    code = '''CREATE OR REPLACE PUMP "p" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM s.sensor_id, r.site FROM "SOURCE_SQL_STREAM_001" AS s JOIN "SITES" AS r ON r.id = s.sensor_id;'''
    src, outs = app_over(ka, kinesis, "s3-reference", code, [("DESTINATION_SQL_STREAM", "JSON")], references=[reference])
    put_readings(kinesis, src, [("sensor-1", 1.0), ("sensor-7", 2.0), ("sensor-0", 3.0)])
    rows = wait_records(kinesis, outs["DESTINATION_SQL_STREAM"], 2, "joined rows")
    assert rows == [{"SENSOR_ID": "sensor-1", "SITE": "cellar"}, {"SENSOR_ID": "sensor-0", "SITE": "roof"}]
