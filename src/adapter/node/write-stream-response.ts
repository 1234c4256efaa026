import type { ServerResponse } from 'node:http';

/**
 * Writes a streaming web Response to Node's ServerResponse. The generic `@hono/node-server` path adds a
 * default Content-Type to every body (a pipe whose sender sent none must pass none on) and logs a stack for
 * every errored body stream, which for a pipe is the ordinary way a sender abort is passed on.
 *
 * An errored body destroys the connection without the final chunk, so the client sees a truncated response
 * (curl exits 18), never a clean end. A client that leaves cancels the body, which tells the broker.
 */
export function writeStreamResponse(response: Response, outgoing: ServerResponse): void {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  outgoing.writeHead(response.status, headers);
  // Send the head now: a receiver's head is its signal that the transfer started.
  outgoing.flushHeaders();
  const reader = response.body!.getReader();
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
