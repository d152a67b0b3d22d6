/**
 * The producer-side registry of an upload directory, in `<upload_dir>/LOGS/`, in OpenMSIStream's own files
 * (shared/spec/openmsistream-compat.md, sections 5 and 11), so a deployment can switch between upstream and sluice
 * in place:
 * - `upload_to_<topic>_in_progress.csv`: one row per file being uploaded, with the chunks delivered and still to
 *   send. Rewritten atomically when a row is added or removed (coalesced with other pending changes, at most every
 *   `URGENT_WRITE_MS`), and at most every `updateEverySecs` (default 5, as upstream) when only delivered chunks
 *   change. A crash can therefore lose up to that much progress: those chunks are sent again after the restart
 *   (at-least-once; consumers accept duplicates of the same file hash).
 * - `uploaded_to_<topic>.csv`: one row per completed upload. While running, completions go to this run's
 *   `uploaded_to_<topic>_p<id>.csv` (rewritten atomically with the in-progress file, rolled after 1000 lines, as
 *   upstream; each row is formatted once); every file of the family (exact name patterns only, see
 *   `matchesRegistryFamily`) is merged into the main file at `open()` and `close()`, and deleted once merged.
 *
 * sluice also keeps a journal the upstream format has no room for, `LOGS/.sluice_upload_to_<topic>.jsonl` (hidden,
 * so no registry pattern or upload selection matches it): one JSON line per state change of a file (`queued`,
 * `hashed` with size, mtime, chunk size, chunk count and file hash, `completed`, `dropped`). After a restart it tells
 * whether an in-progress file is still the version whose chunks were delivered (resume) or changed meanwhile
 * (send a new generation), whether the chunk size changed, whether a completed file changed while sluice was down,
 * and which files were queued but not yet started. Lines are appended (cheap: one open file, lines of the same
 * moment written together); the file is compacted to the latest line per path at `open()`. A torn last line (crash
 * mid-append) is ignored. The journal is what decides after a crash: a file's `completed` line is written before
 * its row leaves the in-progress file, so a completed file is never sent again, even when the crash came before
 * the CSV files were rewritten.
 */

import { randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { describeError, SluiceError } from '../errors.ts';
import { writeFileAtomic } from '../runtime/atomic-file.ts';
import type { Logger } from '../runtime/logger.ts';
import {
  LOGS_DIR_NAME,
  MAX_LINES_PER_PARTIAL_FILE,
  matchesRegistryFamily,
  PRODUCER_COMPLETED_COLUMNS,
  PRODUCER_IN_PROGRESS_COLUMNS,
  registryStem,
  rolledName,
  UPDATE_FILE_EVERY_SECONDS,
  uploadedName,
  uploadedPerProducerName,
  uploadInProgressName,
} from './registry/names.ts';
import {
  type ColumnSpec,
  formatRegistryHeader,
  formatRegistryLine,
  joinRegistryText,
  type Row,
  readRegistry,
  writeRegistryAtomic,
  writeRegistryTextAtomic,
} from './registry/table.ts';

export interface InProgressEntry {
  filename: string;
  /** Path relative to the upload directory, `/`-separated. */
  relPath: string;
  nChunks: number;
  /** 1-based indices of acknowledged chunks. */
  delivered: Set<number>;
  /** 1-based indices of chunks not yet acknowledged. */
  toSend: Set<number>;
  started: Date;
}

export interface CompletedEntry {
  filename: string;
  relPath: string;
  nChunks: number;
  started: Date;
  completed: Date;
}

export type JournalState = 'queued' | 'hashed' | 'completed' | 'dropped';

export interface JournalEntry {
  /** Path relative to the upload directory, `/`-separated. */
  rel: string;
  state: JournalState;
  /** Epoch milliseconds of the change. */
  at: number;
  size?: number;
  /** mtime in nanoseconds, as a decimal string (exact). */
  mtimeNs?: string;
  chunkSize?: number;
  nChunks?: number;
  /** Whole-file SHA-512, hex. */
  hash?: string;
}

export interface RegistrySnapshot {
  inProgress: InProgressEntry[];
  /** The latest completed row per path. */
  completed: Map<string, CompletedEntry>;
  /** The latest journal line per path. */
  journal: Map<string, JournalEntry>;
}

export interface UploadRegistryOptions {
  /** The upload directory; the registry lives in its `LOGS/` subdirectory. */
  uploadDir: string;
  topic: string;
  /** Lower-case hex id of this producer, for `uploaded_to_<topic>_p<id>.csv`. Default: random. */
  producerId?: string;
  /** Longest delay before delivered-chunk progress reaches the in-progress file. Default 5 s, as upstream. */
  updateEverySecs?: number;
  logger?: Logger;
}

const IN_PROGRESS_COLUMNS = PRODUCER_IN_PROGRESS_COLUMNS as ColumnSpec[];
/**
 * Shortest time between two rewrites of the CSV files for rows added or removed. Files completing quickly one after
 * the other then cost one rewrite (two fsyncs) per this interval, not one per file; the journal, appended at once,
 * is what a restart relies on.
 */
export const URGENT_WRITE_MS = 200;
/** Lines the journal may hold beyond twice the paths it tracks before it is compacted. */
const JOURNAL_SLACK_LINES = 1000;
const COMPLETED_COLUMNS = PRODUCER_COMPLETED_COLUMNS as ColumnSpec[];

function toInProgress(row: Row): InProgressEntry {
  return {
    filename: row.filename as string,
    relPath: row.rel_filepath as string,
    nChunks: row.n_chunks as number,
    delivered: new Set(row.chunks_delivered as Set<number>),
    toSend: new Set(row.chunks_to_send as Set<number>),
    started: row.started as Date,
  };
}

function fromInProgress(e: InProgressEntry): Row {
  return {
    filename: e.filename,
    rel_filepath: e.relPath,
    n_chunks: e.nChunks,
    n_chunks_delivered: e.delivered.size,
    n_chunks_to_send: e.toSend.size,
    started: e.started,
    chunks_delivered: e.delivered,
    chunks_to_send: e.toSend,
  };
}

function toCompleted(row: Row): CompletedEntry {
  return {
    filename: row.filename as string,
    relPath: row.rel_filepath as string,
    nChunks: row.n_chunks as number,
    started: row.started as Date,
    completed: row.completed as Date,
  };
}

function fromCompleted(e: CompletedEntry): Row {
  return {
    filename: e.filename,
    rel_filepath: e.relPath,
    n_chunks: e.nChunks,
    started: e.started,
    completed: e.completed,
  };
}

function isJournalEntry(v: unknown): v is JournalEntry {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.rel === 'string' &&
    typeof e.at === 'number' &&
    (e.state === 'queued' || e.state === 'hashed' || e.state === 'completed' || e.state === 'dropped')
  );
}

async function writeTextAtomic(file: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(file, text);
  } catch (err) {
    throw ioError('write', file, err);
  }
}

function ioError(action: string, file: string, err: unknown): SluiceError {
  return new SluiceError(
    'SLUICE_IO',
    `Could not ${action} ${file}: ${describeError(err)}. Check that the directory exists, is writable by this ` +
      'user, and that the disk is not full.',
    { cause: err, details: { path: file } },
  );
}

export class UploadRegistry {
  readonly logsDir: string;
  readonly inProgressPath: string;
  readonly completedPath: string;
  readonly partialPath: string;
  readonly journalPath: string;
  readonly producerId: string;
  private readonly topic: string;
  private readonly updateEveryMs: number;
  private readonly logger: Logger | undefined;

  private readonly rows = new Map<string, InProgressEntry>();
  private partialRows: Row[] = [];
  /** `partialRows` formatted, one line each (rows are only ever appended). */
  private partialLines: string[] = [];
  private inProgressDirty = false;
  private partialDirty = false;
  private urgentScheduled = false;
  private lazyTimer: NodeJS.Timeout | undefined;
  private lastInProgressWrite = 0;
  private lastUrgentWrite = 0;
  private chain: Promise<void> = Promise.resolve();
  private journalChain: Promise<void> = Promise.resolve();
  private journalError: unknown;
  /** Journal lines not written yet, and who waits for them. */
  private journalPending: { text: string; done: Array<() => void> } = { text: '', done: [] };
  private journalWriting = false;
  /** The journal, open for appending while the registry is open. */
  private journalHandle: FileHandle | undefined;
  /** The latest journal entry per path (what a compaction writes). */
  private readonly journalLatest = new Map<string, JournalEntry>();
  /** Lines in the journal file. */
  private journalLines = 0;
  private opened = false;
  private closed = false;

