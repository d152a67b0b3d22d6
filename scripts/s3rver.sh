#!/usr/bin/env bash
# A local S3 server for the integration tier: s3rver (npm devDependency, filesystem-backed) on 127.0.0.1 with a
# free port and a fresh data directory, stopped by its PID (shared/spec/brokers.md sections 0 and 5).
#   scripts/s3rver.sh start    # prints the endpoint, e.g. http://127.0.0.1:41234 (state in .infra/s3rver)
#   scripts/s3rver.sh stop     # SIGTERM, then SIGKILL after 10 s; deletes the data directory
#   scripts/s3rver.sh status
# s3rver accepts any well-formed signature; tests use the key pair S3RVER/S3RVER, path-style addressing and
# checksums only when required (the SDK's default aws-chunked uploads are stored with their framing by s3rver).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SLUICE_S3_STATE_DIR:-$ROOT/.infra/s3rver}"
READY_TIMEOUT_S="${S3RVER_READY_TIMEOUT_S:-30}"

log() { printf 's3rver.sh: %s\n' "$*" >&2; }
die() {
  printf 's3rver.sh: error: %s\n' "$*" >&2
  exit 1
}

NODE="$ROOT/node_modules/.bin/node"
S3RVER="$ROOT/node_modules/s3rver/bin/s3rver.js"

read_state() {
  PID="" ENDPOINT="" DATADIR=""
  [[ -f "$STATE/pid" ]] && PID="$(cat "$STATE/pid")"
  [[ -f "$STATE/endpoint" ]] && ENDPOINT="$(cat "$STATE/endpoint")"
  [[ -f "$STATE/datadir" ]] && DATADIR="$(cat "$STATE/datadir")"
  return 0
}

# the PID is ours only while it still runs s3rver on our data directory (PIDs are reused)
is_ours() {
  local pid="$1" datadir="$2" cmdline
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *s3rver* && "$cmdline" == *"$datadir"* ]]
}

free_port() {
  "$NODE" -e '
    const s = require("node:net").createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => console.log(p)); });'
}

# ready when an anonymous ListBuckets answers over HTTP (any status)
probe() {
  "$NODE" -e '
    const req = require("node:http").get(process.argv[1], (res) => { res.resume(); process.exit(0); });
    req.setTimeout(1000, () => req.destroy(new Error("timeout")));
    req.on("error", () => process.exit(1));' "$1"
}

cmd_start() {
  [[ -x "$NODE" && -f "$S3RVER" ]] || die "run npm ci first (node_modules/.bin/node or s3rver is missing)"
  read_state
  if [[ -n "$PID" && -n "$DATADIR" ]] && is_ours "$PID" "$DATADIR"; then
    die "s3rver is already running (pid $PID, $ENDPOINT); run 'scripts/s3rver.sh stop' first or set SLUICE_S3_STATE_DIR"
  fi
  [[ -n "$DATADIR" && -d "$DATADIR" ]] && rm -rf "$DATADIR"
  rm -f "$STATE/pid" "$STATE/endpoint" "$STATE/datadir"
  mkdir -p "$STATE"
  local datadir port endpoint pid
  datadir="$(mktemp -d "$STATE/run-XXXXXXXX")"
  echo "$datadir" >"$STATE/datadir"
  mkdir -p "$datadir/data"
  port="$(free_port)"
  [[ -n "$port" ]] || die "could not pick a free port on 127.0.0.1"
  endpoint="http://127.0.0.1:$port"
  "$NODE" "$S3RVER" --address 127.0.0.1 --port "$port" --directory "$datadir/data" --silent \
    >"$datadir/s3rver.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$STATE/pid"
  local t0=$SECONDS
  until probe "$endpoint"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$datadir/s3rver.out" >&2 || true
      die "s3rver exited during start-up (output above)"
    fi
    ((SECONDS - t0 < READY_TIMEOUT_S)) || {
      cmd_stop
      die "s3rver did not answer on $endpoint within ${READY_TIMEOUT_S}s"
    }
    sleep 0.2
  done
  if command -v ss >/dev/null 2>&1 && ss -ltnp 2>/dev/null | grep "pid=$pid," | grep -qv "127.0.0.1:$port"; then
    cmd_stop
    die "s3rver listens on more than 127.0.0.1:$port; refusing to run it"
  fi
  echo "$endpoint" >"$STATE/endpoint"
  log "s3rver ready at $endpoint (pid $pid, data in ${datadir#"$ROOT"/})"
  echo "$endpoint"
}

cmd_stop() {
  read_state
  if [[ -n "$PID" && -n "$DATADIR" ]] && is_ours "$PID" "$DATADIR"; then
    kill -TERM "$PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do
      kill -0 "$PID" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$PID" 2>/dev/null; then
      log "s3rver (pid $PID) did not stop after SIGTERM; sending SIGKILL"
      kill -KILL "$PID" 2>/dev/null || true
    fi
    log "stopped s3rver (pid $PID)"
  elif [[ -n "$PID" ]]; then
    log "pid $PID is not our s3rver any more; nothing to stop"
  fi
  [[ -n "$DATADIR" && -d "$DATADIR" ]] && rm -rf "$DATADIR"
  rm -f "$STATE/pid" "$STATE/endpoint" "$STATE/datadir"
}

cmd_status() {
  read_state
  if [[ -n "$PID" && -n "$DATADIR" ]] && is_ours "$PID" "$DATADIR"; then
    echo "running: pid $PID, $ENDPOINT"
  else
    echo "not running"
    return 1
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: scripts/s3rver.sh start|stop|status" ;;
esac
