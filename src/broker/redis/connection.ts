import { Cluster, type Command, Redis } from 'ioredis';
import { BrokerUnavailableError } from '../errors.js';
import { dropScript, reapScript, resumeScript } from './resume-scripts.js';
import {
  appendScript,
  finishScript,
  leaveScript,
  openScript,
  progressScript,
  type ScriptDefinition,
  startScript,
} from './scripts.js';

/** Where the broker's Redis is: one server, or the seed nodes of a Redis Cluster. */
export type RedisTarget =
  | { readonly url: string }
  | { readonly cluster: ReadonlyArray<{ host: string; port: number }> };

type ScriptArg = string | number | Buffer | Uint8Array;
type ScriptReply = unknown;

/** The broker's scripts as typed calls (ioredis `defineCommand` runs them with EVALSHA). */
export interface ScriptCalls {
  open(keys: [string, string, string], args: ScriptArg[]): Promise<ScriptReply>;
  leave(keys: [string, string, string], args: ScriptArg[]): Promise<ScriptReply>;
  start(keys: [string], args: ScriptArg[]): Promise<ScriptReply>;
  append(keys: [string, string, string, string], args: ScriptArg[]): Promise<ScriptReply>;
  finish(keys: [string, string, string, string], args: ScriptArg[]): Promise<ScriptReply>;
  progress(keys: [string], args: ScriptArg[]): Promise<ScriptReply>;
  resume(keys: [string, string, string, string], args: ScriptArg[]): Promise<ScriptReply>;
  drop(keys: [string, string], args: ScriptArg[]): Promise<ScriptReply>;
  reap(keys: [string, string, string, string], args: ScriptArg[]): Promise<ScriptReply>;
}

const SCRIPTS: Record<keyof ScriptCalls, ScriptDefinition> = {
  open: openScript,
  leave: leaveScript,
  start: startScript,
  append: appendScript,
  finish: finishScript,
  progress: progressScript,
  resume: resumeScript,
  drop: dropScript,
  reap: reapScript,
};

/** Connection options shared by every connection the broker opens. */
const CONNECTION_OPTIONS = {
  lazyConnect: true,
  // Fail a command quickly while Redis is unreachable instead of queueing it for ever: new requests get a
  // clear 503 and running transfers end with an error, never a silent stall.
  maxRetriesPerRequest: 1,
  enableOfflineQueue: true,
  // Reconnect with clamped exponential backoff plus jitter.
  retryStrategy: (attempt: number) =>
    Math.min(2000, 50 * 2 ** Math.min(attempt, 6)) + Math.floor(Math.random() * 100),
} as const;

/** Opens a command connection to `target`. */
export function connect(target: RedisTarget): Redis | Cluster {
  if ('url' in target) return new Redis(target.url, CONNECTION_OPTIONS);
  // A cluster reconnects its nodes by its own strategy (it ignores the one in `redisOptions`).
  return new Cluster([...target.cluster], {
    lazyConnect: true,
    redisOptions: CONNECTION_OPTIONS,
    clusterRetryStrategy: CONNECTION_OPTIONS.retryStrategy,
  });
}

/** Registers the scripts on a connection and returns them as typed calls. */
export function scriptsOn(redis: Redis | Cluster): ScriptCalls {
  const calls = {} as Record<string, (keys: string[], args: ScriptArg[]) => Promise<ScriptReply>>;
  for (const [name, script] of Object.entries(SCRIPTS)) {
    const command = `ep_${name}`;
    redis.defineCommand(command, { numberOfKeys: script.numberOfKeys, lua: script.lua });
    const run = (redis as unknown as Record<string, (...args: ScriptArg[]) => Promise<ScriptReply>>)[
      command
    ]!;
    calls[name] = (keys, args) => run.call(redis, ...keys, ...args);
  }
  return calls as unknown as ScriptCalls;
}

/** Reports the round trip of every command sent on `redis`, from hand-over to ioredis to its reply. */
export function timeCommands(redis: Redis | Cluster, record: (ms: number) => void): void {
  const send = redis.sendCommand.bind(redis) as (command: Command, ...rest: unknown[]) => unknown;
  (redis as unknown as { sendCommand: typeof send }).sendCommand = (command, ...rest) => {
    const started = performance.now();
    const done = () => record(performance.now() - started);
    command.promise.then(done, done);
    return send(command, ...rest);
  };
}

/** Where `target` is, for messages: `redis://host:port` without credentials, or a cluster's seed nodes. */
export function describeTarget(target: RedisTarget): string {
  if (!('url' in target)) {
    return `the Redis Cluster of ${target.cluster.map(({ host, port }) => `${host}:${port}`).join(', ')}`;
  }
  try {
    const url = new URL(target.url);
    return `${url.protocol}//${url.hostname}:${url.port || '6379'}`;
  } catch {
    return 'the configured URL';
  }
}

/**
 * Opens `connections` to `target`. When one fails they are all closed again and a BrokerUnavailableError
 * names the target and the first reason, e.g. `cannot reach Redis at redis://127.0.0.1:6379: ECONNREFUSED`.
 * The errors are listened to while connecting, so ioredis does not log each one as unhandled.
 */
export async function connectAll(
  connections: ReadonlyArray<Redis | Cluster>,
  target: RedisTarget,
): Promise<void> {
  let first: unknown;
  const note = (error: unknown) => {
    first ??= error;
  };
  for (const connection of connections) connection.on('error', note);
  const results = await Promise.allSettled(connections.map((connection) => connection.connect()));
  const failed = results.find((result) => result.status === 'rejected');
  if (!failed) {
    for (const connection of connections) connection.off('error', note);
    reportOutages(connections, target);
    return;
  }
  // The listeners stay: a closing connection may still report its error, and nobody else listens.
  for (const connection of connections) connection.disconnect();
  const cause = first ?? failed.reason;
  const code = (cause as { code?: unknown } | null)?.code;
  const reason =
    typeof code === 'string' && /^E[A-Z]+$/.test(code)
      ? code
      : cause instanceof Error
        ? cause.message
        : String(cause);
  throw new BrokerUnavailableError(cause, `cannot reach Redis at ${describeTarget(target)}: ${reason}`);
}

/**
 * After a successful start, an outage is said once (`edgepipe: lost Redis at ...: ECONNREFUSED;
 * reconnecting`) and its end once, for the whole group of connections. Without a listener ioredis would
 * print "[ioredis] Unhandled error event" and a stack for every failed reconnect of every connection.
 */
function reportOutages(connections: ReadonlyArray<Redis | Cluster>, target: RedisTarget): void {
  let down = false;
  for (const connection of connections) {
    connection.on('error', (error: unknown) => {
      if (down) return;
      down = true;
      const code = (error as { code?: unknown } | null)?.code;
      const reason = typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
      console.error(`edgepipe: lost Redis at ${describeTarget(target)}: ${reason}; reconnecting`);
    });
    connection.on('ready', () => {
      if (!down) return;
      down = false;
      console.error(`edgepipe: Redis at ${describeTarget(target)} is back`);
    });
  }
}
