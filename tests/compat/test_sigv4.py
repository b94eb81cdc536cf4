"""`[auth] mode = "sigv4"`: every request's AWS Signature Version 4 verified against
`[[auth.keys]]`, on every service (Kinesis, DynamoDB, Firehose, Kinesis Analytics), by the real
clients (boto3, signing as it always does), with AWS's answers when it fails:

* the right key works on each service, in the Authorization header and in the query string;
* a wrong secret, a body changed after signing (the payload hash), a signed header changed
  after signing (a replay with a tampered target), a request dated 6 minutes off, and a
  credential scoped to another service: InvalidSignatureException;
* an access key the daemon does not know: UnrecognizedClientException;
* no signature at all: MissingAuthenticationTokenException; a malformed Authorization header:
  IncompleteSignatureException;
* and nothing is executed for a request that fails (the stream it would create does not exist).
* The daemon refuses to start on a non-loopback address without `sigv4`, unless
  `auth.allow_unauthenticated = true`; a secret can come from a file or an environment variable.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import urllib.error
import urllib.request
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import FAST_CONFIG, free_port, sluice_binary, unique_name

KEY_ID, SECRET = "AKIDSLUICETEST", "sluice/secret+key"
SIGV4_CONFIG = FAST_CONFIG + f'[auth]\nmode = "sigv4"\n[[auth.keys]]\naccess_key_id = "{KEY_ID}"\nsecret_access_key = "{SECRET}"\n'


def client(endpoint: str, service: str = "kinesis", key: str = KEY_ID, secret: str = SECRET):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def signed(new_daemon):
    return new_daemon(SIGV4_CONFIG)


def code_of(fn, *a, **kw) -> str:
    with pytest.raises(ClientError) as ei:
        fn(*a, **kw)
    return ei.value.response["Error"]["Code"]


def raw(endpoint: str, target: str, body: bytes, headers: dict, query: str = "") -> tuple[int, dict]:
    req = urllib.request.Request(endpoint + "/" + (f"?{query}" if query else ""), data=body, method="POST")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class BodyQueryAuth(SigV4QueryAuth):
    """The query-string form over a request that keeps its body (botocore's presigner moves a
    body's members into the query string, which a JSON service cannot take): the payload hash is
    the body's, as the SigV4 specification has it."""

    def _modify_request_before_signing(self, request):
        data, request.data = request.data, b""
        super()._modify_request_before_signing(request)
        request.data = data


def signed_request(endpoint: str, target: str, body: bytes, when: datetime.datetime | None = None,
                   service: str = "kinesis", query: bool = False) -> AWSRequest:
    req = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    creds = Credentials(KEY_ID, SECRET)
    auth = BodyQueryAuth(creds, service, "us-east-1", expires=60) if query else SigV4Auth(creds, service, "us-east-1")
    if when is None:
        auth.add_auth(req)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            auth.add_auth(req)
    return req


def send(req: AWSRequest, body: bytes | None = None, **override) -> tuple[int, dict]:
    headers = {k: v for k, v in req.headers.items()}
    headers.update(override)
    url = req.url
    query = url.split("?", 1)[1] if "?" in url else ""
    endpoint = url.split("/?", 1)[0].rstrip("/")
    return raw(endpoint, headers.get("X-Amz-Target", ""), req.body if body is None else body, headers, query)


def stream_exists(k, name: str) -> bool:
    return name in k.list_streams()["StreamNames"]


def test_the_right_key_works_on_every_service(signed):
    k = client(signed.endpoint)
    name = unique_name()
    k.create_stream(StreamName=name, ShardCount=1)
    k.put_record(StreamName=name, Data=b"x", PartitionKey="p")
    assert k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert client(signed.endpoint, "dynamodb").list_tables()["TableNames"] == []
    assert client(signed.endpoint, "firehose").list_delivery_streams()["DeliveryStreamNames"] == []
    assert client(signed.endpoint, "kinesisanalytics").list_applications()["ApplicationSummaries"] == []
    # The query-string form, as botocore presigns it.
    status, body = send(signed_request(signed.endpoint, "Kinesis_20131202.ListStreams", b"{}", query=True))
    assert status == 200 and name in body["StreamNames"], body


def test_failures_answer_as_aws_and_change_nothing(signed):
    k = client(signed.endpoint)
    name = unique_name()
    create = json.dumps({"StreamName": name, "ShardCount": 1}).encode()
    target = "Kinesis_20131202.CreateStream"

    assert code_of(client(signed.endpoint, secret="wrong").create_stream, StreamName=name, ShardCount=1) == (
        "InvalidSignatureException"
    )
    assert code_of(client(signed.endpoint, key="AKIDUNKNOWN").create_stream, StreamName=name, ShardCount=1) == (
        "UnrecognizedClientException"
    )
    # A body changed after signing: the payload hash no longer matches.
    req = signed_request(signed.endpoint, target, create)
    status, body = send(req, body=json.dumps({"StreamName": name, "ShardCount": 2}).encode())
    assert (status, body["__type"]) == (400, "InvalidSignatureException"), body
    # The same signed request replayed with another target.
    status, body = send(req, **{"X-Amz-Target": "Kinesis_20131202.DeleteStream"})
    assert (status, body["__type"]) == (400, "InvalidSignatureException"), body
    # Dated six minutes ago, or six minutes ahead.
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    for skew in (-6, 6):
        status, body = send(signed_request(signed.endpoint, target, create, when=now + datetime.timedelta(minutes=skew)))
        assert (status, body["__type"]) == (400, "InvalidSignatureException"), body
        assert "Signature expired" in body["message"] or "not yet current" in body["message"]
    # Signed for another service.
    status, body = send(signed_request(signed.endpoint, target, create, service="firehose"))
    assert (status, body["__type"]) == (400, "InvalidSignatureException"), body
    # Unsigned, and malformed.
    status, body = raw(signed.endpoint, target, create, {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
    assert (status, body["__type"]) == (400, "MissingAuthenticationTokenException"), body
    status, body = raw(
        signed.endpoint,
        target,
        create,
        {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": target,
            "X-Amz-Date": "20260101T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, Signature=00",
        },
    )
    assert (status, body["__type"]) == (400, "IncompleteSignatureException"), body
    assert not stream_exists(k, name), "no failed request was executed"
    # The untampered request goes through.
    status, body = send(signed_request(signed.endpoint, target, create))
    assert status == 200, body
    assert stream_exists(k, name)


def start_and_wait(args: list[str], env: dict | None = None, timeout: float = 10.0) -> tuple[int | None, str]:
    """Starts the binary; returns (exit code or None if it is still running after `timeout`, log)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        return None, out.decode(errors="replace")


def test_non_loopback_listen_needs_sigv4(tmp_path):
    binary = str(sluice_binary())
    port, push = free_port(), free_port()
    base = [binary, "serve", "--data-dir", str(tmp_path / "d"), "--listen", f"0.0.0.0:{port}",
            "--push-listen", f"127.0.0.1:{push}"]
    rc, log = start_and_wait(base)
    assert rc not in (0, None) and "refusing to listen on 0.0.0.0" in log, log
    cfg = tmp_path / "open.toml"
    cfg.write_text("[auth]\nallow_unauthenticated = true\n")
    rc, log = start_and_wait(base + ["--config", str(cfg)], timeout=3)
    assert rc is None, f"started on purpose, unauthenticated; log:\n{log}"
    # sigv4, with the secret from a file and from the environment.
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    cfg.write_text(
        f'[auth]\nmode = "sigv4"\n[[auth.keys]]\naccess_key_id = "{KEY_ID}"\nsecret_access_key_file = "{secret_file}"\n'
        f'[[auth.keys]]\naccess_key_id = "AKIDENV"\nsecret_access_key_env = "SLUICE_TEST_SECRET"\n'
    )
    rc, log = start_and_wait(base + ["--config", str(cfg)], env={"SLUICE_TEST_SECRET": "s3cret"}, timeout=3)
    assert rc is None, log
    rc, log = start_and_wait(base + ["--config", str(cfg)], timeout=3)
    assert rc not in (0, None) and "SLUICE_TEST_SECRET" in log, log


def test_keys_from_a_file_and_the_environment_sign(new_daemon, tmp_path, monkeypatch):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    monkeypatch.setenv("SLUICE_TEST_SECRET", "env-secret")
    d = new_daemon(
        FAST_CONFIG
        + f'[auth]\nmode = "sigv4"\n[[auth.keys]]\naccess_key_id = "{KEY_ID}"\nsecret_access_key_file = "{secret_file}"\n'
        + '[[auth.keys]]\naccess_key_id = "AKIDENV"\nsecret_access_key_env = "SLUICE_TEST_SECRET"\n'
    )
    assert "StreamNames" in client(d.endpoint).list_streams()
    assert "StreamNames" in client(d.endpoint, key="AKIDENV", secret="env-secret").list_streams()
    assert code_of(client(d.endpoint, key="AKIDENV", secret=SECRET).list_streams) == "InvalidSignatureException"
