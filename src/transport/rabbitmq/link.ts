/**
 * Connection plumbing for the RabbitMQ transport on amqplib:
 * - `Link`: one AMQP connection that comes back after the broker restarts or the network drops (exponential
 *   back-off), telling its users when it went down and came back up so they can rebuild channels and consumers;
 * - `Publisher`: a confirm channel on a link; `publish()` resolves once the broker confirmed the message, and
 *   rejects when the message could not be routed (`mandatory`) or the channel died first;
 * - `StreamReader`: a consumer of one stream queue that remembers the last offset it saw and resumes after a
 *   reconnection.
 */
import { randomBytes } from 'node:crypto';
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { describeError, SluiceError } from '../../errors.ts';
import { deliveryOffset, type StreamOffsetSpec } from './model.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The AMQP reply code of an amqplib error (404 NOT_FOUND, 405 RESOURCE_LOCKED, 406 PRECONDITION_FAILED …). */
export function amqpCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'number' ? c : undefined;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]*):([^@]*)@/, '//$1:***@');
}

export interface LinkOptions {
  url: string;
  /** Connection name shown by `rabbitmqctl list_connections`. */
  name: string;
  /** AMQP heartbeat (s): how fast a dead peer is noticed on a silent network. */
  heartbeatSeconds: number;
  /** How long the first connection may take before SLUICE_BROKER_UNREACHABLE. */
  connectTimeoutMs: number;
  /** How long operations wait for a lost connection to come back before SLUICE_BROKER_UNREACHABLE. */
  reconnectTimeoutMs: number;
}

type Listener = () => void;

export class Link {
  readonly options: LinkOptions;
  #model: ChannelModel | undefined;
  #connecting: Promise<ChannelModel> | undefined;
  #closed = false;
  #everConnected = false;
  readonly #up = new Set<Listener>();
  readonly #down = new Set<Listener>();
  /** Bumped on every new connection, so users can tell a channel of an old connection from a current one. */
  generation = 0;

  constructor(options: LinkOptions) {
    this.options = options;
  }

  get connected(): boolean {
    return this.#model !== undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  onUp(fn: Listener): () => void {
    this.#up.add(fn);
    return () => this.#up.delete(fn);
  }

  onDown(fn: Listener): () => void {
    this.#down.add(fn);
    return () => this.#down.delete(fn);
  }

