"""The DynamoDB-compatible subset (`DynamoDB_20120810`, AWS JSON 1.0) through the real boto3
`dynamodb` client, as KCL's lease coordinator and users drive it.

Tables (create, describe, list with paging, a GSI added by UpdateTable, delete), items of every
attribute type, both condition styles (legacy `Expected`/`AttributeUpdates`, which KCL uses, and
`ConditionExpression`/`UpdateExpression`), eight clients racing for one lease, Scan (paging,
filters, COUNT, parallel segments, the AWS CLI), durability across kill -9 and SIGTERM, the wire
format of DynamoDB's errors, the accepted no-ops, and Kinesis on the same port.

Expected answers are DynamoDB's, from its API reference and developer guide.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

import conftest
from conftest import make_client

REGION = "us-east-1"
ACCOUNT = "000000000000"
AMZ_JSON_10 = "application/x-amz-json-1.0"


def ddb_client(endpoint: str, validate: bool = True):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=conftest.CLIENT_KEY_ID,
        aws_secret_access_key=conftest.CLIENT_SECRET,
        config=Config(
            # No retries at all, so that every error (and every lost race) surfaces as it is.
            retries={"total_max_attempts": 1, "mode": "standard"},
            parameter_validation=validate,
            connect_timeout=5,
            read_timeout=30,
        ),
    )


@pytest.fixture(scope="module")
def ddb(endpoint):
    return ddb_client(endpoint)


@pytest.fixture(scope="module")
def ddb_raw(endpoint):
    """Without botocore's parameter validation: for requests only the server may refuse."""
    return ddb_client(endpoint, validate=False)


def table_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_table(client, name=None, hash_key=("pk", "S"), range_key=None, mode="PAY_PER_REQUEST", **kw) -> str:
    name = name or table_name()
    schema = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    attrs = [{"AttributeName": hash_key[0], "AttributeType": hash_key[1]}]
    if range_key:
        schema.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
        attrs.append({"AttributeName": range_key[0], "AttributeType": range_key[1]})
    args = {"TableName": name, "KeySchema": schema, "AttributeDefinitions": attrs, "BillingMode": mode, **kw}
    if mode == "PROVISIONED" and "ProvisionedThroughput" not in args:
        args["ProvisionedThroughput"] = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    client.create_table(**args)
    return name


def code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def message(excinfo) -> str:
    return excinfo.value.response["Error"]["Message"]


