import { describe, expect, it } from 'vitest';
import { type Capability, SigningKeys, signedQuery } from '../src/access/capability-url.js';
import { clientAddressOf, TrustedProxies } from '../src/access/client-address.js';
import { createApp } from '../src/app.js';
import { signedUrl } from '../src/cli/sign.js';
import { type ConfigInput, parseConfig } from '../src/config.js';
import { ManualClock } from './helpers/manual-clock.js';

const BASE = 'http://edge.test';
const OLD_SECRET = 'old-secret-old-secret-old-secret-0';
const NEW_SECRET = 'new-secret-new-secret-new-secret-1';
const ADMIN = 'admin-token-admin-token';

/** An app whose client address is whatever the test passes as `env.peer`. */
function setup(input: ConfigInput = {}) {
  const config = parseConfig(input);
  const clock = new ManualClock();
  clock.advance(1_800_000_000_000);
  const app = createApp(config, {
    clock,
    logError: () => {},
    peerAddress: (_request, env) => (env as { peer?: string } | undefined)?.peer,
  });
  const request = async (path: string, init?: RequestInit, peer = '192.0.2.1'): Promise<Response> =>
    app.fetch(new Request(`${BASE}${path}`, init), { peer });
  return { app, clock, request };
}

const nowSeconds = (clock: ManualClock) => Math.floor(clock.now() / 1000);

async function sign(secret: string, capability: Capability): Promise<string> {
  const query = await signedQuery(new SigningKeys([secret]), capability);
  return `${capability.path}?${query}`;
}

/** Whether a request got past the access check: HEAD answers the pipe's state, never a 4xx. */
async function reason(response: Response): Promise<string> {
  return (await response.text()).trim();
}

