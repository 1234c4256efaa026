import { afterEach, describe, expect, it } from 'vitest';
import { CapacityError } from '../src/broker/errors.js';
import type { ReadOptions, TopicBounds, TopicStore, TopicStoreOptions } from '../src/broker/topic-types.js';
import { ManualClock } from './helpers/manual-clock.js';

export interface TopicContractOptions {
  readonly name: string;
  /** A fresh, ready store built with `options`, seeing no other test's topics; the suite closes it. */
  readonly newStore: (options: TopicStoreOptions) => Promise<TopicStore>;
  /**
   * Claims and the idempotency window follow the backend's own time (Redis: XPENDING IDLE, SET PX), not
   * the store's clock: the suite then uses short windows and waits for them in real time.
   */
  readonly serverTime?: boolean;
}

/** Ids and ages start here, as on a real clock (Redis refuses the id 0-0). */
const EPOCH = 1_764_600_000_000;
const WIDE: TopicBounds = { maxRecords: 1000, maxBytes: 1024 * 1024, maxAgeMs: 3600_000 };
const CLAIM_AFTER_MS = 30_000;

const bytes = (text: string) => new TextEncoder().encode(text);
const texts = (records: ReadonlyArray<{ data: Uint8Array }>) =>
  records.map((record) => new TextDecoder().decode(record.data));

/** Whether `promise` is still pending after the event loop has turned a few times. */
async function isPending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  return !settled;
}

/**
 * The topic contract (`TopicStore`, docs/topic-protocol.md), run against every backend: the memory store
 * and the Redis store answer the same way.
 */
