/**
 * The files benchmark's "format floor": how fast this machine can do the work OpenMSIStream's wire format makes
 * unavoidable for a corpus, with no broker, no messages and no second process. Per byte: one read, four SHA-512
 * passes (sender: whole-file hash, chunk hash; receiver: chunk check, whole-file check), one write of the rebuilt
 * file, and an fsync per file before it is renamed into place (so a crash cannot leave a wrong file under its name).
 * `withLog` adds one more write of every chunk to a log file (not synced), the least any broker that keeps the data
 * on disk adds. Runs on one worker thread per core, files shared out largest first.
 *
 * No implementation of the format can beat the floor on the same machine; the benchmark prints sluice's runs as a
 * fraction of it, which also shows how much of a miss is the machine (hashing speed, write cost) and how much is
 * sluice.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Corpus } from './corpus.ts';

export interface FloorResult {
  label: string;
  seconds: number;
  mbps: number;
  /** CPU seconds of the whole process (all threads) during the run. */
  cpuSeconds: number;
  threads: number;
}

export async function measureFormatFloor(
  corpus: Corpus,
  work: string,
  options: { withLog: boolean; chunkSize?: number },
): Promise<FloorResult> {
  const threads = cpus().length;
  const out = join(work, `floor-out-${options.withLog ? 'log' : 'nolog'}`);
  mkdirSync(out, { recursive: true });
  const next = new Int32Array(new SharedArrayBuffer(4));
  const files = [...corpus.files].sort((a, b) => b.size - a.size).map((f) => ({ rel: f.rel, size: f.size }));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    await Promise.all(
      Array.from({ length: threads }, (_, i) => {
        const worker = new Worker(new URL('./floor-worker.ts', import.meta.url), {
          workerData: {
            src: corpus.dir,
            out,
            log: options.withLog ? join(work, `floor-${i}.log`) : undefined,
            files,
            next,
            chunkSize: options.chunkSize ?? 524_288,
          },
        });
        return new Promise<void>((resolve, reject) => {
          worker.once('error', reject);
          worker.once('exit', (code) =>
            code === 0 ? resolve() : reject(new Error(`floor worker exited with ${code}`)),
          );
        });
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return {
      label: options.withLog ? 'format floor + one log write' : 'format floor, no broker',
      seconds,
      mbps: corpus.bytes / 1e6 / seconds,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      threads,
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
    for (let i = 0; i < threads; i++) rmSync(join(work, `floor-${i}.log`), { force: true });
  }
}

/** SHA-512 throughput of one core, MB/s (10^6 bytes), over `mib` MiB in 512 KiB updates. */
export function sha512Speed(mib = 256): number {
  const block = Buffer.alloc(524_288, 0x5a);
  const n = mib * 2;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) createHash('sha512').update(block).digest();
  return (n * block.length) / 1e6 / ((performance.now() - t0) / 1000);
}
