/**
 * Interop with the real OpenMSIStream (the version pinned in requirements-interop.txt, installed by
 * scripts/python-venv.sh) on the real test broker (SLUICE_KAFKA_BOOTSTRAP, Kafka 4.1). Upstream's programs run as
 * subprocesses with an INI config whose [broker] points at the test broker; topics are created first, with several
 * partitions (upstream's librdkafka partitioner spreads one file's chunks over them).
 *
 * 1. UploadDataFile + DataFileUploadDirectory → sluice DataFileDownloadDirectory: byte-identical files (root,
 *    subdirectories, unicode names, 1 byte to several chunks, exact chunk multiples), a re-upload with new content
 *    (two generations), upstream's empty-file behaviour, upstream's upload heartbeats parsed by sluice's rules.
 * 2. sluice upload-file + upload-dir → upstream DataFileDownloadDirectory: byte-identical files including empty
 *    ones; upstream's processor heartbeats parsed by sluice's rules; sluice's upload heartbeats checked by upstream's
 *    own heartbeat classes (python/check_heartbeats.py).
 * 3. sluice download-dir (CLI) heartbeats checked by upstream's heartbeat classes.
 * 4. Keys and values: the same files uploaded by both sides give the same keys and byte-identical values.
 *
 * Findings these tests pin (openmsistream 1.8.8, confluent-kafka 2.16.1 / librdkafka 2.16.0, Kafka 4.1.1): see
 * the comments at each assertion.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type DataFileChunk, decodeChunk } from '../../src/files/chunk-codec.ts';
import { chunkKey } from '../../src/files/chunk-key.ts';
import { DataFileDownloadDirectory } from '../../src/files/download-directory.ts';
import { PRODUCER_COMPLETED_COLUMNS, uploadedName } from '../../src/files/registry/names.ts';
import { readRegistry } from '../../src/files/registry/table.ts';
import type { FileOutcome } from '../../src/files/stream-handler.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import { openKafkaTransport } from '../../src/transport/kafka/index.ts';
import type { ConsumedRecord, Transport } from '../../src/transport/types.ts';
import {
  type ParsedHeartbeat,
  Proc,
  parseHeartbeat,
  readTopic,
  readTree,
  recordCount,
  runPythonJson,
  sluice,
  sumCounters,
  type Tree,
  treeDifference,
  uniqueName,
  upstream,
  upstreamChunks,
  venvBin,
  waitFor,
  writeOpenMsiConfig,
  writeTree,
} from './interop-helpers.ts';
import { kafkaBootstrap } from './kafka-env.ts';

const bootstrap = kafkaBootstrap();
const BROKER = `kafka://${bootstrap}`;
/** Small chunks so that small files have several (upstream requires a power of two). */
const CHUNK = 4096;
const WAIT_MS = 60_000;
const EXIT_MS = 30_000;

let transport: Transport;
let work: string;
let config: string;
let pyLogs: string;

before(async () => {
  venvBin('UploadDataFile'); // fail at once, with the fix, when the venv is missing
  transport = await openKafkaTransport({ bootstrapServers: bootstrap, clientId: 'sluice-interop' });
  work = await mkdtemp(join(tmpdir(), 'sluice-interop-'));
  config = await writeOpenMsiConfig(work, bootstrap);
  // upstream writes <ClassName>.log into --logger_file_path (a directory when the name has no '.'): keep it out
  // of the directories that are compared
  pyLogs = join(work, 'pylogs');
  await mkdir(pyLogs);
});

