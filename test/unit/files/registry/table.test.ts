import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { isSluiceError } from '../../../../src/errors.ts';
import {
  CONSUMER_IN_PROGRESS_COLUMNS,
  PRODUCER_IN_PROGRESS_COLUMNS,
} from '../../../../src/files/registry/names.ts';
import {
  formatRegistry,
  formatRegistryDatetime,
  parsePythonStrLiteral,
  parseRegistry,
  pythonStrRepr,
  type Row,
  readRegistry,
  writeRegistryAtomic,
} from '../../../../src/files/registry/table.ts';
import { COLUMNS, HARD_STRINGS, SEP, STARTED, STARTED_TEXT } from './fixtures.ts';

const tmpRoot = mkdtempSync(path.join(tmpdir(), 'sluice-registry-'));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));

function registryError(code: string, ...fragments: string[]) {
  return (err: unknown): boolean => {
    assert.ok(isSluiceError(err, code as 'SLUICE_REGISTRY'), `expected ${code}, got ${String(err)}`);
    for (const f of fragments)
      assert.ok((err as Error).message.includes(f), `message lacks ${f}: ${(err as Error).message}`);
    return true;
  };
}

describe('formatRegistry', () => {
  test('writes the exact upstream layout: header, repr cells, QUOTE_MINIMAL, \\n joins, no trailing newline', () => {
    const text = formatRegistry(COLUMNS, [
      {
        filename: 'a;b.txt',
        rel_filepath: 'x/a;b.txt',
        n_chunks: 3,
        started: STARTED,
        chunks: new Set([3, 1, 2]),
      },
      { filename: "it's", rel_filepath: 'p', n_chunks: 0, started: STARTED, chunks: new Set() },
      { filename: 'q"uote', rel_filepath: 'p', n_chunks: -1, started: STARTED, chunks: new Set([16, 8, 1]) },
    ]);
    assert.equal(
      text,
      `${SEP}filename;rel_filepath;n_chunks;started;chunks\n` +
        `"'a;b.txt'";"'x/a;b.txt'";3;${STARTED_TEXT};{1, 2, 3}\n` +
        `"""it's""";'p';0;${STARTED_TEXT};set()\n` +
        `"'q""uote'";'p';-1;${STARTED_TEXT};{1, 8, 16}`,
    );
  });

  test('an empty table is the header alone, without a newline', () => {
    assert.equal(formatRegistry(COLUMNS, []), `${SEP}filename;rel_filepath;n_chunks;started;chunks`);
  });

  test('strings follow Python repr(): quote choice, escapes, printable non-ASCII kept', () => {
    const cases: [string, string][] = [
      ['plain', "'plain'"],
      ["it's", `"it's"`],
      [`a'b"c`, `'a\\'b"c'`],
      ['tab\t', "'tab\\t'"],
      ['\n\r\\', "'\\n\\r\\\\'"],
      ['\0\x07\x1b\x7f', "'\\x00\\x07\\x1b\\x7f'"],
      ['é日😀', "'é日😀'"],
      ['\u00a0\u00ad\x85', "'\\xa0\\xad\\x85'"],
      ['\u200b\u2028\ue000', "'\\u200b\\u2028\\ue000'"],
      ['\u{e0001}', "'\\U000e0001'"],
      ['\ud800', "'\\ud800'"],
    ];
    for (const [value, repr] of cases) assert.equal(pythonStrRepr(value), repr, JSON.stringify(value));
  });

  test('datetimes use naive local time in the upstream format', () => {
    assert.equal(formatRegistryDatetime(new Date(2026, 0, 5, 7, 3, 9, 999)), 'Mon Jan 05, 2026 at 07:03:09');
    assert.equal(formatRegistryDatetime(new Date(2025, 11, 31, 23, 59, 59)), 'Wed Dec 31, 2025 at 23:59:59');
  });

  test('rejects rows with missing or mistyped cells (SLUICE_USAGE), naming row and column', () => {
    const good: Row = {
      filename: 'a',
      rel_filepath: 'a',
      n_chunks: 1,
      started: STARTED,
      chunks: new Set([1]),
    };
    const bad: [Record<string, unknown>, string][] = [
      [{ filename: undefined }, 'column filename'],
      [{ n_chunks: 1.5 }, 'column n_chunks'],
      [{ n_chunks: '3' }, 'column n_chunks'],
      [{ started: new Date(Number.NaN) }, 'column started'],
      [{ started: '2026-01-01' }, 'column started'],
      [{ chunks: [1, 2] }, 'column chunks'],
      [{ chunks: new Set([1.5]) }, 'column chunks'],
    ];
    for (const [override, fragment] of bad) {
      assert.throws(
        () => formatRegistry(COLUMNS, [good, { ...good, ...override } as Row]),
        registryError('SLUICE_USAGE', 'row 1', fragment),
      );
    }
  });

  test('rejects bad column specs', () => {
    assert.throws(() => formatRegistry([], []), registryError('SLUICE_USAGE'));
    assert.throws(() => formatRegistry([{ name: 'a;b', type: 'str' }], []), registryError('SLUICE_USAGE'));
    assert.throws(
      () =>
        formatRegistry(
          [
            { name: 'a', type: 'str' },
            { name: 'a', type: 'int' },
          ],
          [],
        ),
      registryError('SLUICE_USAGE', 'twice'),
    );
    assert.throws(
      () => formatRegistry([{ name: 'a', type: 'float' as 'int' }], []),
      registryError('SLUICE_USAGE', 'float'),
    );
  });
});