describe('signed URLs', () => {
  const signed = { auth: { mode: 'signed' as const, secrets: [NEW_SECRET, OLD_SECRET] } };

  it('lets a send URL send and a recv URL receive, byte-exact', async () => {
    const { request, clock } = setup(signed);
    const expiresAt = nowSeconds(clock) + 600;
    const send = await sign(NEW_SECRET, { scope: 'send', path: '/a/b', prefix: false, expiresAt });
    const recv = await sign(NEW_SECRET, { scope: 'recv', path: '/a/b', prefix: false, expiresAt });
    const receiving = request(recv);
    const sent = await request(send, { method: 'PUT', body: 'hello signed' });
    expect(sent.status).toBe(200);
    const received = await receiving;
    expect(received.status).toBe(200);
    expect(await received.text()).toBe('hello signed');
    expect(await sent.text()).toContain('Sent successfully!');
  });

  it('refuses a missing, tampered, wrong-scope, expired or too-distant URL with the reason', async () => {
    const { request, clock } = setup(signed);
    const expiresAt = nowSeconds(clock) + 600;
    const send = await sign(NEW_SECRET, { scope: 'send', path: '/x', prefix: false, expiresAt });
    const missing = await request('/x', { method: 'PUT', body: 'a' });
    expect(missing.status).toBe(401);
    expect(await reason(missing)).toContain('has no signature');

    const wrongScope = await request(send);
    expect(wrongScope.status).toBe(403);
    expect(await reason(wrongScope)).toBe('[ERROR] This URL is signed for sending only.');

    for (const tampered of [
      send.replace('/x?', '/y?'),
      send.replace(`exp=${expiresAt}`, `exp=${expiresAt + 1}`),
      send.replace('scope=send', 'scope=recv'),
      `${send.slice(0, -2)}AA`,
      `${send}&sig=again`,
    ]) {
      const response = await request(tampered, { method: 'PUT', body: 'a' });
      expect(response.status, tampered).toBe(403);
    }

    clock.advance(601_000);
    const expired = await request(send, { method: 'PUT', body: 'a' });
    expect(expired.status).toBe(403);
    expect(await reason(expired)).toMatch(/expired 1 s ago/);

    const distant = await sign(NEW_SECRET, {
      scope: 'send',
      path: '/x',
      prefix: false,
      expiresAt: nowSeconds(clock) + 8 * 24 * 3600,
    });
    expect((await request(distant, { method: 'PUT', body: 'a' })).status).toBe(403);
  });

  it('binds n when it was signed, and lets an unbound URL choose it', async () => {
    const { request, clock } = setup(signed);
    const expiresAt = nowSeconds(clock) + 600;
    const bound = await sign(NEW_SECRET, { scope: 'recv', path: '/n', prefix: false, n: 2, expiresAt });
    expect((await request(bound.replace('n=2', 'n=3'), { method: 'HEAD' })).status).toBe(403);
    expect((await request(bound.replace('n=2&', ''), { method: 'HEAD' })).status).toBe(403);
    expect((await request(bound, { method: 'HEAD' })).status).toBe(200);
    const free = await sign(NEW_SECRET, { scope: 'recv', path: '/n', prefix: false, expiresAt });
    expect((await request(`${free}&n=3`, { method: 'HEAD' })).status).toBe(200);
  });

  it('admits every pipe under a prefix and nothing beside it', async () => {
    const { request, clock } = setup(signed);
    const expiresAt = nowSeconds(clock) + 600;
    const url = await sign(NEW_SECRET, { scope: 'send', path: '/team', prefix: true, expiresAt });
    const query = url.slice(url.indexOf('?'));
    expect((await request(`/team/backup.tar${query}`, { method: 'HEAD' })).status).toBe(200);
    expect((await request(`/team/a/b${query}`, { method: 'HEAD' })).status).toBe(200);
    const beside = await request(`/teammate${query}`, { method: 'HEAD' });
    expect(beside.status).toBe(403);
    expect((await request(`/other${query}`, { method: 'HEAD' })).status).toBe(403);
    // The namespace is signed: naming another one in the query breaks the signature.
    const moved = `/other/x${query.replace('prefix=%2Fteam', 'prefix=%2Fother')}`;
    expect((await request(moved, { method: 'HEAD' })).status).toBe(403);
  });

  it('rotates secrets: the old one verifies while listed, the first one signs', async () => {
    const expiring = (clock: ManualClock) => nowSeconds(clock) + 600;
    const both = setup(signed);
    const old = await sign(OLD_SECRET, {
      scope: 'recv',
      path: '/r',
      prefix: false,
      expiresAt: expiring(both.clock),
    });
    expect((await both.request(old, { method: 'HEAD' })).status).toBe(200);
    const rotated = setup({ auth: { mode: 'signed', secrets: [NEW_SECRET] } });
    const stale = await sign(OLD_SECRET, {
      scope: 'recv',
      path: '/r',
      prefix: false,
      expiresAt: expiring(rotated.clock),
    });
    expect((await rotated.request(stale, { method: 'HEAD' })).status).toBe(403);
  });

  it('verifies what `edgepipe sign` prints', async () => {
    const { request, clock } = setup(signed);
    const env = { EDGEPIPE_SECRETS: `${NEW_SECRET},${OLD_SECRET}` };
    const send = await signedUrl('/cli/pipe', { send: true, ttl: '10m', url: BASE }, env, clock.now());
    const recv = await signedUrl(
      'cli/pipe/',
      { recv: true, ttl: '10m', url: BASE, n: '1' },
      env,
      clock.now(),
    );
    expect(send.startsWith(`${BASE}/cli/pipe?`)).toBe(true);
    const receiving = request(recv.slice(BASE.length));
    const sent = await request(send.slice(BASE.length), { method: 'PUT', body: 'from the cli' });
    expect(await (await receiving).text()).toBe('from the cli');
    expect(await sent.text()).toContain('Sent successfully!');
    await expect(signedUrl('/p', { ttl: '1h', url: BASE }, env)).rejects.toThrow(
      'give --send, --recv, both of them, or --tunnel',
    );
    await expect(signedUrl('/p', { send: true, ttl: 'soon', url: BASE }, env)).rejects.toThrow('--ttl');
    await expect(signedUrl('/p', { send: true, ttl: '0', url: BASE }, env)).rejects.toThrow('--ttl');
    await expect(signedUrl('/p', { send: true, ttl: '1h', url: BASE }, {})).rejects.toThrow(
      'no signing secret',
    );
  });

  it('signs send and recv URLs exactly as before (a fixed vector: old URLs keep verifying)', async () => {
    // Computed before scope `both` existed; the signed text of send and recv must not change.
    const send = await sign(NEW_SECRET, {
      scope: 'send',
      path: '/a/b',
      prefix: false,
      expiresAt: 1_800_000_600,
    });
    expect(send).toBe('/a/b?scope=send&exp=1800000600&sig=SxV5-5xto9bxElM6-AIiV_Zu67owOsry74ybAKCBgME');
    const recv = await sign(NEW_SECRET, {
      scope: 'recv',
      path: '/team',
      prefix: true,
      n: 2,
      expiresAt: 1_800_000_600,
    });
    expect(recv).toBe(
      '/team?n=2&scope=recv&exp=1800000600&prefix=%2Fteam&sig=l7dUBfLCi3dc_Yw2FHy3_u2727xIyMfJ-R7q-kauEHc',
    );
  });

  it('lets a both URL send and receive on its pipe; send and recv URLs still do one each', async () => {
    const { request, clock } = setup(signed);
    const expiresAt = nowSeconds(clock) + 600;
    const both = await sign(NEW_SECRET, { scope: 'both', path: '/duplex', prefix: false, expiresAt });
    expect(both).toContain('scope=both');
    expect((await request(both, { method: 'HEAD' })).status).toBe(200);
    const receiving = request(both);
    const sent = await request(both, { method: 'PUT', body: 'one URL, both ends' });
    expect(sent.status).toBe(200);
    expect(await (await receiving).text()).toBe('one URL, both ends');
    const posting = request(both, { method: 'POST', body: 'posted' });
    expect(await (await request(both)).text()).toBe('posted');
    expect((await posting).status).toBe(200);
    // Another pipe is not this URL's.
    expect((await request(both.replace('/duplex?', '/other?'), { method: 'HEAD' })).status).toBe(403);

    const send = await sign(NEW_SECRET, { scope: 'send', path: '/duplex', prefix: false, expiresAt });
    const sendGet = await request(send);
    expect(sendGet.status).toBe(403);
    expect(await reason(sendGet)).toBe('[ERROR] This URL is signed for sending only.');
    const recv = await sign(NEW_SECRET, { scope: 'recv', path: '/duplex', prefix: false, expiresAt });
    const recvPut = await request(recv, { method: 'PUT', body: 'x' });
    expect(recvPut.status).toBe(403);
    expect(await reason(recvPut)).toBe('[ERROR] This URL is signed for receiving only.');
  });

  it('refuses a URL whose scope was edited to both, or from both to one scope', async () => {
    const { request, clock } = setup(signed);
    const expiresAt = nowSeconds(clock) + 600;
    for (const scope of ['send', 'recv'] as const) {
      const url = await sign(NEW_SECRET, { scope, path: '/t', prefix: true, expiresAt });
      const edited = url.replace(`scope=${scope}`, 'scope=both');
      expect(edited).not.toBe(url);
      for (const init of [{ method: 'PUT', body: 'x' }, { method: 'GET' }, { method: 'HEAD' }]) {
        const response = await request(edited.replace('/t?', '/t/a/up?'), init);
        expect(response.status, `${scope} ${init.method}`).toBe(403);
        if (init.method !== 'HEAD') {
          expect(await reason(response)).toBe('[ERROR] The signature does not match this URL.');
        }
      }
    }
    const both = await sign(NEW_SECRET, { scope: 'both', path: '/t', prefix: true, expiresAt });
    for (const scope of ['send', 'recv']) {
      const narrowed = both.replace('scope=both', `scope=${scope}`);
      expect((await request(narrowed, { method: 'HEAD' })).status).toBe(403);
    }
  });

  it('a both prefix URL admits every pipe below its namespace with the query unchanged, nothing outside', async () => {
    const { request, clock } = setup(signed);
    const expiresAt = nowSeconds(clock) + 600;
    const url = await sign(NEW_SECRET, { scope: 'both', path: '/tun/abc', prefix: true, expiresAt });
    const query = url.slice(url.indexOf('?'));
    // As the tunnel client builds them: the namespace's path extended, the signed query as it is.
    for (const pipe of ['/tun/abc/ctl/0', '/tun/abc/7/up', '/tun/abc/7/down']) {
      const receiving = request(`${pipe}${query}`);
      const sent = await request(`${pipe}${query}`, { method: 'PUT', body: `through ${pipe}` });
      expect(sent.status, pipe).toBe(200);
      expect(await (await receiving).text()).toBe(`through ${pipe}`);
    }
    expect((await request(`/tun/abc${query}`, { method: 'HEAD' })).status).toBe(200);
    for (const outside of [
      '/tun/abc-other/x',
      '/tun/abcd',
      '/tun/x',
      '/other',
      '/tun/abc/../x',
      '/tun/abc/%2e%2e/x',
      '/tun/abc%2Fx',
    ]) {
      for (const init of [{ method: 'PUT', body: 'x' }, { method: 'GET' }]) {
        const response = await request(`${outside}${query}`, init);
        expect(response.status, `${init.method} ${outside}`).toBe(403);
        expect(await reason(response)).toBe('[ERROR] The signed URL admits pipes under /tun/abc only.');
      }
    }
  });

  it('`edgepipe sign --tunnel` signs a both prefix URL; --send --recv a both URL; --n is refused', async () => {
    const { request, clock } = setup(signed);
    const env = { EDGEPIPE_SECRETS: NEW_SECRET };
    const now = clock.now();
    const tunnel = new URL(await signedUrl('/tun/t1', { tunnel: true, ttl: '10m', url: BASE }, env, now));
    expect(tunnel.pathname).toBe('/tun/t1');
    expect(tunnel.searchParams.get('scope')).toBe('both');
    expect(tunnel.searchParams.get('prefix')).toBe('/tun/t1');
    // Short for --send --recv --prefix: the same URL, whichever of them is given besides.
    for (const flags of [
      { send: true, recv: true, prefix: true },
      { tunnel: true, send: true },
      { tunnel: true, prefix: true },
    ]) {
      expect(await signedUrl('/tun/t1', { ...flags, ttl: '10m', url: BASE }, env, now)).toBe(
        tunnel.toString(),
      );
    }
    const up = new URL(tunnel);
    up.pathname += '/9/up';
    const receiving = request(`${up.pathname}${up.search}`);
    const sent = await request(`${up.pathname}${up.search}`, { method: 'PUT', body: 'tunnelled' });
    expect(sent.status).toBe(200);
    expect(await (await receiving).text()).toBe('tunnelled');

    const duplex = new URL(
      await signedUrl('/d', { send: true, recv: true, ttl: '10m', url: BASE }, env, now),
    );
    expect(duplex.searchParams.get('scope')).toBe('both');
    expect(duplex.searchParams.has('prefix')).toBe(false);
    const path = `${duplex.pathname}${duplex.search}`;
    const duplexReceiving = request(path);
    expect((await request(path, { method: 'PUT', body: 'duplex' })).status).toBe(200);
    expect(await (await duplexReceiving).text()).toBe('duplex');

    await expect(signedUrl('/tun/t1', { tunnel: true, n: '2', ttl: '10m', url: BASE }, env)).rejects.toThrow(
      "--n: not with --tunnel (a tunnel's pipes have one receiver each)",
    );
    // --n still binds a URL that sends and receives one pipe.
    const bound = await signedUrl('/d', { send: true, recv: true, n: '2', ttl: '10m', url: BASE }, env, now);
    expect(new URL(bound).searchParams.get('n')).toBe('2');
  });

  it('`edgepipe sign` signs no path with dot segments (the server refuses them)', async () => {
    const env = { EDGEPIPE_SECRETS: NEW_SECRET };
    for (const path of ['/team/../other', '/team/%2e%2e/other', '/team/./x', 'team/.%2E']) {
      await expect(signedUrl(path, { send: true, ttl: '1h', url: BASE }, env)).rejects.toThrow(
        'segments are not allowed',
      );
    }
    expect(await signedUrl('/team/a%2Fb', { send: true, ttl: '1h', url: BASE }, env)).toMatch(
      /\/team\/a%2Fb\?/,
    );
  });
});

