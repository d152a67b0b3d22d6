import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isSluiceError } from '../../../src/errors.ts';
import { type DataFileChunk, decodeChunk, encodeChunk } from '../../../src/files/chunk-codec.ts';
import {
  type ChunkSource,
  DOWNLOAD_CODES,
  type DownloadCode,
  DownloadDataFile,
  type DownloadMode,
  PARTIAL_SUFFIX,
} from '../../../src/files/download-data-file.ts';
import { pseudoRandomBytes, sha512 } from './chunk-helpers.ts';

const {
  FILE_HASH_MISMATCH,
  FILE_IN_PROGRESS,
  FILE_SUCCESSFULLY_RECONSTRUCTED,
  CHUNK_ALREADY_WRITTEN,
  GENERATION_RESET,
} = DOWNLOAD_CODES;
const MODES: DownloadMode[] = ['memory', 'disk', 'both'];

const tmpRoot = mkdtempSync(path.join(tmpdir(), 'sluice-download-'));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;
function freshDir(): string {
  const dir = path.join(tmpRoot, `out${dirCount++}`);
  mkdirSync(dir);
  return dir;
}

// ---------------------------------------------------------------------------------------------------------------
// helpers

interface ChunkOptions {
  chunkSize?: number;
  filename?: string;
  subdirStr?: string;
  filenameAppend?: string;
  mtime?: number;
}

/** One encoded-then-decoded chunk, as a consumer sees it. */
function wireChunk(fields: DataFileChunk): DataFileChunk {
  return decodeChunk(encodeChunk(fields)) as DataFileChunk;
}

/** Chunk `data` by the spec's rule (section 3): chunk i covers [(i-1)*size, min(i*size, length)); empty → 1 chunk. */
function chunkFile(data: Buffer, o: ChunkOptions = {}): DataFileChunk[] {
  const size = o.chunkSize ?? 16;
  const fileHash = sha512(data);
  const n = Math.max(1, Math.ceil(data.length / size));
  return Array.from({ length: n }, (_, k) => {
    const part = data.subarray(k * size, Math.min((k + 1) * size, data.length));
    return wireChunk({
      filename: o.filename ?? 'data.bin',
      fileHash,
      chunkHash: sha512(part),
      chunkOffsetWrite: k * size,
      chunkI: k + 1,
      nTotalChunks: n,
      subdirStr: o.subdirStr ?? 'sub/dir',
      filenameAppend: o.filenameAppend ?? '',
      data: part,
      fileMtime: o.mtime ?? 1700000000,
    });
  });
}

/** The same chunk with one byte of its data flipped and a matching chunk hash (so it decodes fine). */
function corrupt(chunk: DataFileChunk): DataFileChunk {
  const data = Buffer.from(chunk.data);
  data[0] = (data[0] as number) ^ 0xff;
  return wireChunk({ ...chunk, data, chunkHash: sha512(data) });
}

/** Deterministic shuffle (mulberry32). */
function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let a = seed >>> 0;
  const rand = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

function source(chunk: DataFileChunk, generation = 0): ChunkSource {
  return { topic: 't', partition: chunk.chunkI % 3, offset: 1000 * generation + chunk.chunkI };
}

async function feed(
  file: DownloadDataFile,
  chunks: DataFileChunk[],
  generation = 0,
): Promise<DownloadCode[]> {
  const codes: DownloadCode[] = [];
  for (const c of chunks) codes.push(await file.addChunk(c, source(c, generation)));
  return codes;
}

function dirListing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out.push(r);
    }
  };
  walk(dir, '');
  return out.sort();
}

/** Assert the rebuilt result in whichever places `mode` keeps it. */
function assertRebuilt(file: DownloadDataFile, mode: DownloadMode, expected: Buffer): void {
  assert.equal(file.isComplete, true);
  if (mode !== 'disk') assert.ok(file.bytestring?.equals(expected), 'bytestring holds the file');
  if (mode !== 'memory') {
    assert.ok(readFileSync(file.fullFilepath).equals(expected), 'the final file holds the file');
    assert.equal(existsSync(file.partialFilepath), false, 'no partial file left');
  } else {
    assert.equal(existsSync(file.fullFilepath), false, 'memory mode writes nothing');
  }
}

function byCode(code: string) {
  return (err: unknown): boolean => {
    assert.ok(isSluiceError(err, code as 'SLUICE_IO'), `expected ${code}, got ${String(err)}`);
    return true;
  };
}

const A = pseudoRandomBytes(100, 1); // 7 chunks of 16 (last one 4 bytes)
const B = pseudoRandomBytes(150, 2); // 10 chunks

// ---------------------------------------------------------------------------------------------------------------

