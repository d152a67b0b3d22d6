/**
 * Work-queue semantics on RabbitMQ (issue #6 §1): exchanges, classic / quorum / stream queues, publishes with
 * publisher confirms, consumers with a prefetch limit and manual acks, all on one reconnecting connection (`Link`).
 * It is the layer pypz-compatible channels are built on (spec: pypz-channels.md §3-5, §8, §9), usable on its own.
 *
 * ```ts
 * const wq = await openRabbitMqWorkQueues({ url: 'amqp://guest:guest@127.0.0.1:5672' });
 * await wq.declareExchange('orders', 'direct');
 * await wq.declareQueue('orders', { type: 'classic' });
 * await wq.bindQueue('orders', 'orders');
 * await wq.publish('orders', '', Buffer.from('{"id":1}'));          // resolves after the broker's confirm
 * const c = await wq.consume('orders', { prefetch: 100 });
 * const batch = await c.poll({ maxRecords: 100, minRecords: 1, timeoutMs: 1000 });
 * // … process …
 * c.ackAll();                                                          // basic.ack(multiple) up to the last polled
 * await c.close(); await wq.close();
 * ```
 *
 * Semantics:
 * - **Publishing.** One confirm channel. `publish` resolves once RabbitMQ confirmed the message (for persistent
 *   messages on durable queues: written to disk). `mandatory` (default true): a message no queue receives comes back
 *   and the publish rejects with SLUICE_TOPIC_UNKNOWN (`details.reason: 'unroutable'`, `canRetry: true`, since a
 *   binding may appear, or a stream may still be starting after a broker restart). A negative confirm rejects with
 *   SLUICE_DELIVERY_FAILED (`canRetry`). An exchange is checked once (passive declare) before the first publish to
 *   it: a publish to a missing exchange would make RabbitMQ close the channel and fail every publish in flight on
 *   it; a missing one rejects with SLUICE_TOPIC_UNKNOWN (not retryable). `publishBatch` sends many and waits for
 *   all confirms (waiting for the socket to drain when amqplib's buffer is full); when some fail it rejects with an
 *   error whose `details.failed` lists their indices, so only those need sending again.
 * - **Consuming.** Each consumer has its own channel (`basic.qos(prefetch)`, manual acks). Deliveries are buffered;
 *   `poll` returns up to `maxRecords` of them, waiting until `minRecords` are buffered or `timeoutMs` passed. At most
 *   `prefetch` messages are unacknowledged at a time, so a consumer that never acks gets empty polls once it holds
 *   `prefetch` of them (pypz's behaviour). `ackAll` acknowledges everything handed out by `poll` so far (one
 *   `basic.ack` with `multiple`), not what is still buffered. `close` (or a lost connection) returns unacknowledged
 *   messages to the queue, where they are delivered again with `redelivered` set.
 * - **Streams.** Declared with `type: 'stream'`, consumed with `streamOffset` ('first', 'next', 'last' or an
 *   offset); each delivery carries its `streamOffset`. Acks do not remove anything from a stream; they only give the
 *   consumer credit, so ack (or `ackAll`) after each poll. Consuming a non-stream queue with `streamOffset` fails with
 *   SLUICE_CONFIG_INVALID "Invalid resource type, stream expected …".
 * - **Reconnection.** The connection comes back by itself after a broker restart. Publishes that were not confirmed
 *   when it dropped reject with SLUICE_DELIVERY_FAILED (`canRetry: true`; a resend may duplicate); confirmed ones
 *   are stored. Consumers subscribe again: a classic or quorum queue redelivers what was not acknowledged (deliveries
 *   buffered but not yet polled are dropped, since the broker sends them again); a stream consumer continues after
 *   the last offset it received (its buffer is kept). Delivery tags belong to a channel: acks for deliveries of an
 *   old connection are dropped (`ack` returns false, `ackAll` leaves them out), and those messages will be delivered
 *   again. If a consumer cannot subscribe again within `reconnectTimeoutMs`, `poll` throws the reason.
 *
 * Limits, as observed on RabbitMQ 3.10.8:
 * - `deleteQueue`'s if-unused / if-empty are only native for classic queues. Quorum queues answer them by closing
 *   the whole connection (540 NOT_IMPLEMENTED), so sluice checks the consumer and ready-message counts itself and
 *   then deletes (a race with a consumer arriving meanwhile is possible). Streams ignore both flags and report no
 *   consumers over AMQP 0-9-1, so a stream is always deleted.
 * - For streams, `checkQueue().consumerCount` is always 0 and `messageCount` is not usable: it lags behind and is
 *   often 0 (observed 0 for 3 messages, 5 for 6).
 * - A stream consumer needs manual acks (automatic ack closes the connection with 540) and a prefetch.
 */
import { hostname } from 'node:os';
import type {
  Channel,
  ConfirmChannel,
  ConsumeMessage,
  MessageProperties,
  Options,
  Message as RawMessage,
} from 'amqplib';
import { describeError, SluiceError } from '../../errors.ts';
import { Link, redactUrl } from './link.ts';
import {
  checkExchangeType,
  checkName,
  checkPrefetch,
  checkStreamOffset,
  classifyQueueProbe,
  deleteRefusal,
  type ExchangeType,
  type InflightPublish,
  mapAmqpError,
  missingExchange,
  OutstandingTags,
  type QueueType,
  queueDeclaration,
  ReturnMatcher,
  replyCode,
  type StreamOffset,
} from './work-queue-model.ts';

