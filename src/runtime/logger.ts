import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  /** Shown on every line, e.g. the program name. */
  name?: string;
  /** Default `info`, or `$SLUICE_LOG_LEVEL`. */
  level?: LogLevel;
  /** `pretty` (default): one readable line per event; `json`: one JSON object per line, for log shippers. */
  format?: 'pretty' | 'json';
}

/**
 * sluice's logs go to stderr, so stdout stays free for data (`sluice consume` writes records there).
 * Each event is one line.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const envLevel = process.env.SLUICE_LOG_LEVEL as LogLevel | undefined;
  const level =
    options.level ?? (envLevel !== undefined && LOG_LEVELS.includes(envLevel) ? envLevel : 'info');
  const base = { name: options.name, level, base: undefined };
  if (options.format === 'json') return pino(base, pino.destination({ dest: 2, sync: true }));
  return pino(
    base,
    pretty({
      destination: 2,
      sync: true,
      colorize: process.stderr.isTTY === true,
      translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
      ignore: 'pid,hostname',
      // the message says what happened; the structured fields are there in --log-format json. (Not together with
      // singleLine: pino-pretty 13 then drops the line break.)
      hideObject: true,
    }),
  );
}
