/**
 * `npm run bench -- files [--quick] [--scale=X] [--big-gib=N] [--only=floor,embedded,kafka,python,big,big-kafka] [options]`
 *
 * End-to-end file streaming: a generated corpus is uploaded with `sluice upload-dir --upload_existing` and rebuilt
 * with `sluice download-dir`, each a separate process (the CLI, as users run it), through the embedded broker and
 * through Kafka; then the same corpus goes through OpenMSIStream's `DataFileUploadDirectory` →
 * `DataFileDownloadDirectory` on the same Kafka broker (when the venv exists), and one large file goes through the
 * embedded broker to check memory.
 *
 * What is measured, per run:
 * - end-to-end time: from the uploader's first output line (the program has loaded and starts uploading) to the
 *   downloader's report that the last file was rebuilt and SHA-512 verified. The column "incl. start-up" starts at
 *   the uploader's spawn instead (interpreter and module loading included). The downloader is started first and
 *   waits for data, as a real deployment would; its start-up is not timed.
 * - MB/s = corpus bytes (10^6 bytes per MB) ÷ end-to-end seconds.
 * - peak RSS of each process: its own `VmHWM` reported by each sluice process at exit, `VmHWM`
 *   sampled from /proc for OpenMSIStream's (see bench/lib/proc.ts).
 * - CPU seconds of each process (and of the Kafka broker, when this benchmark started it) from the uploader's spawn
 *   to the last rebuilt file: on a machine with few cores this tells who the bottleneck is.
 * - after the timed window, every rebuilt file is compared with the corpus (SHA-1 of both); a run whose output
 *   differs is reported as failed.
 * - the format floor (bench/lib/floor.ts), measured in the same run on the same corpus: this machine doing only the
 *   work the wire format makes unavoidable (four SHA-512 passes, the read, the rebuilt file's write and fsync), with
 *   no broker, and again with one more write of every chunk to a log. No implementation can be faster here; the
 *   embedded target line prints sluice as a fraction of it.
 * - dirty pages are flushed (`sync`) before each timed run, so no run pays for writing back an earlier one's files.
 *
 * Corpus (bench/lib/corpus.ts): deterministic, incompressible, all files with an old mtime. Default (scale 1):
 * 2,000 files of 4–256 KiB in 20 directories plus 6 files of 64–200 MiB, about 1 GiB. `--scale=X` multiplies the
 * number of small files and the size of the large ones; `--quick` is `--scale=0.05 --big-gib=0.25`. Everything
 * lives in a temp dir (page cache on a machine with enough RAM, so the disk is rarely the limit) removed at the end
 * (`--keep` keeps it).
 *
 * Options:
 *   --scale=X             corpus scale (default 1 ≈ 1 GiB)
 *   --quick               smoke run: --scale=0.05 --big-gib=0.25
 *   --big-gib=N           size of the single-file memory run (default 4; 0 skips it)
 *   --only=LIST           runs to do, of floor,embedded,kafka,python,big,big-kafka (default all but big-kafka,
 *                         which sends the large file through Kafka too: reported, not a target)
 *   --partitions=N        partitions of each topic (default 4)
 *   --rounds=N            repeat each run N times and report the median (default 1)
 *   --python-fraction=F   give OpenMSIStream only this fraction of the corpus (every file whose index falls in
 *                         it); sluice kafka then also runs on that subset, and the ratio uses that pair
 *   --upload-args="…"     extra arguments for `sluice upload-dir` (e.g. "--max_files_in_flight 4")
 *   --download-args="…"   extra arguments for `sluice download-dir`
 *   --node-args="…"       extra Node options for both sluice processes (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p")
 *   --tmpdir=DIR          where to put the corpus and outputs (default the OS temp dir)
 *   --keep                keep the temp dir
 *   --json                print the results as JSON after the table
 *
 * Uses the broker at SLUICE_KAFKA_BOOTSTRAP, or starts a private one with scripts/kafka.sh (state in
 * .infra/kafka-bench-files) and stops it afterwards. OpenMSIStream comes from $SLUICE_VENV (default .venv; create it
 * with `bash scripts/python-venv.sh`) and runs with its own shipped `local_broker_test` config.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openEmbeddedTransport } from '../src/transport/embedded/index.ts';
import { openKafkaTransport } from '../src/transport/kafka/index.ts';
import {
  type Corpus,
  type CorpusSpec,
  describeVerification,
  GiB,
  generateCorpus,
  KiB,
  MiB,
  type Verification,
  verifyTree,
} from './lib/corpus.ts';
import { type FloorResult, measureFormatFloor, sha512Speed } from './lib/floor.ts';
import { type Broker, ROOT, withKafkaBroker } from './lib/kafka-broker.ts';
import { Child, cpuSecondsOf, describeExit, nodeArgs } from './lib/proc.ts';

const SLUICE_BIN = resolve(ROOT, 'bin/sluice.js');
const BENCH_STATE = resolve(ROOT, '.infra/kafka-bench-files');
const VENV = resolve(process.env.SLUICE_VENV ?? resolve(ROOT, '.venv'));
const MB = 1e6;

const TARGET_RATIO = 3;
const TARGET_EMBEDDED_MBPS = 250;
const TARGET_RSS_BYTES = 200 * MB;

const RUNS = ['floor', 'embedded', 'kafka', 'python', 'big', 'big-kafka'] as const;
/** What runs without --only: everything but the large file through Kafka. */
const DEFAULT_RUNS: readonly RunKind[] = ['floor', 'embedded', 'kafka', 'python', 'big'];
type RunKind = (typeof RUNS)[number];

