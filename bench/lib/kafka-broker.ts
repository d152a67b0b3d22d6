/**
 * A Kafka broker for a benchmark: the one at `SLUICE_KAFKA_BOOTSTRAP`, or a private one started with
 * `scripts/kafka.sh` (state in `stateDir`, so it does not collide with the test broker or another benchmark) and
 * stopped afterwards, also on Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const KAFKA_SH = resolve(ROOT, 'scripts/kafka.sh');

export interface Broker {
  bootstrap: string;
  /** The broker JVM's pid when this benchmark started it (for CPU figures); undefined for a given broker. */
  pid: number | undefined;
}

export async function withKafkaBroker<T>(
  stateDir: string,
  fn: (broker: Broker) => Promise<T>,
  log: (message: string) => void = (m) => process.stderr.write(`${m}\n`),
): Promise<T> {
  const given = process.env.SLUICE_KAFKA_BOOTSTRAP?.trim();
  if (given) return fn({ bootstrap: given, pid: undefined });
  const env = { ...process.env, SLUICE_KAFKA_STATE_DIR: stateDir };
  log(`starting a Kafka broker for the benchmark (scripts/kafka.sh start, state in ${stateDir})…`);
  const bootstrap = execFileSync(KAFKA_SH, ['start'], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    .toString()
    .trim();
  let pid: number | undefined;
  try {
    pid = Number(readFileSync(join(stateDir, 'pid'), 'utf8').trim()) || undefined;
  } catch {
    pid = undefined;
  }
  const stop = (): void => {
    execFileSync(KAFKA_SH, ['stop'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  };
  const onSignal = (): void => {
    stop();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  try {
    return await fn({ bootstrap, pid });
  } finally {
    process.removeListener('SIGINT', onSignal);
    stop();
  }
}
