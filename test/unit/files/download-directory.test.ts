import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { encodeChunk } from '../../../src/files/chunk-codec.ts';
import { DataFileDownloadDirectory } from '../../../src/files/download-directory.ts';
import type { FileOutcome } from '../../../src/files/stream-handler.ts';
import { createLogger } from '../../../src/runtime/logger.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import type { Transport } from '../../../src/transport/types.ts';
import { eventually } from '../../conformance/suite.ts';
import { bytes, chunkFile, chunkRecords, shuffle } from './stream-helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'sluice-dl-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => {
  const d = join(root, `case${n++}`);
  mkdirSync(d);
  return d;
};
const logger = createLogger({ level: 'silent' });

/** Runs a download directory until `until` says stop (or the case times out), then stops it cleanly. */
async function download(
  transport: Transport,
  outputDir: string,
  topic: string,
  until: (outcomes: FileOutcome[]) => boolean,
  extra: Partial<ConstructorParameters<typeof DataFileDownloadDirectory>[0]> = {},
  limitMs?: number,
): Promise<{ outcomes: FileOutcome[]; dl: DataFileDownloadDirectory }> {
  const dl = new DataFileDownloadDirectory({ transport, outputDir, topic, logger, groupId: 'g', ...extra });
  const outcomes: FileOutcome[] = [];
  const stop = new AbortController();
  if (limitMs !== undefined) setTimeout(() => stop.abort(), limitMs);
  dl.on('file', (f: FileOutcome) => {
    outcomes.push(f);
    if (until(outcomes)) stop.abort();
  });
  const running = dl.run(stop.signal);
  await running;
  return { outcomes, dl };
}

