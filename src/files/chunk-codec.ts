/**
 * The OpenMSIStream chunk message value: one msgpack array per file chunk, byte-identical with what
 * OpenMSIStream's `DataFileChunkSerializer` writes (shared/spec/openmsistream-compat.md, section 1).
 *
 * The encoder is hand-written on purpose: a generic msgpack encoder writes integral numbers as ints, while
 * upstream always writes field 10 (mtime) as float64, and byte identity needs the smallest str/bin/uint headers.
 * The decoder accepts everything upstream accepts (9 or 10 fields, str or bin in any string/binary position,
 * float64/float32/int mtime), then checks more than upstream does (hash lengths, chunk index range, strict UTF-8,
 * no trailing bytes). It is zero-copy: `data`, `fileHash` and `chunkHash` of a decoded chunk are views into the
 * input buffer, so copy them before reusing that buffer.
 */

import { Buffer, isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { SluiceError } from '../errors.ts';

/** Upstream's default chunk size in bytes (512 KiB). */
export const DEFAULT_CHUNK_SIZE = 524288;

/** Length in bytes of a SHA-512 digest, the only hash length the format carries. */
export const SHA512_LENGTH = 64;

/** One chunk of a data file, as carried in an OpenMSIStream chunk message value. */
export interface DataFileChunk {
  /** Base name of the source file, without `filenameAppend`. */
  filename: string;
  /** Raw 64-byte SHA-512 of all uploaded bytes of the file. */
  fileHash: Buffer;
  /** Raw 64-byte SHA-512 of `data`. */
  chunkHash: Buffer;
  /** Byte offset of this chunk in the rebuilt file. */
  chunkOffsetWrite: number;
  /** Chunk index, 1-based. */
  chunkI: number;
  /** Number of chunks in the file. */
  nTotalChunks: number;
  /** Parent directory relative to the upload root, `/`-separated; `''` at the root. */
  subdirStr: string;
  /** Usually `''`; when set, the consumer writes `stem + append + suffix`. */
  filenameAppend: string;
  /** The chunk bytes. */
  data: Buffer;
  /** Source file mtime in epoch seconds; `0` means unknown. */
  fileMtime: number;
}

export interface EncodeChunkOptions {
  /**
   * Write the legacy 9-field layout (no mtime, array header `0x99`) that OpenMSIStream producers sent before
   * field 10 existed. Only for interop tests against old consumers.
   */
  legacyNineFields?: boolean;
}

const FIELD_NAMES = [
  'filename',
  'file_hash',
  'chunk_hash',
  'chunk_offset_write',
  'chunk_i',
  'n_total_chunks',
  'subdir_str',
  'filename_append',
  'data',
  'file_mtime',
] as const;

const LONE_SURROGATE = /\p{Cs}/u;

// ---------------------------------------------------------------------------------------------------------------
// encoding

function usageError(message: string): SluiceError {
  return new SluiceError('SLUICE_USAGE', message);
}

function checkString(value: unknown, field: string): string {
  if (typeof value !== 'string') {
    throw usageError(`Cannot encode chunk: ${field} must be a string, got ${typeof value}. Pass a string.`);
  }
  if (LONE_SURROGATE.test(value)) {
    throw usageError(
      `Cannot encode chunk: ${field} ${JSON.stringify(value)} contains a lone UTF-16 surrogate, which has no ` +
        'UTF-8 encoding. Fix the name (it usually comes from a mis-decoded path).',
    );
  }
  return value;
}

function checkUint(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw usageError(
      `Cannot encode chunk: ${field} must be a non-negative safe integer, got ${String(value)}. Pass a whole number.`,
    );
  }
  return value;
}

function checkBytes(value: unknown, field: string, exactLength?: number): Buffer {
  if (!Buffer.isBuffer(value)) {
    throw usageError(`Cannot encode chunk: ${field} must be a Buffer. Wrap the bytes with Buffer.from().`);
  }
  if (exactLength !== undefined && value.length !== exactLength) {
    throw usageError(
      `Cannot encode chunk: ${field} must be a raw ${exactLength}-byte SHA-512 digest, got ${value.length} bytes. ` +
        "Pass createHash('sha512').update(bytes).digest(), not a hex string.",
    );
  }
  return value;
}

function uintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n <= 0xff) return 2;
  if (n <= 0xffff) return 3;
  if (n <= 0xffffffff) return 5;
  return 9;
}

