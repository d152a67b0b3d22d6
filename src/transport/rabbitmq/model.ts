/**
 * The pure parts of the RabbitMQ transport: names of the queues and exchanges it uses, the mapping between sluice
 * records and AMQP messages, the topic catalog and the group-offset log as folds over their records, and the
 * partition assignment of a consumer group. No I/O here, so all of it is unit-tested without a broker.
 */
import { SluiceError } from '../../errors.ts';
import { decodeHeaders, encodeHeaders } from '../headers.ts';
import { toBuffer } from '../partitioner.ts';
import type { ConsumedRecord, HeaderValue, ProduceRecord, StartPosition, TopicPartition } from '../types.ts';

// ---- names -----------------------------------------------------------------------------------------------------

/** The stream that records topic creations and deletions (RabbitMQ cannot list queues over AMQP 0-9-1). */
export const CATALOG_STREAM = 'sluice.topics';

/** Partition `p` of topic `t` is the stream queue `t.p<p>`. */
export function partitionQueue(topic: string, partition: number): string {
  return `${topic}.p${partition}`;
}

/** The stream holding the committed offsets of a consumer group (one record per commit). */
export function offsetsStream(groupId: string): string {
  return `sluice.offsets.${groupId}`;
}

/** The fanout exchange on which the members of a group announce themselves. */
export function groupExchange(groupId: string): string {
  return `sluice.group.${groupId}`;
}

/** A member's own exclusive queue, bound to the group exchange. */
export function memberQueue(groupId: string, memberId: string): string {
  return `sluice.member.${groupId}.${memberId}`;
}

/**
 * The lease of one partition within a group: an exclusive queue, so at most one connection can hold it, and the
 * broker drops it when that connection dies.
 */
export function leaseQueue(groupId: string, topic: string, partition: number): string {
  return `sluice.lease.${groupId}.${partition}.${topic}`;
}

const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,200}$/;

/**
 * Topic names follow Kafka's character rule (so a topic can move between transports), shorter: the partition's
 * queue name (`<topic>.p<N>`) must stay within RabbitMQ's 255-byte limit. Names starting `sluice.` are reserved.
 */
export function checkTopicName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !TOPIC_NAME.test(name) || name === '.' || name === '..') {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Invalid topic name ${JSON.stringify(name)}: use 1-200 characters from a-z, A-Z, 0-9, '.', '_' and '-' ` +
        "(Kafka's rule; at most 200 so that the partition queues' names fit RabbitMQ's limit).",
    );
  }
  if (name.startsWith('sluice.')) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Invalid topic name ${JSON.stringify(name)}: names starting with "sluice." are reserved for the RabbitMQ ` +
        "transport's own streams and queues. Pick another name.",
    );
  }
}

// ---- records <-> AMQP messages -------------------------------------------------------------------------------

/** Header names used on data messages. User headers travel together in one binary header, so none can clash. */
export const H = {
  timestamp: 'x-sluice-ts',
  key: 'x-sluice-key',
  nullValue: 'x-sluice-null',
  headers: 'x-sluice-headers',
  /** Set by RabbitMQ on every delivery from a stream queue. */
  offset: 'x-stream-offset',
} as const;

export interface EncodedMessage {
  content: Buffer;
  headers: Record<string, unknown>;
  timestamp: number;
}

/** The AMQP body and headers of a record. A null value is an empty body with the `x-sluice-null` flag. */
export function encodeRecord(r: ProduceRecord, now: number): EncodedMessage {
  const timestamp = r.timestamp ?? now;
  const headers: Record<string, unknown> = { [H.timestamp]: timestamp };
  const key = toBuffer(r.key);
  if (key !== null) headers[H.key] = key;
  const value = toBuffer(r.value);
  if (value === null) headers[H.nullValue] = true;
  const blob = encodeHeaders(r.headers as Record<string, HeaderValue> | undefined);
  if (blob !== null) headers[H.headers] = blob;
  return { content: value ?? Buffer.alloc(0), headers, timestamp };
}

interface DeliveredMessage {
  content: Buffer;
  properties: { headers?: Record<string, unknown> | undefined; timestamp?: unknown };
}

/** The stream offset RabbitMQ put on a delivery, or undefined (not from a stream queue). */
export function deliveryOffset(msg: DeliveredMessage): number | undefined {
  const o = msg.properties.headers?.[H.offset];
  return typeof o === 'number' && Number.isInteger(o) && o >= 0 ? o : undefined;
}

