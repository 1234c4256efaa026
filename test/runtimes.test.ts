import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningKeys, signedQuery } from '../src/access/capability-url.js';
import { type LatencyProxy, startLatencyProxy } from './helpers/latency-proxy.js';
import {
  ENTRY_RUNTIMES,
  type EntryRuntime,
  entryCommand,
  repoRoot,
  run,
  type ServerProcess,
  spawnListening,
} from './helpers/processes.js';
import { runProtocolSuite } from './helpers/protocol-suite.js';
import { freePort, startTestRedis, type TestRedis } from './helpers/redis-server.js';
import { selfSignedCert } from './helpers/tls-cert.js';
import { NO_WORKER_VARS, startWorker } from './helpers/worker.js';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/**
 * How each runtime starts (the same commands as `npm start` and `npm run start:<runtime>`, on a free port).
 * Node is one of them: the protocol suite holds every runtime to the same protocol, Node included.
 */
const RUNTIMES = Object.fromEntries(
  ENTRY_RUNTIMES.map((runtime) => {
    const [command, args] = entryCommand(runtime);
    return [runtime, (env: NodeJS.ProcessEnv) => spawnListening(command, args, env)];
  }),
) as Record<EntryRuntime, (env: NodeJS.ProcessEnv) => Promise<ServerProcess>>;

const LOCAL = { HOST: '127.0.0.1', PORT: '0' };
const SECRET = 'runtime-secret-runtime-secret-runtime';

/** A pipe path with a capability query, valid for five minutes. */
async function signedPath(scope: 'send' | 'recv', path: string): Promise<string> {
  const expiresAt = Math.floor(Date.now() / 1000) + 300;
  return `${path}?${await signedQuery(new SigningKeys([SECRET]), { scope, path, prefix: false, expiresAt })}`;
}

/**
 * The answers (status and body) to `count` uploads of `bytes` each, four at a time, to `url`: every one
 * refused by the app before it reads the body.
 */
