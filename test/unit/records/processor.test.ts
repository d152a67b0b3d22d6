import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BatchStep,
  type CommitFn,
  CommitOffsets,
  CommitPolicy,
  InvalidMessage,
  type Message,
  type MessageOf,
  MessageRejected,
  MockedClock,
  type ProcessingStrategy,
  type ProcessingStrategyFactory,
  RunTask,
  StreamProcessor,
  type StreamProcessorOptions,
} from '../../../src/records/index.ts';
import type { ConsumedRecord, TopicPartition, Transport } from '../../../src/transport/types.ts';
import { eventually, readN } from '../../conformance/suite.ts';
import { embedded, silent } from './helpers.ts';

async function numbers(tr: Transport, topic: string, count: number, partitions = 1): Promise<void> {
  await tr.createTopic({ name: topic, partitions });
  const p = tr.producer();
  for (let part = 0; part < partitions; part++) {
    await p.send(
      Array.from({ length: count }, (_, i) => ({ topic, partition: part, key: `k${i}`, value: String(i) })),
    );
  }
  await p.close();
}

async function committed(tr: Transport, group: string, topic: string): Promise<Array<number | undefined>> {
  const { partitions } = await tr.describeTopic(topic);
  const c = tr.consumer({ groupId: group, topics: [topic] });
  try {
    return await c.committed(partitions.map((p) => ({ topic, partition: p.partition })));
  } finally {
    await c.close();
  }
}

const value = (m: Message<ConsumedRecord>): number => Number(m.payload.value!.toString());

/** RunTask(parse) → BatchStep(size) → RunTask(record batch) → CommitOffsets. */
function batchingFactory(
  size: number,
  batches: number[][],
): ProcessingStrategyFactory & { chains: TopicPartition[][] } {
  const chains: TopicPartition[][] = [];
  return {
    chains,
    createWithPartitions(commit: CommitFn, partitions: TopicPartition[]) {
      chains.push(partitions);
      return new RunTask<ConsumedRecord, number>(
        value,
        new BatchStep<number>(
          size,
          60_000,
          new RunTask<number[], number[]>((m) => {
            batches.push(m.payload);
            return m.payload;
          }, new CommitOffsets(commit)),
        ),
      );
    },
  };
}

function processor(
  tr: Transport,
  extra: Partial<StreamProcessorOptions> & Pick<StreamProcessorOptions, 'factory'>,
) {
  return new StreamProcessor({
    transport: tr,
    groupId: 'g',
    topics: ['t'],
    logger: silent,
    pollTimeoutMs: 20,
    commitPolicy: CommitPolicy.IMMEDIATE,
    ...extra,
  });
}

/** A terminal step that rejects while `open` is false. */
class Gate implements ProcessingStrategy<ConsumedRecord> {
  open = false;
  got: number[] = [];
  constructor(private readonly commit: CommitFn) {}
  submit(m: MessageOf<ConsumedRecord>): void {
    if (!this.open) throw new MessageRejected();
    this.got.push(value(m as Message<ConsumedRecord>));
    this.commit(m.committable);
  }
  poll(): void {}
  close(): void {}
  async join(): Promise<void> {
    this.commit(new Map(), true);
  }
  terminate(): void {}
}