interface Options {
  scale: number;
  bigBytes: number;
  only: Set<RunKind>;
  partitions: number;
  rounds: number;
  pythonFraction: number;
  uploadArgs: string[];
  downloadArgs: string[];
  /** Extra Node options for sluice's processes (e.g. --cpu-prof). */
  nodeArgs: string[];
  tmp: string;
  keep: boolean;
  json: boolean;
}

type Target = { kind: 'embedded'; path: string } | { kind: 'kafka'; broker: Broker };

interface RunSpec {
  label: string;
  program: 'sluice' | 'openmsistream';
  target: Target;
  corpus: Corpus;
  corpusLabel: string;
}

interface RunResult {
  label: string;
  corpusLabel: string;
  files: number;
  bytes: number;
  /** End to end, from the uploader's first line to the last file rebuilt. */
  seconds: number;
  /** From the uploader's spawn to the last file rebuilt. */
  secondsFromSpawn: number;
  /** From the uploader's first line to its report that the last file was sent (sluice only). */
  uploadSeconds?: number;
  mbps: number;
  mbpsFromSpawn: number;
  uploaderRss: number;
  downloaderRss: number;
  rssSource: string;
  cpu: { uploader: number; downloader: number; broker?: number };
  verification: Verification;
  verified: string;
  error?: string;
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function mib(bytes: number): string {
  if (bytes >= GiB) return `${fmt(bytes / GiB, 2)} GiB`;
  if (bytes >= MiB) return `${fmt(bytes / MiB, bytes < 10 * MiB ? 1 : 0)} MiB`;
  return `${fmt(bytes / KiB, 0)} KiB`;
}

// ---- corpus ----------------------------------------------------------------------------------------------------

/** Large-file sizes at scale 1: 64 to 200 MiB, evenly spaced, each a little off a chunk boundary. */
const LARGE_MIB = [64, 91, 118, 146, 173, 200];

function corpusSpec(scale: number): CorpusSpec {
  return {
    smallCount: Math.max(1, Math.round(2000 * scale)),
    smallMin: 4 * KiB,
    smallMax: 256 * KiB,
    large: LARGE_MIB.map((m, i) => Math.max(MiB, Math.round(m * MiB * scale)) + 1000 + 7 * i),
    seed: 'sluice-files-bench-1',
  };
}

function describeCorpus(c: Corpus): string {
  const small = c.files.filter((f) => f.rel.startsWith('small/'));
  const large = c.files.filter((f) => f.rel.startsWith('large/'));
  const range = (fs: typeof c.files): string =>
    fs.length === 0
      ? ''
      : `${mib(Math.min(...fs.map((f) => f.size)))}–${mib(Math.max(...fs.map((f) => f.size)))}`;
  const parts = [];
  if (small.length > 0) parts.push(`${fmt(small.length)} small (${range(small)})`);
  if (large.length > 0) parts.push(`${large.length} large (${range(large)})`);
  return `${fmt(c.files.length)} files, ${mib(c.bytes)}: ${parts.join(' + ')}`;
}

/** A subset of the corpus, hard-linked into its own directory (same bytes and mtimes, no copy). */
function subsetCorpus(c: Corpus, fraction: number, dir: string): Corpus {
  const step = 1 / fraction;
  const files = c.files.filter((_, i) => Math.floor(i / step) !== Math.floor((i + 1) / step) || i === 0);
  for (const f of files) {
    const to = join(dir, ...f.rel.split('/'));
    mkdirSync(resolve(to, '..'), { recursive: true });
    linkSync(join(c.dir, ...f.rel.split('/')), to);
  }
  return { dir, files, bytes: files.reduce((n, f) => n + f.size, 0) };
}

// ---- one run -----------------------------------------------------------------------------------------------------

function parseJsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

async function createTopic(target: Target, topic: string, partitions: number): Promise<void> {
  const t =
    target.kind === 'embedded'
      ? await openEmbeddedTransport({ path: target.path })
      : await openKafkaTransport({ bootstrapServers: [target.broker.bootstrap], clientId: 'bench-files' });
  try {
    await t.createTopic({ name: topic, partitions });
  } finally {
    await t.close();
  }
}

async function deleteTopic(target: Target, topic: string): Promise<void> {
  if (target.kind === 'embedded') {
    for (const suffix of ['', '-wal', '-shm', '-segments']) {
      rmSync(`${target.path}${suffix}`, { recursive: true, force: true });
    }
    return;
  }
  const t = await openKafkaTransport({
    bootstrapServers: [target.broker.bootstrap],
    clientId: 'bench-files',
  });
  try {
    await t.deleteTopic(topic);
  } catch {
    // best effort: the broker is private and removed at the end anyway
  } finally {
    await t.close();
  }
}

interface Programs {
  downloader: Child;
  uploader: () => Child;
  /** Whether a downloader line says it is ready to read. */
  ready: (line: string) => boolean;
  /** The relative path of the file a downloader line reports as rebuilt, if it does. */
  rebuilt: (line: string) => string | undefined;
  /** Whether an uploader line reports a file sent. */
  uploaded: (line: string) => boolean;
  /** A problem a line reports (a rejected file, an error), if any. */
  problem: (line: string) => string | undefined;
  stop: 'SIGINT' | 'stdin-q';
}

function sluicePrograms(spec: RunSpec, topic: string, out: string, reportDir: string, o: Options): Programs {
  const node = process.execPath;
  const broker =
    spec.target.kind === 'embedded' ? `file:${spec.target.path}` : `kafka://${spec.target.broker.bootstrap}`;
  const common = ['--topic_name', topic, '--broker', broker, '--log-format', 'json'];
  const env = { ...process.env, SLUICE_BROKER: undefined, SLUICE_LOG_LEVEL: undefined };
  const msgOf = (line: string): { msg: string; entry: Record<string, unknown> } | undefined => {
    const entry = parseJsonLine(line);
    return entry && typeof entry.msg === 'string' ? { msg: entry.msg, entry } : undefined;
  };
  return {
    downloader: new Child({
      name: 'download-dir',
      command: node,
      args: [...nodeArgs(), ...o.nodeArgs, SLUICE_BIN, 'download-dir', out, ...common, ...o.downloadArgs],
      env,
      reportDir,
    }),
    uploader: () =>
      new Child({
        name: 'upload-dir',
        command: node,
        args: [
          ...nodeArgs(),
          ...o.nodeArgs,
          SLUICE_BIN,
          'upload-dir',
          spec.corpus.dir,
          '--upload_existing',
          ...common,
          ...o.uploadArgs,
        ],
        env,
        reportDir,
      }),
    ready: (line) => msgOf(line)?.msg.startsWith('reading files from topic') === true,
    rebuilt: (line) => {
      const m = msgOf(line);
      return m?.msg.startsWith('rebuilt ') && typeof m.entry.file === 'string' ? m.entry.file : undefined;
    },
    uploaded: (line) => msgOf(line)?.msg.startsWith('uploaded ') === true,
    problem: (line) => {
      const m = msgOf(line);
      // non-JSON lines (runtime warnings) are not problems; a crash shows as an early exit
      if (m === undefined) return undefined;
      return typeof m.entry.level === 'number' && m.entry.level >= 50 ? m.msg : undefined;
    },
    stop: 'SIGINT',
  };
}

function openmsistreamPrograms(spec: RunSpec, topic: string, out: string): Programs {
  if (spec.target.kind !== 'kafka') throw new Error('OpenMSIStream runs only on Kafka');
  const env = {
    ...process.env,
    LOCAL_KAFKA_BROKER_BOOTSTRAP_SERVERS: spec.target.broker.bootstrap,
    PYTHONUNBUFFERED: '1',
  };
  const common = ['--config', 'local_broker_test', '--topic_name', topic];
  return {
    // debug level only adds one line per rebuilt file ("successfully reconstructed"), which marks completion
    downloader: new Child({
      name: 'DataFileDownloadDirectory',
      command: join(VENV, 'bin/DataFileDownloadDirectory'),
      args: [out, ...common, '--logger_stream_level', 'debug'],
      env,
      stdin: true,
    }),
    uploader: () =>
      new Child({
        name: 'DataFileUploadDirectory',
        command: join(VENV, 'bin/DataFileUploadDirectory'),
        args: [spec.corpus.dir, ...common, '--upload_existing'],
        env,
        stdin: true,
      }),
    ready: (line) => line.includes('Will reconstruct files from messages'),
    rebuilt: (line) => /File (.+) successfully reconstructed from stream/.exec(line)?.[1],
    uploaded: () => false,
    problem: (line) => (/ERROR|WARNING: hashes/.test(line) ? line : undefined),
    stop: 'stdin-q',
  };
}

async function runOnce(spec: RunSpec, o: Options, work: string): Promise<RunResult> {
  flushToDisk();
  const topic = `bench-files-${randomUUID().slice(0, 8)}`;
  const out = join(work, `out-${topic}`);
  const reportDir = join(work, 'reports');
  mkdirSync(out, { recursive: true });
  mkdirSync(reportDir, { recursive: true });
  // the uploaders keep their registries in <corpus>/LOGS; start from none, as a fresh deployment
  rmSync(join(spec.corpus.dir, 'LOGS'), { recursive: true, force: true });
  await createTopic(spec.target, topic, o.partitions);
  const p =
    spec.program === 'sluice'
      ? sluicePrograms(spec, topic, out, reportDir, o)
      : openmsistreamPrograms(spec, topic, out);
  const brokerPid = spec.target.kind === 'kafka' ? spec.target.broker.pid : undefined;
  const expected = new Set(spec.corpus.files.map((f) => f.rel));
  const downloader = p.downloader;
  let uploader: Child | undefined;
  const problems: string[] = [];
  try {
    await downloader.waitForLine(p.ready, 120_000, 'ready line');
    const rebuilt = new Set<string>();
    let lastRebuiltAt = 0;
    let uploadedCount = 0;
    let uploadDoneAt: number | undefined;
    let lastActivity = performance.now();
    let resolveDone: () => void = () => {};
    const done = new Promise<void>((r) => {
      resolveDone = r;
    });
    downloader.onLine((line, at) => {
      lastActivity = at;
      const file = p.rebuilt(line);
      if (file !== undefined) {
        if (!expected.has(file)) problems.push(`rebuilt an unexpected file ${file}`);
        rebuilt.add(file);
        lastRebuiltAt = at;
        if (rebuilt.size >= expected.size) resolveDone();
        return;
      }
      const problem = p.problem(line);
      if (problem !== undefined && problems.length < 20) problems.push(`${downloader.name}: ${problem}`);
    });
    const cpuStart = { downloader: downloader.cpuSeconds(), broker: cpuOf(brokerPid) };
    const up = p.uploader();
    uploader = up;
    let firstLineAt: number | undefined;
    up.onLine((line, at) => {
      lastActivity = at;
      firstLineAt ??= at;
      if (p.uploaded(line) && ++uploadedCount === expected.size) uploadDoneAt = at;
      const problem = p.problem(line);
      if (problem !== undefined && problems.length < 20) problems.push(`${up.name}: ${problem}`);
    });
    // wait for the last file, a crash, or a stall
    const stallMs = 180_000;
    await new Promise<void>((resolveWait, reject) => {
      const timer = setInterval(() => {
        if (performance.now() - lastActivity > stallMs) {
          reject(
            new Error(
              `no progress for ${stallMs / 1000} s (${rebuilt.size}/${expected.size} files rebuilt)${up.tailText()}${downloader.tailText()}`,
            ),
          );
        }
      }, 1000);
      const settle = (fn: () => void): void => {
        clearInterval(timer);
        fn();
      };
      void done.then(() => settle(resolveWait));
      for (const c of [up, downloader]) {
        void c.exited.then((s) => {
          if (rebuilt.size < expected.size) {
            settle(() =>
              reject(
                new Error(
                  `${c.name} exited (${describeExit(s)}) with ${rebuilt.size}/${expected.size} files rebuilt${c.tailText()}`,
                ),
              ),
            );
          }
        });
      }
    });
    const cpu = {
      uploader: up.cpuSeconds(),
      downloader: downloader.cpuSeconds() - cpuStart.downloader,
      ...(brokerPid === undefined ? {} : { broker: (cpuOf(brokerPid) ?? 0) - (cpuStart.broker ?? 0) }),
    };
    await Promise.all([up.stop(p.stop), downloader.stop(p.stop)]);
    const t0 = firstLineAt ?? up.spawnedAt;
    const seconds = (lastRebuiltAt - t0) / 1000;
    const secondsFromSpawn = (lastRebuiltAt - up.spawnedAt) / 1000;
    const verification = await verifyTree(out, spec.corpus);
    const verified = describeVerification(verification, spec.corpus.files.length);
    const upRss = up.peakRss();
    const downRss = downloader.peakRss();
    const clean = verification.ok === spec.corpus.files.length && verification.extra.length === 0;
    return {
      label: spec.label,
      corpusLabel: spec.corpusLabel,
      files: spec.corpus.files.length,
      bytes: spec.corpus.bytes,
      seconds,
      secondsFromSpawn,
      ...(uploadDoneAt === undefined ? {} : { uploadSeconds: (uploadDoneAt - t0) / 1000 }),
      mbps: spec.corpus.bytes / MB / seconds,
      mbpsFromSpawn: spec.corpus.bytes / MB / secondsFromSpawn,
      uploaderRss: upRss.bytes,
      downloaderRss: downRss.bytes,
      rssSource: upRss.source === downRss.source ? upRss.source : `${upRss.source}/${downRss.source}`,
      cpu,
      verification,
      verified,
      ...(clean
        ? problems.length > 0
          ? { error: `logged problems: ${problems.slice(0, 3).join('; ')}` }
          : {}
        : { error: `output differs from the corpus: ${verified}` }),
    };
  } finally {
    uploader?.kill();
    downloader.kill();
    await Promise.all([uploader?.exited, downloader.exited]);
    rmSync(out, { recursive: true, force: true });
    rmSync(join(spec.corpus.dir, 'LOGS'), { recursive: true, force: true });
    await deleteTopic(spec.target, topic);
  }
}

function cpuOf(pid: number | undefined): number | undefined {
  return pid === undefined ? undefined : cpuSecondsOf(pid);
}

async function run(
  spec: RunSpec,
  o: Options,
  work: string,
): Promise<RunResult | { label: string; error: string }> {
  const results: RunResult[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    log(`${spec.label} (${spec.corpusLabel})${o.rounds > 1 ? `, round ${round}/${o.rounds}` : ''}…`);
    try {
      const r = await runOnce(spec, o, work);
      log(
        `  ${fmt(r.seconds, 2)} s, ${fmt(r.mbps, 1)} MB/s (${fmt(r.mbpsFromSpawn, 1)} incl. start-up); peak RSS upload ${fmt(r.uploaderRss / MB)} MB, download ${fmt(r.downloaderRss / MB)} MB; CPU s up ${fmt(r.cpu.uploader, 1)}, down ${fmt(r.cpu.downloader, 1)}${r.cpu.broker === undefined ? '' : `, broker ${fmt(r.cpu.broker, 1)}`}; ${r.verified}${r.error ? `; ${r.error}` : ''}`,
      );
      results.push(r);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      log(`  failed: ${message}`);
      return { label: spec.label, error: message };
    }
  }
  const byTime = [...results].sort((a, b) => a.seconds - b.seconds);
  const mid = byTime[(byTime.length - 1) >> 1]!;
  // the median run's figures, with the worst RSS of all rounds
  return {
    ...mid,
    uploaderRss: Math.max(...results.map((r) => r.uploaderRss)),
    downloaderRss: Math.max(...results.map((r) => r.downloaderRss)),
  };
}

// ---- format floor ------------------------------------------------------------------------------------------------

interface Floor {
  noBroker: FloorResult;
  withLog: FloorResult;
  sha512: number;
}

/** The format floor (bench/lib/floor.ts) both ways, median of `rounds`, and this machine's SHA-512 speed. */
async function measureFloor(corpus: Corpus, work: string, rounds: number): Promise<Floor> {
  const median = async (withLog: boolean): Promise<FloorResult> => {
    const runs: FloorResult[] = [];
    for (let i = 0; i < rounds; i++) {
      const r = await measureFormatFloor(corpus, work, { withLog });
      log(`  ${r.label}: ${fmt(r.seconds, 2)} s, ${fmt(r.mbps, 1)} MB/s, ${fmt(r.cpuSeconds, 1)} CPU s`);
      runs.push(r);
      flushToDisk();
    }
    return runs.sort((a, b) => a.mbps - b.mbps)[(runs.length - 1) >> 1]!;
  };
  log('format floor (no broker, no messages: the format’s own work on every core)…');
  const sha512 = sha512Speed();
  return { noBroker: await median(false), withLog: await median(true), sha512 };
}

/**
 * Writes dirty pages out before a timed run, so that a run does not pay for flushing what was written before it
 * (the corpus, an earlier run's files): on a small VM the disk's write-back costs the writer's CPU.
 */
function flushToDisk(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

// ---- report ------------------------------------------------------------------------------------------------------

function isResult(r: RunResult | { label: string; error: string }): r is RunResult {
  return 'seconds' in r;
}

function printTable(results: Array<RunResult | { label: string; error: string }>): void {
  const header = [
    'run',
    'corpus',
    'e2e s',
    'MB/s',
    'incl. start-up',
    'upload done s',
    'uploader RSS',
    'downloader RSS',
    'CPU s up/down/broker',
    'verified',
  ];
  const rows = results.map((r) =>
    isResult(r)
      ? [
          r.label,
          r.corpusLabel,
          fmt(r.seconds, 2),
          fmt(r.mbps, 1),
          `${fmt(r.mbpsFromSpawn, 1)} MB/s`,
          r.uploadSeconds === undefined ? '-' : fmt(r.uploadSeconds, 2),
          `${fmt(r.uploaderRss / MB)} MB`,
          `${fmt(r.downloaderRss / MB)} MB`,
          `${fmt(r.cpu.uploader, 1)}/${fmt(r.cpu.downloader, 1)}/${r.cpu.broker === undefined ? '-' : fmt(r.cpu.broker, 1)}`,
          r.error === undefined ? r.verified : `FAILED: ${r.verified}`,
        ]
      : [r.label, '-', '-', '-', '-', '-', '-', '-', '-', `FAILED: ${r.error.split('\n')[0]}`],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((l) => l[i]!.length)));
  const left = new Set([0, 1, 9]);
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (left.has(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

interface TargetLine {
  name: string;
  status: 'PASS' | 'MISS' | 'n/a';
  detail: string;
}

function targets(
  results: Map<string, RunResult | { label: string; error: string }>,
  ratioPair: [string, string],
  floor: Floor | undefined,
): TargetLine[] {
  const get = (key: string): RunResult | undefined => {
    const r = results.get(key);
    return r !== undefined && isResult(r) && r.error === undefined ? r : undefined;
  };
  const lines: TargetLine[] = [];
  const mine = get(ratioPair[0]);
  const theirs = get(ratioPair[1]);
  if (mine && theirs) {
    const ratio = mine.mbps / theirs.mbps;
    lines.push({
      name: `sluice kafka ≥ ${TARGET_RATIO}× OpenMSIStream throughput (same broker, same corpus)`,
      status: ratio >= TARGET_RATIO ? 'PASS' : 'MISS',
      detail: `${fmt(ratio, 2)}× (${fmt(mine.mbps, 1)} ÷ ${fmt(theirs.mbps, 1)} MB/s on ${mine.corpusLabel}; incl. start-up ${fmt(mine.mbpsFromSpawn / theirs.mbpsFromSpawn, 2)}×)`,
    });
  } else {
    lines.push({
      name: `sluice kafka ≥ ${TARGET_RATIO}× OpenMSIStream throughput (same broker, same corpus)`,
      status: 'n/a',
      detail: results.has(ratioPair[1])
        ? 'a run failed (see above)'
        : existsSync(join(VENV, 'bin/DataFileUploadDirectory'))
          ? 'not run (--only)'
          : `no OpenMSIStream venv at ${VENV} (bash scripts/python-venv.sh)`,
    });
  }
  const embedded = get('embedded');
  const floorText =
    floor === undefined
      ? ''
      : `; ${fmt((100 * (embedded?.mbps ?? 0)) / floor.withLog.mbps, 0)}% of the format floor with one log write ` +
        `(${fmt(floor.withLog.mbps, 1)} MB/s; ${fmt(floor.noBroker.mbps, 1)} MB/s with no broker at all; SHA-512 ` +
        `${fmt(floor.sha512, 0)} MB/s per core)${
          floor.withLog.mbps < TARGET_EMBEDDED_MBPS
            ? `: on this machine the target is above what the format's own work allows with a durable broker`
            : ''
        }`;
  lines.push({
    name: `sluice embedded ≥ ${TARGET_EMBEDDED_MBPS} MB/s end to end`,
    status: embedded === undefined ? 'n/a' : embedded.mbps >= TARGET_EMBEDDED_MBPS ? 'PASS' : 'MISS',
    detail:
      embedded === undefined
        ? 'not run or failed'
        : `${fmt(embedded.mbps, 1)} MB/s (${fmt(embedded.mbpsFromSpawn, 1)} incl. start-up)${floorText}`,
  });
  const big = get('big');
  lines.push({
    name: `rebuilding one large file keeps every process < ${TARGET_RSS_BYTES / MB} MB RSS`,
    status:
      big === undefined
        ? 'n/a'
        : Math.max(big.uploaderRss, big.downloaderRss) < TARGET_RSS_BYTES
          ? 'PASS'
          : 'MISS',
    detail:
      big === undefined
        ? 'not run or failed'
        : `${big.corpusLabel}: upload-dir ${fmt(big.uploaderRss / MB)} MB, download-dir ${fmt(big.downloaderRss / MB)} MB (${fmt(big.mbps, 1)} MB/s)${big.bytes < 4 * GiB ? '; the target is stated for 4 GiB' : ''}`,
  });
  return lines;
}

// ---- main --------------------------------------------------------------------------------------------------------

function splitArgs(s: string): string[] {
  return s.split(/\s+/).filter((a) => a !== '');
}

function parseArgs(args: string[]): Options {
  const o: Options = {
    scale: 1,
    bigBytes: 4 * GiB,
    only: new Set(DEFAULT_RUNS),
    partitions: 4,
    rounds: 1,
    pythonFraction: 1,
    uploadArgs: [],
    downloadArgs: [],
    nodeArgs: [],
    tmp: tmpdir(),
    keep: false,
    json: false,
  };
  let scaleGiven = false;
  let bigGiven = false;
  const num = (a: string, name: string, ok: (n: number) => boolean): number => {
    const n = Number(a.slice(name.length + 3));
    if (!ok(n)) throw new Error(`bad value in ${a}`);
    return n;
  };
  for (const a of args) {
    if (a === '--quick') {
      if (!scaleGiven) o.scale = 0.05;
      if (!bigGiven) o.bigBytes = GiB / 4;
    } else if (a === '--keep') o.keep = true;
    else if (a === '--json') o.json = true;
    else if (a.startsWith('--scale=')) {
      o.scale = num(a, 'scale', (n) => n > 0);
      scaleGiven = true;
    } else if (a.startsWith('--big-gib=')) {
      o.bigBytes = Math.round(num(a, 'big-gib', (n) => n >= 0) * GiB);
      bigGiven = true;
    } else if (a.startsWith('--partitions='))
      o.partitions = num(a, 'partitions', (n) => Number.isInteger(n) && n >= 1);
    else if (a.startsWith('--rounds=')) o.rounds = num(a, 'rounds', (n) => Number.isInteger(n) && n >= 1);
    else if (a.startsWith('--python-fraction='))
      o.pythonFraction = num(a, 'python-fraction', (n) => n > 0 && n <= 1);
    else if (a.startsWith('--upload-args=')) o.uploadArgs = splitArgs(a.slice('--upload-args='.length));
    else if (a.startsWith('--download-args=')) o.downloadArgs = splitArgs(a.slice('--download-args='.length));
    else if (a.startsWith('--node-args=')) o.nodeArgs = splitArgs(a.slice('--node-args='.length));
    else if (a.startsWith('--tmpdir=')) o.tmp = resolve(a.slice('--tmpdir='.length));
    else if (a.startsWith('--only=')) {
      const names = a.slice('--only='.length).split(',');
      for (const n of names) {
        if (!(RUNS as readonly string[]).includes(n))
          throw new Error(`--only: unknown run "${n}"; use ${RUNS.join(',')}`);
      }
      o.only = new Set(names as RunKind[]);
    } else {
      throw new Error(
        `unknown option ${a}; use --quick, --scale=X, --big-gib=N, --only=${RUNS.join(',')}, --partitions=N, ` +
          '--rounds=N, --python-fraction=F, --upload-args="…", --download-args="…", --node-args="…", --tmpdir=DIR, ' +
          '--keep, --json',
      );
    }
  }
  if (o.bigBytes === 0) {
    o.only.delete('big');
    o.only.delete('big-kafka');
  }
  return o;
}

export async function runFilesBench(args: string[]): Promise<void> {
  const o = parseArgs(args);
  const startedAt = performance.now();
  const loadAtStart = loadavg()[0]!;
  const hasVenv = existsSync(join(VENV, 'bin/DataFileUploadDirectory'));
  if (o.only.has('python') && !hasVenv) {
    log(
      `OpenMSIStream venv not found at ${VENV}: skipping the OpenMSIStream run (bash scripts/python-venv.sh)`,
    );
    o.only.delete('python');
  }
  const spec = corpusSpec(o.scale);
  const corpusBytes =
    spec.smallCount * ((spec.smallMin + spec.smallMax) / 2) + spec.large.reduce((a, b) => a + b, 0);
  // corpus, plus per run the broker's copy and the rebuilt copy; the big file likewise
  const needCorpus = o.only.has('embedded') || o.only.has('kafka') || o.only.has('python');
  const need =
    (needCorpus ? 3 * corpusBytes : 0) + (o.only.has('big') || o.only.has('big-kafka') ? 3 * o.bigBytes : 0);
  const fs = statfsSync(o.tmp);
  const free = fs.bavail * fs.bsize;
  if (free < need * 1.1) {
    throw new Error(
      `${o.tmp} has ${mib(free)} free; this run needs about ${mib(need)}. Use --tmpdir=DIR, --scale or --big-gib.`,
    );
  }
  const work = mkdtempSync(join(o.tmp, 'sluice-bench-files-'));
  const onExit = (): void => {
    if (!o.keep) rmSync(work, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const results = new Map<string, RunResult | { label: string; error: string }>();
  let corpus: Corpus | undefined;
  let floor: Floor | undefined;
  try {
    log(`node ${process.version}; ${cpus().length} cores; work dir ${work}`);
    if (needCorpus) {
      const t = performance.now();
      corpus = await generateCorpus(join(work, 'corpus'), spec);
      log(`generated corpus: ${describeCorpus(corpus)} in ${fmt((performance.now() - t) / 1000, 1)} s`);
      flushToDisk();
      const corpusLabel = `${fmt(corpus.files.length)} files, ${mib(corpus.bytes)}`;
      const full = corpus;
      if (o.only.has('floor')) floor = await measureFloor(full, work, o.rounds);

      if (o.only.has('embedded')) {
        results.set(
          'embedded',
          await run(
            {
              label: 'sluice embedded',
              program: 'sluice',
              target: { kind: 'embedded', path: join(work, 'broker.db') },
              corpus: full,
              corpusLabel,
            },
            o,
            work,
          ),
        );
      }

      let pythonCorpus = full;
      let pythonLabel = corpusLabel;
      if (o.only.has('python') && o.pythonFraction < 1) {
        pythonCorpus = subsetCorpus(full, o.pythonFraction, join(work, 'corpus-subset'));
        pythonLabel = `${fmt(pythonCorpus.files.length)} files, ${mib(pythonCorpus.bytes)} (subset)`;
        log(`OpenMSIStream subset: ${describeCorpus(pythonCorpus)}`);
      }
      if (o.only.has('kafka') || o.only.has('python')) {
        await withKafkaBroker(
          BENCH_STATE,
          async (broker) => {
            log(`Kafka broker ${broker.bootstrap}; topics with ${o.partitions} partitions`);
            const target: Target = { kind: 'kafka', broker };
            if (o.only.has('kafka')) {
              results.set(
                'kafka',
                await run(
                  { label: 'sluice kafka', program: 'sluice', target, corpus: full, corpusLabel },
                  o,
                  work,
                ),
              );
            }
            if (o.only.has('python')) {
              if (pythonCorpus !== full && o.only.has('kafka')) {
                results.set(
                  'kafka-subset',
                  await run(
                    {
                      label: 'sluice kafka',
                      program: 'sluice',
                      target,
                      corpus: pythonCorpus,
                      corpusLabel: pythonLabel,
                    },
                    o,
                    work,
                  ),
                );
              }
              results.set(
                'python',
                await run(
                  {
                    label: 'OpenMSIStream 1.8.8 kafka',
                    program: 'openmsistream',
                    target,
                    corpus: pythonCorpus,
                    corpusLabel: pythonLabel,
                  },
                  o,
                  work,
                ),
              );
            }
          },
          log,
        );
      }
    }

    if (o.only.has('big') || o.only.has('big-kafka')) {
      rmSync(join(work, 'corpus-subset'), { recursive: true, force: true });
      const t2 = performance.now();
      const big = await generateCorpus(join(work, 'big'), {
        smallCount: 0,
        smallMin: 0,
        smallMax: 0,
        large: [o.bigBytes],
        seed: 'sluice-files-bench-big-1',
      });
      log(`generated ${mib(big.bytes)} file in ${fmt((performance.now() - t2) / 1000, 1)} s`);
      flushToDisk();
      const bigLabel = `1 file, ${mib(big.bytes)}`;
      if (o.only.has('big')) {
        results.set(
          'big',
          await run(
            {
              label: 'sluice embedded, one file',
              program: 'sluice',
              target: { kind: 'embedded', path: join(work, 'broker-big.db') },
              corpus: big,
              corpusLabel: bigLabel,
            },
            o,
            work,
          ),
        );
      }
      if (o.only.has('big-kafka')) {
        await withKafkaBroker(
          BENCH_STATE,
          async (broker) => {
            results.set(
              'big-kafka',
              await run(
                {
                  label: 'sluice kafka, one file',
                  program: 'sluice',
                  target: { kind: 'kafka', broker },
                  corpus: big,
                  corpusLabel: bigLabel,
                },
                o,
                work,
              ),
            );
          },
          log,
        );
      }
      rmSync(join(work, 'big'), { recursive: true, force: true });
    }
  } finally {
    process.removeListener('exit', onExit);
    onExit();
  }

  const elapsed = (performance.now() - startedAt) / 1000;
  console.log('');
  console.log(
    `files benchmark: ${corpus ? describeCorpus(corpus) : ''}; ${o.partitions} partitions; node ${process.version}; ${cpus().length} cores`,
  );
  console.log(
    `1-minute load average before the benchmark ${fmt(loadAtStart, 1)}, at the end ${fmt(loadavg()[0]!, 1)}: other programs running meanwhile share the ${cpus().length} cores and lower the figures.`,
  );
  console.log(
    'MB = 10^6 bytes. e2e = uploader ready → last file rebuilt and SHA-512 verified by the downloader; every',
  );
  console.log(
    'output file was then compared with the corpus. RSS = peak resident set of each process; CPU s = CPU time of',
  );
  console.log('each process from the uploader start to the last file.');
  console.log('');
  printTable([...results.values()]);
  console.log('');
  const ratioPair: [string, string] = [results.has('kafka-subset') ? 'kafka-subset' : 'kafka', 'python'];
  if (floor !== undefined) {
    console.log(
      `format floor (bench/lib/floor.ts: this machine doing only the format's unavoidable work, ${floor.noBroker.threads} threads, ` +
        `median of ${o.rounds}): no broker ${fmt(floor.noBroker.mbps, 1)} MB/s (${fmt(floor.noBroker.cpuSeconds, 1)} CPU s); ` +
        `with one log write ${fmt(floor.withLog.mbps, 1)} MB/s (${fmt(floor.withLog.cpuSeconds, 1)} CPU s); SHA-512 ${fmt(floor.sha512, 0)} MB/s per core`,
    );
    console.log('');
  }
  for (const t of targets(results, ratioPair, floor))
    console.log(`${t.status.padEnd(4)}  ${t.name}: ${t.detail}`);
  console.log('');
  console.log(`benchmark took ${fmt(elapsed, 0)} s`);
  if (o.json) console.log(JSON.stringify([...results.entries()], null, 2));
  if ([...results.values()].some((r) => !isResult(r) || r.error !== undefined)) process.exitCode = 1;
}
