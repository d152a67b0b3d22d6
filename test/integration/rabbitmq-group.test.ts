/**
 * Consumer groups on RabbitMQ beyond the conformance suite: a rebalance while a member holds partitions (onRevoke
 * can still commit), and a member that dies (kill -9, no goodbye): the broker drops its connection and with it
 * its partition leases, the survivor stops hearing its heartbeats and takes its partitions over, and continues
 * after the dead member's last commit (uncommitted records are delivered again, committed ones are not).
 *
 * The dying member is this same file run as a child process with SLUICE_RMQ_GROUP_CHILD set (see the bottom).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openRabbitMqTransport } from '../../src/transport/rabbitmq/index.ts';
import type { ConsumedRecord } from '../../src/transport/types.ts';
import { eventually } from '../conformance/suite.ts';
import { rabbitMqUrl } from './rabbitmq-env.ts';

const SESSION_MS = 3000;

async function child(url: string, topic: string, group: string): Promise<void> {
  const tr = await openRabbitMqTransport({ url, clientId: 'sluice-group-child' });
  const c = tr.consumer({ groupId: group, topics: [topic], sessionTimeoutMs: SESSION_MS });
  const counts = new Map<number, number>();
  let reported = '';
  for (;;) {
    for (const r of await c.poll({ timeoutMs: 200 }))
      counts.set(r.partition, (counts.get(r.partition) ?? 0) + 1);
    const mine = c.assignment().map((p) => p.partition);
    // whenever it has read all 10 records of each partition it holds: commit half of each and report what it holds
    // (its share can still change while the split settles; the parent goes by the last report)
    if (
      mine.length > 0 &&
      JSON.stringify(mine) !== reported &&
      mine.every((p) => (counts.get(p) ?? 0) >= 10)
    ) {
      await c.commit(mine.map((partition) => ({ topic, partition, offset: 5 })));
      reported = JSON.stringify(mine);
      process.stdout.write(`${JSON.stringify({ committed: mine })}\n`);
    }
  }
}

if (process.env.SLUICE_RMQ_GROUP_CHILD !== undefined) {
  const [url, topic, group] = JSON.parse(process.env.SLUICE_RMQ_GROUP_CHILD) as [string, string, string];
  await child(url, topic, group);
} else {
  const url = rabbitMqUrl();

  describe('rabbitmq: rebalance hands partitions over after onRevoke', { timeout: 120_000 }, () => {
    it('a member commits in onRevoke when a newcomer takes a partition; the newcomer starts there', async (t) => {
      const tr = await openRabbitMqTransport({ url, clientId: 'sluice-group-revoke' });
      const tr2 = await openRabbitMqTransport({ url, clientId: 'sluice-group-revoke-2' });
      t.after(async () => {
        await tr.close();
        await tr2.close();
      });
      const suffix = Math.random().toString(36).slice(2, 10);
      const topic = `group-revoke-${suffix}`;
      const group = `g-${suffix}`;
      await tr.createTopic({ name: topic, partitions: 2 });
      await tr
        .producer()
        .send(Array.from({ length: 20 }, (_, i) => ({ topic, partition: i % 2, value: `v${i}` })));
      const revoked: number[] = [];
      const first = tr.consumer({
        groupId: group,
        topics: [topic],
        sessionTimeoutMs: SESSION_MS,
        onRevoke: async (ps) => {
          revoked.push(...ps.map((p) => p.partition));
          await first.commit(); // commits the positions of the revoked partitions too
        },
      });
      const got: ConsumedRecord[] = [];
      await eventually(async () => {
        got.push(...(await first.poll({ timeoutMs: 200 })));
        return got.length === 20;
      }, 'the first member to read both partitions');
      assert.equal(first.assignment().length, 2);

      const second = tr2.consumer({ groupId: group, topics: [topic], sessionTimeoutMs: SESSION_MS });
      const late: ConsumedRecord[] = [];
      await eventually(async () => {
        const [a] = await Promise.all([first.poll({ timeoutMs: 100 }), second.poll({ timeoutMs: 100 })]);
        assert.deepEqual(a, [], 'the first member has nothing new');
        late.push(...(await second.poll({ timeoutMs: 100 })));
        return first.assignment().length === 1 && second.assignment().length === 1;
      }, 'the members to split the partitions');
      assert.equal(revoked.length, 1, 'onRevoke was called for the partition handed over');
      assert.deepEqual(second.assignment(), [{ topic, partition: revoked[0] }]);
      assert.deepEqual(
        late,
        [],
        'the newcomer starts after the commit made in onRevoke: nothing is delivered again',
      );
      assert.deepEqual(await second.committed([{ topic, partition: revoked[0]! }]), [10]);
      await tr.producer().send({ topic, partition: revoked[0]!, value: 'new' });
      const next = await second.poll({ timeoutMs: 10_000 });
      assert.deepEqual(
        next.map((r) => [r.offset, r.value!.toString()]),
        [[10, 'new']],
      );
    });
  });

  describe('rabbitmq: a group member killed with SIGKILL', { timeout: 180_000 }, () => {
    it('loses its partitions to the survivor, which resumes after its commits', async (t) => {
      const tr = await openRabbitMqTransport({ url, clientId: 'sluice-group' });
      const suffix = Math.random().toString(36).slice(2, 10);
      const topic = `group-kill-${suffix}`;
      const group = `g-${suffix}`;
      let proc: ChildProcess | undefined;
      t.after(async () => {
        if (proc !== undefined && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        await tr.close();
      });
      await tr.createTopic({ name: topic, partitions: 4 });
      await tr.producer().send(
        Array.from({ length: 40 }, (_, i) => ({
          topic,
          partition: i % 4,
          value: `${i % 4}:${Math.floor(i / 4)}`,
        })),
      );

      proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
        env: { ...process.env, SLUICE_RMQ_GROUP_CHILD: JSON.stringify([url, topic, group]) },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const lines = createInterface({ input: proc.stdout! });

      const survivor = tr.consumer({ groupId: group, topics: [topic], sessionTimeoutMs: SESSION_MS });
      const seen: ConsumedRecord[] = [];
      let childPartitions: number[] | undefined;
      lines.on('line', (l) => {
        childPartitions = (JSON.parse(l) as { committed: number[] }).committed;
      });
      // the survivor may still be waiting for a lease the child is handing over, and the child may still report
      await eventually(async () => {
        seen.push(...(await survivor.poll({ timeoutMs: 200 })));
        assert.equal(proc!.exitCode, null, 'the child is still running');
        if (childPartitions === undefined) return false;
        const all = [...survivor.assignment().map((p) => p.partition), ...childPartitions];
        return all.length === 4 && new Set(all).size === 4;
      }, 'the two members to split the four partitions, the child having committed its share');
      const mine = survivor.assignment().map((p) => p.partition);
      assert.ok(mine.length > 0 && childPartitions!.length > 0, 'both members hold partitions');
      await eventually(async () => {
        seen.push(...(await survivor.poll({ timeoutMs: 200 })));
        // up to the last record of each of its partitions (where it starts depends on who held it before)
        return mine.every((p) => seen.some((r) => r.partition === p && r.offset === 9));
      }, 'the survivor to read its own partitions');
      await survivor.commit();

      proc.kill('SIGKILL');
      await once(proc, 'exit');

      const after: ConsumedRecord[] = [];
      await eventually(async () => {
        after.push(...(await survivor.poll({ timeoutMs: 200 })));
        return survivor.assignment().length === 4 && after.length >= childPartitions!.length * 5;
      }, 'the survivor to take over the dead member’s partitions and read what it had not committed');
      assert.deepEqual(
        await survivor.poll({ timeoutMs: 500 }),
        [],
        'nothing more: committed records stay consumed',
      );
      for (const p of childPartitions!) {
        assert.deepEqual(
          after.filter((r) => r.partition === p).map((r) => r.offset),
          [5, 6, 7, 8, 9],
          `partition ${p} resumes at the dead member's commit`,
        );
      }
      assert.ok(
        after.every((r) => childPartitions!.includes(r.partition)),
        'the survivor’s own partitions are not delivered again',
      );
      await survivor.close();
    });
  });
}
