/**
 * Uploading one data file as OpenMSIStream chunk messages (shared/spec/openmsistream-compat.md, sections 1, 3, 13).
 *
 * Every chunk message carries the whole-file SHA-512, so nothing can be sent before the whole file is hashed:
 * 1. `prepare()` reads the file once and computes the whole-file SHA-512 and every chunk's SHA-512 in that one
 *    pass. A file of at most `MEMORY_FILE_MAX` bytes (4 MiB) is read into one buffer, which is kept until it is
 *    sent, so it is read once and never again; a larger file is read in 1 MiB blocks and only the 64-byte digests
 *    are kept (`nChunks × 64` bytes), so memory stays bounded whatever the file size.
 * 2. `upload()` sends the chunks, with at most `maxInFlight` chunks (and optionally a shared byte budget) between
 *    reading and acknowledgement. A large file's chunks are read again to be sent.
 *
 * A file that changes while it is uploaded fails with `SLUICE_FILE_CONFLICT` instead of sending chunks whose hashes
 * do not match their data, or bytes of two versions under one file hash. How this is checked:
 * - before the first chunk and between chunks, the file's identity (size, mtime and ctime in nanoseconds, inode)
 *   must still be the one `prepare()` saw before and after hashing. A buffered file's chunks are the very bytes
 *   that were hashed, so this only stops sending early.
 * - a re-read chunk of a large file was read from the version that was hashed when the identity is unchanged after
 *   the read: every write to a file sets its mtime and ctime to the current time, and a *settled* file (mtime and
 *   ctime at least `SETTLED_MS` older than the clock when `prepare()` started) cannot be written without changing
 *   them, however coarse the file system's timestamps are. A file that was still being written just before
 *   `prepare()` (not settled) has each re-read chunk hashed again and compared, as a second line of defence against
 *   timestamps that do not change within one clock tick. The upload directory only uploads files that have been
 *   stable for its lag time, so its files are settled.
 *
 * Chunking follows upstream exactly: chunk `i` (1-based) covers bytes `[(i-1)·size, min(i·size, fileSize))`, keys
 * come from `chunkKey`, `file_mtime` is the file's mtime in float seconds (computed the way Python's `st_mtime` is).
 * Unlike upstream, an empty file is sent as one empty chunk instead of not at all.
 *
 * Only the transport contract is used (`Producer.send` resolves when the record is acknowledged), so this works on
 * every transport.
 */

import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { describeError, isSluiceError, SluiceError } from '../errors.ts';
import type { Producer } from '../transport/types.ts';
import { filePool } from './buffer-pool.ts';
import { allocChunkValue, DEFAULT_CHUNK_SIZE, SHA512_LENGTH } from './chunk-codec.ts';
import { chunkKey } from './chunk-key.ts';

/** Largest accepted chunk size (1 GiB); Kafka's default message limit is 1 MB, so real values are far smaller. */
export const MAX_CHUNK_SIZE = 2 ** 30;

/** Default number of chunks between reading and acknowledgement for one file. */
export const DEFAULT_MAX_IN_FLIGHT = 8;

/** Default number of retries of a chunk whose delivery failed, before the upload fails. */
export const DEFAULT_DELIVERY_RETRIES = 8;

/** Block size of the hashing pass of a large file. */
const READ_BLOCK = 1024 * 1024;

/** Files up to this size are read once into memory by `prepare()` and sent from there (4 MiB). */
export const MEMORY_FILE_MAX = 4 * 1024 * 1024;

/**
 * A file whose mtime and ctime are this much older than the clock is settled: a write to it now would change them.
 * Re-read chunks of a settled file are checked by its identity (fstat), of others also by hashing them again.
 */
export const SETTLED_MS = 1000;

/** Errors a retry cannot fix: the upload fails at once. */
const NOT_RETRYABLE = new Set([
  'SLUICE_USAGE',
  'SLUICE_CONFIG_INVALID',
  'SLUICE_TOPIC_UNKNOWN',
  'SLUICE_CLOSED',
  'SLUICE_UNSUPPORTED',
]);

