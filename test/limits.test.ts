import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { perClientSchema } from '../src/access/access-config.js';
import { createApp } from '../src/app.js';
import { MemoryBroker } from '../src/broker/memory/memory-broker.js';
import type { ByteSource } from '../src/byte-source.js';
import { ClientIdleError, limitedUpload, stallGuarded } from '../src/byte-source-guards.js';
import { type ConfigInput, parseConfig } from '../src/config.js';
import { ManualClock } from './helpers/manual-clock.js';
import { run } from './helpers/processes.js';
import { startTestServer } from './helpers/server.js';

const BASE = 'http://edge.test';

function setup(input: ConfigInput = {}) {
  const clock = new ManualClock();
  const app = createApp(parseConfig(input), { clock, logError: () => {} });
  const request = (path: string, init?: RequestInit) => app.request(`${BASE}${path}`, init);
  return { clock, request };
}

/** A body that sends `first` and then nothing, until the test ends it. */
function stalledBody(first: string) {
  let close: () => void = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(first));
      close = () => controller.close();
    },
  });
  return { body, close };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 10));

describe('body size cap', () => {
  it('answers 413 to a declared length over the cap before anything waits', async () => {
    const { request } = setup({ limits: { maxBodyBytes: 1000 } });
    // As a client on the wire declares it (app.request does not add the header itself).
    const response = await request('/big', {
      method: 'PUT',
      body: 'x'.repeat(1001),
      headers: { 'Content-Length': '1001' },
    });
    expect(response.status).toBe(413);
    expect(await response.text()).toBe('[ERROR] The body is 1001 bytes; this server accepts at most 1000.\n');
    const fits = request('/big');
    const sent = await request('/big', { method: 'PUT', body: 'x'.repeat(1000) });
    expect((await (await fits).text()).length).toBe(1000);
    expect(await sent.text()).toContain('Sent successfully!');
  });

  it('cuts a chunked body that grows past the cap: the receiver sees an error, not a short file', async () => {
    const { request } = setup({ limits: { maxBodyBytes: 100_000 } });
    const chunk = new Uint8Array(40_000);
    let sentChunks = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sentChunks++ < 10) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const receiving = request('/grows');
    const sent = await request('/grows', { method: 'PUT', body, duplex: 'half' } as RequestInit);
    const received = await receiving;
    await expect(received.arrayBuffer()).rejects.toThrow();
    expect(await sent.text()).toContain(
      '[ERROR] The body is larger than the 100000 bytes this server accepts.',
    );
    expect(sentChunks).toBeLessThan(10);
  });
});

describe('slow clients', () => {
  it('drops an upload that sends nothing for idleTimeoutMs, and says so', async () => {
    const { request, clock } = setup({ limits: { idleTimeoutMs: 5000 } });
    const { body } = stalledBody('abc');
    const receiving = request('/idle');
    const sent = await request('/idle', { method: 'PUT', body, duplex: 'half' } as RequestInit);
    const received = await receiving;
    const reader = received.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('abc');
    await tick();
    clock.advance(4999);
    await tick();
    const transcriptSoFar = sent.clone();
    clock.advance(1);
    await expect(reader.read()).rejects.toThrow();
    expect(await transcriptSoFar.text()).toContain('[ERROR] The upload sent nothing for 5 s.');
  });

  it('does not count the wait for a receiver as idle', async () => {
    const { request, clock } = setup({ limits: { idleTimeoutMs: 5000 } });
    const sending = request('/late', { method: 'PUT', body: 'patient' });
    clock.advance(60_000);
    await tick();
    const received = await request('/late');
    expect(await received.text()).toBe('patient');
    expect(await (await sending).text()).toContain('Sent successfully!');
  });
});

