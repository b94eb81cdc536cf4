"""The seed's Firehose example end to end, with its Lambda processor run by a
`[[delivery.functions]]` command: its create call unchanged, the seed's producer putting sensor
readings into the Kinesis stream, objects under the seed's time-based prefix with every record
once, in per-shard order, byte-identical. And transformation as Firehose does it: records
transformed, dropped, failed (in AWS's error JSON under the error prefix), a function that
fails every time, and a Lambda ARN that no entry runs."""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

import conftest
from conftest import FAST_CONFIG, make_client, unique_name

TRANSFORM = Path(__file__).resolve().parent / "firehose" / "transform.py"
ROLE = "arn:aws:iam::123456789012:role/FirehoseRole"


def config(mode: str = "identity", arn: str = "arn:aws:lambda:*") -> str:
    return (
        FAST_CONFIG
        + '[delivery]\nbuffering_interval_cap = "1s"\n'
        + f'[[delivery.functions]]\narn = "{arn}"\ncommand = ["{sys.executable}", "{TRANSFORM}", "{mode}"]\n'
    )


def objects(d, bucket: str) -> dict[str, bytes]:
    root = Path(d.data_dir) / "buckets" / bucket
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".sluice-tmp")
    }


def json_values(blob: bytes) -> list[dict]:
    """The JSON objects of an object body, concatenated with no delimiter."""
    text, out, at = blob.decode(), [], 0
    dec = json.JSONDecoder()
    while at < len(text):
        v, at = dec.raw_decode(text, at)
        out.append(v)
    return out


def wait_for(pred, what: str, d, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; daemon log:\n{d.log_tail()}")


def seed_create(firehose, stream_arn: str, bucket: str, lambda_arn: str = "arn:aws:lambda:..."):
    # The seed's call, as the seed writes it (the bucket and names made unique for the test).
    return firehose.create_delivery_stream(
        DeliveryStreamName=unique_name("sensor-data-firehose"),
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE,
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "sensor-data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/",
            "ErrorOutputPrefix": "errors/",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 300},
            "CompressionFormat": "UNCOMPRESSED",
            "ProcessingConfiguration": {
                "Enabled": True,
                "Processors": [
                    {"Type": "Lambda", "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": lambda_arn}]}
                ],
            },
        },
    )


def put_readings(kinesis, stream: str, start: int, count: int) -> list[dict]:
    records = [{"sensor_id": f"sensor-{i % 8}", "value": i} for i in range(start, start + count)]
    # The seed's producer.
    response = kinesis.put_records(
        StreamName=stream, Records=[{"Data": json.dumps(r), "PartitionKey": r["sensor_id"]} for r in records]
    )
    assert response["FailedRecordCount"] == 0
    return records


def setup(new_daemon, mode="identity", arn="arn:aws:lambda:*", shards=4):
    d = new_daemon(config(mode, arn))
    kinesis = make_client(d.endpoint)
    firehose = make_client(d.endpoint, service="firehose")
    stream = unique_name("sensor-data-stream")
    kinesis.create_stream(StreamName=stream, ShardCount=shards, StreamModeDetails={"StreamMode": "PROVISIONED"})
    return d, kinesis, firehose, stream, f"arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"


def test_the_seed_example_end_to_end(new_daemon):
    d, kinesis, firehose, stream, arn = setup(new_daemon)
    bucket = unique_name("data-lake-raw").lower()
    name = seed_create(firehose, arn, bucket)["DeliveryStreamARN"].rsplit("/", 1)[1]
    sent = put_readings(kinesis, stream, 0, 200) + put_readings(kinesis, stream, 200, 100)
    today = datetime.now(timezone.utc)

    def delivered():
        got = [v for body in objects(d, bucket).values() for v in json_values(body)]
        return got if len(got) >= len(sent) else None

    got = wait_for(delivered, "every reading delivered", d)
    keys = list(objects(d, bucket))
    prefix = f"sensor-data/year={today:%Y}/month={today:%m}/day={today:%d}/"
    assert keys and all(k.startswith(prefix) for k in keys), keys
    assert all(Path(k).name.startswith(f"{name}-1-{today:%Y-%m-%d}-") for k in keys), keys
    # Every reading once, byte-identical (the identity transform), in order per partition key
    # (a shard holds whole partition keys, and objects are read in key order = time order).
    assert sorted(json.dumps(v) for v in got) == sorted(json.dumps(r) for r in sent)
    blob = b"".join(objects(d, bucket).values())
    assert blob.count(b"{") == len(sent)
    for sensor in {r["sensor_id"] for r in sent}:
        seen = [v["value"] for v in got if v["sensor_id"] == sensor]
        assert seen == sorted(seen), f"{sensor} out of order"
    assert not any(k.startswith("errors/") for k in keys)
    # The delivery stream's metrics.
    metrics = conftest.metrics_text(d.endpoint)
    series = dict(
        line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("sluice_delivery_") and name in line
    )
    label = f'{{delivery_stream="{name}"}}'
    assert float(series[f"sluice_delivery_records_total{label}"]) == len(sent), series
    assert float(series[f"sluice_delivery_incoming_records_total{label}"]) == len(sent)
    assert float(series[f"sluice_delivery_objects_total{label}"]) == len(keys)
    assert float(series[f"sluice_delivery_data_freshness_seconds{label}"]) == 0, "nothing left undelivered"


