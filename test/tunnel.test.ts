// edgepipe expose / connect on the in-memory broker: real processes (the broker, both tunnel ends), real
// TCP services in this process, real faults (a refusing service, resets, a broker restart, a frozen peer).
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, run, type ServerProcess, spawnListening, spawnServer } from './helpers/processes.js';
import { freePort } from './helpers/redis-server.js';
import { spawnTunnel, type TunnelProcess } from './helpers/tunnel-processes.js';
import {
  digestLine,
  startDigestService,
  startEchoService,
  startResettingService,
  type TestService,
  talk,
} from './helpers/tunnel-services.js';

const MiB = 1024 * 1024;
const HEARTBEAT = ['--heartbeat', '500ms', '--retry-base', '50ms', '--retry-cap', '500ms'];

let broker: ServerProcess;
const started: TunnelProcess[] = [];
const services: TestService[] = [];

function tunnel(args: string[], env: NodeJS.ProcessEnv = {}): TunnelProcess {
  const process = spawnTunnel(args, env);
  started.push(process);
  return process;
}

/** An exposing side for `port` and a connecting side listening on a free port, both ready. */
async function tunnelTo(
  name: string,
  port: number,
  server = broker.url,
  env: NodeJS.ProcessEnv = {},
): Promise<{ expose: TunnelProcess; connect: TunnelProcess; listenPort: number }> {
  const listenPort = await freePort();
  const expose = tunnel(['expose', name, '--server', server, '--to', `127.0.0.1:${port}`, ...HEARTBEAT], env);
  const connect = tunnel(
    ['connect', name, '--server', server, '--listen', `127.0.0.1:${listenPort}`, ...HEARTBEAT],
    env,
  );
  await Promise.all([expose.waitFor(/exposing .* as /), connect.waitFor(/listening on /)]);
  return { expose, connect, listenPort };
}

beforeAll(async () => {
  broker = await spawnServer();
}, 30_000);
afterEach(() => {
  for (const process of started.splice(0)) process.kill();
});
afterAll(async () => {
  broker?.kill();
  await Promise.all(services.splice(0).map((service) => service.close()));
});

async function service<T extends TestService>(starting: Promise<T>): Promise<T> {
  const started = await starting;
  services.push(started);
  return started;
}