function writeUint(out: Buffer, pos: number, n: number): number {
  if (n < 0x80) {
    out[pos] = n;
    return pos + 1;
  }
  if (n <= 0xff) {
    out[pos] = 0xcc;
    out[pos + 1] = n;
    return pos + 2;
  }
  if (n <= 0xffff) {
    out[pos] = 0xcd;
    out.writeUInt16BE(n, pos + 1);
    return pos + 3;
  }
  if (n <= 0xffffffff) {
    out[pos] = 0xce;
    out.writeUInt32BE(n, pos + 1);
    return pos + 5;
  }
  out[pos] = 0xcf;
  out.writeBigUInt64BE(BigInt(n), pos + 1);
  return pos + 9;
}

function strHeaderSize(len: number): number {
  if (len < 32) return 1;
  if (len <= 0xff) return 2;
  if (len <= 0xffff) return 3;
  return 5;
}

function writeStrHeader(out: Buffer, pos: number, len: number): number {
  if (len < 32) {
    out[pos] = 0xa0 | len;
    return pos + 1;
  }
  if (len <= 0xff) {
    out[pos] = 0xd9;
    out[pos + 1] = len;
    return pos + 2;
  }
  if (len <= 0xffff) {
    out[pos] = 0xda;
    out.writeUInt16BE(len, pos + 1);
    return pos + 3;
  }
  out[pos] = 0xdb;
  out.writeUInt32BE(len, pos + 1);
  return pos + 5;
}

function binHeaderSize(len: number): number {
  if (len <= 0xff) return 2;
  if (len <= 0xffff) return 3;
  return 5;
}

function writeBinHeader(out: Buffer, pos: number, len: number): number {
  if (len <= 0xff) {
    out[pos] = 0xc4;
    out[pos + 1] = len;
    return pos + 2;
  }
  if (len <= 0xffff) {
    out[pos] = 0xc5;
    out.writeUInt16BE(len, pos + 1);
    return pos + 3;
  }
  out[pos] = 0xc6;
  out.writeUInt32BE(len, pos + 1);
  return pos + 5;
}

function writeStr(out: Buffer, pos: number, value: string, byteLength: number): number {
  pos = writeStrHeader(out, pos, byteLength);
  return pos + out.write(value, pos, byteLength, 'utf8');
}

function writeBin(out: Buffer, pos: number, value: Buffer): number {
  pos = writeBinHeader(out, pos, value.length);
  return pos + value.copy(out, pos);
}

/**
 * Encode a chunk as the msgpack value OpenMSIStream's `DataFileChunkSerializer` writes, byte for byte.
 * Validates shapes (hash lengths, integer ranges, 1 <= chunkI <= nTotalChunks) and throws `SLUICE_USAGE` on a
 * malformed chunk; it does not recompute `chunkHash` (the producer has just computed it).
 */
export function encodeChunk(chunk: DataFileChunk, options: EncodeChunkOptions = {}): Buffer {
  const data = checkBytes(chunk.data, 'data');
  const { value, dataOffset } = allocChunkValue(chunk, data.length, options);
  data.copy(value, dataOffset);
  return value;
}

/**
 * The value `encodeChunk` writes, with every field written but the chunk data: `value[dataOffset, dataOffset +
 * dataLength)` is left for the caller to fill (e.g. by reading the file straight into it, saving a copy). Same
 * checks as `encodeChunk`; `chunk.data` is not used. `alloc` makes the buffer (e.g. from a pool).
 */
