import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  PRODUCER_COMPLETED_COLUMNS,
  PRODUCER_IN_PROGRESS_COLUMNS,
} from '../../../src/files/registry/names.ts';
import { type ColumnSpec, formatRegistry, readRegistry } from '../../../src/files/registry/table.ts';
import { UploadRegistry } from '../../../src/files/upload-registry.ts';
import { tempDir } from './upload-helpers.ts';

const tmp = tempDir('upload-registry');
after(() => tmp.cleanup());
let n = 0;
function freshDir(): string {
  const dir = join(tmp.dir, `d${++n}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const HOSTILE = [
  'plain.dat',
  'semi;colon.dat',
  'comma,name.dat',
  'tab\there.dat',
  "single'quote.dat",
  'double"quote.dat',
  `both'"quotes.dat`,
  'back\\slash.dat',
  'new\nline.dat',
  'sub dir/ünïcödé 数据.dat',
  'a/b/c;d/e\tf.dat',
];

describe('UploadRegistry files', () => {
  test('uses the upstream file names and columns, and leaves an empty in-progress table after completion', async () => {
    const dir = freshDir();
    const reg = new UploadRegistry({ uploadDir: dir, topic: 'raw', producerId: 'abc123' });
    const snap = await reg.open();
    assert.deepEqual(snap.inProgress, []);
    reg.begin({
      filename: 'x.dat',
      relPath: 'sub/x.dat',
      nChunks: 3,
      delivered: new Set(),
      toSend: new Set([1, 2, 3]),
      started: new Date(2026, 2, 4, 9, 18, 33),
    });
    reg.delivered('sub/x.dat', 2);
    await reg.flush();
    const logs = join(dir, 'LOGS');
    const inProgressText = readFileSync(join(logs, 'upload_to_raw_in_progress.csv'), 'utf8');
    assert.equal(
      inProgressText,
      'filename;rel_filepath;n_chunks;n_chunks_delivered;n_chunks_to_send;started;chunks_delivered;chunks_to_send\n' +
        "'x.dat';'sub/x.dat';3;1;2;'Wed Mar 04, 2026 at 09:18:33';{2};{1, 3}",
    );
    reg.delivered('sub/x.dat', 1);
    reg.delivered('sub/x.dat', 3);
    reg.complete('sub/x.dat', new Date(2026, 2, 4, 9, 20, 0));
    await reg.flush();
    assert.ok(existsSync(join(logs, 'uploaded_to_raw_pabc123.csv')), 'per-producer file while running');
    await reg.close();
    assert.equal(
      readFileSync(join(logs, 'upload_to_raw_in_progress.csv'), 'utf8'),
      'filename;rel_filepath;n_chunks;n_chunks_delivered;n_chunks_to_send;started;chunks_delivered;chunks_to_send',
    );
    assert.equal(
      readFileSync(join(logs, 'uploaded_to_raw.csv'), 'utf8'),
      'filename;rel_filepath;n_chunks;started;completed\n' +
        "'x.dat';'sub/x.dat';3;'Wed Mar 04, 2026 at 09:18:33';'Wed Mar 04, 2026 at 09:20:00'",
    );
    assert.deepEqual(
      readdirSync(logs)
        .filter((f) => f.endsWith('.csv'))
        .sort(),
      ['upload_to_raw_in_progress.csv', 'uploaded_to_raw.csv'],
    );
  });

  test('paths with ;, tabs, quotes, backslashes, newlines and non-ASCII round-trip through both files', async () => {
    const dir = freshDir();
    const reg = new UploadRegistry({ uploadDir: dir, topic: 't' });
    await reg.open();
    HOSTILE.forEach((rel, i) => {
      reg.begin({
        filename: rel.split('/').pop() as string,
        relPath: rel,
        nChunks: 4,
        delivered: new Set([1, 3].slice(0, i % 3)),
        toSend: new Set([2, 4]),
        started: new Date(2026, 0, 1, 0, 0, i),
      });
    });
    reg.complete(HOSTILE[0] as string);
    reg.complete(HOSTILE[1] as string);
    await reg.close();

    const again = new UploadRegistry({ uploadDir: dir, topic: 't' });
    const snap = await again.open();
    assert.deepEqual(
      snap.inProgress.map((e) => e.relPath),
      HOSTILE.slice(2),
    );
    for (const e of snap.inProgress) {
      assert.equal(e.filename, e.relPath.split('/').pop());
      assert.deepEqual(e.toSend, new Set([2, 4]));
    }
    assert.deepEqual([...snap.completed.keys()].sort(), HOSTILE.slice(0, 2).sort());
    await again.close();
  });

  test('merges leftover per-producer files of its topic only (not those of topic t2)', async () => {
    const dir = freshDir();
    const logs = join(dir, 'LOGS');
    mkdirSync(logs);
    const cols = PRODUCER_COMPLETED_COLUMNS as ColumnSpec[];
    const row = (name: string) => ({
      filename: name,
      rel_filepath: name,
      n_chunks: 1,
      started: new Date(2026, 0, 1),
      completed: new Date(2026, 0, 2),
    });
    writeFileSync(join(logs, 'uploaded_to_t.csv'), formatRegistry(cols, [row('main.dat')]));
    writeFileSync(join(logs, 'uploaded_to_t_p7f3a.csv'), formatRegistry(cols, [row('p1.dat')]));
    writeFileSync(
      join(logs, 'uploaded_to_t_p7f3a_1700000000_25.csv'),
      formatRegistry(cols, [row('rolled.dat')]),
    );
    writeFileSync(join(logs, 'uploaded_to_t2.csv'), formatRegistry(cols, [row('other-topic.dat')]));
    writeFileSync(join(logs, 'uploaded_to_t2_p1.csv'), formatRegistry(cols, [row('other-topic2.dat')]));
    const reg = new UploadRegistry({ uploadDir: dir, topic: 't' });
    const snap = await reg.open();
    assert.deepEqual([...snap.completed.keys()].sort(), ['main.dat', 'p1.dat', 'rolled.dat']);
    assert.deepEqual(
      readdirSync(logs)
        .filter((f) => f.endsWith('.csv'))
        .sort(),
      ['uploaded_to_t.csv', 'uploaded_to_t2.csv', 'uploaded_to_t2_p1.csv'],
    );
    const merged = await readRegistry(join(logs, 'uploaded_to_t.csv'), cols);
    assert.equal(merged.length, 3);
    await reg.close();
  });

  test('reads an in-progress file written by upstream, and reports a malformed line with file and line', async () => {
    const dir = freshDir();
    const logs = join(dir, 'LOGS');
    mkdirSync(logs);
    writeFileSync(
      join(logs, 'upload_to_t_in_progress.csv'),
      'filename;rel_filepath;n_chunks;n_chunks_delivered;n_chunks_to_send;started;chunks_delivered;chunks_to_send\n' +
        "'a.dat';'sub/a.dat';5;2;3;'Wed Mar 04, 2026 at 09:18:33';{1, 2};{3, 4, 5}",
    );
    const snap = await new UploadRegistry({ uploadDir: dir, topic: 't' }).open();
    assert.deepEqual(snap.inProgress[0]?.delivered, new Set([1, 2]));
    assert.deepEqual(snap.inProgress[0]?.toSend, new Set([3, 4, 5]));

    const cols = PRODUCER_IN_PROGRESS_COLUMNS as ColumnSpec[];
    appendFileSync(join(logs, 'upload_to_t_in_progress.csv'), "\n'b.dat';'b.dat';1");
    await assert.rejects(readRegistry(join(logs, 'upload_to_t_in_progress.csv'), cols), /line 3/);
    await assert.rejects(
      new UploadRegistry({ uploadDir: dir, topic: 't' }).open(),
      (err: unknown) => (err as { code?: string }).code === 'SLUICE_REGISTRY',
    );
  });

  test('the journal keeps the latest line per path and ignores a torn last line', async () => {
    const dir = freshDir();
    const reg = new UploadRegistry({ uploadDir: dir, topic: 't' });
    await reg.open();
    await reg.journal({ rel: 'a', state: 'queued' });
    await reg.journal({
      rel: 'a',
      state: 'hashed',
      size: 3,
      mtimeNs: '1',
      chunkSize: 1024,
      nChunks: 1,
      hash: 'ab',
    });
    await reg.journal({ rel: 'b', state: 'queued' });
    await reg.journal({ rel: 'b', state: 'dropped' });
    await reg.close();
    appendFileSync(reg.journalPath, '{"rel":"c","sta');
    const snap = await new UploadRegistry({ uploadDir: dir, topic: 't' }).open();
    assert.deepEqual([...snap.journal.keys()], ['a']);
    assert.equal(snap.journal.get('a')?.state, 'hashed');
    assert.equal(snap.journal.get('a')?.nChunks, 1);
    // compacted
    assert.equal(readFileSync(reg.journalPath, 'utf8').trim().split('\n').length, 1);
  });

  test('a long run keeps the journal compact', async () => {
    const dir = freshDir();
    const reg = new UploadRegistry({ uploadDir: dir, topic: 't' });
    await reg.open();
    for (let i = 0; i < 2500; i++)
      void reg.journal({ rel: `f${i % 3}`, state: i % 2 === 0 ? 'queued' : 'completed' });
    await reg.flush();
    const lines = readFileSync(reg.journalPath, 'utf8').trim().split('\n');
    assert.ok(lines.length <= 2 * 3 + 1000, `${lines.length} lines`);
    const snap = await new UploadRegistry({ uploadDir: dir, topic: 't' }).open();
    assert.deepEqual([...snap.journal.values()].map((e) => [e.rel, e.state]).sort(), [
      ['f0', 'completed'], // i = 2499
      ['f1', 'completed'], // i = 2497
      ['f2', 'queued'], // i = 2498
    ]);
    await reg.close();
  });
});
