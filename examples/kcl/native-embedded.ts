/**
 * KCL record processors natively on sluice's embedded broker (no server, no AWS): a two-partition topic stands in
 * for a two-shard Kinesis stream, a consumer group for the KCL application.
 *
 *   node_modules/.bin/node --import tsx examples/kcl/native-embedded.ts [--broker-file PATH] [--records N]
 *
 * Each run appends N records (default 10), then a KclWorker reads every shard to its end with one
 * SampleRecordProcessor per shard (the same class the multilang child runs) and stops gracefully: the processors'
 * shutdownRequested checkpoints, so the next run initializes each shard at its checkpoint and processes only the
 * new records. Prints one summary line per shard on stdout; the processors' record logs go to stderr.
 */
import { parseArgs } from 'node:util';
import { KclWorker } from '../../src/records/kcl/index.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import { DEFAULT_EMBEDDED_PATH, openEmbeddedTransport } from '../../src/transport/embedded/index.ts';
import { SampleRecordProcessor } from './sample-processor.ts';

const { values } = parseArgs({
  options: {
    'broker-file': { type: 'string', default: DEFAULT_EMBEDDED_PATH },
    records: { type: 'string', default: '10' },
  },
});
const stream = 'kcl-sample-stream';
const transport = await openEmbeddedTransport({ path: values['broker-file'] });
try {
  await transport.createTopic({ name: stream, partitions: 2 }, { ifNotExists: true });
  const producer = transport.producer();
  const count = Number(values.records);
  await producer.send(
    Array.from({ length: count }, (_, i) => ({
      topic: stream,
      key: `sensor-${i % 4}`,
      value: JSON.stringify({ reading: i, at: new Date().toISOString() }),
    })),
  );
  await producer.close();

  const seen = new Map<string, { initializedAt: string | null; records: number }>();
  const worker = new KclWorker({
    transport,
    streamName: stream,
    applicationName: 'kcl-sample-app',
    stopAtEnd: true,
    pollTimeoutMs: 200,
    logger: createLogger({ name: 'kcl-example', level: 'warn' }),
    processorFactory: (shard) => {
      const stats = { initializedAt: null as string | null, records: 0 };
      seen.set(shard.shardId, stats);
      const processor = new SampleRecordProcessor((m) =>
        process.stderr.write(`${shard.shardId} ${m.trimEnd()}\n`),
      );
      return {
        initialize: (input) => {
          stats.initializedAt = input.sequenceNumber;
          return processor.initialize();
        },
        processRecords: (input) => {
          stats.records += input.records.length;
          return processor.processRecords(input);
        },
        leaseLost: () => processor.leaseLost(),
        shardEnded: (input) => processor.shardEnded(input),
        shutdownRequested: (input) => processor.shutdownRequested(input),
      };
    },
  });
  await worker.run();
  for (const [shardId, s] of [...seen].sort()) {
    console.log(
      `${shardId}: initialized at ${s.initializedAt}, processed ${s.records} records, checkpointed at shutdown`,
    );
  }
  const group = await transport.describeGroup('kcl-sample-app');
  for (const o of group.offsets)
    console.log(`${o.topic}[${o.partition}]: committed ${o.committed}, lag ${o.lag}`);
} finally {
  await transport.close();
}
