import { request as httpRequest, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/adapter/node/serve.js';
import { createApp } from '../src/app.js';
import { parseConfig } from '../src/config.js';
import { RESUMABLE_HEADER } from '../src/protocol/resumable.js';
import { startTestServer } from './helpers/server.js';

// What piping-server clients check of a response beyond its body: exact header values, repeated headers,
// lengths on pages and preflights. First through app.request, then through a real Node listener where the
// wire matters (separate header lines, HEAD lengths).

const BASE = 'http://edge.test';
const app = createApp(parseConfig({ limits: { maxReceivers: 5 } }), { logError: () => {} });
const request = (path: string, init?: RequestInit) => app.request(`${BASE}${path}`, init);
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('piping-server compatibility through app.request', () => {
  it('answers text and HTML with the bare type, as piping-server does', async () => {
    for (const path of ['/help', '/version', '/robots.txt']) {
      expect((await request(path)).headers.get('content-type'), path).toBe('text/plain');
    }
    for (const path of ['/', '/noscript']) {
      const res = await request(path);
      expect(res.headers.get('content-type'), path).toBe('text/html');
      // ASCII, so a client counting characters agrees with Content-Length (piping-server's suite does).
      expect(await res.text(), path).toMatch(/^[\t\n -~]*$/);
    }
    const refused = await request('/x?n=0', { method: 'POST', body: 'x' });
    expect(refused.status).toBe(400);
    expect(refused.headers.get('content-type')).toBe('text/plain');
  });

  it('gives every page its Content-Length, on GET and on HEAD', async () => {
    for (const path of ['/', '/noscript?path=a', '/help', '/version', '/robots.txt']) {
      const got = await request(path);
      const length = String((await got.arrayBuffer()).byteLength);
      expect(got.headers.get('content-length'), path).toBe(length);
      const head = await request(path, { method: 'HEAD' });
      expect(head.headers.get('content-length'), `HEAD ${path}`).toBe(length);
    }
  });

  it('answers a preflight with an empty body of length 0 that exposes Access-Control-Allow-Headers', async () => {
    const res = await request('/p', { method: 'OPTIONS' });
    expect(res.status).toBe(200);
    // piping-server's three, edgepipe's resume declaration (a page may resume), and what a page that
    // appends to a topic sends (docs/topic-protocol.md).
    expect(res.headers.get('access-control-allow-headers')).toBe(
      `Content-Type, Content-Disposition, X-Piping, ${RESUMABLE_HEADER}, Upload-Complete, Upload-Length, Idempotency-Key, Content-Encoding, Authorization`,
    );
    expect(res.headers.get('access-control-expose-headers')).toBe('Access-Control-Allow-Headers');
    expect(res.headers.get('content-length')).toBe('0');
  });

  it('refuses POST and PUT with Content-Range, and the path stays free', async () => {
    for (const method of ['POST', 'PUT']) {
      const res = await request('/cr', {
        method,
        body: 'hello',
        headers: { 'Content-Range': 'bytes 2-6/100' },
      });
      expect(res.status, method).toBe(400);
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(await res.text()).toMatch(/^\[ERROR\] Content-Range is not supported in (POST|PUT)/);
    }
    const receiving = request('/cr');
    const sent = await request('/cr', { method: 'PUT', body: 'whole' });
    expect(await (await receiving).text()).toBe('whole');
    expect(await sent.text()).toContain('Sent successfully');
  });

  it('exposes only what a page could not read otherwise: none for a bare body, Content-Length is safelisted', async () => {
    const receiving = request('/ex');
    const sent = request('/ex', {
      method: 'PUT',
      body: 'abc',
      headers: { 'Content-Type': 'text/plain', 'Content-Length': '3' },
    });
    const received = await receiving;
    expect(received.headers.get('content-length')).toBe('3');
    expect(received.headers.get('access-control-expose-headers')).toBeNull();
    expect(await received.text()).toBe('abc');
    await (await sent).text();

    const receiving2 = request('/ex2');
    const sent2 = request('/ex2', { method: 'PUT', body: 'abc', headers: { 'X-Piping': 'm' } });
    expect((await receiving2).headers.get('access-control-expose-headers')).toBe('X-Piping');
    await (await receiving2).text();
    await (await sent2).text();
  });

  it('passes a multipart text field on with its Content-Disposition as it came', async () => {
    const form = new FormData();
    form.append('note', 'typed text');
    const receiving = request('/mpt');
    const sent = request('/mpt', { method: 'POST', body: form });
    const received = await receiving;
    expect(received.headers.get('content-disposition')).toBe('form-data; name="note"');
    expect(await received.text()).toBe('typed text');
    await (await sent).text();
  });

  it('keeps an [ERROR] line one line of ASCII when it quotes what the client sent', async () => {
    const res = await request('/q?n=%0D%0A%C3%A9', { method: 'POST', body: 'x' });
    expect(res.status).toBe(400);
    expect(await res.text()).toBe(
      "[ERROR] n should be a whole number from 1 to 5, but n = '\\u{d}\\u{a}\\u{e9}'.\n",
    );
  });
});

/** A request whose response keeps its raw header lines (fetch would join repeated ones). */
function rawGet(url: string): Promise<{ response: IncomingMessage; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, (response) => {
      let body = '';
      response.setEncoding('latin1');
      response.on('data', (chunk) => {
        body += chunk;
      });
      response.on('end', () => resolve({ response, body }));
      response.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The values of header `name` as separate lines of the raw head. */
function rawValues(response: IncomingMessage, name: string): string[] {
  const raw = response.rawHeaders;
  const values: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) values.push(raw[i + 1]!);
  return values;
}

describe('piping-server compatibility on a real Node listener', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.close();
  });

  it('passes repeated X-Piping headers one by one, in order, commas intact', async () => {
    const receiving = rawGet(`${server.url}/xp`);
    for (let i = 0; i < 200 && server.broker.stats().waiting !== 1; i++) await delay(5);
    const sent = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${server.url}/xp`, { method: 'POST' }, (res) => {
        let text = '';
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.setHeader('X-Piping', ['first', 'second, with a comma', 'third']);
      req.end('body');
    });
    const { response, body } = await receiving;
    expect(rawValues(response, 'x-piping')).toEqual(['first', 'second, with a comma', 'third']);
    expect(rawValues(response, 'access-control-expose-headers')).toEqual(['X-Piping']);
    expect(body).toBe('body');
    expect(sent).toContain('Sent successfully');
  });

  it('answers HEAD on a page with the Content-Length of its GET', async () => {
    for (const path of ['/', '/noscript', '/help', '/version', '/robots.txt']) {
      const got = await fetch(`${server.url}${path}`);
      const length = String((await got.arrayBuffer()).byteLength);
      const head = await fetch(`${server.url}${path}`, { method: 'HEAD' });
      expect(got.headers.get('content-length'), path).toBe(length);
      expect(head.headers.get('content-length'), `HEAD ${path}`).toBe(length);
    }
  });

  it('sends the bare text/plain on a transcript and a preflight with Content-Length: 0', async () => {
    const preflight = await fetch(`${server.url}/pf`, { method: 'OPTIONS' });
    expect(preflight.headers.get('content-length')).toBe('0');
    expect(preflight.headers.get('access-control-expose-headers')).toBe('Access-Control-Allow-Headers');
    const receiving = fetch(`${server.url}/tr`);
    const sent = await fetch(`${server.url}/tr`, { method: 'PUT', body: 'x' });
    expect(sent.headers.get('content-type')).toBe('text/plain');
    expect(await sent.text()).toContain('Sent successfully');
    await (await receiving).text();
  });
});