def test_transform_upper_cases_drops_and_fails_records(new_daemon):
    d, kinesis, firehose, stream, arn = setup(new_daemon, mode="mixed", shards=1)
    bucket = unique_name("transformed").lower()
    seed_create(firehose, arn, bucket)
    sent = put_readings(kinesis, stream, 1, 70)
    failed = [r for r in sent if r["value"] % 5 and r["value"] % 7 == 0]
    kept = [r for r in sent if r["value"] % 5 and r["value"] % 7]

    def done():
        objs = objects(d, bucket)
        data = [v for k, b in objs.items() if k.startswith("sensor-data/") for v in json_values(b)]
        errs = [json.loads(line) for k, b in objs.items() if k.startswith("errors/") for line in b.splitlines()]
        return (data, errs, objs) if len(data) >= len(kept) and len(errs) >= len(failed) else None

    data, errs, objs = wait_for(done, "transformed and failed records", d)
    expected = [json.loads(json.dumps(r).upper()) if r["value"] % 2 == 0 else r for r in kept]
    assert data == expected, "Ok records transformed, in order; Dropped ones gone"
    assert sorted(json.loads(base64.b64decode(e["rawData"]))["value"] for e in errs) == [r["value"] for r in failed]
    for e in errs:
        assert e["errorCode"] == "Lambda.ProcessingFailed"
        assert e["lambdaArn"] == "arn:aws:lambda:..."
        assert e["attemptsMade"] >= 1 and e["arrivalTimestamp"] > 0 and e["attemptEndingTimestamp"] >= e["arrivalTimestamp"]
    today = datetime.now(timezone.utc)
    error_keys = [k for k in objs if k.startswith("errors/")]
    assert all(k.startswith(f"errors/processing-failed/{today:%Y/%m/%d}/") for k in error_keys), error_keys


@pytest.mark.parametrize("case", ["no-entry", "failing"])
def test_records_the_function_cannot_take_go_to_processing_failed(new_daemon, case):
    if case == "no-entry":
        d, kinesis, firehose, stream, arn = setup(new_daemon, arn="arn:aws:lambda:us-west-2:*", shards=1)
    else:
        d, kinesis, firehose, stream, arn = setup(new_daemon, mode="fail", shards=1)
    bucket = unique_name("failing").lower()
    seed_create(firehose, arn, bucket)
    sent = put_readings(kinesis, stream, 0, 10)

    def errors():
        errs = [json.loads(l) for k, b in objects(d, bucket).items() if k.startswith("errors/") for l in b.splitlines()]
        return errs if len(errs) >= len(sent) else None

    errs = wait_for(errors, "processing-failed records", d, timeout=60)
    code = "Lambda.FunctionNotFound" if case == "no-entry" else "Lambda.FunctionError"
    assert {e["errorCode"] for e in errs} == {code}
    assert [json.loads(base64.b64decode(e["rawData"])) for e in errs] == sent
    assert not any(k.startswith("sensor-data/") for k in objects(d, bucket))
    if case == "failing":
        assert {e["attemptsMade"] for e in errs} == {4}, "NumberOfRetries 3 by default: 4 attempts"


