/**
 * `npm run bench -- records [--scale=X] [--rounds=N] [--batch=N] [--json] [--only=embedded,kafka,chain,raw,arroyo]`
 *
 * Consume-and-batch throughput for 1 KiB JSON records (one partition; 100 000 records at scale 1). Every
 * contestant does the same work: read each record, `JSON.parse` its value and keep its `uid` in a batch, hand
 * batches of `--batch` (default 1000) records on, and commit offsets after each batch (or once a second):
 * - `embedded`: sluice's `BatchingConsumer` on the embedded transport (commit after every flush);
 * - `kafka`: sluice's `BatchingConsumer` on Kafka (commit after every flush);
 * - `chain`: sluice's `StreamProcessor` on Kafka with RunTask(parse) → Reduce(batch, 1 s) → RunTask(count) →
 *   CommitOffsets, commit policy once a second: the pipeline Arroyo runs;
 * - `raw`: `@platformatic/kafka`'s consumer stream used directly ('data' events), parsing every record and
 *   committing the last message of every batch the way sluice does (in the background, one commit in flight, the
 *   newest wins);
 * - `arroyo`: `sentry-arroyo` (PyPI, pinned in requirements-arroyo.txt, venv from scripts/arroyo-venv.sh) running
 *   RunTask(json.loads) → Reduce(batch, 1.0) → RunTask(count) → CommitOffsets with ONCE_PER_SECOND.
 *
 * Times start once the consumer has its assignment (sluice: `waitForAssignment`; raw: `consume()` resolved; Arroyo:
 * the factory's `create_with_partitions`) and end when the last record's batch was handed on. Records are produced
 * before each round, outside the measurement. Each contestant runs `--rounds` times (default 3, order rotated);
 * the medians are reported, and ratios are medians of per-round ratios. Uses the broker at SLUICE_KAFKA_BOOTSTRAP,
 * or starts one with scripts/kafka.sh (state in .infra/kafka-bench-records) and stops it afterwards.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import {
  BatchingConsumer,
  CommitOffsets,
  CommitPolicy,
  type Message,
  Reduce,
  RunTask,
  StreamProcessor,
} from '../src/records/index.ts';
import { openEmbeddedTransport } from '../src/transport/embedded/index.ts';
import { openKafkaTransport } from '../src/transport/kafka/index.ts';
import type { ConsumedRecord, Transport } from '../src/transport/types.ts';
import { withKafkaBroker } from './lib/kafka-broker.ts';
import { rawEarliestConsumer } from './lib/raw-kafka.ts';

const ROOT = resolve(import.meta.dirname, '..');
const BENCH_STATE = resolve(ROOT, '.infra/kafka-bench-records');
const MiB = 1024 * 1024;
const RECORD_SIZE = 1024;
const silent = pino({ level: 'silent' });

const CONTESTANTS = ['embedded', 'kafka', 'chain', 'raw', 'arroyo'] as const;
type Contestant = (typeof CONTESTANTS)[number];
const LABELS: Record<Contestant, string> = {
  embedded: 'sluice BatchingConsumer, embedded',
  kafka: 'sluice BatchingConsumer, Kafka',
  chain: 'sluice StreamProcessor chain, Kafka',
  raw: 'raw @platformatic/kafka',
  arroyo: 'sentry-arroyo (Python), Kafka',
};

interface Measure {
  seconds: number;
  records: number;
  /** CPU time of the consuming process during the window (µs). */
  cpuMicros: number;
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function clock(): () => { seconds: number; cpuMicros: number } {
  const start = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { seconds: (performance.now() - start) / 1000, cpuMicros: used.user + used.system };
  };
}

/** A 1 KiB JSON record: `{"uid":"user-<i % 1000>","ts":…,"seq":i,"pad":"…"}`. */
function recordValue(i: number): Buffer {
  const head = `{"uid":"user-${i % 1000}","ts":${1_700_000_000 + Math.floor(i / 100)},"seq":${i},"pad":"`;
  return Buffer.from(`${head}${'x'.repeat(RECORD_SIZE - head.length - 2)}"}`);
}

async function produce(t: Transport, topic: string, count: number): Promise<void> {
  const producer = t.producer();
  for (let sent = 0; sent < count; sent += 1000) {
    const n = Math.min(1000, count - sent);
    await producer.send(
      Array.from({ length: n }, (_, i) => ({ topic, partition: 0, value: recordValue(sent + i) })),
    );
  }
  await producer.close();
}

const uidOf = (value: Buffer): string => (JSON.parse(value.toString('utf8')) as { uid: string }).uid;

