#!/usr/bin/env bash
# A local single-node RabbitMQ 3.10.8 (Debian's package) with the stream plugin, for sluice's tests and
# benchmarks. See /work/shared/spec/brokers.md sections 0 and 2 for the reasoning behind each step.
#
#   scripts/rabbitmq.sh install   apt-get install rabbitmq-server when missing (service start blocked during the
#                                 install: tests start their own node)
#   scripts/rabbitmq.sh start     fresh state dir, free 127.0.0.1 ports (AMQP, stream, distribution, epmd), stream
#                                 plugin enabled offline, node started in the foreground as a child of a detached
#                                 session, readiness = ping + await_startup + stream listener + an AMQP handshake;
#                                 prints the URL amqp://guest:guest@127.0.0.1:PORT (only that, on stdout)
#   scripts/rabbitmq.sh stop      SIGTERM the recorded node (beam.smp) PID, SIGKILL after 30 s, then its own epmd by
#                                 PID; deletes the run's directory
#   scripts/rabbitmq.sh status    print state; exit 0 when running and answering, 3 when stopped, 1 otherwise
#
# State lives in $SLUICE_RABBITMQ_STATE_DIR (default <repo>/.infra/rabbitmq): `pid` (beam.smp), `epmd_pid`, `url`,
# `rundir`, `ports`. Set SLUICE_RABBITMQ_STATE_DIR to run a second, independent node (it gets its own epmd port).
# Environment: RABBITMQ_READY_TIMEOUT_S (default 60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$ROOT/infra/rabbitmq"
STATE="${SLUICE_RABBITMQ_STATE_DIR:-$ROOT/.infra/rabbitmq}"
READY_TIMEOUT_S="${RABBITMQ_READY_TIMEOUT_S:-60}"
# The package's real scripts. /usr/sbin/rabbitmq* are wrappers that switch to the rabbitmq user and to
# /var/lib/rabbitmq, which would defeat project-local state.
RMQ_BIN=/usr/lib/rabbitmq/bin

log() { printf 'rabbitmq.sh: %s\n' "$*" >&2; }
die() {
  printf 'rabbitmq.sh: error: %s\n' "$*" >&2
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

installed() { [[ -x "$RMQ_BIN/rabbitmq-server" && -x "$RMQ_BIN/rabbitmqctl" ]]; }

cmd_install() {
  if installed; then
    log "rabbitmq-server is installed ($(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo 'version unknown'))"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "rabbitmq-server is missing and apt-get is not available; install RabbitMQ 3.10+ with the stream plugin by hand (its scripts are expected in $RMQ_BIN)"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "rabbitmq-server is missing; run as root or install it: apt-get install -y rabbitmq-server"
    sudo=(sudo)
  fi
  # The package's postinst runs `invoke-rc.d rabbitmq-server start`. Tests start their own node, so the system
  # service must not start (and where starting it would fail, the postinst would fail the install). A policy-rc.d
  # that exits 101 forbids service starts; put one in place for the install only, unless the machine has one.
  local policy=/usr/sbin/policy-rc.d placed=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# placed by sluice scripts/rabbitmq.sh during apt-get install; removed afterwards\nexit 101\n' |
      "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    placed=1
  fi
  local t0 rc=0
  t0=$(now_ms)
  log "installing rabbitmq-server with apt-get (apt-get update first)"
  {
    "${sudo[@]}" apt-get update >&2 &&
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends rabbitmq-server >&2
  } || rc=$?
  if ((rc != 0)); then
    # an interrupted or failed postinst leaves the package half-configured; finish configuring it once
    log "apt-get install failed (exit $rc); trying 'dpkg --configure -a' once"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" dpkg --configure -a >&2 && rc=0 || true
  fi
  if ((placed == 1)); then "${sudo[@]}" rm -f "$policy"; fi
  ((rc == 0)) || die "apt-get could not install rabbitmq-server (exit $rc); see the apt output above"
  installed || die "rabbitmq-server was installed but $RMQ_BIN/rabbitmq-server is missing; this script expects Debian's package layout"
  log "rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server) installed in $(secs_since "$t0") s"
}

# The environment every server and CLI call of one run shares (brokers.md 2.2). $1 = run dir.
rmq_env() {
  local run="$1"
  # ports file: AMQP STREAM DIST EPMD CTL
  read -r AMQP_PORT STREAM_PORT DIST_PORT EPMD_PORT CTL_PORT <"$run/ports"
  RABBITMQ_NODENAME="$(cat "$run/nodename")"
  export RABBITMQ_NODENAME
  export RABBITMQ_CONFIG_FILE="$run/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$run/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$run/mnesia"
  export RABBITMQ_LOG_BASE="$run/log"
  export RABBITMQ_PID_FILE="$run/rabbit.pid"
  export RABBITMQ_CONF_ENV_FILE="$run/rabbitmq-env.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$run/advanced.config"
  export RABBITMQ_DIST_PORT="$DIST_PORT"
  # our own epmd on a free loopback port: stopped by its PID, shared with no other run
  export ERL_EPMD_ADDRESS=127.0.0.1
  export ERL_EPMD_PORT="$EPMD_PORT"
  # the CLI tools start a short-lived distributed node of their own: keep it on loopback and on our ports
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_DIST_PORT_MIN="$CTL_PORT"
  export RABBITMQ_CTL_DIST_PORT_MAX="$((CTL_PORT + 10))"
  # 2 shared cores: no busy-waiting schedulers
  export RABBITMQ_SCHEDULER_BUSY_WAIT_THRESHOLD=none
  export HOME="$run" # the Erlang cookie lives here
}

ctl() { "$RMQ_BIN/rabbitmqctl" "$@"; }
diag() { "$RMQ_BIN/rabbitmq-diagnostics" "$@"; }

read_state() {
  PID="" URL="" RUN=""
  [[ -f "$STATE/pid" ]] && PID="$(cat "$STATE/pid")"
  [[ -f "$STATE/url" ]] && URL="$(cat "$STATE/url")"
  [[ -f "$STATE/rundir" ]] && RUN="$(cat "$STATE/rundir")"
  return 0
}

# Is $1 a live beam.smp whose command line mentions the run dir $2? Guards against PID reuse.
is_our_node() {
  local pid="$1" run="$2"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *beam* && "$cmdline" == *"$run"* ]]
}

