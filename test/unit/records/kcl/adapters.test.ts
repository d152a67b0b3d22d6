import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSluiceError } from '../../../../src/errors.ts';
import {
  CheckpointError,
  type Checkpointer,
  compareSequenceNumbers,
  fromV1,
  fromV2,
  isCheckpointError,
  isSequenceNumber,
  KCL_ERROR_NAMES,
  leaseLostCheckpointer,
  parseMultilangRecord,
  type RecordProcessorV1,
  type RecordProcessorV2,
  toRecordProcessor,
} from '../../../../src/records/kcl/index.ts';
import { record } from './helpers.ts';

const cp: Checkpointer = { checkpoint: async () => undefined };
const rec = parseMultilangRecord(record('1'));

describe('adapters (kclpy mapping)', () => {
  it('v1: positional arguments; leaseLost → shutdown(ZOMBIE) with a rejecting checkpointer; shardEnded → TERMINATE', async () => {
    const calls: unknown[][] = [];
    const v1: RecordProcessorV1 = {
      version: 1,
      initialize: (shardId) => {
        calls.push(['initialize', shardId]);
      },
      processRecords: (records, checkpointer) => {
        calls.push(['processRecords', records, checkpointer]);
      },
      shutdown: (checkpointer, reason) => {
        calls.push(['shutdown', checkpointer, reason]);
      },
      shutdownRequested: (checkpointer) => {
        calls.push(['shutdownRequested', checkpointer]);
      },
    };
    const p = fromV1(v1);
    await p.initialize({ shardId: 's-1', sequenceNumber: '5', subSequenceNumber: 0 });
    await p.processRecords({ records: [rec], millisBehindLatest: 3, checkpointer: cp });
    await p.leaseLost({});
    await p.shardEnded({ checkpointer: cp });
    await p.shutdownRequested?.({ checkpointer: cp });
    assert.deepEqual(calls, [
      ['initialize', 's-1'],
      ['processRecords', [rec], cp],
      ['shutdown', leaseLostCheckpointer, 'ZOMBIE'],
      ['shutdown', cp, 'TERMINATE'],
      ['shutdownRequested', cp],
    ]);
    await assert.rejects(leaseLostCheckpointer.checkpoint('1'), (e: unknown) =>
      isCheckpointError(e, 'ShutdownException'),
    );
  });

  it('v2: input objects; shutdown carries reason and checkpointer; a missing shutdownRequested is a no-op', async () => {
    const calls: unknown[] = [];
    const v2: RecordProcessorV2 = {
      version: 2,
      initialize: (input) => {
        calls.push(input);
      },
      processRecords: (input) => {
        calls.push(input);
      },
      shutdown: (input) => {
        calls.push(input);
      },
    };
    const p = toRecordProcessor(v2);
    const initInput = { shardId: 's', sequenceNumber: null, subSequenceNumber: null };
    const prInput = { records: [rec], millisBehindLatest: null, checkpointer: cp };
    await p.initialize(initInput);
    await p.processRecords(prInput);
    await p.shardEnded({ checkpointer: cp });
    await p.leaseLost({});
    await p.shutdownRequested?.({ checkpointer: cp });
    assert.deepEqual(calls, [
      initInput,
      prInput,
      { reason: 'TERMINATE', checkpointer: cp },
      { reason: 'ZOMBIE', checkpointer: leaseLostCheckpointer },
    ]);
    assert.equal(fromV2(v2).version, 3);
  });

  it('a v3 processor (version 3 or none) is used as is', () => {
    const v3 = { initialize() {}, processRecords() {}, leaseLost() {}, shardEnded() {} };
    assert.equal(toRecordProcessor(v3), v3);
  });
});

describe('CheckpointError', () => {
  it('carries the KCL name in code (and value), is not a SluiceError, and says which names are retryable', () => {
    for (const name of KCL_ERROR_NAMES) {
      const e = new CheckpointError(name);
      assert.equal(e.code, name);
      assert.equal(e.value, name);
      assert.equal(e.name, 'CheckpointError');
      assert.ok(e instanceof Error);
      assert.equal(isSluiceError(e), false);
      assert.equal(isCheckpointError(e, name), true);
      assert.equal(
        e.canRetry,
        name === 'ThrottlingException' || name === 'KinesisClientLibDependencyException',
      );
    }
    const cause = new Error('db down');
    assert.equal(new CheckpointError('KinesisClientLibDependencyException', 'x', { cause }).cause, cause);
    assert.equal(
      isCheckpointError({ name: 'CheckpointError', code: 'ShutdownException' }, 'ShutdownException'),
      true,
    );
    assert.equal(isCheckpointError(new Error('x')), false);
    assert.equal(isCheckpointError(new CheckpointError('ShutdownException'), 'ThrottlingException'), false);
  });
});

describe('records and sequence numbers', () => {
  it('compares 128-bit sequence numbers exactly (as BigInt, not as JS numbers)', () => {
    const a = '49590338271490256608559692538361571095921575989136588898';
    const b = '49590338271490256608559692538361571095921575989136588899';
    assert.equal(Number(a), Number(b)); // what a JS number comparison would get wrong
    assert.equal(compareSequenceNumbers(a, b), -1);
    assert.equal(compareSequenceNumbers(b, a), 1);
    assert.equal(compareSequenceNumbers(a, a), 0);
    assert.equal(isSequenceNumber(a), true);
    assert.equal(isSequenceNumber('TRIM_HORIZON'), false);
    assert.equal(isSequenceNumber('007'), false);
  });

  it('parses daemon records and rejects malformed ones with a SluiceError', () => {
    const r = parseMultilangRecord({ ...record('12', 'héllo', 'pk'), subSequenceNumber: null });
    assert.equal(r.data.toString('utf8'), 'héllo');
    assert.equal(r.subSequenceNumber, 0);
    assert.equal(r.partitionKey, 'pk');
    for (const bad of [
      null,
      { ...record('1'), data: 5 },
      { ...record('1'), sequenceNumber: 1 },
      { ...record('1'), approximateArrivalTimestamp: 'x' },
    ]) {
      assert.throws(
        () => parseMultilangRecord(bad),
        (e: unknown) => isSluiceError(e, 'SLUICE_TRANSPORT'),
      );
    }
  });
});
