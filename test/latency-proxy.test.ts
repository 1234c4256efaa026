import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type LatencyProxy, startLatencyProxy } from './helpers/latency-proxy.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;

/** `promise`, or an error naming `what` after `ms`: a broken proxy fails the test instead of hanging it. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Milliseconds one PING takes, end to end. */
async function timePing(client: Redis): Promise<number> {
  const started = performance.now();
  expect(await client.ping()).toBe('PONG');
  return performance.now() - started;
}

let redis: TestRedis;
let proxy: LatencyProxy;
let client: Redis;

beforeAll(async () => {
  redis = await startTestRedis();
  proxy = await startLatencyProxy(redis.port);
  // Retries quickly and forever, so that after a cut the test sees the reconnect rather than a back-off.
  client = new Redis(proxy.url, { retryStrategy: () => 50, connectTimeout: 5_000 });
  client.on('error', () => {});
});

afterAll(async () => {
  client?.disconnect();
  await proxy?.close();
  await redis?.stop();
});

afterEach(() => {
  proxy.setDelay(0);
});

describe('latency proxy', () => {
  it('passes commands through with no delay', async () => {
    expect(proxy.url).toBe(`redis://127.0.0.1:${proxy.port}`);
    expect(proxy.port).not.toBe(redis.port);
    expect(await within(client.ping(), 5_000, 'PING')).toBe('PONG');
    await client.set('plain', 'value');
    expect(await client.get('plain')).toBe('value');
  });

  it('delays every chunk by the set delay, and stops delaying once set back to 0', async () => {
    await client.ping();
    proxy.setDelay(100);
    // The request and the reply are both held back: 200 ms in all, but the contract is only "at least 100".
    const slow = await within(timePing(client), 5_000, 'a delayed PING');
    expect(slow).toBeGreaterThanOrEqual(100);
    expect(slow).toBeLessThan(1_000);

    proxy.setDelay(0);
    const fast = await within(timePing(client), 5_000, 'an undelayed PING');
    expect(fast).toBeLessThan(80);
  });

  it('keeps order when the delay drops while chunks are queued', async () => {
    await client.del('order');
    proxy.setDelay(300);
    const first = client.append('order', 'a');
    // Let the first command reach the proxy and queue there before the delay drops.
    await sleep(50);
    proxy.setDelay(0);
    const second = client.append('order', 'b');
    // A proxy that let `b` overtake would make redis append it first.
    expect(await within(Promise.all([first, second]), 5_000, 'the two APPENDs')).toEqual([1, 2]);
    expect(await client.get('order')).toBe('ab');
  });

  it('round-trips a 5 MiB value byte-exact through a 20 ms delay', async () => {
    const value = randomBytes(5 * MiB);
    proxy.setDelay(20);
    await within(client.set('big', value), 15_000, 'SET of 5 MiB');
    const back = await within(client.getBuffer('big'), 15_000, 'GET of 5 MiB');
    expect(back).not.toBeNull();
    expect(back!.byteLength).toBe(value.byteLength);
    expect(sha256(back!)).toBe(sha256(value));
  });

  it('drops the connection on cut(), and the client reconnects through it', async () => {
    expect(await client.ping()).toBe('PONG');
    const dropped = within(
      new Promise<void>((resolve) => client.once('close', () => resolve())),
      5_000,
      'the client to see the drop',
    );
    const readyAgain = within(
      new Promise<void>((resolve) => client.once('ready', () => resolve())),
      10_000,
      'the client to reconnect',
    );
    proxy.cut();
    await dropped;
    await readyAgain;
    expect(await within(client.ping(), 5_000, 'PING after the reconnect')).toBe('PONG');
  });
});
