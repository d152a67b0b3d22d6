/**
 * Micro-benchmark of the RabbitMQ work-queue API (src/transport/rabbitmq/work-queue.ts) against raw amqplib doing
 * the same work: publish `records` persistent, mandatory messages of `size` bytes to a durable classic queue in
 * batches of `batch` (all of a batch published, then all its confirms awaited), then consume them with a prefetch of
 * `prefetch` and manual acks (one multiple ack per `prefetch / 4` messages on both sides: sluice polls with
 * `minRecords: prefetch / 4` and calls `ackAll` after each poll).
 * Each side runs `rounds` times, alternating, on fresh queues; the best round counts. Not wired into `npm run bench`.
 *
 * ```ts
 * const r = await benchRabbitWorkQueue(url, { records: 20_000, size: 1024 });
 * // r.raw.publish, r.sluice.publish … in records/s; r.ratio.publish = sluice / raw
 * ```
 */
import { randomBytes } from 'node:crypto';
import amqp, { type ConsumeMessage } from 'amqplib';
import { openRabbitMqWorkQueues } from '../../src/transport/rabbitmq/index.ts';

export interface RabbitWorkQueueBenchOptions {
  records: number;
  /** Body size in bytes. */
  size: number;
  /** Messages per publish batch (confirms awaited per batch). Default 1000. */
  batch?: number;
  /** Consumer prefetch. Default 1000. */
  prefetch?: number;
  /** Runs per side (best counts). Default 2. */
  rounds?: number;
}

export interface Rates {
  /** records/s, publish with confirms */
  publish: number;
  /** records/s, consume with acks */
  consume: number;
}

/** Client CPU (user + system) in microseconds per record: less sensitive to a busy machine than the rates. */
export interface CpuCost {
  publish: number;
  consume: number;
}

export interface RabbitWorkQueueBenchResult {
  records: number;
  size: number;
  batch: number;
  prefetch: number;
  raw: Rates;
  sluice: Rates;
  /** sluice / raw */
  ratio: Rates;
  /** best (lowest) client CPU per record of each side */
  cpu: { raw: CpuCost; sluice: CpuCost };
}

const rate = (n: number, ms: number): number => Math.round((n * 1000) / Math.max(ms, 0.001));
const cpuSince = (c0: NodeJS.CpuUsage, n: number): number => {
  const d = process.cpuUsage(c0);
  return Math.round(((d.user + d.system) / n) * 100) / 100;
};

async function rawRound(url: string, queue: string, body: Buffer, o: Required<RabbitWorkQueueBenchOptions>) {
  const conn = await amqp.connect(url);
  try {
    const admin = await conn.createChannel();
    await admin.assertQueue(queue, { durable: true });
    // the channel opens inside the timed part, as sluice's opens with its first publish
    let t0 = performance.now();
    let c0 = process.cpuUsage();
    const ch = await conn.createConfirmChannel();
    for (let done = 0; done < o.records; ) {
      const n = Math.min(o.batch, o.records - done);
      let pending = n;
      let failed: unknown;
      await new Promise<void>((resolve, reject) => {
        let i = 0;
        const sendSome = (): void => {
          for (; i < n; ) {
            i++;
            const ok = ch.publish('', queue, body, { mandatory: true, persistent: true }, (err: unknown) => {
              if (err) failed ??= err;
              if (--pending > 0) return;
              if (failed) reject(failed);
              else resolve();
            });
            if (!ok && i < n) {
              ch.once('drain', sendSome);
              return;
            }
          }
        };
        sendSome();
      });
      done += n;
    }
    const publishMs = performance.now() - t0;
    const publishCpu = cpuSince(c0, o.records);

    await ch.close();
    const cch = await conn.createChannel();
    await cch.prefetch(o.prefetch);
    const ackEvery = Math.max(1, Math.floor(o.prefetch / 4));
    t0 = performance.now();
    c0 = process.cpuUsage();
    await new Promise<void>((resolve) => {
      let n = 0;
      void cch.consume(
        queue,
        (msg: ConsumeMessage | null) => {
          if (msg === null) return;
          n++;
          if (n % ackEvery === 0 || n === o.records) cch.ack(msg, true);
          if (n === o.records) resolve();
        },
        { noAck: false },
      );
    });
    const consumeMs = performance.now() - t0;
    const consumeCpu = cpuSince(c0, o.records);
    await cch.close();
    await admin.deleteQueue(queue);
    await admin.close();
    return {
      publish: rate(o.records, publishMs),
      consume: rate(o.records, consumeMs),
      cpu: { publish: publishCpu, consume: consumeCpu },
    };
  } finally {
    await conn.close().catch(() => undefined);
  }
}

