import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { DownloadDataFile } from '../../../src/files/download-data-file.ts';
import {
  CONSUMER_IN_PROGRESS_COLUMNS,
  CONSUMER_SUCCEEDED_COLUMNS,
} from '../../../src/files/registry/names.ts';
import { readRegistry } from '../../../src/files/registry/table.ts';
import { DataFileStreamProcessor, WorkerPool } from '../../../src/processing/index.ts';
import { createLogger } from '../../../src/runtime/logger.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { readN } from '../../conformance/suite.ts';
import {
  CsvMetadataReproducer,
  HashReproducer,
  publish,
  RecordingProcessor,
  rel,
  runUntil,
  sampleFiles,
} from './helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'sluice-proc-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(root, `c${n++}`);
const logger = createLogger({ level: 'silent' });

describe('DataFileStreamProcessor', () => {
  it(
    'hands every rebuilt file to user code (memory and disk modes), with bounded concurrency',
    { timeout: 60_000 },
    async () => {
      const dir = fresh();
      const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
      const files = sampleFiles(12);
      await publish(t, 'in', files);
      for (const mode of ['memory', 'disk'] as const) {
        const p = new RecordingProcessor({
          transport: t,
          topic: 'in',
          outputDir: join(dir, mode),
          mode,
          logger,
          concurrency: 3,
        });
        await runUntil(p, (o) => o.length === files.length);
        assert.deepEqual(p.seen.map((s) => s.rel).sort(), files.map(rel).sort());
        for (const f of files) assert.equal(p.seen.find((s) => s.rel === rel(f))!.bytes, f.data.length);
        if (mode === 'disk') {
          for (const f of files) assert.ok(readFileSync(join(dir, mode, rel(f))).equals(f.data));
        } else {
          assert.ok(!existsSync(join(dir, mode, rel(files[0]!))), 'memory mode writes no data files');
        }
        assert.ok(p.concurrentMax > 1 && p.concurrentMax <= 3, `concurrency ${p.concurrentMax}`);
        const ok = await readRegistry(
          join(dir, mode, 'LOGS', `processed_from_in_by_${p.groupId}.csv`),
          CONSUMER_SUCCEEDED_COLUMNS,
        );
        assert.equal(ok.length, files.length);
      }
      await t.close();
    },
  );

  it(
    'after a restart re-processes exactly the failed files (root-level included), and picks up new ones',
    { timeout: 60_000 },
    async () => {
      const dir = fresh();
      const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
      const files = sampleFiles(9);
      await publish(t, 'in', files);
      const out = join(dir, 'out');
      const failRoot = rel(files[0]!); // subdir '' → root level
      const failNested = rel(files[1]!);
      const first = new RecordingProcessor({ transport: t, topic: 'in', outputDir: out, logger });
      first.failing = new Set([failRoot, failNested]);
      const o1 = await runUntil(first, (o) => o.length === files.length);
      assert.deepEqual(
        o1
          .filter((o) => o.status === 'failed')
          .map((o) => o.relativeFilepath)
          .sort(),
        [failNested, failRoot].sort(),
      );
      const reg = await readRegistry(
        join(out, 'LOGS', `consuming_from_in_in_progress_by_${first.groupId}.csv`),
        CONSUMER_IN_PROGRESS_COLUMNS,
      );
      assert.deepEqual(
        reg.map((r) => [r.rel_filepath, r.status]).sort(),
        [
          [failNested, 'failed'],
          [failRoot, 'failed'],
        ].sort(),
      );

      const extra = sampleFiles(2, 7).map((f, i) => ({ ...f, filename: `new${i}.dat` }));
      await publish(t, 'in', extra);
      const second = new RecordingProcessor({ transport: t, topic: 'in', outputDir: out, logger });
      await runUntil(second, () => second.seen.length >= 4, 30_000);
      // let it settle: anything else it would wrongly re-process shows up here
      await runUntil(second, () => false, 1500);
      assert.deepEqual(
        second.seen.map((s) => s.rel).sort(),
        [failRoot, failNested, ...extra.map(rel)].sort(),
      );
      const after2 = await readRegistry(
        join(out, 'LOGS', `consuming_from_in_in_progress_by_${second.groupId}.csv`),
        CONSUMER_IN_PROGRESS_COLUMNS,
      );
      assert.deepEqual(after2, [], 'no file left failed or in progress');
      await t.close();
    },
  );
});

