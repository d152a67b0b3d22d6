import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(import.meta.dirname, '..', '..', '..', 'bin', 'sluice.js');
const broker = `file:${join(dir, 'broker.db')}`;

function sluice(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args, '--broker', broker], {
    input,
    encoding: 'utf8',
    env: { ...process.env, SLUICE_BROKER: '' },
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('sluice CLI on the embedded broker', () => {
  it('creates, lists and describes topics', () => {
    assert.equal(sluice(['topics', 'create', 'cli-a', '--partitions', '3']).status, 0);
    assert.match(sluice(['topics', 'list']).stdout, /^cli-a$/m);
    const d = sluice(['topics', 'describe', 'cli-a']);
    assert.match(d.stdout, /3 partitions/);
    assert.equal(d.stdout.trim().split('\n').length, 5);
    const again = sluice(['topics', 'create', 'cli-a']);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already exists.*\[SLUICE_TOPIC_EXISTS\]/);
  });

  it('round-trips lines, keys and files through produce and consume', () => {
    assert.equal(sluice(['produce', 'cli-b', '--auto-create'], 'one\ntwo\nthree\n').status, 0);
    assert.equal(sluice(['produce', 'cli-b', '-K', ':'], 'k1:v1\n').status, 0);
    const file = join(dir, 'payload.bin');
    writeFileSync(file, Buffer.from([0, 1, 2, 250]));
    assert.equal(sluice(['produce', 'cli-b', '--file', file]).status, 0);
    const out = sluice(['consume', 'cli-b', '-e', '-F', 'json']);
    assert.equal(out.status, 0, out.stderr);
    const recs = out.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string | null; value: string; valueEncoding?: string });
    assert.deepEqual(
      recs.slice(0, 4).map((r) => [r.key, r.value]),
      [
        [null, 'one'],
        [null, 'two'],
        [null, 'three'],
        ['k1', 'v1'],
      ],
    );
    assert.equal(recs[4]!.key, 'payload.bin');
    assert.equal(recs[4]!.valueEncoding, 'base64');
    assert.deepEqual(Buffer.from(recs[4]!.value, 'base64'), Buffer.from([0, 1, 2, 250]));
  });

  it('resumes a group after what it printed, and reports lag', () => {
    sluice(['produce', 'cli-c', '--auto-create'], 'a\nb\nc\nd\n');
    assert.equal(sluice(['consume', 'cli-c', '-g', 'readers', '-c', '3']).stdout, 'a\nb\nc\n');
    const g = sluice(['groups', 'describe', 'readers']);
    assert.match(g.stdout, /cli-c\s+0\s+3\s+4\s+1/);
    assert.equal(sluice(['consume', 'cli-c', '-g', 'readers', '-e']).stdout, 'd\n');
    assert.match(sluice(['groups', 'list']).stdout, /^readers$/m);
  });

  it('explains bad input and exits non-zero', () => {
    const unknown = sluice(['consume', 'missing-topic', '-e']);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /does not exist\. Create it first/);
    const badName = sluice(['topics', 'create', 'bad name']);
    assert.equal(badName.status, 2);
    assert.match(badName.stderr, /Invalid topic name/);
    const badOpt = sluice(['topics', 'create', 'x', '--partitions', 'many']);
    assert.notEqual(badOpt.status, 0);
    assert.match(badOpt.stderr, /whole number/);
  });

  it('runs the demo: sample files streamed and rebuilt byte-identical', () => {
    const d = sluice(['demo', '--dir', join(dir, 'demo')]);
    assert.equal(d.status, 0, d.stderr);
    assert.match(d.stdout, /5\/5 files streamed through the embedded broker and rebuilt byte-identical/);
    assert.match(d.stderr, /rebuilt microscope\/frame-0001\.raw \(7 chunks/);
  });

  it('teaches with --help: every command has an example', () => {
    for (const cmd of [
      [],
      ['topics', 'create'],
      ['produce'],
      ['consume'],
      ['groups', 'describe'],
      ['demo'],
      ['upload-file'],
      ['upload-dir'],
      ['download-dir'],
    ]) {
      const h = sluice([...cmd, '--help']);
      assert.equal(h.status, 0);
      assert.match(h.stdout, /\$ sluice /, `example in help of ${cmd.join(' ') || 'sluice'}`);
    }
  });
});
