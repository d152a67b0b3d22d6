/**
 * Runnable programs: processors and reproducers run as command-line programs, the way OpenMSIStream's `Runnable`
 * classes do (`run_from_command_line`, `get_argument_parser`, `get_command_line_arguments`).
 *
 * - `getCommandLineArguments()` returns the arguments a class accepts: names of entries in `ARGUMENTS` (upstream's
 *   table of shared arguments) or full `ArgumentDef`s, plus default overrides. A subclass calls
 *   `super.getCommandLineArguments()` and adds its own, so it keeps every inherited option.
 * - `getArgumentParser()` builds a commander `Command` from them; `optionsFromCommandLine(args, context)` maps the
 *   parsed arguments to the constructor options (a subclass spreads `super.optionsFromCommandLine(...)` and adds
 *   its own); `runFromCommandLine(argv?)` does all of it: parse, log, open the broker, run until SIGINT/SIGTERM or
 *   `q` on stdin, and return the exit code.
 *
 * Importing this module attaches these statics to `DataFileStreamProcessor` and `DataFileStreamReproducer`, and
 * re-exports the classes typed with them: extend the classes imported from here to use
 * `static override getCommandLineArguments()` and `super.getCommandLineArguments()`. The same runtime classes are
 * exported by `./index.ts`; `Runnable.runFromCommandLine(Cls, argv)` works with either.
 */
import { fstatSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { type DestinationStream, type Level, type Logger, pino, type StreamEntry } from 'pino';
import pretty from 'pino-pretty';
import { reportError } from '../cli/common.ts';
import { describeError, SluiceError } from '../errors.ts';
import { DOWNLOAD_MODES } from '../files/download-data-file.ts';
import { defaultGroupId } from '../files/download-directory.ts';
import type { StreamSummary } from '../files/stream-handler.ts';
import { DEFAULT_HEARTBEAT_INTERVAL_SECS } from '../runtime/heartbeat.ts';
import { getSection, type IniDocument, readIniFile, resolveConfigPath } from '../runtime/ini-config.ts';
import { gracefulShutdown } from '../runtime/shutdown.ts';
import { BROKER_HELP, openTransport } from '../transport/open.ts';
import type { Producer, Transport } from '../transport/types.ts';
import {
  DataFileStreamProcessor as BaseDataFileStreamProcessor,
  type DataFileStreamProcessorOptions,
  DEFAULT_CONSUMER_TOPIC,
} from './data-file-stream-processor.ts';
import {
  DataFileStreamReproducer as BaseDataFileStreamReproducer,
  MetadataJSONReproducer as BaseMetadataJSONReproducer,
  type DataFileStreamReproducerOptions,
} from './data-file-stream-reproducer.ts';

// ---- argument definitions ---------------------------------------------------------------------------------------

/** One command-line argument. Its parsed value is stored under `name` (upstream's underscore names). */
export interface ArgumentDef {
  /** Key of the parsed value, and the flag `--<name>` unless `flags` says otherwise. */
  name: string;
  help: string;
  /** A positional argument (`<name>`, required unless `optional`). */
  positional?: boolean;
  optional?: boolean;
  /** commander flags, e.g. `-b, --broker <spec>`. Default `--<name> <value>` (or `--<name>` for a switch). */
  flags?: string;
  /** A switch without a value (argparse `store_true`). */
  switch?: boolean;
  /** Placeholder shown in help. Default `value`. */
  valueName?: string;
  default?: unknown;
  /** Shown in help instead of the default value (for defaults computed at run time). */
  defaultDescription?: string;
  /** Turns the text into the value; throw `InvalidArgumentError` to reject it. */
  parse?: (value: string) => unknown;
  choices?: readonly string[];
  /** Environment variable that supplies the value when the flag is absent. */
  env?: string;
}

/** An argument: the name of an `ARGUMENTS` entry, or a full definition. */
export type ArgumentSpec = string | ArgumentDef;

/** What `getCommandLineArguments()` returns: upstream's `(args, kwargs)`, kwargs being default overrides. */
export interface CommandLineArguments {
  args: ArgumentSpec[];
  defaults: Record<string, unknown>;
}

/** Parsed arguments, by `ArgumentDef.name` (e.g. `args.consumer_group_id`). */
export type ParsedArguments = Record<string, unknown>;

export function positiveInt(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a whole number ≥ 1.`);
    return n;
  };
}

export function positiveNumber(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a number > 0.`);
    return n;
  };
}

export function regexArgument(value: string): RegExp {
  try {
    return new RegExp(value);
  } catch (err) {
    throw new InvalidArgumentError(`not a valid regular expression (${describeError(err)}).`);
  }
}

/** Logger level names: Python's (as upstream) and pino's. */
export const LOGGER_LEVELS = [
  'debug',
  'info',
  'warning',
  'error',
  'critical',
  'trace',
  'warn',
  'fatal',
  'silent',
] as const;

