/**
 * `npm run bench -- transport [--scale=X] [--rounds=N] [--json] [--only=embedded,kafka,raw,java]`
 *
 * Produce and consume throughput (records/s, MiB/s of values) for 1 KiB and 512 KiB records, one partition, for:
 * - `embedded`: sluice's embedded transport (SQLite file in a temp dir);
 * - `kafka`: sluice's Kafka transport;
 * - `raw`: `@platformatic/kafka` used directly for the same work;
 * - `java`: Kafka's own `ProducerPerformance` / `ConsumerPerformance` (jars from infra/kafka/tools).
 *
 * Rules that keep the comparison fair:
 * - every Kafka producer is idempotent with acks=all and sends requests of at most 1 MiB per partition (Kafka's
 *   default max.request.size / message.max.bytes); sluice and the raw client are called with the records of one
 *   such request per call and send one request at a time; the Java producer pipelines up to 5 (its default);
 * - consume times start once the consumer has joined its group (sluice: `waitForAssignment`, raw: after
 *   `consume()` resolved, Java: `fetch.*` columns, which leave out the join) and end at the last record;
 * - sluice and the raw client get a small warm-up run first (JIT), not measured;
 * - every contestant runs `--rounds` times (default 4, order rotated) and the median is reported; ratios are the
 *   median of per-round ratios. On a small machine the broker shares the cores with the client (and with
 *   whatever else runs), and single runs vary by ±30 % or more.
 *
 * Uses the broker at SLUICE_KAFKA_BOOTSTRAP, or starts one with scripts/kafka.sh (state in .infra/kafka-bench) and
 * stops it afterwards.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Producer as RawProducer } from '@platformatic/kafka';
import { openEmbeddedTransport } from '../src/transport/embedded/index.ts';
import { openKafkaTransport } from '../src/transport/kafka/index.ts';
import type { Transport } from '../src/transport/types.ts';
import { KAFKA_SH, ROOT, withKafkaBroker } from './lib/kafka-broker.ts';
import { rawEarliestConsumer } from './lib/raw-kafka.ts';

const BENCH_STATE = resolve(ROOT, '.infra/kafka-bench');
const MiB = 1024 * 1024;
/** Kafka's default max.request.size, and the per-request batch limit used by every Kafka contestant. */
const REQUEST_BYTES = 1_048_576;

interface Workload {
  label: string;
  size: number;
  count: number;
}

interface Measure {
  seconds: number;
  /** CPU time of this process during the measured window (Node contestants only). */
  cpuMicros?: number;
  records: number;
  bytes: number;
}

interface Row {
  workload: string;
  contestant: string;
  produce: { recordsPerSec: number; mibPerSec: number };
  consume: { recordsPerSec: number; mibPerSec: number };
  /** Records/s of every round, in round order (produce, consume). */
  rounds: Array<[number, number]>;
  /** Median client CPU per record in µs (produce, consume); Node contestants only. */
  cpuPerRecord?: [number, number];
}

const CONTESTANTS = ['embedded', 'kafka', 'raw', 'java'] as const;
type Contestant = (typeof CONTESTANTS)[number];
const LABELS: Record<Contestant, string> = {
  embedded: 'sluice embedded',
  kafka: 'sluice kafka',
  raw: 'raw @platformatic/kafka',
  java: 'Kafka perf tools (Java)',
};

/** Starts a wall-clock and process-CPU clock. */
function clock(): () => { seconds: number; cpuMicros: number } {
  const start = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { seconds: (performance.now() - start) / 1000, cpuMicros: used.user + used.system };
  };
}