# The PID of the process listening on 127.0.0.1:$1 (empty if none).
listener_pid() {
  local sockets
  sockets="$(ss -ltnpH "sport = :$1" 2>/dev/null || true)"
  [[ "$sockets" =~ pid=([0-9]+), ]] && echo "${BASH_REMATCH[1]}"
  return 0
}

# epmd's command line does not name the run dir; it is ours when it is epmd and listens on our epmd port.
is_our_epmd() {
  local pid="$1" port="$2"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" == *epmd* ]] || return 1
  # no `ss | grep -q`: with pipefail, grep quitting early can SIGPIPE ss (epmd has two sockets) and fail the test
  local sockets
  sockets="$(ss -ltnpH "sport = :$port" 2>/dev/null || true)"
  [[ "$sockets" == *"pid=$pid,"* ]]
}

# SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
  local pid="$1" what="$2"
  log "stopping $what pid $pid (SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(($(now_ms) + 30000))
  while kill -0 "$pid" 2>/dev/null && (($(now_ms) < deadline)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$what pid $pid still running after 30 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
}

# The epmd of this run: the recorded PID, or (before it was recorded, e.g. a failed start) the epmd process that
# listens on this run's own epmd port. Either way it is checked to be epmd on our port before it is signalled.
stop_epmd() {
  local epmd_pid="" port=""
  [[ -f "$STATE/epmd_pid" ]] && epmd_pid="$(cat "$STATE/epmd_pid")"
  [[ -n "$RUN" && -f "$RUN/ports" ]] && port="$(awk '{print $4}' "$RUN/ports")"
  if [[ -z "$epmd_pid" && -n "$port" ]]; then
    epmd_pid="$(listener_pid "$port")"
  fi
  if [[ -n "$epmd_pid" && -n "$port" ]] && is_our_epmd "$epmd_pid" "$port"; then
    stop_pid "$epmd_pid" epmd
  elif [[ -n "$epmd_pid" ]]; then
    log "recorded epmd pid $epmd_pid is not running (or is no longer our epmd); nothing to signal"
  fi
  rm -f "$STATE/epmd_pid"
}

