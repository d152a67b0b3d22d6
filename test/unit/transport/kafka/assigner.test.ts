import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClusterMetadata, ExtendedGroupProtocolSubscription } from '@platformatic/kafka';
import { roundRobinAssigner } from '../../../../src/transport/kafka/assigner.ts';

function metadata(topics: Record<string, number>): ClusterMetadata {
  return {
    id: 'c',
    brokers: new Map(),
    controllerId: 1,
    lastUpdate: 0,
    topics: new Map(
      Object.entries(topics).map(([name, count]) => [
        name,
        { id: name, partitionsCount: count, partitions: [], lastUpdate: 0 },
      ]),
    ),
  };
}

function members(subs: Record<string, string[]>): Map<string, ExtendedGroupProtocolSubscription> {
  return new Map(
    Object.entries(subs).map(([memberId, topics]) => [memberId, { memberId, version: 1, topics }]),
  );
}

function flat(result: ReturnType<typeof roundRobinAssigner>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const m of result) {
    out[m.memberId] = [...m.assignments.values()].flatMap((a) => a.partitions.map((p) => `${a.topic}-${p}`));
  }
  return out;
}

describe('round-robin assigner (Java RoundRobinAssignor)', () => {
  it('deals sorted partitions to sorted members in turn', () => {
    const r = roundRobinAssigner('b', members({ b: ['t'], a: ['t'] }), new Set(['t']), metadata({ t: 5 }));
    assert.deepEqual(flat(r), { a: ['t-0', 't-2', 't-4'], b: ['t-1', 't-3'] });
  });

  it('honours each member subscription', () => {
    const r = roundRobinAssigner(
      'a',
      members({ a: ['t1'], b: ['t1', 't2'], c: ['t2'] }),
      new Set(['t1']),
      metadata({ t1: 2, t2: 3 }),
    );
    // Java: t1-0→a, t1-1→b, t2-0→c, t2-1: a skipped (not subscribed)→b, t2-2→c
    assert.deepEqual(flat(r), { a: ['t1-0'], b: ['t1-1', 't2-1'], c: ['t2-0', 't2-2'] });
  });

  it('gives every partition to exactly one member', () => {
    const r = flat(
      roundRobinAssigner('x', members({ x: ['t'], y: ['t'], z: ['t'] }), new Set(['t']), metadata({ t: 8 })),
    );
    const all = Object.values(r).flat().sort();
    assert.deepEqual(all, Array.from({ length: 8 }, (_, i) => `t-${i}`).sort());
  });
});
