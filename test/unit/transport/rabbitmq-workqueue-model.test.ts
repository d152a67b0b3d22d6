import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSluiceError } from '../../../src/errors.ts';
import {
  checkPrefetch,
  checkStreamOffset,
  classifyQueueProbe,
  deleteRefusal,
  type InflightPublish,
  mapAmqpError,
  missingExchange,
  OutstandingTags,
  queueDeclaration,
  ReturnMatcher,
} from '../../../src/transport/rabbitmq/work-queue-model.ts';

/** An amqplib error as RabbitMQ 3.10.8 produces it (texts observed on the broker). */
const amqpErr = (code: number, broker: string, op = 'BasicConsume'): Error =>
  Object.assign(new Error(`Operation failed: ${op}; ${code} (X) with message "${broker}"`), { code });

describe('rabbitmq work queues: pure parts', () => {
  it('classifies the queue-type probe answers of RabbitMQ 3.10.8', () => {
    assert.equal(
      classifyQueueProbe(
        amqpErr(406, "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's' in vhost '/''"),
      ),
      'stream',
    );
    assert.equal(
      classifyQueueProbe(
        amqpErr(
          406,
          "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 'c' in vhost '/' of queue type rabbit_classic_queue",
        ),
      ),
      'classic',
    );
    assert.equal(
      classifyQueueProbe(
        amqpErr(
          406,
          "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue",
        ),
      ),
      'quorum',
    );
    assert.equal(classifyQueueProbe(amqpErr(404, "NOT_FOUND - no queue 'm' in vhost '/'")), undefined);
    assert.equal(
      classifyQueueProbe(amqpErr(405, 'RESOURCE_LOCKED - cannot obtain exclusive access')),
      'classic',
    );
    assert.equal(classifyQueueProbe(new Error('Channel ended, no reply will be forthcoming')), 'unknown');
  });

  it('reads delete refusals and missing exchanges', () => {
    assert.equal(
      deleteRefusal(amqpErr(406, "PRECONDITION_FAILED - queue 'c' in vhost '/' not empty", 'QueueDelete')),
      'not-empty',
    );
    assert.equal(
      deleteRefusal(amqpErr(406, "PRECONDITION_FAILED - queue 'c' in vhost '/' in use", 'QueueDelete')),
      'in-use',
    );
    assert.equal(
      deleteRefusal(amqpErr(406, "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use")),
      'in-use',
    );
    assert.equal(deleteRefusal(amqpErr(404, "NOT_FOUND - no queue 'c' in vhost '/'")), undefined);
    const closed = Object.assign(
      new Error(
        `Channel closed by server: 404 (NOT-FOUND) with message "NOT_FOUND - no exchange 'it's.x' in vhost '/'"`,
      ),
      { code: 404 },
    );
    assert.equal(missingExchange(closed), "it's.x");
    assert.equal(missingExchange(amqpErr(404, "NOT_FOUND - no queue 'q' in vhost '/'")), undefined);
  });

  it('maps AMQP errors to SluiceErrors that say what to do', () => {
    const stream = mapAmqpError(
      amqpErr(
        406,
        "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 'c' in vhost '/' of queue type rabbit_classic_queue",
      ),
      'queue c',
      'consume from queue c',
    );
    assert.equal(stream.code, 'SLUICE_CONFIG_INVALID');
    assert.match(
      stream.message,
      /^Invalid resource type, stream expected: queue c exists but is not a stream/,
    );
    const declared = mapAmqpError(
      amqpErr(
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'c' in vhost '/': received the value 'stream' of type 'longstr' but current is none",
        'QueueDeclare',
      ),
      'queue c',
      'declare stream queue c',
    );
    assert.match(declared.message, /stream expected/);
    const other = mapAmqpError(
      amqpErr(
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 's' in vhost '/': received none but current is the value 'stream' of type 'longstr'",
        'QueueDeclare',
      ),
      'queue s',
      'declare classic queue s',
    );
    assert.match(other.message, /another queue type/);
    const missing = mapAmqpError(
      amqpErr(404, "NOT_FOUND - no queue 'm' in vhost '/'"),
      'queue m',
      'consume from queue m',
    );
    assert.equal(missing.code, 'SLUICE_TOPIC_UNKNOWN');
    assert.match(missing.message, /no queue 'm'.*Declare it first/);
    const lost = mapAmqpError(
      new Error('Channel ended, no reply will be forthcoming'),
      'queue m',
      'check queue m',
    );
    assert.equal(lost.code, 'SLUICE_TRANSPORT');
    assert.equal(lost.canRetry, true);
    assert.equal(
      mapAmqpError(amqpErr(403, 'ACCESS_REFUSED - x'), 'exchange amq.x', 'declare').code,
      'SLUICE_CONFIG_INVALID',
    );
  });

  it('checks queue declarations: stream and quorum queues must be durable, shared, kept', () => {
    assert.deepEqual(queueDeclaration('q', {}), {
      type: 'classic',
      durable: true,
      exclusive: false,
      autoDelete: false,
      arguments: {},
    });
    assert.deepEqual(queueDeclaration('s', { type: 'stream', arguments: { 'x-max-age': '1D' } }).arguments, {
      'x-max-age': '1D',
      'x-queue-type': 'stream',
    });
    assert.equal(queueDeclaration('q', { type: 'quorum' }).arguments['x-queue-type'], 'quorum');
    for (const bad of [
      { type: 'stream', durable: false },
      { type: 'quorum', exclusive: true },
      { type: 'stream', autoDelete: true },
      { type: 'stream', arguments: { 'x-queue-type': 'quorum' } },
      { type: 'lazy' },
    ] as const) {
      assert.throws(
        () => queueDeclaration('x', bad as never),
        (err: unknown) => isSluiceError(err, 'SLUICE_CONFIG_INVALID'),
      );
    }
    assert.throws(() => checkPrefetch(0), /prefetch/);
    assert.throws(() => checkPrefetch(70000), /65535/);
    checkPrefetch(100);
    for (const ok of ['first', 'next', 'last', 0, 42]) checkStreamOffset(ok);
    for (const bad of [-1, 1.5, 'latest', null]) assert.throws(() => checkStreamOffset(bad), /streamOffset/);
  });

  it('OutstandingTags: ackAll acknowledges up to the highest handed-out tag still unacknowledged', () => {
    const t = new OutstandingTags();
    assert.equal(t.takeAll(), undefined);
    for (const tag of [1, 2, 3, 4]) t.add(tag);
    assert.equal(t.take(4), true);
    assert.equal(t.take(4), false, 'twice');
    assert.equal(t.take(9), false, 'never handed out');
    assert.deepEqual(t.takeAll(), { upTo: 3, count: 3 });
    assert.equal(t.size, 0);
    t.add(7);
    t.add(5);
    t.add(6);
    t.add(6);
    assert.deepEqual(t.takeAll(), { upTo: 7, count: 3 });
  });

  it('ReturnMatcher: returns match the first unconfirmed identical publish after the previous match', () => {
    const m = new ReturnMatcher();
    const mk = (seq: number, rk: string, body: string, mandatory = true): InflightPublish => ({
      seq,
      exchange: '',
      routingKey: rk,
      body: Buffer.from(body),
      mandatory,
      returned: false,
      settled: false,
    });
    const ps = [mk(1, 'a', 'x'), mk(2, 'b', 'x'), mk(3, 'b', 'x'), mk(4, 'b', 'y'), mk(5, 'c', 'x', false)];
    for (const p of ps) m.add(p);
    assert.equal(m.match('', 'b', Buffer.from('y')), ps[3]);
    // returns come in publish order: nothing before the last match can be returned any more
    assert.equal(m.match('', 'b', Buffer.from('x')), undefined);
    assert.equal(m.match('', 'c', Buffer.from('x')), undefined, 'not mandatory: never returned');
    const m2 = new ReturnMatcher();
    const qs = [mk(1, 'b', 'x'), mk(2, 'b', 'x')];
    for (const p of qs) m2.add(p);
    assert.equal(m2.match('', 'b', Buffer.from('x')), qs[0]);
    assert.equal(m2.match('', 'b', Buffer.from('x')), qs[1]);
    assert.equal(m2.match('', 'b', Buffer.from('x')), undefined);
    qs[0]!.settled = true;
    m2.compact();
    assert.equal(m2.inflight, 1);
    assert.deepEqual(m2.drain(), [qs[1]]);
    assert.equal(m2.inflight, 0);
  });

  it('ReturnMatcher stays linear over long runs (compaction)', () => {
    const m = new ReturnMatcher();
    for (let i = 1; i <= 10_000; i++) {
      const p: InflightPublish = {
        seq: i,
        exchange: 'e',
        routingKey: 'k',
        body: Buffer.from(String(i)),
        mandatory: true,
        returned: false,
        settled: false,
      };
      m.add(p);
      if (i % 3 === 0) assert.equal(m.match('e', 'k', p.body), p);
      p.settled = true;
      m.compact();
    }
    assert.equal(m.inflight, 0);
  });
});