export type { ExchangeType, QueueType, StreamOffset } from './work-queue-model.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface WorkQueuesOptions {
  /** `amqp://user:password@host:port/vhost` (`amqps://` for TLS). */
  url: string;
  /** Connection name shown by `rabbitmqctl list_connections`. Default `sluice-workqueues-<host>-<pid>`. */
  name?: string;
  /** AMQP heartbeat in seconds. Default 5. */
  heartbeatSeconds?: number;
  /** How long the first connection may take before SLUICE_BROKER_UNREACHABLE. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /**
   * How long operations wait for a lost connection to come back, and how long a consumer keeps trying to
   * subscribe again after a broker restart. Default 60 000 ms.
   */
  reconnectTimeoutMs?: number;
}

export interface DeclareExchangeOptions {
  /** Survives a broker restart. Default true. */
  durable?: boolean;
  /** Deleted when its last binding goes. Default false. */
  autoDelete?: boolean;
}

export interface DeclareQueueOptions {
  /** Default 'classic'. Quorum queues and streams must be durable, not exclusive, not auto-delete. */
  type?: QueueType;
  /** Default true. */
  durable?: boolean;
  /** Only this connection may use it; deleted when it closes. Default false. */
  exclusive?: boolean;
  /** Deleted when its last consumer goes. Default false. */
  autoDelete?: boolean;
  /** Extra queue arguments (`x-max-length`, `x-max-age` …). `x-queue-type` comes from `type`. */
  arguments?: Record<string, unknown>;
}

export interface QueueStatus {
  exists: boolean;
  /** Messages ready for delivery (not counting unacknowledged ones). Not usable for streams (lags, often 0). */
  messageCount: number;
  /** Always 0 for streams. */
  consumerCount: number;
}

export type DeleteQueueResult =
  | { outcome: 'deleted'; messageCount: number }
  | { outcome: 'in-use' | 'not-empty' | 'missing' };

export type DeleteExchangeResult = 'deleted' | 'in-use' | 'missing';

export interface PublishOptions {
  /** Unroutable messages come back and the publish rejects. Default true. */
  mandatory?: boolean;
  /** deliveryMode 2: stored on disk by durable queues. Default true. */
  persistent?: boolean;
  contentType?: string;
  contentEncoding?: string;
  headers?: Record<string, unknown>;
  messageId?: string;
  correlationId?: string;
  /** AMQP timestamp, seconds since the epoch. */
  timestamp?: number;
  type?: string;
  appId?: string;
  /** Per-message TTL in ms. */
  expiration?: number;
  priority?: number;
}

export interface OutgoingMessage {
  exchange: string;
  routingKey: string;
  body: Buffer;
  options?: PublishOptions;
}

export interface ConsumeOptions {
  /** Unacknowledged deliveries the broker may send ahead (`basic.qos`), 1-65535. pypz: max_poll_records (100). */
  prefetch: number;
  /** Stream queues only: where to start. Default: RabbitMQ's default for streams ('next'). */
  streamOffset?: StreamOffset;
  /** No other consumer on this queue while this one lives. Default false. */
  exclusive?: boolean;
  /** Extra consumer arguments. */
  arguments?: Record<string, unknown>;
}

export interface PollOptions {
  /** At most this many deliveries. Default: the prefetch. */
  maxRecords?: number;
  /** Return as soon as this many are buffered (1 for low latency). Default: `maxRecords` (pypz's behaviour). */
  minRecords?: number;
  /** How long to wait for `minRecords`; then whatever is buffered (maybe nothing) is returned. Default 0. */
  timeoutMs?: number;
}

/** One message handed out by `poll`. */
export interface WorkQueueDelivery {
  body: Buffer;
  headers: Record<string, unknown>;
  properties: MessageProperties;
  /** Per channel: only meaningful for the subscription (`generation`) that received it. */
  deliveryTag: number;
  /** Delivered before to some consumer that did not acknowledge it. */
  redelivered: boolean;
  exchange: string;
  routingKey: string;
  /** Stream queues: the message's offset (`x-stream-offset`). */
  streamOffset?: number;
  /** Which subscription of the consumer received it (bumped on every re-subscription after a reconnection). */
  generation: number;
}

type Settle = (err: SluiceError | undefined) => void;

const DEFAULT_PROPS: Options.Publish = Object.freeze({ mandatory: true, persistent: true });
const PROPERTY_KEYS = [
  'contentType',
  'contentEncoding',
  'headers',
  'messageId',
  'correlationId',
  'timestamp',
  'type',
  'appId',
  'expiration',
  'priority',
] as const satisfies ReadonlyArray<keyof PublishOptions>;

interface Inflight extends InflightPublish {
  settle: Settle;
}

/**
 * Queues, exchanges, publishing and consuming on one reconnecting RabbitMQ connection. Make one with
 * `openRabbitMqWorkQueues`.
 */
export class RabbitMqWorkQueues {
  readonly link: Link;
  readonly #consumers = new Set<WorkQueueConsumer>();
  #channel: Promise<ConfirmChannel> | undefined;
  #matcher = new ReturnMatcher<Inflight>();
  #seq = 0;
  /** Set when the current confirm channel's socket buffer is full; resolves on 'drain' (or close). */
  #drain: Promise<void> | undefined;
  readonly #knownExchanges = new Set<string>(['']);
  readonly #checking = new Map<string, Promise<void>>();
  #closed = false;

