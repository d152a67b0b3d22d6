import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { isSluiceError } from '../../../src/errors.ts';
import {
  BatchingConsumer,
  type BatchingConsumerOptions,
  type BatchMetrics,
  MockedClock,
  type Worker,
} from '../../../src/records/index.ts';
import type { ConsumedRecord, Transport } from '../../../src/transport/types.ts';
import { eventually, readN } from '../../conformance/suite.ts';
import { captureLogger, embedded, silent } from './helpers.ts';

/** batching_kafka_consumer's test worker: values are the record values as numbers. */
class TestWorker implements Worker<number> {
  processed: number[] = [];
  flushed: number[][] = [];
  shutdownCalls = 0;
  constructor(
    private readonly opts: {
      skip?: (r: ConsumedRecord) => boolean;
      fail?: (r: ConsumedRecord) => boolean;
      clock?: MockedClock;
      processMs?: number;
      flushMs?: number;
      flushError?: Error;
    } = {},
  ) {}
  processMessage(r: ConsumedRecord): number | null {
    if (this.opts.fail?.(r)) throw new Error(`cannot process offset ${r.offset}`);
    if (this.opts.processMs !== undefined) this.opts.clock!.advance(this.opts.processMs);
    const v = Number(r.value!.toString());
    this.processed.push(v);
    return this.opts.skip?.(r) ? null : v;
  }
  async flushBatch(batch: number[]): Promise<void> {
    if (this.opts.flushError !== undefined) throw this.opts.flushError;
    if (this.opts.flushMs !== undefined) this.opts.clock!.advance(this.opts.flushMs);
    this.flushed.push([...batch]);
  }
  shutdown(): void {
    this.shutdownCalls++;
  }
}

/** A topic whose record at offset i has value i (and key k<i>), count records per partition. */
async function topicOfNumbers(tr: Transport, name: string, count: number, partitions = 1): Promise<void> {
  await tr.createTopic({ name, partitions });
  const p = tr.producer();
  for (let part = 0; part < partitions; part++) {
    await p.send(
      Array.from({ length: count }, (_, i) => ({
        topic: name,
        partition: part,
        key: `k${i}`,
        value: String(i),
      })),
    );
  }
  await p.close();
}

async function committedOffsets(
  tr: Transport,
  group: string,
  topic: string,
): Promise<Array<number | undefined>> {
  const { partitions } = await tr.describeTopic(topic);
  const c = tr.consumer({ groupId: group, topics: [topic] });
  try {
    return await c.committed(partitions.map((p) => ({ topic, partition: p.partition })));
  } finally {
    await c.close();
  }
}

function make(
  tr: Transport,
  worker: Worker<number>,
  extra: Partial<BatchingConsumerOptions<number>> &
    Pick<BatchingConsumerOptions<number>, 'maxBatchSize' | 'maxBatchTimeMs'>,
): BatchingConsumer<number> {
  return new BatchingConsumer<number>({
    transport: tr,
    groupId: 'group',
    topics: ['topic'],
    worker,
    logger: silent,
    pollTimeoutMs: 0,
    ...extra,
  });
}

/** Upstream vectors: the fake consumer returns one message per loop, message i at offset i with value i. */
const fromOffset1 = { start: { offsets: [{ topic: 'topic', partition: 0, offset: 1 }] }, maxPollRecords: 1 };

