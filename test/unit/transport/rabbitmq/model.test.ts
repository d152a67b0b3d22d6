import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSluiceError } from '../../../../src/errors.ts';
import {
  applyCatalog,
  applyOffsets,
  assignPartitions,
  type CatalogRecord,
  checkTopicName,
  decodeRecord,
  deliveryOffset,
  emptyCatalog,
  encodeRecord,
  H,
  leaseQueue,
  parseAnnounce,
  parseCatalogRecord,
  parseOffsetsRecord,
  partitionQueue,
  retentionArguments,
  startSpec,
  tpKey,
} from '../../../../src/transport/rabbitmq/model.ts';
import { resolveRabbitMqOptions } from '../../../../src/transport/rabbitmq/transport.ts';

/** What amqplib hands a consumer: the body, and the headers RabbitMQ delivered (plus the stream offset). */
function delivered(enc: ReturnType<typeof encodeRecord>, offset: number) {
  return {
    content: enc.content,
    properties: {
      headers: { ...enc.headers, [H.offset]: offset },
      timestamp: Math.floor(enc.timestamp / 1000),
    },
  };
}

describe('rabbitmq model: names', () => {
  it('names partition queues <topic>.p<i> and leases per group, partition and topic', () => {
    assert.equal(partitionQueue('orders', 0), 'orders.p0');
    assert.equal(partitionQueue('a.b', 12), 'a.b.p12');
    assert.equal(leaseQueue('g', 't', 3), 'sluice.lease.g.3.t');
  });

  it('accepts Kafka-style topic names and rejects bad or reserved ones with a readable error', () => {
    checkTopicName('files_2024-01.raw');
    for (const bad of ['', '.', '..', 'has space', 'x'.repeat(201), 'sluice.topics', 42]) {
      assert.throws(
        () => checkTopicName(bad),
        (e: unknown) => isSluiceError(e, 'SLUICE_CONFIG_INVALID') && e.message.length > 40,
        String(bad),
      );
    }
  });
});

describe('rabbitmq model: records', () => {
  it('round-trips key, binary value, headers and timestamp', () => {
    const value = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const enc = encodeRecord(
      {
        topic: 't',
        key: Buffer.from([0, 255]),
        value,
        headers: { bin: Buffer.from([1, 2]), text: 'héllo' },
        timestamp: 1_700_000_000_123,
      },
      1,
    );
    const r = decodeRecord(delivered(enc, 41), 't', 2);
    assert.equal(r.topic, 't');
    assert.equal(r.partition, 2);
    assert.equal(r.offset, 41);
    assert.equal(r.timestamp, 1_700_000_000_123);
    assert.deepEqual(r.key, Buffer.from([0, 255]));
    assert.deepEqual(r.value, value);
    assert.deepEqual(r.headers.bin, Buffer.from([1, 2]));
    assert.equal(r.headers.text!.toString('utf8'), 'héllo');
  });

  it('keeps a null value (tombstone) apart from an empty one, and a null key apart from an empty one', () => {
    const tomb = decodeRecord(delivered(encodeRecord({ topic: 't', key: 'k', value: null }, 5), 0), 't', 0);
    assert.equal(tomb.value, null);
    assert.equal(tomb.key!.toString(), 'k');
    assert.equal(tomb.timestamp, 5, 'the send time when the record names none');
    const empty = decodeRecord(delivered(encodeRecord({ topic: 't', value: '' }, 5), 1), 't', 0);
    assert.deepEqual(empty.value, Buffer.alloc(0));
    assert.equal(empty.key, null);
    const emptyKey = decodeRecord(delivered(encodeRecord({ topic: 't', key: '', value: 'v' }, 5), 2), 't', 0);
    assert.deepEqual(emptyKey.key, Buffer.alloc(0));
    assert.deepEqual(empty.headers, {});
  });

  it('reads messages of other AMQP clients: AMQP timestamp in seconds, no key', () => {
    const r = decodeRecord(
      { content: Buffer.from('x'), properties: { headers: { [H.offset]: 7 }, timestamp: 1_700_000_000 } },
      't',
      0,
    );
    assert.equal(r.timestamp, 1_700_000_000_000);
    assert.equal(r.key, null);
    assert.equal(r.value!.toString(), 'x');
  });

  it('refuses a delivery without a stream offset (a classic queue posing as a partition)', () => {
    const msg = { content: Buffer.from('x'), properties: { headers: {} } };
    assert.equal(deliveryOffset(msg), undefined);
    assert.throws(
      () => decodeRecord(msg, 't', 0),
      (e: unknown) => isSluiceError(e, 'SLUICE_TRANSPORT'),
    );
  });
});

describe('rabbitmq model: catalog', () => {
  const create = (id: string, topic: string, partitions: number): CatalogRecord => ({
    op: 'create',
    id,
    topic,
    partitions,
  });

  it('folds creates and deletes; the first of two racing creates wins', () => {
    const s = emptyCatalog();
    applyCatalog(s, create('a', 't', 3));
    applyCatalog(s, create('b', 't', 5));
    assert.equal(s.topics.get('t')!.partitions, 3);
    assert.equal(s.topics.get('t')!.createdBy, 'a');
    applyCatalog(s, { op: 'delete', id: 'c', topic: 't' });
    assert.equal(s.topics.has('t'), false);
    applyCatalog(s, create('d', 't', 2));
    assert.equal(s.topics.get('t')!.partitions, 2, 'a topic can be created again after its deletion');
    applyCatalog(s, { op: 'group', id: 'e', group: 'g1' });
    applyCatalog(s, { op: 'sync', id: 'f' });
    assert.deepEqual([...s.groups], ['g1']);
  });

  it('parses its records and ignores malformed ones', () => {
    const rec = { op: 'create', id: 'x', topic: 't', partitions: 2, retentionMs: 1000 };
    assert.deepEqual(parseCatalogRecord(Buffer.from(JSON.stringify(rec))), rec);
    for (const bad of [
      'not json',
      '{}',
      '{"op":"create","id":"x","topic":"t","partitions":0}',
      '[1]',
      'null',
    ]) {
      assert.equal(parseCatalogRecord(Buffer.from(bad)), undefined, bad);
    }
  });
});

