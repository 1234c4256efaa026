// A wait of more than 10 s whose connection breaks, in the client core against real servers (on Redis, and
// in memory) over real HTTP. The client reads such a break as the wait ending (a NAT that dropped an idle connection)
// and waits again. But the transfer may have begun in that moment without the client seeing it: a browser's
// fetch over HTTP/1.1 shows the response only once the upload is done, and a receiver's head can be lost
// with its connection. Each side must then continue the transfer, not open another and be refused (409).
// And where the wait had not begun a transfer, the server may still count it for a while: a 409 to the next
// wait is asked again, not taken as final.
// The clock is the client's own, moved 11 s on: the waits are long only to it.
import { randomBytes, randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/adapter/node/serve.js';
import { receive } from '../src/client/receive.js';
import { send } from '../src/client/send.js';
import { systemClock, type TransferClock, type TransferEvent } from '../src/client/transfer-events.js';
import { plainDecoding, plainEncoding } from '../src/client/wire-format.js';
import { type CuttingProxy, startCuttingProxy } from './helpers/cutting-proxy.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';
import { startTestServer } from './helpers/server.js';

const MiB = 1024 * 1024;
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let redis: TestRedis;
let server: RunningServer;
let inMemory: RunningServer;
let proxy: CuttingProxy | undefined;
beforeAll(async () => {
  redis = await startTestRedis();
  [server, inMemory] = await Promise.all([
    startTestServer({ broker: { redis: redis.url, resumeGraceMs: 10_000 } }),
    startTestServer(),
  ]);
}, 30_000);
afterAll(async () => {
  await Promise.all([server?.close(), inMemory?.close()]);
  await redis?.stop();
});

/** The pipe's state as `HEAD` tells it, once it is `state` (asked every 20 ms, for at most 10 s). */
async function untilState(url: string, state: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const now = (await fetch(url, { method: 'HEAD' })).headers.get('x-edgepipe-state');
    if (now === state) return;
    if (Date.now() > deadline) throw new Error(`${url} stayed ${now}, not ${state}`);
    await delay(20);
  }
}

/**
 * A receiver's wait the server still counts after its client is gone (a NAT dropped it without a reset):
 * a bare GET on a socket of its own, closed after `heldMs`. Resolves once the server counts it.
 */
async function ghostWait(url: string, heldMs: number): Promise<Socket> {
  const { hostname, port, pathname } = new URL(url);
  // The wait that really broke goes first (aborted on the client's side, so the server sees it close).
  await untilState(url, 'idle');
  const socket = connect(Number(port), hostname);
  socket.on('error', () => {});
  socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
  await untilState(url, 'waiting');
  setTimeout(() => socket.destroy(), heldMs);
  return socket;
}

/** A clock that runs `skewMs` ahead once `jump()` was called. */
function jumpingClock(): TransferClock & { jump(): void } {
  let skewMs = 0;
  return {
    now: () => Date.now() + skewMs,
    sleep: systemClock.sleep,
    jump: () => {
      skewMs = 11_000;
    },
  };
}

const options = (url: string, clock: TransferClock, fetch: typeof globalThis.fetch) => ({
  url: new URL(url),
  headers: [] as Array<[string, string]>,
  fetch,
  retry: { baseMs: 50, capMs: 300, budgetMs: 15_000 },
  stallMs: 15_000,
  clock,
});

/** What a test needs to see of the requests a client made. */
interface Request {
  readonly method: string;
  readonly offset: string | null;
}

async function receiveAll(url: string, clock: TransferClock = systemClock, fetch = globalThis.fetch) {
  const chunks: Uint8Array[] = [];
  const result = await receive({
    ...options(url, clock, fetch),
    begin: async () => ({
      sink: { write: async (chunk) => void chunks.push(chunk.slice()) },
      decoding: plainDecoding,
    }),
  });
  return { data: Buffer.concat(chunks), resumes: result.resumes };
}

function fileSource(data: Uint8Array<ArrayBuffer>) {
  return {
    length: data.byteLength,
    from: (offset: number) => new Blob([data.subarray(offset)]).stream(),
    blob: (start: number, end: number) => new Blob([data.subarray(start, end)]),
  };
}

