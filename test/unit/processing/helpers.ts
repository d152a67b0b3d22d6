import { createHash } from 'node:crypto';
import type { DownloadDataFile } from '../../../src/files/download-data-file.ts';
import type { FileOutcome } from '../../../src/files/stream-handler.ts';
import { ReproducerMessage } from '../../../src/processing/data-file-stream-reproducer.ts';
import {
  DataFileStreamProcessor,
  DataFileStreamReproducer,
  MetadataJSONReproducer,
} from '../../../src/processing/index.ts';
import type { Transport } from '../../../src/transport/types.ts';
import { bytes, chunkFile, chunkRecords, shuffle } from '../files/stream-helpers.ts';

export interface SampleFile {
  subdir: string;
  filename: string;
  data: Buffer;
}

export function sampleFiles(n: number, seed = 1): SampleFile[] {
  return Array.from({ length: n }, (_, i) => ({
    subdir: i % 3 === 0 ? '' : `run${i % 4}/part`,
    filename: `f${i}.dat`,
    data: bytes(500 + ((i * 7919 + seed) % 9000), seed * 1000 + i),
  }));
}

export async function publish(
  t: Transport,
  topic: string,
  files: SampleFile[],
  partitions = 3,
  seed = 5,
): Promise<void> {
  await t.createTopic({ name: topic, partitions }, { ifNotExists: true });
  const chunks = shuffle(
    files.flatMap((f) => chunkFile(f.data, { ...f, chunkSize: 1024 })),
    seed,
  );
  await t.producer().send(chunkRecords(topic, chunks, partitions));
}

export const rel = (f: { subdir: string; filename: string }): string =>
  f.subdir === '' ? f.filename : `${f.subdir}/${f.filename}`;

/** Runs a handler until `done(outcomes)` or the limit, then stops it cleanly. */
export async function runUntil(
  p: DataFileStreamProcessor,
  done: (o: FileOutcome[]) => boolean,
  limitMs = 60_000,
): Promise<FileOutcome[]> {
  const outcomes: FileOutcome[] = [];
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), limitMs);
  p.on('file', (f: FileOutcome) => {
    outcomes.push(f);
    if (done(outcomes)) stop.abort();
  });
  if (done(outcomes)) stop.abort();
  await p.run(stop.signal);
  clearTimeout(timer);
  return outcomes;
}

/** Records what it saw; fails the files named in `failing`. */
export class RecordingProcessor extends DataFileStreamProcessor {
  seen: Array<{ rel: string; bytes: number; path: string | null; hadBuffer: boolean }> = [];
  failing = new Set<string>();
  concurrentNow = 0;
  concurrentMax = 0;

  protected override async processDownloadedDataFile(file: DownloadDataFile): Promise<Error | undefined> {
    this.concurrentNow += 1;
    this.concurrentMax = Math.max(this.concurrentMax, this.concurrentNow);
    await new Promise((r) => setTimeout(r, 5));
    this.concurrentNow -= 1;
    const hadBuffer = this.options.mode !== 'disk';
    const size = hadBuffer
      ? file.bytestring!.length
      : (await import('node:fs')).statSync(file.fullFilepath).size;
    this.seen.push({
      rel: file.relativeFilepath,
      bytes: size,
      path: this.options.mode === 'memory' ? null : file.fullFilepath,
      hadBuffer,
    });
    if (this.failing.has(file.relativeFilepath))
      return new Error(`refusing ${file.relativeFilepath} on purpose`);
    return undefined;
  }
}

export class HashReproducer extends DataFileStreamReproducer {
  returnNullFor = new Set<string>();
  /** Simulated analysis time per file. */
  delayMs = 0;

  protected override async getProcessingResultMessageForFile(
    file: DownloadDataFile,
  ): Promise<ReproducerMessage | null> {
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.returnNullFor.has(file.relativeFilepath)) return null;
    const data = file.bytestring!;
    return new ReproducerMessage(
      this.resultKeyFor(file),
      JSON.stringify({
        file: file.relativeFilepath,
        sha256: createHash('sha256').update(data).digest('hex'),
        bytes: data.length,
      }),
    );
  }
}

export class CsvMetadataReproducer extends MetadataJSONReproducer {
  protected override getMetadataDictForFile(file: DownloadDataFile): Record<string, unknown> {
    const [header, ...rows] = file.bytestring!.toString('utf8').trim().split('\n');
    return { file: file.relativeFilepath, columns: header!.split(','), rows: rows.length };
  }
}
