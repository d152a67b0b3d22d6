import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isSluiceError, SluiceError } from '../../../src/errors.ts';
import { type DataFileChunk, DEFAULT_CHUNK_SIZE, decodeChunk } from '../../../src/files/chunk-codec.ts';
import {
  ByteBudget,
  checkChunkSize,
  chunkCount,
  MEMORY_FILE_MAX,
  pythonMtime,
  UploadDataFile,
} from '../../../src/files/upload-data-file.ts';
import type { EmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { pseudoRandomBytes, sha512 } from './chunk-helpers.ts';
import { GatedProducer, HookedProducer, MemoryProducer, readChunks, tempDir } from './upload-helpers.ts';

const tmp = tempDir('upload-file');
let transport: EmbeddedTransport;

before(async () => {
  transport = await openEmbeddedTransport({ path: join(tmp.dir, 'broker.db') });
});
after(async () => {
  await transport.close();
  tmp.cleanup();
});

function assertCode(code: string, pattern?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isSluiceError(err), `expected a SluiceError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

function decodeAll(records: Array<{ value: Buffer | string | null }>): DataFileChunk[] {
  return records.map((r) => decodeChunk(r.value as Buffer) as DataFileChunk);
}

describe('UploadDataFile chunking', () => {
  test('chunks, keys, offsets, hashes and mtime follow spec section 3 (decoded from the broker)', async () => {
    const root = join(tmp.dir, 'root1');
    mkdirSync(join(root, 'sub', 'dir'), { recursive: true });
    const file = join(root, 'sub', 'dir', 'scan.dat');
    const content = pseudoRandomBytes(3500, 7);
    writeFileSync(file, content);
    const up = new UploadDataFile(file, { rootDir: root, chunkSize: 1024 });
    const producer = transport.producer({ autoCreateTopics: true });
    const result = await up.upload(producer, 'spec-chunks', { maxInFlight: 3 });
    assert.equal(result.chunks, 4);
    assert.equal(result.nTotalChunks, 4);
    assert.equal(result.bytes, 3500);

    const got = (await readChunks(transport, 'spec-chunks')).sort((a, b) => a.chunk.chunkI - b.chunk.chunkI);
    assert.equal(got.length, 4);
    const mtime = pythonMtime(statSync(file, { bigint: true }));
    assert.ok(mtime > 1e9);
    got.forEach(({ key, chunk }, i) => {
      const chunkI = i + 1;
      const data = content.subarray(i * 1024, Math.min(3500, chunkI * 1024));
      assert.equal(key, `sub_dir_scan.dat_chunk_${chunkI}_of_4`);
      assert.equal(chunk.chunkI, chunkI);
      assert.equal(chunk.nTotalChunks, 4);
      assert.equal(chunk.chunkOffsetWrite, i * 1024);
      assert.equal(chunk.filename, 'scan.dat');
      assert.equal(chunk.subdirStr, 'sub/dir');
      assert.equal(chunk.filenameAppend, '');
      assert.deepEqual(chunk.data, data);
      assert.deepEqual(chunk.chunkHash, sha512(data));
      assert.deepEqual(chunk.fileHash, sha512(content));
      assert.equal(chunk.fileMtime, mtime);
    });
    assert.equal(got[3]?.chunk.data.length, 3500 - 3 * 1024);
  });

  test('a file at the root has an empty subdir_str and a key starting with "_"', async () => {
    const file = join(tmp.dir, 'a.dat');
    writeFileSync(file, 'hello');
    const p = new MemoryProducer();
    await new UploadDataFile(file).upload(p, 't');
    assert.equal(p.records.length, 1);
    assert.equal(p.records[0]?.key, '_a.dat_chunk_1_of_1');
    const [c] = decodeAll(p.records);
    assert.equal(c?.subdirStr, '');
    assert.equal(c?.data.toString(), 'hello');
  });

  test('an empty file is sent as one empty chunk (upstream sends none)', async () => {
    const file = join(tmp.dir, 'empty.dat');
    writeFileSync(file, '');
    const p = new MemoryProducer();
    const up = new UploadDataFile(file);
    const result = await up.upload(p, 't');
    assert.equal(result.chunks, 1);
    const [c] = decodeAll(p.records);
    assert.equal(p.records[0]?.key, '_empty.dat_chunk_1_of_1');
    assert.equal(c?.chunkI, 1);
    assert.equal(c?.nTotalChunks, 1);
    assert.equal(c?.chunkOffsetWrite, 0);
    assert.equal(c?.data.length, 0);
    assert.deepEqual(c?.fileHash, sha512(Buffer.alloc(0)));
    assert.deepEqual(c?.chunkHash, sha512(Buffer.alloc(0)));
  });

  test('a file of exactly two chunks has two full chunks', async () => {
    const file = join(tmp.dir, 'two.dat');
    writeFileSync(file, pseudoRandomBytes(2048, 3));
    const p = new MemoryProducer();
    await new UploadDataFile(file, { chunkSize: 1024 }).upload(p, 't');
    assert.deepEqual(
      decodeAll(p.records).map((c) => [c.chunkI, c.chunkOffsetWrite, c.data.length]),
      [
        [1, 0, 1024],
        [2, 1024, 1024],
      ],
    );
    assert.equal(chunkCount(2048, 1024), 2);
    assert.equal(chunkCount(0, 1024), 1);
    assert.equal(chunkCount(2049, 1024), 3);
  });

  test('the chunk size must be a power of two', () => {
    for (const bad of [0, 3, 1000, 524287, 2 ** 31, 1.5, Number.NaN]) {
      assert.throws(() => checkChunkSize(bad), assertCode('SLUICE_USAGE', /power of two/));
      assert.throws(
        () => new UploadDataFile(join(tmp.dir, 'a.dat'), { chunkSize: bad }),
        assertCode('SLUICE_USAGE'),
      );
    }
    assert.equal(checkChunkSize(1), 1);
    assert.equal(checkChunkSize(16384), 16384);
    assert.equal(new UploadDataFile(join(tmp.dir, 'a.dat')).chunkSize, DEFAULT_CHUNK_SIZE);
  });

  test('a file outside the root directory is refused', () => {
    assert.throws(
      () => new UploadDataFile(join(tmp.dir, 'a.dat'), { rootDir: join(tmp.dir, 'other') }),
      assertCode('SLUICE_USAGE', /not inside the root/),
    );
  });
});

describe('UploadDataFile memory bound', () => {
  test('8 MiB in 128 chunks: never more than maxInFlight chunks between reading and acknowledgement', async () => {
    const file = join(tmp.dir, 'big.bin');
    const content = randomBytes(8 * 1024 * 1024);
    writeFileSync(file, content);
    const memory = new GatedProducer(4, 128);
    const up = new UploadDataFile(file, { chunkSize: 64 * 1024 });
    const result = await up.upload(memory, 't', { maxInFlight: 4 });
    assert.equal(result.chunks, 128);
    // the bound holds, and was reached: the gate holds acknowledgements until 4 chunks wait
    assert.equal(memory.maxOutstanding, 4);
    // every byte arrived, once
    const rebuilt = Buffer.alloc(content.length);
    const seen = new Set<number>();
    const fileHash = sha512(content);
    for (const c of decodeAll(memory.records)) {
      assert.ok(!seen.has(c.chunkI));
      seen.add(c.chunkI);
      c.data.copy(rebuilt, c.chunkOffsetWrite);
      assert.deepEqual(c.fileHash, fileHash);
    }
    assert.equal(seen.size, 128);
    assert.ok(rebuilt.equals(content));
  });

  test('a shared byte budget bounds the data in flight below maxInFlight', async () => {
    const file = join(tmp.dir, 'budget.bin');
    writeFileSync(file, pseudoRandomBytes(40 * 1024, 5));
    const gated = new GatedProducer(3, 40);
    const budget = new ByteBudget(3 * 1024);
    await new UploadDataFile(file, { chunkSize: 1024 }).upload(gated, 't', { maxInFlight: 32, budget });
    assert.equal(gated.maxOutstanding, 3);
    assert.equal(gated.records.length, 40);
    assert.equal(budget.inUse, 0);
  });
});

describe('UploadDataFile delivery', () => {
  function fileOf(name: string, bytes: number): string {
    const file = join(tmp.dir, name);
    writeFileSync(file, pseudoRandomBytes(bytes, bytes));
    return file;
  }

  test('retries failed deliveries and then succeeds', async () => {
    const memory = new MemoryProducer();
    const flaky = new HookedProducer(memory, {
      before: (_r, n) => {
        if (n <= 2) throw new SluiceError('SLUICE_TRANSPORT', 'broker hiccup', { canRetry: true });
      },
    });
    const result = await new UploadDataFile(fileOf('flaky.dat', 3000), { chunkSize: 1024 }).upload(
      flaky,
      't',
      {
        maxInFlight: 1,
        retryDelayMs: 1,
      },
    );
    assert.equal(result.retries, 2);
    assert.deepEqual(
      decodeAll(memory.records).map((c) => c.chunkI),
      [1, 2, 3],
    );
  });

  test('gives up after the retries with SLUICE_DELIVERY_FAILED naming the file, chunk and fix', async () => {
    const file = fileOf('down.dat', 3000);
    const dead = new HookedProducer(new MemoryProducer(), {
      before: () => {
        throw new SluiceError('SLUICE_BROKER_UNREACHABLE', 'connection refused');
      },
    });
    await assert.rejects(
      new UploadDataFile(file, { chunkSize: 1024 }).upload(dead, 't', { retries: 2, retryDelayMs: 1 }),
      (err: unknown) => {
        assertCode(
          'SLUICE_DELIVERY_FAILED',
          /chunk 1\/3 of .*down\.dat.*3 attempts.*connection refused.*broker/,
        )(err);
        assert.equal((err as SluiceError).details.causeCode, 'SLUICE_BROKER_UNREACHABLE');
        return true;
      },
    );
  });

  test('does not retry errors no retry can fix (unknown topic)', async () => {
    const file = fileOf('notopic.dat', 10);
    const producer = new HookedProducer(transport.producer());
    await assert.rejects(
      new UploadDataFile(file).upload(producer, 'no-such-topic', { retryDelayMs: 1 }),
      assertCode('SLUICE_DELIVERY_FAILED', /1 attempt\).*does not exist/),
    );
    assert.equal(producer.sends, 1);
  });

  test('sends only the chunks asked for (resume)', async () => {
    const memory = new MemoryProducer();
    const result = await new UploadDataFile(fileOf('part.dat', 5000), { chunkSize: 1024 }).upload(
      memory,
      't',
      {
        chunks: [4, 2, 4],
      },
    );
    assert.equal(result.chunks, 2);
    assert.deepEqual(
      decodeAll(memory.records).map((c) => [c.chunkI, c.nTotalChunks]),
      [
        [2, 5],
        [4, 5],
      ],
    );
    await assert.rejects(
      new UploadDataFile(fileOf('part2.dat', 5000), { chunkSize: 1024 }).upload(memory, 't', { chunks: [6] }),
      assertCode('SLUICE_USAGE', /chunks are numbered 1\.\.5/),
    );
  });

  test('a file changed after hashing is a conflict, not a mix of versions', async () => {
    const file = fileOf('changing.dat', 4096);
    const up = new UploadDataFile(file, { chunkSize: 1024 });
    await up.prepare();
    writeFileSync(file, pseudoRandomBytes(4096, 99));
    const memory = new MemoryProducer();
    await assert.rejects(up.upload(memory, 't'), assertCode('SLUICE_FILE_CONFLICT', /changed while/));
    assert.equal(memory.records.length, 0);
  });

  // Files above MEMORY_FILE_MAX are read again to be sent: a settled file is checked by its identity (fstat) after
  // each read, a file written just before by hashing each re-read chunk again. Both must stop at the change.
  for (const settledMs of [0, 60_000]) {
    test(`a large file rewritten in place mid-upload is a conflict (${settledMs === 0 ? 'settled: identity check' : 'not settled: re-hash'})`, async () => {
      const size = MEMORY_FILE_MAX + 3 * 65536;
      const v1 = pseudoRandomBytes(size, 41);
      const v2 = pseudoRandomBytes(size, 42);
      const file = join(tmp.dir, `rewritten-${settledMs}.dat`);
      writeFileSync(file, v1);
      // let the clock move past the timestamps of the write above, so the rewrite below gets others
      await new Promise((resolve) => setTimeout(resolve, 50));
      const memory = new MemoryProducer();
      const hooked = new HookedProducer(memory, {
        after: (_r, n) => {
          if (n === 2) writeFileSync(file, v2);
        },
      });
      const up = new UploadDataFile(file, { chunkSize: 65536, settledMs });
      await assert.rejects(
        up.upload(hooked, 't', { maxInFlight: 1 }),
        assertCode('SLUICE_FILE_CONFLICT', /changed while/),
      );
      const sent = decodeAll(memory.records);
      assert.ok(sent.length >= 2 && sent.length < up.nChunks, `stopped early (${sent.length} chunks)`);
      for (const c of sent) {
        assert.ok(c.data.equals(v1.subarray(c.chunkOffsetWrite, c.chunkOffsetWrite + c.data.length)));
        assert.deepEqual(c.fileHash, sha512(v1));
      }
    });
  }

  test('a large file is sent from a second read with the hashes of the first', async () => {
    const size = MEMORY_FILE_MAX + 100_000;
    const content = pseudoRandomBytes(size, 43);
    const file = join(tmp.dir, 'large-ok.dat');
    writeFileSync(file, content);
    const memory = new MemoryProducer();
    for (const settledMs of [0, 60_000]) {
      memory.records.length = 0;
      const up = new UploadDataFile(file, { chunkSize: 1024 * 1024, settledMs });
      const result = await up.upload(memory, 't', { maxInFlight: 2 });
      assert.equal(result.chunks, 5);
      const rebuilt = Buffer.alloc(size);
      for (const c of decodeAll(memory.records)) {
        assert.deepEqual(c.chunkHash, sha512(c.data));
        assert.deepEqual(c.fileHash, sha512(content));
        c.data.copy(rebuilt, c.chunkOffsetWrite);
      }
      assert.ok(rebuilt.equals(content));
    }
  });

  test('stopping through the signal waits for chunks in flight, then rejects with SLUICE_CLOSED', async () => {
    const controller = new AbortController();
    const hooked = new HookedProducer(new MemoryProducer(), {
      after: (_r, n) => {
        if (n === 2) controller.abort();
      },
    });
    const acked: number[] = [];
    await assert.rejects(
      new UploadDataFile(fileOf('stop.dat', 10 * 1024), { chunkSize: 1024 }).upload(hooked, 't', {
        maxInFlight: 1,
        signal: controller.signal,
        onChunk: (a) => acked.push(a.chunkI),
      }),
      (err: unknown) => {
        assertCode('SLUICE_CLOSED', /8 chunk\(s\) not sent \(2 sent/)(err);
        assert.equal((err as SluiceError).details.stopped, true);
        return true;
      },
    );
    assert.deepEqual(acked, [1, 2]);
    assert.equal(hooked.sends, 2);
  });
});
