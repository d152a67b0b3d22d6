import { randomUUID } from 'node:crypto';
import { SluiceError } from '../../errors.ts';
import { type Link, type Publisher, StreamReader } from './link.ts';

/** Arguments that make a durable stream queue. */
export const STREAM_ARGS = { 'x-queue-type': 'stream' } as const;

export interface LogRecord {
  id: string;
}

/**
 * A small replicated state kept in a stream: every reader folds all records from the first, and keeps following.
 *
 * `sync()` gives read-your-writes *and* read-others'-writes: it appends a marker and waits until the reader has
 * applied it, so every record appended (and confirmed) anywhere before the marker has been applied too. AMQP 0-9-1
 * cannot ask a stream for its end offset, so a marker is the exact way to know the reader caught up.
 */
export class RecordLog<R extends LogRecord> {
  readonly queue: string;
  readonly #link: Link;
  readonly #publisher: Publisher;
  readonly #parse: (body: Buffer) => R | undefined;
  readonly #apply: (rec: R) => void;
  readonly #waiters = new Map<string, () => void>();
  readonly #reader: StreamReader;
  readonly #waitMs: number;
  #opened: Promise<void> | undefined;

  constructor(
    link: Link,
    publisher: Publisher,
    queue: string,
    parse: (body: Buffer) => R | undefined,
    apply: (rec: R) => void,
    waitMs: number,
  ) {
    this.queue = queue;
    this.#link = link;
    this.#publisher = publisher;
    this.#parse = parse;
    this.#apply = apply;
    this.#waitMs = waitMs;
    this.#reader = new StreamReader(link, {
      queue,
      start: 'first',
      prefetch: 1000,
      autoAck: true,
      onMessage: (msg) => {
        const rec = this.#parse(msg.content);
        if (rec === undefined) return;
        this.#apply(rec);
        const w = this.#waiters.get(rec.id);
        if (w !== undefined) {
          this.#waiters.delete(rec.id);
          w();
        }
      },
    });
  }

  /** Declares the stream (idempotent) and starts following it from the first record. */
  open(): Promise<void> {
    this.#opened ??= (async () => {
      await this.#link.withChannel((ch) =>
        ch.assertQueue(this.queue, { durable: true, arguments: STREAM_ARGS }),
      );
      await this.#reader.start();
    })();
    this.#opened.catch(() => {
      this.#opened = undefined;
    });
    return this.#opened;
  }

  /** Appends a record and resolves once this reader has applied it (and so everything before it). */
  async append(rec: R): Promise<void> {
    await this.open();
    if (this.#reader.failure !== undefined) {
      // the reader could not resubscribe after a reconnection: try again now
      await this.#reader.start();
    }
    const seen = new Promise<void>((resolve) => this.#waiters.set(rec.id, resolve));
    let timer: NodeJS.Timeout | undefined;
    try {
      // the log's stream always exists once opened: an unroutable record is retried (broker restarting)
      await this.#publisher.publish(
        this.queue,
        Buffer.from(JSON.stringify(rec), 'utf8'),
        {},
        async () => true,
      );
      await Promise.race([
        seen,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new SluiceError(
                  'SLUICE_TIMEOUT',
                  `RabbitMQ confirmed a record in stream ${this.queue}, but it was not read back within ` +
                    `${this.#waitMs} ms. The broker is overloaded or the connection is flapping; try again.`,
                  { canRetry: true, details: { queue: this.queue } },
                ),
              ),
            this.#waitMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.#waiters.delete(rec.id);
    }
  }

  /** Waits until every record appended before this call has been applied. */
  sync(): Promise<void> {
    return this.append({ op: 'sync', id: randomUUID() } as unknown as R);
  }

  async close(): Promise<void> {
    await this.#reader.stop();
  }
}
