import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { CommanderError } from 'commander';
import { CONSUMER_IN_PROGRESS_COLUMNS } from '../../../src/files/registry/names.ts';
import { readRegistry } from '../../../src/files/registry/table.ts';
import { getArgumentParser, parseCommandLine, type RunContext } from '../../../src/processing/runnable.ts';
import {
  BUCKET_NAME_ILLEGAL_CHARACTERS,
  MIN_PART_SIZE,
  mergeS3Settings,
  normalizeEndpointUrl,
  partSizeFor,
  resolveS3Settings,
  type S3Sender,
  S3TransferStreamProcessor,
  type S3TransferStreamProcessorOptions,
  s3ClientConfig,
  s3ObjectKey,
  s3SettingsFromSection,
  uploadAndVerify,
  validateBucketName,
} from '../../../src/processing/s3-transfer-stream-processor.ts';
import { parseIni } from '../../../src/runtime/ini-config.ts';
import { createLogger } from '../../../src/runtime/logger.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import { bytes } from '../files/stream-helpers.ts';
import { publish, rel, runUntil, type SampleFile } from './helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'sluice-s3-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(root, `c${n++}`);
const silent = createLogger({ level: 'silent' });
const MiB = 1024 * 1024;
const md5 = (b: Buffer): Buffer => createHash('md5').update(b).digest();

type Input = Record<string, unknown>;

/** An in-memory S3 that checks Content-MD5 as S3 does, and can be told to misbehave. */
class FakeS3 implements S3Sender {
  readonly buckets = new Set(['bkt']);
  readonly objects = new Map<string, { body: Buffer; etag: string }>();
  readonly calls: Array<{ name: string; input: Input; streamed: boolean }> = [];
  private readonly uploads = new Map<string, Map<number, Buffer>>();
  aborted = 0;
  partsInFlight = 0;
  maxPartsInFlight = 0;
  /** Returns a wrong ETag for PutObject / UploadPart. */
  wrongEtag = false;
  /** HeadObject reports a wrong size. */
  wrongSize = false;
  /** UploadPart with this number fails. */
  failPart: number | undefined;
  /** CompleteMultipartUpload returns an ETag that does not match the parts. */
  wrongCompleteEtag = false;

  async send(command: object): Promise<unknown> {
    const name = command.constructor.name.replace(/Command$/, '');
    const input = (command as { input: Input }).input;
    const streamed = input.Body instanceof Readable;
    this.calls.push({ name, input, streamed });
    const bucket = String(input.Bucket);
    if (!this.buckets.has(bucket))
      throw Object.assign(new Error('The specified bucket does not exist'), { name: 'NoSuchBucket' });
    const key = `${bucket}/${String(input.Key)}`;
    switch (name) {
      case 'PutObject': {
        const body = await this.body(input);
        const etag = this.wrongEtag ? '0'.repeat(32) : md5(body).toString('hex');
        this.objects.set(key, { body, etag });
        return { ETag: `"${etag}"` };
      }
      case 'HeadObject': {
        const o = this.objects.get(key);
        if (!o) throw Object.assign(new Error('Not Found'), { name: 'NotFound' });
        return { ContentLength: o.body.length + (this.wrongSize ? 1 : 0), ETag: `"${o.etag}"` };
      }
      case 'CreateMultipartUpload': {
        const id = `up${this.uploads.size + 1}`;
        this.uploads.set(id, new Map());
        return { UploadId: id };
      }
      case 'UploadPart': {
        this.partsInFlight += 1;
        this.maxPartsInFlight = Math.max(this.maxPartsInFlight, this.partsInFlight);
        try {
          await new Promise((r) => setImmediate(r));
          if (input.PartNumber === this.failPart)
            throw Object.assign(new Error('connection reset'), { name: 'NetworkingError' });
          const body = await this.body(input);
          this.uploads.get(String(input.UploadId))!.set(Number(input.PartNumber), body);
          return { ETag: `"${this.wrongEtag ? 'f'.repeat(32) : md5(body).toString('hex')}"` };
        } finally {
          this.partsInFlight -= 1;
        }
      }
      case 'CompleteMultipartUpload': {
        const parts = this.uploads.get(String(input.UploadId))!;
        const listed = (input.MultipartUpload as { Parts: Array<{ PartNumber: number }> }).Parts;
        const bodies = listed.map((p) => parts.get(p.PartNumber)!);
        const whole = md5(Buffer.concat(bodies.map(md5))).toString('hex');
        const etag = `${this.wrongCompleteEtag ? 'a'.repeat(32) : whole}-${bodies.length}`;
        this.objects.set(key, { body: Buffer.concat(bodies), etag });
        this.uploads.delete(String(input.UploadId));
        return { ETag: `"${etag}"` };
      }
      case 'AbortMultipartUpload':
        this.aborted += 1;
        this.uploads.delete(String(input.UploadId));
        return {};
      default:
        throw new Error(`FakeS3 does not know ${name}`);
    }
  }

