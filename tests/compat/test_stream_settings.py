"""Stream and account settings, and the newer corners of the Kinesis API, as AWS answers them.

* EnableEnhancedMonitoring / DisableEnhancedMonitoring: the before/after metric lists in AWS's
  order, "ALL", EnhancedMonitoring in DescribeStream(Summary), refusal while not ACTIVE, and the
  per-shard series on GET /metrics appearing only for the enabled metrics (the stream-level
  ``sluice_stream_*`` series always);
* UpdateMaxRecordSize: empty answer, MaxRecordSizeInKiB in DescribeStreamSummary, AWS's exact
  message for a 2 MiB record at the 1 MiB default, a 10 MiB record round-tripping once raised,
  the model's 1024..10240 range;
* CreateStream's default mode (ON_DEMAND, 4 shards) and PROVISIONED when only ShardCount is given;
* DescribeAccountSettings / UpdateAccountSettings (minimum throughput billing commitment), durable
  across a clean restart and kill -9;
* UpdateStreamWarmThroughput (needs the commitment and an ON_DEMAND stream; scales open shards);
* UpdateStreamRecordDistributionStrategy (AUTO spreads one partition key over every open shard and
  accepts entries without a key; USER_PARTITION_KEY routes by key);
* Put/Get/DeleteResourcePolicy on streams and consumers: stored verbatim, validated, durable, and
  gone with the stream;
* DeleteStream while CREATING; DescribeStreamConsumer with StreamARN and ConsumerARN; GetRecords
  with a double-quoted shard iterator; StreamId (format, lookups, malformed ids);
* CBOR 1.1 timestamps: tag 1 wrapping integer epoch milliseconds, both in answers
  (ApproximateArrivalTimestamp) and in requests (GetShardIterator AT_TIMESTAMP).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from cbor import Tag, cbor_decode, cbor_encode
import conftest
from conftest import (
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

ACCOUNT = "000000000000"
REGION = "us-east-1"
API = "Kinesis_20131202"
AMZ_JSON = "application/x-amz-json-1.1"
AMZ_CBOR = "application/x-amz-cbor-1.1"
SHARD0 = "shardId-000000000000"

# AWS's order of the shard-level metrics (what "ALL" expands to).
ALL_METRICS = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
]
# Prometheus series of each metric (per shard); the stream-level one is sluice_stream_<rest>.
SERIES = {
    "IncomingBytes": "sluice_incoming_bytes_total",
    "IncomingRecords": "sluice_incoming_records_total",
    "OutgoingBytes": "sluice_get_records_bytes_total",
    "OutgoingRecords": "sluice_get_records_records_total",
    "WriteProvisionedThroughputExceeded": "sluice_write_throttled_total",
    "ReadProvisionedThroughputExceeded": "sluice_read_throttled_total",
    "IteratorAgeMilliseconds": "sluice_iterator_age_milliseconds",
}
STREAM_ID_RE = re.compile(r"[a-z0-9]{20}-[a-z0-9]{3}")


# ---------------------------------------------------------------------------------------------
# Raw HTTP and CBOR


def call(endpoint: str, op: str, body=None, *, cbor: bool = False):
    """One SigV4-signed request; returns (status, parsed body, raw body bytes).

    The body is JSON (or CBOR if `cbor`); the answer is parsed by its content type ('' if empty).
    """
    ctype = AMZ_CBOR if cbor else AMZ_JSON
    hdrs = {"Content-Type": ctype, "X-Amz-Target": f"{API}.{op}"}
    data = cbor_encode(body if body is not None else {}) if cbor else json.dumps(body if body is not None else {}).encode()
    req = AWSRequest(method="POST", url=endpoint + "/", data=data, headers=hdrs)
    SigV4Auth(conftest.signing_credentials(), "kinesis", REGION).add_auth(req)
    conn = conftest.http_connection(endpoint)
    try:
        conn.request("POST", "/", body=data, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        payload = resp.read()
        rctype = resp.getheader("content-type") or ""
        status = resp.status
    finally:
        conn.close()
    if not payload:
        parsed = ""
    elif rctype.startswith(AMZ_CBOR):
        parsed = cbor_decode(payload)
    else:
        parsed = json.loads(payload)
    return status, parsed, payload


def metrics_text(endpoint: str) -> str:
    return conftest.metrics_text(endpoint)


def series_value(text: str, selector: str) -> float | None:
    """The value of the series `selector` (name{labels}, exactly as written), or None if absent."""
    for line in text.splitlines():
        if line.startswith(selector + " "):
            return float(line[len(selector) + 1:].split()[0])
    return None


def shard_series(metric: str, stream: str, shard: str = SHARD0) -> str:
    return f'{SERIES[metric]}{{stream="{stream}",shard="{shard}"}}'


def stream_series(metric: str, stream: str) -> str:
    return f'{SERIES[metric].replace("sluice_", "sluice_stream_", 1)}{{stream="{stream}"}}'


def summary(client, name: str) -> dict:
    return client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]


def arn_of(client, name: str) -> str:
    return summary(client, name)["StreamARN"]


def wait_until(pred, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def register_consumer(client, stream_arn: str, name: str) -> str:
    arn = client.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)["Consumer"]["ConsumerARN"]
    wait_until(
        lambda: client.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE",
        what="consumer ACTIVE",
    )
    return arn


def slow_config(create_delay: str) -> str:
    return f'[streams]\ncreate_delay = "{create_delay}"\ndelete_delay = "0ms"\n'


# ---------------------------------------------------------------------------------------------
# 1. Enhanced monitoring


def test_enhanced_monitoring_answers_in_aws_order(kinesis, make_stream):
    name = make_stream(shard_count=1)
    arn = arn_of(kinesis, name)
    assert kinesis.describe_stream(StreamName=name)["StreamDescription"]["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]

    r = kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["OutgoingBytes", "IncomingBytes"])
    assert r["StreamName"] == name
    assert r["StreamARN"] == arn
    assert r["CurrentShardLevelMetrics"] == []
    assert r["DesiredShardLevelMetrics"] == ["IncomingBytes", "OutgoingBytes"]

    r = kinesis.enable_enhanced_monitoring(StreamARN=arn, ShardLevelMetrics=["ALL"])
    assert r["StreamName"] == name and r["StreamARN"] == arn
    assert r["CurrentShardLevelMetrics"] == ["IncomingBytes", "OutgoingBytes"]
    assert r["DesiredShardLevelMetrics"] == ALL_METRICS

    assert kinesis.describe_stream(StreamName=name)["StreamDescription"]["EnhancedMonitoring"] == [{"ShardLevelMetrics": ALL_METRICS}]
    assert summary(kinesis, name)["EnhancedMonitoring"] == [{"ShardLevelMetrics": ALL_METRICS}]

    r = kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IteratorAgeMilliseconds", "IncomingRecords"])
    assert r["StreamName"] == name and r["StreamARN"] == arn
    assert r["CurrentShardLevelMetrics"] == ALL_METRICS
    expected = [m for m in ALL_METRICS if m not in ("IteratorAgeMilliseconds", "IncomingRecords")]
    assert r["DesiredShardLevelMetrics"] == expected
    assert summary(kinesis, name)["EnhancedMonitoring"] == [{"ShardLevelMetrics": expected}]

    r = kinesis.disable_enhanced_monitoring(StreamARN=arn, ShardLevelMetrics=["ALL"])
    assert r["CurrentShardLevelMetrics"] == expected
    assert r["DesiredShardLevelMetrics"] == []
    assert summary(kinesis, name)["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]
    assert kinesis.describe_stream(StreamName=name)["StreamDescription"]["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]


def test_enhanced_monitoring_controls_per_shard_metrics(kinesis, endpoint, make_stream):
    on = make_stream(shard_count=1)
    off = make_stream(shard_count=1)
    kinesis.enable_enhanced_monitoring(StreamName=on, ShardLevelMetrics=["IncomingBytes"])
    for name in (on, off):
        for i in range(3):
            kinesis.put_record(StreamName=name, Data=b"metric-%d" % i, PartitionKey=f"k{i}")
        assert len(read_shard(kinesis, name, SHARD0)) == 3

    def traffic_counted():
        t = metrics_text(endpoint)
        ok = all(series_value(t, stream_series("IncomingRecords", n)) == 3 for n in (on, off))
        return t if ok else None

    text = wait_until(traffic_counted, 5, "stream-level IncomingRecords == 3 for both streams")
    for name in (on, off):
        for metric in ALL_METRICS:
            assert series_value(text, stream_series(metric, name)) is not None, (stream_series(metric, name), text)
        assert series_value(text, stream_series("IncomingBytes", name)) > 0
        assert series_value(text, stream_series("OutgoingRecords", name)) == 3
        assert series_value(text, shard_series("IncomingRecords", name)) is None, name
    assert series_value(text, shard_series("IncomingBytes", on)) > 0
    assert series_value(text, shard_series("IncomingBytes", off)) is None
    for metric in ALL_METRICS[1:]:
        assert series_value(text, shard_series(metric, on)) is None, metric
        assert series_value(text, shard_series(metric, off)) is None, metric

    # All seven on the second stream: all its per-shard series appear.
    kinesis.enable_enhanced_monitoring(StreamName=off, ShardLevelMetrics=["ALL"])
    text = metrics_text(endpoint)
    for metric in ALL_METRICS:
        assert series_value(text, shard_series(metric, off)) is not None, (metric, text)

    # Disabled again: the per-shard series disappears, the stream-level one stays.
    kinesis.disable_enhanced_monitoring(StreamName=on, ShardLevelMetrics=["IncomingBytes"])
    text = metrics_text(endpoint)
    assert series_value(text, shard_series("IncomingBytes", on)) is None
    assert series_value(text, stream_series("IncomingBytes", on)) > 0
    assert series_value(text, stream_series("IncomingRecords", on)) == 3


def test_enhanced_monitoring_refused_while_not_active(new_daemon):
    d = new_daemon(slow_config("10s"))
    c = make_client(d.endpoint)
    name = unique_name()
    c.create_stream(StreamName=name, ShardCount=1)
    assert summary(c, name)["StreamStatus"] == "CREATING"
    for op in (c.enable_enhanced_monitoring, c.disable_enhanced_monitoring):
        with pytest.raises(ClientError) as e:
            op(StreamName=name, ShardLevelMetrics=["IncomingBytes"])
        assert error_code(e) == "ResourceInUseException", e.value.response


# ---------------------------------------------------------------------------------------------
# 2. UpdateMaxRecordSize


TWO_MIB_MESSAGE = (
    "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=2097152 cap=2097152]' "
    "at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576"
)


def test_max_record_size_raised_to_10_mib(kinesis, endpoint, make_stream):
    name = make_stream(shard_count=1)
    arn = arn_of(kinesis, name)
    assert summary(kinesis, name)["MaxRecordSizeInKiB"] == 1024

    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=name, Data=b"\x00" * (2 * 1024 * 1024), PartitionKey="big")
    assert error_code(e) == "ValidationException"
    assert e.value.response["Error"]["Message"] == TWO_MIB_MESSAGE
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    status, body, raw = call(endpoint, "UpdateMaxRecordSize", {"StreamARN": arn, "MaxRecordSizeInKiB": 10240})
    assert (status, raw) == (200, b""), body
    assert summary(kinesis, name)["MaxRecordSizeInKiB"] == 10240

    marker = uuid.uuid4().hex.encode()
    data = marker + os.urandom(10 * 1024 * 1024 - 100 - len(marker))
    assert len(data) == 10 * 1024 * 1024 - 100
    put = kinesis.put_record(StreamName=name, Data=data, PartitionKey="big")
    assert put["ShardId"] == SHARD0
    it = kinesis.get_shard_iterator(
        StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=put["SequenceNumber"]
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=it)["Records"]
    assert records, "the 10 MiB record was not returned"
    assert records[0]["SequenceNumber"] == put["SequenceNumber"]
    assert len(records[0]["Data"]) == len(data)
    assert records[0]["Data"] == data


@pytest.mark.parametrize("size", [1023, 10241])
def test_max_record_size_out_of_range(kinesis, kinesis_unvalidated, make_stream, size):
    name = make_stream(shard_count=1)
    with pytest.raises(ClientError) as e:
        kinesis_unvalidated.update_max_record_size(StreamARN=arn_of(kinesis, name), MaxRecordSizeInKiB=size)
    assert error_code(e) == "ValidationException", e.value.response
    assert summary(kinesis, name)["MaxRecordSizeInKiB"] == 1024


# ---------------------------------------------------------------------------------------------
# 3. CreateStream's default mode


def test_create_stream_without_count_or_mode_is_on_demand(kinesis, make_stream):
    name = make_stream(shard_count=None)
    s = summary(kinesis, name)
    assert s["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert s["OpenShardCount"] == 4
    assert len([x for x in list_all_shards(kinesis, name) if "EndingSequenceNumber" not in x["SequenceNumberRange"]]) == 4


def test_create_stream_with_count_only_is_provisioned(kinesis, make_stream):
    name = make_stream(shard_count=2)
    s = summary(kinesis, name)
    assert s["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert s["OpenShardCount"] == 2


# ---------------------------------------------------------------------------------------------
# 4. Account settings


def _commitment(client) -> dict:
    return client.describe_account_settings()["MinimumThroughputBillingCommitment"]


def test_account_settings_commitment_enable_restart_disable(new_daemon):
    d = new_daemon()
    c = make_client(d.endpoint)
    assert _commitment(c)["Status"] == "DISABLED"

    before = time.time()
    r = c.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})["MinimumThroughputBillingCommitment"]
    assert r["Status"] == "ENABLED"
    assert before - 5 <= r["StartedAt"].timestamp() <= time.time() + 5
    assert abs((r["EarliestAllowedEndAt"] - r["StartedAt"]) - timedelta(hours=24)) <= timedelta(seconds=1)
    assert "EndedAt" not in r
    assert _commitment(c) == r

    d.restart()
    c = make_client(d.endpoint)
    assert _commitment(c) == r

    off = c.update_account_settings(MinimumThroughputBillingCommitment={"Status": "DISABLED"})["MinimumThroughputBillingCommitment"]
    assert off["Status"] == "ENABLED_UNTIL_EARLIEST_ALLOWED_END"
    assert off["StartedAt"] == r["StartedAt"]
    assert off["EarliestAllowedEndAt"] == r["EarliestAllowedEndAt"]
    assert _commitment(c)["Status"] == "ENABLED_UNTIL_EARLIEST_ALLOWED_END"


def test_account_settings_survive_kill_9(new_daemon):
    d = new_daemon()
    c = make_client(d.endpoint)
    r = c.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})["MinimumThroughputBillingCommitment"]
    assert r["Status"] == "ENABLED"
    d.restart(kill=True)
    c = make_client(d.endpoint)
    after = _commitment(c)
    assert after["Status"] == "ENABLED"
    assert after["StartedAt"] == r["StartedAt"]
    assert after["EarliestAllowedEndAt"] == r["EarliestAllowedEndAt"]


# ---------------------------------------------------------------------------------------------
# 5. UpdateStreamWarmThroughput


def test_warm_throughput(new_daemon):
    d = new_daemon()
    c = make_client(d.endpoint)
    od = create_stream(c, shard_count=None)
    prov = create_stream(c, shard_count=1)

    with pytest.raises(ClientError) as e:
        c.update_stream_warm_throughput(StreamName=od, WarmThroughputMiBps=8)
    assert error_code(e) == "InvalidArgumentException", e.value.response

    c.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})

    with pytest.raises(ClientError) as e:
        c.update_stream_warm_throughput(StreamName=prov, WarmThroughputMiBps=8)
    assert error_code(e) == "InvalidArgumentException", e.value.response

    arn = arn_of(c, od)
    r = c.update_stream_warm_throughput(StreamARN=arn, WarmThroughputMiBps=8)
    assert r["StreamName"] == od
    assert r["StreamARN"] == arn
    assert r["WarmThroughput"] == {"TargetMiBps": 8, "CurrentMiBps": 8}

    def scaled():
        s = summary(c, od)
        assert s["StreamStatus"] in ("UPDATING", "ACTIVE"), s
        return s if s["StreamStatus"] == "ACTIVE" and s["OpenShardCount"] == 8 else None

    s = wait_until(scaled, 10, "ACTIVE with 8 open shards")
    assert s["WarmThroughput"] == {"TargetMiBps": 8, "CurrentMiBps": 8}
    assert s["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}


# ---------------------------------------------------------------------------------------------
# 6. UpdateStreamRecordDistributionStrategy


def test_record_distribution_auto_refused_for_provisioned(kinesis, make_stream):
    name = make_stream(shard_count=2)
    with pytest.raises(ClientError) as e:
        kinesis.update_stream_record_distribution_strategy(StreamARN=arn_of(kinesis, name), RecordDistributionStrategy="AUTO")
    assert error_code(e) == "InvalidArgumentException", e.value.response


def test_record_distribution_auto_and_back(kinesis, kinesis_unvalidated, make_stream):
    name = make_stream(shard_count=None)
    arn = arn_of(kinesis, name)
    assert summary(kinesis, name).get("RecordDistributionStrategy", "USER_PARTITION_KEY") == "USER_PARTITION_KEY"
    open_shards = sorted(s["ShardId"] for s in list_all_shards(kinesis, name))
    assert len(open_shards) == 4

    kinesis.update_stream_record_distribution_strategy(StreamARN=arn, RecordDistributionStrategy="AUTO")
    assert summary(kinesis, name)["RecordDistributionStrategy"] == "AUTO"

    shards = Counter(kinesis.put_record(StreamName=name, Data=b"auto-%d" % i, PartitionKey="one-key")["ShardId"] for i in range(40))
    assert sorted(shards) == open_shards, shards
    assert set(shards.values()) == {10}, shards
    stored = read_stream(kinesis, name)
    assert {k: len(v) for k, v in stored.items()} == {s: 10 for s in open_shards}

    r = kinesis_unvalidated.put_records(StreamName=name, Records=[{"Data": b"nokey-%d" % i} for i in range(8)])
    assert r["FailedRecordCount"] == 0, r
    assert all(x["ShardId"] in open_shards and x["SequenceNumber"] for x in r["Records"]), r

    kinesis.update_stream_record_distribution_strategy(StreamARN=arn, RecordDistributionStrategy="USER_PARTITION_KEY")
    assert summary(kinesis, name)["RecordDistributionStrategy"] == "USER_PARTITION_KEY"
    shards = Counter(kinesis.put_record(StreamName=name, Data=b"user-%d" % i, PartitionKey="one-key")["ShardId"] for i in range(20))
    assert shards == {shard_for_hash(list_all_shards(kinesis, name), hash_key("one-key")): 20}


# ---------------------------------------------------------------------------------------------
# 7. Resource policies


def policy_for(arn: str) -> str:
    # Indented and with a Sid, so that "returned exactly as given" is not a re-serialisation.
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "read-" + uuid.uuid4().hex[:8],
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "kinesis:GetRecords",
                    "Resource": arn,
                }
            ],
        },
        indent=2,
    )


def test_resource_policy_on_stream_and_consumer(kinesis, endpoint, make_stream):
    name = make_stream(shard_count=1)
    stream_arn = arn_of(kinesis, name)
    consumer_arn = register_consumer(kinesis, stream_arn, "policy-app")
    for arn in (stream_arn, consumer_arn):
        assert kinesis.get_resource_policy(ResourceARN=arn)["Policy"] == "{}"
        doc = policy_for(arn)
        status, body, raw = call(endpoint, "PutResourcePolicy", {"ResourceARN": arn, "Policy": doc})
        assert (status, raw) == (200, b""), body
        assert kinesis.get_resource_policy(ResourceARN=arn)["Policy"] == doc
        status, body, raw = call(endpoint, "DeleteResourcePolicy", {"ResourceARN": arn})
        assert (status, raw) == (200, b""), body
        assert kinesis.get_resource_policy(ResourceARN=arn)["Policy"] == "{}"
    # One resource's policy is not another's.
    doc = policy_for(stream_arn)
    kinesis.put_resource_policy(ResourceARN=stream_arn, Policy=doc)
    assert kinesis.get_resource_policy(ResourceARN=consumer_arn)["Policy"] == "{}"
    assert kinesis.get_resource_policy(ResourceARN=stream_arn)["Policy"] == doc


def _statement(arn, **changes):
    st = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kinesis:GetRecords", "Resource": arn}
    st.update(changes)
    return {k: v for k, v in st.items() if v is not None}


@pytest.mark.parametrize("case", ["not-json", "empty-object", "effect-maybe", "no-principal"])
def test_resource_policy_invalid_documents(kinesis, make_stream, case):
    name = make_stream(shard_count=1)
    arn = arn_of(kinesis, name)
    doc = {
        "not-json": "not json",
        "empty-object": "{}",
        "effect-maybe": json.dumps({"Version": "2012-10-17", "Statement": [_statement(arn, Effect="Maybe")]}),
        "no-principal": json.dumps({"Version": "2012-10-17", "Statement": [_statement(arn, Principal=None)]}),
    }[case]
    with pytest.raises(ClientError) as e:
        kinesis.put_resource_policy(ResourceARN=arn, Policy=doc)
    assert error_code(e) == "InvalidArgumentException", e.value.response
    assert kinesis.get_resource_policy(ResourceARN=arn)["Policy"] == "{}"


def test_resource_policy_unknown_stream(kinesis):
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{unique_name('nosuch')}"
    for op, kw in (
        (kinesis.put_resource_policy, {"Policy": policy_for(arn)}),
        (kinesis.get_resource_policy, {}),
        (kinesis.delete_resource_policy, {}),
    ):
        with pytest.raises(ClientError) as e:
            op(ResourceARN=arn, **kw)
        assert error_code(e) == "ResourceNotFoundException", (op, e.value.response)


def test_resource_policy_survives_restart(new_daemon):
    d = new_daemon()
    c = make_client(d.endpoint)
    name = create_stream(c, shard_count=1)
    arn = arn_of(c, name)
    doc = policy_for(arn)
    c.put_resource_policy(ResourceARN=arn, Policy=doc)
    d.restart()
    c = make_client(d.endpoint)
    assert c.get_resource_policy(ResourceARN=arn)["Policy"] == doc


def test_resource_policy_survives_kill_9(new_daemon):
    d = new_daemon()
    c = make_client(d.endpoint)
    name = create_stream(c, shard_count=1)
    arn = arn_of(c, name)
    doc = policy_for(arn)
    c.put_resource_policy(ResourceARN=arn, Policy=doc)
    d.restart(kill=True)
    c = make_client(d.endpoint)
    assert c.get_resource_policy(ResourceARN=arn)["Policy"] == doc


def test_resource_policy_removed_with_stream(kinesis, make_stream):
    name = make_stream(shard_count=1)
    arn = arn_of(kinesis, name)
    kinesis.put_resource_policy(ResourceARN=arn, Policy=policy_for(arn))
    kinesis.delete_stream(StreamName=name)
    wait_gone(kinesis, name)
    make_stream(shard_count=1, name=name)
    assert arn_of(kinesis, name) == arn
    assert kinesis.get_resource_policy(ResourceARN=arn)["Policy"] == "{}"


# ---------------------------------------------------------------------------------------------
# 8. DeleteStream while CREATING


def test_delete_stream_while_creating(new_daemon):
    d = new_daemon(slow_config("10s"))
    c = make_client(d.endpoint)
    name = unique_name()
    created = time.monotonic()
    c.create_stream(StreamName=name, ShardCount=1)
    assert summary(c, name)["StreamStatus"] == "CREATING"
    r = c.delete_stream(StreamName=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    wait_gone(c, name, timeout=5)
    # Past the create delay it must still be gone (no delayed CREATING -> ACTIVE resurrects it).
    while time.monotonic() < created + 10.5:
        with pytest.raises(ClientError) as e:
            summary(c, name)
        assert error_code(e) == "ResourceNotFoundException"
        time.sleep(0.25)
    with pytest.raises(ClientError) as e:
        summary(c, name)
    assert error_code(e) == "ResourceNotFoundException"
    assert name not in c.list_streams()["StreamNames"]


# ---------------------------------------------------------------------------------------------
# 9. DescribeStreamConsumer with StreamARN and ConsumerARN


def test_describe_consumer_with_stream_and_consumer_arn(kinesis, make_stream):
    a = make_stream(shard_count=1)
    b = make_stream(shard_count=1)
    arn_a, arn_b = arn_of(kinesis, a), arn_of(kinesis, b)
    consumer = register_consumer(kinesis, arn_a, "both-arns")
    d = kinesis.describe_stream_consumer(StreamARN=arn_a, ConsumerARN=consumer)["ConsumerDescription"]
    assert d["ConsumerARN"] == consumer
    assert d["ConsumerName"] == "both-arns"
    assert d["StreamARN"] == arn_a
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_consumer(StreamARN=arn_b, ConsumerARN=consumer)
    assert error_code(e) == "ResourceNotFoundException", e.value.response


# ---------------------------------------------------------------------------------------------
# 10. GetRecords with a quoted shard iterator


def test_get_records_accepts_quoted_iterator(kinesis, kinesis_unvalidated, make_stream):
    name = make_stream(shard_count=1)
    for i in range(3):
        kinesis.put_record(StreamName=name, Data=b"quoted-%d" % i, PartitionKey="k")
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    plain = kinesis.get_records(ShardIterator=it)["Records"]
    quoted = kinesis_unvalidated.get_records(ShardIterator='"' + it + '"')["Records"]
    assert [r["Data"] for r in plain] == [b"quoted-0", b"quoted-1", b"quoted-2"]
    assert [(r["SequenceNumber"], r["Data"]) for r in quoted] == [(r["SequenceNumber"], r["Data"]) for r in plain]


# ---------------------------------------------------------------------------------------------
# 11. StreamId


def test_stream_id(kinesis, endpoint, make_stream):
    # Raw HTTP: botocore's endpoint rules turn a StreamId into an AWS host name
    # ({account}.{stream id}.control-kinesis...), even with endpoint_url set.
    name = make_stream(shard_count=1)
    sid = summary(kinesis, name)["StreamId"]
    assert STREAM_ID_RE.fullmatch(sid), sid
    status, body, _ = call(endpoint, "DescribeStreamSummary", {"StreamName": name, "StreamId": sid})
    assert status == 200, body
    assert body["StreamDescriptionSummary"]["StreamName"] == name
    assert body["StreamDescriptionSummary"]["StreamId"] == sid

    other = "a" * 20 + "-aaa"
    assert other != sid
    status, body, _ = call(endpoint, "DescribeStreamSummary", {"StreamName": name, "StreamId": other})
    assert (status, body.get("__type")) == (400, "ResourceNotFoundException"), body

    status, body, _ = call(endpoint, "DescribeStreamSummary", {"StreamName": name, "StreamId": "Not-A-Stream-Id!"})
    assert (status, body.get("__type")) == (400, "ValidationException"), body

    # Puts too (they take a faster decoding path): the right StreamId writes, another is refused.
    record = {"StreamName": name, "PartitionKey": "k", "Data": "aGk="}
    status, body, _ = call(endpoint, "PutRecord", {**record, "StreamId": sid})
    assert status == 200, body
    for op, req in [("PutRecord", record), ("PutRecords", {"StreamName": name, "Records": [{"PartitionKey": "k", "Data": "aGk="}]})]:
        status, body, _ = call(endpoint, op, {**req, "StreamId": other})
        assert (status, body.get("__type")) == (400, "ResourceNotFoundException"), (op, body)


# ---------------------------------------------------------------------------------------------
# 12. CBOR timestamps


def _cbor_ok(endpoint, op, body):
    status, parsed, raw = call(endpoint, op, body, cbor=True)
    assert status == 200, (status, parsed)
    assert isinstance(parsed, dict), raw[:200]
    return parsed


def _cbor_read_all(endpoint, iterator):
    out = _cbor_ok(endpoint, "GetRecords", {"ShardIterator": iterator})
    return out["Records"]


def _epoch_ms(ts) -> int:
    assert isinstance(ts, Tag) and ts.tag == 1, f"not a tag-1 timestamp: {ts!r}"
    assert isinstance(ts.value, int) and not isinstance(ts.value, bool), f"not an integer: {ts!r}"
    return ts.value


def test_cbor_timestamps(kinesis, endpoint, make_stream):
    name = make_stream(shard_count=1)

    kinesis.put_record(StreamName=name, Data=b"cbor-first", PartitionKey="k")
    it = _cbor_ok(endpoint, "GetShardIterator", {"StreamName": name, "ShardId": SHARD0, "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
    recs = _cbor_read_all(endpoint, it)
    assert [r["Data"] for r in recs] == [b"cbor-first"]
    first_ms = _epoch_ms(recs[0]["ApproximateArrivalTimestamp"])
    assert abs(first_ms - time.time() * 1000) < 5000, first_ms

    time.sleep(0.06)
    kinesis.put_record(StreamName=name, Data=b"cbor-second", PartitionKey="k")
    recs = _cbor_read_all(endpoint, it)
    assert [r["Data"] for r in recs] == [b"cbor-first", b"cbor-second"]
    second_ms = _epoch_ms(recs[1]["ApproximateArrivalTimestamp"])
    assert second_ms - first_ms >= 20, (first_ms, second_ms)

    between = (first_ms + second_ms) // 2
    it = _cbor_ok(
        endpoint,
        "GetShardIterator",
        {"StreamName": name, "ShardId": SHARD0, "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": Tag(1, between)},
    )["ShardIterator"]
    recs = _cbor_read_all(endpoint, it)
    assert [r["Data"] for r in recs] == [b"cbor-second"]
    assert _epoch_ms(recs[0]["ApproximateArrivalTimestamp"]) == second_ms


def test_describe_stream_shows_the_old_layout_until_a_reshard_is_done(new_daemon):
    """As on AWS: while a reshard's stream is UPDATING, DescribeStream shows the shards as they
    were; ListShards already shows the children."""
    d = new_daemon('[streams]\ncreate_delay = "1500ms"\ndelete_delay = "0ms"\n')
    k = make_client(d.endpoint)
    k.create_stream(StreamName="layout", ShardCount=1)
    deadline = time.monotonic() + 10
    while k.describe_stream_summary(StreamName="layout")["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    k.split_shard(StreamName="layout", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    desc = k.describe_stream(StreamName="layout")["StreamDescription"]
    assert desc["StreamStatus"] == "UPDATING"
    assert [s["ShardId"] for s in desc["Shards"]] == ["shardId-000000000000"]
    assert "EndingSequenceNumber" not in desc["Shards"][0]["SequenceNumberRange"]
    listed = k.list_shards(StreamName="layout")["Shards"]
    assert len(listed) == 3
    while k.describe_stream_summary(StreamName="layout")["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    desc = k.describe_stream(StreamName="layout")["StreamDescription"]
    assert [s["ShardId"] for s in desc["Shards"]] == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    assert "EndingSequenceNumber" in desc["Shards"][0]["SequenceNumberRange"]
