import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkKey, keyPrefix, resultKey } from '../../../src/files/chunk-key.ts';

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
