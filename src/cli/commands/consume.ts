import { randomUUID } from 'node:crypto';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { gracefulShutdown } from '../../runtime/shutdown.ts';
import type { ConsumedRecord, StartPosition } from '../../transport/types.ts';
import { addConnectionOptions, type GlobalOptions, intArg, loggerFor, withTransport } from '../common.ts';

interface ConsumeOptions extends GlobalOptions {
  group?: string;
  offset: string;
  count?: number;
  exit?: boolean;
  format: 'value' | 'kv' | 'json';
  keyDelimiter: string;
}

function offsetArg(v: string): string {
  if (['beginning', 'end', 'stored'].includes(v) || /^\d+$/.test(v)) return v;
  throw new InvalidArgumentError('use beginning, end, stored, or an offset number.');
}

function text(b: Buffer | null): string {
  return b === null ? '' : b.toString('utf8');
}

/** Renders a record for stdout. JSON keeps bytes that are not UTF-8 exact, as base64. */
export function formatRecord(
  r: ConsumedRecord,
  format: ConsumeOptions['format'],
  keyDelimiter = '\t',
): string {
  if (format === 'value') return `${text(r.value)}\n`;
  if (format === 'kv') return `${text(r.key)}${keyDelimiter}${text(r.value)}\n`;
  const enc = (b: Buffer | null): { [k: string]: string | null } => {
    if (b === null) return { text: null };
    const s = b.toString('utf8');
    return Buffer.from(s, 'utf8').equals(b) ? { text: s } : { base64: b.toString('base64') };
  };
  const k = enc(r.key);
  const v = enc(r.value);
  return `${JSON.stringify({
    topic: r.topic,
    partition: r.partition,
    offset: r.offset,
    timestamp: r.timestamp,
    key: k.text ?? k.base64 ?? null,
    ...(k.base64 !== undefined ? { keyEncoding: 'base64' } : {}),
    value: v.text ?? v.base64 ?? null,
    ...(v.base64 !== undefined ? { valueEncoding: 'base64' } : {}),
    headers: Object.fromEntries(Object.entries(r.headers).map(([hk, hv]) => [hk, hv.toString('utf8')])),
  })}\n`;
}

export function registerConsumeCommand(program: Command): void {
  addConnectionOptions(
    program
      .command('consume <topic>')
      .description('print records of a topic to stdout (like kcat -C)')
      .option(
        '-g, --group <id>',
        'consume as this group: start after its commits, and commit what was printed',
      )
      .option(
        '-o, --offset <where>',
        'without a group: beginning, end, or an offset (every partition)',
        offsetArg,
        'beginning',
      )
      .option('-c, --count <n>', 'exit after this many records', intArg('--count', 1))
      .option('-e, --exit', 'exit once the end of every partition (as it was at start) is reached')
      .addOption(
        new Option('-F, --format <format>', 'value: the value; kv: key, tab, value; json: everything')
          .choices(['value', 'kv', 'json'])
          .default('value'),
      )
      .option('--key-delimiter <delim>', 'separator for --format kv', '\t')
      .addHelpText(
        'after',
        `
Without --group, sluice reads as a throw-away group and commits nothing. With --group, it starts after the
group's committed offsets (from the beginning if none) and commits each batch once it is printed, so a
restart continues where it stopped (at-least-once). Ctrl-C stops cleanly.

Examples:
  $ sluice consume readings -e                       # everything so far, then exit
  $ sluice consume readings -o end                   # only new records, until Ctrl-C
  $ sluice consume readings -g dashboard -F json     # as group "dashboard", JSON lines
  $ sluice consume readings -F kv -c 10 --broker kafka://127.0.0.1:9092`,
      ),
  ).action(async (topic: string, o: ConsumeOptions) => {
    const log = loggerFor('consume', o);
    const { signal, dispose } = gracefulShutdown({ logger: log, graceMs: 10_000 });
    try {
      await withTransport(o, async (t) => {
        const described = await t.describeTopic(topic);
        let start: StartPosition = 'committed';
        if (o.group === undefined) {
          if (o.offset === 'end') start = 'latest';
          else if (o.offset === 'beginning' || o.offset === 'stored') start = 'earliest';
          else {
            const at = Number(o.offset);
            start = {
              offsets: described.partitions.map((p) => ({ topic, partition: p.partition, offset: at })),
            };
          }
        }
        const consumer = t.consumer({
          groupId: o.group ?? `sluice-consume-${randomUUID()}`,
          topics: [topic],
          start,
        });
        const ends = new Map(described.partitions.map((p) => [p.partition, p.endOffset]));
        const positions = new Map<number, number>();
        const done = (): boolean =>
          o.exit === true &&
          consumer.assignment().length === described.partitions.length &&
          [...ends].every(
            ([p, end]) => end === 0 || (positions.get(p) ?? -1) >= end - 1 || positionAtStart(p, end),
          );
        // a partition whose records start past its end (all deleted) has nothing to wait for
        const positionAtStart = (p: number, end: number): boolean =>
          described.partitions.find((x) => x.partition === p)!.startOffset >= end;
        signal.addEventListener('abort', () => void consumer.close());
        let printed = 0;
        await consumer.waitForAssignment(30_000);
        while (!signal.aborted && !done()) {
          const batch = await consumer.poll({ timeoutMs: 500 });
          let out = '';
          const printedUpTo = new Map<number, number>();
          for (const r of batch) {
            out += formatRecord(r, o.format, o.keyDelimiter);
            positions.set(r.partition, r.offset);
            printedUpTo.set(r.partition, r.offset + 1);
            printed += 1;
            if (o.count !== undefined && printed >= o.count) break;
          }
          if (out !== '' && !process.stdout.write(out))
            await new Promise((r) => process.stdout.once('drain', r));
          if (o.group !== undefined && printedUpTo.size > 0) {
            // commit exactly what was printed (with --count, the rest of the batch stays for next time)
            await consumer.commit(
              [...printedUpTo].map(([partition, offset]) => ({ topic, partition, offset })),
            );
          }
          if (o.count !== undefined && printed >= o.count) break;
        }
        await consumer.close();
        log.info(
          { topic, records: printed },
          `consumed ${printed} record${printed === 1 ? '' : 's'} from ${topic}`,
        );
      });
    } finally {
      dispose();
    }
  });
}
