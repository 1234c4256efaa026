import { defaultBroker } from '../../app.js';
import { RedisBroker } from '../../broker/redis/redis-broker.js';
import type { Broker } from '../../broker/types.js';
import type { Config } from '../../config.js';

/** Which backend the config asks for: Redis (one server or a cluster) when configured, memory otherwise. */
export function brokerFromConfig(config: Config): Broker {
  const { redis, cluster, windowBytes } = config.broker;
  if (!redis && !cluster) return defaultBroker(config);
  return new RedisBroker({
    target: redis
      ? { url: redis }
      : {
          cluster: cluster!.map((seed) => {
            const at = seed.lastIndexOf(':');
            return { host: seed.slice(0, at), port: Number(seed.slice(at + 1)) };
          }),
        },
    windowBytes: windowBytes ?? 8 * 1024 * 1024,
    maxPipes: config.limits.maxPipes,
    maxWaiting: config.limits.maxWaiting,
    resumeGraceMs: config.broker.resumeGraceMs,
    // Keys outlive the longest wait, so a waiting party's pipe never expires under it.
    ttlMs: config.limits.waitTimeoutMs + 5 * 60_000,
  });
}

/** A short name of the backend for the start-up line. */
export function brokerName(config: Config): string {
  if (config.broker.redis) return `Redis broker at ${new URL(config.broker.redis).host}`;
  if (config.broker.cluster) return `Redis Cluster broker (${config.broker.cluster.length} seed nodes)`;
  return 'in-memory broker';
}
