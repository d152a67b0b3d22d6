"""Check heartbeat messages against the shape OpenMSIStream itself produces.

Used by test/integration/openmsistream-interop.test.ts to check sluice's heartbeats with upstream's own code.
Upstream has no heartbeat *parser*; its tests json-load the value and parse the timestamp. So the reference here
is the value upstream's own producible classes (openmsistream.utilities.heartbeat_producibles) build for the
same program id: the key must be equal, the JSON object must have the same field names with the same Python
types, counters must be >= 0, and the timestamp must parse with datetime.fromisoformat as a tz-aware UTC time.

This file only imports openmsistream (GPL-3.0) at test time; nothing of it is copied.

stdin:  {"cases": [{"kind": "upload" | "processor" | "reproducer", "program_id": str, "key": str, "value": str}]}
stdout: {"openmsistream": str, "confluent_kafka": str, "librdkafka": str, "reference": {kind: {field: type name}},
         "results": [{"ok": bool, "problems": [str, ...], "timestamp_utc": str | null}]}
Exit status 0 whatever the verdicts (the caller asserts them); 2 on bad input.
"""

import datetime
import json
import sys
from importlib.metadata import version

import confluent_kafka
from openmsistream.utilities.heartbeat_producibles import (
    MessageProcessorHeartbeatProducible,
    MessageReproducerHeartbeatProducible,
    UploadDirectoryHeartbeatProducible,
)


def reference(kind, program_id):
    """Upstream's heartbeat producible for this kind of program, with zero counters."""
    if kind == "upload":
        return UploadDirectoryHeartbeatProducible(program_id, 0, 0)
    if kind == "processor":
        return MessageProcessorHeartbeatProducible(program_id, 0, 0, 0, 0)
    if kind == "reproducer":
        return MessageReproducerHeartbeatProducible(program_id, 0, 0, 0, 0, 0, 0)
    raise ValueError(f"unknown program kind {kind!r}")


def check(case):
    problems = []
    ref = reference(case["kind"], case["program_id"])
    if case["key"] != ref.msg_key:
        problems.append(f"key {case['key']!r} != upstream's {ref.msg_key!r}")
    ref_value = json.loads(ref.msg_value)
    try:
        value = json.loads(case["value"])
    except ValueError as exc:
        return {"ok": False, "problems": [f"value is not JSON: {exc}"], "timestamp_utc": None}
    if not isinstance(value, dict):
        return {"ok": False, "problems": ["value is not a JSON object"], "timestamp_utc": None}
    missing = sorted(set(ref_value) - set(value))
    extra = sorted(set(value) - set(ref_value))
    if missing:
        problems.append(f"fields missing: {missing}")
    if extra:
        problems.append(f"fields upstream does not send: {extra}")
    for field, ref_field_value in ref_value.items():
        if field in value and type(value[field]) is not type(ref_field_value):
            problems.append(
                f"{field}: {type(value[field]).__name__}, upstream sends {type(ref_field_value).__name__}"
            )
        elif field != "timestamp" and field in value and value[field] < 0:
            problems.append(f"{field} is negative")
    timestamp_utc = None
    if isinstance(value.get("timestamp"), str):
        try:
            ts = datetime.datetime.fromisoformat(value["timestamp"])
            if ts.tzinfo is None:
                problems.append(f"timestamp {value['timestamp']!r} has no time zone")
            elif ts.utcoffset() != datetime.timedelta(0):
                problems.append(f"timestamp {value['timestamp']!r} is not UTC")
            else:
                timestamp_utc = ts.isoformat()
        except ValueError as exc:
            problems.append(f"timestamp does not parse: {exc}")
    return {"ok": not problems, "problems": problems, "timestamp_utc": timestamp_utc}


def main():
    try:
        cases = json.load(sys.stdin)["cases"]
    except (ValueError, KeyError, TypeError) as exc:
        print(f"check_heartbeats.py: bad input: {exc}", file=sys.stderr)
        return 2
    kinds = sorted({c["kind"] for c in cases})
    out = {
        "openmsistream": version("openmsistream"),
        "confluent_kafka": version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "reference": {
            k: {f: type(v).__name__ for f, v in json.loads(reference(k, "x").msg_value).items()} for k in kinds
        },
        "results": [check(c) for c in cases],
    }
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
