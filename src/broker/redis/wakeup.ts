/**
 * A doorbell for one waiting session: `wait` resolves at the next `ring`, after `ms` at the latest (waiters
 * re-check state either way), or rejects with the signal's reason. A ring with nobody waiting is remembered
 * once, so a message that lands between a check and the next wait is not lost.
 */
export class Wakeup {
  private waiter: (() => void) | undefined;
  private rung = false;

  ring(): void {
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter();
    } else {
      this.rung = true;
    }
  }

  /** Forgets a remembered ring: what rang before now no longer bears on what the session waits for next. */
  forget(): void {
    this.rung = false;
  }

  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.rung) {
      this.rung = false;
      return Promise.resolve();
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiter = undefined;
      };
      const onAbort = () => {
        done();
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        done();
        resolve();
      }, ms);
      this.waiter = () => {
        done();
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
