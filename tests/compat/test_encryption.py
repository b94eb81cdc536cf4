"""Encryption at rest: StartStreamEncryption / StopStreamEncryption.

What is checked, against the real daemon and the bytes it leaves on disk:

* while a stream is encrypted, no file under the data directory (segments, rocksdb, anything)
  holds a record's data or partition key in plaintext, across SIGTERM and kill -9 restarts; a
  record written before encryption is plaintext on disk (so the grep can find plaintext) and stays
  readable; after StopStreamEncryption new records are plaintext again;
* a damaged sealed batch (bit flip in its ciphertext, with or without a matching crc32c) is never
  served, and the record after it stays reachable;
* argument validation and stream states; the KeyId forms AWS accepts are echoed back;
* the master key file: where it is created, its mode and size, and that another master key makes
  the encrypted records unreadable (an error, never garbage) while plaintext records stay readable.

The on-disk layout is sluice's own (src/log/mod.rs): streams/<stream id>/<shard>/<base>.seg,
a 4096-byte segment header (a non-zero u16 at offset 44 is the KeyId length of an encrypted
segment), then batches: magic "SLB1" | len u32 | crc32c u32 | version u8 | codec u8 | reserved u16 |
count u32 | raw len u32 | first ordinal u64 | arrival ms i64 (40 bytes), then for a sealed batch
nonce (12) | ciphertext | tag (16).
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import (
    FAST_CONFIG,
    create_stream,
    error_code,
    list_all_shards,
    make_client,
    read_shard,
    read_stream,
    unique_name,
)

SHARD0 = "shardId-000000000000"
DEFAULT_KEY = "alias/aws/kinesis"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# Every read decodes the segment files (no in-memory tail), so decryption is on the read path.
DISK_READS_CONFIG = FAST_CONFIG + '[storage]\nhot_tail_size = "0"\n'
SLOW_CONFIG = '[streams]\ncreate_delay = "10s"\ndelete_delay = "0ms"\n'

SEGMENT_HEADER_LEN = 4096
BATCH_HEADER_LEN = 40
NONCE_LEN = 12
TAG_LEN = 16
CODEC_SEALED = 0x80


# ---------------------------------------------------------------------------------------------
# Helpers


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


def files_containing(root: Path, needles: list[bytes]) -> dict[bytes, list[str]]:
    """Every regular file under `root` (the whole tree), read as bytes: which contain each needle."""
    found: dict[bytes, list[str]] = {n: [] for n in needles}
    count = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            blob = p.read_bytes()
            count += 1
            for n in needles:
                if n in blob:
                    found[n].append(str(p.relative_to(root)))
    assert count > 0, f"no files under {root}"
    return found


def assert_absent(root: Path, needles: list[bytes], what: str) -> None:
    found = files_containing(root, needles)
    hits = {n.decode(errors="replace"): paths for n, paths in found.items() if paths}
    assert not hits, f"{what}: plaintext found on disk: {hits}"


def wait_ready(client, name: str, timeout: float = 10.0) -> dict:
    """Polls DescribeStreamSummary until ACTIVE (UPDATING and CREATING are waited out)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if last["StreamStatus"] == "ACTIVE":
            return last
        assert last["StreamStatus"] in ("UPDATING", "CREATING"), last
        time.sleep(0.01)
    raise AssertionError(f"stream {name} not ACTIVE after {timeout}s: {last}")


def start_encryption(client, name: str, key_id: str = DEFAULT_KEY, **target) -> dict:
    args = target or {"StreamName": name}
    r = client.start_stream_encryption(EncryptionType="KMS", KeyId=key_id, **args)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert set(r) == {"ResponseMetadata"}, f"StartStreamEncryption answered a body: {r}"
    return wait_ready(client, name)


def stop_encryption(client, name: str, key_id: str = DEFAULT_KEY, **target) -> dict:
    args = target or {"StreamName": name}
    r = client.stop_stream_encryption(EncryptionType="KMS", KeyId=key_id, **args)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert set(r) == {"ResponseMetadata"}, f"StopStreamEncryption answered a body: {r}"
    return wait_ready(client, name)


def assert_encrypted(client, name: str, key_id: str) -> None:
    s = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert s.get("EncryptionType") == "KMS", s
    assert s.get("KeyId") == key_id, s
    d = client.describe_stream(StreamName=name)["StreamDescription"]
    assert d.get("EncryptionType") == "KMS", d
    assert d.get("KeyId") == key_id, d


