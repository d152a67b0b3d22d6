/**
 * One thread of the files benchmark's "format floor" (see floor.ts): takes files from a shared counter and does,
 * per file, only the work OpenMSIStream's wire format makes unavoidable, with no broker and no messages.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { workerData } from 'node:worker_threads';

interface Job {
  src: string;
  out: string;
  /** Also write every chunk once to a log file of this thread (what a broker that keeps data on disk adds). */
  log: string | undefined;
  files: Array<{ rel: string; size: number }>;
  next: Int32Array;
  chunkSize: number;
}

const { src, out, log, files, next, chunkSize } = workerData as Job;
const buf = Buffer.allocUnsafe(chunkSize);
const logFd = log === undefined ? undefined : openSync(log, 'w');
let logPos = 0;

function readChunk(fd: number, pos: number, size: number): Buffer {
  const want = Math.min(chunkSize, size - pos);
  let got = 0;
  while (got < want) got += readSync(fd, buf, got, want - got, pos + got);
  return buf.subarray(0, want);
}

for (;;) {
  const i = Atomics.add(next, 0, 1);
  if (i >= files.length) break;
  const f = files[i]!;
  const fd = openSync(join(src, f.rel), 'r');
  // sender: the whole-file hash goes into every chunk, so it is computed before the first chunk
  const fileHash = createHash('sha512');
  for (let pos = 0; pos < f.size; pos += chunkSize) fileHash.update(readChunk(fd, pos, f.size));
  fileHash.digest();
  const dest = join(out, f.rel);
  mkdirSync(dirname(dest), { recursive: true });
  const outFd = openSync(`${dest}.partial`, 'w');
  const check = createHash('sha512');
  for (let pos = 0; pos < f.size; pos += chunkSize) {
    const chunk = readChunk(fd, pos, f.size);
    createHash('sha512').update(chunk).digest(); // sender: the chunk's hash
    if (logFd !== undefined) {
      writeSync(logFd, chunk, 0, chunk.length, logPos);
      logPos += chunk.length;
    }
    createHash('sha512').update(chunk).digest(); // receiver: the chunk is checked before it is written
    writeSync(outFd, chunk, 0, chunk.length, pos);
    check.update(chunk); // receiver: the whole file is checked before it gets its name
  }
  check.digest();
  fsyncSync(outFd);
  closeSync(outFd);
  closeSync(fd);
  renameSync(`${dest}.partial`, dest);
}
if (logFd !== undefined) closeSync(logFd);
