"""Kinesis channels (`Kinesis_20131202`: CreateChannel, DescribeChannel, ListChannels,
UpdateChannel, DeleteChannel) through boto3's `kinesis` client: a stream's records delivered to
an S3 bucket, here the bucket directories `<data_dir>/buckets/<bucket>/<key>`.

* The lifecycle: CreateChannel's answer (CREATING, every default filled in: the
  OutputKeyTemplate, StorageClass, DataFreshnessInSeconds, the dead-letter bucket and prefix,
  LoggingConfiguration), then ACTIVE; ListChannels' summaries; UpdateChannel (UPDATING, then
  ACTIVE with the new values); DeleteChannel; DeleteStream refused while the stream has a
  channel; the metadata across a SIGTERM restart and `kill -9`, and a channel left CREATING by
  `kill -9`.
* Errors, code and message: destinations (S3 and S3 Tables, S3 Tables alone, neither), the
  source stream (PROVISIONED, unknown), a duplicate name, a second channel on a stream,
  DataFreshnessInSeconds out of 300..900 (create and update), GSR_JSON, the OutputKeyTemplate
  rules, unknown channel ARNs, an update while not ACTIVE (a daemon with `create_delay = "3s"`),
  and the model's validation (with botocore's client-side validation off).
* ListChannels: MaxResults pages (every channel exactly once, no NextToken on the last page) and
  StreamFilter (a union over the filters; StreamCreationTimestamp names the stream's
  incarnation).
* Delivery (a daemon whose buffers are capped at 1 s, so DataFreshnessInSeconds is effectively
  1 s): per CompressionType NONE / GZIP / ZSTD with RecordFormatType JSON, no backfill (records
  put before the channel are never delivered), keys under the OutputKeyTemplate (the default
  one, and a custom one), every record exactly once, byte for byte, in per-partition-key order;
  invalid records to the dead-letter objects (one JSON line each, its sequence number as
  PutRecords answered, never its data), in the destination bucket under the default prefix or
  in a bucket and prefix of their own. STRING (invalid UTF-8 dead-lettered, the rest delivered
  even when it is not JSON) and BYTE_ARRAY (any bytes, as they are).
* Crashes: `kill -9` at seeded random moments (`crash_rounds` of test_firehose.py, replayable
  with `SLUICE_DELIVERY_CRASH_SEED`, more rounds with `SLUICE_DELIVERY_CRASH_ROUNDS`) while a
  writer puts records; afterwards every acknowledged record is in exactly one object, no object
  is torn, and a clean restart writes nothing again.

Objects hold the records concatenated with no delimiter: JSON records are split again with
`json.JSONDecoder.raw_decode`, STRING records end with a newline of their own, BYTE_ARRAY
records carry a small length-prefixed frame, so that every object can be split and compared
byte for byte with what was put.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import zstandard
from botocore.exceptions import ClientError

from conftest import (
    FAST_CONFIG,
    Daemon,
    create_stream,
    make_client,
    unique_name,
    wait_active,
    wait_gone,
)
from test_firehose import (
    TEMP,
    KinesisWriter,
    assert_delivered_once_in_order,
    crash_seed,
    crash_while_writing,
    expect_error,
    record,
    replays,
    unique_bucket,
    wait_until,
)

ROLE = "arn:aws:iam::123456789012:role/ChannelRole"
OWNER = "123456789012"
DELIVERY_CONFIG = FAST_CONFIG + '[delivery]\nbuffering_interval_cap = "1s"\n'
SLOW_CONFIG = '[streams]\ncreate_delay = "3s"\ndelete_delay = "0ms"\n'
DEFAULT_TEMPLATE = (
    "kinesis-channel/!{channel-name}/!{channel-id}/!{yyyy}/!{MM}/!{dd}/!{HH}/"
    "!{channel-name}-!{channel-id}-!{yyyy}-!{MM}-!{dd}-!{HH}-!{mm}!{extension}"
)
CUSTOM_TEMPLATE = "data/!{stream-name}/!{yyyy}/!{MM}/!{dd}/!{channel-name}!{extension}"
EXTENSIONS = {"NONE": "", "GZIP": ".gz", "ZSTD": ".zst"}
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
S3_TABLES = {
    "DeadLetterQueueS3Configuration": {"BucketARN": "arn:aws:s3:::tables-dlq", "ExpectedBucketOwner": OWNER},
    "S3TablesConfigurationList": [
        {
            "TableBucketARN": f"arn:aws:s3tables:us-east-1:{OWNER}:bucket/table-bucket",
            "Namespace": "orders",
            "TableName": "events",
            "CompressionType": "ZSTD",
        }
    ],
}


# ---------------------------------------------------------------------------------------------
# Streams and channels


def on_demand_stream(client, name: str | None = None) -> tuple[str, str, datetime]:
    """An ON_DEMAND stream (4 shards), ACTIVE; returns (name, ARN, creation timestamp)."""
    name = name or unique_name("chsrc")
    client.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    s = wait_active(client, name)
    assert s["StreamModeDetails"]["StreamMode"] == "ON_DEMAND" and s["OpenShardCount"] == 4, s
    return name, s["StreamARN"], s["StreamCreationTimestamp"]


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def s3_destination(
    bucket: str,
    compression: str = "NONE",
    template: str | None = None,
    freshness: int | None = None,
    dlq: dict | None = None,
    **storage,
) -> dict:
    st = {"BucketARN": bucket_arn(bucket), "ExpectedBucketOwner": OWNER, "CompressionType": compression, **storage}
    if template is not None:
        st["OutputKeyTemplate"] = template
    out = {"StorageConfiguration": st}
    if freshness is not None:
        out["DataFreshnessInSeconds"] = freshness
    if dlq is not None:
        out["DeadLetterQueueS3Configuration"] = dlq
    return out


def channel_args(stream_arn: str, bucket: str, name: str | None = None, fmt: str = "JSON", **dest) -> dict:
    return {
        "ChannelName": name or unique_name("channel"),
        "ServiceExecutionRoleARN": ROLE,
        "StreamConfigurationList": [{"StreamARN": stream_arn, "RecordConfiguration": {"RecordFormatType": fmt}}],
        "S3DestinationConfiguration": s3_destination(bucket, **dest),
    }


def describe(client, arn: str) -> dict:
    return client.describe_channel(ChannelARN=arn)["ChannelDescription"]


def wait_channel(client, arn: str, status: str = "ACTIVE", timeout: float = 15.0, daemon: Daemon | None = None) -> dict:
    def reached():
        c = describe(client, arn)
        assert c["ChannelStatus"] in ("CREATING", "UPDATING", status), c
        return c if c["ChannelStatus"] == status else None

    return wait_until(reached, f"channel {arn} {status}", timeout, daemon)


def make_channel(client, stream_arn: str, bucket: str, daemon: Daemon | None = None, **kw) -> dict:
    """CreateChannel, then waits for ACTIVE; returns the ACTIVE description."""
    answer = client.create_channel(**channel_args(stream_arn, bucket, **kw))["ChannelDescription"]
    assert answer["ChannelStatus"] == "CREATING", answer
    return wait_channel(client, answer["ChannelARN"], daemon=daemon)


def all_channel_summaries(client, **kw) -> list[dict]:
    out, token = [], None
    for _ in range(1000):
        r = client.list_channels(**kw, **({"NextToken": token} if token else {}))
        out += r["ChannelSummaries"]
        token = r.get("NextToken")
        if not token:
            return out
    raise AssertionError("ListChannels never ended")


def all_channel_names(client, **kw) -> list[str]:
    return [c["ChannelName"] for c in all_channel_summaries(client, **kw)]


def put_entries(client, stream: str, entries: list[tuple[bytes, str]]) -> list[dict]:
    """PutRecords in batches of 500; every record must be accepted. Returns the answers, in
    order (SequenceNumber, ShardId)."""
    out = []
    for at in range(0, len(entries), 500):
        chunk = entries[at : at + 500]
        r = client.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": k} for d, k in chunk])
        assert r["FailedRecordCount"] == 0, r
        out += r["Records"]
    return out


# ---------------------------------------------------------------------------------------------
# Objects in the bucket directories


def bucket_dir(d: Daemon, bucket: str) -> Path:
    return Path(d.data_dir) / "buckets" / bucket


def zstd_decompress_whole(raw: bytes) -> bytes:
    """Every zstd frame of `raw`, each one complete (a truncated frame is an error, not the
    prefix that a streaming decoder would return)."""
    out, rest = b"", raw
    assert rest, "an empty .zst object"
    while rest:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        out += dobj.decompress(rest)
        if not dobj.eof:
            raise ValueError("a truncated zstd frame")
        rest = dobj.unused_data
    return out


def decode(key: str, raw: bytes) -> bytes:
    if key.endswith(".gz"):
        return gzip.decompress(raw)
    if key.endswith(".zst"):
        return zstd_decompress_whole(raw)
    return raw


def split_json(body: bytes) -> list[dict]:
    """The JSON documents of a body; the whole body must parse (nothing torn, no stray bytes;
    whitespace between documents is part of the records)."""
    text = body.decode("utf-8")
    dec = json.JSONDecoder()
    out, at = [], 0
    while at < len(text):
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        if at == len(text):
            break
        v, at = dec.raw_decode(text, at)
        out.append(v)
    return out


def string_record(i: int, pk: str, text: str) -> bytes:
    assert "\n" not in text
    return f"{i:06d}|{pk}|{text}\n".encode()


def split_strings(body: bytes) -> list[dict]:
    assert body.endswith(b"\n"), "an object that does not end with a whole record"
    return [{"i": int(line[:6].decode())} for line in body.split(b"\n")[:-1]]


BYTES_MAGIC = b"\x00REC"


def bytes_record(i: int, payload: bytes) -> bytes:
    return BYTES_MAGIC + i.to_bytes(4, "big") + len(payload).to_bytes(4, "big") + payload


def split_bytes(body: bytes) -> list[dict]:
    out, at = [], 0
    while at < len(body):
        assert body[at : at + 4] == BYTES_MAGIC, f"no record frame at offset {at}"
        i = int.from_bytes(body[at + 4 : at + 8], "big")
        n = int.from_bytes(body[at + 8 : at + 12], "big")
        at += 12 + n
        assert at <= len(body), "a torn record frame"
        out.append({"i": i})
    return out


@dataclass(frozen=True)
class ChannelObject:
    key: str  # relative to the bucket
    path: Path
    match: re.Match

    def body(self) -> bytes:
        return decode(self.key, self.path.read_bytes())


def default_key_rx(name: str, cid: str, ext: str) -> re.Pattern:
    """DEFAULT_TEMPLATE evaluated, with the object's unique suffix before the extension."""
    n, i = re.escape(name), re.escape(cid)
    return re.compile(
        rf"kinesis-channel/{n}/{i}/(?P<yyyy>[0-9]{{4}})/(?P<MM>[0-9]{{2}})/(?P<dd>[0-9]{{2}})/(?P<HH>[0-9]{{2}})/"
        rf"{n}-{i}-(?P=yyyy)-(?P=MM)-(?P=dd)-(?P=HH)-(?P<mm>[0-9]{{2}})-{UUID}{re.escape(ext)}"
    )