  constructor(options: UploadRegistryOptions) {
    this.topic = options.topic;
    this.logsDir = path.join(path.resolve(options.uploadDir), LOGS_DIR_NAME);
    this.producerId = options.producerId ?? randomBytes(6).toString('hex');
    this.inProgressPath = path.join(this.logsDir, uploadInProgressName(options.topic));
    this.completedPath = path.join(this.logsDir, uploadedName(options.topic));
    this.partialPath = path.join(this.logsDir, uploadedPerProducerName(options.topic, this.producerId));
    this.journalPath = path.join(this.logsDir, `.sluice_upload_to_${options.topic}.jsonl`);
    this.updateEveryMs = (options.updateEverySecs ?? UPDATE_FILE_EVERY_SECONDS) * 1000;
    this.logger = options.logger;
  }

  /**
   * Creates `LOGS/` if needed, merges leftover per-producer completion files into `uploaded_to_<topic>.csv`, and
   * returns what the registry knows: in-progress rows, the latest completion per path, the latest journal line
   * per path. Throws `SLUICE_REGISTRY` for a malformed registry file (naming file and line) and `SLUICE_IO`.
   */
  async open(): Promise<RegistrySnapshot> {
    try {
      await mkdir(this.logsDir, { recursive: true });
    } catch (err) {
      throw ioError('create', this.logsDir, err);
    }
    const inProgress = (await readRegistry(this.inProgressPath, IN_PROGRESS_COLUMNS)).map(toInProgress);
    for (const e of inProgress) this.rows.set(e.relPath, e);
    const completedRows = await this.consolidate(false);
    const completed = new Map<string, CompletedEntry>();
    for (const row of completedRows) {
      const e = toCompleted(row);
      const prev = completed.get(e.relPath);
      if (prev === undefined || prev.completed.getTime() <= e.completed.getTime())
        completed.set(e.relPath, e);
    }
    const journal = await this.loadJournal();
    this.opened = true;
    return { inProgress: [...this.rows.values()].map((e) => ({ ...e })), completed, journal };
  }

  /** Merges every other file of the completed family into the main file; returns all completed rows. */
  private async consolidate(includeOwn: boolean): Promise<Row[]> {
    const stem = registryStem(path.basename(this.completedPath));
    let names: string[];
    try {
      names = await readdir(this.logsDir);
    } catch (err) {
      throw ioError('list', this.logsDir, err);
    }
    const mainName = path.basename(this.completedPath);
    const ownName = path.basename(this.partialPath);
    const others = names
      .filter((n) => n !== mainName && matchesRegistryFamily(stem, n) && (includeOwn || n !== ownName))
      .sort();
    const rows = await readRegistry(this.completedPath, COMPLETED_COLUMNS);
    if (others.length === 0) return rows;
    for (const name of others)
      rows.push(...(await readRegistry(path.join(this.logsDir, name), COMPLETED_COLUMNS)));
    await writeRegistryAtomic(this.completedPath, COMPLETED_COLUMNS, rows);
    for (const name of others) {
      await unlink(path.join(this.logsDir, name)).catch((err: unknown) => {
        this.logger?.warn({ err, file: name }, `could not delete merged registry file ${name}`);
      });
    }
    this.logger?.debug({ merged: others }, `merged ${others.length} registry file(s) into ${mainName}`);
    return rows;
  }

