// Cloudflare Workers entry (`npm run dev:worker`, `wrangler deploy`). Everything Workers-specific is here.

import { Redis } from 'ioredis';
import { createApp } from '../../app.js';
import { BrokerUnavailableError } from '../../broker/errors.js';
import { RedisBroker } from '../../broker/redis/redis-broker.js';
import type { Broker } from '../../broker/types.js';
import { type ByteSource, streamOfSource } from '../../byte-source.js';
import { type Config, ConfigError } from '../../config.js';
import { configFromSources, configObjectOf, isConfigText } from '../../config-sources.js';
import { SELFHEAL_STATE, type StoredSelfheal, scheduledWatch } from './scheduled-watch.js';

/** The Worker's bindings: vars and secrets from `wrangler.toml` or the dashboard. */
interface Env {
  /** `redis://` or `rediss://` URL (a secret: it may hold a password). */
  readonly REDIS_URL?: string;
  /**
   * The JSON config, as its text (a var or secret, `.dev.vars`; `npm run dev:worker` passes a local file's
   * contents) or as a table under `[vars]` in wrangler.toml. `REDIS_URL` beats its `broker.redis`.
   */
  readonly EDGEPIPE_CONFIG?: string | Record<string, unknown>;
  /** Signing secrets of `auth.mode: signed`, comma-separated, the first signs (a secret). */
  readonly EDGEPIPE_SECRETS?: string;
  /** The admin token of `/_/selfheal` and `/_/metrics` (a secret). */
  readonly EDGEPIPE_ADMIN_TOKEN?: string;
}

interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}

/** Workers' stream that sends a declared length (plain streams go out chunked, without Content-Length). */
declare const FixedLengthStream: new (
  length: number,
) => { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> };

const NEEDS_REDIS =
  'edgepipe on Cloudflare Workers needs a Redis: set the REDIS_URL secret (the in-memory broker cannot ' +
  "pass bytes between requests there, as one request may not touch another's stream).";

/** The config object of `EDGEPIPE_CONFIG`; a Worker has no files, so a path is refused with the reason. */
function configObject(value: Env['EDGEPIPE_CONFIG']): Record<string, unknown> {
  if (value === undefined || value === '') return {};
  if (typeof value === 'object') return value;
  if (!isConfigText(value)) {
    throw new ConfigError(
      `EDGEPIPE_CONFIG must hold the JSON config itself on Workers (there are no files to read), got '${value}' ` +
        '(npm run dev:worker passes the contents of a local file)',
    );
  }
  return configObjectOf(value, 'EDGEPIPE_CONFIG');
}

/** The same sources and precedence as `loadConfig` on the other runtimes, minus the files and flags. */
function configOf(env: Env): Config {
  const { EDGEPIPE_CONFIG: _config, ...strings } = env;
  return configFromSources(configObject(env.EDGEPIPE_CONFIG), strings);
}

/** Refuses every pipe with the reason; pages and errors still answer, health says unavailable (503). */
const refusing: Broker = {
  resumable: false,
  ready: async () => {},
  drain: () => {},
  close: async () => {},
  stats: () => ({ pipes: 0, waiting: 0, unavailable: NEEDS_REDIS }),
  inspect: async () => undefined,
  openSender: async () => {
    throw new BrokerUnavailableError(undefined, NEEDS_REDIS);
  },
  openReceiver: async () => {
    throw new BrokerUnavailableError(undefined, NEEDS_REDIS);
  },
};

/**
 * A streaming Response. Workers sends a plain stream chunked and drops its Content-Length; a declared
 * length goes through a FixedLengthStream instead, so the receiver gets Content-Length and a body cut short
 * is an error at the client (an errored chunked body may end like a clean one, as seen under wrangler dev).
 */
function streamingResponse(source: ByteSource, init: ResponseInit): Response {
  const stream = streamOfSource(source);
  // The bytes go out as the sender sent them: Workers would gzip a text/* body for a client that accepts
  // it (undici's fetch does), dropping Content-Length and re-chunking every transfer.
  const headers = new Headers(init.headers);
  headers.set('Cache-Control', 'no-store, no-transform');
  headers.set('Content-Encoding', 'identity');
  const sent = { ...init, headers, encodeBody: 'manual' } as ResponseInit;
  const length = headers.get('content-length');
  if (length === null || !/^[0-9]{1,15}$/.test(length)) return new Response(stream, sent);
  const fixed = new FixedLengthStream(Number(length));
  stream.pipeTo(fixed.writable).catch(() => {});
  return new Response(fixed.readable, sent);
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
    const target = await activeRedis(config);
    if (!target) {
      return createApp(config, { broker: refusing, streamResponse: streamingResponse, peerAddress }).fetch(
        request,
        env,
        ctx as never,
      );
    }
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
