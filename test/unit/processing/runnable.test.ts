import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CommanderError } from 'commander';
import CsvMetadataReproducer from '../../../examples/processors/csv-metadata-reproducer.ts';
import {
  InstrumentCsvMetadataReproducer as BuiltinCsvReproducer,
  extractCsvMetadata,
} from '../../../src/cli/commands/metadata-example.ts';
import { splitRunArgs } from '../../../src/cli/commands/run.ts';
import type { FileOutcome } from '../../../src/files/stream-handler.ts';
import * as processing from '../../../src/processing/index.ts';
import {
  createProgramLogger,
  DataFileStreamProcessor,
  DataFileStreamReproducer,
  formatUpstreamLogLine,
  getArgumentParser,
  LogTopic,
  loadProgramClass,
  logFilePath,
  parseCommandLine,
  type RunContext,
  Runnable,
  runFromCommandLine,
  standardOptionsFromCommandLine,
  watchCommands,
} from '../../../src/processing/runnable.ts';
import { createLogger } from '../../../src/runtime/logger.ts';
import { openEmbeddedTransport } from '../../../src/transport/embedded/index.ts';
import type { ProduceRecord, Producer, Transport } from '../../../src/transport/types.ts';
import { readN } from '../../conformance/suite.ts';
import { HashReproducer, publish, RecordingProcessor } from './helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'sluice-runnable-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => {
  const d = join(root, `c${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
};
const silent = createLogger({ level: 'silent' });
const optionNames = (cls: Parameters<typeof getArgumentParser>[0]): string[] =>
  getArgumentParser(cls).options.map((o) => o.long ?? '');

describe('Runnable: arguments', () => {
  it('gives processors and reproducers the upstream options, and keeps them in subclasses', () => {
    const proc = optionNames(RecordingProcessor);
    for (const flag of [
      '--broker',
      '--config',
      '--topic_name',
      '--n_threads',
      '--consumer_group_id',
      '--output_dir',
      '--mode',
      '--download_regex',
      '--update_seconds',
      '--heartbeat_topic_name',
      '--heartbeat_program_id',
      '--heartbeat_interval_secs',
      '--log_topic_name',
      '--log_program_id',
      '--log_interval_secs',
      '--logger_stream_level',
      '--logger_file_level',
      '--logger_file_path',
    ]) {
      assert.ok(proc.includes(flag), `processor lacks ${flag}`);
    }
    assert.ok(!proc.includes('--producer_topic_name'));
    const repro = optionNames(HashReproducer);
    for (const flag of [
      '--consumer_topic_name',
      '--producer_topic_name',
      '--n_consumer_threads',
      '--n_producer_threads',
      '--exactly_once',
      '--heartbeat_topic_name',
      '--output_dir',
    ]) {
      assert.ok(repro.includes(flag), `reproducer lacks ${flag}`);
    }
    // the example adds --instrument and keeps every inherited option
    const example = optionNames(CsvMetadataReproducer);
    assert.ok(example.includes('--instrument'));
    for (const flag of repro) assert.ok(example.includes(flag), `example lost ${flag}`);
  });

  it('statics work through super, and both class exports are the same runtime class', () => {
    assert.equal(DataFileStreamProcessor, processing.DataFileStreamProcessor);
    assert.equal(DataFileStreamReproducer, processing.DataFileStreamReproducer);
    const base = DataFileStreamReproducer.getCommandLineArguments();
    const mine = CsvMetadataReproducer.getCommandLineArguments();
    assert.deepEqual(mine.args.slice(0, base.args.length), base.args);
    assert.equal(mine.args.length, base.args.length + 1);
    assert.ok(mine.defaults.download_regex instanceof RegExp);
    assert.equal(typeof CsvMetadataReproducer.runFromCommandLine, 'function');
    // a class that does not go through the runnable exports still runs with the defaults of its kind
    assert.deepEqual(Runnable.getCommandLineArguments(HashReproducer), base);
  });

  it('parses underscore flags, applies default overrides, and rejects bad values', () => {
    const parser = getArgumentParser(CsvMetadataReproducer);
    const args = parseCommandLine(parser, [
      '--topic_name',
      'chunks',
      '--producer_topic_name',
      'meta',
      '--n_consumer_threads',
      '3',
      '--exactly_once',
      '--instrument',
      'xrd-1',
    ]);
    assert.equal(args.topic_name, 'chunks');
    assert.equal(args.producer_topic_name, 'meta');
    assert.equal(args.n_consumer_threads, 3);
    assert.equal(args.n_producer_threads, 2);
    assert.equal(args.exactly_once, true);
    assert.equal(args.instrument, 'xrd-1');
    assert.equal(args.mode, 'memory');
    assert.ok((args.download_regex as RegExp).test('a/b.CSV'));
    const quiet = { writeErr: () => {}, writeOut: () => {} };
    for (const bad of [
      ['--mode', 'tape'],
      ['--n_consumer_threads', '0'],
      ['--nope'],
      ['--download_regex', '('],
    ]) {
      const p = getArgumentParser(CsvMetadataReproducer).configureOutput(quiet);
      assert.throws(
        () => parseCommandLine(p, bad),
        (e: unknown) => e instanceof CommanderError && e.exitCode !== 0,
      );
    }
  });

  it('maps arguments to constructor options', async () => {
    const t = await openEmbeddedTransport({ path: join(fresh(), 'b.db') });
    const context: RunContext = { transport: t, logger: silent, className: 'X', config: undefined };
    const parse = (argv: string[]) => parseCommandLine(getArgumentParser(HashReproducer), argv);
    const o = standardOptionsFromCommandLine(
      parse([
        '--topic_name',
        'raw',
        '--producer_topic_name',
        'out',
        '--n_consumer_threads',
        '1',
        '--n_producer_threads',
        '4',
        '--heartbeat_topic_name',
        'hb',
        '--heartbeat_interval_secs',
        '5',
        '--consumer_group_id',
        'g1',
        '--mode',
        'disk',
      ]),
      context,
    );
    assert.equal(o.topic, 'raw');
    assert.equal(o.producerTopic, 'out');
    assert.equal(o.concurrency, 4);
    assert.deepEqual(o.heartbeat, { topic: 'hb', programId: undefined, intervalSecs: 5 });
    assert.equal(o.groupId, 'g1');
    assert.equal(o.mode, 'disk');
    assert.equal(o.exactlyOnce, false);
    assert.equal(o.autoCreateTopic, true);
    // --consumer_topic_name wins over --topic_name
    const o2 = standardOptionsFromCommandLine(
      parse(['--topic_name', 'a', '--consumer_topic_name', 'b', '--producer_topic_name', 'c']),
      context,
    );
    assert.equal(o2.topic, 'b');
    // results never go back into the chunk topic
    assert.throws(
      () => standardOptionsFromCommandLine(parse(['--topic_name', 'same']), context),
      /--producer_topic_name/,
    );
    await t.close();
  });
});

describe('Runnable: logs', () => {
  it('formats lines as upstream', () => {
    const t = new Date(2026, 2, 21, 12, 0, 5).getTime();
    assert.equal(formatUpstreamLogLine('MyRepro', 30, t, 'hello'), '[MyRepro 2026-03-21 12:00:05] hello');
    assert.equal(
      formatUpstreamLogLine('MyRepro', 40, t, 'careful'),
      '[MyRepro 2026-03-21 12:00:05] WARNING: careful',
    );
    assert.equal(formatUpstreamLogLine('MyRepro', 50, t, 'bad'), '[MyRepro 2026-03-21 12:00:05] ERROR: bad');
  });

  it('puts log files where upstream does', () => {
    assert.equal(logFilePath('/x/logs', 'P'), '/x/logs/P.log');
    assert.equal(logFilePath('/x/run.txt', 'P'), '/x/run.txt');
  });

  it('log topic: bounded buffer, {timestamp, messages} under <id>_log, final flush at stop', async () => {
    const sent: ProduceRecord[] = [];
    const producer = {
      send: async (r: ProduceRecord | ProduceRecord[]) => {
        sent.push(...(Array.isArray(r) ? r : [r]));
        return [];
      },
    } as unknown as Producer;
    const lt = new LogTopic({ topic: 'logs', programId: 'p1', intervalSecs: 3600, maxLogsPerMessage: 3 });
    lt.start(producer);
    await lt.flush();
    assert.equal(sent.length, 0, 'nothing to send, nothing sent');
    for (const line of ['a', 'b', 'c', 'd', 'e']) lt.push(line);
    assert.deepEqual(lt.pending, ['c', 'd', 'e']);
    await lt.flush();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.key, 'p1_log');
    const v = JSON.parse(String(sent[0]!.value)) as { timestamp: number; messages: string[] };
    assert.equal(typeof v.timestamp, 'number');
    assert.ok(Math.abs(v.timestamp - Date.now() / 1000) < 3600);
    assert.match(v.messages[0]!, /older log line\(s\) were dropped/);
    assert.deepEqual(v.messages.slice(1), ['c', 'd', 'e']);
    lt.push('last');
    await lt.stop();
    assert.equal(sent.length, 2);
    assert.deepEqual((JSON.parse(String(sent[1]!.value)) as { messages: string[] }).messages, ['last']);
  });

  it('a program logger feeds stderr, the log file and the log topic at their own levels', () => {
    const dir = fresh();
    const stderr: string[] = [];
    const lt = new LogTopic({ topic: 'logs', programId: 'p' });
    const log = createProgramLogger({
      className: 'Prog',
      streamLevel: 'error',
      filePath: join(dir, 'logs'),
      fileLevel: 'warning',
      logTopic: lt,
      logTopicLevel: 'debug',
      stderr: { write: (s: string) => void stderr.push(s) },
    });
    log.debug('dbg');
    log.info('inf');
    log.warn('wrn');
    log.error('err');
    assert.deepEqual(
      stderr.map((s) => (JSON.parse(s) as { msg: string }).msg),
      ['err'],
    );
    const file = readFileSync(join(dir, 'logs', 'Prog.log'), 'utf8')
      .trim()
      .split('\n');
    assert.equal(file.length, 2);
    assert.match(file[0]!, /^\[Prog \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] WARNING: wrn$/);
    assert.match(file[1]!, /ERROR: err$/);
    assert.deepEqual(
      lt.pending.map((l) => l.replace(/^\[Prog [^\]]+\] /, '')),
      ['dbg', 'inf', 'WARNING: wrn', 'ERROR: err'],
    );
  });

  it('stdin commands: q/quit stop, c/check report, anything else is named', async () => {
    const input = new PassThrough();
    const seen: string[] = [];
    const stop = watchCommands(input, {
      quit: () => seen.push('quit'),
      check: () => seen.push('check'),
      unknown: (l) => seen.push(`? ${l}`),
    });
    input.write('c\n  check \nhelp\n\nQ\nquit\n');
    await new Promise((r) => setImmediate(r));
    stop();
    input.write('q\n');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, ['check', 'check', '? help', 'quit', 'quit']);
  });
});

describe('Runnable: loading and running a program', () => {
  const src = pathToFileURL(
    join(import.meta.dirname, '..', '..', '..', 'src', 'processing', 'runnable.ts'),
  ).href;
  const body = (name: string) =>
    `export class ${name} extends DataFileStreamProcessor { processDownloadedDataFile() {} }\n`;
  const write = (dir: string, file: string, text: string): string => {
    const p = join(dir, file);
    writeFileSync(p, `import { DataFileStreamProcessor } from '${src}';\n${text}`);
    return p;
  };

  it('picks the default export, the only export, or --class; explains what it cannot pick', async () => {
    const dir = fresh();
    const dflt = write(dir, 'dflt.ts', `${body('A')}export default class B extends A {}\n`);
    assert.equal((await loadProgramClass(dflt)).name, 'B');
    const only = write(dir, 'only.ts', `${body('Only')}export const notAClass = 1;\n`);
    assert.equal((await loadProgramClass(only)).name, 'Only');
    const two = write(dir, 'two.ts', body('One') + body('Two'));
    await assert.rejects(loadProgramClass(two), /several program classes \(One, Two\).*--class/);
    assert.equal((await loadProgramClass(two, 'Two')).name, 'Two');
    await assert.rejects(loadProgramClass(two, 'Three'), /no processor or reproducer class named Three/);
    const none = write(dir, 'none.ts', 'export const x = DataFileStreamProcessor;\n');
    await assert.rejects(loadProgramClass(none), /exports no class extending/);
    await assert.rejects(loadProgramClass(join(dir, 'missing.ts')), /is not a file/);
  });

  it('splits `sluice run` arguments: its own options only before the file', () => {
    assert.deepEqual(splitRunArgs(['--class', 'X', 'f.ts', '--class', 'Y', '--help']), {
      className: 'X',
      help: false,
      module: 'f.ts',
      rest: ['--class', 'Y', '--help'],
    });
    assert.deepEqual(splitRunArgs(['--help']), {
      className: undefined,
      help: true,
      module: undefined,
      rest: [],
    });
    assert.deepEqual(splitRunArgs(['--', '-odd.ts', '--', 'x']).rest, ['--', 'x']);
  });

  it(
    'runFromCommandLine runs the example reproducer end to end, with log and heartbeat topics',
    { timeout: 60_000 },
    async () => {
      const dir = fresh();
      const db = join(dir, 'b.db');
      let t: Transport = await openEmbeddedTransport({ path: db });
      const csv = (rows: number) =>
        Buffer.from(
          `# operator: ada\ntime_s,temp_c\n${Array.from({ length: rows }, (_, i) => `${i},2${i}`).join('\n')}\n`,
        );
      await publish(t, 'csv-chunks', [
        { subdir: 'furnace', filename: 'run1.csv', data: csv(3) },
        { subdir: '', filename: 'run2.csv', data: csv(5) },
        { subdir: 'furnace', filename: 'image.raw', data: Buffer.alloc(3000, 7) },
      ]);
      await t.close();
      const stop = new AbortController();
      const outcomes: FileOutcome[] = [];
      const code = await CsvMetadataReproducer.runFromCommandLine(
        [
          '--broker',
          `file:${db}`,
          '--topic_name',
          'csv-chunks',
          '--producer_topic_name',
          'csv-metadata',
          '--output_dir',
          join(dir, 'out'),
          '--instrument',
          'furnace-3',
          '--log_topic_name',
          'prog-logs',
          '--heartbeat_topic_name',
          'hb',
          '--logger_stream_level',
          'silent',
        ],
        {
          handleSignals: false,
          stdin: false,
          signal: stop.signal,
          onStart: (p) =>
            p.on('file', (o: FileOutcome) => {
              outcomes.push(o);
              if (outcomes.length === 2) stop.abort();
            }),
        },
      );
      assert.equal(code, 0);
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ['completed', 'completed'],
      );
      t = await openEmbeddedTransport({ path: db });
      const results = await readN(t.consumer({ groupId: 'r', topics: ['csv-metadata'] }), 2);
      const byKey = new Map(results.map((r) => [r.key!.toString(), JSON.parse(r.value!.toString())]));
      assert.deepEqual(byKey.get('furnace_run1.csv_chunk_processing_result'), {
        instrument: 'furnace-3',
        file: 'furnace/run1.csv',
        bytes: csv(3).length,
        metadata: { operator: 'ada' },
        columns: ['time_s', 'temp_c'],
        rows: 3,
        time_s_range: [0, 2],
      });
      assert.equal(byKey.get('_run2.csv_chunk_processing_result').rows, 5);
      const [log] = await readN(t.consumer({ groupId: 'r', topics: ['prog-logs'] }), 1);
      assert.match(log!.key!.toString(), /^CsvMetadataReproducer_[0-9a-f]{12}_log$/);
      const lv = JSON.parse(log!.value!.toString()) as { timestamp: number; messages: string[] };
      assert.ok(
        lv.messages.some((m) => /^\[CsvMetadataReproducer [^\]]+\] rebuilt furnace\/run1\.csv/.test(m)),
      );
      const beats = await readN(t.consumer({ groupId: 'r', topics: ['hb'] }), 2);
      const total = beats
        .map((b) => JSON.parse(b.value!.toString()) as Record<string, number>)
        .reduce((s, b) => s + b.n_messages_produced!, 0);
      assert.equal(total, 2);
      await t.close();
    },
  );

  it('returns a usage exit code for bad arguments and configuration', async () => {
    const dir = fresh();
    const quiet = { programName: 'x', handleSignals: false, stdin: false as const, logger: silent };
    const realWrite = process.stderr.write;
    const realOut = process.stdout.write;
    const errors: string[] = [];
    const out: string[] = [];
    process.stderr.write = ((s: string) => errors.push(String(s)) > 0) as typeof process.stderr.write;
    process.stdout.write = ((s: string) => out.push(String(s)) > 0) as typeof process.stdout.write;
    try {
      assert.equal(await runFromCommandLine(HashReproducer, ['--mode', 'tape'], quiet), 1);
      assert.equal(
        await runFromCommandLine(
          HashReproducer,
          ['--broker', `file:${join(dir, 'b.db')}`, '--topic_name', 'same', '--producer_topic_name', 'same'],
          quiet,
        ),
        2,
      );
      assert.equal(
        await runFromCommandLine(HashReproducer, ['--config', join(dir, 'missing.config')], quiet),
        1,
      );
      assert.equal(await runFromCommandLine(HashReproducer, ['--help'], quiet), 0);
    } finally {
      process.stderr.write = realWrite;
      process.stdout.write = realOut;
    }
    assert.match(out.join(''), /Usage: x \[options\][\s\S]*--exactly_once/);
    assert.ok(errors.some((e) => /--producer_topic_name/.test(e)));
    assert.ok(errors.some((e) => /missing\.config/.test(e)));
  });
});