export function runTopicTests({ name, newStore, serverTime }: TopicContractOptions): void {
  const claimAfterMs = serverTime ? 300 : CLAIM_AFTER_MS;
  describe(`topic contract: ${name}`, () => {
    const stores: TopicStore[] = [];
    afterEach(async () => {
      await Promise.all(stores.splice(0).map((store) => store.close()));
    });

    async function open(overrides: Partial<TopicStoreOptions> & { bounds?: TopicBounds } = {}) {
      const clock = new ManualClock();
      clock.advance(EPOCH);
      const { bounds, ...rest } = overrides;
      const store = await newStore({
        boundsOf: () => bounds ?? WIDE,
        idempotencyWindowMs: 60_000,
        claimAfterMs,
        maxTopics: 100,
        clock,
        ...rest,
      });
      stores.push(store);
      const read = (options: Partial<ReadOptions> & { consumer: string }) =>
        store.read({ topic: 't/a', group: 'g', count: 100, waitMs: 0, start: 'earliest', ...options });
      return { store, clock, read };
    }

    it('keeps records in the order they were appended, with increasing ids', async () => {
      const { store, read } = await open();
      const one = await store.append({ topic: 't/a', records: [bytes('r1'), bytes('r2')] });
      const two = await store.append({ topic: 't/a', records: [bytes('r3')] });
      expect(one).toMatchObject({ count: 2, replay: false });
      expect(one.first).toMatch(/^\d+-\d+$/);
      const records = await read({ consumer: 'c' });
      expect(texts(records)).toEqual(['r1', 'r2', 'r3']);
      expect(records.map((record) => record.id)).toEqual([one.first, one.last, two.first]);
      expect(records.every((record) => record.topic === 't/a' && record.deliveries === 1)).toBe(true);
      expect(await store.status('t/a')).toMatchObject({
        records: 3,
        bytes: 6,
        firstId: one.first,
        lastId: two.last,
      });
    });

    it('keeps bytes as they are: binary, empty, and not valid UTF-8', async () => {
      const { store, read } = await open();
      const binary = new Uint8Array([0, 255, 0xc3, 0x28, 10, 13]);
      await store.append({ topic: 't/a', records: [binary, new Uint8Array(0)] });
      const records = await read({ consumer: 'c' });
      expect(records.map((record) => [...record.data])).toEqual([[...binary], []]);
    });

    it('stores a batch sent again with the same idempotency key once, and answers its first ids', async () => {
      const { store, read } = await open();
      const first = await store.append({
        topic: 't/a',
        records: [bytes('a'), bytes('b')],
        idempotencyKey: 'dev:1',
      });
      const again = await store.append({
        topic: 't/a',
        records: [bytes('a'), bytes('b')],
        idempotencyKey: 'dev:1',
      });
      expect(again).toEqual({ ...first, replay: true });
      expect((await store.status('t/a')).records).toBe(2);
      // The key is per topic, and another key stores.
      expect(
        (await store.append({ topic: 't/b', records: [bytes('x')], idempotencyKey: 'dev:1' })).replay,
      ).toBe(false);
      expect(
        (await store.append({ topic: 't/a', records: [bytes('c')], idempotencyKey: 'dev:2' })).replay,
      ).toBe(false);
      expect(texts(await read({ consumer: 'c' }))).toEqual(['a', 'b', 'c']);
    });

    it('forgets an idempotency key after its window', async () => {
      const windowMs = serverTime ? 200 : 1000;
      const { store, clock } = await open({ idempotencyWindowMs: windowMs });
      await store.append({ topic: 't/a', records: [bytes('a')], idempotencyKey: 'k' });
      clock.advance(windowMs + 1);
      if (serverTime) await new Promise((resolve) => setTimeout(resolve, windowMs + 20));
      expect((await store.append({ topic: 't/a', records: [bytes('a')], idempotencyKey: 'k' })).replay).toBe(
        false,
      );
      expect((await store.status('t/a')).records).toBe(2);
    });

    it('gives every group every record', async () => {
      const { store, read } = await open();
      await store.append({ topic: 't/a', records: [bytes('1'), bytes('2')] });
      expect(texts(await read({ group: 'ga', consumer: 'c' }))).toEqual(['1', '2']);
      expect(texts(await read({ group: 'gb', consumer: 'c' }))).toEqual(['1', '2']);
    });

    it('gives each record to one consumer of a group', async () => {
      const { store, read } = await open();
      await store.append({ topic: 't/a', records: [bytes('1'), bytes('2'), bytes('3')] });
      const first = await read({ consumer: 'c1', count: 2 });
      const second = await read({ consumer: 'c2' });
      expect(texts(first)).toEqual(['1', '2']);
      expect(texts(second)).toEqual(['3']);
      expect(await read({ consumer: 'c3' })).toEqual([]);
    });

    it('acknowledges records: counted once, never handed out again', async () => {
      const { store, read } = await open();
      await store.append({ topic: 't/a', records: [bytes('1'), bytes('2'), bytes('3')] });
      const records = await read({ consumer: 'c' });
      const acks = records.slice(0, 2).map(({ topic, id }) => ({ topic, id }));
      expect(await store.ack({ topic: 't/a', group: 'g', records: acks })).toBe(2);
      expect(await store.ack({ topic: 't/a', group: 'g', records: acks })).toBe(0);
      expect(await store.ack({ topic: 't/a', group: 'g', records: [{ topic: 't/a', id: '1-0' }] })).toBe(0);
      const again = await read({ consumer: 'c' });
      expect(texts(again)).toEqual(['3']);
      expect(again[0]!.deliveries).toBe(2);
    });

    it('hands a consumer that comes back its own unacknowledged records first, and nobody else', async () => {
      const { store, read } = await open();
      await store.append({ topic: 't/a', records: [bytes('1'), bytes('2')] });
      expect(texts(await read({ consumer: 'c', count: 1 }))).toEqual(['1']);
      await store.append({ topic: 't/a', records: [bytes('3')] });
      expect(texts(await read({ consumer: 'other', count: 1 }))).toEqual(['2']);
      const back = await read({ consumer: 'c' });
      expect(texts(back)).toEqual(['1', '3']);
      expect(back.map((record) => record.deliveries)).toEqual([2, 1]);
    });

    it('leaves out what a follow stream delivered already (deliveredUpTo)', async () => {
      const { store, read } = await open();
      const { first } = await store.append({ topic: 't/a', records: [bytes('1')] });
      await read({ consumer: 'c' });
      await store.append({ topic: 't/a', records: [bytes('2')] });
      const next = await read({ consumer: 'c', deliveredUpTo: new Map([['t/a', first]]) });
      expect(texts(next)).toEqual(['2']);
    });

    it('hands records pending on a silent consumer for claimAfterMs to another one', async () => {
      const { store, clock, read } = await open();
      await store.append({ topic: 't/a', records: [bytes('1'), bytes('2')] });
      await read({ consumer: 'gone' });
      const elapse = async (ms: number) => {
        clock.advance(ms);
        if (serverTime) await new Promise((resolve) => setTimeout(resolve, ms));
      };
      await elapse(claimAfterMs / 2);
      expect(await read({ consumer: 'c' })).toEqual([]);
      await elapse(claimAfterMs / 2 + 20);
      const claimed = await read({ consumer: 'c' });
      expect(texts(claimed)).toEqual(['1', '2']);
      expect(claimed.map((record) => record.deliveries)).toEqual([2, 2]);
      // They are c's now: the first consumer, back, does not get them again.
      expect(await read({ consumer: 'gone' })).toEqual([]);
    });

    it('drops the oldest records past maxRecords, whether read or not', async () => {
      const { store, read } = await open({ bounds: { ...WIDE, maxRecords: 3 } });
      await store.append({ topic: 't/a', records: [bytes('1'), bytes('2')] });
      await read({ consumer: 'c', count: 1 });
      const later = await store.append({ topic: 't/a', records: [bytes('3'), bytes('4'), bytes('5')] });
      const status = await store.status('t/a');
      expect(status).toMatchObject({ records: 3, dropped: 2, lastId: later.last });
      // The pending record 1 was dropped: not redelivered.
      expect(texts(await read({ consumer: 'c' }))).toEqual(['3', '4', '5']);
    });

    it('drops the oldest records past maxBytes', async () => {
      const { store } = await open({ bounds: { ...WIDE, maxBytes: 10 } });
      await store.append({ topic: 't/a', records: [bytes('aaaa'), bytes('bbbb'), bytes('cccc')] });
      expect(await store.status('t/a')).toMatchObject({ records: 2, bytes: 8, dropped: 1 });
    });

    it('drops records older than maxAgeMs on append and on read', async () => {
      const { store, clock, read } = await open({ bounds: { ...WIDE, maxAgeMs: 1000 } });
      await store.append({ topic: 't/a', records: [bytes('old')] });
      clock.advance(600);
      await store.append({ topic: 't/a', records: [bytes('mid')] });
      clock.advance(600);
      await store.append({ topic: 't/a', records: [bytes('new')] });
      expect(await store.status('t/a')).toMatchObject({ records: 2, dropped: 1 });
      clock.advance(600);
      expect(texts(await read({ consumer: 'c' }))).toEqual(['new']);
      expect((await store.status('t/a')).records).toBe(1);
    });

    it('reads every topic below a prefix, and acknowledges across them', async () => {
      const { store, read } = await open();
      await store.append({ topic: 'fleet/d1', records: [bytes('a1')] });
      await store.append({ topic: 'fleet/d2', records: [bytes('b1')] });
      await store.append({ topic: 'fleetx/d3', records: [bytes('no')] });
      await store.append({ topic: 'fleet/d1', records: [bytes('a2')] });
      const records = await read({ topic: undefined, prefix: 'fleet', consumer: 'c' });
      expect(records.map((record) => `${record.topic}=${texts([record])[0]}`).sort()).toEqual([
        'fleet/d1=a1',
        'fleet/d1=a2',
        'fleet/d2=b1',
      ]);
      const acks = records.map(({ topic, id }) => ({ topic, id }));
      expect(await store.ack({ prefix: 'fleet', group: 'g', records: acks })).toBe(3);
      // A topic that appears later is read too, from its first record.
      await store.append({ topic: 'fleet/d9', records: [bytes('z')] });
      expect(texts(await read({ topic: undefined, prefix: 'fleet', consumer: 'c' }))).toEqual(['z']);
    });

    it('starts a new group at the end with start=latest', async () => {
      const { store, clock, read } = await open();
      await store.append({ topic: 't/a', records: [bytes('before')] });
      clock.advance(5);
      expect(await read({ consumer: 'c', start: 'latest' })).toEqual([]);
      clock.advance(5);
      await store.append({ topic: 't/a', records: [bytes('after')] });
      expect(texts(await read({ consumer: 'c', start: 'latest' }))).toEqual(['after']);
    });

    it('answers a long-poll as soon as a record arrives, and empty when the wait ends', async () => {
      const { store, clock, read } = await open();
      const waiting = read({ consumer: 'c', waitMs: 10_000 });
      expect(await isPending(waiting)).toBe(true);
      await store.append({ topic: 't/a', records: [bytes('late')] });
      expect(texts(await waiting)).toEqual(['late']);

      // Another consumer: c's record stays pending on c.
      const empty = read({ consumer: 'd', waitMs: 500 });
      expect(await isPending(empty)).toBe(true);
      clock.advance(500);
      expect(await empty).toEqual([]);

      const aborted = new AbortController();
      const left = read({ consumer: 'd', waitMs: 10_000, signal: aborted.signal });
      aborted.abort();
      expect(await left).toEqual([]);
    });

    it('wakes a waiting namespace read for a topic that appears while it waits', async () => {
      const { store, read } = await open();
      await store.append({ topic: 'news/d0', records: [bytes('old')] });
      const first = await read({ topic: undefined, prefix: 'news', consumer: 'c' });
      await store.ack({ prefix: 'news', group: 'g', records: first.map(({ topic, id }) => ({ topic, id })) });
      const waiting = read({ topic: undefined, prefix: 'news', consumer: 'c', waitMs: 10_000 });
      expect(await isPending(waiting)).toBe(true);
      await store.append({ topic: 'news/d1', records: [bytes('fresh')] });
      // Well before a blocked read would look again on its own (Redis: after its 1 s slice).
      const answer = await Promise.race([
        waiting,
        new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 600)),
      ]);
      expect(answer === 'late' ? answer : texts(answer)).toEqual(['fresh']);
    });

    it('refuses a new topic past maxTopics, and still appends to the ones it has', async () => {
      const { store } = await open({ maxTopics: 2 });
      await store.append({ topic: 'n/1', records: [bytes('x')] });
      await store.append({ topic: 'n/2', records: [bytes('x')] });
      await expect(store.append({ topic: 'n/3', records: [bytes('x')] })).rejects.toBeInstanceOf(
        CapacityError,
      );
      await store.append({ topic: 'n/1', records: [bytes('y')] });
      expect((await store.status('n/1')).records).toBe(2);
      expect(await store.status('n/3')).toMatchObject({ records: 0, dropped: 0 });
    });
  });
}
