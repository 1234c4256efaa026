import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { RedisBroker } from '../src/broker/redis/redis-broker.js';
import type { Broker } from '../src/broker/types.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';
import { runTopicTests } from './topic-contract.js';

let redis: TestRedis;
const brokers: Broker[] = [];
beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await Promise.all(brokers.map((broker) => broker.close()));
  await redis?.stop();
});

runTopicTests({
  name: 'redis',
  // Claims and key expiry follow Redis's own time (XPENDING IDLE, PX): the suite waits for them.
  serverTime: true,
  newStore: async (options) => {
    // A key prefix of its own per store: tests never see each other's topics.
    const broker = new RedisBroker({
      target: { url: redis.url },
      keyPrefix: `t${randomUUID().slice(0, 8)}:`,
      windowBytes: 1024 * 1024,
      maxPipes: 10,
      maxWaiting: 10,
    });
    await broker.ready();
    brokers.push(broker);
    return broker.openTopics(options);
  },
});
