/**
 * Deterministic test corpora for the files benchmark: the same sizes, names and bytes on every run and machine.
 *
 * Contents are an AES-128-CTR keystream keyed by the seed and the file's path, so they are incompressible (like
 * most instrument data after the instrument's own compression) and cost almost nothing to produce. Every file gets
 * the same fixed mtime, far in the past, so watchers treat them as settled at once. A SHA-1 of each file is kept
 * to verify rebuilt copies (SHA-1 is only an equality check here, chosen for speed).
 */
import { createCipheriv, createHash } from 'node:crypto';
import { mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

export interface CorpusSpec {
  /** Number of small files and their size range (inclusive, bytes). */
  smallCount: number;
  smallMin: number;
  smallMax: number;
  /** Sizes of the large files, bytes. */
  large: number[];
  seed: string;
}

export interface CorpusFile {
  /** `/`-separated path relative to the corpus root. */
  rel: string;
  size: number;
  sha1: string;
}

export interface Corpus {
  dir: string;
  files: CorpusFile[];
  bytes: number;
}

/** The file mtime of every corpus file (2024-01-01T00:00:00Z). */
const MTIME = new Date('2024-01-01T00:00:00Z');

/** splitmix32: a tiny seeded PRNG for sizes. */
function prng(seed: string): () => number {
  let s = createHash('sha256').update(seed).digest().readUInt32LE(0);
  return () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 2 ** 32;
  };
}

/** Names and sizes of a corpus, without writing anything. */
export function planCorpus(spec: CorpusSpec): Array<{ rel: string; size: number }> {
  const rand = prng(spec.seed);
  const files: Array<{ rel: string; size: number }> = [];
  spec.large.forEach((size, i) => {
    files.push({ rel: `large/large-${String(i + 1).padStart(2, '0')}.dat`, size });
  });
  const perDir = 100;
  for (let i = 0; i < spec.smallCount; i++) {
    const size = spec.smallMin + Math.floor(rand() * (spec.smallMax - spec.smallMin + 1));
    const d = String(Math.floor(i / perDir)).padStart(3, '0');
    files.push({ rel: `small/d${d}/f${String(i).padStart(5, '0')}.dat`, size });
  }
  return files;
}

const BLOCK = 4 * MiB;

async function writeFile(root: string, seed: string, rel: string, size: number): Promise<string> {
  const path = join(root, ...rel.split('/'));
  mkdirSync(dirname(path), { recursive: true });
  const key = createHash('sha256').update(`${seed}\0${rel}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const sha1 = createHash('sha1');
  if (size <= BLOCK) {
    const data = cipher.update(Buffer.alloc(size));
    sha1.update(data);
    writeFileSync(path, data);
  } else {
    const zeros = Buffer.alloc(BLOCK);
    const fh = await open(path, 'w');
    try {
      for (let pos = 0; pos < size; pos += BLOCK) {
        const n = Math.min(BLOCK, size - pos);
        const data = cipher.update(n === BLOCK ? zeros : zeros.subarray(0, n));
        sha1.update(data);
        await fh.write(data, 0, n, pos);
      }
    } finally {
      await fh.close();
    }
  }
  utimesSync(path, MTIME, MTIME);
  return sha1.digest('hex');
}

/** Writes the corpus under `dir` (which should be empty). */
export async function generateCorpus(dir: string, spec: CorpusSpec): Promise<Corpus> {
  const files: CorpusFile[] = [];
  for (const f of planCorpus(spec)) {
    files.push({ ...f, sha1: await writeFile(dir, spec.seed, f.rel, f.size) });
  }
  return { dir, files, bytes: files.reduce((n, f) => n + f.size, 0) };
}

async function sha1Of(path: string): Promise<string> {
  const hash = createHash('sha1');
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(BLOCK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, BLOCK, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

export interface Verification {
  ok: number;
  missing: string[];
  different: string[];
  /** Files in the output that are not in the corpus (besides the programs' `LOGS/` and `*.log` at the root). */
  extra: string[];
}

/** Compares a rebuilt tree with the corpus, byte for byte (via SHA-1). */
export async function verifyTree(outDir: string, corpus: Corpus): Promise<Verification> {
  const result: Verification = { ok: 0, missing: [], different: [], extra: [] };
  const expected = new Set(corpus.files.map((f) => f.rel));
  for (const f of corpus.files) {
    const path = join(outDir, ...f.rel.split('/'));
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      result.missing.push(f.rel);
      continue;
    }
    if (size !== f.size || (await sha1Of(path)) !== f.sha1) result.different.push(f.rel);
    else result.ok++;
  }
  const walk = (abs: string, rel: string): void => {
    for (const d of readdirSync(abs, { withFileTypes: true })) {
      const r = rel === '' ? d.name : `${rel}/${d.name}`;
      if (rel === '' && (d.name === 'LOGS' || d.name.endsWith('.log'))) continue;
      if (d.isDirectory()) walk(join(abs, d.name), r);
      else if (!expected.has(r)) result.extra.push(r);
    }
  };
  walk(outDir, '');
  return result;
}

export function describeVerification(v: Verification, total: number): string {
  if (v.ok === total && v.extra.length === 0) return `${v.ok}/${total} identical`;
  const parts = [`${v.ok}/${total} identical`];
  if (v.missing.length > 0) parts.push(`${v.missing.length} missing (e.g. ${v.missing[0]})`);
  if (v.different.length > 0) parts.push(`${v.different.length} different (e.g. ${v.different[0]})`);
  if (v.extra.length > 0) parts.push(`${v.extra.length} unexpected (e.g. ${v.extra[0]})`);
  return parts.join(', ');
}

/** Sum of the sizes of the files under `dir` (for disk-use notes). */
export function treeBytes(dir: string): number {
  let n = 0;
  for (const d of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (d.isFile()) n += statSync(join(d.parentPath, d.name)).size;
  }
  return n;
}
