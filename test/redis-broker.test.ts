import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisBroker } from '../src/broker/redis/redis-broker.js';
import type { SenderEvent } from '../src/broker/types.js';
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

/** A broker on the test's Redis with small limits; brokers given one prefix are instances of one deployment. */
async function readyBroker(keyPrefix: string, pollMs = 100): Promise<RedisBroker> {
  const broker = new RedisBroker({
    target: { url: redis.url },
    keyPrefix,
    windowBytes: 1024 * 1024,
    maxPipes: 10,
    maxWaiting: 10,
    pollMs,
  });
  await broker.ready();
  return broker;
}

describe('redis: close', () => {
  it('lets a receiver that was just cancelled leave first: its sender on another instance hears it', async () => {
    // The Workers adapter closes a request's broker as soon as the receiver's body is cancelled.
    const keyPrefix = `t${randomUUID().slice(0, 8)}:`;
    const [senders, receivers] = await Promise.all([readyBroker(keyPrefix), readyBroker(keyPrefix)]);
    const never = new AbortController().signal;
    try {
      let heard: () => void = () => {};
      const aborted = new Promise<string>((resolve) => {
        heard = () => resolve('heard');
      });
      const sender = await senders.openSender({
        path: '/close/leave',
        receivers: 1,
        onEvent: (event: SenderEvent) => {
          if (event.type === 'receiver-aborted' && event.remaining === 0) heard();
        },
      });
      const receiver = await receivers.openReceiver({ path: '/close/leave', receivers: 1 });
      await sender.waitForReceivers(never);
      await sender.start({ headers: [] });
      await receiver.waitForStart(never);
      await sender.write(new Uint8Array(1000));
      expect((await receiver.read())?.byteLength).toBe(1000);
      receiver.cancel();
      await receivers.close();
      const within = new Promise<string>((resolve) => setTimeout(() => resolve('nothing'), 5000));
      expect(await Promise.race([aborted, within])).toBe('heard');
    } finally {
      await Promise.all([senders.close(), receivers.close()]);
    }
  });
});

describe('redis: a small transfer', () => {
  it("learns whether every receiver read the end from the end frame's own reply, not one more HVALS", async () => {
    // Polls far apart: every HVALS counted here follows a message, not the clock.
    const broker = await readyBroker(`t${randomUUID().slice(0, 8)}:`, 10_000);
    const stats = new Redis(redis.url);
    const never = new AbortController().signal;
    try {
      const hvals = async () => {
        const line = (await stats.info('commandstats'))
          .split('\r\n')
          .find((entry) => entry.startsWith('cmdstat_hvals:'));
        return Number(/calls=(\d+)/.exec(line ?? '')?.[1] ?? 0);
      };
      const receiver = await broker.openReceiver({ path: '/small/end', receivers: 1 });
      const sender = await broker.openSender({ path: '/small/end', receivers: 1, onEvent: () => {} });
      await sender.waitForReceivers(never);
      await sender.start({ headers: [] });
      await receiver.waitForStart(never);
      await sender.write(new Uint8Array([1, 2, 3]));
      const before = await hvals();
      const ended = sender.end();
      // The sender waits for the receiver, which has read nothing yet: the end frame's script read the
      // receivers' offsets (one HVALS inside it), and nothing rang since.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await hvals()).toBe(before + 1);
      expect(Array.from((await receiver.read()) ?? [])).toEqual([1, 2, 3]);
      expect(await receiver.read()).toBeNull();
      await ended;
      // The receiver's last report rang: one look, which found it done.
      expect(await hvals()).toBe(before + 2);
    } finally {
      stats.disconnect();
      await broker.close();
    }
  });

  it('gives a waiting receiver the headers in the start message, byte for byte, with no second read', async () => {
    const broker = await readyBroker(`t${randomUUID().slice(0, 8)}:`);
    const stats = new Redis(redis.url);
    const never = new AbortController().signal;
    try {
      const calls = async (command: string) => {
        const line = (await stats.info('commandstats'))
          .split('\r\n')
          .find((entry) => entry.startsWith(`cmdstat_${command}:`));
        return Number(/calls=(\d+)/.exec(line ?? '')?.[1] ?? 0);
      };
      const receiver = await broker.openReceiver({ path: '/small/start', receivers: 1 });
      const before = await calls('hmget');
      const started = receiver.waitForStart(never);
      // The receiver has looked once and waits for the start.
      while ((await calls('hmget')) === before) await new Promise((resolve) => setTimeout(resolve, 5));
      const sender = await broker.openSender({ path: '/small/start', receivers: 1, onEvent: () => {} });
      await sender.waitForReceivers(never);
      // Non-ASCII bytes in a value, as a raw latin1 header would bring them, and msgpack's own length bytes.
      const headers = [
        ['content-type', 'text/plain; charset=utf-8'],
        ['content-disposition', `attachment; filename="${'\u00e9\u00ff'.repeat(40)}.txt"`],
      ] as const;
      await sender.start({ headers });
      expect((await started).headers).toEqual(headers);
      expect(await calls('hmget')).toBe(before + 1);
      await sender.write(new Uint8Array([1, 2, 3]));
      const ended = sender.end();
      expect(Array.from((await receiver.read()) ?? [])).toEqual([1, 2, 3]);
      expect(await receiver.read()).toBeNull();
      await ended;
    } finally {
      stats.disconnect();
      await broker.close();
    }
  });
});