def custom_key_rx(stream: str, name: str, ext: str) -> re.Pattern:
    """CUSTOM_TEMPLATE evaluated."""
    return re.compile(
        rf"data/{re.escape(stream)}/(?P<yyyy>[0-9]{{4}})/(?P<MM>[0-9]{{2}})/(?P<dd>[0-9]{{2}})/"
        rf"{re.escape(name)}-{UUID}{re.escape(ext)}"
    )


def dead_letter_rx(prefix: str, name: str, cid: str) -> re.Pattern:
    """The dead-letter objects: `<ErrorOutputPrefix><yyyy>/<MM>/<dd>/<HH>/<name>-<id>-...-<uuid>.json`."""
    n, i = re.escape(name), re.escape(cid)
    return re.compile(
        rf"{re.escape(prefix)}(?P<yyyy>[0-9]{{4}})/(?P<MM>[0-9]{{2}})/(?P<dd>[0-9]{{2}})/(?P<HH>[0-9]{{2}})/"
        rf"{n}-{i}-(?P=yyyy)-(?P=MM)-(?P=dd)-(?P=HH)-(?P<mm>[0-9]{{2}})-{UUID}\.json"
    )


def key_time(m: re.Match) -> tuple[datetime, str]:
    """The time a key names (UTC), to its finest unit, and that unit."""
    g = m.groupdict()
    parts = [int(g[u]) for u in ("yyyy", "MM", "dd", "HH", "mm") if g.get(u) is not None]
    unit = ["year", "month", "day", "hour", "minute"][len(parts) - 1]
    return datetime(*(parts + [1, 1])[: max(3, len(parts))], tzinfo=timezone.utc), unit


def truncate(t: datetime, unit: str) -> datetime:
    t = t.astimezone(timezone.utc).replace(second=0, microsecond=0)
    if unit == "minute":
        return t
    t = t.replace(minute=0)
    if unit == "hour":
        return t
    return t.replace(hour=0)


def assert_key_time_between(o: ChannelObject, t0: datetime, t1: datetime) -> None:
    at, unit = key_time(o.match)
    assert truncate(t0, unit) <= at <= truncate(t1, unit), f"{o.key} names {at}, records arrived in {t0}..{t1}"


