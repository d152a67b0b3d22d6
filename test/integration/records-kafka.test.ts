/**
 * Record processing on a real Kafka broker (SLUICE_KAFKA_BOOTSTRAP): the batching consumer and a strategy chain
 * commit exactly what they finished, so a restart neither loses nor repeats flushed work, and a rebalance
 * force-flushes before the partitions move.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import {
  BatchingConsumer,
  BatchStep,
  CommitOffsets,
  CommitPolicy,
  type Message,
  RunTask,
  StreamProcessor,
  type Worker,
} from '../../src/records/index.ts';
import { openKafkaTransport } from '../../src/transport/kafka/index.ts';
import type { ConsumedRecord, Transport } from '../../src/transport/types.ts';
import { eventually } from '../conformance/suite.ts';
import { kafkaBootstrap } from './kafka-env.ts';

const bootstrapServers = kafkaBootstrap();
const name = (prefix: string): string => `sluice-it-records-${prefix}-${randomUUID().slice(0, 8)}`;
const silent = pino({ level: 'silent' });

const transports: Transport[] = [];
after(async () => {
  for (const t of transports) await t.close().catch(() => undefined);
});

async function open(): Promise<Transport> {
  const t = await openKafkaTransport({ bootstrapServers, clientId: 'sluice-it-records' });
  transports.push(t);
  return t;
}

/** `count` records per partition; value `<partition>:<i>`. */
async function fill(t: Transport, topic: string, partitions: number, count: number, from = 0): Promise<void> {
  const p = t.producer();
  for (let part = 0; part < partitions; part++) {
    await p.send(
      Array.from({ length: count }, (_, i) => ({ topic, partition: part, value: `${part}:${from + i}` })),
    );
  }
  await p.close();
}

async function committed(
  t: Transport,
  group: string,
  topic: string,
  partitions: number,
): Promise<Array<number | undefined>> {
  const c = t.consumer({ groupId: group, topics: [topic], sessionTimeoutMs: 6000 });
  try {
    return await c.committed(Array.from({ length: partitions }, (_, partition) => ({ topic, partition })));
  } finally {
    await c.close();
  }
}

class Collector implements Worker<string> {
  processed: string[] = [];
  flushed: string[][] = [];
  processMessage(r: ConsumedRecord): string {
    const v = r.value!.toString();
    this.processed.push(v);
    return v;
  }
  flushBatch(batch: string[]): void {
    this.flushed.push([...batch]);
  }
  shutdown(): void {}
}

