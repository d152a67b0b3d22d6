/**
 * Work-queue semantics on a real RabbitMQ 3.10.8 (src/transport/rabbitmq/work-queue.ts): competing consumers,
 * fanout, prefetch, acks and redelivery, deletion outcomes, queue counts, stream replay, failures, and a broker
 * restart (on a private broker of its own, like rabbitmq-restart.test.ts). No timed assertions: readiness polling.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { isSluiceError } from '../../src/errors.ts';
import {
  openRabbitMqWorkQueues,
  type RabbitMqWorkQueues,
  type WorkQueueConsumer,
  type WorkQueueDelivery,
} from '../../src/transport/rabbitmq/index.ts';
import { eventually } from '../conformance/suite.ts';
import { rabbitMqUrl } from './rabbitmq-env.ts';

const uniq = (p: string): string => `wq-${p}-${randomBytes(4).toString('hex')}`;
const text = (ds: WorkQueueDelivery[]): string[] => ds.map((d) => d.body.toString('utf8'));

/** Polls until `n` deliveries arrived in total (each poll waits up to 200 ms for one more). */
async function pollN(c: WorkQueueConsumer, n: number, timeoutMs = 30_000): Promise<WorkQueueDelivery[]> {
  const got: WorkQueueDelivery[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < n && Date.now() < deadline) {
    got.push(...(await c.poll({ maxRecords: n - got.length, minRecords: 1, timeoutMs: 200 })));
  }
  assert.equal(got.length, n, `expected ${n} deliveries from ${c.queue}, got ${got.length}`);
  return got;
}

