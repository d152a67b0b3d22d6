import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Producer } from '../transport/types.ts';

/**
 * OpenMSIStream-compatible heartbeats: key `<programId>_heartbeat`, value JSON with a UTC ISO-8601 timestamp
 * (microsecond precision, `+00:00`) and counters that cover the interval since the previous heartbeat. Byte
 * counters count key + value bytes exactly (upstream approximates).
 */

export const HEARTBEAT_COUNTERS = [
  'n_messages_read',
  'n_bytes_read',
  'n_messages_processed',
  'n_bytes_processed',
  'n_messages_produced',
  'n_bytes_produced',
] as const;
export type HeartbeatCounter = (typeof HEARTBEAT_COUNTERS)[number];

/** Which counters each kind of program reports, as upstream. */
export const PROGRAM_COUNTERS = {
  upload: ['n_messages_produced', 'n_bytes_produced'],
  processor: ['n_messages_read', 'n_messages_processed', 'n_bytes_read', 'n_bytes_processed'],
  reproducer: [
    'n_messages_read',
    'n_messages_processed',
    'n_bytes_read',
    'n_bytes_processed',
    'n_messages_produced',
    'n_bytes_produced',
  ],
} as const satisfies Record<string, readonly HeartbeatCounter[]>;

export const DEFAULT_HEARTBEAT_INTERVAL_SECS = 900;

/** `2026-03-21T12:00:00.123000+00:00`: Python's `datetime.now(timezone.utc).isoformat()` shape. */
export function pythonUtcIso(date: Date = new Date()): string {
  return `${date.toISOString().slice(0, 23)}000+00:00`;
}

/** A program id that stays the same across restarts: the program name and a hash of the directory it serves. */
export function stableProgramId(programName: string, directory: string): string {
  return `${programName}_${createHash('sha256').update(directory).digest('hex').slice(0, 12)}`;
}

export interface HeartbeatOptions {
  producer: Producer;
  topic: string;
  programId: string;
  intervalSecs?: number;
  counters: readonly HeartbeatCounter[];
  logger?: Logger;
}

export class Heartbeats {
  private readonly options: HeartbeatOptions;
  private readonly counts = new Map<HeartbeatCounter, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(options: HeartbeatOptions) {
    this.options = options;
    for (const c of options.counters) this.counts.set(c, 0);
  }

  add(counter: HeartbeatCounter, n = 1): void {
    const v = this.counts.get(counter);
    if (v !== undefined) this.counts.set(counter, v + n);
  }

  /** The value the next heartbeat would carry (without resetting the counters). */
  snapshot(now: Date = new Date()): Record<string, string | number> {
    return { timestamp: pythonUtcIso(now), ...Object.fromEntries(this.counts) };
  }

  /** Sends one heartbeat now and resets the counters. Best effort: a failure is logged, never thrown. */
  async beat(): Promise<void> {
    const value = JSON.stringify(this.snapshot());
    for (const c of this.counts.keys()) this.counts.set(c, 0);
    try {
      await this.options.producer.send({
        topic: this.options.topic,
        key: `${this.options.programId}_heartbeat`,
        value,
      });
    } catch (err) {
      this.options.logger?.warn({ err, topic: this.options.topic }, 'could not send a heartbeat');
    }
  }

  /** First heartbeat now, then one per interval. */
  start(): void {
    void this.beat();
    const ms = (this.options.intervalSecs ?? DEFAULT_HEARTBEAT_INTERVAL_SECS) * 1000;
    this.timer = setInterval(() => void this.beat(), ms);
    this.timer.unref();
  }

  /** Stops the timer and sends the final heartbeat. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.beat();
  }
}
