import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { isSluiceError } from '../../../src/errors.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { eventually, readN } from '../../conformance/suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-embedded-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(dir, `b${n++}.db`);
const child = join(import.meta.dirname, 'fixtures', 'embedded-child.ts');

/** Starts the child script; `lines` collects its JSON events. */
function spawnChild(
  args: string[],
  env: Record<string, string> = {},
): { proc: ChildProcess; lines: Array<Record<string, unknown>> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const lines: Array<Record<string, unknown>> = [];
  createInterface({ input: proc.stdout! }).on('line', (l) =>
    lines.push(JSON.parse(l) as Record<string, unknown>),
  );
  return { proc, lines };
}

function killHard(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}

/** Small values stay inside SQLite by default; threshold 0 puts every value in segment files. */
const STORAGE_MODES: Array<{
  label: string;
  options: { segmentThresholdBytes?: number };
  env: Record<string, string>;
}> = [
  { label: 'values inside SQLite', options: {}, env: {} },
  {
    label: 'values in segment files',
    options: { segmentThresholdBytes: 0 },
    env: { SEGMENT_THRESHOLD: '0' },
  },
];

describe('embedded transport', () => {
  for (const mode of STORAGE_MODES) {
    it(
      `keeps every acknowledged record across kill -9 of the producing process (${mode.label})`,
      {
        timeout: 60_000,
      },
      async () => {
        const path = fresh();
        const tr = await openEmbeddedTransport({ path, ...mode.options });
        await tr.createTopic({ name: 'durable', partitions: 1 });
        const { proc, lines } = spawnChild(['produce', path, 'durable'], mode.env);
        await eventually(() => lines.length >= 30, 'the child to acknowledge 30 batches');
        await killHard(proc);
        const acked = lines.flatMap((l) => l.acked as number[]);
        const d = await tr.describeTopic('durable');
        assert.ok(d.partitions[0]!.endOffset >= acked.length, 'every acknowledged record is stored');
        const c = tr.consumer({ groupId: 'g', topics: ['durable'] });
        const got = await readN(c, d.partitions[0]!.endOffset);
        assert.deepEqual(
          got.map((r) => r.offset),
          Array.from({ length: got.length }, (_, i) => i),
        );
        for (const off of acked) assert.equal(got[off]!.value!.toString(), `r-${off}`);
        await tr.close();
      },
    );
  }

  it(
    'hands a killed member’s partitions to a live one at once (its process is gone), from its commits',
    {
      timeout: 60_000,
    },
    async () => {
      const path = fresh();
      const tr = await openEmbeddedTransport({ path });
      await tr.createTopic({ name: 'lease', partitions: 3 });
      await tr
        .producer()
        .send(Array.from({ length: 30 }, (_, i) => ({ topic: 'lease', partition: i % 3, value: `${i}` })));
      const { proc, lines } = spawnChild(['consume', path, 'lease', 'crash-group']);
      await eventually(
        () => lines.some((l) => l.read !== undefined && (l.read as string[]).length > 0),
        'the child to read',
      );
      await eventually(async () => {
        const g = await tr.describeGroup('crash-group');
        return g.offsets.reduce((s, o) => s + (o.committed ?? 0), 0) === 30;
      }, 'the child to commit everything it read');
      await killHard(proc);
      // a member of the same group starts while the dead one's lease still holds every partition
      const c = tr.consumer({ groupId: 'crash-group', topics: ['lease'], sessionTimeoutMs: 1000 });
      await eventually(async () => {
        await c.poll({ timeoutMs: 100 });
        return c.assignment().length === 3;
      }, 'the live member to take over all three partitions');
      await tr.producer().send([0, 1, 2].map((p) => ({ topic: 'lease', partition: p, value: `new-${p}` })));
      const got = await readN(c, 3);
      assert.deepEqual(got.map((r) => r.value!.toString()).sort(), ['new-0', 'new-1', 'new-2']);
      await tr.close();
    },
  );

  it(
    'takes over partitions of a member on another host only when its lease runs out',
    { timeout: 60_000 },
    async () => {
      const path = fresh();
      const tr = await openEmbeddedTransport({ path });
      await tr.createTopic({ name: 'remote', partitions: 2 });
      const db = new DatabaseSync(path);
      const until = Date.now() + 1500;
      db.prepare('INSERT INTO members (group_id, member_id, topics, expires_at) VALUES (?, ?, ?, ?)').run(
        'rg',
        'other-host-1-ab',
        '["remote"]',
        until,
      );
      for (const p of [0, 1]) {
        db.prepare(
          'INSERT INTO owners (group_id, topic, partition, member_id, expires_at) VALUES (?, ?, ?, ?, ?)',
        ).run('rg', 'remote', p, 'other-host-1-ab', until);
      }
      db.close();
      const c = tr.consumer({ groupId: 'rg', topics: ['remote'], sessionTimeoutMs: 1000 });
      await c.poll({ timeoutMs: 200 });
      assert.ok(
        Date.now() < until && c.assignment().length < 2,
        'the leases of a live-looking member are respected',
      );
      await eventually(async () => {
        await c.poll({ timeoutMs: 100 });
        return c.assignment().length === 2;
      }, 'the partitions to move once the lease expired');
      assert.ok(Date.now() >= until);
      await tr.close();
    },
  );

  for (const mode of STORAGE_MODES) {
    it(
      `lets several processes produce to one file at once with no gaps or duplicates (${mode.label})`,
      {
        timeout: 60_000,
      },
      async () => {
        const path = fresh();
        const tr = await openEmbeddedTransport({ path, ...mode.options });
        await tr.createTopic({ name: 'shared', partitions: 1 });
        const a = spawnChild(['produce', path, 'shared'], mode.env);
        const b = spawnChild(['produce', path, 'shared'], mode.env);
        const local = tr.producer();
        for (let i = 0; i < 20; i++) await local.send({ topic: 'shared', value: `local-${i}` });
        await eventually(() => a.lines.length >= 20 && b.lines.length >= 20, 'both children to write');
        await Promise.all([killHard(a.proc), killHard(b.proc)]);
        const end = (await tr.describeTopic('shared')).partitions[0]!.endOffset;
        const got = await readN(tr.consumer({ groupId: 'g', topics: ['shared'] }), end);
        assert.deepEqual(
          got.map((r) => r.offset),
          Array.from({ length: end }, (_, i) => i),
        );
        const acked = [...a.lines, ...b.lines].flatMap((l) => l.acked as number[]);
        assert.equal(new Set(acked).size, acked.length, 'no offset acknowledged twice');
        assert.equal(got.filter((r) => r.value!.toString().startsWith('local-')).length, 20);
        await tr.close();
      },
    );
  }

  it('deletes records past retention by size and by age, and readers continue from the oldest kept', async () => {
    const tr = await openEmbeddedTransport({ path: fresh() });
    await tr.createTopic({ name: 'bysize', partitions: 1, retentionBytes: 10_000 });
    const p = tr.producer();
    for (let i = 0; i < 50; i++) await p.send({ topic: 'bysize', value: Buffer.alloc(1000, i) });
    tr.enforceRetention(true);
    const d = await tr.describeTopic('bysize');
    assert.equal(d.partitions[0]!.endOffset, 50);
    assert.equal(d.partitions[0]!.startOffset, 40, 'keeps the newest 10 000 bytes');
    const got = await readN(tr.consumer({ groupId: 'g', topics: ['bysize'] }), 10);
    assert.deepEqual(
      got.map((r) => r.offset),
      [40, 41, 42, 43, 44, 45, 46, 47, 48, 49],
    );

    await tr.createTopic({ name: 'byage', partitions: 1, retentionMs: 60_000 });
    const now = Date.now();
    await p.send([
      { topic: 'byage', value: 'old', timestamp: now - 120_000 },
      { topic: 'byage', value: 'new', timestamp: now },
    ]);
    tr.enforceRetention(true);
    const age = await tr.describeTopic('byage');
    assert.equal(age.partitions[0]!.startOffset, 1);
    assert.equal(age.retentionMs, 60_000);
    await tr.close();
  });

  it('bounds the bytes one poll returns, but always returns at least one record', async () => {
    const tr = await openEmbeddedTransport({ path: fresh() });
    await tr.createTopic({ name: 'big', partitions: 1 });
    await tr
      .producer()
      .send(Array.from({ length: 6 }, () => ({ topic: 'big', value: Buffer.alloc(1024 * 1024) })));
    const c = tr.consumer({ groupId: 'g', topics: ['big'], maxPollBytes: 2.5 * 1024 * 1024 });
    await c.waitForAssignment();
    const sizes: number[] = [];
    for (let i = 0; i < 10 && sizes.reduce((a, b) => a + b, 0) < 6; i++)
      sizes.push((await c.poll({ timeoutMs: 200 })).length);
    assert.ok(
      sizes.every((n) => n <= 3),
      `polls returned ${sizes.join(', ')} records`,
    );
    const tiny = tr.consumer({ groupId: 'g2', topics: ['big'], maxPollBytes: 1 });
    await tiny.waitForAssignment();
    assert.equal((await tiny.poll({ timeoutMs: 500 })).length, 1);
    await tr.close();
  });

  it('refuses a corrupt database file with a clear error and leaves it untouched', async () => {
    const path = fresh();
    const garbage = Buffer.from('this is not a sqlite database, but somebody’s notes\n'.repeat(200));
    writeFileSync(path, garbage);
    await assert.rejects(openEmbeddedTransport({ path }), (err: unknown) => {
      assert.ok(isSluiceError(err, 'SLUICE_EMBEDDED_CORRUPT'), String(err));
      assert.match(err.message, /Move it aside/);
      return true;
    });
    assert.ok(readFileSync(path).equals(garbage), 'the file is unchanged');
  });

  it('fails a write on a locked database with a retryable error, losing nothing', async () => {
    const path = fresh();
    const tr = await openEmbeddedTransport({ path, busyTimeoutMs: 200 });
    await tr.createTopic({ name: 'locked', partitions: 1 });
    const p = tr.producer();
    await p.send({ topic: 'locked', value: 'before' });
    const other = new DatabaseSync(path);
    other.exec('BEGIN EXCLUSIVE');
    await assert.rejects(p.send({ topic: 'locked', value: 'during' }), (err: unknown) => {
      assert.ok(isSluiceError(err, 'SLUICE_EMBEDDED_LOCKED'), String(err));
      assert.equal(err.canRetry, true);
      return true;
    });
    other.exec('ROLLBACK');
    other.close();
    await p.send({ topic: 'locked', value: 'after' });
    const got = await readN(tr.consumer({ groupId: 'g', topics: ['locked'] }), 2);
    assert.deepEqual(
      got.map((r) => r.value!.toString()),
      ['before', 'after'],
    );
    await tr.close();
  });

  it('rejects bad topic names and partition counts with the rule to follow', async () => {
    const tr = await openEmbeddedTransport({ path: fresh() });
    await assert.rejects(tr.createTopic({ name: 'bad name' }), /Invalid topic name/);
    await assert.rejects(tr.createTopic({ name: 'ok', partitions: 0 }), /whole number from 1/);
    await tr.createTopic({ name: 'two', partitions: 2 });
    await assert.rejects(tr.producer().send({ topic: 'two', partition: 2, value: 'x' }), (e: unknown) =>
      isSluiceError(e, 'SLUICE_PARTITION_UNKNOWN'),
    );
    await tr.close();
  });
});
