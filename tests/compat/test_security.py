"""Who may do what, and TLS: a daemon in production shape (`[auth] mode = "sigv4"`, `[tls]`), driven
by boto3 over HTTPS and by `sluice subscribe` over the push protocol:

* HTTPS with ALPN h2 and http/1.1; a plaintext request to the TLS port gets a clean 400;
* SIGHUP reloads the certificate: new handshakes present the new one, an open connection goes on,
  a broken pair leaves the old one serving;
* a key limited to `kinesis:Get*`-style actions is refused PutRecords, CreateStream and DynamoDB
  with AWS's AccessDeniedException text, and nothing changes;
* a key of another account neither sees the daemon's streams by name (ResourceNotFound) nor reads
  them by ARN (AccessDenied) until a resource policy grants it, and an explicit Deny then wins,
  even over the owning account's own key;
* the push protocol over TLS authenticates with the same keys (version 2); a version-1 HELLO and
  a wrong secret are refused;
* `GET /metrics` wants its bearer token.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import FAST_CONFIG, Daemon, make_certificate, sluice_binary, unique_name, wait_active

ACCOUNT, PARTNER = "000000000000", "210987654321"
ADMIN = ("AKIDSECADMIN", "admin/secret")
READER = ("AKIDSECREADER", "reader/secret")
OTHER = ("AKIDSECPARTNER", "partner/secret")
ANALYST = ("AKIDSECANALYST", "analyst/secret")
METRICS_TOKEN = "metrics-token-0123456789"


def production(work: Path) -> Daemon:
    """A daemon (not started) in production shape: sigv4 with the suite's keys, TLS."""
    work.mkdir(parents=True, exist_ok=True)
    cert, key, ca = make_certificate(work / "tls")
    (work / "metrics.token").write_text(METRICS_TOKEN + "\n")
    config = FAST_CONFIG + '[delivery]\nbuffering_interval_cap = "1s"\n' + f"""
[auth]
mode = "sigv4"
metrics_token_file = "{work / 'metrics.token'}"
[[auth.keys]]
access_key_id = "{ADMIN[0]}"
secret_access_key = "{ADMIN[1]}"
user = "admin"
[[auth.keys]]
access_key_id = "{READER[0]}"
secret_access_key = "{READER[1]}"
user = "reader"
actions = ["kinesis:Get*", "kinesis:List*", "kinesis:Describe*"]
[[auth.keys]]
access_key_id = "{ANALYST[0]}"
secret_access_key = "{ANALYST[1]}"
user = "analyst"
actions = ["kinesisanalytics:*", "firehose:*"]
[[auth.keys]]
access_key_id = "{OTHER[0]}"
secret_access_key = "{OTHER[1]}"
account_id = "{PARTNER}"
user = "partner"
[tls]
cert_file = "{cert}"
key_file = "{key}"
"""
    d = Daemon(work / "daemon", config=config)
    d.cert, d.key, d.ca = cert, key, ca
    return d


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    d = production(tmp_path_factory.mktemp("sluice-security"))
    d.start()
    assert d.endpoint == https(d)
    yield d
    rc = d.stop()
    assert rc == 0, f"sluice exited with {rc}; log:\n{d.log_tail()}"


def https(d: Daemon) -> str:
    return f"https://127.0.0.1:{d.port}"


