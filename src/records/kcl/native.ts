/**
 * Native mode: KCL record processors over any sluice transport, through the transport contract only.
 *
 * The mapping:
 * | KCL | sluice |
 * |---|---|
 * | stream (`streamName`) | topic |
 * | shard | partition; `shardId` = `topic[partition]` |
 * | application (`applicationName`, the lease table) | consumer group |
 * | lease | the group's assignment of the partition to this worker |
 * | sequence number | the record's offset as a decimal string (`"0"`, `"1"`, …); sub-sequence number always 0 |
 * | partition key | the record key as UTF-8 (`""` when keyless); `data` = the value (empty for a tombstone) |
 * | checkpoint at S | commit offset S + 1 (Kafka's next-to-read convention) for the group |
 * | `initialize.sequenceNumber` | committed offset − 1 (the last checkpoint), or `TRIM_HORIZON`/`LATEST` (the initial position) when nothing is committed |
 * | lease lost | the partition is revoked (rebalance, lost membership) → `leaseLost` |
 * | graceful shutdown | `stop()`, or the end of the stream with `stopAtEnd` → `shutdownRequested` (may checkpoint) |
 * | shard end | not produced: a partition never ends in the transport model, so `shardEnded` is never called |
 *
 * Delivery is at-least-once, as with the KCL: records after the last checkpoint are delivered again to whoever
 * owns the shard next (after a restart or a rebalance). Nothing is committed implicitly, not even on revocation.
 *
 * Each shard has its own processor instance (from `processorFactory`), called one method at a time. The records of
 * one poll are handed to their shards' processors concurrently, and the next poll waits for all of them.
 * A revocation waits for the shard's call in progress (which may still checkpoint) before calling `leaseLost`;
 * after that its checkpointer always rejects (`ShutdownException`).
 *
 * Checkpointer rules (as the Java checkpointer): `checkpoint()` = the last record delivered to the shard (nothing
 * delivered yet: no-op); `checkpoint(S)` needs `lastCheckpoint ≤ S ≤ last delivered`, else
 * `IllegalArgumentException` (also for a sub-sequence number other than 0/null or a non-decimal S); one at a time
 * (`InvalidStateException`); a commit refused because the partition moved (`SLUICE_REBALANCE`,
 * `SLUICE_NOT_ASSIGNED`, `SLUICE_CLOSED`) → `ShutdownException`; any other commit failure →
 * `KinesisClientLibDependencyException` (retryable; the SluiceError is the `cause`). `ThrottlingException` is never
 * produced.
 *
 * Processor exceptions are logged and processing goes on (the batch counts as done), as amazon-kclpy and the KCL do;
 * with `fatalProcessorErrors` the worker stops at once without calling the processors again or committing, and
 * `run()` rejects with the error: a restart re-delivers from the last checkpoint.
 */
import { isSluiceError, SluiceError } from '../../errors.ts';
import { createLogger, type Logger } from '../../runtime/logger.ts';
import type { ConsumedRecord, Consumer, TopicPartition, Transport } from '../../transport/types.ts';
import { toRecordProcessor } from './adapters.ts';
import { CheckpointError } from './errors.ts';
import { isSequenceNumber, nativeRecord } from './records.ts';
import type { AnyRecordProcessor, Checkpointer, RecordProcessor } from './types.ts';

export interface ShardInfo {
  /** `topic[partition]`. */
  shardId: string;
  topic: string;
  partition: number;
}

export interface KclWorkerOptions {
  transport: Transport;
  /** The topic to process (the KCL's stream). */
  streamName: string;
  /** The consumer group (the KCL's application name, which names its lease table). */
  applicationName: string;
  /** Makes the processor of a newly leased shard (one instance per shard, as the KCL's processor factory). */
  processorFactory: (shard: ShardInfo) => AnyRecordProcessor;
  /** Where a shard without a checkpoint starts. Default `TRIM_HORIZON` (the oldest record). */
  initialPositionInStream?: 'TRIM_HORIZON' | 'LATEST';
  /** Most records per `processRecords` batch (the KCL's `maxRecords`). Default 500. */
  maxRecords?: number;
  /** How long one poll waits for records; also bounds how long `stop()` waits for a poll in progress. Default 1000 ms. */
  pollTimeoutMs?: number;
  /** Stop gracefully (`shutdownRequested` on every shard) once every leased shard is read to its end. */
  stopAtEnd?: boolean;
  /** A processor exception stops the worker and rejects `run()` (default: log and go on). */
  fatalProcessorErrors?: boolean;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  logger?: Logger;
}

type ShardState = 'new' | 'ready' | 'finished';

