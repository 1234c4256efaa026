// Cloudflare Workers entry (`npm run dev:worker`, `wrangler deploy`). Everything Workers-specific is here.

import { Redis } from 'ioredis';
import { createApp } from '../../app.js';
import { BrokerUnavailableError } from '../../broker/errors.js';
import { RedisBroker } from '../../broker/redis/redis-broker.js';
import type { Broker } from '../../broker/types.js';
import type { Config } from '../../config.js';
import { TOPICS_PREFIX } from '../../protocol/topic-layout.js';
import { pipePathOf } from '../../routes/pipe-target.js';
import { isReservedPath } from '../../routes/reserved-paths.js';
import type { WatcherView } from '../../selfheal/watcher.js';
import { drainRefusedBody } from './drain-refused-body.js';
import { pipeObjectName } from './pipe-object-name.js';
import { SELFHEAL_STATE, type StoredSelfheal, scheduledWatch } from './scheduled-watch.js';
import { streamingResponse } from './streaming-response.js';
import { WATCH_NAME, WATCH_URL, type WatchState } from './watch-object.js';
import { configOf, type Env, pipesBackend } from './worker-env.js';

export { PipeObject } from './pipe-object.js';
export { WatchObject } from './watch-object.js';

interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}

const NEEDS_REDIS =
  'edgepipe on Cloudflare Workers needs a Redis: set the REDIS_URL secret (the in-memory broker cannot ' +
  "pass bytes between requests there, as one request may not touch another's stream).";

const NEEDS_PIPES_BINDING =
  'edgepipe on Cloudflare Workers needs the PIPES Durable Object binding of wrangler.toml (class PipeObject) ' +
  'for broker.workers = durable-object, or a Redis (REDIS_URL).';

/** Refuses every pipe with the reason; pages and errors still answer, health says unavailable (503). */
function refusing(reason: string): Broker {
  return {
    resumable: false,
    ready: async () => {},
    drain: () => {},
    close: async () => {},
    stats: () => ({ pipes: 0, waiting: 0, unavailable: reason }),
    inspect: async () => undefined,
    openSender: async () => {
      throw new BrokerUnavailableError(undefined, reason);
    },
    openReceiver: async () => {
      throw new BrokerUnavailableError(undefined, reason);
    },
  };
}

/**
 * The Worker's own broker when pipes live in Durable Objects: the Worker forwards every pipe request, so
 * this one only answers pages and health, with the counts the objects last reported to the watch object
 * (approximate: seconds old), or none without it.
 */
function inObjects(state: WatchState | undefined): Broker {
  return {
    ...refusing('pipes live in Durable Objects'),
    stats: () =>
      state ? { pipes: state.pipes, waiting: state.waiting, approximate: true } : { pipes: 0, waiting: 0 },
  };
}

/** The paths that show the watch object's state; it is asked only for these. */
const WATCH_PAGES = new Set(['/_/health', '/_/metrics', '/_/selfheal']);
/** How long a page waits for the watch object before it answers without its state. */
const WATCH_ASK_MS = 1000;
/** Whether this isolate has (re)armed the watch object's alarm (its first request does). */
let watchArmed = false;

/** The watch object's state, or undefined when it is not bound or does not answer within `WATCH_ASK_MS`. */
async function watchState(env: Env): Promise<WatchState | undefined> {
  const watch = env.WATCH;
  if (!watch) return undefined;
  let timer: number | undefined;
  try {
    const answer = await Promise.race([
      watch.get(watch.idFromName(WATCH_NAME)).fetch(new Request(WATCH_URL.status)),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(resolve, WATCH_ASK_MS) as unknown as number;
      }),
    ]);
    return answer?.ok ? ((await answer.json()) as WatchState) : undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The first request of an isolate (re)arms the watch object's alarm, should it have stopped (asking its
 * state does), in the background.
 */
function armWatch(config: Config, env: Env, ctx: ExecutionContext): void {
  if (watchArmed || !env.WATCH || config.selfheal.rules.length === 0) return;
  watchArmed = true;
  ctx.waitUntil(watchState(env));
}

/** `/_/selfheal` and `/_/metrics` on the Worker: the watch object's watcher, as it last told. */
function watcherView(state: WatchState): WatcherView {
  return {
    backend: state.status.backend,
    counters: state.counters,
    status: async () => ({
      ...state.status,
      windows: state.windows,
      pipes: { pipes: state.pipes, waiting: state.waiting, reporters: state.reporters, approximate: true },
      droppedSamples: state.droppedSamples,
      note: 'hooks fire from the watch object (webhooks only: a Worker cannot run commands)',
    }),
  };
}

/**
 * The client as Cloudflare's edge saw it. Per-client counts live in one request's app here, so they bound
 * nothing across requests: on Workers, rate limits belong to Cloudflare's own rules (see README).
 */
const peerAddress = (request: Request) => request.headers.get('cf-connecting-ip') ?? undefined;

/** How long an isolate trusts the backend choice it read (requests read it from the standby). */
const BACKEND_FRESH_MS = 5000;
let backendChoice: { backend: 'primary' | 'standby'; readAt: number } | undefined;

