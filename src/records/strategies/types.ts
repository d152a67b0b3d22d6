/**
 * The processing-strategy contract (Sentry Arroyo's model; /work/shared/spec/batching-and-strategies.md §1).
 *
 * A strategy is one step of a chain. The processor hands every consumed record to the first step with `submit`,
 * calls `poll` on every loop iteration, and at the end of an assignment calls `close` and then `join(timeout)`.
 * Each step passes its output to the next step, and the last step is always `CommitOffsets`, so an offset is
 * committed only after every earlier step finished with the message that carries it.
 */
import type { ConsumedRecord, TopicPartition, TopicPartitionOffset } from '../../transport/types.ts';

/**
 * The offsets a message makes committable once it is fully processed: per partition, the **next** offset to read
 * (a record at offset `o` commits `o + 1`). Keyed by `partitionKey(topic, partition)`.
 */
export type Committable = ReadonlyMap<string, TopicPartitionOffset>;

/**
 * The payload of a sentinel message that carries only offsets: a filtered message, a message sent to the dead
 * letter topic, or a batch of such. Every step passes sentinels on (or merges their offsets into a pending batch),
 * so offsets keep advancing when nothing passes a filter.
 */
export const FILTERED: unique symbol = Symbol.for('sluice.records.filtered');
export type Filtered = typeof FILTERED;

export interface Message<T> {
  readonly payload: T;
  readonly committable: Committable;
  /** Milliseconds since the epoch: the record's timestamp, or the last message's for a batch. */
  readonly timestamp: number;
}

/** What a step receives: its payload type, or a sentinel. */
export type MessageOf<T> = Message<T | Filtered>;

export function isFiltered<T>(message: MessageOf<T>): message is Message<Filtered> {
  return message.payload === FILTERED;
}

export interface ProcessingStrategy<T> {
  /**
   * Hands a message to the step. Must not block. May throw `MessageRejected` (backpressure: the caller retries the
   * same message later, after `poll`) or `InvalidMessage` (this message goes to the dead-letter path).
   */
  submit(message: MessageOf<T>): void;
  /** Periodic work (time-based flushes, forwarding finished async work). Must not block; may rethrow async errors. */
  poll(): void;
  /** Accept no more messages. Must not block. */
  close(): void;
  /**
   * Waits until everything submitted so far is done, passed on, and committed by the last step, or until
   * `timeoutMs` passes (undefined: no limit). Closes and joins the next step.
   */
  join(timeoutMs?: number): Promise<void>;
  /** Abandons all work now, down the chain. */
  terminate(): void;
}

/**
 * Stages offsets for committing. With `force` the processor commits everything staged right after the current
 * strategy call; otherwise its `CommitPolicy` decides when.
 */
export type CommitFn = (offsets: Committable, force?: boolean) => void;

/**
 * Builds a fresh chain for every assignment (`createWithPartitions`), with the processor's `commit` injected.
 * `shutdown` runs once when the processor stops, also after a crash.
 */
export interface ProcessingStrategyFactory<T = ConsumedRecord> {
  createWithPartitions(commit: CommitFn, partitions: TopicPartition[]): ProcessingStrategy<T>;
  shutdown?(): void | Promise<void>;
}

/**
 * Backpressure: thrown by `submit` when a step cannot take the message now. The caller keeps the message and
 * submits it again later; nothing of it was processed. Cheap to throw: no stack trace is captured.
 */
export class MessageRejected extends Error {
  constructor(message = 'the step cannot take the message now (backpressure); submit it again later') {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.name = 'MessageRejected';
  }
}

/** True for `MessageRejected`, also across module copies (matches the name, not only the class). */
export function isMessageRejected(err: unknown): err is MessageRejected {
  return err instanceof MessageRejected || (err instanceof Error && err.name === 'MessageRejected');
}

/**
 * Thrown by user code for one message that can never be processed (bad JSON, a schema violation): the processor
 * sends the record to its dead-letter topic (or, without one, stops with this error) and goes on with the next.
 */
export class InvalidMessage extends Error {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  /** The record, when the step that caught the error still had it (the dead-letter topic gets its key and value). */
  record: ConsumedRecord | undefined;

  constructor(
    at: { topic: string; partition: number; offset: number },
    reason: string,
    options: { cause?: unknown; record?: ConsumedRecord } = {},
  ) {
    super(
      `invalid message at ${at.topic}[${at.partition}]@${at.offset}: ${reason}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'InvalidMessage';
    this.topic = at.topic;
    this.partition = at.partition;
    this.offset = at.offset;
    this.record = options.record;
  }
}

export function isInvalidMessage(err: unknown): err is InvalidMessage {
  return err instanceof InvalidMessage || (err instanceof Error && err.name === 'InvalidMessage');
}
