/**
 * Cross-check of sluice's multilang child against amazon-kclpy 3.2.0 (PyPI), the reference implementation: the
 * same scripted daemon conversation (src/records/kcl/daemon.ts `converse`, which answers like the Java daemon) is
 * played to a kclpy child and to a sluice child, and the transcripts must be identical: the protocol messages in
 * order, byte for byte after JSON normalisation (key order included), and the exit status.
 *
 * Pairs:
 * - amazon-kclpy's own sample app (`python -m samples.sample_kclpy_app`, as installed) vs its line-by-line port
 *   examples/kcl/sample-processor.ts (also compared: its stderr, on conversations without errors);
 * - the v1 processor of kclpy's own conversation test vs sluice's port, on the spec's section 7 vector;
 * - probe processors (v3 and v1) that checkpoint as the records say and report every outcome on stderr.
 * Known, deliberate differences are asserted explicitly at the end, so a change on either side shows up.
 *
 * The venv comes from scripts/kcl-venv.sh, run here; if it cannot be built the test fails with the reason.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type Conversation, converse, type DaemonMessage, spawnChild } from '../../src/records/kcl/index.ts';
import { SPEC_INPUT, SPEC_OUTPUT } from '../unit/records/kcl/helpers.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const PY_DIR = join(ROOT, 'test', 'integration', 'python', 'kcl');
const TS_FIXTURES = join(ROOT, 'test', 'unit', 'records', 'kcl', 'fixtures');
let setup: { python: string } | { error: Error } | undefined;

/**
 * The venv's python, built on first use. A failure fails every test that needs it, with the script's reason
 * (a failing `before` hook would only mark the tests cancelled).
 */
function venvPython(): string {
  if (setup === undefined) {
    try {
      const out = execFileSync('bash', [join(ROOT, 'scripts', 'kcl-venv.sh')], {
        cwd: ROOT,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 300_000,
      });
      const python = out.trim().split('\n').at(-1)!;
      const version = execFileSync(
        python,
        ['-c', 'import importlib.metadata as m; print(m.version("amazon-kclpy"))'],
        { encoding: 'utf8' },
      ).trim();
      if (version !== '3.2.0') throw new Error(`expected amazon-kclpy 3.2.0 in the venv, found ${version}`);
      setup = { python };
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      setup = {
        error: new Error(
          `scripts/kcl-venv.sh could not set up amazon-kclpy: ${e.stderr?.trim() || e.message}`,
        ),
      };
    }
  }
  if ('error' in setup) throw setup.error;
  return setup.python;
}

const pyEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  PYTHONDONTWRITEBYTECODE: '1',
  PYTHONUNBUFFERED: '1',
});

function kclpy(args: string[]): ReturnType<typeof spawnChild> {
  return spawnChild(venvPython(), args, { env: pyEnv(), cwd: PY_DIR });
}

function sluice(file: string, args: string[] = []): ReturnType<typeof spawnChild> {
  return spawnChild(process.execPath, ['--import', 'tsx', file, ...args], { cwd: ROOT });
}

/** The transcript as compared: each protocol message re-serialised (keeps key order), in order. */
const transcript = (c: Conversation): string[] => c.messages.map((m) => JSON.stringify(m));
const probeLines = (c: Conversation): string[] => c.stderr.split('\n').filter((l) => l.startsWith('probe: '));

async function both(
  script: DaemonMessage[],
  py: () => ReturnType<typeof spawnChild>,
  ts: () => ReturnType<typeof spawnChild>,
): Promise<{ py: Conversation; ts: Conversation }> {
  const [p, t] = await Promise.all([converse(py(), script), converse(ts(), script)]);
  return { py: p, ts: t };
}