/** Throws SLUICE_USAGE unless `size` is a power of two from 1 to 2^30. */
export function checkChunkSize(size: unknown): number {
  if (
    typeof size !== 'number' ||
    !Number.isSafeInteger(size) ||
    size < 1 ||
    size > MAX_CHUNK_SIZE ||
    !Number.isInteger(Math.log2(size))
  ) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `Chunk size ${String(size)} is not a power of two between 1 and ${MAX_CHUNK_SIZE} bytes. Use a power of ` +
        `two such as ${DEFAULT_CHUNK_SIZE} (the default, 512 KiB) or 16384; OpenMSIStream requires the same.`,
      { details: { chunkSize: size } },
    );
  }
  return size;
}

/** Number of chunks of a file of `size` bytes: `ceil(size / chunkSize)`, and 1 for an empty file. */
export function chunkCount(size: number, chunkSize: number): number {
  return Math.max(1, Math.ceil(size / chunkSize));
}

/** The file's mtime in epoch seconds exactly as Python computes `os.stat().st_mtime` (`sec + nsec·1e-9`). */
export function pythonMtime(stats: BigIntStats): number {
  const ns = stats.mtimeNs;
  const sec = ns / 1_000_000_000n;
  const nsec = ns % 1_000_000_000n;
  const t = Number(sec) + Number(nsec) * 1e-9;
  return Number.isFinite(t) && t > 0 ? t : 0;
}

/** Identity of one version of a file: size and mtime in nanoseconds (as a decimal string, exact). */
export interface FileVersion {
  size: number;
  mtimeNs: string;
}

export function fileVersion(stats: BigIntStats): FileVersion {
  return { size: Number(stats.size), mtimeNs: stats.mtimeNs.toString() };
}

export function sameVersion(a: FileVersion | undefined, b: FileVersion | undefined): boolean {
  return a !== undefined && b !== undefined && a.size === b.size && a.mtimeNs === b.mtimeNs;
}

/** What must stay the same for the bytes of a file to be the ones hashed: size, mtime, ctime, inode, device. */
interface FileIdentity {
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  dev: bigint;
}

function identityOf(st: BigIntStats): FileIdentity {
  return { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, dev: st.dev };
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return (
    a.size === b.size &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs &&
    a.ino === b.ino &&
    a.dev === b.dev
  );
}

/**
 * A shared bound on the bytes of chunk data between reading and acknowledgement (the upload directory's
 * `--queue_max_size`). Waiters are served first come, first served. A request larger than the whole capacity is
 * granted once nothing else is held, so one huge chunk cannot deadlock.
 */
export class ByteBudget {
  readonly capacity: number;
  private used = 0;
  private readonly waiters: Array<{ n: number; grant: () => void }> = [];

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `A byte budget of ${String(capacity)} is not a positive whole number of bytes.`,
      );
    }
    this.capacity = capacity;
  }

  /** Bytes currently held. */
  get inUse(): number {
    return this.used;
  }

  /** Resolves once `n` bytes are available (and takes them); rejects with the signal's reason on abort. */
  acquire(n: number, signal?: AbortSignal): Promise<void> {
    const need = Math.min(n, this.capacity);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.waiters.length === 0 && this.used + need <= this.capacity) {
      this.used += need;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        n: need,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal?.reason);
        this.drain();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(n: number): void {
    this.used = Math.max(0, this.used - Math.min(n, this.capacity));
    this.drain();
  }

  private drain(): void {
    for (;;) {
      const next = this.waiters[0];
      if (next === undefined || this.used + next.n > this.capacity) return;
      this.waiters.shift();
      this.used += next.n;
      next.grant();
    }
  }
}

export interface UploadDataFileOptions {
  /**
   * The directory the file's `subdir_str` is relative to (the upload directory). Default: the file's own
   * directory, so `subdir_str` is `''`. The file must be inside it.
   */
  rootDir?: string;
  /** A power of two. Default 524288 (512 KiB), as upstream. */
  chunkSize?: number;
  /** Sent as `filename_append`; consumers write `stem + append + suffix`. Default `''`. */
  filenameAppend?: string;
  /**
   * How old (ms) the file's mtime and ctime must be when `prepare()` starts for re-read chunks to be checked by the
   * file's identity alone, instead of being hashed again. Default `SETTLED_MS` (1000); tests set other values.
   */
  settledMs?: number;
}

