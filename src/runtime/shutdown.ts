import type { Logger } from 'pino';

export interface ShutdownOptions {
  logger?: Logger;
  /** After the first signal, how long the graceful stop may take before the process exits anyway. Default 30 s. */
  graceMs?: number;
}

/**
 * Turns SIGINT/SIGTERM into an AbortSignal for a graceful stop: the first signal aborts (programs stop intake,
 * flush, commit and exit 0); a second signal, or the grace period running out, exits at once with 130.
 * Returns the signal and a function that removes the handlers.
 */
export function gracefulShutdown(options: ShutdownOptions = {}): {
  signal: AbortSignal;
  dispose: () => void;
} {
  const controller = new AbortController();
  const grace = options.graceMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      options.logger?.warn({ signal: sig }, 'second signal: exiting now without finishing the graceful stop');
      process.exit(130);
    }
    options.logger?.info(
      { signal: sig },
      `received ${sig}: stopping gracefully (send it again to exit at once)`,
    );
    controller.abort(new Error(`received ${sig}`));
    timer = setTimeout(() => {
      options.logger?.error(`graceful stop took longer than ${grace} ms: exiting`);
      process.exit(130);
    }, grace);
    timer.unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
