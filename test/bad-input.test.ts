// The bad-input corpus: hostile and malformed requests against real server processes, each with the answer
// the README documents, while a transfer runs beside them and must arrive byte-exact.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningKeys, signedQuery } from '../src/access/capability-url.js';
import { type ServerProcess, spawnServer } from './helpers/processes.js';
import { type RawEnd, type RawOutcome, rawExchange } from './helpers/raw-http.js';

const SECRET = 'corpus-secret-corpus-secret-corpus-secret';
const ADMIN = 'corpus-admin-token-0123';
const MAX_BODY = 16 * 1024 * 1024;
/** The server's head timeout: short, so the cases that wait for it run fast. */
const HEADERS_TIMEOUT_MS = 1000;
/**
 * Node looks for expired heads every `connectionsCheckingInterval` (the Node adapter sets a quarter of the
 * head timeout), so a half-sent head is dropped between the timeout and the timeout plus that period.
 */
const HEAD_CHECK_MS = HEADERS_TIMEOUT_MS / 4;
/** Scheduling slack on a loaded 2-core machine, on top of what the server's own timers allow. */
const SLACK_MS = 750;
/**
 * How long a raw exchange waits for the server to end the connection: every raw request says
 * `Connection: close` or is malformed, so the server must hang up within the head timeout at the latest.
 * Longer than this is a hang, and a hang is a failure, never a `closed`.
 */
const RAW_WAIT_MS = 2 * HEADERS_TIMEOUT_MS + HEAD_CHECK_MS + SLACK_MS;

let open: ServerProcess;
let signed: ServerProcess;

function configFile(config: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'edgepipe-corpus-')), 'config.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

beforeAll(async () => {
  const limits = {
    maxBodyBytes: MAX_BODY,
    idleTimeoutMs: 2000,
    perClient: { requestsPerSecond: 2, burst: 10, maxPipes: 4, maxWaiting: 3 },
  };
  // Every case names its own client in X-Forwarded-For (the test is the trusted proxy), so a flood only
  // spends its own client's budget.
  const server = { headersTimeoutMs: HEADERS_TIMEOUT_MS, trustProxies: ['loopback'] };
  [open, signed] = await Promise.all([
    spawnServer(['--config', configFile({ server, limits })]),
    spawnServer(['--config', configFile({ server, limits, auth: { mode: 'signed', adminToken: ADMIN } })], {
      EDGEPIPE_SECRETS: SECRET,
    }),
  ]);
});

afterAll(() => {
  open?.kill();
  signed?.kill();
});

let nextClient = 1;
/** A client address of its own for each case. */
const newClient = () => `198.51.100.${nextClient++}`;
const portOf = (server: ServerProcess) => Number(new URL(server.url).port);

/**
 * What a case got: an HTTP status; `closed` or `reset` when the server ended the connection without one;
 * `timeout` when a raw exchange was still open when the test stopped waiting (a hang: no case accepts it).
 */
type Outcome = number | RawEnd;

interface Case {
  readonly name: string;
  /** The answers the README documents for it (one of them). */
  readonly expect: readonly Outcome[];
  readonly run: () => Promise<Outcome>;
}