describe('built-in metadata example', () => {
  it('reads the preamble, the table and statistics of instrument CSV files', () => {
    const xrd = [
      '[Measurement conditions]',
      'Sample,Ti-6Al-4V',
      'Wavelength,1.5406,,',
      'Operator,',
      '[Scan points]',
      'Angle,Intensity',
      '20.0,100',
      '20.5,300',
      '21.0,200',
      '',
    ].join('\r\n');
    assert.deepEqual(extractCsvMetadata(xrd), {
      metadata: { Sample: 'Ti-6Al-4V', Wavelength: ['1.5406', null, null], Operator: null },
      columns: ['Angle', 'Intensity'],
      n_rows: 3,
      statistics: { Angle: { min: 20, max: 21, mean: 20.5 }, Intensity: { min: 100, max: 300, mean: 200 } },
    });
    const sensors = extractCsvMetadata('# site: lab 2\ntime;label;v\n0;a;1\n1;b;3\n', ';');
    assert.deepEqual(sensors.metadata, { site: 'lab 2' });
    assert.deepEqual(sensors.columns, ['time', 'label', 'v']);
    assert.deepEqual(Object.keys(sensors.statistics), ['time', 'v']);
    assert.deepEqual(extractCsvMetadata('just text\n'), {
      metadata: {},
      columns: [],
      n_rows: 0,
      statistics: {},
    });
    assert.deepEqual(extractCsvMetadata('1,2\n3,4\n').columns, ['column_1', 'column_2']);
  });

  it('only picks CSV files by default and has a --delimiter option', () => {
    const args = parseCommandLine(getArgumentParser(BuiltinCsvReproducer), ['--delimiter', ';']);
    assert.equal(args.delimiter, ';');
    assert.ok((args.download_regex as RegExp).test('x/y.csv'));
    assert.ok(!(args.download_regex as RegExp).test('x/y.raw'));
  });
});
