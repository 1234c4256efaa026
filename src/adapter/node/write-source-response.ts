import { ServerResponse } from 'node:http';
import { constants, Http2ServerResponse } from 'node:http2';
import type { ByteSource } from '../../byte-source.js';

/**
 * Whether a response may be corked for a turn. Bun's node:http (1.4.5) over TLS leaves a corked response's
 * bytes unsent after uncork() (measured: an HTTPS sender's transcript never arrived, test/runtimes.test.ts).
 */
const CORKS_RESPONSES = process.versions.bun === undefined;

/** A streaming response as the app made it: its body and its init. */
export interface SourceResponse {
  readonly body: ByteSource;
  readonly init: ResponseInit;
}

/** Where Node lets a handler answer: an HTTP/1 response, or an HTTP/2 stream through the compatibility API. */
export type NodeResponse = ServerResponse | Http2ServerResponse;

/**
 * The routes give plain records, or lists of pairs where a header repeats (X-Piping): each repeated value
 * is written as a header line of its own, as `Headers` would not (it joins them with ", ").
 */
function nodeHeadersOf(init: HeadersInit | undefined): Record<string, string | string[]> | undefined {
  if (init === undefined) return undefined;
  const pairs = Array.isArray(init) || init instanceof Headers ? init : Object.entries(init);
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of pairs as Iterable<[string, string]>) {
    const had = headers[name];
    headers[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
  }
  return headers;
}

/**
 * Largest transcript an HTTP/1.0 sender gets whole (a handful of lines per receiver, receivers capped by
 * `limits.maxReceivers`); past it the rest streams close-delimited.
 */
const WHOLE_TRANSCRIPT_BYTES = 1024 * 1024;

/**
 * Writes a streaming response straight from its ByteSource to Node's response, with Node's own backpressure
 * (`write()` false, then `drain`; over HTTP/2 that is the stream's flow-control window). The generic
 * `@hono/node-server` path would add a web stream, a default Content-Type to every body (a pipe whose sender
 * sent none must pass none on) and a logged stack for every errored body, which for a pipe is the ordinary way
 * a sender abort is passed on.
 *
 * A failed source aborts the response so the client sees it fail, never a clean end: HTTP/1 loses the
 * connection before the final chunk (curl exits 18), HTTP/2 gets RST_STREAM with INTERNAL_ERROR (curl exits
 * 92). A client that leaves cancels the source, which tells the broker.
 */
export function writeSourceResponse(parts: SourceResponse, outgoing: NodeResponse): void {
  if (wantsWholeBody(outgoing)) writeWhenComplete(parts, outgoing);
  else writeStreaming(parts, outgoing);
}

function writeStreaming({ body, init }: SourceResponse, outgoing: NodeResponse): void {
  outgoing.writeHead(init.status ?? 200, nodeHeadersOf(init.headers));
  // The head goes out with the first chunk (one packet instead of two); if no chunk is ready within this turn
  // of the event loop, it goes out alone so the client learns at once that its transfer started.
  setImmediate(() => {
    if (!outgoing.headersSent && !isGone(outgoing)) (outgoing as ServerResponse).flushHeaders();
  });
  let finished = false;
  const gone = () => {
    if (finished) return;
    finished = true;
    body.cancel();
  };
  outgoing.once('close', gone);
  // The client may have left while the route was still opening its session (a resume waits on Redis): the
  // 'close' above then came before anyone listened, and without this the session would stay open, holding
  // its place as if its client were there (seen after an instance was frozen: every resume refused 409).
  if (isGone(outgoing)) gone();

  const fail = () => {
    finished = true;
    abort(outgoing);
  };
  body.abandoned?.then(fail);
  // What is written within one turn of the event loop goes out as one write: one chunk frame, one syscall.
  // A 64 KiB read of a chunked upload comes out of the parser in two or three pieces (its frames' edges), each
  // of which was a write of its own, down to 12 bytes: corked until the loop's check phase, the writes fell
  // from 11,389 to 1,027 per 256 MiB and the server's CPU per GiB by a quarter (docs/benchmarks.md).
  const http1 = outgoing instanceof ServerResponse && CORKS_RESPONSES ? outgoing : undefined;
  let corked = false;
  const uncork = () => {
    corked = false;
    // end() uncorks by itself, and the socket may be serving the connection's next response by now.
    if (!finished) http1?.uncork();
  };
  const next = () => {
    body.read().then(flow, fail);
  };
  const flow = (chunk: Uint8Array | null): void => {
    if (chunk === null) {
      finished = true;
      outgoing.end();
      return;
    }
    if (isGone(outgoing)) {
      gone();
      return;
    }
    if (http1 && !corked) {
      corked = true;
      http1.cork();
      setImmediate(uncork);
    }
    if ((outgoing as ServerResponse).write(chunk)) next();
    else outgoing.once('drain', next);
  };
  next();
}

