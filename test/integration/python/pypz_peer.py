#!/usr/bin/env python3
"""A real pypz channel writer or reader, for sluice's pypz interop tests.

Runs one of pypz's own channel classes (pypz-kafka-io / pypz-rmq-io 0.10.2, installed by scripts/pypz-venv.sh):
KafkaChannelWriter / KafkaChannelReader or RMQChannelWriter / RMQChannelReader, and drives it through the lifecycle
the way pypz's operator executor and its ChannelInputPort / ChannelOutputPort do (pypz/executors/operator/states.py,
pypz/abstracts/channel_ports.py):

  writer: invoke_resource_creation until true (group principal only) -> invoke_open_channel until true (false until
          the reader created the resources) -> start_channel() (sends Started) -> invoke_write_records(batch) ...
          -> can_close() and invoke_close_channel() until true (heartbeat stopped + final HealthCheck, Stopped,
          Closed) -> invoke_resource_deletion (principal only; a no-op for writers)
  reader: invoke_resource_creation until true (principal only) -> invoke_open_channel until true ->
          set_initial_record_offset_auto() -> start_channel() (Started) -> wait for a counterpart writer (and with
          --sync-connections-open for all expected ones) -> loop { invoke_read_records(); commit current read
          offset; stop when ChannelInputPort.can_retrieve's condition is false } -> close -> resource deletion
          (principal only, skipped after an error or with --keep-resources)

The channels need a port plugin as context; a small subclass of pypz's BlankInputPortPlugin / BlankOutputPortPlugin
(what upstream's own channel tests pass) supplies the full name, group name/index/size, group mode and schema.

stdout carries only JSON lines (pypz's default logger prints to stdout, so Python's sys.stdout is pointed at stderr
and events go to the original stdout):
  {"event": "opened", ...}          the channel is open (writer: the reader's resources exist)
  {"event": "started", ...}         Started was sent
  {"event": "status", ...}          a status message received from a counterpart (HealthCheck only with
                                    --print-healthchecks)
  {"event": "transition", ...}      a counterpart monitor's current status changed (pypz's own monitor)
  {"event": "record", ...}          reader: one record read (decoded generic Avro record, or the raw body)
  {"event": "written", ...}         writer: one batch written
  {"event": "summary", ...}         last line on success
On any error: a message on stderr, {"event": "error", ...} on stdout, exit code 1; on --timeout-s: exit code 2.

Examples (see PYPZ_NOTES.md):
  PY=$(bash scripts/pypz-venv.sh)
  $PY test/integration/python/pypz_peer.py --broker kafka --bootstrap 127.0.0.1:9092 --role reader
  $PY test/integration/python/pypz_peer.py --broker kafka --bootstrap 127.0.0.1:9092 --role writer --count 10
  $PY test/integration/python/pypz_peer.py --broker rmq --url amqp://guest:guest@127.0.0.1:5672 --role reader
"""

import argparse
import faulthandler
import json
import os
import signal
import sys
import threading
import time
import traceback
from urllib.parse import urlparse

DEFAULT_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "PeerRecord",
        "fields": [{"name": "id", "type": "int"}, {"name": "text", "type": "string"}],
    }
)

# The real stdout, for JSON lines only; everything printed by libraries goes to stderr.
_OUT = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
sys.stdout = sys.stderr
_OUT_LOCK = threading.Lock()
_T0 = time.monotonic()


def emit(event: str, **fields) -> None:
    line = json.dumps({"event": event, **fields}, default=_json_default, ensure_ascii=False)
    with _OUT_LOCK:
        _OUT.write(line + "\n")
        _OUT.flush()


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": bytes(value).hex()}
    if hasattr(value, "value"):  # enums
        return value.value
    return str(value)


def log(msg: str) -> None:
    print(f"pypz_peer[{time.monotonic() - _T0:7.2f}s]: {msg}", file=sys.stderr, flush=True)


