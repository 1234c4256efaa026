import { systemClock } from '../../clock.js';
import type { Config } from '../../config.js';
import { type AuditStore, AuditTrail } from '../../selfheal/audit-trail.js';
import { LatencyWindows, METRICS, type MetricName } from '../../selfheal/latency-windows.js';
import type { RuleMemory } from '../../selfheal/rule-state.js';
import { runHook } from '../../selfheal/run-hook.js';
import {
  type BackendSwitch,
  Watcher,
  type WatcherCounters,
  type WatcherStatus,
} from '../../selfheal/watcher.js';
import { scheduledWatch } from './scheduled-watch.js';
import { configOf, type DurableObjectState, type Env, pipesBackend } from './worker-env.js';

/** The watch object's name: one per deployment (`env.WATCH.idFromName(WATCH_NAME)`). */
export const WATCH_NAME = 'selfheal';

/** Its internal endpoints (the host is never looked at: a stub's fetch goes to the object itself). */
export const WATCH_URL = { report: 'https://watch/report', status: 'https://watch/status' } as const;

/** What a PipeObject reports (see `WatchReporter`): its counts now and its latency samples since the last. */
export interface WatchReport {
  /** The reporting object's id. */
  readonly from: string;
  readonly pipes: number;
  readonly waiting: number;
  readonly samples: Partial<Record<MetricName, readonly number[]>>;
  /** Samples the reporter dropped since the last report (its batch was full). */
  readonly dropped: number;
}

/** What `GET WATCH_URL.status` answers: `/_/selfheal`, `/_/metrics` and `/_/health` on the Worker read it. */
export interface WatchState {
  readonly status: WatcherStatus;
  readonly counters: WatcherCounters;
  /** The last closed window per metric. */
  readonly windows: Record<string, { count: number; p50: number; p99: number }>;
  /** Sums of the counts the PipeObjects last reported (approximate: up to `REPORT_TTL_MS` old). */
  readonly pipes: number;
  readonly waiting: number;
  readonly reporters: number;
  readonly droppedSamples: number;
}

/** A PipeObject's counts are forgotten this long after its last report (they re-report every few seconds). */
export const REPORT_TTL_MS = 15_000;
/** Objects whose counts are kept at once; beyond it the stalest is forgotten. */
const MAX_REPORTERS = 10_000;
/** Samples taken from one report, per metric (a reporter bounds its batch too). */
const MAX_SAMPLES_PER_REPORT = 4096;
/**
 * The alarm stops when nothing has been reported for this long and no pipe is counted; the next report or
 * request re-arms it. A 1 s alarm on an idle deployment would be 86,400 invocations a day for windows with no
 * samples, which neither breach nor heal a rule (`minSamples`).
 */
const IDLE_STOP_MS = 5 * 60_000;

/** The `instance` of the watch object's audit entries and webhook events. */
const INSTANCE = 'workers-watch-object';

const MEMORIES = 'memories';
const BACKEND = 'backend';
const AUDIT = 'audit';

/** The audit trail kept in the object's storage, so it outlives the object's eviction between alarms. */
class StorageAudit implements AuditStore {
  private lines: string[] | undefined;
  constructor(private readonly storage: DurableObjectState['storage']) {}

  private async load(): Promise<string[]> {
    this.lines ??= (await this.storage.get<string[]>(AUDIT)) ?? [];
    return this.lines;
  }

  async append(entry: string, keep: number): Promise<void> {
    const lines = await this.load();
    lines.push(entry);
    if (lines.length > keep) lines.splice(0, lines.length - keep);
    await this.storage.put(AUDIT, lines);
  }

  async recent(limit: number): Promise<string[]> {
    return (await this.load()).slice(-limit);
  }
}

interface Watch {
  readonly config: Config;
  readonly watcher: Watcher;
  readonly backend: BackendSwitch & { backend: 'primary' | 'standby' };
}

/**
 * The self-heal watcher of a Worker: a singleton object whose alarm runs one watcher window every
 * `selfheal.intervalMs` (a reroute or hook in seconds, where the cron takes minutes). With pipes on Redis a
 * window probes both Redis as the cron does (`redisWindow`). The PipeObjects report their `ttfb`, `chunk` and `request` samples and their counts to it in
 * batches; it keeps the rule memories, the active backend and the audit trail in its storage, since the
 * object may be evicted between alarms. Hooks are webhooks only: a Worker cannot run commands (the audit
 * says so when a hook has one).
 */
export class WatchObject {
  private watch: Watch | undefined;
  /** Parsed once per object life (reports come every 100 ms from every busy pipe object). */
  private configCache: Config | undefined;
  private readonly windows = new LatencyWindows();
  private readonly counts = new Map<string, { pipes: number; waiting: number; at: number }>();
  private lastReportAt = 0;
  private droppedSamples = 0;

  constructor(
    private readonly state: DurableObjectState,
    private readonly env: Env,
  ) {}

  private get config(): Config {
    this.configCache ??= configOf(this.env);
    return this.configCache;
  }

