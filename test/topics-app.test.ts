import { describe, expect, it } from 'vitest';
import { createApp, TOPICS_UNAVAILABLE } from '../src/app.js';
import { FailoverBroker, type WatchableBroker } from '../src/broker/failover-broker.js';
import { MemoryBroker } from '../src/broker/memory/memory-broker.js';
import { retentionOf } from '../src/broker/topic-bounds.js';
import type { TopicStoreOptions } from '../src/broker/topic-types.js';
import type { Broker } from '../src/broker/types.js';
import { parseConfig } from '../src/config.js';

const LIMITS = { windowBytes: 64 * 1024, maxPipes: 10, maxWaiting: 10 };
const OPTIONS: TopicStoreOptions = {
  boundsOf: () => ({ maxRecords: 10, maxBytes: 1000, maxAgeMs: 60_000 }),
  idempotencyWindowMs: 1000,
  claimAfterMs: 1000,
  maxTopics: 10,
};
const bytes = (text: string) => new TextEncoder().encode(text);

describe('topics: config', () => {
  it('fills in every default, and a retention entry for all topics', () => {
    const { topics } = parseConfig({});
    expect(topics).toMatchObject({ maxRecordBytes: 65536, maxBatchBytes: 1048576, maxBatchRecords: 10000 });
    expect(topics.retention).toEqual([
      { namespace: '', maxRecords: 100000, maxBytes: 67108864, maxAgeMs: 604800000 },
    ]);
    const own = parseConfig({
      topics: { retention: [{ namespace: 'fleet', maxRecords: 5, maxBytes: 50, maxAgeMs: 60_000 }] },
    });
    expect(own.topics.retention.map((entry) => entry.namespace)).toEqual(['fleet', '']);
    expect(() =>
      parseConfig({
        topics: { retention: [{ namespace: 'a/', maxRecords: 1, maxBytes: 1, maxAgeMs: 1000 }] },
      }),
    ).toThrow(/topics\.retention\.0\.namespace/);
  });

  it('bounds a topic by the longest matching namespace, on segment boundaries', () => {
    const boundsOf = retentionOf([
      { namespace: '', maxRecords: 1, maxBytes: 1, maxAgeMs: 1000 },
      { namespace: 'fleet', maxRecords: 2, maxBytes: 2, maxAgeMs: 2000 },
      { namespace: 'fleet/eu', maxRecords: 3, maxBytes: 3, maxAgeMs: 3000 },
    ]);
    expect(boundsOf('fleet/eu/d1').maxRecords).toBe(3);
    expect(boundsOf('fleet/us').maxRecords).toBe(2);
    expect(boundsOf('fleetx/a').maxRecords).toBe(1);
  });
});

describe('topics: where the broker keeps none', () => {
  it('answers 503 with the reason (Workers with pipes in Durable Objects and no Redis)', async () => {
    const memory = new MemoryBroker(LIMITS);
    const noTopics: Broker = {
      resumable: false,
      ready: () => memory.ready(),
      drain: () => memory.drain(),
      close: () => memory.close(),
      stats: () => memory.stats(),
      inspect: (path) => memory.inspect(path),
      openSender: (options) => memory.openSender(options),
      openReceiver: (options) => memory.openReceiver(options),
    };
    const app = createApp(parseConfig({}), { broker: noTopics });
    const response = await app.request('/_/topics/fleet/d1', { method: 'POST', body: 'x' });
    expect(response.status).toBe(503);
    expect(await response.text()).toBe(`[ERROR] ${TOPICS_UNAVAILABLE}\n`);
    // A bad name is still told as such.
    expect((await app.request('/_/topics/a%20b', { method: 'POST', body: 'x' })).status).toBe(400);
  });
});

describe('topics: failover', () => {
  it('goes to the active backend on every call', async () => {
    const primary = new MemoryBroker(LIMITS);
    const standby = new MemoryBroker(LIMITS);
    const failover = new FailoverBroker(
      primary as unknown as WatchableBroker,
      standby as unknown as WatchableBroker,
      { pollMs: 100 },
    );
    const store = failover.openTopics(OPTIONS);
    await store.append({ topic: 't/a', records: [bytes('on primary')] });
    failover.use('standby');
    await store.append({ topic: 't/a', records: [bytes('on standby')] });
    expect((await primary.openTopics(OPTIONS).status('t/a')).records).toBe(1);
    expect((await standby.openTopics(OPTIONS).status('t/a')).records).toBe(1);
    expect((await store.status('t/a')).records).toBe(1);
    await failover.close();
  });
});
