import { SluiceError } from '../../errors.ts';
import type { TopicPartitionOffset } from '../../transport/types.ts';

/**
 * When staged offsets are really committed (Arroyo's `CommitPolicy`, spec §3): when at least
 * `minCommitFrequencyMs` passed since the last commit, or when at least `minCommitMessages` messages were
 * processed since then (summed over partitions as `offset − last committed offset`; a partition seen for the
 * first time counts as 1). At least one rule is required. A forced commit (`join`, revocation, shutdown) bypasses
 * the policy.
 *
 * Arroyo counts seconds; sluice counts milliseconds like the rest of its API (`CommitPolicy(1, None)` is
 * `new CommitPolicy({ minCommitFrequencyMs: 1000 })`).
 */
export class CommitPolicy {
  readonly minCommitFrequencyMs: number | undefined;
  readonly minCommitMessages: number | undefined;

  constructor(options: { minCommitFrequencyMs?: number | null; minCommitMessages?: number | null }) {
    const ms = options.minCommitFrequencyMs ?? undefined;
    const n = options.minCommitMessages ?? undefined;
    if (ms === undefined && n === undefined) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        'A CommitPolicy needs minCommitFrequencyMs or minCommitMessages (or both); ' +
          'use CommitPolicy.IMMEDIATE to commit after every message or CommitPolicy.ONCE_PER_SECOND.',
      );
    }
    for (const [name, v] of [
      ['minCommitFrequencyMs', ms],
      ['minCommitMessages', n],
    ] as const) {
      if (v !== undefined && !(Number.isFinite(v) && v >= 0)) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `CommitPolicy ${name} is ${v}; give a number ≥ 0, or leave it out to disable that rule.`,
        );
      }
    }
    this.minCommitFrequencyMs = ms;
    this.minCommitMessages = n;
  }

  /** A fresh state machine whose last commit time is `now` (its creation time). */
  state(now: number): CommitPolicyState {
    return new CommitPolicyState(this, now);
  }

  /** Commit after every message (Arroyo `IMMEDIATE = CommitPolicy(None, 1)`). */
  static readonly IMMEDIATE = new CommitPolicy({ minCommitMessages: 1 });
  /** At most one commit a second (Arroyo `ONCE_PER_SECOND`, the processor default). */
  static readonly ONCE_PER_SECOND = new CommitPolicy({ minCommitFrequencyMs: 1000 });
}

export class CommitPolicyState {
  readonly policy: CommitPolicy;
  #lastCommitTime: number;
  /** Per partition key: the offset of the last commit (or the first-seen baseline). */
  readonly #committed = new Map<string, number>();

  constructor(policy: CommitPolicy, now: number) {
    this.policy = policy;
    this.#lastCommitTime = now;
  }

  shouldCommit(now: number, offsets: ReadonlyMap<string, TopicPartitionOffset>): boolean {
    const ms = this.policy.minCommitFrequencyMs;
    if (ms !== undefined && now - this.#lastCommitTime >= ms) return true;
    const min = this.policy.minCommitMessages;
    if (min !== undefined) {
      let since = 0;
      for (const [k, o] of offsets) {
        let prev = this.#committed.get(k);
        if (prev === undefined) {
          prev = o.offset - 1;
          this.#committed.set(k, prev);
        }
        since += o.offset - prev;
      }
      if (since >= min) return true;
    }
    return false;
  }

  didCommit(now: number, offsets: ReadonlyMap<string, TopicPartitionOffset>): void {
    this.#lastCommitTime = now;
    for (const [k, o] of offsets) this.#committed.set(k, o.offset);
  }
}
