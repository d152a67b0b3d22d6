import assert from 'node:assert/strict';
import type {
  Checkpointer,
  KclRecord,
  RecordProcessor,
  RecordProcessorV1,
  ShutdownReason,
} from '../../../../src/records/kcl/index.ts';

/** The section 7 vector (amazon-kclpy's test_amazon_kclpy_input_output_integration.py): what the daemon sends. */
export const SPEC_INPUT = [
  { action: 'initialize', shardId: 'shardId-123', sequenceNumber: '456', subSequenceNumber: 0 },
  {
    action: 'processRecords',
    millisBehindLatest: 1476889708000,
    records: [
      {
        action: 'record',
        data: 'bWVvdw==',
        partitionKey: 'cat',
        sequenceNumber: '456',
        subSequenceNumber: 0,
        approximateArrivalTimestamp: 1476889707000,
      },
    ],
  },
  { action: 'checkpoint', sequenceNumber: '456', subSequenceNumber: 0, error: 'Exception' },
  { action: 'checkpoint', sequenceNumber: '456', subSequenceNumber: 0 },
  { action: 'shardEnded' },
  { action: 'checkpoint', sequenceNumber: '456', subSequenceNumber: 0 },
];

/** …and exactly what the child must answer. */
export const SPEC_OUTPUT = [
  { action: 'status', responseFor: 'initialize' },
  { action: 'checkpoint', sequenceNumber: '456', subSequenceNumber: null },
  { action: 'checkpoint', sequenceNumber: '456', subSequenceNumber: null },
  { action: 'status', responseFor: 'processRecords' },
  { action: 'checkpoint', sequenceNumber: null, subSequenceNumber: null },
  { action: 'status', responseFor: 'shardEnded' },
];

/** A port of that test's v1 processor: checkpoints the first record, retries once, checkpoints on TERMINATE. */
export class SpecV1Processor implements RecordProcessorV1 {
  readonly version = 1 as const;
  shardId: string | undefined;

  initialize(shardId: string): void {
    this.shardId = shardId;
  }

  async processRecords(records: KclRecord[], checkpointer: Checkpointer): Promise<void> {
    const seq = records[0]!.sequenceNumber;
    try {
      await checkpointer.checkpoint(seq);
      assert.fail('First checkpoint should fail');
    } catch {
      await checkpointer.checkpoint(seq);
    }
  }

  async shutdown(checkpointer: Checkpointer, reason: ShutdownReason): Promise<void> {
    if (reason === 'TERMINATE') await checkpointer.checkpoint();
  }
}

export function record(seq: string, data = 'meow', key = 'cat'): Record<string, unknown> {
  return {
    action: 'record',
    data: Buffer.from(data).toString('base64'),
    partitionKey: key,
    sequenceNumber: seq,
    subSequenceNumber: 0,
    approximateArrivalTimestamp: 1476889707000,
  };
}

export const init = (shardId = 'shardId-000000000001', sequenceNumber: string | null = 'TRIM_HORIZON') => ({
  action: 'initialize',
  shardId,
  sequenceNumber,
  subSequenceNumber: 0,
});

export const batch = (...seqs: string[]) => ({
  action: 'processRecords',
  millisBehindLatest: 0,
  records: seqs.map((s) => record(s)),
});

export const reply = (sequenceNumber: string | null = null, error?: string) => ({
  action: 'checkpoint',
  sequenceNumber,
  subSequenceNumber: null,
  ...(error === undefined ? {} : { error }),
});

export const status = (responseFor: string) => ({ action: 'status', responseFor });

interface Behaviour {
  processRecords?: (records: KclRecord[], cp: Checkpointer, self: ScriptedProcessor) => unknown;
  shardEnded?: (cp: Checkpointer, self: ScriptedProcessor) => unknown;
  shutdownRequested?: (cp: Checkpointer, self: ScriptedProcessor) => unknown;
  leaseLost?: (self: ScriptedProcessor) => unknown;
}

/** A v3 processor whose methods are supplied per test; records every call. */
export class ScriptedProcessor implements RecordProcessor {
  readonly calls: string[] = [];
  readonly errors: unknown[] = [];
  kept: Checkpointer | undefined;
  private readonly behaviour: Behaviour;
  constructor(behaviour: Behaviour = {}) {
    this.behaviour = behaviour;
  }

  initialize(input: { shardId: string; sequenceNumber: string | null }): void {
    this.calls.push(`initialize ${input.shardId} ${input.sequenceNumber}`);
  }

  async processRecords(input: { records: KclRecord[]; checkpointer: Checkpointer }): Promise<void> {
    this.calls.push(`processRecords ${input.records.map((r) => r.sequenceNumber).join(',')}`);
    this.kept = input.checkpointer;
    await this.behaviour.processRecords?.(input.records, input.checkpointer, this);
  }

  async leaseLost(): Promise<void> {
    this.calls.push('leaseLost');
    await this.behaviour.leaseLost?.(this);
  }

  async shardEnded(input: { checkpointer: Checkpointer }): Promise<void> {
    this.calls.push('shardEnded');
    await this.behaviour.shardEnded?.(input.checkpointer, this);
  }

  async shutdownRequested(input: { checkpointer: Checkpointer }): Promise<void> {
    this.calls.push('shutdownRequested');
    await this.behaviour.shutdownRequested?.(input.checkpointer, this);
  }

  /** Runs a checkpoint and records its error code (or 'ok'). */
  async tryCheckpoint(cp: Checkpointer, seq?: string | null, sub?: number | null): Promise<void> {
    try {
      await cp.checkpoint(seq, sub);
      this.errors.push('ok');
    } catch (err) {
      this.errors.push(err);
    }
  }
}
