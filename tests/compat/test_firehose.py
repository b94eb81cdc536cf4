"""Amazon Data Firehose (`Firehose_20150804`, AWS JSON 1.1) through boto3's `firehose` client.

* The API: every operation, AWS's validation wording (with botocore's client-side validation
  off, so that the server's ValidationException is what answers), business errors and messages.
* Delivery to the bucket directories (`<data_dir>/buckets/<bucket>/<key>`): the seed's
  KinesisStreamAsSource example (without its Lambda processor), DirectPut with each compression
  format, size-based flushes, UpdateDestination mid-stream, delete and re-create.
* Crashes: `kill -9` of the daemon at seeded random moments while records are put and objects
  written; afterwards every acknowledged record is in exactly one object and no object is torn.
  `SLUICE_DELIVERY_CRASH_SEED=<n>` replays a run (the seed is printed, and named on failure);
  `SLUICE_DELIVERY_CRASH_ROUNDS=<n>` kills more often (the long mode:
  `SLUICE_DELIVERY_CRASH_ROUNDS=60 pytest tests/compat/test_firehose.py -k kill9`).

Records are JSON documents carrying an id, so that an object's body (records concatenated with
no delimiter) can be split again and compared byte for byte with what was put.

Snappy objects are decoded with python-snappy's raw decoder when it is installed, else with the
small pure-Python raw snappy decoder below; the framings (snappy-java's stream, Hadoop's blocks)
are parsed here in either case.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import (
    FAST_CONFIG,
    Daemon,
    create_stream,
    error_code,
    hash_key,
    list_all_shards,
    make_client,
    shard_for_hash,
    unique_name,
)

try:  # python-snappy, when installed; the pure-Python decoder below otherwise.
    import snappy as python_snappy
except ImportError:  # pragma: no cover - depends on the environment
    python_snappy = None

ROLE = "arn:aws:iam::123456789012:role/FirehoseRole"
DESTINATION_ID = "destinationId-000000000001"
FORMATS = ["UNCOMPRESSED", "GZIP", "ZIP", "Snappy", "HADOOP_SNAPPY"]
EXTENSIONS = {"UNCOMPRESSED": "", "GZIP": ".gz", "ZIP": ".zip", "Snappy": ".snappy", "HADOOP_SNAPPY": ".snappy"}
XERIAL_MAGIC = b"\x82SNAPPY\x00"
MiB = 1 << 20


def delivery_config(cap: str = "1s") -> str:
    """FAST_CONFIG plus a cap on every delivery stream's buffering interval."""
    return f'[delivery]\nbuffering_interval_cap = "{cap}"\n' + FAST_CONFIG


def firehose_client(endpoint: str, validate: bool = True):
    return make_client(endpoint, validate, service="firehose")


def unique_bucket(prefix: str = "bucket") -> str:
    return unique_name(prefix).lower()