def assert_not_encrypted(client, name: str) -> None:
    s = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert s.get("EncryptionType") == "NONE", s
    d = client.describe_stream(StreamName=name)["StreamDescription"]
    assert d.get("EncryptionType") == "NONE", d


def put_marked(client, name: str, data_marker: bytes, key_marker: bytes, n: int, tag: str, encrypted: bool) -> list[dict]:
    """Puts n records (a PutRecord, then PutRecords of the rest) whose data holds `data_marker`
    and whose partition keys hold `key_marker`; returns the acks in put order."""
    want = "KMS" if encrypted else "NONE"
    acks = []
    data0 = os.urandom(17) + data_marker + f"|{tag}|0|".encode() + os.urandom(40)
    key0 = f"{tag}-{key_marker.decode()}-0"
    r = client.put_record(StreamName=name, Data=data0, PartitionKey=key0)
    if encrypted:
        assert r.get("EncryptionType") == want, r
    else:
        assert r.get("EncryptionType", "NONE") == want, r
    acks.append({"shard": r["ShardId"], "seq": r["SequenceNumber"], "data": data0, "key": key0})
    if n > 1:
        entries = [
            {
                "Data": bytes([i % 256]) * (i % 7) + data_marker + f"|{tag}|{i}|".encode() + os.urandom(i % 300),
                "PartitionKey": f"{tag}-{key_marker.decode()}-{i}",
            }
            for i in range(1, n)
        ]
        r = client.put_records(StreamName=name, Records=entries)
        assert r["FailedRecordCount"] == 0, r
        if encrypted:
            assert r.get("EncryptionType") == want, {k: v for k, v in r.items() if k != "Records"}
        else:
            assert r.get("EncryptionType", "NONE") == want, {k: v for k, v in r.items() if k != "Records"}
        for e, x in zip(entries, r["Records"]):
            acks.append({"shard": x["ShardId"], "seq": x["SequenceNumber"], "data": e["Data"], "key": e["PartitionKey"]})
    return acks


def assert_read_back(client, name: str, acks: list[dict]) -> None:
    """Every shard from TRIM_HORIZON holds exactly the acknowledged records, in order, byte-identical."""
    stored = read_stream(client, name)
    for shard_id, records in stored.items():
        want = [(a["seq"], a["data"], a["key"]) for a in acks if a["shard"] == shard_id]
        want.sort(key=lambda t: int(t[0]))
        got = [(r["SequenceNumber"], r["Data"], r["PartitionKey"]) for r in records]
        assert got == want, f"{shard_id}: read back {len(got)} records, acknowledged {len(want)}"
    assert sum(len(v) for v in stored.values()) == len(acks)


def shard_segments(data_dir: Path, shard_index: int = 0) -> list[Path]:
    segs = [p for p in (data_dir / "streams").rglob("*.seg") if p.parent.name == f"{shard_index:06d}"]
    return sorted(segs, key=lambda p: (int(p.name.split(".")[0]), p.stat().st_mtime_ns))


def key_id_len(seg: Path) -> int:
    with open(seg, "rb") as f:
        head = f.read(46)
    assert head[:8] == b"SLUICESG", f"{seg}: not a segment header: {head[:8]!r}"
    return struct.unpack_from("<H", head, 44)[0]


def encrypted_segment(data_dir: Path, shard_index: int = 0) -> Path:
    segs = [p for p in shard_segments(data_dir, shard_index) if key_id_len(p) != 0]
    assert segs, f"no encrypted segment in shard {shard_index}: {shard_segments(data_dir, shard_index)}"
    return segs[-1]


def client_error(e: ClientError) -> tuple[str, int, str]:
    return (
        e.response["Error"]["Code"],
        e.response["ResponseMetadata"]["HTTPStatusCode"],
        e.response["Error"].get("Message", ""),
    )


def response_bytes(r: dict) -> bytes:
    """All record bytes (data and partition keys) of a GetRecords answer."""
    return b"".join(rec["Data"] + rec["PartitionKey"].encode() for rec in r.get("Records", []))


def probe_reads(client, name: str, iterator_args: dict, calls: int = 4) -> tuple[list[dict], list[tuple]]:
    """GetRecords from one iterator, following NextShardIterator, up to `calls` answers or the first
    error: returns (records served, errors as (code, status, message))."""
    it = client.get_shard_iterator(StreamName=name, ShardId=SHARD0, **iterator_args)["ShardIterator"]
    served, errors = [], []
    for _ in range(calls):
        try:
            r = client.get_records(ShardIterator=it)
        except ClientError as e:
            errors.append(client_error(e))
            break
        served += r["Records"]
        it = r.get("NextShardIterator")
        if it is None:
            break
    return served, errors


