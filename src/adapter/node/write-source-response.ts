import type { ServerResponse } from 'node:http';
import type { ByteSource } from '../../byte-source.js';

/** A streaming response as the app made it: its body and its init. */
export interface SourceResponse {
  readonly body: ByteSource;
  readonly init: ResponseInit;
}

/**
 * Writes a streaming response straight from its ByteSource to Node's ServerResponse, with Node's own
 * backpressure (`write()` false, then `drain`). The generic `@hono/node-server` path would add a web stream,
 * a default Content-Type to every body (a pipe whose sender sent none must pass none on) and a logged stack
 * for every errored body, which for a pipe is the ordinary way a sender abort is passed on.
 *
 * A failed source destroys the connection without the final chunk, so the client sees a truncated response
 * (curl exits 18), never a clean end. A client that leaves cancels the source, which tells the broker.
 */
export function writeSourceResponse({ body, init }: SourceResponse, outgoing: ServerResponse): void {
  // The routes give plain records; anything else goes through Headers to normalise it.
  const headers =
    init.headers === undefined ||
    (typeof init.headers === 'object' && !Array.isArray(init.headers) && !(init.headers instanceof Headers))
      ? (init.headers as Record<string, string> | undefined)
      : Object.fromEntries(new Headers(init.headers));
  outgoing.writeHead(init.status ?? 200, headers);
  // The head goes out with the first chunk (one packet instead of two); if no chunk is ready within this turn
  // of the event loop, it goes out alone so the client learns at once that its transfer started.
  setImmediate(() => {
    if (!outgoing.headersSent && !outgoing.destroyed) outgoing.flushHeaders();
  });
  let finished = false;
  outgoing.once('close', () => {
    if (!finished) body.cancel();
  });

  const fail = () => {
    finished = true;
    outgoing.destroy();
  };
  body.abandoned?.then(fail);
  const next = () => {
    body.read().then(flow, fail);
  };
  const flow = (chunk: Uint8Array | null): void => {
    if (chunk === null) {
      finished = true;
      outgoing.end();
      return;
    }
    if (outgoing.destroyed) return;
    if (outgoing.write(chunk)) next();
    else outgoing.once('drain', next);
  };
  next();
}
