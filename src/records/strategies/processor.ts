import type { Logger } from 'pino';
import { isSluiceError, SluiceError } from '../../errors.ts';
import { createLogger } from '../../runtime/logger.ts';
import type {
  ConsumedRecord,
  Consumer,
  ConsumerOptions,
  Producer,
  TopicPartition,
  TopicPartitionOffset,
  Transport,
} from '../../transport/types.ts';
import { type Clock, systemClock } from './clock.ts';
import { CommitPolicy, type CommitPolicyState } from './commit-policy.ts';
import { deadLetterRecord } from './dead-letter.ts';
import {
  type Committable,
  FILTERED,
  type InvalidMessage,
  isInvalidMessage,
  isMessageRejected,
  type MessageOf,
  type ProcessingStrategy,
  type ProcessingStrategyFactory,
} from './types.ts';
import { keysOf, Mutex, messageOf, partitionKey } from './util.ts';

/** Arroyo's `DEFAULT_JOIN_TIMEOUT`: above about 30 s a consumer is removed from the group before it can commit. */
export const DEFAULT_JOIN_TIMEOUT_MS = 25_000;
/** Arroyo's `BACKPRESSURE_THRESHOLD`: continuous backpressure for this long pauses the assigned partitions. */
export const BACKPRESSURE_THRESHOLD_MS = 5_000;
/** How long the loop sleeps between attempts to submit a rejected message (arroyo PR #253: no spinning). */
export const BACKPRESSURE_SLEEP_MS = 10;

export interface StreamProcessorOptions {
  transport: Transport;
  groupId: string;
  topics: string[];
  factory: ProcessingStrategyFactory<ConsumedRecord>;
  /** Further consumer options (start position, session timeout …); the processor sets the rebalance callbacks. */
  consumer?: Omit<ConsumerOptions, 'groupId' | 'topics' | 'onAssign' | 'onRevoke' | 'autoCommitIntervalMs'>;
  /** When staged offsets are committed. Default `CommitPolicy.ONCE_PER_SECOND`. Forced commits bypass it. */
  commitPolicy?: CommitPolicy;
  /**
   * How long a revocation (or a change of assignment) waits for the chain to finish its work before the
   * partitions go. Default 25 000 ms; 0 drops in-flight work at once (`terminate`): the next owner re-consumes
   * it for revoked partitions, and partitions this member keeps are rewound to their committed offset.
   */
  joinTimeoutMs?: number;
  /** How long `stop()` waits for the chain. Default 25 000 ms. Work that completed is always committed. */
  shutdownJoinTimeoutMs?: number;
  /** Continuous backpressure for this long pauses every assigned partition. Default 5 000 ms. */
  backpressureThresholdMs?: number;
  /** Wait of one `poll` of the consumer. Default 1 000 ms. */
  pollTimeoutMs?: number;
  /** Default: the consumer's `maxPollRecords`. */
  maxPollRecords?: number;
  /**
   * Records whose processing throws `InvalidMessage` are produced here (key, value, and headers `topic`,
   * `partition`, `offset`, `error`, `error_type`), and processing goes on. Without it, `InvalidMessage` stops the
   * processor.
   */
  deadLetterTopic?: string;
  /** Stops the processor (like `stop()`) when aborted. */
  signal?: AbortSignal;
  clock?: Clock;
  logger?: Logger;
}

export interface StreamProcessorStats {
  /** Records submitted to (and accepted by) the chain. */
  messages: number;
  /** Commits sent to the broker. */
  commits: number;
  /** Total time spent under backpressure (ms). */
  backpressureMs: number;
  /** Times the partitions were paused after sustained backpressure. */
  pauses: number;
  deadLetters: number;
  /** Chains built (one per assignment change). */
  chains: number;
}

/**
 * Arroyo's stream processor over a sluice `Consumer` (spec §2). Each iteration:
 * 1. `consumer.poll` unless messages are carried over from a rejected submit;
 * 2. `strategy.poll()`;
 * 3. `strategy.submit(message)` for each message; on `MessageRejected` the rest is carried over (not re-polled)
 *    and the loop sleeps 10 ms; after `backpressureThresholdMs` of continuous backpressure every assigned
 *    partition is paused, and the next accepted submit resumes them.
 *
 * A fresh chain is built for every assignment. On revocation the chain is closed and joined with
 * `joinTimeoutMs`, its offsets are committed (forced), and a new chain is built for the remaining partitions. On
 * `stop()` the chain is closed and joined, committed, the consumer closed and the factory's `shutdown` called; on
 * an error the chain is terminated and the error propagates after the same clean-up.
 */
