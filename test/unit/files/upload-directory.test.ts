import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, mkdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isSluiceError, SluiceError } from '../../../src/errors.ts';
import {
  PRODUCER_COMPLETED_COLUMNS,
  PRODUCER_IN_PROGRESS_COLUMNS,
} from '../../../src/files/registry/names.ts';
import { type ColumnSpec, readRegistry, writeRegistryAtomic } from '../../../src/files/registry/table.ts';
import {
  DataFileUploadDirectory,
  type DataFileUploadDirectoryOptions,
  LEGACY_UPLOAD_REGEX,
  regexSelector,
  selectFile,
  type UploadedEvent,
} from '../../../src/files/upload-directory.ts';
import { type EmbeddedTransport, openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { sha512 } from './chunk-helpers.ts';
import { HookedProducer, type ReadChunk, readChunks, readTexts, tempDir } from './upload-helpers.ts';

const IN_PROGRESS = PRODUCER_IN_PROGRESS_COLUMNS as ColumnSpec[];
const COMPLETED = PRODUCER_COMPLETED_COLUMNS as ColumnSpec[];
/** Short lag so tests run fast; waits are on events, never on sleeps. */
const LAG = 0.15;
/** Safety net only: a broken upload would otherwise hang the test run. */
const T = { timeout: 20_000 };

const tmp = tempDir('upload-dir');
let transport: EmbeddedTransport;
let n = 0;
const instances: DataFileUploadDirectory[] = [];

before(async () => {
  transport = await openEmbeddedTransport({ path: join(tmp.dir, 'broker.db') });
});
after(async () => {
  // after a failed test, stop what it left running so the process can exit
  await Promise.allSettled(instances.map((up) => up.stop()));
  await transport.close();
  tmp.cleanup();
});

function freshDir(): string {
  const dir = join(tmp.dir, `w${++n}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function put(dir: string, rel: string, data: string | Buffer): string {
  const abs = join(dir, ...rel.split('/'));
  mkdirSync(dirname(abs), { recursive: true });
  writeFileSync(abs, data);
  return abs;
}

function make(
  dir: string,
  topic: string,
  extra: Partial<DataFileUploadDirectoryOptions> = {},
): DataFileUploadDirectory {
  const up = new DataFileUploadDirectory({
    dir,
    transport,
    topic,
    chunkSize: 1024,
    lagTimeSecs: LAG,
    autoCreateTopics: true,
    ...extra,
  });
  instances.push(up);
  return up;
}

/** Resolves with the next 'uploaded' event of `rel` (listen before causing it). */
function uploaded(up: DataFileUploadDirectory, rel: string): Promise<UploadedEvent> {
  return new Promise((resolve) => {
    const on = (e: UploadedEvent): void => {
      if (e.relPath === rel) {
        up.off('uploaded', on);
        resolve(e);
      }
    };
    up.on('uploaded', on);
  });
}

function relOf(c: ReadChunk): string {
  return c.chunk.subdirStr === '' ? c.chunk.filename : `${c.chunk.subdirStr}/${c.chunk.filename}`;
}

function byFile(chunks: ReadChunk[]): Map<string, ReadChunk[]> {
  const m = new Map<string, ReadChunk[]>();
  for (const c of chunks) m.set(relOf(c), [...(m.get(relOf(c)) ?? []), c]);
  return m;
}

describe('file selection', () => {
  test('sluice default: skips hidden paths, the top-level LOGS/ and *.log; keeps names containing "log"', () => {
    for (const ok of [
      'a.dat',
      'catalog.csv',
      'blog/post.txt',
      'data/logger.dat',
      'sub/LOGS/x.dat',
      'log.txt',
    ]) {
      assert.equal(selectFile(ok), true, ok);
    }
    for (const no of [
      '.hidden',
      'sub/.cache/x.dat',
      '.git/config',
      'LOGS/x.dat',
      'run.log',
      'sub/debug.log',
    ]) {
      assert.equal(selectFile(no), false, no);
    }
  });

  test('the legacy upstream regex rejects any path containing "log" after its first character', () => {
    const legacy = regexSelector(LEGACY_UPLOAD_REGEX);
    // the quirk: all of these are ordinary data files
    for (const quirk of ['catalog.csv', 'blog/post.txt', 'data/logger.dat', 'analog_scan.tif']) {
      assert.equal(legacy(quirk), false, quirk);
    }
    for (const ok of ['log.txt', 'a.dat', 'sub/b.dat']) assert.equal(legacy(ok), true, ok);
    for (const no of ['.hidden', 'sub/.hidden', 'LOGS/a.dat', 'x.log']) assert.equal(legacy(no), false, no);
    // hidden directories below the top level are not excluded upstream
    assert.equal(legacy('sub/.cache/a.dat'), true);
  });

  test('user regexes are anchored at the start only, like Python re.match', () => {
    const dat = regexSelector('sub/.*\\.dat');
    assert.equal(dat('sub/a.dat'), true);
    assert.equal(dat('sub/a.dat.bak'), true);
    assert.equal(dat('x/sub/a.dat'), false);
    assert.throws(
      () => regexSelector('(unclosed'),
      (err: unknown) => isSluiceError(err, 'SLUICE_USAGE'),
    );
  });
});

describe('DataFileUploadDirectory', () => {
  test(
    'uploads new files in nested unicode subdirectories and skips hidden, LOGS/ and *.log files',
    T,
    async () => {
      const dir = freshDir();
      const up = make(dir, 'sel');
      await up.start();
      const want = ['a.dat', 'sub/ü/ñ 数据.dat', 'catalog.csv', "deep/semi;tab\tq'uote\\.dat"];
      const done = want.map((rel) => uploaded(up, rel));
      for (const rel of [
        ...want,
        '.hidden.dat',
        '.cfg/x.dat',
        'sub/.cache/y.dat',
        'LOGS/z.dat',
        'run.log',
        'sub/d.log',
      ]) {
        put(dir, rel, `content of ${rel}`);
      }
      await Promise.all(done);
      await up.whenIdle();
      await up.stop();

      const files = byFile(await readChunks(transport, 'sel'));
      assert.deepEqual([...files.keys()].sort(), [...want].sort());
      for (const rel of want) {
        const [c] = files.get(rel) as ReadChunk[];
        assert.equal(c?.chunk.data.toString(), `content of ${rel}`);
      }
      const rows = await readRegistry(join(dir, 'LOGS', 'uploaded_to_sel.csv'), COMPLETED);
      assert.deepEqual(rows.map((r) => r.rel_filepath).sort(), [...want].sort());
      const inProgress = await readRegistry(join(dir, 'LOGS', 'upload_to_sel_in_progress.csv'), IN_PROGRESS);
      assert.deepEqual(inProgress, []);
    },
  );

  test(
    'existing files: left alone by default, uploaded with uploadExisting, re-sent after a restart only if changed',
    T,
    async () => {
      const dir = freshDir();
      for (const rel of ['e1.dat', 'e2.dat', 'sub/e3.dat', 'skip.txt']) put(dir, rel, randomBytes(1500));

      const a = make(dir, 'ex', { uploadRegex: '^.*\\.dat$' });
      await a.start();
      await a.whenIdle();
      await a.stop();
      assert.equal((await readChunks(transport, 'ex')).length, 0);

      const b = make(dir, 'ex', { uploadRegex: '^.*\\.dat$', uploadExisting: true });
      const bDone = ['e1.dat', 'e2.dat', 'sub/e3.dat'].map((rel) => uploaded(b, rel));
      await b.start();
      await Promise.all(bDone);
      await b.whenIdle();
      await b.stop();

      appendFileSync(join(dir, 'e2.dat'), randomBytes(1000)); // changed while sluice was down
      const c = make(dir, 'ex', { uploadRegex: '^.*\\.dat$', uploadExisting: true });
      const queued: string[] = [];
      c.on('queued', (e) => queued.push(`${e.relPath}:${e.reason}`));
      const cDone = uploaded(c, 'e2.dat');
      await c.start();
      const e2 = await cDone;
      await c.whenIdle();
      await c.stop();
      assert.deepEqual(queued, ['e2.dat:changed-while-stopped']);
      assert.equal(e2.nTotalChunks, 3);

      const files = byFile(await readChunks(transport, 'ex'));
      assert.deepEqual([...files.keys()].sort(), ['e1.dat', 'e2.dat', 'sub/e3.dat']);
      assert.equal(files.get('e1.dat')?.length, 2);
      assert.equal(files.get('e2.dat')?.length, 2 + 3);
      assert.equal(new Set(files.get('e2.dat')?.map((x) => x.chunk.fileHash.toString('hex'))).size, 2);
    },
  );

  test(
    'a registry written by upstream (no journal): completed files re-sent only when modified after completion',
    T,
    async () => {
      const dir = freshDir();
      const old = new Date('2020-01-01T00:00:00Z');
      const newer = new Date('2023-01-01T00:00:00Z');
      utimesSync(put(dir, 'same.dat', 'same'), old, old);
      utimesSync(put(dir, 'edited.dat', 'edited'), newer, newer);
      utimesSync(put(dir, 'never.dat', 'never'), old, old);
      const row = (name: string) => ({
        filename: name,
        rel_filepath: name,
        n_chunks: 1,
        started: new Date('2021-01-01T00:00:00Z'),
        completed: new Date('2021-01-01T00:00:01Z'),
      });
      await writeRegistryAtomic(join(dir, 'LOGS', 'uploaded_to_up.csv'), COMPLETED, [
        row('same.dat'),
        row('edited.dat'),
      ]);
      const up = make(dir, 'up', { uploadExisting: true });
      const queued: string[] = [];
      up.on('queued', (e) => queued.push(`${e.relPath}:${e.reason}`));
      await up.start();
      await up.whenIdle();
      await up.stop();
      assert.deepEqual(queued.sort(), ['edited.dat:changed-while-stopped', 'never.dat:existing']);
    },
  );

  test('a file modified after its upload is sent again as a new generation', T, async () => {
    const dir = freshDir();
    const up = make(dir, 'gen');
    await up.start();
    const first = uploaded(up, 'm.dat');
    const v1 = randomBytes(3000);
    put(dir, 'm.dat', v1);
    const e1 = await first;
    const second = uploaded(up, 'm.dat');
    const v2 = Buffer.concat([v1, randomBytes(2000)]);
    appendFileSync(join(dir, 'm.dat'), v2.subarray(3000));
    const e2 = await second;
    // only the mtime changes: queued again, but the same content is not sent again
    const skipped = once(up, 'skipped');
    const later = new Date(Date.now() + 10_000);
    utimesSync(join(dir, 'm.dat'), later, later);
    assert.deepEqual(await skipped, [{ relPath: 'm.dat', reason: 'unchanged' }]);
    await up.whenIdle();
    await up.stop();

    assert.equal(e1.fileHash, sha512(v1).toString('hex'));
    assert.equal(e2.fileHash, sha512(v2).toString('hex'));
    const chunks = (await readChunks(transport, 'gen')).map((c) => c.chunk);
    const g1 = chunks.filter((c) => c.fileHash.equals(sha512(v1)));
    const g2 = chunks.filter((c) => c.fileHash.equals(sha512(v2)));
    assert.deepEqual([g1.length, g2.length, chunks.length], [3, 5, 8]);
    assert.ok((g2[0]?.fileMtime ?? 0) >= (g1[0]?.fileMtime ?? 0));
    const rebuilt = Buffer.alloc(v2.length);
    for (const c of g2) c.data.copy(rebuilt, c.chunkOffsetWrite);
    assert.ok(rebuilt.equals(v2));
    const rows = await readRegistry(join(dir, 'LOGS', 'uploaded_to_gen.csv'), COMPLETED);
    assert.deepEqual(
      rows.map((r) => [r.rel_filepath, r.n_chunks]),
      [
        ['m.dat', 3],
        ['m.dat', 5],
      ],
    );
  });

  test(
    'a file rewritten during its upload: sending stops at the first changed chunk, then the new version goes whole',
    T,
    async () => {
      const dir = freshDir();
      const v1 = randomBytes(6 * 1024);
      const v2 = randomBytes(6 * 1024);
      let rewritten = false;
      const producer = new HookedProducer(transport.producer({ autoCreateTopics: true }), {
        after: (r) => {
          if (!rewritten && r.topic === 'during') {
            rewritten = true;
            writeFileSync(join(dir, 'w.dat'), v2); // same size, other bytes: later chunks no longer match
          }
        },
      });
      const up = make(dir, 'during', { producer, maxInFlight: 1 });
      await up.start();
      const finalVersion = new Promise<UploadedEvent>((resolve) => {
        up.on('uploaded', (e) => {
          if (e.fileHash === sha512(v2).toString('hex')) resolve(e);
        });
      });
      put(dir, 'w.dat', v1);
      const e = await finalVersion;
      await up.whenIdle();
      await up.stop();
      assert.equal(e.chunks, 6);
      const chunks = (await readChunks(transport, 'during')).map((c) => c.chunk);
      // the broken first generation never mixes bytes of v2 under v1's hash
      const g1 = chunks.filter((x) => x.fileHash.equals(sha512(v1)));
      assert.ok(g1.length >= 1 && g1.length < 6, `the first generation stopped early (${g1.length} chunks)`);
      for (const c of g1) {
        assert.ok(c.data.equals(v1.subarray(c.chunkOffsetWrite, c.chunkOffsetWrite + c.data.length)));
      }
      const g2 = chunks.filter((x) => x.fileHash.equals(sha512(v2)));
      assert.deepEqual(
        g2.map((c) => c.chunkI).sort((a, b) => a - b),
        [1, 2, 3, 4, 5, 6],
      );
    },
  );

  test(
    'restart resumes an in-progress row written by upstream, sending only chunks not delivered',
    T,
    async () => {
      const dir = freshDir();
      const content = randomBytes(8 * 1024);
      put(dir, 'r;es\tume.dat', content);
      await writeRegistryAtomic(join(dir, 'LOGS', 'upload_to_res_in_progress.csv'), IN_PROGRESS, [
        {
          filename: 'r;es\tume.dat',
          rel_filepath: 'r;es\tume.dat',
          n_chunks: 8,
          n_chunks_delivered: 3,
          n_chunks_to_send: 5,
          started: new Date(2026, 0, 1),
          chunks_delivered: new Set([1, 2, 3]),
          chunks_to_send: new Set([4, 5, 6, 7, 8]),
        },
      ]);

      const wrong = make(dir, 'res', { chunkSize: 2048 });
      await assert.rejects(wrong.start(), (err: unknown) => {
        assert.ok(isSluiceError(err, 'SLUICE_USAGE'));
        assert.match(
          err.message,
          /registry lists 8 chunks, but the file has 4 at chunk size 2048\. Did the chunk size change\?/,
        );
        return true;
      });
      await wrong.stop();

      const up = make(dir, 'res');
      const done = uploaded(up, 'r;es\tume.dat');
      await up.start();
      const e = await done;
      await up.stop();
      assert.deepEqual([e.resumed, e.chunks, e.nTotalChunks], [true, 5, 8]);
      const chunks = await readChunks(transport, 'res');
      assert.deepEqual(chunks.map((c) => c.chunk.chunkI).sort(), [4, 5, 6, 7, 8]);
      assert.deepEqual(
        await readRegistry(join(dir, 'LOGS', 'upload_to_res_in_progress.csv'), IN_PROGRESS),
        [],
      );
      const rows = await readRegistry(join(dir, 'LOGS', 'uploaded_to_res.csv'), COMPLETED);
      assert.deepEqual(
        rows.map((r) => [r.rel_filepath, r.n_chunks]),
        [['r;es\tume.dat', 8]],
      );
    },
  );

  test(
    'a crash after the journal recorded a completion but before the CSV files were rewritten: not sent again',
    T,
    async () => {
      const dir = freshDir();
      const content = randomBytes(3 * 1024);
      const abs = put(dir, 'done.dat', content);
      const st = statSync(abs, { bigint: true });
      // what the files look like when the process died right after journalling the completion: the in-progress
      // row still lists the file with its last delivered chunk missing (the lazy update had not run)
      await writeRegistryAtomic(join(dir, 'LOGS', 'upload_to_crash_in_progress.csv'), IN_PROGRESS, [
        {
          filename: 'done.dat',
          rel_filepath: 'done.dat',
          n_chunks: 3,
          n_chunks_delivered: 2,
          n_chunks_to_send: 1,
          started: new Date(2026, 0, 1),
          chunks_delivered: new Set([1, 2]),
          chunks_to_send: new Set([3]),
        },
      ]);
      const common = {
        rel: 'done.dat',
        size: 3 * 1024,
        mtimeNs: st.mtimeNs.toString(),
        chunkSize: 1024,
        nChunks: 3,
        hash: sha512(content).toString('hex'),
      };
      writeFileSync(
        join(dir, 'LOGS', '.sluice_upload_to_crash.jsonl'),
        `${JSON.stringify({ ...common, state: 'hashed', at: Date.now() - 2000 })}\n` +
          `${JSON.stringify({ ...common, state: 'completed', at: Date.now() - 1000 })}\n`,
      );
      const up = make(dir, 'crash', { uploadExisting: true });
      const queued: string[] = [];
      up.on('queued', (e) => queued.push(e.relPath));
      await up.start();
      await up.whenIdle();
      await up.stop();
      assert.deepEqual(queued, []);
      assert.deepEqual(await readChunks(transport, 'crash'), []);
      assert.deepEqual(
        await readRegistry(join(dir, 'LOGS', 'upload_to_crash_in_progress.csv'), IN_PROGRESS),
        [],
      );
      const rows = await readRegistry(join(dir, 'LOGS', 'uploaded_to_crash.csv'), COMPLETED);
      assert.deepEqual(
        rows.map((r) => [r.rel_filepath, r.n_chunks]),
        [['done.dat', 3]],
      );
    },
  );

  test(
    'graceful stop mid-file leaves the rest in the registry, sends a final heartbeat; restart sends the rest once',
    T,
    async () => {
      const dir = freshDir();
      const content = randomBytes(64 * 1024);
      let chunkSends = 0;
      let up: DataFileUploadDirectory | undefined;
      const producer = new HookedProducer(transport.producer({ autoCreateTopics: true }), {
        after: (r) => {
          if (r.topic === 'stop' && ++chunkSends === 3) void up?.stop();
        },
      });
      up = make(dir, 'stop', {
        producer,
        maxInFlight: 1,
        heartbeat: { topic: 'stop-hb', programId: 'uploader-1' },
      });
      const stopped = once(up, 'stopped');
      await up.start();
      put(dir, 'sub/g.dat', content);
      await stopped;

      const rows = await readRegistry(join(dir, 'LOGS', 'upload_to_stop_in_progress.csv'), IN_PROGRESS);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.rel_filepath, 'sub/g.dat');
      assert.deepEqual(rows[0]?.chunks_delivered, new Set([1, 2, 3]));
      assert.deepEqual(rows[0]?.chunks_to_send, new Set(Array.from({ length: 61 }, (_, i) => i + 4)));
      assert.deepEqual(
        (await readChunks(transport, 'stop')).map((c) => c.chunk.chunkI).sort((a, b) => a - b),
        [1, 2, 3],
      );

      const beats = await readTexts(transport, 'stop-hb');
      assert.ok(beats.length >= 2, 'a first and a final heartbeat');
      for (const b of beats) {
        assert.equal(b.key, 'uploader-1_heartbeat');
        assert.match(JSON.parse(b.value).timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
      }
      const produced = beats.map(
        (b) => JSON.parse(b.value) as { n_messages_produced: number; n_bytes_produced: number },
      );
      assert.equal(
        produced.reduce((s, p) => s + p.n_messages_produced, 0),
        3,
      );
      assert.ok((produced.at(-1)?.n_bytes_produced ?? 0) > 3 * 1024);

      const wrongSize = make(dir, 'stop', { chunkSize: 2048 });
      await assert.rejects(wrongSize.start(), (err: unknown) => {
        assert.ok(isSluiceError(err, 'SLUICE_USAGE'));
        assert.match(
          err.message,
          /sub\/g\.dat: 3 of 64 chunks were sent with chunk size 1024, now it is 2048\. Restart with --chunk_size 1024/,
        );
        return true;
      });

      const again = make(dir, 'stop');
      const done = uploaded(again, 'sub/g.dat');
      await again.start();
      const e = await done;
      await again.stop();
      assert.deepEqual([e.resumed, e.chunks], [true, 61]);
      const all = (await readChunks(transport, 'stop')).map((c) => c.chunk);
      assert.deepEqual(
        all.map((c) => c.chunkI).sort((a, b) => a - b),
        Array.from({ length: 64 }, (_, i) => i + 1),
      );
      assert.equal(new Set(all.map((c) => c.fileHash.toString('hex'))).size, 1);
    },
  );

  test('an in-progress file changed while sluice was down is sent whole as a new generation', T, async () => {
    const dir = freshDir();
    let sends = 0;
    let up: DataFileUploadDirectory | undefined;
    const producer = new HookedProducer(transport.producer({ autoCreateTopics: true }), {
      after: (r) => {
        if (r.topic === 'chg' && ++sends === 2) void up?.stop();
      },
    });
    up = make(dir, 'chg', { producer, maxInFlight: 1 });
    const stopped = once(up, 'stopped');
    await up.start();
    put(dir, 'c.dat', randomBytes(5 * 1024));
    await stopped;
    const v2 = randomBytes(5 * 1024);
    writeFileSync(join(dir, 'c.dat'), v2);

    const again = make(dir, 'chg');
    const done = uploaded(again, 'c.dat');
    await again.start();
    const e = await done;
    await again.stop();
    assert.deepEqual([e.resumed, e.chunks, e.fileHash], [false, 5, sha512(v2).toString('hex')]);
  });

  test(
    'an in-progress row whose journal says the file was re-queued is sent whole, not resumed',
    T,
    async () => {
      const dir = freshDir();
      put(dir, 'q.dat', randomBytes(4 * 1024));
      await writeRegistryAtomic(join(dir, 'LOGS', 'upload_to_rq_in_progress.csv'), IN_PROGRESS, [
        {
          filename: 'q.dat',
          rel_filepath: 'q.dat',
          n_chunks: 4,
          n_chunks_delivered: 1,
          n_chunks_to_send: 3,
          started: new Date(2026, 0, 1),
          chunks_delivered: new Set([1]),
          chunks_to_send: new Set([2, 3, 4]),
        },
      ]);
      const hashed = {
        rel: 'q.dat',
        state: 'hashed',
        at: 1,
        size: 4096,
        mtimeNs: '1',
        chunkSize: 1024,
        nChunks: 4,
      };
      writeFileSync(
        join(dir, 'LOGS', '.sluice_upload_to_rq.jsonl'),
        `${JSON.stringify({ ...hashed, hash: 'ab'.repeat(64) })}\n${JSON.stringify({ rel: 'q.dat', state: 'queued', at: 2 })}\n`,
      );
      const up = make(dir, 'rq');
      const done = uploaded(up, 'q.dat');
      await up.start();
      const e = await done;
      await up.stop();
      assert.deepEqual([e.resumed, e.chunks], [false, 4]);
    },
  );

  test('a failed delivery is retried later, and the file then completes', T, async () => {
    const dir = freshDir();
    let failing = true;
    const producer = new HookedProducer(transport.producer({ autoCreateTopics: true }), {
      before: (r) => {
        if (failing && r.topic === 'retry') {
          failing = false;
          throw new SluiceError('SLUICE_TRANSPORT', 'broker restarting', { canRetry: true });
        }
      },
    });
    const up = make(dir, 'retry', { producer, deliveryRetries: 0, fileRetryDelayMs: 10 });
    const failed = once(up, 'failed');
    const done = uploaded(up, 'f.dat');
    await up.start();
    put(dir, 'f.dat', 'payload');
    const [f] = (await failed) as [{ relPath: string; error: unknown; willRetry: boolean }];
    assert.equal(f.relPath, 'f.dat');
    assert.equal(f.willRetry, true);
    assert.ok(isSluiceError(f.error, 'SLUICE_DELIVERY_FAILED'));
    await done;
    await up.whenIdle();
    await up.stop();
    assert.equal((await readChunks(transport, 'retry')).length, 1);
  });

  test('polling mode (network drives) sees new files in new subdirectories', T, async () => {
    const dir = freshDir();
    const up = make(dir, 'poll', { usePolling: true, pollingIntervalMs: 50 });
    await up.start();
    const done = uploaded(up, 'new/dir/p.dat');
    put(dir, 'new/dir/p.dat', 'polled');
    await done;
    await up.stop();
    const [c] = await readChunks(transport, 'poll');
    assert.equal(c?.chunk.subdirStr, 'new/dir');
  });

  test('start() refuses a missing directory with a clear error', async () => {
    const dir = join(tmp.dir, 'does-not-exist');
    rmSync(dir, { recursive: true, force: true });
    await assert.rejects(make(dir, 'x').start(), (err: unknown) => {
      assert.ok(isSluiceError(err, 'SLUICE_USAGE'));
      assert.match(err.message, /cannot be read.*Pass an existing directory/);
      return true;
    });
  });
});
