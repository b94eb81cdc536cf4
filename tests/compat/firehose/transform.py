#!/usr/bin/env python3
"""A Firehose transformation function run as a command ([[delivery.functions]] with `command`):
the invocation event as JSON on stdin, the response as JSON on stdout.

`identity` returns every record as it is. `mixed` reads each record as JSON with a `value`:
multiples of 5 are Dropped, other multiples of 7 are ProcessingFailed, other even values are
upper-cased, the rest returned as they are. `fail` exits with an error."""
import base64
import json
import sys

mode = sys.argv[1] if len(sys.argv) > 1 else "identity"
if mode == "fail":
    sys.exit("transform failed on purpose")
event = json.load(sys.stdin)
out = []
for r in event["records"]:
    data = base64.b64decode(r["data"])
    if mode == "identity":
        out.append({"recordId": r["recordId"], "result": "Ok", "data": r["data"]})
        continue
    v = json.loads(data)["value"]
    if v % 5 == 0:
        out.append({"recordId": r["recordId"], "result": "Dropped"})
    elif v % 7 == 0:
        out.append({"recordId": r["recordId"], "result": "ProcessingFailed", "data": r["data"]})
    elif v % 2 == 0:
        out.append({"recordId": r["recordId"], "result": "Ok", "data": base64.b64encode(data.upper()).decode()})
    else:
        out.append({"recordId": r["recordId"], "result": "Ok", "data": r["data"]})
json.dump({"records": out}, sys.stdout)
