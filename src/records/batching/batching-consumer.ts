import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { isSluiceError, SluiceError } from '../../errors.ts';
import { createLogger } from '../../runtime/logger.ts';
import type {
  ConsumedRecord,
  Consumer,
  ConsumerOptions,
  Producer,
  TopicPartitionOffset,
  Transport,
} from '../../transport/types.ts';
import { type Clock, systemClock } from '../strategies/clock.ts';
import { deadLetterRecord } from '../strategies/dead-letter.ts';
import { keysOf, Mutex, partitionKey } from '../strategies/util.ts';
import {
  type BatchMetrics,
  type BatchTotals,
  type FlushReason,
  PrometheusBatchMetrics,
  type PrometheusOptions,
} from './metrics.ts';

/**
 * The worker contract of `batching_kafka_consumer` (spec §7): the consumer calls `processMessage` for every record
 * and batches the non-null results; `flushBatch` writes a batch to the sink; `shutdown` runs once at the end.
 * Each method may return a promise.
 */
export interface Worker<T> {
  /** A value to batch, or `null` to skip the record (its offset is still committed with the batch). */
  processMessage(record: ConsumedRecord): T | null | Promise<T | null>;
  /** Writes the batch. Offsets are committed only after this resolves. */
  flushBatch(batch: T[]): void | Promise<void>;
  shutdown(): void | Promise<void>;
}

export interface BatchingConsumerOptions<T> {
  transport: Transport;
  groupId: string;
  topics: string[];
  worker: Worker<T>;
  /** Flush once the batch holds this many values (non-null results; skipped records do not count). */
  maxBatchSize: number;
  /**
   * Flush once this much time passed since the **first message of the batch** (the first record consumed after
   * the previous flush, skipped or not): the batch flushes at the first check after `firstMessageTime +
   * maxBatchTimeMs`. The wait of each poll is cut to that deadline, so an idle consumer still flushes on time.
   */
  maxBatchTimeMs: number;
  /**
   * What `stop()` does with the batch not flushed yet:
   * - `flush` (default): flush it and commit;
   * - `drop`: drop it without flushing or committing (`batching_kafka_consumer`'s behaviour); its records are
   *   consumed again after a restart.
   */
  shutdown?: 'flush' | 'drop';
  /**
   * Records whose `processMessage` throws are produced here with their key and value and the headers `topic`,
   * `partition`, `offset` (as `batching_kafka_consumer`), `error` and `error_type`; the consumer goes on. Without
   * it, the error stops the consumer (nothing of the batch is committed).
   */
  deadLetterTopic?: string;
  /** After each commit, one record per partition: key `<topic>:<partition>:<group>`, value the next offset. */
  commitLogTopic?: string;
  /** Further consumer options (start position, session timeout …); the batching consumer sets the callbacks. */
  consumer?: Omit<ConsumerOptions, 'groupId' | 'topics' | 'onAssign' | 'onRevoke' | 'autoCommitIntervalMs'>;
  /** Longest wait of one poll. Default 1000 ms. */
  pollTimeoutMs?: number;
  /** Records per poll. Default: the consumer's `maxPollRecords`. */
  maxPollRecords?: number;
  /**
   * Whether a flush waits for its commit before consuming goes on (`batching_kafka_consumer`'s synchronous
   * commit). Default false: the commit runs in the background while the next batch is consumed; at most one commit
   * is in flight, and offsets of batches flushed meanwhile go into the next one. Either way only offsets of flushed
   * batches are committed, and revocation and shutdown wait for every commit.
   */
  waitForCommit?: boolean;
  /** Attempts after a failed commit that may succeed when repeated (`canRetry`). Default 3, 1 s apart. */
  commitRetries?: number;
  commitRetryDelayMs?: number;
  /** Called with the metrics of every flushed batch. */
  onBatch?: (metrics: BatchMetrics) => void;
  /** Prometheus metrics (see `PrometheusBatchMetrics`); on by default in a registry of the consumer's own. */
  prometheus?: PrometheusOptions | false;
  /** A summary line at info level at most this often (ms of the clock). Default 60 000; each batch logs at debug. */
  logSummaryIntervalMs?: number;
  /** Stops the consumer (like `stop()`) when aborted. */
  signal?: AbortSignal;
  clock?: Clock;
  logger?: Logger;
}