def client(d: Daemon, key: tuple[str, str], service: str = "kinesis"):
    return boto3.client(
        service,
        endpoint_url=https(d),
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        verify=str(d.ca),
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def error(fn, *a, **kw) -> tuple[str, str]:
    with pytest.raises(ClientError) as ei:
        fn(*a, **kw)
    return ei.value.response["Error"]["Code"], ei.value.response["Error"]["Message"]


def stream(d: Daemon, records: int = 0) -> tuple[str, str]:
    admin = client(d, ADMIN)
    name = unique_name("sec")
    admin.create_stream(StreamName=name, ShardCount=1)
    wait_active(admin, name)
    for i in range(records):
        admin.put_record(StreamName=name, Data=f"r{i}".encode(), PartitionKey="p")
    return name, admin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def all_records(k, arn: str) -> list[bytes]:
    it = k.get_shard_iterator(StreamARN=arn, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")
    return [r["Data"] for r in k.get_records(StreamARN=arn, ShardIterator=it["ShardIterator"])["Records"]]


def peer_certificate(d: Daemon, alpn: list[str] | None = None) -> tuple[bytes, str | None]:
    ctx = ssl.create_default_context(cafile=str(d.ca))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True), tls.selected_alpn_protocol()


def test_https_with_alpn_and_plaintext_refused(secure):
    name, arn = stream(secure, records=2)
    assert all_records(client(secure, ADMIN), arn) == [b"r0", b"r1"]
    assert peer_certificate(secure, ["h2", "http/1.1"])[1] == "h2"
    assert peer_certificate(secure, ["http/1.1"])[1] == "http/1.1"
    # Plaintext HTTP to the TLS port: a clean 400 saying so, and nothing runs.
    body = json.dumps({"StreamName": name, "Data": "eA==", "PartitionKey": "p"}).encode()
    with socket.create_connection(("127.0.0.1", secure.port), timeout=10) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.PutRecord\r\n"
            b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert answer.endswith(b"This port speaks HTTPS: use an https:// URL.\r\n"), answer
    assert all_records(client(secure, ADMIN), arn) == [b"r0", b"r1"]


def test_sighup_reloads_the_certificate(secure, tmp_path):
    before, _ = peer_certificate(secure)
    ctx = ssl.create_default_context(cafile=str(secure.ca))
    import http.client

    open_conn = http.client.HTTPSConnection("127.0.0.1", secure.port, timeout=10, context=ctx)
    open_conn.request("GET", "/healthz")
    assert open_conn.getresponse().read() == b"ok\n"
    # A broken pair: the old certificate stays.
    original_cert, original_key = secure.cert.read_bytes(), secure.key.read_bytes()
    secure.cert.write_text("not a certificate")
    secure.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "TLS certificate not reloaded" not in secure.log_tail(20) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "TLS certificate not reloaded" in secure.log_tail(20)
    secure.cert.write_bytes(original_cert)
    assert peer_certificate(secure)[0] == before
    # A new pair: new handshakes present it, the open connection goes on.
    new_cert, new_key, _ = make_certificate(tmp_path, ca=(secure.ca, secure.ca.with_suffix(".key")))
    secure.cert.write_bytes(new_cert.read_bytes())
    secure.key.write_bytes(new_key.read_bytes())
    secure.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            now, _ = peer_certificate(secure)
            if now != before:
                break
        except ssl.SSLError:
            pass
        time.sleep(0.05)
    assert peer_certificate(secure)[0] == ssl.PEM_cert_to_DER_cert(new_cert.read_text())
    open_conn.request("GET", "/healthz")
    assert open_conn.getresponse().read() == b"ok\n"
    open_conn.close()
    assert secure.running
    # Back to the original pair for the other tests.
    secure.cert.write_bytes(original_cert)
    secure.key.write_bytes(original_key)
    secure.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while peer_certificate(secure)[0] != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert peer_certificate(secure)[0] == before


def test_a_key_limited_to_reads_is_refused_writes(secure):
    name, arn = stream(secure, records=1)
    reader = client(secure, READER)
    assert all_records(reader, arn) == [b"r0"]
    assert reader.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamName"] == name
    code, message = error(reader.put_records, StreamName=name, Records=[{"Data": b"x", "PartitionKey": "p"}])
    assert code == "AccessDeniedException"
    assert message == (
        f"User: arn:aws:iam::{ACCOUNT}:user/reader is not authorized to perform: kinesis:PutRecords on resource: "
        f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name} because no identity-based policy allows the "
        "kinesis:PutRecords action"
    )
    assert error(reader.put_record, StreamARN=arn, Data=b"x", PartitionKey="p")[0] == "AccessDeniedException"
    other = unique_name("sec")
    assert error(reader.create_stream, StreamName=other, ShardCount=1)[0] == "AccessDeniedException"
    code, message = error(client(secure, READER, "dynamodb").list_tables)
    assert code == "AccessDeniedException" and "dynamodb:ListTables" in message, message
    assert all_records(client(secure, ADMIN), arn) == [b"r0"]
    assert other not in client(secure, ADMIN).list_streams()["StreamNames"]


def test_another_account_needs_a_resource_policy_and_deny_wins(secure):
    name, arn = stream(secure, records=2)
    partner, admin = client(secure, OTHER), client(secure, ADMIN)
    code, message = error(partner.describe_stream_summary, StreamName=name)
    assert (code, message) == ("ResourceNotFoundException", f"Stream {name} under account {PARTNER} not found.")
    code, message = error(partner.get_shard_iterator, StreamARN=arn, ShardId="shardId-000000000000",
                          ShardIteratorType="TRIM_HORIZON")
    assert code == "AccessDeniedException"
    assert message == (
        f"User: arn:aws:iam::{PARTNER}:user/partner is not authorized to perform: kinesis:GetShardIterator on "
        f"resource: {arn} because no resource-based policy allows the kinesis:GetShardIterator action"
    )
    assert name not in partner.list_streams()["StreamNames"]
    assert error(partner.describe_account_settings)[0] == "AccessDeniedException"
    grant = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "partner-reads",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{PARTNER}:root"},
                "Action": ["kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:DescribeStreamSummary"],
                "Resource": arn,
                "Condition": {"StringEquals": {"aws:PrincipalAccount": PARTNER}},
            }
        ],
    }
    admin.put_resource_policy(ResourceARN=arn, Policy=json.dumps(grant))
    assert all_records(partner, arn) == [b"r0", b"r1"]
    assert partner.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]["StreamARN"] == arn
    # Not granted: writing.
    assert error(partner.put_record, StreamARN=arn, Data=b"x", PartitionKey="p")[0] == "AccessDeniedException"
    # An explicit Deny wins over the grant, and over the owner's own key.
    grant["Statement"] += [
        {"Effect": "Deny", "Principal": {"AWS": PARTNER}, "Action": "kinesis:GetRecords", "Resource": arn},
        {"Effect": "Deny", "Principal": "*", "Action": "kinesis:PutRecord", "Resource": arn},
    ]
    admin.put_resource_policy(ResourceARN=arn, Policy=json.dumps(grant))
    code, message = error(all_records, partner, arn)
    assert code == "AccessDeniedException"
    assert message.endswith(f"on resource: {arn} with an explicit deny in a resource-based policy"), message
    assert error(admin.put_record, StreamARN=arn, Data=b"x", PartitionKey="p")[0] == "AccessDeniedException"
    # The same stream spelled in another region or partition is not a way around the policy.
    for spelled in (arn.replace("us-east-1", "eu-west-1"), arn.replace("arn:aws:", "arn:aws-cn:")):
        assert error(admin.put_record, StreamARN=spelled, Data=b"x", PartitionKey="p")[0] == "ResourceNotFoundException"
    assert admin.put_records(StreamARN=arn, Records=[{"Data": b"r2", "PartitionKey": "p"}])["FailedRecordCount"] == 0
    admin.delete_resource_policy(ResourceARN=arn)
    assert all_records(admin, arn) == [b"r0", b"r1", b"r2"]
    # A consumer's policy holds whatever creation time its ARN is spelled with.
    consumer = admin.register_stream_consumer(StreamARN=arn, ConsumerName="c")["Consumer"]["ConsumerARN"]
    deny = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kinesis:DescribeStreamConsumer"}]}
    admin.put_resource_policy(ResourceARN=consumer, Policy=json.dumps(deny))
    prefix, created = consumer.rsplit(":", 1)
    for spelled in (consumer, f"{prefix}:{int(created) + 1}"):
        assert error(admin.describe_stream_consumer, ConsumerARN=spelled)[0] == "AccessDeniedException", spelled
    admin.delete_resource_policy(ResourceARN=f"{prefix}:{int(created) + 1}")
    assert admin.describe_stream_consumer(ConsumerARN=consumer)["ConsumerDescription"]["ConsumerName"] == "c"
    assert error(all_records, partner, arn)[0] == "AccessDeniedException"


