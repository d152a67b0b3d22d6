/**
 * Multilang mode: a sluice record processor as the child process of Amazon's Java MultiLangDaemon, speaking its
 * JSON-lines protocol (shared/spec/kcl-multilang.md) on stdin/stdout.
 *
 * - Daemon → child, one JSON object per line on stdin: `initialize`, `processRecords`, `leaseLost`, `shardEnded`,
 *   `shutdownRequested`, the legacy `shutdown` (KCL 1.x; `ZOMBIE`/`LEASE_LOST` → leaseLost, `TERMINATE`/`SHARD_END`
 *   → shardEnded), and `checkpoint` replies.
 * - Child → daemon on stdout, each message written as `"\n" + json + "\n"` (as amazon-kclpy and the Node library
 *   do): exactly one `{"action":"status","responseFor":<action>}` per action, after the handler **and any
 *   checkpoint it started** completed; `{"action":"checkpoint","sequenceNumber":…,"subSequenceNumber":…}` (both
 *   keys always) for a checkpoint, which then waits for the daemon's reply before anything else is read.
 * - Nothing but protocol messages goes to stdout: sluice's own messages go to the error stream (stderr), and
 *   `runKCLProcess` redirects anything else written to `process.stdout` (a stray `console.log`) to stderr.
 * - End of stdin: exit 0.
 *
 * Failures:
 * - a processor method that throws (or rejects) is logged to stderr and the status is **still sent** (amazon-kclpy's
 *   behaviour: the batch counts as done and the daemon moves on). With `fatalProcessorErrors` the process exits 1
 *   instead, without a status, so the daemon fails the shard and the records are re-delivered from the last
 *   checkpoint;
 * - an unknown action, a line that is not JSON, or a malformed message: logged, exit 1 (amazon-kclpy crashes with a
 *   traceback; the Node library throws a TypeError);
 * - checkpoint replies: `error` → `CheckpointError(error)`; any other message in the reply's place is consumed
 *   and the checkpoint rejects with `InvalidStateException` (as amazon-kclpy); end of stdin while waiting →
 *   `InvalidStateException`, then the process exits.
 *
 * Deliberate differences from amazon-kclpy (both keep the protocol; they are safety rules for the child):
 * - after `leaseLost` every checkpoint rejects at once with `ShutdownException` and nothing is written (kclpy's v3
 *   processor could still send one from a checkpointer it kept, which the daemon rejects);
 * - a checkpointer used outside the handler it was given to (after its status was sent) rejects with
 *   `InvalidStateException` and writes nothing: a request there would interleave with the next action;
 * - a second checkpoint while one is pending rejects (`InvalidStateException`), as the Node library does;
 * - blank input lines are skipped (kclpy fails on them); the legacy `shutdown` is mapped instead of crashing.
 */
import { type Readable, Writable } from 'node:stream';
import { toRecordProcessor } from './adapters.ts';
import { CheckpointError } from './errors.ts';
import { LineReader } from './lines.ts';
import { parseMultilangRecord } from './records.ts';
import type { AnyRecordProcessor, Checkpointer, RecordProcessor } from './types.ts';

export interface KCLProcessOptions {
  /** Where the daemon's messages come from. Default `process.stdin`. */
  input?: Readable;
  /** Where protocol messages go. Default `process.stdout`. */
  output?: Writable;
  /** Where log messages go. Default `process.stderr`. */
  error?: Writable;
  /**
   * A processor exception ends the process (exit 1, no status) instead of being logged with the status still
   * sent. Default false (amazon-kclpy's behaviour).
   */
  fatalProcessorErrors?: boolean;
}

/** The actions a daemon sends; `checkpoint` is only valid as the reply to a checkpoint request. */
export const KCL_ACTIONS = [
  'initialize',
  'processRecords',
  'leaseLost',
  'shardEnded',
  'shutdownRequested',
  'shutdown',
  'checkpoint',
] as const;

class ProtocolError extends Error {}

type Json = Record<string, unknown>;

function normaliseSequence(seq: unknown): string | null {
  if (seq === undefined || seq === null) return null;
  if (typeof seq === 'string') return seq;
  if (typeof seq === 'bigint' && seq >= 0n) return seq.toString();
  if (typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 0) return String(seq);
  throw new CheckpointError(
    'IllegalArgumentException',
    `Cannot checkpoint at ${String(seq)}: a sequence number is a decimal string (or a bigint).`,
  );
}

function normaliseSub(sub: unknown): number | null {
  if (sub === undefined || sub === null) return null;
  if (typeof sub === 'number' && Number.isSafeInteger(sub) && sub >= 0) return sub;
  throw new CheckpointError(
    'IllegalArgumentException',
    `Cannot checkpoint at sub-sequence ${String(sub)}: it is a whole number ≥ 0.`,
  );
}

/** The checkpointer of a multilang child: usable only while a handler that was given it runs. */
class MultilangCheckpointer implements Checkpointer {
  active = false;
  leaseLost = false;
  pending: Promise<void> | undefined;
  readonly #proc: KCLProcess;

  constructor(proc: KCLProcess) {
    this.#proc = proc;
  }

