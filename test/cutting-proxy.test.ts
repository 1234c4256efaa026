import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ConnectionFaults,
  type CuttingProxy,
  type FaultPlan,
  startCuttingProxy,
} from './helpers/cutting-proxy.js';
import { randomPlan } from './helpers/random-fault-plan.js';

const MiB = 1024 * 1024;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A TCP server on 127.0.0.1 handing each connection to `onSocket`; closed after the test. */
async function tcpServer(onSocket: (socket: Socket) => void): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onSocket(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  return server;
}

const portOf = (server: Server) => (server.address() as { port: number }).port;

async function proxyTo(server: Server, plan?: FaultPlan): Promise<CuttingProxy> {
  const proxy = await startCuttingProxy({ target: { host: '127.0.0.1', port: portOf(server) }, plan });
  cleanups.push(() => proxy.close());
  return proxy;
}

/** Writes `chunks` honouring backpressure; stops quietly if the socket fails. */
async function writeAll(socket: Socket, chunks: Iterable<Buffer>, end = true): Promise<void> {
  try {
    for (const chunk of chunks) {
      if (socket.destroyed) return;
      if (!socket.write(chunk)) await once(socket, 'drain');
    }
    if (end) socket.end();
  } catch {
    // The peer was cut: what happened is what the test checks.
  }
}

/** How a socket's incoming stream went: its bytes, and whether it ended cleanly or failed. */
interface Received {
  readonly bytes: Buffer;
  readonly ended: boolean;
  readonly error: NodeJS.ErrnoException | undefined;
}

function collect(socket: Socket): Promise<Received> {
  const chunks: Buffer[] = [];
  let ended = false;
  let error: NodeJS.ErrnoException | undefined;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('end', () => {
    ended = true;
  });
  socket.on('error', (e) => {
    error = e;
  });
  // Not events.once: it rejects on 'error', which is an outcome here.
  return new Promise((resolve) =>
    socket.once('close', () => resolve({ bytes: Buffer.concat(chunks), ended, error })),
  );
}

/**
 * A client connected through `proxy`. Without `halfOpen` it ends its side when the server ends, so that a
 * clean transfer closes the connection.
 */
async function dial(proxy: CuttingProxy, halfOpen = false): Promise<Socket> {
  const socket = connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: halfOpen });
  // Resets are expected outcomes here: `collect` records them.
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** Resolves with the next connection `server` accepts, already being collected. */
function nextConnection(server: Server): Promise<Promise<Received>> {
  return new Promise((resolve) => server.once('connection', (socket: Socket) => resolve(collect(socket))));
}

const pieces = (bytes: Buffer, size = 50_000) =>
  Array.from({ length: Math.ceil(bytes.byteLength / size) }, (_, i) =>
    bytes.subarray(i * size, (i + 1) * size),
  );
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('without faults', () => {
  it('passes 16 MiB through an echo untouched, and a half-close ends both directions cleanly', async () => {
    const echo = await tcpServer((socket) => socket.pipe(socket));
    const proxy = await proxyTo(echo);
    const sent = randomBytes(16 * MiB);
    const client = await dial(proxy, true);
    const received = collect(client);
    await writeAll(client, pieces(sent));
    const { bytes, ended, error } = await received;
    expect(error).toBeUndefined();
    expect(ended).toBe(true);
    expect(sha256(bytes)).toBe(sha256(sent));
    expect([proxy.connections, proxy.cuts, proxy.flips]).toEqual([1, 0, 0]);
  });

  it('passes a reset from the server on as a reset, and resets a client whose target refuses', async () => {
    const resetting = await tcpServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
    const client = await dial(await proxyTo(resetting));
    const received = collect(client);
    client.write('hello');
    expect((await received).error?.code).toBe('ECONNRESET');

    const closed = await tcpServer(() => {});
    const refused = await startCuttingProxy({ target: { host: '127.0.0.1', port: portOf(closed) } });
    cleanups.push(() => refused.close());
    await new Promise((resolve) => closed.close(resolve));
    const orphan = collect(await dial(refused));
    expect((await orphan).ended).toBe(false);
  });
});

