/**
 * `DataFileUploadDirectory`: watches a directory tree and uploads every selected file as OpenMSIStream chunk
 * messages once it has stopped changing (shared/spec/openmsistream-compat.md, sections 4, 5, 11, 13).
 *
 * - Watching: chokidar, recursive; `usePolling` for SMB/CIFS/NFS mounts where change notifications do not arrive.
 *   A file counts as finished once `lagTimeSecs` (default 3) pass without an add/change event for it.
 * - Selection: `selectFile` (sluice default: no path component starting with `.`, nothing under the top-level
 *   `LOGS/` directory, no name ending `.log`), or `uploadRegex` with upstream's semantics (Python `re.match`, i.e.
 *   anchored at the start only, against the `/`-separated relative path; plus: regular files only, not under
 *   `LOGS/`, own name not starting with `.`). `LEGACY_UPLOAD_REGEX` is upstream's default regex.
 * - Sending: up to `maxFilesInFlight` files at once (default 2; upstream sends one at a time), each with up to
 *   `maxInFlight` chunks between reading and acknowledgement, and all together bounded by `queueMaxSizeMB` of chunk
 *   data (default 500 MB, as upstream's queue).
 * - Generations: a file modified during or after its upload is uploaded again once it is stable (new file hash,
 *   new mtime), after the current upload of it ends. An event that did not change size or mtime since the last
 *   upload sends nothing.
 * - Registry and restart: see `upload-registry.ts`. After a restart, in-progress files resume (only chunks not yet
 *   delivered are sent, when the file is unchanged; a changed file is sent whole as a new generation; a changed
 *   chunk size is an error), files that were queued but not started are uploaded, and completed files are sent
 *   again only when their size or mtime changed (upstream never re-sends them). Without `uploadExisting`, other
 *   files already present at startup are left alone, as upstream.
 * - Stop (`stop()`, SIGINT/SIGTERM in the CLI): stop watching, let chunks already sent be acknowledged, leave the
 *   rest of each in-progress file in the registry for the next start, flush the registries, send a final heartbeat.
 */

import { EventEmitter } from 'node:events';
import type { BigIntStats, Dirent, Stats } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { type FSWatcher, watch } from 'chokidar';
import { pino } from 'pino';
import { describeError, isSluiceError, SluiceError } from '../errors.ts';
import { Heartbeats, PROGRAM_COUNTERS, stableProgramId } from '../runtime/heartbeat.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Producer, Transport } from '../transport/types.ts';
import { DEFAULT_CHUNK_SIZE } from './chunk-codec.ts';
import { filePartitioner } from './chunk-key.ts';
import { LOGS_DIR_NAME } from './registry/names.ts';
import {
  ByteBudget,
  type ChunkAcknowledged,
  checkChunkSize,
  chunkCount,
  DEFAULT_MAX_IN_FLIGHT,
  type FileVersion,
  fileVersion,
  sameVersion,
  UploadDataFile,
} from './upload-data-file.ts';
import { type InProgressEntry, type JournalEntry, UploadRegistry } from './upload-registry.ts';

/**
 * OpenMSIStream's default `--upload_regex`, for users who need exactly upstream's selection. Quirk: the lookahead
 * `.*.log` rejects every relative path containing `log` after its first character, so `catalog.csv`,
 * `blog/post.txt` and `data/logger.dat` are never uploaded, while `log.txt` is. sluice's default selection
 * (`selectFile`) does what the regex was meant to do.
 */
export const LEGACY_UPLOAD_REGEX = '^((?!(\\.|.*.log))).*$';

/** Upstream's `--watchdog_lag_time` default, seconds. */
export const DEFAULT_LAG_TIME_SECS = 3;
/** Upstream's `--queue_max_size` default, MB (10^6 bytes). */
export const DEFAULT_QUEUE_MAX_SIZE_MB = 500;
export const DEFAULT_MAX_FILES_IN_FLIGHT = 2;

/**
 * sluice's default selection for a `/`-separated path relative to the upload directory: false for anything under
 * the top-level `LOGS/` directory (the registry), any path with a component starting with `.`, and names ending in
 * `.log`.
 */
export function selectFile(relPath: string): boolean {
  const parts = relPath.split('/');
  if (parts.length > 1 && parts[0] === LOGS_DIR_NAME) return false;
  if (parts.some((p) => p.startsWith('.'))) return false;
  return !(parts[parts.length - 1] as string).endsWith('.log');
}

