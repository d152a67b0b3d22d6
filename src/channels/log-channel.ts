/**
 * pypz's Kafka channel on any sluice log transport (Kafka, embedded SQLite, RabbitMQ streams), through the
 * transport contract only. On Kafka it is wire-compatible with pypz-kafka-io:
 * - data topic `<channel>`; writer → reader statuses on `<channel>.output.state`, reader → writer statuses on
 *   `<channel>.input.state`; status records have key `state` (receivers keep records whose key contains `state`);
 * - status topics are read from the beginning by a consumer that never commits, so the history replays on open;
 * - share mode: the data topic has `groupSize` partitions and replica i reads partition i (static assignment) in
 *   group `<groupName>.<topic>` (`<name@context>.<topic>` when not replicated); broadcast mode: one partition that
 *   every replica reads in its own group `<name@context>.<topic>`;
 * - the writer sends record i to partition `i mod partitions` with key = that index as text, the index carrying
 *   over between calls;
 * - offsets are the group's committed next-offsets; `hasRecords()` is lag = end offset − position > 0.
 *
 * Differences from pypz, on purpose: a data poll returns up to `maxPollRecords` (default 500, pypz 1) and waits at
 * most `pollTimeoutMs` (default 1000, pypz 5000-10000) so the end of input is noticed sooner; a pre-existing data
 * topic with the wrong partition count is an error unless `recreateTopics` is set (pypz deletes and recreates it).
 */
import { SluiceError } from '../errors.ts';
import type { Consumer, Producer, Transport } from '../transport/types.ts';
import { type ChannelOptions, ChannelReader, ChannelWriter, type ReaderOptions } from './base.ts';

export const STATUS_KEY = 'state';

export function dataTopicName(channelName: string): string {
  return channelName;
}
/** Writer → reader statuses. */
export function writerStatusTopicName(channelName: string): string {
  return `${channelName}.output.state`;
}
/** Reader → writer statuses. */
export function readerStatusTopicName(channelName: string): string {
  return `${channelName}.input.state`;
}

export interface LogChannelOptions {
  /** The transport the channel runs on. It is not closed by the channel. */
  transport: Transport;
  /** Records per data poll. Default 500. */
  maxPollRecords?: number;
  /** Longest wait of one data poll. Default 1000 ms. */
  pollTimeoutMs?: number;
  /** Longest wait of one status poll. Default 100 ms. */
  statusPollTimeoutMs?: number;
  /** Delete and recreate a data topic whose partition count does not fit the group (pypz always does). */
  recreateTopics?: boolean;
}

async function topicExists(transport: Transport, topic: string): Promise<number | undefined> {
  try {
    return (await transport.describeTopic(topic)).partitions.length;
  } catch (err) {
    if (err instanceof SluiceError && err.code === 'SLUICE_TOPIC_UNKNOWN') return undefined;
    throw err;
  }
}

/** A consumer of a status topic from its first record, in a group that never commits. */
function statusConsumer(transport: Transport, uniqueId: string, topic: string): Consumer {
  return transport.consumer({
    groupId: `${uniqueId}.${topic}`,
    topics: [topic],
    assign: [{ topic, partition: 0 }],
    start: 'earliest',
  });
}

async function pollStatus(consumer: Consumer | undefined, timeoutMs: number): Promise<Buffer[]> {
  if (consumer === undefined) return [];
  const records = await consumer.poll({ timeoutMs, maxRecords: 1000 });
  return records
    .filter((r) => r.key?.toString('utf8').includes(STATUS_KEY) && r.value !== null)
    .map((r) => r.value!);
}

async function sendStatus(
  producer: Producer | undefined,
  topic: string,
  message: string,
  what: string,
): Promise<void> {
  if (producer === undefined) {
    throw new SluiceError(
      'SLUICE_CHANNEL_STATE',
      `Cannot send a status on ${what}: the channel is not open.`,
    );
  }
  await producer.send({ topic, key: STATUS_KEY, value: message });
}

