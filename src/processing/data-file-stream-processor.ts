import { open } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { describeError } from '../errors.ts';
import type { DataFileChunk } from '../files/chunk-codec.ts';
import { keyPrefix } from '../files/chunk-key.ts';
import type { DownloadDataFile, DownloadMode } from '../files/download-data-file.ts';
import { defaultGroupId } from '../files/download-directory.ts';
import {
  CONSUMER_SUCCEEDED_COLUMNS,
  type ConsumerStatus,
  LOGS_DIR_NAME,
  processedName,
} from '../files/registry/names.ts';
import { type Row, readRegistry, writeRegistryAtomic } from '../files/registry/table.ts';
import { DataFileStreamHandler, type StreamSummary } from '../files/stream-handler.ts';
import { type HeartbeatCounter, Heartbeats, PROGRAM_COUNTERS } from '../runtime/heartbeat.ts';
import { createLogger } from '../runtime/logger.ts';
import type { ConsumedRecord, StartPosition, TopicPartition, Transport } from '../transport/types.ts';
import { Mutex } from './mutex.ts';

export type { DownloadDataFile } from '../files/download-data-file.ts';
export { Mutex } from './mutex.ts';

export const DEFAULT_CONSUMER_TOPIC = 'test';

export interface HeartbeatOptions {
  topic: string;
  /** Default: the program's class name and a hash of its output directory (stable across restarts). */
  programId?: string;
  /** Default 900 (OpenMSIStream's). */
  intervalSecs?: number;
}

export interface DataFileStreamProcessorOptions {
  transport: Transport;
  /** The topic the file chunks come from. Default `test` (OpenMSIStream's). */
  topic?: string;
  /** Where registries (`LOGS/`) and, in `disk`/`both` mode, the rebuilt files go. Default `./<ClassName>_output`. */
  outputDir?: string;
  /** `memory` (default): files are handed over as Buffers; `disk`: as files on disk, never held in memory; `both`. */
  mode?: DownloadMode;
  /**
   * Default: a stable id from the class name and the output directory, so a restart re-processes exactly the
   * files that failed or were unfinished. `create_new`: a fresh group every run (OpenMSIStream's default), which
   * re-reads the whole topic.
   */
  groupId?: string;
  /** Only files whose relative path matches are processed. */
  downloadRegex?: RegExp;
  /** Files processed at the same time (OpenMSIStream's `n_consumer_threads`). Default 2; 32 for exactly-once reproducers (their results share transactions). */
  concurrency?: number;
  logger?: Logger;
  heartbeat?: HeartbeatOptions;
  autoCreateTopic?: boolean;
  sessionTimeoutMs?: number;
}

/** Thrown (or returned) to fail a file with a specific registry status. */
export class FileFailure extends Error {
  readonly registryStatus: ConsumerStatus;
  constructor(registryStatus: ConsumerStatus, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FileFailure';
    this.registryStatus = registryStatus;
  }
}

/** One line of the success journal (and one record of an exactly-once reproducer's done topic). */
export interface DoneEntry {
  rel: string;
  hash: string;
  filename?: string;
  n_chunks?: number;
  first_message?: string;
  processed_at?: string;
}

const RERUN_STATUSES = new Set(['failed', 'computing_result_message_failed', 'producing_message_failed']);

/**
 * `DataFileStreamProcessor`: runs `processDownloadedDataFile(file, lock)` on every file rebuilt from a chunk
 * topic. A file succeeds when it returns nothing, and fails when it throws or returns an Error.
 *
 * Guarantees (with a fixed group id, the default):
 * - a file is processed once it is complete and verified; offsets never pass an unfinished or still-processing
 *   file, so a crash (even `kill -9`) loses nothing;
 * - a restart re-processes exactly the files that failed or were unfinished: successes are remembered in
 *   `LOGS/` (`processed_from_<topic>_by_<group>.csv`, and by hash in a journal) and passed over when re-read;
 *   failed files are re-read from the start of the topic, root-level files included;
 * - side effects of `processDownloadedDataFile` are at-least-once: a crash after it returns and before the
 *   success is recorded repeats it once. Make them idempotent, or use a reproducer in exactly-once mode.
 */
export abstract class DataFileStreamProcessor extends DataFileStreamHandler {
  /** Which OpenMSIStream heartbeat counters the program reports. */
  static heartbeatKind: 'processor' | 'reproducer' = 'processor';
  /** Shared by every concurrent `processDownloadedDataFile` call; sluice itself never takes it. */
  readonly lock = new Mutex();
  protected readonly processorOptions: DataFileStreamProcessorOptions;
  private readonly done = new Set<string>();
  private readonly skippedDone = new Set<string>();
  private readonly processed = new Map<string, Row>();
  private processedDirty = false;
  private journal: Promise<Awaited<ReturnType<typeof open>>> | undefined;
  private rerunPrefixes: string[] = [];
  private readonly committedAtStart = new Map<number, number>();