def s3_destination(bucket: str, **kw) -> dict:
    return {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", **kw}


def wait_until(pred, what: str, timeout: float = 30.0, daemon: Daemon | None = None, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            log = f"; daemon log:\n{daemon.log_tail()}" if daemon else ""
            raise AssertionError(f"{what}: not within {timeout}s{log}")
        time.sleep(every)


def wait_ds_active(client, name: str, timeout: float = 10.0) -> dict:
    def active():
        d = client.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        assert d["DeliveryStreamStatus"] in ("CREATING", "ACTIVE"), d
        return d if d["DeliveryStreamStatus"] == "ACTIVE" else None

    return wait_until(active, f"delivery stream {name} ACTIVE", timeout)


def create_ds(
    client, name: str | None = None, bucket: str | None = None, source_stream: str | None = None, **dest
) -> tuple[str, str]:
    """Creates an ExtendedS3 delivery stream (DirectPut, or reading `source_stream`) and waits
    for ACTIVE; returns (name, bucket)."""
    name = name or unique_name("fh")
    bucket = bucket or unique_bucket()
    args = {"DeliveryStreamName": name, "ExtendedS3DestinationConfiguration": s3_destination(bucket, **dest)}
    if source_stream:
        args["DeliveryStreamType"] = "KinesisStreamAsSource"
        args["KinesisStreamSourceConfiguration"] = {"KinesisStreamARN": kinesis_arn(source_stream), "RoleARN": ROLE}
    client.create_delivery_stream(**args)
    wait_ds_active(client, name)
    return name, bucket


def kinesis_arn(stream: str) -> str:
    return f"arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"


def account_of(client, name: str) -> str:
    arn = client.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamARN"]
    return arn.split(":")[4]


# ---------------------------------------------------------------------------------------------
# Records: JSON documents with an id, concatenated with no delimiter in the objects.


def record(tag: str, i: int, pad: int = 0, **extra) -> bytes:
    return json.dumps({"tag": tag, "i": i, **extra, "pad": "x" * pad}, ensure_ascii=False).encode()


def split_records(body: bytes) -> list[dict]:
    """The JSON documents of an object's body; the whole body must parse (nothing torn, no
    stray bytes)."""
    text = body.decode("utf-8")
    dec = json.JSONDecoder()
    out, at = [], 0
    while at < len(text):
        v, at = dec.raw_decode(text, at)
        out.append(v)
    return out


# ---------------------------------------------------------------------------------------------
# Snappy: raw blocks, and the two framings Firehose writes.


def snappy_raw_decompress_py(buf: bytes) -> bytes:
    """Google's raw snappy format (a varint length, then literals and back-references)."""
    n = shift = pos = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    out = bytearray()
    while pos < len(buf):
        tag = buf[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(buf[pos : pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > len(buf):
                raise ValueError("snappy literal runs past the block")
            out += buf[pos : pos + length]
            pos += length
            continue
        if kind == 1:
            length = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | buf[pos]
            pos += 1
        elif kind == 2:
            length = (tag >> 2) + 1
            offset = int.from_bytes(buf[pos : pos + 2], "little")
            pos += 2
        else:
            length = (tag >> 2) + 1
            offset = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise ValueError(f"snappy copy offset {offset} outside the {len(out)} bytes so far")
        start = len(out) - offset
        if offset >= length:
            out += out[start : start + length]
        else:
            for k in range(length):
                out.append(out[start + k])
    if len(out) != n:
        raise ValueError(f"snappy block says {n} bytes, decodes to {len(out)}")
    return bytes(out)


def snappy_raw_decompress(block: bytes) -> bytes:
    if python_snappy is not None:
        return python_snappy.uncompress(block)
    return snappy_raw_decompress_py(block)


def decode_snappy_java(body: bytes) -> bytes:
    """xerial snappy-java's stream: magic, BE i32 version 1, BE i32 compatible version 1, then
    blocks of (BE i32 length, raw snappy)."""
    assert body[:8] == XERIAL_MAGIC, body[:16]
    assert int.from_bytes(body[8:12], "big", signed=True) == 1, "version"
    assert int.from_bytes(body[12:16], "big", signed=True) == 1, "compatible version"
    out, at = [], 16
    while at < len(body):
        assert at + 4 <= len(body), "a block length cut short"
        n = int.from_bytes(body[at : at + 4], "big", signed=True)
        assert 0 < n and at + 4 + n <= len(body), f"block of {n} bytes at {at} of {len(body)}"
        out.append(snappy_raw_decompress(body[at + 4 : at + 4 + n]))
        at += 4 + n
    return b"".join(out)


def decode_hadoop_snappy(body: bytes) -> bytes:
    """Hadoop's block framing: BE u32 raw length, BE u32 compressed length, raw snappy."""
    assert body[:8] != XERIAL_MAGIC, "HADOOP_SNAPPY is not snappy-java's stream"
    out, at = [], 0
    while at < len(body):
        assert at + 8 <= len(body), "a block header cut short"
        raw = int.from_bytes(body[at : at + 4], "big")
        n = int.from_bytes(body[at + 4 : at + 8], "big")
        assert at + 8 + n <= len(body), f"block of {n} bytes at {at} of {len(body)}"
        block = snappy_raw_decompress(body[at + 8 : at + 8 + n])
        assert len(block) == raw, f"block header says {raw} bytes, holds {len(block)}"
        out.append(block)
        at += 8 + n
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# Objects in a bucket directory.

TS = r"[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TEMP = re.compile(r"\.(?P<name>.+)\.sluice-tmp")


@dataclass(frozen=True)
class S3Object:
    key: str  # relative to the bucket
    prefix: str
    name: str
    version: int
    ts: datetime  # from the name: the oldest record's arrival, to the second
    uuid: str
    ext: str
    path: Path

    def body(self) -> bytes:
        """The object's records, decompressed as its extension says (snappy's two framings told
        apart by snappy-java's magic)."""
        raw = self.path.read_bytes()
        if self.ext == "":
            return raw
        if self.ext == ".gz":
            return gzip.decompress(raw)
        if self.ext == ".zip":
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                names = z.namelist()
                entry = self.name[: -len(".zip")]
                assert names == [entry], f"{self.key}: one entry named {entry}, got {names}"
                assert z.testzip() is None
                return z.read(entry)
        if self.ext == ".snappy":
            return decode_snappy_java(raw) if raw[:8] == XERIAL_MAGIC else decode_hadoop_snappy(raw)
        raise AssertionError(f"{self.key}: unexpected extension {self.ext}")


def bucket_dir(d: Daemon, bucket: str) -> Path:
    return Path(d.data_dir) / "buckets" / bucket


def list_objects(d: Daemon, bucket: str, stream: str) -> list[S3Object]:
    """The objects of `stream` in `bucket`. Every other file must be a temporary file (a write in
    progress, or one that a crash cut short), never named like an object."""
    root = bucket_dir(d, bucket)
    rx = re.compile(
        re.escape(stream) + rf"-(?P<version>[0-9]+)-(?P<ts>{TS})-(?P<uuid>{UUID})(?P<ext>\.gz|\.zip|\.snappy)?"
    )
    out = []
    if not root.exists():
        return out
    for p in root.rglob("*"):
        try:
            if not p.is_file():
                continue
        except OSError:
            continue
        key = p.relative_to(root).as_posix()
        if TEMP.fullmatch(p.name):
            assert not rx.fullmatch(p.name), key
            continue
        m = rx.fullmatch(p.name)
        assert m, f"{key}: neither an object of {stream} nor a temporary file"
        out.append(
            S3Object(
                key=key,
                prefix=key[: -len(p.name)],
                name=p.name,
                version=int(m["version"]),
                ts=datetime.strptime(m["ts"], "%Y-%m-%d-%H-%M-%S").replace(tzinfo=timezone.utc),
                uuid=m["uuid"],
                ext=m["ext"] or "",
                path=p,
            )
        )
    return sorted(out, key=lambda o: o.key)


class Delivered:
    """Reads a stream's objects as they appear (each one once: objects are written whole under
    their final name) and splits them into records."""

    def __init__(self, d: Daemon, bucket: str, stream: str):
        self.d, self.bucket, self.stream = d, bucket, stream
        self.cache: dict[str, tuple[S3Object, bytes, list[dict]]] = {}

    def scan(self) -> dict[str, tuple[S3Object, bytes, list[dict]]]:
        for o in list_objects(self.d, self.bucket, self.stream):
            if o.key not in self.cache:
                body = o.body()
                self.cache[o.key] = (o, body, split_records(body))
        return self.cache

    def ids(self, tag: str | None = None) -> list:
        return [r["i"] for _, _, recs in self.scan().values() for r in recs if tag is None or r["tag"] == tag]

    def wait_for(self, want, what: str, timeout: float = 30.0, tag: str | None = None):
        """Waits until every id in `want` has been delivered."""
        want = set(want)
        return wait_until(lambda: want <= set(self.ids(tag)) or None, what, timeout, self.d)

    def settle(self, quiet: float = 3.0, timeout: float = 60.0) -> None:
        """Waits until no new object appeared for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        seen, since = len(self.scan()), time.monotonic()
        while time.monotonic() - since < quiet:
            assert time.monotonic() < deadline, "objects kept appearing"
            time.sleep(0.1)
            n = len(self.scan())
            if n != seen:
                seen, since = n, time.monotonic()

    def fresh(self) -> "Delivered":
        """A reader that reads every object again from disk."""
        return Delivered(self.d, self.bucket, self.stream)


def assert_delivered_once_in_order(objects, expected: dict[int, bytes], required=None, shard_of=None) -> None:
    """Every record of `required` (default: all of `expected`) in exactly one object, nothing
    twice, nothing unknown; each object's body byte for byte the records it holds; and per shard
    (`shard_of`: id -> shard; default one shard) the objects hold runs of the put order that do
    not interleave."""
    required = set(expected) if required is None else set(required)
    seen: dict[int, str] = {}
    runs: dict[str, list[list[int]]] = {}
    for o, body, recs in objects.values():
        ids = [r["i"] for r in recs]
        assert recs, f"{o.key} is empty"
        for i in ids:
            assert i in expected, f"{o.key} holds record {i}, which was never put"
            assert i not in seen, f"record {i} is in {seen[i]} and in {o.key}"
            seen[i] = o.key
        assert body == b"".join(expected[i] for i in ids), f"{o.key} is not its records byte for byte"
        by_shard: dict[str, list[int]] = {}
        for i in ids:
            by_shard.setdefault(shard_of(i) if shard_of else "-", []).append(i)
        for s, run in by_shard.items():
            assert run == sorted(run), f"{o.key}: shard {s}'s records out of put order"
            runs.setdefault(s, []).append(run)
    missing = sorted(required - set(seen))
    assert not missing, f"{len(missing)} records never delivered, e.g. {missing[:10]}"
    for s, rs in runs.items():
        rs.sort(key=lambda r: r[0])
        flat = [i for r in rs for i in r]
        assert flat == sorted(flat), f"shard {s}: objects interleave records"


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def firehose(endpoint):
    return firehose_client(endpoint)


@pytest.fixture(scope="module")
def firehose_unvalidated(endpoint):
    return firehose_client(endpoint, validate=False)


@pytest.fixture(scope="module")
def delivery_daemon(tmp_path_factory):
    """A daemon whose delivery streams flush at least every second."""
    d = Daemon(tmp_path_factory.mktemp("sluice-delivery"), config=delivery_config())
    d.start()
    yield d
    rc = d.stop()
    assert rc == 0, f"sluice exited with {rc} on SIGTERM; log:\n{d.log_tail()}"


@pytest.fixture
def make_ds(firehose):
    """make_ds(**create_ds args) on the shared daemon; deleted after the test."""
    made = []

    def _make(client=None, **kw):
        c = client or firehose
        name, bucket = create_ds(c, **kw)
        made.append((c, name))
        return name, bucket

    yield _make
    for c, n in made:
        try:
            c.delete_delivery_stream(DeliveryStreamName=n)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException":
                raise


def expect_error(code: str, fn, *args, message: str | None = None, contains: str | None = None, **kw) -> str:
    with pytest.raises(ClientError) as ei:
        fn(*args, **kw)
    assert error_code(ei) == code, ei.value.response
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, ei.value.response
    msg = ei.value.response["Error"]["Message"]
    if message is not None:
        assert msg == message
    if contains is not None:
        assert contains in msg, msg
    return msg


# =============================================================================================
# 1. The API


def test_create_and_describe_direct_put_with_aws_defaults(firehose, make_ds):
    before = datetime.now(timezone.utc) - timedelta(seconds=2)
    name, bucket = make_ds()
    d = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    acct = d["DeliveryStreamARN"].split(":")[4]
    assert re.fullmatch(r"[0-9]{12}", acct), d["DeliveryStreamARN"]
    assert d["DeliveryStreamARN"] == f"arn:aws:firehose:us-east-1:{acct}:deliverystream/{name}"
    assert d["DeliveryStreamName"] == name
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    assert d["DeliveryStreamType"] == "DirectPut"
    assert d["VersionId"] == "1"
    assert d["HasMoreDestinations"] is False
    assert before <= d["CreateTimestamp"] <= datetime.now(timezone.utc) + timedelta(seconds=2)
    assert "Source" not in d
    [dest] = d["Destinations"]
    assert dest["DestinationId"] == DESTINATION_ID
    ext = dest["ExtendedS3DestinationDescription"]
    assert ext["RoleARN"] == ROLE
    assert ext["BucketARN"] == f"arn:aws:s3:::{bucket}"
    assert ext["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 300}
    assert ext["CompressionFormat"] == "UNCOMPRESSED"
    assert ext["EncryptionConfiguration"] == {"NoEncryptionConfig": "NoEncryption"}
    assert ext["CloudWatchLoggingOptions"]["Enabled"] is False
    assert ext["S3BackupMode"] == "Disabled"
    plain = dest["S3DestinationDescription"]
    for m in ("RoleARN", "BucketARN", "BufferingHints", "CompressionFormat", "EncryptionConfiguration"):
        assert plain[m] == ext[m], m
    assert "S3BackupMode" not in plain


def test_create_with_every_s3_member_is_described_as_given(firehose, make_ds):
    name, bucket = make_ds(
        Prefix="p/!{timestamp:yyyy}/",
        ErrorOutputPrefix="e/!{firehose:error-output-type}/",
        BufferingHints={"SizeInMBs": 7, "IntervalInSeconds": 61},
        CompressionFormat="GZIP",
        EncryptionConfiguration={"KMSEncryptionConfig": {"AWSKMSKeyARN": "arn:aws:kms:us-east-1:123456789012:key/k"}},
        CloudWatchLoggingOptions={"Enabled": True, "LogGroupName": "g", "LogStreamName": "s"},
        ProcessingConfiguration={"Enabled": False},
        FileExtension=".json.gz",
    )
    ext = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["Destinations"][0][
        "ExtendedS3DestinationDescription"
    ]
    assert ext["Prefix"] == "p/!{timestamp:yyyy}/"
    assert ext["ErrorOutputPrefix"] == "e/!{firehose:error-output-type}/"
    assert ext["BufferingHints"] == {"SizeInMBs": 7, "IntervalInSeconds": 61}
    assert ext["CompressionFormat"] == "GZIP"
    assert ext["EncryptionConfiguration"] == {
        "KMSEncryptionConfig": {"AWSKMSKeyARN": "arn:aws:kms:us-east-1:123456789012:key/k"}
    }
    assert ext["CloudWatchLoggingOptions"] == {"Enabled": True, "LogGroupName": "g", "LogStreamName": "s"}
    assert ext["ProcessingConfiguration"]["Enabled"] is False
    assert ext["FileExtension"] == ".json.gz"


def test_create_with_plain_s3_destination(firehose):
    name, bucket = unique_name("fh-s3"), unique_bucket()
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        S3DestinationConfiguration=s3_destination(
            bucket, Prefix="plain/", BufferingHints={"SizeInMBs": 2, "IntervalInSeconds": 120}
        ),
    )
    try:
        d = wait_ds_active(firehose, name)
        plain = d["Destinations"][0]["S3DestinationDescription"]
        assert plain["BucketARN"] == f"arn:aws:s3:::{bucket}"
        assert plain["Prefix"] == "plain/"
        assert plain["BufferingHints"] == {"SizeInMBs": 2, "IntervalInSeconds": 120}
        assert plain["CompressionFormat"] == "UNCOMPRESSED"
        assert plain["EncryptionConfiguration"] == {"NoEncryptionConfig": "NoEncryption"}
    finally:
        firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_kinesis_source_is_described_and_refuses_puts(firehose, kinesis, make_stream, make_ds):
    stream = make_stream(shard_count=1)
    before = datetime.now(timezone.utc) - timedelta(seconds=2)
    name, _ = make_ds(source_stream=stream)
    d = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert d["DeliveryStreamType"] == "KinesisStreamAsSource"
    src = d["Source"]["KinesisStreamSourceDescription"]
    assert src["KinesisStreamARN"] == kinesis_arn(stream)
    assert src["RoleARN"] == ROLE
    assert before <= src["DeliveryStartTimestamp"] <= datetime.now(timezone.utc) + timedelta(seconds=2)
    msg = "This operation is not permitted on KinesisStreamAsSource delivery stream type."
    expect_error(
        "InvalidArgumentException", firehose.put_record, DeliveryStreamName=name, Record={"Data": b"x"}, message=msg
    )
    expect_error(
        "InvalidArgumentException",
        firehose.put_record_batch,
        DeliveryStreamName=name,
        Records=[{"Data": b"x"}],
        message=msg,
    )


def test_source_configuration_must_match_the_type(firehose):
    dest = s3_destination(unique_bucket())
    expect_error(
        "InvalidArgumentException",
        firehose.create_delivery_stream,
        DeliveryStreamName=unique_name("fh"),
        DeliveryStreamType="KinesisStreamAsSource",
        ExtendedS3DestinationConfiguration=dest,
    )
    expect_error(
        "InvalidArgumentException",
        firehose.create_delivery_stream,
        DeliveryStreamName=unique_name("fh"),
        DeliveryStreamType="DirectPut",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": kinesis_arn("s"), "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=dest,
    )
    for t in ("MSKAsSource", "DatabaseAsSource"):
        expect_error(
            "InvalidArgumentException",
            firehose.create_delivery_stream,
            DeliveryStreamName=unique_name("fh"),
            DeliveryStreamType=t,
            ExtendedS3DestinationConfiguration=dest,
            contains=t,
        )
    expect_error("InvalidArgumentException", firehose.create_delivery_stream, DeliveryStreamName=unique_name("fh"))
    expect_error(
        "InvalidArgumentException",
        firehose.create_delivery_stream,
        DeliveryStreamName=unique_name("fh"),
        ExtendedS3DestinationConfiguration=dest,
        S3DestinationConfiguration=dest,
    )


def test_duplicate_create_is_resource_in_use(firehose, make_ds):
    name, bucket = make_ds()
    acct = account_of(firehose, name)
    expect_error(
        "ResourceInUseException",
        firehose.create_delivery_stream,
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_destination(bucket),
        message=f"Firehose {name} under accountId {acct} already exists",
    )


UNKNOWN_CALLS = {
    "describe_delivery_stream": {},
    "delete_delivery_stream": {},
    "put_record": {"Record": {"Data": b"x"}},
    "put_record_batch": {"Records": [{"Data": b"x"}]},
    "update_destination": {
        "CurrentDeliveryStreamVersionId": "1",
        "DestinationId": DESTINATION_ID,
        "ExtendedS3DestinationUpdate": {"Prefix": "x/"},
    },
    "tag_delivery_stream": {"Tags": [{"Key": "k", "Value": "v"}]},
    "untag_delivery_stream": {"TagKeys": ["k"]},
    "list_tags_for_delivery_stream": {},
    "start_delivery_stream_encryption": {},
    "stop_delivery_stream_encryption": {},
}


@pytest.mark.parametrize("op", sorted(UNKNOWN_CALLS))
def test_unknown_delivery_stream_is_not_found(firehose, make_ds, op):
    known, _ = make_ds()
    acct = account_of(firehose, known)
    name = unique_name("missing")
    expect_error(
        "ResourceNotFoundException",
        getattr(firehose, op),
        DeliveryStreamName=name,
        **UNKNOWN_CALLS[op],
        message=f"Firehose {name} under account {acct} not found.",
    )


S3 = {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::unsupported-dest"}
UNSUPPORTED = {
    "RedshiftDestinationConfiguration": {
        "RoleARN": ROLE,
        "ClusterJDBCURL": "jdbc:redshift://c1.abc.us-east-1.redshift.amazonaws.com:5439/dev",
        "CopyCommand": {"DataTableName": "t"},
        "Username": "u",
        "Password": "password1",
        "S3Configuration": S3,
    },
    "ElasticsearchDestinationConfiguration": {
        "RoleARN": ROLE,
        "IndexName": "i",
        "DomainARN": "arn:aws:es:us-east-1:123456789012:domain/logs",
        "S3Configuration": S3,
    },
    "AmazonopensearchserviceDestinationConfiguration": {
        "RoleARN": ROLE,
        "IndexName": "i",
        "DomainARN": "arn:aws:es:us-east-1:123456789012:domain/logs",
        "S3Configuration": S3,
    },
    "SplunkDestinationConfiguration": {
        "HECEndpoint": "https://splunk",
        "HECEndpointType": "Raw",
        "HECToken": "t",
        "S3Configuration": S3,
    },
    "AmazonOpenSearchServerlessDestinationConfiguration": {
        "RoleARN": ROLE,
        "IndexName": "i",
        "CollectionEndpoint": "https://c",
        "S3Configuration": S3,
    },
    "SnowflakeDestinationConfiguration": {
        "AccountUrl": "a.snowflakecomputing.com",
        "Database": "d",
        "Schema": "s",
        "Table": "t",
        "RoleARN": ROLE,
        "User": "u",
        "PrivateKey": "k" * 300,
        "S3Configuration": S3,
    },
    "IcebergDestinationConfiguration": {
        "RoleARN": ROLE,
        "CatalogConfiguration": {"CatalogARN": "arn:aws:glue:us-east-1:123456789012:catalog"},
        "S3Configuration": S3,
    },
}


@pytest.mark.parametrize("member", sorted(UNSUPPORTED))
def test_unsupported_destinations_are_refused(firehose_unvalidated, member):
    name = unique_name("fh")
    expect_error(
        "InvalidArgumentException",
        firehose_unvalidated.create_delivery_stream,
        DeliveryStreamName=name,
        **{member: UNSUPPORTED[member]},
        contains=member,
    )
    msg = expect_error(
        "InvalidArgumentException",
        firehose_unvalidated.create_delivery_stream,
        DeliveryStreamName=name,
        **{member: UNSUPPORTED[member]},
    )
    assert "not supported by this daemon yet" in msg, msg
    expect_error("ResourceNotFoundException", firehose_unvalidated.describe_delivery_stream, DeliveryStreamName=name)


@pytest.mark.parametrize(
    "extra,member",
    [
        # Dynamic partitioning needs partition keys in the Prefix.
        ({"DynamicPartitioningConfiguration": {"Enabled": True}}, "partitionKeyFrom"),
        (
            {
                "DataFormatConversionConfiguration": {
                    "Enabled": True,
                    "SchemaConfiguration": {"DatabaseName": "d", "TableName": "t", "RoleARN": ROLE},
                    "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
                    "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
                }
            },
            "DataFormatConversionConfiguration",
        ),
        ({"S3BackupMode": "Enabled"}, "S3BackupConfiguration is required"),
        (
            {
                "S3BackupMode": "Enabled",
                "S3BackupConfiguration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::Not_A_Bucket"},
            },
            "S3BackupConfiguration: BucketARN",
        ),
    ],
    ids=["dynamic-partitioning-without-keys", "format-conversion", "s3-backup-without-config", "s3-backup-bad-bucket"],
)
def test_unsupported_s3_features_are_refused(firehose, extra, member):
    name = unique_name("fh")
    expect_error(
        "InvalidArgumentException",
        firehose.create_delivery_stream,
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_destination(unique_bucket(), **extra),
        contains=member,
    )
    expect_error("ResourceNotFoundException", firehose.describe_delivery_stream, DeliveryStreamName=name)


def test_prefix_rules(firehose, make_ds):
    def refused(**dest):
        return expect_error(
            "InvalidArgumentException",
            firehose.create_delivery_stream,
            DeliveryStreamName=unique_name("fh"),
            ExtendedS3DestinationConfiguration=s3_destination(unique_bucket(), **dest),
        )

    msg = refused(Prefix="a/!{timestamp:yyyy}/")
    assert "ErrorOutputPrefix" in msg, msg
    refused(Prefix="a/!{timestamp:yyyy}/", ErrorOutputPrefix="")
    refused(Prefix="a/!{nope:x}/", ErrorOutputPrefix="e/")
    refused(Prefix="a/!{timestamp:yyyy", ErrorOutputPrefix="e/")
    refused(Prefix="a/!{firehose:nope}/", ErrorOutputPrefix="e/")
    refused(Prefix="a/!{firehose:error-output-type}/", ErrorOutputPrefix="e/")
    refused(Prefix="a/!{timestamp:yyyy}/", ErrorOutputPrefix="e/!{timestamp:yyyy}/")
    # Accepted: expressions with an ErrorOutputPrefix, and literal prefixes without one.
    make_ds(Prefix="a/!{timestamp:yyyy}/!{firehose:random-string}/", ErrorOutputPrefix="e/")
    make_ds(Prefix="literal/")


def test_bucket_arn_must_name_a_valid_bucket(firehose):
    for bucket in ("UPPER-case", "ab", "-leading", "trailing-"):
        expect_error(
            "InvalidArgumentException",
            firehose.create_delivery_stream,
            DeliveryStreamName=unique_name("fh"),
            ExtendedS3DestinationConfiguration=s3_destination(bucket),
        )


V = "1 validation error detected: "


@pytest.mark.parametrize(
    "name,message",
    [
        (
            "bad name!",
            V + "Value 'bad name!' at 'deliveryStreamName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ),
        (
            "a" * 65,
            V + f"Value '{'a' * 65}' at 'deliveryStreamName' failed to satisfy constraint: "
            "Member must have length less than or equal to 64",
        ),
    ],
    ids=["pattern", "length"],
)
def test_bad_names_are_validation_errors(firehose_unvalidated, name, message):
    expect_error(
        "ValidationException", firehose_unvalidated.describe_delivery_stream, DeliveryStreamName=name, message=message
    )
    expect_error(
        "ValidationException",
        firehose_unvalidated.create_delivery_stream,
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_destination(unique_bucket()),
        message=message,
    )


@pytest.mark.parametrize(
    "dest,message",
    [
        (
            {"RoleARN": "nope"},
            "Value 'nope' at 'extendedS3DestinationConfiguration.roleARN' failed to satisfy constraint: "
            r"Member must satisfy regular expression pattern: arn:.*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+",
        ),
        (
            {"BufferingHints": {"SizeInMBs": 0}},
            "Value '0' at 'extendedS3DestinationConfiguration.bufferingHints.sizeInMBs' "
            "failed to satisfy constraint: Member must have value greater than or equal to 1",
        ),
        (
            {"BufferingHints": {"SizeInMBs": 129}},
            "Value '129' at 'extendedS3DestinationConfiguration.bufferingHints.sizeInMBs' "
            "failed to satisfy constraint: Member must have value less than or equal to 128",
        ),
        (
            {"BufferingHints": {"IntervalInSeconds": 901}},
            "Value '901' at "
            "'extendedS3DestinationConfiguration.bufferingHints.intervalInSeconds' failed to satisfy constraint: "
            "Member must have value less than or equal to 900",
        ),
        (
            {"CompressionFormat": "SNAPPY"},
            "Value 'SNAPPY' at 'extendedS3DestinationConfiguration.compressionFormat' failed "
            "to satisfy constraint: Member must satisfy enum value set: [UNCOMPRESSED, GZIP, ZIP, Snappy, HADOOP_SNAPPY]",
        ),
    ],
    ids=["role-arn", "size-0", "size-129", "interval-901", "compression-enum"],
)
def test_destination_validation_errors(firehose_unvalidated, dest, message):
    name = unique_name("fh")
    expect_error(
        "ValidationException",
        firehose_unvalidated.create_delivery_stream,
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_destination(unique_bucket()) | dest,
        message=V + message,
    )
    expect_error("ResourceNotFoundException", firehose_unvalidated.describe_delivery_stream, DeliveryStreamName=name)


def test_request_validation_errors(firehose_unvalidated):
    c = firehose_unvalidated
    expect_error(
        "ValidationException",
        c.create_delivery_stream,
        DeliveryStreamName=unique_name("fh"),
        DeliveryStreamType="Nope",
        ExtendedS3DestinationConfiguration=s3_destination(unique_bucket()),
        message=V + "Value 'Nope' at 'deliveryStreamType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [DirectPut, KinesisStreamAsSource, MSKAsSource, DatabaseAsSource]",
    )
    expect_error(
        "ValidationException",
        c.create_delivery_stream,
        DeliveryStreamName=unique_name("fh"),
        S3DestinationConfiguration={"RoleARN": ROLE},
        message=V
        + "Value null at 's3DestinationConfiguration.bucketARN' failed to satisfy constraint: Member must not be null",
    )
    expect_error(
        "ValidationException",
        c.list_delivery_streams,
        Limit=0,
        message=V
        + "Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
    )


def test_put_record_and_batch(firehose, firehose_unvalidated, make_ds):
    name, _ = make_ds()
    r = firehose.put_record(DeliveryStreamName=name, Record={"Data": b"one"})
    assert r["RecordId"] and r["Encrypted"] is False
    r = firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"r%d" % i} for i in range(500)])
    assert r["FailedPutCount"] == 0 and r["Encrypted"] is False
    assert len(r["RequestResponses"]) == 500
    ids = [x["RecordId"] for x in r["RequestResponses"]]
    assert all(ids) and len(set(ids)) == 500
    assert not any("ErrorCode" in x for x in r["RequestResponses"])
    # An empty record is a record.
    assert firehose.put_record(DeliveryStreamName=name, Record={"Data": b""})["RecordId"]

    c = firehose_unvalidated
    msg = expect_error(
        "ValidationException", c.put_record_batch, DeliveryStreamName=name, Records=[{"Data": b"x"}] * 501
    )
    assert msg.startswith(V + "Value '[") and msg.endswith(
        "]' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500"
    ), msg[-200:]
    expect_error(
        "ValidationException",
        c.put_record_batch,
        DeliveryStreamName=name,
        Records=[],
        message=V
        + "Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1",
    )
    expect_error(
        "ValidationException",
        c.put_record_batch,
        DeliveryStreamName=name,
        Records=[{"Data": b"ok"}, {"Data": b"y" * 1024001}],
        message=V + "Value 'java.nio.HeapByteBuffer[pos=0 lim=1024001 cap=1024001]' at 'records.2.member.data' "
        "failed to satisfy constraint: Member must have length less than or equal to 1024000",
    )
    expect_error(
        "ValidationException",
        c.put_record,
        DeliveryStreamName=name,
        Record={"Data": b"y" * 1024001},
        message=V + "Value 'java.nio.HeapByteBuffer[pos=0 lim=1024001 cap=1024001]' at 'record.data' "
        "failed to satisfy constraint: Member must have length less than or equal to 1024000",
    )
    expect_error(
        "ValidationException",
        c.put_record,
        DeliveryStreamName=name,
        Record={},
        message=V + "Value null at 'record.data' failed to satisfy constraint: Member must not be null",
    )
    # 1,000 KiB records are allowed one by one, but a batch holds at most 4 MiB.
    assert firehose.put_record(DeliveryStreamName=name, Record={"Data": b"z" * 1024000})["RecordId"]
    expect_error(
        "InvalidArgumentException",
        firehose.put_record_batch,
        DeliveryStreamName=name,
        Records=[{"Data": b"z" * 1024000}] * 5,
    )


def test_tags(firehose, firehose_unvalidated, make_ds):
    name, _ = make_ds()
    firehose.tag_delivery_stream(
        DeliveryStreamName=name, Tags=[{"Key": f"k{i:02d}", "Value": f"v{i}"} for i in range(10)]
    )
    r = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name)
    assert r["Tags"] == [{"Key": f"k{i:02d}", "Value": f"v{i}"} for i in range(10)]
    assert r["HasMoreTags"] is False
    # Paging: Limit, ExclusiveStartTagKey, HasMoreTags.
    r = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name, Limit=4)
    assert [t["Key"] for t in r["Tags"]] == ["k00", "k01", "k02", "k03"] and r["HasMoreTags"] is True
    r = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name, Limit=4, ExclusiveStartTagKey="k03")
    assert [t["Key"] for t in r["Tags"]] == ["k04", "k05", "k06", "k07"] and r["HasMoreTags"] is True
    r = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name, Limit=4, ExclusiveStartTagKey="k07")
    assert [t["Key"] for t in r["Tags"]] == ["k08", "k09"] and r["HasMoreTags"] is False
    r = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name, ExclusiveStartTagKey="k09")
    assert r["Tags"] == [] and r["HasMoreTags"] is False
    # Tagging a key again replaces its value; untagging removes (an absent key is no error).
    firehose.tag_delivery_stream(
        DeliveryStreamName=name, Tags=[{"Key": "k00", "Value": "new"}, {"Key": "empty", "Value": ""}]
    )
    firehose.untag_delivery_stream(DeliveryStreamName=name, TagKeys=["k01", "k02", "never-there"])
    tags = {t["Key"]: t["Value"] for t in firehose.list_tags_for_delivery_stream(DeliveryStreamName=name)["Tags"]}
    assert tags == {"k00": "new", "empty": "", **{f"k{i:02d}": f"v{i}" for i in range(3, 10)}}
    # Reserved keys are refused.
    with pytest.raises(ClientError) as ei:
        firehose_unvalidated.tag_delivery_stream(DeliveryStreamName=name, Tags=[{"Key": "aws:x", "Value": "v"}])
    assert error_code(ei) in ("InvalidArgumentException", "ValidationException"), ei.value.response
    assert "aws:x" not in {t["Key"] for t in firehose.list_tags_for_delivery_stream(DeliveryStreamName=name)["Tags"]}
    # At most 50 tags: 9 + 42 is over (and nothing of the refused request is kept), 9 + 41 is not.
    expect_error(
        "LimitExceededException",
        firehose.tag_delivery_stream,
        DeliveryStreamName=name,
        Tags=[{"Key": f"more{i}", "Value": "v"} for i in range(42)],
    )
    assert len(firehose.list_tags_for_delivery_stream(DeliveryStreamName=name)["Tags"]) == 9
    firehose.tag_delivery_stream(DeliveryStreamName=name, Tags=[{"Key": f"more{i}", "Value": "v"} for i in range(41)])
    assert len(firehose.list_tags_for_delivery_stream(DeliveryStreamName=name)["Tags"]) == 50
    # The model's limits, from the server.
    c = firehose_unvalidated
    expect_error(
        "ValidationException",
        c.tag_delivery_stream,
        DeliveryStreamName=name,
        Tags=[],
        message=V
        + "Value '[]' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1",
    )
    msg = expect_error(
        "ValidationException", c.untag_delivery_stream, DeliveryStreamName=name, TagKeys=[f"k{i}" for i in range(51)]
    )
    assert msg.endswith(
        "at 'tagKeys' failed to satisfy constraint: Member must have length less than or equal to 50"
    ), msg
    expect_error(
        "ValidationException",
        c.list_tags_for_delivery_stream,
        DeliveryStreamName=name,
        Limit=51,
        message=V
        + "Value '51' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 50",
    )
    # Tags given at creation.
    name2, _ = make_ds()
    name3 = unique_name("fh-tagged")
    firehose.create_delivery_stream(
        DeliveryStreamName=name3,
        ExtendedS3DestinationConfiguration=s3_destination(unique_bucket()),
        Tags=[{"Key": "team", "Value": "data"}, {"Key": "env", "Value": "test"}],
    )
    try:
        wait_ds_active(firehose, name3)
        assert firehose.list_tags_for_delivery_stream(DeliveryStreamName=name3)["Tags"] == [
            {"Key": "env", "Value": "test"},
            {"Key": "team", "Value": "data"},
        ]
        assert firehose.list_tags_for_delivery_stream(DeliveryStreamName=name2)["Tags"] == []
    finally:
        firehose.delete_delivery_stream(DeliveryStreamName=name3)


def test_encryption_settings(firehose, kinesis, make_stream, make_ds):
    name, _ = make_ds()
    firehose.start_delivery_stream_encryption(DeliveryStreamName=name)
    enc = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
        "DeliveryStreamEncryptionConfiguration"
    ]
    assert enc["Status"] == "ENABLED" and enc["KeyType"] == "AWS_OWNED_CMK"
    firehose.stop_delivery_stream_encryption(DeliveryStreamName=name)
    enc = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
        "DeliveryStreamEncryptionConfiguration"
    ]
    assert enc["Status"] == "DISABLED"
    key = "arn:aws:kms:us-east-1:123456789012:key/abc"
    firehose.start_delivery_stream_encryption(
        DeliveryStreamName=name,
        DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": key},
    )
    enc = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
        "DeliveryStreamEncryptionConfiguration"
    ]
    assert enc == {"KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": key, "Status": "ENABLED"}
    # Encryption given at creation.
    name2 = unique_name("fh-enc")
    firehose.create_delivery_stream(
        DeliveryStreamName=name2,
        ExtendedS3DestinationConfiguration=s3_destination(unique_bucket()),
        DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"},
    )
    try:
        d = wait_ds_active(firehose, name2)
        assert d["DeliveryStreamEncryptionConfiguration"]["Status"] == "ENABLED"
        assert d["DeliveryStreamEncryptionConfiguration"]["KeyType"] == "AWS_OWNED_CMK"
    finally:
        firehose.delete_delivery_stream(DeliveryStreamName=name2)
    # Only DirectPut streams are encrypted.
    stream = make_stream(shard_count=1)
    source, _ = make_ds(source_stream=stream)
    expect_error("InvalidArgumentException", firehose.start_delivery_stream_encryption, DeliveryStreamName=source)
    expect_error("InvalidArgumentException", firehose.stop_delivery_stream_encryption, DeliveryStreamName=source)
    d = firehose.describe_delivery_stream(DeliveryStreamName=source)["DeliveryStreamDescription"]
    assert d.get("DeliveryStreamEncryptionConfiguration", {}).get("Status") != "ENABLED", d


def test_customer_managed_key_needs_a_key_arn(firehose, make_ds):
    # AWS: "If you set KeyType to CUSTOMER_MANAGED_CMK, you must specify the Amazon Resource
    # Name (ARN) of the CMK."
    name, _ = make_ds()
    expect_error(
        "InvalidArgumentException",
        firehose.start_delivery_stream_encryption,
        DeliveryStreamName=name,
        DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK"},
    )
    d = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert d.get("DeliveryStreamEncryptionConfiguration", {}).get("Status") != "ENABLED"


def test_update_destination(firehose, firehose_unvalidated, make_ds):
    name, bucket = make_ds(BufferingHints={"SizeInMBs": 8, "IntervalInSeconds": 120})
    created = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    expect_error(
        "ConcurrentModificationException",
        firehose.update_destination,
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId="2",
        DestinationId=DESTINATION_ID,
        ExtendedS3DestinationUpdate={"Prefix": "x/"},
        message=f"Cannot update firehose: {name} since the current version id: 1 and specified version id: 2 do not match",
    )
    expect_error(
        "InvalidArgumentException",
        firehose.update_destination,
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId="1",
        DestinationId="destinationId-000000000002",
        ExtendedS3DestinationUpdate={"Prefix": "x/"},
    )
    expect_error(
        "ValidationException",
        firehose_unvalidated.update_destination,
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId="abc",
        DestinationId=DESTINATION_ID,
        ExtendedS3DestinationUpdate={},
        message=V + "Value 'abc' at 'currentDeliveryStreamVersionId' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [0-9]+",
    )
    # A refused update (expressions without an error prefix) leaves the stream as it was.
    expect_error(
        "InvalidArgumentException",
        firehose.update_destination,
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId="1",
        DestinationId=DESTINATION_ID,
        ExtendedS3DestinationUpdate={"Prefix": "x/!{timestamp:yyyy}/"},
    )
    assert firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["VersionId"] == "1"

    firehose.update_destination(
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId="1",
        DestinationId=DESTINATION_ID,
        ExtendedS3DestinationUpdate={
            "Prefix": "new/",
            "CompressionFormat": "GZIP",
            "BufferingHints": {"IntervalInSeconds": 60},
        },
    )
    d = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert d["VersionId"] == "2"
    assert d["LastUpdateTimestamp"] >= created["LastUpdateTimestamp"]
    assert d["CreateTimestamp"] == created["CreateTimestamp"]
    ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["Prefix"] == "new/"
    assert ext["CompressionFormat"] == "GZIP"
    assert ext["BufferingHints"] == {"SizeInMBs": 8, "IntervalInSeconds": 60}, "members not given are kept"
    assert ext["BucketARN"] == f"arn:aws:s3:::{bucket}"
    # The old version id is stale now; the plain S3 update works on version 2.
    expect_error(
        "ConcurrentModificationException",
        firehose.update_destination,
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId="1",
        DestinationId=DESTINATION_ID,
        ExtendedS3DestinationUpdate={"Prefix": "again/"},
    )
    firehose.update_destination(
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId="2",
        DestinationId=DESTINATION_ID,
        S3DestinationUpdate={"Prefix": "plain/"},
    )
    d = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert d["VersionId"] == "3"
    assert d["Destinations"][0]["S3DestinationDescription"]["Prefix"] == "plain/"
    assert d["Destinations"][0]["S3DestinationDescription"]["CompressionFormat"] == "GZIP"


def test_list_delivery_streams(new_daemon):
    d = new_daemon()
    fh = firehose_client(d.endpoint)
    kinesis = make_client(d.endpoint)
    r = fh.list_delivery_streams()
    assert r["DeliveryStreamNames"] == [] and r["HasMoreDeliveryStreams"] is False
    direct = [f"direct-{i}" for i in range(5)]
    for n in direct:
        create_ds(fh, name=n)
    stream = create_stream(kinesis, unique_name("src"), shard_count=1)
    sources = ["source-a", "source-b"]
    for n in sources:
        create_ds(fh, name=n, source_stream=stream)
    everything = sorted(direct + sources)

    r = fh.list_delivery_streams()
    assert r["DeliveryStreamNames"] == everything and r["HasMoreDeliveryStreams"] is False
    r = fh.list_delivery_streams(Limit=3)
    assert r["DeliveryStreamNames"] == everything[:3] and r["HasMoreDeliveryStreams"] is True
    r = fh.list_delivery_streams(Limit=3, ExclusiveStartDeliveryStreamName=everything[2])
    assert r["DeliveryStreamNames"] == everything[3:6] and r["HasMoreDeliveryStreams"] is True
    r = fh.list_delivery_streams(Limit=3, ExclusiveStartDeliveryStreamName=everything[5])
    assert r["DeliveryStreamNames"] == everything[6:] and r["HasMoreDeliveryStreams"] is False
    r = fh.list_delivery_streams(DeliveryStreamType="DirectPut")
    assert r["DeliveryStreamNames"] == direct and r["HasMoreDeliveryStreams"] is False
    r = fh.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource", Limit=1)
    assert r["DeliveryStreamNames"] == ["source-a"] and r["HasMoreDeliveryStreams"] is True
    r = fh.list_delivery_streams(
        DeliveryStreamType="KinesisStreamAsSource", ExclusiveStartDeliveryStreamName="source-a"
    )
    assert r["DeliveryStreamNames"] == ["source-b"] and r["HasMoreDeliveryStreams"] is False
    r = fh.list_delivery_streams(DeliveryStreamType="DirectPut", ExclusiveStartDeliveryStreamName="direct-3")
    assert r["DeliveryStreamNames"] == ["direct-4"]

    # The internal streams behind DirectPut streams are not Kinesis streams anyone sees.
    r = kinesis.list_streams()
    assert r["StreamNames"] == [stream], r["StreamNames"]
    assert [s["StreamName"] for s in r.get("StreamSummaries", [])] in ([], [stream])

    # Deleted streams leave the list.
    fh.delete_delivery_stream(DeliveryStreamName="direct-1")
    wait_until(
        lambda: "direct-1" not in fh.list_delivery_streams(Limit=100)["DeliveryStreamNames"],
        "direct-1 gone from the list",
    )
    assert fh.list_delivery_streams(Limit=100)["DeliveryStreamNames"] == [n for n in everything if n != "direct-1"]
    assert kinesis.list_streams()["StreamNames"] == [stream]


def test_internal_streams_stay_out_of_kinesis_list_streams(firehose, kinesis, make_ds):
    names = [make_ds()[0] for _ in range(3)]
    for n in names:
        firehose.put_record(DeliveryStreamName=n, Record={"Data": b"x"})
    listed, start = [], None
    while True:
        r = kinesis.list_streams(**({"ExclusiveStartStreamName": start} if start else {}))
        listed += r["StreamNames"]
        if not r["HasMoreStreams"]:
            break
        start = r["StreamNames"][-1]
    assert not [s for s in listed if "firehose" in s or any(n in s for n in names)], listed


def test_delete_delivery_stream(firehose, make_ds):
    name, _ = make_ds()
    acct = account_of(firehose, name)
    firehose.delete_delivery_stream(DeliveryStreamName=name)

    def gone():
        try:
            d = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        except ClientError as e:
            assert error_code_of(e) == "ResourceNotFoundException", e.response
            assert e.response["Error"]["Message"] == f"Firehose {name} under account {acct} not found."
            return True
        assert d["DeliveryStreamStatus"] == "DELETING", d
        return False

    wait_until(gone, f"{name} deleted")
    expect_error("ResourceNotFoundException", firehose.delete_delivery_stream, DeliveryStreamName=name)
    expect_error("ResourceNotFoundException", firehose.put_record, DeliveryStreamName=name, Record={"Data": b"x"})
    assert name not in firehose.list_delivery_streams(Limit=10000)["DeliveryStreamNames"]


def test_a_stream_creating_at_kill9_becomes_active_after_restart(new_daemon):
    """A delivery stream saved CREATING, its activation lost with the process: the restart
    finishes it, and it delivers."""
    d = new_daemon('[streams]\ncreate_delay = "3s"\ndelete_delay = "0ms"\n[delivery]\nbuffering_interval_cap = "1s"\n')
    fh = firehose_client(d.endpoint)
    name, bucket = unique_name("fh"), unique_bucket()
    fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=s3_destination(bucket))
    status = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamStatus"]
    assert status == "CREATING"
    d.kill9()
    d.start()
    wait_ds_active(fh, name, timeout=15)
    fh.put_record(DeliveryStreamName=name, Record={"Data": record("revived", 1)})
    delivered = Delivered(d, bucket, name)
    delivered.wait_for({1}, "the record put after the restart")


def error_code_of(e: ClientError) -> str:
    return e.response["Error"]["Code"]


# =============================================================================================
# 2. The seed's example, without its Lambda processor


def test_seed_kinesis_source_to_time_partitioned_prefix(new_daemon):
    d = new_daemon(delivery_config())
    kinesis = make_client(d.endpoint)
    firehose = firehose_client(d.endpoint)
    stream = unique_name("sensor-data-stream")
    kinesis.create_stream(StreamName=stream, ShardCount=4, StreamModeDetails={"StreamMode": "PROVISIONED"})
    wait_until(
        lambda: kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE",
        "stream ACTIVE",
    )

    # The seed's producer.
    def put_records(stream_name, records):
        response = kinesis.put_records(
            StreamName=stream_name,
            Records=[{"Data": json.dumps(r), "PartitionKey": r["sensor_id"]} for r in records],
        )
        if response["FailedRecordCount"] > 0:
            print(f"Failed: {response['FailedRecordCount']} records")
        return response

    def readings(start, count, tag):
        return [
            {
                "sensor_id": f"sensor-{i % 24:03d}",
                "temperature": round(15 + (i * 37 % 200) / 10, 1),
                "humidity": i * 13 % 100,
                "timestamp": datetime.now(timezone.utc).isoformat(),
                "tag": tag,
                "i": i,
            }
            for i in range(start, start + count)
        ]

    # Readings put before the delivery stream exists are not delivered: it reads the stream from
    # its creation on.
    early = readings(0, 50, "early")
    assert put_records(stream, early)["FailedRecordCount"] == 0
    time.sleep(0.05)

    bucket = unique_bucket("data-lake-raw")
    name = unique_name("sensor-data-firehose")
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": kinesis_arn(stream), "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE,
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "sensor-data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/",
            "ErrorOutputPrefix": "errors/",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 300},
            "CompressionFormat": "UNCOMPRESSED",
        },
    )
    wait_ds_active(firehose, name)

    first_day = datetime.now(timezone.utc)
    sent, acks = {}, {}
    batches = 12
    for b in range(batches):
        rs = readings(1000 + b * 100, 100, "reading")
        resp = put_records(stream, rs)
        assert resp["FailedRecordCount"] == 0
        for r, a in zip(rs, resp["Records"]):
            sent[r["i"]] = json.dumps(r).encode()
            acks[r["i"]] = (a["ShardId"], int(a["SequenceNumber"]), r["sensor_id"])
        if b % 4 == 3:
            time.sleep(1.2)  # objects of several buffers
    last_day = datetime.now(timezone.utc)
    assert len({s for s, _, _ in acks.values()}) == 4, "the readings span the 4 shards"

    delivered = Delivered(d, bucket, name)
    delivered.wait_for(sent, "every reading delivered", tag="reading")
    delivered.settle(quiet=2.5)
    objs = delivered.fresh().scan()
    assert len(objs) >= 2, sorted(objs)

    days = {f"sensor-data/year={t:%Y}/month={t:%m}/day={t:%d}/" for t in (first_day, last_day)}
    for o, _, _ in objs.values():
        assert o.prefix in days, o.key
        assert o.prefix == f"sensor-data/year={o.ts:%Y}/month={o.ts:%m}/day={o.ts:%d}/", "the prefix is the name's time"
        assert o.version == 1 and o.ext == ""
        assert first_day - timedelta(seconds=2) <= o.ts <= last_day + timedelta(seconds=2), o.key
    assert not (bucket_dir(d, bucket) / "errors").exists()

    # Every reading exactly once, byte-identical; none of the early ones.
    assert not [r for _, _, rs in objs.values() for r in rs if r["tag"] == "early"]
    shards = list_all_shards(kinesis, stream)
    for i, (shard, _, key) in acks.items():
        assert shard == shard_for_hash(shards, hash_key(key)), "routing by the MD5 of the partition key"
    # Put order is sequence-number order in each shard (one producer, one call at a time) ...
    for s in {a[0] for a in acks.values()}:
        mine = [i for i in acks if acks[i][0] == s]
        assert sorted(mine, key=lambda i: acks[i][1]) == sorted(mine)
    # ... and the objects keep it, per shard and so per sensor (partition key).
    assert_delivered_once_in_order(objs, sent, shard_of=lambda i: acks[i][0])
    assert_delivered_once_in_order(objs, sent, shard_of=lambda i: acks[i][2])


# =============================================================================================
# 3. DirectPut with each compression format


@pytest.mark.parametrize("fmt", FORMATS)
def test_direct_put_compression_formats(delivery_daemon, fmt):
    d = delivery_daemon
    fh = firehose_client(d.endpoint)
    fh_unvalidated = firehose_client(d.endpoint, validate=False)
    name, bucket = create_ds(fh, name=unique_name(f"fmt-{fmt.lower()}"), CompressionFormat=fmt)
    rng = random.Random(fmt)
    sent: dict[int, bytes] = {}
    i = 0
    # Batches of 1 to 500 records; sizes vary, one record larger than a snappy block of either
    # framing (32 KiB, 256 KiB), some empty.
    for n in (1, 500, 37, 3, 250, 120):
        batch = []
        for _ in range(n):
            pad = 300_000 if i == 700 else (0 if i % 97 == 0 else rng.randint(1, 2000))
            batch.append(record("fmt", i, pad, text="ünïcødé ✓ " * (i % 3), f=rng.random()))
            sent[i] = batch[-1]
            i += 1
        r = fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b} for b in batch])
        assert r["FailedPutCount"] == 0 and len(r["RequestResponses"]) == n
        if n == 37:
            # A batch with one record over 1,000 KiB is refused whole: none of it is delivered.
            bad = [record("refused", j, 10) for j in range(5)] + [b"x" * 1024001]
            expect_error(
                "ValidationException",
                fh_unvalidated.put_record_batch,
                DeliveryStreamName=name,
                Records=[{"Data": b} for b in bad],
            )
    r = fh.put_record(DeliveryStreamName=name, Record={"Data": record("fmt", i, 10)})
    sent[i] = record("fmt", i, 10)
    assert r["RecordId"]

    delivered = Delivered(d, bucket, name)
    delivered.wait_for(sent, f"every {fmt} record delivered")
    delivered.settle(quiet=2.5)
    objs = delivered.fresh().scan()
    for o, _, _ in objs.values():
        assert o.ext == EXTENSIONS[fmt], o.key
        assert o.version == 1
        raw = o.path.read_bytes()
        if fmt == "GZIP":
            assert raw[:2] == b"\x1f\x8b"
        elif fmt == "ZIP":
            assert zipfile.is_zipfile(o.path)
        elif fmt == "Snappy":
            assert raw[:8] == XERIAL_MAGIC
        elif fmt == "HADOOP_SNAPPY":
            assert raw[:8] != XERIAL_MAGIC
            assert o.body() == decode_hadoop_snappy(raw)
        if fmt in ("Snappy", "HADOOP_SNAPPY") and python_snappy is not None:
            # The pure-Python decoder agrees with python-snappy on every block.
            blocks = snappy_blocks(raw, fmt)
            assert all(snappy_raw_decompress_py(b) == python_snappy.uncompress(b) for b in blocks)
        if fmt != "UNCOMPRESSED":
            assert raw != o.body()
        # No prefix: yyyy/MM/dd/HH/ of the oldest record's arrival.
        assert o.prefix == f"{o.ts:%Y/%m/%d/%H}/", o.key
    assert_delivered_once_in_order(objs, sent)
    assert "refused" not in {r["tag"] for _, _, rs in objs.values() for r in rs}
    if fmt in ("Snappy", "HADOOP_SNAPPY"):
        big = [o for o, body, _ in objs.values() if len(body) > 300_000]
        assert big, "the 300 KB record's object"
        assert len(snappy_blocks(big[0].path.read_bytes(), fmt)) > 1, "several blocks"


def snappy_blocks(raw: bytes, fmt: str) -> list[bytes]:
    out = []
    if fmt == "Snappy":
        at = 16
        while at < len(raw):
            n = int.from_bytes(raw[at : at + 4], "big")
            out.append(raw[at + 4 : at + 4 + n])
            at += 4 + n
    else:
        at = 0
        while at < len(raw):
            n = int.from_bytes(raw[at + 4 : at + 8], "big")
            out.append(raw[at + 8 : at + 8 + n])
            at += 8 + n
    return out


def test_prefix_expressions_and_file_extension(delivery_daemon):
    d = delivery_daemon
    fh = firehose_client(d.endpoint)
    name, bucket = create_ds(
        fh,
        Prefix="logs/!{timestamp:yyyy-MM-dd}/r=!{firehose:random-string}/h=!{timestamp:HH}/",
        ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
        CompressionFormat="GZIP",
        FileExtension=".json.gz",
    )
    literal, bucket2 = create_ds(fh, Prefix="logs")
    sent = {i: record("px", i, 20) for i in range(50)}
    fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b} for b in sent.values()])
    fh.put_record_batch(DeliveryStreamName=literal, Records=[{"Data": b} for b in sent.values()])

    root = bucket_dir(d, bucket)

    def custom_objects():
        return [p for p in root.rglob("*.json.gz")] if root.exists() else []

    files = wait_until(lambda: custom_objects(), "an object with the custom extension", daemon=d)
    wait_until(
        lambda: sum(len(split_records(gzip.decompress(p.read_bytes()))) for p in custom_objects()) >= 50,
        "all records",
        daemon=d,
    )
    for p in custom_objects():
        key = p.relative_to(root).as_posix()
        m = re.fullmatch(
            rf"logs/(?P<day>[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})/r=(?P<r>[A-Za-z0-9]{{11}})/h=(?P<h>[0-9]{{2}})/"
            rf"{re.escape(name)}-1-(?P<ts>{TS})-{UUID}\.json\.gz",
            key,
        )
        assert m, key
        ts = datetime.strptime(m["ts"], "%Y-%m-%d-%H-%M-%S")
        assert m["day"] == f"{ts:%Y-%m-%d}" and m["h"] == f"{ts:%H}", "one instant for every expression"
    assert files
    literal_objs = Delivered(d, bucket2, literal)
    literal_objs.wait_for(sent, "literal prefix objects")
    for o, _, _ in literal_objs.scan().values():
        assert o.prefix == f"logs{o.ts:%Y/%m/%d/%H}/", o.key


# =============================================================================================
# 4. Size-based flushes


def test_size_based_flush(new_daemon):
    # The interval cap is long enough that the first objects can only be due to size.
    d = new_daemon(delivery_config("10s"))
    fh = firehose_client(d.endpoint)
    name, bucket = create_ds(fh, CompressionFormat="GZIP", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60})
    sent: dict[int, bytes] = {}
    batch_bytes, i = [], 0
    started = time.monotonic()
    while sum(len(b) for b in sent.values()) < int(2.5 * MiB):
        batch = []
        for _ in range(32):
            batch.append(record("size", i, 2000))
            sent[i] = batch[-1]
            i += 1
        assert fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b} for b in batch])["FailedPutCount"] == 0
        batch_bytes.append(sum(map(len, batch)))
    put_took = time.monotonic() - started

    delivered = Delivered(d, bucket, name)
    # Two objects come of size alone, long before the 10 s interval.
    wait_until(lambda: len(delivered.scan()) >= 2, "two size-based objects", timeout=30, daemon=d)
    delivered.wait_for(sent, "every record delivered", timeout=40)
    delivered.settle(quiet=2)
    objs = delivered.fresh().scan()
    assert len(objs) >= 3, [(o.key, len(b)) for o, b, _ in objs.values()]
    assert_delivered_once_in_order(objs, sent)
    last = max(sent)
    for o, body, rs in objs.values():
        raw = o.path.stat().st_size
        assert raw < len(body) / 5, "measured before compression: these records compress well"
        assert len(body) <= MiB + max(batch_bytes), f"{o.key}: {len(body)} bytes for a 1 MiB buffer"
        if rs[-1]["i"] != last and put_took < 8:
            assert len(body) >= MiB, f"{o.key}: {len(body)} bytes, flushed before the buffer was full"


# =============================================================================================
# 5. kill -9 during delivery


def test_acknowledged_records_survive_kill9_before_their_object(new_daemon):
    # Acknowledged means appended durably: records still in a buffer when the daemon dies are
    # delivered after the restart, once.
    d = new_daemon(delivery_config("2s"))
    fh = firehose_client(d.endpoint)
    name, bucket = create_ds(fh, CompressionFormat="ZIP")
    sent = {i: record("early-kill", i, i % 700) for i in range(400)}
    items = list(sent.values())
    for at in range(0, len(items), 100):
        r = fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b} for b in items[at : at + 100]])
        assert r["FailedPutCount"] == 0
    fh.put_record(DeliveryStreamName=name, Record={"Data": record("early-kill", 400, 5)})
    sent[400] = record("early-kill", 400, 5)
    d.kill9()
    d.start()
    delivered = Delivered(d, bucket, name)
    delivered.wait_for(sent, "records acknowledged before kill -9")
    delivered.settle(quiet=3)
    assert_delivered_once_in_order(delivered.fresh().scan(), sent)


class Writer(threading.Thread):
    """Puts batches of records until stopped, remembering what it sent (`sent`: id -> data) and
    which records were acknowledged (`acked`: id -> what the answer names for it). A put that
    fails on the daemon's side or on the connection is counted in `failures`, not acknowledged;
    any other error ends the writer and is surfaced as `error`."""

    BATCH_MAX = 60

    def __init__(self, endpoint: str, seed: int):
        super().__init__(daemon=True)
        self.endpoint, self.rng = endpoint, random.Random(seed)
        self.stop = threading.Event()
        self.sent: dict[int, bytes] = {}
        self.acked: dict[int, str] = {}
        self.failures = 0
        self.error: BaseException | None = None

    def client(self):
        raise NotImplementedError

    def record(self, i: int) -> bytes:
        """Record `i`'s data (drawn from `rng`)."""
        raise NotImplementedError

    def put(self, client, ids: list[int]) -> list[str | None]:
        """Puts the records `ids`; per record, what acknowledges it, or None."""
        raise NotImplementedError

    def run(self):
        try:
            client = self.client()
            i = 0
            while not self.stop.is_set():
                ids = []
                for _ in range(self.rng.randint(1, self.BATCH_MAX)):
                    self.sent[i] = self.record(i)
                    ids.append(i)
                    i += 1
                try:
                    answers = self.put(client, ids)
                except ClientError as e:
                    if e.response["ResponseMetadata"]["HTTPStatusCode"] < 500:
                        raise
                    self.failures += 1  # refused while starting up: not acknowledged
                    time.sleep(0.05)
                    continue
                except Exception:  # the daemon is down or went down mid-request
                    self.failures += 1
                    time.sleep(0.05)
                    continue
                assert len(answers) == len(ids)
                for j, ack in zip(ids, answers):
                    if ack:
                        self.acked[j] = ack
                time.sleep(0.003)
        except BaseException as e:  # surfaced by the test
            self.error = e


class DirectPutWriter(Writer):
    """PutRecordBatch into a DirectPut delivery stream; acknowledged by a RecordId."""

    BATCH_MAX = 80

    def __init__(self, endpoint: str, name: str, seed: int):
        super().__init__(endpoint, seed)
        self.name = name

    def client(self):
        return firehose_client(self.endpoint)

    def record(self, i: int) -> bytes:
        return record("crash", i, self.rng.randint(0, 1500))

    def put(self, client, ids: list[int]) -> list[str | None]:
        r = client.put_record_batch(DeliveryStreamName=self.name, Records=[{"Data": self.sent[i]} for i in ids])
        return [res.get("RecordId") for res in r["RequestResponses"]]


class KinesisWriter(Writer):
    """PutRecords into a Kinesis stream, over ten partition keys (`keys`: id -> key);
    acknowledged by the shard the record went to."""

    def __init__(self, endpoint: str, stream: str, seed: int):
        super().__init__(endpoint, seed)
        self.stream = stream
        self.keys: dict[int, str] = {}

    def client(self):
        return make_client(self.endpoint)

    def record(self, i: int) -> bytes:
        key = self.keys[i] = f"pk-{self.rng.randint(0, 9)}"
        return record("kcrash", i, self.rng.randint(0, 1500), key=key)

    def put(self, client, ids: list[int]) -> list[str | None]:
        records = [{"Data": self.sent[i], "PartitionKey": self.keys[i]} for i in ids]
        r = client.put_records(StreamName=self.stream, Records=records)
        return [res["ShardId"] if res.get("SequenceNumber") else None for res in r["Records"]]


def temp_files(d: Daemon, bucket: str) -> set[str]:
    out = set()
    for dirpath, _, files in os.walk(bucket_dir(d, bucket)):
        out.update(os.path.join(dirpath, f) for f in files if TEMP.fullmatch(f))
    return out


def crash_seed(default: int) -> int:
    """The crash harness's seed: `SLUICE_DELIVERY_CRASH_SEED`, else the test's own."""
    seed = int(os.environ.get("SLUICE_DELIVERY_CRASH_SEED", default))
    print(f"crash seed {seed} (replay with SLUICE_DELIVERY_CRASH_SEED={seed})")
    return seed


def crash_round_count(default: int) -> int:
    return int(os.environ.get("SLUICE_DELIVERY_CRASH_ROUNDS", default))


def crash_rounds(d: Daemon, bucket: str, rng: random.Random, rounds: int, check) -> int:
    """`kill -9` at random moments, restarting on the same data dir each time: every other
    round the moment an object's temporary file appears (an object planned, being written, not
    yet committed). Returns how many kills hit a write in progress."""
    hits = 0
    for n in range(rounds):
        time.sleep(rng.uniform(0.3, 1.5))
        check()
        if n % 2:
            before = temp_files(d, bucket)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not temp_files(d, bucket) - before:
                time.sleep(0.0005)
            hits += time.monotonic() < deadline
        d.kill9()
        time.sleep(rng.uniform(0.0, 0.2))
        d.start()
    return hits


def crash_while_writing(d: Daemon, bucket: str, writer, ready, seed: int, rounds: int) -> tuple[set, int]:
    """Starts `writer`, waits for `ready()`, runs the crash rounds, stops the writer; returns the
    acknowledged ids and the kills that hit a write in progress (checked: at least one, and
    some puts refused while the daemon was down)."""
    writer.start()
    try:
        wait_until(lambda: len(writer.acked) > 200 and ready(), "deliveries under way", daemon=d)
        hits = crash_rounds(
            d,
            bucket,
            random.Random(seed),
            crash_round_count(rounds),
            lambda: writer.error is None or pytest.fail(f"seed {seed}: {writer.error!r}"),
        )
        time.sleep(1.0)
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    assert writer.error is None, repr(writer.error)
    assert not writer.is_alive()
    acked = set(writer.acked)
    assert len(acked) > 1000 and writer.failures > 0, (len(acked), writer.failures)
    assert hits >= 1, f"seed {seed}: no kill landed while an object was being written"
    return acked, hits


def replays(d: Daemon) -> int:
    """Objects written again after a restart, from their saved plan (the daemon logs each)."""
    return d.log_path.read_text(errors="replace").count("planned before a restart")


def assert_no_torn_files(d: Daemon, bucket: str, stream: str) -> list[S3Object]:
    """Every file that is named like an object decodes whole; other files are temporary ones."""
    objs = list_objects(d, bucket, stream)
    for o in objs:
        split_records(o.body())
    return objs


def test_kill9_during_direct_put_delivery(new_daemon):
    d = new_daemon(delivery_config())
    fh = firehose_client(d.endpoint)
    name, bucket = create_ds(fh, CompressionFormat="GZIP", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60})
    seed = crash_seed(20151)
    writer = DirectPutWriter(d.endpoint, name, seed=seed)
    delivered = Delivered(d, bucket, name)
    acked, hits = crash_while_writing(d, bucket, writer, delivered.scan, seed, 6)

    delivered.wait_for(acked, "every acknowledged record delivered", timeout=90)
    delivered.settle(quiet=3)
    assert_no_torn_files(d, bucket, name)
    objs = delivered.fresh().scan()
    assert_delivered_once_in_order(objs, writer.sent, required=acked)
    # And after a clean restart nothing more is written again.
    d.restart()
    time.sleep(3)
    again = delivered.fresh().scan()
    assert set(again) == set(objs), "objects written again after a clean restart"
    print(
        f"{len(objs)} objects, {len(acked)} acknowledged, {writer.failures} failed puts, {hits} kills mid-write, {replays(d)} replays"
    )


def test_kill9_during_kinesis_source_delivery(new_daemon):
    d = new_daemon(delivery_config())
    kinesis = make_client(d.endpoint)
    fh = firehose_client(d.endpoint)
    stream = create_stream(kinesis, unique_name("crash-src"), shard_count=3)
    name, bucket = create_ds(
        fh, source_stream=stream, CompressionFormat="Snappy", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60}
    )
    seed = crash_seed(4242)
    writer = KinesisWriter(d.endpoint, stream, seed=seed)
    delivered = Delivered(d, bucket, name)
    acked, hits = crash_while_writing(d, bucket, writer, delivered.scan, seed, 4)

    delivered.wait_for(acked, "every acknowledged record delivered", timeout=90)
    delivered.settle(quiet=3)
    assert_no_torn_files(d, bucket, name)
    objs = delivered.fresh().scan()
    shards = list_all_shards(make_client(d.endpoint), stream)
    shard_of = {i: shard_for_hash(shards, hash_key(k)) for i, k in writer.keys.items()}
    assert all(shard_of[i] == s for i, s in writer.acked.items())
    assert_delivered_once_in_order(objs, writer.sent, required=acked, shard_of=shard_of.__getitem__)
    print(
        f"{len(objs)} objects, {len(acked)} acknowledged, {writer.failures} failed puts, {hits} kills mid-write, {replays(d)} replays"
    )


# =============================================================================================
# 6. UpdateDestination mid-stream


def test_update_destination_mid_stream(delivery_daemon):
    d = delivery_daemon
    fh = firehose_client(d.endpoint)
    name, bucket = create_ds(fh, Prefix="v1/", ErrorOutputPrefix="errors/", CompressionFormat="UNCOMPRESSED")
    writer = DirectPutWriter(d.endpoint, name, seed=6)
    writer.start()
    delivered = Delivered(d, bucket, name)
    try:
        wait_until(lambda: len(delivered.scan()) >= 2, "two objects of version 1", daemon=d)
        fh.update_destination(
            DeliveryStreamName=name,
            CurrentDeliveryStreamVersionId="1",
            DestinationId=DESTINATION_ID,
            ExtendedS3DestinationUpdate={"Prefix": "v2/!{timestamp:yyyy-MM-dd}/", "CompressionFormat": "GZIP"},
        )
        wait_until(
            lambda: len([o for o, _, _ in delivered.scan().values() if o.version == 2]) >= 2,
            "two objects of version 2",
            daemon=d,
        )
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    assert writer.error is None, repr(writer.error)
    assert writer.failures == 0
    acked = set(writer.acked)
    assert len(acked) == len(writer.sent)
    delivered.wait_for(acked, "every record delivered")
    delivered.settle(quiet=2.5)
    objs = delivered.fresh().scan()

    desc = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert desc["VersionId"] == "2"
    ext = desc["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert (ext["Prefix"], ext["CompressionFormat"], ext["ErrorOutputPrefix"]) == (
        "v2/!{timestamp:yyyy-MM-dd}/",
        "GZIP",
        "errors/",
    )

    for o, _, _ in objs.values():
        assert o.version in (1, 2), o.key
        if o.version == 1:
            assert o.prefix == f"v1/{o.ts:%Y/%m/%d/%H}/" and o.ext == "", o.key
        else:
            assert o.prefix == f"v2/{o.ts:%Y-%m-%d}/" and o.ext == ".gz", o.key
    assert_delivered_once_in_order(objs, writer.sent)
    # A clean cut: every version-1 object holds records from before every version-2 object's.
    ordered = sorted(objs.values(), key=lambda t: t[2][0]["i"])
    versions = [o.version for o, _, _ in ordered]
    assert versions == sorted(versions), versions
    assert versions[0] == 1 and versions[-1] == 2


# =============================================================================================
# 7. Delete stops delivery; the name can be used again


def test_delete_stops_direct_put_delivery_and_the_name_comes_back(delivery_daemon):
    d = delivery_daemon
    fh = firehose_client(d.endpoint)
    kinesis = make_client(d.endpoint)
    name, bucket = create_ds(fh)
    first = {i: record("first", i, 100) for i in range(200)}
    fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b} for b in first.values()])
    delivered = Delivered(d, bucket, name)
    delivered.wait_for(first, "the first records", tag="first")
    # Records put just before the delete may or may not be delivered, but at most once.
    pending = {i: record("pending", i, 100) for i in range(1000, 1100)}
    fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b} for b in pending.values()])
    fh.delete_delivery_stream(DeliveryStreamName=name)
    wait_until(lambda: name not in fh.list_delivery_streams(Limit=10000)["DeliveryStreamNames"], "deleted")
    expect_error("ResourceNotFoundException", fh.describe_delivery_stream, DeliveryStreamName=name)
    expect_error("ResourceNotFoundException", fh.put_record_batch, DeliveryStreamName=name, Records=[{"Data": b"late"}])
    time.sleep(0.5)
    after_delete = set(delivered.fresh().scan())
    time.sleep(3)  # three buffering intervals
    assert set(delivered.fresh().scan()) == after_delete, "objects written after the delete"
    assert not [s for s in kinesis.list_streams()["StreamNames"] if name in s]

    # The same name again, a new prefix: it delivers only what is put to it now.
    create_ds(fh, name=name, bucket=bucket, Prefix="again/")
    d2 = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert d2["VersionId"] == "1"
    again = {i: record("again", i, 100) for i in range(2000, 2150)}
    fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b} for b in again.values()])
    delivered = Delivered(d, bucket, name)
    delivered.wait_for(again, "records of the new stream", tag="again")
    delivered.settle(quiet=2.5)
    objs = delivered.fresh().scan()
    new = {k: v for k, v in objs.items() if k not in after_delete}
    assert new and all(o.prefix.startswith("again") and o.version == 1 for o, _, _ in new.values()), sorted(new)
    assert [r["tag"] for _, _, rs in new.values() for r in rs] == ["again"] * len(again)
    assert_delivered_once_in_order(objs, {**first, **pending, **again}, required=set(first) | set(again))


