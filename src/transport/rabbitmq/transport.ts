import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { SluiceError } from '../../errors.ts';
import type {
  Consumer,
  ConsumerOptions,
  GroupDescription,
  GroupOffset,
  PartitionDescription,
  Producer,
  ProducerOptions,
  TopicDescription,
  TopicSpec,
  Transport,
  TransportCapabilities,
} from '../types.ts';
import { RabbitMqConsumer } from './consumer.ts';
import { amqpCode, Link, Publisher, redactUrl } from './link.ts';
import { RecordLog, STREAM_ARGS } from './log.ts';
import {
  type AnnounceMessage,
  applyCatalog,
  applyOffsets,
  CATALOG_STREAM,
  type CatalogRecord,
  checkTopicName,
  emptyCatalog,
  groupExchange,
  type OffsetsRecord,
  offsetsStream,
  parseAnnounce,
  parseCatalogRecord,
  parseOffsetsRecord,
  partitionQueue,
  retentionArguments,
  tpKey,
} from './model.ts';
import { OffsetFollower, RabbitMqProducer } from './producer.ts';

export interface RabbitMqTransportOptions {
  /** `amqp://user:password@host:port/vhost` (`amqps://` for TLS). */
  url: string;
  /** Partitions of topics created without a count (and auto-created ones). Default 1. */
  defaultPartitions?: number;
  /** Default session timeout of consumers made by this transport. Default 10 000 ms. */
  sessionTimeoutMs?: number;
  /** AMQP heartbeat in seconds. Default 5. */
  heartbeatSeconds?: number;
  /** How long the first connection may take. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** How long operations wait for a lost connection to come back (the broker restarting). Default 60 000 ms. */
  reconnectTimeoutMs?: number;
  /** How long a confirmed record's offset may take to be read back. Default 60 000 ms. */
  offsetWaitMs?: number;
  /**
   * How long `describeTopic` waits for the last chunk of a partition (see `endOffsets`). Default 1000 ms for the
   * first delivery, then 150 ms of quiet.
   */
  endProbeMs?: { first: number; quiet: number };
  /** Names this client in the broker's connection list. Default `sluice`. */
  clientId?: string;
}

export type ResolvedRabbitMqOptions = Required<RabbitMqTransportOptions>;

export function resolveRabbitMqOptions(o: RabbitMqTransportOptions): ResolvedRabbitMqOptions {
  if (typeof o.url !== 'string' || !/^amqps?:\/\//.test(o.url)) {
    throw new SluiceError(
      'SLUICE_BROKER_URL',
      `The RabbitMQ transport needs a URL like amqp://user:password@host:5672/vhost, got ${JSON.stringify(
        typeof o.url === 'string' ? redactUrl(o.url) : o.url,
      )}.`,
    );
  }
  return {
    url: o.url,
    defaultPartitions: o.defaultPartitions ?? 1,
    sessionTimeoutMs: o.sessionTimeoutMs ?? 10_000,
    heartbeatSeconds: o.heartbeatSeconds ?? 5,
    connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
    reconnectTimeoutMs: o.reconnectTimeoutMs ?? 60_000,
    offsetWaitMs: o.offsetWaitMs ?? 60_000,
    endProbeMs: o.endProbeMs ?? { first: 1000, quiet: 150 },
    clientId: o.clientId ?? 'sluice',
  };
}

/**
 * The RabbitMQ transport: sluice's log contract (src/transport/types.ts) on RabbitMQ stream queues over AMQP 0-9-1
 * (amqplib). See ./index.ts for the design: partitions, the topic catalog, groups, offsets, and the limits.
 */
export class RabbitMqTransport implements Transport {
  readonly kind = 'rabbitmq';
  readonly capabilities: TransportCapabilities = {
    atomicProduceCommit: false,
    retention: false,
    delivery:
      'at-least-once: send() resolves after publisher confirms from durable stream queues; consumers commit ' +
      'offsets after processing (no atomic produce+commit; stream retention, when set, is per segment)',
  };
  readonly options: ResolvedRabbitMqOptions;
  readonly link: Link;
  readonly publisher: Publisher;
  readonly #catalog = emptyCatalog();
  readonly #catalogLog: RecordLog<CatalogRecord & { id: string }>;
  readonly #followers = new Map<string, OffsetFollower>();
  readonly #clients = new Set<{ close(): Promise<void> }>();
  /** Highest end offsets this transport has seen per partition queue (never more than the truth). */
  readonly #knownEnds = new Map<string, number>();
  #closed = false;

