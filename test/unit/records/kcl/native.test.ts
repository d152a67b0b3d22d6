import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  type Checkpointer,
  isCheckpointError,
  type KclRecord,
  KclWorker,
  type KclWorkerOptions,
  type RecordProcessor,
  type RecordProcessorV1,
} from '../../../../src/records/kcl/index.ts';
import { createLogger } from '../../../../src/runtime/logger.ts';
import { openEmbeddedTransport } from '../../../../src/transport/embedded/index.ts';
import type { Transport } from '../../../../src/transport/types.ts';
import { eventually } from '../../../conformance/suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-kcl-native-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshPath = (): string => join(dir, `b${n++}.db`);
const silent = createLogger({ level: 'silent' });

async function setup(
  partitions: number,
  perPartition: number,
): Promise<{ path: string; transport: Transport }> {
  const path = freshPath();
  const transport = await openEmbeddedTransport({ path });
  await transport.createTopic({ name: 'events', partitions });
  const producer = transport.producer();
  const records = [];
  for (let p = 0; p < partitions; p++) {
    for (let i = 0; i < perPartition; i++)
      records.push({ topic: 'events', partition: p, key: `k${p}`, value: `p${p}-${i}` });
  }
  await producer.send(records);
  await producer.close();
  return { path, transport };
}

function worker(
  transport: Transport,
  factory: KclWorkerOptions['processorFactory'],
  extra: Partial<KclWorkerOptions> = {},
): KclWorker {
  return new KclWorker({
    transport,
    streamName: 'events',
    applicationName: 'app',
    processorFactory: factory,
    pollTimeoutMs: 100,
    sessionTimeoutMs: 1500,
    heartbeatIntervalMs: 100,
    logger: silent,
    ...extra,
  });
}

async function committed(transport: Transport, partition = 0): Promise<number | undefined> {
  const g = await transport.describeGroup('app');
  return g.offsets.find((o) => o.topic === 'events' && o.partition === partition)?.committed;
}

/** Records what a shard's processor saw. */
class Probe implements RecordProcessor {
  readonly calls: string[] = [];
  readonly seen: KclRecord[] = [];
  initSequence: string | null | undefined;
  kept: Checkpointer | undefined;
  onRecords: ((records: KclRecord[], cp: Checkpointer) => unknown) | undefined;
  onShutdown: ((cp: Checkpointer) => unknown) | undefined;

  initialize(input: { shardId: string; sequenceNumber: string | null }): void {
    this.initSequence = input.sequenceNumber;
    this.calls.push(`initialize ${input.shardId} ${input.sequenceNumber}`);
  }
  async processRecords(input: { records: KclRecord[]; checkpointer: Checkpointer }): Promise<void> {
    this.calls.push('processRecords');
    this.seen.push(...input.records);
    this.kept = input.checkpointer;
    await this.onRecords?.(input.records, input.checkpointer);
  }
  /** What a checkpoint attempted inside leaseLost (with the checkpointer kept from processRecords) gave. */
  checkpointInLeaseLost: unknown;
  async leaseLost(): Promise<void> {
    this.calls.push('leaseLost');
    // the partition is still ours in the transport while onRevoke runs: only the worker can refuse this
    if (this.kept !== undefined)
      this.checkpointInLeaseLost = await this.kept.checkpoint('3').catch((e: unknown) => e);
  }
  shardEnded(): void {
    this.calls.push('shardEnded');
  }
  async shutdownRequested(input: { checkpointer: Checkpointer }): Promise<void> {
    this.calls.push('shutdownRequested');
    await this.onShutdown?.(input.checkpointer);
  }
}

