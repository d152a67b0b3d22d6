/**
 * A fake MultiLangDaemon for tests: drives a multilang child (a sluice `KCLProcess` in this process, or any child
 * process such as an amazon-kclpy one) through a scripted conversation, the way the Java daemon does:
 * - it sends the script's first message, then, after each protocol message from the child (a `status` or a
 *   `checkpoint` request), the script's next message; so the child only ever sees the next action after its
 *   status, and a checkpoint reply only after its request, exactly as with the real daemon;
 * - once the script is exhausted it closes the child's stdin (the daemon's end of a conversation);
 * - lines that are blank are skipped; lines that are not JSON are kept as `strayLines` (the daemon logs and skips
 *   them: "Skipping unexpected line on STDOUT");
 * - `violations` lists what the Java daemon would fail on: a status whose `responseFor` is not the last action
 *   sent, a status while a checkpoint reply was expected … (the transcript is still recorded).
 */
import { spawn } from 'node:child_process';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { LineReader } from './lines.ts';
import { KCLProcess, type KCLProcessOptions } from './multilang.ts';
import type { AnyRecordProcessor } from './types.ts';

export type DaemonMessage = Record<string, unknown>;

export interface ChildHandle {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  kill(): void;
}

export interface Conversation {
  /** The child's protocol messages (parsed JSON lines), in order. */
  messages: DaemonMessage[];
  /** Non-blank lines on stdout that were not JSON. */
  strayLines: string[];
  stderr: string;
  exitCode: number | null;
  /** Messages of the script that were never sent (the child stopped talking before). */
  unsent: DaemonMessage[];
  violations: string[];
}

export interface ConverseOptions {
  /** Give up (and kill the child) after this long. A safety net against a stalled child; default 30 s. */
  timeoutMs?: number;
}

function collect(stream: Readable): () => string {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer | string) => chunks.push(typeof c === 'string' ? Buffer.from(c) : c));
  return () => Buffer.concat(chunks).toString('utf8');
}

export async function converse(
  child: ChildHandle,
  script: DaemonMessage[],
  options: ConverseOptions = {},
): Promise<Conversation> {
  const stderr = collect(child.stderr);
  const reader = new LineReader(child.stdout);
  const messages: DaemonMessage[] = [];
  const strayLines: string[] = [];
  const violations: string[] = [];
  let next = 0;
  /** The last action sent that still needs a status. */
  let awaitingStatus: string | undefined;
  let stdinOpen = true;
  child.stdin.on('error', () => undefined); // the child may exit before reading everything

  const closeStdin = (): void => {
    if (stdinOpen) {
      stdinOpen = false;
      child.stdin.end();
    }
  };
  const sendNext = (): void => {
    if (next >= script.length) {
      closeStdin();
      return;
    }
    const m = script[next++]!;
    if (m.action !== 'checkpoint') awaitingStatus = String(m.action);
    child.stdin.write(`${JSON.stringify(m)}\n`);
  };

  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), options.timeoutMs ?? 30_000);
  });
  const talk = async (): Promise<void> => {
    sendNext();
    for (;;) {
      const line = await reader.next();
      if (line === null) break;
      if (line.trim() === '') continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        strayLines.push(line);
        continue;
      }
      const m = msg as DaemonMessage;
      messages.push(m);
      if (m.action === 'status') {
        if (m.responseFor !== awaitingStatus) {
          violations.push(
            `status for ${JSON.stringify(m.responseFor)} while ${JSON.stringify(awaitingStatus)} was pending`,
          );
        }
        const pendingReply = script[next]?.action === 'checkpoint';
        if (pendingReply) violations.push('status sent while the script expected a checkpoint request first');
        awaitingStatus = undefined;
        sendNext();
      } else if (m.action === 'checkpoint') {
        if (awaitingStatus === undefined) violations.push('checkpoint request outside an action');
        if (next < script.length && script[next]!.action !== 'checkpoint') {
          violations.push(
            `checkpoint request where the script sends ${JSON.stringify(script[next]!.action)}`,
          );
        }
        sendNext();
      } else {
        violations.push(`unexpected message ${line}`);
      }
    }
  };
  const outcome = await Promise.race([talk().then(() => 'done' as const), timedOut]);
  closeStdin();
  if (outcome === 'timeout') {
    child.kill();
    violations.push(`timed out after ${options.timeoutMs ?? 30_000} ms`);
  }
  const exitCode = await child.exited;
  clearTimeout(timer);
  return { messages, strayLines, stderr: stderr(), exitCode, unsent: script.slice(next), violations };
}

/** A `KCLProcess` running in this process, wired to in-memory pipes. */
export function inProcessChild(
  processor: AnyRecordProcessor,
  options: Omit<KCLProcessOptions, 'input' | 'output' | 'error'> = {},
): ChildHandle {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const proc = new KCLProcess(processor, { ...options, input: stdin, output: stdout, error: stderr });
  const exited = proc.run().finally(() => {
    stdout.end();
    stderr.end();
  });
  return {
    stdin,
    stdout,
    stderr,
    exited,
    kill: () => {
      stdin.destroy();
    },
  };
}

/** A child process (e.g. `python sample_kclpy_app.py`, or `node child.ts`). */
export function spawnChild(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): ChildHandle {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env, cwd: options.cwd });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  return {
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    exited,
    kill: () => {
      child.kill('SIGKILL');
    },
  };
}
