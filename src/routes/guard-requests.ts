import type { Context, MiddlewareHandler, Next } from 'hono';
import type { AccessPolicy, PipeAccess, Refusal } from '../access/access-policy.js';
import { clientAddressOf, type TrustedProxies } from '../access/client-address.js';
import { type ClientLimits, type ClientSlot, isRefusal, type LimitRefusal } from '../access/client-limits.js';
import { DELIVERED_HEADER, TOPICS_PREFIX } from '../protocol/topic-layout.js';
import { dotSegmentIn, dotSegmentReason } from './dot-segments.js';
import { fail } from './http-error.js';
import { pipePathOf } from './pipe-target.js';
import { isReservedPath } from './reserved-paths.js';

export interface GuardRequestsOptions {
  readonly access: AccessPolicy;
  readonly limits: ClientLimits;
  readonly proxies: TrustedProxies;
  /** Largest request head, as Node's parser counts it (the other runtimes are checked here). */
  readonly maxHeaderBytes: number;
  /** Whether the runtime's own parser has already held this request's head to `maxHeaderBytes`. */
  readonly headLimited: (request: Request, env: unknown) => boolean;
  /** The socket's peer address of a request, when the runtime tells it. */
  readonly peerAddress: (request: Request, env: unknown) => string | undefined;
  /** The request target as the client sent it, before the URL parser resolved it (see `AppDeps`). */
  readonly requestTarget: (request: Request, env: unknown) => string | undefined;
  /** When a streaming response's body ends; `undefined` for responses that are complete as they are. */
  readonly bodyDone: (response: Response) => Promise<void> | undefined;
  /** Where a pipe request's slot is kept so its route can say when the peer came. */
  readonly slots: WeakMap<Request, ClientSlot>;
}

const HEALTH_PATH = '/_/health';

/** What a pipe request asks to do, by method; `undefined` for methods the pipe routes do not serve. */
function pipeAccessOf(method: string): PipeAccess | undefined {
  if (method === 'PUT' || method === 'POST') return 'send';
  if (method === 'GET') return 'recv';
  if (method === 'HEAD') return 'inspect';
  return undefined;
}

function headBytesOf(request: Request, url: URL): number {
  let bytes = request.method.length + url.pathname.length + url.search.length + 12;
  for (const [name, value] of request.headers) bytes += name.length + value.length + 4;
  return bytes;
}

/** Answers a refusal: 401 carries the challenge that tells the client what to present. */
export function refuse(refusal: Refusal): never {
  fail(
    refusal.status,
    refusal.reason,
    refusal.challenge ? { 'WWW-Authenticate': refusal.challenge } : undefined,
  );
}

/**
 * Everything a request passes before a route sees it: the head size cap, the dot-segment check, the
 * client's rate limit, and for pipe requests the access check and the client's caps on open and waiting
 * pipes. A pipe request's slot is released when its response ends (for a streaming body, when the body
 * does); see `ClientLimits` for what the rate limit charges and when.
 */
export function guardRequests(options: GuardRequestsOptions): MiddlewareHandler {
  const { access, limits, proxies } = options;
  return async function guard(c: Context, next: Next) {
    const request = c.req.raw;
    const url = new URL(request.url);
    if (!options.headLimited(request, c.env) && headBytesOf(request, url) > options.maxHeaderBytes) {
      fail(431, `The request head is larger than ${options.maxHeaderBytes} bytes.`);
    }
    const target = options.requestTarget(request, c.env);
    const dotSegment = target === undefined ? undefined : dotSegmentIn(target);
    const client = clientAddressOf(
      options.peerAddress(request, c.env),
      // Read only where it can count: the header is parsed into a Headers object on its first read.
      proxies.empty ? null : request.headers.get('x-forwarded-for'),
      proxies,
    );
    const wanted = pipeAccessOf(request.method);
    const path = pipePathOf(url);
    const pipe = !dotSegment && wanted !== undefined && !isReservedPath(path);
    // Appends, reads and acks of topics are charged like pipe requests: only when they fail or a read
    // waited in vain. A consumer draining a backlog makes two requests per batch and is not slowed by that.
    const topic =
      !dotSegment && (wanted === 'send' || wanted === 'recv') && url.pathname.startsWith(TOPICS_PREFIX);
    // A pipe transfer is charged only if it fails (see ClientLimits). Never counted: a load balancer's
    // health checks (a 429 there would take us out), and preflights (a browser sends one before each
    // upload to a new path; answering one costs no more than answering its 429 would).
    const free = url.pathname === HEALTH_PATH || (request.method === 'OPTIONS' && !dotSegment);
    if (!free) {
      const limited = limits.admitRequest(client, !((pipe && wanted !== 'inspect') || topic));
      if (limited) fail(429, limited.reason, { 'Retry-After': String(limited.retryAfterSeconds) });
    }
    // Before anything resolves the path (access checks, the broker): refused, not served as another path.
    if (dotSegment) fail(400, dotSegmentReason(dotSegment));
    if (topic)
      return topicRequest(c, next, limits.openPipe(client), options.bodyDone, () => limits.charge(client));
    if (!pipe || wanted === undefined) return next();
    if (!access.open) {
      const refusal = await access.checkPipe(request, url, path, wanted);
      if (refusal) {
        if (wanted !== 'inspect') limits.charge(client);
        refuse(refusal);
      }
    }
    if (wanted === 'inspect') return next();
    const slot = limits.openPipe(client);
    if (isRefusal(slot)) {
      limits.charge(client);
      fail(429, slot.reason, { 'Retry-After': String(slot.retryAfterSeconds) });
    }
    options.slots.set(request, slot);
    try {
      await next();
    } finally {
      const done = options.bodyDone(c.res);
      if (done) done.then(slot.release);
      else slot.release();
    }
  };
}

/**
 * A topic request under the client's caps (a long-poll or a follow stream holds a connection, as a waiting
 * pipe request does) and charged to its bucket only when it fails (4xx/5xx) or a read waited in vain.
 */
async function topicRequest(
  c: Context,
  next: Next,
  slot: ClientSlot | LimitRefusal,
  bodyDone: (response: Response) => Promise<void> | undefined,
  charge: () => void,
): Promise<void> {
  if (isRefusal(slot)) {
    charge();
    fail(429, slot.reason, { 'Retry-After': String(slot.retryAfterSeconds) });
  }
  try {
    await next();
    if (c.res.status < 400 && c.res.headers.get(DELIVERED_HEADER) !== '0') slot.completed();
  } finally {
    const done = bodyDone(c.res);
    if (done) done.then(slot.release, slot.release);
    else slot.release();
  }
}