  private async loadJournal(): Promise<Map<string, JournalEntry>> {
    const latest = new Map<string, JournalEntry>();
    let text: string;
    try {
      text = await readFile(this.journalPath, 'utf8');
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') return latest;
      throw ioError('read', this.journalPath, err);
    }
    let bad = 0;
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        bad++;
        continue;
      }
      if (isJournalEntry(v)) latest.set(v.rel, v);
      else bad++;
    }
    if (bad > 0) {
      this.logger?.warn(
        { file: this.journalPath, ignoredLines: bad },
        `ignored ${bad} unreadable line(s) of ${this.journalPath} (a crash while appending leaves one)`,
      );
    }
    for (const [rel, e] of latest) if (e.state === 'dropped') latest.delete(rel);
    for (const [rel, e] of latest) this.journalLatest.set(rel, e);
    await this.compactJournal();
    return latest;
  }

  /** The in-progress entry of `relPath` (live object), if any. */
  get(relPath: string): InProgressEntry | undefined {
    return this.rows.get(relPath);
  }

  /** Adds (or replaces) the in-progress row of a file that starts uploading. */
  begin(entry: InProgressEntry): void {
    this.checkOpen();
    this.rows.set(entry.relPath, entry);
    this.markInProgress(true);
  }

  /** Records an acknowledged chunk. */
  delivered(relPath: string, chunkI: number): void {
    const e = this.rows.get(relPath);
    if (e === undefined) return;
    e.toSend.delete(chunkI);
    e.delivered.add(chunkI);
    this.markInProgress(false);
  }

  /** Moves a file from in progress to completed. */
  complete(relPath: string, completed: Date = new Date()): void {
    this.checkOpen();
    const e = this.rows.get(relPath);
    if (e === undefined) return;
    this.rows.delete(relPath);
    const row = fromCompleted({
      filename: e.filename,
      relPath,
      nChunks: e.nChunks,
      started: e.started,
      completed,
    });
    this.partialLines.push(formatRegistryLine(COMPLETED_COLUMNS, row, this.partialRows.length));
    this.partialRows.push(row);
    this.partialDirty = true;
    this.markInProgress(true);
  }

  /** Forgets an in-progress file (it was deleted before it could be sent). */
  drop(relPath: string): void {
    if (this.rows.delete(relPath)) this.markInProgress(true);
  }

  /** Rewrites the journal with the latest line per path (the append handle is reopened on the next line). */
  private async compactJournal(): Promise<void> {
    await this.closeJournalHandle();
    const text = [...this.journalLatest.values()].map((e) => `${JSON.stringify(e)}\n`).join('');
    await writeTextAtomic(this.journalPath, text);
    this.journalLines = this.journalLatest.size;
  }

  private async closeJournalHandle(): Promise<void> {
    const handle = this.journalHandle;
    this.journalHandle = undefined;
    await handle?.close().catch(() => {});
  }

  /**
   * Appends a journal line; resolves once it is written (to the operating system: it survives a crash of this
   * process). Lines queued while a write is under way go out together in the next write. Failures are logged, and
   * reported by `flush()`. The file is compacted when it holds more than about twice the lines it needs, so a long
   * run does not grow it unbounded.
   */
  journal(entry: Omit<JournalEntry, 'at'>): Promise<void> {
    const full: JournalEntry = { ...entry, at: Date.now() };
    if (full.state === 'dropped') this.journalLatest.delete(full.rel);
    else this.journalLatest.set(full.rel, full);
    const written = new Promise<void>((resolve) => {
      this.journalPending.text += `${JSON.stringify(full)}\n`;
      this.journalPending.done.push(resolve);
    });
    if (!this.journalWriting) {
      this.journalWriting = true;
      this.journalChain = this.writeJournal();
    }
    return written;
  }

  /** Writes queued journal lines until none are left. */
  private async writeJournal(): Promise<void> {
    try {
      for (;;) {
        const batch = this.journalPending;
        if (batch.done.length === 0) return;
        this.journalPending = { text: '', done: [] };
        try {
          if (this.journalLines + batch.done.length > 2 * this.journalLatest.size + JOURNAL_SLACK_LINES) {
            await this.compactJournal();
          } else {
            this.journalHandle ??= await open(this.journalPath, 'a');
            await this.journalHandle.write(batch.text, null, 'utf8');
            this.journalLines += batch.done.length;
          }
        } catch (err) {
          await this.closeJournalHandle();
          this.journalError = err instanceof SluiceError ? err : ioError('append to', this.journalPath, err);
          this.logger?.error({ err }, `could not write ${this.journalPath}`);
        }
        for (const done of batch.done) done();
      }
    } finally {
      this.journalWriting = false;
      if (this.closed) await this.closeJournalHandle();
    }
  }

  private checkOpen(): void {
    if (!this.opened || this.closed) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `The upload registry in ${this.logsDir} is ${this.closed ? 'closed' : 'not open'}; call open() first.`,
      );
    }
  }

  private markInProgress(urgent: boolean): void {
    this.inProgressDirty = true;
    if (urgent) this.scheduleUrgent();
    else if (this.lazyTimer === undefined && !this.urgentScheduled) {
      const wait = Math.max(0, this.lastInProgressWrite + this.updateEveryMs - Date.now());
      this.lazyTimer = setTimeout(() => {
        this.lazyTimer = undefined;
        void this.write().catch(() => {});
      }, wait);
      this.lazyTimer.unref();
    }
  }

  private scheduleUrgent(): void {
    if (this.urgentScheduled) return;
    this.urgentScheduled = true;
    const run = (): void => {
      this.urgentScheduled = false;
      this.lastUrgentWrite = Date.now();
      void this.write().catch(() => {});
    };
    const wait = this.lastUrgentWrite + URGENT_WRITE_MS - Date.now();
    if (wait <= 0) setImmediate(run);
    else setTimeout(run, wait).unref();
  }

  /** Queues one write of everything changed so far; resolves when it is on disk. */
  private write(): Promise<void> {
    const run = this.chain.then(() => this.writeNow());
    this.chain = run.catch(() => {});
    return run;
  }

  private async writeNow(): Promise<void> {
    if (this.inProgressDirty) {
      this.inProgressDirty = false;
      clearTimeout(this.lazyTimer);
      this.lazyTimer = undefined;
      this.lastInProgressWrite = Date.now();
      try {
        await writeRegistryAtomic(
          this.inProgressPath,
          IN_PROGRESS_COLUMNS,
          [...this.rows.values()].map(fromInProgress),
        );
      } catch (err) {
        this.inProgressDirty = true;
        this.logger?.error({ err }, `could not write ${this.inProgressPath}; will try again`);
        this.markInProgress(false);
        throw err;
      }
    }
    if (this.partialDirty) {
      this.partialDirty = false;
      const rows = this.partialRows;
      const n = rows.length;
      try {
        await writeRegistryTextAtomic(
          this.partialPath,
          joinRegistryText(formatRegistryHeader(COMPLETED_COLUMNS), this.partialLines.slice(0, n)),
        );
        if (n >= MAX_LINES_PER_PARTIAL_FILE && rows === this.partialRows) {
          const rolled = path.join(
            this.logsDir,
            rolledName(path.basename(this.partialPath), Date.now() / 1000),
          );
          await rename(this.partialPath, rolled);
          // rows completed meanwhile go to the next file
          this.partialRows = rows.slice(n);
          this.partialLines = this.partialLines.slice(n);
          if (this.partialRows.length > 0) this.partialDirty = true;
        }
      } catch (err) {
        this.partialDirty = true;
        this.logger?.error({ err }, `could not write ${this.partialPath}; will try again`);
        this.scheduleUrgentLater();
        throw err;
      }
    }
  }

  private scheduleUrgentLater(): void {
    setTimeout(() => this.scheduleUrgent(), 1000).unref();
  }

  /** Writes every pending change now and waits for it (and for pending journal lines). */
  async flush(): Promise<void> {
    await this.write();
    await this.journalChain;
    if (this.journalError !== undefined) {
      const err = this.journalError;
      this.journalError = undefined;
      throw err;
    }
  }

  /** Flushes, then merges this run's completion file into `uploaded_to_<topic>.csv`. */
  async close(): Promise<void> {
    if (this.closed || !this.opened) return;
    clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
    this.inProgressDirty = true;
    await this.flush();
    this.closed = true;
    await this.chain;
    await this.closeJournalHandle();
    await this.consolidate(true);
    this.partialRows = [];
    this.partialLines = [];
  }

  /** The topic this registry is for. */
  get topicName(): string {
    return this.topic;
  }
}
