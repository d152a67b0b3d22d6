import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describeError, SluiceError } from '../errors.ts';
import { resultKey } from '../files/chunk-key.ts';
import type { DownloadDataFile } from '../files/download-data-file.ts';
import { resultsProducedName } from '../files/registry/names.ts';
import type { StreamSummary } from '../files/stream-handler.ts';
import type { HeaderValue, ProduceRecord, Producer, RecordMetadata } from '../transport/types.ts';
import {
  DataFileStreamProcessor,
  type DataFileStreamProcessorOptions,
  type DoneEntry,
  FileFailure,
  type Mutex,
} from './data-file-stream-processor.ts';

/** The message a reproducer computes for one file. */
export class ReproducerMessage {
  readonly key: string | Buffer;
  readonly value: string | Buffer;
  readonly headers: Record<string, HeaderValue> | undefined;
  /** Called once the message is delivered (or finally fails). */
  readonly callback: ((error: Error | undefined, metadata: RecordMetadata | undefined) => void) | undefined;

  constructor(
    key: string | Buffer,
    value: string | Buffer,
    headers?: Record<string, HeaderValue>,
    callback?: (error: Error | undefined, metadata: RecordMetadata | undefined) => void,
  ) {
    this.key = key;
    this.value = value;
    this.headers = headers;
    this.callback = callback;
  }
}

export interface DataFileStreamReproducerOptions extends DataFileStreamProcessorOptions {
  /** Where the result messages go. */
  producerTopic: string;
  /**
   * Exactly-once: each file's result message, the offsets of its chunks and the record that it is done commit in
   * one atomic step (a Kafka transaction; one SQLite transaction on the embedded broker), so a crash at any point
   * leaves each result exactly once on the output topic, as a `read_committed` consumer sees it. Default false
   * (at-least-once: a crash between delivery and the success record repeats a result; make sinks idempotent).
   */
  exactlyOnce?: boolean;
  /** Stable id for exactly-once producers (fences a zombie predecessor). Default: derived from the group. */
  transactionalId?: string;
  /** Delivery attempts of one result before the file is registered `producing_message_failed`. Default 5. */
  deliveryAttempts?: number;
}

/** Topic that records, per group, which files an exactly-once reproducer has finished. */
export function doneTopicName(consumerTopic: string, groupId: string): string {
  const clean = (s: string): string => s.replace(/[^a-zA-Z0-9._-]/g, '_').slice(0, 80);
  const digest = createHash('sha256').update(`${consumerTopic}\u0000${groupId}`).digest('hex').slice(0, 10);
  return `sluice-done.${clean(consumerTopic)}.${clean(groupId)}.${digest}`;
}

/**
 * `DataFileStreamReproducer`: computes one result message per rebuilt file with
 * `getProcessingResultMessageForFile(file, lock)` and produces it to `producerTopic`. A null result or a throw
 * registers the file `computing_result_message_failed` (re-processed after a restart); nothing crashes. Result
 * keys default to OpenMSIStream's `<subdir>_<file>_chunk_processing_result`.
 */
export abstract class DataFileStreamReproducer extends DataFileStreamProcessor {
  static override heartbeatKind: 'processor' | 'reproducer' = 'reproducer';
  protected readonly reproducerOptions: DataFileStreamReproducerOptions;
  private producer: Producer | undefined;

  constructor(options: DataFileStreamReproducerOptions) {
    // exactly-once results wait for a shared transaction: more files in flight means more of them per transaction
    // (on Kafka: 8 → ~200 files/s, 32 → ~490). In memory mode each file in flight is held in memory until its
    // transaction commits; use disk mode, or a lower concurrency, for very large files.
    super({ ...options, concurrency: options.concurrency ?? (options.exactlyOnce === true ? 32 : 2) });
    this.reproducerOptions = options;
  }

  protected abstract getProcessingResultMessageForFile(
    file: DownloadDataFile,
    lock: Mutex,
  ): Promise<ReproducerMessage | null | undefined> | ReproducerMessage | null | undefined;

  get producerTopic(): string {
    return this.reproducerOptions.producerTopic;
  }