describe('CPU-heavy user code in worker threads', () => {
  it('runs the work on a WorkerPool and gets the results back per file', { timeout: 60_000 }, async () => {
    const dir = fresh();
    const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
    const files = sampleFiles(6);
    await publish(t, 'in', files);
    const pool = new WorkerPool({ module: join(import.meta.dirname, 'fixtures', 'sha-task.ts'), threads: 2 });
    const hashes = new Map<string, string>();
    class ThreadedProcessor extends DataFileStreamProcessor {
      protected override async processDownloadedDataFile(file: DownloadDataFile): Promise<undefined> {
        hashes.set(file.relativeFilepath, (await pool.run(file.bytestring)) as string);
        return undefined;
      }
    }
    const p = new ThreadedProcessor({
      transport: t,
      topic: 'in',
      outputDir: join(dir, 'out'),
      logger,
      concurrency: 4,
    });
    await runUntil(p, (o) => o.length === files.length);
    await pool.close();
    for (const f of files)
      assert.equal(hashes.get(rel(f)), createHash('sha256').update(f.data).digest('hex'));
    await t.close();
  });
});

describe('DataFileStreamReproducer', () => {
  for (const exactlyOnce of [false, true]) {
    it(
      `produces one result per file with upstream keys (${exactlyOnce ? 'exactly-once' : 'at-least-once'}); a null result is registered, not fatal`,
      { timeout: 60_000 },
      async () => {
        const dir = fresh();
        const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
        const files = sampleFiles(6);
        await publish(t, 'in', files);
        await t.createTopic({ name: 'results', partitions: 1 });
        const r = new HashReproducer({
          transport: t,
          topic: 'in',
          producerTopic: 'results',
          outputDir: join(dir, 'out'),
          logger,
          exactlyOnce,
        });
        r.returnNullFor.add(rel(files[2]!));
        const o = await runUntil(r, (x) => x.length === files.length);
        assert.equal(o.filter((x) => x.status === 'failed').length, 1);
        const got = await readN(t.consumer({ groupId: 'reader', topics: ['results'] }), files.length - 1);
        const keys = got.map((g) => g.key!.toString()).sort();
        const expected = files
          .filter((_, i) => i !== 2)
          .map((f) => `${f.subdir.replaceAll('/', '_')}_${f.filename}_chunk_processing_result`)
          .sort();
        assert.deepEqual(keys, expected);
        const reg = await readRegistry(
          join(dir, 'out', 'LOGS', `consuming_from_in_in_progress_by_${r.groupId}.csv`),
          CONSUMER_IN_PROGRESS_COLUMNS,
        );
        assert.deepEqual(
          reg.map((x) => x.status),
          ['computing_result_message_failed'],
        );
        const results = await readRegistry(
          join(dir, 'out', 'LOGS', 'results_produced_to_results.csv'),
          CONSUMER_SUCCEEDED_COLUMNS,
        );
        assert.equal(results.length, files.length - 1);
        await t.close();
      },
    );
  }

  it('MetadataJSONReproducer sends the JSON of the metadata dict', { timeout: 60_000 }, async () => {
    const dir = fresh();
    const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
    const csv = Buffer.from('time,temp,pressure\n0,21.0,101.3\n1,21.5,101.2\n');
    await publish(t, 'in', [{ subdir: 'furnace', filename: 'log.csv', data: csv }], 1);
    await t.createTopic({ name: 'meta', partitions: 1 });
    const r = new CsvMetadataReproducer({
      transport: t,
      topic: 'in',
      producerTopic: 'meta',
      outputDir: join(dir, 'out'),
      logger,
    });
    await runUntil(r, (x) => x.length === 1);
    const [m] = await readN(t.consumer({ groupId: 'reader', topics: ['meta'] }), 1);
    assert.equal(m!.key!.toString(), 'furnace_log.csv_chunk_processing_result');
    assert.deepEqual(JSON.parse(m!.value!.toString()), {
      file: 'furnace/log.csv',
      columns: ['time', 'temp', 'pressure'],
      rows: 2,
    });
    await t.close();
  });
});