describe('download-dir (DataFileDownloadDirectory) on the embedded broker', () => {
  it(
    'rebuilds files byte-identical from shuffled chunks over several partitions',
    { timeout: 60_000 },
    async () => {
      const dir = fresh();
      const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
      await t.createTopic({ name: 'files', partitions: 3 });
      const files = [
        { subdir: '', filename: 'root.dat', data: bytes(10_000, 1) },
        { subdir: 'run 7/ünïcødé', filename: 'spectrum ✓.csv', data: bytes(50_001, 2) },
        { subdir: 'a/b/c', filename: 'empty.bin', data: Buffer.alloc(0) },
        { subdir: 'a', filename: 'one-chunk.txt', data: bytes(4096, 3) },
      ];
      const chunks = shuffle(
        files.flatMap((f) => chunkFile(f.data, f)),
        7,
      );
      await t.producer().send(chunkRecords('files', chunks, 3));
      const out = join(dir, 'out');
      const { outcomes } = await download(t, out, 'files', (o) => o.length === files.length);
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ['completed', 'completed', 'completed', 'completed'],
      );
      for (const f of files) {
        const path = join(out, f.subdir, f.filename);
        assert.ok(readFileSync(path).equals(f.data), `${path} differs`);
      }
      assert.deepEqual(readdirSync(join(out, 'LOGS')).sort(), ['consuming_from_files_in_progress_by_g.csv']);
      await t.close();
    },
  );

  it(
    'quarantines hostile and broken messages, writes nothing outside OUTDIR, and keeps going',
    { timeout: 60_000 },
    async () => {
      const dir = fresh();
      const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
      await t.createTopic({ name: 'evil', partitions: 1 });
      const good = bytes(9000, 4);
      const bad = [
        ...chunkFile(bytes(100, 5), { subdir: '../escape', filename: 'x.dat' }),
        ...chunkFile(bytes(100, 6), { subdir: '/etc', filename: 'passwd' }),
        ...chunkFile(bytes(100, 7), { subdir: 'ok', filename: '../../y.dat' }),
        ...chunkFile(bytes(100, 8), { subdir: 'a\\..\\..', filename: 'z.dat' }),
      ];
      const wrongHash = chunkFile(bytes(100, 9), { filename: 'tampered.dat' })[0]!;
      wrongHash.data = Buffer.from(wrongHash.data);
      wrongHash.data[0] = (wrongHash.data[0]! + 1) & 0xff;
      await t
        .producer()
        .send([
          ...chunkRecords('evil', bad, 1),
          { topic: 'evil', key: 'tampered', value: encodeChunk({ ...wrongHash }) },
          { topic: 'evil', key: 'garbage', value: Buffer.from('not msgpack at all') },
          ...chunkRecords('evil', chunkFile(good, { subdir: 'fine', filename: 'good.dat' }), 1),
        ]);
      const out = join(dir, 'nested', 'out');
      const { dl } = await download(t, out, 'evil', (o) =>
        o.some((x) => x.relativeFilepath === 'fine/good.dat'),
      );
      assert.ok(readFileSync(join(out, 'fine', 'good.dat')).equals(good));
      assert.equal(dl.summary.messagesQuarantined, 6);
      const q = readdirSync(join(out, 'LOGS', 'quarantine')).filter((f) => f.endsWith('.json'));
      assert.equal(q.length, 6);
      const entries = q.map(
        (f) =>
          JSON.parse(readFileSync(join(out, 'LOGS', 'quarantine', f), 'utf8')) as {
            code: string;
            offset: number;
          },
      );
      assert.deepEqual(entries.map((e) => e.code).sort(), [
        'SLUICE_CHUNK_DECODE',
        'SLUICE_CHUNK_HASH',
        'SLUICE_UNSAFE_PATH',
        'SLUICE_UNSAFE_PATH',
        'SLUICE_UNSAFE_PATH',
        'SLUICE_UNSAFE_PATH',
      ]);
      // nothing was written beside or above the output directory
      assert.deepEqual(readdirSync(join(dir, 'nested')), ['out']);
      assert.deepEqual(readdirSync(dir).sort(), ['b.db', 'b.db-shm', 'b.db-wal', 'nested']);
      assert.ok(!existsSync('/etc/passwd.sluice-partial'));
      const committed = await t.describeGroup('g');
      assert.equal(committed.offsets[0]!.lag, 0, 'committed past the quarantined messages');
      await t.close();
    },
  );

  it('writes the newest generation of a re-uploaded file', { timeout: 60_000 }, async () => {
    const dir = fresh();
    const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
    await t.createTopic({ name: 'gen', partitions: 2 });
    const v1 = bytes(20_000, 10);
    const v2 = bytes(30_000, 11);
    const c1 = chunkFile(v1, { filename: 'm.dat', mtime: 1_700_000_000 });
    const c2 = chunkFile(v2, { filename: 'm.dat', mtime: 1_700_000_100 });
    // the new generation starts while old chunks are still arriving
    await t.producer().send(chunkRecords('gen', [...c1.slice(0, 2), ...c2, ...c1.slice(2)], 2));
    const out = join(dir, 'out');
    await download(t, out, 'gen', (o) => o.some((x) => x.status === 'completed'));
    assert.ok(readFileSync(join(out, 'm.dat')).equals(v2));
    await t.close();
  });

  it(
    'keeps the source mtime, and an older version finishing after a newer one does not overwrite it',
    { timeout: 60_000 },
    async () => {
      const dir = fresh();
      const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
      await t.createTopic({ name: 'order', partitions: 1 });
      const v1 = bytes(6000, 21);
      const v2 = bytes(7000, 22);
      const c1 = chunkFile(v1, { filename: 'm.dat', mtime: 1_700_000_000 });
      const c2 = chunkFile(v2, { filename: 'm.dat', mtime: 1_700_000_500 });
      // the newer version completes first; the older one's chunks come afterwards (as from a slower partition)
      await t.producer().send(chunkRecords('order', [...c2, ...c1], 1));
      const out = join(dir, 'out');
      await download(t, out, 'order', (o) => o.length === 1);
      assert.equal(statSync(join(out, 'm.dat')).mtimeMs, 1_700_000_500_000);
      // give the older chunks every chance to be (wrongly) rebuilt
      const again = await download(t, out, 'order', () => false, { groupId: 'again' }, 1500);
      assert.deepEqual(
        again.outcomes.map((o) => o.status),
        ['already_present'],
      );
      assert.ok(readFileSync(join(out, 'm.dat')).equals(v2), 'the newer version stays');
      await t.close();
    },
  );

  it('passes over files already rebuilt, and applies download_regex', { timeout: 60_000 }, async () => {
    const dir = fresh();
    const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
    await t.createTopic({ name: 'again', partitions: 1 });
    const a = bytes(8000, 12);
    const b = bytes(8000, 13);
    await t
      .producer()
      .send(
        chunkRecords(
          'again',
          [...chunkFile(a, { filename: 'a.dat' }), ...chunkFile(b, { filename: 'b.log' })],
          1,
        ),
      );
    const out = join(dir, 'out');
    const first = await download(t, out, 'again', (o) => o.length === 1, { downloadRegex: /\.dat$/ });
    assert.deepEqual(
      first.outcomes.map((o) => o.relativeFilepath),
      ['a.dat'],
    );
    assert.ok(!existsSync(join(out, 'b.log')));
    const before = statSync(join(out, 'a.dat')).mtimeMs;
    const second = await download(t, out, 'again', (o) => o.length === 2, { groupId: 'create_new' });
    assert.deepEqual(second.outcomes.map((o) => [o.relativeFilepath, o.status]).sort(), [
      ['a.dat', 'already_present'],
      ['b.log', 'completed'],
    ]);
    assert.equal(statSync(join(out, 'a.dat')).mtimeMs, before, 'the finished file was not rewritten');
    await t.close();
  });

  it(
    'completes every file after repeated kill -9 of the download process',
    { timeout: 180_000 },
    async () => {
      const dir = fresh();
      const brokerPath = join(dir, 'b.db');
      const t = await openEmbeddedTransport({ path: brokerPath });
      await t.createTopic({ name: 'crash', partitions: 3 });
      const files = Array.from({ length: 200 }, (_, i) => ({
        subdir: i % 2 === 0 ? `day${i % 5}` : '',
        filename: `f${i}.dat`,
        data: bytes(1000 + ((i * 7919) % 80_000), 100 + i),
      }));
      // chunks of all files interleaved, so at any moment many files are half-built; small chunks (many messages),
      // so the rebuild takes long enough for the kills below to land in unfinished work
      await t.producer().send(
        chunkRecords(
          'crash',
          shuffle(
            files.flatMap((f) => chunkFile(f.data, { ...f, chunkSize: 128 })),
            3,
          ),
          3,
        ),
      );
      const out = join(dir, 'out');
      const present = (): number => files.filter((f) => existsSync(join(out, f.subdir, f.filename))).length;
      const bin = join(import.meta.dirname, '..', '..', '..', 'bin', 'sluice.js');
      let seed = 12345;
      let interrupted = 0;
      for (let kill = 0; kill < 10; kill++) {
        const child: ChildProcess = spawn(
          process.execPath,
          [
            bin,
            'download-dir',
            out,
            '--topic_name',
            'crash',
            '--consumer_group_id',
            'crashy',
            '--broker',
            `file:${brokerPath}`,
            '--log-format',
            'json',
          ],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        );
        let started = false;
        createInterface({ input: child.stderr! }).on('line', (l) => {
          if (l.includes('"reading files from topic')) started = true;
        });
        const exited = new Promise((r) => child.once('exit', r));
        await Promise.race([eventually(() => started, 'the child to start reading', 60_000), exited]);
        seed = (seed * 1103515245 + 12345) >>> 0;
        // past the first checkpoint (1 s) most of the time, so kills land between commits as well as before them
        await new Promise((r) => setTimeout(r, 100 + (seed % 1100)));
        if (present() < files.length) interrupted += 1;
        child.kill('SIGKILL');
        await exited;
      }
      assert.ok(
        interrupted >= 3,
        `the kills interrupted the work only ${interrupted} times (otherwise this test proves nothing)`,
      );
      // a final run with the same group must finish every file; a wrong commit would leave some unfinishable
      const finalStop = new AbortController();
      const limit = setTimeout(() => finalStop.abort(), 60_000);
      const last = new DataFileDownloadDirectory({
        transport: t,
        outputDir: out,
        topic: 'crash',
        groupId: 'crashy',
        logger,
      });
      last.on('file', () => {
        if (present() === files.length) finalStop.abort();
      });
      if (present() < files.length) await last.run(finalStop.signal);
      clearTimeout(limit);
      const missing = files
        .filter((f) => !existsSync(join(out, f.subdir, f.filename)))
        .map((f) => f.filename);
      assert.deepEqual(missing, [], 'files never completed after the kills');
      for (const f of files)
        assert.ok(readFileSync(join(out, f.subdir, f.filename)).equals(f.data), f.filename);
      const g = await t.describeGroup('crashy');
      assert.equal(
        g.offsets.reduce((s, o) => s + o.lag, 0),
        0,
      );
      await t.close();
    },
  );
});