def test_delete_stops_kinesis_source_delivery_and_the_name_comes_back(delivery_daemon):
    d = delivery_daemon
    fh = firehose_client(d.endpoint)
    kinesis = make_client(d.endpoint)
    stream = create_stream(kinesis, unique_name("del-src"), shard_count=2)
    name, bucket = create_ds(fh, source_stream=stream)

    def put(tag, start, n):
        recs = {i: record(tag, i, 50) for i in range(start, start + n)}
        r = kinesis.put_records(
            StreamName=stream, Records=[{"Data": b, "PartitionKey": str(i)} for i, b in recs.items()]
        )
        assert r["FailedRecordCount"] == 0
        return recs

    before = put("before", 0, 100)
    delivered = Delivered(d, bucket, name)
    delivered.wait_for(before, "records before the delete", tag="before")
    delivered.settle(quiet=1.5)
    fh.delete_delivery_stream(DeliveryStreamName=name)
    wait_until(lambda: name not in fh.list_delivery_streams(Limit=10000)["DeliveryStreamNames"], "deleted")
    kept = set(delivered.fresh().scan())
    between = put("between", 1000, 100)
    time.sleep(3)  # three buffering intervals
    assert set(delivered.fresh().scan()) == kept, "delivered after the delete"

    time.sleep(0.05)
    create_ds(fh, name=name, bucket=bucket, source_stream=stream)
    after = put("after", 2000, 100)
    delivered = Delivered(d, bucket, name)
    delivered.wait_for(after, "records after the re-creation", tag="after")
    delivered.settle(quiet=2)
    objs = delivered.fresh().scan()
    tags = [r["tag"] for _, _, rs in objs.values() for r in rs]
    assert "between" not in tags, "records put while the delivery stream did not exist"
    assert tags.count("before") == 100 and tags.count("after") == 100
    shards = list_all_shards(kinesis, stream)
    everything = {**before, **between, **after}
    assert_delivered_once_in_order(
        objs, everything, required=set(before) | set(after), shard_of=lambda i: shard_for_hash(shards, hash_key(str(i)))
    )


