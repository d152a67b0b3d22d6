/**
 * S3TransferStreamProcessor against a real S3 server: s3rver on 127.0.0.1, started by scripts/s3rver.sh (which
 * scripts/test-integration.sh runs) and given as SLUICE_S3_ENDPOINT. To run this file alone:
 *   export SLUICE_S3_ENDPOINT=$(bash scripts/s3rver.sh start)
 *   node_modules/.bin/node --import tsx --test test/integration/s3-transfer.test.ts
 *   bash scripts/s3rver.sh stop
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { CONSUMER_IN_PROGRESS_COLUMNS } from '../../src/files/registry/names.ts';
import { readRegistry } from '../../src/files/registry/table.ts';
import {
  createS3Client,
  type S3Settings,
  S3TransferStreamProcessor,
} from '../../src/processing/s3-transfer-stream-processor.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import { openEmbeddedTransport } from '../../src/transport/embedded/index.ts';
import { bytes } from '../unit/files/stream-helpers.ts';
import { publish, rel, runUntil, type SampleFile } from '../unit/processing/helpers.ts';

const endpoint = process.env.SLUICE_S3_ENDPOINT;
const settings: S3Settings = { endpointUrl: endpoint, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const root = mkdtempSync(join(tmpdir(), 'sluice-s3-int-'));
const silent = createLogger({ level: 'silent' });
const MiB = 1024 * 1024;
let client: S3Client;
let n = 0;
const fresh = (): string => join(root, `c${n++}`);
const bucketName = (): string => `sluice-${randomUUID().slice(0, 8)}`;
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

before(() => {
  assert.ok(
    endpoint,
    'SLUICE_S3_ENDPOINT is not set: run this tier with `npm run test:integration` (it starts s3rver), or start one with `bash scripts/s3rver.sh start`',
  );
  client = createS3Client(settings);
});
after(() => {
  client?.destroy();
  rmSync(root, { recursive: true, force: true });
});

async function stored(bucket: string, key: string): Promise<Buffer> {
  const o = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await o.Body!.transformToByteArray());
}

async function newBucket(): Promise<string> {
  const b = bucketName();
  await client.send(new CreateBucketCommand({ Bucket: b }));
  return b;
}

describe('S3 against s3rver', () => {
  it('stores buffer and stream bodies byte for byte (size and hash compared with the source)', async () => {
    const bucket = await newBucket();
    const data = bytes(524_288, 11);
    const file = join(mkdtempSync(join(root, 'f')), 'body.bin');
    writeFileSync(file, data);
    // the client sluice builds: checksums only when required, path-style
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'buffer', Body: data }));
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'stream',
        Body: createReadStream(file),
        ContentLength: data.length,
      }),
    );
    for (const key of ['buffer', 'stream']) {
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(head.ContentLength, data.length, `${key}: stored size`);
      const body = await stored(bucket, key);
      assert.equal(body.length, data.length, `${key}: downloaded size`);
      assert.equal(sha256(body), sha256(data), `${key}: content`);
    }
  });

  const files = (): SampleFile[] => [
    { subdir: '', filename: 'root.csv', data: bytes(3000, 1) },
    { subdir: 'run 1/scan', filename: 'spectrum.bin', data: bytes(70_000, 2) },
    // above the multipart threshold used below: three 5 MiB parts
    { subdir: 'images', filename: 'frame.raw', data: bytes(2 * 5 * MiB + 4321, 3) },
  ];

  for (const mode of ['memory', 'disk'] as const) {
    it(
      `S3TransferStreamProcessor uploads and verifies every file, multipart included (${mode} mode)`,
      { timeout: 120_000 },
      async () => {
        const dir = fresh();
        const bucket = await newBucket();
        const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
        const fs = files();
        await publish(t, 'raw', fs, 2);
        const p = new S3TransferStreamProcessor({
          transport: t,
          topic: 'raw',
          outputDir: join(dir, 'out'),
          mode,
          logger: silent,
          bucketName: bucket,
          s3: settings,
          multipartThresholdBytes: 5 * MiB,
          partSizeBytes: 5 * MiB,
        });
        const o = await runUntil(p, (x) => x.length === fs.length, 100_000);
        assert.deepEqual(
          o.map((x) => [x.relativeFilepath, x.status]).sort(),
          fs.map((f) => [rel(f), 'completed']).sort(),
          o.map((x) => x.reason ?? '').join('\n'),
        );
        for (const f of fs) {
          const body = await stored(bucket, `raw/${rel(f)}`);
          assert.equal(body.length, f.data.length, rel(f));
          assert.equal(sha256(body), sha256(f.data), rel(f));
        }
        await t.close();
      },
    );
  }

  it(
    'a missing bucket fails the files (registered); after the bucket exists a restart uploads them',
    { timeout: 120_000 },
    async () => {
      const dir = fresh();
      const bucket = bucketName();
      const t = await openEmbeddedTransport({ path: join(dir, 'b.db') });
      const fs = files().slice(0, 2);
      await publish(t, 'raw', fs, 1);
      const make = () =>
        new S3TransferStreamProcessor({
          transport: t,
          topic: 'raw',
          outputDir: join(dir, 'out'),
          logger: silent,
          bucketName: bucket,
          s3: settings,
        });
      const first = make();
      const o1 = await runUntil(first, (x) => x.length === fs.length);
      assert.deepEqual(
        o1.map((x) => x.status),
        ['failed', 'failed'],
      );
      const registry = join(dir, 'out', 'LOGS', `consuming_from_raw_in_progress_by_${first.groupId}.csv`);
      assert.deepEqual(
        (await readRegistry(registry, CONSUMER_IN_PROGRESS_COLUMNS)).map((r) => r.status),
        ['failed', 'failed'],
      );
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      const o2 = await runUntil(make(), (x) => x.length === fs.length);
      assert.deepEqual(
        o2.map((x) => x.status),
        ['completed', 'completed'],
      );
      for (const f of fs) assert.equal(sha256(await stored(bucket, `raw/${rel(f)}`)), sha256(f.data));
      assert.deepEqual(await readRegistry(registry, CONSUMER_IN_PROGRESS_COLUMNS), []);
      await t.close();
    },
  );

  it('sluice s3-transfer BUCKET reads [s3] from --config and stops on q', { timeout: 120_000 }, async () => {
    const dir = fresh();
    const bucket = await newBucket();
    const db = join(dir, 'b.db');
    const t = await openEmbeddedTransport({ path: db });
    const fs = files().slice(0, 2);
    await publish(t, 'raw', fs, 1);
    await t.close();
    const config = join(dir, 's3.config');
    writeFileSync(
      config,
      `[s3]\naccess_key_id = S3RVER\nsecret_key_id = $SLUICE_TEST_S3_SECRET\nendpoint_url = ${endpoint}\nregion = us-east-1\n`,
    );
    const bin = join(import.meta.dirname, '..', '..', 'bin', 'sluice.js');
    const child = spawn(
      process.execPath,
      [
        bin,
        's3-transfer',
        bucket,
        '--config',
        config,
        '--broker',
        `file:${db}`,
        '--topic_name',
        'raw',
        '--mode',
        'disk',
      ],
      {
        cwd: dir,
        env: { ...process.env, SLUICE_TEST_S3_SECRET: 'S3RVER', SLUICE_BROKER: '' },
        stdio: ['pipe', 'ignore', 'pipe'],
      },
    );
    let err = '';
    const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if ((err.match(/uploaded .* \(\d+ bytes.*verified\)/g) ?? []).length === fs.length) resolve();
      });
      void exit.then(() => reject(new Error(`s3-transfer exited early:\n${err}`)));
    });
    child.stdin.write('q\n');
    assert.equal(await exit, 0, err);
    for (const f of fs) assert.equal(sha256(await stored(bucket, `raw/${rel(f)}`)), sha256(f.data));
  });
});
