#!/usr/bin/env python3
"""The trivial record processor of `sluice bench kcl`: amazon_kclpy's v3 API, no work per record,
a checkpoint after each batch and at the shard's end."""
from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor


class Trivial(processor.RecordProcessorBase):
    def initialize(self, initialize_input):
        pass

    def process_records(self, process_records_input):
        process_records_input.checkpointer.checkpoint()

    def lease_lost(self, lease_lost_input):
        pass

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(Trivial()).run()
