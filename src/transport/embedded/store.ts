import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { describeError, SluiceError } from '../../errors.ts';
import { DEFAULT_SEGMENT_THRESHOLD, Segments } from './segments.ts';

/**
 * The embedded broker's storage: one SQLite database in WAL mode, shared by every process on the machine that
 * opens the same file. Every write is one SQLite transaction, so a record batch, its offsets and any consumer
 * offsets committed with it become visible together, and survive `kill -9` of any process.
 */

/**
 * 2: large values in segment files (records.seg/pos/vlen/crc, partitions.seg/seg_pos). A version-1 file is
 * upgraded in place on open (its records stay inside SQLite and remain readable).
 */
const SCHEMA_VERSION = '2';

const UPGRADE_FROM_1 = `
ALTER TABLE records ADD COLUMN seg INTEGER;
ALTER TABLE records ADD COLUMN pos INTEGER;
ALTER TABLE records ADD COLUMN vlen INTEGER;
ALTER TABLE records ADD COLUMN crc INTEGER;
ALTER TABLE partitions ADD COLUMN seg INTEGER NOT NULL DEFAULT 0;
ALTER TABLE partitions ADD COLUMN seg_pos INTEGER NOT NULL DEFAULT 0;
`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS topics (
  tid INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  partitions INTEGER NOT NULL,
  retention_ms INTEGER,
  retention_bytes INTEGER,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
  tid INTEGER NOT NULL,
  partition INTEGER NOT NULL,
  start_offset INTEGER NOT NULL DEFAULT 0,
  end_offset INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0,
  seg INTEGER NOT NULL DEFAULT 0,
  seg_pos INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tid, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
  tid INTEGER NOT NULL,
  partition INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  key BLOB,
  value BLOB,
  headers BLOB,
  seg INTEGER,
  pos INTEGER,
  vlen INTEGER,
  crc INTEGER,
  PRIMARY KEY (tid, partition, offset)
);
CREATE TABLE IF NOT EXISTS group_offsets (
  group_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  committed_at INTEGER NOT NULL,
  PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
  group_id TEXT NOT NULL,
  member_id TEXT NOT NULL,
  topics TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS owners (
  group_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  member_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
`;

export interface TopicRow {
  tid: number;
  name: string;
  partitions: number;
  retention_ms: number | null;
  retention_bytes: number | null;
}

export interface StoreOptions {
  /** How long a write waits for another process's write lock before failing. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** `normal` (default) survives a crash of any process; `full` also survives power loss, slower. */
  synchronous?: 'normal' | 'full';
  /**
   * Values of at least this many bytes are stored once in append-only segment files beside the database instead
   * of inside it (see segments.ts). Default 16 KiB; 0 puts every value there. Ignored for `:memory:`.
   */
  segmentThresholdBytes?: number;
  /** Size at which a partition starts its next segment file (retention removes whole files). Default 512 MiB. */
  segmentRollBytes?: number;
}

/** Maps SQLite failures to errors that say what happened to the file and what to do. */
export function storageError(path: string, err: unknown): SluiceError {
  const msg = describeError(err);
  if (/file is not a database|malformed|corrupt/i.test(msg)) {
    return new SluiceError(
      'SLUICE_EMBEDDED_CORRUPT',
      `The embedded broker file ${path} is not a readable sluice database (${msg}). sluice has not modified it. ` +
        `Move it aside (e.g. mv ${path} ${path}.bad) to start a fresh broker, or point --broker file:OTHER_PATH elsewhere.`,
      { cause: err, details: { path } },
    );
  }
  if (/database is locked|busy/i.test(msg)) {
    return new SluiceError(
      'SLUICE_EMBEDDED_LOCKED',
      `The embedded broker file ${path} stayed locked by another process past the busy timeout (${msg}). ` +
        `Nothing was written. Retry, stop the process holding the lock (check \`fuser ${path}\`), or raise the busy timeout.`,
      { cause: err, canRetry: true, details: { path } },
    );
  }
  return new SluiceError('SLUICE_TRANSPORT', `Embedded broker ${path}: ${msg}`, {
    cause: err,
    details: { path },
  });
}