/**
 * An HTTP/1.0 client cannot take a chunked body, and a close-delimited one cannot be told from a cut
 * connection. piping-server gives a 1.0 sender its transcript whole, with a Content-Length, when the transfer
 * ends, and so does this: the transcript is small and bounded. A 1.0 receiver's body streams close-delimited
 * (Node's default for 1.0), since it can be any size.
 */
function wantsWholeBody(outgoing: NodeResponse): outgoing is ServerResponse {
  return (
    outgoing instanceof ServerResponse &&
    outgoing.req.httpVersion === '1.0' &&
    (outgoing.req.method === 'PUT' || outgoing.req.method === 'POST')
  );
}

function writeWhenComplete(parts: SourceResponse, outgoing: ServerResponse): void {
  const { body, init } = parts;
  const chunks: Uint8Array[] = [];
  let size = 0;
  let settled = false;
  outgoing.once('close', () => {
    if (!settled) body.cancel();
  });
  const fail = () => {
    if (settled) return;
    settled = true;
    outgoing.destroy();
  };
  body.abandoned?.then(fail);
  const take = (chunk: Uint8Array | null): void => {
    if (settled) return;
    if (chunk === null) {
      settled = true;
      outgoing.writeHead(init.status ?? 200, {
        ...nodeHeadersOf(init.headers),
        'Content-Length': String(size),
      });
      outgoing.end(Buffer.concat(chunks));
      return;
    }
    chunks.push(chunk);
    size += chunk.length;
    if (size <= WHOLE_TRANSCRIPT_BYTES) {
      body.read().then(take, fail);
      return;
    }
    // Too long to hold: the rest streams, close-delimited.
    settled = true;
    const rest: ByteSource = {
      read: () => {
        const held = chunks.shift();
        return held ? Promise.resolve(held) : body.read();
      },
      cancel: () => body.cancel(),
      ...(body.abandoned ? { abandoned: body.abandoned } : {}),
    };
    writeStreaming({ body: rest, init }, outgoing);
  };
  body.read().then(take, fail);
}

function isGone(outgoing: NodeResponse): boolean {
  if (outgoing instanceof Http2ServerResponse) return outgoing.stream.destroyed;
  return outgoing.destroyed || outgoing.socket?.destroyed === true;
}

function abort(outgoing: NodeResponse): void {
  if (outgoing instanceof Http2ServerResponse) {
    // A bare destroy() resets with NO_ERROR, which curl and browsers take for a clean end: a silent truncation.
    // The reset waits for the next turn: a sender's reset is often what fails the source, and Node 20 spins
    // forever (100 % CPU, event loop stuck) when RST_STREAM is submitted from within the session's handling
    // of incoming frames (measured: `submitRstStream` under the receiving callback).
    const stream = outgoing.stream;
    setImmediate(() => {
      if (!stream.destroyed) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    });
  } else {
    outgoing.destroy();
  }
}
