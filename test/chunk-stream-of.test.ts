import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkStreamOf } from '../src/cli/chunk-stream-of.js';

/** A service that sends back what it gets and half-closes after the client's half-close. */
let echo: Server;
beforeAll(async () => {
  echo = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
});
afterAll(() => echo.close());

describe('chunkStreamOf on a socket', () => {
  // Found in a tunnel under load: the socket's 'close' comes right after its 'end', while a slow reader
  // still had the read-ahead queued; erroring the closed stream then threw that tail away.
  it('gives a slow reader every byte up to the end, after the socket has closed', async () => {
    const total = 4 * 1024 * 1024;
    const socket = connect({ port: (echo.address() as { port: number }).port, allowHalfOpen: true });
    socket.on('error', () => {});
    await once(socket, 'connect');
    const reader = chunkStreamOf(socket).getReader();
    socket.end(Buffer.alloc(total, 1));
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(socket.destroyed).toBe(true);
    expect(received).toBe(total);
  });

  it('still fails a socket that is destroyed before its end', async () => {
    const socket = connect({ port: (echo.address() as { port: number }).port, allowHalfOpen: true });
    socket.on('error', () => {});
    await once(socket, 'connect');
    const reader = chunkStreamOf(socket).getReader();
    socket.write('some bytes');
    socket.destroy();
    await expect(
      (async () => {
        for (;;) if ((await reader.read()).done) return;
      })(),
    ).rejects.toThrow('closed without an end');
  });
});
