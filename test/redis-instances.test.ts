import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let redis: TestRedis;
let a: ServerProcess;
let b: ServerProcess;
let c: ServerProcess;

beforeAll(async () => {
  redis = await startTestRedis();
  const servers = await Promise.all([0, 1, 2].map(() => spawnServer(['--redis', redis.url])));
  [a, b, c] = servers as [ServerProcess, ServerProcess, ServerProcess];
});
afterAll(async () => {
  for (const server of [a, b, c]) server?.kill();
  await redis?.stop();
});

describe('instances sharing one Redis', () => {
  it('announces the Redis broker at start', () => {
    expect(a.output()).toContain(`(Redis broker at 127.0.0.1:${redis.port}, node `);
  });

  it('sender on A, receiver on B, in both orders, byte-exact', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const receiving = fetch(`${b.url}/x/one`);
    await delay(100);
    const sent = await fetch(`${a.url}/x/one`, {
      method: 'PUT',
      body: data,
      headers: { 'Content-Type': 'application/x-test' },
    });
    const received = await receiving;
    expect(received.headers.get('content-type')).toBe('application/x-test');
    expect(sha256(new Uint8Array(await received.arrayBuffer()))).toBe(sha256(data));
    expect(await sent.text()).toContain('[INFO] Sent successfully!');

    const sending = fetch(`${a.url}/x/two`, { method: 'PUT', body: data });
    await delay(100);
    const received2 = await fetch(`${b.url}/x/two`);
    expect(sha256(new Uint8Array(await received2.arrayBuffer()))).toBe(sha256(data));
    expect(await (await sending).text()).toContain('All receiver(s) was/were received successfully.');
  });

  it('n=2: sender on A, receivers on B and C', async () => {
    const data = randomBytes(20 * 1024 * 1024);
    const receivers = [fetch(`${b.url}/x/n2?n=2`), fetch(`${c.url}/x/n2?n=2`)];
    await delay(100);
    const sent = await fetch(`${a.url}/x/n2?n=2`, { method: 'PUT', body: data });
    const hashes = await Promise.all(
      receivers.map(async (r) => sha256(new Uint8Array(await (await r).arrayBuffer()))),
    );
    expect(hashes).toEqual([sha256(data), sha256(data)]);
    expect(await sent.text()).toContain('Start sending to 2 receiver(s)!');
  });

  it('refusals come from the shared state: a second sender on another instance gets 409', async () => {
    const first = await fetch(`${a.url}/x/busy`, { method: 'PUT', body: 'x' });
    const second = await fetch(`${b.url}/x/busy`, { method: 'PUT', body: 'y' });
    expect(second.status).toBe(409);
    expect(await second.text()).toBe("[ERROR] Another sender has been connected on '/x/busy'.\n");
    const mismatch = await fetch(`${c.url}/x/busy?n=3`);
    expect(mismatch.status).toBe(400);
    const receiving = await fetch(`${c.url}/x/busy`);
    expect(await receiving.text()).toBe('x');
    await first.text();
  });
});
