/**
 * The KCL record-processor model (Amazon Kinesis Client Library, interface v3), shared by both ways sluice runs a
 * processor:
 * - native mode (`KclWorker`, native.ts): over any sluice transport; a partition is a shard;
 * - multilang mode (`KCLProcess`, multilang.ts): as the child process of Amazon's Java MultiLangDaemon.
 *
 * The KCL calls one processor instance per shard, one method at a time, in this order:
 * `initialize`, then `processRecords` zero or more times, then exactly one of `leaseLost`, `shardEnded` or
 * `shutdownRequested` (after `shutdownRequested` the lease is released; no further call follows). Each method may
 * be async; the next call waits for it.
 */
import type { ConsumedRecord } from '../../transport/types.ts';

/** One record, as the KCL hands it over. */
export interface KclRecord {
  /** The payload, decoded from base64. */
  readonly data: Buffer;
  /** The payload as base64, as the daemon sends it (amazon-kclpy's `data`). */
  readonly base64Data: string;
  readonly partitionKey: string;
  /**
   * Decimal string, up to 128 bits on Kinesis: compare with `compareSequenceNumbers` (BigInt), never as a JS
   * number. In native mode it is the record's offset (`String(offset)`).
   */
  readonly sequenceNumber: string;
  /** > 0 only for records de-aggregated from a KPL aggregate; always 0 in native mode. */
  readonly subSequenceNumber: number;
  /** Epoch milliseconds (native mode: the record's timestamp). */
  readonly approximateArrivalTimestamp: number;
  /** Native mode only: the transport's record (topic, partition, offset, key, headers). */
  readonly source?: ConsumedRecord;
}

/**
 * Marks progress in a shard. A checkpoint at sequence number S means "every record up to and including S is
 * done": a processor that takes the shard over later starts after S.
 */
export interface Checkpointer {
  /**
   * Checkpoints at `sequenceNumber` (and `subSequenceNumber`), or, without arguments, at the end of the last
   * batch delivered (after `shardEnded`: SHARD_END). Resolves once the checkpoint is stored; rejects with a
   * `CheckpointError` whose `code` is the KCL name (`ShutdownException`, `ThrottlingException`,
   * `InvalidStateException`, `KinesisClientLibDependencyException`, `IllegalArgumentException`). One checkpoint
   * at a time: a call while another is pending rejects (`InvalidStateException`). Always rejects after
   * `leaseLost` and outside the handler that was given the checkpointer.
   */
  checkpoint(sequenceNumber?: string | bigint | null, subSequenceNumber?: number | null): Promise<void>;
}

export interface InitializeInput {
  shardId: string;
  /**
   * The last checkpoint of this shard (where processing resumes after), or a sentinel: `TRIM_HORIZON`, `LATEST`,
   * `AT_TIMESTAMP`, `SHARD_END`; `null` when the daemon sends none.
   */
  sequenceNumber: string | null;
  subSequenceNumber: number | null;
}

export interface ProcessRecordsInput {
  records: KclRecord[];
  /**
   * How far behind the tip of the stream this batch is. Multilang: the daemon's value. Native mode: the age of
   * the newest record in the batch (now − its timestamp), an approximation the transport contract allows.
   */
  millisBehindLatest: number | null;
  checkpointer: Checkpointer;
}

/** The lease was lost: another worker may already process the shard. Checkpointing is impossible. */
export type LeaseLostInput = Record<string, never>;

/** The shard ended (split/merge): the processor must checkpoint with no arguments (SHARD_END). */
export interface ShardEndedInput {
  checkpointer: Checkpointer;
}

/** The worker is shutting down gracefully: the last chance to checkpoint. */
export interface ShutdownRequestedInput {
  checkpointer: Checkpointer;
}

type MaybePromise<T> = T | Promise<T>;

/** The v3 record processor (the native interface). */
export interface RecordProcessor {
  readonly version?: 3;
  initialize(input: InitializeInput): MaybePromise<void>;
  processRecords(input: ProcessRecordsInput): MaybePromise<void>;
  leaseLost(input: LeaseLostInput): MaybePromise<void>;
  shardEnded(input: ShardEndedInput): MaybePromise<void>;
  /** Optional: when absent, nothing is done (and nothing checkpointed) on a graceful shutdown. */
  shutdownRequested?(input: ShutdownRequestedInput): MaybePromise<void>;
}

/** Why a v1/v2 processor is shut down: `TERMINATE` = the shard ended, `ZOMBIE` = the lease was lost. */
export type ShutdownReason = 'TERMINATE' | 'ZOMBIE';

export interface ShutdownInput {
  reason: ShutdownReason;
  /** For `ZOMBIE` a checkpointer that always rejects (`ShutdownException`). */
  checkpointer: Checkpointer;
}

/** amazon-kclpy's v2 interface (input objects). `leaseLost`/`shardEnded` arrive as `shutdown(reason)`. */
export interface RecordProcessorV2 {
  readonly version: 2;
  initialize(input: InitializeInput): MaybePromise<void>;
  processRecords(input: ProcessRecordsInput): MaybePromise<void>;
  shutdown(input: ShutdownInput): MaybePromise<void>;
  shutdownRequested?(input: ShutdownRequestedInput): MaybePromise<void>;
}

/** amazon-kclpy's v1 interface (positional arguments). */
export interface RecordProcessorV1 {
  readonly version: 1;
  initialize(shardId: string): MaybePromise<void>;
  processRecords(records: KclRecord[], checkpointer: Checkpointer): MaybePromise<void>;
  shutdown(checkpointer: Checkpointer, reason: ShutdownReason): MaybePromise<void>;
  shutdownRequested?(checkpointer: Checkpointer): MaybePromise<void>;
}

/** Any processor shape sluice accepts; `version` picks the adapter (absent or 3 = v3). */
export type AnyRecordProcessor = RecordProcessor | RecordProcessorV2 | RecordProcessorV1;