/** Python logging level name → pino level. */
export function pinoLevel(name: string): Level | 'silent' {
  const n = name.toLowerCase();
  if (n === 'warning') return 'warn';
  if (n === 'critical') return 'fatal';
  if (n === 'notset') return 'trace';
  if (['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(n))
    return n as Level | 'silent';
  throw new InvalidArgumentError(
    `unknown logger level ${JSON.stringify(name)} (use ${LOGGER_LEVELS.join(', ')}).`,
  );
}

function levelArgument(value: string): string {
  pinoLevel(value);
  return value.toLowerCase();
}

/**
 * The shared arguments, by name (upstream's `OpenMSIStreamArgumentParser.ARGUMENTS`, with sluice's connection
 * options). Defaults are upstream's unless noted.
 */
export const ARGUMENTS: Readonly<Record<string, ArgumentDef>> = {
  broker: {
    name: 'broker',
    flags: '-b, --broker <spec>',
    help: `where the chunk topics live: ${BROKER_HELP}`,
    env: 'SLUICE_BROKER',
  },
  config: {
    name: 'config',
    valueName: 'file',
    help:
      'OpenMSIStream-style INI config file (a name without "." gets ".config"; looked up in ' +
      '$OPENMSISTREAM_CONFIG_FILE_DIR too). Its [broker] section selects a Kafka cluster unless --broker is given',
  },
  topic_name: {
    name: 'topic_name',
    valueName: 'topic',
    help: 'topic the file chunks are read from',
    default: DEFAULT_CONSUMER_TOPIC,
  },
  consumer_topic_name: {
    name: 'consumer_topic_name',
    valueName: 'topic',
    help: 'topic the file chunks are read from',
    defaultDescription: '--topic_name',
  },
  producer_topic_name: {
    name: 'producer_topic_name',
    valueName: 'topic',
    help: 'topic the processing results are produced to (must differ from the chunk topic)',
    defaultDescription: '--topic_name',
  },
  consumer_group_id: {
    name: 'consumer_group_id',
    valueName: 'id',
    help:
      'consumer group. Default: a stable one derived from the class name and the output directory, so a restart ' +
      're-processes exactly the files that failed or were unfinished; create_new: a fresh group per run (re-reads ' +
      'the whole topic, as upstream)',
  },
  output_dir: {
    name: 'output_dir',
    valueName: 'dir',
    help: 'where the registries (LOGS/) and, in disk and both modes, the rebuilt files go',
    defaultDescription: './<ClassName>_output',
  },
  mode: {
    name: 'mode',
    valueName: 'mode',
    help: "'memory': files handed over as bytes; 'disk': as files on disk, never held in memory; 'both'",
    choices: DOWNLOAD_MODES,
    default: 'memory',
  },
  n_threads: {
    name: 'n_threads',
    valueName: 'n',
    help: 'files processed at the same time',
    parse: positiveInt('--n_threads'),
    default: 2,
  },
  n_consumer_threads: {
    name: 'n_consumer_threads',
    valueName: 'n',
    help: 'files processed at the same time (the larger of this and --n_producer_threads)',
    parse: positiveInt('--n_consumer_threads'),
    default: 2,
  },
  n_producer_threads: {
    name: 'n_producer_threads',
    valueName: 'n',
    help: 'results computed and produced at the same time (the larger of this and --n_consumer_threads)',
    parse: positiveInt('--n_producer_threads'),
    default: 2,
  },
  download_regex: {
    name: 'download_regex',
    valueName: 'regex',
    help: 'only files whose path relative to the upload root matches are processed',
    parse: regexArgument,
  },
  exactly_once: {
    name: 'exactly_once',
    switch: true,
    help:
      'commit each result and the offsets of its file atomically (Kafka transactions; the embedded broker), so ' +
      'every result appears exactly once for read_committed consumers. Default: at-least-once',
    default: false,
  },
  update_seconds: {
    name: 'update_seconds',
    valueName: 's',
    help: 'log a progress line this often',
    parse: positiveNumber('--update_seconds'),
    default: 300,
  },
  heartbeat_topic_name: {
    name: 'heartbeat_topic_name',
    valueName: 'topic',
    help: 'send OpenMSIStream heartbeats (key <program_id>_heartbeat) to this topic',
  },
  heartbeat_program_id: {
    name: 'heartbeat_program_id',
    valueName: 'id',
    help: 'heartbeat key prefix',
    defaultDescription: 'stable per class and output directory',
  },
  heartbeat_interval_secs: {
    name: 'heartbeat_interval_secs',
    valueName: 's',
    help: 'seconds between heartbeats',
    parse: positiveNumber('--heartbeat_interval_secs'),
    default: DEFAULT_HEARTBEAT_INTERVAL_SECS,
  },
  log_topic_name: {
    name: 'log_topic_name',
    valueName: 'topic',
    help: 'send this program\'s log lines to this topic (key <program_id>_log, {"timestamp", "messages"})',
  },
  log_program_id: {
    name: 'log_program_id',
    valueName: 'id',
    help: 'log message key prefix',
    defaultDescription: 'stable per class and output directory',
  },
  log_interval_secs: {
    name: 'log_interval_secs',
    valueName: 's',
    help: 'seconds between log messages',
    parse: positiveNumber('--log_interval_secs'),
    default: 60,
  },
  logger_stream_level: {
    name: 'logger_stream_level',
    valueName: 'level',
    help: `level of the log lines on stderr (${LOGGER_LEVELS.join(', ')})`,
    parse: levelArgument,
    default: 'info',
  },
  logger_file_level: {
    name: 'logger_file_level',
    valueName: 'level',
    help: 'level of the log lines written to --logger_file_path',
    parse: levelArgument,
    default: 'warning',
  },
  logger_file_path: {
    name: 'logger_file_path',
    valueName: 'path',
    help: 'also write the log to this file (a name without "." is a directory: <dir>/<ClassName>.log)',
  },
  log_format: {
    name: 'log_format',
    flags: '--log-format <format>',
    help: 'stderr log line format',
    choices: ['pretty', 'json'],
    default: 'pretty',
  },
};

const COMMON_ARGUMENTS = [
  'consumer_group_id',
  'output_dir',
  'mode',
  'download_regex',
  'update_seconds',
  'heartbeat_topic_name',
  'heartbeat_program_id',
  'heartbeat_interval_secs',
  'log_topic_name',
  'log_program_id',
  'log_interval_secs',
  'logger_stream_level',
  'logger_file_level',
  'logger_file_path',
  'log_format',
] as const;

/** `DataFileStreamProcessor`'s arguments (upstream's, plus `--broker`). */
export function processorCommandLineArguments(): CommandLineArguments {
  return { args: ['broker', 'config', 'topic_name', 'n_threads', ...COMMON_ARGUMENTS], defaults: {} };
}

/** `DataFileStreamReproducer`'s arguments (upstream's, plus `--broker` and `--exactly_once`). */
export function reproducerCommandLineArguments(): CommandLineArguments {
  return {
    args: [
      'broker',
      'config',
      'topic_name',
      'consumer_topic_name',
      'producer_topic_name',
      'n_consumer_threads',
      'n_producer_threads',
      'exactly_once',
      ...COMMON_ARGUMENTS,
    ],
    defaults: {},
  };
}

// ---- program classes --------------------------------------------------------------------------------------------

/** A concrete processor or reproducer class (what `runFromCommandLine` can run). */
export type ProgramClass = (new (
  options: never,
) => BaseDataFileStreamProcessor) &
  Partial<RunnableStatics> & { readonly name: string };

/** What a program gets besides its parsed arguments when it is built from the command line. */
export interface RunContext {
  transport: Transport;
  logger: Logger;
  /** The class name (used for defaults such as the output directory). */
  className: string;
  /** The `--config` file, parsed (for sections such as `[s3]`), when one was given. */
  config: IniDocument | undefined;
}

/** The statics `Runnable` adds to the processor classes (OpenMSIStream's `Runnable` classmethods). */
export interface RunnableStatics {
  /** Arguments this class accepts. Override, call `super.getCommandLineArguments()`, and add your own. */
  getCommandLineArguments(): CommandLineArguments;
  /** The parser built from `getCommandLineArguments()`. */
  getArgumentParser(this: ProgramClass, programName?: string): Command;
  /** Constructor options from parsed arguments. Override, spread `super.optionsFromCommandLine(...)`, add yours. */
  optionsFromCommandLine(args: ParsedArguments, context: RunContext): DataFileStreamProcessorOptions;
  /** Runs the class as a program with `argv` (default `process.argv.slice(2)`); resolves to the exit code. */
  runFromCommandLine(this: ProgramClass, argv?: string[], options?: RunOptions): Promise<number>;
}

function isReproducerClass(cls: ProgramClass): boolean {
  return cls.prototype instanceof BaseDataFileStreamReproducer;
}

/** The class's arguments: its own `getCommandLineArguments`, else the defaults for its kind. */
export function getCommandLineArguments(cls: ProgramClass): CommandLineArguments {
  if (typeof cls.getCommandLineArguments === 'function') return cls.getCommandLineArguments();
  return isReproducerClass(cls) ? reproducerCommandLineArguments() : processorCommandLineArguments();
}

function resolveSpec(spec: ArgumentSpec): ArgumentDef {
  if (typeof spec !== 'string') return spec;
  const def = ARGUMENTS[spec];
  if (def === undefined) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `getCommandLineArguments() names an unknown argument "${spec}". Use one of ${Object.keys(ARGUMENTS).join(', ')}, or pass a full ArgumentDef ({ name, help, ... }).`,
    );
  }
  return def;
}

