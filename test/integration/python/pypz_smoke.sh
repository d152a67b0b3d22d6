#!/usr/bin/env bash
# Smoke test of the pypz interop peer (pypz_peer.py): a real pypz writer -> a real pypz reader, on Kafka and on
# RabbitMQ, once with the reader started first and once with the writer started first. Checks that the reader got
# every record in order and saw the writer go Opened -> Started -> Stopped -> Closed.
#
#   bash test/integration/python/pypz_smoke.sh                 # starts private Kafka and RabbitMQ brokers, stops them
#   PYPZ_KAFKA=127.0.0.1:9092 PYPZ_RMQ=amqp://guest:guest@127.0.0.1:5672 bash test/integration/python/pypz_smoke.sh
#   PYPZ_BROKERS=kafka bash test/integration/python/pypz_smoke.sh   # only one broker kind
#
# Environment: PYPZ_COUNT (records per run, default 20), PYPZ_KEEP_LOGS=1 keeps the run directory.
# Brokers started here use their own state dirs (.infra/kafka-pypz-smoke, .infra/rabbitmq-pypz-smoke) and are stopped
# on exit by scripts/kafka.sh stop / scripts/rabbitmq.sh stop.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
PEER="$ROOT/test/integration/python/pypz_peer.py"
COUNT="${PYPZ_COUNT:-20}"
BROKERS="${PYPZ_BROKERS:-kafka rmq}"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/pypz-smoke.XXXXXX")"
STARTED_KAFKA=0
STARTED_RMQ=0

log() { printf 'pypz_smoke.sh: %s\n' "$*" >&2; }
cleanup() {
  if [[ $STARTED_KAFKA -eq 1 ]]; then SLUICE_KAFKA_STATE_DIR="$ROOT/.infra/kafka-pypz-smoke" bash "$ROOT/scripts/kafka.sh" stop >&2 || true; fi
  if [[ $STARTED_RMQ -eq 1 ]]; then SLUICE_RABBITMQ_STATE_DIR="$ROOT/.infra/rabbitmq-pypz-smoke" bash "$ROOT/scripts/rabbitmq.sh" stop >&2 || true; fi
  if [[ "${PYPZ_KEEP_LOGS:-0}" == "1" ]]; then log "logs kept in $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT

PY="$(bash "$ROOT/scripts/pypz-venv.sh")"

for b in $BROKERS; do
  case "$b" in
    kafka)
      if [[ -z "${PYPZ_KAFKA:-}" ]]; then
        bash "$ROOT/scripts/kafka.sh" install >&2
        STARTED_KAFKA=1
        PYPZ_KAFKA="$(SLUICE_KAFKA_STATE_DIR="$ROOT/.infra/kafka-pypz-smoke" bash "$ROOT/scripts/kafka.sh" start)"
      fi ;;
    rmq)
      if [[ -z "${PYPZ_RMQ:-}" ]]; then
        bash "$ROOT/scripts/rabbitmq.sh" install >&2
        STARTED_RMQ=1
        PYPZ_RMQ="$(SLUICE_RABBITMQ_STATE_DIR="$ROOT/.infra/rabbitmq-pypz-smoke" bash "$ROOT/scripts/rabbitmq.sh" start)"
      fi ;;
    *) log "unknown broker '$b'"; exit 1 ;;
  esac
done

# $1 broker, $2 order (reader-first|writer-first)
run_case() {
  local broker="$1" order="$2" loc channel rp wp rrc wrc
  channel="smoke-$broker-$order-$RANDOM$RANDOM"
  if [[ "$broker" == kafka ]]; then loc=(--bootstrap "$PYPZ_KAFKA"); else loc=(--url "$PYPZ_RMQ"); fi
  local common=(--broker "$broker" "${loc[@]}" --channel-name "$channel" --timeout-s 90)
  local start=$SECONDS
  if [[ "$order" == reader-first ]]; then
    "$PY" "$PEER" "${common[@]}" --role reader >"$RUN/$channel.reader.jsonl" 2>"$RUN/$channel.reader.log" & rp=$!
    sleep 2
    "$PY" "$PEER" "${common[@]}" --role writer --count "$COUNT" --batch-size 3 >"$RUN/$channel.writer.jsonl" 2>"$RUN/$channel.writer.log" & wp=$!
  else
    "$PY" "$PEER" "${common[@]}" --role writer --count "$COUNT" --batch-size 3 >"$RUN/$channel.writer.jsonl" 2>"$RUN/$channel.writer.log" & wp=$!
    sleep 3
    "$PY" "$PEER" "${common[@]}" --role reader >"$RUN/$channel.reader.jsonl" 2>"$RUN/$channel.reader.log" & rp=$!
  fi
  wrc=0; wait "$wp" || wrc=$?
  rrc=0; wait "$rp" || rrc=$?
  if [[ $wrc -ne 0 || $rrc -ne 0 ]]; then
    log "FAIL $broker $order: writer exit $wrc, reader exit $rrc"
    tail -n 20 "$RUN/$channel.writer.log" "$RUN/$channel.reader.log" >&2
    return 1
  fi
  "$PY" - "$RUN/$channel.reader.jsonl" "$COUNT" "$broker $order ($((SECONDS - start)) s)" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
count = int(sys.argv[2])
ids = [e["record"]["id"] for e in events if e["event"] == "record"]
assert ids == list(range(count)), f"records {ids}"
seq = [e["current"] for e in events if e["event"] == "transition" and e["from"].endswith("@op_a.output_port")]
assert seq == ["Opened", "Started", "Stopped", "Closed"], f"writer transitions {seq}"
summary = events[-1]
assert summary["event"] == "summary" and summary["ok"] and summary["read"] == count, summary
print(f"pypz_smoke.sh: ok {sys.argv[3]}: {count} records in order; writer {' -> '.join(seq)}", file=sys.stderr)
PY
}

fails=0
for b in $BROKERS; do
  for order in reader-first writer-first; do
    run_case "$b" "$order" || fails=$((fails + 1))
  done
done
n=$(($(wc -w <<<"$BROKERS") * 2))
echo "pypz smoke: $((n - fails)) passed, $fails failed"
[[ $fails -eq 0 ]]
