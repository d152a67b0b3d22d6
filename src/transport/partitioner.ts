import type { Partitioner } from './types.ts';

/**
 * Kafka's murmur2 (the Java client's `Utils.murmur2`), on the key's bytes. Seed 0x9747b28c, m 0x5bd1e995, r 24.
 * Kafka picks the partition as `(murmur2(key) & 0x7fffffff) % partitionCount`.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  const m = 0x5bd1e995;
  let h = (0x9747b28c ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k =
      (data[i4]! & 0xff) |
      ((data[i4 + 1]! & 0xff) << 8) |
      ((data[i4 + 2]! & 0xff) << 16) |
      ((data[i4 + 3]! & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const rest = length & 3;
  const base = length & ~3;
  if (rest === 3) h ^= (data[base + 2]! & 0xff) << 16;
  if (rest >= 2) h ^= (data[base + 1]! & 0xff) << 8;
  if (rest >= 1) {
    h ^= data[base]! & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition Kafka's Java client's default partitioner picks for a keyed record. */
export function partitionForKey(key: Uint8Array, partitionCount: number): number {
  return (murmur2(key) & 0x7fffffff) % partitionCount;
}

/** Turns a `Partitioner` option into a function; keyless records (and `round-robin`) rotate per topic. */
export function makePartitioner(
  partitioner: Partitioner = 'murmur2',
): (topic: string, key: Buffer | null, partitionCount: number) => number {
  const counters = new Map<string, number>();
  const next = (topic: string, n: number): number => {
    const c = counters.get(topic) ?? 0;
    counters.set(topic, c + 1);
    return c % n;
  };
  if (typeof partitioner === 'function') return (_topic, key, n) => partitioner(key, n);
  if (partitioner === 'round-robin') return (topic, _key, n) => next(topic, n);
  return (topic, key, n) => (key === null ? next(topic, n) : partitionForKey(key, n));
}

export function toBuffer(v: Buffer | string): Buffer;
export function toBuffer(v: Buffer | string | null | undefined): Buffer | null;
export function toBuffer(v: Buffer | string | null | undefined): Buffer | null {
  if (v === null || v === undefined) return null;
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
}
