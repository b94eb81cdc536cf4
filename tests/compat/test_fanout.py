"""Enhanced fan-out with boto3: consumer registration and subscribe_to_shard over chunked HTTP/1.1."""

from __future__ import annotations

import threading
import time

import botocore.exceptions
import pytest


def register_active(kinesis, stream_arn: str, name: str) -> str:
    arn = kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)["Consumer"]["ConsumerARN"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        d = kinesis.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]
        if d["ConsumerStatus"] == "ACTIVE":
            return arn
        time.sleep(0.02)
    pytest.fail("consumer did not become ACTIVE")


def stream_arn(kinesis, name: str) -> str:
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def test_consumer_lifecycle_and_errors(kinesis, make_stream):
    name = make_stream(shard_count=1)
    arn = stream_arn(kinesis, name)
    out = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app-1")["Consumer"]
    assert out["ConsumerARN"].startswith(arn + "/consumer/app-1:")
    assert out["ConsumerStatus"] in ("CREATING", "ACTIVE")
    register_active(kinesis, arn, "app-2")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app-1")
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"
    listed = kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]
    assert [c["ConsumerName"] for c in listed] == ["app-1", "app-2"]
    page = kinesis.list_stream_consumers(StreamARN=arn, MaxResults=1)
    assert len(page["Consumers"]) == 1 and "NextToken" in page
    rest = kinesis.list_stream_consumers(StreamARN=arn, NextToken=page["NextToken"])
    assert [c["ConsumerName"] for c in rest["Consumers"]] == ["app-2"]
    by_name = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="app-2")["ConsumerDescription"]
    assert by_name["StreamARN"] == arn
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["ConsumerCount"] == 2
    kinesis.deregister_stream_consumer(ConsumerARN=out["ConsumerARN"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = [c["ConsumerName"] for c in kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]]
        if names == ["app-2"]:
            break
        time.sleep(0.02)
    assert names == ["app-2"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kinesis.describe_stream_consumer(ConsumerARN=out["ConsumerARN"])
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def read_events(kinesis, consumer_arn, shard_id, position, want, timeout=20.0):
    """Subscribes and collects records until `want` arrived; returns (records, events)."""
    resp = kinesis.subscribe_to_shard(ConsumerARN=consumer_arn, ShardId=shard_id, StartingPosition=position)
    records, events = [], []
    deadline = time.monotonic() + timeout
    for event in resp["EventStream"]:
        assert "SubscribeToShardEvent" in event, event
        ev = event["SubscribeToShardEvent"]
        events.append(ev)
        records.extend(ev["Records"])
        if len(records) >= want or time.monotonic() > deadline:
            break
    resp["EventStream"].close()
    return records, events


def test_subscribe_to_shard_delivers_old_and_new_records(kinesis, make_stream):
    name = make_stream(shard_count=1)
    arn = stream_arn(kinesis, name)
    consumer = register_active(kinesis, arn, "reader")
    before = [kinesis.put_record(StreamName=name, Data=f"before-{i}".encode(), PartitionKey="k") for i in range(5)]

    def put_later():
        time.sleep(0.3)
        for i in range(5):
            kinesis.put_record(StreamName=name, Data=f"after-{i}".encode(), PartitionKey="k")

    t = threading.Thread(target=put_later)
    t.start()
    records, events = read_events(kinesis, consumer, "shardId-000000000000", {"Type": "TRIM_HORIZON"}, want=10)
    t.join()
    assert [r["Data"] for r in records] == [f"before-{i}".encode() for i in range(5)] + [f"after-{i}".encode() for i in range(5)]
    assert [r["SequenceNumber"] for r in records[:5]] == [b["SequenceNumber"] for b in before]
    assert all("ApproximateArrivalTimestamp" in r and r["PartitionKey"] == "k" for r in records)
    last = events[-1]
    # The position after the last record: above its sequence number, below the next one's.
    assert int(last["ContinuationSequenceNumber"]) > int(records[-1]["SequenceNumber"])
    assert last["MillisBehindLatest"] >= 0

    # Resuming after the continuation gives the next record and nothing before it.
    kinesis.put_record(StreamName=name, Data=b"resumed", PartitionKey="k")
    # AWS documents both AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER with a continuation: both
    # resume at the next record.
    for kind in ("AFTER_SEQUENCE_NUMBER", "AT_SEQUENCE_NUMBER"):
        deadline = time.monotonic() + 6  # the previous subscription's slot frees when it closes
        while True:
            try:
                again, _ = read_events(
                    kinesis, consumer, "shardId-000000000000",
                    {"Type": kind, "SequenceNumber": last["ContinuationSequenceNumber"]}, want=1,
                )
                break
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] != "ResourceInUseException" or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert [r["Data"] for r in again] == [b"resumed"], kind


def test_latest_and_at_timestamp_positions(kinesis, make_stream):
    name = make_stream(shard_count=1)
    arn = stream_arn(kinesis, name)
    consumer_a = register_active(kinesis, arn, "latest")
    consumer_b = register_active(kinesis, arn, "at-ts")
    kinesis.put_record(StreamName=name, Data=b"old", PartitionKey="k")
    time.sleep(0.05)
    ts = time.time()
    time.sleep(0.05)

    def put_later():
        time.sleep(0.3)
        kinesis.put_record(StreamName=name, Data=b"new", PartitionKey="k")

    t = threading.Thread(target=put_later)
    t.start()
    latest, _ = read_events(kinesis, consumer_a, "shardId-000000000000", {"Type": "LATEST"}, want=1)
    t.join()
    assert [r["Data"] for r in latest] == [b"new"]
    at_ts, _ = read_events(kinesis, consumer_b, "shardId-000000000000", {"Type": "AT_TIMESTAMP", "Timestamp": ts}, want=1)
    assert [r["Data"] for r in at_ts] == [b"new"]


def test_a_second_subscription_is_refused_then_takes_over(kinesis, make_stream, endpoint):
    name = make_stream(shard_count=1)
    arn = stream_arn(kinesis, name)
    consumer = register_active(kinesis, arn, "one")
    first = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"
    first["EventStream"].close()


def test_subscribe_errors(kinesis, make_stream):
    name = make_stream(shard_count=1)
    arn = stream_arn(kinesis, name)
    consumer = register_active(kinesis, arn, "err")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000009", StartingPosition={"Type": "LATEST"})
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kinesis.subscribe_to_shard(ConsumerARN=arn + "/consumer/nobody:1", ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "AT_SEQUENCE_NUMBER"})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