async function runBatching(t: Transport, topic: string, count: number, batch: number): Promise<Measure> {
  let flushed = 0;
  let result: Measure | undefined;
  let stop: (() => { seconds: number; cpuMicros: number }) | undefined;
  const c = new BatchingConsumer<string>({
    transport: t,
    groupId: `bench-${randomUUID()}`,
    topics: [topic],
    worker: {
      processMessage: (r) => uidOf(r.value!),
      flushBatch: (b) => {
        flushed += b.length;
      },
      shutdown: () => undefined,
    },
    maxBatchSize: batch,
    maxBatchTimeMs: 1000,
    maxPollRecords: batch,
    logger: silent,
    consumer: { start: 'earliest' },
    onBatch: () => {
      if (flushed >= count && result === undefined) {
        result = { ...stop!(), records: flushed };
        c.stop();
      }
    },
  });
  await c.consumer.waitForAssignment();
  stop = clock();
  await c.run();
  if (result === undefined) throw new Error(`batching consumer stopped at ${flushed}/${count} records`);
  return result;
}

async function runChain(t: Transport, topic: string, count: number, batch: number): Promise<Measure> {
  let done = 0;
  let result: Measure | undefined;
  let stop: (() => { seconds: number; cpuMicros: number }) | undefined;
  const p = new StreamProcessor({
    transport: t,
    groupId: `bench-${randomUUID()}`,
    topics: [topic],
    logger: silent,
    maxPollRecords: batch,
    commitPolicy: CommitPolicy.ONCE_PER_SECOND,
    consumer: { start: 'earliest' },
    factory: {
      createWithPartitions: (commit) =>
        new RunTask<ConsumedRecord, string>(
          (m: Message<ConsumedRecord>) => uidOf(m.payload.value!),
          new Reduce<string, string[]>(
            batch,
            1000,
            (acc, m) => {
              acc.push(m.payload);
              return acc;
            },
            () => [],
            new RunTask<string[], number>((m) => {
              done += m.payload.length;
              if (done >= count && result === undefined) {
                result = { ...stop!(), records: done };
                p.stop();
              }
              return m.payload.length;
            }, new CommitOffsets(commit)),
          ),
        ),
    },
  });
  await p.consumer.waitForAssignment();
  stop = clock();
  await p.run();
  if (result === undefined) throw new Error(`stream processor stopped at ${done}/${count} records`);
  return result;
}

async function runRaw(bootstrap: string, topic: string, count: number, batch: number): Promise<Measure> {
  const { consumer, stream } = await rawEarliestConsumer(bootstrap, topic);
  const stop = clock();
  let records = 0;
  let kept: string[] = [];
  let result: Measure | undefined;
  // commits as sluice's consumers make them: in the background, one in flight, the newest batch end wins
  let running: Promise<void> | undefined;
  let due: { commit: () => void | Promise<void> } | undefined;
  const kick = (): void => {
    if (running !== undefined || due === undefined) return;
    const m = due;
    due = undefined;
    running = Promise.resolve(m.commit()).finally(() => {
      running = undefined;
      kick();
    });
  };
  try {
    await new Promise<void>((resolvePromise, reject) => {
      const stall = setTimeout(
        () => reject(new Error(`raw consumer stalled at ${records}/${count}`)),
        300_000,
      );
      stream.on('error', reject);
      // 'data' events, as bench/transport.ts reads (faster than async iteration of the stream)
      stream.on('data', (m) => {
        if (result !== undefined) return;
        kept.push(uidOf(m.value));
        records++;
        if (kept.length === batch || records === count) {
          kept = [];
          due = m;
          kick();
        }
        if (records === count) {
          result = { ...stop(), records };
          clearTimeout(stall);
          resolvePromise();
        }
      });
    });
    while (running !== undefined) await running;
  } finally {
    await stream.close();
    await consumer.close(true);
  }
  if (result === undefined) throw new Error(`raw consumer ended at ${records}/${count} records`);
  return result;
}

