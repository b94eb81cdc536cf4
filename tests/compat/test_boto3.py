"""boto3 against sluice: every Kinesis operation the daemon serves, and their error paths.

The expected behaviour is real Amazon Kinesis Data Streams behaviour.
"""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from conftest import (
    MAX_HASH_KEY,
    Daemon,
    create_stream,
    error_code,
    hash_key,
    list_all_shards,
    make_client,
    read_shard,
    read_stream,
    shard_for_hash,
    unique_name,
    wait_active,
    wait_gone,
)

ARN_PREFIX = "arn:aws:kinesis:us-east-1:"
SHARD0 = "shardId-000000000000"
SHARD1 = "shardId-000000000001"


def aws_hash_ranges(n: int) -> list[tuple[int, int]]:
    """How AWS splits the hash key space for a new stream of n shards (even split, last absorbs
    the remainder)."""
    width = 2**128 // n
    return [(i * width, MAX_HASH_KEY if i == n - 1 else (i + 1) * width - 1) for i in range(n)]


def ranges_of(shards) -> list[tuple[int, int]]:
    return [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in shards]


def wait_clock_past(dt: datetime, ms: int = 5) -> None:
    """Polls until the wall clock is at least `ms` milliseconds past `dt`."""
    target = dt.timestamp() + ms / 1000
    while time.time() < target:
        time.sleep(0.001)


# --------------------------------------------------------------------------------------------
# CreateStream / DescribeStream / DescribeStreamSummary


