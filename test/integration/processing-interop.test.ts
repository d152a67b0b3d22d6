/**
 * A sluice reproducer consuming chunks uploaded by the real OpenMSIStream DataFileUploadDirectory (openmsistream
 * from PyPI, in the venv) on a real Kafka broker: one result per file, keyed as OpenMSIStream keys results, with
 * the hash of exactly the bytes upstream uploaded.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../src/runtime/logger.ts';
import { openKafkaTransport } from '../../src/transport/kafka/index.ts';
import { HashReproducer } from '../unit/processing/helpers.ts';
import { readAll } from '../unit/processing/kill-harness.ts';
import {
  type Tree,
  uniqueName,
  upstream,
  waitFor,
  writeOpenMsiConfig,
  writeTree,
} from './interop-helpers.ts';
import { kafkaBootstrap } from './kafka-env.ts';

const bootstrap = kafkaBootstrap();

describe('OpenMSIStream DataFileUploadDirectory → sluice reproducer (real Kafka)', () => {
  it('produces one result per uploaded file with upstream result keys', { timeout: 240_000 }, async (t) => {
    const work = await mkdtemp(join(tmpdir(), 'sluice-repro-interop-'));
    after(() => rm(work, { recursive: true, force: true }));
    const transport = await openKafkaTransport({ bootstrapServers: bootstrap });
    const topic = uniqueName('py2repro');
    const results = `${topic}-results`;
    await transport.createTopic({ name: topic, partitions: 3 });
    await transport.createTopic({ name: results, partitions: 1 });
    const tree: Tree = new Map([
      ['root.csv', Buffer.from('t,temp\n0,21\n1,22\n')],
      ['xrd/scan 7/pattern.bin', Buffer.alloc(20_000, 7)],
      ['ünï/名前.txt', Buffer.from('héllo\n')],
    ]);
    const up = join(work, 'up');
    await writeTree(up, tree);
    const config = await writeOpenMsiConfig(work, bootstrap);
    const reproducer = new HashReproducer({
      transport,
      topic,
      producerTopic: results,
      outputDir: join(work, 'out'),
      groupId: uniqueName('repro-g'),
      exactlyOnce: true,
      logger: createLogger({ level: 'warn' }),
      sessionTimeoutMs: 6000,
    });
    const stop = new AbortController();
    const running = reproducer.run(stop.signal);
    // one teardown, in order: stop the reproducer, then close the transport under it
    t.after(async () => {
      stop.abort();
      await running;
      await transport.close();
    });
    const py = upstream('DataFileUploadDirectory', [
      up,
      '--config',
      config,
      '--topic_name',
      topic,
      '--chunk_size',
      '4096',
      '--upload_existing',
      '--watchdog_lag_time',
      '1',
    ]);
    t.after(() => py.kill());
    const got = await waitFor(
      'a result for every uploaded file',
      async () => {
        const rs = await readAll(transport, results);
        return rs.length >= tree.size ? rs : undefined;
      },
      {
        timeoutMs: 120_000,
        describe: () => `upstream:\n${py.tail()}\nsluice: ${JSON.stringify(reproducer.summary)}`,
      },
    );
    const byKey = new Map(
      got.map((r) => [
        r.key!.toString(),
        JSON.parse(r.value!.toString()) as { sha256: string; bytes: number },
      ]),
    );
    for (const [path, data] of tree) {
      const slash = path.lastIndexOf('/');
      const key = `${slash < 0 ? '' : path.slice(0, slash).replaceAll('/', '_')}_${path.slice(slash + 1)}_chunk_processing_result`;
      const r = byKey.get(key);
      assert.ok(r !== undefined, `no result keyed ${key}; got ${[...byKey.keys()].join(', ')}`);
      assert.equal(r.sha256, createHash('sha256').update(data).digest('hex'), path);
      assert.equal(r.bytes, data.length);
    }
    assert.equal(got.length, tree.size, 'exactly one result per file');
  });
});
