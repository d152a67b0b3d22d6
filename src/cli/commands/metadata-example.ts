import type { Command } from 'commander';
import type { DownloadDataFile } from '../../files/download-data-file.ts';
import {
  type CommandLineArguments,
  type DataFileStreamReproducerOptions,
  MetadataJSONReproducer,
  type ParsedArguments,
  type RunContext,
} from '../../processing/runnable.ts';
import { argsAfterCommand, exitWith } from './run.ts';

/** What `extractCsvMetadata` finds in an instrument CSV file. */
export interface CsvMetadata {
  /** `key,value` (or `key: value`) lines before the data table; `[Section]` lines are skipped, as upstream's XRD example. */
  metadata: Record<string, string | null | Array<string | null>>;
  columns: string[];
  n_rows: number;
  /** min, max and mean of every column whose values are all numbers. */
  statistics: Record<string, { min: number; max: number; mean: number }>;
}

const isNumber = (s: string): boolean => s.trim() !== '' && Number.isFinite(Number(s));

/**
 * Reads an instrument CSV file: a preamble of `key,value` lines (optionally grouped under `[Section]` lines, as in
 * XRD exports), then a table: a header of column names followed by rows with at least one numeric field. The
 * table is found from the end of the file, so a preamble line with as many fields as the table is not mistaken for
 * its header.
 */
export function extractCsvMetadata(text: string, delimiter = ','): CsvMetadata {
  const lines = text.split(/\r\n|\n|\r/).map((l) => l.trim());
  while (lines.length > 0 && lines.at(-1) === '') lines.pop();
  const split = (l: string): string[] => l.split(delimiter).map((f) => f.trim());
  // walk back over the data rows: same field count, at least one number
  let end = lines.length;
  let width = 0;
  let start = end;
  for (let i = end - 1; i >= 0; i--) {
    const f = split(lines[i]!);
    if (width === 0) {
      if (f.length < 2 || !f.some(isNumber)) break;
      width = f.length;
    }
    if (f.length !== width || !f.some(isNumber)) break;
    start = i;
  }
  let columns: string[] = [];
  let preambleEnd = start;
  if (width > 0 && start > 0) {
    const header = split(lines[start - 1]!);
    if (header.length === width && !header.some(isNumber)) {
      columns = header;
      preambleEnd = start - 1;
    }
  }
  if (width > 0 && columns.length === 0) columns = Array.from({ length: width }, (_, i) => `column_${i + 1}`);
  if (width === 0) {
    end = lines.length;
    start = end;
    preambleEnd = end;
  }
  const metadata: CsvMetadata['metadata'] = {};
  for (const line of lines.slice(0, preambleEnd)) {
    if (line === '' || /^\[.*\]$/.test(line)) continue;
    const bare = line.replace(/^#\s*/, '');
    const f = split(bare);
    if (f.length >= 2 && f[0] !== '') {
      const values = f.slice(1).map((v) => (v === '' ? null : v));
      metadata[f[0]!] = values.length === 1 ? values[0]! : values;
    } else {
      const m = /^([^:=]+)[:=]\s*(.*)$/.exec(bare);
      if (m) metadata[m[1]!.trim()] = m[2] === '' ? null : m[2]!;
    }
  }
  const rows = lines.slice(start, end).filter((l) => l !== '');
  const statistics: CsvMetadata['statistics'] = {};
  columns.forEach((name, c) => {
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    let sum = 0;
    for (const row of rows) {
      const v = split(row)[c] ?? '';
      if (!isNumber(v)) return;
      const n = Number(v);
      min = Math.min(min, n);
      max = Math.max(max, n);
      sum += n;
    }
    if (rows.length > 0) statistics[name] = { min, max, mean: sum / rows.length };
  });
  return { metadata, columns, n_rows: rows.length, statistics };
}

export interface CsvMetadataOptions extends DataFileStreamReproducerOptions {
  /** Field separator. Default `,`. */
  delimiter?: string;
}

/**
 * The built-in metadata example: a `MetadataJSONReproducer` that sends, for every `.csv` file rebuilt from the
 * chunk topic, the JSON of its preamble metadata, column names, row count and per-column statistics.
 */
export class InstrumentCsvMetadataReproducer extends MetadataJSONReproducer {
  static override getCommandLineArguments(): CommandLineArguments {
    const { args, defaults } = MetadataJSONReproducer.getCommandLineArguments();
    return {
      args: [
        ...args,
        { name: 'delimiter', valueName: 'char', help: 'field separator of the CSV files', default: ',' },
      ],
      // only CSV files, unless --download_regex says otherwise
      defaults: { ...defaults, download_regex: /\.csv$/i },
    };
  }

  static override optionsFromCommandLine(args: ParsedArguments, context: RunContext): CsvMetadataOptions {
    return {
      ...(MetadataJSONReproducer.optionsFromCommandLine(args, context) as DataFileStreamReproducerOptions),
      delimiter: args.delimiter as string,
    };
  }

  readonly delimiter: string;

  constructor(options: CsvMetadataOptions) {
    super(options);
    this.delimiter = options.delimiter ?? ',';
  }

  protected override getMetadataDictForFile(file: DownloadDataFile): Record<string, unknown> {
    const found = extractCsvMetadata(file.bytestring!.toString('utf8'), this.delimiter);
    if (found.columns.length === 0) {
      this.log.warn(
        { file: file.relativeFilepath },
        `${file.relativeFilepath} has no data table to describe`,
      );
    }
    return {
      filename: file.filename,
      relative_filepath: file.relativeFilepath,
      bytes: file.bytestring!.length,
      ...found,
      metadata_message_generated_at: new Date().toISOString(),
    };
  }
}

export function registerMetadataExampleCommand(program: Command): void {
  program
    .command('metadata-example')
    .description(
      'reproduce the metadata of every CSV file rebuilt from a topic as JSON to another topic ' +
        '(a MetadataJSONReproducer; --help for its options)',
    )
    .argument('[args...]')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (_a: string[], _o: unknown, cmd: Command) => {
      exitWith(
        await InstrumentCsvMetadataReproducer.runFromCommandLine(argsAfterCommand(cmd), {
          programName: 'sluice metadata-example',
          description:
            'For every CSV file rebuilt from --topic_name, sends one JSON message to --producer_topic_name: its ' +
            'preamble metadata (key,value lines), column names, row count and min/max/mean of numeric columns. ' +
            'Keys are OpenMSIStream\'s "<subdir>_<file>_chunk_processing_result".',
          helpText: `
Stop with Ctrl-C, SIGTERM or q on stdin (c logs the counters). A restart with the same output directory (and so
the same default consumer group) re-processes exactly the files that failed or were unfinished.

Examples:
  $ sluice upload-file furnace-run1.csv --topic_name csv-chunks
  $ sluice metadata-example --topic_name csv-chunks --producer_topic_name csv-metadata
  $ sluice consume csv-metadata -e`,
        }),
      );
    });
}
