#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv used by sluice's OpenMSIStream interop tier and fixture generator.
#
#   bash scripts/python-venv.sh            # creates .venv from requirements-interop.txt, or does nothing if current
#   bash scripts/python-venv.sh --force    # rebuilds it
#
# Environment:
#   SLUICE_VENV   where to put the venv (default: <repo>/.venv, which is gitignored)
#   PYTHON        interpreter to build it with (default: python3.11, else python3); must be CPython >= 3.11
#
# Idempotent: the venv holds a stamp with the SHA-256 of requirements-interop.txt plus the interpreter version;
# when both match, the script exits at once. Prints the venv's python path on its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICE_VENV:-$ROOT/.venv}"
REQ="$ROOT/requirements-interop.txt"
STAMP="$VENV/.sluice-requirements.stamp"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

fail() {
  echo "python-venv.sh: $*" >&2
  exit 1
}

[[ -f "$REQ" ]] || fail "missing $REQ; run this script from a sluice checkout."

if [[ -z "${PYTHON:-}" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || fail "no Python interpreter '$PYTHON' found; install CPython 3.11 or set PYTHON=/path/to/python3.11."
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
  fail "Python $PYVER is too old: the pinned set (numpy 2.4, contourpy 1.3) needs >= 3.11; set PYTHON=/path/to/python3.11."

WANT="$(sha256sum "$REQ" | cut -d' ' -f1) python-$PYVER"
if [[ $FORCE -eq 0 && -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "python-venv.sh: $VENV is up to date ($WANT)" >&2
  echo "$VENV/bin/python"
  exit 0
fi

# openmsistream imports kafkacrypto, whose pysodium binding loads the system libsodium at import time.
if ! ldconfig -p 2>/dev/null | grep -q 'libsodium\.so'; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "python-venv.sh: libsodium not found; installing the Debian package libsodium23" >&2
    apt-get install -y -q libsodium23 >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q libsodium23 >/dev/null; }
  else
    fail "libsodium is missing (needed to import openmsistream via kafkacrypto/pysodium); install it, e.g. 'apt-get install libsodium23'."
  fi
fi

START=$(date +%s)
echo "python-venv.sh: building $VENV with Python $PYVER from $REQ" >&2
rm -f "$STAMP"
"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-input --disable-pip-version-check -r "$REQ" ||
  fail "pip could not install $REQ into $VENV (see the pip output above); check that PyPI is reachable."
"$VENV/bin/python" -m pip check >&2 || fail "the installed set is inconsistent (pip check above); fix the pins in $REQ."
"$VENV/bin/python" -c 'import openmsistream, msgpack
from openmsistream.kafka_wrapper.serialization import DataFileChunkSerializer' ||
  fail "openmsistream was installed but cannot be imported (see the traceback above)."
echo "$WANT" >"$STAMP"
echo "python-venv.sh: done in $(($(date +%s) - START)) s" >&2
echo "$VENV/bin/python"