/**
 * A selector with upstream's rules around a user regex: Python `re.match` semantics (anchored at the start only),
 * not under the top-level `LOGS/`, own name not starting with `.`. The regex is compiled as a JavaScript regex,
 * which agrees with Python's for the usual syntax (classes, groups, alternation, lookahead, `\d`, `\w`, `\.`).
 */
export function regexSelector(regex: RegExp | string): (relPath: string) => boolean {
  let re: RegExp;
  try {
    re = new RegExp(
      `^(?:${typeof regex === 'string' ? regex : regex.source})`,
      typeof regex === 'string' ? '' : regex.flags.replace('g', '').replace('y', ''),
    );
  } catch (err) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `--upload_regex ${JSON.stringify(String(regex))} is not a valid regular expression: ${describeError(err)}. ` +
        'Fix the pattern (it is matched against the path relative to the upload directory, e.g. ^.*\\.dat$).',
    );
  }
  return (relPath: string) => {
    const parts = relPath.split('/');
    if (parts.length > 1 && parts[0] === LOGS_DIR_NAME) return false;
    if ((parts[parts.length - 1] as string).startsWith('.')) return false;
    return re.test(relPath);
  };
}

export interface HeartbeatSettings {
  topic: string;
  /** Default: stable, `DataFileUploadDirectory_<hash of the directory>`. */
  programId?: string;
  /** Default 900 s. */
  intervalSecs?: number;
}

export interface DataFileUploadDirectoryOptions {
  /** The directory to watch; must exist. */
  dir: string;
  transport: Transport;
  topic: string;
  /** Power of two; default 524288. */
  chunkSize?: number;
  /** Upstream-style regex (see `regexSelector`); default: `selectFile`. */
  uploadRegex?: RegExp | string;
  /** Bound on chunk data between reading and acknowledgement, in MB (10^6 bytes); default 500. */
  queueMaxSizeMB?: number;
  /** Also upload files already present at startup (not those already uploaded and unchanged). Default false. */
  uploadExisting?: boolean;
  /** Seconds without a change before a file is uploaded; default 3. */
  lagTimeSecs?: number;
  /** Poll the file system instead of using change notifications (network drives). Default false. */
  usePolling?: boolean;
  /** Polling interval; default a third of the lag time, between 100 ms and 1 s. */
  pollingIntervalMs?: number;
  /** Chunks of one file between reading and acknowledgement; default 8. */
  maxInFlight?: number;
  /** Files uploaded at the same time; default 2. */
  maxFilesInFlight?: number;
  /** Send heartbeats (spec section 4) to this topic. */
  heartbeat?: HeartbeatSettings;
  /** Create missing topics when producing (default false, like upstream). */
  autoCreateTopics?: boolean;
  /** Use this producer instead of making one from `transport` (it is not closed by `stop()`). */
  producer?: Producer;
  logger?: Logger;
  /** Longest delay before chunk progress reaches the in-progress registry file; default 5 s (upstream). */
  registryUpdateSecs?: number;
  /** Retries per chunk before a file fails (it is tried again later); default 8. */
  deliveryRetries?: number;
  /** First retry delay of a chunk, ms; default 100. */
  retryDelayMs?: number;
  /** First delay before a failed file is tried again, ms (doubles up to 60 s); default 1000. */
  fileRetryDelayMs?: number;
}

export type QueueReason =
  | 'new'
  | 'modified'
  | 'existing'
  | 'changed-while-stopped'
  | 'restart'
  | 'resume'
  | 'retry';

export interface QueuedEvent {
  relPath: string;
  reason: QueueReason;
}

export interface UploadedEvent {
  relPath: string;
  /** Absolute path. */
  path: string;
  /** Chunks sent by this upload (fewer than `nTotalChunks` when it resumed). */
  chunks: number;
  nTotalChunks: number;
  /** File data bytes sent by this upload. */
  bytes: number;
  ms: number;
  /** Whole-file SHA-512, hex. */
  fileHash: string;
  /** True when it continued an upload begun before a restart or a failure. */
  resumed: boolean;
}

export interface FailedEvent {
  relPath: string;
  error: unknown;
  /** False when the file is gone; otherwise it is tried again after a delay. */
  willRetry: boolean;
}