describe('edgepipe expose / connect on the in-memory broker', () => {
  it('carries a connection whose client half-closes and still reads the answer (TCP half-close)', async () => {
    const digest = await service(startDigestService());
    const { listenPort } = await tunnelTo('tun/half', digest.port);
    const data = randomBytes(3 * MiB + 7);
    const outcome = await talk(listenPort, data);
    expect(outcome.error).toBeUndefined();
    expect(outcome.ended).toBe(true);
    expect(outcome.received.toString()).toBe(digestLine(data));
  });

  it('carries 20 connections at once, each over its own pipes, every byte back in order', async () => {
    const echo = await service(startEchoService());
    const { listenPort, expose, connect } = await tunnelTo('tun/many', echo.port);
    const payloads = Array.from({ length: 20 }, (_, i) => randomBytes(64 * 1024 + i * 4099));
    const outcomes = await Promise.all(payloads.map((data) => talk(listenPort, data)));
    outcomes.forEach((outcome, i) => {
      expect(outcome.error, `connection ${i}\n${connect.log()}\n${expose.log()}`).toBeUndefined();
      expect(outcome.received.equals(payloads[i]!), `connection ${i}`).toBe(true);
    });
    expect(echo.accepted()).toBe(20);
    await expose.waitFor(/(closed: both sides closed[\s\S]*){20}/);
  });

  it('a reset by the service reaches the client as a reset', async () => {
    const resetting = await service(startResettingService());
    const { listenPort, connect } = await tunnelTo('tun/rst', resetting.port);
    const outcome = await talk(listenPort, Buffer.from('hello'), { halfClose: false });
    expect(outcome.error).toBe('ECONNRESET');
    expect(outcome.received.length).toBe(0);
    await connect.waitFor(/reset: reset on the service side/);
  });

  it('a reset by the client reaches the service as a reset', async () => {
    const resets: string[] = [];
    // The reset is made once the service holds the client's first byte: a connection the service has not
    // even accepted yet (its process busy under the full suite) is the kernel's business, not the tunnel's.
    let gotByte!: () => void;
    const serviceGotByte = new Promise<void>((resolve) => {
      gotByte = resolve;
    });
    const { createServer } = await import('node:net');
    const server = createServer((socket) => {
      socket.on('error', (error: NodeJS.ErrnoException) => resets.push(error.code ?? error.message));
      socket.once('data', () => gotByte());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const { listenPort, expose } = await tunnelTo('tun/crst', port);
      const { connect } = await import('node:net');
      const client = connect({ host: '127.0.0.1', port: listenPort });
      client.on('error', () => {});
      client.write('x');
      await expose.waitFor(/open/);
      await serviceGotByte;
      client.resetAndDestroy();
      await expose.waitFor(/reset: reset on the connecting side/);
      for (let i = 0; i < 250 && resets.length === 0; i++) await delay(20);
      expect(resets, expose.log()).toEqual(['ECONNRESET']);
    } finally {
      server.close();
    }
  });

  it('carries at most --max-connections at once: one more is reset with the reason, and taken again later', async () => {
    const echo = await service(startEchoService());
    const listenPort = await freePort();
    const expose = tunnel([
      'expose',
      'tun/max',
      '--server',
      broker.url,
      '--to',
      `127.0.0.1:${echo.port}`,
      '--max-connections',
      '1',
      ...HEARTBEAT,
    ]);
    const connect = tunnel([
      'connect',
      'tun/max',
      '--server',
      broker.url,
      '--listen',
      `127.0.0.1:${listenPort}`,
      ...HEARTBEAT,
    ]);
    await Promise.all([expose.waitFor(/exposing/), connect.waitFor(/listening on/)]);
    const { connect: dial } = await import('node:net');
    const first = dial({ host: '127.0.0.1', port: listenPort });
    first.on('error', () => {});
    first.write('held open');
    await new Promise((resolve) => first.once('data', resolve));
    const second = await talk(listenPort, Buffer.from('one too many'), { halfClose: false });
    expect(second.received.length).toBe(0);
    expect(second.error).toBe('ECONNRESET');
    await connect.waitFor(/carries its maximum of 1 connections/);
    first.end();
    await expose.waitFor(/closed: both sides closed/);
    const third = await talk(listenPort, Buffer.from('room again'));
    expect(third.received.toString()).toBe('room again');
  });

  it('a connection the service refuses is refused on the connecting side too (reset, nothing read)', async () => {
    const closedPort = await freePort();
    const { listenPort, connect } = await tunnelTo('tun/refused', closedPort);
    const outcome = await talk(listenPort, Buffer.from('hello'), { halfClose: false });
    expect(outcome.received.length).toBe(0);
    expect(outcome.error).toBe('ECONNRESET');
    await connect.waitFor(/refused: the service refused the connection: ECONNREFUSED/);
    // With --stdio the refusal is the exit status and one line.
    const stdio = await run(
      process.execPath,
      [
        join(repoRoot, 'dist/cli/main.js'),
        'connect',
        'tun/refused',
        '--server',
        broker.url,
        '--stdio',
        ...HEARTBEAT,
      ],
      { input: 'hello', timeoutMs: 20_000 },
    );
    expect(stdio.code, stdio.stderr).toBe(6);
    expect(stdio.stderr).toMatch(/refused the connection: ECONNREFUSED/);
  });

  it('connect --stdio carries one connection over stdin/stdout', async () => {
    const echo = await service(startEchoService());
    await tunnelTo('tun/stdio', echo.port);
    const data = randomBytes(2 * MiB + 3);
    const result = await run(
      process.execPath,
      [
        join(repoRoot, 'dist/cli/main.js'),
        'connect',
        'tun/stdio',
        '--server',
        broker.url,
        '--stdio',
        ...HEARTBEAT,
      ],
      { input: data, timeoutMs: 30_000 },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.equals(data)).toBe(true);
  });

  it('a frozen exposing side (SIGSTOP) is noticed by heartbeat: its connections are closed within two intervals', async () => {
    const echo = await service(startEchoService());
    const { listenPort, expose, connect } = await tunnelTo('tun/frozen', echo.port);
    const { connect: dial } = await import('node:net');
    const client = dial({ host: '127.0.0.1', port: listenPort });
    client.on('error', () => {});
    const closed = new Promise<number>((resolve) => client.once('close', () => resolve(Date.now())));
    client.write('ping');
    await new Promise((resolve) => client.once('data', resolve));
    // Idle and open: heartbeats keep it alive across several intervals.
    await delay(2000);
    expect(client.destroyed).toBe(false);
    expose.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    try {
      const closedAt = await closed;
      // Two 500 ms intervals, plus the checker's quarter interval and a loaded machine's slack.
      expect(closedAt - stoppedAt).toBeLessThan(2500);
      await connect.waitFor(/failed: the peer fell silent/);
    } finally {
      expose.child.kill('SIGCONT');
    }
  });

  it('a dead end: connect closes a connection nobody exposes once set-up time is over (10 s)', async () => {
    const { listenPort, expose, connect } = await tunnelTo(
      'tun/gone',
      (await service(startEchoService())).port,
    );
    expose.kill();
    await expose.exited();
    const startedAt = Date.now();
    const outcome = await talk(listenPort, Buffer.from('hello'), { halfClose: false, timeoutMs: 20_000 });
    expect(outcome.received.length).toBe(0);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(10_000);
    expect(Date.now() - startedAt).toBeLessThan(13_000);
    await connect.waitFor(/no answer from the exposing side/);
  }, 30_000);

  it('encrypts each direction: the broker sees no plaintext, and a wrong passphrase gets no connection', async () => {
    const echo = await service(startEchoService());
    const marker = Buffer.from('PLAINTEXT-MARKER-'.repeat(64));
    // A recording proxy between the connecting side and the broker.
    const { createServer, connect: dial } = await import('node:net');
    const seen: Buffer[] = [];
    const target = new URL(broker.url);
    const recorder = createServer((client) => {
      const upstream = dial({ host: target.hostname, port: Number(target.port) });
      client.on('data', (chunk: Buffer) => seen.push(chunk));
      upstream.on('data', (chunk: Buffer) => seen.push(chunk));
      for (const socket of [client, upstream]) socket.on('error', () => {});
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => recorder.listen(0, '127.0.0.1', resolve));
    const recorderUrl = `http://127.0.0.1:${(recorder.address() as { port: number }).port}`;
    try {
      const secret = { EDGEPIPE_PASSPHRASE: 'correct horse battery staple' };
      const listenPort = await freePort();
      const expose = tunnel(
        [
          'expose',
          'tun/sealed',
          '--server',
          broker.url,
          '--to',
          `127.0.0.1:${echo.port}`,
          '--passphrase',
          ...HEARTBEAT,
        ],
        secret,
      );
      const connect = tunnel(
        [
          'connect',
          'tun/sealed',
          '--server',
          recorderUrl,
          '--listen',
          `127.0.0.1:${listenPort}`,
          '--passphrase',
          ...HEARTBEAT,
        ],
        secret,
      );
      await Promise.all([expose.waitFor(/exposing/, 30_000), connect.waitFor(/listening on/, 30_000)]);
      const outcome = await talk(listenPort, marker).catch((error: Error) => {
        throw new Error(`sealed: ${error.message}\n${connect.log()}\n${expose.log()}`);
      });
      expect(outcome.received.equals(marker)).toBe(true);
      const wire = Buffer.concat(seen);
      expect(wire.length).toBeGreaterThan(2 * marker.length);
      expect(wire.includes(Buffer.from('PLAINTEXT-MARKER-'))).toBe(false);

      // The same recorder sees the marker when the tunnel is not encrypted (the check above can fail).
      seen.length = 0;
      const plain = await tunnelTo('tun/plain', echo.port, recorderUrl);
      expect((await talk(plain.listenPort, marker)).received.equals(marker)).toBe(true);
      expect(Buffer.concat(seen).includes(Buffer.from('PLAINTEXT-MARKER-'))).toBe(true);

      const wrongPort = await freePort();
      const wrong = tunnel(
        [
          'connect',
          'tun/sealed',
          '--server',
          broker.url,
          '--listen',
          `127.0.0.1:${wrongPort}`,
          '--passphrase',
          ...HEARTBEAT,
        ],
        { EDGEPIPE_PASSPHRASE: 'wrong' },
      );
      await wrong.waitFor(/listening on/, 30_000);
      const refused = await talk(wrongPort, marker).catch((error: Error) => {
        throw new Error(`wrong key: ${error.message}\n${wrong.log()}\n${expose.log()}`);
      });
      expect(refused.received.length).toBe(0);
      // The connecting side, whose log a user reads (ssh shows it), names the cause: it checks the exposing
      // side's stream header as the exposing side checks its own (which of the two notices first varies).
      await wrong.waitFor(/does not verify: another passphrase or key/);
      await expose.waitFor(/connection \w+ failed: (the peer's stream does not verify|every receiver left)/);
    } finally {
      recorder.close();
    }
  }, 60_000);
});

describe('a broker restart', () => {
  it('ends open connections cleanly on the memory broker, and the exposing side comes back by itself', async () => {
    const port = await freePort();
    const args = [join(repoRoot, 'dist/cli/main.js'), 'serve', '--host', '127.0.0.1', '--port', String(port)];
    let own = await spawnListening(process.execPath, args);
    try {
      const echo = await service(startEchoService());
      const { listenPort, expose } = await tunnelTo('tun/restart', echo.port, own.url);
      const { connect: dial } = await import('node:net');
      const client = dial({ host: '127.0.0.1', port: listenPort });
      client.on('error', () => {});
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      client.write('before');
      await new Promise((resolve) => client.once('data', resolve));
      own.kill();
      await own.exited();
      await closed;
      own = await spawnListening(process.execPath, args);
      await expose.waitFor(/again \(reconnected/, 30_000);
      const data = randomBytes(512 * 1024);
      const outcome = await talk(listenPort, data);
      expect(outcome.received.equals(data)).toBe(true);
    } finally {
      own.kill();
    }
  }, 60_000);
});

describe('a tunnel on a closed broker', () => {
  const SECRET = 'tunnel-secret-tunnel-secret-tunnel-secret';
  const config = (auth: object) => JSON.stringify({ auth });

  it('runs on one URL from `edgepipe sign --tunnel`, and the exposing side with a send-only URL is refused at start', async () => {
    const signed = await spawnServer([], {
      EDGEPIPE_CONFIG: config({ mode: 'signed' }),
      EDGEPIPE_SECRETS: SECRET,
    });
    try {
      const cli = [join(repoRoot, 'dist/cli/main.js')];
      const sign = async (...args: string[]) => {
        const result = await run(process.execPath, [...cli, 'sign', ...args, '--url', signed.url], {
          env: { EDGEPIPE_SECRETS: SECRET },
        });
        expect(result.code, result.stderr).toBe(0);
        return result.stdout.toString().trim();
      };
      const url = await sign('/tunnels/db', '--tunnel');
      const echo = await service(startEchoService());
      const listenPort = await freePort();
      const expose = tunnel(['expose', url, '--to', `127.0.0.1:${echo.port}`, ...HEARTBEAT]);
      const connect = tunnel(['connect', url, '--listen', `127.0.0.1:${listenPort}`, ...HEARTBEAT]);
      await Promise.all([expose.waitFor(/exposing/), connect.waitFor(/listening on/)]);
      const data = randomBytes(300_000);
      expect((await talk(listenPort, data)).received.equals(data)).toBe(true);
      // A URL that may only send cannot run a tunnel: said at start, exit 3, nothing waits.
      const sendOnly = await sign('/tunnels/db', '--send', '--prefix');
      const refused = await run(process.execPath, [...cli, 'expose', sendOnly, '--to', '127.0.0.1:1'], {
        timeoutMs: 20_000,
      });
      expect(refused.code, refused.stderr).toBe(3);
      expect(refused.stderr).toMatch(/refused/);
    } finally {
      signed.kill();
    }
  }, 60_000);

  it('runs with a bearer token (--token), and without one the start is refused', async () => {
    const token = 'tunnel-token-0123456789abcdef';
    const closed = await spawnServer([], {
      EDGEPIPE_CONFIG: config({
        mode: 'token',
        tokens: [{ name: 'ops', token, scopes: ['send', 'recv'], prefix: '/ops' }],
      }),
    });
    try {
      const echo = await service(startEchoService());
      const listenPort = await freePort();
      const withToken = ['--server', closed.url, '--token', token, ...HEARTBEAT];
      const expose = tunnel(['expose', 'ops/tun', '--to', `127.0.0.1:${echo.port}`, ...withToken]);
      const connect = tunnel(['connect', 'ops/tun', '--listen', `127.0.0.1:${listenPort}`, ...withToken]);
      await Promise.all([expose.waitFor(/exposing/), connect.waitFor(/listening on/)]);
      const data = randomBytes(100_000);
      expect((await talk(listenPort, data)).received.equals(data)).toBe(true);
      const without = await run(
        process.execPath,
        [join(repoRoot, 'dist/cli/main.js'), 'connect', 'ops/tun', '--server', closed.url, '--stdio'],
        { timeoutMs: 20_000 },
      );
      expect(without.code, without.stderr).toBe(3);
    } finally {
      closed.kill();
    }
  }, 60_000);
});
