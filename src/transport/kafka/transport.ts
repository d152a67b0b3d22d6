import { Admin, ListOffsetTimestamps } from '@platformatic/kafka';
import { SluiceError } from '../../errors.ts';
import type {
  Consumer,
  ConsumerOptions,
  GroupDescription,
  GroupOffset,
  Producer,
  ProducerOptions,
  TopicDescription,
  TopicSpec,
  Transport,
  TransportCapabilities,
} from '../types.ts';
import { KafkaConsumer } from './consumer.ts';
import { flattenMessages, kafkaErrorId, toSluiceError, unknownTopicError } from './errors.ts';
import {
  baseClientOptions,
  type KafkaTransportOptions,
  type ResolvedKafkaOptions,
  resolveKafkaOptions,
} from './options.ts';
import { KafkaProducer } from './producer.ts';

const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;
/** Kafka config source DYNAMIC_TOPIC_CONFIG: a value set on the topic itself. */
const TOPIC_CONFIG_SOURCE = 1;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function isUnknownTopic(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.message.startsWith('Unknown topic ')) return true;
  return kafkaErrorId(err, 'UNKNOWN_TOPIC_OR_PARTITION', 'UNKNOWN_TOPIC_ID') !== undefined;
}

export function validateTopicName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !TOPIC_NAME.test(name) || name === '.' || name === '..') {
    throw new SluiceError(
      'SLUICE_USAGE',
      `Bad Kafka topic name ${JSON.stringify(name)}. Use 1-249 characters from letters, digits, ".", "_" and "-" (not "." or "..").`,
    );
  }
}

/**
 * The Kafka transport: the sluice contract on `@platformatic/kafka`. One admin client serves topic/group
 * management and metadata; every `producer()` and `consumer()` gets its own client and connections.
 */
export class KafkaTransport implements Transport {
  readonly kind = 'kafka';
  readonly capabilities: TransportCapabilities = {
    atomicProduceCommit: true,
    retention: true,
    delivery:
      'at-least-once (commit after processing); exactly-once consume-transform-produce with sendAndCommit (Kafka transactions, read_committed consumers)',
  };
  /** Resolved options; internal to the transport's producers and consumers. */
  readonly config: ResolvedKafkaOptions;
  readonly #admin: Admin;
  readonly #producers = new Set<KafkaProducer>();
  readonly #consumers = new Set<KafkaConsumer>();
  #closed = false;
  #closing: Promise<void> | undefined;

  /** Use `openKafkaTransport`, which also checks that the cluster is reachable. */
  constructor(options: KafkaTransportOptions | ResolvedKafkaOptions) {
    this.config = 'brokers' in options ? options : resolveKafkaOptions(options);
    this.#admin = new Admin({ ...baseClientOptions(this.config, 'admin') });
  }

