import type { ConsumedRecord, TopicPartition, TopicPartitionOffset } from '../../transport/types.ts';
import type { Committable, Message } from './types.ts';

/** The key of a partition in committables and maps: `topic` and partition, unambiguous for any topic name. */
export function partitionKey(topic: string, partition: number): string {
  return `${partition}\u0000${topic}`;
}

/** The committable of one consumed record: its partition's next offset. */
export function committableOf(record: ConsumedRecord): Committable {
  return new Map([
    [
      partitionKey(record.topic, record.partition),
      { topic: record.topic, partition: record.partition, offset: record.offset + 1 },
    ],
  ]);
}

/** Wraps a consumed record as the message the first step of a chain receives. */
export function messageOf(record: ConsumedRecord): Message<ConsumedRecord> {
  return { payload: record, committable: committableOf(record), timestamp: record.timestamp };
}

/** Builds a committable from offsets (next offsets). Later entries for a partition win. */
export function committable(offsets: Iterable<TopicPartitionOffset>): Committable {
  const out = new Map<string, TopicPartitionOffset>();
  for (const o of offsets) out.set(partitionKey(o.topic, o.partition), { ...o });
  return out;
}

/** Merges `from` into `into`, last write wins per partition (the maximum for in-order input). */
export function mergeCommittable(into: Map<string, TopicPartitionOffset>, from: Committable): void {
  for (const [k, v] of from) into.set(k, v);
}

export const EMPTY_COMMITTABLE: Committable = new Map();

export function keysOf(partitions: Iterable<TopicPartition>): Set<string> {
  const out = new Set<string>();
  for (const p of partitions) out.add(partitionKey(p.topic, p.partition));
  return out;
}

/**
 * Runs async sections one at a time, in call order. The processing loop and the transport's rebalance callbacks
 * (which run on their own schedule) share the chain through it.
 */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.#tail.then(fn, fn);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
