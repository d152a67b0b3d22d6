#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv holding amazon-kclpy for the KCL multilang cross-check
# (test/integration/kcl-kclpy.test.ts runs this script itself).
#
#   bash scripts/kcl-venv.sh            # builds .infra/kcl-venv from requirements-kcl.txt, or does nothing if current
#   bash scripts/kcl-venv.sh --force    # rebuilds it
#
# Environment:
#   SLUICE_KCL_VENV   where to put the venv (default: <repo>/.infra/kcl-venv, which is gitignored)
#   PYTHON            interpreter (default: python3.11, else python3); CPython >= 3.8
#
# amazon-kclpy is not `pip install`ed: its setup.py downloads the MultiLangDaemon jars from Maven Central during
# install and fails without them (requirements-kcl.txt says why no option avoids it). Instead the sdist is fetched
# with `pip download --no-deps --require-hashes` and its pure-Python packages are copied into site-packages, with a
# dist-info directory so importlib.metadata and `pip list` report amazon-kclpy 3.2.0. No jar is downloaded.
#
# Idempotent: a stamp holds the SHA-256 of requirements-kcl.txt and of this script plus the interpreter version.
# Prints the venv's python path on its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICE_KCL_VENV:-$ROOT/.infra/kcl-venv}"
REQ="$ROOT/requirements-kcl.txt"
STAMP="$VENV/.sluice-kcl.stamp"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

fail() {
  echo "kcl-venv.sh: $*" >&2
  exit 1
}

[[ -f "$REQ" ]] || fail "missing $REQ; run this script from a sluice checkout."
if [[ -z "${PYTHON:-}" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || fail "no Python interpreter '$PYTHON' found; install CPython 3.11 or set PYTHON=/path/to/python3."
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' || fail "Python $PYVER is too old; amazon-kclpy 3.x needs >= 3.8."

WANT="$(cat "$REQ" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1) python-$PYVER"
if [[ $FORCE -eq 0 && -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "kcl-venv.sh: $VENV is up to date ($WANT)" >&2
  echo "$VENV/bin/python"
  exit 0
fi

START=$(date +%s)
echo "kcl-venv.sh: building $VENV with Python $PYVER from $REQ" >&2
mkdir -p "$(dirname "$VENV")"
rm -f "$STAMP"
"$PYTHON" -m venv --clear "$VENV" || fail "could not create the venv at $VENV (is the venv module installed? Debian: python3-venv)."
SDIST="$VENV/sdist"
mkdir -p "$SDIST"
# --no-deps: boto3 is not needed (see requirements-kcl.txt). --no-binary: there is no wheel; the sdist's metadata
# step (setup.py dist_info, in pip's isolated build env) downloads nothing.
"$VENV/bin/python" -m pip download --quiet --no-input --disable-pip-version-check --no-deps --no-binary :all: \
  --require-hashes -r "$REQ" -d "$SDIST" >&2 ||
  fail "pip could not download the amazon-kclpy sdist pinned in $REQ (see the pip output above); check that PyPI is reachable."

"$VENV/bin/python" - "$SDIST" <<'PY' || fail "could not install amazon-kclpy's Python packages from the sdist (see above)."
import glob, hashlib, base64, os, sys, sysconfig, tarfile

sdist_dir = sys.argv[1]
tarballs = glob.glob(os.path.join(sdist_dir, "amazon_kclpy-*.tar.gz"))
if len(tarballs) != 1:
    sys.exit(f"expected one amazon_kclpy sdist in {sdist_dir}, found {tarballs}")
site = sysconfig.get_paths()["purelib"]
# exactly the packages setup.py lists (amazon_kclpy, amazon_kclpy/v2, amazon_kclpy/v3, samples) plus package data,
# minus jars: there are none in the sdist, and a jar appearing here would mean the sdist changed
WANTED = ("amazon_kclpy/", "samples/")
written = []
with tarfile.open(tarballs[0]) as tar:
    root = tar.getmembers()[0].name.split("/")[0]
    version = root.rsplit("-", 1)[1]
    pkg_info = None
    for m in tar.getmembers():
        rel = m.name[len(root) + 1:]
        if rel == "PKG-INFO":
            pkg_info = tar.extractfile(m).read()
        if not m.isfile() or not rel.startswith(WANTED):
            continue
        if rel.endswith(".jar"):
            sys.exit(f"the sdist unexpectedly contains a jar ({rel}); review requirements-kcl.txt")
        data = tar.extractfile(m).read()
        dest = os.path.join(site, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        written.append((rel, f"sha256={digest}", str(len(data))))
if pkg_info is None:
    sys.exit("the sdist has no PKG-INFO")
dist = os.path.join(site, f"amazon_kclpy-{version}.dist-info")
os.makedirs(dist, exist_ok=True)
files = {"METADATA": pkg_info, "INSTALLER": b"sluice-kcl-venv\n", "top_level.txt": b"amazon_kclpy\nsamples\n"}
for name, data in files.items():
    with open(os.path.join(dist, name), "wb") as f:
        f.write(data)
    written.append((f"amazon_kclpy-{version}.dist-info/{name}", "", ""))
written.append((f"amazon_kclpy-{version}.dist-info/RECORD", "", ""))
with open(os.path.join(dist, "RECORD"), "w") as f:
    f.writelines(",".join(row) + "\n" for row in written)
print(f"kcl-venv.sh: copied {len(written)} files of amazon-kclpy {version} into {site}", file=sys.stderr)
PY

"$VENV/bin/python" -c '
import importlib.metadata as md, os, samples.sample_kclpy_app, amazon_kclpy.kcl as kcl
v = md.version("amazon-kclpy")
assert v == "3.2.0", v
jars = os.path.join(os.path.dirname(kcl.__file__), "jars")
assert not [f for f in os.listdir(jars) if f.endswith(".jar")], "jars present"
' || fail "amazon-kclpy was copied but cannot be imported (see the traceback above)."
echo "$WANT" >"$STAMP"
echo "kcl-venv.sh: done in $(($(date +%s) - START)) s" >&2
echo "$VENV/bin/python"