/** A request through fetch; every 4xx must carry a one-line `[ERROR] <reason>` body. */
async function fetched(server: ServerProcess, path: string, init: RequestInit = {}): Promise<Outcome> {
  const headers = new Headers(init.headers);
  headers.set('X-Forwarded-For', newClient());
  const response = await fetch(`${server.url}${path}`, {
    ...init,
    headers,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text().catch(() => '');
  if (response.status >= 400 && init.method !== 'HEAD') {
    expect(text, `${init.method ?? 'GET'} ${path}`).toMatch(/^\[ERROR\] [^\n]+\n$/);
  }
  return response.status;
}

/**
 * A raw request. Its status counts only once the server has also ended the connection (every raw request
 * asks for `Connection: close` or is one the server cannot go on from); an answer followed by silence, or
 * no answer at all before `RAW_WAIT_MS`, is `timeout`.
 */
async function raw(server: ServerProcess, data: string | Uint8Array): Promise<Outcome> {
  return outcomeOf(await rawExchange(portOf(server), data, RAW_WAIT_MS));
}

const outcomeOf = (outcome: RawOutcome): Outcome =>
  outcome.end === 'timeout' ? 'timeout' : (outcome.status ?? outcome.end);

/**
 * A request head that stops half way (or never starts): the server must drop it at its head timeout, with a
 * 408, not before (a client on a slow link gets the whole timeout) and not much after (Node checks every
 * `HEAD_CHECK_MS`).
 */
async function halfHead(server: ServerProcess, data: string): Promise<Outcome> {
  const outcome = await rawExchange(portOf(server), data, RAW_WAIT_MS);
  if (outcome.end !== 'timeout') {
    expect(outcome.ms, 'dropped before the head timeout').toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
    expect(outcome.ms, 'dropped long after the head timeout').toBeLessThanOrEqual(
      HEADERS_TIMEOUT_MS + HEAD_CHECK_MS + SLACK_MS,
    );
  }
  return outcomeOf(outcome);
}

const head = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;
const rawGet = (target: string, extra: string[] = []) =>
  head([
    `GET ${target} HTTP/1.1`,
    'Host: corpus',
    `X-Forwarded-For: ${newClient()}`,
    'Connection: close',
    ...extra,
  ]);
const rawPut = (target: string, extra: string[], body = '') =>
  `${head([`PUT ${target} HTTP/1.1`, 'Host: corpus', `X-Forwarded-For: ${newClient()}`, 'Connection: close', ...extra])}${body}`;

/** A capability URL for the signed server (`expiresIn` seconds from now; negative: already expired). */
async function capability(
  scope: 'send' | 'recv',
  path: string,
  expiresIn = 600,
  prefix = false,
): Promise<string> {
  const expiresAt = Math.floor(Date.now() / 1000) + expiresIn;
  const query = await signedQuery(new SigningKeys([SECRET]), { scope, path, prefix, expiresAt });
  return `${path}?${query}`;
}

/** Runs `requests` at once from one client and returns their statuses. */
async function flood(server: ServerProcess, count: number, path: (i: number) => string): Promise<Outcome[]> {
  const client = newClient();
  const controllers = Array.from({ length: count }, () => new AbortController());
  const statuses = controllers.map((abort, i) =>
    fetch(`${server.url}${path(i)}`, { headers: { 'X-Forwarded-For': client }, signal: abort.signal }).then(
      (response) => response.status as Outcome,
      () => 'closed' as Outcome,
    ),
  );
  // Receivers that were let in wait for a sender; give the refusals time to come back, then leave.
  const settled = await Promise.all(
    statuses.map((status) =>
      Promise.race([status, new Promise<Outcome>((r) => setTimeout(() => r(0), 1500))]),
    ),
  );
  for (const abort of controllers) abort.abort();
  return settled;
}

const long = 'a'.repeat(2000);

const CASES: Case[] = [
  // Paths and their encodings.
  // The URL parser resolves dot segments, encoded ones too, before any name is compared: raw traversals
  // land on the path they resolve to (here a reserved one, which nobody may send to).
  {
    name: 'raw encoded dot-dot traversal',
    expect: [400],
    run: () => raw(open, rawPut('/x/%2e%2e/help', ['Content-Length: 1'], 'x')),
  },
  {
    name: 'raw mixed-case encoded traversal',
    expect: [400],
    run: () => raw(open, rawPut('/x/.%2E/robots.txt', ['Content-Length: 1'], 'x')),
  },
  {
    name: 'raw backslash traversal',
    expect: [400],
    run: () => raw(open, rawPut('/x\\..\\help', ['Content-Length: 1'], 'x')),
  },
  {
    name: 'encoded NUL in the path',
    expect: [400],
    run: () => fetched(open, '/a/%00b', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'encoded CR LF header injection',
    expect: [400],
    run: () => fetched(open, '/a/%0d%0aSet-Cookie:x', { method: 'PUT', body: 'x' }),
  },
  { name: 'encoded DEL', expect: [400], run: () => fetched(open, '/a%7f', { method: 'PUT', body: 'x' }) },
  {
    name: 'invalid UTF-8 in the path',
    expect: [400],
    run: () => fetched(open, '/a/%ff%fe', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'broken percent-encoding',
    expect: [400],
    run: () => fetched(open, '/a/%zz%', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'overlong path on send',
    expect: [414],
    run: () => fetched(open, `/${long}`, { method: 'PUT', body: 'x' }),
  },
  { name: 'overlong path on receive', expect: [414], run: () => fetched(open, `/${long}`) },
  { name: 'raw space in the request target', expect: [400], run: () => raw(open, rawGet('/a b')) },
  {
    name: 'raw NUL in the request target',
    expect: [400],
    run: () => raw(open, rawGet('/a\u0000b')),
  },
  {
    name: 'raw traversal resolved to a reserved path',
    expect: [400],
    run: () => raw(open, rawPut('/x/../../help', ['Content-Length: 1'], 'x')),
  },
  {
    name: 'send to the index page',
    expect: [400],
    run: () => fetched(open, '/', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'send to a reserved page',
    expect: [400],
    run: () => fetched(open, '/robots.txt', { method: 'POST', body: 'x' }),
  },
  {
    name: 'send to an internal endpoint',
    expect: [400],
    run: () => fetched(open, '/_/health', { method: 'PUT', body: 'x' }),
  },
  { name: 'unknown internal endpoint', expect: [404], run: () => fetched(open, '/_/secrets') },
  // ?n=
  { name: 'n = 0', expect: [400], run: () => fetched(open, '/n?n=0', { method: 'PUT', body: 'x' }) },
  { name: 'n negative', expect: [400], run: () => fetched(open, '/n?n=-1', { method: 'PUT', body: 'x' }) },
  {
    name: 'n not a number',
    expect: [400],
    run: () => fetched(open, '/n?n=abc', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'n in exponent form',
    expect: [400],
    run: () => fetched(open, '/n?n=1e3', { method: 'PUT', body: 'x' }),
  },
  { name: 'n fractional', expect: [400], run: () => fetched(open, '/n?n=1.5', { method: 'PUT', body: 'x' }) },
  {
    name: 'n huge',
    expect: [400],
    run: () => fetched(open, '/n?n=99999999999999999999', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'n above maxReceivers',
    expect: [400],
    run: () => fetched(open, '/n?n=33', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'n given twice',
    expect: [400],
    run: () => fetched(open, '/n?n=2&n=3', { method: 'PUT', body: 'x' }),
  },
  { name: 'n invalid on HEAD', expect: [400], run: () => fetched(open, '/n?n=x', { method: 'HEAD' }) },
  {
    name: 'receiver n disagrees with the waiting sender',
    expect: [400],
    run: async () => {
      const abort = new AbortController();
      const sender = fetch(`${open.url}/mismatch?n=2`, {
        method: 'PUT',
        body: 'x',
        headers: { 'X-Forwarded-For': newClient() },
        signal: abort.signal,
      }).catch(() => undefined);
      await (await sender)?.body?.getReader().read();
      const status = await fetched(open, '/mismatch?n=3');
      abort.abort();
      return status;
    },
  },
  // Offsets and ranges.
  { name: 'receiver offset negative', expect: [400], run: () => fetched(open, '/o?offset=-5') },
  { name: 'receiver offset not a number', expect: [400], run: () => fetched(open, '/o?offset=abc') },
  {
    name: 'receiver offset past 2^53',
    expect: [400],
    run: () => fetched(open, '/o?offset=9999999999999999'),
  },
  { name: 'receiver offset given twice', expect: [400], run: () => fetched(open, '/o?offset=1&offset=2') },
  {
    name: 'offset and Range disagree',
    expect: [400],
    run: () => fetched(open, '/o?offset=5', { headers: { Range: 'bytes=6-' } }),
  },
  {
    name: 'sender offset negative',
    expect: [400],
    run: () => fetched(open, '/o?offset=-1', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'sender offset in exponent form',
    expect: [400],
    run: () => fetched(open, '/o?offset=1e2', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'resume on the in-memory broker',
    expect: [501],
    run: () => fetched(open, '/o?offset=5', { method: 'PUT', body: 'x' }),
  },
  {
    name: 'multipart upload with an offset',
    expect: [400],
    run: () => fetched(open, '/o?offset=0', { method: 'POST', body: new FormData() }),
  },
  // Framing: what Node's parser refuses before the app sees it.
  {
    name: 'Content-Length with Transfer-Encoding',
    expect: [400],
    run: () => raw(open, rawPut('/te', ['Content-Length: 3', 'Transfer-Encoding: chunked'], '0\r\n\r\n')),
  },
  {
    name: 'two different Content-Lengths',
    expect: [400],
    run: () => raw(open, rawPut('/cl', ['Content-Length: 3', 'Content-Length: 4'], 'abcd')),
  },
  {
    name: 'negative Content-Length',
    expect: [400],
    run: () => raw(open, rawPut('/cl', ['Content-Length: -1'])),
  },
  {
    name: 'non-numeric Content-Length',
    expect: [400],
    run: () => raw(open, rawPut('/cl', ['Content-Length: abc'])),
  },
  {
    name: 'Transfer-Encoding other than chunked',
    expect: [400],
    run: () => raw(open, rawPut('/te', ['Transfer-Encoding: gzip'], 'abc')),
  },
  {
    name: 'invalid chunk size',
    expect: [400],
    run: () => raw(open, rawPut('/chunk', ['Transfer-Encoding: chunked'], 'zz\r\nabc\r\n0\r\n\r\n')),
  },
  {
    name: 'no Host header',
    expect: [400],
    run: () => raw(open, head(['GET /version HTTP/1.1', 'Connection: close'])),
  },
  { name: 'garbage request line', expect: [400], run: () => raw(open, 'HELLO WORLD\r\n\r\n') },
  {
    name: 'HTTP/2 preface on HTTP/1',
    expect: [400],
    run: () => raw(open, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  },
  {
    name: 'invalid method token',
    expect: [400],
    run: () => raw(open, rawGet('/x').replace('GET', 'G(T')),
  },
  {
    name: 'one oversized header',
    expect: [431],
    run: () => raw(open, rawGet('/version', [`X-Big: ${'b'.repeat(20_000)}`])),
  },
  {
    name: 'a thousand small headers',
    expect: [431],
    run: () =>
      raw(
        open,
        rawGet(
          '/version',
          Array.from({ length: 1000 }, (_, i) => `X-H${i}: ${'v'.repeat(16)}`),
        ),
      ),
  },
  {
    // Node hands CONNECT to a `connect` listener, and with none it hangs up at once: no tunnel, no answer.
    name: 'CONNECT',
    expect: [400, 405, 'closed', 'reset'],
    run: async () => {
      const outcome = await rawExchange(
        portOf(open),
        head(['CONNECT example.com:443 HTTP/1.1', 'Host: example.com:443']),
        RAW_WAIT_MS,
      );
      expect(outcome.ms, 'CONNECT left open until the head timeout').toBeLessThan(HEADERS_TIMEOUT_MS);
      return outcomeOf(outcome);
    },
  },
  // Methods.
  { name: 'DELETE', expect: [405], run: () => fetched(open, '/x', { method: 'DELETE' }) },
  { name: 'PATCH', expect: [405], run: () => fetched(open, '/x', { method: 'PATCH', body: 'x' }) },
  {
    name: 'TRACE',
    expect: [405],
    run: () => raw(open, head(['TRACE /x HTTP/1.1', 'Host: corpus', 'Connection: close'])),
  },
  // Multipart and other bodies.
  {
    name: 'multipart without a boundary',
    expect: [400],
    run: () =>
      fetched(open, '/mp', { method: 'POST', body: 'x', headers: { 'Content-Type': 'multipart/form-data' } }),
  },
  {
    name: 'multipart boundary over 70 characters',
    expect: [400],
    run: () =>
      fetched(open, '/mp', {
        method: 'POST',
        body: 'x',
        headers: { 'Content-Type': `multipart/form-data; boundary=${'q'.repeat(71)}` },
      }),
  },
  {
    name: 'service worker registration',
    expect: [400],
    run: () => fetched(open, '/sw.js', { headers: { 'Service-Worker': 'script' } }),
  },
  {
    name: 'declared body over maxBodyBytes',
    expect: [413],
    run: () => raw(open, rawPut('/big', [`Content-Length: ${MAX_BODY + 1}`])),
  },
  // Half-open and slow clients.
  {
    name: 'a head that never ends',
    expect: [408],
    run: () => halfHead(open, 'GET /slow HTTP/1.1\r\nHost: corpus\r\n'),
  },
  { name: 'a connection that sends nothing', expect: [408], run: () => halfHead(open, '') },
  // Floods beyond the per-client limits.
  {
    name: 'request flood beyond the rate limit',
    expect: [429],
    run: async () => {
      const statuses = await flood(open, 30, () => '/version');
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(10);
      return statuses.includes(429) ? 429 : statuses[statuses.length - 1]!;
    },
  },
  {
    name: 'waiting flood beyond the per-client cap',
    expect: [429],
    run: async () => {
      const statuses = await flood(open, 6, (i) => `/wait-flood/${i}`);
      expect(statuses.filter((s) => s === 429)).toHaveLength(3);
      return 429;
    },
  },
  {
    name: 'open pipes beyond the per-client cap',
    expect: [429],
    run: async () => {
      // Two running transfers, each end from the same client: four open pipe requests, none waiting.
      const client = { 'X-Forwarded-For': newClient() };
      const stop = new AbortController();
      const transfers = [0, 1].map(async (i) => {
        const receiving = fetch(`${open.url}/cap/${i}`, { headers: client, signal: stop.signal });
        const sending = fetch(`${open.url}/cap/${i}`, {
          method: 'PUT',
          headers: client,
          signal: stop.signal,
          body: new ReadableStream({ start: (controller) => controller.enqueue(new Uint8Array(10)) }),
          duplex: 'half',
        } as RequestInit);
        await (await receiving).body!.getReader().read();
        return sending;
      });
      await Promise.all(transfers);
      const fifth = await fetch(`${open.url}/cap/2`, { headers: client, signal: AbortSignal.timeout(5000) });
      const reason = await fifth.text();
      stop.abort();
      expect(reason).toMatch(/has 4 pipe requests open; at most 4/);
      return fifth.status;
    },
  },
  // Access control (the signed server).
  { name: 'unsigned send', expect: [401], run: () => fetched(signed, '/s', { method: 'PUT', body: 'x' }) },
  { name: 'unsigned receive', expect: [401], run: () => fetched(signed, '/s') },
  {
    name: 'tampered path',
    expect: [403],
    run: async () =>
      fetched(signed, (await capability('send', '/s')).replace('/s?', '/t?'), { method: 'PUT', body: 'x' }),
  },
  {
    name: 'tampered signature',
    expect: [403],
    run: async () =>
      fetched(signed, (await capability('send', '/s')).replace(/sig=./, 'sig=A'), {
        method: 'PUT',
        body: 'x',
      }),
  },
  {
    name: 'signature of the wrong alphabet',
    expect: [403],
    run: async () =>
      fetched(signed, `${(await capability('send', '/s')).replace(/sig=.*/, 'sig=%00%01')}`, {
        method: 'PUT',
        body: 'x',
      }),
  },
  {
    name: 'expired URL',
    expect: [403],
    run: async () => fetched(signed, await capability('send', '/s', -5), { method: 'PUT', body: 'x' }),
  },
  {
    name: 'send URL used to receive',
    expect: [403],
    run: async () => fetched(signed, await capability('send', '/s')),
  },
  {
    name: 'receive URL used to send',
    expect: [403],
    run: async () => fetched(signed, await capability('recv', '/s'), { method: 'PUT', body: 'x' }),
  },
  {
    name: 'scope forged to admin',
    expect: [403],
    run: async () =>
      fetched(signed, (await capability('send', '/s')).replace('scope=send', 'scope=admin'), {
        method: 'PUT',
        body: 'x',
      }),
  },
  {
    name: 'expiry not a number',
    expect: [403],
    run: async () =>
      fetched(signed, (await capability('send', '/s')).replace(/exp=\d+/, 'exp=soon'), {
        method: 'PUT',
        body: 'x',
      }),
  },
  {
    name: 'signature given twice',
    expect: [403],
    run: async () => fetched(signed, `${await capability('send', '/s')}&sig=x`, { method: 'PUT', body: 'x' }),
  },
  {
    name: 'prefix URL outside its namespace',
    expect: [403],
    run: async () => {
      const url = await capability('send', '/team', 600, true);
      return fetched(signed, `/elsewhere${url.slice(url.indexOf('?'))}`, { method: 'PUT', body: 'x' });
    },
  },
  {
    name: 'prefix URL stepping out with an encoded dot-dot',
    expect: [400, 403],
    run: async () => {
      const url = await capability('send', '/team', 600, true);
      return fetched(signed, `/team/%2e%2e/other${url.slice(url.indexOf('?'))}`, {
        method: 'PUT',
        body: 'x',
      });
    },
  },
  {
    name: 'self-heal status without the admin token',
    expect: [401],
    run: () => fetched(signed, '/_/selfheal'),
  },
  {
    name: 'metrics with a wrong admin token',
    expect: [403],
    run: () => fetched(signed, '/_/metrics', { headers: { Authorization: 'Bearer not-the-admin-token' } }),
  },
];

describe('bad-input corpus', () => {
  it(`has at least 50 cases (${CASES.length})`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(50);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  it('answers every case as documented while a transfer beside them arrives byte-exact', async () => {
    // The transfer: a paced upload of random bytes that goes on until the corpus is done.
    const sent = createHash('sha256');
    let corpusDone = false;
    let sentBytes = 0;
    const upload = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (corpusDone) return controller.close();
        await new Promise((resolve) => setTimeout(resolve, 20));
        const chunk = randomBytes(4096);
        sent.update(chunk);
        sentBytes += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const beside = { 'X-Forwarded-For': '203.0.113.1' };
    const receiving = fetch(`${open.url}/beside/transfer`, { headers: beside });
    const sending = fetch(`${open.url}/beside/transfer`, {
      method: 'PUT',
      body: upload,
      headers: beside,
      duplex: 'half',
    } as RequestInit);
    const received = (async () => {
      const response = await receiving;
      expect(response.status).toBe(200);
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        bytes += chunk.length;
      }
      return { hash: hash.digest('hex'), bytes };
    })();

    const failures: string[] = [];
    for (const testCase of CASES) {
      let outcome: Outcome;
      try {
        outcome = await testCase.run();
      } catch (error) {
        failures.push(`${testCase.name}: threw ${(error as Error).message}`);
        continue;
      }
      if (!testCase.expect.includes(outcome)) {
        failures.push(`${testCase.name}: got ${outcome}, expected ${testCase.expect.join(' or ')}`);
      }
      // After every case the server still serves.
      const health = await fetch(`${open.url}/_/health`, { headers: { 'X-Forwarded-For': newClient() } });
      if (health.status !== 200) failures.push(`${testCase.name}: health then answered ${health.status}`);
    }
    corpusDone = true;
    const transcript = await (await sending).text();
    const { hash, bytes } = await received;
    expect(failures).toEqual([]);
    expect(transcript).toContain('Sent successfully!');
    expect(bytes).toBe(sentBytes);
    expect(hash).toBe(sent.digest('hex'));
    expect(sentBytes).toBeGreaterThan(64 * 1024);
  }, 120_000);

  it('cuts a chunked upload that grows past maxBodyBytes, and the receiver sees an error', async () => {
    const client = { 'X-Forwarded-For': newClient() };
    const receiving = fetch(`${open.url}/too/big`, { headers: client });
    const chunk = new Uint8Array(1024 * 1024);
    let pulled = 0;
    const sending = fetch(`${open.url}/too/big`, {
      method: 'PUT',
      headers: client,
      body: new ReadableStream<Uint8Array>({
        pull(controller) {
          if (pulled++ < 64) controller.enqueue(chunk);
          else controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    const response = await receiving;
    await expect(response.arrayBuffer()).rejects.toThrow();
    const transcript = await (await sending).text().catch(() => '');
    expect(transcript).toMatch(/\[ERROR\] The body is larger than the 16777216 bytes this server accepts\./);
    expect(pulled).toBeLessThan(64);
  });

  it('drops an upload that stalls mid-body after idleTimeoutMs; its receiver sees an error', async () => {
    const client = newClient();
    const receiving = fetch(`${open.url}/stall`, { headers: { 'X-Forwarded-For': client } });
    const outcome = await rawExchange(
      portOf(open),
      rawPut('/stall', ['Content-Length: 1000'], 'only ten b'),
      10_000,
    );
    expect(outcome.status).toBe(200);
    expect(outcome.closed).toBe(true);
    expect(outcome.text).toContain('[ERROR] The upload sent nothing for 2 s.');
    expect(outcome.ms).toBeGreaterThan(1900);
    const response = await receiving;
    await expect(response.arrayBuffer()).rejects.toThrow();
  });
});
