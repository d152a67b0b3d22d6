import { SluiceError } from '../../errors.ts';
import { encodeHeaders } from '../headers.ts';
import { makePartitioner, toBuffer } from '../partitioner.ts';
import type {
  Consumer,
  ConsumerOptions,
  GroupDescription,
  GroupMember,
  GroupOffset,
  ProduceRecord,
  Producer,
  ProducerOptions,
  RecordMetadata,
  TopicDescription,
  TopicPartitionOffset,
  TopicSpec,
  Transport,
  TransportCapabilities,
} from '../types.ts';
import { EmbeddedConsumer } from './consumer.ts';
import type { SegmentPosition } from './segments.ts';
import { Store, type StoreOptions, type TopicRow } from './store.ts';

export const DEFAULT_EMBEDDED_PATH = '.sluice/broker.db';

export interface EmbeddedTransportOptions extends StoreOptions {
  /** The database file. Several processes may open the same file at once. Default `./.sluice/broker.db`. */
  path?: string;
  /** Partitions of topics created without a count (and auto-created ones). Default 1. */
  defaultPartitions?: number;
  /** Default session timeout of consumers made by this transport. Default 10 000 ms. */
  sessionTimeoutMs?: number;
}

const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;

export function checkTopicName(name: string): void {
  if (!TOPIC_NAME.test(name) || name === '.' || name === '..') {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Invalid topic name ${JSON.stringify(name)}: use 1-249 characters from a-z, A-Z, 0-9, '.', '_' and '-' ` +
        '(the same rule as Kafka, so the topic can move to a Kafka cluster later).',
    );
  }
}

export function unknownTopic(name: string): SluiceError {
  return new SluiceError(
    'SLUICE_TOPIC_UNKNOWN',
    `Topic ${JSON.stringify(name)} does not exist. Create it first (sluice topics create ${name} --partitions N) ` +
      'or let sluice create it on first use (--auto-create, or autoCreateTopics: true).',
    { details: { topic: name } },
  );
}

interface PreparedRecord {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Buffer | null;
  partition: number | undefined;
  timestamp: number;
}

interface PendingSend {
  records: PreparedRecord[];
  resolve: (m: RecordMetadata[]) => void;
  reject: (e: unknown) => void;
}

/** Bytes a record counts for retention by size: key plus value, as Kafka counts payload. */
function recordSize(r: PreparedRecord): number {
  return (r.key?.length ?? 0) + (r.value?.length ?? 0);
}

export class EmbeddedTransport implements Transport {
  readonly kind = 'embedded';
  readonly capabilities: TransportCapabilities = {
    atomicProduceCommit: true,
    retention: true,
    delivery:
      'at-least-once by default (records survive kill -9 once send() resolves); exactly-once for ' +
      'consume-transform-produce through Producer.sendAndCommit, which is one SQLite transaction',
  };
  readonly store: Store;
  readonly defaultPartitions: number;
  readonly sessionTimeoutMs: number;
  /** In-process wake-ups for consumers waiting on records (other processes are seen via `data_version`). */
  readonly waiters = new Set<() => void>();
  private readonly clients = new Set<{ close(): Promise<void> }>();
  private lastRetention = 0;
  private closed = false;

  constructor(options: EmbeddedTransportOptions = {}) {
    this.store = new Store(options.path ?? DEFAULT_EMBEDDED_PATH, options);
    this.defaultPartitions = options.defaultPartitions ?? 1;
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? 10_000;
  }

  get path(): string {
    return this.store.path;
  }

  notify(): void {
    for (const w of [...this.waiters]) w();
  }

  checkOpen(): void {
    if (this.closed) {
      throw new SluiceError(
        'SLUICE_CLOSED',
        'The embedded transport is closed. Open a new one to keep working.',
      );
    }
  }

  // ---- admin ---------------------------------------------------------------------------------------------------

  async createTopic(spec: TopicSpec, options: { ifNotExists?: boolean } = {}): Promise<void> {
    this.checkOpen();
    this.store.write(() => this.createTopicSync(spec, options.ifNotExists ?? false));
  }

  /** Inside a write transaction. Returns the topic's row. */
  createTopicSync(spec: TopicSpec, ifNotExists: boolean): TopicRow {
    checkTopicName(spec.name);
    const partitions = spec.partitions ?? this.defaultPartitions;
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > 10_000) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `Invalid partition count ${partitions} for topic ${spec.name}: give a whole number from 1 to 10000.`,
      );
    }
    for (const [k, v] of [
      ['retentionMs', spec.retentionMs],
      ['retentionBytes', spec.retentionBytes],
    ] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < 0)) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `Invalid ${k} ${v} for topic ${spec.name}: give a whole number ≥ 0.`,
        );
      }
    }
    const existing = this.store.stmt('SELECT tid FROM topics WHERE name = ?').get(spec.name);
    if (existing !== undefined) {
      if (ifNotExists) return this.topicRow(spec.name)!;
      throw new SluiceError(
        'SLUICE_TOPIC_EXISTS',
        `Topic ${spec.name} already exists. Use it as it is, delete it first (sluice topics delete ${spec.name}), ` +
          'or pass ifNotExists / --if-not-exists.',
        { details: { topic: spec.name } },
      );
    }
    const res = this.store
      .stmt(
        'INSERT INTO topics (name, partitions, retention_ms, retention_bytes, created_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(spec.name, partitions, spec.retentionMs ?? null, spec.retentionBytes ?? null, Date.now());
    const tid = Number(res.lastInsertRowid);
    const insert = this.store.stmt('INSERT INTO partitions (tid, partition) VALUES (?, ?)');
    for (let p = 0; p < partitions; p++) insert.run(tid, p);
    this.store.invalidateTopics();
    return {
      tid,
      name: spec.name,
      partitions,
      retention_ms: spec.retentionMs ?? null,
      retention_bytes: spec.retentionBytes ?? null,
    };
  }

  topicRow(name: string): TopicRow | undefined {
    return this.store.topic(name);
  }

  /** The topic's row; creates it when `autoCreate`, otherwise SLUICE_TOPIC_UNKNOWN. Inside a write transaction. */
  requireTopicSync(name: string, autoCreate: boolean): TopicRow {
    const row = this.store.topic(name);
    if (row !== undefined) return row;
    if (!autoCreate) throw unknownTopic(name);
    return this.createTopicSync({ name }, true);
  }

  async deleteTopic(name: string): Promise<void> {
    this.checkOpen();
    const tid = this.store.write(() => {
      const row = this.store.topic(name);
      if (row === undefined) throw unknownTopic(name);
      this.store.stmt('DELETE FROM records WHERE tid = ?').run(row.tid);
      this.store.stmt('DELETE FROM partitions WHERE tid = ?').run(row.tid);
      this.store.stmt('DELETE FROM topics WHERE tid = ?').run(row.tid);
      this.store.stmt('DELETE FROM group_offsets WHERE topic = ?').run(name);
      this.store.stmt('DELETE FROM owners WHERE topic = ?').run(name);
      this.store.invalidateTopics();
      return row.tid;
    });
    this.store.segments?.removeTopic(tid);
  }

  async listTopics(): Promise<string[]> {
    this.checkOpen();
    return this.store.read(() =>
      (this.store.stmt('SELECT name FROM topics ORDER BY name').all() as Array<{ name: string }>).map(
        (r) => r.name,
      ),
    );
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    this.checkOpen();
    return this.store.read(() => {
      const row = this.store.topic(name);
      if (row === undefined) throw unknownTopic(name);
      const parts = this.store
        .stmt('SELECT partition, start_offset, end_offset FROM partitions WHERE tid = ? ORDER BY partition')
        .all(row.tid) as Array<{ partition: number; start_offset: number; end_offset: number }>;
      const d: TopicDescription = {
        name,
        partitions: parts.map((p) => ({
          partition: p.partition,
          startOffset: p.start_offset,
          endOffset: p.end_offset,
        })),
      };
      if (row.retention_ms !== null) d.retentionMs = row.retention_ms;
      if (row.retention_bytes !== null) d.retentionBytes = row.retention_bytes;
      return d;
    });
  }

  async listGroups(): Promise<string[]> {
    this.checkOpen();
    return this.store.read(() =>
      (
        this.store
          .stmt(
            'SELECT group_id FROM group_offsets UNION SELECT group_id FROM members WHERE expires_at >= ? ORDER BY 1',
          )
          .all(Date.now()) as Array<{ group_id: string }>
      ).map((r) => r.group_id),
    );
  }

  async describeGroup(groupId: string): Promise<GroupDescription> {
    this.checkOpen();
    return this.store.read(() => {
      const now = Date.now();
      const members = this.store
        .stmt('SELECT member_id FROM members WHERE group_id = ? AND expires_at >= ? ORDER BY member_id')
        .all(groupId, now) as Array<{ member_id: string }>;
      const owners = this.store
        .stmt(
          'SELECT topic, partition, member_id FROM owners WHERE group_id = ? AND expires_at >= ? ORDER BY topic, partition',
        )
        .all(groupId, now) as Array<{ topic: string; partition: number; member_id: string }>;
      const out: GroupMember[] = members.map((m) => ({
        memberId: m.member_id,
        assignment: owners
          .filter((o) => o.member_id === m.member_id)
          .map((o) => ({ topic: o.topic, partition: o.partition })),
      }));
      const committed = this.store
        .stmt(
          'SELECT topic, partition, offset FROM group_offsets WHERE group_id = ? ORDER BY topic, partition',
        )
        .all(groupId) as Array<{ topic: string; partition: number; offset: number }>;
      const byTopic = new Map<string, Map<number, number>>();
      for (const c of committed) {
        const m = byTopic.get(c.topic) ?? new Map<number, number>();
        byTopic.set(c.topic, m);
        m.set(c.partition, c.offset);
      }
      for (const o of owners) if (!byTopic.has(o.topic)) byTopic.set(o.topic, new Map());
      const offsets: GroupOffset[] = [];
      for (const [topic, commits] of [...byTopic].sort((a, b) => a[0].localeCompare(b[0]))) {
        const row = this.store.topic(topic);
        if (row === undefined) continue;
        const parts = this.store
          .stmt('SELECT partition, start_offset, end_offset FROM partitions WHERE tid = ? ORDER BY partition')
          .all(row.tid) as Array<{ partition: number; start_offset: number; end_offset: number }>;
        for (const p of parts) {
          const c = commits.get(p.partition);
          offsets.push({
            topic,
            partition: p.partition,
            committed: c,
            endOffset: p.end_offset,
            lag: p.end_offset - (c ?? p.start_offset),
          });
        }
      }
      return { groupId, members: out, offsets };
    });
  }

  // ---- clients -------------------------------------------------------------------------------------------------

  producer(options: ProducerOptions = {}): Producer {
    this.checkOpen();
    const p = new EmbeddedProducer(this, options);
    this.track(p);
    return p;
  }

  consumer(options: ConsumerOptions): Consumer {
    this.checkOpen();
    const c = new EmbeddedConsumer(this, options);
    this.track(c);
    return c;
  }

  track(client: { close(): Promise<void> }): void {
    this.clients.add(client);
  }

  untrack(client: { close(): Promise<void> }): void {
    this.clients.delete(client);
  }

  /**
   * Appends records inside the current write transaction and returns their metadata. Partition end offsets
   * are read once per partition and written back once.
   */
  appendSync(records: PreparedRecord[], topics: Map<string, TopicRow>, pick: Picker): RecordMetadata[] {
    const store = this.store;
    const ends = new Map<
      string,
      { tid: number; partition: number; end: number; bytes: number; seg: SegmentPosition }
    >();
    const insert = store.stmt(
      'INSERT INTO records (tid, partition, offset, ts, key, value, headers, seg, pos, vlen, crc) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const getEnd = store.stmt(
      'SELECT end_offset, seg, seg_pos FROM partitions WHERE tid = ? AND partition = ?',
    );
    const out: RecordMetadata[] = [];
    for (const r of records) {
      const t = topics.get(r.topic)!;
      const partition = r.partition ?? pick(r.topic, r.key, t.partitions);
      const k = `${t.tid}:${partition}`;
      let e = ends.get(k);
      if (e === undefined) {
        const row = getEnd.get(t.tid, partition) as { end_offset: number; seg: number; seg_pos: number };
        e = { tid: t.tid, partition, end: row.end_offset, bytes: 0, seg: { seg: row.seg, pos: row.seg_pos } };
        ends.set(k, e);
      }
      if (r.value !== null && r.value.length >= store.segmentThreshold && store.segments !== undefined) {
        const at = store.segments.place(e.seg, r.value.length);
        const crc = store.segments.write(t.tid, partition, at, r.value);
        insert.run(
          t.tid,
          partition,
          e.end,
          r.timestamp,
          r.key,
          null,
          r.headers,
          at.seg,
          at.pos,
          r.value.length,
          crc,
        );
        e.seg = { seg: at.seg, pos: at.pos + r.value.length };
      } else {
        insert.run(t.tid, partition, e.end, r.timestamp, r.key, r.value, r.headers, null, null, null, null);
      }
      out.push({ topic: r.topic, partition, offset: e.end, timestamp: r.timestamp });
      e.end += 1;
      e.bytes += recordSize(r);
    }
    const update = store.stmt(
      'UPDATE partitions SET end_offset = ?, bytes = bytes + ?, seg = ?, seg_pos = ? WHERE tid = ? AND partition = ?',
    );
    for (const e of ends.values()) update.run(e.end, e.bytes, e.seg.seg, e.seg.pos, e.tid, e.partition);
    return out;
  }

  /** Checks topics and partitions of a batch; creates topics when asked. Inside a write transaction. */
  resolveTopicsSync(records: PreparedRecord[], autoCreate: boolean, into: Map<string, TopicRow>): void {
    for (const r of records) {
      let t = into.get(r.topic);
      if (t === undefined) {
        t = this.requireTopicSync(r.topic, autoCreate);
        into.set(r.topic, t);
      }
      if (
        r.partition !== undefined &&
        (!Number.isInteger(r.partition) || r.partition < 0 || r.partition >= t.partitions)
      ) {
        throw new SluiceError(
          'SLUICE_PARTITION_UNKNOWN',
          `Topic ${r.topic} has partitions 0-${t.partitions - 1}; a record asked for partition ${r.partition}. ` +
            'Send to an existing partition, or leave the partition out to use the partitioner.',
          { details: { topic: r.topic, partition: r.partition } },
        );
      }
    }
  }

  /**
   * Commits group offsets inside the current write transaction; the member must own each partition.
   * `memberId` undefined: a consumer with a static assignment, which commits without owning a lease.
   */
  commitSync(
    groupId: string,
    memberId: string | undefined,
    offsets: TopicPartitionOffset[],
    now: number,
  ): void {
    const owner = this.store.stmt(
      'SELECT member_id FROM owners WHERE group_id = ? AND topic = ? AND partition = ?',
    );
    const upsert = this.store.stmt(
      'INSERT INTO group_offsets (group_id, topic, partition, offset, committed_at) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT (group_id, topic, partition) DO UPDATE SET offset = excluded.offset, committed_at = excluded.committed_at',
    );
    for (const o of offsets) {
      if (!Number.isInteger(o.offset) || o.offset < 0) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `Cannot commit offset ${o.offset} for ${o.topic}[${o.partition}]: offsets are whole numbers ≥ 0 (the next offset to read).`,
        );
      }
      const row = owner.get(groupId, o.topic, o.partition) as { member_id: string } | undefined;
      if (memberId !== undefined && row?.member_id !== memberId) {
        throw new SluiceError(
          'SLUICE_REBALANCE',
          `Cannot commit ${o.topic}[${o.partition}] for group ${groupId}: this consumer no longer owns that partition ` +
            '(it was reassigned after a rebalance or a missed heartbeat). Its uncommitted records will be delivered to ' +
            'the new owner; drop the work in progress for it.',
          { canRetry: false, details: { topic: o.topic, partition: o.partition, groupId } },
        );
      }
      upsert.run(groupId, o.topic, o.partition, o.offset, now);
    }
  }

  /** Deletes records past the retention of their topic. Runs at most once a second from producers. */
  enforceRetention(force = false): void {
    const now = Date.now();
    if (!force && now - this.lastRetention < 1000) return;
    this.lastRetention = now;
    const topics = this.store
      .stmt(
        'SELECT tid, retention_ms, retention_bytes FROM topics WHERE retention_ms IS NOT NULL OR retention_bytes IS NOT NULL',
      )
      .all() as Array<{ tid: number; retention_ms: number | null; retention_bytes: number | null }>;
    if (topics.length === 0) return;
    const emptied: Array<{ tid: number; partition: number; keep: number }> = [];
    this.store.write(() => {
      for (const t of topics) {
        const parts = this.store
          .stmt('SELECT partition, end_offset, bytes, seg FROM partitions WHERE tid = ?')
          .all(t.tid) as Array<{ partition: number; end_offset: number; bytes: number; seg: number }>;
        for (const p of parts) {
          let deleted = false;
          if (t.retention_ms !== null) {
            const r = this.store
              .stmt('DELETE FROM records WHERE tid = ? AND partition = ? AND ts < ?')
              .run(t.tid, p.partition, now - t.retention_ms);
            deleted ||= Number(r.changes) > 0;
          }
          if (t.retention_bytes !== null && p.bytes > t.retention_bytes) {
            const cut = this.store
              .stmt(
                'SELECT offset FROM (SELECT offset, SUM(ifnull(length(key), 0) + ifnull(length(value), ifnull(vlen, 0))) ' +
                  'OVER (ORDER BY offset DESC) AS acc FROM records WHERE tid = ? AND partition = ?) ' +
                  'WHERE acc > ? ORDER BY offset DESC LIMIT 1',
              )
              .get(t.tid, p.partition, t.retention_bytes) as { offset: number } | undefined;
            if (cut !== undefined) {
              this.store
                .stmt('DELETE FROM records WHERE tid = ? AND partition = ? AND offset <= ?')
                .run(t.tid, p.partition, cut.offset);
              deleted = true;
            }
          }
          if (deleted) {
            const s = this.store
              .stmt(
                'SELECT min(offset) AS first, SUM(ifnull(length(key), 0) + ifnull(length(value), ifnull(vlen, 0))) AS bytes, ' +
                  'min(seg) AS seg FROM records WHERE tid = ? AND partition = ?',
              )
              .get(t.tid, p.partition) as { first: number | null; bytes: number | null; seg: number | null };
            // segment files below the oldest one still referenced hold only deleted records
            emptied.push({ tid: t.tid, partition: p.partition, keep: Math.min(s.seg ?? p.seg, p.seg) });
            this.store
              .stmt('UPDATE partitions SET start_offset = ?, bytes = ? WHERE tid = ? AND partition = ?')
              .run(s.first ?? p.end_offset, s.bytes ?? 0, t.tid, p.partition);
          }
        }
      }
    });
    for (const e of emptied) this.store.segments?.removeBelow(e.tid, e.partition, e.keep);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const c of [...this.clients]) await c.close();
    this.closed = true;
    this.notify();
    this.store.close();
  }
}

type Picker = (topic: string, key: Buffer | null, partitionCount: number) => number;

export function prepareRecord(r: ProduceRecord, now: number): PreparedRecord {
  if (typeof r.topic !== 'string') {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      'Every record needs a topic (a string). Set record.topic.',
    );
  }
  return {
    topic: r.topic,
    key: toBuffer(r.key),
    value: toBuffer(r.value),
    headers: encodeHeaders(r.headers),
    partition: r.partition,
    timestamp: r.timestamp ?? now,
  };
}

export class EmbeddedProducer implements Producer {
  /**
   * Keys and values given to `send()` are copied into the database before it resolves, and not referenced after:
   * a caller may reuse their buffers once `send()` has resolved (the file uploader does, to spare allocations).
   */
  readonly releasesValuesOnSend = true;
  private readonly transport: EmbeddedTransport;
  private readonly autoCreate: boolean;
  private readonly pick: Picker;
  private queue: PendingSend[] = [];
  private scheduled = false;
  private closed = false;

  constructor(transport: EmbeddedTransport, options: ProducerOptions) {
    this.transport = transport;
    this.autoCreate = options.autoCreateTopics ?? false;
    this.pick = makePartitioner(options.partitioner);
  }

  private checkOpen(): void {
    this.transport.checkOpen();
    if (this.closed)
      throw new SluiceError(
        'SLUICE_CLOSED',
        'This producer is closed. Make a new one with transport.producer().',
      );
  }

  /**
   * Sends made in the same tick are written in one SQLite transaction (group commit), so many small concurrent
   * sends cost about as much as one batch.
   */
  send(records: ProduceRecord | ProduceRecord[]): Promise<RecordMetadata[]> {
    try {
      this.checkOpen();
      const now = Date.now();
      const list = (Array.isArray(records) ? records : [records]).map((r) => prepareRecord(r, now));
      return new Promise((resolve, reject) => {
        this.queue.push({ records: list, resolve, reject });
        if (!this.scheduled) {
          this.scheduled = true;
          setImmediate(() => this.drain());
        }
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private drain(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const topics = new Map<string, TopicRow>();
    const accepted: PendingSend[] = [];
    const rejected = new Set<PendingSend>();
    const results: RecordMetadata[][] = [];
    try {
      this.transport.store.write(() => {
        for (const send of batch) {
          try {
            this.transport.resolveTopicsSync(send.records, this.autoCreate, topics);
            accepted.push(send);
          } catch (err) {
            rejected.add(send);
            send.reject(err);
          }
        }
        for (const send of accepted) results.push(this.transport.appendSync(send.records, topics, this.pick));
      });
    } catch (err) {
      // nothing of the transaction was written: every send not already rejected fails with the cause
      for (const send of batch) if (!rejected.has(send)) send.reject(err);
      return;
    }
    accepted.forEach((send, i) => {
      send.resolve(results[i]!);
    });
    this.transport.notify();
    try {
      this.transport.enforceRetention();
    } catch {
      // retention is housekeeping; a busy database only delays it to the next send
    }
  }

  async sendAndCommit(
    records: ProduceRecord[],
    consumer: Consumer,
    offsets: TopicPartitionOffset[],
  ): Promise<RecordMetadata[]> {
    this.checkOpen();
    if (!(consumer instanceof EmbeddedConsumer) || consumer.transport.path !== this.transport.path) {
      throw new SluiceError(
        'SLUICE_UNSUPPORTED',
        'sendAndCommit needs a consumer of the same embedded broker file as the producer. Make both from one transport.',
      );
    }
    await this.flush();
    const now = Date.now();
    const prepared = records.map((r) => prepareRecord(r, now));
    const topics = new Map<string, TopicRow>();
    const meta = this.transport.store.write(() => {
      this.transport.resolveTopicsSync(prepared, this.autoCreate, topics);
      const m = this.transport.appendSync(prepared, topics, this.pick);
      this.transport.commitSync(consumer.groupId, consumer.leaseHolder, offsets, now);
      return m;
    });
    consumer.noteCommitted(offsets);
    this.transport.notify();
    return meta;
  }

  /** Sends are written on the next turn of the event loop; waiting one turn writes everything queued. */
  async flush(): Promise<void> {
    if (this.queue.length > 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    this.transport.untrack(this);
  }
}