// a bug that stops a worker from finishing must fail the test, not hang the run
describe('native mode on the embedded transport', { timeout: 30_000 }, () => {
  it('maps records: sequence number = offset, partition key = key, data = value', async () => {
    const { transport } = await setup(1, 3);
    const probe = new Probe();
    await worker(transport, () => probe, { stopAtEnd: true }).run();
    assert.deepEqual(
      probe.seen.map((r) => [
        r.sequenceNumber,
        r.subSequenceNumber,
        r.partitionKey,
        r.data.toString(),
        r.base64Data,
      ]),
      [0, 1, 2].map((i) => [String(i), 0, 'k0', `p0-${i}`, Buffer.from(`p0-${i}`).toString('base64')]),
    );
    assert.equal(probe.seen[0]!.source?.offset, 0);
    assert.deepEqual(probe.calls.slice(0, 1), ['initialize events[0] TRIM_HORIZON']);
    assert.equal(probe.calls.at(-1), 'shutdownRequested');
    await transport.close();
  });

  it('checkpoint then restart: the next worker initializes at the checkpoint and resumes after it', async () => {
    const { path, transport } = await setup(1, 10);
    const first = new Probe();
    first.onRecords = async (records, cp) => {
      if (records.some((r) => r.sequenceNumber === '4')) await cp.checkpoint('4');
    };
    await worker(transport, () => first, { stopAtEnd: true }).run();
    assert.equal(first.seen.length, 10);
    assert.equal(await committed(transport), 5, 'checkpoint at sequence 4 commits offset 5');
    await transport.close();

    const reopened = await openEmbeddedTransport({ path });
    const second = new Probe();
    await worker(reopened, () => second, { stopAtEnd: true }).run();
    assert.equal(second.initSequence, '4');
    assert.deepEqual(
      second.seen.map((r) => r.sequenceNumber),
      ['5', '6', '7', '8', '9'],
    );
    await reopened.close();
  });

  it('the checkpointer follows the Java rules: range checks, no sub-sequences, one at a time', async () => {
    const { transport } = await setup(1, 5);
    const outcomes: string[] = [];
    const attempt = async (cp: Checkpointer, seq?: string | null, sub?: number): Promise<void> => {
      try {
        await cp.checkpoint(seq, sub);
        outcomes.push(`${seq} ok`);
      } catch (err) {
        assert.ok(isCheckpointError(err), String(err));
        outcomes.push(`${seq} ${err.code}`);
      }
    };
    const probe = new Probe();
    probe.onRecords = async (_records, cp) => {
      await attempt(cp, '5'); // beyond the last delivered record (4)
      await attempt(cp, 'TRIM_HORIZON');
      await attempt(cp, '2', 1);
      await attempt(cp, '3');
      await attempt(cp, '1'); // before the last checkpoint
      const a = attempt(cp, '4');
      await attempt(cp, '4'); // while the first is pending
      await a;
      await attempt(cp); // no argument: the last delivered record
    };
    await worker(transport, () => probe, { stopAtEnd: true, maxRecords: 5 }).run();
    assert.deepEqual(outcomes, [
      '5 IllegalArgumentException',
      'TRIM_HORIZON IllegalArgumentException',
      '2 IllegalArgumentException',
      '3 ok',
      '1 IllegalArgumentException',
      '4 InvalidStateException',
      '4 ok',
      'undefined ok',
    ]);
    assert.equal(await committed(transport), 5);
    await transport.close();
  });

  it('two workers of one application split the shards', async () => {
    const { transport } = await setup(4, 5);
    const probes = new Map<string, Probe>();
    const factory = (shard: { shardId: string }): RecordProcessor => {
      const p = new Probe();
      p.onRecords = (_r, cp) => cp.checkpoint();
      probes.set(`${shard.shardId} ${probes.size}`, p);
      return p;
    };
    const a = worker(transport, factory);
    const b = worker(transport, factory);
    const runs = [a.run(), b.run()];
    await eventually(() => {
      const sa = a.shards().map((s) => s.partition);
      const sb = b.shards().map((s) => s.partition);
      return sa.length === 2 && sb.length === 2 && new Set([...sa, ...sb]).size === 4;
    }, 'each worker holds two of the four shards');
    await eventually(async () => {
      const g = await transport.describeGroup('app');
      return g.offsets.length === 4 && g.offsets.every((o) => o.committed === 5);
    }, 'every shard checkpointed to its end');
    const seen = new Set([...probes.values()].flatMap((p) => p.seen.map((r) => r.data.toString())));
    assert.equal(seen.size, 20);
    await Promise.all([a.stop(), b.stop()]);
    await Promise.all(runs);
    await transport.close();
  });

  it('revocation calls leaseLost, after which the shard checkpointer rejects; the new owner resumes at the checkpoint', async () => {
    const { transport } = await setup(2, 4);
    const firstProbes: Probe[] = [];
    const a = worker(transport, () => {
      const p = new Probe();
      p.onRecords = (records, cp) => cp.checkpoint(records[1]!.sequenceNumber); // checkpoint at sequence 1
      firstProbes.push(p);
      return p;
    });
    const runA = a.run();
    await eventually(
      () => firstProbes.length === 2 && firstProbes.every((p) => p.seen.length === 4),
      'worker A read both shards',
    );

    const secondProbes: Probe[] = [];
    const b = worker(transport, () => {
      const p = new Probe();
      secondProbes.push(p);
      return p;
    });
    const runB = b.run();
    await eventually(
      () => secondProbes.length === 1 && secondProbes[0]!.seen.length === 2,
      'worker B took one shard over',
    );
    const lost = firstProbes.filter((p) => p.calls.includes('leaseLost'));
    assert.equal(lost.length, 1, 'exactly one of A’s shards lost its lease');
    assert.deepEqual(lost[0]!.calls.slice(-1), ['leaseLost']);
    assert.ok(
      isCheckpointError(lost[0]!.checkpointInLeaseLost, 'ShutdownException'),
      String(lost[0]!.checkpointInLeaseLost),
    );
    await assert.rejects(lost[0]!.kept!.checkpoint('1'), (e: unknown) =>
      isCheckpointError(e, 'ShutdownException'),
    );
    assert.equal(secondProbes[0]!.initSequence, '1');
    assert.deepEqual(
      secondProbes[0]!.seen.map((r) => r.sequenceNumber),
      ['2', '3'],
    );
    await Promise.all([a.stop(), b.stop()]);
    await Promise.all([runA, runB]);
    const kept = firstProbes.find((p) => !p.calls.includes('leaseLost'))!;
    assert.equal(kept.calls.at(-1), 'shutdownRequested');
    assert.equal(secondProbes[0]!.calls.at(-1), 'shutdownRequested');
    await transport.close();
  });

  it('stop() calls shutdownRequested, whose checkpoint is committed; a v1 processor gets it through the adapter', async () => {
    const { transport } = await setup(1, 3);
    const calls: string[] = [];
    const v1: RecordProcessorV1 = {
      version: 1,
      initialize: (shardId) => {
        calls.push(`initialize ${shardId}`);
      },
      processRecords: (records) => {
        calls.push(`processRecords ${records.length}`);
      },
      shutdown: (_cp, reason) => {
        calls.push(`shutdown ${reason}`);
      },
      shutdownRequested: async (cp) => {
        calls.push('shutdownRequested');
        await cp.checkpoint();
      },
    };
    const w = worker(transport, () => v1);
    const run = w.run();
    await eventually(() => calls.includes('processRecords 3'), 'the records were delivered');
    assert.equal(await committed(transport), undefined);
    await w.stop();
    await run;
    assert.deepEqual(calls, ['initialize events[0]', 'processRecords 3', 'shutdownRequested']);
    assert.equal(await committed(transport), 3);
    await transport.close();
  });

  it('a processor exception is logged and processing goes on; with fatalProcessorErrors run() rejects and nothing is committed', async () => {
    const { transport } = await setup(1, 2);
    const producer = transport.producer();
    const tolerant = new Probe();
    tolerant.onRecords = async (records, cp) => {
      if (records.some((r) => r.sequenceNumber === '0')) throw new Error('bad record');
      await cp.checkpoint();
    };
    const w = worker(transport, () => tolerant);
    const run = w.run();
    await eventually(() => tolerant.seen.length === 2, 'first batch');
    await producer.send({ topic: 'events', partition: 0, value: 'later' });
    await eventually(() => tolerant.seen.length === 3, 'the worker went on after the exception');
    await eventually(async () => (await committed(transport)) === 3, 'later batch checkpointed');
    await w.stop();
    await run;

    await producer.send({ topic: 'events', partition: 0, value: 'poison' });
    const fatal = new Probe();
    fatal.onRecords = () => {
      throw new Error('poison record');
    };
    await assert.rejects(
      worker(transport, () => fatal, { fatalProcessorErrors: true }).run(),
      /poison record/,
    );
    assert.equal(fatal.calls.includes('shutdownRequested'), false);
    assert.equal(await committed(transport), 3);
    await producer.close();
    await transport.close();
  });

  it('initialPositionInStream LATEST: a shard without a checkpoint starts at the end', async () => {
    const { transport } = await setup(1, 3);
    const probe = new Probe();
    const w = worker(transport, () => probe, { initialPositionInStream: 'LATEST' });
    const run = w.run();
    await eventually(() => w.shards().length === 1, 'the shard was initialized');
    const producer = transport.producer();
    await producer.send({ topic: 'events', partition: 0, value: 'new' });
    await eventually(() => probe.seen.length === 1, 'the new record arrived');
    assert.equal(probe.initSequence, 'LATEST');
    assert.equal(probe.seen[0]!.sequenceNumber, '3');
    await producer.close();
    await w.stop();
    await run;
    await transport.close();
  });

  it('rejects a configuration without stream, application or factory', () => {
    const t = {} as Transport;
    assert.throws(
      () =>
        new KclWorker({
          transport: t,
          streamName: '',
          applicationName: 'a',
          processorFactory: () => new Probe(),
        }),
      /streamName/,
    );
    assert.throws(
      () =>
        new KclWorker({
          transport: t,
          streamName: 's',
          applicationName: 'a',
          processorFactory: undefined as unknown as KclWorkerOptions['processorFactory'],
        }),
      /processorFactory/,
    );
  });
});
