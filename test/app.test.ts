import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createApp, defaultBroker } from '../src/app.js';
import type { MemoryBroker } from '../src/broker/memory/memory-broker.js';
import { type ConfigInput, parseConfig } from '../src/config.js';
import { LatencyWindows } from '../src/selfheal/latency-windows.js';
import { VERSION } from '../src/version.js';
import { ManualClock } from './helpers/manual-clock.js';
import { repoRoot } from './helpers/processes.js';

const BASE = 'http://edge.test';

function setup(input: ConfigInput = {}) {
  const config = parseConfig(input);
  const clock = new ManualClock();
  const latency = new LatencyWindows();
  const broker = defaultBroker(config, latency) as MemoryBroker;
  const app = createApp(config, { broker, clock, latency, logError: () => {} });
  const request = (path: string, init?: RequestInit) => app.request(`${BASE}${path}`, init);
  return { app, broker, clock, request };
}

/** Sends `body` to `path` and receives it, receiver first; returns the receiver's response and the transcript. */
async function transfer(
  request: ReturnType<typeof setup>['request'],
  path: string,
  init: RequestInit,
): Promise<{ received: Response; transcript: string }> {
  const receiving = request(path);
  const sending = request(path, { method: 'PUT', ...init });
  // Both ends read at once, as real clients do: the transcript ends only after the receiver has read it all.
  const [received, sent] = await Promise.all([receiving, sending]);
  const body = await received.arrayBuffer();
  return { received: new Response(body, received), transcript: await sent.text() };
}

