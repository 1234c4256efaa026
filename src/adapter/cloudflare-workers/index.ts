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
import { SELFHEAL_STATE, type StoredSelfheal, scheduledWatch } from './scheduled-watch.js';
import { streamingResponse } from './streaming-response.js';
import { configOf, type Env, pipesBackend } from './worker-env.js';

export { PipeObject } from './pipe-object.js';

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
 * this one only answers pages and health (which cannot count the objects' pipes).
 */
const inObjects: Broker = {
  ...refusing('pipes live in Durable Objects'),
  stats: () => ({ pipes: 0, waiting: 0 }),
};

/**
 * The client as Cloudflare's edge saw it. Per-client counts live in one request's app here, so they bound
 * nothing across requests: on Workers, rate limits belong to Cloudflare's own rules (see README).
 */
const peerAddress = (request: Request) => request.headers.get('cf-connecting-ip') ?? undefined;

/** How long an isolate trusts the backend choice it read (requests read it from the standby). */
const BACKEND_FRESH_MS = 5000;
let backendChoice: { backend: 'primary' | 'standby'; readAt: number } | undefined;

/**
 * Where new pipes go: the primary unless the cron's self-heal run rerouted to the standby. The choice is
 * kept in the standby Redis (the primary may be the one failing) and cached per isolate for a few seconds.
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
  /** The cron trigger: one self-heal window (see `scheduledWatch`). */
  async scheduled(_event: unknown, env: Env): Promise<void> {
    await scheduledWatch(configOf(env), (line) => console.log(line));
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
      return new Response(`[ERROR] ${(error as Error).message}\n`, { status: 500 });
    }
    const own = (broker: Broker) =>
      createApp(config, { broker, streamResponse: streamingResponse, peerAddress }).fetch(
        request,
        env,
        ctx as never,
      );
    // Topics live in Redis even where pipes live in Durable Objects; without a Redis they answer 503.
    const topicsOnRedis =
      Boolean(config.broker.redis) && new URL(request.url).pathname.startsWith(TOPICS_PREFIX);
    if (pipesBackend(config) === 'durable-object' && !topicsOnRedis) {
      if (!env.PIPES) return own(refusing(NEEDS_PIPES_BINDING));
      const path = pipePathOf(new URL(request.url));
      // Preflights and the server's own paths are answered here; every party of a pipe meets in the
      // object named after its path (the object checks access and limits with the same app).
      if (request.method === 'OPTIONS' || isReservedPath(path)) return own(inObjects);
      return env.PIPES.get(env.PIPES.idFromName(path)).fetch(request);
    }
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
      return new Response(`[ERROR] ${new BrokerUnavailableError().message}\n`, {
        status: 503,
        headers: { 'Content-Type': 'text/plain', 'Retry-After': '1' },
      });
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
    return response;
  },
};
