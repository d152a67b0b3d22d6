/**
 * `S3TransferStreamProcessor`: uploads every file rebuilt from a chunk topic to an S3 bucket (OpenMSIStream's
 * `S3TransferStreamProcessor`, shared/spec/openmsistream-compat.md section 12), with what upstream lacks:
 *
 * - large files go up as multipart uploads; in `disk` mode they are read from disk one part at a time, so memory
 *   stays at about `partSizeBytes × partConcurrency` whatever the file size;
 * - every request carries the body's Content-MD5 (the server rejects a body that arrived damaged), and the
 *   returned ETags are compared with the MD5 of what was sent (per part, and the multipart ETag); a final
 *   HeadObject checks the stored size and ETag. Nothing is downloaded again;
 * - any failure (network, permissions, a missing bucket, a verification mismatch) fails the file: it is
 *   registered `failed` and re-processed after a restart with the same consumer group. Upstream swallowed these.
 *
 * Object keys are upstream's: `<topic>/<filename>` at the root, `<topic>/<subdir>/<filename>` otherwise.
 * Connection settings come from the `[s3]` section of an OpenMSIStream config file (`access_key_id`,
 * `secret_key_id`, `endpoint_url`, `region`) and/or options; without keys, the AWS SDK's default credential
 * chain applies (AWS_ACCESS_KEY_ID, profiles, instance roles).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompleteMultipartUploadCommandOutput,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandOutput,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  PutObjectCommand,
  type PutObjectCommandOutput,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
  type UploadPartCommandOutput,
} from '@aws-sdk/client-s3';
import { InvalidArgumentError } from 'commander';
import { describeError, SluiceError } from '../errors.ts';
import type { DownloadDataFile } from '../files/download-data-file.ts';
import type { StreamSummary } from '../files/stream-handler.ts';
import { getSection, type IniDocument } from '../runtime/ini-config.ts';
import type { DataFileStreamProcessorOptions } from './data-file-stream-processor.ts';
import {
  type CommandLineArguments,
  DataFileStreamProcessor,
  type ParsedArguments,
  positiveNumber,
  type RunContext,
} from './runnable.ts';

// ---- names and keys -----------------------------------------------------------------------------------------------

/** Characters upstream rejects in bucket names (`detect_bucket_name`). */
export const BUCKET_NAME_ILLEGAL_CHARACTERS: readonly string[] = [
  '#',
  '%',
  '&',
  '{',
  '}',
  '\\',
  '/',
  '<',
  '>',
  '*',
  '?',
  ' ',
  '$',
  '!',
  "'",
  '"',
  ':',
  '@',
  '+',
  '`',
  '|',
  '=',
];

/** Upstream's bucket-name check: the name is returned, or `SLUICE_USAGE` names the offending characters. */
export function validateBucketName(name: string): string {
  if (name === '')
    throw new SluiceError('SLUICE_USAGE', 'The bucket name is empty. Name the S3 bucket to upload to.');
  const bad = BUCKET_NAME_ILLEGAL_CHARACTERS.filter((c) => name.includes(c));
  if (bad.length > 0) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `Illegal character(s) ${bad.map((c) => JSON.stringify(c)).join(' ')} in bucket name ${JSON.stringify(name)}. ` +
        'S3 bucket names use lower-case letters, digits, "-" and ".".',
      { details: { bucketName: name } },
    );
  }
  return name;
}

/** The object key of a rebuilt file, as upstream: `<topic>/<subdir>/<filename>`, or `<topic>/<filename>` at the root. */
export function s3ObjectKey(topic: string, subdirStr: string, filename: string): string {
  return subdirStr === '' ? `${topic}/${filename}` : `${topic}/${subdirStr}/${filename}`;
}

// ---- connection settings ------------------------------------------------------------------------------------------

export interface S3Settings {
  /** e.g. `https://s3.example.org`; `https://` is added when there is no scheme (as upstream). */
  endpointUrl?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /**
   * `path` (`https://host/bucket/key`) or `virtual` (`https://bucket.host/key`). Default: `path` with an
   * `endpointUrl` (S3-compatible services), `virtual` without (AWS).
   */
  addressingStyle?: 'path' | 'virtual';
}