describe('reserved paths', () => {
  const { request } = setup();

  it('serves the pages and answers HEAD like GET without a body', async () => {
    const index = await request('/');
    expect(index.headers.get('content-type')).toContain('text/html');
    expect(await index.text()).toContain('<h1>edgepipe');
    const head = await request('/', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect(await (await request('/version')).text()).toBe(`${VERSION}\n`);
    expect((await request('/favicon.ico')).status).toBe(204);
    expect(await (await request('/robots.txt')).text()).toContain('Disallow: /');
    const health = await request('/_/health');
    expect(await health.json()).toMatchObject({ status: 'ok', broker: { pipes: 0, waiting: 0 } });
  });

  it('serves the page with its script file and a CSP that admits that file and its own style alone', async () => {
    const index = await request('/');
    const html = await index.text();
    const csp = index.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    const nonce = /style-src 'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce).toBeDefined();
    expect(html).toContain(`<style nonce="${nonce}">`);
    expect(html).toContain('<script src="_/page.js" defer></script>');
    expect(html).not.toMatch(/<script>/);
    const script = await request('/_/page.js');
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    // The bundle holds the client core: the sealed format's content type is one of its strings.
    expect(await script.text()).toContain('application/vnd.edgepipe.sealed');
  });

  it('keeps the version equal to package.json', () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
    expect(VERSION).toBe(pkg.version);
  });

  it('writes /help with the URL the client used, honouring X-Forwarded-Proto', async () => {
    expect(await (await request('/help')).text()).toContain('curl -T myfile http://edge.test/mypath');
    const proxied = await request('/help', { headers: { 'X-Forwarded-Proto': 'https' } });
    expect(await proxied.text()).toContain('curl https://edge.test/mypath');
  });

  it('serves /noscript with a CSP that forbids scripts and an escaped form action', async () => {
    const res = await request('/noscript?path=a"><script>x</script>');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).not.toContain('<script>');
    expect(html).toContain('action="a%22%3E%3Cscript%3Ex%3C/script%3E"');
  });

  it('styles /noscript by a fresh nonce the CSP names, with no unsafe-inline; its form posts to the path', async () => {
    const nonces = new Set<string>();
    for (let i = 0; i < 2; i++) {
      const res = await request('/noscript?path=/dir/my%20file');
      const csp = res.headers.get('content-security-policy')!;
      const nonce = /style-src 'nonce-([A-Za-z0-9+/=]{22,})'/.exec(csp)?.[1];
      expect(nonce, csp).toBeDefined();
      expect(csp).not.toContain('unsafe-inline');
      const html = await res.text();
      expect(html).toContain(`<style nonce="${nonce}">`);
      expect(html).toContain('action="dir/my%20file"');
      nonces.add(nonce!);
    }
    expect(nonces.size).toBe(2);
  });

  it('refuses to send to a reserved path and answers unknown /_/ endpoints 404', async () => {
    for (const path of [
      '/',
      '/help',
      '/version',
      '/noscript',
      '/robots.txt',
      '/favicon.ico',
      '/_/health',
      '/_/x',
    ]) {
      const res = await request(path, { method: 'POST', body: 'x' });
      expect(res.status, path).toBe(400);
      expect(await res.text()).toMatch(/^\[ERROR\] Cannot send to the reserved path '.*'\. .*\n$/);
    }
    const res = await request('/_/nothing');
    expect(res.status).toBe(404);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe('CORS and methods', () => {
  const { request } = setup();

  it('answers a preflight, granting Private Network Access only when asked', async () => {
    const res = await request('/any/path', { method: 'OPTIONS' });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-methods')).toBe('GET, HEAD, POST, PUT, OPTIONS');
    expect(res.headers.get('access-control-allow-headers')).toContain('X-Piping');
    expect(res.headers.get('access-control-max-age')).toBe('86400');
    expect(res.headers.get('access-control-allow-private-network')).toBeNull();
    const pna = await request('/p', {
      method: 'OPTIONS',
      headers: { 'Access-Control-Request-Private-Network': 'true' },
    });
    expect(pna.headers.get('access-control-allow-private-network')).toBe('true');
  });

  it('answers other methods 405 with Allow', async () => {
    for (const method of ['DELETE', 'PATCH']) {
      const res = await request('/p', { method });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD, POST, PUT, OPTIONS');
      expect(await res.text()).toBe(`[ERROR] Unsupported method: ${method}.\n`);
    }
  });
});

describe('bad input', () => {
  const { request, broker } = setup({ limits: { maxReceivers: 5, maxPathBytes: 64 } });

  it.each([
    ['0', 'n should > 0'],
    ['-1', 'whole number'],
    ['abc', 'whole number'],
    ['1.5', 'whole number'],
    ['', 'whole number'],
    ['6', 'at most 5'],
    ['99999999999', 'whole number'],
  ])('refuses n=%s with 400', async (n, reason) => {
    for (const method of ['GET', 'PUT']) {
      const res = await request(`/p?n=${n}`, { method, ...(method === 'PUT' ? { body: 'x' } : {}) });
      expect(res.status).toBe(400);
      expect(await res.text()).toContain(reason);
    }
  });

  it('refuses a repeated n, an overlong path and a service worker registration', async () => {
    expect((await request('/p?n=1&n=2')).status).toBe(400);
    const long = await request(`/${'a'.repeat(80)}`);
    expect(long.status).toBe(414);
    expect(await long.text()).toMatch(/^\[ERROR\] .*at most 64.*\n$/);
    const sw = await request('/p', { headers: { 'Service-Worker': 'script' } });
    expect(sw.status).toBe(400);
    expect(await sw.text()).toBe('[ERROR] Service Worker registration is rejected.\n');
    expect(broker.stats()).toEqual({ pipes: 0, waiting: 0 });
  });

  it('refuses a multipart upload without a boundary before taking the slot', async () => {
    const res = await request('/mp', {
      method: 'POST',
      body: 'x',
      headers: { 'Content-Type': 'multipart/form-data' },
    });
    expect(res.status).toBe(400);
    expect(broker.stats().pipes).toBe(0);
  });
});

describe('transfers through app.request', () => {
  it('streams both ways round with the transcript a curl user reads', async () => {
    const { request } = setup();
    const { received, transcript } = await transfer(request, '/t1', { body: 'hello' });
    expect(await received.text()).toBe('hello');
    expect(transcript).toBe(
      [
        '[INFO] Waiting for 1 receiver(s)...',
        '[INFO] 1 receiver(s) has/have been connected.',
        '[INFO] Start sending to 1 receiver(s)!',
        '[INFO] Sent successfully!',
        '[INFO] All receiver(s) was/were received successfully.',
        '',
      ].join('\n'),
    );
    // Sender first.
    const sender = await request('/t2', { method: 'POST', body: 'second' });
    const transcript2 = sender.text();
    const received2 = await request('/t2');
    expect(await received2.text()).toBe('second');
    expect(await transcript2).toContain(
      '[INFO] Waiting for 1 receiver(s)...\n[INFO] 0 receiver(s) has/have been connected.\n[INFO] A receiver was connected.',
    );
  });

  it('passes Content-Type (html as plain), Content-Disposition and X-Piping; adds CORS and robots headers', async () => {
    const { request } = setup();
    const { received } = await transfer(request, '/h', {
      body: '<b>hi</b>',
      headers: {
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Disposition': 'attachment; filename="x.html"',
        'X-Piping': 'meta-1',
        'X-Other': 'dropped',
      },
    });
    expect(received.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(received.headers.get('content-disposition')).toBe('attachment; filename="x.html"');
    expect(received.headers.get('x-piping')).toBe('meta-1');
    expect(received.headers.get('x-other')).toBeNull();
    expect(received.headers.get('access-control-allow-origin')).toBe('*');
    expect(received.headers.get('x-robots-tag')).toBe('none');
    // Content-Type and Content-Length are CORS-safelisted: only the others need exposing.
    expect(received.headers.get('access-control-expose-headers')).toBe('Content-Disposition, X-Piping');
    expect(await received.text()).toBe('<b>hi</b>');
  });

  it('passes every X-Piping value, in the order the sender wrote them', async () => {
    const { request } = setup();
    const headers = new Headers();
    for (const value of ['first', 'second', 'third; with=params']) headers.append('X-Piping', value);
    const { received } = await transfer(request, '/xp', { body: 'x', headers });
    expect(received.headers.get('x-piping')).toBe('first, second, third; with=params');
  });

  it('with no sender headers the receiver gets none of them', async () => {
    const { request } = setup();
    const body = new ReadableStream({
      start(c) {
        c.enqueue(new Uint8Array([1, 2, 3]));
        c.close();
      },
    });
    const { received } = await transfer(request, '/bare', { body, duplex: 'half' } as RequestInit);
    expect(received.headers.get('content-type')).toBeNull();
    expect(received.headers.get('content-disposition')).toBeNull();
    expect(received.headers.get('access-control-expose-headers')).toBeNull();
    expect([...new Uint8Array(await received.arrayBuffer())]).toEqual([1, 2, 3]);
  });

  it('forwards the first part of a multipart upload with its type and its Content-Disposition as it came', async () => {
    const { request } = setup();
    const form = new FormData();
    form.append('input_file', new Blob(['<p>file body</p>'], { type: 'text/html' }), 'page.html');
    form.append('other', 'not sent');
    const { received, transcript } = await transfer(request, '/mp', { method: 'POST', body: form });
    expect(transcript).toContain('Sent successfully');
    expect(received.headers.get('content-type')).toBe('text/plain');
    expect(received.headers.get('content-disposition')).toBe(
      'form-data; name="input_file"; filename="page.html"',
    );
    expect(await received.text()).toBe('<p>file body</p>');
  });

  it('n=3: every receiver gets the whole body', async () => {
    const { request } = setup();
    const receivers = [request('/n3?n=3'), request('/n3?n=3'), request('/n3?n=3')];
    const sender = await request('/n3?n=3', { method: 'PUT', body: 'to all three' });
    const bodies = await Promise.all(receivers.map(async (r) => (await r).text()));
    expect(bodies).toEqual(['to all three', 'to all three', 'to all three']);
    expect(await sender.text()).toContain('[INFO] Start sending to 3 receiver(s)!');
  });

  it('answers a busy path 409, a mismatched n 400 and an extra receiver 409', async () => {
    const { request, broker } = setup();
    const first = await request('/busy?n=2', { method: 'PUT', body: 'x' });
    const second = await request('/busy?n=2', { method: 'PUT', body: 'y' });
    expect(second.status).toBe(409);
    expect(await second.text()).toBe("[ERROR] Another sender has been connected on '/busy'.\n");
    const mismatch = await request('/busy?n=3');
    expect(mismatch.status).toBe(400);
    expect(await mismatch.text()).toBe('[ERROR] The number of receivers should be 2 but 3.\n');
    const r1 = request('/busy?n=2');
    const r2 = request('/busy?n=2');
    await Promise.all([r1, r2]);
    const extra = await request('/busy?n=2');
    expect(extra.status).toBe(409);
    expect(await extra.text()).toContain('has been established already');
    await Promise.all([first.text(), (await r1).text(), (await r2).text()]);
    expect(broker.stats()).toEqual({ pipes: 0, waiting: 0 });
  });

  it('answers 429 with Retry-After when the server holds as many pipes as allowed', async () => {
    const { request } = setup({ limits: { maxPipes: 1 } });
    const first = request('/first');
    await Promise.resolve();
    const res = await request('/second', { method: 'PUT', body: 'x' });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.text()).toBe('[ERROR] Too many pipes on this server; try again later.\n');
    await request('/first', { method: 'PUT', body: 'done' });
    expect(await (await first).text()).toBe('done');
  });

  it('HEAD on a pipe never takes a slot, and tells how the pipe stands', async () => {
    const { request, broker } = setup();
    const head = await request('/pipe', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('x-edgepipe-state')).toBe('idle');
    // The in-memory broker keeps nothing for a dropped party: clients learn here that they cannot resume.
    expect(head.headers.get('x-edgepipe-resumable')).toBe('0');
    expect(broker.stats()).toEqual({ pipes: 0, waiting: 0 });
    const waiting = request('/pipe');
    await Promise.resolve();
    const again = await request('/pipe', { method: 'HEAD' });
    expect(again.headers.get('x-edgepipe-state')).toBe('waiting');
    expect(again.headers.get('upload-offset')).toBeNull();
    expect(broker.stats()).toEqual({ pipes: 1, waiting: 1 });
    await request('/pipe', { method: 'PUT', body: 'x' });
    expect(await (await waiting).text()).toBe('x');
  });
});

describe('the window (in process: no socket buffers between the two ends)', () => {
  const MiB = 1024 * 1024;
  const CHUNK = 64 * 1024;
  const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it.each([
    ['the default (1 MiB in memory)', undefined, MiB],
    ['a configured 256 KiB', 256 * 1024, 256 * 1024],
  ])('a receiver that reads nothing holds the sender to %s', async (_, windowBytes, window) => {
    const { request } = setup(windowBytes === undefined ? {} : { broker: { windowBytes } });
    const total = 4 * MiB;
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled >= total) return controller.close();
        controller.enqueue(new Uint8Array(CHUNK).fill(pulled / CHUNK));
        pulled += CHUNK;
      },
    });
    const receiving = request('/window');
    const sending = request('/window', { method: 'PUT', body, duplex: 'half' } as RequestInit);
    const received = await receiving;
    // Wait until the sender is held: nothing pulled for 200 ms (bounded: a sender never held is a failure).
    let last = -1;
    for (let quiet = 0, i = 0; quiet < 10 && i < 250; i++) {
      quiet = pulled === last ? quiet + 1 : 0;
      last = pulled;
      await delay(20);
    }
    // Held: a full window, plus one chunk past it (the window takes a write while it has room), the chunk
    // the broker holds waiting for room and the one the request stream pulls ahead.
    expect(pulled).toBeGreaterThanOrEqual(window);
    expect(pulled).toBeLessThanOrEqual(window + 3 * CHUNK);
    // And it flows again once the receiver reads: every byte arrives.
    expect((await received.arrayBuffer()).byteLength).toBe(total);
    expect(await (await sending).text()).toContain('Sent successfully!');
  });
});

