import { describe, expect, it } from 'vitest';
import { CapacityError } from '../src/broker/errors.js';
import {
  MAX_GROUPS,
  MAX_KEYS_PER_TOPIC,
  MAX_WAITERS,
  MemoryTopics,
} from '../src/broker/memory/memory-topics.js';
import type { TopicStoreOptions } from '../src/broker/topic-types.js';
import { runTopicTests } from './topic-contract.js';

runTopicTests({ name: 'memory', newStore: async (options) => new MemoryTopics(options) });

const OPTIONS: TopicStoreOptions = {
  boundsOf: () => ({ maxRecords: 10, maxBytes: 1000, maxAgeMs: 60_000 }),
  idempotencyWindowMs: 60_000,
  claimAfterMs: 1000,
  maxTopics: 10,
};
const x = new Uint8Array([120]);

describe('memory topics: bounds of its own maps', () => {
  it('refuses a group past MAX_GROUPS', async () => {
    const store = new MemoryTopics(OPTIONS);
    await store.append({ topic: 't/a', records: [x] });
    const read = (group: string) =>
      store.read({ topic: 't/a', group, consumer: 'c', count: 1, waitMs: 0, start: 'latest' });
    for (let i = 0; i < MAX_GROUPS; i++) await read(`g${i}`);
    await expect(read('one-more')).rejects.toBeInstanceOf(CapacityError);
    await read('g0');
  });

  it('forgets the oldest idempotency key past MAX_KEYS_PER_TOPIC', async () => {
    const store = new MemoryTopics(OPTIONS);
    for (let i = 0; i <= MAX_KEYS_PER_TOPIC; i++)
      await store.append({ topic: 't/a', records: [x], idempotencyKey: `k${i}` });
    expect((await store.append({ topic: 't/a', records: [x], idempotencyKey: 'k0' })).replay).toBe(false);
    expect(
      (await store.append({ topic: 't/a', records: [x], idempotencyKey: `k${MAX_KEYS_PER_TOPIC}` })).replay,
    ).toBe(true);
  });

  it('refuses a waiting read past MAX_WAITERS (429), and ends every wait at close', async () => {
    const store = new MemoryTopics(OPTIONS);
    const read = (consumer: string) =>
      store.read({ topic: 't/a', group: 'g', consumer, count: 1, waitMs: 60_000, start: 'earliest' });
    const waiting = Array.from({ length: MAX_WAITERS }, (_, i) => read(`c${i}`));
    await expect(read('one-more')).rejects.toMatchObject({ limit: 'waiting' });
    await store.close();
    expect((await Promise.all(waiting)).every((records) => records.length === 0)).toBe(true);
  });
});
