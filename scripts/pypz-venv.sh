#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv with the real pypz channel packages (pypz-core, pypz-kafka-io, pypz-rmq-io
# 0.10.2) used by the pypz interop peers (test/integration/python/pypz_peer.py) and the status fixture generator
# (test/fixtures/pypz/regenerate.sh).
#
#   bash scripts/pypz-venv.sh            # builds .infra/pypz-venv from test/integration/python/pypz_requirements.txt,
#                                        # or does nothing if current
#   bash scripts/pypz-venv.sh --force    # rebuilds it
#
# Environment:
#   SLUICE_PYPZ_VENV  where to put the venv (default: <repo>/.infra/pypz-venv, which is gitignored)
#   PYTHON            interpreter to build it with (default: python3.11, else python3); CPython >= 3.11
#                     (pypz-core 0.10.2 declares requires-python >= 3.11)
#
# Idempotent: the venv holds a stamp with the SHA-256 of the requirements file and of this script plus the
# interpreter version; when they match, the script exits at once. Prints the venv's python path on its last line
# (only that on stdout).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICE_PYPZ_VENV:-$ROOT/.infra/pypz-venv}"
REQ="$ROOT/test/integration/python/pypz_requirements.txt"
STAMP="$VENV/.sluice-pypz.stamp"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

fail() {
  echo "pypz-venv.sh: $*" >&2
  exit 1
}

[[ -f "$REQ" ]] || fail "missing $REQ; run this script from a sluice checkout."
if [[ -z "${PYTHON:-}" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || fail "no Python interpreter '$PYTHON' found; install CPython 3.11 or set PYTHON=/path/to/python3.11."
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
  fail "Python $PYVER is too old: pypz-core 0.10.2 needs >= 3.11; set PYTHON=/path/to/python3.11."

WANT="$(cat "$REQ" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1) python-$PYVER"
if [[ $FORCE -eq 0 && -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "pypz-venv.sh: $VENV is up to date ($WANT)" >&2
  echo "$VENV/bin/python"
  exit 0
fi

START=$(date +%s)
echo "pypz-venv.sh: building $VENV with Python $PYVER from $REQ" >&2
mkdir -p "$(dirname "$VENV")"
rm -f "$STAMP"
"$PYTHON" -m venv --clear "$VENV" >&2 || fail "could not create the venv at $VENV (is the venv module installed? Debian: python3-venv)."
"$VENV/bin/python" -m pip install --quiet --no-input --disable-pip-version-check -r "$REQ" >&2 ||
  fail "pip could not install $REQ into $VENV (see the pip output above); check that PyPI is reachable."
"$VENV/bin/python" -m pip check >&2 || fail "the installed set is inconsistent (pip check above); fix the pins in $REQ."
"$VENV/bin/python" -c '
import importlib.metadata as md
want = {"pypz-core": "0.10.2", "pypz-kafka-io": "0.10.2", "pypz-rmq-io": "0.10.2", "kafka-python": "2.0.2",
        "amqp": "5.2.0", "avro": "1.10.1", "avro-validator": "1.2.1"}
got = {name: md.version(name) for name in want}
assert got == want, got
from pypz.plugins.kafka_io.channels import KafkaChannelReader, KafkaChannelWriter
from pypz.plugins.rmq_io.channels import RMQChannelReader, RMQChannelWriter
' >&2 || fail "the pypz packages were installed but are not the pinned versions or cannot be imported (see above)."
echo "$WANT" >"$STAMP"
echo "pypz-venv.sh: done in $(($(date +%s) - START)) s" >&2
echo "$VENV/bin/python"