/** Builds the parser for a set of arguments: a commander `Command` (parse with `parseCommandLine`). */
export function buildArgumentParser(commandLine: CommandLineArguments, programName: string): Command {
  const cmd = new Command(programName);
  cmd.exitOverride();
  cmd.allowExcessArguments(false);
  const seen = new Set<string>();
  const attributes: Array<[string, string]> = [];
  for (const spec of commandLine.args) {
    const def = resolveSpec(spec);
    if (seen.has(def.name)) continue; // listed twice (e.g. by a subclass): keep the first
    seen.add(def.name);
    const dflt = Object.hasOwn(commandLine.defaults, def.name) ? commandLine.defaults[def.name] : def.default;
    if (def.positional) {
      cmd.argument(def.optional ? `[${def.name}]` : `<${def.name}>`, def.help);
      const arg = cmd.registeredArguments.at(-1)!;
      if (def.parse) arg.argParser(def.parse);
      if (def.choices) arg.choices(def.choices);
      if (dflt !== undefined) arg.default(dflt, def.defaultDescription);
      continue;
    }
    const flags = def.flags ?? (def.switch ? `--${def.name}` : `--${def.name} <${def.valueName ?? 'value'}>`);
    const opt = new Option(flags, def.help);
    if (def.parse) opt.argParser(def.parse);
    if (def.choices) opt.choices(def.choices);
    if (def.env) opt.env(def.env);
    if (dflt !== undefined && !(def.switch && dflt === false)) opt.default(dflt, def.defaultDescription);
    else if (def.defaultDescription !== undefined) opt.description += ` (default: ${def.defaultDescription})`;
    cmd.addOption(opt);
    attributes.push([opt.attributeName(), def.name]);
  }
  argumentNames.set(cmd, attributes);
  return cmd;
}