export interface ChunkAcknowledged {
  chunkI: number;
  nTotalChunks: number;
  /** Bytes of file data in the chunk. */
  dataBytes: number;
  /** Key plus value bytes of the record (what heartbeats count). */
  recordBytes: number;
}

export interface UploadOptions {
  /** Chunks between reading and acknowledgement at most. Default 8. */
  maxInFlight?: number;
  /** Only these chunk indices (1-based), e.g. the chunks not yet delivered before a restart. Default: all. */
  chunks?: Iterable<number>;
  /** Called once per acknowledged chunk. An exception thrown here fails the upload. */
  onChunk?: (ack: ChunkAcknowledged) => void;
  /**
   * Stops sending: no new chunk is read, chunks already sent are waited for (and reported through `onChunk`), then
   * `upload()` rejects with `SLUICE_CLOSED` (`details.stopped === true`).
   */
  signal?: AbortSignal;
  /** Retries of a chunk whose delivery failed with a retryable error. Default 8. */
  retries?: number;
  /** First retry delay; doubles per retry up to 5 s. Default 100 ms. */
  retryDelayMs?: number;
  /** A byte budget shared with other uploads; each chunk holds its data length until acknowledged. */
  budget?: ByteBudget;
}

export interface UploadResult {
  /** Chunks sent and acknowledged by this call. */
  chunks: number;
  nTotalChunks: number;
  /** Bytes of file data in those chunks. */
  bytes: number;
  /** Key plus value bytes of those records. */
  recordBytes: number;
  /** Retries needed (0 when every chunk went through at once). */
  retries: number;
  /** Time of `upload()`, including the hashing pass when `prepare()` had not been called before. */
  durationMs: number;
  fileHash: Buffer;
}

function conflict(file: string, what: string): SluiceError {
  return new SluiceError(
    'SLUICE_FILE_CONFLICT',
    `${file} changed while it was being uploaded (${what}). Upload it again once nothing writes to it any more; ` +
      'the upload directory does this by itself and sends the new content as a new generation.',
    { canRetry: true, details: { path: file, changedDuringUpload: true } },
  );
}

function ioError(file: string, action: string, err: unknown): SluiceError {
  const code = (err as { code?: unknown }).code;
  return new SluiceError(
    'SLUICE_IO',
    `Could not ${action} ${file}: ${describeError(err)}. Check that the file exists and is readable by this user.`,
    {
      cause: err,
      canRetry: code === 'EAGAIN' || code === 'EBUSY' || code === 'EMFILE',
      details: { path: file, code },
    },
  );
}

function stoppedError(file: string, sent: number, remaining: number): SluiceError {
  return new SluiceError(
    'SLUICE_CLOSED',
    `Upload of ${file} was stopped with ${remaining} chunk(s) not sent (${sent} sent before stopping). ` +
      'Upload it again to send the rest (the upload directory resumes it from its registry after a restart).',
    { details: { path: file, stopped: true, sent, remaining } },
  );
}

function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve(false);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function sha512(data: Buffer): Buffer {
  return createHash('sha512').update(data).digest();
}

interface Prepared {
  version: FileVersion;
  identity: FileIdentity;
  /** mtime and ctime were at least SETTLED_MS in the past when hashing started. */
  settled: boolean;
  size: number;
  mtime: number;
  nChunks: number;
  fileHash: Buffer;
  chunkHashes: Buffer;
  /** The whole file, for a file of at most MEMORY_FILE_MAX bytes, until `upload()` has sent it. */
  data: Buffer | null;
  /** `upload()` calls running (the buffer goes back to the pool when the last one ends). */
  uploads: number;
}

