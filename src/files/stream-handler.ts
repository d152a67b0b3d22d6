import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { describeError, isSluiceError, SluiceError } from '../errors.ts';
import { fsyncDirectory } from '../runtime/atomic-file.ts';
import type { Heartbeats } from '../runtime/heartbeat.ts';
import type {
  ConsumedRecord,
  Consumer,
  StartPosition,
  TopicPartition,
  Transport,
} from '../transport/types.ts';
import { filePool } from './buffer-pool.ts';
import { type DataFileChunk, decodeChunk } from './chunk-codec.ts';
import { DOWNLOAD_CODES, DownloadDataFile, type DownloadMode } from './download-data-file.ts';
import { quarantineRecord } from './quarantine.ts';
import {
  CONSUMER_IN_PROGRESS_COLUMNS,
  type ConsumerStatus,
  consumingInProgressName,
  LOGS_DIR_NAME,
} from './registry/names.ts';
import { type Row, readRegistry, writeRegistryAtomic } from './registry/table.ts';
import { applyFilenameAppend, resolveChunkPath } from './safe-path.ts';

/**
 * The engine under every program that rebuilds files from a chunk topic (download-dir, processors,
 * reproducers). It reads chunks with one consumer, rebuilds each file with a `DownloadDataFile`, and hands every
 * completed file to `onFileComplete`.
 *
 * Crash safety, the rule: a partition's committed offset never passes the oldest chunk of a file that is not
 * finished yet. After `kill -9`, a restart with the same group re-reads every chunk of every unfinished file,
 * so every file still completes. Chunks of files finished before the crash may be read again; a file whose
 * finished copy is already on disk with the same SHA-512 is recognised and skipped, not rebuilt.
 * Offsets are committed at checkpoints (every `checkpointIntervalMs`, on revocation and at shutdown), after the
 * registry is written.
 *
 * Bad messages (undecodable, wrong hash, unsafe path, contradicting chunks) are quarantined with their
 * coordinates, logged, and committed past: they never stop the stream and never write outside the output dir.
 */

export type FileOutcomeStatus = 'completed' | 'already_present' | 'mismatched_hash' | 'failed';

export interface FileOutcome {
  status: FileOutcomeStatus;
  relativeFilepath: string;
  fullFilepath: string;
  bytes: number;
  chunks: number;
  reason?: string;
}

export interface StreamHandlerOptions {
  transport: Transport;
  topic: string;
  groupId: string;
  outputDir: string;
  mode: DownloadMode;
  logger: Logger;
  /** Only files whose relative path matches are rebuilt; the others' chunks are passed over (and committed). */
  downloadRegex?: RegExp;
  heartbeats?: Heartbeats;
  /** Default 1000 ms. */
  checkpointIntervalMs?: number;
  sessionTimeoutMs?: number;
  /** Create the topic when it does not exist yet (otherwise a clear error). */
  autoCreateTopic?: boolean;
  /** Completed files handed to `onFileComplete` at the same time. Default 1. */
  processingConcurrency?: number;
}

export interface StreamSummary {
  filesCompleted: number;
  filesSkipped: number;
  filesFailed: number;
  messagesRead: number;
  messagesQuarantined: number;
  bytesWritten: number;
}

/** Bytes of chunk messages one poll reads at most (see `ConsumerOptions.maxPollBytes`). */
const POLL_BYTES = 4 * 1024 * 1024;

/** Files of one poll batch handled at the same time. */
const FILE_LANES = 32;
/** Lane of records that fail to decode (quarantined in order). */
const QUARANTINE_LANE = '\u0000quarantine';

/** Returns a handled record's value to the buffer pool it may have come from (see ConsumerOptions.valueBuffers). */
function giveBack(r: ConsumedRecord): void {
  if (r.value !== null) filePool.give(r.value);
}

/**
 * Moves a batch's partition positions as its records are handled: a partition's position is the offset of its first
 * record not handled yet (or one past the last). A record being handled is not passed: until its chunk is part
 * of a file's `sourceMessages`, nothing else holds the commit floor below it, so a commit made meanwhile (a
 * checkpoint, or a processor's transaction) must not pass it.
 */
class BatchProgress {
  /** Per partition: batch indexes in offset order, and how many of them (a prefix) are handled. */
  private readonly parts = new Map<number, { indexes: number[]; done: number }>();
  private readonly handled: Uint8Array;

