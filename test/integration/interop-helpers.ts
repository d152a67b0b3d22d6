/**
 * Helpers for the OpenMSIStream interop tier (openmsistream-interop.test.ts): the upstream programs from the venv
 * made by scripts/python-venv.sh, an OpenMSIStream INI config for the test broker, child processes that are always
 * stopped, bounded polling, topic read-back, file trees, and heartbeat parsing with sluice's expectations.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { PROGRAM_COUNTERS } from '../../src/runtime/heartbeat.ts';
import type { ConsumedRecord, Transport } from '../../src/transport/types.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const SLUICE_BIN = resolve(ROOT, 'bin/sluice.js');
export const PYTHON_DIR = resolve(import.meta.dirname, 'python');

/** The interop venv (scripts/python-venv.sh; `$SLUICE_VENV` overrides). Missing is an error, never a skip. */
export function venvBin(program: string): string {
  const venv = process.env.SLUICE_VENV ?? resolve(ROOT, '.venv');
  const path = join(venv, 'bin', program);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(
      `${path} is missing: the OpenMSIStream interop tests need the Python venv. Run \`bash scripts/python-venv.sh\` ` +
        '(scripts/test-integration.sh does it when an *interop*.test.ts file exists).',
    );
  }
  return path;
}

export function uniqueName(prefix: string): string {
  return `sluice-interop-${prefix}-${randomUUID().slice(0, 8)}`;
}

/**
 * An OpenMSIStream config file for a plaintext broker: `[broker]` with `bootstrap.servers`, and the serializers
 * of upstream's shipped test.config (no SASL, no compression, so nothing but the protocol is exercised).
 */
