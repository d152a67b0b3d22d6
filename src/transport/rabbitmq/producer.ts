import { SluiceError } from '../../errors.ts';
import { makePartitioner, toBuffer } from '../partitioner.ts';
import type {
  Consumer,
  ProduceRecord,
  Producer,
  ProducerOptions,
  RecordMetadata,
  TopicPartitionOffset,
} from '../types.ts';
import { type Link, type Publisher, StreamReader } from './link.ts';
import { encodeRecord, partitionQueue } from './model.ts';
import type { RabbitMqTransport } from './transport.ts';

interface Waiting {
  resolve: (m: { offset: number }) => void;
}

/**
 * Learns the stream offsets of published messages. RabbitMQ's publisher confirms say *that* a message is stored,
 * not *where*; AMQP 0-9-1 has no other way to learn it. The follower reads the partition's stream from its last
 * chunk on (subscribed before the first publish, so every later message passes by) and matches message ids.
 * It stops after a few idle seconds and starts again on the next send.
 */
export class OffsetFollower {
  readonly queue: string;
  readonly #link: Link;
  readonly #waiting = new Map<string, Waiting>();
  #reader: StreamReader | undefined;
  #ready: Promise<void> | undefined;
  #idle: NodeJS.Timeout | undefined;
  readonly #idleMs: number;

  constructor(link: Link, queue: string, idleMs = 5000) {
    this.#link = link;
    this.queue = queue;
    this.#idleMs = idleMs;
  }

