import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { rel } from './helpers.ts';
import { KILL_FILES, processorKillScenario, reproducerKillScenario } from './kill-harness.ts';

const root = mkdtempSync(join(tmpdir(), 'sluice-kill-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('embedded: kill -9 at random points, ten times, 200 files', () => {
  for (const mode of ['exactly', 'atleast'] as const) {
    const what =
      mode === 'exactly'
        ? 'exactly-once: one result per file'
        : 'at-least-once: none missing, duplicates counted';
    it(`reproducer (${what})`, { timeout: 300_000 }, async (t) => {
      const dir = join(root, `rep-${mode}`);
      mkdirSync(dir, { recursive: true });
      const broker = `file:${join(dir, 'b.db')}`;
      const tr = await openEmbeddedTransport({ path: join(dir, 'b.db') });
      const r = await reproducerKillScenario(tr, broker, dir, 'in', mode);
      await tr.close();
      assert.ok(
        r.interrupted >= 3,
        `only ${r.interrupted} kills hit unfinished work; the test would prove nothing`,
      );
      assert.deepEqual(r.missing, [], 'every file has a result');
      if (mode === 'exactly') assert.equal(r.duplicates, 0, 'exactly one result per file');
      t.diagnostic(
        `${mode}: ${r.interrupted} kills hit unfinished work; ${r.results} results, ${r.duplicates} duplicate(s)`,
      );
    });
  }

  it('processor: every file processed and registered once, none missing', { timeout: 300_000 }, async (t) => {
    const dir = join(root, 'proc');
    mkdirSync(dir, { recursive: true });
    const tr = await openEmbeddedTransport({ path: join(dir, 'b.db') });
    const r = await processorKillScenario(tr, `file:${join(dir, 'b.db')}`, dir, 'in');
    await tr.close();
    assert.ok(r.interrupted >= 3, `only ${r.interrupted} kills hit unfinished work`);
    assert.deepEqual(
      [...r.registered].sort(),
      KILL_FILES.map(rel).sort(),
      'registered once each, none missing',
    );
    assert.deepEqual(
      [...new Set(r.userCodeRuns)].sort(),
      KILL_FILES.map(rel).sort(),
      'user code saw every file',
    );
    t.diagnostic(
      `processor: ${r.interrupted} kills; user code ran ${r.userCodeRuns.length} times for ${KILL_FILES.length} files`,
    );
  });
});
