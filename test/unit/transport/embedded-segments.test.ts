import assert from 'node:assert/strict';
import {
  appendFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { isSluiceError } from '../../../src/errors.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { readN } from '../../conformance/suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-segments-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(dir, `s${n++}.db`);
const segmentFiles = (path: string): string[] => {
  try {
    return readdirSync(`${path}-segments`).sort();
  } catch {
    return [];
  }
};
/** Deterministic bytes that differ per record. */
const payload = (i: number, size: number): Buffer => Buffer.alloc(size, `record ${i};`);

describe('embedded transport: segment files for large values', () => {
  it('stores large values once, outside the database, and small ones inside it', async () => {
    const path = fresh();
    const tr = await openEmbeddedTransport({ path });
    await tr.createTopic({ name: 'mixed', partitions: 1 });
    const big = Array.from({ length: 8 }, (_, i) => payload(i, 512 * 1024));
    await tr
      .producer()
      .send([
        ...big.map((value) => ({ topic: 'mixed', value })),
        { topic: 'mixed', value: 'small' },
        { topic: 'mixed', value: null },
      ]);
    assert.deepEqual(segmentFiles(path), ['1-0-0.log']);
    assert.equal(statSync(join(`${path}-segments`, '1-0-0.log')).size, 8 * 512 * 1024);
    const got = await readN(tr.consumer({ groupId: 'g', topics: ['mixed'] }), 10);
    got.slice(0, 8).forEach((r, i) => {
      assert.ok(r.value!.equals(big[i]!), `record ${i} reads back identical`);
    });
    assert.equal(got[8]!.value!.toString(), 'small');
    assert.equal(got[9]!.value, null);
    await tr.close();
    // the 4 MiB of values are not also in the database or its WAL
    const inDb = [path, `${path}-wal`].reduce(
      (s, f) => s + (statSync(f, { throwIfNoEntry: false })?.size ?? 0),
      0,
    );
    assert.ok(inDb < 2 * 1024 * 1024, `database + WAL hold ${inDb} bytes`);
  });

  it('reports a record whose bytes changed on disk by its CRC, naming the record and what to do', async () => {
    const path = fresh();
    const tr = await openEmbeddedTransport({ path, segmentThresholdBytes: 0 });
    await tr.createTopic({ name: 'crc', partitions: 1 });
    await tr.producer().send([
      { topic: 'crc', value: 'first' },
      { topic: 'crc', value: 'second' },
    ]);
    const file = join(`${path}-segments`, '1-0-0.log');
    const bytes = readFileSync(file);
    bytes[5] = 'X'.charCodeAt(0); // the first byte of "second"
    writeFileSync(file, bytes);
    const c = tr.consumer({ groupId: 'g', topics: ['crc'], maxPollRecords: 1 });
    assert.equal((await readN(c, 1))[0]!.value!.toString(), 'first');
    await assert.rejects(c.poll({ timeoutMs: 500 }), (err: unknown) => {
      assert.ok(isSluiceError(err, 'SLUICE_EMBEDDED_CORRUPT'), String(err));
      assert.match(err.message, /crc\[0\]@1/);
      assert.match(err.message, /CRC-32 mismatch/);
      assert.match(err.message, /commit offset 2/);
      return true;
    });
    await tr.close();
  });

  it('overwrites bytes a killed writer left past the committed end', async () => {
    const path = fresh();
    const tr = await openEmbeddedTransport({ path, segmentThresholdBytes: 0 });
    await tr.createTopic({ name: 'torn', partitions: 1 });
    const p = tr.producer();
    await p.send({ topic: 'torn', value: 'committed' });
    // what a writer killed between its segment write and its commit leaves behind
    appendFileSync(join(`${path}-segments`, '1-0-0.log'), 'half-written garbage');
    await p.send({ topic: 'torn', value: 'next' });
    const got = await readN(tr.consumer({ groupId: 'g', topics: ['torn'] }), 2);
    assert.deepEqual(
      got.map((r) => r.value!.toString()),
      ['committed', 'next'],
    );
    await tr.close();
  });

  it('rolls segment files, removes whole files past retention, and a topic’s files with the topic', async () => {
    const path = fresh();
    const tr = await openEmbeddedTransport({
      path,
      segmentThresholdBytes: 1024,
      segmentRollBytes: 64 * 1024,
    });
    await tr.createTopic({ name: 'rolled', partitions: 1, retentionBytes: 100_000 });
    const p = tr.producer();
    for (let i = 0; i < 20; i++) await p.send({ topic: 'rolled', value: payload(i, 20_000) });
    // 3 values of 20 000 bytes fit in 64 KiB: files 0-6 hold offsets 0-2, 3-5, … 18-19
    assert.equal(segmentFiles(path).length, 7);
    tr.enforceRetention(true);
    const d = await tr.describeTopic('rolled');
    assert.equal(d.partitions[0]!.startOffset, 15, 'keeps the newest 100 000 bytes');
    // offsets 15-19 live in files 5 (15-17) and 6 (18-19); files 0-4 hold only deleted records
    assert.deepEqual(segmentFiles(path), ['1-0-5.log', '1-0-6.log']);
    const got = await readN(tr.consumer({ groupId: 'g', topics: ['rolled'] }), 5);
    got.forEach((r, i) => {
      assert.equal(r.offset, 15 + i);
      assert.ok(r.value!.equals(payload(15 + i, 20_000)));
    });
    await tr.deleteTopic('rolled');
    assert.deepEqual(segmentFiles(path), []);
    await tr.close();
  });

  it('reads back segment values written with synchronous: full (the path that syncs them before each commit)', async () => {
    const path = fresh();
    const tr = await openEmbeddedTransport({ path, synchronous: 'full', segmentThresholdBytes: 0 });
    await tr.createTopic({ name: 'full', partitions: 2 });
    await tr
      .producer()
      .send(Array.from({ length: 6 }, (_, i) => ({ topic: 'full', partition: i % 2, value: `v${i}` })));
    const got = await readN(tr.consumer({ groupId: 'g', topics: ['full'] }), 6);
    assert.deepEqual(got.map((r) => r.value!.toString()).sort(), ['v0', 'v1', 'v2', 'v3', 'v4', 'v5']);
    assert.deepEqual(segmentFiles(path), ['1-0-0.log', '1-1-0.log']);
    await tr.close();
  });

  it('upgrades a version-1 broker file in place: old records stay readable, new large ones go to segments', async () => {
    const path = fresh();
    // the tables as sluice's schema version 1 wrote them (values always inside SQLite)
    const v1 = new DatabaseSync(path);
    v1.exec(`
      PRAGMA journal_mode = WAL;
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE topics (tid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, partitions INTEGER NOT NULL,
        retention_ms INTEGER, retention_bytes INTEGER, created_at INTEGER NOT NULL);
      CREATE TABLE partitions (tid INTEGER NOT NULL, partition INTEGER NOT NULL, start_offset INTEGER NOT NULL DEFAULT 0,
        end_offset INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tid, partition)) WITHOUT ROWID;
      CREATE TABLE records (tid INTEGER NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL, ts INTEGER NOT NULL,
        key BLOB, value BLOB, headers BLOB, PRIMARY KEY (tid, partition, offset));
      INSERT INTO meta VALUES ('schema', '1');
      INSERT INTO topics (name, partitions, created_at) VALUES ('old', 1, 0);
      INSERT INTO partitions (tid, partition, end_offset, bytes) VALUES (1, 0, 1, 100000);
    `);
    v1.prepare(
      'INSERT INTO records (tid, partition, offset, ts, key, value) VALUES (1, 0, 0, 0, NULL, ?)',
    ).run(payload(0, 100_000));
    v1.close();
    const tr = await openEmbeddedTransport({ path });
    await tr.producer().send({ topic: 'old', value: payload(1, 100_000) });
    const got = await readN(tr.consumer({ groupId: 'g', topics: ['old'] }), 2);
    assert.ok(got[0]!.value!.equals(payload(0, 100_000)), 'the record written by version 1');
    assert.ok(got[1]!.value!.equals(payload(1, 100_000)), 'the record written after the upgrade');
    assert.deepEqual(segmentFiles(path), ['1-0-0.log']);
    await tr.close();
    const db = new DatabaseSync(path);
    assert.deepEqual({ ...db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() }, { value: '2' });
    db.close();
  });
});
