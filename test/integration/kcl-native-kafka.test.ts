/**
 * KCL native mode on a real Kafka broker (SLUICE_KAFKA_BOOTSTRAP, see kafka-env.ts): the same KclWorker, through
 * the transport contract only. Kafka's group protocol revokes every partition on a rebalance (eager), so a worker
 * that gains a peer sees leaseLost on all its shards and re-initializes the ones it keeps, at their checkpoints.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type Checkpointer,
  isCheckpointError,
  type KclRecord,
  KclWorker,
  type KclWorkerOptions,
  type RecordProcessor,
} from '../../src/records/kcl/index.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import { openKafkaTransport } from '../../src/transport/kafka/index.ts';
import type { Transport } from '../../src/transport/types.ts';
import { eventually } from '../conformance/suite.ts';
import { kafkaBootstrap } from './kafka-env.ts';

const bootstrapServers = kafkaBootstrap();
const silent = createLogger({ level: 'silent' });
const unique = (name: string): string =>
  `kcl-${name}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;

class Probe implements RecordProcessor {
  readonly calls: string[] = [];
  readonly seen: string[] = [];
  initSequence: string | null | undefined;
  kept: Checkpointer | undefined;
  /** Checkpoint at this sequence number when it is delivered; without it, checkpoint every batch. */
  checkpointAt: string | undefined;
  initialize(input: { shardId: string; sequenceNumber: string | null }): void {
    this.initSequence = input.sequenceNumber;
    this.calls.push(`initialize ${input.sequenceNumber}`);
  }
  async processRecords(input: { records: KclRecord[]; checkpointer: Checkpointer }): Promise<void> {
    this.seen.push(...input.records.map((r) => r.sequenceNumber));
    this.kept = input.checkpointer;
    if (this.checkpointAt === undefined) await input.checkpointer.checkpoint();
    else if (input.records.some((r) => r.sequenceNumber === this.checkpointAt)) {
      await input.checkpointer.checkpoint(this.checkpointAt);
    }
  }
  leaseLost(): void {
    this.calls.push('leaseLost');
  }
  shardEnded(): void {
    this.calls.push('shardEnded');
  }
  shutdownRequested(): void {
    this.calls.push('shutdownRequested');
  }
}

async function setup(
  partitions: number,
  perPartition: number,
): Promise<{ transport: Transport; topic: string }> {
  const transport = await openKafkaTransport({ bootstrapServers, clientId: 'sluice-kcl-test' });
  const topic = unique('stream');
  await transport.createTopic({ name: topic, partitions });
  const producer = transport.producer();
  const records = [];
  for (let p = 0; p < partitions; p++) {
    for (let i = 0; i < perPartition; i++) records.push({ topic, partition: p, value: `p${p}-${i}` });
  }
  await producer.send(records);
  await producer.close();
  return { transport, topic };
}

function worker(
  transport: Transport,
  topic: string,
  group: string,
  factory: KclWorkerOptions['processorFactory'],
  extra: Partial<KclWorkerOptions> = {},
): KclWorker {
  return new KclWorker({
    transport,
    streamName: topic,
    applicationName: group,
    processorFactory: factory,
    pollTimeoutMs: 200,
    sessionTimeoutMs: 3000,
    logger: silent,
    ...extra,
  });
}

describe('KCL native mode on Kafka', { timeout: 180_000 }, () => {
  it('checkpoint then restart: the next worker initializes at the checkpoint and resumes after it', async () => {
    const { transport, topic } = await setup(1, 6);
    const group = unique('app');
    const first = new Probe();
    first.checkpointAt = '2';
    await worker(transport, topic, group, () => first, { stopAtEnd: true }).run();
    assert.deepEqual(first.seen, ['0', '1', '2', '3', '4', '5']);
    assert.equal(first.calls.at(-1), 'shutdownRequested');
    const second = new Probe();
    await worker(transport, topic, group, () => second, { stopAtEnd: true }).run();
    assert.equal(second.initSequence, '2');
    assert.deepEqual(second.seen, ['3', '4', '5']);
    const g = await transport.describeGroup(group);
    assert.equal(g.offsets.find((o) => o.partition === 0)?.committed, 6);
    await transport.close();
  });

  it('a second worker splits the shards; the revoked shards get leaseLost and are resumed at their checkpoints', async () => {
    const { transport, topic } = await setup(2, 3);
    const group = unique('app');
    const probesA: Probe[] = [];
    const a = worker(transport, topic, group, () => {
      const p = new Probe();
      probesA.push(p);
      return p;
    });
    const runA = a.run();
    await eventually(
      () => probesA.length === 2 && probesA.every((p) => p.seen.length === 3),
      'worker A read both shards',
    );
    const probesB: Probe[] = [];
    const b = worker(transport, topic, group, () => {
      const p = new Probe();
      probesB.push(p);
      return p;
    });
    const runB = b.run();
    await eventually(
      () => a.shards().length === 1 && b.shards().length === 1,
      'each worker holds one of the two shards',
    );
    const lost = probesA.filter((p) => p.calls.includes('leaseLost'));
    assert.ok(lost.length >= 1, 'the rebalance revoked at least one of A’s shards');
    for (const p of lost) {
      await assert.rejects(p.kept!.checkpoint(), (e: unknown) => isCheckpointError(e, 'ShutdownException'));
    }
    // everything was checkpointed before the hand-over: the new owners start after the last record
    for (const p of [...probesB, ...probesA.slice(2)]) {
      assert.equal(p.initSequence, '2');
      assert.deepEqual(p.seen, []);
    }
    await Promise.all([a.stop(), b.stop()]);
    await Promise.all([runA, runB]);
    await transport.close();
  });
});