describe('DownloadDataFile: rebuilding', () => {
  for (const mode of MODES) {
    test(`${mode}: rebuilds from shuffled chunks, with upstream's properties`, async () => {
      const outputDir = freshDir();
      const data = pseudoRandomBytes(1000, 7);
      const chunks = chunkFile(data, {
        chunkSize: 64,
        filename: 'run.tar.gz',
        filenameAppend: '_v2',
        subdirStr: 'a/b',
      });
      const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir, mode });
      assert.equal(file.filename, 'run.tar_v2.gz');
      assert.equal(file.subdirStr, 'a/b');
      assert.equal(file.relativeFilepath, 'a/b/run.tar_v2.gz');
      assert.equal(file.fullFilepath, path.join(outputDir, 'a', 'b', 'run.tar_v2.gz'));
      assert.equal(file.partialFilepath, path.join(outputDir, 'a', 'b', `.run.tar_v2.gz${PARTIAL_SUFFIX}`));
      assert.equal(file.nTotalChunks, 0);
      assert.equal(file.fileHash === null, true);

      const order = shuffled(chunks, 42);
      const codes = await feed(file, order);
      assert.deepEqual(codes, [
        ...Array(chunks.length - 1).fill(FILE_IN_PROGRESS),
        FILE_SUCCESSFULLY_RECONSTRUCTED,
      ]);
      assert.equal(file.nTotalChunks, 16);
      assert.equal(file.chunksReceived, 16);
      assert.ok(file.fileHash?.equals(sha512(data)));
      assert.equal(file.fileMtime, 1700000000);
      assert.equal(file.generation, 0);
      assertRebuilt(file, mode, data);
      assert.deepEqual(
        new Set(file.sourceMessages.map((s) => `${s.partition}:${s.offset}`)),
        new Set(chunks.map((c) => `${c.chunkI % 3}:${c.chunkI}`)),
      );
      assert.deepEqual(file.droppedMessages, []);
    });

    test(`${mode}: nothing final until the last chunk; in order, reversed and gapped orders all verify`, async () => {
      const data = pseudoRandomBytes(500, 8);
      const chunks = chunkFile(data, { chunkSize: 50 });
      const orders = [
        chunks, // sequential hashing only
        [...chunks].reverse(), // one full re-read
        [chunks[0], chunks[1], chunks[3], chunks[2], ...chunks.slice(4)] as DataFileChunk[], // hashed prefix + re-read
      ];
      for (const order of orders) {
        const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir: freshDir(), mode });
        for (const c of order.slice(0, -1)) {
          assert.equal(await file.addChunk(c), FILE_IN_PROGRESS);
          assert.equal(
            existsSync(file.fullFilepath),
            false,
            'no file under the final name while in progress',
          );
          assert.equal(existsSync(file.partialFilepath), mode !== 'memory');
          if (mode !== 'disk') assert.equal(file.bytestring, null);
        }
        assert.equal(await file.addChunk(order.at(-1) as DataFileChunk), FILE_SUCCESSFULLY_RECONSTRUCTED);
        assertRebuilt(file, mode, data);
      }
    });

    test(`${mode}: a corrupted chunk fails the whole-file hash in every arrival order`, async () => {
      const data = pseudoRandomBytes(500, 9);
      const chunks = chunkFile(data, { chunkSize: 50 });
      for (const bad of [0, 4, 9]) {
        const tampered = chunks.map((c, i) => (i === bad ? corrupt(c) : c));
        for (const order of [tampered, [...tampered].reverse(), shuffled(tampered, bad)]) {
          const outputDir = freshDir();
          const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir, mode });
          const codes = await feed(file, order);
          assert.equal(codes.at(-1), FILE_HASH_MISMATCH, `bad chunk ${bad}`);
          assert.equal(file.isComplete, false);
          assert.equal(file.chunksReceived, 0, 'the failed generation is dropped');
          assert.deepEqual(dirListing(outputDir), [], 'nothing under the final name, no partial file');
          if (mode !== 'disk') assert.equal(file.bytestring, null);
        }
      }
    });

    test(`${mode}: an empty file (one chunk, zero bytes) is rebuilt`, async () => {
      const outputDir = freshDir();
      const [chunk] = chunkFile(Buffer.alloc(0), { filename: 'empty.dat', subdirStr: '' });
      assert.equal(chunk?.nTotalChunks, 1);
      const file = new DownloadDataFile(chunk as DataFileChunk, { outputDir, mode });
      assert.equal(file.relativeFilepath, 'empty.dat');
      assert.equal(await file.addChunk(chunk as DataFileChunk), FILE_SUCCESSFULLY_RECONSTRUCTED);
      assertRebuilt(file, mode, Buffer.alloc(0));
      if (mode !== 'memory') assert.equal(statSync(file.fullFilepath).size, 0);
    });

    test(`${mode}: duplicates are idempotent, before and after completion`, async () => {
      const outputDir = freshDir();
      const chunks = chunkFile(A);
      const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir, mode });
      const c1 = chunks[0] as DataFileChunk;
      assert.equal(await file.addChunk(c1, { topic: 't', partition: 0, offset: 1 }), FILE_IN_PROGRESS);
      assert.equal(await file.addChunk(c1, { topic: 't', partition: 0, offset: 1 }), CHUNK_ALREADY_WRITTEN);
      assert.equal(await file.addChunk(c1, { topic: 't', partition: 2, offset: 9 }), CHUNK_ALREADY_WRITTEN);
      assert.equal(file.chunksReceived, 1);
      const codes = await feed(file, chunks.slice(1));
      assert.equal(codes.at(-1), FILE_SUCCESSFULLY_RECONSTRUCTED);
      assert.equal(await file.addChunk(chunks[3] as DataFileChunk), CHUNK_ALREADY_WRITTEN);
      assertRebuilt(file, mode, A);
      const positions = file.sourceMessages.map((s) => `${s.partition}:${s.offset}`);
      assert.ok(
        positions.includes('0:1') && positions.includes('2:9'),
        'both deliveries of chunk 1 are listed',
      );
      assert.equal(positions.length, chunks.length + 1);
    });

    test(`${mode}: contradicting chunks are SLUICE_FILE_CONFLICT`, async () => {
      const chunks = chunkFile(A);
      const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir: freshDir(), mode });
      await file.addChunk(chunks[0] as DataFileChunk);
      await file.addChunk(chunks[1] as DataFileChunk);
      // same file hash, different chunk count
      const recounted = wireChunk({ ...(chunks[2] as DataFileChunk), nTotalChunks: 8 });
      await assert.rejects(file.addChunk(recounted), (err: unknown) => {
        byCode('SLUICE_FILE_CONFLICT')(err);
        assert.match((err as Error).message, /8 chunks.*said 7/);
        return true;
      });
      // same index, different content under the same file hash
      await assert.rejects(
        file.addChunk(corrupt(chunks[1] as DataFileChunk)),
        byCode('SLUICE_FILE_CONFLICT'),
      );
      await assert.rejects(
        file.addChunk(wireChunk({ ...(chunks[1] as DataFileChunk), chunkOffsetWrite: 17 })),
        byCode('SLUICE_FILE_CONFLICT'),
      );
      // the file is still intact and completes
      const codes = await feed(file, chunks.slice(2));
      assert.equal(codes.at(-1), FILE_SUCCESSFULLY_RECONSTRUCTED);
      assertRebuilt(file, mode, A);
    });

    test(`${mode}: a newer generation after completion replaces the file`, async () => {
      const outputDir = freshDir();
      const a = chunkFile(A);
      const b = chunkFile(B);
      const file = new DownloadDataFile(a[0] as DataFileChunk, { outputDir, mode });
      await feed(file, a);
      assertRebuilt(file, mode, A);
      assert.equal(await file.addChunk(b[5] as DataFileChunk), GENERATION_RESET);
      assert.equal(file.isComplete, false);
      if (mode !== 'memory')
        assert.ok(readFileSync(file.fullFilepath).equals(A), 'old version stays until then');
      const codes = await feed(
        file,
        b.filter((_, i) => i !== 5),
        1,
      );
      assert.equal(codes.at(-1), FILE_SUCCESSFULLY_RECONSTRUCTED);
      assertRebuilt(file, mode, B);
    });
  }

  test('overlapping chunks cannot slip bytes past the whole-file hash', async () => {
    // chunks 1 and 2 are the real file and hash in order; chunk 3 then overwrites its middle
    const x = pseudoRandomBytes(32, 40);
    const fileHash = sha512(x);
    const part = (data: Buffer, offset: number, chunkI: number): DataFileChunk =>
      wireChunk({
        filename: 'o.bin',
        fileHash,
        chunkHash: sha512(data),
        chunkOffsetWrite: offset,
        chunkI,
        nTotalChunks: 3,
        subdirStr: '',
        filenameAppend: '',
        data,
        fileMtime: 0,
      });
    const chunks = [
      part(x.subarray(0, 16), 0, 1),
      part(x.subarray(16), 16, 2),
      part(Buffer.alloc(8, 7), 8, 3),
    ];
    for (const mode of MODES) {
      const outputDir = freshDir();
      const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir, mode });
      assert.deepEqual(
        await feed(file, chunks),
        [FILE_IN_PROGRESS, FILE_IN_PROGRESS, FILE_HASH_MISMATCH],
        mode,
      );
      assert.deepEqual(dirListing(outputDir), []);
    }
  });

  test('bytes changed on disk behind our back: disk mode reports a mismatch, both mode a disk/memory disagreement', async () => {
    const data = pseudoRandomBytes(500, 50);
    const chunks = chunkFile(data, { chunkSize: 50 }).reverse(); // out of order: verified by re-reading the file
    for (const mode of ['disk', 'both'] as const) {
      const outputDir = freshDir();
      const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir, mode });
      await feed(file, chunks.slice(0, -1));
      const partial = readFileSync(file.partialFilepath);
      partial[300] = (partial[300] as number) ^ 1;
      writeFileSync(file.partialFilepath, partial);
      if (mode === 'disk') {
        assert.equal(await file.addChunk(chunks.at(-1) as DataFileChunk), FILE_HASH_MISMATCH);
      } else {
        await assert.rejects(file.addChunk(chunks.at(-1) as DataFileChunk), (err: unknown) => {
          byCode('SLUICE_IO')(err);
          assert.match((err as Error).message, /differs from the memory copy/);
          return true;
        });
      }
      assert.deepEqual(dirListing(outputDir), [], `${mode}: nothing kept`);
      assert.equal(file.chunksReceived, 0);
    }
  });

  test('disk: a stale partial file left by an earlier process is truncated, not reused', async () => {
    const outputDir = freshDir();
    const chunks = chunkFile(A);
    const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir, mode: 'disk' });
    mkdirSync(path.dirname(file.partialFilepath), { recursive: true });
    writeFileSync(file.partialFilepath, pseudoRandomBytes(5000, 3));
    await feed(file, shuffled(chunks, 5));
    assertRebuilt(file, 'disk', A);
  });

  test('disk: a hash mismatch leaves an existing final file untouched', async () => {
    const outputDir = freshDir();
    const chunks = chunkFile(A, { subdirStr: '' });
    const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir, mode: 'disk' });
    writeFileSync(file.fullFilepath, 'previous version');
    const codes = await feed(
      file,
      chunks.map((c, i) => (i === 3 ? corrupt(c) : c)),
    );
    assert.equal(codes.at(-1), FILE_HASH_MISMATCH);
    assert.equal(readFileSync(file.fullFilepath, 'utf8'), 'previous version');
    assert.deepEqual(dirListing(outputDir), ['data.bin']);
  });

  test('disk: a name too long for a partial-file prefix uses a hashed partial name', async () => {
    const outputDir = freshDir();
    const filename = `${'n'.repeat(246)}.dat`; // 250 bytes: fits, but ".<name>.sluice-partial" would not
    const chunks = chunkFile(A, { filename });
    const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir, mode: 'disk' });
    assert.match(path.basename(file.partialFilepath), /^\.sluice-partial-[0-9a-f]{32}$/);
    await feed(file, chunks);
    assertRebuilt(file, 'disk', A);
  });

  test('bytestring is refused in disk mode; bad modes, foreign and invalid chunks are SLUICE_USAGE', async () => {
    const chunks = chunkFile(A);
    const first = chunks[0] as DataFileChunk;
    const disk = new DownloadDataFile(first, { outputDir: freshDir(), mode: 'disk' });
    assert.throws(() => disk.bytestring, byCode('SLUICE_USAGE'));
    assert.throws(
      () => new DownloadDataFile(first, { outputDir: freshDir(), mode: 'ram' as DownloadMode }),
      byCode('SLUICE_USAGE'),
    );
    const file = new DownloadDataFile(first, { outputDir: freshDir(), mode: 'memory' });
    await assert.rejects(
      file.addChunk(chunkFile(A, { filename: 'other.bin' })[0] as DataFileChunk),
      byCode('SLUICE_USAGE'),
    );
    await assert.rejects(
      file.addChunk(chunkFile(A, { subdirStr: 'sub' })[0] as DataFileChunk),
      byCode('SLUICE_USAGE'),
    );
    await assert.rejects(
      file.addChunk(chunkFile(A, { filenameAppend: '_x' })[0] as DataFileChunk),
      byCode('SLUICE_USAGE'),
    );
    await assert.rejects(file.addChunk({ ...first, chunkI: 8 }), byCode('SLUICE_USAGE'));
    await assert.rejects(file.addChunk({ ...first, chunkOffsetWrite: -1 }), byCode('SLUICE_USAGE'));
    await assert.rejects(file.addChunk({ ...first, fileHash: Buffer.alloc(3) }), byCode('SLUICE_USAGE'));
    await assert.rejects(
      file.addChunk(first, { topic: 't', partition: 0.5, offset: 1 } as ChunkSource),
      byCode('SLUICE_USAGE'),
    );
    assert.equal(file.chunksReceived, 0);
  });

  test('hostile paths are SLUICE_UNSAFE_PATH and nothing is written', () => {
    const parent = freshDir();
    const outputDir = path.join(parent, 'out');
    mkdirSync(outputDir);
    const hostile: Partial<DataFileChunk>[] = [
      { subdirStr: '..', filename: 'escape.txt' },
      { subdirStr: 'a/../..', filename: 'escape.txt' },
      { subdirStr: '/etc', filename: 'passwd' },
      { subdirStr: '', filename: '../escape.txt' },
      { subdirStr: '', filename: '..' },
      { subdirStr: 'a\\..\\..', filename: 'x' },
      { subdirStr: 'a', filename: 'x\0y' },
      { subdirStr: 'a', filename: 'x', filenameAppend: '/../../y' },
    ];
    for (const h of hostile) {
      const chunk = { ...(chunkFile(A)[0] as DataFileChunk), ...h };
      for (const mode of MODES) {
        assert.throws(
          () => new DownloadDataFile(chunk, { outputDir, mode }),
          byCode('SLUICE_UNSAFE_PATH'),
          JSON.stringify(h),
        );
      }
    }
    assert.deepEqual(dirListing(parent), []);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// generations (spec section 8, upstream test_download_data_file.py cases)

describe('DownloadDataFile: generations', () => {
  for (const mode of MODES) {
    test(`${mode}: reset on growth; the triggering chunk is written into the new generation`, async () => {
      const a = chunkFile(A); // 7 chunks
      const b = chunkFile(B); // 10 chunks
      const file = new DownloadDataFile(a[0] as DataFileChunk, { outputDir: freshDir(), mode });
      assert.deepEqual(await feed(file, a.slice(0, 3)), [
        FILE_IN_PROGRESS,
        FILE_IN_PROGRESS,
        FILE_IN_PROGRESS,
      ]);
      assert.equal(
        await file.addChunk(b[4] as DataFileChunk, source(b[4] as DataFileChunk, 1)),
        GENERATION_RESET,
      );
      assert.equal(file.generation, 1);
      assert.equal(file.nTotalChunks, 10);
      assert.equal(file.chunksReceived, 1, 'the trigger chunk counts in the new generation');
      assert.ok(file.fileHash?.equals(sha512(B)));
      assert.deepEqual(
        file.droppedMessages.map((s) => s.offset).sort(),
        [1, 2, 3],
        "the old generation's messages are released",
      );
      // the rest of B, each chunk once (the trigger is not re-delivered), and stale A chunks in between
      const rest = b.filter((_, i) => i !== 4);
      const codes: DownloadCode[] = [];
      for (const [i, c] of rest.entries()) {
        codes.push(await file.addChunk(c, source(c, 1)));
        if (i < a.length - 3)
          assert.equal(await file.addChunk(a[3 + i] as DataFileChunk), CHUNK_ALREADY_WRITTEN);
      }
      assert.deepEqual(codes, [...Array(8).fill(FILE_IN_PROGRESS), FILE_SUCCESSFULLY_RECONSTRUCTED]);
      assertRebuilt(file, mode, B);
      assert.deepEqual(
        file.sourceMessages.map((s) => s.offset).sort((x, y) => x - y),
        b.map((c) => 1000 + c.chunkI),
      );
      assert.equal(await file.addChunk(a[0] as DataFileChunk), CHUNK_ALREADY_WRITTEN);
    });

    test(`${mode}: interleaved generations settle on the larger one without re-delivery`, async () => {
      const a = chunkFile(A);
      const b = chunkFile(B);
      for (const seed of [1, 2, 3, 4, 5]) {
        // any interleaving that starts with A; B chunks are delivered exactly once
        const mixed = shuffled([...a.slice(1), ...b], seed);
        const file = new DownloadDataFile(a[0] as DataFileChunk, { outputDir: freshDir(), mode });
        const codes = [await file.addChunk(a[0] as DataFileChunk), ...(await feed(file, mixed))];
        assert.equal(
          codes.filter((c) => c === GENERATION_RESET).length,
          1,
          `seed ${seed}: exactly one reset`,
        );
        const firstB = mixed.findIndex((c) => c.nTotalChunks === 10);
        assert.equal(codes[firstB + 1], GENERATION_RESET);
        for (const [i, c] of mixed.entries()) {
          if (c.nTotalChunks === 7 && i > firstB) assert.equal(codes[i + 1], CHUNK_ALREADY_WRITTEN);
        }
        assert.equal(codes.filter((c) => c === FILE_SUCCESSFULLY_RECONSTRUCTED).length, 1);
        assertRebuilt(file, mode, B);
      }
    });

    test(`${mode}: equal counts do not thrash: one reset to the newer mtime, older chunks skipped`, async () => {
      const a = chunkFile(pseudoRandomBytes(100, 11), { mtime: 1700000000 });
      const newer = pseudoRandomBytes(100, 12);
      const b = chunkFile(newer, { mtime: 1700000500.5 });
      const file = new DownloadDataFile(a[0] as DataFileChunk, { outputDir: freshDir(), mode });
      const codes: DownloadCode[] = [];
      for (let i = 0; i < a.length; i++) {
        codes.push(await file.addChunk(a[i] as DataFileChunk));
        codes.push(await file.addChunk(b[i] as DataFileChunk));
      }
      assert.deepEqual(codes, [
        FILE_IN_PROGRESS,
        GENERATION_RESET,
        ...Array.from({ length: a.length - 1 }, (_, i) => [
          CHUNK_ALREADY_WRITTEN,
          i === a.length - 2 ? FILE_SUCCESSFULLY_RECONSTRUCTED : FILE_IN_PROGRESS,
        ]).flat(),
      ]);
      assert.equal(file.generation, 1);
      assertRebuilt(file, mode, newer);
    });

    test(`${mode}: mtime tiebreak: newer resets, older or equal is skipped, unknown current counts as oldest`, async () => {
      const x = pseudoRandomBytes(100, 13);
      const y = pseudoRandomBytes(100, 14);
      const cases: [number, number, DownloadCode][] = [
        [100, 200, GENERATION_RESET],
        [200, 100, CHUNK_ALREADY_WRITTEN],
        [200, 200, CHUNK_ALREADY_WRITTEN],
        [0, 200, GENERATION_RESET], // upstream does the same (checked against openmsistream 1.8.8)
        [200, 0, CHUNK_ALREADY_WRITTEN],
        [200, -5, CHUNK_ALREADY_WRITTEN],
      ];
      for (const [first, second, expected] of cases) {
        const cx = chunkFile(x, { mtime: first });
        const cy = chunkFile(y, { mtime: second });
        const file = new DownloadDataFile(cx[0] as DataFileChunk, { outputDir: freshDir(), mode });
        await file.addChunk(cx[0] as DataFileChunk);
        assert.equal(await file.addChunk(cy[0] as DataFileChunk), expected, `${first} then ${second}`);
        const winner = expected === GENERATION_RESET ? y : x;
        const rest = expected === GENERATION_RESET ? cy.slice(1) : cx.slice(1);
        assert.equal((await feed(file, rest)).at(-1), FILE_SUCCESSFULLY_RECONSTRUCTED);
        assertRebuilt(file, mode, winner);
      }
    });

    test(`${mode}: equal count without mtime is skipped; fewer chunks are skipped`, async () => {
      const x = pseudoRandomBytes(100, 15);
      const a = chunkFile(x, { mtime: 0 });
      const b = chunkFile(pseudoRandomBytes(100, 16), { mtime: 0 });
      const shorter = chunkFile(pseudoRandomBytes(40, 17), { mtime: 1800000000 });
      const file = new DownloadDataFile(a[0] as DataFileChunk, { outputDir: freshDir(), mode });
      const codes: DownloadCode[] = [];
      for (let i = 0; i < a.length; i++) {
        codes.push(await file.addChunk(a[i] as DataFileChunk));
        codes.push(await file.addChunk(b[i] as DataFileChunk));
        if (shorter[i]) codes.push(await file.addChunk(shorter[i] as DataFileChunk));
      }
      assert.equal(codes.filter((c) => c === GENERATION_RESET).length, 0);
      assert.equal(codes.filter((c) => c === CHUNK_ALREADY_WRITTEN).length, b.length + shorter.length);
      assert.equal(file.fileMtime, 0);
      assertRebuilt(file, mode, x);
    });

    test(`${mode}: generation change ending in a hash mismatch leaves nothing, then rebuilds from a re-read`, async () => {
      const outputDir = freshDir();
      const a = chunkFile(A);
      const b = chunkFile(B);
      const badB = b.map((c, i) => (i === 6 ? corrupt(c) : c));
      const file = new DownloadDataFile(a[0] as DataFileChunk, { outputDir, mode });
      await feed(file, a.slice(0, 4));
      const codes = await feed(file, badB, 1);
      assert.equal(codes[0], GENERATION_RESET);
      assert.equal(codes.at(-1), FILE_HASH_MISMATCH);
      assert.deepEqual(dirListing(outputDir), [], 'no final file, no partial file');
      assert.equal(file.chunksReceived, 0);
      assert.equal(file.nTotalChunks, 10, 'the failed generation is still described, for the registry');
      assert.ok(file.fileHash?.equals(sha512(B)));
      // a late stale chunk of A now starts over (nothing left to compare with), then the re-read B wins
      assert.equal(await file.addChunk(a[5] as DataFileChunk), FILE_IN_PROGRESS);
      const reread = await feed(file, shuffled(b, 3), 2);
      assert.equal(reread[0], GENERATION_RESET);
      assert.equal(reread.at(-1), FILE_SUCCESSFULLY_RECONSTRUCTED);
      assertRebuilt(file, mode, B);
    });
  }

  test('disk: stale chunks are skipped on disk, and a reset truncates the longer old generation', async () => {
    const outputDir = freshDir();
    // A: 3 chunks of 1000 bytes; B: 4 chunks but only 400 bytes. Upstream kept A's trailing bytes here.
    const bigA = pseudoRandomBytes(3000, 21);
    const smallB = pseudoRandomBytes(400, 22);
    const a = chunkFile(bigA, { chunkSize: 1000 });
    const b = chunkFile(smallB, { chunkSize: 100 });
    const file = new DownloadDataFile(a[0] as DataFileChunk, { outputDir, mode: 'disk' });
    assert.equal(await file.addChunk(a[2] as DataFileChunk), FILE_IN_PROGRESS);
    assert.equal(statSync(file.partialFilepath).size, 3000);
    assert.equal(await file.addChunk(b[1] as DataFileChunk), GENERATION_RESET);
    assert.equal(statSync(file.partialFilepath).size, 200, 'the partial file was recreated for B');
    const before = readFileSync(file.partialFilepath);
    for (const stale of a) assert.equal(await file.addChunk(stale), CHUNK_ALREADY_WRITTEN);
    assert.ok(readFileSync(file.partialFilepath).equals(before), 'stale chunks did not touch the file');
    assert.deepEqual(await feed(file, [b[3], b[0], b[2]] as DataFileChunk[]), [
      FILE_IN_PROGRESS,
      FILE_IN_PROGRESS,
      FILE_SUCCESSFULLY_RECONSTRUCTED,
    ]);
    assertRebuilt(file, 'disk', smallB);
    assert.equal(statSync(file.fullFilepath).size, 400);
  });

  test('a reset that completes the new generation at once reports completion, not the reset', async () => {
    for (const mode of MODES) {
      const v1 = Buffer.from('version 1');
      const v2 = Buffer.from('version two');
      const [a] = chunkFile(v1, { mtime: 1, subdirStr: '' });
      const [b] = chunkFile(v2, { mtime: 2, subdirStr: '' });
      const file = new DownloadDataFile(a as DataFileChunk, { outputDir: freshDir(), mode });
      assert.equal(await file.addChunk(a as DataFileChunk), FILE_SUCCESSFULLY_RECONSTRUCTED);
      assert.equal(await file.addChunk(b as DataFileChunk), FILE_SUCCESSFULLY_RECONSTRUCTED);
      assert.equal(file.generation, 1);
      assertRebuilt(file, mode, v2);
      assert.equal(await file.addChunk(a as DataFileChunk), CHUNK_ALREADY_WRITTEN);
    }
  });

  test('abort drops the generation and the partial file', async () => {
    for (const mode of MODES) {
      const outputDir = freshDir();
      const chunks = chunkFile(A);
      const file = new DownloadDataFile(chunks[0] as DataFileChunk, { outputDir, mode });
      await feed(file, chunks.slice(0, 3));
      await file.abort();
      assert.equal(file.chunksReceived, 0);
      assert.deepEqual(dirListing(outputDir), []);
      assert.equal(file.droppedMessages.length, 3);
      assert.equal((await feed(file, chunks)).at(-1), FILE_SUCCESSFULLY_RECONSTRUCTED);
      assertRebuilt(file, mode, A);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// memory
//
// Measured in a fresh child process, so that garbage of other tests cannot hide (or fake) growth, with glibc's
// dynamic mmap threshold pinned (MALLOC_MMAP_THRESHOLD_) so that freed chunk buffers go back to the OS at once and
// RSS follows the live data. Before each sample the probe collects garbage until the live-buffer total settles. The control runs the same probe in memory
// mode and must see the file held; without it, a probe blind to retention would pass vacuously.

const FILE_SIZE = 20 * 1024 * 1024;
const here = (rel: string): string => new URL(rel, import.meta.url).href;
const PROBE = `
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
const { DownloadDataFile } = await import(${JSON.stringify(here('../../../src/files/download-data-file.ts'))});
const { decodeChunk, encodeChunk } = await import(${JSON.stringify(here('../../../src/files/chunk-codec.ts'))});
const { pseudoRandomBytes, sha512 } = await import(${JSON.stringify(here('./chunk-helpers.ts'))});
const [mode, outputDir] = process.argv.slice(1);
const FILE_SIZE = ${FILE_SIZE};
const CHUNK = 256 * 1024;
const N = FILE_SIZE / CHUNK;
const hasher = createHash('sha512');
for (let i = 1; i <= N; i++) hasher.update(pseudoRandomBytes(CHUNK, 1000 + i));
const fileHash = hasher.digest();
const order = Array.from({ length: N }, (_, k) => k + 1);
for (let i = N - 1, x = 7; i > 0; i--) { x = (x * 1103515245 + 12345) % 2147483648; const j = x % (i + 1); [order[i], order[j]] = [order[j], order[i]]; }
const file = new DownloadDataFile({ subdirStr: 'big', filename: 'big.bin', filenameAppend: '' }, { outputDir, mode });
// V8 may free dead buffers' memory after gc() returns: collect until the live-buffer total stops falling
async function settle() {
  let previous = Number.POSITIVE_INFINITY;
  for (let k = 0; k < 50; k++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 2));
    const now = process.memoryUsage().arrayBuffers;
    if (now >= previous) return;
    previous = now;
  }
}
await settle();
const base = process.memoryUsage();
let rss = 0;
let arrayBuffers = 0;
let last;
for (const i of order) {
  const data = pseudoRandomBytes(CHUNK, 1000 + i);
  const chunk = decodeChunk(encodeChunk({ filename: 'big.bin', fileHash, chunkHash: sha512(data), chunkOffsetWrite: (i - 1) * CHUNK,
    chunkI: i, nTotalChunks: N, subdirStr: 'big', filenameAppend: '', data, fileMtime: 1700000000 }));
  last = await file.addChunk(chunk);
  await settle();
  const now = process.memoryUsage();
  rss = Math.max(rss, now.rss - base.rss);
  arrayBuffers = Math.max(arrayBuffers, now.arrayBuffers - base.arrayBuffers);
}
const rebuilt = mode === 'disk' ? readFileSync(file.fullFilepath) : file.bytestring;
process.stdout.write(JSON.stringify({ last, rss, arrayBuffers, size: rebuilt.length,
  hashOk: createHash('sha512').update(rebuilt).digest().equals(fileHash),
  onDisk: mode === 'disk' ? statSync(file.fullFilepath).size : null }));
`;

interface ProbeResult {
  last: number;
  rss: number;
  arrayBuffers: number;
  size: number;
  hashOk: boolean;
  onDisk: number | null;
}

function probe(mode: DownloadMode): ProbeResult {
  const out = execFileSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', PROBE, mode, freshDir()],
    {
      cwd: fileURLToPath(here('../../../')),
      encoding: 'utf8',
      env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072' },
    },
  );
  return JSON.parse(out) as ProbeResult;
}

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;

describe('DownloadDataFile: memory use', () => {
  test('disk mode rebuilds a 20 MB file from shuffled chunks without holding it in memory', (t) => {
    const r = probe('disk');
    t.diagnostic(`peak growth: RSS ${mib(r.rss)}, array buffers ${mib(r.arrayBuffers)}`);
    assert.equal(r.last, FILE_SUCCESSFULLY_RECONSTRUCTED);
    assert.equal(r.onDisk, FILE_SIZE);
    assert.equal(r.hashOk, true);
    assert.ok(r.rss < FILE_SIZE / 4, `RSS grew by ${mib(r.rss)} for a 20 MiB file`);
    assert.ok(
      r.arrayBuffers < FILE_SIZE / 8,
      `live buffers grew by ${mib(r.arrayBuffers)} for a 20 MiB file`,
    );
  });

  test('control: the same probe sees memory mode holding the file', (t) => {
    const r = probe('memory');
    t.diagnostic(`peak growth: RSS ${mib(r.rss)}, array buffers ${mib(r.arrayBuffers)}`);
    assert.equal(r.last, FILE_SUCCESSFULLY_RECONSTRUCTED);
    assert.equal(r.size, FILE_SIZE);
    assert.equal(r.hashOk, true);
    assert.ok(r.rss > (FILE_SIZE * 3) / 4, `RSS grew by only ${mib(r.rss)} in memory mode`);
    assert.ok(r.arrayBuffers > (FILE_SIZE * 3) / 4, `live buffers grew by only ${mib(r.arrayBuffers)}`);
  });
});
