/**
 * The processor/reproducer kill scenario, shared by the embedded (unit tier) and Kafka (integration tier) runs:
 * 200 files; a child process is kill -9'd ten times at pseudo-random moments and restarted with the same group;
 * then a clean run finishes whatever is left. The caller checks the outcome.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CONSUMER_SUCCEEDED_COLUMNS } from '../../../src/files/registry/names.ts';
import { readRegistry } from '../../../src/files/registry/table.ts';
import { createLogger } from '../../../src/runtime/logger.ts';
import type { ConsumedRecord, Transport } from '../../../src/transport/types.ts';
import { eventually } from '../../conformance/suite.ts';
import { bytes, chunkFile, chunkRecords, shuffle } from '../files/stream-helpers.ts';
import { HashReproducer, RecordingProcessor } from './helpers.ts';

const child = join(import.meta.dirname, 'fixtures', 'processing-child.ts');
const logger = createLogger({ level: 'silent' });

export const KILL_FILES = Array.from({ length: 200 }, (_, i) => ({
  subdir: i % 4 === 0 ? '' : `day${i % 3}`,
  filename: `f${i}.dat`,
  data: bytes(2000 + ((i * 7919) % 20_000), 300 + i),
}));

export const resultKeyOf = (f: { subdir: string; filename: string }): string =>
  `${f.subdir.replaceAll('/', '_')}_${f.filename}_chunk_processing_result`;

export async function publishKillFiles(t: Transport, topic: string): Promise<void> {
  await t.createTopic({ name: topic, partitions: 3 });
  await t.createTopic({ name: `${topic}-results`, partitions: 2 });
  const chunks = shuffle(
    // on the (fast) embedded broker, small chunks (many messages), so the work takes long enough for the kills to
    // land in unfinished files
    KILL_FILES.flatMap((f) => chunkFile(f.data, { ...f, chunkSize: t.kind === 'embedded' ? 32 : 256 })),
    11,
  );
  for (let i = 0; i < chunks.length; i += 500)
    await t.producer().send(chunkRecords(topic, chunks.slice(i, i + 500), 3));
}

/** Starts and kill -9s the child ten times; returns how many kills hit unfinished work. */
export async function killRepeatedly(args: string[], unfinished: () => Promise<boolean>): Promise<number> {
  let seed = 4242;
  let interrupted = 0;
  for (let k = 0; k < 10; k++) {
    const proc: ChildProcess = spawn(process.execPath, ['--import', 'tsx', child, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let running = false;
    createInterface({ input: proc.stderr! }).on('line', (l) => {
      if (l.includes('child running')) running = true;
    });
    const exited = new Promise((r) => proc.once('exit', r));
    await Promise.race([eventually(() => running, 'the child to start', 60_000), exited]);
    seed = (seed * 1103515245 + 12345) >>> 0;
    await new Promise((r) => setTimeout(r, 150 + (seed % 900)));
    if (await unfinished()) interrupted += 1;
    proc.kill('SIGKILL');
    await exited;
  }
  return interrupted;
}

export async function readAll(t: Transport, topic: string): Promise<ConsumedRecord[]> {
  const end = (await t.describeTopic(topic)).partitions.reduce((s, p) => s + p.endOffset, 0);
  const c = t.consumer({
    groupId: `check-${Math.random()}`,
    topics: [topic],
    isolation: 'read_committed',
    start: 'earliest',
  });
  const out: ConsumedRecord[] = [];
  let idle = 0;
  for (let i = 0; i < 200 && out.length < end && idle < 6; i++) {
    const batch = await c.poll({ timeoutMs: 250 });
    idle = batch.length === 0 && c.assignment().length > 0 ? idle + 1 : 0;
    out.push(...batch);
  }
  await c.close();
  return out;
}

/** Runs `make()` until `finished()` (checked every 100 ms, at most 60 s). */
async function finishWith(
  make: () => HashReproducer | RecordingProcessor,
  finished: () => Promise<boolean>,
): Promise<void> {
  const stop = new AbortController();
  const program = make();
  const watcher = (async () => {
    for (let i = 0; i < 600 && !(await finished()); i++) await new Promise((r) => setTimeout(r, 100));
    stop.abort();
  })();
  await program.run(stop.signal);
  await watcher;
}

export interface ReproducerKillResult {
  interrupted: number;
  results: number;
  duplicates: number;
  missing: string[];
}

export async function reproducerKillScenario(
  t: Transport,
  broker: string,
  dir: string,
  topic: string,
  mode: 'exactly' | 'atleast',
): Promise<ReproducerKillResult> {
  await publishKillFiles(t, topic);
  const out = join(dir, 'out');
  const keys = async (): Promise<number> =>
    new Set((await readAll(t, `${topic}-results`)).map((r) => r.key!.toString())).size;
  const interrupted = await killRepeatedly(
    ['reproducer', broker, topic, out, mode],
    async () => (await keys()) < KILL_FILES.length,
  );
  await finishWith(
    () =>
      new HashReproducer({
        transport: t,
        topic,
        producerTopic: `${topic}-results`,
        outputDir: out,
        groupId: 'killable',
        exactlyOnce: mode === 'exactly',
        logger,
        sessionTimeoutMs: 6000,
      }),
    async () => (await keys()) >= KILL_FILES.length,
  );
  const results = await readAll(t, `${topic}-results`);
  const perKey = new Map<string, number>();
  for (const r of results) perKey.set(r.key!.toString(), (perKey.get(r.key!.toString()) ?? 0) + 1);
  return {
    interrupted,
    results: results.length,
    duplicates: [...perKey.values()].reduce((s, n) => s + n - 1, 0),
    missing: KILL_FILES.filter((f) => !perKey.has(resultKeyOf(f))).map((f) => f.filename),
  };
}

export async function processorKillScenario(
  t: Transport,
  broker: string,
  dir: string,
  topic: string,
): Promise<{ interrupted: number; registered: string[]; userCodeRuns: string[] }> {
  await publishKillFiles(t, topic);
  const out = join(dir, 'out');
  const side = join(dir, 'side-effects.log');
  const registryPath = join(out, 'LOGS', `processed_from_${topic}_by_killable.csv`);
  const registered = async (): Promise<number> =>
    (await readRegistry(registryPath, CONSUMER_SUCCEEDED_COLUMNS)).length;
  const interrupted = await killRepeatedly(
    ['processor', broker, topic, out, 'atleast', side],
    async () => (await registered()) < KILL_FILES.length,
  );
  let last: RecordingProcessor | undefined;
  await finishWith(
    () => {
      last = new RecordingProcessor({
        transport: t,
        topic,
        outputDir: out,
        groupId: 'killable',
        logger,
        sessionTimeoutMs: 6000,
      });
      return last;
    },
    async () => (await registered()) >= KILL_FILES.length,
  );
  const rows = await readRegistry(registryPath, CONSUMER_SUCCEEDED_COLUMNS);
  const effects = existsSync(side) ? readFileSync(side, 'utf8').trim().split('\n') : [];
  assert.ok(last !== undefined);
  return {
    interrupted,
    registered: rows.map((r) => String(r.rel_filepath)),
    userCodeRuns: [...effects, ...last.seen.map((x) => x.rel)],
  };
}