export interface SkippedEvent {
  relPath: string;
  reason: 'unchanged' | 'deleted';
}

export interface DataFileUploadDirectoryEvents {
  queued: [QueuedEvent];
  uploaded: [UploadedEvent];
  failed: [FailedEvent];
  skipped: [SkippedEvent];
  stopped: [];
}

export interface UploadDirectoryStats {
  pending: number;
  queued: number;
  active: number;
  filesUploaded: number;
  filesFailed: number;
  chunksSent: number;
  bytesSent: number;
}

interface Job {
  rel: string;
  reason: QueueReason;
  /** Continue this in-progress row (after a restart or a failure). */
  resume?: { entry: InProgressEntry; expectHash?: string };
}

interface ActiveState {
  again: boolean;
}

function posixRel(root: string, abs: string): string {
  const rel = path.relative(root, abs);
  return path.sep === '/' ? rel : rel.split(path.sep).join('/');
}

export class DataFileUploadDirectory extends EventEmitter<DataFileUploadDirectoryEvents> {
  readonly dir: string;
  readonly topic: string;
  readonly chunkSize: number;
  readonly registry: UploadRegistry;
  private readonly options: DataFileUploadDirectoryOptions;
  private readonly select: (relPath: string) => boolean;
  private readonly pruneHidden: boolean;
  private readonly lagMs: number;
  private readonly log: Logger;
  private readonly budget: ByteBudget;
  private readonly maxFilesInFlight: number;
  private readonly stopController = new AbortController();

  private producer: Producer | undefined;
  private ownProducer = false;
  private heartbeats: Heartbeats | undefined;
  private watcher: FSWatcher | undefined;
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private readonly queue: Job[] = [];
  private readonly queued = new Set<string>();
  private readonly active = new Map<string, ActiveState>();
  private readonly running = new Set<Promise<void>>();
  /** Size, mtime and hash of the last completed upload of each path. */
  private readonly lastUploaded = new Map<string, FileVersion & { hash?: string }>();
  private idleWaiters: Array<() => void> = [];
  private started = false;
  private stopping: Promise<void> | undefined;
  private readonly counters = { filesUploaded: 0, filesFailed: 0, chunksSent: 0, bytesSent: 0 };

