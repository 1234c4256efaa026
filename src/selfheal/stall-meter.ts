import type { Clock } from '../clock.js';
import type { LatencySink, MetricName } from './latency-windows.js';

export interface StallMeterOptions {
  /** How often the meter's timer runs; a stall shorter than this may go unseen by up to this much. */
  readonly tickMs?: number;
  /** A timer this much late or less is timer jitter, not a stall. */
  readonly slackMs?: number;
  /** Stalls older than this are forgotten (a sample longer than this is corrected only for its last part). */
  readonly keepMs?: number;
  /** At most this many stalls are kept. */
  readonly maxStalls?: number;
}

/**
 * When this process could not run its callbacks: a timer every `tickMs` that fires late means the event loop
 * was busy (garbage collection, a long synchronous task) or the process was not scheduled (a machine short
 * of CPU) from when it was due until it fired.
 *
 * A round trip measured by this process (a Redis PING: from sending to the reply's callback) includes such a
 * stall when the reply arrived during it: the reply waits until the loop gets to it. That time is this
 * process's, not the Redis's. A window's p99 over a score of probes is its slowest one, so a single stall of
 * 30 ms made a window "slower than 20 ms" and started the return to the primary over (issue 11, item 8):
 * under load the return never came, while the same stalls pushed towards reroutes.
 * `corrected(ms)` takes out of a sample that just ended the stall its reply waited out; what remains is the
 * backend's round trip to within `tickMs` (a stall starts up to that long before the timer sees it).
 */
export class StallMeter {
  private readonly tickMs: number;
  private readonly slackMs: number;
  private readonly keepMs: number;
  private readonly maxStalls: number;
  /** Stalls, oldest first, as [from, to] on the clock; they never overlap. */
  private readonly stalls: Array<{ from: number; to: number }> = [];
  /** When the timer is due next (while running). */
  private due: number | undefined;
  /** Up to when stalls have been recorded, so that a late timer does not record one twice. */
  private seenUntil = Number.NEGATIVE_INFINITY;
  private cancel: (() => void) | undefined;

  constructor(
    private readonly clock: Clock,
    options: StallMeterOptions = {},
  ) {
    this.tickMs = options.tickMs ?? 5;
    this.slackMs = options.slackMs ?? 2;
    this.keepMs = options.keepMs ?? 60_000;
    this.maxStalls = options.maxStalls ?? 1000;
  }

  start(): void {
    if (this.cancel) return;
    const tick = () => {
      this.check();
      this.due = this.clock.now() + this.tickMs;
      this.cancel = this.clock.setTimeout(tick, this.tickMs);
    };
    this.due = this.clock.now() + this.tickMs;
    this.cancel = this.clock.setTimeout(tick, this.tickMs);
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
    this.due = undefined;
  }

  /**
   * Records a stall that is still going on from this callback's point of view: when a reply is handled before
   * the overdue timer (I/O callbacks can run first after the process was not scheduled), the loop has not
   * been free since the timer fell due.
   */
  check(): void {
    if (this.due === undefined) return;
    const now = this.clock.now();
    if (now - this.due <= this.slackMs) return;
    const from = Math.max(this.due, this.seenUntil);
    if (now > from) this.add(from, now);
    this.seenUntil = now;
  }

  /** ms of stall within [from, to]. */
  blockedWithin(from: number, to: number): number {
    let blocked = 0;
    for (let i = this.stalls.length - 1; i >= 0; i--) {
      const stall = this.stalls[i]!;
      if (stall.to <= from) break;
      blocked += Math.max(0, Math.min(to, stall.to) - Math.max(from, stall.from));
    }
    return blocked;
  }

  /**
   * A round trip of `ms` that ends now, less the stall it was handled right after, if any. Only that one:
   * once the loop was free again (its timer ran) it would have handled a reply that had arrived, so earlier
   * stalls did not delay this one. Taking out every stall within the round trip would shrink a truly slow
   * reply on a busy process towards nothing, and hide the fault a reroute is for.
   */
  corrected(ms: number): number {
    this.check();
    const now = this.clock.now();
    const last = this.stalls.at(-1);
    if (!last || now - last.to > this.tickMs + this.slackMs) return ms;
    return Math.max(0, ms - Math.max(0, last.to - Math.max(last.from, now - ms)));
  }

  /** `sink`, with the samples of `metrics` corrected for stalls (the others go through as they are). */
  correcting(sink: LatencySink, metrics: readonly MetricName[]): LatencySink {
    const corrected = new Set(metrics);
    return {
      record: (metric, ms) => sink.record(metric, corrected.has(metric) ? this.corrected(ms) : ms),
    };
  }

  private add(from: number, to: number): void {
    this.stalls.push({ from, to });
    const horizon = to - this.keepMs;
    let drop = 0;
    while (drop < this.stalls.length && this.stalls[drop]!.to < horizon) drop++;
    drop = Math.max(drop, this.stalls.length - this.maxStalls);
    if (drop > 0) this.stalls.splice(0, drop);
  }
}