class Bucket:
    """The files of a bucket directory: objects matching `rx`, other files allowed by `others`
    (e.g. dead-letter objects in the same bucket), temporary files; anything else fails."""

    def __init__(self, d: Daemon, bucket: str, rx: re.Pattern, split, others: tuple[re.Pattern, ...] = ()):
        self.d, self.bucket, self.rx, self.split, self.others = d, bucket, rx, split, others
        self.cache: dict[str, tuple[ChannelObject, bytes, list[dict]]] = {}

    def files(self) -> list[ChannelObject]:
        root = bucket_dir(self.d, self.bucket)
        out = []
        if not root.exists():
            return out
        for p in sorted(root.rglob("*")):
            try:
                if not p.is_file():
                    continue
            except OSError:
                continue
            key = p.relative_to(root).as_posix()
            if TEMP.fullmatch(p.name):
                assert not self.rx.fullmatch(key), f"{key}: a temporary file named like an object"
                continue
            m = self.rx.fullmatch(key)
            if m:
                out.append(ChannelObject(key, p, m))
                continue
            assert any(o.fullmatch(key) for o in self.others), f"{self.bucket}/{key}: not a key of the template"
        return out

    def scan(self) -> dict[str, tuple[ChannelObject, bytes, list[dict]]]:
        for o in self.files():
            if o.key not in self.cache:
                body = o.body()
                self.cache[o.key] = (o, body, self.split(body))
        return self.cache

    def ids(self) -> list[int]:
        return [r["i"] for _, _, recs in self.scan().values() for r in recs]

    def wait_for(self, want, what: str, timeout: float = 30.0):
        want = set(want)
        return wait_until(lambda: want <= set(self.ids()) or None, what, timeout, self.d, every=0.1)

    def fresh(self) -> "Bucket":
        return Bucket(self.d, self.bucket, self.rx, self.split, self.others)


def dead_letters(d: Daemon, bucket: str, rx: re.Pattern) -> list[tuple[ChannelObject, bytes, list[dict]]]:
    """The dead-letter objects of `bucket` matching `rx`: (object, raw bytes, its JSON lines)."""
    root = bucket_dir(d, bucket)
    out = []
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        if not p.is_file() or TEMP.fullmatch(p.name):
            continue
        key = p.relative_to(root).as_posix()
        m = rx.fullmatch(key)
        if m:
            raw = p.read_bytes()
            assert raw.endswith(b"\n"), f"{key}: not whole JSON lines"
            out.append((ChannelObject(key, p, m), raw, [json.loads(line) for line in raw.splitlines()]))
    return out