  constructor(
    private readonly batch: ConsumedRecord[],
    private readonly positions: Map<number, number>,
  ) {
    this.handled = new Uint8Array(batch.length);
    batch.forEach((r, i) => {
      let part = this.parts.get(r.partition);
      if (part === undefined) {
        part = { indexes: [], done: 0 };
        this.parts.set(r.partition, part);
      }
      part.indexes.push(i);
    });
  }

  finish(i: number): void {
    this.handled[i] = 1;
    const partition = this.batch[i]!.partition;
    const part = this.parts.get(partition)!;
    while (part.done < part.indexes.length && this.handled[part.indexes[part.done]!] === 1) part.done++;
    const head = part.indexes[part.done];
    this.positions.set(
      partition,
      head === undefined
        ? this.batch[part.indexes[part.indexes.length - 1]!]!.offset + 1
        : this.batch[head]!.offset,
    );
  }
}

interface RegistryEntry {
  row: Row;
}

export class DataFileStreamHandler extends EventEmitter {
  protected readonly options: StreamHandlerOptions;
  protected readonly log: Logger;
  private consumer: Consumer | undefined;
  private readonly inProgress = new Map<string, DownloadDataFile>();
  /** Complete files whose `onFileComplete` is running; their chunks still hold the commit floor. */
  private readonly processing = new Set<{ file: DownloadDataFile; task: Promise<void> }>();
  private freeSlots: number;
  private readonly slotWaiters: Array<() => void> = [];
  private fatal: unknown;
  /** The poll batch being handled, if any. */
  private batchInFlight: Promise<void> | undefined;
  /** Next offset after the last record handled, per partition. */
  private readonly positions = new Map<number, number>();
  /** Finished copies already on disk: relative path → size, mtime and SHA-512 seen. */
  private readonly onDisk = new Map<string, { size: number; mtimeMs: number; hash: string }>();
  private readonly registry = new Map<string, RegistryEntry>();
  private registryDirty = false;
  private lastCheckpoint = Date.now();
  /**
   * Directories holding files renamed into place since the last checkpoint, when `batchDirectorySyncs`: each is
   * fsynced once, before the offsets that pass those files' chunks are committed.
   */
  private readonly unsyncedDirs = new Set<string>();
  /**
   * Whether completed files leave the fsync of their directory to the next checkpoint (one fsync per directory and
   * checkpoint instead of one per file). Only for subclasses whose offsets are committed by `checkpoint()` alone.
   */
  protected batchDirectorySyncs = false;
  readonly summary: StreamSummary = {
    filesCompleted: 0,
    filesSkipped: 0,
    filesFailed: 0,
    messagesRead: 0,
    messagesQuarantined: 0,
    bytesWritten: 0,
  };

  constructor(options: StreamHandlerOptions) {
    super();
    this.options = options;
    this.log = options.logger;
    this.freeSlots = Math.max(1, options.processingConcurrency ?? 1);
  }

  /** Called for every file rebuilt and verified. Throw (or reject) to mark the file failed. */
  protected async onFileComplete(_file: DownloadDataFile): Promise<void> {}

  /** Called when a file's chunks rebuilt something whose SHA-512 differs from the announced one. */
  protected async onMismatchedHash(_file: DownloadDataFile): Promise<void> {}

  /** Whether a file's chunks can be passed over (it was handled before a restart). Default: the same file is on disk. */
  protected alreadyHandled(relative: string, chunk: DataFileChunk): Promise<boolean> {
    return this.alreadyOnDisk(relative, chunk);
  }

  /** Lets a subclass pass over records (they still count as handled for commits). Default: all. */
  protected acceptRecord(_record: ConsumedRecord): boolean {
    return true;
  }

  /** Where the consumer starts in partitions with no override. Default: after the group's commits. */
  protected startPosition(): StartPosition {
    return 'committed';
  }

  /** Called with newly assigned partitions before their records are read. */
  protected async onAssigned(_partitions: TopicPartition[]): Promise<void> {}

  /** The group's consumer while `run` is going (for subclasses that commit together with what they produce). */
  protected get activeConsumer(): Consumer | undefined {
    return this.consumer;
  }

  get registryPath(): string {
    return join(
      this.options.outputDir,
      LOGS_DIR_NAME,
      consumingInProgressName(this.options.topic, this.options.groupId),
    );
  }