describe('parseRegistry', () => {
  test('reads text written by openmsistream 1.8.8 DataclassTable', () => {
    // Produced by upstream's DataclassTable (openmsistream 1.8.8) from the rows below; note the set written in
    // Python's hash order and the tab that upstream's own reader cannot read back.
    const upstream =
      'filename;rel_filepath;n_chunks;started;chunks\n' +
      `"'a;b.txt'";"'x/a;b.txt'";3;'Wed Mar 04, 2026 at 09:18:33';{1, 2, 3}\n` +
      `"""it's""";'p';0;'Wed Mar 04, 2026 at 09:18:33';set()\n` +
      `'tab\\there';'p';0;'Wed Mar 04, 2026 at 09:18:33';{8, 1, 16}\n` +
      `"'q""uote'";'p';0;'Wed Mar 04, 2026 at 09:18:33';{1}\n` +
      `'';'p';0;'Wed Mar 04, 2026 at 09:18:33';{1}`;
    const rows = parseRegistry(upstream, COLUMNS, 'fixture.csv');
    assert.deepEqual(rows, [
      {
        filename: 'a;b.txt',
        rel_filepath: 'x/a;b.txt',
        n_chunks: 3,
        started: STARTED,
        chunks: new Set([1, 2, 3]),
      },
      { filename: "it's", rel_filepath: 'p', n_chunks: 0, started: STARTED, chunks: new Set() },
      {
        filename: 'tab\there',
        rel_filepath: 'p',
        n_chunks: 0,
        started: STARTED,
        chunks: new Set([1, 8, 16]),
      },
      { filename: 'q"uote', rel_filepath: 'p', n_chunks: 0, started: STARTED, chunks: new Set([1]) },
      { filename: '', rel_filepath: 'p', n_chunks: 0, started: STARTED, chunks: new Set([1]) },
    ]);
    // sets come back out ascending
    assert.ok(formatRegistry(COLUMNS, rows).includes(';{1, 8, 16}'));
  });

  test('reads upstream producer and consumer in-progress tables', () => {
    // Written by openmsistream 1.8.8 (RegistryLineInProgress, StreamHandlerRegistryLineInProgress).
    const producer =
      'filename;rel_filepath;n_chunks;n_chunks_delivered;n_chunks_to_send;started;chunks_delivered;chunks_to_send\n' +
      `"'run 1;final.dat'";"'sub dir/run 1;final.dat'";5;2;3;'Wed Mar 04, 2026 at 09:18:33';{1, 2};{3, 4, 5}\n` +
      `'root.dat';'root.dat';1;0;1;'Wed Mar 04, 2026 at 09:18:33';set();{1}`;
    assert.deepEqual(parseRegistry(producer, PRODUCER_IN_PROGRESS_COLUMNS), [
      {
        filename: 'run 1;final.dat',
        rel_filepath: 'sub dir/run 1;final.dat',
        n_chunks: 5,
        n_chunks_delivered: 2,
        n_chunks_to_send: 3,
        started: STARTED,
        chunks_delivered: new Set([1, 2]),
        chunks_to_send: new Set([3, 4, 5]),
      },
      {
        filename: 'root.dat',
        rel_filepath: 'root.dat',
        n_chunks: 1,
        n_chunks_delivered: 0,
        n_chunks_to_send: 1,
        started: STARTED,
        chunks_delivered: new Set(),
        chunks_to_send: new Set([1]),
      },
    ]);
    assert.equal(
      formatRegistry(PRODUCER_IN_PROGRESS_COLUMNS, parseRegistry(producer, PRODUCER_IN_PROGRESS_COLUMNS)),
      SEP + producer,
    );

    const consumer =
      'filename;rel_filepath;status;n_chunks;first_message;most_recent_message\n' +
      `'a\\tb.dat';'x/a\\tb.dat';'mismatched_hash';7;'Wed Mar 04, 2026 at 09:18:33';'Mon Apr 13, 2026 at 14:18:33'`;
    const [row] = parseRegistry(consumer, CONSUMER_IN_PROGRESS_COLUMNS);
    assert.deepEqual(row, {
      filename: 'a\tb.dat',
      rel_filepath: 'x/a\tb.dat',
      status: 'mismatched_hash',
      n_chunks: 7,
      first_message: STARTED,
      most_recent_message: new Date(2026, 3, 13, 14, 18, 33),
    });
  });

  test('round-trips ;  , tabs, both quotes, backslashes, newlines, control and non-ASCII characters', () => {
    const rows: Row[] = HARD_STRINGS.map((s, i) => ({
      filename: s,
      rel_filepath: `dir ${i}/${s}`,
      n_chunks: i * 1_000_000_007,
      started: new Date(1_700_000_000_000 + i * 86_399_000),
      chunks: new Set([i + 5, 1, i * 3 + 2]),
    }));
    const text = formatRegistry(COLUMNS, rows);
    assert.equal(text.split('\n').length, rows.length + 1 + (SEP ? 1 : 0), 'no raw line breaks inside cells');
    assert.deepEqual(parseRegistry(text, COLUMNS), rows);
    assert.equal(formatRegistry(COLUMNS, parseRegistry(text, COLUMNS)), text);
  });

  test('parses every Python string-literal escape', () => {
    const cases: [string, string][] = [
      [`'\\\\ \\' \\" \\a \\b \\f \\n \\r \\t \\v'`, '\\ \' " \x07 \b \f \n \r \t \v'],
      [`'\\0 \\7 \\101 \\1011 \\777'`, '\0 \x07 A A1 \u01ff'],
      [`'\\x41\\xe9 \\u00e9\\u65e5 \\U0001F600'`, 'Aé é日 😀'],
      [`"it's"`, "it's"],
      [`u'x'`, 'x'],
      [`'\\d\\q'`, '\\d\\q'], // unknown escapes stay as written, like Python
      [`''`, ''],
      [`""`, ''],
    ];
    for (const [literal, value] of cases) assert.equal(parsePythonStrLiteral(literal), value, literal);
    for (const bad of [
      `abc`,
      `'abc`,
      `'a'b'`,
      `'a' `,
      `'\\x4'`,
      `'\\N{BULLET}'`,
      `'\\U00110000'`,
      `'''a'''`,
      `b'a'`,
      `'a\\'`,
    ]) {
      assert.throws(() => parsePythonStrLiteral(bad), Error, bad);
    }
  });

  test('reads sets in any order and spacing, ints with a sign, datetimes case-insensitively', () => {
    const text =
      'filename;rel_filepath;n_chunks;started;chunks\n' +
      `'a';'a';+7;'wed MAR 4, 2026 at 9:18:33';{ 5,3 ,1, }\n` +
      `'b';'b';-5;${STARTED_TEXT};set( )`;
    assert.deepEqual(parseRegistry(text, COLUMNS), [
      { filename: 'a', rel_filepath: 'a', n_chunks: 7, started: STARTED, chunks: new Set([1, 3, 5]) },
      { filename: 'b', rel_filepath: 'b', n_chunks: -5, started: STARTED, chunks: new Set() },
    ]);
  });

  test('empty text, a header alone, blank lines, CRLF and a leading sep=; line are accepted', () => {
    assert.deepEqual(parseRegistry('', COLUMNS), []);
    assert.deepEqual(parseRegistry('filename;rel_filepath;n_chunks;started;chunks', COLUMNS), []);
    const line = `'a';'a';1;${STARTED_TEXT};{1}`;
    const rows = parseRegistry(
      `sep=;\r\nfilename;rel_filepath;n_chunks;started;chunks\r\n\r\n${line}\r\n`,
      COLUMNS,
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.filename, 'a');
  });

  test('malformed lines throw SLUICE_REGISTRY naming the file, the line and the fix', () => {
    const header = 'filename;rel_filepath;n_chunks;started;chunks';
    const ok = `'a';'a';1;${STARTED_TEXT};{1}`;
    const cases: [string, number, string][] = [
      // the production failure of issue #104: a cell that is not a literal
      [`${header}\n${ok}\na\tb;'a';1;${STARTED_TEXT};{1}`, 3, 'column filename'],
      [`${header}\n${ok}\n'a;b';'a';1;${STARTED_TEXT};{1}`, 3, 'has 6 cells but the header has 5'],
      [`${header}\n${ok}\n'a';'a';1`, 3, 'has 3 cells'],
      [`${header}\n\n${ok}\n'a';'a';x;${STARTED_TEXT};{1}`, 4, 'column n_chunks'],
      [`${header}\n'a';'a';1;'Wed Feb 30, 2026 at 09:18:33';{1}`, 2, 'not a valid calendar date'],
      [`${header}\n'a';'a';1;'2026-03-04 09:18:33';{1}`, 2, 'column started'],
      [`${header}\n'a';'a';1;${STARTED_TEXT};{}`, 2, 'column chunks'],
      [`${header}\n'a';'a';1;${STARTED_TEXT};{1, x}`, 2, 'column chunks'],
      [`${header}\n'a';'a';99999999999999999;${STARTED_TEXT};{1}`, 2, 'safe integer'],
      [`${header}\n"'a\nb'";'a';1;${STARTED_TEXT};{1}`, 2, 'raw line break'],
      [`${header}\n"'a';'a';1;${STARTED_TEXT};{1}`, 2, 'never closed'],
      [`filename;n_chunks\n${ok}`, 1, 'does not match the expected'],
      [`sep=;\nfilename;n_chunks\n${ok}`, 2, 'does not match the expected'],
    ];
    for (const [text, line, fragment] of cases) {
      assert.throws(
        () => parseRegistry(text, COLUMNS, '/logs/x.csv'),
        registryError('SLUICE_REGISTRY', `/logs/x.csv, line ${line}:`, fragment, 'Repair that line'),
        text,
      );
    }
  });

  test('line numbers count quoted line breaks', () => {
    const header = 'filename;rel_filepath;n_chunks;started;chunks';
    // a quoted cell spanning two lines (not something sluice writes) pushes the next record to line 4
    const text = `${header}\n'a';'a';1;${STARTED_TEXT};"{1,\n2}"\n'a';'a';x;${STARTED_TEXT};{1}`;
    assert.throws(() => parseRegistry(text, COLUMNS, 'f'), registryError('SLUICE_REGISTRY', 'f, line 4:'));
    assert.deepEqual(
      parseRegistry(text.slice(0, text.lastIndexOf('\n')), COLUMNS)[0]?.chunks,
      new Set([1, 2]),
    );
    const text2 = `${header}\n'a';"'a;\n'";1;${STARTED_TEXT};{1}`;
    assert.throws(
      () => parseRegistry(text2, COLUMNS, 'f'),
      registryError('SLUICE_REGISTRY', 'line 2', 'raw line break'),
    );
    const text3 = `${header}\n"'a;b'";'a';1;${STARTED_TEXT};{1}\n\n'a';'a';x;${STARTED_TEXT};{1}`;
    assert.throws(() => parseRegistry(text3, COLUMNS, 'f'), registryError('SLUICE_REGISTRY', 'f, line 4:'));
  });
});