function asBuffer(v: unknown): Buffer | null {
  if (v === undefined || v === null) return null;
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  return null;
}

/**
 * A delivery from partition queue `topic.p<partition>` as a sluice record. Messages written by other AMQP clients
 * work too: no key, no sluice headers, the AMQP timestamp (seconds) when there is no `x-sluice-ts`.
 */
export function decodeRecord(msg: DeliveredMessage, topic: string, partition: number): ConsumedRecord {
  const h = msg.properties.headers ?? {};
  const offset = deliveryOffset(msg);
  if (offset === undefined) {
    throw new SluiceError(
      'SLUICE_TRANSPORT',
      `A delivery from ${partitionQueue(topic, partition)} carries no x-stream-offset header: the queue is not a ` +
        'stream queue. Delete it and let sluice create the topic (its partitions are stream queues).',
    );
  }
  const ts = h[H.timestamp];
  const amqpTs = msg.properties.timestamp;
  const timestamp = typeof ts === 'number' ? ts : typeof amqpTs === 'number' ? amqpTs * 1000 : Date.now();
  const blob = asBuffer(h[H.headers]);
  return {
    topic,
    partition,
    offset,
    timestamp,
    key: asBuffer(h[H.key]),
    value: h[H.nullValue] === true ? null : msg.content,
    headers: decodeHeaders(blob),
  };
}

// ---- topic catalog -------------------------------------------------------------------------------------------

export interface TopicInfo {
  name: string;
  partitions: number;
  retentionMs?: number;
  retentionBytes?: number;
  /** Id of the create record that made the topic (the first one wins when two race). */
  createdBy: string;
}

export type CatalogRecord =
  | {
      op: 'create';
      id: string;
      topic: string;
      partitions: number;
      retentionMs?: number;
      retentionBytes?: number;
    }
  | { op: 'delete'; id: string; topic: string }
  | { op: 'group'; id: string; group: string }
  | { op: 'sync'; id: string };

export interface CatalogState {
  topics: Map<string, TopicInfo>;
  groups: Set<string>;
}

export function emptyCatalog(): CatalogState {
  return { topics: new Map(), groups: new Set() };
}

/** Applies one catalog record. A create for a topic that exists is ignored: the earlier create wins. */
export function applyCatalog(state: CatalogState, rec: CatalogRecord): void {
  switch (rec.op) {
    case 'create':
      if (!state.topics.has(rec.topic)) {
        const t: TopicInfo = { name: rec.topic, partitions: rec.partitions, createdBy: rec.id };
        if (rec.retentionMs !== undefined) t.retentionMs = rec.retentionMs;
        if (rec.retentionBytes !== undefined) t.retentionBytes = rec.retentionBytes;
        state.topics.set(rec.topic, t);
      }
      break;
    case 'delete':
      state.topics.delete(rec.topic);
      break;
    case 'group':
      state.groups.add(rec.group);
      break;
    case 'sync':
      break;
  }
}

/** Parses a catalog record; anything malformed is ignored (returns undefined), never fatal. */
export function parseCatalogRecord(body: Buffer): CatalogRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (typeof r.id !== 'string') return undefined;
  if (r.op === 'sync') return { op: 'sync', id: r.id };
  if (r.op === 'group' && typeof r.group === 'string') return { op: 'group', id: r.id, group: r.group };
  if (typeof r.topic !== 'string') return undefined;
  if (r.op === 'delete') return { op: 'delete', id: r.id, topic: r.topic };
  if (r.op === 'create' && Number.isInteger(r.partitions) && (r.partitions as number) > 0) {
    const c: CatalogRecord = { op: 'create', id: r.id, topic: r.topic, partitions: r.partitions as number };
    if (typeof r.retentionMs === 'number') c.retentionMs = r.retentionMs;
    if (typeof r.retentionBytes === 'number') c.retentionBytes = r.retentionBytes;
    return c;
  }
  return undefined;
}

// ---- group offsets log ---------------------------------------------------------------------------------------

/** One record of a group's offsets stream: a commit (partition → next offset to read), or a sync marker. */
export type OffsetsRecord =
  | { op: 'commit'; id: string; member: string; offsets: Array<[string, number, number]> }
  | { op: 'sync'; id: string };

export const tpKey = (topic: string, partition: number): string => `${partition}\u0000${topic}`;