export function allocChunkValue(
  chunk: Omit<DataFileChunk, 'data'>,
  dataLength: number,
  options: EncodeChunkOptions = {},
  alloc: (size: number) => Buffer = Buffer.allocUnsafe,
): { value: Buffer; dataOffset: number } {
  const filename = checkString(chunk.filename, 'filename');
  const subdirStr = checkString(chunk.subdirStr, 'subdirStr');
  const filenameAppend = checkString(chunk.filenameAppend, 'filenameAppend');
  const fileHash = checkBytes(chunk.fileHash, 'fileHash', SHA512_LENGTH);
  const chunkHash = checkBytes(chunk.chunkHash, 'chunkHash', SHA512_LENGTH);
  const length = checkUint(dataLength, 'data length');
  const offset = checkUint(chunk.chunkOffsetWrite, 'chunkOffsetWrite');
  const chunkI = checkUint(chunk.chunkI, 'chunkI');
  const nTotal = checkUint(chunk.nTotalChunks, 'nTotalChunks');
  if (chunkI < 1 || chunkI > nTotal) {
    throw usageError(
      `Cannot encode chunk: chunkI ${chunkI} is outside 1..nTotalChunks (${nTotal}). Chunk indices are 1-based.`,
    );
  }
  const legacy = options.legacyNineFields === true;
  let mtime = 0;
  if (!legacy) {
    if (typeof chunk.fileMtime !== 'number' || Number.isNaN(chunk.fileMtime)) {
      throw usageError(
        `Cannot encode chunk: fileMtime must be a number of epoch seconds (0 = unknown), got ${String(chunk.fileMtime)}.`,
      );
    }
    mtime = chunk.fileMtime;
  }

  const filenameLen = Buffer.byteLength(filename, 'utf8');
  const subdirLen = Buffer.byteLength(subdirStr, 'utf8');
  const appendLen = Buffer.byteLength(filenameAppend, 'utf8');
  const size =
    1 +
    strHeaderSize(filenameLen) +
    filenameLen +
    2 * (2 + SHA512_LENGTH) +
    uintSize(offset) +
    uintSize(chunkI) +
    uintSize(nTotal) +
    strHeaderSize(subdirLen) +
    subdirLen +
    strHeaderSize(appendLen) +
    appendLen +
    binHeaderSize(length) +
    length +
    (legacy ? 0 : 9);

  const out = alloc(size);
  out[0] = legacy ? 0x99 : 0x9a;
  let pos = 1;
  pos = writeStr(out, pos, filename, filenameLen);
  pos = writeBin(out, pos, fileHash);
  pos = writeBin(out, pos, chunkHash);
  pos = writeUint(out, pos, offset);
  pos = writeUint(out, pos, chunkI);
  pos = writeUint(out, pos, nTotal);
  pos = writeStr(out, pos, subdirStr, subdirLen);
  pos = writeStr(out, pos, filenameAppend, appendLen);
  pos = writeBinHeader(out, pos, length);
  const dataOffset = pos;
  pos += length;
  if (!legacy) {
    out[pos] = 0xcb;
    out.writeDoubleBE(mtime, pos + 1);
  }
  return { value: out, dataOffset };
}

// ---------------------------------------------------------------------------------------------------------------
// decoding

const HINT =
  'The message is not a valid OpenMSIStream chunk value (it was cut short, corrupted, or written by another ' +
  'program to this topic); quarantine it and check what produces to the topic.';

function decodeError(message: string, details: Record<string, unknown> = {}): SluiceError {
  return new SluiceError('SLUICE_CHUNK_DECODE', `Cannot decode chunk message: ${message}. ${HINT}`, {
    details,
  });
}

function describeType(b: number): string {
  if (b <= 0x7f) return 'positive fixint';
  if (b <= 0x8f) return 'fixmap';
  if (b <= 0x9f) return 'fixarray';
  if (b <= 0xbf) return 'fixstr';
  if (b >= 0xe0) return 'negative fixint';
  const names: Record<number, string> = {
    192: 'nil',
    193: 'never-used byte 0xc1',
    194: 'false',
    195: 'true',
    196: 'bin8',
    197: 'bin16',
    198: 'bin32',
    199: 'ext8',
    200: 'ext16',
    201: 'ext32',
    202: 'float32',
    203: 'float64',
    204: 'uint8',
    205: 'uint16',
    206: 'uint32',
    207: 'uint64',
    208: 'int8',
    209: 'int16',
    210: 'int32',
    211: 'int64',
    212: 'fixext1',
    213: 'fixext2',
    214: 'fixext4',
    215: 'fixext8',
    216: 'fixext16',
    217: 'str8',
    218: 'str16',
    219: 'str32',
    220: 'array16',
    221: 'array32',
    222: 'map16',
    223: 'map32',
  };
  return names[b] ?? `0x${b.toString(16)}`;
}