describe('cuts', () => {
  const length = 4 * MiB + 3;
  const positions = [0, 1, 1000, 65_536, 65_537, 3 * MiB + 7];

  it.each(positions)('cutDownAt %i: the client gets exactly that many bytes, then a reset', async (n) => {
    const sent = randomBytes(length);
    const source = await tcpServer((socket) => void writeAll(socket, pieces(sent)));
    const serverSide = nextConnection(source);
    const proxy = await proxyTo(source, () => ({ cutDownAt: n }));
    const { bytes, ended, error } = await collect(await dial(proxy));
    expect(bytes.byteLength).toBe(n);
    expect(bytes.equals(sent.subarray(0, n))).toBe(true);
    expect(ended).toBe(false);
    expect(error?.code).toBe('ECONNRESET');
    expect((await await serverSide).ended).toBe(false);
    expect(proxy.cuts).toBe(1);
  });

  it.each(positions)('cutUpAt %i: the server gets exactly that many bytes, then a reset', async (n) => {
    const sent = randomBytes(length);
    const sink = await tcpServer(() => {});
    const serverSide = nextConnection(sink);
    const proxy = await proxyTo(sink, () => ({ cutUpAt: n }));
    const client = await dial(proxy);
    const clientSide = collect(client);
    await writeAll(client, pieces(sent));
    const { bytes, ended, error } = await await serverSide;
    expect(bytes.byteLength).toBe(n);
    expect(bytes.equals(sent.subarray(0, n))).toBe(true);
    expect(ended).toBe(false);
    expect(error?.code).toBe('ECONNRESET');
    expect((await clientSide).ended).toBe(false);
  });

  it('is exact with a reader that lets the kernel buffers fill first', async () => {
    const sent = randomBytes(10 * MiB);
    const source = await tcpServer((socket) => void writeAll(socket, pieces(sent)));
    const proxy = await proxyTo(source, () => ({ cutDownAt: 6 * MiB }));
    const client = await dial(proxy);
    client.pause();
    // Megabytes now wait in the proxy's send queue towards the client: a reset now would drop them.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const received = collect(client);
    client.resume();
    const { bytes, error } = await received;
    expect(bytes.byteLength).toBe(6 * MiB);
    expect(bytes.equals(sent.subarray(0, 6 * MiB))).toBe(true);
    expect(error?.code).toBe('ECONNRESET');
  });

  it('does nothing at a position the stream never reaches', async () => {
    const sent = randomBytes(100_000);
    const source = await tcpServer((socket) => void writeAll(socket, pieces(sent)));
    const proxy = await proxyTo(source, () => ({ cutDownAt: sent.byteLength, cutUpAt: 0, flipDownAt: 1e9 }));
    const { bytes, ended, error } = await collect(await dial(proxy));
    expect([bytes.equals(sent), ended, error]).toEqual([true, true, undefined]);
    expect([proxy.cuts, proxy.flips]).toEqual([0, 0]);
  });
});

describe('flips', () => {
  it.each([0, 70_000, 999_999])('flipDownAt %i flips exactly that byte', async (p) => {
    const sent = randomBytes(MiB);
    const source = await tcpServer((socket) => void writeAll(socket, pieces(sent)));
    const proxy = await proxyTo(source, () => ({ flipDownAt: p }));
    const { bytes, ended } = await collect(await dial(proxy));
    const expected = Buffer.from(sent);
    expected[p]! ^= 0xff;
    expect(ended).toBe(true);
    expect(bytes.equals(expected)).toBe(true);
    expect(proxy.flips).toBe(1);
  });

  it('flipUpAt flips exactly that byte on its way to the server', async () => {
    const sent = randomBytes(MiB);
    const sink = await tcpServer((socket) => socket.on('end', () => socket.end()));
    const serverSide = nextConnection(sink);
    const proxy = await proxyTo(sink, () => ({ flipUpAt: 123_456 }));
    const client = await dial(proxy);
    client.resume();
    await writeAll(client, pieces(sent));
    const expected = Buffer.from(sent);
    expected[123_456]! ^= 0xff;
    expect((await await serverSide).bytes.equals(expected)).toBe(true);
    expect(proxy.flips).toBe(1);
  });
});