def signed_call(d: Daemon, key: tuple[str, str], op: str, body: dict, service: str = "kinesis") -> tuple[int, dict]:
    """One JSON request signed with `key`, sent as written (boto3 drops members a shape lacks)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    target = {"kinesis": "Kinesis_20131202", "firehose": "Firehose_20150804",
              "kinesisanalytics": "KinesisAnalytics_20150814", "dynamodb": "DynamoDB_20120810"}[service]
    content_type = "application/x-amz-json-1.0" if service == "dynamodb" else "application/x-amz-json-1.1"
    data = json.dumps(body).encode()
    req = AWSRequest(method="POST", url=https(d) + "/", data=data,
                     headers={"Content-Type": content_type, "X-Amz-Target": f"{target}.{op}"})
    SigV4Auth(Credentials(*key), service, "us-east-1").add_auth(req)
    ctx = ssl.create_default_context(cafile=str(d.ca))
    request = urllib.request.Request(https(d) + "/", data=data, headers=dict(req.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_a_request_is_checked_on_the_resource_it_acts_on(secure):
    """Members an operation does not have name nothing, and GetRecords reads its iterator's stream:
    neither can point the check at a stream the caller is granted while acting on another."""
    granted, granted_arn = stream(secure, records=1)
    target, target_arn = stream(secure, records=1)
    admin = client(secure, ADMIN)
    everything = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": PARTNER}, "Action": "kinesis:*",
                                 "Resource": granted_arn}]}
    admin.put_resource_policy(ResourceARN=granted_arn, Policy=json.dumps(everything))
    consumer = admin.register_stream_consumer(StreamARN=granted_arn, ConsumerName="c")["Consumer"]["ConsumerARN"]
    admin.put_resource_policy(ResourceARN=consumer, Policy=json.dumps(everything).replace(granted_arn, consumer))
    for extra in ({"ConsumerARN": consumer}, {"QueueARN": granted_arn}, {"ResourceARN": granted_arn}):
        status, body = signed_call(secure, OTHER, "DeleteStream", {"StreamARN": target_arn, **extra})
        assert (status, body.get("__type")) == (400, "AccessDeniedException"), (extra, body)
        status, body = signed_call(secure, OTHER, "PutRecord",
                                   {"StreamARN": target_arn, "Data": "eA==", "PartitionKey": "p", **extra})
        assert (status, body.get("__type")) == (400, "AccessDeniedException"), (extra, body)
    assert admin.describe_stream_summary(StreamName=target)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert all_records(admin, target_arn) == [b"r0"]
    # An iterator of the target, presented with the granted stream's ARN or with none.
    it = admin.get_shard_iterator(StreamARN=target_arn, ShardId="shardId-000000000000",
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    status, body = signed_call(secure, OTHER, "GetRecords", {"ShardIterator": it, "StreamARN": granted_arn})
    assert (status, body.get("__type")) == (400, "InvalidArgumentException"), body
    status, body = signed_call(secure, OTHER, "GetRecords", {"ShardIterator": it})
    assert (status, body.get("__type")) == (400, "AccessDeniedException"), body
    assert f"on resource: {target_arn} " in body["message"], body
    # The owner's own key gets the same answer for an iterator of another stream than its StreamARN.
    assert error(admin.get_records, ShardIterator=it, StreamARN=granted_arn)[0] == "InvalidArgumentException"
    # The granted stream itself is readable through its own iterator.
    mine = client(secure, OTHER).get_shard_iterator(StreamARN=granted_arn, ShardId="shardId-000000000000",
                                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    status, body = signed_call(secure, OTHER, "GetRecords", {"ShardIterator": mine})
    assert status == 200 and len(body["Records"]) == 1, body
    # A consumer named by stream and name is the consumer: its own policy decides.
    deny = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kinesis:DescribeStreamConsumer"}]}
    admin.put_resource_policy(ResourceARN=consumer, Policy=json.dumps(deny))
    assert error(admin.describe_stream_consumer, StreamARN=granted_arn, ConsumerName="c")[0] == "AccessDeniedException"
    admin.delete_resource_policy(ResourceARN=consumer)
    assert admin.describe_stream_consumer(StreamARN=granted_arn, ConsumerName="c")["ConsumerDescription"]["ConsumerARN"] == consumer
    admin.delete_resource_policy(ResourceARN=granted_arn)


def test_sources_are_checked_against_the_source_stream(secure):
    """A queue, a delivery stream or an application reads its source with its creator's rights:
    the source stream's policy and the creator's own actions decide."""
    name, arn = stream(secure, records=1)
    admin = client(secure, ADMIN)
    deny = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kinesis:CreateQueue", "Resource": arn}]}
    admin.put_resource_policy(ResourceARN=arn, Policy=json.dumps(deny))
    queue = unique_name("q")
    code, message = error(admin.create_queue, QueueName=queue, StreamConfigurationList=[{"StreamARN": arn}])
    assert code == "AccessDeniedException" and f"kinesis:CreateQueue on resource: {arn} " in message, message
    assert queue not in [q["QueueName"] for q in admin.list_queues()["QueueSummaries"]]
    admin.delete_resource_policy(ResourceARN=arn)
    # A key allowed Firehose and Analytics, not reading streams.
    delivery = unique_name("fh")
    code, message = error(client(secure, ANALYST, "firehose").create_delivery_stream, DeliveryStreamName=delivery,
                          DeliveryStreamType="KinesisStreamAsSource",
                          KinesisStreamSourceConfiguration={"KinesisStreamARN": arn,
                                                            "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/r"},
                          ExtendedS3DestinationConfiguration={"BucketARN": "arn:aws:s3:::b",
                                                              "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/r"})
    assert code == "AccessDeniedException" and f"kinesis:DescribeStream on resource: {arn}" in message, message
    assert error(client(secure, ADMIN, "firehose").describe_delivery_stream,
                 DeliveryStreamName=delivery)[0] == "ResourceNotFoundException"
    app = unique_name("app")
    analytics = client(secure, ANALYST, "kinesisanalytics")
    code, message = error(analytics.create_application, ApplicationName=app, Inputs=[{
        "NamePrefix": "SOURCE_SQL_STREAM",
        "KinesisStreamsInput": {"ResourceARN": arn, "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/r"},
        "InputSchema": {"RecordFormat": {"RecordFormatType": "JSON",
                                         "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
                        "RecordColumns": [{"Name": "v", "SqlType": "INTEGER", "Mapping": "$.v"}]}}])
    assert code == "AccessDeniedException" and f"on resource: {arn}" in message, message
    assert error(analytics.describe_application, ApplicationName=app)[0] == "ResourceNotFoundException"


def test_a_subscription_through_a_consumer_is_the_consumers(secure):
    name, arn = stream(secure, records=2)
    admin = client(secure, ADMIN)
    consumer = admin.register_stream_consumer(StreamARN=arn, ConsumerName="pushed")["Consumer"]["ConsumerARN"]
    deny = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kinesis:SubscribeToShard"}]}
    admin.put_resource_policy(ResourceARN=consumer, Policy=json.dumps(deny))
    for _ in range(100):
        if admin.describe_stream_consumer(ConsumerARN=consumer)["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE":
            break
        time.sleep(0.05)
    refused = subscribe(secure, name, ADMIN, consumer="pushed")
    assert refused.returncode != 0 and "explicit deny" in refused.stderr, refused.stderr
    ok = subscribe(secure, name, ADMIN)
    assert ok.returncode == 0, ok.stderr
    admin.delete_resource_policy(ResourceARN=consumer)
    ok = subscribe(secure, name, ADMIN, consumer="pushed")
    assert ok.returncode == 0, ok.stderr


def test_each_account_has_its_own_streams(secure):
    """A key of another account creates, writes, reads, lists, reshards and deletes streams of its
    own; a name means a stream of the caller's account, and the same name in two accounts is two
    streams."""
    name, arn = stream(secure, records=1)
    admin, partner = client(secure, ADMIN), client(secure, OTHER)
    partner.create_stream(StreamName=name, ShardCount=2)
    wait_active(partner, name)
    summary = partner.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    theirs = f"arn:aws:kinesis:us-east-1:{PARTNER}:stream/{name}"
    assert (summary["StreamName"], summary["StreamARN"], summary["OpenShardCount"]) == (name, theirs, 2)
    assert error(partner.create_stream, StreamName=name, ShardCount=1) == (
        "ResourceInUseException", f"Stream {name} under account {PARTNER} already exists.")
    put = partner.put_records(StreamName=name, Records=[{"Data": b"p%d" % i, "PartitionKey": str(i)}
                                                      for i in range(20)])
    assert put["FailedRecordCount"] == 0
    partner.put_record(StreamARN=theirs, Data=b"by-arn", PartitionKey="k")
    got = []
    for shard in partner.list_shards(StreamName=name)["Shards"]:
        it = partner.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got += [r["Data"] for r in partner.get_records(ShardIterator=it)["Records"]]
    assert sorted(got) == sorted([b"p%d" % i for i in range(20)] + [b"by-arn"])
    # The daemon's account's stream of the same name is untouched, and each account lists its own.
    assert all_records(admin, arn) == [b"r0"]
    assert name in admin.list_streams()["StreamNames"] and name in partner.list_streams()["StreamNames"]
    assert [s["StreamARN"] for s in partner.list_streams()["StreamSummaries"] if s["StreamName"] == name] == [theirs]
    # Each account's stream is the other's only by ARN and policy.
    code, message = error(admin.describe_stream_summary, StreamARN=theirs)
    assert code == "AccessDeniedException" and f"on resource: {theirs} " in message, message
    grant = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                            "Action": "kinesis:DescribeStreamSummary", "Resource": theirs}]}
    partner.put_resource_policy(ResourceARN=theirs, Policy=json.dumps(grant))
    assert admin.describe_stream_summary(StreamARN=theirs)["StreamDescriptionSummary"]["OpenShardCount"] == 2
    assert error(admin.put_record, StreamARN=theirs, Data=b"x", PartitionKey="k")[0] == "AccessDeniedException"
    # Consumers and resharding in the account's own stream.
    consumer = partner.register_stream_consumer(StreamARN=theirs, ConsumerName="c")["Consumer"]["ConsumerARN"]
    assert consumer.startswith(theirs + "/consumer/c:")
    partner.update_shard_count(StreamName=name, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    for _ in range(200):
        if partner.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.05)
    assert partner.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["OpenShardCount"] == 4
    sub = subscribe(secure, name, OTHER, count=1)
    assert sub.returncode == 0, sub.stderr
    assert sub.stdout.split("\t")[2].startswith("p"), sub.stdout
    code, message = error(partner.list_shards, StreamName="absent-" + name)
    assert (code, message) == ("ResourceNotFoundException", f"Stream absent-{name} under account {PARTNER} not found.")
    partner.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    for _ in range(200):
        if name not in partner.list_streams()["StreamNames"]:
            break
        time.sleep(0.05)
    assert name not in partner.list_streams()["StreamNames"]
    assert admin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"


def lease_table(ddb, name: str):
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")


def test_each_account_has_its_own_tables(secure):
    """A KCL application under another account's key keeps its lease table in its own account."""
    name = unique_name("leases")
    admin, partner = client(secure, ADMIN, "dynamodb"), client(secure, OTHER, "dynamodb")
    lease_table(admin, name)
    admin.put_item(TableName=name, Item={"leaseKey": {"S": "shard-0"}, "owner": {"S": "admin"}})
    lease_table(partner, name)
    described = partner.describe_table(TableName=name)["Table"]
    assert (described["TableName"], described["TableArn"], described["ItemCount"]) == (
        name, f"arn:aws:dynamodb:us-east-1:{PARTNER}:table/{name}", 0)
    assert error(partner.create_table, TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                 AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                 BillingMode="PAY_PER_REQUEST") == ("ResourceInUseException", f"Table already exists: {name}")
    partner.put_item(TableName=name, Item={"leaseKey": {"S": "shard-0"}, "owner": {"S": "partner"}})
    assert partner.get_item(TableName=name, Key={"leaseKey": {"S": "shard-0"}})["Item"]["owner"] == {"S": "partner"}
    assert admin.get_item(TableName=name, Key={"leaseKey": {"S": "shard-0"}})["Item"]["owner"] == {"S": "admin"}
    got = partner.batch_get_item(RequestItems={name: {"Keys": [{"leaseKey": {"S": "shard-0"}}]}})["Responses"]
    assert list(got) == [name] and got[name][0]["owner"] == {"S": "partner"}
    assert name in partner.list_tables()["TableNames"] and name in admin.list_tables()["TableNames"]
    assert all("/" not in t for t in admin.list_tables()["TableNames"] + partner.list_tables()["TableNames"])
    # A table is its own account's only, and no name reaches into another account.
    status, body = signed_call(secure, ADMIN, "DescribeTable", {"TableName": f"{PARTNER}/{name}"}, service="dynamodb")
    assert (status, body.get("__type", "").split("#")[-1]) == (400, "ValidationException"), body
    partner.delete_table(TableName=name)
    assert error(partner.describe_table, TableName=name)[0] == "ResourceNotFoundException"
    assert admin.get_item(TableName=name, Key={"leaseKey": {"S": "shard-0"}})["Item"]["owner"] == {"S": "admin"}
    admin.delete_table(TableName=name)