/** `endpoint_url` as upstream reads it: `https://` added when the value has no scheme. */
export function normalizeEndpointUrl(url: string): string {
  const trimmed = url.trim();
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `https://${trimmed}`;
}

/** Maps an `[s3]` section (upstream keys) to settings; unknown keys are an error naming the known ones. */
export function s3SettingsFromSection(section: Record<string, string>, source = '[s3]'): S3Settings {
  const known = ['access_key_id', 'secret_key_id', 'endpoint_url', 'region', 'addressing_style'];
  const unknown = Object.keys(section).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `${source} has unknown key(s) ${unknown.join(', ')}. sluice reads ${known.join(', ')}.`,
    );
  }
  const style = section.addressing_style;
  if (style !== undefined && style !== 'path' && style !== 'virtual') {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `${source} addressing_style is ${JSON.stringify(style)}; use path or virtual.`,
    );
  }
  return {
    endpointUrl: section.endpoint_url === undefined ? undefined : normalizeEndpointUrl(section.endpoint_url),
    region: section.region,
    accessKeyId: section.access_key_id,
    secretAccessKey: section.secret_key_id,
    addressingStyle: style,
  };
}

/** Later layers win; undefined values do not override. */
export function mergeS3Settings(...layers: Array<S3Settings | undefined>): S3Settings {
  const out: S3Settings = {};
  for (const layer of layers) {
    if (layer === undefined) continue;
    for (const [k, v] of Object.entries(layer)) {
      if (v !== undefined) (out as Record<string, unknown>)[k] = v;
    }
  }
  return out;
}

/**
 * The S3 client configuration for settings. Checksums are computed and validated only when an operation requires
 * them: many S3-compatible servers mishandle the SDK's default aws-chunked uploads with trailing checksums (s3rver
 * stores the framing as content). sluice sends Content-MD5 on every upload instead, which every S3 server checks.
 */
export function s3ClientConfig(settings: S3Settings, env: NodeJS.ProcessEnv = process.env): S3ClientConfig {
  if ((settings.accessKeyId === undefined) !== (settings.secretAccessKey === undefined)) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      'S3 credentials need both access_key_id and secret_key_id (or neither, to use the AWS default credential chain).',
    );
  }
  const config: S3ClientConfig = {
    region: settings.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    forcePathStyle: (settings.addressingStyle ?? (settings.endpointUrl ? 'path' : 'virtual')) === 'path',
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  if (settings.endpointUrl !== undefined) config.endpoint = normalizeEndpointUrl(settings.endpointUrl);
  if (settings.accessKeyId !== undefined && settings.secretAccessKey !== undefined) {
    config.credentials = { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey };
  }
  return config;
}

export function createS3Client(settings: S3Settings): S3Client {
  return new S3Client(s3ClientConfig(settings));
}

/** The `send` of an S3 client (the SDK's `S3Client`, or a stand-in in tests). */
export interface S3Sender {
  send(command: object): Promise<unknown>;
  destroy?(): void;
}

// ---- uploads -------------------------------------------------------------------------------------------------------

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last) and largest part count. */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PARTS = 10_000;

export interface S3UploadOptions {
  /** Files of at least this many bytes go up as multipart uploads. Default 16 MiB. */
  multipartThresholdBytes?: number;
  /** Part size (at least 5 MiB; raised when a file would need more than 10,000 parts). Default 8 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded at the same time per file. Default 4. */
  partConcurrency?: number;
}

export interface S3UploadResult {
  bucket: string;
  key: string;
  bytes: number;
  etag: string;
  /** 0 for a single PutObject. */
  parts: number;
}