class Shard {
  readonly info: ShardInfo;
  state: ShardState = 'new';
  processor: RecordProcessor | undefined;
  /** The call in progress (initialize, processRecords, shutdownRequested). */
  busy: Promise<void> | undefined;
  leaseLost = false;
  /** Offset of the last checkpointed record (null: none yet). */
  lastCheckpoint: bigint | null = null;
  /** Offset of the last record delivered to the processor (null: none yet). */
  largestPermitted: bigint | null = null;
  /** Where reading started (the committed offset, or undefined when the initial position applied). */
  startOffset: number | undefined;
  readonly checkpointer: NativeCheckpointer;

  constructor(info: ShardInfo, worker: KclWorker) {
    this.info = info;
    this.checkpointer = new NativeCheckpointer(this, worker);
  }
}

class NativeCheckpointer implements Checkpointer {
  #pending = false;
  readonly #shard: Shard;
  readonly #worker: KclWorker;

  constructor(shard: Shard, worker: KclWorker) {
    this.#shard = shard;
    this.#worker = worker;
  }

  async checkpoint(
    sequenceNumber?: string | bigint | null,
    subSequenceNumber?: number | null,
  ): Promise<void> {
    const shard = this.#shard;
    if (shard.leaseLost) {
      throw new CheckpointError(
        'ShutdownException',
        `Checkpointing ${shard.info.shardId} is not allowed: the lease is lost (the partition was revoked).`,
      );
    }
    if (this.#pending) {
      throw new CheckpointError(
        'InvalidStateException',
        'Cannot checkpoint while another checkpoint is already in progress: await the first one.',
      );
    }
    if (subSequenceNumber !== undefined && subSequenceNumber !== null && subSequenceNumber !== 0) {
      throw new CheckpointError(
        'IllegalArgumentException',
        `Cannot checkpoint at sub-sequence ${subSequenceNumber}: native records are never aggregated (sub-sequence 0).`,
      );
    }
    let target: bigint;
    if (sequenceNumber === undefined || sequenceNumber === null) {
      if (shard.largestPermitted === null) return; // nothing delivered: the checkpoint stays where it is
      target = shard.largestPermitted;
    } else {
      const s = typeof sequenceNumber === 'bigint' ? sequenceNumber.toString() : sequenceNumber;
      if (!isSequenceNumber(s)) {
        throw new CheckpointError(
          'IllegalArgumentException',
          `Cannot checkpoint ${shard.info.shardId} at ${JSON.stringify(s)}: a sequence number is the decimal offset ` +
            'of a delivered record.',
        );
      }
      target = BigInt(s);
      if (shard.largestPermitted === null || target > shard.largestPermitted) {
        throw new CheckpointError(
          'IllegalArgumentException',
          `Cannot checkpoint ${shard.info.shardId} at ${s}: beyond the last record delivered ` +
            `(${shard.largestPermitted ?? 'none yet'}).`,
        );
      }
      if (shard.lastCheckpoint !== null && target < shard.lastCheckpoint) {
        throw new CheckpointError(
          'IllegalArgumentException',
          `Cannot checkpoint ${shard.info.shardId} at ${s}: before the last checkpoint (${shard.lastCheckpoint}).`,
        );
      }
    }
    this.#pending = true;
    try {
      await this.#worker.commitCheckpoint(shard, target);
    } finally {
      this.#pending = false;
    }
  }
}

const tpKey = (topic: string, partition: number): string => `${partition}\u0000${topic}`;

export class KclWorker {
  readonly #options: KclWorkerOptions;
  readonly #logger: Logger;
  readonly #shards = new Map<string, Shard>();
  #consumer: Consumer | undefined;
  #stopping = false;
  #failure: unknown;
  #running: Promise<void> | undefined;

  constructor(options: KclWorkerOptions) {
    for (const key of ['streamName', 'applicationName'] as const) {
      if (typeof options[key] !== 'string' || options[key].length === 0) {
        throw new SluiceError('SLUICE_CONFIG_INVALID', `KclWorker needs ${key} (a non-empty string).`);
      }
    }
    if (typeof options.processorFactory !== 'function') {
      throw new SluiceError(
        'SLUICE_CONFIG_INVALID',
        'KclWorker needs processorFactory: a function that returns a record processor for a shard.',
      );
    }
    this.#options = options;
    this.#logger = options.logger ?? createLogger({ name: 'kcl-worker' });
  }