function rate(m: Measure): { recordsPerSec: number; mibPerSec: number } {
  return { recordsPerSec: m.records / m.seconds, mibPerSec: m.bytes / MiB / m.seconds };
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

// ---- broker -----------------------------------------------------------------------------------------------------

function withBroker<T>(fn: (bootstrap: string) => Promise<T>): Promise<T> {
  return withKafkaBroker(BENCH_STATE, (broker) => fn(broker.bootstrap), log);
}

// ---- sluice transports (embedded and Kafka) -------------------------------------------------------------------

/**
 * Records per send call, for every contestant alike: as many as fit one ~1 MiB request (1,000 of 1 KiB; one of
 * 512 KiB). sluice would split larger sends itself; the raw client would send them as one oversized batch.
 */
function perRequest(size: number): number {
  return Math.max(1, Math.floor((REQUEST_BYTES - 61) / (size + 24)));
}

async function sluiceProduce(t: Transport, topic: string, w: Workload): Promise<Measure> {
  const value = randomBytes(w.size);
  const producer = t.producer();
  const perSend = perRequest(w.size);
  const stop = clock();
  for (let sent = 0; sent < w.count; sent += perSend) {
    const n = Math.min(perSend, w.count - sent);
    await producer.send(Array.from({ length: n }, () => ({ topic, partition: 0, value })));
  }
  await producer.flush();
  const timing = stop();
  await producer.close();
  return { ...timing, records: w.count, bytes: w.count * w.size };
}

async function sluiceConsume(t: Transport, topic: string, w: Workload): Promise<Measure> {
  const consumer = t.consumer({ groupId: `bench-${randomUUID()}`, topics: [topic], start: 'earliest' });
  await consumer.waitForAssignment();
  let records = 0;
  let bytes = 0;
  const stop = clock();
  let lastProgress = performance.now();
  while (records < w.count) {
    const batch = await consumer.poll({ maxRecords: 10_000, timeoutMs: 1000 });
    for (const r of batch) bytes += r.value?.length ?? 0;
    records += batch.length;
    const now = performance.now();
    if (batch.length > 0) lastProgress = now;
    else if (now - lastProgress > 30_000)
      throw new Error(`consumer stalled at ${records}/${w.count} records`);
  }
  const timing = stop();
  await consumer.close();
  return { ...timing, records, bytes };
}

/** Creates a topic for one run and deletes it afterwards, so repeated runs do not fill the broker's disk. */
async function withTopic<T>(t: Transport, prefix: string, fn: (topic: string) => Promise<T>): Promise<T> {
  const topic = `${prefix}-${randomUUID().slice(0, 8)}`;
  await t.createTopic({ name: topic, partitions: 1 });
  try {
    return await fn(topic);
  } finally {
    await t.deleteTopic(topic).catch(() => undefined);
  }
}

const warmupOf = (w: Workload): Workload => ({ ...w, count: Math.max(2, Math.ceil(w.count / 20)) });

async function runSluice(
  t: Transport,
  prefix: string,
  w: Workload,
  warmup: boolean,
): Promise<[Measure, Measure]> {
  if (warmup) {
    await withTopic(t, `${prefix}-warmup`, async (topic) => {
      await sluiceProduce(t, topic, warmupOf(w));
      await sluiceConsume(t, topic, warmupOf(w));
    });
  }
  return withTopic(t, prefix, async (topic) => [
    await sluiceProduce(t, topic, w),
    await sluiceConsume(t, topic, w),
  ]);
}

// ---- raw @platformatic/kafka ------------------------------------------------------------------------------------

async function rawProduce(bootstrap: string, topic: string, w: Workload): Promise<Measure> {
  const value = randomBytes(w.size);
  const producer = new RawProducer({
    clientId: 'bench-raw',
    bootstrapBrokers: [bootstrap],
    idempotent: true,
  });
  const per = perRequest(w.size);
  const stop = clock();
  for (let sent = 0; sent < w.count; sent += per) {
    const n = Math.min(per, w.count - sent);
    await producer.send({ messages: Array.from({ length: n }, () => ({ topic, partition: 0, value })) });
  }
  const timing = stop();
  await producer.close();
  return { ...timing, records: w.count, bytes: w.count * w.size };
}

async function rawConsume(bootstrap: string, topic: string, w: Workload): Promise<Measure> {
  const { consumer, stream } = await rawEarliestConsumer(bootstrap, topic);
  let records = 0;
  let bytes = 0;
  const stop = clock();
  await new Promise<void>((resolvePromise, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`raw consumer stalled at ${records}/${w.count}`)),
      120_000,
    );
    stream.on('error', reject);
    stream.on('data', (m) => {
      records++;
      bytes += m.value?.length ?? 0;
      if (records === w.count) {
        clearTimeout(timer);
        resolvePromise();
      }
    });
  });
  const timing = stop();
  await stream.close();
  await consumer.close(true);
  return { ...timing, records, bytes };
}

