/**
 * pypz-rmq-io's channels (`RMQChannelReader` / `RMQChannelWriter`) on RabbitMQ work queues
 * (src/transport/rabbitmq/work-queue.ts), wire-compatible with pypz:
 * - data: exchange `<channel>` (durable); share mode = `direct` exchange and one durable queue `<channel>` bound
 *   with routing key "" that the replicas consume as competing consumers; broadcast mode = `fanout` exchange and
 *   queues `<channel>` (principal), `<channel>-1` … `<channel>-(n-1)`, replica i reading its own;
 * - statuses: stream queues `<channel>.writer.status` (writer → reader) and `<channel>.reader.status`
 *   (reader → writer), published through the default exchange (routing key = stream), read from `first` so the
 *   history replays on open;
 * - offsets mean nothing for queues: the loaded offset is -1 and a commit acknowledges every delivered message
 *   (`basic.ack` multiple); unacknowledged messages go back to the queue when the reader closes or dies;
 * - at most `maxPollRecords` (100) messages are unacknowledged (`basic.qos`), so a reader that never commits gets
 *   empty reads once it holds that many (pypz's behaviour).
 *
 * Why not the transport contract: pypz's RabbitMQ channels are defined by exchanges and classic queues with acks,
 * which sluice's log contract (stream queues) does not model. The Kafka channel (log-channel.ts) runs on every log
 * transport, RabbitMQ streams included, for sluice-only pipelines.
 */
import { SluiceError } from '../errors.ts';
import {
  openRabbitMqWorkQueues,
  type RabbitMqWorkQueues,
  type WorkQueueConsumer,
} from '../transport/rabbitmq/work-queue.ts';
import { type ChannelOptions, ChannelReader, ChannelWriter, type ReaderOptions } from './base.ts';

export function rmqWriterStatusStream(channelName: string): string {
  return `${channelName}.writer.status`;
}
export function rmqReaderStatusStream(channelName: string): string {
  return `${channelName}.reader.status`;
}
/** The data queue replica `index` reads: `<channel>` in share mode and for the principal, else `<channel>-<index>`. */
export function rmqDataQueue(channelName: string, groupMode: boolean, index: number): string {
  return groupMode && index > 0 ? `${channelName}-${index}` : channelName;
}

export interface RmqChannelOptions {
  /** `amqp://user:password@host:port/vhost`; the channel opens (and closes) its own connection. */
  url?: string;
  /** Or a shared connection, which the channel does not close. */
  workQueues?: RabbitMqWorkQueues;
  /** Messages per read and the AMQP prefetch (pypz `max_poll_records`). Default 100. */
  maxPollRecords?: number;
  /** How long a read waits for a full batch. Default 100 ms (pypz 0.1 s). */
  pollTimeoutMs?: number;
}

const STATUS_PREFETCH = 100;

class Connection {
  #wq: RabbitMqWorkQueues | undefined;
  readonly #o: RmqChannelOptions;

  constructor(o: RmqChannelOptions, cls: string) {
    if (o.workQueues === undefined && (typeof o.url !== 'string' || o.url === '')) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `${cls} needs a RabbitMQ url (amqp://user:password@host:5672) or an open workQueues connection.`,
      );
    }
    this.#o = o;
    this.#wq = o.workQueues;
  }

  async get(): Promise<RabbitMqWorkQueues> {
    this.#wq ??= await openRabbitMqWorkQueues({ url: this.#o.url!, name: 'sluice-channel' });
    return this.#wq;
  }

  async close(): Promise<void> {
    if (this.#o.workQueues === undefined) await this.#wq?.close();
    this.#wq = undefined;
  }
}

async function pollStatus(c: WorkQueueConsumer | undefined): Promise<Buffer[]> {
  if (c === undefined) return [];
  const got = await c.poll({ maxRecords: STATUS_PREFETCH, minRecords: 1, timeoutMs: 0 });
  c.ackAll(); // streams keep their messages; the ack only gives the consumer credit
  return got.map((d) => d.body);
}

