/**
 * Reusable buffers for streaming file data. Every new Buffer above a few KiB is memory outside V8's heap that V8
 * counts towards its next full garbage collection: streaming a gigabyte through fresh 512 KiB buffers runs a full
 * (marking) collection every few tens of megabytes, which cost the uploader about a quarter of its CPU time. Buffers
 * taken here come back with `give()` once nothing refers to them any more, and are handed out again.
 *
 * Sizes are rounded up to a power of two from 64 KiB to 8 MiB; smaller and larger requests are plain allocations
 * (and `give()` ignores them). At most `MAX_FREE_PER_CLASS` buffers of each size and `MAX_FREE_BYTES` in all wait for
 * reuse; the rest are left to the garbage collector. Contents of a taken buffer are arbitrary.
 *
 * The rule for callers: `give()` a buffer only when no other code can still read or write it. A buffer handed to a
 * producer can only be given back after `send()` resolved on a producer that declares it keeps no reference
 * (`releasesValuesOnSend`).
 */

import { Buffer } from 'node:buffer';

const MIN_CLASS = 16; // 64 KiB
const MAX_CLASS = 23; // 8 MiB
const MAX_FREE_PER_CLASS = 8;
const MAX_FREE_BYTES = 32 * 1024 * 1024;

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly mine = new WeakSet<ArrayBuffer>();
  private freeBytes = 0;

  /** A buffer of exactly `size` bytes (a view of a pooled one when `size` is between 32 KiB and 8 MiB). */
  take(size: number): Buffer {
    const cls = BufferPool.classOf(size);
    if (cls === undefined) return Buffer.allocUnsafeSlow(size);
    const list = this.free.get(cls);
    let ab = list?.pop();
    if (ab === undefined) {
      ab = Buffer.allocUnsafeSlow(2 ** cls).buffer as ArrayBuffer;
      this.mine.add(ab);
    } else {
      this.freeBytes -= ab.byteLength;
    }
    return Buffer.from(ab, 0, size);
  }

  /** Returns a buffer from `take()` for reuse; anything else is ignored. */
  give(buf: Buffer): void {
    const ab = buf.buffer as ArrayBuffer;
    if (!this.mine.has(ab) || buf.byteOffset !== 0) return;
    const cls = Math.log2(ab.byteLength);
    let list = this.free.get(cls);
    if (list === undefined) {
      list = [];
      this.free.set(cls, list);
    }
    if (list.length >= MAX_FREE_PER_CLASS || this.freeBytes + ab.byteLength > MAX_FREE_BYTES) return;
    if (list.includes(ab)) return; // given twice: keep one entry
    list.push(ab);
    this.freeBytes += ab.byteLength;
  }

  /** Bytes waiting for reuse. */
  get idleBytes(): number {
    return this.freeBytes;
  }

  private static classOf(size: number): number | undefined {
    if (size <= 2 ** (MIN_CLASS - 1) || size > 2 ** MAX_CLASS) return undefined;
    return Math.max(MIN_CLASS, Math.ceil(Math.log2(size)));
  }
}

/** The pool of this process's file uploaders (chunk buffers) and downloaders (chunk values read by the transport). */
export const filePool = new BufferPool();
