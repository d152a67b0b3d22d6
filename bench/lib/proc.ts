/**
 * Child processes for benchmarks: line-by-line output, peak RSS and CPU time per process, clean stops.
 *
 * Peak RSS comes from two sources, and the larger wins:
 * - `/proc/<pid>/status` `VmHWM` (the kernel's high-water mark of the resident set), sampled every
 *   `sampleMs` until the process exits; this works for any program (Python included) and misses at most the last
 *   sample interval;
 * - for Node children started with `nodeArgs()`, the child's own `VmHWM` written by itself when it exits, which
 *   covers its whole life. Not `process.resourceUsage().maxRSS`: Linux keeps ru_maxrss across execve, so a child
 *   spawned by this (large) benchmark process reports the benchmark's resident set at fork time when that was
 *   larger than anything the child used (a 100 MB `download-dir` showed as 197 MB). `maxRSS` is only the fallback
 *   where /proc is missing.
 * CPU time (user + system) is read from `/proc/<pid>/stat` on demand, so a caller can take the CPU used inside a
 * measured window.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** Environment variable naming the file a Node child writes its peak RSS (KiB) and CPU time to at exit. */
const RSS_FILE_ENV = 'SLUICE_BENCH_RSS_FILE';

/** The `VmHWM` line of `/proc/<pid>/status` (KiB), read here by `peakRssOf` and in each child by `RSS_PRELOAD`. */
const VMHWM_LINE = /^VmHWM:\s+(\d+) kB$/m;

/** A module preloaded with `--import` into Node children: writes peak RSS (KiB) and CPU µs when the child exits. */
const RSS_PRELOAD = `data:text/javascript,${encodeURIComponent(
  `import { readFileSync, writeFileSync } from 'node:fs';
const file = process.env.${RSS_FILE_ENV};
const hwmKiB = () => {
  try { return Number(new RegExp(${JSON.stringify(VMHWM_LINE.source)}, 'm').exec(readFileSync('/proc/self/status', 'utf8'))[1]); } catch { return undefined; }
};
if (file) process.on('exit', () => {
  const u = process.resourceUsage();
  try { writeFileSync(file, JSON.stringify({ maxRssKiB: hwmKiB() ?? u.maxRSS, cpuMicros: u.userCPUTime + u.systemCPUTime })); } catch {}
});`,
)}`;

/** Node options that make a Node child report its own peak RSS at exit (see `Child.peakRssBytes`). */
export function nodeArgs(): string[] {
  return ['--import', RSS_PRELOAD];
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far, or undefined once it is gone. */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the command name (which may contain spaces), counted from field 3 (state)
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** `VmHWM` (peak resident set) of a process in bytes, or undefined once it is gone. */
export function peakRssOf(pid: number): number | undefined {
  try {
    const m = VMHWM_LINE.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface ChildOptions {
  /** Label in error messages. */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Keep stdin open as a pipe (for programs stopped by typing `q`). */
  stdin?: boolean;
  /** Directory for the child's RSS report (Node children); the file is removed once read. */
  reportDir?: string;
  sampleMs?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly spawnedAt: number;
  readonly exited: Promise<ExitStatus>;
  private exitStatus: ExitStatus | undefined;
  private readonly tail: string[] = [];
  private readonly listeners = new Set<(line: string, at: number) => void>();
  private polledPeak = 0;
  private lastCpu = 0;
  private readonly sampler: NodeJS.Timeout;
  private readonly reportFile: string | undefined;

  constructor(o: ChildOptions) {
    this.name = o.name;
    this.reportFile =
      o.reportDir === undefined
        ? undefined
        : join(o.reportDir, `rss-${o.name}-${process.hrtime.bigint()}.json`);
    this.spawnedAt = performance.now();
    this.proc = spawn(o.command, o.args, {
      cwd: o.cwd,
      env: { ...(o.env ?? process.env), ...(this.reportFile ? { [RSS_FILE_ENV]: this.reportFile } : {}) },
      stdio: [o.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    if (this.proc.pid === undefined) throw new Error(`cannot start ${o.name} (${o.command})`);
    this.pid = this.proc.pid;
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      if (stream === null) continue;
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
        const at = performance.now();
        this.tail.push(line);
        if (this.tail.length > 40) this.tail.shift();
        for (const l of this.listeners) l(line, at);
      });
    }
    this.sampler = setInterval(() => this.sample(), o.sampleMs ?? 200);
    this.sampler.unref();
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        clearInterval(this.sampler);
        this.exitStatus = { code, signal };
        resolve(this.exitStatus);
      });
    });
    this.sample();
  }

  private sample(): void {
    const rss = peakRssOf(this.pid);
    if (rss !== undefined) this.polledPeak = Math.max(this.polledPeak, rss);
    const cpu = cpuSecondsOf(this.pid);
    if (cpu !== undefined) this.lastCpu = cpu;
  }

  get hasExited(): boolean {
    return this.exitStatus !== undefined;
  }

  /** CPU seconds used so far (the last value seen once the process is gone). */
  cpuSeconds(): number {
    this.sample();
    return this.lastCpu;
  }

  /** Calls `fn` for every line of stdout and stderr, with the time it arrived (`performance.now()`). */
  onLine(fn: (line: string, at: number) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolves with the arrival time of the first line matching `test`; rejects if the process exits or on timeout. */
  waitForLine(test: (line: string) => boolean, timeoutMs: number, what: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`${this.name}: no ${what} after ${timeoutMs / 1000} s${this.tailText()}`));
      }, timeoutMs);
      const off = this.onLine((line, at) => {
        if (!test(line)) return;
        clearTimeout(timer);
        off();
        resolve(at);
      });
      void this.exited.then((s) => {
        clearTimeout(timer);
        off();
        reject(new Error(`${this.name} exited (${describeExit(s)}) before ${what}${this.tailText()}`));
      });
    });
  }

  /** The last lines the child printed, for error messages. */
  tailText(): string {
    return this.tail.length === 0 ? '' : `; last output:\n    ${this.tail.slice(-15).join('\n    ')}`;
  }

  /**
   * Asks the child to stop (`SIGINT`, or `q` + newline on stdin), waits up to `graceMs`, then kills it. Resolves
   * with the exit status once it is gone.
   */
  async stop(how: 'SIGINT' | 'SIGTERM' | 'stdin-q', graceMs = 30_000): Promise<ExitStatus> {
    if (this.exitStatus !== undefined) return this.exitStatus;
    this.sample();
    if (how === 'stdin-q') {
      this.proc.stdin?.write('q\n');
      this.proc.stdin?.end();
    } else this.proc.kill(how);
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.proc.kill('SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    return this.exited;
  }

  /** Kills at once (cleanup after a failure). */
  kill(): void {
    if (this.exitStatus === undefined) this.proc.kill('SIGKILL');
  }

  /**
   * Peak RSS in bytes: the child's own report (Node children) or the highest `VmHWM` sampled. Call after exit.
   * `source` tells which one it is.
   */
  peakRss(): { bytes: number; source: 'self' | 'proc' } {
    if (this.reportFile !== undefined) {
      try {
        const r = JSON.parse(readFileSync(this.reportFile, 'utf8')) as { maxRssKiB: number };
        rmSync(this.reportFile, { force: true });
        return { bytes: Math.max(this.polledPeak, r.maxRssKiB * 1024), source: 'self' };
      } catch {
        // no report (killed, or not a Node child): fall back to the samples
      }
    }
    return { bytes: this.polledPeak, source: 'proc' };
  }
}

export function describeExit(s: ExitStatus): string {
  return s.signal !== null ? `signal ${s.signal}` : `exit code ${s.code}`;
}