describe('resume requests', () => {
  it('the in-memory broker answers a resume with 501 and the reason; nothing is claimed', async () => {
    const { request, broker } = setup();
    for (const res of [
      await request('/r', { headers: { Range: 'bytes=100-' } }),
      await request('/r?offset=5'),
      await request('/r?offset=5', { method: 'PUT', body: 'x' }),
    ]) {
      expect(res.status).toBe(501);
      expect(await res.text()).toBe(
        '[ERROR] Resuming a transfer needs the Redis backend (start the server with --redis).\n',
      );
    }
    expect(broker.stats()).toEqual({ pipes: 0, waiting: 0 });
  });

  it('Range bytes=0- and other range forms are a plain receive (media players send them)', async () => {
    const { request } = setup();
    for (const range of ['bytes=0-', 'bytes=10-20', 'bytes=-5', 'items=1-']) {
      const { received } = await transfer(request, '/media', { body: 'whole body' });
      const ranged = request('/media', { headers: { Range: range } });
      await request('/media', { method: 'PUT', body: 'whole body' });
      const res = await ranged;
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(await received.text());
    }
  });

  it('refuses malformed offsets with 400 and a reason', async () => {
    const { request, broker } = setup();
    const cases: Array<[string, RequestInit | undefined, string]> = [
      ['/r?offset=abc', undefined, "offset should be a whole number of bytes, but offset = 'abc'."],
      ['/r?offset=-1', undefined, "offset should be a whole number of bytes, but offset = '-1'."],
      [
        '/r?offset=1e3',
        { method: 'PUT', body: 'x' },
        "offset should be a whole number of bytes, but offset = '1e3'.",
      ],
      ['/r?offset=1&offset=2', undefined, 'offset is given more than once.'],
      [
        '/r?offset=9999999999999999',
        undefined,
        "offset should be a whole number of bytes, but offset = '9999999999999999'.",
      ],
      ['/r?offset=5', { headers: { Range: 'bytes=6-' } }, 'offset=5 and Range bytes=6- disagree.'],
      [
        '/r?offset=0',
        { method: 'PUT', body: '--b--', headers: { 'Content-Type': 'multipart/form-data; boundary=b' } },
        'A multipart upload cannot be resumed; send the rest of the file as a plain body.',
      ],
    ];
    for (const [path, init, reason] of cases) {
      const res = await request(path, init);
      expect(res.status, path).toBe(400);
      expect(await res.text()).toBe(`[ERROR] ${reason}\n`);
    }
    expect(broker.stats()).toEqual({ pipes: 0, waiting: 0 });
  });
});

