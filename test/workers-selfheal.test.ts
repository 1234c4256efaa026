// Workers on Durable Objects (issue 16's open items), under workerd through `npm run dev:worker`: self-heal
// on the watch object's alarm, health counting the objects' pipes, and the idle timeout of a native upload.
import { createServer, request as httpRequest, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerProcess } from './helpers/processes.js';
import { startWorker } from './helpers/worker.js';

const ADMIN = 'workers-selfheal-admin';

/** Polls `check` every 100 ms until it gives a value, failing with `what` after `ms`. */
async function eventually<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A webhook receiver on 127.0.0.1 that keeps the JSON bodies it was posted (at most 100). */
async function startHookListener(): Promise<{ server: Server; url: string; events: unknown[] }> {
  const events: unknown[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      if (body.length < 65_536) body += chunk;
    });
    req.on('end', () => {
      if (events.length < 100) events.push(JSON.parse(body));
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}/hook`, events };
}

describe('workers on Durable Objects: self-heal on the watch object', () => {
  let worker: ServerProcess;
  let hooks: Awaited<ReturnType<typeof startHookListener>>;
  beforeAll(async () => {
    hooks = await startHookListener();
    const config = {
      limits: { idleTimeoutMs: 1000 },
      selfheal: {
        intervalMs: 200,
        rules: [
          {
            // Any pipe's set-up is above a tenth of a microsecond: the first transfer fires it.
            name: 'ttfb-tiny',
            metric: 'ttfb',
            aboveMs: 0.0001,
            forWindows: 1,
            minSamples: 1,
            cooldownMs: 0,
            action: 'notify',
            hook: { url: hooks.url, timeoutMs: 2000 },
          },
        ],
      },
    };
    worker = await startWorker({ EDGEPIPE_CONFIG: JSON.stringify(config), EDGEPIPE_ADMIN_TOKEN: ADMIN });
  }, 60_000);
  afterAll(async () => {
    worker?.kill();
    await new Promise((resolve) => hooks?.server.close(resolve));
  });

  it('a ttfb rule fires its webhook from the alarm within seconds, and /_/selfheal shows it', async () => {
    const receiving = fetch(`${worker.url}/wsh/ttfb`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const sent = await fetch(`${worker.url}/wsh/ttfb`, { method: 'PUT', body: 'measured' });
    expect(await (await receiving).text()).toBe('measured');
    expect(await sent.text()).toContain('Sent successfully!');
    const started = Date.now();
    const event = await eventually('no webhook came', 10_000, async () => hooks.events[0]);
    expect(event).toMatchObject({ rule: 'ttfb-tiny', metric: 'ttfb', action: 'notify' });
    expect(Date.now() - started).toBeLessThan(10_000);
    const status = (await (
      await fetch(`${worker.url}/_/selfheal`, { headers: { Authorization: `Bearer ${ADMIN}` } })
    ).json()) as { instance: string; rules: { name: string }[]; events: { kind: string }[] };
    expect(status.instance).toBe('workers-watch-object');
    expect(status.rules.map((rule) => rule.name)).toEqual(['ttfb-tiny']);
    expect(status.events.map((entry) => entry.kind)).toEqual(expect.arrayContaining(['fired', 'hook']));
  }, 30_000);

  it('/_/health counts a waiting pipe reported by its object', async () => {
    const controller = new AbortController();
    const waiting = fetch(`${worker.url}/wsh/health-waits`, { signal: controller.signal }).catch(() => {});
    try {
      const broker = await eventually('health never counted the waiting pipe', 10_000, async () => {
        const health = (await (await fetch(`${worker.url}/_/health`)).json()) as {
          broker: { pipes: number; waiting: number; approximate?: boolean };
        };
        return health.broker.waiting >= 1 ? health.broker : undefined;
      });
      expect(broker.pipes).toBeGreaterThanOrEqual(1);
      expect(broker.approximate).toBe(true);
    } finally {
      controller.abort();
      await waiting;
    }
  }, 30_000);

  it('the idle timeout ends a stalled native upload (n=1): both sides are told', async () => {
    const receiving = fetch(`${worker.url}/wsh/stalled`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const { port } = new URL(worker.url);
    // A declared length the sender never reaches: it sends 1000 bytes and then nothing.
    let text = '';
    let sentAt = Date.now();
    const transcript = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the sender was never cut; its transcript: ${text}`)),
        10_000,
      );
      const req = httpRequest({
        host: '127.0.0.1',
        port,
        method: 'PUT',
        path: '/wsh/stalled',
        headers: { 'Content-Length': '100000' },
      });
      req.on('response', (res) => {
        res.setEncoding('utf8');
        // The error line is the sender's word; under wrangler dev the transcript's end comes only once the
        // client stops sending, so the test stops there.
        res.on('data', (chunk: string) => {
          text += chunk;
          if (text.includes('[ERROR]') && text.endsWith('\n')) {
            clearTimeout(timer);
            resolve(text);
            req.destroy();
          }
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve(text);
        });
        res.on('error', () => {
          clearTimeout(timer);
          resolve(text);
        });
      });
      req.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      req.write(new Uint8Array(1000));
      sentAt = Date.now();
    });
    const cutAfter = Date.now() - sentAt;
    expect(transcript).toContain('[ERROR] The upload sent nothing for 1 s.');
    expect(cutAfter).toBeLessThan(5000);
    const received = await receiving;
    expect(received.status).toBe(200);
    // The receiver's body was declared 100000 bytes long and is cut: its read fails.
    await expect(received.arrayBuffer()).rejects.toThrow();
  }, 30_000);
});
