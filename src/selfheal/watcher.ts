import type { BackendName } from '../broker/failover-broker.js';
import type { Clock } from '../clock.js';
import type { AuditEntry, AuditTrail } from './audit-trail.js';
import type { HookConfig, HookOutcome, SelfHealEvent } from './hook-types.js';
import type { LatencyWindows, MetricName } from './latency-windows.js';
import { type Decision, type RuleSnapshot, RuleState } from './rule-state.js';
import type { RuleConfig, SelfhealConfig } from './selfheal-config.js';

/** Something the watcher measures every interval even when idle (a Redis PING). */
export interface WatcherProbe {
  readonly metric: MetricName;
  /** Its own latency is recorded by the instrumented connection; the watcher bounds it. */
  probe(): Promise<void>;
}

/** Where new pipes go; the failover broker. */
export interface BackendSwitch {
  readonly backend: BackendName;
  use(backend: BackendName): void;
}

export interface WatcherDeps {
  readonly config: SelfhealConfig;
  readonly windows: LatencyWindows;
  readonly instance: string;
  readonly clock: Clock;
  readonly probes: readonly WatcherProbe[];
  /** Absent without a standby (config validation refuses reroute rules then). */
  readonly backend?: BackendSwitch;
  readonly runHook: (hook: HookConfig, event: SelfHealEvent) => Promise<HookOutcome[]>;
  readonly audit: AuditTrail;
}

/** Counters of what the watcher did, for `/_/metrics`. */
export interface WatcherCounters {
  fired: number;
  suppressed: number;
  recovered: number;
  hookFailures: number;
}

/** `/_/selfheal`. */
export interface WatcherStatus {
  readonly backend: BackendName;
  readonly instance: string;
  readonly intervalMs: number;
  readonly rules: readonly RuleSnapshot[];
  readonly events: readonly AuditEntry[];
}

const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));

/**
 * Every `intervalMs`: probes the backends, closes the latency windows, judges every rule on its metric's
 * window and carries out what they decide (switching the backend new pipes go to, firing hooks), writing
 * every decision to the audit trail. Ticks never overlap; a slow probe is cut at `probeTimeoutMs` and
 * recorded as that slow, so a Redis that stopped answering looks slow rather than silent.
 */
export class Watcher {
  private readonly states: RuleState[];
  private cancelTimer: (() => void) | undefined;
  private ticking = false;
  readonly counters: WatcherCounters = { fired: 0, suppressed: 0, recovered: 0, hookFailures: 0 };
  /** Hooks still running (tests and shutdown wait for them). */
  private readonly hooks = new Set<Promise<void>>();

  constructor(private readonly deps: WatcherDeps) {
    this.states = deps.config.rules.map((rule) => new RuleState(rule));
  }

  /** Where new pipes go now. */
  get backend(): BackendName {
    return this.deps.backend?.backend ?? 'primary';
  }

  start(): void {
    const schedule = () => {
      this.cancelTimer = this.deps.clock.setTimeout(() => {
        this.tick().finally(() => {
          if (this.cancelTimer) schedule();
        });
      }, this.deps.config.intervalMs);
    };
    schedule();
  }

  stop(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }

  /** Settles once every hook fired so far has finished. */
  async settled(): Promise<void> {
    while (this.hooks.size > 0) await Promise.all([...this.hooks]);
  }