# =============================================================================================
# Delivery streams and the Kinesis account


def test_direct_put_streams_do_not_count_against_kinesis_shard_limits(new_daemon):
    # Firehose's storage is not the account's Kinesis shards: DescribeLimits and resharding
    # see only the Kinesis streams.
    d = new_daemon('[streams]\ncreate_delay = "0ms"\ndelete_delay = "0ms"\nshard_limit = 3\n')
    fh = firehose_client(d.endpoint)
    kinesis = make_client(d.endpoint)
    for _ in range(3):
        create_ds(fh)
    assert kinesis.describe_limits()["OpenShardCount"] == 0
    stream = create_stream(kinesis, unique_name("limits"), shard_count=2)
    assert kinesis.describe_limits()["OpenShardCount"] == 2
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    wait_until(
        lambda: kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["OpenShardCount"] == 3,
        "three open shards",
    )
    assert kinesis.describe_limits()["OpenShardCount"] == 3


def test_status_changes_with_delays(new_daemon):
    d = new_daemon('[streams]\ncreate_delay = "700ms"\ndelete_delay = "700ms"\n')
    fh = firehose_client(d.endpoint)
    name, bucket = unique_name("slow"), unique_bucket()
    fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=s3_destination(bucket))
    desc = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert desc["DeliveryStreamStatus"] == "CREATING"
    # A CREATING stream cannot be deleted (AWS: only ACTIVE, DELETING and the failed states).
    expect_error("ResourceInUseException", fh.delete_delivery_stream, DeliveryStreamName=name)
    wait_ds_active(fh, name)
    fh.delete_delivery_stream(DeliveryStreamName=name)
    assert (
        fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamStatus"]
        == "DELETING"
    )
    # The name is taken until the stream is gone.
    expect_error(
        "ResourceInUseException",
        fh.create_delivery_stream,
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_destination(bucket),
    )

    def gone():
        try:
            fh.describe_delivery_stream(DeliveryStreamName=name)
        except ClientError as e:
            assert error_code_of(e) == "ResourceNotFoundException", e.response
            return True
        return False

    wait_until(gone, "the stream gone after its delete delay")
    fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=s3_destination(bucket))
    wait_ds_active(fh, name)


