import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { type Command, InvalidArgumentError } from 'commander';
import { SluiceError } from '../../errors.ts';
import type { ProduceRecord } from '../../transport/types.ts';
import { addConnectionOptions, type GlobalOptions, intArg, loggerFor, withTransport } from '../common.ts';

interface ProduceOptions extends GlobalOptions {
  key?: string;
  keyDelimiter?: string;
  partition?: number;
  header: string[];
  file?: string[];
  autoCreate?: boolean;
  batch: number;
}

function header(value: string, previous: string[]): string[] {
  if (!value.includes('=')) throw new InvalidArgumentError('headers are written name=value.');
  return [...previous, value];
}

export function registerProduceCommand(program: Command): void {
  addConnectionOptions(
    program
      .command('produce <topic>')
      .description('send records to a topic: one per line of stdin, or one per file with --file')
      .option('-k, --key <key>', 'the key of every record')
      .option('-K, --key-delimiter <delim>', 'split each line at the first <delim> into key and value')
      .option(
        '-p, --partition <n>',
        'send everything to this partition (default: by key, round-robin without)',
        intArg('--partition'),
      )
      .option('-H, --header <name=value>', 'add a header to every record (repeatable)', header, [])
      .option('-f, --file <paths...>', 'send each file as one record (key: the file name, unless --key)')
      .option('--auto-create', 'create the topic if it does not exist')
      .option('--batch <n>', 'records per send while reading stdin', intArg('--batch', 1), 500)
      .addHelpText(
        'after',
        `
Each line of stdin becomes one record (without its newline). Keys decide the partition exactly as Kafka's
Java client does (murmur2), so a key lands on the same partition whichever client wrote it.

Examples:
  $ printf 'a\\nb\\nc\\n' | sluice produce readings --auto-create
  $ printf 'sensor-1:21.5\\nsensor-2:19.0\\n' | sluice produce readings -K :
  $ sluice produce raw-files --file scan-001.tif scan-002.tif --broker kafka://127.0.0.1:9092`,
      ),
  ).action(async (topic: string, o: ProduceOptions) => {
    const log = loggerFor('produce', o);
    const headers = Object.fromEntries(
      o.header.map((h) => {
        const i = h.indexOf('=');
        return [h.slice(0, i), h.slice(i + 1)];
      }),
    );
    const base = (value: Buffer | string, key: string | undefined): ProduceRecord => ({
      topic,
      key: key ?? null,
      value,
      headers: o.header.length > 0 ? headers : undefined,
      partition: o.partition,
    });
    await withTransport(o, async (t) => {
      const producer = t.producer({ autoCreateTopics: o.autoCreate === true });
      let sent = 0;
      let bytes = 0;
      if (o.file !== undefined) {
        for (const path of o.file) {
          const data = await readFile(path).catch((err: unknown) => {
            throw new SluiceError(
              'SLUICE_IO',
              `Cannot read ${path} (${String(err)}). Check the path and its permissions.`,
            );
          });
          const [m] = await producer.send(base(data, o.key ?? basename(path)));
          log.info(
            { file: path, bytes: data.length, partition: m!.partition, offset: m!.offset },
            `sent ${path}`,
          );
          sent += 1;
          bytes += data.length;
        }
      } else {
        let batch: ProduceRecord[] = [];
        const flush = async (): Promise<void> => {
          if (batch.length === 0) return;
          const b = batch;
          batch = [];
          await producer.send(b);
          sent += b.length;
        };
        for await (const line of createInterface({
          input: process.stdin,
          crlfDelay: Number.POSITIVE_INFINITY,
        })) {
          let key = o.key;
          let value = line;
          if (o.keyDelimiter !== undefined) {
            const i = line.indexOf(o.keyDelimiter);
            if (i >= 0) {
              key = line.slice(0, i);
              value = line.slice(i + o.keyDelimiter.length);
            }
          }
          bytes += Buffer.byteLength(value);
          batch.push(base(value, key));
          if (batch.length >= o.batch) await flush();
        }
        await flush();
      }
      await producer.close();
      log.info(
        { topic, records: sent, bytes },
        `produced ${sent} record${sent === 1 ? '' : 's'} to ${topic}`,
      );
    });
  });
}
