/**
 * Run small Python scripts in the interop venv (scripts/python-venv.sh, openmsistream pinned there) for
 * cross-checks against real Python and real upstream code.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VENV = process.env.SLUICE_VENV ?? path.join(ROOT, '.venv');
const PYTHON =
  process.platform === 'win32' ? path.join(VENV, 'Scripts', 'python.exe') : path.join(VENV, 'bin', 'python');

/** The venv's python; fails the test (never skips) when the venv is missing. */
export function venvPython(_t?: TestContext): string {
  if (existsSync(PYTHON)) return PYTHON;
  assert.fail(
    `Python interop venv not found at ${PYTHON}: create it with "bash scripts/python-venv.sh" ` +
      '(npm run test:integration does) or point SLUICE_VENV at one.',
  );
}

/** Run `script` with `input` (JSON) on stdin; parse its stdout as JSON. Python's stderr is shown on failure. */
export function runPython<T>(python: string, script: string, input: unknown): T {
  const out = execFileSync(python, ['-c', script], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    env: { ...process.env, PYTHONWARNINGS: 'ignore', PYTHONIOENCODING: 'utf-8' },
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return JSON.parse(out) as T;
}
