import type { Context } from 'hono';
import { PipeError } from '../broker/errors.js';
import type { PipeMeta, ReceiverSession } from '../broker/types.js';
import type { ByteSource } from '../byte-source.js';
import { stallGuarded } from '../byte-source-guards.js';
import { DeadlineError, withDeadline } from '../clock.js';
import {
  RESUMABLE_HEADER,
  RESUMABLE_YES,
  SENDER_HEADER,
  STATE_HEADER,
  UPLOAD_OFFSET_HEADER,
} from '../protocol/resumable.js';
import type { TrafficCounters } from '../selfheal/traffic-counters.js';
import { CORS_ORIGIN } from './cors.js';
import type { RouteDeps } from './deps.js';
import { fail, failWithPipeError } from './http-error.js';
import { type HeaderPairs, receiverHeaders, setHeader } from './passthrough-headers.js';
import { pipeTargetOf } from './pipe-target.js';
import {
  declaredLengthOf,
  type ReceiverResumeRequest,
  receiverResumeOf,
  resumableOf,
} from './resume-request.js';

/**
 * `GET /<path>`: claims a receiver slot, waits for the transfer to start, then streams the body. A sender
 * failure errors the response stream, which cuts the connection: curl exits non-zero instead of keeping a
 * silently truncated file. With `Range: bytes=N-` or `?offset=N` it takes the place of a receiver that
 * dropped out of the running transfer and streams the rest from byte N.
 */
export function receiveRoute(deps: RouteDeps) {
  return async function receive(c: Context): Promise<Response> {
    const request = c.req.raw;
    const target = pipeTargetOf(new URL(request.url), deps.config.limits);
    // HEAD never takes a slot: asking about a pipe must not consume it.
    if (request.method === 'HEAD') return inspect(deps, target.path);
    // A pipe must not register a service worker that would own this origin
    // (https://w3c.github.io/ServiceWorker/#service-worker-script-request).
    if (request.headers.get('service-worker') === 'script')
      fail(400, 'Service Worker registration is rejected.');
    const resume = receiverResumeOf(new URL(request.url), request.headers);
    const resumable = resumableOf(request.headers, resume !== undefined);

    let session: ReceiverSession;
    try {
      session = await deps.broker.openReceiver({ ...target, resumeAt: resume?.offset, resumable });
    } catch (error) {
      if (error instanceof PipeError) failWithPipeError(error, 'receiver');
      throw error;
    }
    const meta = await waitForStart(deps, request, session, target.path);
    if (!meta) return new Response(null, { status: 499 });
    deps.slots.get(request)?.transferring();
    // The session is the body: read() pulls from the broker only as fast as the client takes it, cancel()
    // tells the broker this receiver left. A client that stops taking bytes is dropped after the idle
    // timeout, so it cannot hold the pipe's other receivers and its sender forever.
    const headers = receiverHeaders(meta.headers);
    const slot = deps.slots.get(request);
    // Handed over whole (never on a resume: only a broker that cannot resume passes streams).
    if (meta.body && deps.passStream) {
      // A completed transfer costs its client nothing (see ClientLimits), whole or chunk by chunk.
      const done = (meta.delivered ?? Promise.resolve(false)).then((whole) => {
        if (whole) slot?.completed();
      });
      return deps.passStream(meta.body, { headers }, done);
    }
    const body = stallGuarded(
      counted(session, deps.counters, () => slot?.completed()),
      deps.clock,
      deps.config.limits.idleTimeoutMs,
    );
    if (!resume) return deps.streamResponse(body, { headers });
    let init: ResponseInit;
    try {
      init = resumedResponse(headers, resume);
    } catch (error) {
      session.cancel();
      throw error;
    }
    return deps.streamResponse(body, init);
  };
}

/** The session as the response body, counting the bytes handed out; `ended` once all of them were. */
function counted(session: ReceiverSession, counters: TrafficCounters, ended: () => void): ByteSource {
  return {
    read: () =>
      session.read().then((chunk) => {
        if (chunk) counters.bytesOut += chunk.byteLength;
        else ended();
        return chunk;
      }),
    cancel: () => session.cancel(),
  };
}

/**
 * The head of a resumed body. With a declared length it is a standard 206; without one the last byte is
 * not known while the sender streams, so the header gives `*` for both the last byte and the length: not in
 * RFC 9110's grammar, but what `curl -C -` and resuming downloaders check is the first byte, which is exact.
 */
function resumedResponse(headers: HeaderPairs, resume: ReceiverResumeRequest): ResponseInit {
  const total = declaredLengthOf(new Headers(headers));
  if (total !== undefined) {
    // A range must start inside the body (RFC 9110 §14.1.2); `?offset=` may name its very end, where a
    // receiver cut right after the last byte (or rejoining an empty body) gets an empty rest.
    if (resume.viaRange ? resume.offset >= total : resume.offset > total) {
      fail(416, `Byte ${resume.offset} is beyond the body's ${total} bytes.`, {
        'Content-Range': `bytes */${total}`,
      });
    }
    setHeader(headers, 'Content-Length', String(total - resume.offset));
  }
  if (!resume.viaRange) return { headers };
  const last = total === undefined ? '*/*' : `${total - 1}/${total}`;
  setHeader(headers, 'Content-Range', `bytes ${resume.offset}-${last}`);
  return { status: 206, headers };
}

/**
 * `HEAD /<path>`: how the pipe stands, without taking part. `Upload-Offset` is the byte a sender whose
 * upload broke continues from (`PUT /<path>?offset=N`); the name follows the IETF resumable-uploads draft.
 */
async function inspect(deps: RouteDeps, path: string): Promise<Response> {
  const headers = new Headers(CORS_ORIGIN);
  let status: Awaited<ReturnType<RouteDeps['broker']['inspect']>>;
  try {
    status = await deps.broker.inspect(path);
  } catch (error) {
    if (error instanceof PipeError) failWithPipeError(error);
    throw error;
  }
  headers.set(STATE_HEADER, status?.state ?? 'idle');
  headers.set(RESUMABLE_HEADER, deps.broker.resumable ? RESUMABLE_YES : '0');
  if (status?.committedOffset !== undefined)
    headers.set(UPLOAD_OFFSET_HEADER, String(status.committedOffset));
  if (status?.senderDropped !== undefined)
    headers.set(SENDER_HEADER, status.senderDropped ? 'dropped' : 'connected');
  headers.set(
    'Access-Control-Expose-Headers',
    `${STATE_HEADER}, ${UPLOAD_OFFSET_HEADER}, ${SENDER_HEADER}, ${RESUMABLE_HEADER}`,
  );
  return new Response(null, { headers });
}

/** The sender's metadata once the transfer starts; `undefined` when the receiver itself went away. */
async function waitForStart(
  deps: RouteDeps,
  request: Request,
  session: ReceiverSession,
  path: string,
): Promise<PipeMeta | undefined> {
  try {
    return await withDeadline(
      deps.clock,
      deps.config.limits.waitTimeoutMs,
      session.waitForStart(request.signal),
    );
  } catch (error) {
    session.cancel();
    if (error instanceof DeadlineError) {
      fail(
        504,
        `No sender came to '${path}' within ${Math.round(deps.config.limits.waitTimeoutMs / 1000)} s.`,
      );
    }
    if (error instanceof PipeError) failWithPipeError(error, 'receiver');
    if (request.signal.aborted) return undefined;
    throw error;
  }
}
