import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { isSluiceError } from '../../../src/errors.ts';
import { applyFilenameAppend, resolveChunkPath } from '../../../src/files/safe-path.ts';

const OUT = path.resolve('/srv/sluice-out');

function assertUnsafe(fn: () => unknown, pattern?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isSluiceError(err, 'SLUICE_UNSAFE_PATH'), `expected SLUICE_UNSAFE_PATH, got ${String(err)}`);
    assert.match((err as Error).message, /quarantine the message/);
    if (pattern) assert.match((err as Error).message, pattern);
    return true;
  });
}

describe('resolveChunkPath', () => {
  test('root-level and nested files resolve under the output directory', () => {
    assert.equal(resolveChunkPath(OUT, '', 'a.dat', ''), path.join(OUT, 'a.dat'));
    assert.equal(resolveChunkPath(OUT, 'sub', 'a.dat', ''), path.join(OUT, 'sub', 'a.dat'));
    assert.equal(resolveChunkPath(OUT, 'x/y/z', 'a.dat', ''), path.join(OUT, 'x', 'y', 'z', 'a.dat'));
    assert.equal(
      resolveChunkPath(OUT, 'nested/dåta ünïcode', 'résumé-数据 ✓.bin', ''),
      path.join(OUT, 'nested', 'dåta ünïcode', 'résumé-数据 ✓.bin'),
    );
  });

  test('names that only look like dots are fine', () => {
    assert.equal(resolveChunkPath(OUT, '.../..a', '...', ''), path.join(OUT, '...', '..a', '...'));
    assert.equal(resolveChunkPath(OUT, '.hidden', '.bashrc', ''), path.join(OUT, '.hidden', '.bashrc'));
  });

  test('a relative output directory gives an absolute path', () => {
    const p = resolveChunkPath('rel/out', 'sub', 'a.dat', '');
    assert.ok(path.isAbsolute(p));
    assert.equal(p, path.resolve('rel/out', 'sub', 'a.dat'));
  });

  test('filenameAppend goes between stem and suffix', () => {
    assert.equal(resolveChunkPath(OUT, 'sub', 'a.tar.gz', '_v2'), path.join(OUT, 'sub', 'a.tar_v2.gz'));
    assert.equal(resolveChunkPath(OUT, '', 'README', '_v2'), path.join(OUT, 'README_v2'));
  });

  const hostile: Array<[string, string, string, string, RegExp]> = [
    // [label, subdirStr, filename, filenameAppend, message]
    ['parent subdir', '..', 'a.dat', '', /'\.\.' \(parent directory\)/],
    ['parent inside subdir', 'a/../../etc', 'passwd', '', /'\.\.'/],
    ['trailing parent', 'a/..', 'a.dat', '', /'\.\.'/],
    ['absolute subdir', '/etc', 'passwd', '', /is absolute/],
    ['absolute subdir root only', '/', 'passwd', '', /is absolute/],
    ['doubled slash', 'a//b', 'x', '', /is empty/],
    ['trailing slash', 'a/', 'x', '', /is empty/],
    ['dot component', './a', 'x', '', /is '\.'/],
    ['backslash traversal in subdir', '..\\..\\windows', 'x', '', /backslash/],
    ['backslash in subdir', 'a\\b', 'x', '', /backslash/],
    ['NUL in subdir', 'a\0b', 'x', '', /NUL/],
    ['slash in filename', '', '../x', '', /contains '\/'/],
    ['nested path in filename', 'sub', 'a/b.dat', '', /contains '\/'/],
    ['absolute filename', '', '/etc/passwd', '', /contains '\/'/],
    ['filename ..', 'sub', '..', '', /'\.\.'/],
    ['filename .', 'sub', '.', '', /is '\.'/],
    ['empty filename', 'sub', '', '', /is empty/],
    ['backslash filename', '', '..\\x', '', /backslash/],
    ['NUL filename', '', 'a.dat\0.png', '', /NUL/],
    ['slash in append', '', 'a.dat', '/../../x', /filename_append .* contains '\/'/],
    ['backslash in append', '', 'a.dat', '\\..\\x', /filename_append .* backslash/],
    ['NUL in append', '', 'a.dat', '\0', /filename_append .* NUL/],
  ];
  for (const [label, subdir, filename, append, pattern] of hostile) {
    test(`rejects ${label}`, () => {
      assertUnsafe(() => resolveChunkPath(OUT, subdir, filename, append), pattern);
    });
  }

  test('the error carries the offending names in details', () => {
    try {
      resolveChunkPath(OUT, '../x', 'a', '');
      assert.fail('expected a throw');
    } catch (err) {
      assert.ok(isSluiceError(err, 'SLUICE_UNSAFE_PATH'));
      assert.deepEqual(err.details, { outputDir: OUT, subdirStr: '../x', filename: 'a', filenameAppend: '' });
    }
  });

  test('a bad output directory is a usage error', () => {
    assert.throws(
      () => resolveChunkPath('', 'a', 'b', ''),
      (err: unknown) => isSluiceError(err, 'SLUICE_USAGE'),
    );
  });

  test('every accepted path is strictly inside the output directory', () => {
    const pieces = ['a', '..', '.', '', '...', '/', 'b/..', '..a', 'c', '\\', '%2e%2e', '~'];
    let accepted = 0;
    for (const s1 of pieces) {
      for (const s2 of pieces) {
        for (const f of pieces) {
          const subdir = s2 === '' ? s1 : `${s1}/${s2}`;
          let p: string;
          try {
            p = resolveChunkPath(OUT, subdir, f, '');
          } catch (err) {
            assert.ok(isSluiceError(err, 'SLUICE_UNSAFE_PATH'), String(err));
            continue;
          }
          accepted++;
          const rel = path.relative(OUT, p);
          assert.ok(
            rel !== '' && !rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel),
            p,
          );
          assert.equal(p, path.join(OUT, ...(subdir === '' ? [] : subdir.split('/')), f));
        }
      }
    }
    assert.ok(accepted > 50, `only ${accepted} combinations accepted`);
  });
});

describe('applyFilenameAppend', () => {
  // Expected stems/suffixes are what Python 3.11's pathlib.PurePosixPath gives for these names.
  const cases: Array<[string, string]> = [
    ['a.tar.gz', 'a.tar_X.gz'],
    ['a', 'a_X'],
    ['.bashrc', '.bashrc_X'],
    ['a.', 'a._X'],
    ['..a', '._X.a'],
    ['a..b', 'a._X.b'],
    ['.a.b', '.a_X.b'],
    ['x.y.', 'x.y._X'],
    ['...', '..._X'],
    ['a b.c d', 'a b_X.c d'],
    ['archive.TAR', 'archive_X.TAR'],
  ];
  for (const [name, expected] of cases) {
    test(`${name} + _X = ${expected}`, () => {
      assert.equal(applyFilenameAppend(name, '_X'), expected);
    });
  }
  test('an empty append leaves the name alone', () => {
    assert.equal(applyFilenameAppend('..a', ''), '..a');
  });
});