const argumentNames = new WeakMap<Command, Array<[string, string]>>();

/**
 * Parses `argv` (user arguments only, as `process.argv.slice(2)`) with a parser from `getArgumentParser`.
 * Throws commander's `CommanderError` for bad arguments and for `--help` (exit code 0).
 */
export function parseCommandLine(parser: Command, argv: readonly string[]): ParsedArguments {
  parser.parse([...argv], { from: 'user' });
  const opts = parser.opts();
  const out: ParsedArguments = {};
  for (const [attribute, name] of argumentNames.get(parser) ?? []) out[name] = opts[attribute];
  parser.registeredArguments.forEach((arg, i) => {
    out[arg.name()] = parser.processedArgs[i];
  });
  return out;
}

/** The parser for a class: its own `getArgumentParser` when it has one. */
export function getArgumentParser(cls: ProgramClass, programName?: string): Command {
  if (typeof cls.getArgumentParser === 'function') return cls.getArgumentParser(programName);
  return buildArgumentParser(getCommandLineArguments(cls), programName ?? cls.name);
}

/** The standard mapping of parsed arguments to processor (and reproducer) options. */
export function standardOptionsFromCommandLine(
  args: ParsedArguments,
  context: RunContext,
): DataFileStreamProcessorOptions & Partial<DataFileStreamReproducerOptions> {
  const str = (k: string): string | undefined =>
    typeof args[k] === 'string' ? (args[k] as string) : undefined;
  const num = (k: string): number | undefined =>
    typeof args[k] === 'number' ? (args[k] as number) : undefined;
  const topic = str('consumer_topic_name') ?? str('topic_name') ?? DEFAULT_CONSUMER_TOPIC;
  const threads = [num('n_threads'), num('n_consumer_threads'), num('n_producer_threads')].filter(
    (n): n is number => n !== undefined,
  );
  const options: DataFileStreamProcessorOptions & Partial<DataFileStreamReproducerOptions> = {
    transport: context.transport,
    logger: context.logger,
    topic,
    outputDir: str('output_dir'),
    mode: (str('mode') as DataFileStreamProcessorOptions['mode']) ?? 'memory',
    groupId: str('consumer_group_id'),
    downloadRegex: args.download_regex instanceof RegExp ? args.download_regex : undefined,
    concurrency: threads.length > 0 ? Math.max(...threads) : undefined,
    autoCreateTopic: context.transport.kind === 'embedded',
  };
  const heartbeatTopic = str('heartbeat_topic_name');
  if (heartbeatTopic !== undefined) {
    options.heartbeat = {
      topic: heartbeatTopic,
      programId: str('heartbeat_program_id'),
      intervalSecs: num('heartbeat_interval_secs'),
    };
  }
  if (Object.hasOwn(args, 'producer_topic_name')) {
    const producerTopic = str('producer_topic_name') ?? str('topic_name') ?? DEFAULT_CONSUMER_TOPIC;
    if (producerTopic === topic) {
      throw new SluiceError(
        'SLUICE_USAGE',
        `The results would go to "${producerTopic}", the topic the file chunks are read from: they would be read back as broken chunks. Name another topic with --producer_topic_name.`,
      );
    }
    options.producerTopic = producerTopic;
    options.exactlyOnce = args.exactly_once === true;
  }
  return options;
}

/** The class's constructor options: its own `optionsFromCommandLine` when it has one. */
export function optionsFromCommandLine(
  cls: ProgramClass,
  args: ParsedArguments,
  context: RunContext,
): DataFileStreamProcessorOptions {
  if (typeof cls.optionsFromCommandLine === 'function') return cls.optionsFromCommandLine(args, context);
  return standardOptionsFromCommandLine(args, context);
}

// ---- logging: stderr, file, log topic -----------------------------------------------------------------------------

const PINO_LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARNING',
  50: 'ERROR',
  60: 'CRITICAL',
};

function two(n: number): string {
  return String(n).padStart(2, '0');
}