const EMPTY_TOTALS = (): BatchTotals => ({
  batches: 0,
  messages: 0,
  values: 0,
  skipped: 0,
  deadLettered: 0,
  processTimeMs: 0,
  flushTimeMs: 0,
  commits: 0,
});

/**
 * `batching_kafka_consumer` on any sluice transport (spec §7): consumes records, hands each to the worker, batches
 * the results, and flushes when the batch holds `maxBatchSize` values or `maxBatchTimeMs` passed since its first
 * message. Offsets are committed (explicitly, as next offsets) only after `flushBatch` succeeded, also when every
 * record was skipped. Revocation force-flushes. At-least-once: a crash before a commit re-delivers the batch.
 *
 * Loop (`runOnce`, as upstream `_run_once`): flush if ready, then poll, then handle the records, checking
 * readiness again before each further record of the poll, so a batch never exceeds `maxBatchSize`.
 */
export class BatchingConsumer<T> {
  readonly consumer: Consumer;
  /** The Prometheus registry holding this consumer's metrics (undefined with `prometheus: false`). */
  readonly registry: Registry | undefined;
  /** Totals since start. */
  readonly totals: BatchTotals = EMPTY_TOTALS();
  /** Metrics of the last flushed batch. */
  lastBatch: BatchMetrics | undefined;

