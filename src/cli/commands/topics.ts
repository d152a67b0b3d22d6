import type { Command } from 'commander';
import { addConnectionOptions, type GlobalOptions, intArg, table, withTransport } from '../common.ts';

export function registerTopicCommands(program: Command): void {
  const topics = program.command('topics').description('create, list, describe and delete topics');

  addConnectionOptions(
    topics
      .command('create <name>')
      .description('create a topic')
      .option('-p, --partitions <n>', 'number of partitions', intArg('--partitions', 1), 1)
      .option('--retention-ms <ms>', 'delete records older than this', intArg('--retention-ms'))
      .option(
        '--retention-bytes <bytes>',
        'keep about this many bytes per partition',
        intArg('--retention-bytes'),
      )
      .option('--if-not-exists', 'succeed quietly when the topic already exists')
      .addHelpText(
        'after',
        '\nExamples:\n  $ sluice topics create instrument_files --partitions 4\n' +
          '  $ sluice topics create heartbeats --retention-ms 86400000 --broker kafka://127.0.0.1:9092',
      ),
  ).action(
    async (
      name: string,
      o: GlobalOptions & {
        partitions: number;
        retentionMs?: number;
        retentionBytes?: number;
        ifNotExists?: boolean;
      },
    ) => {
      await withTransport(o, async (t) => {
        await t.createTopic(
          { name, partitions: o.partitions, retentionMs: o.retentionMs, retentionBytes: o.retentionBytes },
          { ifNotExists: o.ifNotExists === true },
        );
        process.stdout.write(
          `created topic ${name} (${o.partitions} partition${o.partitions === 1 ? '' : 's'})\n`,
        );
      });
    },
  );

  addConnectionOptions(
    topics
      .command('list')
      .description('list topics, one per line')
      .addHelpText('after', '\nExample:\n  $ sluice topics list --broker file:./.sluice/broker.db'),
  ).action(async (o: GlobalOptions) => {
    await withTransport(o, async (t) => {
      for (const name of await t.listTopics()) process.stdout.write(`${name}\n`);
    });
  });

  addConnectionOptions(
    topics
      .command('describe <name>')
      .description('show partitions with their first and next offsets, and retention')
      .option('--json', 'print JSON instead of a table')
      .addHelpText('after', '\nExample:\n  $ sluice topics describe instrument_files'),
  ).action(async (name: string, o: GlobalOptions & { json?: boolean }) => {
    await withTransport(o, async (t) => {
      const d = await t.describeTopic(name);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(d, null, 2)}\n`);
        return;
      }
      const extra = [
        d.retentionMs !== undefined ? `retention.ms=${d.retentionMs}` : '',
        d.retentionBytes !== undefined ? `retention.bytes=${d.retentionBytes}` : '',
      ].filter((s) => s !== '');
      process.stdout.write(
        `topic ${d.name}: ${d.partitions.length} partition${d.partitions.length === 1 ? '' : 's'}${extra.length ? `, ${extra.join(', ')}` : ''}\n`,
      );
      process.stdout.write(
        table([
          ['PARTITION', 'START', 'END', 'RECORDS'],
          ...d.partitions.map((p) => [p.partition, p.startOffset, p.endOffset, p.endOffset - p.startOffset]),
        ]),
      );
    });
  });

  addConnectionOptions(
    topics
      .command('delete <name>')
      .description('delete a topic and everything in it (and the committed offsets of groups on it)')
      .addHelpText('after', '\nExample:\n  $ sluice topics delete scratch'),
  ).action(async (name: string, o: GlobalOptions) => {
    await withTransport(o, async (t) => {
      await t.deleteTopic(name);
      process.stdout.write(`deleted topic ${name}\n`);
    });
  });
}
