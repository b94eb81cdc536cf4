"""Shared fixtures for the Python compatibility suite.

Every test talks to the real `sluice` binary over HTTP, exactly as an AWS client would:

* ``daemon`` / ``endpoint``: one daemon for the whole session, on a temp dir and a free port,
  stopped with SIGTERM at the end (and it must exit 0).
* ``kinesis``: a boto3 Kinesis client for that daemon (no retries, so errors surface as-is).
* ``kinesis_unvalidated``: the same without botocore's client-side parameter validation, for
  sending requests that only the server may refuse (empty partition key, Limit=0, ...).
* ``make_stream``: creates a uniquely named stream, waits for ACTIVE by polling, deletes it after.
* ``new_daemon``: a factory for extra daemons (own data dir, own config) that can be stopped,
  ``kill -9``-ed and restarted on the same data dir and port.

The binary is $SLUICE_BIN, else target/release/sluice if it exists, else target/debug/sluice.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]

# Dummy credentials: the daemon does not verify signatures, and real credentials must never be
# picked up (or sent anywhere) by accident. Set at import so that subprocesses inherit them too.
os.environ["AWS_ACCESS_KEY_ID"] = "x"
os.environ["AWS_SECRET_ACCESS_KEY"] = "x"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS"):
    os.environ.pop(_var, None)

# Status changes are immediate on the shared daemon so that tests never wait on them.
FAST_CONFIG = '[streams]\ncreate_delay = "0ms"\ndelete_delay = "0ms"\n'

MAX_HASH_KEY = 2**128 - 1


def sluice_binary() -> Path:
    env = os.environ.get("SLUICE_BIN")
    if env:
        return Path(env)
    release = REPO_ROOT / "target" / "release" / "sluice"
    if release.exists():
        return release
    return REPO_ROOT / "target" / "debug" / "sluice"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate_process(proc: subprocess.Popen | None, timeout: float, what: str, log_tail) -> int:
    """SIGTERM, then waits; returns the exit code (SIGKILL and a failure after `timeout`)."""
    assert proc is not None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{what} did not stop within {timeout}s of SIGTERM; log:\n{log_tail()}")


class Daemon:
    """One sluice process at a time on a fixed data dir; restartable on the same port."""

    def __init__(self, workdir: Path, config: str = FAST_CONFIG, binary: Path | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "sluice.toml"
        self.config_path.write_text(config)
        self.log_path = self.workdir / "sluice.log"
        self.binary = Path(binary) if binary else sluice_binary()
        self.port: int | None = None
        self.push_port: int = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def endpoint(self) -> str:
        assert self.port is not None, "daemon was never started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _spawn(self, port: int) -> subprocess.Popen:
        if not self.binary.exists():
            pytest.fail(f"sluice binary not found at {self.binary} (set SLUICE_BIN)")
        log = open(self.log_path, "ab")
        log.write(f"--- start #{self.starts + 1} on port {port} ---\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                [
                    str(self.binary),
                    "serve",
                    "--config", str(self.config_path),
                    "--data-dir", str(self.data_dir),
                    "--listen", f"127.0.0.1:{port}",
                    "--push-listen", f"127.0.0.1:{self.push_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NO_COLOR": "1", "SLUICE_LOG": "info"},
            )
        finally:
            log.close()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/healthz", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 30.0) -> "Daemon":
        """Starts the daemon (on its previous port if it had one) and waits for /healthz."""
        assert not self.running, "already running"
        keep_port = self.port is not None
        for attempt in range(5):
            if not keep_port:
                self.port = free_port()
                self.push_port = free_port()
                while self.push_port == self.port:
                    self.push_port = free_port()
            self.proc = self._spawn(self.port)
            self.starts += 1
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    break
                if self._healthy():
                    return self
                time.sleep(0.01)
            else:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"sluice did not become healthy in {timeout}s; log:\n{self.log_tail()}")
            # Exited during start-up. A port taken between free_port() and bind is retried.
            if "binding" in self.log_tail(5) and attempt < 4:
                if keep_port:
                    time.sleep(0.2)
                continue
            pytest.fail(
                f"{self.binary} exited with {rc} during start-up instead of serving "
                f"(set SLUICE_BIN to choose another binary); log:\n{self.log_tail()}"
            )
        pytest.fail("could not start sluice")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then waits; returns the exit code."""
        return terminate_process(self.proc, timeout, "sluice", self.log_tail)

    def kill9(self) -> None:
        """SIGKILL: no chance to sync or flush anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def restart(self, kill: bool = False) -> "Daemon":
        """Stops (SIGTERM, or SIGKILL if `kill`) and starts again on the same data dir and port."""
        if kill:
            self.kill9()
        else:
            rc = self.stop()
            assert rc == 0, f"sluice exited with {rc} on SIGTERM; log:\n{self.log_tail()}"
        return self.start()


def make_client(endpoint: str, validate: bool = True, service: str = "kinesis"):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            parameter_validation=validate,
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def unique_name(prefix: str = "compat") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_active(client, name: str, timeout: float = 10.0) -> dict:
    """Polls DescribeStreamSummary until ACTIVE (boto3's waiter would sleep 10 s per try)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if last["StreamStatus"] == "ACTIVE":
            return last
        assert last["StreamStatus"] == "CREATING", last
        time.sleep(0.01)
    raise AssertionError(f"stream {name} not ACTIVE after {timeout}s: {last}")


def wait_gone(client, name: str, timeout: float = 10.0) -> None:
    """Polls DescribeStreamSummary until ResourceNotFoundException."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ResourceNotFoundException", e.response
            return
        assert s["StreamStatus"] == "DELETING", s
        time.sleep(0.01)
    raise AssertionError(f"stream {name} still exists {timeout}s after DeleteStream")


def create_stream(client, name: str | None = None, shard_count: int | None = 2, mode: str | None = None, **kw) -> str:
    name = name or unique_name()
    args = {"StreamName": name, **kw}
    if shard_count is not None:
        args["ShardCount"] = shard_count
    if mode is not None:
        args["StreamModeDetails"] = {"StreamMode": mode}
    client.create_stream(**args)
    wait_active(client, name)
    return name


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def hash_key(partition_key: str) -> int:
    """Kinesis routing: MD5 of the UTF-8 partition key as a big-endian 128-bit integer."""
    return int(hashlib.md5(partition_key.encode("utf-8")).hexdigest(), 16)


def list_all_shards(client, name: str) -> list[dict]:
    shards, token = [], None
    while True:
        r = client.list_shards(NextToken=token) if token else client.list_shards(StreamName=name)
        shards += r["Shards"]
        token = r.get("NextToken")
        if not token:
            return shards


def shard_for_hash(shards: list[dict], h: int) -> str:
    owners = [
        s["ShardId"]
        for s in shards
        if int(s["HashKeyRange"]["StartingHashKey"]) <= h <= int(s["HashKeyRange"]["EndingHashKey"])
    ]
    assert len(owners) == 1, f"hash {h} is owned by {owners}"
    return owners[0]


def read_shard(client, name: str, shard_id: str, iterator_type: str = "TRIM_HORIZON", limit: int | None = None, **kw) -> list[dict]:
    """Reads a shard from an iterator to the current end; returns the records in order."""
    it = client.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType=iterator_type, **kw)["ShardIterator"]
    records = []
    for _ in range(100_000):
        r = client.get_records(ShardIterator=it, **({"Limit": limit} if limit else {}))
        records += r["Records"]
        if not r["Records"] and r["MillisBehindLatest"] == 0:
            return records
        it = r.get("NextShardIterator")
        if it is None:  # closed shard, fully read
            return records
    raise AssertionError("shard never reached its end")


def read_stream(client, name: str) -> dict[str, list[dict]]:
    """Every shard's records from TRIM_HORIZON to the end, by shard id."""
    return {s["ShardId"]: read_shard(client, name, s["ShardId"]) for s in list_all_shards(client, name)}


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("sluice-session"))
    d.start()
    yield d
    rc = d.stop()
    assert rc == 0, f"sluice exited with {rc} on SIGTERM; log:\n{d.log_tail()}"


