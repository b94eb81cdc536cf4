"""The user's producer example, run unchanged except for endpoint_url.

The stream is created exactly as in the user's doc, a few hundred JSON sensor readings are put in
several PutRecords calls through the user's own `put_records`, and then every shard is read from
TRIM_HORIZON to its end.
"""

import json
import random
from collections import Counter
from datetime import datetime, timedelta

import boto3
import pytest

from conftest import hash_key, list_all_shards, read_shard, shard_for_hash, wait_active, wait_gone

kinesis = None  # set by the fixture below: boto3.client('kinesis', endpoint_url=...)


# ---- the user's example, verbatim -------------------------------------------------------------
def put_records(stream_name, records):
    response = kinesis.put_records(
        StreamName=stream_name,
        Records=[
            {'Data': json.dumps(r), 'PartitionKey': r['sensor_id']}
            for r in records
        ]
    )
    if response['FailedRecordCount'] > 0:
        print(f"Failed: {response['FailedRecordCount']} records")
    return response
# -----------------------------------------------------------------------------------------------

STREAM = "sensor-data-stream"
SENSORS = [f"sensor-{i:03d}" for i in range(25)]
READINGS = 400
BATCH = 100


@pytest.fixture(scope="module")
def user_client(endpoint):
    global kinesis
    kinesis = boto3.client('kinesis', endpoint_url=endpoint)
    kinesis.create_stream(StreamName='sensor-data-stream', ShardCount=4, StreamModeDetails={'StreamMode': 'PROVISIONED'})
    wait_active(kinesis, STREAM)
    yield kinesis
    kinesis.delete_stream(StreamName=STREAM)
    wait_gone(kinesis, STREAM)


def readings():
    rng = random.Random(20240101)
    start = datetime(2024, 1, 1, 0, 0, 0)
    return [
        {
            "sensor_id": rng.choice(SENSORS),
            "temperature": round(rng.uniform(-20.0, 45.0), 2),
            "event_time": (start + timedelta(seconds=i)).isoformat(),
        }
        for i in range(READINGS)
    ]


def test_user_producer_round_trip(user_client, capsys):
    sent = readings()
    payloads = [json.dumps(r).encode("utf-8") for r in sent]
    assert len(set(payloads)) == READINGS, "every reading is distinct (event_time is unique)"

    acks = []
    for i in range(0, READINGS, BATCH):
        response = put_records(STREAM, sent[i:i + BATCH])
        assert response["FailedRecordCount"] == 0
        assert len(response["Records"]) == BATCH
        acks += response["Records"]
    assert "Failed:" not in capsys.readouterr().out

    shards = list_all_shards(user_client, STREAM)
    assert len(shards) == 4
    stored = {s["ShardId"]: read_shard(user_client, STREAM, s["ShardId"]) for s in shards}

    # Every record is present exactly once, byte-identical.
    read_payloads = [r["Data"] for records in stored.values() for r in records]
    assert len(read_payloads) == READINGS
    assert Counter(read_payloads) == Counter(payloads)

    # Each sensor's records are all in the shard its MD5 hash maps to, with the sensor as key.
    home = {sensor: shard_for_hash(shards, hash_key(sensor)) for sensor in SENSORS}
    for shard_id, records in stored.items():
        for r in records:
            reading = json.loads(r["Data"])
            assert r["PartitionKey"] == reading["sensor_id"]
            assert home[reading["sensor_id"]] == shard_id
    assert all(stored[s["ShardId"]] for s in shards), "25 sensors spread over all four shards"

    # Per shard, each sensor's records come back in put order.
    for shard_id, records in stored.items():
        for sensor in SENSORS:
            got = [r["Data"] for r in records if r["PartitionKey"] == sensor]
            want = [p for p, reading in zip(payloads, sent) if reading["sensor_id"] == sensor and home[sensor] == shard_id]
            assert got == want, sensor

    # The acknowledged shard and sequence number of each reading are where it was read back, and
    # sequence numbers strictly increase within each shard.
    where = {r["Data"]: (shard_id, r["SequenceNumber"]) for shard_id, records in stored.items() for r in records}
    for payload, ack in zip(payloads, acks):
        assert where[payload] == (ack["ShardId"], ack["SequenceNumber"])
    for records in stored.values():
        seqs = [int(r["SequenceNumber"]) for r in records]
        assert all(a < b for a, b in zip(seqs, seqs[1:]))