  /** The request body; a Content-MD5 that does not match is refused (S3's BadDigest). */
  private async body(input: Input): Promise<Buffer> {
    let body: Buffer;
    if (Buffer.isBuffer(input.Body)) body = input.Body;
    else {
      const parts: Buffer[] = [];
      for await (const c of input.Body as Readable) parts.push(c as Buffer);
      body = Buffer.concat(parts);
    }
    if (input.ContentLength !== body.length)
      throw new Error(`ContentLength ${input.ContentLength}, body ${body.length}`);
    if (input.ContentMD5 !== md5(body).toString('base64'))
      throw Object.assign(new Error('BadDigest'), { name: 'BadDigest' });
    return body;
  }

  get(bucket: string, key: string): Buffer | undefined {
    return this.objects.get(`${bucket}/${key}`)?.body;
  }
}

describe('S3TransferStreamProcessor: names, keys and settings', () => {
  it('checks bucket names as upstream', () => {
    for (const ok of ['lab-data', 'my.bucket.01', 'ABC_legacy']) assert.equal(validateBucketName(ok), ok);
    assert.equal(BUCKET_NAME_ILLEGAL_CHARACTERS.length, 22);
    for (const c of BUCKET_NAME_ILLEGAL_CHARACTERS) {
      assert.throws(() => validateBucketName(`lab${c}data`), /Illegal character/, JSON.stringify(c));
    }
    assert.throws(() => validateBucketName(''), /empty/);
  });

  it('builds object keys as upstream: <topic>/<subdir>/<filename>, <topic>/<filename> at the root', () => {
    assert.equal(s3ObjectKey('raw', '', 'a.csv'), 'raw/a.csv');
    assert.equal(s3ObjectKey('raw', 'x/y z', 'a.csv'), 'raw/x/y z/a.csv');
  });

  it('maps the [s3] section and flags, flags winning', () => {
    assert.equal(normalizeEndpointUrl('s3.example.org'), 'https://s3.example.org');
    assert.equal(normalizeEndpointUrl('http://127.0.0.1:4568'), 'http://127.0.0.1:4568');
    const doc = parseIni(
      '[s3]\naccess_key_id = AK\nsecret_key_id = $SLUICE_TEST_S3_SECRET\nendpoint_url = osn.example.org\nregion = us-east-2\n',
      'lab.config',
    );
    process.env.SLUICE_TEST_S3_SECRET = 'from-env';
    try {
      assert.deepEqual(resolveS3Settings(doc, {}), {
        accessKeyId: 'AK',
        secretAccessKey: 'from-env',
        endpointUrl: 'https://osn.example.org',
        region: 'us-east-2',
      });
      assert.deepEqual(resolveS3Settings(doc, { endpoint_url: 'http://127.0.0.1:9', region: 'eu-1' }), {
        accessKeyId: 'AK',
        secretAccessKey: 'from-env',
        endpointUrl: 'http://127.0.0.1:9',
        region: 'eu-1',
      });
    } finally {
      delete process.env.SLUICE_TEST_S3_SECRET;
    }
    assert.deepEqual(resolveS3Settings(undefined, { access_key_id: 'A', secret_key_id: 'S' }), {
      accessKeyId: 'A',
      secretAccessKey: 'S',
    });
    assert.throws(() => s3SettingsFromSection({ bucket: 'x' }), /unknown key\(s\) bucket/);
    assert.throws(() => s3SettingsFromSection({ addressing_style: 'dns' }), /use path or virtual/);
    assert.deepEqual(
      mergeS3Settings({ region: 'a', endpointUrl: 'e' }, { region: undefined }, { region: 'b' }),
      {
        region: 'b',
        endpointUrl: 'e',
      },
    );
  });

  it('configures the client: path style with an endpoint, checksums only when required, both keys or none', () => {
    const withEndpoint = s3ClientConfig(
      { endpointUrl: 'http://127.0.0.1:1', accessKeyId: 'a', secretAccessKey: 's' },
      {},
    );
    assert.equal(withEndpoint.forcePathStyle, true);
    assert.equal(withEndpoint.endpoint, 'http://127.0.0.1:1');
    assert.equal(withEndpoint.region, 'us-east-1');
    assert.equal(withEndpoint.requestChecksumCalculation, 'WHEN_REQUIRED');
    assert.equal(withEndpoint.responseChecksumValidation, 'WHEN_REQUIRED');
    assert.deepEqual(withEndpoint.credentials, { accessKeyId: 'a', secretAccessKey: 's' });
    const aws = s3ClientConfig({}, { AWS_REGION: 'eu-west-3' });
    assert.equal(aws.forcePathStyle, false);
    assert.equal(aws.region, 'eu-west-3');
    assert.equal(aws.credentials, undefined);
    assert.equal(
      s3ClientConfig({ endpointUrl: 'x.org', addressingStyle: 'virtual' }, {}).forcePathStyle,
      false,
    );
    assert.throws(() => s3ClientConfig({ accessKeyId: 'a' }, {}), /both access_key_id and secret_key_id/);
  });

  it('sizes parts: at least 5 MiB, at most 10,000 parts', () => {
    assert.equal(partSizeFor(100 * MiB, 8 * MiB), 8 * MiB);
    assert.equal(partSizeFor(100 * MiB, MiB), MIN_PART_SIZE);
    const huge = 200_000 * MiB;
    assert.ok(Math.ceil(huge / partSizeFor(huge, 8 * MiB)) <= 10_000);
  });

  it('takes the bucket, S3 flags and the inherited options from the command line', async () => {
    const parser = getArgumentParser(S3TransferStreamProcessor);
    const args = parseCommandLine(parser, [
      'lab-data',
      '--topic_name',
      'raw',
      '--endpoint_url',
      '127.0.0.1:4568',
      '--mode',
      'disk',
      '--part_size_mb',
      '6',
      '--heartbeat_topic_name',
      'hb',
    ]);
    const t = await openEmbeddedTransport({ path: join(fresh(), 'b.db') });
    const context: RunContext = {
      transport: t,
      logger: silent,
      className: 'S3TransferStreamProcessor',
      config: parseIni('[s3]\nregion = r1\nendpoint_url = ignored.example\n', 'c'),
    };
    const o = S3TransferStreamProcessor.optionsFromCommandLine(
      args,
      context,
    ) as S3TransferStreamProcessorOptions;
    assert.equal(o.bucketName, 'lab-data');
    assert.equal(o.topic, 'raw');
    assert.equal(o.mode, 'disk');
    assert.equal(o.heartbeat?.topic, 'hb');
    assert.deepEqual(o.s3, { endpointUrl: 'https://127.0.0.1:4568', region: 'r1' });
    assert.equal(o.partSizeBytes, 6 * MiB);
    assert.equal(o.multipartThresholdBytes, 16 * MiB);
    await t.close();
    const quiet = { writeErr: () => {}, writeOut: () => {} };
    for (const bad of [['bad/name'], [], ['ok-name', '--part_size_mb', '4']]) {
      assert.throws(
        () => parseCommandLine(getArgumentParser(S3TransferStreamProcessor).configureOutput(quiet), bad),
        (e: unknown) => e instanceof CommanderError && e.exitCode === 1,
        JSON.stringify(bad),
      );
    }
  });
});

