/**
 * Channel behaviour every technology must have, run against a factory of readers and writers (embedded in the unit
 * tier; Kafka and RabbitMQ in the integration tier): the lifecycle and status protocol, status history replay, end
 * of input, acknowledgements, Avro batches, share vs broadcast groups, and pypz's offset vectors.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, it } from 'node:test';
import type {
  ChannelOptions,
  ChannelReader,
  ChannelWriter,
  ReaderOptions,
} from '../../src/channels/index.ts';
import {
  ChannelStatus,
  finishReader,
  finishWriter,
  readToEnd,
  startReader,
  startWriter,
} from '../../src/channels/index.ts';
import { isSluiceError } from '../../src/errors.ts';
import { eventually } from '../conformance/suite.ts';

export interface ChannelFactory {
  reader<T = unknown>(options: ReaderOptions): ChannelReader<T> | Promise<ChannelReader<T>>;
  writer<T = unknown>(options: ChannelOptions): ChannelWriter<T> | Promise<ChannelWriter<T>>;
  /** Offsets are positions that survive a restart (Kafka-like); false for queues (RabbitMQ: acks). */
  positionalOffsets: boolean;
  /** Share mode splits records evenly by writer-side round robin (Kafka); false: competing consumers (RabbitMQ). */
  roundRobin: boolean;
}

const SCHEMA = JSON.stringify({
  type: 'record',
  name: 'Item',
  fields: [
    { name: 'id', type: 'int' },
    { name: 'text', type: 'string' },
  ],
});

const quiet = { heartbeatIntervalMs: 200 };

/** Reads until `n` records arrived (bounded). */
async function readCount<T>(reader: ChannelReader<T>, n: number, timeoutMs = 60_000): Promise<T[]> {
  const out: T[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < n && Date.now() < deadline) out.push(...(await reader.invokeReadRecords()));
  assert.equal(out.length, n, `expected ${n} records, got ${out.length} in time`);
  return out;
}

/**
 * Wraps reader/writer makers so that every channel they make is closed after each test, also when the test failed
 * half-way (an open connection or heartbeat would keep the test process alive).
 */
export function closingAfterEach<F extends Pick<ChannelFactory, 'reader' | 'writer'>>(given: F): F {
  const made: Array<ChannelReader<unknown> | ChannelWriter<unknown>> = [];
  afterEach(async () => {
    for (const ch of made.splice(0)) if (!ch.closed) await ch.invokeCloseChannel().catch(() => undefined);
  });
  return {
    ...given,
    reader: async <T>(o: ReaderOptions) => {
      const r = await given.reader<T>(o);
      made.push(r as ChannelReader<unknown>);
      return r;
    },
    writer: async <T>(o: ChannelOptions) => {
      const w = await given.writer<T>(o);
      made.push(w as ChannelWriter<unknown>);
      return w;
    },
  };
}