def settle(d: Daemon, buckets: list[str], quiet: float = 2.5, timeout: float = 60.0) -> None:
    """Waits until no file appeared or disappeared in `buckets` for `quiet` seconds."""

    def snapshot():
        out = set()
        for b in buckets:
            root = bucket_dir(d, b)
            for dirpath, _, files in os.walk(root):
                out.update(os.path.join(dirpath, f) for f in files if not TEMP.fullmatch(f))
        return out

    deadline = time.monotonic() + timeout
    seen, since = snapshot(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"objects kept appearing; log:\n{d.log_tail()}"
        time.sleep(0.1)
        now = snapshot()
        if now != seen:
            seen, since = now, time.monotonic()


def assert_dead_letters(entries: list[dict], bad: dict[str, dict], stream_arn: str, why: str) -> None:
    """One entry per bad record (by sequence number), where it is in the stream and why; never
    its data."""
    seqs = [e.get("sequenceNumber") for e in entries]
    assert sorted(seqs) == sorted(bad), f"dead letters {seqs}, expected {sorted(bad)}"
    for e in entries:
        b = bad[e["sequenceNumber"]]
        assert e["streamARN"] == stream_arn, e
        assert e["shardId"] == b["ShardId"], (e, b)
        assert e["errorCode"] == "InvalidRecordFormat", e
        assert isinstance(e["errorMessage"], str) and why in e["errorMessage"], e
        for member in ("data", "rawData", "Data", "record"):
            assert member not in e, f"a dead letter holds the record's data: {e}"


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def channel_daemon(tmp_path_factory):
    """A daemon for this module's channels, its buffers capped at 1 s."""
    d = Daemon(tmp_path_factory.mktemp("sluice-channels"), config=DELIVERY_CONFIG)
    d.start()
    yield d
    rc = d.stop()
    assert rc == 0, f"sluice exited with {rc} on SIGTERM; log:\n{d.log_tail()}"


@pytest.fixture(scope="module")
def kin(channel_daemon):
    return make_client(channel_daemon.endpoint)


@pytest.fixture(scope="module")
def kin_raw(channel_daemon):
    """Without botocore's client-side validation: the server answers."""
    return make_client(channel_daemon.endpoint, validate=False)


def drop_stream(client, name: str, arn: str) -> None:
    """Deletes a stream's channels, then the stream (an account has 50 ON_DEMAND streams)."""
    for c in all_channel_summaries(client):
        if any(st["StreamARN"] == arn for st in c["Streams"]):
            client.delete_channel(ChannelARN=c["ChannelARN"])
    try:
        client.delete_stream(StreamName=name)
    except ClientError as e:
        if error_code_of(e) != "ResourceNotFoundException":
            raise


def error_code_of(e: ClientError) -> str:
    return e.response["Error"]["Code"]


@pytest.fixture
def make_source(kin):
    """make_source() -> a fresh ON_DEMAND stream on the module's daemon (name, ARN, creation
    timestamp); it and its channels are deleted after the test."""
    made = []

    def _make():
        made.append(on_demand_stream(kin))
        return made[-1]

    yield _make
    for name, arn, _ in made:
        drop_stream(kin, name, arn)


@pytest.fixture
def source(make_source):
    return make_source()


# =============================================================================================
# 1. Lifecycle


def test_create_describe_list_update_delete(new_daemon):
    d = new_daemon(DELIVERY_CONFIG)
    k = make_client(d.endpoint)
    stream, stream_arn, stream_created = on_demand_stream(k)
    account = stream_arn.split(":")[4]
    bucket = unique_bucket("lake")
    name = unique_name("orders-channel")
    before = datetime.now(timezone.utc) - timedelta(seconds=2)
    answer = k.create_channel(**channel_args(stream_arn, bucket, name=name))["ChannelDescription"]
    after = datetime.now(timezone.utc) + timedelta(seconds=2)

    cid = answer["ChannelId"]
    assert re.fullmatch(UUID, cid), cid
    arn = f"arn:aws:kinesis:us-east-1:{account}:channel/{cid}"
    assert before <= answer["ChannelCreationTimestamp"] <= after, answer
    assert answer == {
        "ChannelName": name,
        "ChannelARN": arn,
        "ChannelId": cid,
        "ChannelStatus": "CREATING",
        "ChannelCreationTimestamp": answer["ChannelCreationTimestamp"],
        "ServiceExecutionRoleARN": ROLE,
        "StreamConfigurationList": [
            {
                "StreamARN": stream_arn,
                "StreamCreationTimestamp": stream_created,
                "RecordConfiguration": {"RecordFormatType": "JSON"},
            }
        ],
        "S3DestinationConfiguration": {
            "DataFreshnessInSeconds": 300,
            "StorageConfiguration": {
                "BucketARN": bucket_arn(bucket),
                "ExpectedBucketOwner": OWNER,
                "CompressionType": "NONE",
                "StorageClass": "STANDARD",
                "OutputKeyTemplate": DEFAULT_TEMPLATE,
            },
            "DeadLetterQueueS3Configuration": {
                "BucketARN": bucket_arn(bucket),
                "ExpectedBucketOwner": OWNER,
                "ErrorOutputPrefix": f"kinesis-channel/errors/{name}/{cid}/",
            },
        },
        "LoggingConfiguration": {"CloudWatchLogs": {"Enabled": False}},
    }

    active = wait_channel(k, arn, daemon=d)
    assert active == {**answer, "ChannelStatus": "ACTIVE"}

    [summary] = k.list_channels()["ChannelSummaries"]
    assert summary == {
        "ChannelName": name,
        "ChannelARN": arn,
        "ChannelId": cid,
        "ChannelStatus": "ACTIVE",
        "ChannelCreationTimestamp": answer["ChannelCreationTimestamp"],
        "ChannelDestinationType": "S3",
        "Streams": [{"StreamARN": stream_arn, "StreamCreationTimestamp": stream_created}],
    }

    # UpdateChannel: UPDATING with the new values, then ACTIVE.
    logging = {"CloudWatchLogs": {"Enabled": True, "LogGroupName": "/channels/orders", "LogStreamName": "delivery"}}
    upd = k.update_channel(
        ChannelARN=arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 600}, LoggingConfiguration=logging
    )["ChannelDescription"]
    assert upd["ChannelStatus"] == "UPDATING", upd
    assert upd["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 600, upd
    assert upd["LoggingConfiguration"] == logging, upd
    now = wait_channel(k, arn, daemon=d)
    expected = {
        **active,
        "S3DestinationConfiguration": {**active["S3DestinationConfiguration"], "DataFreshnessInSeconds": 600},
        "LoggingConfiguration": logging,
    }
    assert now == expected
    # Only what an update names changes.
    k.update_channel(ChannelARN=arn, LoggingConfiguration={"CloudWatchLogs": {"Enabled": False}})
    now = wait_channel(k, arn, daemon=d)
    assert now == {**expected, "LoggingConfiguration": {"CloudWatchLogs": {"Enabled": False}}}
    k.update_channel(ChannelARN=arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 900})
    now = wait_channel(k, arn, daemon=d)
    assert now["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 900
    assert now["LoggingConfiguration"] == {"CloudWatchLogs": {"Enabled": False}}

    # The stream cannot go while a channel reads it.
    expect_error("ResourceInUseException", k.delete_stream, StreamName=stream, contains=name)
    assert k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"

    k.delete_channel(ChannelARN=arn)
    wait_until(
        lambda: not k.list_channels()["ChannelSummaries"], "the channel gone from ListChannels", daemon=d
    )
    expect_error("ResourceNotFoundException", k.describe_channel, ChannelARN=arn, contains=arn)
    expect_error("ResourceNotFoundException", k.delete_channel, ChannelARN=arn, contains=arn)

    # The name can be used again: a new channel, with an id of its own.
    again = make_channel(k, stream_arn, bucket, name=name, daemon=d)
    assert again["ChannelId"] != cid and again["ChannelARN"] != arn
    expect_error("ResourceNotFoundException", k.describe_channel, ChannelARN=arn)
    k.delete_channel(ChannelARN=again["ChannelARN"])
    wait_until(lambda: not k.list_channels()["ChannelSummaries"], "the second channel gone", daemon=d)

    k.delete_stream(StreamName=stream)
    wait_gone(k, stream)


def test_channel_metadata_survives_restart_and_kill9(new_daemon):
    d = new_daemon(DELIVERY_CONFIG)
    k = make_client(d.endpoint)
    stream, stream_arn, _ = on_demand_stream(k)
    bucket, dlq_bucket = unique_bucket("lake"), unique_bucket("dlq")
    args = channel_args(
        stream_arn,
        bucket,
        compression="GZIP",
        template=CUSTOM_TEMPLATE,
        freshness=450,
        dlq={"BucketARN": bucket_arn(dlq_bucket), "ExpectedBucketOwner": OWNER, "ErrorOutputPrefix": "bad/"},
        StorageClass="INTELLIGENT_TIERING",
    )
    args["EncryptionConfiguration"] = {"EncryptionType": "KMS", "KeyId": "alias/channel-key"}
    args["LoggingConfiguration"] = {"CloudWatchLogs": {"Enabled": True, "LogGroupName": "g", "LogStreamName": "s"}}
    args["Tags"] = {"team": "data", "env": "test"}
    arn = k.create_channel(**args)["ChannelDescription"]["ChannelARN"]
    desc = wait_channel(k, arn, daemon=d)
    assert desc["S3DestinationConfiguration"]["StorageConfiguration"]["StorageClass"] == "INTELLIGENT_TIERING"
    assert desc["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 450
    assert desc["EncryptionConfiguration"] == args["EncryptionConfiguration"]
    listed = k.list_channels()["ChannelSummaries"]

    d.restart()
    k = make_client(d.endpoint)
    assert describe(k, arn) == desc
    assert k.list_channels()["ChannelSummaries"] == listed

    d.kill9()
    d.start()
    k = make_client(d.endpoint)
    assert describe(k, arn) == desc
    assert k.list_channels()["ChannelSummaries"] == listed

    # An update acknowledged just before kill -9 is kept.
    k.update_channel(ChannelARN=arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 500})
    d.kill9()
    d.start()
    k = make_client(d.endpoint)
    now = wait_channel(k, arn, daemon=d)
    assert now == {**desc, "S3DestinationConfiguration": {**desc["S3DestinationConfiguration"], "DataFreshnessInSeconds": 500}}

    # And it still delivers, under its template.
    sent = {i: record("after-restart", i, i % 50, key=f"pk-{i % 3}") for i in range(40)}
    put_entries(k, stream, [(b, f"pk-{i % 3}") for i, b in sent.items()])
    objs = Bucket(d, bucket, custom_key_rx(stream, desc["ChannelName"], ".gz"), split_json)
    objs.wait_for(sent, "records put after the restarts delivered")
    assert_delivered_once_in_order(objs.fresh().scan(), sent, shard_of=lambda i: i % 3)


def test_a_channel_creating_at_kill9_becomes_active_after_restart(new_daemon):
    d = new_daemon(SLOW_CONFIG)
    k = make_client(d.endpoint)
    stream, stream_arn, _ = on_demand_stream(k)
    answer = k.create_channel(**channel_args(stream_arn, unique_bucket()))["ChannelDescription"]
    assert describe(k, answer["ChannelARN"])["ChannelStatus"] == "CREATING"
    d.kill9()
    d.start()
    k = make_client(d.endpoint)
    active = wait_channel(k, answer["ChannelARN"], timeout=10, daemon=d)
    assert active == {**answer, "ChannelStatus": "ACTIVE"}


# =============================================================================================
# 2. Errors


def without(args: dict, member: str) -> dict:
    return {k: v for k, v in args.items() if k != member}


def with_s3(args: dict, **s3) -> dict:
    return {**args, "S3DestinationConfiguration": {**args["S3DestinationConfiguration"], **s3}}


def with_format(args: dict, fmt: str) -> dict:
    [sc] = args["StreamConfigurationList"]
    return {**args, "StreamConfigurationList": [{**sc, "RecordConfiguration": {"RecordFormatType": fmt}}]}


CREATE_ERRORS = {
    "s3-and-s3-tables": (
        lambda a: {**a, "S3TablesDestinationConfiguration": S3_TABLES},
        "Specify either S3DestinationConfiguration or S3TablesDestinationConfiguration, not both.",
    ),
    "s3-tables-only": (
        lambda a: {**without(a, "S3DestinationConfiguration"), "S3TablesDestinationConfiguration": S3_TABLES},
        "S3TablesDestinationConfiguration: delivery to S3 Tables (Apache Iceberg) is not supported",
    ),
    "no-destination": (
        lambda a: without(a, "S3DestinationConfiguration"),
        "Specify S3DestinationConfiguration or S3TablesDestinationConfiguration.",
    ),
    "freshness-299": (
        lambda a: with_s3(a, DataFreshnessInSeconds=299),
        "DataFreshnessInSeconds must be between 300 and 900 seconds; 299 was given.",
    ),
    "freshness-901": (
        lambda a: with_s3(a, DataFreshnessInSeconds=901),
        "DataFreshnessInSeconds must be between 300 and 900 seconds; 901 was given.",
    ),
    "gsr-json": (
        lambda a: with_format(a, "GSR_JSON"),
        "RecordFormatType GSR_JSON is supported only for S3 Tables destinations.",
    ),
    "two-streams": (
        lambda a: {**a, "StreamConfigurationList": a["StreamConfigurationList"] * 2},
        "StreamConfigurationList must name exactly one stream; 2 were given.",
    ),
    "reserved-tag": (
        lambda a: {**a, "Tags": {"aws:owner": "x"}},
        "Tag key aws:owner: keys beginning with aws: are reserved.",
    ),
}


@pytest.mark.parametrize("case", sorted(CREATE_ERRORS))
def test_create_channel_invalid_arguments(kin, kin_raw, source, case):
    make, message = CREATE_ERRORS[case]
    stream, stream_arn, _ = source
    args = make(channel_args(stream_arn, unique_bucket()))
    msg = expect_error("InvalidArgumentException", kin_raw.create_channel, **args, contains=message)
    if case == "s3-tables-only":
        assert "S3 Tables" in msg and "not supported" in msg, msg
    # Nothing was created: the stream takes a channel afterwards.
    assert args["ChannelName"] not in all_channel_names(kin)
    make_channel(kin, stream_arn, unique_bucket())


def test_create_channel_on_a_provisioned_stream(kin):
    stream = create_stream(kin, unique_name("provisioned"), shard_count=2)
    arn = kin.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    try:
        expect_error(
            "InvalidArgumentException",
            kin.create_channel,
            **channel_args(arn, unique_bucket()),
            message=f"Stream {stream} is in PROVISIONED mode; channels are supported only for streams in ON_DEMAND mode.",
        )
    finally:
        drop_stream(kin, stream, arn)


def test_create_channel_on_an_unknown_stream(kin, source):
    _, stream_arn, _ = source
    missing = unique_name("missing")
    arn = stream_arn.rsplit("/", 1)[0] + "/" + missing
    msg = expect_error("ResourceNotFoundException", kin.create_channel, **channel_args(arn, unique_bucket()))
    assert missing in msg and "not found" in msg, msg


def test_duplicate_channel_name_is_resource_in_use(kin, make_source):
    _, arn1, _ = make_source()
    _, arn2, _ = make_source()
    name = unique_name("dup")
    first = make_channel(kin, arn1, unique_bucket(), name=name)
    expect_error(
        "ResourceInUseException",
        kin.create_channel,
        **channel_args(arn2, unique_bucket(), name=name),
        message=f"Channel {name} already exists.",
    )
    assert describe(kin, first["ChannelARN"]) == first
    assert all_channel_names(kin).count(name) == 1


def test_second_channel_on_a_stream_is_limit_exceeded(kin, source):
    stream, stream_arn, _ = source
    first = make_channel(kin, stream_arn, unique_bucket())
    second = unique_name("second")
    expect_error(
        "LimitExceededException",
        kin.create_channel,
        **channel_args(stream_arn, unique_bucket(), name=second),
        message=f"Stream {stream} already has a general purpose S3 channel ({first['ChannelName']}); a stream can have one.",
    )
    assert second not in all_channel_names(kin)


@pytest.mark.parametrize("freshness", [299, 901, 0, 100_000])
def test_update_channel_freshness_out_of_range(kin, source, freshness):
    _, stream_arn, _ = source
    desc = make_channel(kin, stream_arn, unique_bucket())
    expect_error(
        "InvalidArgumentException",
        kin.update_channel,
        ChannelARN=desc["ChannelARN"],
        S3DestinationConfiguration={"DataFreshnessInSeconds": freshness},
        message=f"DataFreshnessInSeconds must be between 300 and 900 seconds; {freshness} was given.",
    )
    # Refused, not half applied: still ACTIVE with its old value.
    assert describe(kin, desc["ChannelARN"]) == desc


def test_update_channel_to_s3_tables_is_refused(kin_raw, kin, source):
    _, stream_arn, _ = source
    desc = make_channel(kin, stream_arn, unique_bucket())
    expect_error(
        "InvalidArgumentException",
        kin_raw.update_channel,
        ChannelARN=desc["ChannelARN"],
        S3TablesDestinationConfiguration={"DataFreshnessInSeconds": 600},
        contains="general purpose S3 bucket",
    )
    assert describe(kin, desc["ChannelARN"]) == desc


BAD_TEMPLATES = [
    # (template, compression, why)
    ("/data/!{channel-name}!{extension}", "NONE", "it must not start or end with '/'"),
    ("data/!{channel-name}/!{yyyy}/", "NONE", "it must not start or end with '/'"),
    ("data/../!{channel-name}!{extension}", "NONE", "'..'"),
    ("data/./!{channel-name}", "NONE", "'..' or a '.' path segment"),
    ("data//!{channel-name}!{extension}", "NONE", "it must not contain '//'"),
    ("!{channel-name}!{extension}/!{yyyy}", "NONE", "the extension placeholder must be at its end"),
    ("!{channel-name}!{extension}!{extension}", "NONE", "one extension placeholder only"),
    ("data/!{partition-id}!{extension}", "NONE", "!{partition-id} is not a supported variable"),
    ("data/!{channel-name}/!{yyyy", "NONE", "a '!{' has no matching '}'"),
    ("data:x/!{yyyy}", "NONE", "the character ':' is not allowed outside a variable"),
    ("static-prefix-only", "NONE", "it must contain at least one variable"),
    ("x/!{yyyy}!{extension:json}", "NONE", "must start with '.'"),
    ("x/!{yyyy}!{extension:.JSON}", "NONE", "must start with '.'"),
    ("data/!{channel-name}", "GZIP", "a compressed channel's template needs !{extension}"),
    ("data/!{channel-name}/!{yyyy}", "ZSTD", "a compressed channel's template needs !{extension}"),
    ("a" * 960 + "/!{channel-id}", "NONE", "expanded, it is longer than 986 characters"),
]


@pytest.mark.parametrize(
    "template,compression,why", BAD_TEMPLATES, ids=[f"{t[:40]}-{c}" for t, c, _ in BAD_TEMPLATES]
)
def test_bad_output_key_templates(kin, kin_raw, source, template, compression, why):
    _, stream_arn, _ = source
    args = channel_args(stream_arn, unique_bucket(), compression=compression, template=template)
    msg = expect_error("InvalidArgumentException", kin_raw.create_channel, **args)
    assert msg.startswith(f"OutputKeyTemplate {template} is invalid: "), msg
    assert why in msg, msg
    assert args["ChannelName"] not in all_channel_names(kin)


@pytest.mark.parametrize(
    "template,compression",
    [
        ("data/stream=!{stream-name}/!{yy}-!{HH}!{mm}!{extension:.json}", "GZIP"),
        ("!{channel-name}/!{channel-id}", "NONE"),
        ("x/(a)'b'*c=d/!{yyyy}-!{MM}!{extension}", "ZSTD"),
    ],
)
def test_good_output_key_templates_are_kept_as_given(kin, source, template, compression):
    _, stream_arn, _ = source
    desc = make_channel(kin, stream_arn, unique_bucket(), compression=compression, template=template)
    st = desc["S3DestinationConfiguration"]["StorageConfiguration"]
    assert (st["OutputKeyTemplate"], st["CompressionType"]) == (template, compression)


@pytest.mark.parametrize("op", ["describe_channel", "update_channel", "delete_channel"])
def test_unknown_channel_arn_is_not_found(kin, source, op):
    _, stream_arn, _ = source
    real = make_channel(kin, stream_arn, unique_bucket())
    account = real["ChannelARN"].split(":")[4]
    other = "111111111111" if account != "111111111111" else "222222222222"
    extra = {"S3DestinationConfiguration": {"DataFreshnessInSeconds": 600}} if op == "update_channel" else {}
    for arn in (
        f"arn:aws:kinesis:us-east-1:{account}:channel/00000000-0000-0000-0000-000000000000",
        f"arn:aws:kinesis:us-east-1:{other}:channel/{real['ChannelId']}",  # its id, another account
        f"arn:aws:kinesis:eu-west-1:{account}:channel/{real['ChannelId']}",  # another region
        real["ChannelARN"][:-1] + ("0" if real["ChannelARN"][-1] != "0" else "1"),
    ):
        expect_error("ResourceNotFoundException", getattr(kin, op), ChannelARN=arn, **extra, message=f"Channel {arn} not found.")
    assert describe(kin, real["ChannelARN"]) == real


def test_update_while_not_active_is_resource_in_use(new_daemon):
    d = new_daemon(SLOW_CONFIG)
    k = make_client(d.endpoint)
    _, stream_arn, _ = on_demand_stream(k)
    arn = k.create_channel(**channel_args(stream_arn, unique_bucket()))["ChannelDescription"]["ChannelARN"]
    assert describe(k, arn)["ChannelStatus"] == "CREATING"
    expect_error(
        "ResourceInUseException",
        k.update_channel,
        ChannelARN=arn,
        S3DestinationConfiguration={"DataFreshnessInSeconds": 600},
        message=f"Channel {arn} is CREATING and cannot be updated now.",
    )
    desc = wait_channel(k, arn, timeout=10, daemon=d)
    assert desc["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 300
    upd = k.update_channel(ChannelARN=arn, S3DestinationConfiguration={"DataFreshnessInSeconds": 600})
    assert upd["ChannelDescription"]["ChannelStatus"] == "UPDATING"
    assert describe(k, arn)["ChannelStatus"] == "UPDATING"
    expect_error(
        "ResourceInUseException",
        k.update_channel,
        ChannelARN=arn,
        S3DestinationConfiguration={"DataFreshnessInSeconds": 700},
        message=f"Channel {arn} is UPDATING and cannot be updated now.",
    )
    desc = wait_channel(k, arn, timeout=10, daemon=d)
    assert desc["S3DestinationConfiguration"]["DataFreshnessInSeconds"] == 600


def v(value: str, member: str, constraint: str) -> str:
    return f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"


MODEL_ERRORS = {
    "name-with-space": (
        "create_channel",
        {"ChannelName": "orders channel"},
        v("orders channel", "channelName", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
    ),
    "name-too-long": (
        "create_channel",
        {"ChannelName": "n" * 129},
        v("n" * 129, "channelName", "Member must have length less than or equal to 128"),
    ),
    "role-arn": (
        "create_channel",
        {"ServiceExecutionRoleARN": "ChannelRole"},
        v(
            "ChannelRole",
            "serviceExecutionRoleARN",
            r"Member must satisfy regular expression pattern: arn:aws[-a-z0-9]*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+",
        ),
    ),
    "no-streams": (
        "create_channel",
        {"StreamConfigurationList": []},
        v("[]", "streamConfigurationList", "Member must have length greater than or equal to 1"),
    ),
    "compression": (
        "create_channel",
        {"S3DestinationConfiguration": {"StorageConfiguration": {"BucketARN": "arn:aws:s3:::lake", "ExpectedBucketOwner": OWNER, "CompressionType": "LZ4"}}},
        v("LZ4", "s3DestinationConfiguration.storageConfiguration.compressionType", "Member must satisfy enum value set: [NONE, GZIP, ZSTD]"),
    ),
    "template-with-space": (
        "create_channel",
        {"S3DestinationConfiguration": s3_destination("lake", template="foo bar/!{yyyy}")},
        "at 's3DestinationConfiguration.storageConfiguration.outputKeyTemplate' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern",
    ),
    "max-results": ("list_channels", {"MaxResults": 0}, v("0", "maxResults", "Member must have value greater than or equal to 1")),
    "channel-arn": (
        "describe_channel",
        {"ChannelARN": "orders"},
        v("orders", "channelARN", r"Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\d{12}:channel/\S+"),
    ),
}


@pytest.mark.parametrize("case", sorted(MODEL_ERRORS))
def test_model_validation_errors(kin_raw, source, case):
    op, args, message = MODEL_ERRORS[case]
    _, stream_arn, _ = source
    if op == "create_channel":
        args = {**channel_args(stream_arn, unique_bucket()), **args}
    msg = expect_error("ValidationException", getattr(kin_raw, op), **args)
    if message.startswith("1 validation error"):
        assert msg == message
    else:
        assert message in msg, msg


# =============================================================================================
# 3. ListChannels


def test_list_channels_pages_and_stream_filter(new_daemon):
    d = new_daemon(DELIVERY_CONFIG)
    k = make_client(d.endpoint)
    streams = [on_demand_stream(k) for _ in range(6)]  # the last one without a channel
    chans = [make_channel(k, arn, unique_bucket(), name=f"ch{n}-{unique_name('c')}", daemon=d) for n, (_, arn, _) in enumerate(streams[:5])]
    names = {c["ChannelName"] for c in chans}

    pages, token = [], None
    for _ in range(10):
        r = k.list_channels(MaxResults=2, **({"NextToken": token} if token else {}))
        pages.append(r)
        token = r.get("NextToken")
        if not token:
            break
    assert [len(p["ChannelSummaries"]) for p in pages] == [2, 2, 1], pages
    assert all("NextToken" in p for p in pages[:-1]) and "NextToken" not in pages[-1]
    seen = [s["ChannelName"] for p in pages for s in p["ChannelSummaries"]]
    assert sorted(seen) == sorted(names), seen  # each exactly once
    assert "NextToken" not in k.list_channels(MaxResults=5) and len(k.list_channels()["ChannelSummaries"]) == 5

    def filtered(*filters, **kw):
        return all_channel_names(k, StreamFilter=list(filters), **kw)

    assert filtered({"StreamARN": streams[1][1]}) == [chans[1]["ChannelName"]]
    assert sorted(filtered({"StreamARN": streams[0][1]}, {"StreamARN": streams[3][1]})) == sorted(
        [chans[0]["ChannelName"], chans[3]["ChannelName"]]
    )
    assert filtered({"StreamARN": streams[5][1]}) == []
    # StreamCreationTimestamp names the stream's incarnation.
    assert filtered({"StreamARN": streams[2][1], "StreamCreationTimestamp": streams[2][2]}) == [chans[2]["ChannelName"]]
    assert filtered({"StreamARN": streams[2][1], "StreamCreationTimestamp": streams[2][2] - timedelta(hours=1)}) == []
    # Filtered pages.
    three = [{"StreamARN": streams[i][1]} for i in (0, 2, 4)]
    first = k.list_channels(StreamFilter=three, MaxResults=2)
    assert len(first["ChannelSummaries"]) == 2 and first.get("NextToken"), first
    rest = k.list_channels(StreamFilter=three, MaxResults=2, NextToken=first["NextToken"])
    assert len(rest["ChannelSummaries"]) == 1 and "NextToken" not in rest, rest
    got = [s["ChannelName"] for s in first["ChannelSummaries"] + rest["ChannelSummaries"]]
    assert sorted(got) == sorted(chans[i]["ChannelName"] for i in (0, 2, 4))
    for s in first["ChannelSummaries"] + rest["ChannelSummaries"]:
        assert s["Streams"][0]["StreamARN"] in {streams[i][1] for i in (0, 2, 4)}, s


# =============================================================================================
# 4. Delivery


JSON_CASES = {
    # compression: (template, own dead-letter bucket)
    "NONE": (None, False),
    "GZIP": (CUSTOM_TEMPLATE, True),
    "ZSTD": (CUSTOM_TEMPLATE, False),
}


@pytest.mark.parametrize("compression", sorted(JSON_CASES))
def test_json_channel_delivery(channel_daemon, kin, source, compression):
    d = channel_daemon
    template, own_dlq = JSON_CASES[compression]
    stream, stream_arn, _ = source
    bucket = unique_bucket("lake")
    dlq_bucket = unique_bucket("dlq") if own_dlq else bucket
    dlq_prefix = "bad-records/gzip/" if own_dlq else None
    keys = [f"pk-{n}" for n in range(8)]

    # Before the channel: never delivered (a channel starts at its creation, no backfill).
    early = [(record("before", 10_000 + i, i, key=keys[i % 8]), keys[i % 8]) for i in range(30)]
    early.append((b"{bad-before", "pk-0"))
    early_answers = put_entries(kin, stream, early)
    time.sleep(0.05)

    dlq = (
        {"BucketARN": bucket_arn(dlq_bucket), "ExpectedBucketOwner": OWNER, "ErrorOutputPrefix": dlq_prefix}
        if own_dlq
        else None
    )
    desc = make_channel(kin, stream_arn, bucket, compression=compression, template=template, dlq=dlq, daemon=d)
    name, cid = desc["ChannelName"], desc["ChannelId"]
    if not own_dlq:
        dlq_prefix = f"kinesis-channel/errors/{name}/{cid}/"
    assert desc["S3DestinationConfiguration"]["DeadLetterQueueS3Configuration"]["ErrorOutputPrefix"] == dlq_prefix

    # Valid records in several shapes (compact, pretty, with a newline of their own, Unicode),
    # and invalid ones among them.
    sent: dict[int, bytes] = {}
    pk_of: dict[int, str] = {}
    entries: list[tuple[bytes, str]] = []
    kinds: list[int | None] = []
    rng = random.Random(7)
    bad_payloads = [b"{bad", b"not json", b'{"a": 1}}', b"[1, 2", b"\xff\xfe", b'{"a": "\x00"}']
    for i in range(400):
        pk = keys[rng.randrange(8)]
        shape = i % 4
        if shape == 0:
            data = record("after", i, rng.randint(0, 300), key=pk)
        elif shape == 1:
            data = json.dumps({"i": i, "tag": "after", "key": pk, "nested": {"a": [1, 2, {"b": None}]}}, indent=2).encode()
        elif shape == 2:
            data = record("after", i, 5, key=pk, text="ünïcødé ✓ 漢字") + b"\n"
        else:
            data = json.dumps({"tag": "after", "i": i, "key": pk, "n": 1.5e3, "t": True}, separators=(",", ":")).encode()
        sent[i], pk_of[i] = data, pk
        entries.append((data, pk))
        kinds.append(i)
        if i % 37 == 5:
            entries.append((bad_payloads[(i // 37) % len(bad_payloads)] + f"-{i}".encode(), pk))
            kinds.append(None)
    t0 = datetime.now(timezone.utc)
    answers = put_entries(kin, stream, entries)
    t1 = datetime.now(timezone.utc)
    bad = {a["SequenceNumber"]: {**a, "Data": e[0]} for a, e, kind in zip(answers, entries, kinds) if kind is None}
    assert len(bad) >= 10

    ext = EXTENSIONS[compression]
    rx = default_key_rx(name, cid, ext) if template is None else custom_key_rx(stream, name, ext)
    dlq_rx = dead_letter_rx(dlq_prefix, name, cid)
    objs = Bucket(d, bucket, rx, split_json, others=() if own_dlq else (dlq_rx,))
    objs.wait_for(sent, f"every valid record delivered ({compression})")
    wait_until(
        lambda: sum(len(lines) for _, _, lines in dead_letters(d, dlq_bucket, dlq_rx)) >= len(bad),
        "every invalid record dead-lettered",
        daemon=d,
    )
    settle(d, sorted({bucket, dlq_bucket}))

    scanned = objs.fresh().scan()
    assert scanned, "no objects"
    for o, body, recs in scanned.values():
        assert o.key.endswith(ext) if ext else not re.search(r"\.[a-z]+$", o.key), o.key
        assert not any(r["tag"] == "before" for r in recs), f"{o.key} holds records put before the channel"
        assert_key_time_between(o, t0 - timedelta(seconds=1), t1 + timedelta(seconds=1))
        if compression == "GZIP":
            assert o.path.read_bytes()[:2] == b"\x1f\x8b", o.key
        if compression == "ZSTD":
            assert o.path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd", o.key
    assert_delivered_once_in_order(scanned, sent, shard_of=pk_of.__getitem__)

    # Dead letters: one line per invalid record, nothing for the early one.
    dead = dead_letters(d, dlq_bucket, dlq_rx)
    assert dead, "no dead-letter objects"
    if own_dlq:
        # In their own bucket only; the destination bucket has objects only.
        assert not (bucket_dir(d, bucket) / "bad-records").exists()
        Bucket(d, dlq_bucket, dlq_rx, lambda b: []).files()  # nothing else in the dead-letter bucket
    entries_out = [e for _, _, lines in dead for e in lines]
    assert_dead_letters(entries_out, bad, stream_arn, "JSON")
    assert early_answers[-1]["SequenceNumber"] not in {e["sequenceNumber"] for e in entries_out}
    for o, raw, _ in dead:
        assert_key_time_between(o, t0 - timedelta(seconds=1), t1 + timedelta(seconds=1))
        for b in bad.values():
            assert b["Data"] not in raw, f"{o.key} holds a record's data"


@pytest.mark.parametrize("fmt,compression", [("STRING", "NONE"), ("BYTE_ARRAY", "GZIP")])
def test_string_and_byte_array_channels(channel_daemon, kin, source, fmt, compression):
    """STRING: valid UTF-8 is delivered (JSON or not), invalid UTF-8 is dead-lettered.
    BYTE_ARRAY: any bytes (invalid UTF-8, invalid JSON) are delivered as they are."""
    d = channel_daemon
    stream, stream_arn, _ = source
    bucket = unique_bucket("lake")
    desc = make_channel(kin, stream_arn, bucket, fmt=fmt, compression=compression, template=CUSTOM_TEMPLATE, daemon=d)
    name, cid = desc["ChannelName"], desc["ChannelId"]
    rng = random.Random(11)
    sent: dict[int, bytes] = {}
    pk_of: dict[int, str] = {}
    entries: list[tuple[bytes, str]] = []
    kinds: list[int | None] = []
    texts = ["plain text", "{not json at all", "ünïcødé ✓ 漢字 🙂", '{"valid": "json too"}', "tabs\tand 'quotes'"]
    invalid_utf8 = [b"\xff\xfe", b"caf\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"ok\x80"]
    for i in range(300):
        pk = f"pk-{rng.randrange(6)}"
        if fmt == "STRING":
            data = string_record(i, pk, texts[i % len(texts)] + "x" * rng.randint(0, 200))
        else:
            data = bytes_record(i, rng.randbytes(rng.randint(0, 400)) + b"\xff\xfe{bad" + invalid_utf8[i % 5])
        sent[i], pk_of[i] = data, pk
        entries.append((data, pk))
        kinds.append(i)
        if fmt == "STRING" and i % 29 == 3:
            entries.append((invalid_utf8[(i // 29) % len(invalid_utf8)] + f"-{i}\n".encode(), pk))
            kinds.append(None)
    t0 = datetime.now(timezone.utc)
    answers = put_entries(kin, stream, entries)
    t1 = datetime.now(timezone.utc)
    bad = {a["SequenceNumber"]: {**a, "Data": e[0]} for a, e, kind in zip(answers, entries, kinds) if kind is None}
    assert bool(bad) == (fmt == "STRING")

    dlq_rx = dead_letter_rx(f"kinesis-channel/errors/{name}/{cid}/", name, cid)
    split = split_strings if fmt == "STRING" else split_bytes
    objs = Bucket(d, bucket, custom_key_rx(stream, name, EXTENSIONS[compression]), split, others=(dlq_rx,))
    objs.wait_for(sent, f"every valid {fmt} record delivered")
    if bad:
        wait_until(
            lambda: sum(len(lines) for _, _, lines in dead_letters(d, bucket, dlq_rx)) >= len(bad),
            "every invalid UTF-8 record dead-lettered",
            daemon=d,
        )
    settle(d, [bucket])
    scanned = objs.fresh().scan()
    for o, _, _ in scanned.values():
        assert_key_time_between(o, t0 - timedelta(seconds=1), t1 + timedelta(seconds=1))
    assert_delivered_once_in_order(scanned, sent, shard_of=pk_of.__getitem__)
    dead = dead_letters(d, bucket, dlq_rx)
    if fmt == "BYTE_ARRAY":
        assert not dead, "a BYTE_ARRAY record was dead-lettered"
        return
    assert_dead_letters([e for _, _, lines in dead for e in lines], bad, stream_arn, "UTF-8")
    for _, raw, _ in dead:
        for b in bad.values():
            assert b["Data"] not in raw


# =============================================================================================
# 5. kill -9 during delivery


def test_kill9_during_channel_delivery(new_daemon):
    d = new_daemon(DELIVERY_CONFIG)
    k = make_client(d.endpoint)
    stream, stream_arn, _ = on_demand_stream(k)
    bucket = unique_bucket("crash-lake")
    desc = make_channel(k, stream_arn, bucket, compression="ZSTD", template=CUSTOM_TEMPLATE, daemon=d)
    name, cid = desc["ChannelName"], desc["ChannelId"]
    dlq_rx = dead_letter_rx(f"kinesis-channel/errors/{name}/{cid}/", name, cid)
    objs = Bucket(d, bucket, custom_key_rx(stream, name, ".zst"), split_json, others=(dlq_rx,))

    seed = crash_seed(20131202)
    writer = KinesisWriter(d.endpoint, stream, seed=seed)
    acked, hits = crash_while_writing(d, bucket, writer, objs.scan, seed, 4)

    objs.wait_for(acked, f"seed {seed}: every acknowledged record delivered", timeout=90)
    settle(d, [bucket], quiet=3)
    fresh = objs.fresh()
    scanned = fresh.scan()  # every object decodes whole (zstd frames complete, JSON whole)
    assert not dead_letters(d, bucket, dlq_rx), "valid records were dead-lettered"
    assert_delivered_once_in_order(scanned, writer.sent, required=acked, shard_of=writer.keys.__getitem__)
    # After a clean restart nothing is written again.
    d.restart()
    time.sleep(3)
    again = objs.fresh().scan()
    assert set(again) == set(scanned), f"seed {seed}: objects written again after a clean restart"
    assert all(again[key][1] == scanned[key][1] for key in scanned)
    print(
        f"{len(scanned)} objects, {len(acked)} acknowledged, {writer.failures} failed puts, "
        f"{hits} kills mid-write, {replays(d)} replays"
    )