  constructor(options: RabbitMqTransportOptions | ResolvedRabbitMqOptions) {
    this.options = resolveRabbitMqOptions(options);
    this.link = this.newLink('admin');
    this.publisher = new Publisher(this.link);
    this.#catalogLog = new RecordLog(
      this.link,
      this.publisher,
      CATALOG_STREAM,
      parseCatalogRecord,
      (rec) => applyCatalog(this.#catalog, rec),
      this.options.offsetWaitMs,
    );
  }

  newLink(role: string): Link {
    return new Link({
      url: this.options.url,
      name: `${this.options.clientId}-${role}-${hostname()}-${process.pid}`,
      heartbeatSeconds: this.options.heartbeatSeconds,
      connectTimeoutMs: this.options.connectTimeoutMs,
      reconnectTimeoutMs: this.options.reconnectTimeoutMs,
    });
  }

  /** Connects and reads the topic catalog; SLUICE_BROKER_UNREACHABLE when the broker does not answer in time. */
  async connect(): Promise<void> {
    try {
      await this.link.model();
      await this.#catalogLog.open();
    } catch (err) {
      await this.close().catch(() => undefined);
      throw err;
    }
  }

  checkOpen(): void {
    if (this.#closed) {
      throw new SluiceError(
        'SLUICE_CLOSED',
        'This RabbitMQ transport is closed. Open a new one with openRabbitMqTransport() to continue.',
      );
    }
  }

  // ---- catalog ---------------------------------------------------------------------------------------------

