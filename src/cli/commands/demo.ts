import type { Command } from 'commander';
import { addConnectionOptions, type GlobalOptions, loggerFor, withTransport } from '../common.ts';

export function registerDemoCommand(program: Command): void {
  addConnectionOptions(
    program
      .command('demo')
      .description('a first run: produce records, read them back as a consumer group, show offsets and lag')
      .addHelpText(
        'after',
        '\nExample:\n  $ sluice demo                      # on the embedded broker in ./.sluice/broker.db',
      ),
  ).action(async (o: GlobalOptions) => {
    const log = loggerFor('demo', o);
    await withTransport(o, async (t) => {
      const topic = 'sluice-demo';
      await t.createTopic({ name: topic, partitions: 3 }, { ifNotExists: true });
      const sensors = ['sensor-a', 'sensor-b', 'sensor-c', 'sensor-d'];
      const records = Array.from({ length: 1000 }, (_, i) => ({
        topic,
        key: sensors[i % sensors.length]!,
        value: JSON.stringify({ reading: i, celsius: 20 + (i % 7) / 2 }),
      }));
      const meta = await t.producer().send(records);
      const perPartition = new Map<number, number>();
      for (const m of meta) perPartition.set(m.partition, (perPartition.get(m.partition) ?? 0) + 1);
      log.info(
        { partitions: Object.fromEntries(perPartition) },
        `produced ${meta.length} records to ${topic} on the ${t.kind} broker; keys chose the partitions`,
      );
      const group = 'sluice-demo-readers';
      const consumer = t.consumer({ groupId: group, topics: [topic] });
      let read = 0;
      for (;;) {
        const batch = await consumer.poll({ timeoutMs: 500 });
        if (batch.length === 0) break;
        read += batch.length;
        await consumer.commit();
      }
      await consumer.close();
      const d = await t.describeGroup(group);
      log.info(
        { lag: d.offsets.reduce((s, x) => s + x.lag, 0) },
        `group ${group} read and committed ${read} records; run again and it reads only the new ones`,
      );
      process.stdout.write(
        `next: ./sluice groups describe ${group}   or   ./sluice consume ${topic} -e -F kv\n`,
      );
    });
  });
}