describe('StreamProcessor', () => {
  it('runs a chain per assignment; offsets move only after the batch step passed the messages on', async (t) => {
    const tr = await embedded(t);
    await numbers(tr, 't', 7);
    const batches: number[][] = [];
    const factory = batchingFactory(3, batches);
    const p = processor(tr, { factory });
    while (p.stats.messages < 7) await p.runOnce();
    assert.deepEqual(batches, [
      [0, 1, 2],
      [3, 4, 5],
    ]);
    assert.deepEqual(await committed(tr, 'g', 't'), [6], 'message 6 is still in the batch: not committed');
    await p.shutdown();
    assert.deepEqual(batches.at(-1), [6], 'join force-flushed the last batch');
    assert.deepEqual(await committed(tr, 'g', 't'), [7], 'the final commit happened');
    assert.equal(factory.chains.length, 1);
    // a restart resumes after the commit
    const again: number[][] = [];
    const p2 = processor(tr, { factory: batchingFactory(3, again) });
    await p2.runOnce();
    await p2.shutdown();
    assert.deepEqual(again, []);
  });

  it('passes on a batch that the last submit of an iteration filled, within the same iteration', async (t) => {
    const tr = await embedded(t);
    await numbers(tr, 't', 3);
    const batches: number[][] = [];
    const p = processor(tr, { factory: batchingFactory(3, batches) });
    await p.runOnce();
    assert.equal(p.stats.messages, 3);
    assert.deepEqual(batches, [[0, 1, 2]], 'not left waiting for the next consumer poll');
    await p.shutdown();
  });

  it('backpressure: carries rejected messages over without polling again, pauses after the threshold, resumes on accept', async (t) => {
    const tr = await embedded(t);
    await numbers(tr, 't', 3);
    const clock = new MockedClock(0);
    let gate: Gate | undefined;
    const p = processor(tr, {
      clock,
      factory: {
        createWithPartitions: (commit) => {
          gate = new Gate(commit);
          return gate;
        },
      },
    });
    let polls = 0;
    const poll = p.consumer.poll.bind(p.consumer);
    p.consumer.poll = (o) => {
      polls++;
      return poll(o);
    };
    await p.runOnce();
    assert.equal(polls, 1);
    assert.ok(gate !== undefined);
    assert.equal(clock.now(), 10, 'slept 10 ms after the rejection');
    for (let i = 0; i < 5; i++) await p.runOnce();
    assert.equal(polls, 1, 'no poll while a rejected message is carried over');
    assert.equal(p.paused, false, 'not paused before the threshold');
    clock.advance(5000);
    await p.runOnce();
    assert.equal(p.paused, true);
    assert.deepEqual(p.consumer.paused(), [{ topic: 't', partition: 0 }]);
    assert.equal(p.stats.pauses, 1);
    gate.open = true;
    await p.runOnce();
    assert.deepEqual(gate.got, [0, 1, 2], 'the carried messages, in order, once each');
    assert.equal(polls, 1);
    assert.equal(p.paused, false);
    assert.deepEqual(p.consumer.paused(), []);
    assert.ok(p.stats.backpressureMs >= 5060, `backpressure time recorded: ${p.stats.backpressureMs}`);
    assert.deepEqual(await committed(tr, 'g', 't'), [3]);
    await p.shutdown();
  });

  it('sends an InvalidMessage to the dead-letter topic and goes on; its offset still advances', async (t) => {
    const tr = await embedded(t);
    await numbers(tr, 't', 3);
    const seen: number[] = [];
    const factory: ProcessingStrategyFactory = {
      createWithPartitions: (commit) =>
        new RunTask<ConsumedRecord, number>((m) => {
          if (m.payload.offset === 1) throw new InvalidMessage(m.payload, 'not a number I like');
          seen.push(value(m));
          return value(m);
        }, new CommitOffsets(commit)),
    };
    const p = processor(tr, { factory, deadLetterTopic: 'dlq' });
    while (p.stats.messages + p.stats.deadLetters < 3) await p.runOnce();
    await p.shutdown();
    assert.deepEqual(seen, [0, 2]);
    assert.equal(p.stats.deadLetters, 1);
    assert.deepEqual(await committed(tr, 'g', 't'), [3]);
    const reader = tr.consumer({ groupId: 'r', topics: ['dlq'] });
    const [dead] = await readN(reader, 1, 5000);
    assert.equal(dead!.value!.toString(), '1');
    assert.equal(dead!.headers.offset!.toString(), '1');
    assert.match(dead!.headers.error!.toString(), /not a number I like/);
    await reader.close();
  });

  it('without a dead-letter topic an InvalidMessage stops the processor, and the factory still shuts down', async (t) => {
    const tr = await embedded(t);
    await numbers(tr, 't', 2);
    let shutdowns = 0;
    const factory: ProcessingStrategyFactory = {
      createWithPartitions: (commit) =>
        new RunTask<ConsumedRecord, number>((m) => {
          throw new InvalidMessage(m.payload, 'nope');
        }, new CommitOffsets(commit)),
      shutdown: () => {
        shutdowns++;
      },
    };
    await assert.rejects(processor(tr, { factory }).run(), { name: 'InvalidMessage' });
    assert.equal(shutdowns, 1);
    assert.deepEqual(await committed(tr, 'g', 't'), [undefined]);
  });

  it('on revocation joins the chain, commits its work, and builds a new chain for the remaining partitions', async (t) => {
    const tr = await embedded(t, { sessionTimeoutMs: 600 });
    await numbers(tr, 't', 4, 2);
    const batches: number[][] = [];
    const factoryA = batchingFactory(1000, batches);
    const a = processor(tr, { factory: factoryA });
    const runningA = a.run();
    await eventually(() => a.stats.messages === 8, 'A took all 8 records', 10_000);
    assert.equal(batches.length, 0, 'all 8 wait in the batch');
    const batchesB: number[][] = [];
    const b = processor(tr, { factory: batchingFactory(1000, batchesB) });
    const runningB = b.run();
    await eventually(() => factoryA.chains.length === 2, 'A rebuilt its chain', 10_000);
    assert.equal(factoryA.chains[0]!.length, 2);
    assert.equal(factoryA.chains[1]!.length, 1, 'the new chain has the remaining partition');
    assert.equal(batches[0]!.length, 8, 'the join flushed the batch');
    assert.deepEqual(await committed(tr, 'g', 't'), [4, 4]);
    a.stop();
    b.stop();
    await Promise.all([runningA, runningB]);
    assert.deepEqual(batchesB, [], 'B had nothing to re-read');
  });

  it('joinTimeoutMs 0 drops in-flight work on revocation; the next owner consumes it again', async (t) => {
    const tr = await embedded(t, { sessionTimeoutMs: 600 });
    await numbers(tr, 't', 4, 2);
    const batches: number[][] = [];
    const a = processor(tr, { factory: batchingFactory(1000, batches), joinTimeoutMs: 0 });
    const runningA = a.run();
    await eventually(() => a.stats.messages === 8, 'A took all 8 records', 10_000);
    const batchesB: number[][] = [];
    const b = processor(tr, { factory: batchingFactory(1000, batchesB) });
    const runningB = b.run();
    await eventually(() => b.stats.messages === 4, 'B re-read the revoked partition', 10_000);
    a.stop();
    b.stop();
    await Promise.all([runningA, runningB]);
    assert.equal(batchesB.flat().length, 4);
    assert.deepEqual(await committed(tr, 'g', 't'), [4, 4]);
  });

  it('rejects invalid timeouts', async (t) => {
    const tr = await embedded(t);
    assert.throws(
      () => processor(tr, { factory: batchingFactory(1, []), joinTimeoutMs: -1 }),
      /joinTimeoutMs/,
    );
  });
});