  constructor(options: DataFileUploadDirectoryOptions) {
    super();
    this.options = options;
    this.dir = path.resolve(options.dir);
    this.topic = options.topic;
    this.chunkSize = checkChunkSize(options.chunkSize ?? DEFAULT_CHUNK_SIZE);
    if (options.uploadRegex !== undefined) {
      this.select = regexSelector(options.uploadRegex);
      this.pruneHidden = false;
    } else {
      this.select = selectFile;
      this.pruneHidden = true;
    }
    const lag = options.lagTimeSecs ?? DEFAULT_LAG_TIME_SECS;
    if (!(lag >= 0) || !Number.isFinite(lag)) {
      throw new SluiceError('SLUICE_USAGE', `Lag time ${lag} s is not a number of seconds ≥ 0.`);
    }
    this.lagMs = lag * 1000;
    const queueMb = options.queueMaxSizeMB ?? DEFAULT_QUEUE_MAX_SIZE_MB;
    if (!(queueMb > 0) || !Number.isFinite(queueMb)) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `Queue size ${queueMb} MB is not a positive number of megabytes.`,
      );
    }
    this.budget = new ByteBudget(Math.max(1, Math.floor(queueMb * 1e6)));
    this.maxFilesInFlight = options.maxFilesInFlight ?? DEFAULT_MAX_FILES_IN_FLIGHT;
    if (!Number.isSafeInteger(this.maxFilesInFlight) || this.maxFilesInFlight < 1) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `maxFilesInFlight ${this.maxFilesInFlight} must be a whole number ≥ 1.`,
      );
    }
    this.log = options.logger ?? pino({ level: 'silent' });
    this.registry = new UploadRegistry({
      uploadDir: this.dir,
      topic: options.topic,
      updateEverySecs: options.registryUpdateSecs,
      logger: this.log,
    });
  }

  /** Counters since `start()`. */
  stats(): UploadDirectoryStats {
    return {
      pending: this.pending.size,
      queued: this.queue.length,
      active: this.active.size,
      ...this.counters,
    };
  }

  /**
   * Reads the registry, checks that in-progress files can resume, starts the producer, heartbeats and the watcher,
   * then queues resumed, restarted, changed and (with `uploadExisting`) existing files. Resolves once the watcher is
   * ready, so a file created after that is seen.
   */
  async start(): Promise<void> {
    if (this.started)
      throw new SluiceError('SLUICE_USAGE', 'start() was already called on this upload directory.');
    this.started = true;
    try {
      await this.startUp();
    } catch (err) {
      await this.stop().catch(() => {});
      throw err;
    }
  }

  private async startUp(): Promise<void> {
    let st: Stats;
    try {
      st = await stat(this.dir);
    } catch (err) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `Upload directory ${this.dir} cannot be read: ${describeError(err)}. Pass an existing directory.`,
        { cause: err },
      );
    }
    if (!st.isDirectory()) {
      throw new SluiceError('SLUICE_USAGE', `${this.dir} is not a directory. Pass the directory to watch.`);
    }
    const snapshot = await this.registry.open();
    for (const [rel, j] of snapshot.journal) {
      if (j.state === 'completed' && j.size !== undefined && j.mtimeNs !== undefined) {
        this.lastUploaded.set(rel, { size: j.size, mtimeNs: j.mtimeNs, hash: j.hash });
      }
    }
    const resumeJobs = await this.planResume(snapshot.inProgress, snapshot.journal);

    if (this.options.producer !== undefined) {
      this.producer = this.options.producer;
    } else {
      this.producer = this.options.transport.producer({
        autoCreateTopics: this.options.autoCreateTopics ?? false,
        partitioner: filePartitioner,
      });
      this.ownProducer = true;
    }
    const hb = this.options.heartbeat;
    if (hb !== undefined) {
      this.heartbeats = new Heartbeats({
        producer: this.producer,
        topic: hb.topic,
        programId: hb.programId ?? stableProgramId('DataFileUploadDirectory', this.dir),
        intervalSecs: hb.intervalSecs,
        counters: PROGRAM_COUNTERS.upload,
        logger: this.log,
      });
      this.heartbeats.start();
    }

    await this.startWatcher();
    this.log.info(
      { dir: this.dir, topic: this.topic, chunkSize: this.chunkSize, resumed: resumeJobs.length },
      `watching ${this.dir} for files to upload to ${this.topic}`,
    );
    for (const job of resumeJobs) this.enqueue(job);
    await this.scanExisting(snapshot.journal, snapshot.completed, new Set(resumeJobs.map((j) => j.rel)));
    this.checkIdle();
  }

  /** Decides, before anything is sent, how each in-progress row continues; throws when one cannot. */
  private async planResume(rows: InProgressEntry[], journal: Map<string, JournalEntry>): Promise<Job[]> {
    const jobs: Job[] = [];
    const problems: string[] = [];
    for (const entry of rows) {
      const abs = path.join(this.dir, ...entry.relPath.split('/'));
      let st: Stats | undefined;
      try {
        st = await stat(abs);
      } catch {
        st = undefined;
      }
      if (st === undefined || !st.isFile()) {
        this.log.warn(
          { file: entry.relPath },
          `${entry.relPath} was in progress but is gone: dropping it from the registry`,
        );
        this.registry.drop(entry.relPath);
        void this.registry.journal({ rel: entry.relPath, state: 'dropped' });
        continue;
      }
      const j = journal.get(entry.relPath);
      if (
        j?.state === 'completed' &&
        j.size === st.size &&
        j.mtimeNs !== undefined &&
        j.mtimeNs === (await stat(abs, { bigint: true }).catch(() => undefined))?.mtimeNs.toString()
      ) {
        // completed just before a crash that left its row here: the journal says so, and the file is unchanged
        this.log.info(
          { file: entry.relPath },
          `${entry.relPath} was completed before the restart: moving its row to the completed registry`,
        );
        this.registry.complete(entry.relPath, new Date(j.at));
        continue;
      }
      if (entry.delivered.size === 0) {
        jobs.push({ rel: entry.relPath, reason: 'resume' });
        continue;
      }
      if (j !== undefined && !(j.state === 'hashed' && j.nChunks === entry.nChunks && j.hash !== undefined)) {
        // sluice wrote this row, but its journal does not say which version those chunks belong to (the file was
        // re-queued after changing mid-upload): only a whole new generation is safe
        this.log.info(
          { file: entry.relPath },
          `${entry.relPath}: cannot tell which version of it was partly sent; sending the whole file again`,
        );
        jobs.push({ rel: entry.relPath, reason: 'resume' });
        continue;
      }
      if (j !== undefined) {
        if (j.chunkSize !== this.chunkSize) {
          problems.push(
            `${entry.relPath}: ${entry.delivered.size} of ${entry.nChunks} chunks were sent with chunk size ` +
              `${j.chunkSize}, now it is ${this.chunkSize}. Restart with --chunk_size ${j.chunkSize}, or delete its ` +
              'row from the in-progress file to send the whole file again',
          );
          continue;
        }
        jobs.push({ rel: entry.relPath, reason: 'resume', resume: { entry, expectHash: j.hash } });
        continue;
      }
      const now = chunkCount(st.size, this.chunkSize);
      if (now !== entry.nChunks) {
        problems.push(
          `${entry.relPath}: the registry lists ${entry.nChunks} chunks, but the file has ${now} at chunk size ` +
            `${this.chunkSize}. Did the chunk size change? Restart with the chunk size it was sent with, or delete ` +
            'its row from the in-progress file to send the whole file again',
        );
        continue;
      }
      jobs.push({ rel: entry.relPath, reason: 'resume', resume: { entry } });
    }
    if (problems.length > 0) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `Cannot resume ${problems.length} in-progress upload(s) listed in ${this.registry.inProgressPath}:\n  ` +
          problems.join(';\n  '),
        { details: { registry: this.registry.inProgressPath, problems } },
      );
    }
    return jobs;
  }

  /**
   * Paths the watcher and the startup scan need not descend into: the top-level `LOGS/` and (default selection)
   * hidden directories. Files are filtered by `select` on the path of the event instead, because chokidar hands
   * this matcher a normalized path in which a `\` inside a file name has become `/`.
   */
  private ignored(abs: string, isDirectory: boolean): boolean {
    const rel = posixRel(this.dir, abs);
    if (rel === '' || rel.startsWith('..')) return false;
    if (rel === LOGS_DIR_NAME || rel.startsWith(`${LOGS_DIR_NAME}/`)) return true;
    return this.pruneHidden && isDirectory && path.basename(abs).startsWith('.');
  }

  private async startWatcher(): Promise<void> {
    const polling = this.options.usePolling === true;
    const interval =
      this.options.pollingIntervalMs ?? Math.min(1000, Math.max(100, Math.round(this.lagMs / 3)));
    const watcher = watch(this.dir, {
      ignoreInitial: true,
      persistent: true,
      followSymlinks: false,
      backend: polling ? 'polling' : 'auto',
      pollingInterval: interval,
      pollingBinaryInterval: interval,
      ignored: (p: string, st?: Stats) => this.ignored(p, st?.isDirectory() === true),
    });
    this.watcher = watcher;
    watcher.on('add', (p) => this.onEvent(p));
    watcher.on('change', (p) => this.onEvent(p));
    watcher.on('unlink', (p) => this.onUnlink(p));
    watcher.on('error', (err) => this.log.warn({ err }, `file watcher error: ${describeError(err)}`));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: unknown): void => reject(err);
      watcher.once('ready', () => {
        watcher.off('error', onError);
        resolve();
      });
      watcher.once('error', onError);
    });
  }

  private relOf(abs: string): string | undefined {
    const rel = posixRel(this.dir, path.resolve(this.dir, abs));
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
    return rel;
  }

  private onEvent(abs: string): void {
    const rel = this.relOf(abs);
    if (rel === undefined || !this.select(rel)) return;
    this.touch(rel);
  }

  private onUnlink(abs: string): void {
    const rel = this.relOf(abs);
    if (rel === undefined) return;
    const t = this.pending.get(rel);
    if (t !== undefined) {
      clearTimeout(t);
      this.pending.delete(rel);
      this.checkIdle();
    }
  }

  /** (Re)starts the lag timer of a file. */
  private touch(rel: string, reason?: QueueReason): void {
    if (this.stopping !== undefined) return;
    const old = this.pending.get(rel);
    if (old !== undefined) clearTimeout(old);
    this.pending.set(
      rel,
      setTimeout(() => {
        this.pending.delete(rel);
        this.enqueue({ rel, reason: reason ?? (this.lastUploaded.has(rel) ? 'modified' : 'new') });
      }, this.lagMs),
    );
  }

  /** Queues now when the file has not changed for the lag time already, else after it. */
  private schedule(rel: string, reason: QueueReason, st: BigIntStats): void {
    if (Date.now() - Number(st.mtimeMs) >= this.lagMs) this.enqueue({ rel, reason });
    else this.touch(rel, reason);
  }

  private enqueue(job: Job): void {
    if (this.stopping !== undefined) return;
    const activeState = this.active.get(job.rel);
    if (activeState !== undefined) {
      activeState.again = true;
      return;
    }
    if (this.queued.has(job.rel)) return;
    this.queued.add(job.rel);
    this.queue.push(job);
    this.log.info({ file: job.rel, reason: job.reason }, `queued ${job.rel} (${job.reason})`);
    if (job.rel.includes('\\')) {
      this.log.warn(
        { file: job.rel },
        `${job.rel} has a backslash in its name: sluice consumers quarantine such paths (on Windows it is a ` +
          'separator); rename the file if it must be downloaded by sluice',
      );
    }
    if (!job.resume) void this.registry.journal({ rel: job.rel, state: 'queued' });
    this.emit('queued', { relPath: job.rel, reason: job.reason });
    this.pump();
  }

  private pump(): void {
    while (this.stopping === undefined && this.active.size < this.maxFilesInFlight && this.queue.length > 0) {
      const job = this.queue.shift() as Job;
      this.queued.delete(job.rel);
      const state: ActiveState = { again: false };
      this.active.set(job.rel, state);
      const run: Promise<void> = this.uploadOne(job)
        .catch((err: unknown) => {
          this.log.error(
            { err, file: job.rel },
            `unexpected error uploading ${job.rel}: ${describeError(err)}`,
          );
        })
        .finally(() => {
          this.active.delete(job.rel);
          this.running.delete(run);
          if (state.again) this.enqueue({ rel: job.rel, reason: 'modified' });
          this.pump();
          this.checkIdle();
        });
      this.running.add(run);
    }
  }

  private async scanExisting(
    journal: Map<string, JournalEntry>,
    completed: Map<string, { completed: Date }>,
    skip: Set<string>,
  ): Promise<void> {
    const walk = async (absDir: string): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(absDir, { withFileTypes: true });
      } catch (err) {
        this.log.warn({ err, dir: absDir }, `cannot list ${absDir}: ${describeError(err)}`);
        return;
      }
      for (const d of entries) {
        const abs = path.join(absDir, d.name);
        if (this.ignored(abs, d.isDirectory())) continue;
        if (d.isDirectory()) {
          await walk(abs);
          continue;
        }
        if (!d.isFile() && !d.isSymbolicLink()) continue;
        const rel = posixRel(this.dir, abs);
        if (skip.has(rel) || !this.select(rel)) continue;
        let st: BigIntStats;
        try {
          st = await stat(abs, { bigint: true });
        } catch {
          continue;
        }
        if (!st.isFile()) continue;
        this.considerExisting(rel, st, journal.get(rel), completed.get(rel));
      }
    };
    await walk(this.dir);
  }

  private considerExisting(
    rel: string,
    st: BigIntStats,
    j: JournalEntry | undefined,
    done: { completed: Date } | undefined,
  ): void {
    if (j?.state === 'queued' || j?.state === 'hashed') {
      this.schedule(rel, 'restart', st);
      return;
    }
    const last = this.lastUploaded.get(rel);
    if (last !== undefined) {
      if (!sameVersion(last, fileVersion(st))) this.schedule(rel, 'changed-while-stopped', st);
      return;
    }
    if (done !== undefined) {
      // No journal (the registry was written by upstream): the registry keeps no size or mtime, only the second
      // the upload completed; the file changed if it was modified after the end of that second.
      if (Number(st.mtimeMs) > done.completed.getTime() + 1000)
        this.schedule(rel, 'changed-while-stopped', st);
      return;
    }
    if (this.options.uploadExisting === true) this.schedule(rel, 'existing', st);
  }

  private onChunk(rel: string, ack: ChunkAcknowledged): void {
    this.registry.delivered(rel, ack.chunkI);
    this.counters.chunksSent++;
    this.counters.bytesSent += ack.dataBytes;
    this.heartbeats?.add('n_messages_produced', 1);
    this.heartbeats?.add('n_bytes_produced', ack.recordBytes);
  }

  private async uploadOne(job: Job): Promise<void> {
    const rel = job.rel;
    const abs = path.join(this.dir, ...rel.split('/'));
    const file = new UploadDataFile(abs, { rootDir: this.dir, chunkSize: this.chunkSize });
    try {
      await file.prepare();
    } catch (err) {
      this.handleFailure(job, err);
      return;
    }
    const last = this.lastUploaded.get(rel);
    if (
      job.reason !== 'resume' &&
      job.reason !== 'retry' &&
      last?.hash !== undefined &&
      last.hash === file.fileHash.toString('hex')
    ) {
      // e.g. a late or spurious watcher event, or only the mtime changed: the consumers have this content
      this.log.debug({ file: rel }, `${rel} has the same content as its last upload: not sending it again`);
      this.registry.drop(rel);
      this.emit('skipped', { relPath: rel, reason: 'unchanged' });
      return;
    }
    const all = (): Set<number> => new Set(Array.from({ length: file.nChunks }, (_, i) => i + 1));
    let delivered = new Set<number>();
    let toSend = all();
    let started = new Date();
    let resumed = false;
    if (job.resume !== undefined) {
      const { entry, expectHash } = job.resume;
      const same =
        entry.nChunks === file.nChunks &&
        (expectHash === undefined || expectHash === file.fileHash.toString('hex'));
      if (same) {
        delivered = new Set([...entry.delivered].filter((i) => i >= 1 && i <= file.nChunks));
        toSend = new Set([...toSend].filter((i) => !delivered.has(i)));
        started = entry.started;
        resumed = delivered.size > 0;
      } else if (entry.delivered.size > 0) {
        this.log.info(
          { file: rel },
          `${rel} changed since part of it was sent: sending the whole file as a new generation`,
        );
      }
    }
    await this.registry.journal({
      rel,
      state: 'hashed',
      size: file.version.size,
      mtimeNs: file.version.mtimeNs,
      chunkSize: this.chunkSize,
      nChunks: file.nChunks,
      hash: file.fileHash.toString('hex'),
    });
    this.registry.begin({
      filename: file.filename,
      relPath: rel,
      nChunks: file.nChunks,
      delivered,
      toSend,
      started,
    });
    const t0 = performance.now();
    let result: Awaited<ReturnType<UploadDataFile['upload']>>;
    try {
      result = await file.upload(this.producer as Producer, this.topic, {
        maxInFlight: this.options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
        chunks: toSend,
        signal: this.stopController.signal,
        budget: this.budget,
        retries: this.options.deliveryRetries,
        retryDelayMs: this.options.retryDelayMs,
        onChunk: (ack) => this.onChunk(rel, ack),
      });
    } catch (err) {
      this.handleFailure(job, err, file);
      return;
    }
    const ms = Math.round(performance.now() - t0);
    // the journal line first: after a crash, a file whose completion is in the journal is never sent again, even
    // when its row is still in the in-progress CSV file (see planResume)
    await this.registry.journal({
      rel,
      state: 'completed',
      size: file.version.size,
      mtimeNs: file.version.mtimeNs,
      chunkSize: this.chunkSize,
      nChunks: file.nChunks,
      hash: file.fileHash.toString('hex'),
    });
    this.registry.complete(rel);
    this.lastUploaded.set(rel, { ...file.version, hash: file.fileHash.toString('hex') });
    this.failures.delete(rel);
    this.counters.filesUploaded++;
    this.log.info(
      { file: rel, chunks: result.chunks, nTotalChunks: file.nChunks, bytes: result.bytes, ms, resumed },
      `uploaded ${rel}: ${result.chunks} chunk${result.chunks === 1 ? '' : 's'}` +
        `${resumed ? ` (resumed, of ${file.nChunks})` : ''}, ${result.bytes} bytes in ${ms} ms`,
    );
    // The registry files are written right away (complete() schedules it) but not waited for: the next file need
    // not wait for fsyncs of CSV files (they coalesce while files complete); the journal line above already
    // records the completion, and stop() flushes everything.
    this.registry.flush().catch((err: unknown) => {
      this.log.error({ err }, `could not write the registry after uploading ${rel}: ${describeError(err)}`);
    });
    this.emit('uploaded', {
      relPath: rel,
      path: abs,
      chunks: result.chunks,
      nTotalChunks: file.nChunks,
      bytes: result.bytes,
      ms,
      fileHash: file.fileHash.toString('hex'),
      resumed,
    });
  }

  private handleFailure(job: Job, err: unknown, file?: UploadDataFile): void {
    const rel = job.rel;
    if (isSluiceError(err, 'SLUICE_CLOSED') && err.details.stopped === true) {
      this.log.info({ file: rel }, `stopped while uploading ${rel}; the rest is sent after a restart`);
      return;
    }
    if (isSluiceError(err, 'SLUICE_FILE_CONFLICT')) {
      this.log.info({ file: rel }, `${rel} changed while being uploaded: sending it again once it is stable`);
      const state = this.active.get(rel);
      if (state !== undefined) state.again = false;
      this.touch(rel);
      return;
    }
    if (isSluiceError(err, 'SLUICE_IO') && err.details.code === 'ENOENT') {
      this.log.warn({ file: rel }, `${rel} was deleted before it could be uploaded`);
      this.registry.drop(rel);
      void this.registry.journal({ rel, state: 'dropped' });
      this.emit('skipped', { relPath: rel, reason: 'deleted' });
      return;
    }
    const attempts = (this.failures.get(rel) ?? 0) + 1;
    this.failures.set(rel, attempts);
    this.counters.filesFailed++;
    const delay = Math.min(60_000, (this.options.fileRetryDelayMs ?? 1000) * 2 ** (attempts - 1));
    this.log.error(
      { err, file: rel, attempts, retryInMs: delay },
      `failed to upload ${rel}: ${describeError(err)} (trying again in ${Math.round(delay / 1000)} s)`,
    );
    this.emit('failed', { relPath: rel, error: err, willRetry: true });
    const entry = this.registry.get(rel);
    const timer = setTimeout(() => {
      this.retryTimers.delete(rel);
      this.enqueue({
        rel,
        reason: 'retry',
        resume:
          entry !== undefined && file?.isPrepared
            ? { entry, expectHash: file.fileHash.toString('hex') }
            : undefined,
      });
    }, delay);
    this.retryTimers.set(rel, timer);
  }

  private isIdle(): boolean {
    return (
      this.pending.size === 0 &&
      this.queue.length === 0 &&
      this.active.size === 0 &&
      this.retryTimers.size === 0
    );
  }

  private checkIdle(): void {
    if (!this.isIdle() || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Resolves once nothing is waiting for its lag time, queued, uploading or waiting for a retry. Handy in tests and
   * scripts after creating files (resolves at once when already idle).
   */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Graceful stop: stops watching, lets chunks already sent be acknowledged, leaves the rest of in-progress files
   * (and files waiting for their lag time or a free slot) to the next start, flushes the registries, sends a final
   * heartbeat and closes the producer it made. Idempotent.
   */
  stop(): Promise<void> {
    if (this.stopping === undefined) {
      // Synchronously: no chunk is read after stop() returns, whatever the watcher takes to close.
      this.stopController.abort(new Error('upload directory stopped'));
      this.stopping = this.doStop();
    }
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.log.info({ dir: this.dir }, `stopping the upload of ${this.dir}`);
    await this.watcher?.close().catch(() => {});
    for (const [rel, t] of this.pending) {
      clearTimeout(t);
      void this.registry.journal({ rel, state: 'queued' });
    }
    this.pending.clear();
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.queue.length = 0;
    this.queued.clear();
    await Promise.allSettled([...this.running]);
    let registryError: unknown;
    if (this.started) {
      try {
        await this.registry.close();
      } catch (err) {
        registryError = err;
        this.log.error({ err }, `could not flush the upload registry: ${describeError(err)}`);
      }
    }
    await this.heartbeats?.stop();
    if (this.ownProducer) await this.producer?.close().catch(() => {});
    const s = this.counters;
    this.log.info(
      { ...s },
      `stopped: ${s.filesUploaded} file(s), ${s.chunksSent} chunk(s), ${s.bytesSent} bytes uploaded`,
    );
    this.checkIdle();
    this.emit('stopped');
    if (registryError !== undefined) throw registryError;
  }
}
