/**
 * `CheckpointError`: what `Checkpointer.checkpoint()` rejects with, in both modes.
 *
 * Its `code` is the KCL exception's simple class name (`ShutdownException`, `ThrottlingException`, …), exactly
 * what the MultiLangDaemon sends in a checkpoint reply's `error` field, so processors ported from amazon-kclpy
 * (`e.value == 'ShutdownException'`) or the Node `aws-kcl` library switch on the same strings. `value` repeats it
 * for kclpy-style code.
 *
 * Design decision: it extends `Error`, **not** `SluiceError`. SluiceError's `code` is reserved for the stable
 * `SLUICE_*` codes of src/errors.ts and `isSluiceError()` recognises errors by that prefix; a KCL name in `code`
 * (which the multilang spec requires) would break both. Use `isCheckpointError(err, name?)`, which like
 * `isSluiceError` checks fields rather than `instanceof`. When a transport failure caused it (native mode), the
 * SluiceError is the `cause`.
 */

/** The names the KCL (Java) checkpointer reports, and what a processor should do about each. */
export const KCL_ERROR_NAMES = [
  /** The lease was lost (another worker owns the shard now): stop checkpointing, finish. */
  'ShutdownException',
  /** Throttled by the lease store: retry with backoff. */
  'ThrottlingException',
  /** No checkpointer in this state (during initialize, after leaseLost, outside a handler …): do not retry. */
  'InvalidStateException',
  /** The lease store (DynamoDB; in native mode the broker) failed: retry with backoff. */
  'KinesisClientLibDependencyException',
  /** The sequence number is outside `lastCheckpoint ≤ n ≤ largestPermitted`, or not a number: do not retry. */
  'IllegalArgumentException',
] as const;

export type KclErrorName = (typeof KCL_ERROR_NAMES)[number];

const RETRYABLE: ReadonlySet<string> = new Set([
  'ThrottlingException',
  'KinesisClientLibDependencyException',
]);

export class CheckpointError extends Error {
  /**
   * The KCL exception name. One of `KCL_ERROR_NAMES`, or whatever other name a daemon sent (the Java side reports
   * any exception's simple class name, e.g. `Exception` in upstream's own test vector).
   */
  readonly code: KclErrorName | (string & {});
  /** Whether retrying the same checkpoint later may succeed (throttling, dependency failures). */
  readonly canRetry: boolean;

  constructor(code: string, message?: string, options: { cause?: unknown } = {}) {
    super(
      message ?? `Checkpoint failed: ${code}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'CheckpointError';
    this.code = code;
    this.canRetry = RETRYABLE.has(code);
  }

  /** amazon-kclpy's spelling of `code` (`CheckpointError.value`). */
  get value(): string {
    return this.code;
  }
}

/** True for a CheckpointError (of the given KCL name, when one is passed), even from another copy of this module. */
export function isCheckpointError(err: unknown, code?: string): err is CheckpointError {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: unknown; code?: unknown };
  if (e.name !== 'CheckpointError' || typeof e.code !== 'string') return false;
  return code === undefined || e.code === code;
}
