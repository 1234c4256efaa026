/**
 * Bytes of appends in flight to Redis, shared by every sender of one instance. Each sender already keeps
 * at most half a window in flight; this bounds their sum, so many pipes at once cannot pile up megabytes
 * each in the instance's memory (200 concurrent pipes held ~350–490 MiB before it).
 */
export class AppendBudget {
  private used = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly maxBytes: number) {}

  take(bytes: number): void {
    this.used += bytes;
  }

  give(bytes: number): void {
    this.used -= bytes;
    while (this.waiters.length > 0 && this.used <= this.maxBytes) this.waiters.shift()!();
  }

  /** Resolves once the instance's appends in flight are within the budget again. */
  async room(): Promise<void> {
    while (this.used > this.maxBytes) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}
