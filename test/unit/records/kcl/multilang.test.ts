import assert from 'node:assert/strict';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import {
  CheckpointError,
  converse,
  inProcessChild,
  isCheckpointError,
  KCL_ERROR_NAMES,
  KCLProcess,
  LineReader,
  type RecordProcessorV2,
  spawnChild,
} from '../../../../src/records/kcl/index.ts';
import {
  batch,
  init,
  reply,
  ScriptedProcessor,
  SPEC_INPUT,
  SPEC_OUTPUT,
  SpecV1Processor,
  status,
} from './helpers.ts';

const ticks = async (n = 10): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

/** Collects everything a stream emits (as text). */
function tap(stream: PassThrough | NodeJS.ReadableStream): () => string {
  const chunks: string[] = [];
  stream.on('data', (c: Buffer | string) => chunks.push(c.toString()));
  return () => chunks.join('');
}

describe('multilang: the spec conversation vector (section 7)', () => {
  it('a v1 processor answers exactly the six messages, with empty stderr', async () => {
    const processor = new SpecV1Processor();
    const c = await converse(inProcessChild(processor), SPEC_INPUT);
    assert.deepEqual(c.messages, SPEC_OUTPUT);
    assert.equal(c.stderr, '');
    assert.deepEqual(c.strayLines, []);
    assert.deepEqual(c.violations, []);
    assert.deepEqual(c.unsent, []);
    assert.equal(c.exitCode, 0);
    assert.equal(processor.shardId, 'shardId-123');
  });

  it('a v2 and a v3 processor with the same behaviour answer the same', async () => {
    const v2: RecordProcessorV2 = {
      version: 2,
      initialize() {},
      async processRecords({ records, checkpointer }) {
        const seq = records[0]!.sequenceNumber;
        await checkpointer.checkpoint(seq).catch(() => checkpointer.checkpoint(seq));
      },
      async shutdown({ reason, checkpointer }) {
        if (reason === 'TERMINATE') await checkpointer.checkpoint();
      },
    };
    const v3 = new ScriptedProcessor({
      processRecords: (records, cp) =>
        cp.checkpoint('456').catch(() => cp.checkpoint(records[0]!.sequenceNumber)),
      shardEnded: (cp) => cp.checkpoint(),
    });
    for (const p of [v2, v3]) {
      const c = await converse(inProcessChild(p), SPEC_INPUT);
      assert.deepEqual(c.messages, SPEC_OUTPUT);
      assert.equal(c.stderr, '');
      assert.equal(c.exitCode, 0);
    }
  });

  it('writes every message as "\\n" + json + "\\n" and nothing else on stdout', async () => {
    const child = inProcessChild(new SpecV1Processor());
    const raw = tap(child.stdout as PassThrough);
    const c = await converse(child, SPEC_INPUT);
    assert.equal(raw(), SPEC_OUTPUT.map((m) => `\n${JSON.stringify(m)}\n`).join(''));
    assert.equal(c.messages.length, 6);
  });
});

