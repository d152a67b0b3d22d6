/**
 * `npm run bench -- reproduce [--scale=X] [--rounds=N] [--concurrency=N] [--chunk-kib=N] [--partitions=N]
 *                             [--only=kafka-alo,kafka-eos,embedded-alo,embedded-eos,python] [--timeout=S] [--json]`
 *
 * Files per second and MB/s through a trivial reproducer: every file rebuilt from a chunk topic is hashed
 * (SHA-256) and `{"file", "sha256", "bytes"}` is produced as JSON to a result topic, keyed as OpenMSIStream keys
 * processing results. Contestants, all doing exactly that job on the same chunks:
 * - `kafka-alo` / `kafka-eos`: sluice's `MetadataJSONReproducer` on Kafka, at-least-once / exactly-once (each
 *   file's result, its done record and its chunks' offsets in one Kafka transaction);
 * - `embedded-alo` / `embedded-eos`: the same on the embedded broker (exactly-once = one SQLite transaction);
 * - `python`: OpenMSIStream's own `MetadataJSONReproducer` (bench/python/hash_metadata_reproducer.py, a small
 *   subclass run with upstream's `run_from_command_line`, whose topic-argument mapping it has to fix: 1.8.8 cannot
 *   start a reproducer from the command line as shipped) from the venv, on the same Kafka broker, with a config of
 *   librdkafka defaults (`DataFileChunkDeserializer` in, `StringSerializer` out).
 *
 * Corpus (deterministic, incompressible): 500 files at scale 1, sizes uniform in 16–256 KiB (≈ 68 MB), in five
 * subdirectories plus every tenth file at the root, cut into OpenMSIStream chunks of at most `--chunk-kib` (default
 * 64, so most files take 2–4 chunks) exactly as an uploader would; chunks go round-robin over `--partitions`
 * (default 4) partitions. Every run gets fresh topics, a fresh group and output dir (and a fresh embedded database);
 * the chunks are published before the run, outside the measurement.
 *
 * What is timed: from the moment the program starts consuming (sluice: `run()` is called; OpenMSIStream: its
 * "Will process files …" log line, i.e. after interpreter start-up and client construction, which are reported
 * apart) to the last result produced: a `read_committed` consumer of the result topic, started and assigned
 * beforehand, reads until it has one correct result per file, and the newest of those results' timestamps (set by
 * the producing client on this machine's clock) ends the window; the round log shows how much later the counter
 * saw it (a few ms). Both sides include their consumer-group join. Each result is checked (file, SHA-256, size);
 * duplicates and wrong results are counted, and a contestant with a wrong result never passes. MB/s = corpus
 * bytes (10^6) ÷ seconds. Both
 * sides log at their default level (info): sluice to a JSON log file, OpenMSIStream to its stdout (read by us).
 * Concurrency: each program runs with its own default (OpenMSIStream 2 threads; sluice 2 files at a time, 32 for
 * exactly-once reproducers, whose results share transactions) unless `--concurrency` sets both.
 *
 * CPU seconds over the timed window are reported for the program (sluice: this process, which also runs the
 * result counter; OpenMSIStream: its process) and for the Kafka broker when this benchmark started it.
 * `--rounds` (default 3) repeats every contestant, order rotated; medians are reported, and each ratio is
 * sluice files/s ÷ OpenMSIStream files/s of the same round, median over rounds; PASS when ≥ 3. The default run
 * takes about 5 minutes on 2 cores, most of it in Kafka exactly-once.
 *
 * Uses the broker at SLUICE_KAFKA_BOOTSTRAP, or starts a private one with scripts/kafka.sh (state in
 * .infra/kafka-bench-reproduce) and stops it afterwards. OpenMSIStream comes from $SLUICE_VENV (default .venv;
 * create it with `bash scripts/python-venv.sh`); without it the Python contestant is skipped.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createCipheriv, createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { type Logger, pino } from 'pino';
import { resultKey } from '../src/files/chunk-key.ts';
import type { DownloadDataFile } from '../src/files/download-data-file.ts';
import { doneTopicName, MetadataJSONReproducer } from '../src/processing/index.ts';
import { openEmbeddedTransport } from '../src/transport/embedded/index.ts';
import { openKafkaTransport } from '../src/transport/kafka/index.ts';
import type { ProduceRecord, Transport } from '../src/transport/types.ts';
import { chunkFile, chunkRecords } from '../test/unit/files/stream-helpers.ts';
import { withKafkaBroker } from './lib/kafka-broker.ts';

const ROOT = resolve(import.meta.dirname, '..');
const BENCH_STATE = resolve(ROOT, '.infra/kafka-bench-reproduce');
const VENV = resolve(process.env.SLUICE_VENV ?? resolve(ROOT, '.venv'));
const PY_REPRODUCER = resolve(ROOT, 'bench/python/hash_metadata_reproducer.py');
const KiB = 1024;
const MB = 1e6;
const TARGET_RATIO = 3;

const CONTESTANTS = ['kafka-alo', 'kafka-eos', 'embedded-alo', 'embedded-eos', 'python'] as const;
type Contestant = (typeof CONTESTANTS)[number];
const LABELS: Record<Contestant, string> = {
  'kafka-alo': 'sluice, Kafka, at-least-once',
  'kafka-eos': 'sluice, Kafka, exactly-once',
  'embedded-alo': 'sluice, embedded, at-least-once',
  'embedded-eos': 'sluice, embedded, exactly-once',
  python: 'OpenMSIStream 1.8.8, Kafka',
};

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Resolves after `ms` without keeping the process alive (for time limits raced against the real work). */
const deadline = (ms: number): Promise<undefined> =>
  new Promise((r) => {
    setTimeout(() => r(undefined), ms).unref();
  });

