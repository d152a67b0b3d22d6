import type { TopicPartitionOffset } from '../../transport/types.ts';
import type { Clock } from './clock.ts';
import { systemClock } from './clock.ts';
import { closedStep } from './commit-offsets.ts';
import type { CommitPolicy, CommitPolicyState } from './commit-policy.ts';
import {
  FILTERED,
  isFiltered,
  isMessageRejected,
  type Message,
  type MessageOf,
  type ProcessingStrategy,
} from './types.ts';

/**
 * Passes on the messages for which `predicate` is true.
 *
 * The offsets of dropped messages still advance (spec §9: filtered messages advance committable offsets):
 * - without a `commitPolicy` (sluice's default), every dropped message is replaced by a sentinel carrying its
 *   offsets, which later steps pass on cheaply;
 * - with a `commitPolicy` (Arroyo's `FilterStep`), dropped offsets are gathered and sent on as one sentinel when
 *   the policy says so, and on `join`.
 */
export class Filter<T> implements ProcessingStrategy<T> {
  readonly #predicate: (message: Message<T>) => boolean;
  readonly #next: ProcessingStrategy<T>;
  readonly #policy: CommitPolicyState | undefined;
  readonly #clock: Clock;
  #uncommitted = new Map<string, TopicPartitionOffset>();
  #closed = false;

  constructor(
    predicate: (message: Message<T>) => boolean,
    next: ProcessingStrategy<T>,
    options: { commitPolicy?: CommitPolicy; clock?: Clock } = {},
  ) {
    this.#predicate = predicate;
    this.#next = next;
    this.#clock = options.clock ?? systemClock;
    this.#policy = options.commitPolicy?.state(this.#clock.now());
  }

  submit(message: MessageOf<T>): void {
    if (this.#closed) throw closedStep('Filter');
    if (!isFiltered(message) && this.#predicate(message as Message<T>)) {
      if (this.#policy !== undefined) for (const k of message.committable.keys()) this.#uncommitted.delete(k);
      this.#next.submit(message);
    } else if (this.#policy === undefined) {
      this.#next.submit(
        isFiltered(message)
          ? message
          : { payload: FILTERED, committable: message.committable, timestamp: message.timestamp },
      );
      return;
    } else {
      for (const [k, v] of message.committable) this.#uncommitted.set(k, v);
    }
    if (this.#policy !== undefined) {
      const now = this.#clock.now();
      if (this.#policy.shouldCommit(now, message.committable)) {
        try {
          this.#flushUncommitted(now);
        } catch (err) {
          // the message itself went through; the gathered offsets wait for the next chance
          if (!isMessageRejected(err)) throw err;
        }
      }
    }
  }

  #flushUncommitted(now: number): void {
    if (this.#uncommitted.size === 0) return;
    const offsets = this.#uncommitted;
    this.#next.submit({ payload: FILTERED, committable: offsets, timestamp: now });
    this.#policy?.didCommit(now, offsets);
    this.#uncommitted = new Map();
  }

  poll(): void {
    this.#next.poll();
  }

  close(): void {
    this.#closed = true;
  }

  async join(timeoutMs?: number): Promise<void> {
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + timeoutMs;
    for (;;) {
      try {
        this.#flushUncommitted(this.#clock.now());
        break;
      } catch (err) {
        if (!isMessageRejected(err) || performance.now() >= deadline) break;
        this.#next.poll();
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    timeoutMs = timeoutMs === undefined ? undefined : Math.max(0, deadline - performance.now());
    this.#next.close();
    await this.#next.join(timeoutMs);
  }

  terminate(): void {
    this.#closed = true;
    this.#next.terminate();
  }
}