describe('a cut after the last byte', () => {
  it('cutDownAtEnd: every byte arrives, then a reset where the server ended', async () => {
    const sent = randomBytes(100_000);
    const source = await tcpServer((socket) => void writeAll(socket, pieces(sent)));
    const proxy = await proxyTo(source, () => ({ cutDownAtEnd: true, idleMs: 60_000 }));
    const { bytes, ended, error } = await collect(await dial(proxy));
    expect(bytes.equals(sent)).toBe(true);
    expect([ended, error?.code, proxy.cuts]).toEqual([false, 'ECONNRESET', 1]);
  });

  it('cutDownAtEnd: a server that stays open is reset once silent for idleMs', async () => {
    const source = await tcpServer((socket) => socket.write('x'.repeat(1000)));
    const proxy = await proxyTo(source, () => ({ cutDownAtEnd: true, idleMs: 300 }));
    const started = performance.now();
    const { bytes, error } = await collect(await dial(proxy));
    expect(bytes.toString()).toBe('x'.repeat(1000));
    expect(error?.code).toBe('ECONNRESET');
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('holdLastDownBytes: 5 withholds the end of a chunked HTTP/1.1 response, so fetch fails', async () => {
    const http = createHttpServer((_req, res) => {
      res.sendDate = false;
      res.write('first part, ');
      setTimeout(() => res.end('second part'), 20);
    });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    cleanups.push(() => new Promise((resolve) => http.close(resolve)));
    const request = 'GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n';
    const raw = async (proxy: CuttingProxy) => {
      const client = await dial(proxy);
      const received = collect(client);
      client.write(request);
      return received;
    };
    const clean = await raw(await proxyTo(http as unknown as Server));
    expect(clean.bytes.toString().endsWith('second part\r\n0\r\n\r\n')).toBe(true);
    const holding = await proxyTo(http as unknown as Server, () => ({ holdLastDownBytes: 5 }));
    const cut = await raw(holding);
    expect(cut.bytes.equals(clean.bytes.subarray(0, -5))).toBe(true);
    expect(cut.error?.code).toBe('ECONNRESET');
    // A keep-alive client: the server does not end, the proxy resets after idleMs of silence.
    await expect(fetch(holding.url).then((res) => res.text())).rejects.toThrow();
    expect(holding.cuts).toBe(2);
  });
});

describe('randomPlan', () => {
  const options = { seed: 42, cutProbability: 0.5, maxPosition: 10_000, maxCuts: 6, flipProbability: 0.3 };
  const first100 = (plan: (i: number) => ConnectionFaults | undefined, order = (i: number) => i) => {
    const faults: (ConnectionFaults | undefined)[] = [];
    for (let k = 0; k < 100; k++) faults[order(k)] = plan(order(k));
    return faults;
  };

  it('draws the same faults for the same seed, whatever order connections are asked in', () => {
    const faults = first100(randomPlan(options));
    expect(first100(randomPlan(options))).toEqual(faults);
    expect(first100(randomPlan(options), (k) => 99 - k)).toEqual(faults);
    expect(first100(randomPlan({ ...options, seed: 43 }))).not.toEqual(faults);
    const faulty = faults.filter((f) => Object.keys(f ?? {}).length > 0);
    expect(faulty).toHaveLength(6);
    expect(faults.slice(faults.indexOf(faulty[5]) + 1).every((f) => Object.keys(f ?? {}).length === 0)).toBe(
      true,
    );
    for (const f of faulty) for (const at of Object.values(f!)) expect(at).toBeLessThan(10_000);
  });

  it('lets a retrying client through once maxCuts connections were cut', async () => {
    const echo = await tcpServer((socket) => socket.pipe(socket));
    const proxy = await proxyTo(
      echo,
      randomPlan({ seed: 7, cutProbability: 1, maxPosition: 50_000, maxCuts: 3 }),
    );
    const sent = randomBytes(100_000);
    let attempts = 0;
    for (;;) {
      attempts++;
      const client = await dial(proxy);
      const received = collect(client);
      await writeAll(client, pieces(sent));
      const { bytes, ended } = await received;
      if (ended && bytes.equals(sent)) break;
    }
    expect([attempts, proxy.connections, proxy.cuts]).toEqual([4, 4, 3]);
  });
});

describe('backpressure', () => {
  const total = 256 * MiB;
  const block = randomBytes(MiB);
  /** The blocks of the transfer, counted in `progress.written` as the writer takes them. */
  function* blocks(progress: { written: number }) {
    while (progress.written < total) {
      progress.written += block.byteLength;
      yield block;
    }
  }

  /** Reads `socket` at about 12 MiB/s for `ms`, then at full speed; resolves with the bytes read. */
  async function slowThenFast(socket: Socket, ms: number, whileSlow: () => void): Promise<number> {
    let read = 0;
    socket.pause();
    const slow = setInterval(() => {
      whileSlow();
      read += socket.read()?.byteLength ?? 0;
    }, 5);
    await new Promise((resolve) => setTimeout(resolve, ms));
    clearInterval(slow);
    socket.on('data', (chunk: Buffer) => {
      read += chunk.byteLength;
    });
    socket.resume();
    await once(socket, 'end');
    return read;
  }

  it.each(['down', 'up'] as const)(
    'holds at most a few chunks while a slow reader reads (%s)',
    async (way) => {
      let peak = 0;
      const progress = { written: 0 };
      let readerDone: Promise<number> | undefined;
      const sample = () => {
        peak = Math.max(peak, proxy.bufferedBytes());
      };
      const server = await tcpServer((socket) => {
        if (way === 'down') void writeAll(socket, blocks(progress));
        else readerDone = slowThenFast(socket, 1_000, sample);
      });
      const proxy = await proxyTo(server);
      const client = await dial(proxy);
      if (way === 'down') readerDone = slowThenFast(client, 1_000, sample);
      else {
        client.resume();
        void writeAll(client, blocks(progress));
      }
      await new Promise((resolve) => setTimeout(resolve, 900));
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThan(512 * 1024);
      // The writer was held back while the reader was slow (else the bound above proved nothing).
      expect(progress.written).toBeLessThan(total / 2);
      expect(await readerDone).toBe(total);
    },
  );
});

describe('close', () => {
  it('stops listening and destroys every live connection', async () => {
    const echo = await tcpServer((socket) => socket.pipe(socket));
    const proxy = await proxyTo(echo);
    const clients = await Promise.all([dial(proxy), dial(proxy)]);
    const closed = clients.map((client) => collect(client));
    await proxy.close();
    for (const { ended } of await Promise.all(closed)) expect(ended).toBe(false);
    const refused = connect({ port: proxy.port, host: '127.0.0.1' });
    const [error] = (await once(refused, 'error').catch((e) => [e])) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ECONNREFUSED');
    expect(proxy.bufferedBytes()).toBe(0);
  });
});