export async function writeOpenMsiConfig(dir: string, bootstrap: string): Promise<string> {
  const path = join(dir, 'interop.config');
  await mkdir(dir, { recursive: true });
  await writeFile(
    path,
    [
      '# written by test/integration/interop-helpers.ts',
      '[broker]',
      `bootstrap.servers = ${bootstrap}`,
      '',
      '[producer]',
      'key.serializer = StringSerializer',
      'value.serializer = DataFileChunkSerializer',
      '',
      '[consumer]',
      'group.id = create_new',
      'auto.offset.reset = earliest',
      'enable.auto.commit = False',
      'key.deserializer = StringDeserializer',
      'value.deserializer = DataFileChunkDeserializer',
      '',
    ].join('\n'),
  );
  return path;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const OUTPUT_LIMIT = 256 * 1024;

/**
 * A child process whose stdout and stderr are kept (the last 256 KiB, interleaved) for assertions and failure
 * messages. Every instance is registered until it exits; `killAll()` (in `after`) SIGKILLs what is left.
 */
export class Proc {
  static readonly live = new Set<Proc>();
  readonly name: string;
  readonly child: ChildProcess;
  readonly exit: Promise<Exit>;
  private out = '';
  private done: Exit | undefined;

  constructor(
    name: string,
    command: string,
    args: string[],
    options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
  ) {
    this.name = name;
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, PYTHONUNBUFFERED: '1', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    Proc.live.add(this);
    const keep = (chunk: Buffer): void => {
      this.out += chunk.toString('utf8');
      if (this.out.length > OUTPUT_LIMIT) this.out = this.out.slice(-OUTPUT_LIMIT);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    // a closed stdin (the child exited) must not crash the test process
    this.child.stdin?.on('error', () => undefined);
    this.exit = new Promise<Exit>((resolveExit) => {
      this.child.on('error', (err) => {
        keep(Buffer.from(`\n[spawn error: ${err.message}]\n`));
      });
      this.child.on('close', (code, signal) => {
        this.done = { code, signal };
        Proc.live.delete(this);
        resolveExit(this.done);
      });
    });
  }

  get output(): string {
    return this.out;
  }

  get exited(): boolean {
    return this.done !== undefined;
  }

  /** The controlled-process way to stop an upstream program: `q` on stdin (it reads one character a second). */
  quit(): void {
    this.child.stdin?.write('q\n');
  }

  signal(sig: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.exited) this.child.kill(sig);
  }

  /** Resolves with the exit status; rejects (with the output's tail) if the process is still running after `ms`. */
  async waitExit(ms: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.name} did not exit within ${ms} ms. Output:\n${this.tail()}`)),
        ms,
      );
    });
    try {
      return await Promise.race([this.exit, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits for a clean exit (status 0) and returns the output. */
  async expectSuccess(ms: number): Promise<string> {
    const e = await this.waitExit(ms);
    if (e.code !== 0) {
      throw new Error(`${this.name} exited with ${e.code ?? e.signal}. Output:\n${this.tail()}`);
    }
    return this.out;
  }

  tail(chars = 6000): string {
    return this.out.length <= chars ? this.out : `…${this.out.slice(-chars)}`;
  }

  /** SIGKILL if still running, and wait (bounded) for the exit. */
  async kill(): Promise<void> {
    if (this.exited) return;
    this.child.kill('SIGKILL');
    await this.waitExit(10_000).catch(() => undefined);
  }

  static async killAll(): Promise<void> {
    await Promise.all([...Proc.live].map((p) => p.kill()));
  }
}

/** An upstream console script from the venv (UploadDataFile, DataFileUploadDirectory, …). */
export function upstream(program: string, args: string[]): Proc {
  return new Proc(program, venvBin(program), args);
}

/** The sluice CLI, on the Node running the tests (the pinned Node 24). */
export function sluice(name: string, args: string[]): Proc {
  return new Proc(name, process.execPath, [SLUICE_BIN, ...args], { env: { SLUICE_LOG_LEVEL: 'info' } });
}

/** Runs one of test/integration/python/*.py with the venv's Python, JSON in, JSON out. */
export async function runPythonJson(script: string, input: unknown, ms = 60_000): Promise<unknown> {
  const p = new Proc(script, venvBin('python'), [join(PYTHON_DIR, script)]);
  p.child.stdin?.end(JSON.stringify(input));
  let stdout = '';
  p.child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString('utf8');
  });
  await p.expectSuccess(ms);
  return JSON.parse(stdout);
}

/**
 * Polls `probe` every `intervalMs` until it returns something other than `undefined`/`false`, and returns that.
 * After `timeoutMs` it throws, with `describe()` (the state seen last) in the message: waits are bounded, and
 * what the test asserts is the state reached, never how long it took.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs: number; intervalMs?: number; describe?: () => string | Promise<string> },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() >= deadline) {
      const state = options.describe === undefined ? '' : `\n${await options.describe()}`;
      throw new Error(`gave up after ${options.timeoutMs} ms waiting for ${what}${state}`);
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 150));
  }
}

/** Records currently in a topic (sum over partitions of end − start offsets). */
export async function recordCount(transport: Transport, topic: string): Promise<number> {
  const d = await transport.describeTopic(topic);
  return d.partitions.reduce((n, p) => n + p.endOffset - p.startOffset, 0);
}

/** Every record in the topic now, read back by a throw-away group, ordered by partition and offset. */
export async function readTopic(
  transport: Transport,
  topic: string,
  timeoutMs = 30_000,
): Promise<ConsumedRecord[]> {
  const total = await recordCount(transport, topic);
  const consumer = transport.consumer({
    groupId: uniqueName('reader'),
    topics: [topic],
    start: 'earliest',
    sessionTimeoutMs: 6000,
  });
  const records: ConsumedRecord[] = [];
  try {
    const deadline = Date.now() + timeoutMs;
    while (records.length < total) {
      if (Date.now() > deadline) {
        throw new Error(`read ${records.length} of the ${total} records of ${topic} within ${timeoutMs} ms`);
      }
      records.push(...(await consumer.poll({ timeoutMs: 500 })));
    }
  } finally {
    await consumer.close();
  }
  return records.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

export type Tree = Map<string, Buffer>;

/** Writes `files` (relative POSIX path → content) under `root`. */
export async function writeTree(root: string, files: Tree): Promise<void> {
  for (const [rel, data] of files) {
    const full = join(root, ...rel.split('/'));
    await mkdir(dirname(full), { recursive: true });
    await writeFile(full, data);
  }
}

/**
 * The regular files under `root` (relative POSIX path → content), without the top-level `LOGS/` directory (the
 * programs' registries) and without hidden entries (sluice's `.name.sluice-partial` files).
 */
export async function readTree(root: string): Promise<Tree> {
  const out: Tree = new Map();
  const walk = async (dir: string, rel: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      if (rel === '' && e.name === 'LOGS') continue;
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(join(dir, e.name), childRel);
      else if (e.isFile()) out.set(childRel, await readFile(join(dir, e.name)));
    }
  };
  await walk(root, '');
  return out;
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex').slice(0, 16);

/** `undefined` when the trees hold the same paths with the same bytes, else a readable difference. */
export function treeDifference(actual: Tree, expected: Tree): string | undefined {
  const lines: string[] = [];
  for (const [rel, data] of expected) {
    const got = actual.get(rel);
    if (got === undefined) lines.push(`missing: ${rel} (${data.length} bytes)`);
    else if (!got.equals(data)) {
      lines.push(
        `differs: ${rel}: ${got.length} bytes sha256 ${digest(got)}, want ${data.length} bytes ${digest(data)}`,
      );
    }
  }
  for (const rel of actual.keys()) if (!expected.has(rel)) lines.push(`unexpected: ${rel}`);
  return lines.length === 0 ? undefined : lines.join('\n');
}

/** Number of chunks a file of `size` bytes is split into by upstream (0 for an empty file). */
export function upstreamChunks(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

export type ProgramKind = keyof typeof PROGRAM_COUNTERS;

export interface ParsedHeartbeat {
  /** The timestamp as sent. */
  timestamp: string;
  date: Date;
  counters: Record<string, number>;
}

/**
 * Python's `datetime.now(timezone.utc).isoformat()`: microseconds are omitted when they are 0 (one time in a
 * million), so the fraction is optional; the offset must be `+00:00`.
 */
const UTC_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?\+00:00$/;

/**
 * Parses a heartbeat message with sluice's expectations (shared/spec/openmsistream-compat.md section 4): key
 * `<programId>_heartbeat`; a JSON object with exactly `timestamp` plus the counters of that kind of program
 * (`PROGRAM_COUNTERS`); the timestamp a UTC ISO-8601 string; counters non-negative integers. Throws on anything
 * else.
 */
export function parseHeartbeat(
  record: ConsumedRecord,
  programId: string,
  kind: ProgramKind,
): ParsedHeartbeat {
  const key = record.key?.toString('utf8');
  const where = `heartbeat ${record.topic}[${record.partition}]@${record.offset}`;
  if (key !== `${programId}_heartbeat`) throw new Error(`${where}: key ${key}, want ${programId}_heartbeat`);
  let value: unknown;
  try {
    value = JSON.parse(record.value?.toString('utf8') ?? 'null');
  } catch (err) {
    throw new Error(`${where}: value is not JSON (${String(err)})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${where}: value is not a JSON object`);
  }
  const v = value as Record<string, unknown>;
  const want = ['timestamp', ...PROGRAM_COUNTERS[kind]].sort();
  const got = Object.keys(v).sort();
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${where}: fields ${got.join(',')}, want ${want.join(',')}`);
  }
  const ts = v.timestamp;
  if (typeof ts !== 'string' || !UTC_ISO.test(ts) || Number.isNaN(Date.parse(ts))) {
    throw new Error(`${where}: timestamp ${JSON.stringify(ts)} is not a UTC ISO-8601 time`);
  }
  const counters: Record<string, number> = {};
  for (const c of PROGRAM_COUNTERS[kind]) {
    const n = v[c];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new Error(`${where}: ${c} = ${JSON.stringify(n)} is not a non-negative integer`);
    }
    counters[c] = n;
  }
  return { timestamp: ts, date: new Date(ts), counters };
}

/** Sums each counter over heartbeats. */
export function sumCounters(beats: ParsedHeartbeat[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const b of beats) for (const [k, n] of Object.entries(b.counters)) sum[k] = (sum[k] ?? 0) + n;
  return sum;
}
