/**
 * The RabbitMQ transport survives a broker restart: acknowledged records and committed offsets are kept, the
 * producer and the consumer reconnect by themselves and carry on where they were.
 *
 * This test restarts a broker, so it starts its own (scripts/rabbitmq.sh with a private state dir, on its own free
 * ports) instead of the shared one in SLUICE_RABBITMQ_URL, and stops it by PID afterwards.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { isSluiceError } from '../../src/errors.ts';
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
    await rabbit('stop'); // a no-op when the last case stopped it
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('keeps acknowledged records and commits; producer and consumer reconnect and continue', async (t) => {
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

    // a second producer keeps sending, one record at a time, while the broker goes down and comes back: what was
    // acknowledged must survive; what failed retryably is sent again (a resend may duplicate, never lose)
    const busy = tr.producer();
    const acked: string[] = [];
    let retried = 0;
    let stop = false;
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        for (;;) {
          try {
            await busy.send({ topic, partition: i % 2, value: `busy${i}` });
            acked.push(`busy${i}`);
            break;
          } catch (err) {
            if (!(isSluiceError(err) && err.canRetry)) throw err;
            retried++;
          }
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    await rabbit('restart');
    const ackedBefore = acked.length;
    await new Promise((r) => setTimeout(r, 200));
    stop = true;
    await loop;
    assert.ok(acked.length > ackedBefore, 'sends go on after the restart');

    // the producer waits for the connection to come back, then sends; offsets continue after the old records
    const after = await producer.send(
      Array.from({ length: 10 }, (_, i) => ({ topic, partition: i % 2, value: `b${i}` })),
    );
    const ends = await tr.describeTopic(topic);
    for (const m of after) assert.ok(m.offset >= 10 && m.offset < ends.partitions[m.partition]!.endOffset);
    assert.deepEqual(
      after.filter((m) => m.partition === 0).map((m) => m.offset),
      [0, 1, 2, 3, 4].map((i) => after[0]!.offset + i),
      'consecutive offsets within one send',
    );

    // the same consumer carries on: only the new records, each once, in order per partition
    const total = ends.partitions[0]!.endOffset + ends.partitions[1]!.endOffset;
    const resumed = await readN(c, total - 20);
    for (const part of [0, 1]) {
      assert.deepEqual(
        resumed.filter((r) => r.partition === part).map((r) => r.offset),
        Array.from({ length: ends.partitions[part]!.endOffset - 10 }, (_, i) => 10 + i),
        `partition ${part} continues at offset 10, each record once`,
      );
    }
    const resumedValues = new Set(values(resumed));
    for (const v of acked) assert.ok(resumedValues.has(v), `acknowledged ${v} survived the restart`);
    for (let i = 0; i < 10; i++) assert.ok(resumedValues.has(`b${i}`));
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
      [ends.partitions[0]!.endOffset, ends.partitions[1]!.endOffset],
    );
    await tr2.producer().send({ topic, partition: 1, value: 'c0' });
    assert.deepEqual(values(await readN(c2, 1)), ['c0']);

    // and every acknowledged record is still there for a fresh group
    const all = values(await readN(tr2.consumer({ groupId: `${group}-all`, topics: [topic] }), total + 1));
    for (const v of [...Array.from({ length: 20 }, (_, i) => `a${i}`), ...acked, 'c0']) {
      assert.ok(all.includes(v), `${v} is stored`);
    }
    const d = await tr2.describeTopic(topic);
    assert.deepEqual(
      d.partitions.map((p) => [p.partition, p.startOffset, p.endOffset]),
      [
        [0, 0, ends.partitions[0]!.endOffset],
        [1, 0, ends.partitions[1]!.endOffset + 1],
      ],
    );
    t.diagnostic(`${acked.length} records acknowledged around the restart, ${retried} retried sends`);
  });

  it('stop ends the node and its epmd, by PID, and deletes the run directory', async () => {
    for (const c of consumers) await c.close().catch(() => undefined);
    for (const t of opened) await t.close().catch(() => undefined);
    await rabbit('stop');
    // every process started for this state dir carries it in its environment (scripts/rabbitmq.sh exports it)
    const marker = `SLUICE_RABBITMQ_STATE_DIR=${stateDir}`;
    const left: string[] = [];
    for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      let env = '';
      try {
        env = readFileSync(`/proc/${pid}/environ`, 'latin1');
      } catch {
        continue; // gone meanwhile, or not ours to read
      }
      if (env.split('\0').includes(marker)) {
        left.push(
          `${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').slice(0, 120)}`,
        );
      }
    }
    assert.deepEqual(left, [], 'processes of the stopped broker still running');
    assert.deepEqual(
      readdirSync(stateDir).filter((f) => f.startsWith('run-')),
      [],
      'the run directory is deleted',
    );
  });
});