  get exactlyOnce(): boolean {
    return this.reproducerOptions.exactlyOnce === true;
  }

  protected override successRegistryPath(): string {
    return join(this.logsDir, resultsProducedName(this.producerTopic));
  }

  override async run(signal: AbortSignal): Promise<StreamSummary> {
    const t = this.options.transport;
    if (this.exactlyOnce && !t.capabilities.atomicProduceCommit) {
      throw new SluiceError(
        'SLUICE_UNSUPPORTED',
        `The ${t.kind} transport cannot commit a result and its input offsets atomically, so exactly-once mode is ` +
          'not available on it. Use the embedded broker or Kafka, or run at-least-once (exactlyOnce: false).',
      );
    }
    this.producer = t.producer({
      autoCreateTopics: this.options.autoCreateTopic,
      transactionalId: this.exactlyOnce
        ? (this.reproducerOptions.transactionalId ?? `sluice-${this.options.groupId}`)
        : undefined,
    });
    try {
      return await super.run(signal);
    } finally {
      await this.producer.close();
      this.producer = undefined;
    }
  }

  /** Exactly-once: what is done lives in a topic written in the same transactions as the results. */
  protected override async loadDone(): Promise<void> {
    await super.loadDone();
    if (!this.exactlyOnce) return;
    const t = this.options.transport;
    const topic = doneTopicName(this.options.topic, this.options.groupId);
    await t.createTopic({ name: topic, partitions: 1 }, { ifNotExists: true });
    const end = (await t.describeTopic(topic)).partitions[0]!.endOffset;
    if (end === 0) return;
    const reader = t.consumer({
      groupId: `${this.options.groupId}.done-reader.${crypto.randomUUID()}`,
      topics: [topic],
      start: 'earliest',
      isolation: 'read_committed',
    });
    try {
      await reader.waitForAssignment(30_000);
      // nothing else writes this topic while we start; read_committed skips aborted records, and transaction
      // markers take offsets too, so stop at the end offset or once the reader has nothing more to give
      let position = 0;
      let idle = 0;
      while (position < end && idle < 2) {
        const batch = await reader.poll({ timeoutMs: 1000 });
        idle = batch.length === 0 ? idle + 1 : 0;
        for (const r of batch) {
          position = r.offset + 1;
          const e = JSON.parse(r.value?.toString('utf8') ?? '{}') as Partial<DoneEntry>;
          if (e.rel !== undefined && e.hash !== undefined) this.noteDone(e as DoneEntry);
        }
      }
    } finally {
      await reader.close();
    }
  }