async function streamsExist(wq: RabbitMqWorkQueues, channelName: string): Promise<boolean> {
  for (const s of [rmqWriterStatusStream(channelName), rmqReaderStatusStream(channelName)]) {
    if (!(await wq.checkQueue(s)).exists) return false;
  }
  return true;
}

export class RMQChannelReader<T = unknown> extends ChannelReader<T> {
  readonly queue: string;
  readonly #conn: Connection;
  readonly #o: RmqChannelOptions;
  #data: WorkQueueConsumer | undefined;
  #status: WorkQueueConsumer | undefined;
  #replicaStatus: WorkQueueConsumer | undefined;

  constructor(options: ReaderOptions & RmqChannelOptions) {
    super(options);
    this.#o = options;
    this.#conn = new Connection(options, 'RMQChannelReader');
    this.queue = rmqDataQueue(this.channelName, this.groupMode, this.groupIndex);
  }

  get #prefetch(): number {
    return this.#o.maxPollRecords ?? 100;
  }

  protected async createResources(): Promise<boolean> {
    const wq = await this.#conn.get();
    await wq.declareExchange(this.channelName, this.groupMode ? 'fanout' : 'direct');
    const queues = this.groupMode
      ? Array.from({ length: this.groupSize }, (_, i) => rmqDataQueue(this.channelName, true, i))
      : [this.channelName];
    for (const q of queues) {
      await wq.declareQueue(q, { type: 'classic', durable: true });
      await wq.bindQueue(q, this.channelName, '');
    }
    for (const s of [rmqWriterStatusStream(this.channelName), rmqReaderStatusStream(this.channelName)]) {
      await wq.declareQueue(s, { type: 'stream', durable: true });
    }
    return true;
  }

  /** pypz: delete if unused and empty; if not empty, delete anyway if unused; in use → not yet. */
  protected async deleteResources(): Promise<boolean> {
    const wq = await this.#conn.get();
    const queues = this.groupMode
      ? Array.from({ length: this.groupSize }, (_, i) => rmqDataQueue(this.channelName, true, i))
      : [this.channelName];
    for (const q of queues) {
      let r = await wq.deleteQueue(q, { ifUnused: true, ifEmpty: true });
      if (r.outcome === 'not-empty') {
        r = await wq.deleteQueue(q, { ifUnused: true });
        if (r.outcome === 'deleted')
          this.logger.warn({ queue: q, messages: r.messageCount }, 'deleted but not empty');
      }
      if (r.outcome === 'in-use') return false;
    }
    if ((await wq.deleteExchange(this.channelName, { ifUnused: true })) === 'in-use') return false;
    for (const s of [rmqWriterStatusStream(this.channelName), rmqReaderStatusStream(this.channelName)]) {
      await wq.deleteQueue(s, { ifUnused: true });
    }
    await this.#conn.close();
    return true;
  }

  protected async openChannel(): Promise<boolean> {
    const wq = await this.#conn.get();
    if (!(await wq.checkQueue(this.queue)).exists || !(await streamsExist(wq, this.channelName)))
      return false;
    if (!this.silent) this.#data ??= await wq.consume(this.queue, { prefetch: this.#prefetch });
    this.#status ??= await wq.consume(rmqWriterStatusStream(this.channelName), {
      prefetch: STATUS_PREFETCH,
      streamOffset: 'first',
    });
    if (this.isPrincipal && this.groupSize > 1) {
      this.#replicaStatus ??= await wq.consume(rmqReaderStatusStream(this.channelName), {
        prefetch: STATUS_PREFETCH,
        streamOffset: 'first',
      });
    }
    return true;
  }

  protected async closeChannel(): Promise<boolean> {
    const closing = [this.#data, this.#status, this.#replicaStatus];
    this.#data = this.#status = this.#replicaStatus = undefined;
    await Promise.all(closing.map((c) => c?.close()));
    await this.#conn.close(); // deleteResources opens a connection of its own when it runs
    return true;
  }

  protected async sendStatusMessage(message: string): Promise<void> {
    const wq = await this.#conn.get();
    await wq.publish('', rmqReaderStatusStream(this.channelName), Buffer.from(message, 'utf8'), {
      contentEncoding: 'utf-8', // py-amqp hands pypz a str only when this is set
    });
  }

  protected async retrieveStatusMessages(): Promise<Buffer[]> {
    const [a, b] = await Promise.all([pollStatus(this.#status), pollStatus(this.#replicaStatus)]);
    return [...a, ...b];
  }

  /** Offsets have no meaning for queues (pypz returns -1). */
  protected async loadInputRecordOffset(): Promise<number> {
    return -1;
  }

  /**
   * pypz: ready messages in the queue or deliveries buffered here. Also true after a read that returned records:
   * messages on their way from the broker (delivered, so no longer "ready", but not yet buffered) are then picked
   * up by the next read instead of being mistaken for the end of input.
   */
  async hasRecords(): Promise<boolean> {
    if (this.lastReadHadRecords) return true;
    if (this.#data !== undefined && this.#data.bufferedCount > 0) return true;
    const wq = await this.#conn.get();
    return (await wq.checkQueue(this.queue)).messageCount > 0;
  }

  protected async readRecords(): Promise<Buffer[]> {
    const data = this.#data;
    if (data === undefined) {
      throw new SluiceError(
        'SLUICE_CHANNEL_STATE',
        `Channel reader ${this.uniqueId} has no data consumer: ${this.silent ? 'it is silent (monitoring only)' : 'it is not open'}.`,
      );
    }
    const got = await data.poll({ maxRecords: this.#prefetch, timeoutMs: this.#o.pollTimeoutMs ?? 100 });
    return got.map((d) => d.body);
  }

  /** Acknowledges every message delivered so far, whatever the offset (pypz: basic_ack(0, multiple=True)). */
  protected async commitOffset(_offset: number): Promise<void> {
    this.#data?.ackAll();
  }
}

export class RMQChannelWriter<T = unknown> extends ChannelWriter<T> {
  readonly #conn: Connection;
  #status: WorkQueueConsumer | undefined;

  constructor(options: ChannelOptions & RmqChannelOptions) {
    super(options);
    this.#conn = new Connection(options, 'RMQChannelWriter');
  }

  protected async createResources(): Promise<boolean> {
    return true;
  }

  protected async deleteResources(): Promise<boolean> {
    return true;
  }

  /** Not yet until the reader declared the exchange and the status streams. */
  protected async openChannel(): Promise<boolean> {
    const wq = await this.#conn.get();
    if (!(await wq.exchangeExists(this.channelName)) || !(await streamsExist(wq, this.channelName)))
      return false;
    this.#status ??= await wq.consume(rmqReaderStatusStream(this.channelName), {
      prefetch: STATUS_PREFETCH,
      streamOffset: 'first',
    });
    return true;
  }

  protected async closeChannel(): Promise<boolean> {
    await this.#status?.close();
    this.#status = undefined;
    await this.#conn.close();
    return true;
  }

  protected async sendStatusMessage(message: string): Promise<void> {
    const wq = await this.#conn.get();
    await wq.publish('', rmqWriterStatusStream(this.channelName), Buffer.from(message, 'utf8'), {
      contentEncoding: 'utf-8', // py-amqp hands pypz a str only when this is set
    });
  }

  protected async retrieveStatusMessages(): Promise<Buffer[]> {
    return pollStatus(this.#status);
  }

  protected async writeRecords(bodies: Buffer[]): Promise<void> {
    const wq = await this.#conn.get();
    await wq.publishBatch(bodies.map((body) => ({ exchange: this.channelName, routingKey: '', body })));
  }

  /** Every publish already waited for its confirm. */
  protected async flush(): Promise<void> {}
}
