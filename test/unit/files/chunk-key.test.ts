import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { chunkKey, filePartitioner, keyPrefix, resultKey } from '../../../src/files/chunk-key.ts';
import { partitionForKey } from '../../../src/transport/partitioner.ts';

test('chunk keys follow the spec examples', () => {
  assert.equal(chunkKey('', 'a.dat', 1, 3), '_a.dat_chunk_1_of_3');
  assert.equal(chunkKey('sub/dir', 'a.dat', 2, 3), 'sub_dir_a.dat_chunk_2_of_3');
  assert.equal(
    chunkKey('test_file_sub_dir', '1a0ceb89-b5f0-45dc-9c12-63d3020e2217.dat', 381, 381),
    'test_file_sub_dir_1a0ceb89-b5f0-45dc-9c12-63d3020e2217.dat_chunk_381_of_381',
  );
  assert.equal(chunkKey('dåta/ü', 'résumé ✓.bin', 10, 12), 'dåta_ü_résumé ✓.bin_chunk_10_of_12');
});

test('result keys', () => {
  assert.equal(resultKey('', 'a.dat'), '_a.dat_chunk_processing_result');
  assert.equal(resultKey('sub/dir', 'a.dat'), 'sub_dir_a.dat_chunk_processing_result');
});

test('keyPrefix is the common prefix of chunk and result keys, root-level files included', () => {
  for (const [subdir, name] of [
    ['', 'a.dat'],
    ['sub', 'a.dat'],
    ['x/y/z', 'b.bin'],
  ] as const) {
    const prefix = keyPrefix(subdir, name);
    assert.equal(prefix, `${subdir.split('/').join('_')}_${name}_chunk`);
    assert.ok(chunkKey(subdir, name, 2, 5).startsWith(`${prefix}_`));
    assert.ok(resultKey(subdir, name).startsWith(`${prefix}_`));
  }
  assert.equal(keyPrefix('', 'a.dat'), '_a.dat_chunk');
});

test('a restart filter built from keyPrefix matches root-level and nested chunk keys (upstream misses root files)', () => {
  const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const unfinished = [keyPrefix('', 'root.dat'), keyPrefix('a/b', 'n.dat')];
  const filter = new RegExp(`^(${unfinished.map(escapeRe).join('|')})_.*$`);
  assert.ok(filter.test(chunkKey('', 'root.dat', 1, 2)));
  assert.ok(filter.test(chunkKey('a/b', 'n.dat', 2, 2)));
  assert.ok(!filter.test(chunkKey('', 'other.dat', 1, 1)));
  assert.ok(!filter.test(chunkKey('', 'root.dat2', 1, 1)));
  // upstream's root-level prefix: '.' joined as a directory
  assert.ok(!new RegExp(`^(${escapeRe('._root.dat_chunk')})_.*$`).test(chunkKey('', 'root.dat', 1, 2)));
});

test('the key mapping is ambiguous, so keys must not identify files', () => {
  assert.equal(chunkKey('sub_dir', 'a.dat', 1, 1), chunkKey('sub/dir', 'a.dat', 1, 1));
});

describe('filePartitioner', () => {
  it('sends every chunk of a file to one partition, the murmur2 partition of its key prefix', () => {
    const keys = [1, 2, 3, 4, 5].map((i) => Buffer.from(chunkKey('run/7', 'scan.tif', i, 5)));
    const parts = new Set(keys.map((k) => (filePartitioner as (k: Buffer, n: number) => number)(k, 12)));
    assert.equal(parts.size, 1);
    assert.equal([...parts][0], partitionForKey(Buffer.from('run_7_scan.tif'), 12));
  });

  it('spreads different files and hashes other keys whole', () => {
    const p = filePartitioner as (k: Buffer, n: number) => number;
    const files = Array.from({ length: 40 }, (_, i) => p(Buffer.from(chunkKey('', `f${i}.dat`, 1, 1)), 8));
    assert.ok(new Set(files).size > 4);
    assert.equal(p(Buffer.from('prog_heartbeat'), 8), partitionForKey(Buffer.from('prog_heartbeat'), 8));
  });
});