# ---------------------------------------------------------------------------------------------
# 1. Nothing in plaintext on disk


def test_no_plaintext_on_disk_while_encrypted(new_daemon):
    d = new_daemon(DISK_READS_CONFIG)
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("enc"), shard_count=2)

    # Control: written before encryption, so it is plaintext on disk.
    ctl_data, ctl_key = marker(), marker()
    before = put_marked(client, name, ctl_data, ctl_key, 3, "ctl", encrypted=False)
    assert_not_encrypted(client, name)

    start_encryption(client, name)
    assert_encrypted(client, name, DEFAULT_KEY)
    data_m, key_m = marker(), marker()
    during = put_marked(client, name, data_m, key_m, 40, "sec", encrypted=True)
    # Another PutRecord after the PutRecords, so both kinds of write end up in the log.
    r = client.put_record(StreamName=name, Data=b"tail:" + data_m, PartitionKey="tail-" + key_m.decode())
    assert r.get("EncryptionType") == "KMS", r
    during.append({"shard": r["ShardId"], "seq": r["SequenceNumber"], "data": b"tail:" + data_m, "key": "tail-" + key_m.decode()})

    assert_read_back(client, name, before + during)

    rc = d.stop()
    assert rc == 0, d.log_tail()
    found = files_containing(d.data_dir, [ctl_data, ctl_key, data_m, key_m])
    assert any(p.endswith(".seg") for p in found[ctl_data]), f"control data not found in a segment file: {found}"
    assert any(p.endswith(".seg") for p in found[ctl_key]), f"control key not found in a segment file: {found}"
    assert not found[data_m], f"record data of an encrypted stream in plaintext in {found[data_m]}"
    assert not found[key_m], f"partition key of an encrypted stream in plaintext in {found[key_m]}"
    # The sealed records are really on disk (in an encrypted segment), and read back after a restart.
    assert any(key_id_len(p) for p in (d.data_dir / "streams").rglob("*.seg"))
    d.start()
    client = make_client(d.endpoint)
    assert wait_ready(client, name)["EncryptionType"] == "KMS"
    assert_read_back(client, name, before + during)


# ---------------------------------------------------------------------------------------------
# 2. kill -9 with encryption on


def test_kill9_with_encryption_loses_nothing_and_leaks_nothing(new_daemon):
    d = new_daemon()
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("enc9"), shard_count=3)
    start_encryption(client, name, KEY_ARN)
    data_m, key_m = marker(), marker()
    acks = []
    for round_ in range(3):
        acks += put_marked(client, name, data_m, key_m, 30, f"k9r{round_}", encrypted=True)
    assert len({a["shard"] for a in acks}) == 3

    d.kill9()
    d.start()
    client = make_client(d.endpoint)
    summary = wait_ready(client, name)
    assert summary.get("EncryptionType") == "KMS", summary
    assert summary.get("KeyId") == KEY_ARN, summary
    assert_read_back(client, name, acks)
    assert_absent(d.data_dir, [data_m, key_m], "after kill -9 and restart")

    # New puts after the restart are still sealed.
    new_data, new_key = marker(), marker()
    more = put_marked(client, name, new_data, new_key, 10, "after", encrypted=True)
    assert_read_back(client, name, acks + more)
    rc = d.stop()
    assert rc == 0, d.log_tail()
    assert_absent(d.data_dir, [data_m, key_m, new_data, new_key], "after the post-restart puts and SIGTERM")


# ---------------------------------------------------------------------------------------------
# 3. StopStreamEncryption