export class Store {
  readonly path: string;
  readonly db: DatabaseSync;
  private readonly statements = new Map<string, StatementSync>();
  private topicCache = new Map<string, TopicRow>();
  private topicCacheVersion = -1;
  /** Segment files of large values; undefined for an in-memory database (everything stays inside SQLite). */
  readonly segments: Segments | undefined;
  /** Values of at least this many bytes go to `segments`. */
  readonly segmentThreshold: number;
  private readonly syncSegments: boolean;

  constructor(path: string, options: StoreOptions = {}) {
    this.path = path === ':memory:' ? path : resolve(path);
    this.segments = this.path === ':memory:' ? undefined : new Segments(this.path, options.segmentRollBytes);
    this.segmentThreshold =
      this.segments === undefined
        ? Number.POSITIVE_INFINITY
        : (options.segmentThresholdBytes ?? DEFAULT_SEGMENT_THRESHOLD);
    this.syncSegments = options.synchronous === 'full';
    if (this.path !== ':memory:') {
      const dir = dirname(this.path);
      if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
    }
    try {
      this.db = new DatabaseSync(this.path, { timeout: options.busyTimeoutMs ?? 5000 });
    } catch (err) {
      throw storageError(this.path, err);
    }
    try {
      // 64 KiB pages: values up to the segment threshold are stored inline, and bigger pages halve the insert cost
      // of blobs (measured 280 → 562 MiB/s). Only takes effect on a new file; an existing file keeps its page size.
      this.db.exec('PRAGMA page_size = 65536');
      this.db.exec('PRAGMA journal_mode = WAL');
      this.db.exec(`PRAGMA synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      this.db.exec('PRAGMA foreign_keys = OFF');
      this.write(() => {
        this.db.exec(SCHEMA);
        const row = this.stmt('SELECT value FROM meta WHERE key = ?').get('schema') as
          | { value: string }
          | undefined;
        if (row === undefined) {
          this.stmt('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema', SCHEMA_VERSION);
        } else if (row.value === '1') {
          this.db.exec(UPGRADE_FROM_1);
          this.stmt('UPDATE meta SET value = ? WHERE key = ?').run(SCHEMA_VERSION, 'schema');
        } else if (row.value !== SCHEMA_VERSION) {
          throw new SluiceError(
            'SLUICE_EMBEDDED_CORRUPT',
            `The embedded broker file ${this.path} has schema version ${row.value}; this sluice reads version ${SCHEMA_VERSION}. ` +
              'Use the sluice version that wrote it, or move the file aside to start fresh.',
          );
        }
      });
    } catch (err) {
      this.db.close();
      if (err instanceof SluiceError) throw err;
      throw storageError(this.path, err);
    }
  }

  stmt(sql: string): StatementSync {
    let s = this.statements.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /** Runs `fn` in one write transaction (BEGIN IMMEDIATE), mapping SQLite failures to sluice errors. */
  write<T>(fn: () => T): T {
    try {
      this.db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      throw storageError(this.path, err);
    }
    try {
      const result = fn();
      if (this.syncSegments) this.segments?.syncTouched();
      else this.segments?.forgetTouched();
      this.db.exec('COMMIT');
      return result;
    } catch (err) {
      this.segments?.forgetTouched();
      try {
        this.db.exec('ROLLBACK');
      } catch {
        // the transaction may already be rolled back by SQLite itself
      }
      if (err instanceof SluiceError) throw err;
      throw storageError(this.path, err);
    }
  }

  read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      throw storageError(this.path, err);
    }
  }

  /** Changes whenever another connection commits; cheap enough to poll. */
  dataVersion(): number {
    return (this.stmt('PRAGMA data_version').get() as { data_version: number }).data_version;
  }

  /** The topic's row, cached until any connection changes the database. */
  topic(name: string): TopicRow | undefined {
    const version = this.dataVersion();
    if (version !== this.topicCacheVersion) {
      this.topicCache = new Map();
      this.topicCacheVersion = version;
    }
    let row = this.topicCache.get(name);
    if (row === undefined) {
      row = this.stmt(
        'SELECT tid, name, partitions, retention_ms, retention_bytes FROM topics WHERE name = ?',
      ).get(name) as TopicRow | undefined;
      if (row !== undefined) this.topicCache.set(name, row);
    }
    return row;
  }

  /** Our own writes do not change `data_version` for this connection: forget cached topics after them. */
  invalidateTopics(): void {
    this.topicCache = new Map();
  }

  close(): void {
    this.statements.clear();
    this.segments?.close();
    if (this.db.isOpen) this.db.close();
  }
}