describe('a wait of more than 10 s that breaks', () => {
  it('sender: a piece cut before its transcript was seen continues at the committed offset', async () => {
    const data = randomBytes(4 * MiB + 321);
    const target = { host: '127.0.0.1', port: Number(new URL(server.url).port) };
    // The first PUT goes through the proxy and is cut 1.5 MiB up, inside its piece of 2 MiB; the probes and
    // every later request go straight.
    proxy = await startCuttingProxy({ target, plan: () => ({ cutUpAt: 1.5 * MiB }) });
    const path = `/long/${randomUUID()}`;
    const clock = jumpingClock();
    const requests: Request[] = [];
    // A browser's fetch over HTTP/1.1: the response shows only once the whole upload is done.
    const browserLike: typeof fetch = async (input, init) => {
      const method = init?.method ?? 'GET';
      const url = new URL(String(input));
      requests.push({ method, offset: url.searchParams.get('offset') });
      if (method !== 'PUT') return globalThis.fetch(input, init);
      const first = requests.filter((request) => request.method === 'PUT').length === 1;
      if (first) clock.jump();
      const via = first ? `${proxy!.url}${url.pathname}${url.search}` : input;
      const response = await globalThis.fetch(via, init);
      return new Response(await response.arrayBuffer(), response);
    };
    const events: TransferEvent[] = [];
    try {
      const receiving = receiveAll(`${server.url}${path}`);
      await delay(100);
      const sent = await send({
        ...options(`${server.url}${path}`, clock, browserLike),
        onEvent: (event) => events.push(event),
        source: fileSource(data),
        encoding: plainEncoding,
        upload: { kind: 'pieces', pieceBytes: 2 * MiB },
      });
      expect(Buffer.compare((await receiving).data, data)).toBe(0);
      // The first cut read as a broken wait; the 409 to the new wait sent the sender to ask, and it resumed.
      expect(events).toContainEqual({ type: 'notice', text: 'the wait broke (ECONNRESET); waiting again' });
      expect(sent.resumes).toBeGreaterThanOrEqual(1);
      const puts = requests.filter((request) => request.method === 'PUT');
      expect(proxy.cuts).toBe(1);
      expect(puts.map((put) => put.offset === null)).toEqual([true, true, false, false]);
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('receiver: a head lost with its connection rejoins the transfer that began', async () => {
    const data = randomBytes(2 * MiB + 5);
    const target = { host: '127.0.0.1', port: Number(new URL(server.url).port) };
    // Cut 10 bytes down: the response's head never arrives.
    proxy = await startCuttingProxy({ target, plan: () => ({ cutDownAt: 10 }) });
    const path = `/long/${randomUUID()}`;
    const clock = jumpingClock();
    const requests: Request[] = [];
    // Only the first GET goes through the proxy; the probes and every later request go straight.
    const firstGetCut: typeof fetch = (input, init) => {
      const method = init?.method ?? 'GET';
      const url = new URL(String(input));
      requests.push({ method, offset: url.searchParams.get('offset') });
      if (method === 'GET' && requests.filter((r) => r.method === 'GET').length === 1) {
        clock.jump();
        return globalThis.fetch(`${proxy!.url}${url.pathname}${url.search}`, init);
      }
      return globalThis.fetch(input, init);
    };
    try {
      const receiving = receiveAll(`${server.url}${path}`, clock, firstGetCut);
      await delay(100);
      const sending = send({
        ...options(`${server.url}${path}`, systemClock, globalThis.fetch),
        source: fileSource(data),
        encoding: plainEncoding,
      });
      const received = await receiving;
      await sending;
      expect(Buffer.compare(received.data, data)).toBe(0);
      expect(proxy.cuts).toBe(1);
      // After the cut, the receiver asked to rejoin from byte 0 rather than wait as a new receiver.
      const gets = requests.filter((request) => request.method === 'GET');
      expect(gets[0]!.offset).toBeNull();
      expect(gets.slice(1).map((get) => get.offset)).toContain('0');
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('receiver: 409s while the server still counts the wait that broke are asked again, then it waits', async () => {
    const data = randomBytes(512 * 1024 + 3);
    const url = `${inMemory.url}/long/${randomUUID()}`;
    const clock = jumpingClock();
    const requests: Request[] = [];
    const events: TransferEvent[] = [];
    const firstGetBroken: typeof fetch = async (input, init) => {
      const method = init?.method ?? 'GET';
      requests.push({ method, offset: new URL(String(input)).searchParams.get('offset') });
      const gets = requests.filter((r) => r.method === 'GET').length;
      if (method === 'GET' && gets === 1) {
        // The first wait breaks after 300 ms (to the client's clock, after 11 s).
        clock.jump();
        const broken = new AbortController();
        init?.signal?.addEventListener('abort', () => broken.abort(), { once: true });
        setTimeout(() => broken.abort(new Error('the wait broke')), 300);
        return globalThis.fetch(input, { ...init, signal: broken.signal });
      }
      // The broken wait's place, still held on the server for 1.5 s.
      if (method === 'GET' && gets === 2) await ghostWait(url, 1500);
      return globalThis.fetch(input, init);
    };
    const receiving = receive({
      ...options(url, clock, firstGetBroken),
      retry: { baseMs: 100, capMs: 300, budgetMs: 15_000 },
      onEvent: (event) => events.push(event),
      begin: async () => ({
        sink: { write: async () => {} },
        decoding: plainDecoding,
      }),
    });
    // The sender comes once the ghost has gone; a receiver that gave up fails the test at once.
    const sending = delay(3000).then(() =>
      send({
        ...options(url, systemClock, globalThis.fetch),
        source: fileSource(data),
        encoding: plainEncoding,
      }),
    );
    const [received] = await Promise.all([receiving, sending]);
    expect(received.plainBytes).toBe(data.byteLength);
    expect(events).toContainEqual({ type: 'notice', text: 'the wait broke (the wait broke); waiting again' });
    const refusals = events.filter((e) => e.type === 'retrying' && e.reason.startsWith('HTTP 409'));
    expect(refusals.length).toBeGreaterThanOrEqual(2);
  }, 60_000);
});
