#!/usr/bin/env python3
# The seed document's KCL consumer, in amazon_kclpy 3.2's API. The body of process_records (and
# its print() line) is the seed's own; the other methods are what amazon_kclpy's v3 base asks for,
# with a checkpoint after each batch and at the shard's end.
from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor
import json


class RecordProcessor(processor.RecordProcessorBase):
    def initialize(self, initialize_input):
        pass

    def process_records(self, process_records_input):
        records = process_records_input.records
        for record in records:
            data = json.loads(record.binary_data)
            print(f"Processing: {data['sensor_id']}")
        process_records_input.checkpointer.checkpoint()

    def lease_lost(self, lease_lost_input):
        pass

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == '__main__':
    kcl.KCLProcess(RecordProcessor()).run()
