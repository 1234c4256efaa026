import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningKeys, signedQuery } from '../src/access/capability-url.js';
import { type LatencyProxy, startLatencyProxy } from './helpers/latency-proxy.js';
import { repoRoot, run, type ServerProcess, spawnListening, spawnServer } from './helpers/processes.js';
import { runProtocolSuite } from './helpers/protocol-suite.js';
import { freePort, startTestRedis, type TestRedis } from './helpers/redis-server.js';
import { selfSignedCert } from './helpers/tls-cert.js';

const bin = (name: string) => join(repoRoot, 'node_modules', '.bin', name);
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** How each runtime starts (the same commands as `npm run start:<runtime>`, on a free port). */
const RUNTIMES = {
  bun: (env: NodeJS.ProcessEnv) => spawnListening(bin('bun'), ['dist/adapter/bun/index.js'], env),
  deno: (env: NodeJS.ProcessEnv) =>
    spawnListening(bin('deno'), ['run', '-A', 'dist/adapter/deno/index.js'], env),
} as const;

const LOCAL = { HOST: '127.0.0.1', PORT: '0' };
const SECRET = 'runtime-secret-runtime-secret-runtime';

/** A pipe path with a capability query, valid for five minutes. */
async function signedPath(scope: 'send' | 'recv', path: string): Promise<string> {
  const expiresAt = Math.floor(Date.now() / 1000) + 300;
  return `${path}?${await signedQuery(new SigningKeys([SECRET]), { scope, path, prefix: false, expiresAt })}`;
}

/** `wrangler dev` (workerd, offline) on a free port; `vars` become the Worker's bindings. */
async function startWorker(vars: Record<string, string>, extra: string[] = []): Promise<ServerProcess> {
  const port = await freePort();
  const args = ['dev', '--port', String(port), '--ip', '127.0.0.1', ...extra];
  for (const [name, value] of Object.entries(vars)) args.push('--var', `${name}:${value}`);
  return spawnListening(bin('wrangler'), args, { WRANGLER_SEND_METRICS: 'false', CI: '1' });
}

for (const [name, start] of Object.entries(RUNTIMES)) {
  describe(name, () => {
    let server: ServerProcess;
    beforeAll(async () => {
      server = await start(LOCAL);
    });
    afterAll(() => {
      server?.kill();
    });
    it('announces itself', () => {
      expect(server.output()).toMatch(new RegExp(`\\(in-memory broker, ${name} \\d`));
    });
    runProtocolSuite(`${name} (memory)`, () => server.url);

    it('serves HTTPS from server.tls and verifies signed URLs with Web Crypto', async () => {
      const { cert, key } = await selfSignedCert();
      const config = join(mkdtempSync(join(tmpdir(), `edgepipe-${name}-`)), 'config.json');
      writeFileSync(config, JSON.stringify({ server: { tls: { cert, key } }, auth: { mode: 'signed' } }));
      const secure = await start({ ...LOCAL, EDGEPIPE_CONFIG: config, EDGEPIPE_SECRETS: SECRET });
      try {
        expect(secure.url.startsWith('https://')).toBe(true);
        const send = await signedPath('send', '/tls/signed');
        const recv = await signedPath('recv', '/tls/signed');
        const curl = (args: string[], input?: Uint8Array) =>
          run('curl', ['-sS', '--cacert', cert, ...args], input ? { input } : {});
        const body = randomBytes(1024 * 1024);
        const [received, sent] = await Promise.all([
          curl(['-f', `${secure.url}${recv}`]),
          curl(['-f', '-T', '-', `${secure.url}${send}`], body),
        ]);
        expect(sent.code).toBe(0);
        expect(sha256(received.stdout)).toBe(sha256(body));
        const swapped = await curl(['-o', '/dev/null', '-w', '%{http_code}', `${secure.url}${send}`]);
        expect(swapped.stdout.toString()).toBe('403');
      } finally {
        secure.kill();
      }
    });
  });
}