const md5 = (data: Uint8Array): Buffer => createHash('md5').update(data).digest();
const unquote = (etag: string | undefined): string =>
  (etag ?? '').replace(/^W\//, '').replace(/"/g, '').toLowerCase();
const MD5_ETAG = /^[0-9a-f]{32}$/;
const MULTIPART_ETAG = /^([0-9a-f]{32})-(\d+)$/;

function verifyError(bucket: string, key: string, problem: string): SluiceError {
  return new SluiceError(
    'SLUICE_IO',
    `The upload of s3://${bucket}/${key} did not verify: ${problem}. The file is registered failed and uploaded again after a restart.`,
    { details: { bucket, key } },
  );
}

/** An ETag shaped like an MD5 must be the MD5 of what was sent (other shapes: SSE-KMS/SSE-C, not checkable). */
function checkEtag(
  bucket: string,
  key: string,
  etag: string | undefined,
  expected: Buffer,
  what: string,
): string {
  const got = unquote(etag);
  if (MD5_ETAG.test(got) && got !== expected.toString('hex')) {
    throw verifyError(
      bucket,
      key,
      `${what} has ETag ${got}, but the MD5 of the bytes sent is ${expected.toString('hex')}`,
    );
  }
  return got;
}

async function md5OfFile(path: string): Promise<Buffer> {
  const hash = createHash('md5');
  for await (const block of createReadStream(path, { highWaterMark: MiB })) hash.update(block as Buffer);
  return hash.digest();
}

/** A source of bytes: a Buffer in memory, or a file read part by part. */
type Source = { kind: 'buffer'; data: Buffer } | { kind: 'file'; path: string; size: number };

/**
 * Uploads one object and verifies it (see the module comment). Multipart uploads that fail are aborted, so no
 * parts are left behind.
 */
export async function uploadAndVerify(
  client: S3Sender,
  bucket: string,
  key: string,
  source: Source,
  options: S3UploadOptions = {},
): Promise<S3UploadResult> {
  const size = source.kind === 'buffer' ? source.data.length : source.size;
  const threshold = options.multipartThresholdBytes ?? 16 * MiB;
  let etag: string;
  let parts = 0;
  if (size >= threshold && size > 0) {
    const r = await multipartUpload(client, bucket, key, source, size, options);
    etag = r.etag;
    parts = r.parts;
  } else {
    const digest = source.kind === 'buffer' ? md5(source.data) : await md5OfFile(source.path);
    const out = (await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: source.kind === 'buffer' ? source.data : createReadStream(source.path),
        ContentLength: size,
        ContentMD5: digest.toString('base64'),
      }),
    )) as PutObjectCommandOutput;
    etag = checkEtag(bucket, key, out.ETag, digest, 'the stored object');
  }
  const head = (await client.send(
    new HeadObjectCommand({ Bucket: bucket, Key: key }),
  )) as HeadObjectCommandOutput;
  if (head.ContentLength !== size) {
    throw verifyError(bucket, key, `the stored object has ${head.ContentLength} bytes, the file has ${size}`);
  }
  const headEtag = unquote(head.ETag);
  if (etag !== '' && headEtag !== '' && headEtag !== etag) {
    throw verifyError(
      bucket,
      key,
      `the stored object's ETag is ${headEtag}, the upload returned ${etag} (overwritten meanwhile?)`,
    );
  }
  return { bucket, key, bytes: size, etag, parts };
}

/** Part size for a file: the configured one, raised so that the file fits in 10,000 parts. */
export function partSizeFor(size: number, configured = 8 * MiB): number {
  const base = Math.max(MIN_PART_SIZE, configured);
  return Math.max(base, Math.ceil(size / MAX_PARTS));
}

