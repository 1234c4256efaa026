import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { AccessPolicy } from './access/access-policy.js';
import { TrustedProxies } from './access/client-address.js';
import { ClientLimits, type ClientSlot } from './access/client-limits.js';
import { MemoryBroker } from './broker/memory/memory-broker.js';
import { retentionOf } from './broker/topic-bounds.js';
import type { Broker } from './broker/types.js';
import { type ByteSource, sourceOfStream, streamOfSource } from './byte-source.js';
import { watchedSource } from './byte-source-guards.js';
import { type Clock, systemClock } from './clock.js';
import type { Config } from './config.js';
import { TOPICS_PREFIX } from './protocol/topic-layout.js';
import { CORS_ORIGIN, preflightHeaders } from './routes/cors.js';
import type { HeaderValuesReader, RequestBodyReader, RouteDeps } from './routes/deps.js';
import { guardRequests } from './routes/guard-requests.js';
import { fail } from './routes/http-error.js';
import { receiveRoute } from './routes/receive.js';
import { INTERNAL_PREFIX, isReservedPath } from './routes/reserved-paths.js';
import { sendRoute } from './routes/send.js';
import { serverPages } from './routes/server-pages.js';
import { topicsRoute } from './routes/topics.js';
import { printableLine } from './routes/transcript.js';
import { type LatencySink, LatencyWindows } from './selfheal/latency-windows.js';
import { TrafficCounters } from './selfheal/traffic-counters.js';
import type { WatcherView } from './selfheal/watcher.js';

export interface AppDeps {
  /** The pipe backend; an in-memory broker sized by `config` when omitted. */
  readonly broker?: Broker;
  readonly clock?: Clock;
  /**
   * Reads a request's body when the runtime has a faster path than the web-standard `request.body`
   * (the Node adapter reads its IncomingMessage directly). Defaults to reading `request.body`.
   */
  readonly requestBody?: RequestBodyReader;
  /**
   * Every value of a repeated request header, one by one (the Node adapter reads `rawHeaders`). Defaults to
   * the `Request`'s own headers, which join repeated values into one.
   */
  readonly headerValues?: HeaderValuesReader;
  /**
   * Makes the Response of a streaming body. Defaults to a Response over a web ReadableStream; the Node
   * adapter marks these responses and writes their sources to the socket itself. `done` settles when the
   * body ended, failed or was cancelled (the Workers adapter keeps its broker until then).
   */
  readonly streamResponse?: (body: ByteSource, init: ResponseInit, done: Promise<void>) => Response;
  /**
   * Makes the Response of a pipe body handed over whole as a stream (`PipeMeta.body`, `startStream`), sent
   * as it is. Given only where the runtime moves a stream from one request to another natively (a Durable
   * Object, with a broker whose `passThrough` is native); without it every body goes chunk by chunk.
   */
  readonly passStream?: (body: ReadableStream<Uint8Array>, init: ResponseInit) => Response;
  /** Where unexpected errors are reported (they answer 500 either way). */
  readonly logError?: (error: unknown) => void;
  /** Latency windows the broker and the watcher share; a fresh set when omitted. */
  readonly latency?: LatencyWindows;
  /** The self-heal watcher (`/_/selfheal`), when the runtime runs one. */
  readonly watcher?: WatcherView;
  /**
   * The socket peer's address of a request (`env` as in `RequestBodyReader`), for per-client limits. Without
   * it every client counts as one, `unknown`.
   */
  readonly peerAddress?: (request: Request, env: unknown) => string | undefined;
  /**
   * Whether the runtime's parser has already refused a request head over `server.maxHeaderBytes` (Node's
   * HTTP/1 server answers 431 itself), so the app need not count it again. Without it the app counts.
   */
  readonly headLimited?: (request: Request, env: unknown) => boolean;
  /**
   * The request target as the client sent it (`/a/../b`), before the URL parser resolved `request.url`
   * (`/b`). With it, targets with dot segments are refused (400); without it (a runtime that gives only the
   * resolved URL, as workerd does) nothing can tell them apart.
   */
  readonly requestTarget?: (request: Request, env: unknown) => string | undefined;
}

const ALLOW = 'GET, HEAD, POST, PUT, OPTIONS';

/** Why topics answer 503 where the broker keeps none (Workers with pipes in Durable Objects, no Redis). */
export const TOPICS_UNAVAILABLE =
  'Topics need the Redis backend here (broker.redis); this server keeps none.';

/** What a web `Request` tells of a header: its values joined into one. */
export const joinedHeaderValues: HeaderValuesReader = (request, _env, name) => {
  const value = request.headers.get(name);
  return value === null ? [] : [value];
};

