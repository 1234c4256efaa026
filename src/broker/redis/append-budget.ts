/**
 * Bytes of uploads an instance holds on their way to Redis (taken from a sender's body, not yet answered by
 * Redis), shared by every sender of the instance. Each sender already keeps at most half a window in flight;
 * this bounds their sum, so many pipes at once cannot pile up megabytes each in the instance's memory.
 *
 * Bytes are granted before a sender takes them, first come first served, and only while they fit: an
 * earlier version checked the sum only after a frame was sent and let every waiting sender go at once when
 * it fell under the bound, so 200 senders each sent one more frame (256 KiB, or a whole 1 MiB chunk on Bun)
 * and the instance held 40-120 MiB of appends against a bound of 32. A request larger than the bound is
 * granted when nothing else is held (it cannot wait for room that never comes).
 */
export class AppendBudget {
  private used = 0;
  private readonly waiters: Array<{ bytes: number; grant: () => void }> = [];

  constructor(private readonly maxBytes: number) {}

  /** Bytes granted and not yet given back. */
  get held(): number {
    return this.used;
  }

  /** Resolves once `bytes` are granted to the caller, who gives them back with `give`. */
  acquire(bytes: number): Promise<void> {
    if (this.waiters.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return Promise.resolve();
    }
    return new Promise<void>((grant) => this.waiters.push({ bytes, grant }));
  }

  give(bytes: number): void {
    this.used -= bytes;
    for (;;) {
      const next = this.waiters[0];
      if (!next || !this.fits(next.bytes)) return;
      this.waiters.shift();
      this.used += next.bytes;
      next.grant();
    }
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.maxBytes;
  }
}
