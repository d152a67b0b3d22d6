/**
 * The script each `WorkerPool` thread runs: loads the task module named in `workerData`, then answers every
 * `{ id, payload }` with `{ id, ok, value }` or `{ id, ok: false, error }`. Plain TypeScript (types only), so
 * Node runs it with or without a TypeScript loader.
 */
import { parentPort, workerData } from 'node:worker_threads';

interface Data {
  module: string;
  exportName: string;
}

const data = workerData as Data;
const mod = (await import(data.module)) as Record<string, unknown>;
const fn = mod[data.exportName];
if (typeof fn !== 'function') {
  throw new Error(
    `worker task module ${data.module} has no function export "${data.exportName}"; export the task function under that name`,
  );
}
const task = fn as (payload: unknown) => unknown;
const port = parentPort!;
port.on('message', (msg: { id: number; payload: unknown }) => {
  let result: unknown;
  try {
    result = task(msg.payload);
  } catch (err) {
    port.postMessage({ id: msg.id, ok: false, error: describe(err) });
    return;
  }
  if (result instanceof Promise) {
    result.then(
      (value: unknown) => port.postMessage({ id: msg.id, ok: true, value }),
      (err: unknown) => port.postMessage({ id: msg.id, ok: false, error: describe(err) }),
    );
  } else {
    port.postMessage({ id: msg.id, ok: true, value: result });
  }
});

function describe(err: unknown): { name: string; message: string; stack: string | undefined } {
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack };
  return { name: 'Error', message: String(err), stack: undefined };
}
