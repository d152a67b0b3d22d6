/**
 * Rebuild one data file from its `DataFileChunk`s, arriving in any order, possibly duplicated, possibly mixed with
 * chunks of an older or newer upload of the same path (shared/spec/openmsistream-compat.md, sections 8, 9, 13;
 * upstream `entity/download_data_file.py`).
 *
 * Modes:
 * - `memory`: chunks are kept (copied) in memory; on completion they are assembled once into a preallocated
 *   buffer, exposed as `bytestring`. Nothing is written to disk.
 * - `disk`: each chunk is written at its offset into a hidden partial file next to the final one,
 *   `<dir>/.<name>.sluice-partial` (or `<dir>/.sluice-partial-<sha256 of name>` when that would exceed 255 bytes).
 *   The file is never held in memory. The whole-file SHA-512 is computed while chunks arrive in order and by one
 *   re-read of the not-yet-hashed tail otherwise. On a match the partial file is fsynced and renamed to the final
 *   name (then the directory is fsynced), so the final name only ever holds a verified file. On a mismatch the
 *   partial file is deleted. A stale partial file left by an earlier process is truncated when a generation starts:
 *   its chunks are re-read from the topic, because their messages were not committed.
 * - `both`: both; the memory copy and the disk copy must hash the same (otherwise `SLUICE_IO`).
 *
 * The partial file stays open between chunks (up to `MAX_OPEN_PARTIALS` files per process), so a chunk costs one
 * positioned write, not open + write + close.
 *
 * Upstream fsyncs after every chunk; sluice fsyncs once, before the rename (and the directory after it, or leaves
 * that to the caller: `deferDirectorySync`). Callers that commit offsets only once the file is complete (see
 * `sourceMessages`) lose nothing on a crash: the uncommitted chunks are read again.
 *
 * Generations (spec section 8). Every chunk carries the hash of the whole upload it belongs to. For a chunk whose
 * `fileHash` differs from the generation being rebuilt:
 * - more chunks than the current generation → reset (drop the partial data) and start the new generation;
 * - the same number of chunks and a known mtime newer than the current one (an unknown current mtime counts as
 *   oldest) → reset;
 * - otherwise (fewer chunks, or not newer) → skip the chunk (`CHUNK_ALREADY_WRITTEN`).
 * Unlike upstream, the chunk that triggers a reset is written into the fresh generation, and in disk mode the
 * partial file is truncated (upstream keeps the old generation's trailing bytes).
 * A chunk with the current `fileHash` but a different chunk count is a conflict (`SLUICE_FILE_CONFLICT`), as is a
 * second, different chunk with the same index. Exact duplicates are idempotent (`CHUNK_ALREADY_WRITTEN`).
 *
 * Calls to `addChunk` on one object are serialized internally; different objects must not share an output path.
 */