async function sluiceRound(
  url: string,
  queue: string,
  body: Buffer,
  o: Required<RabbitWorkQueueBenchOptions>,
) {
  const wq = await openRabbitMqWorkQueues({ url, name: 'sluice-bench-workqueue' });
  try {
    await wq.declareQueue(queue, { type: 'classic' });
    const batch = Array.from({ length: o.batch }, () => ({ exchange: '', routingKey: queue, body }));
    let t0 = performance.now();
    let c0 = process.cpuUsage();
    for (let done = 0; done < o.records; ) {
      const n = Math.min(o.batch, o.records - done);
      await wq.publishBatch(n === o.batch ? batch : batch.slice(0, n));
      done += n;
    }
    const publishMs = performance.now() - t0;
    const publishCpu = cpuSince(c0, o.records);

    const c = await wq.consume(queue, { prefetch: o.prefetch });
    // the same ack batching as the raw side: one multiple ack per prefetch / 4 messages (the tail: after 50 ms)
    const ackEvery = Math.max(1, Math.floor(o.prefetch / 4));
    t0 = performance.now();
    c0 = process.cpuUsage();
    for (let n = 0; n < o.records; ) {
      n += (await c.poll({ maxRecords: o.prefetch, minRecords: ackEvery, timeoutMs: 50 })).length;
      c.ackAll();
    }
    const consumeMs = performance.now() - t0;
    const consumeCpu = cpuSince(c0, o.records);
    await c.close();
    await wq.deleteQueue(queue);
    return {
      publish: rate(o.records, publishMs),
      consume: rate(o.records, consumeMs),
      cpu: { publish: publishCpu, consume: consumeCpu },
    };
  } finally {
    await wq.close();
  }
}

export async function benchRabbitWorkQueue(
  url: string,
  options: RabbitWorkQueueBenchOptions,
): Promise<RabbitWorkQueueBenchResult> {
  const o: Required<RabbitWorkQueueBenchOptions> = {
    batch: 1000,
    prefetch: 1000,
    rounds: 2,
    ...options,
  };
  const body = randomBytes(o.size);
  const name = (side: string, i: number): string => `bench-wq-${side}-${i}-${randomBytes(4).toString('hex')}`;
  // warm-up: connections, JIT, the broker's queue processes
  const warm = { ...o, records: Math.min(o.records, 2000) };
  await rawRound(url, name('warm-raw', 0), body, warm);
  await sluiceRound(url, name('warm-sluice', 0), body, warm);
  const best = { raw: { publish: 0, consume: 0 }, sluice: { publish: 0, consume: 0 } };
  const cpu = {
    raw: { publish: Infinity, consume: Infinity },
    sluice: { publish: Infinity, consume: Infinity },
  };
  for (let i = 0; i < o.rounds; i++) {
    const r = await rawRound(url, name('raw', i), body, o);
    const s = await sluiceRound(url, name('sluice', i), body, o);
    best.raw.publish = Math.max(best.raw.publish, r.publish);
    best.raw.consume = Math.max(best.raw.consume, r.consume);
    best.sluice.publish = Math.max(best.sluice.publish, s.publish);
    best.sluice.consume = Math.max(best.sluice.consume, s.consume);
    for (const [side, x] of [
      ['raw', r],
      ['sluice', s],
    ] as const) {
      cpu[side].publish = Math.min(cpu[side].publish, x.cpu.publish);
      cpu[side].consume = Math.min(cpu[side].consume, x.cpu.consume);
    }
  }
  const ratio = (a: number, b: number): number => Math.round((a / Math.max(b, 1)) * 100) / 100;
  return {
    records: o.records,
    size: o.size,
    batch: o.batch,
    prefetch: o.prefetch,
    ...best,
    ratio: {
      publish: ratio(best.sluice.publish, best.raw.publish),
      consume: ratio(best.sluice.consume, best.raw.consume),
    },
    cpu,
  };
}