describe('BatchingConsumer: batching_kafka_consumer vectors (drop mode)', () => {
  it('test_batch_size: max_batch_size=2, messages 1-3, one loop each', async (t) => {
    const tr = await embedded(t);
    await topicOfNumbers(tr, 'topic', 4);
    const worker = new TestWorker();
    const c = make(tr, worker, {
      maxBatchSize: 2,
      maxBatchTimeMs: 60_000,
      shutdown: 'drop',
      waitForCommit: true, // upstream commits synchronously after each flush
      commitLogTopic: 'commit-log',
      consumer: fromOffset1,
      maxPollRecords: 1,
      clock: new MockedClock(0),
    });
    await c.runOnce();
    await c.runOnce();
    assert.deepEqual(worker.flushed, [], 'a full batch flushes at the start of the next loop');
    await c.runOnce();
    assert.deepEqual(worker.flushed, [[1, 2]]);
    assert.deepEqual(worker.processed, [1, 2, 3], 'message 3 was polled after the flush');
    assert.deepEqual(await committedOffsets(tr, 'group', 'topic'), [3], 'committed before polling on');
    await c.shutdown();
    assert.deepEqual(worker.flushed, [[1, 2]], 'message 3 is dropped at shutdown');
    assert.equal(c.totals.commits, 1);
    assert.equal(worker.shutdownCalls, 1);
    await assert.rejects(c.consumer.commit(), (e: unknown) => isSluiceError(e, 'SLUICE_CLOSED'));
    assert.deepEqual(await committedOffsets(tr, 'group', 'topic'), [3]);
    const log = tr.consumer({ groupId: 'reader', topics: ['commit-log'] });
    const [entry] = await readN(log, 1, 5000);
    assert.equal(entry!.key!.toString(), 'topic:0:group');
    assert.equal(entry!.value!.toString(), '3');
    await log.close();
  });

  it('test_batch_time: max_batch_time=2000, messages 1-3 at t0, 4-6 at t0+1 s, 7-9 at t0+5 s', async (t) => {
    const tr = await embedded(t);
    await topicOfNumbers(tr, 'topic', 10);
    const clock = new MockedClock(1_700_000_000_000);
    const t0 = clock.now();
    const worker = new TestWorker();
    const c = make(tr, worker, {
      maxBatchSize: 100,
      maxBatchTimeMs: 2000,
      shutdown: 'drop',
      commitLogTopic: 'commit-log',
      consumer: fromOffset1,
      maxPollRecords: 1,
      clock,
    });
    for (const [at, n] of [
      [0, 3],
      [1000, 3],
    ] as const) {
      clock.set(t0 + at);
      for (let i = 0; i < n; i++) await c.runOnce();
    }
    assert.deepEqual(worker.flushed, []);
    clock.set(t0 + 5000);
    await c.runOnce();
    assert.deepEqual(worker.flushed, [[1, 2, 3, 4, 5, 6]], 'flushed on the first loop at t0+5 s');
    await c.runOnce();
    await c.runOnce();
    assert.deepEqual(worker.processed, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await c.shutdown();
    assert.deepEqual(worker.flushed, [[1, 2, 3, 4, 5, 6]], '7-9 are dropped at shutdown');
    assert.equal(c.totals.commits, 1);
    assert.equal(c.lastBatch?.reason, 'time');
    const log = tr.consumer({ groupId: 'reader', topics: ['commit-log'] });
    const entries = await readN(log, 1, 5000);
    assert.equal(entries[0]!.value!.toString(), '7');
    await log.close();
  });

  it('dead letter: a failing message at partition 1, offset 2 goes to the dead-letter topic with its origin', async (t) => {
    const tr = await embedded(t);
    await topicOfNumbers(tr, 'topic', 3, 2);
    const worker = new TestWorker({ fail: (r) => r.partition === 1 && r.offset === 2 });
    const c = make(tr, worker, { maxBatchSize: 100, maxBatchTimeMs: 60_000, deadLetterTopic: 'dead' });
    while (worker.processed.length < 5) await c.runOnce();
    await c.shutdown();
    assert.equal(c.lastBatch?.deadLettered, 1);
    assert.deepEqual(await committedOffsets(tr, 'group', 'topic'), [3, 3], 'the failed record is consumed');
    const reader = tr.consumer({ groupId: 'reader', topics: ['dead'] });
    const got = await readN(reader, 1, 5000);
    assert.equal(got[0]!.key!.toString(), 'k2');
    assert.equal(got[0]!.value!.toString(), '2');
    const h = Object.fromEntries(Object.entries(got[0]!.headers).map(([k, v]) => [k, v.toString()]));
    assert.equal(h.partition, '1');
    assert.equal(h.offset, '2');
    assert.equal(h.topic, 'topic');
    assert.equal(h.error, 'cannot process offset 2');
    assert.equal(h.error_type, 'Error');
    assert.equal((await reader.poll({ timeoutMs: 100 })).length, 0, 'only that one');
    await reader.close();
  });

  it('without a dead-letter topic, a failing message stops the consumer and nothing is committed', async (t) => {
    const tr = await embedded(t);
    await topicOfNumbers(tr, 'topic', 3);
    const worker = new TestWorker({ fail: (r) => r.offset === 1 });
    const c = make(tr, worker, { maxBatchSize: 10, maxBatchTimeMs: 60_000 });
    await assert.rejects(c.run(), /cannot process offset 1/);
    assert.deepEqual(worker.flushed, [], 'the batch with offset 0 had not flushed yet');
    assert.deepEqual(await committedOffsets(tr, 'group', 'topic'), [undefined]);
  });
});

describe('BatchingConsumer: sluice behaviour', () => {
  it('the batch timer starts at the first message of a batch, not at the previous flush or at start', async (t) => {
    const tr = await embedded(t);
    await tr.createTopic({ name: 'topic' });
    const clock = new MockedClock(0);
    const worker = new TestWorker();
    const c = make(tr, worker, { maxBatchSize: 100, maxBatchTimeMs: 2000, clock });
    await c.runOnce(); // idle
    clock.advance(10_000);
    const p = tr.producer();
    await p.send({ topic: 'topic', value: '1' });
    await c.runOnce(); // first message at t=10 000: deadline 12 000
    assert.equal(c.pendingMessages, 1);
    clock.advance(2000);
    await c.runOnce();
    assert.deepEqual(worker.flushed, [], 'not yet: the deadline is `now > first + maxBatchTimeMs`');
    clock.advance(1);
    await c.runOnce();
    assert.deepEqual(worker.flushed, [[1]]);
    assert.equal(c.lastBatch?.reason, 'time');
    // the next batch's timer starts at its own first message
    clock.advance(5000);
    await p.send({ topic: 'topic', value: '2' });
    await c.runOnce();
    clock.advance(1999);
    await c.runOnce();
    assert.deepEqual(worker.flushed, [[1]]);
    clock.advance(2);
    await c.runOnce();
    assert.deepEqual(worker.flushed, [[1], [2]]);
    await p.close();
    await c.shutdown();
  });

  it(
    'an idle consumer still flushes on time (the poll wait is cut to the deadline) and stops at once',
    { timeout: 30_000 },
    async (t) => {
      const tr = await embedded(t);
      await topicOfNumbers(tr, 'topic', 1);
      const worker = new TestWorker();
      const c = make(tr, worker, { maxBatchSize: 100, maxBatchTimeMs: 50, pollTimeoutMs: 600_000 });
      const running = c.run();
      // without the cut the second poll would wait 600 s; the test's own limit is far shorter
      await eventually(() => worker.flushed.length === 1, 'the time flush of an idle consumer', 20_000);
      assert.deepEqual(worker.flushed, [[0]]);
      c.stop(); // must not wait for the 600 s poll either
      await running;
    },
  );

  it('commits after a flush even when every message was skipped, without calling flushBatch', async (t) => {
    const tr = await embedded(t);
    await topicOfNumbers(tr, 'topic', 5);
    const clock = new MockedClock(0);
    const worker = new TestWorker({ skip: () => true });
    const c = make(tr, worker, { maxBatchSize: 1, maxBatchTimeMs: 1000, clock });
    await c.runOnce();
    assert.equal(c.pendingMessages, 5, 'skipped values do not fill the batch');
    clock.advance(1001);
    await c.runOnce();
    assert.deepEqual(worker.flushed, []);
    assert.deepEqual(await committedOffsets(tr, 'group', 'topic'), [5]);
    assert.equal(c.lastBatch?.skipped, 5);
    assert.equal(c.lastBatch?.batchSize, 0);
    await c.shutdown();
  });

  it('a batch never exceeds maxBatchSize, even when one poll returns more records', async (t) => {
    const tr = await embedded(t);
    await topicOfNumbers(tr, 'topic', 7);
    const worker = new TestWorker();
    const c = make(tr, worker, { maxBatchSize: 3, maxBatchTimeMs: 60_000 });
    await c.runOnce();
    await c.runOnce();
    assert.deepEqual(worker.flushed, [
      [0, 1, 2],
      [3, 4, 5],
    ]);
    await c.shutdown();
    assert.deepEqual(worker.flushed.at(-1), [6], 'shutdown flushes by default');
    assert.deepEqual(await committedOffsets(tr, 'group', 'topic'), [7]);
  });

  for (const mode of ['flush', 'drop'] as const) {
    it(`shutdown '${mode}': ${mode === 'flush' ? 'flushes and commits' : 'drops; the records come again after a restart'}`, async (t) => {
      const tr = await embedded(t);
      await topicOfNumbers(tr, 'topic', 3);
      const worker = new TestWorker();
      const c = make(tr, worker, {
        maxBatchSize: 100,
        maxBatchTimeMs: 60_000,
        shutdown: mode,
        pollTimeoutMs: 20,
      });
      const running = c.run();
      await eventually(() => worker.processed.length === 3, 'three records processed', 10_000);
      c.stop();
      await running;
      assert.equal(worker.shutdownCalls, 1);
      const again = new TestWorker();
      const c2 = make(tr, again, { maxBatchSize: 100, maxBatchTimeMs: 60_000 });
      await c2.runOnce();
      await c2.shutdown();
      if (mode === 'flush') {
        assert.deepEqual(worker.flushed, [[0, 1, 2]]);
        assert.deepEqual(again.processed, [], 'nothing left after the restart');
      } else {
        assert.deepEqual(worker.flushed, []);
        assert.deepEqual(again.flushed, [[0, 1, 2]], 'the dropped batch is consumed again');
      }
      assert.deepEqual(await committedOffsets(tr, 'group', 'topic'), [3]);
    });
  }

  it('a failing flushBatch commits nothing; the batch is consumed again after a restart', async (t) => {
    const tr = await embedded(t);
    await topicOfNumbers(tr, 'topic', 2);
    const c = make(tr, new TestWorker({ flushError: new Error('sink down') }), {
      maxBatchSize: 2,
      maxBatchTimeMs: 60_000,
    });
    await assert.rejects(c.run(), /sink down/);
    assert.deepEqual(await committedOffsets(tr, 'group', 'topic'), [undefined]);
    const again = new TestWorker();
    const c2 = make(tr, again, { maxBatchSize: 2, maxBatchTimeMs: 60_000 });
    await c2.runOnce();
    await c2.runOnce();
    await c2.shutdown();
    assert.deepEqual(again.flushed, [[0, 1]]);
  });

  it('force-flushes and commits on partition revocation', async (t) => {
    const tr = await embedded(t, { sessionTimeoutMs: 600 });
    await topicOfNumbers(tr, 'topic', 4, 2);
    const worker = new TestWorker();
    const batches: BatchMetrics[] = [];
    const a = make(tr, worker, {
      maxBatchSize: 1000,
      maxBatchTimeMs: 600_000,
      pollTimeoutMs: 20,
      onBatch: (m) => batches.push(m),
    });
    const runningA = a.run();
    await eventually(() => worker.processed.length === 8, 'A processed both partitions', 10_000);
    assert.equal(worker.flushed.length, 0);
    const other = new TestWorker();
    const b = make(tr, other, { maxBatchSize: 1000, maxBatchTimeMs: 600_000, pollTimeoutMs: 20 });
    const runningB = b.run();
    await eventually(() => batches.length > 0, 'A flushed on revocation', 10_000);
    assert.equal(batches[0]!.reason, 'revoke');
    assert.equal(worker.flushed[0]!.length, 8, 'the whole batch was flushed');
    assert.deepEqual(await committedOffsets(tr, 'group', 'topic'), [4, 4]);
    await eventually(() => b.consumer.assignment().length === 1, 'B got a partition', 10_000);
    a.stop();
    b.stop();
    await Promise.all([runningA, runningB]);
    assert.deepEqual(other.processed, [], 'B re-read nothing: the revoked partition was committed first');
  });
});

describe('BatchingConsumer: metrics', () => {
  it('reports per-batch metrics programmatically, as Prometheus metrics and in log summaries', async (t: TestContext) => {
    const tr = await embedded(t);
    await topicOfNumbers(tr, 'topic', 4);
    const clock = new MockedClock(1000);
    const worker = new TestWorker({ clock, processMs: 2, flushMs: 10 });
    const { logger, lines } = captureLogger('info');
    const seen: BatchMetrics[] = [];
    const c = make(tr, worker, {
      maxBatchSize: 4,
      maxBatchTimeMs: 60_000,
      clock,
      logger,
      logSummaryIntervalMs: 0,
      onBatch: (m) => seen.push(m),
    });
    await c.runOnce();
    await c.runOnce();
    assert.equal(seen.length, 1);
    const m = seen[0]!;
    assert.equal(m.reason, 'size');
    assert.equal(m.messages, 4);
    assert.equal(m.batchSize, 4);
    assert.equal(m.processTimeMs, 8);
    assert.equal(m.processTimePerMessageMs, 2);
    assert.equal(m.flushTimeMs, 10);
    assert.equal(m.flushTimePerMessageMs, 2.5);
    assert.equal(m.durationMs, 18, 'first message (t=1000) to the end of the commit (t=1018)');
    assert.ok(Math.abs(m.throughput - 4 / 0.018) < 1e-6);
    assert.deepEqual(m.committed, [{ topic: 'topic', partition: 0, offset: 4 }]);
    assert.equal(c.lastBatch, m);
    assert.equal(c.totals.messages, 4);

    const text = await c.registry!.metrics();
    assert.match(text, /sluice_batches_total\{group="group",reason="size"\} 1/);
    assert.match(text, /sluice_batch_messages_total\{group="group"\} 4/);
    assert.match(text, /sluice_batch_size_sum\{group="group"\} 4/);
    assert.match(text, /sluice_batch_flush_seconds_sum\{group="group"\} 0\.01\b/);
    assert.match(text, /sluice_batch_flush_seconds_per_message_sum\{group="group"\} 0\.0025\b/);
    assert.match(text, /sluice_batch_process_seconds_per_message_sum\{group="group"\} 0\.002\b/);
    assert.match(text, /sluice_batch_throughput_messages_per_second\{group="group"\} 222\.2/);

    const summary = lines.find((l) => l.batches === 1);
    assert.ok(summary, `a summary line: ${JSON.stringify(lines)}`);
    assert.equal(summary.messages, 4);
    assert.equal(summary.avgBatchSize, 4);
    assert.equal(summary.processMsPerMessage, 2);
    assert.equal(summary.flushMsPerBatch, 10);
    await c.shutdown();
  });

  it('two consumers can share one registry (one series per group)', async (t) => {
    const tr = await embedded(t);
    await tr.createTopic({ name: 'topic' });
    const { Registry } = await import('prom-client');
    const registry = new Registry();
    const a = make(tr, new TestWorker(), { maxBatchSize: 1, maxBatchTimeMs: 1, prometheus: { registry } });
    const b = new BatchingConsumer<number>({
      transport: tr,
      groupId: 'other',
      topics: ['topic'],
      worker: new TestWorker(),
      maxBatchSize: 1,
      maxBatchTimeMs: 1,
      logger: silent,
      prometheus: { registry },
    });
    assert.equal(a.registry, registry);
    assert.equal(b.registry, registry);
    await a.shutdown();
    await b.shutdown();
  });

  it('rejects invalid options with the field and the fix', async (t) => {
    const tr = await embedded(t);
    assert.throws(
      () => make(tr, new TestWorker(), { maxBatchSize: 0, maxBatchTimeMs: 1 }),
      (e: unknown) => isSluiceError(e, 'SLUICE_CONFIG_INVALID') && /maxBatchSize/.test(e.message),
    );
    assert.throws(
      () => make(tr, new TestWorker(), { maxBatchSize: 1, maxBatchTimeMs: -1 }),
      (e: unknown) => isSluiceError(e, 'SLUICE_CONFIG_INVALID') && /maxBatchTimeMs/.test(e.message),
    );
  });
});
