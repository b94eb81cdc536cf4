"""Firehose's HTTP endpoint destination against a capture server started here: Firehose's
request format and headers, GZIP content encoding, retries with the same request id until the
endpoint accepts, and the S3 backup (`http-endpoint-failed`) when it never does."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import FAST_CONFIG, make_client, unique_name

ROLE = "arn:aws:iam::123456789012:role/FirehoseRole"


class Capture:
    """Answers 500 to the first `fail` requests (all, if negative), then accepts."""

    def __init__(self, fail: int):
        self.fail = fail
        self.requests: list[tuple[dict, bytes, int]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                n = len(capture.requests)
                ok = capture.fail >= 0 and n >= capture.fail
                capture.requests.append(({k.lower(): v for k, v in self.headers.items()}, body, 200 if ok else 500))
                if ok:
                    raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                    rid = json.loads(raw)["requestId"]
                    out = json.dumps({"requestId": rid, "timestamp": int(time.time() * 1000)}).encode()
                    self.send_response(200)
                else:
                    out = b'{"errorMessage": "not yet"}'
                    self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ingest"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def capture():
    made = []

    def _new(fail: int) -> Capture:
        c = Capture(fail)
        made.append(c)
        return c

    yield _new
    for c in made:
        c.server.shutdown()


def setup(new_daemon, url: str, retry_s: int, bucket: str, gzip_body: bool = True):
    d = new_daemon(FAST_CONFIG + '[delivery]\nbuffering_interval_cap = "1s"\n')
    fh = make_client(d.endpoint, service="firehose")
    name = unique_name("to-http")
    fh.create_delivery_stream(
        DeliveryStreamName=name,
        HttpEndpointDestinationConfiguration={
            "EndpointConfiguration": {"Url": url, "Name": "capture", "AccessKey": "secret-key"},
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
            "RequestConfiguration": {
                "ContentEncoding": "GZIP" if gzip_body else "NONE",
                "CommonAttributes": [{"AttributeName": "team", "AttributeValue": "sensors"}],
            },
            "RetryOptions": {"DurationInSeconds": retry_s},
            "S3BackupMode": "FailedDataOnly",
            "S3Configuration": {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", "ErrorOutputPrefix": "failed/"},
        },
    )
    return d, fh, name


def wait_for(pred, what, d, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; log:\n{d.log_tail()}")


def test_retried_until_accepted_with_a_stable_request_id(new_daemon, capture):
    cap = capture(fail=2)
    d, fh, name = setup(new_daemon, cap.url, retry_s=60, bucket="http-backup")
    desc = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    h = desc["Destinations"][0]["HttpEndpointDestinationDescription"]
    assert h["EndpointConfiguration"] == {"Url": cap.url, "Name": "capture"}, "the access key is never described"
    assert h["S3BackupMode"] == "FailedDataOnly" and h["RetryOptions"] == {"DurationInSeconds": 60}
    sent = [f"record-{i}".encode() for i in range(50)]
    assert fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in sent])["FailedPutCount"] == 0
    wait_for(lambda: any(status == 200 for _, _, status in cap.requests), "an accepted request", d)
    assert [s for _, _, s in cap.requests] == [500, 500, 200]
    ids = {h["x-amz-firehose-request-id"] for h, _, _ in cap.requests}
    assert len(ids) == 1, "the same request id on every attempt"
    headers, body, _ = cap.requests[-1]
    assert headers["x-amz-firehose-protocol-version"] == "1.0"
    assert headers["x-amz-firehose-access-key"] == "secret-key"
    assert headers["x-amz-firehose-source-arn"].endswith(f":deliverystream/{name}")
    assert json.loads(headers["x-amz-firehose-common-attributes"]) == {"commonAttributes": {"team": "sensors"}}
    assert headers["content-encoding"] == "gzip" and headers["content-type"] == "application/json"
    payload = json.loads(gzip.decompress(body))
    assert payload["requestId"] == ids.pop() and payload["timestamp"] > 0
    assert [base64.b64decode(r["data"]) for r in payload["records"]] == sent
    assert not (Path(d.data_dir) / "buckets" / "http-backup").exists(), "nothing failed, nothing backed up"


def test_an_endpoint_that_never_accepts_sends_the_records_to_the_s3_backup(new_daemon, capture):
    cap = capture(fail=-1)
    d, fh, name = setup(new_daemon, cap.url, retry_s=0, bucket="http-failed", gzip_body=False)
    sent = [f"lost-{i}".encode() for i in range(20)]
    assert fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in sent])["FailedPutCount"] == 0
    root = Path(d.data_dir) / "buckets" / "http-failed"
    files = wait_for(lambda: [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".sluice-tmp")]
                     if root.exists() else None, "the backup object", d)
    assert all(str(p.relative_to(root)).startswith("failed/http-endpoint-failed/") for p in files), files
    errs = [json.loads(l) for p in files for l in p.read_bytes().splitlines()]
    assert [base64.b64decode(e["rawData"]) for e in errs] == sent
    assert {e["errorCode"] for e in errs} == {"HttpEndpoint.InvalidResponseFromDestination"}
    assert all(e["attemptsMade"] >= 1 for e in errs)


def test_update_destination_of_an_http_endpoint(new_daemon, capture):
    cap = capture(fail=0)
    d, fh, name = setup(new_daemon, cap.url, retry_s=60, bucket="http-upd")
    fh.update_destination(
        DeliveryStreamName=name, CurrentDeliveryStreamVersionId="1", DestinationId="destinationId-000000000001",
        HttpEndpointDestinationUpdate={"RetryOptions": {"DurationInSeconds": 30},
                                       "RequestConfiguration": {"ContentEncoding": "NONE"}})
    desc = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    h = desc["Destinations"][0]["HttpEndpointDestinationDescription"]
    assert desc["VersionId"] == "2"
    assert h["RetryOptions"] == {"DurationInSeconds": 30} and h["RequestConfiguration"]["ContentEncoding"] == "NONE"
    assert h["EndpointConfiguration"]["Url"] == cap.url
    assert fh.put_record(DeliveryStreamName=name, Record={"Data": b"after"})["RecordId"]
    wait_for(lambda: cap.requests, "a request", d)
    headers, body, _ = cap.requests[-1]
    assert "content-encoding" not in headers and headers["x-amz-firehose-access-key"] == "secret-key"
    assert [base64.b64decode(r["data"]) for r in json.loads(body)["records"]] == [b"after"]
    with pytest.raises(fh.exceptions.InvalidArgumentException):
        fh.update_destination(DeliveryStreamName=name, CurrentDeliveryStreamVersionId="2",
                              DestinationId="destinationId-000000000001",
                              ExtendedS3DestinationUpdate={"BucketARN": "arn:aws:s3:::other"})