# Launches the node of run dir $RUN (config and ports written), waits until it is ready, records the PIDs.
launch() {
  rmq_env "$RUN"
  local t0
  t0=$(now_ms)
  # In the foreground with RABBITMQ_ALLOW_INPUT set, the server script `exec`s erl, which `exec`s beam.smp, so $!
  # is the node itself (without it a shell stays in between, forwarding signals). -noinput keeps the Erlang shell
  # off. setsid: a Ctrl-C or a killed process group of the caller does not take the node down; it is stopped by
  # PID with 'scripts/rabbitmq.sh stop'.
  (
    cd "$RUN"
    export RABBITMQ_ALLOW_INPUT=true
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-noinput"
    exec setsid "$RMQ_BIN/rabbitmq-server"
  ) </dev/null >>"$RUN/log/server.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$STATE/pid"

  local deadline=$(($(now_ms) + READY_TIMEOUT_S * 1000)) stage=ping
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$STATE/pid"
      stop_epmd
      die "the node exited during start-up; last log lines:
$(tail -n 30 "$RUN/log/server.out")
$(tail -n 30 "$RUN/log/"*.log 2>/dev/null || true)
(run dir kept for inspection: $RUN; 'scripts/rabbitmq.sh stop' deletes it)"
    fi
    # brokers.md 2.3: ping until the node answers (await_startup fails before the node registered with epmd), then
    # await_startup, then the stream listener, then one AMQP handshake on our port (catches a foreign process).
    case $stage in
      ping) diag -q ping >/dev/null 2>&1 && stage=startup ;;
      startup) ctl -q await_startup --timeout "$READY_TIMEOUT_S" >/dev/null 2>&1 && stage=stream ;;
      stream) diag -q check_port_listener "$STREAM_PORT" >/dev/null 2>&1 && stage=amqp ;;
      amqp) "$(node_bin)" "$INFRA/net.mjs" probe "127.0.0.1:$AMQP_PORT" 2000 && break ;;
    esac
    if (($(now_ms) > deadline)); then
      stop_pid "$pid" node
      rm -f "$STATE/pid"
      stop_epmd
      die "the node was not ready (stuck at: $stage) within ${READY_TIMEOUT_S} s and was stopped; last log lines:
$(tail -n 30 "$RUN/log/server.out")
(run dir kept for inspection: $RUN; 'scripts/rabbitmq.sh stop' deletes it)"
    fi
    [[ $stage == ping ]] && sleep 0.3
  done
  START_S="$(secs_since "$t0")"
  is_our_node "$pid" "$RUN" || die "pid $pid is ready but is not our beam.smp (check with 'ps -p $pid -o cmd')"

  # our epmd: the process listening on our own epmd port
  local epmd_pid
  epmd_pid="$(listener_pid "$EPMD_PORT")"
  if [[ -n "$epmd_pid" ]] && is_our_epmd "$epmd_pid" "$EPMD_PORT"; then
    echo "$epmd_pid" >"$STATE/epmd_pid"
  else
    log "warning: found no epmd listening on 127.0.0.1:$EPMD_PORT"
    epmd_pid=0
  fi

  # Rule: loopback only. Every listening socket of the node and of its epmd must be on a loopback address (epmd
  # always adds [::1] next to ERL_EPMD_ADDRESS).
  local listening
  listening="$(ss -ltnpH 2>/dev/null | grep -E "pid=($pid|$epmd_pid)," | awk '{print $4}' || true)"
  if [[ -z "$listening" ]] || grep -qvE '^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|\[::1\]):' <<<"$listening"; then
    stop_pid "$pid" node
    rm -f "$STATE/pid"
    stop_epmd
    die "the node listened on a non-loopback address ($(tr '\n' ' ' <<<"$listening")) and was stopped; check $RUN/rabbitmq.conf"
  fi
  local want
  for want in "$AMQP_PORT" "$STREAM_PORT" "$DIST_PORT" "$EPMD_PORT"; do
    grep -q ":$want\$" <<<"$listening" ||
      log "warning: nothing of ours listens on 127.0.0.1:$want (listening: $(tr '\n' ' ' <<<"$listening"))"
  done
  PID="$pid"
}