describe('rabbitmq model: group offsets', () => {
  it('the last commit of a partition wins; sync markers change nothing', () => {
    const m = new Map<string, number>();
    applyOffsets(m, {
      op: 'commit',
      id: '1',
      member: 'a',
      offsets: [
        ['t', 0, 4],
        ['t', 1, 2],
      ],
    });
    applyOffsets(m, { op: 'sync', id: '2' });
    applyOffsets(m, { op: 'commit', id: '3', member: 'b', offsets: [['t', 0, 9]] });
    assert.equal(m.get(tpKey('t', 0)), 9);
    assert.equal(m.get(tpKey('t', 1)), 2);
  });

  it('parses commits, dropping malformed entries', () => {
    const body = Buffer.from(
      JSON.stringify({
        op: 'commit',
        id: 'i',
        member: 'm',
        offsets: [
          ['t', 0, 3],
          ['t', 'x', 1],
          ['t', 1, -1],
        ],
      }),
    );
    assert.deepEqual(parseOffsetsRecord(body), {
      op: 'commit',
      id: 'i',
      member: 'm',
      offsets: [['t', 0, 3]],
    });
    assert.equal(parseOffsetsRecord(Buffer.from('{"op":"commit","id":"i"}')), undefined);
  });
});

describe('rabbitmq model: assignment', () => {
  const counts = new Map([
    ['a', 4],
    ['b', 1],
  ]);

  it('splits each topic over its subscribers in member-id order, the same for every view order', () => {
    const members = [
      { memberId: 'm2', topics: ['a'] },
      { memberId: 'm1', topics: ['a', 'b'] },
    ];
    const out = assignPartitions(members, counts);
    assert.deepEqual(out.get('m1'), [
      { topic: 'a', partition: 0 },
      { topic: 'a', partition: 2 },
      { topic: 'b', partition: 0 },
    ]);
    assert.deepEqual(out.get('m2'), [
      { topic: 'a', partition: 1 },
      { topic: 'a', partition: 3 },
    ]);
    assert.deepEqual(assignPartitions([...members].reverse(), counts), out);
  });

  it('gives a lone member everything it subscribes to, and an idle member nothing', () => {
    const out = assignPartitions(
      [
        { memberId: 'solo', topics: ['a'] },
        { memberId: 'zz', topics: ['c'] },
      ],
      counts,
    );
    assert.equal(out.get('solo')!.length, 4);
    assert.deepEqual(out.get('zz'), []);
  });

  it('parses announcements and ignores garbage', () => {
    const hello = {
      type: 'hello',
      member: 'm',
      topics: ['a', 3],
      assignment: [['a', 1], ['x']],
      reply: true,
    };
    assert.deepEqual(parseAnnounce(Buffer.from(JSON.stringify(hello))), {
      type: 'hello',
      member: 'm',
      topics: ['a'],
      assignment: [['a', 1]],
      reply: true,
    });
    assert.deepEqual(parseAnnounce(Buffer.from('{"type":"bye","member":"m"}')), { type: 'bye', member: 'm' });
    assert.equal(parseAnnounce(Buffer.from('{"type":"hello"}')), undefined);
    assert.equal(parseAnnounce(Buffer.from('nope')), undefined);
  });
});

describe('rabbitmq model: start positions and options', () => {
  const tp = { topic: 't', partition: 1 };

  it('maps start positions to x-stream-offset', () => {
    assert.equal(startSpec(undefined, undefined, tp, undefined), 'first');
    assert.equal(startSpec(undefined, 'latest', tp, undefined), 'next');
    assert.equal(startSpec('committed', 'latest', tp, 7), 7);
    assert.equal(startSpec('earliest', undefined, tp, 7), 'first');
    assert.equal(startSpec('latest', undefined, tp, 7), 'next');
    const explicit = { offsets: [{ topic: 't', partition: 1, offset: 3 }] };
    assert.equal(startSpec(explicit, undefined, tp, 7), 3);
    assert.equal(startSpec(explicit, undefined, { topic: 't', partition: 0 }, 7), 7, 'others as committed');
  });

  it('turns retention into stream arguments', () => {
    assert.deepEqual(retentionArguments({}), {});
    assert.deepEqual(retentionArguments({ retentionMs: 1500, retentionBytes: 1024 }), {
      'x-max-age': '2s',
      'x-max-length-bytes': 1024,
    });
  });

  it('requires an amqp:// or amqps:// URL and never echoes the password', () => {
    assert.equal(resolveRabbitMqOptions({ url: 'amqp://u:p@h:5672' }).defaultPartitions, 1);
    assert.throws(
      () => resolveRabbitMqOptions({ url: 'http://u:secret@h' }),
      (e: unknown) => isSluiceError(e, 'SLUICE_BROKER_URL') && !e.message.includes('secret'),
    );
  });
});
