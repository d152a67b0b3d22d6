import { Counter, exponentialBuckets, Gauge, Histogram, type Metric, Registry } from 'prom-client';
import type { TopicPartitionOffset } from '../../transport/types.ts';

/** Why a batch was flushed. */
export type FlushReason = 'size' | 'time' | 'revoke' | 'shutdown';

/**
 * What one flush measured (the seed's per-batch timings). Times are milliseconds of the consumer's clock.
 */
export interface BatchMetrics {
  reason: FlushReason;
  /** Messages consumed into this batch (processed, skipped and dead-lettered alike). */
  messages: number;
  /** Values passed to `flushBatch` (messages whose `processMessage` returned non-null). */
  batchSize: number;
  /** Messages for which `processMessage` returned null. */
  skipped: number;
  /** Messages sent to the dead-letter topic. */
  deadLettered: number;
  /** Time spent in `processMessage`, all messages (not counting waits for new messages). */
  processTimeMs: number;
  /** `processTimeMs / messages`. */
  processTimePerMessageMs: number;
  /** Time spent in `flushBatch` (0 when the batch had no values). */
  flushTimeMs: number;
  /** `flushTimeMs / batchSize` (0 for an empty batch). */
  flushTimePerMessageMs: number;
  /** Time the flush waited for commits (0 when its commit runs in the background). */
  commitTimeMs: number;
  /** From the first message of the batch to the end of its flush (and commit, when waited for). */
  durationMs: number;
  /** `messages` per second of `durationMs` (0 when no time passed). */
  throughput: number;
  /** The offsets this batch commits (next offsets). */
  committed: TopicPartitionOffset[];
  /** Clock time of the first message and of the end of the flush. */
  startedAt: number;
  finishedAt: number;
}

/** Running totals since the consumer started. */
export interface BatchTotals {
  batches: number;
  messages: number;
  values: number;
  skipped: number;
  deadLettered: number;
  processTimeMs: number;
  flushTimeMs: number;
  commits: number;
}

export interface PrometheusOptions {
  /** Where the metrics are registered. Default: a registry of this consumer's own (`consumer.registry`). */
  registry?: Registry;
  /** Metric name prefix. Default `sluice_`. */
  prefix?: string;
}

/**
 * The per-batch metrics as Prometheus metrics, labelled by consumer group. Consumers sharing a registry share the
 * metric objects (one time series per group).
 *
 * | metric | type | what |
 * |---|---|---|
 * | `<p>batches_total{group,reason}` | counter | flushes, by reason |
 * | `<p>batch_messages_total{group}` | counter | messages consumed into batches |
 * | `<p>batch_skipped_total{group}` | counter | messages `processMessage` skipped (null) |
 * | `<p>batch_dead_letters_total{group}` | counter | messages sent to the dead-letter topic |
 * | `<p>batch_size{group}` | histogram | values per flushed batch |
 * | `<p>batch_process_seconds_per_message{group}` | histogram | `processMessage` time per message, per batch |
 * | `<p>batch_flush_seconds{group}` | histogram | `flushBatch` time per batch |
 * | `<p>batch_flush_seconds_per_message{group}` | histogram | `flushBatch` time per value, per batch |
 * | `<p>batch_throughput_messages_per_second{group}` | gauge | throughput of the last batch |
 */
export class PrometheusBatchMetrics {
  readonly registry: Registry;
  readonly #group: string;
  readonly #batches: Counter<'group' | 'reason'>;
  readonly #messages: Counter<'group'>;
  readonly #skipped: Counter<'group'>;
  readonly #deadLetters: Counter<'group'>;
  readonly #size: Histogram<'group'>;
  readonly #process: Histogram<'group'>;
  readonly #flush: Histogram<'group'>;
  readonly #flushPer: Histogram<'group'>;
  readonly #throughput: Gauge<'group'>;

  constructor(group: string, options: PrometheusOptions = {}) {
    this.registry = options.registry ?? new Registry();
    this.#group = group;
    const p = options.prefix ?? 'sluice_';
    const registers = [this.registry];
    const get = <M extends Metric>(name: string, make: () => M): M =>
      (this.registry.getSingleMetric(name) as M | undefined) ?? make();
    this.#batches = get(
      `${p}batches_total`,
      () =>
        new Counter({
          name: `${p}batches_total`,
          help: 'Batches flushed by the batching consumer, by reason (size, time, revoke, shutdown)',
          labelNames: ['group', 'reason'],
          registers,
        }),
    );
    const counter = (name: string, help: string): Counter<'group'> =>
      get(`${p}${name}`, () => new Counter({ name: `${p}${name}`, help, labelNames: ['group'], registers }));
    this.#messages = counter('batch_messages_total', 'Messages consumed into batches');
    this.#skipped = counter(
      'batch_skipped_total',
      'Messages the worker skipped (processMessage returned null)',
    );
    this.#deadLetters = counter('batch_dead_letters_total', 'Messages sent to the dead-letter topic');
    const histogram = (name: string, help: string, buckets: number[]): Histogram<'group'> =>
      get(
        `${p}${name}`,
        () => new Histogram({ name: `${p}${name}`, help, labelNames: ['group'], buckets, registers }),
      );
    this.#size = histogram('batch_size', 'Values per flushed batch', exponentialBuckets(1, 4, 10));
    this.#process = histogram(
      'batch_process_seconds_per_message',
      'processMessage time per message, averaged over each batch',
      exponentialBuckets(1e-6, 4, 12),
    );
    this.#flush = histogram(
      'batch_flush_seconds',
      'flushBatch time per batch',
      exponentialBuckets(1e-4, 4, 12),
    );
    this.#flushPer = histogram(
      'batch_flush_seconds_per_message',
      'flushBatch time per flushed value, per batch',
      exponentialBuckets(1e-6, 4, 12),
    );
    this.#throughput = get(
      `${p}batch_throughput_messages_per_second`,
      () =>
        new Gauge({
          name: `${p}batch_throughput_messages_per_second`,
          help: 'Messages per second over the last batch (first message to commit)',
          labelNames: ['group'],
          registers,
        }),
    );
  }

  observe(m: BatchMetrics): void {
    const g = { group: this.#group };
    this.#batches.inc({ group: this.#group, reason: m.reason });
    this.#messages.inc(g, m.messages);
    if (m.skipped > 0) this.#skipped.inc(g, m.skipped);
    if (m.deadLettered > 0) this.#deadLetters.inc(g, m.deadLettered);
    this.#size.observe(g, m.batchSize);
    this.#process.observe(g, m.processTimePerMessageMs / 1000);
    if (m.batchSize > 0) {
      this.#flush.observe(g, m.flushTimeMs / 1000);
      this.#flushPer.observe(g, m.flushTimePerMessageMs / 1000);
    }
    this.#throughput.set(g, m.throughput);
  }
}
