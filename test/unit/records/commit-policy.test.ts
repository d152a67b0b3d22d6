import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSluiceError } from '../../../src/errors.ts';
import { CommitPolicy } from '../../../src/records/index.ts';
import { at } from './helpers.ts';

// Arroyo tests/test_commit.py, seconds × 1000; T = the state's creation time, one partition, didCommit never called.
const T = 1_000_000;
const cases: Array<[string, CommitPolicy, Array<[number, number, boolean]>]> = [
  [
    'IMMEDIATE',
    CommitPolicy.IMMEDIATE,
    [
      [500, 1, true],
      [2500, 2, true],
      [3000, 7, true],
    ],
  ],
  [
    'ONCE_PER_SECOND',
    CommitPolicy.ONCE_PER_SECOND,
    [
      [500, 10, false],
      [1500, 20, true],
      [3000, 30, true],
    ],
  ],
  [
    'CommitPolicy(2 s, 100)',
    new CommitPolicy({ minCommitFrequencyMs: 2000, minCommitMessages: 100 }),
    [
      [1000, 99, false],
      [3000, 100, true],
      [4000, 201, true],
    ],
  ],
];

describe('CommitPolicy (Arroyo vectors)', () => {
  for (const [name, policy, calls] of cases) {
    it(name, () => {
      const state = policy.state(T);
      assert.deepEqual(
        calls.map(([dt, offset]) => state.shouldCommit(T + dt, at(offset))),
        calls.map(([, , want]) => want),
      );
    });
  }

  it('CommitPolicy(None, None) cannot be built', () => {
    assert.throws(
      () => new CommitPolicy({ minCommitFrequencyMs: null, minCommitMessages: null }),
      (err: unknown) => isSluiceError(err, 'SLUICE_CONFIG_INVALID'),
    );
  });

  it('counts messages since the last commit over all partitions, and didCommit moves both baselines', () => {
    const state = new CommitPolicy({ minCommitMessages: 10 }).state(0);
    // first sight counts 1 per partition
    assert.equal(state.shouldCommit(1, new Map([...at(5, 0), ...at(7, 1)])), false);
    // 5→9 is 4 more (+1 baseline) on p0, 7→12 is 5 more (+1) on p1: 11 ≥ 10
    assert.equal(state.shouldCommit(2, new Map([...at(9, 0), ...at(12, 1)])), true);
    state.didCommit(3, new Map([...at(9, 0), ...at(12, 1)]));
    assert.equal(state.shouldCommit(4, new Map([...at(18, 0)])), false);
    assert.equal(state.shouldCommit(5, new Map([...at(19, 0)])), true);
  });

  it('time rule counts from the last commit', () => {
    const state = new CommitPolicy({ minCommitFrequencyMs: 1000 }).state(0);
    assert.equal(state.shouldCommit(999, at(1)), false);
    state.didCommit(999, at(1));
    assert.equal(state.shouldCommit(1998, at(2)), false);
    assert.equal(state.shouldCommit(1999, at(2)), true);
  });
});