  async fetch(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (request.method === 'POST' && pathname === new URL(WATCH_URL.report).pathname) {
      this.take((await request.json()) as WatchReport);
      await this.arm();
      return new Response(null, { status: 204 });
    }
    if (pathname === new URL(WATCH_URL.status).pathname) {
      await this.arm();
      return Response.json(await this.snapshot());
    }
    return new Response('[ERROR] No such endpoint.\n', { status: 404 });
  }

  /** One window: judge the rules, act, store what the next window needs; then the next alarm. */
  async alarm(): Promise<void> {
    const config = this.config;
    if (config.selfheal.rules.length === 0) return;
    if (pipesBackend(config) === 'redis') return this.redisWindow(config);
    const watch = await this.load();
    if (!watch) return;
    await watch.watcher.tick();
    const { storage } = this.state;
    await storage.put(MEMORIES, watch.watcher.memories());
    await storage.put(BACKEND, watch.backend.backend);
    const now = Date.now();
    this.expire(now);
    const busy = now - this.lastReportAt < IDLE_STOP_MS || this.counts.size > 0;
    if (busy) await storage.setAlarm(now + watch.config.selfheal.intervalMs);
    // Hooks are bounded by their own timeoutMs; the next alarm does not wait for them (it is already set).
    await watch.watcher.settled();
  }

  /**
   * Pipes on Redis: one window of the cron's kind (probes of both Redis spread over an interval, the states
   * and the active backend stored in both, where requests read it), every interval while rules exist. The
   * next alarm is set first: the window itself takes an interval, and alarms do not overlap.
   */
  private async redisWindow(config: Config): Promise<void> {
    const { storage } = this.state;
    await storage.setAlarm(Date.now() + config.selfheal.intervalMs);
    const state = await scheduledWatch(config, (line) => console.log(line), INSTANCE);
    if (state) await storage.put(BACKEND, state.backend);
  }

  /** Sets the alarm when rules exist and none is set (the first request or report after a stop). */
  private async arm(): Promise<void> {
    const config = this.config;
    if (config.selfheal.rules.length === 0) return;
    const { storage } = this.state;
    if ((await storage.getAlarm()) === null) {
      await storage.setAlarm(Date.now() + config.selfheal.intervalMs);
    }
  }

  private take(report: WatchReport): void {
    const now = Date.now();
    this.lastReportAt = now;
    this.droppedSamples += report.dropped;
    for (const metric of METRICS) {
      const samples = report.samples[metric];
      if (!Array.isArray(samples)) continue;
      for (const ms of samples.slice(0, MAX_SAMPLES_PER_REPORT)) {
        if (typeof ms === 'number' && Number.isFinite(ms) && ms >= 0) this.windows.record(metric, ms);
      }
    }
    this.counts.delete(report.from);
    if (report.pipes > 0 || report.waiting > 0) {
      this.counts.set(report.from, { pipes: report.pipes, waiting: report.waiting, at: now });
      // A Map iterates in insertion order, and a report re-inserts: the first key is the stalest.
      if (this.counts.size > MAX_REPORTERS) this.counts.delete(this.counts.keys().next().value!);
    }
  }

  private expire(now: number): void {
    for (const [from, count] of this.counts) {
      if (now - count.at > REPORT_TTL_MS) this.counts.delete(from);
    }
  }

  private async snapshot(): Promise<WatchState> {
    const watch = await this.load();
    this.expire(Date.now());
    let pipes = 0;
    let waiting = 0;
    for (const count of this.counts.values()) {
      pipes += count.pipes;
      waiting += count.waiting;
    }
    const windows: WatchState['windows'] = {};
    for (const [metric, stats] of this.windows.lastWindow()) {
      windows[metric] = { count: stats.count, p50: stats.quantile(0.5), p99: stats.quantile(0.99) };
    }
    const status: WatcherStatus = watch
      ? await watch.watcher.status()
      : { backend: 'primary', instance: INSTANCE, intervalMs: 0, rules: [], events: [] };
    return {
      status,
      counters: watch?.watcher.counters ?? { fired: 0, suppressed: 0, recovered: 0, hookFailures: 0 },
      windows,
      pipes,
      waiting,
      reporters: this.counts.size,
      droppedSamples: this.droppedSamples,
    };
  }

  /** The watcher, built once per object life from the config and the stored memories; none without rules. */
  private async load(): Promise<Watch | undefined> {
    if (this.watch) return this.watch;
    const config = this.config;
    if (config.selfheal.rules.length === 0) return undefined;
    const { storage } = this.state;
    const backend: Watch['backend'] = {
      backend: (await storage.get<'primary' | 'standby'>(BACKEND)) ?? 'primary',
      use(to) {
        this.backend = to;
      },
    };
    const watcher = new Watcher({
      config: config.selfheal,
      windows: this.windows,
      instance: INSTANCE,
      clock: systemClock,
      // Pipes here need no Redis; a Redis's probes stay with the cron (scheduled-watch.ts).
      probes: [],
      ...(config.broker.standby && { backend }),
      runHook: (hook, event) => runHook(hook, event),
      audit: new AuditTrail(config.selfheal.auditSize, [new StorageAudit(storage)], (line) =>
        console.log(line),
      ),
    });
    watcher.restore((await storage.get<Record<string, RuleMemory>>(MEMORIES)) ?? {});
    this.watch ??= { config, watcher, backend };
    return this.watch;
  }
}
