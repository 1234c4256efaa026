import { hostname } from 'node:os';
import { defaultBroker } from '../../app.js';
import { FailoverBroker } from '../../broker/failover-broker.js';
import type { RedisTarget } from '../../broker/redis/connection.js';
import { RedisBroker } from '../../broker/redis/redis-broker.js';
import type { Broker } from '../../broker/types.js';
import { systemClock } from '../../clock.js';
import type { Config } from '../../config.js';
import { type AuditStore, AuditTrail } from '../../selfheal/audit-trail.js';
import { type LatencySink, LatencyWindows } from '../../selfheal/latency-windows.js';
import { runHook } from '../../selfheal/run-hook.js';
import { StallMeter } from '../../selfheal/stall-meter.js';
import { type BackendSwitch, Watcher, type WatcherProbe } from '../../selfheal/watcher.js';
import { runCommand } from './command-runner.js';

/** What a Node instance runs: its broker, and the watcher that measures and heals it. */
export interface NodeRuntime {
  readonly broker: Broker;
  readonly latency: LatencyWindows;
  readonly watcher: Watcher;
}

function targetOf(config: Config): RedisTarget | undefined {
  const { redis, cluster } = config.broker;
  if (redis) return { url: redis };
  if (!cluster) return undefined;
  return {
    cluster: cluster.map((seed) => {
      const at = seed.lastIndexOf(':');
      return { host: seed.slice(0, at), port: Number(seed.slice(at + 1)) };
    }),
  };
}

function redisBroker(
  config: Config,
  target: RedisTarget,
  latency: LatencySink,
  metric: 'redis' | 'redis_standby',
): RedisBroker {
  return new RedisBroker({
    target,
    windowBytes: config.broker.windowBytes ?? 8 * 1024 * 1024,
    maxPipes: config.limits.maxPipes,
    maxWaiting: config.limits.maxWaiting,
    resumeGraceMs: config.broker.resumeGraceMs,
    socketBufferBytes: config.broker.socketBufferBytes,
    // Keys outlive the longest wait, so a waiting party's pipe never expires under it.
    ttlMs: config.limits.waitTimeoutMs + 5 * 60_000,
    latency,
    redisMetric: metric,
  });
}

/**
 * The backend the config asks for (memory; Redis; Redis with a standby behind a failover broker) and a
 * self-heal watcher over it: probes of each Redis, the audit trail in each Redis (and in memory), hooks
 * that can run commands.
 */
export function runtimeFromConfig(
  config: Config,
  options: { log?: (line: string) => void; broker?: Broker } = {},
): NodeRuntime {
  // A server records every chunk for as long as it runs: flat counters (under a MiB) cost the least.
  const latency = new LatencyWindows('flat');
  // The Redis round trips are the Redis's: this process's own stalls are taken out of them.
  const stalls = new StallMeter(systemClock);
  const redisLatency = stalls.correcting(latency, ['redis', 'redis_standby']);
  const target = options.broker ? undefined : targetOf(config);
  const probes: WatcherProbe[] = [];
  const stores: AuditStore[] = [];
  let broker: Broker;
  let backend: BackendSwitch | undefined;
  if (options.broker) {
    broker = options.broker;
  } else if (!target) {
    broker = defaultBroker(config, latency);
  } else {
    const primary = redisBroker(config, target, redisLatency, 'redis');
    probes.push({ metric: 'redis', probe: () => primary.ping() });
    stores.push(primary.auditStore());
    broker = primary;
    if (config.broker.standby) {
      const standby = redisBroker(config, { url: config.broker.standby }, redisLatency, 'redis_standby');
      probes.push({ metric: 'redis_standby', probe: () => standby.ping() });
      stores.push(standby.auditStore());
      const failover = new FailoverBroker(primary, standby, { pollMs: 1000 });
      broker = failover;
      backend = failover;
    }
  }
  const watcher = new Watcher({
    config: config.selfheal,
    windows: latency,
    instance: `${hostname()}:${process.pid}`,
    clock: systemClock,
    probes,
    ...(backend && { backend }),
    // Only where something is probed: the meter's timer is the cost of a correction.
    ...(probes.length > 0 && { stalls }),
    runHook: (hook, event) => runHook(hook, event, { runCommand }),
    audit: new AuditTrail(config.selfheal.auditSize, stores, options.log ?? console.log),
  });
  return { broker, latency, watcher };
}

/** A short name of the backend for the start-up line. */
export function brokerName(config: Config): string {
  const standby = config.broker.standby ? `, standby at ${new URL(config.broker.standby).host}` : '';
  if (config.broker.redis) return `Redis broker at ${new URL(config.broker.redis).host}${standby}`;
  if (config.broker.cluster) {
    return `Redis Cluster broker (${config.broker.cluster.length} seed nodes)${standby}`;
  }
  return 'in-memory broker';
}
