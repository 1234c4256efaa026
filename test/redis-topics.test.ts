import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CapacityError } from '../src/broker/errors.js';
import { RedisBroker } from '../src/broker/redis/redis-broker.js';
import { MAX_BLOCKING_CONNECTIONS, MAX_GROUPS_PER_NAMESPACE } from '../src/broker/redis/redis-topics.js';
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

/** A ready broker on the suite's Redis under a key prefix of its own; `tracked` ones close after the suite. */
async function readyBroker(
  keyPrefix = `t${randomUUID().slice(0, 8)}:`,
  tracked = true,
): Promise<RedisBroker> {
  const broker = new RedisBroker({
    target: { url: redis.url },
    keyPrefix,
    windowBytes: 1024 * 1024,
    maxPipes: 10,
    maxWaiting: 10,
  });
  await broker.ready();
  if (tracked) brokers.push(broker);
  return broker;
}

/** The topic store of the waiting-read tests: small bounds, 100 topics. */
function storeOf(broker: RedisBroker) {
  return broker.openTopics({
    boundsOf: () => ({ maxRecords: 100, maxBytes: 100_000, maxAgeMs: 3600_000 }),
    idempotencyWindowMs: 60_000,
    claimAfterMs: 30_000,
    maxTopics: 100,
  });
}

runTopicTests({
  name: 'redis',
  // Claims and key expiry follow Redis's own time (XPENDING IDLE, PX): the suite waits for them.
  serverTime: true,
  newStore: async (options) => {
    // A key prefix of its own per store: tests never see each other's topics.
    return (await readyBroker()).openTopics(options);
  },
});

describe('redis topics: waiting reads', () => {
  it('block on at most MAX_BLOCKING_CONNECTIONS connections of their own, never stalling other commands', async () => {
    const store = storeOf(await readyBroker());
    const admin = new Redis(redis.url);
    const clients = async () =>
      String(await admin.client('LIST'))
        .trim()
        .split('\n').length;
    try {
      const before = await clients();
      const waiting = Array.from({ length: MAX_BLOCKING_CONNECTIONS + 8 }, (_, i) => {
        // Each reader first takes and acknowledges what its topic holds, then waits for its next record.
        return store
          .append({ topic: `w/${i}`, records: [new TextEncoder().encode('first')] })
          .then(() =>
            store.read({
              topic: `w/${i}`,
              group: 'g',
              consumer: 'c',
              count: 10,
              waitMs: 0,
              start: 'earliest',
            }),
          )
          .then((taken) =>
            store.ack({
              topic: `w/${i}`,
              group: 'g',
              records: taken.map(({ topic, id }) => ({ topic, id })),
            }),
          )
          .then(() =>
            store.read({
              topic: `w/${i}`,
              group: 'g',
              consumer: 'c',
              count: 10,
              waitMs: 10_000,
              start: 'earliest',
            }),
          );
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await clients()).toBeLessThanOrEqual(before + MAX_BLOCKING_CONNECTIONS);
      // A command that queued behind a blocked read would wait its 10 s: half of that tells them apart on
      // a loaded machine without timing a fast path.
      const answered = await Promise.race([
        store.status('w/0').then(() => 'answered'),
        new Promise((resolve) => setTimeout(() => resolve('stalled'), 5000)),
      ]);
      expect(answered).toBe('answered');
      await Promise.all(
        waiting.map((_, i) => store.append({ topic: `w/${i}`, records: [new TextEncoder().encode('next')] })),
      );
      const results = await Promise.all(waiting);
      expect(
        results.map((records) => records.map((record) => new TextDecoder().decode(record.data))),
      ).toEqual(waiting.map(() => ['next']));
    } finally {
      admin.disconnect();
    }
  });

  it('many at once: no leak warning from the process, and closing the broker ends every one', async () => {
    // Closed by the test itself.
    const broker = await readyBroker(undefined, false);
    const store = storeOf(broker);
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    try {
      const reads = Array.from({ length: 30 }, (_, i) =>
        store.read({
          topic: `many/${i}`,
          group: 'g',
          consumer: 'c',
          count: 1,
          waitMs: 30_000,
          start: 'earliest',
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      const closedAt = Date.now();
      await broker.close();
      expect(await Promise.all(reads)).toEqual(reads.map(() => []));
      expect(Date.now() - closedAt).toBeLessThan(5000);
      // A warning is emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('refuses a group past MAX_GROUPS_PER_NAMESPACE', async () => {
    const keyPrefix = `t${randomUUID().slice(0, 8)}:`;
    const store = storeOf(await readyBroker(keyPrefix));
    const admin = new Redis(redis.url);
    try {
      // The namespace's group hash filled up to the bound directly: 10000 reads would only take longer.
      const fields = Array.from({ length: MAX_GROUPS_PER_NAMESPACE }, (_, i) => [`g${i}`, '0']).flat();
      await admin.hset(`${keyPrefix}{n}:groups`, ...fields);
      const read = (group: string) =>
        store.read({ topic: 'n/a', group, consumer: 'c', count: 1, waitMs: 0, start: 'earliest' });
      await store.append({ topic: 'n/a', records: [new Uint8Array([1])] });
      await expect(read('one-more')).rejects.toBeInstanceOf(CapacityError);
      expect(await read('g1')).toHaveLength(1);
    } finally {
      admin.disconnect();
    }
  });
});
