"""Kinesis queues (`Kinesis_20131202`: CreateQueue, DescribeQueue, ListQueues, UpdateQueue,
DeleteQueue, ReceiveQueueRecords, AcknowledgeQueueRecords, UpdateQueueRecordsVisibility and the
four dead-letter operations) through boto3's `kinesis` client.

* The lifecycle: CreateQueue's answer (CREATING, defaults filled in, StartingPosition's
  Timestamp only once ACTIVE unless AT_TIMESTAMP), ListQueues (pages, StreamFilter),
  UpdateQueue (UPDATING, then ACTIVE with the new attributes), tags on the queue's ARN,
  QueueCount, DeleteQueue; DeleteStream and UpdateStreamMode to PROVISIONED refused while a
  stream has queues; the registered-consumer limit shared with enhanced fan-out consumers.
* Errors, code and message, and the model's validation (botocore's client-side validation off).
* Delivery: every record once to one of several concurrent consumers, receipt handles that
  cannot be forged or used after they expire, redelivery after the visibility timeout, per-call
  and per-record visibility, long polling woken by a put (the latency is measured and printed),
  dead letters after MaxReceiveCount (received, restored, acknowledged), TargetType NONE, a
  queue across a split and a merge, records past the stream's retention, and the gauges.
* State across restarts: a seeded property test against an in-memory model of a queue
  (receive, acknowledge, change visibility, restore, time passing through `[queues]
  clock_file`, `kill -9` and SIGTERM restarts): every answer is the model's
  (`SLUICE_QUEUE_MODEL_SEED`, `SLUICE_QUEUE_MODEL_STEPS`). And `kill -9` at seeded moments under
  several consumers (`SLUICE_QUEUE_CRASH_SEED`, `SLUICE_QUEUE_CRASH_ROUNDS`): no acknowledged
  record is delivered again, and in the end every record is acknowledged or a dead letter.
"""

from __future__ import annotations

import base64
import os
import random
import statistics
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

import conftest
from conftest import FAST_CONFIG, create_stream, error_code, make_client, unique_name


def stream_arn(client, name: str) -> str:
    return client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def make_queue(client, stream: str, start: dict | None = None, name: str | None = None, **attrs) -> str:
    """Creates a queue on `stream` and waits for ACTIVE; returns its ARN."""
    config = {"StreamARN": stream_arn(client, stream)}
    if start is not None:
        config["StartingPosition"] = start
    args = {"QueueName": name or unique_name("q"), "StreamConfigurationList": [config]}
    if attrs:
        args["QueueAttributes"] = attrs
    arn = client.create_queue(**args)["QueueDescription"]["QueueARN"]
    wait_queue(client, arn, "ACTIVE")
    return arn


