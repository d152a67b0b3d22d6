import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { readN } from '../../conformance/suite.ts';
import { publish } from './helpers.ts';

const repo = join(import.meta.dirname, '..', '..', '..');
const bin = join(repo, 'bin', 'sluice.js');
const example = join(repo, 'examples', 'processors', 'csv-metadata-reproducer.ts');
const root = mkdtempSync(join(tmpdir(), 'sluice-runnable-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const env = { ...process.env, SLUICE_BROKER: '', SLUICE_LOG_LEVEL: '' };

const csv = (rows: number): Buffer =>
  Buffer.from(`time_s,temp_c\n${Array.from({ length: rows }, (_, i) => `${i},2${i}`).join('\n')}\n`);

/** A fresh embedded broker with two CSV files on topic `csv-chunks`. */
async function brokerWithCsv(): Promise<{ dir: string; broker: string; db: string }> {
  const dir = join(root, `c${n++}`);
  const db = join(dir, 'b.db');
  const t = await openEmbeddedTransport({ path: db });
  await publish(t, 'csv-chunks', [
    { subdir: 'a', filename: 'one.csv', data: csv(2) },
    { subdir: '', filename: 'two.csv', data: csv(4) },
  ]);
  await t.close();
  return { dir, db, broker: `file:${db}` };
}

interface Running {
  child: ChildProcessWithoutNullStreams;
  stderr: () => string;
  waitFor: (re: RegExp) => Promise<void>;
  exit: Promise<number | null>;
}

/** Starts a process with piped stdio; `waitFor` resolves once stderr matches (the test's timeout bounds it). */
function start(args: string[], cwd: string): Running {
  const child = spawn(process.execPath, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  const waiters: Array<{ re: RegExp; resolve: () => void }> = [];
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of [...waiters]) {
      if (w.re.test(err)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  child.stdout.resume();
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    stderr: () => err,
    waitFor: (re) =>
      re.test(err)
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            waiters.push({ re, resolve });
            void exit.then(() => reject(new Error(`exited before ${re}; stderr:\n${err}`)));
          }),
    exit,
  };
}

async function results(db: string, want: number): Promise<string[]> {
  const t = await openEmbeddedTransport({ path: db });
  try {
    const got = await readN(t.consumer({ groupId: `check-${n++}`, topics: ['csv-metadata'] }), want);
    return got.map((r) => r.key!.toString()).sort();
  } finally {
    await t.close();
  }
}

const EXPECTED_KEYS = ['_two.csv_chunk_processing_result', 'a_one.csv_chunk_processing_result'];

describe('sluice run, metadata-example and self-running modules', () => {
  it(
    'sluice run: c on a stdin pipe logs the counters, q stops gracefully with exit 0',
    { timeout: 90_000 },
    async () => {
      const { dir, broker, db } = await brokerWithCsv();
      const p = start(
        [
          bin,
          'run',
          example,
          '--broker',
          broker,
          '--topic_name',
          'csv-chunks',
          '--producer_topic_name',
          'csv-metadata',
        ],
        dir,
      );
      await p.waitFor(/rebuilt two\.csv/);
      await p.waitFor(/rebuilt a\/one\.csv/);
      p.child.stdin.write('c\n');
      await p.waitFor(/2 file\(s\) processed, 0 failed/);
      p.child.stdin.write('q\n');
      assert.equal(await p.exit, 0, p.stderr());
      assert.match(p.stderr(), /quit requested on stdin/);
      assert.match(p.stderr(), /stopped: 2 file\(s\) processed/);
      assert.deepEqual(await results(db, 2), EXPECTED_KEYS);
    },
  );

  it(
    'sluice metadata-example stops on SIGTERM with exit 0; a restart passes over finished files',
    { timeout: 90_000 },
    async () => {
      const { dir, broker, db } = await brokerWithCsv();
      const args = [
        bin,
        'metadata-example',
        '--broker',
        broker,
        '--topic_name',
        'csv-chunks',
        '--producer_topic_name',
        'csv-metadata',
      ];
      const p = start(args, dir);
      await p.waitFor(/rebuilt a\/one\.csv/);
      await p.waitFor(/rebuilt two\.csv/);
      p.child.kill('SIGTERM');
      assert.equal(await p.exit, 0, p.stderr());
      assert.match(p.stderr(), /received SIGTERM: stopping gracefully/);
      const byKey = new Map(
        await (async () => {
          const t = await openEmbeddedTransport({ path: db });
          const got = await readN(t.consumer({ groupId: 'meta-check', topics: ['csv-metadata'] }), 2);
          await t.close();
          return got.map(
            (r) => [r.key!.toString(), JSON.parse(r.value!.toString()) as Record<string, unknown>] as const,
          );
        })(),
      );
      assert.deepEqual([...byKey.keys()].sort(), EXPECTED_KEYS);
      assert.deepEqual(byKey.get('_two.csv_chunk_processing_result')!.columns, ['time_s', 'temp_c']);
      assert.equal(byKey.get('_two.csv_chunk_processing_result')!.n_rows, 4);
      // same output directory, same default group: nothing is processed twice
      const again = start(args, dir);
      await again.waitFor(/reading files from topic csv-chunks/);
      again.child.stdin.write('q\n');
      assert.equal(await again.exit, 0, again.stderr());
      assert.match(again.stderr(), /stopped: 0 file\(s\) processed/);
      assert.deepEqual(await results(db, 2), EXPECTED_KEYS);
    },
  );

  it('the example module runs itself when executed directly', { timeout: 90_000 }, async () => {
    const { dir, broker, db } = await brokerWithCsv();
    const help = spawnSync(process.execPath, ['--import', 'tsx', example, '--help'], {
      cwd: repo,
      env,
      encoding: 'utf8',
    });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /Usage: CsvMetadataReproducer/);
    assert.match(help.stdout, /--instrument <name>/);
    assert.match(help.stdout, /--producer_topic_name <topic>/);
    const p = start(
      [
        '--import',
        'tsx',
        example,
        '--broker',
        broker,
        '--topic_name',
        'csv-chunks',
        '--producer_topic_name',
        'csv-metadata',
        '--instrument',
        'direct',
        '--output_dir',
        join(dir, 'out'),
      ],
      repo, // where --import tsx resolves
    );
    await p.waitFor(/rebuilt a\/one\.csv/);
    await p.waitFor(/rebuilt two\.csv/);
    p.child.stdin.end('quit\n');
    assert.equal(await p.exit, 0, p.stderr());
    assert.deepEqual(await results(db, 2), EXPECTED_KEYS);
  });

  it('sluice run explains what it cannot run', () => {
    const run = (args: string[]) =>
      spawnSync(process.execPath, [bin, 'run', ...args], { cwd: root, env, encoding: 'utf8' });
    const none = run([]);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /Usage: sluice run \[--class NAME\] FILE/);
    const missing = run(['nope.ts']);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /nope\.ts is not a file/);
    const help = run([example, '--help']);
    assert.equal(help.status, 0);
    assert.match(
      help.stdout,
      new RegExp(`Usage: sluice run ${example.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
    const badArg = run([example, '--mode', 'tape']);
    assert.equal(badArg.status, 1);
    assert.match(badArg.stderr, /argument 'tape' is invalid/);
  });
});
