/**
 * A MetadataJSONReproducer written as your own program: for every CSV file rebuilt from a chunk topic, it sends
 * one JSON message with the file's metadata to another topic. See README.md beside this file.
 *
 * Run it with sluice (TypeScript works as is):
 *   ./sluice run examples/processors/csv-metadata-reproducer.ts --topic_name csv-chunks --producer_topic_name csv-metadata
 * or on its own, the way `python -m` runs an OpenMSIStream class (the block at the end of this file):
 *   node --import tsx examples/processors/csv-metadata-reproducer.ts --topic_name csv-chunks --producer_topic_name csv-metadata
 *
 * The CSV files it expects: optional `# key: value` comment lines, then a header of column names, then rows.
 */
import {
  type CommandLineArguments,
  type DataFileStreamProcessorOptions,
  type DataFileStreamReproducerOptions,
  type DownloadDataFile,
  MetadataJSONReproducer,
  type ParsedArguments,
  type RunContext,
} from '../../src/processing/runnable.ts';

export interface CsvMetadataOptions extends DataFileStreamReproducerOptions {
  /** Added to every metadata message. */
  instrument?: string;
}

export default class CsvMetadataReproducer extends MetadataJSONReproducer {
  /** The inherited options (broker, topics, output dir, mode, heartbeats, ...) plus this program's own. */
  static override getCommandLineArguments(): CommandLineArguments {
    const { args, defaults } = super.getCommandLineArguments();
    return {
      args: [
        ...args,
        {
          name: 'instrument',
          valueName: 'name',
          help: 'instrument name put in every message',
          default: 'unknown',
        },
      ],
      // a different default for an inherited option: only .csv files
      defaults: { ...defaults, download_regex: /\.csv$/i },
    };
  }

  /** The inherited constructor options plus this program's own. */
  static override optionsFromCommandLine(
    args: ParsedArguments,
    context: RunContext,
  ): DataFileStreamProcessorOptions {
    return {
      ...super.optionsFromCommandLine(args, context),
      instrument: args.instrument,
    } as CsvMetadataOptions;
  }

  readonly instrument: string;

  constructor(options: CsvMetadataOptions) {
    super(options);
    this.instrument = options.instrument ?? 'unknown';
  }

  /** The metadata of one file. Throwing (or returning null) registers the file failed; a restart retries it. */
  protected override getMetadataDictForFile(file: DownloadDataFile): Record<string, unknown> {
    const lines = file
      .bytestring!.toString('utf8')
      .split(/\r?\n/)
      .filter((l) => l.trim() !== '');
    const metadata: Record<string, string> = {};
    while (lines[0]?.startsWith('#')) {
      const m = /^#\s*([^:]+):\s*(.*)$/.exec(lines.shift()!);
      if (m) metadata[m[1]!.trim()] = m[2]!.trim();
    }
    const header = lines.shift();
    if (header === undefined) throw new Error(`${file.relativeFilepath} has no header line`);
    const columns = header.split(',').map((c) => c.trim());
    const first = lines[0]?.split(',')[0];
    const last = lines.at(-1)?.split(',')[0];
    return {
      instrument: this.instrument,
      file: file.relativeFilepath,
      bytes: file.bytestring!.length,
      metadata,
      columns,
      rows: lines.length,
      [`${columns[0]}_range`]: lines.length > 0 ? [Number(first), Number(last)] : null,
    };
  }
}

// run as a program when executed directly (not when `sluice run` imports it)
if (import.meta.main) process.exitCode = await CsvMetadataReproducer.runFromCommandLine();