export function runChannelSuite(name: string, given: ChannelFactory): void {
  const factory = closingAfterEach(given);
  describe(`channels: ${name}`, { timeout: 240_000 }, () => {
    const channel = (p: string) => `sluice-test.${p}-${randomUUID().slice(0, 8)}.input_port`;

    it('writer → reader: every record, in order; each side sees the other start, stop and close', async () => {
      const ch = channel('basic');
      const reader = await factory.reader<{ id: number; text: string }>({
        channelName: ch,
        contextName: ch,
        format: { avroSchema: SCHEMA },
        ...quiet,
      });
      const seenByReader: string[] = [];
      reader.onStatusMessage((m) => {
        if (m.status !== ChannelStatus.HealthCheck) seenByReader.push(m.status);
      });
      const writer = await factory.writer<{ id: number; text: string }>({
        channelName: ch,
        contextName: 'sluice-test.producer.output_port',
        format: { avroSchema: SCHEMA },
        ...quiet,
      });
      const seenByWriter: string[] = [];
      writer.onStatusMessage((m) => {
        if (m.status !== ChannelStatus.HealthCheck) seenByWriter.push(m.status);
      });
      const readerStarted = startReader(reader, { writerWaitTimeoutMs: 60_000 });
      await startWriter(writer, { portOpenTimeoutMs: 60_000 });
      await readerStarted;
      const sent = Array.from({ length: 250 }, (_, i) => ({ id: i, text: `récord ${i}` }));
      for (let i = 0; i < sent.length; i += 50) await writer.invokeWriteRecords(sent.slice(i, i + 50));
      await eventually(async () => {
        await writer.invokeSyncStatusUpdate();
        return seenByWriter.includes('Started');
      }, 'the writer sees the reader start');
      await finishWriter(writer);
      const got: Array<{ id: number; text: string }> = [];
      await readToEnd(reader, (records) => {
        got.push(...records);
      });
      assert.deepEqual(got, sent, 'all records, in order, decoded from Avro');
      assert.deepEqual(
        seenByReader.filter((s) => s !== 'Opened'),
        ['Started', 'Stopped', 'Closed'],
        'the reader saw the writer start, stop and close',
      );
      assert.equal(reader.receivedRecordCount, 250);
      assert.equal(writer.sentRecordCount, 250);
      assert.equal(reader.healthPayload().receivedRecordCount, 250);
      await finishReader(reader);
    });

    it('status history replays on open: a writer that finished before the reader opened is seen finished', async () => {
      const ch = channel('replay');
      const reader = await factory.reader<Buffer>({ channelName: ch, contextName: ch, ...quiet });
      await reader.invokeResourceCreation();
      const writer = await factory.writer<string>({
        channelName: ch,
        contextName: 'early.output_port',
        ...quiet,
      });
      await startWriter(writer, { portOpenTimeoutMs: 60_000 });
      await writer.invokeWriteRecords(['a', 'b', 'c']);
      await finishWriter(writer);
      await startReader(reader, { writerWaitTimeoutMs: 60_000 });
      const monitor = [...reader.monitors.values()][0];
      assert.equal(monitor?.status, 'Closed', 'the replayed history ends with Closed');
      const got: string[] = [];
      await readToEnd(reader, (r) => {
        got.push(...r.map((b) => b.toString('utf8')));
      });
      assert.deepEqual(got, ['a', 'b', 'c']);
      await finishReader(reader);
    });

    it('acknowledgements: the writer knows when every healthy reader acknowledged; a write clears them', async () => {
      const ch = channel('ack');
      const reader = await factory.reader({ channelName: ch, contextName: ch, format: 'json', ...quiet });
      const writer = await factory.writer({
        channelName: ch,
        contextName: 'ack.output_port',
        format: 'json',
        ...quiet,
      });
      const readerStarted = startReader(reader, { writerWaitTimeoutMs: 60_000 });
      await startWriter(writer, { portOpenTimeoutMs: 60_000 });
      await readerStarted;
      await writer.invokeWriteRecords([{ n: 1 }]);
      assert.deepEqual(await readCount(reader, 1), [{ n: 1 }]);
      await reader.acknowledgeInput();
      await eventually(async () => {
        await writer.invokeSyncStatusUpdate();
        return writer.monitors.size === 1 && writer.isAllAcknowledged();
      }, 'the writer sees the acknowledgement');
      await writer.invokeWriteRecords([{ n: 2 }]);
      assert.equal(writer.isAllAcknowledged(), false, 'a write clears the acknowledgements');
      await finishWriter(writer);
      await readToEnd(reader, () => {});
      await finishReader(reader);
    });

    it('Avro: one invalid record fails the whole batch with a readable error; nothing of it is sent', async () => {
      const ch = channel('avro');
      const reader = await factory.reader({
        channelName: ch,
        contextName: ch,
        format: { avroSchema: SCHEMA },
        ...quiet,
      });
      const writer = await factory.writer<unknown>({
        channelName: ch,
        contextName: 'avro.output_port',
        format: { avroSchema: SCHEMA },
        ...quiet,
      });
      const readerStarted = startReader(reader, { writerWaitTimeoutMs: 60_000 });
      await startWriter(writer, { portOpenTimeoutMs: 60_000 });
      await readerStarted;
      await assert.rejects(
        writer.invokeWriteRecords([
          { id: 1, text: 'ok' },
          { id: 'two', text: 'bad' },
          { id: 3, text: 'ok' },
        ]),
        (err: unknown) =>
          isSluiceError(err, 'SLUICE_RECORD_INVALID') &&
          /Record 1/.test(err.message) &&
          /id: expected "int"/.test(err.message),
      );
      assert.equal(writer.sentRecordCount, 0);
      await writer.invokeWriteRecords([{ id: 4, text: 'after' }]);
      await finishWriter(writer);
      const got: unknown[] = [];
      await readToEnd(reader, (r) => {
        got.push(...r);
      });
      assert.deepEqual(got, [{ id: 4, text: 'after' }], 'only the valid batch arrived');
      await finishReader(reader);
    });

    it('share mode: replicas split the records; broadcast mode: every replica gets all', async () => {
      for (const groupMode of [false, true]) {
        const ch = channel(groupMode ? 'bcast' : 'share');
        const group = `${ch}.group`;
        const readers = await Promise.all(
          [0, 1, 2].map((i) =>
            factory.reader<Buffer>({
              channelName: ch,
              contextName: i === 0 ? ch : `${ch}_${i}`,
              groupName: group,
              groupIndex: i,
              groupSize: 3,
              groupMode,
              ...quiet,
            }),
          ),
        );
        const writer = await factory.writer<string>({
          channelName: ch,
          contextName: 'rr.output_port',
          ...quiet,
        });
        const started = Promise.all(readers.map((r) => startReader(r, { writerWaitTimeoutMs: 60_000 })));
        await startWriter(writer, { portOpenTimeoutMs: 60_000 });
        await started;
        await writer.invokeWriteRecords(Array.from({ length: 9 }, (_, i) => `r${i}`));
        await finishWriter(writer);
        const got = await Promise.all(
          readers.map(async (r) => {
            const out: string[] = [];
            await readToEnd(r, (recs) => {
              out.push(...recs.map((b) => b.toString('utf8')));
            });
            return out;
          }),
        );
        if (groupMode) {
          for (const g of got)
            assert.deepEqual(g.sort(), Array.from({ length: 9 }, (_, i) => `r${i}`).sort());
        } else {
          assert.deepEqual(
            got.flat().sort(),
            Array.from({ length: 9 }, (_, i) => `r${i}`).sort(),
            'each record once',
          );
          if (factory.roundRobin) {
            for (const g of got)
              assert.equal(g.length, 3, `round robin: 3 records per replica, got ${JSON.stringify(got)}`);
          }
        }
        await Promise.all(readers.slice(1).map((r) => finishReader(r)));
        await finishReader(readers[0]!, { principalCloseDelayMs: 0 });
      }
    });

    it('the writer cannot open before the reader created the resources; portOpenTimeoutMs raises', async () => {
      const ch = channel('noreader');
      const writer = await factory.writer({ channelName: ch, contextName: 'lonely.output_port', ...quiet });
      assert.equal(await writer.invokeOpenChannel(), false);
      await assert.rejects(startWriter(writer, { portOpenTimeoutMs: 300 }), (err: unknown) =>
        isSluiceError(err, 'SLUICE_TIMEOUT'),
      );
      await writer.invokeCloseChannel();
    });

    if (factory.positionalOffsets) {
      it('offsets: restart from a committed offset compensates the read count (pypz vectors)', async () => {
        const ch = channel('offsets');
        const open = async () => {
          const r = await factory.reader<Buffer>({ channelName: ch, contextName: ch, ...quiet });
          await startReader(r, { writerWaitTimeoutMs: 60_000 });
          return r;
        };
        const writer = await factory.writer<string>({
          channelName: ch,
          contextName: 'off.output_port',
          ...quiet,
        });
        const writerStarted = startWriter(writer, { portOpenTimeoutMs: 60_000 });
        const first = await open();
        await writerStarted;
        await assert.rejects(first.invokeCommitOffset(10), (e: unknown) =>
          isSluiceError(e, 'SLUICE_CHANNEL_OFFSET'),
        );
        await writer.invokeWriteRecords(Array.from({ length: 10 }, (_, i) => `${i}`));
        await readCount(first, 10);
        assert.equal(first.readRecordCount, 10);
        assert.equal(first.readRecordOffset, 10);
        await assert.rejects(first.invokeCommitOffset(11), (e: unknown) =>
          isSluiceError(e, 'SLUICE_CHANNEL_OFFSET'),
        );
        await first.invokeCommitOffset(10);
        await assert.rejects(first.invokeCommitOffset(5), (e: unknown) =>
          isSluiceError(e, 'SLUICE_CHANNEL_OFFSET'),
        );
        await first.invokeCommitOffset(5, { rewind: true });
        await finishReader(first, { deleteResources: false });

        const second = await open();
        assert.equal(second.initialRecordOffset, 5, 'the new reader loads the committed offset');
        const again = await readCount(second, 5);
        assert.deepEqual(
          again.map((b) => b.toString()),
          ['5', '6', '7', '8', '9'],
        );
        assert.equal(second.readRecordCount, 5);
        assert.equal(second.readRecordOffset, 10);
        await writer.invokeWriteRecords(Array.from({ length: 10 }, (_, i) => `${10 + i}`));
        await readCount(second, 10);
        assert.equal(second.readRecordCount, 15);
        assert.equal(second.readRecordOffset, 20);
        await second.invokeCommitOffset(15); // relative: 15 + initial 5 = 20
        assert.equal(second.lastOffsetCommitted, 20);
        await finishReader(second, { deleteResources: false });

        const third = await open();
        assert.equal(third.initialRecordOffset, 20);
        await finishWriter(writer);
        assert.equal(await readToEnd(third, () => {}), 0, 'nothing left after the last commit');
        await finishReader(third);
      });

      it('offsets: without any commit a restarted reader starts from 0', async () => {
        const ch = channel('nocommit');
        const r1 = await factory.reader<Buffer>({ channelName: ch, contextName: ch, ...quiet });
        const r1Started = startReader(r1, { writerWaitTimeoutMs: 60_000 });
        const writer = await factory.writer<string>({
          channelName: ch,
          contextName: 'nc.output_port',
          ...quiet,
        });
        await startWriter(writer, { portOpenTimeoutMs: 60_000 });
        await r1Started;
        await writer.invokeWriteRecords(['x', 'y']);
        await readCount(r1, 2);
        await r1.invokeCloseChannel();
        const r2 = await factory.reader<Buffer>({ channelName: ch, contextName: ch, ...quiet });
        await startReader(r2, { writerWaitTimeoutMs: 60_000 });
        assert.equal(r2.initialRecordOffset, 0);
        assert.deepEqual(
          (await readCount(r2, 2)).map((b) => b.toString()),
          ['x', 'y'],
        );
        await finishWriter(writer);
        await readToEnd(r2, () => {});
        await finishReader(r2);
      });
    }
  });
}
