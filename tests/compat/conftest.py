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

With SLUICE_SECURE=1 the whole suite runs against daemons in production shape: `[auth] mode =
"sigv4"` with one key, which every client signs with, and `[tls]` with a certificate made for the
run, which every client trusts (AWS_CA_BUNDLE for botocore and the AWS CLI, NODE_EXTRA_CA_CERTS for
the JS SDK, SSL_CERT_FILE for urllib and the daemon's own clients). A test that sets its own
`[auth]` or `[tls]` keeps it. Raw HTTP tests sign with the suite's key and speak HTTPS too
(`http_connection`, `signing_credentials`).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
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

SECURE = os.environ.get("SLUICE_SECURE") == "1"
# Test credentials: by default the daemon does not verify signatures; in secure mode it knows this
# one key. Real credentials must never be picked up (or sent anywhere) by accident. Set at import
# so that subprocesses inherit them too.
CLIENT_KEY_ID, CLIENT_SECRET = ("AKIDSLUICESUITE", "sluice-suite/secret+key") if SECURE else ("x", "x")
os.environ["AWS_ACCESS_KEY_ID"] = CLIENT_KEY_ID
os.environ["AWS_SECRET_ACCESS_KEY"] = CLIENT_SECRET
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS"):
    os.environ.pop(_var, None)

# Status changes are immediate on the shared daemon so that tests never wait on them.
FAST_CONFIG = '[streams]\ncreate_delay = "0ms"\ndelete_delay = "0ms"\n'


def make_certificate(directory: Path, ca: tuple[Path, Path] | None = None) -> tuple[Path, Path, Path]:
    """A server certificate for 127.0.0.1 and localhost, issued by a test CA (openssl), which is
    made in `directory` unless `ca` (its certificate and key) is given. Returns (cert, key, ca cert);
    clients trust the CA's certificate."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    if ca is None:
        ca = directory / "ca.pem", directory / "ca.key"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(ca[1]), "-out", str(ca[0]), "-days", "2", "-subj", "/CN=sluice test CA")
    n = len(list(directory.glob("server*.pem")))
    cert, key, csr = directory / f"server{n}.pem", directory / f"server{n}.key", directory / f"server{n}.csr"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
            "-out", str(csr), "-subj", "/CN=localhost")
    ext = directory / f"server{n}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key, ca[0]


if SECURE:
    import tempfile

    _SECURE_DIR = Path(tempfile.mkdtemp(prefix="sluice-secure-"))
    TLS_CERT, TLS_KEY, TLS_CA = make_certificate(_SECURE_DIR)
    for _var in ("AWS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"):
        os.environ[_var] = str(TLS_CA)
    METRICS_TOKEN = "sluice-suite-metrics-token"
    (_SECURE_DIR / "metrics.token").write_text(METRICS_TOKEN)
    SECURE_AUTH = (
        f'[auth]\nmode = "sigv4"\nmetrics_token_file = "{_SECURE_DIR / "metrics.token"}"\n'
        f'[[auth.keys]]\naccess_key_id = "{CLIENT_KEY_ID}"\nsecret_access_key = "{CLIENT_SECRET}"\n'
    )
    SECURE_TLS = f'[tls]\ncert_file = "{TLS_CERT}"\nkey_file = "{TLS_KEY}"\n'


def http_connection(endpoint: str, timeout: float = 30):
    """An http.client connection to `endpoint`: HTTPS (trusting the run's certificate) or plain."""
    import http.client
    import ssl
    import urllib.parse

    u = urllib.parse.urlsplit(endpoint)
    if u.scheme == "https":
        return http.client.HTTPSConnection(
            u.hostname, u.port, timeout=timeout, context=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        )
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


def metrics_text(endpoint: str) -> str:
    """GET /metrics (with the bearer token in secure mode); asserts a 200."""
    req = urllib.request.Request(endpoint + "/metrics")
    if SECURE:
        req.add_header("Authorization", f"Bearer {METRICS_TOKEN}")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def signing_credentials():
    """botocore Credentials of the suite's key."""
    from botocore.credentials import Credentials

    return Credentials(CLIENT_KEY_ID, CLIENT_SECRET)


def secured(config: str) -> str:
    """In secure mode, the config with sigv4 and TLS unless it sets [auth] or [tls] itself."""
    if not SECURE:
        return config
    if "[auth]" not in config and "[[auth.keys]]" not in config:
        config += "\n" + SECURE_AUTH
    if "[tls]" not in config:
        config += "\n" + SECURE_TLS
    return config


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
        self.config_path.write_text(secured(config))
        self.tls = "[tls]" in secured(config)
        self.log_path = self.workdir / "sluice.log"
        self.binary = Path(binary) if binary else sluice_binary()
        self.port: int | None = None
        self.push_port: int = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def endpoint(self) -> str:
        assert self.port is not None, "daemon was never started"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

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
            # Whether it answers, not who it is: the certificate is checked by the tests' clients.
            context = ssl._create_unverified_context() if self.tls else None
            with urllib.request.urlopen(self.endpoint + "/healthz", timeout=2, context=context) as r:
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
        aws_access_key_id=CLIENT_KEY_ID,
        aws_secret_access_key=CLIENT_SECRET,
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