describe('byte source guards', () => {
  /** A source handing out `chunks`, then waiting forever; records cancellation. */
  function source(chunks: string[]): ByteSource & { cancelled: boolean } {
    const queue = chunks.map((text) => new TextEncoder().encode(text));
    const self = {
      cancelled: false,
      read: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise<Uint8Array>(() => {})),
      cancel: () => {
        self.cancelled = true;
      },
    };
    return self;
  }

  it('stallGuarded gives up on a consumer that stops reading, not on one waiting for bytes', async () => {
    const clock = new ManualClock();
    const upstream = source(['a', 'b']);
    const guarded = stallGuarded(upstream, clock, 1000);
    let abandoned: Error | undefined;
    guarded.abandoned!.then((error) => {
      abandoned = error;
    });
    await guarded.read();
    clock.advance(900);
    await guarded.read();
    clock.advance(900);
    // The consumer read again in time both times; now it waits on the source, which is not its fault.
    void guarded.read();
    clock.advance(10_000);
    await tick();
    expect(abandoned).toBeUndefined();
    expect(upstream.cancelled).toBe(false);

    // A chunk of 500 bytes gets 1000 ms plus 500 ms (a ~1 KB/s client's time to take it).
    const stalled = stallGuarded(source(['x'.repeat(500)]), clock, 1000);
    let given: Error | undefined;
    stalled.abandoned!.then((error) => {
      given = error;
    });
    await stalled.read();
    clock.advance(1499);
    await tick();
    expect(given).toBeUndefined();
    clock.advance(1);
    await tick();
    expect(given).toBeInstanceOf(ClientIdleError);
  });

  it('stallGuarded measures from the latest chunk, also when a small one follows a big one', async () => {
    const clock = new ManualClock();
    const guarded = stallGuarded(source(['x'.repeat(5000), 'y']), clock, 1000);
    let given: Error | undefined;
    guarded.abandoned!.then((error) => {
      given = error;
    });
    await guarded.read();
    clock.advance(100);
    await guarded.read();
    // Due 1001 ms after the small chunk, not 6000 ms after the big one.
    clock.advance(1000);
    await tick();
    expect(given).toBeUndefined();
    clock.advance(1);
    await tick();
    expect(given).toBeInstanceOf(ClientIdleError);
  });

  it('limitedUpload fails a read that waits past the idle time and cancels the body', async () => {
    const clock = new ManualClock();
    const upstream = source(['x']);
    const limited = limitedUpload(upstream, { clock, idleMs: 100 });
    expect(await limited.read()).toEqual(new TextEncoder().encode('x'));
    const waiting = limited.read();
    clock.advance(100);
    await expect(waiting).rejects.toBeInstanceOf(ClientIdleError);
    expect(upstream.cancelled).toBe(true);
  });
});

describe('request head cap', () => {
  it('answers 431 to headers over maxHeaderBytes', async () => {
    const { request } = setup({ server: { maxHeaderBytes: 2048 } });
    const response = await request('/version', { headers: { 'X-Big': 'y'.repeat(3000) } });
    expect(response.status).toBe(431);
    expect((await request('/version')).status).toBe(200);
  });
});

/** The documented per-client defaults: every count below is derived from them, not written out. */
const DEFAULTS = perClientSchema.parse({});

/** An app at the default limits whose client address is `env.peer`, on a clock that stands still. */
function limitedSetup(whole = false) {
  const clock = new ManualClock();
  const config = parseConfig({});
  const app = createApp(config, {
    clock,
    logError: () => {},
    peerAddress: (_request, env) => (env as { peer?: string } | undefined)?.peer,
    // As in a Durable Object: a pipe of one receiver hands its body over whole, as a stream.
    ...(whole && {
      broker: new MemoryBroker({
        windowBytes: 1024 * 1024,
        maxPipes: config.limits.maxPipes,
        maxWaiting: config.limits.maxWaiting,
        passThrough: () => new TransformStream<Uint8Array, Uint8Array>(),
      }),
      passStream: (body: ReadableStream<Uint8Array>, init: ResponseInit) => new Response(body, init),
    }),
  });
  const request = async (path: string, init?: RequestInit, peer = '192.0.2.1') =>
    app.fetch(new Request(`${BASE}${path}`, init), { peer });
  return { clock, request };
}

