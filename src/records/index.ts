/**
 * Record processing: the batching consumer (`batching_kafka_consumer`'s worker contract) and processing strategies
 * (Sentry Arroyo's model), over any sluice transport. See /work/shared/spec/batching-and-strategies.md.
 */
export {
  BatchingConsumer,
  type BatchingConsumerOptions,
  type Worker,
} from './batching/batching-consumer.ts';
export {
  type BatchMetrics,
  type BatchTotals,
  type FlushReason,
  PrometheusBatchMetrics,
  type PrometheusOptions,
} from './batching/metrics.ts';
export { type Clock, MockedClock, systemClock } from './strategies/clock.ts';
export { CommitOffsets } from './strategies/commit-offsets.ts';
export { CommitPolicy, CommitPolicyState } from './strategies/commit-policy.ts';
export { deadLetterRecord } from './strategies/dead-letter.ts';
export { Filter } from './strategies/filter.ts';
export {
  BACKPRESSURE_SLEEP_MS,
  BACKPRESSURE_THRESHOLD_MS,
  DEFAULT_JOIN_TIMEOUT_MS,
  StreamProcessor,
  type StreamProcessorOptions,
  type StreamProcessorStats,
} from './strategies/processor.ts';
export { BatchStep, Reduce, type ReduceOptions } from './strategies/reduce.ts';
export { RunTask } from './strategies/run-task.ts';
export { RunTaskConcurrently, type RunTaskConcurrentlyOptions } from './strategies/run-task-concurrently.ts';
export {
  RunTaskInWorkers,
  type RunTaskInWorkersOptions,
  WorkerPool,
  type WorkerPoolOptions,
} from './strategies/run-task-in-workers.ts';
export {
  type CommitFn,
  type Committable,
  FILTERED,
  type Filtered,
  InvalidMessage,
  isFiltered,
  isInvalidMessage,
  isMessageRejected,
  type Message,
  type MessageOf,
  MessageRejected,
  type ProcessingStrategy,
  type ProcessingStrategyFactory,
} from './strategies/types.ts';
export { committable, committableOf, messageOf, partitionKey } from './strategies/util.ts';
