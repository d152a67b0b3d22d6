/**
 * Benchmarks: `npm run bench -- <name> [options]`.
 *
 *   transport   produce/consume throughput of the embedded and Kafka transports, the raw Kafka client and Kafka's
 *               own perf tools (see bench/transport.ts for options)
 *   files       end-to-end upload-dir → download-dir throughput and peak RSS per process, embedded and Kafka, against
 *               OpenMSIStream on the same broker, plus one large file (see bench/files.ts for options)
 *   channels    records/s through pypz-compatible Kafka and RabbitMQ channels vs the raw clients and pypz itself
 *               (see bench/channels.ts for options)
 */
import { runTransportBench } from './transport.ts';

const benches: Record<string, (args: string[]) => Promise<void>> = {
  transport: runTransportBench,
  records: (args) => import('./records.ts').then((m) => m.runRecordsBench(args)),
  reproduce: (args) => import('./reproduce.ts').then((m) => m.runReproduceBench(args)),
  files: (args) => import('./files.ts').then((m) => m.runFilesBench(args)),
  channels: (args) => import('./channels.ts').then((m) => m.runChannelsBench(args)),
};

const [name, ...args] = process.argv.slice(2);
const bench = name === undefined ? undefined : benches[name];
if (bench === undefined) {
  process.stderr.write(
    `usage: npm run bench -- <${Object.keys(benches).join('|')}> [options]\n${name === undefined ? 'no benchmark named' : `unknown benchmark "${name}"`}\n`,
  );
  process.exit(2);
}
try {
  await bench(args);
} catch (err) {
  process.stderr.write(
    `bench ${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
}