/**
 * One log line in OpenMSIStream's format: `[<ClassName> %Y-%m-%d %H:%M:%S] <msg>`, with `WARNING: ` / `ERROR: `
 * prefixes (local time, as Python's logging).
 */
export function formatUpstreamLogLine(className: string, level: number, time: number, msg: string): string {
  const d = new Date(time);
  const stamp = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  const name = PINO_LEVEL_NAMES[level] ?? 'INFO';
  const prefix = level >= 50 ? 'ERROR: ' : level >= 40 ? 'WARNING: ' : '';
  const body = msg.startsWith(`${name}: `) ? msg : `${prefix}${msg}`;
  return `[${className} ${stamp}] ${body}`;
}

/** A pino destination that formats each record as an upstream log line and hands it to `sink`. */
function upstreamLineStream(className: string, sink: (line: string) => void): DestinationStream {
  return {
    write(chunk: string): void {
      for (const text of chunk.split('\n')) {
        if (text === '') continue;
        try {
          const rec = JSON.parse(text) as { level?: number; time?: number; msg?: string };
          sink(formatUpstreamLogLine(className, rec.level ?? 30, rec.time ?? Date.now(), rec.msg ?? ''));
        } catch {
          sink(text);
        }
      }
    },
  };
}

export interface LogTopicOptions {
  topic: string;
  programId: string;
  /** Default 60 (upstream's). */
  intervalSecs?: number;
  /** Most log lines held (and sent in one message); older ones are dropped first. Default 65536 (upstream's). */
  maxLogsPerMessage?: number;
  /** Reports send failures (never to the log topic itself). */
  onError?: (err: unknown) => void;
}

/**
 * OpenMSIStream's log topic: log lines collect in a bounded in-process buffer and are produced every interval as
 * key `<programId>_log`, value `{"timestamp": <epoch seconds>, "messages": [...]}`. Best effort: a failed send is
 * reported and its lines are dropped; the first message goes out right after start, a final one at stop.
 */
export class LogTopic {
  readonly options: LogTopicOptions;
  private buffer: string[] = [];
  private dropped = 0;
  private producer: Producer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();

  constructor(options: LogTopicOptions) {
    this.options = options;
  }

  get capacity(): number {
    return this.options.maxLogsPerMessage ?? 65536;
  }

  /** Adds one formatted line (the oldest is dropped when the buffer is full). */
  push(line: string): void {
    this.buffer.push(line);
    if (this.buffer.length > this.capacity) {
      this.buffer.splice(0, this.buffer.length - this.capacity);
      this.dropped += 1;
    }
  }

  /** Lines waiting to be sent. */
  get pending(): readonly string[] {
    return this.buffer;
  }

  /** Starts sending with `producer`: once now, then every interval. */
  start(producer: Producer): void {
    this.producer = producer;
    void this.flush();
    this.timer = setInterval(() => void this.flush(), (this.options.intervalSecs ?? 60) * 1000);
    this.timer.unref();
  }

  /** Sends what is buffered (nothing when empty). */
  flush(): Promise<void> {
    this.sending = this.sending.then(() => this.sendNow());
    return this.sending;
  }

  private async sendNow(): Promise<void> {
    const producer = this.producer;
    if (producer === undefined || (this.buffer.length === 0 && this.dropped === 0)) return;
    const messages = this.buffer;
    this.buffer = [];
    if (this.dropped > 0) {
      messages.unshift(
        `[sluice] ${this.dropped} older log line(s) were dropped: the buffer holds ${this.capacity}`,
      );
      this.dropped = 0;
    }
    try {
      await producer.send({
        topic: this.options.topic,
        key: `${this.options.programId}_log`,
        value: JSON.stringify({ timestamp: Date.now() / 1000, messages }),
      });
    } catch (err) {
      this.options.onError?.(err);
    }
  }

  /** Stops the timer and sends the final message. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    this.producer = undefined;
  }
}

export interface ProgramLoggerOptions {
  className: string;
  /** Level on stderr (Python or pino names). Default `info`. */
  streamLevel?: string;
  format?: 'pretty' | 'json';
  /** Also write upstream-formatted lines to this file (or `<dir>/<ClassName>.log` for a name without "."). */
  filePath?: string;
  fileLevel?: string;
  /** Also feed upstream-formatted lines to a log topic. */
  logTopic?: LogTopic;
  logTopicLevel?: string;
  /** Where stderr lines go (tests). Default fd 2. */
  stderr?: DestinationStream;
}

/** The path of the log file for `--logger_file_path` (upstream: a name without "." is a directory). */
export function logFilePath(path: string, className: string): string {
  const last =
    path
      .split(/[\\/]/)
      .filter((p) => p !== '')
      .at(-1) ?? '';
  return last.includes('.') ? resolve(path) : join(resolve(path), `${className}.log`);
}

