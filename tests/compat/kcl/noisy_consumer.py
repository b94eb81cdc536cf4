#!/usr/bin/env python3
"""A record processor that speaks the multi-language protocol by hand (no amazon_kclpy) and
clutters its stdout and stderr, for the tests of `sluice kcl`: around every protocol message it
prints lines that are not protocol messages (plain text, blank lines, JSON without an action,
a JSON array, broken JSON), and it writes a line to stderr for each batch.

Each record becomes one line `shardId sequenceNumber subSequenceNumber data` appended (and
fsync'ed) to the file named by argv[1] or KCL_RECORD_FILE. Then the batch is checkpointed twice:
first at "not-a-number" (which must be refused), then explicitly at its last record's sequence
and sub-sequence numbers. Each answer is appended to the events file (KCL_EVENTS_FILE, default:
the record file + ".events") as `checkpoint_reply <shard> <sequenceNumber asked> <error or null>`;
so are the messages as received: `initialize <shard> <sequenceNumber> <subSequenceNumber>` and,
per record, `record <shard> <sequenceNumber> <its keys, comma-separated> <partitionKey>
<approximateArrivalTimestamp>`.
"""

import base64
import json
import os
import sys

JUNK = [
    "NOISE plain text from {shard}",
    "",
    "   ",
    '{{"noise": "{shard}"}}',
    "[1, 2, 3]",
    "{{not json from {shard}",
]


class Noisy:
    def __init__(self, record_file, events_file):
        self.record_file = record_file
        self.events_file = events_file
        self.shard = "unknown"

    def junk(self):
        for line in JUNK:
            sys.stdout.write(line.format(shard=self.shard) + "\n")
        sys.stdout.flush()

    def send(self, message):
        self.junk()
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def receive(self):
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        return json.loads(line)

    def append(self, path, text):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def checkpoint(self, sequence_number=None, sub_sequence_number=None):
        self.send({"action": "checkpoint", "sequenceNumber": sequence_number, "subSequenceNumber": sub_sequence_number})
        self.junk()
        reply = self.receive()
        if reply.get("action") != "checkpoint":
            sys.exit(f"expected a checkpoint reply, got {reply}")
        error = reply.get("error")
        self.append(self.events_file, f"checkpoint_reply {self.shard} {sequence_number} {error or 'null'}\n")

    def record(self, records):
        lines = []
        for r in records:
            data = base64.b64decode(r["data"]).decode("utf-8", errors="replace").replace("\n", "\\n")
            lines.append(f"{self.shard} {r['sequenceNumber']} {r.get('subSequenceNumber', 0)} {data}\n")
        self.append(self.record_file, "".join(lines))

    def run(self):
        while True:
            message = self.receive()
            action = message.get("action")
            if action == "initialize":
                self.shard = message["shardId"]
                self.append(
                    self.events_file,
                    f"initialize {self.shard} {message.get('sequenceNumber')} {message.get('subSequenceNumber')}\n",
                )
            elif action == "processRecords":
                records = message.get("records", [])
                sys.stderr.write(f"NOISE-ERR {self.shard} got a batch of {len(records)}\n")
                sys.stderr.flush()
                if records:
                    self.append(
                        self.events_file,
                        "".join(
                            f"record {self.shard} {r.get('sequenceNumber')} {','.join(sorted(r))} "
                            f"{r.get('partitionKey')} {r.get('approximateArrivalTimestamp')}\n"
                            for r in records
                        ),
                    )
                    self.record(records)
                    self.checkpoint("not-a-number")
                    last = records[-1]
                    self.checkpoint(last["sequenceNumber"], last.get("subSequenceNumber", 0))
            elif action in ("shardEnded", "shutdownRequested"):
                self.checkpoint()
            self.send({"action": "status", "responseFor": action})


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KCL_RECORD_FILE")
    if not path:
        sys.exit("noisy_consumer.py: give the record file as argv[1] or KCL_RECORD_FILE")
    Noisy(path, os.environ.get("KCL_EVENTS_FILE") or path + ".events").run()
