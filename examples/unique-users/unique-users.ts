/**
 * Count unique users per time batch from JSON frames: the job of the seed consumer
 * (shared/seeds/002_095a9d49fa0a5169.txt), on sluice's batching consumer, on any transport (the embedded broker by
 * default). See README.md beside this file.
 *
 *   node --import tsx examples/unique-users/unique-users.ts produce [--count N] [--users N]
 *   node --import tsx examples/unique-users/unique-users.ts count [--batch-ms MS] [--idle-exit-ms MS]
 *
 * Common options: --broker SPEC (default $SLUICE_BROKER, else the embedded file ./.sluice/broker.db),
 * --topic NAME (default `frames`), --group NAME (default `unique-users`).
 */
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { BatchingConsumer, type BatchMetrics, type Worker } from '../../src/records/index.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import { gracefulShutdown } from '../../src/runtime/shutdown.ts';
import { openTransport } from '../../src/transport/open.ts';
import type { ConsumedRecord, Transport } from '../../src/transport/types.ts';

/** A frame as the seed reads it: `ts` in seconds since the epoch, `uid` a user id. */
export interface Frame {
  ts: number;
  uid: string;
}

/** What one flushed batch reports (one JSON line on stdout). */
export interface BatchReport {
  frames: number;
  uniqueUsers: number;
  /** Earliest and latest frame timestamp in the batch (seconds). */
  firstTs: number;
  lastTs: number;
}

/**
 * The seed's worker: `processMessage` extracts `ts` and `uid` (frames without them are skipped), `flushBatch`
 * counts the distinct users of the batch.
 */
export class UniqueUsersWorker implements Worker<Frame> {
  readonly reports: BatchReport[] = [];
  malformed = 0;
  constructor(private readonly onReport: (r: BatchReport) => void = () => undefined) {}

  processMessage(record: ConsumedRecord): Frame | null {
    let frame: unknown;
    try {
      frame = JSON.parse(record.value?.toString('utf8') ?? 'null');
    } catch {
      this.malformed++;
      return null;
    }
    const f = frame as Partial<Frame> | null;
    if (typeof f?.uid !== 'string' || typeof f.ts !== 'number') {
      this.malformed++;
      return null;
    }
    return { ts: f.ts, uid: f.uid };
  }

  flushBatch(batch: Frame[]): void {
    const users = new Set<string>();
    let firstTs = Number.POSITIVE_INFINITY;
    let lastTs = Number.NEGATIVE_INFINITY;
    for (const f of batch) {
      users.add(f.uid);
      if (f.ts < firstTs) firstTs = f.ts;
      if (f.ts > lastTs) lastTs = f.ts;
    }
    const report = { frames: batch.length, uniqueUsers: users.size, firstTs, lastTs };
    this.reports.push(report);
    this.onReport(report);
  }

  shutdown(): void {}
}

/** Produces `count` frames from `users` distinct users, one second of `ts` per 100 frames. */
export async function produceFrames(
  transport: Transport,
  options: { topic: string; count: number; users: number; startTs?: number },
): Promise<void> {
  await transport.createTopic({ name: options.topic }, { ifNotExists: true });
  const producer = transport.producer();
  const start = options.startTs ?? Math.floor(Date.now() / 1000);
  for (let sent = 0; sent < options.count; sent += 1000) {
    const n = Math.min(1000, options.count - sent);
    await producer.send(
      Array.from({ length: n }, (_, i) => {
        const k = sent + i;
        const frame: Frame = { ts: start + Math.floor(k / 100), uid: `user-${(k * 7919) % options.users}` };
        return { topic: options.topic, value: JSON.stringify(frame) };
      }),
    );
  }
  await producer.close();
}

export interface CountOptions {
  topic: string;
  group: string;
  batchMs: number;
  /** Stop after this long without a new frame (0: run until stopped). */
  idleExitMs: number;
  signal?: AbortSignal;
  logger?: Logger;
  onReport?: (r: BatchReport) => void;
}

/** Runs the batching consumer until stopped (or idle); resolves with the worker (its reports) and the consumer. */
export async function countUniqueUsers(
  transport: Transport,
  options: CountOptions,
): Promise<{ worker: UniqueUsersWorker; consumer: BatchingConsumer<Frame> }> {
  await transport.createTopic({ name: options.topic }, { ifNotExists: true });
  const worker = new UniqueUsersWorker(options.onReport);
  let lastActivity = Date.now();
  const consumer = new BatchingConsumer<Frame>({
    transport,
    groupId: options.group,
    topics: [options.topic],
    worker,
    maxBatchSize: 1_000_000,
    maxBatchTimeMs: options.batchMs,
    pollTimeoutMs: 200,
    logSummaryIntervalMs: 60_000,
    onBatch: (m: BatchMetrics) => {
      lastActivity = Date.now();
      const fields = {
        frames: m.messages,
        batchSize: m.batchSize,
        processMsPerFrame: Number(m.processTimePerMessageMs.toFixed(4)),
        flushMs: Number(m.flushTimeMs.toFixed(3)),
        flushMsPerFrame: Number(m.flushTimePerMessageMs.toFixed(4)),
        framesPerSecond: Math.round(m.throughput),
      };
      options.logger?.info(
        fields,
        `batch: ${Object.entries(fields)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')}`,
      );
    },
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  let idleTimer: NodeJS.Timeout | undefined;
  if (options.idleExitMs > 0) {
    let seen = -1;
    idleTimer = setInterval(() => {
      const pending = consumer.pendingMessages + consumer.totals.messages;
      if (pending !== seen) {
        seen = pending;
        lastActivity = Date.now();
      } else if (Date.now() - lastActivity >= options.idleExitMs && consumer.pendingMessages === 0) {
        consumer.stop();
      }
    }, 50);
  }
  try {
    await consumer.run();
  } finally {
    clearInterval(idleTimer);
  }
  return { worker, consumer };
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      broker: { type: 'string' },
      topic: { type: 'string', default: 'frames' },
      group: { type: 'string', default: 'unique-users' },
      count: { type: 'string', default: '10000' },
      users: { type: 'string', default: '1000' },
      'batch-ms': { type: 'string', default: '5000' },
      'idle-exit-ms': { type: 'string', default: '0' },
    },
  });
  const logger = createLogger({ name: 'unique-users' });
  const transport = await openTransport({
    ...(values.broker === undefined ? {} : { broker: values.broker }),
    clientId: 'unique-users',
  });
  try {
    if (positionals[0] === 'produce') {
      await produceFrames(transport, {
        topic: values.topic,
        count: Number(values.count),
        users: Number(values.users),
      });
      logger.info({ topic: values.topic, frames: Number(values.count) }, 'frames produced');
    } else if (positionals[0] === 'count') {
      const stop = gracefulShutdown({ logger });
      try {
        await countUniqueUsers(transport, {
          topic: values.topic,
          group: values.group,
          batchMs: Number(values['batch-ms']),
          idleExitMs: Number(values['idle-exit-ms']),
          signal: stop.signal,
          logger,
          onReport: (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
        });
      } finally {
        stop.dispose();
      }
    } else {
      process.stderr.write('usage: unique-users.ts produce|count [options] (see the file header)\n');
      process.exitCode = 2;
    }
  } finally {
    await transport.close();
  }
}

if (import.meta.main) await main();