describe('edgepipe sign --ttl', () => {
  const env = { EDGEPIPE_SECRETS: NEW_SECRET };
  const expiresIn = async (ttl: string) => {
    const now = 1_800_000_000_000;
    const url = new URL(await signedUrl('/p', { send: true, ttl, url: BASE }, env, now));
    return Number(url.searchParams.get('exp')) - now / 1000;
  };

  it('reads a bare number as seconds, and durations as before', async () => {
    expect(await expiresIn('3600')).toBe(3600);
    expect(await expiresIn('90')).toBe(90);
    expect(await expiresIn('1h')).toBe(3600);
    expect(await expiresIn('90s')).toBe(90);
    expect(await expiresIn('7d')).toBe(7 * 86_400);
  });
});

describe('bearer tokens', () => {
  const tokens = {
    auth: {
      mode: 'token' as const,
      tokens: [
        {
          name: 'team-a',
          token: 'team-a-token-0123456789',
          scopes: ['send' as const, 'recv' as const],
          prefix: '/a',
        },
        { name: 'reader', token: 'reader-token-0123456789', scopes: ['recv' as const] },
      ],
    },
  };
  const bearer = (token: string) => ({ headers: { Authorization: `Bearer ${token}` } });

  it('admits a token within its scopes and namespace', async () => {
    const { request } = setup(tokens);
    const receiving = request('/a/file', bearer('reader-token-0123456789'));
    const sent = await request('/a/file', {
      method: 'PUT',
      body: 'team data',
      ...bearer('team-a-token-0123456789'),
    });
    expect(sent.status).toBe(200);
    expect(await (await receiving).text()).toBe('team data');
  });

  it('answers 401 without a token and 403 for a wrong one, scope or namespace', async () => {
    const { request } = setup(tokens);
    const none = await request('/a/file', { method: 'PUT', body: 'x' });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="edgepipe"');
    const wrong = await request('/a/file', { method: 'PUT', body: 'x', ...bearer('not-a-token-0123456789') });
    expect(wrong.status).toBe(403);
    const scope = await request('/a/file', {
      method: 'PUT',
      body: 'x',
      ...bearer('reader-token-0123456789'),
    });
    expect(scope.status).toBe(403);
    expect(await reason(scope)).toBe('[ERROR] The token of reader may not send.');
    const outside = await request('/b/file', { method: 'HEAD', ...bearer('team-a-token-0123456789') });
    expect(outside.status).toBe(403);
    const beside = await request('/ab', { method: 'HEAD', ...bearer('team-a-token-0123456789') });
    expect(beside.status).toBe(403);
  });
});

