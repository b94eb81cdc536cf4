"""Durability: what sluice acknowledged survives `kill -9`, byte for byte, in order, with its
original sequence number; and a clean SIGTERM restart keeps data and stream metadata."""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import datetime

import pytest
from botocore.exceptions import ClientError

from conftest import (
    FAST_CONFIG,
    create_stream,
    list_all_shards,
    make_client,
    read_shard,
    read_stream,
    unique_name,
    wait_active,
)

SHARD0 = "shardId-000000000000"


def wait_clock_past(dt: datetime, ms: int = 3) -> None:
    target = dt.timestamp() + ms / 1000
    while time.time() < target:
        time.sleep(0.001)


def payload(i: int) -> bytes:
    # Varied sizes and every byte value, so that framing or truncation errors show.
    return bytes((i * 7 + j) % 256 for j in range(1 + (i * 37) % 3000)) + b"#%d" % i


def put_and_collect(client, name: str, start: int, count: int) -> list[dict]:
    """Puts `count` records (PutRecord and PutRecords mixed); returns the acknowledgements in
    put order as {shard, seq, data, key}."""
    acks = []
    i = start
    while i < start + count:
        if i % 3 == 0:
            key = f"pk-{i % 11}"
            r = client.put_record(StreamName=name, Data=payload(i), PartitionKey=key)
            acks.append({"shard": r["ShardId"], "seq": r["SequenceNumber"], "data": payload(i), "key": key})
            i += 1
        else:
            n = min(17, start + count - i)
            entries = [{"Data": payload(j), "PartitionKey": f"pk-{j % 11}"} for j in range(i, i + n)]
            r = client.put_records(StreamName=name, Records=entries)
            assert r["FailedRecordCount"] == 0
            for e, res in zip(entries, r["Records"]):
                acks.append({"shard": res["ShardId"], "seq": res["SequenceNumber"], "data": e["Data"], "key": e["PartitionKey"]})
            i += n
    return acks


def assert_all_present(client, name: str, acks: list[dict]) -> dict[str, list[dict]]:
    stored = read_stream(client, name)
    for shard_id, records in stored.items():
        want = [(a["seq"], a["data"], a["key"]) for a in acks if a["shard"] == shard_id]
        got = [(r["SequenceNumber"], r["Data"], r["PartitionKey"]) for r in records]
        assert got == want, f"{shard_id}: {len(got)} records read back, {len(want)} acknowledged"
    return stored


def test_kill9_right_after_acks_loses_nothing(new_daemon):
    d = new_daemon()
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("dur"), shard_count=3)
    acks = put_and_collect(client, name, 0, 300)
    assert len({a["shard"] for a in acks}) == 3

    d.kill9()
    d.start()
    client = make_client(d.endpoint)

    summary = wait_active(client, name)
    assert summary["OpenShardCount"] == 3
    assert_all_present(client, name, acks)

    # Writing goes on after the last acknowledged record: no sequence number is reused.
    last = {}
    for a in acks:
        last[a["shard"]] = int(a["seq"])
    more = put_and_collect(client, name, 300, 60)
    for a in more:
        assert int(a["seq"]) > last.get(a["shard"], -1)
        last[a["shard"]] = int(a["seq"])
    assert_all_present(client, name, acks + more)


def test_kill9_during_concurrent_writes(new_daemon):
    """Writers keep putting while the daemon is killed: every acknowledged record is there, in
    order per key, exactly once; a record whose put was cut off may or may not be there."""
    d = new_daemon()
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("durc"), shard_count=2)

    acked: dict[int, list[tuple[str, str, bytes]]] = {w: [] for w in range(4)}
    attempted: dict[int, list[bytes]] = {w: [] for w in range(4)}
    enough = threading.Barrier(5)
    stop = threading.Event()

    def writer(w: int) -> None:
        c = make_client(d.endpoint)
        key = f"writer-{w}"
        i = 0
        signalled = False
        while not stop.is_set():
            data = b"w%d-%06d-" % (w, i) + os.urandom(64)
            attempted[w].append(data)
            try:
                r = c.put_record(StreamName=name, Data=data, PartitionKey=key)
            except Exception:
                break  # the daemon is gone
            acked[w].append((r["ShardId"], r["SequenceNumber"], data))
            i += 1
            if i == 40 and not signalled:
                signalled = True
                enough.wait(timeout=60)
        if not signalled:
            enough.abort()

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    enough.wait(timeout=60)  # every writer has 40 acknowledged records and is still writing
    d.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()

    d.start()
    client = make_client(d.endpoint)
    wait_active(client, name)
    stored = read_stream(client, name)
    for w in range(4):
        assert len(acked[w]) >= 40
        key = f"writer-{w}"
        shard_id = acked[w][0][0]
        mine = [r for r in stored[shard_id] if r["PartitionKey"] == key]
        got = [(shard_id, r["SequenceNumber"], r["Data"]) for r in mine]
        # The acknowledged prefix, exactly, then at most the one put that was in flight.
        assert got[: len(acked[w])] == acked[w]
        extra = [r["Data"] for r in mine[len(acked[w]):]]
        assert extra in ([], attempted[w][len(acked[w]):len(acked[w]) + 1]), extra
    for records in stored.values():
        seqs = [int(r["SequenceNumber"]) for r in records]
        assert all(a < b for a, b in zip(seqs, seqs[1:]))


