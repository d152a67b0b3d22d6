#!/usr/bin/env bash
# A local single-node Kafka 4.1.1 broker (KRaft, combined broker+controller) for sluice's tests and benchmarks,
# from Maven Central jars. See /work/shared/spec/brokers.md section 1 for the reasoning behind each step.
#
#   scripts/kafka.sh install [tools]  copy the broker jars (or, with `tools`, Kafka's perf tools) into
#                                     infra/kafka/lib (infra/kafka/tools/lib); skipped when up to date
#   scripts/kafka.sh start            format a fresh data dir, start the broker on free 127.0.0.1 ports, wait for
#                                     an ApiVersions round trip, print the bootstrap address (only that, on stdout)
#   scripts/kafka.sh stop             SIGTERM the recorded JVM, SIGKILL after 30 s, delete the data dir
#   scripts/kafka.sh status           print state; exit 0 when running and answering, 3 when stopped, 1 otherwise
#
# State lives in $SLUICE_KAFKA_STATE_DIR (default <repo>/.infra/kafka): `pid` (the JVM), `bootstrap`
# (127.0.0.1:PORT), `datadir`. Set SLUICE_KAFKA_STATE_DIR to run a second, independent broker.
# Environment: KAFKA_HEAP (default 512m), KAFKA_READY_TIMEOUT_S (default 60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$ROOT/infra/kafka"
LIB="$INFRA/lib"
TOOLS_LIB="$INFRA/tools/lib"
STATE="${SLUICE_KAFKA_STATE_DIR:-$ROOT/.infra/kafka}"
HEAP="${KAFKA_HEAP:-512m}"
READY_TIMEOUT_S="${KAFKA_READY_TIMEOUT_S:-60}"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
  printf 'kafka.sh: error: %s\n' "$*" >&2
  exit 1
}

now_ms() { date +%s%3N; }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# Node for the helper script: the project's Node 24 when installed, else any node on PATH (>= 18 is enough).
node_bin() {
  if [[ -x "$ROOT/node_modules/.bin/node" ]]; then
    echo "$ROOT/node_modules/.bin/node"
  elif command -v node >/dev/null 2>&1; then
    command -v node
  else
    die "node is not installed; run 'npm ci' in $ROOT first"
  fi
}

# Java 17+ and Maven, installed with apt on a fresh Debian/Ubuntu machine.
ensure_java_maven() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "${missing[*]} missing and apt-get is not available; install Java 17+ and Maven 3.8+ by hand"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "${missing[*]} missing; run as root or install them: apt-get install -y ${missing[*]}"
    sudo=(sudo)
  fi
  log "installing ${missing[*]} with apt-get"
  "${sudo[@]}" apt-get update >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y openjdk-17-jre-headless maven >&2
  command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 ||
    die "apt-get installed ${missing[*]}, but java or mvn is still not on PATH ($PATH); add /usr/bin to PATH"
}

# Copy the runtime dependencies of $1/pom.xml into $2, unless $2/.pom-sha256 already matches the POM.
copy_jars() {
  local pom="$1/pom.xml" out="$2" hash
  hash="$(sha256sum "$pom" | cut -d' ' -f1)"
  if [[ -f "$out/.pom-sha256" && "$(cat "$out/.pom-sha256")" == "$hash" ]]; then
    log "jars in ${out#"$ROOT"/} are up to date"
    return 0
  fi
  ensure_java_maven
  log "copying jars for ${pom#"$ROOT"/} into ${out#"$ROOT"/} (mvn)"
  local t0
  t0=$(now_ms)
  rm -rf "$out"
  mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DoutputDirectory="$out" -DincludeScope=runtime >&2 ||
    die "mvn could not resolve the jars of $pom; check that Maven Central is reachable (mvn -X for details)"
  echo "$hash" >"$out/.pom-sha256"
  log "jars copied in $(secs_since "$t0") s"
}