/** The program's logger: stderr, and optionally a log file and a log topic, each with its own level. */
export function createProgramLogger(o: ProgramLoggerOptions): Logger {
  const entries: StreamEntry[] = [];
  const add = (level: string, stream: DestinationStream): void => {
    const l = pinoLevel(level);
    if (l !== 'silent') entries.push({ level: l, stream });
  };
  const stderr =
    o.stderr ??
    (o.format === 'json'
      ? pino.destination({ dest: 2, sync: true })
      : pretty({
          destination: 2,
          sync: true,
          colorize: process.stderr.isTTY === true,
          translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
          ignore: 'pid,hostname',
          // (not with singleLine: pino-pretty 13 then drops the line break)
          hideObject: true,
        }));
  add(o.streamLevel ?? 'info', stderr);
  if (o.filePath !== undefined) {
    const file = pino.destination({ dest: logFilePath(o.filePath, o.className), sync: true, mkdir: true });
    add(
      o.fileLevel ?? 'warning',
      upstreamLineStream(o.className, (line) => file.write(`${line}\n`)),
    );
  }
  if (o.logTopic !== undefined) {
    const topic = o.logTopic;
    add(
      o.logTopicLevel ?? 'info',
      upstreamLineStream(o.className, (line) => topic.push(line)),
    );
  }
  if (entries.length === 0) return pino({ level: 'silent', name: o.className, base: undefined });
  const order = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
  const lowest = entries
    .map((e) => e.level as string)
    .sort((a, b) => order.indexOf(a) - order.indexOf(b))[0] as Level;
  return pino({ level: lowest, name: o.className, base: undefined }, pino.multistream(entries));
}

// ---- stdin control -------------------------------------------------------------------------------------------------

/** Whether stdin is a terminal or a pipe (upstream reads commands from either); files and /dev/null are not. */
export function stdinAcceptsCommands(): boolean {
  if (process.stdin.isTTY) return true;
  try {
    const s = fstatSync(0);
    return s.isFIFO() || s.isSocket();
  } catch {
    return false;
  }
}

/**
 * Reads commands from a stream, one per line, as upstream's interactive control: `q`/`quit` to stop, `c`/`check`
 * to log the counters. Returns a function that stops listening (and lets the stream go).
 */
export function watchCommands(
  input: Readable,
  handlers: { quit: () => void; check: () => void; unknown?: (line: string) => void },
): () => void {
  const rl = createInterface({ input, terminal: false });
  rl.on('line', (line) => {
    const cmd = line.trim().toLowerCase();
    if (cmd === '') return;
    if (cmd === 'q' || cmd === 'quit') handlers.quit();
    else if (cmd === 'c' || cmd === 'check') handlers.check();
    else handlers.unknown?.(line.trim());
  });
  return () => {
    rl.close();
    input.pause();
    (input as Readable & { unref?: () => void }).unref?.();
  };
}

// ---- running ------------------------------------------------------------------------------------------------------

export interface RunOptions {
  /** Name shown in help and usage lines. Default the class name. */
  programName?: string;
  /** A description for `--help`. */
  description?: string;
  /** Text shown after the options in `--help` (examples). */
  helpText?: string;
  /** Stops the program (besides SIGINT/SIGTERM and `q`). */
  signal?: AbortSignal;
  /** Handle SIGINT/SIGTERM (default true). */
  handleSignals?: boolean;
  /**
   * Where `q`/`c` commands are read from. Default `process.stdin` when it is a terminal or a pipe; `false`: none.
   */
  stdin?: Readable | false;
  /** After a stop request, how long the graceful stop may take before the process exits with 130. Default 30 s. */
  graceMs?: number;
  /** Use this logger instead of building one from the logger arguments (tests). */
  logger?: Logger;
  /** Called with the program once it is built, before it runs (tests, embedding). */
  onStart?: (program: BaseDataFileStreamProcessor) => void;
}

function countersLine(program: BaseDataFileStreamProcessor): string {
  const s: StreamSummary = program.summary;
  return (
    `${s.messagesRead} message(s) read, ${s.filesCompleted} file(s) processed, ${s.filesFailed} failed, ` +
    `${s.filesSkipped} already done, ${s.messagesQuarantined} message(s) quarantined so far`
  );
}

function readConfig(value: string): IniDocument {
  return readIniFile(resolveConfigPath(value));
}

/**
 * Runs a processor or reproducer class as a program: parses `argv`, builds the logger (stderr, optional file and
 * log topic), opens the broker, constructs the class with `optionsFromCommandLine`, and runs it until SIGINT,
 * SIGTERM or `q`/`quit` on stdin (`c`/`check` logs the counters). A stop finishes in-flight files (or leaves them
 * for a restart), commits and flushes the registries; a second signal, or the grace period running out, exits
 * at once. Resolves to the exit code (0, or 1/2 for errors, with the error printed).
 */