def test_stop_encryption_writes_plaintext_again_and_keeps_everything_readable(new_daemon):
    d = new_daemon(DISK_READS_CONFIG)
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("encstop"), shard_count=1)
    m_before, k_before = marker(), marker()
    m_during, k_during = marker(), marker()
    m_after, k_after = marker(), marker()

    acks = put_marked(client, name, m_before, k_before, 5, "before", encrypted=False)
    start_encryption(client, name, "alias/my-key")
    assert_encrypted(client, name, "alias/my-key")
    acks += put_marked(client, name, m_during, k_during, 5, "during", encrypted=True)
    stop_encryption(client, name, "alias/my-key")
    assert_not_encrypted(client, name)
    acks += put_marked(client, name, m_after, k_after, 5, "after", encrypted=False)

    seqs = [int(a["seq"]) for a in acks]
    assert seqs == sorted(seqs), "one shard: sequence numbers grow in put order"
    got = read_shard(client, name, SHARD0)
    assert [(r["SequenceNumber"], r["Data"], r["PartitionKey"]) for r in got] == [
        (a["seq"], a["data"], a["key"]) for a in acks
    ]

    rc = d.stop()
    assert rc == 0, d.log_tail()
    found = files_containing(d.data_dir, [m_before, k_before, m_during, k_during, m_after, k_after])
    assert found[m_before] and found[k_before], f"records before encryption not plain on disk: {found}"
    assert not found[m_during] and not found[k_during], f"records while encrypted are plain on disk: {found}"
    assert any(p.endswith(".seg") for p in found[m_after]), f"records after Stop are not plain again: {found}"
    assert any(p.endswith(".seg") for p in found[k_after]), f"records after Stop are not plain again: {found}"

    d.start()
    client = make_client(d.endpoint)
    assert wait_ready(client, name).get("EncryptionType") == "NONE"
    got = read_shard(client, name, SHARD0)
    assert [(r["SequenceNumber"], r["Data"], r["PartitionKey"]) for r in got] == [
        (a["seq"], a["data"], a["key"]) for a in acks
    ]


# ---------------------------------------------------------------------------------------------
# 4. Damaged ciphertext


@pytest.mark.parametrize("fix_crc", [True, False], ids=["crc-rewritten", "crc-mismatch"])
def test_damaged_ciphertext_is_never_served(new_daemon, fix_crc):
    d = new_daemon()
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("encdmg"), shard_count=1)
    plain = os.urandom(8) + b"plain-before-encryption" + marker()
    r0 = client.put_record(StreamName=name, Data=plain, PartitionKey="p0")
    start_encryption(client, name)
    damaged_data = b"DAMAGED-" + marker() + os.urandom(200)
    intact_data = b"INTACT-" + marker() + os.urandom(200)
    r1 = client.put_record(StreamName=name, Data=damaged_data, PartitionKey="p1")
    r2 = client.put_record(StreamName=name, Data=intact_data, PartitionKey="p2")
    assert r1["EncryptionType"] == "KMS" and r2["EncryptionType"] == "KMS"
    rc = d.stop()
    assert rc == 0, d.log_tail()

    seg = encrypted_segment(d.data_dir)
    buf = bytearray(seg.read_bytes())
    at = SEGMENT_HEADER_LEN
    magic, length, crc = struct.unpack_from("<4sII", buf, at)
    version, codec, _res, count, _raw_len, _first, _ts = struct.unpack_from("<BBHIIQq", buf, at + 12)
    assert magic == b"SLB1", f"no batch at offset {at} of {seg}: {bytes(buf[at:at + 16])!r}"
    assert codec & CODEC_SEALED, f"first batch of the encrypted segment is not sealed (codec {codec:#x})"
    assert count == 1, f"the first batch holds {count} records; PutRecord r1 alone was expected"
    assert crc32c(bytes(buf[at + 12:at + length])) == crc, "crc32c of the batch as written does not match"
    # The next batch (r2) follows.
    assert buf[at + length:at + length + 4] == b"SLB1", "the damaged batch must not be the last one"

    ct_start = at + BATCH_HEADER_LEN + NONCE_LEN
    ct_len = length - BATCH_HEADER_LEN - NONCE_LEN - TAG_LEN
    assert ct_len > 0
    buf[ct_start + ct_len // 2] ^= 0x10
    if fix_crc:
        struct.pack_into("<I", buf, at + 8, crc32c(bytes(buf[at + 12:at + length])))
    seg.write_bytes(bytes(buf))

    d.start()
    client = make_client(d.endpoint)
    wait_ready(client, name)

    def check_errors(errors):
        for code, status, message in errors:
            assert code == "InternalFailure" and status == 500, (code, status, message)
            assert r1["SequenceNumber"] in message or r2["SequenceNumber"] in message, (
                f"the error names neither the lost range nor where to resume: {message}"
            )
            assert damaged_data not in message.encode()

    # From TRIM_HORIZON: the plaintext record, then an error or a stop, never the damaged record
    # and never a silent skip to the record after it.
    served, errors = probe_reads(client, name, {"ShardIteratorType": "TRIM_HORIZON"})
    check_errors(errors)
    datas = [x["Data"] for x in served]
    assert damaged_data not in datas and all(damaged_data[:40] not in x for x in datas), "damaged record served"
    assert intact_data not in datas, f"TRIM_HORIZON skipped silently over the damaged record; errors: {errors}"
    assert datas[:1] == [plain], f"the record before the damage is not served first: {datas[:1]} {errors}"

    # At the damaged record itself: an error or nothing, never its bytes.
    served, errors = probe_reads(client, name, {"ShardIteratorType": "AT_SEQUENCE_NUMBER",
                                                "StartingSequenceNumber": r1["SequenceNumber"]}, calls=2)
    check_errors(errors)
    assert all(damaged_data[:40] not in x["Data"] for x in served), "damaged record served"
    assert intact_data not in [x["Data"] for x in served], f"read at the damage skipped silently over it; errors: {errors}"

    # The record after the damage is reachable where the error says to resume.
    it = client.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                   StartingSequenceNumber=r2["SequenceNumber"])["ShardIterator"]
    r = client.get_records(ShardIterator=it)
    assert [(x["SequenceNumber"], x["Data"], x["PartitionKey"]) for x in r["Records"]][:1] == [
        (r2["SequenceNumber"], intact_data, "p2")
    ], r["Records"]
    assert damaged_data[:40] not in response_bytes(r)
    assert int(r0["SequenceNumber"]) < int(r1["SequenceNumber"]) < int(r2["SequenceNumber"])


