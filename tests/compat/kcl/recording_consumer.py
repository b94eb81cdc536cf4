#!/usr/bin/env python3
"""A KCL record processor (amazon_kclpy 3.x API) that records what it is given, for the tests of
`sluice kcl`.

Each record becomes one line `shardId sequenceNumber subSequenceNumber data` (data decoded as
UTF-8) appended to the record file; a batch is written with one write() on an O_APPEND file
descriptor, then fsync'ed, and only then checkpointed, so the file holds at least everything a
checkpoint covers, in the order the processors saw it, across every shard and every restart.

Lifecycle events go to the events file, one line each, `event shardId ...`:

    initialize <shard> <sequenceNumber> <subSequenceNumber> <pid>
    checkpoint <shard> <sequenceNumber> <subSequenceNumber>     (after the checkpoint succeeded)
    checkpoint_error <shard> <error>
    crash <shard> <sequenceNumber>                               (the last record recorded)
    shard_ended <shard>
    lease_lost <shard>
    shutdown_requested <shard>

Settings (environment, inherited from `sluice kcl`; the record file may also be argv[1]):

    KCL_RECORD_FILE   the record file (required unless given as argv[1])
    KCL_EVENTS_FILE   the events file (default: the record file + ".events")
    KCL_CRASH_AFTER   kill -9 this process once it has recorded this many records, after the
                      batch is on disk and before it is checkpointed ...
    KCL_CRASH_MARKER  ... the first time only: the marker file is created (O_EXCL) by the process
                      that crashes, and no process crashes while it exists
    KCL_BATCH_DELAY   seconds to sleep after recording each batch (slows processing down)
    KCL_PAUSE_FILE    while this file exists, a batch waits before it is recorded ...
    KCL_PAUSE_SHARD   ... on this shard only (default: on every shard)
"""

import os
import signal
import sys
import time

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor


def _append(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = text.encode("utf-8")
        while data:
            n = os.write(fd, data)
            data = data[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


class RecordingProcessor(processor.RecordProcessorBase):
    def __init__(self, record_file, events_file, crash_after, crash_marker, batch_delay, pause_file, pause_shard):
        self.record_file = record_file
        self.events_file = events_file
        self.crash_after = crash_after
        self.crash_marker = crash_marker
        self.batch_delay = batch_delay
        self.pause_file = pause_file
        self.pause_shard = pause_shard
        self.shard_id = None
        self.count = 0

    def event(self, *fields):
        _append(self.events_file, " ".join(str(f) for f in fields) + "\n")

    def initialize(self, initialize_input):
        self.shard_id = initialize_input.shard_id
        self.event(
            "initialize",
            self.shard_id,
            initialize_input.sequence_number,
            initialize_input.sub_sequence_number,
            os.getpid(),
        )

    def should_crash(self):
        if self.crash_after is None or self.count < self.crash_after or not self.crash_marker:
            return False
        try:
            os.close(os.open(self.crash_marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return False
        return True

    def process_records(self, process_records_input):
        records = process_records_input.records
        if not records:
            return
        if self.pause_file and self.pause_shard in (None, self.shard_id):
            while os.path.exists(self.pause_file):
                time.sleep(0.05)
        lines = []
        for r in records:
            data = r.binary_data.decode("utf-8", errors="replace").replace("\n", "\\n")
            lines.append(f"{self.shard_id} {r.sequence_number} {r.sub_sequence_number} {data}\n")
        _append(self.record_file, "".join(lines))
        self.count += len(records)
        last = records[-1]
        if self.should_crash():
            self.event("crash", self.shard_id, last.sequence_number)
            os.kill(os.getpid(), signal.SIGKILL)
        if self.batch_delay:
            time.sleep(self.batch_delay)
        try:
            process_records_input.checkpointer.checkpoint()
        except kcl.CheckpointError as e:
            self.event("checkpoint_error", self.shard_id, e.value)
            return
        self.event("checkpoint", self.shard_id, last.sequence_number, last.sub_sequence_number)

    def lease_lost(self, lease_lost_input):
        self.event("lease_lost", self.shard_id)

    def shard_ended(self, shard_ended_input):
        self.event("shard_ended", self.shard_id)
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        self.event("shutdown_requested", self.shard_id)
        shutdown_requested_input.checkpointer.checkpoint()


def main():
    record_file = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KCL_RECORD_FILE")
    if not record_file:
        sys.exit("recording_consumer.py: give the record file as argv[1] or KCL_RECORD_FILE")
    events_file = os.environ.get("KCL_EVENTS_FILE") or record_file + ".events"
    crash_after = os.environ.get("KCL_CRASH_AFTER")
    processor_ = RecordingProcessor(
        record_file,
        events_file,
        int(crash_after) if crash_after else None,
        os.environ.get("KCL_CRASH_MARKER"),
        float(os.environ.get("KCL_BATCH_DELAY") or 0),
        os.environ.get("KCL_PAUSE_FILE"),
        os.environ.get("KCL_PAUSE_SHARD"),
    )
    kcl.KCLProcess(processor_).run()


if __name__ == "__main__":
    main()