  /** One interval: probe, close the windows, judge, act. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      await Promise.all(this.deps.probes.map((probe) => this.runProbe(probe)));
      const window = this.deps.windows.rotate();
      const now = this.deps.clock.now();
      for (const state of this.states) {
        for (const decision of state.evaluate(window.get(state.rule.metric), now)) {
          this.act(state.rule, decision, now);
        }
      }
      this.switchBackend(now);
    } finally {
      this.ticking = false;
    }
  }

  async status(): Promise<WatcherStatus> {
    const now = this.deps.clock.now();
    return {
      backend: this.deps.backend?.backend ?? 'primary',
      instance: this.deps.instance,
      intervalMs: this.deps.config.intervalMs,
      rules: this.states.map((state) => state.snapshot(now)),
      events: await this.deps.audit.recent(50),
    };
  }

  private async runProbe(probe: WatcherProbe): Promise<void> {
    const { clock, config, windows } = this.deps;
    let cancel: () => void = () => {};
    const timedOut = new Promise<'timeout'>((resolve) => {
      cancel = clock.setTimeout(() => resolve('timeout'), config.probeTimeoutMs);
    });
    const answered = probe.probe().then(
      () => 'ok' as const,
      () => 'error' as const,
    );
    const outcome = await Promise.race([answered, timedOut]);
    cancel();
    // A probe that failed or timed out never reached the instrumented reply: count it as the slowest.
    if (outcome !== 'ok') windows.record(probe.metric, config.probeTimeoutMs);
  }

  private act(rule: RuleConfig, decision: Decision, now: number): void {
    const label = `p${(rule.quantile * 100).toFixed(rule.quantile * 100 >= 99.95 ? 1 : 0).replace(/\.0$/, '')}`;
    const value = `${label} ${fmt(decision.valueMs)} ms`;
    switch (decision.kind) {
      case 'breach':
        this.record(
          rule,
          now,
          'breach',
          `${value} > ${rule.aboveMs} ms (${decision.count} of ${rule.forWindows})`,
          decision.valueMs,
        );
        return;
      case 'suppressed':
        this.counters.suppressed += 1;
        this.record(
          rule,
          now,
          'suppressed',
          `${rule.action} held back: ${decision.reason === 'cooldown' ? `cooldown of ${rule.cooldownMs} ms` : `${rule.maxActionsPerHour} actions in the last hour`}`,
          decision.valueMs,
        );
        return;
      case 'fire': {
        const what = rule.action === 'reroute' ? 'new pipes go to the standby Redis' : `${rule.action} hook`;
        if (decision.dryRun) {
          this.record(
            rule,
            now,
            'dry-run',
            `would ${rule.action} (${what}) after ${decision.windows} windows, ${value}`,
            decision.valueMs,
          );
          return;
        }
        this.counters.fired += 1;
        this.record(
          rule,
          now,
          'fired',
          `${rule.action}: ${what} after ${decision.windows} windows, ${value}`,
          decision.valueMs,
        );
        this.fireHook(rule, rule.action, decision.valueMs, decision.windows, now);
        return;
      }
      case 'recover': {
        const below = rule.recoverBelowMs ?? rule.aboveMs;
        if (decision.dryRun) {
          this.record(
            rule,
            now,
            'dry-run',
            `would return to the primary: ${decision.windows} windows below ${below} ms`,
            decision.valueMs,
          );
          return;
        }
        this.counters.recovered += 1;
        this.record(
          rule,
          now,
          'recovered',
          `back to the primary: ${decision.windows} windows below ${below} ms, ${value}`,
          decision.valueMs,
        );
        this.fireHook(rule, 'recover', decision.valueMs, decision.windows, now);
      }
    }
  }

  /** New pipes go to the standby while any (non-dry-run) reroute rule holds them there. */
  private switchBackend(now: number): void {
    const backend = this.deps.backend;
    if (!backend) return;
    const wanted: BackendName = this.states.some((state) => state.rerouting) ? 'standby' : 'primary';
    if (backend.backend === wanted) return;
    backend.use(wanted);
    this.record(undefined, now, 'backend', `new pipes now go to the ${wanted} Redis`);
  }

  private fireHook(
    rule: RuleConfig,
    action: SelfHealEvent['action'],
    valueMs: number,
    windows: number,
    now: number,
  ): void {
    if (!rule.hook) return;
    const event: SelfHealEvent = {
      rule: rule.name,
      metric: rule.metric,
      action,
      quantile: rule.quantile,
      valueMs,
      thresholdMs: action === 'recover' ? (rule.recoverBelowMs ?? rule.aboveMs) : rule.aboveMs,
      windows,
      instance: this.deps.instance,
      time: new Date(now).toISOString(),
    };
    const running = this.deps
      .runHook(rule.hook, event)
      .then((outcomes) => {
        for (const outcome of outcomes) {
          if (!outcome.ok) this.counters.hookFailures += 1;
          this.record(
            rule,
            this.deps.clock.now(),
            'hook',
            `${outcome.kind} ${outcome.ok ? 'ok' : 'failed'}: ${outcome.detail}`,
          );
        }
      })
      .catch((error: unknown) => {
        this.counters.hookFailures += 1;
        this.record(rule, this.deps.clock.now(), 'hook', `failed: ${String(error)}`);
      })
      .finally(() => this.hooks.delete(running));
    this.hooks.add(running);
  }

  private record(
    rule: RuleConfig | undefined,
    now: number,
    kind: AuditEntry['kind'],
    detail: string,
    valueMs?: number,
  ): void {
    this.deps.audit.add({
      time: new Date(now).toISOString(),
      instance: this.deps.instance,
      rule: rule?.name ?? '-',
      kind,
      detail,
      ...(valueMs !== undefined && { valueMs: Math.round(valueMs * 1000) / 1000 }),
    });
  }
}