def test_record_deaggregation_and_delimiters(new_daemon):
    """RecordDeAggregation (JSON) splits records of concatenated JSON objects, and
    AppendDelimiterToRecord puts each on a line of its own."""
    d = new_daemon(FAST_CONFIG + '[delivery]\nbuffering_interval_cap = "1s"\n')
    firehose = make_client(d.endpoint, service="firehose")
    bucket = unique_name("deagg").lower()
    name = unique_name("deagg")
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE,
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "ProcessingConfiguration": {"Enabled": True, "Processors": [
                {"Type": "RecordDeAggregation", "Parameters": [{"ParameterName": "SubRecordType", "ParameterValue": "JSON"}]},
                {"Type": "AppendDelimiterToRecord", "Parameters": []},
            ]},
        },
    )
    wait_for(lambda: firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
        "DeliveryStreamStatus"] == "ACTIVE", "ACTIVE", d)
    batches = [b"".join(json.dumps({"n": 3 * i + j}).encode() for j in range(3)) for i in range(20)]
    r = firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b} for b in batches])
    assert r["FailedPutCount"] == 0
    lines = wait_for(lambda: (lambda ls: ls if len(ls) >= 60 else None)(
        [l for b in objects(d, bucket).values() for l in b.decode().splitlines()]), "60 lines", d)
    assert [json.loads(l)["n"] for l in lines] == list(range(60))
    assert all(b.endswith(b"\n") for b in objects(d, bucket).values())


def test_dynamic_partitioning_with_a_jq_query(new_daemon):
    """MetadataExtraction's jq query gives each record its partition: one object per customer
    under `!{partitionKeyFromQuery:customer}`, records that are not JSON under
    partitioning-failed."""
    d = new_daemon(FAST_CONFIG + '[delivery]\nbuffering_interval_cap = "1s"\n')
    firehose = make_client(d.endpoint, service="firehose")
    bucket = unique_name("partitioned").lower()
    name = unique_name("partitioned")
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE,
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "customers/!{partitionKeyFromQuery:customer}/!{timestamp:yyyy}/",
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
            "DynamicPartitioningConfiguration": {"Enabled": True},
            "ProcessingConfiguration": {"Enabled": True, "Processors": [
                {"Type": "MetadataExtraction", "Parameters": [
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer: .customer.id}"},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
                {"Type": "AppendDelimiterToRecord", "Parameters": []},
            ]},
        },
    )
    wait_for(lambda: firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
        "DeliveryStreamStatus"] == "ACTIVE", "ACTIVE", d)
    sent = [{"customer": {"id": c}, "n": i} for i, c in enumerate(["acme", "globex", "initech"] * 10)]
    records = [{"Data": json.dumps(r).encode()} for r in sent] + [{"Data": b"not json"}]
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=records)["FailedPutCount"] == 0

    def done():
        objs = objects(d, bucket)
        return objs if sum(b.count(b"\n") for b in objs.values()) >= len(records) else None

    objs = wait_for(done, "every record delivered or failed", d)
    year = datetime.now(timezone.utc).year
    for customer in ["acme", "globex", "initech"]:
        mine = [k for k in objs if k.startswith(f"customers/{customer}/{year}/")]
        assert len(mine) == 1, (customer, list(objs))
        got = [json.loads(l) for l in objs[mine[0]].splitlines()]
        assert got == [r for r in sent if r["customer"]["id"] == customer]
    failed = [k for k in objs if k.startswith("errors/partitioning-failed/")]
    assert len(failed) == 1, list(objs)
    err = json.loads(objs[failed[0]])
    assert err["errorCode"] == "DynamicPartitioning.MetadataExtractionFailed"
    assert base64.b64decode(err["rawData"]) == b"not json"
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.create_delivery_stream(DeliveryStreamName=unique_name("p"), ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": "x/!{partitionKeyFromQuery:c}/",
            "ErrorOutputPrefix": "e/!{firehose:error-output-type}/",
            "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60},
            "DynamicPartitioningConfiguration": {"Enabled": True}})


