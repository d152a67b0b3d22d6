#!/usr/bin/env bash
# The real-broker and interop tier: installs and starts its own Kafka and RabbitMQ (and the Python peers' venv), runs
# test/integration/**, and stops everything it started, by PID, whatever happens.
#   npm run test:integration                 # all integration tests
#   npm run test:integration -- FILE...      # only these test files
# With SLUICE_KAFKA_BOOTSTRAP already set, that broker is used and left running.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
NODE="$ROOT/node_modules/.bin/node"
[[ -x "$NODE" ]] || { echo "test-integration: run npm ci first (node_modules/.bin/node is missing)" >&2; exit 1; }

started_kafka=0
started_s3=0
started_rabbitmq=0
cleanup() {
  if [[ $started_kafka == 1 ]]; then bash scripts/kafka.sh stop || true; fi
  if [[ $started_s3 == 1 ]]; then bash scripts/s3rver.sh stop || true; fi
  if [[ $started_rabbitmq == 1 ]]; then bash scripts/rabbitmq.sh stop || true; fi
}
trap cleanup EXIT

if [[ -z "${SLUICE_KAFKA_BOOTSTRAP:-}" ]]; then
  bash scripts/kafka.sh install
  started_kafka=1
  SLUICE_KAFKA_BOOTSTRAP="$(bash scripts/kafka.sh start)"
  export SLUICE_KAFKA_BOOTSTRAP
fi
echo "test-integration: Kafka at $SLUICE_KAFKA_BOOTSTRAP" >&2

# s3rver for the S3 tests (all files, or when an s3-* file is named); SLUICE_S3_ENDPOINT set: that server is used
if [[ -z "${SLUICE_S3_ENDPOINT:-}" ]] && { [[ $# -eq 0 ]] || printf '%s\n' "$@" | grep -q 's3-'; }; then
  started_s3=1
  SLUICE_S3_ENDPOINT="$(bash scripts/s3rver.sh start)"
  export SLUICE_S3_ENDPOINT
  echo "test-integration: s3rver at $SLUICE_S3_ENDPOINT" >&2
fi

if ls test/integration/*interop*.test.ts >/dev/null 2>&1; then
  bash scripts/python-venv.sh
  bash scripts/pypz-venv.sh >/dev/null
fi

if [[ $# -gt 0 ]]; then files=("$@"); else files=(test/integration/*.test.ts); fi

# RabbitMQ (Debian's package, installed when missing) only when rabbitmq-* test files are selected;
# SLUICE_RABBITMQ_URL set: that broker is used and left running
if [[ -z "${SLUICE_RABBITMQ_URL:-}" && " ${files[*]} " == *rabbitmq-* ]]; then
  bash scripts/rabbitmq.sh install
  started_rabbitmq=1
  SLUICE_RABBITMQ_URL="$(bash scripts/rabbitmq.sh start)"
  export SLUICE_RABBITMQ_URL
  echo "test-integration: RabbitMQ at $SLUICE_RABBITMQ_URL" >&2
fi
"$NODE" --import tsx --test --test-concurrency=1 "${files[@]}"