  readonly #o: BatchingConsumerOptions<T>;
  readonly #worker: Worker<T>;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #prom: PrometheusBatchMetrics | undefined;
  readonly #mutex = new Mutex();
  readonly #pollTimeoutMs: number;
  readonly #summaryEveryMs: number;
  // the batch
  #results: T[] = [];
  #processed = 0;
  #skipped = 0;
  #deadLettered = 0;
  #processTimeMs = 0;
  #deadline: number | undefined;
  #startedAt = 0;
  #offsets = new Map<string, TopicPartitionOffset>();
  #lastOffset: TopicPartitionOffset | undefined;
  // commits
  /** Offsets of flushed batches not yet sent in a commit (newer offsets replace older ones). */
  #toCommit = new Map<string, TopicPartitionOffset>();
  #commitRunning: Promise<void> | undefined;
  #commitFailure: unknown;
  // everything else
  #generation = 0;
  #revoking = new Set<string>();
  #producer: Producer | undefined;
  #stopRequested = false;
  #wakeStop: () => void = () => undefined;
  /** Resolves (with no records) when `stop()` is called, so a long poll does not delay the stop. */
  readonly #stopped = new Promise<ConsumedRecord[]>((resolve) => {
    this.#wakeStop = () => resolve([]);
  });
  #shutDown = false;
  #finished: Promise<void> | undefined;
  #summary = EMPTY_TOTALS();
  #summarySince: number;

  constructor(options: BatchingConsumerOptions<T>) {
    if (!(Number.isInteger(options.maxBatchSize) && options.maxBatchSize >= 1)) {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `BatchingConsumer maxBatchSize is ${options.maxBatchSize}; give a whole number ≥ 1 (values per batch).`,
      );
    }
    for (const [name, v] of [
      ['maxBatchTimeMs', options.maxBatchTimeMs],
      ['pollTimeoutMs', options.pollTimeoutMs],
      ['commitRetryDelayMs', options.commitRetryDelayMs],
      ['logSummaryIntervalMs', options.logSummaryIntervalMs],
    ] as const) {
      if ((v !== undefined || name === 'maxBatchTimeMs') && !(Number.isFinite(v) && v! >= 0)) {
        throw new SluiceError(
          'SLUICE_CONFIG_INVALID',
          `BatchingConsumer ${name} is ${v}; give a number of milliseconds ≥ 0.`,
        );
      }
    }
    if (options.shutdown !== undefined && options.shutdown !== 'flush' && options.shutdown !== 'drop') {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        `BatchingConsumer shutdown is ${JSON.stringify(options.shutdown)}; use 'flush' (default) or 'drop'.`,
      );
    }
    this.#o = options;
    this.#worker = options.worker;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? createLogger({ name: 'batching-consumer' });
    this.#pollTimeoutMs = options.pollTimeoutMs ?? 1000;
    this.#summaryEveryMs = options.logSummaryIntervalMs ?? 60_000;
    this.#summarySince = this.#clock.now();
    this.#prom =
      options.prometheus === false
        ? undefined
        : new PrometheusBatchMetrics(options.groupId, options.prometheus);
    this.registry = this.#prom?.registry;
    this.consumer = options.transport.consumer({
      ...options.consumer,
      groupId: options.groupId,
      topics: options.topics,
      onAssign: () => {
        this.#generation++;
      },
      onRevoke: (partitions) =>
        this.#mutex.run(async () => {
          this.#generation++;
          if (this.#shutDown) return;
          this.#revoking = keysOf(partitions);
          try {
            await this.#flush('revoke');
            await this.#drainCommits();
          } finally {
            this.#revoking = new Set();
          }
        }),
    });
    if (options.signal !== undefined) {
      if (options.signal.aborted) this.#stopRequested = true;
      else options.signal.addEventListener('abort', () => this.stop(), { once: true });
    }
  }

  /** Messages in the batch not flushed yet. */
  get pendingMessages(): number {
    return this.#processed;
  }

  /** Asks the loop to stop after the current iteration; `run()` then shuts down and resolves. */
  stop(): void {
    this.#stopRequested = true;
    this.#wakeStop();
  }

  /** Runs until `stop()` (or the signal), then shuts down (see the `shutdown` option). */
  run(): Promise<void> {
    this.#finished ??= this.#run();
    return this.#finished;
  }

  async #run(): Promise<void> {
    try {
      while (!this.#stopRequested) await this.runOnce();
    } catch (err) {
      this.#logger.error(
        { error: err instanceof Error ? err.message : String(err) },
        'batching consumer failed; the batch is not committed and will be consumed again',
      );
      this.#reset();
      this.#shutDown = true;
      await this.consumer.close().catch(() => undefined);
      await this.#producer?.close().catch(() => undefined);
      throw err;
    }
    await this.shutdown();
  }

  /** One iteration: flush if ready, poll, handle the records (public for tests and custom loops). */
  async runOnce(): Promise<void> {
    this.#throwCommitFailure();
    await this.#mutex.run(() => this.#flushIfReady());
    let timeoutMs = this.#pollTimeoutMs;
    if (this.#deadline !== undefined) {
      // wake up just after the deadline: the flush condition is `now > deadline`
      timeoutMs = Math.max(0, Math.min(timeoutMs, Math.ceil(this.#deadline - this.#clock.now()) + 1));
    }
    const generation = this.#generation;
    const records = await Promise.race([
      this.consumer.poll({
        timeoutMs,
        ...(this.#o.maxPollRecords === undefined ? {} : { maxRecords: this.#o.maxPollRecords }),
      }),
      this.#stopped,
    ]);
    // records of a poll cut short by stop() are left uncommitted: they come again after a restart
    if (records.length > 0 && !this.#stopRequested)
      await this.#mutex.run(() => this.#handle(records, generation));
  }

  async #handle(records: ConsumedRecord[], generation: number): Promise<void> {
    if (generation !== this.#generation) {
      // a rebalance happened since the poll: records of partitions no longer ours belong to their new owner
      const mine = keysOf(this.consumer.assignment());
      records = records.filter((r) => mine.has(partitionKey(r.topic, r.partition)));
    }
    for (let i = 0; i < records.length; i++) {
      if (i > 0 && this.#ready() !== undefined) await this.#flushIfReady();
      await this.#handleMessage(records[i]!);
    }
  }

  async #handleMessage(record: ConsumedRecord): Promise<void> {
    const clock = this.#clock;
    const start = clock.now();
    if (this.#deadline === undefined) {
      this.#deadline = start + this.#o.maxBatchTimeMs;
      this.#startedAt = start;
    }
    try {
      const v = this.#worker.processMessage(record);
      const value = isPromise(v) ? await v : v;
      if (value !== null) this.#results.push(value);
      else this.#skipped++;
    } catch (err) {
      if (this.#o.deadLetterTopic === undefined) throw err;
      await this.#deadLetter(record, err);
      this.#deadLettered++;
    }
    this.#processed++;
    this.#processTimeMs += clock.now() - start;
    const last = this.#lastOffset;
    if (last !== undefined && last.partition === record.partition && last.topic === record.topic) {
      last.offset = record.offset + 1;
    } else {
      const key = partitionKey(record.topic, record.partition);
      let o = this.#offsets.get(key);
      if (o === undefined) {
        o = { topic: record.topic, partition: record.partition, offset: record.offset + 1 };
        this.#offsets.set(key, o);
      } else {
        o.offset = record.offset + 1;
      }
      this.#lastOffset = o;
    }
  }

  async #deadLetter(record: ConsumedRecord, err: unknown): Promise<void> {
    this.#producer ??= this.#o.transport.producer({ autoCreateTopics: true });
    await this.#producer.send(deadLetterRecord(this.#o.deadLetterTopic!, record, err));
    this.#logger.warn(
      {
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        deadLetterTopic: this.#o.deadLetterTopic,
        error: err instanceof Error ? err.message : String(err),
      },
      'processMessage failed; record sent to the dead-letter topic',
    );
  }

  /** Why the batch should flush now, or undefined. */
  #ready(): FlushReason | undefined {
    if (this.#processed === 0) return undefined;
    if (this.#results.length >= this.#o.maxBatchSize) return 'size';
    if (this.#deadline !== undefined && this.#clock.now() > this.#deadline) return 'time';
    return undefined;
  }

  async #flushIfReady(): Promise<void> {
    const reason = this.#ready();
    if (reason !== undefined) await this.#flush(reason);
  }

  /** Flushes (whatever its state) and commits. A no-op when no message came since the last flush. */
  async #flush(reason: FlushReason): Promise<void> {
    if (this.#processed === 0) return;
    const clock = this.#clock;
    const results = this.#results;
    const flushStart = clock.now();
    if (results.length > 0) await this.#worker.flushBatch(results);
    const flushTimeMs = clock.now() - flushStart;
    const commitStart = clock.now();
    const committed = this.#stageCommit();
    if (this.#o.waitForCommit === true || reason === 'revoke' || reason === 'shutdown') {
      await this.#drainCommits();
    } else {
      this.#kickCommit();
    }
    const finishedAt = clock.now();
    const durationMs = finishedAt - this.#startedAt;
    const m: BatchMetrics = {
      reason,
      messages: this.#processed,
      batchSize: results.length,
      skipped: this.#skipped,
      deadLettered: this.#deadLettered,
      processTimeMs: this.#processTimeMs,
      processTimePerMessageMs: this.#processTimeMs / this.#processed,
      flushTimeMs,
      flushTimePerMessageMs: results.length > 0 ? flushTimeMs / results.length : 0,
      commitTimeMs: finishedAt - commitStart,
      durationMs,
      throughput: durationMs > 0 ? this.#processed / (durationMs / 1000) : 0,
      committed,
      startedAt: this.#startedAt,
      finishedAt,
    };
    this.#reset();
    this.#record(m);
  }

  /** Stages the batch's offsets for the next commit; returns them. */
  #stageCommit(): TopicPartitionOffset[] {
    const out: TopicPartitionOffset[] = [];
    for (const [k, o] of this.#offsets) {
      const c = { ...o };
      this.#toCommit.set(k, c);
      out.push(c);
    }
    return out;
  }

  /** Starts committing staged offsets in the background unless a commit is running (it picks them up next). */
  #kickCommit(): void {
    this.#throwCommitFailure();
    if (this.#commitRunning !== undefined || this.#toCommit.size === 0) return;
    this.#commitRunning = (async () => {
      try {
        while (this.#toCommit.size > 0) {
          const offsets = this.#toCommit;
          this.#toCommit = new Map();
          await this.#commitNow(offsets);
        }
      } catch (err) {
        this.#commitFailure = err;
      } finally {
        this.#commitRunning = undefined;
      }
    })();
  }

  #throwCommitFailure(): void {
    if (this.#commitFailure === undefined) return;
    const err = this.#commitFailure;
    this.#commitFailure = undefined;
    throw err;
  }

  /** Waits until every staged offset is committed (or throws the commit's error). */
  async #drainCommits(): Promise<void> {
    this.#kickCommit();
    while (this.#commitRunning !== undefined) await this.#commitRunning;
    this.#throwCommitFailure();
  }

  /** Commits offsets of partitions this member may still commit, with retries; then the commit log. */
  async #commitNow(staged: Map<string, TopicPartitionOffset>): Promise<void> {
    const mine = keysOf(this.consumer.assignment());
    const offsets: TopicPartitionOffset[] = [];
    for (const [k, o] of staged) if (mine.has(k) || this.#revoking.has(k)) offsets.push(o);
    if (offsets.length === 0) return;
    const retries = this.#o.commitRetries ?? 3;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.consumer.commit(offsets);
        break;
      } catch (err) {
        if (isSluiceError(err, 'SLUICE_REBALANCE')) {
          this.#logger.warn(
            { error: err.message },
            'commit refused: the partitions moved to another member, which consumes the batch again',
          );
          return;
        }
        if (!(isSluiceError(err) && err.canRetry) || attempt >= retries) throw err;
        this.#logger.warn({ error: err.message, attempt: attempt + 1 }, 'commit failed; retrying');
        await this.#clock.sleep(this.#o.commitRetryDelayMs ?? 1000);
      }
    }
    this.totals.commits++;
    if (this.#o.commitLogTopic !== undefined) {
      this.#producer ??= this.#o.transport.producer({ autoCreateTopics: true });
      await this.#producer.send(
        offsets.map((o) => ({
          topic: this.#o.commitLogTopic!,
          key: `${o.topic}:${o.partition}:${this.#o.groupId}`,
          value: String(o.offset),
        })),
      );
    }
  }

  #reset(): void {
    this.#results = [];
    this.#processed = 0;
    this.#skipped = 0;
    this.#deadLettered = 0;
    this.#processTimeMs = 0;
    this.#deadline = undefined;
    this.#offsets = new Map();
    this.#lastOffset = undefined;
  }

  #record(m: BatchMetrics): void {
    this.lastBatch = m;
    for (const t of [this.totals, this.#summary]) {
      t.batches++;
      t.messages += m.messages;
      t.values += m.batchSize;
      t.skipped += m.skipped;
      t.deadLettered += m.deadLettered;
      t.processTimeMs += m.processTimeMs;
      t.flushTimeMs += m.flushTimeMs;
    }
    this.#summary.commits += m.committed.length > 0 ? 1 : 0;
    this.#prom?.observe(m);
    this.#o.onBatch?.(m);
    if (this.#logger.isLevelEnabled('debug')) {
      this.#logger.debug(
        {
          reason: m.reason,
          messages: m.messages,
          batchSize: m.batchSize,
          processMsPerMessage: round(m.processTimePerMessageMs),
          flushMs: round(m.flushTimeMs),
          flushMsPerMessage: round(m.flushTimePerMessageMs),
          throughput: Math.round(m.throughput),
        },
        `batch flushed (${m.reason}): ${m.messages} messages, ${m.batchSize} values, ` +
          `process ${round(m.processTimePerMessageMs)} ms/message, flush ${round(m.flushTimeMs)} ms`,
      );
    }
    if (m.finishedAt - this.#summarySince >= this.#summaryEveryMs) this.logSummary(m.finishedAt);
  }

  /** Logs (info) what happened since the last summary, and starts a new one. */
  logSummary(now = this.#clock.now()): void {
    const s = this.#summary;
    const seconds = (now - this.#summarySince) / 1000;
    if (s.batches > 0) {
      this.#logger.info(
        {
          batches: s.batches,
          messages: s.messages,
          values: s.values,
          skipped: s.skipped,
          deadLettered: s.deadLettered,
          avgBatchSize: round(s.values / s.batches),
          processMsPerMessage: round(s.processTimeMs / Math.max(1, s.messages)),
          flushMsPerBatch: round(s.flushTimeMs / s.batches),
          throughput: Math.round(seconds > 0 ? s.messages / seconds : 0),
          seconds: round(seconds),
        },
        `${s.batches} batches, ${s.messages} messages (${s.values} values, ${s.skipped} skipped, ` +
          `${s.deadLettered} dead-lettered) in ${round(seconds)} s: avg batch ${round(s.values / s.batches)}, ` +
          `process ${round(s.processTimeMs / Math.max(1, s.messages))} ms/message, ` +
          `flush ${round(s.flushTimeMs / s.batches)} ms/batch, ` +
          `${Math.round(seconds > 0 ? s.messages / seconds : 0)} messages/s`,
      );
    }
    this.#summary = EMPTY_TOTALS();
    this.#summarySince = now;
  }

  /** Flushes or drops the pending batch (option `shutdown`), then `worker.shutdown()` and closes the consumer. */
  async shutdown(): Promise<void> {
    this.#stopRequested = true;
    if (this.#shutDown) return;
    await this.#mutex.run(async () => {
      if ((this.#o.shutdown ?? 'flush') === 'flush') await this.#flush('shutdown');
      else this.#reset();
      this.#shutDown = true;
      await this.#drainCommits();
    });
    try {
      this.logSummary();
      await this.#worker.shutdown();
    } finally {
      await this.consumer.close();
      await this.#producer?.close();
    }
  }
}

function isPromise<V>(v: V | Promise<V>): v is Promise<V> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