cmd_install() {
  case "${1:-broker}" in
    broker) copy_jars "$INFRA" "$LIB" ;;
    tools) copy_jars "$INFRA/tools" "$TOOLS_LIB" ;;
    *) die "unknown install target '$1'; use 'install' (broker jars) or 'install tools' (perf tools)" ;;
  esac
}

# Is $1 a live process whose command line mentions kafka.Kafka and our data dir $2? (Guards against PID reuse.)
is_our_broker() {
  local pid="$1" datadir="$2"
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *kafka.Kafka* && "$cmdline" == *"$datadir"* ]]
}

read_state() {
  PID="" BOOTSTRAP="" DATADIR=""
  [[ -f "$STATE/pid" ]] && PID="$(cat "$STATE/pid")"
  [[ -f "$STATE/bootstrap" ]] && BOOTSTRAP="$(cat "$STATE/bootstrap")"
  [[ -f "$STATE/datadir" ]] && DATADIR="$(cat "$STATE/datadir")"
  return 0
}

probe() { "$(node_bin)" "$INFRA/net.mjs" probe "$1" "${2:-2000}"; }

cmd_start() {
  read_state
  if [[ -n "$PID" && -n "$DATADIR" ]] && is_our_broker "$PID" "$DATADIR"; then
    die "a broker is already running (pid $PID, bootstrap $BOOTSTRAP); run 'scripts/kafka.sh stop' first or set SLUICE_KAFKA_STATE_DIR for a second one"
  fi
  if [[ -n "$DATADIR" && -d "$DATADIR" ]]; then
    log "removing the data dir of a broker that is no longer running: $DATADIR"
    rm -rf "$DATADIR"
  fi
  rm -f "$STATE/pid" "$STATE/bootstrap" "$STATE/datadir"

  cmd_install broker
  ensure_java_maven

  mkdir -p "$STATE"
  local datadir
  datadir="$(mktemp -d "$STATE/run-XXXXXXXX")"
  mkdir -p "$datadir/logs" "$datadir/log"
  echo "$datadir" >"$STATE/datadir"

  local ports data_port controller_port
  ports="$("$(node_bin)" "$INFRA/net.mjs" free-ports 2)"
  data_port="$(sed -n 1p <<<"$ports")"
  controller_port="$(sed -n 2p <<<"$ports")"
  [[ -n "$data_port" && -n "$controller_port" ]] || die "could not pick free ports on 127.0.0.1"

  local props="$datadir/server.properties"
  cat >"$props" <<EOF
# Generated by scripts/kafka.sh for one test run; deleted by 'scripts/kafka.sh stop'.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$data_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$data_port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$datadir/log
num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
# Single node: every internal topic has one replica and one partition.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests use short sessions and want joins to settle at once.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
# Large records (sluice's chunk and 1 MiB-value tests) fit in one request; fetches follow.
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
EOF

  local cluster_id
  cluster_id="$("$(node_bin)" -e "let id; do { id = require('node:crypto').randomBytes(16).toString('base64url'); } while (id.startsWith('-')); process.stdout.write(id)")"

  local t0
  t0=$(now_ms)
  java -Xmx256m -Dlog4j2.configurationFile="$INFRA/tools-log4j2.yaml" -cp "$LIB/*" kafka.tools.StorageTool \
    format --config "$props" --cluster-id "$cluster_id" --ignore-formatted >"$datadir/logs/format.out" 2>&1 ||
    die "formatting $datadir failed: $(tail -n 20 "$datadir/logs/format.out")"
  local format_s
  format_s="$(secs_since "$t0")"
  log "formatted $datadir in $format_s s"

  t0=$(now_ms)
  # `exec` so that $! is the JVM itself; setsid puts it in its own session so a Ctrl-C or a killed process group
  # of the caller does not take it down (it is stopped by PID with 'scripts/kafka.sh stop').
  (
    cd "$datadir"
    exec setsid java "-Xms$HEAP" "-Xmx$HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
      -Dlog4j2.configurationFile="$INFRA/log4j2.yaml" -Dkafka.logs.dir="$datadir/logs" \
      -cp "$LIB/*" kafka.Kafka "$props"
  ) </dev/null >"$datadir/logs/server.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$STATE/pid"

  local bootstrap="127.0.0.1:$data_port"
  local deadline=$(($(now_ms) + READY_TIMEOUT_S * 1000))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$STATE/pid"
      die "the broker exited during start-up; last log lines:
$(tail -n 30 "$datadir/logs/server.out")
(data dir kept for inspection: $datadir)"
    fi
    if probe "$bootstrap" 1000 2>/dev/null; then break; fi
    if (($(now_ms) > deadline)); then
      stop_pid "$pid"
      rm -f "$STATE/pid"
      die "the broker did not answer ApiVersions on $bootstrap within ${READY_TIMEOUT_S} s and was stopped; last log lines:
$(tail -n 30 "$datadir/logs/server.out")
(data dir kept for inspection: $datadir; 'scripts/kafka.sh stop' deletes it)"
    fi
    sleep 0.3
  done
  local start_s
  start_s="$(secs_since "$t0")"
  is_our_broker "$pid" "$datadir" ||
    die "pid $pid answers on $bootstrap but is not the broker JVM (unexpected: check with 'ps -p $pid -o cmd')"

  # Rule: loopback only. Every listening socket of the JVM must be on 127.0.0.1.
  if command -v ss >/dev/null 2>&1; then
    local listening
    listening="$(ss -ltnpH 2>/dev/null | grep "pid=$pid," | awk '{print $4}' || true)"
    if [[ -z "$listening" ]] || grep -qvE '^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):' <<<"$listening"; then
      stop_pid "$pid"
      rm -f "$STATE/pid"
      die "the broker listened on a non-loopback address ($(tr '\n' ' ' <<<"$listening")) and was stopped; check the listeners in $props"
    fi
  fi

  echo "$bootstrap" >"$STATE/bootstrap"
  log "broker ready at $bootstrap (pid $pid) in $start_s s after launch (format $format_s s)"
  echo "$bootstrap"
}

