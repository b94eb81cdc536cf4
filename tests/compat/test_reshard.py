"""Resharding with boto3: split, merge and UpdateShardCount while writing, then read the whole
stream end to end by following ChildShards, as a KCL-style consumer does."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from test_fanout import register_active, stream_arn


def wait_active(kinesis, name):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if s["StreamStatus"] == "ACTIVE":
            return s
        time.sleep(0.02)
    pytest.fail(f"{name} did not return to ACTIVE")


def put_batch(kinesis, name, counters, keys):
    recs = []
    for k in keys:
        counters[k] += 1
        recs.append({"PartitionKey": k, "Data": f"{k}#{counters[k]}".encode()})
    out = kinesis.put_records(StreamName=name, Records=recs)
    assert out["FailedRecordCount"] == 0


def read_following_child_shards(kinesis, name):
    """Reads every record: roots first, then each child once all its parents are finished."""
    roots = kinesis.list_shards(StreamName=name, ShardFilter={"Type": "AT_TRIM_HORIZON"})["Shards"]
    pending = [s["ShardId"] for s in roots]
    parents_of = {}
    finished, records = set(), []
    while pending:
        ready = [s for s in pending if all(p in finished for p in parents_of.get(s, []))]
        assert ready, f"stuck: {pending} wait for {parents_of}"
        for shard in ready:
            pending.remove(shard)
            it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while it:
                out = kinesis.get_records(ShardIterator=it)
                records.extend(r["Data"].decode() for r in out["Records"])
                it = out.get("NextShardIterator")
                if it and not out["Records"] and out["MillisBehindLatest"] == 0:
                    break  # an open shard, read to its tip
                for child in out.get("ChildShards", []):
                    parents_of[child["ShardId"]] = child["ParentShards"]
                    if child["ShardId"] not in pending and child["ShardId"] not in finished:
                        pending.append(child["ShardId"])
            finished.add(shard)
    return records


def test_reshard_while_writing_and_read_everything_through_child_shards(kinesis, make_stream):
    name = make_stream(shard_count=2)
    counters = defaultdict(int)
    keys = [f"sensor-{i}" for i in range(12)]
    put_batch(kinesis, name, counters, keys)
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    first = shards[0]
    lo, hi = int(first["HashKeyRange"]["StartingHashKey"]), int(first["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(StreamName=name, ShardToSplit=first["ShardId"], NewStartingHashKey=str((lo + hi) // 2 + 1))
    put_batch(kinesis, name, counters, keys)
    wait_active(kinesis, name)
    open_shards = sorted(
        kinesis.list_shards(StreamName=name, ShardFilter={"Type": "AT_LATEST"})["Shards"],
        key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]),
    )
    assert len(open_shards) == 3
    kinesis.merge_shards(StreamName=name, ShardToMerge=open_shards[1]["ShardId"], AdjacentShardToMerge=open_shards[2]["ShardId"])
    put_batch(kinesis, name, counters, keys)
    wait_active(kinesis, name)
    out = kinesis.update_shard_count(StreamName=name, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    assert out["TargetShardCount"] == 4
    put_batch(kinesis, name, counters, keys)
    wait_active(kinesis, name)
    put_batch(kinesis, name, counters, keys)

    described = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    closed = [s for s in described if "EndingSequenceNumber" in s["SequenceNumberRange"]]
    assert closed, "parents show an EndingSequenceNumber"
    assert any("AdjacentParentShardId" in s for s in described), "the merge child names both parents"

    records = read_following_child_shards(kinesis, name)
    assert sorted(records) == sorted(f"{k}#{n}" for k in keys for n in range(1, counters[k] + 1)), "every record, once"
    per_key = defaultdict(list)
    for r in records:
        k, n = r.split("#")
        per_key[k].append(int(n))
    for k, ns in per_key.items():
        assert ns == sorted(ns), f"{k} out of order across the lineage: {ns}"


def test_subscribe_to_a_closed_shard_ends_with_child_shards(kinesis, make_stream):
    name = make_stream(shard_count=1)
    arn = stream_arn(kinesis, name)
    consumer = register_active(kinesis, arn, "lineage")
    kinesis.put_record(StreamName=name, Data=b"before", PartitionKey="k")
    kinesis.split_shard(StreamName=name, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    wait_active(kinesis, name)
    resp = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "TRIM_HORIZON"})
    records, children = [], None
    for event in resp["EventStream"]:
        ev = event["SubscribeToShardEvent"]
        records.extend(r["Data"] for r in ev["Records"])
        if ev.get("ChildShards"):
            children = ev["ChildShards"]
            # How the KCL sees a shard end: the last event has no continuation.
            assert ev.get("ContinuationSequenceNumber") is None, ev
    assert records == [b"before"]
    assert sorted(c["ShardId"] for c in children) == ["shardId-000000000001", "shardId-000000000002"]
    assert all(c["ParentShards"] == ["shardId-000000000000"] for c in children)