def wait_queue(client, arn: str, status: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        d = client.describe_queue(QueueARN=arn)["QueueDescription"]
        if d["QueueStatus"] == status or time.monotonic() > deadline:
            assert d["QueueStatus"] == status, d
            return d
        time.sleep(0.02)


def on_demand(client, name: str | None = None) -> str:
    return create_stream(client, name, shard_count=None, mode="ON_DEMAND")


def put(client, stream: str, n: int, prefix: str = "r", keys: int | None = None) -> list[bytes]:
    """Puts `n` records `<prefix>-<i>`, each under its own partition key, or under `k<i % keys>`."""
    datas = [f"{prefix}-{i}".encode() for i in range(n)]
    for i in range(0, n, 500):
        chunk = datas[i : i + 500]
        key = (lambda d: d.decode()) if keys is None else (lambda d: f"k{int(d.decode().rsplit('-', 1)[1]) % keys}")
        out = client.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": key(d)} for d in chunk])
        assert out["FailedRecordCount"] == 0
    return datas


def receive(client, arn: str, limit: int = 10, wait: int = 1, **kw) -> list[dict]:
    return client.receive_queue_records(QueueARN=arn, Limit=limit, WaitTimeSeconds=wait, **kw)["QueueRecords"]


def ack(client, arn: str, records: list[dict], dead: bool = False) -> dict:
    entries = [{"ReceiptHandle": r["ReceiptHandle"]} for r in records]
    if dead:
        return client.acknowledge_dead_letter_queue_records(QueueARN=arn, Entries=entries)
    return client.acknowledge_queue_records(QueueARN=arn, Entries=entries)


def drain(client, arn: str, want: int, **kw) -> list[dict]:
    """Receives (and acknowledges) until `want` records came or a receive came back empty."""
    got: list[dict] = []
    while len(got) < want:
        batch = receive(client, arn, **kw)
        if not batch:
            break
        out = ack(client, arn, batch)
        assert out["Failed"] == [], out
        got += batch
    return got


def delete_queue(client, arn: str) -> None:
    client.delete_queue(QueueARN=arn)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.describe_queue(QueueARN=arn)
        except ClientError as e:
            assert error_code_of(e) == "ResourceNotFoundException"
            return
        time.sleep(0.02)
    pytest.fail(f"queue {arn} was not deleted")


def error_code_of(e: ClientError) -> str:
    return e.response["Error"]["Code"]


def error_of(fn, *a, **kw) -> tuple[str, str]:
    with pytest.raises(ClientError) as ei:
        fn(*a, **kw)
    return error_code(ei), ei.value.response["Error"].get("Message", "")


def set_clock(path, ms: int) -> None:
    """Rewrites the clock file atomically, so the daemon never reads it half written."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(ms))
    os.replace(tmp, path)


def metrics(endpoint: str) -> str:
    return conftest.metrics_text(endpoint)


def gauge(text: str, name: str, queue: str) -> float | None:
    prefix = f'{name}{{queue="{queue}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


# ---------------------------------------------------------------------------------------------
# Lifecycle


def test_lifecycle_describe_list_update_tags_delete(kinesis):
    stream = on_demand(kinesis)
    arn = stream_arn(kinesis, stream)
    name = unique_name("q")
    created = kinesis.create_queue(
        QueueName=name,
        StreamConfigurationList=[{"StreamARN": arn, "StartingPosition": {"Type": "TRIM_HORIZON"}}],
        Tags={"team": "billing"},
    )["QueueDescription"]
    assert created["QueueName"] == name
    assert created["QueueStatus"] in ("CREATING", "ACTIVE")
    assert created["QueueARN"].startswith("arn:aws:kinesis:us-east-1:000000000000:queue/")
    assert name not in created["QueueARN"], "the ARN's id is not derived from the name"
    assert created["QueueAttributes"] == {
        "VisibilityTimeoutSeconds": 30,
        "DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 6},
    }
    if created["QueueStatus"] == "CREATING":
        assert "Timestamp" not in created["StreamConfigurationList"][0]["StartingPosition"]
    qarn = created["QueueARN"]
    d = wait_queue(kinesis, qarn, "ACTIVE")
    start = d["StreamConfigurationList"][0]
    assert start["StreamARN"] == arn
    assert start["StartingPosition"]["Type"] == "TRIM_HORIZON"
    assert isinstance(start["StartingPosition"]["Timestamp"], datetime), "ACTIVE: the effective start"

    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["QueueCount"] == 1
    assert summary["ConsumerCount"] == 0

    # ListQueues: a StreamFilter finds it; another stream's filter does not.
    other = on_demand(kinesis)
    listed = kinesis.list_queues(StreamFilter=[{"StreamARN": arn}])["QueueSummaries"]
    assert [q["QueueName"] for q in listed] == [name]
    assert listed[0]["Streams"][0]["StreamARN"] == arn
    assert listed[0]["QueueStatus"] == "ACTIVE"
    assert kinesis.list_queues(StreamFilter=[{"StreamARN": stream_arn(kinesis, other)}])["QueueSummaries"] == []

    # Tags on the queue's ARN.
    assert kinesis.list_tags_for_resource(ResourceARN=qarn)["Tags"] == [{"Key": "team", "Value": "billing"}]
    kinesis.tag_resource(ResourceARN=qarn, Tags={"env": "test"})
    kinesis.untag_resource(ResourceARN=qarn, TagKeys=["team"])
    assert kinesis.list_tags_for_resource(ResourceARN=qarn)["Tags"] == [{"Key": "env", "Value": "test"}]
    assert kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"] == [], "the stream's own tags are apart"

    # UpdateQueue: UPDATING (the new attributes shown), then ACTIVE.
    updated = kinesis.update_queue(
        QueueARN=qarn,
        QueueAttributes={"VisibilityTimeoutSeconds": 5, "DeadLetterConfiguration": {"TargetType": "NONE"}},
    )["QueueDescription"]
    assert updated["QueueStatus"] in ("UPDATING", "ACTIVE")
    assert updated["QueueAttributes"] == {"VisibilityTimeoutSeconds": 5, "DeadLetterConfiguration": {"TargetType": "NONE"}}
    d = wait_queue(kinesis, qarn, "ACTIVE")
    assert d["QueueAttributes"]["VisibilityTimeoutSeconds"] == 5
    # Attributes not given are left as they are.
    kinesis.update_queue(QueueARN=qarn, QueueAttributes={"VisibilityTimeoutSeconds": 7})
    d = wait_queue(kinesis, qarn, "ACTIVE")
    assert d["QueueAttributes"] == {"VisibilityTimeoutSeconds": 7, "DeadLetterConfiguration": {"TargetType": "NONE"}}

    # The stream cannot go while it has queues, nor become PROVISIONED.
    code, msg = error_of(kinesis.delete_stream, StreamName=stream)
    assert code == "ResourceInUseException" and name in msg
    code, msg = error_of(
        kinesis.update_stream_mode, StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"}
    )
    assert code == "ResourceInUseException" and "DeleteQueue" in msg

    delete_queue(kinesis, qarn)
    assert kinesis.list_queues(StreamFilter=[{"StreamARN": arn}])["QueueSummaries"] == []
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["QueueCount"] == 0
    code, _ = error_of(kinesis.receive_queue_records, QueueARN=qarn, WaitTimeSeconds=1)
    assert code == "ResourceNotFoundException"
    kinesis.delete_stream(StreamName=stream)
    kinesis.delete_stream(StreamName=other)


def test_starting_positions(kinesis):
    stream = on_demand(kinesis)
    before = put(kinesis, stream, 5, "old")
    arn = stream_arn(kinesis, stream)
    trim = make_queue(kinesis, stream, {"Type": "TRIM_HORIZON"})
    latest = make_queue(kinesis, stream)  # LATEST, the default
    at = datetime.now(timezone.utc) + timedelta(milliseconds=300)
    created = kinesis.create_queue(
        QueueName=unique_name("q"),
        StreamConfigurationList=[{"StreamARN": arn, "StartingPosition": {"Type": "AT_TIMESTAMP", "Timestamp": at}}],
    )["QueueDescription"]
    # AT_TIMESTAMP echoes the time given at once.
    echoed = created["StreamConfigurationList"][0]["StartingPosition"]["Timestamp"]
    assert abs(echoed.timestamp() - at.timestamp()) < 0.01
    at_ts = created["QueueARN"]
    wait_queue(kinesis, at_ts, "ACTIVE")
    assert wait_queue(kinesis, latest, "ACTIVE")["StreamConfigurationList"][0]["StartingPosition"]["Type"] == "LATEST"
    time.sleep(0.4)
    after = put(kinesis, stream, 5, "new")
    assert sorted(r["Data"] for r in drain(kinesis, trim, 10)) == sorted(before + after)
    assert sorted(r["Data"] for r in drain(kinesis, latest, 10)) == sorted(after)
    assert sorted(r["Data"] for r in drain(kinesis, at_ts, 10)) == sorted(after)
    for q in (trim, latest, at_ts):
        delete_queue(kinesis, q)
    kinesis.delete_stream(StreamName=stream)


def test_list_queues_pages(kinesis):
    stream = on_demand(kinesis)
    arns = [make_queue(kinesis, stream) for _ in range(5)]
    arn = stream_arn(kinesis, stream)
    seen, token, pages = [], None, 0
    while True:
        args = {"MaxResults": 2, "StreamFilter": [{"StreamARN": arn}]}
        if token:
            args = {"MaxResults": 2, "NextToken": token, "StreamFilter": [{"StreamARN": arn}]}
        out = kinesis.list_queues(**args)
        pages += 1
        assert len(out["QueueSummaries"]) <= 2
        seen += [q["QueueARN"] for q in out["QueueSummaries"]]
        token = out.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(arns) and pages == 3
    code, _ = error_of(kinesis.list_queues, NextToken="not-a-token")
    assert code == "InvalidArgumentException"
    for q in arns:
        delete_queue(kinesis, q)
    kinesis.delete_stream(StreamName=stream)


def test_errors(kinesis, kinesis_unvalidated, make_stream):
    stream = on_demand(kinesis)
    arn = stream_arn(kinesis, stream)
    cfg = [{"StreamARN": arn}]

    provisioned = make_stream(shard_count=1)
    code, msg = error_of(
        kinesis.create_queue, QueueName="q", StreamConfigurationList=[{"StreamARN": stream_arn(kinesis, provisioned)}]
    )
    assert code == "InvalidArgumentException" and "ON_DEMAND" in msg
    code, _ = error_of(
        kinesis.create_queue,
        QueueName="q",
        StreamConfigurationList=[{"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/nope"}],
    )
    assert code == "ResourceNotFoundException"
    code, msg = error_of(kinesis.create_queue, QueueName="q", StreamConfigurationList=cfg * 2)
    assert code == "ValidationException" and "exactly one" in msg
    code, msg = error_of(
        kinesis.create_queue,
        QueueName="q",
        StreamConfigurationList=[{"StreamARN": arn, "StartingPosition": {"Type": "AT_TIMESTAMP"}}],
    )
    assert code == "ValidationException" and "Timestamp" in msg
    code, msg = error_of(
        kinesis.create_queue,
        QueueName="q",
        StreamConfigurationList=[
            {"StreamARN": arn, "StartingPosition": {"Type": "LATEST", "Timestamp": datetime.now(timezone.utc)}}
        ],
    )
    assert code == "ValidationException" and "AT_TIMESTAMP" in msg
    code, msg = error_of(
        kinesis.create_queue,
        QueueName="q",
        StreamConfigurationList=cfg,
        QueueAttributes={"DeadLetterConfiguration": {"TargetType": "BUILT_IN"}},
    )
    assert code == "ValidationException" and "MaxReceiveCount" in msg
    code, msg = error_of(
        kinesis.create_queue,
        QueueName="q",
        StreamConfigurationList=cfg,
        QueueAttributes={"DeadLetterConfiguration": {"TargetType": "NONE", "MaxReceiveCount": 3}},
    )
    assert code == "ValidationException" and "BUILT_IN" in msg
    code, _ = error_of(
        kinesis.create_queue, QueueName="q", StreamConfigurationList=cfg, Tags={f"k{i}": "v" for i in range(51)}
    )
    assert code == "InvalidArgumentException"
    # The model's constraints, as the server checks them.
    u = kinesis_unvalidated
    for attrs in (
        {"VisibilityTimeoutSeconds": 43_201},
        {"VisibilityTimeoutSeconds": -1},
        {"DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 0}},
        {"DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 1001}},
        {"DeadLetterConfiguration": {"TargetType": "SOMEWHERE"}},
    ):
        code, _ = error_of(u.create_queue, QueueName="q", StreamConfigurationList=cfg, QueueAttributes=attrs)
        assert code == "ValidationException", attrs
    code, _ = error_of(u.create_queue, QueueName="bad name!", StreamConfigurationList=cfg)
    assert code == "ValidationException"
    code, _ = error_of(u.create_queue, QueueName="q" * 129, StreamConfigurationList=cfg)
    assert code == "ValidationException"
    code, _ = error_of(u.create_queue, QueueName="q", StreamConfigurationList=[])
    assert code == "ValidationException"

    qarn = make_queue(kinesis, stream, name="dup-" + unique_name())
    name = kinesis.describe_queue(QueueARN=qarn)["QueueDescription"]["QueueName"]
    code, msg = error_of(kinesis.create_queue, QueueName=name, StreamConfigurationList=cfg)
    assert code == "ResourceInUseException" and name in msg
    for bad in ({"Limit": 11}, {"Limit": 0}, {"WaitTimeSeconds": 21}, {"WaitTimeSeconds": 0}, {"VisibilityTimeoutSeconds": 43_201}):
        code, _ = error_of(u.receive_queue_records, QueueARN=qarn, **bad)
        assert code == "ValidationException", bad
    code, _ = error_of(u.acknowledge_queue_records, QueueARN=qarn, Entries=[{"ReceiptHandle": "x"}] * 11)
    assert code == "ValidationException"
    code, _ = error_of(u.acknowledge_queue_records, QueueARN=qarn, Entries=[])
    assert code == "ValidationException"
    code, _ = error_of(u.describe_queue, QueueARN="arn:aws:kinesis:us-east-1:000000000000:stream/x")
    assert code == "ValidationException", "the QueueARN pattern"
    missing = "arn:aws:kinesis:us-east-1:000000000000:queue/0123456789abcdef0123456789abcdef"
    for call in (kinesis.describe_queue, kinesis.delete_queue):
        code, _ = error_of(call, QueueARN=missing)
        assert code == "ResourceNotFoundException"
    code, _ = error_of(kinesis.receive_queue_records, QueueARN=missing, WaitTimeSeconds=1)
    assert code == "ResourceNotFoundException"
    code, _ = error_of(kinesis.acknowledge_queue_records, QueueARN=missing, Entries=[{"ReceiptHandle": "x"}])
    assert code == "ResourceNotFoundException"
    code, _ = error_of(kinesis.update_queue, QueueARN=missing, QueueAttributes={"VisibilityTimeoutSeconds": 1})
    assert code == "ResourceNotFoundException"
    code, _ = error_of(kinesis.list_tags_for_resource, ResourceARN=missing)
    assert code == "ResourceNotFoundException"
    delete_queue(kinesis, qarn)
    kinesis.delete_stream(StreamName=stream)


def test_queues_share_the_registered_consumer_limit(new_daemon):
    d = new_daemon(FAST_CONFIG + "[fanout]\nconsumers_per_stream = 2\n")
    k = make_client(d.endpoint)
    stream = on_demand(k)
    arn = stream_arn(k, stream)
    k.register_stream_consumer(StreamARN=arn, ConsumerName="c1")
    make_queue(k, stream)
    code, _ = error_of(k.create_queue, QueueName="third", StreamConfigurationList=[{"StreamARN": arn}])
    assert code == "LimitExceededException"
    code, _ = error_of(k.register_stream_consumer, StreamARN=arn, ConsumerName="c2")
    assert code == "LimitExceededException"
    assert k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["ConsumerCount"] == 1


def test_receive_before_active_and_update_while_updating(new_daemon):
    d = new_daemon('[streams]\ncreate_delay = "2s"\ndelete_delay = "0ms"\n')
    k = make_client(d.endpoint)
    name = unique_name()
    k.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    deadline = time.monotonic() + 10
    while k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    created = k.create_queue(QueueName="slow", StreamConfigurationList=[{"StreamARN": stream_arn(k, name)}])
    qarn = created["QueueDescription"]["QueueARN"]
    assert created["QueueDescription"]["QueueStatus"] == "CREATING"
    assert "Timestamp" not in created["QueueDescription"]["StreamConfigurationList"][0]["StartingPosition"]
    code, msg = error_of(k.receive_queue_records, QueueARN=qarn, WaitTimeSeconds=1)
    assert code == "ResourceInUseException" and "CREATING" in msg
    code, _ = error_of(k.update_queue, QueueARN=qarn, QueueAttributes={"VisibilityTimeoutSeconds": 1})
    assert code == "ResourceInUseException"
    wait_queue(k, qarn, "ACTIVE")
    k.update_queue(QueueARN=qarn, QueueAttributes={"VisibilityTimeoutSeconds": 1})
    code, _ = error_of(k.update_queue, QueueARN=qarn, QueueAttributes={"VisibilityTimeoutSeconds": 2})
    assert code == "ResourceInUseException"
    # Receiving goes on while UPDATING.
    put(k, name, 1)
    assert len(receive(k, qarn)) == 1
    assert wait_queue(k, qarn, "ACTIVE")["QueueAttributes"]["VisibilityTimeoutSeconds"] == 1


# ---------------------------------------------------------------------------------------------
# Delivery


def test_every_record_once_to_concurrent_consumers(kinesis, endpoint):
    stream = on_demand(kinesis)
    qarn = make_queue(kinesis, stream, {"Type": "TRIM_HORIZON"}, VisibilityTimeoutSeconds=300)
    datas = put(kinesis, stream, 600)
    got: list[list[dict]] = [[] for _ in range(6)]
    errors: list[BaseException] = []

    def consume(i: int) -> None:
        c = make_client(endpoint)
        try:
            empty = 0
            while empty < 2:
                batch = receive(c, qarn)
                if not batch:
                    empty += 1
                    continue
                empty = 0
                got[i] += batch
                out = ack(c, qarn, batch)
                assert out["Failed"] == [] and len(out["Successful"]) == len(batch)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    ids = [r["RecordId"] for g in got for r in g]
    assert len(ids) == len(set(ids)) == 600, "no record went to two consumers, none was lost"
    assert sorted(r["Data"] for g in got for r in g) == sorted(datas)
    assert sum(1 for g in got if g) >= 2, "the consumers shared the work"
    r = got[0][0] if got[0] else next(g[0] for g in got if g)
    assert r["ReceiveCount"] == 1 and r["PartitionKey"] == r["Data"].decode()
    assert r["RecordId"].isdigit(), "RecordId is the record's sequence number"
    seqs = {
        rec["SequenceNumber"]
        for s in kinesis.list_shards(StreamName=stream)["Shards"]
        for rec in kinesis.get_records(
            ShardIterator=kinesis.get_shard_iterator(
                StreamName=stream, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"],
            Limit=10_000,
        )["Records"]
    }
    assert set(ids) == seqs
    assert gauge(metrics(endpoint), "sluice_queue_in_flight_records", queue_name(kinesis, qarn)) is not None
    delete_queue(kinesis, qarn)
    kinesis.delete_stream(StreamName=stream)


def queue_name(client, arn: str) -> str:
    return client.describe_queue(QueueARN=arn)["QueueDescription"]["QueueName"]


def test_receipt_handles(kinesis):
    stream = on_demand(kinesis)
    qarn = make_queue(kinesis, stream, {"Type": "TRIM_HORIZON"}, VisibilityTimeoutSeconds=1)
    other = make_queue(kinesis, stream, {"Type": "TRIM_HORIZON"})
    put(kinesis, stream, 3)
    recs = receive(kinesis, qarn, limit=3)
    assert len(recs) == 3
    h = recs[0]["ReceiptHandle"]
    raw = bytearray(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))
    raw[10] ^= 1  # another record, same MAC: forged
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    out = kinesis.acknowledge_queue_records(
        QueueARN=qarn, Entries=[{"ReceiptHandle": forged}, {"ReceiptHandle": "garbage"}, {"ReceiptHandle": h}]
    )
    assert [f["ReceiptHandle"] for f in out["Failed"]] == [forged, "garbage"]
    assert all(f["ErrorCode"] == "InvalidArgumentException" and f["ErrorMessage"] for f in out["Failed"])
    assert out["Successful"] == [{"ReceiptHandle": h}]
    # Acknowledging again succeeds (the record is gone either way).
    assert kinesis.acknowledge_queue_records(QueueARN=qarn, Entries=[{"ReceiptHandle": h}])["Failed"] == []
    # Another queue's handle is not good here, nor a handle of this queue there.
    other_recs = receive(kinesis, other, limit=1)
    out = kinesis.acknowledge_queue_records(QueueARN=qarn, Entries=[{"ReceiptHandle": other_recs[0]["ReceiptHandle"]}])
    assert out["Failed"][0]["ErrorCode"] == "InvalidArgumentException"
    out = kinesis.acknowledge_queue_records(QueueARN=other, Entries=[{"ReceiptHandle": recs[1]["ReceiptHandle"]}])
    assert out["Failed"][0]["ErrorCode"] == "InvalidArgumentException"
    # Past its visibility timeout a handle no longer changes the record's visibility; it still
    # acknowledges it until the record is received again, and then never.
    time.sleep(1.1)
    out = kinesis.update_queue_records_visibility(
        QueueARN=qarn, Entries=[{"ReceiptHandle": recs[1]["ReceiptHandle"], "VisibilityTimeoutSeconds": 60}]
    )
    assert "visibility timeout has passed" in out["Failed"][0]["ErrorMessage"]
    again = receive(kinesis, qarn, limit=10)
    assert sorted(r["RecordId"] for r in again) == sorted(r["RecordId"] for r in recs[1:])
    assert all(r["ReceiveCount"] == 2 for r in again)
    assert {r["ReceiptHandle"] for r in again}.isdisjoint(r["ReceiptHandle"] for r in recs)
    first = {r["RecordId"]: r["FirstReceiveTimestamp"] for r in recs}
    assert all(r["FirstReceiveTimestamp"] == first[r["RecordId"]] for r in again)
    out = kinesis.acknowledge_queue_records(QueueARN=qarn, Entries=[{"ReceiptHandle": recs[1]["ReceiptHandle"]}])
    assert "received again" in out["Failed"][0]["ErrorMessage"]
    # The handle of the earlier delivery stays expired even though the record is in flight again.
    out = kinesis.update_queue_records_visibility(
        QueueARN=qarn, Entries=[{"ReceiptHandle": recs[2]["ReceiptHandle"], "VisibilityTimeoutSeconds": 60}]
    )
    assert "received again" in out["Failed"][0]["ErrorMessage"]
    assert ack(kinesis, qarn, again)["Failed"] == []
    delete_queue(kinesis, qarn)
    delete_queue(kinesis, other)
    kinesis.delete_stream(StreamName=stream)


def test_visibility_per_call_and_per_record(kinesis):
    stream = on_demand(kinesis)
    qarn = make_queue(kinesis, stream, {"Type": "TRIM_HORIZON"}, VisibilityTimeoutSeconds=600)
    put(kinesis, stream, 2)
    a, b = receive(kinesis, qarn, limit=2)
    assert receive(kinesis, qarn) == [], "both in flight for 600 s"
    # Visibility 0: visible at once; a longer one keeps the other away.
    out = kinesis.update_queue_records_visibility(
        QueueARN=qarn,
        Entries=[
            {"ReceiptHandle": a["ReceiptHandle"], "VisibilityTimeoutSeconds": 0},
            {"ReceiptHandle": b["ReceiptHandle"], "VisibilityTimeoutSeconds": 1},
        ],
    )
    assert out["Failed"] == [] and len(out["Successful"]) == 2
    again = receive(kinesis, qarn, VisibilityTimeoutSeconds=1)
    assert [r["RecordId"] for r in again] == [a["RecordId"]] and again[0]["ReceiveCount"] == 2
    time.sleep(1.1)
    both = receive(kinesis, qarn, VisibilityTimeoutSeconds=0)
    assert sorted(r["RecordId"] for r in both) == sorted([a["RecordId"], b["RecordId"]])
    # VisibilityTimeoutSeconds 0 on the call: visible again at once, yet the handles acknowledge
    # the records until they are received again.
    out = kinesis.update_queue_records_visibility(
        QueueARN=qarn, Entries=[{"ReceiptHandle": both[0]["ReceiptHandle"], "VisibilityTimeoutSeconds": 60}]
    )
    assert "visibility timeout has passed" in out["Failed"][0]["ErrorMessage"]
    assert ack(kinesis, qarn, both)["Failed"] == []
    assert receive(kinesis, qarn) == []
    delete_queue(kinesis, qarn)
    kinesis.delete_stream(StreamName=stream)


def test_long_polling_returns_when_a_record_is_put(kinesis, endpoint):
    stream = on_demand(kinesis)
    qarn = make_queue(kinesis, stream)
    # Nothing to deliver: the call waits its WaitTimeSeconds, then answers empty.
    t = time.monotonic()
    assert receive(kinesis, qarn, wait=1) == []
    assert time.monotonic() - t >= 0.95
    samples = []
    for i in range(10):
        result: list = []
        c = make_client(endpoint)
        th = threading.Thread(target=lambda: result.append(receive(c, qarn, limit=1, wait=10)))
        th.start()
        time.sleep(0.05)
        t = time.monotonic()
        kinesis.put_record(StreamName=stream, Data=f"late-{i}".encode(), PartitionKey="k")
        th.join()
        samples.append(time.monotonic() - t)
        assert [r["Data"] for r in result[0]] == [f"late-{i}".encode()]
        ack(kinesis, qarn, result[0])
    # Woken by the commit, not by the 10 s wait running out.
    assert max(samples) < 5, samples
    print(f"put-to-receive with a parked long poll: median {statistics.median(samples) * 1e3:.1f} ms, "
          f"max {max(samples) * 1e3:.1f} ms")
    delete_queue(kinesis, qarn)
    kinesis.delete_stream(StreamName=stream)


def test_dead_letters_restore_and_acknowledge(kinesis, endpoint):
    stream = on_demand(kinesis)
    qarn = make_queue(
        kinesis,
        stream,
        {"Type": "TRIM_HORIZON"},
        DeadLetterConfiguration={"TargetType": "BUILT_IN", "MaxReceiveCount": 2},
    )
    name = queue_name(kinesis, qarn)
    put(kinesis, stream, 2)
    first = receive(kinesis, qarn, VisibilityTimeoutSeconds=0)
    second = receive(kinesis, qarn, VisibilityTimeoutSeconds=0)
    assert [r["ReceiveCount"] for r in second] == [2, 2]
    assert {r["RecordId"] for r in first} == {r["RecordId"] for r in second}
    # Received MaxReceiveCount times without an acknowledgement: dead letters.
    assert receive(kinesis, qarn) == []
    dead = kinesis.receive_dead_letter_queue_records(QueueARN=qarn, WaitTimeSeconds=1, VisibilityTimeoutSeconds=60)
    dead = dead["QueueRecords"]
    assert {r["RecordId"] for r in dead} == {r["RecordId"] for r in first}
    assert all(r["ReceiveCount"] == 2 for r in dead)
    assert {r["Data"] for r in dead} == {r["Data"] for r in first}, "the same data as first delivered"
    text = metrics(endpoint)
    assert gauge(text, "sluice_queue_dead_letter_records", name) == 2
    # A dead-letter handle is not good for the normal operations, nor the reverse.
    out = kinesis.acknowledge_queue_records(QueueARN=qarn, Entries=[{"ReceiptHandle": dead[0]["ReceiptHandle"]}])
    assert "ReceiveDeadLetterQueueRecords" in out["Failed"][0]["ErrorMessage"]
    out = kinesis.acknowledge_dead_letter_queue_records(
        QueueARN=qarn, Entries=[{"ReceiptHandle": second[0]["ReceiptHandle"]}]
    )
    assert out["Failed"][0]["ErrorCode"] == "InvalidArgumentException"
    # In flight as dead letters for 60 s; visibility 0 shows them again.
    assert kinesis.receive_dead_letter_queue_records(QueueARN=qarn, WaitTimeSeconds=1)["QueueRecords"] == []
    out = kinesis.update_dead_letter_queue_records_visibility(
        QueueARN=qarn, Entries=[{"ReceiptHandle": r["ReceiptHandle"], "VisibilityTimeoutSeconds": 0} for r in dead]
    )
    assert out["Failed"] == []
    dead = kinesis.receive_dead_letter_queue_records(QueueARN=qarn, WaitTimeSeconds=1)["QueueRecords"]
    assert len(dead) == 2
    keep, restore = dead
    # Restore one: back on the normal path with its receive count reset.
    out = kinesis.restore_dead_letter_queue_records(QueueARN=qarn, Entries=[{"ReceiptHandle": restore["ReceiptHandle"]}])
    assert out["Failed"] == [] and out["Successful"] == [{"ReceiptHandle": restore["ReceiptHandle"]}]
    back = receive(kinesis, qarn)
    assert [(r["RecordId"], r["ReceiveCount"]) for r in back] == [(restore["RecordId"], 1)]
    assert ack(kinesis, qarn, back)["Failed"] == []
    # Acknowledge the other as a dead letter: gone from both paths.
    assert ack(kinesis, qarn, [keep], dead=True)["Failed"] == []
    out = kinesis.update_dead_letter_queue_records_visibility(
        QueueARN=qarn, Entries=[{"ReceiptHandle": keep["ReceiptHandle"], "VisibilityTimeoutSeconds": 0}]
    )
    assert out["Failed"][0]["ErrorCode"] == "ResourceNotFoundException"
    assert receive(kinesis, qarn) == []
    assert kinesis.receive_dead_letter_queue_records(QueueARN=qarn, WaitTimeSeconds=1)["QueueRecords"] == []
    deadline = time.monotonic() + 5
    while gauge(metrics(endpoint), "sluice_queue_dead_letter_records", name) != 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    delete_queue(kinesis, qarn)
    kinesis.delete_stream(StreamName=stream)


def test_target_type_none_redelivers_without_end(kinesis):
    stream = on_demand(kinesis)
    qarn = make_queue(
        kinesis, stream, {"Type": "TRIM_HORIZON"}, DeadLetterConfiguration={"TargetType": "NONE"}
    )
    put(kinesis, stream, 1)
    for n in range(1, 9):
        got = receive(kinesis, qarn, VisibilityTimeoutSeconds=0)
        assert [r["ReceiveCount"] for r in got] == [n]
    assert kinesis.receive_dead_letter_queue_records(QueueARN=qarn, WaitTimeSeconds=1)["QueueRecords"] == []
    delete_queue(kinesis, qarn)
    kinesis.delete_stream(StreamName=stream)


def test_a_queue_across_a_split_and_a_merge(kinesis):
    stream = on_demand(kinesis)
    qarn = make_queue(kinesis, stream, {"Type": "TRIM_HORIZON"}, VisibilityTimeoutSeconds=300)
    before = put(kinesis, stream, 40, "a", keys=8)
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    s0 = shards[0]
    lo, hi = int(s0["HashKeyRange"]["StartingHashKey"]), int(s0["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(StreamName=stream, ShardToSplit=s0["ShardId"], NewStartingHashKey=str((lo + hi) // 2))
    wait_stream_active(kinesis, stream)
    middle = put(kinesis, stream, 40, "b", keys=8)
    open_shards = sorted(
        (s for s in kinesis.list_shards(StreamName=stream)["Shards"] if "EndingSequenceNumber" not in s["SequenceNumberRange"]),
        key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]),
    )
    kinesis.merge_shards(
        StreamName=stream, ShardToMerge=open_shards[0]["ShardId"], AdjacentShardToMerge=open_shards[1]["ShardId"]
    )
    wait_stream_active(kinesis, stream)
    after = put(kinesis, stream, 40, "c", keys=8)
    got = drain(kinesis, qarn, 120)
    assert sorted(r["Data"] for r in got) == sorted(before + middle + after)
    assert len({r["RecordId"] for r in got}) == 120
    # With nothing redelivered, each partition key's records come in put order: parents are
    # read to their ends before their children.
    for key in {r["PartitionKey"] for r in got}:
        seq = [r["Data"].decode() for r in got if r["PartitionKey"] == key]
        assert seq == sorted(seq, key=lambda d: (d[0], int(d.split("-")[1]))), (key, seq)
    delete_queue(kinesis, qarn)
    kinesis.delete_stream(StreamName=stream)


def test_a_latest_queue_on_a_resharded_stream_skips_the_children_s_history(kinesis):
    stream = on_demand(kinesis)
    s0 = kinesis.list_shards(StreamName=stream)["Shards"][0]
    lo, hi = int(s0["HashKeyRange"]["StartingHashKey"]), int(s0["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(StreamName=stream, ShardToSplit=s0["ShardId"], NewStartingHashKey=str((lo + hi) // 2))
    wait_stream_active(kinesis, stream)
    put(kinesis, stream, 40, "before")
    latest = make_queue(kinesis, stream)
    trim = make_queue(kinesis, stream, {"Type": "TRIM_HORIZON"})
    after = put(kinesis, stream, 40, "after")
    assert sorted(r["Data"] for r in drain(kinesis, latest, 80)) == sorted(after)
    assert len(drain(kinesis, trim, 80)) == 80
    for q in (latest, trim):
        delete_queue(kinesis, q)
    kinesis.delete_stream(StreamName=stream)


def wait_stream_active(client, name: str) -> None:
    deadline = time.monotonic() + 10
    while client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_records_past_retention_are_not_delivered(new_daemon, tmp_path):
    clock = tmp_path / "clock"
    set_clock(clock, int(time.time() * 1000))
    d = new_daemon(FAST_CONFIG + f'[queues]\nclock_file = "{clock}"\n')
    k = make_client(d.endpoint)
    stream = on_demand(k)
    qarn = make_queue(k, stream, {"Type": "TRIM_HORIZON"}, VisibilityTimeoutSeconds=60)
    put(k, stream, 4)
    got = receive(k, qarn, limit=2)
    assert len(got) == 2
    # 25 hours on (retention is 24): neither the in-flight records nor the others come again.
    set_clock(clock, int(time.time() * 1000) + 25 * 3_600_000)
    assert receive(k, qarn) == []
    assert kinesis_dead(k, qarn) == []
    d.restart(kill=True)
    assert receive(k, qarn) == []


def kinesis_dead(client, arn: str) -> list[dict]:
    return client.receive_dead_letter_queue_records(QueueARN=arn, WaitTimeSeconds=1)["QueueRecords"]


def test_in_flight_bound_answers_throttling(new_daemon):
    d = new_daemon(FAST_CONFIG + "[queues]\nin_flight_max = 5\n")
    k = make_client(d.endpoint)
    stream = on_demand(k)
    qarn = make_queue(k, stream, {"Type": "TRIM_HORIZON"})
    put(k, stream, 8)
    first = receive(k, qarn)
    assert len(first) == 5
    code, msg = error_of(k.receive_queue_records, QueueARN=qarn, WaitTimeSeconds=1)
    assert code == "ThrottlingException" and "in flight" in msg
    deadline = time.monotonic() + 5
    while gauge(metrics(d.endpoint), "sluice_queue_in_flight_records", queue_name(k, qarn)) != 5:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # Acknowledging makes room.
    assert ack(k, qarn, first)["Failed"] == []
    assert len(receive(k, qarn)) == 3


# ---------------------------------------------------------------------------------------------
# State across restarts


class Model:
    """What a queue must answer: per record, its receive count, when it is visible, whether it
    is a dead letter or acknowledged, and the one receipt handle that is good for it."""

    def __init__(self, max_receive: int, visibility_s: int):
        self.max_receive = max_receive
        self.visibility_ms = visibility_s * 1000
        self.records: dict[str, dict] = {}  # data -> state
        self.handles: dict[str, tuple[str, bool]] = {}  # handle -> (data, dead)

    def add(self, data: str) -> None:
        self.records[data] = {"count": 0, "visible": 0, "dead": False, "acked": False, "handle": None, "log": []}
        self.step = 0

    def log(self, data: str, event: str) -> None:
        self.records[data]["log"].append((self.step, event))

    def history(self, handle: str) -> list:
        data = self.handles.get(handle, (None,))[0]
        return self.records[data]["log"][-10:] if data else []

    def settle_dead(self, now: int) -> None:
        for r in self.records.values():
            if not r["acked"] and not r["dead"] and r["count"] >= self.max_receive and r["visible"] <= now:
                r["dead"], r["visible"], r["handle"] = True, now, None
                r["log"].append((self.step, f"dead at {now}"))

    def visible(self, now: int, dead: bool) -> set[str]:
        self.settle_dead(now)
        return {d for d, r in self.records.items() if not r["acked"] and r["dead"] == dead and r["visible"] <= now}

    def received(self, data: str, handle: str, now: int, dead: bool, visibility_ms: int) -> int:
        r = self.records[data]
        if not dead:
            r["count"] += 1
        r["visible"] = now + visibility_ms
        r["handle"] = handle
        self.handles[handle] = (data, dead)
        r["log"].append((self.step, f"received dead={dead} count={r['count']} visible={r['visible']} {handle}"))
        return r["count"]

    def outcome(self, handle: str, now: int, dead: bool, action: str) -> bool:
        """Whether the action on `handle` succeeds, and its effect on the model."""
        if handle not in self.handles:
            return False
        data, issued_dead = self.handles[handle]
        r = self.records[data]
        if issued_dead != dead:
            return False
        if r["acked"]:
            return action == "ack"
        self.settle_dead(now)
        if r["handle"] != handle or r["dead"] != dead:
            return False
        # An acknowledgement is good until the record is received again; the others only in flight.
        return action == "ack" or r["visible"] > now

    def apply(self, handle: str, now: int, action: str, visibility_s: int = 0) -> None:
        data, _ = self.handles[handle]
        r = self.records[data]
        r["log"].append((self.step, f"{action} {visibility_s} at {now} {handle}"))
        if action == "ack":
            r["acked"] = True
        elif action == "visibility":
            r["visible"] = now + visibility_s * 1000
        elif action == "restore":
            r["dead"], r["count"], r["visible"] = False, 0, now


def test_property_against_a_model_of_the_queue(new_daemon, tmp_path):
    seed = int(os.environ.get("SLUICE_QUEUE_MODEL_SEED", random.randrange(1 << 30)))
    steps = int(os.environ.get("SLUICE_QUEUE_MODEL_STEPS", "250"))
    rng = random.Random(seed)
    print(f"SLUICE_QUEUE_MODEL_SEED={seed}")
    clock = tmp_path / "clock"
    now = int(time.time() * 1000)
    set_clock(clock, now)
    d = new_daemon(FAST_CONFIG + f'[queues]\nclock_file = "{clock}"\n')
    k = make_client(d.endpoint)
    stream = on_demand(k)
    max_receive, visibility = 3, 20
    qarn = make_queue(
        k,
        stream,
        {"Type": "TRIM_HORIZON"},
        VisibilityTimeoutSeconds=visibility,
        DeadLetterConfiguration={"TargetType": "BUILT_IN", "MaxReceiveCount": max_receive},
    )
    model = Model(max_receive, visibility)
    by_id: dict[str, str] = {}
    by_data: dict[str, str] = {}
    put_n = 0
    recent: list[tuple[str, bool]] = []  # handles to act on, newest last
    context = lambda step, what: f"seed {seed} step {step}: {what}"  # noqa: E731
    empty_waits = 0
    for step in range(steps):
        model.step = step
        op = rng.choices(
            ["put", "receive", "receive_dead", "ack", "visibility", "restore", "time", "restart"],
            [10, 30, 8, 20, 8, 4, 12, 2],
        )[0]
        if op == "put":
            n = rng.randint(1, 5)
            for data in put(k, stream, n, f"m{put_n}"):
                model.add(data.decode())
            put_n += 1
        elif op in ("receive", "receive_dead"):
            dead = op == "receive_dead"
            limit = rng.randint(1, 10)
            vis = rng.choice([None, 0, 5, 30])
            expect = model.visible(now, dead)
            if not expect:
                if empty_waits >= 6:
                    continue
                empty_waits += 1
            args = {"QueueARN": qarn, "Limit": limit, "WaitTimeSeconds": 1}
            if vis is not None:
                args["VisibilityTimeoutSeconds"] = vis
            call = k.receive_dead_letter_queue_records if dead else k.receive_queue_records
            got = call(**args)["QueueRecords"]
            datas = [r["Data"].decode() for r in got]
            assert len(datas) == min(limit, len(expect)), context(step, f"{op} {limit}: {datas} of {sorted(expect)}")
            assert set(datas) <= expect, context(step, f"{op}: {datas} not all visible in {sorted(expect)}")
            for r in got:
                data = r["Data"].decode()
                assert by_id.setdefault(r["RecordId"], data) == data, context(step, f"{r['RecordId']} was {by_id[r['RecordId']]}, now {data}")
                assert by_data.setdefault(data, r["RecordId"]) == r["RecordId"], context(step, f"{data} was {by_data[data]}, now {r['RecordId']}")
                count = model.received(
                    data, r["ReceiptHandle"], now, dead, (visibility if vis is None else vis) * 1000
                )
                assert r["ReceiveCount"] == count, context(step, f"{data} ReceiveCount {r['ReceiveCount']} != {count}")
                recent.append((r["ReceiptHandle"], dead))
            recent = recent[-40:]
        elif op in ("ack", "visibility", "restore") and recent:
            dead = op == "restore" or rng.random() < 0.3
            pool = [h for h, dd in recent if dd == dead] or [h for h, _ in recent]
            chosen = rng.sample(pool, min(len(pool), rng.randint(1, 4)))
            vis = rng.choice([0, 1, 10, 60])
            entries = [{"ReceiptHandle": h} for h in chosen]
            if op == "visibility":
                entries = [{"ReceiptHandle": h, "VisibilityTimeoutSeconds": vis} for h in chosen]
            action = {"ack": "ack", "visibility": "visibility", "restore": "restore"}[op]
            if op == "ack":
                out = (k.acknowledge_dead_letter_queue_records if dead else k.acknowledge_queue_records)(
                    QueueARN=qarn, Entries=entries
                )
            elif op == "visibility":
                out = (k.update_dead_letter_queue_records_visibility if dead else k.update_queue_records_visibility)(
                    QueueARN=qarn, Entries=entries
                )
            else:
                out = k.restore_dead_letter_queue_records(QueueARN=qarn, Entries=entries)
            ok = {e["ReceiptHandle"] for e in out["Successful"]}
            # Entries take effect in order: acknowledging a record makes its older handles'
            # acknowledgements succeed too.
            for h in chosen:
                want = model.outcome(h, now, dead, action)
                assert (h in ok) == want, context(
                    step, f"{op} dead={dead} of {model.handles.get(h)} at {now}: {out}; {model.history(h)}"
                )
                if want:
                    model.apply(h, now, action, vis)
        elif op == "time":
            now += rng.choice([1000, 5000, 21_000, 31_000, 61_000])
            set_clock(clock, now)
        elif op == "restart":
            d.restart(kill=rng.random() < 0.7)
    # In the end: everything acknowledged or dead, nothing lost, nothing acknowledged seen again.
    now += 3_600_000
    set_clock(clock, now)
    for _ in range(200):
        visible = model.visible(now, False)
        if not visible:
            break
        got = k.receive_queue_records(QueueARN=qarn, Limit=10, WaitTimeSeconds=1)["QueueRecords"]
        assert {r["Data"].decode() for r in got} <= visible
        assert len(got) == min(10, len(visible))
        for r in got:
            model.received(r["Data"].decode(), r["ReceiptHandle"], now, False, visibility * 1000)
        out = ack(k, qarn, got)
        assert out["Failed"] == []
        for r in got:
            model.apply(r["ReceiptHandle"], now, "ack")
    assert model.visible(now, False) == set()
    dead = model.visible(now, True)
    got = []
    while True:
        batch = k.receive_dead_letter_queue_records(QueueARN=qarn, Limit=10, WaitTimeSeconds=1)["QueueRecords"]
        if not batch:
            break
        got += [r["Data"].decode() for r in batch]
    assert sorted(got) == sorted(dead), f"seed {seed}: dead letters"
    assert all(r["acked"] or r["dead"] for r in model.records.values())
    print(f"model test: {steps} steps, {len(model.records)} records, {len(dead)} dead letters, {d.starts} starts")


def test_kill9_under_several_consumers(new_daemon):
    seed = int(os.environ.get("SLUICE_QUEUE_CRASH_SEED", random.randrange(1 << 30)))
    rounds = int(os.environ.get("SLUICE_QUEUE_CRASH_ROUNDS", "5"))
    rng = random.Random(seed)
    print(f"SLUICE_QUEUE_CRASH_SEED={seed}")
    d = new_daemon()
    k = make_client(d.endpoint)
    stream = on_demand(k)
    qarn = make_queue(
        k,
        stream,
        {"Type": "TRIM_HORIZON"},
        VisibilityTimeoutSeconds=2,
        DeadLetterConfiguration={"TargetType": "BUILT_IN", "MaxReceiveCount": 1000},
    )
    total = 5000
    put(k, stream, total)
    acked: dict[str, float] = {}  # RecordId -> when its acknowledgement was answered
    violations: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def consume() -> None:
        c = make_client(d.endpoint)
        while not stop.is_set():
            try:
                batch = c.receive_queue_records(QueueARN=qarn, Limit=10, WaitTimeSeconds=1)["QueueRecords"]
                received_at = time.monotonic()
                with lock:
                    for r in batch:
                        if r["RecordId"] in acked and acked[r["RecordId"]] < received_at - 0.001:
                            violations.append(r["RecordId"])
                if not batch:
                    continue
                time.sleep(rng.uniform(0, 0.01))
                entries = [{"ReceiptHandle": r["ReceiptHandle"]} for r in batch]
                # An acknowledgement whose answer a kill cut off is sent again: acknowledging a
                # record the queue no longer holds succeeds, and a handle that expired meanwhile
                # fails (that record is delivered again).
                while True:
                    try:
                        out = c.acknowledge_queue_records(QueueARN=qarn, Entries=entries)
                        break
                    except Exception:  # noqa: BLE001 - the daemon is down for a moment
                        time.sleep(0.05)
                done = time.monotonic()
                ok = {e["ReceiptHandle"] for e in out["Successful"]}
                with lock:
                    for r in batch:
                        if r["ReceiptHandle"] in ok:
                            acked.setdefault(r["RecordId"], done)
            except Exception:  # noqa: BLE001 - the daemon is down for a moment
                time.sleep(0.05)

    threads = [threading.Thread(target=consume, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(rounds):
            time.sleep(rng.uniform(0.2, 1.0))
            d.kill9()
            time.sleep(rng.uniform(0.0, 0.2))
            d.start()
        deadline = time.monotonic() + 120
        while len(acked) < total and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not violations, f"seed {seed}: acknowledged records delivered again: {violations[:5]}"
    assert len(acked) == total, f"seed {seed}: {total - len(acked)} records never acknowledged"
    assert k.receive_queue_records(QueueARN=qarn, WaitTimeSeconds=1)["QueueRecords"] == []
    assert d.starts == rounds + 1


def test_sigterm_answers_parked_long_polls(new_daemon):
    d = new_daemon()
    k = make_client(d.endpoint)
    stream = on_demand(k)
    qarn = make_queue(k, stream)
    result: list = []
    th = threading.Thread(target=lambda: result.append(receive(k, qarn, wait=20)))
    th.start()
    time.sleep(0.3)
    t = time.monotonic()
    assert d.stop() == 0
    th.join(timeout=30)
    assert result == [[]], "the parked receive was answered, empty"
    assert time.monotonic() - t < 10, "the long poll did not hold the drain for its 20 s"