def test_each_account_has_its_own_delivery_streams(secure):
    name = unique_name("fh")
    admin, partner = client(secure, ADMIN, "firehose"), client(secure, OTHER, "firehose")
    role = f"arn:aws:iam::{PARTNER}:role/firehose"
    for k, bucket in ((admin, "admin-bucket"), (partner, "partner-bucket")):
        k.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
            "RoleARN": role, "BucketARN": f"arn:aws:s3:::{bucket}",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60}})
    code, message = error(partner.create_delivery_stream, DeliveryStreamName=name,
                          ExtendedS3DestinationConfiguration={"RoleARN": role, "BucketARN": "arn:aws:s3:::other-bucket"})
    assert (code, message) == ("ResourceInUseException", f"Firehose {name} under accountId {PARTNER} already exists")
    for _ in range(200):
        d = partner.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        if d["DeliveryStreamStatus"] == "ACTIVE":
            break
        time.sleep(0.05)
    assert (d["DeliveryStreamName"], d["DeliveryStreamARN"]) == (
        name, f"arn:aws:firehose:us-east-1:{PARTNER}:deliverystream/{name}")
    assert name in partner.list_delivery_streams(Limit=1000)["DeliveryStreamNames"]
    assert all("/" not in n for n in partner.list_delivery_streams(Limit=1000)["DeliveryStreamNames"])
    for _ in range(200):
        try:
            partner.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"theirs\n"}] * 3)
            break
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ResourceInUseException", e
            time.sleep(0.05)
    root = Path(secure.data_dir) / "buckets"
    deadline = time.monotonic() + 20
    objects = []
    while time.monotonic() < deadline and not objects:
        objects = [p for p in (root / "partner-bucket").rglob("*") if p.is_file() and not p.name.startswith(".")]
        time.sleep(0.1)
    assert objects, "the partner's records were delivered to its bucket"
    assert all(p.name.startswith(name + "-") and PARTNER not in str(p.relative_to(root)) for p in objects), objects
    assert b"theirs" in b"".join(p.read_bytes() for p in objects)
    assert not any(b"theirs" in p.read_bytes() for p in (root / "admin-bucket").rglob("*") if p.is_file())
    partner.delete_delivery_stream(DeliveryStreamName=name)
    assert admin.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamName"] == name
    admin.delete_delivery_stream(DeliveryStreamName=name)


