/**
 * Kafka transport behaviour on a real broker (SLUICE_KAFKA_BOOTSTRAP), beyond the shared conformance suite:
 * Java-client partitioning, rebalances with commits in onRevoke, batch splitting of large records, aborted and
 * open transactions under both isolation levels, exactly-once hand-over and producer fencing.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { Producer as PlatformaticProducer } from '@platformatic/kafka';
import { isSluiceError } from '../../src/errors.ts';
import { openKafkaTransport } from '../../src/transport/kafka/index.ts';
import { partitionForKey } from '../../src/transport/partitioner.ts';
import type { ConsumedRecord, Consumer, ConsumerOptions, Transport } from '../../src/transport/types.ts';
import { eventually, readN } from '../conformance/suite.ts';
import { kafkaBootstrap } from './kafka-env.ts';

const bootstrapServers = kafkaBootstrap();
const ROOT = resolve(import.meta.dirname, '../..');
const name = (prefix: string): string => `sluice-it-${prefix}-${randomUUID().slice(0, 8)}`;
const str = (b: Buffer | null): string | null => (b === null ? null : b.toString('utf8'));

const transports: Transport[] = [];
after(async () => {
  for (const t of transports) await t.close().catch(() => undefined);
});

async function open(): Promise<Transport> {
  const t = await openKafkaTransport({ bootstrapServers, clientId: 'sluice-it' });
  transports.push(t);
  return t;
}

function consumer(t: Transport, o: ConsumerOptions): Consumer {
  return t.consumer({ sessionTimeoutMs: 3000, ...o });
}

async function rejectsWith(p: Promise<unknown>, code: string, fragment?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isSluiceError(err, code as never), `expected ${code}, got ${String(err)}`);
    if (fragment) assert.ok((err as Error).message.includes(fragment), (err as Error).message);
    return true;
  });
}

describe('Kafka transport on a real broker', { concurrency: 1 }, () => {
  it('keys land where the Java client puts them (murmur2), both ways', { timeout: 120_000 }, async () => {
    const t = await open();
    const topic = name('java-keys');
    await t.createTopic({ name: topic, partitions: 7 });
    const keys = ['alpha', 'beta', 'gamma', 'key-é', 'ключ', '', 'x'.repeat(33), '12345678'];
    // Kafka's own console producer (Java client, default partitioner) writes "key:value" lines
    execFileSync(resolve(ROOT, 'scripts/kafka.sh'), ['install', 'tools'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    execFileSync(
      'java',
      [
        '-Xmx256m',
        `-Dlog4j2.configurationFile=${resolve(ROOT, 'infra/kafka/tools/log4j2.properties')}`,
        '-cp',
        `${resolve(ROOT, 'infra/kafka/tools/lib')}/*`,
        'org.apache.kafka.tools.ConsoleProducer',
        '--bootstrap-server',
        bootstrapServers,
        '--topic',
        topic,
        '--property',
        'parse.key=true',
        '--property',
        'key.separator=\t',
      ],
      { input: `${keys.map((k) => `${k}\tjava`).join('\n')}\n`, stdio: ['pipe', 'ignore', 'inherit'] },
    );
    const fromJava = await readN(consumer(t, { groupId: name('g'), topics: [topic] }), keys.length);
    const javaPartition = new Map(fromJava.map((r) => [str(r.key), r.partition]));
    assert.equal(javaPartition.size, keys.length);
    for (const k of keys) {
      assert.equal(javaPartition.get(k), partitionForKey(Buffer.from(k), 7), `Java put key "${k}" elsewhere`);
    }
    const meta = await t.producer().send(keys.map((key) => ({ topic, key, value: 'sluice' })));
    keys.forEach((k, i) => {
      assert.equal(meta[i]!.partition, javaPartition.get(k), `sluice put key "${k}" elsewhere than Java`);
    });
  });

  it('produce and consume: metadata offsets match what is read', { timeout: 60_000 }, async () => {
    const t = await open();
    const topic = name('roundtrip');
    await t.createTopic({ name: topic, partitions: 3 });
    const p = t.producer();
    const meta = await p.send(
      Array.from({ length: 300 }, (_, i) => ({ topic, key: `k${i % 17}`, value: `v${i}` })),
    );
    const got = await readN(consumer(t, { groupId: name('g'), topics: [topic] }), 300);
    const byValue = new Map(got.map((r) => [str(r.value), r]));
    meta.forEach((m, i) => {
      const r = byValue.get(`v${i}`)!;
      assert.deepEqual([r.partition, r.offset], [m.partition, m.offset]);
    });
    await rejectsWith(
      p.send({ topic, value: 'x', partition: 3 }),
      'SLUICE_PARTITION_UNKNOWN',
      '3 partition(s)',
    );
    await p.close();
    await rejectsWith(p.send({ topic, value: 'x' }), 'SLUICE_CLOSED');
  });

  it(
    'commit() then a new transport resumes every partition after its commit',
    { timeout: 60_000 },
    async () => {
      const topic = name('resume3');
      const group = name('g');
      const t1 = await open();
      await t1.createTopic({ name: topic, partitions: 3 });
      await t1
        .producer()
        .send(Array.from({ length: 30 }, (_, i) => ({ topic, partition: i % 3, value: `${i}` })));
      const c1 = consumer(t1, { groupId: group, topics: [topic] });
      const first = await readN(c1, 12, 30_000);
      await c1.commit();
      const seenFirst = new Set(first.map((r) => `${r.partition}/${r.offset}`));
      await c1.close();
      await t1.close();
      const c2 = consumer(await open(), { groupId: group, topics: [topic] });
      const rest = await readN(c2, 18, 30_000);
      for (const r of rest)
        assert.ok(!seenFirst.has(`${r.partition}/${r.offset}`), `re-delivered ${r.partition}/${r.offset}`);
      assert.equal(new Set([...seenFirst, ...rest.map((r) => `${r.partition}/${r.offset}`)]).size, 30);
    },
  );

  it(
    'a member joining triggers onRevoke; its commit there hands over without duplicates',
    { timeout: 90_000 },
    async () => {
      const topic = name('revoke');
      const group = name('g');
      const t1 = await open();
      await t1.createTopic({ name: topic, partitions: 4 });
      await t1
        .producer()
        .send(Array.from({ length: 80 }, (_, i) => ({ topic, partition: i % 4, value: `${i}` })));
      const revokes: number[][] = [];
      const c1 = consumer(t1, {
        groupId: group,
        topics: [topic],
        maxPollRecords: 10,
        onRevoke: async (ps) => {
          revokes.push(ps.map((p) => p.partition));
          await c1.commit(); // still the old generation: accepted
        },
      });
      const before = await readN(c1, 30, 30_000);
      assert.equal(revokes.length, 0);
      const c2 = consumer(await open(), { groupId: group, topics: [topic], maxPollRecords: 10 });
      const after: Array<[string, ConsumedRecord]> = [];
      await eventually(async () => {
        for (const [who, c] of [
          ['c1', c1],
          ['c2', c2],
        ] as const) {
          for (const r of await c.poll({ timeoutMs: 100 })) after.push([who, r]);
        }
        return (
          c1.assignment().length === 2 && c2.assignment().length === 2 && before.length + after.length >= 80
        );
      }, 'the rebalance to finish and the group to read everything');
      assert.deepEqual(revokes[0]?.sort(), [0, 1, 2, 3], 'c1 revoked all its partitions (eager protocol)');
      const all = [...before, ...after.map(([, r]) => r)].map((r) => str(r.value));
      assert.equal(all.length, 80, 'no record delivered twice');
      assert.equal(new Set(all).size, 80, 'every record delivered');
    },
  );

  it(
    'records above maxBatchBytes go alone; batches split; offsets stay consecutive',
    { timeout: 60_000 },
    async () => {
      const t = await open();
      const topic = name('large');
      await t.createTopic({ name: topic, partitions: 2 });
      const big = Buffer.alloc(3 * 1024 * 1024, 7);
      const mid = Buffer.alloc(300 * 1024, 1);
      const records = [
        { topic, partition: 0, value: big },
        ...Array.from({ length: 10 }, (_, i) => ({ topic, partition: i % 2, key: `m${i}`, value: mid })),
      ];
      const meta = await t.producer().send(records);
      assert.deepEqual(
        meta.map((m) => [m.partition, m.offset]),
        [[0, 0], ...Array.from({ length: 10 }, (_, i) => [i % 2, i % 2 === 0 ? 1 + i / 2 : (i - 1) / 2])],
      );
      const got = await readN(consumer(t, { groupId: name('g'), topics: [topic] }), 11);
      const first = got.find((r) => r.partition === 0 && r.offset === 0)!;
      assert.ok(first.value!.equals(big));
      assert.ok(got.filter((r) => r !== first).every((r) => r.value!.equals(mid)));
    },
  );

  it('seek while paused takes effect on resume', { timeout: 60_000 }, async () => {
    const t = await open();
    const topic = name('pauseseek');
    await t.createTopic({ name: topic, partitions: 2 });
    await t
      .producer()
      .send(Array.from({ length: 12 }, (_, i) => ({ topic, partition: i % 2, value: `${i}` })));
    const c = consumer(t, { groupId: name('g'), topics: [topic] });
    await c.waitForAssignment();
    c.pause([{ topic, partition: 0 }]);
    const p1 = await readN(c, 6);
    assert.ok(p1.every((r) => r.partition === 1));
    c.seek({ topic, partition: 0, offset: 4 });
    assert.deepEqual(await c.poll({ timeoutMs: 300 }), [], 'still paused after the seek');
    c.resume([{ topic, partition: 0 }]);
    assert.deepEqual(
      (await readN(c, 2)).map((r) => [r.partition, r.offset]),
      [
        [0, 4],
        [0, 5],
      ],
    );
    assert.throws(
      () => c.pause([{ topic, partition: 7 }]),
      (e: unknown) => isSluiceError(e, 'SLUICE_NOT_ASSIGNED'),
    );
  });

  it('closing the consumer ends a for-await loop', { timeout: 60_000 }, async () => {
    const t = await open();
    const topic = name('iterclose');
    await t.createTopic({ name: topic, partitions: 1 });
    const c = consumer(t, { groupId: name('g'), topics: [topic] });
    await c.waitForAssignment();
    const loop = (async () => {
      let n = 0;
      for await (const _ of c) n++;
      return n;
    })();
    await t.producer().send({ topic, value: 'one' });
    await eventually(async () => (await c.committed([{ topic, partition: 0 }])) !== undefined, 'consumer up');
    await new Promise((r) => setTimeout(r, 300));
    await c.close();
    assert.equal(await loop, 1);
  });

  it('auto-commit commits what poll returned', { timeout: 60_000 }, async () => {
    const t = await open();
    const topic = name('autocommit');
    await t.createTopic({ name: topic, partitions: 1 });
    await t.producer().send(Array.from({ length: 10 }, (_, i) => ({ topic, value: `${i}` })));
    const c = consumer(t, { groupId: name('g'), topics: [topic], autoCommitIntervalMs: 200 });
    await readN(c, 10);
    await eventually(
      async () => (await c.committed([{ topic, partition: 0 }]))[0] === 10,
      'auto-commit of offset 10',
    );
  });

  it(
    'aborted transactions are invisible to read_committed, visible to read_uncommitted',
    { timeout: 90_000 },
    async () => {
      const t = await open();
      const topic = name('aborted');
      await t.createTopic({ name: topic, partitions: 1 });
      const raw = new PlatformaticProducer({
        clientId: 'sluice-it-raw',
        bootstrapBrokers: [bootstrapServers],
        idempotent: true,
        transactionalId: name('raw-tx'),
      });
      try {
        const inTx = async (value: string, commit: boolean): Promise<void> => {
          const tx = await raw.beginTransaction();
          await tx.send({ messages: [{ topic, partition: 0, value: Buffer.from(value) }] });
          await (commit ? tx.commit() : tx.abort());
        };
        await inTx('A-aborted', false);
        await inTx('B', true);
        await inTx('C-aborted', false);
        await inTx('D', true);
        const committed = consumer(t, { groupId: name('rc'), topics: [topic] });
        assert.deepEqual(
          (await readN(committed, 2)).map((r) => str(r.value)),
          ['B', 'D'],
        );
        assert.deepEqual(await committed.poll({ timeoutMs: 500 }), []);
        const uncommitted = consumer(t, {
          groupId: name('ru'),
          topics: [topic],
          isolation: 'read_uncommitted',
        });
        assert.deepEqual(
          (await readN(uncommitted, 4)).map((r) => str(r.value)),
          ['A-aborted', 'B', 'C-aborted', 'D'],
        );

        // an open transaction holds back read_committed readers at its first offset, later records included
        const open_ = await raw.beginTransaction();
        await open_.send({ messages: [{ topic, partition: 0, value: Buffer.from('E') }] });
        await t.producer().send({ topic, partition: 0, value: 'F' });
        assert.deepEqual(
          (await readN(uncommitted, 2)).map((r) => str(r.value)),
          ['E', 'F'],
        );
        assert.deepEqual(await committed.poll({ timeoutMs: 1000 }), [], 'nothing past the open transaction');
        await open_.commit();
        assert.deepEqual(
          (await readN(committed, 2)).map((r) => str(r.value)),
          ['E', 'F'],
        );
      } finally {
        await raw.close(true);
      }
    },
  );

  it(
    'consume-transform-produce with sendAndCommit: a successor continues exactly once',
    { timeout: 120_000 },
    async () => {
      const input = name('eos-in');
      const output = name('eos-out');
      const group = name('eos');
      const txId = name('eos-tx');
      const t = await open();
      await t.createTopic({ name: input, partitions: 2 });
      await t.createTopic({ name: output, partitions: 1 });
      await t
        .producer()
        .send(Array.from({ length: 40 }, (_, i) => ({ topic: input, partition: i % 2, value: `${i}` })));

      const work = async (tr: Transport, limit: number): Promise<number> => {
        const c = consumer(tr, { groupId: group, topics: [input], maxPollRecords: 5 });
        const p = tr.producer({ transactionalId: txId });
        let done = 0;
        while (done < limit) {
          const batch = await c.poll({ timeoutMs: 2000 });
          if (batch.length === 0) break;
          const last = new Map<number, number>();
          for (const r of batch) last.set(r.partition, r.offset + 1);
          await p.sendAndCommit(
            batch.map((r) => ({ topic: output, value: `out-${str(r.value)}` })),
            c,
            [...last].map(([partition, offset]) => ({ topic: input, partition, offset })),
          );
          done += batch.length;
        }
        // a crash: nothing more is committed, the buffered records are simply dropped
        await c.close();
        await p.close();
        return done;
      };
      const firstDone = await work(await open(), 15);
      assert.ok(firstDone >= 15 && firstDone < 40);
      await work(await open(), 1000);
      const out = await readN(consumer(t, { groupId: name('reader'), topics: [output] }), 40);
      const values = out.map((r) => str(r.value));
      assert.equal(new Set(values).size, 40, `each input exactly once in the output: ${values.join(',')}`);
      const check = consumer(t, { groupId: name('reader2'), topics: [output] });
      await readN(check, 40);
      assert.deepEqual(await check.poll({ timeoutMs: 500 }), [], 'no duplicates');
    },
  );

  it('a second producer with the same transactionalId fences the first', { timeout: 60_000 }, async () => {
    const t = await open();
    const input = name('fence-in');
    const output = name('fence-out');
    const txId = name('fence-tx');
    await t.createTopic({ name: input, partitions: 1 });
    await t.createTopic({ name: output, partitions: 1 });
    await t.producer().send(Array.from({ length: 3 }, (_, i) => ({ topic: input, value: `${i}` })));
    const c = consumer(t, { groupId: name('g'), topics: [input] });
    await readN(c, 3);
    const zombie = t.producer({ transactionalId: txId });
    await zombie.sendAndCommit([{ topic: output, value: 'z1' }], c, [
      { topic: input, partition: 0, offset: 1 },
    ]);
    const successor = (await open()).producer({ transactionalId: txId });
    await successor.sendAndCommit([{ topic: output, value: 's1' }], c, [
      { topic: input, partition: 0, offset: 2 },
    ]);
    await rejectsWith(
      zombie.sendAndCommit([{ topic: output, value: 'z2' }], c, [{ topic: input, partition: 0, offset: 3 }]),
      'SLUICE_DELIVERY_FAILED',
      'fenced',
    );
    assert.deepEqual(await c.committed([{ topic: input, partition: 0 }]), [2]);
    const out = await readN(consumer(t, { groupId: name('r'), topics: [output] }), 2);
    assert.deepEqual(
      out.map((r) => str(r.value)),
      ['z1', 's1'],
    );
  });

  it('topic retention settings are applied and reported', { timeout: 30_000 }, async () => {
    const t = await open();
    const topic = name('retention');
    await t.createTopic({ name: topic, partitions: 2, retentionMs: 3_600_000, retentionBytes: 50_000_000 });
    const d = await t.describeTopic(topic);
    assert.equal(d.retentionMs, 3_600_000);
    assert.equal(d.retentionBytes, 50_000_000);
    const plain = name('noretention');
    await t.createTopic({ name: plain });
    const p = await t.describeTopic(plain);
    assert.equal(p.partitions.length, 1, 'the default partition count');
    assert.equal(p.retentionMs, undefined, 'only settings made on the topic are reported');
  });
});
