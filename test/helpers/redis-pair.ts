import { afterAll, beforeAll } from 'vitest';
import { type ServerProcess, spawnServer } from './processes.js';
import { startTestRedis, type TestRedis } from './redis-server.js';

/** Two edgepipe instances on one Redis of their own: a sender on `a` and a receiver on `b` share pipes. */
export interface RedisPair {
  readonly redis: TestRedis;
  readonly a: ServerProcess;
  readonly b: ServerProcess;
}

/** A suite's fixture: the pair is started before the suite's tests and stopped after them. */
export function useRedisPair(): RedisPair {
  const pair = {} as { redis: TestRedis; a: ServerProcess; b: ServerProcess };
  beforeAll(async () => {
    pair.redis = await startTestRedis();
    const instance = () => spawnServer(['--redis', pair.redis.url]);
    [pair.a, pair.b] = await Promise.all([instance(), instance()]);
  }, 60_000);
  afterAll(async () => {
    pair.a?.kill();
    pair.b?.kill();
    await pair.redis?.stop();
  });
  return pair;
}