export class LogChannelReader<T = unknown> extends ChannelReader<T> {
  readonly transport: Transport;
  readonly dataTopic: string;
  readonly partition: number;
  readonly consumerGroup: string;
  readonly #o: LogChannelOptions;
  #data: Consumer | undefined;
  #status: Consumer | undefined;
  #replicaStatus: Consumer | undefined;
  #producer: Producer | undefined;
  /** Next offset to read of the assigned partition, as far as this reader knows. */
  #position: number | undefined;

  constructor(options: ReaderOptions & LogChannelOptions) {
    super(options);
    this.#o = options;
    this.transport = options.transport;
    this.dataTopic = dataTopicName(this.channelName);
    this.partition = this.groupMode ? 0 : this.groupIndex;
    this.consumerGroup =
      !this.groupMode && this.groupName !== null
        ? `${this.groupName}.${this.dataTopic}`
        : `${this.uniqueId}.${this.dataTopic}`;
  }

  get partitionCount(): number {
    return this.groupMode ? 1 : this.groupSize;
  }

  protected async createResources(): Promise<boolean> {
    const want = this.partitionCount;
    const have = await topicExists(this.transport, this.dataTopic);
    if (have !== undefined && have !== want) {
      if (!this.#o.recreateTopics) {
        throw new SluiceError(
          'SLUICE_CHANNEL_RESOURCE',
          `Topic ${this.dataTopic} has ${have} partition(s), but channel ${this.channelName} needs ${want} ` +
            `(${this.groupMode ? 'broadcast mode: 1' : `one per replica: ${this.groupSize}`}). Delete the topic, or set recreateTopics ` +
            '(pypz deletes and recreates it; its records are lost).',
        );
      }
      this.logger.warn(
        { topic: this.dataTopic, have, want },
        'recreating the data topic with the right partition count',
      );
      await this.transport.deleteTopic(this.dataTopic);
    }
    await this.transport.createTopic({ name: this.dataTopic, partitions: want }, { ifNotExists: true });
    for (const t of [writerStatusTopicName(this.channelName), readerStatusTopicName(this.channelName)]) {
      await this.transport.createTopic({ name: t, partitions: 1 }, { ifNotExists: true });
    }
    return true;
  }

  protected async deleteResources(): Promise<boolean> {
    for (const t of [
      this.dataTopic,
      writerStatusTopicName(this.channelName),
      readerStatusTopicName(this.channelName),
    ]) {
      if ((await topicExists(this.transport, t)) !== undefined) await this.transport.deleteTopic(t);
    }
    return true;
  }

