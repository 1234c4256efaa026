// Time from an injected Redis fault to the reroute, and from its removal to the return, with the documented
// defaults (1 s windows, 3 breaching windows to reroute, 5 healthy ones to return), while transfers run
// between two instances throughout. Rounds: BENCH_ROUNDS (default 3), each with fresh instances.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startLatencyProxyThread } from '../test/helpers/latency-proxy-thread.js';
import { type ServerProcess, spawnServer } from '../test/helpers/processes.js';
import { startTestRedis } from '../test/helpers/redis-server.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const FAULT_MS = Number(process.env.BENCH_FAULT_MS ?? 100);
/**
 * How often each instance's `/_/metrics` is read while a switch is awaited: a poll every 50 ms is 20
 * requests a second per instance (less the request's own time), which the default per-client rate refills.
 */
const POLL_MS = 50;
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether every instance sends new pipes to `backend` (from `/_/metrics`: cheap, no Redis involved). */
async function bothOn(servers: ServerProcess[], backend: string): Promise<boolean> {
  const states = await Promise.all(
    servers.map(async (s) =>
      (await (await fetch(`${s.url}/_/metrics`)).text()).includes(
        `edgepipe_backend_active{backend="${backend}"} 1`,
      ),
    ),
  );
  return states.every(Boolean);
}

/** When the later of the two instances decided to switch to `backend`, in ms after `since` (audit trail). */
async function decidedAfter(server: ServerProcess, backend: string, since: number): Promise<number> {
  const status = (await (await fetch(`${server.url}/_/selfheal`)).json()) as {
    events: Array<{ time: string; kind: string; detail: string }>;
  };
  const times = status.events
    .filter(
      (e) => e.kind === 'backend' && e.detail.includes(`the ${backend} Redis`) && Date.parse(e.time) >= since,
    )
    .map((e) => Date.parse(e.time) - since);
  return times.length >= 2 ? Math.max(...times.slice(0, 2)) : Number.NaN;
}

async function timeUntil(condition: () => Promise<boolean>, limitMs: number): Promise<number> {
  const started = performance.now();
  while (!(await condition())) {
    if (performance.now() - started > limitMs) return Number.NaN;
    await delay(POLL_MS);
  }
  return performance.now() - started;
}

/** Transfers back and forth between the instances; counts the ones that did not arrive intact. */
function traffic(servers: ServerProcess[]) {
  let running = true;
  const tally = { ok: 0, failed: 0 };
  const done = (async () => {
    for (let i = 0; running; i++) {
      const [from, to] = i % 2 ? [servers[0]!, servers[1]!] : [servers[1]!, servers[0]!];
      const data = randomBytes(64 * 1024);
      const path = `/bench/${i}`;
      try {
        const receiving = fetch(`${to.url}${path}`, { signal: AbortSignal.timeout(10_000) });
        const sent = await fetch(`${from.url}${path}`, {
          method: 'PUT',
          body: data,
          signal: AbortSignal.timeout(10_000),
        });
        const got = Buffer.from(await (await receiving).arrayBuffer());
        await sent.text();
        if (got.equals(data)) tally.ok += 1;
        else tally.failed += 1;
      } catch {
        tally.failed += 1;
      }
    }
  })();
  const stop = async () => {
    running = false;
    await done;
  };
  return { tally, stop };
}

it('self-heal timing', async () => {
  const [primary, standby] = await Promise.all([startTestRedis(), startTestRedis()]);
  // In a thread of its own, so that the bench's own work (transfers, polling) does not delay the proxied bytes.
  const proxy = await startLatencyProxyThread(primary.port);
  const config = join(mkdtempSync(join(tmpdir(), 'edgepipe-bench-')), 'config.json');
  // Only what must be said: the rest are the documented defaults, per-client limits included (the
  // transfers cost nothing; the polling stays under the 20/s each instance refills).
  writeFileSync(
    config,
    JSON.stringify({
      broker: { redis: proxy.url, standby: standby.url },
      selfheal: { rules: [{ name: 'redis-slow', metric: 'redis', aboveMs: 50, action: 'reroute' }] },
    }),
  );
  const rows: Array<{
    reroute: number;
    back: number;
    decided: number;
    decidedBack: number;
    ok: number;
    failed: number;
  }> = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const servers = await Promise.all([
        spawnServer(['--config', config]),
        spawnServer(['--config', config]),
      ]);
      try {
        const load = traffic(servers);
        // A fault strikes at any point of a window: a random phase, not one fixed by the start-up time.
        await delay(3000 + Math.random() * 1000);
        const injected = Date.now();
        await proxy.setDelay(FAULT_MS);
        const reroute = await timeUntil(() => bothOn(servers, 'standby'), 30_000);
        await delay(2000);
        const removed = Date.now();
        await proxy.setDelay(0);
        const back = await timeUntil(() => bothOn(servers, 'primary'), 60_000);
        await load.stop();
        const decided = await decidedAfter(servers[0]!, 'standby', injected);
        const decidedBack = await decidedAfter(servers[0]!, 'primary', removed);
        rows.push({ reroute, back, decided, decidedBack, ...load.tally });
        process.stderr.write(
          `round ${round + 1}/${ROUNDS}: reroute ${reroute.toFixed(0)} ms (decided ${decided} ms), ` +
            `back ${back.toFixed(0)} ms (decided ${decidedBack} ms), ` +
            `transfers ${load.tally.ok} ok / ${load.tally.failed} failed\n`,
        );
      } finally {
        for (const server of servers) server.kill();
      }
    }
  } finally {
    await proxy.close();
    await Promise.all([primary.stop(), standby.stop()]);
  }
  const median = (values: number[]) => [...values].sort((x, y) => x - y)[values.length >> 1]!;
  console.log(
    `\nSelf-heal with the documented defaults, ${FAULT_MS} ms injected in front of the primary (${ROUNDS} rounds)\n`,
  );
  console.log(
    '| round | fault → both decided ms | fault → both seen rerouted ms | removed → both decided ms | removed → both seen back ms | transfers ok | transfers failed |',
  );
  console.log('|---|---|---|---|---|---|---|');
  rows.forEach((r, i) => {
    console.log(
      `| ${i + 1} | ${r.decided} | ${r.reroute.toFixed(0)} | ${r.decidedBack} | ${r.back.toFixed(0)} | ${r.ok} | ${r.failed} |`,
    );
  });
  const m = (key: 'decided' | 'reroute' | 'decidedBack' | 'back') =>
    median(rows.map((r) => r[key])).toFixed(0);
  console.log(`| median | ${m('decided')} | ${m('reroute')} | ${m('decidedBack')} | ${m('back')} | | |`);
  expect(rows).toHaveLength(ROUNDS);
});