import { createHash, type Hash } from 'node:crypto';
import { type FileHandle, mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { describeError, SluiceError } from '../errors.ts';
import { fsyncDirectory } from '../runtime/atomic-file.ts';
import { type DataFileChunk, SHA512_LENGTH } from './chunk-codec.ts';
import { applyFilenameAppend, resolveChunkPath } from './safe-path.ts';

/** Results of `addChunk`; the values are upstream's (`data_file_io/config.py`). */
export const DOWNLOAD_CODES = {
  /** The whole-file hash did not match at completion; nothing was kept. */
  FILE_HASH_MISMATCH: -1,
  /** The chunk was added; the file is not complete yet. */
  FILE_IN_PROGRESS: 2,
  /** The chunk completed the file and the file's hash matched. */
  FILE_SUCCESSFULLY_RECONSTRUCTED: 3,
  /** Nothing to do: an exact duplicate, or a chunk of an older (or undecidable) generation, skipped. */
  CHUNK_ALREADY_WRITTEN: 10,
  /** The chunk started a new generation (partial data of the old one dropped) and was written into it. */
  GENERATION_RESET: 11,
} as const;

export type DownloadCode = (typeof DOWNLOAD_CODES)[keyof typeof DOWNLOAD_CODES];

export type DownloadMode = 'memory' | 'disk' | 'both';

export const DOWNLOAD_MODES: readonly DownloadMode[] = ['memory', 'disk', 'both'];

/** Where a chunk message came from. */
export interface ChunkSource {
  topic: string;
  partition: number;
  offset: number;
}

/** The fields that identify the file a chunk belongs to (a `DataFileChunk` has them). */
export interface DownloadFileIdentity {
  subdirStr: string;
  filename: string;
  filenameAppend: string;
}

export interface DownloadDataFileOptions {
  /** Root of the rebuilt tree; the file goes to `resolveChunkPath(outputDir, …)`. */
  outputDir: string;
  mode: DownloadMode;
  /**
   * Disk modes: called with the directory of the final file right after the rename, instead of fsyncing that
   * directory. The caller then must fsync it before anything relies on the rename surviving a power loss (the
   * stream handler does it for all files of a checkpoint before committing their offsets). Without it, every
   * completion fsyncs its directory.
   */
  deferDirectorySync?: (dir: string) => void;
}

/** Suffix of the partial file written in disk mode: `.<name>.sluice-partial`. */
export const PARTIAL_SUFFIX = '.sluice-partial';

const READ_BLOCK = 1024 * 1024;
const NAME_MAX_BYTES = 255;

/**
 * Partial files kept open between chunks, over all `DownloadDataFile`s of the process. A file's chunks then cost one
 * write each instead of open + write + close; past this many files in progress, chunks open and close again.
 */
const MAX_OPEN_PARTIALS = 64;
let openPartials = 0;

interface ChunkRecord {
  chunkHash: Buffer;
  offset: number;
  length: number;
}

interface Generation {
  fileHash: Buffer;
  nTotal: number;
  mtime: number;
  chunks: Map<number, ChunkRecord>;
  /** Chunk data by index (memory and both modes). */
  data: Map<number, Buffer> | null;
  /** One past the highest byte written. */
  size: number;
  /** Disk modes: SHA-512 of bytes [0, hashedUpTo) of the partial file, fed while chunks arrive in order. */
  hasher: Hash | null;
  hashedUpTo: number;
  /** A chunk arrived past `hashedUpTo`: stop feeding `hasher`, re-read the rest at completion. */
  hashStopped: boolean;
  /** A chunk was written below `hashedUpTo`: `hasher` is useless, re-read everything. */
  hashInvalid: boolean;
  /** Disk modes: whether the partial file has been (re)created for this generation. */
  partialCreated: boolean;
  messages: Map<string, ChunkSource>;
}

function sourceKey(s: ChunkSource): string {
  return `${s.topic}\u0000${s.partition}\u0000${s.offset}`;
}

function usage(message: string, details: Record<string, unknown> = {}): SluiceError {
  return new SluiceError('SLUICE_USAGE', message, { details });
}

export class DownloadDataFile {
  readonly mode: DownloadMode;
  /** Parent directory relative to the output root, `/`-separated; `''` at the root. */
  readonly subdirStr: string;
  /** Name of the rebuilt file, `filenameAppend` applied (`stem + append + suffix`). */
  readonly filename: string;
  /** `subdirStr/filename` (`/`-separated), or `filename` at the root; the key registries use. */
  readonly relativeFilepath: string;
  /** Absolute path of the rebuilt file, always inside the output directory. */
  readonly fullFilepath: string;
  /** Absolute path of the partial file used in disk modes. */
  readonly partialFilepath: string;

  private readonly sourceFilename: string;
  private readonly filenameAppend: string;
  private readonly deferDirectorySync: ((dir: string) => void) | undefined;
  private gen: Generation | null = null;
  /** Identity of the last generation dropped by a failure, reported until the next generation starts. */
  private failed: { fileHash: Buffer; nTotal: number; mtime: number } | null = null;
  private generationCount = 0;
  private complete = false;
  private assembled: Buffer | null = null;
  private readonly dropped = new Map<string, ChunkSource>();
  private queue: Promise<unknown> = Promise.resolve();
  /** Disk modes: the current generation's partial file, kept open between chunks when the budget allows. */
  private partialHandle: FileHandle | null = null;

  /**
   * `identity` is usually the first chunk received. Throws `SLUICE_UNSAFE_PATH` (before touching the disk) when
   * its path would leave `options.outputDir`.
   */
  constructor(identity: DownloadFileIdentity, options: DownloadDataFileOptions) {
    if (!DOWNLOAD_MODES.includes(options?.mode)) {
      throw usage(
        `Unknown download mode ${JSON.stringify(options?.mode)}. Use one of ${DOWNLOAD_MODES.join(', ')}.`,
      );
    }
    this.mode = options.mode;
    this.deferDirectorySync = options.deferDirectorySync;
    this.subdirStr = identity.subdirStr;
    this.sourceFilename = identity.filename;
    this.filenameAppend = identity.filenameAppend;
    this.fullFilepath = resolveChunkPath(
      options.outputDir,
      identity.subdirStr,
      identity.filename,
      identity.filenameAppend,
    );
    this.filename = applyFilenameAppend(identity.filename, identity.filenameAppend);
    this.relativeFilepath = this.subdirStr === '' ? this.filename : `${this.subdirStr}/${this.filename}`;
    const dir = path.dirname(this.fullFilepath);
    let partialName = `.${this.filename}${PARTIAL_SUFFIX}`;
    if (Buffer.byteLength(partialName) > NAME_MAX_BYTES) {
      const digest = createHash('sha256').update(this.filename).digest('hex').slice(0, 32);
      partialName = `${PARTIAL_SUFFIX}-${digest}`;
    }
    this.partialFilepath = path.join(dir, partialName);
  }

  /**
   * Chunks in the generation being rebuilt; 0 before the first chunk. After a hash mismatch (or a disk/memory
   * disagreement), `nTotalChunks`, `fileHash` and `fileMtime` still describe the failed generation (for registries
   * and logs) until the next chunk starts a new one; `chunksReceived` is 0 then.
   */
  get nTotalChunks(): number {
    return this.gen?.nTotal ?? this.failed?.nTotal ?? 0;
  }

  /** Distinct chunks of the current generation received so far. */
  get chunksReceived(): number {
    return this.gen?.chunks.size ?? 0;
  }

  /** Whole-file SHA-512 of the current generation (a copy), or null before the first chunk. */
  get fileHash(): Buffer | null {
    const hash = this.gen?.fileHash ?? this.failed?.fileHash;
    return hash ? Buffer.from(hash) : null;
  }

  /** Source mtime (epoch seconds) of the current generation; 0 when unknown. */
  get fileMtime(): number {
    return this.gen?.mtime ?? this.failed?.mtime ?? 0;
  }

  /** How many generation resets have happened. */
  get generation(): number {
    return this.generationCount;
  }

  /** Whether the current generation was rebuilt and verified. */
  get isComplete(): boolean {
    return this.complete;
  }

  /**
   * The rebuilt bytes once the file is complete (memory and both modes); null before. Throws `SLUICE_USAGE` in
   * disk mode, which never holds the file in memory.
   */
  get bytestring(): Buffer | null {
    if (this.mode === 'disk') {
      throw usage(
        `DownloadDataFile for ${this.relativeFilepath} runs in disk mode and keeps no bytes in memory. Read ` +
          `${this.fullFilepath}, or use mode 'memory' or 'both'.`,
      );
    }
    return this.assembled;
  }

  /**
   * The messages whose chunks make up the current generation (duplicates included), as given to `addChunk`.
   * Commit them once the file is complete. After a reset they move to `droppedMessages`; skipped chunks are never
   * listed (nothing depends on them, so their messages can be committed at once).
   */
  get sourceMessages(): ChunkSource[] {
    return this.gen ? [...this.gen.messages.values()].map((s) => ({ ...s })) : [];
  }

  /** Messages of generations dropped by resets or by a hash mismatch: nothing depends on them any more. */
  get droppedMessages(): ChunkSource[] {
    return [...this.dropped.values()].map((s) => ({ ...s }));
  }

  /**
   * Add one chunk. Resolves to a `DOWNLOAD_CODES` value; when the chunk completes the file that is
   * `FILE_SUCCESSFULLY_RECONSTRUCTED` or `FILE_HASH_MISMATCH` (even if the same chunk also reset the generation).
   * Throws `SLUICE_USAGE` for a chunk of another file or an invalid chunk, `SLUICE_FILE_CONFLICT` for chunks that
   * contradict each other, `SLUICE_IO` for file-system errors (the chunk is then not recorded).
   */
  addChunk(chunk: DataFileChunk, meta?: ChunkSource): Promise<DownloadCode> {
    const run = this.queue.then(() => this.addChunkNow(chunk, meta));
    this.queue = run.catch(() => {});
    return run;
  }

  /** Drop everything received and delete the partial file (for shutdown or an abandoned file). */
  abort(): Promise<void> {
    const run = this.queue.then(async () => {
      this.dropGeneration();
      if (this.mode !== 'memory') await this.removePartial();
    });
    this.queue = run.catch(() => {});
    return run;
  }

  // -------------------------------------------------------------------------------------------------------------

  private async addChunkNow(chunk: DataFileChunk, meta: ChunkSource | undefined): Promise<DownloadCode> {
    this.checkChunk(chunk, meta);
    const gen = this.gen;
    if (gen === null) {
      this.startGeneration(chunk);
      return this.writeChunk(chunk, meta, DOWNLOAD_CODES.FILE_IN_PROGRESS);
    }
    if (gen.fileHash.equals(chunk.fileHash)) {
      if (chunk.nTotalChunks !== gen.nTotal) {
        throw this.conflict(
          `a chunk says the file has ${chunk.nTotalChunks} chunks, but earlier chunks with the same file hash ` +
            `said ${gen.nTotal}`,
          chunk,
        );
      }
      const known = gen.chunks.get(chunk.chunkI);
      if (known) {
        if (!known.chunkHash.equals(chunk.chunkHash) || known.offset !== chunk.chunkOffsetWrite) {
          throw this.conflict(
            `chunk ${chunk.chunkI} arrived twice with different content or offset under the same file hash`,
            chunk,
          );
        }
        if (meta) gen.messages.set(sourceKey(meta), { ...meta });
        return DOWNLOAD_CODES.CHUNK_ALREADY_WRITTEN;
      }
      return this.writeChunk(chunk, meta, DOWNLOAD_CODES.FILE_IN_PROGRESS);
    }
    const newer =
      chunk.nTotalChunks > gen.nTotal ||
      (chunk.nTotalChunks === gen.nTotal && chunk.fileMtime > 0 && chunk.fileMtime > gen.mtime);
    if (!newer) return DOWNLOAD_CODES.CHUNK_ALREADY_WRITTEN;
    this.dropGeneration();
    this.generationCount++;
    this.startGeneration(chunk);
    return this.writeChunk(chunk, meta, DOWNLOAD_CODES.GENERATION_RESET);
  }

  private checkChunk(chunk: DataFileChunk, meta: ChunkSource | undefined): void {
    if (
      chunk.subdirStr !== this.subdirStr ||
      chunk.filename !== this.sourceFilename ||
      chunk.filenameAppend !== this.filenameAppend
    ) {
      throw usage(
        `A chunk of ${JSON.stringify(chunk.subdirStr)}/${JSON.stringify(chunk.filename)} (append ` +
          `${JSON.stringify(chunk.filenameAppend)}) was given to the DownloadDataFile of ${this.relativeFilepath}. ` +
          'Route chunks by (subdirStr, filename, filenameAppend).',
      );
    }
    const n = chunk.nTotalChunks;
    if (
      !Number.isSafeInteger(n) ||
      n < 1 ||
      !Number.isSafeInteger(chunk.chunkI) ||
      chunk.chunkI < 1 ||
      chunk.chunkI > n ||
      !Number.isSafeInteger(chunk.chunkOffsetWrite) ||
      chunk.chunkOffsetWrite < 0 ||
      !Buffer.isBuffer(chunk.data) ||
      !Number.isSafeInteger(chunk.chunkOffsetWrite + chunk.data.length) ||
      !Buffer.isBuffer(chunk.fileHash) ||
      chunk.fileHash.length !== SHA512_LENGTH ||
      !Buffer.isBuffer(chunk.chunkHash) ||
      chunk.chunkHash.length !== SHA512_LENGTH ||
      typeof chunk.fileMtime !== 'number' ||
      Number.isNaN(chunk.fileMtime)
    ) {
      throw usage(
        `Invalid chunk ${chunk.chunkI}/${n} for ${this.relativeFilepath}: index, count, offset, data or hashes are ` +
          'out of range. Pass chunks produced by decodeChunk().',
      );
    }
    if (
      meta !== undefined &&
      (typeof meta.topic !== 'string' ||
        !Number.isSafeInteger(meta.partition) ||
        !Number.isSafeInteger(meta.offset))
    ) {
      throw usage(
        `Invalid message position ${JSON.stringify(meta)} for a chunk of ${this.relativeFilepath}. Pass ` +
          '{ topic, partition, offset } of the message the chunk came from.',
      );
    }
  }

  private conflict(problem: string, chunk: DataFileChunk): SluiceError {
    return new SluiceError(
      'SLUICE_FILE_CONFLICT',
      `Cannot rebuild ${this.relativeFilepath}: ${problem}. The producer sent inconsistent chunks (or two ` +
        'producers upload different files under one path); quarantine the message and re-upload the file.',
      {
        details: {
          relativeFilepath: this.relativeFilepath,
          chunkI: chunk.chunkI,
          nTotalChunks: chunk.nTotalChunks,
          fileHash: chunk.fileHash.toString('hex'),
        },
      },
    );
  }

  private startGeneration(chunk: DataFileChunk): void {
    const disk = this.mode !== 'memory';
    this.gen = {
      fileHash: Buffer.from(chunk.fileHash),
      nTotal: chunk.nTotalChunks,
      mtime: chunk.fileMtime > 0 ? chunk.fileMtime : 0,
      chunks: new Map(),
      data: this.mode === 'disk' ? null : new Map(),
      size: 0,
      hasher: disk ? createHash('sha512') : null,
      hashedUpTo: 0,
      hashStopped: false,
      hashInvalid: false,
      partialCreated: false,
      messages: new Map(),
    };
    this.failed = null;
    this.complete = false;
    this.assembled = null;
  }

  /** Forget the current generation; its messages become `droppedMessages`. */
  private dropGeneration(failed = false): void {
    const gen = this.gen;
    if (gen) for (const [k, s] of gen.messages) this.dropped.set(k, s);
    this.failed = failed && gen ? { fileHash: gen.fileHash, nTotal: gen.nTotal, mtime: gen.mtime } : null;
    this.gen = null;
    this.complete = false;
    this.assembled = null;
  }

  private async writeChunk(
    chunk: DataFileChunk,
    meta: ChunkSource | undefined,
    code: DownloadCode,
  ): Promise<DownloadCode> {
    const gen = this.gen as Generation;
    const offset = chunk.chunkOffsetWrite;
    const length = chunk.data.length;
    if (this.mode !== 'memory') {
      await this.writeToPartial(gen, chunk.data, offset);
      if (!gen.hashInvalid && gen.hasher) {
        if (offset < gen.hashedUpTo) gen.hashInvalid = true;
        else if (!gen.hashStopped && offset === gen.hashedUpTo) {
          gen.hasher.update(chunk.data);
          gen.hashedUpTo += length;
        } else gen.hashStopped = true;
      }
    }
    gen.data?.set(chunk.chunkI, Buffer.from(chunk.data));
    gen.chunks.set(chunk.chunkI, { chunkHash: Buffer.from(chunk.chunkHash), offset, length });
    gen.size = Math.max(gen.size, offset + length);
    if (meta) gen.messages.set(sourceKey(meta), { ...meta });
    if (gen.chunks.size < gen.nTotal) return code;
    return this.finish(gen);
  }

  private async writeToPartial(gen: Generation, data: Buffer, offset: number): Promise<void> {
    const file = this.partialFilepath;
    let handle: FileHandle | undefined;
    try {
      if (!gen.partialCreated) {
        await this.closePartialHandle(); // an older generation's
        // create, or truncate what an older generation or process left; the directory only when it is missing
        handle = await open(file, 'w+').catch(async (err: unknown) => {
          if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
          await mkdir(path.dirname(file), { recursive: true });
          return open(file, 'w+');
        });
        gen.partialCreated = true;
        this.keepPartialHandle(handle);
      } else if (this.partialHandle !== null) {
        handle = this.partialHandle;
      } else {
        handle = await open(file, 'r+');
        this.keepPartialHandle(handle);
      }
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      if (handle !== undefined && handle === this.partialHandle) await this.closePartialHandle();
      else await handle?.close().catch(() => {});
      throw this.ioError(`write a chunk to ${file}`, err);
    }
    if (handle !== this.partialHandle) await handle.close().catch(() => {});
  }

  /** Keeps `handle` open for the next chunks if the process-wide budget allows. */
  private keepPartialHandle(handle: FileHandle): void {
    if (openPartials >= MAX_OPEN_PARTIALS) return;
    openPartials += 1;
    this.partialHandle = handle;
  }

  /** Takes the kept handle (the caller closes it), or null. */
  private takePartialHandle(): FileHandle | null {
    const handle = this.partialHandle;
    if (handle !== null) {
      this.partialHandle = null;
      openPartials -= 1;
    }
    return handle;
  }

  private async closePartialHandle(): Promise<void> {
    await this.takePartialHandle()
      ?.close()
      .catch(() => {});
  }

  private async finish(gen: Generation): Promise<DownloadCode> {
    let memoryHash: Buffer | null = null;
    let assembled: Buffer | null = null;
    if (gen.data) {
      assembled = Buffer.alloc(gen.size);
      for (const [i, bytes] of gen.data) bytes.copy(assembled, (gen.chunks.get(i) as ChunkRecord).offset);
      gen.data = null;
      memoryHash = createHash('sha512').update(assembled).digest();
    }
    if (this.mode === 'memory') {
      if (!(memoryHash as Buffer).equals(gen.fileHash)) return this.mismatch();
      this.assembled = assembled;
      this.complete = true;
      return DOWNLOAD_CODES.FILE_SUCCESSFULLY_RECONSTRUCTED;
    }

    let handle: Awaited<ReturnType<typeof open>> | undefined;
    let diskHash: Buffer;
    try {
      handle = this.takePartialHandle() ?? (await open(this.partialFilepath, 'r+'));
      diskHash = await this.hashPartial(gen, handle);
      if (memoryHash && !memoryHash.equals(diskHash)) {
        await handle.close();
        handle = undefined;
        await this.removePartial();
        this.dropGeneration(true);
        throw new SluiceError(
          'SLUICE_IO',
          `The disk copy of ${this.relativeFilepath} (${this.partialFilepath}) differs from the memory copy: the ` +
            'file system lost or changed written bytes. Check the disk and that no other process writes there; ' +
            'the file will be rebuilt when its chunks are read again.',
          { canRetry: true, details: { path: this.partialFilepath } },
        );
      }
      if (!diskHash.equals(gen.fileHash)) {
        await handle.close();
        handle = undefined;
        return await this.mismatch();
      }
      await handle.sync();
      await handle.close();
      handle = undefined;
      await rename(this.partialFilepath, this.fullFilepath);
    } catch (err) {
      await handle?.close().catch(() => {});
      if (err instanceof SluiceError) throw err;
      await this.removePartial();
      this.dropGeneration(true);
      throw this.ioError(`finish ${this.fullFilepath}`, err);
    }
    if (this.deferDirectorySync !== undefined) this.deferDirectorySync(path.dirname(this.fullFilepath));
    else await fsyncDirectory(path.dirname(this.fullFilepath));
    this.assembled = assembled;
    this.complete = true;
    return DOWNLOAD_CODES.FILE_SUCCESSFULLY_RECONSTRUCTED;
  }

  /** SHA-512 of the partial file: the in-order prefix hashed on arrival plus one read of the rest. */
  private async hashPartial(gen: Generation, handle: Awaited<ReturnType<typeof open>>): Promise<Buffer> {
    let hasher = gen.hasher as Hash;
    let position = gen.hashedUpTo;
    if (gen.hashInvalid) {
      hasher = createHash('sha512');
      position = 0;
    }
    if (position < gen.size) {
      const block = Buffer.allocUnsafe(Math.min(READ_BLOCK, gen.size - position));
      while (position < gen.size) {
        const want = Math.min(block.length, gen.size - position);
        const { bytesRead } = await handle.read(block, 0, want, position);
        if (bytesRead === 0) break; // the file is shorter than what was written: the hash will not match
        hasher.update(block.subarray(0, bytesRead));
        position += bytesRead;
      }
    }
    gen.hasher = null;
    return hasher.digest();
  }

  private async mismatch(): Promise<DownloadCode> {
    if (this.mode !== 'memory') await this.removePartial();
    this.dropGeneration(true);
    return DOWNLOAD_CODES.FILE_HASH_MISMATCH;
  }

  private async removePartial(): Promise<void> {
    await this.closePartialHandle();
    try {
      await unlink(this.partialFilepath);
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT')
        throw this.ioError(`delete ${this.partialFilepath}`, err);
    }
  }

  private ioError(action: string, err: unknown): SluiceError {
    const code = (err as { code?: unknown }).code;
    return new SluiceError(
      'SLUICE_IO',
      `Could not ${action} while rebuilding ${this.relativeFilepath}: ${describeError(err)}. Check that the ` +
        'output directory is writable and the disk is not full; the file is rebuilt when its chunks are read again.',
      {
        cause: err,
        canRetry:
          typeof code === 'string' &&
          ['EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'ENOSPC', 'EINTR'].includes(code),
        details: { relativeFilepath: this.relativeFilepath, path: this.fullFilepath },
      },
    );
  }
}
