// Dot segments in the request target (issue 11, item 3): refused with 400 before anything resolves the
// path, through a real Node listener on loopback, written on raw sockets (fetch and curl resolve them
// before sending).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/adapter/node/serve.js';
import { dotSegmentIn } from '../src/routes/dot-segments.js';
import { rawExchange } from './helpers/raw-http.js';
import { startTestServer } from './helpers/server.js';

/** Targets with a `.` or `..` segment, raw or percent-encoded, in the middle and at the end. */
const DOTTED = [
  '/../../etc/passwd',
  '/../../tmp/x',
  '/a/../b',
  '/a/..',
  '/a/./b',
  '/a/.',
  '/./a',
  '/a/%2e%2e/b',
  '/a/%2E%2e/b',
  '/a/.%2e/b',
  '/a/%2e./b',
  '/a/%2E%2E',
  '/a/%2e/b',
  '/a/%2E',
  '/a/%2e%2E/b/./c',
  '/a/../b?n=1',
  '/a/%2e%2e?x=/ok',
  'http://edge.test/a/../b',
] as const;

/** The URL parser reads `\` as `/`; @hono/node-server refuses any target holding one (400, no body). */
const BACKSLASHED = ['/a\\..\\b', '/a\\.'] as const;

/** Targets that only look like it: `%2F` and `%5C` stay part of a segment's name, and so do other dots. */
const NOT_DOTTED = [
  '/a%2Fb',
  '/a/..%2Fb',
  '/a/%2e%2e%2fb',
  '/a/%2e%2e%5Cb',
  '/a/...',
  '/a/.x',
  '/a/..b',
  '/a/b.',
  '/a?p=../..',
] as const;

/** Writes a raw request; its status and body. */
async function raw(server: RunningServer, method: string, target: string, headers: string[] = []) {
  const body = method === 'PUT' ? 'x' : '';
  const head = [
    `${method} ${target} HTTP/1.1`,
    'Host: edge.test',
    'Connection: close',
    ...(method === 'PUT' ? ['Content-Length: 1'] : []),
    ...headers,
  ];
  const outcome = await rawExchange(server.port, `${head.join('\r\n')}\r\n\r\n${body}`, 1500);
  return { status: outcome.status ?? 0, body: outcome.text.split('\r\n\r\n').slice(1).join('\r\n\r\n') };
}

describe('dotSegmentIn', () => {
  it.each([...DOTTED, ...BACKSLASHED])('finds the dot segment in %s', (target) => {
    expect(dotSegmentIn(target)).toBeDefined();
  });
  it.each(NOT_DOTTED)('finds none in %s', (target) => {
    expect(dotSegmentIn(target)).toBeUndefined();
  });
  it('names the segment as the client spelled it', () => {
    expect(dotSegmentIn('/a/.%2E/b')).toBe('.%2E');
    expect(dotSegmentIn('/a/%2e')).toBe('%2e');
  });
});

describe.each([
  ['open', {}, []],
  ['signed', { auth: { mode: 'signed', secrets: ['dot-secret-dot-secret-dot-secret-dot'] } }, []],
  [
    'token',
    {
      auth: {
        mode: 'token',
        tokens: [{ name: 'a', token: 'dot-token-0123456789', scopes: ['send', 'recv'] }],
      },
    },
    ['Authorization: Bearer dot-token-0123456789'],
  ],
] as const)('a Node server in %s mode', (_mode, config, auth) => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer(config as Parameters<typeof startTestServer>[0]);
  });
  afterAll(() => server?.close());

  for (const method of ['GET', 'PUT', 'HEAD'] as const) {
    it(`refuses ${method} of every dotted target with 400 and a one-line reason, before any wait`, async () => {
      const wrong: string[] = [];
      for (const target of DOTTED) {
        // Also when the credential is missing: the path is refused before access is checked.
        for (const headers of [[...auth], []]) {
          const { status, body } = await raw(server, method, target, headers);
          const expected = method === 'HEAD' ? '' : 'segment; dot segments are refused, as they would name';
          if (
            status !== 400 ||
            !body.includes(expected) ||
            (method !== 'HEAD' && !/^\[ERROR\] [^\n]+\n$/.test(body))
          )
            wrong.push(`${method} ${target}: ${status} ${JSON.stringify(body.slice(0, 80))}`);
        }
      }
      expect(wrong).toEqual([]);
      // Nothing reached the broker: no pipe waits.
      const health = (await (await fetch(`${server.url}/_/health`)).json()) as {
        broker: { waiting: number };
      };
      expect(health.broker.waiting).toBe(0);
    });
  }
});

describe('a Node server in open mode', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  it('lets names that only look dotted through, %2F as part of a name', async () => {
    for (const target of NOT_DOTTED) {
      expect(`${target} ${(await raw(server, 'HEAD', target)).status}`).toBe(`${target} 200`);
    }
    // `/d/a%2Fb` is a pipe of its own: its receiver meets its sender, not `/d/a/b`'s.
    const receiving = fetch(`${server.url}/d/a%2Fb`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const other = await fetch(`${server.url}/d/a/b`, { method: 'HEAD' });
    expect(other.headers.get('x-edgepipe-state')).toBe('idle');
    const sent = await fetch(`${server.url}/d/a%2Fb`, { method: 'PUT', body: 'slash in a name' });
    expect(await (await receiving).text()).toBe('slash in a name');
    expect(await sent.text()).toContain('Sent successfully!');
  });
});