export async function runFromCommandLine(
  cls: ProgramClass,
  argv: readonly string[] = process.argv.slice(2),
  run: RunOptions = {},
): Promise<number> {
  const className = cls.name;
  let args: ParsedArguments;
  try {
    const parser = getArgumentParser(cls, run.programName);
    if (run.description !== undefined) parser.description(run.description);
    if (run.helpText !== undefined) parser.addHelpText('after', run.helpText);
    args = parseCommandLine(parser, argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    return reportError(err);
  }
  let config: IniDocument | undefined;
  let logTopic: LogTopic | undefined;
  let logger: Logger;
  try {
    config = typeof args.config === 'string' ? readConfig(args.config) : undefined;
    const logSection = config?.sections.has('log') ? getSection(config, 'log') : {};
    if (typeof args.log_topic_name === 'string') {
      const max = logSection['max.logs.per.message'];
      logTopic = new LogTopic({
        topic: args.log_topic_name,
        programId: '',
        intervalSecs: typeof args.log_interval_secs === 'number' ? args.log_interval_secs : undefined,
        maxLogsPerMessage: max === undefined ? undefined : Math.max(1, Math.floor(Number(max)) || 65536),
      });
    }
    logger =
      run.logger ??
      createProgramLogger({
        className,
        streamLevel: args.logger_stream_level as string | undefined,
        format: args.log_format as 'pretty' | 'json' | undefined,
        filePath: args.logger_file_path as string | undefined,
        fileLevel: args.logger_file_level as string | undefined,
        logTopic,
        logTopicLevel: logSection['log.level'],
      });
  } catch (err) {
    return reportError(err);
  }
  if (logTopic !== undefined) {
    const lt = logTopic;
    lt.options.onError = (err) =>
      process.stderr.write(
        `${className}: could not send log lines to ${lt.options.topic}: ${describeError(err)}\n`,
      );
  }

  const stop = new AbortController();
  let graceTimer: NodeJS.Timeout | undefined;
  const requestStop = (reason: string): void => {
    if (stop.signal.aborted) return;
    stop.abort(new Error(reason));
    if (run.handleSignals !== false) {
      const grace = run.graceMs ?? 30_000;
      graceTimer = setTimeout(() => {
        logger.error(`graceful stop took longer than ${grace} ms: exiting`);
        process.exit(130);
      }, grace);
      graceTimer.unref();
    }
  };
  const signals =
    run.handleSignals === false ? undefined : gracefulShutdown({ logger, graceMs: run.graceMs });
  signals?.signal.addEventListener('abort', () => stop.abort(signals.signal.reason), { once: true });
  if (run.signal !== undefined) {
    if (run.signal.aborted) stop.abort(run.signal.reason);
    else run.signal.addEventListener('abort', () => stop.abort(run.signal!.reason), { once: true });
  }

  let transport: Transport | undefined;
  let stopCommands: (() => void) | undefined;
  let progress: NodeJS.Timeout | undefined;
  try {
    // a config file without [broker] (e.g. only [s3]) does not select Kafka
    const configForBroker = config?.sections.has('broker') ? (args.config as string) : undefined;
    transport = await openTransport({
      broker: args.broker as string | undefined,
      config: configForBroker,
      clientId: className,
    });
    const context: RunContext = { transport, logger, className, config };
    const program = new cls(optionsFromCommandLine(cls, args, context) as never);
    run.onStart?.(program);
    if (logTopic !== undefined) {
      logTopic.options.programId =
        (args.log_program_id as string | undefined) ?? defaultGroupId(className, program.outputDir);
      logTopic.start(transport.producer({ autoCreateTopics: true }));
    }
    const input = run.stdin === undefined ? (stdinAcceptsCommands() ? process.stdin : undefined) : run.stdin;
    if (input) {
      stopCommands = watchCommands(input, {
        quit: () => {
          logger.info('quit requested on stdin: stopping gracefully');
          requestStop('quit requested on stdin');
        },
        check: () => logger.info(countersLine(program)),
        unknown: (line) => logger.info(`unknown command ${JSON.stringify(line)}: type q (quit) or c (check)`),
      });
      logger.info('type q (quit) to stop, or c (check) to log the counters');
    }
    if (typeof args.update_seconds === 'number') {
      progress = setInterval(
        () => logger.info(`progress: ${countersLine(program)}`),
        args.update_seconds * 1000,
      );
      progress.unref();
    }
    await program.run(stop.signal);
    return 0;
  } catch (err) {
    logger.flush?.();
    return reportError(err);
  } finally {
    clearInterval(progress);
    stopCommands?.();
    await logTopic?.stop();
    await transport
      ?.close()
      .catch((err: unknown) => logger.warn(`closing the broker: ${describeError(err)}`));
    clearTimeout(graceTimer);
    signals?.dispose();
  }
}

// ---- loading a user's module (`sluice run FILE`) -------------------------------------------------------------------

const LIBRARY_CLASS_NAMES = new Set([
  'DataFileStreamProcessor',
  'DataFileStreamReproducer',
  'MetadataJSONReproducer',
]);

/**
 * Whether a value is a class extending `DataFileStreamProcessor` (not one of the library's own). A module loaded
 * as CommonJS (a .ts file outside a `"type": "module"` package) gets its own copy of sluice, so the base class is
 * also recognised by name.
 */
function isProgramClass(value: unknown): value is ProgramClass {
  if (typeof value !== 'function' || LIBRARY_CLASS_NAMES.has(value.name)) return false;
  if ((value as { prototype?: unknown }).prototype instanceof BaseDataFileStreamProcessor) return true;
  for (let p: unknown = Object.getPrototypeOf(value); typeof p === 'function'; p = Object.getPrototypeOf(p)) {
    if (p.name === 'DataFileStreamProcessor' && typeof (p.prototype as { run?: unknown })?.run === 'function')
      return true;
  }
  return false;
}

/**
 * Loads a TypeScript or JavaScript module and picks the program class in it: `className` when given, else the
 * default export when it is a processor/reproducer class, else the only exported one.
 */
export async function loadProgramClass(modulePath: string, className?: string): Promise<ProgramClass> {
  const full = resolve(modulePath);
  try {
    if (!statSync(full).isFile()) throw new Error('not a file');
  } catch {
    throw new SluiceError(
      'SLUICE_USAGE',
      `${modulePath} is not a file. Pass the path of a .ts or .js file exporting a DataFileStreamProcessor or DataFileStreamReproducer subclass.`,
    );
  }
  const mod = (await import(pathToFileURL(full).href)) as Record<string, unknown>;
  const candidates = Object.entries(mod).filter(([, v]) => isProgramClass(v)) as Array<
    [string, ProgramClass]
  >;
  if (className !== undefined) {
    const found = candidates.find(([k, v]) => k === className || v.name === className);
    if (found) return found[1];
    throw new SluiceError(
      'SLUICE_USAGE',
      `${modulePath} exports no processor or reproducer class named ${className} (it exports: ${candidates.map(([k]) => k).join(', ') || 'none'}).`,
    );
  }
  const dflt = candidates.find(([k]) => k === 'default');
  if (dflt) return dflt[1];
  const unique = [...new Set(candidates.map(([, v]) => v))];
  if (unique.length === 1) return unique[0]!;
  if (unique.length === 0) {
    throw new SluiceError(
      'SLUICE_USAGE',
      `${modulePath} exports no class extending DataFileStreamProcessor or DataFileStreamReproducer. Export one (export default class … extends MetadataJSONReproducer { … }).`,
    );
  }
  throw new SluiceError(
    'SLUICE_USAGE',
    `${modulePath} exports several program classes (${candidates.map(([k]) => k).join(', ')}). Pick one with --class NAME, or make it the default export.`,
  );
}

// ---- the statics, attached to the library classes ------------------------------------------------------------------

const processorStatics: RunnableStatics = {
  getCommandLineArguments: processorCommandLineArguments,
  getArgumentParser(this: ProgramClass, programName?: string): Command {
    return buildArgumentParser(getCommandLineArguments(this), programName ?? this.name);
  },
  optionsFromCommandLine(args: ParsedArguments, context: RunContext): DataFileStreamProcessorOptions {
    return standardOptionsFromCommandLine(args, context);
  },
  runFromCommandLine(this: ProgramClass, argv?: string[], options?: RunOptions): Promise<number> {
    return runFromCommandLine(this, argv, options);
  },
};

function attach(target: object, statics: Partial<RunnableStatics>): void {
  for (const [name, fn] of Object.entries(statics)) {
    // a class that defines its own wins
    if (!Object.hasOwn(target, name)) {
      Object.defineProperty(target, name, {
        value: fn,
        writable: true,
        configurable: true,
        enumerable: false,
      });
    }
  }
}

attach(BaseDataFileStreamProcessor, processorStatics);
attach(BaseDataFileStreamReproducer, { getCommandLineArguments: reproducerCommandLineArguments });

/** `DataFileStreamProcessor` with the `Runnable` statics (the same class as `./index.ts` exports). */
export const DataFileStreamProcessor = BaseDataFileStreamProcessor as typeof BaseDataFileStreamProcessor &
  RunnableStatics;
export type DataFileStreamProcessor = BaseDataFileStreamProcessor;
/** `DataFileStreamReproducer` with the `Runnable` statics. */
export const DataFileStreamReproducer = BaseDataFileStreamReproducer as typeof BaseDataFileStreamReproducer &
  RunnableStatics;
export type DataFileStreamReproducer = BaseDataFileStreamReproducer;
/** `MetadataJSONReproducer` with the `Runnable` statics. */
export const MetadataJSONReproducer = BaseMetadataJSONReproducer as typeof BaseMetadataJSONReproducer &
  RunnableStatics;
export type MetadataJSONReproducer = BaseMetadataJSONReproducer;

export type {
  DataFileStreamProcessorOptions,
  DownloadDataFile,
  Mutex,
} from './data-file-stream-processor.ts';
export { FileFailure } from './data-file-stream-processor.ts';
export { type DataFileStreamReproducerOptions, ReproducerMessage } from './data-file-stream-reproducer.ts';

/** The helpers as one object: `Runnable.runFromCommandLine(MyReproducer, argv)`. */
export const Runnable = {
  ARGUMENTS,
  getCommandLineArguments,
  getArgumentParser,
  parseCommandLine,
  optionsFromCommandLine,
  runFromCommandLine,
  loadProgramClass,
  processorCommandLineArguments,
  reproducerCommandLineArguments,
} as const;
