/**
 * Chunk values written by the real `openmsistream` package (see test/fixtures/openmsistream/manifest.json and
 * scripts/fixtures/gen-openmsistream-chunks.py, which made them from sample data of our own).
 *
 * For each chunk: our decoder reads every field the package wrote, our encoder reproduces the package's bytes,
 * and our key functions reproduce the package's keys. For each file: the chunks rebuild the sample data that the
 * manifest's recipe describes, following the chunking rule in the spec (section 3).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeChunk, encodeChunk } from '../../../src/files/chunk-codec.ts';
import { chunkKey, resultKey } from '../../../src/files/chunk-key.ts';
import { applyFilenameAppend } from '../../../src/files/safe-path.ts';

const DIR = fileURLToPath(new URL('../../fixtures/openmsistream/', import.meta.url));

interface ManifestChunk {
  file: string;
  bytes: number;
  key: string;
  filename: string;
  fileHash: string;
  chunkHash: string;
  chunkOffsetWrite: number;
  chunkI: number;
  nTotalChunks: number;
  subdirStr: string;
  filenameAppend: string;
  dataLength: number;
  fileMtime: number;
}

interface ManifestCase {
  id: string;
  seed: string;
  subdirStr: string;
  filename: string;
  filenameAppend: string;
  size: number;
  chunkSize: number;
  fileMtime: number;
  fileSha512: string;
  resultKey: string;
  chunks: ManifestChunk[];
}

const manifest = JSON.parse(readFileSync(path.join(DIR, 'manifest.json'), 'utf8')) as {
  openmsistream: string;
  cases: ManifestCase[];
};

/** The manifest's recipe: SHA-256('<seed>:<counter>') for counter 0, 1, 2, ... concatenated, cut to size. */
function sampleBytes(seed: string, size: number): Buffer {
  const parts: Buffer[] = [];
  for (let n = 0, i = 0; n < size; n += 32, i++)
    parts.push(createHash('sha256').update(`${seed}:${i}`).digest());
  return Buffer.concat(parts).subarray(0, size);
}

test('the manifest lists the expected cases', () => {
  assert.match(manifest.openmsistream, /^\d+\.\d+\.\d+/);
  assert.deepEqual(
    manifest.cases.map((c) => c.id),
    ['root-multi', 'nested-unicode', 'one-chunk', 'long-multi', 'tiny-append-nomtime'],
  );
});

for (const fc of manifest.cases) {
  describe(`fixture ${fc.id} (openmsistream ${manifest.openmsistream})`, () => {
    for (const mc of fc.chunks) {
      test(`${mc.file}: decode, compare with the manifest, re-encode byte-identically, same key`, () => {
        const value = readFileSync(path.join(DIR, mc.file));
        assert.equal(value.length, mc.bytes);
        const c = decodeChunk(value);
        assert.ok(c);
        assert.deepEqual(
          {
            filename: c.filename,
            fileHash: c.fileHash.toString('hex'),
            chunkHash: c.chunkHash.toString('hex'),
            chunkOffsetWrite: c.chunkOffsetWrite,
            chunkI: c.chunkI,
            nTotalChunks: c.nTotalChunks,
            subdirStr: c.subdirStr,
            filenameAppend: c.filenameAppend,
            dataLength: c.data.length,
            fileMtime: c.fileMtime,
          },
          {
            filename: mc.filename,
            fileHash: mc.fileHash,
            chunkHash: mc.chunkHash,
            chunkOffsetWrite: mc.chunkOffsetWrite,
            chunkI: mc.chunkI,
            nTotalChunks: mc.nTotalChunks,
            subdirStr: mc.subdirStr,
            filenameAppend: mc.filenameAppend,
            dataLength: mc.dataLength,
            fileMtime: mc.fileMtime,
          },
        );
        assert.deepEqual(encodeChunk(c), value);
        assert.equal(chunkKey(c.subdirStr, c.filename, c.chunkI, c.nTotalChunks), mc.key);
      });
    }

    test('the chunks follow the chunking rule and rebuild the sample file', () => {
      const expected = sampleBytes(fc.seed, fc.size);
      assert.equal(createHash('sha512').update(expected).digest('hex'), fc.fileSha512);
      const nTotal = Math.ceil(fc.size / fc.chunkSize);
      assert.equal(fc.chunks.length, nTotal);
      const rebuilt = Buffer.alloc(fc.size);
      fc.chunks.forEach((mc, idx) => {
        const c = decodeChunk(readFileSync(path.join(DIR, mc.file)));
        assert.ok(c);
        const i = idx + 1;
        assert.equal(c.chunkI, i);
        assert.equal(c.nTotalChunks, nTotal);
        assert.equal(c.chunkOffsetWrite, (i - 1) * fc.chunkSize);
        assert.equal(c.data.length, Math.min(i * fc.chunkSize, fc.size) - (i - 1) * fc.chunkSize);
        assert.equal(c.fileHash.toString('hex'), fc.fileSha512);
        assert.equal(c.fileMtime, fc.fileMtime);
        c.data.copy(rebuilt, c.chunkOffsetWrite);
      });
      assert.ok(rebuilt.equals(expected));
    });

    test('result key matches the package (rebuilt name includes filename_append)', () => {
      assert.equal(
        resultKey(fc.subdirStr, applyFilenameAppend(fc.filename, fc.filenameAppend)),
        fc.resultKey,
      );
    });
  });
}
