/**
 * The RabbitMQ transport survives a broker restart: acknowledged records and committed offsets are kept, the
 * producer and the consumer reconnect by themselves and carry on where they were.
 *
 * This test restarts a broker, so it starts its own (scripts/rabbitmq.sh with a private state dir, on its own free
 * ports) instead of the shared one in SLUICE_RABBITMQ_URL, and stops it by PID afterwards.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { openRabbitMqTransport, type RabbitMqTransport } from '../../src/transport/rabbitmq/index.ts';
import type { ConsumedRecord, Consumer } from '../../src/transport/types.ts';
import { readN } from '../conformance/suite.ts';

const run = promisify(execFile);
const script = resolve(import.meta.dirname, '../../scripts/rabbitmq.sh');
const stateDir = mkdtempSync(join(tmpdir(), 'sluice-rmq-restart-'));

async function rabbit(cmd: 'start' | 'restart' | 'stop'): Promise<string> {
  const { stdout } = await run('bash', [script, cmd], {
    env: { ...process.env, SLUICE_RABBITMQ_STATE_DIR: stateDir },
    timeout: 120_000,
  });
  return stdout.trim();
}

const values = (rs: ConsumedRecord[]): string[] => rs.map((r) => r.value!.toString('utf8'));

describe('rabbitmq: broker restart', { timeout: 300_000 }, () => {
  let url = '';
  const opened: RabbitMqTransport[] = [];
  const consumers: Consumer[] = [];

  before(async () => {
    url = await rabbit('start');
    assert.match(url, /^amqp:\/\/guest:guest@127\.0\.0\.1:\d+$/);
  });

  after(async () => {
    for (const c of consumers) await c.close().catch(() => undefined);
    for (const t of opened) await t.close().catch(() => undefined);
    await rabbit('stop');
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('keeps acknowledged records and commits; producer and consumer reconnect and continue', async () => {
    const tr = await openRabbitMqTransport({ url, clientId: 'sluice-restart', reconnectTimeoutMs: 90_000 });
    opened.push(tr);
    const topic = `restart-${Date.now()}`;
    const group = `g-${Date.now()}`;
    await tr.createTopic({ name: topic, partitions: 2 });
    const producer = tr.producer();
    const before = await producer.send(
      Array.from({ length: 20 }, (_, i) => ({ topic, partition: i % 2, value: `a${i}` })),
    );
    assert.deepEqual(
      before.map((m) => m.offset),
      Array.from({ length: 20 }, (_, i) => Math.floor(i / 2)),
    );

    const c = tr.consumer({ groupId: group, topics: [topic], sessionTimeoutMs: 3000 });
    consumers.push(c);
    const firstHalf = await readN(c, 20);
    assert.deepEqual(new Set(values(firstHalf)), new Set(Array.from({ length: 20 }, (_, i) => `a${i}`)));
    await c.commit();
    assert.deepEqual(
      await c.committed([
        { topic, partition: 0 },
        { topic, partition: 1 },
      ]),
      [10, 10],
    );

    await rabbit('restart');

    // the producer waits for the connection to come back, then sends; offsets continue after the old records
    const after = await producer.send(
      Array.from({ length: 10 }, (_, i) => ({ topic, partition: i % 2, value: `b${i}` })),
    );
    assert.deepEqual(
      after.map((m) => [m.partition, m.offset]),
      Array.from({ length: 10 }, (_, i) => [i % 2, 10 + Math.floor(i / 2)]),
    );

    // the same consumer carries on: only the new records, each once, in order per partition
    const resumed = await readN(c, 10);
    assert.deepEqual(
      resumed.filter((r) => r.partition === 0).map((r) => r.offset),
      [10, 11, 12, 13, 14],
    );
    assert.deepEqual(new Set(values(resumed)), new Set(Array.from({ length: 10 }, (_, i) => `b${i}`)));
    assert.deepEqual(await c.poll({ timeoutMs: 500 }), [], 'nothing delivered twice');
    await c.commit();
    await c.close();

    // a new member of the group starts after the commits made before and after the restart
    const tr2 = await openRabbitMqTransport({ url, clientId: 'sluice-restart-2' });
    opened.push(tr2);
    const c2 = tr2.consumer({ groupId: group, topics: [topic], sessionTimeoutMs: 3000 });
    consumers.push(c2);
    assert.deepEqual(
      await c2.committed([
        { topic, partition: 0 },
        { topic, partition: 1 },
      ]),
      [15, 15],
    );
    await tr2.producer().send({ topic, partition: 1, value: 'c0' });
    assert.deepEqual(values(await readN(c2, 1)), ['c0']);

    // and every acknowledged record is still there for a fresh group
    const all = await readN(tr2.consumer({ groupId: `${group}-all`, topics: [topic] }), 31);
    assert.deepEqual(
      values(all).sort(),
      [
        ...Array.from({ length: 20 }, (_, i) => `a${i}`),
        ...Array.from({ length: 10 }, (_, i) => `b${i}`),
        'c0',
      ].sort(),
    );
    const d = await tr2.describeTopic(topic);
    assert.deepEqual(
      d.partitions.map((p) => [p.partition, p.startOffset, p.endOffset]),
      [
        [0, 0, 15],
        [1, 0, 16],
      ],
    );
  });
});
