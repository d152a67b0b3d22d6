import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BufferPool } from '../../../src/files/buffer-pool.ts';

describe('BufferPool', () => {
  test('hands a given-back buffer out again, as a view of exactly the size asked', () => {
    const pool = new BufferPool();
    const a = pool.take(100_000);
    assert.equal(a.length, 100_000);
    a.fill(7);
    pool.give(a);
    assert.equal(pool.idleBytes, 131072);
    const b = pool.take(70_000);
    assert.equal(b.length, 70_000);
    assert.equal(b.buffer, a.buffer);
    assert.equal(pool.idleBytes, 0);
  });

  test('ignores buffers it did not make, views not at offset 0, and a second give of the same buffer', () => {
    const pool = new BufferPool();
    pool.give(Buffer.alloc(131072));
    const a = pool.take(131072);
    pool.give(a.subarray(10));
    assert.equal(pool.idleBytes, 0);
    pool.give(a);
    pool.give(a);
    assert.equal(pool.idleBytes, 131072);
  });

  test('small and very large requests are plain allocations', () => {
    const pool = new BufferPool();
    const small = pool.take(1000);
    const huge = pool.take(9 * 1024 * 1024);
    assert.equal(small.length, 1000);
    assert.equal(huge.length, 9 * 1024 * 1024);
    pool.give(small);
    pool.give(huge);
    assert.equal(pool.idleBytes, 0);
  });

  test('keeps at most 32 MiB idle', () => {
    const pool = new BufferPool();
    const taken = Array.from({ length: 8 }, () => pool.take(8 * 1024 * 1024));
    for (const b of taken) pool.give(b);
    assert.equal(pool.idleBytes, 32 * 1024 * 1024);
  });
});