  constructor(options: WorkQueuesOptions) {
    if (typeof options?.url !== 'string' || !/^amqps?:\/\//.test(options.url)) {
      throw new SluiceError(
        'SLUICE_BROKER_URL',
        `RabbitMQ work queues need a URL like amqp://user:password@host:5672/vhost, got ${JSON.stringify(
          typeof options?.url === 'string' ? redactUrl(options.url) : options?.url,
        )}.`,
      );
    }
    this.link = new Link({
      url: options.url,
      name: options.name ?? `sluice-workqueues-${hostname()}-${process.pid}`,
      heartbeatSeconds: options.heartbeatSeconds ?? 5,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      reconnectTimeoutMs: options.reconnectTimeoutMs ?? 60_000,
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---- administration ------------------------------------------------------------------------------------------

  /**
   * Runs one administrative operation on a throwaway channel (a refusal closes only that channel). Lost connections
   * are retried (every operation here is idempotent) until the link's reconnect timeout.
   */
  async #admin<T>(what: string, action: string, fn: (ch: Channel) => Promise<T>): Promise<T> {
    this.#checkOpen();
    const deadline = Date.now() + this.link.options.reconnectTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.link.withChannel(fn);
      } catch (err) {
        if (err instanceof SluiceError) throw err;
        // no reply code: the connection dropped (a refusal always has one); at most a few tries, so that an
        // operation which itself kills the connection cannot loop
        if (replyCode(err) !== undefined || this.#closed || attempt >= 5 || Date.now() > deadline) {
          throw mapAmqpError(err, what, action);
        }
        await sleep(100 * attempt);
      }
    }
  }

