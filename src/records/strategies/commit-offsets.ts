import type { Clock } from './clock.ts';
import { systemClock } from './clock.ts';
import type { CommitFn, MessageOf, ProcessingStrategy } from './types.ts';
import { EMPTY_COMMITTABLE } from './util.ts';

/**
 * The terminal step: stages the committable of every message it receives (the processor's `CommitPolicy` decides
 * when the commit really happens), stages nothing on `poll` so time-based commits fire while idle, and forces a
 * commit on `join`. Every chain ends with it, so an offset moves only after every earlier step finished.
 */
export class CommitOffsets<T = unknown> implements ProcessingStrategy<T> {
  readonly #commit: CommitFn;
  readonly #clock: Clock;
  #closed = false;
  /** End-to-end latency (now − message timestamp, ms) of a message, sampled at most once a second. */
  lastLatencyMs: number | undefined;
  #lastLatencyAt = Number.NEGATIVE_INFINITY;

  constructor(commit: CommitFn, options: { clock?: Clock } = {}) {
    this.#commit = commit;
    this.#clock = options.clock ?? systemClock;
  }

  submit(message: MessageOf<T>): void {
    if (this.#closed) throw closedStep('CommitOffsets');
    this.#commit(message.committable);
    const now = this.#clock.now();
    if (now - this.#lastLatencyAt >= 1000) {
      this.#lastLatencyAt = now;
      this.lastLatencyMs = now - message.timestamp;
    }
  }

  poll(): void {
    this.#commit(EMPTY_COMMITTABLE);
  }

  close(): void {
    this.#closed = true;
  }

  async join(): Promise<void> {
    this.#commit(EMPTY_COMMITTABLE, true);
  }

  terminate(): void {
    this.#closed = true;
  }
}

export function closedStep(name: string): Error {
  return new Error(
    `${name}: submit after close(); the processor must not submit to a closed chain (a sluice bug)`,
  );
}