describe('wait timeouts (injected clock)', () => {
  it('a receiver nobody sends to gets 504 with a reason, and its slot is freed', async () => {
    const { request, clock, broker } = setup({ limits: { waitTimeoutMs: 60_000 } });
    const receiving = request('/lonely');
    await Promise.resolve();
    expect(broker.stats().waiting).toBe(1);
    clock.advance(59_999);
    clock.advance(1);
    const res = await receiving;
    expect(res.status).toBe(504);
    expect(await res.text()).toBe("[ERROR] No sender came to '/lonely' within 60 s.\n");
    expect(broker.stats()).toEqual({ pipes: 0, waiting: 0 });
    expect(clock.pending).toBe(0);
  });

  it('a sender nobody receives from is told in its transcript, and the path is free again', async () => {
    const { request, clock, broker } = setup({ limits: { waitTimeoutMs: 1000 } });
    const sender = await request('/nobody', { method: 'PUT', body: 'x' });
    clock.advance(1000);
    expect(await sender.text()).toContain('[ERROR] No receiver came within 1 s.\n');
    expect(broker.stats()).toEqual({ pipes: 0, waiting: 0 });
  });
});

describe('metrics and self-heal status', () => {
  it('/_/metrics speaks the Prometheus text format and counts what went through', async () => {
    const { request } = setup();
    await transfer(request, '/m', { body: 'x'.repeat(1000) });
    await request('/m?n=0');
    const res = await request('/_/metrics');
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text).toContain('# TYPE edgepipe_latency_ms summary\n');
    expect(text).toContain('edgepipe_bytes_total{direction="in"} 1000\n');
    expect(text).toContain('edgepipe_bytes_total{direction="out"} 1000\n');
    expect(text).toContain('edgepipe_transfers_total{outcome="completed"} 1\n');
    expect(text).toContain('edgepipe_responses_total{code="400"} 1\n');
    expect(text).toContain('edgepipe_backend_active{backend="primary"} 1\n');
    // The 400 was timed as a request; the transfer's chunk went through the memory broker's window.
    expect(text).toMatch(/edgepipe_latency_ms_count\{metric="request"\} [1-9]/);
    expect(text).toMatch(/edgepipe_latency_ms_count\{metric="chunk"\} [1-9]/);
    expect(text).toMatch(/edgepipe_latency_ms_count\{metric="ttfb"\} 1\n/);
    for (const line of text.trim().split('\n'))
      expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? \S+)$/);
  });

  it('/_/selfheal answers even where no watcher runs', async () => {
    const { request } = setup();
    expect(await (await request('/_/selfheal')).json()).toMatchObject({
      backend: 'primary',
      rules: [],
      events: [],
    });
  });
});