async function runRaw(
  bootstrap: string,
  admin: Transport,
  w: Workload,
  warmup: boolean,
): Promise<[Measure, Measure]> {
  if (warmup) {
    await withTopic(admin, 'bench-raw-warmup', async (topic) => {
      await rawProduce(bootstrap, topic, warmupOf(w));
      await rawConsume(bootstrap, topic, warmupOf(w));
    });
  }
  return withTopic(admin, 'bench-raw', async (topic) => [
    await rawProduce(bootstrap, topic, w),
    await rawConsume(bootstrap, topic, w),
  ]);
}

// ---- Kafka's perf tools -------------------------------------------------------------------------------------------

function java(args: string[]): Promise<string> {
  const classpath = `${resolve(ROOT, 'infra/kafka/tools/lib')}/*`;
  const log4j = resolve(ROOT, 'infra/kafka/tools/log4j2.properties');
  return new Promise((resolvePromise, reject) => {
    execFile(
      'java',
      ['-Xmx512m', `-Dlog4j2.configurationFile=${log4j}`, '-cp', classpath, ...args],
      { maxBuffer: 16 * MiB },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${args[0]} failed: ${err.message}\n${stderr}`));
        else resolvePromise(stdout);
      },
    );
  });
}

async function runJava(bootstrap: string, admin: Transport, w: Workload): Promise<[Measure, Measure]> {
  return withTopic(admin, 'bench-java', (topic) => runJavaOn(bootstrap, topic, w));
}

async function runJavaOn(bootstrap: string, topic: string, w: Workload): Promise<[Measure, Measure]> {
  const out = await java([
    'org.apache.kafka.tools.ProducerPerformance',
    '--topic',
    topic,
    '--num-records',
    String(w.count),
    '--record-size',
    String(w.size),
    '--throughput',
    '-1',
    '--producer-props',
    `bootstrap.servers=${bootstrap}`,
    'acks=all',
    'enable.idempotence=true',
    'linger.ms=5',
    `batch.size=${REQUEST_BYTES}`,
    `max.request.size=${REQUEST_BYTES}`,
    'buffer.memory=134217728',
  ]);
  const summary = [...out.matchAll(/(\d+) records sent, ([\d.]+) records\/sec \(([\d.]+) MB\/sec\)/g)].at(-1);
  if (!summary) throw new Error(`cannot read ProducerPerformance output:\n${out}`);
  const produceRate = Number(summary[2]);
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  const config = join(dir, 'consumer.properties');
  writeFileSync(config, 'isolation.level=read_committed\nauto.offset.reset=earliest\n');
  try {
    const cout = await java([
      'org.apache.kafka.tools.ConsumerPerformance',
      '--bootstrap-server',
      bootstrap,
      '--topic',
      topic,
      '--messages',
      String(w.count),
      '--group',
      `bench-java-${randomUUID()}`,
      '--timeout',
      '60000',
      '--consumer.config',
      config,
      '--hide-header',
    ]);
    const line = cout
      .trim()
      .split('\n')
      .filter((l) => l.includes(','))
      .at(-1);
    const cols = line?.split(',').map((c) => c.trim());
    if (!cols || cols.length < 10) throw new Error(`cannot read ConsumerPerformance output:\n${cout}`);
    // start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms,
    // fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    const records = Number(cols[4]);
    const fetchSeconds = Number(cols[7]) / 1000;
    if (records < w.count) throw new Error(`ConsumerPerformance read ${records}/${w.count} records`);
    return [
      { seconds: w.count / produceRate, records: w.count, bytes: w.count * w.size },
      { seconds: fetchSeconds, records, bytes: records * w.size },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- report -----------------------------------------------------------------------------------------------------

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function printTable(rows: Row[]): void {
  const header = [
    'workload',
    'contestant',
    'produce rec/s',
    'produce MiB/s',
    'consume rec/s',
    'consume MiB/s',
  ];
  const lines = rows.map((r) => [
    r.workload,
    LABELS[r.contestant as Contestant] ?? r.contestant,
    fmt(r.produce.recordsPerSec),
    fmt(r.produce.mibPerSec, 1),
    fmt(r.consume.recordsPerSec),
    fmt(r.consume.mibPerSec, 1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]): string =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(row(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(row(l));
  console.log('');
  console.log('');
  console.log(
    'ratios: sluice kafka ÷ other, median of the per-round ratios (runs of one round are adjacent in time, so the ratio',
  );
  console.log('is less disturbed by load changes than a ratio of medians); >1 means sluice kafka is faster');
  for (const workload of [...new Set(rows.map((r) => r.workload))]) {
    const mine = rows.find((r) => r.workload === workload && r.contestant === 'kafka');
    if (!mine) continue;
    for (const other of rows.filter((r) => r.workload === workload && r.contestant !== 'kafka')) {
      const paired = (i: 0 | 1): number =>
        median(
          mine.rounds
            .map((m, round) => m[i] / (other.rounds[round]?.[i] ?? Number.NaN))
            .filter(Number.isFinite),
        );
      const p = paired(0);
      const c = paired(1);
      const target =
        other.contestant === 'raw' ? `  (target ≥ 0.90: ${p >= 0.9 && c >= 0.9 ? 'met' : 'NOT met'})` : '';
      console.log(
        `  ${workload.padEnd(8)} ÷ ${(LABELS[other.contestant as Contestant] ?? other.contestant).padEnd(24)} produce ${fmt(p, 2)}×  consume ${fmt(c, 2)}×${target}`,
      );
    }
  }
  console.log('');
  console.log(
    'client CPU per record (µs, this process: user+system; lower is better; embedded includes its storage)',
  );
  for (const r of rows) {
    if (r.cpuPerRecord === undefined) continue;
    console.log(
      `  ${r.workload.padEnd(8)} ${(LABELS[r.contestant as Contestant] ?? r.contestant).padEnd(24)} produce ${fmt(r.cpuPerRecord[0], 2).padStart(9)}  consume ${fmt(r.cpuPerRecord[1], 2).padStart(9)}`,
    );
  }
}

function parseArgs(args: string[]): { scale: number; rounds: number; json: boolean; only: Set<Contestant> } {
  let scale = 1;
  let rounds = 4;
  let json = false;
  let only = new Set<Contestant>(CONTESTANTS);
  for (const a of args) {
    if (a === '--json') json = true;
    else if (a.startsWith('--rounds=')) {
      rounds = Number(a.slice('--rounds='.length));
      if (!Number.isInteger(rounds) || rounds < 1)
        throw new Error(`--rounds must be an integer >= 1, got ${a}`);
    } else if (a.startsWith('--scale=')) {
      scale = Number(a.slice('--scale='.length));
      if (!(scale > 0)) throw new Error(`--scale must be a positive number, got ${a}`);
    } else if (a.startsWith('--only=')) {
      const names = a.slice('--only='.length).split(',');
      for (const n of names) {
        if (!(CONTESTANTS as readonly string[]).includes(n)) {
          throw new Error(`--only: unknown contestant "${n}"; use ${CONTESTANTS.join(',')}`);
        }
      }
      only = new Set(names as Contestant[]);
    } else {
      throw new Error(
        `unknown option ${a}; use --scale=X, --rounds=N, --json, --only=${CONTESTANTS.join(',')}`,
      );
    }
  }
  return { scale, rounds, json, only };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export async function runTransportBench(args: string[]): Promise<void> {
  const { scale, rounds, json, only } = parseArgs(args);
  const workloads: Workload[] = [
    { label: '1 KiB', size: 1024, count: Math.round(150_000 * scale) },
    { label: '512 KiB', size: 512 * 1024, count: Math.max(2, Math.round(400 * scale)) },
  ];
  if (only.has('java'))
    execFileSync(KAFKA_SH, ['install', 'tools'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const rows: Row[] = [];
  const startedAt = performance.now();
  await withBroker(async (bootstrap) => {
    log(
      `broker ${bootstrap}; node ${process.version}; ${cpus().length} cores; ${rounds} round(s), median reported`,
    );
    const kafka = await openKafkaTransport({ bootstrapServers: bootstrap, clientId: 'bench' });
    const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-embedded-'));
    const embedded = await openEmbeddedTransport({ path: join(dir, 'bench.db') });
    try {
      for (const w of workloads) {
        log(`${w.label} × ${w.count} records:`);
        const runs = new Map<Contestant, Array<[Measure, Measure]>>();
        const order = CONTESTANTS.filter((c) => only.has(c));
        for (let round = 0; round < rounds; round++) {
          // rotate the order so no contestant always runs right after the same neighbour
          const rotated = [...order.slice(round % order.length), ...order.slice(0, round % order.length)];
          for (const contestant of rotated) {
            const warm = round === 0;
            let result: [Measure, Measure];
            if (contestant === 'embedded') result = await runSluice(embedded, 'bench-embedded', w, warm);
            else if (contestant === 'kafka') result = await runSluice(kafka, 'bench-kafka', w, warm);
            else if (contestant === 'raw') result = await runRaw(bootstrap, kafka, w, warm);
            else result = await runJava(bootstrap, kafka, w);
            const [p, c] = result;
            log(
              `  round ${round + 1} ${LABELS[contestant]}: produce ${fmt(p.records / p.seconds)} rec/s, consume ${fmt(c.records / c.seconds)} rec/s${p.cpuMicros === undefined ? '' : ` (client CPU µs/record: ${fmt(p.cpuMicros / p.records, 2)}, ${fmt(c.cpuMicros! / c.records, 2)})`}`,
            );
            runs.set(contestant, [...(runs.get(contestant) ?? []), result]);
          }
        }
        for (const contestant of order) {
          const list = runs.get(contestant)!;
          const pick = (i: 0 | 1) => ({
            recordsPerSec: median(list.map((r) => rate(r[i]).recordsPerSec)),
            mibPerSec: median(list.map((r) => rate(r[i]).mibPerSec)),
          });
          rows.push({
            workload: w.label,
            contestant,
            produce: pick(0),
            consume: pick(1),
            rounds: list.map(([p, c]) => [rate(p).recordsPerSec, rate(c).recordsPerSec]),
            ...(list[0]![0].cpuMicros === undefined
              ? {}
              : {
                  cpuPerRecord: [
                    median(list.map(([p]) => p.cpuMicros! / p.records)),
                    median(list.map(([, c]) => c.cpuMicros! / c.records)),
                  ] as [number, number],
                }),
          });
        }
      }
    } finally {
      await embedded.close();
      await kafka.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
  log(`benchmark took ${fmt((performance.now() - startedAt) / 1000, 1)} s`);
  if (json) console.log(JSON.stringify(rows, null, 2));
  else printTable(rows);
}