async function refusedUploads(url: string, count: number, bytes: number): Promise<string[]> {
  const answers: string[] = [];
  const body = new Uint8Array(bytes).fill(1);
  let started = 0;
  const uploader = async () => {
    while (started++ < count) {
      const answer = await fetch(url, { method: 'PUT', body });
      answers.push(`${answer.status} ${await answer.text()}`);
    }
  };
  await Promise.all([uploader(), uploader(), uploader(), uploader()]);
  return answers;
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
    // Bun and Deno serve through their node:http, which gives the raw target and every header line.
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
        // ALPN offers both protocols on the one port. The HTTP/2 upload, with a declared length, is longer than
        // the 1 MiB stream window, so it only arrives if the server keeps granting window (Bun's
        // setLocalWindowSize stopped that at exactly 1 MiB).
        const large = join(mkdtempSync(join(tmpdir(), `edgepipe-${name}-`)), 'large.bin');
        const largeBody = randomBytes(3 * 1024 * 1024);
        writeFileSync(large, largeBody);
        for (const [flag, version] of [
          ['--http2', '2'],
          ['--http1.1', '1.1'],
        ] as const) {
          const path = `/tls/${version}`;
          const [got, put] = await Promise.all([
            curl([flag, '-f', `${secure.url}${await signedPath('recv', path)}`]),
            curl([
              flag,
              '-f',
              '-o',
              '/dev/null',
              '-w',
              '%{http_version}',
              '-T',
              large,
              `${secure.url}${await signedPath('send', path)}`,
            ]),
          ]);
          expect(put.code).toBe(0);
          expect(put.stdout.toString()).toBe(version);
          expect(sha256(got.stdout)).toBe(sha256(largeBody));
        }
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
      RUNTIMES.node(env),
      RUNTIMES.bun(env),
      RUNTIMES.deno(env),
      // One config story: the same file reaches the Worker (`npm run dev:worker` passes its contents).
      // Its request log on: the test of the drain message below reads it.
      startWorker({ REDIS_URL: redis.url, EDGEPIPE_CONFIG: config }, ['--log-requests']),
    ]);
    Object.assign(servers, { node, bun, deno, workers });
  });
  afterAll(async () => {
    for (const server of Object.values(servers)) server.kill();
    await redis?.stop();
  });

  runProtocolSuite('node (redis)', () => servers.node!.url);
  runProtocolSuite('bun (redis)', () => servers.bun!.url);
  runProtocolSuite('deno (redis)', () => servers.deno!.url);
  // See ProtocolSuiteOptions: under wrangler dev an errored chunked body ends like a clean one.
  // workerd resolves dot segments before the Worker runs, and joins repeated headers. It notices a client
  // that left only when a write to it fails (see seesIdleDisconnect).
  runProtocolSuite('workers (redis)', () => servers.workers!.url, {
    abortWithDeclaredLength: true,
    dotSegments: 'resolved',
    joinsRepeatedHeaders: true,
    seesIdleDisconnect: false,
  });

  it('dev:worker: a PUT logs no "Failed to drain the unused request body" (issue 11)', async () => {
    const receiving = fetch(`${servers.workers!.url}/drain-log`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const sent = await fetch(`${servers.workers!.url}/drain-log`, {
      method: 'PUT',
      body: randomBytes(65_536),
    });
    expect(await sent.text()).toContain('Sent successfully!');
    await (await receiving).arrayBuffer();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(servers.workers!.output()).toContain('PUT /drain-log 200 OK');
    expect(servers.workers!.output()).not.toContain('Failed to drain');
  });

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

describe('workers on Durable Objects (no Redis)', () => {
  let worker: ServerProcess;
  beforeAll(async () => {
    worker = await startWorker({});
  });
  afterAll(() => {
    worker?.kill();
  });

  it('serves /_/health as ok: pipes need no Redis here', async () => {
    const health = await fetch(`${worker.url}/_/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok' });
  });
  // The same runtime options as on Redis: the Worker before the object is the same workerd.
  runProtocolSuite('workers (durable objects)', () => worker.url, {
    abortWithDeclaredLength: true,
    dotSegments: 'resolved',
    joinsRepeatedHeaders: true,
    seesIdleDisconnect: false,
    seesLeaveOfOneOfMany: false,
    topics: false,
  });

  it('dev:worker logs no line per request unless asked (--log-requests, above)', async () => {
    const receiving = fetch(`${worker.url}/do/unlogged`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const sent = await fetch(`${worker.url}/do/unlogged`, { method: 'PUT', body: 'x' });
    expect(await sent.text()).toContain('Sent successfully!');
    expect(await (await receiving).text()).toBe('x');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(worker.output()).toContain('Ready on http://127.0.0.1:');
    expect(worker.output()).not.toContain('/do/unlogged');
  });

  it('dev:worker does not reload when wrangler.toml is touched: a pipe in flight goes on', async () => {
    const url = `${worker.url}/do/touched`;
    const receiving = fetch(url).then(async (response) => new Uint8Array(await response.arrayBuffer()));
    await new Promise((resolve) => setTimeout(resolve, 100));
    let pieces = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        if (pieces === 5) {
          // wrangler watched the file even with watch: false, and reloaded the Worker on a new mtime.
          const now = new Date();
          utimesSync(join(repoRoot, 'wrangler.toml'), now, now);
        }
        if (pieces++ === 20) controller.close();
        else controller.enqueue(new Uint8Array(1000).fill(pieces));
      },
    });
    const sent = await fetch(url, { method: 'PUT', body, duplex: 'half' } as RequestInit);
    expect(await sent.text()).toContain('All receiver(s) was/were received successfully.');
    expect((await receiving).byteLength).toBe(20_000);
    expect(worker.output()).not.toContain('Reloading');
  });

  it("a refused upload gets the app's 409, not a reset connection (nor wrangler's 503)", async () => {
    // workerd resets the connection when a response leaves the body unread: the client saw ECONNRESET
    // (behind wrangler dev's proxy, the proxy's own 503 "restarted mid-request") instead of the 409.
    const url = `${worker.url}/do/busy`;
    const holding = new AbortController();
    const held = new ReadableStream<Uint8Array>({
      start: (controller) => controller.enqueue(new Uint8Array(10)),
    });
    const holder = fetch(url, {
      method: 'PUT',
      body: held,
      duplex: 'half',
      signal: holding.signal,
    } as RequestInit);
    holder.catch(() => {});
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const answers = await refusedUploads(url, 60, 256 * 1024);
      expect(answers).toHaveLength(60);
      const conflict = "409 [ERROR] Another sender has been connected on '/do/busy'.\n";
      expect(answers.filter((answer) => answer !== conflict)).toEqual([]);
    } finally {
      holding.abort();
    }
  });

  it('signed URLs: the object checks them (Web Crypto on workerd) and moves the bytes', async () => {
    const signedWorker = await startWorker({
      EDGEPIPE_CONFIG: JSON.stringify({ auth: { mode: 'signed' } }),
      EDGEPIPE_SECRETS: SECRET,
    });
    try {
      expect((await fetch(`${signedWorker.url}/do/signed`)).status).toBe(401);
      const recv = await signedPath('recv', '/do/signed');
      expect((await fetch(`${signedWorker.url}${recv.replace('/do/signed', '/do/other')}`)).status).toBe(403);
      const body = randomBytes(3 * 1024 * 1024);
      const receiving = fetch(`${signedWorker.url}${recv}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const sent = await fetch(`${signedWorker.url}${await signedPath('send', '/do/signed')}`, {
        method: 'PUT',
        body,
      });
      const received = new Uint8Array(await (await receiving).arrayBuffer());
      expect(await sent.text()).toContain('All receiver(s) was/were received successfully.');
      expect(sha256(received)).toBe(sha256(body));
    } finally {
      signedWorker.kill();
    }
  });
});

describe('workers on Durable Objects, paths hashed over shards (broker.objectShards)', () => {
  // One shard: every path meets in the same object, so its limits count the pipes of all paths.
  const MAX_PIPES = 8;
  let worker: ServerProcess;
  beforeAll(async () => {
    worker = await startWorker({
      EDGEPIPE_CONFIG: JSON.stringify({ broker: { objectShards: 1 }, limits: { maxPipes: MAX_PIPES } }),
    });
  });
  afterAll(() => {
    worker?.kill();
  });

  it('pipes of different paths share the object: its pipe limit counts them all', async () => {
    const url = (i: number) => `${worker.url}/shard/held-${i}`;
    const waiting = Array.from({ length: MAX_PIPES }, (_, i) =>
      fetch(url(i)).then((answer) => answer.text()),
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    const refused = await fetch(`${worker.url}/shard/one-more`);
    expect(`${refused.status} ${await refused.text()}`).toBe(
      '429 [ERROR] Too many pipes on this server; try again later.\n',
    );
    // Their senders end them (workerd does not tell the object of a waiting receiver that leaves).
    await Promise.all(
      Array.from({ length: MAX_PIPES }, (_, i) => fetch(url(i), { method: 'PUT', body: `${i}` })),
    );
    expect(await Promise.all(waiting)).toEqual(Array.from({ length: MAX_PIPES }, (_, i) => `${i}`));
  });

  it('pipes of many paths in one object, both orders at once, each byte-exact', async () => {
    const bodies = Array.from({ length: MAX_PIPES }, () => randomBytes(256 * 1024));
    const url = (i: number) => `${worker.url}/shard/many-${i}`;
    const receiverFirst = (i: number) => i % 2 === 0;
    const received: Promise<Uint8Array>[] = [];
    const sent: Promise<string>[] = [];
    const receive = (i: number) => {
      received[i] = fetch(url(i)).then(async (answer) => new Uint8Array(await answer.arrayBuffer()));
    };
    const send = (i: number) => {
      sent[i] = fetch(url(i), { method: 'PUT', body: bodies[i] }).then((answer) => answer.text());
    };
    for (let i = 0; i < MAX_PIPES; i++) (receiverFirst(i) ? receive : send)(i);
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (let i = 0; i < MAX_PIPES; i++) (receiverFirst(i) ? send : receive)(i);
    for (let i = 0; i < MAX_PIPES; i++) {
      expect(sha256(await received[i]!), `path ${i}`).toBe(sha256(bodies[i]!));
      expect(await sent[i]).toContain(receiverFirst(i) ? 'All receiver(s)' : 'Sent successfully');
    }
  });
});

/** Pipes on Redis (`broker.workers`), here without one: every pipe is refused with the reason. */
const REDIS_BROKER = { broker: { workers: 'redis' } };

describe('workers without Redis', () => {
  let worker: ServerProcess;
  beforeAll(async () => {
    worker = await startWorker({ EDGEPIPE_CONFIG: JSON.stringify(REDIS_BROKER) });
  });
  afterAll(() => {
    worker?.kill();
  });

  it('checks signed URLs before anything else (Web Crypto on workerd)', async () => {
    const signedWorker = await startWorker({
      EDGEPIPE_CONFIG: JSON.stringify({ ...REDIS_BROKER, auth: { mode: 'signed' } }),
      EDGEPIPE_SECRETS: SECRET,
      EDGEPIPE_ADMIN_TOKEN: 'worker-admin-token',
    });
    try {
      // dev:worker forwarded the admin token too.
      expect((await fetch(`${signedWorker.url}/_/metrics`)).status).toBe(401);
      const metrics = await fetch(`${signedWorker.url}/_/metrics`, {
        headers: { Authorization: 'Bearer worker-admin-token' },
      });
      expect(metrics.status).toBe(200);
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
    expect(await (await fetch(`${worker.url}/help`)).text()).toContain('curl -T myfile');
  });

  it("a refused upload gets the Worker's own 503, not a reset connection (nor wrangler's 503)", async () => {
    const answers = await refusedUploads(`${worker.url}/some/pipe`, 60, 256 * 1024);
    expect(answers).toHaveLength(60);
    expect(
      answers.filter(
        (answer) => !answer.startsWith('503 [ERROR] edgepipe on Cloudflare Workers needs a Redis'),
      ),
    ).toEqual([]);
  });

  it('says so on /_/health: 503 with the reason, not "ok" while every pipe is refused', async () => {
    const health = await fetch(`${worker.url}/_/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({
      status: 'unavailable',
      reason: expect.stringContaining('needs a Redis: set the REDIS_URL secret'),
      broker: { pipes: 0, waiting: 0 },
    });
  });

  it('a path in EDGEPIPE_CONFIG (no file system on Workers) is refused with the reason', async () => {
    // Set as wrangler sets a `.dev.vars` line, without dev:worker (which would read the file).
    const port = await freePort();
    const wrangler = join(repoRoot, 'node_modules', '.bin', 'wrangler');
    const args = [
      'dev',
      '--port',
      String(port),
      '--ip',
      '127.0.0.1',
      '--var',
      'EDGEPIPE_CONFIG:./edgepipe.json',
    ];
    const pathWorker = await spawnListening(wrangler, args, { WRANGLER_SEND_METRICS: 'false', CI: '1' });
    try {
      const res = await fetch(`${pathWorker.url}/some/pipe`);
      expect(res.status).toBe(500);
      expect(await res.text()).toBe(
        "[ERROR] EDGEPIPE_CONFIG must hold the JSON config itself on Workers (there are no files to read), got './edgepipe.json' (npm run dev:worker passes the contents of a local file)\n",
      );
    } finally {
      pathWorker.kill();
    }
  });

  it('dev:worker refuses a bad config before wrangler starts: one line, exit 2', async () => {
    const result = await run(process.execPath, [join(repoRoot, 'dist/cli/dev-worker.js')], {
      env: { ...NO_WORKER_VARS, EDGEPIPE_CONFIG: '{"limits":{"maxReceivers":0}}' },
      timeoutMs: 20_000,
    });
    expect(result.stderr.trim()).toBe(
      'edgepipe: invalid configuration: limits.maxReceivers: Too small: expected number to be >=1',
    );
    expect(result.code).toBe(2);
  });
});

describe('workers self-heal on Redis (the watch object, armed by the cron)', () => {
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

  /** The backend the self-heal windows stored in the standby, where requests read it. */
  async function storedBackend(): Promise<string | undefined> {
    const stored = await standbyClient.get('ep:selfheal:state');
    return stored ? (JSON.parse(stored) as { backend: string }).backend : undefined;
  }

  /** Waits until the stored backend is `backend`; the milliseconds it took. */
  async function backendBecomes(backend: string, ms: number): Promise<number> {
    const started = Date.now();
    while ((await storedBackend()) !== backend) {
      if (Date.now() - started > ms) throw new Error(`the backend did not become ${backend} within ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return Date.now() - started;
  }

  it("reroutes new pipes to the standby within seconds (the watch object's alarm), and back", async () => {
    // The cron (wrangler dev's test endpoint) only arms the watch object's alarm, which runs the windows.
    await (await fetch(`${worker.url}/cdn-cgi/handler/scheduled?cron=*+*+*+*+*`)).text();
    await backendBecomes('primary', 10_000);
    proxy.setDelay(100);
    // Two breaching windows of 0.5 s, each taking a window to probe.
    expect(await backendBecomes('standby', 10_000)).toBeLessThan(10_000);
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
    await backendBecomes('primary', 15_000);
    const audit = (await standbyClient.lrange('ep:audit', 0, -1)).map(
      (line: string) => JSON.parse(line) as { kind: string; instance: string },
    );
    expect(audit.map((entry) => entry.kind)).toEqual(
      expect.arrayContaining(['breach', 'fired', 'backend', 'recovered']),
    );
    expect(audit.find((entry) => entry.kind === 'fired')?.instance).toBe('workers-watch-object');
  }, 60_000);
});
