import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isSluiceError } from '../../../src/errors.ts';
import {
  type DataFileChunk,
  DEFAULT_CHUNK_SIZE,
  decodeChunk,
  encodeChunk,
} from '../../../src/files/chunk-codec.ts';
import { hex, makeChunk, pseudoRandomBytes, sha512 } from './chunk-helpers.ts';

// ---------------------------------------------------------------------------------------------------------------
// A hand-assembled reference value, element by element, with the headers written out literally (no encoder
// logic), so the encoder is checked against the msgpack spec rather than against itself.

const DATA = Buffer.from('hello world');
const H = sha512(DATA);
const MTIME_1700000000 = hex('cb 41 d9 54 fc 40 00 00 00');

function refElements(): Buffer[] {
  return [
    Buffer.concat([hex('a5'), Buffer.from('a.dat')]), // filename
    Buffer.concat([hex('c4 40'), H]), // file_hash
    Buffer.concat([hex('c4 40'), H]), // chunk_hash
    hex('00'), // chunk_offset_write
    hex('01'), // chunk_i
    hex('01'), // n_total_chunks
    Buffer.concat([hex('a3'), Buffer.from('sub')]), // subdir_str
    hex('a0'), // filename_append
    Buffer.concat([hex('c4 0b'), DATA]), // data
    MTIME_1700000000, // file_mtime
  ];
}

function value(elements: Buffer[], header = elements.length === 10 ? hex('9a') : hex('99')): Buffer {
  return Buffer.concat([header, ...elements]);
}

function withElement(index: number, replacement: Buffer): Buffer {
  const e = refElements();
  e[index] = replacement;
  return value(e);
}

const REF_CHUNK: DataFileChunk = makeChunk(DATA, { filename: 'a.dat', subdirStr: 'sub' });

function assertDecodeError(fn: () => unknown, pattern?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isSluiceError(err, 'SLUICE_CHUNK_DECODE'), `expected SLUICE_CHUNK_DECODE, got ${String(err)}`);
    if (pattern) assert.match((err as Error).message, pattern);
    return true;
  });
}

function assertSameChunk(actual: DataFileChunk | null, expected: DataFileChunk): void {
  assert.ok(actual);
  assert.deepEqual(
    { ...actual, fileHash: actual.fileHash.toString('hex'), chunkHash: actual.chunkHash.toString('hex') },
    {
      ...expected,
      fileHash: expected.fileHash.toString('hex'),
      chunkHash: expected.chunkHash.toString('hex'),
    },
  );
  assert.ok(actual.data.equals(expected.data));
}

// Field positions for a chunk whose filename is 'a' (a1 61): 9a, a1 61, c4 40 <64>, c4 40 <64>, then offset.
const OFFSET_POS = 1 + 2 + 66 + 66;