def test_a_function_behind_an_http_url(new_daemon):
    """A `[[delivery.functions]]` entry with a url: the invocation event is POSTed there (as to
    the Lambda Runtime Interface Emulator) and its answer used as the function's."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    events = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            events.append(event)
            out = json.dumps({"records": [
                {"recordId": r["recordId"], "result": "Ok",
                 "data": base64.b64encode(base64.b64decode(r["data"])[::-1]).decode()}
                for r in event["records"]]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/2015-03-31/functions/function/invocations"
        d = new_daemon(FAST_CONFIG + '[delivery]\nbuffering_interval_cap = "1s"\n'
                       + f'[[delivery.functions]]\narn = "arn:aws:lambda:us-east-1:123456789012:function:rev"\nurl = "{url}"\n')
        firehose = make_client(d.endpoint, service="firehose")
        bucket = unique_name("reversed").lower()
        name = unique_name("reversed")
        firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
            "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
                {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:123456789012:function:rev"}]}]}})
        wait_for(lambda: firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
            "DeliveryStreamStatus"] == "ACTIVE", "ACTIVE", d)
        sent = [f"abc{i}|".encode() for i in range(10)]
        assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in sent])["FailedPutCount"] == 0
        body = wait_for(lambda: b"".join(objects(d, bucket).values()) or None, "an object", d)
        assert body == b"".join(r[::-1] for r in sent)
        e = events[0]
        assert e["deliveryStreamArn"].endswith(f":deliverystream/{name}") and e["region"] == "us-east-1"
        assert e["invocationId"] and all({"recordId", "approximateArrivalTimestamp", "data"} <= set(r) for r in e["records"])
    finally:
        server.shutdown()


def test_s3_backup_keeps_the_source_records_as_received(new_daemon):
    """S3BackupMode Enabled: every source record, before the function changed, dropped or failed
    it, goes to the backup destination (its own bucket, prefix and compression), once; the
    destination gets the transformed records. The mode is one-way."""
    import gzip

    d = new_daemon(config("mixed"))
    firehose = make_client(d.endpoint, service="firehose")
    name, bucket, backup = unique_name("backed-up"), unique_name("main").lower(), unique_name("backup").lower()
    processing = {
        "Enabled": True,
        "Processors": [
            {
                "Type": "Lambda",
                "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:1:function:m"}],
            }
        ],
    }
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE,
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "ErrorOutputPrefix": "errors/",
            "ProcessingConfiguration": processing,
            "S3BackupMode": "Enabled",
            "S3BackupConfiguration": {
                "RoleARN": ROLE,
                "BucketARN": f"arn:aws:s3:::{backup}",
                "Prefix": "source/",
                "CompressionFormat": "GZIP",
            },
        },
    )
    desc = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    dest = desc["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert dest["S3BackupMode"] == "Enabled"
    assert dest["S3BackupDescription"]["BucketARN"] == f"arn:aws:s3:::{backup}"
    assert dest["S3BackupDescription"]["Prefix"] == "source/"
    assert dest["S3BackupDescription"]["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 300}
    sent = [json.dumps({"value": i}).encode() for i in range(1, 61)]
    for i in range(0, 60, 20):
        r = firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b} for b in sent[i : i + 20]])
        assert r["FailedPutCount"] == 0

    def backed_up():
        got = [v for body in objects(d, backup).values() for v in json_values(gzip.decompress(body))]
        return got if len(got) >= len(sent) else None

    got = wait_for(backed_up, "every source record backed up", d)
    assert got == [json.loads(b) for b in sent], "the source records, once each, in order"
    keys = list(objects(d, backup))
    assert all(k.startswith("source/") and k.endswith(".gz") and f"/{name}-1-" in k for k in keys), keys
    # The destination has what the function made of them: 5's multiples dropped, 7's failed.
    main = wait_for(lambda: [v for k, b in objects(d, bucket).items() if not k.startswith("errors/") for v in json_values(b)] or None, "objects", d)
    kept = [i for i in range(1, 61) if i % 5 and i % 7]
    assert sorted(v["VALUE"] if "VALUE" in v else v["value"] for v in main) == kept
    # One-way: Enabled cannot go back to Disabled.
    with pytest.raises(firehose.exceptions.InvalidArgumentException, match="S3BackupMode"):
        firehose.update_destination(
            DeliveryStreamName=name,
            CurrentDeliveryStreamVersionId=desc["VersionId"],
            DestinationId=desc["Destinations"][0]["DestinationId"],
            ExtendedS3DestinationUpdate={"S3BackupMode": "Disabled"},
        )
    # The backup destination can be changed.
    firehose.update_destination(
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId=desc["VersionId"],
        DestinationId=desc["Destinations"][0]["DestinationId"],
        ExtendedS3DestinationUpdate={"S3BackupUpdate": {"Prefix": "source-v2/"}},
    )
    after = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    b = after["Destinations"][0]["ExtendedS3DestinationDescription"]["S3BackupDescription"]
    assert b["Prefix"] == "source-v2/" and b["CompressionFormat"] == "GZIP"
