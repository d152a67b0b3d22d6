/**
 * The channel suite on real RabbitMQ (RMQChannelReader / RMQChannelWriter), plus pypz-rmq-io's queue vectors:
 * uncommitted messages stay in the queue, committed ones are gone, and a read returns at most maxPollRecords.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import {
  finishReader,
  finishWriter,
  RMQChannelReader,
  RMQChannelWriter,
  startReader,
  startWriter,
} from '../../src/channels/index.ts';
import { openRabbitMqWorkQueues } from '../../src/transport/rabbitmq/index.ts';
import { runChannelSuite } from '../channels/suite.ts';
import { eventually } from '../conformance/suite.ts';
import { rabbitMqUrl } from './rabbitmq-env.ts';

const logger = pino({ level: 'silent' });

runChannelSuite('rabbitmq', {
  reader: (o) => new RMQChannelReader({ ...o, url: rabbitMqUrl(), logger }),
  writer: (o) => new RMQChannelWriter({ ...o, url: rabbitMqUrl(), logger }),
  positionalOffsets: false,
  roundRobin: false,
});

describe('RMQ channel queue vectors (pypz-rmq-io channel_tests)', { timeout: 120_000 }, () => {
  const setup = async (maxPollRecords: number, count: number) => {
    const ch = `sluice-test.rmqvec-${randomUUID().slice(0, 8)}.input_port`;
    const reader = new RMQChannelReader<Buffer>({
      channelName: ch,
      contextName: ch,
      url: rabbitMqUrl(),
      logger,
      maxPollRecords,
      heartbeatIntervalMs: 200,
    });
    const writer = new RMQChannelWriter<string>({
      channelName: ch,
      contextName: 'vec.output_port',
      url: rabbitMqUrl(),
      logger,
      heartbeatIntervalMs: 200,
    });
    const started = startReader(reader, { writerWaitTimeoutMs: 60_000 });
    await startWriter(writer, { portOpenTimeoutMs: 60_000 });
    await started;
    await writer.invokeWriteRecords(Array.from({ length: count }, (_, i) => `m${i}`));
    return { ch, reader, writer };
  };
  const ready = async (queue: string) => {
    const wq = await openRabbitMqWorkQueues({ url: rabbitMqUrl() });
    try {
      return (await wq.checkQueue(queue)).messageCount;
    } finally {
      await wq.close();
    }
  };

  for (const commit of [false, true]) {
    it(`3 messages read ${commit ? 'with' : 'without'} a commit: ${commit ? 'none remain' : 'all remain'} in the queue after close`, async () => {
      const { ch, reader, writer } = await setup(100, 3);
      const got: Buffer[] = [];
      await eventually(async () => {
        got.push(...(await reader.invokeReadRecords()));
        return got.length === 3;
      }, 'three messages read');
      if (commit) await reader.invokeCommitCurrentReadOffset();
      await finishWriter(writer);
      await finishReader(reader, { deleteResources: false });
      await eventually(
        async () => (await ready(ch)) === (commit ? 0 : 3),
        `${commit ? 0 : 3} messages ready in ${ch}`,
      );
    });
  }

  for (const max of [1, 27]) {
    it(`maxPollRecords ${max}: 100 published, each read returns at most ${max}, commits release the window`, async () => {
      const { reader, writer } = await setup(max, 100);
      let total = 0;
      await eventually(async () => {
        const got = await reader.invokeReadRecords();
        assert.ok(got.length <= max, `a read returned ${got.length} > ${max}`);
        total += got.length;
        await reader.invokeCommitCurrentReadOffset();
        return total === 100;
      }, 'all 100 read');
      await finishWriter(writer);
      await finishReader(reader);
    });
  }

  it('a reader that never commits gets empty reads once maxPollRecords are unacknowledged', async () => {
    const { reader, writer } = await setup(5, 20);
    const got: Buffer[] = [];
    await eventually(async () => {
      got.push(...(await reader.invokeReadRecords()));
      return got.length === 5;
    }, 'the first window');
    for (let i = 0; i < 3; i++)
      assert.deepEqual(await reader.invokeReadRecords(), [], 'no more before a commit');
    await reader.invokeCommitCurrentReadOffset();
    await eventually(async () => (await reader.invokeReadRecords()).length > 0, 'more after the commit');
    await finishWriter(writer);
    await reader.invokeCommitCurrentReadOffset();
    await finishReader(reader);
  });
});