describe('encodeChunk', () => {
  test('matches the hand-assembled reference value byte for byte', () => {
    assert.deepEqual(encodeChunk(REF_CHUNK), value(refElements()));
  });

  test('DEFAULT_CHUNK_SIZE is 512 KiB', () => {
    assert.equal(DEFAULT_CHUNK_SIZE, 524288);
  });

  test('writes mtime as float64 even when it is integral, and 0 as float64 zero', () => {
    const v = encodeChunk(makeChunk(DATA, { fileMtime: 1700000000 }));
    assert.deepEqual(v.subarray(-9), MTIME_1700000000);
    const z = encodeChunk(makeChunk(DATA, { fileMtime: 0 }));
    assert.deepEqual(z.subarray(-9), hex('cb 00 00 00 00 00 00 00 00'));
    const f = encodeChunk(makeChunk(DATA, { fileMtime: 1712345678.25 }));
    const expected = Buffer.alloc(9);
    expected[0] = 0xcb;
    expected.writeDoubleBE(1712345678.25, 1);
    assert.deepEqual(f.subarray(-9), expected);
  });

  const uintCases: Array<[number, string]> = [
    [0, '00'],
    [1, '01'],
    [127, '7f'],
    [128, 'cc 80'],
    [255, 'cc ff'],
    [256, 'cd 01 00'],
    [65535, 'cd ff ff'],
    [65536, 'ce 00 01 00 00'],
    [4294967295, 'ce ff ff ff ff'],
    [4294967296, 'cf 00 00 00 01 00 00 00 00'],
    [Number.MAX_SAFE_INTEGER, 'cf 00 1f ff ff ff ff ff ff'],
  ];
  for (const [n, header] of uintCases) {
    test(`uint ${n} is written as ${header} in offset, chunk_i and n_total_chunks, and decodes back`, () => {
      const asOffset = encodeChunk(makeChunk(DATA, { chunkOffsetWrite: n }));
      assert.deepEqual(
        asOffset.subarray(OFFSET_POS, OFFSET_POS + hex(header).length + 4),
        Buffer.concat([hex(header), hex('01 01 a0 a0')]),
      );
      assert.equal(decodeChunk(asOffset)?.chunkOffsetWrite, n);
      if (n >= 1) {
        const asIndex = encodeChunk(makeChunk(DATA, { chunkI: n, nTotalChunks: n }));
        const h = hex(header);
        assert.deepEqual(
          asIndex.subarray(OFFSET_POS, OFFSET_POS + 1 + 2 * h.length + 2),
          Buffer.concat([hex('00'), h, h, hex('a0 a0')]),
        );
        const d = decodeChunk(asIndex);
        assert.equal(d?.chunkI, n);
        assert.equal(d?.nTotalChunks, n);
      }
    });
  }

  const strCases: Array<[number, string]> = [
    [0, 'a0'],
    [1, 'a1'],
    [31, 'bf'],
    [32, 'd9 20'],
    [255, 'd9 ff'],
    [256, 'da 01 00'],
    [65535, 'da ff ff'],
    [65536, 'db 00 01 00 00'],
  ];
  for (const [len, header] of strCases) {
    test(`a ${len}-byte string gets header ${header} and decodes back`, () => {
      const name = 'x'.repeat(len);
      const v = encodeChunk(makeChunk(DATA, { filename: name }));
      const h = hex(header);
      assert.deepEqual(v.subarray(1, 1 + h.length), h);
      assert.equal(v[1 + h.length + len], 0xc4, 'file_hash follows the string directly');
      assert.equal(decodeChunk(v)?.filename, name);
      const s = encodeChunk(makeChunk(DATA, { subdirStr: name }));
      assert.equal(decodeChunk(s)?.subdirStr, name);
    });
  }

  test('string headers count UTF-8 bytes, not characters', () => {
    const name = '€'.repeat(11); // 11 characters, 33 bytes
    const v = encodeChunk(makeChunk(DATA, { filename: name }));
    assert.deepEqual(v.subarray(1, 3), hex('d9 21'));
    assert.equal(decodeChunk(v)?.filename, name);
    const ten = '€'.repeat(10); // 30 bytes: fixstr
    assert.equal(encodeChunk(makeChunk(DATA, { filename: ten }))[1], 0xbe);
  });

  const binCases: Array<[number, string]> = [
    [0, 'c4 00'],
    [1, 'c4 01'],
    [255, 'c4 ff'],
    [256, 'c5 01 00'],
    [16384, 'c5 40 00'],
    [65535, 'c5 ff ff'],
    [65536, 'c6 00 01 00 00'],
    [DEFAULT_CHUNK_SIZE, 'c6 00 08 00 00'],
  ];
  for (const [len, header] of binCases) {
    test(`${len} data bytes get header ${header} and decode back`, () => {
      const data = pseudoRandomBytes(len, len + 7);
      const v = encodeChunk(makeChunk(data));
      const h = hex(header);
      const dataPos = OFFSET_POS + 5; // 00 01 01 a0 a0
      assert.deepEqual(v.subarray(dataPos, dataPos + h.length), h);
      assert.equal(v.length, dataPos + h.length + len + 9);
      assert.ok(decodeChunk(v)?.data.equals(data));
    });
  }

  test('empty file: one chunk of empty data whose hashes are SHA-512 of the empty string', () => {
    const emptyHash = hex(
      'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce' +
        '47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e',
    );
    const chunk = makeChunk(Buffer.alloc(0), { filename: 'empty.dat' });
    assert.deepEqual(chunk.chunkHash, emptyHash);
    const v = encodeChunk(chunk);
    assert.deepEqual(v.subarray(-11), Buffer.concat([hex('c4 00'), MTIME_1700000000]));
    const d = decodeChunk(v);
    assertSameChunk(d, chunk);
    assert.equal(d?.data.length, 0);
  });

  test('legacy 9-field layout: header 0x99 and no mtime', () => {
    const v = encodeChunk(REF_CHUNK, { legacyNineFields: true });
    assert.deepEqual(v, value(refElements().slice(0, 9)));
    assert.equal(decodeChunk(v)?.fileMtime, 0);
  });

  test('rejects malformed chunks with SLUICE_USAGE and a message that says what to pass', () => {
    const bad: Array<[Partial<DataFileChunk>, RegExp]> = [
      [{ fileHash: Buffer.alloc(32) }, /fileHash must be a raw 64-byte SHA-512/],
      [{ chunkHash: Buffer.from(H.toString('hex')) }, /not a hex string/],
      [{ chunkI: 0 }, /chunkI 0 is outside 1\.\.nTotalChunks/],
      [{ chunkI: 2, nTotalChunks: 1 }, /chunkI 2 is outside/],
      [{ chunkOffsetWrite: -1 }, /chunkOffsetWrite must be a non-negative safe integer/],
      [{ chunkOffsetWrite: 1.5 }, /chunkOffsetWrite/],
      [{ nTotalChunks: 2 ** 53 }, /nTotalChunks must be a non-negative safe integer/],
      [{ filename: 'bad\ud800name' }, /lone UTF-16 surrogate/],
      [{ fileMtime: Number.NaN }, /fileMtime must be a number/],
    ];
    for (const [override, pattern] of bad) {
      assert.throws(
        () => encodeChunk(makeChunk(DATA, override)),
        (err: unknown) => isSluiceError(err, 'SLUICE_USAGE') && pattern.test((err as Error).message),
        JSON.stringify(Object.keys(override)),
      );
    }
  });
});