def test_kinesis_source_follows_a_reshard(delivery_daemon):
    d = delivery_daemon
    kinesis = make_client(d.endpoint)
    fh = firehose_client(d.endpoint)
    stream = create_stream(kinesis, unique_name("reshard-src"), shard_count=2)
    name, bucket = create_ds(fh, source_stream=stream, CompressionFormat="GZIP")
    sent, keys = {}, {}

    def put(start, n):
        recs = [(i, f"pk-{i % 13}") for i in range(start, start + n)]
        for i, k in recs:
            sent[i], keys[i] = record("reshard", i, 40, key=k), k
        r = kinesis.put_records(StreamName=stream, Records=[{"Data": sent[i], "PartitionKey": k} for i, k in recs])
        assert r["FailedRecordCount"] == 0

    for b in range(5):
        put(b * 100, 100)
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    for b in range(5, 10):
        put(b * 100, 100)
    wait_until(
        lambda: kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE",
        "the reshard done",
    )
    for b in range(10, 15):
        put(b * 100, 100)
    delivered = Delivered(d, bucket, name)
    delivered.wait_for(sent, "every record across the reshard")
    delivered.settle(quiet=2)
    # Exactly once, and per partition key in put order: parents before their children.
    assert_delivered_once_in_order(delivered.fresh().scan(), sent, shard_of=keys.__getitem__)