const ARROYO_SCRIPT = `
import json, sys, time
from arroyo.backends.kafka import KafkaConsumer
from arroyo.backends.kafka.configuration import build_kafka_consumer_configuration
from arroyo.commit import ONCE_PER_SECOND
from arroyo.processing import StreamProcessor
from arroyo.processing.strategies import CommitOffsets, Reduce, RunTask
from arroyo.processing.strategies.abstract import ProcessingStrategyFactory
from arroyo.types import Topic

bootstrap, topic, group, total, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
state = {"start": None, "cpu": None, "count": 0, "result": None}

def parse(m):
    return json.loads(m.payload.value)["uid"]

def accumulate(acc, value):
    acc.append(value.payload)
    return acc

def count(m):
    state["count"] += len(m.payload)
    if state["count"] >= total and state["result"] is None:
        state["result"] = {
            "seconds": time.perf_counter() - state["start"],
            "cpuMicros": (time.process_time() - state["cpu"]) * 1e6,
            "records": state["count"],
        }
        processor.signal_shutdown()
    return len(m.payload)

class Factory(ProcessingStrategyFactory):
    def create_with_partitions(self, commit, partitions):
        if state["start"] is None:
            state["start"] = time.perf_counter()
            state["cpu"] = time.process_time()
        return RunTask(parse, Reduce(batch, 1.0, accumulate, list, RunTask(count, CommitOffsets(commit))))

consumer = KafkaConsumer(build_kafka_consumer_configuration(
    {}, group_id=group, auto_offset_reset="earliest", bootstrap_servers=[bootstrap]))
processor = StreamProcessor(consumer, Topic(topic), Factory(), ONCE_PER_SECOND)
processor.run()
if state["result"] is None:
    sys.exit("arroyo stopped at %d/%d records" % (state["count"], total))
print(json.dumps(state["result"]))
`;

function runArroyo(
  python: string,
  bootstrap: string,
  topic: string,
  count: number,
  batch: number,
): Promise<Measure> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      python,
      ['-c', ARROYO_SCRIPT, bootstrap, topic, `bench-arroyo-${randomUUID()}`, String(count), String(batch)],
      { maxBuffer: 16 * MiB, timeout: 600_000 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`arroyo failed: ${err.message}\n${stderr.slice(-4000)}`));
          return;
        }
        const last = stdout.trim().split('\n').at(-1) ?? '';
        try {
          resolvePromise(JSON.parse(last) as Measure);
        } catch {
          reject(new Error(`cannot read the arroyo result from:\n${stdout}\n${stderr.slice(-4000)}`));
        }
      },
    );
  });
}

interface Options {
  scale: number;
  rounds: number;
  batch: number;
  json: boolean;
  only: Set<Contestant>;
}

function parseArgs(args: string[]): Options {
  const o: Options = { scale: 1, rounds: 3, batch: 1000, json: false, only: new Set(CONTESTANTS) };
  for (const a of args) {
    const [k, v] = a.split('=', 2) as [string, string | undefined];
    if (k === '--json') o.json = true;
    else if (k === '--scale' && Number(v) > 0) o.scale = Number(v);
    else if (k === '--rounds' && Number.isInteger(Number(v)) && Number(v) >= 1) o.rounds = Number(v);
    else if (k === '--batch' && Number.isInteger(Number(v)) && Number(v) >= 1) o.batch = Number(v);
    else if (k === '--only' && v !== undefined) {
      const names = v.split(',');
      for (const n of names) {
        if (!(CONTESTANTS as readonly string[]).includes(n)) {
          throw new Error(`--only: unknown contestant "${n}"; use ${CONTESTANTS.join(',')}`);
        }
      }
      o.only = new Set(names as Contestant[]);
    } else {
      throw new Error(
        `bad option ${a}; use --scale=X (> 0), --rounds=N (≥ 1), --batch=N (≥ 1), --json, --only=${CONTESTANTS.join(',')}`,
      );
    }
  }
  return o;
}