class Reader {
  pos = 0;
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }

  need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw decodeError(
        `value is truncated: ${what} needs ${n} byte(s) at offset ${this.pos} but only ` +
          `${this.buf.length - this.pos} remain of ${this.buf.length}`,
        { offset: this.pos, length: this.buf.length },
      );
    }
  }

  typeByte(field: number): number {
    this.need(1, `field ${field + 1} (${FIELD_NAMES[field]})`);
    return this.buf[this.pos++]!;
  }

  /** str or bin of any width; returns a zero-copy view. */
  bytes(field: number): Buffer {
    const at = this.pos;
    const t = this.typeByte(field);
    let len: number;
    if (t >= 0xa0 && t <= 0xbf) {
      len = t & 0x1f;
    } else if (t === 0xc4 || t === 0xd9) {
      this.need(1, `the length of field ${field + 1} (${FIELD_NAMES[field]})`);
      len = this.buf[this.pos]!;
      this.pos += 1;
    } else if (t === 0xc5 || t === 0xda) {
      this.need(2, `the length of field ${field + 1} (${FIELD_NAMES[field]})`);
      len = this.buf.readUInt16BE(this.pos);
      this.pos += 2;
    } else if (t === 0xc6 || t === 0xdb) {
      this.need(4, `the length of field ${field + 1} (${FIELD_NAMES[field]})`);
      len = this.buf.readUInt32BE(this.pos);
      this.pos += 4;
    } else {
      throw decodeError(
        `field ${field + 1} (${FIELD_NAMES[field]}) has msgpack type ${describeType(t)} at offset ${at}; ` +
          'expected a str or bin',
        { field: FIELD_NAMES[field], offset: at },
      );
    }
    this.need(len, `field ${field + 1} (${FIELD_NAMES[field]}, ${len} bytes)`);
    const view = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return view;
  }

  text(field: number): string {
    const view = this.bytes(field);
    if (!isUtf8(view)) {
      throw decodeError(`field ${field + 1} (${FIELD_NAMES[field]}) is not valid UTF-8`, {
        field: FIELD_NAMES[field],
      });
    }
    return view.toString('utf8');
  }

  /** Any msgpack integer; returns a number or, when it cannot be a safe integer, a bigint. */
  int(field: number): number | bigint | undefined {
    const t = this.buf[this.pos];
    if (t === undefined) return undefined;
    const b = this.buf;
    const p = this.pos + 1;
    const what = `field ${field + 1} (${FIELD_NAMES[field]})`;
    if (t <= 0x7f) {
      this.pos += 1;
      return t;
    }
    if (t >= 0xe0) {
      this.pos += 1;
      return t - 0x100;
    }
    switch (t) {
      case 0xcc:
        this.pos += 1;
        this.need(1, what);
        this.pos += 1;
        return b[p]!;
      case 0xcd:
        this.pos += 1;
        this.need(2, what);
        this.pos += 2;
        return b.readUInt16BE(p);
      case 0xce:
        this.pos += 1;
        this.need(4, what);
        this.pos += 4;
        return b.readUInt32BE(p);
      case 0xcf: {
        this.pos += 1;
        this.need(8, what);
        this.pos += 8;
        const v = b.readBigUInt64BE(p);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case 0xd0:
        this.pos += 1;
        this.need(1, what);
        this.pos += 1;
        return b.readInt8(p);
      case 0xd1:
        this.pos += 1;
        this.need(2, what);
        this.pos += 2;
        return b.readInt16BE(p);
      case 0xd2:
        this.pos += 1;
        this.need(4, what);
        this.pos += 4;
        return b.readInt32BE(p);
      case 0xd3: {
        this.pos += 1;
        this.need(8, what);
        this.pos += 8;
        const v = b.readBigInt64BE(p);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      }
      default:
        return undefined;
    }
  }

  uint(field: number): number {
    const at = this.pos;
    const v = this.int(field);
    if (v === undefined) {
      const t = this.typeByte(field);
      throw decodeError(
        `field ${field + 1} (${FIELD_NAMES[field]}) has msgpack type ${describeType(t)} at offset ${at}; ` +
          'expected an integer',
        { field: FIELD_NAMES[field], offset: at },
      );
    }
    if (typeof v === 'bigint' || v < 0) {
      throw decodeError(
        `field ${field + 1} (${FIELD_NAMES[field]}) is ${String(v)}, outside 0..${Number.MAX_SAFE_INTEGER}`,
        { field: FIELD_NAMES[field], offset: at },
      );
    }
    return v;
  }

  /** Field 10: float64, float32 or any int; anything not greater than 0 (or not finite) means unknown (0). */
  mtime(): number {
    const field = 9;
    const at = this.pos;
    const t = this.buf[this.pos];
    let v: number;
    if (t === 0xcb) {
      this.pos += 1;
      this.need(8, 'field 10 (file_mtime)');
      v = this.buf.readDoubleBE(this.pos);
      this.pos += 8;
    } else if (t === 0xca) {
      this.pos += 1;
      this.need(4, 'field 10 (file_mtime)');
      v = this.buf.readFloatBE(this.pos);
      this.pos += 4;
    } else {
      const i = this.int(field);
      if (i === undefined) {
        const tb = this.typeByte(field);
        throw decodeError(
          `field 10 (file_mtime) has msgpack type ${describeType(tb)} at offset ${at}; expected a float or an integer`,
          { field: 'file_mtime', offset: at },
        );
      }
      v = Number(i);
    }
    return Number.isFinite(v) && v > 0 ? v : 0;
  }
}

