import { closedStep } from './commit-offsets.ts';
import {
  isFiltered,
  isMessageRejected,
  type Message,
  type MessageOf,
  MessageRejected,
  type ProcessingStrategy,
} from './types.ts';

/**
 * Applies `fn` to every message synchronously and submits the result. Sentinels pass through untouched.
 *
 * Backpressure is Arroyo's `better_backpressure`: when the next step rejects a result, the result is kept and
 * re-offered on `poll`, and new input is rejected until it went through, so `fn` never runs twice for a message.
 * `InvalidMessage` thrown by `fn` goes to the processor's dead-letter path.
 */
export class RunTask<T, R> implements ProcessingStrategy<T> {
  readonly #fn: (message: Message<T>) => R;
  readonly #next: ProcessingStrategy<R>;
  #pending: MessageOf<R> | undefined;
  #closed = false;

  constructor(fn: (message: Message<T>) => R, next: ProcessingStrategy<R>) {
    this.#fn = fn;
    this.#next = next;
  }

  submit(message: MessageOf<T>): void {
    if (this.#closed) throw closedStep('RunTask');
    if (this.#pending !== undefined) {
      this.#retryPending();
      if (this.#pending !== undefined) throw new MessageRejected();
    }
    const out: MessageOf<R> = isFiltered(message)
      ? message
      : {
          payload: this.#fn(message as Message<T>),
          committable: message.committable,
          timestamp: message.timestamp,
        };
    try {
      this.#next.submit(out);
    } catch (err) {
      if (!isMessageRejected(err)) throw err;
      // keep the result: the message counts as taken, the next one is rejected until this one goes through
      this.#pending = out;
    }
  }

  #retryPending(): void {
    try {
      this.#next.submit(this.#pending!);
      this.#pending = undefined;
    } catch (err) {
      if (!isMessageRejected(err)) throw err;
    }
  }

  poll(): void {
    if (this.#pending !== undefined) this.#retryPending();
    this.#next.poll();
  }

  close(): void {
    this.#closed = true;
  }

  async join(timeoutMs?: number): Promise<void> {
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + timeoutMs;
    while (this.#pending !== undefined && performance.now() < deadline) {
      this.#next.poll();
      this.#retryPending();
      if (this.#pending !== undefined) await new Promise((r) => setTimeout(r, 10));
    }
    this.#next.close();
    await this.#next.join(timeoutMs === undefined ? undefined : Math.max(0, deadline - performance.now()));
  }

  terminate(): void {
    this.#closed = true;
    this.#pending = undefined;
    this.#next.terminate();
  }
}