async function multipartUpload(
  client: S3Sender,
  bucket: string,
  key: string,
  source: Source,
  size: number,
  options: S3UploadOptions,
): Promise<{ etag: string; parts: number }> {
  const partSize = partSizeFor(size, options.partSizeBytes);
  const nParts = Math.ceil(size / partSize);
  const created = (await client.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
  )) as CreateMultipartUploadCommandOutput;
  const uploadId = created.UploadId;
  if (uploadId === undefined) throw verifyError(bucket, key, 'CreateMultipartUpload returned no UploadId');
  const handle = source.kind === 'file' ? await open(source.path, 'r') : undefined;
  const digests: Buffer[] = new Array(nParts);
  const etags: string[] = new Array(nParts);
  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < nParts) {
        const i = next++;
        const start = i * partSize;
        const length = Math.min(partSize, size - start);
        let body: Buffer;
        if (source.kind === 'buffer') body = source.data.subarray(start, start + length);
        else {
          body = Buffer.allocUnsafe(length);
          let done = 0;
          while (done < length) {
            const { bytesRead } = await handle!.read(body, done, length - done, start + done);
            if (bytesRead === 0)
              throw verifyError(bucket, key, `the file ended at ${start + done} bytes, expected ${size}`);
            done += bytesRead;
          }
        }
        const digest = md5(body);
        const out = (await client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: i + 1,
            Body: body,
            ContentLength: length,
            ContentMD5: digest.toString('base64'),
          }),
        )) as UploadPartCommandOutput;
        digests[i] = digest;
        etags[i] = out.ETag ?? `"${digest.toString('hex')}"`;
        checkEtag(bucket, key, out.ETag, digest, `part ${i + 1}`);
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(nParts, Math.max(1, options.partConcurrency ?? 4)) }, worker),
    );
    const done = (await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    )) as CompleteMultipartUploadCommandOutput;
    const etag = unquote(done.ETag);
    const m = MULTIPART_ETAG.exec(etag);
    if (m) {
      const expected = md5(Buffer.concat(digests)).toString('hex');
      if (m[1] !== expected || Number(m[2]) !== nParts) {
        throw verifyError(
          bucket,
          key,
          `the multipart ETag is ${etag}, expected ${expected}-${nParts} from the parts sent`,
        );
      }
    }
    return { etag, parts: nParts };
  } catch (err) {
    await client
      .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
      .catch(() => {});
    throw err;
  } finally {
    await handle?.close();
  }
}

// ---- the processor -------------------------------------------------------------------------------------------------

export interface S3TransferStreamProcessorOptions extends DataFileStreamProcessorOptions, S3UploadOptions {
  /** The bucket the files go to (checked as upstream does). */
  bucketName: string;
  /** Connection settings; ignored when `client` is given. */
  s3?: S3Settings;
  /** An S3 client to use instead of one built from `s3` (it is not destroyed at the end). */
  client?: S3Sender;
}

/** Reads `[s3]` from a config file (when present) and lays command-line values over it. */
export function resolveS3Settings(config: IniDocument | undefined, args: ParsedArguments): S3Settings {
  const fromConfig =
    config?.sections.has('s3') === true
      ? s3SettingsFromSection(getSection(config, 's3'), `${config.source} [s3]`)
      : undefined;
  const str = (k: string): string | undefined =>
    typeof args[k] === 'string' ? (args[k] as string) : undefined;
  const endpoint = str('endpoint_url');
  return mergeS3Settings(fromConfig, {
    endpointUrl: endpoint === undefined ? undefined : normalizeEndpointUrl(endpoint),
    region: str('region'),
    accessKeyId: str('access_key_id'),
    secretAccessKey: str('secret_key_id'),
    addressingStyle: str('addressing_style') as S3Settings['addressingStyle'],
  });
}

function bucketArgument(value: string): string {
  try {
    return validateBucketName(value);
  } catch (err) {
    throw new InvalidArgumentError(describeError(err));
  }
}

export class S3TransferStreamProcessor extends DataFileStreamProcessor {
  readonly bucketName: string;
  readonly s3Options: S3TransferStreamProcessorOptions;
  private readonly client: S3Sender;
  private readonly ownsClient: boolean;

  constructor(options: S3TransferStreamProcessorOptions) {
    super(options);
    this.bucketName = validateBucketName(options.bucketName);
    this.s3Options = options;
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? (createS3Client(options.s3 ?? {}) as unknown as S3Sender);
  }

  /** The object key of a file: `<topic>/<subdir>/<filename>` (upstream's). */
  objectKeyFor(file: DownloadDataFile): string {
    return s3ObjectKey(this.options.topic, file.subdirStr, file.filename);
  }

