/**
 * The lock handed to user code: one per program, shared by every concurrent invocation, for code that touches a
 * shared resource (OpenMSIStream passes a threading.Lock). sluice's own bookkeeping never takes it.
 */
export class Mutex {
  private locked = false;
  private readonly waiters: Array<() => void> = [];

  async acquire(): Promise<() => void> {
    if (this.locked) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.locked = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next !== undefined) next();
      else this.locked = false;
    };
  }

  /** Runs `fn` while holding the lock. */
  async runExclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  get isLocked(): boolean {
    return this.locked;
  }
}
