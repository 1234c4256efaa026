import type { Context } from 'hono';
import { PipeError } from '../broker/errors.js';
import type { PipeMeta, ReceiverSession } from '../broker/types.js';
import type { ByteSource } from '../byte-source.js';
import { stallGuarded } from '../byte-source-guards.js';
import { DeadlineError, withDeadline } from '../clock.js';
import type { TrafficCounters } from '../selfheal/traffic-counters.js';
import { CORS_ORIGIN } from './cors.js';
import type { RouteDeps } from './deps.js';
import { fail, failWithPipeError } from './http-error.js';
import { receiverHeaders } from './passthrough-headers.js';
import { pipeTargetOf } from './pipe-target.js';
import { declaredLengthOf, type ReceiverResumeRequest, receiverResumeOf } from './resume-request.js';

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

    let session: ReceiverSession;
    try {
      session = await deps.broker.openReceiver({ ...target, resumeAt: resume?.offset });
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
    const body = stallGuarded(counted(session, deps.counters), deps.clock, deps.config.limits.idleTimeoutMs);
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

/** The session as the response body, counting the bytes handed out. */
function counted(session: ReceiverSession, counters: TrafficCounters): ByteSource {
  return {
    read: () =>
      session.read().then((chunk) => {
        if (chunk) counters.bytesOut += chunk.byteLength;
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
function resumedResponse(headers: Headers, resume: ReceiverResumeRequest): ResponseInit {
  const total = declaredLengthOf(headers);
  if (total !== undefined) {
    if (resume.offset >= total) {
      fail(416, `Byte ${resume.offset} is beyond the body's ${total} bytes.`, {
        'Content-Range': `bytes */${total}`,
      });
    }
    headers.set('Content-Length', String(total - resume.offset));
  }
  if (!resume.viaRange) return { headers };
  const last = total === undefined ? '*/*' : `${total - 1}/${total}`;
  headers.set('Content-Range', `bytes ${resume.offset}-${last}`);
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
  headers.set('X-Edgepipe-State', status?.state ?? 'idle');
  if (status?.committedOffset !== undefined) headers.set('Upload-Offset', String(status.committedOffset));
  if (status?.senderDropped !== undefined)
    headers.set('X-Edgepipe-Sender', status.senderDropped ? 'dropped' : 'connected');
  headers.set('Access-Control-Expose-Headers', 'X-Edgepipe-State, Upload-Offset, X-Edgepipe-Sender');
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
