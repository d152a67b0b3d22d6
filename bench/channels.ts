/**
 * `npm run bench -- channels [--records=N] [--size=BYTES] [--batch=N] [--pypz-records=N] [--only=kafka,rabbitmq]`
 *
 * Records per second through pypz-compatible channels, in two phases (write all, then read all), each against a
 * baseline measured in the same run:
 * - Kafka: `KafkaChannelWriter` / `KafkaChannelReader` vs the raw `@platformatic/kafka` producer (same batches,
 *   idempotent, acks=all like sluice's transport) and consumer; pypz-kafka-io writer → reader when the venv exists;
 * - RabbitMQ: `RMQChannelWriter` / `RMQChannelReader` (prefetch = batch) vs raw amqplib (confirm channel, same
 *   batches; manual acks) from bench/lib/rabbitmq-workqueue.ts; pypz-rmq-io writer → reader when the venv exists.
 * Brokers: SLUICE_KAFKA_BOOTSTRAP / SLUICE_RABBITMQ_URL when set, else started (and stopped) by the repo scripts.
 * Target: channel ≥ 0.9× the raw client.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Producer as RawProducer } from '@platformatic/kafka';
import { pino } from 'pino';
import {
  type ChannelReader,
  type ChannelWriter,
  finishReader,
  finishWriter,
  KafkaChannelReader,
  KafkaChannelWriter,
  RMQChannelReader,
  RMQChannelWriter,
  startReader,
  startWriter,
} from '../src/channels/index.ts';
import { openKafkaTransport } from '../src/transport/kafka/index.ts';
import { ROOT, withKafkaBroker } from './lib/kafka-broker.ts';
import { benchRabbitWorkQueue } from './lib/rabbitmq-workqueue.ts';
import { rawEarliestConsumer } from './lib/raw-kafka.ts';

interface Options {
  records: number;
  size: number;
  batch: number;
  pypzRecords: number;
  only: Set<string>;
}

function parse(args: string[]): Options {
  const o: Options = {
    records: 50_000,
    size: 1024,
    batch: 1000,
    pypzRecords: 5000,
    only: new Set(['kafka', 'rabbitmq']),
  };
  for (const a of args) {
    const [k, v = ''] = a.replace(/^--/, '').split('=');
    if (k === 'records') o.records = Number(v);
    else if (k === 'size') o.size = Number(v);
    else if (k === 'batch') o.batch = Number(v);
    else if (k === 'pypz-records') o.pypzRecords = Number(v);
    else if (k === 'only') o.only = new Set(v.split(','));
    else throw new Error(`unknown option ${a}; see bench/channels.ts`);
  }
  return o;
}

const log = (m: string): void => {
  process.stderr.write(`${m}\n`);
};
const rate = (n: number, ms: number): number => Math.round((n * 1000) / Math.max(1, ms));
const logger = pino({ level: 'silent' });
const PYTHON = join(ROOT, '.infra/pypz-venv/bin/python');
const PEER = join(ROOT, 'test/integration/python/pypz_peer.py');

/** Writes `records` in batches, then reads them all: records/s of each phase. */
async function channelPhases(
  reader: ChannelReader<Buffer>,
  writer: ChannelWriter<Buffer>,
  o: Options,
): Promise<{ write: number; read: number }> {
  // the reader's resources first (the writer waits for them); the reader itself opens after the write phase, so
  // its read phase is measured from the broker like the raw consumer's, not from what it buffered meanwhile
  await reader.invokeResourceCreation();
  await startWriter(writer, { portOpenTimeoutMs: 60_000 });
  const value = randomBytes(o.size);
  const batch = Array.from({ length: o.batch }, () => value);
  let t = performance.now();
  for (let sent = 0; sent < o.records; sent += o.batch) {
    await writer.invokeWriteRecords(sent + o.batch <= o.records ? batch : batch.slice(0, o.records - sent));
  }
  await finishWriter(writer);
  const write = rate(o.records, performance.now() - t);
  await startReader(reader, { writerWaitTimeoutMs: 60_000 });
  t = performance.now();
  let got = 0;
  while (got < o.records) {
    got += (await reader.invokeReadRecords()).length;
    await reader.invokeCommitCurrentReadOffset();
  }
  const read = rate(o.records, performance.now() - t);
  await finishReader(reader);
  return { write, read };
}

