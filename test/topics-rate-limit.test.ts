import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/adapter/node/serve.js';
import { startTestServer } from './helpers/server.js';

// The per-client rate limit on topics, at its defaults (20 per second, bursts of 200): a consumer draining
// a backlog (a read and an ack per batch) and a producer appending batch after batch are never refused, as
// completed pipe transfers are not; reads that wait in vain and refused requests are charged.
describe('topics under the per-client rate limit (defaults)', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ topics: { maxWaitMs: 1000 } });
  });
  afterAll(async () => {
    await server.close();
  });

  it('300 appends, then 300 reads with their acks, from one client: none refused', async () => {
    const topic = `${server.url}/_/topics/busy/device-1`;
    for (let i = 0; i < 300; i++) {
      const appended = await fetch(topic, { method: 'POST', body: `r${i}\n` });
      expect(appended.status).toBe(201);
    }
    for (let i = 0; i < 300; i++) {
      const read = await fetch(`${topic}?group=g&consumer=c&count=1&wait=0`);
      expect(read.status).toBe(200);
      expect(read.headers.get('topic-delivered')).toBe('1');
      const [line] = (await read.text()).split('\n');
      const { id, data } = JSON.parse(line!) as { id: string; data: string };
      expect(data).toBe(`r${i}`);
      const acked = await fetch(`${topic}:ack?group=g`, { method: 'POST', body: id });
      expect(acked.status).toBe(200);
    }
  });

  it('reads that find nothing are charged: 429 after the burst', async () => {
    const topic = `${server.url}/_/topics/idle/device-1`;
    const statuses: number[] = [];
    for (let i = 0; i < 230; i++) {
      const read = await fetch(`${topic}?group=g&consumer=c&wait=0`);
      await read.arrayBuffer();
      statuses.push(read.status);
      if (read.status === 200) expect(read.headers.get('topic-delivered')).toBe('0');
    }
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(0);
    expect(statuses.indexOf(429)).toBeGreaterThanOrEqual(190);
  });

  it('refused requests are charged too: a bad group name meets 429 after the burst', async () => {
    // A fresh client address of its own on loopback (127.0.0.0/8 all reaches lo on Linux).
    const other = await startTestServer({});
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 230; i++) {
        const read = await fetch(`${other.url}/_/topics/bad/device-1?group=no!&consumer=c&wait=0`);
        await read.arrayBuffer();
        statuses.push(read.status);
      }
      expect(statuses.slice(0, 190).every((status) => status === 400)).toBe(true);
      expect(statuses).toContain(429);
    } finally {
      await other.close();
    }
  });
});
