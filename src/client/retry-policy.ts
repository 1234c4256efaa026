// When to try again and how long to wait: exponential backoff with full jitter (a random wait between zero
// and the exponential cap, so a fleet of clients cut by the same outage does not come back in lockstep:
// https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), `Retry-After` honoured, and a
// total budget. The attempt count starts over whenever the transfer makes progress.

/** How a client retries. */
export interface RetryOptions {
  /** First backoff cap, in ms (default 500). */
  readonly baseMs: number;
  /** Largest backoff cap, in ms (default 30 s). */
  readonly capMs: number;
  /** Total time without progress after which the client gives up, in ms; 0 = never (default 10 min). */
  readonly budgetMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { baseMs: 500, capMs: 30_000, budgetMs: 10 * 60_000 };

/** Whether a status is worth another try: timeouts, rate limits and server errors (RFC 9110 §15). */
export function retryableStatus(status: number): boolean {
  // 501 is a server saying it cannot do this at all (resume on the in-memory broker): final.
  return status === 408 || status === 429 || (status >= 500 && status !== 501);
}

/**
 * The longest `Retry-After` taken as given: a server asking for more is asked again after this (it cannot
 * park a client for a day), and the retry budget still bounds the whole wait. Not `--retry-cap`, which
 * bounds this client's own backoff: a server that names its wait knows better.
 */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/**
 * `Retry-After` in ms: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); undefined when absent or unreadable.
 */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  const ms = /^\d+$/.test(trimmed) ? Number(trimmed) * 1000 : Date.parse(trimmed) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/** The retry state of one transfer. Time and randomness are injected, so tests run in milliseconds. */
export class Backoff {
  private attempt = 0;
  private progressAt: number;

  constructor(
    private readonly options: RetryOptions,
    private readonly now: () => number,
    private readonly random: () => number = Math.random,
  ) {
    this.progressAt = now();
  }

  /** Bytes moved (or a wait proved the network works): the next failure starts from the first step. */
  progressed(): void {
    this.attempt = 0;
    this.progressAt = this.now();
  }

  /**
   * The wait before the next try, or undefined when the budget is spent. `serverWaitMs` (Retry-After) is
   * used as given when present: the server knows when it will have room.
   */
  next(serverWaitMs?: number): number | undefined {
    const { baseMs, capMs, budgetMs } = this.options;
    const spent = this.now() - this.progressAt;
    if (budgetMs > 0 && spent >= budgetMs) return undefined;
    const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    const wait = serverWaitMs ?? this.random() * ceiling;
    // The last wait never runs past the budget: the client gives up on time.
    return budgetMs > 0 ? Math.min(wait, budgetMs - spent) : wait;
  }

  /** Tries so far since the last progress. */
  get attempts(): number {
    return this.attempt;
  }
}