  protected async openChannel(): Promise<boolean> {
    const count = await topicExists(this.transport, this.dataTopic);
    if (count === undefined) return false; // the principal has not created it yet
    if (this.partition >= count) {
      throw new SluiceError(
        'SLUICE_CHANNEL_RESOURCE',
        `Replica ${this.groupIndex} of ${this.channelName} reads partition ${this.partition}, but topic ${this.dataTopic} has ${count}. ` +
          'All replicas must use the same groupSize as the principal that created the topic.',
      );
    }
    for (const t of [writerStatusTopicName(this.channelName), readerStatusTopicName(this.channelName)]) {
      if ((await topicExists(this.transport, t)) === undefined) return false;
    }
    this.#producer ??= this.transport.producer();
    if (!this.silent) {
      this.#data ??= this.transport.consumer({
        groupId: this.consumerGroup,
        topics: [this.dataTopic],
        assign: [{ topic: this.dataTopic, partition: this.partition }],
        maxPollRecords: this.#o.maxPollRecords ?? 500,
      });
    }
    this.#status ??= statusConsumer(this.transport, this.uniqueId, writerStatusTopicName(this.channelName));
    if (this.isPrincipal && this.groupSize > 1) {
      this.#replicaStatus ??= statusConsumer(
        this.transport,
        this.uniqueId,
        readerStatusTopicName(this.channelName),
      );
    }
    return true;
  }

  protected async closeChannel(): Promise<boolean> {
    await this.flushCommits();
    const closing = [this.#data, this.#status, this.#replicaStatus, this.#producer];
    this.#data = this.#status = this.#replicaStatus = this.#producer = undefined;
    await Promise.all(closing.map((c) => c?.close()));
    return true;
  }

  protected async sendStatusMessage(message: string): Promise<void> {
    await sendStatus(this.#producer, readerStatusTopicName(this.channelName), message, this.uniqueId);
  }

  protected async retrieveStatusMessages(): Promise<Buffer[]> {
    const timeout = this.#o.statusPollTimeoutMs ?? 100;
    const [a, b] = await Promise.all([
      pollStatus(this.#status, timeout),
      pollStatus(this.#replicaStatus, timeout),
    ]);
    return [...a, ...b];
  }

  protected override async onStarted(): Promise<void> {
    await this.#producer?.flush();
  }

  protected async loadInputRecordOffset(): Promise<number> {
    const consumer = this.#requireData();
    // the consumer starts at the committed offset (or the first record); pypz counts from 0 when none
    const [committed] = await consumer.committed([{ topic: this.dataTopic, partition: this.partition }]);
    this.#position = committed;
    return committed ?? 0;
  }

  async hasRecords(): Promise<boolean> {
    if (this.lastReadHadRecords) return true;
    const d = await this.transport.describeTopic(this.dataTopic);
    const end = d.partitions.find((p) => p.partition === this.partition)?.endOffset ?? 0;
    return end - (this.#position ?? this.readRecordOffset) > 0;
  }

  protected async readRecords(): Promise<Buffer[]> {
    const records = await this.#requireData().poll({ timeoutMs: this.#o.pollTimeoutMs ?? 1000 });
    if (records.length > 0) this.#position = records[records.length - 1]!.offset + 1;
    return records.map((r) => r.value ?? Buffer.alloc(0));
  }

  /**
   * Commits in the background, newest offset wins: a Kafka commit takes a round trip to the group coordinator, and
   * pypz's loop commits after every read. A failed commit is thrown by the next commit or by close; until a commit
   * is confirmed, a crash re-delivers from the previous one (at-least-once, nothing lost).
   */
  protected async commitOffset(offset: number): Promise<void> {
    this.#throwCommitError();
    this.#pendingCommit = offset;
    this.#committing ??= this.#drainCommits(this.#requireData());
  }

  #pendingCommit: number | undefined;
  #committing: Promise<void> | undefined;
  #commitError: unknown;

  async #drainCommits(consumer: Consumer): Promise<void> {
    try {
      while (this.#pendingCommit !== undefined) {
        const offset = this.#pendingCommit;
        this.#pendingCommit = undefined;
        await consumer.commit([{ topic: this.dataTopic, partition: this.partition, offset }]);
      }
    } catch (err) {
      this.#commitError = err;
    } finally {
      this.#committing = undefined;
    }
  }

  #throwCommitError(): void {
    if (this.#commitError !== undefined) {
      const err = this.#commitError;
      this.#commitError = undefined;
      throw err;
    }
  }

  /** Waits until every commit made so far is confirmed (close does this too). */
  async flushCommits(): Promise<void> {
    while (this.#committing !== undefined) await this.#committing;
    this.#throwCommitError();
  }

  #requireData(): Consumer {
    if (this.#data === undefined) {
      throw new SluiceError(
        'SLUICE_CHANNEL_STATE',
        `Channel reader ${this.uniqueId} has no data consumer: ${this.silent ? 'it is silent (monitoring only)' : 'it is not open'}.`,
      );
    }
    return this.#data;
  }
}

export class LogChannelWriter<T = unknown> extends ChannelWriter<T> {
  readonly transport: Transport;
  readonly dataTopic: string;
  readonly #o: LogChannelOptions;
  #producer: Producer | undefined;
  #status: Consumer | undefined;
  #partitions = 1;
  #next = 0;

  constructor(options: ChannelOptions & LogChannelOptions) {
    super(options);
    this.#o = options;
    this.transport = options.transport;
    this.dataTopic = dataTopicName(this.channelName);
  }

  /** The reader side creates the topics; a writer has nothing to create. */
  protected async createResources(): Promise<boolean> {
    return true;
  }

  protected async deleteResources(): Promise<boolean> {
    return true;
  }

  /** Not yet until the reader created the data and status topics. */
  protected async openChannel(): Promise<boolean> {
    const count = await topicExists(this.transport, this.dataTopic);
    if (count === undefined) return false;
    for (const t of [writerStatusTopicName(this.channelName), readerStatusTopicName(this.channelName)]) {
      if ((await topicExists(this.transport, t)) === undefined) return false;
    }
    this.#partitions = count;
    this.#producer ??= this.transport.producer();
    this.#status ??= statusConsumer(this.transport, this.uniqueId, readerStatusTopicName(this.channelName));
    return true;
  }

  protected async closeChannel(): Promise<boolean> {
    const closing = [this.#status, this.#producer];
    this.#status = this.#producer = undefined;
    await Promise.all(closing.map((c) => c?.close()));
    return true;
  }

  protected async sendStatusMessage(message: string): Promise<void> {
    await sendStatus(this.#producer, writerStatusTopicName(this.channelName), message, this.uniqueId);
  }

  protected async retrieveStatusMessages(): Promise<Buffer[]> {
    return pollStatus(this.#status, this.#o.statusPollTimeoutMs ?? 100);
  }

  protected override async onStarted(): Promise<void> {
    await this.#producer?.flush();
  }

  protected async writeRecords(bodies: Buffer[]): Promise<void> {
    const producer = this.#producer;
    if (producer === undefined) {
      throw new SluiceError('SLUICE_CHANNEL_STATE', `Channel writer ${this.uniqueId} is not open.`);
    }
    const records = bodies.map((value) => {
      const partition = this.#next;
      if (this.#partitions > 1) this.#next = (this.#next + 1) % this.#partitions;
      return { topic: this.dataTopic, partition, key: String(partition), value };
    });
    await producer.send(records);
  }

  protected async flush(): Promise<void> {
    await this.#producer?.flush();
  }
}

function requireKind(transport: Transport, kind: string, cls: string): void {
  if (transport?.kind !== kind) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `${cls} needs a ${kind} transport, got ${transport?.kind ?? 'none'}. Open one with open${kind === 'kafka' ? 'Kafka' : 'Embedded'}Transport(), ` +
        'or use LogChannelReader/LogChannelWriter, which take any log transport.',
    );
  }
}

/** pypz-kafka-io's `KafkaChannelReader`, on sluice's Kafka transport. */
export class KafkaChannelReader<T = unknown> extends LogChannelReader<T> {
  constructor(options: ReaderOptions & LogChannelOptions) {
    requireKind(options.transport, 'kafka', 'KafkaChannelReader');
    super(options);
  }
}

/** pypz-kafka-io's `KafkaChannelWriter`, on sluice's Kafka transport. */
export class KafkaChannelWriter<T = unknown> extends LogChannelWriter<T> {
  constructor(options: ChannelOptions & LogChannelOptions) {
    requireKind(options.transport, 'kafka', 'KafkaChannelWriter');
    super(options);
  }
}

/** The same channel on the embedded SQLite transport: pipelines on one machine with no broker. */
export class EmbeddedChannelReader<T = unknown> extends LogChannelReader<T> {
  constructor(options: ReaderOptions & LogChannelOptions) {
    requireKind(options.transport, 'embedded', 'EmbeddedChannelReader');
    super(options);
  }
}

export class EmbeddedChannelWriter<T = unknown> extends LogChannelWriter<T> {
  constructor(options: ChannelOptions & LogChannelOptions) {
    requireKind(options.transport, 'embedded', 'EmbeddedChannelWriter');
    super(options);
  }
}
