import { SluiceError } from '../../errors.ts';
import type { ConsumedRecord } from '../../transport/types.ts';
import type { KclRecord } from './types.ts';

const DECIMAL = /^(0|[1-9][0-9]*)$/;

/** True for a decimal sequence number (not a sentinel such as `TRIM_HORIZON`). */
export function isSequenceNumber(s: unknown): s is string {
  return typeof s === 'string' && DECIMAL.test(s);
}

/** Compares two decimal sequence numbers as BigInts (Kinesis sequence numbers exceed 2^53). */
export function compareSequenceNumbers(a: string, b: string): -1 | 0 | 1 {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A record delivered by the MultiLangDaemon: the payload is decoded on first access. */
class MultilangRecord implements KclRecord {
  readonly base64Data: string;
  readonly partitionKey: string;
  readonly sequenceNumber: string;
  readonly subSequenceNumber: number;
  readonly approximateArrivalTimestamp: number;
  #data: Buffer | undefined;

  constructor(json: {
    data: string;
    partitionKey: string;
    sequenceNumber: string;
    subSequenceNumber: number;
    approximateArrivalTimestamp: number;
  }) {
    this.base64Data = json.data;
    this.partitionKey = json.partitionKey;
    this.sequenceNumber = json.sequenceNumber;
    this.subSequenceNumber = json.subSequenceNumber;
    this.approximateArrivalTimestamp = json.approximateArrivalTimestamp;
  }

  get data(): Buffer {
    this.#data ??= Buffer.from(this.base64Data, 'base64');
    return this.#data;
  }
}

function malformed(what: string, value: unknown): SluiceError {
  return new SluiceError(
    'SLUICE_TRANSPORT',
    `The MultiLangDaemon sent a record whose ${what} is invalid (${JSON.stringify(value)}); records carry ` +
      'data (base64), partitionKey, sequenceNumber (decimal string), subSequenceNumber and ' +
      'approximateArrivalTimestamp (epoch ms). Check the daemon version.',
  );
}

/**
 * Parses a record of a `processRecords` message. Requires the fields amazon-kclpy requires (its `Record`
 * constructor reads all five); `subSequenceNumber` may be null (treated as 0) since older daemons omit it.
 */
export function parseMultilangRecord(json: unknown): KclRecord {
  if (typeof json !== 'object' || json === null) throw malformed('shape', json);
  const r = json as Record<string, unknown>;
  if (typeof r.data !== 'string') throw malformed('data', r.data);
  if (typeof r.partitionKey !== 'string') throw malformed('partitionKey', r.partitionKey);
  if (typeof r.sequenceNumber !== 'string') throw malformed('sequenceNumber', r.sequenceNumber);
  const sub = r.subSequenceNumber ?? 0;
  if (typeof sub !== 'number' || !Number.isInteger(sub)) throw malformed('subSequenceNumber', sub);
  const ts = r.approximateArrivalTimestamp;
  if (typeof ts !== 'number' || !Number.isFinite(ts)) throw malformed('approximateArrivalTimestamp', ts);
  return new MultilangRecord({
    data: r.data,
    partitionKey: r.partitionKey,
    sequenceNumber: r.sequenceNumber,
    subSequenceNumber: sub,
    approximateArrivalTimestamp: ts,
  });
}

/** A transport record seen as a KCL record: sequence number = offset, partition key = the key as UTF-8. */
class NativeRecord implements KclRecord {
  readonly source: ConsumedRecord;
  readonly subSequenceNumber = 0;

  constructor(source: ConsumedRecord) {
    this.source = source;
  }

  get data(): Buffer {
    return this.source.value ?? Buffer.alloc(0);
  }

  get base64Data(): string {
    return this.data.toString('base64');
  }

  /** The key as UTF-8; the empty string for a keyless record. */
  get partitionKey(): string {
    return this.source.key?.toString('utf8') ?? '';
  }

  get sequenceNumber(): string {
    return String(this.source.offset);
  }

  get approximateArrivalTimestamp(): number {
    return this.source.timestamp;
  }
}

export function nativeRecord(source: ConsumedRecord): KclRecord {
  return new NativeRecord(source);
}
