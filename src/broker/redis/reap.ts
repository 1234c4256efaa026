import { deadInstances } from './liveness.js';
import type { PipeContext } from './pipe-context.js';
import type { Wakeup } from './wakeup.js';

/** What `reapDropped` found. */
export interface ReapResult {
  /** Whether the transfer is still running (started, not ended). */
  readonly running: boolean;
  /** Receivers still part of the transfer (dropped ones within their grace period included). */
  readonly remaining: number;
}

/**
 * Settles the pipe's parties that dropped (their client, or their whole instance) and did not come back
 * within the grace period; see `reapScript`. Sessions call it while they wait and nothing moves, so a pipe
 * whose peer vanished ends in an error instead of hanging until its keys expire.
 */
export async function reapDropped(ctx: PipeContext): Promise<ReapResult> {
  const { redis, keys, generation, options } = ctx;
  const [sender, owners] = await Promise.all([redis.hget(keys.meta, 'sinst'), redis.hvals(keys.owners)]);
  const dead = await deadInstances(redis, ctx.keyPrefix, [sender, ...owners], ctx.instanceId);
  const [remaining] = (await ctx.scripts.reap(
    [keys.meta, keys.readers, keys.owners, keys.data(generation)],
    [
      generation,
      dead.join(' '),
      options.resumeGraceMs,
      keys.events,
      options.maxStreamEntries,
      options.endedTtlMs,
    ],
  )) as [number, number];
  return { running: remaining >= 0, remaining: Math.max(0, remaining) };
}

/**
 * A waiting session's wait: for its doorbell (or the poll interval), then, at most once per poll interval,
 * `reapDropped`, so a pipe whose peer vanished settles instead of waiting for ever.
 *
 * The first reap comes a poll interval after the session began, not at its first wait: every small transfer
 * waits once on each side (the receiver for the first frame, the sender for "all received"), and a reap
 * there put three round trips between the doorbell and the read it was waiting for.
 */
export class ReapingWait {
  private reapedAt = Date.now();

  constructor(
    private readonly ctx: PipeContext,
    private readonly wakeup: Wakeup,
  ) {}

  async wait(): Promise<void> {
    const { pollMs } = this.ctx.options;
    await this.wakeup.wait(pollMs);
    if (Date.now() - this.reapedAt < pollMs) return;
    this.reapedAt = Date.now();
    await reapDropped(this.ctx);
  }
}