class PeerTimeout(Exception):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", choices=["kafka", "rmq"], required=True)
    p.add_argument("--bootstrap", help="Kafka bootstrap, host:port (pypz's channelLocation)")
    p.add_argument(
        "--url",
        help="RabbitMQ: amqp://guest:guest@host:port or host:port. pypz's channelLocation is amqp.Connection's "
        "host=host:port; user, password and vhost cannot be passed through it (guest/guest, '/').",
    )
    p.add_argument("--role", choices=["writer", "reader"], required=True)
    p.add_argument(
        "--channel-name",
        help="channel (= topic / exchange) name. Default: reader = its group name when grouped, else its context "
        "name; writer = op_b.input_port (the reader's default)",
    )
    p.add_argument(
        "--context-name",
        help="full name of this side's port, the channel's context (default op_b.input_port for a reader, "
        "op_a.output_port for a writer). A replica of operator op_b with group index i is named op_b_<i-1>.",
    )
    p.add_argument("--group-size", type=int, default=1, help="replication group size of this side (default 1)")
    p.add_argument("--group-index", type=int, default=0, help="0 = principal, 1.. = replicas")
    p.add_argument("--group-name", help="group name (default when --group-size > 1: the principal's port name)")
    p.add_argument("--group-mode", action="store_true", help="reader: broadcast (every replica gets every record)")
    p.add_argument("--count", type=int, default=10, help="writer: records to write (default 10)")
    p.add_argument("--batch-size", type=int, default=1, help="writer: records per invoke_write_records (default 1)")
    p.add_argument("--start-id", type=int, default=0, help="writer: id of the first record")
    p.add_argument("--write-interval-ms", type=int, default=0, help="writer: sleep between batches")
    p.add_argument("--linger-ms", type=int, default=0, help="writer: stay open (heartbeats) after the last write")
    p.add_argument(
        "--explicit-stop",
        action="store_true",
        help="writer: call stop_channel() (Stopped) before closing. Default: like the executor, leave Stopped "
        "to invoke_close_channel (which sends it after the heartbeat's final HealthCheck)",
    )
    p.add_argument("--send-error", action="store_true", help="writer: after writing, send Error like the executor's "
                   "_on_error, skip resource deletion, exit 1")
    p.add_argument(
        "--schema",
        default=DEFAULT_SCHEMA,
        help="Avro schema JSON (default: record PeerRecord {id:int, text:string}); 'none' for RabbitMQ raw bodies "
        "(the writer then sends each record as a JSON string)",
    )
    p.add_argument("--expected-writers", type=int, default=1,
                   help="reader: sum of the connected output ports' group sizes (default 1)")
    p.add_argument("--sync-connections-open", action="store_true",
                   help="reader: wait until --expected-writers writers were seen (pypz syncConnectionsOpen)")
    p.add_argument("--sequential", action="store_true",
                   help="reader: wait until no writer is healthy and running before reading (sequentialModeEnabled)")
    p.add_argument("--acknowledge", action="store_true", help="reader: acknowledge_input() after each non-empty read")
    p.add_argument("--max-records", type=int, default=0, help="reader: stop after this many records (0 = no limit)")
    p.add_argument("--keep-resources", action="store_true",
                   help="reader: do not delete the topics / queues / streams at the end")
    p.add_argument("--skip-resource-creation", action="store_true", help="do not call invoke_resource_creation")
    p.add_argument("--channel-config", default="{}",
                   help="JSON dict for invoke_configure_channel (pypz channelConfig), e.g. kafka-python consumer "
                   "or producer keys, max_poll_records, logLevel")
    p.add_argument("--log-level", default="WARNING", help="pypz channel log level (logLevel config; default WARNING)")
    p.add_argument("--no-status-send-lock", action="store_true",
                   help="RabbitMQ: do not serialise status sends (reproduces pypz-rmq-io's thread race)")
    p.add_argument("--print-healthchecks", action="store_true", help="also emit received HealthCheck messages")
    p.add_argument("--retry-interval-ms", type=int, default=1000,
                   help="sleep between retries of a lifecycle step (the executor sleeps 1 s)")
    p.add_argument("--timeout-s", type=float, default=120.0, help="hard timeout for the whole run (default 120)")
    args = p.parse_args(argv)

    if args.broker == "kafka":
        if not args.bootstrap:
            p.error("--broker kafka needs --bootstrap host:port")
        args.location = args.bootstrap
    else:
        if not args.url:
            p.error("--broker rmq needs --url")
        args.location = rmq_location(args.url, p)
    if args.group_size < 1 or not (0 <= args.group_index < args.group_size):
        p.error("need --group-size >= 1 and 0 <= --group-index < --group-size")
    if args.context_name is None:
        if args.group_index == 0:
            args.context_name = "op_b.input_port" if args.role == "reader" else "op_a.output_port"
        else:
            op = "op_b" if args.role == "reader" else "op_a"
            port = "input_port" if args.role == "reader" else "output_port"
            args.context_name = f"{op}_{args.group_index - 1}.{port}"
    if args.group_name is None and args.group_size > 1:
        args.group_name = "op_b.input_port" if args.role == "reader" else "op_a.output_port"
    if args.channel_name is None:
        if args.role == "reader":
            args.channel_name = args.group_name if args.group_name is not None else args.context_name
        else:
            args.channel_name = "op_b.input_port"
    args.schema = None if args.schema.lower() == "none" else args.schema
    if args.schema is None and args.broker == "kafka":
        p.error("pypz's Kafka channels require an Avro schema")
    try:
        args.channel_config = json.loads(args.channel_config)
        assert isinstance(args.channel_config, dict)
    except Exception:
        p.error("--channel-config must be a JSON object")
    args.channel_config.setdefault("logLevel", args.log_level.upper())
    return args


