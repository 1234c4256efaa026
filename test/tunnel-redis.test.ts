// Tunnels on the Redis backend and with Redis as the tunnelled service: redis-benchmark with 50 parallel
// connections through a tunnel, redis-cli through a Unix-socket listen side, and open connections that
// survive the SIGKILL of the broker instance they were on (they resume on the other one).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as dial } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { run, type ServerProcess, spawnServer } from './helpers/processes.js';
import { freePort, startTestRedis, type TestRedis } from './helpers/redis-server.js';
import { type SwitchProxy, startSwitchProxy } from './helpers/switch-proxy.js';
import { spawnTunnel, type TunnelProcess } from './helpers/tunnel-processes.js';
import { startEchoService, type TestService } from './helpers/tunnel-services.js';

const MiB = 1024 * 1024;
const QUICK = ['--heartbeat', '5s', '--retry-base', '50ms', '--retry-cap', '500ms'];

let brokerRedis: TestRedis;
let serviceRedis: TestRedis;
let a: ServerProcess;
let b: ServerProcess;
let work: string;
const started: TunnelProcess[] = [];

function tunnel(args: string[]): TunnelProcess {
  const process = spawnTunnel(args);
  started.push(process);
  return process;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'edgepipe-tunnel-redis-'));
  [brokerRedis, serviceRedis] = await Promise.all([startTestRedis(), startTestRedis()]);
  [a, b] = await Promise.all([
    spawnServer(['--redis', brokerRedis.url]),
    spawnServer(['--redis', brokerRedis.url]),
  ]);
}, 60_000);
afterEach(() => {
  for (const process of started.splice(0)) process.kill();
});
afterAll(async () => {
  a?.kill();
  b?.kill();
  await Promise.all([brokerRedis?.stop(), serviceRedis?.stop()]);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('redis-server behind a tunnel (broker on Redis, the two ends on different instances)', () => {
  it('answers every request of redis-benchmark with 50 parallel connections', async () => {
    const listenPort = await freePort();
    // The default heartbeat (15 s, so 30 s to set a connection up): 50 connections opened at once on two
    // shared cores, with two brokers and Redis on them too, can take seconds each.
    const to = `127.0.0.1:${serviceRedis.port}`;
    const expose = tunnel(['expose', 'tun/redis', '--server', a.url, '--to', to]);
    const listen = `127.0.0.1:${listenPort}`;
    const connect = tunnel(['connect', 'tun/redis', '--server', b.url, '--listen', listen]);
    await Promise.all([expose.waitFor(/exposing/), connect.waitFor(/listening on/)]);
    const client = new Redis({ port: serviceRedis.port, host: '127.0.0.1' });
    try {
      const before = Number(/total_commands_processed:(\d+)/.exec(await client.info('stats'))![1]);
      const requests = 2000;
      const result = await run(
        'redis-benchmark',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(listenPort),
          '-c',
          '50',
          '-n',
          String(requests),
          '-t',
          'set,get',
          '--csv',
        ],
        { timeoutMs: 120_000 },
      );
      expect(
        result.code,
        `${result.stderr}\n${connect.log().slice(-3000)}\n${expose.log().slice(-3000)}`,
      ).toBe(0);
      const rows = result.stdout.toString().trim().split('\n').slice(1);
      expect(rows.map((row) => row.split(',')[0])).toEqual(['"SET"', '"GET"']);
      for (const row of rows) expect(Number(row.split(',')[1]!.replace(/"/g, ''))).toBeGreaterThan(0);
      const after = Number(/total_commands_processed:(\d+)/.exec(await client.info('stats'))![1]);
      // Every request reached the service (the INFO calls and redis-benchmark's CONFIG probes add a few).
      expect(after - before).toBeGreaterThanOrEqual(2 * requests);
      console.log(
        `tunnel redis-benchmark: ${rows.map((row) => row.split(',').slice(0, 2).join(' ')).join(', ')} req/s`,
      );
    } finally {
      client.disconnect();
    }
  }, 150_000);

  it('redis-cli works through a Unix-socket listen side', async () => {
    const socketPath = join(work, 'redis.sock');
    const expose = tunnel([
      'expose',
      'tun/redis-unix',
      '--server',
      a.url,
      '--to',
      `127.0.0.1:${serviceRedis.port}`,
      ...QUICK,
    ]);
    const connect = tunnel([
      'connect',
      'tun/redis-unix',
      '--server',
      b.url,
      '--listen',
      `unix:${socketPath}`,
      ...QUICK,
    ]);
    await Promise.all([expose.waitFor(/exposing/), connect.waitFor(/listening on/)]);
    const cli = (...args: string[]) => run('redis-cli', ['-s', socketPath, ...args], { timeoutMs: 20_000 });
    expect((await cli('ping')).stdout.toString().trim()).toBe('PONG');
    expect((await cli('set', 'tunnelled', 'through a unix socket')).stdout.toString().trim()).toBe('OK');
    expect((await cli('get', 'tunnelled')).stdout.toString().trim()).toBe('through a unix socket');
  }, 60_000);
});

describe('an instance SIGKILLed under open connections', () => {
  let proxy: SwitchProxy;
  let echo: TestService;
  let own: [ServerProcess, ServerProcess];
  beforeAll(async () => {
    own = await Promise.all([
      spawnServer(['--redis', brokerRedis.url]),
      spawnServer(['--redis', brokerRedis.url]),
    ]);
    proxy = await startSwitchProxy(Number(new URL(own[0].url).port));
    echo = await startEchoService();
  }, 60_000);
  afterAll(async () => {
    for (const server of own ?? []) server.kill();
    await proxy?.close();
    await echo?.close();
  });

  it('the open connections resume on the other instance and lose no byte', async () => {
    const listenPort = await freePort();
    // Both ends reach the brokers through one address, as behind a load balancer.
    const expose = tunnel([
      'expose',
      'tun/kill',
      '--server',
      proxy.url,
      '--to',
      `127.0.0.1:${echo.port}`,
      ...QUICK,
    ]);
    const connect = tunnel([
      'connect',
      'tun/kill',
      '--server',
      proxy.url,
      '--listen',
      `127.0.0.1:${listenPort}`,
      ...QUICK,
    ]);
    await Promise.all([expose.waitFor(/exposing/), connect.waitFor(/listening on/)]);
    // Three connections, each streaming 24 MiB to the echo service in paced pieces while reading it back.
    const streams = Array.from({ length: 3 }, () => echoStream(listenPort, randomBytes(24 * MiB)));
    await delay(1500);
    own[0].kill();
    proxy.switchTo(Number(new URL(own[1].url).port));
    const outcomes = await Promise.all(streams);
    for (const [i, outcome] of outcomes.entries()) {
      expect(outcome.error, `connection ${i}: ${connect.log()}`).toBeUndefined();
      expect(outcome.same, `connection ${i}: ${outcome.detail}\n${connect.log()}\n${expose.log()}`).toBe(
        true,
      );
    }
    // The exposing side is reachable through the surviving instance for new connections too.
    const after = await echoStream(listenPort, randomBytes(MiB));
    expect(after.same).toBe(true);
  }, 120_000);
});

/** Streams `data` to the echo service in 256 KiB pieces, 20 ms apart, and checks what comes back. */
function echoStream(
  port: number,
  data: Buffer,
): Promise<{ same: boolean; error: string | undefined; detail: string }> {
  return new Promise((resolve) => {
    const socket = dial({ host: '127.0.0.1', port, allowHalfOpen: true });
    const received: Buffer[] = [];
    let error: string | undefined;
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      const back = Buffer.concat(received);
      let first = 0;
      while (first < Math.min(back.length, data.length) && back[first] === data[first]) first++;
      const detail = `${back.length} of ${data.length} bytes back, the first difference at ${first}`;
      resolve({ same: back.equals(data), error, detail });
    });
    socket.on('connect', async () => {
      const piece = 256 * 1024;
      for (let at = 0; at < data.length && !socket.destroyed; at += piece) {
        if (!socket.write(data.subarray(at, at + piece))) await new Promise((r) => socket.once('drain', r));
        await delay(20);
      }
      socket.end();
    });
  });
}
