/**
 * The transport conformance suite: every behaviour of the contract in src/transport/types.ts, run against a
 * transport factory. Every transport runs all of it. A behaviour a transport cannot have is listed in
 * `expectedFailures` with the reason: the case still runs, passes when it fails, and fails loudly (telling you to
 * remove the entry) as soon as it starts passing. Nothing is skipped.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { isSluiceError } from '../../src/errors.ts';
import { partitionForKey } from '../../src/transport/partitioner.ts';
import type { ConsumedRecord, Consumer, ConsumerOptions, Transport } from '../../src/transport/types.ts';

export interface ConformanceOptions {
  /** Case name → why this transport cannot pass it. */
  expectedFailures?: Record<string, string>;
  /** Session timeout for group tests (ms); small values make hand-over tests fast. Default 3000. */
  sessionTimeoutMs?: number;
  /** Per-case limit; a case that hangs fails when it runs out. Default 120 s. */
  caseTimeoutMs?: number;
}

export type TransportFactory = () => Promise<Transport>;

interface Ctx {
  t: TestContext;
  /** A fresh transport, closed after the case. */
  open(): Promise<Transport>;
  name(prefix: string): string;
  consumer(transport: Transport, options: Omit<ConsumerOptions, 'sessionTimeoutMs'>): Consumer;
}

type Case = (ctx: Ctx) => Promise<void>;

export const CASE_NAMES: string[] = [];
const cases: Array<[string, Case]> = [];
function conformanceCase(name: string, fn: Case): void {
  CASE_NAMES.push(name);
  cases.push([name, fn]);
}

/** Polls until `want` records arrived (or fails after `timeoutMs`, with what arrived so far). */
export async function readN(consumer: Consumer, want: number, timeoutMs = 60_000): Promise<ConsumedRecord[]> {
  const out: ConsumedRecord[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < want && Date.now() < deadline) {
    out.push(...(await consumer.poll({ timeoutMs: 500, maxRecords: want - out.length })));
  }
  assert.equal(out.length, want, `expected ${want} records, got ${out.length} before the time limit`);
  return out;
}

/** Retries `check` until it returns true (or fails with `message` after `timeoutMs`). */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  message: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting: ${message}`);
}

const str = (b: Buffer | null): string | null => (b === null ? null : b.toString('utf8'));

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isSluiceError(err), `expected a SluiceError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.ok(err.message.length > 40, 'the message should say what happened and how to fix it');
    return true;
  });
}

// ---- admin ---------------------------------------------------------------------------------------------------------

conformanceCase('topics: create, list, describe, delete', async ({ open, name }) => {
  const tr = await open();
  const topic = name('admin');
  await tr.createTopic({ name: topic, partitions: 3 });
  assert.ok((await tr.listTopics()).includes(topic));
  const d = await tr.describeTopic(topic);
  assert.equal(d.name, topic);
  assert.deepEqual(
    d.partitions.map((p) => [p.partition, p.startOffset, p.endOffset]),
    [
      [0, 0, 0],
      [1, 0, 0],
      [2, 0, 0],
    ],
  );
  await expectCode(tr.createTopic({ name: topic, partitions: 3 }), 'SLUICE_TOPIC_EXISTS');
  await tr.createTopic({ name: topic, partitions: 3 }, { ifNotExists: true });
  await tr.deleteTopic(topic);
  await eventually(async () => !(await tr.listTopics()).includes(topic), 'deleted topic to disappear');
  await expectCode(tr.describeTopic(topic), 'SLUICE_TOPIC_UNKNOWN');
});

conformanceCase('produce: unknown topic fails clearly, or is created when asked', async ({ open, name }) => {
  const tr = await open();
  const topic = name('unknown');
  await expectCode(tr.producer().send({ topic, value: 'x' }), 'SLUICE_TOPIC_UNKNOWN');
  const meta = await tr.producer({ autoCreateTopics: true }).send({ topic, value: 'x' });
  assert.equal(meta[0]!.topic, topic);
  assert.equal(meta[0]!.offset, 0);
  assert.ok((await tr.listTopics()).includes(topic));
});

