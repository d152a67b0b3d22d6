import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { CONSUMER_SUCCEEDED_COLUMNS } from '../../../src/files/registry/names.ts';
import { readRegistry } from '../../../src/files/registry/table.ts';
import { createLogger } from '../../../src/runtime/logger.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import type { ConsumedRecord, Transport } from '../../../src/transport/types.ts';
import { eventually } from '../../conformance/suite.ts';
import { bytes, chunkFile, chunkRecords, shuffle } from '../files/stream-helpers.ts';
import { HashReproducer, RecordingProcessor, rel } from './helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'sluice-kill-'));
after(() => rmSync(root, { recursive: true, force: true }));
const child = join(import.meta.dirname, 'fixtures', 'processing-child.ts');
const logger = createLogger({ level: 'silent' });

const FILES = Array.from({ length: 200 }, (_, i) => ({
  subdir: i % 4 === 0 ? '' : `day${i % 3}`,
  filename: `f${i}.dat`,
  data: bytes(2000 + ((i * 7919) % 20_000), 300 + i),
}));

async function setUp(dir: string): Promise<Transport> {
  const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
  await t.createTopic({ name: 'in', partitions: 3 });
  await t.createTopic({ name: 'in-results', partitions: 2 });
  await t.producer().send(
    chunkRecords(
      'in',
      shuffle(
        FILES.flatMap((f) => chunkFile(f.data, { ...f, chunkSize: 256 })),
        11,
      ),
      3,
    ),
  );
  return t;
}

/** Starts and kill -9s the child ten times at pseudo-random moments; returns how many kills hit unfinished work. */
async function killRepeatedly(args: string[], unfinished: () => Promise<boolean>): Promise<number> {
  let seed = 4242;
  let interrupted = 0;
  for (let k = 0; k < 10; k++) {
    const proc: ChildProcess = spawn(process.execPath, ['--import', 'tsx', child, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let running = false;
    createInterface({ input: proc.stderr! }).on('line', (l) => {
      if (l.includes('child running')) running = true;
    });
    const exited = new Promise((r) => proc.once('exit', r));
    await Promise.race([eventually(() => running, 'the child to start', 60_000), exited]);
    seed = (seed * 1103515245 + 12345) >>> 0;
    await new Promise((r) => setTimeout(r, 150 + (seed % 900)));
    if (await unfinished()) interrupted += 1;
    proc.kill('SIGKILL');
    await exited;
  }
  return interrupted;
}

async function readAll(t: Transport, topic: string): Promise<ConsumedRecord[]> {
  const end = (await t.describeTopic(topic)).partitions.reduce((s, p) => s + p.endOffset, 0);
  const c = t.consumer({ groupId: `check-${Math.random()}`, topics: [topic], isolation: 'read_committed' });
  const out: ConsumedRecord[] = [];
  for (let i = 0; i < 100 && out.length < end; i++) out.push(...(await c.poll({ timeoutMs: 200 })));
  await c.close();
  return out;
}

describe('kill -9 at random points, ten times, 200 files', () => {
  for (const mode of ['exactly', 'atleast'] as const) {
    it(
      `reproducer (${mode === 'exactly' ? 'exactly-once: every file has exactly one result' : 'at-least-once: none missing, duplicates counted'})`,
      { timeout: 300_000 },
      async (t) => {
        const dir = join(root, `rep-${mode}`);
        mkdirSync(dir, { recursive: true });
        const tr = await setUp(dir);
        const out = join(dir, 'out');
        const keysNow = async (): Promise<number> =>
          new Set((await readAll(tr, 'in-results')).map((r) => r.key!.toString())).size;
        const interrupted = await killRepeatedly(
          ['reproducer', join(dir, 'b.db'), 'in', out, mode],
          async () => (await keysNow()) < FILES.length,
        );
        assert.ok(
          interrupted >= 3,
          `only ${interrupted} kills hit unfinished work; the test would prove nothing`,
        );
        // a last, clean run with the same group finishes whatever the kills left
        const stop = new AbortController();
        const again = new HashReproducer({
          transport: tr,
          topic: 'in',
          producerTopic: 'in-results',
          outputDir: out,
          groupId: 'killable',
          exactlyOnce: mode === 'exactly',
          logger,
        });
        const watcher = (async () => {
          for (let i = 0; i < 600 && (await keysNow()) < FILES.length; i++)
            await new Promise((r) => setTimeout(r, 100));
          stop.abort();
        })();
        await again.run(stop.signal);
        await watcher;
        const results = await readAll(tr, 'in-results');
        const perKey = new Map<string, number>();
        for (const r of results) perKey.set(r.key!.toString(), (perKey.get(r.key!.toString()) ?? 0) + 1);
        const missing = FILES.filter((f) => !perKey.has(`${f.subdir}_${f.filename}_chunk_processing_result`));
        assert.deepEqual(missing.map(rel), [], 'every file has a result');
        const duplicates = [...perKey.values()].reduce((s, n) => s + n - 1, 0);
        if (mode === 'exactly') assert.equal(duplicates, 0, 'exactly one result per file');
        t.diagnostic(
          `${mode}: ${interrupted} kills hit unfinished work; ${results.length} results for ${FILES.length} files; ${duplicates} duplicate(s)`,
        );
        await tr.close();
      },
    );
  }

  it('processor: every file processed, registered once, none missing', { timeout: 300_000 }, async (t) => {
    const dir = join(root, 'proc');
    mkdirSync(dir, { recursive: true });
    const tr = await setUp(dir);
    const out = join(dir, 'out');
    const side = join(dir, 'side-effects.log');
    const registry = async (): Promise<number> =>
      (await readRegistry(join(out, 'LOGS', 'processed_from_in_by_killable.csv'), CONSUMER_SUCCEEDED_COLUMNS))
        .length;
    const interrupted = await killRepeatedly(
      ['processor', join(dir, 'b.db'), 'in', out, 'atleast', side],
      async () => (await registry()) < FILES.length,
    );
    assert.ok(interrupted >= 3, `only ${interrupted} kills hit unfinished work`);
    const stop = new AbortController();
    const again = new RecordingProcessor({
      transport: tr,
      topic: 'in',
      outputDir: out,
      groupId: 'killable',
      logger,
    });
    const watcher = (async () => {
      for (let i = 0; i < 600 && (await registry()) < FILES.length; i++)
        await new Promise((r) => setTimeout(r, 100));
      stop.abort();
    })();
    await again.run(stop.signal);
    await watcher;
    const rows = await readRegistry(
      join(out, 'LOGS', 'processed_from_in_by_killable.csv'),
      CONSUMER_SUCCEEDED_COLUMNS,
    );
    assert.deepEqual(
      rows.map((r) => String(r.rel_filepath)).sort(),
      FILES.map(rel).sort(),
      'registered once each, none missing',
    );
    const effects = existsSync(side) ? readFileSync(side, 'utf8').trim().split('\n') : [];
    const all = [...effects, ...again.seen.map((x) => x.rel)];
    assert.deepEqual([...new Set(all)].sort(), FILES.map(rel).sort(), 'user code saw every file');
    t.diagnostic(
      `processor: ${interrupted} kills hit unfinished work; user code ran ${all.length} times for ${FILES.length} files`,
    );
    await tr.close();
  });
});
