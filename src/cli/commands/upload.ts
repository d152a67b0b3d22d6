import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { describeError, SluiceError } from '../../errors.ts';
import { DEFAULT_CHUNK_SIZE } from '../../files/chunk-codec.ts';
import { filePartitioner } from '../../files/chunk-key.ts';
import { checkChunkSize, UploadDataFile } from '../../files/upload-data-file.ts';
import {
  DataFileUploadDirectory,
  DEFAULT_LAG_TIME_SECS,
  DEFAULT_MAX_FILES_IN_FLIGHT,
  DEFAULT_QUEUE_MAX_SIZE_MB,
  LEGACY_UPLOAD_REGEX,
} from '../../files/upload-directory.ts';
import { DEFAULT_HEARTBEAT_INTERVAL_SECS } from '../../runtime/heartbeat.ts';
import { createProgress } from '../../runtime/progress.ts';
import { gracefulShutdown } from '../../runtime/shutdown.ts';
import { addConnectionOptions, type GlobalOptions, intArg, loggerFor, withTransport } from '../common.ts';

/** Upstream's `--topic_name` default. */
export const DEFAULT_TOPIC_NAME = 'test';
/** Upstream's `--n_threads` default. */
const DEFAULT_N_THREADS = 2;
/**
 * Chunks in flight per `--n_threads` thread. Upstream's threads hand chunks to an asynchronous producer and do not
 * wait for acknowledgements, so one upstream thread corresponds to several sluice chunks in flight.
 */
export const CHUNKS_PER_THREAD = 8;

type Raw = GlobalOptions & Record<string, unknown>;

/**
 * Adds an upstream-style option (`--chunk_size`) and a hidden alias with dashes (`--chunk-size`), so both
 * spellings work. Read the value with `pick`.
 */
function dual(
  cmd: Command,
  flags: string,
  description: string,
  parse?: (value: string) => unknown,
  defaultValue?: unknown,
): Command {
  const visible = new Option(flags, description);
  const alias = new Option(
    flags.replace(/--([a-z0-9_]+)/, (_, n: string) => `--${n.replaceAll('_', '-')}`),
    description,
  ).hideHelp();
  if (parse !== undefined) {
    visible.argParser(parse);
    alias.argParser(parse);
  }
  if (defaultValue !== undefined) visible.default(defaultValue);
  return cmd.addOption(visible).addOption(alias);
}

/** The value of an option added with `dual`: the dashed spelling wins when given (it has no default). */
function pick<T>(o: Raw, name: string): T | undefined {
  const camel = name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  return (o[camel] ?? o[name]) as T | undefined;
}

function chunkSizeArg(value: string): number {
  const n = Number(value);
  try {
    return checkChunkSize(n);
  } catch (err) {
    throw new InvalidArgumentError(describeError(err));
  }
}

function positiveNumber(name: string, allowZero = true): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) {
      throw new InvalidArgumentError(`${name} must be a number ${allowZero ? '≥' : '>'} 0.`);
    }
    return n;
  };
}

function inFlight(o: Raw): number {
  const explicit = pick<number>(o, 'max_in_flight');
  if (explicit !== undefined) return explicit;
  return (pick<number>(o, 'n_threads') ?? DEFAULT_N_THREADS) * CHUNKS_PER_THREAD;
}

function mbps(bytes: number, ms: number): string {
  return ms > 0 ? (bytes / 1e6 / (ms / 1000)).toFixed(1) : '∞';
}

function commonUploadOptions(cmd: Command): Command {
  dual(cmd, '--topic_name <name>', 'topic to send the chunks to', undefined, DEFAULT_TOPIC_NAME);
  dual(
    cmd,
    '--chunk_size <bytes>',
    'bytes per chunk; a power of two (upstream requires it too)',
    chunkSizeArg,
    DEFAULT_CHUNK_SIZE,
  );
  dual(
    cmd,
    '--n_threads <n>',
    `sending concurrency: ${CHUNKS_PER_THREAD} chunks in flight per thread`,
    intArg('--n_threads', 1),
    DEFAULT_N_THREADS,
  );
  dual(
    cmd,
    '--max_in_flight <n>',
    'chunks of one file between reading and acknowledgement (overrides --n_threads)',
    intArg('--max_in_flight', 1),
  );
  cmd.option('--auto-create', 'create the topic if it does not exist (always on for the embedded broker)');
  return cmd;
}

