import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ConsumedRecord } from '../../transport/types.ts';
import { RunTaskConcurrently } from './run-task-concurrently.ts';
import { InvalidMessage, type Message, type ProcessingStrategy } from './types.ts';

export interface WorkerPoolOptions {
  /**
   * The task module (a path or `file:` URL). Each thread imports it and calls its export `exportName` with a
   * message payload (after structured cloning: a `Buffer` arrives as a `Uint8Array`); the function may be async and
   * its result must be cloneable too. Throw an error named `InvalidMessage` to send the message to the dead-letter
   * path.
   */
  module: string | URL;
  /** Default `default`. */
  exportName?: string;
  /** Default: the number of cores minus one, at least 1. */
  threads?: number;
}

interface Slot {
  worker: Worker;
  inFlight: number;
  calls: Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>;
}

/** A fixed set of `node:worker_threads` threads running one task function. Close it when done. */
export class WorkerPool {
  readonly threads: number;
  readonly #slots: Slot[] = [];
  #nextId = 0;
  #closed = false;
  #failure: unknown;

  constructor(options: WorkerPoolOptions) {
    this.threads = options.threads ?? Math.max(1, availableParallelism() - 1);
    if (!(Number.isInteger(this.threads) && this.threads >= 1)) {
      throw new RangeError(`WorkerPool threads must be an integer ≥ 1, got ${options.threads}`);
    }
    const module =
      options.module instanceof URL
        ? options.module.href
        : options.module.startsWith('file:')
          ? options.module
          : pathToFileURL(options.module).href;
    for (let i = 0; i < this.threads; i++) {
      const worker = new Worker(new URL('./worker-entry.ts', import.meta.url), {
        workerData: { module, exportName: options.exportName ?? 'default' },
      });
      const slot: Slot = { worker, inFlight: 0, calls: new Map() };
      worker.on('message', (msg: { id: number; ok: boolean; value?: unknown; error?: WorkerError }) => {
        const call = slot.calls.get(msg.id);
        if (call === undefined) return;
        slot.calls.delete(msg.id);
        slot.inFlight--;
        if (msg.ok) call.resolve(msg.value);
        else call.reject(rebuildError(msg.error!));
      });
      const fail = (err: unknown): void => {
        this.#failure ??= err;
        for (const call of slot.calls.values()) call.reject(err);
        slot.calls.clear();
        slot.inFlight = 0;
      };
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (!this.#closed) fail(new Error(`a WorkerPool thread exited with code ${code}`));
      });
      this.#slots.push(slot);
    }
  }

  /** Runs the task for `payload` on the least busy thread. */
  run(payload: unknown): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error('WorkerPool is closed'));
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    let slot = this.#slots[0]!;
    for (const s of this.#slots) if (s.inFlight < slot.inFlight) slot = s;
    const id = this.#nextId++;
    slot.inFlight++;
    return new Promise((resolve, reject) => {
      slot.calls.set(id, { resolve, reject });
      slot.worker.postMessage({ id, payload });
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
    for (const s of this.#slots) {
      for (const call of s.calls.values())
        call.reject(new Error('WorkerPool closed before the task finished'));
    }
  }
}

interface WorkerError {
  name: string;
  message: string;
  stack: string | undefined;
}

function rebuildError(e: WorkerError): Error {
  const err = new Error(e.message);
  err.name = e.name;
  if (e.stack !== undefined) err.stack = e.stack;
  return err;
}

function isRecord(payload: unknown): payload is ConsumedRecord {
  const r = payload as ConsumedRecord | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.topic === 'string' &&
    typeof r.partition === 'number' &&
    typeof r.offset === 'number'
  );
}

export interface RunTaskInWorkersOptions<T> {
  /** Bound on queued work (see `RunTaskConcurrently`). */
  maxPendingFutures: number;
  /** Tasks in flight at once over all threads. Default: twice the pool's threads. */
  concurrency?: number;
  /** What is sent to the thread. Default: the message payload. */
  select?: (message: Message<T>) => unknown;
}

/**
 * Runs a task on worker threads (`WorkerPool`), bounded, with results passed on in submission order (spec §5:
 * `RunTaskInThreads` with real threads). The pool is not owned: one pool usually serves every chain the factory
 * builds, and the factory's `shutdown` closes it.
 */
export class RunTaskInWorkers<T, R> extends RunTaskConcurrently<T, R> {
  constructor(pool: WorkerPool, options: RunTaskInWorkersOptions<T>, next: ProcessingStrategy<R>) {
    const select = options.select ?? ((m: Message<T>) => m.payload);
    super(
      async (message) => {
        try {
          return (await pool.run(select(message))) as R;
        } catch (err) {
          if (err instanceof Error && err.name === 'InvalidMessage' && isRecord(message.payload)) {
            throw new InvalidMessage(message.payload, err.message, { cause: err, record: message.payload });
          }
          throw err;
        }
      },
      { concurrency: options.concurrency ?? pool.threads * 2, maxPendingFutures: options.maxPendingFutures },
      next,
    );
  }
}
