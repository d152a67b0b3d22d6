import { createHash } from 'node:crypto';
import { type DataFileChunk, encodeChunk } from '../../../src/files/chunk-codec.ts';
import { chunkKey } from '../../../src/files/chunk-key.ts';
import type { ProduceRecord } from '../../../src/transport/types.ts';

const sha512 = (b: Uint8Array): Buffer => createHash('sha512').update(b).digest();

/** Splits `data` into OpenMSIStream chunks, as an uploader would. */
export function chunkFile(
  data: Buffer,
  where: { subdir?: string; filename: string; chunkSize?: number; mtime?: number },
): DataFileChunk[] {
  const size = where.chunkSize ?? 4096;
  const n = Math.max(1, Math.ceil(data.length / size));
  const fileHash = sha512(data);
  return Array.from({ length: n }, (_, i) => {
    const part = data.subarray(i * size, Math.min((i + 1) * size, data.length));
    return {
      filename: where.filename,
      fileHash,
      chunkHash: sha512(part),
      chunkOffsetWrite: i * size,
      chunkI: i + 1,
      nTotalChunks: n,
      subdirStr: where.subdir ?? '',
      filenameAppend: '',
      data: part,
      fileMtime: where.mtime ?? 1_700_000_000,
    };
  });
}

export function chunkRecords(topic: string, chunks: DataFileChunk[], partitions: number): ProduceRecord[] {
  return chunks.map((c, i) => ({
    topic,
    key: chunkKey(c.subdirStr, c.filename, c.chunkI, c.nTotalChunks),
    value: encodeChunk(c),
    partition: i % partitions,
  }));
}

/** Deterministic shuffle (so a failure reproduces). */
export function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let x = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export function bytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
