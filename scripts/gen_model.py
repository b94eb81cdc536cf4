#!/usr/bin/env python3
"""Writes src/<service>/model.json: the request shapes and constraints of every operation of a
service (kinesis, firehose, kinesisanalytics), taken from botocore's service model, for the daemon's model-driven
validation (src/protocol/validate.rs).

Only what validation needs is kept: for each operation its input shape and whether it has an
output; for each shape reachable from an input its type, members (in the order AWS validates
them), required members and constraints (min, max, pattern, enum). The member order is the
model's, except where AWS has been observed to report violations in another order
(MEMBER_ORDER below); enum lists likewise (ENUM_ORDER).

Usage: scripts/gen_model.py [kinesis|firehose|analytics] [path to service-2.json or .json.gz]
(default: kinesis, from the botocore in .venv).
"""

import glob
import gzip
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The order AWS reports a request's violations in, where it differs from the model's member
# order (observed answers of the service). Members not listed follow in the model's order.
MEMBER_ORDER = {
    "CreateStreamInput": ["ShardCount", "StreamName"],
    "DescribeStreamInput": ["Limit", "ExclusiveStartShardId", "StreamName"],
    "ListStreamsInput": ["Limit", "ExclusiveStartStreamName"],
    "ListTagsForStreamInput": ["Limit", "ExclusiveStartTagKey", "StreamName"],
    "AddTagsToStreamInput": ["Tags", "StreamName"],
    "RemoveTagsFromStreamInput": ["TagKeys", "StreamName"],
    "IncreaseStreamRetentionPeriodInput": ["RetentionPeriodHours", "StreamName"],
    "DecreaseStreamRetentionPeriodInput": ["RetentionPeriodHours", "StreamName"],
    "GetRecordsInput": ["Limit", "ShardIterator"],
    "GetShardIteratorInput": ["ShardId", "ShardIteratorType", "StartingSequenceNumber", "StreamName", "Timestamp"],
    "ListShardsInput": ["MaxResults", "ExclusiveStartShardId", "StreamName", "NextToken", "StreamCreationTimestamp"],
    "MergeShardsInput": ["ShardToMerge", "AdjacentShardToMerge", "StreamName"],
    "SplitShardInput": ["NewStartingHashKey", "StreamName", "ShardToSplit"],
    "PutRecordInput": ["SequenceNumberForOrdering", "PartitionKey", "ExplicitHashKey", "Data", "StreamName"],
    "PutRecordsInput": ["Records", "StreamName"],
    "PutRecordsRequestEntry": ["PartitionKey", "ExplicitHashKey", "Data"],
}

# Enum values in the order AWS prints them in "Member must satisfy enum value set: [...]".
ENUM_ORDER = {
    "ShardIteratorType": ["AFTER_SEQUENCE_NUMBER", "LATEST", "AT_TIMESTAMP", "AT_SEQUENCE_NUMBER", "TRIM_HORIZON"],
}


# Per service: botocore's folder, and the Java package AWS's validation messages name.
SERVICES = {
    "kinesis": ("kinesis/2013-12-02", "com.amazonaws.kinesis.v20131202"),
    "firehose": ("firehose/2015-08-04", "com.amazonaws.firehose.v20150804"),
    "analytics": ("kinesisanalytics/2015-08-14", "com.amazonaws.kinesisanalytics.v20150814"),
}


# Patterns with look-around, which the daemon's regex engine lacks, as equivalents without it
# (TagKey's "not aws:" prefix rule is checked by the service itself); and an HTTP endpoint URL
# may also be plain http on loopback, for endpoints on the daemon's own host.
PATTERN_REWRITE = {
    r"https://.*": r"https://.*|http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/.*)?",
    r"^(?!\s*$).+": r"^.*\S.*$",
    r"^(?!aws:)[\p{L}\p{Z}\p{N}_.:\/=+\-@%]*$": r"^[\p{L}\p{Z}\p{N}_.:\/=+\-@%]*$",
    r"jdbc:(redshift|postgresql)://((?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)+(redshift(-serverless)?)\.([a-zA-Z0-9\.\-]+):\d{1,5}/[a-zA-Z0-9_$-]+":
        r"jdbc:(redshift|postgresql)://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(redshift(-serverless)?)\.([a-zA-Z0-9\.\-]+):\d{1,5}/[a-zA-Z0-9_$-]+",
}


def default_model(service):
    folder = SERVICES[service][0]
    pattern = os.path.join(ROOT, f".venv/lib/python3*/site-packages/botocore/data/{folder}/service-2.json*")
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"no botocore {service} model found; run scripts/venv.sh or pass a path")
    return found[0]


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def main():
    args = sys.argv[1:]
    service = args.pop(0) if args and args[0] in SERVICES else "kinesis"
    path = args[0] if args else default_model(service)
    model = load(path)
    shapes = model["shapes"]
    out_shapes = {}

    def visit(name):
        if name in out_shapes:
            return
        s = shapes[name]
        kind = s["type"]
        o = {"type": kind}
        for k in ("min", "max", "pattern"):
            if k in s:
                o[k] = s[k]
        if "pattern" in o:
            o["pattern"] = PATTERN_REWRITE.get(o["pattern"], o["pattern"])
            if "(?!" in o["pattern"] or "(?=" in o["pattern"] or "(?<" in o["pattern"]:
                sys.exit(f"{name}: pattern {o['pattern']!r} uses look-around; add it to PATTERN_REWRITE")
        if "enum" in s:
            o["enum"] = ENUM_ORDER.get(name, s["enum"])
        out_shapes[name] = o
        if kind == "structure":
            names = list(s.get("members", {}))
            order = [m for m in MEMBER_ORDER.get(name, []) if m in names]
            order += [m for m in names if m not in order]
            required = set(s.get("required", []))
            o["members"] = [[m, s["members"][m]["shape"], m in required] for m in order]
            for m in order:
                visit(s["members"][m]["shape"])
        elif kind == "list":
            o["member"] = s["member"]["shape"]
            visit(o["member"])
        elif kind == "map":
            o["key"] = s["key"]["shape"]
            o["value"] = s["value"]["shape"]
            visit(o["key"])
            visit(o["value"])

    ops = {}
    for op, spec in sorted(model["operations"].items()):
        entry = {"output": "output" in spec}
        if "input" in spec:
            entry["input"] = spec["input"]["shape"]
            visit(entry["input"])
        ops[op] = entry
    doc = {
        "service": model["metadata"]["serviceId"],
        "api_version": model["metadata"]["apiVersion"],
        "java_package": SERVICES[service][1],
        "operations": ops,
        "shapes": dict(sorted(out_shapes.items())),
    }
    target = os.path.join(ROOT, f"src/{service}/model.json")
    with open(target, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"wrote {target}: {len(ops)} operations, {len(out_shapes)} shapes")


if __name__ == "__main__":
    main()
