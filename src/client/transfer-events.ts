/** What a transfer tells its user while it runs: the CLI draws it, the page shows it, tests read it. */
export type TransferEvent =
  /** Waiting for the other side; `detail` is what for ("1 receiver", "the sender"). */
  | { readonly type: 'waiting'; readonly detail: string }
  /** Bytes flow. `total` is the plaintext length when known. */
  | { readonly type: 'started'; readonly total: number | undefined }
  /** Plaintext bytes delivered so far (a resume may move it back to what the broker holds). */
  | { readonly type: 'progress'; readonly bytes: number }
  /** An attempt failed; the next one starts in `inMs`. */
  | { readonly type: 'retrying'; readonly reason: string; readonly inMs: number; readonly attempt: number }
  /** The transfer continues from `offset` (wire bytes) after a break. */
  | { readonly type: 'resumed'; readonly offset: number }
  /** A line worth showing as it is (a transcript line, a notice that resume is unavailable). */
  | { readonly type: 'notice'; readonly text: string };

/** Time as a transfer needs it, injected so tests of retries and stalls run in milliseconds. */
export interface TransferClock {
  now(): number;
  /** Resolves after `ms`, or rejects when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock. */
export const systemClock: TransferClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/**
 * Watches one attempt for a stall: `touch()` on every byte; once armed, `stallMs` without one aborts the
 * attempt's controller with a `StallError` (the connection may be dead without either end being told).
 */
export class StallWatch {
  private lastAt: number;
  private armed = false;
  private firstByteMs: number | undefined;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly controller: AbortController,
    private readonly stallMs: number,
    private readonly clock: TransferClock,
  ) {
    this.lastAt = clock.now();
    this.timer = setInterval(() => this.check(), Math.max(50, Math.min(1000, stallMs / 4)));
  }

  /** Bytes should flow from now on. */
  arm(): void {
    if (!this.armed) this.lastAt = this.clock.now();
    this.armed = true;
  }

  /** Until the first byte, allow `ms` instead of the stall timeout (a server still sorting itself out). */
  armUntilFirstByte(ms: number): void {
    this.arm();
    this.firstByteMs = ms;
  }

  touch(): void {
    this.lastAt = this.clock.now();
    this.firstByteMs = undefined;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private check(): void {
    const allowed = this.firstByteMs ?? this.stallMs;
    if (this.armed && this.stallMs > 0 && this.clock.now() - this.lastAt >= allowed) {
      this.stop();
      this.controller.abort(new StallError(allowed));
    }
  }
}

/** No byte moved for the stall timeout: the attempt is dropped and the transfer resumes. */
export class StallError extends Error {
  readonly code = 'STALLED';
  constructor(stallMs: number) {
    super(`no byte moved for ${Math.round(stallMs / 1000)} s`);
  }
}