  /** The shards this worker currently processes (initialized, lease held). */
  shards(): ShardInfo[] {
    return [...this.#shards.values()]
      .filter((s) => s.state === 'ready')
      .map((s) => s.info)
      .sort((a, b) => a.partition - b.partition);
  }

  /**
   * Runs until `stop()` (or the end of the stream with `stopAtEnd`). Resolves after the graceful shutdown; rejects
   * when the transport fails, or with a processor's error under `fatalProcessorErrors`. Call it once.
   */
  run(): Promise<void> {
    if (this.#running !== undefined) throw new Error('KclWorker.run() was called twice');
    this.#running = this.#loop();
    return this.#running;
  }

  /**
   * Stops gracefully: waits for the poll and the calls in progress, calls `shutdownRequested` on every shard (which
   * may checkpoint), then leaves the group. Resolves when `run()` has finished. Inside a processor method, call it
   * without awaiting it (it waits for that very method).
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running?.catch(() => undefined);
  }

  async #loop(): Promise<void> {
    const o = this.#options;
    const consumer = o.transport.consumer({
      groupId: o.applicationName,
      topics: [o.streamName],
      start: 'committed',
      resetTo: o.initialPositionInStream === 'LATEST' ? 'latest' : 'earliest',
      maxPollRecords: o.maxRecords,
      sessionTimeoutMs: o.sessionTimeoutMs,
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      onAssign: (partitions) => this.#onAssign(partitions),
      onRevoke: (partitions) => this.#onRevoke(partitions),
    });
    this.#consumer = consumer;
    let graceful = false;
    try {
      while (!this.#stopping && this.#failure === undefined) {
        const records = await consumer.poll({ timeoutMs: o.pollTimeoutMs ?? 1000 });
        await this.#initializeNew();
        if (records.length > 0) await this.#dispatch(records);
        else if (o.stopAtEnd && this.#failure === undefined && (await this.#caughtUp()))
          this.#stopping = true;
      }
      if (this.#failure === undefined) {
        graceful = true;
        await this.#shutdownAll();
      }
    } catch (err) {
      this.#failure ??= err;
    } finally {
      if (!graceful) {
        // a crash-like stop: no more processor calls, no commits
        for (const s of this.#shards.values()) s.state = 'finished';
      }
      try {
        await consumer.close();
      } catch (err) {
        this.#failure ??= err;
      }
      this.#shards.clear();
    }
    if (this.#failure !== undefined) throw this.#failure;
  }

  #onAssign(partitions: TopicPartition[]): void {
    for (const p of partitions) {
      const key = tpKey(p.topic, p.partition);
      if (this.#shards.has(key)) continue;
      const info = { shardId: `${p.topic}[${p.partition}]`, topic: p.topic, partition: p.partition };
      this.#shards.set(key, new Shard(info, this));
    }
  }

  async #onRevoke(partitions: TopicPartition[]): Promise<void> {
    await Promise.all(
      partitions.map(async (p) => {
        const key = tpKey(p.topic, p.partition);
        const shard = this.#shards.get(key);
        if (shard === undefined) return;
        const wasInitialized = shard.state !== 'new' || shard.busy !== undefined;
        const finished = shard.state === 'finished';
        shard.state = 'finished';
        await shard.busy?.catch(() => undefined);
        shard.leaseLost = true;
        this.#shards.delete(key);
        if (finished || !wasInitialized || shard.processor === undefined) return;
        this.#logger.info({ shardId: shard.info.shardId }, 'kcl: lease lost (partition revoked)');
        await this.#call(shard, 'leaseLost', () => shard.processor!.leaseLost({}));
      }),
    );
  }

  /** Calls a processor method; logs an exception, or records it as the worker's failure when fatal. */
  async #call(shard: Shard, method: string, fn: () => unknown): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.#logger.error(
        { shardId: shard.info.shardId, err },
        `kcl: the record processor threw in ${method}${this.#options.fatalProcessorErrors ? '; stopping (fatalProcessorErrors)' : '; going on'}`,
      );
      if (this.#options.fatalProcessorErrors) {
        this.#failure ??= err;
        for (const s of this.#shards.values()) s.state = 'finished';
      }
    }
  }

