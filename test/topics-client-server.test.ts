// The topic client core against a real listener in this process (memory broker), with the system clock
// and fast retries; the client's fetch is the platform's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/adapter/node/serve.js';
import { RefusedError } from '../src/client/errors.js';
import { MemoryBatchQueue } from '../src/client/topics/batch-queue.js';
import { BatchSealer } from '../src/client/topics/batch-seal.js';
import { type ConsumedRecord, consume } from '../src/client/topics/consumer.js';
import { publishBatch, type TopicRequestOptions } from '../src/client/topics/publisher.js';
import { encodeRecords } from '../src/client/topics/record-framing.js';
import { report } from '../src/client/topics/reporter.js';
import type { TopicEvent } from '../src/client/topics/topic-events.js';
import { topicUrl } from '../src/client/topics/topic-url.js';
import { systemClock } from '../src/client/transfer-events.js';
import { systemClock as systemTimers } from '../src/clock.js';
import { startTestServer } from './helpers/server.js';

let server: RunningServer;
const text = (s: string) => new TextEncoder().encode(s);
const strings = (records: readonly ConsumedRecord[]) => records.map((r) => new TextDecoder().decode(r.data));

const base = (events: TopicEvent[] = []): TopicRequestOptions => ({
  headers: [],
  fetch,
  retry: { baseMs: 10, capMs: 50, budgetMs: 2000 },
  clock: systemClock,
  requestTimeoutMs: 5000,
  onEvent: (event) => events.push(event),
});

beforeAll(async () => {
  server = await startTestServer({ topics: { claimAfterMs: 200, maxRecordBytes: 1024 } });
});

afterAll(async () => {
  await server?.close();
});

async function drain(topic: string, group: string, extra: Partial<Parameters<typeof consume>[0]> = {}) {
  const got: ConsumedRecord[] = [];
  await consume({
    ...base(),
    url: topicUrl(topic, server.url),
    group,
    consumer: 'c',
    count: 100,
    waitMs: 100,
    maxAnswerBytes: 1 << 20,
    once: true,
    handle: async (records) => {
      got.push(...records);
      return true;
    },
    ...extra,
  });
  return got;
}

describe('the topic client against a real server', () => {
  it('publishes a batch under its key; the same key again is answered as a replay and stored once', async () => {
    const url = topicUrl('core/replay', server.url);
    const batch = { key: 'dev:0', body: encodeRecords([text('a'), text('b')]), records: 2 };
    const first = await publishBatch(base(), url, batch, true);
    expect(first).toMatchObject({ count: 2, replay: false });
    const again = await publishBatch(base(), url, batch, true);
    expect(again).toMatchObject({ replay: true, first: first.first, last: first.last });
    expect(strings(await drain('core/replay', 'g'))).toEqual(['a', 'b']);
  });

  it('refuses for good what the server refuses (a record over maxRecordBytes: 413)', async () => {
    const url = topicUrl('core/big', server.url);
    const batch = { key: 'dev:0', body: encodeRecords([new Uint8Array(2048)]), records: 1 };
    await expect(publishBatch(base(), url, batch, false)).rejects.toMatchObject({ status: 413 });
    await expect(publishBatch(base(), url, batch, false)).rejects.toBeInstanceOf(RefusedError);
  });

  it('reports records in batches, drops a batch refused as such with a notice, and goes on', async () => {
    const events: TopicEvent[] = [];
    async function* records() {
      yield text('one');
      yield new Uint8Array(2000); // alone in its batch (over --batch-bytes), refused by the server
      yield text('two');
    }
    const result = await report({
      ...base(events),
      url: topicUrl('core/report', server.url),
      records: records(),
      queue: new MemoryBatchQueue('dev.run', 1 << 20),
      batchBytes: 100,
      batchMs: 20,
      timers: systemTimers,
      gzip: false,
    });
    expect(result).toEqual({ batches: 2, records: 2, refused: 1 });
    expect(events.some((e) => e.type === 'notice' && /dropped batch dev.run:1/.test(e.text))).toBe(true);
    expect(strings(await drain('core/report', 'g'))).toEqual(['one', 'two']);
  });

  it('seals batches on the way in and opens them on the way out', async () => {
    const key = { kind: 'key' as const, key: new Uint8Array(32).fill(3) };
    async function* records() {
      for (let i = 0; i < 20; i++) yield text(`sealed ${i}`);
    }
    await report({
      ...base(),
      url: topicUrl('core/sealed', server.url),
      records: records(),
      queue: new MemoryBatchQueue('dev.run', 1 << 20),
      batchBytes: 60,
      batchMs: 20,
      timers: systemTimers,
      gzip: true,
      sealer: new BatchSealer(key),
    });
    const opened = await drain('core/sealed', 'g', { key });
    expect(strings(opened)).toEqual(Array.from({ length: 20 }, (_, i) => `sealed ${i}`));
    // Records of one sealed batch share its id: fewer ids than records.
    expect(new Set(opened.map((r) => r.id)).size).toBeLessThan(20);
  });

  it('a handler that fails leaves the records pending: the next read hands them out again', async () => {
    await publishBatch(
      base(),
      topicUrl('core/retry', server.url),
      { key: 'k:0', body: encodeRecords([text('x')]), records: 1 },
      false,
    );
    let calls = 0;
    const seen: number[] = [];
    await consume({
      ...base(),
      url: topicUrl('core/retry', server.url),
      group: 'g',
      consumer: 'c',
      count: 10,
      waitMs: 100,
      maxAnswerBytes: 1 << 20,
      once: true,
      handle: async (records) => {
        calls += 1;
        seen.push(records[0]!.deliveries);
        return calls > 2;
      },
    });
    expect(seen).toEqual([1, 2, 3]);
    expect(await drain('core/retry', 'g')).toEqual([]);
  });

  it('a consumer that vanished has its records claimed by another after claimAfterMs', async () => {
    await publishBatch(
      base(),
      topicUrl('core/claim', server.url),
      { key: 'k:0', body: encodeRecords([text('y')]), records: 1 },
      false,
    );
    // Consumer a takes the record and never acknowledges it.
    const url = new URL(topicUrl('core/claim', server.url));
    url.search = '?group=g&consumer=a&wait=0';
    expect(await (await fetch(url)).text()).toContain('"data":"y"');
    expect(await drain('core/claim', 'g')).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const claimed = await drain('core/claim', 'g');
    expect(strings(claimed)).toEqual(['y']);
    expect(claimed[0]!.deliveries).toBe(2);
  });
});
