import { createHash } from 'node:crypto';
import type { DataFileChunk } from '../../../src/files/chunk-codec.ts';

export function sha512(data: Uint8Array): Buffer {
  return createHash('sha512').update(data).digest();
}

/** A valid single-chunk file holding `data`, with overrides applied after the hashes are computed. */
export function makeChunk(data: Buffer, overrides: Partial<DataFileChunk> = {}): DataFileChunk {
  return {
    filename: 'a',
    fileHash: sha512(data),
    chunkHash: sha512(data),
    chunkOffsetWrite: 0,
    chunkI: 1,
    nTotalChunks: 1,
    subdirStr: '',
    filenameAppend: '',
    data,
    fileMtime: 1700000000,
    ...overrides,
  };
}

/** Deterministic bytes for tests (xorshift32), so failures reproduce. */
export function pseudoRandomBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}