export class StreamProcessor {
  readonly consumer: Consumer;
  readonly stats: StreamProcessorStats = {
    messages: 0,
    commits: 0,
    backpressureMs: 0,
    pauses: 0,
    deadLetters: 0,
    chains: 0,
  };
  readonly #options: StreamProcessorOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #policy: CommitPolicyState;
  readonly #joinTimeoutMs: number;
  readonly #shutdownJoinTimeoutMs: number;
  readonly #thresholdMs: number;
  readonly #mutex = new Mutex();
  #strategy: ProcessingStrategy<ConsumedRecord> | undefined;
  /** Bumped whenever the assignment changes; carried messages of an older assignment are re-checked. */
  #generation = 0;
  #carry: Array<MessageOf<ConsumedRecord>> = [];
  /** Per partition, the first record the current chain took: where to rewind to when its work is dropped. */
  #chainStart = new Map<string, TopicPartitionOffset>();
  #carryAt = 0;
  #carryGeneration = 0;
  #staged = new Map<string, TopicPartitionOffset>();
  #commitDue = false;
  #commitRunning: Promise<void> | undefined;
  #commitFailure: unknown;
  #rejectedSince: number | undefined;
  #paused: TopicPartition[] | undefined;
  /** Partitions being revoked right now: their offsets may still be committed. */
  #revoking = new Set<string>();
  #producer: Producer | undefined;
  #stopRequested = false;
  #wakeStop: () => void = () => undefined;
  /** Resolves (with no records) when `stop()` is called, so a long poll does not delay the stop. */
  readonly #stopped = new Promise<ConsumedRecord[]>((resolve) => {
    this.#wakeStop = () => resolve([]);
  });
  #finished: Promise<void> | undefined;

  constructor(options: StreamProcessorOptions) {
    for (const [name, v] of [
      ['joinTimeoutMs', options.joinTimeoutMs],
      ['shutdownJoinTimeoutMs', options.shutdownJoinTimeoutMs],
      ['backpressureThresholdMs', options.backpressureThresholdMs],
      ['pollTimeoutMs', options.pollTimeoutMs],
    ] as const) {
      if (v !== undefined && !(Number.isFinite(v) && v >= 0)) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `StreamProcessor ${name} is ${v}; give a number of ms ≥ 0.`,
        );
      }
    }
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? createLogger({ name: 'stream-processor' });
    this.#policy = (options.commitPolicy ?? CommitPolicy.ONCE_PER_SECOND).state(this.#clock.now());
    this.#joinTimeoutMs = options.joinTimeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS;
    this.#shutdownJoinTimeoutMs = options.shutdownJoinTimeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS;
    this.#thresholdMs = options.backpressureThresholdMs ?? BACKPRESSURE_THRESHOLD_MS;
    this.consumer = options.transport.consumer({
      ...options.consumer,
      groupId: options.groupId,
      topics: options.topics,
      onAssign: (partitions) => this.#onAssign(partitions),
      onRevoke: (partitions) => this.#onRevoke(partitions),
    });
    if (options.signal !== undefined) {
      if (options.signal.aborted) this.#stopRequested = true;
      else options.signal.addEventListener('abort', () => this.stop(), { once: true });
    }
  }

  /** True while partitions are paused because of sustained backpressure. */
  get paused(): boolean {
    return this.#paused !== undefined;
  }

  /** Asks the loop to stop after the current iteration; `run()` then shuts down and resolves. */
  stop(): void {
    this.#stopRequested = true;
    this.#wakeStop();
  }

  /** Runs the loop until `stop()` (or the signal), then shuts down cleanly. */
  run(): Promise<void> {
    this.#finished ??= this.#run();
    return this.#finished;
  }

  async #run(): Promise<void> {
    try {
      while (!this.#stopRequested) await this.runOnce();
    } catch (err) {
      await this.#crash(err);
      throw err;
    }
    await this.shutdown();
  }

  /** One iteration of the loop (public for tests and custom loops). */
  async runOnce(): Promise<void> {
    if (this.#carryAt >= this.#carry.length) {
      const records = await Promise.race([
        this.consumer.poll({
          timeoutMs: this.#options.pollTimeoutMs ?? 1000,
          ...(this.#options.maxPollRecords === undefined ? {} : { maxRecords: this.#options.maxPollRecords }),
        }),
        this.#stopped,
      ]);
      // records of a poll cut short by stop() are not submitted: they come again after a restart
      if (this.#stopRequested) return;
      this.#carry = records.map(messageOf);
      this.#carryAt = 0;
      this.#carryGeneration = this.#generation;
    }
    const rejected = await this.#mutex.run(() => this.#step());
    if (rejected) await this.#clock.sleep(BACKPRESSURE_SLEEP_MS);
  }

  /** strategy.poll, then submit carried messages. True when a message was rejected. */
  async #step(): Promise<boolean> {
    if (this.#carryGeneration !== this.#generation) {
      // the assignment changed since these were polled: drop the records of partitions no longer ours
      const mine = keysOf(this.consumer.assignment());
      this.#carry = this.#carry
        .slice(this.#carryAt)
        .filter((m) => [...m.committable.keys()].every((k) => mine.has(k)));
      this.#carryAt = 0;
      this.#carryGeneration = this.#generation;
    }
    if (this.#strategy === undefined && this.#carryAt < this.#carry.length) {
      this.#build(this.consumer.assignment());
    }
    const strategy = this.#strategy;
    let rejected = false;
    let accepted = false;
    if (strategy !== undefined) {
      await this.#guard(() => strategy.poll());
      while (this.#carryAt < this.#carry.length) {
        const message = this.#carry[this.#carryAt]!;
        try {
          strategy.submit(message);
        } catch (err) {
          if (isMessageRejected(err)) {
            rejected = true;
            break;
          }
          if (!isInvalidMessage(err)) throw err;
          await this.#deadLetter(err, message.payload === FILTERED ? undefined : message.payload);
          // the message is done with; its offsets still go through the chain, in order
          this.#carry[this.#carryAt] = {
            payload: FILTERED,
            committable: message.committable,
            timestamp: message.timestamp,
          };
          continue;
        }
        this.#carryAt++;
        accepted = true;
        if (message.payload !== FILTERED) {
          this.stats.messages++;
          for (const [k, o] of message.committable) {
            if (!this.#chainStart.has(k)) this.#chainStart.set(k, { ...o, offset: o.offset - 1 });
          }
        }
        if (this.#rejectedSince !== undefined) this.#endBackpressure();
      }
    }
    // a second poll passes on at once what the submits completed (a batch that just filled goes out on the
    // next submit or poll), instead of after the next consumer poll, which may wait its whole timeout
    if (accepted && strategy !== undefined && this.#strategy === strategy)
      await this.#guard(() => strategy.poll());
    if (rejected) this.#noteRejected();
    this.#commitIfDue();
    return rejected;
  }

  /** Runs a strategy call; `InvalidMessage` from async work goes to the dead-letter topic. */
  async #guard(fn: () => void): Promise<void> {
    for (;;) {
      try {
        fn();
        return;
      } catch (err) {
        if (!isInvalidMessage(err)) throw err;
        await this.#deadLetter(err, err.record);
      }
    }
  }

  async #joinGuarded(strategy: ProcessingStrategy<ConsumedRecord>, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        await strategy.join(Math.max(0, deadline - performance.now()));
        return;
      } catch (err) {
        if (!isInvalidMessage(err)) throw err;
        await this.#deadLetter(err, err.record);
      }
    }
  }

  #noteRejected(): void {
    const now = this.#clock.now();
    this.#rejectedSince ??= now;
    if (this.#paused === undefined && now - this.#rejectedSince >= this.#thresholdMs) {
      this.#paused = this.consumer.assignment();
      this.consumer.pause(this.#paused);
      this.stats.pauses++;
      this.#logger.warn(
        { partitions: this.#paused.length, backpressureMs: now - this.#rejectedSince },
        'sustained backpressure: paused the assigned partitions until the chain accepts messages again',
      );
    }
  }

  #endBackpressure(): void {
    this.stats.backpressureMs += this.#clock.now() - this.#rejectedSince!;
    this.#rejectedSince = undefined;
    this.#resumePaused();
  }

  #resumePaused(): void {
    if (this.#paused === undefined) return;
    const mine = keysOf(this.consumer.assignment());
    const still = this.#paused.filter((p) => mine.has(partitionKey(p.topic, p.partition)));
    this.#paused = undefined;
    if (still.length > 0) this.consumer.resume(still);
  }

  async #deadLetter(err: InvalidMessage, record: ConsumedRecord | undefined): Promise<void> {
    const topic = this.#options.deadLetterTopic;
    if (topic === undefined) throw err;
    const source: ConsumedRecord = record ?? {
      topic: err.topic,
      partition: err.partition,
      offset: err.offset,
      timestamp: this.#clock.now(),
      key: null,
      value: null,
      headers: {},
    };
    this.#producer ??= this.#options.transport.producer({ autoCreateTopics: true });
    await this.#producer.send(deadLetterRecord(topic, source, err));
    this.stats.deadLetters++;
    this.#logger.warn(
      {
        topic: err.topic,
        partition: err.partition,
        offset: err.offset,
        deadLetterTopic: topic,
        error: err.message,
      },
      'invalid message sent to the dead-letter topic',
    );
  }

  /** The `commit` injected into chains: stages offsets and decides whether a commit is due. */
  readonly #commit = (offsets: Committable, force = false): void => {
    for (const [k, v] of offsets) this.#staged.set(k, v);
    if (force || this.#policy.shouldCommit(this.#clock.now(), offsets)) this.#commitDue = true;
  };

  /**
   * Starts a commit of the staged offsets in the background when one is due and none is running (a due commit
   * waits for the running one and then takes every offset staged meanwhile), so the loop never waits for the
   * broker's commit round trip. Forced commits (revocation, shutdown) wait: see `#drainCommits`.
   */
  #commitIfDue(): void {
    if (this.#commitFailure !== undefined) {
      const err = this.#commitFailure;
      this.#commitFailure = undefined;
      throw err;
    }
    if (!this.#commitDue || this.#commitRunning !== undefined) return;
    this.#commitDue = false;
    const offsets = this.#takeStaged();
    if (offsets.size === 0) return;
    this.#commitRunning = this.#commitNow(offsets)
      .catch((err: unknown) => {
        this.#commitFailure = err;
      })
      .finally(() => {
        this.#commitRunning = undefined;
      });
  }

  /** Takes the staged offsets of partitions this member may still commit. */
  #takeStaged(): Map<string, TopicPartitionOffset> {
    const mine = keysOf(this.consumer.assignment());
    const offsets = new Map<string, TopicPartitionOffset>();
    for (const [k, v] of this.#staged) if (mine.has(k) || this.#revoking.has(k)) offsets.set(k, v);
    this.#staged = new Map();
    return offsets;
  }

  /** Waits for a running commit, then commits everything staged (retrying retriable failures up to 3 times). */
  async #drainCommits(): Promise<void> {
    while (this.#commitRunning !== undefined) await this.#commitRunning;
    for (let attempt = 0; ; attempt++) {
      if (this.#commitFailure !== undefined) {
        const err = this.#commitFailure;
        this.#commitFailure = undefined;
        throw err;
      }
      this.#commitDue = false;
      const offsets = this.#takeStaged();
      if (offsets.size === 0) return;
      await this.#commitNow(offsets);
      if (!this.#commitDue) return;
      if (attempt >= 3) {
        throw new SluiceError(
          'SLUICE_TIMEOUT',
          'The final commit of the stream processor kept failing with retriable errors; its records will be ' +
            'consumed again after a restart. Check the broker connection.',
        );
      }
      await this.#clock.sleep(1000);
    }
  }

  async #commitNow(offsets: Map<string, TopicPartitionOffset>): Promise<void> {
    try {
      await this.consumer.commit([...offsets.values()]);
    } catch (err) {
      if (isSluiceError(err, 'SLUICE_REBALANCE')) {
        this.#logger.warn(
          { error: err.message },
          'commit refused after a rebalance; the new owner re-reads the uncommitted records',
        );
        return;
      }
      if (isSluiceError(err) && err.canRetry) {
        // keep them staged (newer offsets win) and try again
        for (const [k, v] of offsets) if (!this.#staged.has(k)) this.#staged.set(k, v);
        this.#commitDue = true;
        this.#logger.warn({ error: err.message }, 'commit failed; retrying');
        return;
      }
      throw err;
    }
    this.stats.commits++;
    this.#policy.didCommit(this.#clock.now(), offsets);
  }

  #build(partitions: TopicPartition[]): void {
    this.#strategy =
      partitions.length === 0
        ? undefined
        : this.#options.factory.createWithPartitions(this.#commit, partitions);
    if (this.#strategy !== undefined) this.stats.chains++;
    this.#chainStart = new Map();
  }

  /** Closes and joins the current chain (terminates it with a 0 timeout), then commits what it staged. */
  async #retire(timeoutMs: number): Promise<void> {
    const strategy = this.#strategy;
    this.#strategy = undefined;
    if (strategy !== undefined) {
      strategy.close();
      if (timeoutMs === 0) strategy.terminate();
      else await this.#joinGuarded(strategy, timeoutMs);
    }
    await this.#drainCommits();
    if (strategy !== undefined && timeoutMs === 0 && !this.#stopRequested) await this.#rewind();
  }

  /**
   * After in-flight work was dropped: moves the partitions this member keeps back to their committed offset (or
   * to the first record the dropped chain took), so the dropped records are consumed again here.
   */
  async #rewind(): Promise<void> {
    this.#carry = [];
    this.#carryAt = 0;
    const kept = this.consumer.assignment().filter((p) => {
      const k = partitionKey(p.topic, p.partition);
      return !this.#revoking.has(k) && this.#chainStart.has(k);
    });
    if (kept.length === 0) return;
    const committed = await this.consumer.committed(kept);
    kept.forEach((p, i) => {
      const offset = committed[i] ?? this.#chainStart.get(partitionKey(p.topic, p.partition))!.offset;
      this.consumer.seek({ topic: p.topic, partition: p.partition, offset });
    });
    this.#logger.info(
      { partitions: kept.length },
      'in-flight work dropped: kept partitions rewound to re-read it',
    );
  }

  #onAssign(partitions: TopicPartition[]): Promise<void> {
    return this.#mutex.run(async () => {
      this.#generation++;
      if (this.#strategy !== undefined) await this.#retire(this.#joinTimeoutMs);
      this.#build(this.consumer.assignment());
      this.#logger.debug({ partitions: partitions.length }, 'partitions assigned; chain rebuilt');
    });
  }

  #onRevoke(partitions: TopicPartition[]): Promise<void> {
    return this.#mutex.run(async () => {
      this.#generation++;
      const revoked = keysOf(partitions);
      this.#revoking = revoked;
      try {
        await this.#retire(this.#stopRequested ? this.#shutdownJoinTimeoutMs : this.#joinTimeoutMs);
      } finally {
        this.#revoking = new Set();
      }
      for (const k of revoked) this.#staged.delete(k);
      if (this.#paused !== undefined) {
        this.#paused = this.#paused.filter((p) => !revoked.has(partitionKey(p.topic, p.partition)));
      }
      if (!this.#stopRequested) {
        this.#build(
          this.consumer.assignment().filter((p) => !revoked.has(partitionKey(p.topic, p.partition))),
        );
      }
      this.#logger.debug({ partitions: partitions.length }, 'partitions revoked; chain joined');
    });
  }

  /** Closes and joins the chain, commits, closes the consumer, calls the factory's `shutdown`. */
  async shutdown(): Promise<void> {
    this.#stopRequested = true;
    try {
      await this.#mutex.run(() => this.#retire(this.#shutdownJoinTimeoutMs));
      await this.consumer.close();
    } finally {
      await this.#producer?.close();
      await this.#options.factory.shutdown?.();
    }
  }

  async #crash(err: unknown): Promise<void> {
    this.#logger.error(
      { error: err instanceof Error ? err.message : String(err) },
      'stream processor failed',
    );
    this.#stopRequested = true;
    this.#strategy?.terminate();
    this.#strategy = undefined;
    this.#staged.clear();
    await this.consumer.close().catch(() => undefined);
    await this.#producer?.close().catch(() => undefined);
    await Promise.resolve(this.#options.factory.shutdown?.()).catch(() => undefined);
  }
}