def rmq_location(url: str, p) -> str:
    if "://" not in url:
        return url
    u = urlparse(url)
    if u.scheme not in ("amqp",):
        p.error(f"unsupported RabbitMQ URL scheme {u.scheme!r}")
    if (u.username or "guest") != "guest" or (u.password or "guest") != "guest" or u.path not in ("", "/"):
        p.error("pypz's RMQ channels connect as guest/guest to vhost '/'; the URL asks for something else")
    return f"{u.hostname}:{u.port or 5672}"


def make_context(args):
    """A pypz port plugin as the channel's context, with this peer's names and group facts."""
    from pypz.core.specs.misc import BlankInputPortPlugin, BlankOutputPortPlugin

    base = BlankInputPortPlugin if args.role == "reader" else BlankOutputPortPlugin

    class PeerPort(base):
        def get_full_name(self) -> str:
            return args.context_name

        def get_group_size(self) -> int:
            return args.group_size

        def get_group_index(self) -> int:
            return args.group_index

        def get_group_name(self):
            return args.group_name

        def get_group_principal(self):
            return None if args.group_name is None else (self if args.group_index == 0 else object())

        def is_principal(self) -> bool:
            return args.group_index == 0

    simple = args.context_name.rsplit(".", 1)[-1]
    if args.role == "reader":
        return PeerPort(simple, schema=args.schema, group_mode=args.group_mode)
    return PeerPort(simple, schema=args.schema)


def make_channel(args, ctx):
    if args.broker == "kafka":
        from pypz.plugins.kafka_io.channels import KafkaChannelReader as R, KafkaChannelWriter as W
    else:
        from pypz.plugins.rmq_io.channels import RMQChannelReader as R, RMQChannelWriter as W
    cls = R if args.role == "reader" else W
    channel = cls(args.channel_name, ctx)

    last = {}

    def on_update(monitor):
        def cb(msg):
            uid = msg.get_channel_unique_name()
            status = msg.status.value
            if status != "HealthCheck" or args.print_healthchecks:
                emit("status", **{"from": uid, "status": status, "timestamp": msg.timestamp,
                                  "group_name": msg.channel_group_name, "group_index": msg.channel_group_index,
                                  "payload": msg.payload})
            cur = None if monitor.current_status is None else monitor.current_status.value
            if last.get(uid, "<none>") != cur:
                emit("transition", **{"from": uid, "previous": last.get(uid), "current": cur,
                                      "timestamp": msg.timestamp, "healthy": monitor.is_channel_healthy()})
                last[uid] = cur
        monitor.on_status_update(cb)

    if args.broker == "rmq" and not args.no_status_send_lock:
        # pypz-rmq-io sends status messages from two threads on one py-amqp connection: the heartbeat thread
        # (HealthCheck) and the caller (Started, Stopped, Closed, Acknowledged, Error). py-amqp is not thread-safe:
        # basic_publish runs drain_events(timeout=0), and two concurrent calls can leave one thread in a blocking
        # socket read forever (PYPZ_NOTES.md, "RabbitMQ status-send race"). Serialising the sends changes nothing
        # on the wire. --no-status-send-lock reproduces the upstream behaviour.
        send_lock = threading.Lock()
        unlocked_send = channel._send_status_message

        def locked_send(message):
            with send_lock:
                return unlocked_send(message)

        channel._send_status_message = locked_send

    # pypz calls this hook once per new counterpart, before the first update() of its monitor.
    channel.on_new_channel_status_monitor = on_update
    channel.set_location(args.location)
    channel.invoke_configure_channel(args.channel_config)
    return channel


