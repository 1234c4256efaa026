import { createHash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';

/** A test service on 127.0.0.1 (a free port), closed with `close()`. */
export interface TestService {
  readonly port: number;
  /** Connections it accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

function serviceOf(server: Server, port: number, count: () => number): TestService {
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return {
    port,
    accepted: count,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Echoes every byte back; half-closes when the client does. */
export async function startEchoService(): Promise<TestService> {
  let accepted = 0;
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    accepted += 1;
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  return serviceOf(server, await listen(server), () => accepted);
}

/**
 * Reads until the client half-closes, then answers `<bytes> <sha256>\n` and closes: works only if the
 * half-close arrived as a half-close (the answer still has to get back).
 */
export async function startDigestService(): Promise<TestService> {
  let accepted = 0;
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    accepted += 1;
    socket.on('error', () => {});
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.byteLength;
    });
    socket.on('end', () => socket.end(`${bytes} ${hash.digest('hex')}\n`));
  });
  return serviceOf(server, await listen(server), () => accepted);
}

/** Resets every connection (TCP RST) once its first bytes arrive; reports what it saw. */
export async function startResettingService(): Promise<TestService> {
  let accepted = 0;
  const server = createServer((socket) => {
    accepted += 1;
    socket.on('error', () => {});
    socket.once('data', () => socket.resetAndDestroy());
  });
  return serviceOf(server, await listen(server), () => accepted);
}

/** How a client connection through the tunnel ended. */
export interface ClientOutcome {
  readonly received: Buffer;
  /** Whether the peer's FIN arrived ('end'), and the socket error code, if any. */
  readonly ended: boolean;
  readonly error: string | undefined;
}

/**
 * Connects to `port`, writes `data` in pieces, half-closes when `halfClose`, and collects what comes back
 * until the connection closes (bounded by `timeoutMs`).
 */
export function talk(
  port: number,
  data: Buffer,
  options: { halfClose?: boolean; timeoutMs?: number; path?: string } = {},
): Promise<ClientOutcome> {
  return new Promise((resolve, reject) => {
    const socket = options.path
      ? connect({ path: options.path, allowHalfOpen: true })
      : connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const received: Buffer[] = [];
    let ended = false;
    let error: string | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `no close within ${options.timeoutMs ?? 20_000} ms (${Buffer.concat(received).length} bytes in)`,
        ),
      );
    }, options.timeoutMs ?? 20_000);
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('end', () => {
      ended = true;
      // The peer is done; with a half-close of ours outstanding, finish our side too.
      socket.end();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(received), ended, error });
    });
    socket.on('connect', () => {
      const piece = 256 * 1024;
      for (let at = 0; at < data.length; at += piece) socket.write(data.subarray(at, at + piece));
      if (options.halfClose !== false) socket.end();
    });
  });
}

/** `<bytes> <sha256>\n` of `data`, as the digest service answers. */
export function digestLine(data: Buffer): string {
  return `${data.length} ${createHash('sha256').update(data).digest('hex')}\n`;
}