  protected override async processDownloadedDataFile(file: DownloadDataFile, lock: Mutex): Promise<void> {
    let message: ReproducerMessage | null | undefined;
    try {
      message = await this.getProcessingResultMessageForFile(file, lock);
    } catch (err) {
      this.log.warn(
        { file: file.relativeFilepath, err: describeError(err) },
        `computing the result for ${file.relativeFilepath} threw`,
      );
      message = null;
    }
    if (message === null || message === undefined) {
      this.log.warn(
        { file: file.relativeFilepath },
        `no result message for ${file.relativeFilepath}: registered computing_result_message_failed; it is processed again after a restart`,
      );
      throw new FileFailure(
        'computing_result_message_failed',
        `getProcessingResultMessageForFile returned nothing for ${file.relativeFilepath}`,
      );
    }
    const record: ProduceRecord = {
      topic: this.producerTopic,
      key: message.key,
      value: message.value,
      headers: message.headers,
    };
    const attempts = this.reproducerOptions.deliveryAttempts ?? 5;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const meta = this.exactlyOnce
          ? await this.produceExactlyOnce(record, file)
          : await this.producer!.send(record);
        this.options.heartbeats?.add('n_messages_produced');
        this.options.heartbeats?.add(
          'n_bytes_produced',
          Buffer.byteLength(message.key as string | Buffer) +
            Buffer.byteLength(message.value as string | Buffer),
        );
        message.callback?.(undefined, meta[0]);
        return;
      } catch (err) {
        lastError = err;
        const code = (err as { code?: string }).code;
        const retryable =
          (err as { canRetry?: boolean }).canRetry === true ||
          code === 'SLUICE_DELIVERY_FAILED' ||
          code === 'SLUICE_TIMEOUT' ||
          code === 'SLUICE_BROKER_UNREACHABLE';
        this.log.warn(
          { file: file.relativeFilepath, attempt, err: describeError(err) },
          `producing the result for ${file.relativeFilepath} failed (attempt ${attempt} of ${attempts})`,
        );
        if (!retryable || attempt === attempts) break;
        await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
      }
    }
    const error = lastError instanceof Error ? lastError : new Error(describeError(lastError));
    message.callback?.(error, undefined);
    throw new FileFailure(
      'producing_message_failed',
      `could not produce the result for ${file.relativeFilepath}: ${describeError(lastError)}`,
      { cause: lastError },
    );
  }

  /**
   * The result, the "done" record and the group's safe offsets, in one atomic step. Group commit: results that
   * finish while a transaction is open wait and go together into the next one, so the per-transaction round
   * trips are shared (one transaction per file capped Kafka at a few dozen files a second).
   */
  private produceExactlyOnce(record: ProduceRecord, file: DownloadDataFile): Promise<RecordMetadata[]> {
    return new Promise((resolve, reject) => {
      this.pendingTx.push({ record, file, resolve, reject });
      if (!this.txRunning) void this.runTransactions();
    });
  }

  private readonly pendingTx: Array<{
    record: ProduceRecord;
    file: DownloadDataFile;
    resolve: (meta: RecordMetadata[]) => void;
    reject: (err: unknown) => void;
  }> = [];
  private txRunning = false;

  private async runTransactions(): Promise<void> {
    this.txRunning = true;
    try {
      while (this.pendingTx.length > 0) {
        const batch = this.pendingTx.splice(0, this.pendingTx.length);
        try {
          const consumer = this.activeConsumer;
          if (consumer === undefined)
            throw new SluiceError('SLUICE_CLOSED', 'The reproducer is not running.');
          const entries = batch.map((b) => this.doneEntry(b.file));
          const doneTopic = doneTopicName(this.options.topic, this.options.groupId);
          const records = batch.flatMap((b, i): ProduceRecord[] => [
            b.record,
            { topic: doneTopic, key: b.file.relativeFilepath, value: JSON.stringify(entries[i]) },
          ]);
          // offsets may pass the chunks of every file in this transaction, and no others
          const offsets = this.safeOffsets(undefined, new Set(batch.map((b) => b.file)));
          const meta = await this.producer!.sendAndCommit(records, consumer, offsets);
          for (const e of entries) this.noteDone(e);
          batch.forEach((b, i) => {
            b.resolve([meta[2 * i]!]);
          });
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      this.txRunning = false;
    }
  }

  /** At-least-once successes go to the local journal; exactly-once ones are already in the done topic. */
  protected override async recordDone(file: DownloadDataFile): Promise<void> {
    if (!this.exactlyOnce) await super.recordDone(file);
  }

  /** The default result key, as OpenMSIStream: `<subdir>_<file>_chunk_processing_result`. */
  protected resultKeyFor(file: DownloadDataFile): string {
    return resultKey(file.subdirStr, file.filename);
  }
}

/**
 * `MetadataJSONReproducer`: the result is the JSON of `getMetadataDictForFile(file)`, keyed as OpenMSIStream keys
 * processing results.
 */
export abstract class MetadataJSONReproducer extends DataFileStreamReproducer {
  protected abstract getMetadataDictForFile(
    file: DownloadDataFile,
  ): Promise<Record<string, unknown> | null | undefined> | Record<string, unknown> | null | undefined;

  protected override async getProcessingResultMessageForFile(
    file: DownloadDataFile,
  ): Promise<ReproducerMessage | null> {
    const dict = await this.getMetadataDictForFile(file);
    if (dict === null || dict === undefined) return null;
    return new ReproducerMessage(this.resultKeyFor(file), JSON.stringify(dict));
  }
}