  #unknownTopic(name: string): SluiceError {
    return new SluiceError(
      'SLUICE_TOPIC_UNKNOWN',
      `Topic ${JSON.stringify(name)} does not exist on RabbitMQ ${redactUrl(this.options.url)}. Create it first ` +
        `(sluice topics create ${name} --partitions N) or let sluice create it on first use (autoCreateTopics: true).`,
      { details: { topic: name } },
    );
  }

  /** The partition count of a topic; creates it (default partition count) when asked, else SLUICE_TOPIC_UNKNOWN. */
  async partitionCount(topic: string, autoCreate: boolean): Promise<number> {
    this.checkOpen();
    checkTopicName(topic);
    let t = this.#catalog.topics.get(topic);
    if (t === undefined) {
      await this.#catalogLog.sync();
      t = this.#catalog.topics.get(topic);
    }
    if (t !== undefined) return t.partitions;
    if (!autoCreate) throw this.#unknownTopic(topic);
    await this.createTopic({ name: topic }, { ifNotExists: true });
    return this.#catalog.topics.get(topic)?.partitions ?? this.options.defaultPartitions;
  }

  /** Whether the catalog (brought up to date first) lists the topic. */
  async topicListed(topic: string): Promise<boolean> {
    await this.#catalogLog.sync();
    return this.#catalog.topics.has(topic);
  }

  async createTopic(spec: TopicSpec, options: { ifNotExists?: boolean } = {}): Promise<void> {
    this.checkOpen();
    checkTopicName(spec.name);
    const partitions = spec.partitions ?? this.options.defaultPartitions;
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
    const exists = (): SluiceError =>
      new SluiceError(
        'SLUICE_TOPIC_EXISTS',
        `Topic ${spec.name} already exists. Use it as it is, delete it first (sluice topics delete ${spec.name}), ` +
          'or pass ifNotExists / --if-not-exists.',
        { details: { topic: spec.name } },
      );
    await this.#catalogLog.sync();
    if (this.#catalog.topics.has(spec.name)) {
      if (options.ifNotExists) return;
      throw exists();
    }
    // the queues first, so a topic listed in the catalog always has its partitions
    const args = { ...STREAM_ARGS, ...retentionArguments(spec) };
    await this.link.withChannel(async (ch) => {
      for (let p = 0; p < partitions; p++) {
        await ch.assertQueue(partitionQueue(spec.name, p), { durable: true, arguments: args });
      }
    });
    const id = randomUUID();
    const rec: CatalogRecord = { op: 'create', id, topic: spec.name, partitions };
    if (spec.retentionMs !== undefined) rec.retentionMs = spec.retentionMs;
    if (spec.retentionBytes !== undefined) rec.retentionBytes = spec.retentionBytes;
    await this.#catalogLog.append(rec);
    const winner = this.#catalog.topics.get(spec.name);
    if (winner !== undefined && winner.createdBy !== id) {
      // another client created the topic at the same time and its record came first
      if (options.ifNotExists) return;
      throw exists();
    }
  }

  async deleteTopic(name: string): Promise<void> {
    this.checkOpen();
    checkTopicName(name);
    await this.#catalogLog.sync();
    const t = this.#catalog.topics.get(name);
    if (t === undefined) throw this.#unknownTopic(name);
    await this.#catalogLog.append({ op: 'delete', id: randomUUID(), topic: name });
    for (let p = 0; p < t.partitions; p++) {
      const q = partitionQueue(name, p);
      this.#knownEnds.delete(q);
      const f = this.#followers.get(q);
      this.#followers.delete(q);
      await f?.close();
      await this.link
        .withChannel((ch) => ch.deleteQueue(q))
        .catch((err: unknown) => {
          if (amqpCode(err) !== 404) throw err;
        });
    }
  }

  async listTopics(): Promise<string[]> {
    this.checkOpen();
    await this.#catalogLog.sync();
    return [...this.#catalog.topics.keys()].sort();
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    this.checkOpen();
    checkTopicName(name);
    await this.#catalogLog.sync();
    const t = this.#catalog.topics.get(name);
    if (t === undefined) throw this.#unknownTopic(name);
    const partitions: PartitionDescription[] = await Promise.all(
      Array.from({ length: t.partitions }, (_, p) => this.#describePartition(name, p)),
    );
    const d: TopicDescription = { name, partitions };
    if (t.retentionMs !== undefined) d.retentionMs = t.retentionMs;
    if (t.retentionBytes !== undefined) d.retentionBytes = t.retentionBytes;
    return d;
  }

  /** Notes an offset known to exist, so reported end offsets never fall below what this process saw. */
  noteOffset(queue: string, offset: number): void {
    const e = this.#knownEnds.get(queue);
    if (e === undefined || offset + 1 > e) this.#knownEnds.set(queue, offset + 1);
  }

  /**
   * Start and end offsets of one partition. AMQP 0-9-1 cannot ask a stream for them (queue.declare-ok reports 0
   * messages for streams), so two short reads estimate them: from `first` (the first delivery is the start offset)
   * and from `last` (RabbitMQ delivers the last chunk; the end is one past the highest offset that arrives before
   * the deliveries go quiet). An empty partition delivers nothing: after `endProbeMs.first` it is reported as 0/0
   * (or what this process saw). Exact when the partition is not being written during the probe; otherwise a
   * snapshot that may lag by the records written meanwhile.
   */
  async #describePartition(topic: string, partition: number): Promise<PartitionDescription> {
    const q = partitionQueue(topic, partition);
    const [first, last] = await Promise.all([this.#probe(q, 'first', true), this.#probe(q, 'last', false)]);
    const known = this.#knownEnds.get(q);
    let end = last === undefined ? 0 : last + 1;
    if (known !== undefined && known > end) end = known;
    const start = first === undefined ? end : Math.min(first, end);
    if (end > 0) this.noteOffset(q, end - 1);
    return { partition, startOffset: start, endOffset: end };
  }

  /** Reads from `spec` until the deliveries go quiet; the lowest (`firstOnly`) or highest offset seen. */
  async #probe(queue: string, spec: 'first' | 'last', firstOnly: boolean): Promise<number | undefined> {
    const { first, quiet } = this.options.endProbeMs;
    return this.link.withChannel(async (ch) => {
      let seen: number | undefined;
      let timer: NodeJS.Timeout | undefined;
      let done!: () => void;
      const finished = new Promise<void>((resolve) => {
        done = resolve;
      });
      const arm = (ms: number): void => {
        clearTimeout(timer);
        timer = setTimeout(done, ms);
      };
      await ch.prefetch(firstOnly ? 1 : 5000);
      arm(first);
      await ch.consume(
        queue,
        (msg) => {
          if (msg === null) {
            done();
            return;
          }
          const o = msg.properties.headers?.['x-stream-offset'];
          if (typeof o !== 'number') return;
          if (firstOnly) {
            // the first delivery is the start; no ack, so no more arrive
            seen ??= o;
            done();
            return;
          }
          ch.ack(msg);
          if (seen === undefined || o > seen) seen = o;
          arm(quiet);
        },
        { noAck: false, arguments: { 'x-stream-offset': spec } },
      );
      await finished;
      clearTimeout(timer);
      return seen;
    });
  }

  // ---- groups ----------------------------------------------------------------------------------------------

  /** Records a group in the catalog (for listGroups), once. */
  async registerGroup(groupId: string): Promise<void> {
    if (this.#catalog.groups.has(groupId)) return;
    await this.#catalogLog.append({ op: 'group', id: randomUUID(), group: groupId });
  }

  async listGroups(): Promise<string[]> {
    this.checkOpen();
    await this.#catalogLog.sync();
    return [...this.#catalog.groups].sort();
  }

  /** The group's committed offsets, read in full from its offsets stream. */
  async readCommitted(groupId: string): Promise<Map<string, number>> {
    const committed = new Map<string, number>();
    try {
      await this.link.withChannel((ch) => ch.checkQueue(offsetsStream(groupId)));
    } catch (err) {
      if (amqpCode(err) === 404) return committed; // the group never committed: do not create its stream
      throw err;
    }
    const log = new RecordLog<OffsetsRecord>(
      this.link,
      this.publisher,
      offsetsStream(groupId),
      parseOffsetsRecord,
      (rec) => applyOffsets(committed, rec),
      this.options.offsetWaitMs,
    );
    try {
      await log.sync();
    } finally {
      await log.close();
    }
    return committed;
  }

  /**
   * Members answer a probe on the group's exchange with their assignment; those that answer within `waitMs`
   * are listed (a snapshot: RabbitMQ keeps no member list).
   */
  async #probeMembers(groupId: string, waitMs = 300): Promise<Map<string, Array<[string, number]>>> {
    const members = new Map<string, Array<[string, number]>>();
    await this.link.withChannel(async (ch) => {
      const ex = groupExchange(groupId);
      await ch.assertExchange(ex, 'fanout', { durable: true, autoDelete: false });
      const q = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      await ch.bindQueue(q.queue, ex, '');
      await ch.consume(
        q.queue,
        (msg) => {
          if (msg === null) return;
          const m: AnnounceMessage | undefined = parseAnnounce(msg.content);
          if (m?.type === 'hello') members.set(m.member, m.assignment);
          if (m?.type === 'bye') members.delete(m.member);
        },
        { noAck: true },
      );
      const me = `describe-${randomUUID().slice(0, 8)}`;
      ch.publish(ex, '', Buffer.from(JSON.stringify({ type: 'probe', member: me })));
      await new Promise((r) => setTimeout(r, waitMs));
    });
    return members;
  }

  async describeGroup(groupId: string): Promise<GroupDescription> {
    this.checkOpen();
    await this.#catalogLog.sync();
    const [committed, members] = await Promise.all([
      this.readCommitted(groupId),
      this.#probeMembers(groupId),
    ]);
    const byTopic = new Map<string, Set<number>>();
    for (const k of committed.keys()) {
      const [p, topic] = k.split('\u0000') as [string, string];
      const s = byTopic.get(topic) ?? new Set<number>();
      s.add(Number(p));
      byTopic.set(topic, s);
    }
    for (const a of members.values())
      for (const [topic] of a) if (!byTopic.has(topic)) byTopic.set(topic, new Set());
    const offsets: GroupOffset[] = [];
    for (const topic of [...byTopic.keys()].sort()) {
      const t = this.#catalog.topics.get(topic);
      if (t === undefined) continue;
      const parts = await Promise.all(
        Array.from({ length: t.partitions }, (_, p) => this.#describePartition(topic, p)),
      );
      for (const p of parts) {
        const c = committed.get(tpKey(topic, p.partition));
        offsets.push({
          topic,
          partition: p.partition,
          committed: c,
          endOffset: p.endOffset,
          lag: Math.max(0, p.endOffset - (c ?? p.startOffset)),
        });
      }
    }
    return {
      groupId,
      members: [...members]
        .sort((a, b) => (a[0] < b[0] ? -1 : 1))
        .map(([memberId, a]) => ({
          memberId,
          assignment: a.map(([topic, partition]) => ({ topic, partition })),
        })),
      offsets,
    };
  }

  // ---- clients ---------------------------------------------------------------------------------------------

  follower(queue: string): OffsetFollower {
    let f = this.#followers.get(queue);
    if (f === undefined) {
      f = new OffsetFollower(this.link, queue);
      this.#followers.set(queue, f);
    }
    return f;
  }

  producer(options: ProducerOptions = {}): Producer {
    this.checkOpen();
    const p = new RabbitMqProducer(this, this.publisher, options);
    this.#clients.add(p);
    return p;
  }

  consumer(options: ConsumerOptions): Consumer {
    this.checkOpen();
    const c = new RabbitMqConsumer(this, options);
    this.#clients.add(c);
    return c;
  }

  untrack(client: { close(): Promise<void> }): void {
    this.#clients.delete(client);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of [...this.#clients]) await c.close().catch(() => undefined);
    for (const f of this.#followers.values()) await f.close().catch(() => undefined);
    this.#followers.clear();
    await this.#catalogLog.close().catch(() => undefined);
    await this.publisher.close().catch(() => undefined);
    await this.link.close();
  }
}

/** Opens the RabbitMQ transport and checks that the broker answers. */
export async function openRabbitMqTransport(options: RabbitMqTransportOptions): Promise<RabbitMqTransport> {
  const t = new RabbitMqTransport(options);
  await t.connect();
  return t;
}
