#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv with sentry-arroyo used by `npm run bench -- records`.
#
#   bash scripts/arroyo-venv.sh            # creates the venv from requirements-arroyo.txt, or does nothing if current
#   bash scripts/arroyo-venv.sh --force    # rebuilds it
#
# Environment:
#   SLUICE_ARROYO_VENV  where to put the venv (default: <repo>/.infra/arroyo-venv, gitignored)
#   PYTHON              interpreter to build it with (default: python3.11, else python3); CPython >= 3.9
#
# Idempotent: the venv holds a stamp with the SHA-256 of requirements-arroyo.txt plus the interpreter version;
# when both match, the script exits at once. Prints the venv's python path on its last line (only that on stdout).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICE_ARROYO_VENV:-$ROOT/.infra/arroyo-venv}"
REQ="$ROOT/requirements-arroyo.txt"
STAMP="$VENV/.sluice-requirements.stamp"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

fail() {
  echo "arroyo-venv.sh: $*" >&2
  exit 1
}

[[ -f "$REQ" ]] || fail "missing $REQ; run this script from a sluice checkout."
if [[ -z "${PYTHON:-}" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || fail "no Python interpreter '$PYTHON' found; install CPython 3.11 or set PYTHON=/path/to/python3."
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

WANT="$(sha256sum "$REQ" | cut -d' ' -f1) python-$PYVER"
if [[ $FORCE -eq 0 && -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "arroyo-venv.sh: $VENV is up to date ($WANT)" >&2
  echo "$VENV/bin/python"
  exit 0
fi

START=$(date +%s)
echo "arroyo-venv.sh: building $VENV with Python $PYVER from $REQ" >&2
rm -f "$STAMP"
"$PYTHON" -m venv --clear "$VENV" >&2
"$VENV/bin/python" -m pip install --quiet --no-input --disable-pip-version-check -r "$REQ" >&2 ||
  fail "pip could not install $REQ into $VENV (see the pip output above); check that PyPI is reachable."
"$VENV/bin/python" -m pip check >&2 || fail "the installed set is inconsistent (pip check above); fix the pins in $REQ."
"$VENV/bin/python" -c 'import arroyo, confluent_kafka
from arroyo.processing.strategies import Reduce, CommitOffsets' >&2 ||
  fail "sentry-arroyo was installed but cannot be imported (see the traceback above)."
echo "$WANT" >"$STAMP"
echo "arroyo-venv.sh: done in $(($(date +%s) - START)) s" >&2
echo "$VENV/bin/python"
