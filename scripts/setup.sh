#!/usr/bin/env bash
# One-time set-up on a fresh machine: the npm dependencies (including the pinned Node 24 that every npm script
# runs on). Brokers, Java and the Python peers are installed by the integration tier when it needs them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: npm is missing; install Node.js (any version >= 18 can bootstrap; sluice then runs on its own Node 24)" >&2
  exit 1
fi
npm ci --no-audit --no-fund
./node_modules/.bin/node --version >/dev/null
echo "setup: done. Node $(./node_modules/.bin/node --version) is in node_modules/.bin; try: npm run demo" >&2
