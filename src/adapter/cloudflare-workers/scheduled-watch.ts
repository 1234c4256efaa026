import { RedisBroker } from '../../broker/redis/redis-broker.js';
import { systemClock } from '../../clock.js';
import type { Config } from '../../config.js';
import { AuditTrail } from '../../selfheal/audit-trail.js';
import { LatencyWindows } from '../../selfheal/latency-windows.js';
import type { RuleMemory } from '../../selfheal/rule-state.js';
import { runHook } from '../../selfheal/run-hook.js';
import { type BackendSwitch, Watcher } from '../../selfheal/watcher.js';

/** Where the Worker keeps what a watcher holds in memory elsewhere: the active backend and rule states. */
export const SELFHEAL_STATE = 'selfheal:state';

/** The self-heal state shared by every run of the cron and read by every request. */
export interface StoredSelfheal {
  readonly backend: 'primary' | 'standby';
  readonly memories: Record<string, RuleMemory>;
}

const PROBES = 20;

function brokerFor(config: Config, url: string, latency: LatencyWindows, metric: 'redis' | 'redis_standby') {
  return new RedisBroker({
    target: { url },
    windowBytes: config.broker.windowBytes ?? 8 * 1024 * 1024,
    maxPipes: 1,
    maxWaiting: 1,
    latency,
    redisMetric: metric,
  });
}

/**
 * One self-heal window on Workers with pipes on Redis, run by the watch object's alarm (watch-object.ts),
 * or by the cron trigger (`scheduled`) where the watch object is not bound or does not answer: a Worker has no background timer
 * and no memory between requests, so each run probes the backends for one window, judges the rules with the
 * states the previous run left in Redis, acts (the active backend is stored for requests to read; hooks
 * fire, webhooks only: a Worker cannot run commands) and stores the states again, in both Redis when there
 * is a standby (the primary may be the one that is failing).
 */
export async function scheduledWatch(
  config: Config,
  log: (line: string) => void,
  instance = 'workers-cron',
): Promise<StoredSelfheal | undefined> {
  const primaryUrl = config.broker.redis;
  if (!primaryUrl || config.selfheal.rules.length === 0) return undefined;
  const latency = new LatencyWindows();
  const primary = brokerFor(config, primaryUrl, latency, 'redis');
  const standby = config.broker.standby
    ? brokerFor(config, config.broker.standby, latency, 'redis_standby')
    : undefined;
  const brokers = standby ? [standby, primary] : [primary];
  await Promise.allSettled(brokers.map((broker) => broker.ready()));
  try {
    const stored = await loadState(brokers);
    const backend: BackendSwitch & { backend: 'primary' | 'standby' } = {
      backend: stored.backend,
      use(to) {
        this.backend = to;
      },
    };
    const watcher = new Watcher({
      config: config.selfheal,
      windows: latency,
      instance,
      clock: systemClock,
      probes: [],
      ...(standby && { backend }),
      runHook: (hook, event) => runHook(hook, event),
      audit: new AuditTrail(
        config.selfheal.auditSize,
        brokers.map((broker) => broker.auditStore()),
        log,
      ),
    });
    watcher.restore(stored.memories);
    await probeOneWindow(config, primary, standby, latency);
    await watcher.tick();
    await watcher.settled();
    const state: StoredSelfheal = { backend: backend.backend, memories: watcher.memories() };
    await Promise.allSettled(
      brokers.map((broker) => broker.saveValue(SELFHEAL_STATE, JSON.stringify(state))),
    );
    return state;
  } finally {
    await Promise.allSettled(brokers.map((broker) => broker.close()));
  }
}

/** The state from the first Redis that has it (the standby first); a fresh one otherwise. */
async function loadState(brokers: RedisBroker[]): Promise<StoredSelfheal> {
  for (const broker of brokers) {
    const value = await broker.loadValue(SELFHEAL_STATE).catch(() => null);
    if (value) return JSON.parse(value) as StoredSelfheal;
  }
  return { backend: 'primary', memories: {} };
}

/** `PROBES` pings of each backend spread over one interval; one that does not answer counts as the timeout. */
async function probeOneWindow(
  config: Config,
  primary: RedisBroker,
  standby: RedisBroker | undefined,
  latency: LatencyWindows,
): Promise<void> {
  const { intervalMs, probeTimeoutMs } = config.selfheal;
  const probe = (broker: RedisBroker, metric: 'redis' | 'redis_standby') =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        latency.record(metric, probeTimeoutMs);
        resolve();
      }, probeTimeoutMs);
      broker.ping().then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        () => {
          clearTimeout(timer);
          latency.record(metric, probeTimeoutMs);
          resolve();
        },
      );
    });
  const rounds: Promise<void>[] = [];
  for (let i = 0; i < PROBES; i++) {
    rounds.push(probe(primary, 'redis'));
    if (standby) rounds.push(probe(standby, 'redis_standby'));
    await new Promise((resolve) => setTimeout(resolve, intervalMs / PROBES));
  }
  await Promise.all(rounds);
}