  checkpoint(sequenceNumber?: string | bigint | null, subSequenceNumber?: number | null): Promise<void> {
    if (this.leaseLost) {
      return Promise.reject(
        new CheckpointError('ShutdownException', 'Checkpointing is not allowed when the lease is lost.'),
      );
    }
    if (!this.active) {
      return Promise.reject(
        new CheckpointError(
          'InvalidStateException',
          'This checkpointer can only be used while the processRecords/shardEnded/shutdownRequested call it was ' +
            'given to is running (its status has been sent since).',
        ),
      );
    }
    if (this.pending !== undefined) {
      return Promise.reject(
        new CheckpointError(
          'InvalidStateException',
          'Cannot checkpoint while another checkpoint is already in progress: await the first one.',
        ),
      );
    }
    let seq: string | null;
    let sub: number | null;
    try {
      seq = normaliseSequence(sequenceNumber);
      sub = normaliseSub(subSequenceNumber);
    } catch (err) {
      return Promise.reject(err);
    }
    const p = this.#proc.requestCheckpoint(seq, sub).finally(() => {
      this.pending = undefined;
    });
    this.pending = p;
    return p;
  }
}

export class KCLProcess {
  readonly #processor: RecordProcessor;
  readonly #reader: LineReader;
  readonly #output: Writable;
  readonly #error: Writable;
  readonly #fatal: boolean;
  #outputFailed: Error | undefined;
  #running = false;

