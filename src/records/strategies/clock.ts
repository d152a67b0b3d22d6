/**
 * Time for the record-processing layer. Every time-based rule (batch deadlines, commit policies, backpressure
 * thresholds, metrics) reads this clock, so unit tests drive time with a `MockedClock` instead of sleeping.
 * Times are milliseconds since the epoch, with fractions (sub-millisecond timings for metrics).
 */
export interface Clock {
  now(): number;
  /** Waits `ms` milliseconds (a `MockedClock` only advances its time). */
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms))),
};

/** Arroyo's `MockedClock`: time moves only when a test says so (`advance`, `set`) or something sleeps. */
export class MockedClock implements Clock {
  #now: number;

  constructor(epoch = 0) {
    this.#now = epoch;
  }

  now(): number {
    return this.#now;
  }

  /** Advances the time without waiting, then yields once so awaiting code can run. */
  async sleep(ms: number): Promise<void> {
    this.#now += Math.max(0, ms);
    await Promise.resolve();
  }

  advance(ms: number): void {
    this.#now += ms;
  }

  set(now: number): void {
    this.#now = now;
  }
}