describe('S3 uploads (against an in-memory S3)', () => {
  it('single PutObject: Content-MD5 on buffer and file bodies, ETag and size verified', async () => {
    const s3 = new FakeS3();
    const data = bytes(300_000, 3);
    const file = join(mkdtempSync(join(root, 'f')), 'x.bin');
    writeFileSync(file, data);
    const a = await uploadAndVerify(s3, 'bkt', 'k/buf', { kind: 'buffer', data });
    const b = await uploadAndVerify(s3, 'bkt', 'k/file', { kind: 'file', path: file, size: data.length });
    assert.equal(a.etag, md5(data).toString('hex'));
    assert.equal(b.etag, a.etag);
    assert.deepEqual(s3.get('bkt', 'k/buf'), data);
    assert.deepEqual(s3.get('bkt', 'k/file'), data);
    const puts = s3.calls.filter((c) => c.name === 'PutObject');
    assert.deepEqual(
      puts.map((c) => c.streamed),
      [false, true],
      'a file goes up as a stream, never read whole into memory',
    );
    assert.equal(s3.calls.filter((c) => c.name === 'HeadObject').length, 2);
    assert.ok(!s3.calls.some((c) => c.name === 'GetObject'), 'nothing is downloaded again');

    s3.wrongEtag = true;
    await assert.rejects(
      uploadAndVerify(s3, 'bkt', 'k/bad', { kind: 'buffer', data }),
      /did not verify: the stored object has ETag/,
    );
    s3.wrongEtag = false;
    s3.wrongSize = true;
    await assert.rejects(
      uploadAndVerify(s3, 'bkt', 'k/bad2', { kind: 'buffer', data }),
      /has 300001 bytes, the file has 300000/,
    );
  });

  it('multipart from disk: parts read one at a time with bounded concurrency; the ETag of the whole is checked', async () => {
    const s3 = new FakeS3();
    const size = 2 * MIN_PART_SIZE + 12345;
    const data = bytes(size, 9);
    const file = join(mkdtempSync(join(root, 'f')), 'big.bin');
    writeFileSync(file, data);
    const opts = { multipartThresholdBytes: MIN_PART_SIZE, partSizeBytes: MIN_PART_SIZE, partConcurrency: 2 };
    const r = await uploadAndVerify(s3, 'bkt', 'big', { kind: 'file', path: file, size }, opts);
    assert.equal(r.parts, 3);
    assert.match(r.etag, /^[0-9a-f]{32}-3$/);
    assert.deepEqual(s3.get('bkt', 'big'), data);
    const parts = s3.calls.filter((c) => c.name === 'UploadPart');
    assert.deepEqual(
      parts.map((p) => p.input.ContentLength).sort(),
      [12345, MIN_PART_SIZE, MIN_PART_SIZE].sort(),
    );
    assert.ok(s3.maxPartsInFlight >= 1 && s3.maxPartsInFlight <= 2, `parts in flight ${s3.maxPartsInFlight}`);
    // from memory too
    const m = await uploadAndVerify(s3, 'bkt', 'big2', { kind: 'buffer', data }, opts);
    assert.equal(m.etag, r.etag);
  });

  it('a failed or unverified part aborts the multipart upload and fails', async () => {
    const data = bytes(2 * MIN_PART_SIZE + 1, 4);
    const opts = { multipartThresholdBytes: MIN_PART_SIZE, partSizeBytes: MIN_PART_SIZE };
    const s3 = new FakeS3();
    s3.failPart = 2;
    await assert.rejects(uploadAndVerify(s3, 'bkt', 'k', { kind: 'buffer', data }, opts), /connection reset/);
    assert.equal(s3.aborted, 1);
    assert.equal(s3.get('bkt', 'k'), undefined);
    const s3b = new FakeS3();
    s3b.wrongEtag = true;
    await assert.rejects(
      uploadAndVerify(s3b, 'bkt', 'k', { kind: 'buffer', data }, opts),
      /part \d has ETag f{32}/,
    );
    assert.equal(s3b.aborted, 1);
    const s3c = new FakeS3();
    s3c.wrongCompleteEtag = true;
    await assert.rejects(
      uploadAndVerify(s3c, 'bkt', 'k', { kind: 'buffer', data }, opts),
      /the multipart ETag is a{32}-3, expected [0-9a-f]{32}-3/,
    );
  });
});