export function registerUploadCommands(program: Command): void {
  const file = program
    .command('upload-file <filepath>')
    .description('upload one file as OpenMSIStream chunk messages (like UploadDataFile)');
  commonUploadOptions(file);
  addConnectionOptions(file).addHelpText(
    'after',
    `
The file is read twice: once to compute the SHA-512 of the whole file and of every chunk, once to send the
chunks (at most --n_threads × ${CHUNKS_PER_THREAD} in flight), so memory stays small whatever the file size. Exits 0
only when every chunk was acknowledged by the broker. Options also accept dashes (--topic-name).

Examples:
  $ sluice upload-file scan-001.tif --topic_name raw-scans --auto-create
  $ sluice upload-file big.h5 --chunk_size 1048576 --broker kafka://127.0.0.1:9092`,
  );
  file.action(async (filepath: string, o: Raw) => {
    const log = loggerFor('upload-file', o);
    const topic = pick<string>(o, 'topic_name') ?? DEFAULT_TOPIC_NAME;
    const chunkSize = pick<number>(o, 'chunk_size') ?? DEFAULT_CHUNK_SIZE;
    const st = await stat(filepath).catch((err: unknown) => {
      throw new SluiceError(
        'SLUICE_USAGE',
        `Cannot upload ${filepath}: ${describeError(err)}. Pass the path of an existing file.`,
      );
    });
    if (!st.isFile()) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `${filepath} is not a regular file. Pass a file (upload-dir takes directories).`,
      );
    }
    const shutdown = gracefulShutdown({ logger: log });
    try {
      await withTransport(o, async (t) => {
        const upload = new UploadDataFile(filepath, { chunkSize });
        const producer = t.producer({
          autoCreateTopics: o.autoCreate === true || t.kind === 'embedded',
          partitioner: filePartitioner,
        });
        const t0 = performance.now();
        await upload.prepare();
        const hashMs = performance.now() - t0;
        const bar = createProgress({ label: basename(filepath), total: upload.size });
        let result: Awaited<ReturnType<UploadDataFile['upload']>>;
        try {
          result = await upload.upload(producer, topic, {
            maxInFlight: inFlight(o),
            signal: shutdown.signal,
            onChunk: (ack) => bar.increment(ack.dataBytes),
          });
        } finally {
          bar.stop();
        }
        await producer.close();
        const totalMs = performance.now() - t0;
        log.info(
          {
            file: filepath,
            topic,
            chunks: result.chunks,
            bytes: result.bytes,
            hashMs: Math.round(hashMs),
            sendMs: Math.round(result.durationMs),
            totalMs: Math.round(totalMs),
            retries: result.retries,
            fileHash: result.fileHash.toString('hex').slice(0, 16),
          },
          `uploaded ${filepath} to ${topic}: ${result.chunks} chunk${result.chunks === 1 ? '' : 's'}, ` +
            `${result.bytes} bytes in ${(totalMs / 1000).toFixed(2)} s (${mbps(result.bytes, totalMs)} MB/s)`,
        );
      });
    } finally {
      shutdown.dispose();
    }
  });

  const dir = program
    .command('upload-dir <upload_dir>')
    .description('watch a directory and upload every new or changed file (like DataFileUploadDirectory)');
  commonUploadOptions(dir);
  dual(
    dir,
    '--upload_regex <regex>',
    'upload only relative paths this regex matches at their start (Python re.match); default: skip hidden ' +
      `paths, LOGS/ and *.log. Upstream's default was ${LEGACY_UPLOAD_REGEX}`,
  );
  dual(
    dir,
    '--queue_max_size <MB>',
    'bound on chunk data in flight, in MB',
    positiveNumber('--queue_max_size', false),
    DEFAULT_QUEUE_MAX_SIZE_MB,
  );
  dual(
    dir,
    '--upload_existing',
    'also upload files already in the directory (not those already uploaded and unchanged)',
  );
  dual(
    dir,
    '--watchdog_lag_time <secs>',
    'a file is uploaded once it has not changed for this long',
    positiveNumber('--watchdog_lag_time'),
    DEFAULT_LAG_TIME_SECS,
  );
  dual(
    dir,
    '--use_polling_observer',
    'poll the file system instead of change notifications (SMB/CIFS/NFS mounts)',
  );
  dual(
    dir,
    '--max_files_in_flight <n>',
    'files uploaded at the same time (upstream: 1)',
    intArg('--max_files_in_flight', 1),
    DEFAULT_MAX_FILES_IN_FLIGHT,
  );
  dual(dir, '--heartbeat_topic_name <name>', 'send heartbeats to this topic');
  dual(dir, '--heartbeat_program_id <id>', 'heartbeat key prefix (default: stable per directory)');
  dual(
    dir,
    '--heartbeat_interval_secs <secs>',
    'seconds between heartbeats',
    positiveNumber('--heartbeat_interval_secs', false),
    DEFAULT_HEARTBEAT_INTERVAL_SECS,
  );
  addConnectionOptions(dir).addHelpText(
    'after',
    `
Runs until SIGINT/SIGTERM (or "q" on an interactive stdin; "c" prints counters). On stop, chunks already sent are
acknowledged and the rest of each file is left in LOGS/upload_to_<topic>_in_progress.csv; the next start resumes
it. Completed files are listed in LOGS/uploaded_to_<topic>.csv (OpenMSIStream's registry files).

Examples:
  $ sluice upload-dir ./instrument-out --topic_name raw --upload_existing --auto-create
  $ sluice upload-dir /mnt/share --use_polling_observer --upload_regex '^.*\\.(dat|tif)$' --broker kafka://k1:9092`,
  );
  dir.action(async (uploadDir: string, o: Raw) => {
    const log = loggerFor('upload-dir', o);
    const topic = pick<string>(o, 'topic_name') ?? DEFAULT_TOPIC_NAME;
    const shutdown = gracefulShutdown({ logger: log });
    try {
      await withTransport(o, async (t) => {
        const heartbeatTopic = pick<string>(o, 'heartbeat_topic_name');
        const up = new DataFileUploadDirectory({
          dir: uploadDir,
          transport: t,
          topic,
          chunkSize: pick<number>(o, 'chunk_size'),
          uploadRegex: pick<string>(o, 'upload_regex'),
          queueMaxSizeMB: pick<number>(o, 'queue_max_size'),
          uploadExisting: pick<boolean>(o, 'upload_existing') === true,
          lagTimeSecs: pick<number>(o, 'watchdog_lag_time'),
          usePolling: pick<boolean>(o, 'use_polling_observer') === true,
          maxInFlight: inFlight(o),
          maxFilesInFlight: pick<number>(o, 'max_files_in_flight'),
          heartbeat:
            heartbeatTopic === undefined
              ? undefined
              : {
                  topic: heartbeatTopic,
                  programId: pick<string>(o, 'heartbeat_program_id'),
                  intervalSecs: pick<number>(o, 'heartbeat_interval_secs'),
                },
          autoCreateTopics: o.autoCreate === true || t.kind === 'embedded',
          logger: log,
        });
        await up.start();
        const quit = new AbortController();
        const rl = process.stdin.isTTY === true ? createInterface({ input: process.stdin }) : undefined;
        rl?.on('line', (line) => {
          const cmd = line.trim().toLowerCase();
          if (cmd === 'q' || cmd === 'quit') quit.abort();
          else if (cmd === 'c' || cmd === 'check') log.info(up.stats(), 'counters');
        });
        await new Promise<void>((resolve) => {
          if (shutdown.signal.aborted) resolve();
          shutdown.signal.addEventListener('abort', () => resolve(), { once: true });
          quit.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        rl?.close();
        await up.stop();
      });
    } finally {
      shutdown.dispose();
    }
  });
}