  constructor(options: DataFileStreamProcessorOptions) {
    const className = new.target.name;
    const outputDir = resolve(options.outputDir ?? `${className}_output`);
    const logger = options.logger ?? createLogger({ name: className });
    const groupId =
      options.groupId === undefined
        ? defaultGroupId(className, outputDir)
        : options.groupId === 'create_new'
          ? `${className}_${crypto.randomUUID()}`
          : options.groupId;
    const counters: readonly HeartbeatCounter[] = PROGRAM_COUNTERS[new.target.heartbeatKind];
    const heartbeats =
      options.heartbeat === undefined
        ? undefined
        : new Heartbeats({
            producer: options.transport.producer({ autoCreateTopics: true }),
            topic: options.heartbeat.topic,
            programId: options.heartbeat.programId ?? defaultGroupId(className, outputDir),
            intervalSecs: options.heartbeat.intervalSecs,
            counters,
            logger,
          });
    super({
      transport: options.transport,
      topic: options.topic ?? DEFAULT_CONSUMER_TOPIC,
      groupId,
      outputDir,
      mode: options.mode ?? 'memory',
      logger,
      downloadRegex: options.downloadRegex,
      heartbeats,
      autoCreateTopic: options.autoCreateTopic,
      sessionTimeoutMs: options.sessionTimeoutMs,
      processingConcurrency: options.concurrency ?? 2,
    });
    this.processorOptions = options;
    if (options.groupId === 'create_new') {
      logger.warn(
        'consumer group create_new: every run re-reads the whole topic, and a restart cannot resume. ' +
          'Leave the group unset (a stable one per output directory) or name one to get restart guarantees.',
      );
    }
  }

  /** The user's work on one rebuilt file. Return (or resolve) nothing for success; throw or return an Error to fail it. */
  protected abstract processDownloadedDataFile(
    file: DownloadDataFile,
    lock: Mutex,
  ): Promise<Error | undefined | void> | Error | undefined | void;

  /** Called after a file failed (the error thrown or returned). The file will be re-processed after a restart. */
  protected onFailedProcessing(_file: DownloadDataFile, _error: Error): void | Promise<void> {}

  get groupId(): string {
    return this.options.groupId;
  }

  get outputDir(): string {
    return this.options.outputDir;
  }

  protected get logsDir(): string {
    return join(this.options.outputDir, LOGS_DIR_NAME);
  }

  protected get processedRegistryPath(): string {
    return join(this.logsDir, processedName(this.options.topic, this.options.groupId));
  }

  /** Journal of successes by hash: the registry CSV has no hash column, and a path may carry a new version. */
  protected get journalPath(): string {
    return join(
      this.logsDir,
      `.sluice_${processedName(this.options.topic, this.options.groupId).replace(/\.csv$/, '.jsonl')}`,
    );
  }

  override async run(signal: AbortSignal): Promise<StreamSummary> {
    await this.loadDone();
    this.options.heartbeats?.start();
    try {
      return await super.run(signal);
    } finally {
      await this.options.heartbeats?.stop();
      await (await this.journal)?.close();
      this.journal = undefined;
      const s = this.summary;
      this.log.info(
        { ...s },
        `stopped: ${s.filesCompleted} file(s) processed, ${s.filesSkipped} already done, ${s.filesFailed} failed, ${s.messagesQuarantined} message(s) quarantined`,
      );
    }
  }

  /**
   * Loads what earlier runs finished. The journal is the record of truth (written, synced, before offsets may
   * pass a file); the success registry CSV is rebuilt from it when a crash left the CSV behind.
   */
  protected async loadDone(): Promise<void> {
    for (const row of await readRegistry(this.successRegistryPath(), CONSUMER_SUCCEEDED_COLUMNS)) {
      this.processed.set(String(row.rel_filepath), row);
    }
    for (const line of await readLines(this.journalPath)) {
      let e: DoneEntry;
      try {
        e = JSON.parse(line) as DoneEntry;
      } catch {
        continue; // a line cut short by a crash: that file is processed again, the safe side
      }
      this.noteDone(e);
    }
  }

  /** Takes a finished file into the done set and, if the registry lacks it, into the success registry. */
  protected noteDone(e: DoneEntry): void {
    this.done.add(`${e.rel}\u0000${e.hash}`);
    const row = this.processed.get(e.rel);
    const at = new Date(e.processed_at ?? 0);
    if (e.filename !== undefined && (row === undefined || (row.processed_at as Date) < at)) {
      this.processed.set(e.rel, {
        filename: e.filename,
        rel_filepath: e.rel,
        n_chunks: e.n_chunks ?? 0,
        first_message: new Date(e.first_message ?? e.processed_at ?? 0),
        processed_at: at,
      });
      this.processedDirty = true;
    }
  }