conformanceCase(
  'produce: acknowledgements carry partition and consecutive offsets',
  async ({ open, name }) => {
    const tr = await open();
    const topic = name('ack');
    await tr.createTopic({ name: topic, partitions: 2 });
    const p = tr.producer();
    const meta = await p.send(
      Array.from({ length: 10 }, (_, i) => ({ topic, value: `v${i}`, partition: i % 2 })),
    );
    assert.deepEqual(
      meta.map((m) => [m.partition, m.offset]),
      Array.from({ length: 10 }, (_, i) => [i % 2, Math.floor(i / 2)]),
    );
    const concurrent = await Promise.all(
      Array.from({ length: 20 }, (_, i) => p.send({ topic, value: `c${i}`, partition: 0 })),
    );
    assert.deepEqual(
      concurrent.map((m) => m[0]!.offset).sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => 5 + i),
    );
    const d = await tr.describeTopic(topic);
    assert.deepEqual(
      d.partitions.map((x) => x.endOffset),
      [25, 5],
    );
  },
);

// ---- ordering, keys, bytes -----------------------------------------------------------------------------------------

conformanceCase('ordering per partition', async ({ open, name, consumer }) => {
  const tr = await open();
  const topic = name('order');
  await tr.createTopic({ name: topic, partitions: 3 });
  const p = tr.producer();
  for (let batch = 0; batch < 6; batch++) {
    await p.send(
      Array.from({ length: 50 }, (_, i) => ({
        topic,
        partition: (batch * 50 + i) % 3,
        value: `${batch * 50 + i}`,
      })),
    );
  }
  const c = consumer(tr, { groupId: name('g'), topics: [topic] });
  const got = await readN(c, 300);
  for (let part = 0; part < 3; part++) {
    const mine = got.filter((r) => r.partition === part);
    assert.equal(mine.length, 100);
    assert.deepEqual(
      mine.map((r) => r.offset),
      Array.from({ length: 100 }, (_, i) => i),
    );
    const values = mine.map((r) => Number(str(r.value)));
    assert.deepEqual(
      values,
      [...values].sort((a, b) => a - b),
      `partition ${part} out of order`,
    );
  }
});

conformanceCase('key → partition is Kafka murmur2 and stable', async ({ open, name, consumer }) => {
  const tr = await open();
  const topic = name('keys');
  await tr.createTopic({ name: topic, partitions: 5 });
  const keys = Array.from({ length: 40 }, (_, i) => `key-${i}-${'x'.repeat(i % 7)}`);
  const p = tr.producer();
  const meta = await p.send(
    keys.flatMap((key) => [0, 1, 2].map((n) => ({ topic, key, value: `${key}#${n}` }))),
  );
  for (let i = 0; i < meta.length; i++) {
    const key = keys[Math.floor(i / 3)]!;
    assert.equal(meta[i]!.partition, partitionForKey(Buffer.from(key), 5), `key ${key}`);
  }
  const got = await readN(consumer(tr, { groupId: name('g'), topics: [topic] }), keys.length * 3);
  for (const r of got) {
    assert.equal(r.partition, partitionForKey(r.key!, 5));
    assert.ok(str(r.value)!.startsWith(`${str(r.key)}#`));
  }
  // same key, same order within its partition
  for (const key of keys) {
    const seq = got.filter((r) => str(r.key) === key).map((r) => str(r.value));
    assert.deepEqual(
      seq,
      [0, 1, 2].map((n) => `${key}#${n}`),
    );
  }
});

conformanceCase(
  'headers, binary keys and values, tombstones round-trip',
  async ({ open, name, consumer }) => {
    const tr = await open();
    const topic = name('bytes');
    await tr.createTopic({ name: topic, partitions: 1 });
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await tr.producer().send([
      {
        topic,
        key: Buffer.from([0, 255, 1]),
        value: all,
        headers: { bin: Buffer.from([0, 1, 2, 255]), text: 'héllo' },
      },
      { topic, key: 'k', value: null },
      { topic, key: null, value: Buffer.alloc(0) },
    ]);
    const [a, b, c] = await readN(consumer(tr, { groupId: name('g'), topics: [topic] }), 3);
    assert.deepEqual(a!.key, Buffer.from([0, 255, 1]));
    assert.deepEqual(a!.value, all);
    assert.deepEqual(a!.headers.bin, Buffer.from([0, 1, 2, 255]));
    assert.equal(a!.headers.text!.toString('utf8'), 'héllo');
    assert.ok(a!.timestamp > 0);
    assert.equal(str(b!.key), 'k');
    assert.equal(b!.value, null);
    assert.equal(c!.key, null);
    assert.equal(c!.value!.length, 0);
  },
);

