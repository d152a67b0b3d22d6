import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makePartitioner, murmur2, partitionForKey } from '../../../src/transport/partitioner.ts';

describe('partitioner', () => {
  it('matches the Java client’s murmur2 on Kafka’s own test vectors', () => {
    // from Kafka's UtilsTest.testMurmur2
    const cases: Array<[string, number]> = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [key, want] of cases) assert.equal(murmur2(Buffer.from(key)), want, key);
  });

  it('maps keys to partitions as toPositive(murmur2) % n', () => {
    assert.equal(partitionForKey(Buffer.from('foobar'), 7), (-790332482 & 0x7fffffff) % 7);
    const pick = makePartitioner();
    assert.equal(pick('t', Buffer.from('foobar'), 7), partitionForKey(Buffer.from('foobar'), 7));
  });

  it('rotates keyless records, and every record under round-robin', () => {
    const pick = makePartitioner();
    assert.deepEqual(
      [0, 1, 2, 3].map(() => pick('t', null, 3)),
      [0, 1, 2, 0],
    );
    const rr = makePartitioner('round-robin');
    assert.deepEqual(
      [0, 1, 2].map(() => rr('t', Buffer.from('same'), 3)),
      [0, 1, 2],
    );
  });
});