@pytest.mark.parametrize("shard_count", [2, 3, 4, 5, 7])
def test_create_provisioned_stream(kinesis, make_stream, shard_count):
    name = make_stream(shard_count=shard_count)
    d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert d["StreamName"] == name
    assert d["StreamStatus"] == "ACTIVE"
    assert d["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert d["StreamARN"].startswith(ARN_PREFIX) and d["StreamARN"].endswith(f":stream/{name}")
    assert d["StreamARN"].split(":")[4].isdigit() and len(d["StreamARN"].split(":")[4]) == 12
    assert d["RetentionPeriodHours"] == 24
    assert d["HasMoreShards"] is False
    assert isinstance(d["StreamCreationTimestamp"], datetime)
    assert abs(d["StreamCreationTimestamp"].timestamp() - time.time()) < 300
    shards = d["Shards"]
    assert [s["ShardId"] for s in shards] == [f"shardId-{i:012d}" for i in range(shard_count)]
    assert ranges_of(shards) == aws_hash_ranges(shard_count)
    for s in shards:
        assert "ParentShardId" not in s
        assert "EndingSequenceNumber" not in s["SequenceNumberRange"]
        assert int(s["SequenceNumberRange"]["StartingSequenceNumber"]) >= 0


def test_create_stream_with_one_shard(kinesis, make_stream):
    name = make_stream(shard_count=1)
    shards = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000"]
    assert ranges_of(shards) == [(0, MAX_HASH_KEY)]
    r = kinesis.put_record(StreamName=name, Data=b"only", PartitionKey="k")
    assert r["ShardId"] == "shardId-000000000000"


def test_on_demand_stream_has_four_shards(kinesis, make_stream):
    name = make_stream(shard_count=None, mode="ON_DEMAND")
    s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert s["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert s["OpenShardCount"] == 4
    assert s["StreamStatus"] == "ACTIVE"
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    assert len(shards) == 4
    assert ranges_of(shards) == aws_hash_ranges(4)


def test_describe_stream_summary(kinesis, make_stream):
    name = make_stream(shard_count=3)
    s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert s["StreamName"] == name
    assert s["StreamStatus"] == "ACTIVE"
    assert s["OpenShardCount"] == 3
    assert s["RetentionPeriodHours"] == 24
    assert s["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert s["StreamARN"] == kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]
    assert s["EncryptionType"] == "NONE"
    assert s["ConsumerCount"] == 0


def test_describe_stream_pagination(kinesis, make_stream):
    name = make_stream(shard_count=5)
    seen, start = [], None
    for _ in range(10):
        args = {"StreamName": name, "Limit": 2}
        if start:
            args["ExclusiveStartShardId"] = start
        d = kinesis.describe_stream(**args)["StreamDescription"]
        assert len(d["Shards"]) <= 2
        seen += [s["ShardId"] for s in d["Shards"]]
        if not d["HasMoreShards"]:
            break
        start = d["Shards"][-1]["ShardId"]
    assert seen == [f"shardId-{i:012d}" for i in range(5)]


def test_create_existing_stream_is_resource_in_use(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName=name, ShardCount=2)
    assert error_code(e) == "ResourceInUseException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize("bad", ["bad name!", "slash/name", "colon:name", "x" * 129])
def test_create_stream_bad_name_is_validation_error(kinesis, bad):
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName=bad, ShardCount=2)
    assert error_code(e) == "ValidationException"


def test_create_stream_zero_shards_is_validation_error(kinesis_unvalidated):
    with pytest.raises(ClientError) as e:
        kinesis_unvalidated.create_stream(StreamName=unique_name(), ShardCount=0)
    assert error_code(e) == "ValidationException"


def test_create_stream_with_tags(kinesis, make_stream):
    name = make_stream(shard_count=2, Tags={"team": "data", "env": "test"})
    tags = kinesis.list_tags_for_stream(StreamName=name)["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "test"), ("team", "data")]


def test_unknown_stream_is_resource_not_found(kinesis):
    name = unique_name("missing")
    calls = [
        lambda: kinesis.describe_stream(StreamName=name),
        lambda: kinesis.describe_stream_summary(StreamName=name),
        lambda: kinesis.list_shards(StreamName=name),
        lambda: kinesis.delete_stream(StreamName=name),
        lambda: kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="k"),
        lambda: kinesis.put_records(StreamName=name, Records=[{"Data": b"x", "PartitionKey": "k"}]),
        lambda: kinesis.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000", ShardIteratorType="LATEST"),
        lambda: kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48),
        lambda: kinesis.add_tags_to_stream(StreamName=name, Tags={"a": "b"}),
        lambda: kinesis.list_tags_for_stream(StreamName=name),
        lambda: kinesis.list_tags_for_resource(ResourceARN=f"{ARN_PREFIX}000000000000:stream/{name}"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "ResourceNotFoundException", e.value.response


# --------------------------------------------------------------------------------------------
# DeleteStream / ListStreams


def test_delete_stream(kinesis, make_stream):
    name = make_stream(shard_count=2)
    kinesis.put_record(StreamName=name, Data=b"old incarnation", PartitionKey="k")
    kinesis.delete_stream(StreamName=name)
    wait_gone(kinesis, name)
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream(StreamName=name)
    assert error_code(e) == "ResourceNotFoundException"
    assert name not in kinesis.list_streams(ExclusiveStartStreamName=name[:-1], Limit=100)["StreamNames"]
    # The name is free again, and the new stream starts empty.
    create_stream(kinesis, name, shard_count=2)
    assert all(records == [] for records in read_stream(kinesis, name).values())
    kinesis.delete_stream(StreamName=name)
    wait_gone(kinesis, name)


def test_list_streams_pagination(kinesis, make_stream):
    prefix = unique_name("lst")
    names = [make_stream(shard_count=2, name=f"{prefix}-{i}") for i in range(5)]
    seen, pages = [], 0
    r = kinesis.list_streams(Limit=2)
    while True:
        pages += 1
        assert len(r["StreamNames"]) <= 2
        assert r["StreamNames"] == [s["StreamName"] for s in r["StreamSummaries"]]
        for s in r["StreamSummaries"]:
            assert s["StreamARN"].endswith(f":stream/{s['StreamName']}")
            assert s["StreamStatus"] in ("CREATING", "ACTIVE", "UPDATING", "DELETING")
            assert s["StreamModeDetails"]["StreamMode"] in ("PROVISIONED", "ON_DEMAND")
            assert isinstance(s["StreamCreationTimestamp"], datetime)
        seen += r["StreamNames"]
        assert r["HasMoreStreams"] == ("NextToken" in r)
        if not r["HasMoreStreams"]:
            break
        r = kinesis.list_streams(NextToken=r["NextToken"], Limit=2)
    assert pages >= 3
    assert len(seen) == len(set(seen)), "a stream was listed twice"
    assert set(names) <= set(seen)
    ours = [s for s in seen if s.startswith(prefix)]
    assert ours == names
    ours_summary = {s["StreamName"]: s for s in kinesis.list_streams(ExclusiveStartStreamName=names[0], Limit=4)["StreamSummaries"]}
    assert list(ours_summary) == names[1:]
    assert all(s["StreamStatus"] == "ACTIVE" for s in ours_summary.values())


def test_list_streams_exclusive_start(kinesis, make_stream):
    prefix = unique_name("lse")
    names = [make_stream(shard_count=2, name=f"{prefix}-{i}") for i in range(4)]
    r = kinesis.list_streams(ExclusiveStartStreamName=names[1], Limit=2)
    assert r["StreamNames"] == names[2:4]


# --------------------------------------------------------------------------------------------
# ListShards


def test_list_shards_pagination(kinesis, make_stream):
    name = make_stream(shard_count=5)
    pages = []
    r = kinesis.list_shards(StreamName=name, MaxResults=2)
    pages.append([s["ShardId"] for s in r["Shards"]])
    while "NextToken" in r:
        r = kinesis.list_shards(NextToken=r["NextToken"], MaxResults=2)
        pages.append([s["ShardId"] for s in r["Shards"]])
    ids = [f"shardId-{i:012d}" for i in range(5)]
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]


def test_list_shards_filters(kinesis, make_stream):
    name = make_stream(shard_count=5)
    ids = [f"shardId-{i:012d}" for i in range(5)]

    def listed(**kw):
        return [s["ShardId"] for s in kinesis.list_shards(StreamName=name, **kw)["Shards"]]

    assert listed() == ids
    assert listed(ShardFilter={"Type": "AT_LATEST"}) == ids
    assert listed(ShardFilter={"Type": "AT_TRIM_HORIZON"}) == ids
    assert listed(ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": ids[1]}) == ids[2:]
    assert listed(ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": ids[4]}) == []
    assert listed(ExclusiveStartShardId=ids[2]) == ids[3:]
    # The hash ranges listed are the same as DescribeStream's.
    described = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    assert kinesis.list_shards(StreamName=name)["Shards"] == described


def test_list_shards_next_token_with_stream_name_is_invalid(kinesis, make_stream):
    name = make_stream(shard_count=3)
    token = kinesis.list_shards(StreamName=name, MaxResults=1)["NextToken"]
    with pytest.raises(ClientError) as e:
        kinesis.list_shards(StreamName=name, NextToken=token)
    assert error_code(e) == "InvalidArgumentException"


# --------------------------------------------------------------------------------------------
# Retention


def test_retention_period(kinesis, make_stream):
    name = make_stream(shard_count=2)

    def retention():
        return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["RetentionPeriodHours"]

    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
    assert retention() == 48
    kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=36)
    assert retention() == 36
    assert kinesis.describe_stream(StreamName=name)["StreamDescription"]["RetentionPeriodHours"] == 36

    # Decrease to above the current value, increase to below it: both refused.
    with pytest.raises(ClientError) as e:
        kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
    assert error_code(e) == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=30)
    assert error_code(e) == "InvalidArgumentException"
    # Outside [24, 8760] hours.
    with pytest.raises(ClientError) as e:
        kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=12)
    assert error_code(e) == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=8761)
    assert error_code(e) == "InvalidArgumentException"
    assert retention() == 36
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=8760)
    assert retention() == 8760


