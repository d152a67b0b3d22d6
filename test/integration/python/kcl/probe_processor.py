#!/usr/bin/env python
# An amazon-kclpy child for sluice's cross-check (test/integration/kcl-kclpy.test.ts). Its twin in TypeScript is
# test/unit/records/kcl/fixtures/probe-child.ts: both must answer the same JSON-lines input identically.
#
#   python probe_processor.py v3|v1
#
# Each record's data is a JSON command: {"op": "checkpoint", "seq": <str|null>, "sub": <int|null>} or
# {"op": "throw", "message": <str>}. Outcomes go to stderr as "probe: ..." lines (never stdout, the protocol
# channel); checkpoint errors are reported by their KCL name (CheckpointError.value).
import base64
import json
import sys

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor as v3processor


def report(line):
    sys.stderr.write("probe: " + line + "\n")
    sys.stderr.flush()


def attempt(checkpointer, what, seq=None, sub=None):
    try:
        checkpointer.checkpoint(seq, sub)
        report("%s -> ok" % what)
    except kcl.CheckpointError as e:
        report("%s -> %s" % (what, e.value))


def run_commands(records, checkpointer):
    for record in records:
        cmd = json.loads(base64.b64decode(record.get("data")).decode("utf-8"))
        if cmd["op"] == "checkpoint":
            what = "checkpoint %s %s" % (json.dumps(cmd.get("seq")), json.dumps(cmd.get("sub")))
            attempt(checkpointer, what, cmd.get("seq"), cmd.get("sub"))
        elif cmd["op"] == "throw":
            raise Exception(cmd["message"])


class ProbeV3(v3processor.RecordProcessorBase):
    def initialize(self, initialize_input):
        report("initialize %s %s %s" % (initialize_input.shard_id, json.dumps(initialize_input.sequence_number),
                                        json.dumps(initialize_input.sub_sequence_number)))

    def process_records(self, process_records_input):
        report("processRecords %d" % len(process_records_input.records))
        run_commands(process_records_input.records, process_records_input.checkpointer)

    def lease_lost(self, lease_lost_input):
        report("leaseLost")

    def shard_ended(self, shard_ended_input):
        report("shardEnded")
        attempt(shard_ended_input.checkpointer, "checkpoint at shard end")

    def shutdown_requested(self, shutdown_requested_input):
        report("shutdownRequested")
        attempt(shutdown_requested_input.checkpointer, "checkpoint at shutdown")


class ProbeV1(kcl.RecordProcessorBase):
    def initialize(self, shard_id):
        report("initialize %s" % shard_id)

    def process_records(self, records, checkpointer):
        report("processRecords %d" % len(records))
        run_commands(records, checkpointer)

    def shutdown(self, checkpointer, reason):
        report("shutdown %s" % reason)
        attempt(checkpointer, "checkpoint at shutdown")

    def shutdown_requested(self, checkpointer):
        report("shutdownRequested")
        attempt(checkpointer, "checkpoint at shutdown requested")


if __name__ == "__main__":
    kcl.KCLProcess(ProbeV1() if sys.argv[1:] == ["v1"] else ProbeV3()).run()
