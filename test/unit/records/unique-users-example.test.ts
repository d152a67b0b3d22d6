import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type BatchReport,
  countUniqueUsers,
  produceFrames,
} from '../../../examples/unique-users/unique-users.ts';
import { embedded, silent } from './helpers.ts';

describe('examples/unique-users', () => {
  it('counts unique users per batch on the embedded broker, skips malformed frames, commits', async (t) => {
    const tr = await embedded(t);
    await produceFrames(tr, { topic: 'frames', count: 3000, users: 250, startTs: 1_700_000_000 });
    const p = tr.producer();
    await p.send([
      { topic: 'frames', value: 'not json' },
      { topic: 'frames', value: JSON.stringify({ ts: 1 }) },
    ]);
    await p.close();
    const reports: BatchReport[] = [];
    const { worker, consumer } = await countUniqueUsers(tr, {
      topic: 'frames',
      group: 'uu',
      batchMs: 100,
      idleExitMs: 200,
      logger: silent,
      onReport: (r) => reports.push(r),
    });
    assert.equal(worker.malformed, 2);
    assert.equal(
      reports.reduce((n, r) => n + r.frames, 0),
      3000,
    );
    assert.equal(consumer.totals.messages, 3002);
    // every one of the 250 users appears; a batch never counts a user twice
    assert.ok(reports.every((r) => r.uniqueUsers <= Math.min(250, r.frames)));
    if (reports.length === 1) assert.equal(reports[0]!.uniqueUsers, 250);
    assert.equal(reports[0]!.firstTs, 1_700_000_000);
    const c = tr.consumer({ groupId: 'uu', topics: ['frames'] });
    assert.deepEqual(await c.committed([{ topic: 'frames', partition: 0 }]), [3002]);
    await c.close();
  });
});