/** One file to upload. Construct, then `upload()` (which calls `prepare()` if needed). */
export class UploadDataFile {
  /** Absolute path of the file. */
  readonly path: string;
  /** Absolute path of the root directory `subdirStr` is relative to. */
  readonly rootDir: string;
  readonly filename: string;
  /** Parent directory relative to the root, `/`-separated; `''` at the root. */
  readonly subdirStr: string;
  /** `subdirStr/filename` (or just `filename`), `/`-separated. */
  readonly relPath: string;
  readonly chunkSize: number;
  readonly filenameAppend: string;
  private readonly settledMs: number;

  private prepared: Prepared | undefined;

  constructor(filePath: string, options: UploadDataFileOptions = {}) {
    this.path = path.resolve(filePath);
    this.rootDir = path.resolve(options.rootDir ?? path.dirname(this.path));
    this.chunkSize = checkChunkSize(options.chunkSize ?? DEFAULT_CHUNK_SIZE);
    this.filenameAppend = options.filenameAppend ?? '';
    this.settledMs = options.settledMs ?? SETTLED_MS;
    this.filename = path.basename(this.path);
    const rel = path.relative(this.rootDir, path.dirname(this.path));
    if (rel.startsWith('..') || path.isAbsolute(rel)) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `${this.path} is not inside the root directory ${this.rootDir}. Pass a rootDir that contains the file.`,
        { details: { path: this.path, rootDir: this.rootDir } },
      );
    }
    this.subdirStr = rel === '' ? '' : rel.split(path.sep).join('/');
    this.relPath = this.subdirStr === '' ? this.filename : `${this.subdirStr}/${this.filename}`;
  }

  private need(): Prepared {
    if (this.prepared === undefined) {
      throw new SluiceError('SLUICE_USAGE', `Call prepare() (or upload()) on ${this.path} first.`);
    }
    return this.prepared;
  }

  get isPrepared(): boolean {
    return this.prepared !== undefined;
  }
  /** File size in bytes, as hashed by `prepare()`. */
  get size(): number {
    return this.need().size;
  }
  get nChunks(): number {
    return this.need().nChunks;
  }
  /** Raw 64-byte SHA-512 of the whole file. */
  get fileHash(): Buffer {
    return this.need().fileHash;
  }
  /** mtime in epoch seconds (Python `st_mtime`), as sent in `file_mtime`. */
  get mtime(): number {
    return this.need().mtime;
  }
  /** Size and nanosecond mtime of the version that was hashed. */
  get version(): FileVersion {
    return this.need().version;
  }

  /** Raw SHA-512 of chunk `chunkI` (1-based). */
  chunkHash(chunkI: number): Buffer {
    const p = this.need();
    this.checkIndex(chunkI, p.nChunks);
    return p.chunkHashes.subarray((chunkI - 1) * SHA512_LENGTH, chunkI * SHA512_LENGTH);
  }

  /** Byte range of chunk `chunkI`: `offset` and `length`. */
  chunkRange(chunkI: number): { offset: number; length: number } {
    const p = this.need();
    this.checkIndex(chunkI, p.nChunks);
    const offset = (chunkI - 1) * this.chunkSize;
    return { offset, length: Math.max(0, Math.min(this.chunkSize, p.size - offset)) };
  }

  private checkIndex(chunkI: number, n: number): void {
    if (!Number.isSafeInteger(chunkI) || chunkI < 1 || chunkI > n) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `Chunk ${String(chunkI)} does not exist in ${this.path}: chunks are numbered 1..${n} (chunk size ` +
          `${this.chunkSize}). Was the registry written with another chunk size?`,
        { details: { path: this.path, chunkI, nChunks: n, chunkSize: this.chunkSize } },
      );
    }
  }

  private async openFile(): Promise<FileHandle> {
    try {
      return await open(this.path, 'r');
    } catch (err) {
      throw ioError(this.path, 'open', err);
    }
  }

  private async statOf(fh: FileHandle): Promise<BigIntStats> {
    try {
      return await fh.stat({ bigint: true });
    } catch (err) {
      throw ioError(this.path, 'stat', err);
    }
  }

  /**
   * Pass 1: one read computing the whole-file hash and every chunk hash (and keeping the bytes of a file of at most
   * `MEMORY_FILE_MAX` bytes). Memory otherwise: one 1 MiB read buffer plus 64 bytes per chunk. Throws
   * `SLUICE_FILE_CONFLICT` when the file changes while it is read, `SLUICE_IO` when it cannot be read,
   * `SLUICE_USAGE` when it is not a regular file.
   */
  async prepare(): Promise<void> {
    const startedNs = BigInt(Date.now()) * 1_000_000n;
    const fh = await this.openFile();
    try {
      const before = await this.statOf(fh);
      if (!before.isFile()) {
        throw new SluiceError(
          'SLUICE_USAGE',
          `${this.path} is not a regular file; only files can be uploaded.`,
          {
            details: { path: this.path },
          },
        );
      }
      const size = Number(before.size);
      const nChunks = chunkCount(size, this.chunkSize);
      const chunkHashes = Buffer.allocUnsafe(nChunks * SHA512_LENGTH);
      const fileHash = createHash('sha512');
      let done = 0;
      let data: Buffer | null = null;
      if (size <= MEMORY_FILE_MAX) {
        data = filePool.take(size);
        try {
          await this.readFully(fh, data, 0, 'it shrank while being hashed');
        } catch (err) {
          filePool.give(data);
          throw err;
        }
        fileHash.update(data);
        for (let offset = 0; offset < size || done === 0; offset += this.chunkSize) {
          const piece = data.subarray(offset, Math.min(size, offset + this.chunkSize));
          createHash('sha512')
            .update(piece)
            .digest()
            .copy(chunkHashes, done * SHA512_LENGTH);
          done++;
        }
      } else {
        let chunkHash = createHash('sha512');
        let inChunk = 0;
        const buf = Buffer.allocUnsafe(Math.min(READ_BLOCK, size));
        let pos = 0;
        while (pos < size) {
          let bytesRead: number;
          try {
            ({ bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos));
          } catch (err) {
            throw ioError(this.path, 'read', err);
          }
          if (bytesRead === 0) throw conflict(this.path, `it shrank below ${size} bytes while being hashed`);
          let seg = buf.subarray(0, bytesRead);
          fileHash.update(seg);
          while (seg.length > 0) {
            const take = Math.min(seg.length, this.chunkSize - inChunk);
            chunkHash.update(seg.subarray(0, take));
            inChunk += take;
            seg = seg.subarray(take);
            if (inChunk === this.chunkSize) {
              chunkHash.digest().copy(chunkHashes, done * SHA512_LENGTH);
              done++;
              chunkHash = createHash('sha512');
              inChunk = 0;
            }
          }
          pos += bytesRead;
        }
        if (inChunk > 0) {
          chunkHash.digest().copy(chunkHashes, done * SHA512_LENGTH);
          done++;
        }
      }
      const after = await this.statOf(fh).catch((err: unknown) => {
        if (data !== null) filePool.give(data);
        throw err;
      });
      const identity = identityOf(before);
      if (!sameIdentity(identityOf(after), identity)) {
        if (data !== null) filePool.give(data);
        throw conflict(this.path, 'its size or modification time changed while it was being hashed');
      }
      const newest = before.mtimeNs > before.ctimeNs ? before.mtimeNs : before.ctimeNs;
      this.prepared = {
        version: fileVersion(before),
        identity,
        settled: startedNs - newest >= BigInt(Math.round(this.settledMs * 1e6)),
        size,
        mtime: pythonMtime(before),
        nChunks: done,
        fileHash: fileHash.digest(),
        chunkHashes,
        data,
        uploads: 0,
      };
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /** Reads `into.length` bytes from `position`; SLUICE_FILE_CONFLICT when the file ends first. */
  private async readFully(fh: FileHandle, into: Buffer, position: number, shrank: string): Promise<void> {
    let got = 0;
    while (got < into.length) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await fh.read(into, got, into.length - got, position + got));
      } catch (err) {
        throw ioError(this.path, 'read', err);
      }
      if (bytesRead === 0) throw conflict(this.path, shrank);
      got += bytesRead;
    }
  }

  /** The file's identity now, by path (a file replaced by another one under the same name counts as changed). */
  private async currentIdentity(): Promise<FileIdentity> {
    try {
      return identityOf(await stat(this.path, { bigint: true }));
    } catch (err) {
      throw ioError(this.path, 'stat', err);
    }
  }

  /**
   * The record value of chunk `chunkI`: from the buffered file, or read again from `fh` straight into the value
   * (and checked to be the version that was hashed, see the module comment).
   */
  private async chunkValue(
    p: Prepared,
    data: Buffer | null,
    fh: FileHandle | undefined,
    chunkI: number,
    alloc: ((size: number) => Buffer) | undefined,
  ): Promise<Buffer> {
    const { offset, length } = this.chunkRange(chunkI);
    const { value, dataOffset } = allocChunkValue(
      {
        filename: this.filename,
        fileHash: p.fileHash,
        chunkHash: this.chunkHash(chunkI),
        chunkOffsetWrite: offset,
        chunkI,
        nTotalChunks: p.nChunks,
        subdirStr: this.subdirStr,
        filenameAppend: this.filenameAppend,
        fileMtime: p.mtime,
      },
      length,
      {},
      alloc,
    );
    const slot = value.subarray(dataOffset, dataOffset + length);
    if (data !== null) {
      data.copy(slot, 0, offset, offset + length);
      return value;
    }
    const handle = fh as FileHandle;
    try {
      await this.readFully(handle, slot, offset, `chunk ${chunkI} ends early: the file shrank`);
      if (p.settled) {
        if (!sameIdentity(identityOf(await this.statOf(handle)), p.identity)) {
          throw conflict(this.path, `it was modified before chunk ${chunkI} was read to be sent`);
        }
      } else if (!sha512(slot).equals(this.chunkHash(chunkI))) {
        throw conflict(this.path, `chunk ${chunkI} no longer matches the hash computed before sending`);
      }
    } catch (err) {
      if (alloc !== undefined) filePool.give(value);
      throw err;
    }
    return value;
  }

  /**
   * Pass 2: sends the chunks (all, or `options.chunks`) to `topic` and resolves once every one is acknowledged.
   * A failed delivery is retried (`retries`, exponential backoff); after that, or on an error no retry can fix, the
   * upload stops reading, waits for the chunks already sent, and rejects with `SLUICE_DELIVERY_FAILED` naming the
   * file and chunk. `SLUICE_FILE_CONFLICT` when the file changed since `prepare()`, `SLUICE_CLOSED` when stopped
   * through `signal`.
   */
  async upload(producer: Producer, topic: string, options: UploadOptions = {}): Promise<UploadResult> {
    const started = performance.now();
    if (this.prepared === undefined) await this.prepare();
    const p = this.need();
    const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1) {
      throw new SluiceError('SLUICE_USAGE', `maxInFlight ${String(maxInFlight)} must be a whole number ≥ 1.`);
    }
    const retries = options.retries ?? DEFAULT_DELIVERY_RETRIES;
    let list: number[] | undefined;
    if (options.chunks !== undefined) {
      list = [...new Set(options.chunks)].sort((a, b) => a - b);
      for (const i of list) this.checkIndex(i, p.nChunks);
    }
    const total = list?.length ?? p.nChunks;
    const signal = options.signal;

    let failure: unknown;
    let stopped = false;
    let chunks = 0;
    let bytes = 0;
    let recordBytes = 0;
    let retried = 0;
    const inFlight = new Set<Promise<void>>();

    // record values come from the pool, and go back to it once sent, when the producer keeps no reference to them
    const reuse = (producer as { releasesValuesOnSend?: unknown }).releasesValuesOnSend === true;
    const alloc = reuse ? (n: number): Buffer => filePool.take(n) : undefined;
    // a buffered file needs no handle: its chunks are the bytes that were hashed
    const data = p.data;
    p.uploads++;
    let fh: FileHandle | undefined;
    try {
      if (data === null) fh = await this.openFile();
      const now = fh === undefined ? await this.currentIdentity() : identityOf(await this.statOf(fh));
      if (!sameIdentity(now, p.identity)) {
        throw conflict(this.path, 'its size or modification time differs from when it was hashed');
      }
      for (let n = 0; n < total; n++) {
        const chunkI = list === undefined ? n + 1 : (list[n] as number);
        while (inFlight.size >= maxInFlight && failure === undefined) await Promise.race(inFlight);
        if (failure !== undefined) break;
        if (signal?.aborted) {
          stopped = true;
          break;
        }
        const { length } = this.chunkRange(chunkI);
        if (options.budget !== undefined) {
          try {
            await options.budget.acquire(length, signal);
          } catch {
            stopped = true;
            break;
          }
        }
        let value: Buffer;
        try {
          // between chunks of a buffered file: stop early when the file changed (a new generation follows)
          if (data !== null && n > 0 && !sameIdentity(await this.currentIdentity(), p.identity)) {
            throw conflict(this.path, `it was modified before chunk ${chunkI} was sent`);
          }
          value = await this.chunkValue(p, data, fh, chunkI, alloc);
        } catch (err) {
          options.budget?.release(length);
          failure = err;
          break;
        }
        const key = chunkKey(this.subdirStr, this.filename, chunkI, p.nChunks);
        const size = Buffer.byteLength(key) + value.length;
        const send = this.deliver(producer, topic, key, value, chunkI, p.nChunks, retries, options).then(
          (outcome) => {
            if (reuse && outcome.delivered) filePool.give(value);
            retried += outcome.retries;
            if (!outcome.delivered) {
              stopped = true;
              return;
            }
            chunks++;
            bytes += length;
            recordBytes += size;
            options.onChunk?.({ chunkI, nTotalChunks: p.nChunks, dataBytes: length, recordBytes: size });
          },
        );
        const tracked: Promise<void> = send
          .catch((err: unknown) => {
            failure ??= err;
          })
          .finally(() => {
            options.budget?.release(length);
            inFlight.delete(tracked);
          });
        inFlight.add(tracked);
      }
      await Promise.all(inFlight);
    } finally {
      await fh?.close().catch(() => {});
      // sent (or failed): the buffer goes back (every chunk value was copied out of it before being sent); another
      // upload() of this object reads the file again
      if (--p.uploads === 0 && p.data !== null) {
        filePool.give(p.data);
        p.data = null;
      }
    }
    if (failure !== undefined) throw failure;
    if (stopped || chunks < total) throw stoppedError(this.path, chunks, total - chunks);
    return {
      chunks,
      nTotalChunks: p.nChunks,
      bytes,
      recordBytes,
      retries: retried,
      durationMs: performance.now() - started,
      fileHash: p.fileHash,
    };
  }

  private async deliver(
    producer: Producer,
    topic: string,
    key: string,
    value: Buffer,
    chunkI: number,
    nChunks: number,
    retries: number,
    options: UploadOptions,
  ): Promise<{ delivered: boolean; retries: number }> {
    let delay = options.retryDelayMs ?? 100;
    for (let attempt = 1; ; attempt++) {
      try {
        await producer.send({ topic, key, value });
        return { delivered: true, retries: attempt - 1 };
      } catch (err) {
        const code = isSluiceError(err) ? err.code : undefined;
        const retryable = code === undefined || !NOT_RETRYABLE.has(code);
        if (!retryable || attempt > retries) {
          throw new SluiceError(
            'SLUICE_DELIVERY_FAILED',
            `Could not deliver chunk ${chunkI}/${nChunks} of ${this.path} to topic ${topic} ` +
              `(${attempt} attempt${attempt === 1 ? '' : 's'}): ${describeError(err)} ` +
              (retryable
                ? 'Check that the broker is reachable and accepts records of this size, then upload the file again.'
                : 'Fix the cause above, then upload the file again.'),
            {
              cause: err,
              canRetry: retryable,
              details: {
                path: this.path,
                topic,
                chunkI,
                nTotalChunks: nChunks,
                attempts: attempt,
                causeCode: code,
              },
            },
          );
        }
        if (!(await sleep(delay, options.signal))) return { delivered: false, retries: attempt - 1 };
        delay = Math.min(delay * 2, 5000);
      }
    }
  }
}