  /** The journal line for a finished file. */
  protected doneEntry(file: DownloadDataFile): DoneEntry {
    return {
      rel: file.relativeFilepath,
      hash: file.fileHash!.toString('hex'),
      filename: file.filename,
      n_chunks: file.nTotalChunks,
      first_message: this.firstMessageTime(file.relativeFilepath).toISOString(),
      processed_at: new Date().toISOString(),
    };
  }

  /** Remembers a finished file durably (before its offsets may be committed past). */
  protected async recordDone(file: DownloadDataFile): Promise<void> {
    const entry = this.doneEntry(file);
    // one handle, opened once even when several files finish at the same moment
    this.journal ??= open(this.journalPath, 'a');
    const handle = await this.journal;
    await handle.write(`${JSON.stringify(entry)}\n`);
    await handle.datasync();
    this.noteDone(entry);
  }

  protected isDone(relative: string, fileHash: Uint8Array): boolean {
    return this.done.has(`${relative}\u0000${Buffer.from(fileHash).toString('hex')}`);
  }

  protected override async alreadyHandled(relative: string, chunk: DataFileChunk): Promise<boolean> {
    if (!this.isDone(relative, chunk.fileHash)) return false;
    if (!this.skippedDone.has(relative)) {
      this.skippedDone.add(relative);
      this.summary.filesSkipped += 1;
      this.log.info({ file: relative }, `${relative} was processed before; its chunks are passed over`);
    }
    return true;
  }

  protected override startPosition(): StartPosition {
    const rerun = this.registryRows().filter((r) => RERUN_STATUSES.has(String(r.status)));
    this.rerunPrefixes = rerun.map((r) => {
      const rel = String(r.rel_filepath);
      const dir = dirname(rel);
      return `${keyPrefix(dir === '.' ? '' : dir, basename(rel))}_`;
    });
    if (rerun.length === 0) return 'committed';
    this.log.info(
      { files: rerun.map((r) => r.rel_filepath) },
      `re-reading the topic from the start for ${rerun.length} file(s) that failed in an earlier run`,
    );
    return 'earliest';
  }

  protected override async onAssigned(partitions: TopicPartition[]): Promise<void> {
    if (this.rerunPrefixes.length === 0) return;
    const committed = await this.activeConsumer!.committed(partitions);
    partitions.forEach((p, i) => {
      const c = committed[i];
      if (c !== undefined) this.committedAtStart.set(p.partition, c);
    });
  }

  /** Below the offsets committed before the restart, only chunks of files to re-process are read. */
  protected override acceptRecord(record: ConsumedRecord): boolean {
    if (this.rerunPrefixes.length === 0) return true;
    const committed = this.committedAtStart.get(record.partition);
    if (committed === undefined || record.offset >= committed) return true;
    const key = record.key?.toString('utf8') ?? '';
    return this.rerunPrefixes.some((p) => key.startsWith(p));
  }

  protected override async onFileComplete(file: DownloadDataFile): Promise<void> {
    let outcome: Error | undefined | void;
    try {
      outcome = await this.processDownloadedDataFile(file, this.lock);
    } catch (err) {
      outcome = err instanceof Error ? err : new Error(describeError(err));
    }
    if (outcome instanceof Error) {
      try {
        await this.onFailedProcessing(file, outcome);
      } catch (err) {
        this.log.warn({ file: file.relativeFilepath, err: describeError(err) }, 'onFailedProcessing threw');
      }
      throw outcome;
    }
    await this.succeeded(file);
  }

  /** Records a success: the journal (durable), which also feeds the success registry. */
  protected async succeeded(file: DownloadDataFile): Promise<void> {
    await this.recordDone(file);
  }

  /** Successes registry path; reproducers override it with `results_produced_to_<topic>.csv`. */
  protected successRegistryPath(): string {
    return this.processedRegistryPath;
  }

  override async flushRegistry(): Promise<void> {
    await super.flushRegistry();
    if (!this.processedDirty) return;
    this.processedDirty = false;
    await writeRegistryAtomic(this.successRegistryPath(), CONSUMER_SUCCEEDED_COLUMNS, [
      ...this.processed.values(),
    ]);
  }

  /** Rows of the success registry (for tests and summaries). */
  successes(): Row[] {
    return [...this.processed.values()];
  }
}

async function readLines(path: string): Promise<string[]> {
  try {
    const handle = await open(path, 'r');
    try {
      return (await handle.readFile('utf8')).split('\n').filter((l) => l.length > 0);
    } finally {
      await handle.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