  async #initializeNew(): Promise<void> {
    const fresh = [...this.#shards.values()].filter((s) => s.state === 'new' && s.busy === undefined);
    if (fresh.length === 0) return;
    const consumer = this.#consumer!;
    const committed = await consumer.committed(
      fresh.map((s) => ({ topic: s.info.topic, partition: s.info.partition })),
    );
    await Promise.all(
      fresh.map((shard, i) => {
        if (shard.state !== 'new') return undefined; // revoked meanwhile
        const c = committed[i];
        shard.startOffset = c;
        let sequenceNumber: string;
        if (c !== undefined && c > 0) {
          shard.lastCheckpoint = BigInt(c - 1);
          sequenceNumber = String(c - 1);
        } else {
          sequenceNumber = this.#options.initialPositionInStream ?? 'TRIM_HORIZON';
        }
        shard.processor = toRecordProcessor(this.#options.processorFactory(shard.info));
        const processor = shard.processor;
        this.#logger.info({ shardId: shard.info.shardId, sequenceNumber }, 'kcl: initializing shard');
        shard.busy = this.#call(shard, 'initialize', () =>
          processor.initialize({ shardId: shard.info.shardId, sequenceNumber, subSequenceNumber: 0 }),
        ).finally(() => {
          shard.busy = undefined;
          if (shard.state === 'new') shard.state = 'ready';
        });
        return shard.busy;
      }),
    );
  }

  async #dispatch(records: ConsumedRecord[]): Promise<void> {
    const groups = new Map<string, ConsumedRecord[]>();
    for (const r of records) {
      const key = tpKey(r.topic, r.partition);
      const g = groups.get(key);
      if (g === undefined) groups.set(key, [r]);
      else g.push(r);
    }
    const calls: Promise<void>[] = [];
    for (const [key, group] of groups) {
      const shard = this.#shards.get(key);
      // revoked since the poll (the new owner reads these again), or never initialized: drop them
      if (shard === undefined || shard.state !== 'ready' || shard.busy !== undefined) continue;
      const last = group[group.length - 1]!;
      shard.largestPermitted = BigInt(last.offset);
      const processor = shard.processor!;
      const input = {
        records: group.map(nativeRecord),
        millisBehindLatest: Math.max(0, Date.now() - last.timestamp),
        checkpointer: shard.checkpointer,
      };
      shard.busy = this.#call(shard, 'processRecords', () => processor.processRecords(input)).finally(() => {
        shard.busy = undefined;
      });
      calls.push(shard.busy);
    }
    await Promise.all(calls);
  }

  /** True when this worker holds at least one shard and has delivered every record of each. */
  async #caughtUp(): Promise<boolean> {
    const shards = [...this.#shards.values()];
    if (shards.length === 0 || shards.some((s) => s.state !== 'ready')) return false;
    const d = await this.#options.transport.describeTopic(this.#options.streamName);
    return shards.every((s) => {
      const end = d.partitions.find((p) => p.partition === s.info.partition)?.endOffset ?? 0;
      if (s.largestPermitted !== null) return s.largestPermitted + 1n >= BigInt(end);
      if (s.startOffset !== undefined) return s.startOffset >= end;
      // nothing committed and nothing delivered: at the end only if the initial position is the end
      return this.#options.initialPositionInStream === 'LATEST' || end === 0;
    });
  }

  async #shutdownAll(): Promise<void> {
    const shards = [...this.#shards.values()];
    await Promise.all(
      shards.map(async (shard) => {
        await shard.busy?.catch(() => undefined);
        const ready = shard.state === 'ready';
        shard.state = 'finished';
        if (!ready || shard.processor === undefined) return;
        this.#logger.info({ shardId: shard.info.shardId }, 'kcl: shutdown requested');
        const processor = shard.processor;
        shard.busy = this.#call(shard, 'shutdownRequested', () =>
          processor.shutdownRequested?.({ checkpointer: shard.checkpointer }),
        );
        await shard.busy;
        shard.busy = undefined;
      }),
    );
  }

  /** Commits a checkpoint for the shard (used by its checkpointer). */
  async commitCheckpoint(shard: Shard, sequence: bigint): Promise<void> {
    const consumer = this.#consumer!;
    const offset = Number(sequence + 1n);
    try {
      await consumer.commit([{ topic: shard.info.topic, partition: shard.info.partition, offset }]);
    } catch (err) {
      if (
        isSluiceError(err, 'SLUICE_REBALANCE') ||
        isSluiceError(err, 'SLUICE_NOT_ASSIGNED') ||
        isSluiceError(err, 'SLUICE_CLOSED')
      ) {
        throw new CheckpointError(
          'ShutdownException',
          `Cannot checkpoint ${shard.info.shardId}: this worker no longer owns the partition (${(err as Error).message})`,
          { cause: err },
        );
      }
      throw new CheckpointError(
        'KinesisClientLibDependencyException',
        `Checkpointing ${shard.info.shardId} failed in the transport; retry with backoff (${(err as Error).message})`,
        { cause: err },
      );
    }
    if (shard.lastCheckpoint === null || sequence > shard.lastCheckpoint) shard.lastCheckpoint = sequence;
    this.#logger.debug({ shardId: shard.info.shardId, sequenceNumber: String(sequence) }, 'kcl: checkpoint');
  }
}