# --------------------------------------------------------------------------------------------
# Tags


def tag_pairs(tags):
    return sorted((t["Key"], t["Value"]) for t in tags)


def test_stream_tags(kinesis, make_stream):
    name = make_stream(shard_count=2)
    assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == []
    kinesis.add_tags_to_stream(StreamName=name, Tags={"a": "1", "b": "2", "c": "3"})
    r = kinesis.list_tags_for_stream(StreamName=name)
    assert tag_pairs(r["Tags"]) == [("a", "1"), ("b", "2"), ("c", "3")]
    assert r["HasMoreTags"] is False

    first = kinesis.list_tags_for_stream(StreamName=name, Limit=2)
    assert len(first["Tags"]) == 2 and first["HasMoreTags"] is True
    rest = kinesis.list_tags_for_stream(StreamName=name, ExclusiveStartTagKey=first["Tags"][-1]["Key"])
    assert rest["HasMoreTags"] is False
    assert tag_pairs(first["Tags"] + rest["Tags"]) == [("a", "1"), ("b", "2"), ("c", "3")]

    # Adding an existing key overwrites its value.
    kinesis.add_tags_to_stream(StreamName=name, Tags={"a": "one"})
    kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["b", "not-there"])
    assert tag_pairs(kinesis.list_tags_for_stream(StreamName=name)["Tags"]) == [("a", "one"), ("c", "3")]


@pytest.mark.parametrize("tags", [{"abc;def": "1"}, {"key": "abc,def"}], ids=["semicolon-in-key", "comma-in-value"])
def test_tags_with_invalid_characters_are_refused(kinesis, make_stream, tags):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
    assert error_code(e) == "InvalidArgumentException"
    assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == []


def test_tags_with_allowed_characters(kinesis, make_stream):
    name = make_stream(shard_count=2)
    tags = {"a": "a", "ü0 _.": "a", "/=+-@": "a", "b": "ü0 _./=+-@", "c": ""}
    kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
    assert tag_pairs(kinesis.list_tags_for_stream(StreamName=name)["Tags"]) == sorted(tags.items())