describe('runtimes sharing one Redis', () => {
  let redis: TestRedis;
  const servers: Record<string, ServerProcess> = {};
  beforeAll(async () => {
    redis = await startTestRedis();
    // A sender that drops is held for a resume this long before its receivers fail (30 s by default).
    const config = join(mkdtempSync(join(tmpdir(), 'edgepipe-runtimes-')), 'config.json');
    writeFileSync(config, JSON.stringify({ broker: { resumeGraceMs: 300 } }));
    const env = { ...LOCAL, REDIS_URL: redis.url, EDGEPIPE_CONFIG: config };
    const [node, bun, deno, workers] = await Promise.all([
      spawnServer([], { REDIS_URL: redis.url, EDGEPIPE_CONFIG: config }),
      RUNTIMES.bun(env),
      RUNTIMES.deno(env),
      startWorker({
        REDIS_URL: redis.url,
        EDGEPIPE_CONFIG: JSON.stringify({ broker: { resumeGraceMs: 300 } }),
      }),
    ]);
    Object.assign(servers, { node, bun, deno, workers });
  });
  afterAll(async () => {
    for (const server of Object.values(servers)) server.kill();
    await redis?.stop();
  });

  runProtocolSuite('bun (redis)', () => servers.bun!.url);
  runProtocolSuite('deno (redis)', () => servers.deno!.url);
  // See ProtocolSuiteOptions: under wrangler dev an errored chunked body ends like a clean one.
  runProtocolSuite('workers (redis)', () => servers.workers!.url, { abortWithDeclaredLength: true });

  for (const [from, to] of [
    ['bun', 'node'],
    ['node', 'deno'],
    ['deno', 'bun'],
    ['workers', 'node'],
    ['node', 'workers'],
  ] as const) {
    it(`sender through ${from}, receiver through ${to}`, async () => {
      const data = randomBytes(8 * 1024 * 1024);
      const path = `/cross/${from}-${to}`;
      const receiving = fetch(`${servers[to]!.url}${path}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const sent = await fetch(`${servers[from]!.url}${path}`, { method: 'PUT', body: data });
      const received = await receiving;
      const bytes = new Uint8Array(await received.arrayBuffer());
      const transcript = await sent.text();
      expect(`${received.status} ${bytes.byteLength}`, transcript).toBe(`200 ${data.byteLength}`);
      expect(sha256(bytes)).toBe(sha256(data));
      expect(transcript).toContain('All receiver(s) was/were received successfully.');
    });
  }
});

describe('workers without Redis', () => {
  let worker: ServerProcess;
  beforeAll(async () => {
    worker = await startWorker({});
  });
  afterAll(() => {
    worker?.kill();
  });

  it('checks signed URLs before anything else (Web Crypto on workerd)', async () => {
    const signedWorker = await startWorker({
      EDGEPIPE_CONFIG: JSON.stringify({ auth: { mode: 'signed' } }),
      EDGEPIPE_SECRETS: SECRET,
    });
    try {
      expect((await fetch(`${signedWorker.url}/w/pipe`)).status).toBe(401);
      const recv = await signedPath('recv', '/w/pipe');
      expect((await fetch(`${signedWorker.url}${recv.replace('/w/pipe', '/w/other')}`)).status).toBe(403);
      // A valid URL passes the check and reaches the broker, which here has no Redis.
      expect((await fetch(`${signedWorker.url}${recv}`)).status).toBe(503);
    } finally {
      signedWorker.kill();
    }
  });

  it('refuses pipes with the reason, and still serves its pages', async () => {
    const res = await fetch(`${worker.url}/some/pipe`);
    expect(res.status).toBe(503);
    expect(await res.text()).toBe(
      '[ERROR] edgepipe on Cloudflare Workers needs a Redis: set the REDIS_URL secret (the in-memory broker ' +
        "cannot pass bytes between requests there, as one request may not touch another's stream).\n",
    );
    expect((await fetch(`${worker.url}/_/health`)).status).toBe(200);
    expect(await (await fetch(`${worker.url}/help`)).text()).toContain('curl -T myfile');
  });
});

describe('workers self-heal on the cron trigger', () => {
  let primary: TestRedis;
  let standby: TestRedis;
  let proxy: LatencyProxy;
  let worker: ServerProcess;
  let standbyClient: Redis;
  beforeAll(async () => {
    [primary, standby] = await Promise.all([startTestRedis(), startTestRedis()]);
    proxy = await startLatencyProxy(primary.port);
    standbyClient = new Redis(standby.url);
    const config = {
      broker: { standby: standby.url },
      selfheal: {
        intervalMs: 500,
        probeTimeoutMs: 500,
        rules: [
          {
            name: 'redis-slow',
            metric: 'redis',
            aboveMs: 50,
            forWindows: 2,
            minSamples: 5,
            action: 'reroute',
            recoverForWindows: 2,
            cooldownMs: 0,
          },
        ],
      },
    };
    worker = await startWorker({ REDIS_URL: proxy.url, EDGEPIPE_CONFIG: JSON.stringify(config) }, [
      '--test-scheduled',
    ]);
  });
  afterAll(async () => {
    worker?.kill();
    standbyClient?.disconnect();
    await proxy?.close();
    await Promise.all([primary?.stop(), standby?.stop()]);
  });

  /** Runs the cron once (wrangler dev's test endpoint) and returns the stored backend. */
  async function cron(): Promise<string | undefined> {
    await (await fetch(`${worker.url}/__scheduled?cron=*+*+*+*+*`)).text();
    const stored = await standbyClient.get('ep:selfheal:state');
    return stored ? (JSON.parse(stored) as { backend: string }).backend : undefined;
  }

  it('reroutes new pipes to the standby after breaching runs, and back after healthy ones', async () => {
    expect(await cron()).toBe('primary');
    proxy.setDelay(100);
    expect(await cron()).toBe('primary');
    expect(await cron()).toBe('standby');
    // Requests read the choice (cached per isolate for 5 s): a new pipe waits on the standby.
    await new Promise((resolve) => setTimeout(resolve, 5200));
    const waiting = fetch(`${worker.url}/wk/on-standby`);
    const deadline = Date.now() + 10_000;
    while ((await standbyClient.exists('ep:{/wk/on-standby}:m')) === 0) {
      if (Date.now() > deadline) throw new Error('the pipe did not appear on the standby');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await fetch(`${worker.url}/wk/on-standby`, { method: 'PUT', body: 'rerouted' });
    expect(await (await waiting).text()).toBe('rerouted');

    proxy.setDelay(0);
    expect(await cron()).toBe('standby');
    expect(await cron()).toBe('primary');
    const audit = (await standbyClient.lrange('ep:audit', 0, -1)).map(
      (line: string) => (JSON.parse(line) as { kind: string }).kind,
    );
    expect(audit).toEqual(expect.arrayContaining(['breach', 'fired', 'backend', 'recovered']));
  }, 60_000);
});
