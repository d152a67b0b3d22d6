import type { fetchV17, RecordsBatch } from '@platformatic/kafka';
import type { ConsumedRecord } from '../types.ts';

const TIMESTAMP_LOG_APPEND_TIME = 1 << 3;
const IS_TRANSACTIONAL = 1 << 4;
const IS_CONTROL = 1 << 5;
const EMPTY = Buffer.alloc(0);

type FetchResponsePartition = fetchV17.FetchResponsePartition;

export interface DecodedPartition {
  records: ConsumedRecord[];
  /** The offset to fetch next (after the last batch, control batches included); undefined if nothing came. */
  nextOffset: number | undefined;
  /** Approximate memory held by `records`. */
  bytes: number;
}

function isAbortMarker(batch: RecordsBatch): boolean {
  // A control record's key is: int16 version, int16 type (0 = abort, 1 = commit).
  const key = batch.records[0]?.key;
  return key !== null && key !== undefined && key.length >= 4 && key.readInt16BE(2) === 0;
}

/**
 * Turns the record batches of one partition of a fetch response into consumed records, starting at `fetchOffset`.
 *
 * With `readCommitted`, records of aborted transactions are dropped exactly as Kafka's Java consumer does
 * (`Fetcher`/`CompletedFetch`): the response lists aborted transactions (producer id, first offset); a
 * transactional batch of a producer whose aborted transaction has begun is skipped until that producer's abort
 * marker. The client library pre-filters too, but misses a producer's earlier aborts when one response holds
 * several, and aborts whose marker lies beyond the response; this pass is complete. Control batches (commit/abort
 * markers) are never returned, but the next offset moves past them.
 */
export function decodePartition(
  topic: string,
  partition: number,
  response: FetchResponsePartition,
  fetchOffset: number,
  readCommitted: boolean,
): DecodedPartition {
  const batches = response.records ?? [];
  const records: ConsumedRecord[] = [];
  let bytes = 0;
  let nextOffset: number | undefined;

  const aborted = readCommitted
    ? (response.abortedTransactions ?? [])
        .map((a) => ({ producerId: a.producerId, firstOffset: Number(a.firstOffset) }))
        .sort((a, b) => a.firstOffset - b.firstOffset)
    : [];
  let abortedIndex = 0;
  const abortedProducers = new Set<bigint>();

  for (const batch of batches) {
    const base = Number(batch.firstOffset);
    const last = base + batch.lastOffsetDelta;
    nextOffset = last + 1;

    if (readCommitted && batch.producerId >= 0n) {
      while (abortedIndex < aborted.length && aborted[abortedIndex]!.firstOffset <= last) {
        abortedProducers.add(aborted[abortedIndex]!.producerId);
        abortedIndex++;
      }
      if (batch.attributes & IS_CONTROL) {
        if (isAbortMarker(batch)) abortedProducers.delete(batch.producerId);
        continue;
      }
      if (batch.attributes & IS_TRANSACTIONAL && abortedProducers.has(batch.producerId)) continue;
    }
    if (batch.attributes & IS_CONTROL) continue;

    const logAppendTime = (batch.attributes & TIMESTAMP_LOG_APPEND_TIME) !== 0;
    for (const rec of batch.records) {
      const offset = base + rec.offsetDelta;
      if (offset < fetchOffset) continue;
      const headers: Record<string, Buffer> = {};
      for (const [k, v] of rec.headers) {
        headers[k === null ? '' : k.toString('utf8')] = v ?? EMPTY;
      }
      const key = rec.key ?? null;
      const value = rec.value ?? null;
      bytes += 96 + (key?.length ?? 0) + (value?.length ?? 0);
      records.push({
        topic,
        partition,
        offset,
        timestamp: Number(logAppendTime ? batch.maxTimestamp : batch.firstTimestamp + rec.timestampDelta),
        key,
        value,
        headers,
      });
    }
  }
  return { records, nextOffset, bytes };
}