def test_resource_tags(kinesis, make_stream):
    name = make_stream(shard_count=2)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    assert kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"] == []
    kinesis.tag_resource(ResourceARN=arn, Tags={"owner": "compat", "tier": "gold"})
    assert tag_pairs(kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"]) == [("owner", "compat"), ("tier", "gold")]
    # The same tags through the stream API.
    assert tag_pairs(kinesis.list_tags_for_stream(StreamName=name)["Tags"]) == [("owner", "compat"), ("tier", "gold")]
    kinesis.untag_resource(ResourceARN=arn, TagKeys=["tier"])
    assert tag_pairs(kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"]) == [("owner", "compat")]


# --------------------------------------------------------------------------------------------
# DescribeLimits and LimitExceededException


def test_describe_limits(kinesis, make_stream):
    before = kinesis.describe_limits()
    assert before["ShardLimit"] == 500
    assert before["OnDemandStreamCountLimit"] == 50
    name = make_stream(shard_count=3)
    od = make_stream(shard_count=None, mode="ON_DEMAND")
    after = kinesis.describe_limits()
    assert after["OpenShardCount"] == before["OpenShardCount"] + 3 + 4
    assert after["OnDemandStreamCount"] == before["OnDemandStreamCount"] + 1
    kinesis.delete_stream(StreamName=name)
    kinesis.delete_stream(StreamName=od)
    wait_gone(kinesis, name)
    wait_gone(kinesis, od)
    assert kinesis.describe_limits()["OpenShardCount"] == before["OpenShardCount"]


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A daemon with an account shard limit of 3 and the default (100 ms) CREATING/DELETING."""
    d = Daemon(tmp_path_factory.mktemp("sluice-limited"), config="[streams]\nshard_limit = 3\n")
    d.start()
    yield make_client(d.endpoint)
    rc = d.stop()
    assert rc == 0, f"sluice exited with {rc} on SIGTERM; log:\n{d.log_tail()}"


def test_shard_limit_exceeded(limited):
    limits = limited.describe_limits()
    assert limits["ShardLimit"] == 3
    assert limits["OpenShardCount"] == 0

    with pytest.raises(ClientError) as e:
        limited.create_stream(StreamName=unique_name(), ShardCount=4)
    assert error_code(e) == "LimitExceededException"
    with pytest.raises(ClientError) as e:
        limited.create_stream(StreamName=unique_name(), StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert error_code(e) == "LimitExceededException"

    first = unique_name("lim")
    limited.create_stream(StreamName=first, ShardCount=2)
    status = limited.describe_stream_summary(StreamName=first)["StreamDescriptionSummary"]["StreamStatus"]
    assert status in ("CREATING", "ACTIVE")
    wait_active(limited, first)
    assert limited.describe_limits()["OpenShardCount"] == 2

    with pytest.raises(ClientError) as e:
        limited.create_stream(StreamName=unique_name(), ShardCount=2)
    assert error_code(e) == "LimitExceededException"
    # A refused create leaves nothing behind.
    assert limited.list_streams()["StreamNames"] == [first]

    limited.delete_stream(StreamName=first)
    wait_gone(limited, first)
    assert limited.describe_limits()["OpenShardCount"] == 0
    third = unique_name("lim")
    limited.create_stream(StreamName=third, ShardCount=3)
    wait_active(limited, third)
    assert limited.describe_limits()["OpenShardCount"] == 3


# --------------------------------------------------------------------------------------------
# StreamARN instead of StreamName


def test_stream_arn_accepted_everywhere(kinesis, make_stream):
    name = make_stream(shard_count=2)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    assert kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]["StreamName"] == name
    assert kinesis.describe_stream(StreamARN=arn)["StreamDescription"]["StreamName"] == name
    assert len(kinesis.list_shards(StreamARN=arn)["Shards"]) == 2

    put = kinesis.put_record(StreamARN=arn, Data=b"via-arn", PartitionKey="k1")
    batch = kinesis.put_records(StreamARN=arn, Records=[{"Data": b"via-arn-batch", "PartitionKey": "k1"}])
    assert batch["FailedRecordCount"] == 0
    it = kinesis.get_shard_iterator(StreamARN=arn, ShardId=put["ShardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
                                    StartingSequenceNumber=put["SequenceNumber"])["ShardIterator"]
    got = kinesis.get_records(StreamARN=arn, ShardIterator=it)["Records"]
    assert [r["Data"] for r in got] == [b"via-arn", b"via-arn-batch"]

    kinesis.increase_stream_retention_period(StreamARN=arn, RetentionPeriodHours=25)
    kinesis.add_tags_to_stream(StreamARN=arn, Tags={"k": "v"})
    assert kinesis.list_tags_for_stream(StreamARN=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    kinesis.remove_tags_from_stream(StreamARN=arn, TagKeys=["k"])
    assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == []
    kinesis.decrease_stream_retention_period(StreamARN=arn, RetentionPeriodHours=24)
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["RetentionPeriodHours"] == 24

    kinesis.delete_stream(StreamARN=arn)
    wait_gone(kinesis, name)


# --------------------------------------------------------------------------------------------
# PutRecord / PutRecords: routing and sequence numbers

PARTITION_KEYS = [f"key-{i}" for i in range(40)] + ["a", "ключ", "分区键", "emoji-🚀", " spaces ", "x" * 256, "分" * 256]


def test_put_record_routes_by_md5(kinesis, make_stream):
    name = make_stream(shard_count=4)
    shards = list_all_shards(kinesis, name)
    used = set()
    for pk in PARTITION_KEYS:
        r = kinesis.put_record(StreamName=name, Data=pk.encode(), PartitionKey=pk)
        assert r["ShardId"] == shard_for_hash(shards, hash_key(pk)), pk
        used.add(r["ShardId"])
    assert len(used) == 4, "40+ keys should reach every shard of four"


def test_put_records_routes_by_md5_and_keeps_request_order(kinesis, make_stream):
    name = make_stream(shard_count=3)
    shards = list_all_shards(kinesis, name)
    entries = [{"Data": f"rec-{i}".encode(), "PartitionKey": pk} for i, pk in enumerate(PARTITION_KEYS)]
    r = kinesis.put_records(StreamName=name, Records=entries)
    assert r["FailedRecordCount"] == 0
    assert len(r["Records"]) == len(entries)
    for e, res in zip(entries, r["Records"]):
        assert "ErrorCode" not in res
        assert res["ShardId"] == shard_for_hash(shards, hash_key(e["PartitionKey"]))
    stored = read_stream(kinesis, name)
    for shard_id, records in stored.items():
        expected = [(e["Data"], e["PartitionKey"], res["SequenceNumber"]) for e, res in zip(entries, r["Records"]) if res["ShardId"] == shard_id]
        assert [(x["Data"], x["PartitionKey"], x["SequenceNumber"]) for x in records] == expected


def test_explicit_hash_key_overrides_partition_key(kinesis, make_stream):
    name = make_stream(shard_count=4)
    shards = list_all_shards(kinesis, name)
    pk = "always-the-same-key"
    natural = shard_for_hash(shards, hash_key(pk))
    probes = [0, MAX_HASH_KEY]
    for s in shards:
        probes += [int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])]
    landed = set()
    for h in probes:
        r = kinesis.put_record(StreamName=name, Data=b"x", PartitionKey=pk, ExplicitHashKey=str(h))
        assert r["ShardId"] == shard_for_hash(shards, h), h
        landed.add(r["ShardId"])
    assert landed == {s["ShardId"] for s in shards}
    assert landed - {natural}, "the explicit hash key must move records off the partition key's shard"
    batch = kinesis.put_records(StreamName=name, Records=[
        {"Data": b"y", "PartitionKey": pk, "ExplicitHashKey": str(h)} for h in probes
    ])
    assert batch["FailedRecordCount"] == 0
    assert [x["ShardId"] for x in batch["Records"]] == [shard_for_hash(shards, h) for h in probes]


def test_explicit_hash_key_out_of_range(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="k", ExplicitHashKey=str(2**128))
    assert error_code(e) == "InvalidArgumentException"
    # In PutRecords one bad entry refuses the whole request.
    with pytest.raises(ClientError) as e:
        kinesis.put_records(StreamName=name, Records=[
            {"Data": b"ok", "PartitionKey": "k"},
            {"Data": b"x", "PartitionKey": "k", "ExplicitHashKey": str(2**128)},
        ])
    assert error_code(e) == "InvalidArgumentException"
    # Nothing was written.
    assert all(records == [] for records in read_stream(kinesis, name).values())


def test_sequence_numbers_strictly_increase_per_shard(kinesis, make_stream):
    name = make_stream(shard_count=3)
    acked: dict[str, list[int]] = {}
    for i in range(15):
        r = kinesis.put_record(StreamName=name, Data=b"single-%d" % i, PartitionKey=f"pk-{i % 5}")
        acked.setdefault(r["ShardId"], []).append(int(r["SequenceNumber"]))
        batch = kinesis.put_records(StreamName=name, Records=[
            {"Data": b"batch-%d-%d" % (i, j), "PartitionKey": f"pk-{j}"} for j in range(6)
        ])
        for res in batch["Records"]:
            acked.setdefault(res["ShardId"], []).append(int(res["SequenceNumber"]))
    assert len(acked) >= 2
    starting = {s["ShardId"]: int(s["SequenceNumberRange"]["StartingSequenceNumber"]) for s in list_all_shards(kinesis, name)}
    for shard_id, seqs in acked.items():
        assert all(a < b for a, b in zip(seqs, seqs[1:])), f"{shard_id}: {seqs}"
        assert seqs[0] >= starting[shard_id]
    # What is read back carries the acknowledged sequence numbers, in the same order.
    stored = read_stream(kinesis, name)
    for shard_id, seqs in acked.items():
        assert [int(r["SequenceNumber"]) for r in stored[shard_id]] == seqs


def test_concurrent_puts_to_one_shard(kinesis, endpoint, make_stream):
    """Many clients appending to the same shard at once (group commit): every acknowledged
    sequence number is unique and names exactly the record that was put."""
    import threading

    name = make_stream(shard_count=2)
    acks: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    errors = []

    def worker(w):
        try:
            c = make_client(endpoint)
            for i in range(15):
                if i % 2:
                    datas = [b"w%d-b%d-%d" % (w, i, j) for j in range(7)]
                    r = c.put_records(StreamName=name, Records=[
                        {"Data": x, "PartitionKey": f"w{w}", "ExplicitHashKey": "1"} for x in datas])
                    assert r["FailedRecordCount"] == 0
                    got = [(x["SequenceNumber"], d) for x, d in zip(r["Records"], datas)]
                else:
                    data = b"w%d-s%d" % (w, i)
                    r = c.put_record(StreamName=name, Data=data, PartitionKey=f"w{w}", ExplicitHashKey="2")
                    got = [(r["SequenceNumber"], data)]
                with lock:
                    acks.extend(got)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(acks) == 8 * (8 * 1 + 7 * 7)
    assert len({seq for seq, _ in acks}) == len(acks), "a sequence number was given twice"
    stored = read_shard(kinesis, name, SHARD0)
    assert sorted(acks, key=lambda a: int(a[0])) == [(r["SequenceNumber"], r["Data"]) for r in stored]
    # Each client's own records are in the order it put them.
    for w in range(8):
        mine = [r["Data"] for r in stored if r["PartitionKey"] == f"w{w}"]
        expected = []
        for i in range(15):
            expected += [b"w%d-b%d-%d" % (w, i, j) for j in range(7)] if i % 2 else [b"w%d-s%d" % (w, i)]
        assert mine == expected


def test_put_records_full_batch(kinesis, make_stream):
    name = make_stream(shard_count=2)
    datas = [b"%03d" % i + bytes(i % 256 for _ in range(i)) for i in range(500)]
    r = kinesis.put_records(StreamName=name, Records=[{"Data": x, "PartitionKey": "k", "ExplicitHashKey": "0"} for x in datas])
    assert r["FailedRecordCount"] == 0
    seqs = [x["SequenceNumber"] for x in r["Records"]]
    assert [int(x) for x in seqs] == sorted(int(x) for x in seqs) and len(set(seqs)) == 500
    got = read_shard(kinesis, name, SHARD0)
    assert [x["Data"] for x in got] == datas
    mid = read_shard(kinesis, name, SHARD0, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[250])
    assert [x["SequenceNumber"] for x in mid] == seqs[250:]


def test_put_records_over_5_mib_is_invalid(kinesis, make_stream):
    name = make_stream(shard_count=2)
    chunk = b"z" * (900 * 1024)
    with pytest.raises(ClientError) as e:
        kinesis.put_records(StreamName=name, Records=[{"Data": chunk, "PartitionKey": f"k{i}"} for i in range(6)])
    assert error_code(e) == "InvalidArgumentException"
    assert all(records == [] for records in read_stream(kinesis, name).values())


def test_empty_data_record(kinesis, make_stream):
    """Kinesis accepts a record with zero bytes of data."""
    name = make_stream(shard_count=2)
    r = kinesis.put_record(StreamName=name, Data=b"", PartitionKey="empty", ExplicitHashKey="0")
    b = kinesis.put_records(StreamName=name, Records=[{"Data": b"", "PartitionKey": "empty", "ExplicitHashKey": "0"}])
    assert b["FailedRecordCount"] == 0
    got = read_shard(kinesis, name, SHARD0)
    assert [(x["SequenceNumber"], x["Data"]) for x in got] == [(r["SequenceNumber"], b""), (b["Records"][0]["SequenceNumber"], b"")]


def test_sequence_number_for_ordering(kinesis, make_stream):
    name = make_stream(shard_count=2)
    prev = kinesis.put_record(StreamName=name, Data=b"1", PartitionKey="ordered")
    for i in range(2, 6):
        r = kinesis.put_record(StreamName=name, Data=b"%d" % i, PartitionKey="ordered",
                               SequenceNumberForOrdering=prev["SequenceNumber"])
        assert r["ShardId"] == prev["ShardId"]
        assert int(r["SequenceNumber"]) > int(prev["SequenceNumber"])
        prev = r
    assert [x["Data"] for x in read_shard(kinesis, name, prev["ShardId"])] == [b"1", b"2", b"3", b"4", b"5"]


def test_record_data_round_trips_byte_for_byte(kinesis, make_stream):
    name = make_stream(shard_count=2)
    payloads = [bytes(range(256)) * 4, b"\x00", b"\xff\xfe\xfd", "héllo wörld ✓".encode(), b"x" * (512 * 1024)]
    seqs = [kinesis.put_record(StreamName=name, Data=p, PartitionKey="same", ExplicitHashKey="0")["SequenceNumber"] for p in payloads]
    got = read_shard(kinesis, name, "shardId-000000000000")
    assert [r["Data"] for r in got] == payloads
    assert [r["SequenceNumber"] for r in got] == seqs
    assert all(r["PartitionKey"] == "same" for r in got)
    assert all(isinstance(r["ApproximateArrivalTimestamp"], datetime) for r in got)


# --------------------------------------------------------------------------------------------
# GetShardIterator / GetRecords


@pytest.fixture
def five_records(kinesis, make_stream):
    """A 2-shard stream with five records in shard 0 (explicit hash key 0): (name, seqs, datas)."""
    name = make_stream(shard_count=2)
    datas = [b"r%d" % i for i in range(5)]
    seqs = [kinesis.put_record(StreamName=name, Data=d, PartitionKey="pk", ExplicitHashKey="0")["SequenceNumber"] for d in datas]
    return name, seqs, datas


def test_iterator_trim_horizon(kinesis, five_records):
    name, seqs, datas = five_records
    got = read_shard(kinesis, name, SHARD0, "TRIM_HORIZON")
    assert [r["Data"] for r in got] == datas
    assert [r["SequenceNumber"] for r in got] == seqs


def test_iterator_at_and_after_sequence_number(kinesis, five_records):
    name, seqs, datas = five_records
    at = read_shard(kinesis, name, SHARD0, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])
    assert [r["Data"] for r in at] == datas[2:]
    after = read_shard(kinesis, name, SHARD0, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])
    assert [r["Data"] for r in after] == datas[3:]
    assert read_shard(kinesis, name, SHARD0, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[-1]) == []
    assert [r["Data"] for r in read_shard(kinesis, name, SHARD0, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[0])] == datas


@pytest.mark.parametrize("kind", ["TRIM_HORIZON", "LATEST"])
def test_sequence_number_with_trim_horizon_or_latest_is_invalid(kinesis, five_records, kind):
    name, seqs, _ = five_records
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType=kind, StartingSequenceNumber=seqs[1])
    assert error_code(e) == "InvalidArgumentException"


def test_iterator_latest(kinesis, five_records):
    name, seqs, datas = five_records
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="LATEST")["ShardIterator"]
    first = kinesis.get_records(ShardIterator=it)
    assert first["Records"] == []
    assert first["MillisBehindLatest"] == 0
    kinesis.put_record(StreamName=name, Data=b"new", PartitionKey="pk", ExplicitHashKey="0")
    got = kinesis.get_records(ShardIterator=first["NextShardIterator"])["Records"]
    assert [r["Data"] for r in got] == [b"new"]


def test_iterator_at_timestamp(kinesis, make_stream):
    name = make_stream(shard_count=2)

    def put(data):
        seq = kinesis.put_record(StreamName=name, Data=data, PartitionKey="pk", ExplicitHashKey="0")["SequenceNumber"]
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                        StartingSequenceNumber=seq)["ShardIterator"]
        return kinesis.get_records(ShardIterator=it, Limit=1)["Records"][0]["ApproximateArrivalTimestamp"]

    t_a = put(b"A")
    wait_clock_past(t_a, ms=20)
    t_b = put(b"B")
    assert t_b > t_a

    def from_ts(ts):
        return [r["Data"] for r in read_shard(kinesis, name, SHARD0, "AT_TIMESTAMP", Timestamp=ts)]

    assert from_ts(t_a) == [b"A", b"B"]
    assert from_ts(t_b) == [b"B"]
    assert from_ts(t_a + (t_b - t_a) / 2) == [b"B"]
    assert from_ts(datetime(2000, 1, 1, tzinfo=timezone.utc)) == [b"A", b"B"]
    # Epoch seconds work as well as datetimes.
    assert from_ts(t_b.timestamp()) == [b"B"]


def test_iterator_at_future_timestamp_is_invalid(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_TIMESTAMP",
                                   Timestamp=datetime.now(timezone.utc) + timedelta(hours=1))
    assert error_code(e) == "InvalidArgumentException"


def test_iterator_at_timestamp_without_timestamp_is_invalid(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_TIMESTAMP")
    assert error_code(e) == "InvalidArgumentException"


def test_get_records_limit_and_next_iterator(kinesis, make_stream):
    name = make_stream(shard_count=2)
    datas = [b"item-%02d" % i for i in range(10)]
    kinesis.put_records(StreamName=name, Records=[{"Data": d, "PartitionKey": "p", "ExplicitHashKey": "0"} for d in datas])
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    sizes, got = [], []
    for _ in range(6):
        r = kinesis.get_records(ShardIterator=it, Limit=3)
        sizes.append(len(r["Records"]))
        got += [x["Data"] for x in r["Records"]]
        assert r["NextShardIterator"], "an open shard always gives a next iterator"
        it = r["NextShardIterator"]
    assert sizes == [3, 3, 3, 1, 0, 0]
    assert got == datas
    # The other shard is empty.
    assert read_shard(kinesis, name, SHARD1) == []


def test_millis_behind_latest(kinesis, make_stream):
    name = make_stream(shard_count=2)
    kinesis.put_record(StreamName=name, Data=b"old", PartitionKey="p", ExplicitHashKey="0")
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    t_old = kinesis.get_records(ShardIterator=it)["Records"][0]["ApproximateArrivalTimestamp"]
    wait_clock_past(t_old, ms=50)
    kinesis.put_record(StreamName=name, Data=b"new", PartitionKey="p", ExplicitHashKey="0")

    r = kinesis.get_records(ShardIterator=it, Limit=1)
    assert [x["Data"] for x in r["Records"]] == [b"old"]
    assert r["MillisBehindLatest"] > 0, "one record behind a newer one is not at the tip"
    r = kinesis.get_records(ShardIterator=r["NextShardIterator"], Limit=1)
    assert [x["Data"] for x in r["Records"]] == [b"new"]
    assert r["MillisBehindLatest"] == 0
    r = kinesis.get_records(ShardIterator=r["NextShardIterator"])
    assert r["Records"] == [] and r["MillisBehindLatest"] == 0


# --------------------------------------------------------------------------------------------
# Error paths of the data plane
# (ExpiredIteratorException is not tested: an iterator takes five minutes to expire.)


def test_unknown_shard_is_resource_not_found(kinesis, make_stream):
    name = make_stream(shard_count=2)
    for shard_id in ["shardId-000000000002", "shardId-000000000099", "no-such-shard"]:
        with pytest.raises(ClientError) as e:
            kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
        assert error_code(e) == "ResourceNotFoundException", shard_id


def test_sequence_number_of_another_shard_is_invalid(kinesis, make_stream):
    name = make_stream(shard_count=2)
    r = kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="k", ExplicitHashKey="0")
    assert r["ShardId"] == SHARD0
    for kind in ["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]:
        with pytest.raises(ClientError) as e:
            kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD1, ShardIteratorType=kind,
                                       StartingSequenceNumber=r["SequenceNumber"])
        assert error_code(e) == "InvalidArgumentException"


def test_sequence_number_of_another_stream_is_invalid(kinesis, make_stream):
    a = make_stream(shard_count=2)
    b = make_stream(shard_count=2)
    r = kinesis.put_record(StreamName=a, Data=b"x", PartitionKey="k", ExplicitHashKey="0")
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=b, ShardId=SHARD0, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                   StartingSequenceNumber=r["SequenceNumber"])
    assert error_code(e) == "InvalidArgumentException"


def test_malformed_sequence_number_is_invalid(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                   StartingSequenceNumber="12345")
    assert error_code(e) == "InvalidArgumentException"


def test_missing_starting_sequence_number_is_invalid(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_SEQUENCE_NUMBER")
    assert error_code(e) == "InvalidArgumentException"


def test_invalid_shard_iterator(kinesis):
    fake = base64.b64encode(b"this is not an iterator").decode()
    with pytest.raises(ClientError) as e:
        kinesis.get_records(ShardIterator=fake)
    assert error_code(e) == "InvalidArgumentException"


def test_get_records_after_stream_deleted(kinesis, make_stream):
    name = make_stream(shard_count=2)
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    kinesis.delete_stream(StreamName=name)
    wait_gone(kinesis, name)
    with pytest.raises(ClientError) as e:
        kinesis.get_records(ShardIterator=it)
    assert error_code(e) == "ResourceNotFoundException"


def test_empty_partition_key_is_validation_error(kinesis_unvalidated, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis_unvalidated.put_record(StreamName=name, Data=b"x", PartitionKey="")
    assert error_code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        kinesis_unvalidated.put_records(StreamName=name, Records=[
            {"Data": b"ok", "PartitionKey": "fine"}, {"Data": b"x", "PartitionKey": ""}])
    assert error_code(e) == "ValidationException"
    # A whole-request validation error writes nothing, not even the valid entry.
    assert all(records == [] for records in read_stream(kinesis_unvalidated, name).values())


def test_partition_key_too_long_is_validation_error(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="k" * 257)
    assert error_code(e) == "ValidationException"


def test_put_records_too_many_is_validation_error(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.put_records(StreamName=name, Records=[{"Data": b"x", "PartitionKey": "k"}] * 501)
    assert error_code(e) == "ValidationException"


def test_put_records_empty_is_validation_error(kinesis_unvalidated, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis_unvalidated.put_records(StreamName=name, Records=[])
    assert error_code(e) == "ValidationException"


@pytest.mark.parametrize("bad", ["-1", "01", "12a", "1" * 40])
def test_malformed_explicit_hash_key_is_validation_error(kinesis, make_stream, bad):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="k", ExplicitHashKey=bad)
    assert error_code(e) == "ValidationException"


@pytest.mark.parametrize("limit", [0, -1, 10001])
def test_get_records_bad_limit_is_validation_error(kinesis, kinesis_unvalidated, make_stream, limit):
    name = make_stream(shard_count=2)
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    with pytest.raises(ClientError) as e:
        kinesis_unvalidated.get_records(ShardIterator=it, Limit=limit)
    assert error_code(e) == "ValidationException"


def test_bad_iterator_type_is_validation_error(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="SOMEWHERE")
    assert error_code(e) == "ValidationException"


def test_errors_are_aws_shaped(kinesis):
    """Status 400, x-amzn-ErrorType and a message, as botocore expects from AWS."""
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_summary(StreamName=unique_name("missing"))
    resp = e.value.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert resp["Error"]["Code"] == "ResourceNotFoundException"
    assert resp["Error"]["Message"]
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-errortype"].startswith("ResourceNotFoundException")
    assert headers["x-amzn-requestid"]