# SIGTERM, wait up to 30 s, then SIGKILL; only for a PID verified to be our broker.
stop_pid() {
  local pid="$1"
  log "stopping broker pid $pid (SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(($(now_ms) + 30000))
  while kill -0 "$pid" 2>/dev/null && (($(now_ms) < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "broker pid $pid still running after 30 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  log "broker stopped"
}

cmd_stop() {
  read_state
  if [[ -z "$PID" ]]; then
    log "no broker recorded in $STATE"
  elif [[ -n "$DATADIR" ]] && is_our_broker "$PID" "$DATADIR"; then
    stop_pid "$PID"
  else
    log "recorded pid $PID is not running (or is no longer our broker); nothing to signal"
  fi
  if [[ -n "$DATADIR" && -d "$DATADIR" ]]; then
    rm -rf "$DATADIR"
  fi
  rm -f "$STATE/pid" "$STATE/bootstrap" "$STATE/datadir"
}

cmd_status() {
  read_state
  if [[ -z "$PID" ]]; then
    echo "stopped"
    exit 3
  fi
  if [[ -n "$DATADIR" ]] && is_our_broker "$PID" "$DATADIR"; then
    if [[ -n "$BOOTSTRAP" ]] && probe "$BOOTSTRAP" 2000; then
      echo "running pid=$PID bootstrap=$BOOTSTRAP datadir=$DATADIR"
      exit 0
    fi
    echo "starting-or-unresponsive pid=$PID bootstrap=$BOOTSTRAP datadir=$DATADIR"
    exit 1
  fi
  echo "dead pid=$PID (recorded, not running; run 'scripts/kafka.sh stop' to clean up)"
  exit 1
}

case "${1:-}" in
  install) cmd_install "${2:-broker}" ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: scripts/kafka.sh install [tools] | start | stop | status" >&2
    exit 2
    ;;
esac