describe('decodeChunk', () => {
  test('decodes the reference value into every field', () => {
    assertSameChunk(decodeChunk(value(refElements())), REF_CHUNK);
  });

  test('null and undefined (tombstones) give null', () => {
    assert.equal(decodeChunk(null), null);
    assert.equal(decodeChunk(undefined), null);
  });

  test('data and hashes are zero-copy views of the input', () => {
    const v = value(refElements());
    const d = decodeChunk(v);
    assert.ok(d);
    assert.equal(d.data.buffer, v.buffer);
    assert.equal(d.data.byteOffset, v.byteOffset + v.indexOf(DATA));
    v[v.indexOf(DATA)] = 0x48; // 'h' -> 'H' in the input shows through the decoded view
    assert.equal(d.data.toString(), 'Hello world');
    assert.equal(d.chunkHash.buffer, v.buffer);
  });

  test('accepts a Uint8Array that is not a Buffer', () => {
    const v = value(refElements());
    const u8 = new Uint8Array(v.length + 3);
    u8.set(v, 3);
    assertSameChunk(decodeChunk(u8.subarray(3)), REF_CHUNK);
  });

  test('accepts the 9-field layout (mtime unknown)', () => {
    assertSameChunk(decodeChunk(value(refElements().slice(0, 9))), { ...REF_CHUNK, fileMtime: 0 });
  });

  test('accepts array16/array32 headers with 10 elements', () => {
    assertSameChunk(decodeChunk(value(refElements(), hex('dc 00 0a'))), REF_CHUNK);
    assertSameChunk(decodeChunk(value(refElements(), hex('dd 00 00 00 0a'))), REF_CHUNK);
  });

  test('accepts str in binary positions and bin in string positions', () => {
    const e = refElements();
    e[0] = Buffer.concat([hex('c4 05'), Buffer.from('a.dat')]);
    e[1] = Buffer.concat([hex('d9 40'), H]);
    e[2] = Buffer.concat([hex('da 00 40'), H]);
    e[6] = Buffer.concat([hex('c5 00 03'), Buffer.from('sub')]);
    e[7] = hex('db 00 00 00 00');
    e[8] = Buffer.concat([hex('ab'), DATA]);
    assertSameChunk(decodeChunk(value(e)), REF_CHUNK);
  });

  test('accepts non-minimal integer headers', () => {
    const e = refElements();
    e[3] = hex('cf 00 00 00 00 00 00 00 00');
    e[4] = hex('d0 01');
    e[5] = hex('cd 00 01');
    assertSameChunk(decodeChunk(value(e)), REF_CHUNK);
  });

  test('mtime: float32 and int are accepted; values not greater than 0 (or not finite) mean unknown', () => {
    const f32 = Buffer.alloc(5);
    f32[0] = 0xca;
    f32.writeFloatBE(1700000000, 1);
    const cases: Array<[Buffer, number]> = [
      [f32, 1700000000],
      [hex('ce 65 53 f1 00'), 1700000000],
      [hex('cf 00 00 00 00 65 53 f1 00'), 1700000000],
      [hex('07'), 7],
      [hex('00'), 0],
      [hex('ff'), 0], // -1
      [hex('d3 ff ff ff ff ff ff ff fe'), 0], // -2 as int64
      [hex('cb bf f0 00 00 00 00 00 00'), 0], // -1.0
      [hex('cb 7f f8 00 00 00 00 00 00'), 0], // NaN
      [hex('cb 7f f0 00 00 00 00 00 00'), 0], // +Infinity
    ];
    for (const [bytes, expected] of cases) {
      assert.equal(decodeChunk(withElement(9, bytes))?.fileMtime, expected, bytes.toString('hex'));
    }
  });

  test('a data byte that changed after hashing fails with SLUICE_CHUNK_HASH', () => {
    const v = value(refElements());
    v[v.indexOf(DATA) + 4] ^= 0x01;
    assert.throws(
      () => decodeChunk(v),
      (err: unknown) =>
        isSluiceError(err, 'SLUICE_CHUNK_HASH') &&
        /fails its SHA-512 check/.test((err as Error).message) &&
        /re-upload/.test((err as Error).message),
    );
  });

  test('a chunk_hash that does not match the data fails with SLUICE_CHUNK_HASH', () => {
    const other = sha512(Buffer.from('other'));
    assert.throws(
      () => decodeChunk(withElement(2, Buffer.concat([hex('c4 40'), other]))),
      (err: unknown) => isSluiceError(err, 'SLUICE_CHUNK_HASH'),
    );
  });

  const rejects: Array<[string, Buffer, RegExp]> = [
    ['an empty value', Buffer.alloc(0), /empty \(0 bytes\)/],
    ['msgpack nil', hex('c0'), /starts with msgpack type nil/],
    ['a map', hex('81 a1 61 01'), /starts with msgpack type fixmap/],
    ['a string', Buffer.concat([hex('a5'), Buffer.from('hello')]), /fixstr/],
    ['an array of 8', value(refElements().slice(0, 8), hex('98')), /array of 8 element/],
    ['an array of 11', value([...refElements(), hex('00')], hex('9b')), /array of 11 element/],
    ['array16 of 65535 with no body', hex('dc ff ff'), /array of 65535/],
    ['a trailing byte', Buffer.concat([value(refElements()), hex('00')]), /1 unexpected byte\(s\) follow/],
    [
      'file_hash of 63 bytes',
      withElement(1, Buffer.concat([hex('c4 3f'), H.subarray(0, 63)])),
      /file_hash is 63 bytes/,
    ],
    [
      'chunk_hash of 65 bytes',
      withElement(2, Buffer.concat([hex('c4 41'), H, hex('00')])),
      /chunk_hash is 65 bytes/,
    ],
    ['chunk_i 0', withElement(4, hex('00')), /chunk_i 0 is outside 1\.\.n_total_chunks \(1\)/],
    ['chunk_i above n_total_chunks', withElement(4, hex('02')), /chunk_i 2 is outside/],
    ['n_total_chunks 0', withElement(5, hex('00')), /chunk_i 1 is outside 1\.\.n_total_chunks \(0\)/],
    ['a negative offset', withElement(3, hex('ff')), /chunk_offset_write\) is -1/],
    ['an offset beyond 2^53-1', withElement(3, hex('cf 00 20 00 00 00 00 00 00')), /is 9007199254740992/],
    [
      'a float offset',
      withElement(3, hex('cb 00 00 00 00 00 00 00 00')),
      /type float64 .* expected an integer/,
    ],
    ['a boolean chunk_i', withElement(4, hex('c3')), /field 5 \(chunk_i\) has msgpack type true/],
    [
      'an integer filename',
      withElement(0, hex('01')),
      /field 1 \(filename\) has msgpack type positive fixint/,
    ],
    ['nil data', withElement(8, hex('c0')), /field 9 \(data\) has msgpack type nil/],
    ['nil mtime', withElement(9, hex('c0')), /field 10 \(file_mtime\) has msgpack type nil/],
    ['a string mtime', withElement(9, hex('a1 31')), /file_mtime\) has msgpack type fixstr/],
    ['invalid UTF-8 in filename', withElement(0, hex('a2 c3 28')), /field 1 \(filename\) is not valid UTF-8/],
    [
      'invalid UTF-8 in subdir_str',
      withElement(6, hex('a1 ff')),
      /field 7 \(subdir_str\) is not valid UTF-8/,
    ],
    [
      'a bin32 length past the end',
      withElement(8, hex('c6 ff ff ff ff 00')),
      /truncated: field 9 \(data, 4294967295 bytes\)/,
    ],
  ];
  for (const [name, bytes, pattern] of rejects) {
    test(`rejects ${name} with SLUICE_CHUNK_DECODE`, () => {
      assertDecodeError(() => decodeChunk(bytes), pattern);
    });
  }

  test('error messages say what went wrong and what to do', () => {
    assertDecodeError(
      () => decodeChunk(hex('9a a1')),
      /^Cannot decode chunk message: value is truncated.*quarantine it/,
    );
  });

  test('every truncation of a valid value fails with SLUICE_CHUNK_DECODE', () => {
    const v = value(refElements());
    for (let len = 0; len < v.length; len++) {
      assertDecodeError(() => decodeChunk(v.subarray(0, len)));
    }
  });

  test('garbage never escapes as anything but a SluiceError', () => {
    const valid = value(refElements());
    for (let seed = 1; seed <= 3000; seed++) {
      let bytes: Buffer;
      if (seed % 2 === 0) {
        bytes = pseudoRandomBytes(1 + (seed % 300), seed);
      } else {
        // a valid value with a few bytes overwritten: exercises deeper paths than pure noise
        bytes = Buffer.from(valid);
        const noise = pseudoRandomBytes(6, seed);
        for (let i = 0; i < 3; i++) bytes[(noise[i]! * 7 + seed) % bytes.length] = noise[i + 3]!;
      }
      try {
        decodeChunk(bytes);
      } catch (err) {
        assert.ok(
          isSluiceError(err, 'SLUICE_CHUNK_DECODE') || isSluiceError(err, 'SLUICE_CHUNK_HASH'),
          `seed ${seed}: unexpected ${String(err)}`,
        );
      }
    }
  });

  test('round trip of a 512 KiB chunk in a large file', () => {
    const data = pseudoRandomBytes(DEFAULT_CHUNK_SIZE, 42);
    const chunk = makeChunk(data, {
      filename: 'big.raw',
      subdirStr: 'x/y',
      chunkI: 300,
      nTotalChunks: 4000,
      chunkOffsetWrite: 299 * DEFAULT_CHUNK_SIZE,
      fileHash: sha512(Buffer.from('whole file')),
      filenameAppend: '_copy',
      fileMtime: 1712345678.123456,
    });
    const v = encodeChunk(chunk);
    assertSameChunk(decodeChunk(v), chunk);
    assert.deepEqual(encodeChunk(decodeChunk(v)!), v);
  });
});
