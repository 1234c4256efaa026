import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { finished, type Readable } from 'node:stream';
import type { ByteSource } from '../../byte-source.js';

/** Bytes read from the socket but not yet taken; above this the socket is paused. */
const HIGH_WATER_BYTES = 64 * 1024;

/**
 * A request body as a ByteSource read straight from Node's IncomingMessage. `@hono/node-server` hands bodies
 * over through `Readable.toWeb`, which copies every chunk "to detach it from the pool" (a sixth of the
 * server's CPU on a 1 GiB upload) and adds a web stream per hop; the HTTP parser's chunks are slices of a
 * fresh socket read buffer that nothing reuses, so they pass on as they are.
 *
 * Nothing is read before the first `read()`; at most 64 KiB wait unread before the socket is paused (over
 * HTTP/2 the stream stops taking data, so its flow-control window closes on the sender). A premature close
 * fails the source, so a broken upload never looks complete.
 */
export function incomingSource(incoming: IncomingMessage | Http2ServerRequest): ByteSource {
  const queue: Buffer[] = [];
  let queuedBytes = 0;
  let ended = false;
  let failure: Error | undefined;
  let waiter: { resolve(chunk: Uint8Array | null): void; reject(error: Error): void } | undefined;
  let started = false;
  let stopFinished = () => {};

  const settle = () => {
    const w = waiter;
    if (!w) return;
    const chunk = queue.shift();
    if (chunk) {
      waiter = undefined;
      queuedBytes -= chunk.length;
      w.resolve(chunk);
    } else if (failure) {
      waiter = undefined;
      w.reject(failure);
    } else if (ended) {
      waiter = undefined;
      w.resolve(null);
    }
  };

  const start = () => {
    started = true;
    incoming.on('data', (chunk: Buffer) => {
      queue.push(chunk);
      queuedBytes += chunk.length;
      if (queuedBytes >= HIGH_WATER_BYTES) incoming.pause();
      settle();
    });
    stopFinished = finished(incoming as Readable, (error) => {
      if (error) failure = error;
      else ended = true;
      settle();
    });
    // Over HTTP/2 a stream reset without END_STREAM (whatever its code) closes the request early too, so it
    // fails here as well (test/http2.test.ts). END_STREAM then RST_STREAM is a complete body by the protocol.
  };

  return {
    read() {
      if (!started) start();
      const chunk = queue.shift();
      if (chunk) {
        queuedBytes -= chunk.length;
        if (queuedBytes < HIGH_WATER_BYTES && incoming.isPaused()) incoming.resume();
        return Promise.resolve(chunk);
      }
      if (failure) return Promise.reject(failure);
      if (ended) return Promise.resolve(null);
      if (incoming.isPaused()) incoming.resume();
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
    cancel() {
      // Nobody reads any more: stop taking from the socket; the server drains or closes it after the response.
      stopFinished();
      incoming.removeAllListeners('data');
      incoming.pause();
      queue.length = 0;
      queuedBytes = 0;
      ended = true;
      settle();
    },
  };
}
