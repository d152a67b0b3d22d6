/**
 * Micro-benchmark of the RabbitMQ work-queue API (src/transport/rabbitmq/work-queue.ts) against raw amqplib doing
 * the same work: publish `records` persistent, mandatory messages of `size` bytes to a durable classic queue in
 * batches of `batch` (all of a batch published, then all its confirms awaited), then consume them with a prefetch of
 * `prefetch` and manual acks (one multiple ack per poll for sluice; one per `prefetch / 4` messages for raw).
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

export interface RabbitWorkQueueBenchResult {
  records: number;
  size: number;
  batch: number;
  prefetch: number;
  raw: Rates;
  sluice: Rates;
  /** sluice / raw */
  ratio: Rates;
}

const rate = (n: number, ms: number): number => Math.round((n * 1000) / Math.max(ms, 0.001));

async function rawRound(url: string, queue: string, body: Buffer, o: Required<RabbitWorkQueueBenchOptions>) {
  const conn = await amqp.connect(url);
  try {
    const admin = await conn.createChannel();
    await admin.assertQueue(queue, { durable: true });
    const ch = await conn.createConfirmChannel();
    let t0 = performance.now();
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
              if (--pending === 0) (failed ? reject(failed) : resolve)();
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

    await ch.close();
    const cch = await conn.createChannel();
    await cch.prefetch(o.prefetch);
    const ackEvery = Math.max(1, Math.floor(o.prefetch / 4));
    t0 = performance.now();
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
    await cch.close();
    await admin.deleteQueue(queue);
    await admin.close();
    return { publish: rate(o.records, publishMs), consume: rate(o.records, consumeMs) };
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
    for (let done = 0; done < o.records; ) {
      const n = Math.min(o.batch, o.records - done);
      await wq.publishBatch(n === o.batch ? batch : batch.slice(0, n));
      done += n;
    }
    const publishMs = performance.now() - t0;

    const c = await wq.consume(queue, { prefetch: o.prefetch });
    t0 = performance.now();
    for (let n = 0; n < o.records; ) {
      n += (await c.poll({ maxRecords: o.prefetch, minRecords: 1, timeoutMs: 10_000 })).length;
      c.ackAll();
    }
    const consumeMs = performance.now() - t0;
    await c.close();
    await wq.deleteQueue(queue);
    return { publish: rate(o.records, publishMs), consume: rate(o.records, consumeMs) };
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
  for (let i = 0; i < o.rounds; i++) {
    const r = await rawRound(url, name('raw', i), body, o);
    const s = await sluiceRound(url, name('sluice', i), body, o);
    best.raw.publish = Math.max(best.raw.publish, r.publish);
    best.raw.consume = Math.max(best.raw.consume, r.consume);
    best.sluice.publish = Math.max(best.sluice.publish, s.publish);
    best.sluice.consume = Math.max(best.sluice.consume, s.consume);
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
  };
}