describe('S3TransferStreamProcessor on the embedded broker (in-memory S3)', () => {
  const files = (): SampleFile[] => [
    { subdir: '', filename: 'root.dat', data: bytes(4000, 1) },
    { subdir: 'run1/scan', filename: 'a.dat', data: bytes(9000, 2) },
    { subdir: 'run1', filename: 'b b.dat', data: bytes(1500, 3) },
  ];

  for (const mode of ['memory', 'disk'] as const) {
    it(`uploads every file under upstream keys (${mode} mode)`, { timeout: 60_000 }, async () => {
      const dir = fresh();
      const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
      const fs = files();
      await publish(t, 'raw', fs);
      const s3 = new FakeS3();
      const p = new S3TransferStreamProcessor({
        transport: t,
        topic: 'raw',
        outputDir: join(dir, 'out'),
        mode,
        logger: silent,
        bucketName: 'bkt',
        client: s3,
      });
      const o = await runUntil(p, (x) => x.length === fs.length);
      assert.deepEqual(
        o.map((x) => x.status),
        ['completed', 'completed', 'completed'],
      );
      for (const f of fs) assert.deepEqual(s3.get('bkt', `raw/${rel(f)}`), f.data, rel(f));
      assert.deepEqual(
        s3.calls.filter((c) => c.name === 'PutObject').map((c) => c.streamed),
        fs.map(() => mode === 'disk'),
      );
      await t.close();
    });
  }

  it(
    'a failed upload is a failed file, registered, and uploaded after a restart',
    { timeout: 60_000 },
    async () => {
      const dir = fresh();
      const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
      const fs = files();
      await publish(t, 'raw', fs);
      const s3 = new FakeS3();
      s3.buckets.delete('bkt');
      const make = () =>
        new S3TransferStreamProcessor({
          transport: t,
          topic: 'raw',
          outputDir: join(dir, 'out'),
          logger: silent,
          bucketName: 'bkt',
          client: s3,
        });
      const first = make();
      const o1 = await runUntil(first, (x) => x.length === fs.length);
      assert.deepEqual(
        o1.map((x) => x.status),
        ['failed', 'failed', 'failed'],
      );
      assert.match(o1[0]!.reason!, /Could not upload .* to s3:\/\/bkt\/raw\/.*bucket does not exist/);
      const reg = await readRegistry(
        join(dir, 'out', 'LOGS', `consuming_from_raw_in_progress_by_${first.groupId}.csv`),
        CONSUMER_IN_PROGRESS_COLUMNS,
      );
      assert.deepEqual(
        reg.map((r) => r.status),
        ['failed', 'failed', 'failed'],
      );

      s3.buckets.add('bkt');
      const second = make();
      const o2 = await runUntil(second, (x) => x.length === fs.length);
      assert.deepEqual(
        o2.map((x) => x.status),
        ['completed', 'completed', 'completed'],
      );
      for (const f of fs) assert.deepEqual(s3.get('bkt', `raw/${rel(f)}`), f.data);
      const after2 = await readRegistry(
        join(dir, 'out', 'LOGS', `consuming_from_raw_in_progress_by_${second.groupId}.csv`),
        CONSUMER_IN_PROGRESS_COLUMNS,
      );
      assert.deepEqual(after2, []);
      await t.close();
    },
  );
});