conformanceCase('large values (1 MiB) round-trip', async ({ open, name, consumer }) => {
  const tr = await open();
  const topic = name('large');
  await tr.createTopic({ name: topic, partitions: 1 });
  const big = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
  await tr.producer().send([
    { topic, key: 'big-1', value: big },
    { topic, key: 'big-2', value: big.subarray(7) },
  ]);
  const [a, b] = await readN(consumer(tr, { groupId: name('g'), topics: [topic] }), 2);
  assert.ok(a!.value!.equals(big));
  assert.ok(b!.value!.equals(big.subarray(7)));
});

// ---- offsets and groups --------------------------------------------------------------------------------------------

conformanceCase(
  'commit, then restart, resumes exactly after the commit',
  async ({ open, name, consumer }) => {
    const topic = name('resume');
    const group = name('g');
    const tr1 = await open();
    await tr1.createTopic({ name: topic, partitions: 1 });
    await tr1.producer().send(Array.from({ length: 10 }, (_, i) => ({ topic, value: `${i}` })));
    const c1 = consumer(tr1, { groupId: group, topics: [topic] });
    const first = await readN(c1, 10);
    assert.deepEqual(
      first.map((r) => r.offset),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    await c1.commit([{ topic, partition: 0, offset: 4 }]);
    await c1.close();
    const tr2 = await open();
    const c2 = consumer(tr2, { groupId: group, topics: [topic] });
    const again = await readN(c2, 6);
    assert.deepEqual(
      again.map((r) => str(r.value)),
      ['4', '5', '6', '7', '8', '9'],
    );
    assert.deepEqual(await c2.committed([{ topic, partition: 0 }]), [4]);
  },
);

conformanceCase('commit() without offsets commits what poll returned', async ({ open, name, consumer }) => {
  const topic = name('autopos');
  const group = name('g');
  const tr = await open();
  await tr.createTopic({ name: topic, partitions: 2 });
  await tr.producer().send(Array.from({ length: 8 }, (_, i) => ({ topic, value: `${i}`, partition: i % 2 })));
  const c1 = consumer(tr, { groupId: group, topics: [topic] });
  await readN(c1, 8);
  await c1.commit();
  assert.deepEqual(
    await c1.committed([
      { topic, partition: 0 },
      { topic, partition: 1 },
    ]),
    [4, 4],
  );
  await c1.close();
  const g = await tr.describeGroup(group);
  assert.deepEqual(
    g.offsets.filter((o) => o.topic === topic).map((o) => [o.partition, o.committed, o.endOffset, o.lag]),
    [
      [0, 4, 4, 0],
      [1, 4, 4, 0],
    ],
  );
  assert.ok((await tr.listGroups()).includes(group));
});

conformanceCase(
  'start positions: earliest, latest, explicit offsets, resetTo',
  async ({ open, name, consumer }) => {
    const tr = await open();
    const topic = name('start');
    await tr.createTopic({ name: topic, partitions: 1 });
    await tr.producer().send(Array.from({ length: 5 }, (_, i) => ({ topic, value: `${i}` })));
    const committedGroup = name('g');
    const c0 = consumer(tr, { groupId: committedGroup, topics: [topic] });
    await readN(c0, 5);
    await c0.commit([{ topic, partition: 0, offset: 3 }]);
    await c0.close();

    const early = consumer(tr, { groupId: committedGroup, topics: [topic], start: 'earliest' });
    assert.equal(str((await readN(early, 5))[0]!.value), '0', 'earliest ignores the commit');
    await early.close();

    const explicit = consumer(tr, {
      groupId: committedGroup,
      topics: [topic],
      start: { offsets: [{ topic, partition: 0, offset: 1 }] },
    });
    assert.equal(str((await readN(explicit, 4))[0]!.value), '1');
    await explicit.close();

    const late = consumer(tr, { groupId: name('g'), topics: [topic], start: 'latest' });
    await late.waitForAssignment();
    assert.deepEqual(await late.poll({ timeoutMs: 300 }), []);
    await tr.producer().send({ topic, value: 'after' });
    assert.equal(str((await readN(late, 1))[0]!.value), 'after');
    await late.close();

    const resetLatest = consumer(tr, { groupId: name('g'), topics: [topic], resetTo: 'latest' });
    await resetLatest.waitForAssignment();
    await tr.producer().send({ topic, value: 'after2' });
    assert.equal(str((await readN(resetLatest, 1))[0]!.value), 'after2');
  },
);

conformanceCase('seek moves the position of an assigned partition', async ({ open, name, consumer }) => {
  const tr = await open();
  const topic = name('seek');
  await tr.createTopic({ name: topic, partitions: 1 });
  await tr.producer().send(Array.from({ length: 6 }, (_, i) => ({ topic, value: `${i}` })));
  const c = consumer(tr, { groupId: name('g'), topics: [topic] });
  await readN(c, 6);
  c.seek({ topic, partition: 0, offset: 2 });
  assert.deepEqual(
    (await readN(c, 4)).map((r) => str(r.value)),
    ['2', '3', '4', '5'],
  );
  assert.throws(
    () => c.seek({ topic, partition: 9, offset: 0 }),
    (e: unknown) => isSluiceError(e, 'SLUICE_NOT_ASSIGNED'),
  );
});

conformanceCase('two groups each see everything', async ({ open, name, consumer }) => {
  const tr = await open();
  const topic = name('fanout');
  await tr.createTopic({ name: topic, partitions: 2 });
  await tr.producer().send(Array.from({ length: 20 }, (_, i) => ({ topic, key: `k${i}`, value: `${i}` })));
  const a = await readN(consumer(tr, { groupId: name('ga'), topics: [topic] }), 20);
  const b = await readN(consumer(await open(), { groupId: name('gb'), topics: [topic] }), 20);
  const norm = (rs: ConsumedRecord[]): string[] => rs.map((r) => str(r.value)!).sort();
  assert.deepEqual(norm(a), norm(b));
  assert.equal(new Set(norm(a)).size, 20);
});

conformanceCase(
  'one group: members split partitions; a leaving member hands its partitions over',
  async (ctx) => {
    const { open, name, consumer } = ctx;
    const topic = name('split');
    const group = name('g');
    const tr1 = await open();
    await tr1.createTopic({ name: topic, partitions: 4 });
    const assigned: string[] = [];
    const revoked: string[] = [];
    const c1 = consumer(tr1, {
      groupId: group,
      topics: [topic],
      onAssign: (ps) => {
        assigned.push(...ps.map((p) => `${p.partition}`));
      },
      onRevoke: (ps) => {
        revoked.push(...ps.map((p) => `${p.partition}`));
      },
    });
    const c2 = consumer(await open(), { groupId: group, topics: [topic] });
    await Promise.all([c1.waitForAssignment(), c2.waitForAssignment()]);
    // both must be polled for group protocols that only make progress while members poll
    await eventually(async () => {
      await Promise.all([c1.poll({ timeoutMs: 100 }), c2.poll({ timeoutMs: 100 })]);
      const a = c1.assignment().map((p) => p.partition);
      const b = c2.assignment().map((p) => p.partition);
      return a.length > 0 && b.length > 0 && a.length + b.length === 4 && new Set([...a, ...b]).size === 4;
    }, 'both members to hold disjoint partitions covering the topic');
    assert.ok(assigned.length > 0, 'onAssign was called');

    const p = tr1.producer();
    await p.send(Array.from({ length: 40 }, (_, i) => ({ topic, partition: i % 4, value: `${i}` })));
    const seen = new Map<string, string>();
    await eventually(async () => {
      for (const [who, c] of [
        ['c1', c1],
        ['c2', c2],
      ] as const) {
        for (const r of await c.poll({ timeoutMs: 100 })) {
          assert.ok(!seen.has(str(r.value)!), `record ${str(r.value)} delivered twice within one group`);
          seen.set(str(r.value)!, who);
        }
      }
      return seen.size === 40;
    }, 'the group to read all 40 records');
    await c1.commit();
    await c2.commit();

    await c1.close();
    assert.ok(revoked.length > 0, 'onRevoke was called on close');
    await eventually(async () => {
      await c2.poll({ timeoutMs: 100 });
      return c2.assignment().length === 4;
    }, 'the remaining member to take over every partition');
    await p.send(Array.from({ length: 8 }, (_, i) => ({ topic, partition: i % 4, value: `late-${i}` })));
    const late = await readN(c2, 8);
    assert.deepEqual(new Set(late.map((r) => r.partition)), new Set([0, 1, 2, 3]));
    assert.ok(
      late.every((r) => str(r.value)!.startsWith('late-')),
      'committed records are not re-delivered',
    );
  },
);

conformanceCase(
  'assign: static partitions, no rebalancing, offsets in the group',
  async ({ open, name, consumer }) => {
    const tr = await open();
    const topic = name('assign');
    await tr.createTopic({ name: topic, partitions: 3 });
    await tr
      .producer()
      .send(Array.from({ length: 9 }, (_, i) => ({ topic, partition: i % 3, value: `${i}` })));
    const group = name('g');
    const one = consumer(tr, { groupId: group, topics: [topic], assign: [{ topic, partition: 1 }] });
    const two = consumer(tr, { groupId: group, topics: [topic], assign: [{ topic, partition: 2 }] });
    assert.deepEqual(await one.waitForAssignment(), [{ topic, partition: 1 }]);
    assert.deepEqual(await two.waitForAssignment(), [{ topic, partition: 2 }]);
    const fromOne = await readN(one, 3);
    const fromTwo = await readN(two, 3);
    assert.deepEqual(
      fromOne.map((r) => [r.partition, r.value?.toString()]),
      [
        [1, '1'],
        [1, '4'],
        [1, '7'],
      ],
      'the first consumer reads exactly partition 1',
    );
    assert.deepEqual(
      fromTwo.map((r) => [r.partition, r.value?.toString()]),
      [
        [2, '2'],
        [2, '5'],
        [2, '8'],
      ],
      'the second consumer of the same group keeps partition 2: no rebalancing between static consumers',
    );
    assert.deepEqual(one.assignment(), [{ topic, partition: 1 }]);
    await one.commit([{ topic, partition: 1, offset: 2 }]);
    await one.close();
    const again = consumer(tr, { groupId: group, topics: [topic], assign: [{ topic, partition: 1 }] });
    assert.deepEqual(await again.committed([{ topic, partition: 1 }]), [2]);
    const resumed = await readN(again, 1);
    assert.deepEqual(
      resumed.map((r) => [r.partition, r.offset, r.value?.toString()]),
      [[1, 2, '7']],
      'a new static consumer of the group starts at the committed offset',
    );
    const bad = consumer(tr, { groupId: group, topics: [topic], assign: [{ topic, partition: 3 }] });
    await assert.rejects(
      async () => {
        for (let i = 0; i < 20; i++) await bad.poll({ timeoutMs: 200 });
      },
      (err: unknown) =>
        isSluiceError(err) && err.code === 'SLUICE_CONFIG_INVALID' && /partitions 0-2/.test(err.message),
    );
  },
);

conformanceCase(
  'maxPollBytes caps what one poll returns (at least one record)',
  async ({ open, name, consumer }) => {
    const tr = await open();
    const topic = name('pollbytes');
    await tr.createTopic({ name: topic, partitions: 1 });
    const value = Buffer.alloc(10 * 1024, 7);
    await tr.producer().send(Array.from({ length: 10 }, () => ({ topic, partition: 0, value })));
    // a soft cap: a poll may pass it by the one record that crosses it, never by more
    for (const [cap, most] of [
      [25_000, 3],
      [1, 1],
    ] as const) {
      const c = consumer(tr, { groupId: name('g'), topics: [topic], maxPollBytes: cap });
      let got = 0;
      const deadline = Date.now() + 60_000;
      while (got < 10 && Date.now() < deadline) {
        const batch = await c.poll({ timeoutMs: 500 });
        assert.ok(
          batch.length <= most,
          `maxPollBytes ${cap}: a poll returned ${batch.length} records of 10 KiB`,
        );
        got += batch.length;
      }
      assert.equal(got, 10, `maxPollBytes ${cap}: every record arrives, one poll at a time`);
      await c.close();
    }
  },
);

conformanceCase(
  'valueBuffers: values taken from the caller’s pool and given back never change records handed out later',
  async ({ open, name, consumer }) => {
    const tr = await open();
    const topic = name('valuebuffers');
    await tr.createTopic({ name: topic, partitions: 1 });
    const values = Array.from({ length: 12 }, (_, i) => Buffer.alloc(40 * 1024, `value ${i};`));
    await tr.producer().send(values.map((value) => ({ topic, partition: 0, value })));
    // a pool that hands out buffers again once given back (the embedded broker takes from it; others may not)
    const free: Buffer[] = [];
    const pool = {
      taken: 0,
      take(size: number): Buffer {
        this.taken++;
        const b = free.pop();
        return b !== undefined && b.length === size ? b : Buffer.alloc(size);
      },
    };
    const c = consumer(tr, {
      groupId: name('g'),
      topics: [topic],
      valueBuffers: pool,
      maxPollBytes: 100_000,
    });
    let got = 0;
    const deadline = Date.now() + 60_000;
    while (got < values.length && Date.now() < deadline) {
      for (const r of await c.poll({ timeoutMs: 500 })) {
        assert.ok(r.value!.equals(values[r.offset]!), `record ${r.offset} reads back as written`);
        free.push(r.value!); // given back: the next take may hand this memory out again
        got++;
      }
    }
    assert.equal(got, values.length);
    assert.ok(
      pool.taken === 0 || pool.taken === values.length,
      `took ${pool.taken} buffers for ${values.length} values`,
    );
  },
);

conformanceCase('pause and resume one partition', async ({ open, name, consumer }) => {
  const tr = await open();
  const topic = name('pause');
  await tr.createTopic({ name: topic, partitions: 2 });
  const c = consumer(tr, { groupId: name('g'), topics: [topic] });
  await c.waitForAssignment();
  c.pause([{ topic, partition: 0 }]);
  assert.deepEqual(c.paused(), [{ topic, partition: 0 }]);
  await tr
    .producer()
    .send(Array.from({ length: 10 }, (_, i) => ({ topic, partition: i % 2, value: `${i}` })));
  const first = await readN(c, 5);
  assert.ok(
    first.every((r) => r.partition === 1),
    'no records of the paused partition',
  );
  assert.deepEqual(await c.poll({ timeoutMs: 500 }), [], 'nothing else while partition 0 is paused');
  c.resume([{ topic, partition: 0 }]);
  assert.deepEqual(c.paused(), []);
  const rest = await readN(c, 5);
  assert.deepEqual(
    rest.map((r) => [r.partition, r.offset]),
    [0, 1, 2, 3, 4].map((o) => [0, o]),
  );
});

conformanceCase('close during a poll wakes the poll with no records', async ({ open, name, consumer }) => {
  const tr = await open();
  const topic = name('closepoll');
  await tr.createTopic({ name: topic, partitions: 1 });
  const c = consumer(tr, { groupId: name('g'), topics: [topic] });
  await c.waitForAssignment();
  // a poll far longer than the case limit: only close() can end it in time
  const pending = c.poll({ timeoutMs: 10 * 60_000 });
  await new Promise((r) => setTimeout(r, 200));
  await c.close();
  assert.deepEqual(await pending, []);
  await assert.rejects(c.commit(), (e: unknown) => isSluiceError(e, 'SLUICE_CLOSED'));
});

conformanceCase(
  'async iteration yields records in order and leaves the rest after a break',
  async ({ open, name, consumer }) => {
    const tr = await open();
    const topic = name('iter');
    await tr.createTopic({ name: topic, partitions: 1 });
    await tr.producer().send(Array.from({ length: 10 }, (_, i) => ({ topic, value: `${i}` })));
    const c = consumer(tr, { groupId: name('g'), topics: [topic] });
    const got: string[] = [];
    for await (const r of c) {
      got.push(str(r.value)!);
      if (got.length === 4) break;
    }
    assert.deepEqual(got, ['0', '1', '2', '3']);
    await c.commit();
    assert.deepEqual(await c.committed([{ topic, partition: 0 }]), [4]);
    assert.deepEqual(
      (await readN(c, 6)).map((r) => str(r.value)),
      ['4', '5', '6', '7', '8', '9'],
    );
  },
);

conformanceCase(
  'subscribing to an unknown topic fails clearly, or creates it when asked',
  async ({ open, name, consumer }) => {
    const tr = await open();
    const c = consumer(tr, { groupId: name('g'), topics: [name('nope')] });
    await expectCode(c.poll({ timeoutMs: 2000 }), 'SLUICE_TOPIC_UNKNOWN');
    await c.close();
    const topic = name('made');
    const c2 = consumer(tr, { groupId: name('g'), topics: [topic], autoCreateTopics: true });
    await c2.waitForAssignment();
    assert.ok((await tr.listTopics()).includes(topic));
  },
);

conformanceCase(
  'sendAndCommit: output records and input offsets commit atomically',
  async ({ open, name, consumer }) => {
    const tr = await open();
    const input = name('in');
    const output = name('out');
    const group = name('g');
    await tr.createTopic({ name: input, partitions: 1 });
    await tr.createTopic({ name: output, partitions: 1 });
    await tr.producer().send(Array.from({ length: 5 }, (_, i) => ({ topic: input, value: `${i}` })));
    const c = consumer(tr, { groupId: group, topics: [input] });
    const recs = await readN(c, 5);
    const txp = tr.producer({ transactionalId: name('tx') });
    await txp.sendAndCommit(
      recs.slice(0, 3).map((r) => ({ topic: output, value: `out-${str(r.value)}` })),
      c,
      [{ topic: input, partition: 0, offset: 3 }],
    );
    assert.deepEqual(await c.committed([{ topic: input, partition: 0 }]), [3]);
    const out = await readN(consumer(tr, { groupId: name('reader'), topics: [output] }), 3);
    assert.deepEqual(
      out.map((r) => str(r.value)),
      ['out-0', 'out-1', 'out-2'],
    );
    // a consumer that does not own the partition cannot commit it, and nothing it sent becomes visible
    const outsider = consumer(await open(), { groupId: name('other'), topics: [output] });
    await outsider.waitForAssignment();
    await assert.rejects(
      txp.sendAndCommit([{ topic: output, value: 'zombie' }], outsider, [
        { topic: input, partition: 0, offset: 5 },
      ]),
    );
    const check = consumer(tr, { groupId: name('reader'), topics: [output] });
    assert.deepEqual(
      (await readN(check, 3)).map((r) => str(r.value)),
      ['out-0', 'out-1', 'out-2'],
    );
    assert.deepEqual(
      await check.poll({ timeoutMs: 500 }),
      [],
      'the rejected transaction produced nothing visible',
    );
  },
);

export function runConformance(
  transportName: string,
  factory: TransportFactory,
  options: ConformanceOptions = {},
): void {
  const expected = options.expectedFailures ?? {};
  for (const key of Object.keys(expected)) {
    if (!CASE_NAMES.includes(key)) throw new Error(`expectedFailures names an unknown case: ${key}`);
  }
  describe(`transport conformance: ${transportName}`, { concurrency: 1 }, () => {
    for (const [caseName, fn] of cases) {
      it(caseName, { timeout: options.caseTimeoutMs ?? 120_000 }, async (t) => {
        const opened: Transport[] = [];
        const consumers: Consumer[] = [];
        const ctx: Ctx = {
          t,
          async open() {
            const tr = await factory();
            opened.push(tr);
            return tr;
          },
          name: (prefix) => `sluice-${prefix}-${randomUUID().slice(0, 8)}`,
          consumer(tr, o) {
            const c = tr.consumer({ sessionTimeoutMs: options.sessionTimeoutMs ?? 3000, ...o });
            consumers.push(c);
            return c;
          },
        };
        const reason = expected[caseName];
        let failure: unknown;
        try {
          await fn(ctx);
        } catch (err) {
          failure = err;
        } finally {
          for (const c of consumers) await c.close().catch(() => undefined);
          for (const tr of opened) await tr.close().catch(() => undefined);
        }
        if (reason === undefined) {
          if (failure !== undefined) throw failure;
        } else if (failure === undefined) {
          assert.fail(
            `expected failure now passes on ${transportName}: remove it from expectedFailures (${reason})`,
          );
        } else {
          t.diagnostic(`expected failure on ${transportName}: ${reason} (failed with: ${String(failure)})`);
        }
      });
    }
  });
}