# ---------------------------------------------------------------------------------------------
# 5. Validation and states


def test_invalid_arguments(kinesis, kinesis_unvalidated, make_stream):
    name = make_stream(shard_count=1)
    for op in (kinesis.start_stream_encryption, kinesis.stop_stream_encryption):
        with pytest.raises(ClientError) as e:
            op(StreamName=name, EncryptionType="KMS", KeyId="not a key!")
        assert error_code(e) == "InvalidArgumentException", e.value.response

    for op in (kinesis_unvalidated.start_stream_encryption, kinesis_unvalidated.stop_stream_encryption):
        with pytest.raises(ClientError) as e:
            op(StreamName=name, EncryptionType="NONE", KeyId=DEFAULT_KEY)
        assert error_code(e) == "InvalidArgumentException", e.value.response

        with pytest.raises(ClientError) as e:
            op(StreamName=name, EncryptionType="KMS")
        assert error_code(e) == "ValidationException", e.value.response

    missing = unique_name("nosuch")
    for op in (kinesis.start_stream_encryption, kinesis.stop_stream_encryption):
        with pytest.raises(ClientError) as e:
            op(StreamName=missing, EncryptionType="KMS", KeyId=DEFAULT_KEY)
        assert error_code(e) == "ResourceNotFoundException", e.value.response

    # Nothing of the above changed the stream.
    s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert s["StreamStatus"] == "ACTIVE" and s.get("EncryptionType") == "NONE", s


def test_refused_while_creating(new_daemon):
    d = new_daemon(SLOW_CONFIG)
    c = make_client(d.endpoint)
    name = unique_name("enccreating")
    c.create_stream(StreamName=name, ShardCount=1)
    with pytest.raises(ClientError) as e:
        c.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=DEFAULT_KEY)
    assert error_code(e) == "ResourceInUseException", e.value.response


@pytest.mark.parametrize(
    "key_id",
    [
        "alias/aws/kinesis",
        "alias/my-key",
        "arn:aws:kms:us-east-1:123456789012:alias/my-key",
        "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
    ],
)
def test_key_id_forms_are_accepted_and_echoed(kinesis, make_stream, key_id):
    name = make_stream(shard_count=1)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    # The ARN forms go by StreamARN, the others by StreamName.
    target = {"StreamARN": arn} if key_id.startswith("arn:") else {}
    start_encryption(kinesis, name, key_id, **target)
    assert_encrypted(kinesis, name, key_id)
    data = b"form:" + key_id.encode()
    r = kinesis.put_record(StreamName=name, Data=data, PartitionKey="k")
    assert r.get("EncryptionType") == "KMS", r
    stop_encryption(kinesis, name, key_id, **target)
    assert_not_encrypted(kinesis, name)
    assert [x["Data"] for x in read_shard(kinesis, name, SHARD0)] == [data]


# ---------------------------------------------------------------------------------------------
# 6. The master key file