/**
 * Decode an OpenMSIStream chunk message value. `null`/`undefined` (a tombstone) gives `null`.
 *
 * Throws `SLUICE_CHUNK_DECODE` for anything that is not a well-formed chunk value (truncated, trailing bytes,
 * wrong field count or types, invalid UTF-8, hashes that are not 64 bytes, chunk index outside
 * 1..n_total_chunks) and `SLUICE_CHUNK_HASH` when the SHA-512 of `data` differs from `chunk_hash`.
 * The returned Buffers are views into `value` (zero-copy).
 */
export function decodeChunk(value: Buffer | Uint8Array | null | undefined): DataFileChunk | null {
  if (value === null || value === undefined) return null;
  const buf = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (buf.length === 0) {
    throw decodeError('value is empty (0 bytes); a tombstone must arrive as a null value, not an empty one');
  }
  const r = new Reader(buf);
  const head = buf[0]!;
  let count: number;
  if (head >= 0x90 && head <= 0x9f) {
    count = head & 0x0f;
    r.pos = 1;
  } else if (head === 0xdc) {
    r.pos = 1;
    r.need(2, 'the array16 length');
    count = buf.readUInt16BE(1);
    r.pos = 3;
  } else if (head === 0xdd) {
    r.pos = 1;
    r.need(4, 'the array32 length');
    count = buf.readUInt32BE(1);
    r.pos = 5;
  } else {
    throw decodeError(
      `value starts with msgpack type ${describeType(head)}; expected an array of 9 or 10 fields`,
    );
  }
  if (count !== 9 && count !== 10) {
    throw decodeError(`value is an array of ${count} element(s); expected 9 or 10 fields`, { fields: count });
  }

  const filename = r.text(0);
  const fileHash = r.bytes(1);
  const chunkHash = r.bytes(2);
  const chunkOffsetWrite = r.uint(3);
  const chunkI = r.uint(4);
  const nTotalChunks = r.uint(5);
  const subdirStr = r.text(6);
  const filenameAppend = r.text(7);
  const data = r.bytes(8);
  const fileMtime = count === 10 ? r.mtime() : 0;
  if (r.pos !== buf.length) {
    throw decodeError(`${buf.length - r.pos} unexpected byte(s) follow the array at offset ${r.pos}`, {
      offset: r.pos,
    });
  }

  const where = { filename, subdirStr, chunkI, nTotalChunks };
  if (fileHash.length !== SHA512_LENGTH) {
    throw decodeError(
      `file_hash is ${fileHash.length} bytes; a raw SHA-512 digest is ${SHA512_LENGTH}`,
      where,
    );
  }
  if (chunkHash.length !== SHA512_LENGTH) {
    throw decodeError(
      `chunk_hash is ${chunkHash.length} bytes; a raw SHA-512 digest is ${SHA512_LENGTH}`,
      where,
    );
  }
  if (chunkI < 1 || chunkI > nTotalChunks) {
    throw decodeError(
      `chunk_i ${chunkI} is outside 1..n_total_chunks (${nTotalChunks}) for ${JSON.stringify(filename)}`,
      where,
    );
  }
  const actual = createHash('sha512').update(data).digest();
  if (!actual.equals(chunkHash)) {
    throw new SluiceError(
      'SLUICE_CHUNK_HASH',
      `Chunk ${chunkI}/${nTotalChunks} of ${JSON.stringify(subdirStr ? `${subdirStr}/${filename}` : filename)} ` +
        `(offset ${chunkOffsetWrite}, ${data.length} bytes) fails its SHA-512 check: the data was corrupted ` +
        'after the producer hashed it. Quarantine the message and re-upload the file from the source.',
      {
        details: {
          ...where,
          chunkOffsetWrite,
          expected: chunkHash.toString('hex'),
          actual: actual.toString('hex'),
        },
      },
    );
  }
  return {
    filename,
    fileHash,
    chunkHash,
    chunkOffsetWrite,
    chunkI,
    nTotalChunks,
    subdirStr,
    filenameAppend,
    data,
    fileMtime,
  };
}
