import { closedStep } from './commit-offsets.ts';
import {
  FILTERED,
  isFiltered,
  isMessageRejected,
  type Message,
  type MessageOf,
  MessageRejected,
  type ProcessingStrategy,
} from './types.ts';

export interface RunTaskConcurrentlyOptions {
  /** Tasks running at once. */
  concurrency: number;
  /**
   * Bound on queued work: `submit` rejects (backpressure) while more than this many messages are pending (running,
   * waiting to run, or finished but not yet passed on), the same rule as Arroyo's `max_pending_futures`.
   */
  maxPendingFutures: number;
}

interface Entry<R> {
  message: MessageOf<unknown>;
  state: 'waiting' | 'running' | 'done' | 'failed';
  value: R | undefined;
  error: unknown;
  settled: Promise<void> | undefined;
}

/**
 * Arroyo's `RunTaskInThreads` over promises: runs the async `fn` for up to `concurrency` messages at once and
 * passes the results on **in submission order** (a slow head blocks the ones behind it, which keeps offsets in
 * order). Sentinels take their place in the queue and pass through in order.
 *
 * A task that fails with `InvalidMessage` is replaced downstream by a sentinel carrying its offsets, and the error
 * is rethrown from `poll`/`join` for the processor's dead-letter path; any other failure is rethrown as is.
 */
export class RunTaskConcurrently<T, R> implements ProcessingStrategy<T> {
  readonly #fn: (message: Message<T>) => Promise<R>;
  readonly #next: ProcessingStrategy<R>;
  readonly #concurrency: number;
  readonly #maxPending: number;
  #queue: Array<Entry<R>> = [];
  #head = 0;
  /** Index of the first entry that may still be waiting to start (entries start in queue order). */
  #nextStart = 0;
  #running = 0;
  #closed = false;
  #terminated = false;

  constructor(
    fn: (message: Message<T>) => Promise<R>,
    options: RunTaskConcurrentlyOptions,
    next: ProcessingStrategy<R>,
  ) {
    if (!(Number.isInteger(options.concurrency) && options.concurrency >= 1)) {
      throw new RangeError(`concurrency must be an integer ≥ 1, got ${options.concurrency}`);
    }
    if (!(Number.isInteger(options.maxPendingFutures) && options.maxPendingFutures >= 0)) {
      throw new RangeError(`maxPendingFutures must be an integer ≥ 0, got ${options.maxPendingFutures}`);
    }
    this.#fn = fn;
    this.#next = next;
    this.#concurrency = options.concurrency;
    this.#maxPending = options.maxPendingFutures;
  }

  /** Messages submitted and not yet passed on. */
  get pending(): number {
    return this.#queue.length - this.#head;
  }

  submit(message: MessageOf<T>): void {
    if (this.#closed) throw closedStep('RunTaskConcurrently');
    if (this.pending > this.#maxPending) throw new MessageRejected();
    const entry: Entry<R> = {
      message,
      state: isFiltered(message) ? 'done' : 'waiting',
      value: undefined,
      error: undefined,
      settled: undefined,
    };
    this.#queue.push(entry);
    if (entry.state === 'waiting') this.#startWaiting();
  }

  #startWaiting(): void {
    if (this.#nextStart < this.#head) this.#nextStart = this.#head;
    for (; this.#nextStart < this.#queue.length && this.#running < this.#concurrency; this.#nextStart++) {
      const e = this.#queue[this.#nextStart]!;
      if (e.state !== 'waiting') continue;
      e.state = 'running';
      this.#running++;
      let p: Promise<R>;
      try {
        p = this.#fn(e.message as Message<T>);
      } catch (err) {
        p = Promise.reject(err);
      }
      e.settled = p.then(
        (value) => {
          e.state = 'done';
          e.value = value;
        },
        (err: unknown) => {
          e.state = 'failed';
          e.error = err;
        },
      );
      e.settled.then(() => {
        this.#running--;
        if (!this.#terminated) this.#startWaiting();
      });
    }
  }

  /** Passes finished head entries on, in order. Stops at an unfinished head or a rejection. */
  #forward(): void {
    while (this.#head < this.#queue.length) {
      const e = this.#queue[this.#head]!;
      if (e.state === 'waiting' || e.state === 'running') break;
      if (e.state === 'failed') {
        const err = e.error;
        if (!(err instanceof Error && err.name === 'InvalidMessage')) {
          this.#shift();
          throw err;
        }
        // the offsets of an invalid message still advance, in order
        try {
          this.#next.submit({
            payload: FILTERED,
            committable: e.message.committable,
            timestamp: e.message.timestamp,
          });
        } catch (rejected) {
          if (isMessageRejected(rejected)) break;
          throw rejected;
        }
        this.#shift();
        throw err;
      }
      const out: MessageOf<R> = isFiltered(e.message)
        ? (e.message as MessageOf<R>)
        : { payload: e.value as R, committable: e.message.committable, timestamp: e.message.timestamp };
      try {
        this.#next.submit(out);
      } catch (err) {
        if (isMessageRejected(err)) break;
        throw err;
      }
      this.#shift();
    }
  }

  #shift(): void {
    this.#queue[this.#head] = undefined as unknown as Entry<R>;
    this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#nextStart -= this.#head;
      this.#head = 0;
    }
  }

  poll(): void {
    this.#forward();
    this.#next.poll();
  }

  close(): void {
    this.#closed = true;
  }

  async join(timeoutMs?: number): Promise<void> {
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + timeoutMs;
    while (this.pending > 0 && performance.now() < deadline) {
      this.#forward();
      if (this.pending === 0) break;
      const head = this.#queue[this.#head]!;
      const wait = Math.min(10, deadline - performance.now());
      if (head.settled !== undefined && (head.state === 'running' || head.state === 'waiting')) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise((r) => {
          timer = setTimeout(r, Math.max(0, wait));
        });
        await Promise.race([head.settled, timeout]);
        clearTimeout(timer);
      } else {
        // finished but rejected downstream, or waiting for a slot: let the next step work
        this.#next.poll();
        await new Promise((r) => setTimeout(r, Math.max(0, wait)));
      }
    }
    this.#next.close();
    await this.#next.join(timeoutMs === undefined ? undefined : Math.max(0, deadline - performance.now()));
  }

  terminate(): void {
    this.#closed = true;
    this.#terminated = true;
    this.#queue = [];
    this.#head = 0;
    this.#nextStart = 0;
    this.#next.terminate();
  }
}
