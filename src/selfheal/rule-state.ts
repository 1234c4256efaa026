import type { WindowStats } from './latency-windows.js';
import type { RuleConfig } from './selfheal-config.js';

/** What judging one window decided for one rule. */
export type Decision =
  /** The window breached; `count` of `forWindows` in a row. */
  | { readonly kind: 'breach'; readonly valueMs: number; readonly count: number }
  /** The action fires now (or would, for a dry-run rule). */
  | { readonly kind: 'fire'; readonly valueMs: number; readonly windows: number; readonly dryRun: boolean }
  /** The action was due but held back. */
  | {
      readonly kind: 'suppressed';
      readonly valueMs: number;
      readonly reason: 'cooldown' | 'hourly-cap';
    }
  /** A reroute rule's backend is healthy again for long enough: back to the primary. */
  | {
      readonly kind: 'recover';
      readonly valueMs: number;
      readonly windows: number;
      readonly dryRun: boolean;
    };

/** A rule's state as `/_/selfheal` shows it. */
export interface RuleSnapshot {
  readonly name: string;
  readonly metric: string;
  readonly action: string;
  readonly quantile: number;
  readonly aboveMs: number;
  readonly dryRun: boolean;
  /** The last window's samples and quantile (ms; `null` without samples). */
  readonly samples: number;
  readonly valueMs: number | null;
  readonly breaches: number;
  readonly healthyWindows: number;
  /** A reroute rule: the standby is in use because of it (or would be, dry-run). */
  readonly engaged: boolean;
  readonly lastActionAt: number | null;
  readonly actionsLastHour: number;
}

const HOUR_MS = 3_600_000;

/** What a rule's judgement carries from one window to the next (kept in Redis where nothing lives on). */
export interface RuleMemory {
  readonly breaches: number;
  readonly healthy: number;
  readonly engaged: boolean;
  readonly lastActionAt: number | null;
  readonly actionTimes: readonly number[];
}

/**
 * One rule's judgement over consecutive windows. Pure: the caller passes each closed window and the time,
 * and acts on the decisions; nothing here touches a clock, a backend or a hook.
 *
 * - A window with fewer than `minSamples` samples is neither breaching nor healthy: it leaves the count as
 *   it is. A healthy window (enough samples, quantile at or below `aboveMs`) resets it, so FAIL, FAIL, OK,
 *   FAIL never fires with `forWindows: 3`.
 * - When a reroute is in effect only recovery is judged: `recoverForWindows` windows in a row with samples
 *   below `recoverBelowMs`; a window with samples above it starts that count again. One sample is enough
 *   here: after a reroute the primary only sees the watcher's probes.
 * - `cooldownMs` after an action and `maxActionsPerHour` hold further actions back (recorded as such).
 */
export class RuleState {
  private breaches = 0;
  private healthy = 0;
  private engaged = false;
  private lastActionAt: number | undefined;
  private readonly actionTimes: number[] = [];
  private last: { samples: number; valueMs: number | null } = { samples: 0, valueMs: null };

  constructor(readonly rule: RuleConfig) {}

  /** The state to carry over to the next window, when the next window is judged by another process. */
  memory(): RuleMemory {
    return {
      breaches: this.breaches,
      healthy: this.healthy,
      engaged: this.engaged,
      lastActionAt: this.lastActionAt ?? null,
      actionTimes: [...this.actionTimes],
    };
  }

  restore(memory: RuleMemory): void {
    this.breaches = memory.breaches;
    this.healthy = memory.healthy;
    this.engaged = memory.engaged;
    this.lastActionAt = memory.lastActionAt ?? undefined;
    this.actionTimes.splice(0, this.actionTimes.length, ...memory.actionTimes);
  }

  /** Whether this rule holds new pipes on the standby (dry-run rules only pretend to). */
  get rerouting(): boolean {
    return this.engaged && !this.rule.dryRun;
  }

  evaluate(stats: WindowStats | undefined, now: number): Decision[] {
    const rule = this.rule;
    const samples = stats?.count ?? 0;
    const valueMs = samples > 0 ? stats!.quantile(rule.quantile) : null;
    this.last = { samples, valueMs };

    if (this.engaged && rule.action === 'reroute') {
      if (valueMs === null) return [];
      if (valueMs >= (rule.recoverBelowMs ?? rule.aboveMs)) {
        this.healthy = 0;
        return [];
      }
      this.healthy += 1;
      if (this.healthy < rule.recoverForWindows) return [];
      const windows = this.healthy;
      this.engaged = false;
      this.healthy = 0;
      this.breaches = 0;
      return [{ kind: 'recover', valueMs, windows, dryRun: rule.dryRun }];
    }

    if (valueMs === null || samples < rule.minSamples) return [];
    if (valueMs <= rule.aboveMs) {
      this.breaches = 0;
      return [];
    }
    this.breaches += 1;
    const decisions: Decision[] = [{ kind: 'breach', valueMs, count: this.breaches }];
    if (this.breaches < rule.forWindows) return decisions;

    while (this.actionTimes.length > 0 && now - this.actionTimes[0]! >= HOUR_MS) this.actionTimes.shift();
    if (this.lastActionAt !== undefined && now - this.lastActionAt < rule.cooldownMs) {
      decisions.push({ kind: 'suppressed', valueMs, reason: 'cooldown' });
    } else if (this.actionTimes.length >= rule.maxActionsPerHour) {
      decisions.push({ kind: 'suppressed', valueMs, reason: 'hourly-cap' });
    } else {
      const windows = this.breaches;
      this.lastActionAt = now;
      this.actionTimes.push(now);
      this.breaches = 0;
      if (rule.action === 'reroute') this.engaged = true;
      decisions.push({ kind: 'fire', valueMs, windows, dryRun: rule.dryRun });
    }
    return decisions;
  }

  snapshot(now: number): RuleSnapshot {
    const rule = this.rule;
    return {
      name: rule.name,
      metric: rule.metric,
      action: rule.action,
      quantile: rule.quantile,
      aboveMs: rule.aboveMs,
      dryRun: rule.dryRun,
      samples: this.last.samples,
      valueMs: this.last.valueMs,
      breaches: this.breaches,
      healthyWindows: this.healthy,
      engaged: this.engaged,
      lastActionAt: this.lastActionAt ?? null,
      actionsLastHour: this.actionTimes.filter((at) => now - at < HOUR_MS).length,
    };
  }
}