describe('token scopes in the config', () => {
  const withScopes = (scopes: unknown) =>
    parseConfig({
      auth: { mode: 'token', tokens: [{ name: 't', token: 'token-token-token-0', scopes }] },
    } as ConfigInput);

  it('accepts send, recv and both of them as before; both is a URL scope, not a token one', () => {
    for (const scopes of [['send'], ['recv'], ['send', 'recv'], ['recv', 'send']]) {
      expect(withScopes(scopes).auth.tokens[0]!.scopes).toEqual(scopes);
    }
    expect(() => withScopes(['both'])).toThrow('auth.tokens.0.scopes.0');
    expect(() => withScopes([])).toThrow('auth.tokens.0.scopes');
  });
});

describe('admin endpoints', () => {
  it('stay open in open mode without an admin token, as before', async () => {
    const { request } = setup();
    expect((await request('/_/metrics')).status).toBe(200);
    expect((await request('/_/selfheal')).status).toBe(200);
  });

  it('need the admin token once one is set; health stays open', async () => {
    const { request } = setup({ auth: { adminToken: ADMIN } });
    for (const path of ['/_/metrics', '/_/selfheal']) {
      expect((await request(path)).status).toBe(401);
      expect((await request(path, { headers: { Authorization: 'Bearer wrong-token-wrong' } })).status).toBe(
        403,
      );
      expect((await request(path, { headers: { Authorization: `Bearer ${ADMIN}` } })).status).toBe(200);
    }
    expect((await request('/_/health')).status).toBe(200);
  });

  it('are closed outside open mode without an admin token, metrics public only when asked', async () => {
    const closed = setup({ auth: { mode: 'signed', secrets: [NEW_SECRET] } });
    const selfheal = await closed.request('/_/selfheal');
    expect(selfheal.status).toBe(403);
    expect(await reason(selfheal)).toContain('no admin token is configured');
    expect((await closed.request('/_/metrics')).status).toBe(403);
    const pub = setup({ auth: { mode: 'signed', secrets: [NEW_SECRET], metricsPublic: true } });
    expect((await pub.request('/_/metrics')).status).toBe(200);
    expect((await pub.request('/_/selfheal')).status).toBe(403);
  });
});