describe('multilang: more vectors', () => {
  it('leaseLost: a checkpoint rejects with ShutdownException, writes nothing, and the status is still sent', async () => {
    const p = new ScriptedProcessor({ leaseLost: (self) => self.tryCheckpoint(self.kept!, '1') });
    const c = await converse(inProcessChild(p), [init(), batch('1'), { action: 'leaseLost' }]);
    assert.deepEqual(c.messages, [status('initialize'), status('processRecords'), status('leaseLost')]);
    assert.equal(c.exitCode, 0);
    assert.equal(p.errors.length, 1);
    assert.ok(isCheckpointError(p.errors[0], 'ShutdownException'));
    assert.ok(p.errors[0] instanceof CheckpointError);
  });

  it('shutdownRequested with a checkpoint: request, reply, then the status', async () => {
    const p = new ScriptedProcessor({ shutdownRequested: (cp, self) => self.tryCheckpoint(cp) });
    const c = await converse(inProcessChild(p), [init(), { action: 'shutdownRequested' }, reply()]);
    assert.deepEqual(c.messages, [
      status('initialize'),
      { action: 'checkpoint', sequenceNumber: null, subSequenceNumber: null },
      status('shutdownRequested'),
    ]);
    assert.deepEqual(p.errors, ['ok']);
    assert.deepEqual(c.violations, []);
  });

  it('a processor that throws: the error goes to stderr and the status is still sent', async () => {
    const p = new ScriptedProcessor({
      processRecords: () => {
        throw new Error('boom in the processor');
      },
    });
    const c = await converse(inProcessChild(p), [init(), batch('7'), batch('8')]);
    assert.deepEqual(c.messages, [status('initialize'), status('processRecords'), status('processRecords')]);
    assert.match(c.stderr, /threw in processRecords: Error: boom in the processor/);
    assert.equal(c.exitCode, 0);
    assert.deepEqual(c.strayLines, []);
  });

  it('fatalProcessorErrors: a processor exception exits 1 without a status', async () => {
    const p = new ScriptedProcessor({
      processRecords: () => Promise.reject(new Error('fatal boom')),
    });
    const c = await converse(inProcessChild(p, { fatalProcessorErrors: true }), [
      init(),
      batch('7'),
      batch('8'),
    ]);
    assert.deepEqual(c.messages, [status('initialize')]);
    assert.equal(c.exitCode, 1);
    assert.match(c.stderr, /fatal boom/);
    assert.deepEqual(c.unsent, [batch('8')]);
  });

  it('end of stdin exits 0 (with or without a conversation before)', async () => {
    const empty = await converse(inProcessChild(new ScriptedProcessor()), []);
    assert.equal(empty.exitCode, 0);
    assert.deepEqual(empty.messages, []);
    const p = new ScriptedProcessor();
    const some = await converse(inProcessChild(p), [init(), batch('1', '2')]);
    assert.equal(some.exitCode, 0);
    assert.deepEqual(p.calls, ['initialize shardId-000000000001 TRIM_HORIZON', 'processRecords 1,2']);
  });

  it('maps every error name of a checkpoint reply to a CheckpointError with that code', async () => {
    const names = [...KCL_ERROR_NAMES, 'Exception'];
    const p = new ScriptedProcessor({ processRecords: (_r, cp, self) => self.tryCheckpoint(cp, '5') });
    const script = [init(), ...names.flatMap((n) => [batch('5'), reply('5', n)])];
    const c = await converse(inProcessChild(p), script);
    assert.deepEqual(c.violations, []);
    assert.equal(p.errors.length, names.length);
    names.forEach((name, i) => {
      const e = p.errors[i] as CheckpointError;
      assert.ok(e instanceof CheckpointError, `error ${i}`);
      assert.equal(e.code, name);
      assert.equal(e.value, name);
      assert.equal(
        e.canRetry,
        name === 'ThrottlingException' || name === 'KinesisClientLibDependencyException',
      );
    });
  });

  it('another message in place of the checkpoint reply is consumed and rejects with InvalidStateException', async () => {
    const p = new ScriptedProcessor({ processRecords: (_r, cp, self) => self.tryCheckpoint(cp, '5') });
    const c = await converse(inProcessChild(p), [
      init(),
      batch('5'),
      { action: 'shardEnded' },
      { action: 'leaseLost' },
    ]);
    assert.ok(isCheckpointError(p.errors[0], 'InvalidStateException'));
    // shardEnded was eaten as the (wrong) reply: the processor never saw it
    assert.deepEqual(p.calls.slice(1), ['processRecords 5', 'leaseLost']);
    assert.deepEqual(c.messages.at(-1), status('leaseLost'));
    assert.match(c.stderr, /expected a checkpoint reply/);
  });

  it('one checkpoint at a time: a second call while one is pending rejects', async () => {
    const p = new ScriptedProcessor({
      processRecords: async (_r, cp, self) => {
        const first = self.tryCheckpoint(cp, '3');
        await self.tryCheckpoint(cp, '3');
        await first;
      },
    });
    const c = await converse(inProcessChild(p), [init(), batch('3'), reply('3')]);
    assert.ok(isCheckpointError(p.errors[0], 'InvalidStateException'));
    assert.equal(p.errors[1], 'ok');
    assert.equal(c.messages.filter((m) => m.action === 'checkpoint').length, 1);
  });

  it('a checkpoint the handler does not await still completes before the status', async () => {
    const p = new ScriptedProcessor({
      processRecords: (_r, cp, self) => {
        void self.tryCheckpoint(cp, '9', 2);
      },
    });
    const child = inProcessChild(p);
    // what the processor had seen of its checkpoint when the status was written
    let outcomesAtStatus: unknown[] | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('"responseFor":"processRecords"')) outcomesAtStatus = [...p.errors];
    });
    const c = await converse(child, [init(), batch('9'), reply('9')]);
    assert.deepEqual(outcomesAtStatus, ['ok'], 'the status must wait for the checkpoint reply');
    assert.deepEqual(c.messages, [
      status('initialize'),
      { action: 'checkpoint', sequenceNumber: '9', subSequenceNumber: 2 },
      status('processRecords'),
    ]);
    assert.deepEqual(c.violations, []);
    assert.deepEqual(p.errors, ['ok']);
  });

  it('rejects invalid checkpoint arguments without writing anything', async () => {
    const p = new ScriptedProcessor({
      processRecords: async (_r, cp, self) => {
        await self.tryCheckpoint(cp, '1', -1);
        await self.tryCheckpoint(cp, 1.5 as unknown as string);
      },
    });
    const c = await converse(inProcessChild(p), [init(), batch('1')]);
    assert.equal(p.errors.length, 2);
    for (const e of p.errors) assert.ok(isCheckpointError(e, 'IllegalArgumentException'));
    assert.deepEqual(c.messages, [status('initialize'), status('processRecords')]);
  });

  it('an unknown action is rejected explicitly: logged to stderr, exit 1, no status', async () => {
    const c = await converse(inProcessChild(new ScriptedProcessor()), [init(), { action: 'reshard' }]);
    assert.deepEqual(c.messages, [status('initialize')]);
    assert.equal(c.exitCode, 1);
    assert.match(c.stderr, /unknown action "reshard"/);
  });

  it('a line that is not JSON, or an unsolicited checkpoint reply, ends the process with exit 1', async () => {
    const input = new PassThrough();
    const err = new PassThrough();
    const errText = tap(err);
    const proc = new KCLProcess(new ScriptedProcessor(), { input, output: new PassThrough(), error: err });
    input.end('{"action":"initialize","shardId":"s"\nnot json\n');
    assert.equal(await proc.run(), 1);
    assert.match(errText(), /not JSON/);
    const c = await converse(inProcessChild(new ScriptedProcessor()), [init(), reply('1')]);
    assert.equal(c.exitCode, 1);
    assert.match(c.stderr, /no checkpoint was pending/);
  });

  it('skips blank lines and accepts \\r\\n line ends', async () => {
    const input = new PassThrough();
    const out = new PassThrough();
    const text = tap(out);
    const p = new ScriptedProcessor();
    const proc = new KCLProcess(p, { input, output: out, error: new PassThrough() });
    input.end(`\n\r\n${JSON.stringify(init('s-1'))}\r\n\n${JSON.stringify(batch('4'))}`);
    assert.equal(await proc.run(), 0);
    assert.deepEqual(p.calls, ['initialize s-1 TRIM_HORIZON', 'processRecords 4']);
    assert.equal(text().trim().split(/\n+/).length, 2);
  });

  it('the legacy shutdown action: ZOMBIE/LEASE_LOST → leaseLost, TERMINATE/SHARD_END → shardEnded', async () => {
    for (const [reason, call] of [
      ['ZOMBIE', 'leaseLost'],
      ['LEASE_LOST', 'leaseLost'],
      ['TERMINATE', 'shardEnded'],
      ['SHARD_END', 'shardEnded'],
    ] as const) {
      const p = new ScriptedProcessor();
      const c = await converse(inProcessChild(p), [init(), { action: 'shutdown', reason }]);
      assert.deepEqual(c.messages, [status('initialize'), status('shutdown')], reason);
      assert.equal(p.calls.at(-1), call, reason);
    }
    const bad = await converse(inProcessChild(new ScriptedProcessor()), [
      init(),
      { action: 'shutdown', reason: 'X' },
    ]);
    assert.equal(bad.exitCode, 1);
  });

  it('records expose decoded bytes, the raw base64 and the KCL fields', async () => {
    let seen: unknown;
    const p = new ScriptedProcessor({
      processRecords: (records) => {
        const r = records[0]!;
        seen = [
          r.data.toString(),
          r.base64Data,
          r.partitionKey,
          r.sequenceNumber,
          r.subSequenceNumber,
          r.approximateArrivalTimestamp,
        ];
      },
    });
    await converse(inProcessChild(p), SPEC_INPUT.slice(0, 2));
    assert.deepEqual(seen, ['meow', 'bWVvdw==', 'cat', '456', 0, 1476889707000]);
  });
});