  /** The live connection; waits for a reconnection in progress (bounded), or connects for the first time. */
  async model(): Promise<ChannelModel> {
    if (this.#closed) throw closedLinkError(this.options.name);
    if (this.#model !== undefined) return this.#model;
    this.#connecting ??= this.#connectLoop();
    const limit = this.#everConnected ? this.options.reconnectTimeoutMs : this.options.connectTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.#connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new SluiceError(
                  'SLUICE_BROKER_UNREACHABLE',
                  `No connection to RabbitMQ at ${redactUrl(this.options.url)} within ${limit} ms ` +
                    `(${this.#lastError ?? 'no answer'}). Check that the broker runs and listens there and that ` +
                    'the URL (amqp://user:password@host:port/vhost) is right; sluice keeps retrying in the background.',
                  { canRetry: true, details: { url: redactUrl(this.options.url) } },
                ),
              ),
            limit,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  #lastError: string | undefined;

  async #connectLoop(): Promise<ChannelModel> {
    let delay = 100;
    for (;;) {
      if (this.#closed) throw closedLinkError(this.options.name);
      try {
        const m = await amqp.connect(this.options.url, {
          heartbeat: this.options.heartbeatSeconds,
          // bounds one attempt on a peer that accepts the TCP connection but never answers
          timeout: this.options.connectTimeoutMs,
          clientProperties: { connection_name: this.options.name },
        } as Parameters<typeof amqp.connect>[1]);
        if (this.#closed) {
          await m.close().catch(() => undefined);
          throw closedLinkError(this.options.name);
        }
        m.on('error', () => undefined); // reported through 'close'
        m.on('close', () => this.#lost(m));
        this.#model = m;
        this.#connecting = undefined;
        this.#everConnected = true;
        this.#lastError = undefined;
        this.generation++;
        for (const fn of [...this.#up]) fn();
        return m;
      } catch (err) {
        if (this.#closed) throw closedLinkError(this.options.name);
        this.#lastError = describeError(err);
        if (amqpCode(err) === 403 || /ACCESS_REFUSED|403/.test(this.#lastError)) {
          this.#connecting = undefined;
          throw new SluiceError(
            'SLUICE_CONFIG_INVALID',
            `RabbitMQ at ${redactUrl(this.options.url)} refused the credentials (${this.#lastError}). Check the ` +
              'user and password in the URL; the default guest user may only connect from localhost.',
            { cause: err },
          );
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 1000);
      }
    }
  }

  #lost(m: ChannelModel): void {
    if (this.#model !== m) return;
    this.#model = undefined;
    if (this.#closed) return;
    for (const fn of [...this.#down]) fn();
    // reconnect in the background; users waiting in model() join this attempt
    this.#connecting ??= this.#connectLoop();
    this.#connecting.catch(() => undefined);
  }

  /** A plain channel (errors are reported through its 'close'). */
  async channel(): Promise<Channel> {
    const ch = await (await this.model()).createChannel();
    ch.on('error', () => undefined);
    return ch;
  }

  async confirmChannel(): Promise<ConfirmChannel> {
    const ch = await (await this.model()).createConfirmChannel();
    ch.on('error', () => undefined);
    return ch;
  }

  /**
   * Runs `fn` on a short-lived channel and closes it. A channel error (404, 405, 406 …) closes only that channel,
   * so each use gets its own.
   */
  async withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    const ch = await this.channel();
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const m = this.#model;
    this.#model = undefined;
    if (m !== undefined) await m.close().catch(() => undefined);
  }
}

function closedLinkError(name: string): SluiceError {
  return new SluiceError(
    'SLUICE_CLOSED',
    `The RabbitMQ connection "${name}" is closed (its transport or consumer was closed). Open a new one to continue.`,
  );
}

interface PendingPublish {
  resolve: () => void;
  reject: (err: unknown) => void;
  queue: string;
}

/**
 * Publishes to queues through the default exchange with confirms. `mandatory`: a message for a queue that does
 * not exist comes back (basic.return) and its publish rejects with SLUICE_TOPIC_UNKNOWN instead of vanishing.
 */
export class Publisher {
  readonly #link: Link;
  readonly #id = randomBytes(6).toString('hex');
  #seq = 0;
  #channel: Promise<ConfirmChannel> | undefined;
  readonly #pending = new Map<string, PendingPublish>();
  readonly #returned = new Set<string>();
  #closed = false;

  constructor(link: Link) {
    this.#link = link;
  }

  nextMessageId(): string {
    return `${this.#id}.${++this.#seq}`;
  }

  #open(): Promise<ConfirmChannel> {
    if (this.#channel === undefined) {
      const p = this.#link.confirmChannel().then((ch) => {
        ch.on('return', (msg: ConsumeMessage) => {
          const id = msg.properties.messageId as string | undefined;
          if (id !== undefined) this.#returned.add(id);
        });
        ch.on('close', () => {
          if (this.#channel === p) this.#channel = undefined;
          const err = new SluiceError(
            'SLUICE_DELIVERY_FAILED',
            'The connection to RabbitMQ was lost before the broker confirmed this message, so it may or may not ' +
              'have been stored. Send it again (sluice delivers at least once; a resend may duplicate it).',
            { canRetry: true },
          );
          for (const [id, p2] of this.#pending) {
            this.#pending.delete(id);
            p2.reject(err);
          }
        });
        return ch;
      });
      p.catch(() => {
        if (this.#channel === p) this.#channel = undefined;
      });
      this.#channel = p;
    }
    return this.#channel;
  }

  /**
   * Resolves once the broker confirmed the message. `options.messageId` identifies it (one is made if absent).
   *
   * A message that comes back unroutable although its queue should exist (`stillExpected`, else a passive declare;
   * a stream is unroutable while the broker shuts down or starts) is published again, for up to the link's
   * reconnect timeout. Such a retry can put it after later messages of the same batch. A queue that should not
   * exist fails with SLUICE_TOPIC_UNKNOWN.
   */
  async publish(
    queue: string,
    content: Buffer,
    options: amqp.Options.Publish & { messageId?: string } = {},
    stillExpected?: () => Promise<boolean>,
  ): Promise<void> {
    const messageId = options.messageId ?? this.nextMessageId();
    const deadline = Date.now() + this.#link.options.reconnectTimeoutMs;
    let delay = 50;
    for (;;) {
      if (await this.#publishOnce(queue, content, { ...options, messageId })) return;
      // While a broker shuts down or starts, a stream queue that exists is unroutable and may even answer 404 to a
      // passive declare: the caller's own record of what should exist (the topic catalog) decides when it has one.
      const exists =
        stillExpected !== undefined
          ? await stillExpected().catch(() => true)
          : await this.#link
              .withChannel((ch) => ch.checkQueue(queue))
              .then(
                () => true,
                (err: unknown) => amqpCode(err) !== 404,
              );
      if (!exists || Date.now() + delay > deadline) {
        throw new SluiceError(
          'SLUICE_TOPIC_UNKNOWN',
          exists
            ? `RabbitMQ kept returning messages for queue ${queue} as unroutable for ` +
                `${this.#link.options.reconnectTimeoutMs} ms although it exists; check the queue's state on the broker.`
            : `RabbitMQ could not route a message to queue ${queue}: it does not exist (the topic was deleted, ` +
                'or never created). Create the topic first, or let sluice create it (autoCreateTopics: true).',
          { details: { queue } },
        );
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 1000);
    }
  }

  /** One publish; true when confirmed, false when it came back unroutable. */
  async #publishOnce(
    queue: string,
    content: Buffer,
    options: amqp.Options.Publish & { messageId: string },
  ): Promise<boolean> {
    if (this.#closed)
      throw new SluiceError('SLUICE_CLOSED', 'This RabbitMQ publisher is closed. Make a new one.');
    const ch = await this.#open();
    const messageId = options.messageId;
    return new Promise<boolean>((resolve, reject) => {
      this.#pending.set(messageId, { resolve: () => resolve(true), reject, queue });
      const ok = ch.publish('', queue, content, { ...options, mandatory: true, persistent: true }, (err) => {
        const p = this.#pending.get(messageId);
        if (p === undefined) return;
        this.#pending.delete(messageId);
        if (err !== null && err !== undefined) {
          p.reject(
            new SluiceError(
              'SLUICE_DELIVERY_FAILED',
              `RabbitMQ refused a message for ${queue} (negative acknowledgement: ${describeError(err)}). ` +
                'The queue may be over its limits or the node short of disk or memory; check the broker log.',
              { cause: err, canRetry: true, details: { queue } },
            ),
          );
        } else if (this.#returned.delete(messageId)) {
          resolve(false);
        } else {
          p.resolve();
        }
      });
      // amqplib buffers what the socket cannot take yet (`ok` false); the confirm still arrives
      void ok;
    });
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const chp = this.#channel;
    this.#channel = undefined;
    if (chp !== undefined) {
      const ch = await chp.catch(() => undefined);
      if (ch !== undefined) {
        await ch.waitForConfirms().catch(() => undefined);
        await ch.close().catch(() => undefined);
      }
    }
  }
}

export interface StreamReaderOptions {
  queue: string;
  /** Where to begin; after a reconnection the reader continues after the last offset it saw (see `resume`). */
  start: StreamOffsetSpec;
  /** Unacknowledged deliveries the broker may send ahead (the consumer's credit). */
  prefetch: number;
  /** Acknowledge each delivery at once (readers that keep nothing); otherwise call `ack`. */
  autoAck: boolean;
  onMessage: (msg: ConsumeMessage, offset: number, channel: Channel) => void;
  /** The broker cancelled the consumer (the queue was deleted). */
  onCancel?: () => void;
  /** Subscribing again after a reconnection failed for good. */
  onFailure?: (err: unknown) => void;
  /** Where to continue after a reconnection; default: after the last offset seen, else `start`. */
  resume?: () => StreamOffsetSpec;
}

/**
 * A consumer of one stream queue on its own channel, with `x-stream-offset`. `start()` resolves once the broker
 * confirmed the subscription (basic.consume-ok), so anything published afterwards is seen by a `next` reader.
 */
export class StreamReader {
  readonly #link: Link;
  readonly #o: StreamReaderOptions;
  #channel: Channel | undefined;
  #stopped = false;
  #starting: Promise<void> | undefined;
  #offUp: (() => void) | undefined;
  #offDown: (() => void) | undefined;
  /** The highest offset delivered so far. */
  lastOffset: number | undefined;
  /** Set when the last (re)start failed; the next `start()` retries. */
  failure: unknown;

  constructor(link: Link, options: StreamReaderOptions) {
    this.#link = link;
    this.#o = options;
  }

  get channel(): Channel | undefined {
    return this.#channel;
  }

  start(): Promise<void> {
    this.#offDown ??= this.#link.onDown(() => {
      this.#channel = undefined;
    });
    this.#offUp ??= this.#link.onUp(() => {
      if (this.#stopped) return;
      const p = this.#resubscribe();
      this.#starting = p;
      p.catch((err: unknown) => {
        this.failure = err;
        this.#o.onFailure?.(err);
      });
    });
    if (this.#starting === undefined || (this.failure !== undefined && this.#channel === undefined)) {
      const first = this.#starting === undefined;
      const p = first ? this.#subscribe(this.#o.start) : this.#resubscribe();
      this.#starting = p;
      p.catch(() => {
        if (this.#starting === p) this.#starting = undefined;
      });
    }
    return this.#starting;
  }

  /**
   * After a reconnection: subscribe again where the reader left off. Right after a broker restart a stream can be
   * briefly unavailable, so failures are retried (with back-off) for the link's reconnect timeout.
   */
  async #resubscribe(): Promise<void> {
    const deadline = Date.now() + this.#link.options.reconnectTimeoutMs;
    let delay = 100;
    for (;;) {
      try {
        await this.#subscribe(this.#resumeSpec());
        this.failure = undefined;
        return;
      } catch (err) {
        if (this.#stopped || this.#link.closed || Date.now() + delay > deadline) throw err;
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
        if (this.#stopped) return;
      }
    }
  }

  #resumeSpec(): StreamOffsetSpec {
    if (this.#o.resume !== undefined) return this.#o.resume();
    return this.lastOffset === undefined ? this.#o.start : this.lastOffset + 1;
  }

  async #subscribe(spec: StreamOffsetSpec): Promise<void> {
    const ch = await this.#link.channel();
    if (this.#stopped) {
      await ch.close().catch(() => undefined);
      return;
    }
    ch.on('close', () => {
      if (this.#channel === ch) this.#channel = undefined;
    });
    await ch.prefetch(this.#o.prefetch);
    // current before consume(): deliveries can be handled before the consume-ok promise continues
    this.#channel = ch;
    await ch.consume(
      this.#o.queue,
      (msg) => {
        if (msg === null) {
          if (this.#channel === ch) this.#o.onCancel?.();
          return;
        }
        if (this.#channel !== ch) return;
        const offset = deliveryOffset(msg);
        if (offset === undefined) return;
        if (this.lastOffset === undefined || offset > this.lastOffset) this.lastOffset = offset;
        if (this.#o.autoAck) ch.ack(msg);
        this.#o.onMessage(msg, offset, ch);
      },
      { noAck: false, arguments: { 'x-stream-offset': spec } },
    );
    this.failure = undefined;
  }

  /** Acknowledges deliveries up to `msg` on `channel` (ignored when that channel is gone: credit resets anyway). */
  ack(msg: ConsumeMessage, channel: Channel): void {
    if (channel === this.#channel) channel.ack(msg, true);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#offUp?.();
    this.#offDown?.();
    await this.#starting?.catch(() => undefined);
    const ch = this.#channel;
    this.#channel = undefined;
    if (ch !== undefined) await ch.close().catch(() => undefined);
  }
}