  protected override async processDownloadedDataFile(file: DownloadDataFile): Promise<void> {
    const key = this.objectKeyFor(file);
    const source: Source =
      this.options.mode === 'disk'
        ? { kind: 'file', path: file.fullFilepath, size: (await stat(file.fullFilepath)).size }
        : { kind: 'buffer', data: file.bytestring! };
    let result: S3UploadResult;
    try {
      result = await uploadAndVerify(this.client, this.bucketName, key, source, this.s3Options);
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      throw new SluiceError(
        'SLUICE_IO',
        `Could not upload ${file.relativeFilepath} to s3://${this.bucketName}/${key}: ${describeError(err)}. ` +
          'Check the bucket, the endpoint and the credentials; the file is registered failed and uploaded again after a restart.',
        { cause: err, details: { bucket: this.bucketName, key } },
      );
    }
    this.log.info(
      { file: file.relativeFilepath, bucket: this.bucketName, key, bytes: result.bytes, parts: result.parts },
      `uploaded ${file.relativeFilepath} to s3://${this.bucketName}/${key} (${result.bytes} bytes${result.parts > 0 ? `, ${result.parts} parts` : ''}, verified)`,
    );
  }

  override async run(signal: AbortSignal): Promise<StreamSummary> {
    this.log.info(
      `listening to the ${this.options.topic} topic for files to add to the ${this.bucketName} bucket`,
    );
    try {
      return await super.run(signal);
    } finally {
      if (this.ownsClient) this.client.destroy?.();
    }
  }

  static override getCommandLineArguments(): CommandLineArguments {
    const { args, defaults } = DataFileStreamProcessor.getCommandLineArguments();
    return {
      args: [
        {
          name: 'bucket_name',
          positional: true,
          help: 'S3 bucket the rebuilt files are uploaded to',
          parse: bucketArgument,
        },
        ...args,
        {
          name: 'endpoint_url',
          valueName: 'url',
          help: 'S3 endpoint (overrides [s3] endpoint_url; https:// added without a scheme)',
        },
        {
          name: 'region',
          valueName: 'region',
          help: 'S3 region (overrides [s3] region; default $AWS_REGION, else us-east-1)',
        },
        {
          name: 'access_key_id',
          valueName: 'id',
          help: 'S3 access key id (overrides [s3] access_key_id; default: the AWS credential chain)',
        },
        {
          name: 'secret_key_id',
          valueName: 'secret',
          help: 'S3 secret key (overrides [s3] secret_key_id; prefer a $VARIABLE in the config file)',
        },
        {
          name: 'addressing_style',
          help: 'path: https://host/bucket/key; virtual: https://bucket.host/key (default path with an endpoint)',
          choices: ['path', 'virtual'],
        },
        {
          name: 'multipart_threshold_mb',
          valueName: 'MB',
          help: 'files of at least this many MiB go up as multipart uploads',
          parse: positiveNumber('--multipart_threshold_mb'),
          default: 16,
        },
        {
          name: 'part_size_mb',
          valueName: 'MB',
          help: 'multipart part size in MiB (at least 5)',
          parse: (v: string) => {
            const n = positiveNumber('--part_size_mb')(v);
            if (n < 5)
              throw new InvalidArgumentError('--part_size_mb must be at least 5 (S3 rejects smaller parts).');
            return n;
          },
          default: 8,
        },
      ],
      defaults,
    };
  }

  static override optionsFromCommandLine(
    args: ParsedArguments,
    context: RunContext,
  ): S3TransferStreamProcessorOptions {
    const base = DataFileStreamProcessor.optionsFromCommandLine(args, context);
    return {
      ...base,
      bucketName: args.bucket_name as string,
      s3: resolveS3Settings(context.config, args),
      multipartThresholdBytes: Math.round((args.multipart_threshold_mb as number) * MiB),
      partSizeBytes: Math.round((args.part_size_mb as number) * MiB),
    };
  }
}

export default S3TransferStreamProcessor;
