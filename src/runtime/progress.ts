/**
 * A progress bar for long CLI operations, drawn on stderr only when stderr is a terminal. Everywhere else (pipes,
 * log files, CI, tests) every method is a no-op, so callers never need to check.
 *
 * Logs also go to stderr: stop the bar before logging the final summary line.
 */

import cliProgress from 'cli-progress';

export interface Progress {
  /** True when a bar is actually drawn. */
  readonly active: boolean;
  /** Adds `n` to the current value. */
  increment(n: number): void;
  /** Changes the total (e.g. when it becomes known later). */
  setTotal(total: number): void;
  /** Draws the final state and moves to the next line (idempotent). */
  stop(): void;
}

export interface ProgressOptions {
  /** What is being done, shown before the bar (e.g. the file name). */
  label: string;
  /** The value at 100 %. */
  total: number;
  /** The unit of the values: `bytes` shows MiB and MiB/s; `items` shows plain counts. Default `bytes`. */
  unit?: 'bytes' | 'items';
  /** Default `process.stderr`. */
  stream?: NodeJS.WriteStream;
  /** Force the bar on (`true`) or off (`false`); default: on exactly when `stream.isTTY`. */
  enabled?: boolean;
}

const NOOP: Progress = Object.freeze({
  active: false,
  increment: () => {},
  setTotal: () => {},
  stop: () => {},
});

const MIB = 1024 * 1024;

function formatMiB(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  const enabled = options.enabled ?? stream.isTTY === true;
  if (!enabled) return NOOP;
  const unit = options.unit ?? 'bytes';
  const started = Date.now();
  const label = options.label.length > 40 ? `…${options.label.slice(-39)}` : options.label;
  const bar = new cliProgress.SingleBar({
    stream,
    hideCursor: true,
    clearOnComplete: false,
    fps: 5,
    format: (_opts, params) => {
      const width = 30;
      const done = Math.round(Math.min(1, params.progress) * width);
      const pct = (Math.min(1, params.progress) * 100).toFixed(0).padStart(3);
      if (unit === 'items') {
        return `${label} [${'#'.repeat(done)}${'-'.repeat(width - done)}] ${pct}% ${params.value}/${params.total}`;
      }
      const secs = Math.max(0.001, (Date.now() - started) / 1000);
      const rate = formatMiB(params.value / secs);
      return (
        `${label} [${'#'.repeat(done)}${'-'.repeat(width - done)}] ${pct}% ` +
        `${formatMiB(params.value)}/${formatMiB(params.total)} MiB ${rate} MiB/s`
      );
    },
  });
  bar.start(options.total, 0);
  let value = 0;
  let stopped = false;
  return {
    active: true,
    increment(n: number) {
      if (stopped) return;
      value += n;
      bar.update(value);
    },
    setTotal(total: number) {
      if (!stopped) bar.setTotal(total);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
