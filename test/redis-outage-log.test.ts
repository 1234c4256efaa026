import { afterAll, describe, expect, it } from 'vitest';
import { type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let redis: TestRedis | undefined;
let server: ServerProcess | undefined;
afterAll(async () => {
  server?.kill();
  await redis?.stop();
});

async function until(condition: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await delay(50);
  }
}

describe('a Redis outage after a successful start (issue 11, item 11)', () => {
  it('is said once when it begins and once when it ends, without ioredis stack traces', async () => {
    redis = await startTestRedis();
    server = await spawnServer(['--redis', redis.url]);
    await redis.stop();
    const lost = `edgepipe: lost Redis at ${redis.url}: ECONNREFUSED; reconnecting`;
    await until(() => server!.output().includes(lost), 'the outage is reported');
    // Long enough for several reconnect attempts of each of the instance's connections (backoff up to 2 s).
    await delay(4000);
    await redis.start();
    await until(() => server!.output().includes(`edgepipe: Redis at ${redis!.url} is back`), 'it is back');
    const output = server.output();
    expect(output).not.toContain('Unhandled error event');
    expect(output.split(lost).length - 1).toBe(1);
  });
});