  /** Subscribes (once) before the caller publishes; resolves when the subscription is confirmed. */
  async ready(): Promise<void> {
    clearTimeout(this.#idle);
    if (this.#reader === undefined) {
      const reader = new StreamReader(this.#link, {
        queue: this.queue,
        // `last`, not `next`: the first delivery tells an offset, so after a reconnection the reader continues
        // exactly after what it saw (from `first` if it saw nothing, which is exact but reads the whole stream)
        start: 'last',
        prefetch: 2000,
        autoAck: true,
        onMessage: (msg, offset) => {
          const id = msg.properties.messageId as string | undefined;
          if (id === undefined) return;
          const w = this.#waiting.get(id);
          if (w === undefined) return;
          this.#waiting.delete(id);
          w.resolve({ offset });
          this.#scheduleIdle();
        },
        resume: () => (reader.lastOffset === undefined ? 'first' : reader.lastOffset + 1),
      });
      this.#reader = reader;
      this.#ready = reader.start();
      this.#ready.catch(() => {
        if (this.#reader === reader) {
          this.#reader = undefined;
          this.#ready = undefined;
          void reader.stop();
        }
      });
    }
    await this.#ready;
  }

  /** Call before publishing message `id`; resolves with its offset once the follower saw it. */
  expect(id: string): Promise<{ offset: number }> {
    return new Promise((resolve) => this.#waiting.set(id, { resolve }));
  }

  forget(id: string): void {
    this.#waiting.delete(id);
    this.#scheduleIdle();
  }

  #scheduleIdle(): void {
    if (this.#waiting.size > 0) return;
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      if (this.#waiting.size > 0) return;
      const r = this.#reader;
      this.#reader = undefined;
      this.#ready = undefined;
      void r?.stop();
    }, this.#idleMs);
    this.#idle.unref();
  }

  async close(): Promise<void> {
    clearTimeout(this.#idle);
    const r = this.#reader;
    this.#reader = undefined;
    this.#ready = undefined;
    await r?.stop();
  }
}

/**
 * A producer on the RabbitMQ transport. Records go to the partition's stream queue through the default exchange,
 * with publisher confirms; `send()` resolves once every record is confirmed *and* its offset is known.
 */
export class RabbitMqProducer implements Producer {
  readonly #transport: RabbitMqTransport;
  readonly #publisher: Publisher;
  readonly #autoCreate: boolean;
  readonly #pick: (topic: string, key: Buffer | null, partitionCount: number) => number;
  readonly #inflight = new Set<Promise<unknown>>();
  #closed = false;

  constructor(transport: RabbitMqTransport, publisher: Publisher, options: ProducerOptions) {
    this.#transport = transport;
    this.#publisher = publisher;
    this.#autoCreate = options.autoCreateTopics ?? false;
    this.#pick = makePartitioner(options.partitioner);
  }

  send(records: ProduceRecord | ProduceRecord[]): Promise<RecordMetadata[]> {
    const p = this.#send(Array.isArray(records) ? records : [records]);
    this.#inflight.add(p);
    const done = (): void => {
      this.#inflight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  async #send(records: ProduceRecord[]): Promise<RecordMetadata[]> {
    if (this.#closed) {
      throw new SluiceError(
        'SLUICE_CLOSED',
        'This RabbitMQ producer is closed. Make a new one with transport.producer().',
      );
    }
    const now = Date.now();
    const counts = new Map<string, number>();
    const targets: Array<{ topic: string; partition: number }> = [];
    for (const r of records) {
      if (typeof r?.topic !== 'string') {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          'Every record needs a topic (a string). Set record.topic.',
        );
      }
      let n = counts.get(r.topic);
      if (n === undefined) {
        n = await this.#transport.partitionCount(r.topic, this.#autoCreate);
        counts.set(r.topic, n);
      }
      let partition = r.partition;
      if (partition !== undefined) {
        if (!Number.isInteger(partition) || partition < 0 || partition >= n) {
          throw new SluiceError(
            'SLUICE_PARTITION_UNKNOWN',
            `Topic ${r.topic} has partitions 0-${n - 1}; a record asked for partition ${partition}. ` +
              'Send to an existing partition, or leave the partition out to use the partitioner.',
            { details: { topic: r.topic, partition } },
          );
        }
      } else {
        partition = this.#pick(r.topic, toBuffer(r.key ?? null), n);
      }
      targets.push({ topic: r.topic, partition });
    }
    const followers = new Map<string, OffsetFollower>();
    for (const t of targets) {
      const q = partitionQueue(t.topic, t.partition);
      if (!followers.has(q)) followers.set(q, this.#transport.follower(q));
    }
    await Promise.all([...followers.values()].map((f) => f.ready()));

    // publish in order (one channel keeps per-queue order), then wait for confirms and offsets
    const confirms: Promise<void>[] = [];
    const offsets: Array<Promise<{ offset: number }>> = [];
    const ids: string[] = [];
    const timestamps: number[] = [];
    records.forEach((r, i) => {
      const t = targets[i]!;
      const q = partitionQueue(t.topic, t.partition);
      const enc = encodeRecord(r, now);
      const id = this.#publisher.nextMessageId();
      ids.push(id);
      timestamps.push(enc.timestamp);
      const f = followers.get(q)!;
      offsets.push(f.expect(id));
      confirms.push(
        this.#publisher.publish(
          q,
          enc.content,
          { messageId: id, headers: enc.headers, timestamp: Math.floor(enc.timestamp / 1000) },
          () => this.#transport.topicListed(t.topic),
        ),
      );
    });
    try {
      await Promise.all(confirms);
    } catch (err) {
      records.forEach((_, i) => {
        const t = targets[i]!;
        followers.get(partitionQueue(t.topic, t.partition))!.forget(ids[i]!);
      });
      throw err;
    }
    const waitMs = this.#transport.options.offsetWaitMs;
    let timer: NodeJS.Timeout | undefined;
    let located: Array<{ offset: number }>;
    try {
      located = await Promise.race([
        Promise.all(offsets),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new SluiceError(
                  'SLUICE_TIMEOUT',
                  `RabbitMQ confirmed the records, but their offsets could not be read back within ${waitMs} ms ` +
                    '(the records are stored). The broker is overloaded or the connection is flapping.',
                  { canRetry: false },
                ),
              ),
            waitMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    records.forEach((_, i) => {
      const t = targets[i]!;
      this.#transport.noteOffset(partitionQueue(t.topic, t.partition), located[i]!.offset);
    });
    return records.map((_, i) => ({
      topic: targets[i]!.topic,
      partition: targets[i]!.partition,
      offset: located[i]!.offset,
      timestamp: timestamps[i]!,
    }));
  }

  async sendAndCommit(
    _records: ProduceRecord[],
    _consumer: Consumer,
    _offsets: TopicPartitionOffset[],
  ): Promise<RecordMetadata[]> {
    throw new SluiceError(
      'SLUICE_UNSUPPORTED',
      'The RabbitMQ transport cannot append records and commit consumer offsets atomically: RabbitMQ has no ' +
        'transactions spanning stream queues. Use send() then consumer.commit() (at-least-once, deduplicate ' +
        'downstream), or the Kafka or embedded transport for exactly-once.',
    );
  }

  async flush(): Promise<void> {
    await Promise.allSettled([...this.#inflight]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    this.#transport.untrack(this);
  }
}