export async function runRecordsBench(args: string[]): Promise<void> {
  const o = parseArgs(args);
  const count = Math.max(o.batch, Math.round(100_000 * o.scale));
  let python: string | undefined;
  if (o.only.has('arroyo')) {
    const out = execFileSync('bash', [resolve(ROOT, 'scripts/arroyo-venv.sh')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    python = out.toString().trim().split('\n').at(-1)!;
  }
  const startedAt = performance.now();
  const runs = new Map<Contestant, Measure[]>();
  await withKafkaBroker(BENCH_STATE, async ({ bootstrap }) => {
    log(
      `broker ${bootstrap}; node ${process.version}; ${cpus().length} cores; ${count} records of ${RECORD_SIZE} B, ` +
        `batches of ${o.batch}; ${o.rounds} round(s), median reported`,
    );
    const kafka = await openKafkaTransport({ bootstrapServers: bootstrap, clientId: 'bench-records' });
    const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-records-'));
    const embedded = await openEmbeddedTransport({ path: join(dir, 'bench.db') });
    try {
      // warm-up (JIT), not measured
      const warm = Math.max(o.batch, Math.round(count / 20));
      if (o.only.has('embedded')) {
        await embedded.createTopic({ name: 'warmup', partitions: 1 });
        await produce(embedded, 'warmup', warm);
        await runBatching(embedded, 'warmup', warm, o.batch);
      }
      const kafkaWarm = `bench-records-warmup-${randomUUID().slice(0, 8)}`;
      await kafka.createTopic({ name: kafkaWarm, partitions: 1 });
      await produce(kafka, kafkaWarm, warm);
      if (o.only.has('kafka')) await runBatching(kafka, kafkaWarm, warm, o.batch);
      if (o.only.has('chain')) await runChain(kafka, kafkaWarm, warm, o.batch);
      if (o.only.has('raw')) await runRaw(bootstrap, kafkaWarm, warm, o.batch);
      await kafka.deleteTopic(kafkaWarm).catch(() => undefined);

      const order = CONTESTANTS.filter((c) => o.only.has(c));
      for (let round = 0; round < o.rounds; round++) {
        const topic = `bench-records-${randomUUID().slice(0, 8)}`;
        if (order.some((c) => c !== 'embedded')) {
          await kafka.createTopic({ name: topic, partitions: 1 });
          await produce(kafka, topic, count);
        }
        if (order.includes('embedded')) {
          await embedded.createTopic({ name: topic, partitions: 1 });
          await produce(embedded, topic, count);
        }
        const rotated = [...order.slice(round % order.length), ...order.slice(0, round % order.length)];
        for (const c of rotated) {
          let m: Measure;
          if (c === 'embedded') m = await runBatching(embedded, topic, count, o.batch);
          else if (c === 'kafka') m = await runBatching(kafka, topic, count, o.batch);
          else if (c === 'chain') m = await runChain(kafka, topic, count, o.batch);
          else if (c === 'raw') m = await runRaw(bootstrap, topic, count, o.batch);
          else m = await runArroyo(python!, bootstrap, topic, count, o.batch);
          log(
            `  round ${round + 1} ${LABELS[c]}: ${fmt(m.records / m.seconds)} rec/s, CPU ${fmt(m.cpuMicros / m.records, 2)} µs/record`,
          );
          runs.set(c, [...(runs.get(c) ?? []), m]);
        }
        if (order.some((c) => c !== 'embedded')) await kafka.deleteTopic(topic).catch(() => undefined);
        if (order.includes('embedded')) await embedded.deleteTopic(topic).catch(() => undefined);
      }
    } finally {
      await embedded.close();
      await kafka.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
  log(`benchmark took ${fmt((performance.now() - startedAt) / 1000, 1)} s`);
  report(runs, o.json);
}

function report(runs: Map<Contestant, Measure[]>, json: boolean): void {
  const rate = (m: Measure): number => m.records / m.seconds;
  const rows = [...runs].map(([c, list]) => ({
    contestant: c,
    label: LABELS[c],
    recordsPerSec: median(list.map(rate)),
    mibPerSec: median(list.map((m) => (m.records * RECORD_SIZE) / MiB / m.seconds)),
    cpuMicrosPerRecord: median(list.map((m) => m.cpuMicros / m.records)),
    rounds: list.map(rate),
  }));
  const ratio = (a: Contestant, b: Contestant): number | undefined => {
    const x = runs.get(a);
    const y = runs.get(b);
    if (!x || !y) return undefined;
    return median(x.map((m, i) => rate(m) / rate(y[i]!)).filter(Number.isFinite));
  };
  const ratios = (
    [
      ['kafka', 'raw', 0.9],
      ['chain', 'raw', undefined],
      ['kafka', 'arroyo', 5],
      ['chain', 'arroyo', 5],
      ['embedded', 'arroyo', undefined],
    ] as Array<[Contestant, Contestant, number | undefined]>
  )
    .map(([a, b, target]) => ({ a, b, target, value: ratio(a, b) }))
    .filter((r) => r.value !== undefined);
  if (json) {
    console.log(JSON.stringify({ rows, ratios }, null, 2));
    return;
  }
  const width = Math.max(...rows.map((r) => r.label.length));
  console.log(`${'contestant'.padEnd(width)}  ${'rec/s'.padStart(9)}  ${'MiB/s'.padStart(7)}  CPU µs/rec`);
  for (const r of rows) {
    console.log(
      `${r.label.padEnd(width)}  ${fmt(r.recordsPerSec).padStart(9)}  ${fmt(r.mibPerSec, 1).padStart(7)}  ${fmt(r.cpuMicrosPerRecord, 2).padStart(10)}`,
    );
  }
  console.log('');
  console.log('ratios (median of per-round ratios; >1 means the first is faster):');
  for (const r of ratios) {
    const verdict =
      r.target === undefined ? '' : `  (target ≥ ${r.target}: ${r.value! >= r.target ? 'met' : 'NOT met'})`;
    console.log(`  ${LABELS[r.a]} ÷ ${LABELS[r.b]}: ${fmt(r.value!, 2)}×${verdict}`);
  }
}