  /** Declares (or checks the settings of) an exchange. SLUICE_CONFIG_INVALID when it exists with another type. */
  async declareExchange(
    name: string,
    type: ExchangeType,
    options: DeclareExchangeOptions = {},
  ): Promise<void> {
    checkName('exchange', name);
    checkExchangeType(type);
    await this.#admin(`exchange ${name}`, `declare exchange ${name} (${type})`, (ch) =>
      ch.assertExchange(name, type, {
        durable: options.durable ?? true,
        autoDelete: options.autoDelete ?? false,
      }),
    );
    this.#knownExchanges.add(name);
  }

  /** Whether an exchange exists (passive declare). */
  async exchangeExists(name: string): Promise<boolean> {
    checkName('exchange', name, true);
    if (name === '') return true;
    try {
      await this.#admin(`exchange ${name}`, `check exchange ${name}`, (ch) => ch.checkExchange(name));
      this.#knownExchanges.add(name);
      return true;
    } catch (err) {
      if ((err as SluiceError).code === 'SLUICE_TOPIC_UNKNOWN') {
        this.#knownExchanges.delete(name);
        return false;
      }
      throw err;
    }
  }

  /** Deletes an exchange; with `ifUnused`, only when no queue is bound to it ('in-use' otherwise). */
  async deleteExchange(name: string, options: { ifUnused?: boolean } = {}): Promise<DeleteExchangeResult> {
    checkName('exchange', name);
    // exchange.delete of a missing exchange succeeds, so check first to report 'missing'
    if (!(await this.exchangeExists(name))) return 'missing';
    try {
      await this.#admin(`exchange ${name}`, `delete exchange ${name}`, (ch) =>
        ch.deleteExchange(name, { ifUnused: options.ifUnused ?? false }),
      );
    } catch (err) {
      const cause = (err as SluiceError).cause;
      if (replyCode(cause) === 406 && deleteRefusal(cause) === 'in-use') return 'in-use';
      throw err;
    }
    this.#knownExchanges.delete(name);
    return 'deleted';
  }

  /**
   * Declares a queue, or checks that an existing one has the same settings (SLUICE_CONFIG_INVALID otherwise, e.g.
   * "Invalid resource type, stream expected" when a stream is asked for and a classic queue exists).
   */
  async declareQueue(name: string, options: DeclareQueueOptions = {}): Promise<QueueStatus> {
    checkName('queue', name);
    const d = queueDeclaration(name, options);
    const r = await this.#admin(`queue ${name}`, `declare ${d.type} queue ${name}`, (ch) =>
      ch.assertQueue(name, {
        durable: d.durable,
        exclusive: d.exclusive,
        autoDelete: d.autoDelete,
        arguments: d.arguments,
      }),
    );
    return { exists: true, messageCount: r.messageCount, consumerCount: r.consumerCount };
  }

  /** Binds a queue to an exchange. SLUICE_TOPIC_UNKNOWN when either does not exist. */
  async bindQueue(
    queue: string,
    exchange: string,
    routingKey = '',
    args?: Record<string, unknown>,
  ): Promise<void> {
    checkName('queue', queue);
    checkName('exchange', exchange);
    await this.#admin(`queue ${queue}`, `bind queue ${queue} to exchange ${exchange}`, (ch) =>
      ch.bindQueue(queue, exchange, routingKey, args),
    );
  }

  async unbindQueue(
    queue: string,
    exchange: string,
    routingKey = '',
    args?: Record<string, unknown>,
  ): Promise<void> {
    checkName('queue', queue);
    checkName('exchange', exchange);
    await this.#admin(`queue ${queue}`, `unbind queue ${queue} from exchange ${exchange}`, (ch) =>
      ch.unbindQueue(queue, exchange, routingKey, args),
    );
  }

  /** Whether a queue exists, with its ready-message and consumer counts (not usable for streams: see the header). */
  async checkQueue(name: string): Promise<QueueStatus> {
    checkName('queue', name);
    try {
      const r = await this.#admin(`queue ${name}`, `check queue ${name}`, (ch) => ch.checkQueue(name));
      return { exists: true, messageCount: r.messageCount, consumerCount: r.consumerCount };
    } catch (err) {
      if ((err as SluiceError).code === 'SLUICE_TOPIC_UNKNOWN') {
        return { exists: false, messageCount: 0, consumerCount: 0 };
      }
      throw err;
    }
  }

  /**
   * The type of an existing queue, or undefined when there is none. AMQP 0-9-1 cannot ask for it; sluice probes with
   * a `basic.consume` that RabbitMQ refuses without side effects, and reads the type from the refusal.
   */
  async queueType(name: string): Promise<QueueType | undefined> {
    checkName('queue', name);
    const probe = async (ch: Channel): Promise<QueueType | undefined> => {
      let answer: unknown;
      try {
        // no prefetch on this fresh channel: a stream refuses ("prefetch count is not set"), other types refuse
        // x-stream-offset naming their type
        const ok = await ch.consume(name, () => undefined, { arguments: { 'x-stream-offset': 'next' } });
        await ch.cancel(ok.consumerTag).catch(() => undefined);
        answer = new Error('consume accepted');
      } catch (err) {
        answer = err;
      }
      const t = classifyQueueProbe(answer);
      if (t === 'unknown') {
        if (replyCode(answer) === undefined) throw answer; // connection lost: #admin retries
        throw new SluiceError(
          'SLUICE_TRANSPORT',
          `Could not tell the type of queue ${name} from RabbitMQ's answer (${describeError(answer)}). This ` +
            'probe was written for RabbitMQ 3.10; check the broker version.',
          { cause: answer },
        );
      }
      return t;
    };
    return this.#admin(`queue ${name}`, `find the type of queue ${name}`, probe);
  }

  /**
   * Deletes a queue. `ifUnused`: only without consumers; `ifEmpty`: only without ready messages. Returns 'deleted'
   * (with the number of messages deleted), 'in-use', 'not-empty' or 'missing'. pypz's rule — try with both, and on
   * 'not-empty' again with only `ifUnused` — is two calls. Quorum queues: the checks are made by sluice (RabbitMQ
   * 3.10 would close the connection), so a consumer arriving between check and delete is not noticed. Streams:
   * neither flag can be checked (RabbitMQ ignores them and reports no usable counts); a stream is always deleted.
   */
  async deleteQueue(
    name: string,
    options: { ifUnused?: boolean; ifEmpty?: boolean } = {},
  ): Promise<DeleteQueueResult> {
    checkName('queue', name);
    const ifUnused = options.ifUnused ?? false;
    const ifEmpty = options.ifEmpty ?? false;
    let type: QueueType | undefined;
    if (ifUnused || ifEmpty) {
      type = await this.queueType(name);
    } else {
      type = (await this.checkQueue(name)).exists ? 'classic' : undefined; // flags unused: the type does not matter
    }
    if (type === undefined) return { outcome: 'missing' };
    let flags = { ifUnused, ifEmpty };
    if (type === 'quorum') {
      const s = await this.checkQueue(name);
      if (!s.exists) return { outcome: 'missing' };
      if (ifUnused && s.consumerCount > 0) return { outcome: 'in-use' };
      if (ifEmpty && s.messageCount > 0) return { outcome: 'not-empty' };
      flags = { ifUnused: false, ifEmpty: false };
    } else if (type === 'stream') {
      flags = { ifUnused: false, ifEmpty: false };
    }
    try {
      const r = await this.#admin(`queue ${name}`, `delete queue ${name}`, (ch) =>
        ch.deleteQueue(name, flags),
      );
      return { outcome: 'deleted', messageCount: r.messageCount };
    } catch (err) {
      const refusal = deleteRefusal((err as SluiceError).cause);
      if (refusal !== undefined) return { outcome: refusal };
      throw err;
    }
  }

  /** Removes all ready messages of a queue; returns how many. */
  async purgeQueue(name: string): Promise<number> {
    checkName('queue', name);
    const r = await this.#admin(`queue ${name}`, `purge queue ${name}`, (ch) => ch.purgeQueue(name));
    return r.messageCount;
  }

  // ---- publishing ----------------------------------------------------------------------------------------------

  #openChannel(): Promise<ConfirmChannel> {
    if (this.#channel !== undefined) return this.#channel;
    const p = this.link.confirmChannel().then((ch) => {
      let closeError: unknown;
      ch.on('error', (err: unknown) => {
        closeError = err;
      });
      ch.on('return', (msg: RawMessage) => {
        this.#matcher.match(msg.fields.exchange, msg.fields.routingKey, msg.content);
      });
      ch.on('close', () => {
        if (this.#channel === p) {
          this.#channel = undefined;
          this.#drain = undefined;
        }
        // amqplib has already failed the confirm callbacks ('channel closed'); settle anything left the same way
        const matcher = this.#matcher;
        this.#matcher = new ReturnMatcher<Inflight>();
        for (const e of matcher.drain()) this.#fail(e, closedError(e, closeError, this.#knownExchanges));
      });
      ch.on('drain', () => {
        this.#drain = undefined;
      });
      return ch;
    });
    p.catch(() => {
      if (this.#channel === p) this.#channel = undefined;
    });
    this.#channel = p;
    return p;
  }

  #fail(e: Inflight, err: SluiceError): void {
    if (e.settled) return;
    e.settled = true;
    e.settle(err);
  }

  /** Makes sure an exchange exists before publishing to it (see the header). */
  async #ensureExchange(name: string): Promise<void> {
    if (this.#knownExchanges.has(name)) return;
    let p = this.#checking.get(name);
    if (p === undefined) {
      p = this.exchangeExists(name).then((exists) => {
        if (!exists) {
          throw new SluiceError(
            'SLUICE_TOPIC_UNKNOWN',
            `Cannot publish to exchange ${name}: it does not exist. Declare it first (declareExchange), or check ` +
              'the name and the vhost in the URL.',
            { details: { exchange: name, reason: 'no-exchange' } },
          );
        }
      });
      const q = p;
      this.#checking.set(name, q);
      q.then(
        () => this.#checking.delete(name),
        () => this.#checking.delete(name),
      );
    }
    await p;
  }

  #lastOptions: PublishOptions | undefined;
  #lastProps: Options.Publish = DEFAULT_PROPS;

  /** amqplib's publish properties; the same options object (a batch's usual case) maps to the same properties. */
  #props(o: PublishOptions | undefined): Options.Publish {
    if (o === undefined) return DEFAULT_PROPS;
    if (o === this.#lastOptions) return this.#lastProps;
    const p: Options.Publish = { mandatory: o.mandatory ?? true, persistent: o.persistent ?? true };
    for (const k of PROPERTY_KEYS) if (o[k] !== undefined) (p as Record<string, unknown>)[k] = o[k];
    this.#lastOptions = o;
    this.#lastProps = p;
    return p;
  }

  /** Sends one message on the channel; `done` gets its outcome. Returns false when the socket buffer is full. */
  #send(ch: ConfirmChannel, m: OutgoingMessage, done: Settle): boolean {
    const o = m.options ?? {};
    const mandatory = o.mandatory ?? true;
    const e: Inflight = {
      seq: ++this.#seq,
      exchange: m.exchange,
      routingKey: m.routingKey,
      body: m.body,
      mandatory,
      returned: false,
      settled: false,
      settle: done,
    };
    const matcher = this.#matcher;
    matcher.add(e);
    const props = this.#props(m.options);
    let ok: boolean;
    try {
      ok = ch.publish(m.exchange, m.routingKey, m.body, props, (err: unknown) => {
        if (e.settled) return;
        e.settled = true;
        if (err === null || err === undefined) {
          done(e.returned ? unroutableError(e) : undefined);
        } else if (/nacked/.test(describeError(err))) {
          done(
            new SluiceError(
              'SLUICE_DELIVERY_FAILED',
              `RabbitMQ refused a message for exchange '${e.exchange}' routing key '${e.routingKey}' (negative ` +
                'acknowledgement). A queue may be over its limits (x-overflow reject-publish) or the node short of ' +
                'disk or memory; check the broker log, then send it again.',
              { canRetry: true, details: { exchange: e.exchange, routingKey: e.routingKey, reason: 'nack' } },
            ),
          );
        } else {
          // 'channel closed': the channel's close handler has the reason; let it settle this one
          e.settled = false;
          return;
        }
        matcher.compact();
      });
    } catch (err) {
      // amqplib throws synchronously for a closed channel or an oversized header table
      e.settled = true;
      done(
        err instanceof RangeError
          ? new SluiceError('SLUICE_CONFIG_INVALID', `Cannot publish: ${err.message}. Use smaller headers.`, {
              cause: err,
            })
          : new SluiceError(
              'SLUICE_DELIVERY_FAILED',
              `The connection to RabbitMQ was lost before this message was sent (${describeError(err)}). Send it ` +
                'again.',
              { cause: err, canRetry: true, details: { exchange: e.exchange, routingKey: e.routingKey } },
            ),
      );
      return true;
    }
    if (!ok && this.#drain === undefined) {
      this.#drain = new Promise<void>((resolve) => {
        const fin = (): void => {
          ch.off('drain', fin);
          ch.off('close', fin);
          resolve();
        };
        ch.on('drain', fin);
        ch.on('close', fin);
      });
    }
    return ok;
  }

  /**
   * Publishes one message and resolves after RabbitMQ's confirm. Rejects with SLUICE_TOPIC_UNKNOWN when the
   * exchange is missing or (mandatory) no queue received it, SLUICE_DELIVERY_FAILED (`canRetry`) when the broker
   * refused it or the connection dropped before the confirm.
   */
  async publish(
    exchange: string,
    routingKey: string,
    body: Buffer,
    options: PublishOptions = {},
  ): Promise<void> {
    this.#checkOpen();
    checkMessage(exchange, routingKey, body);
    await this.#ensureExchange(exchange);
    const ch = await this.#openChannel();
    if (this.#drain !== undefined) await this.#drain;
    return new Promise<void>((resolve, reject) => {
      this.#send(ch, { exchange, routingKey, body, options }, (err) =>
        err === undefined ? resolve() : reject(err),
      );
    });
  }

  /**
   * Publishes many messages, then waits for all their confirms. Resolves when all were confirmed; otherwise rejects
   * with the first failure, whose `details.failed` lists the indices of every message that failed (the others are
   * stored) and `details.errors` their errors.
   */
  async publishBatch(messages: readonly OutgoingMessage[]): Promise<void> {
    this.#checkOpen();
    if (messages.length === 0) return;
    for (const m of messages) checkMessage(m.exchange, m.routingKey, m.body);
    for (const ex of new Set(messages.map((m) => m.exchange))) await this.#ensureExchange(ex);
    let ch = await this.#openChannel();
    const failed: number[] = [];
    const errors: SluiceError[] = [];
    let remaining = messages.length;
    let finish: () => void = () => undefined;
    const all = new Promise<void>((r) => {
      finish = r;
    });
    for (let i = 0; i < messages.length; i++) {
      if (this.#drain !== undefined) {
        await this.#drain;
        ch = await this.#openChannel(); // a new one if it closed meanwhile (its sends failed retryably)
      }
      const idx = i;
      this.#send(ch, messages[i]!, (err) => {
        if (err !== undefined) {
          failed.push(idx);
          errors[idx] = err;
        }
        if (--remaining === 0) finish();
      });
    }
    await all;
    if (failed.length > 0) {
      failed.sort((a, b) => a - b);
      const first = errors[failed[0]!]!;
      throw new SluiceError(
        first.code,
        `${failed.length} of ${messages.length} messages were not confirmed; the first: ${first.message}`,
        {
          cause: first,
          canRetry: failed.every((i) => errors[i]!.canRetry),
          details: {
            failed,
            errors: failed.map((i) => errors[i]),
            confirmed: messages.length - failed.length,
          },
        },
      );
    }
  }

  // ---- consuming -----------------------------------------------------------------------------------------------

  /**
   * Starts a consumer on its own channel with manual acks. Resolves once RabbitMQ accepted the subscription.
   * SLUICE_TOPIC_UNKNOWN when the queue does not exist; SLUICE_CONFIG_INVALID "Invalid resource type, stream
   * expected" when `streamOffset` is given for a queue that is not a stream.
   */
  async consume(queue: string, options: ConsumeOptions): Promise<WorkQueueConsumer> {
    this.#checkOpen();
    checkName('queue', queue);
    checkPrefetch(options?.prefetch);
    if (options.streamOffset !== undefined) checkStreamOffset(options.streamOffset);
    const c = new WorkQueueConsumer(this.link, queue, options, () => this.#consumers.delete(c));
    this.#consumers.add(c);
    try {
      await c.start();
    } catch (err) {
      this.#consumers.delete(c);
      await c.close().catch(() => undefined);
      throw err;
    }
    return c;
  }

  /** Closes the consumers (their unacknowledged messages return to their queues), waits for confirms, disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of [...this.#consumers]) await c.close().catch(() => undefined);
    const chp = this.#channel;
    if (chp !== undefined) {
      const ch = await chp.catch(() => undefined);
      if (ch !== undefined) {
        await ch.waitForConfirms().catch(() => undefined);
        await ch.close().catch(() => undefined);
      }
    }
    await this.link.close();
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new SluiceError(
        'SLUICE_CLOSED',
        'These RabbitMQ work queues are closed. Open new ones to continue.',
      );
    }
  }
}

function checkMessage(exchange: string, routingKey: string, body: Buffer): void {
  checkName('exchange', exchange, true);
  if (typeof routingKey !== 'string' || Buffer.byteLength(routingKey) > 255) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Invalid routing key ${JSON.stringify(routingKey)}: use a string of at most 255 bytes ('' is fine).`,
    );
  }
  if (!Buffer.isBuffer(body)) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      'A message body must be a Buffer (Buffer.from(text) for text).',
    );
  }
}

function unroutableError(e: InflightPublish): SluiceError {
  return new SluiceError(
    'SLUICE_TOPIC_UNKNOWN',
    `RabbitMQ could not route a message from exchange '${e.exchange}' with routing key '${e.routingKey}' to any ` +
      'queue, so it was returned (mandatory). Declare and bind a queue for it (bindQueue), or check the routing key. ' +
      'Right after a broker restart a stream can be briefly unroutable: sending again then succeeds.',
    { canRetry: true, details: { exchange: e.exchange, routingKey: e.routingKey, reason: 'unroutable' } },
  );
}

function closedError(e: InflightPublish, closeError: unknown, known: Set<string>): SluiceError {
  const gone = missingExchange(closeError);
  if (gone !== undefined) known.delete(gone);
  if (gone !== undefined && gone === e.exchange) {
    return new SluiceError(
      'SLUICE_TOPIC_UNKNOWN',
      `Cannot publish to exchange ${e.exchange}: it does not exist (it was deleted). Declare it again ` +
        '(declareExchange), or check the name.',
      { cause: closeError, details: { exchange: e.exchange, reason: 'no-exchange' } },
    );
  }
  return new SluiceError(
    'SLUICE_DELIVERY_FAILED',
    closeError === undefined
      ? 'The connection to RabbitMQ was lost before the broker confirmed this message, so it may or may not have ' +
          'been stored. Send it again (at least once: a resend may duplicate it).'
      : `RabbitMQ closed the publishing channel (${describeError(closeError)}) before confirming this message, so ` +
          'it may or may not have been stored. Send it again (a resend may duplicate it).',
    { cause: closeError, canRetry: true, details: { exchange: e.exchange, routingKey: e.routingKey } },
  );
}

// ---- consumer --------------------------------------------------------------------------------------------------

/**
 * A consumer of one queue (see the header for the semantics). Not safe for concurrent `poll`s: one at a time.
 */
export class WorkQueueConsumer {
  readonly queue: string;
  readonly prefetch: number;
  readonly #link: Link;
  readonly #o: ConsumeOptions;
  readonly #onClose: () => void;
  #channel: Channel | undefined;
  /** Bumped per subscription; deliveries remember theirs. */
  #generation = 0;
  #buffer: WorkQueueDelivery[] = [];
  #head = 0;
  readonly #outstanding = new OutstandingTags();
  #isStream: boolean;
  /** Highest stream offset received (buffered included). */
  #lastOffset: number | undefined;
  #waiter: (() => void) | undefined;
  #polling = false;
  #failure: SluiceError | undefined;
  #recovering: Promise<void> | undefined;
  #closed = false;
  #offDown: (() => void) | undefined;

  constructor(link: Link, queue: string, options: ConsumeOptions, onClose: () => void) {
    this.#link = link;
    this.queue = queue;
    this.prefetch = options.prefetch;
    this.#o = options;
    this.#onClose = onClose;
    this.#isStream = options.streamOffset !== undefined;
  }

  /** Deliveries received and not yet handed out by `poll`. */
  get bufferedCount(): number {
    return this.#buffer.length - this.#head;
  }

  /** Deliveries handed out by `poll` on the current subscription and not acknowledged yet. */
  get unackedCount(): number {
    return this.#outstanding.size;
  }

  /** The highest stream offset received so far (stream queues). */
  get lastStreamOffset(): number | undefined {
    return this.#lastOffset;
  }

  /** The current subscription (bumped on every re-subscription); compare with `WorkQueueDelivery.generation`. */
  get generation(): number {
    return this.#generation;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal First subscription; errors are mapped to SluiceErrors. */
  async start(): Promise<void> {
    this.#offDown = this.#link.onDown(() => this.#lost(this.#channel));
    await this.#subscribe(this.#o.streamOffset);
  }

  async #subscribe(offset: StreamOffset | undefined): Promise<void> {
    const ch = await this.#link.channel();
    if (this.#closed) {
      await ch.close().catch(() => undefined);
      return;
    }
    let closeError: unknown;
    ch.on('error', (err: unknown) => {
      closeError = err;
    });
    const generation = this.#generation + 1;
    try {
      await ch.prefetch(this.prefetch);
      const args: Record<string, unknown> = { ...(this.#o.arguments ?? {}) };
      if (offset !== undefined) args['x-stream-offset'] = offset;
      // current before consume(): deliveries can arrive before the consume-ok promise continues
      this.#channel = ch;
      this.#generation = generation;
      this.#outstanding.clear();
      await ch.consume(this.queue, (msg) => this.#deliver(ch, generation, msg), {
        noAck: false,
        exclusive: this.#o.exclusive ?? false,
        arguments: args,
      });
    } catch (err) {
      if (this.#channel === ch) this.#channel = undefined;
      await ch.close().catch(() => undefined);
      throw mapAmqpError(closeError ?? err, `queue ${this.queue}`, `consume from queue ${this.queue}`);
    }
    ch.on('close', () => {
      if (this.#channel === ch) this.#lost(ch);
    });
  }

  #deliver(ch: Channel, generation: number, msg: ConsumeMessage | null): void {
    if (this.#channel !== ch || this.#closed) return;
    if (msg === null) {
      // the broker cancelled the consumer: the queue was deleted
      this.#failure = new SluiceError(
        'SLUICE_TOPIC_UNKNOWN',
        `RabbitMQ cancelled the consumer of queue ${this.queue}: the queue was deleted. Declare it again and ` +
          'start a new consumer.',
        { details: { queue: this.queue } },
      );
      this.#channel = undefined;
      ch.close().catch(() => undefined);
      this.#wake();
      return;
    }
    const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
    const so = headers['x-stream-offset'];
    const d: WorkQueueDelivery = {
      body: msg.content,
      headers,
      properties: msg.properties,
      deliveryTag: msg.fields.deliveryTag,
      redelivered: msg.fields.redelivered,
      exchange: msg.fields.exchange,
      routingKey: msg.fields.routingKey,
      generation,
    };
    if (typeof so === 'number') {
      this.#isStream = true;
      if (this.#lastOffset !== undefined && so <= this.#lastOffset) {
        // seen before a re-subscription (streams deliver from a chunk's start): skip, but give the credit back
        ch.ack(msg);
        return;
      }
      d.streamOffset = so;
      this.#lastOffset = so;
    }
    this.#buffer.push(d);
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    if (w !== undefined) w();
  }

  /** The subscription `ch` is gone (connection lost or channel closed): forget its tags, subscribe again. */
  #lost(ch: Channel | undefined): void {
    if (ch === undefined || this.#channel !== ch) return;
    this.#channel = undefined;
    this.#outstanding.clear();
    if (!this.#isStream) {
      // the broker requeues everything this channel had not acknowledged, buffered deliveries included
      this.#buffer = [];
      this.#head = 0;
    }
    if (this.#closed || this.#link.closed || this.#failure !== undefined) return;
    this.#recovering ??= this.#recover().finally(() => {
      this.#recovering = undefined;
    });
  }

  async #recover(): Promise<void> {
    const deadline = Date.now() + this.#link.options.reconnectTimeoutMs;
    let delay = 100;
    let last: unknown;
    while (!this.#closed && !this.#link.closed) {
      await sleep(delay);
      if (this.#closed || this.#channel !== undefined) return;
      try {
        const offset =
          this.#isStream && this.#lastOffset !== undefined ? this.#lastOffset + 1 : this.#o.streamOffset;
        await this.#subscribe(offset);
        return;
      } catch (err) {
        last = err;
        if (Date.now() + delay > deadline) break;
        delay = Math.min(delay * 2, 2000);
      }
    }
    if (this.#closed || this.#link.closed) return;
    const cause = last instanceof SluiceError ? last : mapAmqpError(last, `queue ${this.queue}`, 'consume');
    this.#failure = new SluiceError(
      cause.code,
      `The consumer of queue ${this.queue} could not subscribe again within ` +
        `${this.#link.options.reconnectTimeoutMs} ms after losing its connection: ${cause.message} Close it and ` +
        'start a new consumer when the broker is back.',
      { cause, canRetry: false, details: { queue: this.queue } },
    );
    this.#wake();
  }

  /**
   * Up to `maxRecords` buffered deliveries, after waiting until `minRecords` are buffered or `timeoutMs` passed.
   * Throws when the consumer failed for good (queue deleted, no re-subscription) and nothing is buffered.
   */
  async poll(options: PollOptions = {}): Promise<WorkQueueDelivery[]> {
    if (this.#closed) {
      throw new SluiceError(
        'SLUICE_CLOSED',
        `The consumer of queue ${this.queue} is closed. Start a new one.`,
      );
    }
    if (this.#polling) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `A poll of queue ${this.queue} is already waiting; call poll again after it returned.`,
      );
    }
    const max = options.maxRecords ?? this.prefetch;
    const min = Math.min(options.minRecords ?? max, max);
    const timeoutMs = options.timeoutMs ?? 0;
    if (!Number.isInteger(max) || max < 1 || !Number.isInteger(min) || min < 0 || !(timeoutMs >= 0)) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `Invalid poll options ${JSON.stringify(options)}: maxRecords ≥ 1, 0 ≤ minRecords ≤ maxRecords (integers), ` +
          'timeoutMs ≥ 0.',
      );
    }
    if (this.bufferedCount < min && timeoutMs > 0 && this.#failure === undefined) {
      this.#polling = true;
      try {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, timeoutMs);
          const self = this;
          function done(): void {
            clearTimeout(timer);
            self.#waiter = undefined;
            resolve();
          }
          this.#waiter = () => {
            if (this.bufferedCount >= min || this.#failure !== undefined || this.#closed) done();
          };
        });
      } finally {
        this.#polling = false;
      }
    }
    if (this.#closed) return [];
    const n = Math.min(max, this.bufferedCount);
    if (n === 0 && this.#failure !== undefined) throw this.#failure;
    const out = this.#buffer.slice(this.#head, this.#head + n);
    this.#head += n;
    if (this.#head === this.#buffer.length) {
      this.#buffer = [];
      this.#head = 0;
    } else if (this.#head > 4096) {
      this.#buffer = this.#buffer.slice(this.#head);
      this.#head = 0;
    }
    for (const d of out) if (d.generation === this.#generation) this.#outstanding.add(d.deliveryTag);
    return out;
  }

  /**
   * Acknowledges one delivery. False when it was not sent: the delivery is from an old subscription (it will be
   * delivered again) or was already acknowledged.
   */
  ack(delivery: WorkQueueDelivery): boolean {
    const ch = this.#channel;
    if (ch === undefined || delivery.generation !== this.#generation) return false;
    if (!this.#outstanding.take(delivery.deliveryTag)) return false;
    ch.ack(tagged(delivery.deliveryTag), false);
    return true;
  }

  /** Negatively acknowledges one delivery; `requeue` (default true) puts it back, else it is dropped/dead-lettered. */
  nack(delivery: WorkQueueDelivery, options: { requeue?: boolean } = {}): boolean {
    const ch = this.#channel;
    if (ch === undefined || delivery.generation !== this.#generation) return false;
    if (!this.#outstanding.take(delivery.deliveryTag)) return false;
    ch.nack(tagged(delivery.deliveryTag), false, options.requeue ?? true);
    return true;
  }

  /**
   * Acknowledges every delivery handed out by `poll` on the current subscription (one `basic.ack` with `multiple`);
   * returns how many. Deliveries still buffered are not acknowledged.
   */
  ackAll(): number {
    const ch = this.#channel;
    if (ch === undefined) return 0;
    const all = this.#outstanding.takeAll();
    if (all === undefined) return 0;
    ch.ack(tagged(all.upTo), true);
    return all.count;
  }

  /** Like `ackAll`, negatively: `requeue` (default true) puts them back. */
  nackAll(options: { requeue?: boolean } = {}): number {
    const ch = this.#channel;
    if (ch === undefined) return 0;
    const all = this.#outstanding.takeAll();
    if (all === undefined) return 0;
    ch.nack(tagged(all.upTo), true, options.requeue ?? true);
    return all.count;
  }

  /** Stops consuming; unacknowledged messages (handed out or buffered) return to the queue. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#offDown?.();
    this.#wake();
    const ch = this.#channel;
    this.#channel = undefined;
    this.#buffer = [];
    this.#head = 0;
    this.#outstanding.clear();
    await this.#recovering?.catch(() => undefined);
    if (ch !== undefined) await ch.close().catch(() => undefined);
    this.#onClose();
  }
}

/** amqplib's ack/nack read only `fields.deliveryTag`. */
function tagged(deliveryTag: number): RawMessage {
  return { fields: { deliveryTag } } as unknown as RawMessage;
}

/** Connects (SLUICE_BROKER_UNREACHABLE when the broker does not answer within `connectTimeoutMs`). */
export async function openRabbitMqWorkQueues(options: WorkQueuesOptions): Promise<RabbitMqWorkQueues> {
  const wq = new RabbitMqWorkQueues(options);
  try {
    await wq.link.model();
  } catch (err) {
    await wq.close().catch(() => undefined);
    throw err;
  }
  return wq;
}
