import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLatencyProxyThread, type ThreadedLatencyProxy } from './helpers/latency-proxy-thread.js';
import { type ServerProcess, spawnServer } from './helpers/processes.js';
import { startTestRedis, type TestRedis } from './helpers/redis-server.js';

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const work = mkdtempSync(join(tmpdir(), 'edgepipe-selfheal-'));
const SECRET = 'hook-secret';

let primary: TestRedis;
let standby: TestRedis;
let proxy: ThreadedLatencyProxy;
let webhook: Server;
const hookCalls: Array<{ body: string; signature: string | undefined }> = [];
const commandOutput = join(work, 'rollback-event.json');
let a: ServerProcess;
let b: ServerProcess;
/** The running traffic, stopped before the servers go (a transfer cut by the teardown is no failure). */
let traffic: ReturnType<typeof trafficLoop> | undefined;

beforeAll(async () => {
  [primary, standby] = await Promise.all([startTestRedis(), startTestRedis()]);
  // In a thread of its own: in the test's thread, the traffic it generates would delay the proxied bytes.
  proxy = await startLatencyProxyThread(primary.port);
  webhook = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => {
      body += chunk;
    });
    request.on('end', () => {
      hookCalls.push({ body, signature: request.headers['x-edgepipe-signature'] as string | undefined });
      response.end('ok');
    });
  });
  await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
  const hookUrl = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/rollback`;
  const config = join(work, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      broker: { redis: proxy.url, standby: standby.url },
      // The test is one client polling both instances every 50 ms beside its transfers.
      limits: { perClient: { requestsPerSecond: 0 } },
      selfheal: {
        intervalMs: 250,
        probeTimeoutMs: 500,
        rules: [
          {
            name: 'redis-slow',
            metric: 'redis',
            aboveMs: 50,
            forWindows: 3,
            minSamples: 1,
            action: 'reroute',
            recoverBelowMs: 20,
            recoverForWindows: 4,
            cooldownMs: 1000,
          },
          {
            name: 'redis-rollback',
            metric: 'redis',
            aboveMs: 50,
            forWindows: 3,
            minSamples: 1,
            action: 'rollback',
            cooldownMs: 600_000,
            hook: {
              url: hookUrl,
              secret: SECRET,
              command: ['sh', '-c', 'printf "%s" "$EDGEPIPE_EVENT" > "$0"', commandOutput],
              timeoutMs: 3000,
            },
          },
        ],
      },
    }),
  );
  [a, b] = await Promise.all([spawnServer(['--config', config]), spawnServer(['--config', config])]);
});
afterAll(async () => {
  await traffic?.stop();
  for (const server of [a, b]) server?.kill();
  await proxy?.close();
  await new Promise((resolve) => webhook?.close(resolve));
  await Promise.all([primary?.stop(), standby?.stop()]);
});

async function backendOf(server: ServerProcess): Promise<string> {
  const status = (await (await fetch(`${server.url}/_/selfheal`)).json()) as { backend: string };
  return status.backend;
}

async function auditOf(server: ServerProcess) {
  return (await (await fetch(`${server.url}/_/selfheal`)).json()) as {
    events: Array<{ instance: string; kind: string; rule: string }>;
    rules: Array<{ name: string }>;
  };
}

async function until(what: string, condition: () => Promise<boolean>, ms: number): Promise<number> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > ms) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await delay(50);
  }
  return Date.now() - started;
}

/**
 * Transfers from one instance to the other, one after another, until stopped. Every transfer either arrives
 * byte-exact or fails loudly (an error status or a cut body); a 200 with other bytes is a silent truncation.
 */
function trafficLoop() {
  let running = true;
  const tally = { ok: 0, failedLoudly: 0, silentlyWrong: 0 };
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const [from, to] = i % 2 === 0 ? [a, b] : [b, a];
      const data = randomBytes(64 * 1024);
      const path = `/traffic/${i}`;
      try {
        const receiving = fetch(`${to.url}${path}`, { signal: AbortSignal.timeout(10_000) });
        const sent = await fetch(`${from.url}${path}`, {
          method: 'PUT',
          body: data,
          signal: AbortSignal.timeout(10_000),
        });
        const received = await receiving;
        const bytes = new Uint8Array(await received.arrayBuffer());
        await sent.text();
        if (received.status !== 200) tally.failedLoudly += 1;
        else if (sha256(bytes) === sha256(data)) tally.ok += 1;
        else tally.silentlyWrong += 1;
      } catch {
        tally.failedLoudly += 1;
      }
    }
  })();
  return {
    tally,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

describe('self-healing with real processes: two instances, a primary behind a latency proxy, a standby', () => {
  it('reroutes both instances on injected latency, comes back after the hysteresis, and fires the hooks', async () => {
    const load = trafficLoop();
    traffic = load;
    await delay(1000);
    expect(await backendOf(a)).toBe('primary');
    expect(load.tally.ok).toBeGreaterThan(0);

    await proxy.setDelay(100);
    const rerouteMs = await until(
      'both instances reroute',
      async () => (await backendOf(a)) === 'standby' && (await backendOf(b)) === 'standby',
      15_000,
    );
    // Read now: on a busy machine the rollback rule's later breaches (held back by its cooldown) can push these
    // entries out of the 50 that `/_/selfheal` shows.
    const rerouted = await auditOf(a);

    // New transfers across the two instances go through the standby.
    const okBefore = load.tally.ok;
    await until('transfers go on through the standby', async () => load.tally.ok >= okBefore + 5, 15_000);
    const standbyClient = new Redis(standby.url);
    const waiting = fetch(`${a.url}/on/standby`);
    await until(
      'the pipe waits on the standby',
      async () => (await standbyClient.exists('ep:{/on/standby}:m')) === 1,
      5000,
    );
    await fetch(`${b.url}/on/standby`, { method: 'PUT', body: 'via standby' });
    expect(await (await waiting).text()).toBe('via standby');

    await proxy.setDelay(0);
    const returnMs = await until(
      'both instances return to the primary',
      async () => (await backendOf(a)) === 'primary' && (await backendOf(b)) === 'primary',
      30_000,
    );
    await load.stop();
    console.log(
      `self-heal: reroute after ${rerouteMs} ms, return after ${returnMs} ms; ` +
        `transfers ok ${load.tally.ok}, failed loudly ${load.tally.failedLoudly}`,
    );
    expect(load.tally.silentlyWrong).toBe(0);
    // Nothing is lost by a switch: a transfer stays on the backend it started on, and the parties of one path
    // meet whichever instance switched first (issue 11, item 10: this was never checked).
    expect(load.tally.failedLoudly).toBe(0);
    expect(load.tally.ok).toBeGreaterThan(10);

    // The rollback hook: a signed webhook from each instance, and the command's file.
    await until('both instances called the webhook', async () => hookCalls.length >= 2, 5000);
    for (const call of hookCalls) {
      expect(call.signature).toBe(`sha256=${createHmac('sha256', SECRET).update(call.body).digest('hex')}`);
      expect(JSON.parse(call.body)).toMatchObject({
        rule: 'redis-rollback',
        metric: 'redis',
        action: 'rollback',
        thresholdMs: 50,
        windows: 3,
      });
      expect(JSON.parse(call.body).valueMs).toBeGreaterThan(50);
    }
    expect(JSON.parse(readFileSync(commandOutput, 'utf8'))).toMatchObject({ rule: 'redis-rollback' });

    // The audit trail is shared through Redis: one instance shows the other's decisions too.
    const status = await auditOf(a);
    const kinds = new Set([...rerouted.events, ...status.events].map((event) => event.kind));
    for (const kind of ['breach', 'fired', 'backend', 'recovered', 'hook']) expect(kinds).toContain(kind);
    const firedBy = rerouted.events.filter((event) => event.kind === 'fired').map((event) => event.instance);
    expect(new Set(firedBy).size).toBe(2);
    expect(status.rules.map((rule) => rule.name)).toEqual(['redis-slow', 'redis-rollback']);

    const metrics = await (await fetch(`${b.url}/_/metrics`)).text();
    expect(metrics).toContain('edgepipe_backend_active{backend="primary"} 1\n');
    expect(metrics).toMatch(/edgepipe_selfheal_total\{kind="fired"\} [2-9]/);
    standbyClient.disconnect();
  }, 90_000);
});
