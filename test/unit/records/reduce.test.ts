import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatchStep, FILTERED, type Message, MockedClock, Reduce } from '../../../src/records/index.ts';
import { at, msg, Recorder } from './helpers.ts';

const toSet = (acc: Set<number>, m: Message<number>): Set<number> => acc.add(m.payload);

describe('Reduce', () => {
  it('Arroyo vector: Reduce(3, 5.0) with a set accumulator', () => {
    const clock = new MockedClock(0);
    const next = new Recorder<Set<number>>();
    const step = new Reduce(3, 5000, toSet, () => new Set<number>(), next, { clock });
    for (let i = 0; i < 6; i++) {
      step.submit(msg(i, i + 1));
      step.poll();
    }
    assert.deepEqual(
      next.payloads().map((s) => [...(s as Set<number>)]),
      [
        [0, 1, 2],
        [3, 4, 5],
      ],
    );
    assert.deepEqual(next.offsets(), [{ 't/0': 3 }, { 't/0': 6 }]);
  });

  it('flushes a full batch on the next submit, before appending', () => {
    const next = new Recorder<number[]>();
    const step = new BatchStep<number>(2, 60_000, next, { clock: new MockedClock() });
    step.submit(msg(1, 1));
    step.submit(msg(2, 2));
    assert.equal(next.submitted.length, 0, 'full, but not flushed at the moment it fills');
    step.submit(msg(3, 3));
    assert.deepEqual(next.payloads(), [[1, 2]]);
    assert.deepEqual(next.offsets(), [{ 't/0': 2 }]);
  });

  it('does not append the incoming message when the flush is rejected, so a retry adds no duplicate', () => {
    const next = new Recorder<number[]>();
    const step = new BatchStep<number>(2, 60_000, next, { clock: new MockedClock() });
    step.submit(msg(1, 1));
    step.submit(msg(2, 2));
    next.reject = true;
    assert.throws(() => step.submit(msg(3, 3)), { name: 'MessageRejected' });
    step.poll(); // swallows the rejection
    next.reject = false;
    step.submit(msg(3, 3));
    assert.deepEqual(next.payloads(), [[1, 2]]);
    step.submit(msg(4, 4));
    step.poll();
    assert.deepEqual(next.payloads(), [
      [1, 2],
      [3, 4],
    ]);
  });

  it('default deadline starts at the first message of the batch', () => {
    const clock = new MockedClock(0);
    const next = new Recorder<number[]>();
    const step = new BatchStep<number>(100, 1000, next, { clock });
    clock.advance(5000); // idle: no batch, no deadline running
    step.submit(msg(1, 1));
    step.poll();
    assert.equal(next.submitted.length, 0, 'a fresh batch after an idle period gets its full time');
    clock.advance(999);
    step.poll();
    assert.equal(next.submitted.length, 0);
    clock.advance(1);
    step.poll();
    assert.deepEqual(next.payloads(), [[1]]);
  });

  it("deadlineFrom 'previous-flush' (Arroyo 2.42): after an idle period the first message goes alone", () => {
    const clock = new MockedClock(0);
    const next = new Recorder<number[]>();
    const step = new BatchStep<number>(100, 1000, next, { clock, deadlineFrom: 'previous-flush' });
    clock.advance(5000);
    step.submit(msg(1, 1));
    step.poll();
    assert.deepEqual(next.payloads(), [[1]], 'the buffer was created at t=0, so its deadline already passed');
    // after that flush the deadline runs from the flush time
    step.submit(msg(2, 2));
    clock.advance(999);
    step.poll();
    assert.equal(next.submitted.length, 1);
    clock.advance(1);
    step.poll();
    assert.deepEqual(next.payloads(), [[1], [2]]);
  });

  it('counts by computeBatchSize when given', () => {
    const next = new Recorder<number[]>();
    const step = new BatchStep<number>(10, 60_000, next, {
      clock: new MockedClock(),
      computeBatchSize: (m) => m.payload,
    });
    step.submit(msg(4, 1));
    step.submit(msg(6, 2));
    step.poll();
    assert.deepEqual(next.payloads(), [[4, 6]]);
  });

  it('join force-flushes, then closes and joins the next step; an empty batch never flushes', async () => {
    const next = new Recorder<number[]>();
    const step = new BatchStep<number>(10, 60_000, next, { clock: new MockedClock() });
    step.poll();
    step.submit(msg(1, 1));
    step.close();
    await step.join(1000);
    assert.deepEqual(next.payloads(), [[1]]);
    assert.ok(next.closed && next.joined);
    const empty = new Recorder<number[]>();
    const idle = new BatchStep<number>(10, 0, empty, { clock: new MockedClock() });
    idle.poll();
    await idle.join(1000);
    assert.equal(empty.submitted.length, 0);
  });

  it('join gives up at its timeout while the next step rejects', async () => {
    const next = new Recorder<number[]>();
    const step = new BatchStep<number>(10, 60_000, next, { clock: new MockedClock() });
    step.submit(msg(1, 1));
    next.reject = true;
    await step.join(30);
    assert.equal(next.submitted.length, 0);
    assert.ok(next.joined, 'the next step is still joined');
  });

  it('sentinels go straight on without a batch, and join a pending batch otherwise (never overtaking it)', () => {
    const next = new Recorder<number[]>();
    const step = new BatchStep<number>(2, 60_000, next, { clock: new MockedClock() });
    step.submit({ payload: FILTERED, committable: at(1), timestamp: 0 });
    assert.deepEqual(next.payloads(), ['FILTERED']);
    step.submit(msg(1, 2));
    step.submit({ payload: FILTERED, committable: at(3), timestamp: 0 });
    assert.equal(next.submitted.length, 1, 'the sentinel waits with the batch');
    step.submit(msg(2, 4));
    step.poll();
    assert.deepEqual(next.payloads(), ['FILTERED', [1, 2]]);
    assert.deepEqual(next.offsets(), [{ 't/0': 1 }, { 't/0': 4 }]);
  });

  it('merges committables of several partitions, last write wins per partition', () => {
    const next = new Recorder<number[]>();
    const step = new BatchStep<number>(3, 60_000, next, { clock: new MockedClock() });
    step.submit(msg(1, 5, 0));
    step.submit(msg(2, 9, 1));
    step.submit(msg(3, 6, 0));
    step.poll();
    assert.deepEqual(next.offsets(), [{ 't/0': 6, 't/1': 9 }]);
  });
});