/** pypz writer → pypz reader through the peer: records/s end to end (reader start to reader exit). */
async function pypzRun(
  location: string[],
  broker: 'kafka' | 'rmq',
  records: number,
  batch: number,
): Promise<number | undefined> {
  if (!existsSync(PYTHON)) {
    log('pypz: venv missing (bash scripts/pypz-venv.sh), skipped in this run');
    return undefined;
  }
  const ch = `bench.pypz-${randomUUID().slice(0, 8)}.input_port`;
  const run = (args: string[]) =>
    new Promise<number>((res, rej) => {
      const c = spawn(
        PYTHON,
        [PEER, '--broker', broker, ...location, '--channel-name', ch, '--timeout-s', '600', ...args],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let err = '';
      c.stderr.on('data', (d) => {
        err = (err + d).slice(-4000);
      });
      c.on('close', (code) =>
        code === 0 ? res(performance.now()) : rej(new Error(`pypz peer exited ${code}: ${err}`)),
      );
    });
  const t = performance.now();
  const reader = run(['--role', 'reader', '--context-name', ch]);
  await run(['--role', 'writer', '--count', String(records), '--batch-size', String(batch)]);
  const end = await reader;
  return rate(records, end - t);
}

const fmt = (n: number | undefined): string => (n === undefined ? '—' : n.toLocaleString('en-US'));
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;

async function benchKafka(o: Options): Promise<void> {
  await withKafkaBroker(resolve(ROOT, '.infra/kafka-bench-channels'), async ({ bootstrap }) => {
    const transport = await openKafkaTransport({ bootstrapServers: [bootstrap], clientId: 'bench-channels' });
    try {
      // raw client baseline, same batches
      const topic = `bench-raw-${randomUUID().slice(0, 8)}`;
      await transport.createTopic({ name: topic, partitions: 1 });
      const value = randomBytes(o.size);
      const producer = new RawProducer({
        clientId: 'bench-raw',
        bootstrapBrokers: [bootstrap],
        idempotent: true,
      });
      let t = performance.now();
      for (let sent = 0; sent < o.records; sent += o.batch) {
        const n = Math.min(o.batch, o.records - sent);
        await producer.send({
          messages: Array.from({ length: n }, () => ({ topic, partition: 0, key: Buffer.from('0'), value })),
        });
      }
      const rawWrite = rate(o.records, performance.now() - t);
      await producer.close();
      const { consumer, stream } = await rawEarliestConsumer(bootstrap, topic);
      t = performance.now();
      await new Promise<void>((res, rej) => {
        let n = 0;
        stream.on('error', rej);
        stream.on('data', () => {
          if (++n === o.records) res();
        });
      });
      const rawRead = rate(o.records, performance.now() - t);
      await stream.close();
      await consumer.close(true);

      const ch = `bench.kafka-${randomUUID().slice(0, 8)}.input_port`;
      const sluice = await channelPhases(
        new KafkaChannelReader<Buffer>({
          channelName: ch,
          contextName: ch,
          transport,
          logger,
          maxPollRecords: o.batch,
        }),
        new KafkaChannelWriter<Buffer>({
          channelName: ch,
          contextName: 'bench.output_port',
          transport,
          logger,
        }),
        o,
      );
      const pypz = await pypzRun(['--bootstrap', bootstrap], 'kafka', o.pypzRecords, Math.min(o.batch, 1000));
      console.log(
        `\nKafka channel, ${fmt(o.records)} × ${o.size} B records, batches of ${o.batch} (records/s)`,
      );
      console.log('| | write | read |\n|---|---|---|');
      console.log(`| sluice KafkaChannelWriter/Reader | ${fmt(sluice.write)} | ${fmt(sluice.read)} |`);
      console.log(`| raw @platformatic/kafka | ${fmt(rawWrite)} | ${fmt(rawRead)} |`);
      console.log(
        `| ratio sluice ÷ raw (target ≥ 0.9×) | ${ratio(sluice.write, rawWrite)} | ${ratio(sluice.read, rawRead)} |`,
      );
      if (pypz !== undefined) {
        console.log(
          `| pypz-kafka-io writer → reader, end to end (${fmt(o.pypzRecords)} records) | ${fmt(pypz)} | |`,
        );
        console.log(
          `| sluice (slower phase) ÷ pypz | ${ratio(Math.min(sluice.write, sluice.read), pypz)} | |`,
        );
      }
    } finally {
      await transport.close();
    }
  });
}

async function withRabbit<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const given = process.env.SLUICE_RABBITMQ_URL?.trim();
  if (given) return fn(given);
  const sh = resolve(ROOT, 'scripts/rabbitmq.sh');
  const env = { ...process.env, SLUICE_RABBITMQ_STATE_DIR: resolve(ROOT, '.infra/rabbitmq-bench-channels') };
  execFileSync('bash', [sh, 'install'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  log('starting RabbitMQ for the benchmark (scripts/rabbitmq.sh start)…');
  const url = execFileSync('bash', [sh, 'start'], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    .toString()
    .trim();
  try {
    return await fn(url);
  } finally {
    execFileSync('bash', [sh, 'stop'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

async function benchRabbit(o: Options): Promise<void> {
  await withRabbit(async (url) => {
    const raw = await benchRabbitWorkQueue(url, {
      records: o.records,
      size: o.size,
      batch: o.batch,
      prefetch: o.batch,
      rounds: 1,
    });
    const ch = `bench.rmq-${randomUUID().slice(0, 8)}.input_port`;
    const sluice = await channelPhases(
      new RMQChannelReader<Buffer>({
        channelName: ch,
        contextName: ch,
        url,
        logger,
        maxPollRecords: o.batch,
      }),
      new RMQChannelWriter<Buffer>({ channelName: ch, contextName: 'bench.output_port', url, logger }),
      o,
    );
    const pypz = await pypzRun(['--url', url], 'rmq', o.pypzRecords, Math.min(o.batch, 1000));
    console.log(
      `\nRabbitMQ channel, ${fmt(o.records)} × ${o.size} B records, batches/prefetch ${o.batch} (records/s)`,
    );
    console.log('| | write | read |\n|---|---|---|');
    console.log(`| sluice RMQChannelWriter/Reader | ${fmt(sluice.write)} | ${fmt(sluice.read)} |`);
    console.log(
      `| raw amqplib (confirms, manual acks) | ${fmt(raw.raw.publish)} | ${fmt(raw.raw.consume)} |`,
    );
    console.log(
      `| ratio sluice ÷ raw (target ≥ 0.9×) | ${ratio(sluice.write, raw.raw.publish)} | ${ratio(sluice.read, raw.raw.consume)} |`,
    );
    if (pypz !== undefined) {
      console.log(
        `| pypz-rmq-io writer → reader, end to end (${fmt(o.pypzRecords)} records) | ${fmt(pypz)} | |`,
      );
      console.log(`| sluice (slower phase) ÷ pypz | ${ratio(Math.min(sluice.write, sluice.read), pypz)} | |`);
    }
  });
}

export async function runChannelsBench(args: string[]): Promise<void> {
  const o = parse(args);
  console.log(`bench channels — ${new Date().toISOString()}, node ${process.version}`);
  if (o.only.has('kafka')) await benchKafka(o);
  if (o.only.has('rabbitmq')) await benchRabbit(o);
}