  /** Consumes until `signal` aborts, then checkpoints, closes the consumer and returns what happened. */
  async run(signal: AbortSignal): Promise<StreamSummary> {
    const o = this.options;
    await mkdir(join(o.outputDir, LOGS_DIR_NAME), { recursive: true });
    for (const row of await readRegistry(this.registryPath, CONSUMER_IN_PROGRESS_COLUMNS)) {
      this.registry.set(String(row.rel_filepath), { row });
    }
    const consumer = o.transport.consumer({
      groupId: o.groupId,
      topics: [o.topic],
      // chunks are up to 512 KiB each: a smaller batch keeps the reader's memory flat (the 4 GiB file bench runs
      // within 200 MB) and costs nothing in throughput
      maxPollBytes: POLL_BYTES,
      // chunk values come from (and go back to) the process's buffer pool where the transport reads them into
      // buffers of its own (embedded): a gigabyte of fresh 512 KiB buffers costs dozens of full collections
      valueBuffers: filePool,
      sessionTimeoutMs: o.sessionTimeoutMs,
      autoCreateTopics: o.autoCreateTopic,
      start: this.startPosition(),
      onAssign: (partitions) => this.onAssigned(partitions),
      onRevoke: (partitions) => this.revoked(partitions),
    });
    this.consumer = consumer;
    this.log.info(
      { topic: o.topic, group: o.groupId, outputDir: o.outputDir, transport: o.transport.kind },
      `reading files from topic ${o.topic} as group ${o.groupId} into ${o.outputDir}`,
    );
    try {
      // the poll timeout bounds how long a stop request waits
      while (!signal.aborted) {
        const batch = await consumer.poll({ timeoutMs: 500 });
        await this.handleBatch(batch);
        if (this.fatal !== undefined) throw this.fatal;
        if (Date.now() - this.lastCheckpoint >= (o.checkpointIntervalMs ?? 1000)) await this.checkpoint();
      }
    } finally {
      // close() revokes every partition: `revoked` checkpoints and drops unfinished files
      await consumer.close();
      await this.flushRegistry();
    }
    return this.summary;
  }

  /**
   * Handles one poll's records. Records of one file are handled in order; different files (up to
   * `FILE_LANES` at a time) are handled concurrently, so one file's disk waits (the fsync and rename that finish
   * it, each chunk's write) overlap with other files' work instead of adding up. Every record of the batch is
   * handled before this resolves; revocation waits for it (see `revoked`).
   */
  private async handleBatch(batch: ConsumedRecord[]): Promise<void> {
    if (batch.length === 0) return;
    const run = this.handleLanes(batch);
    this.batchInFlight = run;
    try {
      await run;
    } finally {
      this.batchInFlight = undefined;
    }
  }

