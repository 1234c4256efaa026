import type { Context } from 'hono';
import { PipeError } from '../broker/errors.js';
import type { PipeMeta, ReceiverSession } from '../broker/types.js';
import { DeadlineError, withDeadline } from '../clock.js';
import { CORS_ORIGIN } from './cors.js';
import type { RouteDeps } from './deps.js';
import { fail, failWithPipeError } from './http-error.js';
import { receiverHeaders } from './passthrough-headers.js';
import { pipeTargetOf } from './pipe-target.js';

/**
 * `GET /<path>`: claims a receiver slot, waits for the transfer to start, then streams the body. A sender
 * failure errors the response stream, which cuts the connection: curl exits non-zero instead of keeping a
 * silently truncated file.
 */
export function receiveRoute(deps: RouteDeps) {
  return async function receive(c: Context): Promise<Response> {
    const request = c.req.raw;
    const target = pipeTargetOf(new URL(request.url), deps.config.limits);
    // HEAD never takes a slot: asking about a pipe must not consume it.
    if (request.method === 'HEAD') return new Response(null, { headers: { ...CORS_ORIGIN } });
    // A pipe must not register a service worker that would own this origin
    // (https://w3c.github.io/ServiceWorker/#service-worker-script-request).
    if (request.headers.get('service-worker') === 'script')
      fail(400, 'Service Worker registration is rejected.');

    let session: ReceiverSession;
    try {
      session = await deps.broker.openReceiver(target);
    } catch (error) {
      if (error instanceof PipeError) failWithPipeError(error);
      throw error;
    }
    const meta = await waitForStart(deps, request, session, target.path);
    if (!meta) return new Response(null, { status: 499 });
    // The session is the body: read() pulls from the broker only as fast as the client takes it, cancel()
    // tells the broker this receiver left.
    return deps.streamResponse(session, { headers: receiverHeaders(meta.headers) });
  };
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
    if (error instanceof PipeError) failWithPipeError(error);
    if (request.signal.aborted) return undefined;
    throw error;
  }
}