def test_each_account_has_its_own_applications(secure):
    """An Analytics application of another account reads and writes that account's streams."""
    name = unique_name("app")
    source, sink = unique_name("in"), unique_name("out")
    partner, admin = client(secure, OTHER), client(secure, ADMIN)
    theirs = lambda s: f"arn:aws:kinesis:us-east-1:{PARTNER}:stream/{s}"  # noqa: E731
    role = f"arn:aws:iam::{PARTNER}:role/analytics"
    for k, s in ((partner, source), (partner, sink), (admin, source)):
        k.create_stream(StreamName=s, ShardCount=1)
        wait_active(k, s)
    ka, admin_ka = client(secure, OTHER, "kinesisanalytics"), client(secure, ADMIN, "kinesisanalytics")
    admin_ka.create_application(ApplicationName=name)
    code = 'CREATE PUMP "p" AS INSERT INTO "DESTINATION_SQL_STREAM" SELECT STREAM * FROM "SOURCE_SQL_STREAM_001";'
    ka.create_application(ApplicationName=name, ApplicationCode=code, Inputs=[{
        "NamePrefix": "SOURCE_SQL_STREAM",
        "KinesisStreamsInput": {"ResourceARN": theirs(source), "RoleARN": role},
        "InputSchema": {"RecordFormat": {"RecordFormatType": "JSON",
                                         "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
                        "RecordColumns": [{"Name": "V", "SqlType": "INTEGER", "Mapping": "$.v"}]}}],
        Outputs=[{"Name": "DESTINATION_SQL_STREAM", "KinesisStreamsOutput": {"ResourceARN": theirs(sink), "RoleARN": role},
                  "DestinationSchema": {"RecordFormatType": "JSON"}}])
    detail = ka.describe_application(ApplicationName=name)["ApplicationDetail"]
    arn = f"arn:aws:kinesisanalytics:us-east-1:{PARTNER}:application/{name}"
    assert (detail["ApplicationName"], detail["ApplicationARN"]) == (name, arn)
    assert [a["ApplicationARN"] for a in ka.list_applications(Limit=50)["ApplicationSummaries"]
            if a["ApplicationName"] == name] == [arn]
    # The daemon's account's application of the same name is another one, and is not reached by ARN.
    assert admin_ka.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationARN"] != arn
    assert error(admin_ka.list_tags_for_resource, ResourceARN=arn)[0] == "ResourceNotFoundException"
    ka.tag_resource(ResourceARN=arn, Tags=[{"Key": "team", "Value": "partner"}])
    assert ka.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "team", "Value": "partner"}]
    ka.start_application(ApplicationName=name, InputConfigurations=[{
        "Id": detail["InputDescriptions"][0]["InputId"],
        "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}])
    for i in range(3):
        partner.put_record(StreamName=source, Data=json.dumps({"v": i}).encode(), PartitionKey="k")
        admin.put_record(StreamName=source, Data=json.dumps({"v": 100 + i}).encode(), PartitionKey="k")
    deadline, got = time.monotonic() + 30, []
    while time.monotonic() < deadline and len(got) < 3:
        it = partner.get_shard_iterator(StreamName=sink, ShardId="shardId-000000000000",
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got = [json.loads(r["Data"]) for r in partner.get_records(ShardIterator=it)["Records"]]
        time.sleep(0.1)
    assert sorted(r["V"] for r in got) == [0, 1, 2], got
    ka.stop_application(ApplicationName=name)
    for _ in range(200):
        if ka.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationStatus"] == "READY":
            break
        time.sleep(0.05)
    ka.delete_application(ApplicationName=name, CreateTimestamp=detail["CreateTimestamp"])
    for _ in range(200):
        try:
            ka.describe_application(ApplicationName=name)
        except ClientError:
            break
        time.sleep(0.05)
    assert error(ka.describe_application, ApplicationName=name) == (
        "ResourceNotFoundException", f"Application {name} is not found in account {PARTNER}.")
    assert admin_ka.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationName"] == name


def test_no_name_reaches_into_another_account_or_the_daemons_own_streams(secure):
    """Names inside the daemon (`<account>/<name>`, internal `~` streams) are not names a request
    can give, by ARN, by push SUBSCRIBE or in an Analytics input."""
    fh, partner_fh = client(secure, ADMIN, "firehose"), client(secure, OTHER, "firehose")
    name = unique_name("fh")
    partner_fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
        "RoleARN": f"arn:aws:iam::{PARTNER}:role/r", "BucketARN": "arn:aws:s3:::partner-private"})
    admin = client(secure, ADMIN)
    internal = [n for n in admin.list_streams()["StreamNames"] if n.startswith("~")]
    assert internal == [], "internal streams are not listed"
    for stream in (f"~firehose~{PARTNER}~{name}~1", f"{PARTNER}/x"):
        arn = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{stream}"
        code, _ = error(admin.describe_stream_summary, StreamARN=arn)
        assert code in ("ValidationException", "ResourceNotFoundException", "InvalidArgumentException"), code
        refused = subscribe(secure, stream, ADMIN, count=1)
        assert refused.returncode != 0, refused.stdout
    analytics = client(secure, ADMIN, "kinesisanalytics")
    code, _ = error(analytics.create_application, ApplicationName=unique_name("app"), Inputs=[{
        "NamePrefix": "SOURCE_SQL_STREAM",
        "KinesisFirehoseInput": {"ResourceARN": f"arn:aws:firehose:us-east-1:{ACCOUNT}:deliverystream/{PARTNER}/{name}",
                                 "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/r"},
        "InputSchema": {"RecordFormat": {"RecordFormatType": "JSON",
                                         "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
                        "RecordColumns": [{"Name": "V", "SqlType": "INTEGER", "Mapping": "$.v"}]}}])
    assert code in ("InvalidArgumentException", "ResourceNotFoundException"), code
    # Channels are the daemon's account's: another account's key cannot make one.
    partner = client(secure, OTHER)
    own = unique_name("ch")
    partner.create_stream(StreamName=own, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_active(partner, own)
    status, body = signed_call(secure, OTHER, "CreateChannel", {
        "ChannelName": unique_name("c"), "ServiceExecutionRoleARN": f"arn:aws:iam::{PARTNER}:role/r",
        "StreamConfigurationList": [{"StreamARN": f"arn:aws:kinesis:us-east-1:{PARTNER}:stream/{own}",
                                     "RecordConfiguration": {"RecordFormatType": "JSON"}}],
        "S3DestinationConfiguration": {"StorageConfiguration": {
            "BucketARN": "arn:aws:s3:::partner-channel", "ExpectedBucketOwner": PARTNER, "CompressionType": "NONE"}}})
    assert (status, body.get("__type")) == (400, "AccessDeniedException"), body
    assert name not in fh.list_delivery_streams(Limit=1000)["DeliveryStreamNames"]
    partner_fh.delete_delivery_stream(DeliveryStreamName=name)


def wait_queue_active(k, arn: str) -> None:
    for _ in range(200):
        if k.describe_queue(QueueARN=arn)["QueueDescription"]["QueueStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    raise AssertionError(f"{arn} did not become ACTIVE")


def test_each_account_has_its_own_queues(secure):
    name, queue = unique_name("qs"), unique_name("q")
    admin, partner = client(secure, ADMIN), client(secure, OTHER)
    arns = {}
    for who, k in (("admin", admin), ("partner", partner)):
        k.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
        wait_active(k, name)
        stream = k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
        arns[who] = k.create_queue(QueueName=queue, StreamConfigurationList=[
            {"StreamARN": stream, "StartingPosition": {"Type": "TRIM_HORIZON"}}])["QueueDescription"]["QueueARN"]
        wait_queue_active(k, arns[who])
        k.put_record(StreamName=name, Data=who.encode(), PartitionKey="k")
    assert arns["partner"].startswith(f"arn:aws:kinesis:us-east-1:{PARTNER}:queue/")
    assert arns["admin"].startswith(f"arn:aws:kinesis:us-east-1:{ACCOUNT}:queue/")
    described = partner.describe_queue(QueueARN=arns["partner"])["QueueDescription"]
    assert described["QueueName"] == queue
    code, message = error(partner.create_queue, QueueName=queue, StreamConfigurationList=[
        {"StreamARN": described["StreamConfigurationList"][0]["StreamARN"]}])
    assert code == "ResourceInUseException" and f"Queue {queue} " in message and PARTNER in message, message
    got = partner.receive_queue_records(QueueARN=arns["partner"], Limit=10, WaitTimeSeconds=5)["QueueRecords"]
    assert [r["Data"] for r in got] == [b"partner"]
    assert [q["QueueARN"] for q in partner.list_queues()["QueueSummaries"] if q["QueueName"] == queue] == [arns["partner"]]
    assert arns["partner"] not in [q["QueueARN"] for q in admin.list_queues()["QueueSummaries"]]
    # Another account's queue is not reached by ARN, nor by the id spelled in one's own account.
    assert error(admin.describe_queue, QueueARN=arns["partner"])[0] == "AccessDeniedException"
    spelled = arns["partner"].replace(PARTNER, ACCOUNT)
    assert error(admin.describe_queue, QueueARN=spelled)[0] == "ResourceNotFoundException"
    got = admin.receive_queue_records(QueueARN=arns["admin"], Limit=10, WaitTimeSeconds=5)["QueueRecords"]
    assert [r["Data"] for r in got] == [b"admin"]
    for k, arn in ((partner, arns["partner"]), (admin, arns["admin"])):
        k.delete_queue(QueueARN=arn)


def test_another_accounts_streams_and_tables_survive_kill_9(tmp_path):
    d = production(tmp_path)
    d.start()
    try:
        partner = client(d, OTHER)
        partner.create_stream(StreamName="theirs", ShardCount=1)
        wait_active(partner, "theirs")
        acked = [partner.put_record(StreamName="theirs", Data=b"t%d" % i, PartitionKey="k")["SequenceNumber"]
                 for i in range(5)]
        lease_table(client(d, OTHER, "dynamodb"), "their-leases")
        client(d, OTHER, "dynamodb").put_item(TableName="their-leases", Item={"leaseKey": {"S": "s0"}})
        client(d, OTHER, "firehose").create_delivery_stream(DeliveryStreamName="their-delivery",
                                                           ExtendedS3DestinationConfiguration={
                                                               "RoleARN": f"arn:aws:iam::{PARTNER}:role/r",
                                                               "BucketARN": "arn:aws:s3:::their-bucket"})
        client(d, OTHER, "kinesisanalytics").create_application(ApplicationName="their-app")
        partner.create_stream(StreamName="their-queued", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        wait_active(partner, "their-queued")
        queue = partner.create_queue(QueueName="their-queue", StreamConfigurationList=[
            {"StreamARN": f"arn:aws:kinesis:us-east-1:{PARTNER}:stream/their-queued",
             "StartingPosition": {"Type": "TRIM_HORIZON"}}])["QueueDescription"]["QueueARN"]
        wait_queue_active(partner, queue)
        partner.put_record(StreamName="their-queued", Data=b"queued", PartitionKey="k")
        d.restart(kill=True)
        partner = client(d, OTHER)
        summary = partner.describe_stream_summary(StreamName="theirs")["StreamDescriptionSummary"]
        assert summary["StreamARN"] == f"arn:aws:kinesis:us-east-1:{PARTNER}:stream/theirs"
        it = partner.get_shard_iterator(StreamName="theirs", ShardId="shardId-000000000000",
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = partner.get_records(ShardIterator=it)["Records"]
        assert [(r["SequenceNumber"], r["Data"]) for r in records] == [(s, b"t%d" % i) for i, s in enumerate(acked)]
        assert error(client(d, ADMIN).describe_stream_summary, StreamName="theirs")[0] == "ResourceNotFoundException"
        assert "theirs" not in client(d, ADMIN).list_streams()["StreamNames"]
        tables = client(d, OTHER, "dynamodb")
        assert tables.get_item(TableName="their-leases", Key={"leaseKey": {"S": "s0"}})["Item"] == {"leaseKey": {"S": "s0"}}
        assert "their-leases" not in client(d, ADMIN, "dynamodb").list_tables()["TableNames"]
        described = client(d, OTHER, "firehose").describe_delivery_stream(DeliveryStreamName="their-delivery")
        assert described["DeliveryStreamDescription"]["DeliveryStreamARN"] == (
            f"arn:aws:firehose:us-east-1:{PARTNER}:deliverystream/their-delivery")
        assert "their-delivery" not in client(d, ADMIN, "firehose").list_delivery_streams()["DeliveryStreamNames"]
        app = client(d, OTHER, "kinesisanalytics").describe_application(ApplicationName="their-app")["ApplicationDetail"]
        assert app["ApplicationARN"] == f"arn:aws:kinesisanalytics:us-east-1:{PARTNER}:application/their-app"
        assert error(client(d, ADMIN, "kinesisanalytics").describe_application,
                     ApplicationName="their-app")[0] == "ResourceNotFoundException"
        assert partner.describe_queue(QueueARN=queue)["QueueDescription"]["QueueName"] == "their-queue"
        got = partner.receive_queue_records(QueueARN=queue, Limit=10, WaitTimeSeconds=5)["QueueRecords"]
        assert [r["Data"] for r in got] == [b"queued"]
    finally:
        assert d.stop() == 0


def subscribe(d: Daemon, name: str, key: tuple[str, str] | None, tls: bool = True, count: int = 2,
              consumer: str = ""):
    cmd = [str(sluice_binary()), "subscribe", "--push", f"127.0.0.1:{d.push_port}", "--stream", name,
           "--from", "trim-horizon", "--count", str(count), "--consumer", consumer]
    if tls:
        cmd += ["--ca-file", str(d.ca)]
    env = dict(os.environ)
    if key is not None:
        cmd.append("--sign")
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = key
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)


def test_push_protocol_over_tls_with_keys(secure):
    name, _ = stream(secure, records=2)
    ok = subscribe(secure, name, ADMIN)
    assert ok.returncode == 0, ok.stderr
    assert [line.split("\t")[2] for line in ok.stdout.splitlines()] == ["r0", "r1"]
    unsigned = subscribe(secure, name, None)
    assert unsigned.returncode != 0 and "error 15" in unsigned.stderr, unsigned.stderr
    wrong = subscribe(secure, name, (ADMIN[0], "wrong"))
    assert wrong.returncode != 0 and "error 17" in wrong.stderr, wrong.stderr
    unknown = subscribe(secure, name, ("AKIDNOBODY", "x"))
    assert unknown.returncode != 0 and "error 19" in unknown.stderr, unknown.stderr
    plaintext = subscribe(secure, name, ADMIN, tls=False)
    assert plaintext.returncode != 0
    # The partner's key has no grant on this stream.
    refused = subscribe(secure, name, OTHER)
    assert refused.returncode != 0 and "error 3" in refused.stderr, refused.stderr


def test_metrics_want_the_bearer_token(secure):
    ctx = ssl.create_default_context(cafile=str(secure.ca))
    url = https(secure) + "/metrics"
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(url, context=ctx, timeout=10)
    assert ei.value.code == 403
    req = urllib.request.Request(url, headers={"Authorization": "Bearer wrong-token-0123456789"})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(req, context=ctx, timeout=10)
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        assert r.status == 200 and b"sluice_worker_open_shards" in r.read()
    with urllib.request.urlopen(https(secure) + "/healthz", context=ctx, timeout=10) as r:
        assert r.read() == b"ok\n"


def test_half_a_tls_pair_is_refused_at_start(tmp_path):
    cert, _, _ = make_certificate(tmp_path)
    (tmp_path / "sluice.toml").write_text(f'[tls]\ncert_file = "{cert}"\n')
    r = subprocess.run(
        [str(sluice_binary()), "serve", "--config", str(tmp_path / "sluice.toml"), "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode != 0 and "give both cert_file and key_file" in r.stderr, r.stderr
