import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import { main } from '../../../src/cli/main.ts';
import { PRODUCER_COMPLETED_COLUMNS } from '../../../src/files/registry/names.ts';
import { type ColumnSpec, readRegistry } from '../../../src/files/registry/table.ts';
import { createProgress } from '../../../src/runtime/progress.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { sha512 } from './chunk-helpers.ts';
import { readChunks, tempDir } from './upload-helpers.ts';

const tmp = tempDir('upload-cli');
after(() => tmp.cleanup());
const brokerPath = join(tmp.dir, 'broker.db');
const broker = `file:${brokerPath}`;

/** Runs the CLI in this process; returns the exit code and what it wrote to stderr. */
async function sluice(...args: string[]): Promise<{ code: number; stderr: string }> {
  const write = process.stderr.write;
  let stderr = '';
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    return {
      code: await main([
        'node',
        'sluice',
        ...args,
        ...(args.includes('--broker') ? [] : ['--broker', broker]),
        '--log-level',
        'silent',
      ]),
      stderr,
    };
  } finally {
    process.stderr.write = write;
  }
}

async function chunksOf(topic: string) {
  const t = await openEmbeddedTransport({ path: brokerPath });
  try {
    return await readChunks(t, topic);
  } finally {
    await t.close();
  }
}

describe('sluice upload-file', () => {
  test('uploads every chunk and exits 0; dashed option spellings work too', async () => {
    const file = join(tmp.dir, 'scan.tif');
    const content = randomBytes(100_000);
    writeFileSync(file, content);
    const a1 = await sluice(
      'upload-file',
      file,
      '--topic_name',
      'cli-a',
      '--chunk_size',
      '16384',
      '--auto-create',
    );
    assert.equal(a1.code, 0, a1.stderr);
    const b1 = await sluice(
      'upload-file',
      file,
      '--topic-name',
      'cli-b',
      '--chunk-size',
      '65536',
      '--auto-create',
    );
    assert.equal(b1.code, 0, b1.stderr);
    const a = await chunksOf('cli-a');
    const b = await chunksOf('cli-b');
    assert.equal(a.length, 7);
    assert.equal(b.length, 2);
    for (const c of [...a, ...b]) {
      assert.deepEqual(c.chunk.fileHash, sha512(content));
      assert.equal(c.chunk.subdirStr, '');
    }
  });

  test('exits non-zero when chunks cannot be delivered, the chunk size is invalid, or the file is missing', async () => {
    const file = join(tmp.dir, 'x.dat');
    writeFileSync(file, 'x');
    // on the embedded broker the topic is created on first use; a broker that cannot be reached fails clearly
    const unreachable = await sluice('upload-file', file, '--broker', 'kafka://127.0.0.1:1');
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /127\.0\.0\.1:1.*\[SLUICE_BROKER_UNREACHABLE\]/s);
    const badSize = await sluice('upload-file', file, '--chunk_size', '1000', '--auto-create');
    assert.notEqual(badSize.code, 0);
    assert.match(badSize.stderr, /--chunk_size.*not a power of two/);
    const missing = await sluice('upload-file', join(tmp.dir, 'missing.dat'), '--auto-create');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing\.dat.*Pass the path of an existing file/);
    assert.equal((await chunksOf('test')).length, 0);
  });
});

describe('sluice upload-dir', () => {
  test(
    'uploads a new file, stops gracefully on SIGTERM, exits 0 with the registry written',
    { timeout: 30_000 },
    async () => {
      const dir = join(tmp.dir, 'watched');
      mkdirSync(dir);
      const bin = join(import.meta.dirname, '..', '..', '..', 'bin', 'sluice.js');
      const child = spawn(
        process.execPath,
        [
          bin,
          'upload-dir',
          dir,
          '--topic_name',
          'cli-dir',
          '--auto-create',
          '--watchdog_lag_time',
          '0.1',
          '--broker',
          broker,
          '--log-format',
          'json',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SLUICE_BROKER: '' } },
      );
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const messages: string[] = [];
      let buffered = '';
      const waiters: Array<{ re: RegExp; resolve: () => void }> = [];
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (text: string) => {
        buffered += text;
        const lines = buffered.split('\n');
        buffered = lines.pop() as string;
        for (const line of lines) {
          const msg = (JSON.parse(line) as { msg: string }).msg;
          messages.push(msg);
          for (const w of waiters.filter((x) => x.re.test(msg))) w.resolve();
        }
      });
      const logged = (re: RegExp): Promise<void> =>
        messages.some((m) => re.test(m))
          ? Promise.resolve()
          : new Promise((resolve) => waiters.push({ re, resolve }));

      await logged(/^watching /);
      writeFileSync(join(dir, 'new.dat'), 'fresh data');
      await logged(/^uploaded new\.dat: 1 chunk, 10 bytes in \d+ ms$/);
      child.kill('SIGTERM');
      assert.equal(await exited, 0, messages.join('\n'));
      assert.ok(messages.some((m) => /^stopped: 1 file\(s\), 1 chunk\(s\), 10 bytes uploaded$/.test(m)));
      const rows = await readRegistry(
        join(dir, 'LOGS', 'uploaded_to_cli-dir.csv'),
        PRODUCER_COMPLETED_COLUMNS as ColumnSpec[],
      );
      assert.deepEqual(
        rows.map((r) => r.rel_filepath),
        ['new.dat'],
      );
      assert.equal((await chunksOf('cli-dir')).length, 1);
    },
  );
});

describe('upload-file progress bar', () => {
  function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
    const pass = new PassThrough();
    let out = '';
    pass.on('data', (d: Buffer) => {
      out += d.toString();
    });
    Object.assign(pass, { isTTY, columns: 200 });
    return { stream: pass as unknown as NodeJS.WriteStream, text: () => out };
  }

  test('draws on a terminal: bytes, percentage, MiB', async () => {
    const { stream, text } = fakeStream(true);
    const bar = createProgress({ label: 'scan.tif', total: 2 * 1024 * 1024, stream });
    assert.equal(bar.active, true);
    bar.increment(1024 * 1024);
    bar.increment(1024 * 1024);
    bar.stop();
    bar.stop();
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.match(text(), /scan\.tif \[#{30}\] 100% 2\.0\/2\.0 MiB/);
  });

  test('is a no-op when the stream is not a terminal', async () => {
    const { stream, text } = fakeStream(false);
    const bar = createProgress({ label: 'scan.tif', total: 10, stream });
    assert.equal(bar.active, false);
    bar.increment(10);
    bar.stop();
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(text(), '');
  });
});