@pytest.fixture(scope="session")
def endpoint(daemon) -> str:
    return daemon.endpoint


@pytest.fixture(scope="session")
def kinesis(endpoint):
    return make_client(endpoint)


@pytest.fixture(scope="session")
def kinesis_unvalidated(endpoint):
    return make_client(endpoint, validate=False)


@pytest.fixture
def make_stream(kinesis):
    """make_stream(shard_count=2, mode=None, name=None, client=kinesis, **create_args) -> name."""
    created = []

    def _make(shard_count=2, mode=None, name=None, client=None, **kw):
        c = client or kinesis
        n = create_stream(c, name, shard_count=shard_count, mode=mode, **kw)
        created.append((c, n))
        return n

    yield _make
    for c, n in created:
        try:
            c.delete_stream(StreamName=n)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
        except Exception:
            pass  # a daemon that a test already stopped


@pytest.fixture
def new_daemon(tmp_path_factory):
    """new_daemon(config=FAST_CONFIG) -> a started Daemon; stopped (SIGTERM, exit 0) after the test."""
    daemons = []

    def _new(config: str = FAST_CONFIG) -> Daemon:
        d = Daemon(tmp_path_factory.mktemp("sluice-extra"), config=config)
        daemons.append(d)
        return d.start()

    yield _new
    for d in daemons:
        if d.running:
            rc = d.stop()
            assert rc == 0, f"sluice exited with {rc} on SIGTERM; log:\n{d.log_tail()}"