describe('multilang: blocking checkpoints, driven step by step', { timeout: 30_000 }, () => {
  it('a checkpoint request blocks the processor until its reply; a kept checkpointer is dead after the status', async () => {
    let resolved = false;
    const p = new ScriptedProcessor({
      processRecords: async (_r, cp) => {
        await cp.checkpoint('12');
        resolved = true;
      },
    });
    const child = inProcessChild(p);
    const lines = new LineReader(child.stdout);
    const next = async (): Promise<unknown> => {
      for (;;) {
        const l = await lines.next();
        if (l === null) return null;
        if (l !== '') return JSON.parse(l);
      }
    };
    child.stdin.write(`${JSON.stringify(init())}\n`);
    assert.deepEqual(await next(), status('initialize'));
    child.stdin.write(`${JSON.stringify(batch('12'))}\n`);
    assert.deepEqual(await next(), { action: 'checkpoint', sequenceNumber: '12', subSequenceNumber: null });

    let more = false;
    const pending = next().then((m) => {
      more = true;
      return m;
    });
    await ticks();
    assert.equal(resolved, false, 'the checkpoint must not resolve before the reply');
    assert.equal(more, false, 'nothing may follow the request before the reply');
    child.stdin.write(`${JSON.stringify(reply('12'))}\n`);
    assert.deepEqual(await pending, status('processRecords'));
    assert.equal(resolved, true);

    // the checkpointer kept from processRecords, used between actions: rejected, nothing written
    await assert.rejects(p.kept!.checkpoint('12'), (e: unknown) =>
      isCheckpointError(e, 'InvalidStateException'),
    );
    const after = next();
    child.stdin.end();
    assert.equal(await after, null);
    assert.equal(await child.exited, 0);
  });
});

describe('multilang: a real child process over stdio', { timeout: 60_000 }, () => {
  it('talks the protocol, keeps console.log off stdout, and exits 0 at the end of stdin', async () => {
    const fixture = join(import.meta.dirname, 'fixtures', 'noisy-child.ts');
    const child = spawnChild(process.execPath, ['--import', 'tsx', fixture], {
      cwd: join(import.meta.dirname, '..', '..', '..', '..'),
    });
    const c = await converse(child, [
      init('shardId-7', '41'),
      batch('42', '43'),
      reply('43'),
      { action: 'shardEnded' },
      reply(),
    ]);
    assert.deepEqual(c.messages, [
      status('initialize'),
      { action: 'checkpoint', sequenceNumber: '43', subSequenceNumber: null },
      status('processRecords'),
      { action: 'checkpoint', sequenceNumber: null, subSequenceNumber: null },
      status('shardEnded'),
    ]);
    assert.deepEqual(c.strayLines, [], 'console.log output must not reach stdout');
    assert.match(c.stderr, /noise from initialize shardId-7/);
    assert.match(c.stderr, /noise from processRecords 42,43/);
    assert.deepEqual(c.violations, []);
    assert.equal(c.exitCode, 0);
  });
});
