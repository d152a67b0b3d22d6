/**
 * One error class for everything sluice throws on purpose. Each error has a stable `code` (listed in
 * `ERROR_CODES`, all prefixed `SLUICE_`), a message that says what went wrong *and how to fix it*, an optional
 * `cause`, and `canRetry`, which tells callers whether repeating the same call may succeed.
 *
 * Match on `code` (or `isSluiceError(err, code)`), not only on `instanceof`: two copies of the module in one
 * process would defeat `instanceof`.
 */

export const ERROR_CODES = [
  // configuration and usage
  'SLUICE_CONFIG_INVALID',
  'SLUICE_CONFIG_FILE',
  'SLUICE_USAGE',
  // transports
  'SLUICE_BROKER_UNREACHABLE',
  'SLUICE_BROKER_URL',
  'SLUICE_TOPIC_UNKNOWN',
  'SLUICE_TOPIC_EXISTS',
  'SLUICE_PARTITION_UNKNOWN',
  'SLUICE_CLOSED',
  'SLUICE_NOT_ASSIGNED',
  'SLUICE_REBALANCE',
  'SLUICE_UNSUPPORTED',
  'SLUICE_EMBEDDED_CORRUPT',
  'SLUICE_EMBEDDED_LOCKED',
  'SLUICE_DELIVERY_FAILED',
  'SLUICE_TIMEOUT',
  'SLUICE_TRANSPORT',
  // data files
  'SLUICE_CHUNK_DECODE',
  'SLUICE_CHUNK_HASH',
  'SLUICE_UNSAFE_PATH',
  'SLUICE_FILE_HASH',
  'SLUICE_FILE_CONFLICT',
  'SLUICE_REGISTRY',
  'SLUICE_IO',
  // channels (pypz-compatible)
  'SLUICE_CHANNEL_STATUS',
  'SLUICE_CHANNEL_STATE',
  'SLUICE_CHANNEL_OFFSET',
  'SLUICE_CHANNEL_RESOURCE',
  'SLUICE_RECORD_INVALID',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface SluiceErrorOptions {
  cause?: unknown;
  /** Whether the same call may succeed if repeated later (a busy database, a broker restarting). */
  canRetry?: boolean;
  /** Extra machine-readable context (topic, partition, offset, path …); copied onto the error. */
  details?: Record<string, unknown>;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly canRetry: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.canRetry = options.canRetry ?? false;
    this.details = options.details ?? {};
  }
}

export function isSluiceError(err: unknown, code?: ErrorCode): err is SluiceError {
  if (typeof err !== 'object' || err === null) return false;
  const c = (err as { code?: unknown }).code;
  if (typeof c !== 'string' || !c.startsWith('SLUICE_')) return false;
  return code === undefined || c === code;
}

/** The message of any thrown value, for logs and wrapped errors. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