describe('registry files', () => {
  const rows: Row[] = [
    { filename: 'a;b', rel_filepath: 'x/a;b', n_chunks: 2, started: STARTED, chunks: new Set([2, 1]) },
    { filename: 'tab\t', rel_filepath: 'tab\t', n_chunks: 1, started: STARTED, chunks: new Set() },
  ];

  test('a missing file reads as no rows', async () => {
    assert.deepEqual(await readRegistry(path.join(tmpRoot, 'nope', 'missing.csv'), COLUMNS), []);
  });

  test('writes atomically (creating the directory), reads back, overwrites, leaves no temp files', async () => {
    const dir = path.join(tmpRoot, 'w1', 'LOGS');
    const file = path.join(dir, 'uploaded_to_t.csv');
    await writeRegistryAtomic(file, COLUMNS, rows);
    assert.equal(readFileSync(file, 'utf8'), formatRegistry(COLUMNS, rows));
    assert.deepEqual(await readRegistry(file, COLUMNS), rows);
    await writeRegistryAtomic(file, COLUMNS, rows.slice(1));
    assert.deepEqual(await readRegistry(file, COLUMNS), rows.slice(1));
    assert.deepEqual(readdirSync(dir), ['uploaded_to_t.csv']);
  });

  test('bad rows fail before the file is touched', async () => {
    const dir = path.join(tmpRoot, 'w2');
    const file = path.join(dir, 'r.csv');
    await writeRegistryAtomic(file, COLUMNS, rows);
    const before = readFileSync(file, 'utf8');
    await assert.rejects(
      writeRegistryAtomic(file, COLUMNS, [{ ...rows[0], n_chunks: Number.NaN } as Row]),
      registryError('SLUICE_USAGE'),
    );
    assert.equal(readFileSync(file, 'utf8'), before);
    assert.deepEqual(readdirSync(dir), ['r.csv']);
  });

  test('file-system errors are SLUICE_IO and leave no temp file', async () => {
    const dir = path.join(tmpRoot, 'w3');
    await writeRegistryAtomic(path.join(dir, 'r.csv'), COLUMNS, rows);
    // the target is a non-empty directory: rename fails
    const target = path.join(dir, 'target.csv');
    await writeRegistryAtomic(path.join(target, 'inner.csv'), COLUMNS, rows);
    await assert.rejects(
      writeRegistryAtomic(target, COLUMNS, rows),
      registryError('SLUICE_IO', target, 'writable'),
    );
    assert.deepEqual(readdirSync(dir).sort(), ['r.csv', 'target.csv']);
    // a parent that is a file
    await assert.rejects(
      writeRegistryAtomic(path.join(dir, 'r.csv', 'x.csv'), COLUMNS, rows),
      registryError('SLUICE_IO'),
    );
    await assert.rejects(readRegistry(target, COLUMNS), registryError('SLUICE_IO', target));
  });

  test('reading reports the file path; invalid UTF-8 is SLUICE_REGISTRY', async () => {
    const file = path.join(tmpRoot, 'bad.csv');
    writeFileSync(file, "filename;rel_filepath;n_chunks;started;chunks\n'a';'a';1");
    await assert.rejects(readRegistry(file, COLUMNS), registryError('SLUICE_REGISTRY', `${file}, line 2:`));
    writeFileSync(file, Buffer.concat([Buffer.from("filename\n'"), Buffer.from([0xff]), Buffer.from("'")]));
    await assert.rejects(
      readRegistry(file, [{ name: 'filename', type: 'str' }]),
      registryError('SLUICE_REGISTRY', file, 'UTF-8'),
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// cross-checks against real Python