function assertSame(r: { py: Conversation; ts: Conversation }, label: string): void {
  assert.deepEqual(transcript(r.ts), transcript(r.py), `${label}: protocol transcripts differ`);
  assert.equal(
    r.ts.exitCode,
    r.py.exitCode,
    `${label}: exit codes differ (stderr: ${r.py.stderr} | ${r.ts.stderr})`,
  );
  assert.deepEqual(r.ts.unsent, r.py.unsent, `${label}: different parts of the script were left unsent`);
  assert.deepEqual(r.ts.violations, r.py.violations, `${label}: protocol violations differ`);
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const rec = (seq: string, data: string, sub = 0, key = 'pk'): DaemonMessage => ({
  action: 'record',
  data: b64(data),
  partitionKey: key,
  sequenceNumber: seq,
  subSequenceNumber: sub,
  approximateArrivalTimestamp: 1476889707000,
});
const init = (seq: string | null = 'TRIM_HORIZON'): DaemonMessage => ({
  action: 'initialize',
  shardId: 'shardId-000000000000',
  sequenceNumber: seq,
  subSequenceNumber: 0,
});
const records = (...rs: DaemonMessage[]): DaemonMessage => ({
  action: 'processRecords',
  millisBehindLatest: 0,
  records: rs,
});
const ok = (seq: string | null = null): DaemonMessage => ({
  action: 'checkpoint',
  sequenceNumber: seq,
  subSequenceNumber: null,
});
const fail = (error: string): DaemonMessage => ({
  action: 'checkpoint',
  sequenceNumber: null,
  subSequenceNumber: null,
  error,
});
const cmd = (seq: string, command: Record<string, unknown>): DaemonMessage =>
  rec(seq, JSON.stringify(command));

// Kinesis-sized sequence numbers (beyond 2^53): both must keep every digit
const S1 = '49590338271490256608559692538361571095921575989136588898';
const S2 = '49590338271490256608559692538361571095921575989136588899';
const S3 = '49590338271490256608559692540000000000000000000000000001';

describe('amazon-kclpy sample app vs its sluice port', { timeout: 120_000 }, () => {
  const sample = (script: DaemonMessage[]) =>
    both(
      script,
      () => kclpy(['-m', 'samples.sample_kclpy_app']),
      () => sluice(join(ROOT, 'examples', 'kcl', 'multilang-child.ts')),
    );

  it('records, a periodic checkpoint, a second batch, shutdownRequested: identical, stderr too', async () => {
    const r = await sample([
      init(),
      records(rec(S1, 'meow'), rec(S3, 'purr', 0, 'cat'), rec(S2, 'hiss')),
      ok(S3),
      records(rec('49590338271490256608559692540000000000000000000000000002', 'zzz')),
      { action: 'shutdownRequested' },
      ok(),
    ]);
    assertSame(r, 'sample/normal');
    assert.deepEqual(transcript(r.py), [
      '{"action":"status","responseFor":"initialize"}',
      `{"action":"checkpoint","sequenceNumber":"${S3}","subSequenceNumber":0}`,
      '{"action":"status","responseFor":"processRecords"}',
      '{"action":"status","responseFor":"processRecords"}',
      '{"action":"checkpoint","sequenceNumber":null,"subSequenceNumber":null}',
      '{"action":"status","responseFor":"shutdownRequested"}',
    ]);
    assert.equal(r.ts.stderr, r.py.stderr);
    assert.deepEqual([r.py.strayLines, r.ts.strayLines], [[], []]);
  });

  it('KPL-aggregated records: checkpoints at the largest (sequence, sub-sequence)', async () => {
    const r = await sample([
      init(S1),
      records(rec(S2, 'a', 0), rec(S2, 'b', 2), rec(S2, 'c', 1)),
      ok(S2),
      { action: 'shardEnded' },
      ok(),
    ]);
    assertSame(r, 'sample/aggregated');
    assert.equal(
      transcript(r.py)[1],
      `{"action":"checkpoint","sequenceNumber":"${S2}","subSequenceNumber":2}`,
    );
    assert.equal(r.ts.stderr, r.py.stderr);
  });

  it('a checkpoint rejected with ShutdownException, then leaseLost: same protocol messages', async () => {
    const r = await sample([
      init(),
      records(rec(S1, 'x')),
      fail('ShutdownException'),
      { action: 'leaseLost' },
    ]);
    assertSame(r, 'sample/shutdown-exception');
  });

  it('shardEnded whose checkpoint fails: both log it and still answer', async () => {
    const r = await sample([
      init(),
      records(rec(S1, 'x')),
      ok(S1),
      { action: 'shardEnded' },
      fail('InvalidStateException'),
    ]);
    assertSame(r, 'sample/shard-end-failure');
    assert.deepEqual(r.py.messages.at(-1), { action: 'status', responseFor: 'shardEnded' });
  });

  it('leaseLost right after initialize, and an immediate end of stdin', async () => {
    assertSame(await sample([init(), { action: 'leaseLost' }]), 'sample/lease-lost');
    const empty = await sample([]);
    assertSame(empty, 'sample/eof');
    assert.equal(empty.py.exitCode, 0);
  });
});

describe(
  'the spec vector (section 7) on kclpy’s own test processor and on sluice',
  { timeout: 60_000 },
  () => {
    it('both answer exactly the six messages, with empty stderr', async () => {
      const r = await both(
        SPEC_INPUT,
        () => kclpy([join(PY_DIR, 'spec_v1_processor.py')]),
        () => sluice(join(TS_FIXTURES, 'spec-v1-child.ts')),
      );
      assertSame(r, 'spec');
      assert.deepEqual(r.py.messages, SPEC_OUTPUT);
      assert.equal(r.py.stderr, '');
      assert.equal(r.ts.stderr, '');
    });
  },
);

describe('probe processors (v3, v1): checkpoint outcomes and error names', { timeout: 120_000 }, () => {
  const probe = (version: 'v3' | 'v1', script: DaemonMessage[]) =>
    both(
      script,
      () => kclpy([join(PY_DIR, 'probe_processor.py'), version]),
      () => sluice(join(TS_FIXTURES, 'probe-child.ts'), [version]),
    );

  const errorNames = [
    'ShutdownException',
    'ThrottlingException',
    'InvalidStateException',
    'KinesisClientLibDependencyException',
    'IllegalArgumentException',
  ];
  const checkpointVector: DaemonMessage[] = [
    init(S1),
    records(
      cmd(S2, { op: 'checkpoint', seq: S2, sub: null }),
      cmd(S3, { op: 'checkpoint', seq: S3, sub: 0 }),
      cmd(S3, { op: 'checkpoint', seq: null, sub: null }),
    ),
    ok(S2),
    fail('ThrottlingException'),
    ok(),
    records(...errorNames.map((_, i) => cmd(String(i), { op: 'checkpoint', seq: String(i) }))),
    ...errorNames.map(fail),
    records(cmd('9', { op: 'checkpoint', seq: '9' })),
    { action: 'shutdownRequested' }, // in place of the checkpoint reply: consumed, InvalidStateException
    { action: 'shutdownRequested' },
    ok(),
  ];

  for (const version of ['v3', 'v1'] as const) {
    it(`${version}: checkpoints, every error name, a message in place of a reply, shutdownRequested`, async () => {
      const r = await probe(version, checkpointVector);
      assertSame(r, `probe-${version}/checkpoints`);
      assert.deepEqual(probeLines(r.ts), probeLines(r.py));
      for (const name of errorNames)
        assert.ok(
          probeLines(r.py).some((l) => l.endsWith(`-> ${name}`)),
          name,
        );
      assert.ok(probeLines(r.py).some((l) => l === 'probe: checkpoint "9" null -> InvalidStateException'));
    });
  }

  it('v3: a processor exception is logged, the status still sent; then shardEnded checkpoints SHARD_END', async () => {
    const r = await probe('v3', [
      init(null),
      records(cmd('1', { op: 'throw', message: 'boom' }), cmd('2', { op: 'checkpoint', seq: '2' })),
      records(cmd('3', { op: 'checkpoint', seq: '3' })),
      ok('3'),
      { action: 'shardEnded' },
      ok(),
    ]);
    assertSame(r, 'probe-v3/throw');
    assert.deepEqual(probeLines(r.ts), probeLines(r.py));
    assert.match(r.py.stderr, /boom/);
    assert.match(r.ts.stderr, /boom/);
  });

  it('v1: shardEnded arrives as shutdown(TERMINATE) with a working checkpointer', async () => {
    const r = await probe('v1', [init(), records(), { action: 'shardEnded' }, ok()]);
    assertSame(r, 'probe-v1/terminate');
    assert.deepEqual(probeLines(r.ts), probeLines(r.py));
    assert.ok(probeLines(r.py).includes('probe: shutdown TERMINATE'));
  });

  it('an unknown action: both stop with a non-zero exit and no status for it', async () => {
    const r = await probe('v3', [init(), { action: 'reshard' }, { action: 'leaseLost' }]);
    assert.deepEqual(transcript(r.ts), transcript(r.py));
    assert.notEqual(r.py.exitCode, 0);
    assert.notEqual(r.ts.exitCode, 0);
    assert.deepEqual(r.ts.unsent, r.py.unsent);
  });
});

describe(
  'known, deliberate differences (documented in src/records/kcl/multilang.ts and the sample port)',
  { timeout: 60_000 },
  () => {
    it('the kclpy sample prints to stdout (the protocol channel); the sluice port keeps stdout clean', async () => {
      const script = [init(), records(rec(S1, 'x')), fail('ShutdownException'), { action: 'leaseLost' }];
      const py = await converse(kclpy(['-m', 'samples.sample_kclpy_app']), script);
      const ts = await converse(sluice(join(ROOT, 'examples', 'kcl', 'multilang-child.ts')), script);
      assert.deepEqual(py.strayLines, ['Encountered shutdown exception, skipping checkpoint']);
      assert.deepEqual(ts.strayLines, []);
      assert.match(ts.stderr, /Encountered shutdown exception, skipping checkpoint/);
    });

    it('v1 shutdown(ZOMBIE): kclpy’s lease-lost checkpointer raises a CheckpointError named by its message; sluice names it ShutdownException', async () => {
      const script = [init(), records(), { action: 'leaseLost' }];
      const py = await converse(kclpy([join(PY_DIR, 'probe_processor.py'), 'v1']), script);
      const ts = await converse(sluice(join(TS_FIXTURES, 'probe-child.ts'), ['v1']), script);
      assert.deepEqual(transcript(ts), transcript(py));
      assert.ok(
        probeLines(py).includes(
          'probe: checkpoint at shutdown -> Checkpointing is not allowed when the lease is lost',
        ),
      );
      assert.ok(probeLines(ts).includes('probe: checkpoint at shutdown -> ShutdownException'));
    });

    it('the legacy shutdown action: kclpy crashes (exit 1, no status); sluice maps it and answers', async () => {
      const script = [init(), { action: 'shutdown', reason: 'TERMINATE' }, ok()];
      const py = await converse(kclpy([join(PY_DIR, 'probe_processor.py'), 'v3']), script);
      const ts = await converse(sluice(join(TS_FIXTURES, 'probe-child.ts'), ['v3']), script);
      assert.equal(py.exitCode, 1);
      assert.deepEqual(py.messages, [{ action: 'status', responseFor: 'initialize' }]);
      assert.equal(ts.exitCode, 0);
      assert.deepEqual(ts.messages.at(-1), { action: 'status', responseFor: 'shutdown' });
    });

    it('an empty first batch: the kclpy sample checkpoints at "None"; the sluice port checkpoints nothing', async () => {
      // kclpy's sample retries after 5 s; the second request then meets the end of stdin
      const py = await converse(kclpy(['-m', 'samples.sample_kclpy_app']), [
        init(),
        records(),
        fail('IllegalArgumentException'),
      ]);
      const ts = await converse(sluice(join(ROOT, 'examples', 'kcl', 'multilang-child.ts')), [
        init(),
        records(),
      ]);
      assert.deepEqual(py.messages[1], {
        action: 'checkpoint',
        sequenceNumber: 'None',
        subSequenceNumber: null,
      });
      assert.deepEqual(transcript(ts), [
        '{"action":"status","responseFor":"initialize"}',
        '{"action":"status","responseFor":"processRecords"}',
      ]);
    });
  },
);