cmd_start() {
  read_state
  if [[ -n "$PID" && -n "$RUN" ]] && is_our_node "$PID" "$RUN"; then
    die "a node is already running (pid $PID, $URL); run 'scripts/rabbitmq.sh stop' first or set SLUICE_RABBITMQ_STATE_DIR for a second one"
  fi
  if [[ -n "$RUN" && -d "$RUN" ]]; then
    log "cleaning up after a node that is no longer running: $RUN"
    stop_epmd
    rm -rf "$RUN"
  fi
  rm -f "$STATE/pid" "$STATE/epmd_pid" "$STATE/url" "$STATE/rundir"

  installed || die "rabbitmq-server is not installed; run 'scripts/rabbitmq.sh install' first"
  command -v ss >/dev/null 2>&1 ||
    die "ss (iproute2) is needed to check that the node listens on 127.0.0.1 only; apt-get install -y iproute2"

  mkdir -p "$STATE"
  RUN="$(mktemp -d "$STATE/run-XXXXXXXX")"
  echo "$RUN" >"$STATE/rundir"
  mkdir -p "$RUN/log" "$RUN/mnesia"

  local ports
  ports="$("$(node_bin)" "$INFRA/net.mjs" free-ports 5 | tr '\n' ' ')"
  [[ $(wc -w <<<"$ports") == 5 ]] || die "could not pick free ports on 127.0.0.1"
  echo "$ports" >"$RUN/ports"
  echo "sluice-$(basename "$RUN" | cut -d- -f2 | tr '[:upper:]' '[:lower:]')@localhost" >"$RUN/nodename"
  rmq_env "$RUN"
  {
    echo "# Generated by scripts/rabbitmq.sh for one test run; deleted by 'scripts/rabbitmq.sh stop'."
    echo "listeners.tcp.default = 127.0.0.1:$AMQP_PORT"
    echo "stream.listeners.tcp.default = 127.0.0.1:$STREAM_PORT"
    echo "stream.advertised_host = localhost"
    echo "stream.advertised_port = $STREAM_PORT"
    echo "distribution.listener.interface = 127.0.0.1"
    echo "distribution.listener.port_range.min = $DIST_PORT"
    echo "distribution.listener.port_range.max = $DIST_PORT"
    echo "# guest/guest may connect from loopback only (the default, stated)"
    echo "loopback_users.guest = true"
    echo "log.console = false"
    echo "log.file.level = info"
  } >"$RUN/rabbitmq.conf"
  : >"$RUN/rabbitmq-env.conf"
  echo "[]." >"$RUN/advanced.config"

  local t0
  t0=$(now_ms)
  "$RMQ_BIN/rabbitmq-plugins" enable --offline rabbitmq_stream >"$RUN/log/plugins.out" 2>&1 ||
    die "enabling the stream plugin offline failed: $(tail -n 20 "$RUN/log/plugins.out")"
  local plugins_s
  plugins_s="$(secs_since "$t0")"

  launch
  local url="amqp://guest:guest@127.0.0.1:$AMQP_PORT"
  echo "$url" >"$STATE/url"
  log "node $RABBITMQ_NODENAME ready at $url (stream port $STREAM_PORT, pid $PID) in $START_S s after launch (stream plugin enabled offline in $plugins_s s)"
  echo "$url"
}

# Stops the node (by PID) and starts it again on the same ports and data: durable queues and their messages
# survive. For tests of reconnection after a broker restart.
cmd_restart() {
  read_state
  [[ -n "$RUN" && -d "$RUN" && -n "$URL" ]] || die "no node recorded in $STATE; run 'scripts/rabbitmq.sh start' first"
  if [[ -n "$PID" ]] && is_our_node "$PID" "$RUN"; then stop_pid "$PID" node; fi
  rm -f "$STATE/pid"
  launch
  log "node restarted at $URL (pid $PID) in $START_S s"
  echo "$URL"
}

cmd_stop() {
  read_state
  if [[ -z "$PID" ]]; then
    log "no node recorded in $STATE"
  elif [[ -n "$RUN" ]] && is_our_node "$PID" "$RUN"; then
    stop_pid "$PID" node
  else
    log "recorded pid $PID is not running (or is no longer our node); nothing to signal"
  fi
  stop_epmd
  if [[ -n "$RUN" && -d "$RUN" ]]; then rm -rf "$RUN"; fi
  rm -f "$STATE/pid" "$STATE/epmd_pid" "$STATE/url" "$STATE/rundir"
  log "stopped"
}

cmd_status() {
  read_state
  if [[ -z "$PID" ]]; then
    echo "stopped"
    exit 3
  fi
  if [[ -n "$RUN" ]] && is_our_node "$PID" "$RUN"; then
    rmq_env "$RUN"
    if "$(node_bin)" "$INFRA/net.mjs" probe "127.0.0.1:$AMQP_PORT" 2000; then
      echo "running pid=$PID url=$URL stream=127.0.0.1:$STREAM_PORT rundir=$RUN"
      exit 0
    fi
    echo "starting-or-unresponsive pid=$PID url=$URL rundir=$RUN"
    exit 1
  fi
  echo "dead pid=$PID (recorded, not running; run 'scripts/rabbitmq.sh stop' to clean up)"
  exit 1
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  restart) cmd_restart ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: scripts/rabbitmq.sh install | start | stop | status | restart" >&2
    exit 2
    ;;
esac
