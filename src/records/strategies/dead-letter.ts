import { describeError, isSluiceError } from '../../errors.ts';
import type { ConsumedRecord, ProduceRecord } from '../../transport/types.ts';

/**
 * The dead-letter copy of a record whose processing failed: the original key and value, and headers saying where
 * it came from and why it failed. `topic`, `partition` and `offset` are `batching_kafka_consumer`'s headers (string
 * values); `error` is the error message and `error_type` its code (SluiceError) or name.
 */
export function deadLetterRecord(
  deadLetterTopic: string,
  record: ConsumedRecord,
  error: unknown,
): ProduceRecord {
  return {
    topic: deadLetterTopic,
    key: record.key,
    value: record.value,
    headers: {
      partition: String(record.partition),
      offset: String(record.offset),
      topic: record.topic,
      error: describeError(error),
      error_type: isSluiceError(error) ? error.code : error instanceof Error ? error.name : typeof error,
    },
  };
}