  private async handleLanes(batch: ConsumedRecord[]): Promise<void> {
    const progress = new BatchProgress(batch, this.positions);
    let lanes = new Map<string, Promise<void>>();
    const failures: unknown[] = [];
    const settle = async (): Promise<void> => {
      await Promise.all(lanes.values());
      lanes = new Map();
    };
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i]!;
      const decoded = this.decodeRecord(r);
      if (decoded === undefined) {
        progress.finish(i);
        giveBack(r);
        continue;
      }
      const key = 'error' in decoded ? QUARANTINE_LANE : decoded.relative;
      if (!lanes.has(key) && lanes.size >= FILE_LANES) await settle();
      const previous = lanes.get(key) ?? Promise.resolve();
      lanes.set(
        key,
        previous.then(async () => {
          if (failures.length > 0) return;
          try {
            if ('error' in decoded) await this.quarantine(r, decoded.error);
            else await this.handleChunk(r, decoded.chunk, decoded.relative);
            progress.finish(i);
            // handled: the file copied what it keeps (hashes, names), and the chunk is written
            giveBack(r);
          } catch (err) {
            failures.push(err);
          }
        }),
      );
    }
    await settle();
    if (failures.length > 0) throw failures[0];
  }

  /** Counts a record and finds the file it belongs to; undefined when it is passed over. */
  private decodeRecord(
    r: ConsumedRecord,
  ): { chunk: DataFileChunk; relative: string } | { error: unknown } | undefined {
    this.summary.messagesRead += 1;
    this.options.heartbeats?.add('n_messages_read');
    this.options.heartbeats?.add('n_bytes_read', (r.key?.length ?? 0) + (r.value?.length ?? 0));
    if (!this.acceptRecord(r)) return undefined;
    let chunk: DataFileChunk | null;
    let relative: string;
    try {
      chunk = decodeChunk(r.value);
      if (chunk === null) return undefined;
      // checks the path before anything else touches the disk
      resolveChunkPath(this.options.outputDir, chunk.subdirStr, chunk.filename, chunk.filenameAppend);
      const name = applyFilenameAppend(chunk.filename, chunk.filenameAppend);
      relative = chunk.subdirStr === '' ? name : `${chunk.subdirStr}/${name}`;
    } catch (err) {
      return { error: err };
    }
    const regex = this.options.downloadRegex;
    if (regex !== undefined && !regex.test(relative)) return undefined;
    return { chunk, relative };
  }

  private async handleChunk(r: ConsumedRecord, chunk: DataFileChunk, relative: string): Promise<void> {
    let file = this.inProgress.get(relative);
    if (file === undefined) {
      if (await this.alreadyHandled(relative, chunk)) return;
      file = new DownloadDataFile(chunk, {
        outputDir: this.options.outputDir,
        mode: this.options.mode,
        deferDirectorySync: this.batchDirectorySyncs ? (dir) => this.unsyncedDirs.add(dir) : undefined,
      });
      this.inProgress.set(relative, file);
      this.track(relative, chunk, 'in_progress');
    }
    let code: number;
    try {
      code = await file.addChunk(chunk, { topic: r.topic, partition: r.partition, offset: r.offset });
    } catch (err) {
      if (isSluiceError(err, 'SLUICE_IO')) throw err; // the output disk is the problem, not the message
      await this.quarantine(r, err);
      return;
    }
    this.touch(relative);
    if (code === DOWNLOAD_CODES.FILE_SUCCESSFULLY_RECONSTRUCTED) {
      // bounded concurrency: wait for a free slot (back-pressure on reading), then process in the background.
      // Until it moves to `processing`, the file stays in `inProgress`, so its chunks keep holding the commit floor
      // against commits made meanwhile (checkpoints, other files' transactions).
      await this.acquireSlot();
      this.inProgress.delete(relative);
      const entry = { file, task: Promise.resolve() };
      entry.task = this.completed(file)
        .catch((err: unknown) => {
          this.fatal ??= err;
        })
        .finally(() => {
          this.processing.delete(entry);
          this.releaseSlot();
        });
      this.processing.add(entry);
    } else if (code === DOWNLOAD_CODES.FILE_HASH_MISMATCH) {
      this.inProgress.delete(relative);
      await this.onMismatchedHash(file);
      this.summary.filesFailed += 1;
      this.setStatus(relative, 'mismatched_hash');
      this.log.error(
        { file: relative, partition: r.partition, offset: r.offset },
        `rejected ${relative}: its chunks rebuilt a file whose SHA-512 differs from the one announced; nothing was written. Re-upload the file.`,
      );
      this.emit('file', {
        status: 'mismatched_hash',
        relativeFilepath: relative,
        fullFilepath: file.fullFilepath,
        bytes: 0,
        chunks: file.nTotalChunks,
      } satisfies FileOutcome);
    }
  }

  private async completed(file: DownloadDataFile): Promise<void> {
    // the rebuilt file keeps the source's modification time (upstream leaves the time of the rebuild)
    if (this.options.mode !== 'memory' && file.fileMtime > 0) {
      await utimes(file.fullFilepath, new Date(), new Date(file.fileMtime * 1000)).catch(() => undefined);
    }
    const finalStat =
      this.options.mode === 'memory' ? undefined : await stat(file.fullFilepath).catch(() => undefined);
    const bytes = finalStat?.size ?? file.bytestring?.length ?? 0;
    try {
      await this.onFileComplete(file);
    } catch (err) {
      this.summary.filesFailed += 1;
      const status = (err as { registryStatus?: ConsumerStatus } | null)?.registryStatus ?? 'failed';
      this.setStatus(file.relativeFilepath, status);
      this.log.error(
        { file: file.relativeFilepath, err: describeError(err) },
        `processing ${file.relativeFilepath} failed`,
      );
      this.emit('file', {
        status: 'failed',
        relativeFilepath: file.relativeFilepath,
        fullFilepath: file.fullFilepath,
        bytes,
        chunks: file.nTotalChunks,
        reason: describeError(err),
      } satisfies FileOutcome);
      return;
    }
    this.summary.filesCompleted += 1;
    this.summary.bytesWritten += bytes;
    this.options.heartbeats?.add('n_messages_processed', file.nTotalChunks);
    this.options.heartbeats?.add('n_bytes_processed', bytes);
    this.untrack(file.relativeFilepath);
    if (this.options.mode !== 'memory') {
      const s = finalStat ?? (await stat(file.fullFilepath));
      this.onDisk.set(file.relativeFilepath, {
        size: s.size,
        mtimeMs: s.mtimeMs,
        hash: file.fileHash!.toString('hex'),
      });
    }
    this.log.info(
      { file: file.relativeFilepath, bytes, chunks: file.nTotalChunks },
      `rebuilt ${file.relativeFilepath} (${file.nTotalChunks} chunk${file.nTotalChunks === 1 ? '' : 's'}, ${bytes} bytes, SHA-512 verified)`,
    );
    this.emit('file', {
      status: 'completed',
      relativeFilepath: file.relativeFilepath,
      fullFilepath: file.fullFilepath,
      bytes,
      chunks: file.nTotalChunks,
    } satisfies FileOutcome);
  }

  /**
   * Whether a verified copy of this exact file (same SHA-512) is already at its final path: then its chunks,
   * re-read after a restart, are passed over instead of starting a rebuild that could never finish.
   */
  private async alreadyOnDisk(relative: string, chunk: DataFileChunk): Promise<boolean> {
    if (this.options.mode === 'memory') return false;
    const full = resolveChunkPath(
      this.options.outputDir,
      chunk.subdirStr,
      chunk.filename,
      chunk.filenameAppend,
    );
    const s = await stat(full).catch(() => undefined);
    if (s === undefined || !s.isFile()) return false;
    let known = this.onDisk.get(relative);
    if (known === undefined || known.size !== s.size || known.mtimeMs !== s.mtimeMs) {
      const hash = createHash('sha512');
      for await (const block of createReadStream(full)) hash.update(block as Buffer);
      known = { size: s.size, mtimeMs: s.mtimeMs, hash: hash.digest('hex') };
      this.onDisk.set(relative, known);
    }
    if (known.hash !== Buffer.from(chunk.fileHash).toString('hex')) {
      // a version older than the one already rebuilt (its chunks can arrive later from another partition): the
      // finished file carries its source's mtime, so the older version is recognised and passed over
      if (chunk.fileMtime > 0 && chunk.fileMtime * 1000 < Math.floor(s.mtimeMs) - 1) {
        if (!this.skippedOnce.has(`${relative}\u0000${known.hash}\u0000older`)) {
          this.skippedOnce.add(`${relative}\u0000${known.hash}\u0000older`);
          this.log.info(
            { file: relative },
            `passed over an older version of ${relative} (source mtime ${new Date(chunk.fileMtime * 1000).toISOString()}); a newer one is already rebuilt`,
          );
        }
        return true;
      }
      return false;
    }
    if (!this.skippedOnce.has(relative)) {
      this.skippedOnce.add(relative);
      this.summary.filesSkipped += 1;
      this.log.info(
        { file: relative },
        `${relative} is already here with the same SHA-512; its chunks are passed over`,
      );
      this.emit('file', {
        status: 'already_present',
        relativeFilepath: relative,
        fullFilepath: full,
        bytes: s.size,
        chunks: chunk.nTotalChunks,
      } satisfies FileOutcome);
    }
    return true;
  }

  private readonly skippedOnce = new Set<string>();

  private async quarantine(r: ConsumedRecord, err: unknown): Promise<void> {
    this.summary.messagesQuarantined += 1;
    const entry = await quarantineRecord(this.options.outputDir, r, err);
    this.log.error(
      { topic: r.topic, partition: r.partition, offset: r.offset, code: entry.code },
      `quarantined message ${r.topic}[${r.partition}]@${r.offset}: ${entry.reason}`,
    );
  }

  // ---- offsets ---------------------------------------------------------------------------------------------------

  /**
   * Per partition: the oldest chunk of an unfinished file, or else the position. Committing these can never
   * skip a chunk that an unfinished file still needs.
   */
  safeOffsets(
    partitions?: TopicPartition[],
    exclude?: DownloadDataFile | ReadonlySet<DownloadDataFile>,
  ): Array<{ topic: string; partition: number; offset: number }> {
    const floor = new Map<number, number>();
    const holding = [...this.inProgress.values(), ...[...this.processing].map((p) => p.file)];
    for (const file of holding) {
      if (file === exclude || (exclude instanceof Set && exclude.has(file))) continue;
      for (const m of file.sourceMessages) {
        const f = floor.get(m.partition);
        if (f === undefined || m.offset < f) floor.set(m.partition, m.offset);
      }
    }
    const wanted = partitions?.map((p) => p.partition) ?? [...this.positions.keys()];
    const out: Array<{ topic: string; partition: number; offset: number }> = [];
    for (const p of wanted) {
      const pos = this.positions.get(p);
      if (pos === undefined) continue;
      out.push({ topic: this.options.topic, partition: p, offset: Math.min(pos, floor.get(p) ?? pos) });
    }
    return out;
  }

  private async acquireSlot(): Promise<void> {
    if (this.freeSlots > 0) {
      this.freeSlots -= 1;
      return;
    }
    await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
  }

  private releaseSlot(): void {
    const next = this.slotWaiters.shift();
    if (next !== undefined) next();
    else this.freeSlots += 1;
  }

  /** Waits for every file being processed. */
  protected async drainProcessing(): Promise<void> {
    while (this.processing.size > 0) await Promise.all([...this.processing].map((p) => p.task));
  }

  async checkpoint(partitions?: TopicPartition[]): Promise<void> {
    this.lastCheckpoint = Date.now();
    await this.syncDirectories();
    await this.flushRegistry();
    const offsets = this.safeOffsets(partitions);
    if (offsets.length > 0 && this.consumer !== undefined) await this.consumer.commit(offsets);
  }

  private async revoked(partitions: TopicPartition[]): Promise<void> {
    const mine = partitions.filter((p) => p.topic === this.options.topic);
    // the records of the batch being handled count as handled (positions) only once they are
    await this.batchInFlight?.catch(() => {});
    // files being processed finish first: their results and registry rows come before the commit
    await this.drainProcessing();
    try {
      await this.checkpoint(mine);
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'could not commit offsets while giving up partitions');
    }
    const gone = new Set(mine.map((p) => p.partition));
    for (const [relative, file] of this.inProgress) {
      if (file.sourceMessages.some((m) => gone.has(m.partition))) {
        // its chunks in those partitions will be read again by whoever gets them (the commit is below them)
        this.inProgress.delete(relative);
        await file.abort();
      }
    }
    for (const p of gone) this.positions.delete(p);
  }

  /** Fsyncs the directories of files renamed into place since the last call (see `batchDirectorySyncs`). */
  private async syncDirectories(): Promise<void> {
    if (this.unsyncedDirs.size === 0) return;
    const dirs = [...this.unsyncedDirs];
    this.unsyncedDirs.clear();
    await Promise.all(dirs.map((d) => fsyncDirectory(d)));
  }

  // ---- registry --------------------------------------------------------------------------------------------------

  private track(relative: string, chunk: DataFileChunk, status: ConsumerStatus): void {
    const now = new Date();
    const name = applyFilenameAppend(chunk.filename, chunk.filenameAppend);
    this.registry.set(relative, {
      row: {
        filename: name,
        rel_filepath: relative,
        status,
        n_chunks: chunk.nTotalChunks,
        first_message: now,
        most_recent_message: now,
      },
    });
    this.registryDirty = true;
  }

  /** When the file's first chunk arrived in this run (for success registries). */
  protected firstMessageTime(relative: string): Date {
    const at = this.registry.get(relative)?.row.first_message;
    return at instanceof Date ? at : new Date();
  }

  /** Registry rows of an earlier run, by relative path (status and the rest of the upstream columns). */
  protected registryRows(): Row[] {
    return [...this.registry.values()].map((e) => e.row);
  }

  private touch(relative: string): void {
    const e = this.registry.get(relative);
    if (e !== undefined) e.row.most_recent_message = new Date();
  }

  private setStatus(relative: string, status: ConsumerStatus): void {
    const e = this.registry.get(relative);
    if (e !== undefined) {
      e.row.status = status;
      this.registryDirty = true;
    }
  }

  private untrack(relative: string): void {
    if (this.registry.delete(relative)) this.registryDirty = true;
  }

  async flushRegistry(): Promise<void> {
    if (!this.registryDirty) return;
    this.registryDirty = false;
    try {
      await writeRegistryAtomic(
        this.registryPath,
        CONSUMER_IN_PROGRESS_COLUMNS,
        [...this.registry.values()].map((e) => e.row),
      );
    } catch (err) {
      this.registryDirty = true;
      throw new SluiceError(
        'SLUICE_REGISTRY',
        `Cannot write the registry ${this.registryPath} (${describeError(err)}). Check free space and permissions of the output directory.`,
        { cause: err },
      );
    }
  }
}
