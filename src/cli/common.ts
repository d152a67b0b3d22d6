import { type Command, InvalidArgumentError, Option } from 'commander';
import { describeError, isSluiceError } from '../errors.ts';
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from '../runtime/logger.ts';
import { BROKER_HELP, openTransport } from '../transport/open.ts';
import type { Transport } from '../transport/types.ts';

export interface GlobalOptions {
  broker?: string;
  config?: string;
  logLevel?: LogLevel;
  logFormat?: 'pretty' | 'json';
}

/** Options every command shares; attached to each subcommand so they may come after it too. */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('-b, --broker <spec>', BROKER_HELP).env('SLUICE_BROKER'))
    .addOption(
      new Option(
        '--config <file>',
        'OpenMSIStream-style INI config file; its [broker] section selects a Kafka cluster',
      ),
    )
    .addOption(new Option('--log-level <level>', 'log detail').choices(LOG_LEVELS).default('info'))
    .addOption(
      new Option('--log-format <format>', 'log line format (logs go to stderr)')
        .choices(['pretty', 'json'])
        .default('pretty'),
    );
}

export function loggerFor(name: string, o: GlobalOptions): Logger {
  return createLogger({ name, level: o.logLevel ?? 'info', format: o.logFormat ?? 'pretty' });
}

/** Opens the transport named by the options, runs `fn`, and always closes the transport. */
export async function withTransport<T>(o: GlobalOptions, fn: (t: Transport) => Promise<T>): Promise<T> {
  const transport = await openTransport({ broker: o.broker, config: o.config, clientId: 'sluice-cli' });
  try {
    return await fn(transport);
  } finally {
    await transport.close();
  }
}

export function intArg(name: string, min = 0): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be a whole number ≥ ${min}.`);
    return n;
  };
}

/** Prints an error the way a user can act on it: the message (which names the fix) and the code. */
export function reportError(err: unknown): number {
  if (isSluiceError(err)) {
    process.stderr.write(`sluice: ${err.message} [${err.code}]\n`);
    return err.code === 'SLUICE_USAGE' || err.code === 'SLUICE_CONFIG_INVALID' ? 2 : 1;
  }
  process.stderr.write(`sluice: unexpected error: ${describeError(err)}\n`);
  if (err instanceof Error && err.stack !== undefined && process.env.SLUICE_DEBUG)
    process.stderr.write(`${err.stack}\n`);
  return 1;
}

/** Pads columns for human-readable tables. */
export function table(rows: Array<Array<string | number | undefined>>): string {
  const cells = rows.map((r) => r.map((c) => (c === undefined ? '-' : String(c))));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return `${cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}
