import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { fetchV17, KafkaRecord, RecordsBatch } from '@platformatic/kafka';
import { decodePartition } from '../../../../src/transport/kafka/records.ts';

const TRANSACTIONAL = 1 << 4;
const CONTROL = 1 << 5;
const LOG_APPEND_TIME = 1 << 3;

function record(offsetDelta: number, value: string | null, extra: Partial<KafkaRecord> = {}): KafkaRecord {
  return {
    length: 0,
    attributes: 0,
    timestampDelta: BigInt(offsetDelta),
    offsetDelta,
    key: null,
    value: value === null ? null : Buffer.from(value),
    headers: [],
    ...extra,
  };
}

function batch(
  firstOffset: number,
  values: Array<string | null>,
  o: Partial<RecordsBatch> = {},
): RecordsBatch {
  return {
    firstOffset: BigInt(firstOffset),
    length: 0,
    partitionLeaderEpoch: 0,
    magic: 2,
    crc: 0,
    attributes: 0,
    lastOffsetDelta: values.length - 1,
    firstTimestamp: 1_000n,
    maxTimestamp: 5_000n,
    producerId: -1n,
    producerEpoch: -1,
    firstSequence: -1,
    records: values.map((v, i) => record(i, v)),
    ...o,
  };
}

/** A transaction marker: control record key = int16 version 0, int16 type (0 abort, 1 commit). */
function marker(offset: number, producerId: bigint, commit: boolean): RecordsBatch {
  const key = Buffer.alloc(4);
  key.writeInt16BE(commit ? 1 : 0, 2);
  return batch(offset, [null], {
    producerId,
    attributes: CONTROL | TRANSACTIONAL,
    records: [record(0, null, { key, value: Buffer.alloc(6) })],
  });
}

function txBatch(firstOffset: number, values: string[], producerId: bigint): RecordsBatch {
  return batch(firstOffset, values, { producerId, attributes: TRANSACTIONAL });
}

function partition(
  batches: RecordsBatch[],
  aborted: Array<[bigint, number]> = [],
): fetchV17.FetchResponsePartition {
  return {
    partitionIndex: 0,
    errorCode: 0,
    highWatermark: 0n,
    lastStableOffset: 0n,
    logStartOffset: 0n,
    abortedTransactions: aborted.map(([producerId, firstOffset]) => ({
      producerId,
      firstOffset: BigInt(firstOffset),
    })),
    preferredReadReplica: -1,
    records: batches,
  };
}

const values = (rs: { value: Buffer | null }[]): Array<string | null> =>
  rs.map((r) => r.value?.toString() ?? null);

describe('fetch response decoding', () => {
  it('turns batches into records with offsets, timestamps, keys and headers', () => {
    const b = batch(10, ['a', 'b', null]);
    b.records[0]!.key = Buffer.from('k');
    b.records[0]!.headers = [
      [Buffer.from('h'), Buffer.from('v')],
      [Buffer.from('empty'), null],
    ];
    const out = decodePartition('t', 3, partition([b]), 10, true);
    assert.deepEqual(
      out.records.map((r) => [r.topic, r.partition, r.offset, r.timestamp]),
      [
        ['t', 3, 10, 1000],
        ['t', 3, 11, 1001],
        ['t', 3, 12, 1002],
      ],
    );
    assert.deepEqual(out.records[0]!.key, Buffer.from('k'));
    assert.deepEqual(out.records[0]!.headers, { h: Buffer.from('v'), empty: Buffer.alloc(0) });
    assert.equal(out.records[2]!.value, null);
    assert.equal(out.nextOffset, 13);
    assert.ok(out.bytes > 0);
  });

  it('skips records before the fetch offset (a batch that starts earlier)', () => {
    const out = decodePartition('t', 0, partition([batch(0, ['a', 'b', 'c', 'd'])]), 2, true);
    assert.deepEqual(values(out.records), ['c', 'd']);
    assert.equal(out.nextOffset, 4);
  });

  it('uses the batch max timestamp for LogAppendTime topics', () => {
    const out = decodePartition(
      't',
      0,
      partition([batch(0, ['a'], { attributes: LOG_APPEND_TIME })]),
      0,
      true,
    );
    assert.equal(out.records[0]!.timestamp, 5000);
  });

  it('an empty response moves nothing', () => {
    const out = decodePartition('t', 0, partition([]), 7, true);
    assert.deepEqual(out.records, []);
    assert.equal(out.nextOffset, undefined);
  });

  it('read_committed drops every aborted transaction of a producer, including several in one response', () => {
    const p = 7n;
    const batches = [
      txBatch(0, ['abort-1a', 'abort-1b'], p),
      marker(2, p, false),
      txBatch(3, ['commit-1a', 'commit-1b'], p),
      marker(5, p, true),
      batch(6, ['plain']),
      txBatch(7, ['abort-2'], p),
      marker(8, p, false),
      txBatch(9, ['commit-2'], p),
      marker(10, p, true),
    ];
    const aborted: Array<[bigint, number]> = [
      [p, 0],
      [p, 7],
    ];
    const committed = decodePartition('t', 0, partition(batches, aborted), 0, true);
    assert.deepEqual(values(committed.records), ['commit-1a', 'commit-1b', 'plain', 'commit-2']);
    assert.equal(committed.nextOffset, 11, 'the position moves past the markers');
    const all = decodePartition('t', 0, partition(batches, aborted), 0, false);
    assert.deepEqual(values(all.records), [
      'abort-1a',
      'abort-1b',
      'commit-1a',
      'commit-1b',
      'plain',
      'abort-2',
      'commit-2',
    ]);
  });

  it('read_committed drops an aborted transaction whose marker lies beyond the response', () => {
    const batches = [txBatch(0, ['x', 'y'], 3n), batch(2, ['other']), txBatch(3, ['z'], 3n)];
    const out = decodePartition('t', 0, partition(batches, [[3n, 0]]), 0, true);
    assert.deepEqual(values(out.records), ['other']);
    assert.equal(out.nextOffset, 4);
  });

  it('another producer interleaved with an aborted transaction is kept', () => {
    const batches = [
      txBatch(0, ['bad'], 1n),
      txBatch(1, ['good'], 2n),
      marker(2, 1n, false),
      marker(3, 2n, true),
    ];
    const out = decodePartition('t', 0, partition(batches, [[1n, 0]]), 0, true);
    assert.deepEqual(values(out.records), ['good']);
  });
});