describe('per-client limits', () => {
  it('rate-limits each client with a token bucket and says when to retry', async () => {
    const { request, clock } = setup({ limits: { perClient: { requestsPerSecond: 2, burst: 3 } } });
    for (let i = 0; i < 3; i++) expect((await request('/version')).status).toBe(200);
    const limited = await request('/version');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    expect(await reason(limited)).toContain('at most 2 per second');
    // Another client is not affected, nor are health checks.
    expect((await request('/version', {}, '192.0.2.2')).status).toBe(200);
    expect((await request('/_/health')).status).toBe(200);
    clock.advance(500);
    expect((await request('/version')).status).toBe(200);
    expect((await request('/version')).status).toBe(429);
  });

  it('caps saved-up tokens at the burst: a client idle for a minute gets a burst, not a minute of requests', async () => {
    const burst = 3;
    const { request, clock } = setup({ limits: { perClient: { requestsPerSecond: 2, burst } } });
    expect((await request('/version')).status).toBe(200);
    // A minute at 2 per second would be 120 tokens without the cap.
    clock.advance(60_000);
    for (let i = 0; i < burst; i++) expect((await request('/version')).status).toBe(200);
    expect((await request('/version')).status).toBe(429);
  });

  it('caps the waiting pipe requests of a client and frees the slot when one ends', async () => {
    const { request } = setup({ limits: { perClient: { maxWaiting: 2, maxPipes: 3 } } });
    const aborts = [new AbortController(), new AbortController()];
    const waiting = aborts.map((abort, i) => request(`/wait/${i}`, { signal: abort.signal }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const third = await request('/wait/2');
    expect(third.status).toBe(429);
    expect(await reason(third)).toContain('2 requests waiting for a peer');
    // Another client still waits (no answer yet), it is not refused.
    const other = new AbortController();
    const otherWaiting = request('/wait/2', { signal: other.signal }, '192.0.2.9');
    const early = await Promise.race([
      otherWaiting,
      new Promise((resolve) => setTimeout(() => resolve('waiting'), 50)),
    ]);
    expect(early).toBe('waiting');
    other.abort();
    await otherWaiting.catch(() => {});
    aborts[0]!.abort();
    await waiting[0]!.catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 20));
    // The slot is free again: a sender for the other waiting receiver takes it.
    const sent = await request('/wait/1', { method: 'PUT', body: 'ok' });
    expect(sent.status).toBe(200);
    expect(await (await waiting[1]!).text()).toBe('ok');
    expect(await sent.text()).toContain('Sent successfully!');
    // Both ended: the client may wait twice again.
    const again = [new AbortController(), new AbortController()];
    const more = again.map((abort, i) => request(`/again/${i}`, { signal: abort.signal }));
    const settled = await Promise.race([
      ...more,
      new Promise((resolve) => setTimeout(() => resolve('waiting'), 50)),
    ]);
    expect(settled).toBe('waiting');
    for (const abort of again) abort.abort();
    await Promise.allSettled(more);
  });

  it('counts a request from a trusted proxy against the client it names', async () => {
    const { request } = setup({
      server: { trustProxies: ['10.0.0.0/8'] },
      limits: { perClient: { requestsPerSecond: 1, burst: 1 } },
    });
    const via = (client: string, peer: string) =>
      request('/version', { headers: { 'X-Forwarded-For': client } }, peer);
    expect((await via('198.51.100.1', '10.1.1.1')).status).toBe(200);
    expect((await via('198.51.100.2', '10.1.1.1')).status).toBe(200);
    expect((await via('198.51.100.1', '10.2.2.2')).status).toBe(429);
    // An untrusted peer's claim is ignored: it counts as itself.
    expect((await via('198.51.100.3', '203.0.113.5')).status).toBe(200);
    expect((await via('198.51.100.4', '203.0.113.5')).status).toBe(429);
  });
});