describe('record processing on Kafka', { concurrency: 1 }, () => {
  it(
    'batching consumer: a restart re-reads only what was not flushed (drop mode), then flush mode finishes',
    { timeout: 180_000 },
    async () => {
      const t = await open();
      const topic = name('batching');
      const group = name('g');
      await t.createTopic({ name: topic, partitions: 2 });
      await fill(t, topic, 2, 40);
      const make = (worker: Collector, shutdown: 'flush' | 'drop') =>
        new BatchingConsumer<string>({
          transport: t,
          groupId: group,
          topics: [topic],
          worker,
          maxBatchSize: 15,
          maxBatchTimeMs: 600_000,
          shutdown,
          pollTimeoutMs: 200,
          maxPollRecords: 7,
          logger: silent,
          consumer: { sessionTimeoutMs: 6000 },
        });
      const first = new Collector();
      const a = make(first, 'drop');
      const runningA = a.run();
      await eventually(
        () => first.flushed.length >= 2 && a.pendingMessages > 0,
        'two flushes and a pending batch',
        120_000,
      );
      a.stop();
      await runningA;
      const flushedA = first.flushed.flat();
      assert.ok(first.processed.length > flushedA.length, 'A dropped an unflushed batch');

      const second = new Collector();
      const b = make(second, 'flush');
      const runningB = b.run();
      await eventually(() => second.processed.length >= 80 - flushedA.length, 'B read the rest', 120_000);
      b.stop();
      await runningB;
      const flushedB = second.flushed.flat();
      assert.deepEqual(
        flushedB.filter((v) => flushedA.includes(v)),
        [],
        'nothing A flushed (and committed) was read again',
      );
      const all = [...flushedA, ...flushedB].sort();
      const want = [0, 1].flatMap((p) => Array.from({ length: 40 }, (_, i) => `${p}:${i}`)).sort();
      assert.deepEqual(all, want, 'every record flushed exactly once over both runs');
      assert.deepEqual(await committed(t, group, topic, 2), [40, 40]);
    },
  );

  it(
    'batching consumer: a rebalance force-flushes and commits before the partitions move',
    { timeout: 180_000 },
    async () => {
      const t = await open();
      const topic = name('revoke');
      const group = name('g');
      await t.createTopic({ name: topic, partitions: 2 });
      await fill(t, topic, 2, 10);
      const make = (worker: Collector) =>
        new BatchingConsumer<string>({
          transport: t,
          groupId: group,
          topics: [topic],
          worker,
          maxBatchSize: 1000,
          maxBatchTimeMs: 600_000,
          pollTimeoutMs: 200,
          logger: silent,
          consumer: { sessionTimeoutMs: 6000 },
        });
      const wa = new Collector();
      const a = make(wa);
      const runningA = a.run();
      await eventually(() => wa.processed.length === 20, 'A read both partitions', 120_000);
      assert.equal(wa.flushed.length, 0);
      const wb = new Collector();
      const b = make(wb);
      const runningB = b.run();
      await eventually(() => a.lastBatch?.reason === 'revoke', 'A flushed on revocation', 120_000);
      assert.equal(wa.flushed[0]!.length, 20);
      assert.deepEqual(await committed(t, group, topic, 2), [10, 10]);
      await eventually(() => b.consumer.assignment().length > 0, 'B got a partition', 120_000);
      a.stop();
      b.stop();
      await Promise.all([runningA, runningB]);
      assert.deepEqual(wb.processed, [], 'B re-read nothing');
    },
  );

  it(
    'strategy chain: commits only finished batches; a restart resumes after the last commit',
    { timeout: 180_000 },
    async () => {
      const t = await open();
      const topic = name('chain');
      const group = name('g');
      await t.createTopic({ name: topic, partitions: 2 });
      await fill(t, topic, 2, 25);
      const run = async (want: number): Promise<string[][]> => {
        const batches: string[][] = [];
        const p = new StreamProcessor({
          transport: t,
          groupId: group,
          topics: [topic],
          logger: silent,
          pollTimeoutMs: 200,
          commitPolicy: CommitPolicy.IMMEDIATE,
          consumer: { sessionTimeoutMs: 6000 },
          factory: {
            createWithPartitions: (commit) =>
              new RunTask<ConsumedRecord, string>(
                (m: Message<ConsumedRecord>) => m.payload.value!.toString(),
                new BatchStep<string>(
                  7,
                  600_000,
                  new RunTask<string[], string[]>((m) => {
                    batches.push(m.payload);
                    return m.payload;
                  }, new CommitOffsets(commit)),
                ),
              ),
          },
        });
        const running = p.run();
        await eventually(() => p.stats.messages >= want, `${want} records submitted`, 120_000);
        p.stop();
        await running;
        return batches;
      };
      const first = await run(50);
      assert.equal(first.flat().length, 50, 'the shutdown join flushed the partial batches');
      assert.deepEqual(await committed(t, group, topic, 2), [25, 25]);
      await fill(t, topic, 2, 5, 25);
      const second = await run(10);
      assert.deepEqual(
        second.flat().sort(),
        ['0:25', '0:26', '0:27', '0:28', '0:29', '1:25', '1:26', '1:27', '1:28', '1:29'],
        'only the new records',
      );
      assert.deepEqual(await committed(t, group, topic, 2), [30, 30]);
    },
  );
});