def mode_of(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_master_key_created_in_data_dir(new_daemon):
    d = new_daemon()
    key = d.data_dir / "master.key"
    assert key.is_file(), f"no master.key in {d.data_dir}: {sorted(x.name for x in d.data_dir.iterdir())}"
    assert mode_of(key) == 0o600, oct(mode_of(key))
    first = key.read_bytes()
    assert len(first) == 32
    d.restart()
    assert key.read_bytes() == first, "the master key changed across a restart"


def test_master_key_file_setting(new_daemon, tmp_path):
    key = tmp_path / "sluice-master.key"
    d = new_daemon(FAST_CONFIG + f'[encryption]\nmaster_key_file = "{key}"\n')
    assert key.is_file(), "the master key was not created at [encryption] master_key_file"
    assert mode_of(key) == 0o600, oct(mode_of(key))
    assert len(key.read_bytes()) == 32
    assert not (d.data_dir / "master.key").exists(), "a master key was created in the data dir too"
    # The configured key is the one in use: records sealed under it read back after a restart.
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("enckf"), shard_count=1)
    start_encryption(client, name)
    r = client.put_record(StreamName=name, Data=b"sealed-under-configured-key", PartitionKey="k")
    d.restart()
    client = make_client(d.endpoint)
    wait_ready(client, name)
    assert [(x["SequenceNumber"], x["Data"]) for x in read_shard(client, name, SHARD0)] == [
        (r["SequenceNumber"], b"sealed-under-configured-key")
    ]
    assert not (d.data_dir / "master.key").exists()


def test_another_master_key_is_refused_at_start(new_daemon):
    """A data directory with encrypted streams starts only with the master key they were written
    under: a replaced (or lost and recreated) key file stops the daemon with a clear message, and
    nothing is served wrongly; the original key brings everything back."""
    d = new_daemon()
    client = make_client(d.endpoint)
    name = create_stream(client, unique_name("encmk"), shard_count=1)
    plain = b"PLAIN-" + marker()
    client.put_record(StreamName=name, Data=plain, PartitionKey="p0")
    start_encryption(client, name)
    secrets = [b"SECRET-%d-" % i + marker() for i in range(3)]
    for i, s in enumerate(secrets):
        client.put_record(StreamName=name, Data=s, PartitionKey=f"s{i}")
    rc = d.stop()
    assert rc == 0, d.log_tail()

    key = d.data_dir / "master.key"
    old = key.read_bytes()
    for replacement in ("other", "missing"):
        if replacement == "other":
            key.write_bytes(bytes(b ^ 0xFF for b in old))
        else:
            key.unlink()
        r = subprocess.run(
            [str(d.binary), "serve", "--config", str(d.config_path), "--data-dir", str(d.data_dir),
             "--listen", "127.0.0.1:0", "--push-listen", ""],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert r.returncode != 0, f"started with a {replacement} master key"
        assert "master key" in (r.stdout + r.stderr), r.stdout + r.stderr
    key.write_bytes(old)
    key.chmod(0o600)
    d.start()
    client = make_client(d.endpoint)
    wait_ready(client, name)
    served, errors = probe_reads(client, name, {"ShardIteratorType": "TRIM_HORIZON"})
    assert not errors, errors
    assert [x["Data"] for x in served] == [plain] + secrets


def test_stream_is_updating_while_encryption_changes(new_daemon):
    """StartStreamEncryption puts the stream in UPDATING (here for the configured 1.5 s); while it
    is, encryption and reshards are refused with ResourceInUseException, records still go in, and
    then it is ACTIVE and encrypted."""
    d = new_daemon('[streams]\ncreate_delay = "1500ms"\ndelete_delay = "0ms"\n')
    c = make_client(d.endpoint)
    name = unique_name()
    c.create_stream(StreamName=name, ShardCount=1)
    wait_ready(c, name)
    c.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=DEFAULT_KEY)
    s = c.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert (s["StreamStatus"], s["EncryptionType"], s["KeyId"]) == ("UPDATING", "KMS", DEFAULT_KEY)
    with pytest.raises(ClientError) as e:
        c.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=DEFAULT_KEY)
    assert error_code(e) == "ResourceInUseException"
    with pytest.raises(ClientError) as e:
        c.split_shard(StreamName=name, ShardToSplit=SHARD0, NewStartingHashKey=str(2**127))
    assert error_code(e) == "ResourceInUseException"
    assert c.put_record(StreamName=name, Data=b"during", PartitionKey="k")["EncryptionType"] == "KMS"
    s = wait_ready(c, name)
    assert (s["StreamStatus"], s["EncryptionType"]) == ("ACTIVE", "KMS")
