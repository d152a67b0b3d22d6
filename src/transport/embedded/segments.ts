import {
  closeSync,
  constants,
  fdatasyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { SluiceError } from '../../errors.ts';

/**
 * Large record values of the embedded broker live in append-only segment files beside the database, one series
 * per partition, written once: the SQLite row keeps where the bytes are (segment, position, length) and their
 * CRC-32. Storing large values inside SQLite costs each byte twice (WAL, then checkpoint into the database file)
 * plus a checkpoint fsync on the writer's thread; a segment write is one pwrite into the page cache.
 *
 * Consistency comes from SQLite: a value's bytes are written (under the database's write lock) before the
 * transaction that references them commits, so a reader that sees the row finds the bytes. Bytes written by a
 * transaction that never committed (a killed process, a rollback) lie past the partition's committed end position
 * and are overwritten by the next append. With `synchronous: 'full'` the segment files a transaction touched are
 * fdatasync'd before it commits; with `normal` (like SQLite's own `normal`) a power loss can lose recent records,
 * and a record whose bytes did not reach the disk is reported by its CRC instead of being returned.
 *
 * Files: `<database>-segments/<topic id>-<partition>-<segment>.log`. Topic ids are never reused, so a deleted
 * topic's files are never mistaken for a new topic's.
 */

/** Values of at least this many bytes go to segment files by default; smaller ones stay inside SQLite. */
export const DEFAULT_SEGMENT_THRESHOLD = 16 * 1024;
/** By default a partition starts a new segment file once its current one would grow past this. */
export const DEFAULT_SEGMENT_ROLL_BYTES = 512 * 1024 * 1024;
/** Open segment files kept per database connection. */
const MAX_OPEN = 64;

export interface SegmentPosition {
  seg: number;
  pos: number;
}

export class Segments {
  readonly dir: string;
  private readonly fds = new Map<string, number>();
  private readonly touched = new Set<number>();
  private dirMade = false;

  constructor(
    databasePath: string,
    private readonly rollBytes = DEFAULT_SEGMENT_ROLL_BYTES,
  ) {
    this.dir = `${databasePath}-segments`;
  }

  private name(tid: number, partition: number, seg: number): string {
    return `${tid}-${partition}-${seg}.log`;
  }

  private fd(tid: number, partition: number, seg: number, write: boolean): number {
    const name = this.name(tid, partition, seg);
    const cached = this.fds.get(name);
    if (cached !== undefined) {
      // most recently used last
      this.fds.delete(name);
      this.fds.set(name, cached);
      return cached;
    }
    if (write && !this.dirMade) {
      mkdirSync(this.dir, { recursive: true });
      this.dirMade = true;
    }
    // positioned reads and writes (pread/pwrite); a reader's open fails with ENOENT when retention removed the file
    const fd = openSync(
      join(this.dir, name),
      write ? constants.O_RDWR | constants.O_CREAT : constants.O_RDWR,
      0o644,
    );
    this.fds.set(name, fd);
    if (this.fds.size > MAX_OPEN) {
      const [oldest, oldFd] = this.fds.entries().next().value as [string, number];
      this.fds.delete(oldest);
      this.touched.delete(oldFd);
      closeSync(oldFd);
    }
    return fd;
  }

  /**
   * Where the next value of `len` bytes goes after `at` (the partition's committed end): the same segment, or the
   * start of the next one when this one would pass the roll size.
   */
  place(at: SegmentPosition, len: number): SegmentPosition {
    return at.pos > 0 && at.pos + len > this.rollBytes ? { seg: at.seg + 1, pos: 0 } : at;
  }

  /** Writes a value at its place (inside the write transaction that records it) and returns its CRC-32. */
  write(tid: number, partition: number, at: SegmentPosition, value: Uint8Array): number {
    const fd = this.fd(tid, partition, at.seg, true);
    let done = 0;
    while (done < value.length) {
      done += writeSync(fd, value, done, value.length - done, at.pos + done);
    }
    this.touched.add(fd);
    return crc32(value);
  }

  /** Reads a value back, checking its length and CRC-32. */
  read(
    tid: number,
    partition: number,
    at: SegmentPosition,
    len: number,
    crc: number,
    where: { topic: string; offset: number },
    alloc: (size: number) => Buffer = Buffer.allocUnsafe,
  ): Buffer {
    const out = alloc(len);
    const fd = this.fd(tid, partition, at.seg, false);
    let done = 0;
    while (done < len) {
      const n = readSync(fd, out, done, len - done, at.pos + done);
      if (n === 0) break;
      done += n;
    }
    if (done !== len || crc32(out) !== crc) {
      throw new SluiceError(
        'SLUICE_EMBEDDED_CORRUPT',
        `The bytes of record ${where.topic}[${partition}]@${where.offset} in ${join(this.dir, this.name(tid, partition, at.seg))} ` +
          `are ${done !== len ? `cut short (${done} of ${len} bytes)` : 'not the bytes that were written (CRC-32 mismatch)'}. ` +
          'This happens after a power loss with synchronous: normal, or when the segment files were modified or copied ' +
          'without the database. Records before it are intact: move the consumer past it (commit offset ' +
          `${where.offset + 1}), or restore the broker directory from a backup; use synchronous: 'full' where power loss must not lose records.`,
        { details: { topic: where.topic, partition, offset: where.offset } },
      );
    }
    return out;
  }

  /** Makes the values written since the last call durable (before a commit with synchronous: full). */
  syncTouched(): void {
    for (const fd of this.touched) fdatasyncSync(fd);
    this.touched.clear();
  }

  forgetTouched(): void {
    this.touched.clear();
  }

  /** Removes a partition's segment files below `keep` (every record in them was deleted). After the commit. */
  removeBelow(tid: number, partition: number, keep: number): void {
    this.removeWhere((t, p, s) => t === tid && p === partition && s < keep);
  }

  /** Removes a deleted topic's segment files. After the commit. */
  removeTopic(tid: number): void {
    this.removeWhere((t) => t === tid);
  }

  private removeWhere(match: (tid: number, partition: number, seg: number) => boolean): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return; // no segment was ever written
    }
    for (const name of names) {
      const m = /^(\d+)-(\d+)-(\d+)\.log$/.exec(name);
      if (m === null || !match(Number(m[1]), Number(m[2]), Number(m[3]))) continue;
      const fd = this.fds.get(name);
      if (fd !== undefined) {
        this.fds.delete(name);
        this.touched.delete(fd);
        closeSync(fd);
      }
      try {
        unlinkSync(join(this.dir, name));
      } catch {
        // another process removed it first
      }
    }
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    this.touched.clear();
  }

  /** Removes the whole segment directory (when the database file itself is removed). */
  static removeAll(databasePath: string): void {
    rmSync(`${databasePath}-segments`, { recursive: true, force: true });
  }
}
