import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisBroker } from '../src/broker/redis/redis-broker.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

let redis: TestRedis;
beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('redis: upload bytes in flight per instance', () => {
  it('stay within one window with many senders at once, whatever the size of their chunks', async () => {
    const windowBytes = 1024 * 1024;
    const broker = new RedisBroker({
      target: { url: redis.url },
      keyPrefix: `t${randomUUID().slice(0, 8)}:`,
      windowBytes,
      maxPipes: 100,
      maxWaiting: 100,
      pollMs: 100,
    });
    await broker.ready();
    const never = new AbortController().signal;
    let most = 0;
    let sampling = true;
    const sample = () => {
      most = Math.max(most, broker.uploadBytesInFlight);
      if (sampling) setImmediate(sample);
    };
    sample();
    try {
      const pipeBytes = 2 * 1024 * 1024;
      const pipes = Array.from({ length: 24 }, async (_, i) => {
        const path = `/bound/${i}`;
        const sender = await broker.openSender({ path, receivers: 1, onEvent: () => {} });
        const receiver = await broker.openReceiver({ path, receivers: 1 });
        await sender.waitForReceivers(never);
        await sender.start({ headers: [] });
        await receiver.waitForStart(never);
        // Half the senders write 64 KiB chunks (Node's socket reads), half 1 MiB ones (Bun hands over that much).
        const chunkBytes = i % 2 === 0 ? 64 * 1024 : 1024 * 1024;
        const sent = (async () => {
          for (let at = 0; at < pipeBytes; at += chunkBytes) {
            await sender.write(new Uint8Array(chunkBytes).fill((at / chunkBytes + i) % 256));
            most = Math.max(most, broker.uploadBytesInFlight);
          }
          await sender.end();
        })();
        let got = 0;
        let wrong = 0;
        for (let chunk = await receiver.read(); chunk; chunk = await receiver.read()) {
          for (let k = 0; k < chunk.byteLength; k += 4096) {
            if (chunk[k] !== (Math.floor((got + k) / chunkBytes) + i) % 256) wrong += 1;
          }
          got += chunk.byteLength;
        }
        await sent;
        return { got, wrong };
      });
      for (const { got, wrong } of await Promise.all(pipes)) {
        expect(got).toBe(pipeBytes);
        expect(wrong).toBe(0);
      }
      // The bound was reached (the test pressed on it) and never passed.
      expect(most).toBeGreaterThan(windowBytes / 2);
      expect(most).toBeLessThanOrEqual(windowBytes);
      expect(broker.uploadBytesInFlight).toBe(0);
    } finally {
      sampling = false;
      await broker.close();
    }
  }, 60_000);
});