def test_sigterm_restart_keeps_data_and_metadata(new_daemon):
    d = new_daemon()
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("durt"), shard_count=4, Tags={"owner": "compat"})
    client.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=72)
    client.add_tags_to_stream(StreamName=name, Tags={"tier": "gold"})
    before = client.describe_stream(StreamName=name)["StreamDescription"]
    acks = put_and_collect(client, name, 0, 120)

    d.restart()  # SIGTERM, asserts exit status 0, starts again on the same dir and port
    client = make_client(d.endpoint)

    after = client.describe_stream(StreamName=name)["StreamDescription"]
    assert after["StreamStatus"] == "ACTIVE"
    assert after["RetentionPeriodHours"] == 72
    assert after["StreamARN"] == before["StreamARN"]
    assert after["StreamCreationTimestamp"] == before["StreamCreationTimestamp"]
    assert after["Shards"] == before["Shards"]
    tags = sorted((t["Key"], t["Value"]) for t in client.list_tags_for_stream(StreamName=name)["Tags"])
    assert tags == [("owner", "compat"), ("tier", "gold")]
    assert_all_present(client, name, acks)
    assert [s["ShardId"] for s in list_all_shards(client, name)] == [s["ShardId"] for s in before["Shards"]]

    # A stream deleted before a restart stays deleted.
    client.delete_stream(StreamName=name)
    d.restart(kill=True)
    client = make_client(d.endpoint)
    try:
        client.describe_stream_summary(StreamName=name)
        raise AssertionError("deleted stream came back after restart")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_disk_reads_across_segments_survive_kill9(new_daemon, compression):
    """No hot tail (every read decodes the segment files), 16 MiB segments and ~20 MiB in one
    shard: reads by TRIM_HORIZON, sequence number and timestamp match what was acknowledged,
    before and after kill -9."""
    d = new_daemon(FAST_CONFIG + f'[storage]\nsegment_size = "16 MiB"\nhot_tail_size = "0"\ncompression = "{compression}"\n')
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("seg"), shard_count=2)
    rng = random.Random(7)
    acks, stamps = [], []
    for batch in range(5):
        if acks:
            wait_clock_past(stamps[-1][1])
        entries = [{"Data": rng.randbytes(200 * 1024 + batch * 13 + i), "PartitionKey": "p", "ExplicitHashKey": "0"}
                   for i in range(20)]
        r = client.put_records(StreamName=name, Records=entries)
        assert r["FailedRecordCount"] == 0
        acks += [{"shard": x["ShardId"], "seq": x["SequenceNumber"], "data": e["Data"], "key": "p"}
                 for e, x in zip(entries, r["Records"])]
        first = read_shard(client, name, SHARD0, "AT_SEQUENCE_NUMBER", limit=1,
                           StartingSequenceNumber=r["Records"][0]["SequenceNumber"])[0]
        stamps.append((len(acks) - 20, first["ApproximateArrivalTimestamp"]))
    assert sum(len(a["data"]) for a in acks) > 16 << 20, "the shard must span two segments"
    # Two segment files (the layout is sluice's own: streams/<stream>/<shard>/<base>.seg).
    per_dir: dict = {}
    for seg in (d.data_dir / "streams").rglob("*.seg"):
        per_dir.setdefault(seg.parent, []).append(seg)
    assert max(len(v) for v in per_dir.values()) >= 2, per_dir

    def first_three(kind, **kw):
        it = client.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType=kind, **kw)["ShardIterator"]
        return [r["SequenceNumber"] for r in client.get_records(ShardIterator=it, Limit=3)["Records"]]

    def check():
        assert_all_present(client, name, acks)
        seqs = [a["seq"] for a in acks]
        for idx in (1, 37, 85, 97):
            assert first_three("AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[idx]) == seqs[idx:idx + 3]
            assert first_three("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[idx]) == seqs[idx + 1:idx + 4]
        for start, ts in stamps:
            assert first_three("AT_TIMESTAMP", Timestamp=ts) == seqs[start:start + 3]

    check()
    d.restart(kill=True)
    client = make_client(d.endpoint)
    wait_active(client, name)
    check()