def retry(step_name, fn, args):
    """Call a lifecycle step until it returns True (the executor re-runs a state every second)."""
    attempts = 0
    while True:
        attempts += 1
        if fn():
            if attempts > 1:
                log(f"{step_name}: done after {attempts} attempts")
            return attempts
        if attempts == 1:
            log(f"{step_name}: not yet, retrying every {args.retry_interval_ms} ms")
        time.sleep(args.retry_interval_ms / 1000.0)


def counterparts(channel, args, only_finished=False):
    """Monitors outside this side's own group, as ChannelInputPort.can_retrieve / _on_port_open filter them."""
    def flt(m):
        outside = args.group_name is None or m.get_channel_group_name() != args.group_name
        if not only_finished:
            return outside
        return outside and ((not m.is_channel_healthy()) or m.is_channel_stopped() or m.is_channel_closed())
    return channel.retrieve_connected_channel_unique_names(flt)


def monitor_summary(channel):
    out = {}
    for uid, m in channel._status_map.copy().items():
        out[uid] = {
            "status": None if m.current_status is None else m.current_status.value,
            "healthy": m.is_channel_healthy(),
            "group_name": m.channel_group_name,
            "seen": sorted(s.value for s in m.status_update_map),
        }
    return out


def make_record(args, i):
    rec = {"id": args.start_id + i, "text": f"record-{args.start_id + i}"}
    return rec if args.schema is not None else json.dumps(rec)


def run_writer(args, channel, state):
    from pypz.core.channels.status import ChannelStatus

    if args.group_index == 0 and not args.skip_resource_creation:
        retry("invoke_resource_creation", channel.invoke_resource_creation, args)
    attempts = retry("invoke_open_channel", channel.invoke_open_channel, args)
    state["opened"] = True
    emit("opened", role="writer", channel=args.channel_name, unique_name=channel.get_unique_name(),
         open_attempts=attempts)
    channel.start_channel()
    emit("started", role="writer")
    written = 0
    while written < args.count:
        batch = [make_record(args, written + k) for k in range(min(args.batch_size, args.count - written))]
        channel.invoke_write_records(batch)
        written += len(batch)
        emit("written", count=len(batch), total=written)
        if args.write_interval_ms and written < args.count:
            time.sleep(args.write_interval_ms / 1000.0)
    if args.send_error:
        channel.invoke_sync_send_status_message(ChannelStatus.Error)
        state["error_sent"] = True
        raise RuntimeError("--send-error: Error status sent as requested")
    if args.linger_ms:
        time.sleep(args.linger_ms / 1000.0)
    if args.explicit_stop:
        channel.stop_channel()
    retry("invoke_close_channel", lambda: channel.can_close() and channel.invoke_close_channel(), args)
    state["opened"] = False
    if args.group_index == 0:
        retry("invoke_resource_deletion", channel.invoke_resource_deletion, args)
    return {"written": written, "written_record_count": channel.get_written_record_count()}


