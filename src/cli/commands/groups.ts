import type { Command } from 'commander';
import { addConnectionOptions, type GlobalOptions, table, withTransport } from '../common.ts';

export function registerGroupCommands(program: Command): void {
  const groups = program
    .command('groups')
    .description('list consumer groups, and show their offsets and lag');

  addConnectionOptions(
    groups
      .command('list')
      .description('list consumer groups')
      .addHelpText('after', '\nExample:\n  $ sluice groups list'),
  ).action(async (o: GlobalOptions) => {
    await withTransport(o, async (t) => {
      for (const g of await t.listGroups()) process.stdout.write(`${g}\n`);
    });
  });

  addConnectionOptions(
    groups
      .command('describe <group>')
      .description('committed offset, end offset and lag per partition, and the live members')
      .option('--json', 'print JSON instead of a table')
      .addHelpText('after', '\nExample:\n  $ sluice groups describe sluice-download-out'),
  ).action(async (group: string, o: GlobalOptions & { json?: boolean }) => {
    await withTransport(o, async (t) => {
      const d = await t.describeGroup(group);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(d, null, 2)}\n`);
        return;
      }
      const owner = new Map<string, string>();
      for (const m of d.members)
        for (const a of m.assignment) owner.set(`${a.topic}:${a.partition}`, m.memberId);
      process.stdout.write(
        `group ${d.groupId}: ${d.members.length} live member${d.members.length === 1 ? '' : 's'}, total lag ${d.offsets.reduce((s, x) => s + x.lag, 0)}\n`,
      );
      process.stdout.write(
        table([
          ['TOPIC', 'PARTITION', 'COMMITTED', 'END', 'LAG', 'MEMBER'],
          ...d.offsets.map((x) => [
            x.topic,
            x.partition,
            x.committed,
            x.endOffset,
            x.lag,
            owner.get(`${x.topic}:${x.partition}`),
          ]),
        ]),
      );
    });
  });
}
