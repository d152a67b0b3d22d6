import type { TopicPartitionOffset } from '../../transport/types.ts';
import type { Clock } from './clock.ts';
import { systemClock } from './clock.ts';
import { closedStep } from './commit-offsets.ts';
import {
  isFiltered,
  isMessageRejected,
  type Message,
  type MessageOf,
  type ProcessingStrategy,
} from './types.ts';
import { mergeCommittable } from './util.ts';

export interface ReduceOptions<T> {
  /** What a message adds to the batch size. Default: 1 (the size counts messages). */
  computeBatchSize?: (message: Message<T>) => number;
  /**
   * Where the `maxBatchTimeMs` deadline of a batch starts:
   * - `first-message` (default): at the first message of the batch, as `batching_kafka_consumer` does, so a batch
   *   always gets its full time to fill;
   * - `previous-flush`: when the buffer is created (the step's creation or the previous flush), as Arroyo 2.42
   *   does. After an idle period the first message is then flushed alone on the next poll.
   */
  deadlineFrom?: 'first-message' | 'previous-flush';
  clock?: Clock;
}

interface Batch<R> {
  value: R;
  size: number;
  committable: Map<string, TopicPartitionOffset>;
  timestamp: number;
  deadline: number;
}

/**
 * Folds messages into one value until the batch holds `maxBatchSize` (by `computeBatchSize`) or its deadline
 * passed, then submits the value with the merged committable of its messages (last write wins per partition) and
 * the last message's timestamp. Semantics follow Arroyo's `Reduce` (spec §4):
 * - `submit` first flushes a ready batch, **then** appends; a full batch goes out on the next `submit` or `poll`;
 * - if that flush is rejected (backpressure), the incoming message is not appended, so the caller can retry it;
 * - `poll` flushes a ready batch and swallows a rejection; `join` force-flushes until it succeeds or the timeout
 *   passes; an empty batch never flushes.
 *
 * Sentinels (filtered offsets) go straight on when no batch is pending; while one is pending their offsets join
 * the batch's committable instead (Arroyo forwards them at once, which can commit past messages still buffered).
 */
export class Reduce<T, R> implements ProcessingStrategy<T> {
  readonly #maxBatchSize: number;
  readonly #maxBatchTimeMs: number;
  readonly #accumulator: (accumulated: R, message: Message<T>) => R;
  readonly #initialValue: () => R;
  readonly #next: ProcessingStrategy<R>;
  readonly #computeBatchSize: ((message: Message<T>) => number) | undefined;
  readonly #fromFirstMessage: boolean;
  readonly #clock: Clock;
  #batch: Batch<R> | undefined;
  #bufferCreatedAt: number;
  #closed = false;

  constructor(
    maxBatchSize: number,
    maxBatchTimeMs: number,
    accumulator: (accumulated: R, message: Message<T>) => R,
    initialValue: () => R,
    next: ProcessingStrategy<R>,
    options: ReduceOptions<T> = {},
  ) {
    if (!(maxBatchSize > 0) || !(maxBatchTimeMs >= 0)) {
      throw new RangeError(
        `Reduce needs maxBatchSize > 0 and maxBatchTimeMs ≥ 0 (got ${maxBatchSize}, ${maxBatchTimeMs})`,
      );
    }
    this.#maxBatchSize = maxBatchSize;
    this.#maxBatchTimeMs = maxBatchTimeMs;
    this.#accumulator = accumulator;
    this.#initialValue = initialValue;
    this.#next = next;
    this.#computeBatchSize = options.computeBatchSize;
    this.#fromFirstMessage = (options.deadlineFrom ?? 'first-message') === 'first-message';
    this.#clock = options.clock ?? systemClock;
    this.#bufferCreatedAt = this.#clock.now();
  }

  #ready(batch: Batch<R>): boolean {
    return batch.size >= this.#maxBatchSize || this.#clock.now() >= batch.deadline;
  }

  /** Submits the batch if ready (or forced). Throws MessageRejected from the next step, keeping the batch. */
  #flush(force: boolean): void {
    const batch = this.#batch;
    if (batch === undefined || !(force || this.#ready(batch))) return;
    this.#next.submit({ payload: batch.value, committable: batch.committable, timestamp: batch.timestamp });
    this.#batch = undefined;
    this.#bufferCreatedAt = this.#clock.now();
  }

  submit(message: MessageOf<T>): void {
    if (this.#closed) throw closedStep('Reduce');
    this.#flush(false);
    if (isFiltered(message)) {
      if (this.#batch === undefined) this.#next.submit(message);
      else mergeCommittable(this.#batch.committable, message.committable);
      return;
    }
    let batch = this.#batch;
    if (batch === undefined) {
      const origin = this.#fromFirstMessage ? this.#clock.now() : this.#bufferCreatedAt;
      batch = {
        value: this.#initialValue(),
        size: 0,
        committable: new Map(),
        timestamp: message.timestamp,
        deadline: origin + this.#maxBatchTimeMs,
      };
      this.#batch = batch;
    }
    const m = message as Message<T>;
    batch.value = this.#accumulator(batch.value, m);
    batch.size += this.#computeBatchSize === undefined ? 1 : this.#computeBatchSize(m);
    mergeCommittable(batch.committable, message.committable);
    batch.timestamp = message.timestamp;
  }

  poll(): void {
    try {
      this.#flush(false);
    } catch (err) {
      if (!isMessageRejected(err)) throw err;
    }
    this.#next.poll();
  }

  close(): void {
    this.#closed = true;
  }

  async join(timeoutMs?: number): Promise<void> {
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + timeoutMs;
    while (this.#batch !== undefined) {
      try {
        this.#flush(true);
      } catch (err) {
        if (!isMessageRejected(err)) throw err;
        if (performance.now() >= deadline) break;
        this.#next.poll();
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    this.#next.close();
    await this.#next.join(timeoutMs === undefined ? undefined : Math.max(0, deadline - performance.now()));
  }

  terminate(): void {
    this.#closed = true;
    this.#batch = undefined;
    this.#next.terminate();
  }
}

/** Arroyo's `BatchStep`: a `Reduce` whose value is the list of the batch's payloads. */
export class BatchStep<T> extends Reduce<T, T[]> {
  constructor(
    maxBatchSize: number,
    maxBatchTimeMs: number,
    next: ProcessingStrategy<T[]>,
    options: ReduceOptions<T> = {},
  ) {
    super(
      maxBatchSize,
      maxBatchTimeMs,
      (batch, message) => {
        batch.push(message.payload);
        return batch;
      },
      () => [],
      next,
      options,
    );
  }
}
