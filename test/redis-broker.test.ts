import { randomUUID } from 'node:crypto';
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

describe('redis: close', () => {
  it('lets a receiver that was just cancelled leave first: its sender on another instance hears it', async () => {
    // The Workers adapter closes a request's broker as soon as the receiver's body is cancelled.
    const keyPrefix = `t${randomUUID().slice(0, 8)}:`;
    const make = async () => {
      const broker = new RedisBroker({
        target: { url: redis.url },
        keyPrefix,
        windowBytes: 1024 * 1024,
        maxPipes: 10,
        maxWaiting: 10,
        pollMs: 100,
      });
      await broker.ready();
      return broker;
    };
    const [senders, receivers] = await Promise.all([make(), make()]);
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
