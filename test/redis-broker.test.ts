import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { RedisBroker } from '../src/broker/redis/redis-broker.js';
import { runBrokerTests } from './broker-contract.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

let redis: TestRedis;
beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis?.stop();
});

runBrokerTests({
  name: 'redis',
  newBroker: async (limits) => {
    // A key prefix of its own per broker: tests never see each other's pipes.
    const broker = new RedisBroker({
      target: { url: redis.url },
      keyPrefix: `t${randomUUID().slice(0, 8)}:`,
      ...limits,
      pollMs: 100,
      // A receiver that drops holds its place this long (the contract's "the sender is told").
      resumeGraceMs: 200,
    });
    await broker.ready();
    return broker;
  },
});