after(async () => {
  await Proc.killAll();
  await transport?.close();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

const bytes = (n: number, seed: number): Buffer => {
  // deterministic, incompressible enough, and different per seed
  const b = Buffer.alloc(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
};

const relOf = (c: DataFileChunk): string =>
  c.subdirStr === '' ? c.filename : `${c.subdirStr}/${c.filename}`;

function decodeAll(records: ConsumedRecord[]): Array<{ record: ConsumedRecord; chunk: DataFileChunk }> {
  return records.map((record) => {
    const chunk = decodeChunk(record.value);
    assert.ok(chunk !== null, `tombstone at ${record.partition}@${record.offset}`);
    return { record, chunk };
  });
}

async function createTopics(...specs: Array<[string, number]>): Promise<void> {
  for (const [name, partitions] of specs) await transport.createTopic({ name, partitions });
}

function heartbeatsOf(records: ConsumedRecord[], programId: string): ConsumedRecord[] {
  return records.filter((r) => r.key?.toString('utf8') === `${programId}_heartbeat`);
}

const FINAL_LINE =
  /(\d+) total messages were consumed, (\d+) messages were successfully processed, and (\d+) files? (?:was|were) successfully reconstructed/;

describe('OpenMSIStream interop on a real Kafka broker', { concurrency: 1 }, () => {
  it(
    'UploadDataFile and DataFileUploadDirectory → sluice download: identical files, generations, empty files, heartbeats',
    { timeout: 180_000 },
    async (t) => {
      const topic = uniqueName('py2sl');
      const hbTopic = uniqueName('py2sl-hb');
      await createTopics([topic, 4], [hbTopic, 1]);
      const out = join(work, 'py2sl-out');
      const singlesDir = join(work, 'py2sl-single');
      const up = join(work, 'py2sl-up');

      // one UploadDataFile run per file: its subdir_str is always "" (the file's parent is its root)
      const singles: Tree = new Map([
        ['root-multi.bin', bytes(CHUNK * 5 + 123, 1)],
        ['ünïcødé файл ✓.bin', bytes(CHUNK * 2, 2)], // an exact multiple of the chunk size
        ['zero-single.dat', Buffer.alloc(0)],
      ]);
      // upstream's default upload regex drops any path containing "log" after its first character: none here
      const tree: Tree = new Map([
        ['a.bin', bytes(CHUNK * 3 + 1, 3)],
        ['one-byte.bin', Buffer.from([0x42])],
        ['sub/dir/exact.bin', bytes(CHUNK * 2, 4)],
        ['ünï/名前 ✓ (1).txt', Buffer.from('héllo wörld\n')],
        ['sub/empty.dat', Buffer.alloc(0)],
      ]);
      await writeTree(singlesDir, singles);
      await writeTree(up, tree);
      const nonEmpty = (m: Tree): Tree => new Map([...m].filter(([, d]) => d.length > 0));

      const outcomes: FileOutcome[] = [];
      const dl = new DataFileDownloadDirectory({
        transport,
        outputDir: out,
        topic,
        groupId: uniqueName('py2sl-g'),
        logger: createLogger({ name: 'interop-download', level: 'warn' }),
        sessionTimeoutMs: 6000,
      });
      dl.on('file', (o: FileOutcome) => outcomes.push(o));
      const stop = new AbortController();
      const running = dl.run(stop.signal);
      t.after(async () => {
        stop.abort();
        await running.catch(() => undefined);
      });

      const started = Date.now();
      const uploads = [...singles.keys()].map((name) =>
        upstream('UploadDataFile', [
          join(singlesDir, name),
          '--config',
          config,
          '--topic_name',
          topic,
          '--chunk_size',
          String(CHUNK),
          '--logger_file_path',
          pyLogs,
        ]),
      );
      t.after(() => Promise.all(uploads.map((p) => p.kill())));
      const uploadOutputs = await Promise.all(uploads.map((p) => p.expectSuccess(EXIT_MS)));
      // upstream chunks an empty file into 0 chunks, says it is done, and exits 0 having sent nothing
      assert.match(uploadOutputs[2]!, /Done uploading .*zero-single\.dat/);

      const dirUp = upstream('DataFileUploadDirectory', [
        up,
        '--config',
        config,
        '--topic_name',
        topic,
        '--chunk_size',
        String(CHUNK),
        '--upload_existing',
        '--watchdog_lag_time',
        '1',
        '--heartbeat_topic_name',
        hbTopic,
        '--heartbeat_program_id',
        'py-upload-dir',
        '--heartbeat_interval_secs',
        '1',
        // no --logger_file_path here: upstream would move the registry (LOGS/) into that directory too
      ]);
      t.after(() => dirUp.kill());

      const expected1 = new Map([...nonEmpty(singles), ...nonEmpty(tree)]);
      const describeOut = async (): Promise<string> =>
        `${treeDifference(await readTree(out), expected1)}\nsluice: ${JSON.stringify(dl.summary)}\n` +
        `DataFileUploadDirectory:\n${dirUp.tail()}`;
      await waitFor(
        'sluice to rebuild every non-empty file of generation 1',
        async () => {
          return treeDifference(await readTree(out), expected1) === undefined;
        },
        { timeoutMs: WAIT_MS, describe: describeOut },
      );
      t.diagnostic(
        `generation 1 rebuilt by sluice ${Date.now() - started} ms after the first upload started`,
      );

      // Re-upload with new content while both programs run: a.bin grows to more chunks; exact.bin keeps its size
      // and chunk count (a newer mtime and another hash). Upstream's watcher uploads each again as a whole new
      // generation; sluice must replace its verified copy with the new one.
      const gen2: Tree = new Map([
        ['a.bin', bytes(CHUNK * 5 + 7, 5)],
        ['sub/dir/exact.bin', bytes(CHUNK * 2, 6)],
      ]);
      await writeTree(up, gen2);
      const expected2 = new Map([...expected1, ...gen2]);
      await waitFor(
        'sluice to rebuild generation 2 of a.bin and sub/dir/exact.bin',
        async () => {
          return treeDifference(await readTree(out), expected2) === undefined;
        },
        {
          timeoutMs: WAIT_MS,
          describe: async () => `${treeDifference(await readTree(out), expected2)}\n${dirUp.tail()}`,
        },
      );

      // stop upstream the way it supports (q on stdin); it flushes its producers and sends a final heartbeat
      dirUp.quit();
      const dirUpOutput = await dirUp.expectSuccess(EXIT_MS);
      const total = await recordCount(transport, topic);
      await waitFor('sluice to have read every record', () => dl.summary.messagesRead >= total, {
        timeoutMs: WAIT_MS,
        describe: () => `read ${dl.summary.messagesRead} of ${total}`,
      });
      stop.abort();
      const summary = await running;

      // --- what is in the topic: upstream sends nothing at all for an empty file ---
      const chunks = decodeAll(await readTopic(transport, topic));
      const predicted = [...singles.values(), ...tree.values(), ...gen2.values()].reduce(
        (n, d) => n + upstreamChunks(d.length, CHUNK),
        0,
      );
      assert.equal(chunks.length, predicted, 'one message per chunk, none for the empty files');
      const paths = new Set(chunks.map((c) => relOf(c.chunk)));
      assert.ok(
        !paths.has('zero-single.dat') && !paths.has('sub/empty.dat'),
        'upstream never sends empty files',
      );
      // upstream's librdkafka partitioner spreads one file's chunks over partitions
      assert.ok(
        new Set(chunks.map((c) => c.record.partition)).size > 1,
        'chunks landed in one partition only',
      );
      // and it sends the 10-field value with the file's mtime (PR #117)
      for (const { chunk } of chunks) assert.ok(chunk.fileMtime > 0, `${relOf(chunk)}: no mtime`);

      // --- what sluice made of it ---
      assert.equal(summary.messagesRead, total);
      assert.equal(summary.messagesQuarantined, 0);
      assert.equal(summary.filesFailed, 0);
      const final = await readTree(out);
      assert.equal(treeDifference(final, expected2), undefined);
      // the empty files upstream did not send do not exist on sluice's side (upstream limitation, spec section 3)
      await assert.rejects(stat(join(out, 'sub', 'empty.dat')), { code: 'ENOENT' });
      await assert.rejects(stat(join(out, 'zero-single.dat')), { code: 'ENOENT' });
      const completed = (rel: string): number =>
        outcomes.filter((o) => o.status === 'completed' && o.relativeFilepath === rel).length;
      assert.equal(completed('a.bin'), 2, 'a.bin: one rebuild per generation');
      assert.equal(completed('sub/dir/exact.bin'), 2, 'exact.bin: one rebuild per generation');
      assert.equal(completed('ünï/名前 ✓ (1).txt'), 1);
      assert.equal(outcomes.filter((o) => o.status !== 'completed').length, 0, JSON.stringify(outcomes));

      // --- upstream's registry: the empty file is never listed as uploaded ---
      const uploaded = await readRegistry(join(up, 'LOGS', uploadedName(topic)), PRODUCER_COMPLETED_COLUMNS);
      const uploadedPaths = new Set(uploaded.map((r) => String(r.rel_filepath)));
      for (const rel of nonEmpty(tree).keys())
        assert.ok(uploadedPaths.has(rel), `${rel} not in ${[...uploadedPaths]}`);
      assert.ok(!uploadedPaths.has('sub/empty.dat'));
      // one row per uploaded generation
      const rowsOf = (rel: string): number[] =>
        uploaded
          .filter((r) => r.rel_filepath === rel)
          .map((r) => Number(r.n_chunks))
          .sort((a, b) => a - b);
      assert.deepEqual(rowsOf('a.bin'), [4, 6]);
      assert.deepEqual(rowsOf('sub/dir/exact.bin'), [2, 2]);
      // its final summary lists the distinct files it uploaded: not the empty one
      const listed =
        /The following (\d+) files? (?:was|were) uploaded between [^\n]*\n((?:\t[^\n]*\n?)*)/.exec(
          dirUpOutput,
        );
      assert.ok(listed !== null, dirUpOutput.slice(-3000));
      assert.equal(Number(listed[1]), nonEmpty(tree).size);
      assert.deepEqual(
        listed[2]!
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l !== '')
          .sort(),
        [...nonEmpty(tree).keys()].sort(),
      );

      // --- upstream's upload heartbeats, parsed with sluice's expectations ---
      const beats = heartbeatsOf(await readTopic(transport, hbTopic), 'py-upload-dir').map((r) =>
        parseHeartbeat(r, 'py-upload-dir', 'upload'),
      );
      assert.ok(
        beats.length >= 2,
        `${beats.length} heartbeat(s): want the first one and the final one at least`,
      );
      const sums = sumCounters(beats);
      const treeChunks = chunks.filter((c) => tree.has(relOf(c.chunk)));
      // counters are per interval, so their sum over all heartbeats is the whole run
      assert.equal(sums.n_messages_produced, treeChunks.length);
      // upstream's byte count is len(confluent Message) = the serialized value's length (no key)
      assert.equal(
        sums.n_bytes_produced,
        treeChunks.reduce((n, c) => n + (c.record.value?.length ?? 0), 0),
      );
      t.diagnostic(`upstream upload heartbeat: ${JSON.stringify(beats.at(-1))}`);
    },
  );

  it(
    'sluice upload-file and upload-dir → upstream DataFileDownloadDirectory: identical files, including empty ones; heartbeats',
    { timeout: 180_000 },
    async (t) => {
      const topic = uniqueName('sl2py');
      const hbTopic = uniqueName('sl2py-hb');
      await createTopics([topic, 3], [hbTopic, 1]);
      const out = join(work, 'sl2py-out');
      const singlesDir = join(work, 'sl2py-single');
      const up = join(work, 'sl2py-up');
      const singles: Tree = new Map([
        ['sl-root-multi.bin', bytes(CHUNK * 4 + 99, 11)],
        ['sl-empty-root.dat', Buffer.alloc(0)],
      ]);
      const tree: Tree = new Map([
        ['b.bin', bytes(CHUNK * 3 + 1, 12)],
        ['sub/dir/exact.bin', bytes(CHUNK * 2, 13)],
        ['ünï/名前 ✓ (2).txt', Buffer.from('grüße\n')],
        ['sub/empty.dat', Buffer.alloc(0)],
        ['deep/a/b/c/one-byte.bin', Buffer.from([0])],
      ]);
      await writeTree(singlesDir, singles);
      await writeTree(up, tree);
      const expected = new Map([...singles, ...tree]);

      const group = uniqueName('sl2py-g');
      const pyDl = upstream('DataFileDownloadDirectory', [
        out,
        '--config',
        config,
        '--topic_name',
        topic,
        '--consumer_group_id',
        group,
        '--heartbeat_topic_name',
        hbTopic,
        '--heartbeat_program_id',
        'py-download-dir',
        '--heartbeat_interval_secs',
        '1',
        '--logger_file_path',
        pyLogs,
      ]);
      t.after(() => pyDl.kill());
      // Upstream's two consumer threads join the group one after the other. Chunks read before the second one
      // joins can be read again after the rebalance (its commits are asynchronous), which would make the message
      // counts below racy: upload only once both members hold partitions.
      await waitFor(
        'both upstream consumers to be assigned partitions',
        async () => {
          const g = await transport.describeGroup(group).catch(() => undefined);
          const assigned = g?.members.filter((m) => m.assignment.some((a) => a.topic === topic)) ?? [];
          return assigned.length === 2;
        },
        {
          timeoutMs: WAIT_MS,
          describe: async () =>
            `${JSON.stringify(await transport.describeGroup(group).catch(String))}\n${pyDl.tail()}`,
        },
      );

      const started = Date.now();
      for (const name of singles.keys()) {
        const p = sluice(`sluice upload-file ${name}`, [
          'upload-file',
          join(singlesDir, name),
          '--topic_name',
          topic,
          '--chunk_size',
          String(CHUNK),
          '--broker',
          BROKER,
        ]);
        t.after(() => p.kill());
        await p.expectSuccess(EXIT_MS);
      }
      const slUp = sluice('sluice upload-dir', [
        'upload-dir',
        up,
        '--topic_name',
        topic,
        '--chunk_size',
        String(CHUNK),
        '--upload_existing',
        '--watchdog_lag_time',
        '0.5',
        '--heartbeat_topic_name',
        hbTopic,
        '--heartbeat_program_id',
        'sluice-upload-dir',
        '--heartbeat_interval_secs',
        '1',
        '--broker',
        BROKER,
      ]);
      t.after(() => slUp.kill());

      // upstream writes chunks in place at the final path, so a partly written file can be seen: poll until equal
      await waitFor(
        'upstream to rebuild every file',
        async () => {
          return treeDifference(await readTree(out), expected) === undefined;
        },
        {
          timeoutMs: WAIT_MS,
          describe: async () =>
            `${treeDifference(await readTree(out), expected)}\nDataFileDownloadDirectory:\n${pyDl.tail()}\n` +
            `sluice upload-dir:\n${slUp.tail()}`,
        },
      );
      t.diagnostic(
        `upstream rebuilt everything ${Date.now() - started} ms after the first sluice upload started`,
      );

      slUp.signal('SIGTERM');
      await slUp.expectSuccess(EXIT_MS);
      pyDl.quit();
      const pyOutput = await pyDl.expectSuccess(EXIT_MS);

      const records = await readTopic(transport, topic);
      const chunks = decodeAll(records);
      // sluice sends exactly one chunk for an empty file (empty data, the SHA-512 of nothing, 1 of 1) ...
      for (const rel of ['sl-empty-root.dat', 'sub/empty.dat']) {
        const mine = chunks.filter((c) => relOf(c.chunk) === rel);
        assert.equal(mine.length, 1, rel);
        assert.equal(mine[0]!.chunk.nTotalChunks, 1);
        assert.equal(mine[0]!.chunk.data.length, 0);
      }
      // ... and upstream's DataFileDownloadDirectory rebuilds it: it opens the file "w+b", writes the 0 bytes at
      // offset 0, and its whole-file SHA-512 check passes, so it counts the empty file as reconstructed.
      const final = FINAL_LINE.exec(pyOutput);
      assert.ok(final !== null, `no summary line in:\n${pyOutput.slice(-3000)}`);
      assert.equal(Number(final[1]), records.length, 'messages consumed');
      assert.equal(Number(final[2]), records.length, 'messages processed');
      assert.equal(Number(final[3]), expected.size, 'files reconstructed, the two empty ones included');
      assert.equal(treeDifference(await readTree(out), expected), undefined);

      // sluice's registry (upstream's format) lists every file of the tree, the empty one too
      const uploaded = await readRegistry(join(up, 'LOGS', uploadedName(topic)), PRODUCER_COMPLETED_COLUMNS);
      assert.deepEqual(new Set(uploaded.map((r) => String(r.rel_filepath))), new Set(tree.keys()));

      const hb = await readTopic(transport, hbTopic);
      // upstream's processor heartbeats, parsed with sluice's expectations
      const pyBeats = heartbeatsOf(hb, 'py-download-dir').map((r) =>
        parseHeartbeat(r, 'py-download-dir', 'processor'),
      );
      assert.ok(pyBeats.length >= 2, `${pyBeats.length} upstream heartbeat(s)`);
      const py = sumCounters(pyBeats);
      assert.equal(py.n_messages_read, records.length);
      assert.equal(py.n_messages_processed, records.length);
      // upstream's processor byte counts are len(DataFileChunk) = the chunk's data length (approximate by design)
      const dataBytes = chunks.reduce((n, c) => n + c.chunk.data.length, 0);
      assert.equal(py.n_bytes_read, dataBytes);
      assert.equal(py.n_bytes_processed, dataBytes);

      // sluice's upload heartbeats, checked by upstream's own heartbeat classes
      const slBeats = heartbeatsOf(hb, 'sluice-upload-dir');
      assert.ok(slBeats.length >= 2, `${slBeats.length} sluice heartbeat(s)`);
      const verdicts = await checkWithUpstream(slBeats, 'upload', 'sluice-upload-dir');
      assert.deepEqual(
        verdicts.filter((v) => !v.ok),
        [],
      );
      const sl = sumCounters(slBeats.map((r) => parseHeartbeat(r, 'sluice-upload-dir', 'upload')));
      const treeRecords = chunks.filter((c) => tree.has(relOf(c.chunk))).map((c) => c.record);
      assert.equal(sl.n_messages_produced, treeRecords.length);
      // sluice counts key + value bytes exactly (documented difference from upstream's value-only count)
      assert.equal(
        sl.n_bytes_produced,
        treeRecords.reduce((n, r) => n + (r.key?.length ?? 0) + (r.value?.length ?? 0), 0),
      );
    },
  );

  it(
    'sluice download-dir heartbeats pass upstream’s heartbeat checks (and broken ones do not)',
    { timeout: 120_000 },
    async (t) => {
      const topic = uniqueName('dlhb');
      const hbTopic = uniqueName('dlhb-hb');
      await createTopics([topic, 2], [hbTopic, 1]);
      const src = join(work, 'dlhb-src');
      const out = join(work, 'dlhb-out');
      const data = bytes(CHUNK * 2 + 5, 21);
      await mkdir(src, { recursive: true });
      await writeFile(join(src, 'hb-file.bin'), data);
      const up = upstream('UploadDataFile', [
        join(src, 'hb-file.bin'),
        '--config',
        config,
        '--topic_name',
        topic,
        '--chunk_size',
        String(CHUNK),
        '--logger_file_path',
        pyLogs,
      ]);
      t.after(() => up.kill());
      await up.expectSuccess(EXIT_MS);

      const dl = sluice('sluice download-dir', [
        'download-dir',
        out,
        '--topic_name',
        topic,
        '--consumer_group_id',
        uniqueName('dlhb-g'),
        '--heartbeat_topic_name',
        hbTopic,
        '--heartbeat_program_id',
        'sluice-download-dir',
        '--heartbeat_interval_secs',
        '1',
        '--broker',
        BROKER,
      ]);
      t.after(() => dl.kill());
      const expected: Tree = new Map([['hb-file.bin', data]]);
      await waitFor(
        'sluice download-dir to rebuild the file',
        async () => {
          return treeDifference(await readTree(out), expected) === undefined;
        },
        { timeoutMs: WAIT_MS, describe: () => dl.tail() },
      );
      dl.signal('SIGTERM');
      await dl.expectSuccess(EXIT_MS);

      const records = await readTopic(transport, topic);
      assert.equal(records.length, 3);
      const beats = heartbeatsOf(await readTopic(transport, hbTopic), 'sluice-download-dir');
      assert.ok(
        beats.length >= 2,
        `${beats.length} heartbeat(s): want the first one and the final one at least`,
      );

      // negative controls: the checker must reject what upstream would not produce
      const good = JSON.parse(beats[0]!.value!.toString('utf8')) as Record<string, unknown>;
      const broken: Array<[string, Record<string, unknown>]> = [
        ['naive local timestamp', { ...good, timestamp: '2026-01-01T00:00:00.000000' }],
        ['offset other than UTC', { ...good, timestamp: '2026-01-01T01:00:00.000000+01:00' }],
        ['counter as a string', { ...good, n_messages_read: '3' }],
        ['missing counter', Object.fromEntries(Object.entries(good).filter(([k]) => k !== 'n_bytes_read'))],
        ['upload counters on a processor', { ...good, n_messages_produced: 0 }],
      ];
      const cases = [
        ...beats.map((r) => ({ key: r.key!.toString('utf8'), value: r.value!.toString('utf8') })),
        ...broken.map(([, v]) => ({ key: 'sluice-download-dir_heartbeat', value: JSON.stringify(v) })),
        { key: 'sluice-download-dir_hb', value: JSON.stringify(good) },
      ];
      const verdicts = await runChecker(cases, 'processor', 'sluice-download-dir');
      const real = verdicts.slice(0, beats.length);
      assert.deepEqual(
        real.filter((v) => !v.ok),
        [],
      );
      for (const [i, v] of verdicts.slice(beats.length).entries()) {
        assert.equal(
          v.ok,
          false,
          `the checker accepted a broken heartbeat (${broken[i]?.[0] ?? 'wrong key'})`,
        );
      }

      t.diagnostic(`upstream side: ${versions}`);
      const parsed: ParsedHeartbeat[] = beats.map((r) =>
        parseHeartbeat(r, 'sluice-download-dir', 'processor'),
      );
      const sums = sumCounters(parsed);
      assert.equal(sums.n_messages_read, 3);
      assert.equal(sums.n_messages_processed, 3);
      assert.equal(sums.n_bytes_processed, data.length);
      assert.equal(
        sums.n_bytes_read,
        records.reduce((n, r) => n + (r.key?.length ?? 0) + (r.value?.length ?? 0), 0),
      );
    },
  );

  it(
    'the same files give the same keys and byte-identical values from both uploaders',
    { timeout: 120_000 },
    async (t) => {
      const [pyDirTopic, slDirTopic, pyFileTopic, slFileTopic] = ['kpd', 'ksd', 'kpf', 'ksf'].map(
        uniqueName,
      ) as [string, string, string, string];
      await createTopics([pyDirTopic, 3], [slDirTopic, 3], [pyFileTopic, 3], [slFileTopic, 3]);
      const dir = join(work, 'keys');
      const tree: Tree = new Map([
        ['k-root.bin', bytes(CHUNK * 3 + 17, 31)],
        ['deep/er/ünï ✓.dat', bytes(CHUNK * 2, 32)],
        ['deep/one.txt', Buffer.from('1')],
        ['deep/empty.dat', Buffer.alloc(0)],
      ]);
      await writeTree(dir, tree);

      // both watch the same directory (each keeps its registries under LOGS/, which both skip): same bytes,
      // same mtimes
      const pyDir = upstream('DataFileUploadDirectory', [
        dir,
        '--config',
        config,
        '--topic_name',
        pyDirTopic,
        '--chunk_size',
        String(CHUNK),
        '--upload_existing',
      ]);
      t.after(() => pyDir.kill());
      const slDir = sluice('sluice upload-dir (keys)', [
        'upload-dir',
        dir,
        '--topic_name',
        slDirTopic,
        '--chunk_size',
        String(CHUNK),
        '--upload_existing',
        '--watchdog_lag_time',
        '0.5',
        '--broker',
        BROKER,
      ]);
      t.after(() => slDir.kill());
      const rootFile = join(dir, 'k-root.bin');
      const pyFile = upstream('UploadDataFile', [
        rootFile,
        '--config',
        config,
        '--topic_name',
        pyFileTopic,
        '--chunk_size',
        String(CHUNK),
        '--logger_file_path',
        pyLogs,
      ]);
      t.after(() => pyFile.kill());
      const slFile = sluice('sluice upload-file (keys)', [
        'upload-file',
        rootFile,
        '--topic_name',
        slFileTopic,
        '--chunk_size',
        String(CHUNK),
        '--broker',
        BROKER,
      ]);
      t.after(() => slFile.kill());
      await Promise.all([pyFile.expectSuccess(EXIT_MS), slFile.expectSuccess(EXIT_MS)]);

      const nonEmptyChunks = [...tree.values()].reduce((n, d) => n + upstreamChunks(d.length, CHUNK), 0);
      await waitFor(
        'both upload-dirs to send everything',
        async () => {
          const [p, s] = [await recordCount(transport, pyDirTopic), await recordCount(transport, slDirTopic)];
          return p >= nonEmptyChunks && s >= nonEmptyChunks + 1;
        },
        {
          timeoutMs: WAIT_MS,
          describe: async () =>
            `upstream ${await recordCount(transport, pyDirTopic)}, sluice ${await recordCount(transport, slDirTopic)} ` +
            `of ${nonEmptyChunks} (+1)\n${pyDir.tail()}\n${slDir.tail()}`,
        },
      );
      pyDir.quit();
      slDir.signal('SIGTERM');
      await Promise.all([pyDir.expectSuccess(EXIT_MS), slDir.expectSuccess(EXIT_MS)]);

      const byKey = (records: ConsumedRecord[]): Map<string, Buffer> => {
        const m = new Map<string, Buffer>();
        for (const r of records) {
          const k = r.key!.toString('utf8');
          assert.ok(!m.has(k), `key ${k} twice`);
          m.set(k, r.value!);
        }
        return m;
      };
      const compare = (py: Map<string, Buffer>, sl: Map<string, Buffer>, extraSluiceKeys: string[]): void => {
        assert.deepEqual([...sl.keys()].sort(), [...py.keys(), ...extraSluiceKeys].sort());
        for (const [k, v] of py) {
          assert.ok(
            sl.get(k)!.equals(v),
            `value of ${k} differs: upstream ${v.length} bytes, sluice ${sl.get(k)!.length}`,
          );
        }
      };
      const pyD = byKey(await readTopic(transport, pyDirTopic));
      const slD = byKey(await readTopic(transport, slDirTopic));
      // keys as the spec gives them, e.g. a nested unicode path
      assert.ok(pyD.has('deep_er_ünï ✓.dat_chunk_2_of_2'), [...pyD.keys()].join(', '));
      assert.ok(pyD.has('_k-root.bin_chunk_4_of_4'));
      // the one difference: sluice's single chunk for the empty file, which upstream does not send
      const emptyKey = chunkKey('deep', 'empty.dat', 1, 1);
      assert.equal(emptyKey, 'deep_empty.dat_chunk_1_of_1');
      compare(pyD, slD, [emptyKey]);
      compare(
        byKey(await readTopic(transport, pyFileTopic)),
        byKey(await readTopic(transport, slFileTopic)),
        [],
      );
      t.diagnostic(`${pyD.size} keys and values identical (directory), plus the single-file upload`);
    },
  );
});

/** What the Python side runs on, for the test's diagnostics (set by `runChecker`). */
let versions = '';

interface Verdict {
  ok: boolean;
  problems: string[];
  timestamp_utc: string | null;
}

async function runChecker(
  cases: Array<{ key: string; value: string }>,
  kind: 'upload' | 'processor',
  programId: string,
): Promise<Verdict[]> {
  const res = (await runPythonJson('check_heartbeats.py', {
    cases: cases.map((c) => ({ ...c, kind, program_id: programId })),
  })) as { openmsistream: string; confluent_kafka: string; librdkafka: string; results: Verdict[] };
  assert.equal(res.openmsistream, '1.8.8', 'requirements-interop.txt pins openmsistream 1.8.8');
  versions = `openmsistream ${res.openmsistream}, confluent-kafka ${res.confluent_kafka}, librdkafka ${res.librdkafka}`;
  assert.equal(res.results.length, cases.length);
  return res.results;
}

function checkWithUpstream(
  records: ConsumedRecord[],
  kind: 'upload' | 'processor',
  programId: string,
): Promise<Verdict[]> {
  return runChecker(
    records.map((r) => ({ key: r.key!.toString('utf8'), value: r.value!.toString('utf8') })),
    kind,
    programId,
  );
}
