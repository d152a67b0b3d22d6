#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, so sluice needs no build step. sluice needs Node >= 22.22
// (node:sqlite, @platformatic/kafka); started by an older Node, it re-runs itself on the pinned Node 24 from
// the `node` package when that is installed.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 22)) {
  let pinned;
  try {
    pinned = createRequire(import.meta.url).resolve('node/bin/node');
  } catch {
    pinned = undefined;
  }
  if (pinned === undefined) {
    process.stderr.write(`sluice: needs Node >= 22.22, this is ${process.version}. Install Node 24, or run npm ci in the sluice checkout.\n`);
    process.exit(1);
  }
  const r = spawnSync(pinned, process.argv.slice(1), { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main();
