import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  CommitOffsets,
  CommitPolicy,
  type Committable,
  FILTERED,
  Filter,
  InvalidMessage,
  MockedClock,
  RunTask,
  RunTaskConcurrently,
  RunTaskInWorkers,
  WorkerPool,
} from '../../../src/records/index.ts';
import type { ConsumedRecord } from '../../../src/transport/types.ts';
import { at, msg, plain, Recorder } from './helpers.ts';

/** A promise whose resolution the test controls. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('CommitOffsets', () => {
  it('stages on submit, stages nothing on poll, forces on join', async () => {
    const calls: Array<[Record<string, number>, boolean]> = [];
    const step = new CommitOffsets((offsets: Committable, force = false) =>
      calls.push([plain(offsets), force]),
    );
    step.submit(msg('a', 3));
    step.poll();
    step.close();
    await step.join();
    assert.deepEqual(calls, [
      [{ 't/0': 3 }, false],
      [{}, false],
      [{}, true],
    ]);
  });
});

describe('RunTask', () => {
  it('applies fn and keeps committable and timestamp; sentinels pass untouched', () => {
    const next = new Recorder<number>();
    const step = new RunTask<number, number>((m) => m.payload * 10, next);
    step.submit({ payload: 4, committable: at(8), timestamp: 42 });
    step.submit({ payload: FILTERED, committable: at(9), timestamp: 43 });
    assert.deepEqual(next.payloads(), [40, 'FILTERED']);
    assert.deepEqual(next.offsets(), [{ 't/0': 8 }, { 't/0': 9 }]);
    assert.equal(next.submitted[0]!.timestamp, 42);
  });

  it('never runs fn twice for a message under backpressure', () => {
    const next = new Recorder<number>();
    let runs = 0;
    const step = new RunTask((m) => {
      runs++;
      return m.payload;
    }, next);
    next.reject = true;
    step.submit(msg(1, 1)); // taken: the result waits inside the step
    assert.throws(() => step.submit(msg(2, 2)), { name: 'MessageRejected' });
    assert.equal(runs, 1);
    next.reject = false;
    step.poll();
    step.submit(msg(2, 2));
    assert.equal(runs, 2);
    assert.deepEqual(next.payloads(), [1, 2]);
  });
});

describe('Filter', () => {
  it('without a commit policy, replaces every dropped message by a sentinel', () => {
    const next = new Recorder<number>();
    const step = new Filter<number>((m) => m.payload % 2 === 0, next);
    for (let i = 1; i <= 4; i++) step.submit(msg(i, i));
    assert.deepEqual(next.payloads(), ['FILTERED', 2, 'FILTERED', 4]);
    assert.deepEqual(
      next.offsets().map((o) => o['t/0']),
      [1, 2, 3, 4],
    );
  });

  it('with a commit policy, gathers dropped offsets into one sentinel when the policy says so, and on join', async () => {
    const next = new Recorder<number>();
    const step = new Filter<number>(() => false, next, {
      commitPolicy: new CommitPolicy({ minCommitMessages: 3 }),
      clock: new MockedClock(),
    });
    step.submit(msg(1, 1)); // first sight counts 1
    step.submit(msg(2, 2)); // 2
    assert.equal(next.submitted.length, 0);
    step.submit(msg(3, 3)); // 3 ≥ 3
    assert.deepEqual(next.offsets(), [{ 't/0': 3 }]);
    step.submit(msg(4, 4));
    step.close();
    await step.join();
    assert.deepEqual(next.offsets(), [{ 't/0': 3 }, { 't/0': 4 }]);
    assert.deepEqual(next.payloads(), ['FILTERED', 'FILTERED']);
  });
});

describe('RunTaskConcurrently', () => {
  it('passes results on in submission order, even when later tasks finish first', async () => {
    const gates = [deferred<number>(), deferred<number>(), deferred<number>()];
    const next = new Recorder<number>();
    const step = new RunTaskConcurrently<number, number>(
      (m) => gates[m.payload]!.promise,
      { concurrency: 3, maxPendingFutures: 10 },
      next,
    );
    for (let i = 0; i < 3; i++) step.submit(msg(i, i + 1));
    gates[2]!.resolve(20);
    gates[1]!.resolve(10);
    await tick();
    step.poll();
    assert.deepEqual(next.payloads(), [], 'the unfinished head blocks the rest');
    gates[0]!.resolve(0);
    await tick();
    step.poll();
    assert.deepEqual(next.payloads(), [0, 10, 20]);
    assert.deepEqual(
      next.offsets().map((o) => o['t/0']),
      [1, 2, 3],
    );
  });

  it('rejects when more than maxPendingFutures are pending (strictly greater) and runs at most `concurrency`', async () => {
    const gate = deferred<void>();
    let running = 0;
    let maxRunning = 0;
    const next = new Recorder<number>();
    const step = new RunTaskConcurrently(
      async (m) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await gate.promise;
        running--;
        return m.payload;
      },
      { concurrency: 2, maxPendingFutures: 3 },
      next,
    );
    for (let i = 0; i < 4; i++) step.submit(msg(i, i + 1)); // pending 0..3 before each: all accepted
    assert.throws(() => step.submit(msg(4, 5)), { name: 'MessageRejected' });
    await tick();
    assert.equal(maxRunning, 2);
    gate.resolve();
    step.close();
    await step.join(5000);
    assert.deepEqual(next.payloads(), [0, 1, 2, 3]);
    assert.equal(maxRunning, 2);
  });

  it('keeps a sentinel in its place in the queue', async () => {
    const gate = deferred<number>();
    const next = new Recorder<number>();
    const step = new RunTaskConcurrently(() => gate.promise, { concurrency: 1, maxPendingFutures: 10 }, next);
    step.submit(msg(7, 1));
    step.submit({ payload: FILTERED, committable: at(2), timestamp: 0 });
    step.poll();
    assert.deepEqual(next.payloads(), []);
    gate.resolve(7);
    await tick();
    step.poll();
    assert.deepEqual(next.payloads(), [7, 'FILTERED']);
  });

  it('an InvalidMessage task becomes a sentinel downstream and is rethrown; other errors are rethrown', async () => {
    const next = new Recorder<number>();
    const step = new RunTaskConcurrently(
      async (m) => {
        if (m.payload === 1) throw new InvalidMessage({ topic: 't', partition: 0, offset: 1 }, 'bad');
        if (m.payload === 3) throw new TypeError('boom');
        return m.payload;
      },
      { concurrency: 4, maxPendingFutures: 10 },
      next,
    );
    for (let i = 0; i < 4; i++) step.submit(msg(i, i + 1));
    await tick();
    await tick();
    assert.throws(() => step.poll(), { name: 'InvalidMessage' });
    assert.deepEqual(next.payloads(), [0, 'FILTERED']);
    assert.throws(() => step.poll(), { name: 'TypeError' });
    assert.deepEqual(next.payloads(), [0, 'FILTERED', 2]);
  });
});

describe('RunTaskInWorkers', () => {
  it('runs the task on worker threads, in order, and maps InvalidMessage back to the record', async (t) => {
    const pool = new WorkerPool({
      module: join(import.meta.dirname, 'fixtures', 'worker-task.ts'),
      threads: 2,
    });
    t.after(() => pool.close());
    const next = new Recorder<{ n: number; thread: number }>();
    const step = new RunTaskInWorkers<{ n: number; delayMs?: number }, { n: number; thread: number }>(
      pool,
      { maxPendingFutures: 20 },
      next,
    );
    // the first tasks are slow, the later ones fast: order must still hold
    for (let i = 0; i < 8; i++) step.submit(msg({ n: i, delayMs: i < 2 ? 50 : 0 }, i + 1));
    step.close();
    await step.join(20_000);
    assert.deepEqual(
      next.payloads().map((p) => (p as { n: number }).n),
      [0, 2, 4, 6, 8, 10, 12, 14],
    );
    const threads = new Set(next.payloads().map((p) => (p as { thread: number }).thread));
    assert.ok(!threads.has(0), 'nothing ran on the main thread');
    assert.equal(threads.size, 2, 'both threads worked');

    const record: ConsumedRecord = {
      topic: 't',
      partition: 0,
      offset: 9,
      timestamp: 0,
      key: null,
      value: null,
      headers: {},
    };
    const next2 = new Recorder<unknown>();
    const step2 = new RunTaskInWorkers<unknown, unknown>(
      pool,
      { maxPendingFutures: 5, select: () => ({ n: -1 }) },
      next2,
    );
    step2.submit({ payload: record, committable: at(10), timestamp: 0 });
    await assert.rejects(step2.join(20_000), (err: unknown) => {
      assert.ok(err instanceof InvalidMessage);
      assert.equal(err.offset, 9);
      assert.equal(err.record, record);
      return true;
    });
    assert.deepEqual(next2.payloads(), ['FILTERED']);
  });
});