// ---------------------------------------------------------------------------------------------------------------
// corpus

interface CorpusFile {
  subdir: string;
  filename: string;
  size: number;
  /** The result a correct reproducer produces, by result key. */
  key: string;
  rel: string;
  sha256: string;
}

interface Corpus {
  files: CorpusFile[];
  bytes: number;
  /** Encoded chunk records (topic filled in per run). */
  records: Omit<ProduceRecord, 'topic'>[];
  chunks: number;
}

/** splitmix-like seeded PRNG for sizes. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 2 ** 32;
  };
}

/** Deterministic incompressible bytes: an AES-128-CTR keystream keyed by the file's path. */
function fileBytes(rel: string, size: number): Buffer {
  const key = createHash('sha256').update(`sluice-bench-reproduce\0${rel}`).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

function makeCorpus(
  count: number,
  minSize: number,
  maxSize: number,
  chunkSize: number,
  partitions: number,
): Corpus {
  const rand = prng(20240611);
  const files: CorpusFile[] = [];
  const records: Omit<ProduceRecord, 'topic'>[] = [];
  for (let i = 0; i < count; i++) {
    const size = minSize + Math.floor(rand() * (maxSize - minSize + 1));
    const subdir = i % 10 === 9 ? '' : `run${i % 5}/raw`;
    const filename = `scan_${String(i).padStart(5, '0')}.dat`;
    const rel = subdir === '' ? filename : `${subdir}/${filename}`;
    const data = fileBytes(rel, size);
    files.push({
      subdir,
      filename,
      size,
      key: resultKey(subdir, filename),
      rel,
      sha256: createHash('sha256').update(data).digest('hex'),
    });
    for (const r of chunkRecords('-', chunkFile(data, { subdir, filename, chunkSize }), partitions)) {
      records.push({ key: r.key, value: r.value, partition: records.length % partitions });
    }
  }
  return { files, bytes: files.reduce((n, f) => n + f.size, 0), records, chunks: records.length };
}

async function publish(t: Transport, topic: string, corpus: Corpus): Promise<void> {
  const producer = t.producer();
  try {
    let batch: ProduceRecord[] = [];
    let bytes = 0;
    for (const r of corpus.records) {
      batch.push({ ...r, topic });
      bytes += (r.value as Buffer).length;
      if (bytes >= 8 * 1024 * 1024) {
        await producer.send(batch);
        batch = [];
        bytes = 0;
      }
    }
    if (batch.length > 0) await producer.send(batch);
  } finally {
    await producer.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// the result counter

interface Tally {
  /** Files with a correct result. */
  distinct: number;
  /** Correct results seen again. */
  duplicates: number;
  /** Results that do not match the corpus (unknown key, wrong hash, size or name), and a few examples. */
  bad: number;
  badExamples: string[];
  /** When every file had a result: `performance.now()` when the counter saw it, and the newest result's timestamp. */
  observedAt: number | undefined;
  lastResultAt: number | undefined;
}

/** A record timestamp (epoch ms, set by the producing client) on the `performance.now()` clock. */
const toPerfClock = (epochMs: number): number => epochMs - performance.timeOrigin;

/**
 * Reads the result topic (read_committed, from the start) and checks every result against the corpus until
 * `stop()`; `complete` resolves when every file has a result, with the time the last of them was produced.
 */
class ResultCounter {
  readonly tally: Tally = {
    distinct: 0,
    duplicates: 0,
    bad: 0,
    badExamples: [],
    observedAt: undefined,
    lastResultAt: undefined,
  };
  private readonly seen = new Set<string>();
  private newest = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private resolveComplete!: (at: number) => void;
  readonly complete = new Promise<number>((r) => {
    this.resolveComplete = r;
  });
  private readonly expected: Map<string, CorpusFile>;

  constructor(
    private readonly t: Transport,
    private readonly topic: string,
    corpus: Corpus,
  ) {
    this.expected = new Map(corpus.files.map((f) => [f.key, f]));
  }

  async start(): Promise<void> {
    const c = this.t.consumer({
      groupId: `bench-reproduce-count-${randomUUID()}`,
      topics: [this.topic],
      start: 'earliest',
      isolation: 'read_committed',
    });
    await c.waitForAssignment(60_000);
    this.loop = (async () => {
      try {
        while (!this.stopped) {
          const batch = await c.poll({ timeoutMs: 100 });
          const at = performance.now();
          for (const r of batch) this.check(r.key?.toString('utf8') ?? '', r.value, r.timestamp);
          if (this.tally.observedAt === undefined && this.tally.distinct === this.expected.size) {
            this.tally.observedAt = at;
            // the producer's clock is this machine's: the newest result's timestamp is when the job was done,
            // without the counter's own fetch latency (never later than what the counter saw)
            this.tally.lastResultAt = Math.min(at, toPerfClock(this.newest));
            this.resolveComplete(this.tally.lastResultAt);
          }
        }
      } finally {
        await c.close();
      }
    })();
  }

  private check(key: string, value: Buffer | null, timestamp: number): void {
    const f = this.expected.get(key);
    let ok = false;
    try {
      const v = JSON.parse(value?.toString('utf8') ?? '') as {
        file?: string;
        sha256?: string;
        bytes?: number;
      };
      ok = f !== undefined && v.file === f.rel && v.sha256 === f.sha256 && v.bytes === f.size;
    } catch {
      ok = false;
    }
    if (!ok) {
      this.tally.bad++;
      if (this.tally.badExamples.length < 3)
        this.tally.badExamples.push(`${key}: ${value?.toString('utf8').slice(0, 200)}`);
      return;
    }
    if (this.seen.has(key)) {
      this.tally.duplicates++;
      return;
    }
    this.seen.add(key);
    this.tally.distinct++;
    this.newest = Math.max(this.newest, timestamp);
  }

  /** Keeps reading for `drainMs` more (late duplicates), then stops. */
  async stop(drainMs = 500): Promise<Tally> {
    if (!this.stopped) await sleep(drainMs);
    this.stopped = true;
    await this.loop;
    return this.tally;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// contestants

interface Measure {
  seconds: number;
  files: number;
  duplicates: number;
  /** Results that did not match the corpus. */
  bad: number;
  /** Seconds between the last result's timestamp and the counter seeing it (a sanity check of the end time). */
  counterLag: number;
  /** CPU seconds of the program during the window. */
  cpu: number;
  /** CPU seconds of the broker during the window (when this benchmark started it). */
  brokerCpu: number | undefined;
  /** OpenMSIStream: seconds from spawn to its "Will process files" line. */
  startup?: number;
}

/** The sluice contestant: hash → JSON with the documented base class, as a user would write it. */
class HashMetadataReproducer extends MetadataJSONReproducer {
  protected override getMetadataDictForFile(file: DownloadDataFile): Record<string, unknown> {
    const data = file.bytestring!;
    return {
      file: file.relativeFilepath,
      sha256: createHash('sha256').update(data).digest('hex'),
      bytes: data.length,
    };
  }
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

function cpuSecondsOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface RunContext {
  corpus: Corpus;
  work: string;
  partitions: number;
  concurrency: number;
  /** sluice's concurrency when --concurrency was given; otherwise sluice's own default. */
  sluiceConcurrency: number | undefined;
  timeoutMs: number;
  brokerPid: number | undefined;
}

function timedOut(what: string, tally: Tally, total: number): Error {
  return new Error(
    `${what}: only ${tally.distinct} of ${total} correct results after the time limit${tally.bad > 0 ? `; ${tally.bad} wrong result(s), e.g. ${tally.badExamples[0]}` : ''}`,
  );
}

async function runSluice(
  t: Transport,
  ctx: RunContext,
  exactlyOnce: boolean,
  name: string,
): Promise<Measure> {
  const id = `${name}-${randomUUID().slice(0, 8)}`;
  const inTopic = `bench-repro-in-${id}`;
  const outTopic = `bench-repro-out-${id}`;
  const groupId = `bench-repro-${id}`;
  await t.createTopic({ name: inTopic, partitions: ctx.partitions });
  await t.createTopic({ name: outTopic, partitions: 1 });
  await publish(t, inTopic, ctx.corpus);
  const counter = new ResultCounter(t, outTopic, ctx.corpus);
  await counter.start();
  try {
    return await timeSluice(t, ctx, exactlyOnce, name, { id, inTopic, outTopic, groupId, counter });
  } finally {
    await counter.stop(0);
  }
}

async function timeSluice(
  t: Transport,
  ctx: RunContext,
  exactlyOnce: boolean,
  name: string,
  run: { id: string; inTopic: string; outTopic: string; groupId: string; counter: ResultCounter },
): Promise<Measure> {
  const { id, inTopic, outTopic, groupId, counter } = run;
  const logger: Logger = pino(
    { level: 'info', base: undefined },
    pino.destination({ dest: join(ctx.work, `${id}.log`), sync: false, mkdir: true }),
  );
  const reproducer = new HashMetadataReproducer({
    transport: t,
    topic: inTopic,
    producerTopic: outTopic,
    outputDir: join(ctx.work, id),
    groupId,
    exactlyOnce,
    concurrency: ctx.sluiceConcurrency,
    mode: 'memory',
    logger,
  });
  const stop = new AbortController();
  const cpu0 = selfCpuSeconds();
  const broker0 = cpuSecondsOf(ctx.brokerPid);
  const start = performance.now();
  const running = reproducer.run(stop.signal);
  let end: number | undefined;
  let cpu1 = cpu0;
  let broker1: number | undefined;
  try {
    end = await Promise.race([
      counter.complete,
      deadline(ctx.timeoutMs),
      // a reproducer that stops on its own before every result is there has failed
      running.then(() => undefined),
    ]);
    cpu1 = selfCpuSeconds();
    broker1 = cpuSecondsOf(ctx.brokerPid);
  } finally {
    stop.abort();
    await running.finally(() => logger.flush());
  }
  const tally = await counter.stop();
  if (end === undefined) throw timedOut(LABELS[name as Contestant] ?? name, tally, ctx.corpus.files.length);
  await cleanupTopics(t, [inTopic, outTopic, ...(exactlyOnce ? [doneTopicName(inTopic, groupId)] : [])]);
  return {
    seconds: (end - start) / 1000,
    files: tally.distinct,
    duplicates: tally.duplicates,
    bad: tally.bad,
    counterLag: (tally.observedAt! - tally.lastResultAt!) / 1000,
    cpu: cpu1 - cpu0,
    brokerCpu: broker0 === undefined || broker1 === undefined ? undefined : broker1 - broker0,
  };
}

async function cleanupTopics(t: Transport, topics: string[]): Promise<void> {
  for (const topic of topics) {
    try {
      await t.deleteTopic(topic);
    } catch {
      // best effort: a private broker is wiped when it stops
    }
  }
}

function writeOpenMsiConfig(path: string, bootstrap: string): void {
  writeFileSync(
    path,
    [
      '# written by bench/reproduce.ts: librdkafka defaults, the serializers a reproducer needs',
      '[broker]',
      `bootstrap.servers = ${bootstrap}`,
      '',
      '[producer]',
      'key.serializer = StringSerializer',
      'value.serializer = StringSerializer',
      '',
      '[consumer]',
      'auto.offset.reset = earliest',
      'enable.auto.commit = False',
      'key.deserializer = StringDeserializer',
      'value.deserializer = DataFileChunkDeserializer',
      '',
    ].join('\n'),
  );
}

async function runPython(kafka: Transport, bootstrap: string, ctx: RunContext): Promise<Measure> {
  const id = `python-${randomUUID().slice(0, 8)}`;
  const inTopic = `bench-repro-in-${id}`;
  const outTopic = `bench-repro-out-${id}`;
  await kafka.createTopic({ name: inTopic, partitions: ctx.partitions });
  await kafka.createTopic({ name: outTopic, partitions: 1 });
  await publish(kafka, inTopic, ctx.corpus);
  const counter = new ResultCounter(kafka, outTopic, ctx.corpus);
  await counter.start();
  const dir = join(ctx.work, id);
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'bench.config');
  writeOpenMsiConfig(config, bootstrap);
  const args = [
    PY_REPRODUCER,
    '--config',
    config,
    '--consumer_topic_name',
    inTopic,
    '--producer_topic_name',
    outTopic,
    '--consumer_group_id',
    `bench-repro-${id}`,
    '--output_dir',
    join(dir, 'out'),
    '--n_consumer_threads',
    String(ctx.concurrency),
    '--n_producer_threads',
    String(ctx.concurrency),
  ];
  const spawnedAt = performance.now();
  const child: ChildProcess = spawn(join(VENV, 'bin/python'), args, {
    cwd: dir,
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  const tail: string[] = [];
  let ready: (at: number) => void = () => {};
  const readyAt = new Promise<number>((r) => {
    ready = r;
  });
  for (const stream of [child.stdout, child.stderr]) {
    if (stream === null) continue;
    createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
      if (/Will process files from messages/.test(line)) ready(performance.now());
      tail.push(line);
      if (tail.length > 30) tail.shift();
    });
  }
  const exited = new Promise<string>((r) => {
    child.once('exit', (code, signal) => r(signal ?? `exit code ${code}`));
  });
  const tailText = (): string => (tail.length === 0 ? '' : `; last output:\n    ${tail.join('\n    ')}`);
  try {
    const startOrExit = await Promise.race([
      readyAt,
      exited.then((how) => new Error(`OpenMSIStream exited (${how}) before starting${tailText()}`)),
      deadline(120_000).then(() => new Error(`OpenMSIStream did not start within 120 s${tailText()}`)),
    ]);
    if (startOrExit instanceof Error) throw startOrExit;
    const start = startOrExit;
    const cpu0 = cpuSecondsOf(pid) ?? 0;
    const broker0 = cpuSecondsOf(ctx.brokerPid);
    const end = await Promise.race([counter.complete, exited.then(() => undefined), deadline(ctx.timeoutMs)]);
    const cpu1 = cpuSecondsOf(pid) ?? cpu0;
    const broker1 = cpuSecondsOf(ctx.brokerPid);
    const tally = await counter.stop();
    if (end === undefined)
      throw new Error(`${timedOut(LABELS.python, tally, ctx.corpus.files.length).message}${tailText()}`);
    await cleanupTopics(kafka, [inTopic, outTopic]);
    return {
      seconds: (end - start) / 1000,
      files: tally.distinct,
      duplicates: tally.duplicates,
      bad: tally.bad,
      counterLag: (tally.observedAt! - tally.lastResultAt!) / 1000,
      cpu: cpu1 - cpu0,
      brokerCpu: broker0 === undefined || broker1 === undefined ? undefined : broker1 - broker0,
      startup: (start - spawnedAt) / 1000,
    };
  } finally {
    // upstream stops on `q` typed on stdin; give it a moment to shut down cleanly, then kill it
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin?.write('q\n');
      child.stdin?.end();
      const gone = await Promise.race([exited.then(() => true), deadline(20_000).then(() => false)]);
      if (!gone) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await counter.stop(0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// broker

// ---------------------------------------------------------------------------------------------------------------
// options, run, report

interface Options {
  scale: number;
  rounds: number;
  concurrency: number;
  concurrencyGiven: boolean;
  chunkKiB: number;
  partitions: number;
  timeoutS: number;
  json: boolean;
  only: Set<Contestant>;
}

function parseArgs(args: string[]): Options {
  const o: Options = {
    scale: 1,
    rounds: 3,
    concurrency: 2,
    concurrencyGiven: false,
    chunkKiB: 64,
    partitions: 4,
    timeoutS: 300,
    json: false,
    only: new Set(CONTESTANTS),
  };
  const usage = `use --scale=X, --rounds=N, --concurrency=N, --chunk-kib=N (≤ 512), --partitions=N, --timeout=S, --json, --only=${CONTESTANTS.join(',')}`;
  for (const a of args) {
    const [k, v = ''] = a.split('=', 2) as [string, string?];
    const int = (min: number, max = Number.MAX_SAFE_INTEGER): number => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max) throw new Error(`bad option ${a}; ${usage}`);
      return n;
    };
    if (a === '--json') o.json = true;
    else if (k === '--scale') {
      o.scale = Number(v);
      if (!(o.scale > 0)) throw new Error(`bad option ${a}; ${usage}`);
    } else if (k === '--rounds') o.rounds = int(1);
    else if (k === '--concurrency') {
      o.concurrency = int(1, 64);
      o.concurrencyGiven = true;
    } else if (k === '--chunk-kib') o.chunkKiB = int(1, 512);
    else if (k === '--partitions') o.partitions = int(1, 64);
    else if (k === '--timeout') o.timeoutS = int(1);
    else if (k === '--only') {
      const names = v.split(',');
      for (const n of names) {
        if (!(CONTESTANTS as readonly string[]).includes(n))
          throw new Error(`--only: unknown contestant "${n}"; ${usage}`);
      }
      o.only = new Set(names as Contestant[]);
    } else throw new Error(`unknown option ${a}; ${usage}`);
  }
  return o;
}

interface Row {
  contestant: Contestant;
  label: string;
  filesPerSec: number;
  mbPerSec: number;
  seconds: number;
  cpu: number;
  brokerCpu: number | undefined;
  duplicates: number;
  bad: number;
  startup: number | undefined;
  rounds: Measure[];
}

export async function runReproduceBench(args: string[]): Promise<void> {
  const o = parseArgs(args);
  const hasVenv = existsSync(join(VENV, 'bin/python'));
  if (o.only.has('python') && !hasVenv) {
    log(
      `OpenMSIStream venv not found at ${VENV}: skipping the OpenMSIStream run (bash scripts/python-venv.sh)`,
    );
    o.only.delete('python');
  }
  const count = Math.max(1, Math.round(500 * o.scale));
  const t0 = performance.now();
  const corpus = makeCorpus(count, 16 * KiB, 256 * KiB, o.chunkKiB * KiB, o.partitions);
  const corpusLabel = `${fmt(count)} files of 16–256 KiB (${fmt(corpus.bytes / MB, 1)} MB), ${fmt(corpus.chunks)} chunks of ≤ ${o.chunkKiB} KiB over ${o.partitions} partitions`;
  log(`corpus: ${corpusLabel} (made in ${fmt((performance.now() - t0) / 1000, 1)} s)`);
  const work = mkdtempSync(join(tmpdir(), 'sluice-bench-reproduce-'));
  const runs = new Map<Contestant, Measure[]>();
  const needsKafka = [...o.only].some((c) => c === 'python' || c.startsWith('kafka'));
  const order = CONTESTANTS.filter((c) => o.only.has(c));
  const startedAt = performance.now();

  const runAll = async (bootstrap: string | undefined, brokerPid: number | undefined): Promise<void> => {
    const kafka =
      bootstrap === undefined
        ? undefined
        : await openKafkaTransport({ bootstrapServers: bootstrap, clientId: 'bench' });
    const ctx: RunContext = {
      corpus,
      work,
      partitions: o.partitions,
      concurrency: o.concurrency,
      sluiceConcurrency: o.concurrencyGiven ? o.concurrency : undefined,
      timeoutMs: o.timeoutS * 1000,
      brokerPid,
    };
    log(
      `${bootstrap === undefined ? 'no Kafka' : `broker ${bootstrap}`}; node ${process.version}; ${cpus().length} cores (load average ${loadavg()
        .map((l) => fmt(l, 1))
        .join(
          ' ',
        )}); concurrency ${o.concurrency}; ${o.rounds} round(s)${o.rounds > 1 ? ', medians reported' : ''}`,
    );
    try {
      for (let round = 0; round < o.rounds; round++) {
        // rotate the order so no contestant always runs right after the same neighbour
        const rotated = [...order.slice(round % order.length), ...order.slice(0, round % order.length)];
        for (const c of rotated) {
          let m: Measure;
          if (c === 'python') m = await runPython(kafka!, bootstrap!, ctx);
          else if (c.startsWith('kafka')) m = await runSluice(kafka!, ctx, c === 'kafka-eos', c);
          else {
            const dbDir = join(work, `embedded-${randomUUID().slice(0, 8)}`);
            mkdirSync(dbDir, { recursive: true });
            const embedded = await openEmbeddedTransport({ path: join(dbDir, 'broker.db') });
            try {
              m = await runSluice(embedded, { ...ctx, brokerPid: undefined }, c === 'embedded-eos', c);
            } finally {
              await embedded.close();
              rmSync(dbDir, { recursive: true, force: true });
            }
          }
          log(
            `  round ${round + 1} ${LABELS[c].padEnd(32)} ${fmt(m.files / m.seconds, 1).padStart(8)} files/s ${fmt(corpus.bytes / MB / m.seconds, 1).padStart(7)} MB/s  (${fmt(m.seconds, 2)} s, CPU ${fmt(m.cpu, 1)} s${m.brokerCpu === undefined ? '' : `, broker ${fmt(m.brokerCpu, 1)} s`}${m.startup === undefined ? '' : `, start-up ${fmt(m.startup, 1)} s not timed`}${m.duplicates > 0 ? `, ${m.duplicates} duplicate(s)` : ''}${m.bad > 0 ? `, ${m.bad} WRONG result(s)` : ''}; counter saw the last result ${fmt(m.counterLag * 1000)} ms after it was produced)`,
          );
          runs.set(c, [...(runs.get(c) ?? []), m]);
        }
      }
    } finally {
      await kafka?.close();
    }
  };

  try {
    if (needsKafka) await withKafkaBroker(BENCH_STATE, (broker) => runAll(broker.bootstrap, broker.pid), log);
    else await runAll(undefined, undefined);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`benchmark took ${fmt((performance.now() - startedAt) / 1000, 1)} s`);

  const rows: Row[] = order.map((c) => {
    const list = runs.get(c)!;
    const startups = list.flatMap((m) => (m.startup === undefined ? [] : [m.startup]));
    const brokerCpus = list.flatMap((m) => (m.brokerCpu === undefined ? [] : [m.brokerCpu]));
    return {
      contestant: c,
      label: LABELS[c],
      filesPerSec: median(list.map((m) => m.files / m.seconds)),
      mbPerSec: median(list.map((m) => corpus.bytes / MB / m.seconds)),
      seconds: median(list.map((m) => m.seconds)),
      cpu: median(list.map((m) => m.cpu)),
      brokerCpu: brokerCpus.length === 0 ? undefined : median(brokerCpus),
      duplicates: list.reduce((n, m) => n + m.duplicates, 0),
      bad: list.reduce((n, m) => n + m.bad, 0),
      startup: startups.length === 0 ? undefined : median(startups),
      rounds: list,
    };
  });
  const python = runs.get('python');
  const ratios = order
    .filter((c) => c !== 'python')
    .map((c) => {
      const mine = runs.get(c)!;
      const value =
        python === undefined
          ? undefined
          : median(
              mine
                .map((m, i) => {
                  const p = python[i];
                  return p === undefined ? Number.NaN : m.files / m.seconds / (p.files / p.seconds);
                })
                .filter(Number.isFinite),
            );
      return {
        contestant: c,
        label: LABELS[c],
        ratio: value,
        // wrong results never pass
        pass: value !== undefined && value >= TARGET_RATIO && runs.get(c)!.every((m) => m.bad === 0),
      };
    });

  if (o.json) {
    console.log(
      JSON.stringify({ corpus: corpusLabel, options: { ...o, only: [...o.only] }, rows, ratios }, null, 2),
    );
    return;
  }
  console.log('');
  console.log(`reproduce (hash → JSON): ${corpusLabel}; concurrency ${o.concurrency}; ${o.rounds} round(s)`);
  console.log(
    `${'contestant'.padEnd(34)}${'files/s'.padStart(9)}${'MB/s'.padStart(8)}${'seconds'.padStart(9)}${'CPU s'.padStart(8)}${'broker CPU s'.padStart(14)}${'dupes'.padStart(7)}${'wrong'.padStart(7)}`,
  );
  for (const r of rows) {
    console.log(
      `${r.label.padEnd(34)}${fmt(r.filesPerSec, 1).padStart(9)}${fmt(r.mbPerSec, 1).padStart(8)}${fmt(r.seconds, 2).padStart(9)}${fmt(r.cpu, 1).padStart(8)}${(r.brokerCpu === undefined ? '—' : fmt(r.brokerCpu, 1)).padStart(14)}${String(r.duplicates).padStart(7)}${String(r.bad).padStart(7)}`,
    );
  }
  const py = rows.find((r) => r.contestant === 'python');
  if (py?.startup !== undefined) {
    console.log(`(OpenMSIStream start-up before it consumes, not timed: ${fmt(py.startup, 1)} s)`);
  }
  console.log('');
  if (python === undefined) {
    console.log('no OpenMSIStream run: no ratios');
    return;
  }
  console.log(
    `ratios: sluice files/s ÷ OpenMSIStream files/s${o.rounds > 1 ? ', median of the per-round ratios' : ''} (target ≥ ${TARGET_RATIO}×)`,
  );
  for (const r of ratios) {
    console.log(
      `  ${r.label.padEnd(34)}${`${fmt(r.ratio ?? Number.NaN, 2)}×`.padStart(9)}  ${r.pass ? 'PASS' : 'MISS'}`,
    );
  }
  const all = ratios.every((r) => r.pass);
  const onKafka = ratios.filter((r) => r.contestant.startsWith('kafka'));
  console.log(
    `target ≥ ${TARGET_RATIO}× OpenMSIStream: ${all ? 'met' : 'NOT met'} (${ratios.filter((r) => r.pass).length} of ${ratios.length} pass${onKafka.length > 0 ? `; on the same Kafka broker ${onKafka.filter((r) => r.pass).length} of ${onKafka.length}` : ''})`,
  );
}
