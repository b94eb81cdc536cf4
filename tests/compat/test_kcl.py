"""`sluice kcl`, the native MultiLangDaemon, end to end: real record processors run as its
children against the daemon's Kinesis and DynamoDB APIs (the seed consumer and a recording
processor in amazon_kclpy, and one speaking the protocol by hand, under kcl/), and the tests read
what the processors recorded, the lease table (with boto3's DynamoDB client) and the worker's log.

Covered: the seed consumer (every record once, checkpoints at each shard's last record, leases
given up on SIGTERM, a second run resumes at the checkpoints) with polling and enhanced fan-out;
`kill -9` of a record processor, of the worker and of the daemon (every record at least once,
in order per shard, resuming at the checkpoints); a split and a merge while processing (children
wait for their parents); lease balancing across three workers and after one dies; SIGTERM to the
worker's process group; the children's stray output in the log and the protocol's messages; bad
properties files.

Timings are those of a fast setup (failoverTimeMillis=2000, shard sync every second); every wait
is a poll with a generous deadline, and no test asserts that something happens quickly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

import conftest
from conftest import (
    create_stream,
    list_all_shards,
    make_client,
    read_stream,
    sluice_binary,
    terminate_process,
    unique_name,
)

KCL_DIR = Path(__file__).resolve().parent / "kcl"
SEED = KCL_DIR / "seed_consumer.py"
RECORDING = KCL_DIR / "recording_consumer.py"
NOISY = KCL_DIR / "noisy_consumer.py"

FAILOVER_MS = 2000
FAST = {
    "initialPositionInStream": "TRIM_HORIZON",
    "regionName": "us-east-1",
    "failoverTimeMillis": FAILOVER_MS,
    "shardSyncIntervalMillis": 1000,
    "parentShardPollIntervalMillis": 200,
    "idleTimeBetweenReadsInMillis": 100,
    "retrievalMode": "POLLING",
    "metricsLevel": "NONE",
}

PROCESSING = re.compile(r"(shardId-\d+) stdout: Processing: (sensor-\d+)\s*$", re.M)


# ---------------------------------------------------------------------------------------------
# Helpers


def kcl_properties(endpoint: str, stream: str, app: str, script: Path, worker_id: str, **extra) -> dict:
    """The properties of a fast worker running `script` with this interpreter."""
    executable = f"{sys.executable} {script}"
    assert len(executable.split()) == 2, f"executableName is split on spaces: {executable!r}"
    return {
        "executableName": executable,
        "streamName": stream,
        "applicationName": app,
        "kinesisEndpoint": endpoint,
        "dynamoDBEndpoint": endpoint,
        "workerId": worker_id,
        **FAST,
        **extra,
    }


def write_properties(path: Path, props: dict) -> Path:
    path.write_text("# sluice kcl test worker\n" + "".join(f"{k} = {v}\n" for k, v in props.items()))
    return path


class KclWorker:
    """One `sluice kcl` process, its stdout and stderr in a log file."""

    def __init__(self, properties: Path, log_path: Path, env: dict | None = None, own_process_group: bool = False):
        self.properties = properties
        self.log_path = log_path
        self.env = env or {}
        self.own_process_group = own_process_group
        self.proc: subprocess.Popen | None = None

    def start(self) -> "KclWorker":
        binary = sluice_binary()
        if not binary.exists():
            pytest.fail(f"sluice binary not found at {binary} (set SLUICE_BIN)")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "kcl", "--properties-file", str(self.properties)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NO_COLOR": "1", "SLUICE_LOG": "info", **self.env},
                start_new_session=self.own_process_group,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or "(empty log)"

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then waits; returns the exit code."""
        return terminate_process(self.proc, timeout, "sluice kcl", self.log_tail)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def ensure_stopped(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Workers:
    """The `sluice kcl` processes of one test; every one is stopped at the end of the test."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started: list[tuple[str, KclWorker]] = []
        self.tables: list[tuple[str, str]] = []

    def start(
        self, props: dict, name: str | None = None, env: dict | None = None, own_process_group: bool = False
    ) -> KclWorker:
        name = name or str(props["workerId"])
        assert all(n != name for n, _ in self.started), f"worker name {name} used twice"
        path = write_properties(self.dir / f"{name}.properties", props)
        w = KclWorker(path, self.dir / f"{name}.log", env, own_process_group).start()
        self.started.append((name, w))
        table = (str(props["dynamoDBEndpoint"]), str(props.get("tableName", props["applicationName"])))
        if table not in self.tables:
            self.tables.append(table)
        return w

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- log of {n} (last {lines} lines) ---\n{w.log_tail(lines)}" for n, w in self.started)

    def wait_until(self, what: str, pred, timeout: float = 60.0, describe=None, interval: float = 0.1):
        """Polls `pred` until it returns something truthy (returned); fails with the logs."""
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() >= deadline:
                state = ""
                if describe is not None:
                    try:
                        state = f"\nstate: {describe()}"
                    except Exception as e:  # the state is only for the message
                        state = f"\nstate: (unavailable: {e!r})"
                pytest.fail(f"{what}: not within {timeout}s{state}\n{self.logs()}")
            time.sleep(interval)

    def close(self) -> None:
        for _, w in self.started:
            w.ensure_stopped()
        for endpoint, table in self.tables:
            try:
                ddb_client(endpoint).delete_table(TableName=table)
            except (ClientError, BotoCoreError):
                pass


@pytest.fixture
def workers(tmp_path):
    pool = Workers(tmp_path / "kcl")
    try:
        yield pool
    finally:
        pool.close()


def ddb_client(endpoint: str):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=conftest.CLIENT_KEY_ID,
        aws_secret_access_key=conftest.CLIENT_SECRET,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=10),
    )


def _plain(value: dict):
    (kind, v), = value.items()
    if kind == "N":
        return int(v)
    if kind == "SS":
        return sorted(v)
    return v


def scan_leases(ddb, table: str) -> dict[str, dict]:
    """The lease table's items by leaseKey, with plain values (S: str, N: int, SS: sorted list)."""
    out, start = {}, None
    while True:
        args = {"TableName": table, "ConsistentRead": True}
        if start:
            args["ExclusiveStartKey"] = start
        page = ddb.scan(**args)
        for item in page["Items"]:
            plain = {k: _plain(v) for k, v in item.items()}
            out[plain["leaseKey"]] = plain
        start = page.get("LastEvaluatedKey")
        if not start:
            return out


def try_scan(ddb, table: str) -> dict[str, dict] | None:
    """scan_leases, or None while the table does not exist or the daemon does not answer."""
    try:
        return scan_leases(ddb, table)
    except (ClientError, BotoCoreError):
        return None


def owners(leases: dict[str, dict] | None) -> Counter:
    return Counter(l.get("leaseOwner") for l in (leases or {}).values())


def put_sensor_records(kinesis, name: str, start: int, count: int) -> list[dict]:
    """The seed producer's shape: JSON {'sensor_id', 'value'}, the sensor id as partition key."""
    records = [{"sensor_id": f"sensor-{i}", "value": i} for i in range(start, start + count)]
    for i in range(0, len(records), 500):
        chunk = records[i : i + 500]
        out = kinesis.put_records(
            StreamName=name, Records=[{"Data": json.dumps(r), "PartitionKey": r["sensor_id"]} for r in chunk]
        )
        assert out["FailedRecordCount"] == 0, out
    return records


def processed_sensors(log: str) -> Counter:
    """How often the seed consumer printed `Processing: sensor-i`, by sensor id."""
    return Counter(m.group(2) for m in PROCESSING.finditer(log))


def read_recorded(path: Path) -> list[tuple[str, str, int, str]]:
    """The record file: (shardId, sequenceNumber, subSequenceNumber, data) per line, in order."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    # Only whole lines: a reader can see a batch that another processor is still writing.
    for line in text.split("\n")[:-1]:
        shard, seq, sub, data = line.split(" ", 3)
        out.append((shard, seq, int(sub), data))
    return out


def read_events(path: Path) -> list[list[str]]:
    try:
        return [line.split(" ") for line in path.read_text().split("\n")[:-1]]
    except FileNotFoundError:
        return []


def stream_contents(kinesis, name: str) -> dict[str, list[tuple[str, str]]]:
    """Every shard's (sequenceNumber, data) from TRIM_HORIZON to its end."""
    return {
        shard: [(r["SequenceNumber"], r["Data"].decode()) for r in recs]
        for shard, recs in read_stream(kinesis, name).items()
    }


def missing_records(recorded, expected: dict[str, list[tuple[str, str]]]) -> int:
    have = {(shard, seq) for shard, seq, _, _ in recorded}
    return sum(1 for shard, recs in expected.items() for seq, _ in recs if (shard, seq) not in have)


def assert_at_least_once_in_order(recorded, expected: dict[str, list[tuple[str, str]]]) -> None:
    """Every record of every shard recorded, with its data; per shard, the first occurrences are
    exactly the shard's records in sequence-number order (so nothing is missing or invented and
    a redelivery never goes forward past an unrecorded record)."""
    by_shard: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for shard, seq, sub, data in recorded:
        assert sub == 0, f"plain records have subSequenceNumber 0: {shard} {seq} {sub}"
        by_shard[shard].append((seq, data))
    assert set(by_shard) <= set(expected), f"records of unknown shards: {set(by_shard) - set(expected)}"
    for shard, exp in expected.items():
        got = by_shard.get(shard, [])
        want = dict(exp)
        wrong = [(seq, data) for seq, data in got if want.get(seq) != data]
        assert not wrong, f"{shard}: records that are not the shard's (or with other data): {wrong[:5]}"
        first, seen = [], set()
        for seq, _ in got:
            if seq not in seen:
                seen.add(seq)
                first.append(seq)
        missing = [seq for seq, _ in exp if seq not in seen]
        assert not missing, f"{shard}: {len(missing)} of {len(exp)} records never processed, first {missing[:3]}"
        assert first == [seq for seq, _ in exp], f"{shard}: first deliveries out of order"
        assert first == sorted(first, key=int)


def last_sequence_numbers(kinesis, name: str) -> dict[str, str]:
    """What each shard's checkpoint is once everything is processed (TRIM_HORIZON if empty)."""
    contents = stream_contents(kinesis, name)
    return {shard: (recs[-1][0] if recs else "TRIM_HORIZON") for shard, recs in contents.items()}


def checkpoints(leases: dict[str, dict] | None) -> dict[str, str]:
    return {k: l.get("checkpoint") for k, l in (leases or {}).items()}


def wait_updated(kinesis, name: str, timeout: float = 20.0) -> None:
    """Polls until a resharded stream is ACTIVE again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return
        assert status == "UPDATING", status
        time.sleep(0.02)
    pytest.fail(f"{name} did not return to ACTIVE within {timeout}s")


def process_gone(pid: int) -> bool:
    """True once the process has exited (gone, or a zombie waiting for its new parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class Producer(threading.Thread):
    """Puts a batch of seed-shaped records every `interval` seconds until stopped."""

    def __init__(self, endpoint: str, name: str, start: int = 0, batch: int = 12, interval: float = 0.25):
        super().__init__(daemon=True)
        self.client = make_client(endpoint)
        self.name_ = name
        self.next = start
        self.batch = batch
        self.interval = interval
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                put_sensor_records(self.client, self.name_, self.next, self.batch)
                self.next += self.batch
                self.stopping.wait(self.interval)
        except BaseException as e:  # reported by stop()
            self.error = e

    def stop(self) -> int:
        self.stopping.set()
        self.join(timeout=30)
        assert self.error is None, f"producer failed: {self.error!r}"
        return self.next


# ---------------------------------------------------------------------------------------------
# 1. The seed consumer


def test_seed_consumer_processes_everything_checkpoints_and_resumes(kinesis, make_stream, endpoint, workers):
    name = make_stream(shard_count=4, name=unique_name("sensor-data-stream"))
    app = unique_name("sensor-app")
    put_sensor_records(kinesis, name, 0, 200)
    props = kcl_properties(endpoint, name, app, SEED, "seed-worker")
    first = workers.start(props, name="seed-run-1")
    ids = {f"sensor-{i}" for i in range(200)}
    workers.wait_until(
        "the seed consumer printed Processing: sensor-i for all 200 records",
        lambda: ids <= set(processed_sensors(first.log())),
        describe=lambda: f"missing {sorted(ids - set(processed_sensors(first.log())))[:10]}",
    )
    ddb = ddb_client(endpoint)
    want = last_sequence_numbers(kinesis, name)
    assert len(want) == 4
    workers.wait_until(
        "each lease checkpointed at its shard's last record",
        lambda: checkpoints(try_scan(ddb, app)) == want,
        describe=lambda: (checkpoints(try_scan(ddb, app)), want),
    )
    leases = scan_leases(ddb, app)
    shards = {s["ShardId"]: s for s in list_all_shards(kinesis, name)}
    assert set(leases) == set(shards), "one lease per shard"
    for shard_id, lease in leases.items():
        assert lease["leaseOwner"] == "seed-worker", lease
        assert lease["checkpoint"] == want[shard_id]
        assert lease["checkpointSubSequenceNumber"] == 0
        assert lease["leaseCounter"] >= 1
        if want[shard_id] != "TRIM_HORIZON":
            assert lease["ownerSwitchesSinceCheckpoint"] == 0, lease
        hk = shards[shard_id]["HashKeyRange"]
        assert (lease["startingHashKey"], lease["endingHashKey"]) == (hk["StartingHashKey"], hk["EndingHashKey"])
        assert "parentShardId" not in lease, lease
    counts = processed_sensors(first.log())
    assert set(counts) == ids
    assert [s for s, n in counts.items() if n != 1] == [], "one worker, no failure: every record exactly once"
    # The worker renews what it holds: every counter goes up.
    counters = {k: l["leaseCounter"] for k, l in leases.items()}
    workers.wait_until(
        "every lease renewed (leaseCounter up)",
        lambda: all(l["leaseCounter"] > counters[k] for k, l in (try_scan(ddb, app) or {}).items()),
        timeout=30,
        describe=lambda: ({k: l["leaseCounter"] for k, l in (try_scan(ddb, app) or {}).items()}, counters),
    )

    rc = first.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{first.log_tail()}"
    leases = scan_leases(ddb, app)
    assert [k for k, l in leases.items() if "leaseOwner" in l] == [], f"leases still owned after SIGTERM: {leases}"
    assert checkpoints(leases) == want, "shutting down keeps the checkpoints"

    # A second run processes only what came after the checkpoints.
    put_sensor_records(kinesis, name, 200, 100)
    second = workers.start(props, name="seed-run-2")
    new_ids = {f"sensor-{i}" for i in range(200, 300)}
    workers.wait_until(
        "the second run processed the 100 new records",
        lambda: new_ids <= set(processed_sensors(second.log())),
        describe=lambda: f"missing {sorted(new_ids - set(processed_sensors(second.log())))[:10]}",
    )
    want = last_sequence_numbers(kinesis, name)
    workers.wait_until(
        "checkpoints at the new last records",
        lambda: checkpoints(try_scan(ddb, app)) == want,
        describe=lambda: (checkpoints(try_scan(ddb, app)), want),
    )
    rc = second.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{second.log_tail()}"
    again = processed_sensors(second.log())
    assert set(again) == new_ids, f"records processed again: {sorted(set(again) - new_ids)[:10]}"
    assert [s for s, n in again.items() if n != 1] == []
    assert [k for k, l in scan_leases(ddb, app).items() if "leaseOwner" in l] == []


# ---------------------------------------------------------------------------------------------
# 2. Enhanced fan-out


def test_seed_consumer_with_enhanced_fan_out(kinesis, make_stream, endpoint, workers):
    name = make_stream(shard_count=2, name=unique_name("sensor-data-stream"))
    app = unique_name("fanout-app")
    put_sensor_records(kinesis, name, 0, 60)
    props = kcl_properties(endpoint, name, app, SEED, "fanout-worker", retrievalMode="FANOUT")
    props.pop("idleTimeBetweenReadsInMillis")
    w = workers.start(props)
    first = {f"sensor-{i}" for i in range(60)}
    workers.wait_until(
        "the fan-out worker processed the first 60 records",
        lambda: first <= set(processed_sensors(w.log())),
        describe=lambda: f"missing {sorted(first - set(processed_sensors(w.log())))[:10]}",
    )
    # Records put while subscribed are pushed too.
    put_sensor_records(kinesis, name, 60, 40)
    every = {f"sensor-{i}" for i in range(100)}
    workers.wait_until(
        "the fan-out worker processed the records put while it was subscribed",
        lambda: every <= set(processed_sensors(w.log())),
        describe=lambda: f"missing {sorted(every - set(processed_sensors(w.log())))[:10]}",
    )
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    consumers = kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]
    assert [(c["ConsumerName"], c["ConsumerStatus"]) for c in consumers] == [(app, "ACTIVE")], consumers
    assert f"fan-out consumer {app}: {consumers[0]['ConsumerARN']}" in w.log(), w.log_tail()
    ddb = ddb_client(endpoint)
    want = last_sequence_numbers(kinesis, name)
    workers.wait_until(
        "fan-out checkpoints at each shard's last record",
        lambda: checkpoints(try_scan(ddb, app)) == want,
        describe=lambda: (checkpoints(try_scan(ddb, app)), want),
    )
    counts = processed_sensors(w.log())
    assert [s for s, n in counts.items() if n != 1] == [], "no failure: every record exactly once"
    rc = w.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{w.log_tail()}"


# ---------------------------------------------------------------------------------------------
# 3. Failures, with the recording processor


def recording_env(tmp_path: Path, **extra) -> tuple[Path, Path, dict]:
    records = tmp_path / "records.txt"
    events = tmp_path / "events.txt"
    env = {"KCL_RECORD_FILE": str(records), "KCL_EVENTS_FILE": str(events)}
    env.update({k: str(v) for k, v in extra.items()})
    return records, events, env


@pytest.mark.parametrize("mode", ["POLLING", "FANOUT"])
def test_record_processor_killed_is_restarted_from_its_checkpoint(
    kinesis, make_stream, endpoint, workers, tmp_path, mode
):
    name = make_stream(shard_count=2)
    app = unique_name("crash-app")
    put_sensor_records(kinesis, name, 0, 200)
    marker = tmp_path / "crashed"
    records, events, env = recording_env(tmp_path, KCL_CRASH_AFTER=50, KCL_CRASH_MARKER=marker)
    w = workers.start(
        kcl_properties(endpoint, name, app, RECORDING, "crash-worker", maxRecords=20, retrievalMode=mode), env=env
    )
    expected = stream_contents(kinesis, name)
    workers.wait_until(
        "every record recorded after the processor's crash",
        lambda: marker.exists() and missing_records(read_recorded(records), expected) == 0,
        describe=lambda: f"crashed: {marker.exists()}, missing {missing_records(read_recorded(records), expected)}",
    )
    ddb = ddb_client(endpoint)
    want = {shard: recs[-1][0] for shard, recs in expected.items()}
    workers.wait_until(
        "checkpoints at each shard's last record",
        lambda: checkpoints(try_scan(ddb, app)) == want,
        describe=lambda: (checkpoints(try_scan(ddb, app)), want),
    )
    recorded = read_recorded(records)
    assert_at_least_once_in_order(recorded, expected)

    evs = read_events(events)
    crashes = [e for e in evs if e[0] == "crash"]
    assert len(crashes) == 1, crashes
    _, shard, crash_seq = crashes[0]
    at = evs.index(crashes[0])
    before = [e for e in evs[:at] if e[0] == "checkpoint" and e[1] == shard]
    last_checkpoint = before[-1][2] if before else "TRIM_HORIZON"
    restarts = [e for e in evs[at + 1 :] if e[0] == "initialize" and e[1] == shard]
    assert restarts, f"the processor of {shard} was not started again; events: {evs}"
    assert restarts[0][2] == last_checkpoint, f"restarted at {restarts[0][2]}, last checkpoint {last_checkpoint}"
    assert f"the record processor of {shard} failed" in w.log()

    # The crashed shard: everything up to the crash, then again from just after the checkpoint.
    exp = [seq for seq, _ in expected[shard]]
    got = [seq for s, seq, _, _ in recorded if s == shard]
    k = got.index(crash_seq)
    assert got[: k + 1] == exp[: k + 1]
    resume = exp.index(last_checkpoint) + 1 if last_checkpoint != "TRIM_HORIZON" else 0
    assert got[k + 1 :] == exp[resume:], "the restarted processor resumes right after the last checkpoint"
    assert resume <= k, "the batch being processed at the crash was not checkpointed, so it comes again"
    # The other shard saw every record exactly once.
    for other in expected:
        if other != shard:
            assert [seq for s, seq, _, _ in recorded if s == other] == [seq for seq, _ in expected[other]]
    rc = w.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{w.log_tail()}"


@pytest.mark.parametrize("mode", ["POLLING", "FANOUT"])
def test_worker_killed_and_another_worker_takes_over_after_failover(
    kinesis, make_stream, endpoint, workers, tmp_path, mode
):
    name = make_stream(shard_count=2)
    app = unique_name("failover-app")
    records, events, env = recording_env(tmp_path, KCL_BATCH_DELAY=0.05)
    props = kcl_properties(endpoint, name, app, RECORDING, "worker-1", maxRecords=10, retrievalMode=mode)
    ddb = ddb_client(endpoint)
    producer = Producer(endpoint, name, batch=10, interval=0.1)
    producer.start()
    try:
        w1 = workers.start(props, env=env)
        workers.wait_until(
            "worker-1 recorded 60 records",
            lambda: len(read_recorded(records)) >= 60,
            describe=lambda: len(read_recorded(records)),
        )
        before = scan_leases(ddb, app)
        w1.kill9()
        killed_at = time.monotonic()
        assert owners(before) == Counter({"worker-1": 2}), before
        children = [int(e[4]) for e in read_events(events) if e[0] == "initialize"]
        assert len(children) == 2, "one record processor per lease"
        workers.wait_until(
            "the record processors of the killed worker exit (their stdin ends)",
            lambda: all(process_gone(pid) for pid in children),
            timeout=20,
            describe=lambda: [pid for pid in children if not process_gone(pid)],
        )
        # With the default maxLeasesToStealAtOneTime=1, a newcomer steals one lease at once from
        # worker-1 (which still looks alive: its lease counters changed a moment ago), as KCL's
        # lease taker balances; without stealing, expiry is the only way in.
        w2 = workers.start({**props, "workerId": "worker-2", "maxLeasesToStealAtOneTime": 0}, env=env)
        taken_at: dict[str, float] = {}

        def both_taken():
            leases = try_scan(ddb, app) or {}
            now = time.monotonic()
            for key, lease in leases.items():
                if lease.get("leaseOwner") == "worker-2":
                    taken_at.setdefault(key, now)
                else:
                    assert key not in taken_at, f"{key} went back from worker-2 to {lease.get('leaseOwner')}"
            return len(taken_at) == 2

        workers.wait_until("worker-2 holds both leases", both_taken, interval=0.05, describe=lambda: try_scan(ddb, app))
    finally:
        put = producer.stop()
    for key, t in taken_at.items():
        assert t - killed_at >= FAILOVER_MS / 1000, f"{key} taken {t - killed_at:.2f}s after the kill, before it expired"
        assert f"took the lease of {key} (from worker-1)" in w2.log(), w2.log_tail()
    expected = stream_contents(kinesis, name)
    assert sum(len(v) for v in expected.values()) == put
    workers.wait_until(
        "every record recorded",
        lambda: missing_records(read_recorded(records), expected) == 0,
        describe=lambda: f"missing {missing_records(read_recorded(records), expected)}",
    )
    assert_at_least_once_in_order(read_recorded(records), expected)
    resumed = [e for e in read_events(events) if e[0] == "initialize"][2:]
    assert sorted(e[1] for e in resumed) == sorted(expected), f"worker-2 started one processor per shard: {resumed}"
    assert all(e[2].isdigit() for e in resumed), f"worker-2 resumed at worker-1's checkpoints: {resumed}"
    rc = w2.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{w2.log_tail()}"


@pytest.mark.parametrize("mode", ["POLLING", "FANOUT"])
@pytest.mark.parametrize("outage", ["brief", "beyond-failover"])
def test_daemon_killed_while_the_worker_reads(new_daemon, workers, tmp_path, outage, mode):
    """The daemon dies under a reading worker and comes back on the same port: briefly (the
    worker retries its reads and renewals), or for longer than failoverTimeMillis (the worker
    gives its leases up as not renewed, then takes them again). Polling workers are killed in the
    middle of a backlog; fan-out ones lose their subscriptions."""
    d = new_daemon()
    kinesis = make_client(d.endpoint)
    name = create_stream(kinesis, unique_name("kcl-daemon-crash"), shard_count=2)
    app = unique_name("daemon-crash-app")
    put_sensor_records(kinesis, name, 0, 300)
    records, events, env = recording_env(tmp_path, KCL_BATCH_DELAY=0.05)
    props = kcl_properties(d.endpoint, name, app, RECORDING, "survivor", maxRecords=10, retrievalMode=mode)
    w = workers.start(props, env=env)
    workers.wait_until(
        "60 records recorded", lambda: len(read_recorded(records)) >= 60, describe=lambda: len(read_recorded(records))
    )
    d.kill9()
    if mode == "POLLING":
        assert len(read_recorded(records)) < 300, "everything was processed before the daemon was killed"
    workers.wait_until(
        "the worker notices that the daemon is gone",
        lambda: "reading records: " in w.log() and "renewing the lease of " in w.log(),
        timeout=30,
        interval=0.05,
    )
    if outage == "beyond-failover":
        workers.wait_until(
            "the worker gives up the leases it cannot renew",
            lambda: len(re.findall(r"lease of shardId-\d+ lost: not renewed", w.log())) == 2,
            timeout=30,
        )
    d.start()
    assert w.running, f"sluice kcl exited while the daemon was down; log:\n{w.log_tail()}"
    put_sensor_records(kinesis, name, 300, 100)
    expected = stream_contents(kinesis, name)
    assert sum(len(v) for v in expected.values()) == 400, "acknowledged records survive kill -9"
    workers.wait_until(
        "every acknowledged record recorded after the daemon's restart",
        lambda: missing_records(read_recorded(records), expected) == 0,
        describe=lambda: f"missing {missing_records(read_recorded(records), expected)}",
    )
    assert_at_least_once_in_order(read_recorded(records), expected)
    if outage == "beyond-failover":
        lost = sorted(e[1] for e in read_events(events) if e[0] == "lease_lost")
        assert lost == sorted(expected), f"the processors were told their leases were lost: {lost}"
        for shard in expected:
            assert f"took the lease of {shard} (from survivor)" in w.log(), w.log_tail()
    ddb = ddb_client(d.endpoint)
    want = {shard: recs[-1][0] for shard, recs in expected.items()}
    workers.wait_until(
        "checkpoints at each shard's last record",
        lambda: checkpoints(try_scan(ddb, app)) == want,
        describe=lambda: (checkpoints(try_scan(ddb, app)), want),
    )
    rc = w.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{w.log_tail()}"


def child_leases_waiting(ddb, app: str, children: list[str], worker_id: str):
    """The children's leases once all are held by the worker (their processors wait for the
    parents), else None."""
    leases = try_scan(ddb, app) or {}
    if all(leases.get(c, {}).get("leaseOwner") == worker_id for c in children):
        return leases
    return None


def assert_parents_before_children(recorded, events, parents: list[str], children: list[str]) -> None:
    for c in children:
        child_first = min(i for i, r in enumerate(recorded) if r[0] == c)
        for parent in parents:
            parent_last = max(i for i, r in enumerate(recorded) if r[0] == parent)
            assert child_first > parent_last, (
                f"{c} was processed (line {child_first}) before {parent} ended (line {parent_last})"
            )
    evs = read_events(events)
    for c in children:
        started = min(i for i, e in enumerate(evs) if e[:2] == ["initialize", c])
        for parent in parents:
            ended = evs.index(["shard_ended", parent])
            assert started > ended, f"{c} was initialized before {parent} reached its end: {evs}"


@pytest.mark.parametrize("mode", ["POLLING", "FANOUT"])
def test_split_while_processing_parent_before_children(kinesis, make_stream, endpoint, workers, tmp_path, mode):
    name = make_stream(shard_count=1)
    app = unique_name("split-app")
    put_sensor_records(kinesis, name, 0, 150)
    pause = tmp_path / "pause"
    records, events, env = recording_env(tmp_path, KCL_BATCH_DELAY=0.05, KCL_PAUSE_FILE=pause)
    props = kcl_properties(endpoint, name, app, RECORDING, "split-worker", maxRecords=10, retrievalMode=mode)
    w = workers.start(props, env=env)
    workers.wait_until(
        "30 records recorded", lambda: len(read_recorded(records)) >= 30, describe=lambda: len(read_recorded(records))
    )
    # The parent's processor stalls in its next batch (there is one: records keep coming), so its
    # children's leases (created by the shard sync) are taken while the parent is being processed.
    pause.touch()
    put_sensor_records(kinesis, name, 1000, 20)
    (parent,) = kinesis.list_shards(StreamName=name)["Shards"]
    parent_id = parent["ShardId"]
    lo, hi = int(parent["HashKeyRange"]["StartingHashKey"]), int(parent["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(StreamName=name, ShardToSplit=parent_id, NewStartingHashKey=str((lo + hi) // 2 + 1))
    wait_updated(kinesis, name)
    put_sensor_records(kinesis, name, 150, 150)
    children = sorted(s["ShardId"] for s in list_all_shards(kinesis, name) if s.get("ParentShardId") == parent_id)
    assert len(children) == 2
    expected = stream_contents(kinesis, name)
    assert all(expected[c] for c in children), "records put after the split go to the children"
    ddb = ddb_client(endpoint)
    leases = workers.wait_until(
        "the children's leases held while the parent is processed",
        lambda: child_leases_waiting(ddb, app, children, "split-worker"),
        describe=lambda: try_scan(ddb, app),
    )
    for c in children:
        assert leases[c]["parentShardId"] == [parent_id], leases[c]
        assert leases[c]["checkpoint"] == "TRIM_HORIZON"
    assert leases[parent_id]["checkpoint"] not in ("SHARD_END", "TRIM_HORIZON"), leases[parent_id]
    assert not [r for r in read_recorded(records) if r[0] in children], "children processed before their parent ended"
    assert not [e for e in read_events(events) if e[0] == "initialize" and e[1] in children]
    pause.unlink()
    workers.wait_until(
        "every record of the parent and of both children recorded",
        lambda: missing_records(read_recorded(records), expected) == 0,
        describe=lambda: f"missing {missing_records(read_recorded(records), expected)}",
    )
    recorded = read_recorded(records)
    assert_at_least_once_in_order(recorded, expected)
    assert_parents_before_children(recorded, events, [parent_id], children)

    want = {c: expected[c][-1][0] for c in children}

    def settled():
        leases = try_scan(ddb, app)
        if leases is None:
            return False
        parent_done = parent_id not in leases or leases[parent_id].get("checkpoint") == "SHARD_END"
        return parent_done and {c: leases.get(c, {}).get("checkpoint") for c in children} == want

    workers.wait_until("the parent finished and the children checkpointed", settled, describe=lambda: try_scan(ddb, app))
    leases = scan_leases(ddb, app)
    for c in children:
        assert leases[c]["parentShardId"] == [parent_id], leases[c]
        assert leases[c]["leaseOwner"] == "split-worker"
    if parent_id in leases:
        assert leases[parent_id]["checkpoint"] == "SHARD_END"
        assert leases[parent_id]["childShardIds"] == children
    rc = w.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{w.log_tail()}"


@pytest.mark.parametrize("mode", ["POLLING", "FANOUT"])
def test_merge_while_processing_the_child_waits_for_both_parents(
    kinesis, make_stream, endpoint, workers, tmp_path, mode
):
    name = make_stream(shard_count=2)
    app = unique_name("merge-app")
    first, second = sorted(list_all_shards(kinesis, name), key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    parents = sorted([first["ShardId"], second["ShardId"]])
    put_sensor_records(kinesis, name, 0, 100)
    # The second parent's processor stalls from its first batch on: the first parent ends, the
    # child's lease is taken, and the child must still wait for the second parent.
    pause = tmp_path / "pause"
    pause.touch()
    records, events, env = recording_env(
        tmp_path, KCL_BATCH_DELAY=0.05, KCL_PAUSE_FILE=pause, KCL_PAUSE_SHARD=second["ShardId"]
    )
    props = kcl_properties(endpoint, name, app, RECORDING, "merge-worker", maxRecords=10, retrievalMode=mode)
    w = workers.start(props, env=env)
    first_records = stream_contents(kinesis, name)[first["ShardId"]]
    assert first_records and stream_contents(kinesis, name)[second["ShardId"]]
    workers.wait_until(
        "the first parent's records recorded",
        lambda: len([r for r in read_recorded(records) if r[0] == first["ShardId"]]) >= len(first_records),
        describe=lambda: len(read_recorded(records)),
    )
    kinesis.merge_shards(StreamName=name, ShardToMerge=first["ShardId"], AdjacentShardToMerge=second["ShardId"])
    wait_updated(kinesis, name)
    put_sensor_records(kinesis, name, 100, 60)
    (child,) = [s["ShardId"] for s in list_all_shards(kinesis, name) if s["ShardId"] not in parents]
    expected = stream_contents(kinesis, name)
    assert len(expected[child]) == 60
    ddb = ddb_client(endpoint)

    def first_done_child_waiting():
        leases = child_leases_waiting(ddb, app, [child], "merge-worker")
        if leases and (first["ShardId"] not in leases or leases[first["ShardId"]].get("checkpoint") == "SHARD_END"):
            return leases
        return None

    leases = workers.wait_until(
        "the first parent finished and the child's lease held while the second parent is processed",
        first_done_child_waiting,
        describe=lambda: try_scan(ddb, app),
    )
    assert leases[child]["parentShardId"] == parents, leases[child]
    assert leases[second["ShardId"]]["checkpoint"] == "TRIM_HORIZON", "the second parent has not checkpointed yet"
    assert ["shard_ended", first["ShardId"]] in read_events(events)
    assert not [r for r in read_recorded(records) if r[0] in (child, second["ShardId"])]
    assert not [e for e in read_events(events) if e[0] == "initialize" and e[1] == child], "the child started early"
    pause.unlink()
    workers.wait_until(
        "every record of both parents and of the child recorded",
        lambda: missing_records(read_recorded(records), expected) == 0,
        describe=lambda: f"missing {missing_records(read_recorded(records), expected)}",
    )
    recorded = read_recorded(records)
    assert_at_least_once_in_order(recorded, expected)
    assert_parents_before_children(recorded, events, parents, [child])

    def settled():
        leases = try_scan(ddb, app)
        if leases is None:
            return False
        parents_done = all(p not in leases or leases[p].get("checkpoint") == "SHARD_END" for p in parents)
        return parents_done and leases.get(child, {}).get("checkpoint") == expected[child][-1][0]

    workers.wait_until("both parents finished and the child checkpointed", settled, describe=lambda: try_scan(ddb, app))
    leases = scan_leases(ddb, app)
    assert leases[child]["parentShardId"] == parents, leases[child]
    for parent in parents:
        if parent in leases:
            assert leases[parent]["childShardIds"] == [child], leases[parent]
    rc = w.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{w.log_tail()}"


def test_sigterm_to_the_workers_process_group_reaches_processors_only_through_the_protocol(
    kinesis, make_stream, endpoint, workers, tmp_path
):
    """A service manager or a terminal signals the whole process group: the processors, in
    groups of their own, are not hit by the signal but asked to shut down (shutdownRequested),
    checkpoint, and exit; the worker gives its leases up and exits 0."""
    name = make_stream(shard_count=2)
    app = unique_name("group-app")
    put_sensor_records(kinesis, name, 0, 100)
    records, events, env = recording_env(tmp_path)
    w = workers.start(kcl_properties(endpoint, name, app, RECORDING, "group-worker"), env=env, own_process_group=True)
    expected = stream_contents(kinesis, name)
    workers.wait_until(
        "every record recorded",
        lambda: missing_records(read_recorded(records), expected) == 0,
        describe=lambda: f"missing {missing_records(read_recorded(records), expected)}",
    )
    children = {e[1]: int(e[4]) for e in read_events(events) if e[0] == "initialize"}
    assert sorted(children) == sorted(expected)
    for pid in children.values():
        assert os.getpgid(pid) == pid, "each record processor leads a process group of its own"
        assert os.getpgid(pid) != os.getpgid(w.proc.pid)
    os.killpg(w.proc.pid, signal.SIGTERM)
    try:
        rc = w.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sluice kcl did not stop within 60s of SIGTERM to its group\n{workers.logs()}")
    assert rc == 0, f"sluice kcl exited {rc}; log:\n{w.log_tail()}"
    asked = sorted(e[1] for e in read_events(events) if e[0] == "shutdown_requested")
    assert asked == sorted(expected), f"shutdownRequested per shard: {asked}"
    workers.wait_until(
        "the record processors exited",
        lambda: all(process_gone(pid) for pid in children.values()),
        timeout=20,
        describe=lambda: [pid for pid in children.values() if not process_gone(pid)],
    )
    leases = scan_leases(ddb_client(endpoint), app)
    assert [k for k, l in leases.items() if "leaseOwner" in l] == [], leases
    assert checkpoints(leases) == {shard: recs[-1][0] for shard, recs in expected.items()}
    assert_at_least_once_in_order(read_recorded(records), expected)
    assert len(read_recorded(records)) == 100


# ---------------------------------------------------------------------------------------------
# 4. Balancing


def test_leases_balance_across_workers_and_after_one_dies(kinesis, make_stream, endpoint, workers, tmp_path):
    name = make_stream(shard_count=6)
    app = unique_name("balance-app")
    records, events, env = recording_env(tmp_path)
    props = kcl_properties(endpoint, name, app, RECORDING, "worker-a", maxRecords=50)
    producer = Producer(endpoint, name)
    producer.start()
    ddb = ddb_client(endpoint)
    try:
        workers.start(props, env=env)
        workers.wait_until(
            "worker-a holds all 6 leases",
            lambda: owners(try_scan(ddb, app)) == Counter({"worker-a": 6}),
            describe=lambda: owners(try_scan(ddb, app)),
        )
        workers.start({**props, "workerId": "worker-b"}, env=env)
        c = workers.start({**props, "workerId": "worker-c"}, env=env)
        workers.wait_until(
            "two leases each for worker-a, worker-b and worker-c",
            lambda: owners(try_scan(ddb, app)) == Counter({"worker-a": 2, "worker-b": 2, "worker-c": 2}),
            describe=lambda: owners(try_scan(ddb, app)),
        )
        of_c = sorted(k for k, l in scan_leases(ddb, app).items() if l.get("leaseOwner") == "worker-c")
        c.kill9()
        workers.wait_until(
            "three leases each for worker-a and worker-b after worker-c died",
            lambda: owners(try_scan(ddb, app)) == Counter({"worker-a": 3, "worker-b": 3}),
            describe=lambda: owners(try_scan(ddb, app)),
        )
        logs = "".join(w.log() for n, w in workers.started if n != "worker-c")
        for key in of_c:
            assert f"took the lease of {key} (from worker-c)" in logs, f"{key} of the dead worker-c\n{workers.logs()}"
    finally:
        put = producer.stop()
    assert put > 0
    expected = stream_contents(kinesis, name)
    assert sum(len(v) for v in expected.values()) == put
    workers.wait_until(
        "every record put during the rebalancing recorded",
        lambda: missing_records(read_recorded(records), expected) == 0,
        describe=lambda: f"missing {missing_records(read_recorded(records), expected)}",
    )
    assert_at_least_once_in_order(read_recorded(records), expected)
    lost = [e for e in read_events(events) if e[0] == "lease_lost"]
    assert len(lost) >= 4, f"worker-a gave up 4 leases to the newcomers, and its processors were told: {lost}"


# ---------------------------------------------------------------------------------------------
# 5. The children's own output


def test_stray_output_of_record_processors_is_logged_and_skipped(kinesis, make_stream, endpoint, workers, tmp_path):
    """A processor speaking the protocol by hand, its stdout cluttered around every message:
    the junk is logged with the shard's id and skipped, and the protocol still works (messages as
    documented, explicit checkpoints taken, a non-numeric one refused)."""
    name = make_stream(shard_count=2)
    app = unique_name("noisy-app")
    put_sensor_records(kinesis, name, 0, 80)
    records = tmp_path / "records.txt"
    events = tmp_path / "events.txt"
    w = workers.start(
        kcl_properties(endpoint, name, app, NOISY, "noisy-worker", maxRecords=20),
        env={"KCL_RECORD_FILE": str(records), "KCL_EVENTS_FILE": str(events)},
    )
    expected = stream_contents(kinesis, name)
    workers.wait_until(
        "every record recorded by the noisy processor",
        lambda: missing_records(read_recorded(records), expected) == 0,
        describe=lambda: f"missing {missing_records(read_recorded(records), expected)}",
    )
    recorded = read_recorded(records)
    assert_at_least_once_in_order(recorded, expected)
    assert len(recorded) == 80, "no failure: every record exactly once"
    ddb = ddb_client(endpoint)
    want = {shard: recs[-1][0] for shard, recs in expected.items()}
    workers.wait_until(
        "its explicit checkpoints went through between the junk",
        lambda: checkpoints(try_scan(ddb, app)) == want,
        describe=lambda: (checkpoints(try_scan(ddb, app)), want),
    )
    rc = w.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{w.log_tail()}"

    log = w.log()
    for shard in expected:
        for line in (
            f"{shard} stdout: NOISE plain text from {shard}",
            f'{shard} stdout: {{"noise": "{shard}"}}',
            f"{shard} stdout: [1, 2, 3]",
            f"{shard} stdout: {{not json from {shard}",
            f"{shard} stderr: NOISE-ERR {shard} got a batch of",
        ):
            assert line in log, f"{line!r} not in the log:\n{w.log_tail()}"
    assert not re.search(r"stdout:\s*$", log, re.M), "blank lines are skipped, not logged"

    evs = read_events(events)
    assert sorted(e[1:] for e in evs if e[0] == "initialize") == sorted([s, "TRIM_HORIZON", "0"] for s in expected)
    replies = [e for e in evs if e[0] == "checkpoint_reply"]
    bad = [e for e in replies if e[2] == "not-a-number"]
    good = [e for e in replies if e[2].isdigit()]
    assert bad and all(e[3] == "IllegalArgumentException" for e in bad), bad
    assert good and all(e[3] == "null" for e in good), good
    assert {e[1]: e[2] for e in good} == want, "the last explicit checkpoint of each shard is its last record"
    # Shutdown: a checkpoint without a sequence number, nothing new delivered: accepted.
    assert [e for e in replies if e[2] == "None"] and all(e[3] == "null" for e in replies if e[2] == "None")
    # Records as the protocol gives them, with the arrival time in epoch milliseconds.
    arrival = {
        (shard, r["SequenceNumber"]): round(r["ApproximateArrivalTimestamp"].timestamp() * 1000)
        for shard, recs in read_stream(kinesis, name).items()
        for r in recs
    }
    data = {(shard, seq): json.loads(d) for shard, seq, _, d in recorded}
    shapes = [e for e in evs if e[0] == "record"]
    assert len(shapes) == 80
    for _, shard, seq, keys, partition_key, ts in shapes:
        assert keys == "action,approximateArrivalTimestamp,data,partitionKey,sequenceNumber,subSequenceNumber", keys
        assert partition_key == data[(shard, seq)]["sensor_id"]
        assert abs(int(ts) - arrival[(shard, seq)]) <= 1, (ts, arrival[(shard, seq)])


# ---------------------------------------------------------------------------------------------
# 6. Bad properties files


def run_kcl(properties: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(sluice_binary()), "kcl", "--properties-file", str(properties)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1", "SLUICE_LOG": "info"},
    )


@pytest.mark.parametrize(
    "drop, override, key",
    [
        ("executableName", {}, "executableName"),
        ("streamName", {}, "streamName"),
        ("applicationName", {}, "applicationName"),
        (None, {"initialPositionInStream": "SOMEWHERE"}, "initialPositionInStream"),
        (None, {"failoverTimeMillis": "soon"}, "failoverTimeMillis"),
    ],
)
def test_bad_properties_exit_non_zero_naming_the_key(endpoint, tmp_path, drop, override, key):
    props = {**kcl_properties(endpoint, "some-stream", unique_name("bad-app"), SEED, "bad-worker"), **override}
    if drop:
        props.pop(drop)
    path = write_properties(tmp_path / "bad.properties", props)
    out = run_kcl(path)
    assert out.returncode != 0, f"exit 0 for a file without a valid {key}; stderr:\n{out.stderr}"
    assert key in out.stderr, out.stderr


def test_missing_properties_file(tmp_path):
    path = tmp_path / "nowhere.properties"
    out = run_kcl(path)
    assert out.returncode != 0
    assert str(path) in out.stderr, out.stderr


def test_unknown_properties_are_logged_and_ignored(kinesis, make_stream, endpoint, workers):
    name = make_stream(shard_count=1)
    app = unique_name("lenient-app")
    put_sensor_records(kinesis, name, 0, 10)
    props = kcl_properties(endpoint, name, app, SEED, "lenient-worker", someFutureSetting="42")
    w = workers.start(props)
    workers.wait_until(
        "the unknown key is reported",
        lambda: "unknown key someFutureSetting ignored" in w.log(),
        timeout=30,
    )
    ids = {f"sensor-{i}" for i in range(10)}
    workers.wait_until(
        "the worker runs regardless and processes every record",
        lambda: ids <= set(processed_sensors(w.log())),
        describe=lambda: processed_sensors(w.log()),
    )
    rc = w.terminate()
    assert rc == 0, f"sluice kcl exited {rc} on SIGTERM; log:\n{w.log_tail()}"