  /** One metadata round trip, bounded by `connectTimeoutMs`; SLUICE_BROKER_UNREACHABLE otherwise. */
  async connect(): Promise<void> {
    const { brokers, connectTimeoutMs } = this.config;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SluiceError(
              'SLUICE_BROKER_UNREACHABLE',
              `No answer from the Kafka broker(s) ${brokers.join(', ')} within ${connectTimeoutMs} ms. Check that the broker runs and listens there, that bootstrap.servers is right, and that security.protocol (TLS/SASL) matches the listener; raise connectTimeoutMs for slow networks.`,
              { canRetry: true, details: { brokers } },
            ),
          ),
        connectTimeoutMs,
      );
    });
    try {
      await Promise.race([this.#admin.metadata({ topics: [] }), timeout]);
    } catch (err) {
      await this.#admin.close().catch(() => undefined);
      this.#closed = true;
      if (err instanceof SluiceError) throw err;
      const mapped = toSluiceError(err, 'connect', brokers);
      if (mapped.code !== 'SLUICE_TRANSPORT') throw mapped;
      throw new SluiceError(
        'SLUICE_BROKER_UNREACHABLE',
        `Could not reach the Kafka broker(s) ${brokers.join(', ')}: ${flattenMessages(err)}. Check that the broker runs and listens there, that bootstrap.servers is right, and that security.protocol (TLS/SASL) matches the listener.`,
        { cause: err, canRetry: true, details: { brokers } },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new SluiceError(
        'SLUICE_CLOSED',
        'This Kafka transport is closed. Open a new one with openKafkaTransport() to continue.',
      );
    }
  }

  #fail(err: unknown, action: string): SluiceError {
    return toSluiceError(err, action, this.config.brokers);
  }

  // ---- metadata used by producers and consumers --------------------------------------------------------------

  /**
   * The partition count of `topic`; creates the topic (default partition count) when it is missing and
   * `autoCreate` is set, else SLUICE_TOPIC_UNKNOWN.
   */
  async partitionCount(topic: string, autoCreate: boolean): Promise<number> {
    this.#checkOpen();
    validateTopicName(topic);
    try {
      const md = await this.#admin.metadata({ topics: [topic], retries: 0 });
      const t = md.topics.get(topic);
      if (t !== undefined && t.partitionsCount > 0) return t.partitionsCount;
    } catch (err) {
      if (!isUnknownTopic(err)) {
        // transient (leader election, connection): one more try with the client's retries
        try {
          const md = await this.#admin.metadata({ topics: [topic], forceUpdate: true });
          const t = md.topics.get(topic);
          if (t !== undefined && t.partitionsCount > 0) return t.partitionsCount;
        } catch (err2) {
          if (!isUnknownTopic(err2)) throw this.#fail(err2, `read the metadata of topic "${topic}"`);
        }
      }
    }
    if (!autoCreate) throw unknownTopicError(topic);
    await this.createTopic({ name: topic }, { ifNotExists: true });
    return this.partitionCount(topic, false);
  }

  /** Forget cached metadata (after a topic was created or deleted elsewhere). */
  clearMetadata(): void {
    this.#admin.clearMetadata();
  }

  // ---- admin ----------------------------------------------------------------------------------------------------

  async createTopic(spec: TopicSpec, options: { ifNotExists?: boolean } = {}): Promise<void> {
    this.#checkOpen();
    validateTopicName(spec?.name);
    const partitions = spec.partitions ?? this.config.defaultPartitions;
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `Topic "${spec.name}": partitions is ${JSON.stringify(spec.partitions)}; it must be an integer >= 1.`,
      );
    }
    const configs: Array<{ name: string; value: string }> = [];
    for (const [key, value] of [
      ['retention.ms', spec.retentionMs],
      ['retention.bytes', spec.retentionBytes],
    ] as const) {
      if (value === undefined) continue;
      if (!Number.isInteger(value) || value < 1) {
        throw new SluiceError(
          'SLUICE_USAGE',
          `Topic "${spec.name}": ${key === 'retention.ms' ? 'retentionMs' : 'retentionBytes'} is ${JSON.stringify(value)}; it must be a positive integer (leave it out to keep everything).`,
        );
      }
      configs.push({ name: key, value: String(value) });
    }
    try {
      await this.#admin.createTopics({
        topics: [spec.name],
        partitions,
        replicas: this.config.replicationFactor,
        configs,
      });
    } catch (err) {
      if (kafkaErrorId(err, 'TOPIC_ALREADY_EXISTS')) {
        if (options.ifNotExists) return;
        throw new SluiceError(
          'SLUICE_TOPIC_EXISTS',
          `Kafka topic "${spec.name}" already exists. Use it as it is, delete it first (sluice topics delete ${spec.name}), or pass { ifNotExists: true }.`,
          { cause: err, details: { topic: spec.name } },
        );
      }
      throw this.#fail(err, `create topic "${spec.name}"`);
    }
    // CreateTopics answers once the controller has the topic; wait until brokers serve every partition, so a
    // send or describe right after this call does not race the metadata propagation.
    const deadline = Date.now() + this.config.requestTimeoutMs;
    for (;;) {
      try {
        const md = await this.#admin.metadata({ topics: [spec.name], forceUpdate: true, retries: 0 });
        const t = md.topics.get(spec.name);
        if (
          t !== undefined &&
          t.partitionsCount === partitions &&
          t.partitions.every((p) => p && p.leader >= 0)
        )
          return;
      } catch {
        // not visible yet
      }
      if (Date.now() > deadline) {
        throw new SluiceError(
          'SLUICE_TIMEOUT',
          `Kafka created topic "${spec.name}" but its partitions got no leader within ${this.config.requestTimeoutMs} ms. Check the broker logs and that enough brokers are up for the replication factor.`,
        );
      }
      await sleep(50);
    }
  }

  async deleteTopic(name: string): Promise<void> {
    this.#checkOpen();
    validateTopicName(name);
    await this.partitionCount(name, false); // SLUICE_TOPIC_UNKNOWN fast, instead of the client's retries
    try {
      await this.#admin.deleteTopics({ topics: [name] });
    } catch (err) {
      if (isUnknownTopic(err)) throw unknownTopicError(name, err);
      throw this.#fail(err, `delete topic "${name}"`);
    }
    this.#admin.clearMetadata();
  }

  async listTopics(): Promise<string[]> {
    this.#checkOpen();
    try {
      const topics = await this.#admin.listTopics({ includeInternals: false });
      return topics.filter((t) => !t.startsWith('__')).sort();
    } catch (err) {
      throw this.#fail(err, 'list topics');
    }
  }

  /** Start (earliest) and end (high watermark) offsets of every partition of the given topics. */
  async #offsetRanges(
    topics: Map<string, number>,
  ): Promise<Map<string, Array<{ start: number; end: number }>>> {
    const request = (timestamp: bigint) =>
      this.#admin.listOffsets({
        topics: [...topics].map(([name, count]) => ({
          name,
          partitions: Array.from({ length: count }, (_, partitionIndex) => ({ partitionIndex, timestamp })),
        })),
        isolationLevel: 0,
      });
    const [earliest, latest] = await Promise.all([
      request(ListOffsetTimestamps.EARLIEST),
      request(ListOffsetTimestamps.LATEST),
    ]);
    const out = new Map<string, Array<{ start: number; end: number }>>();
    for (const [name, count] of topics) {
      out.set(
        name,
        Array.from({ length: count }, () => ({ start: 0, end: 0 })),
      );
    }
    for (const t of earliest) {
      for (const p of t.partitions) {
        const slot = out.get(t.name)?.[p.partitionIndex];
        if (slot) slot.start = Number(p.offset);
      }
    }
    for (const t of latest) {
      for (const p of t.partitions) {
        const slot = out.get(t.name)?.[p.partitionIndex];
        if (slot) slot.end = Number(p.offset);
      }
    }
    return out;
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    this.#checkOpen();
    validateTopicName(name);
    const count = await this.partitionCount(name, false);
    try {
      const [ranges, configs] = await Promise.all([
        this.#offsetRanges(new Map([[name, count]])),
        this.#admin.describeConfigs({
          resources: [
            { resourceType: 2, resourceName: name, configurationKeys: ['retention.ms', 'retention.bytes'] },
          ],
        }),
      ]);
      const description: TopicDescription = {
        name,
        partitions: ranges
          .get(name)!
          .map((r, partition) => ({ partition, startOffset: r.start, endOffset: r.end })),
      };
      for (const c of configs[0]?.configs ?? []) {
        if (c.configSource !== TOPIC_CONFIG_SOURCE || c.value === null) continue;
        const v = Number(c.value);
        if (!Number.isFinite(v) || v < 0) continue;
        if (c.name === 'retention.ms') description.retentionMs = v;
        if (c.name === 'retention.bytes') description.retentionBytes = v;
      }
      return description;
    } catch (err) {
      if (isUnknownTopic(err)) throw unknownTopicError(name, err);
      throw this.#fail(err, `describe topic "${name}"`);
    }
  }

  async listGroups(): Promise<string[]> {
    this.#checkOpen();
    try {
      const groups = await this.#admin.listGroups();
      return [...groups.keys()].sort();
    } catch (err) {
      throw this.#fail(err, 'list consumer groups');
    }
  }

  async describeGroup(groupId: string): Promise<GroupDescription> {
    this.#checkOpen();
    if (typeof groupId !== 'string' || groupId === '') {
      throw new SluiceError(
        'SLUICE_USAGE',
        `Bad group id ${JSON.stringify(groupId)}: give a non-empty string.`,
      );
    }
    try {
      const [groups, offsetsList] = await Promise.all([
        this.#admin.describeGroups({ groups: [groupId] }),
        this.#admin.listConsumerGroupOffsets({ groups: [groupId] }),
      ]);
      const group = groups.get(groupId);
      const members = [...(group?.members.values() ?? [])].map((m) => ({
        memberId: m.id,
        assignment: [...(m.assignments?.values() ?? [])].flatMap((a) =>
          a.partitions.map((partition) => ({ topic: a.topic, partition })),
        ),
      }));
      const committed = new Map<string, number>();
      const topics = new Set<string>();
      for (const g of offsetsList) {
        for (const t of g.topics) {
          for (const p of t.partitions) {
            if (p.committedOffset < 0n) continue;
            topics.add(t.name);
            committed.set(`${t.name}\0${p.partitionIndex}`, Number(p.committedOffset));
          }
        }
      }
      for (const m of members) for (const a of m.assignment) topics.add(a.topic);
      const counts = new Map<string, number>();
      for (const topic of topics) {
        try {
          counts.set(topic, await this.partitionCount(topic, false));
        } catch {
          // the topic was deleted after the group committed to it: nothing to report
        }
      }
      const ranges = counts.size === 0 ? new Map() : await this.#offsetRanges(counts);
      const offsets: GroupOffset[] = [];
      for (const topic of [...counts.keys()].sort()) {
        const rs = ranges.get(topic) ?? [];
        for (let partition = 0; partition < rs.length; partition++) {
          const c = committed.get(`${topic}\0${partition}`);
          const end = rs[partition]!.end;
          const start = rs[partition]!.start;
          offsets.push({
            topic,
            partition,
            committed: c,
            endOffset: end,
            lag: Math.max(0, c === undefined ? end - start : end - c),
          });
        }
      }
      return { groupId, members, offsets };
    } catch (err) {
      throw this.#fail(err, `describe consumer group "${groupId}"`);
    }
  }

  // ---- clients --------------------------------------------------------------------------------------------------

  producer(options: ProducerOptions = {}): Producer {
    this.#checkOpen();
    const p = new KafkaProducer(this, options);
    this.#producers.add(p);
    return p;
  }

  consumer(options: ConsumerOptions): Consumer {
    this.#checkOpen();
    const c = new KafkaConsumer(this, options);
    this.#consumers.add(c);
    return c;
  }

  /** Called by producers and consumers when they close. */
  forget(client: KafkaProducer | KafkaConsumer): void {
    if (client instanceof KafkaProducer) this.#producers.delete(client);
    else this.#consumers.delete(client);
  }

  get closed(): boolean {
    return this.#closed;
  }

  async close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#closing = (async () => {
      const errors: unknown[] = [];
      await Promise.all([...this.#consumers].map((c) => c.close().catch((e: unknown) => errors.push(e))));
      await Promise.all([...this.#producers].map((p) => p.close().catch((e: unknown) => errors.push(e))));
      await this.#admin.close().catch((e: unknown) => errors.push(e));
      if (errors.length > 0) {
        throw toSluiceError(errors[0], 'close the transport cleanly', this.config.brokers);
      }
    })();
    return this.#closing;
  }
}

/**
 * Opens a Kafka transport and checks, within `connectTimeoutMs` (default 10 s), that the cluster answers. An
 * unreachable broker fails with SLUICE_BROKER_UNREACHABLE naming the address, never a hang.
 */
export async function openKafkaTransport(options: KafkaTransportOptions): Promise<KafkaTransport> {
  const transport = new KafkaTransport(resolveKafkaOptions(options));
  await transport.connect();
  return transport;
}
