import type { ServerResponse } from 'node:http';

/** A streaming response as the app made it: its body and its init. */
export interface StreamParts {
  readonly body: ReadableStream<Uint8Array>;
  readonly init: ResponseInit;
}

/**
 * Writes a streaming web Response to Node's ServerResponse. The generic `@hono/node-server` path adds a
 * default Content-Type to every body (a pipe whose sender sent none must pass none on) and logs a stack for
 * every errored body stream, which for a pipe is the ordinary way a sender abort is passed on.
 *
 * An errored body destroys the connection without the final chunk, so the client sees a truncated response
 * (curl exits 18), never a clean end. A client that leaves cancels the body, which tells the broker.
 */
export function writeStreamResponse({ body, init }: StreamParts, outgoing: ServerResponse): void {
  // The routes give plain records; anything else goes through Headers to normalise it.
  const headers =
    init.headers === undefined ||
    (typeof init.headers === 'object' && !Array.isArray(init.headers) && !(init.headers instanceof Headers))
      ? (init.headers as Record<string, string> | undefined)
      : Object.fromEntries(new Headers(init.headers));
  outgoing.writeHead(init.status ?? 200, headers);
  const reader = body.getReader();
  // The head goes out with the first chunk (one packet instead of two); if no chunk is ready within this turn
  // of the event loop, it goes out alone so the client learns at once that its transfer started.
  setImmediate(() => {
    if (!outgoing.headersSent && !outgoing.destroyed) outgoing.flushHeaders();
  });
  let finished = false;
  const cancel = () => {
    if (!finished) reader.cancel().catch(() => {});
  };
  outgoing.once('close', cancel);

  const fail = () => {
    finished = true;
    outgoing.destroy();
  };
  const onDrain = () => reader.read().then(flow, fail);
  const flow = ({ done, value }: ReadableStreamReadResult<Uint8Array>): void => {
    if (done) {
      finished = true;
      outgoing.end();
      return;
    }
    if (outgoing.destroyed) {
      cancel();
      return;
    }
    if (outgoing.write(value)) reader.read().then(flow, fail);
    else outgoing.once('drain', onDrain);
  };
  reader.read().then(flow, fail);
}
