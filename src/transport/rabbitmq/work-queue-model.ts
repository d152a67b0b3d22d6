/**
 * The pure parts of the RabbitMQ work-queue API (./work-queue.ts): option checks, the mapping of AMQP errors to
 * SluiceErrors, the classification of RabbitMQ's answers (queue type probe, delete refusals), the bookkeeping of
 * handed-out deliveries for `ackAll`, and the matching of returned (unroutable) messages to their publishes.
 * No I/O here, so all of it is unit-tested without a broker.
 */
import { describeError, SluiceError } from '../../errors.ts';

export type ExchangeType = 'direct' | 'fanout' | 'topic';
export type QueueType = 'classic' | 'quorum' | 'stream';
/** Where a stream consumer starts: RabbitMQ's `first`, `next`, `last` (start of the last chunk) or an offset. */
export type StreamOffset = 'first' | 'next' | 'last' | number;

/** The AMQP reply code of an amqplib error (404 NOT_FOUND, 405 RESOURCE_LOCKED, 406 PRECONDITION_FAILED …). */
export function replyCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'number' ? c : undefined;
}

/** The broker's text inside an amqplib error message (`… with message "NOT_FOUND - no queue 'q' …"`), or all of it. */
export function brokerText(err: unknown): string {
  const m = describeError(err);
  const i = m.indexOf('with message "');
  return i < 0 ? m : m.slice(i + 14).replace(/"$/, '');
}

// ---- option checks ---------------------------------------------------------------------------------------------

const NAME_MAX = 255; // AMQP shortstr

export function checkName(
  kind: 'queue' | 'exchange',
  name: unknown,
  allowEmpty = false,
): asserts name is string {
  if (
    typeof name !== 'string' ||
    (!allowEmpty && name.length === 0) ||
    Buffer.byteLength(name, 'utf8') > NAME_MAX
  ) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Invalid RabbitMQ ${kind} name ${JSON.stringify(name)}: use a non-empty string of at most ${NAME_MAX} bytes` +
        (kind === 'exchange' ? " (the default exchange is '', and only publish accepts it)." : '.'),
    );
  }
}

export function checkExchangeType(type: unknown): asserts type is ExchangeType {
  if (type !== 'direct' && type !== 'fanout' && type !== 'topic') {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Invalid exchange type ${JSON.stringify(type)}: use 'direct', 'fanout' or 'topic'.`,
    );
  }
}

export interface QueueDeclaration {
  type: QueueType;
  durable: boolean;
  exclusive: boolean;
  autoDelete: boolean;
  arguments: Record<string, unknown>;
}

/** Checks a queue declaration and returns the AMQP arguments (with `x-queue-type` for quorum and stream). */
export function queueDeclaration(
  name: string,
  o: {
    type?: QueueType;
    durable?: boolean;
    exclusive?: boolean;
    autoDelete?: boolean;
    arguments?: Record<string, unknown>;
  },
): QueueDeclaration {
  const type = o.type ?? 'classic';
  if (type !== 'classic' && type !== 'quorum' && type !== 'stream') {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Invalid queue type ${JSON.stringify(type)} for queue ${name}: use 'classic', 'quorum' or 'stream'.`,
    );
  }
  const d: QueueDeclaration = {
    type,
    durable: o.durable ?? true,
    exclusive: o.exclusive ?? false,
    autoDelete: o.autoDelete ?? false,
    arguments: { ...(o.arguments ?? {}) },
  };
  const given = d.arguments['x-queue-type'];
  if (given !== undefined && given !== type) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Queue ${name}: arguments['x-queue-type'] is ${JSON.stringify(given)} but type is '${type}'. Set only ` +
        '`type`; sluice adds the argument.',
    );
  }
  if (type !== 'classic') {
    // RabbitMQ 3.10 refuses these for quorum queues and streams (406 "invalid property 'non-durable'" …)
    if (!d.durable || d.exclusive || d.autoDelete) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `Queue ${name}: ${type} queues must be durable, not exclusive and not auto-delete (RabbitMQ refuses the ` +
          'declaration otherwise). Drop those options or use a classic queue.',
      );
    }
    d.arguments['x-queue-type'] = type;
  } else {
    delete d.arguments['x-queue-type'];
  }
  return d;
}