describe('clientAddressOf', () => {
  const proxies = new TrustedProxies(['loopback', '10.0.0.0/8']);
  it.each([
    ['203.0.113.7', '1.1.1.1', '203.0.113.7'],
    ['127.0.0.1', '198.51.100.1', '198.51.100.1'],
    ['::ffff:127.0.0.1', '198.51.100.1', '198.51.100.1'],
    ['127.0.0.1', 'forged, 198.51.100.1, 10.0.0.3', '198.51.100.1'],
    ['127.0.0.1', '198.51.100.9, 198.51.100.1', '198.51.100.1'],
    ['127.0.0.1', 'garbage', '127.0.0.1'],
    ['127.0.0.1', '', '127.0.0.1'],
    ['::1', '2001:db8::1', '2001:db8::1'],
  ])('peer %s with X-Forwarded-For %j is %s', (peer, forwarded, client) => {
    expect(clientAddressOf(peer, forwarded, proxies)).toBe(client);
  });

  it('reads every peer right past the bound on peers it keeps parsed', () => {
    const none = new TrustedProxies([]);
    const peers = Array.from({ length: 5000 }, (_, i) => `::ffff:10.${i >> 8}.${i & 255}.1`);
    for (const [i, peer] of peers.entries())
      expect(clientAddressOf(peer, null, none)).toBe(`10.${i >> 8}.${i & 255}.1`);
    expect(clientAddressOf(peers[0], 'ignored', none)).toBe('10.0.0.1');
    expect(clientAddressOf('not an address', null, none)).toBe('not an address');
  });

  it('refuses a config entry that is no address', () => {
    expect(() => parseConfig({ server: { trustProxies: ['not-an-ip'] } })).toThrow('server.trustProxies.0');
  });
});
