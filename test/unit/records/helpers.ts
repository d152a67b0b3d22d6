import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import { type Logger, pino } from 'pino';
import {
  type Committable,
  FILTERED,
  type Message,
  type MessageOf,
  MessageRejected,
  type ProcessingStrategy,
} from '../../../src/records/index.ts';
import { committable } from '../../../src/records/strategies/util.ts';
import type { EmbeddedTransport } from '../../../src/transport/embedded/embedded.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';

/** A fresh embedded broker in a temp dir, closed and deleted after the test. */
export async function embedded(
  t: TestContext,
  options: { sessionTimeoutMs?: number } = {},
): Promise<EmbeddedTransport> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-records-'));
  const tr = await openEmbeddedTransport({ path: join(dir, 'broker.db'), ...options });
  t.after(async () => {
    await tr.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return tr;
}

/** A pino logger whose JSON lines are kept in `lines`. */
export function captureLogger(level: 'debug' | 'info' | 'silent' = 'info'): {
  logger: Logger;
  lines: Array<Record<string, unknown>>;
} {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

export const silent: Logger = pino({ level: 'silent' });

/** The committable `{ p: offset }` of partition `p` of topic `t`. */
export function at(offset: number, partition = 0, topic = 't'): Committable {
  return committable([{ topic, partition, offset }]);
}

export function msg<T>(payload: T, offset: number, partition = 0, timestamp = 0): Message<T> {
  return { payload, committable: at(offset, partition), timestamp };
}

/** A terminal step that records what it receives, and can be told to reject. */
export class Recorder<T> implements ProcessingStrategy<T> {
  submitted: Array<MessageOf<T>> = [];
  reject = false;
  polls = 0;
  closed = false;
  joined = false;
  terminated = false;

  submit(message: MessageOf<T>): void {
    if (this.reject) throw new MessageRejected();
    this.submitted.push(message);
  }
  poll(): void {
    this.polls++;
  }
  close(): void {
    this.closed = true;
  }
  async join(): Promise<void> {
    this.joined = true;
  }
  terminate(): void {
    this.terminated = true;
  }
  /** Payloads, with sentinels shown as 'FILTERED'. */
  payloads(): Array<T | 'FILTERED'> {
    return this.submitted.map((m) => (m.payload === FILTERED ? 'FILTERED' : (m.payload as T)));
  }
  /** Committables as plain `{ "<topic>/<partition>": offset }`. */
  offsets(): Array<Record<string, number>> {
    return this.submitted.map((m) => plain(m.committable));
  }
}

export function plain(c: Committable): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of c.values()) out[`${o.topic}/${o.partition}`] = o.offset;
  return out;
}