  constructor(processor: AnyRecordProcessor, options: KCLProcessOptions = {}) {
    this.#processor = toRecordProcessor(processor);
    this.#reader = new LineReader(options.input ?? process.stdin);
    this.#output = options.output ?? process.stdout;
    this.#error = options.error ?? process.stderr;
    this.#fatal = options.fatalProcessorErrors ?? false;
    this.#output.on('error', (err: Error) => {
      this.#outputFailed ??= err;
    });
  }

  #log(message: string): void {
    this.#error.write(`sluice kcl: ${message}\n`);
  }

  async #send(message: Json): Promise<void> {
    if (this.#outputFailed !== undefined) throw this.#outputFailed;
    await new Promise<void>((resolve, reject) => {
      this.#output.write(`\n${JSON.stringify(message)}\n`, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Sends a checkpoint request and waits for the daemon's reply (used by the checkpointer). */
  async requestCheckpoint(sequenceNumber: string | null, subSequenceNumber: number | null): Promise<void> {
    try {
      await this.#send({ action: 'checkpoint', sequenceNumber, subSequenceNumber });
    } catch (err) {
      throw new CheckpointError(
        'InvalidStateException',
        'Could not write the checkpoint request to stdout.',
        {
          cause: err,
        },
      );
    }
    const line = await this.#nextMessageLine();
    if (line === null) {
      throw new CheckpointError(
        'InvalidStateException',
        'The daemon closed stdin while a checkpoint was waiting for its reply.',
      );
    }
    let reply: unknown;
    try {
      reply = JSON.parse(line);
    } catch {
      this.#log(`expected a checkpoint reply, got a line that is not JSON: ${line}`);
      throw new CheckpointError('InvalidStateException', 'The checkpoint reply was not JSON.');
    }
    const r = reply as Json;
    if (typeof reply !== 'object' || reply === null || r.action !== 'checkpoint') {
      this.#log(`expected a checkpoint reply, got ${line}`);
      throw new CheckpointError(
        'InvalidStateException',
        `Expected the daemon's checkpoint reply, got ${JSON.stringify(r?.action)} instead.`,
      );
    }
    if (r.error !== undefined && r.error !== null) {
      throw new CheckpointError(
        String(r.error),
        `The daemon rejected the checkpoint at ${sequenceNumber ?? 'the largest permitted sequence'}: ${String(r.error)}.`,
      );
    }
  }

  async #nextMessageLine(): Promise<string | null> {
    for (;;) {
      const line = await this.#reader.next();
      if (line === null || line.trim().length > 0) return line;
    }
  }

  /**
   * Runs the conversation until stdin ends. Resolves with the exit code: 0 at the end of stdin, 1 after a protocol
   * error, a broken stdout, or (with `fatalProcessorErrors`) a processor exception. Never rejects.
   */
  async run(): Promise<number> {
    if (this.#running) throw new Error('KCLProcess.run() was called twice');
    this.#running = true;
    const checkpointer = new MultilangCheckpointer(this);
    for (;;) {
      const line = await this.#nextMessageLine();
      if (line === null) {
        if (this.#reader.error !== undefined) {
          this.#log(`reading stdin failed: ${this.#reader.error.message}`);
          return 1;
        }
        return 0;
      }
      let action: string;
      let handler: () => unknown;
      try {
        ({ action, handler } = this.#decode(line, checkpointer));
      } catch (err) {
        this.#log(err instanceof ProtocolError ? err.message : `cannot handle ${line}: ${String(err)}`);
        return 1;
      }
      checkpointer.active = true;
      let failed = false;
      try {
        await handler();
      } catch (err) {
        failed = true;
        const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
        this.#log(`the record processor threw in ${action}: ${detail}`);
      } finally {
        checkpointer.active = false;
      }
      // a checkpoint the handler started but did not await still owns stdin: let it finish first
      await checkpointer.pending?.catch(() => undefined);
      if (failed && this.#fatal) {
        this.#log('exiting (fatalProcessorErrors): the daemon restarts the shard from its last checkpoint');
        return 1;
      }
      try {
        await this.#send({ action: 'status', responseFor: action });
      } catch (err) {
        this.#log(`writing to stdout failed, the daemon is gone: ${String(err)}`);
        return 1;
      }
    }
  }

  #decode(line: string, checkpointer: MultilangCheckpointer): { action: string; handler: () => unknown } {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      throw new ProtocolError(`received a line that is not JSON, exiting: ${line}`);
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      throw new ProtocolError(`received a message that is not a JSON object, exiting: ${line}`);
    }
    const m = msg as Json;
    const action = m.action;
    if (typeof action !== 'string')
      throw new ProtocolError(`received a message without an action, exiting: ${line}`);
    const p = this.#processor;
    switch (action) {
      case 'initialize': {
        if (typeof m.shardId !== 'string')
          throw new ProtocolError(`initialize without a shardId, exiting: ${line}`);
        const seq = m.sequenceNumber;
        const sub = m.subSequenceNumber;
        const input = {
          shardId: m.shardId,
          sequenceNumber: typeof seq === 'string' ? seq : null,
          subSequenceNumber: typeof sub === 'number' ? sub : null,
        };
        return { action, handler: () => p.initialize(input) };
      }
      case 'processRecords': {
        if (!Array.isArray(m.records))
          throw new ProtocolError(`processRecords without records, exiting: ${line}`);
        let records: ReturnType<typeof parseMultilangRecord>[];
        try {
          records = m.records.map(parseMultilangRecord);
        } catch (err) {
          throw new ProtocolError(`${(err as Error).message} Exiting.`);
        }
        const behind = m.millisBehindLatest;
        const input = {
          records,
          millisBehindLatest: typeof behind === 'number' ? behind : null,
          checkpointer,
        };
        return { action, handler: () => p.processRecords(input) };
      }
      case 'leaseLost':
        return { action, handler: () => this.#leaseLost(checkpointer) };
      case 'shardEnded':
        return { action, handler: () => p.shardEnded({ checkpointer }) };
      case 'shutdownRequested':
        return { action, handler: () => p.shutdownRequested?.({ checkpointer }) };
      case 'shutdown': {
        const reason = m.reason;
        if (reason === 'ZOMBIE' || reason === 'LEASE_LOST') {
          return { action, handler: () => this.#leaseLost(checkpointer) };
        }
        if (reason === 'TERMINATE' || reason === 'SHARD_END') {
          return { action, handler: () => p.shardEnded({ checkpointer }) };
        }
        throw new ProtocolError(
          `received the legacy shutdown action with reason ${JSON.stringify(reason)}; known reasons are ZOMBIE, ` +
            'LEASE_LOST, TERMINATE and SHARD_END. Exiting.',
        );
      }
      case 'checkpoint':
        throw new ProtocolError(
          `received a checkpoint reply while no checkpoint was pending, exiting: ${line}. The daemon and this ` +
            'child disagree about the conversation.',
        );
      default:
        throw new ProtocolError(
          `received an unknown action ${JSON.stringify(action)}, exiting. Known actions: ${KCL_ACTIONS.join(', ')}.`,
        );
    }
  }

  #leaseLost(checkpointer: MultilangCheckpointer): unknown {
    checkpointer.leaseLost = true;
    return this.#processor.leaseLost({});
  }
}

export interface RunKCLProcessOptions {
  fatalProcessorErrors?: boolean;
  /** Call `process.exit` with the exit code once stdout is flushed (default true), so timers left running by the processor cannot keep the child alive. */
  exit?: boolean;
}

/**
 * The entry point of a multilang child script: speaks the protocol on the real stdin/stdout and exits at the end
 * of stdin. Every other write to `process.stdout` (`console.log`, libraries) goes to stderr from here on.
 *
 * ```ts
 * // my-processor.ts, started by the daemon as `executableName = node my-processor.ts`
 * await runKCLProcess(new MyProcessor());
 * ```
 */
export async function runKCLProcess(
  processor: AnyRecordProcessor,
  options: RunKCLProcessOptions = {},
): Promise<number> {
  const stdout = process.stdout;
  const realWrite = stdout.write.bind(stdout) as (
    chunk: string | Uint8Array,
    cb?: (err?: Error | null) => void,
  ) => boolean;
  const protocol = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      realWrite(chunk, (err) => callback(err ?? null));
    },
  });
  stdout.on('error', (err: Error) => protocol.destroy(err));
  const stderrWrite = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
  stdout.write = stderrWrite;
  const code = await new KCLProcess(processor, {
    input: process.stdin,
    output: protocol,
    error: process.stderr,
    fatalProcessorErrors: options.fatalProcessorErrors,
  }).run();
  process.exitCode = code;
  if (options.exit ?? true) {
    await new Promise<void>((resolve) => realWrite('', () => resolve()));
    process.exit(code);
  }
  return code;
}