export function checkPrefetch(prefetch: unknown): asserts prefetch is number {
  if (!Number.isInteger(prefetch) || (prefetch as number) < 1 || (prefetch as number) > 65535) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Invalid prefetch ${JSON.stringify(prefetch)}: use an integer from 1 to 65535 (the AMQP QoS limit; ` +
        'manual acks need a bound, and stream queues refuse consumers without one).',
    );
  }
}

export function checkStreamOffset(o: unknown): asserts o is StreamOffset {
  if (o === 'first' || o === 'next' || o === 'last') return;
  if (typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) return;
  throw new SluiceError(
    'SLUICE_CONFIG_INVALID',
    `Invalid streamOffset ${JSON.stringify(o)}: use 'first', 'next', 'last' or a non-negative integer offset.`,
  );
}

// ---- RabbitMQ's answers ----------------------------------------------------------------------------------------

/**
 * The queue type from the answer to the probe `basic.consume(queue, {x-stream-offset})` on a channel without a
 * prefetch limit. RabbitMQ 3.10.8 refuses it in every case, without side effects, and says why:
 * - stream: 406 "consumer prefetch count is not set for 'queue …'";
 * - classic / quorum: 406 "invalid arg 'x-stream-offset' for queue … of queue type rabbit_classic_queue" (or
 *   rabbit_quorum_queue);
 * - 405 RESOURCE_LOCKED: an exclusive queue of another connection, which can only be classic;
 * - 404: no such queue (undefined).
 */
export function classifyQueueProbe(err: unknown): QueueType | undefined | 'unknown' {
  const code = replyCode(err);
  const text = brokerText(err);
  if (code === 404) return undefined;
  if (code === 405) return 'classic';
  if (code === 406) {
    if (/prefetch count is not set/.test(text)) return 'stream';
    const m = /of queue type rabbit_(classic|quorum|stream)_queue/.exec(text);
    if (m !== null) return m[1] as QueueType;
  }
  return 'unknown';
}

/** Why a classic queue refused `queue.delete` with if-unused / if-empty (406), or undefined for other errors. */
export function deleteRefusal(err: unknown): 'in-use' | 'not-empty' | undefined {
  if (replyCode(err) !== 406) return undefined;
  const text = brokerText(err);
  if (/\bin use\b/.test(text)) return 'in-use';
  if (/not empty/.test(text)) return 'not-empty';
  return undefined;
}

/** The exchange named by a 404 "no exchange 'x' in vhost '/'" (a publish to a missing exchange), if any. */
export function missingExchange(err: unknown): string | undefined {
  if (replyCode(err) !== 404) return undefined;
  return /no exchange '((?:[^']|'(?! in vhost))*)' in vhost/.exec(brokerText(err))?.[1];
}

/**
 * A SluiceError for a failed AMQP operation on `what` (e.g. "queue q"), saying what went wrong and how to fix it.
 * `connection lost` (no reply code) is retryable.
 */
export function mapAmqpError(err: unknown, what: string, action: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = replyCode(err);
  const text = brokerText(err);
  const details = { what, replyCode: code, broker: text };
  if (code === 404) {
    return new SluiceError(
      'SLUICE_TOPIC_UNKNOWN',
      `RabbitMQ could not ${action}: ${text}. Declare it first (declareQueue / declareExchange), or check the ` +
        'name and the vhost in the URL.',
      { cause: err, details },
    );
  }
  if (code === 406 && /x-stream-offset|prefetch count is not set|x-queue-type/.test(text)) {
    const stream = /received the value 'stream'|x-stream-offset/.test(text);
    return new SluiceError(
      'SLUICE_CONFIG_INVALID',
      stream
        ? `Invalid resource type, stream expected: ${what} exists but is not a stream queue, so RabbitMQ refused ` +
            `to ${action} (${text}). Delete it and declare it with type 'stream', or use another name.`
        : `${what} exists with another queue type than requested, so RabbitMQ refused to ${action} (${text}). ` +
            'Declare it with its existing type, or delete it first.',
      { cause: err, details },
    );
  }
  if (code === 406) {
    return new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `RabbitMQ refused to ${action} (406 PRECONDITION_FAILED: ${text}). ${what} exists with other settings ` +
        '(type, durability, arguments); declare it with the same settings, or delete it first.',
      { cause: err, details },
    );
  }
  if (code === 405) {
    return new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `RabbitMQ refused to ${action}: ${what} is an exclusive queue of another connection (${text}). Use ` +
        'another name, or wait until that connection closes.',
      { cause: err, details },
    );
  }
  if (code === 403) {
    return new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `RabbitMQ refused to ${action}: access refused (${text}). Names starting with "amq." are reserved; ` +
        "otherwise check the user's permissions on the vhost.",
      { cause: err, details },
    );
  }
  if (code === undefined) {
    return new SluiceError(
      'SLUICE_TRANSPORT',
      `The connection to RabbitMQ was lost while trying to ${action} (${text}). Try again: sluice reconnects ` +
        'by itself.',
      { cause: err, canRetry: true, details },
    );
  }
  return new SluiceError('SLUICE_TRANSPORT', `RabbitMQ could not ${action} (${code}: ${text}).`, {
    cause: err,
    details,
  });
}

// ---- acknowledgements ------------------------------------------------------------------------------------------

/**
 * The delivery tags handed out by `poll` and not acknowledged yet, on one channel, in increasing order.
 * `ackAll` sends one `basic.ack(multiple)` for the highest of them: never for a tag already acknowledged (RabbitMQ
 * closes the channel with 406 "unknown delivery tag"), never beyond what was handed out (deliveries still
 * buffered are not acknowledged).
 */
export class OutstandingTags {
  #tags: number[] = [];

  get size(): number {
    return this.#tags.length;
  }

  add(tag: number): void {
    const t = this.#tags;
    if (t.length === 0 || tag > t[t.length - 1]!) t.push(tag);
    else {
      const i = this.#find(tag);
      if (t[i] !== tag) t.splice(i, 0, tag);
    }
  }

  /** Removes one tag; false when it was not outstanding. */
  take(tag: number): boolean {
    const i = this.#find(tag);
    if (this.#tags[i] !== tag) return false;
    this.#tags.splice(i, 1);
    return true;
  }

  /** Removes all; returns the highest tag (for a multiple ack) and how many there were. */
  takeAll(): { upTo: number; count: number } | undefined {
    const t = this.#tags;
    if (t.length === 0) return undefined;
    const r = { upTo: t[t.length - 1]!, count: t.length };
    this.#tags = [];
    return r;
  }

  clear(): void {
    this.#tags = [];
  }

  #find(tag: number): number {
    let lo = 0;
    let hi = this.#tags.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#tags[mid]! < tag) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

// ---- returned messages -----------------------------------------------------------------------------------------

export interface InflightPublish {
  seq: number;
  exchange: string;
  routingKey: string;
  body: Buffer;
  mandatory: boolean;
  returned: boolean;
  settled: boolean;
}

/**
 * Matches `basic.return`s to publishes without tagging messages. RabbitMQ sends the return of an unroutable
 * mandatory message before its confirm, and returns come in publish order on a channel; a return carries the
 * exchange, routing key and body. So a return belongs to the first unconfirmed publish after the previously
 * matched one with the same exchange, routing key and body. (Two identical messages are interchangeable.)
 */
export class ReturnMatcher<T extends InflightPublish = InflightPublish> {
  #list: T[] = [];
  #head = 0;
  /** Index (into #list) after the last matched return. */
  #cursor = 0;

  get inflight(): number {
    return this.#list.length - this.#head;
  }

  add(p: T): void {
    this.#list.push(p);
  }

  /** Marks and returns the publish a return belongs to (undefined: none, e.g. a foreign or stale return). */
  match(exchange: string, routingKey: string, body: Buffer): T | undefined {
    for (let i = Math.max(this.#cursor, this.#head); i < this.#list.length; i++) {
      const p = this.#list[i]!;
      if (
        !p.settled &&
        !p.returned &&
        p.mandatory &&
        p.exchange === exchange &&
        p.routingKey === routingKey &&
        p.body.length === body.length &&
        p.body.equals(body)
      ) {
        p.returned = true;
        this.#cursor = i + 1;
        return p;
      }
    }
    return undefined;
  }

  /** Drops settled publishes from the front (call after settling). */
  compact(): void {
    while (this.#head < this.#list.length && this.#list[this.#head]!.settled) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#list.length) {
      this.#list = this.#list.slice(this.#head);
      this.#cursor = Math.max(0, this.#cursor - this.#head);
      this.#head = 0;
    }
  }

  /** Everything unsettled (for a channel that closed), and forgets all. */
  drain(): T[] {
    const rest = this.#list.slice(this.#head).filter((p) => !p.settled);
    this.#list = [];
    this.#head = 0;
    this.#cursor = 0;
    return rest;
  }
}
