import type { BackendName } from '../broker/failover-broker.js';
import type { Clock } from '../clock.js';
import type { AuditEntry, AuditTrail } from './audit-trail.js';
import type { HookConfig, HookOutcome, SelfHealEvent } from './hook-types.js';
import type { LatencyWindows, MetricName } from './latency-windows.js';
import { type Decision, type RuleMemory, type RuleSnapshot, RuleState } from './rule-state.js';
import type { RuleConfig, SelfhealConfig } from './selfheal-config.js';
import type { StallMeter } from './stall-meter.js';

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
  /**
   * This process's own stalls, taken out of the probe samples the watcher records itself (an unanswered
   * probe's age, a timeout); the backends' connections record theirs through `StallMeter.correcting`. The
   * watcher runs it while it runs. Absent where nothing waits between ticks (Workers' cron).
   */
  readonly stalls?: StallMeter;
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

/**
 * What `/_/selfheal` and `/_/metrics` read of a watcher: a running one, or (on Workers) what the watch
 * object told of its own.
 */
export type WatcherView = Pick<Watcher, 'backend' | 'counters' | 'status'>;

/**
 * Probes per window and backend. The `redis` metrics are the probes' round trips on a connection of their
 * own (see `RedisBroker`), so the probes alone must reach a rule's `minSamples` (10 by default) in every
 * window, idle or busy, with room to spare.
 */
const PROBES_PER_WINDOW = 20;
const MAX_PROBES_IN_FLIGHT = 4;

const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));

/**
 * Every `intervalMs`: closes the latency windows, judges every rule on its metric's window and carries out
 * what they decide (switching the backend new pipes go to, firing hooks), writing every decision to the
 * audit trail; and probes each backend twenty times per window, so idle and recovering ones are measured
 * too. A probe is cut at
 * `probeTimeoutMs` and recorded as that slow, so a Redis that stopped answering looks slow, not silent.
 */
export class Watcher {
  private readonly states: RuleState[];
  private cancelTimer: (() => void) | undefined;
  private ticking = false;
  /** Start times of the probes in flight, per probe. */
  private readonly probing = new Map<WatcherProbe, number[]>();
  private cancelProbes: (() => void) | undefined;
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

  /**
   * Ticks every `intervalMs` on a fixed cadence (a slow tick does not push the next one back), so every
   * window is one interval long and a fault is judged within `forWindows` intervals.
   */
  start(): void {
    const { clock, config } = this.deps;
    this.deps.stalls?.start();
    let next = clock.now() + config.intervalMs;
    const schedule = () => {
      this.cancelTimer = clock.setTimeout(
        () => {
          next += config.intervalMs;
          // After a stall (a paused process) skip the missed ticks rather than firing them in a burst.
          if (next <= clock.now()) next = clock.now() + config.intervalMs;
          void this.tick();
          if (this.cancelTimer) schedule();
        },
        Math.max(0, next - clock.now()),
      );
    };
    schedule();
    const probeEvery = Math.max(10, Math.floor(config.intervalMs / PROBES_PER_WINDOW));
    const probeLoop = () => {
      this.probe();
      this.cancelProbes = clock.setTimeout(probeLoop, probeEvery);
    };
    probeLoop();
  }

  stop(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.cancelProbes?.();
    this.cancelProbes = undefined;
    this.deps.stalls?.stop();
  }

  /** Every rule's state, by name, to carry over to a tick in another process (Workers' cron). */
  memories(): Record<string, RuleMemory> {
    return Object.fromEntries(this.states.map((state) => [state.rule.name, state.memory()]));
  }

  /** Takes up the states `memories` gave; rules not in it (new ones) start fresh. */
  restore(memories: Record<string, RuleMemory>): void {
    for (const state of this.states) {
      const memory = memories[state.rule.name];
      if (memory) state.restore(memory);
    }
  }

  /** Settles once every hook fired so far has finished. */
  async settled(): Promise<void> {
    while (this.hooks.size > 0) await Promise.all([...this.hooks]);
  }

  /**
   * One interval: close the windows, judge every rule on its metric's window, act; then start the probes
   * whose answers land in the next window.
   */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
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

  /**
   * Probes every backend once, in the background, with a few probes at most in flight per backend. When
   * that many are still unanswered, the oldest one's age is the sample instead: a Redis that stopped
   * answering keeps filling its windows (and breaches) rather than going quiet.
   */
  probe(): void {
    const now = this.deps.clock.now();
    for (const probe of this.deps.probes) {
      let started = this.probing.get(probe);
      if (!started) {
        started = [];
        this.probing.set(probe, started);
      }
      if (started.length >= MAX_PROBES_IN_FLIGHT) {
        this.deps.windows.record(probe.metric, this.lessStalls(now - Math.min(...started)));
        continue;
      }
      const list = started;
      list.push(now);
      void this.runProbe(probe).finally(() => list.splice(list.indexOf(now), 1));
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
    const started = clock.now();
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
    // A probe that failed or timed out never reached the instrumented reply: count it as the slowest, less
    // the time this process could not have seen a reply (after a stall, an overdue timeout runs first).
    if (outcome === 'timeout') {
      windows.record(probe.metric, Math.min(config.probeTimeoutMs, this.lessStalls(clock.now() - started)));
    } else if (outcome === 'error') windows.record(probe.metric, config.probeTimeoutMs);
  }

  /** A probe's time that ends now, less this process's stalls within it. */
  private lessStalls(ms: number): number {
    return this.deps.stalls ? this.deps.stalls.corrected(ms) : ms;
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