def norm(v):
    """An attribute value (or item) with set members sorted: DynamoDB sets have no order."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if k in ("SS", "NS", "BS") and isinstance(x, list):
                out[k] = sorted(x)
            else:
                out[k] = norm(x)
        return out
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def used(text: str, values: dict | None = None, names: dict | None = None) -> dict:
    """ExpressionAttributeValues/Names restricted to the placeholders `text` uses (DynamoDB
    refuses unused ones)."""
    out = {}
    if values:
        vs = {k: v for k, v in values.items() if re.search(re.escape(k) + r"(?![A-Za-z0-9_])", text)}
        if vs:
            out["ExpressionAttributeValues"] = vs
    if names:
        ns = {k: v for k, v in names.items() if re.search(re.escape(k) + r"(?![A-Za-z0-9_])", text)}
        if ns:
            out["ExpressionAttributeNames"] = ns
    return out


def signed_call(endpoint: str, target: str | None, body: bytes, content_type: str | None = AMZ_JSON_10):
    """One SigV4-signed (service "dynamodb") POST /; returns (status, headers lower-cased, raw body)."""
    hdrs = {}
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    if target is not None:
        hdrs["X-Amz-Target"] = target
    req = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=hdrs)
    SigV4Auth(conftest.signing_credentials(), "dynamodb", REGION).add_auth(req)
    conn = conftest.http_connection(endpoint)
    try:
        conn.request("POST", "/", body=body, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# 1. Tables


def test_create_and_describe_hash_only_on_demand(ddb):
    name = table_name("hash")
    r = ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    created = r["TableDescription"]
    assert created["TableName"] == name
    assert created["TableStatus"] in ("CREATING", "ACTIVE")
    assert created["TableArn"] == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"

    t = ddb.describe_table(TableName=name)["Table"]
    assert t["TableName"] == name
    assert t["TableStatus"] == "ACTIVE"
    assert t["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    assert t["AttributeDefinitions"] == [{"AttributeName": "leaseKey", "AttributeType": "S"}]
    assert t["TableArn"] == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    assert t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert t["ProvisionedThroughput"]["ReadCapacityUnits"] == 0
    assert t["ProvisionedThroughput"]["WriteCapacityUnits"] == 0
    assert t["ItemCount"] == 0
    assert t["TableSizeBytes"] == 0
    assert t["CreationDateTime"].year >= 2024

    for i in range(3):
        ddb.put_item(TableName=name, Item={"leaseKey": {"S": f"shardId-{i:012d}"}, "leaseCounter": {"N": "0"}})
    t = ddb.describe_table(TableName=name)["Table"]
    assert t["ItemCount"] == 3
    assert t["TableSizeBytes"] > 0


def test_create_and_describe_hash_range_provisioned(ddb):
    name = table_name("range")
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 7},
    )
    t = ddb.describe_table(TableName=name)["Table"]
    assert t["TableStatus"] == "ACTIVE"
    assert t["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert sorted(t["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "N"},
    ]
    assert t["TableArn"] == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"

    # Items with one hash key and different range keys are different items.
    for sk in ("1", "2", "3"):
        ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"N": sk}, "v": {"S": f"v{sk}"}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "b"}, "sk": {"N": "1"}})
    assert ddb.describe_table(TableName=name)["Table"]["ItemCount"] == 4
    got = ddb.get_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"N": "2"}})["Item"]
    assert got == {"pk": {"S": "a"}, "sk": {"N": "2"}, "v": {"S": "v2"}}
    # Only the hash key is not a key of this table.
    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName=name, Key={"pk": {"S": "a"}})
    assert code(e) == "ValidationException"
    assert message(e) == "The provided key element does not match the schema"

    # A PROVISIONED table describes the throughput it was created with.
    assert t["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert t["ProvisionedThroughput"]["WriteCapacityUnits"] == 7


def test_list_tables_paging(ddb):
    prefix = f"lt-{uuid.uuid4().hex[:8]}"
    mine = [f"{prefix}-{i}" for i in range(5)]
    for n in mine:
        make_table(ddb, n)

    names, pages, start = [], 0, None
    while True:
        r = ddb.list_tables(Limit=2, **({"ExclusiveStartTableName": start} if start else {}))
        pages += 1
        assert len(r["TableNames"]) <= 2
        names += r["TableNames"]
        if "LastEvaluatedTableName" not in r:
            break
        assert r["LastEvaluatedTableName"] == r["TableNames"][-1]
        start = r["LastEvaluatedTableName"]
        assert pages < 1000
    assert names == sorted(names), "ListTables pages are in name order"
    assert len(names) == len(set(names)), "no table is listed twice"
    assert [n for n in names if n.startswith(prefix)] == mine

    r = ddb.list_tables(ExclusiveStartTableName=mine[1], Limit=2)
    assert r["TableNames"] == mine[2:4]
    assert r["LastEvaluatedTableName"] == mine[3]
    r = ddb.list_tables(ExclusiveStartTableName=mine[3], Limit=1)
    assert r["TableNames"] == [mine[4]]

    everything = ddb.list_tables()["TableNames"]
    assert set(mine) <= set(everything)


def test_update_table_adds_gsi(ddb):
    name = make_table(ddb, hash_key=("leaseKey", "S"))
    r = ddb.update_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "leaseKey", "AttributeType": "S"},
            {"AttributeName": "leaseOwner", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": "LeaseOwnerToLeaseKeyIndex",
                    "KeySchema": [
                        {"AttributeName": "leaseOwner", "KeyType": "HASH"},
                        {"AttributeName": "leaseKey", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            }
        ],
    )
    assert r["TableDescription"]["TableName"] == name
    t = ddb.describe_table(TableName=name)["Table"]
    gsis = t["GlobalSecondaryIndexes"]
    assert len(gsis) == 1
    g = gsis[0]
    assert g["IndexName"] == "LeaseOwnerToLeaseKeyIndex"
    assert g["IndexStatus"] == "ACTIVE"
    assert g["KeySchema"] == [
        {"AttributeName": "leaseOwner", "KeyType": "HASH"},
        {"AttributeName": "leaseKey", "KeyType": "RANGE"},
    ]
    assert g["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert g["IndexArn"] == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}/index/LeaseOwnerToLeaseKeyIndex"
    assert {"AttributeName": "leaseOwner", "AttributeType": "S"} in t["AttributeDefinitions"]
    assert t["TableStatus"] == "ACTIVE"


def test_delete_table(ddb):
    name = make_table(ddb)
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "v": {"S": "old"}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "b"}})
    r = ddb.delete_table(TableName=name)["TableDescription"]
    assert r["TableName"] == name
    assert r["TableStatus"] == "DELETING"

    with pytest.raises(ClientError) as e:
        ddb.describe_table(TableName=name)
    assert code(e) == "ResourceNotFoundException"
    assert message(e) == f"Requested resource not found: Table: {name} not found"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert name not in ddb.list_tables()["TableNames"]

    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName=name, Key={"pk": {"S": "a"}})
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        ddb.delete_table(TableName=name)
    assert code(e) == "ResourceNotFoundException"

    # Recreated under the same name: empty.
    make_table(ddb, name)
    assert "Item" not in ddb.get_item(TableName=name, Key={"pk": {"S": "a"}})
    s = ddb.scan(TableName=name)
    assert s["Items"] == [] and s["Count"] == 0
    assert ddb.describe_table(TableName=name)["Table"]["ItemCount"] == 0


def test_create_existing_and_invalid_names(ddb, ddb_raw):
    name = make_table(ddb)
    with pytest.raises(ClientError) as e:
        make_table(ddb, name)
    assert code(e) == "ResourceInUseException"
    assert message(e) == f"Table already exists: {name}"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    for bad in ("bad name!", "x/y", "ab"):
        with pytest.raises(ClientError) as e:
            make_table(ddb_raw, bad)
        assert code(e) == "ValidationException", bad
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        make_table(ddb_raw, "bad name!")
    assert message(e) == (
        "1 validation error detected: Value 'bad name!' at 'tableName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    )
    assert "bad name!" not in ddb.list_tables()["TableNames"]


# ---------------------------------------------------------------------------------------------
# 2. Items


EVERY_TYPE = {
    "pk": {"S": "every-type"},
    "s": {"S": "héllo ☃ \"quoted\" \n tab\t"},
    "n": {"N": "-12.5"},
    "big": {"N": "12345678901234567890123456789012345678"},
    "b": {"B": b"\x00\x01\xfe\xffbinary"},
    "ss": {"SS": ["alpha", "beta", "gamma"]},
    "ns": {"NS": ["1", "2.5", "-3"]},
    "bs": {"BS": [b"\x01", b"\x02\x03", b"\xff"]},
    "m": {"M": {"inner": {"S": "x"}, "deep": {"M": {"l": {"L": [{"N": "1"}, {"B": b"\x00"}]}}}, "empty": {"M": {}}}},
    "l": {"L": [{"S": "a"}, {"N": "2"}, {"BOOL": False}, {"NULL": True}, {"L": []}, {"SS": ["z"]}]},
    "t": {"BOOL": True},
    "f": {"BOOL": False},
    "z": {"NULL": True},
    "empty_s": {"S": ""},
}


def test_every_attribute_type_round_trips(ddb):
    name = make_table(ddb)
    ddb.put_item(TableName=name, Item=EVERY_TYPE)
    got = ddb.get_item(TableName=name, Key={"pk": {"S": "every-type"}}, ConsistentRead=True)["Item"]
    assert norm(got) == norm(EVERY_TYPE)
    assert got["b"] == {"B": b"\x00\x01\xfe\xffbinary"}
    assert isinstance(got["b"]["B"], bytes)
    assert got["s"]["S"] == "héllo ☃ \"quoted\" \n tab\t"
    assert got["z"] == {"NULL": True}
    assert got["f"] == {"BOOL": False}
    # Through Scan too.
    assert [norm(i) for i in ddb.scan(TableName=name)["Items"]] == [norm(EVERY_TYPE)]


def test_numbers_are_compared_as_numbers(ddb):
    name = make_table(ddb, hash_key=("id", "N"))
    ddb.put_item(TableName=name, Item={"id": {"N": "1"}, "v": {"S": "one"}})
    for spelling in ("1", "1.0", "1.000", "01", "+1", "0001.0"):
        got = ddb.get_item(TableName=name, Key={"id": {"N": spelling}})
        assert got.get("Item", {}).get("v") == {"S": "one"}, spelling
    ddb.put_item(TableName=name, Item={"id": {"N": "1.0"}, "v": {"S": "again"}})
    assert ddb.describe_table(TableName=name)["Table"]["ItemCount"] == 1
    assert ddb.get_item(TableName=name, Key={"id": {"N": "1"}})["Item"]["v"] == {"S": "again"}
    assert "Item" not in ddb.get_item(TableName=name, Key={"id": {"N": "2"}})
    assert "Item" not in ddb.get_item(TableName=name, Key={"id": {"N": "0.1"}})
    assert "Item" not in ddb.get_item(TableName=name, Key={"id": {"N": "-1"}})
    # -0 is 0.
    ddb.put_item(TableName=name, Item={"id": {"N": "0"}, "v": {"S": "zero"}})
    assert ddb.get_item(TableName=name, Key={"id": {"N": "-0"}}).get("Item", {}).get("v") == {"S": "zero"}
    assert ddb.describe_table(TableName=name)["Table"]["ItemCount"] == 2


def test_number_keys_in_exponent_notation(ddb):
    # A number is its value however it is spelled: 1e1 is 10, 10E-1 is 1.
    name = make_table(ddb, hash_key=("id", "N"))
    ddb.put_item(TableName=name, Item={"id": {"N": "1"}, "v": {"S": "one"}})
    ddb.put_item(TableName=name, Item={"id": {"N": "10"}, "v": {"S": "ten"}})
    found = {s: ddb.get_item(TableName=name, Key={"id": {"N": s}}).get("Item", {}).get("v", {}).get("S")
             for s in ("1e0", "10E-1", "0.1e1", "1e1", "1E+1", "100e-1")}
    assert found == {"1e0": "one", "10E-1": "one", "0.1e1": "one", "1e1": "ten", "1E+1": "ten", "100e-1": "ten"}
    ddb.put_item(TableName=name, Item={"id": {"N": "1e1"}, "v": {"S": "ten again"}})
    assert ddb.describe_table(TableName=name)["Table"]["ItemCount"] == 2


def test_numbers_come_back_trimmed(ddb):
    # "Leading and trailing zeroes are trimmed" (DynamoDB developer guide, data types: Number).
    name = make_table(ddb, hash_key=("id", "N"))
    ddb.put_item(TableName=name, Item={"id": {"N": "007.500"}, "n": {"N": "0042.10"}})
    got = ddb.get_item(TableName=name, Key={"id": {"N": "7.5"}})["Item"]
    assert got == {"id": {"N": "7.5"}, "n": {"N": "42.1"}}


def test_get_missing_projection_and_return_values(ddb):
    name = make_table(ddb)
    assert "Item" not in ddb.get_item(TableName=name, Key={"pk": {"S": "nothing"}})

    item = {"pk": {"S": "p"}, "a": {"S": "A"}, "b": {"N": "2"}, "c": {"BOOL": True}}
    r = ddb.put_item(TableName=name, Item=item, ReturnValues="ALL_OLD")
    assert "Attributes" not in r
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "p"}}, ProjectionExpression="a, #b",
                        ExpressionAttributeNames={"#b": "b"})["Item"] == {"a": {"S": "A"}, "b": {"N": "2"}}
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "p"}}, AttributesToGet=["pk", "c", "nope"])["Item"] == {
        "pk": {"S": "p"},
        "c": {"BOOL": True},
    }

    newer = {"pk": {"S": "p"}, "a": {"S": "A2"}}
    r = ddb.put_item(TableName=name, Item=newer, ReturnValues="ALL_OLD")
    assert r["Attributes"] == item
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "p"}})["Item"] == newer  # replaced, not merged

    r = ddb.delete_item(TableName=name, Key={"pk": {"S": "p"}}, ReturnValues="ALL_OLD")
    assert r["Attributes"] == newer
    assert "Item" not in ddb.get_item(TableName=name, Key={"pk": {"S": "p"}})
    r = ddb.delete_item(TableName=name, Key={"pk": {"S": "p"}}, ReturnValues="ALL_OLD")
    assert "Attributes" not in r


def test_key_errors(ddb, ddb_raw):
    name = make_table(ddb, hash_key=("leaseKey", "S"))
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=name, Item={"other": {"S": "x"}})
    assert code(e) == "ValidationException"
    assert message(e) == "One or more parameter values were invalid: Missing the key leaseKey in the item"

    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=name, Item={"leaseKey": {"N": "1"}})
    assert code(e) == "ValidationException"
    assert message(e) == "One or more parameter values were invalid: Type mismatch for key leaseKey expected: S actual: N"

    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=name, Item={"leaseKey": {"S": ""}})
    assert code(e) == "ValidationException"
    assert message(e) == (
        "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an "
        "empty string value. Key: leaseKey"
    )

    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName=name, Key={})
    assert code(e) == "ValidationException"
    assert message(e) == "The provided key element does not match the schema"

    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName=name, Key={"leaseKey": {"S": "a"}, "extra": {"S": "b"}})
    assert code(e) == "ValidationException"
    assert message(e) == "The provided key element does not match the schema"

    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName="no-such-table-" + uuid.uuid4().hex[:6], Key={"leaseKey": {"S": "a"}})
    assert code(e) == "ResourceNotFoundException"
    assert message(e) == "Requested resource not found"

    # An attribute value that is not one of the types.
    with pytest.raises(ClientError) as e:
        ddb_raw.put_item(TableName=name, Item={"leaseKey": {"S": "a"}, "bad": {"N": "twelve"}})
    assert code(e) == "ValidationException"
    assert "Item" not in ddb.get_item(TableName=name, Key={"leaseKey": {"S": "a"}})


def test_read_key_of_wrong_type(ddb):
    # GetItem/DeleteItem with a key of the wrong type: DynamoDB answers that the key does not
    # match the schema (PutItem's item names the type mismatch instead).
    name = make_table(ddb, hash_key=("leaseKey", "S"))
    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName=name, Key={"leaseKey": {"N": "1"}})
    assert code(e) == "ValidationException"
    assert message(e) == "The provided key element does not match the schema"
    with pytest.raises(ClientError) as e:
        ddb.delete_item(TableName=name, Key={"leaseKey": {"N": "1"}})
    assert code(e) == "ValidationException"
    assert message(e) == "The provided key element does not match the schema"


# ---------------------------------------------------------------------------------------------
# 3. Conditions, legacy style (KCL)


def test_legacy_lease_lifecycle(ddb):
    name = make_table(ddb, hash_key=("leaseKey", "S"))
    key = {"leaseKey": {"S": "shardId-000000000000"}}
    lease = {**key, "leaseCounter": {"N": "0"}, "checkpoint": {"S": "TRIM_HORIZON"}, "ownerSwitchesSinceCheckpoint": {"N": "0"}}

    ddb.put_item(TableName=name, Item=lease, Expected={"leaseKey": {"Exists": False}})
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=name, Item={**lease, "checkpoint": {"S": "LATEST"}}, Expected={"leaseKey": {"Exists": False}})
    assert code(e) == "ConditionalCheckFailedException"
    assert message(e) == "The conditional request failed"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ddb.get_item(TableName=name, Key=key)["Item"] == lease

    # Take the lease: counter 0 -> 1, owner set.
    r = ddb.update_item(
        TableName=name,
        Key=key,
        Expected={"leaseCounter": {"Value": {"N": "0"}}},
        AttributeUpdates={
            "leaseCounter": {"Action": "PUT", "Value": {"N": "1"}},
            "leaseOwner": {"Action": "PUT", "Value": {"S": "worker-1"}},
        },
        ReturnValues="ALL_NEW",
    )
    assert r["Attributes"] == {**lease, "leaseCounter": {"N": "1"}, "leaseOwner": {"S": "worker-1"}}

    # A stale counter loses.
    with pytest.raises(ClientError) as e:
        ddb.update_item(
            TableName=name,
            Key=key,
            Expected={"leaseCounter": {"Value": {"N": "0"}}},
            AttributeUpdates={"leaseOwner": {"Action": "PUT", "Value": {"S": "worker-2"}}},
        )
    assert code(e) == "ConditionalCheckFailedException"
    assert message(e) == "The conditional request failed"

    # ADD on a number (renewal), UPDATED_NEW.
    r = ddb.update_item(
        TableName=name,
        Key=key,
        Expected={"leaseCounter": {"Value": {"N": "1"}, "Exists": True}, "leaseOwner": {"Value": {"S": "worker-1"}}},
        AttributeUpdates={"leaseCounter": {"Action": "ADD", "Value": {"N": "5"}}},
        ReturnValues="UPDATED_NEW",
    )
    assert r["Attributes"] == {"leaseCounter": {"N": "6"}}

    # ADD on sets: onto nothing, then a union; UPDATED_OLD.
    r = ddb.update_item(
        TableName=name, Key=key, AttributeUpdates={"parentShardId": {"Action": "ADD", "Value": {"SS": ["a", "b"]}}},
        ReturnValues="UPDATED_NEW",
    )
    assert norm(r["Attributes"]) == {"parentShardId": {"SS": ["a", "b"]}}
    r = ddb.update_item(
        TableName=name, Key=key, AttributeUpdates={"parentShardId": {"Action": "ADD", "Value": {"SS": ["b", "c"]}}},
        ReturnValues="UPDATED_OLD",
    )
    assert norm(r["Attributes"]) == {"parentShardId": {"SS": ["a", "b"]}}
    got = ddb.get_item(TableName=name, Key=key)["Item"]
    assert sorted(got["parentShardId"]["SS"]) == ["a", "b", "c"]

    # DELETE of set members and of a whole attribute; ALL_OLD.
    before = ddb.get_item(TableName=name, Key=key)["Item"]
    r = ddb.update_item(
        TableName=name,
        Key=key,
        AttributeUpdates={
            "parentShardId": {"Action": "DELETE", "Value": {"SS": ["a", "c"]}},
            "leaseOwner": {"Action": "DELETE"},
        },
        ReturnValues="ALL_OLD",
    )
    assert norm(r["Attributes"]) == norm(before)
    got = ddb.get_item(TableName=name, Key=key)["Item"]
    assert got["parentShardId"] == {"SS": ["b"]}
    assert "leaseOwner" not in got
    # Deleting the last member removes the attribute.
    ddb.update_item(TableName=name, Key=key, AttributeUpdates={"parentShardId": {"Action": "DELETE", "Value": {"SS": ["b"]}}})
    assert "parentShardId" not in ddb.get_item(TableName=name, Key=key)["Item"]

    # UpdateItem on a missing key with AttributeUpdates creates the item.
    other = {"leaseKey": {"S": "shardId-000000000001"}}
    r = ddb.update_item(
        TableName=name, Key=other, AttributeUpdates={"leaseCounter": {"Action": "ADD", "Value": {"N": "3"}}}, ReturnValues="ALL_NEW"
    )
    assert r["Attributes"] == {**other, "leaseCounter": {"N": "3"}}
    # Expected on a missing item: the value is not there.
    with pytest.raises(ClientError) as e:
        ddb.update_item(
            TableName=name, Key={"leaseKey": {"S": "ghost"}}, Expected={"leaseCounter": {"Value": {"N": "0"}}},
            AttributeUpdates={"leaseCounter": {"Action": "PUT", "Value": {"N": "1"}}},
        )
    assert code(e) == "ConditionalCheckFailedException"
    assert "Item" not in ddb.get_item(TableName=name, Key={"leaseKey": {"S": "ghost"}})

    # Legacy DeleteItem with Expected (KCL deletes finished leases this way).
    with pytest.raises(ClientError) as e:
        ddb.delete_item(TableName=name, Key=other, Expected={"leaseCounter": {"Value": {"N": "99"}}})
    assert code(e) == "ConditionalCheckFailedException"
    ddb.delete_item(TableName=name, Key=other, Expected={"leaseCounter": {"Value": {"N": "3"}}})
    assert "Item" not in ddb.get_item(TableName=name, Key=other)


def test_legacy_comparison_operators(ddb):
    name = make_table(ddb, hash_key=("leaseKey", "S"))
    key = {"leaseKey": {"S": "k"}}
    ddb.put_item(TableName=name, Item={**key, "leaseCounter": {"N": "6"}, "leaseOwner": {"S": "worker-1"}})
    N = lambda x: {"N": x}  # noqa: E731
    S = lambda x: {"S": x}  # noqa: E731
    cases = [
        ("leaseCounter", "EQ", [N("6")], True),
        ("leaseCounter", "EQ", [N("6.0")], True),
        ("leaseCounter", "EQ", [N("7")], False),
        ("leaseCounter", "NE", [N("7")], True),
        ("leaseCounter", "NE", [N("6")], False),
        ("leaseCounter", "LT", [N("10")], True),  # 6 < 10 as numbers ("10" < "6" as strings)
        ("leaseCounter", "LT", [N("6")], False),
        ("leaseCounter", "GE", [N("6")], True),
        ("leaseCounter", "GE", [N("7")], False),
        ("absent", "NULL", [], True),
        ("leaseOwner", "NULL", [], False),
        ("leaseOwner", "NOT_NULL", [], True),
        ("absent", "NOT_NULL", [], False),
        ("leaseOwner", "BEGINS_WITH", [S("work")], True),
        ("leaseOwner", "BEGINS_WITH", [S("orker")], False),
        ("leaseCounter", "IN", [N("1"), N("6")], True),
        ("leaseCounter", "IN", [N("1"), N("2")], False),
        ("leaseCounter", "BETWEEN", [N("5"), N("6")], True),
        ("leaseCounter", "BETWEEN", [N("7"), N("9")], False),
    ]
    results = []
    for i, (attr, op, values, want) in enumerate(cases):
        spec = {"ComparisonOperator": op}
        if values:
            spec["AttributeValueList"] = values
        try:
            ddb.update_item(TableName=name, Key=key, Expected={attr: spec},
                            AttributeUpdates={"probe": {"Action": "PUT", "Value": N(str(i))}})
            results.append((attr, op, True))
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ConditionalCheckFailedException", (attr, op, e.response)
            results.append((attr, op, False))
    assert results == [(a, op, want) for a, op, _, want in cases]

    # ConditionalOperator: AND by default, OR on request.
    one_true = {
        "leaseCounter": {"ComparisonOperator": "EQ", "AttributeValueList": [N("99")]},
        "leaseOwner": {"ComparisonOperator": "EQ", "AttributeValueList": [S("worker-1")]},
    }
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=name, Key=key, Expected=one_true, AttributeUpdates={"probe": {"Action": "PUT", "Value": N("100")}})
    assert code(e) == "ConditionalCheckFailedException"
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=name, Key=key, Expected=one_true, ConditionalOperator="AND",
                        AttributeUpdates={"probe": {"Action": "PUT", "Value": N("100")}})
    assert code(e) == "ConditionalCheckFailedException"
    ddb.update_item(TableName=name, Key=key, Expected=one_true, ConditionalOperator="OR",
                    AttributeUpdates={"probe": {"Action": "PUT", "Value": N("101")}})
    none_true = {
        "leaseCounter": {"ComparisonOperator": "EQ", "AttributeValueList": [N("99")]},
        "leaseOwner": {"ComparisonOperator": "EQ", "AttributeValueList": [S("worker-2")]},
    }
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=name, Key=key, Expected=none_true, ConditionalOperator="OR",
                        AttributeUpdates={"probe": {"Action": "PUT", "Value": N("102")}})
    assert code(e) == "ConditionalCheckFailedException"
    assert ddb.get_item(TableName=name, Key=key)["Item"]["probe"] == N("101")


# ---------------------------------------------------------------------------------------------
# 4. Conditions and updates, expression style


EXPR_ITEM = {
    "pk": {"S": "e1"},
    "cnt": {"N": "5"},
    "owner": {"S": "worker-1"},
    "tags": {"SS": ["x", "y"]},
    "m": {"M": {"b": {"N": "1"}}},
    "l": {"L": [{"S": "a"}, {"S": "b"}]},
    "name": {"S": "hello world"},
}
VALUES = {
    ":one": {"N": "1"},
    ":two": {"N": "2"},
    ":five": {"N": "5"},
    ":six": {"N": "6"},
    ":ten": {"N": "10"},
    ":eleven": {"N": "11"},
    ":w1": {"S": "worker-1"},
    ":wpre": {"S": "work"},
    ":xs": {"S": "x"},
    ":zz": {"S": "zz"},
    ":ow": {"S": "o w"},
    ":bee": {"S": "b"},
}
NAMES = {"#o": "owner", "#nm": "name", "#c": "cnt"}


def test_condition_expressions(ddb):
    name = make_table(ddb)
    key = {"pk": {"S": "e1"}}
    ddb.put_item(TableName=name, Item=EXPR_ITEM)
    cases = [
        ("attribute_exists(pk)", True),
        ("attribute_not_exists(pk)", False),
        ("attribute_not_exists(gone)", True),
        ("attribute_exists(gone)", False),
        ("cnt = :five", True),
        ("cnt <> :five", False),
        ("cnt <> :six", True),
        ("cnt < :ten", True),
        ("cnt >= :ten", False),
        ("cnt >= :five", True),
        ("cnt = :five AND #o = :w1", True),
        ("cnt = :ten AND #o = :w1", False),
        ("cnt = :ten OR #o = :w1", True),
        ("NOT cnt = :five", False),
        ("NOT (cnt = :ten)", True),
        ("(cnt = :ten OR #o = :w1) AND NOT attribute_exists(gone)", True),
        ("cnt = :ten OR (#o = :w1 AND cnt = :ten)", False),
        ("#c BETWEEN :one AND :five", True),
        ("cnt BETWEEN :six AND :ten", False),
        ("cnt IN (:one, :five)", True),
        ("cnt IN (:one, :two)", False),
        ("begins_with(#o, :wpre)", True),
        ("begins_with(#nm, :wpre)", False),
        ("contains(tags, :xs)", True),
        ("contains(tags, :zz)", False),
        ("contains(#nm, :ow)", True),
        ("contains(l, :bee)", True),
        ("size(tags) = :two", True),
        ("size(l) > :two", False),
        ("size(#nm) = :eleven", True),
        ("m.b = :one", True),
        ("l[1] = :bee", True),
        ("l[0] = :bee", False),
    ]
    results = []
    for i, (cond, want) in enumerate(cases):
        vals = {**VALUES, ":p": {"N": str(i)}}
        try:
            ddb.update_item(TableName=name, Key=key, UpdateExpression="SET probe = :p", ConditionExpression=cond,
                            **used(cond + " :p", vals, NAMES))
            results.append((cond, True))
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ConditionalCheckFailedException", (cond, e.response)
            assert e.response["Error"]["Message"] == "The conditional request failed"
            results.append((cond, False))
    assert results == [(c, w) for c, w in cases]

    # PutItem and DeleteItem take ConditionExpression too.
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=name, Item={"pk": {"S": "e1"}}, ConditionExpression="attribute_not_exists(pk)")
    assert code(e) == "ConditionalCheckFailedException"
    ddb.put_item(TableName=name, Item={"pk": {"S": "e2"}}, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ClientError) as e:
        ddb.delete_item(TableName=name, Key=key, ConditionExpression="cnt = :ten", ExpressionAttributeValues={":ten": VALUES[":ten"]})
    assert code(e) == "ConditionalCheckFailedException"
    ddb.delete_item(TableName=name, Key={"pk": {"S": "e2"}}, ConditionExpression="attribute_exists(pk)")
    assert "Item" not in ddb.get_item(TableName=name, Key={"pk": {"S": "e2"}})


def test_update_expressions(ddb):
    name = make_table(ddb)
    key = {"pk": {"S": "e1"}}
    ddb.put_item(TableName=name, Item=EXPR_ITEM)

    def update(expr, values=None, names=None, rv="ALL_NEW", **kw):
        return ddb.update_item(TableName=name, Key=key, UpdateExpression=expr, ReturnValues=rv,
                               **used(expr + " " + kw.pop("cond", ""), values, names), **kw)["Attributes"]

    a = update(
        "SET cnt = cnt + :one, created = if_not_exists(created, :now), #o = if_not_exists(#o, :w2), l = list_append(l, :more)",
        {":one": {"N": "1"}, ":now": {"N": "1700000000"}, ":w2": {"S": "worker-2"}, ":more": {"L": [{"S": "c"}]}},
        {"#o": "owner"},
    )
    assert a["cnt"] == {"N": "6"}
    assert a["created"] == {"N": "1700000000"}
    assert a["owner"] == {"S": "worker-1"}
    assert a["l"] == {"L": [{"S": "a"}, {"S": "b"}, {"S": "c"}]}

    a = update("SET m.b = :two, m.c = :s, l[0] = :z, cnt = cnt - :ten",
               {":two": {"N": "2"}, ":s": {"S": "new"}, ":z": {"S": "z"}, ":ten": {"N": "10"}})
    assert a["m"] == {"M": {"b": {"N": "2"}, "c": {"S": "new"}}}
    assert a["l"] == {"L": [{"S": "z"}, {"S": "b"}, {"S": "c"}]}
    assert a["cnt"] == {"N": "-4"}

    a = update("SET l = list_append(:front, l)", {":front": {"L": [{"N": "0"}]}})
    assert a["l"] == {"L": [{"N": "0"}, {"S": "z"}, {"S": "b"}, {"S": "c"}]}

    a = update("REMOVE #o, m.b, l[0]", names={"#o": "owner"})
    assert "owner" not in a
    assert a["m"] == {"M": {"c": {"S": "new"}}}
    assert a["l"] == {"L": [{"S": "z"}, {"S": "b"}, {"S": "c"}]}

    a = update("ADD cnt :five, tags :zs, fresh :one", {":five": {"N": "5"}, ":zs": {"SS": ["z"]}, ":one": {"N": "1"}})
    assert a["cnt"] == {"N": "1"}
    assert sorted(a["tags"]["SS"]) == ["x", "y", "z"]
    assert a["fresh"] == {"N": "1"}

    a = update("DELETE tags :xs", {":xs": {"SS": ["x", "nope"]}})
    assert sorted(a["tags"]["SS"]) == ["y", "z"]

    a = update("SET #a = :v REMOVE fresh ADD cnt :one DELETE tags :y", {":v": {"BOOL": True}, ":one": {"N": "1"}, ":y": {"SS": ["y"]}},
               {"#a": "flag"})
    assert a["flag"] == {"BOOL": True}
    assert "fresh" not in a
    assert a["cnt"] == {"N": "2"}
    assert a["tags"] == {"SS": ["z"]}

    # UPDATED_NEW / UPDATED_OLD name only the attributes the update touched.
    assert update("SET cnt = :ten", {":ten": {"N": "10"}}, rv="UPDATED_NEW") == {"cnt": {"N": "10"}}
    assert update("SET cnt = :one", {":one": {"N": "1"}}, rv="UPDATED_OLD") == {"cnt": {"N": "10"}}
    old = ddb.get_item(TableName=name, Key=key)["Item"]
    assert norm(update("SET cnt = :two", {":two": {"N": "2"}}, rv="ALL_OLD")) == norm(old)

    # The whole item, finally.
    got = ddb.get_item(TableName=name, Key=key)["Item"]
    assert norm(got) == norm({
        "pk": {"S": "e1"},
        "cnt": {"N": "2"},
        "tags": {"SS": ["z"]},
        "m": {"M": {"c": {"S": "new"}}},
        "l": {"L": [{"S": "z"}, {"S": "b"}, {"S": "c"}]},
        "name": {"S": "hello world"},
        "created": {"N": "1700000000"},
        "flag": {"BOOL": True},
    })

    # An update on a missing key creates the item (key + updated attributes).
    r = ddb.update_item(TableName=name, Key={"pk": {"S": "new"}}, UpdateExpression="SET v = :v",
                        ExpressionAttributeValues={":v": {"S": "x"}}, ReturnValues="ALL_NEW")
    assert r["Attributes"] == {"pk": {"S": "new"}, "v": {"S": "x"}}


def test_condition_failure_returns_old_item(ddb, endpoint):
    name = make_table(ddb)
    key = {"pk": {"S": "e1"}}
    ddb.put_item(TableName=name, Item=EXPR_ITEM)
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=name, Key=key, UpdateExpression="SET cnt = :ten", ConditionExpression="cnt = :ten",
                        ExpressionAttributeValues={":ten": {"N": "10"}}, ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert code(e) == "ConditionalCheckFailedException"
    assert norm(e.value.response.get("Item")) == norm(EXPR_ITEM)

    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=name, Item=key, ConditionExpression="attribute_not_exists(pk)",
                     ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert norm(e.value.response.get("Item")) == norm(EXPR_ITEM)

    # NONE (the default): no item in the error.
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=name, Item=key, ConditionExpression="attribute_not_exists(pk)")
    assert "Item" not in e.value.response

    # On the wire: the error body carries "Item" in DynamoDB JSON.
    body = json.dumps({
        "TableName": name, "Key": key, "UpdateExpression": "SET cnt = :ten", "ConditionExpression": "cnt = :ten",
        "ExpressionAttributeValues": {":ten": {"N": "10"}}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }).encode()
    status, hdrs, raw = signed_call(endpoint, "DynamoDB_20120810.UpdateItem", body)
    assert status == 400
    doc = json.loads(raw)
    assert doc["__type"] == "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"
    assert doc["message"] == "The conditional request failed"
    assert norm(doc["Item"]) == norm({**EXPR_ITEM})
    # The item is unchanged.
    assert ddb.get_item(TableName=name, Key=key)["Item"]["cnt"] == {"N": "5"}


@pytest.fixture
def expr_table(ddb):
    name = make_table(ddb)
    ddb.put_item(TableName=name, Item=EXPR_ITEM)
    return name


def assert_unchanged(ddb, name):
    """Nothing was changed by any refused request."""
    assert norm(ddb.get_item(TableName=name, Key={"pk": {"S": "e1"}})["Item"]) == norm(EXPR_ITEM)
    assert ddb.scan(TableName=name, Select="COUNT")["Count"] == 1


def test_both_condition_styles_refused(ddb, expr_table):
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=expr_table, Item=EXPR_ITEM, Expected={"pk": {"Exists": False}},
                     ConditionExpression="attribute_not_exists(pk)")
    assert code(e) == "ValidationException"
    assert message(e) == (
        "Can not use both expression and non-expression parameters in the same request: "
        "Non-expression parameters: {Expected} Expression parameters: {ConditionExpression}"
    )
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key={"pk": {"S": "e1"}}, Expected={"cnt": {"Value": {"N": "5"}}},
                        ConditionExpression="cnt = :five", UpdateExpression="SET cnt = :five",
                        ExpressionAttributeValues={":five": {"N": "5"}})
    assert code(e) == "ValidationException"
    assert message(e).startswith("Can not use both expression and non-expression parameters in the same request")
    assert_unchanged(ddb, expr_table)


def test_undefined_placeholders_refused(ddb, expr_table):
    key = {"pk": {"S": "e1"}}
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key=key, UpdateExpression="SET cnt = :one", ConditionExpression="cnt = :undefined",
                        ExpressionAttributeValues={":one": {"N": "1"}})
    assert code(e) == "ValidationException"
    assert message(e) == (
        "Invalid ConditionExpression: An expression attribute value used in expression is not defined; "
        "attribute value: :undefined"
    )
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key=key, UpdateExpression="SET cnt = :nope")
    assert code(e) == "ValidationException"
    assert message(e) == (
        "Invalid UpdateExpression: An expression attribute value used in expression is not defined; "
        "attribute value: :nope"
    )
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key=key, UpdateExpression="SET #x = :one", ExpressionAttributeValues={":one": {"N": "1"}})
    assert code(e) == "ValidationException"
    assert message(e) == (
        "Invalid UpdateExpression: An expression attribute name used in the document path is not defined; "
        "attribute name: #x"
    )
    assert_unchanged(ddb, expr_table)


def test_unused_placeholders_refused(ddb, expr_table):
    key = {"pk": {"S": "e1"}}
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key=key, UpdateExpression="SET cnt = :one",
                        ExpressionAttributeValues={":one": {"N": "1"}, ":x": {"N": "2"}})
    assert code(e) == "ValidationException"
    assert message(e) == "Value provided in ExpressionAttributeValues unused in expressions: keys: {:x}"
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key=key, UpdateExpression="SET cnt = :one",
                        ExpressionAttributeValues={":one": {"N": "1"}}, ExpressionAttributeNames={"#x": "cnt"})
    assert code(e) == "ValidationException"
    assert message(e) == "Value provided in ExpressionAttributeNames unused in expressions: keys: {#x}"
    assert_unchanged(ddb, expr_table)


def test_expression_syntax_error_refused(ddb, expr_table):
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key={"pk": {"S": "e1"}}, UpdateExpression="SET cnt = cnt +")
    assert code(e) == "ValidationException"
    assert message(e).startswith("Invalid UpdateExpression: Syntax error;"), message(e)
    assert_unchanged(ddb, expr_table)


def test_key_attribute_updates_refused(ddb, expr_table):
    key = {"pk": {"S": "e1"}}
    refusal = "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key"
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key=key, UpdateExpression="SET pk = :k", ExpressionAttributeValues={":k": {"S": "other"}})
    assert code(e) == "ValidationException"
    assert message(e) == refusal
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key=key, AttributeUpdates={"pk": {"Action": "PUT", "Value": {"S": "other"}}})
    assert code(e) == "ValidationException"
    assert message(e) == refusal
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key=key, UpdateExpression="REMOVE pk")
    assert code(e) == "ValidationException"
    assert message(e) == refusal
    assert "Item" not in ddb.get_item(TableName=expr_table, Key={"pk": {"S": "other"}})
    assert_unchanged(ddb, expr_table)


def test_key_attribute_update_to_same_value_refused(ddb, expr_table):
    # DynamoDB refuses a key attribute in an update whatever the value, its own value included.
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=expr_table, Key={"pk": {"S": "e1"}}, UpdateExpression="SET pk = :k",
                        ExpressionAttributeValues={":k": {"S": "e1"}})
    assert code(e) == "ValidationException"
    assert message(e) == "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key"
    assert_unchanged(ddb, expr_table)


# ---------------------------------------------------------------------------------------------
# 5. Concurrency: eight workers race for one lease


def test_lease_race(ddb, endpoint):
    name = make_table(ddb, hash_key=("leaseKey", "S"))
    key = {"leaseKey": {"S": "shardId-000000000000"}}
    ddb.put_item(TableName=name, Item={**key, "leaseCounter": {"N": "0"}, "leaseOwner": {"S": "nobody"}},
                 Expected={"leaseKey": {"Exists": False}})
    threads_n, rounds = 8, 50
    clients = [ddb_client(endpoint) for _ in range(threads_n)]
    barrier = threading.Barrier(threads_n, timeout=60)
    wins: list[list[tuple[int, int]]] = [[] for _ in range(rounds)]  # per round: (thread, counter seen)
    errors: list[str] = []
    lock = threading.Lock()

    def worker(t: int):
        c = clients[t]
        try:
            for rnd in range(rounds):
                barrier.wait()
                seen = int(c.get_item(TableName=name, Key=key, ConsistentRead=True)["Item"]["leaseCounter"]["N"])
                barrier.wait()  # everyone has read before anyone writes
                try:
                    c.update_item(
                        TableName=name,
                        Key=key,
                        Expected={"leaseCounter": {"Value": {"N": str(seen)}}},
                        AttributeUpdates={
                            "leaseCounter": {"Action": "PUT", "Value": {"N": str(seen + 1)}},
                            "leaseOwner": {"Action": "PUT", "Value": {"S": f"thread-{t}"}},
                        },
                    )
                    with lock:
                        wins[rnd].append((t, seen))
                except ClientError as e:
                    if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(repr(e))
            barrier.abort()

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors
    assert [len(w) for w in wins] == [1] * rounds, "exactly one winner every round"
    successes = sum(len(w) for w in wins)
    seen = [s for w in wins for _, s in w]
    assert len(seen) == len(set(seen)), "no two winners saw the same counter"
    assert seen == list(range(rounds))
    final = ddb.get_item(TableName=name, Key=key, ConsistentRead=True)["Item"]
    assert final["leaseCounter"] == {"N": str(successes)}
    assert successes == rounds
    assert final["leaseOwner"] == {"S": f"thread-{wins[-1][0][0]}"}


# ---------------------------------------------------------------------------------------------
# 6. Scan


@pytest.fixture(scope="module")
def scan_table(ddb):
    name = make_table(ddb, table_name("scan"))
    for i in range(250):
        ddb.put_item(TableName=name, Item={
            "pk": {"S": f"item-{i:03d}"}, "n": {"N": str(i)}, "grp": {"S": "even" if i % 2 == 0 else "odd"},
        })
    return name


ALL_KEYS = {f"item-{i:03d}" for i in range(250)}


def test_scan_paging(ddb, scan_table):
    seen, pages, start = [], 0, None
    while True:
        r = ddb.scan(TableName=scan_table, Limit=37, **({"ExclusiveStartKey": start} if start else {}))
        pages += 1
        assert len(r["Items"]) == r["Count"] <= 37
        assert r["ScannedCount"] == r["Count"]
        seen += [i["pk"]["S"] for i in r["Items"]]
        start = r.get("LastEvaluatedKey")
        if start is None:
            break
        assert set(start) == {"pk"}, "LastEvaluatedKey is the key only"
        assert start["pk"] == r["Items"][-1]["pk"]
        assert pages < 100
    assert len(seen) == 250 and set(seen) == ALL_KEYS, "every item exactly once"
    assert pages == 7  # 6 full pages of 37 and one of 28
    whole = ddb.scan(TableName=scan_table)
    assert whole["Count"] == 250 and "LastEvaluatedKey" not in whole
    assert sorted(i["pk"]["S"] for i in whole["Items"]) == sorted(ALL_KEYS)


def test_scan_filter_and_count(ddb, scan_table):
    r = ddb.scan(TableName=scan_table, FilterExpression="n < :k", ExpressionAttributeValues={":k": {"N": "100"}})
    assert r["Count"] == 100
    assert r["ScannedCount"] == 250
    assert sorted(int(i["n"]["N"]) for i in r["Items"]) == list(range(100))

    r = ddb.scan(TableName=scan_table, Limit=50, FilterExpression="#g = :g", ExpressionAttributeNames={"#g": "grp"},
                 ExpressionAttributeValues={":g": {"S": "odd"}})
    assert r["ScannedCount"] == 50
    assert r["Count"] == len(r["Items"]) < 50
    assert all(i["grp"] == {"S": "odd"} for i in r["Items"])
    assert "LastEvaluatedKey" in r

    r = ddb.scan(TableName=scan_table, Select="COUNT")
    assert r["Count"] == 250 and r["ScannedCount"] == 250
    assert "Items" not in r

    r = ddb.scan(TableName=scan_table, Select="COUNT", FilterExpression="grp = :g AND n BETWEEN :a AND :b",
                 ExpressionAttributeValues={":g": {"S": "even"}, ":a": {"N": "10"}, ":b": {"N": "19"}})
    assert r["Count"] == 5 and r["ScannedCount"] == 250

    r = ddb.scan(TableName=scan_table, ProjectionExpression="n", FilterExpression="n = :k",
                 ExpressionAttributeValues={":k": {"N": "42"}})
    assert r["Items"] == [{"n": {"N": "42"}}]


def test_parallel_scan(ddb, scan_table):
    segments = []
    for seg in range(4):
        keys, start = [], None
        for _ in range(100):
            r = ddb.scan(TableName=scan_table, Segment=seg, TotalSegments=4, Limit=30,
                         **({"ExclusiveStartKey": start} if start else {}))
            keys += [i["pk"]["S"] for i in r["Items"]]
            start = r.get("LastEvaluatedKey")
            if start is None:
                break
        assert len(keys) == len(set(keys)), f"segment {seg} returns an item twice"
        segments.append(set(keys))
    assert all(segments), [len(s) for s in segments]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not segments[a] & segments[b], f"segments {a} and {b} overlap"
    assert set().union(*segments) == ALL_KEYS
    assert sum(len(s) for s in segments) == 250

    with pytest.raises(ClientError) as e:
        ddb.scan(TableName=scan_table, Segment=4, TotalSegments=4)
    assert code(e) == "ValidationException"


def find_aws() -> str | None:
    beside = Path(sys.executable).parent / "aws"
    return str(beside) if beside.exists() else None


@pytest.mark.skipif(find_aws() is None, reason="the `aws` CLI executable is not installed")
def test_cli_scan(endpoint, scan_table):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": conftest.CLIENT_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": conftest.CLIENT_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    }
    cmd = [find_aws(), "dynamodb", "scan", "--table-name", scan_table, "--endpoint-url", endpoint, "--output", "json",
           "--filter-expression", "grp = :g", "--expression-attribute-values", '{":g": {"S": "odd"}}']
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"stdout: {p.stdout}\nstderr: {p.stderr}"
    out = json.loads(p.stdout)
    assert out["Count"] == 125
    assert out["ScannedCount"] == 250
    assert {i["pk"]["S"] for i in out["Items"]} == {f"item-{i:03d}" for i in range(1, 250, 2)}
    assert {"pk": {"S": "item-001"}, "n": {"N": "1"}, "grp": {"S": "odd"}} in out["Items"]

    missing = subprocess.run([find_aws(), "dynamodb", "scan", "--table-name", "no-such-table-x", "--endpoint-url", endpoint],
                             env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert missing.returncode == 255
    assert "ResourceNotFoundException" in missing.stderr


# ---------------------------------------------------------------------------------------------
# 7. Durability


def _write_everything(c, name):
    """Answered writes: puts, updates (both styles), a delete. Returns the expected items by key."""
    want = {}
    for i in range(30):
        item = {"leaseKey": {"S": f"shard-{i:02d}"}, "leaseCounter": {"N": "0"}, "blob": {"B": bytes([i]) * 10}}
        c.put_item(TableName=name, Item=item, Expected={"leaseKey": {"Exists": False}})
        want[f"shard-{i:02d}"] = item
    for i in range(0, 30, 3):
        k = f"shard-{i:02d}"
        r = c.update_item(TableName=name, Key={"leaseKey": {"S": k}}, Expected={"leaseCounter": {"Value": {"N": "0"}}},
                          AttributeUpdates={"leaseCounter": {"Action": "PUT", "Value": {"N": "1"}},
                                            "leaseOwner": {"Action": "PUT", "Value": {"S": "w"}}},
                          ReturnValues="ALL_NEW")
        want[k] = r["Attributes"]
    for i in range(1, 30, 3):
        k = f"shard-{i:02d}"
        r = c.update_item(TableName=name, Key={"leaseKey": {"S": k}}, UpdateExpression="ADD leaseCounter :n SET cp = :cp",
                          ConditionExpression="leaseCounter = :z",
                          ExpressionAttributeValues={":n": {"N": "7"}, ":cp": {"S": f"seq-{i}"}, ":z": {"N": "0"}},
                          ReturnValues="ALL_NEW")
        want[k] = r["Attributes"]
    c.delete_item(TableName=name, Key={"leaseKey": {"S": "shard-29"}})
    del want["shard-29"]
    return want


def _check_everything(c, name, want):
    t = c.describe_table(TableName=name)["Table"]
    assert t["TableStatus"] == "ACTIVE"
    assert t["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    assert t["ItemCount"] == len(want)
    for k, item in want.items():
        assert c.get_item(TableName=name, Key={"leaseKey": {"S": k}}, ConsistentRead=True).get("Item") == item, k
    assert "Item" not in c.get_item(TableName=name, Key={"leaseKey": {"S": "shard-29"}})
    scanned = c.scan(TableName=name)["Items"]
    assert sorted(scanned, key=lambda i: i["leaseKey"]["S"]) == [want[k] for k in sorted(want)]


def test_kill9_and_sigterm_keep_answered_writes(new_daemon):
    d = new_daemon()
    c = ddb_client(d.endpoint)
    name = make_table(c, hash_key=("leaseKey", "S"))
    want = _write_everything(c, name)

    d.restart(kill=True)  # SIGKILL right after the last answer
    c = ddb_client(d.endpoint)
    _check_everything(c, name, want)
    # The lease table is usable after the crash: conditions see the recovered state.
    with pytest.raises(ClientError) as e:
        c.put_item(TableName=name, Item={"leaseKey": {"S": "shard-00"}}, Expected={"leaseKey": {"Exists": False}})
    assert code(e) == "ConditionalCheckFailedException"
    r = c.update_item(TableName=name, Key={"leaseKey": {"S": "shard-00"}}, Expected={"leaseCounter": {"Value": {"N": "1"}}},
                      AttributeUpdates={"leaseCounter": {"Action": "PUT", "Value": {"N": "2"}}}, ReturnValues="ALL_NEW")
    want["shard-00"] = r["Attributes"]
    second = make_table(c, hash_key=("leaseKey", "S"))
    c.put_item(TableName=second, Item={"leaseKey": {"S": "only"}})

    d.restart()  # SIGTERM, exit 0, start again
    c = ddb_client(d.endpoint)
    _check_everything(c, name, want)
    assert c.get_item(TableName=second, Key={"leaseKey": {"S": "only"}})["Item"] == {"leaseKey": {"S": "only"}}
    assert {name, second} <= set(c.list_tables()["TableNames"])

    c.delete_table(TableName=second)
    d.restart(kill=True)
    c = ddb_client(d.endpoint)
    with pytest.raises(ClientError) as e:
        c.describe_table(TableName=second)
    assert code(e) == "ResourceNotFoundException"
    _check_everything(c, name, want)


# ---------------------------------------------------------------------------------------------
# 8. The wire: DynamoDB's errors


def test_wire_error_format(endpoint):
    status, hdrs, raw = signed_call(endpoint, "DynamoDB_20120810.DescribeTable", b'{"TableName":"missing"}')
    assert status == 400
    assert hdrs["content-type"] == AMZ_JSON_10
    doc = json.loads(raw)
    assert doc["__type"] == "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"
    assert doc["message"] == "Requested resource not found: Table: missing not found"
    assert hdrs.get("x-amzn-requestid")

    # A success is AWS JSON 1.0 too.
    status, hdrs, raw = signed_call(endpoint, "DynamoDB_20120810.ListTables", b"{}")
    assert status == 200
    assert hdrs["content-type"] == AMZ_JSON_10
    assert isinstance(json.loads(raw)["TableNames"], list)

    # DynamoDB speaks JSON 1.0 only: the same request in JSON 1.1 is not served as DynamoDB.
    # (Sluice answers 404 with the bare XML body `<UnknownOperationException/>` and no content type.)
    status, hdrs, raw = signed_call(endpoint, "DynamoDB_20120810.DescribeTable", b'{"TableName":"missing"}',
                                    content_type="application/x-amz-json-1.1")
    assert status in (400, 404), (status, hdrs, raw)
    assert b"Requested resource not found" not in raw, (status, raw)
    assert b"TableNames" not in raw
    status11, _, raw11 = signed_call(endpoint, "DynamoDB_20120810.ListTables", b"{}", content_type="application/x-amz-json-1.1")
    assert status11 != 200 and b"TableNames" not in raw11, (status11, raw11)


def test_unknown_operation(endpoint, ddb):
    status, hdrs, raw = signed_call(endpoint, "DynamoDB_20120810.TransactWriteItems", b'{"TransactItems":[]}')
    assert status == 400, (status, raw)
    doc = json.loads(raw)
    assert doc["__type"] == "com.amazon.coral.service#UnknownOperationException", doc

    with pytest.raises(ClientError) as e:
        ddb.transact_write_items(TransactItems=[{"ConditionCheck": {
            "TableName": "t-any", "Key": {"pk": {"S": "a"}}, "ConditionExpression": "attribute_exists(pk)"}}])
    assert code(e) == "UnknownOperationException"


# ---------------------------------------------------------------------------------------------
# 9. Accepted no-ops


def test_accepted_noops(ddb):
    name = make_table(ddb)
    arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
    r = ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "app", "Value": "kcl"}])
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    r = ddb.list_tags_of_resource(ResourceArn=arn)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert isinstance(r["Tags"], list)
    assert all(set(t) == {"Key", "Value"} for t in r["Tags"])
    r = ddb.untag_resource(ResourceArn=arn, TagKeys=["app"])
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200

    r = ddb.update_continuous_backups(TableName=name,
                                      PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    d = r["ContinuousBackupsDescription"]
    assert d["ContinuousBackupsStatus"] == "ENABLED"
    assert d["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"
    r = ddb.describe_continuous_backups(TableName=name)
    assert r["ContinuousBackupsDescription"]["ContinuousBackupsStatus"] == "ENABLED"
    assert r["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"


# ---------------------------------------------------------------------------------------------
# 10. Kinesis alongside


def test_kinesis_on_the_same_port(endpoint, ddb):
    name = make_table(ddb)
    k = make_client(endpoint)
    r = k.list_streams()
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert isinstance(r["StreamNames"], list)
    assert name not in r["StreamNames"], "a table is not a stream"
    assert name in ddb.list_tables()["TableNames"]


# ---------------------------------------------------------------------------------------------
# 11. Query (table and index) and the batch calls


def test_query_on_the_table_and_on_an_index(ddb):
    name = table_name("q")
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "h", "KeyType": "HASH"}, {"AttributeName": "r", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "h", "AttributeType": "S"}, {"AttributeName": "r", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for r in [10, 2, 33, 4]:
        ddb.put_item(TableName=name, Item={"h": {"S": "a"}, "r": {"N": str(r)}, "owner": {"S": f"w{r % 2}"}, "x": {"S": "payload"}})
    ddb.put_item(TableName=name, Item={"h": {"S": "b"}, "r": {"N": "1"}})
    # Range conditions compare numbers as numbers; results come in range-key order.
    got = ddb.query(TableName=name, KeyConditionExpression="h = :h AND r > :x",
                    ExpressionAttributeValues={":h": {"S": "a"}, ":x": {"N": "3"}})
    assert [i["r"]["N"] for i in got["Items"]] == ["4", "10", "33"]
    assert got["Count"] == 3
    # Backwards, two at a time, resumed from LastEvaluatedKey: every item once.
    page = ddb.query(TableName=name, KeyConditionExpression="h = :h", ExpressionAttributeValues={":h": {"S": "a"}},
                     Limit=2, ScanIndexForward=False)
    assert [i["r"]["N"] for i in page["Items"]] == ["33", "10"]
    assert page["LastEvaluatedKey"] == {"h": {"S": "a"}, "r": {"N": "10"}}
    rest = ddb.query(TableName=name, KeyConditionExpression="h = :h", ExpressionAttributeValues={":h": {"S": "a"}},
                     Limit=2, ScanIndexForward=False, ExclusiveStartKey=page["LastEvaluatedKey"])
    assert [i["r"]["N"] for i in rest["Items"]] == ["4", "2"]
    between = ddb.query(TableName=name, KeyConditionExpression="h = :h AND r BETWEEN :lo AND :hi",
                        ExpressionAttributeValues={":h": {"S": "a"}, ":lo": {"N": "3"}, ":hi": {"N": "10"}})
    assert [i["r"]["N"] for i in between["Items"]] == ["4", "10"]
    # A KEYS_ONLY index, as KCL 3.x's LeaseOwnerToLeaseKeyIndex: owner's items, keys only.
    ddb.update_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "owner", "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[{"Create": {
            "IndexName": "byOwner",
            "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}, {"AttributeName": "h", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }}],
    )
    idx = ddb.query(TableName=name, IndexName="byOwner", KeyConditionExpression="#o = :o",
                    ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":o": {"S": "w0"}})
    assert sorted(i["r"]["N"] for i in idx["Items"]) == ["10", "2", "4"]
    assert all(set(i) == {"h", "r", "owner"} for i in idx["Items"]), idx["Items"]
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=name, IndexName="missing", KeyConditionExpression="h = :h",
                  ExpressionAttributeValues={":h": {"S": "a"}})
    assert code(e) == "ValidationException"


def test_batch_write_and_get(ddb):
    name = make_table(ddb)
    ddb.put_item(TableName=name, Item={"pk": {"S": "gone"}})
    out = ddb.batch_write_item(RequestItems={name: [
        {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "n": {"N": str(i)}}}} for i in range(20)
    ] + [{"DeleteRequest": {"Key": {"pk": {"S": "gone"}}}}]})
    assert out["UnprocessedItems"] == {}
    got = ddb.batch_get_item(RequestItems={name: {"Keys": [{"pk": {"S": "k3"}}, {"pk": {"S": "gone"}}, {"pk": {"S": "k19"}}]}})
    assert sorted(i["pk"]["S"] for i in got["Responses"][name]) == ["k19", "k3"]
    assert got["UnprocessedKeys"] == {}
    with pytest.raises(ClientError) as e:
        ddb.batch_write_item(RequestItems={name: [
            {"PutRequest": {"Item": {"pk": {"S": f"x{i}"}}}} for i in range(26)]})
    assert code(e) == "ValidationException"
    assert ddb.scan(TableName=name, Select="COUNT")["Count"] == 20, "the refused batch wrote nothing"