async function expectSluice(p: Promise<unknown>, code: string, match?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isSluiceError(err), `expected a SluiceError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (match !== undefined) assert.match(err.message, match);
    return true;
  });
}

describe('rabbitmq work queues', { timeout: 240_000 }, () => {
  let wq: RabbitMqWorkQueues;
  const extra: RabbitMqWorkQueues[] = [];

  before(async () => {
    wq = await openRabbitMqWorkQueues({ url: rabbitMqUrl(), name: 'sluice-wq-test' });
  });

  after(async () => {
    for (const w of extra) await w.close().catch(() => undefined);
    await wq?.close();
  });

  it('direct share: competing consumers each get distinct messages, together all of them', async () => {
    const ch = uniq('share');
    await wq.declareExchange(ch, 'direct');
    await wq.declareQueue(ch, { type: 'classic' });
    await wq.bindQueue(ch, ch, '');
    const other = await openRabbitMqWorkQueues({ url: rabbitMqUrl(), name: 'sluice-wq-test-2' });
    extra.push(other);
    const a = await wq.consume(ch, { prefetch: 10 });
    const b = await other.consume(ch, { prefetch: 10 });
    const sent = Array.from({ length: 60 }, (_, i) => `m${i}`);
    await wq.publishBatch(sent.map((s) => ({ exchange: ch, routingKey: '', body: Buffer.from(s) })));
    const fromA: string[] = [];
    const fromB: string[] = [];
    await eventually(async () => {
      for (const [c, into] of [
        [a, fromA],
        [b, fromB],
      ] as const) {
        const ds = await c.poll({ maxRecords: 10, minRecords: 1, timeoutMs: 50 });
        into.push(...text(ds));
        c.ackAll();
      }
      return fromA.length + fromB.length >= sent.length;
    }, 'all 60 messages consumed');
    assert.ok(
      fromA.length > 0 && fromB.length > 0,
      `both consumers got some (${fromA.length}/${fromB.length})`,
    );
    assert.equal(new Set([...fromA, ...fromB]).size, sent.length, 'no message went to both');
    assert.deepEqual([...fromA, ...fromB].sort(), [...sent].sort());
    await a.close();
    await b.close();
    assert.deepEqual(await wq.checkQueue(ch), { exists: true, messageCount: 0, consumerCount: 0 });
    assert.deepEqual(await wq.deleteQueue(ch), { outcome: 'deleted', messageCount: 0 });
    assert.equal(await wq.deleteExchange(ch), 'deleted');
  });

  it('fanout: every bound queue gets every message', async () => {
    const ch = uniq('fanout');
    await wq.declareExchange(ch, 'fanout');
    const queues = [ch, `${ch}-1`, `${ch}-2`];
    for (const q of queues) {
      await wq.declareQueue(q);
      await wq.bindQueue(q, ch);
    }
    await wq.publishBatch(
      [0, 1, 2, 3, 4].map((i) => ({ exchange: ch, routingKey: '', body: Buffer.from(`f${i}`) })),
    );
    await wq.publish(ch, 'ignored-by-fanout', Buffer.from('f5'));
    for (const q of queues) {
      const c = await wq.consume(q, { prefetch: 100 });
      assert.deepEqual(text(await pollN(c, 6)), ['f0', 'f1', 'f2', 'f3', 'f4', 'f5']);
      assert.equal(c.ackAll(), 6);
      await c.close();
      assert.deepEqual(await wq.deleteQueue(q, { ifUnused: true, ifEmpty: true }), {
        outcome: 'deleted',
        messageCount: 0,
      });
    }
    assert.equal(await wq.deleteExchange(ch, { ifUnused: true }), 'deleted');
    assert.equal(await wq.deleteExchange(ch), 'missing');
  });

  it('prefetch bounds the unacknowledged deliveries: a consumer that never acks gets no more', async () => {
    const q = uniq('prefetch');
    await wq.declareQueue(q);
    await wq.publishBatch(
      Array.from({ length: 100 }, (_, i) => ({ exchange: '', routingKey: q, body: Buffer.from(`p${i}`) })),
    );
    const c = await wq.consume(q, { prefetch: 27 });
    // pypz vector: each read returns exactly the prefetch, then nothing while nothing is acknowledged
    const first = await c.poll({ maxRecords: 27, timeoutMs: 30_000 });
    assert.deepEqual(
      text(first),
      Array.from({ length: 27 }, (_, i) => `p${i}`),
    );
    // the broker holds the rest back: the queue still has 73 ready, nothing more arrives in our buffer
    await eventually(async () => (await wq.checkQueue(q)).messageCount === 73, '73 messages ready');
    assert.deepEqual(await c.poll({ maxRecords: 27, timeoutMs: 300 }), []);
    assert.equal(c.bufferedCount, 0);
    assert.equal(c.unackedCount, 27);
    // acking opens the window again
    assert.equal(c.ackAll(), 27);
    const second = await c.poll({ maxRecords: 27, timeoutMs: 30_000 });
    assert.deepEqual(
      text(second),
      Array.from({ length: 27 }, (_, i) => `p${27 + i}`),
    );
    // single acks, and an ack twice is refused locally (RabbitMQ would close the channel)
    assert.equal(c.ack(second[0]!), true);
    assert.equal(c.ack(second[0]!), false);
    assert.equal(c.ackAll(), 26);
    assert.equal(c.ackAll(), 0);
    await c.close();
    await eventually(async () => (await wq.checkQueue(q)).messageCount === 46, '46 messages left');
    await wq.deleteQueue(q);
  });

  it('unacknowledged messages are redelivered after close; ackAll removes them', async () => {
    const q = uniq('commit');
    await wq.declareQueue(q);
    await wq.publishBatch(
      ['a', 'b', 'c'].map((s) => ({ exchange: '', routingKey: q, body: Buffer.from(s) })),
    );
    const c1 = await wq.consume(q, { prefetch: 100 });
    const read1 = await pollN(c1, 3);
    assert.deepEqual(text(read1), ['a', 'b', 'c']);
    assert.ok(read1.every((d) => !d.redelivered));
    await c1.close(); // no commit
    await eventually(async () => (await wq.checkQueue(q)).messageCount === 3, 'the 3 messages are back');

    const c2 = await wq.consume(q, { prefetch: 100 });
    const read2 = await pollN(c2, 3);
    assert.deepEqual(text(read2), ['a', 'b', 'c']);
    assert.ok(
      read2.every((d) => d.redelivered),
      'marked redelivered',
    );
    assert.equal(c2.ackAll(), 3);
    await c2.close();
    assert.deepEqual(await wq.checkQueue(q), { exists: true, messageCount: 0, consumerCount: 0 });

    // nackAll with requeue puts them back too
    await wq.publish('', q, Buffer.from('d'));
    const c3 = await wq.consume(q, { prefetch: 100 });
    await pollN(c3, 1);
    assert.equal(c3.nackAll({ requeue: true }), 1);
    const again = await pollN(c3, 1);
    assert.equal(again[0]!.redelivered, true);
    assert.equal(c3.nackAll({ requeue: false }), 1);
    await c3.close();
    assert.equal((await wq.checkQueue(q)).messageCount, 0);
    await wq.deleteQueue(q);
  });

  it('checkQueue counts ready messages and consumers; missing queues', async () => {
    const q = uniq('check');
    assert.deepEqual(await wq.checkQueue(q), { exists: false, messageCount: 0, consumerCount: 0 });
    assert.equal(await wq.queueType(q), undefined);
    await wq.declareQueue(q);
    assert.equal(await wq.queueType(q), 'classic');
    await wq.publishBatch(
      [1, 2, 3, 4].map((i) => ({ exchange: '', routingKey: q, body: Buffer.from(`${i}`) })),
    );
    assert.deepEqual(await wq.checkQueue(q), { exists: true, messageCount: 4, consumerCount: 0 });
    const c = await wq.consume(q, { prefetch: 1 });
    await eventually(async () => {
      const s = await wq.checkQueue(q);
      return s.consumerCount === 1 && s.messageCount === 3;
    }, 'one consumer, one message taken, 3 ready');
    await c.close();
    await eventually(async () => (await wq.checkQueue(q)).messageCount === 4, 'back to 4');
    await wq.deleteQueue(q);
  });

  it('deleteQueue: if-empty / if-unused outcomes for classic and quorum queues, pypz retry rule', async () => {
    for (const type of ['classic', 'quorum'] as const) {
      const q = uniq(`del-${type}`);
      assert.deepEqual(await wq.deleteQueue(q, { ifUnused: true, ifEmpty: true }), { outcome: 'missing' });
      await wq.declareQueue(q, { type });
      assert.equal(await wq.queueType(q), type);
      await wq.publish('', q, Buffer.from('x'));
      assert.deepEqual(
        await wq.deleteQueue(q, { ifUnused: true, ifEmpty: true }),
        { outcome: 'not-empty' },
        type,
      );
      const c = await wq.consume(q, { prefetch: 10 });
      await pollN(c, 1); // held unacked: in use, no ready messages
      await eventually(async () => (await wq.checkQueue(q)).consumerCount === 1, 'consumer registered');
      assert.deepEqual(await wq.deleteQueue(q, { ifUnused: true }), { outcome: 'in-use' }, type);
      await c.close();
      await eventually(async () => {
        const st = await wq.checkQueue(q);
        return st.consumerCount === 0 && st.messageCount === 1;
      }, 'consumer gone, its message back');
      // pypz: both flags, then only if-unused
      assert.deepEqual(await wq.deleteQueue(q, { ifUnused: true, ifEmpty: true }), { outcome: 'not-empty' });
      assert.deepEqual(
        await wq.deleteQueue(q, { ifUnused: true }),
        { outcome: 'deleted', messageCount: 1 },
        type,
      );
      assert.equal((await wq.checkQueue(q)).exists, false);
    }
    // the connection survived all of that (quorum queues answer the flags by closing the connection)
    assert.equal(wq.link.generation, 1, 'no reconnection happened');
  });

  it('streams: status-style replay from first, offsets, resume after the last offset, ack for credit', async () => {
    const s = uniq('status');
    await wq.declareQueue(s, { type: 'stream' });
    assert.equal(await wq.queueType(s), 'stream');
    // status messages go to the default exchange with routing key = stream name (pypz §3)
    for (let i = 0; i < 5; i++)
      await wq.publish('', s, Buffer.from(JSON.stringify({ status: 'HealthCheck', i })));
    const r1 = await wq.consume(s, { prefetch: 2, streamOffset: 'first' });
    const seen: WorkQueueDelivery[] = [];
    await eventually(async () => {
      seen.push(...(await r1.poll({ maxRecords: 100, minRecords: 1, timeoutMs: 100 })));
      r1.ackAll(); // credit for the next ones: prefetch 2 < 5
      return seen.length >= 5;
    }, 'the 5 status messages replayed');
    assert.deepEqual(
      seen.map((d) => d.streamOffset),
      [0, 1, 2, 3, 4],
    );
    assert.deepEqual(
      seen.map((d) => (JSON.parse(d.body.toString()) as { i: number }).i),
      [0, 1, 2, 3, 4],
    );
    assert.equal(r1.lastStreamOffset, 4);
    // a second reader from an explicit offset
    const r2 = await wq.consume(s, { prefetch: 10, streamOffset: 3 });
    assert.deepEqual(
      (await pollN(r2, 2)).map((d) => d.streamOffset),
      [3, 4],
    );
    // 'next' sees only what comes after it subscribed
    const r3 = await wq.consume(s, { prefetch: 10, streamOffset: 'next' });
    await wq.publish('', s, Buffer.from('{"i":5}'));
    assert.deepEqual(
      (await pollN(r3, 1)).map((d) => d.streamOffset),
      [5],
    );
    for (const r of [r1, r2, r3]) await r.close();
    // streams: no consumer count over AMQP (the message count lags: observed 0 or 5 for 6 messages), flags are
    // ignored: always deleted
    const st = await wq.checkQueue(s);
    assert.equal(st.exists, true);
    assert.equal(st.consumerCount, 0);
    assert.equal((await wq.deleteQueue(s, { ifUnused: true, ifEmpty: true })).outcome, 'deleted');
  });

  it('stream expected: a classic queue with the stream name fails clearly, on declare and on consume', async () => {
    const s = uniq('notstream');
    await wq.declareQueue(s, { type: 'classic' });
    await expectSluice(wq.declareQueue(s, { type: 'stream' }), 'SLUICE_CONFIG_INVALID', /stream expected/);
    await expectSluice(
      wq.consume(s, { prefetch: 10, streamOffset: 'first' }),
      'SLUICE_CONFIG_INVALID',
      /Invalid resource type, stream expected/,
    );
    await expectSluice(wq.declareQueue(s, { type: 'quorum' }), 'SLUICE_CONFIG_INVALID', /another queue type/);
    await expectSluice(
      wq.declareQueue(s, { type: 'stream', exclusive: true }),
      'SLUICE_CONFIG_INVALID',
      /durable/,
    );
    await wq.deleteQueue(s);
  });

  it('publish failures: missing exchange, unroutable, missing queue on consume; other publishes unaffected', async () => {
    const ex = uniq('nox');
    await expectSluice(wq.publish(ex, '', Buffer.from('x')), 'SLUICE_TOPIC_UNKNOWN', /does not exist/);
    await expectSluice(
      wq.publish('', uniq('noq'), Buffer.from('x')),
      'SLUICE_TOPIC_UNKNOWN',
      /could not route/,
    );
    const q = uniq('ok');
    await wq.declareQueue(q);
    // a batch mixing routable and unroutable messages: only the unroutable fail, by index
    const missing = uniq('noq');
    await assert.rejects(
      wq.publishBatch([
        { exchange: '', routingKey: q, body: Buffer.from('1') },
        { exchange: '', routingKey: missing, body: Buffer.from('2') },
        { exchange: '', routingKey: q, body: Buffer.from('3') },
        { exchange: '', routingKey: missing, body: Buffer.from('2') },
      ]),
      (err: unknown) => {
        assert.ok(isSluiceError(err, 'SLUICE_TOPIC_UNKNOWN'));
        assert.deepEqual(err.details.failed, [1, 3]);
        assert.equal(err.details.confirmed, 2);
        return true;
      },
    );
    // not mandatory: dropped silently, confirmed
    await wq.publish('', missing, Buffer.from('x'), { mandatory: false });
    // an exchange deleted behind the publisher's back: RabbitMQ closes the channel; reported, and the next works
    const gone = uniq('gone');
    await wq.declareExchange(gone, 'direct');
    await wq.bindQueue(q, gone, 'k');
    await wq.publish(gone, 'k', Buffer.from('4'));
    const admin = await openRabbitMqWorkQueues({ url: rabbitMqUrl(), name: 'sluice-wq-test-admin' });
    extra.push(admin);
    assert.equal(await admin.deleteExchange(gone), 'deleted');
    await expectSluice(wq.publish(gone, 'k', Buffer.from('5')), 'SLUICE_TOPIC_UNKNOWN', /does not exist/);
    await wq.publish('', q, Buffer.from('6'));
    await expectSluice(wq.consume(uniq('noq'), { prefetch: 1 }), 'SLUICE_TOPIC_UNKNOWN', /Declare it first/);
    assert.equal((await wq.checkQueue(q)).messageCount, 4);
    await wq.deleteQueue(q);
  });

  it('a deleted queue ends its consumer with a clear error', async () => {
    const q = uniq('gone');
    await wq.declareQueue(q);
    const c = await wq.consume(q, { prefetch: 5 });
    await wq.publish('', q, Buffer.from('last'));
    await eventually(() => c.bufferedCount === 1, 'delivered');
    await wq.deleteQueue(q);
    assert.deepEqual(text(await c.poll({ maxRecords: 5, minRecords: 1, timeoutMs: 1000 })), ['last']);
    await expectSluice(
      c.poll({ maxRecords: 5, minRecords: 1, timeoutMs: 30_000 }),
      'SLUICE_TOPIC_UNKNOWN',
      /deleted/,
    );
    await c.close();
  });
});

// ---- broker restart: a private broker ----------------------------------------------------------------------------

const run = promisify(execFile);
const script = resolve(import.meta.dirname, '../../scripts/rabbitmq.sh');

describe('rabbitmq work queues: broker restart', { timeout: 300_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sluice-rmq-wq-restart-'));
  const rabbit = async (cmd: 'start' | 'restart' | 'stop'): Promise<string> => {
    const { stdout } = await run('bash', [script, cmd], {
      env: { ...process.env, SLUICE_RABBITMQ_STATE_DIR: stateDir },
      timeout: 120_000,
    });
    return stdout.trim();
  };
  let url = '';
  let wq: RabbitMqWorkQueues | undefined;

  before(async () => {
    url = await rabbit('start');
  });

  after(async () => {
    await wq?.close().catch(() => undefined);
    await rabbit('stop');
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('consumers resume, unacked messages come back, confirmed publishes survive, stale acks are dropped', async (t) => {
    wq = await openRabbitMqWorkQueues({ url, name: 'sluice-wq-restart', reconnectTimeoutMs: 90_000 });
    const q = uniq('durable');
    const s = uniq('stream');
    await wq.declareExchange(q, 'direct');
    await wq.declareQueue(q);
    await wq.bindQueue(q, q);
    await wq.declareQueue(s, { type: 'stream' });
    await wq.publishBatch(
      Array.from({ length: 10 }, (_, i) => ({ exchange: q, routingKey: '', body: Buffer.from(`a${i}`) })),
    );
    await wq.publishBatch(
      Array.from({ length: 10 }, (_, i) => ({ exchange: '', routingKey: s, body: Buffer.from(`s${i}`) })),
    );

    const c = await wq.consume(q, { prefetch: 5 });
    const held = await pollN(c, 5); // a0..a4, handed out, not acknowledged
    assert.deepEqual(text(held), ['a0', 'a1', 'a2', 'a3', 'a4']);
    const r = await wq.consume(s, { prefetch: 100, streamOffset: 'first' });
    const before = await pollN(r, 10);
    r.ackAll();
    assert.equal(r.lastStreamOffset, 9);

    // a publisher keeps going through the restart: confirmed ones must all survive, failures are retryable
    const confirmed: string[] = [];
    let retryable = 0;
    let stop = false;
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        for (;;) {
          try {
            await wq!.publish(q, '', Buffer.from(`b${i}`));
            confirmed.push(`b${i}`);
            break;
          } catch (err) {
            if (!(isSluiceError(err) && err.canRetry)) throw err;
            retryable++;
            if (stop) break;
          }
        }
      }
    })();
    await eventually(() => confirmed.length >= 5, 'publishing before the restart');
    const gen = wq.link.generation;
    await rabbit('restart');
    await eventually(() => wq!.link.generation > gen, 'reconnected', 90_000);
    const atReconnect = confirmed.length;
    await eventually(() => confirmed.length > atReconnect + 5, 'publishing after the restart', 90_000);
    stop = true;
    await loop;

    // acks for deliveries of the old connection are dropped, not sent on the new channel
    assert.equal(c.ack(held[0]!), false);
    assert.equal(c.ackAll(), 0);

    // the classic consumer resumed: everything comes (again), the held ones redelivered
    const expected = new Set([...Array.from({ length: 10 }, (_, i) => `a${i}`), ...confirmed]);
    const got = new Map<string, WorkQueueDelivery>();
    await eventually(
      async () => {
        for (const d of await c.poll({ maxRecords: 5, minRecords: 1, timeoutMs: 100 }))
          got.set(d.body.toString(), d);
        c.ackAll();
        return [...expected].every((v) => got.has(v));
      },
      'every confirmed message consumed after the restart',
      90_000,
    );
    for (const v of ['a0', 'a1', 'a2', 'a3', 'a4'])
      assert.equal(got.get(v)!.redelivered, true, `${v} redelivered`);
    assert.ok(c.generation > 1, 'the consumer subscribed again');

    // the stream reader continues after offset 9: nothing twice
    await wq.publish('', s, Buffer.from('s10'));
    const after = await pollN(r, 1, 90_000);
    assert.deepEqual(
      after.map((d) => [d.streamOffset, d.body.toString()]),
      [[10, 's10']],
    );
    assert.deepEqual(await r.poll({ maxRecords: 10, timeoutMs: 300 }), []);
    assert.equal(before.length, 10);
    t.diagnostic(
      `${confirmed.length} publishes confirmed around the restart, ${retryable} retryable failures`,
    );
    await c.close();
    await r.close();
  });
});