/**
 * Where new pipes go: the primary unless a self-heal window (the watch object's alarm, or the cron where it
 * is missing) rerouted to the standby. The choice is kept in the standby Redis (the primary may be the one
 * failing) and cached per isolate for a few seconds.
 */
async function activeRedis(config: Config): Promise<string | undefined> {
  const { redis, standby } = config.broker;
  if (!redis || !standby) return redis;
  if (!backendChoice || Date.now() - backendChoice.readAt > BACKEND_FRESH_MS) {
    const client = new Redis(standby, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 1000 });
    client.on('error', () => {});
    let backend: 'primary' | 'standby' = backendChoice?.backend ?? 'primary';
    try {
      await client.connect();
      const stored = await client.get(`ep:${SELFHEAL_STATE}`);
      if (stored) backend = (JSON.parse(stored) as StoredSelfheal).backend;
    } catch {
      // Unreadable: keep the last choice.
    } finally {
      client.disconnect();
    }
    backendChoice = { backend, readAt: Date.now() };
  }
  return backendChoice.backend === 'standby' ? standby : redis;
}

export default {
  /**
   * The cron trigger, a fallback: it re-arms the watch object's alarm (which runs the windows), and runs one
   * self-heal window itself (see `scheduledWatch`) only where the watch object is not bound or does not answer.
   */
  async scheduled(_event: unknown, env: Env): Promise<void> {
    const config = configOf(env);
    if (config.selfheal.rules.length === 0) return;
    if (await watchState(env)) return;
    await scheduledWatch(config, (line) => console.log(line));
  },

  /**
   * One Redis broker per request: a Worker may not keep a connection open across requests (a client kept
   * at module level hangs), and nothing else can be shared between isolates anyway. The broker's
   * connections close when the request's body (a transfer, a transcript) ends; `waitUntil` keeps the
   * isolate until then.
   */
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    let config: Config;
    try {
      config = configOf(env);
    } catch (error) {
      return drainRefusedBody(
        request,
        new Response(`[ERROR] ${(error as Error).message}\n`, { status: 500 }),
      );
    }
    const own = async (broker: Broker, watcher?: WatcherView) =>
      drainRefusedBody(
        request,
        await createApp(config, { broker, streamResponse: streamingResponse, peerAddress, watcher }).fetch(
          request,
          env,
          ctx as never,
        ),
      );
    // Topics live in Redis even where pipes live in Durable Objects; without a Redis they answer 503.
    const topicsOnRedis =
      Boolean(config.broker.redis) && new URL(request.url).pathname.startsWith(TOPICS_PREFIX);
    if (pipesBackend(config) === 'durable-object' && !topicsOnRedis) {
      if (!env.PIPES) return own(refusing(NEEDS_PIPES_BINDING));
      const path = pipePathOf(new URL(request.url));
      // Preflights and the server's own paths are answered here; every party of a pipe meets in the
      // object named after its path or its shard (the object checks access and limits with the same app).
      if (request.method === 'OPTIONS' || isReservedPath(path)) {
        if (!WATCH_PAGES.has(path)) return own(inObjects(undefined));
        watchArmed = true;
        const state = await watchState(env);
        return own(inObjects(state), state && watcherView(state));
      }
      armWatch(config, env, ctx);
      // The object reads the unread body of a request it refuses (pipe-object.ts).
      return env.PIPES.get(env.PIPES.idFromName(pipeObjectName(path, config.broker.objectShards))).fetch(
        request,
      );
    }
    armWatch(config, env, ctx);
    const target = await activeRedis(config);
    if (!target) return own(refusing(NEEDS_REDIS));
    const broker = new RedisBroker({
      target: { url: target },
      windowBytes: config.broker.windowBytes ?? 8 * 1024 * 1024,
      maxPipes: config.limits.maxPipes,
      maxWaiting: config.limits.maxWaiting,
      resumeGraceMs: config.broker.resumeGraceMs,
      socketBufferBytes: config.broker.socketBufferBytes,
      ttlMs: config.limits.waitTimeoutMs + 5 * 60_000,
      // workerd's sockets come through its own connect(); ioredis is what is known to work on them.
      directReads: false,
    });
    try {
      await broker.ready();
    } catch {
      void broker.close().catch(() => {});
      return drainRefusedBody(
        request,
        new Response(`[ERROR] ${new BrokerUnavailableError().message}\n`, {
          status: 503,
          headers: { 'Content-Type': 'text/plain', 'Retry-After': '1' },
        }),
      );
    }
    // The broker lives as long as the request's streaming bodies (a transfer, a transcript) run.
    const bodies: Promise<void>[] = [];
    const app = createApp(config, {
      broker,
      peerAddress,
      streamResponse: (body, init, done) => {
        bodies.push(done);
        return streamingResponse(body, init);
      },
    });
    const response = await app.fetch(request, env, ctx as never);
    ctx.waitUntil(Promise.all(bodies).then(() => broker.close()));
    return drainRefusedBody(request, response);
  },
};