/** The in-memory broker sized by `config` (runtimes with a Redis backend choose it in their adapter). */
export function defaultBroker(config: Config, latency?: LatencySink): Broker {
  return new MemoryBroker({
    windowBytes: config.broker.windowBytes ?? 1024 * 1024,
    maxPipes: config.limits.maxPipes,
    maxWaiting: config.limits.maxWaiting,
    ...(latency && { latency }),
  });
}

/**
 * Builds the edgepipe HTTP app from a validated config. It uses web standards only, so every runtime's entry
 * file serves the same app.
 */
export function createApp(config: Config, deps: AppDeps = {}): Hono {
  const latency = deps.latency ?? new LatencyWindows();
  const streamResponse =
    deps.streamResponse ??
    ((body: ByteSource, init: ResponseInit) => new Response(streamOfSource(body), init));
  const clock = deps.clock ?? systemClock;
  // Streaming responses (transfers, transcripts) are timed by the broker, not as requests; their ends
  // release the client's pipe slots.
  const streamed = new WeakMap<Response, Promise<void>>();
  const tracked = (response: Response, done: Promise<void>) => {
    streamed.set(response, done);
    return response;
  };
  const routeDeps: RouteDeps = {
    config,
    broker: deps.broker ?? defaultBroker(config, latency),
    clock,
    requestBody: deps.requestBody ?? ((request) => sourceOfStream(request.body)),
    headerValues: deps.headerValues ?? joinedHeaderValues,
    streamResponse: (body, init) => {
      const { source, done } = watchedSource(body);
      return tracked(streamResponse(source, init, done), done);
    },
    passStream: deps.passStream && ((body, init, done) => tracked(deps.passStream!(body, init), done)),
    latency,
    counters: new TrafficCounters(),
    watcher: deps.watcher,
    access: new AccessPolicy(config.auth, clock),
    slots: new WeakMap<Request, ClientSlot>(),
  };
  const logError = deps.logError ?? ((error: unknown) => console.error(error));
  const app = new Hono();

  app.use('*', async function measure(c, next) {
    const started = performance.now();
    await next();
    routeDeps.counters.response(c.res.status);
    if (!streamed.has(c.res)) latency.record('request', performance.now() - started);
  });

  app.use(
    '*',
    guardRequests({
      access: routeDeps.access,
      limits: new ClientLimits(config.limits.perClient, clock),
      proxies: new TrustedProxies(config.server.trustProxies),
      maxHeaderBytes: config.server.maxHeaderBytes,
      peerAddress: deps.peerAddress ?? (() => undefined),
      headLimited: deps.headLimited ?? (() => false),
      requestTarget: deps.requestTarget ?? (() => undefined),
      bodyDone: (response) => streamed.get(response),
      slots: routeDeps.slots,
    }),
  );
  app.options('*', (c) => c.body(null, 200, Object.fromEntries(preflightHeaders(c.req.raw))));
  // Topics first: /_/ is closed to pipes, and the server's pages answer 404 below it.
  const boundsOf = retentionOf(config.topics.retention);
  const topicStore = routeDeps.broker.openTopics?.({
    boundsOf,
    idempotencyWindowMs: config.topics.idempotencyWindowMs,
    claimAfterMs: config.topics.claimAfterMs,
    maxTopics: config.topics.maxTopics,
    clock,
  });
  app.all(`${TOPICS_PREFIX}*`, topicsRoute(routeDeps, topicStore, boundsOf, TOPICS_UNAVAILABLE));
  app.route('/', serverPages(routeDeps));
  app.get(`${INTERNAL_PREFIX}*`, () => fail(404, 'No such endpoint.'));
  const send = sendRoute(routeDeps);
  app.put('*', send);
  app.post('*', send);
  const receive = receiveRoute(routeDeps);
  app.get('*', (c) => {
    if (isReservedPath(new URL(c.req.url).pathname)) fail(404, 'No such page.');
    return receive(c);
  });
  app.all('*', (c) => fail(405, `Unsupported method: ${c.req.method}.`, { Allow: ALLOW }));

  app.onError(function renderError(error) {
    const status = error instanceof HTTPException ? error.status : 500;
    if (!(error instanceof HTTPException)) logError(error);
    const headers = new Headers(error instanceof HTTPException ? error.res?.headers : undefined);
    for (const [name, value] of Object.entries(CORS_ORIGIN)) headers.set(name, value);
    // Bare, as piping-server answers: the line is ASCII (see printableLine).
    headers.set('Content-Type', 'text/plain');
    const reason = error instanceof HTTPException ? error.message : 'Internal server error.';
    return new Response(`[ERROR] ${printableLine(reason)}\n`, { status, headers });
  });
  return app;
}