/** Statuses of `count` requests made one after the other. */
async function sequential(count: number, make: (i: number) => Promise<Response>): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i++) {
    const response = await make(i);
    await response.body?.cancel();
    statuses.push(response.status);
  }
  return statuses;
}

const countOf = (statuses: number[], status: number) => statuses.filter((s) => s === status).length;

describe('per-client limits at the defaults (issue 11, item 2)', () => {
  it('one client, 2,000 sequential 1 KiB transfers over loopback: none refused', async () => {
    const server = await startTestServer();
    try {
      const body = new Uint8Array(1024).fill(7);
      const refused: string[] = [];
      const started = performance.now();
      for (let i = 0; i < 2000; i++) {
        const url = `${server.url}/seq/${i}`;
        // A refused side leaves its peer waiting: it is then sent away.
        const abort = new AbortController();
        const answered = (response: Promise<Response>) =>
          response.then(
            (r) => {
              if (r.status !== 200) abort.abort();
              return r;
            },
            () => undefined,
          );
        const [received, sent] = await Promise.all([
          answered(fetch(url, { signal: abort.signal })),
          answered(fetch(url, { method: 'PUT', body, signal: abort.signal })),
        ]);
        const bytes = await received?.arrayBuffer().catch(() => undefined);
        const transcript = await sent?.text().catch(() => '');
        if (received?.status !== 200 || sent?.status !== 200 || bytes?.byteLength !== 1024) {
          refused.push(`#${i}: receiver ${received?.status}, sender ${sent?.status}: ${transcript?.trim()}`);
          if (refused.length >= 3) break;
        }
      }
      const seconds = (performance.now() - started) / 1000;
      console.log(`2,000 sequential 1 KiB transfers: ${seconds.toFixed(1)} s, ${refused.length} refused`);
      expect(refused).toEqual([]);
    } finally {
      await server.close();
    }
  }, 120_000);

  it('a shell loop of curl pairs is never refused', async () => {
    const server = await startTestServer();
    try {
      const dir = mkdtempSync(join(tmpdir(), 'edgepipe-curl-loop-'));
      writeFileSync(join(dir, 'file'), 'x'.repeat(1024));
      // The curl form of the loop above, shorter: a shell on a loaded machine runs ~15 requests a second,
      // so the 2,000 transfers above are what outruns the old limits; this one checks curl's own requests.
      const pairs = DEFAULTS.burst / 2;
      const script = `cd ${dir}; for i in $(seq ${pairs}); do
        curl -s -o /dev/null -w '%{http_code}\n' ${server.url}/loop/$i >> codes &
        curl -s -o /dev/null -w '%{http_code}\n' -T file ${server.url}/loop/$i >> codes
        wait
      done; cat codes`;
      const result = await run('sh', ['-c', script], { timeoutMs: 110_000 });
      const codes = result.stdout.toString().trim().split('\n');
      expect(codes).toHaveLength(2 * pairs);
      expect(codes.filter((code) => code !== '200')).toEqual([]);
    } finally {
      await server.close();
    }
  }, 120_000);

  it('a flood of pages and HEADs meets 429 after the burst', async () => {
    const { request } = limitedSetup();
    const statuses = await sequential(DEFAULTS.burst + 20, (i) =>
      request(i % 2 ? '/version' : '/some/pipe', { method: i % 2 ? 'GET' : 'HEAD' }),
    );
    expect(countOf(statuses, 200)).toBe(DEFAULTS.burst);
    expect(countOf(statuses, 429)).toBe(20);
  });

  it('a flood of refused pipe requests meets 429 after the burst', async () => {
    const { request } = limitedSetup();
    // Each is refused by the route (n out of range): charged as it fails.
    const statuses = await sequential(DEFAULTS.burst + 20, (i) =>
      request(`/bad/${i}?n=0`, { method: 'PUT', body: 'x' }),
    );
    expect(countOf(statuses, 400)).toBe(DEFAULTS.burst);
    expect(countOf(statuses, 429)).toBe(20);
  });

  it('receivers that leave unmatched, or wait until they time out, are charged', async () => {
    const { request, clock } = limitedSetup();
    // Leaving before the peer came, one after the other: never more than one waits at a time.
    const left: number[] = [];
    for (let i = 0; i < DEFAULTS.burst + 5; i++) {
      const abort = new AbortController();
      const waiting = request(`/left/${i}`, { signal: abort.signal });
      const first = await Promise.race([waiting, tick().then(() => undefined)]);
      if (first) {
        left.push(first.status);
        continue;
      }
      abort.abort();
      left.push((await waiting).status);
    }
    expect(countOf(left, 499)).toBe(DEFAULTS.burst);
    expect(countOf(left, 429)).toBe(5);

    // Another client: its receivers wait until they time out (504). Charged when they end, after the
    // wait refilled the bucket: at once, as many as may wait, they drain what one client has.
    const peer = '192.0.2.2';
    const waiting = Array.from({ length: DEFAULTS.maxWaiting }, (_, i) => request(`/late/${i}`, {}, peer));
    await tick();
    clock.advance(parseConfig({}).limits.waitTimeoutMs);
    const timedOut = await Promise.all(waiting);
    expect(timedOut.filter((r) => r.status === 504)).toHaveLength(DEFAULTS.maxWaiting);
    expect(DEFAULTS.maxWaiting).toBeGreaterThanOrEqual(DEFAULTS.burst);
    expect((await request('/version', {}, peer)).status).toBe(429);
  });

  it('a flood of waiting requests: maxWaiting wait, the rest are refused, and leaving costs the bucket', async () => {
    const { request } = limitedSetup();
    const extra = 30;
    const aborts = Array.from({ length: DEFAULTS.maxWaiting + extra }, () => new AbortController());
    const flood = aborts.map((abort, i) => request(`/flood/${i}`, { signal: abort.signal }));
    const early = await Promise.all(flood.map((r) => Promise.race([r, tick().then(() => undefined)])));
    expect(early.filter((r) => r === undefined)).toHaveLength(DEFAULTS.maxWaiting);
    expect(early.filter((r) => r?.status === 429)).toHaveLength(extra);
    for (const abort of aborts) abort.abort();
    await Promise.allSettled(flood);
    // Every one of them failed: the refused and those that left unmatched drained the bucket (the
    // clock stands still, so nothing refilled), and the client is refused outright.
    const drained = DEFAULTS.burst - extra - DEFAULTS.maxWaiting <= 0;
    expect(drained).toBe(true);
    const next = await request('/after-flood');
    expect(next.status).toBe(429);
    expect(await next.text()).toContain('Too many requests');
  });

  it.each([
    ['chunk by chunk', false],
    ['handed over whole', true],
  ])('completed transfers cost nothing, also when they run side by side (%s)', async (_, whole) => {
    const { request } = limitedSetup(whole);
    // Half the waiting cap per round: every receiver is waiting before the first sender comes.
    const count = DEFAULTS.maxWaiting / 2;
    const rounds = Math.ceil((3 * DEFAULTS.burst) / (2 * count));
    for (let round = 0; round < rounds; round++) {
      const results = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          const receiving = request(`/side/${round}/${i}`);
          const sent = await request(`/side/${round}/${i}`, { method: 'PUT', body: 'ok' });
          const [transcript, received] = await Promise.all([sent.text(), receiving.then((r) => r.text())]);
          return `${transcript.includes('Sent successfully!')} ${received}`;
        }),
      );
      expect(new Set(results)).toEqual(new Set(['true ok']));
    }
    // The clock stood still through three buckets' worth of requests, and the bucket is still full.
    const pages = await sequential(DEFAULTS.burst, () => request('/version'));
    expect(countOf(pages, 200)).toBe(DEFAULTS.burst);
  });
});