export function parseOffsetsRecord(body: Buffer): OffsetsRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (typeof r.id !== 'string') return undefined;
  if (r.op === 'sync') return { op: 'sync', id: r.id };
  if (r.op !== 'commit' || typeof r.member !== 'string' || !Array.isArray(r.offsets)) return undefined;
  const offsets: Array<[string, number, number]> = [];
  for (const o of r.offsets as unknown[]) {
    if (
      Array.isArray(o) &&
      typeof o[0] === 'string' &&
      Number.isInteger(o[1]) &&
      Number.isInteger(o[2]) &&
      (o[2] as number) >= 0
    ) {
      offsets.push([o[0], o[1] as number, o[2] as number]);
    }
  }
  return { op: 'commit', id: r.id, member: r.member, offsets };
}

/** Folds a commit into the committed-offset map (the last commit of a partition wins). */
export function applyOffsets(committed: Map<string, number>, rec: OffsetsRecord): void {
  if (rec.op !== 'commit') return;
  for (const [topic, partition, offset] of rec.offsets) committed.set(tpKey(topic, partition), offset);
}

// ---- group membership and assignment -------------------------------------------------------------------------

export interface MemberInfo {
  memberId: string;
  topics: string[];
}

/**
 * Which partitions each live member should own: per topic, the members subscribed to it in id order, and
 * partition p goes to member `p % n` (the embedded transport's rule). Every member computes the same answer from
 * the same view, so no leader is needed; while views differ, the partition leases keep ownership exclusive.
 */
export function assignPartitions(
  members: MemberInfo[],
  partitionCounts: Map<string, number>,
): Map<string, TopicPartition[]> {
  const out = new Map<string, TopicPartition[]>();
  const sorted = [...members].sort((a, b) =>
    a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0,
  );
  for (const m of sorted) out.set(m.memberId, []);
  for (const [topic, count] of [...partitionCounts].sort((a, b) => a[0].localeCompare(b[0]))) {
    const subs = sorted.filter((m) => m.topics.includes(topic));
    if (subs.length === 0) continue;
    for (let p = 0; p < count; p++) out.get(subs[p % subs.length]!.memberId)!.push({ topic, partition: p });
  }
  return out;
}

export type AnnounceMessage =
  | { type: 'hello'; member: string; topics: string[]; assignment: Array<[string, number]>; reply: boolean }
  | { type: 'bye'; member: string }
  | { type: 'probe'; member: string };

export function parseAnnounce(body: Buffer): AnnounceMessage | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (typeof r.member !== 'string') return undefined;
  if (r.type === 'bye') return { type: 'bye', member: r.member };
  if (r.type === 'probe') return { type: 'probe', member: r.member };
  if (r.type === 'hello' && Array.isArray(r.topics)) {
    const assignment = Array.isArray(r.assignment)
      ? (r.assignment as unknown[]).filter(
          (a): a is [string, number] =>
            Array.isArray(a) && typeof a[0] === 'string' && Number.isInteger(a[1]),
        )
      : [];
    return {
      type: 'hello',
      member: r.member,
      topics: (r.topics as unknown[]).filter((t): t is string => typeof t === 'string'),
      assignment,
      reply: r.reply === true,
    };
  }
  return undefined;
}

// ---- start positions -----------------------------------------------------------------------------------------

/** An `x-stream-offset` argument: an absolute offset, or RabbitMQ's `first` / `last` (start of the last chunk) / `next`. */
export type StreamOffsetSpec = number | 'first' | 'last' | 'next';

/** Where a newly assigned partition starts, from the consumer options and the group's committed offset. */
export function startSpec(
  start: StartPosition | undefined,
  resetTo: 'earliest' | 'latest' | undefined,
  tp: TopicPartition,
  committed: number | undefined,
): StreamOffsetSpec {
  const s = start ?? 'committed';
  if (s === 'earliest') return 'first';
  if (s === 'latest') return 'next';
  if (typeof s === 'object') {
    const explicit = s.offsets.find((o) => o.topic === tp.topic && o.partition === tp.partition);
    if (explicit !== undefined) return explicit.offset;
  }
  if (committed !== undefined) return committed;
  return (resetTo ?? 'earliest') === 'latest' ? 'next' : 'first';
}

/** Stream retention arguments for a topic's partitions (RabbitMQ enforces them per segment, so coarsely). */
export function retentionArguments(spec: {
  retentionMs?: number | undefined;
  retentionBytes?: number | undefined;
}): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  if (spec.retentionMs !== undefined)
    args['x-max-age'] = `${Math.max(1, Math.ceil(spec.retentionMs / 1000))}s`;
  if (spec.retentionBytes !== undefined) args['x-max-length-bytes'] = spec.retentionBytes;
  return args;
}
