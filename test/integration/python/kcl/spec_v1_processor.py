#!/usr/bin/env python
# The v1 record processor of amazon-kclpy's own conversation test (test/test_amazon_kclpy_input_output_integration.py,
# amazon-kclpy 3.2.0, Apache-2.0), as a child process: the shared spec's section 7 vector is its input.
# Its twin is test/unit/records/kcl/helpers.ts SpecV1Processor (run by fixtures/spec-v1-child.ts).
from amazon_kclpy import kcl


class RecordProcessor(kcl.RecordProcessorBase):
    def initialize(self, shard_id):
        assert shard_id == "shardId-123"

    def process_records(self, records, checkpointer):
        seq = records[0].get("sequenceNumber")
        assert seq == "456"
        try:
            checkpointer.checkpoint(seq)
            assert 0, "First checkpoint should fail"
        except Exception:
            # Try it one more time (this time it'll work)
            checkpointer.checkpoint(seq)

    def shutdown(self, checkpointer, reason):
        if "TERMINATE" == reason:
            checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(RecordProcessor()).run()
