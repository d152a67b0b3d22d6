import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openKafkaTransport } from '../../src/transport/kafka/index.ts';
import { rel } from '../unit/processing/helpers.ts';
import {
  KILL_FILES,
  processorKillScenario,
  reproducerKillScenario,
} from '../unit/processing/kill-harness.ts';
import { kafkaBootstrap } from './kafka-env.ts';

const root = mkdtempSync(join(tmpdir(), 'sluice-kill-kafka-'));
after(() => rmSync(root, { recursive: true, force: true }));
const bootstrap = kafkaBootstrap();
const topic = (): string => `kill-${Math.random().toString(36).slice(2, 10)}`;

describe('Kafka: kill -9 at random points, ten times, 200 files', () => {
  for (const mode of ['exactly', 'atleast'] as const) {
    it(
      `reproducer (${mode === 'exactly' ? 'exactly-once, read_committed: one result per file' : 'at-least-once: none missing'})`,
      { timeout: 600_000 },
      async (t) => {
        const tr = await openKafkaTransport({ bootstrapServers: bootstrap });
        const r = await reproducerKillScenario(
          tr,
          `kafka://${bootstrap}`,
          mkdtempSync(join(root, 'r-')),
          topic(),
          mode,
        );
        await tr.close();
        assert.ok(r.interrupted >= 3, `only ${r.interrupted} kills hit unfinished work`);
        assert.deepEqual(r.missing, [], 'every file has a result');
        if (mode === 'exactly') assert.equal(r.duplicates, 0, 'exactly one committed result per file');
        t.diagnostic(
          `kafka ${mode}: ${r.interrupted} kills; ${r.results} results, ${r.duplicates} duplicate(s)`,
        );
      },
    );
  }

  it('processor: every file registered once, none missing', { timeout: 600_000 }, async (t) => {
    const tr = await openKafkaTransport({ bootstrapServers: bootstrap });
    const r = await processorKillScenario(tr, `kafka://${bootstrap}`, mkdtempSync(join(root, 'p-')), topic());
    await tr.close();
    assert.ok(r.interrupted >= 3, `only ${r.interrupted} kills hit unfinished work`);
    assert.deepEqual([...r.registered].sort(), KILL_FILES.map(rel).sort());
    t.diagnostic(`kafka processor: ${r.interrupted} kills; user code ran ${r.userCodeRuns.length} times`);
  });
});
