import { mkdtempSync, writeFileSync } from 'node:fs';
import { type ClientRequest, get, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const WAITING = 10_000;

let redis: TestRedis;
let server: ServerProcess;
let admin: Redis;

/** A GET on a socket of its own (as 10,000 separate clients would have); resolves with its body. */
function waitingGet(url: string): { request: ClientRequest; body: Promise<string> } {
  const request = get(url, { agent: false, timeout: 120_000 });
  const body = new Promise<string>((resolve) => {
    request.on('response', (response: IncomingMessage) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        text += chunk;
      });
      response.on('end', () => resolve(text));
      response.on('error', () => resolve(''));
    });
    request.on('error', () => resolve(''));
  });
  return { request, body };
}

beforeAll(async () => {
  redis = await startTestRedis();
  admin = new Redis(redis.url);
  // Room for the receivers and one sender beside them.
  const config = join(mkdtempSync(join(tmpdir(), 'edgepipe-conn-')), 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      limits: {
        maxWaiting: WAITING + 10,
        maxPipes: WAITING + 10,
        // Every receiver comes from 127.0.0.1.
        perClient: { requestsPerSecond: 0, maxPipes: WAITING + 10, maxWaiting: WAITING + 10 },
      },
    }),
  );
  server = await spawnServer(['--redis', redis.url, '--config', config]);
});
afterAll(async () => {
  server?.kill();
  admin?.disconnect();
  await redis?.stop();
});

async function health(): Promise<{ pipes: number; waiting: number }> {
  const response = await fetch(`${server.url}/_/health`);
  return ((await response.json()) as { broker: { pipes: number; waiting: number } }).broker;
}

describe('connections', () => {
  it(`${WAITING} waiting receivers on one instance share a handful of Redis connections`, async () => {
    const waiting = Array.from({ length: WAITING }, (_, i) => waitingGet(`${server.url}/many/${i}`));
    const deadline = Date.now() + 60_000;
    while ((await health()).waiting < WAITING && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect((await health()).waiting).toBe(WAITING);

    const clients = (await admin.client('LIST')) as string;
    const lines = clients.trim().split('\n');
    // Everything but this test's own connection belongs to the server.
    const serverConnections = lines.length - 1;
    expect(serverConnections).toBeGreaterThan(0);
    expect(serverConnections).toBeLessThanOrEqual(3);
    const subscriber = lines.find((line) => / sub=[1-9]/.test(line));
    expect(subscriber).toMatch(new RegExp(` sub=${WAITING} `));

    // They really are waiting: one of them gets its transfer.
    const sent = await fetch(`${server.url}/many/1234`, { method: 'PUT', body: 'hello' });
    expect(await sent.text()).toContain('Sent successfully');
    expect(await waiting[1234]!.body).toBe('hello');

    for (const { request } of waiting) request.destroy();
    await Promise.all(waiting.map(({ body }) => body));
    const drained = Date.now() + 30_000;
    while ((await health()).waiting > 0 && Date.now() < drained) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(await health()).toEqual({ pipes: 0, waiting: 0 });
    // Every channel of those receivers is unsubscribed again.
    expect(await admin.pubsub('NUMSUB', `ep:{/many/1}:e`)).toEqual(['ep:{/many/1}:e', 0]);
  }, 120_000);
});