def run_reader(args, channel, state):
    from pypz.core.channels.io import ChannelReader

    if args.group_index == 0 and not args.skip_resource_creation:
        retry("invoke_resource_creation", channel.invoke_resource_creation, args)
    attempts = retry("invoke_open_channel", channel.invoke_open_channel, args)
    state["opened"] = True
    emit("opened", role="reader", channel=args.channel_name, unique_name=channel.get_unique_name(),
         open_attempts=attempts)
    if channel.get_read_record_offset() == ChannelReader.NotInitialized:
        channel.set_initial_record_offset_auto()
    initial_offset = channel.get_read_record_offset()
    channel.start_channel()
    emit("started", role="reader", initial_offset=initial_offset)

    # ChannelInputPort._on_port_open: wait for counterparts (outside our own group).
    def connected():
        channel.invoke_sync_status_update()
        if args.expected_writers > 0:
            n = len(counterparts(channel, args))
            if n == 0 or (args.sync_connections_open and args.expected_writers > n):
                return False
        if args.sequential and channel.is_any_connected_channel_healthy_and_not_stopped_and_not_closed():
            return False
        return True

    retry("wait for counterpart writers", connected, args)
    emit("connected", writers=sorted(counterparts(channel, args)))

    read = 0
    while True:
        records = channel.invoke_read_records()
        for k, r in enumerate(records):
            # index: position in this run (0-based); read_offset: pypz's read offset after this read call
            emit("record", index=read + k, read_offset=channel.get_read_record_offset(), record=r)
        read += len(records)
        if records and args.acknowledge:
            channel.acknowledge_input()
        # StateOperationRunning: the framework commits every input port's current read offset after each step.
        channel.invoke_commit_current_read_offset()
        if args.max_records and read >= args.max_records:
            break
        # ChannelInputPort.can_retrieve
        finished = len(counterparts(channel, args, only_finished=True))
        if not (channel.has_records() or args.expected_writers > finished):
            break

    retry("invoke_close_channel", lambda: channel.can_close() and channel.invoke_close_channel(), args)
    state["opened"] = False
    deleted = False
    if args.group_index == 0 and not args.keep_resources:
        retry("invoke_resource_deletion", channel.invoke_resource_deletion, args)
        deleted = True
    return {"read": read, "read_record_count": channel.get_read_record_count(),
            "read_offset": channel.get_read_record_offset(), "initial_offset": initial_offset,
            "resources_deleted": deleted}


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def on_alarm(_signum, _frame):
        raise PeerTimeout(f"hard timeout of {args.timeout_s} s reached")

    def last_resort():
        time.sleep(args.timeout_s + 20)
        log(f"cleanup did not finish within 20 s after the {args.timeout_s} s timeout; exiting hard")
        emit("error", message="hard timeout (cleanup hung)", kind="timeout")
        os._exit(2)

    signal.signal(signal.SIGALRM, on_alarm)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)  # kill -USR1 <pid>: thread dump
    signal.setitimer(signal.ITIMER_REAL, args.timeout_s)
    threading.Thread(target=last_resort, daemon=True).start()

    state = {"opened": False}
    channel = None
    t0 = time.time()
    try:
        ctx = make_context(args)
        channel = make_channel(args, ctx)
        log(f"{args.role} {type(channel).__name__} channel={args.channel_name} context={args.context_name} "
            f"location={args.location} group={args.group_name}/{args.group_index}/{args.group_size}")
        result = (run_writer if args.role == "writer" else run_reader)(args, channel, state)
        signal.setitimer(signal.ITIMER_REAL, 0)
        emit("summary", ok=True, role=args.role, broker=args.broker, channel=args.channel_name,
             context=args.context_name, unique_name=channel.get_unique_name(),
             elapsed_ms=int((time.time() - t0) * 1000), counterparts=monitor_summary(channel), **result)
        return 0
    except BaseException as e:  # noqa: BLE001 - report everything, including the timeout and ^C
        signal.setitimer(signal.ITIMER_REAL, 0)
        timeout = isinstance(e, PeerTimeout)
        log(f"ERROR: {type(e).__name__}: {e}")
        if timeout:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        if not timeout:
            traceback.print_exc(file=sys.stderr)
        # like ChannelInputPort/ChannelOutputPort._on_error: send Error on the open channel, keep the resources
        if channel is not None and state.get("opened"):
            try:
                if not state.get("error_sent"):
                    from pypz.core.channels.status import ChannelStatus
                    channel.invoke_sync_send_status_message(ChannelStatus.Error)
                channel.invoke_close_channel()
            except BaseException as e2:  # noqa: BLE001
                log(f"cleanup after the error failed too: {type(e2).__name__}: {e2}")
        emit("error", kind="timeout" if timeout else "exception", type=type(e).__name__, message=str(e),
             role=args.role, counterparts=monitor_summary(channel) if channel is not None else {})
        return 2 if timeout else 1


if __name__ == "__main__":
    code = main()
    _OUT.flush()
    sys.stderr.flush()
    os._exit(code)  # kafka-python / amqp threads must not keep the process alive
